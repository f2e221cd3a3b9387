/* nn.conv2d (groups 1) and nn.fully_connected as an int8 x int16 GEMM: one output pixel (or row) at a time, four
 * output channels at a time, with Armv7E-M SMLAD on two 16-bit products per instruction.
 *
 * Offline (backends/c/emitters/gemm.py) the weights become (w - weight zero point), blocked by four output
 * channels and, per group of four taps k..k+3, paired as (k, k+2) and (k+1, k+3): the order in which SXTB16 and
 * SXTB16 ROR 8 unpack four input bytes; in a block, each pair of groups holds every channel's words of both groups
 * together (an odd last group follows, channel by channel). The input offset is folded into the bias
 * (bias + in_offset * sum w), so the
 * kernel multiplies raw input bytes; a padded tap is the input zero point, whose contribution the fold cancels.
 * Two layouts of the same weights exist, chosen when the C is compiled (MCC_GEMM_NARROW, see mcc_kernels.h):
 * 16-bit values packed two per word (twice the flash, no unpacking) or the original bytes, four per word, unpacked
 * with SXTB16 at run time.
 *
 * Requantization is TFLite's MultiplyByQuantizedMultiplier bit for bit. A layer with rq_fast set has, per
 * channel, {m, h, r} and is requantized as ((SMMLAR(2 acc, m, h) + (acc < 0 ? -1 : 0)) >> r) + zp (the emitter's
 * fast_layer proves it exact: accumulators below 2^30, or a near-dead channel encoded as a step; where it fits, the
 * emitter folds the output zero point into h, fold_zero_point, and zp is 0). In the 16-bit layout such a layer's
 * weights and bias are stored doubled (emit_gemm), so its accumulator already is 2 acc. Other layers have
 * per-channel rows {m, r, half}: for a channel whose accumulators the emitter has proved below 2^30 in magnitude and
 * whose shift is a right shift (half > 0), the same SMMLAR form; otherwise one 64-bit sum or mcc_mbqm.
 *
 * A convolution first expands each output pixel's window once into an int16 column in the scratch buffer (two
 * words (x0, x2), (x1, x3) per group of four taps; taps over the padding hold the input zero point, the tail up to a
 * multiple of four zeros), which every block of four output channels then reads with LDM: a 1x1 pixel and window
 * rows of whole groups straight from the input, other windows through an int8 column in the upper half of the
 * scratch, expanded down in place. A window whose rows are no whole groups and contiguous (a first layer of 1-3
 * input channels) has a row-split column (params column 2, the 16-bit weights permuted to match by the emitter; the
 * byte layout keeps window order and its build no row split): each row's whole groups expanded straight from the
 * input, then the rows' last taps packed together; only a window over the border is gathered tap by tap. With byte_column (params column 1, set by the memory planner where the int16 column
 * would raise the peak) and for fully connected layers the kernel multiplies raw input bytes instead, unpacked with SXTB16: a 1x1
 * pixel in place, else an int8 column of p->depth bytes. Output pixels are written in raster order, all channels of
 * a pixel before the next pixel is read, which is the memory planner's overlap contract (compiler/overlap.py). */
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
    /* the int16 column: the window's k_h * k_w * in_c taps rounded up to a multiple of four, two bytes each; with
       byte_column (column 1), none for a pixel read in place, else an int8 column of as many bytes */
    const size_t taps = (size_t)((p->k_h * p->k_w * p->in_c + 3) & ~3);
    if (p->column == 1) {
        return mcc_gemm_direct(p) ? 0 : taps;
    }
    return 2 * taps;
}

#if defined(MCC_SIZE_FIRST)
/* ---- size-first build: one compact kernel ---------------------------------------------------------------------
 * Every layer, whatever its column kind, runs the same loop on raw input bytes: a 1x1 pixel whose depth is its
 * channel count in place, any other window gathered into an int8 column at the start of the scratch (the input zero
 * point over the padding, zeros up to p->depth; the scratch holds at least that many bytes for every column kind).
 * The byte layout keeps window order (no row split), so one gather serves every layer. Per block of four output
 * channels (then one channel at a time for the last out_c % 4), the block's words in pack_weights order: per pair of
 * groups each channel's two words, an odd last group channel by channel, then each channel's depth % 4 tail taps.
 * The bias is the plain folded bias; requantization reads the packed size-first table (mcc_rq_small). Output
 * pixels in raster order, every channel of a pixel before the next pixel is read (compiler/overlap.py). */
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* The two halves SXTB16 unpacks a word of four bytes into: bytes (0, 2) and (1, 3) as 16-bit lanes. */
#if defined(__ARM_FEATURE_DSP)
#define MCC_SF_LO(v) ((uint32_t)__sxtb16((int8x4_t)(v)))
static inline uint32_t mcc_sf_hi(uint32_t v) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}
#define MCC_SF_HI(v) mcc_sf_hi(v)
#else
static inline uint32_t mcc_sf_lo(uint32_t v) {
    return ((uint32_t)(int32_t)(int8_t)(v & 0xFFu) & 0xFFFFu) | ((uint32_t)(int32_t)(int8_t)((v >> 16) & 0xFFu) << 16);
}
#define MCC_SF_LO(v) mcc_sf_lo(v)
#define MCC_SF_HI(v) mcc_sf_lo((v) >> 8)
#endif

/* acc + the dot product of four input bytes, unpacked (xa, xb), and the four weight bytes of the word w. */
static inline int32_t mcc_gemm_dot4(uint32_t xa, uint32_t xb, uint32_t w, int32_t acc) {
#if defined(__ARM_FEATURE_DSP)
    acc = __smlad((int16x2_t)xa, (int16x2_t)MCC_SF_LO(w), acc);
    return __smlad((int16x2_t)xb, (int16x2_t)MCC_SF_HI(w), acc);
#else
    const uint32_t wa = MCC_SF_LO(w), wb = MCC_SF_HI(w);
    const int32_t s = (int16_t)(xa & 0xFFFFu) * (int16_t)(wa & 0xFFFFu) + (int16_t)(xa >> 16) * (int16_t)(wa >> 16) +
                      (int16_t)(xb & 0xFFFFu) * (int16_t)(wb & 0xFFFFu) + (int16_t)(xb >> 16) * (int16_t)(wb >> 16);
    return mcc_add_wrap(acc, s);
#endif
}

static inline uint32_t mcc_gemm_word(const int8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Four channels' accumulators a[0..3] over the column x; returns the weights after the block. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline)) /* its own registers: inlined, GCC -Os spills around the multiplies */
#endif
static const int32_t *mcc_gemm_block4(const int8_t *x, int32_t groups, int32_t tail, const int32_t *wp, int32_t *a) {
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    int32_t g = 0;
    for (; g + 2 <= groups; g += 2, wp += 8) { /* a pair of groups: each channel's two words */
        for (int32_t h = 0; h < 2; ++h) { /* one group at a time: two unpacked input words live */
            const uint32_t v = mcc_gemm_word(x + 4 * (g + h));
            const uint32_t xa = MCC_SF_LO(v), xb = MCC_SF_HI(v);
            a0 = mcc_gemm_dot4(xa, xb, (uint32_t)wp[h], a0);
            a1 = mcc_gemm_dot4(xa, xb, (uint32_t)wp[2 + h], a1);
            a2 = mcc_gemm_dot4(xa, xb, (uint32_t)wp[4 + h], a2);
            a3 = mcc_gemm_dot4(xa, xb, (uint32_t)wp[6 + h], a3);
        }
    }
    if (g < groups) { /* an odd last group, channel by channel */
        const uint32_t v0 = mcc_gemm_word(x + 4 * g);
        const uint32_t xa = MCC_SF_LO(v0), xb = MCC_SF_HI(v0);
        a0 = mcc_gemm_dot4(xa, xb, (uint32_t)wp[0], a0);
        a1 = mcc_gemm_dot4(xa, xb, (uint32_t)wp[1], a1);
        a2 = mcc_gemm_dot4(xa, xb, (uint32_t)wp[2], a2);
        a3 = mcc_gemm_dot4(xa, xb, (uint32_t)wp[3], a3);
        wp += 4;
    }
    for (int32_t t = 0; t < tail; ++t) { /* each channel's tail taps, one word each */
        const int32_t xv = x[4 * groups + t];
        a0 = mcc_add_wrap(a0, xv * wp[t]);
        a1 = mcc_add_wrap(a1, xv * wp[tail + t]);
        a2 = mcc_add_wrap(a2, xv * wp[2 * tail + t]);
        a3 = mcc_add_wrap(a3, xv * wp[3 * tail + t]);
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    return wp + 4 * tail;
}

void mcc_conv_gemm_s8(const mcc_gemm_params *p, const int8_t *in, const int32_t *w, const int32_t *bias,
                      const int32_t *rq, int8_t *out, int8_t *scratch) {
    const int32_t groups = p->depth >> 2, tail = p->depth & 3, out_c = p->out_c, in_c = p->in_c;
    const int direct = mcc_gemm_direct(p) && p->depth == in_c;
    for (int32_t n = 0; n < p->batch; ++n) {
        const int8_t *image = in + (size_t)n * p->in_h * p->in_w * in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < p->out_w; ++ox, out += out_c) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                const int8_t *x = scratch;
                if (direct) {
                    x = image + ((size_t)iy0 * p->in_w + ix0) * in_c;
                } else { /* the window's bytes, tap pixel by tap pixel */
                    int8_t *c = scratch;
                    for (int32_t ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        for (int32_t kx = 0; kx < p->k_w; ++kx, c += in_c) {
                            const int32_t ix = ix0 + kx * p->dil_w;
                            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                                memset(c, p->pad_value, (size_t)in_c);
                            } else {
                                memcpy(c, image + ((size_t)iy * p->in_w + ix) * in_c, (size_t)in_c);
                            }
                        }
                    }
                    memset(c, 0, (size_t)(p->depth - (c - scratch)));
                }
                const int32_t *wp = w;
                int32_t c0 = 0, a[4];
                for (; c0 + 4 <= out_c; c0 += 4) {
                    a[0] = bias[c0];
                    a[1] = bias[c0 + 1];
                    a[2] = bias[c0 + 2];
                    a[3] = bias[c0 + 3];
                    wp = mcc_gemm_block4(x, groups, tail, wp, a);
                    for (int32_t j = 0; j < 4; ++j) {
                        out[c0 + j] = mcc_rq_small(rq, out_c, c0 + j, a[j], p->act_min, p->act_max);
                    }
                }
                for (; c0 < out_c; ++c0) { /* the last out_c % 4 channels: groups in order, then the tail */
                    int32_t acc = bias[c0];
                    for (int32_t g = 0; g < groups; ++g) {
                        const uint32_t v = mcc_gemm_word(x + 4 * g);
                        acc = mcc_gemm_dot4(MCC_SF_LO(v), MCC_SF_HI(v), (uint32_t)*wp++, acc);
                    }
                    for (int32_t t = 0; t < tail; ++t) {
                        acc = mcc_add_wrap(acc, x[4 * groups + t] * *wp++);
                    }
                    out[c0] = mcc_rq_small(rq, out_c, c0, acc, p->act_min, p->act_max);
                }
            }
        }
    }
}
#else

/* The per-pixel steps are inlined into the pixel loop when optimizing for speed, so that their set-up is hoisted
   out of it; a size-first build keeps them as functions. */
#if defined(__GNUC__) && defined(__OPTIMIZE__) && !defined(__OPTIMIZE_SIZE__)
#define MCC_GEMM_INLINE static inline __attribute__((always_inline))
#else
#define MCC_GEMM_INLINE static
#endif

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
        const int32_t t = (int32_t)((((int64_t)acc2 * rq[0]) + (int64_t)h * ((int64_t)1 << 32) + 0x80000000LL) >> 32);
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
/* the doubled accumulator 2 acc of the fast requantization */
#define MCC_GEMM_ACC2(acc) ((int32_t)((uint32_t)(acc) << 1))
#define MCC_GEMM_LSL_ACC(acc) "lsl %[" acc "], %[" acc "], #1\n\t"
#else
#define MCC_GEMM_WORDS_PER_GROUP 2 /* per output channel: (k, k+2) and (k+1, k+3) as 16-bit pairs */
/* a fast layer's 16-bit weights and bias are doubled offline (emit_gemm): its accumulators are already 2 acc */
#define MCC_GEMM_ACC2(acc) (acc)
#define MCC_GEMM_LSL_ACC(acc) ""
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

/* Four output channels over one group of four taps of raw bytes at xp; advances xp and wp. */
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

/* Four output channels over one group of four taps of the int16 column at xp (two words: (x0, x2), (x1, x3));
   advances xp and wp. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCC_GEMM_NARROW)
/* One LDRD of the column, then per channel one LDRD of its weights and two SMLAD: 13 instructions, 16 MACs. */
#define MCC_GEMM_GROUP4_S16(xp, wp)                                                                 \
    do {                                                                                            \
        uint32_t xa_, xb_, w0_, w1_;                                                                \
        __asm__("ldrd %[xa], %[xb], [%[x]], #8\n\t"                                                 \
                "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                                 \
                "smlad %[a0], %[xa], %[w0], %[a0]\n\t"                                              \
                "smlad %[a0], %[xb], %[w1], %[a0]\n\t"                                              \
                "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                                 \
                "smlad %[a1], %[xa], %[w0], %[a1]\n\t"                                              \
                "smlad %[a1], %[xb], %[w1], %[a1]\n\t"                                              \
                "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                                 \
                "smlad %[a2], %[xa], %[w0], %[a2]\n\t"                                              \
                "smlad %[a2], %[xb], %[w1], %[a2]\n\t"                                              \
                "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                                 \
                "smlad %[a3], %[xa], %[w0], %[a3]\n\t"                                              \
                "smlad %[a3], %[xb], %[w1], %[a3]"                                                    \
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(xp), [w] "+r"(wp), \
                  [xa] "=&r"(xa_), [xb] "=&r"(xb_), [w0] "=&r"(w0_), [w1] "=&r"(w1_)                \
                :                                                                                   \
                : "memory");                                                                        \
    } while (0)
#else
#define MCC_GEMM_GROUP4_S16(xp, wp)                                 \
    do {                                                            \
        const uint32_t xa_ = (xp)[0];                               \
        const uint32_t xb_ = (xp)[1];                               \
        (xp) += 2;                                                  \
        MCC_GEMM_MAC(a0, xa_, xb_, (wp));                           \
        MCC_GEMM_MAC(a1, xa_, xb_, (wp) + MCC_GEMM_WORDS_PER_GROUP);  \
        MCC_GEMM_MAC(a2, xa_, xb_, (wp) + 2 * MCC_GEMM_WORDS_PER_GROUP); \
        MCC_GEMM_MAC(a3, xa_, xb_, (wp) + 3 * MCC_GEMM_WORDS_PER_GROUP); \
        (wp) += 4 * MCC_GEMM_WORDS_PER_GROUP;                       \
    } while (0)
#endif

#if defined(__ARM_FEATURE_DSP) && !defined(MCC_GEMM_NARROW) && defined(__OPTIMIZE__)
/* Per channel of a block: one LDM of its four weight words, four SMLAD with the column words in x0..x3. */
#define MCC_GEMM_LDM_4CH                                                                            \
                "ldm %[w]!, {%[w0], %[w1], %[w2], %[w3]}\n\t"                                        \
                "smlad %[a0], %[x0], %[w0], %[a0]\n\t"                                              \
                "smlad %[a0], %[x1], %[w1], %[a0]\n\t"                                              \
                "smlad %[a0], %[x2], %[w2], %[a0]\n\t"                                              \
                "smlad %[a0], %[x3], %[w3], %[a0]\n\t"                                              \
                "ldm %[w]!, {%[w0], %[w1], %[w2], %[w3]}\n\t"                                        \
                "smlad %[a1], %[x0], %[w0], %[a1]\n\t"                                              \
                "smlad %[a1], %[x1], %[w1], %[a1]\n\t"                                              \
                "smlad %[a1], %[x2], %[w2], %[a1]\n\t"                                              \
                "smlad %[a1], %[x3], %[w3], %[a1]\n\t"                                              \
                "ldm %[w]!, {%[w0], %[w1], %[w2], %[w3]}\n\t"                                        \
                "smlad %[a2], %[x0], %[w0], %[a2]\n\t"                                              \
                "smlad %[a2], %[x1], %[w1], %[a2]\n\t"                                              \
                "smlad %[a2], %[x2], %[w2], %[a2]\n\t"                                              \
                "smlad %[a2], %[x3], %[w3], %[a2]\n\t"                                              \
                "ldm %[w]!, {%[w0], %[w1], %[w2], %[w3]}\n\t"                                        \
                "smlad %[a3], %[x0], %[w0], %[a3]\n\t"                                              \
                "smlad %[a3], %[x1], %[w1], %[a3]\n\t"                                              \
                "smlad %[a3], %[x2], %[w2], %[a3]\n\t"                                              \
                "smlad %[a3], %[x3], %[w3], %[a3]"

#endif

/* Four output channels over two groups (eight taps) of the int16 column at xp; the weights of a block hold, per
   pair of groups, each channel's words of the first group then of the second. Advances xp and wp. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCC_GEMM_NARROW) && defined(__OPTIMIZE__)
/* One LDM of four column words, then per channel one LDM of its four weight words and four SMLAD: 21 instructions,
   32 MACs. LDM fills registers in ascending order, so the eight loaded words live in fixed registers (r7, the
   Thumb frame pointer, is left alone); the accumulators and pointers take the remaining six. */
#define MCC_GEMM_GROUP8_S16(xp, wp)                                                                 \
    do {                                                                                            \
        register uint32_t x0_ __asm__("r8"), x1_ __asm__("r9"), x2_ __asm__("r10"), x3_ __asm__("r11"); \
        register uint32_t w0_ __asm__("r4"), w1_ __asm__("r5"), w2_ __asm__("r6"), w3_ __asm__("r12"); \
        __asm__("ldm %[x]!, {%[x0], %[x1], %[x2], %[x3]}\n\t"                                        \
                MCC_GEMM_LDM_4CH                                                                    \
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(xp), [w] "+r"(wp), \
                  [x0] "=&r"(x0_), [x1] "=&r"(x1_), [x2] "=&r"(x2_), [x3] "=&r"(x3_),                   \
                  [w0] "=&r"(w0_), [w1] "=&r"(w1_), [w2] "=&r"(w2_), [w3] "=&r"(w3_)                    \
                :                                                                                   \
                : "memory");                                                                        \
    } while (0)
#else
#define MCC_GEMM_GROUP8_S16(xp, wp)                                                  \
    do {                                                                             \
        const uint32_t x0_ = (xp)[0], x1_ = (xp)[1], x2_ = (xp)[2], x3_ = (xp)[3];     \
        (xp) += 4;                                                                   \
        MCC_GEMM_MAC(a0, x0_, x1_, (wp));                                            \
        MCC_GEMM_MAC(a0, x2_, x3_, (wp) + MCC_GEMM_WORDS_PER_GROUP);                 \
        MCC_GEMM_MAC(a1, x0_, x1_, (wp) + 2 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a1, x2_, x3_, (wp) + 3 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a2, x0_, x1_, (wp) + 4 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a2, x2_, x3_, (wp) + 5 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a3, x0_, x1_, (wp) + 6 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a3, x2_, x3_, (wp) + 7 * MCC_GEMM_WORDS_PER_GROUP);             \
        (wp) += 8 * MCC_GEMM_WORDS_PER_GROUP;                                        \
    } while (0)
#endif

/* The fast requantization of a layer whose every channel has it (p->rq_fast): rq = {m, h, r} with |acc| < 2^30,
   ((SMMLAR(2 acc, m, h) + (acc < 0 ? -1 : 0)) >> r), see backends/c/emitters/gemm.py (fast_layer). */
static inline int32_t mcc_gemm_rq_fast(int32_t acc, const int32_t *rq) {
    const int32_t acc2 = MCC_GEMM_ACC2(acc);
#if defined(__ARM_FEATURE_DSP)
    int32_t t;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"(acc2), "r"(rq[0]), "r"(rq[1]));
#else
    /* h may be negative (a step channel): multiplied, not shifted, into the high word */
    const int32_t t = (int32_t)((((int64_t)acc2 * rq[0]) + (int64_t)rq[1] * 4294967296LL + 0x80000000LL) >> 32);
#endif
    return (t + (acc2 >> 31)) >> rq[2];
}

#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__)
/* Four fast requantizations with the whole int8 range as the clamp, stored to out[0..3]: eight instructions each
   (nine in the byte layout, whose accumulators are not doubled), one fewer when the zero point is 0 (folded into h
   by the emitter); volatile: the stores are its only effect. */
#define MCC_GEMM_RQ_FAST_STORE(acc, off, zp)                                                        \
    MCC_GEMM_LSL_ACC(acc)                                                                           \
    "ldrd %[m], %[h], [%[rq], #" off "*12]\n\t"                                                     \
    "ldr %[r], [%[rq], #" off "*12+8]\n\t"                                                         \
    "smmlar %[m], %[" acc "], %[m], %[h]\n\t"                                                       \
    "add %[m], %[m], %[" acc "], asr #31\n\t"                                                       \
    "asr %[m], %[m], %[r]\n\t"                                                                      \
    zp                                                                                              \
    "ssat %[m], #8, %[m]\n\t"                                                                       \
    "strb %[m], [%[out], #" off "]\n\t"
#define MCC_GEMM_ADD_ZP "add %[m], %[m], %[zp]\n\t"
static inline void mcc_gemm_store4_fast(int32_t a0, int32_t a1, int32_t a2, int32_t a3, const int32_t *rq,
                                        int32_t zp, int8_t *out) {
    int32_t m, h, r;
    __asm__ volatile(MCC_GEMM_RQ_FAST_STORE("a0", "0", MCC_GEMM_ADD_ZP) MCC_GEMM_RQ_FAST_STORE("a1", "1", MCC_GEMM_ADD_ZP)
            MCC_GEMM_RQ_FAST_STORE("a2", "2", MCC_GEMM_ADD_ZP) MCC_GEMM_RQ_FAST_STORE("a3", "3", MCC_GEMM_ADD_ZP)
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [m] "=&r"(m), [h] "=&r"(h), [r] "=&r"(r)
            : [rq] "r"(rq), [zp] "r"(zp), [out] "r"(out)
            : "memory");
}
static inline void mcc_gemm_store4_fast0(int32_t a0, int32_t a1, int32_t a2, int32_t a3, const int32_t *rq,
                                         int8_t *out) {
    int32_t m, h, r;
    __asm__ volatile(MCC_GEMM_RQ_FAST_STORE("a0", "0", "") MCC_GEMM_RQ_FAST_STORE("a1", "1", "")
            MCC_GEMM_RQ_FAST_STORE("a2", "2", "") MCC_GEMM_RQ_FAST_STORE("a3", "3", "")
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [m] "=&r"(m), [h] "=&r"(h), [r] "=&r"(r)
            : [rq] "r"(rq), [out] "r"(out)
            : "memory");
}
#else
static inline void mcc_gemm_store4_fast(int32_t a0, int32_t a1, int32_t a2, int32_t a3, const int32_t *rq,
                                        int32_t zp, int8_t *out) {
    const int32_t acc[4] = {a0, a1, a2, a3};
    for (int32_t i = 0; i < 4; ++i) {
        out[i] = (int8_t)mcc_clamp(mcc_gemm_rq_fast(acc[i], rq + 3 * i) + zp, -128, 127);
    }
}
#endif

static inline int8_t mcc_gemm_clamp(mcc_gemm_out q, int32_t v) {
#if defined(__ARM_FEATURE_DSP)
    v = __ssat(v, 8);
    if (!q.full) {
        v = mcc_clamp(v, q.lo, q.hi);
    }
    return (int8_t)v;
#else
    return (int8_t)mcc_clamp(v, q.lo, q.hi);
#endif
}

/* The requantized outputs of four channels' accumulators, stored to out[0..3]. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void mcc_gemm_store4(const mcc_gemm_params *p, mcc_gemm_out q, int32_t a0, int32_t a1, int32_t a2,
                                   int32_t a3, const int32_t *r, int8_t *out) {
    if (p->rq_fast && q.full) {
        mcc_gemm_store4_fast(a0, a1, a2, a3, r, q.zp, out);
    } else if (p->rq_fast) {
        out[0] = mcc_gemm_clamp(q, mcc_gemm_rq_fast(a0, r) + q.zp);
        out[1] = mcc_gemm_clamp(q, mcc_gemm_rq_fast(a1, r + 3) + q.zp);
        out[2] = mcc_gemm_clamp(q, mcc_gemm_rq_fast(a2, r + 6) + q.zp);
        out[3] = mcc_gemm_clamp(q, mcc_gemm_rq_fast(a3, r + 9) + q.zp);
    } else {
        out[0] = mcc_gemm_requant(q, a0, r);
        out[1] = mcc_gemm_requant(q, a1, r + 3);
        out[2] = mcc_gemm_requant(q, a2, r + 6);
        out[3] = mcc_gemm_requant(q, a3, r + 9);
    }
}

/* Four output channels over two groups (eight taps) of raw input bytes at xp; advances xp and wp. */
#if defined(__ARM_FEATURE_DSP) && !defined(MCC_GEMM_NARROW) && defined(__OPTIMIZE__)
/* Two LDR and four SXTB16 unpack the eight bytes, then per channel one LDM of its four weight words and four SMLAD:
   26 instructions, 32 MACs; the words in fixed registers as in MCC_GEMM_GROUP8_S16. */
#define MCC_GEMM_GROUP8_S8(xp, wp)                                                                  \
    do {                                                                                            \
        register uint32_t x0_ __asm__("r8"), x1_ __asm__("r9"), x2_ __asm__("r10"), x3_ __asm__("r11"); \
        register uint32_t w0_ __asm__("r4"), w1_ __asm__("r5"), w2_ __asm__("r6"), w3_ __asm__("r12"); \
        __asm__("ldr %[x1], [%[x]], #4\n\t"                                                         \
                "ldr %[x3], [%[x]], #4\n\t"                                                         \
                "sxtb16 %[x0], %[x1]\n\t"                                                           \
                "sxtb16 %[x1], %[x1], ror #8\n\t"                                                   \
                "sxtb16 %[x2], %[x3]\n\t"                                                           \
                "sxtb16 %[x3], %[x3], ror #8\n\t"                                                   \
                MCC_GEMM_LDM_4CH                                                                    \
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(xp), [w] "+r"(wp), \
                  [x0] "=&r"(x0_), [x1] "=&r"(x1_), [x2] "=&r"(x2_), [x3] "=&r"(x3_),                   \
                  [w0] "=&r"(w0_), [w1] "=&r"(w1_), [w2] "=&r"(w2_), [w3] "=&r"(w3_)                    \
                :                                                                                   \
                : "memory");                                                                        \
    } while (0)
#else
#define MCC_GEMM_GROUP8_S8(xp, wp)                                                   \
    do {                                                                             \
        const uint32_t v0_ = mcc_read32(xp), v1_ = mcc_read32((xp) + 4);             \
        const uint32_t x0_ = MCC_SXTB16(v0_), x1_ = MCC_SXTB16_ROR8(v0_);             \
        const uint32_t x2_ = MCC_SXTB16(v1_), x3_ = MCC_SXTB16_ROR8(v1_);             \
        (xp) += 8;                                                                   \
        MCC_GEMM_MAC(a0, x0_, x1_, (wp));                                            \
        MCC_GEMM_MAC(a0, x2_, x3_, (wp) + MCC_GEMM_WORDS_PER_GROUP);                 \
        MCC_GEMM_MAC(a1, x0_, x1_, (wp) + 2 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a1, x2_, x3_, (wp) + 3 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a2, x0_, x1_, (wp) + 4 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a2, x2_, x3_, (wp) + 5 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a3, x0_, x1_, (wp) + 6 * MCC_GEMM_WORDS_PER_GROUP);             \
        MCC_GEMM_MAC(a3, x2_, x3_, (wp) + 7 * MCC_GEMM_WORDS_PER_GROUP);             \
        (wp) += 8 * MCC_GEMM_WORDS_PER_GROUP;                                        \
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
        for (; g >= 2; g -= 2) { /* a pair of groups: per channel, its words of both (pack_weights) */
            MCC_GEMM_GROUP8_S8(xp, wp);
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
        mcc_gemm_store4(p, q, a0, a1, a2, a3, rq + 3 * c, out + c);
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
        out[c] = p->rq_fast ? mcc_gemm_clamp(q, mcc_gemm_rq_fast(a0, rq + 3 * c) + q.zp)
                            : mcc_gemm_requant(q, a0, rq + 3 * c);
    }
}

#if defined(__ARM_FEATURE_DSP) && !defined(MCC_GEMM_NARROW) && defined(__OPTIMIZE__)
/* Every block of four output channels of one pixel (out_c a multiple of 4, p->rq_fast, the whole int8 range as the
   clamp) with no per-block checks; folded (a constant where inlined): the rows hold the zero point (rq_fast 2). */
__attribute__((always_inline)) static inline void mcc_gemm_blocks_fast(const uint32_t *x, int32_t groups,
                                                                       const int32_t *wp, const int32_t *bias,
                                                                       const int32_t *rq, int32_t zp, int8_t *out,
                                                                       int32_t out_c, int folded) {
    const uint32_t *const x16 = x + 8 * (groups >> 2);
    const int8_t *const end = out + out_c;
    do {
        int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
        const uint32_t *xp = x;
        while (xp != x16) {
            MCC_GEMM_GROUP8_S16(xp, wp);
            MCC_GEMM_GROUP8_S16(xp, wp);
        }
        if (groups & 2) {
            MCC_GEMM_GROUP8_S16(xp, wp);
        }
        if (groups & 1) {
            MCC_GEMM_GROUP4_S16(xp, wp);
        }
        if (folded) {
            mcc_gemm_store4_fast0(a0, a1, a2, a3, rq, out);
        } else {
            mcc_gemm_store4_fast(a0, a1, a2, a3, rq, zp, out);
        }
        bias += 4;
        rq += 12;
        out += 4;
    } while (out != end);
}
#endif

/* One output pixel from its int16 column x (p->depth / 4 groups of two words), every output channel. */
MCC_GEMM_INLINE void mcc_gemm_pixel_s16(const mcc_gemm_params *p, const uint32_t *x, const int32_t *w,
                                        const int32_t *bias, const int32_t *rq, int8_t *out) {
    const int32_t groups = p->depth >> 2;
    const int32_t out_c = p->out_c;
    const mcc_gemm_out q = {p->out_zp, p->act_min, p->act_max, p->act_min == -128 && p->act_max == 127};
    const uint32_t *const x16 = x + 8 * (groups >> 2);
    const int32_t *wp = w;
    int32_t c = 0;
    for (; c + 4 <= out_c; c += 4) {
        int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
        const uint32_t *xp = x;
        while (xp != x16) { /* four groups at a time */
            MCC_GEMM_GROUP8_S16(xp, wp);
            MCC_GEMM_GROUP8_S16(xp, wp);
        }
        if (groups & 2) {
            MCC_GEMM_GROUP8_S16(xp, wp);
        }
        if (groups & 1) { /* an odd last group */
            MCC_GEMM_GROUP4_S16(xp, wp);
        }
        mcc_gemm_store4(p, q, a0, a1, a2, a3, rq + 3 * c, out + c);
    }
    for (; c < out_c; ++c) { /* the last out_c % 4 channels, one at a time */
        int32_t a0 = bias[c];
        const uint32_t *xp = x;
        for (int32_t g = 0; g < groups; ++g, xp += 2) {
            MCC_GEMM_MAC(a0, xp[0], xp[1], wp);
            wp += MCC_GEMM_WORDS_PER_GROUP;
        }
        out[c] = p->rq_fast ? mcc_gemm_clamp(q, mcc_gemm_rq_fast(a0, rq + 3 * c) + q.zp)
                            : mcc_gemm_requant(q, a0, rq + 3 * c);
    }
}

/* How mcc_gemm_pixel16 runs a layer's pixels, fixed per call: 0 mcc_gemm_pixel_s16; 1 and 2 the blocks of
   mcc_gemm_blocks_fast (out_c a multiple of 4, rq_fast, the whole int8 range), 2 with the zero point folded. */
static inline int mcc_gemm_mode(const mcc_gemm_params *p) {
#if defined(__ARM_FEATURE_DSP) && !defined(MCC_GEMM_NARROW) && defined(__OPTIMIZE__)
    if (p->rq_fast && p->act_min == -128 && p->act_max == 127 && !(p->out_c & 3)) {
        return p->rq_fast == 2 ? 2 : 1;
    }
#else
    (void)p;
#endif
    return 0;
}

/* One output pixel from its int16 column x in the layer's mode (mcc_gemm_mode). */
MCC_GEMM_INLINE void mcc_gemm_pixel16(const mcc_gemm_params *p, int mode, const uint32_t *x, const int32_t *w,
                                      const int32_t *bias, const int32_t *rq, int8_t *out) {
#if defined(__ARM_FEATURE_DSP) && !defined(MCC_GEMM_NARROW) && defined(__OPTIMIZE__)
    const int32_t groups = p->depth >> 2;
    if (mode == 2) {
        mcc_gemm_blocks_fast(x, groups, w, bias, rq, 0, out, p->out_c, 1);
        return;
    }
    if (mode == 1) {
        mcc_gemm_blocks_fast(x, groups, w, bias, rq, p->out_zp, out, p->out_c, 0);
        return;
    }
#else
    (void)mode;
#endif
    mcc_gemm_pixel_s16(p, x, w, bias, rq, out);
}

/* The int16 column of n input bytes at src: per group of four bytes the words (x0, x2), (x1, x3), zeros from n up
   to depth taps. dst may be src - depth bytes (an int8 column in the upper half of the scratch): each group is
   read before its eight bytes, which end at or below the next group's, are written. */
MCC_GEMM_INLINE void mcc_gemm_expand(const int8_t *src, int32_t n, int32_t depth, uint32_t *dst) {
    int32_t k = 0;
    for (; k + 8 <= n; k += 8) {
        const uint32_t v0 = mcc_read32(src + k);
        const uint32_t v1 = mcc_read32(src + k + 4);
        dst[0] = MCC_SXTB16(v0);
        dst[1] = MCC_SXTB16_ROR8(v0);
        dst[2] = MCC_SXTB16(v1);
        dst[3] = MCC_SXTB16_ROR8(v1);
        dst += 4;
    }
    for (; k < n; k += 4) {
        uint32_t v = 0; /* little-endian: byte i of the word is tap k + i */
        if (k + 4 <= n) {
            v = mcc_read32(src + k);
        } else {
            for (int32_t i = 0; i < n - k; ++i) {
                v |= (uint32_t)(uint8_t)src[k + i] << (8 * i);
            }
        }
        dst[0] = MCC_SXTB16(v);
        dst[1] = MCC_SXTB16_ROR8(v);
        dst += 2;
    }
    for (; k < depth; k += 4) {
        dst[0] = 0;
        dst[1] = 0;
        dst += 2;
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

/* The int16 column of the window at (iy0, ix0) when a window row is a whole number of groups (k_w * in_c a
   multiple of four), the input zero point over the padding: a row inside the image is expanded straight from the
   input, a row hanging over the left or right edge pixel by pixel when in_c is a multiple of four (not in a
   size-first build), else byte by byte, four taps to a word. */
static void mcc_gemm_im2col_s16(const mcc_gemm_params *p, const int8_t *image, int32_t iy0, int32_t ix0,
                                uint32_t *col) {
    const int32_t row_bytes = p->k_w * p->in_c;
    const int32_t row_taps = row_bytes; /* a multiple of four */
    const int inside_w = ix0 >= 0 && ix0 + (p->k_w - 1) * p->dil_w < p->in_w && p->dil_w == 1;
    const uint32_t pad = (uint32_t)(uint8_t)p->pad_value * 0x01010101u;
    const uint32_t pad_a = MCC_SXTB16(pad), pad_b = MCC_SXTB16_ROR8(pad);
    uint32_t *d = col;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            for (int32_t t = 0; t < row_taps; t += 4, d += 2) {
                d[0] = pad_a;
                d[1] = pad_b;
            }
            continue;
        }
        const int8_t *row = image + (size_t)iy * p->in_w * p->in_c;
        if (inside_w) { /* the window's row is contiguous in NHWC */
            mcc_gemm_expand(row + (size_t)ix0 * p->in_c, row_bytes, row_taps, d);
            d += row_taps >> 1;
            continue;
        }
#if !defined(__OPTIMIZE_SIZE__)
        if (!(p->in_c & 3)) { /* each tap pixel is whole groups: expanded, or the zero point */
            for (int32_t kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = ix0 + kx * p->dil_w;
                if (ix >= 0 && ix < p->in_w) {
                    mcc_gemm_expand(row + (size_t)ix * p->in_c, p->in_c, p->in_c, d);
                    d += p->in_c >> 1;
                } else {
                    for (int32_t t = 0; t < p->in_c; t += 4, d += 2) {
                        d[0] = pad_a;
                        d[1] = pad_b;
                    }
                }
            }
            continue;
        }
#endif
        uint32_t v = 0;
        int32_t j = 0;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            const int valid = ix >= 0 && ix < p->in_w;
            for (int32_t c = 0; c < p->in_c; ++c) {
                const uint32_t b = valid ? (uint8_t)row[(size_t)ix * p->in_c + c] : (pad & 0xFFu);
                v |= b << (8 * j);
                if (++j == 4) {
                    d[0] = MCC_SXTB16(v);
                    d[1] = MCC_SXTB16_ROR8(v);
                    d += 2;
                    v = 0;
                    j = 0;
                }
            }
        }
        if (j) { /* the row's last taps; zeros past them */
            d[0] = MCC_SXTB16(v);
            d[1] = MCC_SXTB16_ROR8(v);
            d += 2;
        }
    }
}

/* Layers of fixed shape. A project whose generated mcc_gemm.c starts with MCC_GEMM_SHAPES(X), a list of
   X(G, C, F, KH, KW, IC, B) for the shapes its layers use (backends/c/emitters/gemm.py fixed_shape, emit.py), gets
   one instance per shape (mcc_gemm_fixed_layer): depth 4 G, out_c C, the fast requantization over the whole int8
   range (rq_fast, mode 1 or 2 of mcc_gemm_mode; F: the zero point folded), a 1x1 window read in place (KH 0) or a
   KH x KW window over IC channels, on an int16 column or (B 1) raw bytes. With G and C constants the K loop is
   unrolled to straight LDM/SMLAD code with no loop or per-group tests; with G = 2 (eight input channels) a pixel
   read in place is unpacked into four registers that every block of output channels reuses, never stored to the
   column; an interior window's column is built by unrolled code. Only speed builds with the DSP extension and the
   16-bit layout compile them; others run the generic code on the same weights and tables. */
#if defined(MCC_GEMM_SHAPES) && defined(MCC_GEMM_FIXED_BUILD)
#define MCC_GEMM_FIXED 1
/* An instance keeps its values in core registers: with the FPU's registers to spill to (a hard-float build), GCC
   12 finds the K loop's asm "impossible" to allocate. */
#define MCC_GEMM_FIXED_ATTR __attribute__((target("general-regs-only")))

/* MCC_GEMM_GROUP8_S16 with the eight words in registers named in the code and clobbered rather than in explicit
   register variables (the form that, with general-regs-only, GCC allocates in every unrolled instance tried). */
#define MCC_GEMM_FIXED_GROUP8(xp, wp)                                                                           \
    __asm__("ldm %[x]!, {r8, r9, r10, r11}\n\t" MCC_GEMM_FIXED_4CH                                              \
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(xp), [w] "+r"(wp)           \
            :                                                                                                   \
            : "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "memory")
#define MCC_GEMM_FIXED_4CH                                                                                      \
    "ldm %[w]!, {r4, r5, r6, r12}\n\t"                                                                          \
    "smlad %[a0], r8, r4, %[a0]\n\t"                                                                            \
    "smlad %[a0], r9, r5, %[a0]\n\t"                                                                            \
    "smlad %[a0], r10, r6, %[a0]\n\t"                                                                           \
    "smlad %[a0], r11, r12, %[a0]\n\t"                                                                          \
    "ldm %[w]!, {r4, r5, r6, r12}\n\t"                                                                          \
    "smlad %[a1], r8, r4, %[a1]\n\t"                                                                            \
    "smlad %[a1], r9, r5, %[a1]\n\t"                                                                            \
    "smlad %[a1], r10, r6, %[a1]\n\t"                                                                           \
    "smlad %[a1], r11, r12, %[a1]\n\t"                                                                          \
    "ldm %[w]!, {r4, r5, r6, r12}\n\t"                                                                          \
    "smlad %[a2], r8, r4, %[a2]\n\t"                                                                            \
    "smlad %[a2], r9, r5, %[a2]\n\t"                                                                            \
    "smlad %[a2], r10, r6, %[a2]\n\t"                                                                           \
    "smlad %[a2], r11, r12, %[a2]\n\t"                                                                          \
    "ldm %[w]!, {r4, r5, r6, r12}\n\t"                                                                          \
    "smlad %[a3], r8, r4, %[a3]\n\t"                                                                            \
    "smlad %[a3], r9, r5, %[a3]\n\t"                                                                            \
    "smlad %[a3], r10, r6, %[a3]\n\t"                                                                           \
    "smlad %[a3], r11, r12, %[a3]"

/* The fast requantization of four accumulators (mcc_gemm_store4_fast) with one LDM of each channel's row {m, h, r}
   and post-incremented stores: six instructions per channel, five with the zero point folded (the accumulators are
   doubled: the 16-bit weights and bias are stored doubled); advances rq by
   twelve words and out by four bytes. */
#define MCC_GEMM_FIXED_RQ(acc, zp)                                                                              \
    "ldm %[rq]!, {r4, r5, r6}\n\t"                                                                             \
    "smmlar r4, %[" acc "], r4, r5\n\t"                                                                        \
    "add r4, r4, %[" acc "], asr #31\n\t"                                                                      \
    "asr r4, r4, r6\n\t" zp                                                                                    \
    "ssat r4, #8, r4\n\t"                                                                                      \
    "strb r4, [%[out]], #1\n\t"
#define MCC_GEMM_FIXED_ZP "add r4, r4, %[zp]\n\t"
#define MCC_GEMM_FIXED_STORE4_OPS                                                                               \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [rq] "+r"(rq), [out] "+r"(out)
#define MCC_GEMM_FIXED_STORE4(F)                                                                                \
    do {                                                                                                        \
        if (F) {                                                                                                \
            __asm__ volatile(MCC_GEMM_FIXED_RQ("a0", "") MCC_GEMM_FIXED_RQ("a1", "") MCC_GEMM_FIXED_RQ("a2", "")   \
                             MCC_GEMM_FIXED_RQ("a3", "") MCC_GEMM_FIXED_STORE4_OPS                              \
                             :                                                                                  \
                             : "r4", "r5", "r6", "memory");                                                     \
        } else {                                                                                                \
            __asm__ volatile(MCC_GEMM_FIXED_RQ("a0", MCC_GEMM_FIXED_ZP) MCC_GEMM_FIXED_RQ("a1", MCC_GEMM_FIXED_ZP) \
                             MCC_GEMM_FIXED_RQ("a2", MCC_GEMM_FIXED_ZP) MCC_GEMM_FIXED_RQ("a3", MCC_GEMM_FIXED_ZP) \
                             MCC_GEMM_FIXED_STORE4_OPS                                                          \
                             : [zp] "r"(zp)                                                                     \
                             : "r4", "r5", "r6", "memory");                                                     \
        }                                                                                                       \
    } while (0)

/* One block of four output channels of one pixel whose int16 column is x (G groups); advances the pointers.
   Interleaved weights (IL, backends/c/emitters/gemm.py interleave_block_words): the block's four bias words, its
   weights and its four requantization rows follow one another at *wpp, and bias and rq are not read. */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_block(const uint32_t *x, const int32_t G,
                                                                       const int32_t **wpp, const int32_t **biasp,
                                                                       const int32_t **rqp, int32_t zp,
                                                                       int8_t **outp, const int F, const int IL) {
    const int32_t *wp = *wpp, *rq = *rqp, *const bias = IL ? *wpp : *biasp;
    int8_t *out = *outp;
    int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
    if (IL) {
        wp += 4;
    }
    const uint32_t *xp = x;
    if (G <= 64) { /* straight code */
        _Pragma("GCC unroll 64") for (int32_t g = 0; g + 2 <= G; g += 2) {
            MCC_GEMM_FIXED_GROUP8(xp, wp);
        }
    } else { /* a deeper layer: a loop of eight groups */
        const uint32_t *const x8 = x + 16 * (G >> 3);
        do {
            MCC_GEMM_FIXED_GROUP8(xp, wp);
            MCC_GEMM_FIXED_GROUP8(xp, wp);
            MCC_GEMM_FIXED_GROUP8(xp, wp);
            MCC_GEMM_FIXED_GROUP8(xp, wp);
        } while (xp != x8);
        _Pragma("GCC unroll 4") for (int32_t g = G & ~7; g + 2 <= G; g += 2) {
            MCC_GEMM_FIXED_GROUP8(xp, wp);
        }
    }
    if (G & 1) {
        MCC_GEMM_GROUP4_S16(xp, wp);
    }
    if (IL) {
        rq = wp;
    }
    MCC_GEMM_FIXED_STORE4(F);
    if (IL) {
        wp = rq;
    }
    *wpp = wp;
    *rqp = rq;
    *outp = out;
    *biasp = bias + 4;
}

/* The int16 column words of 16 (8) word-aligned input bytes at s, written to d: one LDM, SXTB16 and SXTB16 ROR 8 of
   each word, one STM (ten instructions per 16 bytes instead of twenty); advances s and d. */
#define MCC_GEMM_FIXED_EXPAND16(s, d)                                                                           \
    __asm__ volatile("ldm %[s]!, {r5, r8, r10, r12}\n\t"                                                       \
                     "sxtb16 r4, r5\n\t"                                                                       \
                     "sxtb16 r5, r5, ror #8\n\t"                                                               \
                     "sxtb16 r6, r8\n\t"                                                                       \
                     "sxtb16 r8, r8, ror #8\n\t"                                                               \
                     "sxtb16 r9, r10\n\t"                                                                      \
                     "sxtb16 r10, r10, ror #8\n\t"                                                             \
                     "sxtb16 r11, r12\n\t"                                                                     \
                     "sxtb16 r12, r12, ror #8\n\t"                                                             \
                     "stm %[d]!, {r4, r5, r6, r8, r9, r10, r11, r12}"                                          \
                     : [s] "+r"(s), [d] "+r"(d)                                                                \
                     :                                                                                         \
                     : "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "memory")
#define MCC_GEMM_FIXED_EXPAND8(s, d)                                                                            \
    __asm__ volatile("ldm %[s]!, {r5, r8}\n\t"                                                                 \
                     "sxtb16 r4, r5\n\t"                                                                       \
                     "sxtb16 r5, r5, ror #8\n\t"                                                               \
                     "sxtb16 r6, r8\n\t"                                                                       \
                     "sxtb16 r8, r8, ror #8\n\t"                                                               \
                     "stm %[d]!, {r4, r5, r6, r8}"                                                             \
                     : [s] "+r"(s), [d] "+r"(d)                                                                \
                     :                                                                                         \
                     : "r4", "r5", "r6", "r8", "memory")

/* The int16 column of N (a multiple of 4) word-aligned input bytes at s, written to d (word-aligned): straight code
   up to 64 bytes, else a loop of 16 bytes. */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_expand(const int8_t *s, uint32_t *d,
                                                                        const int32_t N) {
    if (N <= 64) {
        _Pragma("GCC unroll 4") for (int32_t k = 0; k + 16 <= N; k += 16) {
            MCC_GEMM_FIXED_EXPAND16(s, d);
        }
    } else {
        const int8_t *const end = s + (N & ~15);
        _Pragma("GCC unroll 1") do {
            MCC_GEMM_FIXED_EXPAND16(s, d);
        } while (s != end);
    }
    if (N & 8) {
        MCC_GEMM_FIXED_EXPAND8(s, d);
    }
    if (N & 4) {
        const uint32_t v = mcc_read32(s);
        d[0] = MCC_SXTB16(v);
        d[1] = MCC_SXTB16_ROR8(v);
    }
}

/* The int16 column of a window over the border for a layer of fixed shape whose input pixels are whole groups
   (IC a multiple of 4) and word-aligned: each tap pixel expanded (mcc_gemm_fixed_expand) or the input zero point. */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_gather_s16(const mcc_gemm_params *p,
                                                                            const int8_t *image, int32_t iy0,
                                                                            int32_t ix0, uint32_t *d,
                                                                            const int32_t KH, const int32_t KW,
                                                                            const int32_t IC) {
    const uint32_t pad = (uint32_t)(uint8_t)p->pad_value * 0x01010101u;
    const uint32_t pad_a = MCC_SXTB16(pad), pad_b = MCC_SXTB16_ROR8(pad);
    _Pragma("GCC unroll 1") for (int32_t ky = 0; ky < KH; ++ky) {
        const int32_t iy = iy0 + ky;
        const int row_ok = iy >= 0 && iy < p->in_h;
        _Pragma("GCC unroll 1") for (int32_t kx = 0; kx < KW; ++kx, d += IC >> 1) {
            const int32_t ix = ix0 + kx;
            if (row_ok && ix >= 0 && ix < p->in_w) {
                mcc_gemm_fixed_expand(image + ((size_t)iy * p->in_w + ix) * IC, d, IC);
            } else {
                _Pragma("GCC unroll 1") for (int32_t g = 0; g < IC >> 1; g += 2) {
                    d[g] = pad_a;
                    d[g + 1] = pad_b;
                }
            }
        }
    }
}

/* Every block of four output channels of one pixel whose int16 column is x (G groups); a layer of two blocks
   (C 8) runs them as straight code, with no loop test between them. */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_blocks(const uint32_t *x, const int32_t G,
                                                                        const int32_t *wp, const int32_t *bias,
                                                                        const int32_t *rq, int32_t zp, int8_t *out,
                                                                        const int32_t C, const int F,
                                                                        const int IL) {
    if (C == 8) {
        mcc_gemm_fixed_block(x, G, &wp, &bias, &rq, zp, &out, F, IL);
        mcc_gemm_fixed_block(x, G, &wp, &bias, &rq, zp, &out, F, IL);
        return;
    }
    const int8_t *const end = out + C;
    _Pragma("GCC unroll 1") do {
        mcc_gemm_fixed_block(x, G, &wp, &bias, &rq, zp, &out, F, IL);
    } while (out != end);
}

/* MCC_GEMM_GROUP8_S8 the same way: eight raw input bytes unpacked per block. */
#define MCC_GEMM_FIXED_GROUP8_S8(xp, wp)                                                                        \
    __asm__("ldr r9, [%[x]], #4\n\t"                                                                            \
            "ldr r11, [%[x]], #4\n\t"                                                                           \
            "sxtb16 r8, r9\n\t"                                                                                 \
            "sxtb16 r9, r9, ror #8\n\t"                                                                         \
            "sxtb16 r10, r11\n\t"                                                                               \
            "sxtb16 r11, r11, ror #8\n\t" MCC_GEMM_FIXED_4CH                                                    \
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(xp), [w] "+r"(wp)           \
            :                                                                                                   \
            : "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "memory")

/* Every block of four output channels of one pixel of raw bytes at x (G groups; a byte column). */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_blocks_s8(const int8_t *x, const int32_t G,
                                                                           const int32_t *wp, const int32_t *bias,
                                                                           const int32_t *rq, int32_t zp,
                                                                           int8_t *out, const int32_t C,
                                                                           const int F) {
    const int8_t *const end = out + C;
    _Pragma("GCC unroll 1") do {
        int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
        const int8_t *xp = x;
        if (G <= 64) {
            _Pragma("GCC unroll 64") for (int32_t g = 0; g + 2 <= G; g += 2) {
                MCC_GEMM_FIXED_GROUP8_S8(xp, wp);
            }
        } else {
            const int8_t *const x8 = x + 32 * (G >> 3);
            do {
                MCC_GEMM_FIXED_GROUP8_S8(xp, wp);
                MCC_GEMM_FIXED_GROUP8_S8(xp, wp);
                MCC_GEMM_FIXED_GROUP8_S8(xp, wp);
                MCC_GEMM_FIXED_GROUP8_S8(xp, wp);
            } while (xp != x8);
            _Pragma("GCC unroll 4") for (int32_t g = G & ~7; g + 2 <= G; g += 2) {
                MCC_GEMM_FIXED_GROUP8_S8(xp, wp);
            }
        }
        if (G & 1) {
            MCC_GEMM_GROUP4(xp, wp);
        }
        MCC_GEMM_FIXED_STORE4(F);
        bias += 4;
    } while (out != end);
}

/* One output channel of a pixel of eight input bytes unpacked in r8-r11 (mcc_gemm_fixed_g2): its bias, one LDM of
   its four weight words, four SMLAD, then at once the fast requantization of MCC_GEMM_FIXED_RQ; twelve instructions
   (thirteen without the zero point folded). One accumulator at a time leaves registers for every pointer. */
#define MCC_GEMM_FIXED_G2_CH(zp)                                                                                \
    "ldr %[acc], [%[b]], #4\n\t"                                                                                 \
    "ldm %[w]!, {r4, r5, r6, r12}\n\t"                                                                          \
    "smlad %[acc], r8, r4, %[acc]\n\t"                                                                          \
    "smlad %[acc], r9, r5, %[acc]\n\t"                                                                          \
    "smlad %[acc], r10, r6, %[acc]\n\t"                                                                         \
    "smlad %[acc], r11, r12, %[acc]\n\t" MCC_GEMM_FIXED_RQ("acc", zp)
#define MCC_GEMM_FIXED_G2_OPS                                                                                   \
    : [acc] "=&r"(acc), [w] "+r"(wp), [b] "+r"(bias), [rq] "+r"(rq), [out] "+r"(out)

/* Every block of one pixel of eight input bytes at src, unpacked into r8-r11 once; each channel accumulated and
   requantized in turn (MCC_GEMM_FIXED_G2_CH). The pixel is read before any of its outputs is written. */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_g2(const int8_t *src, const int32_t *wp,
                                                                    const int32_t *bias, const int32_t *rq,
                                                                    int32_t zp, int8_t *out, const int32_t C,
                                                                    const int F) {
    const uint32_t v0 = mcc_read32(src), v1 = mcc_read32(src + 4);
    register uint32_t x0_ __asm__("r8") = MCC_SXTB16(v0);
    register uint32_t x1_ __asm__("r9") = MCC_SXTB16_ROR8(v0);
    register uint32_t x2_ __asm__("r10") = MCC_SXTB16(v1);
    register uint32_t x3_ __asm__("r11") = MCC_SXTB16_ROR8(v1);
    _Pragma("GCC unroll 4") for (int32_t c = 0; c < C; c += 4) {
        int32_t acc;
        if (F) {
            __asm__ volatile(MCC_GEMM_FIXED_G2_CH("") MCC_GEMM_FIXED_G2_CH("") MCC_GEMM_FIXED_G2_CH("")
                                 MCC_GEMM_FIXED_G2_CH("") MCC_GEMM_FIXED_G2_OPS
                             : "r"(x0_), "r"(x1_), "r"(x2_), "r"(x3_)
                             : "r4", "r5", "r6", "r12", "memory");
        } else {
            __asm__ volatile(MCC_GEMM_FIXED_G2_CH(MCC_GEMM_FIXED_ZP) MCC_GEMM_FIXED_G2_CH(MCC_GEMM_FIXED_ZP)
                                 MCC_GEMM_FIXED_G2_CH(MCC_GEMM_FIXED_ZP) MCC_GEMM_FIXED_G2_CH(MCC_GEMM_FIXED_ZP)
                                     MCC_GEMM_FIXED_G2_OPS
                             : "r"(x0_), "r"(x1_), "r"(x2_), "r"(x3_), [zp] "r"(zp)
                             : "r4", "r5", "r6", "r12", "memory");
        }
    }
}

#endif

#if !defined(MCC_GEMM_NARROW)
/* The row-split column (p->column == 2) of the window at (iy0, ix0) as raw bytes, the input zero point over the
   padding, zeros up to p->depth: the int8 form of mcc_gemm_col_split for a window over the border. */
static void mcc_gemm_im2col_split(const mcc_gemm_params *p, const int8_t *image, int32_t iy0, int32_t ix0,
                                  int8_t *col) {
    const int32_t full = (p->k_w * p->in_c) & ~3;
    int8_t *head = col;
    int8_t *tail = col + (size_t)p->k_h * full;
    const int8_t pad = (int8_t)p->pad_value;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        const int row_ok = iy >= 0 && iy < p->in_h;
        int8_t *d = head;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx; /* dil_w == 1 */
            const int ok = row_ok && ix >= 0 && ix < p->in_w;
            const int8_t *x = ok ? image + ((size_t)iy * p->in_w + ix) * p->in_c : &pad;
            for (int32_t c = 0; c < p->in_c; ++c, x += ok) {
                if (d == head + full) { /* the row's last taps (at least one: column 2) go to the tail */
                    d = tail;
                }
                *d++ = *x;
            }
        }
        head += full;
        tail = d;
    }
    for (int32_t k = (int32_t)(tail - col); k < p->depth; ++k) {
        col[k] = 0;
    }
}

/* A row-split convolution (p->column == 2): per output pixel, an interior window's int16 column is expanded straight
   from its input rows (each row's whole groups of four taps), the rows' last k_w * in_c % 4 taps staged as bytes
   in the upper half of the column's tail words and expanded down in place; a window over the border is gathered tap
   by tap (mcc_gemm_im2col_split). The byte layout (MCC_GEMM_NARROW) keeps window order: no row split. */
static void mcc_gemm_conv_split(const mcc_gemm_params *p, const int8_t *image, const int32_t *w,
                                const int32_t *bias, const int32_t *rq, int8_t *out, int8_t *scratch) {
    uint32_t *const col16 = (uint32_t *)(void *)scratch;
    const int mode = mcc_gemm_mode(p);
    const int32_t full = (p->k_w * p->in_c) & ~3, rest = (p->k_w * p->in_c) & 3;
    const int32_t k_h = p->k_h;
    const int32_t head = k_h * full;           /* taps of the rows' whole groups */
    const int32_t tail = p->depth - head;      /* the rows' last taps, rounded up to a group */
    uint32_t *const tail16 = col16 + (head >> 1);
    int8_t *const stage = (int8_t *)(void *)tail16 + tail;
    const size_t step = (size_t)p->dil_h * p->in_w * p->in_c;
    const int32_t ox_lo = (p->pad_left + p->stride_w - 1) / p->stride_w; /* first ox with ix0 >= 0 */
    const int32_t ox_end = p->in_w - p->k_w + p->pad_left;               /* ox * stride_w <= ox_end inside */
    const int32_t span_h = (k_h - 1) * p->dil_h;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        const int rows_in = iy0 >= 0 && iy0 + span_h < p->in_h;
        const int8_t *const row0 = rows_in ? image + (size_t)iy0 * p->in_w * p->in_c : image;
        for (int32_t ox = 0; ox < p->out_w; ++ox, out += p->out_c) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            if (rows_in && ox >= ox_lo && ox * p->stride_w <= ox_end) {
                const int8_t *r = row0 + (size_t)ix0 * p->in_c;
                uint32_t *d = col16;
                int8_t *st = stage;
                int32_t ky = k_h;
                const uint32_t zero = 0;
                memcpy(stage + tail - 4, &zero, 4); /* the zeros after the rows' last taps (fewer than four) */
                do {
                    const int8_t *x = r;
                    const int8_t *const xe = r + full;
                    for (; x != xe; x += 4, d += 2) {
                        const uint32_t v = mcc_read32(x);
                        d[0] = MCC_SXTB16(v);
                        d[1] = MCC_SXTB16_ROR8(v);
                    }
                    st[0] = x[0]; /* rest >= 1 */
                    if (rest > 1) {
                        st[1] = x[1];
                        if (rest > 2) {
                            st[2] = x[2];
                        }
                    }
                    st += rest;
                    r += step;
                } while (--ky);
                for (int32_t g = 0; g < tail; g += 4) { /* in place: group g is read before its words are written */
                    const uint32_t v = mcc_read32(stage + g);
                    tail16[g >> 1] = MCC_SXTB16(v);
                    tail16[(g >> 1) + 1] = MCC_SXTB16_ROR8(v);
                }
            } else { /* the int8 column in the upper half, expanded down in place */
                mcc_gemm_im2col_split(p, image, iy0, ix0, scratch + p->depth);
                mcc_gemm_expand(scratch + p->depth, p->depth, p->depth, col16);
            }
            mcc_gemm_pixel16(p, mode, col16, w, bias, rq, out);
        }
    }
}
#endif

#if defined(MCC_GEMM_FIXED)
/* The int8 row-split column of a window over the border (mcc_gemm_im2col_split) for a layer of fixed shape: with
   KH, KW and IC constants every tap's place in the column is a constant, so the gather is straight code with one
   bounds test per window pixel. */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_gather_split(const mcc_gemm_params *p,
                                                                              const int8_t *image, int32_t iy0,
                                                                              int32_t ix0, int8_t *col,
                                                                              const int32_t G, const int32_t KH,
                                                                              const int32_t KW, const int32_t IC) {
    const int32_t ROW = KW * IC, FULL = ROW & ~3, REST = ROW - FULL;
    const int8_t pad = (int8_t)p->pad_value;
    _Pragma("GCC unroll 16") for (int32_t ky = 0; ky < KH; ++ky) {
        const int32_t iy = iy0 + ky;
        const int row_ok = iy >= 0 && iy < p->in_h;
        _Pragma("GCC unroll 16") for (int32_t kx = 0; kx < KW; ++kx) {
            const int32_t ix = ix0 + kx;
            const int ok = row_ok && ix >= 0 && ix < p->in_w;
            _Pragma("GCC unroll 16") for (int32_t c = 0; c < IC; ++c) {
                const int32_t t = kx * IC + c;
                col[t < FULL ? ky * FULL + t : KH * FULL + ky * REST + (t - FULL)] =
                    ok ? image[((size_t)iy * p->in_w + ix) * IC + c] : pad;
            }
        }
    }
    _Pragma("GCC unroll 4") for (int32_t k = KH * ROW; k < 4 * G; ++k) {
        col[k] = 0;
    }
}

/* The KH taps of one window column (input column ix, rows iy0..iy0+KH-1, IC channels each) as int16 column words
   at d: expanded from the input, the input zero point where the pixel is over the padding. rows_in: every row is
   inside the image. */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_fill_slot(const mcc_gemm_params *p,
                                                                           const int8_t *image, int32_t iy0,
                                                                           int32_t ix, int rows_in, int aligned,
                                                                           uint32_t *d, const int32_t KH,
                                                                           const int32_t IC) {
    const size_t row_step = (size_t)p->in_w * IC;
    const int col_ok = ix >= 0 && ix < p->in_w;
    if (rows_in && col_ok && aligned) {
        const int8_t *src = image + ((size_t)iy0 * p->in_w + ix) * IC;
        _Pragma("GCC unroll 16") for (int32_t ky = 0; ky < KH; ++ky, src += row_step, d += IC >> 1) {
            mcc_gemm_fixed_expand(src, d, IC);
        }
        return;
    }
    const uint32_t pad = (uint32_t)(uint8_t)p->pad_value * 0x01010101u;
    const uint32_t pad_a = MCC_SXTB16(pad), pad_b = MCC_SXTB16_ROR8(pad);
    _Pragma("GCC unroll 1") for (int32_t ky = 0; ky < KH; ++ky, d += IC >> 1) {
        const int32_t iy = iy0 + ky;
        if (col_ok && iy >= 0 && iy < p->in_h) {
            mcc_gemm_expand(image + ((size_t)iy * p->in_w + ix) * IC, IC, IC, d);
        } else {
            _Pragma("GCC unroll 1") for (int32_t g = 0; g < IC >> 1; g += 2) {
                d[g] = pad_a;
                d[g + 1] = pad_b;
            }
        }
    }
}

/* A layer of fixed shape of stride_w 1 whose window columns are whole pairs of groups (IC a multiple of 4, KH * IC
   a multiple of 8; B 2, backends/c/emitters/gemm.py fixed_shape): the int16 column is kept as KW slots, one per window column (its KH
   taps of IC channels; the weights are ordered the same way, column by column), a ring along an output row (stride_w
   1): each pixel after the first expands only its new window column, into the slot of the column that left the
   window, and the blocks read the slots in window order. A window over the border costs no more than one inside. The weights are interleaved with each block's
   bias and requantization rows (mcc_gemm_fixed_block). Output pixels in raster order, all channels of a pixel
   before the next pixel's new input is read. */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_slots(const mcc_gemm_params *p,
                                                                       const int8_t *image, const int32_t *w,
                                                                       int8_t *out, int8_t *scratch, const int32_t G,
                                                                       const int32_t C, const int F, const int32_t KH,
                                                                       const int32_t KW, const int32_t IC) {
    const int32_t SLOT = (KH * IC) >> 1; /* words per slot */
    const int32_t GS = (KH * IC) >> 2;   /* groups per slot, even */
    uint32_t *const col = (uint32_t *)(void *)scratch;
    const int32_t zp = p->out_zp;
    const int aligned = !((uintptr_t)image & 3);
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        const int rows_in = iy0 >= 0 && iy0 + KH <= p->in_h;
        uint32_t *slot[16];
        _Pragma("GCC unroll 16") for (int32_t kx = 0; kx < KW; ++kx) {
            slot[kx] = col + kx * SLOT;
        }
        for (int32_t ox = 0; ox < p->out_w; ++ox, out += C) {
            const int32_t ix0 = ox - p->pad_left;
            if (ox > 0) { /* the window moved one column: the leaving column's slot takes the new one */
                uint32_t *const first = slot[0];
                _Pragma("GCC unroll 16") for (int32_t kx = 0; kx + 1 < KW; ++kx) {
                    slot[kx] = slot[kx + 1];
                }
                slot[KW - 1] = first;
                mcc_gemm_fixed_fill_slot(p, image, iy0, ix0 + KW - 1, rows_in, aligned, first, KH, IC);
            } else {
                _Pragma("GCC unroll 1") for (int32_t kx = 0; kx < KW; ++kx) {
                    mcc_gemm_fixed_fill_slot(p, image, iy0, ix0 + kx, rows_in, aligned, slot[kx], KH, IC);
                }
            }
            const int32_t *wp = w;
            int8_t *o = out;
            const int8_t *const end = out + C;
            _Pragma("GCC unroll 1") do {
                int32_t a0 = wp[0], a1 = wp[1], a2 = wp[2], a3 = wp[3];
                wp += 4;
                _Pragma("GCC unroll 16") for (int32_t kx = 0; kx < KW; ++kx) {
                    const uint32_t *xp;
                    /* the slot's first two groups, its address loaded straight into the column pointer */
                    __asm__("ldr %[x], %[s]\n\t"
                            "ldm %[x]!, {r8, r9, r10, r11}\n\t" MCC_GEMM_FIXED_4CH
                            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "=&r"(xp), [w] "+r"(wp)
                            : [s] "m"(slot[kx])
                            : "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "memory");
                    if (G <= 64) {
                        _Pragma("GCC unroll 64") for (int32_t g = 2; g < GS; g += 2) {
                            MCC_GEMM_FIXED_GROUP8(xp, wp);
                        }
                    } else { /* the rest in a loop of eight groups */
                        const int32_t REST8 = (GS - 2) & ~7;
                        if (REST8) {
                            const uint32_t *const x8 = xp + 2 * REST8;
                            do {
                                MCC_GEMM_FIXED_GROUP8(xp, wp);
                                MCC_GEMM_FIXED_GROUP8(xp, wp);
                                MCC_GEMM_FIXED_GROUP8(xp, wp);
                                MCC_GEMM_FIXED_GROUP8(xp, wp);
                            } while (xp != x8);
                        }
                        _Pragma("GCC unroll 4") for (int32_t g = 2 + REST8; g < GS; g += 2) {
                            MCC_GEMM_FIXED_GROUP8(xp, wp);
                        }
                    }
                }
                const int32_t *rq = wp; /* the block's requantization rows follow its weights */
                {
                    int8_t *out = o; /* the names MCC_GEMM_FIXED_STORE4 uses */
                    MCC_GEMM_FIXED_STORE4(F);
                    o = out;
                }
                wp = rq;
            } while (o != end);
        }
    }
}

/* One image of a layer of fixed shape (G groups deep, C output channels, F the zero point folded) in raster order,
   all channels of a pixel before the next pixel is read. KH 0: a 1x1 window read in place (mcc_gemm_direct,
   in_c = 4 G); else a KH x KW window over IC input channels, dilation 1, whose column is built with its loops
   unrolled for a window inside the image, by the generic code for one over the border. B: a byte column
   (p->column 1), multiplied as raw bytes unpacked with SXTB16. */
__attribute__((always_inline)) static inline void mcc_gemm_fixed_layer(
    const mcc_gemm_params *p, const int8_t *image, const int32_t *w, const int32_t *bias, const int32_t *rq,
    int8_t *out, int8_t *scratch, const int32_t G, const int32_t C, const int F, const int32_t KH, const int32_t KW,
    const int32_t IC, const int B) {
    uint32_t *const col = (uint32_t *)(void *)scratch;
    const int32_t zp = p->out_zp;
    const int IL = B != 1 && !(KH == 0 && G == 2); /* interleaved weights: gemm.py interleaved */
    if (B == 2) { /* window columns as slots */
        mcc_gemm_fixed_slots(p, image, w, out, scratch, G, C, F, KH, KW, IC);
        return;
    }
    if (B) { /* a byte column: the pixel in place (KH 0), else an int8 im2col column */
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < p->out_w; ++ox, out += C) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                const int8_t *x = scratch;
                if (KH == 0) {
                    x = image + ((size_t)iy0 * p->in_w + ix0) * (4 * G);
                } else {
                    mcc_gemm_im2col(p, image, iy0, ix0, scratch);
                }
                mcc_gemm_fixed_blocks_s8(x, G, w, bias, rq, zp, out, C, F);
            }
        }
        return;
    }
    if (KH == 0 && G == 2 && p->stride_h == 1 && p->stride_w == 1) { /* the pixels one after another */
        const int8_t *src = image;
        const int8_t *const src_end = image + (size_t)p->out_h * p->out_w * 8;
        _Pragma("GCC unroll 1") do {
            mcc_gemm_fixed_g2(src, w, bias, rq, zp, out, C, F);
            src += 8;
            out += C;
        } while (src != src_end);
        return;
    }
    if (KH == 0) {
        const size_t step = (size_t)p->stride_w * (size_t)(4 * G);
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int8_t *src = image + (size_t)oy * p->stride_h * p->in_w * (4 * G);
            for (int32_t ox = 0; ox < p->out_w; ++ox, src += step, out += C) {
                if (G == 2) {
                    mcc_gemm_fixed_g2(src, w, bias, rq, zp, out, C, F);
                } else {
                    mcc_gemm_expand(src, 4 * G, 4 * G, col);
                    mcc_gemm_fixed_blocks(col, G, w, bias, rq, zp, out, C, F, IL);
                }
            }
        }
        return;
    }
    const int32_t ROW = KW * IC, FULL = ROW & ~3, REST = ROW & 3;
    const int32_t tail = 4 * G - KH * FULL; /* row-split (REST > 0): the rows' last taps, rounded up to a group */
    uint32_t *const tail16 = col + ((KH * FULL) >> 1);
    int8_t *const stage = (int8_t *)(void *)tail16 + tail;
    const size_t row_step = (size_t)p->in_w * IC;
    /* input pixels of whole groups at word-aligned addresses: their column words with LDM and STM */
    const int aligned = !(IC & 3) && !((uintptr_t)image & 3);
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        const int rows_in = iy0 >= 0 && iy0 + KH <= p->in_h;
        const int8_t *const row0 = rows_in ? image + (size_t)iy0 * row_step : image;
        for (int32_t ox = 0; ox < p->out_w; ++ox, out += C) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            if (rows_in && ix0 >= 0 && ix0 + KW <= p->in_w && (REST || (IC & 3) || aligned)) {
                const int8_t *r = row0 + (size_t)ix0 * IC;
                uint32_t *d = col;
                int8_t *st = stage;
                const int TAIL1 = REST && tail == 4; /* one tail group: its four taps in registers */
                int32_t tb[4] = {0, 0, 0, 0};
                if (REST && !TAIL1) {
                    const uint32_t zero = 0;
                    memcpy(stage + tail - 4, &zero, 4); /* the zeros after the rows' last taps */
                }
                if (!REST && !(IC & 3)) { /* the rows with LDM and STM (an unaligned input: the generic gather) */
                    _Pragma("GCC unroll 16") for (int32_t ky = 0; ky < KH; ++ky, r += row_step, d += FULL >> 1) {
                        mcc_gemm_fixed_expand(r, d, FULL);
                    }
                    mcc_gemm_fixed_blocks(col, G, w, bias, rq, zp, out, C, F, IL);
                    continue;
                }
                _Pragma("GCC unroll 16") for (int32_t ky = 0; ky < KH; ++ky, r += row_step) {
                    _Pragma("GCC unroll 16") for (int32_t g = 0; g < FULL; g += 4, d += 2) {
                        const uint32_t v = mcc_read32(r + g);
                        d[0] = MCC_SXTB16(v);
                        d[1] = MCC_SXTB16_ROR8(v);
                    }
                    _Pragma("GCC unroll 4") for (int32_t i = 0; i < REST; ++i) {
                        if (TAIL1) {
                            tb[ky * REST + i] = r[FULL + i];
                        } else {
                            *st++ = r[FULL + i];
                        }
                    }
                }
                if (TAIL1) { /* the tail group's two words: taps (0, 2) and (1, 3) as 16-bit pairs */
                    tail16[0] = (uint32_t)(uint16_t)tb[0] | ((uint32_t)tb[2] << 16);
                    tail16[1] = (uint32_t)(uint16_t)tb[1] | ((uint32_t)tb[3] << 16);
                }
                for (int32_t g = 0; g < (REST && !TAIL1 ? tail : 0); g += 4) {
                    const uint32_t v = mcc_read32(stage + g); /* in place: read before its words are written */
                    tail16[g >> 1] = MCC_SXTB16(v);
                    tail16[(g >> 1) + 1] = MCC_SXTB16_ROR8(v);
                }
            } else if (REST && KH * ROW <= 64) {
                mcc_gemm_fixed_gather_split(p, image, iy0, ix0, scratch + 4 * G, G, KH, KW, IC);
                mcc_gemm_expand(scratch + 4 * G, 4 * G, 4 * G, col);
            } else if (REST) {
                mcc_gemm_im2col_split(p, image, iy0, ix0, scratch + 4 * G);
                mcc_gemm_expand(scratch + 4 * G, 4 * G, 4 * G, col);
            } else if (aligned) {
                mcc_gemm_fixed_gather_s16(p, image, iy0, ix0, col, KH, KW, IC);
            } else {
                mcc_gemm_im2col_s16(p, image, iy0, ix0, col);
            }
            mcc_gemm_fixed_blocks(col, G, w, bias, rq, zp, out, C, F, IL);
        }
    }
}

typedef void (*mcc_gemm_fixed_fn)(const mcc_gemm_params *p, const int8_t *image, const int32_t *w,
                                  const int32_t *bias, const int32_t *rq, int8_t *out, int8_t *scratch);
#define MCC_GEMM_FIXED_NAME(G, C, F, KH, KW, IC, B) mcc_gemm_fixed_##G##_##C##_##F##_##KH##_##KW##_##IC##_##B
#define MCC_GEMM_FIXED_DEFINE(G, C, F, KH, KW, IC, B)                                                           \
    MCC_GEMM_FIXED_ATTR static void MCC_GEMM_FIXED_NAME(G, C, F, KH, KW, IC, B)(                                \
        const mcc_gemm_params *p, const int8_t *image, const int32_t *w, const int32_t *bias, const int32_t *rq,  \
        int8_t *out, int8_t *scratch) {                                                                         \
        mcc_gemm_fixed_layer(p, image, w, bias, rq, out, scratch, (G), (C), (F), (KH), (KW), (IC), (B));        \
    }
MCC_GEMM_SHAPES(MCC_GEMM_FIXED_DEFINE)

/* Whether a window of KH x KW taps over IC channels on an int16 column is kept as slots of window columns. */
static inline int mcc_gemm_slots_fit(int32_t KH, int32_t KW, int32_t IC) {
    return KW <= 16 && !(IC & 3) && !((KH * IC) & 7);
}

/* The instance of a layer of mode 1 or 2 (mcc_gemm_mode), or NULL. */
static mcc_gemm_fixed_fn mcc_gemm_fixed_find(const mcc_gemm_params *p, int mode) {
    if (mode == 0) {
        return NULL;
    }
    const int direct = mcc_gemm_direct(p);
    if ((direct && p->in_c != p->depth) || (!direct && (p->dil_h != 1 || p->dil_w != 1))) {
        return NULL;
    }
#define MCC_GEMM_FIXED_CASE(G, C, F, KH, KW, IC, B)                                                             \
    if (p->depth == 4 * (G) && p->out_c == (C) && (mode == 2) == (F) && (p->column == 1) == ((B) == 1) &&       \
        ((B) == 2) == (p->column == 0 && (KH) > 0 && p->stride_w == 1 && mcc_gemm_slots_fit(KH, KW, IC)) &&       \
        ((KH) == 0 ? direct : !direct && p->k_h == (KH) && p->k_w == (KW) && p->in_c == (IC))) {               \
        return MCC_GEMM_FIXED_NAME(G, C, F, KH, KW, IC, B);                                                     \
    }
    MCC_GEMM_SHAPES(MCC_GEMM_FIXED_CASE)
#undef MCC_GEMM_FIXED_CASE
    return NULL;
}
#endif

void mcc_conv_gemm_s8(const mcc_gemm_params *p, const int8_t *in, const int32_t *w, const int32_t *bias,
                      const int32_t *rq, int8_t *out, int8_t *scratch) {
    const int direct = mcc_gemm_direct(p);
    const int mode = mcc_gemm_mode(p);
#if defined(MCC_GEMM_FIXED)
    const mcc_gemm_fixed_fn fixed = mcc_gemm_fixed_find(p, mode);
#endif
    uint32_t *col16 = (uint32_t *)(void *)scratch;
    for (int32_t n = 0; n < p->batch; ++n) {
        const int8_t *image = in + (size_t)n * p->in_h * p->in_w * p->in_c;
#if defined(MCC_GEMM_FIXED)
        if (fixed != NULL) {
            fixed(p, image, w, bias, rq, out, scratch);
            out += (size_t)p->out_h * p->out_w * p->out_c;
            continue;
        }
#endif
#if !defined(MCC_GEMM_NARROW)
        if (p->column == 2) {
            mcc_gemm_conv_split(p, image, w, bias, rq, out, scratch);
            out += (size_t)p->out_h * p->out_w * p->out_c;
            continue;
        }
#endif
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                if (p->column == 1) { /* raw bytes: the pixel in place, or an int8 im2col column */
                    const int8_t *x = scratch;
                    if (direct) {
                        x = image + ((size_t)iy0 * p->in_w + ix0) * p->in_c;
                    } else {
                        mcc_gemm_im2col(p, image, iy0, ix0, scratch);
                    }
                    mcc_gemm_pixel(p, x, w, bias, rq, out);
                } else if (!direct) {
                    if (!((p->k_w * p->in_c) & 3)) {
                        mcc_gemm_im2col_s16(p, image, iy0, ix0, col16);
                    } else { /* the int8 column in the upper half, expanded down in place */
                        mcc_gemm_im2col(p, image, iy0, ix0, scratch + p->depth);
                        mcc_gemm_expand(scratch + p->depth, p->depth, p->depth, col16);
                    }
                    mcc_gemm_pixel16(p, mode, col16, w, bias, rq, out);
                } else {
                    mcc_gemm_expand(image + ((size_t)iy0 * p->in_w + ix0) * p->in_c, p->in_c, p->depth, col16);
                    mcc_gemm_pixel16(p, mode, col16, w, bias, rq, out);
                }
                out += p->out_c;
            }
        }
    }
}
#endif /* MCC_SIZE_FIRST */
