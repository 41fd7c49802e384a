/*
 * tb_quant_kernels.h - SIMD versions of tb_quant_dot, one table per instruction set, kept
 * beside the reference they are tested against; the cpu engine's matmuls of these types call
 * them (plugins/engine/cpu/tb_cpu_quant.c).  No packed or interleaved weight layout yet: the
 * rows are read as the file stores them.
 *
 * Each path computes the integer part of every block exactly and then the same f32 expression
 * per block as tb_quant_dot, in the same order, so its results equal the reference's bit for
 * bit (tests/unit/common/test_quant_kernels.c checks every path the CPU has, forced one by one).
 * Every quantized type has a SIMD path: the K-quants and IQ4_XS (Q8_K activations) one per
 * instruction set; the 32-element types (Q8_32 activations, one block per 256-bit register) an
 * AVX2 one, which the AVX-512 table uses as well.
 *
 * Thread-safety: the tables are constant; the functions are pure.
 */
#ifndef TB_QUANT_KERNELS_H
#define TB_QUANT_KERNELS_H

#include <stdint.h>

#include "tb_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TB_QUANT_ISA_GENERIC = 0, /* portable C: the reference itself */
    TB_QUANT_ISA_AVX2,        /* AVX2 + FMA + F16C */
    TB_QUANT_ISA_AVX512,      /* AVX-512 F, BW, VL, DQ */
    TB_QUANT_ISA_COUNT
} tb_quant_isa_t;

struct tb_quant_kernels {
    tb_quant_isa_t isa;
    const char *name; /* "generic", "avx2", "avx512" */
    /* As tb_quant_dot: the dot product of `n` weights of type `t` at `w` with the activation
     * blocks at `act` (tb_quant_act_for(t)); 0, or TB_EINVAL as tb_quant_dot. */
    int (*dot)(tb_dtype_t t, const void *w, const void *act, uint64_t n, float *out);
};

/* The table for `isa`, or NULL when this build or this CPU cannot run it. */
const struct tb_quant_kernels *tb_quant_kernels_for(tb_quant_isa_t isa);

/* The best table this CPU runs (never NULL). */
const struct tb_quant_kernels *tb_quant_kernels_best(void);

#ifdef __cplusplus
}
#endif

#endif /* TB_QUANT_KERNELS_H */
