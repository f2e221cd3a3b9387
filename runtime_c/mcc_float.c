/* float32 ops at a model's float tail: q.dequantize and nn.log_softmax, with expf/logf in plain C (no libm).
 *
 * TFLM's float LOG_SOFTMAX calls std::exp/std::log, i.e. glibc's expf/logf on an x86-64 host. Those are not
 * correctly rounded (logf differs from the correctly rounded result on about 0.5 % of the floats in [1, 10]), so
 * a correctly rounded exp/log would not match TFLM. mcc_expf/mcc_logf therefore evaluate the same algorithms as
 * glibc >= 2.28 (from Arm's optimized-routines, MIT licence: a 32-entry 2^(i/32) table with a cubic for expf, a
 * 16-entry 1/c, log(c) table with a cubic for logf; the table values and coefficients below are theirs) in the
 * order of glibc's x86-64 FMA code path, which glibc selects on every CPU with FMA and AVX2. Each fused
 * multiply-add is emulated exactly with plain double operations (mcc_fma below), so the result does not depend
 * on the target having an FMA unit or on the compiler contracting expressions (build with -ffp-contract=off).
 * tests/test_float_libm.py and bench/libm_exhaustive.py compare them with the host's glibc.
 */
#include <string.h>

#include "mcc_kernels.h"

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint64_t d2u(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double u2d(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* ---- exact fused multiply-add from double operations ---------------------------------------------------------- */

/* a * b = *hi + *lo exactly (Dekker's product with Veltkamp's split; no overflow or underflow for our operands). */
static void two_product(double a, double b, double *hi, double *lo) {
    const double ca = a * 134217729.0; /* 2^27 + 1 */
    const double a_hi = ca - (ca - a);
    const double a_lo = a - a_hi;
    const double cb = b * 134217729.0;
    const double b_hi = cb - (cb - b);
    const double b_lo = b - b_hi;
    *hi = a * b;
    *lo = ((a_hi * b_hi - *hi) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo;
}

/* a + b = *sum + *err exactly (Knuth's two-sum). */
static void two_sum(double a, double b, double *sum, double *err) {
    const double s = a + b;
    const double bb = s - a;
    *err = (a - (s - bb)) + (b - bb);
    *sum = s;
}

/* a + b rounded to odd: the truncated sum with its last bit forced to 1 when the sum is inexact. */
static double add_round_to_odd(double a, double b) {
    double s, e;
    two_sum(a, b, &s, &e);
    uint64_t u = d2u(s);
    if (e != 0.0 && (u & 1u) == 0) {
        u = ((e > 0.0) == (s > 0.0)) ? u + 1 : u - 1; /* one step towards the exact sum */
        s = u2d(u);
    }
    return s;
}

/* fma(a, b, c) = a * b + c rounded once: Boldo and Melquiond's emulation (exact product, exact sum with c, the
   low parts added with rounding to odd, then one rounding to nearest). */
static double mcc_fma(double a, double b, double c) {
    double p_hi, p_lo, s_hi, s_lo;
    two_product(a, b, &p_hi, &p_lo);
    two_sum(c, p_hi, &s_hi, &s_lo);
    return s_hi + add_round_to_odd(s_lo, p_lo);
}

/* ---- expf ------------------------------------------------------------------------------------------------------ */

/* 2^(i/32) as bits, minus i << 47 (so adding k << 47 for k = i mod 32 scales by 2^(k/32)). */
static const uint64_t EXP_TABLE[32] = {
    0x3ff0000000000000u, 0x3fefd9b0d3158574u, 0x3fefb5586cf9890fu, 0x3fef9301d0125b51u,
    0x3fef72b83c7d517bu, 0x3fef54873168b9aau, 0x3fef387a6e756238u, 0x3fef1e9df51fdee1u,
    0x3fef06fe0a31b715u, 0x3feef1a7373aa9cbu, 0x3feedea64c123422u, 0x3feece086061892du,
    0x3feebfdad5362a27u, 0x3feeb42b569d4f82u, 0x3feeab07dd485429u, 0x3feea47eb03a5585u,
    0x3feea09e667f3bcdu, 0x3fee9f75e8ec5f74u, 0x3feea11473eb0187u, 0x3feea589994cce13u,
    0x3feeace5422aa0dbu, 0x3feeb737b0cdc5e5u, 0x3feec49182a3f090u, 0x3feed503b23e255du,
    0x3feee89f995ad3adu, 0x3feeff76f2fb5e47u, 0x3fef199bdd85529cu, 0x3fef3720dcef9069u,
    0x3fef5818dcfba487u, 0x3fef7c97337b9b5fu, 0x3fefa4afa2a490dau, 0x3fefd0765b6e4540u,
};
static const double EXP_INVLN2_32 = 0x1.71547652b82fep+0 * 32; /* 32 / ln 2 */
static const double EXP_SHIFT = 0x1.8p+52;                      /* rounds to an integer when added */
static const double EXP_C0 = 0x1.c6af84b912394p-5 / 32 / 32 / 32;
static const double EXP_C1 = 0x1.ebfce50fac4f3p-3 / 32 / 32;
static const double EXP_C2 = 0x1.62e42ff0c52d6p-1 / 32;

float mcc_expf(float x) {
    const uint32_t ix = f2u(x);
    const uint32_t abstop = (ix >> 20) & 0x7ffu;
    if (abstop >= 0x42bu) { /* |x| >= 88, inf or nan */
        if (ix == 0xff800000u) {
            return 0.0f;
        }
        if (abstop >= 0x7f8u) {
            return x + x;
        }
        if (x > 0x1.62e42ep6f) {
            return u2f(0x7f800000u); /* overflow: +inf */
        }
        if (x < -0x1.9fe368p6f) {
            return 0.0f;
        }
        if (x < -0x1.9d1d9ep6f) {
            return u2f(1u); /* glibc's "may underflow" result: the smallest subnormal */
        }
    }
    const double xd = (double)x;
    /* x * 32 / ln2 = k + r with an integer k (ties to even) and |r| <= 1/2 */
    double kd = mcc_fma(EXP_INVLN2_32, xd, EXP_SHIFT);
    const uint64_t ki = d2u(kd);
    kd -= EXP_SHIFT;
    const double r = mcc_fma(EXP_INVLN2_32, xd, -kd);
    /* exp(x) = 2^(k/32) * 2^(r/32) ~= s * (C0 r^3 + C1 r^2 + C2 r + 1) */
    const double s = u2d(EXP_TABLE[ki % 32] + (ki << 47));
    const double z = mcc_fma(EXP_C0, r, EXP_C1);
    const double r2 = r * r;
    double y = mcc_fma(EXP_C2, r, 1.0);
    y = mcc_fma(z, r2, y);
    return (float)(y * s);
}

/* ---- logf ------------------------------------------------------------------------------------------------------ */

/* For the 16 subintervals of [0x3f330000, 2 * 0x3f330000): 1/c and log(c) for a c near the middle. */
static const double LOG_INVC[16] = {
    0x1.661ec79f8f3bep+0, 0x1.571ed4aaf883dp+0, 0x1.49539f0f010bp+0,  0x1.3c995b0b80385p+0,
    0x1.30d190c8864a5p+0, 0x1.25e227b0b8eap+0,  0x1.1bb4a4a1a343fp+0, 0x1.12358f08ae5bap+0,
    0x1.0953f419900a7p+0, 0x1p+0,               0x1.e608cfd9a47acp-1, 0x1.ca4b31f026aap-1,
    0x1.b2036576afce6p-1, 0x1.9c2d163a1aa2dp-1, 0x1.886e6037841edp-1, 0x1.767dcf5534862p-1,
};
static const double LOG_LOGC[16] = {
    -0x1.57bf7808caadep-2, -0x1.2bef0a7c06ddbp-2, -0x1.01eae7f513a67p-2, -0x1.b31d8a68224e9p-3,
    -0x1.6574f0ac07758p-3, -0x1.1aa2bc79c81p-3,   -0x1.a4e76ce8c0e5ep-4, -0x1.1973c5a611cccp-4,
    -0x1.252f438e10c1ep-5, 0x0p+0,                0x1.aa5aa5df25984p-5,  0x1.c5e53aa362eb4p-4,
    0x1.526e57720db08p-3,  0x1.bc2860d22477p-3,   0x1.1058bc8a07ee1p-2,  0x1.4043057b6ee09p-2,
};
static const double LOG_LN2 = 0x1.62e42fefa39efp-1;
static const double LOG_A0 = -0x1.00ea348b88334p-2;
static const double LOG_A1 = 0x1.5575b0be00b6ap-2;
static const double LOG_A2 = -0x1.ffffef20a4123p-2;

float mcc_logf(float x) {
    uint32_t ix = f2u(x);
    if (ix == 0x3f800000u) {
        return 0.0f;
    }
    if (ix - 0x00800000u >= 0x7f800000u - 0x00800000u) { /* zero, subnormal, negative, inf or nan */
        if ((ix << 1) == 0) {
            return u2f(0xff800000u); /* log(+-0) = -inf */
        }
        if (ix == 0x7f800000u) {
            return x;
        }
        if ((ix & 0x80000000u) != 0 || (ix << 1) >= 0xff000000u) {
            return (x - x) / (x - x); /* nan */
        }
        ix = f2u(x * 0x1p23f) - (23u << 23); /* subnormal: normalise */
    }
    /* x = 2^k z with z in [0x3f330000, 2 * 0x3f330000), in subinterval i; log(x) = log1p(z/c - 1) + log(c) + k ln2 */
    const uint32_t tmp = ix - 0x3f330000u;
    const uint32_t i = (tmp >> 19) % 16;
    const int32_t k = (int32_t)(tmp >> 23) - ((tmp & 0x80000000u) != 0 ? 512 : 0); /* arithmetic shift */
    const double z = (double)u2f(ix - (tmp & 0xff800000u));
    const double y0 = mcc_fma((double)k, LOG_LN2, LOG_LOGC[i]);
    const double r = mcc_fma(z, LOG_INVC[i], -1.0);
    double y = mcc_fma(r, LOG_A1, LOG_A2);
    const double r2 = r * r;
    const double t = r + y0;
    y = mcc_fma(r2, LOG_A0, y);
    y = mcc_fma(r2, y, t);
    return (float)y;
}

/* ---- kernels --------------------------------------------------------------------------------------------------- */

void mcc_dequantize_s8_f32(const int8_t *in, float *out, int32_t n, int32_t zero_point, float scale) {
    for (int32_t i = 0; i < n; ++i) {
        out[i] = (float)((int32_t)in[i] - zero_point) * scale;
    }
}

void mcc_log_softmax_f32(const mcc_softmax_params *p, const float *in, float *out) {
    for (int32_t r = 0; r < p->rows; ++r) {
        const float *x = in + (size_t)r * (size_t)p->depth;
        float *y = out + (size_t)r * (size_t)p->depth;
        float max = -0x1.fffffep127f; /* std::numeric_limits<float>::lowest() */
        for (int32_t i = 0; i < p->depth; ++i) {
            max = max < x[i] ? x[i] : max; /* std::max(max, x[i]) */
        }
        float sum = 0.0f;
        for (int32_t i = 0; i < p->depth; ++i) {
            sum += mcc_expf(x[i] - max);
        }
        const float log_sum = mcc_logf(sum);
        for (int32_t i = 0; i < p->depth; ++i) {
            y[i] = (x[i] - max) - log_sum;
        }
    }
}
