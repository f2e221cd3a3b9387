"""The int8 GEMM kernel (``runtime_c/mcc_gemm.c``) for ``nn.conv2d`` with one group and ``nn.fully_connected``.

Everything the kernel would otherwise do per inference is done here, once per layer:

- the weights ``w - w_zp`` are blocked by four output channels and, per group of four taps, paired as
  ``(k, k+2), (k+1, k+3)`` in 16-bit halves (the order SXTB16 unpacks input bytes in), or kept as bytes for the
  narrow layout a size-first build compiles instead (:func:`pack_weights`);
- the input offset is folded into the bias: ``bias + in_offset * sum_k w`` (int32, wrapping like the kernel);
- the requantization: for a layer whose every channel has an exact SMMLAR form, rows ``{m, h, r}`` and
  ``rq_fast = 1`` (:func:`fast_layer`); else per output channel the cheapest exact variant (:func:`requant_table`).
"""

from __future__ import annotations

import numpy as np

from compiler.ir import Op, Value
from compiler.quant import wrap_int32

NARROW = "defined(MCC_GEMM_NARROW)"
"""The C condition under which the weight file holds the byte layout instead of the 16-bit one."""


def _words(blocks: np.ndarray, tail: np.ndarray, narrow: bool) -> np.ndarray:
    """Packed words of channel blocks: ``blocks`` [B, nb, G, 4] (group taps), ``tail`` [B, nb, T] -> [B, words]."""
    b = blocks.astype(np.int64).transpose(0, 2, 1, 3)  # [B, G, nb, 4]
    if narrow:
        u = b & 0xFF
        words = u[..., 0] | (u[..., 1] << 8) | (u[..., 2] << 16) | (u[..., 3] << 24)  # [B, G, nb]
    else:
        u = b & 0xFFFF
        words = np.stack([u[..., 0] | (u[..., 2] << 16), u[..., 1] | (u[..., 3] << 16)], axis=-1)  # [B, G, nb, 2]
    nblk, g, nb, per = b.shape[0], b.shape[1], b.shape[2], 1 if narrow else 2
    words = words.reshape(nblk, g, nb, per)
    pairs = words[:, :g // 2 * 2].reshape(nblk, g // 2, 2, nb, per).transpose(0, 1, 3, 2, 4)  # per pair of groups,
    last = words[:, g // 2 * 2:]  # channel by channel; then an odd last group
    words = np.concatenate([pairs.reshape(nblk, -1), last.reshape(nblk, -1)], axis=1)
    t = (tail.astype(np.int64) & 0xFFFFFFFF).reshape(tail.shape[0], tail[0].size if tail.shape[0] else 0)
    return np.concatenate([words, t], axis=1)


def pack_weights(w: np.ndarray, depth: int, narrow: bool) -> np.ndarray:
    """Weights [C_out, K] (zero point removed) as the kernel reads them, int32 words: blocks of four output
    channels, then the last ``C_out % 4`` one by one; in each block, per pair of groups of four taps, every
    channel's words of the first group then of the second (two 16-bit pairs per group, or four bytes when
    ``narrow``), then an odd last group channel by channel, then the ``depth % 4`` tail taps, one word each."""
    co, k = w.shape
    full = np.zeros((co, depth), dtype=np.int64)
    full[:, :k] = w
    groups = depth // 4
    parts = []
    n4 = co // 4 * 4
    for lo, hi, nb in ((0, n4, 4), (n4, co, 1)):
        if hi == lo:
            continue
        sub = full[lo:hi].reshape((hi - lo) // nb, nb, depth)
        nblk = (hi - lo) // nb
        parts.append(_words(sub[:, :, :groups * 4].reshape(nblk, nb, groups, 4), sub[:, :, groups * 4:], narrow)
                     .reshape(-1))
    words = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    assert np.all((words >= 0) & (words < (1 << 32)))
    return words.astype(np.uint32).view(np.int32)


def fold_bias(bias: np.ndarray | None, w: np.ndarray, in_offset: int) -> np.ndarray:
    """``bias + in_offset * sum_k w`` per output channel, wrapped to int32 like the kernel's accumulator."""
    b = np.zeros(w.shape[0], dtype=np.int64) if bias is None else bias.astype(np.int64)
    return wrap_int32(b + in_offset * w.astype(np.int64).sum(axis=1)).astype(np.int32)


def requant_table(mult: np.ndarray, shift: np.ndarray, bias: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``{multiplier, shift, half}`` per output channel, choosing the exact requantization variant per channel.

    Fast (``half > 0``) when the multiplier is 0 (the result is 0 whatever the accumulator), or when every
    accumulator ``|bias + sum_k x*w| <= |bias| + 128 * sum_k |w|`` stays below 2^30 (so doubling it cannot
    overflow) and the shift is negative: ``{m, r, 2^(r-1)}`` with ``r = -shift`` (1 for a zero multiplier). Any
    other negative shift: ``{m, r, -2^(r-1)}``, both roundings in one 64-bit sum. A shift >= 0: ``{m, shift, 0}``,
    the generic MultiplyByQuantizedMultiplier."""
    m = mult.astype(np.int64)
    s = shift.astype(np.int64)
    bound = np.abs(bias.astype(np.int64)) + 128 * np.abs(w.astype(np.int64)).sum(axis=1)
    fast = (m == 0) | ((bound < (1 << 30)) & (s < 0))
    right = ~fast & (s < 0)
    r = np.where(m == 0, 1, np.where(fast | right, -s, s))
    half = np.where(fast | right, np.int64(1) << np.where(fast | right, r - 1, 0), 0)
    return np.stack([m, r, np.where(right, -half, half)], axis=1).astype(np.int32).reshape(-1)


def fast_layer(mult: np.ndarray, shift: np.ndarray, bias: np.ndarray, w: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """Requantization rows ``{m, h, r}`` and bias for a layer whose every channel the kernel requantizes with the
    fast formula ``((SMMLAR(2 acc, m, h) + (acc < 0 ? -1 : 0)) >> r) + zp`` (``rq_fast = 1``), or None when some
    channel has no exact encoding. Every accumulator of a channel lies in ``[bias - D, bias + D]`` with
    ``D = 128 * sum_k |w|``.

    A channel :func:`requant_table` makes fast keeps its row and bias. Any other channel whose accumulators cannot
    wrap and whose result, MultiplyByQuantizedMultiplier of the accumulator, takes at most two consecutive values
    ``c`` and ``c + 1`` over that range (a near-dead channel: a large bias, a tiny scale) becomes a step: the
    smallest accumulator ``T`` giving the larger value (the range's low end when the result is constant) moves
    into the bias, ``bias - T``, and the row ``{0, c + 1, 0}`` gives ``c + 1`` when ``acc - T >= 0`` and ``c``
    below; ``|bias - T| + D`` must stay below 2^30 for the doubling."""
    from compiler.quant import multiply_by_quantized_multiplier

    rows = requant_table(mult, shift, bias, w).reshape(-1, 3).astype(np.int64)
    new_bias = bias.astype(np.int64).copy()
    d = 128 * np.abs(w.astype(np.int64)).sum(axis=1)
    for c in np.nonzero(rows[:, 2] <= 0)[0]:
        b = int(bias[c])
        lo, hi = b - int(d[c]), b + int(d[c])
        if lo < -(1 << 31) or hi >= (1 << 31) or 2 * int(d[c]) >= (1 << 30):
            return None

        def value(a: int, c: int = int(c)) -> int:
            return int(multiply_by_quantized_multiplier(a, int(mult[c]), int(shift[c])))

        v_lo, v_hi = value(lo), value(hi)
        if v_hi == v_lo:
            t = lo
        elif v_hi == v_lo + 1:  # the result is non-decreasing in the accumulator: bisect for the step
            a, z = lo, hi  # value(a) == v_lo, value(z) == v_hi
            while z - a > 1:
                mid = (a + z) // 2
                a, z = (mid, z) if value(mid) == v_lo else (a, mid)
            t = z
        else:
            return None
        new_bias[c] = b - t
        rows[c] = (0, 0, v_hi)
    return rows[:, [0, 2, 1]].astype(np.int32).reshape(-1), new_bias.astype(np.int32)


def fold_zero_point(rows: np.ndarray, zp: int) -> np.ndarray | None:
    """Fast rows ``{m, h, r}`` (:func:`fast_layer`) with the output zero point folded into ``h``: ``h + zp * 2^r``,
    so that ``(SMMLAR(2 acc, m, h') + (acc < 0 ? -1 : 0)) >> r`` is the requantized value plus ``zp`` (the high word
    of SMMLAR adds ``h'`` exactly, and ``floor((t + zp * 2^r) / 2^r) = floor(t / 2^r) + zp``), and the kernel is
    given a zero point of 0. None when some ``|h'|`` reaches 2^30 - 1: the rounded product ``SMMLAR(2 acc, m, 0)``
    of an accumulator below 2^30 is at most 2^30 in magnitude, so the sum could wrap."""
    r = rows.reshape(-1, 3).astype(np.int64)
    h = r[:, 1] + (np.int64(zp) << r[:, 2])
    if np.any(np.abs(h) >= (1 << 30) - 1):
        return None
    r[:, 1] = h
    return r.astype(np.int32).reshape(-1)


FIXED_MAX_GROUPS = 160
"""The deepest layer (in groups of four taps) given an instance of fixed shape. Up to 64 groups its K loop is
straight code (84 bytes per pair of groups); deeper, a loop of eight groups."""


def fixed_shape(op: Op, depth: int, geometry: dict[str, int], rq_fast: int, act: tuple[int, int],
                byte_column: bool) -> tuple[int, int, int, int, int, int, int] | None:
    """The ``(groups, out_c, folded, k_h, k_w, in_c, column)`` key of the instance of fixed shape ``mcc_gemm.c``
    compiles for a layer (``MCC_GEMM_SHAPES``, ``mcc_gemm_fixed_layer``), or None when the layer runs the generic
    code. The instances cover the convolutions of ``mcc_gemm_mode`` 1 and 2 (fast requantization, the whole int8
    range, ``out_c`` a multiple of 4) at most :data:`FIXED_MAX_GROUPS` groups deep: a 1x1 window read in place
    (``k_h`` 0 in the key; ``in_c`` a multiple of 4), or an im2col window of dilation 1. ``column``: 0 an int16
    column, 1 raw bytes (``byte_column``), 2 an int16 column kept as a ring of window-column slots (stride_w 1 and
    :func:`slots_fit`; the weights in :func:`slot_order`)."""
    from compiler.ops.conv import gemm_conv_direct

    groups, out_c = depth // 4, geometry["out_c"]
    if (op.kind != "nn.conv2d" or not rq_fast or act != (-128, 127) or out_c % 4 or depth % 4
            or not 0 < groups <= FIXED_MAX_GROUPS):
        return None
    folded, column = int(rq_fast == 2), int(byte_column)
    if gemm_conv_direct(op):
        return (groups, out_c, folded, 0, 0, 0, column) if geometry["in_c"] == depth else None
    if geometry["dil_h"] != 1 or geometry["dil_w"] != 1:
        return None
    kh, kw, ic = geometry["k_h"], geometry["k_w"], geometry["in_c"]
    if not byte_column and geometry["stride_w"] == 1 and slots_fit(kh, kw, ic):
        column = 2  # the column as a ring of window-column slots
    return groups, out_c, folded, kh, kw, ic, column


def interleaved(shape: tuple[int, int, int, int, int, int, int]) -> bool:
    """Whether the instance of fixed shape ``shape`` (:func:`fixed_shape`) reads its weights interleaved with the
    bias and requantization rows (:func:`interleave_block_words`): every instance that runs its blocks of four
    output channels on an int16 column (``mcc_gemm_fixed_blocks``), not a byte column nor the eight-channel pixel
    read in place (``mcc_gemm_fixed_g2``). ``mcc_gemm_fixed_layer`` makes the same choice."""
    groups, _, _, k_h, _, _, column = shape
    return column != 1 and not (k_h == 0 and groups == 2)


def slots_fit(k_h: int, k_w: int, in_c: int) -> bool:
    """Whether a window on an int16 column can be kept as one slot per window column (``mcc_gemm_fixed_slots``,
    ``mcc_gemm_slots_fit``): its columns whole pairs of groups (``in_c`` a multiple of 4, ``k_h * in_c`` of 8), at
    most 16 of them."""
    return k_w <= 16 and in_c % 4 == 0 and (k_h * in_c) % 8 == 0


def slot_order(k_h: int, k_w: int, in_c: int) -> list[int]:
    """The natural tap index (``(ky * k_w + kx) * in_c + c``) of every position of a column kept as slots (the
    column kind 2 of :func:`fixed_shape`):
    window column by window column, each its rows top to bottom."""
    return [(ky * k_w + kx) * in_c + c for kx in range(k_w) for ky in range(k_h) for c in range(in_c)]


def interleave_block_words(wide: np.ndarray, bias: np.ndarray, rq: np.ndarray, out_c: int) -> np.ndarray:
    """The weight array of an :func:`interleaved` instance: per block of four output channels its four bias words,
    its 16-bit weight words (:func:`pack_weights`, ``out_c`` a multiple of 4 and no tail taps) and its four
    requantization rows ``{m, h, r}``, so the kernel walks one pointer through all three."""
    blocks = out_c // 4
    w = np.asarray(wide, dtype=np.int32).reshape(blocks, -1)
    return np.concatenate([np.asarray(bias, dtype=np.int32).reshape(blocks, 4), w,
                           np.asarray(rq, dtype=np.int32).reshape(blocks, 12)], axis=1).reshape(-1)


def emit_gemm(op: Op, ctx, weight: Value, w2d: np.ndarray, depth: int, in_offset: int,
              geometry: dict[str, int], out_zp: int, act: tuple[int, int], scratch: str,
              row_split: list[int] | None = None) -> None:
    """One ``mcc_conv_gemm_s8`` call for ``op`` with weights ``w2d`` [C_out, K] (zero point removed, taps in window
    order). ``row_split``: the natural tap index of every position of a row-split column
    (``compiler.ops.conv.gemm_row_split``), which the 16-bit layout's weights follow; the byte layout (size-first
    builds, ``MCC_GEMM_NARROW``) keeps window order, its kernel gathering such windows as an int8 column."""
    from compiler.ops.conv import requant_multipliers

    bias = op.operands[2].const_value if len(op.operands) > 2 else None
    if len(op.operands) > 2 and bias is None:
        from compiler.errors import UnsupportedOpError

        raise UnsupportedOpError(f"{op.label}: the bias must be a constant")
    folded = plain = fold_bias(bias, w2d, in_offset)
    mult, shift = requant_multipliers(op)
    small = small_requant(mult, shift, plain, w2d, out_zp)  # a size-first build's table, with the plain bias
    # fully connected layers and byte_column convs multiply raw input bytes, other convs an int16 column
    byte_column = op.kind == "nn.fully_connected" or bool(op.attrs.get("byte_column", False))
    fast = fast_layer(mult, shift, folded, w2d)
    rq, folded = (requant_table(mult, shift, folded, w2d), folded) if fast is None else fast
    rq_fast = int(fast is not None)
    if fast is not None and (rows := fold_zero_point(rq, out_zp)) is not None:
        rq, out_zp, rq_fast = rows, 0, 2  # the kernel then adds no zero point
    params = ctx.params("mcc_gemm_params", ("out_zp", "rq_fast"), **geometry, depth=depth, pad_value=-in_offset,
                        out_zp=out_zp, act_min=act[0], act_max=act[1], rq_fast=rq_fast,
                        column=1 if byte_column else 2 if row_split is not None else 0)
    if (shape := fixed_shape(op, depth, geometry, rq_fast, act, byte_column)) is not None:
        ctx.program.gemm_shapes.add(shape)
    il = shape is not None and interleaved(shape)
    # a fast layer's 16-bit weights and bias are doubled: its accumulators are the 2 acc the requantization
    # multiplies (|acc| < 2^30, fast_layer), so the kernel does not shift them; the byte layout keeps them as they are
    scale = 2 if rq_fast else 1
    wide_w = (w2d if row_split is None else w2d[:, row_split]) * scale
    assert np.all(np.abs(wide_w) < 1 << 15)
    wide = pack_weights(wide_w, depth, narrow=False)
    bias2 = (folded.astype(np.int64) * scale).astype(np.int32)
    # an interleaved instance finds the bias and requantization rows among its weights: its tables are placeholders
    unused = np.zeros(1, dtype=np.int32) if il else None
    fixed = None
    if shape is not None and il:
        slotted = wide
        if shape[6] == 2:  # slots of window columns
            assert row_split is None and depth == w2d.shape[1]
            slotted = pack_weights(wide_w[:, slot_order(shape[3], shape[4], shape[5])], depth, narrow=False)
        fixed = interleave_block_words(slotted, bias2, rq, geometry["out_c"])
    wsym = ctx.weight(weight, wide, (NARROW, pack_weights(w2d, depth, narrow=True)), fixed=fixed)
    bias_sym = ctx.table("bias", bias2, None if np.array_equal(folded, plain) and scale == 1 else plain,
                         (NARROW, folded) if scale == 2 else None, fixed=unused)
    ctx.call("mcc_conv_gemm_s8", [params, ctx.cact(op.operands[0]), wsym, bias_sym,
                                  ctx.table("requant", rq, small, fixed=unused), ctx.act(op.result), scratch],
             "mcc_gemm.c")


SIZE_FIRST = "defined(MCC_SIZE_FIRST)"
"""The C condition of a size-first build (GCC's -Os, see ``runtime_c/mcc_kernels.h``): its GEMM and depthwise
kernels read the packed requantization of :func:`small_requant` and the plain folded bias."""

SMALL_WIDE = 1 << 16
"""Header flag of a :func:`small_requant` table whose shifts follow the multipliers as bytes."""


def small_requant(mult: np.ndarray, shift: np.ndarray, bias: np.ndarray, w: np.ndarray, zp: int) -> np.ndarray:
    """The size-first requantization table of a layer (int32 words), TFLite's MultiplyByQuantizedMultiplier of
    ``(multiplier, shift)`` per output channel, decoded by ``mcc_rq_small`` (``runtime_c/mcc_kernels.h``):

    - word 0, the header: the base shift ``s0`` (the smallest) in bits 0-7 (int8), the output zero point in bits 8-15
      (int8), :data:`SMALL_WIDE` in bit 16 for the wide form, else in bits 17-19 ``hb``, how many more bits of
      ``shift - s0`` each channel has (0 when the shifts span at most 4 values, 2 up to 16, 4 up to 64);
    - packed form: one word per channel, the multiplier's bits 0-29 with the low two bits of ``shift - s0`` in bits
      30-31 (a nonzero TFLite multiplier lies in ``[2^30, 2^31)``: bit 30 is 1, bit 31 is 0, both implied); then,
      when ``hb > 0``, the higher bits of ``shift - s0``, ``hb`` bits per channel packed into bytes from bit 0 (so 4.25
      or 4.5 bytes per channel). A zero multiplier (its result 0 for every accumulator) is stored as ``2^30`` with
      the shift ``s0``, which is exact only when that gives 0 at both ends of the channel's accumulator range
      ``bias +- 128 * sum |w|`` (the result is monotonic in the accumulator for a right shift); otherwise the wide
      form;
    - wide form: the multipliers as they are, one word per channel, then the shifts as int8, four to a word.

    About 4 bytes per channel instead of the speed-first rows' 12."""
    from compiler.quant import multiply_by_quantized_multiplier

    m = np.asarray(mult, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    nz = m != 0
    assert np.all((m[nz] >= 1 << 30) & (m[nz] < 1 << 31)) and np.all(s >= -31)  # quantize_multiplier's range
    if np.any(s > 31):
        from compiler.errors import UnsupportedOpError

        raise UnsupportedOpError(f"a requantization multiplier of 2^{int(s.max())} or more: no C kernel shifts "
                                 f"a 32-bit accumulator that far")
    s0 = int(s[nz].min()) if nz.any() else 0
    span = int(s[nz].max()) - s0 + 1 if nz.any() else 1
    hb = 0 if span <= 4 else 2 if span <= 16 else 4
    packed = True
    if not nz.all():
        d = 128 * np.abs(w.astype(np.int64)).sum(axis=1)
        b = bias.astype(np.int64)
        for c in np.nonzero(~nz)[0]:
            lo, hi = int(b[c] - d[c]), int(b[c] + d[c])
            if s0 > 0 or lo < -(1 << 31) or hi >= (1 << 31) or any(
                    int(multiply_by_quantized_multiplier(a, 1 << 30, s0)) != 0 for a in (lo, hi)):
                packed = False
                break
    head = (s0 & 0xFF) | ((int(zp) & 0xFF) << 8) | ((hb << 17) if packed else SMALL_WIDE)
    if packed:
        delta = np.where(nz, s - s0, 0)
        words = np.where(nz, (m & 0x3FFFFFFF) | ((delta & 3) << 30), 0)
        parts = [np.array([head]), words]
        if hb:
            high = (delta >> 2).astype(np.int64)
            per = 8 // hb
            high = np.concatenate([high, np.zeros(-len(high) % (4 * per), np.int64)]).reshape(-1, 4, per)
            byte = (high << (hb * np.arange(per))).sum(axis=2)  # [words, 4]
            parts.append(byte[:, 0] | (byte[:, 1] << 8) | (byte[:, 2] << 16) | (byte[:, 3] << 24))
        return np.concatenate(parts).astype(np.int64).astype(np.uint32).view(np.int32)
    sb = (s & 0xFF).astype(np.uint8)
    sb = np.concatenate([sb, np.zeros(-len(sb) % 4, np.uint8)])
    shifts = sb.view("<u4").astype(np.int64)
    return np.concatenate([[head], m, shifts]).astype(np.int64).astype(np.uint32).view(np.int32)


def small_requant_decode(table: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(multipliers, shifts, zero point)`` as ``mcc_rq_small`` reads them from a :func:`small_requant` table (a
    zero multiplier of the packed form comes back as ``2^30`` with the base shift)."""
    t = np.asarray(table).astype(np.int64) & 0xFFFFFFFF
    head = int(t[0])
    s0 = (head & 0xFF) - ((head & 0x80) << 1)
    zp = ((head >> 8) & 0xFF) - ((head & 0x8000) >> 7)
    words = t[1:1 + channels]
    rest = t[1 + channels:].astype("<u4").view(np.uint8).astype(np.int64)
    if head & SMALL_WIDE:
        m = np.where(words >= 1 << 31, words - (1 << 32), words)
        sb = rest[:channels]
        return m, np.where(sb >= 128, sb - 256, sb), zp
    hb = (head >> 17) & 7
    delta = words >> 30
    if hb:
        bit = np.arange(channels) * hb
        delta = delta | (((rest[bit >> 3] >> (bit & 7)) & ((1 << hb) - 1)) << 2)
    return (words & 0x3FFFFFFF) | (1 << 30), s0 + delta, zp
