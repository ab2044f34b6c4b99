"""SE-ConvNeXt: Keras's ConvNeXt Tiny to XLarge with SE on every block's residual branch."""

from __future__ import annotations

import keras
from keras_se.applications._builder import Family, build_se_model, se_docstring

preprocess_input = keras.applications.convnext.preprocess_input
decode_predictions = keras.applications.convnext.decode_predictions

FAMILY = Family(
    name="ConvNeXt",
    module=keras.applications.convnext,
    placement="residual",
    select=None,
    rationale=(
        "A ConvNeXt block is a residual unit (depthwise 7x7 conv, LayerNorm, "
        "pointwise MLP, layer scale, then `inputs + branch`), so the SE-ResNet "
        "module applies: one SE block on the residual branch, after the layer scale "
        "and before the sum (anchored at the block's `_identity` layer), in every "
        "block (18 in Tiny, 36 in the others). The paper predates ConvNeXt; this is "
        "its standard integration carried over, at +1.4% parameters for Tiny. "
        "ConvNeXt's `include_preprocessing` argument is kept and "
        "`preprocess_input` is Keras's no-op."
    ),
)
_REFERENCE = "[Liu et al., 2022, A ConvNet for the 2020s](https://arxiv.org/abs/2201.03545)"


# Each constructor passes its arguments on with `**locals()`: the signature is
# keras's (same order, same defaults, `name` aside) plus the SE options.
def SEConvNeXtTiny(include_top=True, include_preprocessing=True, weights="imagenet",
                   input_tensor=None, input_shape=None, pooling=None, classes=1000,
                   classifier_activation="softmax", name="se_convnext_tiny", *, ratio=16,
                   squeeze="avg", gate="sigmoid", init="identity", placement=None,
                   select=None, **se_options):
    return build_se_model(keras.applications.ConvNeXtTiny, FAMILY, **locals())


def SEConvNeXtSmall(include_top=True, include_preprocessing=True, weights="imagenet",
                    input_tensor=None, input_shape=None, pooling=None, classes=1000,
                    classifier_activation="softmax", name="se_convnext_small", *,
                    ratio=16, squeeze="avg", gate="sigmoid", init="identity",
                    placement=None, select=None, **se_options):
    return build_se_model(keras.applications.ConvNeXtSmall, FAMILY, **locals())


def SEConvNeXtBase(include_top=True, include_preprocessing=True, weights="imagenet",
                   input_tensor=None, input_shape=None, pooling=None, classes=1000,
                   classifier_activation="softmax", name="se_convnext_base", *, ratio=16,
                   squeeze="avg", gate="sigmoid", init="identity", placement=None,
                   select=None, **se_options):
    return build_se_model(keras.applications.ConvNeXtBase, FAMILY, **locals())


def SEConvNeXtLarge(include_top=True, include_preprocessing=True, weights="imagenet",
                    input_tensor=None, input_shape=None, pooling=None, classes=1000,
                    classifier_activation="softmax", name="se_convnext_large", *,
                    ratio=16, squeeze="avg", gate="sigmoid", init="identity",
                    placement=None, select=None, **se_options):
    return build_se_model(keras.applications.ConvNeXtLarge, FAMILY, **locals())


def SEConvNeXtXLarge(include_top=True, include_preprocessing=True, weights="imagenet",
                     input_tensor=None, input_shape=None, pooling=None, classes=1000,
                     classifier_activation="softmax", name="se_convnext_xlarge", *,
                     ratio=16, squeeze="avg", gate="sigmoid", init="identity",
                     placement=None, select=None, **se_options):
    return build_se_model(keras.applications.ConvNeXtXLarge, FAMILY, **locals())


for _fn, _base, _n in (
    (SEConvNeXtTiny, "ConvNeXtTiny", 18),
    (SEConvNeXtSmall, "ConvNeXtSmall", 36),
    (SEConvNeXtBase, "ConvNeXtBase", 36),
    (SEConvNeXtLarge, "ConvNeXtLarge", 36),
    (SEConvNeXtXLarge, "ConvNeXtXLarge", 36),
):
    _fn.__doc__ = se_docstring(_fn, _base, FAMILY, module="convnext", n_sites=_n,
                               reference=_REFERENCE)
del _fn, _base, _n
