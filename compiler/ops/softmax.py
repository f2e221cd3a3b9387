"""``nn.softmax``: ``exp(beta * x) / sum(exp(beta * x))`` along one axis; ``nn.log_softmax``: its logarithm (float32).

Float tensors use the numerically stable form (subtract the row maximum) in float32. int8 tensors follow
TFLite/TFLM's integer reference ``Softmax`` bit for bit:

1. ``PreprocessSoftmaxScaling``: ``beta * s_in * 2^26`` (capped at ``2^31 - 1``) becomes a multiplier and a left
   shift that map an input difference ``x - max`` to Q5.26; ``diff_min = -CalculateInputRadius(5, shift)`` is the
   most negative difference that cannot overflow (smaller ones contribute nothing and give -128).
2. Per row, ``exp_on_negative_values`` of each scaled difference (Q0.31) is summed in Q12.19.
3. ``GetReciprocal`` normalises the sum to [1, 2) and inverts it with Newton-Raphson in fixed point.
4. Each output is ``RoundingDivideByPOT(reciprocal * exp, num_bits_over_unit + 23) - 128``, clamped to int8:
   the result is quantized with scale 1/256 and zero point -128, which the verifier requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compiler.ir import DType, Op, TensorType
from compiler.opdef import AttrKind, AttrSpec, Inferred, OpDef, attr, register_op
from compiler.ops import fixedpoint as fp
from compiler.ops import libm
from compiler.ops._common import check_quant_consistency, per_tensor, require
from compiler.quant import quantize_multiplier

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12
OUTPUT_QUANT = (1.0 / 256.0, -128)
"""The only int8 result quantization TFLM's softmax accepts: scale 1/256, zero point -128."""


@dataclass(frozen=True, slots=True)
class SoftmaxParams:
    """TFLite's int8 softmax parameters: input beta multiplier, its left shift and the smallest useful difference."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int


def softmax_params(inp: TensorType, beta: float) -> SoftmaxParams:
    """``PreprocessSoftmaxScaling(beta, s_in, 5)`` and ``diff_min`` as TFLM's ``CalculateSoftmaxParams`` computes them.

    ``beta`` is rounded to float32 first (the TFLite option is a float). Raises ``ValueError`` when
    ``beta * s_in * 2^26`` is not above 1 (``QuantizeMultiplierGreaterThanOne`` would fail).
    """
    q = inp.quant
    if q is None or not q.is_per_tensor:
        raise ValueError("quantized softmax needs per-tensor input quantization")
    real = min(float(np.float32(beta)) * q.scale[0] * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)),
               float((1 << 31) - 1))
    if not real > 1.0:
        raise ValueError(f"beta * input scale * 2^26 = {real:.6g} must exceed 1")
    m, shift = quantize_multiplier(real)
    diff_min = -fp.calculate_input_radius(SCALED_DIFF_INTEGER_BITS, shift)
    return SoftmaxParams(m, shift, diff_min)


def softmax_kernel(p: SoftmaxParams, x: np.ndarray) -> np.ndarray:
    """TFLite's int8 reference softmax over the last axis of an int64 array; returns int64 values in [-128, 127].

    TFLM stops with a check failure when a row's exp-sum reaches 512 (the final shift would exceed 31); here such
    rows get the mathematically rounded result of the wider shift instead.
    """
    v = np.asarray(x, dtype=np.int64)
    if v.size == 0:
        return v
    diff = v - v.max(axis=-1, keepdims=True)
    used = diff >= p.diff_min
    # MultiplyByQuantizedMultiplierGreaterThanOne; diff_min keeps diff * 2^shift inside int32.
    scaled = fp.srdhm(np.where(used, diff, 0) * (1 << p.input_left_shift), p.input_multiplier)
    exps = fp.exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS)
    terms = fp.rescale(exps, 0, ACCUMULATION_INTEGER_BITS)
    sum_of_exps = np.where(used, terms, 0).sum(axis=-1, keepdims=True)
    reciprocal, num_bits_over_unit = fp.get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
    shift = np.broadcast_to(num_bits_over_unit + 31 - 8, v.shape)
    out = fp.rounding_divide_by_pot(fp.srdhm(reciprocal, exps), shift) - 128
    return np.where(used, np.clip(out, -128, 127), -128)


# -- op definition ---------------------------------------------------------------------------------------------------
def _axis(op: Op) -> int:
    rank = op.operands[0].type.rank
    a = attr(op, "axis")
    return a + rank if a < 0 else a


def _infer(op: Op) -> list[Inferred]:
    t = op.operands[0].type
    return [Inferred(t.shape, t.dtype)]


def _verify(op: Op) -> None:
    x, y = op.operands[0], op.results[0]
    rank = x.type.rank
    require(rank >= 1, op, "input must have at least one dimension")
    require(-rank <= attr(op, "axis") < rank, op, f"axis {attr(op, 'axis')} is out of range for rank {rank}")
    dt = x.type.dtype
    require(dt.is_float or dt is DType.INT8, op, f"element type must be f32 or i8, got {dt.value}")
    check_quant_consistency(op, [x, y])
    if dt.is_float:
        return
    per_tensor(x, op, "input")
    so, zo = per_tensor(y, op, "result")
    require(so == OUTPUT_QUANT[0] and zo == OUTPUT_QUANT[1], op,
            f"int8 result must be quantized with scale 1/256 and zero point -128, got scale {so} and zero point {zo}")
    require(attr(op, "beta") > 0, op, "beta must be positive for int8 softmax")
    try:
        softmax_params(x.type, attr(op, "beta"))
    except ValueError as e:
        require(False, op, str(e))


def _reference(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    y = op.results[0].type
    axis = _axis(op)
    x = np.moveaxis(inputs[0], axis, -1)
    if y.dtype.is_float:
        xf = x.astype(np.float32)
        beta = np.float32(attr(op, "beta"))
        ref = xf.max(axis=-1, keepdims=True) if beta >= 0 else xf.min(axis=-1, keepdims=True)
        e = np.exp((xf - ref) * beta)  # TFLite's float form; the exponent is never positive
        out = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    else:
        out = softmax_kernel(softmax_params(op.operands[0].type, attr(op, "beta")), x).astype(y.dtype.np)
    return [np.ascontiguousarray(np.moveaxis(out, -1, axis))]


SOFTMAX = register_op(OpDef(
    name="nn.softmax",
    summary="softmax(beta * x) along axis; int8: TFLite integer softmax with result quantized (1/256, -128)",
    operands=("input",),
    attrs=(
        AttrSpec("axis", AttrKind.INT, -1, "axis the normalisation runs along"),
        AttrSpec("beta", AttrKind.FLOAT, 1.0, "inverse temperature applied to the input"),
    ),
    infer=_infer, verify=_verify, reference=_reference,
))


# -- nn.log_softmax --------------------------------------------------------------------------------------------------
def log_softmax_rows(x: np.ndarray) -> np.ndarray:
    """TFLite's float ``LogSoftmax`` over the last axis of a float32 array, in its operation order.

    Per row: the maximum; the float32 sum of ``expf(x - max)`` added in index order; ``log_sum = logf(sum)``;
    ``out = (x - max) - log_sum``. ``expf``/``logf`` are glibc's (:mod:`compiler.ops.libm`), as TFLM calls them.
    """
    xf = np.asarray(x, dtype=np.float32)
    if xf.size == 0:
        return xf.copy()
    shifted = xf - xf.max(axis=-1, keepdims=True)  # max of non-NaN floats: the same as TFLite's running std::max
    e = libm.expf_array(shifted)
    total = np.zeros(xf.shape[:-1], dtype=np.float32)
    for i in range(xf.shape[-1]):  # sequential float32 adds, like the reference loop
        total = (total + e[..., i]).astype(np.float32)
    log_sum = libm.logf_array(total)
    return (shifted - log_sum[..., None]).astype(np.float32)


def _log_softmax_verify(op: Op) -> None:
    x = op.operands[0]
    rank = x.type.rank
    require(rank >= 1, op, "input must have at least one dimension")
    require(-rank <= attr(op, "axis") < rank, op, f"axis {attr(op, 'axis')} is out of range for rank {rank}")
    require(x.type.dtype is DType.FLOAT32, op, f"element type must be f32, got {x.type.dtype.value}")


def _log_softmax_reference(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    x = np.moveaxis(inputs[0], _axis(op), -1)
    return [np.ascontiguousarray(np.moveaxis(log_softmax_rows(x), -1, _axis(op)))]


LOG_SOFTMAX = register_op(OpDef(
    name="nn.log_softmax",
    summary="log(softmax(x)) along axis, float32, in TFLite's float reference order with glibc's expf/logf",
    operands=("input",),
    attrs=(AttrSpec("axis", AttrKind.INT, -1, "axis the normalisation runs along"),),
    infer=_infer, verify=_log_softmax_verify, reference=_log_softmax_reference,
))
