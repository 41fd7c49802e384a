/*
 * tb_quant_kernels.c - picks the SIMD table of tb_quant_kernels.h for this CPU.  The AVX2 and
 * AVX-512 files are compiled with their own -m flags (plugins/common/SConscript) and only
 * called after the runtime check here, so one build runs on any x86-64 machine.
 */
#include "tb_quant_kernels.h"

#include <stddef.h>

#include "tb_errors.h"
#include "tb_quant_dot.h"
#include "tb_quant_kernels_impl.h"

static const struct tb_quant_kernels s_generic = {TB_QUANT_ISA_GENERIC, "generic", tb_quant_dot};

/* A table's dot product through `ops`. */
static int s_k_dot(const struct tb_quant_k_ops *ops, tb_dtype_t t, const void *w, const void *act,
                   uint64_t n, float *out)
{
    tb_quant_act_t at = tb_quant_act_for(t);
    if (at == TB_QUANT_ACT_NONE || n % tb_dtype_block_elems(t) != 0) {
        return TB_EINVAL;
    }
    uint64_t nb = n / tb_dtype_block_elems(t);
    if (at == TB_QUANT_ACT_Q8_32) {
        *out = ops->q32(t, w, act, nb);
        return 0;
    }
    switch (t) {
    case TB_DTYPE_Q2_K:
    case TB_DTYPE_Q3_K:
        *out = ops->q23_k(w, act, nb, t == TB_DTYPE_Q3_K);
        break;
    case TB_DTYPE_Q4_K:
    case TB_DTYPE_Q5_K:
        *out = ops->q45_k(w, act, nb, t == TB_DTYPE_Q5_K);
        break;
    case TB_DTYPE_Q6_K:
        *out = ops->q6_k(w, act, nb);
        break;
    default: /* IQ4_XS */
        *out = ops->iq4_xs(w, act, nb);
        break;
    }
    return 0;
}

#if defined(__x86_64__)
static int s_dot_avx2(tb_dtype_t t, const void *w, const void *act, uint64_t n, float *out)
{
    return s_k_dot(&tb_quant_k_ops_avx2, t, w, act, n, out);
}

static int s_dot_avx512(tb_dtype_t t, const void *w, const void *act, uint64_t n, float *out)
{
    return s_k_dot(&tb_quant_k_ops_avx512, t, w, act, n, out);
}

static const struct tb_quant_kernels s_avx2 = {TB_QUANT_ISA_AVX2, "avx2", s_dot_avx2};
static const struct tb_quant_kernels s_avx512 = {TB_QUANT_ISA_AVX512, "avx512", s_dot_avx512};
#endif

const struct tb_quant_kernels *tb_quant_kernels_for(tb_quant_isa_t isa)
{
    switch (isa) {
    case TB_QUANT_ISA_GENERIC:
        return &s_generic;
#if defined(__x86_64__)
    case TB_QUANT_ISA_AVX2:
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
            __builtin_cpu_supports("f16c")) {
            return &s_avx2;
        }
        return NULL;
    case TB_QUANT_ISA_AVX512:
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
            return &s_avx512;
        }
        return NULL;
#endif
    default:
        return NULL;
    }
}

const struct tb_quant_kernels *tb_quant_kernels_best(void)
{
    for (int i = TB_QUANT_ISA_COUNT - 1; i > 0; i--) {
        const struct tb_quant_kernels *k = tb_quant_kernels_for((tb_quant_isa_t)i);
        if (k) {
            return k;
        }
    }
    return &s_generic;
}
