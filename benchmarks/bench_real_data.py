"""Fine-tuning on real photographs: SE against no SE, and what the defaults do.

    python benchmarks/bench_real_data.py [--quick] [--seeds 0 1 2] [--epochs 10]
    python benchmarks/bench_real_data.py --ablation [--seeds 0 1]

The data: 4 classes of 32x32 JPEG tiles cut from four photographs that the
scikit-image wheel bundles (astronaut, cat, coffee, rocket; public domain or
CC0), 240 training and 60 validation tiles per class, validation tiles from
grid cells of each photograph that no training tile touches
(`tests/_real_images.py`). Chance is 0.25.

Default mode: MobileNetV2 (alpha 1.0, random init, the SE zoo's placement
after each block's depthwise ReLU6, identity init) and the same model
without SE, trained with the same data, budget and seeds under the
defaults `keras_se.defaults.plan_defaults` chooses for a from-scratch run;
every run also records the validation accuracy after recalibrating the
BatchNorm statistics (`keras_se.batchnorm.recalibrate_batchnorm`). Results:
`benchmarks/results/real_data.{json,md}`.

`--ablation`: one factor at a time from the pre-issue-14 command-line
defaults (BatchNorm momentum 0.999 as MobileNetV2 ships, 32 px, no
augmentation, Adam 1e-3 cosine, MobileNetV2 preprocessing), to find what makes
a from-scratch run on real photographs stay at chance. Results:
`benchmarks/results/real_data_ablation.{json,md}`.

Needs scikit-image (a test extra: `pip install -e '.[test]'`). Every run is
`keras.utils.set_random_seed(seed)` and `load_data(..., seed=seed)`; TensorFlow
on CPU is not bit-deterministic across thread schedules, hence the seeds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import keras  # noqa: E402
from _real_images import write_photo_folder  # noqa: E402
from _timing import machine_info, write_results  # noqa: E402

import keras_se  # noqa: E402
from keras_se import applications  # noqa: E402
from keras_se.batchnorm import recalibrate_batchnorm  # noqa: E402
from keras_se.data import load_data  # noqa: E402
from keras_se.finetune import add_classifier_head, finetune, set_batchnorm_momentum  # noqa: E402

# The command line's pre-issue-14 defaults for `finetune mobilenet_v2 --weights none
# --image-size 32` (what issue 14 ran).
OLD_DEFAULTS = dict(
    image_size=32, bn_momentum=None, augment=False, lr=1e-3, schedule="cosine",
    preprocess="mobilenet_v2", dropout=0.2, batch_size=32, alpha=1.0,
)


def _preprocess(name):
    if name == "none":
        return None
    return getattr(keras.applications, name).preprocess_input


def run(folder, *, se=True, epochs=10, seed=0, image_size=32, bn_momentum=None, augment=False,
        lr=1e-3, schedule="cosine", preprocess="mobilenet_v2", dropout=0.2, batch_size=32,
        alpha=1.0, weight_decay=0.0, recalibrate_before=False, verbose=0):
    """One from-scratch fine-tuning run; returns its numbers (validation before and after
    recalibrating BatchNorm, training accuracy in inference mode, the history)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    common = dict(image_size=image_size, batch_size=batch_size,
                  preprocess=_preprocess(preprocess), seed=seed)
    data = load_data(folder, augment=augment, **common)
    plain = load_data(folder, augment=False, **common)  # for recalibration and train accuracy
    backbone = keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False, weights=None
    )
    sites = 0
    if se:
        family = applications.model_info("se_mobilenet_v2").family
        backbone, report = keras_se.add_se_blocks(
            backbone, family.placement, select=family.select, return_report=True
        )
        sites = len(report.sites)
    model = add_classifier_head(backbone, data.num_classes, dropout=dropout)
    if bn_momentum is not None:
        set_batchnorm_momentum(model, bn_momentum)
    if recalibrate_before:
        recalibrate_batchnorm(model, plain.train)
    start = time.time()
    result = finetune(
        model, data.train, data.validation, epochs=epochs, learning_rate=lr, schedule=schedule,
        freeze="none", evaluate_before=False, verbose=verbose, weight_decay=weight_decay,
    )
    seconds = time.time() - start
    model = result.model

    def acc(ds):
        return float(model.evaluate(ds, verbose=0, return_dict=True)["accuracy"])

    val, train_inference = acc(plain.validation), acc(plain.train)
    rep = recalibrate_batchnorm(model, plain.train)
    val_recal, train_recal = acc(plain.validation), acc(plain.train)
    history = result.history
    return {
        "val_accuracy": val,
        "val_accuracy_recalibrated": val_recal,
        "train_accuracy_inference": train_inference,
        "train_accuracy_inference_recalibrated": train_recal,
        "train_accuracy_last_epoch": history["accuracy"][-1],
        "val_accuracy_per_epoch": [round(v, 4) for v in history["val_accuracy"]],
        "val_loss_per_epoch": [round(v, 4) for v in history["val_loss"]],
        "train_accuracy_per_epoch": [round(v, 4) for v in history["accuracy"]],
        "bn_max_mean_shift": round(rep.max_mean_shift, 2),
        "bn_max_log_variance_ratio": round(rep.max_log_variance_ratio, 2),
        "se_sites": sites,
        "train_seconds": round(seconds, 1),
    }


def _stats(values):
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(mean, 4), "sd": round(sd, 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "values": [round(v, 4) for v in values]}


def _fmt(s):
    return f"{s['mean']:.3f} ± {s['sd']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


ABLATION = [
    # (label, change, key: run with every seed; others with the first seed only)
    ("pre-issue defaults (momentum 0.999, 32 px, no augmentation, lr 1e-3 cosine)", {}, True),
    ("BatchNorm momentum 0.9", {"bn_momentum": 0.9}, True),
    ("BatchNorm momentum 0.99", {"bn_momentum": 0.99}, False),
    ("recalibrate BatchNorm before training (momentum 0.999)", {"recalibrate_before": True}, False),
    ("augmentation on", {"augment": True}, True),
    ("upsampled to 64 px", {"image_size": 64}, True),
    ("upsampled to 96 px", {"image_size": 96}, False),
    ("lr 1e-2 cosine (the demo's)", {"lr": 1e-2}, False),
    ("lr 1e-3 constant", {"schedule": "constant"}, False),
    ("no preprocessing (pixels 0-255)", {"preprocess": "none"}, False),
    ("dropout 0.5", {"dropout": 0.5}, False),
    ("all three: momentum 0.9, augmentation, lr 1e-2 (32 px)",
     {"bn_momentum": 0.9, "augment": True, "lr": 1e-2}, True),
]


def ablation(folder, seeds, epochs, quick, indices=None, merge=False):
    """Runs the cases; with `merge`, adds to the runs already in the results file."""
    import json

    from _timing import RESULTS_DIR

    results = {}  # case label -> {seed: run}
    if merge:
        try:
            old = json.loads((RESULTS_DIR / "real_data_ablation.json").read_text())["results"]
            for case in old["cases"]:
                for i, r in enumerate(case["runs"]):
                    results.setdefault(case["case"], {})[r.get("seed", case["seeds"][i])] = r
        except (OSError, ValueError, KeyError):
            pass
    cases = ABLATION[:3] if quick else ABLATION
    if indices is not None:
        cases = [cases[i] for i in indices]
    for label, change, key in cases:
        config = {**OLD_DEFAULTS, **change}
        for seed in seeds if key else seeds[:1]:
            r = run(folder, se=True, epochs=epochs, seed=seed, **config)
            r["seed"] = seed
            print(label, seed, {k: r[k] for k in ("val_accuracy", "val_accuracy_recalibrated",
                                                  "train_accuracy_inference",
                                                  "train_accuracy_last_epoch", "train_seconds")},
                  flush=True)
            results.setdefault(label, {})[seed] = r
            _write_ablation(results, epochs)


def _write_ablation(results, epochs):
    rows, raw, seeds = [], [], set()
    for label, change, _ in ABLATION:
        if label not in results:
            continue
        runs = [results[label][k] for k in sorted(results[label])]
        seeds.update(results[label])
        entry = {"case": label, "change": change, "runs": runs, "seeds": sorted(results[label])}
        for key in ("val_accuracy", "val_accuracy_recalibrated", "train_accuracy_inference",
                    "train_accuracy_last_epoch"):
            entry[key] = _stats([r[key] for r in runs])
        raw.append(entry)
        rows.append({
            "case": label,
            "val": _fmt(entry["val_accuracy"]),
            "val_recal": _fmt(entry["val_accuracy_recalibrated"]),
            "train_inf": _fmt(entry["train_accuracy_inference"]),
            "train_fit": _fmt(entry["train_accuracy_last_epoch"]),
            "secs": round(statistics.fmean(r["train_seconds"] for r in runs)),
            "n": len(runs),
        })
    seeds = sorted(seeds)
    columns = [
        ("case", "change from the pre-issue defaults"),
        ("val", "validation accuracy"),
        ("val_recal", "after recalibrate_batchnorm"),
        ("train_inf", "train accuracy, inference mode"),
        ("train_fit", "train accuracy in fit (last epoch)"),
        ("n", "seeds"),
        ("secs", "train s/run"),
    ]
    write_results(
        "real_data_ablation",
        "Why a from-scratch run on real photographs stays at chance: one factor at a time",
        rows, columns,
        data={"cases": raw, "seeds": seeds, "epochs": epochs, "base": OLD_DEFAULTS},
        intro=(
            f"SE-MobileNetV2 (alpha 1.0, random init), 4 classes of real-photo tiles "
            f"(960 train / 240 validation, 32x32 JPEG, chance 0.25), {epochs} epochs, batch 32, "
            f"seeds {seeds}; mean ± sd (min-max) over seeds. 'After recalibrate_batchnorm': the "
            "same trained model once its BatchNorm moving statistics are re-estimated from the "
            "(un-augmented) training images. 'Train accuracy, inference mode': the model "
            "evaluated on its own training images with the moving statistics."
        ),
        info=machine_info(),
    )


def _verdict(paired, n):
    """One honest sentence about a paired difference over n seeds."""
    if n < 2:
        return "One seed: no spread, no conclusion."
    half_width = 2 * paired["sd"] / n**0.5
    if abs(paired["mean"]) <= half_width:
        return (f"Here the SE − no SE difference ({paired['mean']:+.3f}) is within two standard "
                f"errors ({half_width:.3f}) of zero over {n} seeds: no measurable effect.")
    side = "helps" if paired["mean"] > 0 else "hurts"
    return (f"Here SE {side}: {paired['mean']:+.3f}, more than two standard errors "
            f"({half_width:.3f}) from zero over {n} seeds.")


def compare(folder, seeds, epochs, quick):
    from keras_se.defaults import plan_defaults

    plan = plan_defaults(
        pretrained=False, num_train=960, epochs=epochs, batch_size=32, image_size=32,
        min_image_size=64, model_momentum=0.999,
    )
    planned = plan.training_kwargs()
    planned["lr"] = planned.pop("learning_rate")
    planned.pop("recalibrate_bn")  # every run reports both, with and without
    planned["image_size"] = planned["image_size"][0]
    config = {**OLD_DEFAULTS, **planned}
    raw, rows = {}, []
    for se in (True, False):
        runs = []
        for seed in seeds:
            r = run(folder, se=se, epochs=epochs, seed=seed, **config)
            print("SE" if se else "no SE", seed, r["val_accuracy"], r["val_accuracy_recalibrated"],
                  r["train_seconds"], flush=True)
            runs.append(r)
        name = "SE" if se else "no SE"
        raw[name] = {"runs": runs,
                     "val_accuracy": _stats([r["val_accuracy"] for r in runs]),
                     "val_accuracy_recalibrated": _stats(
                         [r["val_accuracy_recalibrated"] for r in runs])}
        rows.append({"model": f"MobileNetV2{' + SE' if se else ''}",
                     "sites": runs[0]["se_sites"],
                     "val": _fmt(raw[name]["val_accuracy"]),
                     "val_recal": _fmt(raw[name]["val_accuracy_recalibrated"]),
                     "secs": round(statistics.fmean(r["train_seconds"] for r in runs))})
    diffs = [a["val_accuracy"] - b["val_accuracy"]
             for a, b in zip(raw["SE"]["runs"], raw["no SE"]["runs"])]
    paired = _stats(diffs)
    raw["paired_difference_se_minus_no_se"] = paired
    columns = [("model", "model"), ("sites", "SE blocks"), ("val", "validation accuracy"),
               ("val_recal", "after recalibrate_batchnorm"), ("secs", "train s/run")]
    sections = [
        f"Paired difference SE − no SE (same seed): {paired['mean']:+.3f} ± {paired['sd']:.3f} "
        f"(per seed: {', '.join(f'{d:+.3f}' for d in paired['values'])}).",
        "Settings (plan_defaults for a from-scratch run): "
        + "; ".join(f"{c.name}={c.value} ({c.reason})" for c in plan.choices),
        "For comparison, the paper (arXiv:1709.01507, Table 3) reports SE lowering MobileNet's "
        "ImageNet top-1 error from 28.4% to 25.3% after full ImageNet training; this is a "
        f"{epochs}-epoch run from scratch on 960 images. "
        + _verdict(paired, len(seeds)),
    ]
    write_results(
        "real_data",
        "SE vs no SE, fine-tuned on real photographs with the same budget and seeds",
        rows, columns,
        data={"results": raw, "seeds": seeds, "epochs": epochs, "config": config},
        intro=(
            f"MobileNetV2 (alpha 1.0, random init) with and without the SE zoo's blocks, 4 "
            f"classes of real-photo tiles (960 train / 240 validation, 32x32 JPEG cut from "
            f"scikit-image's bundled photographs, validation from unseen regions; chance "
            f"0.25), {epochs} epochs, seeds {seeds}; mean ± sd (min-max) over seeds."
        ),
        sections=sections,
        info=machine_info(),
    )


def retrofit(folder, seeds, epochs, quick, alpha=0.35):
    """Frozen pretrained backbone + SE (phase 1): validation with and without recalibrating
    BatchNorm afterwards; then phase 2 (everything trains, lr 1e-4)."""
    from keras_se.finetune import unfreeze

    pp = _preprocess("mobilenet_v2")
    common = dict(image_size=32, batch_size=32, preprocess=pp)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    data = load_data(folder, seed=0, **common)
    stock = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=alpha,
                                           include_top=False, weights=None)
    clf = add_classifier_head(stock, data.num_classes)
    set_batchnorm_momentum(clf, 0.9)
    pre_epochs = 3 if quick else 10
    finetune(clf, data.train, epochs=pre_epochs, learning_rate=3e-3, freeze="none",
             evaluate_before=False, verbose=0)
    recalibrate_batchnorm(clf, data.train)
    pretrained_acc = float(clf.evaluate(data.validation, verbose=0, return_dict=True)["accuracy"])
    tmp = tempfile.mkdtemp()
    weights = os.path.join(tmp, "stock.weights.h5")
    stock.save_weights(weights)
    print("pretrained stock model, validation accuracy", pretrained_acc, flush=True)
    family = applications.model_info("se_mobilenet_v2").family
    runs = []
    for seed in seeds:
        for se in (True, False):
            keras.backend.clear_session()
            keras.utils.set_random_seed(seed)
            data = load_data(folder, seed=seed, **common)
            base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=alpha,
                                                  include_top=False, weights=None)
            base.load_weights(weights)
            if se:
                base = keras_se.add_se_blocks(base, family.placement, select=family.select)
            model = add_classifier_head(base, data.num_classes)
            r1 = finetune(model, data.train, data.validation, epochs=epochs, freeze="backbone",
                          verbose=0)
            saved = [v.numpy().copy() for v in model.variables]
            rep = recalibrate_batchnorm(model, data.train)
            recal = float(model.evaluate(data.validation, verbose=0,
                                         return_dict=True)["accuracy"])
            for v, value in zip(model.variables, saved):  # back to phase 1's statistics
                v.assign(value)
            unfreeze(model)
            r2 = finetune(model, data.train, data.validation, epochs=max(1, epochs // 2),
                          learning_rate=1e-4, freeze="none", evaluate_before=False, verbose=0)
            phase2 = r2.after["accuracy"]
            recalibrate_batchnorm(model, data.train)
            phase2_recal = float(model.evaluate(data.validation, verbose=0,
                                                return_dict=True)["accuracy"])
            row = {"seed": seed, "se": se, "before": r1.before["accuracy"],
                   "phase1": r1.after["accuracy"], "phase1_recalibrated": recal,
                   "phase1_bn_max_log_variance_ratio": round(rep.max_log_variance_ratio, 3),
                   "phase2": phase2, "phase2_recalibrated": phase2_recal}
            print(row, flush=True)
            runs.append(row)
    rows, summary = [], {}
    for se in (True, False):
        mine = [r for r in runs if r["se"] == se]
        entry = {k: _stats([r[k] for r in mine]) for k in
                 ("phase1", "phase1_recalibrated", "phase2", "phase2_recalibrated")}
        summary["SE" if se else "no SE"] = entry
        rows.append({"model": "SE (identity init)" if se else "no SE",
                     **{k: _fmt(v) for k, v in entry.items()}})
    columns = [("model", "model"), ("phase1", "phase 1 (frozen backbone)"),
               ("phase1_recalibrated", "phase 1 + recalibrate_batchnorm"),
               ("phase2", "phase 2 (all trainable, lr 1e-4)"),
               ("phase2_recalibrated", "phase 2 + recalibrate_batchnorm")]
    write_results(
        "real_data_retrofit",
        "Retrofit on a frozen pretrained backbone: BatchNorm recalibration after phase 1 and 2",
        rows, columns,
        data={"runs": runs, "summary": summary, "pretrained_val_accuracy": pretrained_acc,
              "seeds": seeds, "epochs": epochs, "alpha": alpha, "pretrain_epochs": pre_epochs},
        intro=(
            f"A stock MobileNetV2 (alpha {alpha}, 32x32) trained {pre_epochs} epochs on the "
            f"real-photo tiles (validation {pretrained_acc:.3f}) stands in for ImageNet weights "
            "(offline). Phase 1: stock model + weights file, SE blocks (zoo placement, identity "
            f"init) or none, a new head, backbone frozen, {epochs} epochs, Adam 1e-3 cosine. "
            "'+ recalibrate_batchnorm': the same model with every BatchNorm's statistics "
            "re-estimated from the training images (frozen ones too). Phase 2 starts from phase "
            f"1's model (not recalibrated): unfreeze, {max(1, epochs // 2)} epochs at 1e-4 (BatchNorm "
            f"momentum 0.999 as shipped). Seeds {seeds}; mean ± sd (min-max)."
        ),
        info=machine_info(),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablation", action="store_true", help="one factor at a time")
    parser.add_argument("--retrofit", action="store_true",
                        help="frozen pretrained backbone + SE: recalibration after phase 1/2")
    parser.add_argument("--quick", action="store_true", help="fewer cases / epochs")
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--merge", action="store_true",
                        help="--ablation: add to the runs already in the results file")
    parser.add_argument("--cases", type=int, nargs="*", default=None,
                        help="--ablation: the indices of the cases to run (default: all)")
    parser.add_argument("--data", default=None, help="an existing tree (else written to a temp dir)")
    args = parser.parse_args(argv)
    seeds = args.seeds or ([0, 1] if args.ablation else [0, 1, 2])
    epochs = args.epochs or (3 if args.quick else 10)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or os.path.join(tmp, "photos")
        if not args.data:
            write_photo_folder(folder)
        if args.ablation:
            ablation(folder, seeds, epochs, args.quick, args.cases, args.merge)
        elif args.retrofit:
            retrofit(folder, seeds, args.epochs or (2 if args.quick else 5), args.quick)
        else:
            compare(folder, seeds, epochs, args.quick)


if __name__ == "__main__":
    main()
