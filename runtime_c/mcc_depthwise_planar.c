/* nn.depthwise_conv2d in place, channel by channel (batch 1, depth multiplier 1).
 *
 * Each input channel is copied into an H x W plane in the caller's scratch buffer; that channel's outputs are then
 * computed from the plane and written where the channel's inputs were (the output may occupy exactly the input's
 * bytes: a write only ever lands on the channel just copied). The memory planner chooses this kernel when the
 * plane is smaller than what the raster kernel's overlap would cost (compiler/ops/conv.py, depthwise_in_place).
 *
 * In the plane, horizontally adjacent taps are adjacent bytes, so for a 3x3 window with stride 1 two neighbouring
 * outputs are computed together from one word per window row: SXTB16 splits the four bytes x0..x3 into (x0, x2)
 * and (x1, x3), and with the row's weights packed as (w0, w2) and w1 the first output takes
 * SMLAD((x0, x2), (w0, w2)) + x1*w1 and the second SMLAD((x1, x3), (w0, w2)) + x2*w1: six MACs in four multiply
 * instructions plus one load and two unpacks. The input offset is folded into the bias once per channel and row
 * range (the accumulator wraps modulo 2^32 like TFLite's int32 sums, so the order of the additions does not
 * matter). Outputs whose window leaves the plane sideways, any other window or stride, and dilation take the
 * per-tap loops over the valid taps, exactly as the reference.
 *
 * A 3x3 stride-1 window with C a multiple of 4 and every channel's fast requantization takes the channel-line kernel
 * instead (mcc_depthwise_lines.c, mcc_depthwise_conv2d_s8_lines_inplace: four channels at a time, no plane; the
 * emitter chooses it, and the scratch stays reserved but unused).
 *
 * Requantization: rq holds three words per channel (backends/c/emitters/gemm.py requant_table, shared with
 * mcc_depthwise.c: mcc_requant_rq in mcc_compute.h). */
#include <string.h>

#include "mcc_kernels.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

size_t mcc_depthwise_planar_scratch_bytes(const mcc_conv_params *p) {
    return (size_t)p->in_h * p->in_w;
}

typedef struct {
    int32_t zp, lo, hi;
} mcc_planar_q;

static inline int8_t mcc_planar_out(const mcc_planar_q *q, int32_t acc, const int32_t *rq, const int FAST) {
    return (int8_t)mcc_clamp(mcc_requant_rq(acc, rq, FAST) + q->zp, q->lo, q->hi);
}

/* One output over the valid taps [ky0, ky1) x [kx0, kx1) of its window (top-left tap at plane row iy0, column
   ix0), the offset added to each tap. */
static inline int32_t mcc_planar_clipped(const mcc_conv_params *p, const int8_t *plane, const int32_t *wk,
                                         int32_t bias, int32_t iy0, int32_t ix0, const int32_t K) {
    const int32_t W = p->in_w;
    const int32_t ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + K > p->in_h ? p->in_h - iy0 : K;
    const int32_t kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + K > W ? W - ix0 : K;
    uint32_t acc = (uint32_t)bias;
    for (int32_t ky = ky0; ky < ky1; ++ky) {
        for (int32_t kx = kx0; kx < kx1; ++kx) {
            acc += (uint32_t)(((int32_t)plane[(iy0 + ky) * W + ix0 + kx] + p->in_offset) * wk[ky * K + kx]);
        }
    }
    return (int32_t)acc;
}

/* The same over rows [ky0, ky1) and the compile-time columns [KX0, KX1) (a window clipped on one side only). */
static inline int32_t mcc_planar_cols(const mcc_conv_params *p, const int8_t *plane, const int32_t *wk, int32_t bias,
                                      int32_t iy0, int32_t ix0, int32_t ky0, int32_t ky1, const int32_t K,
                                      const int32_t KX0, const int32_t KX1) {
    const int32_t W = p->in_w, off = p->in_offset;
    uint32_t acc = (uint32_t)bias;
    const int8_t *r = plane + (iy0 + ky0) * W + ix0;
    for (int32_t ky = ky0; ky < ky1; ++ky, r += W) {
        for (int32_t kx = KX0; kx < KX1; ++kx) {
            acc += (uint32_t)(((int32_t)r[kx] + off) * wk[ky * K + kx]);
        }
    }
    return (int32_t)acc;
}

/* A border output: its window clipped by one column on the left or the right (unrolled), or anything else. */
static inline int32_t mcc_planar_border(const mcc_conv_params *p, const int8_t *plane, const int32_t *wk,
                                        int32_t bias, int32_t iy0, int32_t ix0, int32_t ky0, int32_t ky1,
                                        const int32_t K) {
    if (K > 1 && ix0 == -1 && K - 1 <= p->in_w) {
        return mcc_planar_cols(p, plane, wk, bias, iy0, ix0, ky0, ky1, K, 1, K);
    }
    if (K > 1 && ix0 >= 0 && ix0 + K - 1 == p->in_w) {
        return mcc_planar_cols(p, plane, wk, bias, iy0, ix0, ky0, ky1, K, 0, K - 1);
    }
    return mcc_planar_clipped(p, plane, wk, bias, iy0, ix0, K);
}

/* A 3x3 window's weights (offset applied) per row for SMLAD: w02 = w0 | w2 << 16, and w1. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline void mcc_planar_k3_weights(const int32_t *wk, int32_t w02[3], int32_t w1[3]) {
    for (int32_t ky = 0; ky < 3; ++ky) {
        w02[ky] = (int32_t)(((uint32_t)wk[ky * 3] & 0xFFFFu) | ((uint32_t)wk[ky * 3 + 2] << 16));
        w1[ky] = wk[ky * 3 + 1];
    }
}

#if defined(__ARM_FEATURE_DSP)
/* The four bytes x0..x3 at r as SXTB16 splits them: *xe = (x0, x2), *xo = (x1, x3). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline void mcc_planar_unpack(const int8_t *r, int32_t *xe, int32_t *xo) {
    uint32_t v;
    memcpy(&v, r, 4);
    *xe = (int32_t)__sxtb16(v);
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(*xo) : "r"(v));
}
#endif

/* Two horizontally adjacent outputs of a 3x3 stride-1 window += one window row: the row's bytes x0..x3 at r (the
   outputs' windows start at x0 and x1), its weights w (w[0..2]; as w02 and w1 for SMLAD). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline void mcc_planar_pair(uint32_t *a0, uint32_t *a1, const int8_t *r, int32_t w02, int32_t w1,
                                   const int32_t *w) {
#if defined(__ARM_FEATURE_DSP)
    (void)w;
    int32_t xe, xo;
    mcc_planar_unpack(r, &xe, &xo);
    *a0 = (uint32_t)__smlad(xe, w02, (int32_t)*a0);
    *a1 = (uint32_t)__smlad(xo, w02, (int32_t)*a1);
    *a0 = (uint32_t)__smlabb(xo, w1, (int32_t)*a0);
    *a1 = (uint32_t)__smlatb(xe, w1, (int32_t)*a1);
#else
    (void)w02;
    (void)w1;
    uint32_t v;
    memcpy(&v, r, 4);
    const int32_t x0 = (int8_t)(uint8_t)v, x1 = (int8_t)(uint8_t)(v >> 8);
    const int32_t x2 = (int8_t)(uint8_t)(v >> 16), x3 = (int8_t)(uint8_t)(v >> 24);
    *a0 += (uint32_t)(x0 * w[0]) + (uint32_t)(x1 * w[1]) + (uint32_t)(x2 * w[2]);
    *a1 += (uint32_t)(x1 * w[0]) + (uint32_t)(x2 * w[1]) + (uint32_t)(x3 * w[2]);
#endif
}

/* One channel's outputs from its plane; K and S are constants in the specialised calls (and p->k_h, p->stride_h in
   the generic one). wk holds the channel's K*K weights with the weight offset applied. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline void mcc_planar_channel(const mcc_conv_params *p, const int8_t *plane, const int32_t *wk,
                                      int32_t bias, const int32_t *rq, int8_t *out, int32_t c, const int32_t K,
                                      const int32_t S, const int FAST) {
    const int32_t H = p->in_h, W = p->in_w, C = p->in_c;
    const mcc_planar_q q = {p->out_zp, p->act_min, p->act_max};
    const int32_t off = p->in_offset;
    uint32_t wrow[7] = {0, 0, 0, 0, 0, 0, 0}; /* K <= 7 */
    for (int32_t ky = 0; ky < K; ++ky) {
        for (int32_t kx = 0; kx < K; ++kx) {
            wrow[ky] += (uint32_t)wk[ky * K + kx];
        }
    }
    int32_t w02[3] = {0, 0, 0}, w1[3] = {0, 0, 0};
    if (K == 3) {
        mcc_planar_k3_weights(wk, w02, w1);
    }
    /* the first and one past the last output column whose window lies inside the plane's width */
    int32_t lo = (p->pad_left + S - 1) / S, hi = W + p->pad_left - K >= 0 ? (W + p->pad_left - K) / S + 1 : 0;
    lo = lo < p->out_w ? lo : p->out_w;
    hi = hi < lo ? lo : (hi < p->out_w ? hi : p->out_w);
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * S - p->pad_top;
        const int32_t ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + K > H ? H - iy0 : K;
        uint32_t base = (uint32_t)bias; /* bias + offset * (the weights of the valid rows) */
        for (int32_t ky = ky0; ky < ky1; ++ky) {
            base += (uint32_t)off * wrow[ky];
        }
        int8_t *o = out + (size_t)oy * p->out_w * C + c;
        int32_t ox = 0;
        for (; ox < lo; ++ox, o += C) {
            *o = mcc_planar_out(&q, mcc_planar_border(p, plane, wk, bias, iy0, ox * S - p->pad_left, ky0, ky1, K), rq,
                                FAST);
        }
        if (K == 3 && S == 1) {
            const int rows_all = ky0 == 0 && ky1 == 3;
            for (; ox + 1 < hi; ox += 2, o += 2 * C) { /* two outputs from one word per row */
                const int8_t *r = plane + iy0 * W + ox - p->pad_left;
                uint32_t a0 = base, a1 = base;
                for (int32_t ky = 0; ky < 3; ++ky, r += W) { /* unrolled: the weights stay in registers */
                    if (!rows_all && (ky < ky0 || ky >= ky1)) {
                        continue;
                    }
                    mcc_planar_pair(&a0, &a1, r, w02[ky], w1[ky], wk + ky * 3);
                }
                o[0] = mcc_planar_out(&q, (int32_t)a0, rq, FAST);
                o[C] = mcc_planar_out(&q, (int32_t)a1, rq, FAST);
            }
        }
        for (; ox < hi; ++ox, o += C) { /* inside the width: the rows' taps, no column checks */
            const int8_t *r = plane + (iy0 + ky0) * W + ox * S - p->pad_left;
            uint32_t acc = base;
            for (int32_t ky = ky0; ky < ky1; ++ky, r += W) {
                for (int32_t kx = 0; kx < K; ++kx) {
                    acc += (uint32_t)((int32_t)r[kx] * wk[ky * K + kx]);
                }
            }
            *o = mcc_planar_out(&q, (int32_t)acc, rq, FAST);
        }
        for (; ox < p->out_w; ++ox, o += C) {
            *o = mcc_planar_out(&q, mcc_planar_border(p, plane, wk, bias, iy0, ox * S - p->pad_left, ky0, ky1, K), rq,
                                FAST);
        }
    }
}

/* The general case: any window (dilation included), straight from the definition. */
static void mcc_planar_channel_dilated(const mcc_conv_params *p, const int8_t *plane, const int8_t *w,
                                       int32_t bias, const int32_t *rq, int8_t *out, int32_t c) {
    const mcc_planar_q q = {p->out_zp, p->act_min, p->act_max};
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            uint32_t acc = (uint32_t)bias;
            for (int32_t ky = 0; ky < p->k_h; ++ky) {
                const int32_t iy = iy0 + ky * p->dil_h;
                if (iy < 0 || iy >= p->in_h) {
                    continue;
                }
                for (int32_t kx = 0; kx < p->k_w; ++kx) {
                    const int32_t ix = ix0 + kx * p->dil_w;
                    if (ix >= 0 && ix < p->in_w) {
                        const int32_t wv = w[((size_t)ky * p->k_w + kx) * p->in_c + c] + p->w_offset;
                        acc += (uint32_t)(((int32_t)plane[iy * p->in_w + ix] + p->in_offset) * wv);
                    }
                }
            }
            out[((size_t)oy * p->out_w + ox) * p->in_c + c] = mcc_planar_out(&q, (int32_t)acc, rq, 0);
        }
    }
}

/* 3x3, stride 1, every output in pairs: three zero-padded copies of the window's rows on the stack (a ring: one
   new row per output row), so no output is a border case. A padded tap holds the input zero point, whose
   contribution the folded offset cancels, so every output uses base = bias + offset * (sum of the nine weights).
   Rows are MCC_PLANAR_ROW bytes (pad_left + W + 4 of them used, and up to out_w + 3 read): wider rows take
   mcc_planar_channel. */
#define MCC_PLANAR_ROW 68
/* Row iy of the plane into a ring row whose padding already holds the zero point: words copied (the row's bytes
   from pad_left on), then the padding the last word overran restored; a row outside the plane is all zero point. */
static inline void mcc_planar_fill_row(const int8_t *plane, int32_t iy, int32_t H, int32_t W, int32_t pad_left,
                                       uint32_t zp4, int8_t *row) {
    int8_t *dst = row + pad_left;
    if (iy < 0 || iy >= H) {
        for (int32_t i = 0; i < W; i += 4) {
            memcpy(dst + i, &zp4, 4);
        }
    } else {
        const int8_t *src = plane + iy * W;
        int32_t i = 0;
        for (; i + 4 <= W; i += 4) {
            uint32_t v;
            memcpy(&v, src + i, 4);
            memcpy(dst + i, &v, 4);
        }
        for (; i < W; ++i) {
            dst[i] = src[i];
        }
    }
    memcpy(dst + W, &zp4, 4);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline void mcc_planar_channel_k3_rows(const mcc_conv_params *p, const int8_t *plane, const int32_t *wk,
                                              int32_t bias, const int32_t *rq, int8_t *out, int32_t c,
                                              const int FAST) {
    const int32_t C = p->in_c;
    const mcc_planar_q q = {p->out_zp, p->act_min, p->act_max};
    int8_t rows[3][MCC_PLANAR_ROW];
    uint32_t wsum = 0;
    for (int32_t i = 0; i < 9; ++i) {
        wsum += (uint32_t)wk[i];
    }
    const uint32_t base = (uint32_t)bias + (uint32_t)p->in_offset * wsum;
    int32_t w02[3], w1[3];
    mcc_planar_k3_weights(wk, w02, w1);
    const int32_t H = p->in_h, W = p->in_w, pl = p->pad_left, OW = p->out_w, OH = p->out_h, pt = p->pad_top;
    const uint32_t zp4 = ((uint32_t)(-p->in_offset) & 0xFFu) * 0x01010101u;
    const int32_t rqc[3] = {rq[0], rq[1], rq[2]}; /* in registers: the byte stores below could alias rq */
    for (int32_t i = 0; i < 3 * MCC_PLANAR_ROW; i += 4) {
        memcpy(&rows[0][0] + i, &zp4, 4);
    }
    int8_t *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
    mcc_planar_fill_row(plane, -pt, H, W, pl, zp4, r0);
    mcc_planar_fill_row(plane, 1 - pt, H, W, pl, zp4, r1);
    for (int32_t oy = 0; oy < OH; ++oy) {
        mcc_planar_fill_row(plane, oy + 2 - pt, H, W, pl, zp4, r2);
        int8_t *o = out + (size_t)oy * OW * C + c;
        for (int32_t ox = 0; ox < OW; ox += 2, o += 2 * C) {
            uint32_t a0 = base, a1 = base;
            const int8_t *rr[3] = {r0 + ox, r1 + ox, r2 + ox};
            for (int32_t ky = 0; ky < 3; ++ky) {
                mcc_planar_pair(&a0, &a1, rr[ky], w02[ky], w1[ky], wk + ky * 3);
            }
            o[0] = mcc_planar_out(&q, (int32_t)a0, rqc, FAST);
            if (ox + 1 < OW) {
                o[C] = mcc_planar_out(&q, (int32_t)a1, rqc, FAST);
            }
        }
        int8_t *t = r0;
        r0 = r1;
        r1 = r2;
        r2 = t;
    }
}

/* One out-of-line instance per specialised (window, stride, requantization kind): the constants then reach the
   loops (a call that passes FAST through a runtime flag would fold the two instances into one). */
#if defined(__GNUC__) || defined(__clang__)
#define MCC_PLANAR_NOINLINE __attribute__((noinline))
#else
#define MCC_PLANAR_NOINLINE
#endif
typedef void (*mcc_planar_fn)(const mcc_conv_params *, const int8_t *, const int32_t *, int32_t, const int32_t *,
                              int8_t *, int32_t);
#define MCC_PLANAR_INSTANCE(K, S, FAST)                                                                            \
    static MCC_PLANAR_NOINLINE void mcc_planar_k##K##s##S##_##FAST(const mcc_conv_params *p, const int8_t *plane, \
                                                                   const int32_t *wk, int32_t bias,              \
                                                                   const int32_t *rq, int8_t *out, int32_t c) {  \
        mcc_planar_channel(p, plane, wk, bias, rq, out, c, K, S, FAST);                                          \
    }
static MCC_PLANAR_NOINLINE void mcc_planar_k3s1_rows(const mcc_conv_params *p, const int8_t *plane, const int32_t *wk,
                                                     int32_t bias, const int32_t *rq, int8_t *out, int32_t c) {
    mcc_planar_channel_k3_rows(p, plane, wk, bias, rq, out, c, 1);
}
MCC_PLANAR_INSTANCE(3, 1, 0)
MCC_PLANAR_INSTANCE(3, 1, 1)
#if !defined(__OPTIMIZE_SIZE__)
MCC_PLANAR_INSTANCE(5, 1, 1)
MCC_PLANAR_INSTANCE(7, 1, 1)
#endif
#undef MCC_PLANAR_INSTANCE

void mcc_depthwise_conv2d_s8_planar(const mcc_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                                    const int32_t *rq, int8_t *out, int8_t *plane) {
    const int32_t C = p->in_c;
    const int32_t pixels = p->in_h * p->in_w;
    const int32_t taps = p->k_h * p->k_w;
    const int square = p->k_h == p->k_w && p->stride_h == p->stride_w && p->dil_h == 1 && p->dil_w == 1;
    int32_t wk[49];
    for (int32_t c = 0; c < C; ++c) {
        const int8_t *src = in + c;
        int32_t i = 0;
        for (; i + 4 <= pixels; i += 4, src += 4 * C) {
            plane[i] = src[0];
            plane[i + 1] = src[C];
            plane[i + 2] = src[2 * C];
            plane[i + 3] = src[3 * C];
        }
        for (; i < pixels; ++i, src += C) {
            plane[i] = *src;
        }
        const int32_t b = bias ? bias[c] : 0;
        const int32_t *rqc = rq + 3 * c;
        if (taps > 49 || !square) {
            mcc_planar_channel_dilated(p, plane, w, b, rqc, out, c);
            continue;
        }
        for (int32_t t = 0; t < taps; ++t) {
            wk[t] = w[(size_t)t * C + c] + p->w_offset;
        }
        /* stride 1 only: with stride 2 the raster kernel's overlap always costs less than a plane, so the planner
           never picks this kernel there (the generic call below still handles any stride) */
        const int32_t k = p->k_h, s = p->stride_h;
        const int fast = rqc[2] > 0;
        mcc_planar_fn fn = NULL;
        if (k == 3 && s == 1) {
            const int rows = p->pad_left + p->in_w + 4 <= MCC_PLANAR_ROW && p->out_w + 4 <= MCC_PLANAR_ROW;
            fn = !fast ? mcc_planar_k3s1_0 : rows ? mcc_planar_k3s1_rows : mcc_planar_k3s1_1;
        }
#if !defined(__OPTIMIZE_SIZE__)
        if (fast && k == 5 && s == 1) {
            fn = mcc_planar_k5s1_1;
        }
        if (fast && k == 7 && s == 1) {
            fn = mcc_planar_k7s1_1;
        }
#endif
        if (fn != NULL) {
            fn(p, plane, wk, b, rqc, out, c);
            continue;
        }
        mcc_planar_channel(p, plane, wk, b, rqc, out, c, k, s, 0);
    }
}
