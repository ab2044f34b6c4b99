"""The README's placement table: SE sites and parameters for every keras.applications model.

For each of the 40 constructors (weights=None, include_top=False, 224x224 input;
NASNetLarge at 331, the size it was designed for) and each placement, the number of SE
sites `keras_se.find_se_sites` finds and the parameters the SE blocks add (r=16, biases
on). Writes benchmarks/results/placements.json and .md; `--write-readme` also replaces
the table between the README's `placement-table` markers.

    python benchmarks/placement_table.py [--write-readme] [--models ResNet50 VGG16]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_se  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZES = {"NASNetLarge": 331}


def constructors():
    A = keras.applications
    return sorted(n for n in dir(A) if n[0].isupper() and callable(getattr(A, n)))


def count(name):
    size = SIZES.get(name, 224)
    model = getattr(keras.applications, name)(
        weights=None, include_top=False, input_shape=(size, size, 3)
    )
    row = {"model": name, "input": size, "params": model.count_params(), "placements": {}}
    for placement in keras_se.PLACEMENTS:
        sites = keras_se.find_se_sites(model, placement)
        row["placements"][placement] = {
            "sites": len(sites),
            "params": sum(s.params for s in sites),
        }
    del model
    keras.backend.clear_session()
    gc.collect()
    return row


def markdown(rows):
    head = "| model | params (no top) | " + " | ".join(
        f"`{p}`" for p in keras_se.PLACEMENTS) + " |"
    sep = "|---|---:|" + "---:|" * len(keras_se.PLACEMENTS)
    lines = [head, sep]
    for r in rows:
        cells = []
        for p in keras_se.PLACEMENTS:
            c = r["placements"][p]
            cells.append(f"{c['sites']} / +{c['params']:,}" if c["sites"] else "—")
        lines.append(f"| {r['model']} | {r['params']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models or constructors():
        rows.append(count(name))
        print(name, {p: c["sites"] for p, c in rows[-1]["placements"].items()}, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = {
        "keras": keras.__version__,
        "note": "sites / parameters added per placement; r=16, biases on; include_top=False; "
                "224x224 input (NASNetLarge 331x331)",
        "rows": rows,
    }
    (RESULTS / "placements.json").write_text(json.dumps(info, indent=1) + "\n")
    table = markdown(rows)
    (RESULTS / "placements.md").write_text(table + "\n")
    if args.write_readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        new = re.sub(
            r"(<!-- placement-table:start -->\n).*?(\n<!-- placement-table:end -->)",
            lambda m: m.group(1) + table + m.group(2),
            text,
            flags=re.S,
        )
        readme.write_text(new)
    print(table)


if __name__ == "__main__":
    main()
