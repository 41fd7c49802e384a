/*
 * tb_tok_regex.h - the tokenizers' regular expressions: PCRE2 in UTF + UCP mode, JIT-compiled
 * where available, with the match iteration the pre-tokenizers need.
 *
 * Patterns are the ones tokenizer.json and llama.cpp use (Oniguruma / Perl syntax).  One
 * adjustment keeps `\s` equal to Unicode White_Space as those engines define it: PCRE2 leaves
 * out U+0085, so `\s` and `\S` are widened to include it.
 *
 * A compiled regex is immutable and may be shared by threads.
 */
#ifndef TB_TOK_REGEX_H
#define TB_TOK_REGEX_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_tok_regex tb_tok_regex_t;

/* One match: bytes [start, end). */
struct tb_tok_span {
    size_t start;
    size_t end;
};

/* Growable list of spans; zero-initialise, release with tb_tok_spans_release. */
struct tb_tok_spans {
    struct tb_tok_span *a;
    size_t n;
    size_t cap;
};

/* Compiles `pattern` (len bytes).  `literal`: match the text as is, no regex syntax.  Caller owns
 * *out; destroy with tb_tok_regex_destroy.  TB_EINVAL with the PCRE2 message in err for a bad
 * pattern, TB_ENOMEM. */
int tb_tok_regex_new(const char *pattern, size_t len, bool literal, tb_tok_regex_t **out,
                     char *err, size_t err_len);
void tb_tok_regex_destroy(tb_tok_regex_t **re_p);

/* Appends to `out` every non-empty, non-overlapping match in s[0..len) (valid UTF-8), left to
 * right; after an empty match the search resumes one character later.  0, TB_ENOMEM, or
 * TB_EINTERNAL when the matcher fails (match limit). */
int tb_tok_regex_find_all(const tb_tok_regex_t *re, const char *s, size_t len,
                          struct tb_tok_spans *out);

int tb_tok_spans_push(struct tb_tok_spans *sp, size_t start, size_t end);
void tb_tok_spans_release(struct tb_tok_spans *sp);

#ifdef __cplusplus
}
#endif

#endif /* TB_TOK_REGEX_H */
