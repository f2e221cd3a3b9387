/* nn.depthwise_conv2d, int8 NHWC x [1][KH][KW][C*M], per-channel requantization. Direct loops: no scratch. */
#include "mcc_kernels.h"

void mcc_depthwise_conv2d_s8(const mcc_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                             const int32_t *mult, const int32_t *shift, int8_t *out) {
    const int32_t m = p->depth_multiplier;
    for (int32_t n = 0; n < p->batch; ++n) {
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int8_t *o = out + (((size_t)n * p->out_h + oy) * p->out_w + ox) * p->out_c;
                for (int32_t oc = 0; oc < p->out_c; ++oc) {
                    const int32_t ic = oc / m;
                    int32_t acc = bias ? bias[oc] : 0;
                    for (int32_t ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = ix0 + kx * p->dil_w;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            const int32_t x = in[(((size_t)n * p->in_h + iy) * p->in_w + ix) * p->in_c + ic];
                            const int32_t wv = w[((size_t)ky * p->k_w + kx) * p->out_c + oc];
                            acc = mcc_add_wrap(acc, (x + p->in_offset) * (wv + p->w_offset));
                        }
                    }
                    acc = mcc_mbqm(acc, mult[oc], shift[oc]) + p->out_zp;
                    o[oc] = (int8_t)mcc_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

#if defined(MCC_SIZE_FIRST)
/* ---- size-first build: one compact specialised depthwise kernel --------------------------------------------------
 * Every mcc_depthwise_conv2d_s8_k<K>s<S>[_any] entry calls mcc_dw_small with its window and stride: per output pixel
 * (raster order) and block of four channels, the valid taps of the window (no unrolling, no border instances), the
 * input offset added to each input value, the bias TFLite's own; then the C mod 4 channels left one by one. Weights
 * in the byte layout of depthwise_fast_weights (narrow): per block and tap one word of four bytes, then one word per
 * [tap][channel] left. Requantization from the packed size-first table (mcc_rq_small): the plain and the _any
 * variants share it. Writes follow the speed-first kernels' order (the overlap contract, compiler/overlap.py). */
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif
#include <string.h>

/* a[0..3] += the valid taps [ky0, ky1) x [kx0, kx1) of one block of four channels; img[at] is the block's first
   channel at the window's top-left tap (maybe in the padding: only valid taps are read), wb its weight words. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline)) /* its own registers: inlined, GCC -Os spills the accumulators around every tap */
#endif
static void mcc_dw_block4(const int8_t *img, int32_t at, int32_t row, int32_t ch, const int32_t *wb, int32_t k,
                          int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, int32_t off, int32_t *a) {
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
#if defined(__ARM_FEATURE_DSP)
    const uint32_t off2 = ((uint32_t)off & 0xFFFFu) * 0x10001u;
#endif
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int8_t *src = img + (at + ky * row + kx0 * ch); /* a valid tap: the index is not negative */
        const int32_t *wt = wb + ky * k + kx0;
        for (int32_t kx = kx0; kx < kx1; ++kx, src += ch) {
            uint32_t x;
            memcpy(&x, src, sizeof x);
            const uint32_t w = (uint32_t)*wt++;
#if defined(__ARM_FEATURE_DSP)
            uint32_t xo, wo;
            __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(xo) : "r"(off2), "r"(x));
            __asm__("sxtb16 %0, %1, ror #8" : "=r"(wo) : "r"(w));
            const uint32_t xe = (uint32_t)__sxtab16((int16x2_t)off2, (int8x4_t)x);
            const uint32_t we = (uint32_t)__sxtb16((int8x4_t)w);
            a0 = __smlabb((int32_t)xe, (int32_t)we, a0);
            a2 = __smlatt((int32_t)xe, (int32_t)we, a2);
            a1 = __smlabb((int32_t)xo, (int32_t)wo, a1);
            a3 = __smlatt((int32_t)xo, (int32_t)wo, a3);
#else
            a0 = mcc_add_wrap(a0, ((int8_t)(uint8_t)x + off) * (int8_t)(uint8_t)w);
            a1 = mcc_add_wrap(a1, ((int8_t)(uint8_t)(x >> 8) + off) * (int8_t)(uint8_t)(w >> 8));
            a2 = mcc_add_wrap(a2, ((int8_t)(uint8_t)(x >> 16) + off) * (int8_t)(uint8_t)(w >> 16));
            a3 = mcc_add_wrap(a3, ((int8_t)(uint8_t)(x >> 24) + off) * (int8_t)(uint8_t)(w >> 24));
#endif
        }
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}

static void mcc_dw_small(const mcc_dw_fast_params *p, const int8_t *in, const int32_t *wq, const int32_t *bias,
                         const int32_t *rq, int8_t *out, int32_t k, int32_t stride) {
    const int32_t ch = p->in_c, blocks = ch >> 2, taps = k * k, off = p->in_offset, row = p->in_w * ch;
    for (int32_t n = 0; n < p->batch; ++n) {
        const int8_t *img = in + (size_t)n * p->in_h * row;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * stride - p->pad_top;
            const int32_t ky0 = iy0 < 0 ? -iy0 : 0, ky1 = p->in_h - iy0 < k ? p->in_h - iy0 : k;
            for (int32_t ox = 0; ox < p->out_w; ++ox, out += ch) {
                const int32_t ix0 = ox * stride - p->pad_left;
                const int32_t kx0 = ix0 < 0 ? -ix0 : 0, kx1 = p->in_w - ix0 < k ? p->in_w - ix0 : k;
                const int32_t at = iy0 * row + ix0 * ch; /* the window's top-left tap (maybe in the padding) */
                int32_t c = 0;
                for (; c < 4 * blocks; c += 4) {
                    int32_t a[4] = {bias[c], bias[c + 1], bias[c + 2], bias[c + 3]};
                    mcc_dw_block4(img, at + c, row, ch, wq + (size_t)(c >> 2) * taps, k, ky0, ky1, kx0, kx1, off, a);
                    for (int32_t j = 0; j < 4; ++j) {
                        out[c + j] = mcc_rq_small(rq, ch, c + j, a[j], p->act_min, p->act_max);
                    }
                }
                for (; c < ch; ++c) { /* the C mod 4 channels left: one word per [tap][channel] */
                    const int32_t rem = ch - 4 * blocks;
                    const int32_t *wt = wq + (size_t)blocks * taps + (c - 4 * blocks);
                    int32_t acc = bias[c];
                    for (int32_t ky = ky0; ky < ky1; ++ky) {
                        for (int32_t kx = kx0; kx < kx1; ++kx) {
                            acc = mcc_add_wrap(acc, (img[at + ky * row + kx * ch + c] + off) * wt[(ky * k + kx) * rem]);
                        }
                    }
                    out[c] = mcc_rq_small(rq, ch, c, acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

#define MCC_DW_VARIANT(K, S)                                                                                       \
    void mcc_depthwise_conv2d_s8_k##K##s##S(const mcc_dw_fast_params *p, const int8_t *in, const int32_t *wq,        \
                                            const int32_t *bias, const int32_t *rq, int8_t *out) {                 \
        mcc_dw_small(p, in, wq, bias, rq, out, K, S);                                                              \
    }                                                                                                              \
    void mcc_depthwise_conv2d_s8_k##K##s##S##_any(const mcc_dw_fast_params *p, const int8_t *in, const int32_t *wq,  \
                                                  const int32_t *bias, const int32_t *rq, int8_t *out) {           \
        mcc_dw_small(p, in, wq, bias, rq, out, K, S);                                                              \
    }
MCC_DW_VARIANT(3, 1)
MCC_DW_VARIANT(3, 2)
MCC_DW_VARIANT(5, 1)
MCC_DW_VARIANT(5, 2)
MCC_DW_VARIANT(7, 1)
MCC_DW_VARIANT(7, 2)
#else
/* ---- specialised depthwise convolution: depth multiplier 1, no dilation, symmetric weights -------------------- *
 *
 * One function per (window, stride, requantization) the emitter picks (mcc_depthwise_conv2d_s8_k<K>s<S>[_any]),
 * all instances of mcc_dw_fast below with KH, KW, SH, SW and the requantization kind compile-time constants. The
 * output is walked in raster order (the planner's overlap contract, compiler/overlap.py). A pixel whose window lies
 * inside the input runs the window fully unrolled with no bounds checks, block by block of four channels (the
 * accumulators in registers, each block's four results written before the next block reads), and a 3x3 window at
 * speed-first DSP builds in one asm block per block (mcc_dw_win, mcc_dw_blk3_full). A border pixel runs the same
 * code over the valid part of its window (the padded taps contribute nothing, exactly as TFLite's). The channels beyond the last multiple
 * of four follow each block loop one by one. The input offset is added to each input value (SXTAB16 adds it for
 * free on Armv7E-M), so the bias stays TFLite's own and every pixel is exact.
 *
 * Weights arrive as int32 words packed by the emitter (backends/c/emitters/compute.py, depthwise_fast_weights):
 * for each block of four channels c..c+3 and each tap t (row-major over the window), either two words holding the
 * 16-bit pairs (w[t][c], w[t][c+2]) and (w[t][c+1], w[t][c+3]) (the lanes of SXTB16's even/odd split), or, under
 * MCC_GEMM_NARROW (size-first builds), one word with the four bytes w[t][c..c+3], unpacked by SXTB16; then, for the
 * C mod 4 remaining channels, one word per [tap][channel]. The plain variant's 16-bit weights and its bias are
 * doubled (not under MCC_GEMM_NARROW): its accumulators are the doubled ones its requantization takes.
 *
 * Requantization (rq: three words per channel, backends/c/emitters/gemm.py requant_table, the plain variant's with
 * the output zero point folded into the rounding half; two in a size-first build's plain variant, MCC_DW_RQ_WORDS,
 * the zero point added) is TFLite's
 * MultiplyByQuantizedMultiplier bit for bit. The emitter proves per channel when the cheap form is exact
 * (|accumulator| < 2^30 and a right shift r: SMMLAR on the doubled accumulator, a sign fix, an arithmetic shift);
 * a layer where every channel qualifies gets the variant without the per-channel test, any other the _any variant
 * with the exact general forms. */
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define MCC_DW_INLINE static inline __attribute__((always_inline))
#else
#define MCC_DW_INLINE static inline
#endif

#if defined(MCC_GEMM_NARROW)
#define MCC_DW_TAP_WORDS 1
#else
#define MCC_DW_TAP_WORDS 2
#endif

static inline uint32_t mcc_dw_read32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v); /* one (unaligned) LDR on Armv7-M */
    return v;
}

/* The output clamp (zero point, activation range), read once per call: a byte store could alias the params. */
typedef struct {
    int32_t zp, lo, hi;
} mcc_dw_q;

/* Words per channel of the requantization table: a size-first build's table for the plain variant leaves out the
   rounding half, 2^(shift - 1) (every channel has one there), and recomputes it. */
#if defined(MCC_GEMM_NARROW)
#define MCC_DW_RQ_WORDS(FAST) ((FAST) ? 2 : 3)
#else
#define MCC_DW_RQ_WORDS(FAST) 3
#endif

/* The plain variant's speed-first layout (not under MCC_GEMM_NARROW) is one stream (backends/c/emitters/compute.py
   depthwise_fast_stream): per block of four channels its doubled bias (4 words), its weight pairs (2 per tap,
   doubled) and its requantization (3 words per channel), so that a block's loop walks one pointer; then for the
   C mod 4 channels left their weights (one word per [tap][channel]), bias and requantization. The bias and rq
   arguments are not read then. */
#if defined(MCC_GEMM_NARROW)
#define MCC_DW_STREAM(FAST) 0
#else
#define MCC_DW_STREAM(FAST) (FAST)
#endif
#define MCC_DW_BLOCK_WORDS(FAST, TAPS) (MCC_DW_STREAM(FAST) ? 4 + 2 * (TAPS) + 12 : (TAPS) * MCC_DW_TAP_WORDS)

MCC_DW_INLINE int8_t mcc_dw_out(const mcc_dw_q *p, int32_t acc, const int32_t *rq, const int FAST, const int FULL) {
#if defined(MCC_GEMM_NARROW)
    const int32_t full[3] = {rq[0], rq[1], FAST ? (int32_t)(1u << (rq[1] - 1)) : rq[2]};
    int32_t v = mcc_requant_rq(acc, full, FAST) + p->zp;
#else
    /* the plain variant's table has the zero point folded into the rounding half (2^(r-1) + zp * 2^r), and its
       weights and bias are doubled: acc is already the doubled accumulator SMMLAR takes (mcc_requant_rq) */
    int32_t v;
    if (FAST) {
#if defined(__ARM_FEATURE_DSP)
        int32_t t;
        __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"(acc), "r"(rq[0]), "r"(rq[2]));
#else
        const int32_t t = (int32_t)((((int64_t)acc * rq[0]) + (int64_t)rq[2] * ((int64_t)1 << 32) + 0x80000000LL) >> 32);
#endif
        v = (t + (acc >> 31)) >> rq[1];
    } else {
        v = mcc_requant_rq(acc, rq, 0) + p->zp;
    }
#endif
#if defined(__ARM_FEATURE_DSP)
    v = __ssat(v, 8);
    if (!FULL) {
        v = mcc_clamp(v, p->lo, p->hi);
    }
#else
    (void)FULL;
    v = mcc_clamp(v, p->lo, p->hi);
#endif
    return (int8_t)v;
}

/* Four accumulators of a block += its input word x (four channels) times the tap's weights at wt. */
MCC_DW_INLINE void mcc_dw_mac4(int32_t *a, uint32_t x, const int32_t *wt, int32_t off2, int32_t off) {
#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__) /* at -O0, GCC cannot give the block its eight registers */
    /* one asm block per tap: the unpacked words live only inside it, so the compiler cannot hoist all taps' unpacked
       values ahead of the multiplies (which spills them all to the stack) */
    (void)off;
    int32_t xe, xo;
#if defined(MCC_GEMM_NARROW)
    int32_t we, wo;
    __asm__("sxtab16 %[xe], %[o2], %[x]\n\t"
            "sxtab16 %[xo], %[o2], %[x], ror #8\n\t"
            "sxtb16 %[we], %[w]\n\t"
            "sxtb16 %[wo], %[w], ror #8\n\t"
            "smlabb %[a0], %[xe], %[we], %[a0]\n\t"
            "smlatt %[a2], %[xe], %[we], %[a2]\n\t"
            "smlabb %[a1], %[xo], %[wo], %[a1]\n\t"
            "smlatt %[a3], %[xo], %[wo], %[a3]"
            : [a0] "+r"(a[0]), [a1] "+r"(a[1]), [a2] "+r"(a[2]), [a3] "+r"(a[3]), [xe] "=&r"(xe), [xo] "=&r"(xo),
              [we] "=&r"(we), [wo] "=&r"(wo)
            : [x] "r"(x), [o2] "r"(off2), [w] "r"(wt[0]));
#else
    __asm__("sxtab16 %[xe], %[o2], %[x]\n\t"
            "sxtab16 %[xo], %[o2], %[x], ror #8\n\t"
            "smlabb %[a0], %[xe], %[w0], %[a0]\n\t"
            "smlatt %[a2], %[xe], %[w0], %[a2]\n\t"
            "smlabb %[a1], %[xo], %[w1], %[a1]\n\t"
            "smlatt %[a3], %[xo], %[w1], %[a3]"
            : [a0] "+r"(a[0]), [a1] "+r"(a[1]), [a2] "+r"(a[2]), [a3] "+r"(a[3]), [xe] "=&r"(xe), [xo] "=&r"(xo)
            : [x] "r"(x), [o2] "r"(off2), [w0] "r"(wt[0]), [w1] "r"(wt[1]));
#endif
#else
    (void)off2;
    int32_t w0, w1, w2, w3;
#if defined(MCC_GEMM_NARROW)
    w0 = (int8_t)(uint8_t)((uint32_t)wt[0]);
    w1 = (int8_t)(uint8_t)((uint32_t)wt[0] >> 8);
    w2 = (int8_t)(uint8_t)((uint32_t)wt[0] >> 16);
    w3 = (int8_t)(uint8_t)((uint32_t)wt[0] >> 24);
#else
    w0 = (int16_t)(uint16_t)((uint32_t)wt[0]);
    w2 = (int16_t)(uint16_t)((uint32_t)wt[0] >> 16);
    w1 = (int16_t)(uint16_t)((uint32_t)wt[1]);
    w3 = (int16_t)(uint16_t)((uint32_t)wt[1] >> 16);
#endif
    a[0] = mcc_add_wrap(a[0], ((int8_t)(uint8_t)x + off) * w0);
    a[1] = mcc_add_wrap(a[1], ((int8_t)(uint8_t)(x >> 8) + off) * w1);
    a[2] = mcc_add_wrap(a[2], ((int8_t)(uint8_t)(x >> 16) + off) * w2);
    a[3] = mcc_add_wrap(a[3], ((int8_t)(uint8_t)(x >> 24) + off) * w3);
#endif
}

#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__) && !defined(MCC_GEMM_NARROW) &&                           \
    (defined(__GNUC__) || defined(__clang__))
#define MCC_DW_ROWS 1
/* One tap of a window row in asm: LOAD reads the input word into x, then the tap's two weight words (at *wp, which
   moves past them) multiply its four channels into the block's accumulators (the lanes of mcc_dw_mac4). */
#define MCC_DW_TAP(LOAD)                                                                                           \
    LOAD "\n\t"                                                                                                    \
    "ldrd %[w0], %[w1], [%[wp]], #8\n\t"                                                                           \
    "sxtab16 %[xe], %[o2], %[x]\n\t"                                                                               \
    "sxtab16 %[x], %[o2], %[x], ror #8\n\t"                                                                        \
    "smlabb %[a0], %[xe], %[w0], %[a0]\n\t"                                                                        \
    "smlatt %[a2], %[xe], %[w0], %[a2]\n\t"                                                                        \
    "smlabb %[a1], %[x], %[w1], %[a1]\n\t"                                                                         \
    "smlatt %[a3], %[x], %[w1], %[a3]\n\t"
#define MCC_DW_TAP0 MCC_DW_TAP("ldr %[x], [%[s]]")
#define MCC_DW_TAP1 MCC_DW_TAP("ldr %[x], [%[s], %[ch]]")
#define MCC_DW_TAP2 MCC_DW_TAP("ldr %[x], [%[s], %[ch], lsl #1]")
#define MCC_DW_ROW_OPERANDS                                                                                        \
    : [a0] "+r"(a[0]), [a1] "+r"(a[1]), [a2] "+r"(a[2]), [a3] "+r"(a[3]), [s] "+r"(*s), [wp] "+r"(*wp),            \
      [x] "=&r"(x), [xe] "=&r"(xe), [w0] "=&r"(w0), [w1] "=&r"(w1)                                                 \
    : [ch] "r"(ch), [o2] "r"(off2)                                                                \
    : "memory"

/* A block's accumulators += n taps (1 to 3) of one window row of a 3-wide window: the input words at *s, *s + ch,
   *s + 2 ch, the weights from *wp on; then *s moves one input row down and *wp to the same column of the next
   window row. One asm block per row: the taps' addresses are the row pointer plus ch (no per-tap offsets for GCC to
   keep live across the block loop, which it spills), the weights post-incremented. */
MCC_DW_INLINE void mcc_dw_row3(int32_t *a, const int8_t **s, const int32_t **wp, int32_t ch, int32_t row, int n,
                               int32_t off2) {
    uint32_t x, xe, w0, w1;
    if (n == 3) {
        __asm__(MCC_DW_TAP0 MCC_DW_TAP1 MCC_DW_TAP2 MCC_DW_ROW_OPERANDS);
    } else if (n == 2) {
        __asm__(MCC_DW_TAP0 MCC_DW_TAP1 "add %[wp], %[wp], #8" MCC_DW_ROW_OPERANDS);
    } else {
        __asm__(MCC_DW_TAP0 "add %[wp], %[wp], #16" MCC_DW_ROW_OPERANDS);
    }
    *s += row; /* from the asm's (opaque) pointer: nothing to hoist */
}

/* A block's four accumulators over r rows of n taps (1 to 3 each, compile-time) of a 3x3 window, all inside the
   input: from the bias words at bias, the rows at s, s + row, ..., the weights from wp on (the window's first tap
   used; wp then skips the 3 - n taps a row leaves out). One asm block for the whole window, the bias loaded in it:
   GCC otherwise spills the block loop's pointers around the taps (thirteen registers here). */
#define MCC_DW_ROWN3 MCC_DW_TAP0 MCC_DW_TAP1 MCC_DW_TAP2
#define MCC_DW_ROWN2 MCC_DW_TAP0 MCC_DW_TAP1 "add %[wp], %[wp], #8\n\t"
#define MCC_DW_ROWN1 MCC_DW_TAP0 "add %[wp], %[wp], #16\n\t"
#define MCC_DW_NEXT "add %[s], %[s], %[row]\n\t"
#define MCC_DW_WIN(BODY)                                                                                           \
    __asm__("ldrd %[a0], %[a1], [%[b]]\n\t"                                                                        \
            "ldrd %[a2], %[a3], [%[b], #8]\n\t" BODY                                                               \
            : [a0] "=&r"(a[0]), [a1] "=&r"(a[1]), [a2] "=&r"(a[2]), [a3] "=&r"(a[3]), [s] "+r"(s), [wp] "+r"(wp),  \
              [x] "=&r"(x), [xe] "=&r"(xe), [w0] "=&r"(w0), [w1] "=&r"(w1)                                         \
            : [b] "r"(bias), [ch] "r"(ch), [o2] "r"(off2), [row] "r"(row)                                          \
            : "memory")
MCC_DW_INLINE void mcc_dw_win(int32_t *a, const int32_t *bias, const int8_t *s, const int32_t *wp, int32_t ch,
                              int32_t row, int32_t off2, const int r, const int n) {
    uint32_t x, xe, w0, w1;
    if (n == 3) {
        if (r == 3) {
            MCC_DW_WIN(MCC_DW_ROWN3 MCC_DW_NEXT MCC_DW_ROWN3 MCC_DW_NEXT MCC_DW_ROWN3);
        } else if (r == 2) {
            MCC_DW_WIN(MCC_DW_ROWN3 MCC_DW_NEXT MCC_DW_ROWN3);
        } else {
            MCC_DW_WIN(MCC_DW_ROWN3);
        }
    } else if (n == 2) {
        if (r == 3) {
            MCC_DW_WIN(MCC_DW_ROWN2 MCC_DW_NEXT MCC_DW_ROWN2 MCC_DW_NEXT MCC_DW_ROWN2);
        } else if (r == 2) {
            MCC_DW_WIN(MCC_DW_ROWN2 MCC_DW_NEXT MCC_DW_ROWN2);
        } else {
            MCC_DW_WIN(MCC_DW_ROWN2);
        }
    } else {
        if (r == 3) {
            MCC_DW_WIN(MCC_DW_ROWN1 MCC_DW_NEXT MCC_DW_ROWN1 MCC_DW_NEXT MCC_DW_ROWN1);
        } else if (r == 2) {
            MCC_DW_WIN(MCC_DW_ROWN1 MCC_DW_NEXT MCC_DW_ROWN1);
        } else {
            MCC_DW_WIN(MCC_DW_ROWN1);
        }
    }
}
#undef MCC_DW_WIN

/* One requantized output of the whole-block asm: the channel's {multiplier, shift, rounding half} from wp (which
   moves past them), SMMLAR on the doubled accumulator A, the sign fix, the shift, SSAT (the whole int8 range), the
   byte stored at o (which moves on). */
#define MCC_DW_RQ(A)                                                                                               \
    "ldrd %[w0], %[w1], [%[wp]], #8\n\t"                                                                           \
    "ldr %[x], [%[wp]], #4\n\t"                                                                                    \
    "smmlar %[xe], %[" A "], %[w0], %[x]\n\t"                                                                      \
    "add %[xe], %[xe], %[" A "], asr #31\n\t"                                                                      \
    "asr %[xe], %[xe], %[w1]\n\t"                                                                                  \
    "ssat %[xe], #8, %[xe]\n\t"                                                                                    \
    "strb %[xe], [%[o]], #1\n\t"
#define MCC_DW_NEXTM "ldr %[xe], %[row]\n\tadd %[s], %[s], %[xe]\n\t"

/* A whole block of an interior pixel of the plain variant with the whole int8 clamp, from its stream entry at *wp
   (bias, weights, requantization: *wp then points at the next block's) to its four output bytes at *o (which moves
   past them); *s, the block's input at the window's top-left tap, moves to the next block's. All in one asm block:
   the block loop keeps only its end in memory. */
MCC_DW_INLINE void mcc_dw_blk3_full(const int8_t **s, const int32_t **wp, int8_t **o, int32_t ch, int32_t row,
                                    int32_t off2) {
    int32_t a0, a1, a2, a3;
    uint32_t x, xe, w0, w1;
    __asm__ volatile( /* volatile: it stores the outputs */
            "ldrd %[a0], %[a1], [%[wp]], #8\n\t"
            "ldrd %[a2], %[a3], [%[wp]], #8\n\t"
            MCC_DW_TAP0 MCC_DW_TAP1 MCC_DW_TAP2 "add %[s], %[s], %[row]\n\t"
            MCC_DW_TAP0 MCC_DW_TAP1 MCC_DW_TAP2 "add %[s], %[s], %[row]\n\t"
            MCC_DW_TAP0 MCC_DW_TAP1 MCC_DW_TAP2
            "sub %[s], %[s], %[row], lsl #1\n\t"
            "add %[s], %[s], #4\n\t"
            MCC_DW_RQ("a0") MCC_DW_RQ("a1") MCC_DW_RQ("a2") MCC_DW_RQ("a3")
            : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [s] "+r"(*s), [wp] "+r"(*wp),
              [o] "+r"(*o), [x] "=&r"(x), [xe] "=&r"(xe), [w0] "=&r"(w0), [w1] "=&r"(w1)
            : [ch] "r"(ch), [o2] "r"(off2), [row] "r"(row)
            : "memory");
}

/* The same for a border pixel's window with compile-time bounds, rows [ky0, ky1) x columns [kx0, kx1) of the 3x3
   window (*s at its first tap): the weights from the window's first tap (K0 bytes past the block's entry), each
   row's left-out taps skipped, then K1 bytes on to the requantization. */
#define MCC_DW_LAST2 MCC_DW_TAP0 MCC_DW_TAP1
#define MCC_DW_LAST1 MCC_DW_TAP0
#define MCC_DW_NEXTR "add %[s], %[s], %[row]\n\t"
#define MCC_DW_BLK(BODY, RESTORE)                                                                                  \
    __asm__ volatile("ldrd %[a0], %[a1], [%[wp]]\n\t"                                                              \
                     "ldrd %[a2], %[a3], [%[wp], #8]\n\t"                                                          \
                     "add %[wp], %[wp], %[k0]\n\t" BODY "add %[wp], %[wp], %[k1]\n\t" RESTORE                      \
                     "add %[s], %[s], #4\n\t" MCC_DW_RQ("a0") MCC_DW_RQ("a1") MCC_DW_RQ("a2") MCC_DW_RQ("a3")      \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [s] "+r"(*s),                \
                       [wp] "+r"(*wp), [o] "+r"(*o), [x] "=&r"(x), [xe] "=&r"(xe), [w0] "=&r"(w0), [w1] "=&r"(w1)   \
                     : [ch] "r"(ch), [o2] "r"(off2), [row] "r"(row), [k0] "i"(K0), [k1] "i"(K1)                    \
                     : "memory")
MCC_DW_INLINE void mcc_dw_blk_full(const int8_t **s, const int32_t **wp, int8_t **o, int32_t ch, int32_t row,
                                   int32_t off2, const int ky0, const int ky1, const int kx0, const int kx1) {
    int32_t a0, a1, a2, a3;
    uint32_t x, xe, w0, w1;
    const int r = ky1 - ky0, n = kx1 - kx0;
    const int K0 = 16 + 8 * (ky0 * 3 + kx0), K1 = 8 * (9 - ((ky1 - 1) * 3 + kx1));
    if (n == 3) {
        if (r == 3) {
            MCC_DW_BLK(MCC_DW_ROWN3 MCC_DW_NEXTR MCC_DW_ROWN3 MCC_DW_NEXTR MCC_DW_ROWN3,
                       "sub %[s], %[s], %[row], lsl #1\n\t");
        } else if (r == 2) {
            MCC_DW_BLK(MCC_DW_ROWN3 MCC_DW_NEXTR MCC_DW_ROWN3, "sub %[s], %[s], %[row]\n\t");
        } else {
            MCC_DW_BLK(MCC_DW_ROWN3, "");
        }
    } else if (n == 2) {
        if (r == 3) {
            MCC_DW_BLK(MCC_DW_ROWN2 MCC_DW_NEXTR MCC_DW_ROWN2 MCC_DW_NEXTR MCC_DW_LAST2,
                       "sub %[s], %[s], %[row], lsl #1\n\t");
        } else if (r == 2) {
            MCC_DW_BLK(MCC_DW_ROWN2 MCC_DW_NEXTR MCC_DW_LAST2, "sub %[s], %[s], %[row]\n\t");
        } else {
            MCC_DW_BLK(MCC_DW_LAST2, "");
        }
    } else {
        if (r == 3) {
            MCC_DW_BLK(MCC_DW_ROWN1 MCC_DW_NEXTR MCC_DW_ROWN1 MCC_DW_NEXTR MCC_DW_LAST1,
                       "sub %[s], %[s], %[row], lsl #1\n\t");
        } else if (r == 2) {
            MCC_DW_BLK(MCC_DW_ROWN1 MCC_DW_NEXTR MCC_DW_LAST1, "sub %[s], %[s], %[row]\n\t");
        } else {
            MCC_DW_BLK(MCC_DW_LAST1, "");
        }
    }
}
#undef MCC_DW_BLK
#undef MCC_DW_NEXTR
#undef MCC_DW_LAST1
#undef MCC_DW_LAST2
#undef MCC_DW_NEXTM
#undef MCC_DW_RQ
#undef MCC_DW_ROWN1
#undef MCC_DW_ROWN2
#undef MCC_DW_ROWN3
#undef MCC_DW_NEXT
#undef MCC_DW_ROW_OPERANDS
#undef MCC_DW_TAP0
#undef MCC_DW_TAP1
#undef MCC_DW_TAP2
#undef MCC_DW_TAP
#else
#define MCC_DW_ROWS 0
#endif

MCC_DW_INLINE int32_t mcc_dw_off2(const mcc_conv_params *p) {
    return (int32_t)(((uint32_t)p->in_offset & 0xFFFFu) * 0x10001u);
}

/* One output pixel over taps [ky0, ky1) x [kx0, kx1) of its window; `at` is the input index of the window's
   top-left tap (it may lie in the padding: only valid taps are read). */
MCC_DW_INLINE void mcc_dw_pixel(const mcc_conv_params *p, const int8_t *in, int32_t at, const int32_t *wq,
                                const int32_t *bias, const int32_t *rq, int8_t *o, const int KH, const int KW,
                                int ky0, int ky1, int kx0, int kx1, const int FAST, const int FULL) {
    const mcc_dw_q q = {p->out_zp, p->act_min, p->act_max};
    const int32_t ch = p->in_c;
    const int32_t row = p->in_w * ch;
    const int32_t blocks = ch >> 2;
    const int taps = KH * KW;
    const int32_t off2 = mcc_dw_off2(p), off = p->in_offset;
    const int32_t *wb = wq;
    const int stream = MCC_DW_STREAM(FAST);
    int32_t b = 0;
#if MCC_DW_ROWS
    if (KH == 3 && KW == 3 && stream && FULL && __builtin_constant_p(ky0 | kx0 | (ky1 ^ 3) | (kx1 ^ 3)) &&
        (ky0 | kx0 | (ky1 ^ 3) | (kx1 ^ 3)) == 0) { /* an interior pixel: each block one asm block, requantized */
        const int8_t *s = in + at;
        int8_t *ob = o;
        for (; b < blocks; ++b) {
            mcc_dw_blk3_full(&s, &wb, &ob, ch, row, off2);
        }
    } else if (KH == 3 && KW == 3 && stream && FULL && __builtin_constant_p(ky0) && __builtin_constant_p(ky1) &&
               __builtin_constant_p(kx0) && __builtin_constant_p(kx1)) { /* a border pixel, compile-time bounds */
        const int8_t *s = in + at + ky0 * row + kx0 * ch;
        int8_t *ob = o;
        for (; b < blocks; ++b) {
            mcc_dw_blk_full(&s, &wb, &ob, ch, row, off2, ky0, ky1, kx0, kx1);
        }
    }
#endif
    for (; b < blocks; ++b, wb += MCC_DW_BLOCK_WORDS(FAST, taps)) {
        const int32_t c = b * 4;
        const int8_t *src = in + at + c;
        const int32_t *bb = stream ? wb : bias + c;                /* the block's bias */
        const int32_t *ww = stream ? wb + 4 : wb;                  /* its weights */
        const int32_t *rb = stream ? wb + 4 + 2 * taps : rq + MCC_DW_RQ_WORDS(FAST) * c; /* its requantization */
        int32_t a[4];
#if MCC_DW_ROWS
        if (KH == 3 && KW == 3 && __builtin_constant_p(ky0) && __builtin_constant_p(ky1) &&
            __builtin_constant_p(kx0) && __builtin_constant_p(kx1)) { /* compile-time bounds: one asm block */
            mcc_dw_win(a, bb, src + ky0 * row + kx0 * ch, ww + 2 * (ky0 * 3 + kx0), ch, row, off2, ky1 - ky0,
                       kx1 - kx0);
            goto requant;
        }
        a[0] = bb[0];
        a[1] = bb[1];
        a[2] = bb[2];
        a[3] = bb[3];
        if (KW == 3) { /* rows of taps in asm from a row pointer (mcc_dw_row3) */
            const int8_t *s = src + ky0 * row + kx0 * ch;
            const int32_t *wp = ww + 2 * (ky0 * 3 + kx0);
            for (int ky = ky0; ky < ky1; ++ky) {
                mcc_dw_row3(a, &s, &wp, ch, row, kx1 - kx0, off2);
            }
            goto requant;
        }
#else
        a[0] = bb[0];
        a[1] = bb[1];
        a[2] = bb[2];
        a[3] = bb[3];
#endif
        for (int ky = ky0; ky < ky1; ++ky) {
            for (int kx = kx0; kx < kx1; ++kx) {
                mcc_dw_mac4(a, mcc_dw_read32(src + ky * row + kx * ch), ww + (ky * KW + kx) * MCC_DW_TAP_WORDS,
                            off2, off);
            }
        }
#if MCC_DW_ROWS
    requant:
#endif
        for (int j = 0; j < 4; ++j) {
            o[c + j] = mcc_dw_out(&q, a[j], rb + MCC_DW_RQ_WORDS(FAST) * j, FAST, FULL);
        }
    }
    const int32_t rem = ch - blocks * 4;
    const int32_t *tail = wq + (size_t)blocks * MCC_DW_BLOCK_WORDS(FAST, taps); /* the channels left */
    for (int32_t c = blocks * 4; c < ch; ++c) {
        const int32_t *wt = tail + (c - blocks * 4);
        const int32_t *rc = stream ? tail + (taps + 1) * rem + 3 * (c - blocks * 4) : rq + MCC_DW_RQ_WORDS(FAST) * c;
        int32_t acc = stream ? tail[taps * rem + (c - blocks * 4)] : bias[c];
        for (int ky = ky0; ky < ky1; ++ky) {
            for (int kx = kx0; kx < kx1; ++kx) {
                const int32_t x = in[at + ky * row + kx * ch + c];
                acc = mcc_add_wrap(acc, (x + off) * wt[(ky * KW + kx) * rem]);
            }
        }
        o[c] = mcc_dw_out(&q, acc, rc, FAST, FULL);
    }
}

/* A border pixel: its window clipped to rows [ky0, ky1) and columns [kx0, kx1). At speed-first builds, windows
   clipped by at most one row or column on each side of a 3x3 window (padding 1, the common case) take one of
   sixteen instances with the bounds compile-time constants (unrolled like the interior); any other the loops (and
   so does the _any variant, which only rare layers need). */
#define MCC_DW_CLIP(T, B, L, R)                                                                                    \
    case (T) | (B) << 1 | (L) << 2 | (R) << 3:                                                                     \
        mcc_dw_pixel(p, in, at, wq, bias, rq, o, KH, KW, T, KH - 1 + (B), L, KW - 1 + (R), FAST, FULL);           \
        return;
MCC_DW_INLINE void mcc_dw_border_body(const mcc_conv_params *p, const int8_t *in, int32_t at, const int32_t *wq,
                                 const int32_t *bias, const int32_t *rq, int8_t *o, const int KH, const int KW,
                                 int ky0, int ky1, int kx0, int kx1, const int FAST, const int FULL) {
#if !defined(__OPTIMIZE_SIZE__)
    if (FAST && KH == 3 && KW == 3 && ky0 <= 1 && ky1 >= 2 && kx0 <= 1 && kx1 >= 2) {
        switch (ky0 | (ky1 == KH) << 1 | kx0 << 2 | (kx1 == KW) << 3) {
            MCC_DW_CLIP(0, 0, 0, 0) MCC_DW_CLIP(1, 0, 0, 0) MCC_DW_CLIP(0, 1, 0, 0) MCC_DW_CLIP(1, 1, 0, 0)
            MCC_DW_CLIP(0, 0, 1, 0) MCC_DW_CLIP(1, 0, 1, 0) MCC_DW_CLIP(0, 1, 1, 0) MCC_DW_CLIP(1, 1, 1, 0)
            MCC_DW_CLIP(0, 0, 0, 1) MCC_DW_CLIP(1, 0, 0, 1) MCC_DW_CLIP(0, 1, 0, 1) MCC_DW_CLIP(1, 1, 0, 1)
            MCC_DW_CLIP(0, 0, 1, 1) MCC_DW_CLIP(1, 0, 1, 1) MCC_DW_CLIP(0, 1, 1, 1) MCC_DW_CLIP(1, 1, 1, 1)
            default:
                break;
        }
    }
#endif
    mcc_dw_pixel(p, in, at, wq, bias, rq, o, KH, KW, ky0, ky1, kx0, kx1, FAST, FULL);
}
#undef MCC_DW_CLIP

/* One out-of-line instance per window size and requantization kind (border pixels are few: no need to inline), and
   for the plain 3x3 variant at speed-first DSP builds one more for the whole int8 clamp (SSAT alone: on small maps
   most pixels are border pixels). */
#if defined(__GNUC__) && !defined(__clang__) /* no constant-propagated copies either: one instance, one copy */
#define MCC_DW_NOINLINE __attribute__((noinline, noclone))
#elif defined(__clang__)
#define MCC_DW_NOINLINE __attribute__((noinline))
#else
#define MCC_DW_NOINLINE
#endif
#define MCC_DW_BORDER(K, FAST, FULL)                                                                               \
    static MCC_DW_NOINLINE void mcc_dw_border_k##K##_##FAST##FULL(const mcc_conv_params *p, const int8_t *in,     \
                                                            int32_t at, const int32_t *wq, const int32_t *bias,    \
                                                            const int32_t *rq, int8_t *o, int ky0, int ky1,        \
                                                            int kx0, int kx1) {                                    \
        mcc_dw_border_body(p, in, at, wq, bias, rq, o, K, K, ky0, ky1, kx0, kx1, FAST, FULL);                      \
    }
MCC_DW_BORDER(3, 0, 0)
MCC_DW_BORDER(3, 1, 0)
MCC_DW_BORDER(5, 0, 0)
MCC_DW_BORDER(5, 1, 0)
MCC_DW_BORDER(7, 0, 0)
MCC_DW_BORDER(7, 1, 0)
#if defined(__ARM_FEATURE_DSP) && !defined(__OPTIMIZE_SIZE__) /* the only builds with FULL instances */
#define MCC_DW_BORDER_FULL 1
MCC_DW_BORDER(3, 1, 1)
#else
#define MCC_DW_BORDER_FULL 0
#endif
#undef MCC_DW_BORDER

/* The border instance of a (square) window: the compile-time K, FAST and FULL select it, the rest folds away. */
MCC_DW_INLINE void mcc_dw_border(const mcc_conv_params *p, const int8_t *in, int32_t at, const int32_t *wq,
                                 const int32_t *bias, const int32_t *rq, int8_t *o, const int KH, const int KW,
                                 int ky0, int ky1, int kx0, int kx1, const int FAST, const int FULL) {
    (void)KW;
    void (*fn)(const mcc_conv_params *, const int8_t *, int32_t, const int32_t *, const int32_t *,
               const int32_t *, int8_t *, int, int, int, int) =
        KH == 3 ? (FAST ? mcc_dw_border_k3_10 : mcc_dw_border_k3_00)
                : KH == 5 ? (FAST ? mcc_dw_border_k5_10 : mcc_dw_border_k5_00)
                          : (FAST ? mcc_dw_border_k7_10 : mcc_dw_border_k7_00);
#if MCC_DW_BORDER_FULL
    if (KH == 3 && FAST && FULL) {
        fn = mcc_dw_border_k3_11;
    }
#else
    (void)FULL;
#endif
    fn(p, in, at, wq, bias, rq, o, ky0, ky1, kx0, kx1);
}

MCC_DW_INLINE int mcc_dw_max(int a, int b) { return a > b ? a : b; }
MCC_DW_INLINE int mcc_dw_min(int a, int b) { return a < b ? a : b; }

/* First output column >= lo whose window starts at or after column 0, and one past the last whose window ends
   inside the row: the interior columns of a row are [lo, hi). */
MCC_DW_INLINE void mcc_dw_interior(int32_t pad, int32_t size, int32_t out, const int K, const int S, int32_t *lo,
                                   int32_t *hi) {
    int32_t a = (pad + S - 1) / S;
    int32_t b = size + pad - K >= 0 ? (size + pad - K) / S + 1 : 0;
    *lo = a < out ? a : out;
    *hi = b < *lo ? *lo : (b < out ? b : out);
}

MCC_DW_INLINE void mcc_dw_fast(const mcc_conv_params *p, const int8_t *in, const int32_t *wq, const int32_t *bias,
                               const int32_t *rq, int8_t *out, const int KH, const int KW, const int SH,
                               const int SW, const int FAST, const int FULL) {
    const int32_t ch = p->in_c;
    int32_t lo, hi;
    mcc_dw_interior(p->pad_left, p->in_w, p->out_w, KW, SW, &lo, &hi);
    for (int32_t n = 0; n < p->batch; ++n) {
        const int8_t *img = in + (size_t)n * p->in_h * p->in_w * ch;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * SH - p->pad_top;
            const int ky0 = mcc_dw_max(0, -iy0), ky1 = mcc_dw_min(KH, p->in_h - iy0);
            int32_t ox = 0;
            if (ky0 == 0 && ky1 == KH) { /* the window's rows are all inside: left border, interior, right border */
                for (; ox < lo; ++ox, out += ch) {
                    const int32_t ix0 = ox * SW - p->pad_left;
                    mcc_dw_border(p, img, (iy0 * p->in_w + ix0) * ch, wq, bias, rq, out, KH, KW, 0, KH,
                                  mcc_dw_max(0, -ix0), mcc_dw_min(KW, p->in_w - ix0), FAST, FULL);
                }
                /* no bounds anywhere: the window is unrolled; the parameters from a local copy (the output's byte
                   stores could alias *p, which would reload its fields for every block) */
                const mcc_conv_params pc = *p;
                const int8_t *src = img + (iy0 * pc.in_w + lo * SW - pc.pad_left) * ch;
                for (; ox < hi; ++ox, out += ch, src += SW * ch) {
                    mcc_dw_pixel(&pc, src, 0, wq, bias, rq, out, KH, KW, 0, KH, 0, KW, FAST, FULL);
                }
            }
            for (; ox < p->out_w; ++ox, out += ch) {
                const int32_t ix0 = ox * SW - p->pad_left;
                mcc_dw_border(p, img, (iy0 * p->in_w + ix0) * ch, wq, bias, rq, out, KH, KW, ky0, ky1,
                              mcc_dw_max(0, -ix0), mcc_dw_min(KW, p->in_w - ix0), FAST, FULL);
            }
        }
    }
}

/* The clamp is the whole int8 range (SSAT alone) or not: two instances at speed-first builds, one at size-first. */
#if defined(__OPTIMIZE_SIZE__) || !defined(__ARM_FEATURE_DSP)
#define MCC_DW_CLAMPS(K, S, FAST) mcc_dw_fast(p, in, wq, bias, rq, out, K, K, S, S, FAST, 0)
#else
#define MCC_DW_CLAMPS(K, S, FAST)                                                                                  \
    if (p->act_min == -128 && p->act_max == 127) {                                                                 \
        mcc_dw_fast(p, in, wq, bias, rq, out, K, K, S, S, FAST, 1);                                                \
    } else {                                                                                                       \
        mcc_dw_fast(p, in, wq, bias, rq, out, K, K, S, S, FAST, 0);                                                \
    }
#endif

#define MCC_DW_VARIANT(K, S)                                                                                       \
    void mcc_depthwise_conv2d_s8_k##K##s##S(const mcc_conv_params *p, const int8_t *in, const int32_t *wq,        \
                                            const int32_t *bias, const int32_t *rq, int8_t *out) {                 \
        MCC_DW_CLAMPS(K, S, 1);                                                                                    \
    }                                                                                                              \
    void mcc_depthwise_conv2d_s8_k##K##s##S##_any(const mcc_conv_params *p, const int8_t *in, const int32_t *wq,  \
                                                  const int32_t *bias, const int32_t *rq, int8_t *out) {           \
        MCC_DW_CLAMPS(K, S, 0);                                                                                    \
    }

MCC_DW_VARIANT(3, 1)
MCC_DW_VARIANT(3, 2)
MCC_DW_VARIANT(5, 1)
MCC_DW_VARIANT(5, 2)
MCC_DW_VARIANT(7, 1)
MCC_DW_VARIANT(7, 2)
#endif /* MCC_SIZE_FIRST */
