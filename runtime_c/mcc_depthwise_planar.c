/* nn.depthwise_conv2d in place, channel by channel (batch 1, depth multiplier 1).
 *
 * Each input channel is copied into an H x W plane in the caller's scratch buffer; that channel's outputs are then
 * computed from the plane and written where the channel's inputs were (the output may occupy exactly the input's
 * bytes: a write only ever lands on the channel just copied). The memory planner chooses this kernel when the
 * plane is smaller than what the raster kernel's overlap would cost (compiler/ops/conv.py, depthwise_in_place). */
#include "mcc_kernels.h"

size_t mcc_depthwise_planar_scratch_bytes(const mcc_conv_params *p) {
    return (size_t)p->in_h * p->in_w;
}

void mcc_depthwise_conv2d_s8_planar(const mcc_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                                    const int32_t *mult, const int32_t *shift, int8_t *out, int8_t *plane) {
    const int32_t c_n = p->in_c;
    const int32_t pixels = p->in_h * p->in_w;
    for (int32_t c = 0; c < c_n; ++c) {
        for (int32_t i = 0; i < pixels; ++i) {
            plane[i] = in[(size_t)i * c_n + c];
        }
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                uint32_t acc = (uint32_t)(bias ? bias[c] : 0);
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
                        const int32_t x = plane[iy * p->in_w + ix] + p->in_offset;
                        const int32_t wv = w[((size_t)ky * p->k_w + kx) * c_n + c] + p->w_offset;
                        acc += (uint32_t)(x * wv);
                    }
                }
                const int32_t y = mcc_mbqm((int32_t)acc, mult[c], shift[c]) + p->out_zp;
                out[((size_t)oy * p->out_w + ox) * c_n + c] = (int8_t)mcc_clamp(y, p->act_min, p->act_max);
            }
        }
    }
}
