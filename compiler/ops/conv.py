"""Convolution-like ops: ``nn.conv2d``, ``nn.depthwise_conv2d``, ``nn.fully_connected``.

Layouts follow TFLite: activations NHWC, conv weights OHWI (``[C_out, KH, KW, C_in / groups]``), depthwise weights
``[1, KH, KW, C_in * depth_multiplier]``, fully-connected weights ``[C_out, K]``. Quantized ops compute
``acc = sum((x - x_zp) * (w - w_zp)) + bias`` in int32 and requantize per output channel with the multiplier
``x_scale * w_scale[c] / y_scale``, exactly as TFLite's integer kernels do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compiler.ir import DType, Op, Value
from compiler.opdef import AttrKind, AttrSpec, Inferred, OpDef, attr, register_op
from compiler.ops._common import (
    ACT_ATTRS,
    act_float,
    act_range_int,
    check_quant_consistency,
    conv_out_size,
    per_tensor,
    require,
)
from compiler.overlap import AccessMap, InPlace, overlap_distance_of, window_access
from compiler.quant import quantize_multipliers, requantize, wrap_int32

WINDOW_ATTRS = (
    AttrSpec("strides", AttrKind.INTS, (1, 1), "(stride_h, stride_w)"),
    AttrSpec("dilations", AttrKind.INTS, (1, 1), "(dilation_h, dilation_w)"),
    AttrSpec("pads", AttrKind.INTS, (0, 0, 0, 0), "(top, left, bottom, right) zero padding in real units"),
)


# -- shared numerics ---------------------------------------------------------------------------------------------
def conv_accumulate(x: np.ndarray, w: np.ndarray, strides: Sequence[int], dilations: Sequence[int],
                    pads: Sequence[int], groups: int) -> np.ndarray:
    """Grouped NHWC convolution of ``x`` [N,H,W,C] with ``w`` [O,KH,KW,C/groups] in float64.

    Used for float ops and, exactly, for integer ops: every partial sum of int8/int16 products stays far below
    2^53, so float64 accumulation gives the same integers as an int32 accumulator (the caller converts back).
    """
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = conv_out_size(h, kh, sh, dh, pt, pb)
    ow = conv_out_size(wd, kw, sw, dw, pl, pr)
    wf = w.astype(np.float64)
    out = np.zeros((n, oh, ow, o), dtype=np.float64)
    og = o // groups
    depthwise = cg == 1 and groups == c and groups > 1
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
            if depthwise:
                out += np.repeat(patch, og, axis=3) * wf[:, i, j, 0]
                continue
            for g in range(groups):
                out[..., g * og:(g + 1) * og] += patch[..., g * cg:(g + 1) * cg] @ wf[g * og:(g + 1) * og, i, j, :].T
    return out


def _weight_zero_points(w: Value, axis: int) -> np.ndarray:
    q = w.type.quant
    assert q is not None
    zp = np.asarray(q.zero_point, dtype=np.int64)
    view = [1] * w.type.rank
    view[axis] = zp.size
    return zp.reshape(view)


def requant_multipliers(op: Op) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (multiplier, shift) of a quantized conv/depthwise/fc op, as its kernels use them."""
    x, w, y = op.operands[0], op.operands[1], op.results[0]
    return _channel_multipliers(op, x, w, y, y.type.shape[-1])


def _channel_multipliers(op: Op, x: Value, w: Value, y: Value, channels: int) -> tuple[np.ndarray, np.ndarray]:
    xs, _ = per_tensor(x, op, "input")
    ys, _ = per_tensor(y, op, "result")
    q = w.type.quant
    assert q is not None
    ws = q.scale if len(q.scale) > 1 else q.scale * channels
    return quantize_multipliers([xs * s / ys for s in ws])


def _finish(op: Op, acc: np.ndarray, inputs: Sequence[np.ndarray], x: Value, w: Value, channel_axis: int
            ) -> np.ndarray:
    """Add the bias and produce the result: clamp for float, requantize per channel for integer types."""
    y = op.results[0]
    channels = acc.shape[-1]
    if x.type.dtype.is_float:
        if len(inputs) > 2:
            acc = acc + inputs[2].astype(np.float64)
        return act_float(op, acc)
    acc64 = np.rint(acc).astype(np.int64)
    if len(inputs) > 2:
        acc64 = acc64 + inputs[2].astype(np.int64)
    acc64 = wrap_int32(acc64)  # the accumulator is int32 in TFLite's kernels and ours: it wraps, it does not grow
    mult, shift = _channel_multipliers(op, x, w, y, channels)
    _, yzp = per_tensor(y, op, "result")
    lo, hi = act_range_int(op, y.type)
    return requantize(acc64, mult, shift, yzp, lo, hi).astype(y.type.dtype.np)


def _offsets(op: Op, inputs: Sequence[np.ndarray], x: Value, w: Value, w_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs with zero points removed (integer) or as float64 (float)."""
    if x.type.dtype.is_float:
        return inputs[0].astype(np.float64), inputs[1].astype(np.float64)
    _, xzp = per_tensor(x, op, "input")
    return (inputs[0].astype(np.int64) - xzp, inputs[1].astype(np.int64) - _weight_zero_points(w, w_axis))


def _verify_weights_and_bias(op: Op, channel_axis: int, channels: int) -> None:
    x, w = op.operands[0], op.operands[1]
    check_quant_consistency(op, [x, w, op.results[0]])
    require(op.results[0].type.dtype == x.type.dtype, op, "result must have the input's element type")
    if x.type.dtype.is_float:
        require(w.type.dtype is DType.FLOAT32, op, "float ops take float weights")
    else:
        require(not w.type.dtype.is_float and w.type.quant is not None, op, "quantized ops take quantized weights")
        q = w.type.quant
        assert q is not None
        require(q.axis is None or (q.axis == channel_axis and len(q.scale) == channels), op,
                f"per-channel weight quantization must be along axis {channel_axis} with {channels} scales")
        per_tensor(x, op, "input")
        per_tensor(op.results[0], op, "result")
    if len(op.operands) > 2:
        b = op.operands[2]
        require(b.type.shape == (channels,), op, f"bias must have shape ({channels},), got {b.type.shape}")
        want = DType.FLOAT32 if x.type.dtype.is_float else DType.INT32
        require(b.type.dtype is want, op, f"bias must be {want.value}")


# -- nn.conv2d -------------------------------------------------------------------------------------------------
def _window_output_hw(op: Op) -> tuple[int, int]:
    """Output height and width of a conv/depthwise op from its input, kernel (weight dims 1, 2) and window attrs."""
    x, w = op.operands[0].type, op.operands[1].type
    sh, sw = attr(op, "strides")
    dh, dw = attr(op, "dilations")
    pt, pl, pb, pr = attr(op, "pads")
    return (conv_out_size(x.shape[1], w.shape[1], sh, dh, pt, pb),
            conv_out_size(x.shape[2], w.shape[2], sw, dw, pl, pr))


def _conv_infer(op: Op) -> list[Inferred]:
    x, w = op.operands[0].type, op.operands[1].type
    return [Inferred((x.shape[0], *_window_output_hw(op), w.shape[0]), x.dtype)]


def _check_window(op: Op) -> None:
    require(len(attr(op, "strides")) == 2 and min(attr(op, "strides")) >= 1, op, "strides must be 2 values >= 1")
    require(len(attr(op, "dilations")) == 2 and min(attr(op, "dilations")) >= 1, op,
            "dilations must be 2 values >= 1")
    require(len(attr(op, "pads")) == 4 and min(attr(op, "pads")) >= 0, op, "pads must be 4 values >= 0")


def _conv_verify(op: Op) -> None:
    x, w = op.operands[0].type, op.operands[1].type
    require(x.rank == 4 and w.rank == 4, op, "input and weight must be 4-D (NHWC, OHWI)")
    _check_window(op)
    g = attr(op, "groups")
    require(g >= 1 and x.shape[3] % g == 0 and w.shape[0] % g == 0, op,
            "groups must divide the input and output channels")
    require(w.shape[3] * g == x.shape[3], op,
            f"weight has {w.shape[3]} input channels per group, input has {x.shape[3]} over {g} groups")
    _verify_weights_and_bias(op, 0, w.shape[0])


def _conv_macs(op: Op) -> int:
    y, w = op.results[0].type, op.operands[1].type
    return y.num_elements * w.shape[1] * w.shape[2] * w.shape[3]


def _conv_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x, w = op.operands[0], op.operands[1]
    xv, wv = _offsets(op, inputs, x, w, 0)
    acc = conv_accumulate(xv, wv, attr(op, "strides"), attr(op, "dilations"), attr(op, "pads"), attr(op, "groups"))
    return [_finish(op, acc, inputs, x, w, 3)]


def gemm_conv(op: Op) -> bool:
    """True when the int8 GEMM kernel (``runtime_c/mcc_gemm.c``) runs this ``nn.conv2d``: int8 input, weights and
    result, one group, symmetric weights (every weight zero point 0). Other convolutions use ``mcc_conv2d.c``."""
    x, w, y = op.operands[0].type, op.operands[1].type, op.results[0].type
    if not (x.dtype is DType.INT8 and w.dtype is DType.INT8 and y.dtype is DType.INT8):
        return False
    q = w.quant
    return attr(op, "groups") == 1 and q is not None and all(z == 0 for z in q.zero_point)


def gemm_conv_direct(op: Op) -> bool:
    """A GEMM convolution that reads its input pixels in place (``mcc_gemm_direct`` in C): a 1x1 window, no top or
    left padding, every output pixel on an input pixel. Any other window goes through an im2col column."""
    x, y, w = op.operands[0].type, op.results[0].type, op.operands[1].type
    sh, sw = attr(op, "strides")
    pt, pl = attr(op, "pads")[:2]
    return (w.shape[1] == w.shape[2] == 1 and pt == 0 and pl == 0 and (y.shape[1] - 1) * sh < x.shape[1]
            and (y.shape[2] - 1) * sw < x.shape[2])


def gemm_byte_column(op: Op) -> bool:
    """True when the GEMM kernel multiplies this conv's raw input bytes (its ``byte_column`` attribute, set by
    ``plan-memory`` where the int16 column would raise the peak): no int16 column, so less scratch, but slower."""
    return bool(op.attrs.get("byte_column", False))


def gemm_row_split(op: Op) -> bool:
    """True when the GEMM kernel lays this conv's int16 column out row-split (``row_split`` in C): an im2col window
    (not read in place, no ``byte_column``) whose rows of ``k_w * C_in`` taps are no whole number of groups of four
    and are contiguous in NHWC (``dil_w == 1``). The column then holds each window row's whole groups first (row
    after row), then the rows' last ``k_w * C_in % 4`` taps packed together (:func:`gemm_row_split_order`), so an
    interior pixel's column is expanded straight from the input rows (a first layer with 1-3 input channels)."""
    w = op.operands[1].type
    return (gemm_conv(op) and not gemm_byte_column(op) and not gemm_conv_direct(op)
            and (w.shape[2] * w.shape[3]) % 4 != 0 and attr(op, "dilations")[1] == 1)


def gemm_row_split_order(k_h: int, k_w: int, c_in: int) -> list[int]:
    """The natural (``ky, kx, c``) tap index of every position of a row-split column (:func:`gemm_row_split`)."""
    r = k_w * c_in
    f = r // 4 * 4
    return ([ky * r + j for ky in range(k_h) for j in range(f)]
            + [ky * r + j for ky in range(k_h) for j in range(f, r)])


def gemm_conv_depth(op: Op) -> int:
    """Weights per output channel as the GEMM kernel lays them out: the window's ``k_h * k_w * C_in`` taps rounded
    up to a multiple of 4 (zero weights past the last tap); ``C_in`` itself for a pixel read in place as bytes
    (``byte_column``, direct: the kernel must not read past the pixel)."""
    w = op.operands[1].type
    k = w.shape[1] * w.shape[2] * w.shape[3]
    return k if gemm_byte_column(op) and gemm_conv_direct(op) else (k + 3) // 4 * 4


def conv_scratch_bytes(op: Op) -> int:
    """Scratch of the int8 conv kernels, mirroring their ``*_scratch_bytes`` functions in C. The GEMM kernel
    (``mcc_conv_gemm_s8_scratch_bytes`` in ``runtime_c/mcc_gemm.c``): the int16 column of :func:`gemm_conv_depth`
    values every output pixel is expanded into (a window whose rows are not whole groups of four taps is first
    gathered as an int8 column into its upper half); with ``byte_column`` (:func:`gemm_byte_column`) none for a
    pixel read in place, else an int8 im2col column of :func:`gemm_conv_depth` bytes. The general kernel
    (``mcc_conv2d_s8_scratch_bytes`` in ``runtime_c/mcc_conv2d.c``): one int16 column of ``k_h * k_w * C_in /
    groups`` values when the window has more than one tap."""
    x, w = op.operands[0].type, op.operands[1].type
    if x.dtype is not DType.INT8:
        return 0
    if gemm_conv(op):
        if gemm_byte_column(op):
            return 0 if gemm_conv_direct(op) else gemm_conv_depth(op)
        return 2 * gemm_conv_depth(op)
    if w.shape[1] * w.shape[2] == 1:
        return 0
    return w.shape[1] * w.shape[2] * w.shape[3] * 2


CONV2D = register_op(OpDef(
    name="nn.conv2d",
    summary="2-D convolution, NHWC input, OHWI weights, optional bias, optional fused clamp",
    operands=("input", "weight", "bias?"),
    attrs=(*WINDOW_ATTRS, AttrSpec("groups", AttrKind.INT, 1, "channel groups"), *ACT_ATTRS,
           AttrSpec("byte_column", AttrKind.BOOL, False, "the GEMM kernel reads int8 input bytes instead of an int16 "
                    "column (less scratch, slower; set by plan-memory where that lowers the peak)")),
    infer=_conv_infer, verify=_conv_verify, macs=_conv_macs, reference=_conv_ref, overlap=window_access,
    scratch=conv_scratch_bytes,
))


# -- nn.depthwise_conv2d -------------------------------------------------------------------------------------------
def _dw_infer(op: Op) -> list[Inferred]:
    x, w = op.operands[0].type, op.operands[1].type
    return [Inferred((x.shape[0], *_window_output_hw(op), w.shape[3]), x.dtype)]


def _dw_verify_in_place(op: Op) -> None:
    if op.attrs.get("in_place"):
        why = depthwise_in_place_possible(op)
        require(why is None, op, f"in_place: {why}")


def _dw_verify(op: Op) -> None:
    x, w = op.operands[0].type, op.operands[1].type
    require(x.rank == 4 and w.rank == 4 and w.shape[0] == 1, op, "input must be NHWC and weight [1, KH, KW, C*M]")
    _check_window(op)
    m = attr(op, "depth_multiplier")
    require(m >= 1 and w.shape[3] == x.shape[3] * m, op,
            f"weight channels {w.shape[3]} must equal input channels {x.shape[3]} x depth_multiplier {m}")
    _verify_weights_and_bias(op, 3, w.shape[3])
    _dw_verify_in_place(op)


def _dw_macs(op: Op) -> int:
    y, w = op.results[0].type, op.operands[1].type
    return y.num_elements * w.shape[1] * w.shape[2]


def _dw_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x, w = op.operands[0], op.operands[1]
    xv, wv = _offsets(op, inputs, x, w, 3)
    c = x.type.shape[3]
    # [1, KH, KW, C*M] -> grouped-conv weights [C*M, KH, KW, 1]
    wg = np.transpose(wv, (3, 1, 2, 0))
    acc = conv_accumulate(xv, wg, attr(op, "strides"), attr(op, "dilations"), attr(op, "pads"), c)
    return [_finish(op, acc, inputs, x, w, 3)]


def depthwise_in_place(op: Op) -> bool:
    """True when the op runs MCUNet's in-place depthwise kernel (its ``in_place`` attribute, set by ``plan-memory``
    where that lowers the peak): each input channel is copied into an ``H x W`` scratch plane and that channel's
    outputs are written where the channel was, so the result takes exactly the input's bytes."""
    return bool(op.attrs.get("in_place", False))


def depthwise_in_place_possible(op: Op) -> str | None:
    """Why the in-place kernel cannot run this op (None when it can): it needs an int8 op of batch 1 and depth
    multiplier 1 whose input no other op (and no graph output) reads."""
    x = op.operands[0]
    n = x.type.shape[0]
    if x.type.dtype is not DType.INT8 or n != 1 or attr(op, "depth_multiplier") != 1:
        return "the in-place kernel needs int8, batch 1 and depth multiplier 1"
    if len(x.uses) != 1 or (op.graph is not None and op.graph.is_output(x)):
        return f"the in-place kernel overwrites %{x.name}, which something else also reads"
    return None


def depthwise_in_place_pays(op: Op) -> bool:
    """True when the in-place kernel is possible and needs fewer bytes for this op than the raster kernel's overlap
    (``in + H x W`` against ``out + C x (W + 2)`` for a 3x3 window): deep layers with many channels on small maps.
    It is slower than the raster kernels, so ``plan-memory`` keeps it only where it lowers the arena."""
    if depthwise_in_place_possible(op) is not None:
        return False
    x, y = op.operands[0], op.results[0]
    _, ih, iw, _ = x.type.shape
    raster = overlap_distance_of(window_access(op, 0))
    sx, sy = _align8(x.type.nbytes), _align8(y.type.nbytes)
    return _align8(ih * iw) + max(sx, sy) < max(sy, _align8(max(raster, 0)) + sx)


def _align8(n: int) -> int:
    return (n + 7) // 8 * 8


def _dw_overlap(op: Op, k: int) -> AccessMap | InPlace | None:
    if k == 0 and depthwise_in_place(op):
        return InPlace(0)
    return window_access(op, k)


def _dw_scratch(op: Op) -> int:
    """One ``H x W`` input plane for the in-place kernel (``mcc_depthwise_planar_scratch_bytes``), else none."""
    _, ih, iw, _ = op.operands[0].type.shape
    return ih * iw if depthwise_in_place(op) else 0


DEPTHWISE_CONV2D = register_op(OpDef(
    name="nn.depthwise_conv2d",
    summary="depthwise 2-D convolution, NHWC input, [1, KH, KW, C*M] weights, optional bias and fused clamp",
    operands=("input", "weight", "bias?"),
    attrs=(*WINDOW_ATTRS, AttrSpec("depth_multiplier", AttrKind.INT, 1, "outputs per input channel"), *ACT_ATTRS,
           AttrSpec("in_place", AttrKind.BOOL, False, "run channel by channel in place (MCUNet's in-place depthwise; "
                    "set by plan-memory where it lowers the peak)")),
    infer=_dw_infer, verify=_dw_verify, macs=_dw_macs, reference=_dw_ref, overlap=_dw_overlap, scratch=_dw_scratch,
))


# -- nn.fully_connected --------------------------------------------------------------------------------------------
def _fc_infer(op: Op) -> list[Inferred]:
    x, w = op.operands[0].type, op.operands[1].type
    return [Inferred((*x.shape[:-1], w.shape[0]), x.dtype)]


def _fc_verify(op: Op) -> None:
    x, w = op.operands[0].type, op.operands[1].type
    require(x.rank >= 1 and w.rank == 2, op, "weight must be 2-D [C_out, K]")
    require(x.shape[-1] == w.shape[1], op, f"input depth {x.shape[-1]} must equal weight K {w.shape[1]}")
    _verify_weights_and_bias(op, 0, w.shape[0])


def _fc_macs(op: Op) -> int:
    return op.results[0].type.num_elements * op.operands[1].type.shape[1]


def _fc_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x, w = op.operands[0], op.operands[1]
    xv, wv = _offsets(op, inputs, x, w, 0)
    acc = xv.astype(np.float64) @ wv.astype(np.float64).T
    return [_finish(op, acc, inputs, x, w, x.type.rank - 1)]


FULLY_CONNECTED = register_op(OpDef(
    name="nn.fully_connected",
    summary="y = x @ W^T + b over the last axis, W is [C_out, K], optional fused clamp",
    operands=("input", "weight", "bias?"),
    attrs=ACT_ATTRS,
    infer=_fc_infer, verify=_fc_verify, macs=_fc_macs, reference=_fc_ref,
))
