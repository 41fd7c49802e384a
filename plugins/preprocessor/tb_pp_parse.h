/*
 * tb_pp_parse.h - one request's answer split into its parts: the text out of tb_pp_text goes
 * through the reasoning parser (the model's thinking apart) and then, for requests with tools,
 * the tool-call parser (calls apart from the content).  Counts the completion tokens that were
 * reasoning.  Either parser may be absent.
 *
 * Not thread-safe: one per request.
 */
#ifndef TB_PP_PARSE_H
#define TB_PP_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_msgs.h"
#include "tb_reasoning_parser.h"
#include "tb_tool_parser.h"

typedef struct tb_pp_parse tb_pp_parse_t;

struct tb_pp_parse_config {
    tb_reasoning_format_t reasoning; /* NONE: no reasoning split */
    bool think_open;                 /* the prompt opened the reasoning block */
    tb_tool_format_t tools_format;   /* NONE: no tool calls parsed */
    const json_t *tools;             /* the request's tools (borrowed during new) */
    bool stream;                     /* release tool-call arguments as they come */
    uint64_t seed;                   /* for the call ids */
};

/* Caller owns *out (tb_pp_parse_destroy).  0 or TB_ENOMEM. */
int tb_pp_parse_new(const struct tb_pp_parse_config *cfg, tb_pp_parse_t **out);
void tb_pp_parse_destroy(tb_pp_parse_t **p_p);

/* The text of one generated token (`counted`: it is a completion token; text may be empty).
 * 0 or TB_ENOMEM. */
int tb_pp_parse_push(tb_pp_parse_t *p, const char *text, size_t len, bool counted);

/* The answer ended: releases what the parsers hold.  0 or TB_ENOMEM. */
int tb_pp_parse_finish(tb_pp_parse_t *p);

/* What was released since the last take, put into `c` (text, reasoning, tool_calls; borrowed
 * until the next call on `p`).  0 or TB_ENOMEM. */
int tb_pp_parse_take(tb_pp_parse_t *p, struct tb_msg_gen_chunk *c);

/* Tool calls released so far, and completion tokens that were reasoning. */
size_t tb_pp_parse_calls(const tb_pp_parse_t *p);
int64_t tb_pp_parse_reasoning_tokens(const tb_pp_parse_t *p);
bool tb_pp_parse_has_reasoning(const tb_pp_parse_t *p);

#endif /* TB_PP_PARSE_H */
