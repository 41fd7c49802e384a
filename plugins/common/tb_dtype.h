/*
 * tb_dtype.h - the tensor element types Turbine's model files carry, and their storage.
 *
 * F32, F16 (IEEE half), BF16 (bfloat16) are stored one element after another, little-endian.
 * The quantized types are GGUF/ggml's blocks, byte for byte (the source of truth is ggml's
 * block_* structs; tb_quant.h repeats them as C structs and decodes them).  "f16" below is an
 * IEEE half, little-endian; "element e" counts from the block's first element; all bit fields
 * are unsigned unless said otherwise.  ggml's type number is in brackets.
 *
 * Blocks of 32 elements:
 *   Q4_0 [2]   18 B: f16 d, qs[16].  Byte j holds element j in its low nibble and element
 *              j + 16 in its high nibble.                        value = (q - 8) * d
 *   Q4_1 [3]   20 B: f16 d, f16 m, qs[16] (nibbles as Q4_0).     value = q * d + m
 *   Q5_0 [6]   22 B: f16 d, qh[4], qs[16].  q = nibble (as Q4_0) | bit e of the little-endian
 *              32-bit qh << 4.                                    value = (q - 16) * d
 *   Q5_1 [7]   24 B: f16 d, f16 m, qh[4], qs[16] (q as Q5_0).    value = q * d + m
 *   Q8_0 [8]   34 B: f16 d, int8 qs[32].                          value = qs[e] * d
 *   IQ4_NL [20] 18 B: f16 d, qs[16] (nibbles as Q4_0).            value = d * K[q]
 *              K = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
 *
 * Super-blocks of 256 elements (the "K-quants"):
 *   Q2_K [10]  84 B: scales[16], qs[64], f16 d, f16 dmin.  Element e = 128n + 32j + l
 *              (n < 2, j < 4, l < 32): q = (qs[32n + l] >> 2j) & 3.  Group g = e / 16 has
 *              sc = scales[g] & 15, m = scales[g] >> 4.       value = (d * sc) * q - (dmin * m)
 *   Q3_K [11] 110 B: hmask[32], qs[64], scales[12], f16 d.  Element e = 128n + 32j + l:
 *              q = ((qs[32n + l] >> 2j) & 3) - 4 unless bit (e / 32) of hmask[l] is set.
 *              Group g = e / 16 has a 6-bit scale: low 4 bits are the (g < 8 ? low : high)
 *              nibble of scales[g % 8], high 2 bits are (scales[8 + g % 4] >> 2 (g / 4)) & 3.
 *                                                              value = (d * (sc - 32)) * q
 *   Q4_K [12] 144 B: f16 d, f16 dmin, scales[12], qs[128].  Element e = 64n + 32k + l
 *              (n < 4, k < 2, l < 32): q = (qs[32n + l] >> 4k) & 15, in sub-block s = e / 32.
 *              6-bit scale and min of sub-block s ("packed 12 bytes"):
 *                s < 4: sc = scales[s] & 63, m = scales[s + 4] & 63;
 *                s >= 4: sc = (scales[s + 4] & 15) | (scales[s - 4] >> 6) << 4,
 *                        m = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4.
 *                                                              value = (d * sc) * q - (dmin * m)
 *   Q5_K [13] 176 B: f16 d, f16 dmin, scales[12], qh[32], qs[128].  As Q4_K, with
 *              q |= ((qh[l] >> (e / 32)) & 1) << 4 (l = e % 32).
 *   Q6_K [14] 210 B: ql[128], qh[64], int8 scales[16], f16 d.  Element e = 128n + 64k + i
 *              (n < 2, k < 2, i < 64) has low 4 bits (ql[64n + i] >> 4k) & 15; element
 *              e = 128n + 32j + l (j < 4, l < 32) has high 2 bits (qh[32n + l] >> 2j) & 3;
 *              q = those 6 bits - 32, group g = e / 16.     value = (d * scales[g]) * q
 *   IQ4_XS [23] 136 B: f16 d, u16 scales_h (little-endian), scales_l[4], qs[128].  Sub-block
 *              s = e / 32 holds its 32 elements like one IQ4_NL block in qs[16s..16s + 15];
 *              ls = ((scales_l[s / 2] >> 4 (s % 2)) & 15) | ((scales_h >> 2s) & 3) << 4.
 *                                                              value = (d * (ls - 32)) * K[q]
 *
 * The value formulas are evaluated in f32 in exactly the order written (that is the order of
 * the reference dequantizers of the `gguf` Python package, which the tests compare against bit
 * for bit).  Everything else ggml knows (Q8_1, Q8_K: activation formats, see tb_quant.h; the
 * IQ1/IQ2/IQ3 grids; TQ*; I8..I64, F64) is not a model-file type here.
 *
 * Thread-safety: every function here is pure.
 */
#ifndef TB_DTYPE_H
#define TB_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TB_DTYPE_F32 = 0,
    TB_DTYPE_F16 = 1,
    TB_DTYPE_BF16 = 2,
    TB_DTYPE_Q8_0 = 3,
    TB_DTYPE_Q4_0 = 4,
    TB_DTYPE_Q4_1 = 5,
    TB_DTYPE_Q5_0 = 6,
    TB_DTYPE_Q5_1 = 7,
    TB_DTYPE_IQ4_NL = 8,
    TB_DTYPE_Q2_K = 9,
    TB_DTYPE_Q3_K = 10,
    TB_DTYPE_Q4_K = 11,
    TB_DTYPE_Q5_K = 12,
    TB_DTYPE_Q6_K = 13,
    TB_DTYPE_IQ4_XS = 14,
    TB_DTYPE_COUNT
} tb_dtype_t;

#define TB_QK 32    /* elements per block of the 32-element types */
#define TB_QK_K 256 /* elements per super-block of the K-quants and IQ4_XS */

/* Lower-case name ("f32", "q8_0", "q4_k", "iq4_xs"), or "?" for a value out of range. */
const char *tb_dtype_name(tb_dtype_t t);

/* Parses a name as printed by tb_dtype_name (case-insensitive); false when unknown. */
bool tb_dtype_from_name(const char *name, tb_dtype_t *out);

/* The type stored as ggml type number `ggml_type` in a GGUF file; false for every ggml type
 * that is not one of tb_dtype_t (the caller names the tensor and type in its error). */
bool tb_dtype_from_ggml(uint32_t ggml_type, tb_dtype_t *out);

/* ggml's type number of `t` (the bracketed numbers above); UINT32_MAX when out of range. */
uint32_t tb_dtype_ggml_type(tb_dtype_t t);

/* Elements per storage block: 1 for F32/F16/BF16, 32 (TB_QK) for Q4_0 .. IQ4_NL, 256 (TB_QK_K)
 * for the K-quants and IQ4_XS; 0 when out of range. */
size_t tb_dtype_block_elems(tb_dtype_t t);

/* Bytes per storage block (the sizes listed above; 4, 2, 2 for F32, F16, BF16); 0 when out of
 * range. */
size_t tb_dtype_block_bytes(tb_dtype_t t);

/* True for the block-quantized types (every type with more than one element per block). */
bool tb_dtype_is_quantized(tb_dtype_t t);

/* Byte size of `n` elements: 0 on success; TB_EINVAL when `t` is out of range or `n` is not a
 * whole number of blocks (a row of a quantized matrix must be: blocks never straddle rows),
 * TB_ERANGE when the size overflows 64 bits. */
int tb_dtype_bytes(tb_dtype_t t, uint64_t n, uint64_t *out);

/* Scalar conversions (round-to-nearest-even for the narrowing ones; NaN stays NaN). */
float tb_f16_to_f32(uint16_t h);
uint16_t tb_f32_to_f16(float f);
float tb_bf16_to_f32(uint16_t b);
uint16_t tb_f32_to_bf16(float f);

/* Converts `n` elements stored as `t` at `src` to floats at `dst` (the reference decoders of
 * tb_quant.h for the quantized types: plain loops for tools, tests and as the definition the
 * engines' kernels are tested against).  `n` must be a whole number of blocks for the quantized
 * types, else TB_EINVAL and nothing is written.  `src` needs no alignment.  Returns 0. */
int tb_dtype_to_f32(tb_dtype_t t, const void *src, float *dst, uint64_t n);

#ifdef __cplusplus
}
#endif

#endif /* TB_DTYPE_H */
