"""The README's keras-hub table: SE sites, parameters and identity check per image backbone.

For every keras-hub image backbone class (keras-hub 0.32), built at a small size from
constructor arguments (random weights: presets are not read, so nothing downloads), and
for each placement: the number of SE sites `keras_se.add_se_blocks` places, the parameters
they add (r=16, biases on), and the largest |difference| between the outputs of the SE
backbone (`init="identity"`) and the base on a random batch. "—": no site (`NoSitesError`);
"opaque": refused because subclassed blocks hide the sites (`keras_se.hub.find_opaque_layers`).
The configs are keras-hub's own unit-test configs where they exist (its
`*_backbone_test.py`), otherwise the docstring's with fewer blocks and channels; each row
names its config in the JSON output and the "config" column.

Writes benchmarks/results/hub_table.json and .md; `--write-readme` also replaces the table
between the README's `hub-table` markers.

    python benchmarks/hub_table.py [--write-readme] [--models ResNetBackbone-basic VGGBackbone]
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
import numpy as np  # noqa: E402

import keras_se  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZE = 64

_RESNET = dict(input_conv_filters=[64], input_conv_kernel_sizes=[7],
               stackwise_num_filters=[64, 64, 64], stackwise_num_blocks=[2, 2, 2],
               stackwise_num_strides=[1, 2, 2], image_shape=(SIZE, SIZE, 3))
_VIT = dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=32)

# (row name, class name, constructor arguments, where the config comes from)
CONFIGS = [
    ("ResNetBackbone-basic", "ResNetBackbone", dict(_RESNET, block_type="basic_block"),
     "keras-hub test (basic_block, 3 stacks x 2 blocks)"),
    ("ResNetBackbone-bottleneck", "ResNetBackbone", dict(_RESNET, block_type="bottleneck_block"),
     "keras-hub test (bottleneck_block, 3 stacks x 2 blocks)"),
    ("ResNetBackbone-v2", "ResNetBackbone",
     dict(_RESNET, block_type="bottleneck_block", use_pre_activation=True),
     "keras-hub test (bottleneck_block, use_pre_activation)"),
    ("ResNetBackbone-vd", "ResNetBackbone",
     dict(_RESNET, block_type="bottleneck_block_vd", input_conv_filters=[32, 32, 64],
          input_conv_kernel_sizes=[3, 3, 3]),
     "keras-hub test (bottleneck_block_vd, 3-conv stem)"),
    ("VGGBackbone", "VGGBackbone",
     dict(stackwise_num_repeats=[2, 2, 3], stackwise_num_filters=[16, 32, 64],
          image_shape=(SIZE, SIZE, 3)),
     "VGG16's first 3 stages, 1/4 width"),
    ("DenseNetBackbone", "DenseNetBackbone",
     dict(stackwise_num_repeats=[2, 4, 6, 4], compression_ratio=0.5, growth_rate=2,
          image_shape=(SIZE, SIZE, 3)),
     "keras-hub test ([2, 4, 6, 4], growth 2), 64 px"),
    ("CSPNetBackbone", "CSPNetBackbone",
     dict(stem_filters=32, stem_kernel_size=3, stem_strides=1, stackwise_strides=2,
          stackwise_depth=[1, 2, 8], stackwise_num_filters=[16, 24, 48],
          image_shape=(SIZE, SIZE, 3), down_growth=True, bottle_ratio=(0.5, 1.0),
          block_ratio=(1.0, 0.5), expand_ratio=(2.0, 1.0), block_type="dark_block",
          stage_type="csp", stem_padding="same"),
     "keras-hub test (csp, dark_block)"),
    ("XceptionBackbone", "XceptionBackbone",
     dict(stackwise_conv_filters=[[32, 64], [128, 128], [256, 256]],
          stackwise_pooling=[False, True, False], image_shape=(SIZE, SIZE, 3)),
     "keras-hub test (3 stacks)"),
    ("EfficientNetBackbone-v1", "EfficientNetBackbone",
     dict(stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3], stackwise_num_repeats=[1] * 7,
          stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
          stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
          stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6], stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
          stackwise_squeeze_and_excite_ratios=[0.25] * 7, stackwise_force_input_filters=[0] * 7,
          stackwise_nores_option=[False] * 7, width_coefficient=1.0, depth_coefficient=1.0,
          stackwise_block_types=["v1"] * 7, min_depth=None, include_stem_padding=True,
          use_depth_divisor_as_min_depth=True, cap_round_filter_decrease=True,
          stem_conv_padding="valid", batch_norm_momentum=0.99, input_shape=(SIZE, SIZE, 3)),
     "keras-hub test (original V1, SE in every block), 1 block per stage"),
    ("EfficientNetBackbone-v2", "EfficientNetBackbone",
     dict(stackwise_kernel_sizes=[3] * 6, stackwise_num_repeats=[1] * 6,
          stackwise_input_filters=[24, 24, 48, 64, 128, 160],
          stackwise_output_filters=[24, 48, 64, 128, 160, 256],
          stackwise_expansion_ratios=[1, 4, 4, 4, 6, 6],
          stackwise_squeeze_and_excite_ratios=[0.0, 0.0, 0, 0.25, 0.25, 0.25],
          stackwise_strides=[1, 2, 2, 2, 1, 2],
          stackwise_block_types=["fused"] * 3 + ["unfused"] * 3,
          stackwise_force_input_filters=[0] * 6, stackwise_nores_option=[False] * 6,
          width_coefficient=1.0, depth_coefficient=1.0, input_shape=(SIZE, SIZE, 3)),
     "keras-hub test (V2-style: fused blocks without SE), 1 block per stage"),
    ("MobileNetBackbone", "MobileNetBackbone",
     dict(stackwise_expansion=[[16], [72, 88], [96]], stackwise_num_blocks=[1, 2, 1],
          stackwise_num_filters=[[16], [24, 24], [40]], stackwise_kernel_size=[[3], [3, 3], [5]],
          stackwise_num_strides=[[2], [2, 1], [2]],
          stackwise_se_ratio=[[0.25], [None, None], [0.25]],
          stackwise_activation=[["relu"], ["relu", "relu"], ["hard_swish"]],
          stackwise_padding=[[1], [1, 1], [2]], output_num_filters=64, depthwise_filters=16,
          depthwise_stride=2, depthwise_residual=False, last_layer_filter=64,
          squeeze_and_excite=0.5, image_shape=(SIZE, SIZE, 3)),
     "MobileNetV3-Small's first 4 blocks"),
    ("MobileNetV5Backbone", "MobileNetV5Backbone",
     dict(stackwise_block_types=[["er"], ["uir", "uir"]], stackwise_num_blocks=[1, 2],
          stackwise_num_filters=[[24], [48, 48]], stackwise_strides=[[2], [2, 1]],
          stackwise_act_layers=[["relu"], ["relu", "relu"]],
          stackwise_exp_ratios=[[4.0], [6.0, 6.0]], stackwise_se_ratios=[[0.0], [0.0, 0.0]],
          stackwise_dw_kernel_sizes=[[0], [5, 5]], stackwise_dw_start_kernel_sizes=[[0], [0, 0]],
          stackwise_dw_end_kernel_sizes=[[0], [0, 0]], stackwise_exp_kernel_sizes=[[3], [0, 0]],
          stackwise_pw_kernel_sizes=[[1], [0, 0]], stackwise_num_heads=[[0], [0, 0]],
          stackwise_key_dims=[[0], [0, 0]], stackwise_value_dims=[[0], [0, 0]],
          stackwise_kv_strides=[[0], [0, 0]], stackwise_use_cpe=[[False], [False, False]],
          image_shape=(SIZE, SIZE, 3), stem_size=16, use_msfa=False),
     "keras-hub test, 64 px"),
    ("HGNetV2Backbone", "HGNetV2Backbone",
     dict(embedding_size=32, stem_channels=[3, 16, 32], hidden_act="relu",
          use_learnable_affine_block=False, image_shape=(SIZE, SIZE, 3), depths=[1, 1],
          hidden_sizes=[64, 128],
          stackwise_stage_filters=[[32, 16, 64, 1, 1, 3], [64, 32, 128, 1, 1, 3]],
          apply_downsample=[False, True], use_lightweight_conv_block=[False, False]),
     "keras-hub test (2 stages)"),
    ("MiTBackbone", "MiTBackbone",
     dict(layerwise_depths=[2, 2], image_shape=(SIZE, SIZE, 3), hidden_dims=[4, 8],
          num_layers=2, layerwise_num_heads=[1, 2], layerwise_sr_ratios=[8, 4],
          max_drop_path_rate=0.1, layerwise_patch_sizes=[7, 3], layerwise_strides=[4, 2]),
     "keras-hub test, 64 px"),
    ("SwinTransformerBackbone", "SwinTransformerBackbone",
     dict(image_shape=(SIZE, SIZE, 3), embed_dim=32, depths=(2, 2), num_heads=(2, 4),
          window_size=4),
     "keras-hub test, 64 px"),
    ("ViTBackbone", "ViTBackbone", dict(_VIT, image_shape=(SIZE, SIZE, 3), mlp_dim=64),
     "2 layers, width 32, patch 8"),
    ("DeiTBackbone", "DeiTBackbone", dict(_VIT, image_shape=(SIZE, SIZE, 3), intermediate_dim=64),
     "2 layers, width 32, patch 8"),
    ("DINOV2Backbone", "DINOV2Backbone",
     dict(_VIT, intermediate_dim=64, image_shape=(SIZE, SIZE, 3),
          position_embedding_shape=(SIZE, SIZE, 3)),
     "2 layers, width 32, patch 8"),
    ("DINOV3Backbone", "DINOV3Backbone",
     dict(_VIT, intermediate_dim=64, image_shape=(SIZE, SIZE, 3)),
     "2 layers, width 32, patch 8"),
    ("ViTDetBackbone", "ViTDetBackbone",
     dict(hidden_size=32, num_layers=2, intermediate_dim=64, num_heads=2,
          global_attention_layer_indices=[1], image_shape=(SIZE, SIZE, 3), patch_size=8,
          num_output_channels=16, window_size=4),
     "2 layers, width 32, patch 8"),
    ("CLIPVisionEncoder", "CLIPVisionEncoder",
     dict(_VIT, intermediate_dim=64, image_shape=(SIZE, SIZE, 3)),
     "2 layers, width 32, patch 8"),
    ("SigLIPVisionEncoder", "SigLIPVisionEncoder",
     dict(_VIT, intermediate_dim=64, image_shape=(SIZE, SIZE, 3)),
     "2 layers, width 32, patch 8"),
]


def hub_class(name):
    import keras_hub

    cls = getattr(keras_hub.models, name, None)
    if cls is None:
        cls = keras.saving.get_registered_object(f"keras_hub>{name}")
    return cls


def outputs(model, x):
    y = model(x, training=False)
    return [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(y)]


def count(row_name, class_name, kwargs, source):
    keras.utils.set_random_seed(0)
    row = {"model": row_name, "class": class_name, "config": source, "kwargs": kwargs,
           "input": SIZE, "placements": {}}
    try:
        model = hub_class(class_name)(**kwargs)
    except Exception as e:  # noqa: BLE001 - the row says why
        row["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        return row
    row["params"] = model.count_params()
    opaque = keras_se.hub.find_opaque_layers(model)
    row["opaque"] = [o.name for o in opaque]
    row["opaque_with_se"] = [o.name for o in opaque if o.carries_se]
    x = np.random.default_rng(0).uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    base = outputs(model, x)
    for placement in keras_se.PLACEMENTS:
        cell = {"sites": 0, "params": 0, "max_abs_diff": None, "refused": None}
        try:
            se, report = keras_se.add_se_blocks(model, placement, return_report=True)
        except keras_se.NoSitesError as e:
            cell["refused"] = "opaque" if "subclassed blocks" in str(e) else "no site"
        else:
            cell["sites"], cell["params"] = len(report.sites), report.params_added
            cell["max_abs_diff"] = float(max(np.abs(a - b).max()
                                             for a, b in zip(outputs(se, x), base)))
            cell["class"] = type(se).__name__
            del se
        row["placements"][placement] = cell
    del model
    keras.backend.clear_session()
    gc.collect()
    return row


def markdown(rows):
    head = ("| backbone | config | params | subclassed blocks (with SE) | "
            + " | ".join(f"`{p}`" for p in keras_se.PLACEMENTS) + " | max \\|Δ\\| at init |")
    sep = "|---|---|---:|---:|" + "---:|" * len(keras_se.PLACEMENTS) + "---:|"
    lines = [head, sep]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['config']} | build failed: {r['error']} |")
            continue
        cells, diffs = [], []
        for p in keras_se.PLACEMENTS:
            c = r["placements"][p]
            if c["sites"]:
                cells.append(f"{c['sites']} / +{c['params']:,}")
                diffs.append(c["max_abs_diff"])
            else:
                cells.append("opaque" if c["refused"] == "opaque" else "—")
        diff = f"{max(diffs):.1e}" if diffs else "—"
        blocks = f"{len(r['opaque'])} ({len(r['opaque_with_se'])})" if r["opaque"] else "—"
        lines.append(f"| {r['model']} | {r['config']} | {r['params']:,} | {blocks} | "
                     + " | ".join(cells) + f" | {diff} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args(argv)
    import keras_hub

    rows = []
    for row_name, class_name, kwargs, source in CONFIGS:
        if args.models and row_name not in args.models:
            continue
        rows.append(count(row_name, class_name, kwargs, source))
        r = rows[-1]
        print(row_name, r.get("error") or {p: c["sites"] or c["refused"]
                                           for p, c in r["placements"].items()}, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = {
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "note": f"sites / parameters added per placement; r=16, biases on; random weights; "
                f"{SIZE}x{SIZE} input; max |difference| of the outputs at init (identity); "
                "'opaque': refused, subclassed blocks hide the sites",
        "rows": rows,
    }
    (RESULTS / "hub_table.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    table = markdown(rows)
    (RESULTS / "hub_table.md").write_text(table + "\n")
    if args.write_readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        new = re.sub(
            r"(<!-- hub-table:start -->\n).*?(\n<!-- hub-table:end -->)",
            lambda m: m.group(1) + table + m.group(2),
            text,
            flags=re.S,
        )
        readme.write_text(new)
    print(table)


if __name__ == "__main__":
    main()
