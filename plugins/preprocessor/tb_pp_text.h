/*
 * tb_pp_text.h - one request's text out: the engine's generated ids go through a streaming
 * detokenizer (whole UTF-8 characters only; a continuation of the prompt keeps its leading space)
 * and then the stop-string matcher (text that could still become a stop string is held back; a
 * completed stop string ends the text, itself not included).  The text released by each push
 * accumulates until tb_pp_text_take hands it to the next chunk.
 *
 * Running out of memory is an error (TB_ENOMEM) that the request must report: the text is never
 * silently cut.
 *
 * Not thread-safe: one per request.  The tokenizer must outlive it.
 */
#ifndef TB_PP_TEXT_H
#define TB_PP_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_tokenizer.h"

typedef struct tb_pp_text tb_pp_text_t;

/* Text out for a stream continuing the prompt ids[0..n_prompt) (borrowed during the call), with
 * `n_stops` stop strings (copied).  Caller owns *out; destroy with tb_pp_text_destroy.  0 or
 * TB_ENOMEM. */
int tb_pp_text_new(const tb_tokenizer_t *tok, const int32_t *prompt, size_t n_prompt,
                   const char *const *stops, size_t n_stops, tb_pp_text_t **out);
/* Frees; sets *t_p to NULL; accepts NULL. */
void tb_pp_text_destroy(tb_pp_text_t **t_p);

/* Special tokens whose text must come out even so (tool-call or reasoning markup that the
 * model's tokenizer marks special, such as Mistral's [TOOL_CALLS]): ids[0..n) copied.  0 or
 * TB_ENOMEM. */
int tb_pp_text_keep_special(tb_pp_text_t *t, const int32_t *ids, size_t n);

/* Pushes generated ids until one completes a stop string.  *used receives how many ids were
 * consumed (the one completing the stop string included: it counts as generated).  Returns 1
 * when a stop string completed (nothing more is released after it), 0 when not, TB_ENOMEM.
 * After a stop, further pushes consume nothing. */
int tb_pp_text_push(tb_pp_text_t *t, const int32_t *ids, size_t n, size_t *used);

/* The generation ended without a stop string so far: releases what the detokenizer and the
 * matcher still hold (the held tail may yet complete a stop string).  Returns 1 when a stop
 * string completed, 0, or TB_ENOMEM. */
int tb_pp_text_finish(tb_pp_text_t *t);

/* True once a stop string completed. */
bool tb_pp_text_stopped(const tb_pp_text_t *t);

/* The text released since the last take, NUL-terminated, or NULL when there is none; *len its
 * length.  Borrowed until the next call on `t`; the next push starts a new text. */
const char *tb_pp_text_take(tb_pp_text_t *t, size_t *len);

/* The text of token `id` as it reads inside a longer text (a SentencePiece space kept), for
 * logprobs.  Caller owns *out (free).  0, or TB_ENOMEM. */
int tb_pp_token_text(const tb_tokenizer_t *tok, int32_t id, char **out);

#endif /* TB_PP_TEXT_H */
