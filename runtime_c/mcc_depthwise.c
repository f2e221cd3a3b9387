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

/* ---- specialised depthwise convolution: depth multiplier 1, no dilation, symmetric weights -------------------- *
 *
 * One function per (window, stride) the emitter picks (mcc_depthwise_conv2d_s8_k<K>s<S>), all instances of
 * mcc_dw_fast below with KH, KW, SH and SW compile-time constants. The output is walked in raster order, one
 * pixel with all its channels at a time (the planner's overlap contract, compiler/overlap.py): per pixel, four
 * channels at a time (four consecutive NHWC bytes read as one word per tap, four accumulators in registers), then
 * the channels beyond the last multiple of four one by one. A pixel whose window lies inside the input runs the
 * window fully unrolled with no bounds checks; a border pixel runs the same code over the valid part of its window
 * (the padded taps contribute nothing, exactly as TFLite's). The input offset is added to each input value
 * (SXTAB16 adds it for free on Armv7E-M), so the bias stays TFLite's own and every pixel is exact.
 *
 * Weights arrive pre-expanded to int16 by the emitter (backends/c/emitters/compute.py, depthwise_fast_weights):
 * for each block of four channels c..c+3 and each tap t (row-major over the window), the four values
 * w[t][c], w[t][c+2], w[t][c+1], w[t][c+3] (the lane order of SXTB16's even/odd split); then, for the C mod 4
 * remaining channels, [tap][channel] in natural order. Requantization is TFLite's MultiplyByQuantizedMultiplier,
 * bit for bit, in a form with one 64-bit multiply (mcc_dw_requant). */
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define MCC_DW_INLINE static inline __attribute__((always_inline))
#else
#define MCC_DW_INLINE static inline
#endif

/* TFLite's MultiplyByQuantizedMultiplier for a multiplier in [0, 2^31): SaturatingRoundingDoublingHighMul cannot
   saturate (that needs both factors INT32_MIN), and its round-half-away-from-zero division of the 64-bit product
   by 2^31 equals floor((ab + 2^30) / 2^31), one add and an arithmetic shift. */
MCC_DW_INLINE int32_t mcc_dw_requant(int32_t acc, int32_t mult, int32_t shift) {
    const int left = shift > 0 ? (int)shift : 0;
    const int right = shift > 0 ? 0 : (int)-shift;
    const int32_t x = (int32_t)((uint32_t)acc << left);
    const int32_t hi = (int32_t)(((int64_t)x * mult + ((int64_t)1 << 30)) >> 31);
    return mcc_rdbpot(hi, right);
}

MCC_DW_INLINE int8_t mcc_dw_out(const mcc_conv_params *p, int32_t acc, int32_t mult, int32_t shift) {
    return (int8_t)mcc_clamp(mcc_dw_requant(acc, mult, shift) + p->out_zp, p->act_min, p->act_max);
}

/* One output pixel over taps [ky0, ky1) x [kx0, kx1) of its window; `at` is the input index of the window's
   top-left tap (it may lie in the padding: only valid taps are read). */
MCC_DW_INLINE void mcc_dw_pixel(const mcc_conv_params *p, const int8_t *in, int32_t at, const int16_t *wq,
                                const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *o,
                                const int KH, const int KW, int ky0, int ky1, int kx0, int kx1) {
    const int32_t ch = p->in_c;
    const int32_t row = p->in_w * ch;
    const int32_t blocks = ch >> 2;
    const int taps = KH * KW;
#if defined(__ARM_FEATURE_DSP)
    const int32_t off2 = (int32_t)(((uint32_t)p->in_offset & 0xFFFFu) * 0x10001u);
#endif
    const int16_t *wb = wq;
    for (int32_t b = 0; b < blocks; ++b, wb += taps * 4) {
        const int32_t c = b * 4;
        const int8_t *src = in + at + c;
        int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
        for (int ky = ky0; ky < ky1; ++ky) {
            for (int kx = kx0; kx < kx1; ++kx) {
                const int8_t *px = src + ky * row + kx * ch;
                const int16_t *wt = wb + (ky * KW + kx) * 4;
#if defined(__ARM_FEATURE_DSP)
                uint32_t xv, w02, w13;
                int32_t xo;
                memcpy(&xv, px, 4);
                memcpy(&w02, wt, 4);
                memcpy(&w13, wt + 2, 4);
                const int32_t xe = (int32_t)__sxtab16((uint32_t)off2, xv); /* x0 + off, x2 + off */
                __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(xo) : "r"(off2), "r"(xv)); /* x1 + off, x3 + off */
                a0 = __smlabb(xe, (int32_t)w02, a0);
                a2 = __smlatt(xe, (int32_t)w02, a2);
                a1 = __smlabb(xo, (int32_t)w13, a1);
                a3 = __smlatt(xo, (int32_t)w13, a3);
#else
                const int32_t off = p->in_offset;
                a0 = mcc_add_wrap(a0, (px[0] + off) * wt[0]);
                a1 = mcc_add_wrap(a1, (px[1] + off) * wt[2]);
                a2 = mcc_add_wrap(a2, (px[2] + off) * wt[1]);
                a3 = mcc_add_wrap(a3, (px[3] + off) * wt[3]);
#endif
            }
        }
        o[c] = mcc_dw_out(p, a0, mult[c], shift[c]);
        o[c + 1] = mcc_dw_out(p, a1, mult[c + 1], shift[c + 1]);
        o[c + 2] = mcc_dw_out(p, a2, mult[c + 2], shift[c + 2]);
        o[c + 3] = mcc_dw_out(p, a3, mult[c + 3], shift[c + 3]);
    }
    const int32_t rem = ch - blocks * 4;
    for (int32_t c = blocks * 4; c < ch; ++c) {
        const int16_t *wt = wq + (size_t)blocks * 4 * taps + (c - blocks * 4);
        int32_t acc = bias[c];
        for (int ky = ky0; ky < ky1; ++ky) {
            for (int kx = kx0; kx < kx1; ++kx) {
                const int32_t x = in[at + ky * row + kx * ch + c];
                acc = mcc_add_wrap(acc, (x + p->in_offset) * wt[(ky * KW + kx) * rem]);
            }
        }
        o[c] = mcc_dw_out(p, acc, mult[c], shift[c]);
    }
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

MCC_DW_INLINE void mcc_dw_fast(const mcc_conv_params *p, const int8_t *in, const int16_t *wq, const int32_t *bias,
                               const int32_t *mult, const int32_t *shift, int8_t *out, const int KH, const int KW,
                               const int SH, const int SW) {
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
                    mcc_dw_pixel(p, img, (iy0 * p->in_w + ix0) * ch, wq, bias, mult, shift, out, KH, KW, 0, KH,
                                 mcc_dw_max(0, -ix0), mcc_dw_min(KW, p->in_w - ix0));
                }
                for (; ox < hi; ++ox, out += ch) { /* no bounds anywhere: the window is unrolled */
                    mcc_dw_pixel(p, img, (iy0 * p->in_w + ox * SW - p->pad_left) * ch, wq, bias, mult, shift, out,
                                 KH, KW, 0, KH, 0, KW);
                }
            }
            for (; ox < p->out_w; ++ox, out += ch) {
                const int32_t ix0 = ox * SW - p->pad_left;
                mcc_dw_pixel(p, img, (iy0 * p->in_w + ix0) * ch, wq, bias, mult, shift, out, KH, KW, ky0, ky1,
                             mcc_dw_max(0, -ix0), mcc_dw_min(KW, p->in_w - ix0));
            }
        }
    }
}

#define MCC_DW_VARIANT(K, S)                                                                                       \
    void mcc_depthwise_conv2d_s8_k##K##s##S(const mcc_conv_params *p, const int8_t *in, const int16_t *wq,        \
                                            const int32_t *bias, const int32_t *mult, const int32_t *shift,        \
                                            int8_t *out) {                                                         \
        mcc_dw_fast(p, in, wq, bias, mult, shift, out, K, K, S, S);                                                \
    }

MCC_DW_VARIANT(3, 1)
MCC_DW_VARIANT(3, 2)
MCC_DW_VARIANT(5, 1)
MCC_DW_VARIANT(5, 2)
MCC_DW_VARIANT(7, 1)
MCC_DW_VARIANT(7, 2)
