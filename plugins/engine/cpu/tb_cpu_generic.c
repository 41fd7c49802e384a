/*
 * tb_cpu_generic.c - the portable kernels: plain C for CPUs without AVX2 (and for any other
 * architecture).  Same algorithms and the same activation quantization as the SIMD paths, only
 * one value at a time.
 *
 * Quantized-activation row layout (shared with tb_cpu_avx2.c): int8 q[cols], then float
 * d[cols/32], then int32 sum[cols/32]; rows padded to 64 bytes.
 */
#include <math.h>
#include <string.h>

#include "tb_cpu_internal.h"

size_t tb_cpu_simple_act_row_bytes(tb_cpu_dtype_t wdt, int64_t cols)
{
    if (wdt != TB_CPU_Q8_0 && wdt != TB_CPU_Q4_0 && wdt != TB_CPU_Q4_0_PACKED &&
        wdt != TB_CPU_Q8_0_PACKED) {
        return 0;
    }
    size_t nb = (size_t)cols / TB_CPU_QBLOCK;
    return ((size_t)cols + nb * 8 + 63) / 64 * 64;
}

void tb_cpu_simple_quant_act(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst)
{
    size_t nb = (size_t)cols / TB_CPU_QBLOCK;
    int32_t *sum = (int32_t *)(dst + cols + nb * 4);
    tb_cpu_quantize_act_row(x, cols, (int8_t *)dst, (float *)(dst + cols), sum);
    const int32_t cmul = tb_cpu_pk_cmul(wdt);
    if (cmul != 1) {
        for (size_t b = 0; b < nb; b++) {
            sum[b] *= cmul;
        }
    }
}

static float s_dot_row(const struct tb_mm_args *a, const uint8_t *w, int t)
{
    const int64_t n = a->cols;
    if (a->dtype == TB_CPU_Q8_0 || a->dtype == TB_CPU_Q4_0) {
        const int64_t nb = n / TB_CPU_QBLOCK;
        const uint8_t *row = a->qx + (size_t)t * a->qx_stride;
        const int8_t *q = (const int8_t *)row;
        const float *d = (const float *)(row + n);
        const int32_t *sum = (const int32_t *)(row + n + nb * 4);
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const int8_t *qb = q + b * TB_CPU_QBLOCK;
            int32_t s = 0;
            float dw;
            if (a->dtype == TB_CPU_Q8_0) {
                const uint8_t *blk = w + b * 34;
                dw = tb_cpu_f16_to_f32(tb_cpu_load_u16(blk));
                for (int j = 0; j < TB_CPU_QBLOCK; j++) {
                    s += (int32_t)(int8_t)blk[2 + j] * qb[j];
                }
            } else {
                const uint8_t *blk = w + b * 18;
                dw = tb_cpu_f16_to_f32(tb_cpu_load_u16(blk));
                for (int j = 0; j < 16; j++) {
                    s += (int32_t)(blk[2 + j] & 0x0f) * qb[j];
                    s += (int32_t)(blk[2 + j] >> 4) * qb[j + 16];
                }
                s -= 8 * sum[b];
            }
            acc += dw * d[b] * (float)s;
        }
        return acc;
    }
    const float *x = a->x + (size_t)t * a->ldx;
    float acc = 0.0f;
    switch (a->dtype) {
    case TB_CPU_F32: {
        const float *wf = (const float *)w;
        for (int64_t i = 0; i < n; i++) {
            acc += wf[i] * x[i];
        }
        break;
    }
    case TB_CPU_F16:
        for (int64_t i = 0; i < n; i++) {
            acc += tb_cpu_f16_to_f32(tb_cpu_load_u16(w + 2 * i)) * x[i];
        }
        break;
    case TB_CPU_BF16:
        for (int64_t i = 0; i < n; i++) {
            acc += tb_cpu_bf16_to_f32(tb_cpu_load_u16(w + 2 * i)) * x[i];
        }
        break;
    default:
        break;
    }
    return acc;
}

/* Packed Q4_0 / Q8_0 (the lanes of the SIMD paths, one row at a time): the same block sums, in
 * order.  Q8_0 values are stored + 128; the accumulator start c removes 128 * sum(x). */
static void s_rows_pk(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int q8)
{
    const int64_t n = a->cols, nb = n / TB_CPU_QBLOCK;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *g = a->w + (size_t)(r / TB_CPU_PACK_ROWS) * a->w_row_bytes;
        const int i = (int)(r % TB_CPU_PACK_ROWS);
        float bias = a->bias ? a->bias[r] : 0.0f;
        for (int t = 0; t < a->n_tok; t++) {
            const uint8_t *row = a->qx + (size_t)t * a->qx_stride;
            const int8_t *q = (const int8_t *)row;
            const float *d = (const float *)(row + n);
            const int32_t *c = (const int32_t *)(row + n + nb * 4);
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *v = tb_cpu_pk_values(g, b, q8) + 4 * i;
                const int8_t *qb = q + b * TB_CPU_QBLOCK;
                int32_t s = c[b];
                for (int k = 0; k < 4; k++) {
                    for (int m = 0; m < 4; m++) {
                        if (q8) {
                            s += (int32_t)v[64 * k + m] * qb[4 * k + m];
                            s += (int32_t)v[64 * (k + 4) + m] * qb[16 + 4 * k + m];
                        } else {
                            uint8_t byte = v[64 * k + m];
                            s += (int32_t)(byte & 0x0f) * qb[4 * k + m];
                            s += (int32_t)(byte >> 4) * qb[16 + 4 * k + m];
                        }
                    }
                }
                float dw = tb_cpu_f16_to_f32(tb_cpu_load_u16(tb_cpu_pk_scales(g, b, q8) + 2 * i));
                acc += dw * d[b] * (float)s;
            }
            a->y[(size_t)t * a->ldy + r] = acc + bias;
        }
    }
}

static void s_matmul_rows(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    if (a->dtype == TB_CPU_Q4_0_PACKED || a->dtype == TB_CPU_Q8_0_PACKED) {
        s_rows_pk(a, r0, r1, a->dtype == TB_CPU_Q8_0_PACKED);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
        float b = a->bias ? a->bias[r] : 0.0f;
        for (int t = 0; t < a->n_tok; t++) {
            a->y[(size_t)t * a->ldy + r] = s_dot_row(a, w, t) + b;
        }
    }
}

/* Attention helpers for tb_cpu_attn_impl.h. */
static inline float s_kv_at(const uint8_t *p, size_t i, int f16)
{
    if (f16) {
        return tb_cpu_f16_to_f32(tb_cpu_load_u16(p + 2 * i));
    }
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}

static inline float s_att_scores(float *s, const float *q, const uint8_t *kt, int hd, int n,
                                 int bs, int f16)
{
    for (int j = 0; j < n; j++) {
        s[j] = 0.0f;
    }
    for (int d = 0; d < hd; d++) {
        for (int j = 0; j < n; j++) {
            s[j] += q[d] * s_kv_at(kt, (size_t)d * bs + j, f16);
        }
    }
    float mx = s[0];
    for (int j = 1; j < n; j++) {
        mx = s[j] > mx ? s[j] : mx;
    }
    return mx;
}

static inline void s_att_pv(float *acc, const float *p, const uint8_t *v, int hd, int n, int f16)
{
    for (int j = 0; j < n; j++) {
        for (int d = 0; d < hd; d++) {
            acc[d] += p[j] * s_kv_at(v, (size_t)j * hd + d, f16);
        }
    }
}

static inline void s_att_scale(float *y, float a, int n)
{
    for (int i = 0; i < n; i++) {
        y[i] *= a;
    }
}

static inline float s_att_exp_block(float *s, int n, float m)
{
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        s[i] = expf(s[i] - m);
        sum += s[i];
    }
    return sum;
}

#define ATT_SCORES s_att_scores
#define ATT_PV s_att_pv
#define ATT_SCALE s_att_scale
#define ATT_EXP_BLOCK s_att_exp_block
#define TB_ATTN_TASK s_attn_task
#include "tb_cpu_attn_impl.h"

const struct tb_cpu_isa_impl tb_cpu_impl_generic = {
    .isa = TB_CPU_ISA_GENERIC,
    .act_row_bytes = tb_cpu_simple_act_row_bytes,
    .quant_act = tb_cpu_simple_quant_act,
    .matmul_rows = s_matmul_rows,
    .kpack_rows = tb_cpu_kpack_rows_generic,
    .attn_task = s_attn_task,
};
