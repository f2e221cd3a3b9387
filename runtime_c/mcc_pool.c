/* nn.avg_pool2d and nn.max_pool2d, int8 NHWC; padded positions never take part. */
#include "mcc_kernels.h"

/* The valid window rows [*lo, *hi) along one axis for output position o. */
static void mcc_pool_window(int32_t o, int32_t stride, int32_t pad, int32_t k, int32_t size, int32_t *lo,
                            int32_t *hi) {
    const int32_t start = o * stride - pad;
    *lo = start < 0 ? 0 : start;
    *hi = start + k > size ? size : start + k;
}

/* The average of a window sum over count elements, rounded half away from zero as TFLite writes it (C division
   truncates), clamped. */
static inline int8_t mcc_avg_of(int32_t sum, int32_t count, int32_t lo, int32_t hi) {
    const int32_t avg = (sum > 0 ? sum + count / 2 : sum - count / 2) / count;
    return (int8_t)mcc_clamp(avg, lo, hi);
}

void mcc_avg_pool2d_s8(const mcc_pool_params *p, const int8_t *in, int8_t *out) {
    const int32_t ch = p->channels;
    const size_t row_step = (size_t)p->in_w * ch;
    for (int32_t n = 0; n < p->batch; ++n) {
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            int32_t y0, y1;
            mcc_pool_window(oy, p->stride_h, p->pad_top, p->k_h, p->in_h, &y0, &y1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                int32_t x0, x1;
                mcc_pool_window(ox, p->stride_w, p->pad_left, p->k_w, p->in_w, &x0, &x1);
                const int32_t rows = y1 - y0, cols = x1 - x0, count = rows * cols;
                const int8_t *first = in + (((size_t)n * p->in_h + y0) * p->in_w + x0) * ch;
                int8_t *o = out + (((size_t)n * p->out_h + oy) * p->out_w + ox) * ch;
                /* four channels at a time, the whole window each: the pixel's output is written only after its
                   own input is read, as the window overlap contract (compiler/overlap.py) asks */
                int32_t c = 0;
                for (; c + 4 <= ch; c += 4) {
                    int32_t s[4];
                    mcc_window_sum4(first + c, rows, cols, row_step, (size_t)ch, s);
                    for (int k = 0; k < 4; ++k) {
                        o[c + k] = mcc_avg_of(s[k], count, p->act_min, p->act_max);
                    }
                }
                for (; c < ch; ++c) {
                    int32_t sum = 0;
                    for (int32_t iy = 0; iy < rows; ++iy) {
                        for (int32_t ix = 0; ix < cols; ++ix) {
                            sum += first[(size_t)iy * row_step + (size_t)ix * ch + c];
                        }
                    }
                    o[c] = mcc_avg_of(sum, count, p->act_min, p->act_max);
                }
            }
        }
    }
}

void mcc_max_pool2d_s8(const mcc_pool_params *p, const int8_t *in, int8_t *out) {
    for (int32_t n = 0; n < p->batch; ++n) {
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            int32_t y0, y1;
            mcc_pool_window(oy, p->stride_h, p->pad_top, p->k_h, p->in_h, &y0, &y1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                int32_t x0, x1;
                mcc_pool_window(ox, p->stride_w, p->pad_left, p->k_w, p->in_w, &x0, &x1);
                int8_t *o = out + (((size_t)n * p->out_h + oy) * p->out_w + ox) * p->channels;
                for (int32_t c = 0; c < p->channels; ++c) {
                    int32_t best = INT32_MIN;
                    for (int32_t iy = y0; iy < y1; ++iy) {
                        for (int32_t ix = x0; ix < x1; ++ix) {
                            const int32_t v = in[(((size_t)n * p->in_h + iy) * p->in_w + ix) * p->channels + c];
                            best = v > best ? v : best;
                        }
                    }
                    o[c] = (int8_t)mcc_clamp(best, p->act_min, p->act_max);
                }
            }
        }
    }
}
