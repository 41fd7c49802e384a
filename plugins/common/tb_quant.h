/*
 * tb_quant.h - GGUF's quantized block formats as C structs, their reference decoders, and the
 * 8-bit activation blocks the integer dot products of tb_quant_dot.h multiply them with.
 *
 * The weight blocks are the bytes of a GGUF file, exactly (tb_dtype.h documents every layout
 * and formula; ggml's block_* structs are the source of truth).  Every member is a byte array,
 * so a block needs no alignment and reads the same on any host: f16 fields are two
 * little-endian bytes, read with tb_quant_f16().
 *
 * Activations (the vector a weight row is multiplied with) are quantized per row into one of
 * two in-memory formats, chosen by the weight type (tb_quant_act_for):
 *   TB_QUANT_ACT_Q8_32: blocks of 32 for the 32-element types: f32 d, int32 sum = sum of qs,
 *       f32 s, int8 qs[32]; value = qs[i] * d.  The exact sum serves the zero points of Q4_0 /
 *       Q5_0, s the min of Q4_1 / Q5_1 (a block's min times s).  ggml pairs these types with
 *       its Q8_0 and Q8_1, which store d and Q8_1's s = d * sum as f16: d and s here are those
 *       f16 values too (the quants and s computed with the f32 scale, as ggml does), so a file
 *       gives llama.cpp's products.
 *   TB_QUANT_ACT_Q8_K: ggml's block_q8_K, for the K-quants and IQ4_XS: f32 d, int8 qs[256],
 *       int16 bsums[16] (the sums of each 16 consecutive qs, used by the types with mins).
 * Both are symmetric and quantize as ggml's activation quantizers do on x86:
 * qs = round-half-even(x * (127 / max|x|)) over the block, in [-127, 127]; the scale is
 * d = max|x| / 127 for Q8_32 (then rounded to f16 by tb_quant_act_scale_f16), 1 / (127 / max|x|)
 * for Q8_K (quantize_row_q8_K's; the two differ in the last bit now and then, which is enough to
 * move a later rounding).  A block whose max|x| is zero or not finite has d = 0 and zero quants.
 * These are in-memory formats, never read from a file.
 *
 * Thread-safety: every function here is pure.
 */
#ifndef TB_QUANT_H
#define TB_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "tb_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- weight blocks (file format) --------------------------------------------------------- */

struct tb_block_q4_0 {
    uint8_t d[2];
    uint8_t qs[TB_QK / 2];
};

struct tb_block_q4_1 {
    uint8_t d[2];
    uint8_t m[2];
    uint8_t qs[TB_QK / 2];
};

struct tb_block_q5_0 {
    uint8_t d[2];
    uint8_t qh[4];
    uint8_t qs[TB_QK / 2];
};

struct tb_block_q5_1 {
    uint8_t d[2];
    uint8_t m[2];
    uint8_t qh[4];
    uint8_t qs[TB_QK / 2];
};

struct tb_block_q8_0 {
    uint8_t d[2];
    int8_t qs[TB_QK];
};

struct tb_block_iq4_nl {
    uint8_t d[2];
    uint8_t qs[TB_QK / 2];
};

struct tb_block_q2_k {
    uint8_t scales[TB_QK_K / 16]; /* low nibble: scale, high nibble: min, per 16 elements */
    uint8_t qs[TB_QK_K / 4];
    uint8_t d[2];
    uint8_t dmin[2];
};

struct tb_block_q3_k {
    uint8_t hmask[TB_QK_K / 8];
    uint8_t qs[TB_QK_K / 4];
    uint8_t scales[12]; /* 16 six-bit scales */
    uint8_t d[2];
};

struct tb_block_q4_k {
    uint8_t d[2];
    uint8_t dmin[2];
    uint8_t scales[12]; /* 8 six-bit scales and 8 six-bit mins */
    uint8_t qs[TB_QK_K / 2];
};

struct tb_block_q5_k {
    uint8_t d[2];
    uint8_t dmin[2];
    uint8_t scales[12];
    uint8_t qh[TB_QK_K / 8];
    uint8_t qs[TB_QK_K / 2];
};

struct tb_block_q6_k {
    uint8_t ql[TB_QK_K / 2];
    uint8_t qh[TB_QK_K / 4];
    int8_t scales[TB_QK_K / 16];
    uint8_t d[2];
};

struct tb_block_iq4_xs {
    uint8_t d[2];
    uint8_t scales_h[2];
    uint8_t scales_l[TB_QK_K / 64];
    uint8_t qs[TB_QK_K / 2];
};

/* ---- activation blocks (memory only) ------------------------------------------------------ */

struct tb_block_q8_32 {
    float d;
    int32_t sum; /* exact: the zero points of Q4_0 / Q5_0 */
    float s;     /* the min term's factor for Q4_1 / Q5_1: (f32 d) * sum rounded to f16, as
                  * ggml's block_q8_1 stores it (kept exact where f16 would overflow) */
    int8_t qs[TB_QK];
};

struct tb_block_q8_k {
    float d;
    int8_t qs[TB_QK_K];
    int16_t bsums[TB_QK_K / 16];
};

typedef enum {
    TB_QUANT_ACT_NONE = 0, /* not a quantized weight type: multiply with f32 */
    TB_QUANT_ACT_Q8_32,
    TB_QUANT_ACT_Q8_K,
} tb_quant_act_t;

/* The 16 values of IQ4_NL and IQ4_XS's non-linear 4-bit code. */
extern const int8_t tb_quant_iq4_values[16];

/* The f16 at `p` (two little-endian bytes, any alignment) as a float. */
float tb_quant_f16(const uint8_t p[2]);

/* Scale and min of sub-block `s` (0..7) of a Q4_K / Q5_K block's 12 packed bytes (inline: the
 * SIMD kernels call it once per sub-block). */
static inline void tb_quant_k_scale_min(const uint8_t scales[12], int s, uint8_t *sc, uint8_t *m)
{
    if (s < 4) {
        *sc = scales[s] & 63;
        *m = scales[s + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[s + 4] & 15) | ((scales[s - 4] >> 6) << 4));
        *m = (uint8_t)((scales[s + 4] >> 4) | ((scales[s] >> 6) << 4));
    }
}

/* The 6-bit scale of group `g` (0..15) of a Q3_K block's 12 packed bytes, minus 32. */
int tb_quant_q3_k_scale(const uint8_t scales[12], int g);

/* The 6-bit scale of sub-block `s` (0..7) of an IQ4_XS block, minus 32. */
int tb_quant_iq4_xs_scale(const struct tb_block_iq4_xs *b, int s);

/* One weight block as integers: every type's value is
 *     value[i] = (d * sc[g]) * code[i] - (dmin * mn[g]),   g = i / group
 * evaluated in f32 in that order (tb_dtype.h's formulas, rearranged exactly: for Q4_1 / Q5_1
 * sc = 1, mn = 1 and dmin = -m; types without a min have dmin = 0 and mn = 0).  The integer
 * dot products work on this form: sum(code * qa) per group, scaled once per group. */
struct tb_quant_unpacked {
    float d;
    float dmin;
    int n;                    /* elements: 32 or 256 */
    int group;                /* elements per scale: 16 or 32 */
    int8_t code[TB_QK_K];     /* the signed code of each element (IQ4: the table value) */
    int16_t sc[TB_QK_K / 16]; /* per group: integer scale (signed for Q3_K, Q6_K, IQ4_XS) */
    int16_t mn[TB_QK_K / 16]; /* per group: integer min (0 for the types without one) */
};

/* Unpacks the block of quantized type `t` at `block` (any alignment) into `*u`.  TB_EINVAL
 * when `t` is not a quantized type; 0 on success. */
int tb_quant_unpack(tb_dtype_t t, const void *block, struct tb_quant_unpacked *u);

/* Decodes `n` elements of quantized type `t` at `src` (any alignment) into `dst`, bit-exactly
 * as tb_dtype.h's formulas say.  TB_EINVAL when `t` is not a quantized type or `n` is not a
 * whole number of its blocks (nothing written); 0 on success. */
int tb_quant_dequantize(tb_dtype_t t, const void *src, float *dst, uint64_t n);

/* The activation format a weight row of type `t` is multiplied with; TB_QUANT_ACT_NONE for the
 * float types and values out of range. */
tb_quant_act_t tb_quant_act_for(tb_dtype_t t);

/* Elements and bytes per block of activation format `a` (0 for TB_QUANT_ACT_NONE). */
size_t tb_quant_act_block_elems(tb_quant_act_t a);
size_t tb_quant_act_block_bytes(tb_quant_act_t a);

/* The stored scale of a 32-value activation block whose f32 scale is d = max|x| / 127: d rounded
 * to f16 (nearest even), as ggml's block_q8_0 / block_q8_1 store it, so that a file gives
 * llama.cpp's products; d itself where that is not a normal f16 below 65504 (ggml would lose
 * precision or overflow there; never for activations of usual magnitudes). */
float tb_quant_act_scale_f16(float d);
/* A 32-value activation block's s for the types with a min: d * sum with the f32 scale d, rounded
 * to f16 (nearest even) as ggml's block_q8_1 stores it; d * sum itself where f16 would overflow. */
float tb_quant_act_sum_f16(float d, int32_t sum);
/* The rule shared by every path that stores that scale: `h` (d rounded to f16 and back) where it
 * is a normal f16, else d itself. */
static inline float tb_quant_act_scale_pick(float h, float d)
{
    return h >= 0x1p-14f && h < 65504.0f ? h : d;
}

/* Quantizes `n` floats at `x` into activation blocks at `dst` (n / elems blocks, caller owns
 * the memory, which needs the alignment of float).  TB_EINVAL when `a` is NONE or `n` is not a
 * whole number of blocks; 0 on success.  Non-finite inputs give unspecified (but defined)
 * quants. */
int tb_quant_act_quantize(tb_quant_act_t a, const float *x, void *dst, uint64_t n);

/* Decodes `n` activation values back into floats (qs * d), for tests. */
int tb_quant_act_to_f32(tb_quant_act_t a, const void *src, float *dst, uint64_t n);

#ifdef __cplusplus
}
#endif

#endif /* TB_QUANT_H */
