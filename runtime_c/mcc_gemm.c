/* nn.conv2d (groups 1) and nn.fully_connected as an int8 x int16 GEMM: one output pixel (or row) at a time, four
 * output channels at a time, with Armv7E-M SMLAD on two 16-bit products per instruction.
 *
 * Offline (backends/c/emitters/gemm.py) the weights become (w - weight zero point), blocked by four output
 * channels and, per group of four taps k..k+3, paired as (k, k+2) and (k+1, k+3): the order in which SXTB16 and
 * SXTB16 ROR 8 unpack four input bytes. The input offset is folded into the bias (bias + in_offset * sum w), so the
 * kernel multiplies raw input bytes; a padded tap is the input zero point, whose contribution the fold cancels.
 * Two layouts of the same weights exist, chosen when the C is compiled (MCC_GEMM_NARROW, see mcc_kernels.h):
 * 16-bit values packed two per word (twice the flash, no unpacking) or the original bytes, four per word, unpacked
 * with SXTB16 at run time.
 *
 * Requantization is TFLite's MultiplyByQuantizedMultiplier bit for bit. For an output channel whose accumulators
 * the emitter has proved below 2^30 in magnitude and whose shift is a right shift (marked by a non-zero rounding
 * half in its requantization row), it is SMMLAR on the doubled accumulator (gemmlowp's rounding doubling high
 * multiply, exactly, since 2*acc cannot overflow), a sign fix and an arithmetic shift; otherwise mcc_mbqm.
 *
 * A 1x1 window without padding reads the input pixel in place; any other window is first copied, as raw bytes,
 * into an im2col column of p->depth bytes in the scratch buffer (taps over the padding hold the input zero point,
 * the tail up to a multiple of four holds zeros). Output pixels are written in raster order, all channels of a
 * pixel before the next pixel is read, which is the memory planner's overlap contract (compiler/overlap.py). */
#include <string.h>

#include "mcc_kernels.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

static int mcc_gemm_direct(const mcc_gemm_params *p) {
    return p->k_h == 1 && p->k_w == 1 && p->pad_top == 0 && p->pad_left == 0 &&
           (p->out_h - 1) * p->stride_h < p->in_h && (p->out_w - 1) * p->stride_w < p->in_w;
}

size_t mcc_conv_gemm_s8_scratch_bytes(const mcc_gemm_params *p) {
    if (mcc_gemm_direct(p)) {
        return 0;
    }
    return (size_t)((p->k_h * p->k_w * p->in_c + 3) & ~3);
}

static inline uint32_t mcc_read32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v); /* one (unaligned) LDR on Armv7-M */
    return v;
}

/* The requantized, clamped output of one accumulator; rq = {multiplier, shift, rounding half}. */
typedef struct {
    int32_t zp, lo, hi, full; /* full: the clamp is the whole int8 range */
} mcc_gemm_out;

static inline int8_t mcc_gemm_requant(mcc_gemm_out q, int32_t acc, const int32_t *rq) {
    int32_t v;
    const int32_t h = rq[2];
    if (h > 0) {
        /* rq[1] = right shift r >= 1, h = 2^(r-1); |acc| < 2^30 */
        const int32_t acc2 = (int32_t)((uint32_t)acc << 1);
#if defined(__ARM_FEATURE_DSP)
        int32_t t;
        __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"(acc2), "r"(rq[0]), "r"(h));
#else
        const int32_t t = (int32_t)((((int64_t)acc2 * rq[0]) + ((int64_t)h << 32) + 0x80000000LL) >> 32);
#endif
        /* t = srdhm(acc, m) + 2^(r-1); the sign of acc stands for the sign of srdhm (both agree unless it is 0) */
        v = (t + (acc2 >> 31)) >> rq[1];
    } else if (h < 0) {
        /* any accumulator, right shift r = rq[1] >= 1, h = -2^(r-1): both roundings in one 64-bit sum,
           floor((a*m + 2^30 + (2^(r-1) - [srdhm < 0]) * 2^31) / 2^(31 + r)) */
        int64_t t = (int64_t)acc * rq[0] + (1LL << 30);
        t += (int64_t)((uint32_t)(-h) - (t < 0 ? 1u : 0u)) << 31;
        v = (int32_t)(t >> 32) >> (rq[1] - 1);
    } else {
        v = mcc_mbqm(acc, rq[0], rq[1]);
    }
    v += q.zp;
#if defined(__ARM_FEATURE_DSP)
    v = __ssat(v, 8);
    if (!q.full) {
        v = mcc_clamp(v, q.lo, q.hi);
    }
    return (int8_t)v;
#else
    (void)q.full;
    return (int8_t)mcc_clamp(v, q.lo, q.hi);
#endif
}

#if defined(MCC_GEMM_NARROW)
#define MCC_GEMM_WORDS_PER_GROUP 1 /* per output channel: four weight bytes */
#else
#define MCC_GEMM_WORDS_PER_GROUP 2 /* per output channel: (k, k+2) and (k+1, k+3) as 16-bit pairs */
#endif

#if !defined(__ARM_FEATURE_DSP)
/* Portable SMLAD on (lo, hi) 16-bit halves; wraps like the instruction. */
static inline int32_t mcc_smlad(uint32_t a, uint32_t b, int32_t acc) {
    const int32_t p0 = (int32_t)(int16_t)(a & 0xFFFFu) * (int32_t)(int16_t)(b & 0xFFFFu);
    const int32_t p1 = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)p0 + (uint32_t)p1);
}

/* Portable SXTB16: bytes 0 and 2 sign-extended into the two halves. */
static inline uint32_t mcc_sxtb16(uint32_t x) {
    const uint32_t lo = (uint32_t)(int32_t)(int8_t)(x & 0xFFu) & 0xFFFFu;
    const uint32_t hi = (uint32_t)(int32_t)(int8_t)((x >> 16) & 0xFFu) << 16;
    return lo | hi;
}
#define MCC_SMLAD(a, b, acc) mcc_smlad((a), (b), (acc))
#define MCC_SXTB16(x) mcc_sxtb16(x)
#define MCC_SXTB16_ROR8(x) mcc_sxtb16((x) >> 8)
#else
#define MCC_SMLAD(a, b, acc) __smlad((int16x2_t)(a), (int16x2_t)(b), (acc))
#define MCC_SXTB16(x) ((uint32_t)__sxtb16((int8x4_t)(x)))
static inline uint32_t mcc_sxtb16_ror8(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#define MCC_SXTB16_ROR8(x) mcc_sxtb16_ror8(x)
#endif

static inline uint64_t mcc_read64(const void *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v); /* one LDRD on Armv7-M (word-aligned) */
    return v;
}

/* Adds one group of four taps of one output channel to acc: xa = (x0, x2), xb = (x1, x3). */
#if defined(MCC_GEMM_NARROW)
#define MCC_GEMM_MAC(acc, xa, xb, wp)                               \
    do {                                                            \
        const uint32_t w_ = (uint32_t)(wp)[0];                      \
        (acc) = MCC_SMLAD((xa), MCC_SXTB16(w_), (acc));             \
        (acc) = MCC_SMLAD((xb), MCC_SXTB16_ROR8(w_), (acc));        \
    } while (0)
#else
#define MCC_GEMM_MAC(acc, xa, xb, wp)                               \
    do {                                                            \
        const uint64_t w_ = mcc_read64(wp);                         \
        (acc) = MCC_SMLAD((xa), (uint32_t)w_, (acc));               \
        (acc) = MCC_SMLAD((xb), (uint32_t)(w_ >> 32), (acc));       \
    } while (0)
#endif

/* Four output channels over one group of four taps at xp; advances xp and wp. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCC_GEMM_NARROW)
/* GCC's Cortex-M7 tuning never pairs the weight loads into LDRD; one group is 1 LDR, 2 SXTB16, 4 LDRD, 8 SMLAD. */
#define MCC_GEMM_GROUP4(xp, wp)                                                                     \
    do {                                                                                            \
        uint32_t xw_, xa_, w0_, w1_;                                                                \
        __asm__("ldr %[xw], [%[x]], #4\n\t"                                                       \
                "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                               \
                "sxtb16 %[xa], %[xw]\n\t"                                                         \
                "sxtb16 %[xw], %[xw], ror #8\n\t"                                                 \
                "smlad %[a0], %[xa], %[w0], %[a0]\n\t"                                            \
                "smlad %[a0], %[xw], %[w1], %[a0]\n\t"                                            \
                "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                               \
                "smlad %[a1], %[xa], %[w0], %[a1]\n\t"                                            \
                "smlad %[a1], %[xw], %[w1], %[a1]\n\t"                                            \
                "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                               \
                "smlad %[a2], %[xa], %[w0], %[a2]\n\t"                                            \
                "smlad %[a2], %[xw], %[w1], %[a2]\n\t"                                            \
                "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                               \
                "smlad %[a3], %[xa], %[w0], %[a3]\n\t"                                            \
                "smlad %[a3], %[xw], %[w1], %[a3]"                                                  \
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(xp), [w] "+r"(wp), \
                  [xw] "=&r"(xw_), [xa] "=&r"(xa_), [w0] "=&r"(w0_), [w1] "=&r"(w1_)                \
                :                                                                                   \
                : "memory");                                                                        \
    } while (0)
#else
#define MCC_GEMM_GROUP4(xp, wp)                                     \
    do {                                                            \
        const uint32_t xw_ = mcc_read32(xp);                        \
        (xp) += 4;                                                  \
        const uint32_t xa_ = MCC_SXTB16(xw_);                       \
        const uint32_t xb_ = MCC_SXTB16_ROR8(xw_);                  \
        MCC_GEMM_MAC(a0, xa_, xb_, (wp));                           \
        MCC_GEMM_MAC(a1, xa_, xb_, (wp) + MCC_GEMM_WORDS_PER_GROUP);  \
        MCC_GEMM_MAC(a2, xa_, xb_, (wp) + 2 * MCC_GEMM_WORDS_PER_GROUP); \
        MCC_GEMM_MAC(a3, xa_, xb_, (wp) + 3 * MCC_GEMM_WORDS_PER_GROUP); \
        (wp) += 4 * MCC_GEMM_WORDS_PER_GROUP;                       \
    } while (0)
#endif

/* One output pixel: out[c] = requant(bias[c] + sum_k x[k] * w[c][k]) for every output channel. */
static void mcc_gemm_pixel(const mcc_gemm_params *p, const int8_t *x, const int32_t *w, const int32_t *bias,
                           const int32_t *rq, int8_t *out) {
    const int32_t groups = p->depth >> 2;
    const int32_t tail = p->depth & 3;
    const int32_t out_c = p->out_c;
    const mcc_gemm_out q = {p->out_zp, p->act_min, p->act_max, p->act_min == -128 && p->act_max == 127};
    const int32_t *wp = w;
    int32_t c = 0;
    for (; c + 4 <= out_c; c += 4) {
        int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
        const int8_t *xp = x;
        int32_t g = groups;
        for (; g >= 2; g -= 2) {
            MCC_GEMM_GROUP4(xp, wp);
            MCC_GEMM_GROUP4(xp, wp);
        }
        if (g) {
            MCC_GEMM_GROUP4(xp, wp);
        }
        for (int32_t t = 0; t < tail; ++t) { /* one word per tap and channel */
            const int32_t xv = xp[t];
            a0 = mcc_add_wrap(a0, xv * wp[t]);
            a1 = mcc_add_wrap(a1, xv * wp[tail + t]);
            a2 = mcc_add_wrap(a2, xv * wp[2 * tail + t]);
            a3 = mcc_add_wrap(a3, xv * wp[3 * tail + t]);
        }
        wp += 4 * tail;
        const int32_t *r = rq + 3 * c;
        out[c] = mcc_gemm_requant(q, a0, r);
        out[c + 1] = mcc_gemm_requant(q, a1, r + 3);
        out[c + 2] = mcc_gemm_requant(q, a2, r + 6);
        out[c + 3] = mcc_gemm_requant(q, a3, r + 9);
    }
    for (; c < out_c; ++c) { /* the last out_c % 4 channels, one at a time, same pairing */
        int32_t a0 = bias[c];
        const int8_t *xp = x;
        for (int32_t g = 0; g < groups; ++g) {
            const uint32_t xw = mcc_read32(xp);
            xp += 4;
            MCC_GEMM_MAC(a0, MCC_SXTB16(xw), MCC_SXTB16_ROR8(xw), wp);
            wp += MCC_GEMM_WORDS_PER_GROUP;
        }
        for (int32_t t = 0; t < tail; ++t) {
            a0 = mcc_add_wrap(a0, xp[t] * wp[t]);
        }
        wp += tail;
        out[c] = mcc_gemm_requant(q, a0, rq + 3 * c);
    }
}

/* The raw bytes of the window at (iy0, ix0), the zero point over the padding, zeros up to p->depth. */
static void mcc_gemm_im2col(const mcc_gemm_params *p, const int8_t *image, int32_t iy0, int32_t ix0, int8_t *col) {
    const int32_t row_bytes = p->k_w * p->in_c;
    const int inside_w = ix0 >= 0 && ix0 + (p->k_w - 1) * p->dil_w < p->in_w && p->dil_w == 1;
    int8_t *c = col;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            memset(c, p->pad_value, (size_t)row_bytes);
            c += row_bytes;
            continue;
        }
        const int8_t *row = image + (size_t)iy * p->in_w * p->in_c;
        if (inside_w) { /* the window's row is contiguous in NHWC */
            const int8_t *s = row + (size_t)ix0 * p->in_c;
            int32_t n = row_bytes;
            for (; n >= 4; n -= 4, s += 4, c += 4) {
                const uint32_t v = mcc_read32(s);
                memcpy(c, &v, 4);
            }
            for (; n > 0; --n) {
                *c++ = *s++;
            }
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (ix < 0 || ix >= p->in_w) {
                memset(c, p->pad_value, (size_t)p->in_c);
            } else {
                memcpy(c, row + (size_t)ix * p->in_c, (size_t)p->in_c);
            }
            c += p->in_c;
        }
    }
    for (int32_t k = (int32_t)(c - col); k < p->depth; ++k) {
        col[k] = 0;
    }
}

void mcc_conv_gemm_s8(const mcc_gemm_params *p, const int8_t *in, const int32_t *w, const int32_t *bias,
                      const int32_t *rq, int8_t *out, int8_t *scratch) {
    const int direct = mcc_gemm_direct(p);
    for (int32_t n = 0; n < p->batch; ++n) {
        const int8_t *image = in + (size_t)n * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                const int8_t *x;
                if (direct) {
                    x = image + ((size_t)iy0 * p->in_w + ix0) * p->in_c;
                } else {
                    mcc_gemm_im2col(p, image, iy0, ix0, scratch);
                    x = scratch;
                }
                mcc_gemm_pixel(p, x, w, bias, rq, out);
                out += p->out_c;
            }
        }
    }
}
