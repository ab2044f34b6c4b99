"""The `keras-se` command line (also `python -m keras_se`).

Sub-commands::

    keras-se sites MODEL [--placement P] [--select REGEX]
    keras-se retrofit MODEL --out DIR [--placement ... --weights imagenet|none|PATH]
    keras-se finetune MODEL --data DATA --out DIR [--epochs ... --strategy ...]
    keras-se export MODEL.keras --format saved_model|tflite --out PATH
    keras-se inspect MODEL.keras --data DATA --out DIR
    keras-se demo [--out runs/demo]

MODEL is a `keras.applications` name (`resnet50`, `mobilenet_v2`,
`MobileNetV2`: case, `_` and `-` do not matter), an SE zoo name
(`seresnet50`) or a path to a `.keras` file (or to a directory holding
`model.keras`, as written by `retrofit` and `finetune`).

Results are written into a temporary directory beside `--out` and moved into
place only when complete; an `--out` that holds a finished result is kept
unless `--overwrite` is given. An interrupted `finetune` keeps its temporary
directory (`.NAME.partial` beside `--out`) and resumes from it when run again
with the same arguments.

Every bad input ends with one line on stderr and exit code 2; library errors
(`ValueError`, `TypeError`) are reported the same way. Other failures exit
with 1 (`--traceback` shows the Python traceback).

Adding a sub-command is one function: write `run(args) -> int` and decorate
it with `@command("name", help=..., arguments=add_arguments)`, where
`add_arguments(parser)` adds its options (the shared ones are helpers here:
`add_model_argument`, `add_se_arguments`, `add_output_arguments`). Helpers
for commands: `resolve_model`, `build_model`, `load_keras_file`,
`OutputDir`, `preprocess_function`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import io
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable

PROG = "keras-se"
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
SIDECAR = "keras_se.json"
DEFAULT_DEMO_OUT = os.path.join("runs", "demo")

# Non-224 default input sizes of keras.applications models (the rest use 224).
_DEFAULT_SIZES = {
    "InceptionV3": 299,
    "InceptionResNetV2": 299,
    "Xception": 299,
    "NASNetLarge": 331,
    "EfficientNetB1": 240,
    "EfficientNetB2": 260,
    "EfficientNetB3": 300,
    "EfficientNetB4": 380,
    "EfficientNetB5": 456,
    "EfficientNetB6": 528,
    "EfficientNetB7": 600,
    "EfficientNetV2B1": 240,
    "EfficientNetV2B2": 260,
    "EfficientNetV2B3": 300,
    "EfficientNetV2S": 384,
    "EfficientNetV2M": 480,
    "EfficientNetV2L": 480,
}
PREPROCESS_MODES = ("none", "tf", "torch", "caffe")


# ==========================================================================
# The command registry.
# ==========================================================================
@dataclasses.dataclass
class Command:
    """One sub-command: its name, help, argument adder and runner."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


COMMANDS: dict[str, Command] = {}


def command(name: str, *, help: str, arguments: Callable, description: str | None = None):
    """Registers the decorated `run(args) -> int` as sub-command `name`."""

    def decorator(run):
        doc = description or inspect.cleandoc(run.__doc__ or "") or None
        COMMANDS[name] = Command(name, help, arguments, run, doc)
        return run

    return decorator


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The `keras-se` parser with every registered sub-command."""
    from keras_se import __version__

    parser = _Parser(
        prog=PROG,
        description="Squeeze-and-Excitation for Keras models: find sites, retrofit, "
        "fine-tune, export.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cmd in COMMANDS.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.arguments(p)
        p.add_argument(
            "--traceback",
            action="store_true",
            help="show the Python traceback of an error instead of one line",
        )
        p.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="show TensorFlow's and Python's warnings",
        )
    return parser


# ==========================================================================
# Argument types and shared arguments.
# ==========================================================================
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """`96` or `96x128` (height x width)."""
    parts = re.split(r"[x,]", text.strip().lower())
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive size like 96 or 96x128, got {text!r}"
        )
    return tuple(values)


def input_shape(text: str) -> tuple[int, int, int]:
    """`224,224,3` or `224x224x3`."""
    parts = re.split(r"[x,]", text.strip().lower())
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 2:
        values.append(3)
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a shape like 224,224,3 (height, width, channels), got {text!r}"
        )
    return tuple(values)


def add_model_argument(p: argparse.ArgumentParser, help_extra: str = ""):
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a keras.applications name (resnet50, mobilenet_v2, ...), an SE zoo name "
        f"(seresnet50, ...) or a path to a .keras file{help_extra}",
    )


def add_build_arguments(p: argparse.ArgumentParser, *, weights_default: str):
    p.add_argument(
        "--weights",
        default=weights_default,
        help="imagenet, none, or a path to a .weights.h5 file of the model "
        f"(for keras.applications and zoo names). Default: {weights_default}",
    )
    p.add_argument(
        "--alpha",
        type=positive_float,
        default=None,
        help="width multiplier of MobileNet models",
    )


def add_se_arguments(p: argparse.ArgumentParser):
    from keras_se.layers import GATES, SQUEEZES
    from keras_se.sites import PLACEMENTS

    p.add_argument(
        "--placement",
        default="auto",
        choices=("auto",) + tuple(PLACEMENTS),
        help="where SE blocks go; auto: the SE zoo's placement for the family "
        "(post_activation otherwise). Default: auto",
    )
    p.add_argument(
        "--select",
        default=None,
        help="regular expression on the anchor layer's name; only matching sites "
        "(with --placement auto: the zoo's for the family)",
    )
    p.add_argument("--ratio", type=positive_int, default=16, help="reduction ratio. Default: 16")
    p.add_argument("--squeeze", default="avg", choices=SQUEEZES, help="Default: avg")
    p.add_argument("--gate", default="sigmoid", choices=GATES, help="Default: sigmoid")
    p.add_argument(
        "--init",
        default="identity",
        choices=("identity", "standard"),
        help="identity: the retrofitted model computes exactly what the original did "
        "until trained. Default: identity",
    )


def add_output_arguments(p: argparse.ArgumentParser, *, required=True, default=None, what="DIR"):
    p.add_argument(
        "--out",
        required=required,
        default=default,
        metavar=what,
        help="where the result goes" + (f". Default: {default}" if default else ""),
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished result already in --out",
    )


# ==========================================================================
# Models.
# ==========================================================================
def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


@dataclasses.dataclass
class ModelSpec:
    """What a MODEL argument names.

    Attributes:
        kind: `"application"`, `"zoo"` or `"file"`.
        name: the constructor's name (`"MobileNetV2"`, `"SEResNet50"`) or the
            file's path.
        constructor: the constructor, or None for a file.
        family: the `keras.applications` module name (`"mobilenet_v2"`),
            whose `preprocess_input` the model expects, or None if unknown.
        default_size: the default input size, or None.
        placement: the SE zoo's placement for the family, or None.
        select: the SE zoo's `select` for the family, or None.
        path: the `.keras` file, for `kind="file"`.
    """

    kind: str
    name: str
    constructor: Callable | None = None
    family: str | None = None
    default_size: int | None = None
    placement: str | None = None
    select: str | None = None
    path: str | None = None


def _zoo():
    try:
        from keras_se import applications
    except ImportError:
        return None
    if not hasattr(applications, "model_info") or not hasattr(applications, "list_models"):
        return None
    return applications


def application_constructors() -> dict[str, Callable]:
    """`{"MobileNetV2": keras.applications.MobileNetV2, ...}`."""
    import keras

    return {
        n: getattr(keras.applications, n)
        for n in dir(keras.applications)
        if n[:1].isupper() and callable(getattr(keras.applications, n))
    }


def _family_of(constructor) -> str | None:
    import keras

    module = constructor.__module__.rsplit(".", 1)[-1]
    return module if hasattr(getattr(keras.applications, module, None), "preprocess_input") else None


def _zoo_family(zoo, base_name):
    """(placement, select) of the zoo's SE variant of `base_name`, or (None, None)."""
    if zoo is None:
        return None, None
    try:
        info = zoo.model_info("SE" + base_name)
    except (ValueError, TypeError):
        return None, None
    return info.family.placement, info.family.select


def model_names() -> list[str]:
    """Every name MODEL accepts besides a path, lower case."""
    names = [n.lower() for n in application_constructors()]
    zoo = _zoo()
    if zoo is not None:
        names += [n.lower() for n in zoo.list_models()]
    return sorted(set(names))


def resolve_model(text: str) -> ModelSpec:
    """Resolves a MODEL argument; raises `ValueError` for an unknown one.

    Args:
        text: a `keras.applications` name (case-insensitive; `_`, `-` ignored),
            an SE zoo name, or a path to a `.keras` file or to a directory
            holding `model.keras`.

    Returns:
        A `ModelSpec`.
    """
    if not isinstance(text, str) or not text:
        raise TypeError(f"`model` must be a non-empty string. Received: model={text!r}")
    looks_like_path = text.endswith(".keras") or os.sep in text or os.path.exists(text)
    if looks_like_path:
        path = text
        if os.path.isdir(path):
            path = os.path.join(path, MODEL_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"`model` file does not exist: {path}. Received: model={text!r}")
        if not path.endswith(".keras"):
            raise ValueError(
                "`model` must be a keras.applications name, an SE zoo name or a .keras "
                f"file. Received: model={text!r}"
            )
        sidecar = read_sidecar(os.path.dirname(os.path.abspath(path)))
        return ModelSpec(kind="file", name=path, path=path, family=sidecar.get("family"))
    key = _key(text)
    zoo = _zoo()
    for name, ctor in application_constructors().items():
        if _key(name) == key:
            placement, select = _zoo_family(zoo, name)
            return ModelSpec(
                kind="application",
                name=name,
                constructor=ctor,
                family=_family_of(ctor),
                default_size=_DEFAULT_SIZES.get(name, 224),
                placement=placement,
                select=select,
            )
    if zoo is not None:
        try:
            info = zoo.model_info(text)
        except (ValueError, TypeError):
            info = None
        if info is not None:
            return ModelSpec(
                kind="zoo",
                name=info.name,
                constructor=info.constructor,
                family=info.module.__name__.rsplit(".", 1)[-1],
                default_size=info.default_size,
                placement=info.family.placement,
                select=info.family.select,
            )
    names = model_names()
    by_key = {_key(n): n for n in names}
    near = [n for k, n in by_key.items() if k.startswith(key) or (len(k) > 3 and key.startswith(k))]
    near = sorted(near, key=len)[:4]
    for k in difflib.get_close_matches(key, list(by_key), n=4, cutoff=0.6):
        if by_key[k] not in near and len(near) < 5:
            near.append(by_key[k])
    hint = f" Did you mean: {', '.join(near)}?" if near else " Run `keras-se sites --help` for the forms."
    raise ValueError(
        "`model` is not a keras.applications name, an SE zoo name or a .keras file."
        f"{hint} Received: model={text!r}"
    )


def load_keras_file(path: str):
    """`keras.saving.load_model(path)` (safe mode), errors as `ValueError`."""
    import keras

    import keras_se  # noqa: F401  (registers the SE layer for deserialisation)

    try:
        return keras.saving.load_model(path)
    except Exception as e:  # noqa: BLE001 - any failure to read the file is bad input
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"`model` could not be loaded as a Keras model ({type(e).__name__}: {first}). "
            f"Received: model={path!r}"
        ) from e


def _weights_argument(weights: str | None):
    if weights is None or weights.lower() in ("none", "null", ""):
        return None
    if weights.lower() == "imagenet":
        return "imagenet"
    if not os.path.isfile(weights):
        raise ValueError(
            f"`weights` must be 'imagenet', 'none' or an existing weights file. "
            f"Received: weights={weights!r}"
        )
    return weights


def build_model(
    spec: ModelSpec,
    *,
    weights: str | None = None,
    include_top: bool = True,
    input_shape: tuple | None = None,
    classes: int | None = None,
    alpha: float | None = None,
    pooling: str | None = None,
):
    """Builds (or loads) the model a `ModelSpec` names.

    For names: the constructor with `weights` (`"imagenet"`, None or a
    `.weights.h5` path loaded after construction), `include_top`,
    `input_shape`, `classes`, `alpha` (MobileNets) and `pooling`. For files:
    `load_keras_file`. Constructor errors are `ValueError`s.
    """
    if spec.kind == "file":
        return load_keras_file(spec.path)
    weights = _weights_argument(weights)
    kwargs = {"include_top": include_top, "weights": weights if weights == "imagenet" else None}
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    if classes is not None:
        kwargs["classes"] = classes
    if pooling is not None:
        kwargs["pooling"] = pooling
    params = inspect.signature(spec.constructor).parameters
    if alpha is not None:
        if "alpha" not in params:
            raise ValueError(
                f"`alpha` is a width multiplier of MobileNet models; {spec.name} has none. "
                f"Received: alpha={alpha!r}"
            )
        kwargs["alpha"] = alpha
    try:
        model = spec.constructor(**kwargs)
    except ValueError as e:
        raise ValueError(f"{spec.name}: {' '.join(str(e).split())}") from e
    except Exception as e:  # noqa: BLE001
        if weights == "imagenet":
            raise RuntimeError(
                f"could not get the ImageNet weights of {spec.name} ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}); they are downloaded on first use and "
                "need the network. Use --weights none or a local weights file."
            ) from e
        raise
    if weights not in (None, "imagenet"):
        try:
            model.load_weights(weights)
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"`weights` file does not fit {spec.name} ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}). Received: weights={weights!r}"
            ) from e
    return model


def se_options(args, spec: ModelSpec) -> tuple[str, str | None, dict]:
    """(placement, select, SqueezeExcite options) from the SE arguments."""
    placement, select = args.placement, args.select
    if placement == "auto":
        placement = spec.placement or "post_activation"
        if select is None:
            select = spec.select
    return placement, select, {"squeeze": args.squeeze, "gate": args.gate}


def preprocess_function(name: str | None):
    """The `preprocess_input` named `name`.

    `None`/`"none"`: no preprocessing (the model gets pixels in [0, 255]);
    `"tf"`, `"torch"`, `"caffe"`: `imagenet_utils.preprocess_input` modes; a
    `keras.applications` module name (`"mobilenet_v2"`, `"resnet"`): that
    family's `preprocess_input`.
    """
    import functools

    import keras

    if name in (None, "none"):
        return None
    if name in ("tf", "torch", "caffe"):
        return functools.partial(keras.applications.imagenet_utils.preprocess_input, mode=name)
    module = getattr(keras.applications, name, None)
    if module is None or not hasattr(module, "preprocess_input"):
        families = sorted(
            n
            for n in dir(keras.applications)
            if hasattr(getattr(keras.applications, n), "preprocess_input") and n != "imagenet_utils"
        )
        raise ValueError(
            "`preprocess` must be none, tf, torch, caffe or a keras.applications family "
            f"({', '.join(families)}). Received: preprocess={name!r}"
        )
    return module.preprocess_input


def read_sidecar(directory: str) -> dict:
    try:
        with open(os.path.join(directory, SIDECAR), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def count_se_layers(model) -> int:
    from keras_se.finetune import leaf_layers
    from keras_se.layers import SqueezeExcite

    return sum(isinstance(layer, SqueezeExcite) for layer in leaf_layers(model))


# ==========================================================================
# Output directories.
# ==========================================================================
class OutputDir:
    """A result directory written in a temporary sibling and moved into place.

    `prepare()` checks `--out` (a finished result there needs `overwrite`; its
    parent must be creatable and writable) and creates `.NAME.partial` beside
    it, or reuses it with `resume=True`. Write into `.path`; `commit()` moves
    it to `--out` (replacing an old result only now); `abort()` removes it.

    Args:
        out: the final path.
        overwrite: replace a finished result.
        resume: reuse an existing partial directory (an interrupted run).
        settings: the run's settings; a partial directory made with other
            settings is not resumed (`ValueError`, unless `fresh`).
        fresh: discard an existing partial directory.
        suffix: the partial directory's suffix.
    """

    def __init__(self, out, *, overwrite=False, resume=False, settings=None, fresh=False,
                 suffix=".partial", is_file=False):
        if not out:
            raise ValueError(f"`--out` must be a path. Received: out={out!r}")
        self.out = os.path.abspath(out)
        self.overwrite = overwrite
        self.resume = resume
        self.settings = settings
        self.fresh = fresh
        self.is_file = is_file
        parent, name = os.path.split(self.out)
        self.parent = parent
        self.path = os.path.join(parent, f".{name}{suffix}")
        self.created = False
        self.resumed = False

    def check(self):
        """Raises `ValueError` if --out cannot (or may not) receive the result."""
        out = self.out
        if os.path.lexists(out):
            finished = bool(os.listdir(out)) if os.path.isdir(out) else True
            if self.is_file and os.path.isdir(out):
                raise ValueError(f"`--out` is a directory, expected a file path. Received: out={out!r}")
            if not self.is_file and not os.path.isdir(out):
                raise ValueError(f"`--out` is a file, expected a directory. Received: out={out!r}")
            if finished and not self.overwrite:
                raise ValueError(
                    f"`--out` already holds a finished result; pass --overwrite to replace it "
                    f"or choose another --out. Received: out={out!r}"
                )
        try:
            os.makedirs(self.parent, exist_ok=True)
        except OSError as e:
            raise ValueError(
                f"`--out` cannot be created ({e.strerror or e}). Received: out={out!r}"
            ) from None
        if not os.access(self.parent, os.W_OK | os.X_OK):
            raise ValueError(f"`--out` is not writable. Received: out={out!r}")

    def prepare(self) -> OutputDir:
        self.check()
        marker = os.path.join(self.path, ".keras_se_run.json")
        if os.path.isdir(self.path) and self.resume and not self.fresh:
            old = read_json_file(marker)
            if self.settings is not None and old is not None and old != self.settings:
                changed = sorted(
                    k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k)
                )
                raise ValueError(
                    f"`--out` has an interrupted run with other settings ({', '.join(changed)}); "
                    "re-run with the same arguments to resume it, or pass --fresh to discard it. "
                    f"Received: out={self.out!r}"
                )
            self.resumed = True
            return self
        if os.path.lexists(self.path):
            _remove(self.path)
        try:
            os.mkdir(self.path)
            self.created = True
            if self.settings is not None:
                _write_json(marker, self.settings)
        except OSError as e:
            _remove(self.path)
            raise ValueError(
                f"`--out` is not writable ({e.strerror or e}). Received: out={self.out!r}"
            ) from None
        return self

    def file(self, *names) -> str:
        return os.path.join(self.path, *names)

    def commit(self):
        """Moves the finished result to --out, replacing an old one only now."""
        marker = os.path.join(self.path, ".keras_se_run.json")
        if os.path.exists(marker):
            os.remove(marker)
        old = None
        if os.path.lexists(self.out):
            if not self.overwrite and (os.path.isfile(self.out) or os.listdir(self.out)):
                raise ValueError(
                    "`--out` received a finished result while this run was working; "
                    f"not replacing it. Received: out={self.out!r}"
                )
            old = os.path.join(self.parent, f".{os.path.basename(self.out)}.old{os.getpid()}")
            os.rename(self.out, old)
        os.rename(self.path, self.out)
        if old:
            _remove(old)

    def abort(self):
        _remove(self.path)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            os.remove(path)
        except OSError:
            pass


def read_json_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ==========================================================================
# Saving and verification shared by retrofit, finetune and demo.
# ==========================================================================
def save_and_verify(model, out: OutputDir, inputs, *, fresh_process: bool = False) -> dict:
    """Writes `model.keras` and `saved_model/`, reloads both and compares outputs.

    Returns:
        `{"keras": max abs diff, "saved_model": max abs diff}`.
    """
    import keras
    import numpy as np

    from keras_se import export

    keras_path = out.file(MODEL_FILE)
    model.save(keras_path)
    expected = np.asarray(model(inputs, training=False))
    reloaded = keras.saving.load_model(keras_path)
    keras_diff = float(np.max(np.abs(np.asarray(reloaded(inputs, training=False)) - expected)))
    if not keras_diff <= 1e-5:
        raise export.ParityError(
            f"{keras_path} reloads with different outputs (max abs diff {keras_diff:.3g})"
        )
    saved = out.file(SAVED_MODEL_DIR)
    model.export(saved, format="tf_saved_model", verbose=False)
    if fresh_process:
        sm_diff = export.check_saved_model_in_fresh_process(saved, inputs, expected)
    else:
        sm_diff = export.check_saved_model(saved, inputs, expected)
    return {"keras": keras_diff, "saved_model": sm_diff}


def se_summary(report: dict) -> str:
    """One line about an `SEReport.to_dict()`: sites, parameters, skipped candidates."""
    reasons = {}
    for k in report.get("skipped", []):
        reason = k["reason"] if len(k["reason"]) <= 40 else k["reason"][:37] + "..."
        reasons[reason] = reasons.get(reason, 0) + 1
    skipped = "; ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
    return (
        f"SE blocks: {report.get('num_sites', 0)} sites (placement {report.get('placement')!r}), "
        f"+{report.get('params_added', 0):,} parameters ({report.get('params_before', 0):,} -> "
        f"{report.get('params_after', 0):,}, +{report.get('percent_added', 0):.2f}%)"
        + (f"; skipped: {skipped}" if skipped else "")
    )


def _rel(path):
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith(".." + os.sep + "..") else path


# ==========================================================================
# sites
# ==========================================================================
def _sites_arguments(p):
    add_model_argument(p)
    add_se_arguments(p)
    p.add_argument(
        "--input-shape",
        type=input_shape,
        default=None,
        help="input shape H,W,C to build the model at (sites depend on it only through "
        "the spatial sizes). Default: the model's",
    )
    p.add_argument("--alpha", type=positive_float, default=None, help="MobileNet width multiplier")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _site_table(sites, max_rows=None) -> str:
    """A text table of `Site`s: number, anchor, SE layer, channels, spatial size, params."""
    shown = sites if max_rows is None else sites[:max_rows]
    rows = [
        (
            str(i),
            "/".join(s.path + (s.anchor,)),
            s.se_name,
            str(s.channels),
            "x".join("?" if d is None else str(d) for d in s.spatial_shape),
            f"{s.params:,}",
        )
        for i, s in enumerate(shown, 1)
    ]
    header = ("#", "site (anchor layer)", "SE layer", "channels", "spatial", "params")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    right = {0, 3, 5}

    def fmt(row):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()

    lines = [fmt(header), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in rows]
    if len(sites) > len(shown):
        lines.append(f"... {len(sites) - len(shown)} more")
    return "\n".join(lines)


@command("sites", help="list where SE blocks would go", arguments=_sites_arguments)
def sites_command(args) -> int:
    """A table of where SE would go: site, channels, spatial size, parameters added.

    The model is built with random weights (sites do not depend on them).
    """
    spec = resolve_model(args.model)
    placement, select, options = se_options(args, spec)
    from keras_se.sites import find_se_sites

    model = build_model(spec, weights=None, input_shape=args.input_shape, alpha=args.alpha)
    sites = find_se_sites(
        model, placement, select=select, ratio=args.ratio, skip_existing=True, **options
    )
    total = int(model.count_params())
    added = int(sum(s.params for s in sites))
    existing = count_se_layers(model)
    if args.json:
        print(
            json.dumps(
                {
                    "model": spec.name,
                    "placement": placement,
                    "select": select,
                    "params_before": total,
                    "params_added": added,
                    "existing_se_layers": existing,
                    "sites": [s.to_dict() for s in sites],
                },
                indent=2,
            )
        )
        return 0
    where = f"placement {placement!r}" + (f", select {select!r}" if select else "")
    print(f"{spec.name if spec.kind != 'file' else _rel(spec.path)}: {len(sites)} SE sites, {where}")
    if sites:
        print(_site_table(sites))
    pct = 100.0 * added / total if total else 0.0
    print(f"parameters: {total:,} -> {total + added:,} (+{added:,}, +{pct:.2f}%)")
    if existing:
        print(f"the model already has {existing} SE layer(s); sites that carry one are skipped")
    return 0


# ==========================================================================
# retrofit
# ==========================================================================
def _retrofit_arguments(p):
    add_model_argument(p)
    add_output_arguments(p)
    add_se_arguments(p)
    add_build_arguments(p, weights_default="imagenet")
    p.add_argument(
        "--input-shape", type=input_shape, default=None, help="H,W,C. Default: the model's"
    )
    p.add_argument(
        "--classes",
        type=positive_int,
        default=None,
        help="classes of the classification head (needs --weights none or a file "
        "unless 1000)",
    )


@command("retrofit", help="add SE blocks to a model and save it", arguments=_retrofit_arguments)
def retrofit_command(args) -> int:
    """Adds SE blocks to MODEL; writes DIR/model.keras, DIR/saved_model/ and DIR/report.json.

    Both artifacts are loaded back and compared with the in-memory model
    before success is reported. With --init identity (the default) the
    report also gives the largest difference between the original and the
    retrofitted model's outputs: 0 up to float rounding.
    """
    import numpy as np

    from keras_se import add_se_blocks, export

    spec = resolve_model(args.model)
    placement, select, options = se_options(args, spec)
    out = OutputDir(args.out, overwrite=args.overwrite)
    out.check()
    started = time.time()
    base = build_model(
        spec,
        weights=args.weights,
        include_top=True,
        input_shape=args.input_shape,
        classes=args.classes,
        alpha=args.alpha,
    )
    inputs = export.sample_inputs(base, batch_size=2)
    if spec.kind == "zoo":
        model = base
        report = {
            "model": spec.name,
            "zoo": True,
            "num_sites": count_se_layers(model),
            "params_after": int(model.count_params()),
        }
        summary = f"{spec.name} from the SE zoo: {report['num_sites']} SE blocks"
        identity_diff = None
    else:
        model, rep = add_se_blocks(
            base,
            placement,
            ratio=args.ratio,
            select=select,
            init=args.init,
            return_report=True,
            **options,
        )
        report = rep.to_dict()
        summary = _site_table(rep.sites, max_rows=12) + "\n" + se_summary(report)
        identity_diff = float(
            np.max(np.abs(np.asarray(model(inputs, training=False)) - np.asarray(base(inputs, training=False))))
        )
    report.update(
        {
            "source": args.model,
            "weights": args.weights,
            "input_shape": list(model.inputs[0].shape[1:]),
            "init": args.init,
            "select": select,
            "max_abs_diff_vs_original": identity_diff,
        }
    )
    out.prepare()
    try:
        diffs = save_and_verify(model, out, inputs)
        report["reload_max_abs_diff"] = diffs
        _write_json(out.file("report.json"), report)
        _write_json(out.file(SIDECAR), _sidecar(spec, model, args.model, placement, select))
        out.commit()
    except BaseException:
        out.abort()
        raise
    print(summary)
    if identity_diff is not None:
        print(f"outputs vs the original model: max abs diff {identity_diff:.3g} (init={args.init})")
    print(
        f"reloaded {MODEL_FILE} (max abs diff {diffs['keras']:.3g}) and {SAVED_MODEL_DIR}/ "
        f"(serve signature, max abs diff {diffs['saved_model']:.3g})"
    )
    print(f"wrote {_rel(out.out)}/{{{MODEL_FILE}, {SAVED_MODEL_DIR}/, report.json}} "
          f"in {time.time() - started:.1f}s")
    return 0


def _sidecar(spec, model, source, placement=None, select=None, class_names=None, preprocess=None):
    family = spec.family
    return {
        "source": source,
        "model": spec.name if spec.kind != "file" else os.path.basename(spec.name),
        "family": family,
        "preprocess": preprocess if preprocess is not None else (family or "none"),
        "input_shape": [None if d is None else int(d) for d in model.inputs[0].shape[1:]],
        "placement": placement,
        "select": select,
        "class_names": class_names,
    }


# ==========================================================================
# finetune
# ==========================================================================
def _finetune_arguments(p):
    from keras_se.data import BUILTIN
    from keras_se.finetune import SCHEDULES, STRATEGIES

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
        "--batch-size",
        type=positive_int,
        default=32,
        help="global batch size (split over replicas). Default: 32",
    )
    p.add_argument(
        "--image-size", type=image_size, default=None, help="96 or HxW. Default: the model's"
    )
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate. Default: 1e-3")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="Default: cosine")
    p.add_argument(
        "--freeze",
        choices=("auto", "backbone", "none"),
        default="auto",
        help="backbone: train only the SE layers and the new head; none: train "
        "everything; auto: backbone with pretrained weights, none with --weights none. "
        "Default: auto",
    )
    p.add_argument(
        "--val-split",
        type=fraction,
        default=None,
        help="hold out this fraction of the training data for validation. Default: the "
        "dataset's own validation split, else 0.2",
    )
    p.add_argument("--strategy", choices=STRATEGIES, default="default", help="Default: default")
    p.add_argument("--seed", type=int, default=0, help="Default: 0")
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
    p.add_argument("--classes", type=positive_int, default=None, help="expected class count (checked)")
    p.add_argument("--dropout", type=float, default=0.2, help="before the new head. Default: 0.2")
    p.add_argument("--augment", action="store_true", help="random flips, shifts, brightness, contrast")
    p.add_argument("--no-cache", action="store_true", help="do not cache decoded images in memory")
    p.add_argument(
        "--bn-momentum",
        type=fraction,
        default=None,
        help="BatchNormalization momentum (0.9 suits short from-scratch runs). Default: the model's",
    )
    p.add_argument(
        "--preprocess",
        default="auto",
        help="auto (the family's preprocess_input), none, tf, torch, caffe or a "
        "keras.applications family name. Default: auto",
    )
    p.add_argument("--steps-per-epoch", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--validation-steps", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--fresh",
        action="store_true",
        help="discard an interrupted run in --out instead of resuming it",
    )


def _resolve_image_size(args, spec, loaded_model=None):
    if spec.kind == "file":
        shape = loaded_model.inputs[0].shape[1:3]
        fixed = tuple(int(d) for d in shape) if None not in tuple(shape) else None
        if fixed and args.image_size and tuple(args.image_size) != fixed:
            raise ValueError(
                f"`image_size` does not match the model's input {fixed[0]}x{fixed[1]}. "
                f"Received: image_size={args.image_size[0]}x{args.image_size[1]}"
            )
        return fixed or tuple(args.image_size or (224, 224))
    return tuple(args.image_size or (spec.default_size or 224,) * 2)


def _finetune_settings(args):
    keys = (
        "model", "data", "batch_size", "image_size", "freeze", "weights", "placement",
        "select", "ratio", "squeeze", "gate", "init", "no_se", "head", "dropout",
        "val_split", "seed", "alpha", "bn_momentum", "preprocess", "lr", "schedule",
        "augment", "strategy",
    )
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k in keys}


@dataclasses.dataclass
class _TrainPlan:
    spec: object
    build: Callable
    report: dict
    image_size: tuple
    preprocess: str
    freeze: str
    file_model: object = None


def _plan_finetune(args, spec, num_classes, image_size_, preprocess):
    """The model-building function for `finetune` and what it will record."""
    import keras

    from keras_se import add_se_blocks
    from keras_se.finetune import add_classifier_head, replace_head, set_batchnorm_momentum

    placement, select, options = se_options(args, spec)
    report = {}

    def add_se(model):
        if args.no_se:
            return model
        new, rep = add_se_blocks(
            model, placement, ratio=args.ratio, select=select, init=args.init,
            return_report=True, **options,
        )
        report.clear()
        report.update(rep.to_dict())
        report["summary"] = se_summary(report)
        print(report["summary"], flush=True)
        return new

    def build():
        if spec.kind == "file":
            model = load_keras_file(spec.path)
            if count_se_layers(model) == 0:
                model = add_se(model)
            head = args.head if args.head != "auto" else "keep"
            outputs = int(model.outputs[0].shape[-1])
            if head == "keep" and outputs != num_classes:
                raise ValueError(
                    f"class-count mismatch: the model has {outputs} outputs, the data "
                    f"{num_classes} classes; pass --head new to replace its classifier. "
                    f"Received: model={args.model!r}, data={args.data!r}"
                )
            if head == "new":
                model = replace_head(model, num_classes)
        else:
            if args.head == "keep":
                raise ValueError(
                    "`--head keep` needs a .keras model; a model built by name gets a new "
                    f"head. Received: head='keep', model={args.model!r}"
                )
            backbone = build_model(
                spec, weights=args.weights, include_top=False,
                input_shape=(*image_size_, 3), alpha=args.alpha,
            )
            if spec.kind == "application":
                backbone = add_se(backbone)
            model = add_classifier_head(backbone, num_classes, dropout=args.dropout)
        if args.bn_momentum:
            set_batchnorm_momentum(model, args.bn_momentum)
        if not isinstance(model, keras.Model):
            raise TypeError(f"`model` must build a keras.Model. Received: {type(model).__name__}")
        return model

    pretrained = spec.kind == "file" or _weights_argument(args.weights) is not None
    freeze = args.freeze if args.freeze != "auto" else ("backbone" if pretrained else "none")
    return _TrainPlan(spec, build, report, image_size_, preprocess, freeze)


@command("finetune", help="fine-tune a (retrofitted) model on a dataset", arguments=_finetune_arguments)
def finetune_command(args) -> int:
    """Retrofits MODEL with SE (unless it has SE), adds a head for the data, fine-tunes it.

    Writes DIR/model.keras, DIR/saved_model/, DIR/history.json,
    DIR/metrics.json, DIR/curves.png, DIR/report.json (the SE sites) and
    DIR/keras_se.json (what a later command needs: preprocessing, classes).
    Kill it at any time: the same command resumes from the last finished
    epoch.
    """
    return run_finetune(args)


def _worker_suffix(strategy_name):
    if strategy_name != "multiworker":
        return None
    from keras_se.finetune import is_chief

    if is_chief():
        return None
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    return f".{task.get('type', 'worker')}{task.get('index', 0)}.partial"


def run_finetune(args, *, demo: bool = False) -> int:
    from keras_se.finetune import make_strategy

    # MultiWorkerMirroredStrategy must exist before TensorFlow does anything else.
    strategy = make_strategy(args.strategy)
    import keras

    keras.utils.set_random_seed(args.seed)
    spec = resolve_model(args.model)
    from keras_se.data import load_data
    from keras_se.finetune import finetune, write_records

    suffix = _worker_suffix(args.strategy)
    out = OutputDir(
        args.out,
        overwrite=args.overwrite or suffix is not None,
        resume=True,
        fresh=args.fresh,
        settings=_finetune_settings(args),
        suffix=suffix or ".partial",
    )
    out.check()
    file_model = load_keras_file(spec.path) if spec.kind == "file" else None
    size = _resolve_image_size(args, spec, file_model)
    preprocess = args.preprocess
    if preprocess == "auto":
        preprocess = spec.family or "none"
    if spec.kind == "file" and args.preprocess == "auto":
        preprocess = read_sidecar(os.path.dirname(os.path.abspath(spec.path))).get(
            "preprocess", "none"
        )
    data = load_data(
        args.data,
        image_size=size,
        batch_size=args.batch_size,
        preprocess=preprocess_function(preprocess),
        val_split=args.val_split,
        augment=args.augment,
        cache=not args.no_cache,
        seed=args.seed,
        data_dir=args.data_dir,
    )
    if args.classes is not None and args.classes != data.num_classes:
        raise ValueError(
            f"class-count mismatch: --classes {args.classes} but the data has "
            f"{data.num_classes} classes ({', '.join(data.class_names[:8])}"
            f"{', ...' if data.num_classes > 8 else ''}). Received: classes={args.classes}"
        )
    train, val = data.train, data.validation
    # With a fixed number of steps Keras keeps one iterator across epochs:
    # repeat, so that it never runs dry.
    if args.steps_per_epoch:
        train = train.repeat()
    if args.validation_steps:
        val = val.repeat()
    if args.strategy == "multiworker":
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train, val = train.with_options(options), val.with_options(options)
    plan = _plan_finetune(args, spec, data.num_classes, size, preprocess)
    del file_model
    out.prepare()
    print(
        f"{'resuming' if out.resumed else 'starting'}: {spec.name if spec.kind != 'file' else _rel(spec.path)} "
        f"on {data.description}: {data.num_train} train / {data.num_validation} validation "
        f"images, {data.num_classes} classes, {size[0]}x{size[1]}, freeze={plan.freeze}, "
        f"strategy={args.strategy} ({strategy.num_replicas_in_sync} replica(s))",
        flush=True,
    )
    state_dir = out.file("state")
    try:
        result = finetune(
            plan.build,
            train,
            val,
            epochs=args.epochs,
            learning_rate=args.lr,
            schedule=args.schedule,
            freeze=plan.freeze,
            strategy=strategy,
            backup_dir=state_dir,
            steps_per_epoch=args.steps_per_epoch,
            validation_steps=args.validation_steps,
            verbose=2 if demo or not sys.stdout.isatty() else 1,
        )
    except KeyboardInterrupt:
        _keep_or_abort(out, state_dir)
        raise
    except BaseException:
        _keep_or_abort(out, state_dir)
        raise
    try:
        model = result.model
        inputs = next(iter(val.take(1)))[0].numpy()[:4]
        diffs = save_and_verify(model, out, inputs, fresh_process=demo)
        extra = {
            "model": spec.name,
            "source": args.model,
            "data": data.description,
            "num_classes": data.num_classes,
            "class_names": data.class_names,
            "num_train": data.num_train,
            "num_validation": data.num_validation,
            "image_size": list(size),
            "freeze": plan.freeze,
            "settings": _finetune_settings(args),
            "reload_max_abs_diff": diffs,
        }
        if plan.report:
            extra["se"] = {k: plan.report[k] for k in ("num_sites", "params_before", "params_added", "percent_added") if k in plan.report}
            _write_json(out.file("report.json"), {k: v for k, v in plan.report.items() if k != "summary"})
        paths = write_records(result, out.path, extra)
        _write_json(
            out.file(SIDECAR),
            _sidecar(spec, model, args.model, class_names=data.class_names, preprocess=preprocess),
        )
        _remove(state_dir)
        if suffix is None:
            out.commit()
        else:
            out.abort()  # a non-chief worker: its copy of the result is not kept
    except BaseException:
        _keep_or_abort(out, state_dir)
        raise
    del paths
    before, after = result.before or {}, result.after or {}
    print(
        f"validation accuracy: {before.get('accuracy', float('nan')):.3f} before -> "
        f"{after.get('accuracy', float('nan')):.3f} after {len(result.history['epoch'])} epochs"
        + (f" (resumed at epoch {result.initial_epoch + 1})" if result.initial_epoch else "")
    )
    if suffix is None:
        print(
            f"wrote {_rel(out.out)}/{{{MODEL_FILE}, {SAVED_MODEL_DIR}/, history.json, metrics.json, "
            f"curves.png}}; reloaded both models (max abs diff {max(diffs.values()):.3g})"
        )
    args._result = result  # for demo
    args._out = out
    args._plan = plan
    args._data = data
    args._diffs = diffs
    args._inputs = inputs
    return 0


_NOTES: list[str] = []  # said after an error message, on the same line


def _keep_or_abort(out: OutputDir, state_dir: str):
    """Keeps a partial run that holds a finished epoch (to resume); removes it otherwise."""
    backup = os.path.join(state_dir, "backup", "training_metadata.json")
    if os.path.exists(backup):
        _NOTES.append(
            f"the run so far is kept in {_rel(out.path)}; run the same command again to resume it"
        )
    elif not out.resumed:
        out.abort()


# ==========================================================================
# export
# ==========================================================================
def _export_arguments(p):
    from keras_se.export import FORMATS, QUANTIZATIONS

    p.add_argument("model", metavar="MODEL.keras", help="a .keras file (or a directory holding model.keras)")
    p.add_argument("--format", choices=FORMATS, required=True, help="saved_model (TF Serving) or tflite")
    add_output_arguments(p, what="PATH")
    p.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="tflite only: none (float32) or float16 weights. Default: none",
    )


@command("export", help="export a .keras model to a SavedModel or TFLite", arguments=_export_arguments)
def export_command(args) -> int:
    """Exports MODEL.keras as a TF SavedModel (serving format) or a TFLite flatbuffer.

    The SavedModel is loaded back with tf.saved_model.load and its `serve`
    endpoint compared with Keras (tolerance 1e-5); the TFLite model is run in
    the LiteRT interpreter and compared with Keras (tolerance 1e-4 for
    float32, 2e-2 with --quantize float16).
    """
    from keras_se import export

    path = args.model
    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"`model` file does not exist: {path}. Received: model={args.model!r}")
    if args.quantize != "none" and args.format != "tflite":
        raise ValueError(
            f"`--quantize` applies to --format tflite only. Received: quantize={args.quantize!r}"
        )
    out = OutputDir(args.out, overwrite=args.overwrite, is_file=args.format == "tflite")
    out.check()
    if args.format == "tflite" and not out.out.endswith(".tflite"):
        raise ValueError(f"`--out` of a TFLite model must end with .tflite. Received: out={args.out!r}")
    model = load_keras_file(path)
    inputs = export.sample_inputs(model)
    started = time.time()
    if args.format == "saved_model":
        out.prepare()
        os.rmdir(out.path)  # model.export creates the directory itself
        try:
            diff = export.export_saved_model(model, out.path, inputs=inputs)
            out.commit()
        except BaseException:
            out.abort()
            raise
        atol = export.SAVED_MODEL_ATOL
        what = "SavedModel (serve signature)"
    else:
        out.check()
        tmp = os.path.join(out.parent, f".{os.path.basename(out.out)}.partial{os.getpid()}")
        try:
            diff = export.export_tflite(model, tmp, quantize=args.quantize, inputs=inputs)
            os.replace(tmp, out.out)
        except BaseException:
            _remove(tmp)
            raise
        atol = export.TFLITE_ATOL[args.quantize]
        what = f"TFLite ({'float32' if args.quantize == 'none' else args.quantize}, LiteRT interpreter)"
    size = _dir_size(out.out)
    print(
        f"wrote {_rel(out.out)} ({size / 1e6:.2f} MB) in {time.time() - started:.1f}s; "
        f"{what} matches Keras on {inputs.shape[0]} inputs: max abs diff {diff:.3g} "
        f"(tolerance {atol:g})"
    )
    return 0


def _dir_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


# ==========================================================================
# inspect
# ==========================================================================
def _inspect_arguments(p):
    from keras_se.data import BUILTIN

    p.add_argument("model", metavar="MODEL.keras", help="a trained .keras model with SE blocks "
                   "(or a directory holding model.keras, as finetune writes)")
    p.add_argument("--data", default=BUILTIN, help="builtin, an image folder or a TFDS name, "
                   "as for finetune; its validation images are profiled. Default: builtin")
    p.add_argument("--data-dir", default=None, help="TFDS data directory. Default: TFDS's")
    add_output_arguments(p)
    p.add_argument("--batch-size", type=positive_int, default=32, help="Default: 32")
    p.add_argument("--image-size", type=image_size, default=None, help="Default: the model's")
    p.add_argument("--val-split", type=fraction, default=None, help="as for finetune")
    p.add_argument("--steps", type=positive_int, default=None, help="profile at most this many "
                   "batches. Default: all")
    p.add_argument("--preprocess", default="auto", help="auto (from keras_se.json beside the "
                   "model), none, tf, torch, caffe or a keras.applications family. Default: auto")


@command("inspect", help="profile what the SE gates of a trained model learned",
         arguments=_inspect_arguments)
def inspect_command(args) -> int:
    """Mean SE excitation per channel, block and class over the validation images.

    Writes DIR/profile.json (per block: mean gate per channel, overall and per
    class, class specificity), DIR/excitation_per_class.png (the paper's
    Fig. 6) and DIR/class_specificity.png. See keras_se.inspect.
    """
    from keras_se import inspect as se_inspect
    from keras_se.data import load_data

    spec = resolve_model(args.model)
    if spec.kind != "file":
        raise ValueError(
            "`model` must be a trained .keras file: a model built from a name has no "
            f"trained SE gates to inspect. Received: model={args.model!r}"
        )
    out = OutputDir(args.out, overwrite=args.overwrite)
    out.check()
    model = load_keras_file(spec.path)
    # A model with no SE layer is refused before any data is read or built.
    se_inspect.require_se_layers(model)
    preprocess = args.preprocess
    if preprocess == "auto":
        sidecar = read_sidecar(os.path.dirname(os.path.abspath(spec.path)))
        preprocess = sidecar.get("preprocess", "none")
    size = _resolve_image_size(args, spec, model)
    data = load_data(args.data, image_size=size, batch_size=args.batch_size,
                     preprocess=preprocess_function(preprocess), val_split=args.val_split,
                     data_dir=args.data_dir)
    profile = se_inspect.excitation_profile(model, data.validation, steps=args.steps,
                                            class_names=data.class_names)
    out.prepare()
    try:
        profile.to_json(out.file("profile.json"))
        se_inspect.plot_excitation(profile, out.file("excitation_per_class.png"))
        if len(profile.classes) > 1:
            se_inspect.plot_class_specificity(profile, out.file("class_specificity.png"))
        out.commit()
    except BaseException:
        out.abort()
        raise
    spec_by_block = profile.class_specificity() if len(profile.classes) > 1 else {}
    width = max(len(b) for b in profile.blocks)
    print(f"{len(profile.blocks)} SE blocks, {profile.count} images of {data.description}, "
          f"{len(profile.classes)} classes")
    print(f"  {'SE block':<{width}}  {'channels':>8}  {'mean gate':>9}  {'class specificity':>17}")
    for b in profile.blocks:
        s = f"{spec_by_block[b]:.4f}" if b in spec_by_block else "-"
        print(f"  {b:<{width}}  {profile.mean[b].shape[0]:>8}  {profile.mean[b].mean():>9.4f}  {s:>17}")
    written = ["profile.json", "excitation_per_class.png"] + (
        ["class_specificity.png"] if spec_by_block else [])
    print(f"wrote {_rel(out.out)}/{{{', '.join(written)}}}")
    return 0


# ==========================================================================
# demo
# ==========================================================================
DEMO_SELECT = r"^(expanded_conv|block_\d+)_depthwise_relu$"


def _demo_arguments(p):
    add_output_arguments(p, required=False, default=DEFAULT_DEMO_OUT)
    p.add_argument("--epochs", type=positive_int, default=10, help="Default: 10")
    p.add_argument("--image-size", type=image_size, default=(64, 64), help="Default: 64")
    p.add_argument("--batch-size", type=positive_int, default=32, help="Default: 32")
    p.add_argument("--lr", type=positive_float, default=1e-2, help="Default: 1e-2")
    p.add_argument("--data-dir", default=None, help="TFDS data directory. Default: TFDS's")
    p.add_argument("--steps-per-epoch", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--validation-steps", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--fresh", action="store_true", help="discard an interrupted demo in --out")


@command("demo", help="retrofit, fine-tune and export a small MobileNetV2, offline", arguments=_demo_arguments)
def demo_command(args) -> int:
    """The whole workflow in a few minutes on a laptop CPU, with no network.

    A MobileNetV2 (alpha 0.35, random weights: pretrained ones would need the
    network) gets SE blocks after the depthwise ReLU of every block (the
    MobileNetV3 / SE zoo placement) and a classifier; it is trained from
    scratch on the builtin dataset (six classes of shapes and textures,
    chance = 1/6), exported as a SavedModel, and the SavedModel is reloaded
    in a fresh Python process and checked against Keras.
    """
    started = time.time()
    ns = argparse.Namespace(
        model="mobilenet_v2",
        data="builtin",
        data_dir=args.data_dir,
        out=args.out,
        overwrite=args.overwrite,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=tuple(args.image_size),
        lr=args.lr,
        schedule="cosine",
        freeze="none",
        val_split=None,
        strategy="default",
        seed=0,
        weights="none",
        alpha=0.35,
        placement="post_activation",
        select=DEMO_SELECT,
        ratio=16,
        squeeze="avg",
        gate="sigmoid",
        init="identity",
        no_se=False,
        head="auto",
        classes=None,
        dropout=0.2,
        augment=False,
        no_cache=False,
        bn_momentum=0.9,
        preprocess="auto",
        steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.validation_steps,
        fresh=args.fresh,
    )
    print(
        "keras-se demo: MobileNetV2 (alpha 0.35, random init) + SE, trained on the builtin "
        "dataset, exported and reloaded in a fresh process",
        flush=True,
    )
    run_finetune(ns, demo=True)
    result, plan, data, diffs = ns._result, ns._plan, ns._data, ns._diffs
    rep = plan.report
    before, after = result.before or {}, result.after or {}
    out = ns._out.out
    lines = [
        "",
        "=" * 72,
        "keras-se demo report",
        "=" * 72,
        f"model          MobileNetV2 alpha=0.35, {ns.image_size[0]}x{ns.image_size[1]}, "
        f"{data.num_classes} classes ({', '.join(data.class_names)})",
        f"SE sites       {rep.get('num_sites')} (after each block's depthwise ReLU6), "
        f"ratio {ns.ratio}, init {ns.init}",
        f"parameters     {rep.get('params_before', 0):,} -> {rep.get('params_after', 0):,} "
        f"(+{rep.get('params_added', 0):,}, +{rep.get('percent_added', 0):.1f}%) for the backbone",
        f"data           {data.num_train} train / {data.num_validation} validation images "
        f"(chance = {1 / data.num_classes:.3f})",
        f"val accuracy   {before.get('accuracy', float('nan')):.3f} before -> "
        f"{after.get('accuracy', float('nan')):.3f} after {len(result.history['epoch'])} epochs "
        f"({result.seconds:.0f}s of training)",
        f"SavedModel     reloaded in a fresh process with tf.saved_model.load: serve matches "
        f"Keras (max abs diff {diffs['saved_model']:.2g})",
        f"outputs        {_rel(out)}/",
        f"                 {MODEL_FILE}  {SAVED_MODEL_DIR}/  report.json  history.json  "
        f"metrics.json  curves.png",
        f"total time     {time.time() - started:.0f}s",
        "=" * 72,
    ]
    print("\n".join(lines))
    return 0


# ==========================================================================
# Entry point.
# ==========================================================================
_NATIVE_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    rb"|E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ cuda\S*:\d+\] "
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate)"
)


_FILTER = {"restore": None, "installed": False}


def running_as_cli() -> bool:
    """Whether this process is the `keras-se` console script or `python -m keras_se`."""
    argv0 = os.path.basename(sys.argv[0]) if sys.argv else ""
    orig = getattr(sys, "orig_argv", [])
    as_module = any(orig[i : i + 2] == ["-m", "keras_se"] for i in range(len(orig)))
    return argv0 in ("keras-se", "keras-se.exe") or as_module


def early_stderr_filter() -> None:
    """Starts the native-log filter if this process is the CLI; a no-op otherwise.

    Call it before TensorFlow is imported (the first line of
    `keras_se/__init__.py`): TensorFlow writes its start-up lines while it
    is imported, before `main` runs. Library users are never affected.
    """
    if running_as_cli() and not _FILTER["installed"]:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        _FILTER["restore"] = _filter_native_stderr()
        _FILTER["installed"] = True


def _filter_native_stderr():
    """Drops TensorFlow's native INFO/WARNING log lines from file descriptor 2.

    TensorFlow's C++ code logs through absl, which ignores
    TF_CPP_MIN_LOG_LEVEL before absl::InitializeLog. Python's own stderr is
    moved to a duplicate of the real one; fd 2 becomes a pipe whose lines are
    forwarded unless they are such log lines. `KERAS_SE_NATIVE_LOGS=1` keeps
    everything.
    """
    if os.environ.get("KERAS_SE_NATIVE_LOGS"):
        return None
    try:
        real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:
        return None
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    sys.stderr = io.TextIOWrapper(
        io.FileIO(real, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
        line_buffering=True,
    )
    try:
        import faulthandler

        faulthandler.enable(file=sys.stderr)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass

    def pump():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not _NATIVE_NOISE.match(line):
                    try:
                        os.write(real, line)
                    except OSError:
                        pass

    thread = threading.Thread(target=pump, name="keras-se-stderr", daemon=True)
    thread.start()

    def restore():
        try:
            os.dup2(real, 2)  # closes our write end of the pipe: the pump sees EOF
        except OSError:
            return
        thread.join(timeout=2)

    return restore


def _quiet_python_logs(verbose: bool):
    import logging
    import warnings

    if verbose:
        return
    try:
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
    except ImportError:
        pass
    warnings.filterwarnings("ignore")
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 2000 else text[:2000] + " ..."


def run(argv: list[str] | None = None) -> int:
    """Runs `keras-se` with `argv`; returns the exit code (no stderr filtering)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cmd = COMMANDS[args.command]
    prefix = f"{PROG} {cmd.name}: error:"
    del _NOTES[:]

    def notes():
        return "".join(f"; {n}" for n in _NOTES)

    try:
        return int(cmd.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG} {cmd.name}: interrupted{notes()}", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as e:
        if args.traceback:
            raise
        print(f"{prefix} {_one_line(e)}{notes()}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001
        if args.traceback:
            raise
        print(
            f"{prefix} {type(e).__name__}: {_one_line(e)}{notes()} (--traceback for details)",
            file=sys.stderr,
        )
        return 1


def main(argv: list[str] | None = None) -> int:
    """The console script: `run` with TensorFlow's native log lines filtered out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _FILTER["installed"]:
        restore = _FILTER["restore"]
    else:
        restore = _filter_native_stderr()
        _FILTER["installed"] = True
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "-v" in argv or "--verbose" in argv
    _quiet_python_logs(verbose)
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
        if restore is not None:
            restore()
    return code


if __name__ == "__main__":
    sys.exit(main())
