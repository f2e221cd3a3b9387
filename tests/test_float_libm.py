"""expf/logf of the float32 tail kernels against the host's glibc (what TFLM calls) and the NumPy reference.

``runtime_c/mcc_float.c`` (C) and :mod:`compiler.ops.libm` (NumPy reference, exact rational fma) both reproduce
glibc's expf/logf as its x86-64 FMA build computes them. What is checked here, and how:

* expf on the exp arguments ptq_mnist_lenet can produce: ``x - max`` for every pair of its 256 dequantized logits
  with ``x <= max`` — enumerated exhaustively (C, reference and glibc all agree on every one);
* expf on a strided sweep of the negative floats (every 4096th bit pattern; C against glibc);
* logf on every float in [1, 10] — the range of a 10-element row's exp-sum (the row maximum contributes exactly
  1, every other term is in [0, 1]) — exhaustively for the C; the reference (slow, scalar) on a sample;
* the C dequantize formula against TFLM's (double product rounded to float) for all 256 int8 values.

``bench/libm_exhaustive.py`` runs the C against glibc on all 2^32 inputs of both functions (minutes, not a test).
The glibc comparisons need x86-64 Linux with glibc and an FMA unit (glibc's FMA code path) and skip otherwise.
"""

from __future__ import annotations

import ctypes
import platform
import subprocess
from pathlib import Path

import numpy as np
import pytest

from compiler.ops import libm

ROOT = Path(__file__).resolve().parent.parent

_WRAPPER = r"""
#include <math.h>
#include "mcc_kernels.h"

void map_mcc_expf(const float *x, float *y, long n) { for (long i = 0; i < n; ++i) y[i] = mcc_expf(x[i]); }
void map_mcc_logf(const float *x, float *y, long n) { for (long i = 0; i < n; ++i) y[i] = mcc_logf(x[i]); }
void map_glibc_expf(const float *x, float *y, long n) { for (long i = 0; i < n; ++i) y[i] = expf(x[i]); }
void map_glibc_logf(const float *x, float *y, long n) { for (long i = 0; i < n; ++i) y[i] = logf(x[i]); }

/* Bit patterns in [lo, hi] (positive floats) where mcc_logf and glibc's logf differ. */
long logf_mismatches(unsigned lo, unsigned hi) {
    long bad = 0;
    for (unsigned long u = lo; u <= hi; ++u) {
        union { unsigned u; float f; } a;
        a.u = (unsigned)u;
        const float m = mcc_logf(a.f), g = logf(a.f);
        union { float f; unsigned u; } bm, bg;
        bm.f = m;
        bg.f = g;
        bad += bm.u != bg.u;
    }
    return bad;
}
"""


def _glibc_fma_host() -> str | None:
    """None when glibc's FMA expf/logf are what this process's libm calls; else why not."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"needs x86-64 Linux, this is {platform.system()} {platform.machine()}"
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return "needs glibc"
    flags = Path("/proc/cpuinfo").read_text()
    if " fma" not in flags or " avx2" not in flags:
        return "glibc takes its FMA code path only on CPUs with FMA and AVX2"
    return None


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    """``runtime_c/mcc_float.c`` and a few array loops as a shared library, built as generated projects are."""
    d = tmp_path_factory.mktemp("libm")
    (d / "wrap.c").write_text(_WRAPPER)
    so = d / "libmccfloat.so"
    rt = ROOT / "runtime_c"
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-fPIC", "-shared",
                    "-I", str(rt), str(rt / "mcc_float.c"), str(d / "wrap.c"), "-o", str(so), "-lm"], check=True)
    cdll = ctypes.CDLL(str(so))
    cdll.logf_mismatches.restype = ctypes.c_long
    cdll.logf_mismatches.argtypes = [ctypes.c_uint, ctypes.c_uint]
    return cdll


def _map(lib: ctypes.CDLL, fn: str, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty_like(x)
    getattr(lib, fn)(x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p), ctypes.c_long(x.size))
    return y


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def _lenet_exp_arguments() -> tuple[np.ndarray, float, int]:
    """Every ``x - max`` (float32) the lenet's LOG_SOFTMAX can see, from its 256 dequantized int8 logits."""
    from compiler.driver import prepare_model
    from tests.models import model_path

    g = prepare_model(model_path("tinyengine/ptq_mnist_lenet-300-100.tflite"), opt_level=3).graph
    (dq,) = [op for op in g.ops if op.kind == "q.dequantize"]
    q = dq.operands[0].type.quant
    assert q is not None
    scale, zp = q.scale[0], q.zero_point[0]
    v = (np.arange(-128, 128) - zp).astype(np.float32) * np.float32(scale)
    diff = v[:, None] - v[None, :]  # x - max
    args = np.unique(diff[v[:, None] <= v[None, :]])
    return args.astype(np.float32), scale, zp


def test_expf_on_every_lenet_exp_argument(lib):
    args, _, _ = _lenet_exp_arguments()
    # 32,896 pairs (x <= max) of the 256 values; rounding makes more than 255 distinct differences (782 here)
    assert args.max() == 0 and 255 < len(args) <= 32_896
    c = _map(lib, "map_mcc_expf", args)
    ref = libm.expf_array(args)
    np.testing.assert_array_equal(_bits(c), _bits(ref), err_msg="C vs NumPy reference")
    reason = _glibc_fma_host()
    if reason:
        pytest.skip(reason)
    glibc = _map(lib, "map_glibc_expf", args)
    np.testing.assert_array_equal(_bits(c), _bits(glibc), err_msg="C vs glibc expf")


def test_expf_strided_sweep_of_negative_floats(lib):
    reason = _glibc_fma_host()
    if reason:
        pytest.skip(reason)
    x = np.arange(0x80000000, 0xFF800001, 4096, dtype=np.uint64).astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(_bits(_map(lib, "map_mcc_expf", x)), _bits(_map(lib, "map_glibc_expf", x)))


def test_logf_on_every_float_in_the_exp_sum_range(lib):
    reason = _glibc_fma_host()
    if reason:
        pytest.skip(reason)
    lo, hi = (int(_bits(np.float32(v))) for v in (1.0, 10.0))
    assert lib.logf_mismatches(lo, hi) == 0  # 27,262,977 floats


def test_logf_reference_matches_c_and_glibc_on_a_sample(lib):
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(1, 10, 3000), rng.uniform(1, 1.001, 1000), [1.0, 10.0]]).astype(np.float32)
    ref = libm.logf_array(x)
    np.testing.assert_array_equal(_bits(_map(lib, "map_mcc_logf", x)), _bits(ref), err_msg="C vs NumPy reference")
    reason = _glibc_fma_host()
    if reason:
        pytest.skip(reason)
    np.testing.assert_array_equal(_bits(_map(lib, "map_glibc_logf", x)), _bits(ref), err_msg="glibc vs reference")


def test_special_values(lib):
    x = np.array([0.0, -0.0, np.inf, -np.inf, -1.0, 1.0, 1e-45, 1e-40, -87.5, -103.5, -104.0, 88.0, 89.0],
                 dtype=np.float32)
    for name, ref in (("map_mcc_expf", libm.expf), ("map_mcc_logf", libm.logf)):
        c = _map(lib, name, x)
        r = np.array([ref(v) for v in x], dtype=np.float32)
        assert (np.isnan(c) == np.isnan(r)).all(), name
        ok = ~np.isnan(c)
        np.testing.assert_array_equal(_bits(c[ok]), _bits(r[ok]), err_msg=name)


def test_dequantize_float_product_equals_tflm_double_product():
    """TFLM dequantizes as ``float(double(scale) * (q - zp))``; the C does ``float(q - zp) * scale``: both round the
    exact product once (a 9-bit integer times a 24-bit significand fits a double)."""
    _, scale, zp = _lenet_exp_arguments()
    q = np.arange(-128, 128)
    ours = (q - zp).astype(np.float32) * np.float32(scale)
    tflm = (np.float64(np.float32(scale)) * (q - zp)).astype(np.float32)
    np.testing.assert_array_equal(_bits(ours), _bits(tflm))
