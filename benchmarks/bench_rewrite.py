"""Rewrite cost: `add_se_blocks` against `keras.models.clone_model` plus a weight copy.

The baseline is what any weight-keeping rewrite must at least do: clone every layer
(`clone_model`'s default clone) and copy the weights (`set_weights`). A is the baseline,
B is `add_se_blocks(model, placement)`; they run interleaved in one process, warm-up
excluded, and the ratio B/A is reported (target from issue 3: at most 1.5).

    python benchmarks/bench_rewrite.py [--quick] [--models NASNetLarge ...]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from _timing import ab, machine_info, write_results  # noqa: E402

import keras_se  # noqa: E402

MODELS = {
    # name: (input size, placement)
    "ResNet50": (224, "residual"),
    "InceptionResNetV2": (299, "residual"),
    "NASNetLarge": (331, "post_activation"),
    "EfficientNetV2L": (480, "post_activation"),
}


def clone_and_copy(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 repeats, 1 warm-up")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args(argv)
    repeats, warmup = (10, 1) if args.quick else (12, 2)
    rows = []
    for name in args.models:
        size, placement = MODELS[name]
        model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
        sites = len(keras_se.find_se_sites(model, placement))

        def a(model=model):
            clone_and_copy(model)
            gc.collect()

        def b(model=model, placement=placement):
            keras_se.add_se_blocks(model, placement)
            gc.collect()

        result = ab(a, b, repeats=repeats, warmup=warmup, number=1)
        row = {
            "model": name,
            "layers": len(model.layers),
            "placement": placement,
            "sites": sites,
            "clone_copy_s": round(result.a.median, 3),
            "add_se_blocks_s": round(result.b.median, 3),
            "ratio": round(result.ratio, 3),
            "ratio_range": f"{min(result.paired_ratios):.2f}-{max(result.paired_ratios):.2f}",
        }
        rows.append(row)
        print(row, flush=True)
        del model
        keras.backend.clear_session()
        gc.collect()
    columns = [
        ("model", "model"),
        ("layers", "layers"),
        ("placement", "placement"),
        ("sites", "SE sites"),
        ("clone_copy_s", "clone_model + copy (s, median)"),
        ("add_se_blocks_s", "add_se_blocks (s, median)"),
        ("ratio", "ratio"),
        ("ratio_range", "paired ratio range"),
    ]
    write_results(
        "rewrite",
        "Rewrite cost: add_se_blocks vs clone_model + weight copy",
        rows,
        columns,
        data={"rows": rows, "repeats": repeats, "warmup": warmup},
        intro=(
            "A = keras.models.clone_model(model) then set_weights; B = add_se_blocks(model, "
            f"placement); interleaved A/B, {repeats} repeats after {warmup} warm-up, median; "
            "ratio B/A (target <= 1.5). weights=None at each model's native size."
        ),
        info=machine_info(),
    )


if __name__ == "__main__":
    main()
