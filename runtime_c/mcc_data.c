/* Data movement, int8: copy, constant pad, concat (strided block copies), 4-D transpose, nearest resize. */
#include <string.h>

#include "mcc_kernels.h"

void mcc_copy(const int8_t *in, int8_t *out, int32_t n) {
    if (n > 0 && in != out) {
        memcpy(out, in, (size_t)n);
    }
}

void mcc_pad_s8(const mcc_pad_params *p, const int8_t *in, int8_t *out) {
    const size_t total = (size_t)p->out_d0 * p->out_d1 * p->out_d2 * p->out_d3;
    memset(out, p->value, total);
    if (p->in_d3 == 0) {
        return;
    }
    for (int32_t i0 = 0; i0 < p->in_d0; ++i0) {
        for (int32_t i1 = 0; i1 < p->in_d1; ++i1) {
            for (int32_t i2 = 0; i2 < p->in_d2; ++i2) {
                const int8_t *src = in + (((size_t)i0 * p->in_d1 + i1) * p->in_d2 + i2) * p->in_d3;
                const size_t o0 = (size_t)(i0 + p->pad_d0), o1 = (size_t)(i1 + p->pad_d1);
                const size_t o2 = (size_t)(i2 + p->pad_d2);
                int8_t *dst = out + ((o0 * p->out_d1 + o1) * p->out_d2 + o2) * p->out_d3 + p->pad_d3;
                memcpy(dst, src, (size_t)p->in_d3);
            }
        }
    }
}

void mcc_concat_s8(const mcc_concat_params *p, const int8_t *in, int8_t *out) {
    if (p->in_block == 0) {
        return;
    }
    for (int32_t o = 0; o < p->outer; ++o) {
        memcpy(out + (size_t)o * p->out_block + p->out_offset, in + (size_t)o * p->in_block, (size_t)p->in_block);
    }
}

void mcc_transpose_s8(const mcc_transpose_params *p, const int8_t *in, int8_t *out) {
    for (int32_t i0 = 0; i0 < p->out_d0; ++i0) {
        for (int32_t i1 = 0; i1 < p->out_d1; ++i1) {
            for (int32_t i2 = 0; i2 < p->out_d2; ++i2) {
                const int8_t *src = in + (size_t)i0 * p->in_s0 + (size_t)i1 * p->in_s1 + (size_t)i2 * p->in_s2;
                for (int32_t i3 = 0; i3 < p->out_d3; ++i3) {
                    *out++ = src[(size_t)i3 * p->in_s3];
                }
            }
        }
    }
}

void mcc_resize_nearest_s8(const mcc_resize_params *p, const int32_t *rows, const int32_t *cols, const int8_t *in,
                           int8_t *out) {
    const size_t c = (size_t)p->channels;
    for (int32_t n = 0; n < p->batch; ++n) {
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int8_t *row = in + ((size_t)n * p->in_h + rows[oy]) * p->in_w * c;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                memcpy(out, row + (size_t)cols[ox] * c, c);
                out += c;
            }
        }
    }
}

void mcc_box_copy(const mcc_box_params *p, const void *src, void *dst) {
    const uint8_t *s = (const uint8_t *)src;
    uint8_t *d = (uint8_t *)dst;
    const size_t row = (size_t)p->size_d3 * p->elem_bytes;
    for (int32_t i0 = 0; i0 < p->size_d0; ++i0) {
        for (int32_t i1 = 0; i1 < p->size_d1; ++i1) {
            for (int32_t i2 = 0; i2 < p->size_d2; ++i2) {
                const size_t si = (((size_t)(p->src_b0 + i0) * p->src_d1 + (p->src_b1 + i1)) * p->src_d2 +
                                   (p->src_b2 + i2)) * p->src_d3 + p->src_b3;
                const size_t di = (((size_t)(p->dst_b0 + i0) * p->dst_d1 + (p->dst_b1 + i1)) * p->dst_d2 +
                                   (p->dst_b2 + i2)) * p->dst_d3 + p->dst_b3;
                memcpy(d + di * p->elem_bytes, s + si * p->elem_bytes, row);
            }
        }
    }
}

void mcc_read_region(const mcc_box_params *p, const void *in, mcc_input_reader read, void *user, void *dst) {
    if (read != NULL) {
        read(user, p->src_b1, p->src_b2, p->size_d1, p->size_d2, dst);
    } else {
        mcc_box_copy(p, in, dst);
    }
}
