/*
 * tb_tok_utf8.h - Unicode helpers for the tokenizers: the GPT-2 byte-to-character map of
 * byte-level BPE, the whitespace and word-character classes, and the string hash the vocabulary
 * tables use.  UTF-8 decoding and encoding are the SDK's (tb_utf8.h, included here).  Pure
 * functions; thread-safe.
 */
#ifndef TB_TOK_UTF8_H
#define TB_TOK_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_utf8.h"

#ifdef __cplusplus
extern "C" {
#endif

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
