"""The SE model zoo table: parameters and multiply-adds of every SE model and its base.

For each constructor of `keras_se.applications` (weights=None, include_top=True, 1000
classes, the base model's default input size: 224x224, 299x299 for InceptionV3,
InceptionResNetV2 and Xception, 331x331 for NASNetLarge), the stock base model and the
SE model are built and measured:

- parameters: `model.count_params()`;
- SE blocks: the `SqueezeExcite` layers in the model (checked against the registry);
- multiply-adds, counted by TensorFlow's profiler (`tf.compat.v1.profiler`, the
  `float_operation` view) on the frozen graph of a concrete function, batch 1,
  inference mode. The profiler counts 2 float ops per multiply-add for convolutions
  and matrix products, so their count is halved. Like the paper ("GFLOPs" are
  multiply-adds of the convolutions and fully-connected layers), the base counts only
  those: BatchNormalization folds into the convolutions at inference, and biases and
  activations are left out. The SE model adds the SE blocks' own other operations as
  the profiler counts them, one per element (the squeeze's sum, the scaling multiply,
  the biases): the difference of all non-convolution, non-matmul ops between the two
  graphs, which is exactly what the SE blocks add.

Beside them, the paper's figures where it has the model (Hu et al., arXiv:1709.01507,
Table 2 and Table 3; ../shared/REFERENCE.md). Writes benchmarks/results/model_table.json
and .md and applications/MODEL_TABLE.md; `--write-readme` also replaces the table
between the README's `model-table` markers.

    python benchmarks/model_table.py [--models SEResNet50 SEVGG16] [--write-readme]
    python benchmarks/model_table.py --render   # re-render from the JSON, no measuring
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import (  # noqa: E402
    RESULTS_DIR,
    machine_info,
    machine_line,
    markdown_table,
    write_results,
)
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2,
)

import keras_se  # noqa: E402
from keras_se import applications  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE_FILE = ROOT / "applications" / "MODEL_TABLE.md"

#: Ops whose profiler count is 2 per multiply-add.
MAC_OPS = frozenset(
    {
        "Conv2D",
        "Conv3D",
        "DepthwiseConv2dNative",
        "MatMul",
        "BatchMatMul",
        "BatchMatMulV2",
        "BatchMatMulV3",
    }
)

#: The paper's figures (arXiv:1709.01507; ../shared/REFERENCE.md).
PAPER = {
    "SEResNet50": "3.86 → 3.87 G (Table 2); 25.6M → 28.1M params (Table 10)",
    "SEResNet101": "7.58 → 7.60 G (Table 2)",
    "SEResNet152": "11.30 → 11.32 G (Table 2)",
    "SEVGG16": "15.47 → 15.48 G (Table 2, VGG-16 with BN)",
    "SEInceptionResNetV2": "11.75 → 11.76 G (Table 2)",
    "SEMobileNet": "569 → 572 M; 4.2M → 4.7M params (Table 3)",
}


# ------------------------------------------------------------------- counting
def float_ops_by_type(model: keras.Model, size: int) -> dict[str, int]:
    """The profiler's float-op count per op type, batch 1, frozen inference graph."""
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.float32))
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    root = tf.compat.v1.profiler.profile(
        graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
    )
    counts: dict[str, int] = {}
    stack = list(root.children)  # the "op" view nests each type under the previous
    while stack:
        node = stack.pop()
        counts[node.name] = counts.get(node.name, 0) + int(node.float_ops)
        stack.extend(node.children)
    del graph, concrete, fn
    return counts


def split(counts: dict[str, int]) -> tuple[int, int]:
    """(multiply-adds of convolutions and matmuls, every other float op)."""
    mac_flops = sum(v for k, v in counts.items() if k in MAC_OPS)
    assert mac_flops % 2 == 0, counts
    return mac_flops // 2, sum(v for k, v in counts.items() if k not in MAC_OPS)


def measure(name: str) -> dict:
    info = applications.model_info(name)
    size = info.default_size
    shape = (size, size, 3)
    start = time.perf_counter()

    base = getattr(keras.applications, info.base)(weights=None, input_shape=shape)
    base_params = base.count_params()
    base_counts = float_ops_by_type(base, size)
    del base
    _free()

    model = info.constructor(weights=None, input_shape=shape)
    se = [layer for layer in model.layers if isinstance(layer, keras_se.SqueezeExcite)]
    se_params = model.count_params()
    se_counts = float_ops_by_type(model, size)
    if len(se) != info.se_blocks:
        raise AssertionError(f"{name}: {len(se)} SE blocks, the registry says {info.se_blocks}")
    added = sum(layer.count_params() for layer in se)
    if se_params - base_params != added:
        raise AssertionError(f"{name}: parameter delta {se_params - base_params} != {added}")
    del model, se
    _free()

    base_macs, base_other = split(base_counts)
    se_conv_macs, se_other = split(se_counts)
    return {
        "model": name,
        "base": info.base,
        "input": size,
        "placement": info.family.placement,
        "select": info.family.select,
        "se_blocks": info.se_blocks,
        "base_params": base_params,
        "se_params": se_params,
        "base_macs": base_macs,
        "se_macs": se_conv_macs + (se_other - base_other),
        "se_conv_matmul_macs": se_conv_macs,
        "se_other_ops": se_other - base_other,
        "base_other_ops": base_other,
        "base_float_ops": base_counts,
        "se_float_ops": se_counts,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _free():
    keras.backend.clear_session()
    gc.collect()


# ------------------------------------------------------------------ formatting
def _macs(value: int, unit: float) -> str:
    return f"{value / unit:.3f}" if unit == 1e9 else f"{value / unit:.1f}"


def table_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        unit, suffix = (1e9, "G") if r["base_macs"] >= 1e9 else (1e6, "M")
        d_params = r["se_params"] - r["base_params"]
        d_macs = r["se_macs"] - r["base_macs"]
        rows.append(
            {
                "model": f"{r['model']}",
                "input": f"{r['input']}",
                "blocks": f"{r['se_blocks']}",
                "params": f"{r['base_params']:,} → {r['se_params']:,}",
                "d_params": f"+{d_params:,} (+{100 * d_params / r['base_params']:.1f}%)",
                "macs": f"{_macs(r['base_macs'], unit)} → {_macs(r['se_macs'], unit)} {suffix}",
                "d_macs": f"+{d_macs / 1e6:.1f} M (+{100 * d_macs / r['base_macs']:.2f}%)",
                "paper": PAPER.get(r["model"], ""),
            }
        )
    return rows


COLUMNS = [
    ("model", "SE model"),
    ("input", "input"),
    ("blocks", "SE blocks"),
    ("params", "params: base → SE"),
    ("d_params", "Δ params"),
    ("macs", "multiply-adds: base → SE"),
    ("d_macs", "Δ multiply-adds"),
    ("paper", "paper (FLOPs = multiply-adds)"),
]

NOTE = """\
Generated by `python benchmarks/model_table.py` (weights=None, include_top=True, 1000
classes, batch 1; input: the base model's default size). Multiply-adds counted by
TensorFlow's profiler (`tf.compat.v1.profiler`, `float_operation`) on the frozen
inference graph: convolutions and matrix products (the profiler's count halved: it
counts 2 float ops per multiply-add), as the paper counts its FLOPs; the SE models add
their SE blocks' other operations (squeeze, scaling, biases), one per element.
BatchNormalization, biases and activations of the base models are left out, as in the
paper. Paper figures: Hu et al., arXiv:1709.01507, Tables 2, 3 and 10
(`../shared/REFERENCE.md`); the paper's VGG-16 has BatchNormalization, Keras's has none.
"""


def markdown(results: list[dict]) -> str:
    return markdown_table(table_rows(results), COLUMNS)


def notes(results: list[dict]) -> str:
    """What the comparison with the paper shows, from the measured numbers."""
    by = {r["model"]: r for r in results}
    lines = []
    paper = {
        "SEResNet50": 3.86e9,
        "SEResNet101": 7.58e9,
        "SEResNet152": 11.30e9,
        "SEVGG16": 15.47e9,
        "SEMobileNet": 569e6,
    }
    matched = [n for n in paper if n in by]
    if matched:
        worst = max(abs(by[n]["base_macs"] / paper[n] - 1) for n in matched)
        lines.append(
            f"- The base counts agree with the paper's baselines to within {100 * worst:.1f}% ("
            + ", ".join(
                f"{by[n]['base']} {_short(by[n]['base_macs'])} vs {_short(paper[n])}"
                for n in matched
            )
            + "): the counting is the paper's."
        )
    if "SEInceptionResNetV2" in by:
        r = by["SEInceptionResNetV2"]
        lines.append(
            f"- Keras's InceptionResNetV2 at {r['input']}x{r['input']} counts "
            f"{_short(r['base_macs'])} against the paper's 11.75 G for its re-implementation "
            "(Table 2): compare the deltas there."
        )
    lines.append(
        "- The SE deltas count the two fully-connected layers of every block and the "
        "squeeze and scaling, one operation per element of the recalibrated tensor "
        "(`se_conv_matmul_macs` and `se_other_ops` in model_table.json). For ResNet-50 this "
        "gives the paper's +0.01 G; the paper's MobileNet (+3 M) and VGG-16 (+0.01 G) deltas "
        "are smaller than these counts; the paper does not say which elementwise "
        "operations it counted."
    )
    return "Notes:\n\n" + "\n".join(lines)


def _short(macs: int) -> str:
    return f"{macs / 1e9:.2f} G" if macs >= 1e9 else f"{macs / 1e6:.0f} M"


# ------------------------------------------------------------------------ main
def measure_all(models: list[str] | None) -> tuple[list[dict], float]:
    names = [applications.model_info(n).name for n in models or applications.list_models()]
    start = time.perf_counter()
    results = []
    for name in names:
        results.append(measure(name))
        r = results[-1]
        print(
            f"{name}: {r['base_params']:,} -> {r['se_params']:,} params, "
            f"{r['base_macs']:,} -> {r['se_macs']:,} multiply-adds, "
            f"{r['se_blocks']} SE blocks ({r['seconds']} s)",
            flush=True,
        )
    return results, round((time.perf_counter() - start) / 60, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="*", default=None, help="SE model names (default: every model of the zoo)"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="re-render the tables from benchmarks/results/model_table.json without measuring",
    )
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="replace the table between the README's model-table markers",
    )
    args = parser.parse_args(argv)
    if args.render:
        payload = json.loads((RESULTS_DIR / "model_table.json").read_text(encoding="utf-8"))
        results, minutes = payload["results"]["models"], payload["results"]["minutes"]
        info, partial = payload["machine"], False
    else:
        results, minutes = measure_all(args.models)
        info, partial = machine_info(), args.models is not None
    table = markdown(results)
    intro = NOTE + f"\nThe whole table took {minutes:.1f} min to generate on CPU.\n"
    stem = "model_table_quick" if partial else "model_table"
    write_results(
        stem,
        "The SE model zoo: parameters and multiply-adds",
        table_rows(results),
        COLUMNS,
        {"models": results, "minutes": minutes},
        intro=intro,
        sections=[notes(results)],
        info=info,
    )
    if not partial:
        TABLE_FILE.write_text(
            "# The SE model zoo\n\n"
            + intro
            + f"\nMachine: {machine_line(info)}.\n\n"
            + table
            + "\n\n"
            + notes(results)
            + "\n",
            encoding="utf-8",
        )
    if args.write_readme:
        readme = ROOT / "README.md"
        text = readme.read_text(encoding="utf-8")
        pattern = r"(<!-- model-table:start -->\n).*?(\n<!-- model-table:end -->)"
        if not re.search(pattern, text, flags=re.S):
            print(
                "README.md has no <!-- model-table:start --> / <!-- model-table:end --> "
                "markers: nothing replaced",
                file=sys.stderr,
            )
            return 2
        readme.write_text(
            re.sub(pattern, lambda m: m.group(1) + table + m.group(2), text, flags=re.S),
            encoding="utf-8",
        )
    print(table)
    print(f"{len(results)} models in {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
