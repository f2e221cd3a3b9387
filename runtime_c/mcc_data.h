/* mcc runtime kernels: see mcc_kernels.h (include that header, not this one).
 *
 * Elementwise unary ops by lookup table, int8 softmax, float32 dequantize and log-softmax (a model's float tail), and
 * data movement (pad, concat, transpose, resize, copy).
 * None of these kernels needs scratch memory; input and output buffers must not overlap.
 */
#ifndef MCC_DATA_H
#define MCC_DATA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- unary ops by lookup table (mcc_lut.c) ----------------------------------------------------------------- */

/* out[i] = lut[in[i] + 128] for n elements: every int8 -> int8 per-tensor elementwise op (relu, relu6, clamp,
   leaky_relu, hard_swish, hard_sigmoid, sigmoid, tanh, requantize) with its table computed at compile time. */
void mcc_lut_s8(const int8_t lut[256], const int8_t *in, int8_t *out, int32_t n);

/* ---- softmax (mcc_softmax.c) --------------------------------------------------------------------------------- */

typedef struct {
    int32_t rows;  /* product of all dimensions but the last */
    int32_t depth; /* the normalised (last) dimension, 1..8191 */
} mcc_softmax_params;

/* nn.softmax over the last axis, int8 in, int8 out quantized (1/256, -128), TFLite's integer algorithm.
   exp_table[d] is exp(beta * s_in * -d) in Q0.31 for a difference d = row max - x in 0..255 (0 where d is beyond
   the overflow radius), precomputed per layer; in a size-first build (MCC_SIZE_FIRST) the three words {input
   multiplier, input left shift, diff_min} instead, each exp computed (mcc_softmax.c). */
void mcc_softmax_s8(const mcc_softmax_params *p, const int32_t *exp_table, const int8_t *in, int8_t *out);

/* ---- float32 tail ops (mcc_float.c) --------------------------------------------------------------------------- */

/* expf and logf bit-identical to glibc's (x86-64, FMA code path; see mcc_float.c), without libm. */
float mcc_expf(float x);
float mcc_logf(float x);

/* q.dequantize, int8 -> float32: out[i] = (float)(in[i] - zero_point) * scale (one rounding, as TFLM's double form). */
void mcc_dequantize_s8_f32(const int8_t *in, float *out, int32_t n, int32_t zero_point, float scale);

/* nn.log_softmax over the last axis, float32, TFLite's reference order: per row the max, the float sum of
   expf(x - max) in index order, then out = (x - max) - logf(sum). */
void mcc_log_softmax_f32(const mcc_softmax_params *p, const float *in, float *out);

/* ---- data movement (mcc_data.c) ------------------------------------------------------------------------------ */

/* Byte copy: nn.reshape / nn.identity / nn.flatten when the memory plan did not alias result and operand. */
void mcc_copy(const int8_t *in, int8_t *out, int32_t n);

typedef struct {
    int32_t size_d0, size_d1, size_d2, size_d3; /* the box (rank < 4 padded with leading 1s) */
    int32_t src_d1, src_d2, src_d3;             /* source shape (its first dimension does not matter) */
    int32_t src_b0, src_b1, src_b2, src_b3;     /* where the box starts in the source */
    int32_t dst_d1, dst_d2, dst_d3;             /* destination shape */
    int32_t dst_b0, dst_b1, dst_b2, dst_b3;     /* where the box starts in the destination */
    int32_t elem_bytes;
} mcc_box_params;

/* Copies a box of elements between two row-major tensors (nn.slice: out of the source; nn.insert: into the
   destination), one memcpy per innermost row. */
void mcc_box_copy(const mcc_box_params *p, const void *src, void *dst);

/* The application's source of a streamed input: copy rows [y, y + h) and columns [x, x + w) of the input, every
   channel, NHWC, into dst (h * w * channels elements, row after row). */
typedef void (*mcc_input_reader)(void *user, int32_t y, int32_t x, int32_t h, int32_t w, void *dst);

/* A streamed slice: the region through read(user, ...) when read is not NULL, else out of the full input in the
   application's memory (in). */
void mcc_read_region(const mcc_box_params *p, const void *in, mcc_input_reader read, void *user, void *dst);

typedef struct {
    int32_t in_d0, in_d1, in_d2, in_d3;     /* input shape (rank < 4 padded with leading 1s) */
    int32_t out_d0, out_d1, out_d2, out_d3; /* output shape */
    int32_t pad_d0, pad_d1, pad_d2, pad_d3; /* elements inserted before the input along each axis */
    int32_t value;                          /* the quantized fill value */
} mcc_pad_params;

/* nn.pad with a constant: fill the output, then copy the input rows into place. */
void mcc_pad_s8(const mcc_pad_params *p, const int8_t *in, int8_t *out);

typedef struct {
    int32_t outer;      /* product of the dimensions before the concat axis */
    int32_t in_block;   /* elements of one input slice: input extent along the axis x inner size */
    int32_t out_block;  /* elements of one output slice: output extent along the axis x inner size */
    int32_t out_offset; /* where this input's slice starts inside an output slice */
} mcc_concat_params;

/* One input of nn.concat: outer strided block copies into the output (one call per input). */
void mcc_concat_s8(const mcc_concat_params *p, const int8_t *in, int8_t *out);

typedef struct {
    int32_t out_d0, out_d1, out_d2, out_d3; /* output shape (rank < 4 padded with leading 1s) */
    int32_t in_s0, in_s1, in_s2, in_s3;     /* input stride (elements) of the axis each output axis reads */
} mcc_transpose_params;

/* nn.transpose as a 4-D permuted gather: out is written in order, in is read through the strides. */
void mcc_transpose_s8(const mcc_transpose_params *p, const int8_t *in, int8_t *out);

typedef struct {
    int32_t batch, in_h, in_w, channels;
    int32_t out_h, out_w;
} mcc_resize_params;

/* nn.resize_nearest, NHWC: output pixel (y, x) copies input pixel (rows[y], cols[x]); the index tables are
   precomputed with the interpreter's rule. */
void mcc_resize_nearest_s8(const mcc_resize_params *p, const int32_t *rows, const int32_t *cols, const int8_t *in,
                           int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* MCC_DATA_H */
