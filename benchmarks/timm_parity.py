"""Parity of the timm conversions: Keras logits against timm's, per checkpoint architecture.

For each architecture of `keras_se.applications.timm_weights.SUPPORTED`, timm builds
the model with `pretrained=False`; every weight and every BatchNorm statistic is
randomised (the scheme of tests/test_timm_weights.py: logits of standard deviation
about 3, so no BatchNorm is the identity); the model is saved as the Hugging Face Hub
holds it (`timm.models.save_for_hf`, `model.safetensors`), converted, and both
frameworks run the same preprocessed images (batch 2, uniform noise in [0, 255]) at
64, 65 and 224 px. Reported: the largest absolute logit difference, the logits'
standard deviation, and timm's own float32-vs-float64 gap on the same input (what
float32 rounding alone accounts for). For legacy_seresnet50 also the error of the
stock Keras stem (`pool1_pad` = `ZeroPadding2D(1)`), which the conversion refuses.

No real checkpoint is downloaded: random weights exercise every tensor the same way.
Writes benchmarks/results/timm_parity.json and .md. Needs torch, timm and keras-hub.

    python benchmarks/timm_parity.py [--archs legacy_seresnet50 seresnet50] [--sizes 64 65]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# triton's native library, loaded after TensorFlow, crashes the process; this CPU
# script never needs it (see tests/test_timm_weights.py).
sys.modules.setdefault("triton", None)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from keras_se.applications import _timm_maps  # noqa: E402
from keras_se.applications import timm_weights as tw  # noqa: E402

from keras_se import applications  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"


def randomise(model, seed=0):
    """The same scheme as tests/test_timm_weights.py."""
    g = torch.Generator().manual_seed(seed)

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    def normal(shape, std):
        return std * torch.randn(shape, generator=g)

    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(normal(m.weight.shape, (2.0 / m.weight[0].numel()) ** 0.5))
                if m.bias is not None:
                    m.bias.copy_(normal(m.bias.shape, 0.1))
            elif isinstance(m, torch.nn.BatchNorm2d):
                last = name.endswith(("bn3", "downsample.1", "downsample.2"))
                m.weight.copy_(uniform(m.weight.shape, *((0.2, 0.5) if last else (0.5, 1.5))))
                m.bias.copy_(normal(m.bias.shape, 0.1))
                m.running_mean.copy_(normal(m.running_mean.shape, 0.2))
                m.running_var.copy_(uniform(m.running_var.shape, 0.5, 2.0))
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(normal(m.weight.shape, 15.0 / m.in_features ** 0.5))
                m.bias.copy_(normal(m.bias.shape, 0.1))
    return model.eval()


def timm_logits(model, xp, dtype=torch.float32):
    x = torch.from_numpy(np.transpose(xp, (0, 3, 1, 2)).copy()).to(dtype)
    with torch.no_grad():
        return model.to(dtype)(x).double().numpy()


def keras_model(arch, path):
    a = tw.SUPPORTED[arch]
    if a.layout == "legacy":
        return getattr(applications, f"SEResNet{a.depth}")(
            weights=path, classifier_activation=None,
            input_tensor=keras.Input((None, None, 3)))
    return tw.from_timm(path, classifier_activation=None)


def stock_stem_model(arch, path):
    """The legacy model with Keras's stock stem, loaded past the refusal (to measure it)."""
    a = tw.SUPPORTED[arch]
    model = getattr(applications, f"SEResNet{a.depth}")(
        weights=None, init="standard", classifier_activation=None,
        input_tensor=keras.Input((None, None, 3)))
    loader = _timm_maps.Loader(tw.read_state_dict(path), path)
    loader.apply(_timm_maps.layers_by_name(model), tw.legacy_weight_map(a.stage_blocks))
    return model


def measure(arch, sizes, seed):
    row = {"arch": arch, "sizes": {}}
    t0 = time.perf_counter()
    timm_model = randomise(timm.create_model(arch, pretrained=False), seed)
    row["timm_params"] = int(sum(p.numel() for p in timm_model.parameters()))
    with tempfile.TemporaryDirectory() as d:
        timm.models.save_for_hf(timm_model, d, safe_serialization=True)
        path = os.path.join(d, "model.safetensors")
        model = keras_model(arch, path)
        row["keras_params"] = int(model.count_params())
        row["convert_s"] = round(time.perf_counter() - t0, 1)
        stock = stock_stem_model(arch, path) if arch == "legacy_seresnet50" else None
        rng = np.random.default_rng(seed)
        for size in sizes:
            x = rng.uniform(0, 255, (2, size, size, 3)).astype("float32")
            xp = np.asarray(tw.preprocess_input(x.copy()))
            ref = timm_logits(timm_model, xp)
            ref64 = timm_logits(timm_model, xp, torch.float64)
            timm_model.float()
            out = np.asarray(model(xp, training=False), dtype="float64")
            entry = {
                "max_abs_diff": float(np.abs(out - ref).max()),
                "logit_std": float(ref.std()),
                "timm_fp32_vs_fp64": float(np.abs(ref - ref64).max()),
                "keras_vs_fp64": float(np.abs(out - ref64).max()),
            }
            if stock is not None:
                entry["stock_stem_max_abs_diff"] = float(
                    np.abs(np.asarray(stock(xp, training=False)) - ref).max())
            row["sizes"][str(size)] = entry
            print(arch, size, entry, flush=True)
    return row


def render(rows) -> str:
    lines = [
        "| checkpoint architecture | params: timm / Keras | size | max abs logit diff | "
        "logit std | timm fp32 vs fp64 | Keras vs fp64 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for size, e in r["sizes"].items():
            lines.append(
                f"| {r['arch']} | {r['timm_params']:,} / {r['keras_params']:,} | {size} | "
                f"{e['max_abs_diff']:.1e} | {e['logit_std']:.2f} | "
                f"{e['timm_fp32_vs_fp64']:.1e} | {e['keras_vs_fp64']:.1e} |")
    stock = [(r["arch"], s, e["stock_stem_max_abs_diff"]) for r in rows
             for s, e in r["sizes"].items() if "stock_stem_max_abs_diff" in e]
    if stock:
        lines.append("")
        lines.append("With Keras's stock stem (`ZeroPadding2D(1)` before the pool), refused "
                     "by the conversion: " + "; ".join(
                         f"{a} at {s} px: max abs logit diff {d:.2f}" for a, s, d in stock))
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=list(tw.SUPPORTED))
    p.add_argument("--sizes", nargs="+", type=int, default=[64, 65, 224])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = []
    for arch in args.archs:
        rows.append(measure(arch, args.sizes, args.seed))
        keras.backend.clear_session()
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
            "python": sys.version.split()[0], "keras": keras.__version__,
            "torch": torch.__version__, "timm": timm.__version__}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "timm_parity.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                         indent=1))
    (RESULTS / "timm_parity.md").write_text(
        f"# timm conversion parity ({meta['date']}, Keras {meta['keras']}, torch "
        f"{meta['torch']}, timm {meta['timm']})\n\n" + render(rows))
    print(render(rows))


if __name__ == "__main__":
    main()
