/* nn.softmax, int8, over the last axis: TFLite's integer reference algorithm (gemmlowp fixed point).
 *
 * exp(beta * s_in * (x - max)) in Q0.31 depends only on the difference max - x in 0..255, so the per-layer
 * table holds it (computed at compile time with the interpreter's code; 0 beyond the overflow radius, which gives
 * the -128 the reference returns there). Per row the kernel sums the exps in Q12.19, takes gemmlowp's reciprocal
 * of the sum and scales each exp to the output quantization (1/256, -128).
 */
#include "mcc_kernels.h"

/* gemmlowp SaturatingRoundingMultiplyByPOT<e> for e in 1..30: x * 2^e, saturated to int32. */
static int32_t sat_left_shift(int32_t x, int e) {
    const int32_t threshold = (int32_t)(((int32_t)1 << (31 - e)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << e);
}

/* RoundingDivideByPOT for exponents 0..62 (the final softmax shift exceeds 31 once a row's sum reaches 512). */
static int32_t rdbpot_wide(int32_t x, int exponent) {
    const int64_t v = x;
    const int64_t mask = ((int64_t)1 << exponent) - 1;
    const int64_t remainder = v & mask;
    const int64_t threshold = (mask >> 1) + (v < 0 ? 1 : 0);
    return (int32_t)((v >> exponent) + (remainder > threshold ? 1 : 0));
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a) for a Q0.31 a in [0, 1), Newton-Raphson, Q0.31. */
static int32_t one_over_one_plus_x(int32_t a) {
    int64_t s = (int64_t)a + INT32_MAX; /* RoundingHalfSum(a, 1) */
    s += s >= 0 ? 1 : -1;
    const int32_t half_denominator = (int32_t)(s / 2);
    int32_t x = 1515870810 + mcc_srdhm(half_denominator, -1010580540); /* 48/17 - 32/17 * d, Q2.29 */
    for (int i = 0; i < 3; ++i) {
        const int32_t one_minus_dx = ((int32_t)1 << 29) - mcc_srdhm(half_denominator, x);
        x = x + sat_left_shift(mcc_srdhm(x, one_minus_dx), 2);
    }
    return sat_left_shift(x, 1);
}

static int count_leading_zeros(uint32_t v) {
#if defined(__GNUC__) || defined(__clang__)
    return v ? __builtin_clz(v) : 32;
#else
    int n = 0;
    while (n < 32 && (v & 0x80000000u) == 0) {
        v <<= 1;
        ++n;
    }
    return n;
#endif
}

#if defined(MCC_SIZE_FIRST)
/* A size-first build has no exp table: exp_table holds {input multiplier, input left shift, diff_min} (the
   emitter's softmax_params), and each exp is computed as the table's entries are (backends/c/emitters/softmax.py
   exp_table with compiler/ops/fixedpoint.py): gemmlowp's exp_on_negative_values on Q5.26, bit for bit. */
static const int32_t mcc_exp_barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};

static int32_t mcc_softmax_exp(const int32_t *p, int32_t d) {
    if (-d < p[2]) {
        return 0; /* beyond the radius: the reference's 0 */
    }
    const int32_t a = mcc_srdhm((int32_t)((uint32_t)-d << p[1]), p[0]); /* the scaled difference, Q5.26, <= 0 */
    if (a == 0) {
        return INT32_MAX;
    }
    const int32_t quarter = (int32_t)1 << 24;
    const int32_t amq = (a & (quarter - 1)) - quarter; /* in [-1/4, 0) */
    /* exp on [-1/4, 0): Taylor around -1/8 (Rescale Q5 -> Q0 cannot saturate here) */
    const int32_t x = (int32_t)((uint32_t)amq << 5) + ((int32_t)1 << 28);
    const int32_t x2 = mcc_srdhm(x, x), x3 = mcc_srdhm(x2, x), x4 = mcc_srdhm(x2, x2);
    const int32_t poly = mcc_rdbpot(mcc_srdhm(mcc_rdbpot(x4, 2) + x3, 715827883) + x2, 1);
    int32_t result = 1895147668 + mcc_srdhm(1895147668, x + poly);
    const int32_t remainder = amq - a;
    for (int k = 0; k < 7; ++k) { /* exp(-2^(k-2)) for each set bit of the multiple of 1/4 */
        if (remainder & ((int32_t)1 << (24 + k))) {
            result = mcc_srdhm(result, mcc_exp_barrel[k]);
        }
    }
    return result;
}
#define MCC_SOFTMAX_EXP(table, d) mcc_softmax_exp((table), (d))
#else
#define MCC_SOFTMAX_EXP(table, d) (table)[d]
#endif

void mcc_softmax_s8(const mcc_softmax_params *p, const int32_t *exp_table, const int8_t *in, int8_t *out) {
    if (p->depth <= 0) {
        return;
    }
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *x = in + (size_t)r * p->depth;
        int8_t *y = out + (size_t)r * p->depth;
        int32_t max = -128;
        for (int32_t i = 0; i < p->depth; ++i) {
            max = x[i] > max ? x[i] : max;
        }
        uint32_t sum = 0; /* Q12.19; at most 8191 terms of at most 2^19 */
        for (int32_t i = 0; i < p->depth; ++i) {
            sum += (uint32_t)mcc_rdbpot(MCC_SOFTMAX_EXP(exp_table, max - x[i]), 12);
        }
        /* GetReciprocal: sum = m * 2^num_bits_over_unit with m in [1, 2); the row max contributes 2^19 > 0. */
        const int headroom_plus_one = count_leading_zeros(sum);
        const int num_bits_over_unit = 12 - headroom_plus_one;
        const int32_t shifted_minus_one = (int32_t)((sum << headroom_plus_one) - 0x80000000u);
        const int32_t reciprocal = one_over_one_plus_x(shifted_minus_one);
        const int shift = num_bits_over_unit + 31 - 8;
        for (int32_t i = 0; i < p->depth; ++i) {
            const int32_t v = rdbpot_wide(mcc_srdhm(reciprocal, MCC_SOFTMAX_EXP(exp_table, max - x[i])), shift) - 128;
            y[i] = (int8_t)mcc_clamp(v, -128, 127);
        }
    }
}
