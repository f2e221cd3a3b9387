"""Data-movement ops: ``nn.pad``, ``nn.reshape``, ``nn.flatten``, ``nn.identity``, ``nn.concat``,
``nn.transpose``, ``nn.resize_nearest``.

These ops move elements and never change their values, so a quantized result carries the input's
quantization unchanged (the verifier checks it) and the reference works on the stored integers. Per-channel
quantization is allowed where each element keeps its channel: the channel axis is renumbered by
``nn.transpose``; it must keep its length under ``nn.pad`` and ``nn.resize_nearest``; under ``nn.reshape`` and
``nn.flatten`` it must map to a result axis of the same length with the same number of elements after it (so
row-major order keeps every element's channel index); ``nn.concat`` inputs and result share one quantization,
never per-channel along the concat axis.
The only value an op here creates is ``nn.pad``'s fill, quantized as ``round(value / scale) + zero_point``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from compiler.ir import Op, QuantParams, Value
from compiler.opdef import AttrKind, AttrSpec, Inferred, OpDef, attr, register_op
from compiler.ops._common import check_quant_consistency, check_same_dtype, require
from compiler.quant import quantize_array, round_half_away


# -- quantization of moved data ------------------------------------------------------------------------------
def _moved(q: QuantParams | None, axis: int | None) -> QuantParams | None:
    """``q`` with its per-channel axis renumbered to ``axis``."""
    if q is None or q.axis is None:
        return q
    return QuantParams(q.scale, q.zero_point, axis)


def _require_same_quant(op: Op, x: Value, y: Value, axis: int | None = None) -> None:
    """``y`` carries ``x``'s quantization; a per-channel axis of ``x`` becomes ``axis`` in ``y``, same length.

    ``axis=None`` means the channel axis keeps its number.
    """
    check_quant_consistency(op, [x, y])
    xq = x.type.quant
    if xq is not None and xq.axis is not None:
        new_axis = xq.axis if axis is None else axis
        require(new_axis < y.type.rank and y.type.shape[new_axis] == x.type.shape[xq.axis], op,
                f"per-channel quantization axis {xq.axis} of %{x.name} is not preserved by this op")
        xq = _moved(xq, new_axis)
    require(y.type.quant == xq, op,
            f"result %{y.name} must carry the input's quantization (data movement never changes values)")


def _reshape_channel_axis(op: Op, x: Value, y: Value) -> int | None:
    """The result axis holding ``x``'s per-channel axis after a row-major reshape (None when per-tensor)."""
    xq, yq = x.type.quant, y.type.quant
    if xq is None or xq.axis is None:
        return None
    a = xq.axis
    b = yq.axis if yq is not None and yq.axis is not None else -1
    inner_x = math.prod(x.type.shape[a + 1:])
    ok = (0 <= b < y.type.rank and y.type.shape[b] == x.type.shape[a]
          and math.prod(y.type.shape[b + 1:]) == inner_x)
    require(ok, op, f"per-channel quantization axis {a} of %{x.name} must map to a result axis of the same "
                    "length with the same number of elements after it")
    return b


def _norm_axis(op: Op, axis: int, rank: int, what: str = "axis") -> int:
    require(-rank <= axis < rank, op, f"{what} {axis} out of range for rank {rank}")
    return axis % rank


# -- nn.pad --------------------------------------------------------------------------------------------------
def _pad_infer(op: Op) -> list[Inferred]:
    x = op.operands[0].type
    pads = attr(op, "pads")
    require(len(pads) == 2 * x.rank, op,
            f"pads must hold {2 * x.rank} values (begins then ends), got {len(pads)}")
    require(min(pads, default=0) >= 0, op, "pads must be >= 0")
    shape = tuple(d + pads[i] + pads[i + x.rank] for i, d in enumerate(x.shape))
    return [Inferred(shape, x.dtype)]


def _pad_verify(op: Op) -> None:
    _require_same_quant(op, op.operands[0], op.results[0])


def pad_fill(op: Op) -> np.ndarray:
    """The fill value as stored in the result, broadcastable against it (per channel if quantized so)."""
    y = op.results[0].type
    value = attr(op, "value")
    if y.dtype.is_float:
        return np.asarray(value, dtype=np.float32)
    if y.quant is None:
        return np.asarray(round_half_away(value), dtype=np.int64)
    return quantize_array(np.asarray(value, dtype=np.float32), y.quant.scales_for(y.shape),
                          y.quant.zero_points_for(y.shape), y.dtype.qmin, y.dtype.qmax)


def _pad_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    y = op.results[0].type
    x = inputs[0]
    pads = attr(op, "pads")
    out = np.empty(y.shape, dtype=y.dtype.np)
    out[...] = pad_fill(op)
    out[tuple(slice(pads[i], pads[i] + d) for i, d in enumerate(x.shape))] = x
    return [out]


PAD = register_op(OpDef(
    name="nn.pad",
    summary="constant padding (ONNX pads order), the fill given in real units",
    operands=("input",),
    attrs=(AttrSpec("pads", AttrKind.INTS, doc="begin values for every axis, then end values (ONNX order)"),
           AttrSpec("value", AttrKind.FLOAT, 0.0, "fill value in real units (quantized like the result)")),
    infer=_pad_infer, verify=_pad_verify, reference=_pad_ref,
))


# -- nn.reshape / nn.flatten ---------------------------------------------------------------------------------
def _reshape_infer(op: Op) -> list[Inferred]:
    shape = tuple(attr(op, "shape"))
    require(all(d >= 0 for d in shape), op, f"shape {shape} must be fully resolved (no -1)")
    return [Inferred(shape, op.operands[0].type.dtype)]


def _reshape_verify(op: Op) -> None:
    x, y = op.operands[0], op.results[0]
    require(x.type.num_elements == y.type.num_elements, op,
            f"reshape must keep the element count: {x.type.num_elements} in, {y.type.num_elements} out")
    _require_same_quant(op, x, y, _reshape_channel_axis(op, x, y))


def _reshape_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(inputs[0]).reshape(op.results[0].type.shape)]


RESHAPE = register_op(OpDef(
    name="nn.reshape",
    summary="row-major reshape to a fully resolved shape",
    operands=("input",),
    attrs=(AttrSpec("shape", AttrKind.INTS, doc="the result shape (no -1)"),),
    infer=_reshape_infer, verify=_reshape_verify, reference=_reshape_ref,
))


def _flatten_infer(op: Op) -> list[Inferred]:
    x = op.operands[0].type
    axis = attr(op, "axis")
    require(-x.rank <= axis <= x.rank, op, f"axis {axis} out of range for rank {x.rank}")
    a = axis % x.rank if axis < 0 else axis
    return [Inferred((math.prod(x.shape[:a]), math.prod(x.shape[a:])), x.dtype)]


FLATTEN = register_op(OpDef(
    name="nn.flatten",
    summary="ONNX Flatten: 2-D result [prod(dims before axis), prod(dims from axis)]",
    operands=("input",),
    attrs=(AttrSpec("axis", AttrKind.INT, 1, "first axis of the second result dimension (-rank..rank)"),),
    infer=_flatten_infer, verify=_reshape_verify, reference=_reshape_ref,
))


# -- nn.identity ---------------------------------------------------------------------------------------------
def _identity_infer(op: Op) -> list[Inferred]:
    x = op.operands[0].type
    return [Inferred(x.shape, x.dtype)]


def _identity_verify(op: Op) -> None:
    _require_same_quant(op, op.operands[0], op.results[0])


def _identity_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.array(inputs[0], copy=True)]


IDENTITY = register_op(OpDef(
    name="nn.identity",
    summary="copy of the input",
    operands=("input",),
    infer=_identity_infer, verify=_identity_verify, reference=_identity_ref,
))


# -- nn.concat -----------------------------------------------------------------------------------------------
def _concat_infer(op: Op) -> list[Inferred]:
    first = op.operands[0].type
    axis = _norm_axis(op, attr(op, "axis"), first.rank)
    total = 0
    for v in op.operands:
        t = v.type
        require(t.rank == first.rank, op, f"operand %{v.name} has rank {t.rank}, expected {first.rank}")
        same = all(d == e for i, (d, e) in enumerate(zip(t.shape, first.shape, strict=True)) if i != axis)
        require(same, op, f"operand %{v.name} has shape {t.shape}; all inputs must match {first.shape} "
                          f"except along axis {axis}")
        total += t.shape[axis]
    shape = tuple(total if i == axis else d for i, d in enumerate(first.shape))
    return [Inferred(shape, first.dtype)]


def _concat_verify(op: Op) -> None:
    y = op.results[0]
    check_same_dtype(op, [*op.operands, y])
    check_quant_consistency(op, [*op.operands, y])
    axis = _norm_axis(op, attr(op, "axis"), y.type.rank)
    for v in op.operands:
        require(v.type.quant == y.type.quant, op,
                f"operand %{v.name} and result %{y.name} must share one quantization")
    q = y.type.quant
    require(q is None or q.axis != axis, op, "per-channel quantization cannot run along the concat axis")


def _concat_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    axis = attr(op, "axis") % op.results[0].type.rank
    return [np.concatenate(list(inputs), axis=axis).astype(op.results[0].type.dtype.np, copy=False)]


CONCAT = register_op(OpDef(
    name="nn.concat",
    summary="concatenation of one or more tensors along an axis",
    operands=("inputs*",),
    attrs=(AttrSpec("axis", AttrKind.INT, doc="the axis to join along (negative counts from the end)"),),
    infer=_concat_infer, verify=_concat_verify, reference=_concat_ref,
))


# -- nn.transpose --------------------------------------------------------------------------------------------
def _transpose_infer(op: Op) -> list[Inferred]:
    x = op.operands[0].type
    perm = tuple(attr(op, "perm"))
    require(sorted(perm) == list(range(x.rank)), op, f"perm {perm} is not a permutation of 0..{x.rank - 1}")
    return [Inferred(tuple(x.shape[p] for p in perm), x.dtype)]


def _transpose_verify(op: Op) -> None:
    x, y = op.operands[0], op.results[0]
    q = x.type.quant
    axis = None if q is None or q.axis is None else tuple(attr(op, "perm")).index(q.axis)
    _require_same_quant(op, x, y, axis)


def _transpose_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.transpose(inputs[0], attr(op, "perm")))]


TRANSPOSE = register_op(OpDef(
    name="nn.transpose",
    summary="axis permutation: result axis i is input axis perm[i]",
    operands=("input",),
    attrs=(AttrSpec("perm", AttrKind.INTS, doc="input axis for each result axis"),),
    infer=_transpose_infer, verify=_transpose_verify, reference=_transpose_ref,
))


# -- nn.resize_nearest ---------------------------------------------------------------------------------------
def nearest_indices(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """Source index of each output position, TFLite's ``GetNearestNeighbor`` in float32 arithmetic.

    ``scale = in/out`` (``(in-1)/(out-1)`` with ``align_corners``), ``src = (i + offset) * scale`` with
    offset 0.5 for ``half_pixel_centers``; rounded half away from zero with ``align_corners``, floored
    otherwise; clamped to the input.
    """
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    src = (np.arange(out_size, dtype=np.float32) + offset) * scale
    idx = round_half_away(src) if align_corners else np.floor(src)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    if half_pixel_centers:
        idx = np.maximum(idx, 0)
    return idx


def _resize_infer(op: Op) -> list[Inferred]:
    x = op.operands[0].type
    require(x.rank == 4, op, f"input must be 4-D NHWC, got rank {x.rank}")
    size = attr(op, "size")
    require(len(size) == 2 and min(size) >= 1, op, "size must be 2 values >= 1 (out_h, out_w)")
    return [Inferred((x.shape[0], size[0], size[1], x.shape[3]), x.dtype)]


def _resize_verify(op: Op) -> None:
    require(not (attr(op, "align_corners") and attr(op, "half_pixel_centers")), op,
            "align_corners and half_pixel_centers cannot both be set")
    _require_same_quant(op, op.operands[0], op.results[0])


def _resize_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x = inputs[0]
    oh, ow = attr(op, "size")
    ac, hpc = attr(op, "align_corners"), attr(op, "half_pixel_centers")
    rows = nearest_indices(x.shape[1], oh, ac, hpc)
    cols = nearest_indices(x.shape[2], ow, ac, hpc)
    return [np.ascontiguousarray(x[:, rows][:, :, cols])]


RESIZE_NEAREST = register_op(OpDef(
    name="nn.resize_nearest",
    summary="nearest-neighbour resize of NHWC images (TFLite ResizeNearestNeighbor index rule)",
    operands=("input",),
    attrs=(AttrSpec("size", AttrKind.INTS, doc="(out_h, out_w)"),
           AttrSpec("align_corners", AttrKind.BOOL, False, "align the corner pixels of input and result"),
           AttrSpec("half_pixel_centers", AttrKind.BOOL, False, "sample at pixel centres (offset 0.5)")),
    infer=_resize_infer, verify=_resize_verify, reference=_resize_ref,
))
