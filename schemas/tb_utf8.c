/* tb_utf8: the SDK's UTF-8 decoder, validator and encoder (see tb_utf8.h). */
#include "tb_utf8.h"

tb_utf8_status_t tb_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp, size_t *len)
{
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        *len = 1;
        return TB_UTF8_OK;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t c;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
        c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        c = b0 & 0x0F;
        if (b0 == 0xE0) {
            lo = 0xA0;
        } else if (b0 == 0xED) {
            hi = 0x9F;
        }
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        c = b0 & 0x07;
        if (b0 == 0xF0) {
            lo = 0x90;
        } else if (b0 == 0xF4) {
            hi = 0x8F;
        }
    } else {
        *len = 1;
        return TB_UTF8_INVALID;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) {
            *len = i;
            return TB_UTF8_INCOMPLETE;
        }
        uint8_t b = s[i];
        uint8_t l = i == 1 ? lo : 0x80;
        uint8_t h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) {
            *len = i;
            return TB_UTF8_INVALID;
        }
        c = (c << 6) | (b & 0x3F);
    }
    *cp = c;
    *len = need;
    return TB_UTF8_OK;
}

bool tb_utf8_is_valid(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t len;
        if (tb_utf8_decode(p + i, n - i, &cp, &len) != TB_UTF8_OK) {
            return false;
        }
        i += len;
    }
    return true;
}

size_t tb_utf8_lead_len(uint8_t lead)
{
    if (lead < 0xC0) {
        return 1;
    }
    if (lead < 0xE0) {
        return 2;
    }
    if (lead < 0xF0) {
        return 3;
    }
    return lead < 0xF8 ? 4 : 1;
}

size_t tb_utf8_cp_len(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

uint32_t tb_utf8_next(const char *s, size_t len, size_t *i)
{
    uint32_t cp = 0xFFFD;
    size_t n = 1;
    if (tb_utf8_decode((const uint8_t *)s + *i, len - *i, &cp, &n) != TB_UTF8_OK) {
        cp = 0xFFFD;
    }
    *i += n;
    return cp;
}

size_t tb_utf8_valid_prefix(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len;
        if (p[i] < 0x80) {
            i++;
        } else if (tb_utf8_decode(p + i, n - i, &cp, &len) == TB_UTF8_OK) {
            i += len;
        } else {
            break;
        }
    }
    return i;
}

size_t tb_utf8_encode(uint32_t cp, char *out)
{
    uint8_t *u = (uint8_t *)out;
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | (cp >> 6));
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) {
        return 0;
    }
    if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | (cp >> 12));
        u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) {
        return 0;
    }
    u[0] = (uint8_t)(0xF0 | (cp >> 18));
    u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}
