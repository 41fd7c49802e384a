/*
 * tb_tokenizer_impl.h - the tokenizer's internals, shared by tb_tokenizer.c (encode, accessors),
 * the two loaders (tb_tokenizer_hf.c, tb_tokenizer_gguf.c) and tb_detok.c.  Not a public header.
 *
 * A loader allocates the tokenizer with tb_tokenizer_alloc, fills the vocabulary, attributes,
 * model, normalizer, pre-tokenizer, added tokens, post-processor ids and special ids, then calls
 * tb_tokenizer_finish with the decoder description.
 */
#ifndef TB_TOKENIZER_IMPL_H
#define TB_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_bpe.h"
#include "tb_buf.h"
#include "tb_errors.h"
#include "tb_pretok.h"
#include "tb_tok_buf.h"
#include "tb_tok_norm.h"
#include "tb_tok_vocab.h"
#include "tb_tokenizer.h"

/* Token attributes (per id). */
#define TB_TOK_ATTR_NORMAL 0x01
#define TB_TOK_ATTR_UNKNOWN 0x02
#define TB_TOK_ATTR_CONTROL 0x04
#define TB_TOK_ATTR_USER 0x08    /* user-defined (GGUF) */
#define TB_TOK_ATTR_BYTE 0x10    /* "<0xXX>" byte token */
#define TB_TOK_ATTR_SPECIAL 0x20 /* left out by decode(skip_special) */
#define TB_TOK_ATTR_ADDED 0x40   /* an added token (matched in text before the model runs) */
#define TB_TOK_ATTR_RAW 0x80     /* decodes to its piece as is, bypassing the decoder */
#define TB_TOK_ATTR_EMPTY 0x100  /* decodes to nothing (GGUF unused and undefined tokens) */

/* An added token: matched in the text (leftmost-longest) before normalization (raw) or after it
 * (normalized: `content` holds the normalized form). */
struct tb_tok_added {
    int32_t id;
    char *content;
    size_t len;
    bool special;
    bool lstrip;
    bool rstrip;
    bool single_word;
    bool normalized;
};

/* A byte trie over added-token contents. */
struct tb_tok_trie_node {
    int32_t child;   /* first child, -1 none */
    int32_t sibling; /* next sibling, -1 none */
    int32_t added;   /* index into tok->added ending here, -1 none */
    uint8_t byte;
};

struct tb_tok_trie {
    struct tb_tok_trie_node *nodes;
    size_t n;
    size_t cap;
    bool first[256];
};

/* Decoder steps as tokenizer.json lists them. */
typedef enum {
    TB_DEC_REPLACE = 0,       /* pattern -> content in each token */
    TB_DEC_BYTE_FALLBACK = 1, /* "<0xXX>" tokens become the raw byte */
    TB_DEC_BYTE_LEVEL = 2,    /* byte-level characters back to bytes (fuses) */
    TB_DEC_METASPACE = 3,     /* replacement -> ' '; in the first token dropped when prepend */
    TB_DEC_STRIP = 4,         /* strip up to start/stop `cp` characters */
    TB_DEC_FUSE = 5,          /* tokens become one string */
} tb_dec_kind_t;

struct tb_dec_step {
    tb_dec_kind_t kind;
    const char *pattern; /* REPLACE (borrowed during tb_tokenizer_finish) */
    size_t pattern_len;
    const char *content; /* REPLACE */
    size_t content_len;
    uint32_t cp;        /* STRIP content, METASPACE replacement */
    size_t start, stop; /* STRIP */
    bool prepend;       /* METASPACE: prepend_scheme is not "never" */
};

struct tb_tokenizer {
    tb_tokenizer_kind_t kind;
    bool gguf; /* llama.cpp rules: special tokens are not even matched when !parse_special */
    tb_tok_vocab_t *vocab;
    uint16_t *attr;
    float *scores;
    tb_bpe_t *bpe;
    tb_tok_norm_t *norm;
    tb_pretok_t *pretok;
    struct tb_tok_added *added;
    size_t n_added;
    struct tb_tok_trie raw_trie;
    struct tb_tok_trie norm_trie;
    struct tb_tok_ids prefix; /* post-processor, with add_special */
    struct tb_tok_ids suffix;
    struct tb_tok_ids eos_ids;
    int32_t bos;
    int32_t eos;
    bool adds_bos;
    bool adds_eos;
    /* Decoder tables: the bytes each id contributes, and for a first token when they differ. */
    struct tb_buf dec_arena;
    uint32_t *dec_off;
    uint32_t *dec_len;
    uint32_t *dec_first_off; /* NULL when the first token decodes like the others */
    uint32_t *dec_first_len;
    uint32_t strip_cp; /* whole-text strip at the start (Strip after Fuse) */
    size_t strip_n;
    bool dec_join; /* no decoder: pieces joined with spaces */
};

/* Allocates a tokenizer with an empty vocabulary of n ids (attributes zero, scores zero).
 * Caller owns *out (tb_tokenizer_destroy).  0, TB_ENOMEM or TB_E2BIG. */
int tb_tokenizer_alloc(size_t n, tb_tokenizer_t **out);

/* Registers an added token (content copied) and marks its id ADDED (+SPECIAL when special).
 * 0 or TB_ENOMEM. */
int tb_tokenizer_add_added(tb_tokenizer_t *tok, int32_t id, const char *content, size_t len,
                           bool special, bool lstrip, bool rstrip, bool single_word,
                           bool normalized);

/* Completes loading: normalizes the contents of normalized added tokens, builds the tries and
 * the decoder tables from `steps` (NULL/0: no decoder), de-duplicates the EOS list.
 * 0, TB_ENOMEM or TB_ENOTSUP with a message in err. */
int tb_tokenizer_finish(tb_tokenizer_t *tok, const struct tb_dec_step *steps, size_t n_steps,
                        char *err, size_t err_len);

/* The bytes id contributes to decoded text; `first`: it is the first token decoded. */
const char *tb_tok_dec_bytes(const tb_tokenizer_t *tok, int32_t id, bool first, size_t *len);

#endif /* TB_TOKENIZER_IMPL_H */
