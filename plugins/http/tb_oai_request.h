/*
 * tb_oai_request.h - decoding and validating an OpenAI request body (POST /v1/chat/completions,
 * POST /v1/completions) into a gen_request message, with OpenAI-style errors.
 *
 * Pure: no I/O, no host services; uses jansson to parse.  Everything a decoded request points to
 * (strings, arrays) lives in the request and is freed with it.  Unknown top-level fields are
 * ignored, as OpenAI-compatible servers do; known fields are checked for type and range, and a
 * failure names the parameter (`param`) with a 400 status.
 */
#ifndef TB_OAI_REQUEST_H
#define TB_OAI_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tb_msgs.h"

typedef enum {
    TB_OAI_CHAT = 1,        /* /v1/chat/completions */
    TB_OAI_COMPLETIONS = 2, /* /v1/completions */
    TB_OAI_TOKENIZE = 3,    /* /tokenize (tb_http_tok.c; not a tb_oai_request_parse API) */
    TB_OAI_DETOKENIZE = 4,  /* /detokenize (likewise) */
} tb_oai_api_t;

/* An error as the API reports it: {"error":{"message","type","param","code"}} with `status`. */
struct tb_oai_error {
    int status;       /* HTTP status */
    const char *type; /* static: "invalid_request_error", "server_error", ... */
    const char *code; /* static or NULL: "model_not_found", "invalid_value", ... */
    char param[128];  /* "" when no single parameter is at fault */
    char message[640];
};

/* Fills `e` (any previous content is replaced).  `param` may be NULL. */
void tb_oai_error_set(struct tb_oai_error *e, int status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Limits the decoder enforces (OpenAI's, where it documents them). */
#define TB_OAI_MAX_STOP 4
#define TB_OAI_MAX_TOP_LOGPROBS_CHAT 20
#define TB_OAI_MAX_LOGPROBS_COMPLETIONS 5
/* Choices one request may ask for (`n`): each is one engine call (docs/http.md). */
#define TB_OAI_MAX_N 16
/* Completions default to 16 new tokens when max_tokens is absent (OpenAI's default). */
#define TB_OAI_COMPLETIONS_DEFAULT_MAX_TOKENS 16

struct tb_oai_req_priv;

/* A decoded request.  Read-only for callers. */
struct tb_oai_request {
    tb_oai_api_t api;
    const char *model;
    bool stream;
    bool include_usage;   /* stream_options.include_usage */
    bool logprobs;        /* the answer must carry log-probabilities */
    int64_t top_logprobs; /* alternatives per position (0..20) */
    bool echo;            /* completions: the answer starts with the prompt */
    int64_t n;            /* choices asked for; 0 when absent (one) */
    /* Ready to encode; request_id is NULL (the server assigns it).  mode is "chat" or
     * "completion"; a completion prompt given as token ids fills `tokens`. */
    struct tb_msg_gen_request gen;
    struct tb_oai_req_priv *priv;
};

/* Decodes `len` bytes of `body` for `api`.  On success *out is owned by the caller (destroy with
 * tb_oai_request_destroy) and 0 is returned.  On failure *out is NULL, `err` says why (status 400
 * for every client mistake) and the return is TB_EINVAL, or TB_ENOMEM (status 500). */
int tb_oai_request_parse(tb_oai_api_t api, const void *body, size_t len,
                         struct tb_oai_request **out, struct tb_oai_error *err);

/* A copy of `s` that lives as long as the request (its arena), or NULL when out of memory.
 * For the field decoders (tb_oai_tools.c). */
const char *tb_oai_request_keep_string(struct tb_oai_request *r, const char *s);

/* The parsed body (borrowed, lives as long as the request). */
json_t *tb_oai_request_body(const struct tb_oai_request *r);

/* Frees the request; sets *r_p to NULL; accepts NULL. */
void tb_oai_request_destroy(struct tb_oai_request **r_p);

#endif /* TB_OAI_REQUEST_H */
