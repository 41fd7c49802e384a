/*
 * tb_tok_utf8.h - UTF-8 helpers for the tokenizers: strict decoding with the Unicode
 * "maximal subpart" rule for invalid input, the GPT-2 byte-to-character map of byte-level BPE,
 * and the string hash the vocabulary tables use.  Pure functions; thread-safe.
 */
#ifndef TB_TOK_UTF8_H
#define TB_TOK_UTF8_H

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
 * the maximal ill-formed subpart (>= 1), or the incomplete prefix; sets *cp for TB_UTF8_OK. */
tb_utf8_status_t tb_tok_utf8_next(const uint8_t *s, size_t n, uint32_t *cp, size_t *len);

/* True when s[0..n) is well-formed UTF-8. */
bool tb_tok_utf8_is_valid(const char *s, size_t n);

/* Byte length of the character starting with `lead`, as a lenient reader sees it: 1 for ASCII
 * and for bytes that cannot start a sequence, otherwise 2, 3 or 4. */
size_t tb_tok_utf8_lead_len(uint8_t lead);

/* Bytes of UTF-8 needed for code point `cp`. */
size_t tb_tok_utf8_cp_len(uint32_t cp);

/* Writes the UTF-8 of `cp` to out (room for 4); returns the length. */
size_t tb_tok_utf8_encode(uint32_t cp, char *out);

/* GPT-2 byte-level alphabet: every byte maps to a printable code point (bytes that are
 * printable Latin-1 map to themselves, the others to U+0100 and up). */
uint32_t tb_tok_byte_to_cp(uint8_t b);
/* Inverse of tb_tok_byte_to_cp; -1 for a code point outside the alphabet. */
int tb_tok_cp_to_byte(uint32_t cp);

/* Unicode White_Space (the definition Rust, Oniguruma and llama.cpp use for "whitespace"). */
bool tb_tok_is_space(uint32_t cp);

/* A "word" character as Rust's regex `\w` sees it: letters, marks, decimal digits, connector
 * punctuation, ZWNJ/ZWJ (approximated with Unicode general categories). */
bool tb_tok_is_word_char(uint32_t cp);

/* 64-bit hash of n bytes (not cryptographic; for in-memory tables). */
uint64_t tb_tok_hash(const void *p, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TB_TOK_UTF8_H */
