/*
 * tb_quant.c - the reference decoders of GGUF's block formats and the activation quantizers.
 * Plain portable C, one element at a time: the definition every SIMD or GPU kernel is tested
 * against.  The f32 expressions keep the exact operation order of the formulas in tb_dtype.h
 * (which is the `gguf` package's), and this file is built with -ffp-contract=off so that no
 * multiply-add is fused: the results match that package bit for bit.
 */
#include "tb_quant.h"

#include <math.h>
#include <string.h>

#include "tb_errors.h"

const int8_t tb_quant_iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};

float tb_quant_f16(const uint8_t p[2])
{
    return tb_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

void tb_quant_k_scale_min(const uint8_t scales[12], int s, uint8_t *sc, uint8_t *m)
{
    if (s < 4) {
        *sc = scales[s] & 63;
        *m = scales[s + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[s + 4] & 15) | ((scales[s - 4] >> 6) << 4));
        *m = (uint8_t)((scales[s + 4] >> 4) | ((scales[s] >> 6) << 4));
    }
}

int tb_quant_q3_k_scale(const uint8_t scales[12], int g)
{
    int lo = (scales[g % 8] >> (g < 8 ? 0 : 4)) & 15;
    int hi = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* The 4-bit code of element i (< 32) of a 32-element nibble block (low nibbles first). */
static int s_nib32(const uint8_t qs[16], int i)
{
    return i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
}

static uint32_t s_le32(const uint8_t p[4])
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void s_q4_0(const struct tb_block_q4_0 *b, float *y)
{
    float d = tb_quant_f16(b->d);
    for (int i = 0; i < TB_QK; i++) {
        y[i] = (float)(s_nib32(b->qs, i) - 8) * d;
    }
}

static void s_q4_1(const struct tb_block_q4_1 *b, float *y)
{
    float d = tb_quant_f16(b->d), m = tb_quant_f16(b->m);
    for (int i = 0; i < TB_QK; i++) {
        y[i] = d * (float)s_nib32(b->qs, i) + m;
    }
}

static void s_q5_0(const struct tb_block_q5_0 *b, float *y)
{
    float d = tb_quant_f16(b->d);
    uint32_t qh = s_le32(b->qh);
    for (int i = 0; i < TB_QK; i++) {
        int q = s_nib32(b->qs, i) | (int)((qh >> i) & 1) << 4;
        y[i] = d * (float)(q - 16);
    }
}

static void s_q5_1(const struct tb_block_q5_1 *b, float *y)
{
    float d = tb_quant_f16(b->d), m = tb_quant_f16(b->m);
    uint32_t qh = s_le32(b->qh);
    for (int i = 0; i < TB_QK; i++) {
        int q = s_nib32(b->qs, i) | (int)((qh >> i) & 1) << 4;
        y[i] = d * (float)q + m;
    }
}

static void s_q8_0(const struct tb_block_q8_0 *b, float *y)
{
    float d = tb_quant_f16(b->d);
    for (int i = 0; i < TB_QK; i++) {
        y[i] = (float)b->qs[i] * d;
    }
}

static void s_iq4_nl(const struct tb_block_iq4_nl *b, float *y)
{
    float d = tb_quant_f16(b->d);
    for (int i = 0; i < TB_QK; i++) {
        y[i] = d * (float)tb_quant_iq4_values[s_nib32(b->qs, i)];
    }
}

static void s_q2_k(const struct tb_block_q2_k *b, float *y)
{
    float d = tb_quant_f16(b->d), dmin = tb_quant_f16(b->dmin);
    for (int e = 0; e < TB_QK_K; e++) {
        int n = e / 128, j = (e / 32) % 4, l = e % 32;
        int q = (b->qs[32 * n + l] >> (2 * j)) & 3;
        uint8_t s = b->scales[e / 16];
        float dl = d * (float)(s & 15), ml = dmin * (float)(s >> 4);
        y[e] = dl * (float)q - ml;
    }
}

static void s_q3_k(const struct tb_block_q3_k *b, float *y)
{
    float d = tb_quant_f16(b->d);
    for (int e = 0; e < TB_QK_K; e++) {
        int n = e / 128, j = (e / 32) % 4, l = e % 32;
        int q = (b->qs[32 * n + l] >> (2 * j)) & 3;
        if (!((b->hmask[l] >> (e / 32)) & 1)) {
            q -= 4;
        }
        float dl = d * (float)tb_quant_q3_k_scale(b->scales, e / 16);
        y[e] = dl * (float)q;
    }
}

/* Q4_K and Q5_K: `qh` is NULL for Q4_K. */
static void s_q45_k(const uint8_t dd[2], const uint8_t dm[2], const uint8_t scales[12],
                    const uint8_t *qh, const uint8_t *qs, float *y)
{
    float d = tb_quant_f16(dd), dmin = tb_quant_f16(dm);
    for (int s = 0; s < TB_QK_K / 32; s++) {
        uint8_t sc, m;
        tb_quant_k_scale_min(scales, s, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            int q = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
            if (qh) {
                q |= ((qh[l] >> s) & 1) << 4;
            }
            y[32 * s + l] = dl * (float)q - ml;
        }
    }
}

static void s_q6_k(const struct tb_block_q6_k *b, float *y)
{
    float d = tb_quant_f16(b->d);
    for (int e = 0; e < TB_QK_K; e++) {
        int n = e / 128, k = (e / 64) % 2, i = e % 64, j = (e / 32) % 4, l = e % 32;
        int lo = (b->ql[64 * n + i] >> (4 * k)) & 15;
        int hi = (b->qh[32 * n + l] >> (2 * j)) & 3;
        float dl = d * (float)b->scales[e / 16];
        y[e] = dl * (float)((lo | hi << 4) - 32);
    }
}

static void s_iq4_xs(const struct tb_block_iq4_xs *b, float *y)
{
    float d = tb_quant_f16(b->d);
    int sh = b->scales_h[0] | b->scales_h[1] << 8;
    for (int s = 0; s < TB_QK_K / 32; s++) {
        int ls = ((b->scales_l[s / 2] >> (4 * (s % 2))) & 15) | ((sh >> (2 * s)) & 3) << 4;
        float dl = d * (float)(ls - 32);
        for (int i = 0; i < 32; i++) {
            y[32 * s + i] = dl * (float)tb_quant_iq4_values[s_nib32(b->qs + 16 * s, i)];
        }
    }
}

/* Decodes one block of type `t` (a quantized type) at `p` into `y`. */
static void s_block(tb_dtype_t t, const uint8_t *p, float *y)
{
    switch (t) {
    case TB_DTYPE_Q8_0:
        s_q8_0((const struct tb_block_q8_0 *)p, y);
        break;
    case TB_DTYPE_Q4_0:
        s_q4_0((const struct tb_block_q4_0 *)p, y);
        break;
    case TB_DTYPE_Q4_1:
        s_q4_1((const struct tb_block_q4_1 *)p, y);
        break;
    case TB_DTYPE_Q5_0:
        s_q5_0((const struct tb_block_q5_0 *)p, y);
        break;
    case TB_DTYPE_Q5_1:
        s_q5_1((const struct tb_block_q5_1 *)p, y);
        break;
    case TB_DTYPE_IQ4_NL:
        s_iq4_nl((const struct tb_block_iq4_nl *)p, y);
        break;
    case TB_DTYPE_Q2_K:
        s_q2_k((const struct tb_block_q2_k *)p, y);
        break;
    case TB_DTYPE_Q3_K:
        s_q3_k((const struct tb_block_q3_k *)p, y);
        break;
    case TB_DTYPE_Q4_K: {
        const struct tb_block_q4_k *b = (const void *)p;
        s_q45_k(b->d, b->dmin, b->scales, NULL, b->qs, y);
        break;
    }
    case TB_DTYPE_Q5_K: {
        const struct tb_block_q5_k *b = (const void *)p;
        s_q45_k(b->d, b->dmin, b->scales, b->qh, b->qs, y);
        break;
    }
    case TB_DTYPE_Q6_K:
        s_q6_k((const struct tb_block_q6_k *)p, y);
        break;
    case TB_DTYPE_IQ4_XS:
        s_iq4_xs((const struct tb_block_iq4_xs *)p, y);
        break;
    default:
        break;
    }
}

int tb_quant_dequantize(tb_dtype_t t, const void *src, float *dst, uint64_t n)
{
    if (!tb_dtype_is_quantized(t) || n % tb_dtype_block_elems(t) != 0) {
        return TB_EINVAL;
    }
    size_t be = tb_dtype_block_elems(t), bb = tb_dtype_block_bytes(t);
    const uint8_t *p = src;
    for (uint64_t b = 0; b < n / be; b++) {
        s_block(t, p + b * bb, dst + b * be);
    }
    return 0;
}

tb_quant_act_t tb_quant_act_for(tb_dtype_t t)
{
    if (!tb_dtype_is_quantized(t)) {
        return TB_QUANT_ACT_NONE;
    }
    return tb_dtype_block_elems(t) == TB_QK_K ? TB_QUANT_ACT_Q8_K : TB_QUANT_ACT_Q8_32;
}

size_t tb_quant_act_block_elems(tb_quant_act_t a)
{
    return a == TB_QUANT_ACT_Q8_32 ? TB_QK : a == TB_QUANT_ACT_Q8_K ? TB_QK_K : 0;
}

size_t tb_quant_act_block_bytes(tb_quant_act_t a)
{
    return a == TB_QUANT_ACT_Q8_32 ? sizeof(struct tb_block_q8_32)
           : a == TB_QUANT_ACT_Q8_K ? sizeof(struct tb_block_q8_k)
                                    : 0;
}

/* Symmetric 8-bit quantization of `n` values: the scale, and the quants into `q`. */
static float s_q8(const float *x, int n, int8_t *q)
{
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
        }
    }
    float d = amax / 127.0f;
    float id = d > 0.0f && isfinite(d) ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) {
        float v = roundf(x[i] * id);
        q[i] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v == v ? (int)v : 0);
    }
    return id > 0.0f ? d : 0.0f;
}

int tb_quant_act_quantize(tb_quant_act_t a, const float *x, void *dst, uint64_t n)
{
    size_t be = tb_quant_act_block_elems(a);
    if (be == 0 || n % be != 0) {
        return TB_EINVAL;
    }
    for (uint64_t b = 0; b < n / be; b++) {
        const float *xb = x + b * be;
        if (a == TB_QUANT_ACT_Q8_32) {
            struct tb_block_q8_32 *y = (struct tb_block_q8_32 *)dst + b;
            y->d = s_q8(xb, TB_QK, y->qs);
            y->sum = 0;
            for (int i = 0; i < TB_QK; i++) {
                y->sum += y->qs[i];
            }
        } else {
            struct tb_block_q8_k *y = (struct tb_block_q8_k *)dst + b;
            y->d = s_q8(xb, TB_QK_K, y->qs);
            for (int g = 0; g < TB_QK_K / 16; g++) {
                int s = 0;
                for (int i = 0; i < 16; i++) {
                    s += y->qs[16 * g + i];
                }
                y->bsums[g] = (int16_t)s;
            }
        }
    }
    return 0;
}

int tb_quant_act_to_f32(tb_quant_act_t a, const void *src, float *dst, uint64_t n)
{
    size_t be = tb_quant_act_block_elems(a);
    if (be == 0 || n % be != 0) {
        return TB_EINVAL;
    }
    for (uint64_t b = 0; b < n / be; b++) {
        const int8_t *q;
        float d;
        if (a == TB_QUANT_ACT_Q8_32) {
            const struct tb_block_q8_32 *y = (const struct tb_block_q8_32 *)src + b;
            q = y->qs;
            d = y->d;
        } else {
            const struct tb_block_q8_k *y = (const struct tb_block_q8_k *)src + b;
            q = y->qs;
            d = y->d;
        }
        for (size_t i = 0; i < be; i++) {
            dst[b * be + i] = (float)q[i] * d;
        }
    }
    return 0;
}
