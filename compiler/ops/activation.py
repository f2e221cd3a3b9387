"""Unary activations: relu, relu6, clamp, leaky_relu, hard_swish, hard_sigmoid, sigmoid, tanh.

Float tensors follow ONNX semantics in float32. Quantized tensors (per-tensor; int8, and uint8 where TFLite has a
uint8 kernel) follow TFLite/TFLM's integer reference kernels bit for bit:

* ``relu``/``relu6``/``clamp``: ``y = zp_out + MultiplyByQuantizedMultiplier(x - zp_in, s_in / s_out)`` clamped to
  the integer image of the real interval (TFLM ``ReluQuantized``). With equal input and output quantization this
  is exactly a clamp of ``x``. (TFLM's RELU6 kernel clamps in the input domain and ignores the output
  quantization; mcc requantizes as TFLite does, which agrees with TFLM whenever the two quantizations are equal.)
* ``leaky_relu``: two requantizations, the identity ``s_in / s_out`` for ``x >= zp_in`` and ``alpha * s_in / s_out``
  below it, with the multipliers computed in float32 as TFLM does (``QuantizeLeakyRelu``).
* ``hard_swish``: TFLite's reference ``HardSwish``, all in 16-bit fixed point with a "relu-ish" multiplier.
* ``sigmoid``/``tanh`` (int8 only): TFLM's ``Logistic``/``Tanh``: the input is rescaled to Q4.27, evaluated with
  gemmlowp's fixed-point ``logistic``/``tanh`` and rounded to the fixed output quantization (1/256, -128) and
  (1/128, 0) respectively; inputs beyond the overflow radius saturate.
* ``hard_sigmoid``: TFLite has no integer kernel; mcc uses a 256-entry lookup table computed in float64 from the
  dequantized inputs, rounded half away from zero (see :func:`hard_sigmoid_params`).

Each quantized op has a parameter function (types -> frozen dataclass, reused by the C backend) and a vectorised
NumPy kernel over int64 arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from compiler.ir import DType, Op, TensorType
from compiler.opdef import AttrKind, AttrSpec, Inferred, OpDef, attr, register_op
from compiler.ops import fixedpoint as fp
from compiler.ops._common import check_quant_consistency, per_tensor, require
from compiler.overlap import elementwise_access
from compiler.quant import (
    INT32_MIN,
    activation_range,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    round_half_away,
)

QUANT_TYPES = (DType.INT8, DType.UINT8)
SIGMOID_OUT_QUANT = (1.0 / 256.0, -128)
"""Output (scale, zero point) TFLM's int8 Logistic kernel produces."""
TANH_OUT_QUANT = (1.0 / 128.0, 0)
"""Output (scale, zero point) TFLM's int8 Tanh kernel produces."""
_GEMMLOWP_INPUT_INTEGER_BITS = 4


def _scale_zp(t: TensorType) -> tuple[float, int]:
    q = t.quant
    if q is None or not q.is_per_tensor:
        raise ValueError("quantized activations need per-tensor quantization")
    return q.scale[0], q.zero_point[0]


def quantize_signed_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier`` including negative multipliers (a negative Q0.31 mantissa)."""
    if real >= 0:
        return quantize_multiplier(real)
    mant, shift = math.frexp(real)
    q = int(round_half_away(mant * (1 << 31)))
    if shift < -31:
        return 0, 0
    return max(q, INT32_MIN), shift


# -- relu / relu6 / clamp --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RescaleClampParams:
    """Requantize ``s_in -> s_out`` then clamp: TFLM's ``ReluOpData`` (also used for relu6 and clamp)."""

    input_zero_point: int
    output_zero_point: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def rescale_clamp_params(inp: TensorType, out: TensorType, lo: float, hi: float) -> RescaleClampParams:
    """Multiplier ``s_in / s_out`` (double) and the integer clamp of the real interval ``[lo, hi]``."""
    si, zi = _scale_zp(inp)
    so, zo = _scale_zp(out)
    m, sh = quantize_multiplier(si / so)
    qlo, qhi = activation_range(out.dtype.qmin, out.dtype.qmax, so, zo, lo, hi)
    return RescaleClampParams(zi, zo, m, sh, qlo, qhi)


def rescale_clamp_kernel(p: RescaleClampParams, x: np.ndarray) -> np.ndarray:
    """``clamp(zp_out + MBQM(x - zp_in), act_min, act_max)`` on int64 arrays."""
    y = multiply_by_quantized_multiplier(np.asarray(x, dtype=np.int64) - p.input_zero_point,
                                         p.output_multiplier, p.output_shift) + p.output_zero_point
    return np.clip(y, p.act_min, p.act_max)


# -- leaky_relu ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LeakyReluParams:
    """TFLM's ``LeakyReluOpData``: an identity and an alpha requantization."""

    input_zero_point: int
    output_zero_point: int
    multiplier_identity: int
    shift_identity: int
    multiplier_alpha: int
    shift_alpha: int
    qmin: int
    qmax: int


def leaky_relu_params(inp: TensorType, out: TensorType, alpha: float) -> LeakyReluParams:
    """Multipliers ``s_in / s_out`` and ``s_in * alpha / s_out``, each evaluated in float32 as TFLM does."""
    si, zi = _scale_zp(inp)
    so, zo = _scale_zp(out)
    f_si, f_so, f_alpha = np.float32(si), np.float32(so), np.float32(alpha)
    mi, shi = quantize_multiplier(float(f_si / f_so))
    ma, sha = quantize_signed_multiplier(float(f_si * f_alpha / f_so))
    return LeakyReluParams(zi, zo, mi, shi, ma, sha, out.dtype.qmin, out.dtype.qmax)


def leaky_relu_kernel(p: LeakyReluParams, x: np.ndarray) -> np.ndarray:
    """TFLite's ``QuantizeLeakyRelu`` on int64 arrays."""
    d = np.asarray(x, dtype=np.int64) - p.input_zero_point
    y = np.where(d >= 0, multiply_by_quantized_multiplier(d, p.multiplier_identity, p.shift_identity),
                 multiply_by_quantized_multiplier(d, p.multiplier_alpha, p.shift_alpha))
    return np.clip(y + p.output_zero_point, p.qmin, p.qmax)


# -- hard_swish ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HardSwishParams:
    """TFLite's ``HardSwishParams``: two Q0.15 multipliers with power-of-two exponents."""

    input_zero_point: int
    output_zero_point: int
    reluish_multiplier: int
    reluish_exponent: int
    output_multiplier: int
    output_exponent: int
    qmin: int
    qmax: int


def hard_swish_params(inp: TensorType, out: TensorType) -> HardSwishParams:
    """TFLite's ``HardSwishPrepare``: scales combined in float32, multipliers quantized then cut to 16 bits.

    The input is moved to a "hires" scale ``s_in / 128``; the output multiplier ``(s_in / 128) / s_out`` must be
    below 1 (exponent <= 0) and the relu-ish multiplier ``(s_in / 128) / (3 / 32768)`` rescales the input so
    that 3.0 maps to 32768. Raises ``ValueError`` when an exponent leaves the range the 16-bit kernel handles.
    """
    si, zi = _scale_zp(inp)
    so, zo = _scale_zp(out)
    hires = np.float32(1.0 / 128.0) * np.float32(si)
    reluish_scale = np.float32(3.0 / 32768.0)
    om, oe = quantize_multiplier(float(hires / np.float32(so)))
    rm, re = quantize_multiplier(float(hires / reluish_scale))
    if not -15 <= oe <= 0:
        raise ValueError(f"hard_swish output multiplier exponent {oe} must lie in [-15, 0] "
                         "(the result scale must exceed input scale / 128 and not be 2^8 times larger)")
    if not -15 <= re <= 15:
        raise ValueError(f"hard_swish relu-ish multiplier exponent {re} must lie in [-15, 15]")
    return HardSwishParams(zi, zo, fp.downscale_multiplier_to_int16(rm), re, fp.downscale_multiplier_to_int16(om),
                           oe, out.dtype.qmin, out.dtype.qmax)


def hard_swish_kernel(p: HardSwishParams, x: np.ndarray) -> np.ndarray:
    """TFLite's reference quantized ``HardSwish`` on int64 arrays (every intermediate is an int16 value)."""
    hires = (np.asarray(x, dtype=np.int64) - p.input_zero_point) * (1 << 7)
    preshift_out = fp.srdhm16(hires, p.output_multiplier)
    reluish = hires
    if p.reluish_exponent > 0:
        reluish = fp.saturating_left_shift16(reluish, p.reluish_exponent - 1)
    reluish = fp.srdhm16(reluish, p.reluish_multiplier)
    if p.reluish_exponent > 0:
        reluish = fp.saturating_left_shift16(reluish, 1)
    elif p.reluish_exponent < 0:
        reluish = fp.rounding_divide_by_pot(reluish, -p.reluish_exponent)
    reluish = (reluish + (1 << 15)) >> 1  # [-1, 1] -> [0, 1] in Q0.15
    y = fp.rounding_divide_by_pot(fp.sdhm16(reluish, preshift_out), -p.output_exponent)
    return np.clip(y + p.output_zero_point, p.qmin, p.qmax)


# -- hard_sigmoid ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LookupTableParams:
    """A lookup table over every stored input value: ``y = table[x - qmin]``."""

    qmin: int
    table: tuple[int, ...]


def hard_sigmoid_params(inp: TensorType, out: TensorType, alpha: float, beta: float) -> LookupTableParams:
    """mcc's own integer hard_sigmoid (TFLite has none): one table entry per input value.

    Entry ``q`` is ``clamp(round_half_away(max(0, min(1, alpha * (q - zp_in) * s_in + beta)) / s_out) + zp_out)``,
    everything in float64 from the stored float32 scales.
    """
    si, zi = _scale_zp(inp)
    so, zo = _scale_zp(out)
    q = np.arange(inp.dtype.qmin, inp.dtype.qmax + 1, dtype=np.int64)
    real = np.clip(alpha * ((q - zi).astype(np.float64) * si) + beta, 0.0, 1.0)
    yq = np.clip(round_half_away(real / so) + zo, out.dtype.qmin, out.dtype.qmax).astype(np.int64)
    return LookupTableParams(inp.dtype.qmin, tuple(int(v) for v in yq))


def lookup_kernel(p: LookupTableParams, x: np.ndarray) -> np.ndarray:
    """Index the table with ``x - qmin``."""
    return np.asarray(p.table, dtype=np.int64)[np.asarray(x, dtype=np.int64) - p.qmin]


# -- sigmoid / tanh --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FixedPointActParams:
    """TFLM's int8 Logistic/Tanh data: the input rescaled to Q4.27 and the radius beyond which it saturates."""

    input_zero_point: int
    input_multiplier: int
    input_left_shift: int
    input_range_radius: int


def fixed_point_act_params(inp: TensorType) -> FixedPointActParams:
    """``s_in * 2^27`` split into a Q0.31 multiplier and shift, and ``CalculateInputRadius(4, shift, 31)``.

    TFLM rounds ``frexp``'s mantissa itself; because ``s_in`` is a float32, ``mantissa * 2^31`` is an integer below
    2^31 and :func:`compiler.quant.quantize_multiplier` gives the same pair.
    """
    si, zi = _scale_zp(inp)
    m, sh = quantize_multiplier(si * float(1 << (31 - _GEMMLOWP_INPUT_INTEGER_BITS)))
    radius = fp.calculate_input_radius(_GEMMLOWP_INPUT_INTEGER_BITS, sh, 31)
    return FixedPointActParams(zi, m, sh, radius)


def _fixed_point_act(p: FixedPointActParams, x: np.ndarray,
                     fn: Callable[[np.ndarray, int], np.ndarray], out_shift: int, out_zp: int) -> np.ndarray:
    d = np.asarray(x, dtype=np.int64) - p.input_zero_point
    inside = (d > -p.input_range_radius) & (d < p.input_range_radius)
    q4 = multiply_by_quantized_multiplier(np.where(inside, d, 0), p.input_multiplier, p.input_left_shift)
    y = np.clip(fp.rounding_divide_by_pot(fn(q4, _GEMMLOWP_INPUT_INTEGER_BITS), out_shift) + out_zp, -128, 127)
    return np.where(inside, y, np.where(d > 0, 127, -128))


def sigmoid_kernel(p: FixedPointActParams, x: np.ndarray) -> np.ndarray:
    """TFLM's int8 ``Logistic``: gemmlowp ``logistic`` in Q0.31, rounded to 1/256 units, zero point -128."""
    return _fixed_point_act(p, x, fp.logistic, 31 - 8, SIGMOID_OUT_QUANT[1])


def tanh_kernel(p: FixedPointActParams, x: np.ndarray) -> np.ndarray:
    """TFLM's int8 ``Tanh``: gemmlowp ``tanh`` in Q0.31, rounded to 1/128 units, zero point 0."""
    return _fixed_point_act(p, x, fp.tanh, 31 - 7, TANH_OUT_QUANT[1])


# -- float semantics -------------------------------------------------------------------------------------------------
def _f32(v: float) -> np.float32:
    return np.float32(v)


def _hard_sigmoid_f(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(x * _f32(alpha) + _f32(beta), _f32(0), _f32(1))


def _sigmoid_f(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, _f32(1) / (_f32(1) + e), e / (_f32(1) + e))


def _float_fn(op: Op) -> Callable[[np.ndarray], np.ndarray]:
    k = op.kind
    if k == "nn.relu":
        return lambda x: np.maximum(x, _f32(0))
    if k == "nn.relu6":
        return lambda x: np.clip(x, _f32(0), _f32(6))
    if k == "nn.clamp":
        lo, hi = attr(op, "min"), attr(op, "max")
        return lambda x: np.clip(x, _f32(lo), _f32(hi))
    if k == "nn.leaky_relu":
        a = _f32(attr(op, "alpha"))
        return lambda x: np.where(x >= 0, x, x * a)
    if k == "nn.hard_swish":
        return lambda x: x * _hard_sigmoid_f(x, 1.0 / 6.0, 0.5)
    if k == "nn.hard_sigmoid":
        alpha, beta = attr(op, "alpha"), attr(op, "beta")
        return lambda x: _hard_sigmoid_f(x, alpha, beta)
    if k == "nn.sigmoid":
        return _sigmoid_f
    return np.tanh


def _int_fn(op: Op) -> Callable[[np.ndarray], np.ndarray]:
    x, y = op.operands[0].type, op.results[0].type
    k = op.kind
    if k in _CLAMP_BOUNDS:
        lo, hi = _CLAMP_BOUNDS[k](op)
        p = rescale_clamp_params(x, y, lo, hi)
        return lambda v: rescale_clamp_kernel(p, v)
    if k == "nn.leaky_relu":
        lp = leaky_relu_params(x, y, attr(op, "alpha"))
        return lambda v: leaky_relu_kernel(lp, v)
    if k == "nn.hard_swish":
        hp = hard_swish_params(x, y)
        return lambda v: hard_swish_kernel(hp, v)
    if k == "nn.hard_sigmoid":
        tp = hard_sigmoid_params(x, y, attr(op, "alpha"), attr(op, "beta"))
        return lambda v: lookup_kernel(tp, v)
    fpp = fixed_point_act_params(x)
    kernel = sigmoid_kernel if k == "nn.sigmoid" else tanh_kernel
    return lambda v: kernel(fpp, v)


_CLAMP_BOUNDS: dict[str, Callable[[Op], tuple[float, float]]] = {
    "nn.relu": lambda op: (0.0, math.inf),
    "nn.relu6": lambda op: (0.0, 6.0),
    "nn.clamp": lambda op: (attr(op, "min"), attr(op, "max")),
}


# -- op definitions --------------------------------------------------------------------------------------------------
def _infer(op: Op) -> list[Inferred]:
    t = op.operands[0].type
    return [Inferred(t.shape, t.dtype)]


def _verify_for(int_types: tuple[DType, ...]) -> Callable[[Op], None]:
    def verify(op: Op) -> None:
        x, y = op.operands[0], op.results[0]
        dt = x.type.dtype
        names = ", ".join(["f32", *(d.value for d in int_types)])
        require(dt.is_float or dt in int_types, op, f"element type must be one of {names}, got {dt.value}")
        check_quant_consistency(op, [x, y])
        if op.kind == "nn.clamp":
            require(attr(op, "min") <= attr(op, "max"), op, "min must not exceed max")
        if dt.is_float:
            return
        per_tensor(x, op, "input")
        so, zo = per_tensor(y, op, "result")
        fixed = {"nn.sigmoid": SIGMOID_OUT_QUANT, "nn.tanh": TANH_OUT_QUANT}.get(op.kind)
        if fixed is not None:
            require(so == fixed[0] and zo == fixed[1], op,
                    f"int8 result must be quantized with scale {fixed[0]} and zero point {fixed[1]} "
                    f"(TFLM's fixed output quantization), got scale {so} and zero point {zo}")
        if op.kind == "nn.hard_swish":
            try:
                hard_swish_params(x.type, y.type)
            except ValueError as e:
                require(False, op, str(e))
    return verify


def _reference(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    y = op.results[0].type
    if y.dtype.is_float:
        return [np.asarray(_float_fn(op)(inputs[0].astype(np.float32)), dtype=np.float32)]
    return [_int_fn(op)(inputs[0]).astype(y.dtype.np)]


def _register(name: str, summary: str, int_types: tuple[DType, ...], attrs: tuple[AttrSpec, ...] = ()) -> OpDef:
    return register_op(OpDef(name=name, summary=summary, operands=("input",), attrs=attrs, infer=_infer,
                             verify=_verify_for(int_types), reference=_reference, overlap=elementwise_access))


RELU = _register("nn.relu", "max(x, 0); quantized: requantize then clamp at the zero point", QUANT_TYPES)
RELU6 = _register("nn.relu6", "min(max(x, 0), 6); quantized: requantize then clamp", QUANT_TYPES)
CLAMP = _register("nn.clamp", "min(max(x, min), max); quantized: requantize then clamp", QUANT_TYPES, (
    AttrSpec("min", AttrKind.FLOAT, -math.inf, "lower bound in real units"),
    AttrSpec("max", AttrKind.FLOAT, math.inf, "upper bound in real units"),
))
LEAKY_RELU = _register("nn.leaky_relu", "x if x >= 0 else alpha * x (TFLite integer LeakyRelu)", QUANT_TYPES, (
    AttrSpec("alpha", AttrKind.FLOAT, 0.01, "slope for negative inputs"),
))
HARD_SWISH = _register("nn.hard_swish", "x * relu6(x + 3) / 6 (TFLite 16-bit fixed-point HardSwish)", QUANT_TYPES)
HARD_SIGMOID = _register("nn.hard_sigmoid", "max(0, min(1, alpha * x + beta)); quantized: 256-entry lookup",
                         QUANT_TYPES, (
                             AttrSpec("alpha", AttrKind.FLOAT, 0.2, "slope"),
                             AttrSpec("beta", AttrKind.FLOAT, 0.5, "offset"),
                         ))
SIGMOID = _register("nn.sigmoid", "1 / (1 + exp(-x)); int8: TFLM Logistic, result quantized (1/256, -128)",
                    (DType.INT8,))
TANH = _register("nn.tanh", "tanh(x); int8: TFLM Tanh, result quantized (1/128, 0)", (DType.INT8,))
