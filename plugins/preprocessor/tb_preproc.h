/*
 * tb_preproc.h - the preprocessor (Dynamo's "processor"): owns one model's tokenizer and chat
 * template, turns text-level generation requests into token requests for engines, and the
 * engines' token streams back into text.
 *
 * It serves `<ns>.<component>.generate` (kind "text", the model's served name) only while at
 * least one engine instance of kind "tokens" serves that model, so the http frontend lists the
 * model exactly while it can be served; and `<ns>.<component>.tokenize` (kind "tokenize") always.
 * Per request: chat template or prompt, tokenize, check the context length, ask the router
 * which engine instance serves the tokens and call exactly that one (without a router: the
 * engines in turn, a fallback logged and counted), stream ids in and text out through a
 * streaming detokenizer and a stop-string matcher, count usage.  A cancel from the caller
 * cancels the engine call.
 */
#ifndef TB_PREPROC_H
#define TB_PREPROC_H

#include <stdbool.h>
#include <stdint.h>

#include "tb_plugin.h"

struct tb_preproc_config {
    const char *served_model_name;
    const char *model;         /* HF folder or .gguf: tokenizer and chat template */
    const char *chat_template; /* optional file overriding the model's template */
    const char *router;        /* optional router component name */
    int64_t context_length;    /* 0: the smallest the engines announce */
    double request_timeout_s;  /* whole request, engine included */
    int64_t migration_limit;   /* times a request may move after its stream broke (0: never) */
    int tool_call_parser;      /* index into TB_PREPROC_TOOL_PARSERS: 0 auto, 1 none, 2... */
    int reasoning_parser;      /* index into TB_PREPROC_REASONING_PARSERS: 0 auto, 1 none, 2... */
};

/* The choices of the two config keys (NULL-terminated initializers). */
#define TB_PREPROC_TOOL_PARSERS                                                                  \
    {                                                                                            \
        "auto", "none", "hermes", "llama3_json", "mistral", "deepseek_v3", NULL                  \
    }
#define TB_PREPROC_REASONING_PARSERS                                                             \
    {                                                                                            \
        "auto", "none", "think", "deepseek_r1", "qwen3", NULL                                    \
    }

typedef struct tb_preproc tb_preproc_t;

/* Loads the tokenizer and chat template.  On failure: host->set_error and a TB_E* code. */
int tb_preproc_new(const struct tb_host *host, tb_component_t *comp,
                   const struct tb_preproc_config *cfg, tb_preproc_t **out);
int tb_preproc_start(tb_preproc_t *p);
size_t tb_preproc_in_flight(tb_preproc_t *p);
void tb_preproc_stop(tb_preproc_t *p);
void tb_preproc_destroy(tb_preproc_t **p_p);

#endif /* TB_PREPROC_H */
