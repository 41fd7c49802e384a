/*
 * tb_dtype.h - the tensor element types Turbine's engines compute with, and their storage.
 *
 * F32, F16 (IEEE half), BF16 (bfloat16) are stored one element after another, little-endian.
 * The quantized types store blocks of 32 elements, exactly as GGUF/ggml do:
 *   Q8_0: 34 bytes = f16 scale d, then 32 int8 q;         value[i] = q[i] * d
 *   Q4_0: 18 bytes = f16 scale d, then 16 bytes of nibbles; byte j holds element j in its low
 *         nibble and element j + 16 in its high nibble;   value = (nibble - 8) * d
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
    TB_DTYPE_COUNT
} tb_dtype_t;

#define TB_QK 32 /* elements per quantized block */

/* Lower-case name ("f32", "q8_0"), or "?" for a value out of range. */
const char *tb_dtype_name(tb_dtype_t t);

/* Parses a name as printed by tb_dtype_name (case-insensitive); false when unknown. */
bool tb_dtype_from_name(const char *name, tb_dtype_t *out);

/* Elements per storage block: 1 for F32/F16/BF16, 32 for Q8_0/Q4_0 (0 when out of range). */
size_t tb_dtype_block_elems(tb_dtype_t t);

/* Bytes per storage block: 4, 2, 2, 34, 18 (0 when out of range). */
size_t tb_dtype_block_bytes(tb_dtype_t t);

/* True for the block-quantized types. */
bool tb_dtype_is_quantized(tb_dtype_t t);

/* Byte size of `n` elements: 0 on success; TB_EINVAL when `n` is not a whole number of blocks,
 * TB_ERANGE when the size overflows 64 bits. */
int tb_dtype_bytes(tb_dtype_t t, uint64_t n, uint64_t *out);

/* Scalar conversions (round-to-nearest-even for the narrowing ones; NaN stays NaN). */
float tb_f16_to_f32(uint16_t h);
uint16_t tb_f32_to_f16(float f);
float tb_bf16_to_f32(uint16_t b);
uint16_t tb_f32_to_bf16(float f);

/* Converts `n` elements stored as `t` at `src` to floats at `dst` (a plain reference loop, for
 * tools and tests; engines have their own kernels).  `n` must be a whole number of blocks for
 * the quantized types, else TB_EINVAL and nothing is written.  Returns 0 on success. */
int tb_dtype_to_f32(tb_dtype_t t, const void *src, float *dst, uint64_t n);

#ifdef __cplusplus
}
#endif

#endif /* TB_DTYPE_H */
