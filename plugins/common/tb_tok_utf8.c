/*
 * tb_tok_utf8.c - the byte-level alphabet, character classes and a string hash for the tokenizers.
 */
#include "tb_tok_utf8.h"

#include <string.h>
#include <utf8proc.h>

/* Bytes that stand for themselves in the byte-level alphabet: '!'..'~', 0xA1..0xAC, 0xAE..0xFF.
 * The remaining 68 bytes take U+0100, U+0101, ... in increasing byte order. */
static bool s_self_mapped(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The 68 other bytes, in increasing order, take U+0100..U+0143: 0x00..0x20 -> U+0100..U+0120,
 * 0x7F..0xA0 -> U+0121..U+0142, 0xAD -> U+0143. */
uint32_t tb_tok_byte_to_cp(uint8_t b)
{
    if (s_self_mapped(b)) {
        return b;
    }
    if (b <= 0x20) {
        return 0x100u + b;
    }
    if (b >= 0x7F && b <= 0xA0) {
        return 0x121u + (b - 0x7Fu);
    }
    return 0x143; /* 0xAD */
}

int tb_tok_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100) {
        return s_self_mapped(cp) ? (int)cp : -1;
    }
    if (cp <= 0x120) {
        return (int)(cp - 0x100);
    }
    if (cp <= 0x142) {
        return (int)(cp - 0x121 + 0x7F);
    }
    return cp == 0x143 ? 0xAD : -1;
}

uint64_t tb_tok_hash(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xC2B2AE3D27D4EB4FULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ (w * 0x87C37B91114253D5ULL)) * 0x4CF5AD432745937FULL;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ (w * 0x87C37B91114253D5ULL)) * 0x4CF5AD432745937FULL;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDULL;
    h ^= h >> 32;
    return h;
}

bool tb_tok_is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

bool tb_tok_is_word_char(uint32_t cp)
{
    if (cp < 0x80) {
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
               cp == '_';
    }
    if (cp == 0x200C || cp == 0x200D) {
        return true;
    }
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}
