"""The fast paths of the int8 add and pooling kernels: table add (``mcc_add_s8_lut``), bit-exact with the interpreter
over random and extreme quantizations, every clamp and requantization variant, lengths not a multiple of 4."""

from __future__ import annotations

import re

import numpy as np
import pytest

from backends.c.emitters.compute import ADD_STANDIN, add_standin, add_tables
from compiler.ir import Graph
from compiler.ops.elementwise import ADD_LEFT_SHIFT, add_kernel, add_params
from compiler.quant import activation_range, multiply_by_quantized_multiplier
from tests.backend.harness import assert_c_matches_interpreter
from tests.helpers import q8

RELU = {"act_min": 0.0}
RELU6 = {"act_min": 0.0, "act_max": 6.0}

# (shape, (s_a, zp_a), (s_b, zp_b), (s_y, zp_y), activation): each line reaches one variant of the kernel
ADD_CASES = [
    ((1, 5, 4, 6), (0.05, -3), (0.07, 8), (0.1, 2), None),             # saturate only
    ((1, 5, 4, 6), (0.05, -3), (0.07, 8), (0.1, -128), RELU),          # ReLU at zp -128: saturate only
    ((2, 9, 7, 3), (0.03, 11), (0.02, -40), (0.04, 5), RELU),          # raise to act_min after saturating
    ((3, 7), (0.04, -9), (0.05, 3), (0.02, -20), RELU6),               # any [act_min, act_max]
    ((7,), (0.5, 127), (0.0001, -128), (0.3, -50), None),              # extreme ratio and zero points
    ((1, 3, 1), (0.02, 0), (0.02, 0), (0.04, 0), None),                # both inputs share one table
    ((5,), (0.01, 5), (0.02, -7), (1.5, 100), None),                   # r = 25: the rounding constant overflows
    ((6,), (0.05, -128), (0.04, 127), (0.1 / (1 << 20) / 0.75, 0), None),  # output shift 0: TFLite's requant
    ((1,), (0.07, 1), (0.09, -2), (0.08, 3), RELU6),                   # a single element
    ((13,), (0.011, -128), (0.013, -128), (0.017, -128), RELU),
]


def _random_cases(n: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        s = [float(np.exp(rng.uniform(np.log(1e-4), np.log(2.0)))) for _ in range(3)]
        zp = [int(v) for v in rng.integers(-128, 128, 3)]
        act = [None, RELU, RELU6][int(rng.integers(3))]
        length = int(rng.integers(1, 40))
        cases.append(((length,), (s[0], zp[0]), (s[1], zp[1]), (s[2], zp[2]), act))
    return cases


def _adds_graph(cases: list[tuple], g: Graph | None = None) -> Graph:
    """One add per case, each with its own inputs and output (added to ``g``'s when given)."""
    g = g or Graph("adds")
    outs = list(g.outputs)
    for i, (shape, aq, bq, yq, act) in enumerate(cases):
        a = g.add_input(q8(shape, *aq), f"a{i}")
        b = g.add_input(q8(shape, *bq), f"b{i}")
        outs.append(g.create("nn.add", [a, b], [q8(shape, *yq)], act or {}, [f"y{i}"]).result)
    g.outputs = outs
    return g


def _params(case: tuple):
    shape, aq, bq, yq, act = case
    act = act or {}
    lo, hi = activation_range(-128, 127, yq[0], yq[1], act.get("act_min", -np.inf), act.get("act_max", np.inf))
    return add_params(q8(shape, *aq), q8(shape, *bq), q8(shape, *yq), (lo, hi))


def test_add_cases_reach_every_variant():
    variants = set()
    for case in ADD_CASES:
        p = _params(case)
        _, _, half, sign = add_tables(p)
        clamp = 2 if p.act_max != 127 else (1 if p.act_min != -128 else 0)
        variants.add("generic" if half == 0 else f"sign{sign}-clamp{clamp}")
    assert {"generic", "sign0-clamp0", "sign0-clamp1", "sign0-clamp2"} <= variants
    # the rounding fix of negative sums is needed for some quantizations: make sure one is tested
    assert any(add_tables(_params(c))[3] == 1 for c in ADD_CASES + _random_cases(40, 7))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_add_tables_sum_is_the_reference_sum(seed):
    x = np.arange(-128, 128, dtype=np.int64)
    for case in _random_cases(30, seed):
        p = _params(case)
        t1, t2, half, sign = add_tables(p)  # also checks the one-step form on all 65,536 pairs
        for t, zp, m, sh in ((t1, p.input1_zero_point, p.input1_multiplier, p.input1_shift),
                             (t2, p.input2_zero_point, p.input2_multiplier, p.input2_shift)):
            want = multiply_by_quantized_multiplier((x - zp) << ADD_LEFT_SHIFT, m, sh)
            np.testing.assert_array_equal(t[x & 0xFF].astype(np.int64), 2 * want)
        if half:
            acc2 = t1[:, None].astype(np.int64) + t2[None, :]
            r = -p.output_shift
            y = (((acc2 * p.output_multiplier + (1 << 31)) >> 32) + half + (sign * (acc2 >> 31))) >> r
            xs = (np.arange(256) + 128) & 0xFF  # table index of the value -128 + i
            want = add_kernel(p, x[:, None], x[None, :])
            np.testing.assert_array_equal(np.clip(y, p.act_min, p.act_max)[np.ix_(xs, xs)], want)


def test_add_table_kernel_matches_interpreter(tmp_path):
    graph = _adds_graph(ADD_CASES + _random_cases(12, 11))
    assert_c_matches_interpreter(graph, tmp_path, n=6)
    src = (tmp_path / "c" / "t.c").read_text()
    assert len(re.findall(r"mcc_add_s8_lut\(", src)) == len(graph.outputs)


def test_add_table_kernel_under_sanitizers(tmp_path):
    assert_c_matches_interpreter(_adds_graph(ADD_CASES), tmp_path, n=3, sanitize=True)


# -- average pooling and mean, four channels at a time ---------------------------------------------------------------
def _pool_mean_graph() -> Graph:
    """Average pools and means that reach every path of mcc_pool.c / mcc_mean.c: channel blocks of 4 with a tail,
    global windows of 256 pixels (the most the 16-bit lanes take) and more, padded windows, contiguous means, and
    the three requantizations of the mean (left shift, right shift, TFLite's routine)."""
    g = Graph("pools")
    outs = []

    def pool(x, k, stride, pads, out_hw, act=None, name="p"):
        c = x.type.shape[-1]
        attrs = {"kernel": k, "strides": (stride, stride), "pads": pads, **(act or {})}
        t = q8((x.type.shape[0], *out_hw, c), x.type.quant.scale[0], x.type.quant.zero_point[0])
        outs.append(g.create("nn.avg_pool2d", [x], [t], attrs, [name]).result)

    def mean(x, axes, out_shape, out_q, name):
        outs.append(g.create("nn.mean", [x], [q8(out_shape, *out_q)], {"axes": axes, "keepdims": False},
                             [name]).result)

    x1 = g.add_input(q8((1, 16, 16, 9), 0.05, -3), "x1")     # 256-pixel global window, 9 channels
    pool(x1, (16, 16), 1, (0, 0, 0, 0), (1, 1), name="gap256")
    pool(x1, (3, 3), 2, (1, 1, 1, 1), (8, 8), RELU6, name="p3s2")  # partial windows at the border
    mean(x1, (1, 2), (1, 9), (0.01, 4), "m256")
    x2 = g.add_input(q8((1, 17, 16, 8), 0.05, 7), "x2")      # 272 pixels: 32-bit sums
    pool(x2, (17, 16), 1, (0, 0, 0, 0), (1, 1), name="gap272")
    mean(x2, (1, 2), (1, 8), (0.07, -9), "m272")
    x3 = g.add_input(q8((2, 5, 3, 6), 0.2, 0), "x3")
    pool(x3, (2, 3), 1, (1, 0, 0, 2), (5, 3), name="p23")
    mean(x3, (1, 2), (2, 6), (0.2 / 32, 3), "mleft")          # s_in / s_out = 32: a left shift
    mean(x3, (1, 2), (2, 6), (0.2 * 2.0 ** 24, 127), "mgeneric")  # 2^(r-1) + zp 2^r beyond 2^30
    mean(x3, (3,), (2, 5, 3), (0.03, -100), "mrun")         # contiguous runs of 6
    g.outputs = outs
    return g


def test_mean_cases_reach_every_requantization():
    from compiler.ops.pool import mean_multiplier

    modes = set()
    for s_in, s_out, zp, count in ((0.05, 0.01, 4, 256), (0.2, 0.2 / 32, 3, 15), (0.2, 0.2 * 2.0 ** 24, 127, 15)):
        _, shift = mean_multiplier(s_in, s_out, count)
        if shift >= 0:
            modes.add("left")
        else:
            hz = (1 << (-shift - 1)) + zp * (1 << -shift)
            modes.add("right" if abs(hz) < 1 << 30 else "generic")
    assert modes == {"left", "right", "generic"}


def _extreme_batches(graph: Graph, n: int, seed: int) -> list[list[np.ndarray]]:
    """Random samples, then all -128 and all 127 (the sums the 16-bit lanes must still hold)."""
    rng = np.random.default_rng(seed)
    samples = [[rng.integers(-128, 128, v.type.shape).astype(np.int8) for v in graph.inputs] for _ in range(n)]
    samples.append([np.full(v.type.shape, -128, np.int8) for v in graph.inputs])
    samples.append([np.full(v.type.shape, 127, np.int8) for v in graph.inputs])
    return samples


@pytest.mark.parametrize("sanitize", [False, True])
def test_pool_and_mean_fast_paths_match_interpreter(tmp_path, sanitize):
    from compiler.interpreter import run
    from tests.backend.harness import compile_to_c, run_c

    graph = _pool_mean_graph()
    compile_to_c(graph, tmp_path / "c")
    samples = _extreme_batches(graph, 3, 5)
    batches = [np.stack([s[i] for s in samples]) for i in range(len(graph.inputs))]
    got = run_c(tmp_path / "c", graph, batches, sanitize=sanitize)
    for k, sample in enumerate(samples):
        for j, want in enumerate(run(graph, sample)):
            np.testing.assert_array_equal(got[j][k], want, err_msg=f"sample {k}, output {graph.outputs[j].name}")


@pytest.mark.parametrize("standin", ["arithmetic", "generic"])
def test_add_without_tables(tmp_path, standin):
    # MCC_ADD_NO_TABLES compiles a stand-in per table: the constants of the arithmetic rescale ({3, ...}), or {1}
    # (mcc_add_s8) where that would not be exact. Only the weight file reads the macro.
    from compiler.interpreter import run
    from tests.backend.harness import compile_to_c, run_c

    graph = _adds_graph(ADD_CASES)
    out = tmp_path / "c"
    compile_to_c(graph, out)
    weights = out / "t_weights.c"
    text = weights.read_text()
    cond = re.escape("#if " + ADD_STANDIN)
    standins = re.findall(cond + r"\n[^\n]*\n\{\n    (3, [^\n]*)\n\};", text)
    assert len(standins) == 16  # ADD_CASES[1] shares both tables of case 0, case 5 has one for both inputs
    if standin == "generic":
        for body in standins:
            text = text.replace("{\n    " + body + "\n};", "{\n    1\n};")
    weights.write_text("#define MCC_ADD_NO_TABLES 1\n" + text)
    samples = _extreme_batches(graph, 3, 4)
    batches = [np.stack([s[i] for s in samples]) for i in range(len(graph.inputs))]
    got = run_c(out, graph, batches, sanitize=standin == "arithmetic")
    for k, sample in enumerate(samples):
        for j, want in enumerate(run(graph, sample)):
            np.testing.assert_array_equal(got[j][k], want, err_msg=f"sample {k}, output {j}")


def test_add_standin_reproduces_every_table():
    for case in ADD_CASES + _random_cases(100, 21):
        p = _params(case)
        t1, t2, _, _ = add_tables(p)
        assert add_standin(t1, p.input1_zero_point, p.input1_multiplier, p.input1_shift)[0] == 3
        assert add_standin(t2, p.input2_zero_point, p.input2_multiplier, p.input2_shift)[0] == 3
    # a stand-in that would be wrong is refused: a table that is not this multiplier's
    p = _params(ADD_CASES[0])
    t1, _, _, _ = add_tables(p)
    assert add_standin(t1 + 2, p.input1_zero_point, p.input1_multiplier, p.input1_shift).tolist() == [1]


def test_add_tables_survive_the_flash_fallback_to_byte_gemm_weights():
    # mcc picks the byte GEMM layouts when the 16-bit ones would not fit (MCUNet-VWW on the M7 board); the add tables
    # (1 KB each) stay, so a speed-first build keeps the table kernel
    from compiler.driver import plan_and_lower

    graph = _adds_graph(ADD_CASES[:3])
    _, program, _ = plan_and_lower(graph.clone(), "t", flash_bytes=1)
    assert program.narrow_gemm
    tables = [a for a in program.weights if a.alternative is not None]
    assert len(tables) == 4 and all(a.alternative[0] == ADD_STANDIN and a.array.size == 256 for a in tables)
