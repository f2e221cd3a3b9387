"""The GEMM kernel (runtime_c/mcc_gemm.c): weight packing, per-channel requantization variants and the C build
against the interpreter on the awkward cases (huge biases, zero and left-shift multipliers, K and C_out tails)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from backends.c.emitters.gemm import pack_weights, requant_table
from compiler.ir import DType, Graph, QuantParams, TensorType, const
from compiler.verifier import verify
from tests.backend.harness import assert_c_matches_interpreter


def test_wide_layout_pairs_taps_for_sxtb16():
    w = np.arange(2 * 4 * 5).reshape(8, 5) - 20  # two blocks of four channels, K = 5: one group and one tail tap
    words = pack_weights(w, 5, narrow=False).view(np.uint32).astype(np.int64)
    half = lambda v: ((v + (1 << 15)) & 0xFFFF) - (1 << 15)  # noqa: E731
    # block 0, group 0, channel 0: (k0, k2) then (k1, k3)
    assert [half(words[0] & 0xFFFF), half(words[0] >> 16), half(words[1] & 0xFFFF), half(words[1] >> 16)] == \
        [w[0, 0], w[0, 2], w[0, 1], w[0, 3]]
    assert words.size == 2 * (4 * 2 + 4)  # per block: 4 channels x 2 words, then 4 tail words
    narrow = pack_weights(w, 5, narrow=True).view(np.uint32)
    assert narrow.size == 2 * (4 + 4) and int(narrow[1]) & 0xFF == w[1, 0] & 0xFF


def test_requant_rows_choose_the_variant_per_channel():
    mult = np.array([1 << 30, 0, 1 << 30, 1 << 30])
    shift = np.array([-3, 0, -3, 2])
    bias = np.array([0, 0, 1 << 30, 0])
    rows = requant_table(mult, shift, bias, np.ones((4, 8), np.int64)).reshape(4, 3)
    assert rows.tolist() == [[1 << 30, 3, 4], [0, 1, 1], [1 << 30, 3, -4], [1 << 30, 2, 0]]


def _t8(shape, scale, zp=0):
    return TensorType(shape, DType.INT8, QuantParams.per_tensor(scale, zp))


@pytest.mark.parametrize("kind", ["fc", "conv1x1", "conv3x3"])
def test_extreme_requantization_matches_the_interpreter(tmp_path, kind):
    """Channels with huge biases (64-bit variant), left shifts (generic), flushed multipliers and tiny shifts."""
    rng = np.random.default_rng(7)
    co, ci = 11, 7  # tails in both K and C_out
    scales = [1e-9, 0.02, 3.0, 1e-12, 0.5, 0.01, 40.0, 2e-6, 0.1, 0.3, 1e-4]
    wq = QuantParams(tuple(scales), tuple([0] * co), 0)
    g = Graph("g")
    if kind == "fc":
        x = g.add_input(_t8((3, ci), 0.05, 5), "x")
        w = const(g, rng.integers(-127, 128, (co, ci)).astype(np.int8), TensorType((co, ci), DType.INT8, wq))
    else:
        k = 1 if kind == "conv1x1" else 3
        x = g.add_input(_t8((1, 5, 4, ci), 0.05, 5), "x")
        w = const(g, rng.integers(-127, 128, (co, k, k, ci)).astype(np.int8),
                  TensorType((co, k, k, ci), DType.INT8, wq))
    big = np.array([1 << 30, -(1 << 30), 2_000_000_000, -2_100_000_000, 5, -7, 1 << 29, 0, 123456, -1, 99],
                   dtype=np.int32)
    b = const(g, big, TensorType((co,), DType.INT32, QuantParams(tuple(0.05 * s for s in scales),
                                                                   tuple([0] * co), 0)))
    if kind == "fc":
        y = g.create("nn.fully_connected", [x, w, b], [_t8((3, co), 0.2, -3)], {}, ["y"]).result
    else:
        p = (1, 1, 1, 1) if kind == "conv3x3" else (0, 0, 0, 0)
        y = g.create("nn.conv2d", [x, w, b], [_t8((1, 5, 4, co), 0.2, -3)], {"pads": p}, ["y"]).result
    g.outputs = [y]
    verify(g)
    assert_c_matches_interpreter(g, tmp_path, n=6, sanitize=True)


@pytest.mark.parametrize("k, ci, co, act", [(1, 6, 10, None), (1, 16, 8, (0.0, 6.0)), (3, 3, 8, None),
                                            (2, 5, 7, (-1.0, 2.5))])
def test_fast_requantization_layers_match_the_interpreter(tmp_path, k, ci, co, act):
    """Layers whose every channel takes the fast requantization (rq_fast = 1 in the C params), with ordinary
    scales, a clamp narrower than int8 or not, input depths that are no multiple of 4 and C_out tails."""
    from backends.c.emitters.gemm import fold_bias
    from compiler.ops.conv import requant_multipliers

    rng = np.random.default_rng(k * 100 + ci)
    scales = tuple(float(s) for s in rng.uniform(0.002, 0.02, co))
    g = Graph("g")
    x = g.add_input(_t8((1, 6, 5, ci), 0.05, 3), "x")
    w = const(g, rng.integers(-127, 128, (co, k, k, ci)).astype(np.int8),
              TensorType((co, k, k, ci), DType.INT8, QuantParams(scales, tuple([0] * co), 0)))
    b = const(g, rng.integers(-5000, 5000, co).astype(np.int32),
              TensorType((co,), DType.INT32, QuantParams(tuple(0.05 * s for s in scales), tuple([0] * co), 0)))
    attrs: dict = {"pads": (k // 2, k // 2, (k - 1) // 2, (k - 1) // 2)}
    if act is not None:  # a fused clamp narrower than int8: [-4 + 0/0.1, -4 + 6/0.1] and [-14, 21]
        attrs.update(act_min=act[0], act_max=act[1])
    y = g.create("nn.conv2d", [x, w, b], [_t8((1, 6, 5, co), 0.1, -4)], attrs, ["y"]).result
    g.outputs = [y]
    verify(g)
    conv = next(op for op in g.ops if op.kind == "nn.conv2d")
    w2d = np.asarray(conv.operands[1].const_value).reshape(co, -1).astype(np.int64)
    mult, shift = requant_multipliers(conv)
    rows = requant_table(mult, shift, fold_bias(np.asarray(conv.operands[2].const_value), w2d, -3), w2d)
    assert np.all(rows[2::3] > 0)  # the whole layer takes the fast path
    assert_c_matches_interpreter(g, tmp_path, n=6, sanitize=True)


@pytest.mark.parametrize("k, ci, stride, dil", [(3, 4, 1, 1), (3, 8, 2, 1), (2, 4, 1, 2), (3, 3, 2, 1), (1, 5, 2, 1)])
def test_window_rows_of_whole_groups_match_the_interpreter(tmp_path, k, ci, stride, dil):
    """The int16 im2col: window rows of k_w * C_in taps a multiple of four are expanded straight from the input
    (rows over the padding hold the input zero point, rows over the left or right edge gathered tap by tap); other
    windows go through an int8 column expanded in place. Strides, dilations and padding on every side."""
    rng = np.random.default_rng(k * 10 + ci)
    co = 6
    g = Graph("g")
    x = g.add_input(_t8((1, 7, 6, ci), 0.05, -7), "x")
    scales = tuple(float(s) for s in rng.uniform(0.002, 0.02, co))
    w = const(g, rng.integers(-127, 128, (co, k, k, ci)).astype(np.int8),
              TensorType((co, k, k, ci), DType.INT8, QuantParams(scales, tuple([0] * co), 0)))
    pads = (1, 1, 1, 1) if k > 1 else (0, 0, 0, 0)
    eff = (k - 1) * dil + 1
    oh, ow = (7 + pads[0] + pads[2] - eff) // stride + 1, (6 + pads[1] + pads[3] - eff) // stride + 1
    y = g.create("nn.conv2d", [x, w], [_t8((1, oh, ow, co), 0.1, 2)],
                 {"pads": pads, "strides": (stride, stride), "dilations": (dil, dil)}, ["y"]).result
    g.outputs = [y]
    verify(g)
    assert_c_matches_interpreter(g, tmp_path, n=4, sanitize=True)


@pytest.mark.parametrize("k", [1, 3])
def test_byte_column_convs_match_the_interpreter(tmp_path, k):
    """``byte_column`` convs multiply raw input bytes (a 1x1 pixel in place, else an int8 im2col column); an input
    depth that is no multiple of 4, so the pixel read in place ends in tail taps."""
    rng = np.random.default_rng(k)
    co, ci = 10, 10
    g = Graph("g")
    x = g.add_input(_t8((1, 5, 6, ci), 0.05, 9), "x")
    scales = tuple(float(s) for s in rng.uniform(0.002, 0.02, co))
    w = const(g, rng.integers(-127, 128, (co, k, k, ci)).astype(np.int8),
              TensorType((co, k, k, ci), DType.INT8, QuantParams(scales, tuple([0] * co), 0)))
    p = k // 2
    y = g.create("nn.conv2d", [x, w], [_t8((1, 5, 6, co), 0.1, -1)], {"pads": (p, p, p, p), "byte_column": True},
                 ["y"]).result
    g.outputs = [y]
    verify(g)
    assert_c_matches_interpreter(g, tmp_path, n=4, sanitize=True)


def test_plan_memory_takes_the_byte_column_where_the_int16_column_raises_the_peak():
    """A 3x3 conv at the peak: its int16 column (2 x 144 B) would raise the arena; the int8 one (144 B) does not."""
    from compiler.memory import plan_choosing_in_place, plan_memory

    rng = np.random.default_rng(0)
    g = Graph("g")
    x = g.add_input(_t8((1, 8, 8, 16), 0.05, 0), "x")
    w = const(g, rng.integers(-127, 128, (16, 3, 3, 16)).astype(np.int8),
              TensorType((16, 3, 3, 16), DType.INT8, QuantParams.per_tensor(0.01, 0)))
    y = g.create("nn.conv2d", [x, w], [_t8((1, 8, 8, 16), 0.1, 0)], {"pads": (1, 1, 1, 1)}, ["y"]).result
    g.outputs = [y]
    verify(g)
    wide = plan_memory(g).arena_bytes
    chosen = plan_choosing_in_place(g)
    conv = next(op for op in g.ops if op.kind == "nn.conv2d")
    assert conv.attrs.get("byte_column") is True
    assert chosen.arena_bytes == wide - 144 == plan_memory(g).arena_bytes


def test_the_byte_column_must_save_its_share_of_the_arena():
    """The int8 column is slower: it is taken only when it saves at least ``byte_column_min_gain`` of the arena
    (here 144 of about 2.3 KB, some 6 %), through the function and through the pass's pipeline option."""
    from compiler.memory import plan_choosing_in_place, plan_memory
    from compiler.passmanager import PassContext, parse_pipeline

    rng = np.random.default_rng(0)
    g = Graph("g")
    x = g.add_input(_t8((1, 8, 8, 16), 0.05, 0), "x")
    w = const(g, rng.integers(-127, 128, (16, 3, 3, 16)).astype(np.int8),
              TensorType((16, 3, 3, 16), DType.INT8, QuantParams.per_tensor(0.01, 0)))
    y = g.create("nn.conv2d", [x, w], [_t8((1, 8, 8, 16), 0.1, 0)], {"pads": (1, 1, 1, 1)}, ["y"]).result
    g.outputs = [y]
    verify(g)
    conv = next(op for op in g.ops if op.kind == "nn.conv2d")
    wide = plan_memory(g).arena_bytes
    share = 144 / wide
    assert plan_choosing_in_place(g, byte_column_min_gain=share + 0.001).arena_bytes == wide
    assert "byte_column" not in conv.attrs
    assert plan_choosing_in_place(g, byte_column_min_gain=share).arena_bytes == wide - 144
    assert conv.attrs.pop("byte_column") is True
    (pm,) = parse_pipeline(f"plan-memory{{byte-column-min-gain={share + 0.001}}}")
    pm.run(g, PassContext())
    assert "byte_column" not in conv.attrs and g.arena_bytes == wide


@pytest.mark.parametrize("value", ["1.5", "-0.1", "x"])
def test_plan_memory_rejects_a_bad_byte_column_gain(value):
    from compiler.errors import PipelineError
    from compiler.passmanager import parse_pipeline

    with pytest.raises(PipelineError, match="byte-column-min-gain"):
        parse_pipeline(f"plan-memory{{byte-column-min-gain={value}}}")


def test_near_dead_channels_become_exact_steps(tmp_path):
    """Channels with a huge bias and a tiny scale (accumulators near 2^30, right shifts of 25+, as in MLPerf VWW) are
    encoded as steps ``{0, c + 1, 0}`` with the threshold moved into the bias, so the layer keeps the fast path; one
    of them has a negative ``c + 1``. Sanitized C equals the interpreter."""
    from backends.c.emitters.gemm import fast_layer, fold_bias
    from compiler.ops.conv import requant_multipliers

    rng = np.random.default_rng(5)
    co, ci = 8, 16
    scales = [0.01] * co
    scales[2] = scales[5] = 3e-8  # tiny: multiplier * 2^-r far below one output step per unit of accumulator
    g = Graph("g")
    x = g.add_input(_t8((1, 4, 4, ci), 0.05, 1), "x")
    w = const(g, rng.integers(-127, 128, (co, 1, 1, ci)).astype(np.int8),
              TensorType((co, 1, 1, ci), DType.INT8, QuantParams(tuple(scales), tuple([0] * co), 0)))
    bias = rng.integers(-3000, 3000, co).astype(np.int32)
    bias[2], bias[5] = 1_073_700_000, -1_073_700_000
    b = const(g, bias, TensorType((co,), DType.INT32, QuantParams(tuple(0.05 * s for s in scales), tuple([0] * co),
                                                                    0)))
    y = g.create("nn.conv2d", [x, w, b], [_t8((1, 4, 4, co), 0.02, 3)], {}, ["y"]).result
    g.outputs = [y]
    verify(g)
    conv = next(op for op in g.ops if op.kind == "nn.conv2d")
    w2d = np.asarray(conv.operands[1].const_value).reshape(co, -1).astype(np.int64)
    mult, shift = requant_multipliers(conv)
    folded = fold_bias(bias, w2d, -1)
    assert np.all(requant_table(mult, shift, folded, w2d).reshape(-1, 3)[[2, 5], 2] < 0)  # not fast on their own
    fast = fast_layer(mult, shift, folded, w2d)
    assert fast is not None
    rows = fast[0].reshape(-1, 3)
    assert rows[2, 0] == rows[5, 0] == 0 and rows[2, 2] == rows[5, 2] == 0 and min(rows[2, 1], rows[5, 1]) < 0
    assert_c_matches_interpreter(g, tmp_path, n=6, sanitize=True)


@pytest.mark.parametrize("kh, kw, ci, stride, dil, pads", [
    (3, 3, 3, 2, 1, (0, 0, 1, 1)), (3, 3, 3, 1, 1, (1, 1, 1, 1)), (3, 3, 1, 1, 1, (1, 1, 1, 1)),
    (3, 3, 2, 2, 1, (1, 0, 1, 2)), (3, 3, 5, 1, 2, (2, 1, 2, 1)), (2, 1, 3, 1, 1, (0, 0, 1, 0))])
def test_row_split_columns_match_the_interpreter(tmp_path, kh, kw, ci, stride, dil, pads):
    """First-layer windows (1-5 input channels, rows of k_w * C_in taps no multiple of four) take the row-split
    column: interior pixels expanded straight from the input rows, border pixels gathered tap by tap; the weights
    permuted offline to match. Strides, a vertical dilation, uneven padding on every side, C_out tails."""
    from compiler.ops.conv import gemm_row_split, gemm_row_split_order

    rng = np.random.default_rng(kh * 100 + kw * 10 + ci)
    co = 7
    g = Graph("g")
    ih, iw = 11, 10
    x = g.add_input(_t8((1, ih, iw, ci), 0.05, -7), "x")
    scales = tuple(float(s) for s in rng.uniform(0.002, 0.02, co))
    w = const(g, rng.integers(-127, 128, (co, kh, kw, ci)).astype(np.int8),
              TensorType((co, kh, kw, ci), DType.INT8, QuantParams(scales, tuple([0] * co), 0)))
    b = const(g, rng.integers(-5000, 5000, co).astype(np.int32),
              TensorType((co,), DType.INT32, QuantParams(tuple(0.05 * s for s in scales), tuple([0] * co), 0)))
    oh = (ih + pads[0] + pads[2] - (kh - 1) * dil - 1) // stride + 1
    ow = (iw + pads[1] + pads[3] - kw) // stride + 1
    y = g.create("nn.conv2d", [x, w, b], [_t8((1, oh, ow, co), 0.1, 2)],
                 {"pads": pads, "strides": (stride, stride), "dilations": (dil, 1)}, ["y"]).result
    g.outputs = [y]
    verify(g)
    conv = next(op for op in g.ops if op.kind == "nn.conv2d")
    assert gemm_row_split(conv)
    assert sorted(gemm_row_split_order(kh, kw, ci)) == list(range(kh * kw * ci))
    assert_c_matches_interpreter(g, tmp_path, n=4, sanitize=True)


def _need_emulator():
    """Skip unless QEMU, the cross compiler and pyelftools are there (the emulated tests below need all three)."""
    import shutil

    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm or arm-none-eabi-gcc is not installed")
    pytest.importorskip("elftools", reason="pyelftools is not installed")


def _conv_weights(g, rng, co, kh, kw, ci):
    """Random per-channel int8 weights [co, kh, kw, ci] (scales 0.002-0.01) and an int32 bias for an input scale
    of 0.02."""
    scales = tuple(float(v) for v in rng.uniform(0.002, 0.01, co))
    w = const(g, rng.integers(-127, 128, (co, kh, kw, ci)).astype(np.int8),
              TensorType((co, kh, kw, ci), DType.INT8, QuantParams(scales, tuple([0] * co), 0)))
    b = const(g, rng.integers(-3000, 3000, co).astype(np.int32),
              TensorType((co,), DType.INT32, QuantParams(tuple(0.02 * v for v in scales), tuple([0] * co), 0)))
    return w, b


def _gemm_shapes(project):
    """The fixed-shape keys the project's mcc_gemm.c lists in its first line (``MCC_GEMM_SHAPES``)."""
    head = (project / "mcc_gemm.c").read_text().split("\n", 2)[1]
    assert head.startswith("#define MCC_GEMM_SHAPES(X) "), head
    return {tuple(int(v) for v in m.split(", ")) for m in re.findall(r"X\(([0-9, ]+)\)", head)}


def _assert_m7_equals_interpreter(g, project, report, seed, opt="O3"):
    """Three random samples on the emulated Cortex-M7 build of ``project``: every output bit-identical to the host
    build and to the interpreter."""
    from backends.cortexm.emulate import emulate
    from compiler.emulate_cmd import random_c_batches
    from compiler.interpreter import run

    batches = random_c_batches(report, 3, seed=seed)
    res = emulate(project, report, "cortex-m7", opt, batches)
    assert res.host_identical is True
    for k in range(3):
        for j, want in enumerate(run(g, [batches[0][k]])):
            np.testing.assert_array_equal(res.outputs[j][k], want, err_msg=f"sample {k} output {j}")


@pytest.mark.parametrize("opt", ["O3", "Os"])
def test_dsp_paths_on_emulated_cortex_m7_match_the_interpreter(tmp_path, opt):
    """The Cortex-M7 paths on QEMU equal the interpreter bit for bit: at -O3 a row-split first layer and the fast
    block loop with the zero point folded into the requantization rows, the LDM block on raw input bytes
    (byte_column); at -Os the byte layout, whose weights keep window order for the row-split layer. A 3x3 stride-2
    conv of 3 channels with padding on the bottom and right, a pointwise conv of 8 channels, a 3x3 conv of 16
    channels on its input bytes."""
    _need_emulator()
    from tests.backend.harness import compile_to_c

    rng = np.random.default_rng(11)
    g = Graph("g")
    x = g.add_input(_t8((1, 12, 11, 3), 0.02, -128), "x")
    h = x
    for i, (k, ci, co, s, p) in enumerate([(3, 3, 8, 2, (0, 0, 1, 1)), (1, 8, 16, 1, (0, 0, 0, 0)),
                                           (3, 16, 8, 1, (1, 1, 1, 1))]):
        w, b = _conv_weights(g, rng, co, k, k, ci)
        hw = (h.type.shape[1] + p[0] + p[2] - k) // s + 1, (h.type.shape[2] + p[1] + p[3] - k) // s + 1
        attrs = {"pads": p, "strides": (s, s), "byte_column": i == 2}  # the last one on raw input bytes
        h = g.create("nn.conv2d", [h, w, b], [_t8((1, *hw, co), 0.05, -128 + 7 * i)], attrs, [f"y{i}"]).result
    g.outputs = [h]
    verify(g)
    report = compile_to_c(g, tmp_path / "c")
    params = (tmp_path / "c" / "t.c").read_text()
    assert all(f".column = {c}," in params for c in (1, 2)) and ".rq_fast = 2," in params  # the paths under test
    _assert_m7_equals_interpreter(g, tmp_path / "c", report, seed=2, opt=opt)


def test_fixed_shape_instances_on_emulated_cortex_m7_match_the_interpreter(tmp_path):
    """The instances of fixed shape (``MCC_GEMM_SHAPES``, ``mcc_gemm_fixed_layer``) an -O3 Cortex-M7 build runs
    equal the interpreter bit for bit: window rows of whole groups with an odd last group (3x3 over 4 channels,
    padded), a strided 1x1 conv read in place, an 8-deep pixel unpacked into registers, a window of 72 groups (the
    loop of eight groups), a byte column. The generated file must list every one of them (else the generic code
    would run and the test would prove nothing)."""
    _need_emulator()
    from tests.backend.harness import compile_to_c

    rng = np.random.default_rng(5)
    g = Graph("g")
    x = g.add_input(_t8((1, 10, 9, 4), 0.02, -128), "x")
    h = x
    layers = [(3, 4, 16, 1, (1, 1, 1, 1), False), (1, 16, 8, 2, (0, 0, 0, 0), False),
              (1, 8, 32, 1, (0, 0, 0, 0), False), (3, 32, 8, 1, (1, 1, 1, 1), False),
              (3, 8, 12, 1, (1, 0, 1, 1), True)]
    for i, (k, ci, co, s, p, byte_column) in enumerate(layers):
        w, b = _conv_weights(g, rng, co, k, k, ci)
        hw = (h.type.shape[1] + p[0] + p[2] - k) // s + 1, (h.type.shape[2] + p[1] + p[3] - k) // s + 1
        attrs = {"pads": p, "strides": (s, s), "byte_column": byte_column}
        h = g.create("nn.conv2d", [h, w, b], [_t8((1, *hw, co), 0.05, -128 + 9 * i)], attrs, [f"y{i}"]).result
    g.outputs = [h]
    verify(g)
    report = compile_to_c(g, tmp_path / "c")
    keys = _gemm_shapes(tmp_path / "c")
    # (groups, out_c, k_h, k_w, in_c); the planner may give any layer the byte column: both kinds must run
    assert {(k[0], k[1], k[3], k[4], k[5]) for k in keys} == {
        (9, 16, 3, 3, 4), (4, 8, 0, 0, 0), (2, 32, 0, 0, 0), (72, 8, 3, 3, 32), (18, 12, 3, 3, 8)}, keys
    # column kinds: 0 int16 (the 4-channel window), 1 bytes, 2 window-column slots (the 32-channel window)
    assert {k[6] for k in keys} == {0, 1, 2} and all(k[2] == 1 for k in keys), keys
    _assert_m7_equals_interpreter(g, tmp_path / "c", report, seed=4)


def test_fixed_shape_row_split_instance_on_emulated_cortex_m7_matches_the_interpreter(tmp_path):
    """A first layer of three input channels (3x3 window, 27 taps: a row-split column of seven groups, eight output
    channels, the shape of MLPerf VWW's first conv) as an instance of fixed shape on an -O3 Cortex-M7 build: interior
    windows with the tail group built in registers, border windows gathered by straight code (padding at the bottom
    and right as TFLite SAME with stride 2, and on every side with stride 1) equal the interpreter bit for bit."""
    _need_emulator()
    from tests.backend.harness import compile_to_c

    rng = np.random.default_rng(11)
    g = Graph("g")
    x = g.add_input(_t8((1, 11, 10, 3), 0.02, -5), "x")
    outs = []
    for i, (s, p) in enumerate([(2, (0, 0, 1, 1)), (1, (1, 1, 1, 1))]):
        co, k, ci = 8, 3, 3
        w, b = _conv_weights(g, rng, co, k, k, ci)
        hw = (11 + p[0] + p[2] - k) // s + 1, (10 + p[1] + p[3] - k) // s + 1
        attrs = {"pads": p, "strides": (s, s), "byte_column": False}
        outs.append(g.create("nn.conv2d", [x, w, b], [_t8((1, *hw, co), 0.05, -128 + 9 * i)], attrs,
                             [f"y{i}"]).result)
    g.outputs = outs
    verify(g)
    report = compile_to_c(g, tmp_path / "c")
    keys = _gemm_shapes(tmp_path / "c")
    assert any(k[0] == 7 and k[1] == 8 and k[3:] == (3, 3, 3, 0) for k in keys), keys
    assert len(g.outputs) == 2
    _assert_m7_equals_interpreter(g, tmp_path / "c", report, seed=6)


def test_fixed_shape_slots_and_interleaved_weights_on_emulated_cortex_m7_match_the_interpreter(tmp_path):
    """Instances of fixed shape with interleaved weights (each block's bias and requantization rows among its
    weights, ``interleave_block_words``) on an -O3 Cortex-M7 build equal the interpreter bit for bit: 3x3 windows of
    16 channels with stride 1 keep the column as a ring of window-column slots (weights in ``slot_order``; padding
    on every side, columns over the border filled with the zero point) and
    with stride 2 expand their rows with LDM/STM and gather border windows pixel by pixel; a 5x3 window of 8 channels
    with stride 1 (slots of 40 taps, uneven padding); the zero point folded and not (a ReLU6 clamp keeps the generic
    code of one layer, whose tables are then the real ones). The generated file must list the slot instances."""
    _need_emulator()
    from tests.backend.harness import compile_to_c

    rng = np.random.default_rng(21)
    g = Graph("g")
    x = g.add_input(_t8((1, 9, 7, 32), 0.02, -3), "x")
    h = x
    # the first layer (a 1x1 conv read in place) holds the peak, so the planner keeps every int16 column
    layers = [((1, 1), 32, 16, 1, (0, 0, 0, 0)), ((3, 3), 16, 16, 1, (1, 1, 1, 1)),
              ((3, 3), 16, 12, 2, (0, 0, 1, 1)), ((1, 1), 12, 8, 1, (0, 0, 0, 0)), ((5, 3), 8, 16, 1, (2, 0, 2, 2)),
              ((3, 3), 16, 8, 1, (1, 1, 1, 1))]
    for i, ((kh, kw), ci, co, s, p) in enumerate(layers):
        w, b = _conv_weights(g, rng, co, kh, kw, ci)
        hw = (h.type.shape[1] + p[0] + p[2] - kh) // s + 1, (h.type.shape[2] + p[1] + p[3] - kw) // s + 1
        attrs: dict = {"pads": p, "strides": (s, s), "byte_column": False}
        if i == 5:
            attrs.update(act_min=0.0, act_max=6.0)
        zp = -128 + 9 * i if i != 2 else 5
        h = g.create("nn.conv2d", [h, w, b], [_t8((1, *hw, co), 0.05, zp)], attrs, [f"y{i}"]).result
    g.outputs = [h]
    verify(g)
    report = compile_to_c(g, tmp_path / "c")
    keys = _gemm_shapes(tmp_path / "c")
    assert {(k[0], k[1], *k[3:]) for k in keys} >= {(36, 16, 3, 3, 16, 2), (30, 16, 5, 3, 8, 2)}, keys  # slots
    assert any(k[3:] == (3, 3, 16, 0) and k[1] == 12 for k in keys), keys  # stride 2: rows expanded, not slots
    weights = (tmp_path / "c" / "t_weights.c").read_text()
    assert "defined(MCC_GEMM_FIXED_BUILD)" in weights  # the interleaved arrays
    _assert_m7_equals_interpreter(g, tmp_path / "c", report, seed=8)


def test_byte_layout_fallback_keeps_the_undoubled_bias(tmp_path):
    """When the 16-bit GEMM weights would not fit the flash (``use_narrow_gemm``), the project's kernels read the
    byte layout, whose fast layers take the plain folded bias: the bias table (doubled for the 16-bit layout) keeps
    only its byte-layout contents and no fixed-shape arrays stay. The host C equals the interpreter bit for bit."""
    import dataclasses

    from compiler.driver import CODE_RESERVE_BYTES, LoadedModel, compile_graph, split_io
    from compiler.interpreter import run
    from compiler.targets import get_target
    from tests.backend.harness import run_c

    rng = np.random.default_rng(3)
    g = Graph("g")
    x = g.add_input(_t8((1, 6, 5, 16), 0.02, -3), "x")
    co = 8
    w, b = _conv_weights(g, rng, co, 3, 3, 16)
    y = g.create("nn.conv2d", [x, w, b], [_t8((1, 6, 5, co), 0.05, 4)], {"pads": (1, 1, 1, 1)}, ["y"]).result
    g.outputs = [y]
    verify(g)
    model = LoadedModel(g, ((0, 1, 2, 3),), ((0, 1, 2, 3),), ((1, 6, 5, 16),), ((1, 6, 5, co),))
    ins, outs = split_io(g, model)
    small = dataclasses.replace(get_target("host"), flash_bytes=CODE_RESERVE_BYTES + 1)
    compile_graph(g.clone(), tmp_path / "c", name="t", target=small, ins=ins, outs=outs, source="test",
                  opt_level=0, pipeline="")
    assert "#define MCC_GEMM_NARROW" in (tmp_path / "c" / "mcc_gemm.c").read_text()
    model_c = (tmp_path / "c" / "t.c").read_text()
    assert "MCC_GEMM_NARROW" not in model_c and "MCC_GEMM_FIXED_BUILD" not in model_c
    samples = [rng.integers(-128, 128, (1, 6, 5, 16)).astype(np.int8) for _ in range(3)]
    got = run_c(tmp_path / "c", g, [np.concatenate(samples)])
    for k, sample in enumerate(samples):
        np.testing.assert_array_equal(got[0][k], run(g, [sample])[0], err_msg=f"sample {k}")
