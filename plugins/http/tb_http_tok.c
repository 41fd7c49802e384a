/*
 * tb_http_tok: POST /tokenize and POST /detokenize (the shapes vLLM and llama-server offer).
 *
 * The frontend has no tokenizer: it forwards to the `tokenize` endpoint a preprocessor serves for
 * the model (route kind "tokenize") and turns the tokenize_reply into JSON:
 *   /tokenize   {"model", "prompt" | "messages", "add_special_tokens"?, "add_generation_prompt"?,
 *                "return_token_strs"?}  ->  {"count", "max_model_len", "tokens", "token_strs"}
 *   /detokenize {"model", "tokens"}     ->  {"prompt"}
 * Like a generation, the connection is suspended while the bus call runs and watched for a
 * client that goes away.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_http_int.h"

#define TOKENIZE_TIMEOUT_MS 30000

/* Sets the answer the resumed connection sends (TB_HEV_END resumes it). */
static void s_answer(struct tb_http *h, struct tb_hreq *r, char *body)
{
    free(r->resp_body);
    r->resp_status = 200;
    r->resp_body = body;
    r->resp_len = strlen(body);
    r->final_status = 200;
    tb_http_req_step(h, r, TB_HEV_END);
}

static void s_on_reply(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    struct tb_hreq *r = user;
    struct tb_http *h = r->h;
    struct tb_oai_error e;
    if (ch->kind == TB_CHUNK_DATA) {
        return;
    }
    r->call = NULL;
    if (!tb_hreq_fsm_is_upstream(r->state)) {
        return; /* late: nobody is left to answer */
    }
    if (ch->kind == TB_CHUNK_ERROR) {
        int status = ch->code == TB_EINVAL || ch->code == TB_E2BIG || ch->code == TB_ERANGE ? 400
                     : ch->code == TB_ETIMEDOUT                                             ? 504
                                                                                            : 502;
        tb_oai_error_set(&e, status, status == 400 ? "invalid_request_error" : "server_error",
                         status == 400 ? "invalid_value" : "upstream_error", NULL, "%s",
                         ch->message ? ch->message : "error");
        tb_http_req_fail(h, r, &e, false);
        return;
    }
    void *m = NULL;
    char err[256];
    if (h->host->msg_decode(TB_MSG_TOKENIZE_REPLY, ch->data, ch->len, &m, err, sizeof(err)) !=
        0) {
        tb_oai_error_set(&e, 502, "server_error", "upstream_error", NULL,
                         "unreadable answer from the preprocessor: %s", err);
        tb_http_req_fail(h, r, &e, false);
        return;
    }
    struct tb_msg_tokenize_reply *rep = m;
    json_t *o = json_object();
    if (r->api == TB_OAI_TOKENIZE) {
        json_t *toks = json_array();
        for (size_t i = 0; i < rep->tokens_count; i++) {
            json_array_append_new(toks, json_integer(rep->tokens[i]));
        }
        json_object_set_new(o, "count", json_integer((json_int_t)rep->tokens_count));
        json_object_set_new(o, "max_model_len",
                            rep->has_max_model_len ? json_integer(rep->max_model_len)
                                                   : json_null());
        json_object_set_new(o, "tokens", toks);
        if (rep->pieces_count) {
            json_t *strs = json_array();
            for (size_t i = 0; i < rep->pieces_count; i++) {
                json_array_append_new(strs, json_string(rep->pieces[i]));
            }
            json_object_set_new(o, "token_strs", strs);
        } else {
            json_object_set_new(o, "token_strs", json_null());
        }
    } else {
        json_object_set_new(o, "prompt", json_string(rep->text ? rep->text : ""));
    }
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    h->host->msg_free(&m);
    if (!body) {
        tb_oai_error_set(&e, 500, "server_error", "internal_error", NULL, "out of memory");
        tb_http_req_fail(h, r, &e, false);
        return;
    }
    s_answer(h, r, body);
}

/* The preprocessor's tokenize endpoint for `model`, round robin; false when none. */
static bool s_find(struct tb_http *h, const char *model, char *endpoint, size_t len,
                   uint64_t *instance)
{
    struct tb_route rv[64];
    int n = h->host->bus_routes_find(h->bus, NULL, model, rv, 64);
    int found = 0;
    struct tb_route pick[64];
    for (int i = 0; i < n && i < 64; i++) {
        if (strcmp(rv[i].kind, "tokenize") == 0) {
            pick[found++] = rv[i];
        }
    }
    if (found == 0) {
        return false;
    }
    const struct tb_route *p = &pick[h->id_counter++ % (uint64_t)found];
    snprintf(endpoint, len, "%s", p->endpoint);
    *instance = p->instance_id;
    return true;
}

static int s_bool(json_t *o, const char *key, bool dflt, bool *out, struct tb_oai_error *e)
{
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        tb_oai_error_set(e, 400, "invalid_request_error", "invalid_type", key,
                         "'%s' must be a boolean", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

/* Decodes the body into a tokenize_request encoded in r->msg.  0, or -1 with `e`. */
static int s_build(struct tb_http *h, struct tb_hreq *r, char *model, size_t model_len,
                   struct tb_oai_error *e)
{
    json_error_t je;
    json_t *o = json_loadb((const char *)r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &je);
    int rc = -1;
    struct tb_oai_request *oreq = NULL;
    int32_t *ids = NULL;
    if (!o || !json_is_object(o)) {
        tb_oai_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                         "the body is not a JSON object%s%s", o ? "" : ": ", o ? "" : je.text);
        goto out;
    }
    json_t *mv = json_object_get(o, "model");
    if (!json_is_string(mv) || json_string_length(mv) == 0) {
        tb_oai_error_set(e, 400, "invalid_request_error", "invalid_value", "model",
                         "'model' is required and must be a non-empty string");
        goto out;
    }
    snprintf(model, model_len, "%s", json_string_value(mv));
    struct tb_msg_tokenize_request q = {.model = model};
    if (r->api == TB_OAI_DETOKENIZE) {
        json_t *tv = json_object_get(o, "tokens");
        if (!json_is_array(tv)) {
            tb_oai_error_set(e, 400, "invalid_request_error", "invalid_value", "tokens",
                             "'tokens' is required and must be an array of token ids");
            goto out;
        }
        size_t n = json_array_size(tv);
        ids = calloc(n + 1, sizeof(*ids));
        for (size_t i = 0; ids && i < n; i++) {
            json_t *x = json_array_get(tv, i);
            if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                json_integer_value(x) > INT32_MAX) {
                tb_oai_error_set(e, 400, "invalid_request_error", "invalid_value", "tokens",
                                 "'tokens' item %zu is not a token id", i);
                goto out;
            }
            ids[i] = (int32_t)json_integer_value(x);
        }
        q.op = "detokenize";
        q.tokens = ids;
        q.tokens_count = n;
    } else {
        bool chat = json_object_get(o, "messages") != NULL;
        bool add_special, add_gen, strs;
        if (s_bool(o, "add_special_tokens", true, &add_special, e) < 0 ||
            s_bool(o, "add_generation_prompt", true, &add_gen, e) < 0 ||
            s_bool(o, "return_token_strs", false, &strs, e) < 0) {
            goto out;
        }
        /* Messages and prompts are checked exactly as for a generation. */
        if (tb_oai_request_parse(chat ? TB_OAI_CHAT : TB_OAI_COMPLETIONS, r->body.data,
                                 r->body.len, &oreq, e) != 0) {
            goto out;
        }
        q.op = "tokenize";
        q.prompt = oreq->gen.prompt;
        q.messages = oreq->gen.messages;
        q.messages_count = oreq->gen.messages_count;
        q.add_special = add_special;
        q.has_add_special = true;
        q.add_generation_prompt = add_gen;
        q.has_add_generation_prompt = true;
        q.with_pieces = strs;
        q.has_with_pieces = true;
        if (oreq->gen.tokens_count) {
            tb_oai_error_set(e, 400, "invalid_request_error", "invalid_value", "prompt",
                             "'prompt' must be text to tokenize");
            goto out;
        }
    }
    if (h->host->msg_encode(TB_MSG_TOKENIZE_REQUEST, &q, &r->msg) != 0) {
        tb_oai_error_set(e, 500, "server_error", "internal_error", NULL,
                         "cannot encode the request");
        goto out;
    }
    rc = 0;
out:
    free(ids);
    tb_oai_request_destroy(&oreq);
    json_decref(o);
    return rc;
}

enum MHD_Result tb_http_tok_begin(struct tb_http *h, struct tb_hreq *r)
{
    struct tb_oai_error e;
    if (tb_http_req_too_long(h, r, &e)) {
        return tb_http_req_refuse(h, r, &e, false, true);
    }
    tb_http_req_step(h, r, TB_HEV_ADMIT);
    tb_http_gen_link(h, r);
    return MHD_YES;
}

static enum MHD_Result s_start(struct tb_http *h, struct tb_hreq *r)
{
    struct tb_oai_error e;
    char model[256];
    char endpoint[256];
    uint64_t instance = 0;
    if (r->body_too_big) {
        tb_oai_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                         "the request body is larger than the limit of %" PRId64 " bytes",
                         h->cfg.max_body_size);
        return tb_http_req_refuse(h, r, &e, false, true);
    }
    int rc = s_build(h, r, model, sizeof(model), &e);
    tb_buf_free(&r->body);
    if (rc != 0) {
        return tb_http_req_refuse(h, r, &e, false, false);
    }
    if (!s_find(h, model, endpoint, sizeof(endpoint), &instance)) {
        tb_oai_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                         "no preprocessor tokenizes model '%.200s'", model);
        return tb_http_req_refuse(h, r, &e, false, false);
    }
    rc = h->host->bus_call(h->bus, endpoint, instance, r->msg.data, r->msg.len,
                           TOKENIZE_TIMEOUT_MS, s_on_reply, r, &r->call);
    h->bus_dirty = true;
    if (rc != 0) {
        tb_oai_error_set(&e, 503, "server_error", "no_route", NULL,
                         "the preprocessor of model '%.200s' is not reachable: %s", model,
                         h->host->strerror(rc));
        return tb_http_req_refuse(h, r, &e, true, false);
    }
    tb_http_req_step(h, r, TB_HEV_CALL);
    tb_http_suspend(h, r);
    if (!tb_http_watch(h, r)) {
        tb_http_req_client_gone(h, r);
    }
    return MHD_YES;
}

enum MHD_Result tb_http_tok_access(struct tb_http *h, struct tb_hreq *r, const char *upload,
                                   size_t *upload_size)
{
    if (*upload_size > 0) {
        return tb_http_read_body(h, r, upload, upload_size);
    }
    if (r->state == TB_HS_BODY) {
        return s_start(h, r);
    }
    if (tb_hreq_fsm_is_dead(r->state)) {
        return MHD_NO;
    }
    if (r->resp_body) {
        return tb_http_req_hand_over(h, r);
    }
    tb_http_suspend(h, r);
    return MHD_YES;
}

void tb_http_tok_completed(struct tb_http *h, struct tb_hreq *r)
{
    tb_http_unwatch(h, r);
    if (r->call) {
        h->host->bus_call_cancel(r->call);
        h->bus_dirty = true;
        r->call = NULL;
    }
    tb_http_req_step(h, r, TB_HEV_COMPLETED);
    tb_http_gen_unlink(h, r);
    h->host->buf_free(&r->msg);
    free(r->resp_body);
    r->resp_body = NULL;
}
