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

int tb_quant_q3_k_scale(const uint8_t scales[12], int g)
{
    int lo = (scales[g % 8] >> (g < 8 ? 0 : 4)) & 15;
    int hi = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

int tb_quant_iq4_xs_scale(const struct tb_block_iq4_xs *b, int s)
{
    int sh = b->scales_h[0] | b->scales_h[1] << 8;
    return (((b->scales_l[s / 2] >> (4 * (s % 2))) & 15) | ((sh >> (2 * s)) & 3) << 4) - 32;
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

/* The 32-element types: one group of 32 codes, scale 1. */
static void s_one_group(struct tb_quant_unpacked *u, const uint8_t d[2], const uint8_t *m)
{
    u->n = TB_QK;
    u->group = TB_QK;
    u->d = tb_quant_f16(d);
    u->dmin = m ? -tb_quant_f16(m) : 0.0f;
    u->sc[0] = 1;
    u->mn[0] = m ? 1 : 0;
}

static void s_q5(struct tb_quant_unpacked *u, const uint8_t qh4[4], const uint8_t qs[16], int off)
{
    uint32_t qh = s_le32(qh4);
    for (int i = 0; i < TB_QK; i++) {
        u->code[i] = (int8_t)((s_nib32(qs, i) | (int)((qh >> i) & 1) << 4) - off);
    }
}

static void s_q2_k(struct tb_quant_unpacked *u, const struct tb_block_q2_k *b)
{
    u->group = 16;
    u->d = tb_quant_f16(b->d);
    u->dmin = tb_quant_f16(b->dmin);
    for (int e = 0; e < TB_QK_K; e++) {
        int n = e / 128, j = (e / 32) % 4, l = e % 32;
        u->code[e] = (int8_t)((b->qs[32 * n + l] >> (2 * j)) & 3);
    }
    for (int g = 0; g < 16; g++) {
        u->sc[g] = b->scales[g] & 15;
        u->mn[g] = b->scales[g] >> 4;
    }
}

static void s_q3_k(struct tb_quant_unpacked *u, const struct tb_block_q3_k *b)
{
    u->group = 16;
    u->d = tb_quant_f16(b->d);
    for (int e = 0; e < TB_QK_K; e++) {
        int n = e / 128, j = (e / 32) % 4, l = e % 32;
        int q = (b->qs[32 * n + l] >> (2 * j)) & 3;
        u->code[e] = (int8_t)((b->hmask[l] >> (e / 32)) & 1 ? q : q - 4);
    }
    for (int g = 0; g < 16; g++) {
        u->sc[g] = (int16_t)tb_quant_q3_k_scale(b->scales, g);
    }
}

/* Q4_K and Q5_K: `qh` is NULL for Q4_K. */
static void s_q45_k(struct tb_quant_unpacked *u, const uint8_t d[2], const uint8_t dmin[2],
                    const uint8_t scales[12], const uint8_t *qh, const uint8_t *qs)
{
    u->group = 32;
    u->d = tb_quant_f16(d);
    u->dmin = tb_quant_f16(dmin);
    for (int s = 0; s < TB_QK_K / 32; s++) {
        uint8_t sc, m;
        tb_quant_k_scale_min(scales, s, &sc, &m);
        u->sc[s] = sc;
        u->mn[s] = m;
        for (int l = 0; l < 32; l++) {
            int q = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
            if (qh) {
                q |= ((qh[l] >> s) & 1) << 4;
            }
            u->code[32 * s + l] = (int8_t)q;
        }
    }
}

static void s_q6_k(struct tb_quant_unpacked *u, const struct tb_block_q6_k *b)
{
    u->group = 16;
    u->d = tb_quant_f16(b->d);
    for (int e = 0; e < TB_QK_K; e++) {
        int n = e / 128, k = (e / 64) % 2, i = e % 64, j = (e / 32) % 4, l = e % 32;
        int lo = (b->ql[64 * n + i] >> (4 * k)) & 15;
        int hi = (b->qh[32 * n + l] >> (2 * j)) & 3;
        u->code[e] = (int8_t)((lo | hi << 4) - 32);
    }
    for (int g = 0; g < 16; g++) {
        u->sc[g] = b->scales[g];
    }
}

static void s_iq4_xs(struct tb_quant_unpacked *u, const struct tb_block_iq4_xs *b)
{
    u->group = 32;
    u->d = tb_quant_f16(b->d);
    for (int s = 0; s < TB_QK_K / 32; s++) {
        u->sc[s] = (int16_t)tb_quant_iq4_xs_scale(b, s);
        for (int i = 0; i < 32; i++) {
            u->code[32 * s + i] = tb_quant_iq4_values[s_nib32(b->qs + 16 * s, i)];
        }
    }
}

/* The 32-element types. */
static void s_unpack_32(tb_dtype_t t, const uint8_t *p, struct tb_quant_unpacked *u)
{
    switch (t) {
    case TB_DTYPE_Q8_0:
        s_one_group(u, p, NULL);
        memcpy(u->code, ((const struct tb_block_q8_0 *)p)->qs, TB_QK);
        break;
    case TB_DTYPE_Q4_0:
    case TB_DTYPE_Q4_1:
    case TB_DTYPE_IQ4_NL: {
        const uint8_t *qs = p + (t == TB_DTYPE_Q4_1 ? 4 : 2);
        s_one_group(u, p, t == TB_DTYPE_Q4_1 ? p + 2 : NULL);
        for (int i = 0; i < TB_QK; i++) {
            int q = s_nib32(qs, i);
            u->code[i] = (int8_t)(t == TB_DTYPE_Q4_0   ? q - 8
                                  : t == TB_DTYPE_Q4_1 ? q
                                                       : tb_quant_iq4_values[q]);
        }
        break;
    }
    case TB_DTYPE_Q5_0: {
        const struct tb_block_q5_0 *b = (const void *)p;
        s_one_group(u, b->d, NULL);
        s_q5(u, b->qh, b->qs, 16);
        break;
    }
    default: { /* Q5_1 */
        const struct tb_block_q5_1 *b = (const void *)p;
        s_one_group(u, b->d, b->m);
        s_q5(u, b->qh, b->qs, 0);
        break;
    }
    }
}

int tb_quant_unpack(tb_dtype_t t, const void *block, struct tb_quant_unpacked *u)
{
    if (!tb_dtype_is_quantized(t)) {
        return TB_EINVAL;
    }
    memset(u, 0, sizeof *u);
    const uint8_t *p = block;
    if (tb_dtype_block_elems(t) == TB_QK) {
        s_unpack_32(t, p, u);
        return 0;
    }
    u->n = TB_QK_K;
    switch (t) {
    case TB_DTYPE_Q2_K:
        s_q2_k(u, (const struct tb_block_q2_k *)p);
        break;
    case TB_DTYPE_Q3_K:
        s_q3_k(u, (const struct tb_block_q3_k *)p);
        break;
    case TB_DTYPE_Q4_K: {
        const struct tb_block_q4_k *b = (const void *)p;
        s_q45_k(u, b->d, b->dmin, b->scales, NULL, b->qs);
        break;
    }
    case TB_DTYPE_Q5_K: {
        const struct tb_block_q5_k *b = (const void *)p;
        s_q45_k(u, b->d, b->dmin, b->scales, b->qh, b->qs);
        break;
    }
    case TB_DTYPE_Q6_K:
        s_q6_k(u, (const struct tb_block_q6_k *)p);
        break;
    default: /* IQ4_XS */
        s_iq4_xs(u, (const struct tb_block_iq4_xs *)p);
        break;
    }
    return 0;
}

int tb_quant_dequantize(tb_dtype_t t, const void *src, float *dst, uint64_t n)
{
    if (!tb_dtype_is_quantized(t) || n % tb_dtype_block_elems(t) != 0) {
        return TB_EINVAL;
    }
    size_t be = tb_dtype_block_elems(t), bb = tb_dtype_block_bytes(t);
    const uint8_t *p = src;
    struct tb_quant_unpacked u;
    for (uint64_t b = 0; b < n / be; b++) {
        tb_quant_unpack(t, p + b * bb, &u);
        float *y = dst + b * be;
        for (int g = 0; g < u.n / u.group; g++) {
            /* the formula of every type: (d * sc) * q - (dmin * m), in this order */
            float dl = u.d * (float)u.sc[g], ml = u.dmin * (float)u.mn[g];
            for (int i = g * u.group; i < (g + 1) * u.group; i++) {
                y[i] = dl * (float)u.code[i] - ml;
            }
        }
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
    return a == TB_QUANT_ACT_Q8_32  ? sizeof(struct tb_block_q8_32)
           : a == TB_QUANT_ACT_Q8_K ? sizeof(struct tb_block_q8_k)
                                    : 0;
}

/* Symmetric 8-bit quantization of `n` values: the scale, and the quants into `q`.  Both
 * formats take id = 127 / max|x| and round x * id to nearest, halves to even, as ggml's
 * quantizers of the activations do on x86 (quantize_row_q8_0 / _q8_1 with AVX2 and AVX-512,
 * quantize_row_q8_K on every target, ggml's nearest_int); they differ in the scale, each as its
 * ggml counterpart computes it: Q8_32 (block_q8_0 / _q8_1) d = max|x| / 127, Q8_K (block_q8_K)
 * d = 1 / id.  The two can differ in the last bit, and a last-bit change of d or id moves some
 * products across a rounding point of the next quantization (docs/performance.md, agreement
 * with llama.cpp).  ggml keeps the sign of the largest-magnitude value in Q8_K's d (negated
 * quants); |d| and |q| are the same numbers, since division and rounding to nearest even are
 * symmetric.  A block whose max|x| is 0 or not finite gets d = 0 and zero quants. */
static float s_q8(const float *x, int n, int8_t *q, int q8k)
{
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
        }
    }
    if (!(amax > 0.0f) || !isfinite(amax)) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    float id = 127.0f / amax;
    for (int i = 0; i < n; i++) {
        float v = rintf(x[i] * id);
        q[i] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v == v ? (int)v : 0);
    }
    return q8k ? 1.0f / id : amax / 127.0f;
}

float tb_quant_act_scale_f16(float d)
{
    return tb_quant_act_scale_pick(tb_f16_to_f32(tb_f32_to_f16(d)), d);
}

float tb_quant_act_sum_f16(float d, int32_t sum)
{
    float s = d * (float)sum;
    float h = tb_f16_to_f32(tb_f32_to_f16(s));
    return isfinite(h) ? h : s;
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
            float d = s_q8(xb, TB_QK, y->qs, 0);
            y->d = tb_quant_act_scale_f16(d);
            y->sum = 0;
            for (int i = 0; i < TB_QK; i++) {
                y->sum += y->qs[i];
            }
            y->s = tb_quant_act_sum_f16(d, y->sum);
        } else {
            struct tb_block_q8_k *y = (struct tb_block_q8_k *)dst + b;
            y->d = s_q8(xb, TB_QK_K, y->qs, 1);
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
