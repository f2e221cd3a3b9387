/* mcc runtime kernels: see mcc_kernels.h (include that header, not this one).
 *
 * Compute kernels: depthwise convolution, fully connected, matmul, pooling, mean, add and mul, all int8 with
 * int32 accumulators and TFLite integer semantics. None needs scratch memory; input and output buffers must not
 * overlap. Shapes and zero points arrive in a const parameter struct per layer; per-channel requantization
 * multipliers and shifts in const tables.
 */
#ifndef MCC_COMPUTE_H
#define MCC_COMPUTE_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- depthwise convolution (mcc_depthwise.c) ----------------------------------------------------------------- */

/* nn.depthwise_conv2d, int8 NHWC x [1][KH][KW][C*M]: output channel c*M + m reads input channel c. Takes
   mcc_conv_params (declared in mcc_kernels.h before it includes this header) with depth_multiplier = M and
   out_c = in_c * M; groups is unused. bias may be NULL; mult/shift have out_c entries. */
void mcc_depthwise_conv2d_s8(const mcc_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                             const int32_t *mult, const int32_t *shift, int8_t *out);

/* Requantization from a table of three words per channel {multiplier, shift, rounding half} (the depthwise
   kernels; mcc_gemm.c keeps its own copy, which measured 0.1 % fewer instructions in its block; the table and its
   per-channel proof come from backends/c/emitters/gemm.py requant_table): TFLite's MultiplyByQuantizedMultiplier
   bit for bit. Half > 0 (FAST: always): the shift is a right shift r >= 1, half is 2^(r-1) and |acc| < 2^30, so
   SMMLAR on the doubled accumulator is gemmlowp's rounding doubling high multiply plus the half, a sign fix and an
   arithmetic shift finish the rounding divide. Half < 0: right shift r, both roundings in one 64-bit sum. Half 0:
   the generic form with shift rq[1]. */
static inline int32_t mcc_requant_rq(int32_t acc, const int32_t *rq, const int FAST) {
    const int32_t h = rq[2];
    if (FAST || h > 0) {
        const int32_t acc2 = (int32_t)((uint32_t)acc << 1);
#if defined(__ARM_FEATURE_DSP)
        int32_t t;
        __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"(acc2), "r"(rq[0]), "r"(h));
#else
        const int32_t t = (int32_t)((((int64_t)acc2 * rq[0]) + (int64_t)h * ((int64_t)1 << 32) + 0x80000000LL) >> 32);
#endif
        return (t + (acc2 >> 31)) >> rq[1]; /* t = srdhm(acc, m) + 2^(r-1); acc's sign stands for srdhm's */
    }
    if (h < 0) {
        int64_t t = (int64_t)acc * rq[0] + (1LL << 30);
        t += (int64_t)((uint32_t)(-h) - (t < 0 ? 1u : 0u)) << 31;
        return (int32_t)(t >> 32) >> (rq[1] - 1);
    }
    return mcc_mbqm(acc, rq[0], rq[1]);
}

/* Specialised nn.depthwise_conv2d for depth multiplier 1, dilation 1, weight zero point 0 and a K x K window with
   stride S (K in 3, 5, 7; S in 1, 2): the window unrolled inside the input, the border apart, four channels per
   step. wq holds the weights packed as int32 words in the kernel's own order (mcc_depthwise.c),
   rq three requantization words per channel (multiplier, shift, rounding half); bias must not be NULL. The plain
   variant requires every channel's fast requantization (rounding half > 0), the _any variant takes any; the plain
   variant's speed-first layout (not MCC_GEMM_NARROW) has bias, weights and requantization in wq (one stream per
   block of four channels) and reads neither bias nor rq. */
/* The parameters of the specialised kernels: all of mcc_conv_params, or in a size-first build only what its compact
   kernel reads (the emitter leaves the other fields out there; the window and stride are in the kernel's name, the
   output zero point in the requantization table). */
#if defined(MCC_SIZE_FIRST)
typedef struct {
    mcc_pint batch, in_h, in_w, in_c, out_h, out_w, pad_top, pad_left, in_offset, act_min, act_max;
} mcc_dw_fast_params;
#else
typedef mcc_conv_params mcc_dw_fast_params;
#endif
#define MCC_DW_DECLARE(K, S)                                                                                      \
    void mcc_depthwise_conv2d_s8_k##K##s##S(const mcc_dw_fast_params *p, const int8_t *in, const int32_t *wq,       \
                                            const int32_t *bias, const int32_t *rq, int8_t *out);                 \
    void mcc_depthwise_conv2d_s8_k##K##s##S##_any(const mcc_dw_fast_params *p, const int8_t *in, const int32_t *wq, \
                                                  const int32_t *bias, const int32_t *rq, int8_t *out);
MCC_DW_DECLARE(3, 1)
MCC_DW_DECLARE(3, 2)
MCC_DW_DECLARE(5, 1)
MCC_DW_DECLARE(5, 2)
MCC_DW_DECLARE(7, 1)
MCC_DW_DECLARE(7, 2)
#undef MCC_DW_DECLARE

/* nn.depthwise_conv2d, 3x3 window, stride 1, from channel lines (mcc_depthwise_lines.c): batch 1, C a multiple of
   4, padding at most 1 on the top and the left, every channel's fast requantization. tab: eight int32 words per
   channel (backends/c/emitters/compute.py depthwise_lines_table; the first kernel's size-first build reads
   depthwise_lines_size_first's arrays instead). The first honours the raster overlap contract;
   the second runs in place (out == in; cols: the lines are the columns), lines of at most 28 pixels. */
void mcc_depthwise_conv2d_s8_lines(const mcc_dw_fast_params *p, const int8_t *in, const int32_t *tab, int8_t *out);
void mcc_depthwise_conv2d_s8_lines_inplace(const mcc_conv_params *p, const int8_t *in, const int32_t *tab,
                                           int8_t *out, int32_t cols);

/* ---- fully connected and matmul (mcc_fully_connected.c) ------------------------------------------------------ */

typedef struct {
    int32_t rows;      /* product of the input dimensions but the last */
    int32_t depth;     /* K, the input's last dimension */
    int32_t out_c;     /* N, the weight's rows */
    int32_t in_offset; /* minus the input zero point */
    int32_t w_offset;  /* minus the weight zero point */
    int32_t out_zp, act_min, act_max;
} mcc_fc_params;

/* nn.fully_connected: out[r][n] = requant(sum_k (in[r][k] + in_offset) * (w[n][k] + w_offset) + bias[n]).
   bias may be NULL; mult/shift have out_c entries (per-tensor weights repeat one value). */
void mcc_fully_connected_s8(const mcc_fc_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                            const int32_t *mult, const int32_t *shift, int8_t *out);

typedef struct {
    int32_t batch;          /* number of result matrices */
    int32_t m, k, n;        /* A is [M][K], B is [K][N], the result [M][N] */
    int32_t a_batch_stride; /* elements between consecutive A matrices (0: one A shared by every batch) */
    int32_t b_batch_stride; /* elements between consecutive B matrices (0: one B shared by every batch) */
    int32_t a_offset;       /* minus A's zero point */
    int32_t b_offset;       /* minus B's zero point */
    int32_t mult, shift;    /* requantization of s_a * s_b / s_out */
    int32_t out_zp, act_min, act_max;
} mcc_matmul_params;

/* nn.matmul of two int8 tensors with per-tensor quantization, row-major matrices. */
void mcc_matmul_s8(const mcc_matmul_params *p, const int8_t *a, const int8_t *b, int8_t *out);

/* ---- pooling (mcc_pool.c) ------------------------------------------------------------------------------------ */

typedef struct {
    mcc_pint batch, in_h, in_w, channels;
    mcc_pint out_h, out_w;
    mcc_pint k_h, k_w, stride_h, stride_w, pad_top, pad_left;
    mcc_pint act_min, act_max; /* fused clamp (input and result share their quantization) */
} mcc_pool_params;

/* nn.avg_pool2d: sum of the valid (non-padded) window elements / their count, rounded half away from zero. */
void mcc_avg_pool2d_s8(const mcc_pool_params *p, const int8_t *in, int8_t *out);

/* nn.max_pool2d: maximum of the valid window elements. */
void mcc_max_pool2d_s8(const mcc_pool_params *p, const int8_t *in, int8_t *out);

/* ---- mean (mcc_mean.c) --------------------------------------------------------------------------------------- */

typedef struct {
    int32_t outer;     /* product of the dimensions before the reduced run */
    int32_t reduce;    /* product of the reduced dimensions (the element count) */
    int32_t inner;     /* product of the dimensions after the reduced run */
    int32_t in_offset;   /* minus the input zero point */
    int32_t mult, shift; /* requantization of s_in / (s_out * reduce), TFLM's folded mean multiplier */
    int32_t out_zp;
} mcc_mean_params;

/* nn.mean over one contiguous run of axes: the input viewed as [outer][reduce][inner], the result [outer][inner].
   out = clamp(requant(sum(x + in_offset)) + out_zp, -128, 127). */
void mcc_mean_s8(const mcc_mean_params *p, const int8_t *in, int8_t *out);

/* ---- window sums of four channels, shared by pooling and mean ------------------------------------------------ */

#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__)
/* acc + the sign-extended bytes 0 and 2 (ROT 0) or 1 and 3 (ROT 8) of x, as two 16-bit lanes (SXTAB16). */
#define MCC_SXTAB16(acc, x, ROT) __asm__("sxtab16 %0, %0, %1, ror #" #ROT : "+r"(acc) : "r"(x))
#endif

/* The window sums of channels c..c+3 over rows x cols pixels from px (row_step bytes between rows, ch between
   pixels) into s[4]: average pooling (mcc_pool.c) over a window, mean (mcc_mean.c) over one column of rows = 1. */
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

/* ---- add and mul (mcc_elementwise.c) ------------------------------------------------------------------------- */

/* Both take the output shape collapsed to 4-D (leading 1s) and, per operand, the stride in elements of each
   output axis: 0 along an axis the operand broadcasts. */
typedef struct {
    int32_t out_d0, out_d1, out_d2, out_d3;
    int32_t in1_s0, in1_s1, in1_s2, in1_s3;
    int32_t in2_s0, in2_s1, in2_s2, in2_s3;
    int32_t in1_offset, in2_offset; /* minus the zero points */
    int32_t left_shift;             /* headroom bits (20 for 8-bit add) */
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t out_zp, act_min, act_max;
    int32_t fast_half; /* mcc_add_s8_lut only: 2^(r-1) + out_zp * 2^r (r = -out_shift) when its one-step output
                          requantization is proved exact, else 0; mcc_add_s8 ignores it */
    int32_t fast_sign; /* mcc_add_s8_lut with fast_half: 1 when a negative sum needs its rounding fix (0 only when
                          every input pair was checked to give the same result without it) */
} mcc_add_params;

/* nn.add, TFLite's 8-bit ADD: both inputs rescaled to a common scale, summed, rescaled to the output. */
void mcc_add_s8(const mcc_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* nn.add of two operands of the result's shape (no broadcasting), element i of each: t1 and t2 hold 256 words,
   twice TFLite's rescaled input for every int8 value (indexed by its byte, (uint8_t)x), from
   backends/c/emitters/compute.py add_tables (all even). Only the out_* fields, act_min/act_max, fast_half,
   fast_sign and the element count out_d0*out_d1*out_d2*out_d3 are read. A build that defines MCC_ADD_NO_TABLES
   compiles stand-ins instead of the tables, told apart by an odd first word: {3, ...} the
   constants of an exact arithmetic rescale, {1} run mcc_add_s8 on all of p. Reads element i of both operands before writing it, so the result may overlap an operand as
   compiler/overlap.py's elementwise contract allows. */
void mcc_add_s8_lut(const mcc_add_params *p, const int32_t *t1, const int32_t *t2, const int8_t *in1,
                    const int8_t *in2, int8_t *out);

typedef struct {
    int32_t out_d0, out_d1, out_d2, out_d3;
    int32_t in1_s0, in1_s1, in1_s2, in1_s3;
    int32_t in2_s0, in2_s1, in2_s2, in2_s3;
    int32_t in1_offset, in2_offset; /* minus the zero points */
    int32_t out_mult, out_shift;    /* requantization of s1 * s2 / s_out */
    int32_t out_zp, act_min, act_max;
} mcc_mul_params;

/* nn.mul, TFLite's 8-bit MUL: the zero-point-free product requantized once. */
void mcc_mul_s8(const mcc_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* MCC_COMPUTE_H */
