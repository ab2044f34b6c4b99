"""add_se_blocks on five keras.applications models, on every Keras backend.

The TensorFlow suite sweeps all forty constructors and six placements
(test_rewrite_keras_applications.py); this core module checks, on each backend, a
handful of families that cover every kind of site (activations, residual merges,
concatenations, ConvNeXt's Dense-based blocks): identity at initialisation and the
exact sites and parameters. Each model is built once (weights=None, no top, average
pooling) at the smallest input that keeps every site above 1x1, so the counts are
those of the 224x224 table in the README.
"""

import functools

import keras
import numpy as np
import pytest
from keras import ops

import keras_se

pytestmark = pytest.mark.core

# name: (input size, constructor arguments, base parameters without the top,
#        {placement: (sites, parameters added)}): the README's placement table.
MODELS = {
    "MobileNetV2": (64, {}, 2_257_984,
                    {"post_activation": (35, 1_349_388), "residual": (10, 11_385)}),
    "ResNet50": (64, {}, 23_587_712,
                 {"post_activation": (33, 322_972), "residual": (16, 2_530_992)}),
    "DenseNet121": (64, {}, 7_037_504,
                    {"post_activation": (59, 127_252), "module_output": (58, 2_959_622)}),
    "InceptionV3": (107, {}, 21_802_784,
                    {"post_activation": (94, 553_332), "module_output": (15, 1_959_796)}),
    "ConvNeXtTiny": (64, {}, 27_820_128, {"residual": (18, 411_390)}),
}


@functools.lru_cache(maxsize=1)
def build(name):
    size, kwargs, _, _ = MODELS[name]
    keras.utils.set_random_seed(1)
    model = getattr(keras.applications, name)(
        weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3), **kwargs
    )
    x = np.random.default_rng(0).uniform(0, 1, size=(2, size, size, 3)).astype("float32")
    return model, x, ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.xdist_group(f"apps_{n}")) for n in MODELS]
)
def test_identity_and_exact_counts(name):
    model, x, expected = build(name)
    _, _, base_params, placements = MODELS[name]
    assert model.count_params() == base_params
    for placement, (sites, added) in placements.items():
        found = keras_se.find_se_sites(model, placement)
        assert (len(found), sum(s.params for s in found)) == (sites, added), placement
        new, report = keras_se.add_se_blocks(model, placement, return_report=True)
        assert (len(report.sites), report.params_added) == (sites, added), placement
        assert new.count_params() == base_params + added
        # Identity at initialisation: the retrofitted model computes what the stock one did.
        np.testing.assert_allclose(ops.convert_to_numpy(new(x, training=False)), expected,
                                   atol=1e-5, rtol=1e-5, err_msg=placement)
