"""The latency model's fit machinery on synthetic measurements, its keys and its file format."""

from __future__ import annotations

import random

import pytest

from compiler.analysis import op_macs
from nas.build import to_graph
from nas.latency import (
    LATENCY_FILE,
    MIN_LAYERS,
    LatencyModel,
    Sample,
    evaluate,
    fit,
    latency_model,
    op_key,
    predict,
    valid_macs,
)
from nas.space import small_space

TRUE = {"nn.conv2d/1x1": (1.5, 0.0, 12.0, 3.0, 40.0, 7.0, 400.0),
        "nn.depthwise_conv2d/k3": (0.5, 2.0, 30.0, 1.0, 25.0, 60.0, 900.0),
        "nn.add": (0.0, 0.0, 9.0, 2.0, 0.0, 0.0, 150.0)}


def _synthetic(nets: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for net in range(nets):
        for key, coef in TRUE.items():
            for _ in range(4):
                pixels, channels = rng.randrange(1, 2500), rng.randrange(8, 200)
                outs = pixels * channels
                ins = outs * rng.choice((1, 2, 4))
                macs = 0 if key == "nn.add" else outs * rng.randrange(8, 300)
                valid = macs - (0 if key == "nn.add" else rng.randrange(0, macs // 4))
                f = (macs, valid, outs, ins, pixels, channels)
                out.append(Sample(net, key, f, predict(coef, f)))
    return out


def test_fit_recovers_the_constants_of_noise_free_data() -> None:
    model = fit(_synthetic(6, 1), "synthetic")
    probes = [(1000, 900, 100, 200, 10, 10), (90_000, 80_000, 500, 500, 25, 20)]
    for key, want in TRUE.items():
        got = model.coef[key]
        if key == "nn.add":
            probes_k = [(0, 0, o, i, p, c) for _, _, o, i, p, c in probes]
        else:
            probes_k = probes
        assert [predict(got, f) for f in probes_k] == pytest.approx([predict(want, f) for f in probes_k],
                                                                     rel=1e-6), key
    acc = evaluate(model, _synthetic(3, 2))
    assert acc["networks"] == 3 and acc["max_rel_error"] < 1e-9


def test_rare_keys_fall_back_to_their_kind_then_to_star() -> None:
    samples = [*_synthetic(4, 3), Sample(0, "nn.depthwise_conv2d/in_place/k7", (1000, 900, 10, 10, 1, 10), 5e3)]
    model = fit(samples)
    assert "nn.depthwise_conv2d/in_place/k7" not in model.coef  # one layer is fewer than MIN_LAYERS
    assert model.coefficients("nn.depthwise_conv2d/in_place/k7") == model.coef["nn.depthwise_conv2d"]
    assert model.coefficients("nn.softmax") == model.coef["*"]
    with pytest.raises(ValueError):
        fit(samples[:MIN_LAYERS - 1])


def test_model_round_trips_through_json() -> None:
    model = fit(_synthetic(4, 4), "synthetic data")
    model2 = LatencyModel.from_json(model.to_json())
    assert model2.fitted == "synthetic data" and model2.coef.keys() == model.coef.keys()
    for k, v in model.coef.items():
        assert model2.coef[k] == pytest.approx(v, rel=1e-15)


def test_keys_separate_the_kernels() -> None:
    arch = small_space(resolutions=(16,), width_mults=(0.25,)).sample(random.Random(0))
    keys = {op_key(op) for op in to_graph(arch).ops}
    assert "nn.conv2d/kxk" in keys and "nn.conv2d/1x1" in keys
    assert any(k.startswith("nn.depthwise_conv2d/k") for k in keys)


def test_the_stored_model_loads() -> None:
    if not LATENCY_FILE.is_file():
        pytest.skip(f"{LATENCY_FILE.name} not written yet (python bench/fit_latency.py --write)")
    model = latency_model()
    assert "*" in model.coef and model.fitted



def test_valid_macs_leave_out_the_padding() -> None:
    arch = small_space(resolutions=(16,), width_mults=(0.25,)).sample(random.Random(1))
    seen = set()
    for op in to_graph(arch).ops:
        if op.kind not in ("nn.conv2d", "nn.depthwise_conv2d"):
            continue
        macs, valid = op_macs(op), valid_macs(op)
        k = op.operands[1].type.shape[1]
        if k == 1:
            assert valid == macs, op.label
        else:  # 'same' padding: the border pixels' windows hang over the edge
            assert 0 < valid < macs, op.label
        seen.add(k)
    assert 1 in seen and len(seen) > 1
