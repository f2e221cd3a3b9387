"""Binary elementwise ops: ``nn.add`` and ``nn.mul``, with NumPy broadcasting and a fused clamp.

Float tensors use plain float32 arithmetic followed by the ``act_min``/``act_max`` clamp. Quantized tensors
(int8 or uint8, per-tensor) follow TFLite's integer reference kernels exactly:

* ADD rescales both inputs to a common scale ``2 * max(s1, s2)`` with 20 bits of headroom
  (``(x - zp) << 20`` then a multiplier below 1), sums them, rescales the sum to the output scale, adds the
  output zero point and clamps to the activation range.
* MUL multiplies the zero-point-free inputs in int32 and requantizes once with ``s1 * s2 / s_out``.

Each quantized kernel is split into a parameter derivation (a frozen dataclass the C backend reuses) and a
vectorised NumPy kernel on int64 arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compiler.errors import VerifyError
from compiler.ir import DType, Op, TensorType
from compiler.opdef import Inferred, OpDef, attr, register_op
from compiler.ops._common import ACT_ATTRS, act_float, act_range_int, check_quant_consistency, per_tensor, require
from compiler.overlap import elementwise_access
from compiler.quant import multiply_by_quantized_multiplier, quantize_multiplier

QUANT_TYPES = (DType.INT8, DType.UINT8)
ADD_LEFT_SHIFT = 20
"""Headroom bits TFLite gives 8-bit ADD inputs before rescaling them."""


# -- parameters ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AddParams:
    """Integer parameters of a quantized ADD (TFLite's ``ArithmeticParams`` for 8-bit ADD).

    ``inputN_shift`` and ``output_shift`` are <= 0 (right shifts), as ``QuantizeMultiplierSmallerThanOneExp``
    guarantees.
    """

    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    left_shift: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True, slots=True)
class MulParams:
    """Integer parameters of a quantized MUL: one multiplier ``s1 * s2 / s_out`` and the zero points."""

    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def _scale_zp(t: TensorType) -> tuple[float, int]:
    q = t.quant
    if q is None or not q.is_per_tensor:
        raise ValueError("quantized add/mul need per-tensor quantization on every tensor")
    return q.scale[0], q.zero_point[0]


def _multiplier_below_one(real: float, what: str) -> tuple[int, int]:
    """``QuantizeMultiplierSmallerThanOneExp``: the multiplier must lie in (0, 1)."""
    if not 0.0 < real < 1.0:
        raise ValueError(f"the {what} multiplier {real:.6g} must lie in (0, 1)")
    return quantize_multiplier(real)


def add_params(in1: TensorType, in2: TensorType, out: TensorType, act_range: tuple[int, int]) -> AddParams:
    """Derive TFLite's 8-bit ADD parameters from the tensor types (as ``PrepareGeneralSubOp``/``Add`` do).

    All real multipliers are computed in double precision from the float32 scales; a ``ValueError`` names a
    multiplier outside (0, 1), which happens only when the output scale is below ``2 * max(s1, s2) / 2^20``.
    """
    s1, z1 = _scale_zp(in1)
    s2, z2 = _scale_zp(in2)
    so, zo = _scale_zp(out)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = _multiplier_below_one(s1 / twice_max, "first input")
    m2, sh2 = _multiplier_below_one(s2 / twice_max, "second input")
    mo, sho = _multiplier_below_one(twice_max / ((1 << ADD_LEFT_SHIFT) * so), "output")
    return AddParams(z1, z2, zo, ADD_LEFT_SHIFT, m1, sh1, m2, sh2, mo, sho, act_range[0], act_range[1])


def mul_params(in1: TensorType, in2: TensorType, out: TensorType, act_range: tuple[int, int]) -> MulParams:
    """Derive TFLite's 8-bit MUL parameters: ``QuantizeMultiplier(s1 * s2 / s_out)`` in double precision."""
    s1, z1 = _scale_zp(in1)
    s2, z2 = _scale_zp(in2)
    so, zo = _scale_zp(out)
    m, sh = quantize_multiplier(s1 * s2 / so)
    return MulParams(z1, z2, zo, m, sh, act_range[0], act_range[1])


# -- kernels -------------------------------------------------------------------------------------------------------
def add_kernel(p: AddParams, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """TFLite's 8-bit ADD on broadcastable int64 arrays; returns int64 values in ``[act_min, act_max]``."""
    a = (np.asarray(x1, dtype=np.int64) - p.input1_zero_point) * (1 << p.left_shift)
    b = (np.asarray(x2, dtype=np.int64) - p.input2_zero_point) * (1 << p.left_shift)
    scaled_a = multiply_by_quantized_multiplier(a, p.input1_multiplier, p.input1_shift)
    scaled_b = multiply_by_quantized_multiplier(b, p.input2_multiplier, p.input2_shift)
    raw = multiply_by_quantized_multiplier(scaled_a + scaled_b, p.output_multiplier, p.output_shift)
    return np.clip(raw + p.output_zero_point, p.act_min, p.act_max)


def mul_kernel(p: MulParams, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """TFLite's 8-bit MUL on broadcastable int64 arrays; returns int64 values in ``[act_min, act_max]``."""
    prod = (np.asarray(x1, dtype=np.int64) - p.input1_zero_point) * (np.asarray(x2, dtype=np.int64)
                                                                     - p.input2_zero_point)
    raw = multiply_by_quantized_multiplier(prod, p.output_multiplier, p.output_shift)
    return np.clip(raw + p.output_zero_point, p.act_min, p.act_max)


# -- op definitions ------------------------------------------------------------------------------------------------
def _infer(op: Op) -> list[Inferred]:
    a, b = op.operands[0].type, op.operands[1].type
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise VerifyError(f"{op.label}: operand shapes {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    return [Inferred(tuple(int(d) for d in shape), a.dtype)]


def _verify(op: Op) -> None:
    a, b = op.operands
    y = op.results[0]
    require(a.type.dtype == b.type.dtype, op,
            f"operands must have the same element type, got {a.type.dtype.value} and {b.type.dtype.value}")
    require(a.type.dtype.is_float or a.type.dtype in QUANT_TYPES, op,
            f"element type must be f32, i8 or u8, got {a.type.dtype.value}")
    check_quant_consistency(op, [a, b, y])
    require(attr(op, "act_min") <= attr(op, "act_max"), op, "act_min must not exceed act_max")
    if a.type.dtype.is_float:
        return
    per_tensor(a, op, "first operand")
    per_tensor(b, op, "second operand")
    per_tensor(y, op, "result")
    if op.kind == "nn.add":
        try:
            add_params(a.type, b.type, y.type, (0, 0))
        except ValueError as e:
            raise VerifyError(f"{op.label}: {e} (result scale too small for TFLite's 8-bit add)") from None


def _add_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    a, b = op.operands
    y = op.results[0].type
    if y.dtype.is_float:
        return [act_float(op, inputs[0].astype(np.float32) + inputs[1].astype(np.float32))]
    p = add_params(a.type, b.type, y, act_range_int(op, y))
    return [add_kernel(p, inputs[0], inputs[1]).astype(y.dtype.np)]


def _mul_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    a, b = op.operands
    y = op.results[0].type
    if y.dtype.is_float:
        return [act_float(op, inputs[0].astype(np.float32) * inputs[1].astype(np.float32))]
    p = mul_params(a.type, b.type, y, act_range_int(op, y))
    return [mul_kernel(p, inputs[0], inputs[1]).astype(y.dtype.np)]


def _mul_macs(op: Op) -> int:
    """One multiply per result element (counted as a MAC, as is customary for elementwise products)."""
    return op.results[0].type.num_elements


ADD = register_op(OpDef(
    name="nn.add",
    summary="elementwise a + b with NumPy broadcasting and an optional fused clamp (TFLite 8-bit ADD semantics)",
    operands=("lhs", "rhs"),
    attrs=ACT_ATTRS,
    infer=_infer, verify=_verify, reference=_add_ref, overlap=elementwise_access,
))

MUL = register_op(OpDef(
    name="nn.mul",
    summary="elementwise a * b with NumPy broadcasting and an optional fused clamp (TFLite 8-bit MUL semantics)",
    operands=("lhs", "rhs"),
    attrs=ACT_ATTRS,
    infer=_infer, verify=_verify, macs=_mul_macs, reference=_mul_ref, overlap=elementwise_access,
))
