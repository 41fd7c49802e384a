/*
 * tb_tok_norm.h - text normalizers applied before pre-tokenization, as tokenizer.json declares
 * them: a sequence of Prepend, Replace (literal or regex), NFC/NFD/NFKC/NFKD, Lowercase, Strip
 * and StripAccents steps.  Unicode normalization and case mapping come from utf8proc.
 *
 * Built once, then immutable and shareable between threads.
 */
#ifndef TB_TOK_NORM_H
#define TB_TOK_NORM_H

#include <stdbool.h>
#include <stddef.h>

#include "tb_buf.h"
#include "tb_tok_buf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_tok_norm tb_tok_norm_t;

typedef enum {
    TB_TOK_NFC = 0,
    TB_TOK_NFD = 1,
    TB_TOK_NFKC = 2,
    TB_TOK_NFKD = 3,
} tb_tok_nf_t;

/* An empty sequence (normalizes nothing).  Caller owns *out; destroy with
 * tb_tok_norm_destroy.  0 or TB_ENOMEM. */
int tb_tok_norm_new(tb_tok_norm_t **out);
void tb_tok_norm_destroy(tb_tok_norm_t **n_p);

/* Steps, applied in the order added.  Strings are copied.  0, TB_ENOMEM, or TB_EINVAL with a
 * message in err (a bad regex). */
int tb_tok_norm_add_prepend(tb_tok_norm_t *n, const char *s, size_t len);
int tb_tok_norm_add_replace(tb_tok_norm_t *n, const char *pattern, size_t plen, bool regex,
                            const char *content, size_t clen, char *err, size_t err_len);
int tb_tok_norm_add_unicode(tb_tok_norm_t *n, tb_tok_nf_t form);
int tb_tok_norm_add_lowercase(tb_tok_norm_t *n);
int tb_tok_norm_add_strip(tb_tok_norm_t *n, bool left, bool right);
int tb_tok_norm_add_strip_accents(tb_tok_norm_t *n);

/* True when the sequence has no steps. */
bool tb_tok_norm_is_empty(const tb_tok_norm_t *n);

/* Normalizes in[0..len) (valid UTF-8) into `out` (cleared first).  0, TB_ENOMEM or
 * TB_EINTERNAL. */
int tb_tok_norm_apply(const tb_tok_norm_t *n, const char *in, size_t len, struct tb_buf *out);

#ifdef __cplusplus
}
#endif

#endif /* TB_TOK_NORM_H */
