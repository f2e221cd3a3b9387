/* nn.avg_pool2d and nn.max_pool2d, int8 NHWC; padded positions never take part. */
#include <string.h>

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

#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__)
/* acc + the sign-extended bytes 0 and 2 (ROT 0) or 1 and 3 (ROT 8) of x, as two 16-bit lanes (SXTAB16). */
#define MCC_SXTAB16(acc, x, ROT) __asm__("sxtab16 %0, %0, %1, ror #" #ROT : "+r"(acc) : "r"(x))
#endif

/* The window sums of channels c..c+3 over rows x cols pixels from px (row_step bytes between rows, ch between
   pixels) into s[4]. */
static inline void mcc_window_sum4(const int8_t *px, int32_t rows, int32_t cols, size_t row_step, size_t ch,
                                   int32_t s[4]) {
#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__)
    if (rows * cols <= 256) { /* 16-bit lanes: at most 256 * -128 = -32768 or 256 * 127, no lane overflows */
        uint32_t even = 0, odd = 0;
        if ((size_t)cols * ch == row_step) { /* whole rows (a global pool): one run of pixels */
            cols *= rows;
            rows = 1;
        }
        for (int32_t y = 0; y < rows; ++y, px += row_step) {
            const int8_t *q = px;
            int32_t x = 0;
            for (; x + 2 <= cols; x += 2, q += 2 * ch) {
                uint32_t w0, w1;
                memcpy(&w0, q, sizeof w0); /* one (unaligned) LDR */
                memcpy(&w1, q + ch, sizeof w1);
                MCC_SXTAB16(even, w0, 0);
                MCC_SXTAB16(odd, w0, 8);
                MCC_SXTAB16(even, w1, 0);
                MCC_SXTAB16(odd, w1, 8);
            }
            if (x < cols) {
                uint32_t w;
                memcpy(&w, q, sizeof w);
                MCC_SXTAB16(even, w, 0);
                MCC_SXTAB16(odd, w, 8);
            }
        }
        s[0] = (int16_t)(even & 0xFFFFu);
        s[1] = (int16_t)(odd & 0xFFFFu);
        s[2] = (int16_t)(even >> 16);
        s[3] = (int16_t)(odd >> 16);
        return;
    }
#endif
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int32_t y = 0; y < rows; ++y, px += row_step) {
        const int8_t *q = px;
        for (int32_t x = 0; x < cols; ++x, q += ch) {
            s0 += q[0];
            s1 += q[1];
            s2 += q[2];
            s3 += q[3];
        }
    }
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
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
