"""The `keras-se` command line (also `python -m keras_se`): a thin shell over the library.

Sub-commands, one module each::

    keras-se sites MODEL [--placement P] [--select REGEX]        (cli/sites.py)
    keras-se retrofit MODEL --out DIR [--weights ...]            (cli/retrofit.py)
    keras-se finetune MODEL --data DATA --out DIR [--epochs ...]  (cli/finetune.py)
    keras-se export MODEL --format F --out PATH                  (cli/export.py)
    keras-se inspect MODEL.keras --data DATA --out DIR           (cli/inspect.py)
    keras-se demo [--out runs/demo]                              (cli/demo.py)

MODEL is anything `keras_se.models.resolve_model` takes. Results are written beside
`--out` and moved into place when complete (`cli/_output.py`).

Exit codes: 0 success; 2 bad input (one line on stderr: a `UsageError`, raised where
input is checked); 1 any other failure (one line, `--traceback` shows the traceback);
130 interrupted. A command module defines `add_arguments(parser)` and `main(args) ->
int`, decorated with `@command(...)`, and keeps its work in a function that returns a
result object (`finetune.execute`, used by `demo`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect as _inspect  # (not `inspect`: that name is the sub-command module)
import os
import sys
from collections.abc import Callable

from keras_se.cli import _stderr
from keras_se.cli._args import UsageError, add_backend_argument, check_backend

PROG = "keras-se"
_COMMAND_MODULES = ("sites", "retrofit", "finetune", "export", "inspect", "demo")


@dataclasses.dataclass
class Command:
    """One sub-command: its name, help, argument adder and entry point."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.Namespace], int]
    description: str | None = None


COMMANDS: dict[str, Command] = {}


def command(name: str, *, help: str, arguments: Callable):
    """Registers the decorated `main(args) -> int` as sub-command `name`."""

    def decorator(main):
        doc = _inspect.cleandoc(main.__doc__ or "") or None
        COMMANDS[name] = Command(name, help, arguments, main, doc)
        return main

    return decorator


def load_commands() -> dict[str, Command]:
    """Imports every sub-command module (each registers itself)."""
    for name in _COMMAND_MODULES:
        importlib.import_module(f"keras_se.cli.{name}")
    # In `_COMMAND_MODULES`' order (the help's), whichever module was imported first.
    order = {name: i for i, name in enumerate(_COMMAND_MODULES)}
    ordered = sorted(COMMANDS.items(), key=lambda item: order.get(item[0], len(order)))
    COMMANDS.clear()
    COMMANDS.update(ordered)
    return COMMANDS


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The `keras-se` parser with every sub-command."""
    from keras_se import __version__

    parser = _Parser(
        prog=PROG,
        description="Squeeze-and-Excitation for Keras models: find sites, retrofit, "
        "fine-tune, export, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cmd in load_commands().values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.arguments(p)
        add_backend_argument(p)
        p.add_argument(
            "--traceback",
            action="store_true",
            help="show the Python traceback of an error instead of one line",
        )
        p.add_argument(
            "-v", "--verbose", action="store_true", help="show TensorFlow's and Python's warnings"
        )
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parses a `keras-se` argument list (what `demo` uses to run `finetune`)."""
    return build_parser().parse_args([str(a) for a in argv])


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 2000 else text[:2000] + " ..."


def _notes(e: BaseException) -> str:
    return "".join(f"; {n}" for n in getattr(e, "__notes__", ()))


def run(argv: list[str] | None = None) -> int:
    """Runs `keras-se` with `argv` and returns the exit code (stderr not filtered)."""
    args = build_parser().parse_args(argv)  # exits on --help and usage errors
    import keras_se

    keras_se._import_core()  # Keras loads here (already loaded outside the command line)
    cmd = COMMANDS[args.command]
    prefix = f"{PROG} {cmd.name}: error:"
    try:
        check_backend(args.backend)
        return int(cmd.main(args) or 0)
    except KeyboardInterrupt as e:
        print(f"{PROG} {cmd.name}: interrupted{_notes(e)}", file=sys.stderr)
        return 130
    except UsageError as e:
        if args.traceback:
            raise
        print(f"{prefix} {_one_line(e)}{_notes(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the entry point reports every failure
        if args.traceback:
            raise
        print(
            f"{prefix} {type(e).__name__}: {_one_line(e)}{_notes(e)} (--traceback for details)",
            file=sys.stderr,
        )
        return 1


def main(argv: list[str] | None = None) -> int:
    """The console script: `run` with TensorFlow's native log lines filtered out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _stderr.install()
    argv = sys.argv[1:] if argv is None else list(argv)
    _stderr.quiet_python_logs("-v" in argv or "--verbose" in argv)
    try:
        code = run(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        _stderr.restore()
    return code


__all__ = ["COMMANDS", "PROG", "UsageError", "build_parser", "command", "main", "parse", "run"]
