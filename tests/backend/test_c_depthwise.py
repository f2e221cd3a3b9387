"""The specialised depthwise kernels (``mcc_depthwise_conv2d_s8_k<K>s<S>``): chosen by the emitter for the common
cases, bit-exact with the interpreter on the border/interior splits, odd sizes, channel counts that are not a
multiple of four, extreme requantization, and on an emulated Cortex-M4/M7 (the SXTAB16/SMLAxy path)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.c.emitters.compute import (
    depthwise_fast_stream,
    depthwise_fast_variant,
    depthwise_fast_weights,
    depthwise_lines,
    depthwise_ring_lines,
)
from compiler.interpreter import run
from compiler.ir import DType, Graph, QuantParams, TensorType, const
from compiler.ops._common import conv_out_size
from compiler.ops.conv import depthwise_in_place
from compiler.verifier import verify
from tests.backend.harness import assert_c_matches_interpreter, compile_to_c
from tests.helpers import q8


def dw_graph(h: int, w: int, c: int, k: int, s: int, pads: tuple[int, int, int, int], *, seed: int = 0,
             mult: int = 1, dil: int = 1, wzp: int = 0, batch: int = 1, bias: bool = True, xzp: int = -7,
             out_scale: float = 0.08, act: dict | None = None, layers: int = 1, raster: bool = True) -> Graph:
    """``layers`` depthwise convolutions in a row (each on the previous result's shape). With ``raster`` every
    layer's input is also a graph output, so it stays live and the specialised raster kernels run (an input that
    dies at a small map's depthwise may instead go to the in-place channel-by-channel kernel)."""
    rng = np.random.default_rng(seed)
    g = Graph("dw")
    v = g.add_input(q8((batch, h, w, c), 0.05, xzp), "x")
    kept = []
    for i in range(layers):
        kept.append(v)
        _, hh, ww, cc = v.type.shape
        oc = cc * mult
        q = QuantParams.per_channel(list(rng.uniform(0.002, 0.02, oc)), [wzp] * oc, 3)
        ops = [v, const(g, rng.integers(-127, 128, (1, k, k, oc)), TensorType((1, k, k, oc), DType.INT8, q), "w")]
        if bias:
            ops.append(const(g, rng.integers(-3000, 3000, oc), TensorType((oc,), DType.INT32), "b"))
        oh = conv_out_size(hh, k, s, dil, pads[0], pads[2])
        ow = conv_out_size(ww, k, s, dil, pads[1], pads[3])
        attrs = {"strides": (s, s), "pads": pads, "dilations": (dil, dil), "depth_multiplier": mult, **(act or {})}
        v = g.create("nn.depthwise_conv2d", ops, [q8((batch, oh, ow, oc), out_scale, 3)], attrs, [f"y{i}"]).result
    g.outputs = [*kept, v] if raster else [v]
    verify(g)
    return g


def _dw_ops(g: Graph) -> list:
    return [op for op in g.ops if op.kind == "nn.depthwise_conv2d"]


def test_weight_order():
    w = (np.arange(2 * 2 * 6) - 12).astype(np.int8).reshape(1, 2, 2, 6)  # 4 taps, 6 channels: a block of 4, 2 left
    taps = w.reshape(4, 6).astype(np.int64)

    def half(a: int, b: int) -> int:  # two int16 lanes in one word, a low
        return (a & 0xFFFF) | ((b & 0xFFFF) << 16)

    wide = [half(taps[t, i], taps[t, i + 2]) for t in range(4) for i in (0, 1)]
    narrow = [sum((int(taps[t, j]) & 0xFF) << (8 * j) for j in range(4)) for t in range(4)]
    rest = [int(taps[t, j]) & 0xFFFFFFFF for t in range(4) for j in (4, 5)]
    for got, block in ((depthwise_fast_weights(w), wide), (depthwise_fast_weights(w, narrow=True), narrow)):
        assert got.dtype == np.int32
        assert got.view(np.uint32).tolist() == block + rest


def test_stream_order():
    """The plain variant's speed-first stream: per block of four channels the doubled bias, the doubled weight pairs
    and the requantization rows, then the channels left (weights, bias, requantization)."""
    w = (np.arange(2 * 2 * 6) - 12).astype(np.int8).reshape(1, 2, 2, 6)
    bias = np.array([5, -7, 2**30, -(2**30) - 3, 11, -13], np.int32)  # doubling wraps like the C sum
    folded = np.arange(18, dtype=np.int32).reshape(6, 3) * 1000 - 7000
    got = depthwise_fast_stream(w, bias, folded).view(np.uint32).tolist()
    wide2 = depthwise_fast_weights(w, doubled=True).view(np.uint32).tolist()
    assert wide2 == depthwise_fast_weights(w.astype(np.int16) * 2).view(np.uint32).tolist()

    def u(v: int) -> int:
        return int(v) & 0xFFFFFFFF

    block = [u(2 * int(b)) for b in bias[:4]] + wide2[:8] + [u(v) for v in folded[:4].reshape(-1)]
    tail = wide2[8:] + [u(2 * int(b)) for b in bias[4:]] + [u(v) for v in folded[4:].reshape(-1)]
    assert got == block + tail


@pytest.mark.parametrize("k, s, mult, dil, wzp, want", [
    (3, 1, 1, 1, 0, "mcc_depthwise_conv2d_s8_k3s1"),
    (5, 2, 1, 1, 0, "mcc_depthwise_conv2d_s8_k5s2"),
    (7, 1, 1, 1, 0, "mcc_depthwise_conv2d_s8_k7s1"),
    (3, 1, 2, 1, 0, None),   # depth multiplier
    (3, 1, 1, 2, 0, None),   # dilation
    (3, 1, 1, 1, 3, None),   # weight zero point
    (1, 1, 1, 1, 0, None),   # 1x1 window
    (3, 3, 1, 1, 0, None),   # stride 3
])
def test_variant_choice(tmp_path, k, s, mult, dil, wzp, want):
    g = dw_graph(9, 9, 4, k, s, (k // 2,) * 4, mult=mult, dil=dil, wzp=wzp)
    (op,) = _dw_ops(g)
    assert depthwise_fast_variant(op) == want
    compile_to_c(g, tmp_path / "c")
    text = (tmp_path / "c" / "t.c").read_text()
    assert (want or "mcc_depthwise_conv2d_s8(") in text


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("c", [1, 4, 7, 12])
def test_fast_kernels_match_the_interpreter(tmp_path, k, s, c):
    """Same padding (k // 2), an odd map: left/right border columns, top/bottom border rows and an interior."""
    g = dw_graph(11, 13, c, k, s, (k // 2,) * 4, seed=k * 10 + s + c)
    assert depthwise_fast_variant(_dw_ops(g)[0]) is not None
    assert_c_matches_interpreter(g, tmp_path, n=3)


@st.composite
def fast_dw_graphs(draw) -> Graph:
    k = draw(st.sampled_from([3, 5, 7]))
    s = draw(st.sampled_from([1, 2]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    pads = tuple(draw(st.integers(0, k - 1)) for _ in range(4))
    h = max(h, k - pads[0] - pads[2])  # at least one output row and column
    w = max(w, k - pads[1] - pads[3])
    c = draw(st.integers(1, 10))
    act = draw(st.sampled_from([None, {"act_min": 0.0, "act_max": 6.0}]))
    return dw_graph(h, w, c, k, s, pads, seed=draw(st.integers(0, 999)), batch=draw(st.integers(1, 2)),
                    bias=draw(st.booleans()), xzp=draw(st.integers(-128, 127)),
                    out_scale=draw(st.sampled_from([0.08, 1e-4, 30.0])), act=act)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(g=fast_dw_graphs())
def test_random_fast_depthwise_matches_the_interpreter(tmp_path_factory, g):
    """Any padding (all-padding rows and columns, no interior at all), input zero point, batch, bias or none,
    output scales whose multipliers need left shifts (1e-4) or large right shifts (30)."""
    assert depthwise_fast_variant(_dw_ops(g)[0]) is not None
    assert_c_matches_interpreter(g, tmp_path_factory.mktemp("dw"), n=2)


def test_fast_kernels_under_sanitizers(tmp_path):
    g = dw_graph(7, 6, 5, 3, 2, (1, 0, 1, 2), batch=2, act={"act_min": 0.0, "act_max": 6.0}, layers=2)
    assert all(depthwise_fast_variant(op) for op in _dw_ops(g))
    assert_c_matches_interpreter(g, tmp_path, n=3, sanitize=True)


def test_generic_fallback_depth_multiplier(tmp_path):
    g = dw_graph(7, 8, 3, 3, 1, (1, 1, 1, 1), mult=2)
    assert depthwise_fast_variant(_dw_ops(g)[0]) is None
    assert_c_matches_interpreter(g, tmp_path, n=3)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="QEMU or the Arm toolchain is not installed")
@pytest.mark.parametrize("target, opt", [("cortex-m4", "O3"), ("cortex-m7", "O3"), ("cortex-m7", "Os"),
                                         ("cortex-m7", "O0")])
def test_dsp_path_on_emulated_cortex_m(tmp_path, target, opt):
    """The SXTAB16/SMLAxy path (Armv7E-M) equals the interpreter: every variant, odd channel counts, a zero point
    at the edge of the int8 range; at -Os with the size-first layouts (byte weights, two-word requantization)."""
    pytest.importorskip("elftools")
    from backends.cortexm.emulate import emulate

    g = Graph("dws")
    rng = np.random.default_rng(5)
    v = g.add_input(q8((1, 14, 13, 6), 0.05, -128), "x")
    for i, (k, s) in enumerate([(3, 1), (5, 1), (3, 2), (7, 1), (5, 2), (7, 2)]):
        _, hh, ww, cc = v.type.shape
        q = QuantParams.per_channel(list(rng.uniform(0.002, 0.05, cc)), [0] * cc, 3)
        wt = const(g, rng.integers(-128, 128, (1, k, k, cc)), TensorType((1, k, k, cc), DType.INT8, q), f"w{i}")
        b = const(g, rng.integers(-9000, 9000, cc), TensorType((cc,), DType.INT32), f"b{i}")
        p = k // 2
        oh, ow = conv_out_size(hh, k, s, 1, p, p), conv_out_size(ww, k, s, 1, p, p)
        scale = 0.002 if i == 1 else 0.1  # layer 1: multipliers above 1 for some channels (the _any variant)
        v = g.create("nn.depthwise_conv2d", [v, wt, b], [q8((1, oh, ow, cc), scale, 5)],
                     {"strides": (s, s), "pads": (p, p, p, p)}, [f"y{i}"]).result
    g.outputs = [v]
    verify(g)
    assert all(depthwise_fast_variant(op) for op in _dw_ops(g))
    out = tmp_path / "c"
    report, text = _compile_planned(g, out, "dws", target)
    assert "mcc_depthwise_conv2d_s8_k5s1_any(" in text and "mcc_depthwise_conv2d_s8_k3s1(" in text
    x = rng.integers(-128, 128, (3, *g.inputs[0].type.shape)).astype(np.int8)
    res = emulate(out, report, target, opt, [x])
    for i in range(3):
        np.testing.assert_array_equal(res.outputs[0][i].reshape(v.type.shape), run(g, [x[i]])[0])


def _compile_planned(g, out, name, target):
    """Compile a graph of one NHWC input and output as it stands (no passes) for ``target``: (report, NAME.c)."""
    from compiler.driver import LoadedModel, compile_graph, split_io
    from compiler.targets import get_target

    model = LoadedModel(g, ((0, 1, 2, 3),), ((0, 1, 2, 3),), (g.inputs[0].type.shape,), (g.outputs[0].type.shape,))
    ins, outs = split_io(g, model)
    report = compile_graph(g, out, name=name, target=get_target(target), ins=ins, outs=outs, source="test",
                           opt_level=0, pipeline="")
    return report, (out / f"{name}.c").read_text()


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="QEMU or the Arm toolchain is not installed")
@pytest.mark.parametrize("c", [12, 7])
def test_raster_3x3_asm_blocks_on_emulated_cortex_m7(tmp_path, c):
    """The 3x3 raster kernels' asm paths on Armv7E-M (mcc_depthwise.c: the interior pixel's whole block with the
    plain variant's stream and the whole int8 clamp, the compile-time border windows, the clamped requantization,
    the _any variant's tables) equal the interpreter: strides 1 and 2, even and odd sizes, paddings (0, 0, 1, 1),
    (1, 1, 1, 1) and none, several blocks of four channels, or one and three channels left."""
    pytest.importorskip("elftools")
    from backends.cortexm.emulate import emulate

    g = Graph("dw3")
    rng = np.random.default_rng(c)
    v = g.add_input(q8((1, 18, 17, c), 0.05, -128), "x")
    layers = [(2, (0, 0, 1, 1), {}), (1, (1, 1, 1, 1), {"act_min": 0.0, "act_max": 6.0}), (2, (1, 1, 1, 1), {}),
              (1, (0, 0, 0, 0), {}), (1, (1, 1, 1, 1), {})]
    for i, (s, pads, act) in enumerate(layers):
        _, hh, ww, _ = v.type.shape
        q = QuantParams.per_channel(list(rng.uniform(0.002, 0.05, c)), [0] * c, 3)
        wt = const(g, rng.integers(-128, 128, (1, 3, 3, c)), TensorType((1, 3, 3, c), DType.INT8, q), f"w{i}")
        b = const(g, rng.integers(-9000, 9000, c), TensorType((c,), DType.INT32), f"b{i}")
        oh, ow = conv_out_size(hh, 3, s, 1, pads[0], pads[2]), conv_out_size(ww, 3, s, 1, pads[1], pads[3])
        scale = 0.002 if i == 4 else 0.05  # the last layer: multipliers above 1 for some channels (_any)
        v = g.create("nn.depthwise_conv2d", [v, wt, b], [q8((1, oh, ow, c), scale, -128 if i != 1 else 5)],
                     {"strides": (s, s), "pads": pads, **act}, [f"y{i}"]).result
    g.outputs = [v]
    verify(g)
    assert all(depthwise_fast_variant(op) for op in _dw_ops(g))
    out = tmp_path / "c"
    report, text = _compile_planned(g, out, "dw3", "cortex-m7")
    assert "mcc_depthwise_conv2d_s8_k3s2(" in text and "mcc_depthwise_conv2d_s8_k3s1_any(" in text
    x = rng.integers(-128, 128, (2, *g.inputs[0].type.shape)).astype(np.int8)
    res = emulate(out, report, "cortex-m7", "O3", [x])
    for i in range(2):
        np.testing.assert_array_equal(res.outputs[0][i].reshape(v.type.shape), run(g, [x[i]])[0])


@pytest.mark.parametrize("k, s, dil, out_scale", [(3, 1, 1, 0.08), (5, 1, 1, 0.08), (7, 1, 1, 0.08), (3, 1, 2, 0.08),
                                                 (4, 1, 1, 0.08), (3, 1, 1, 1e-4), (3, 1, 1, 30.0)])
def test_in_place_planar_kernel_matches_the_interpreter(tmp_path, k, s, dil, out_scale):
    """Small maps with many channels take the in-place channel-by-channel kernel: interior windows on its
    branch-free path (pairs of outputs for 3x3, unrolled for square k 3/5/7), border windows over their valid taps,
    dilation generic; extreme output scales take the general requantization."""
    from compiler.memory import plan_memory
    from compiler.ops.conv import depthwise_in_place
    from compiler.passmanager import PassManager, parse_pipeline

    pad = (k - 1) * dil // 2
    g = dw_graph(9, 7, 96, k, s, (pad, pad, pad, pad + 1), dil=dil, seed=k + s + dil, raster=False,
                 out_scale=out_scale)
    (op,) = _dw_ops(g)
    PassManager(parse_pipeline("plan-memory")).run(g)  # it picks the in-place kernel: it lowers the arena
    assert depthwise_in_place(op)
    plan = plan_memory(g)
    assert plan.offset(op.result) == plan.offset(op.operands[0])  # on exactly the input's bytes
    assert_c_matches_interpreter(g, tmp_path, n=3, sanitize=True)


def _force_in_place(g: Graph) -> None:
    for op in _dw_ops(g):
        op.attrs["in_place"] = True


def _ring_branches(cases: list[tuple], seed: int) -> Graph:
    """One graph holding an in-place 3x3 stride-1 depthwise layer per case ``(h, w, c, pads, xzp, out_scale, act)``,
    each on its own input (one C build checks them all)."""
    rng = np.random.default_rng(seed)
    g = Graph("ring")
    outs = []
    for i, (h, w, c, pads, xzp, out_scale, act) in enumerate(cases):
        x = g.add_input(q8((1, h, w, c), 0.05, xzp), f"x{i}")
        q = QuantParams.per_channel(list(rng.uniform(0.002, 0.02, c)), [0] * c, 3)
        wt = const(g, rng.integers(-127, 128, (1, 3, 3, c)), TensorType((1, 3, 3, c), DType.INT8, q), f"w{i}")
        b = const(g, rng.integers(-3000, 3000, c), TensorType((c,), DType.INT32), f"b{i}")
        oh, ow = conv_out_size(h, 3, 1, 1, pads[0], pads[2]), conv_out_size(w, 3, 1, 1, pads[1], pads[3])
        attrs = {"strides": (1, 1), "pads": pads, "dilations": (1, 1), "in_place": True, **(act or {})}
        outs.append(g.create("nn.depthwise_conv2d", [x, wt, b], [q8((1, oh, ow, c), out_scale, 3)], attrs,
                             [f"y{i}"]).result)
    g.outputs = outs
    verify(g)
    return g


RELU6 = {"act_min": 0.0, "act_max": 6.0}


def test_in_place_ring_kernel_matches_the_interpreter(tmp_path):
    """3x3 stride-1 in-place layers with C a multiple of 4 take the ring of lines (rows, or columns for a tall map of
    unchanged shape): odd and even line lengths, 'valid' and one-sided padding, a clamp narrower than int8, extreme
    output scales (general requantization, saturation), zero points at the int8 edges; a line longer than 28 falls
    back to the plane."""
    from compiler.memory import plan_memory

    cases = [(25, 5, 64, (1, 1, 1, 1), -7, 0.08, None, "cols"),
             (6, 9, 16, (1, 1, 1, 1), -128, 0.08, None, "rows"),
             (7, 6, 8, (0, 0, 0, 0), 127, 0.08, RELU6, "rows"),
             (6, 7, 4, (1, 0, 1, 0), 0, 1e-4, None, "rows"),
             (9, 4, 12, (0, 1, 0, 1), -7, 30.0, None, "rows"),
             (8, 3, 4, (1, 1, 0, 0), -7, 0.08, {"act_min": -1.0, "act_max": 1.0}, "rows"),
             (11, 2, 8, (1, 1, 1, 1), 5, 0.002, None, "cols"),
             (1, 1, 4, (1, 1, 1, 1), -7, 0.08, None, "rows"),
             (28, 27, 4, (1, 1, 1, 1), -7, 0.08, None, "cols"),
             (33, 4, 4, (1, 1, 1, 1), -7, 0.08, None, None)]
    g = _ring_branches([case[:-1] for case in cases], 1)
    ops = _dw_ops(g)
    assert [depthwise_ring_lines(op) for op in ops] == [case[-1] for case in cases]
    plan = plan_memory(g)
    assert all(depthwise_in_place(op) for op in ops)
    shared = [plan.offset(op.result) == plan.offset(op.operands[0]) for op in ops]
    assert shared[0] and shared[1] and shared[-2]  # at least these run on exactly their input's bytes
    assert_c_matches_interpreter(g, tmp_path, n=3, sanitize=True)


def test_in_place_ring_kernel_random_shapes(tmp_path):
    """Random ring-kernel shapes: line lengths up to 12, padding 0 or 1 on each side, random zero points and
    scales."""
    rng = np.random.default_rng(11)
    cases = []
    while len(cases) < 12:
        h, w = int(rng.integers(1, 13)), int(rng.integers(1, 13))
        pads = tuple(int(p) for p in rng.integers(0, 2, 4))
        if h + pads[0] + pads[2] < 3 or w + pads[1] + pads[3] < 3:
            continue
        cases.append((h, w, 4 * int(rng.integers(1, 4)), pads, int(rng.choice([-128, -7, 0, 127])),
                      float(rng.choice([0.08, 0.01, 1e-4, 30.0])), None if rng.integers(0, 2) else RELU6))
    g = _ring_branches(cases, 2)
    assert all(depthwise_ring_lines(op) is not None for op in _dw_ops(g))
    assert_c_matches_interpreter(g, tmp_path, n=2, sanitize=True)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="QEMU or the Arm toolchain is not installed")
def test_in_place_ring_kernel_on_emulated_cortex_m7(tmp_path):
    """The ring kernel's DSP path (SXTB16/SMLAD, SMMLAR on the doubled accumulator, SSAT): columns, rows, a narrow
    clamp and a layer with the general requantization, on an emulated Cortex-M7."""
    pytest.importorskip("elftools")
    from backends.cortexm.emulate import emulate
    from compiler.driver import LoadedModel, compile_graph, split_io
    from compiler.targets import get_target

    for i, (h, w, pads, scale, act) in enumerate([(13, 5, (1, 1, 1, 1), 0.08, None),
                                                 (5, 7, (1, 1, 0, 0), 1e-4, RELU6)]):
        g = dw_graph(h, w, 8, 3, 1, pads, seed=i, raster=False, out_scale=scale, act=act)
        _force_in_place(g)
        (op,) = _dw_ops(g)
        assert depthwise_ring_lines(op) == ("cols" if i == 0 else "rows")
        v = op.result
        model = LoadedModel(g, ((0, 1, 2, 3),), ((0, 1, 2, 3),), (g.inputs[0].type.shape,), (v.type.shape,))
        ins, outs = split_io(g, model)
        out = tmp_path / f"c{i}"
        report = compile_graph(g, out, name="dwr", target=get_target("cortex-m7"), ins=ins, outs=outs,
                               source="test", opt_level=0, pipeline="plan-memory")
        kernel = "mcc_depthwise_conv2d_s8_lines_inplace(" if i == 0 else "mcc_depthwise_conv2d_s8_planar("
        assert depthwise_lines(op) == ("cols" if i == 0 else None)  # the second needs the general requantization
        assert kernel in (out / "dwr.c").read_text()
        x = np.random.default_rng(i).integers(-128, 128, (2, *g.inputs[0].type.shape)).astype(np.int8)
        res = emulate(out, report, "cortex-m7", "O3", [x])
        for j in range(2):
            np.testing.assert_array_equal(res.outputs[0][j].reshape(v.type.shape), run(g, [x[j]])[0])


def test_zero_point_fold_is_exact_where_allowed():
    """The plain variant's table carries the output zero point in its rounding half: where depthwise_zp_folds
    allows it (every shift up to 22, larger ones when the accumulator bound is small enough), SMMLAR(2 acc, m,
    2^(r-1) + zp * 2^r) (64-bit arithmetic, the 32-bit result checked for overflow), the sign fix and the shift give
    MultiplyByQuantizedMultiplier(acc) + zp for accumulators at the bound, multipliers and zero points at the
    extremes; it refuses a table without the fast form and shifts where the sum could overflow."""
    from backends.c.emitters.compute import depthwise_fold_zero_point, depthwise_zp_folds
    from compiler.quant import multiply_by_quantized_multiplier

    rng = np.random.default_rng(3)
    allowed = 0
    for r in range(1, 31):
        for m in (1 << 30, (1 << 31) - 1, int(rng.integers(1 << 30, 1 << 31))):
            for zp in (-128, -1, 0, 127):
                for bound in ((1 << 30) - 1, 1 << 20, 3000):
                    rq = np.array([m, r, 1 << (r - 1)], np.int32)
                    ok = depthwise_zp_folds(rq, zp, np.array([bound]))
                    assert ok or r > 22
                    if not ok:
                        continue
                    allowed += 1
                    h = int(depthwise_fold_zero_point(rq, zp)[2])
                    accs = [-bound, bound, -1, 0, 1, *rng.integers(-bound, bound + 1, 20).tolist()]
                    for acc in accs:
                        acc2 = 2 * acc
                        t = (acc2 * m + (h << 32) + (1 << 31)) >> 32
                        assert -(1 << 31) <= t < 1 << 31
                        got = (t + (-1 if acc2 < 0 else 0)) >> r
                        assert got == int(multiply_by_quantized_multiplier(acc, m, -r)) + zp
    assert 22 * 3 * 4 * 3 < allowed < 30 * 3 * 4 * 3  # some larger shifts fold, not all
    assert not depthwise_zp_folds(np.array([1 << 30, 3, -4], np.int32), 0, np.array([100]))


@pytest.mark.parametrize("h, w, c, pads, xzp, scale, act", [
    (5, 24, 8, (1, 1, 1, 1), -7, 0.08, None),
    (4, 48, 4, (1, 1, 1, 1), -128, 0.08, RELU6),
    (6, 30, 12, (0, 0, 0, 0), 127, 0.08, None),
    (3, 57, 8, (1, 0, 1, 0), 0, 0.03, {"act_min": -1.0, "act_max": 1.0}),
    (7, 25, 4, (0, 1, 0, 1), -7, 0.08, None),
])
def test_line_kernel_matches_the_interpreter(tmp_path, h, w, c, pads, xzp, scale, act):
    """3x3 stride-1 layers at least LINES_MIN_WIDTH wide take the channel-line kernel (mcc_depthwise_lines.c): one
    or more segments per row, odd widths and heights, 'valid' and one-sided padding, narrow clamps. Two layers in a
    row, the first input dead after its layer, so the plan overlaps results with their inputs (the kernel's address
    checks pick the line path or pixel by pixel; or the planner runs a layer in place), and once with the inputs
    kept (disjoint buffers)."""
    for raster in (False, True):
        g = dw_graph(h, w, c, 3, 1, pads, xzp=xzp, out_scale=scale, act=act, layers=2, raster=raster)
        assert all(depthwise_lines(op) == "raster" for op in _dw_ops(g))
        (tmp_path / str(raster)).mkdir()
        assert_c_matches_interpreter(g, tmp_path / str(raster), n=2, sanitize=True)
        text = (tmp_path / str(raster) / "c" / "t.c").read_text()
        assert not raster or "mcc_depthwise_conv2d_s8_lines(" in text


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no host C compiler")
@pytest.mark.parametrize("h, w, c, pads", [(5, 26, 8, (1, 1, 1, 1)), (4, 57, 4, (1, 0, 1, 0)),
                                           (6, 30, 12, (0, 0, 0, 0)), (3, 24, 16, (1, 1, 1, 1))])
def test_line_kernel_at_every_overlap(tmp_path, h, w, c, pads):
    """The raster-placement line kernel on one buffer, its result d bytes below its input for every d from the
    declared distance up (the line path, the same-block path or pixel by pixel, as its address checks decide), and
    right after its input: always the interpreter's result."""
    import ctypes
    import subprocess
    from pathlib import Path

    from backends.c.emitters.compute import depthwise_lines_table
    from compiler.ops._common import act_range_int, per_tensor
    from compiler.overlap import overlap_distance

    root = Path(__file__).resolve().parents[2]
    fns = []
    for narrow in (False, True):  # the byte table of size-first builds (and of mcc's flash fallback) too
        lib = tmp_path / f"dwl{int(narrow)}.so"
        subprocess.run(["gcc", "-std=c99", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror",
                        *(["-DMCC_GEMM_NARROW"] if narrow else []), f"-I{root / 'runtime_c'}",
                        str(root / "runtime_c" / "mcc_depthwise_lines.c"), "-o", str(lib)], check=True)
        fns.append(ctypes.CDLL(str(lib)).mcc_depthwise_conv2d_s8_lines)
    g = dw_graph(h, w, c, 3, 1, pads, seed=h + w)
    (op,) = _dw_ops(g)
    assert depthwise_lines(op) == "raster"
    y = op.result
    _, oh, ow, _ = y.type.shape
    _, xzp = per_tensor(op.operands[0], op, "input")
    _, yzp = per_tensor(y, op, "result")
    lo, hi = act_range_int(op, y.type)
    params = np.array([1, h, w, c, oh, ow, c, 3, 3, 1, 1, 1, 1, pads[0], pads[1], 1, 1, -xzp, 0, yzp, lo, hi],
                      np.int32)
    tabs = [depthwise_lines_table(op, "raster"), depthwise_lines_table(op, "raster", narrow=True)]
    x = np.random.default_rng(w).integers(-128, 128, (1, h, w, c)).astype(np.int8)
    want = run(g, [x])[-1].reshape(-1)
    nin, nout = x.size, want.size
    ov = overlap_distance(op, 0)
    assert ov is not None
    ptr = ctypes.c_void_p
    for fn, tab, ds in ((fns[0], tabs[0], [*range(ov.d, 3 * w * c + 8), -nin]), (fns[1], tabs[1], [ov.d, -nin])):
        for d in ds:
            arena = np.zeros(nin + nout + abs(d) + 64, np.int8)
            out_at = 16 + max(0, -d)  # the result d bytes below the input
            in_at = out_at + d
            arena[in_at:in_at + nin] = x.reshape(-1)
            base = arena.ctypes.data
            fn(ptr(params.ctypes.data), ptr(base + in_at), ptr(tab.ctypes.data), ptr(base + out_at))
            np.testing.assert_array_equal(arena[out_at:out_at + nout], want, err_msg=f"d = {d}")
