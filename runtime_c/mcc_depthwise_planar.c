/* nn.depthwise_conv2d in place, channel by channel (batch 1, depth multiplier 1).
 *
 * Each input channel is copied into an H x W plane in the caller's scratch buffer; that channel's outputs are then
 * computed from the plane and written where the channel's inputs were (the output may occupy exactly the input's
 * bytes: a write only ever lands on the channel just copied). The memory planner chooses this kernel when the
 * plane is smaller than what the raster kernel's overlap would cost (compiler/ops/conv.py, depthwise_in_place).
 *
 * Windows that lie inside the plane (no padding) take a branch-free path: the channel's weights sit in registers
 * or on the stack, the input offset is folded into the bias once per channel (the accumulator wraps modulo 2^32
 * like TFLite's int32 sums, so the order of the additions does not matter), and for the common square windows and
 * strides (k 3/5/7, stride 1) the window size is a compile-time constant so the compiler unrolls the taps. Windows that reach into the
 * padding sum their valid taps only, exactly as the reference does. */
#include "mcc_kernels.h"

size_t mcc_depthwise_planar_scratch_bytes(const mcc_conv_params *p) {
    return (size_t)p->in_h * p->in_w;
}

/* One channel's outputs from its plane; K and S are constants in the specialised calls (and p->k_h, p->stride_h in
   the generic one). wk holds the channel's K*K weights with the weight offset applied. */
static inline void mcc_planar_channel(const mcc_conv_params *p, const int8_t *plane, const int32_t *wk,
                                      int32_t bias, int32_t mult, int32_t shift, int8_t *out, int32_t c,
                                      const int32_t K, const int32_t S) {
    const int32_t H = p->in_h, W = p->in_w, C = p->in_c;
    uint32_t wsum = 0;
    for (int32_t i = 0; i < K * K; ++i) {
        wsum += (uint32_t)wk[i];
    }
    const uint32_t interior_base = (uint32_t)bias + (uint32_t)p->in_offset * wsum;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * S - p->pad_top;
        const int rows_inside = iy0 >= 0 && iy0 + K <= H;
        int8_t *o = out + (size_t)oy * p->out_w * C + c;
        for (int32_t ox = 0; ox < p->out_w; ++ox, o += C) {
            const int32_t ix0 = ox * S - p->pad_left;
            uint32_t acc;
            if (rows_inside && ix0 >= 0 && ix0 + K <= W) {
                const int8_t *r = plane + iy0 * W + ix0;
                acc = interior_base;
                for (int32_t ky = 0; ky < K; ++ky, r += W) {
                    for (int32_t kx = 0; kx < K; ++kx) {
                        acc += (uint32_t)((int32_t)r[kx] * wk[ky * K + kx]);
                    }
                }
            } else {
                acc = (uint32_t)bias;
                for (int32_t ky = 0; ky < K; ++ky) {
                    const int32_t iy = iy0 + ky;
                    if (iy < 0 || iy >= H) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < K; ++kx) {
                        const int32_t ix = ix0 + kx;
                        if (ix >= 0 && ix < W) {
                            acc += (uint32_t)(((int32_t)plane[iy * W + ix] + p->in_offset) * wk[ky * K + kx]);
                        }
                    }
                }
            }
            const int32_t y = mcc_mbqm((int32_t)acc, mult, shift) + p->out_zp;
            *o = (int8_t)mcc_clamp(y, p->act_min, p->act_max);
        }
    }
}

/* The general case: any window (dilation included), straight from the definition. */
static void mcc_planar_channel_dilated(const mcc_conv_params *p, const int8_t *plane, const int8_t *w,
                                       int32_t bias, int32_t mult, int32_t shift, int8_t *out, int32_t c) {
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
            const int32_t y = mcc_mbqm((int32_t)acc, mult, shift) + p->out_zp;
            out[((size_t)oy * p->out_w + ox) * p->in_c + c] = (int8_t)mcc_clamp(y, p->act_min, p->act_max);
        }
    }
}

void mcc_depthwise_conv2d_s8_planar(const mcc_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                                    const int32_t *mult, const int32_t *shift, int8_t *out, int8_t *plane) {
    const int32_t C = p->in_c;
    const int32_t pixels = p->in_h * p->in_w;
    const int32_t taps = p->k_h * p->k_w;
    const int square = p->k_h == p->k_w && p->stride_h == p->stride_w && p->dil_h == 1 && p->dil_w == 1;
    int32_t wk[49];
    for (int32_t c = 0; c < C; ++c) {
        for (int32_t i = 0; i < pixels; ++i) {
            plane[i] = in[(size_t)i * C + c];
        }
        const int32_t b = bias ? bias[c] : 0;
        if (taps > 49 || !square) {
            mcc_planar_channel_dilated(p, plane, w, b, mult[c], shift[c], out, c);
            continue;
        }
        for (int32_t t = 0; t < taps; ++t) {
            wk[t] = w[(size_t)t * C + c] + p->w_offset;
        }
        /* stride 1 only: with stride 2 the raster kernel's overlap always costs less than a plane, so the planner
           never picks this kernel there (the generic call below still handles any stride) */
        const int32_t k = p->k_h, s = p->stride_h;
        if (k == 3 && s == 1) {
            mcc_planar_channel(p, plane, wk, b, mult[c], shift[c], out, c, 3, 1);
        } else if (k == 5 && s == 1) {
            mcc_planar_channel(p, plane, wk, b, mult[c], shift[c], out, c, 5, 1);
        } else if (k == 7 && s == 1) {
            mcc_planar_channel(p, plane, wk, b, mult[c], shift[c], out, c, 7, 1);
        } else {
            mcc_planar_channel(p, plane, wk, b, mult[c], shift[c], out, c, k, s);
        }
    }
}
