"""Conversions between real and integer domains: ``q.quantize``, ``q.dequantize``, ``q.requantize``.

``q.quantize`` maps float32 to integers with the result's (per-tensor or per-channel) parameters:
``clamp(round(x / scale) + zero_point)``, rounding half away from zero as TFLite does or half to even as ONNX
``QuantizeLinear`` does. ``q.dequantize`` computes ``(q - zero_point) * scale`` in float32. ``q.requantize``
moves integers between two per-tensor quantizations exactly as TFLite's ``Requantize`` kernel:
``MultiplyByQuantizedMultiplier(x - zp_in, quantize_multiplier(s_in / s_out)) + zp_out``, clamped to the
result's element type.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compiler.ir import DType, Op, Value
from compiler.opdef import AttrKind, AttrSpec, Inferred, OpDef, attr, register_op
from compiler.ops._common import INT_TYPES, check_quant_consistency, per_tensor, require
from compiler.overlap import elementwise_access
from compiler.quant import dequantize_array, quantize_array, quantize_multiplier, requantize


def _same_shape(op: Op) -> list[Inferred]:
    return [Inferred(op.operands[0].type.shape)]


def _check_channel_quant(op: Op, v: Value) -> None:
    """A per-channel quantization of ``v`` names a valid axis and has one scale per slice."""
    q = v.type.quant
    if q is None or q.axis is None:
        return
    require(0 <= q.axis < v.type.rank and v.type.shape[q.axis] == len(q.scale), op,
            f"%{v.name}: per-channel quantization needs {len(q.scale)} slices along axis {q.axis}, "
            f"shape is {v.type.shape}")


# -- q.quantize ----------------------------------------------------------------------------------------------
def _quantize_infer(op: Op) -> list[Inferred]:
    return _same_shape(op)


def _quantize_verify(op: Op) -> None:
    x, y = op.operands[0], op.results[0]
    require(x.type.dtype is DType.FLOAT32, op, "input must be f32")
    require(y.type.dtype in INT_TYPES, op, "result must be i8, u8 or i16")
    check_quant_consistency(op, [x, y])
    _check_channel_quant(op, y)


def _quantize_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    y = op.results[0].type
    assert y.quant is not None
    q = quantize_array(inputs[0], y.quant.scales_for(y.shape), y.quant.zero_points_for(y.shape),
                       y.dtype.qmin, y.dtype.qmax, attr(op, "round_mode"))
    return [q.astype(y.dtype.np)]


QUANTIZE = register_op(OpDef(
    name="q.quantize",
    summary="float32 to integers with the result's quantization",
    operands=("input",),
    attrs=(AttrSpec("round_mode", AttrKind.STR, "half_away",
                    "half_away (TFLite) or half_even (ONNX QuantizeLinear)", ("half_away", "half_even")),),
    infer=_quantize_infer, verify=_quantize_verify, reference=_quantize_ref,
))


# -- q.dequantize --------------------------------------------------------------------------------------------
def _dequantize_infer(op: Op) -> list[Inferred]:
    return [Inferred(op.operands[0].type.shape, DType.FLOAT32)]


def _dequantize_verify(op: Op) -> None:
    x, y = op.operands[0], op.results[0]
    require(not x.type.dtype.is_float and x.type.quant is not None, op,
            "input must be a quantized integer tensor")
    check_quant_consistency(op, [x, y])
    _check_channel_quant(op, x)


def _dequantize_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x = op.operands[0].type
    assert x.quant is not None
    return [dequantize_array(inputs[0], x.quant.scales_for(x.shape), x.quant.zero_points_for(x.shape))]


DEQUANTIZE = register_op(OpDef(
    name="q.dequantize",
    summary="integers to float32 with the input's quantization",
    operands=("input",),
    infer=_dequantize_infer, verify=_dequantize_verify, reference=_dequantize_ref,
))


# -- q.requantize --------------------------------------------------------------------------------------------
def _requantize_infer(op: Op) -> list[Inferred]:
    return _same_shape(op)


def _requantize_verify(op: Op) -> None:
    x, y = op.operands[0], op.results[0]
    require(x.type.dtype in INT_TYPES and y.type.dtype in INT_TYPES, op,
            "input and result must be i8, u8 or i16")
    check_quant_consistency(op, [x, y])
    per_tensor(x, op, "input")
    per_tensor(y, op, "result")


def _requantize_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x, y = op.operands[0], op.results[0]
    xs, xzp = per_tensor(x, op, "input")
    ys, yzp = per_tensor(y, op, "result")
    mult, shift = quantize_multiplier(xs / ys)
    dt = y.type.dtype
    out = requantize(inputs[0].astype(np.int64) - xzp, mult, shift, yzp, dt.qmin, dt.qmax)
    return [out.astype(dt.np)]


REQUANTIZE = register_op(OpDef(
    name="q.requantize",
    summary="integers from one per-tensor quantization to another (TFLite Requantize)",
    operands=("input",),
    infer=_requantize_infer, verify=_requantize_verify, reference=_requantize_ref,
    overlap=elementwise_access,
))
