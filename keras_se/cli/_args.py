"""Arguments shared by the sub-commands: types, adders, and the usage-error rule.

A usage error is bad input (a name, a path, a value the user typed): one line on
stderr and exit code 2. Commands raise `UsageError` where they check input, or wrap
the library call that checks it in `usage_errors()`. Any other exception is a bug or
a failure (exit code 1, one line, `--traceback` for the details).
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator


class UsageError(Exception):
    """Bad input on the command line: the `keras-se` entry point exits with 2."""


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Turns the `ValueError`/`TypeError` of an input-checking library call into a
    `UsageError` (the library names the argument and what it received)."""
    try:
        yield
    except (ValueError, TypeError) as e:
        raise UsageError(" ".join(str(e).split())) from e


# -------------------------------------------------------------------------- backend
#: The Keras backends `--backend` accepts.
BACKENDS = ("tensorflow", "jax", "torch")


def backend_from_argv(argv: list[str]) -> str | None:
    """The value of `--backend NAME` / `--backend=NAME` in `argv`, if it is a backend.

    `keras_se/__init__.py` calls it when the process is the command line, to set
    `KERAS_BACKEND` before Keras is imported; argparse checks the value later.
    """
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        value = None
        if arg == "--backend" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--backend="):
            value = arg.split("=", 1)[1]
        if value in BACKENDS:
            return value
    return None


def add_backend_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="the Keras backend to run on (sets KERAS_BACKEND before Keras loads). "
        "Default: $KERAS_BACKEND, else Keras's configured backend (tensorflow)",
    )


def check_backend(requested: str | None) -> str:
    """The backend Keras runs on; a `UsageError` if it is not `requested`.

    The flag works only where it is read before Keras loads (the `keras-se`
    process); a caller that imported Keras first (`keras_se.cli.run` in a Python
    session) gets the backend Keras already has, or this error.
    """
    import keras

    backend = keras.backend.backend()
    if requested is not None and requested != backend:
        raise UsageError(
            f"`--backend {requested}` must be chosen before Keras loads, and Keras already "
            f"runs on {backend} in this process: start a new `keras-se` process, or set "
            f"KERAS_BACKEND={requested}. Received: backend={requested!r}"
        )
    return backend


# ---------------------------------------------------------------------------- types
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


def _ints(text: str) -> list[int]:
    try:
        return [int(p) for p in re.split(r"[x,]", text.strip().lower())]
    except ValueError:
        return []


def image_size(text: str) -> tuple[int, int]:
    """`96` or `96x128` (height x width)."""
    values = _ints(text)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive size like 96 or 96x128, got {text!r}"
        )
    return tuple(values)


def input_shape(text: str) -> tuple[int, int, int]:
    """`224,224,3` or `224x224x3` (or `224,224`, 3 channels)."""
    values = _ints(text)
    if len(values) == 2:
        values.append(3)
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a shape like 224,224,3 (height, width, channels), got {text!r}"
        )
    return tuple(values)


# --------------------------------------------------------------------------- adders
def add_model_argument(p: argparse.ArgumentParser, help_extra: str = "") -> None:
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a keras.applications name (resnet50, mobilenet_v2, ...), an SE zoo name "
        "(seresnet50, ...), a path to a .keras file, a keras-hub preset (a folder "
        "written by save_to_preset, or a name such as resnet_50_imagenet; needs "
        "keras-se[hub]) or a timm checkpoint (timm:seresnet50.ra2_in1k)"
        f"{help_extra}",
    )


def add_build_arguments(p: argparse.ArgumentParser, *, weights_default: str) -> None:
    p.add_argument(
        "--weights",
        default=weights_default,
        help="imagenet, none, or a path to a .weights.h5 file of the model "
        "(for keras.applications and zoo names); for seresnet50/101/152 also a timm "
        "checkpoint (timm:legacy_seresnet50.in1k, downloaded once into the Hugging "
        "Face cache, or a local .safetensors/.pth file). For a keras-hub preset or a "
        "timm:... MODEL, imagenet means its own weights and none random ones. "
        f"Default: {weights_default}",
    )
    p.add_argument(
        "--alpha", type=positive_float, default=None, help="width multiplier of MobileNet models"
    )


def add_se_arguments(p: argparse.ArgumentParser) -> None:
    from keras_se._options import GATES, PLACEMENTS, SQUEEZES

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
        default="auto",
        choices=("auto", "identity", "standard"),
        help="identity: the retrofitted model computes exactly what the original did "
        "until trained; standard: the paper's block; auto: standard with timm "
        "weights (trained SE blocks), identity otherwise. Default: auto",
    )


def add_output_arguments(
    p: argparse.ArgumentParser, *, required: bool = True, default: str | None = None,
    what: str = "DIR",
) -> None:
    p.add_argument(
        "--out",
        required=required,
        default=default,
        metavar=what,
        help="where the result goes" + (f". Default: {default}" if default else ""),
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a finished result already in --out"
    )


def se_options(args, spec) -> tuple[str, str | None, dict]:
    """(placement, select, SqueezeExcite options) from the SE arguments and the model."""
    placement, select = args.placement, args.select
    if placement == "auto":
        placement = spec.placement or "post_activation"
        if select is None:
            select = spec.select
    return placement, select, {"squeeze": args.squeeze, "gate": args.gate}


def resolve_init(args, spec) -> str:
    """`--init` for the model: "auto" becomes "standard" with timm weights (trained SE
    blocks), "identity" otherwise; "identity" with timm weights is refused. Sets
    `args.init` (so that the run records and compares what was used) and returns it."""
    from keras_se.models import uses_timm_weights

    with usage_errors():
        timm = uses_timm_weights(spec, getattr(args, "weights", None))
    if args.init == "auto":
        args.init = "standard" if timm else "identity"
    elif args.init == "identity" and timm:
        raise UsageError(
            "`--init identity` cannot go with timm weights: their SE blocks were trained "
            "with the plain sigmoid gate (--init standard), and identity's 2*sigmoid would "
            f"double every gate; use --init auto. Received: init='identity', "
            f"weights={args.weights!r}"
        )
    return args.init

