/* nn.conv2d, int8 NHWC x OHWI, per-channel requantization.
 *
 * A window of more than one tap is first gathered into an im2col column in the caller's scratch buffer: the
 * int16 values (x - input zero point) of every tap of one output pixel and channel group, 0 where the window hangs
 * over the padding. Every output channel of that pixel is then one branch-free dot product of the column with its
 * weight row. A 1x1 window reads the input pixel in place and needs no scratch. The output is written pixel after
 * pixel in raster order and a pixel's input is read before any of it is written, which the memory planner's
 * overlap contract relies on (compiler/overlap.py). */
#include "mcc_kernels.h"

size_t mcc_conv2d_s8_scratch_bytes(const mcc_conv_params *p) {
    if (p->k_h * p->k_w == 1) {
        return 0;
    }
    return (size_t)p->k_h * p->k_w * (p->in_c / p->groups) * sizeof(int16_t);
}

/* (x - zp) for every tap of the window at (iy0, ix0), channels [c0, c0 + cin) of each, 0 for padded taps. */
static void mcc_im2col(const mcc_conv_params *p, const int8_t *image, int32_t iy0, int32_t ix0, int32_t c0,
                       int32_t cin, int16_t *col) {
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                for (int32_t c = 0; c < cin; ++c) {
                    *col++ = 0;
                }
                continue;
            }
            const int8_t *x = image + ((size_t)iy * p->in_w + ix) * p->in_c + c0;
            for (int32_t c = 0; c < cin; ++c) {
                *col++ = (int16_t)(x[c] + p->in_offset);
            }
        }
    }
}

/* One output channel: bias + sum of column * (weight - weight zero point), wrapping like int32 accumulators. */
static int32_t mcc_dot_s16_s8(const int16_t *col, const int8_t *w, int32_t n, int32_t w_offset, int32_t acc) {
    uint32_t sum = (uint32_t)acc;
    for (int32_t i = 0; i < n; ++i) {
        sum += (uint32_t)((int32_t)col[i] * (w[i] + w_offset));
    }
    return (int32_t)sum;
}

static int32_t mcc_dot_s8_s8(const int8_t *x, int32_t x_offset, const int8_t *w, int32_t n, int32_t w_offset,
                             int32_t acc) {
    uint32_t sum = (uint32_t)acc;
    for (int32_t i = 0; i < n; ++i) {
        sum += (uint32_t)((x[i] + x_offset) * (w[i] + w_offset));
    }
    return (int32_t)sum;
}

void mcc_conv2d_s8(const mcc_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                   const int32_t *mult, const int32_t *shift, int8_t *out, int16_t *scratch) {
    const int32_t cin_g = p->in_c / p->groups;
    const int32_t cout_g = p->out_c / p->groups;
    const int32_t taps = p->k_h * p->k_w;
    const int32_t k = taps * cin_g; /* weights per output channel */
    for (int32_t n = 0; n < p->batch; ++n) {
        const int8_t *image = in + (size_t)n * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int8_t *o = out + (((size_t)n * p->out_h + oy) * p->out_w + ox) * p->out_c;
                for (int32_t g = 0; g < p->groups; ++g) {
                    const int16_t *col = scratch;
                    const int8_t *x = NULL; /* 1x1 window: the input pixel itself, NULL over the padding */
                    if (taps > 1) {
                        mcc_im2col(p, image, iy0, ix0, g * cin_g, cin_g, scratch);
                    } else if (iy0 >= 0 && iy0 < p->in_h && ix0 >= 0 && ix0 < p->in_w) {
                        x = image + ((size_t)iy0 * p->in_w + ix0) * p->in_c + g * cin_g;
                    }
                    for (int32_t oc = g * cout_g; oc < (g + 1) * cout_g; ++oc) {
                        int32_t acc = bias ? bias[oc] : 0;
                        if (taps > 1) {
                            acc = mcc_dot_s16_s8(col, w + (size_t)oc * k, k, p->w_offset, acc);
                        } else if (x != NULL) {
                            acc = mcc_dot_s8_s8(x, p->in_offset, w + (size_t)oc * k, k, p->w_offset, acc);
                        }
                        acc = mcc_mbqm(acc, mult[oc], shift[oc]) + p->out_zp;
                        o[oc] = (int8_t)mcc_clamp(acc, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}
