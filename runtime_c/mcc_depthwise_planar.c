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
 * A 3x3 stride-1 window with C a multiple of 4 takes the ring-of-lines kernel below instead (four channels at a
 * time, no plane: the scratch stays reserved but unused).
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

/* Two horizontally adjacent outputs of a 3x3 stride-1 window += one window row: the row's bytes x0..x3 at r (the
   outputs' windows start at x0 and x1), its weights w (w[0..2]; as w02 and w1 for SMLAD). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline void mcc_planar_pair(uint32_t *a0, uint32_t *a1, const int8_t *r, int32_t w02, int32_t w1,
                                   const int32_t *w) {
    uint32_t v;
    memcpy(&v, r, 4);
#if defined(__ARM_FEATURE_DSP)
    (void)w;
    int32_t xo;
    const int32_t xe = (int32_t)__sxtb16(v);
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(xo) : "r"(v));
    *a0 = (uint32_t)__smlad(xe, w02, (int32_t)*a0);
    *a1 = (uint32_t)__smlad(xo, w02, (int32_t)*a1);
    *a0 = (uint32_t)__smlabb(xo, w1, (int32_t)*a0);
    *a1 = (uint32_t)__smlatb(xe, w1, (int32_t)*a1);
#else
    (void)w02;
    (void)w1;
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

/* ---- 3x3 stride 1, four channels at a time, no plane ----------------------------------------------------------- *
 *
 * When C is a multiple of four, the window 3x3 with stride 1 and the padding at most 1 on the top and the left,
 * each block of four channels c..c+3 runs line by line with a ring of three input lines on the stack (four channel
 * lines of R bytes per input line, padding bytes holding the input zero point). The lines are the image's rows, or
 * its columns when the output has the input's shape and the columns are longer (KWS: 25 x 5): a longer line spreads
 * the per-line work over more outputs. Before output line i is computed, input line i + 2 - pad of the block is
 * copied into the ring (four pixels, one word each holding the block's four channels, are transposed into four
 * channel lines with a few shifts and masks); output line i is then written, only the block's own bytes and only
 * over input pixels the ring already holds (rows: the output pixel index is at most the input's, which lies in a
 * line already copied; columns: the output has the input's shape), so the output may take exactly the input's
 * bytes. Along a channel line the outputs come in pairs as in mcc_planar_pair (the weights in registers), their
 * accumulators into a small array, then requantized in a second loop (fewer live registers in each). With the fast
 * requantization of all four channels the accumulator is doubled from the start (weights and base doubled; the
 * offline proof bounds |acc| < 2^30) so SMMLAR takes it directly. The plane scratch is not used. */

#define MCC_RING_MAX_L 32 /* the longest line (the ring and one channel line's accumulators live on the stack) */

/* A block's lines: the input line i's pixel k is at in + i * in_line + k * in_step (+ c), the output line i's pixel
   k at out + i * out_line + k * out_step; L input pixels per line (n_in lines), OL outputs per line (n_out lines),
   pad_along padding pixels before a line's first and pad_across padding lines before the first; R bytes per
   channel line in the ring. */
typedef struct {
    int32_t in_line, in_step, out_line, out_step, L, OL, n_in, n_out, pad_along, pad_across, R;
} mcc_ring_geo;

/* The ring kernel applies; *g its lines (the columns if *cols is set). */
static inline int mcc_ring_ok(const mcc_conv_params *p, mcc_ring_geo *g, int *cols) {
    if (!(p->k_h == 3 && p->k_w == 3 && p->stride_h == 1 && p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1 &&
          p->in_c % 4 == 0 && p->pad_top >= 0 && p->pad_top <= 1 && p->pad_left >= 0 && p->pad_left <= 1 &&
          p->out_h <= p->in_h && p->out_w <= p->in_w && p->out_h > 0 && p->out_w > 0)) {
        return 0;
    }
    const int32_t C = p->in_c;
    *cols = p->out_h == p->in_h && p->out_w == p->in_w && p->in_h > p->in_w;
    if (*cols) {
        const mcc_ring_geo c = {C, p->in_w * C, C, p->out_w * C, p->in_h, p->out_h, p->in_w, p->out_w, p->pad_top,
                                p->pad_left, 0};
        *g = c;
    } else {
        const mcc_ring_geo r = {p->in_w * C, C, p->out_w * C, C, p->in_w, p->out_w, p->in_h, p->out_h, p->pad_left,
                                p->pad_top, 0};
        *g = r;
    }
    /* the padded line (pad + L + 1) and a pair's four bytes from the last even output (OL + 2) */
    const int32_t a = g->pad_along + g->L + 1, b = g->OL + 2;
    g->R = a > b ? a : b;
    return g->L <= MCC_RING_MAX_L && g->OL <= MCC_RING_MAX_L;
}

/* bytes of the ring: three lines of four channel lines, and the slack a last single output's word read needs */
#define MCC_RING_BYTES (12 * (MCC_RING_MAX_L + 2) + 4)

/* Input line i of the block at in into the ring line block dst (four channel lines of R bytes, pixel k at byte
   pad_along + k); a line outside the input is all zero point. */
static inline void mcc_ring_fill(const int8_t *in, int32_t i, const mcc_ring_geo *g, uint32_t zp4, int8_t *dst) {
    const int32_t L = g->L, R = g->R, st = g->in_step;
    int8_t *d = dst + g->pad_along;
    if (i < 0 || i >= g->n_in) {
        for (int32_t j = 0; j < 4; ++j) {
            memset(d + j * R, (int)(int8_t)(uint8_t)zp4, (size_t)L);
        }
        return;
    }
    const int8_t *s = in + (size_t)i * g->in_line;
    int32_t k = 0;
    for (; k + 4 <= L; k += 4, s += 4 * st) {
        uint32_t a, b, e, f;
        memcpy(&a, s, 4);
        memcpy(&b, s + st, 4);
        memcpy(&e, s + 2 * st, 4);
        memcpy(&f, s + 3 * st, 4);
#if defined(__ARM_FEATURE_DSP)
        const uint32_t t0 = __uxtb16(a) | (__uxtb16(b) << 8);     /* a0 b0 a2 b2 */
        const uint32_t t1 = __uxtb16(a >> 8) | (b & 0xFF00FF00u); /* a1 b1 a3 b3 */
        const uint32_t u0 = __uxtb16(e) | (__uxtb16(f) << 8);
        const uint32_t u1 = __uxtb16(e >> 8) | (f & 0xFF00FF00u);
#else
        const uint32_t t0 = (a & 0x00FF00FFu) | ((b & 0x00FF00FFu) << 8); /* a0 b0 a2 b2 */
        const uint32_t t1 = ((a >> 8) & 0x00FF00FFu) | (b & 0xFF00FF00u); /* a1 b1 a3 b3 */
        const uint32_t u0 = (e & 0x00FF00FFu) | ((f & 0x00FF00FFu) << 8);
        const uint32_t u1 = ((e >> 8) & 0x00FF00FFu) | (f & 0xFF00FF00u);
#endif
        const uint32_t c0 = (t0 & 0xFFFFu) | (u0 << 16), c2 = (t0 >> 16) | (u0 & 0xFFFF0000u);
        const uint32_t c1 = (t1 & 0xFFFFu) | (u1 << 16), c3 = (t1 >> 16) | (u1 & 0xFFFF0000u);
        memcpy(d + k, &c0, 4);
        memcpy(d + R + k, &c1, 4);
        memcpy(d + 2 * R + k, &c2, 4);
        memcpy(d + 3 * R + k, &c3, 4);
    }
    for (; k < L; ++k, s += st) {
        d[k] = s[0];
        d[R + k] = s[1];
        d[2 * R + k] = s[2];
        d[3 * R + k] = s[3];
    }
}

#if defined(__GNUC__) || defined(__clang__)
#define MCC_RING_INLINE static inline __attribute__((always_inline))
#else
#define MCC_RING_INLINE static inline
#endif

/* Two horizontally adjacent outputs += one window row (bytes x0..x3 at r): as mcc_planar_pair, with the row's middle
   weight in the bottom (TOP 0) or top (TOP 1) half of w1 (two rows share one register). */
MCC_RING_INLINE void mcc_ring_pair(uint32_t *a0, uint32_t *a1, const int8_t *r, int32_t w02, int32_t w1,
                                   const int TOP) {
    uint32_t v;
    memcpy(&v, r, 4);
#if defined(__ARM_FEATURE_DSP)
    int32_t xo;
    const int32_t xe = (int32_t)__sxtb16(v);
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(xo) : "r"(v));
    *a0 = (uint32_t)__smlad(xe, w02, (int32_t)*a0);
    *a1 = (uint32_t)__smlad(xo, w02, (int32_t)*a1);
    if (TOP) {
        *a0 = (uint32_t)__smlabt(xo, w1, (int32_t)*a0);
        *a1 = (uint32_t)__smlatt(xe, w1, (int32_t)*a1);
    } else {
        *a0 = (uint32_t)__smlabb(xo, w1, (int32_t)*a0);
        *a1 = (uint32_t)__smlatb(xe, w1, (int32_t)*a1);
    }
#else
    const int32_t k0 = (int16_t)(uint16_t)(uint32_t)w02, k2 = (int32_t)((uint32_t)w02 >> 16 ^ 0x8000u) - 0x8000;
    const int32_t k1 = TOP ? (int32_t)((uint32_t)w1 >> 16 ^ 0x8000u) - 0x8000 : (int16_t)(uint16_t)(uint32_t)w1;
    const int32_t x0 = (int8_t)(uint8_t)v, x1 = (int8_t)(uint8_t)(v >> 8);
    const int32_t x2 = (int8_t)(uint8_t)(v >> 16), x3 = (int8_t)(uint8_t)(v >> 24);
    *a0 += (uint32_t)(x0 * k0) + (uint32_t)(x1 * k1) + (uint32_t)(x2 * k2);
    *a1 += (uint32_t)(x1 * k0) + (uint32_t)(x2 * k1) + (uint32_t)(x3 * k2);
#endif
}

/* One output += one window row (bytes x0..x2 at r, the fourth byte read and ignored). */
MCC_RING_INLINE void mcc_ring_one(uint32_t *a0, const int8_t *r, int32_t w02, int32_t w1, const int TOP) {
    uint32_t v;
    memcpy(&v, r, 4);
#if defined(__ARM_FEATURE_DSP)
    int32_t xo;
    const int32_t xe = (int32_t)__sxtb16(v);
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(xo) : "r"(v));
    *a0 = (uint32_t)__smlad(xe, w02, (int32_t)*a0);
    *a0 = TOP ? (uint32_t)__smlabt(xo, w1, (int32_t)*a0) : (uint32_t)__smlabb(xo, w1, (int32_t)*a0);
#else
    uint32_t a1 = 0;
    mcc_ring_pair(a0, &a1, r, w02, w1, TOP);
#endif
}

/* The accumulators of one channel row (out_w outputs) from the ring rows r0, r1, r2 (column j = output x + tap);
   wv = {w02 of the three rows, middle weights of rows 0 and 1, of row 2, base}. */
MCC_RING_INLINE void mcc_ring_acc(const int8_t *r0, const int8_t *r1, const int8_t *r2, const int32_t *wv,
                                  uint32_t *acc, int32_t OW) {
    const int32_t w02a = wv[0], w02b = wv[1], w02c = wv[2], w1ab = wv[3], w1c = wv[4];
    const uint32_t *end = acc + (OW & ~1);
    for (; acc != end; acc += 2, r0 += 2, r1 += 2, r2 += 2) {
        uint32_t a0 = (uint32_t)wv[5], a1 = (uint32_t)wv[5];
        mcc_ring_pair(&a0, &a1, r0, w02a, w1ab, 0);
        mcc_ring_pair(&a0, &a1, r1, w02b, w1ab, 1);
        mcc_ring_pair(&a0, &a1, r2, w02c, w1c, 0);
        acc[0] = a0;
        acc[1] = a1;
    }
    if (OW & 1) {
        uint32_t a0 = (uint32_t)wv[5];
        mcc_ring_one(&a0, r0, w02a, w1ab, 0);
        mcc_ring_one(&a0, r1, w02b, w1ab, 1);
        mcc_ring_one(&a0, r2, w02c, w1c, 0);
        acc[0] = a0;
    }
}

/* One output of an accumulator: doubled (FAST: rq = {multiplier, shift r, 2^(r-1) + zero point * 2^r}, |acc| <
   2^30 and the zero point folded into the rounding half, see mcc_ring_run) or plain (rq as the table's, the zero
   point added); FULL: the clamp is the int8 range (SSAT). */
MCC_RING_INLINE int8_t mcc_ring_q(const mcc_planar_q *q, uint32_t acc, const int32_t *rq, const int FAST,
                                  const int FULL) {
    int32_t v;
    if (FAST) {
        const int32_t acc2 = (int32_t)acc;
#if defined(__ARM_FEATURE_DSP)
        int32_t t;
        __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"(acc2), "r"(rq[0]), "r"(rq[2]));
#else
        const int32_t t = (int32_t)((((int64_t)acc2 * rq[0]) + (int64_t)rq[2] * ((int64_t)1 << 32) + 0x80000000LL) >> 32);
#endif
        v = (t + (acc2 >> 31)) >> rq[1];
    } else {
        v = mcc_requant_rq((int32_t)acc, rq, 0) + q->zp;
    }
#if defined(__ARM_FEATURE_DSP)
    return (int8_t)(FULL ? __ssat(v, 8) : mcc_clamp(v, q->lo, q->hi));
#else
    (void)FULL;
    return (int8_t)mcc_clamp(v, q->lo, q->hi);
#endif
}

/* The line's outputs (stride C apart) from its accumulators, two at a time. */
MCC_RING_INLINE void mcc_ring_out(const mcc_planar_q *q, const uint32_t *acc, const int32_t *rq, int8_t *o,
                                  int32_t OW, int32_t C, const int FAST, const int FULL) {
    const int32_t rqc[3] = {rq[0], rq[1], rq[2]}; /* in registers: the byte stores below could alias rq */
    const mcc_planar_q qc = *q;
    const uint32_t *end = acc + OW;
    if (OW & 1) {
        *o = mcc_ring_q(&qc, *acc++, rqc, FAST, FULL);
        o += C;
    }
    for (; acc != end; acc += 2, o += 2 * C) {
        const uint32_t a0 = acc[0], a1 = acc[1];
        o[0] = mcc_ring_q(&qc, a0, rqc, FAST, FULL);
        o[C] = mcc_ring_q(&qc, a1, rqc, FAST, FULL);
    }
}

/* One block of four channels (c..c+3) line by line; wv holds per channel the six words of mcc_ring_acc (weights
   and base doubled when FAST). */
MCC_RING_INLINE void mcc_ring_block(const mcc_conv_params *p, const mcc_ring_geo *g, const int8_t *in,
                                    const int32_t (*wv)[6], const int32_t *rq, int8_t *out, int32_t c, int8_t *ring,
                                    const int FAST, const int FULL) {
    const mcc_planar_q q = {p->out_zp, p->act_min, p->act_max};
    const int32_t R = g->R, OL = g->OL, pad = g->pad_across, ostep = g->out_step;
    const uint32_t zp4 = ((uint32_t)(-p->in_offset) & 0xFFu) * 0x01010101u;
    uint32_t acc[MCC_RING_MAX_L];
    int8_t *r0 = ring, *r1 = ring + 4 * R, *r2 = ring + 8 * R;
    in += c;
    mcc_ring_fill(in, -pad, g, zp4, r0);
    mcc_ring_fill(in, 1 - pad, g, zp4, r1);
    for (int32_t i = 0; i < g->n_out; ++i) {
        mcc_ring_fill(in, i + 2 - pad, g, zp4, r2);
        int8_t *o = out + (size_t)i * g->out_line + c;
        for (int32_t j = 0; j < 4; ++j) {
            mcc_ring_acc(r0 + j * R, r1 + j * R, r2 + j * R, wv[j], acc, OL);
            mcc_ring_out(&q, acc, rq + 3 * j, o + j, OL, ostep, FAST, FULL);
        }
        int8_t *t = r0;
        r0 = r1;
        r1 = r2;
        r2 = t;
    }
}

typedef void (*mcc_ring_fn)(const mcc_conv_params *, const mcc_ring_geo *, const int8_t *, const int32_t (*)[6],
                            const int32_t *, int8_t *, int32_t, int8_t *);
#define MCC_RING_INSTANCE(FAST, FULL)                                                                              \
    static MCC_PLANAR_NOINLINE void mcc_ring_block_##FAST##FULL(                                                   \
        const mcc_conv_params *p, const mcc_ring_geo *g, const int8_t *in, const int32_t (*wv)[6],                 \
        const int32_t *rq, int8_t *out, int32_t c, int8_t *ring) {                                                 \
        mcc_ring_block(p, g, in, wv, rq, out, c, ring, FAST, FULL);                                                \
    }
MCC_RING_INSTANCE(0, 0)
#if !defined(__OPTIMIZE_SIZE__) /* size-first builds: one instance, the general requantization */
MCC_RING_INSTANCE(1, 0)
#if defined(__ARM_FEATURE_DSP)
MCC_RING_INSTANCE(1, 1)
#endif
#endif
#undef MCC_RING_INSTANCE

static void mcc_ring_run(const mcc_conv_params *p, const mcc_ring_geo *g, int cols, const int8_t *in,
                         const int8_t *w, const int32_t *bias, const int32_t *rq, int8_t *out) {
    const int32_t C = p->in_c;
    const uint32_t zp4 = ((uint32_t)(-p->in_offset) & 0xFFu) * 0x01010101u;
    uint32_t ring_words[(MCC_RING_BYTES + 3) / 4];
    int8_t *ring = (int8_t *)ring_words;
    for (int32_t i = 0; i < (MCC_RING_BYTES + 3) / 4; ++i) { /* the padding keeps the zero point throughout */
        ring_words[i] = zp4;
    }
    const int full = p->act_min <= -128 && p->act_max >= 127;
    for (int32_t c = 0; c < C; c += 4) {
        int32_t wv[4][6];
        int32_t rqb[12];
#if defined(__OPTIMIZE_SIZE__)
        int fast = 0;
#else
        int fast = 1;
#endif
        for (int32_t j = 0; j < 4; ++j) { /* the zero point folds into the rounding half when that cannot overflow:
                                             |srdhm| <= 2^30 and |2^(r-1) + zp * 2^r| <= 2^21 + 2^29 for r <= 22 */
            const int32_t *rj = rq + 3 * (c + j);
            fast = fast && rj[2] > 0 && rj[1] <= 22;
            rqb[3 * j] = rj[0];
            rqb[3 * j + 1] = rj[1];
            rqb[3 * j + 2] = rj[2];
        }
        for (int32_t j = 0; j < 4 && fast; ++j) {
            rqb[3 * j + 2] = (int32_t)((uint32_t)rqb[3 * j + 2] + ((uint32_t)p->out_zp << rqb[3 * j + 1]));
        }
        const uint32_t k = fast ? 2u : 1u;
        for (int32_t j = 0; j < 4; ++j) {
            int32_t wk[9]; /* wk[a * 3 + b]: ring line a, position b along it */
            uint32_t sum = 0;
            for (int32_t t = 0; t < 9; ++t) {
                const int32_t src = cols ? (t % 3) * 3 + t / 3 : t;
                wk[t] = (int32_t)((uint32_t)(w[(size_t)src * C + c + j] + p->w_offset) * k);
                sum += (uint32_t)wk[t];
            }
            int32_t w02[3], w1[3];
            mcc_planar_k3_weights(wk, w02, w1);
            wv[j][0] = w02[0];
            wv[j][1] = w02[1];
            wv[j][2] = w02[2];
            wv[j][3] = (int32_t)(((uint32_t)w1[0] & 0xFFFFu) | ((uint32_t)w1[1] << 16));
            wv[j][4] = w1[2];
            const uint32_t b = bias ? (uint32_t)bias[c + j] : 0u;
            wv[j][5] = (int32_t)(b * k + (uint32_t)p->in_offset * sum);
        }
        mcc_ring_fn fn = mcc_ring_block_00;
#if !defined(__OPTIMIZE_SIZE__)
        if (fast) {
            fn = mcc_ring_block_10;
        }
#endif
#if defined(__ARM_FEATURE_DSP) && !defined(__OPTIMIZE_SIZE__)
        if (fast && full) {
            fn = mcc_ring_block_11;
        }
#else
        (void)full;
#endif
        fn(p, g, in, (const int32_t(*)[6])wv, rqb, out, c, ring);
    }
}

void mcc_depthwise_conv2d_s8_planar(const mcc_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                                    const int32_t *rq, int8_t *out, int8_t *plane) {
    const int32_t C = p->in_c;
    const int32_t pixels = p->in_h * p->in_w;
    const int32_t taps = p->k_h * p->k_w;
    const int square = p->k_h == p->k_w && p->stride_h == p->stride_w && p->dil_h == 1 && p->dil_w == 1;
    int32_t wk[49];
    mcc_ring_geo g;
    int cols;
    if (mcc_ring_ok(p, &g, &cols)) {
        mcc_ring_run(p, &g, cols, in, w, bias, rq, out);
        return;
    }
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
