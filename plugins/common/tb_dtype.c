/*
 * tb_dtype.c - element types: names, ggml numbers, storage sizes, scalar conversions and the
 * reference decoder (tb_quant.c decodes the blocks).  The conversions work on bit patterns so
 * they need no compiler half-float support.
 */
#include "tb_dtype.h"

#include <string.h>
#include <strings.h>

#include "tb_errors.h"
#include "tb_quant.h"

static const struct {
    const char *name;
    uint32_t ggml;
    size_t elems;
    size_t bytes;
} s_types[TB_DTYPE_COUNT] = {
    [TB_DTYPE_F32] = {"f32", 0, 1, 4},
    [TB_DTYPE_F16] = {"f16", 1, 1, 2},
    [TB_DTYPE_BF16] = {"bf16", 30, 1, 2},
    [TB_DTYPE_Q8_0] = {"q8_0", 8, TB_QK, sizeof(struct tb_block_q8_0)},
    [TB_DTYPE_Q4_0] = {"q4_0", 2, TB_QK, sizeof(struct tb_block_q4_0)},
    [TB_DTYPE_Q4_1] = {"q4_1", 3, TB_QK, sizeof(struct tb_block_q4_1)},
    [TB_DTYPE_Q5_0] = {"q5_0", 6, TB_QK, sizeof(struct tb_block_q5_0)},
    [TB_DTYPE_Q5_1] = {"q5_1", 7, TB_QK, sizeof(struct tb_block_q5_1)},
    [TB_DTYPE_IQ4_NL] = {"iq4_nl", 20, TB_QK, sizeof(struct tb_block_iq4_nl)},
    [TB_DTYPE_Q2_K] = {"q2_k", 10, TB_QK_K, sizeof(struct tb_block_q2_k)},
    [TB_DTYPE_Q3_K] = {"q3_k", 11, TB_QK_K, sizeof(struct tb_block_q3_k)},
    [TB_DTYPE_Q4_K] = {"q4_k", 12, TB_QK_K, sizeof(struct tb_block_q4_k)},
    [TB_DTYPE_Q5_K] = {"q5_k", 13, TB_QK_K, sizeof(struct tb_block_q5_k)},
    [TB_DTYPE_Q6_K] = {"q6_k", 14, TB_QK_K, sizeof(struct tb_block_q6_k)},
    [TB_DTYPE_IQ4_XS] = {"iq4_xs", 23, TB_QK_K, sizeof(struct tb_block_iq4_xs)},
};

/* The byte sizes are ggml's; a struct that grew padding would break every file. */
_Static_assert(sizeof(struct tb_block_q4_1) == 20 && sizeof(struct tb_block_q5_0) == 22 &&
                   sizeof(struct tb_block_q5_1) == 24 && sizeof(struct tb_block_q8_0) == 34 &&
                   sizeof(struct tb_block_iq4_nl) == 18 && sizeof(struct tb_block_q4_0) == 18,
               "32-element block sizes");
_Static_assert(sizeof(struct tb_block_q2_k) == 84 && sizeof(struct tb_block_q3_k) == 110 &&
                   sizeof(struct tb_block_q4_k) == 144 && sizeof(struct tb_block_q5_k) == 176 &&
                   sizeof(struct tb_block_q6_k) == 210 && sizeof(struct tb_block_iq4_xs) == 136 &&
                   sizeof(struct tb_block_q8_k) == 292,
               "256-element block sizes");

static bool s_valid(tb_dtype_t t)
{
    return (int)t >= 0 && t < TB_DTYPE_COUNT;
}

const char *tb_dtype_name(tb_dtype_t t)
{
    return s_valid(t) ? s_types[t].name : "?";
}

bool tb_dtype_from_name(const char *name, tb_dtype_t *out)
{
    if (!name) {
        return false;
    }
    for (int i = 0; i < TB_DTYPE_COUNT; i++) {
        if (strcasecmp(name, s_types[i].name) == 0) {
            *out = (tb_dtype_t)i;
            return true;
        }
    }
    return false;
}

bool tb_dtype_from_ggml(uint32_t ggml_type, tb_dtype_t *out)
{
    for (int i = 0; i < TB_DTYPE_COUNT; i++) {
        if (s_types[i].ggml == ggml_type) {
            *out = (tb_dtype_t)i;
            return true;
        }
    }
    return false;
}

uint32_t tb_dtype_ggml_type(tb_dtype_t t)
{
    return s_valid(t) ? s_types[t].ggml : UINT32_MAX;
}

size_t tb_dtype_block_elems(tb_dtype_t t)
{
    return s_valid(t) ? s_types[t].elems : 0;
}

size_t tb_dtype_block_bytes(tb_dtype_t t)
{
    return s_valid(t) ? s_types[t].bytes : 0;
}

bool tb_dtype_is_quantized(tb_dtype_t t)
{
    return s_valid(t) && s_types[t].elems > 1;
}

int tb_dtype_bytes(tb_dtype_t t, uint64_t n, uint64_t *out)
{
    if (!s_valid(t) || n % s_types[t].elems != 0) {
        return TB_EINVAL;
    }
    uint64_t blocks = n / s_types[t].elems;
    if (blocks > UINT64_MAX / s_types[t].bytes) {
        return TB_ERANGE;
    }
    *out = blocks * s_types[t].bytes;
    return 0;
}

static float s_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t s_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float tb_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) { /* inf or NaN */
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) { /* normal */
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) { /* zero */
        bits = sign;
    } else {                                            /* subnormal: value = man * 2^-24 */
        float v = (float)man * s_bits_f32(0x33800000u); /* 2^-24 */
        return sign ? -v : v;
    }
    return s_bits_f32(bits);
}

uint16_t tb_f32_to_f16(float f)
{
    uint32_t x = s_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { /* inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    }
    if (ax >= 0x477ff000u) { /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    }
    if (ax < 0x38800000u) {     /* below the smallest normal half (2^-14): subnormal or zero */
        if (ax < 0x33000000u) { /* below half of the smallest subnormal: zero */
            return sign;
        }
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t mid = 1u << (shift - 1u);
        if (rem > mid || (rem == mid && (half & 1u))) {
            half++;
        }
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) {
        half++; /* may carry into the exponent, which is the correct rounding */
    }
    return (uint16_t)(sign | half);
}

float tb_bf16_to_f32(uint16_t b)
{
    return s_bits_f32((uint32_t)b << 16);
}

uint16_t tb_f32_to_bf16(float f)
{
    uint32_t x = s_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    }
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static uint16_t s_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

int tb_dtype_to_f32(tb_dtype_t t, const void *src, float *dst, uint64_t n)
{
    const uint8_t *p = src;
    if (!s_valid(t) || n % s_types[t].elems != 0) {
        return TB_EINVAL;
    }
    switch (t) {
    case TB_DTYPE_F32:
        memcpy(dst, p, n * sizeof(float));
        break;
    case TB_DTYPE_F16:
        for (uint64_t i = 0; i < n; i++) {
            dst[i] = tb_f16_to_f32(s_le16(p + 2 * i));
        }
        break;
    case TB_DTYPE_BF16:
        for (uint64_t i = 0; i < n; i++) {
            dst[i] = tb_bf16_to_f32(s_le16(p + 2 * i));
        }
        break;
    default:
        return tb_quant_dequantize(t, src, dst, n);
    }
    return 0;
}
