/*
 * mcc runtime kernels: portable C99, int8, no malloc, no libc beyond memcpy/memset.
 *
 * Every kernel reproduces mcc's reference interpreter bit for bit (TFLite integer semantics). Layouts: activations
 * NHWC, conv weights OHWI, depthwise weights [1][KH][KW][C*M], fully-connected weights [N][K]. Parameters arrive
 * in a const struct generated per layer; per-channel requantization multipliers and shifts in const arrays.
 */
#ifndef MCC_KERNELS_H
#define MCC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MCC_ALIGNED(n) __attribute__((aligned(n)))
#else
#define MCC_ALIGNED(n)
#endif

/* ---- fixed-point helpers (gemmlowp / TFLite semantics) ------------------------------------------------------ */

/* High 32 bits of 2*a*b, rounded; saturates the single overflowing case a == b == INT32_MIN. */
static inline int32_t mcc_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (int64_t)1 << 30 : 1 - ((int64_t)1 << 30);
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent, rounded to nearest, ties away from zero; exponent in [0, 31]. */
static inline int32_t mcc_rdbpot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * multiplier * 2^(shift - 31) with TFLite's rounding (MultiplyByQuantizedMultiplier). */
static inline int32_t mcc_mbqm(int32_t x, int32_t multiplier, int32_t shift) {
    const int left = shift > 0 ? (int)shift : 0;
    const int right = shift > 0 ? 0 : (int)-shift;
    const int32_t shifted = (int32_t)(uint32_t)((uint32_t)x << left); /* wraps like the reference */
    return mcc_rdbpot(mcc_srdhm(shifted, multiplier), right);
}

/* a + b wrapping modulo 2^32 like the int32 accumulators of the reference (defined behaviour, no UB on overflow). */
static inline int32_t mcc_add_wrap(int32_t a, int32_t b) {
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t mcc_clamp(int32_t x, int32_t lo, int32_t hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

/* Parameter struct fields: 16-bit in a size-first build (MCC_SIZE_FIRST, defined below) unless a value of the model
   does not fit (the generated copy of this header then defines MCC_PARAMS32), else 32-bit. */
#if defined(__OPTIMIZE_SIZE__) && !defined(MCC_PARAMS32) && !defined(MCC_GEMM_WIDE) && !defined(MCC_SPEED_FIRST)
typedef int16_t mcc_pint;
#else
typedef int32_t mcc_pint;
#endif

/* ---- convolution ------------------------------------------------------------------------------------------- */

typedef struct {
    mcc_pint batch, in_h, in_w, in_c;
    mcc_pint out_h, out_w, out_c;
    mcc_pint k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
    mcc_pint groups;           /* nn.conv2d: channel groups; depthwise: unused (1) */
    mcc_pint depth_multiplier; /* depthwise only */
    mcc_pint in_offset;        /* minus the input zero point */
    mcc_pint w_offset;         /* minus the weight zero point (per-tensor; 0 for symmetric weights) */
    mcc_pint out_zp, act_min, act_max;
} mcc_conv_params;

/* nn.conv2d, int8. bias may be NULL; mult/shift have out_c entries. scratch: mcc_conv2d_s8_scratch_bytes(p)
   bytes, 8-byte aligned (NULL when that is 0). */
void mcc_conv2d_s8(const mcc_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                   const int32_t *mult, const int32_t *shift, int8_t *out, int16_t *scratch);
size_t mcc_conv2d_s8_scratch_bytes(const mcc_conv_params *p);

/* nn.depthwise_conv2d in place, one channel (or, for 3x3 stride 1 and C a multiple of 4, one block of four channels
   with a ring of lines on the stack) at a time (batch 1, depth multiplier 1): out may be in. plane:
   mcc_depthwise_planar_scratch_bytes(p) bytes. rq: three requantization words per channel (mcc_requant_rq). */
void mcc_depthwise_conv2d_s8_planar(const mcc_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                                    const int32_t *rq, int8_t *out, int8_t *plane);
size_t mcc_depthwise_planar_scratch_bytes(const mcc_conv_params *p);

/* ---- convolution and fully connected as an int8 x int16 GEMM (runtime_c/mcc_gemm.c) ----------------------- */

/* Which weight layout the GEMM kernels read, fixed when the C is compiled: MCC_GEMM_NARROW keeps the weights as
   bytes (unpacked with SXTB16 at run time: half the flash, slower); otherwise they are 16-bit, twice the flash.
   A size-first build (GCC's -Os defines __OPTIMIZE_SIZE__) takes the narrow layout unless MCC_GEMM_WIDE is
   defined; -DMCC_GEMM_NARROW forces it at any level. The weight file holds both layouts under the same #if, so
   only one is compiled in. */
#if !defined(MCC_GEMM_NARROW) && defined(__OPTIMIZE_SIZE__) && !defined(MCC_GEMM_WIDE)
#define MCC_GEMM_NARROW 1
#endif

/* Size-first kernels and tables (MCC_SIZE_FIRST): a size-first build (-Os) with the byte layout compiles compact
   GEMM and depthwise kernels, one generic function each, and their packed requantization tables (the generated
   code's "#if defined(MCC_SIZE_FIRST)" arrays: backends/c/emitters/gemm.py small_requant); -DMCC_SIZE_FIRST forces
   them at any level (with the byte layout), -DMCC_SPEED_FIRST keeps the speed-first kernels at -Os. */
#if !defined(MCC_SIZE_FIRST) && defined(__OPTIMIZE_SIZE__) && defined(MCC_GEMM_NARROW) && !defined(MCC_SPEED_FIRST)
#define MCC_SIZE_FIRST 1
#endif
#if defined(MCC_SIZE_FIRST) && !defined(MCC_GEMM_NARROW)
#define MCC_GEMM_NARROW 1
#endif

/* A build that compiles the GEMM's instances of fixed shape (mcc_gemm.c, MCC_GEMM_SHAPES): speed-first, the DSP
   extension, the 16-bit layout, GCC 11 or later. Their weight arrays interleave each block's bias and requantization
   rows with its weights (the generated "#elif defined(MCC_GEMM_FIXED_BUILD)" arrays, backends/c/emitters/gemm.py
   interleave_block_words). */
#if defined(__ARM_FEATURE_DSP) && !defined(MCC_GEMM_NARROW) && defined(__OPTIMIZE__) && \
    !defined(__OPTIMIZE_SIZE__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define MCC_GEMM_FIXED_BUILD 1
#endif

#if defined(MCC_SIZE_FIRST)
/* The requantized, clamped output of channel c (of `channels`) for accumulator acc, TFLite's
   MultiplyByQuantizedMultiplier bit for bit, from a size-first table: word 0 the header (base shift s0 in bits 0-7,
   the output zero point in bits 8-15, bit 16 the wide form, bits 17-19 hb); then per channel the multiplier's bits
   0-29 with the low two bits of shift - s0 in bits 30-31 (a nonzero multiplier lies in [2^30, 2^31)), followed by
   the higher bits of shift - s0, hb bits per channel, packed into bytes; or in the wide form the multiplier,
   followed by the shifts as int8. */
#if defined(__GNUC__) || defined(__clang__)
/* one copy in the image: every kernel file that calls it compiles a weak definition, the linker keeps one */
#define MCC_RQ_SMALL_DEF __attribute__((weak)) int8_t
int8_t mcc_rq_small(const int32_t *rq, int32_t channels, int32_t c, int32_t acc, int32_t lo, int32_t hi);
#else
#define MCC_RQ_SMALL_DEF static inline int8_t
#endif
MCC_RQ_SMALL_DEF mcc_rq_small(const int32_t *rq, int32_t channels, int32_t c, int32_t acc, int32_t lo, int32_t hi) {
    const uint32_t head = (uint32_t)rq[0];
    const uint32_t word = (uint32_t)rq[1 + c];
    int32_t m, s;
    if (head & 0x10000u) {
        m = (int32_t)word;
        s = ((const int8_t *)(const void *)(rq + 1 + channels))[c];
    } else {
        const uint32_t hb = (head >> 17) & 7u; /* more bits of the shift's offset, packed after the words */
        uint32_t d = word >> 30;
        if (hb) {
            const uint32_t bit = (uint32_t)c * hb;
            d |= (((const uint8_t *)(const void *)(rq + 1 + channels))[bit >> 3] >> (bit & 7u) & ((1u << hb) - 1u)) << 2;
        }
        m = (int32_t)((word & 0x3FFFFFFFu) | 0x40000000u);
        s = (int32_t)(int8_t)(uint8_t)(head & 0xFFu) + (int32_t)d;
    }
    int32_t v;
    if (s < 0) { /* a right shift r = -s: both roundings in one 64-bit sum, exact for every accumulator */
        int64_t t = (int64_t)acc * m + ((int64_t)1 << 30);
        t += (int64_t)(((uint32_t)1 << (-s - 1)) - (t < 0 ? 1u : 0u)) * 2147483648LL;
        v = (int32_t)(t >> 32) >> (-s - 1);
    } else { /* a left shift (wrapping like the reference), then the rounding doubling high multiply: for a positive
                multiplier, (x m + 2^30) >> 31 rounds half away from zero like gemmlowp's nudge and truncation */
        const int32_t x = (int32_t)((uint32_t)acc << s);
        v = (int32_t)(((int64_t)x * m + ((int64_t)1 << 30)) >> 31);
    }
    return (int8_t)mcc_clamp(v + (int32_t)(int8_t)(uint8_t)((head >> 8) & 0xFFu), lo, hi);
}
#endif

typedef struct {
    mcc_pint batch, in_h, in_w, in_c;
    mcc_pint out_h, out_w, out_c;
    mcc_pint k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
    mcc_pint depth;        /* weights per output channel as laid out: k_h*k_w*in_c, rounded up to 4 with im2col */
    mcc_pint pad_value;    /* the input zero point: the raw value of a tap over the padding */
#if !defined(MCC_SIZE_FIRST) /* a size-first build has the zero point in its requantization table */
    mcc_pint out_zp;
#endif
    mcc_pint act_min, act_max;
#if !defined(MCC_SIZE_FIRST)
    mcc_pint rq_fast;      /* 1: every channel's requantization row is the fast {m, h, r} (see mcc_gemm.c); 2: the
                             same with the output zero point folded into h (out_zp is then 0) */
#endif
    mcc_pint column;       /* the column: 0 int16 (taps in window order), 1 raw input bytes (byte_column: the pixel
                             in place or an int8 im2col column), 2 int16 row-split (each window row's whole groups of
                             four taps, then the rows' last k_w*in_c % 4 taps; compiler.ops.conv.gemm_row_split) */
} mcc_gemm_params;

/* nn.conv2d with one group, or nn.fully_connected (in_h = 1, in_w = rows, 1x1 window). w: the packed weights of
   backends/c/emitters/gemm.py; bias: folded bias per output channel; rq: per output channel {multiplier, right shift, 2^(right shift - 1)}
   when the fast requantization is proved exact for it, else {multiplier, shift, 0}. scratch: mcc_conv_gemm_s8_scratch_bytes(p) bytes (NULL when that is 0). */
void mcc_conv_gemm_s8(const mcc_gemm_params *p, const int8_t *in, const int32_t *w, const int32_t *bias,
                      const int32_t *rq, int8_t *out, int8_t *scratch);
size_t mcc_conv_gemm_s8_scratch_bytes(const mcc_gemm_params *p);

#ifdef __cplusplus
}
#endif

/* Kernel families declared in their own headers (each included here, so generated code includes one header). */
#include "mcc_compute.h" /* depthwise, fully connected, matmul, pooling, mean, add, mul */
#include "mcc_data.h"    /* lookup-table unary ops, softmax, pad, concat, transpose, resize, copy */

#endif /* MCC_KERNELS_H */
