"""Pooling and reduction ops: ``nn.avg_pool2d``, ``nn.max_pool2d``, ``nn.mean``.

Pools take NHWC activations and a ``(kh, kw)`` window with strides and ``(top, left, bottom, right)`` padding.
Padded positions never take part: the average divides by the number of valid elements (ONNX
``count_include_pad=0``, TFLite's pooling kernels) and the maximum ignores them. Quantized pools require the
input and result quantization to be equal, so they work on the stored integers directly, as TFLite's
``reference_integer_ops::AveragePool``/``MaxPool`` do.

``nn.mean`` reduces over ``axes``; global average pooling is the mean over axes (1, 2). Its quantized form is
TFLM's integer MEAN (``reference_ops::QuantizedMeanOrSum``, which TFLM runs for every axis set and keepdims,
global average pooling included): sum ``x - zp_in`` over the ``n`` reduced elements, requantize once with the
multiplier of ``s_in / s_out`` folded with ``1 / n`` (see :func:`mean_multiplier`), add ``zp_out`` and clamp to
the element type.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from compiler.ir import DType, Op
from compiler.opdef import AttrKind, AttrSpec, Inferred, OpDef, attr, register_op
from compiler.ops._common import (
    ACT_ATTRS,
    INT_TYPES,
    act_float,
    act_range_int,
    check_quant_consistency,
    conv_out_size,
    per_tensor,
    require,
)
from compiler.overlap import window_access
from compiler.quant import multiply_by_quantized_multiplier, quantize_multiplier

SUPPORTED = (*INT_TYPES, DType.FLOAT32)

POOL_ATTRS = (
    AttrSpec("kernel", AttrKind.INTS, doc="(kh, kw) window size"),
    AttrSpec("strides", AttrKind.INTS, (1, 1), "(stride_h, stride_w)"),
    AttrSpec("pads", AttrKind.INTS, (0, 0, 0, 0), "(top, left, bottom, right); padded positions are ignored"),
    *ACT_ATTRS,
)


def round_div(total: np.ndarray, count: np.ndarray | int) -> np.ndarray:
    """``total / count`` rounded half away from zero the way TFLite's integer kernels write it in C.

    ``(total + count/2) / count`` for positive totals, ``(total - count/2) / count`` otherwise, with C's
    truncating integer division.
    """
    t = np.asarray(total, dtype=np.int64)
    c = np.asarray(count, dtype=np.int64)
    num = np.where(t > 0, t + c // 2, t - c // 2)
    q = np.abs(num) // c
    return np.where(num < 0, -q, q)


# -- windows -------------------------------------------------------------------------------------------------
def _pool_infer(op: Op) -> list[Inferred]:
    x = op.operands[0].type
    require(x.rank == 4, op, f"input must be 4-D NHWC, got rank {x.rank}")
    kh, kw = attr(op, "kernel")
    sh, sw = attr(op, "strides")
    pt, pl, pb, pr = attr(op, "pads")
    oh = conv_out_size(x.shape[1], kh, sh, 1, pt, pb)
    ow = conv_out_size(x.shape[2], kw, sw, 1, pl, pr)
    return [Inferred((x.shape[0], oh, ow, x.shape[3]), x.dtype)]


def _check_dtype(op: Op) -> None:
    x, y = op.operands[0], op.results[0]
    require(x.type.dtype in SUPPORTED, op, f"input element type {x.type.dtype.value} is not supported")
    check_quant_consistency(op, [x, y])


def _pool_verify(op: Op) -> None:
    x, y = op.operands[0], op.results[0]
    kernel, strides, pads = attr(op, "kernel"), attr(op, "strides"), attr(op, "pads")
    require(len(kernel) == 2 and min(kernel) >= 1, op, "kernel must be 2 values >= 1")
    require(len(strides) == 2 and min(strides) >= 1, op, "strides must be 2 values >= 1")
    require(len(pads) == 4 and min(pads) >= 0, op, "pads must be 4 values >= 0")
    kh, kw = kernel
    pt, pl, pb, pr = pads
    # Padding smaller than the window keeps at least one real element in every window.
    require(max(pt, pb) < kh and max(pl, pr) < kw, op,
            "each pad must be smaller than the kernel along its axis")
    _check_dtype(op)
    if x.type.is_quantized:
        per_tensor(x, op, "input")
        per_tensor(y, op, "result")
        require(x.type.quant == y.type.quant, op,
                "input and result quantization must be equal (requantize separately)")


def _pool_macs(op: Op) -> int:
    kh, kw = attr(op, "kernel")
    return op.results[0].type.num_elements * kh * kw


def _windows(op: Op, x: np.ndarray, fill: float | int) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Every strided window slice of ``x`` padded with ``fill``: one [N, OH, OW, C] array per kernel tap."""
    kh, kw = attr(op, "kernel")
    sh, sw = attr(op, "strides")
    pt, pl, pb, pr = attr(op, "pads")
    oh, ow = op.results[0].type.shape[1:3]
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    taps = [xp[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, :]
            for i in range(kh) for j in range(kw)]
    return taps, (oh, ow)


def _valid_counts(op: Op, x_shape: Sequence[int]) -> np.ndarray:
    """Number of non-padded elements in each output window, shaped [1, OH, OW, 1]."""
    ones = np.ones((1, x_shape[1], x_shape[2], 1), dtype=np.int64)
    taps, _ = _windows(op, ones, 0)
    return np.sum(taps, axis=0)


def _avg_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x, y = op.operands[0], op.results[0]
    xa = inputs[0]
    counts = _valid_counts(op, xa.shape)
    if x.type.dtype.is_float:
        taps, _ = _windows(op, xa.astype(np.float64), 0.0)
        return [act_float(op, np.sum(taps, axis=0) / counts)]
    taps, _ = _windows(op, xa.astype(np.int64), 0)
    avg = round_div(np.sum(taps, axis=0), counts)
    lo, hi = act_range_int(op, y.type)
    return [np.clip(avg, lo, hi).astype(y.type.dtype.np)]


def _max_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x, y = op.operands[0], op.results[0]
    xa = inputs[0]
    if x.type.dtype.is_float:
        taps, _ = _windows(op, xa.astype(np.float32), -np.inf)
        return [act_float(op, np.max(taps, axis=0))]
    taps, _ = _windows(op, xa.astype(np.int64), np.iinfo(np.int64).min)
    lo, hi = act_range_int(op, y.type)
    return [np.clip(np.max(taps, axis=0), lo, hi).astype(y.type.dtype.np)]


AVG_POOL2D = register_op(OpDef(
    name="nn.avg_pool2d",
    summary="2-D average pooling over NHWC, padding excluded from the count, optional fused clamp",
    operands=("input",),
    attrs=POOL_ATTRS,
    infer=_pool_infer, verify=_pool_verify, macs=_pool_macs, reference=_avg_ref, overlap=window_access,
))

MAX_POOL2D = register_op(OpDef(
    name="nn.max_pool2d",
    summary="2-D max pooling over NHWC, padding ignored, optional fused clamp",
    operands=("input",),
    attrs=POOL_ATTRS,
    infer=_pool_infer, verify=_pool_verify, macs=_pool_macs, reference=_max_ref, overlap=window_access,
))


# -- nn.mean -------------------------------------------------------------------------------------------------
def _norm_axes(op: Op, rank: int) -> tuple[int, ...]:
    axes = attr(op, "axes")
    require(len(axes) >= 1, op, "axes must not be empty")
    require(all(-rank <= a < rank for a in axes), op, f"axes {axes} out of range for rank {rank}")
    norm = tuple(sorted(a % rank for a in axes))
    require(len(set(norm)) == len(norm), op, f"axes {axes} repeat an axis")
    return norm


def _mean_infer(op: Op) -> list[Inferred]:
    x = op.operands[0].type
    axes = _norm_axes(op, x.rank)
    if attr(op, "keepdims"):
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return [Inferred(shape, x.dtype)]


def _mean_verify(op: Op) -> None:
    x, y = op.operands[0], op.results[0]
    _check_dtype(op)
    if x.type.is_quantized:
        per_tensor(x, op, "input")
        per_tensor(y, op, "result")


def _mean_macs(op: Op) -> int:
    return op.operands[0].type.num_elements


def mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """(multiplier, shift) that requantize a sum of ``count`` elements to their mean, as TFLM's MEAN does.

    ``QuantizeMultiplier(s_in / s_out)`` gives ``(m, e)``; with ``k = min(floor(log2(count)), 32, 31 + e)`` the
    mean's multiplier is ``floor(m * 2^k / count)`` (int64 division) and its shift ``e - k``. The division by the
    count is thus folded into the one rounding ``MultiplyByQuantizedMultiplier`` (no separate rounded division).
    """
    if count < 1:
        raise ValueError(f"mean over {count} elements")
    m, e = quantize_multiplier(in_scale / out_scale)
    k = min(count.bit_length() - 1, 32, 31 + e)
    return (m << k) // count, e - k


def _mean_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x, y = op.operands[0], op.results[0]
    axes = _norm_axes(op, x.type.rank)
    keep = bool(attr(op, "keepdims"))
    xa = inputs[0]
    if x.type.dtype.is_float:
        return [np.mean(xa.astype(np.float64), axis=axes, keepdims=keep).astype(np.float32)]
    xs, xzp = per_tensor(x, op, "input")
    ys, yzp = per_tensor(y, op, "result")
    count = math.prod(x.type.shape[a] for a in axes)
    acc = np.sum(xa.astype(np.int64) - xzp, axis=axes, keepdims=keep)
    mult, shift = mean_multiplier(xs, ys, count)
    acc = multiply_by_quantized_multiplier(acc, mult, shift) + yzp
    dt = y.type.dtype
    return [np.clip(acc, dt.qmin, dt.qmax).astype(dt.np)]


MEAN = register_op(OpDef(
    name="nn.mean",
    summary="mean over the given axes (global average pooling is axes (1, 2) of NHWC)",
    operands=("input",),
    attrs=(AttrSpec("axes", AttrKind.INTS, doc="axes to reduce (negative counts from the end)"),
           AttrSpec("keepdims", AttrKind.BOOL, True, "keep reduced axes as size 1")),
    infer=_mean_infer, verify=_mean_verify, macs=_mean_macs, reference=_mean_ref,
))
