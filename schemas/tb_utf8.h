/*
 * tb_utf8.h - UTF-8 for plugins: strict decoding (Unicode's "maximal subpart" rule for
 * ill-formed input, so a streaming reader can wait for an incomplete tail), validation and
 * encoding.  Part of the SDK helper library (libtb_sdk.a).  Pure functions; thread-safe.
 */
#ifndef TB_UTF8_H
#define TB_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TB_UTF8_OK = 0,         /* a whole valid character */
    TB_UTF8_INVALID = 1,    /* an ill-formed sequence: replace the consumed bytes by one U+FFFD */
    TB_UTF8_INCOMPLETE = 2, /* a valid prefix cut by the end of the input: wait for more */
} tb_utf8_status_t;

/* Decodes the character at s[0..n) (n >= 1).  Sets *len to the bytes it covers: the character,
 * the maximal ill-formed subpart (>= 1), or the incomplete prefix; sets *cp for TB_UTF8_OK.
 * Overlong forms, surrogates and values past U+10FFFF are ill-formed. */
tb_utf8_status_t tb_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp, size_t *len);

/* Iterates over s[0..len) (*i < len): returns the code point at s[*i] and advances *i past it.
 * An ill-formed or incomplete sequence yields U+FFFD and advances past its maximal subpart. */
uint32_t tb_utf8_next(const char *s, size_t len, size_t *i);

/* True when s[0..n) is well-formed UTF-8. */
bool tb_utf8_is_valid(const char *s, size_t n);

/* Length of the longest well-formed prefix of s[0..n) (n when all of it is). */
size_t tb_utf8_valid_prefix(const char *s, size_t n);

/* Byte length of the character starting with `lead`, as a lenient reader sees it: 1 for ASCII
 * and for bytes that cannot start a sequence, otherwise 2, 3 or 4. */
size_t tb_utf8_lead_len(uint8_t lead);

/* Bytes of UTF-8 needed for code point `cp`. */
size_t tb_utf8_cp_len(uint32_t cp);

/* Writes the UTF-8 of `cp` to out (room for 4) and returns the length; 0 (nothing written) for a
 * surrogate or a value past U+10FFFF. */
size_t tb_utf8_encode(uint32_t cp, char *out);

#ifdef __cplusplus
}
#endif

#endif /* TB_UTF8_H */
