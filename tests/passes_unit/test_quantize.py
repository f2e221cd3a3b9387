"""quantize: a float CNN calibrated on random data becomes an integer graph that agrees with the float one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from compiler.errors import MccError, PipelineError
from compiler.interpreter import run
from compiler.ir import DType, Graph, QuantParams, TensorType, const
from compiler.passmanager import PassManager, parse_pipeline
from compiler.printer import print_graph
from tests.helpers import f32, int8_conv_relu_graph

IN_SHAPE = (1, 8, 8, 3)


def float_cnn(seed: int = 0) -> Graph:
    """conv+bias → relu → depthwise → add (residual) → avgpool → mean → fc → softmax, random weights."""
    rng = np.random.default_rng(seed)

    def w(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    g = Graph("cnn")
    x = g.add_input(f32(IN_SHAPE), "x")
    c1 = g.create("nn.conv2d", [x, const(g, w(8, 3, 3, 3), name="w1"), const(g, w(8, scale=0.1), name="b1")],
                  [f32((1, 8, 8, 8))], {"pads": (1, 1, 1, 1)}, ["c1"]).result
    r1 = g.create("nn.relu", [c1], [f32((1, 8, 8, 8))], {}, ["r1"]).result
    d = g.create("nn.depthwise_conv2d", [r1, const(g, w(1, 3, 3, 8), name="w2"), const(g, w(8), name="b2")],
                 [f32((1, 8, 8, 8))], {"pads": (1, 1, 1, 1)}, ["d"]).result
    a = g.create("nn.add", [d, r1], [f32((1, 8, 8, 8))], {}, ["a"]).result
    p = g.create("nn.avg_pool2d", [a], [f32((1, 4, 4, 8))], {"kernel": (2, 2), "strides": (2, 2)}, ["p"]).result
    m = g.create("nn.mean", [p], [f32((1, 8))], {"axes": (1, 2), "keepdims": False}, ["m"]).result
    f = g.create("nn.fully_connected", [m, const(g, w(10, 8, scale=3.0), name="w3"), const(g, w(10), name="b3")],
                 [f32((1, 10))], {}, ["f"]).result
    g.outputs = [g.create("nn.softmax", [f], [f32((1, 10))], {}, ["y"]).result]
    return g


def inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, *IN_SHAPE[1:])).astype(np.float32)


def quantize(g: Graph, options: str = "") -> Graph:
    out = g.clone()
    PassManager(parse_pipeline("quantize" + (f"{{{options}}}" if options else ""))).run(out)
    return out


def assert_integer_inside(g: Graph) -> None:
    """Only the input's quantize and the output's dequantize touch floats."""
    (q_in,) = g.inputs[0].users
    assert q_in.kind == "q.quantize"
    assert g.outputs[0].producer.kind == "q.dequantize"
    for op in g.ops:
        if op is q_in or op.result is g.outputs[0]:
            continue
        assert not op.result.type.dtype.is_float, f"{op.label} stayed float"


def agreement(g: Graph, ref: Graph, xs: np.ndarray) -> tuple[float, float]:
    """(top-1 agreement, max abs error) over the samples ``xs``."""
    same, err = 0, 0.0
    for x in xs:
        a, b = run(g, [x[None]])[0], run(ref, [x[None]])[0]
        same += int(np.argmax(a) == np.argmax(b))
        err = max(err, float(np.max(np.abs(a - b))))
    return same / len(xs), err


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "cal.npy"
    np.save(path, inputs(64, 123))
    return path


def test_float_cnn_becomes_integer_and_agrees(calib):
    g = float_cnn()
    q = quantize(g, f'calibration="{calib}"')
    assert_integer_inside(q)
    kinds = [op.kind for op in q.ops if op.kind != "const"]
    assert kinds == ["q.quantize", "nn.conv2d", "nn.depthwise_conv2d", "nn.add", "nn.avg_pool2d", "nn.mean",
                     "nn.fully_connected", "nn.softmax", "q.dequantize"]
    by_kind = {op.kind: op for op in q.ops}
    conv = by_kind["nn.conv2d"]
    assert conv.attrs["act_min"] == 0.0  # the relu fused
    assert conv.operands[1].type.quant.axis == 0 and by_kind["nn.depthwise_conv2d"].operands[1].type.quant.axis == 3
    assert int(np.max(np.abs(conv.operands[1].const_value))) == 127  # symmetric per channel, scale max|w| / 127
    pool = by_kind["nn.avg_pool2d"]
    assert pool.operands[0].type.quant == pool.result.type.quant
    assert by_kind["nn.softmax"].result.type.quant == QuantParams.per_tensor(1 / 256, -128)
    top1, err = agreement(q, g, inputs(50, 7))
    assert top1 >= 0.9
    assert err < 0.05


@pytest.mark.parametrize("method", ["percentile", "mse"])
def test_other_calibration_methods(calib, method):
    g = float_cnn()
    q = quantize(g, f'calibration="{calib}",method={method},percentile=99.9')
    assert_integer_inside(q)
    top1, err = agreement(q, g, inputs(50, 8))
    assert top1 >= 0.9 and err < 0.1


def test_npz_folder_num_samples_and_nchw_data(tmp_path):
    g = float_cnn()
    xs = inputs(40, 5)
    folder = tmp_path / "cal"
    folder.mkdir()
    np.savez(folder / "a.npz", x=xs[:20])
    np.save(folder / "b.npy", xs[20:].transpose(0, 3, 1, 2))  # the ONNX model's NCHW layout
    by_folder = quantize(g, f'calibration="{folder}"')
    np.save(tmp_path / "all.npy", xs)
    by_file = quantize(g, f'calibration="{tmp_path / "all.npy"}"')
    assert print_graph(by_folder) == print_graph(by_file)
    few = quantize(g, f'calibration="{tmp_path / "all.npy"}",num-samples=2')
    assert print_graph(few) != print_graph(by_file)


def test_without_calibration_warns_and_uses_the_synthetic_set():
    g = float_cnn()
    with pytest.warns(UserWarning, match="^no calibration data"):
        q = quantize(g)
    assert_integer_inside(q)


def test_integer_graph_is_left_alone_without_warning():
    g = int8_conv_relu_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not PassManager(parse_pipeline("quantize")).run(g)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.npy", "calibration data not found"),
    (lambda d: (np.save(d / "bad.npy", np.zeros((4, 7, 7, 3), np.float32)), d / "bad.npy")[1], "has shape"),
    (lambda d: (np.savez(d / "bad.npz", image=np.zeros((4, 8, 8, 3), np.float32)), d / "bad.npz")[1],
     "no array for input"),
    (lambda d: ((d / "cal.txt").write_text("1 2 3"), d / "cal.txt")[1], "expected .npy or .npz"),
    (lambda d: ((d / "empty").mkdir(), d / "empty")[1], "no .npy or .npz"),
    (lambda d: ((d / "junk.npy").write_bytes(b"not numpy"), d / "junk.npy")[1], "cannot read"),
])
def test_bad_calibration_data_is_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(MccError, match=message) as info:
        quantize(float_cnn(), f'calibration="{path}"')
    assert "\n" not in str(info.value)


def test_npy_for_a_graph_with_two_inputs_is_an_error(tmp_path):
    g = Graph()
    a = g.add_input(f32((1, 4)), "a")
    b = g.add_input(f32((1, 4)), "b")
    g.outputs = [g.create("nn.add", [a, b], [f32((1, 4))], {}, ["y"]).result]
    np.save(tmp_path / "c.npy", np.zeros((3, 1, 4), np.float32))
    with pytest.raises(MccError, match="has 2 inputs"):
        quantize(g, f'calibration="{tmp_path / "c.npy"}"')
    np.savez(tmp_path / "c.npz", a=np.zeros((3, 1, 4), np.float32), b=np.ones((3, 4), np.float32))
    q = quantize(g, f'calibration="{tmp_path / "c.npz"}"')
    assert [op.kind for op in q.ops] == ["q.quantize", "q.quantize", "nn.add", "q.dequantize"]


def test_bad_options_are_pipeline_errors():
    with pytest.raises(PipelineError, match="method must be one of"):
        parse_pipeline("quantize{method=kl}")
    with pytest.raises(PipelineError, match="percentile"):
        parse_pipeline("quantize{percentile=10}")


def test_shared_and_fixed_quantizations():
    rng = np.random.default_rng(3)
    g = Graph()
    x = g.add_input(f32((1, 4, 4, 2)), "x")
    mp = g.create("nn.max_pool2d", [x], [f32((1, 2, 2, 2))], {"kernel": (2, 2), "strides": (2, 2)}, ["mp"]).result
    w = const(g, rng.standard_normal((2, 1, 1, 2)).astype(np.float32))
    c = g.create("nn.conv2d", [x, w], [f32((1, 4, 4, 2))], {}, ["c"]).result
    cp = g.create("nn.max_pool2d", [c], [f32((1, 2, 2, 2))], {"kernel": (2, 2), "strides": (2, 2)}, ["cp"]).result
    cat = g.create("nn.concat", [mp, cp], [f32((1, 2, 2, 4))], {"axis": 3}, ["cat"]).result
    s = g.create("nn.sigmoid", [cat], [f32((1, 2, 2, 4))], {}, ["s"]).result
    t = g.create("nn.tanh", [cat], [f32((1, 2, 2, 4))], {}, ["t"]).result
    g.outputs = [s, t]
    with pytest.warns(UserWarning):
        q = quantize(g)
    ops = {op.result.name: op for op in q.ops}
    assert ops["mp"].result.type.quant == ops["mp"].operands[0].type.quant  # a max-pool shares its input's
    assert ops["s_i8"].result.type.quant == QuantParams.per_tensor(1 / 256, -128)
    assert ops["t_i8"].result.type.quant == QuantParams.per_tensor(1 / 128, 0)
    for op in q.ops:
        if op.kind not in ("q.quantize", "q.dequantize"):
            assert not op.result.type.dtype.is_float
    assert [v.name for v in q.outputs] == ["s", "t"]
    xv = rng.uniform(0, 1, (1, 4, 4, 2)).astype(np.float32)
    for a, b in zip(run(q, [xv]), run(g, [xv]), strict=True):
        assert np.max(np.abs(a - b)) < 0.05


@pytest.mark.parametrize("axis", [None, 0, 3])
def test_weight_only_quantized_graph(axis):
    """Dequantized int8 weights (weight-only quantization) are kept when usable, quantized again otherwise."""
    rng = np.random.default_rng(4)
    g = Graph()
    x = g.add_input(f32((1, 4, 4, 2)), "x")
    ints = rng.integers(-127, 128, (3, 1, 1, 2)).astype(np.int8)
    n = 1 if axis is None else ints.shape[axis]
    q = QuantParams.per_tensor(0.01, 0) if axis is None else QuantParams.per_channel([0.01] * n, [0] * n, axis)
    w = const(g, ints, TensorType(ints.shape, DType.INT8, q), "w")
    wd = g.create("q.dequantize", [w], [f32(ints.shape)], {}, ["wd"]).result
    g.outputs = [g.create("nn.conv2d", [x, wd], [f32((1, 4, 4, 3))], {}, ["y"]).result]
    with pytest.warns(UserWarning):
        out = quantize(g)
    assert [op.kind for op in out.ops if op.kind != "const"] == ["q.quantize", "nn.conv2d", "q.dequantize"]
    conv = next(op for op in out.ops if op.kind == "nn.conv2d")
    if axis != 3:
        np.testing.assert_array_equal(conv.operands[1].const_value, ints)  # kept as they are
    xv = rng.uniform(0, 1, (1, 4, 4, 2)).astype(np.float32)
    ref, got = run(g, [xv])[0], run(out, [xv])[0]
    assert np.max(np.abs(got - ref)) <= 0.02 * np.max(np.abs(ref))


def test_hard_swish_with_a_far_negative_input_range_is_quantized(tmp_path):
    """Inputs down to -200 and up to 0.5: hard-swish's output spans about 0.9, more than 128 times narrower than
    its input, which TFLite's integer kernel cannot take; the pass widens the output range instead of leaving the
    op in float, and the int8 graph still follows the float one."""
    from compiler.ops.activation import hard_swish_params

    g = Graph()
    x = g.add_input(f32((1, 64)), "x")
    h = g.create("nn.hard_swish", [x], [f32((1, 64))], {}, ["h"]).result
    g.outputs = [h]
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.uniform(-200.0, -3.0, (8, 1, 64)), rng.uniform(-3.0, 0.5, (8, 1, 64))]).astype(np.float32)
    path = tmp_path / "cal.npy"
    np.save(path, xs)
    q = quantize(g, f'calibration="{path}"')
    (hs,) = [op for op in q.ops if op.kind == "nn.hard_swish"]
    assert not hs.result.type.dtype.is_float
    hard_swish_params(hs.operands[0].type, hs.result.type)  # raises if TFLite's kernel could not run it
    s_in, s_out = hs.operands[0].type.quant.scale[0], hs.result.type.quant.scale[0]
    assert s_in / 128 / s_out < 1.0 and s_in / 128 / s_out > 0.99  # widened by the least factor, not more
    for sample in xs:
        err = np.max(np.abs(run(q, [sample])[0] - run(g, [sample])[0]))
        assert err <= s_in  # within one input step: the input's own rounding dominates


def test_hard_swish_after_a_conv_with_a_tiny_range_is_quantized(tmp_path):
    """An untrained network's activations can span 1e-5: the conv's result scale would make TFLite's relu-ish
    multiplier exponent fall below -15, so the pass widens the conv's output range to the least scale allowed."""
    from compiler.ops.activation import hard_swish_params
    from passes.quantize import HARD_SWISH_MIN_INPUT_SCALE

    g = Graph()
    x = g.add_input(f32((1, 4, 4, 2)), "x")
    w = const(g, np.full((3, 1, 1, 2), 1e-5, dtype=np.float32))
    c = g.create("nn.conv2d", [x, w], [f32((1, 4, 4, 3))], {}, ["c"]).result
    h = g.create("nn.hard_swish", [c], [f32((1, 4, 4, 3))], {}, ["h"]).result
    g.outputs = [h]
    xs = np.random.default_rng(2).uniform(0, 1, (8, 1, 4, 4, 2)).astype(np.float32)
    np.save(tmp_path / "cal.npy", xs)
    q = quantize(g, f'calibration="{tmp_path / "cal.npy"}"')
    (hs,) = [op for op in q.ops if op.kind == "nn.hard_swish"]
    assert not hs.result.type.dtype.is_float
    hard_swish_params(hs.operands[0].type, hs.result.type)
    s_in = hs.operands[0].type.quant.scale[0]
    assert HARD_SWISH_MIN_INPUT_SCALE < s_in < HARD_SWISH_MIN_INPUT_SCALE * 1.01
    for sample in xs:
        assert np.max(np.abs(run(q, [sample])[0] - run(g, [sample])[0])) <= s_in
