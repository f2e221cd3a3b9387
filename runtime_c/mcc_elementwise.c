/* nn.add and nn.mul, int8 with broadcasting over a 4-D output (strides of 0 repeat an operand). */
#include "mcc_kernels.h"

void mcc_add_s8(const mcc_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    const int32_t scale = (int32_t)1 << p->left_shift;
    for (int32_t i0 = 0; i0 < p->out_d0; ++i0) {
        for (int32_t i1 = 0; i1 < p->out_d1; ++i1) {
            for (int32_t i2 = 0; i2 < p->out_d2; ++i2) {
                const int8_t *a = in1 + (size_t)i0 * p->in1_s0 + (size_t)i1 * p->in1_s1 + (size_t)i2 * p->in1_s2;
                const int8_t *b = in2 + (size_t)i0 * p->in2_s0 + (size_t)i1 * p->in2_s1 + (size_t)i2 * p->in2_s2;
                for (int32_t i3 = 0; i3 < p->out_d3; ++i3) {
                    const int32_t x1 = (a[(size_t)i3 * p->in1_s3] + p->in1_offset) * scale;
                    const int32_t x2 = (b[(size_t)i3 * p->in2_s3] + p->in2_offset) * scale;
                    const int32_t sum = mcc_mbqm(x1, p->in1_mult, p->in1_shift) +
                                        mcc_mbqm(x2, p->in2_mult, p->in2_shift);
                    const int32_t y = mcc_mbqm(sum, p->out_mult, p->out_shift) + p->out_zp;
                    *out++ = (int8_t)mcc_clamp(y, p->act_min, p->act_max);
                }
            }
        }
    }
}

void mcc_mul_s8(const mcc_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    for (int32_t i0 = 0; i0 < p->out_d0; ++i0) {
        for (int32_t i1 = 0; i1 < p->out_d1; ++i1) {
            for (int32_t i2 = 0; i2 < p->out_d2; ++i2) {
                const int8_t *a = in1 + (size_t)i0 * p->in1_s0 + (size_t)i1 * p->in1_s1 + (size_t)i2 * p->in1_s2;
                const int8_t *b = in2 + (size_t)i0 * p->in2_s0 + (size_t)i1 * p->in2_s1 + (size_t)i2 * p->in2_s2;
                for (int32_t i3 = 0; i3 < p->out_d3; ++i3) {
                    const int32_t prod = (a[(size_t)i3 * p->in1_s3] + p->in1_offset) *
                                         (b[(size_t)i3 * p->in2_s3] + p->in2_offset);
                    const int32_t y = mcc_mbqm(prod, p->out_mult, p->out_shift) + p->out_zp;
                    *out++ = (int8_t)mcc_clamp(y, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* ---- same-shape add through per-input tables ----------------------------------------------------------------- */

/* The output requantization of the table kernel: (t1[a] + t2[b]) / 2 is TFLite's sum of the rescaled inputs and
   acc2 the doubled sum, |acc2| < 2^31. With hz = 2^(r-1) + out_zp * 2^r (fast_half) and r = -out_shift >= 1, SMMLAR
   gives floor((acc2 * m + 2^31) / 2^32) + hz = srdhm(sum, m) + 2^(r-1) + out_zp * 2^r (gemmlowp's high multiply
   rounds half up, so it is exactly this floor); adding -1 for a negative sum and shifting right by r is the
   rounding divide by 2^r, ties away from zero (a negative sum has srdhm <= 0, and at srdhm = 0 the -1 changes
   nothing since 2^(r-1) - 1 < 2^r), plus out_zp. */
static inline int32_t mcc_add_requant(int32_t acc2, int32_t m, int32_t hz, int32_t r, const int SIGN) {
#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__)
    int32_t t;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"(acc2), "r"(m), "r"(hz));
#else
    const int32_t t = (int32_t)(((int64_t)acc2 * m + (int64_t)hz * ((int64_t)1 << 32) + 0x80000000LL) >> 32);
#endif
    return (SIGN ? t + (acc2 >> 31) : t) >> r;
}

/* x clamped to [-128, 127]. */
static inline int32_t mcc_sat8(int32_t x) {
#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__)
    int32_t y;
    __asm__("ssat %0, #8, %1" : "=r"(y) : "r"(x));
    return y;
#else
    return x < INT8_MIN ? INT8_MIN : (x > INT8_MAX ? INT8_MAX : x);
#endif
}

/* The table kernel's loop: SIGN adds the -1 of a negative sum (left out only when add_tables checked, over every
   input pair, that it never changes a result). CLAMP 0: the activation range is all of int8 (saturate only);
   1: it ends at 127 (saturate, then raise to act_min); 2: any [act_min, act_max]. Element by element, each read
   before it is written: the elementwise overlap contract of compiler/overlap.py. */
static inline void mcc_add_lut_loop(const mcc_add_params *p, const int32_t *t1, const int32_t *t2, const int8_t *in1,
                                    const int8_t *in2, int8_t *out, int32_t n, const int SIGN, const int CLAMP) {
    const int32_t m = p->out_mult, hz = p->fast_half, r = -p->out_shift;
    const int32_t lo = p->act_min, hi = p->act_max;
#define MCC_ADD_ONE(j)                                                                                           \
    do {                                                                                                         \
        const int32_t acc2 = t1[(uint8_t)in1[j]] + t2[(uint8_t)in2[j]];                                          \
        int32_t y = mcc_add_requant(acc2, m, hz, r, SIGN);                                                       \
        if (CLAMP == 2) {                                                                                        \
            y = y < lo ? lo : (y > hi ? hi : y);                                                                 \
        } else {                                                                                                 \
            y = mcc_sat8(y);                                                                                     \
            y = CLAMP == 1 && y < lo ? lo : y;                                                                   \
        }                                                                                                        \
        out[j] = (int8_t)y;                                                                                      \
    } while (0)
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        MCC_ADD_ONE(i);
        MCC_ADD_ONE(i + 1);
        MCC_ADD_ONE(i + 2);
        MCC_ADD_ONE(i + 3);
    }
    for (; i < n; ++i) {
        MCC_ADD_ONE(i);
    }
#undef MCC_ADD_ONE
}

/* TFLite's rescaled input (x - zp) << 20 times m * 2^-e, rounded twice, from k = {3, -zp, mh, ml, h, e, sign}
   (add_standin in backends/c/emitters/compute.py, checked there against the table on all 256 inputs): gemmlowp's
   high multiply of x * 2^20 by m = mh * 2^11 + ml is floor((x * m + 2^10) / 2^11), and with the rounding divide by
   2^e folded in (one floor of a floor) the whole is (x * mh + ((x * ml + 2^10) >> 11) + h + (x < 0 ? sign : 0)) >> e,
   h = 2^(e-1) and sign = -1 for e >= 1 (ties away from zero), h = sign = 0 for e = 0; nothing overflows 32 bits. */
typedef struct {
    int32_t offset, mh, ml, h, e, sign;
} mcc_add_rescaler;

static inline mcc_add_rescaler mcc_add_rescaler_of(const int32_t *k) {
    const mcc_add_rescaler c = {k[1], k[2], k[3], k[4], k[5], k[6]};
    return c; /* held in registers: stores through int8_t pointers may alias the array */
}

static inline int32_t mcc_add_rescale(int32_t a, mcc_add_rescaler c) {
    const int32_t x = a + c.offset;
    return (x * c.mh + ((x * c.ml + 1024) >> 11) + c.h + ((x >> 31) & c.sign)) >> c.e;
}

/* mcc_add_s8_lut without tables: the rescaled inputs computed (mcc_add_rescale), then the same requantization. */
static void mcc_add_s8_arith(const mcc_add_params *p, const int32_t *k1, const int32_t *k2, const int8_t *in1,
                             const int8_t *in2, int8_t *out, int32_t n) {
    const mcc_add_rescaler c1 = mcc_add_rescaler_of(k1), c2 = mcc_add_rescaler_of(k2);
    const int32_t m = p->out_mult, hz = p->fast_half, r = -p->out_shift, sign = p->fast_sign;
    const int32_t shift = p->out_shift, zp = p->out_zp, lo = p->act_min, hi = p->act_max;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t sum = mcc_add_rescale(in1[i], c1) + mcc_add_rescale(in2[i], c2);
        int32_t y;
        if (hz != 0) {
            y = sign ? mcc_add_requant(sum * 2, m, hz, r, 1) : mcc_add_requant(sum * 2, m, hz, r, 0);
        } else {
            y = mcc_mbqm(sum, m, shift) + zp;
        }
        out[i] = (int8_t)mcc_clamp(y, lo, hi);
    }
}

void mcc_add_s8_lut(const mcc_add_params *p, const int32_t *t1, const int32_t *t2, const int8_t *in1,
                    const int8_t *in2, int8_t *out) {
    const int32_t n = p->out_d0 * p->out_d1 * p->out_d2 * p->out_d3;
    if ((t1[0] | t2[0]) & 1) { /* MCC_ADD_NO_TABLES: stand-ins for the tables (table words are even) */
        if (t1[0] == 3 && t2[0] == 3) {
            mcc_add_s8_arith(p, t1, t2, in1, in2, out, n);
        } else {
            mcc_add_s8(p, in1, in2, out);
        }
        return;
    }
    if (p->fast_half == 0) { /* no proof for the one-step requantization: TFLite's own on the summed tables */
        for (int32_t i = 0; i < n; ++i) {
            const int32_t sum = (t1[(uint8_t)in1[i]] + t2[(uint8_t)in2[i]]) / 2;
            const int32_t y = mcc_mbqm(sum, p->out_mult, p->out_shift) + p->out_zp;
            out[i] = (int8_t)mcc_clamp(y, p->act_min, p->act_max);
        }
        return;
    }
    const int clamp = p->act_max != INT8_MAX ? 2 : (p->act_min != INT8_MIN ? 1 : 0);
#if defined(__OPTIMIZE__) && !defined(__OPTIMIZE_SIZE__)
    if (!p->fast_sign && clamp == 0) { /* the usual residual add: a copy of the loop with constant flags */
        mcc_add_lut_loop(p, t1, t2, in1, in2, out, n, 0, 0);
        return;
    }
#endif
    mcc_add_lut_loop(p, t1, t2, in1, in2, out, n, p->fast_sign, clamp); /* flags tested per element */
}
