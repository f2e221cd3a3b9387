"""float32 ``expf``/``logf`` as TFLM computes them on an x86-64 host: glibc's algorithms, its FMA code path.

TFLM's float kernels call ``std::exp``/``std::log`` on floats, i.e. glibc's ``expf``/``logf``. They are not
correctly rounded (``logf`` differs from the correctly rounded logarithm on about 0.5 % of the floats in [1, 10],
``expf`` on about 0.01 % of the negative floats), so NumPy's ``exp``/``log`` or a correctly rounded evaluation
would not reproduce TFLM. glibc >= 2.28 uses Arm's optimized-routines algorithms (MIT licence): ``expf`` scales
by a 32-entry table of 2^(i/32) and a cubic, ``logf`` reduces with a 16-entry table of 1/c and log(c) and a
cubic; both run in double and round once to float. On CPUs with FMA and AVX2 glibc selects a build where several
multiply-adds are fused (read off its machine code); this module follows that build's operation order.

This is the reference the interpreter uses. It computes each fused multiply-add exactly with rational arithmetic
(:func:`fma`), independently of the C runtime (``runtime_c/mcc_float.c``), which emulates fma with error-free
double transformations. Scalar Python: fast enough for the few values a float model tail has.
"""

from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np

_H = float.fromhex

_EXP_TABLE = (
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
)
"""Bits of 2^(i/32) minus ``i << 47``."""
_EXP_INVLN2_32 = _H("0x1.71547652b82fep+0") * 32
_EXP_SHIFT = _H("0x1.8p+52")
_EXP_C = (_H("0x1.c6af84b912394p-5") / 32 ** 3, _H("0x1.ebfce50fac4f3p-3") / 32 ** 2, _H("0x1.62e42ff0c52d6p-1") / 32)

_LOG_INVC = tuple(_H(v) for v in (
    "0x1.661ec79f8f3bep+0", "0x1.571ed4aaf883dp+0", "0x1.49539f0f010bp+0", "0x1.3c995b0b80385p+0",
    "0x1.30d190c8864a5p+0", "0x1.25e227b0b8eap+0", "0x1.1bb4a4a1a343fp+0", "0x1.12358f08ae5bap+0",
    "0x1.0953f419900a7p+0", "0x1p+0", "0x1.e608cfd9a47acp-1", "0x1.ca4b31f026aap-1",
    "0x1.b2036576afce6p-1", "0x1.9c2d163a1aa2dp-1", "0x1.886e6037841edp-1", "0x1.767dcf5534862p-1"))
_LOG_LOGC = tuple(_H(v) for v in (
    "-0x1.57bf7808caadep-2", "-0x1.2bef0a7c06ddbp-2", "-0x1.01eae7f513a67p-2", "-0x1.b31d8a68224e9p-3",
    "-0x1.6574f0ac07758p-3", "-0x1.1aa2bc79c81p-3", "-0x1.a4e76ce8c0e5ep-4", "-0x1.1973c5a611cccp-4",
    "-0x1.252f438e10c1ep-5", "0x0p+0", "0x1.aa5aa5df25984p-5", "0x1.c5e53aa362eb4p-4",
    "0x1.526e57720db08p-3", "0x1.bc2860d22477p-3", "0x1.1058bc8a07ee1p-2", "0x1.4043057b6ee09p-2"))
_LOG_LN2 = _H("0x1.62e42fefa39efp-1")
_LOG_A = (_H("-0x1.00ea348b88334p-2"), _H("0x1.5575b0be00b6ap-2"), _H("-0x1.ffffef20a4123p-2"))

_F32 = np.float32


def fma(a: float, b: float, c: float) -> float:
    """``a * b + c`` rounded once to double (exact rationals; ``float(Fraction)`` rounds correctly)."""
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def _f32_bits(x: np.float32) -> int:
    return int(np.asarray(x, dtype=np.float32).view(np.uint32))


def _f32_from_bits(u: int) -> np.float32:
    return np.float32(np.asarray(u, dtype=np.uint32).view(np.float32)[()])


def _f64_bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


def _f64_from_bits(u: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", u & 0xFFFFFFFFFFFFFFFF))[0])


def expf(x: np.float32) -> np.float32:
    """glibc's ``expf(x)`` (FMA build), bit for bit."""
    x = _F32(x)
    ix = _f32_bits(x)
    abstop = (ix >> 20) & 0x7FF
    if abstop >= 0x42B:  # |x| >= 88, inf or nan
        if ix == 0xFF800000:
            return _F32(0.0)
        if abstop >= 0x7F8:
            return _F32(x + x)
        if x > _F32(_H("0x1.62e42ep6")):
            return _F32(np.inf)
        if x < _F32(-_H("0x1.9fe368p6")):
            return _F32(0.0)
        if x < _F32(-_H("0x1.9d1d9ep6")):
            return _f32_from_bits(1)  # glibc's "may underflow" result
    xd = float(x)
    kd = fma(_EXP_INVLN2_32, xd, _EXP_SHIFT)
    ki = _f64_bits(kd)
    kd -= _EXP_SHIFT
    r = fma(_EXP_INVLN2_32, xd, -kd)
    s = _f64_from_bits(_EXP_TABLE[ki % 32] + (ki << 47))
    z = fma(_EXP_C[0], r, _EXP_C[1])
    r2 = r * r
    y = fma(_EXP_C[2], r, 1.0)
    y = fma(z, r2, y)
    return _F32(y * s)


def logf(x: np.float32) -> np.float32:
    """glibc's ``logf(x)`` (FMA build), bit for bit (NaN payloads aside)."""
    x = _F32(x)
    ix = _f32_bits(x)
    if ix == 0x3F800000:
        return _F32(0.0)
    if (ix - 0x00800000) % (1 << 32) >= 0x7F800000 - 0x00800000:
        if (ix << 1) % (1 << 32) == 0:
            return _F32(-np.inf)
        if ix == 0x7F800000:
            return x
        if ix & 0x80000000 or (ix << 1) % (1 << 32) >= 0xFF000000:
            return _F32(np.nan)
        ix = _f32_bits(x * _F32(2.0 ** 23)) - (23 << 23)  # subnormal: normalise
    tmp = (ix - 0x3F330000) % (1 << 32)
    i = (tmp >> 19) % 16
    k = (tmp >> 23) - (512 if tmp & 0x80000000 else 0)
    z = float(_f32_from_bits((ix - (tmp & 0xFF800000)) % (1 << 32)))
    y0 = fma(float(k), _LOG_LN2, _LOG_LOGC[i])
    r = fma(z, _LOG_INVC[i], -1.0)
    y = fma(r, _LOG_A[1], _LOG_A[2])
    r2 = r * r
    t = r + y0
    y = fma(r2, _LOG_A[0], y)
    y = fma(r2, y, t)
    return _F32(y)


def _elementwise(fn: object, x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    uniq, inverse = np.unique(a.view(np.uint32), return_inverse=True)
    vals = np.array([fn(v) for v in uniq.view(np.float32)], dtype=np.float32)  # type: ignore[operator]
    return vals[inverse].reshape(a.shape)


def expf_array(x: np.ndarray) -> np.ndarray:
    """:func:`expf` of every element (each distinct value computed once)."""
    return _elementwise(expf, x)


def logf_array(x: np.ndarray) -> np.ndarray:
    """:func:`logf` of every element (each distinct value computed once)."""
    return _elementwise(logf, x)
