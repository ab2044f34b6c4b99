"""Shared helpers for the benchmarks: interleaved timing and result files.

Not part of the library and never imported by it. Two pieces:

- `interleaved` / `ab`: time several callables in one process, alternating
  between them round by round (the starting callable rotates every round), so
  that slow drift of the machine (frequency, a noisy neighbour, the page
  cache) hits every contender alike. Warm-up rounds are run and thrown away.
  Each result keeps every sample and reports the median and the spread
  (min, max, interquartile range); `ab` adds the ratio B/A, both as the ratio
  of medians and as the median (and range) of the per-round paired ratios.
- `machine_info` / `write_results`: record what ran where (CPU model from
  `/proc/cpuinfo`, core count, cache sizes, Python/TF/Keras versions) and
  write `benchmarks/results/<name>.json` and `<name>.md`.

The timed callables must block until their work is done. That holds for
TensorFlow on CPU (eager ops and `tf.function` calls return finished
tensors); on an accelerator, make the callable fetch a value.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MIN_REPEATS = 10


@dataclass
class Stats:
    """Timings of one callable, in seconds per call."""

    samples: list[float] = field(default_factory=list)
    number: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def q1(self) -> float:
        return _quantile(self.samples, 0.25)

    @property
    def q3(self) -> float:
        return _quantile(self.samples, 0.75)

    def to_dict(self) -> dict:
        return {
            "median_s": self.median,
            "min_s": self.min,
            "max_s": self.max,
            "q1_s": self.q1,
            "q3_s": self.q3,
            "repeats": len(self.samples),
            "calls_per_sample": self.number,
            "samples_s": self.samples,
        }


@dataclass
class ABResult:
    """Interleaved timings of A and B and their ratio B/A."""

    a: Stats
    b: Stats

    @property
    def ratio(self) -> float:
        """median(B) / median(A)."""
        return self.b.median / self.a.median

    @property
    def paired_ratios(self) -> list[float]:
        return [b / a for a, b in zip(self.a.samples, self.b.samples)]

    def to_dict(self) -> dict:
        paired = self.paired_ratios
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "ratio_b_over_a": self.ratio,
            "paired_ratio_median": statistics.median(paired),
            "paired_ratio_min": min(paired),
            "paired_ratio_max": max(paired),
        }


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _time_once(
    fn: Callable[[], object], number: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    start = clock()
    for _ in range(number):
        fn()
    return (clock() - start) / number


def _calibrate(
    fns: Sequence[Callable[[], object]],
    min_sample_s: float,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Calls per sample so that the fastest callable's sample lasts `min_sample_s`."""
    fastest = min(_time_once(fn, 1, clock) for fn in fns)
    if fastest <= 0:
        return 1000
    return max(1, min(1000, int(min_sample_s / fastest + 0.999)))


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = 20,
    warmup: int = 3,
    number: int | None = None,
    min_sample_s: float = 0.01,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Stats]:
    """Times the callables of `fns` round-robin in this process.

    Every round runs each callable once (one sample of `number` calls); the
    callable that starts a round rotates, so with two callables the order is
    AB, BA, AB, ... The first `warmup` rounds are discarded.

    Args:
        fns: name -> callable taking no arguments; each must block until done.
        repeats: the number of kept rounds, at least 10. Defaults to `20`.
        warmup: rounds run first and discarded. Defaults to `3`.
        number: calls per sample; `None` picks it so that the fastest
            callable's sample lasts at least `min_sample_s`. Defaults to `None`.
        min_sample_s: see `number`. Defaults to `0.01`.
        clock: the timer, `time.perf_counter` (wall time) by default.
            `time.thread_time` counts only the CPU time of the calling
            thread: for work that runs entirely in that thread (a
            single-threaded interpreter), it does not count the time other
            processes take the core, so it stays steady on a shared machine.

    Returns:
        name -> `Stats` (seconds per call), in the order of `fns`.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < MIN_REPEATS:
        raise ValueError(
            f"`repeats` must be an integer of at least {MIN_REPEATS}. Received: repeats={repeats!r}"
        )
    names = list(fns)
    if not names:
        raise ValueError("`fns` must name at least one callable. Received: fns={}")
    callables = [fns[n] for n in names]
    for fn in callables:  # compile / trace before calibrating
        fn()
    if number is None:
        number = _calibrate(callables, min_sample_s, clock)
    results = {n: Stats(number=number) for n in names}
    for round_ in range(warmup + repeats):
        start = round_ % len(names)
        for i in range(len(names)):
            k = (start + i) % len(names)
            elapsed = _time_once(callables[k], number, clock)
            if round_ >= warmup:
                results[names[k]].samples.append(elapsed)
    return results


def ab(
    a: Callable[[], object],
    b: Callable[[], object],
    repeats: int = 20,
    warmup: int = 3,
    number: int | None = None,
    min_sample_s: float = 0.01,
) -> ABResult:
    """Interleaved A/B timing; see `interleaved`. The ratio reported is B/A."""
    res = interleaved(
        {"a": a, "b": b},
        repeats=repeats,
        warmup=warmup,
        number=number,
        min_sample_s=min_sample_s,
    )
    return ABResult(res["a"], res["b"])


# ------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_sizes() -> dict[str, str]:
    """L1d/L2/L3 sizes of CPU 0 from sysfs (Linux), e.g. {"L3": "32768K"}."""
    sizes = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        sizes[f"L{level}{'d' if kind == 'Data' else ''}"] = size
    return sizes


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work sharing the cores."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# glibc's malloc, left to itself, serves some of these benchmarks' 25 MB tensors with
# freshly mapped pages: every call then page-faults its whole output. Measured on
# JAX (x * g, 8x56x56x256 and 16x28x28x512, jitted): one buffer takes 1 ms a call,
# another 8 ms, the same program, chosen per process and per buffer. With the
# threshold fixed at its largest (32 MB) and no trimming, every buffer takes 1.0-1.5
# ms. The backend comparisons run their children with these (a user's own setting
# wins), so that every backend is timed on reused memory.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(4 * 1024**3),
    "MALLOC_TOP_PAD_": str(256 * 1024 * 1024),
}


def child_env(**extra: str) -> dict:
    """`os.environ` with `MALLOC_ENV` (unless set) and `extra`, for a benchmark child."""
    return {**MALLOC_ENV, **os.environ, **extra}


def machine_info() -> dict:
    """What ran the benchmark: CPU, cores, caches, library versions, date."""
    info = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "caches": _cache_sizes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "loadavg_1_5_15": _loadavg(),
        "malloc": {k: os.environ[k] for k in MALLOC_ENV if k in os.environ},
    }
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["tf_devices"] = [d.device_type for d in tf.config.list_logical_devices()]
    except ImportError:
        info["tensorflow"] = None
    try:
        import keras

        info["keras"] = keras.__version__
        info["keras_backend"] = keras.backend.backend()
    except ImportError:
        info["keras"] = None
    return info


def machine_line(info: Mapping) -> str:
    caches = ", ".join(f"{k} {v}" for k, v in info.get("caches", {}).items())
    return (
        f"{info['cpu_model']}, {info['cpus_usable']} usable cores"
        + (f" ({caches})" if caches else "")
        + f"; Python {info['python']}, TensorFlow {info.get('tensorflow')}, "
        f"Keras {info.get('keras')} ({info.get('keras_backend')} backend); "
        f"{info['date_utc']} UTC"
        + (f"; load average {info['loadavg_1_5_15'][0]}" if info.get("loadavg_1_5_15") else "")
        + ("; glibc malloc: " + ", ".join(f"{k}={v}" for k, v in info["malloc"].items())
           if info.get("malloc") else "")
    )


# ------------------------------------------------------------------ output
def markdown_table(rows: Sequence[Mapping], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table; `columns` is a list of (row key, header)."""
    lines = [
        "| " + " | ".join(h for _, h in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(k, "")) for k, _ in columns) + " |")
    return "\n".join(lines)


def write_results(
    name: str,
    title: str,
    rows: Sequence[Mapping],
    columns: Sequence[tuple[str, str]],
    data: Mapping,
    intro: str = "",
    sections: Sequence[str] = (),
    info: Mapping | None = None,
    results_dir: Path | str = RESULTS_DIR,
) -> tuple[Path, Path]:
    """Writes `<results_dir>/<name>.json` and `<name>.md`.

    Args:
        name: the file stem, e.g. `"layer"`.
        title: the Markdown page's heading.
        rows: the table's rows (already formatted strings or numbers).
        columns: (row key, header) pairs for the Markdown table.
        data: the raw results, stored under `"results"` in the JSON.
        intro: Markdown put above the table. Defaults to `""`.
        sections: Markdown blocks put below the table. Defaults to `()`.
        info: machine description; `None` calls `machine_info()`.
        results_dir: the folder, created if missing. Defaults to
            `benchmarks/results`.

    Returns:
        The paths of the JSON and the Markdown file.
    """
    info = dict(machine_info() if info is None else info)
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    md_path = out / f"{name}.md"
    payload = {"benchmark": name, "title": title, "machine": info, "results": data}
    json_path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    parts = [f"# {title}", ""]
    if intro:
        parts += [intro.strip(), ""]
    parts += [f"Machine: {machine_line(info)}.", "", markdown_table(rows, columns), ""]
    for section in sections:
        parts += [section.strip(), ""]
    md_path.write_text("\n".join(parts), encoding="utf-8")
    return json_path, md_path
