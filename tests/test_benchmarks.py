"""Tests of the benchmark tooling's logic (never of timings): benchmarks/_timing.py and
the attribution in benchmarks/profile_models.py."""

import json
import os
import sys

import keras
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import _timing  # noqa: E402
import profile_models  # noqa: E402

import keras_se  # noqa: E402


# ------------------------------------------------------------------ _timing
def test_interleaved_rotates_the_order_and_drops_the_warm_up():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    res = _timing.interleaved(fns, repeats=10, warmup=2, number=1)
    # One untimed call each to trace, then 12 rounds whose first callable rotates.
    assert calls[:3] == ["a", "b", "c"]
    rounds = [calls[3 + 3 * i : 6 + 3 * i] for i in range(12)]
    assert rounds[0] == ["a", "b", "c"] and rounds[1] == ["b", "c", "a"]
    assert rounds[2] == ["c", "a", "b"] and rounds[3] == rounds[0]
    assert len(calls) == 3 + 12 * 3
    assert [len(res[n].samples) for n in "abc"] == [10, 10, 10]
    assert all(res[n].number == 1 for n in "abc")


@pytest.mark.parametrize("repeats", [9, 2.5, True])
def test_interleaved_needs_ten_repeats(repeats):
    with pytest.raises(ValueError, match=r"at least 10\. Received: repeats="):
        _timing.interleaved({"a": lambda: None}, repeats=repeats)


def test_stats_quantiles_match_numpy():
    samples = [0.3, 0.1, 0.7, 0.2, 0.9, 0.4, 0.8]
    stats = _timing.Stats(samples=samples)
    assert stats.median == np.median(samples)
    assert stats.q1 == pytest.approx(np.percentile(samples, 25))
    assert stats.q3 == pytest.approx(np.percentile(samples, 75))
    assert (stats.min, stats.max) == (0.1, 0.9)


def test_ab_ratio_is_b_over_a_and_paired_by_round():
    a = _timing.Stats(samples=[1.0, 2.0, 3.0])
    b = _timing.Stats(samples=[2.0, 2.0, 6.0])
    result = _timing.ABResult(a, b)
    assert result.ratio == 1.0  # medians 2 and 2
    assert result.paired_ratios == [2.0, 1.0, 2.0]
    d = result.to_dict()
    assert (d["paired_ratio_median"], d["paired_ratio_min"], d["paired_ratio_max"]) == (2, 1, 2)


def test_write_results_writes_json_and_markdown(tmp_path):
    rows = [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]
    json_path, md_path = _timing.write_results(
        "t", "Title", rows, [("x", "X"), ("y", "Y")], {"k": 3}, intro="Intro.",
        sections=["End."], results_dir=tmp_path,
    )
    payload = json.loads(json_path.read_text())
    assert payload["results"] == {"k": 3} and payload["benchmark"] == "t"
    assert "python" in payload["machine"]
    text = md_path.read_text()
    assert "| X | Y |\n|---|---|\n| 1 | a |\n| 2 | b |" in text
    assert text.startswith("# Title\n\nIntro.") and text.rstrip().endswith("End.")


# ---------------------------------------------------------- profile_models
def _se_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras_se.SqueezeExcite(ratio=2, name="conv_se")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_sex")(x)
    return keras.Model(inputs, x)


def test_se_matcher_takes_ops_under_se_scopes_only():
    is_se = profile_models.se_matcher(_se_model())
    assert is_se("model_1/conv_se_1/Mean")
    assert is_se("model_1/conv_se/mul")
    assert is_se("gradient_tape/model_1/conv_se_1/mul/Mul")
    assert not is_se("model_1/conv_sex_1/BiasAdd")
    assert not is_se("model_1/conv_1/Conv2D")
    assert not profile_models.se_matcher(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))("a/b")


def test_attribute_splits_se_forward_backward_and_the_rest():
    is_se = profile_models.se_matcher(_se_model())
    rows_a = [
        {"op": "m/conv_1/Conv2D", "type": "Conv2D", "self_us": 100.0},
        {"op": "m/add/AddV2", "type": "AddV2", "self_us": 10.0},
    ]
    rows_b = [
        {"op": "m/conv_1/Conv2D", "type": "Conv2D", "self_us": 102.0},
        {"op": "m/add/AddV2", "type": "AddV2", "self_us": 10.5},
        {"op": "m/conv_se_1/Mean", "type": "Mean", "self_us": 7.0},
        {"op": "m/conv_se_1/mul", "type": "Mul", "self_us": 5.0},
        {"op": "gradient_tape/m/conv_se_1/mul/Mul", "type": "Mul", "self_us": 9.0},
    ]
    result = profile_models.attribute(rows_a, rows_b, is_se)
    assert result["a_us"] == 110.0 and result["b_us"] == 133.5
    assert result["se_forward_us"] == {"Mean": 7.0, "Mul": 5.0}
    assert result["se_backward_us"] == {"Mul": 9.0}
    assert result["se_us"] == 21.0
    # Changes of at most 1 us are dropped as noise.
    assert result["rest_delta_us"] == {"Conv2D": 2.0}


def test_op_stats_reads_the_profilers_per_op_table():
    import tensorflow as tf

    x = tf.random.uniform((64, 64))
    fn = tf.function(lambda: tf.reduce_sum(tf.matmul(x, x)))
    fn()
    rows = {r["op"]: r for r in profile_models.op_stats(fn, steps=2)}
    assert set(rows) == {"MatMul", "Sum"}  # IDLE is dropped
    assert rows["Sum"]["type"] == "Sum" and rows["MatMul"]["type"].endswith("MatMul")
    assert all(r["calls"] == 2 and r["self_us"] > 0 for r in rows.values())


def test_se_floor_is_one_and_a_half_rescales_plus_weights(monkeypatch):
    monkeypatch.setattr(profile_models, "stream_bandwidth", lambda: 1e9)  # 1 GB/s
    model = _se_model()
    weight_bytes = model.get_layer("conv_se").count_params() * 4
    floor = profile_models.se_floor(model, rescale_us=2000.0, training=False)
    assert floor["weight_bytes"] == weight_bytes == (2 * 8 * 4 + 4 + 8) * 4
    assert floor["floor_ms"] == pytest.approx(1.5 * 2.0 + weight_bytes / 1e9 * 1e3)
    train = profile_models.se_floor(model, rescale_us=2000.0, training=True)
    assert train["floor_ms"] == pytest.approx(2 * floor["floor_ms"])
