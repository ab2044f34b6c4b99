"""keras-hub access for keras_se.hub: import it only when needed, say how to install it.

Also the two context variables the SE classes and the rewrite share.
"""

from __future__ import annotations

import contextvars
import importlib.util
import sys

PIP_HINT = "pip install keras-se[hub]"

# Set while the hub code runs the plain graph rewrite, so that the dispatch in
# `keras_se.add_se_blocks` does not send the backbone back here.
PLAIN_REWRITE = contextvars.ContextVar("keras_se_hub_plain_rewrite", default=False)
# A backbone instance `SEBackbone.__init__` rewrites instead of building one from
# its config (`add_se_blocks` on a live backbone keeps its weights that way).
GIVEN_BASE = contextvars.ContextVar("keras_se_hub_given_base", default=None)


def keras_hub(what: str = "This"):
    """Imports keras_hub, or raises an ImportError that says how to install it."""
    try:
        import keras_hub as kh
    except ImportError as e:
        raise ImportError(
            f"{what} needs keras-hub, which is not installed: `{PIP_HINT}` "
            "(keras-hub needs Python 3.11 or newer)."
        ) from e
    return kh


def hub_loaded():
    """The keras_hub module if it is imported (never imports it), else None."""
    module = sys.modules.get("keras_hub")
    if module is None or not hasattr(module, "models"):
        return None
    return module


def hub_installed() -> bool:
    """Whether keras_hub can be imported (without importing it)."""
    if "keras_hub" in sys.modules:
        return sys.modules["keras_hub"] is not None
    try:
        return importlib.util.find_spec("keras_hub") is not None
    except (ImportError, ValueError):
        return False


def is_hub_model(obj) -> bool:
    """Whether `obj` is an instance of a keras-hub class (imports nothing)."""
    return any(
        getattr(c, "__module__", "").split(".")[0] in ("keras_hub", "keras_nlp")
        for c in type(obj).__mro__
    )
