/* nn.mean over one contiguous run of axes, int8, TFLM's MEAN (reference_ops::QuantizedMeanOrSum). */
#include "mcc_kernels.h"

/* floor((a * b + 2^31) / 2^32) + c (SMMLAR). */
static inline int32_t mcc_mean_smmlar(int32_t a, int32_t b, int32_t c) {
#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__)
    int32_t t;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"(a), "r"(b), "r"(c));
    return t;
#else
    return (int32_t)(((int64_t)a * b + (int64_t)c * ((int64_t)1 << 32) + 0x80000000LL) >> 32);
#endif
}

/* How the sums are requantized, chosen once per call from bounds on the sum (|sum| <= reduce * 255):
   LEFT (shift >= 0, sum << (shift + 1) fits int32): gemmlowp's high multiply of sum << shift is
   floor((2 * (sum << shift) * m + 2^31) / 2^32) exactly (it rounds half up), one SMMLAR that also adds out_zp.
   RIGHT (shift = -r < 0, 2 * sum fits, |2^(r-1) + out_zp * 2^r| < 2^30): the same high multiply of the doubled sum
   plus that constant, -1 for a negative sum (m > 0, so srdhm <= 0 then; at 0 the -1 changes nothing) and a right
   shift by r is the rounding divide by 2^r, ties away from zero, plus out_zp. GENERIC: TFLite's routine. */
enum { MCC_MEAN_GENERIC, MCC_MEAN_LEFT, MCC_MEAN_RIGHT };

/* The parameters of the requantization, read once (stores through int8_t pointers may alias the struct). */
typedef struct {
    int32_t mult, shift, out_zp, hz;
} mcc_mean_rq;

static inline int8_t mcc_mean_out(int32_t sum, mcc_mean_rq q, int mode) {
    int32_t y;
    if (mode == MCC_MEAN_LEFT) {
        y = mcc_mean_smmlar((int32_t)((uint32_t)sum << (q.shift + 1)), q.mult, q.out_zp);
    } else if (mode == MCC_MEAN_RIGHT) {
        y = (mcc_mean_smmlar(sum * 2, q.mult, q.hz) + (sum >> 31)) >> -q.shift;
    } else {
        y = mcc_mbqm(sum, q.mult, q.shift) + q.out_zp;
    }
    return (int8_t)mcc_clamp(y, INT8_MIN, INT8_MAX);
}

static inline void mcc_mean_loop(const mcc_mean_params *p, const int8_t *in, int8_t *out, const int MODE,
                                 int32_t hz) {
    /* the offsets are added once per sum: in int32 the same as once per element, as no partial sum overflows */
    const int32_t offset = (int32_t)((int64_t)p->reduce * p->in_offset);
    const int32_t reduce = p->reduce, inner = p->inner, outer = p->outer;
    const mcc_mean_rq q = {p->mult, p->shift, p->out_zp, hz};
    if (inner == 1) { /* each mean over a contiguous run */
        const int8_t *x = in;
        for (int32_t o = 0; o < outer; ++o) {
            int32_t sum = offset;
            for (int32_t r = 0; r < reduce; ++r) {
                sum += *x++;
            }
            out[o] = mcc_mean_out(sum, q, MODE);
        }
        return;
    }
    for (int32_t o = 0; o < outer; ++o) {
        const int8_t *x = in + (size_t)o * reduce * inner;
        int8_t *y = out + (size_t)o * inner;
        int32_t i = 0;
        for (; i + 4 <= inner; i += 4) { /* four outputs at a time, each sum down its column */
            int32_t s[4];
            mcc_window_sum4(x + i, 1, reduce, (size_t)reduce * inner, (size_t)inner, s);
            for (int k = 0; k < 4; ++k) {
                y[i + k] = mcc_mean_out(s[k] + offset, q, MODE);
            }
        }
        for (; i < inner; ++i) {
            int32_t sum = 0;
            for (int32_t r = 0; r < reduce; ++r) {
                sum += x[(size_t)r * inner + i];
            }
            y[i] = mcc_mean_out(sum + offset, q, MODE);
        }
    }
}

void mcc_mean_s8(const mcc_mean_params *p, const int8_t *in, int8_t *out) {
    const int64_t bound = (int64_t)p->reduce * 255; /* |sum of (x + in_offset)| */
    const int64_t hz = p->shift < 0 && p->shift >= -31
                           ? ((int64_t)1 << (-p->shift - 1)) + (int64_t)p->out_zp * ((int64_t)1 << -p->shift)
                           : 0;
    int mode = MCC_MEAN_GENERIC;
    if (p->mult >= 0 && p->shift >= 0 && p->shift < 30 && (bound << (p->shift + 1)) < ((int64_t)1 << 31)) {
        mode = MCC_MEAN_LEFT;
    } else if (p->mult >= 0 && p->shift < 0 && p->shift >= -31 && 2 * bound < ((int64_t)1 << 31) &&
               hz < ((int64_t)1 << 30) && hz > -((int64_t)1 << 30)) {
        mode = MCC_MEAN_RIGHT;
    }
    if (mode == MCC_MEAN_LEFT) { /* a constant mode per copy of the loop */
        mcc_mean_loop(p, in, out, MCC_MEAN_LEFT, (int32_t)hz);
    } else if (mode == MCC_MEAN_RIGHT) {
        mcc_mean_loop(p, in, out, MCC_MEAN_RIGHT, (int32_t)hz);
    } else {
        mcc_mean_loop(p, in, out, MCC_MEAN_GENERIC, 0);
    }
}
