/*
 * tb_oai_response.h - OpenAI response bodies: error objects, complete (non-streamed) answers,
 * server-sent event frames of streamed answers, log-probability objects.
 *
 * Pure: no I/O, no host services.  jansson escapes every string that goes into a body.  A stream
 * precomputes the part of each frame that never changes (id, model, created, fingerprint), so a
 * token costs one escaped copy of its text into the frame buffer and nothing else.
 */
#ifndef TB_OAI_RESPONSE_H
#define TB_OAI_RESPONSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_buf.h"
#include "tb_msgs.h"
#include "tb_oai_request.h"

/* The fixed facts of one answer.  Strings are borrowed for the calls that take them. */
struct tb_oai_head {
    tb_oai_api_t api;
    const char *id; /* "chatcmpl-...", "cmpl-..." */
    const char *model;
    int64_t created;         /* unix seconds */
    const char *fingerprint; /* system_fingerprint */
};

/* Token counts of a finished answer. */
struct tb_oai_usage {
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    bool has_cached_tokens;
    int64_t reasoning_tokens; /* completion_tokens_details.reasoning_tokens */
    bool has_reasoning_tokens;
};

/* Appends `len` bytes of `s` as a JSON string literal, quotes included.  Invalid UTF-8 is
 * replaced by U+FFFD so the body stays valid JSON.  0 or TB_ENOMEM. */
int tb_oai_json_string(struct tb_buf *b, const char *s, size_t len);

/* The error body {"error":{"message","type","param","code"}}.  Caller frees the result (malloc);
 * NULL when out of memory. */
char *tb_oai_error_body(const struct tb_oai_error *e, size_t *len_out);

/* ---- log-probabilities, accumulated across chunks ---- */

typedef struct tb_oai_logprobs tb_oai_logprobs_t;

/* A collector in the shape `api` answers with: chat {"content":[...]}, completions {"tokens",
 * "token_logprobs", "top_logprobs", "text_offset"}.  `top_n` alternatives are kept per position.
 * Caller owns it; NULL when out of memory. */
tb_oai_logprobs_t *tb_oai_logprobs_new(tb_oai_api_t api, int top_n);
void tb_oai_logprobs_destroy(tb_oai_logprobs_t **lp_p);
/* Adds positions.  `text_offset` (completions) is where the first one starts in the answer's
 * text; it advances by each token's text length.  0 or TB_ENOMEM. */
int tb_oai_logprobs_add(tb_oai_logprobs_t *lp, const struct tb_msg_token_logprob *v, size_t n);
/* The object built so far (borrowed, owned by the collector). */
json_t *tb_oai_logprobs_json(const tb_oai_logprobs_t *lp);
/* Empties the collector (streams send each chunk's positions once). */
void tb_oai_logprobs_clear(tb_oai_logprobs_t *lp);
/* Moves the completions text offset (echo puts the prompt first). */
void tb_oai_logprobs_skip(tb_oai_logprobs_t *lp, size_t bytes);

/* ---- reasoning and tool calls, accumulated across chunks (complete answers) ---- */

typedef struct tb_oai_parts tb_oai_parts_t;

/* A collector of a chat answer's reasoning text and tool calls.  Caller owns it; NULL when out
 * of memory. */
tb_oai_parts_t *tb_oai_parts_new(void);
void tb_oai_parts_destroy(tb_oai_parts_t **p_p);
/* Adds a chunk's reasoning and tool-call deltas (a call's first delta starts it; the next ones
 * append to its arguments).  0 or TB_ENOMEM. */
int tb_oai_parts_add(tb_oai_parts_t *p, const struct tb_msg_gen_chunk *c);

/* ---- complete answers ---- */

/* The body of a non-streamed answer: chat.completion or text_completion with one choice whose
 * text is `text` (`len` bytes), `finish_reason`, `logprobs` (NULL: null) and `usage`.  Caller
 * frees the result; NULL when out of memory. */
char *tb_oai_final_body(const struct tb_oai_head *h, const char *text, size_t len,
                        const char *finish_reason, json_t *logprobs,
                        const struct tb_oai_usage *usage, size_t *len_out);

/* The same for a chat answer with reasoning and tool calls (`parts` NULL: none): the message
 * carries "reasoning_content" and "reasoning" (the same text) when there was reasoning,
 * "tool_calls" when there were calls, and "content": null when its text is empty beside them. */
char *tb_oai_final_body_parts(const struct tb_oai_head *h, const char *text, size_t len,
                              const tb_oai_parts_t *parts, const char *finish_reason,
                              json_t *logprobs, const struct tb_oai_usage *usage,
                              size_t *len_out);

/* One choice of a complete answer (strings borrowed; `parts`, `logprobs` NULL: none). */
struct tb_oai_choice {
    const char *text;
    size_t len;
    const tb_oai_parts_t *parts;
    const char *finish_reason;
    json_t *logprobs;
};

/* The same with `n` choices, index 0..n-1 in order (`n` > 1: the request's `n`). */
char *tb_oai_final_body_choices(const struct tb_oai_head *h, const struct tb_oai_choice *c,
                                size_t n, const struct tb_oai_usage *usage, size_t *len_out);

/* ---- streamed answers ---- */

typedef struct tb_oai_stream tb_oai_stream_t;

/* A stream for `h` (copied).  `include_usage`: every chunk carries "usage":null and a last chunk
 * with empty choices carries the usage.  Caller owns it; NULL when out of memory. */
tb_oai_stream_t *tb_oai_stream_new(const struct tb_oai_head *h, bool include_usage);
void tb_oai_stream_destroy(tb_oai_stream_t **s_p);

/* Each function appends complete "data: ...\n\n" frames to `out`; 0 or TB_ENOMEM. */

/* The opening frame: chat sends the assistant role with empty content; completions nothing. */
int tb_oai_stream_open(tb_oai_stream_t *s, struct tb_buf *out);
/* New text (and its log-probabilities, NULL for none). */
int tb_oai_stream_text(tb_oai_stream_t *s, struct tb_buf *out, const char *text, size_t len,
                       json_t *logprobs);
/* A chunk's reasoning (delta "reasoning_content" and "reasoning") and tool-call deltas (delta
 * "tool_calls": index, and id, type and name in a call's first delta, arguments), one frame each
 * when present; chat only. */
int tb_oai_stream_parts(tb_oai_stream_t *s, struct tb_buf *out, const struct tb_msg_gen_chunk *c);
/* The choice index the next frames carry (0 until set).  0 or TB_ENOMEM. */
int tb_oai_stream_set_index(tb_oai_stream_t *s, size_t index);
/* One choice's finishing frame. */
int tb_oai_stream_finish_choice(tb_oai_stream_t *s, struct tb_buf *out,
                                const char *finish_reason);
/* The usage frame when asked for, then "data: [DONE]": after every choice finished. */
int tb_oai_stream_end(tb_oai_stream_t *s, struct tb_buf *out, const struct tb_oai_usage *usage);
/* The finishing frame, the usage frame when asked for, then "data: [DONE]". */
int tb_oai_stream_finish(tb_oai_stream_t *s, struct tb_buf *out, const char *finish_reason,
                         const struct tb_oai_usage *usage);
/* An error event {"error":{...}} then "data: [DONE]": how a stream that already started fails. */
int tb_oai_stream_error(tb_oai_stream_t *s, struct tb_buf *out, const struct tb_oai_error *e);

#endif /* TB_OAI_RESPONSE_H */
