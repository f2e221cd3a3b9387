"""Emitters for the int8 compute ops: depthwise conv, fully connected, matmul, pooling, mean, add and mul.

Every parameter is resolved here with the interpreter's own derivations (``requant_multipliers`` for the
conv-like ops, ``add_params``/``mul_params`` for add and mul, ``quantize_multiplier`` of the same real ratio for
matmul, ``mean_multiplier`` for mean), so the kernels in ``runtime_c`` only loop and do integer arithmetic.
Layout questions are also settled here: broadcasting becomes 4-D strides, a mean becomes [outer, reduce, inner],
a matmul a batch of matrices with per-operand batch strides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from backends.c.emitters._util import require_int8, weight_offset
from backends.c.emitters.gemm import NARROW, emit_gemm, fold_bias, requant_table, small_requant
from backends.c.lower import LowerContext, emitter
from compiler.errors import UnsupportedOpError
from compiler.ir import DType, Op, Value
from compiler.opdef import attr
from compiler.ops._common import act_range_int, per_tensor
from compiler.ops.conv import depthwise_in_place, requant_multipliers
from compiler.ops.elementwise import AddParams, add_kernel, add_params, mul_params
from compiler.ops.pool import mean_multiplier
from compiler.quant import multiply_by_quantized_multiplier, quantize_multiplier


def _source(ctx: LowerContext, v: Value) -> str:
    """Pointer to an operand: its arena slot, or its flash array when it is a constant."""
    return ctx.weight(v) if v.const_value is not None else ctx.cact(v)


def _require_int8(op: Op, values: Sequence[Value]) -> None:
    """Activations, results and weights must all be int8."""
    require_int8(op)
    for v in values:
        if v.type.dtype is not DType.INT8:
            raise UnsupportedOpError(f"{op.label}: the C backend has int8 kernels only; %{v.name} is "
                                     f"{v.type.dtype.value}")


def _channel_tables(op: Op, ctx: LowerContext) -> tuple[str, str]:
    """Per-output-channel multiplier and shift tables of a conv-like op."""
    mult, shift = requant_multipliers(op)
    return ctx.table("mult", mult.astype("int32")), ctx.table("shift", shift.astype("int32"))


def _bias(op: Op, ctx: LowerContext) -> str:
    return ctx.weight(op.operands[2]) if len(op.operands) > 2 else "NULL"


# -- depthwise conv, fully connected, matmul ------------------------------------------------------------------
@emitter("nn.depthwise_conv2d")
def depthwise_conv2d(op: Op, ctx: LowerContext) -> None:
    """Depthwise convolution: a specialised kernel (:func:`depthwise_fast_variant`) or the direct generic one (any
    window, stride, dilation, padding, depth multiplier)."""
    x, w = op.operands[0], op.operands[1]
    y = op.result
    _require_int8(op, [w])
    n, ih, iw, ic = x.type.shape
    _, oh, ow, oc = y.type.shape
    _, kh, kw, _ = w.type.shape
    sh, sw = attr(op, "strides")
    dh, dw = attr(op, "dilations")
    pt, pl, _, _ = attr(op, "pads")
    _, xzp = per_tensor(x, op, "input")
    _, yzp = per_tensor(y, op, "result")
    lo, hi = act_range_int(op, y.type)
    fields = dict(
        batch=n, in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw,
        stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_top=pt, pad_left=pl, groups=1,
        depth_multiplier=attr(op, "depth_multiplier"), in_offset=-xzp, w_offset=weight_offset(op), out_zp=yzp,
        act_min=lo, act_max=hi)
    lines = depthwise_lines(op)
    if lines is not None:  # 3x3 stride 1 from channel lines (runtime_c/mcc_depthwise_lines.c)
        alt = (NARROW, depthwise_lines_table(op, lines, narrow=True))
        if lines == "raster":  # a size-first build runs the compact kernel of mcc_depthwise.c on its own table
            tab = ctx.weight(w, depthwise_lines_table(op, lines), alt, depthwise_lines_size_first(op))
            ctx.call("mcc_depthwise_conv2d_s8_lines", [ctx.params("mcc_dw_fast_params", DW_SPEED_ONLY, **fields),
                                                       ctx.cact(x), tab, ctx.act(y)], "mcc_depthwise_lines.c")
            ctx.program.runtime_files.add("mcc_depthwise.c")
        else:
            tab = ctx.weight(w, depthwise_lines_table(op, lines), alt)
            params = ctx.params("mcc_conv_params", **fields)
            ctx.call("mcc_depthwise_conv2d_s8_lines_inplace",
                     [params, ctx.cact(x), tab, ctx.act(y), "1" if lines == "cols" else "0"], "mcc_depthwise_lines.c")
        return
    if depthwise_in_place(op):  # the plan may give the result exactly the input's bytes
        bias_c = op.operands[2].const_value if len(op.operands) > 2 else None
        if w.const_value is None or (len(op.operands) > 2 and bias_c is None):
            raise UnsupportedOpError(f"{op.label}: the in-place kernel needs constant weights and bias")
        w_eff = np.asarray(w.const_value, dtype=np.int64) + weight_offset(op)
        b_c = np.zeros(oc, np.int32) if bias_c is None else np.asarray(bias_c, dtype=np.int32)
        rq = depthwise_requant(op, w_eff, b_c, -xzp)
        params = ctx.params("mcc_conv_params", **fields)
        ctx.call("mcc_depthwise_conv2d_s8_planar", [params, ctx.cact(x), ctx.weight(w), _bias(op, ctx),
                                                    ctx.table("requant", rq), ctx.act(y), ctx.scratch("int8_t")],
                 "mcc_depthwise_planar.c")
        return
    variant = depthwise_fast_variant(op)
    if variant is None:
        params = ctx.params("mcc_conv_params", **fields)
        mult, shift = _channel_tables(op, ctx)
        ctx.call("mcc_depthwise_conv2d_s8", [params, ctx.cact(x), ctx.weight(w), _bias(op, ctx), mult, shift,
                                             ctx.act(y)], "mcc_depthwise.c")
        return
    wnp = np.asarray(w.const_value)
    bias_v = op.operands[2].const_value if len(op.operands) > 2 else None
    if len(op.operands) > 2 and bias_v is None:
        raise UnsupportedOpError(f"{op.label}: the bias must be a constant")
    bias_np = np.zeros(oc, np.int32) if bias_v is None else np.asarray(bias_v, dtype=np.int32)
    rq = depthwise_requant(op, wnp, bias_np, -xzp)
    fast = depthwise_zp_folds(rq, yzp, depthwise_acc_bound(wnp, bias_np, -xzp))
    if not fast:
        variant += "_any"
    small = _dw_small_requant(op, wnp, bias_np, xzp, yzp)  # a size-first build's table, for both variants
    narrow_w = depthwise_fast_weights(wnp, narrow=True)
    # (equal derived arrays are emitted once: the patch stage's tiles of a layer share them)
    if fast:  # the speed-first plain variant reads one stream (its bias and rq arguments are placeholders there);
        # the byte layout (MCC_GEMM_NARROW) keeps the bias, the byte weights and {multiplier, shift}
        folded = depthwise_fold_zero_point(rq, yzp)
        wsym = ctx.weight(w, depthwise_fast_stream(wnp, bias_np, folded), (NARROW, narrow_w))
        placeholder = np.zeros(1, np.int32)
        bias = ctx.weight(op.operands[2] if len(op.operands) > 2 else w, placeholder, (NARROW, bias_np))
        rq_sym = ctx.weight(w, placeholder, (NARROW, rq.reshape(-1, 3)[:, :2].reshape(-1)), small)
    else:
        wsym = ctx.weight(w, depthwise_fast_weights(wnp, narrow=False), (NARROW, narrow_w))
        bias = _bias(op, ctx) if len(op.operands) > 2 else ctx.table("bias", bias_np)
        rq_sym = ctx.table("requant", rq, small)
    params = ctx.params("mcc_dw_fast_params", DW_SPEED_ONLY, **fields)
    ctx.call(variant, [params, ctx.cact(x), wsym, bias, rq_sym, ctx.act(y)], "mcc_depthwise.c")


DW_SPEED_ONLY = ("out_c", "k_h", "k_w", "stride_h", "stride_w", "dil_h", "dil_w", "groups", "depth_multiplier",
                 "w_offset", "out_zp")
"""The ``mcc_conv_params`` fields a size-first build's ``mcc_dw_fast_params`` leaves out (``runtime_c/mcc_compute.h``):
its kernel has the window and stride in its name and the output zero point in the requantization table."""


RING_MAX_LINE = 28
"""The longest line of the in-place line kernel (``mcc_depthwise_conv2d_s8_lines_inplace``: a line's outputs and
its padded input fit ``MCC_DWL_SEG`` and ``MCC_DWL_LS`` of ``runtime_c/mcc_depthwise_lines.c``)."""


def depthwise_ring_lines(op: Op) -> str | None:
    """How an in-place depthwise op's lines run (``mcc_depthwise_conv2d_s8_lines_inplace``, when
    :func:`depthwise_lines` also finds the requantization fast): ``"rows"`` or ``"cols"`` (3x3, stride 1, no dilation,
    C a multiple of 4, padding at most 1 on the top and the left, the output no larger than the input, lines of at
    most :data:`RING_MAX_LINE` pixels; columns when the output has the input's shape and H > W), None for the
    channel-by-channel plane."""
    _, ih, iw, ic = op.operands[0].type.shape
    _, oh, ow, _ = op.result.type.shape
    kh, kw = op.operands[1].type.shape[1:3]
    pt, pl = attr(op, "pads")[:2]
    if ((kh, kw) != (3, 3) or tuple(attr(op, "strides")) != (1, 1) or tuple(attr(op, "dilations")) != (1, 1)
            or ic % 4 or not (0 <= pt <= 1 and 0 <= pl <= 1) or not (0 < oh <= ih and 0 < ow <= iw)):
        return None
    cols = (oh, ow) == (ih, iw) and ih > iw
    line, out_line = (ih, oh) if cols else (iw, ow)
    if line > RING_MAX_LINE or out_line > RING_MAX_LINE:
        return None
    return "cols" if cols else "rows"


def _dw_consts(op: Op) -> tuple[np.ndarray, np.ndarray, int, int] | None:
    """(weights [1, KH, KW, C] as int64, bias, input zero point, output zero point) of a depthwise op with constant
    weights and bias, or None."""
    w = op.operands[1].const_value
    b = op.operands[2].const_value if len(op.operands) > 2 else None
    if w is None or (len(op.operands) > 2 and b is None):
        return None
    _, xzp = per_tensor(op.operands[0], op, "input")
    _, yzp = per_tensor(op.result, op, "result")
    oc = op.result.type.shape[3]
    bias = np.zeros(oc, np.int32) if b is None else np.asarray(b, dtype=np.int32)
    return np.asarray(w, dtype=np.int64), bias, int(xzp), int(yzp)


def depthwise_lines(op: Op) -> str | None:
    """Whether a depthwise op runs the channel-line kernels (``runtime_c/mcc_depthwise_lines.c``): ``"raster"``
    (any placement the raster overlap contract allows), ``"rows"`` or ``"cols"`` (in place, the ring's lines), or
    None. They need a 3x3 window with stride 1, no dilation, depth multiplier 1, symmetric constant weights, batch
    1, C a multiple of 4, padding at most 1 on the top and the left, and every channel's fast requantization with
    the output zero point folded (:func:`depthwise_zp_folds`). At a speed-first build only: the emitter has no
    optimisation level, so the size of the kernels is the same at every level."""
    x = op.operands[0].type
    n, _, _, ic = x.shape
    kh, kw = op.operands[1].type.shape[1:3]
    pt, pl = attr(op, "pads")[:2]
    if ((kh, kw) != (3, 3) or tuple(attr(op, "strides")) != (1, 1) or tuple(attr(op, "dilations")) != (1, 1)
            or attr(op, "depth_multiplier") != 1 or weight_offset(op) != 0 or n != 1 or ic % 4
            or not (0 <= pt <= 1 and 0 <= pl <= 1) or x.dtype is not DType.INT8):
        return None
    consts = _dw_consts(op)
    if consts is None:
        return None
    w, bias, xzp, yzp = consts
    rq = depthwise_requant(op, w, bias, -xzp)
    if not depthwise_zp_folds(rq, yzp, depthwise_acc_bound(w, bias, -xzp)):
        return None
    if depthwise_in_place(op):
        return depthwise_ring_lines(op)
    return "raster" if op.result.type.shape[2] >= LINES_MIN_WIDTH else None


LINES_MIN_WIDTH = 12
"""The narrowest output the raster-placement line kernel takes: per block of four channels and pair of rows it
fills four channel lines and stores two, so narrow maps pay more for that than the taps save (measured on an
emulated Cortex-M7 with VWW, instructions per MAC, raster kernel -> line kernel: 48 and 24 wide 4.51 and 4.04 ->
3.00, 12 wide 4.00 -> 3.52, 6 wide 3.98 -> 4.59, 3 wide 3.86 -> 7.61)."""


def depthwise_lines_table(op: Op, lines: str, narrow: bool = False) -> np.ndarray:
    """The channel-line kernels' table, eight int32 words per channel: for window lines a = 0, 1, 2 (kernel rows,
    or columns when ``lines`` is ``"cols"``) the pair (w[a][0], w[a][2]) (low half first), then (w[0][1], w[1][1]),
    (shift, w[2][1]), base = bias + in_offset * sum w, the multiplier and the rounding half with the output zero
    point folded (:func:`depthwise_fold_zero_point`); weights and base doubled, as SMMLAR takes the doubled
    accumulator. With ``narrow`` (size-first builds), five words: the weights as bytes, not doubled, (w[0][0],
    w[0][2], w[1][0], w[1][2]), (w[2][0], w[2][2], w[0][1], w[1][1]), (w[2][1], shift), base, multiplier (the kernel
    rebuilds the rest)."""
    consts = _dw_consts(op)
    assert consts is not None
    w, bias, xzp, yzp = consts
    rq = depthwise_requant(op, w, bias, -xzp).reshape(-1, 3).astype(np.int64)
    folded = depthwise_fold_zero_point(rq.reshape(-1).astype(np.int32), yzp).reshape(-1, 3).astype(np.int64)
    k = w[0].transpose(2, 0, 1) * 2  # [C, ky, kx], doubled
    if lines == "cols":
        k = k.transpose(0, 2, 1)  # line a = kernel column a, position b = kernel row b

    def pair(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (lo & 0xFFFF) | ((hi & 0xFFFF) << 16)

    base = 2 * bias.astype(np.int64) - xzp * k.reshape(k.shape[0], -1).sum(axis=1)
    if narrow:
        h = (k // 2) & 0xFF

        def b4(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
            return a | (b << 8) | (c << 16) | (d << 24)

        tab = np.stack([b4(h[:, 0, 0], h[:, 0, 2], h[:, 1, 0], h[:, 1, 2]),
                        b4(h[:, 2, 0], h[:, 2, 2], h[:, 0, 1], h[:, 1, 1]), h[:, 2, 1] | (rq[:, 1] << 8),
                        base & 0xFFFFFFFF, rq[:, 0] & 0xFFFFFFFF], axis=1)
        return tab.astype(np.uint32).view(np.int32).reshape(-1)
    tab = np.stack([pair(k[:, 0, 0], k[:, 0, 2]), pair(k[:, 1, 0], k[:, 1, 2]), pair(k[:, 2, 0], k[:, 2, 2]),
                    pair(k[:, 0, 1], k[:, 1, 1]), pair(rq[:, 1], k[:, 2, 1]), base & 0xFFFFFFFF,
                    rq[:, 0] & 0xFFFFFFFF, folded[:, 2] & 0xFFFFFFFF], axis=1)
    return tab.astype(np.uint32).view(np.int32).reshape(-1)


def depthwise_lines_size_first(op: Op) -> np.ndarray:
    """The raster line kernel's table in a size-first build, where ``mcc_depthwise_conv2d_s8_lines`` runs the compact
    ``mcc_depthwise_conv2d_s8_k3s1`` (``runtime_c/mcc_depthwise.c``): the bias (C words), the weights in the byte
    layout of :func:`depthwise_fast_weights` (``9 * C / 4`` words, C a multiple of 4) and the packed requantization
    of :func:`~backends.c.emitters.gemm.small_requant`, the arrays that kernel takes, one after another."""
    consts = _dw_consts(op)
    assert consts is not None
    w, bias, xzp, yzp = consts
    small = _dw_small_requant(op, w, bias, xzp, yzp)
    return np.concatenate([bias.astype(np.int32), depthwise_fast_weights(w, narrow=True), small.astype(np.int32)])


def _dw_small_requant(op: Op, w: np.ndarray, bias: np.ndarray, xzp: int, yzp: int) -> np.ndarray:
    """The packed size-first requantization (gemm.py's :func:`~backends.c.emitters.gemm.small_requant`) of a
    depthwise op with weights [1, KH, KW, C] (zero point 0), the channels seen as rows of taps."""
    mult, shift = requant_multipliers(op)
    w2d = w.reshape(-1, w.shape[-1]).T.astype(np.int64)
    return np.asarray(small_requant(mult, shift, fold_bias(bias, w2d, -xzp), w2d, yzp))


DW_FAST = {(k, s) for k in (3, 5, 7) for s in (1, 2)}
"""The (square window, stride) pairs with a specialised depthwise kernel (``mcc_depthwise_conv2d_s8_k<K>s<S>``)."""


def depthwise_fast_variant(op: Op) -> str | None:
    """The specialised kernel of a depthwise op, or None when it takes the generic one: depth multiplier 1, no
    dilation, weight zero point 0, a square window and stride in :data:`DW_FAST`. (The emitter appends ``_any``
    when some channel needs the general requantization, see :func:`depthwise_requant`.)"""
    kh, kw = op.operands[1].type.shape[1:3]
    sh, sw = attr(op, "strides")
    if attr(op, "depth_multiplier") != 1 or tuple(attr(op, "dilations")) != (1, 1) or weight_offset(op) != 0:
        return None
    if kh != kw or sh != sw or (kh, sh) not in DW_FAST or op.operands[1].const_value is None:
        return None
    return f"mcc_depthwise_conv2d_s8_k{kh}s{sh}"


def depthwise_requant(op: Op, w: np.ndarray, bias: np.ndarray, in_offset: int) -> np.ndarray:
    """``{multiplier, shift, rounding half}`` per channel of a depthwise op with weights [1, KH, KW, C] (zero
    point 0): gemm.py's :func:`~backends.c.emitters.gemm.requant_table` on the channels as rows of taps. Its
    accumulator bound holds here too: whatever order the kernel sums in (with the offset on each input or folded
    into the bias), the final accumulator is TFLite's, ``bias + in_offset * sum w + sum x * w`` with int8 ``x``
    (``w`` with its zero point removed)."""
    mult, shift = requant_multipliers(op)
    w2d = w.reshape(-1, w.shape[-1]).T.astype(np.int64)
    return requant_table(mult, shift, fold_bias(bias, w2d, in_offset), w2d)


def depthwise_acc_bound(w: np.ndarray, bias: np.ndarray, in_offset: int) -> np.ndarray:
    """Per channel, the largest |accumulator| of a depthwise op with weights [1, KH, KW, C] (zero point 0):
    ``|bias + in_offset * sum w| + 128 * sum |w|`` (the bound :func:`depthwise_requant`'s proof uses)."""
    w2d = w.reshape(-1, w.shape[-1]).T.astype(np.int64)
    return np.abs(fold_bias(bias, w2d, in_offset).astype(np.int64)) + 128 * np.abs(w2d).sum(axis=1)


def depthwise_zp_folds(rq: np.ndarray, zp: int, bound: np.ndarray) -> bool:
    """True when every channel of a requantization table (``{multiplier, shift, rounding half}`` rows) takes the fast
    form (half > 0) and can carry the output zero point in its rounding half: SMMLAR's result is the rounding
    doubling high multiply of the doubled accumulator (at most ``(2 bound m + 2^31) / 2^32 + 1`` in magnitude, with
    ``bound`` from :func:`depthwise_acc_bound`) plus ``2^(r-1) + zp * 2^r``, which must stay inside int32; then
    ``(t + zp * 2^r) >> r = (t >> r) + zp`` exactly. Every shift up to 22 qualifies whatever the bound below 2^30
    (2^30 + 2^21 + 2^29 < 2^31: the in-place ring kernel checks that in C). The plain specialised kernel needs it;
    otherwise the ``_any`` variant runs."""
    t = rq.reshape(-1, 3).astype(np.int64)
    if not np.all(t[:, 2] > 0):
        return False
    m, r = t[:, 0], t[:, 1]
    half = np.left_shift(np.int64(1), r - 1) + int(zp) * np.left_shift(np.int64(1), r)
    high = ((2 * np.asarray(bound, np.int64) * m + (1 << 31)) >> 32) + 1
    return bool(np.all(np.abs(half) + high < (1 << 31)))


def depthwise_fold_zero_point(rq: np.ndarray, zp: int) -> np.ndarray:
    """The table with the output zero point folded into each rounding half, ``2^(r-1) + zp * 2^r`` (valid where
    :func:`depthwise_zp_folds` holds)."""
    t = rq.reshape(-1, 3).astype(np.int64)
    t[:, 2] += int(zp) << t[:, 1]
    assert np.all(np.abs(t[:, 2]) < 1 << 31)
    return t.astype(np.int32).reshape(rq.shape)


def depthwise_fast_stream(w: np.ndarray, bias: np.ndarray, folded: np.ndarray) -> np.ndarray:
    """The plain specialised kernel's speed-first table (``runtime_c/mcc_depthwise.c``, ``MCC_DW_STREAM``), int32
    words: per block of four channels c..c+3 the doubled bias (4 words), the doubled weight pairs of
    :func:`depthwise_fast_weights` (2 per tap) and the requantization rows ``folded`` (zero point in the rounding
    half, :func:`depthwise_fold_zero_point`; 3 words per channel); then, for the ``C mod 4`` channels left, their
    doubled weights (one word per [tap][channel]), doubled bias and requantization rows. Doubled: the kernel sums the
    doubled accumulator SMMLAR takes, exact as the fast form has |accumulator| < 2^30 (:func:`depthwise_requant`)."""
    c = w.shape[-1]
    blocks, taps = c // 4, int(np.prod(w.shape[:-1]))
    wwords = depthwise_fast_weights(w, doubled=True).astype(np.int64)
    b2 = (2 * np.asarray(bias, np.int64)) & 0xFFFFFFFF
    rqr = np.asarray(folded, np.int64).reshape(c, 3) & 0xFFFFFFFF
    head = np.concatenate([b2[:4 * blocks].reshape(blocks, 4), wwords[:blocks * 2 * taps].reshape(blocks, 2 * taps),
                           rqr[:4 * blocks].reshape(blocks, 12)], axis=1).reshape(-1)
    tail = np.concatenate([wwords[blocks * 2 * taps:], b2[4 * blocks:], rqr[4 * blocks:].reshape(-1)])
    return (np.concatenate([head, tail]) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def depthwise_fast_weights(w: np.ndarray, narrow: bool = False, doubled: bool = False) -> np.ndarray:
    """Depthwise weights [1, KH, KW, C] as the specialised kernels read them (``runtime_c/mcc_depthwise.c``), int32
    words: per block of four channels c..c+3 and per tap, the 16-bit pairs ``(w[c], w[c+2])``, ``(w[c+1], w[c+3])``
    (low half first), or with ``narrow`` one word of the four bytes ``w[c..c+3]``; then one word per [tap][channel]
    for the ``C mod 4`` channels left. With ``doubled`` (for :func:`depthwise_fast_stream`) every weight is
    doubled."""
    taps = w.reshape(-1, w.shape[-1]).astype(np.int64) * (2 if doubled and not narrow else 1)
    blocks = taps.shape[1] // 4
    full = taps[:, :blocks * 4].reshape(taps.shape[0], blocks, 4).transpose(1, 0, 2)  # [block, tap, 4]
    if narrow:
        u = full & 0xFF
        words = u[..., 0] | (u[..., 1] << 8) | (u[..., 2] << 16) | (u[..., 3] << 24)
    else:
        u = full & 0xFFFF
        words = np.stack([u[..., 0] | (u[..., 2] << 16), u[..., 1] | (u[..., 3] << 16)], axis=-1)
    out = np.concatenate([words.reshape(-1), taps[:, blocks * 4:].reshape(-1) & 0xFFFFFFFF])
    return out.astype(np.uint32).view(np.int32)


@emitter("nn.fully_connected")
def fully_connected(op: Op, ctx: LowerContext) -> None:
    """``x @ W^T + b`` with the input viewed as rows x K; per-channel or per-tensor weights."""
    x, w = op.operands[0], op.operands[1]
    y = op.result
    _require_int8(op, [w])
    n_out, depth = w.type.shape
    _, xzp = per_tensor(x, op, "input")
    _, yzp = per_tensor(y, op, "result")
    lo, hi = act_range_int(op, y.type)
    q = w.type.quant
    if w.const_value is not None and q is not None and all(z == 0 for z in q.zero_point):
        rows = math.prod(x.type.shape[:-1])
        geometry = dict(batch=1, in_h=1, in_w=rows, in_c=depth, out_h=1, out_w=rows, out_c=n_out, k_h=1, k_w=1,
                        stride_h=1, stride_w=1, dil_h=1, dil_w=1, pad_top=0, pad_left=0)
        emit_gemm(op, ctx, w, w.const_value.astype("int64"), depth, -xzp, geometry, yzp, (lo, hi), "NULL")
        return
    params = ctx.params("mcc_fc_params", rows=math.prod(x.type.shape[:-1]), depth=depth, out_c=n_out,
                        in_offset=-xzp, w_offset=weight_offset(op), out_zp=yzp, act_min=lo, act_max=hi)
    mult, shift = _channel_tables(op, ctx)
    ctx.call("mcc_fully_connected_s8", [params, ctx.cact(x), ctx.weight(w), _bias(op, ctx), mult, shift, ctx.act(y)],
             "mcc_fully_connected.c")


def _batch_stride(op: Op, what: str, batch: Sequence[int], count: int, matrix: int) -> int:
    """Elements between an operand's matrices: ``matrix`` when it has one per result, 0 when it has one in all."""
    own = math.prod(batch)
    if own == count:
        return matrix
    if own == 1:
        return 0
    raise UnsupportedOpError(f"{op.label}: the C kernel broadcasts a whole operand only; {what} has batch "
                             f"dimensions {list(batch)} for {count} result matrices")


@emitter("nn.matmul")
def matmul(op: Op, ctx: LowerContext) -> None:
    """A batch of int8 matrix products; each operand has one matrix per result matrix or one shared by all."""
    a, b = op.operands
    y = op.result
    _require_int8(op, [b])
    a2 = (1, *a.type.shape) if a.type.rank == 1 else a.type.shape
    b2 = (*b.type.shape, 1) if b.type.rank == 1 else b.type.shape
    m, k = a2[-2:]
    n = b2[-1]
    count = y.type.num_elements // (m * n) if m * n else 0
    a_s, a_zp = per_tensor(a, op, "operand A")
    b_s, b_zp = per_tensor(b, op, "operand B")
    y_s, y_zp = per_tensor(y, op, "result")
    mult, shift = quantize_multiplier(a_s * b_s / y_s)
    lo, hi = act_range_int(op, y.type)
    params = ctx.params("mcc_matmul_params", batch=count, m=m, k=k, n=n,
                        a_batch_stride=_batch_stride(op, "A", a2[:-2], count, m * k),
                        b_batch_stride=_batch_stride(op, "B", b2[:-2], count, k * n),
                        a_offset=-a_zp, b_offset=-b_zp, mult=mult, shift=shift, out_zp=y_zp, act_min=lo, act_max=hi)
    ctx.call("mcc_matmul_s8", [params, _source(ctx, a), _source(ctx, b), ctx.act(y)], "mcc_fully_connected.c")


# -- pooling and mean ------------------------------------------------------------------------------------------
@emitter("nn.avg_pool2d", "nn.max_pool2d")
def pool2d(op: Op, ctx: LowerContext) -> None:
    """Average or max pooling over the valid part of each window, with the fused clamp."""
    x, y = op.operands[0], op.result
    require_int8(op)
    n, ih, iw, c = x.type.shape
    _, oh, ow, _ = y.type.shape
    kh, kw = attr(op, "kernel")
    sh, sw = attr(op, "strides")
    pt, pl, _, _ = attr(op, "pads")
    lo, hi = act_range_int(op, y.type)
    params = ctx.params("mcc_pool_params", batch=n, in_h=ih, in_w=iw, channels=c, out_h=oh, out_w=ow, k_h=kh,
                        k_w=kw, stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl, act_min=lo, act_max=hi)
    kernel = "mcc_avg_pool2d_s8" if op.kind == "nn.avg_pool2d" else "mcc_max_pool2d_s8"
    ctx.call(kernel, [params, ctx.cact(x), ctx.act(y)], "mcc_pool.c")


def mean_layout(op: Op) -> tuple[int, int, int]:
    """(outer, reduce, inner) of ``nn.mean``: its axes (ignoring size-1 dimensions) must form one run."""
    shape = op.operands[0].type.shape
    rank = len(shape)
    axes = {a % rank for a in attr(op, "axes")}
    live = [i for i in range(rank) if shape[i] != 1]
    reduced = [j for j, i in enumerate(live) if i in axes]
    if reduced and reduced != list(range(reduced[0], reduced[-1] + 1)):
        raise UnsupportedOpError(f"{op.label}: the C kernel reduces one contiguous run of axes; got axes "
                                 f"{list(attr(op, 'axes'))} of shape {list(shape)}")
    reduce = math.prod(shape[a] for a in axes)
    if not reduced:
        return math.prod(shape) // max(reduce, 1), reduce, 1
    outer = math.prod(shape[i] for i in live[:reduced[0]])
    inner = math.prod(shape[i] for i in live[reduced[-1] + 1:])
    return outer, reduce, inner


@emitter("nn.mean")
def mean(op: Op, ctx: LowerContext) -> None:
    """Mean over a contiguous run of axes: sum, then one requantization by ``s_in / s_out / count`` (TFLM)."""
    x, y = op.operands[0], op.result
    require_int8(op)
    outer, reduce, inner = mean_layout(op)
    xs, xzp = per_tensor(x, op, "input")
    ys, yzp = per_tensor(y, op, "result")
    mult, shift = mean_multiplier(xs, ys, reduce)
    params = ctx.params("mcc_mean_params", outer=outer, reduce=reduce, inner=inner, in_offset=-xzp, mult=mult,
                        shift=shift, out_zp=yzp)
    ctx.call("mcc_mean_s8", [params, ctx.cact(x), ctx.act(y)], "mcc_mean.c")


# -- add and mul -------------------------------------------------------------------------------------------------
def broadcast_strides(op: Op) -> dict[str, int]:
    """The result shape collapsed to 4-D and each operand's element stride per axis (0 where it broadcasts).

    Size-1 result axes are dropped and neighbouring axes merged wherever both operands step through them as one,
    so any broadcast whose operands alternate between repeating and stepping at most four times fits.
    """
    out = op.result.type.shape
    rank = len(out)
    strides = []
    for v in op.operands:
        shape = (1,) * (rank - v.type.rank) + v.type.shape
        own, acc = [0] * rank, 1
        for i in reversed(range(rank)):
            own[i] = 0 if shape[i] == 1 else acc
            acc *= shape[i]
        strides.append(own)
    axes: list[tuple[int, int, int]] = []
    for i in range(rank):
        if out[i] == 1:
            continue
        d, s1, s2 = out[i], strides[0][i], strides[1][i]
        if axes and axes[-1][1] == s1 * d and axes[-1][2] == s2 * d:
            d *= axes.pop()[0]
        axes.append((d, s1, s2))
    if len(axes) > 4:
        raise UnsupportedOpError(f"{op.label}: the broadcast of {list(op.operands[0].type.shape)} and "
                                 f"{list(op.operands[1].type.shape)} needs {len(axes)} axes; the C kernel has 4")
    axes = [(1, 0, 0)] * (4 - len(axes)) + axes
    fields = {f"out_d{i}": a[0] for i, a in enumerate(axes)}
    fields.update({f"in1_s{i}": a[1] for i, a in enumerate(axes)})
    fields.update({f"in2_s{i}": a[2] for i, a in enumerate(axes)})
    return fields


def add_tables(p: AddParams) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The tables, ``fast_half`` and ``fast_sign`` of ``mcc_add_s8_lut`` (``runtime_c/mcc_elementwise.c``).

    Table k holds, for every int8 value ``x`` at index ``x & 0xFF``, twice TFLite's rescaled input
    ``MultiplyByQuantizedMultiplier((x - zp_k) << left_shift, m_k, shift_k)``, computed by the interpreter's own
    arithmetic, so the kernel's ``(t1[a] + t2[b]) / 2`` is the reference's sum exactly. ``fast_half`` is
    ``2^(r-1) + out_zp * 2^r`` (r = -output_shift) when the kernel's one-step requantization applies: r >= 1, the
    doubled sum fits int32 (|t1| + |t2| < 2^31) and the rounding constant keeps SMMLAR's 64-bit sum in range
    (|fast_half| < 2^30); otherwise 0, and the kernel requantizes the sum with TFLite's own routine.

    An add has only 65,536 input pairs, so the one-step form is also checked on all of them against the
    interpreter's :func:`~compiler.ops.elementwise.add_kernel` (a failure is a compiler bug), and ``fast_sign`` is
    0 only when the form without the rounding fix of negative sums gives every pair's result too.
    """
    x = np.arange(256, dtype=np.int64)
    x = np.where(x > 127, x - 256, x)  # the int8 value of each table index
    tables = []
    for zp, m, sh in ((p.input1_zero_point, p.input1_multiplier, p.input1_shift),
                      (p.input2_zero_point, p.input2_multiplier, p.input2_shift)):
        scaled = multiply_by_quantized_multiplier((x - zp) * (1 << p.left_shift), m, sh)
        tables.append(2 * np.asarray(scaled, dtype=np.int64))
    t1, t2 = tables
    if int(np.abs(t1).max()) + int(np.abs(t2).max()) >= 1 << 31:
        raise UnsupportedOpError("the rescaled add inputs exceed the int32 range")  # impossible for TFLite's m < 1
    r = -p.output_shift
    half = (1 << (r - 1)) + p.output_zero_point * (1 << r) if r >= 1 else 0
    if not -(1 << 30) < half < (1 << 30):
        half = 0
    if half == 0:
        return t1.astype(np.int32), t2.astype(np.int32), 0, 1
    want = add_kernel(p, x[:, None], x[None, :])
    acc2 = t1[:, None] + t2[None, :]
    t = ((acc2 * p.output_multiplier + (1 << 31)) >> 32) + half  # SMMLAR
    fast = [np.clip(((t + (acc2 >> 31) if sign else t) >> r), p.act_min, p.act_max) for sign in (0, 1)]
    if not np.array_equal(fast[1], want):
        raise AssertionError("mcc_add_s8_lut's requantization differs from TFLite's")  # the proof above is wrong
    return t1.astype(np.int32), t2.astype(np.int32), half, int(not np.array_equal(fast[0], want))


ADD_STANDIN = "defined(MCC_ADD_NO_TABLES)"
"""When the C compiles :func:`add_standin` instead of an add table: only when the build defines
``MCC_ADD_NO_TABLES`` (to save 1 KB of flash per table), so that the report's flash figures, which count the
tables, stay a lower bound of the build's read-only data at every optimisation level. Neither -Os nor mcc's own
fallback to the byte GEMM layouts for lack of flash (:meth:`~backends.c.lower.Program.use_narrow_gemm`) drops
them."""


def add_standin(table: np.ndarray, zp: int, m: int, shift: int) -> np.ndarray:
    """What a build with ``MCC_ADD_NO_TABLES`` compiles instead of an :func:`add_tables` table:
    ``{3, -zp, mh, ml, h, e, sign}``, the constants of ``mcc_add_rescale`` (``runtime_c/mcc_elementwise.c``) that
    compute the table's entries (halved) with 32-bit integer arithmetic, when that gives all 256 of them; else
    ``{1}``, and the kernel runs the generic ``mcc_add_s8``. Word 0 is odd: table words are all even, so the
    kernel tells the two apart."""
    e = -shift
    if not 0 <= e <= 31 or m < 0:
        return np.array([1], np.int32)
    mh, ml = m >> 11, m & 0x7FF
    h, sign = (1 << (e - 1), -1) if e >= 1 else (0, 0)
    a = np.arange(256, dtype=np.int64)
    x = np.where(a > 127, a - 256, a) - zp
    terms = [x * mh, (x * ml + 1024) >> 11]
    total = terms[0] + terms[1] + h + np.where(x < 0, sign, 0)
    fits = all(int(np.abs(v).max()) < 1 << 31 for v in (*terms, total, x * ml + 1024))
    if not fits or not np.array_equal(2 * (total >> e), table.astype(np.int64)):
        return np.array([1], np.int32)
    return np.array([3, -zp, mh, ml, h, e, sign], np.int32)


@emitter("nn.add")
def add(op: Op, ctx: LowerContext) -> None:
    """TFLite's 8-bit ADD with the interpreter's :class:`~compiler.ops.elementwise.AddParams`; operands of the
    result's shape take the table kernel (:func:`add_tables`), broadcasts the generic one."""
    a, b = op.operands
    y = op.result
    _require_int8(op, [b])
    p = add_params(a.type, b.type, y.type, act_range_int(op, y.type))
    strides = broadcast_strides(op)
    same = a.type.shape == b.type.shape == y.type.shape
    t1, t2, half, sign = add_tables(p) if same else (None, None, 0, 1)
    params = ctx.params(
        "mcc_add_params", **strides, in1_offset=-p.input1_zero_point, in2_offset=-p.input2_zero_point,
        left_shift=p.left_shift, in1_mult=p.input1_multiplier, in1_shift=p.input1_shift,
        in2_mult=p.input2_multiplier, in2_shift=p.input2_shift, out_mult=p.output_multiplier,
        out_shift=p.output_shift, out_zp=p.output_zero_point, act_min=p.act_min, act_max=p.act_max,
        fast_half=half, fast_sign=sign)
    if t1 is None or t2 is None:
        ctx.call("mcc_add_s8", [params, _source(ctx, a), _source(ctx, b), ctx.act(y)], "mcc_elementwise.c")
        return
    # equal tables (the tiles of one add, adds of equal quantization, both inputs alike) are emitted once; a
    # build with MCC_ADD_NO_TABLES compiles a stand-in instead (add_standin)
    cache: dict[bytes, str] = ctx.__dict__.setdefault("_add_tables", {})
    syms = []
    for t, zp, m, sh in ((t1, p.input1_zero_point, p.input1_multiplier, p.input1_shift),
                         (t2, p.input2_zero_point, p.input2_multiplier, p.input2_shift)):
        if t.tobytes() not in cache:
            cache[t.tobytes()] = ctx.weight(y, t, (ADD_STANDIN, add_standin(t, zp, m, sh)))
        syms.append(cache[t.tobytes()])
    ctx.call("mcc_add_s8_lut", [params, syms[0], syms[1], _source(ctx, a), _source(ctx, b), ctx.act(y)],
             "mcc_elementwise.c")


@emitter("nn.mul")
def mul(op: Op, ctx: LowerContext) -> None:
    """TFLite's 8-bit MUL with the interpreter's :class:`~compiler.ops.elementwise.MulParams`."""
    a, b = op.operands
    y = op.result
    _require_int8(op, [b])
    p = mul_params(a.type, b.type, y.type, act_range_int(op, y.type))
    params = ctx.params(
        "mcc_mul_params", **broadcast_strides(op), in1_offset=-p.input1_zero_point, in2_offset=-p.input2_zero_point,
        out_mult=p.output_multiplier, out_shift=p.output_shift, out_zp=p.output_zero_point, act_min=p.act_min,
        act_max=p.act_max)
    ctx.call("mcc_mul_s8", [params, _source(ctx, a), _source(ctx, b), ctx.act(y)], "mcc_elementwise.c")
