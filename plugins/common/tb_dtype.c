/*
 * tb_dtype.c - element types: names, storage sizes, scalar conversions and a reference
 * dequantizer.  The conversions work on bit patterns so they need no compiler half-float support.
 */
#include "tb_dtype.h"

#include <string.h>
#include <strings.h>

#include "tb_errors.h"

static const struct {
    const char *name;
    size_t elems;
    size_t bytes;
} s_types[TB_DTYPE_COUNT] = {
    [TB_DTYPE_F32] = {"f32", 1, 4},
    [TB_DTYPE_F16] = {"f16", 1, 2},
    [TB_DTYPE_BF16] = {"bf16", 1, 2},
    [TB_DTYPE_Q8_0] = {"q8_0", TB_QK, 2 + TB_QK},
    [TB_DTYPE_Q4_0] = {"q4_0", TB_QK, 2 + TB_QK / 2},
};

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
    return t == TB_DTYPE_Q8_0 || t == TB_DTYPE_Q4_0;
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
    } else { /* subnormal: value = man * 2^-24 */
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
    if (ax < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal or zero */
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
    case TB_DTYPE_Q8_0:
        for (uint64_t b = 0; b < n / TB_QK; b++) {
            const uint8_t *blk = p + b * (2 + TB_QK);
            float d = tb_f16_to_f32(s_le16(blk));
            for (int i = 0; i < TB_QK; i++) {
                dst[b * TB_QK + i] = (float)(int8_t)blk[2 + i] * d;
            }
        }
        break;
    case TB_DTYPE_Q4_0:
        for (uint64_t b = 0; b < n / TB_QK; b++) {
            const uint8_t *blk = p + b * (2 + TB_QK / 2);
            float d = tb_f16_to_f32(s_le16(blk));
            for (int j = 0; j < TB_QK / 2; j++) {
                uint8_t q = blk[2 + j];
                dst[b * TB_QK + j] = (float)((int)(q & 0x0f) - 8) * d;
                dst[b * TB_QK + j + TB_QK / 2] = (float)((int)(q >> 4) - 8) * d;
            }
        }
        break;
    default:
        return TB_EINVAL;
    }
    return 0;
}
