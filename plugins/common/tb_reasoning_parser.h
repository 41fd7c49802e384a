/*
 * tb_reasoning_parser.h - a model's thinking apart from its answer, incrementally: the text of
 * an answer is pushed in pieces of any size; what comes out is reasoning text (inside
 * <think>...</think>, the markers left out) and content (the rest).
 *
 * Models: DeepSeek-R1 and its distills, Qwen3, QwQ.  The block may open in the prompt (the R1
 * distill templates end the generation prompt with "<think>\n"): then the answer starts inside
 * it (tb_reasoning_prompt_opens tells).  Otherwise a block counts only at the start of the answer
 * (after whitespace).  Whitespace right after <think> and right after </think> is dropped.  A
 * block that never closes (cut by max_tokens) is reasoning to its end, and the content is empty.
 *
 * Not thread-safe: one parser per answer.
 */
#ifndef TB_REASONING_PARSER_H
#define TB_REASONING_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TB_REASONING_NONE = 0,
    TB_REASONING_THINK, /* <think>...</think> */
} tb_reasoning_format_t;

/* The format named `name`: "none", "think", or vLLM's names for it, "deepseek_r1" and "qwen3".
 * TB_EINVAL when unknown. */
int tb_reasoning_format_from_name(const char *name, tb_reasoning_format_t *out);

/* The format a chat template's source shows (it writes </think>), or NONE. */
tb_reasoning_format_t tb_reasoning_format_from_template(const char *src, size_t len);

/* True when a rendered prompt leaves a <think> block open (its last <think> is after its last
 * </think>). */
bool tb_reasoning_prompt_opens(const char *prompt, size_t len);

typedef struct tb_reasoning_parser tb_reasoning_parser_t;

/* A parser; `opened`: the prompt opened the block.  Caller owns *out (destroy).  0 or
 * TB_ENOMEM. */
int tb_reasoning_parser_new(bool opened, tb_reasoning_parser_t **out);
void tb_reasoning_parser_destroy(tb_reasoning_parser_t **p_p);

/* Pushes more of the answer.  0 or TB_ENOMEM. */
int tb_reasoning_parser_push(tb_reasoning_parser_t *p, const char *text, size_t len);
/* The answer ended: releases what is held.  0 or TB_ENOMEM. */
int tb_reasoning_parser_finish(tb_reasoning_parser_t *p);

/* True while the text read so far is inside the block. */
bool tb_reasoning_parser_in_reasoning(const tb_reasoning_parser_t *p);

/* Reasoning and content released since the last take: NUL-terminated, NULL when empty.
 * Borrowed until the next call on `p`. */
const char *tb_reasoning_parser_reasoning(const tb_reasoning_parser_t *p, size_t *len);
const char *tb_reasoning_parser_content(const tb_reasoning_parser_t *p, size_t *len);
/* Empties both. */
void tb_reasoning_parser_take(tb_reasoning_parser_t *p);

#ifdef __cplusplus
}
#endif

#endif /* TB_REASONING_PARSER_H */
