"""Result folders and files written beside `--out` and moved into place when complete."""

from __future__ import annotations

import os
import shutil

from keras_se._files import read_json, write_json
from keras_se.cli._args import UsageError

_RUN_MARKER = ".keras_se_run.json"


class OutputDir:
    """A result written in a temporary sibling of `--out` and moved into place.

    `check()` refuses an `--out` that holds a finished result (unless
    `overwrite`) or whose parent cannot be created or written. `prepare()`
    creates `.NAME.partial` beside it (or, with `resume=True`, reuses an
    interrupted run's). Write into `.path`; `commit()` moves it to `--out`,
    replacing an old result only then; `abort()` removes it.

    Args:
        out: the final path.
        overwrite: replace a finished result.
        resume: reuse an existing partial directory (an interrupted run).
        settings: the run's settings; a partial directory made with other
            settings is not resumed (`UsageError`, unless `fresh`).
        fresh: discard an existing partial directory.
        suffix: the partial directory's suffix.
        is_file: the result is a file, not a directory.
    """

    def __init__(self, out, *, overwrite=False, resume=False, settings=None, fresh=False,
                 suffix=".partial", is_file=False):
        if not out:
            raise UsageError(f"`--out` must be a path. Received: out={out!r}")
        self.out = os.path.abspath(out)
        self.overwrite = overwrite
        self.resume = resume
        self.settings = settings
        self.fresh = fresh
        self.is_file = is_file
        self.parent, name = os.path.split(self.out)
        self.path = os.path.join(self.parent, f".{name}{suffix}")
        self.resumed = False

    def check(self) -> OutputDir:
        """Raises `UsageError` if `--out` cannot (or may not) receive the result."""
        out = self.out
        if os.path.lexists(out):
            if self.is_file and os.path.isdir(out):
                raise UsageError(
                    f"`--out` is a directory, expected a file path. Received: out={out!r}"
                )
            if not self.is_file and not os.path.isdir(out):
                raise UsageError(f"`--out` is a file, expected a directory. Received: out={out!r}")
            finished = bool(os.listdir(out)) if os.path.isdir(out) else True
            if finished and not self.overwrite:
                raise UsageError(
                    "`--out` already holds a finished result; pass --overwrite to replace it "
                    f"or choose another --out. Received: out={out!r}"
                )
        try:
            os.makedirs(self.parent, exist_ok=True)
        except OSError as e:
            raise UsageError(
                f"`--out` cannot be created ({e.strerror or e}). Received: out={out!r}"
            ) from None
        if not os.access(self.parent, os.W_OK | os.X_OK):
            raise UsageError(f"`--out` is not writable. Received: out={out!r}")
        return self

    def prepare(self) -> OutputDir:
        """Checks `--out` and creates (or, resuming, reuses) the partial directory."""
        self.check()
        marker = os.path.join(self.path, _RUN_MARKER)
        if os.path.isdir(self.path) and self.resume and not self.fresh:
            old = read_json(marker)
            if self.settings is not None and old is not None and old != self.settings:
                changed = sorted(
                    k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k)
                )
                raise UsageError(
                    f"`--out` has an interrupted run with other settings ({', '.join(changed)}); "
                    "re-run with the same arguments to resume it, or pass --fresh to discard it. "
                    f"Received: out={self.out!r}"
                )
            self.resumed = True
            return self
        if os.path.lexists(self.path):
            remove(self.path)
        try:
            os.mkdir(self.path)
            if self.settings is not None:
                write_json(marker, self.settings)
        except OSError as e:
            remove(self.path)
            raise UsageError(
                f"`--out` is not writable ({e.strerror or e}). Received: out={self.out!r}"
            ) from None
        return self

    def file(self, *names) -> str:
        return os.path.join(self.path, *names)

    def commit(self) -> None:
        """Moves the finished result to `--out`, replacing an old one only now."""
        marker = os.path.join(self.path, _RUN_MARKER)
        if os.path.exists(marker):
            os.remove(marker)
        old = None
        if os.path.lexists(self.out):
            if not self.overwrite and (os.path.isfile(self.out) or os.listdir(self.out)):
                raise UsageError(
                    "`--out` received a finished result while this run was working; "
                    f"not replacing it. Received: out={self.out!r}"
                )
            old = os.path.join(self.parent, f".{os.path.basename(self.out)}.old{os.getpid()}")
            os.rename(self.out, old)
        os.rename(self.path, self.out)
        if old:
            remove(old)

    def abort(self) -> None:
        remove(self.path)


def remove(path: str) -> None:
    """Removes a file, a link or a directory tree; missing is fine."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            os.remove(path)
        except OSError:
            pass


def relative(path: str) -> str:
    """`path` relative to the working directory when that is shorter to read."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith(".." + os.sep + "..") else path


def size_of(path: str) -> int:
    """Bytes in a file or a directory tree."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
