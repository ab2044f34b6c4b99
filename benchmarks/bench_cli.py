"""Command-line start-up: `keras-se --help`, `--version` and a usage error against
`import keras_se`.

Every `keras-se` process paid for `import keras_se` (Keras, and TensorFlow on its
default backend) before argparse ran, until the parser was built from
`keras_se/_options.py` and the core was deferred to the point where a command runs.
Each contender is a fresh process (`sys.executable`), timed interleaved round by round
(`_timing.interleaved`, wall clock), with `python -c pass` as the interpreter's floor.
Each process's exit code and output are checked, so a contender that fails is not
timed as a fast one.

    python benchmarks/bench_cli.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import interleaved, machine_info, write_results  # noqa: E402

# name: (arguments after the interpreter, exit code, text expected in stdout or stderr)
CONTENDERS = {
    "python -c pass": (["-c", "pass"], 0, ""),
    "import keras_se": (["-c", "import keras_se"], 0, ""),
    "keras-se --help": (["-m", "keras_se", "--help"], 0, "usage: keras-se"),
    "keras-se --version": (["-m", "keras_se", "--version"], 0, "keras-se "),
    "keras-se finetune --help": (["-m", "keras_se", "finetune", "--help"], 0, "--epochs"),
    "keras-se usage error": (["-m", "keras_se", "finetune", "m", "--epochs", "0"], 2,
                             "expected a positive integer"),
}
BASELINE = "import keras_se"


def run_checked(name: str) -> None:
    args, code, text = CONTENDERS[name]
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if proc.returncode != code or text not in proc.stdout + proc.stderr:
        raise RuntimeError(f"{name}: exit code {proc.returncode}, expected {code} and "
                           f"{text!r}; stderr: {proc.stderr[-500:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 repeats, 1 warm-up")
    args = parser.parse_args(argv)
    repeats, warmup = (10, 1) if args.quick else (15, 2)
    fns = {name: (lambda name=name: run_checked(name)) for name in CONTENDERS}
    res = interleaved(fns, repeats=repeats, warmup=warmup, number=1)
    base = res[BASELINE].median
    rows, data = [], {}
    for name, stats in res.items():
        data[name] = {"median_s": stats.median, "min_s": stats.min, "max_s": stats.max,
                      "samples_s": stats.samples, "vs_import": stats.median / base}
        rows.append({"name": f"`{name}`", "median": f"{stats.median:.3f}",
                     "range": f"{stats.min:.3f}-{stats.max:.3f}",
                     "ratio": f"{stats.median / base:.3f}"})
        print(f"{name:28s} {stats.median:7.3f} s  ({stats.median / base:.3f} of import keras_se)")
    write_results(
        "cli", "Command-line start-up: --help, --version and usage errors without Keras",
        rows, [("name", "process"), ("median", "median (s)"), ("range", "min-max (s)"),
               ("ratio", f"/ `{BASELINE}`")],
        data, intro=__doc__.split("\n\n")[1].strip(), info=machine_info())


if __name__ == "__main__":
    main()
