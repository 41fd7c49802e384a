/*
 * tb_pp_usage.h - one request's usage as the preprocessor reports it: prompt tokens (after the
 * chat template), completion tokens (ids the engine generated, up to and including the one that
 * completed a stop string) and cached tokens (prompt tokens the engine found in its prefix
 * cache, as it reports them).  Plain data; one per request.
 */
#ifndef TB_PP_USAGE_H
#define TB_PP_USAGE_H

#include <stddef.h>
#include <stdint.h>

#include "tb_msgs.h"

struct tb_pp_usage {
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens; /* 0 until the engine reports some */
};

/* Starts counting for a prompt of `prompt_tokens` ids. */
void tb_pp_usage_init(struct tb_pp_usage *u, size_t prompt_tokens);
/* Counts `n` generated ids. */
void tb_pp_usage_add_completion(struct tb_pp_usage *u, size_t n);
/* Takes what the engine reported in a chunk (NULL accepted): its cached tokens. */
void tb_pp_usage_engine(struct tb_pp_usage *u, const struct tb_msg_usage *engine);
/* The usage message of the final chunk (cached_tokens set only when the engine reported some). */
struct tb_msg_usage tb_pp_usage_message(const struct tb_pp_usage *u);

#endif /* TB_PP_USAGE_H */
