"""C kernels for lookup-table unary ops, softmax and data movement, bit-exact with the interpreter (host build)."""

import shutil

import numpy as np
import pytest

from backends.c.build import build
from backends.c.emitters.data import coalesce_box
from compiler.errors import UnsupportedOpError
from compiler.interpreter import run
from compiler.ir import DType, Graph, QuantParams, TensorType, const
from tests.backend.harness import assert_c_matches_interpreter, compile_to_c, run_c
from tests.helpers import q8

SIGMOID_Q = (1.0 / 256.0, -128)
TANH_Q = (1.0 / 128.0, 0)
SOFTMAX_Q = (1.0 / 256.0, -128)


def _unary_graph(kind, shape, in_q, out_q, attrs=None):
    g = Graph("unary")
    x = g.add_input(q8(shape, *in_q), "x")
    y = g.create(kind, [x], [q8(shape, *out_q)], attrs or {}, ["y"]).result
    g.outputs = [y]
    return g


def _check(graph, tmp_path, samples, sanitize=False):
    """Like ``assert_c_matches_interpreter`` on chosen samples (arrays for a one-input graph, else lists)."""
    samples = [s if isinstance(s, list) else [s] for s in samples]
    out_dir = tmp_path / "c"
    compile_to_c(graph, out_dir)
    batches = [np.stack([s[i] for s in samples]) for i in range(len(graph.inputs))]
    got = run_c(out_dir, graph, batches, sanitize=sanitize)
    for k, s in enumerate(samples):
        for j, want in enumerate(run(graph, s)):
            np.testing.assert_array_equal(got[j][k], want, err_msg=f"sample {k}, output {j}")


def _generated_c(tmp_path):
    return (tmp_path / "c" / "t.c").read_text()


# -- unary ops through a lookup table ----------------------------------------------------------------------------
def _rand_q(rng, lo=0.005, hi=0.2):
    return float(rng.uniform(lo, hi)), int(rng.integers(-40, 40))


@pytest.mark.parametrize("kind, attrs", [
    ("nn.relu", {}),
    ("nn.relu6", {}),
    ("nn.clamp", {"min": -0.7, "max": 1.3}),
    ("nn.leaky_relu", {"alpha": 0.1}),
    ("nn.leaky_relu", {"alpha": -0.4}),
    ("nn.hard_swish", {}),
    ("nn.hard_sigmoid", {"alpha": 0.2, "beta": 0.5}),
    ("nn.sigmoid", {}),
    ("nn.tanh", {}),
    ("q.requantize", {}),
])
@pytest.mark.parametrize("seed", [0, 1])
def test_unary_lut(tmp_path, kind, attrs, seed):
    rng = np.random.default_rng(seed * 31 + len(kind))
    in_q = _rand_q(rng)
    if kind == "nn.sigmoid":
        out_q = SIGMOID_Q
    elif kind == "nn.tanh":
        out_q = TANH_Q
    elif kind == "nn.hard_swish":
        out_q = (in_q[0] * float(rng.uniform(0.5, 3.0)), int(rng.integers(-40, 40)))
    else:
        out_q = _rand_q(rng)
    g = _unary_graph(kind, (1, 5, 4, 3), in_q, out_q, attrs)
    assert_c_matches_interpreter(g, tmp_path, n=4, seed=seed)
    assert "mcc_lut_s8(" in _generated_c(tmp_path)


UNARY_ATTRS = {"nn.clamp": {"min": -1.5, "max": 0.6}, "nn.leaky_relu": {"alpha": 0.3},
               "nn.hard_sigmoid": {"alpha": 0.25, "beta": 0.4}}


def test_unary_many_random_quantizations_every_input_value(tmp_path):
    """Three random quantizations per kind, each branch fed all 256 input values."""
    rng = np.random.default_rng(42)
    g = Graph("unary_many")
    for kind in ("nn.relu", "nn.relu6", "nn.clamp", "nn.leaky_relu", "nn.hard_swish", "nn.hard_sigmoid",
                 "nn.sigmoid", "nn.tanh", "q.requantize"):
        for i in range(3):
            in_q = _rand_q(rng, 0.001, 0.5)
            out_q = {"nn.sigmoid": SIGMOID_Q, "nn.tanh": TANH_Q}.get(kind) or (
                (in_q[0] * float(rng.uniform(0.3, 4.0)), int(rng.integers(-128, 128))))
            x = g.add_input(q8((256,), *in_q), f"x_{kind[3:]}_{i}")
            y = g.create(kind, [x], [q8((256,), *out_q)], UNARY_ATTRS.get(kind, {}), [f"y_{kind[3:]}_{i}"])
            g.outputs.append(y.result)
    every = np.arange(-128, 128, dtype=np.int8)
    _check(g, tmp_path, [[every] * len(g.inputs), [every[::-1].copy()] * len(g.inputs)])


def test_relu_same_quant_and_every_input_value(tmp_path):
    g = _unary_graph("nn.relu6", (256,), (0.05, 7), (0.05, 7))
    _check(g, tmp_path, [np.arange(-128, 128, dtype=np.int8)])


def test_unary_lut_under_sanitizers(tmp_path):
    g = _unary_graph("nn.tanh", (2, 3, 7), (0.02, -5), TANH_Q)
    assert_c_matches_interpreter(g, tmp_path, n=3, sanitize=True)


def test_unary_rejects_non_int8(tmp_path):
    g = Graph("u8")
    x = g.add_input(TensorType((4,), DType.UINT8, QuantParams.per_tensor(0.1, 128)), "x")
    y = g.create("nn.relu", [x], [TensorType((4,), DType.UINT8, QuantParams.per_tensor(0.1, 128))], {}, ["y"])
    g.outputs = [y.result]
    with pytest.raises(UnsupportedOpError):
        compile_to_c(g, tmp_path / "c")
    g = Graph("i16")
    x = g.add_input(q8((4,), 0.1, 0), "x")
    y = g.create("q.requantize", [x], [TensorType((4,), DType.INT16, QuantParams.per_tensor(0.001, 0))], {}, ["y"])
    g.outputs = [y.result]
    with pytest.raises(UnsupportedOpError):
        compile_to_c(g, tmp_path / "c2")


# -- softmax -----------------------------------------------------------------------------------------------------
def _softmax_graph(shape, scale, zp=0, beta=1.0, axis=-1):
    g = Graph("softmax")
    x = g.add_input(q8(shape, scale, zp), "x")
    y = g.create("nn.softmax", [x], [q8(shape, *SOFTMAX_Q)], {"axis": axis, "beta": beta}, ["y"]).result
    g.outputs = [y]
    return g


@pytest.mark.parametrize("shape, scale, beta", [
    ((1, 2), 0.1, 1.0),
    ((1, 10), 0.05, 1.0),
    ((3, 7), 0.5, 1.0),
    ((2, 4, 37), 0.0125, 1.0),
    ((1, 100), 0.2, 1.0),
    ((5, 16), 0.02, 2.5),
    ((2, 2, 3, 11), 1.7, 0.5),
    ((1, 64), 0.0005, 1.0),
])
def test_softmax_random(tmp_path, shape, scale, beta):
    assert_c_matches_interpreter(_softmax_graph(shape, scale, zp=-9, beta=beta), tmp_path, n=6)


def test_softmax_many_random_scales(tmp_path):
    """Sixteen softmax branches with random input scales, zero points, betas and depths 2..100."""
    rng = np.random.default_rng(5)
    g = Graph("softmax_many")
    for i in range(16):
        depth = int(rng.integers(2, 101))
        shape = (int(rng.integers(1, 4)), depth)
        x = g.add_input(q8(shape, float(np.exp(rng.uniform(np.log(1e-3), np.log(2.0)))), int(rng.integers(-50, 50))),
                        f"x{i}")
        beta = float(rng.choice([1.0, 1.0, 0.7, 3.0]))
        y = g.create("nn.softmax", [x], [q8(shape, *SOFTMAX_Q)], {"beta": beta}, [f"y{i}"])
        g.outputs.append(y.result)
    assert_c_matches_interpreter(g, tmp_path, n=8, seed=1)


@pytest.mark.parametrize("scale", [0.003, 0.06, 0.9])
def test_softmax_edge_rows(tmp_path, scale):
    """Equal rows, one large maximum, extreme differences, and two-valued rows."""
    rng = np.random.default_rng(7)
    depth = 23
    rows = [np.full(depth, -128), np.full(depth, 127), np.full(depth, 3),
            np.r_[127, np.full(depth - 1, -128)], np.r_[np.full(depth - 1, -128), 127],
            rng.choice([-128, 127], depth), rng.choice([10, 11], depth), rng.integers(-128, 128, depth)]
    g = _softmax_graph((len(rows), depth), scale, zp=4)
    _check(g, tmp_path, [np.stack(rows).astype(np.int8), rng.integers(-128, 128, (len(rows), depth), dtype=np.int8)])


def test_softmax_wide_rows_shift_above_31(tmp_path):
    """A row sum of 512 or more needs a final shift above 31 (the interpreter's widened rule)."""
    rng = np.random.default_rng(3)
    depth = 700
    g = _softmax_graph((2, depth), 0.01, zp=0)
    _check(g, tmp_path, [np.zeros((2, depth), np.int8), rng.integers(120, 128, (2, depth), dtype=np.int8),
                         rng.integers(-128, 128, (2, depth), dtype=np.int8)])


def test_softmax_under_sanitizers(tmp_path):
    assert_c_matches_interpreter(_softmax_graph((4, 50), 0.08, zp=2), tmp_path, n=3, sanitize=True)


def test_softmax_rejects_inner_axis(tmp_path):
    with pytest.raises(UnsupportedOpError, match="last axis"):
        compile_to_c(_softmax_graph((1, 4, 5), 0.1, axis=1), tmp_path / "c")


# -- pad ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, pads, value", [
    ((1, 5, 6, 3), (0, 1, 2, 0, 0, 2, 1, 1), 0.0),
    ((2, 3, 4, 2), (1, 0, 3, 2, 0, 2, 0, 1), 0.37),
    ((4, 5), (1, 0, 2, 3), -1.0),
    ((3, 4, 2), (0, 2, 1, 1, 0, 0), 100.0),
    ((7,), (3, 2), 0.1),
])
def test_pad(tmp_path, shape, pads, value):
    g = Graph("pad")
    x = g.add_input(q8(shape, 0.05, -11), "x")
    out = tuple(d + pads[i] + pads[i + len(shape)] for i, d in enumerate(shape))
    y = g.create("nn.pad", [x], [q8(out, 0.05, -11)], {"pads": pads, "value": value}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=3)


def test_pad_under_sanitizers(tmp_path):
    g = Graph("pad")
    x = g.add_input(q8((1, 3, 4, 5), 0.1, 3), "x")
    y = g.create("nn.pad", [x], [q8((1, 6, 5, 7), 0.1, 3)], {"pads": (0, 1, 0, 1, 0, 2, 1, 1)}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=2, sanitize=True)


# -- concat ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shapes, axis", [
    ([(1, 4, 5, 3), (1, 4, 5, 2)], 3),
    ([(1, 4, 5, 3), (1, 4, 5, 1), (1, 4, 5, 6)], -1),
    ([(1, 2, 5, 3), (1, 4, 5, 3)], 1),
    ([(1, 1, 3, 2), (1, 3, 3, 2), (1, 2, 3, 2)], 1),
    ([(2, 3), (1, 3), (4, 3)], 0),
    ([(2, 3, 4), (2, 3, 1)], 2),
])
def test_concat(tmp_path, shapes, axis):
    g = Graph("concat")
    xs = [g.add_input(q8(s, 0.05, 1), f"x{i}") for i, s in enumerate(shapes)]
    ax = axis % len(shapes[0])
    out = list(shapes[0])
    out[ax] = sum(s[ax] for s in shapes)
    y = g.create("nn.concat", xs, [q8(tuple(out), 0.05, 1)], {"axis": axis}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=3)
    assert _generated_c(tmp_path).count("mcc_concat_s8(") == len(shapes)


def test_concat_with_a_constant_input(tmp_path):
    g = Graph("concat")
    x = g.add_input(q8((1, 3, 3, 2), 0.05, 1), "x")
    c = const(g, np.arange(-9, 9).reshape(1, 3, 3, 2), q8((1, 3, 3, 2), 0.05, 1), "c")
    y = g.create("nn.concat", [c, x], [q8((1, 3, 3, 4), 0.05, 1)], {"axis": 3}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=2)


# -- transpose ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, perm", [
    ((1, 4, 5, 3), (0, 3, 1, 2)),  # NHWC -> NCHW
    ((1, 3, 4, 5), (0, 2, 3, 1)),  # NCHW -> NHWC
    ((2, 3, 4, 5), (3, 2, 1, 0)),
    ((2, 3, 4, 5), (1, 0, 3, 2)),
    ((6, 7), (1, 0)),
    ((2, 3, 5), (2, 0, 1)),
])
def test_transpose(tmp_path, shape, perm):
    g = Graph("transpose")
    x = g.add_input(q8(shape, 0.05, 0), "x")
    y = g.create("nn.transpose", [x], [q8(tuple(shape[p] for p in perm), 0.05, 0)], {"perm": perm}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=3)


def test_transpose_under_sanitizers(tmp_path):
    g = Graph("transpose")
    x = g.add_input(q8((2, 3, 4, 5), 0.05, 0), "x")
    y = g.create("nn.transpose", [x], [q8((4, 2, 5, 3), 0.05, 0)], {"perm": (2, 0, 3, 1)}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=2, sanitize=True)


# -- resize_nearest ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("in_hw, size", [((5, 7), (10, 14)), ((8, 8), (3, 5)), ((4, 6), (9, 4)), ((1, 3), (2, 1))])
def test_resize_nearest(tmp_path, flags, in_hw, size):
    g = Graph("resize")
    x = g.add_input(q8((2, *in_hw, 3), 0.05, 0), "x")
    y = g.create("nn.resize_nearest", [x], [q8((2, *size, 3), 0.05, 0)],
                 {"size": size, "align_corners": flags[0], "half_pixel_centers": flags[1]}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=2)


def test_resize_nearest_under_sanitizers(tmp_path):
    g = Graph("resize")
    x = g.add_input(q8((1, 3, 5, 2), 0.05, 0), "x")
    y = g.create("nn.resize_nearest", [x], [q8((1, 7, 2, 2), 0.05, 0)],
                 {"size": (7, 2), "half_pixel_centers": True}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=2, sanitize=True)


# -- reshape / identity / flatten copies -------------------------------------------------------------------------
@pytest.mark.parametrize("kind, attrs, out_shape", [
    ("nn.reshape", {"shape": (6, 10)}, (6, 10)),
    ("nn.identity", {}, (1, 3, 4, 5)),
])
def test_unaliased_reshape_copies(tmp_path, monkeypatch, kind, attrs, out_shape):
    monkeypatch.setattr("compiler.memory.ALIAS_KINDS", frozenset())  # a plan that gives the result its own bytes
    g = Graph("copy")
    x = g.add_input(q8((1, 3, 4, 5), 0.05, 2), "x")
    y = g.create(kind, [x], [q8(out_shape, 0.05, 2)], attrs, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=2, sanitize=True)
    assert "mcc_copy(" in _generated_c(tmp_path)


def test_flatten_copy(tmp_path):
    g = Graph("flatten")
    x = g.add_input(q8((2, 3, 4, 5), 0.05, 2), "x")
    y = g.create("nn.flatten", [x], [q8((2, 60), 0.05, 2)], {"axis": 1}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=2)


def test_aliased_reshape_emits_nothing(tmp_path):
    g = Graph("alias")
    x = g.add_input(q8((1, 3, 4, 5), 0.05, 2), "x")
    r = g.create("nn.reshape", [x], [q8((12, 5), 0.05, 2)], {"shape": (12, 5)}, ["r"]).result
    y = g.create("nn.softmax", [r], [q8((12, 5), *SOFTMAX_Q)], {"axis": -1}, ["y"]).result
    g.outputs = [y]
    assert_c_matches_interpreter(g, tmp_path, n=2)
    assert "mcc_copy(" not in _generated_c(tmp_path)


# -- slice and insert (patch-based inference's region copies) --------------------------------------------------
def _box_runs(size, src, src_begin, dst, dst_begin):
    """The (source offset, destination offset, length) element runs ``mcc_box_copy`` copies for these parameters,
    one per innermost row, in its loop order."""
    runs = []
    for i0 in range(size[0]):
        for i1 in range(size[1]):
            for i2 in range(size[2]):
                si = (((src_begin[0] + i0) * src[1] + src_begin[1] + i1) * src[2] + src_begin[2] + i2) * src[3]
                di = (((dst_begin[0] + i0) * dst[1] + dst_begin[1] + i1) * dst[2] + dst_begin[2] + i2) * dst[3]
                runs.append((si + src_begin[3], di + dst_begin[3], size[3]))
    return runs


@pytest.mark.parametrize("seed", range(40))
def test_coalesced_box_moves_the_elements_numpy_moves(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 5))
    src = tuple(int(d) for d in rng.integers(1, 6, rank))
    dst = tuple(int(d) for d in rng.integers(1, 6, rank))
    # boxes that often span whole axes, so that merging happens (or must not)
    size = tuple(min(s, d) if rng.random() < 0.6 else int(rng.integers(1, min(s, d) + 1))
                 for s, d in zip(src, dst, strict=True))
    sb = tuple(int(rng.integers(0, s - n + 1)) for s, n in zip(src, size, strict=True))
    db = tuple(int(rng.integers(0, d - n + 1)) for d, n in zip(dst, size, strict=True))
    pad = (1,) * (4 - rank)
    z, s4, sb4, d4, db4 = coalesce_box(pad + size, pad + src, (0,) * (4 - rank) + sb, pad + dst,
                                       (0,) * (4 - rank) + db)
    a = rng.integers(0, 1 << 30, src)
    want = np.full(dst, -1)
    box_src = tuple(slice(b, b + n) for b, n in zip(sb, size, strict=True))
    want[tuple(slice(b, b + n) for b, n in zip(db, size, strict=True))] = a[box_src]
    got = np.full(int(np.prod(dst)), -1)
    flat = a.reshape(-1)
    runs = _box_runs(z, s4, sb4, d4, db4)
    for si, di, n in runs:
        got[di:di + n] = flat[si:si + n]
    np.testing.assert_array_equal(got.reshape(dst), want)
    assert len(runs) <= int(np.prod(size[:-1]))


def test_coalescing_merges_whole_inner_axes_only():
    # NHWC tile: whole channels and whole rows of the tile's width merge; the tile's rows stay separate
    assert coalesce_box((1, 4, 8, 16), (1, 32, 32, 16), (0, 8, 8, 0), (1, 4, 8, 16), (0, 0, 0, 0)) == \
        ((1, 1, 4, 128), (1, 1, 32, 512), (0, 0, 8, 128), (1, 1, 4, 128), (0, 0, 0, 0))
    # a box inside the channels merges nothing
    assert coalesce_box((1, 2, 2, 3), (1, 4, 4, 8), (0, 1, 1, 2), (1, 2, 2, 3), (0, 0, 0, 0))[0] == (1, 2, 2, 3)


@pytest.mark.parametrize("begin, size", [
    ((0, 1, 0, 0), (1, 3, 5, 4)),  # whole rows: one run
    ((0, 2, 1, 0), (1, 3, 3, 4)),  # whole channels of part of the rows
    ((0, 1, 2, 1), (1, 4, 2, 2)),  # inside the channels: one run per pixel
])
def test_slice_and_insert(tmp_path, begin, size):
    g = Graph("box")
    x = g.add_input(q8((1, 6, 5, 4), 0.05, 1), "x")
    f = g.add_input(q8((1, 7, 6, 4), 0.05, 1), "f")
    part = g.create("nn.slice", [x], [q8(size, 0.05, 1)], {"begin": begin, "size": size}, ["part"]).result
    h = g.create("nn.hard_swish", [f], [q8((1, 7, 6, 4), 0.05, 1)], {}, ["h"]).result  # a full owned by the arena
    at = (0, 7 - size[1], 6 - size[2], 4 - size[3])
    y = g.create("nn.insert", [part, h], [q8((1, 7, 6, 4), 0.05, 1)], {"begin": at, "shape": (1, 7, 6, 4)},
                 ["y"]).result
    g.outputs = [y, part]
    assert_c_matches_interpreter(g, tmp_path, n=3, sanitize=True)


# -- everything in one graph, host (sanitized) and cross builds --------------------------------------------------
def _all_ops_graph():
    g = Graph("all")
    x = g.add_input(q8((1, 6, 6, 4), 0.05, -3), "x")
    p = g.create("nn.pad", [x], [q8((1, 8, 8, 4), 0.05, -3)], {"pads": (0, 1, 1, 0, 0, 1, 1, 0), "value": 0.2},
                 ["p"]).result
    h = g.create("nn.hard_swish", [p], [q8((1, 8, 8, 4), 0.03, -10)], {}, ["h"]).result
    t = g.create("nn.transpose", [h], [q8((1, 4, 8, 8), 0.03, -10)], {"perm": (0, 3, 1, 2)}, ["t"]).result
    lr = g.create("nn.leaky_relu", [t], [q8((1, 4, 8, 8), 0.02, 0)], {"alpha": 0.2}, ["lr"]).result
    t2 = g.create("nn.transpose", [lr], [q8((1, 8, 8, 4), 0.02, 0)], {"perm": (0, 2, 3, 1)}, ["t2"]).result
    r = g.create("nn.resize_nearest", [t2], [q8((1, 4, 4, 4), 0.02, 0)], {"size": (4, 4), "half_pixel_centers": True},
                 ["r"]).result
    rq = g.create("q.requantize", [r], [q8((1, 4, 4, 4), *SIGMOID_Q)], {}, ["rq"]).result
    s = g.create("nn.sigmoid", [x], [q8((1, 6, 6, 4), *SIGMOID_Q)], {}, ["s"]).result
    s2 = g.create("nn.resize_nearest", [s], [q8((1, 4, 4, 4), *SIGMOID_Q)], {"size": (4, 4)}, ["s2"]).result
    c = g.create("nn.concat", [rq, s2], [q8((1, 4, 4, 8), *SIGMOID_Q)], {"axis": 3}, ["c"]).result
    f = g.create("nn.reshape", [c], [q8((1, 16, 8), *SIGMOID_Q)], {"shape": (1, 16, 8)}, ["f"]).result
    th = g.create("nn.tanh", [f], [q8((1, 16, 8), *TANH_Q)], {}, ["th"]).result
    fl = g.create("nn.flatten", [th], [q8((1, 128), *TANH_Q)], {"axis": 1}, ["fl"]).result
    sm = g.create("nn.softmax", [fl], [q8((1, 128), *SOFTMAX_Q)], {}, ["sm"]).result
    g.outputs = [sm]
    return g


def test_all_ops_graph_under_sanitizers(tmp_path):
    assert_c_matches_interpreter(_all_ops_graph(), tmp_path, n=4, sanitize=True)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")
@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m0plus"])
def test_all_ops_cross_compile(tmp_path, target):
    compile_to_c(_all_ops_graph(), tmp_path / "c")
    out = build(tmp_path / "c", target=target)
    assert (out / "libt.a").is_file()
