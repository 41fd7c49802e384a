/*
 * tb_jinja_lexer.h - tokenizer of the Jinja interpreter (internal to tb_jinja*.c).
 *
 * Splits template source into data and tag tokens with jinja2's whitespace rules as Hugging
 * Face configures them: newlines normalised to "\n" and one trailing newline dropped,
 * trim_blocks (the newline after %} and #} is removed), lstrip_blocks (spaces before {% and {#
 * at the start of a line are removed), and the -/+ markers.  Comments are dropped, raw blocks
 * become data, string literals are unescaped as Python does.
 *
 * Memory: tokens and their text live in an arena owned by the caller (tb_jarena_t), freed in
 * one call.
 */
#ifndef TB_JINJA_LEXER_H
#define TB_JINJA_LEXER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A chunked bump allocator: everything a parse makes is freed at once. */
typedef struct tb_jarena_chunk tb_jarena_chunk_t;
typedef struct {
    tb_jarena_chunk_t *head;
    size_t used;  /* bytes used in head */
    size_t total; /* bytes allocated in all chunks */
    size_t limit; /* refuse to grow past this many bytes */
} tb_jarena_t;

void tb_jarena_init(tb_jarena_t *a, size_t limit);
void tb_jarena_release(tb_jarena_t *a);
/* Zeroed memory, 8-byte aligned; NULL when out of memory or over the limit. */
void *tb_jarena_alloc(tb_jarena_t *a, size_t n);
/* A NUL-terminated copy of n bytes. */
char *tb_jarena_strdup(tb_jarena_t *a, const char *s, size_t n);

typedef enum {
    TB_JT_EOF = 0,
    TB_JT_DATA,        /* text: str/len */
    TB_JT_VAR_BEGIN,   /* {{ */
    TB_JT_VAR_END,     /* }} */
    TB_JT_BLOCK_BEGIN, /* {% */
    TB_JT_BLOCK_END,   /* %} */
    TB_JT_NAME,        /* str/len */
    TB_JT_STRING,      /* unescaped literal: str/len */
    TB_JT_INT,         /* ival */
    TB_JT_FLOAT,       /* fval */
    TB_JT_OP,          /* op: one of the TB_JOP_* below */
} tb_jtok_type_t;

typedef enum {
    TB_JOP_ADD = 1,
    TB_JOP_SUB,
    TB_JOP_DIV,
    TB_JOP_FLOORDIV,
    TB_JOP_MUL,
    TB_JOP_MOD,
    TB_JOP_POW,
    TB_JOP_TILDE,
    TB_JOP_LBRACKET,
    TB_JOP_RBRACKET,
    TB_JOP_LPAREN,
    TB_JOP_RPAREN,
    TB_JOP_LBRACE,
    TB_JOP_RBRACE,
    TB_JOP_EQ,
    TB_JOP_NE,
    TB_JOP_GT,
    TB_JOP_GTEQ,
    TB_JOP_LT,
    TB_JOP_LTEQ,
    TB_JOP_ASSIGN,
    TB_JOP_DOT,
    TB_JOP_COLON,
    TB_JOP_PIPE,
    TB_JOP_COMMA,
    TB_JOP_SEMICOLON,
} tb_jop_t;

typedef struct {
    uint8_t type;
    uint8_t op;
    uint32_t line, col;
    const char *str; /* arena-owned, NUL-terminated */
    size_t len;
    int64_t ival;
    double fval;
} tb_jtok_t;

typedef struct {
    tb_jtok_t *v;
    size_t n;
} tb_jtoks_t;

/* Tokenizes `len` bytes of valid UTF-8.  On success returns 0 and fills `out` (arena-owned,
 * ending with TB_JT_EOF).  On failure returns TB_EINVAL or TB_ENOMEM with "LINE:COL: message"
 * in err. */
int tb_jinja_lex(tb_jarena_t *arena, const char *src, size_t len, tb_jtoks_t *out, char *err,
                 size_t err_len);

/* Printable name of a token, for syntax errors ("'endfor'", "end of template", ...). */
void tb_jtok_describe(const tb_jtok_t *t, char *buf, size_t size);

#endif /* TB_JINJA_LEXER_H */
