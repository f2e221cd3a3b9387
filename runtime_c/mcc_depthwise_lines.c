/* nn.depthwise_conv2d, 3x3 window, stride 1, from channel lines: two kernels sharing one inner loop.
 *
 * Four channels c..c+3 at a time, input lines (image rows, or columns) are transposed into channel lines on the
 * stack: byte b of a channel line holds that channel at pixel b - pad of the line (padding and anything past the
 * line's end hold the input zero point, whose contribution the folded offset cancels, so no output is a border
 * case). Along a channel line horizontally adjacent taps are adjacent bytes, so two neighbouring outputs take one
 * word per window row: SXTB16 splits bytes x0..x3 into (x0, x2) and (x1, x3); with the row's weights as (w0, w2)
 * and w1, output 0 is SMLAD((x0, x2), (w0, w2)) + SMLABB(x1, w1) and output 1 SMLAD((x1, x3), (w0, w2)) +
 * SMLATB((x0, x2), w1): six MACs in seven instructions with the load. Each channel's eight constants stay in
 * registers along the line and each output is requantized as soon as its accumulator is complete (SMMLAR on the
 * doubled accumulator, the output zero point folded into the rounding half: the emitter's proof,
 * backends/c/emitters/compute.py depthwise_lines_table), into an output channel line; the block's four output
 * lines are then transposed back into NHWC words.
 *
 * A block's buffer holds six channel lines per channel (MCC_DWL_LS bytes apart, at fixed distances so the loop
 * addresses them with immediate offsets): input lines 0..3 and two output lines. One fill of four input lines
 * gives two output lines (lines 0-2 and 1-3).
 *
 * Table (int32, eight words per channel, from the emitter): the three window lines' (w0, w2) pairs, (w1 of line 0,
 * w1 of line 1), (shift, w1 of line 2), base = bias + in_offset * (sum of weights), multiplier, rounding half plus
 * zero point * 2^shift; weights and base doubled (the accumulator is the doubled one SMMLAR takes).
 *
 * mcc_depthwise_conv2d_s8_lines: any placement the raster overlap contract allows (compiler/overlap.py
 * window_access). Two output rows at a time, segments of at most MCC_DWL_SEG outputs along them, the blocks inside:
 * a block's outputs are written before the next block reads its input, so a pair of rows takes this path only when
 * its output bytes cannot hold input that is still to be read (checked on the addresses: below the first input row
 * the pair reads, or above the input's end); other rows (the first ones of a result placed just below its input)
 * run pixel by pixel, in raster order, as the raster kernels do.
 *
 * mcc_depthwise_conv2d_s8_lines_inplace: the result on exactly the input's bytes (the planner's in-place depthwise).
 * Block by block, the whole block's lines in order: output lines i and i + 1 are written after input lines up to
 * i + 3 - pad are in the buffer, and only the block's own bytes of pixels already read (rows: the output pixel
 * index is at most the input's; columns: the output has the input's shape); lines 2 and 3 then move to 0 and 1. */
#include <string.h>

#include "mcc_kernels.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MCC_DWL_INLINE static inline __attribute__((always_inline))
#define MCC_DWL_NOINLINE __attribute__((noinline))
#else
#define MCC_DWL_INLINE static inline
#define MCC_DWL_NOINLINE
#endif

#define MCC_DWL_LS 32               /* bytes per channel line */
#define MCC_DWL_CS (6 * MCC_DWL_LS) /* bytes per channel: four input lines, two output lines */
#define MCC_DWL_OUT (4 * MCC_DWL_LS) /* output line 0 from input line 0 */
#define MCC_DWL_SEG 28              /* outputs per segment: a pair reads bytes up to its first output + 3 */

typedef struct {
    int32_t lo, hi, full, zp;
} mcc_dwl_clamp;

/* Table words per channel: a size-first build's table (MCC_GEMM_NARROW) holds five, the weights as bytes (not
   doubled) and no rounding half: the bytes (w[0][0], w[0][2], w[1][0], w[1][2]), (w[2][0], w[2][2], w[0][1],
   w[1][1]), (w[2][1], shift), base, multiplier. */
#if defined(MCC_GEMM_NARROW)
#define MCC_DWL_WORDS 5
#else
#define MCC_DWL_WORDS 8
#endif

/* A channel's eight words (tw) from its table entry t (zp: the output zero point). */
MCC_DWL_INLINE const int32_t *mcc_dwl_words(const int32_t *t, int32_t zp, int32_t *tw) {
#if defined(MCC_GEMM_NARROW)
    const uint32_t a = (uint32_t)t[0], b = (uint32_t)t[1], e = (uint32_t)t[2];
#define MCC_DWL_B(v, i) ((uint32_t)((int32_t)(int8_t)(uint8_t)((v) >> (8 * (i))) * 2) & 0xFFFFu)
    const uint32_t r = (e >> 8) & 0xFFu;
    tw[0] = (int32_t)(MCC_DWL_B(a, 0) | MCC_DWL_B(a, 1) << 16);
    tw[1] = (int32_t)(MCC_DWL_B(a, 2) | MCC_DWL_B(a, 3) << 16);
    tw[2] = (int32_t)(MCC_DWL_B(b, 0) | MCC_DWL_B(b, 1) << 16);
    tw[3] = (int32_t)(MCC_DWL_B(b, 2) | MCC_DWL_B(b, 3) << 16);
    tw[4] = (int32_t)(r | MCC_DWL_B(e, 0) << 16);
#undef MCC_DWL_B
    tw[5] = t[3];
    tw[6] = t[4];
    tw[7] = (int32_t)((1u << (r - 1)) + ((uint32_t)zp << r));
    return tw;
#else
    (void)zp;
    (void)tw;
    return t;
#endif
}

static inline uint32_t mcc_dwl_rd(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void mcc_dwl_wr(void *p, uint32_t v) {
    memcpy(p, &v, 4);
}

/* Four words of four bytes each, transposed: byte j of out[i] is byte i of word j. */
MCC_DWL_INLINE void mcc_dwl_t4(uint32_t a, uint32_t b, uint32_t e, uint32_t f, uint32_t *o0, uint32_t *o1,
                               uint32_t *o2, uint32_t *o3) {
#if defined(__ARM_FEATURE_DSP)
    const uint32_t t0 = __uxtb16(a) | (__uxtb16(b) << 8);     /* a0 b0 a2 b2 */
    const uint32_t t1 = __uxtb16(a >> 8) | (b & 0xFF00FF00u); /* a1 b1 a3 b3 */
    const uint32_t u0 = __uxtb16(e) | (__uxtb16(f) << 8);
    const uint32_t u1 = __uxtb16(e >> 8) | (f & 0xFF00FF00u);
#else
    const uint32_t t0 = (a & 0x00FF00FFu) | ((b & 0x00FF00FFu) << 8);
    const uint32_t t1 = ((a >> 8) & 0x00FF00FFu) | (b & 0xFF00FF00u);
    const uint32_t u0 = (e & 0x00FF00FFu) | ((f & 0x00FF00FFu) << 8);
    const uint32_t u1 = ((e >> 8) & 0x00FF00FFu) | (f & 0xFF00FF00u);
#endif
#if defined(__ARM_FEATURE_DSP) && (defined(__GNUC__) || defined(__clang__))
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(*o0) : "r"(t0), "r"(u0));
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(*o2) : "r"(u0), "r"(t0));
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(*o1) : "r"(t1), "r"(u1));
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(*o3) : "r"(u1), "r"(t1));
#else
    *o0 = (t0 & 0xFFFFu) | (u0 << 16);
    *o2 = (t0 >> 16) | (u0 & 0xFFFF0000u);
    *o1 = (t1 & 0xFFFFu) | (u1 << 16);
    *o3 = (t1 >> 16) | (u1 & 0xFFFF0000u);
#endif
}

/* One input line of a block into line slot d (channel j's line at d + j * MCC_DWL_CS): bytes [0, k0) and [k1,
   kend) the zero point, bytes [k0, k1) the pixels src, src + step, ... (four channels each); src NULL: all zero
   point. The passes read no further than kend (k1 <= kend <= MCC_DWL_LS). Slots are filled in ascending order. */
static void mcc_dwl_fill(const int8_t *src, int32_t step, int32_t k0, int32_t k1, int32_t kend, uint32_t zp4,
                         int8_t *d) {
    if (src == NULL) {
        k1 = k0;
    }
    for (int32_t j = 0; j < 4; ++j) {
        mcc_dwl_wr(d + j * MCC_DWL_CS, zp4); /* the head (k0 <= 4); the copy below overwrites from k0 */
    }
    int32_t b = k0;
    for (; b + 4 <= k1; b += 4, src += 4 * step) {
        uint32_t c0, c1, c2, c3;
        mcc_dwl_t4(mcc_dwl_rd(src), mcc_dwl_rd(src + step), mcc_dwl_rd(src + 2 * step), mcc_dwl_rd(src + 3 * step),
                   &c0, &c1, &c2, &c3);
        mcc_dwl_wr(d + b, c0);
        mcc_dwl_wr(d + MCC_DWL_CS + b, c1);
        mcc_dwl_wr(d + 2 * MCC_DWL_CS + b, c2);
        mcc_dwl_wr(d + 3 * MCC_DWL_CS + b, c3);
    }
    for (; b < k1; ++b, src += step) {
        d[b] = src[0];
        d[MCC_DWL_CS + b] = src[1];
        d[2 * MCC_DWL_CS + b] = src[2];
        d[3 * MCC_DWL_CS + b] = src[3];
    }
    for (int32_t j = 0; j < 4; ++j) { /* whole words: up to 3 bytes past kend, the head of the next line slot, which
                                         is filled after this one (or is an output line) */
        for (int32_t i = b; i < kend; i += 4) {
            mcc_dwl_wr(d + j * MCC_DWL_CS + i, zp4);
        }
    }
}

/* The block's output lines at d (channel j's at d + j * MCC_DWL_CS), n outputs, to NHWC: output k's four bytes at
   o + k * step. */
static void mcc_dwl_store(const int8_t *d, int32_t n, int8_t *o, int32_t step) {
    int32_t k = 0;
    for (; k + 4 <= n; k += 4, o += 4 * step) {
        uint32_t p0, p1, p2, p3;
        mcc_dwl_t4(mcc_dwl_rd(d + k), mcc_dwl_rd(d + MCC_DWL_CS + k), mcc_dwl_rd(d + 2 * MCC_DWL_CS + k),
                   mcc_dwl_rd(d + 3 * MCC_DWL_CS + k), &p0, &p1, &p2, &p3);
        mcc_dwl_wr(o, p0);
        mcc_dwl_wr(o + step, p1);
        mcc_dwl_wr(o + 2 * step, p2);
        mcc_dwl_wr(o + 3 * step, p3);
    }
    for (; k < n; ++k, o += step) {
        o[0] = d[k];
        o[1] = d[MCC_DWL_CS + k];
        o[2] = d[2 * MCC_DWL_CS + k];
        o[3] = d[3 * MCC_DWL_CS + k];
    }
}

/* One requantized output of a doubled accumulator (tw: the channel's table words). */
MCC_DWL_INLINE int8_t mcc_dwl_q(int32_t acc2, int32_t m, int32_t half, int32_t r, const mcc_dwl_clamp *q,
                                const int FULL) {
#if defined(__ARM_FEATURE_DSP)
    int32_t t;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"(acc2), "r"(m), "r"(half));
#else
    const int32_t t = (int32_t)((((int64_t)acc2 * m) + (int64_t)half * ((int64_t)1 << 32) + 0x80000000LL) >> 32);
#endif
    const int32_t v = (t + (acc2 >> 31)) >> r;
#if defined(__ARM_FEATURE_DSP)
    return (int8_t)(FULL ? __ssat(v, 8) : mcc_clamp(v, q->lo, q->hi));
#else
    (void)FULL;
    return (int8_t)mcc_clamp(v, q->lo, q->hi);
#endif
}

#if defined(__ARM_FEATURE_DSP)
/* Two outputs' accumulators += one window line: its bytes x0..x3 at r, weights (w0, w2) and w1 in the bottom (TOP
   0) or top half of wm; the accumulators start from a0, a1. */
MCC_DWL_INLINE void mcc_dwl_row(const int8_t *r, int32_t w02, int32_t wm, const int TOP, int32_t *a0, int32_t *a1) {
    const uint32_t v = mcc_dwl_rd(r);
    int32_t xo;
    const int32_t xe = (int32_t)__sxtb16(v);
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(xo) : "r"(v));
    *a0 = __smlad(xe, w02, *a0);
    *a1 = __smlad(xo, w02, *a1);
    *a0 = TOP ? __smlabt(xo, wm, *a0) : __smlabb(xo, wm, *a0);
    *a1 = TOP ? __smlatt(xe, wm, *a1) : __smlatb(xe, wm, *a1);
}
#endif

/* Two outputs of one channel from its input lines r, r + LS, r + 2 LS into r + MCC_DWL_OUT (tw: its eight words,
   sh its shift). */
MCC_DWL_INLINE void mcc_dwl_pair(int8_t *r, int32_t w0, int32_t w1, int32_t w2, int32_t m01, int32_t m2s,
                                 int32_t base, int32_t m, int32_t half, int32_t sh, const mcc_dwl_clamp *q,
                                 const int FULL) {
    int32_t a0 = base, a1 = base;
#if defined(__ARM_FEATURE_DSP)
    mcc_dwl_row(r, w0, m01, 0, &a0, &a1);
    mcc_dwl_row(r + MCC_DWL_LS, w1, m01, 1, &a0, &a1);
    mcc_dwl_row(r + 2 * MCC_DWL_LS, w2, m2s, 1, &a0, &a1);
#else
    const int32_t ws[3] = {w0, w1, w2};
    const int32_t wm[3] = {(int16_t)(uint16_t)(uint32_t)m01, (int32_t)((uint32_t)m01 >> 16 ^ 0x8000u) - 0x8000,
                           (int32_t)((uint32_t)m2s >> 16 ^ 0x8000u) - 0x8000};
    for (int32_t k = 0; k < 3; ++k) {
        const int8_t *x = r + k * MCC_DWL_LS;
        const int32_t k0 = (int16_t)(uint16_t)(uint32_t)ws[k], k2 = (int32_t)((uint32_t)ws[k] >> 16 ^ 0x8000u) - 0x8000;
        a0 = mcc_add_wrap(a0, x[0] * k0 + x[1] * wm[k] + x[2] * k2);
        a1 = mcc_add_wrap(a1, x[1] * k0 + x[2] * wm[k] + x[3] * k2);
    }
#endif
    r[MCC_DWL_OUT] = mcc_dwl_q(a0, m, half, sh, q, FULL);
    r[MCC_DWL_OUT + 1] = mcc_dwl_q(a1, m, half, sh, q, FULL);
}

/* One channel's output line: n outputs, four at a time, then two (an odd n computes one more, from the padding,
   which is not stored; the fill covers the bytes it reads, mcc_dwl_kend). */
MCC_DWL_INLINE void mcc_dwl_pass(int8_t *r, const int32_t *tw, int32_t n, const mcc_dwl_clamp *q, const int FULL) {
    const int32_t w0 = tw[0], w1 = tw[1], w2 = tw[2], m01 = tw[3], m2s = tw[4], base = tw[5], m = tw[6],
                  half = tw[7];
    const int32_t sh = m2s & 0xFF;
    int8_t *end = r + n;
    for (; r + 2 < end; r += 4) {
        mcc_dwl_pair(r, w0, w1, w2, m01, m2s, base, m, half, sh, q, FULL);
#if defined(__GNUC__) || defined(__clang__)
        __asm__ volatile("" ::: "memory"); /* one pair after the other: interleaved, the two spill */
#endif
        mcc_dwl_pair(r + 2, w0, w1, w2, m01, m2s, base, m, half, sh, q, FULL);
    }
    if (r < end) {
        mcc_dwl_pair(r, w0, w1, w2, m01, m2s, base, m, half, sh, q, FULL);
    }
}

/* The block's two output lines from its four input lines in buf (tab: the block's table entries): n outputs each
   (the second line only when lines is 2). */
MCC_DWL_INLINE void mcc_dwl_block(int8_t *buf, const int32_t *tab, int32_t n, int32_t lines,
                                  const mcc_dwl_clamp *q, const int FULL) {
    for (int32_t j = 0; j < 4; ++j) {
        int8_t *r = buf + j * MCC_DWL_CS;
        int32_t words[8];
        const int32_t *tw = mcc_dwl_words(tab + MCC_DWL_WORDS * j, q->zp, words);
        mcc_dwl_pass(r, tw, n, q, FULL);
        if (lines > 1) {
            mcc_dwl_pass(r + MCC_DWL_LS, tw, n, q, FULL);
        }
    }
}

#define MCC_DWL_BLOCK(FULL)                                                                                        \
    static MCC_DWL_NOINLINE void mcc_dwl_block_##FULL(int8_t *buf, const int32_t *tw, int32_t n, int32_t lines,   \
                                                      const mcc_dwl_clamp *q) {                                    \
        mcc_dwl_block(buf, tw, n, lines, q, FULL);                                                                 \
    }
MCC_DWL_BLOCK(0)
#if defined(__ARM_FEATURE_DSP) && !defined(__OPTIMIZE_SIZE__) /* size-first builds: one instance */
MCC_DWL_BLOCK(1)
#endif
#undef MCC_DWL_BLOCK

static void mcc_dwl_compute(int8_t *buf, const int32_t *tw, int32_t n, int32_t lines, const mcc_dwl_clamp *q) {
#if defined(__ARM_FEATURE_DSP) && !defined(__OPTIMIZE_SIZE__)
    if (q->full) {
        mcc_dwl_block_1(buf, tw, n, lines, q);
        return;
    }
#endif
    mcc_dwl_block_0(buf, tw, n, lines, q);
}

static mcc_dwl_clamp mcc_dwl_clamp_of(const mcc_conv_params *p) {
    const mcc_dwl_clamp q = {p->act_min, p->act_max, p->act_min <= -128 && p->act_max >= 127, p->out_zp};
    return q;
}

static uint32_t mcc_dwl_zp4(const mcc_conv_params *p) {
    return ((uint32_t)(-p->in_offset) & 0xFFu) * 0x01010101u;
}

#if !defined(MCC_SIZE_FIRST) /* the raster kernel; a size-first build runs the compact one (below) */
/* One output pixel of the raster order from the table (rows the line path must not write yet). */
static void mcc_dwl_pixel(const mcc_conv_params *p, const int8_t *in, const int32_t *tab, int32_t oy, int32_t ox,
                          int8_t *o) {
    const mcc_dwl_clamp q = mcc_dwl_clamp_of(p);
    const int32_t C = p->in_c, zp = -p->in_offset;
    for (int32_t c = 0; c < C; ++c) {
        int32_t words[8];
        const int32_t *tw = mcc_dwl_words(tab + MCC_DWL_WORDS * c, p->out_zp, words);
        int32_t acc = tw[5];
        for (int32_t ky = 0; ky < 3; ++ky) {
            const int32_t iy = oy - p->pad_top + ky;
            const int32_t wr[3] = {(int16_t)(uint16_t)(uint32_t)tw[ky],
                                   ky == 0   ? (int16_t)(uint16_t)(uint32_t)tw[3]
                                   : ky == 1 ? (int32_t)((uint32_t)tw[3] >> 16 ^ 0x8000u) - 0x8000
                                             : (int32_t)((uint32_t)tw[4] >> 16 ^ 0x8000u) - 0x8000,
                                   (int32_t)((uint32_t)tw[ky] >> 16 ^ 0x8000u) - 0x8000};
            for (int32_t kx = 0; kx < 3; ++kx) {
                const int32_t ix = ox - p->pad_left + kx;
                const int32_t x = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w
                                      ? in[((size_t)iy * p->in_w + ix) * C + c]
                                      : zp; /* the padding: the folded offset cancels it */
                acc = mcc_add_wrap(acc, x * wr[kx]);
            }
        }
        o[c] = mcc_dwl_q(acc, tw[6], tw[7], tw[4] & 0xFF, &q, 0);
    }
}

#endif

/* The bytes a block's passes read along a line of n outputs: a pair from output x reads bytes x..x+3. */
static inline int32_t mcc_dwl_kend(int32_t n) {
    const int32_t k = ((n - 1) & ~1) + 4;
    return k < MCC_DWL_LS ? k : MCC_DWL_LS;
}

#if !defined(MCC_SIZE_FIRST)
/* Whether output rows oy..oy+lines-1 may take the line path when the input starts k pixels (k * C bytes, k > 0)
   above the output: each block writes only its own channels, which then land on the input pixel k before; that
   pixel must not be one the block still reads: in a later pair (rows from oy + lines - pt on), or in a later
   segment of this pair (rows oy - pt .. oy - pt + lines + 1, columns from the segment's end - pl on). */
static int mcc_dwl_same_block(const mcc_conv_params *p, int32_t oy, int32_t lines, int32_t seg, int32_t k) {
    const int32_t W = p->in_w, OW = p->out_w, pt = p->pad_top, pl = p->pad_left;
    for (int32_t x0 = 0; x0 < OW; x0 += seg) {
        const int32_t n = OW - x0 < seg ? OW - x0 : seg;
        for (int32_t i = 0; i < lines; ++i) {
            const int32_t m_lo = (oy + i) * OW + x0 - k, m_hi = m_lo + n; /* the input pixels written on */
            if (m_hi <= 0) { /* all below the input */
                continue;
            }
            if (m_hi > (oy + lines - pt) * W) {
                return 0;
            }
            if (x0 + n < OW && m_hi > (oy - pt) * W) {
                const int32_t r = (m_hi - 1) / W;
                if (m_lo < r * W || m_hi - 1 - r * W >= x0 + n - pl) {
                    return 0;
                }
            }
        }
    }
    return 1;
}

void mcc_depthwise_conv2d_s8_lines(const mcc_dw_fast_params *p, const int8_t *in, const int32_t *tab, int8_t *out) {
    const int32_t H = p->in_h, W = p->in_w, C = p->in_c, OH = p->out_h, OW = p->out_w;
    const int32_t pt = p->pad_top, pl = p->pad_left;
    const mcc_dwl_clamp q = mcc_dwl_clamp_of(p);
    const uint32_t zp4 = mcc_dwl_zp4(p);
    uint32_t words[MCC_DWL_CS]; /* four channels of MCC_DWL_CS bytes */
    int8_t *buf = (int8_t *)words;
    const int32_t segs = (OW + MCC_DWL_SEG - 1) / MCC_DWL_SEG;
    const int32_t seg = ((OW + segs - 1) / segs + 1) & ~1;
    const uintptr_t in_end = (uintptr_t)(in + (size_t)H * W * C);
    /* the input k whole pixels above the output (0: not so) */
    const uintptr_t gap = (uintptr_t)in - (uintptr_t)out;
    const int32_t k = (uintptr_t)in > (uintptr_t)out && gap % (uintptr_t)C == 0 && gap / (uintptr_t)C <= (uintptr_t)H * W
                          ? (int32_t)(gap / (uintptr_t)C)
                          : 0;
    for (int32_t oy = 0; oy < OH; oy += 2) {
        const int32_t lines = OH - oy < 2 ? OH - oy : 2;
        int8_t *orow = out + (size_t)oy * OW * C;
        const int32_t first = oy - pt > 0 ? oy - pt : 0; /* the lowest input row these rows and the later ones read */
        const uintptr_t lo = (uintptr_t)orow, hi = (uintptr_t)(orow + (size_t)lines * OW * C);
        if (!(hi <= (uintptr_t)(in + (size_t)first * W * C) || lo >= in_end ||
              (k > 0 && mcc_dwl_same_block(p, oy, lines, seg, k)))) {
            for (int32_t i = 0; i < lines; ++i) { /* raster order, pixel by pixel */
                for (int32_t ox = 0; ox < OW; ++ox) {
                    mcc_dwl_pixel(p, in, tab, oy + i, ox, orow + ((size_t)i * OW + ox) * C);
                }
            }
            continue;
        }
        for (int32_t x0 = 0; x0 < OW; x0 += seg) {
            const int32_t n = OW - x0 < seg ? OW - x0 : seg;
            /* buffer byte b: input column x0 - pl + b, valid for b in [k0, k1) */
            const int32_t c0 = x0 - pl, k0 = c0 < 0 ? -c0 : 0;
            const int32_t k1 = W - c0 < MCC_DWL_LS ? W - c0 : MCC_DWL_LS, kend = mcc_dwl_kend(n);
            for (int32_t c = 0; c < C; c += 4) {
                for (int32_t l = 0; l < 4; ++l) {
                    const int32_t iy = oy - pt + l;
                    const int8_t *src = iy >= 0 && iy < H && l < lines + 2
                                            ? in + ((size_t)iy * W + c0 + k0) * C + c
                                            : NULL;
                    mcc_dwl_fill(src, C, k0, k1 < kend ? k1 : kend, kend, zp4, buf + l * MCC_DWL_LS);
                }
                mcc_dwl_compute(buf, tab + MCC_DWL_WORDS * c, n, lines, &q);
                for (int32_t i = 0; i < lines; ++i) {
                    mcc_dwl_store(buf + MCC_DWL_OUT + i * MCC_DWL_LS, n, orow + ((size_t)i * OW + x0) * C + c, C);
                }
            }
        }
    }
}

#else
/* A size-first build: the compact 3x3 stride-1 kernel of mcc_depthwise.c (the same raster order and overlap
   contract); tab holds the arrays it takes one after another: the bias (C words), the weights as bytes (9 * C / 4
   words, C a multiple of 4) and the packed requantization (backends/c/emitters/compute.py
   depthwise_lines_size_first). */
void mcc_depthwise_conv2d_s8_lines(const mcc_dw_fast_params *p, const int8_t *in, const int32_t *tab, int8_t *out) {
    const int32_t C = p->in_c;
    mcc_depthwise_conv2d_s8_k3s1(p, in, tab + C, tab, tab + C + 9 * (C / 4), out);
}
#endif

void mcc_depthwise_conv2d_s8_lines_inplace(const mcc_conv_params *p, const int8_t *in, const int32_t *tab,
                                           int8_t *out, int32_t cols) {
    const int32_t C = p->in_c;
    /* line i's pixel k at i * in_line + k * in_step (output: out_line, out_step); L pixels along, n_in lines */
    const int32_t in_line = cols ? C : p->in_w * C, in_step = cols ? p->in_w * C : C;
    const int32_t out_line = cols ? C : p->out_w * C, out_step = cols ? p->out_w * C : C;
    const int32_t L = cols ? p->in_h : p->in_w, OL = cols ? p->out_h : p->out_w;
    const int32_t n_in = cols ? p->in_w : p->in_h, n_out = cols ? p->out_w : p->out_h;
    const int32_t pad = cols ? p->pad_left : p->pad_top, along = cols ? p->pad_top : p->pad_left;
    const mcc_dwl_clamp q = mcc_dwl_clamp_of(p);
    const uint32_t zp4 = mcc_dwl_zp4(p);
    uint32_t words[MCC_DWL_CS];
    int8_t *buf = (int8_t *)words;
    const int32_t kend = mcc_dwl_kend(OL), k1 = along + L < kend ? along + L : kend;
    for (int32_t c = 0; c < C; c += 4) {
        for (int32_t l = 0; l < 2; ++l) {
            const int32_t i = l - pad;
            mcc_dwl_fill(i >= 0 && i < n_in ? in + (size_t)i * in_line + c : NULL, in_step, along, k1, kend, zp4,
                         buf + l * MCC_DWL_LS);
        }
        for (int32_t o = 0; o < n_out; o += 2) {
            const int32_t lines = n_out - o < 2 ? n_out - o : 2;
            for (int32_t l = 2; l < 4; ++l) {
                const int32_t i = o + l - pad;
                mcc_dwl_fill(i >= 0 && i < n_in ? in + (size_t)i * in_line + c : NULL, in_step, along, k1, kend, zp4,
                             buf + l * MCC_DWL_LS);
            }
            mcc_dwl_compute(buf, tab + MCC_DWL_WORDS * c, OL, lines, &q);
            for (int32_t i = 0; i < lines; ++i) {
                mcc_dwl_store(buf + MCC_DWL_OUT + i * MCC_DWL_LS, OL, out + (size_t)(o + i) * out_line + c,
                              out_step);
            }
            for (int32_t j = 0; j < 4; ++j) { /* input lines 2, 3 become 0, 1 */
                uint32_t *w = words + j * (MCC_DWL_CS / 4);
                for (int32_t i = 0; i < MCC_DWL_LS / 2; ++i) {
                    w[i] = w[i + MCC_DWL_LS / 2];
                }
            }
        }
    }
}
