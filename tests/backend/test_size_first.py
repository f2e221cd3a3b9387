"""The size-first (-Os, ``MCC_SIZE_FIRST``) tables and kernels: the packed requantization decodes to the
interpreter's multipliers and shifts for every channel (synthetic layers of every form and the real models' layers),
and host builds at -Os (the portable C of the compact GEMM, depthwise and softmax kernels) equal the interpreter bit
for bit under the sanitizers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backends.c.emitters.gemm import SMALL_WIDE, small_requant, small_requant_decode
from compiler.ir import DType, Graph, QuantParams, TensorType, const
from compiler.quant import multiply_by_quantized_multiplier
from compiler.verifier import verify
from tests.helpers import random_input

MODELS = Path("/work/shared/models")


def _check_table(table: np.ndarray, mult: np.ndarray, shift: np.ndarray, bias: np.ndarray, w: np.ndarray,
                 zp: int) -> None:
    """Every nonzero multiplier and its shift come back exactly; a zero multiplier's decoded pair gives 0 at both
    ends of the channel's accumulator range (or the table is the wide form, which stores it as it is)."""
    m, s, z = small_requant_decode(table, len(mult))
    assert z == zp
    nz = mult != 0
    np.testing.assert_array_equal(m[nz], mult[nz])
    np.testing.assert_array_equal(s[nz], shift[nz])
    d = 128 * np.abs(w.astype(np.int64)).sum(axis=1)
    for c in np.nonzero(~nz)[0]:
        for acc in (int(bias[c] - d[c]), int(bias[c] + d[c])):
            assert int(multiply_by_quantized_multiplier(acc, int(m[c]), int(s[c]))) == 0


@pytest.mark.parametrize("span, hb", [(1, 0), (4, 0), (5, 2), (16, 2), (17, 4), (61, 4)])
def test_packed_requantization_round_trips(span, hb):
    rng = np.random.default_rng(span)
    for trial in range(20):
        c = int(rng.integers(3, 37))
        s0 = int(rng.integers(-31, 31 - span + 1))
        mult = rng.integers(1 << 30, 1 << 31, c)
        shift = rng.integers(s0, s0 + span, c)
        shift[0], shift[-1] = s0, s0 + span - 1  # the whole span
        w = rng.integers(-127, 128, (c, 12))
        bias = rng.integers(-5000, 5000, c)
        if trial % 2 and c > 2 and s0 <= 0:  # a dead channel: zero multiplier, weights and bias
            mult[1], w[1], bias[1] = 0, 0, 0
        zp = int(rng.integers(-128, 128))
        table = small_requant(mult, shift, bias, w, zp)
        head = int(table[0]) & 0xFFFFFFFF
        assert not head & SMALL_WIDE and (head >> 17) & 7 == hb
        assert table.size == 1 + c + (-(-c * hb // 32) if hb else 0)  # 4 bytes a channel, + hb bits
        _check_table(table, mult, shift, bias, w, zp)


def test_zero_multiplier_with_a_live_range_takes_the_wide_form():
    mult = np.array([1 << 30, 0, 1500000000])
    shift = np.array([-8, 0, -7])
    w = np.ones((3, 4), np.int64)
    bias = np.array([0, 1 << 28, 0])  # the zero channel's accumulators reach 2^28: 2^30 * 2^-8 would not give 0
    table = small_requant(mult, shift, bias, w, -3)
    assert int(table[0]) & SMALL_WIDE and table.size == 1 + 3 + 1
    m, s, zp = small_requant_decode(table, 3)
    assert m.tolist() == mult.tolist() and s.tolist() == shift.tolist() and zp == -3


@pytest.mark.parametrize("model", ["mlperf_tiny/vww_96_int8.tflite", "mlperf_tiny/kws_ref_model_int8.tflite",
                                   "mlperf_tiny/ic_resnet8_int8.tflite", "tflm/person_detect.tflite"])
def test_real_layers_decode_to_the_interpreter_multipliers(tmp_path, monkeypatch, model):
    path = MODELS / model
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    import backends.c.emitters.compute as compute
    import backends.c.emitters.gemm as gemm
    from compiler.cli import main

    seen = []

    def recording(mult, shift, bias, w, zp):
        table = small_requant(mult, shift, bias, w, zp)
        seen.append((table, np.asarray(mult), np.asarray(shift), np.asarray(bias), np.asarray(w), zp))
        return table

    monkeypatch.setattr(gemm, "small_requant", recording)
    monkeypatch.setattr(compute, "small_requant", recording)
    assert main([str(path), "-O3", "-o", str(tmp_path / "c")]) == 0
    assert seen
    channels = packed = 0
    for table, mult, shift, bias, w, zp in seen:
        _check_table(table, mult, shift, bias, w, zp)
        channels += len(mult)
        packed += not int(table[0]) & SMALL_WIDE
    assert packed == len(seen)  # no real layer needs the wide form
    text = (tmp_path / "c").glob("*.c")
    assert any("#if defined(MCC_SIZE_FIRST)" in f.read_text() for f in text)


def _t8(shape, scale, zp=0):
    return TensorType(shape, DType.INT8, QuantParams.per_tensor(scale, zp))


def _conv_graph() -> Graph:
    """A 3x3 stride-2 conv of 3 channels with padding (depth tail, 6 outputs: a block and two single channels), a 3x3
    depthwise whose tiny output scale makes left shifts (the _any variant), a pointwise conv read in place, a 5x5
    stride-2 depthwise and a 1x1 conv to 5 channels."""
    rng = np.random.default_rng(7)
    g = Graph("sf")
    h = g.add_input(_t8((1, 11, 10, 3), 0.03, -7), "x")
    for i, (kind, k, co, s, out_scale) in enumerate([("conv", 3, 6, 2, 0.06), ("dw", 3, 6, 1, 0.0004),
                                                     ("conv", 1, 8, 1, 0.05), ("dw", 5, 8, 2, 0.07),
                                                     ("conv", 1, 5, 1, 0.09)]):
        ci = h.type.shape[3]
        p = k // 2
        scales = tuple(float(v) for v in rng.uniform(0.002, 0.02, co))
        if kind == "conv":
            shape = (co, k, k, ci)
            op_kind = "nn.conv2d"
        else:
            shape = (1, k, k, co)
            op_kind = "nn.depthwise_conv2d"
        w = const(g, rng.integers(-127, 128, shape).astype(np.int8),
                  TensorType(shape, DType.INT8, QuantParams(scales, tuple([0] * co), 0 if kind == "conv" else 3)))
        b = const(g, rng.integers(-4000, 4000, co).astype(np.int32),
                  TensorType((co,), DType.INT32, QuantParams(tuple(0.03 * v for v in scales), tuple([0] * co), 0)))
        hh = (h.type.shape[1] + 2 * p - k) // s + 1
        ww = (h.type.shape[2] + 2 * p - k) // s + 1
        attrs = {"pads": (p, p, p, p), "strides": (s, s)}
        h = g.create(op_kind, [h, w, b], [_t8((1, hh, ww, co), out_scale, 5 - 3 * i)], attrs, [f"y{i}"]).result
    g.outputs = [h]
    verify(g)
    return g


def _fc_graph() -> Graph:
    """A fully connected layer of 21 inputs (a depth tail) to 7 outputs, then a softmax over them."""
    rng = np.random.default_rng(3)
    g = Graph("sfc")
    x = g.add_input(_t8((3, 21), 0.05, 4), "x")
    scales = tuple(float(v) for v in rng.uniform(0.002, 0.01, 7))
    w = const(g, rng.integers(-127, 128, (7, 21)).astype(np.int8),
              TensorType((7, 21), DType.INT8, QuantParams(scales, tuple([0] * 7), 0)))
    b = const(g, rng.integers(-2000, 2000, 7).astype(np.int32),
              TensorType((7,), DType.INT32, QuantParams(tuple(0.05 * v for v in scales), tuple([0] * 7), 0)))
    y = g.create("nn.fully_connected", [x, w, b], [_t8((3, 7), 0.1, -2)], {}, ["y"]).result
    z = g.create("nn.softmax", [y], [_t8((3, 7), 1 / 256, -128)], {"axis": -1, "beta": 1.0}, ["z"]).result
    g.outputs = [z]
    verify(g)
    return g


def _lines_graph() -> Graph:
    """A 3x3 stride-1 depthwise on a 12 x 14 x 8 map (the raster line kernel at speed-first builds, the compact kernel
    from its size-first table at -Os), then a pointwise conv."""
    rng = np.random.default_rng(11)
    g = Graph("sfl")
    x = g.add_input(_t8((1, 12, 14, 8), 0.04, 3), "x")
    scales = tuple(float(v) for v in rng.uniform(0.004, 0.02, 8))
    w = const(g, rng.integers(-127, 128, (1, 3, 3, 8)).astype(np.int8),
              TensorType((1, 3, 3, 8), DType.INT8, QuantParams(scales, tuple([0] * 8), 3)))
    b = const(g, rng.integers(-3000, 3000, 8).astype(np.int32),
              TensorType((8,), DType.INT32, QuantParams(tuple(0.04 * v for v in scales), tuple([0] * 8), 0)))
    y = g.create("nn.depthwise_conv2d", [x, w, b], [_t8((1, 12, 14, 8), 0.08, -4)],
                 {"pads": (1, 1, 1, 1), "strides": (1, 1)}, ["y"]).result
    w2 = const(g, rng.integers(-127, 128, (4, 1, 1, 8)).astype(np.int8),
               TensorType((4, 1, 1, 8), DType.INT8, QuantParams.per_tensor(0.01, 0)))
    z = g.create("nn.conv2d", [y, w2], [_t8((1, 12, 14, 4), 0.1, 2)], {}, ["z"]).result
    g.outputs = [z]
    verify(g)
    return g


@pytest.mark.parametrize("make", [_conv_graph, _fc_graph, _lines_graph], ids=["conv_dw", "fc_softmax", "dw_lines"])
def test_size_first_host_build_matches_the_interpreter(tmp_path, make):
    import subprocess

    from backends.c.build import build
    from compiler.interpreter import run
    from tests.backend.harness import compile_to_c

    g = make()
    out = tmp_path / "c"
    compile_to_c(g, out)
    text = (out / "t.c").read_text()
    assert "#if defined(MCC_SIZE_FIRST)" in text  # the size-first tables are there
    if make is _lines_graph:  # the line kernel's call, whose size-first build runs the compact kernel
        assert "mcc_depthwise_conv2d_s8_lines(" in text
    runner = build(out, opt="-Os", sanitize=True) / "t_run"
    rng = np.random.default_rng(1)
    samples = [random_input(g.inputs[0], rng) for _ in range(6)]
    fin, fout = tmp_path / "in.bin", tmp_path / "out.bin"
    fin.write_bytes(np.stack(samples).tobytes())
    r = subprocess.run([str(runner), str(fin), str(fout), str(len(samples))], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = np.frombuffer(fout.read_bytes(), np.int8).reshape(len(samples), *g.outputs[0].type.shape)
    for k, x in enumerate(samples):
        np.testing.assert_array_equal(got[k], run(g, [x])[0], err_msg=f"sample {k}")
