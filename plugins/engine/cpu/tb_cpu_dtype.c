/*
 * tb_cpu_dtype.c - weight formats: descriptors, scalar f16/bf16 conversion, row (de)quantization.
 * Portable C: this file is compiled without ISA flags and is the ground the SIMD paths are
 * checked against.
 */
#include <math.h>
#include <string.h>

#include "tb_cpu_internal.h"
#include "tb_errors.h"
#include "tb_quant.h"

static const struct tb_cpu_dtype_info s_info[TB_CPU_DTYPE_COUNT] = {
    [TB_CPU_F32] = {"f32", 1, 4, 0},
    [TB_CPU_F16] = {"f16", 1, 2, 1},
    [TB_CPU_BF16] = {"bf16", 1, 2, 30},
    [TB_CPU_Q8_0] = {"q8_0", TB_CPU_QBLOCK, 2 + TB_CPU_QBLOCK, 8},
    [TB_CPU_Q4_0] = {"q4_0", TB_CPU_QBLOCK, 2 + TB_CPU_QBLOCK / 2, 2},
    [TB_CPU_Q4_1] = {"q4_1", TB_QK, sizeof(struct tb_block_q4_1), 3},
    [TB_CPU_Q5_0] = {"q5_0", TB_QK, sizeof(struct tb_block_q5_0), 6},
    [TB_CPU_Q5_1] = {"q5_1", TB_QK, sizeof(struct tb_block_q5_1), 7},
    [TB_CPU_IQ4_NL] = {"iq4_nl", TB_QK, sizeof(struct tb_block_iq4_nl), 20},
    [TB_CPU_Q2_K] = {"q2_k", TB_QK_K, sizeof(struct tb_block_q2_k), 10},
    [TB_CPU_Q3_K] = {"q3_k", TB_QK_K, sizeof(struct tb_block_q3_k), 11},
    [TB_CPU_Q4_K] = {"q4_k", TB_QK_K, sizeof(struct tb_block_q4_k), 12},
    [TB_CPU_Q5_K] = {"q5_k", TB_QK_K, sizeof(struct tb_block_q5_k), 13},
    [TB_CPU_Q6_K] = {"q6_k", TB_QK_K, sizeof(struct tb_block_q6_k), 14},
    [TB_CPU_IQ4_XS] = {"iq4_xs", TB_QK_K, sizeof(struct tb_block_iq4_xs), 23},
};

bool tb_cpu_dtype_gguf(tb_cpu_dtype_t dt, tb_dtype_t *out)
{
    if ((unsigned)dt < TB_CPU_DTYPE_WRITABLE || (unsigned)dt >= TB_CPU_DTYPE_COUNT) {
        return false;
    }
    tb_dtype_t t;
    if (!tb_dtype_from_ggml(s_info[dt].ggml_type, &t)) {
        return false;
    }
    if (out) {
        *out = t;
    }
    return true;
}

const struct tb_cpu_dtype_info *tb_cpu_dtype_info(tb_cpu_dtype_t dt)
{
    if ((unsigned)dt >= TB_CPU_DTYPE_COUNT) {
        return NULL;
    }
    return &s_info[dt];
}

int tb_cpu_dtype_from_ggml(uint32_t ggml_type, tb_cpu_dtype_t *out)
{
    for (int i = 0; i < TB_CPU_DTYPE_COUNT; i++) {
        if (s_info[i].ggml_type == ggml_type) {
            if (out) {
                *out = (tb_cpu_dtype_t)i;
            }
            return TB_OK;
        }
    }
    return TB_ENOTSUP;
}

size_t tb_cpu_dtype_row_bytes(tb_cpu_dtype_t dt, int64_t n)
{
    const struct tb_cpu_dtype_info *in = tb_cpu_dtype_info(dt);
    if (!in || n < 0 || n % in->block_size != 0) {
        return 0;
    }
    return (size_t)(n / in->block_size) * (size_t)in->block_bytes;
}

static uint32_t s_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float s_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float tb_cpu_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) {
        return s_float(sign | 0x7f800000u | (man << 13));
    }
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return s_float(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t tb_cpu_f32_to_f16(float f)
{
    uint32_t u = s_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) {
        /* inf or NaN (keep NaN quiet and non-zero) */
        return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 | ((a >> 13) & 0x3ff) : 0));
    }
    if (a >= 0x477ff000u) {
        /* rounds to a value >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    }
    if (a < 0x38800000u) {
        /* subnormal half (or zero): round a * 2^24 to an integer, nearest even */
        float v = s_float(a) * 16777216.0f;
        return (uint16_t)(sign | (uint16_t)lrintf(v));
    }
    /* normal: rebias, round to nearest even on the 13 dropped bits */
    uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

float tb_cpu_bf16_to_f32(uint16_t h)
{
    return s_float((uint32_t)h << 16);
}

uint16_t tb_cpu_f32_to_bf16(float f)
{
    uint32_t u = s_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

int tb_cpu_dequantize_row(tb_cpu_dtype_t dt, const void *src, float *dst, int64_t n)
{
    if (!src || !dst || (tb_cpu_dtype_row_bytes(dt, n) == 0 && n != 0)) {
        return TB_EINVAL;
    }
    tb_dtype_t gt;
    if (tb_cpu_dtype_gguf(dt, &gt)) {
        return tb_quant_dequantize(gt, src, dst, (uint64_t)n) == 0 ? TB_OK : TB_EINVAL;
    }
    const uint8_t *p = src;
    switch (dt) {
    case TB_CPU_F32:
        memcpy(dst, src, (size_t)n * 4);
        break;
    case TB_CPU_F16:
        for (int64_t i = 0; i < n; i++) {
            dst[i] = tb_cpu_f16_to_f32(tb_cpu_load_u16(p + 2 * i));
        }
        break;
    case TB_CPU_BF16:
        for (int64_t i = 0; i < n; i++) {
            dst[i] = tb_cpu_bf16_to_f32(tb_cpu_load_u16(p + 2 * i));
        }
        break;
    case TB_CPU_Q8_0:
        for (int64_t b = 0; b < n / TB_CPU_QBLOCK; b++, p += 34) {
            float d = tb_cpu_f16_to_f32(tb_cpu_load_u16(p));
            for (int j = 0; j < TB_CPU_QBLOCK; j++) {
                dst[b * TB_CPU_QBLOCK + j] = d * (float)(int8_t)p[2 + j];
            }
        }
        break;
    case TB_CPU_Q4_0:
        for (int64_t b = 0; b < n / TB_CPU_QBLOCK; b++, p += 18) {
            float d = tb_cpu_f16_to_f32(tb_cpu_load_u16(p));
            for (int j = 0; j < 16; j++) {
                dst[b * TB_CPU_QBLOCK + j] = d * (float)((p[2 + j] & 0x0f) - 8);
                dst[b * TB_CPU_QBLOCK + j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
        }
        break;
    default:
        return TB_EINVAL;
    }
    return TB_OK;
}

int tb_cpu_quantize_row(tb_cpu_dtype_t dt, const float *src, void *dst, int64_t n)
{
    if (!src || !dst || (tb_cpu_dtype_row_bytes(dt, n) == 0 && n != 0)) {
        return TB_EINVAL;
    }
    if ((unsigned)dt >= TB_CPU_DTYPE_WRITABLE) {
        return TB_ENOTSUP;
    }
    uint8_t *p = dst;
    switch (dt) {
    case TB_CPU_F32:
        memcpy(dst, src, (size_t)n * 4);
        break;
    case TB_CPU_F16:
        for (int64_t i = 0; i < n; i++) {
            tb_cpu_store_u16(p + 2 * i, tb_cpu_f32_to_f16(src[i]));
        }
        break;
    case TB_CPU_BF16:
        for (int64_t i = 0; i < n; i++) {
            tb_cpu_store_u16(p + 2 * i, tb_cpu_f32_to_bf16(src[i]));
        }
        break;
    case TB_CPU_Q8_0:
        for (int64_t b = 0; b < n / TB_CPU_QBLOCK; b++, p += 34) {
            const float *x = src + b * TB_CPU_QBLOCK;
            float amax = 0.0f;
            for (int j = 0; j < TB_CPU_QBLOCK; j++) {
                amax = fmaxf(amax, fabsf(x[j]));
            }
            float d = amax / 127.0f;
            float id = d != 0.0f ? 1.0f / d : 0.0f;
            tb_cpu_store_u16(p, tb_cpu_f32_to_f16(d));
            for (int j = 0; j < TB_CPU_QBLOCK; j++) {
                p[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
            }
        }
        break;
    case TB_CPU_Q4_0:
        for (int64_t b = 0; b < n / TB_CPU_QBLOCK; b++, p += 18) {
            const float *x = src + b * TB_CPU_QBLOCK;
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < TB_CPU_QBLOCK; j++) {
                if (amax < fabsf(x[j])) {
                    amax = fabsf(x[j]);
                    max = x[j];
                }
            }
            float d = max / -8.0f;
            float id = d != 0.0f ? 1.0f / d : 0.0f;
            tb_cpu_store_u16(p, tb_cpu_f32_to_f16(d));
            for (int j = 0; j < 16; j++) {
                int q0 = (int)(int8_t)(x[j] * id + 8.5f);
                int q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
                q0 = q0 < 15 ? q0 : 15;
                q1 = q1 < 15 ? q1 : 15;
                p[2 + j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        break;
    default:
        return TB_EINVAL;
    }
    return TB_OK;
}

void tb_cpu_quantize_act_row(const float *x, int64_t n, int8_t *q, float *d, int32_t *sum)
{
    for (int64_t b = 0; b < n / TB_CPU_QBLOCK; b++) {
        const float *xb = x + b * TB_CPU_QBLOCK;
        float amax = 0.0f;
        for (int j = 0; j < TB_CPU_QBLOCK; j++) {
            amax = fmaxf(amax, fabsf(xb[j]));
        }
        float db = tb_cpu_act_scale(amax);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t s = 0;
        for (int j = 0; j < TB_CPU_QBLOCK; j++) {
            int v = (int)nearbyintf(xb[j] * id);
            q[b * TB_CPU_QBLOCK + j] = (int8_t)v;
            s += v;
        }
        d[b] = db;
        if (sum) {
            sum[b] = s;
        }
    }
}

size_t tb_cpu_weight_packed_bytes(const struct tb_cpu_weight *w)
{
    if (w && tb_cpu_kp_kind(w->dtype)) {
        return tb_cpu_kpack_bytes(w);
    }
    if (!w || (w->dtype != TB_CPU_Q4_0 && w->dtype != TB_CPU_Q8_0) || w->rows < 1 ||
        w->cols < TB_CPU_QBLOCK || w->cols % TB_CPU_QBLOCK != 0) {
        return 0;
    }
    size_t groups = (size_t)((w->rows + TB_CPU_PACK_ROWS - 1) / TB_CPU_PACK_ROWS);
    return groups * tb_cpu_pk_group_bytes(w->dtype == TB_CPU_Q8_0, w->cols);
}

int tb_cpu_weight_pack(const struct tb_cpu_weight *w, void *dst, size_t dst_bytes)
{
    if (w && tb_cpu_kp_kind(w->dtype)) {
        return tb_cpu_kpack(w, dst, dst_bytes);
    }
    size_t need = tb_cpu_weight_packed_bytes(w);
    if (need == 0 || !w->data || !dst || ((uintptr_t)dst & 63) != 0 || dst_bytes < need) {
        return TB_EINVAL;
    }
    const int q8 = w->dtype == TB_CPU_Q8_0;
    const int nvec = q8 ? 8 : 4;           /* 4-byte pieces of a row's block values */
    const uint8_t flip = q8 ? 0x80 : 0x00; /* Q8_0 values are stored + 128 (unsigned) */
    const size_t bb = q8 ? 34 : 18;
    const int64_t nb = w->cols / TB_CPU_QBLOCK;
    const int64_t nb_even = (nb + 1) / 2 * 2;
    const size_t rb = tb_cpu_dtype_row_bytes(w->dtype, w->cols);
    const size_t gb = tb_cpu_pk_group_bytes(q8, w->cols);
    const int64_t groups = (w->rows + TB_CPU_PACK_ROWS - 1) / TB_CPU_PACK_ROWS;
    for (int64_t g = 0; g < groups; g++) {
        uint8_t *gp = (uint8_t *)dst + (size_t)g * gb;
        /* one row at a time: the source is read in order, the group (a few KB) stays cached */
        for (int i = 0; i < TB_CPU_PACK_ROWS; i++) {
            int64_t r = g * TB_CPU_PACK_ROWS + i;
            const uint8_t *src = r < w->rows ? (const uint8_t *)w->data + (size_t)r * rb : NULL;
            for (int64_t b = 0; b < nb_even; b++) {
                uint8_t *sc = (uint8_t *)tb_cpu_pk_scales(gp, b, q8) + 2 * i;
                uint8_t *v = (uint8_t *)tb_cpu_pk_values(gp, b, q8) + 4 * i;
                const uint8_t *blk = src && b < nb ? src + (size_t)b * bb : NULL;
                if (blk) {
                    memcpy(sc, blk, 2);
                } else { /* padding: a zero scale makes the row's or block's products 0 */
                    memset(sc, 0, 2);
                }
                for (int k = 0; k < nvec; k++) {
                    for (int m = 0; m < 4; m++) {
                        v[64 * k + m] = blk ? (uint8_t)(blk[2 + 4 * k + m] ^ flip) : flip;
                    }
                }
            }
        }
    }
    return TB_OK;
}
