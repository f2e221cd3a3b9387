"""TFLite integer arithmetic, vectorised in NumPy.

These functions define the integer semantics that the reference interpreter, the C kernels and every pass must
agree on, bit for bit. They follow the TFLite quantization spec: a real multiplier is stored as a 32-bit
fixed-point multiplier in [2^30, 2^31) and a power-of-two shift; products are taken with a saturating, rounding,
doubling high multiply; right shifts round half away from zero (``RoundingDivideByPOT``).

All array functions take and return ``int64`` arrays holding int32 values, so intermediate products never
overflow in NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def round_half_away(x: float | np.floating | np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (C's ``round``, TFLite's ``TfLiteRound``)."""
    a = np.asarray(x, dtype=np.float64)
    return np.sign(a) * np.floor(np.abs(a) + 0.5)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """Split a non-negative real multiplier into ``(q, shift)`` with ``real ~= q * 2^(shift - 31)``.

    ``q`` lies in [2^30, 2^31) unless the multiplier is zero. Shifts below -31 flush the multiplier to zero, as
    TFLite does.
    """
    if real_multiplier < 0:
        raise ValueError(f"multiplier must be non-negative, got {real_multiplier}")
    if real_multiplier == 0.0:
        return 0, 0
    mant, shift = math.frexp(real_multiplier)
    q = math.floor(mant * (1 << 31) + 0.5)  # round_half_away of a positive number
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def quantize_multipliers(real_multipliers: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_multiplier` for each element; returns int64 arrays of multipliers and shifts."""
    pairs = [quantize_multiplier(float(m)) for m in real_multipliers]
    return (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))


def _trunc_div_pow2_31(v: np.ndarray) -> np.ndarray:
    """Integer division by 2^31 truncating toward zero, as C's ``/`` on int64."""
    return np.where(v >= 0, v >> 31, -((-v) >> 31))


def saturating_rounding_doubling_high_mul(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """The high 32 bits of ``2*a*b`` rounded to nearest (gemmlowp's ``SaturatingRoundingDoublingHighMul``)."""
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    ab = a64 * b64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = _trunc_div_pow2_31(ab + nudge)
    return np.where(overflow, INT32_MAX, res).astype(np.int64)


def rounding_divide_by_pot(x: np.ndarray | int, exponent: np.ndarray | int) -> np.ndarray:
    """``x / 2^exponent`` rounded to nearest with ties away from zero (gemmlowp's ``RoundingDivideByPOT``)."""
    x64 = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    if np.any(e < 0) or np.any(e > 31):
        raise ValueError("rounding_divide_by_pot needs an exponent in [0, 31]")
    mask = (np.int64(1) << e) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0).astype(np.int64)
    return (x64 >> e) + (remainder > threshold).astype(np.int64)


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Wrap int64 values to int32 two's complement (what a C ``int32_t`` multiply does on every target)."""
    x64 = np.asarray(x, dtype=np.int64)
    return ((x64 + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def multiply_by_quantized_multiplier(x: np.ndarray | int, multiplier: np.ndarray | int,
                                     shift: np.ndarray | int) -> np.ndarray:
    """TFLite's ``MultiplyByQuantizedMultiplier``: ``x * multiplier * 2^(shift - 31)`` with TFLite rounding."""
    x64 = np.asarray(x, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    shifted = wrap_int32(x64 * (np.int64(1) << left))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def requantize(acc: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int, zero_point: int,
               qmin: int, qmax: int) -> np.ndarray:
    """Scale an int32 accumulator to the output domain, add the zero point and clamp to ``[qmin, qmax]``."""
    out = multiply_by_quantized_multiplier(acc, multiplier, shift) + zero_point
    return np.clip(out, qmin, qmax)


def activation_range(dtype_min: int, dtype_max: int, scale: float, zero_point: int,
                     act_min: float, act_max: float) -> tuple[int, int]:
    """Integer clamp bounds for a real-valued activation range (TFLite's ``CalculateActivationRangeQuantized``).

    ``act_min``/``act_max`` may be infinite (no bound on that side). The bound is divided by the scale in float32,
    as TFLite does: in float64, 6 / float32(4/53) rounds to 79 instead of TFLite's 80.
    """
    lo, hi = dtype_min, dtype_max
    s32 = np.float32(scale)
    with np.errstate(over="ignore"):  # a huge bound divides to inf in float32: it then clamps nothing
        if math.isfinite(act_min):
            q = np.float32(act_min) / s32  # float32 division, as TFLite does
            lo = max(lo, zero_point + int(round_half_away(q))) if np.isfinite(q) else lo
        if math.isfinite(act_max):
            q = np.float32(act_max) / s32
            hi = min(hi, zero_point + int(round_half_away(q))) if np.isfinite(q) else hi
    return lo, hi


def quantize_array(x: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int, qmin: int, qmax: int,
                   round_mode: str = "half_away") -> np.ndarray:
    """Quantize real values: ``clamp(round(x / scale) + zero_point)`` with float32 division as TFLite does.

    ``round_mode`` is ``"half_away"`` (TFLite) or ``"half_even"`` (ONNX ``QuantizeLinear``).
    """
    q = np.asarray(x, dtype=np.float32) / np.asarray(scale, dtype=np.float32)
    r = round_half_away(q) if round_mode == "half_away" else np.round(q.astype(np.float64))
    return np.clip(r + np.asarray(zero_point, dtype=np.int64), qmin, qmax).astype(np.int64)


def dequantize_array(q: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int) -> np.ndarray:
    """Real values of quantized ones, in float32: ``(q - zero_point) * scale``."""
    diff = np.asarray(q, dtype=np.int64) - np.asarray(zero_point, dtype=np.int64)
    return (diff.astype(np.float32) * np.asarray(scale, dtype=np.float32)).astype(np.float32)
