/*
 * tb_stop_matcher.h - stop strings across token boundaries.
 *
 * Generated text arrives in pieces; a stop string may span several.  The matcher releases text
 * only when no stop string can begin in it, holds back the shortest tail that could still
 * become one, and reports the first stop string completed: everything before it is released,
 * the stop string itself and anything after it never are (OpenAI's rule).  Held text never ends
 * inside a UTF-8 character that the input had whole.
 *
 * Not thread-safe: one per request.
 */
#ifndef TB_STOP_MATCHER_H
#define TB_STOP_MATCHER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tb_stop_matcher tb_stop_matcher_t;

/* A matcher for `n` stop strings (copied; empty strings are ignored).  Caller owns *out;
 * destroy with tb_stop_matcher_destroy.  0 or TB_ENOMEM. */
int tb_stop_matcher_new(const char *const *stops, size_t n, tb_stop_matcher_t **out);
void tb_stop_matcher_destroy(tb_stop_matcher_t **m_p);

/* Feeds `len` bytes.  *out / *out_len receive the text now released (borrowed until the next
 * call).  Returns 1 when a stop string completed (the matcher then releases nothing more),
 * 0 otherwise, TB_ENOMEM on allocation failure. */
int tb_stop_matcher_push(tb_stop_matcher_t *m, const char *text, size_t len, const char **out,
                         size_t *out_len);

/* Releases whatever is held (the generation ended without a stop string). */
void tb_stop_matcher_flush(tb_stop_matcher_t *m, const char **out, size_t *out_len);

/* Which stop string matched (index into the strings given), or -1. */
int tb_stop_matcher_which(const tb_stop_matcher_t *m);

#endif /* TB_STOP_MATCHER_H */
