"""Overlapping a result with a dying operand: the declared distances against simulated kernel traces, plans that
use them, and C builds that run on them.

The oracle is independent of ``compiler/overlap.py``: it replays, byte by byte and in the C kernels' loop order
(``runtime_c/``), every read of the operand and every write of the result, and checks that no byte of the
operand is overwritten before its last read when the result starts ``d`` bytes below the operand.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.c.emitters.compute import depthwise_fast_variant, depthwise_lines, depthwise_ring_lines
from compiler.ir import DType, Graph, Op, QuantParams, TensorType, Value, const
from compiler.memory import ALIGNMENT, buffer_roots, plan_memory
from compiler.opdef import attr
from compiler.ops.conv import depthwise_in_place, gemm_byte_column, gemm_conv, gemm_conv_direct
from compiler.overlap import overlap_distance
from compiler.verifier import verify
from tests.backend.harness import assert_c_matches_interpreter
from tests.strategies import random_graphs
from tests.test_memory import branched_graphs, class_spans, scratch_of

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Q = QuantParams.per_tensor(0.1, 0)


def t8(shape: tuple[int, ...], scale: float = 0.1, zp: int = 0) -> TensorType:
    return TensorType(shape, DType.INT8, QuantParams.per_tensor(scale, zp))


# -- kernel traces -----------------------------------------------------------------------------------------------
def trace(op: Op, k: int, d: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """For operand ``k`` of ``op``: the step at which each operand byte is last read, and the step at which each
    result byte is written, replaying the C kernel's loops (steps count reads and writes in program order). ``d``:
    where the result starts below the operand, for the one kernel whose order depends on it (the raster line
    kernel, which checks the addresses)."""
    x, y = op.operands[k].type, op.result.type
    last_read = np.full(x.nbytes, -1, dtype=np.int64)
    written = np.full(y.nbytes, -1, dtype=np.int64)
    step = 0

    def read(b: int) -> None:
        nonlocal step
        last_read[b] = step
        step += 1

    def write(b: int) -> None:
        nonlocal step
        written[b] = step
        step += 1

    if op.kind == "nn.depthwise_conv2d" and depthwise_lines(op) is not None:  # runtime_c/mcc_depthwise_lines.c
        _lines_trace(op, d, read, write)
        return last_read, written
    if op.kind == "nn.depthwise_conv2d" and depthwise_in_place(op):  # runtime_c/mcc_depthwise_planar.c
        _, ih, iw, ic = x.shape
        _, oh, ow, _ = y.shape
        for c in range(ic):
            for i in range(ih * iw):  # the channel's plane into scratch
                read(i * ic + c)
            for o in range(oh * ow):  # then its outputs, from the plane only
                write(o * ic + c)
        return last_read, written
    if op.kind in ("nn.conv2d", "nn.depthwise_conv2d", "nn.max_pool2d", "nn.avg_pool2d"):
        n, ih, iw, ic = x.shape
        _, oh, ow, oc = y.shape
        pool = op.kind.endswith("pool2d")
        kh, kw = attr(op, "kernel") if pool else op.operands[1].type.shape[1:3]
        dh, dw = (1, 1) if pool else attr(op, "dilations")
        sh, sw = attr(op, "strides")
        pt, pl = attr(op, "pads")[:2]
        groups = attr(op, "groups") if op.kind == "nn.conv2d" else 1
        mult = attr(op, "depth_multiplier") if op.kind == "nn.depthwise_conv2d" else 1
        if op.kind == "nn.depthwise_conv2d" and depthwise_fast_variant(op) is not None:
            # the specialised kernels: per pixel, blocks of four channels (each valid tap reads four bytes, then
            # the four results are written), then the channels left one by one
            blocks = oc // 4
            steps = [range(4 * j, 4 * j + 4) for j in range(blocks)] + [range(c, c + 1) for c in range(4 * blocks, oc)]
            for b, oy, ox in itertools.product(range(n), range(oh), range(ow)):
                for chans in steps:
                    for ky, kx in itertools.product(range(kh), range(kw)):
                        iy, ix = oy * sh - pt + ky, ox * sw - pl + kx
                        if 0 <= iy < ih and 0 <= ix < iw:
                            for ch in chans:
                                read(((b * ih + iy) * iw + ix) * ic + ch)
                    for ch in chans:
                        write(((b * oh + oy) * ow + ox) * oc + ch)
            return last_read, written
        if op.kind == "nn.conv2d" and gemm_conv(op):
            # runtime_c/mcc_gemm.c, per output pixel: the window's taps are read into the column first, then every
            # output channel is written; with byte_column a 1x1 window's pixel is read in place, again for each
            # block of four output channels (then one by one), each block written before the next read
            inplace = gemm_byte_column(op) and gemm_conv_direct(op)
            blocks = [range(c, c + 4) for c in range(0, oc // 4 * 4, 4)] + [range(c, c + 1)
                                                                              for c in range(oc // 4 * 4, oc)]
            for b, oy, ox in itertools.product(range(n), range(oh), range(ow)):
                taps = [(oy * sh - pt + ky * dh, ox * sw - pl + kx * dw) for ky in range(kh) for kx in range(kw)]
                pix = [((b * ih + iy) * iw + ix) * ic for iy, ix in taps if 0 <= iy < ih and 0 <= ix < iw]
                out0 = ((b * oh + oy) * ow + ox) * oc
                for blk in (blocks if inplace else [range(oc)]):
                    for base in pix:
                        for ch in range(ic):
                            read(base + ch)
                    for c in blk:
                        write(out0 + c)
            return last_read, written
        for b, oy, ox, c in itertools.product(range(n), range(oh), range(ow), range(oc)):
            if op.kind == "nn.conv2d":
                cin = ic // groups
                chans = range(c // (oc // groups) * cin, c // (oc // groups) * cin + cin)
            elif op.kind == "nn.depthwise_conv2d":
                chans = range(c // mult, c // mult + 1)
            else:
                chans = range(c, c + 1)
            for ky, kx in itertools.product(range(kh), range(kw)):
                iy, ix = oy * sh - pt + ky * dh, ox * sw - pl + kx * dw
                if 0 <= iy < ih and 0 <= ix < iw:
                    for ch in chans:
                        read(((b * ih + iy) * iw + ix) * ic + ch)
            write(((b * oh + oy) * ow + ox) * oc + c)
    else:  # elementwise: every operand element of the output element, then the write
        idx = np.broadcast_to(np.arange(x.num_elements).reshape(x.shape), y.shape).reshape(-1)
        for e, src in enumerate(idx):
            for j in range(len(op.operands)):
                if j == k:
                    read(int(src))
                else:
                    step += 1
            write(e)
    return last_read, written


LINE_BYTES, LINE_SEG = 32, 28
"""``MCC_DWL_LS`` and ``MCC_DWL_SEG`` of ``runtime_c/mcc_depthwise_lines.c``."""


def _lines_trace(op: Op, d: int, read: Callable[[int], None], write: Callable[[int], None]) -> None:
    """The line kernels' order (``runtime_c/mcc_depthwise_lines.c``): per block of four channels the input lines
    four at a time into the buffer, then two output lines written."""
    lines = depthwise_lines(op)
    _, ih, iw, ic = op.operands[0].type.shape
    _, oh, ow, _ = op.result.type.shape
    pt, pl = attr(op, "pads")[:2]

    def kend(n: int) -> int:
        return min(((n - 1) & ~1) + 4, LINE_BYTES)

    if lines != "raster":  # in place: block by block, lines 0, 1 carried over from the previous pair
        cols = lines == "cols"
        n_in, n_out, pad, along = (iw, ow, pl, pt) if cols else (ih, oh, pt, pl)
        length, out_len = (ih, oh) if cols else (iw, ow)
        px = min(length, kend(out_len) - along)

        def fill(c: int, i: int) -> None:
            if 0 <= i < n_in:
                for kk in range(px):
                    pix = kk * iw + i if cols else i * iw + kk
                    for j in range(4):
                        read(pix * ic + c + j)

        for c in range(0, ic, 4):
            fill(c, -pad)
            fill(c, 1 - pad)
            for o in range(0, n_out, 2):
                fill(c, o + 2 - pad)
                fill(c, o + 3 - pad)
                for i in range(o, min(o + 2, n_out)):
                    for kk in range(out_len):
                        pix = kk * ow + i if cols else i * ow + kk
                        for j in range(4):
                            write(pix * ic + c + j)
        return
    segs = -(-ow // LINE_SEG)
    seg = (-(-ow // segs) + 1) & ~1
    nbytes = ih * iw * ic
    k = d // ic if d > 0 and d % ic == 0 and d // ic <= ih * iw else 0

    def same_block(oy: int, n_lines: int) -> bool:
        for x0 in range(0, ow, seg):
            n = min(seg, ow - x0)
            for i in range(n_lines):
                m_lo = (oy + i) * ow + x0 - k
                m_hi = m_lo + n
                if m_hi <= 0:
                    continue
                if m_hi > (oy + n_lines - pt) * iw:
                    return False
                if x0 + n < ow and m_hi > (oy - pt) * iw:
                    r = (m_hi - 1) // iw
                    if m_lo < r * iw or m_hi - 1 - r * iw >= x0 + n - pl:
                        return False
        return True

    for oy in range(0, oh, 2):
        n_lines = min(2, oh - oy)
        first = max(oy - pt, 0)
        lo = oy * ow * ic - d
        hi = lo + n_lines * ow * ic
        if not (hi <= first * iw * ic or lo >= nbytes or (k > 0 and same_block(oy, n_lines))):
            for i, ox, c in itertools.product(range(n_lines), range(ow), range(ic)):  # pixel by pixel
                for ky, kx in itertools.product(range(3), range(3)):
                    iy, ix = oy + i - pt + ky, ox - pl + kx
                    if 0 <= iy < ih and 0 <= ix < iw:
                        read((iy * iw + ix) * ic + c)
                write(((oy + i) * ow + ox) * ic + c)
            continue
        for x0 in range(0, ow, seg):
            n = min(seg, ow - x0)
            c0 = x0 - pl
            k0, k1 = max(-c0, 0), min(iw - c0, LINE_BYTES, kend(n))
            for c in range(0, ic, 4):
                for ln in range(4):
                    iy = oy - pt + ln
                    if 0 <= iy < ih and ln < n_lines + 2:
                        for b in range(k0, k1):
                            for j in range(4):
                                read((iy * iw + c0 + b) * ic + c + j)
                for i in range(n_lines):
                    for xx in range(n):
                        for j in range(4):
                            write(((oy + i) * ow + x0 + xx) * ic + c + j)


def legal(op: Op, k: int, d: int, traced: tuple[np.ndarray, np.ndarray] | None = None) -> bool:
    """True when the result, starting ``d`` bytes below operand ``k``, overwrites no operand byte before its
    last read."""
    last_read, written = trace(op, k, d) if traced is None else traced
    j = np.arange(written.size)
    b = j - d  # the operand byte at the same address
    inside = (b >= 0) & (b < last_read.size)
    return not bool(np.any(last_read[b[inside]] > written[j[inside]]))


def best_sharing(op: Op, k: int, operand_bytes: int, result_bytes: int) -> int:
    """The most bytes the result and operand ``k`` (both rounded up to 8) can share at any legal 8-aligned
    distance, by trying every distance against the trace."""
    by_d = op.kind == "nn.depthwise_conv2d" and depthwise_lines(op) == "raster"  # its order depends on d
    traced = None if by_d else trace(op, k)
    best = 0
    for d in range(-operand_bytes, result_bytes + 1, ALIGNMENT):
        if legal(op, k, d, traced):
            lo, hi = max(0, -d), min(operand_bytes, result_bytes - d)  # operand bytes under the result
            best = max(best, hi - lo)
    return best


# -- random single ops -------------------------------------------------------------------------------------------
@st.composite
def window_ops(draw) -> Op:
    g = Graph("one")
    kind = draw(st.sampled_from(["nn.conv2d", "nn.depthwise_conv2d", "nn.max_pool2d", "nn.avg_pool2d"]))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    c = draw(st.integers(1, 9))
    k = draw(st.integers(1, 7))
    s = draw(st.integers(1, 2))
    d = draw(st.integers(1, 2)) if kind != "nn.max_pool2d" and kind != "nn.avg_pool2d" else 1
    pads = tuple(draw(st.integers(0, k - 1)) for _ in range(4))
    eff = (k - 1) * d + 1
    oh, ow = (h + pads[0] + pads[2] - eff) // s + 1, (w + pads[1] + pads[3] - eff) // s + 1
    if oh < 1 or ow < 1:
        eff, pads, k, d = 1, (0, 0, 0, 0), 1, 1
        oh, ow = (h - 1) // s + 1, (w - 1) // s + 1
    x = g.add_input(t8((n, h, w, c)), "x")
    attrs: dict = {"strides": (s, s), "pads": pads}
    if kind == "nn.conv2d":
        groups = draw(st.sampled_from([g_ for g_ in (1, 2) if c % g_ == 0]))
        co = groups * draw(st.integers(1, 3))
        wt = const(g, np.ones((co, k, k, c // groups), np.int8), t8((co, k, k, c // groups), 0.01))
        attrs.update(dilations=(d, d), groups=groups)
        operands, yc = [x, wt], co
    elif kind == "nn.depthwise_conv2d":
        m = draw(st.integers(1, 2))
        wt = const(g, np.ones((1, k, k, c * m), np.int8), t8((1, k, k, c * m), 0.01))
        attrs.update(dilations=(d, d), depth_multiplier=m)
        operands, yc = [x, wt], c * m
    else:
        attrs.update(kernel=(k, k))
        operands, yc = [x], c
    y = g.create(kind, operands, [t8((n, oh, ow, yc))], attrs, ["y"]).result
    g.outputs = [y]
    verify(g)
    return y.producer


@st.composite
def elementwise_ops(draw) -> Op:
    g = Graph("one")
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    x = g.add_input(t8(shape), "x")
    kind = draw(st.sampled_from(["nn.add", "nn.mul", "nn.relu", "q.requantize"]))
    if kind in ("nn.add", "nn.mul"):
        other = tuple(draw(st.sampled_from([1, d])) for d in shape)  # broadcast either way
        z = g.add_input(t8(other), "z")
        operands = [x, z] if draw(st.booleans()) else [z, x]
    else:
        operands = [x]
    out_shape = np.broadcast_shapes(*(v.type.shape for v in operands))
    y = g.create(kind, operands, [t8(tuple(out_shape), 0.2, 3)], {}, ["y"]).result
    g.outputs = [y]
    verify(g)
    return y.producer


@SETTINGS
@given(op=st.one_of(window_ops(), elementwise_ops()), extra=st.integers(0, 24))
def test_declared_distance_is_legal_for_the_kernel_trace(op, extra):
    for k, v in enumerate(op.operands):
        if v.producer is not None:
            continue
        ov = overlap_distance(op, k)
        assert ov is not None, f"{op.kind} declares no overlap"
        if ov.exact:
            assert legal(op, k, ov.d), f"{op.kind}: the in-place result clobbers unread input"
            continue
        lo = max(ov.d, -v.type.nbytes)
        for dd in {lo, lo + extra, lo + 1}:
            assert legal(op, k, dd), f"{op.kind}: the result {dd} B below operand {k} clobbers unread input"


@pytest.mark.parametrize("h, w, c, pads, lines", [
    (25, 5, 8, (1, 1, 1, 1), "cols"), (5, 9, 4, (1, 1, 1, 1), "rows"), (7, 6, 8, (0, 0, 0, 0), "rows"),
    (6, 7, 4, (1, 0, 1, 0), "rows"), (9, 4, 4, (0, 1, 0, 1), "rows"), (8, 3, 4, (1, 1, 0, 0), "rows"),
    (40, 4, 4, (1, 1, 1, 1), None), (6, 6, 6, (1, 1, 1, 1), None)])
def test_in_place_depthwise_trace_is_legal(h, w, c, pads, lines):
    """The in-place depthwise kernel on exactly its input's bytes: the ring of lines (rows, or columns when the
    output has the input's shape and is taller than wide) and the channel-by-channel plane never overwrite a byte
    they still have to read."""
    g = Graph("one")
    x = g.add_input(t8((1, h, w, c)), "x")
    wt = const(g, np.ones((1, 3, 3, c), np.int8), t8((1, 3, 3, c), 0.01))
    oh, ow = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    y = g.create("nn.depthwise_conv2d", [x, wt], [t8((1, oh, ow, c))],
                 {"strides": (1, 1), "pads": pads, "dilations": (1, 1), "in_place": True}, ["y"]).result
    g.outputs = [y]
    verify(g)
    op = y.producer
    assert depthwise_in_place(op) and depthwise_ring_lines(op) == lines
    ov = overlap_distance(op, 0)
    assert ov is not None and ov.exact and ov.d == 0
    assert legal(op, 0, 0)


@pytest.mark.parametrize("h, w, c, pads", [(5, 26, 4, (1, 1, 1, 1)), (4, 30, 8, (0, 0, 0, 0)),
                                           (3, 57, 4, (1, 0, 1, 0)), (6, 24, 12, (0, 1, 0, 1))])
def test_line_kernel_trace_is_legal_at_every_distance(h, w, c, pads):
    """The raster-placement line kernel checks the addresses (line path, or pixel by pixel): at every distance from
    the declared one up, whole pixels or not, it overwrites no byte it still has to read."""
    g = Graph("lines")
    x = g.add_input(t8((1, h, w, c)), "x")
    wt = const(g, np.ones((1, 3, 3, c), np.int8), t8((1, 3, 3, c), 0.01))
    oh, ow = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    y = g.create("nn.depthwise_conv2d", [x, wt], [t8((1, oh, ow, c))],
                 {"strides": (1, 1), "pads": pads, "dilations": (1, 1)}, ["y"]).result
    g.outputs = [y]
    verify(g)
    op = y.producer
    assert depthwise_lines(op) == "raster"
    ov = overlap_distance(op, 0)
    assert ov is not None and not ov.exact
    for d in range(ov.d, ov.d + 3 * w * c + 9):
        assert legal(op, 0, d), f"the line kernel clobbers unread input {d} B below"


@SETTINGS
@given(op=elementwise_ops())
def test_elementwise_distance_is_the_smallest_legal_one(op):
    for k, v in enumerate(op.operands):
        ov = overlap_distance(op, k)
        if ov is not None and ov.d > -v.type.nbytes and op.result.type.num_elements == v.type.num_elements:
            assert not legal(op, k, ov.d - 1)


def test_known_distances():
    """3x3 depthwise, stride 1, pad 1 on HxWxC: C*(W+2) (one row and two pixels); pointwise C -> 2C: 2C per pixel
    ahead of the input, times the pixels."""
    g = Graph("k")
    x = g.add_input(t8((1, 6, 5, 4)), "x")
    w = const(g, np.ones((1, 3, 3, 4), np.int8), t8((1, 3, 3, 4), 0.01))
    dw = g.create("nn.depthwise_conv2d", [x, w], [t8((1, 6, 5, 4))], {"pads": (1, 1, 1, 1)}, ["d"])
    w2 = const(g, np.ones((8, 1, 1, 4), np.int8), t8((8, 1, 1, 4), 0.01))
    pw = g.create("nn.conv2d", [dw.result, w2], [t8((1, 6, 5, 8))], {}, ["p"])
    g.outputs = [pw.result]
    assert overlap_distance(dw, 0) == (4 * (5 + 2), False)
    assert overlap_distance(pw, 0) == (8 * 30 - 4 * 29, False)
    assert legal(dw, 0, 28) and not legal(dw, 0, 28 - 4 - 1)


# -- plans -------------------------------------------------------------------------------------------------------
def check_overlapping_plan(graph: Graph) -> int:
    """Every pair of buffers live together is disjoint, or is a declared result-over-dying-operand pair whose
    actual offsets the kernel trace allows. Returns the bytes shared."""
    plan = plan_memory(graph)
    root = buffer_roots(graph)
    for v in root:
        assert plan.offset(v) % ALIGNMENT == 0 and plan.offset(v) + v.type.nbytes <= plan.arena_bytes
    pairs = {(r, x) for r, x, _ in plan.overlaps}
    pos = {op: i for i, op in enumerate(graph.ops)}
    spans = class_spans(graph)
    shared = 0
    for a, b in itertools.combinations(list(spans), 2):
        (_, alo, ahi), (_, blo, bhi) = spans[a], spans[b]
        if not (alo <= bhi and blo <= ahi):
            continue
        oa, ob = plan.offset(a), plan.offset(b)
        if oa + a.type.nbytes <= ob or ob + b.type.nbytes <= oa:
            continue
        y, x = (a, b) if (a, b) in pairs else (b, a)
        assert (y, x) in pairs, f"%{a.name} and %{b.name} overlap without a declared contract"
        op = y.producer
        assert op is not None and spans[x][2] == pos[op], "the operand must die at the op"
        for k, v in enumerate(op.operands):
            if root.get(v) is x:
                assert legal(op, k, plan.offset(x) - plan.offset(y)), f"{op.label} clobbers %{x.name}"
        shared += min(oa + a.type.nbytes, ob + b.type.nbytes) - max(oa, ob)
    assert plan.lower_bound <= plan.arena_bytes <= plan_memory(graph, overlap=False).arena_bytes
    # an independent lower bound: bytes live at each op, less the most each legal pair there can share
    sizes = {rep: size for rep, (size, _, _) in spans.items()}
    for t, op in enumerate(graph.ops):
        live = sum(size for size, lo, hi in spans.values() if lo <= t <= hi) + scratch_of(op)
        for y, x in pairs:
            if y.producer is op:
                k = next(i for i, v in enumerate(op.operands) if root.get(v) is x)
                live -= best_sharing(op, k, sizes[x], sizes[y])
        assert plan.arena_bytes >= live, f"the arena is below what {op.label} needs"
    return shared


@SETTINGS
@given(graph=branched_graphs())
def test_overlapping_plans_respect_every_kernel_trace(graph):
    check_overlapping_plan(graph)


@SETTINGS
@given(graph=random_graphs(quantized=True))
def test_overlapping_plans_respect_every_kernel_trace_on_pass_test_graphs(graph):
    check_overlapping_plan(graph)


def _block(h: int = 10, w: int = 9, c: int = 4) -> Graph:
    """A MobileNetV2-style residual block: conv 3x3 -> depthwise 3x3 -> pointwise expand -> pointwise project
    -> add the skip -> relu."""
    g = Graph("block")
    rng = np.random.default_rng(3)
    x = g.add_input(t8((1, h, w, c), 0.05, -3), "x")

    def conv(v: Value, co: int, k: int, name: str, depthwise: bool = False) -> Value:
        ci = v.type.shape[3]
        if depthwise:
            wt = const(g, rng.integers(-60, 60, (1, k, k, ci)).astype(np.int8), t8((1, k, k, ci), 0.02))
            kind = "nn.depthwise_conv2d"
        else:
            wt = const(g, rng.integers(-60, 60, (co, k, k, ci)).astype(np.int8), t8((co, k, k, ci), 0.02))
            kind = "nn.conv2d"
        p = k // 2
        return g.create(kind, [v, wt], [t8((1, h, w, co), 0.08, 2)], {"pads": (p, p, p, p)}, [name]).result

    a = conv(x, c, 3, "a")
    b = conv(a, c, 3, "b", depthwise=True)
    e = conv(b, 2 * c, 1, "e")
    p = conv(e, c, 1, "p")
    s = g.create("nn.add", [p, a], [t8((1, h, w, c), 0.1, 0)], {}, ["s"]).result
    g.outputs = [g.create("nn.relu", [s], [s.type], {}, ["y"]).result]
    verify(g)
    return g


def test_block_plan_shares_bytes_and_stays_legal():
    g = _block()
    shared = check_overlapping_plan(g)
    assert shared > 0
    assert plan_memory(g).arena_bytes < plan_memory(g, overlap=False).arena_bytes


@pytest.mark.parametrize("sanitize", [False, True])
def test_c_on_an_overlapping_plan_matches_the_interpreter(tmp_path, sanitize):
    g = _block()
    assert plan_memory(g).shared_bytes() > 0
    assert_c_matches_interpreter(g, tmp_path, n=6, sanitize=sanitize)
