"""`keras-se finetune MODEL --data DATA --out DIR`: retrofit, add a head, fine-tune, save.

`execute(args)` does the work and returns a `FinetuneRun`; `main(args)` prints it.
`keras-se demo` calls `execute` with its own argument list.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from keras_se.cli import command
from keras_se.cli._args import (
    UsageError,
    add_build_arguments,
    add_model_argument,
    add_output_arguments,
    add_se_arguments,
    fraction,
    image_size,
    positive_float,
    positive_int,
    resolve_init,
    se_options,
    usage_errors,
)
from keras_se.cli._output import OutputDir, relative, remove
from keras_se.cli._report import se_summary

# The settings an interrupted run must share with the run that resumes it.
_SETTINGS = (
    "model", "data", "batch_size", "image_size", "freeze", "weights", "placement",
    "select", "ratio", "squeeze", "gate", "init", "no_se", "head", "dropout",
    "val_split", "seed", "alpha", "bn_momentum", "preprocess", "lr", "schedule",
    "augment", "recalibrate_bn", "strategy",
)


def add_arguments(p):
    from keras_se._options import BUILTIN, FREEZE_MODES, SCHEDULES, STRATEGIES
    from keras_se.defaults import RULES

    add_model_argument(p)
    p.add_argument(
        "--data",
        default=BUILTIN,
        help="builtin (the project's offline dataset), a folder with one sub-folder of "
        "images per class, or a TensorFlow Datasets name (tf_flowers, cifar10, ...; "
        "downloaded by TFDS). Default: builtin",
    )
    p.add_argument("--data-dir", default=None, help="TFDS data directory. Default: TFDS's")
    add_output_arguments(p)
    p.add_argument("--epochs", type=positive_int, default=5, help="Default: 5")
    p.add_argument(
        "--batch-size", type=positive_int, default=32,
        help="global batch size (split over replicas). Default: 32",
    )
    p.add_argument("--image-size", type=image_size, default=None, help=RULES["image_size"])
    p.add_argument("--lr", type=positive_float, default=None, help=RULES["learning_rate"])
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="Default: cosine")
    p.add_argument(
        "--freeze",
        choices=("auto", *FREEZE_MODES),
        default="auto",
        help="backbone: train only the SE layers and the new head; none: train "
        "everything; auto: backbone with pretrained weights, none with --weights none. "
        "Default: auto",
    )
    p.add_argument(
        "--val-split", type=fraction, default=None,
        help="hold out this fraction of the training data for validation. Default: the "
        "dataset's own validation split, else 0.2",
    )
    p.add_argument("--strategy", choices=STRATEGIES, default="default", help="Default: default")
    p.add_argument("--seed", type=int, default=0, help="Default: 0")
    p.add_argument(
        "--deterministic", action="store_true",
        help="reproducible to the bit on this machine (deterministic ops and data order; "
        "may be slower). Default: only the seed is fixed",
    )
    add_build_arguments(p, weights_default="imagenet")
    add_se_arguments(p)
    p.add_argument("--no-se", action="store_true", help="fine-tune without adding SE (a baseline)")
    p.add_argument(
        "--head",
        choices=("auto", "new", "keep"),
        default="auto",
        help="new: a new classifier for the data's classes; keep: the .keras model's own "
        "(its class count must match); auto: new for names, keep for files. Default: auto",
    )
    p.add_argument("--classes", type=positive_int, default=None,
                   help="expected class count (checked)")
    p.add_argument("--dropout", type=float, default=0.2, help="before the new head. Default: 0.2")
    p.add_argument("--augment", nargs="?", const="on", default="auto",
                   choices=("auto", "on", "off"), help=RULES["augment"] + " (a bare --augment: on)")
    p.add_argument("--no-cache", action="store_true", help="do not cache decoded images in memory")
    p.add_argument("--bn-momentum", type=fraction, default=None, help=RULES["bn_momentum"])
    p.add_argument("--recalibrate-bn", choices=("auto", "on", "off"), default="auto",
                   help=RULES["recalibrate_bn"])
    p.add_argument(
        "--preprocess",
        default="auto",
        help="auto (the model's own: its family's preprocess_input, torch with timm "
        "weights, a keras-hub preset's image converter, what a .keras run recorded), "
        "none, tf, torch, caffe or a keras.applications family name. Default: auto",
    )
    p.add_argument("--steps-per-epoch", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--validation-steps", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--fresh", action="store_true",
        help="discard an interrupted run in --out instead of resuming it",
    )


@dataclasses.dataclass
class FinetuneRun:
    """What `execute` did.

    Attributes:
        result: the `keras_se.finetune.FinetuneResult` (model, history, metrics).
        data: the `keras_se.data.Data` trained on.
        se_report: the `SEReport.to_dict()` of the SE blocks added (`{}` if none
            were added: `--no-se`, a zoo model, or a model that had SE).
        out: the result folder, or None for a non-chief worker.
        diffs: max abs differences of the reloaded `model.keras` and SavedModel.
        image_size: `(height, width)` trained at.
        freeze: `"backbone"` or `"none"`.
        preprocess: the preprocessing name recorded in `keras_se.json`.
        resumed: whether an interrupted run was resumed.
        plan: the `keras_se.defaults.Plan` the run used (each setting, why).
        diagnosis: the `keras_se.diagnose.Diagnosis` of a run that failed or
            looks wrong, or None.
    """

    result: object
    data: object
    se_report: dict
    out: str | None
    diffs: dict
    image_size: tuple
    freeze: str
    preprocess: str
    resumed: bool
    plan: object = None
    diagnosis: object = None


def _settings(args) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
            if k in _SETTINGS}


def _worker_suffix(strategy_name):
    if strategy_name != "multiworker":
        return None
    from keras_se.distribute import is_chief

    if is_chief():
        return None
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    return f".{task.get('type', 'worker')}{task.get('index', 0)}.partial"


def _model_builder(args, spec, num_classes, size, se_report, make_plan, chosen):
    """The function `finetune` calls (inside the strategy's scope) to build the model.

    The BatchNorm momentum is chosen once the model exists (its own momentum is the
    ceiling): `make_plan(model_momentum)` gives the final plan, kept in `chosen`.
    """
    import keras

    from keras_se import add_se_blocks
    from keras_se.models import build_model, load_model
    from keras_se.sites import se_layers
    from keras_se.transfer import (
        add_classifier_head,
        leaf_layers,
        replace_head,
        set_batchnorm_momentum,
    )

    placement, select, options = se_options(args, spec)

    def add_se(model):
        if args.no_se:
            return model
        with usage_errors():
            new, rep = add_se_blocks(model, placement, ratio=args.ratio, select=select,
                                     init=args.init, return_report=True, **options)
        se_report.clear()
        se_report.update(rep.to_dict())
        print(se_summary(se_report), flush=True)
        return new

    def build():
        if spec.kind == "file":
            model = load_model(spec.path)
            if not se_layers(model):
                model = add_se(model)
            head = args.head if args.head != "auto" else "keep"
            outputs = int(model.outputs[0].shape[-1])
            if head == "keep" and outputs != num_classes:
                raise UsageError(
                    f"class-count mismatch: the model has {outputs} outputs, the data "
                    f"{num_classes} classes; pass --head new to replace its classifier. "
                    f"Received: model={args.model!r}, data={args.data!r}"
                )
            if head == "new":
                model = replace_head(model, num_classes)
        else:
            if args.head == "keep":
                raise UsageError(
                    "`--head keep` needs a .keras model; a model built by name gets a new "
                    f"head. Received: head='keep', model={args.model!r}"
                )
            with usage_errors():
                backbone = build_model(spec, weights=args.weights, include_top=False,
                                       input_shape=(*size, 3), alpha=args.alpha)
            if not spec.has_se:  # keras.applications and keras-hub models
                backbone = add_se(backbone)
            model = add_classifier_head(backbone, num_classes, dropout=args.dropout)
        momenta = [la.momentum for la in leaf_layers(model)
                   if isinstance(la, keras.layers.BatchNormalization)]
        plan = make_plan(max(momenta) if momenta else None)
        chosen["plan"] = plan
        if plan["bn_momentum"] is not None and momenta:
            set_batchnorm_momentum(model, plan["bn_momentum"])
        print("defaults: " + "\n          ".join(plan.lines()), flush=True)
        if not isinstance(model, keras.Model):
            raise TypeError(f"`model` must build a keras.Model. Received: {type(model).__name__}")
        return model

    return build


def _data_only_tensorflow():
    """On JAX or PyTorch, TensorFlow only feeds the data (tf.data): keep it off the GPUs,
    which the backend uses, as Keras's guides do."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow had already started its devices
        pass


def _keep_or_abort(out, state_dir, error):
    """Keeps a partial run that holds a finished epoch (to resume); removes it otherwise."""
    backup = os.path.join(state_dir, "backup", "training_metadata.json")
    if os.path.exists(backup):
        error.__notes__ = [*getattr(error, "__notes__", []),
                           f"the run so far is kept in {relative(out.path)}; run the same "
                           "command again to resume it"]
    elif not out.resumed:
        out.abort()


def execute(args, *, fit_verbose=None, fresh_process_check: bool = False) -> FinetuneRun:
    """Runs `keras-se finetune` for parsed `args`; returns what it did."""
    import keras

    from keras_se.distribute import make_strategy

    # MultiWorkerMirroredStrategy must exist before TensorFlow does anything else.
    with usage_errors():
        strategy = make_strategy(args.strategy)
    backend = keras.backend.backend()
    if backend != "tensorflow":
        _data_only_tensorflow()

    from keras_se import export
    from keras_se._files import write_json
    from keras_se.cli.retrofit import sidecar
    from keras_se.data import load_data, probe_data
    from keras_se.defaults import min_useful_image_size, plan_defaults
    from keras_se.diagnose import diagnose_history
    from keras_se.finetune import finetune, make_deterministic, write_records
    from keras_se.models import (
        SIDECAR,
        default_preprocess,
        preprocess_function,
        resolve_image_size,
        resolve_model,
        resolve_weights,
    )

    if args.deterministic:
        make_deterministic(args.seed)
    else:
        keras.utils.set_random_seed(args.seed)
    with usage_errors():
        spec = resolve_model(args.model)
        weights = resolve_weights(spec, args.weights)  # a timm checkpoint: found (or not) now
    resolve_init(args, spec)
    suffix = _worker_suffix(args.strategy)
    out = OutputDir(args.out, overwrite=args.overwrite or suffix is not None, resume=True,
                    fresh=args.fresh, settings=_settings(args), suffix=suffix or ".partial")
    out.check()
    pretrained = spec.kind == "file" or weights is not None
    freeze = args.freeze if args.freeze != "auto" else ("backbone" if pretrained else "none")
    with usage_errors():
        fixed = resolve_image_size(spec, args.image_size) if spec.kind == "file" else None
        probe = probe_data(args.data, val_split=args.val_split, seed=args.seed,
                           data_dir=args.data_dir)
    # What the user set wins; the rest is chosen from the run (keras_se.defaults).
    switch = {"on": True, "off": False}
    user = {
        "image_size": fixed or args.image_size,
        "bn_momentum": args.bn_momentum,
        "recalibrate_bn": switch.get(args.recalibrate_bn),
        "augment": switch.get(args.augment),
        "learning_rate": args.lr,
    }

    def make_plan(model_momentum=None):
        return plan_defaults(
            pretrained=pretrained, num_train=probe.num_train, epochs=args.epochs,
            batch_size=args.batch_size, image_size=probe.image_size,
            min_image_size=min_useful_image_size(spec.family),
            pretrained_image_size=spec.default_size or 224, freeze=freeze,
            model_momentum=model_momentum,
            user={k: v for k, v in user.items() if v is not None},
        )

    with usage_errors():
        plan = make_plan()
    size = tuple(plan["image_size"])
    preprocess = args.preprocess
    if preprocess == "auto":  # the family's, timm's "torch", a keras-hub preset's converter
        preprocess = default_preprocess(spec, weights)
    if not args.verbose:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
    with usage_errors():
        data = load_data(args.data, image_size=size, batch_size=args.batch_size,
                         preprocess=preprocess_function(preprocess), val_split=args.val_split,
                         augment=plan["augment"], cache=not args.no_cache, seed=args.seed,
                         data_dir=args.data_dir)
    if args.classes is not None and args.classes != data.num_classes:
        raise UsageError(
            f"class-count mismatch: --classes {args.classes} but the data has "
            f"{data.num_classes} classes ({', '.join(data.class_names[:8])}"
            f"{', ...' if data.num_classes > 8 else ''}). Received: classes={args.classes}"
        )
    train, val = data.train, data.validation
    # With a fixed number of steps Keras keeps one iterator across epochs: repeat, so
    # that it never runs dry.
    if args.steps_per_epoch:
        train = train.repeat()
    if args.validation_steps:
        val = val.repeat()
    if args.strategy == "multiworker":
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train, val = train.with_options(options), val.with_options(options)
    se_report: dict = {}
    chosen = {"plan": plan}
    build = _model_builder(args, spec, data.num_classes, size, se_report, make_plan, chosen)
    out.prepare()
    name = relative(spec.path) if spec.kind == "file" else spec.name
    print(
        f"{'resuming' if out.resumed else 'starting'}: {name} on {data.description}: "
        f"{data.num_train} train / {data.num_validation} validation images, "
        f"{data.num_classes} classes, {size[0]}x{size[1]}, freeze={freeze}, "
        f"strategy={args.strategy} ({strategy.num_replicas_in_sync} replica(s)), "
        f"backend={backend}",
        flush=True,
    )
    state_dir = out.file("state")
    try:
        result = finetune(
            build, train, val, epochs=args.epochs, learning_rate=plan["learning_rate"],
            schedule=args.schedule, freeze=freeze, strategy=strategy, backup_dir=state_dir,
            steps_per_epoch=args.steps_per_epoch, validation_steps=args.validation_steps,
            verbose=fit_verbose if fit_verbose is not None else (1 if sys.stdout.isatty() else 2),
            recalibrate_bn=plan["recalibrate_bn"], recalibration_data=data.unaugmented_train,
        )
    except BaseException as e:
        _keep_or_abort(out, state_dir, e)
        raise
    plan = chosen["plan"]
    per_epoch = args.steps_per_epoch * args.batch_size if args.steps_per_epoch else data.num_train
    diagnosis = diagnose_history(result.history, data.num_classes,
                                 num_validation=data.num_validation, final=result.after,
                                 train_images_seen=len(result.history["epoch"]) * per_epoch)
    try:
        model = result.model
        inputs = next(iter(val.take(1)))[0].numpy()[:4]
        diffs = export.save_artifacts(model, out.path, inputs, fresh_process=fresh_process_check)
        extra = {
            "model": spec.name,
            "source": args.model,
            "data": data.description,
            "num_classes": data.num_classes,
            "class_names": data.class_names,
            "num_train": data.num_train,
            "num_validation": data.num_validation,
            "image_size": list(size),
            "freeze": freeze,
            "settings": _settings(args),
            "defaults": plan.to_dict(),
            "diagnosis": diagnosis.to_dict() if diagnosis is not None else None,
            "failed": bool(diagnosis is not None and diagnosis.failed),
            "reload_max_abs_diff": diffs,
        }
        if se_report:
            extra["se"] = {k: se_report[k] for k in
                           ("num_sites", "params_before", "params_added", "percent_added")}
            write_json(out.file("report.json"), se_report)
        write_records(result, out.path, extra)
        write_json(out.file(SIDECAR), sidecar(spec, model, args.model,
                                              class_names=data.class_names,
                                              preprocess=preprocess))
        remove(state_dir)
        if suffix is None:
            out.commit()
        else:
            out.abort()  # a non-chief worker: its copy of the result is not kept
    except BaseException as e:
        _keep_or_abort(out, state_dir, e)
        raise
    return FinetuneRun(result=result, data=data, se_report=se_report,
                       out=out.out if suffix is None else None, diffs=diffs, image_size=size,
                       freeze=freeze, preprocess=preprocess, resumed=out.resumed, plan=plan,
                       diagnosis=diagnosis)


@command("finetune", help="fine-tune a (retrofitted) model on a dataset", arguments=add_arguments)
def main(args) -> int:
    """Retrofits MODEL with SE (unless it has SE), adds a head for the data, fine-tunes it.

    Writes DIR/model.keras, DIR/saved_model/, DIR/history.json,
    DIR/metrics.json, DIR/curves.png, DIR/report.json (the SE sites) and
    DIR/keras_se.json (what a later command needs: preprocessing, classes).
    Kill it at any time: the same command resumes from the last finished
    epoch.

    Settings left on auto (input size, learning rate, BatchNorm momentum,
    recalibration, augmentation) are chosen from the run and printed with the
    reason (keras_se.defaults); metrics.json records them. A run whose
    validation stays at chance (or whose loss is NaN) while it trains says so
    in one line on stderr, with the flag that addresses it, and exits with 3
    (keras_se.diagnose); its outputs are still written.
    """
    from keras_se.diagnose import exit_code

    run = execute(args)
    result = run.result
    before, after = result.before or {}, result.after or {}
    print(
        f"validation accuracy: {before.get('accuracy', float('nan')):.3f} before -> "
        f"{after.get('accuracy', float('nan')):.3f} after {len(result.history['epoch'])} epochs"
        + (f" (resumed at epoch {result.initial_epoch + 1})" if result.initial_epoch else "")
    )
    if run.out is not None:
        saved = "saved_model" in run.diffs
        print(
            f"wrote {relative(run.out)}/{{model.keras, {'saved_model/, ' if saved else ''}"
            f"history.json, metrics.json, curves.png}}; reloaded "
            f"{'both models' if saved else 'model.keras'} "
            f"(max abs diff {max(run.diffs.values()):.3g})"
        )
        if not saved:
            from keras_se.export import export_support

            print(f"no saved_model/: {export_support('saved_model')}; `keras-se export "
                  f"{relative(run.out)}/model.keras --format saved_model --backend tensorflow` "
                  "makes one")
    if run.diagnosis is not None:
        kind = "failed" if run.diagnosis.failed else "warning"
        print(f"keras-se finetune: {kind}: {run.diagnosis.message}", file=sys.stderr)
    return exit_code(run.diagnosis)
