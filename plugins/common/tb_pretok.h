/*
 * tb_pretok.h - pre-tokenizers: split a normalized piece of text into the words the BPE model
 * encodes one by one.  A pre-tokenizer is a sequence of steps, each applied to every piece the
 * previous step produced:
 *
 *   split        a regex or literal pattern; what happens to the matches is the behavior
 *                (removed, isolated, merged with the previous or next piece, contiguous), and
 *                `invert` swaps matches and the text between them
 *   byte_level   optional prefix space, optional GPT-2 split regex, then every byte becomes its
 *                byte-level character (U+0120 'Ġ' for a space, ...)
 *   metaspace    spaces become the replacement character (U+2581), which is prepended
 *                (always, only to the text's first piece, or never) and split on
 *   digits, punctuation, whitespace, whitespace_split   as in Hugging Face `tokenizers`
 *
 * GGUF vocabularies are described with the same steps (one isolated split per llama.cpp regex,
 * then byte_level without its regex).  Built once, then immutable and shareable by threads.
 */
#ifndef TB_PRETOK_H
#define TB_PRETOK_H

#include <stdbool.h>
#include <stddef.h>

#include "tb_buf.h"
#include "tb_tok_buf.h"
#include "tb_tok_regex.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_pretok tb_pretok_t;

typedef enum {
    TB_SPLIT_REMOVED = 0,
    TB_SPLIT_ISOLATED = 1,
    TB_SPLIT_MERGED_WITH_PREVIOUS = 2,
    TB_SPLIT_MERGED_WITH_NEXT = 3,
    TB_SPLIT_CONTIGUOUS = 4,
} tb_split_behavior_t;

typedef enum {
    TB_PREPEND_ALWAYS = 0,
    TB_PREPEND_FIRST = 1,
    TB_PREPEND_NEVER = 2,
} tb_prepend_scheme_t;

/* The pieces of one text: pieces[i] is text.ptr[spans.a[i].start .. spans.a[i].end). */
struct tb_pretok_words {
    struct tb_buf text;
    struct tb_tok_spans spans;
};

/* Per-thread scratch; zero-initialise, release with tb_pretok_work_release.  `out` holds the
 * result of the last tb_pretok_run. */
struct tb_pretok_work {
    struct tb_pretok_words out;
    struct tb_pretok_words tmp;
    struct tb_tok_spans matches;
};

/* An empty pre-tokenizer (one word: the whole text).  Caller owns *out; destroy with
 * tb_pretok_destroy.  0 or TB_ENOMEM. */
int tb_pretok_new(tb_pretok_t **out);
void tb_pretok_destroy(tb_pretok_t **p_p);

/* Steps.  0, TB_ENOMEM or TB_EINVAL with a message in err (bad regex). */
int tb_pretok_add_split(tb_pretok_t *p, const char *pattern, size_t len, bool regex,
                        tb_split_behavior_t behavior, bool invert, char *err, size_t err_len);
int tb_pretok_add_byte_level(tb_pretok_t *p, bool add_prefix_space, bool use_regex);
int tb_pretok_add_metaspace(tb_pretok_t *p, const char *replacement, size_t len,
                            tb_prepend_scheme_t scheme, bool split);
int tb_pretok_add_digits(tb_pretok_t *p, bool individual);
int tb_pretok_add_punctuation(tb_pretok_t *p, tb_split_behavior_t behavior);
int tb_pretok_add_whitespace(tb_pretok_t *p);
int tb_pretok_add_whitespace_split(tb_pretok_t *p);

/* Splits text[0..len) (valid UTF-8).  `first`: the text starts the input (what the metaspace
 * "first" scheme tests).  The words land in w->out; empty words are dropped.  0, TB_ENOMEM or
 * TB_EINTERNAL. */
int tb_pretok_run(const tb_pretok_t *p, const char *text, size_t len, bool first,
                  struct tb_pretok_work *w);

void tb_pretok_work_release(struct tb_pretok_work *w);

#ifdef __cplusplus
}
#endif

#endif /* TB_PRETOK_H */
