/*
 * tb_preproc: the preprocessor service (see tb_preproc.h).  This file holds the actor, its
 * endpoints and the route to an engine; a request's state, its text out (detokenizer + stop
 * strings) and its usage are classes of their own (tb_pp_request, tb_pp_text, tb_pp_usage).
 */
#include "tb_preproc.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_actor.h"
#include "tb_buf.h"
#include "tb_chat_template.h"
#include "tb_errors.h"
#include "tb_gguf.h"
#include "tb_instance_dir.h"
#include "tb_pp_request.h"
#include "tb_reasoning_parser.h"
#include "tb_route_fallback.h"
#include "tb_tokenizer.h"
#include "tb_tool_parser.h"

#define ROUTER_TIMEOUT_MS 2000

struct tb_preproc {
    const struct tb_host *host;
    tb_component_t *comp;
    struct tb_preproc_config cfg;
    tb_tokenizer_t *tok;
    tb_chat_template_t *tmpl;
    tb_actor_t *actor;
    tb_bus_t *bus; /* the actor's, valid on its thread */
    char router_ep[256];
    tb_endpoint_t *gen_ep;
    tb_instance_dir_t *engines; /* engines (kind "tokens") of the served model */
    bool engines_changed;
    size_t n_engines_logged; /* engine instances in the last "servable" / count log line */
    struct tb_route_fallback fallback;
    struct tb_pp_request_list reqs;
    tb_metric_t *m_migrations, *m_mig_exhausted, *m_mig_seconds;
    tb_tool_format_t tool_fmt;           /* how the model writes tool calls */
    tb_reasoning_format_t reasoning_fmt; /* how it writes its thinking */
    int32_t keep_ids[16];                /* special tokens that are markup of either */
    size_t n_keep;
};

#define LOG_I(p, ...) TB_LOG_INFO((p)->host, (p)->comp, __VA_ARGS__)
#define LOG_W(p, ...) TB_LOG_WARN((p)->host, (p)->comp, __VA_ARGS__)

typedef struct tb_pp_request req_t;

/* ------------------------------------------------------------------------------------------- */
/* The engine's stream back to the caller */

/* The logprobs of a chunk with the texts of the chosen tokens and of their alternatives: what
 * s_logprobs builds, freed with s_lp_free. */
struct lp_build {
    struct tb_msg_token_logprob *lps;
    struct tb_msg_top_logprob *tops; /* every position's alternatives, one block */
    char **texts;
    size_t n_texts;
};

static void s_lp_free(struct lp_build *b)
{
    for (size_t i = 0; b->texts && i < b->n_texts; i++) {
        free(b->texts[i]);
    }
    free(b->texts);
    free(b->tops);
    free(b->lps);
    memset(b, 0, sizeof(*b));
}

/* The text of token `id` into b->texts (owned there); 0 or TB_ENOMEM. */
static int s_lp_text(const tb_tokenizer_t *tok, struct lp_build *b, int64_t id, const char **out)
{
    char *t = NULL;
    int rc = tb_pp_token_text(tok, (int32_t)id, &t);
    b->texts[b->n_texts++] = t;
    *out = t;
    return rc;
}

/* The logprobs of the first `n` ids of `c`, each with its token's text, and each alternative
 * with its own.  0 or TB_ENOMEM (what was built is in *b either way). */
static int s_logprobs(const tb_tokenizer_t *tok, const struct tb_msg_gen_chunk *c, size_t n,
                      struct lp_build *b)
{
    memset(b, 0, sizeof(*b));
    if (n == 0) {
        return 0;
    }
    size_t n_top = 0;
    for (size_t i = 0; i < n; i++) {
        n_top += c->logprobs[i].top_count;
    }
    b->lps = calloc(n, sizeof(*b->lps));
    b->tops = calloc(n_top + 1, sizeof(*b->tops));
    b->texts = calloc(n + n_top, sizeof(*b->texts));
    int rc = b->lps && b->tops && b->texts ? 0 : TB_ENOMEM;
    size_t at = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct tb_msg_token_logprob *in = &c->logprobs[i];
        b->lps[i] = *in;
        rc = s_lp_text(tok, b, in->token_id, &b->lps[i].text);
        struct tb_msg_top_logprob *top = b->tops + at;
        for (size_t k = 0; rc == 0 && k < in->top_count; k++) {
            top[k] = in->top[k];
            rc = s_lp_text(tok, b, in->top[k].token_id, &top[k].text);
        }
        b->lps[i].top = in->top_count ? top : NULL;
        at += in->top_count;
    }
    return rc;
}

/* The chunk's text (and with a parser: reasoning and tool calls) released since the last
 * chunk.  0 or TB_ENOMEM. */
static int s_take_text(req_t *r, struct tb_msg_gen_chunk *outc)
{
    if (r->parse) {
        return tb_pp_parse_take(r->parse, outc);
    }
    size_t len = 0;
    outc->text = tb_pp_text_take(r->text, &len);
    return 0;
}

/* Builds and sends the caller's chunk for engine chunk `c` (NULL when it had no payload).
 * `stopped`: a stop string completed; `final`: this ends the request. */
static void s_forward(req_t *r, const struct tb_msg_gen_chunk *c, size_t used, bool stopped,
                      bool final)
{
    tb_preproc_t *p = r->owner;
    const struct tb_host *h = p->host;
    size_t n_lp = c ? (c->logprobs_count < used ? c->logprobs_count : used) : 0;
    struct lp_build lpb;
    if (s_logprobs(p->tok, c, n_lp, &lpb) != 0) {
        s_lp_free(&lpb);
        tb_pp_request_fail(r, TB_ENOMEM, "out of memory while building the logprobs");
        return;
    }
    struct tb_msg_token_logprob *lps = lpb.lps;
    struct tb_msg_gen_chunk outc = {0};
    if (s_take_text(r, &outc) != 0) {
        s_lp_free(&lpb);
        tb_pp_request_fail(r, TB_ENOMEM, "out of memory while building the tool calls");
        return;
    }
    bool any = outc.text || outc.reasoning || outc.tool_calls_count;
    if (r->mig.instance) {
        outc.instance_id = r->mig.instance; /* the frontend's x-turbine-instance header */
        outc.has_instance_id = true;
    }
    outc.token_ids = c ? c->token_ids : NULL;
    outc.token_ids_count = used;
    outc.logprobs = lps;
    outc.logprobs_count = lps ? n_lp : 0;
    if (final) {
        if (stopped && r->engine_call) {
            /* the engine need not go on (engine_call is NULL once its last chunk came) */
            h->bus_call_cancel(r->engine_call);
        }
        r->engine_call = NULL;
        struct tb_msg_usage u = tb_pp_usage_message(&r->usage);
        outc.finish_reason = stopped                   ? "stop"
                             : (c && c->finish_reason) ? c->finish_reason
                                                       : "stop";
        if (r->parse && tb_pp_parse_has_reasoning(r->parse)) {
            u.reasoning_tokens = tb_pp_parse_reasoning_tokens(r->parse);
            u.has_reasoning_tokens = true;
        }
        if (r->parse && tb_pp_parse_calls(r->parse) > 0 &&
            strcmp(outc.finish_reason, "stop") == 0) {
            outc.finish_reason = "tool_calls";
        }
        outc.usage = &u;
        tb_pp_request_send(r, &outc, true);
        tb_pp_request_free(r);
    } else if ((any || used) && tb_pp_request_send(r, &outc, false) == TB_EGONE) {
        tb_pp_request_fail(r, TB_ECANCELED, "caller gone"); /* cancels the engine too */
    }
    s_lp_free(&lpb);
}

static void s_dispatch(req_t *r);

/* The engine's stream broke with `code`: sends the request to another instance with the tokens
 * generated so far (tb_pp_migrate.h), or ends it with an error saying so.  True when it did
 * either; false when the error is not a broken stream. */
static bool s_migrate(req_t *r, int code, const char *why)
{
    tb_preproc_t *p = r->owner;
    const struct tb_host *h = p->host;
    uint64_t from = r->mig.instance;
    const char *model = p->cfg.served_model_name;
    switch (tb_pp_migrate_on_break(&r->mig, code, p->cfg.migration_limit, r->ids, r->n_ids,
                                   h->now_ns())) {
    case TB_PP_MIGRATE_NO:
        return false;
    case TB_PP_MIGRATE_EXHAUSTED:
        h->metric_add(p->m_mig_exhausted, model, 1);
        tb_pp_request_fail(r, code,
                           "the engine instance streaming the answer broke off (%s) and the "
                           "request already moved %" PRId64 " times (migration_limit %" PRId64
                           ")",
                           why ? why : h->strerror(code), r->mig.migrations,
                           p->cfg.migration_limit);
        return true;
    case TB_PP_MIGRATE_GO:
        break;
    }
    h->metric_add(p->m_migrations, model, 1);
    LOG_I(p,
          "request '%s': the stream from instance %016" PRIx64 " broke off (%s) after %zu "
          "tokens: moving it to another instance (migration %" PRId64 " of at most %" PRId64 ")",
          r->msg->request_id, from, why ? why : h->strerror(code), r->mig.n_generated,
          r->mig.migrations, p->cfg.migration_limit);
    if (r->max_tokens > 0 && (int64_t)r->mig.n_generated >= r->max_tokens) {
        /* every token was sent; only the final chunk was lost */
        struct tb_msg_gen_chunk fin = {.finish_reason = "length"};
        if (tb_pp_text_finish(r->text) < 0) {
            tb_pp_request_fail(r, TB_ENOMEM, "out of memory");
        } else {
            s_forward(r, &fin, 0, false, true);
        }
        return true;
    }
    s_dispatch(r);
    return true;
}

/* The text tb_pp_text released, into the parser.  0 or TB_ENOMEM. */
static int s_parse_text(req_t *r, bool counted)
{
    size_t len = 0;
    const char *t = tb_pp_text_take(r->text, &len);
    return tb_pp_parse_push(r->parse, t ? t : "", len, counted);
}

/* Generated ids to text (one at a time with a parser, which counts reasoning tokens).  As
 * tb_pp_text_push: 1 a stop string completed, 0, or TB_ENOMEM. */
static int s_push_ids(req_t *r, const int32_t *ids, size_t n, size_t *used)
{
    if (!r->parse) {
        return tb_pp_text_push(r->text, ids, n, used);
    }
    int rc = 0;
    *used = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t one = 0;
        rc = tb_pp_text_push(r->text, ids + i, 1, &one);
        *used += one;
        int prc = rc >= 0 && one ? s_parse_text(r, true) : 0;
        rc = prc ? prc : rc;
    }
    return rc;
}

static void s_on_engine_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    req_t *r = user;
    tb_preproc_t *p = r->owner;
    const struct tb_host *h = p->host;
    if (ch->kind != TB_CHUNK_DATA) {
        r->engine_call = NULL; /* the bus frees the call after its last chunk */
    }
    if (ch->kind == TB_CHUNK_ERROR) {
        if (!s_migrate(r, ch->code, ch->message)) {
            tb_pp_request_fail(r, ch->code, "%s", ch->message);
        }
        return;
    }
    if (r->mig.broke_ns) {
        /* the first answer after a migration: how long the caller waited for it */
        h->metric_add(p->m_mig_seconds, p->cfg.served_model_name,
                      (double)(h->now_ns() - r->mig.broke_ns) / 1e9);
        r->mig.broke_ns = 0;
    }
    void *m = NULL;
    char err[256];
    if (ch->len &&
        h->msg_decode(TB_MSG_GEN_CHUNK, ch->data, ch->len, &m, err, sizeof(err)) != 0) {
        tb_pp_request_fail(r, TB_EPROTO, "the engine sent an unreadable chunk: %s", err);
        return;
    }
    const struct tb_msg_gen_chunk *c = m;
    size_t used = 0;
    int rc = c ? s_push_ids(r, c->token_ids, c->token_ids_count, &used) : 0;
    tb_pp_usage_add_completion(&r->usage, used);
    if (rc >= 0 && c && p->cfg.migration_limit > 0) {
        rc = tb_pp_migrate_note(&r->mig, c->token_ids, used) == 0 ? rc : TB_ENOMEM;
    }
    bool final = ch->kind == TB_CHUNK_FINAL || rc == 1;
    if (rc >= 0 && final && rc != 1) {
        rc = tb_pp_text_finish(r->text); /* the engine finished: release what is held */
    }
    if (rc >= 0 && final && r->parse) {
        int prc = s_parse_text(r, false);
        prc = prc ? prc : tb_pp_parse_finish(r->parse);
        rc = prc ? prc : rc;
    }
    if (rc < 0) {
        tb_pp_request_fail(r, rc, "out of memory while building the text of the answer");
    } else {
        tb_pp_usage_engine(&r->usage, c ? c->usage : NULL);
        s_forward(r, c, used, rc == 1, final);
    }
    h->msg_free(&m);
}

/* ------------------------------------------------------------------------------------------- */
/* Routing: the router's choice, or a counted fallback */

static int s_call_engine(req_t *r, const char *endpoint, uint64_t instance)
{
    tb_preproc_t *p = r->owner;
    const struct tb_host *h = p->host;
    struct tb_msg_gen_request q = *r->msg;
    q.mode = "tokens";
    q.messages = NULL;
    q.messages_count = 0;
    q.prompt = NULL;
    q.tools_json = NULL;
    q.tool_choice = NULL;
    q.tool_choice_function = NULL;
    q.has_parallel_tool_calls = false;
    q.has_stream = false;
    if (r->grammar) {
        q.grammar = r->grammar;
    }
    q.stop = NULL;
    q.stop_count = 0;
    q.has_add_generation_prompt = false;
    q.tokens = tb_pp_migrate_tokens(&r->mig, r->ids, r->n_ids, &q.tokens_count);
    if (r->max_tokens > 0) {
        q.max_tokens = r->max_tokens;
        q.has_max_tokens = true;
    }
    int timeout_ms = r->timeout_ms;
    size_t resumed = tb_pp_migrate_resumed(&r->mig);
    if (resumed > 0) {
        /* a migrated request: the answer so far is part of the prompt; the limits count on */
        q.resumed_tokens = (int64_t)resumed;
        q.has_resumed_tokens = true;
        q.max_tokens -= q.has_max_tokens ? (int64_t)resumed : 0;
        q.min_tokens = q.min_tokens > (int64_t)resumed ? q.min_tokens - (int64_t)resumed : 0;
        if (timeout_ms > 0) {
            timeout_ms -= (int)((h->now_ns() - r->started_ns) / 1000000);
            if (timeout_ms <= 0) {
                return TB_ETIMEDOUT;
            }
        }
    }
    struct tb_buf buf = {0};
    int rc = h->msg_encode(TB_MSG_GEN_REQUEST, &q, &buf);
    if (rc == 0) {
        rc = h->bus_call(p->bus, endpoint, instance, buf.data, buf.len, timeout_ms,
                         s_on_engine_chunk, r, &r->engine_call);
    }
    h->buf_free(&buf);
    if (rc == 0) {
        r->mig.instance = instance ? instance : h->bus_call_instance(r->engine_call);
    }
    return rc;
}

/* Without the router: the engines in turn (tb_instance_dir_next), counted and logged as a
 * fallback with `why`.  Fails the request when none can be called. */
static void s_fallback(req_t *r, tb_rf_reason_t why, const char *detail)
{
    tb_preproc_t *p = r->owner;
    const char *model = p->cfg.served_model_name;
    int rc = TB_ENOROUTE;
    size_t tries = tb_instance_dir_count(p->engines);
    for (size_t k = 0; k < tries && rc == TB_ENOROUTE; k++) {
        struct tb_idir_instance *e = tb_instance_dir_next(p->engines, model);
        if (!e) {
            break;
        }
        if (k == 0) {
            tb_route_fallback_note(&p->fallback, model, why, detail);
        }
        rc = s_call_engine(r, e->endpoint, e->instance_id);
    }
    if (rc != 0) {
        tb_pp_request_fail(r, rc, "no engine instance serves model '%s' right now", model);
    }
}

static void s_on_router_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    req_t *r = user;
    tb_preproc_t *p = r->owner;
    const struct tb_host *h = p->host;
    if (ch->kind == TB_CHUNK_DATA) {
        return;
    }
    r->router_call = NULL;
    char detail[200];
    tb_rf_reason_t why = TB_RF_BAD_ANSWER;
    if (ch->kind == TB_CHUNK_FINAL) {
        void *m = NULL;
        char err[160];
        if (h->msg_decode(TB_MSG_ROUTE_ANSWER, ch->data, ch->len, &m, err, sizeof(err)) != 0) {
            snprintf(detail, sizeof(detail), "malformed answer: %s", err);
        } else {
            /* Exactly the instance the router named. */
            struct tb_msg_route_answer *a = m;
            int rc = s_call_engine(r, a->endpoint, a->instance_id);
            snprintf(detail, sizeof(detail),
                     "cannot call the instance it chose, %016" PRIx64 ": %s", a->instance_id,
                     h->strerror(rc));
            h->msg_free(&m);
            if (rc == 0) {
                return;
            }
        }
    } else {
        why = ch->code == TB_ETIMEDOUT || ch->code == TB_EGONE ? TB_RF_ROUTER_DOWN
                                                               : TB_RF_ROUTER_ERROR;
        snprintf(detail, sizeof(detail), "%s: %s", h->strerror(ch->code),
                 ch->message ? ch->message : "");
    }
    s_fallback(r, why, detail);
}

/* Asks the router which engine serves `r` (one bus round trip), or falls back. */
static void s_dispatch(req_t *r)
{
    tb_preproc_t *p = r->owner;
    const struct tb_host *h = p->host;
    if (!p->router_ep[0]) {
        s_fallback(r, TB_RF_NO_ROUTER, NULL);
        return;
    }
    struct tb_msg_route_query q = {.model = p->cfg.served_model_name, .kind = "tokens"};
    q.tokens = tb_pp_migrate_tokens(&r->mig, r->ids, r->n_ids, &q.tokens_count);
    q.exclude = r->mig.failed;
    q.exclude_count = r->mig.n_failed;
    struct tb_buf buf = {0};
    int rc = h->msg_encode(TB_MSG_ROUTE_QUERY, &q, &buf);
    if (rc == 0) {
        rc = h->bus_call(p->bus, p->router_ep, 0, buf.data, buf.len, ROUTER_TIMEOUT_MS,
                         s_on_router_chunk, r, &r->router_call);
    }
    h->buf_free(&buf);
    if (rc != 0) {
        char detail[400];
        snprintf(detail, sizeof(detail), "cannot call %.256s: %s", p->router_ep, h->strerror(rc));
        s_fallback(r, TB_RF_ROUTER_DOWN, detail);
    }
}

/* The context a request may fill: the configured cap, or the smallest an engine announces. */
static int64_t s_context(const tb_preproc_t *p)
{
    int64_t ctx = p->cfg.context_length;
    int64_t e = tb_instance_dir_min_context(p->engines, p->cfg.served_model_name);
    if (e > 0 && (ctx == 0 || e < ctx)) {
        ctx = e;
    }
    return ctx;
}

/* ------------------------------------------------------------------------------------------- */
/* Generate endpoint */

/* An assistant message's tool calls for the template: OpenAI's array, with each call's
 * arguments (a JSON string) also parsed into an object, as templates index them. */
static json_t *s_tool_calls_json(const char *text)
{
    json_error_t je;
    json_t *calls = json_loads(text, 0, &je);
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c)
    {
        json_t *fn = json_object_get(c, "function");
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        json_t *parsed = args ? json_loads(args, 0, &je) : NULL;
        if (json_is_object(parsed)) {
            json_object_set_new(fn, "arguments", parsed);
        } else {
            json_decref(parsed);
        }
    }
    return calls ? calls : json_array();
}

static json_t *s_messages_json(const struct tb_msg_gen_request *q)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < q->messages_count; i++) {
        const struct tb_msg_chat_message *m = &q->messages[i];
        json_t *o = json_object();
        json_object_set_new(o, "role", json_string(m->role));
        json_object_set_new(o, "content", m->content ? json_string(m->content) : json_null());
        if (m->name) {
            json_object_set_new(o, "name", json_string(m->name));
        }
        if (m->tool_call_id) {
            json_object_set_new(o, "tool_call_id", json_string(m->tool_call_id));
        }
        if (m->tool_calls_json) {
            json_object_set_new(o, "tool_calls", s_tool_calls_json(m->tool_calls_json));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

/* Renders the prompt ids of a text request: 0, or a code with `err`. */
static bool s_tool_choice_is(const struct tb_msg_gen_request *q, const char *what)
{
    return q->tool_choice && strcmp(q->tool_choice, what) == 0;
}

/* Renders the prompt ids of a text request: 0, or a code with `err`.  *think_open (may be NULL)
 * says whether the prompt leaves a reasoning block open. */
static int s_prompt_ids(tb_preproc_t *p, const struct tb_msg_gen_request *q, bool add_gen_default,
                        bool add_special_default, int32_t **ids, size_t *n, bool *think_open,
                        char *err, size_t err_len)
{
    int rc;
    *ids = NULL;
    *n = 0;
    if (q->messages_count > 0) {
        json_t *msgs = s_messages_json(q);
        json_t *extra = NULL;
        /* tool_choice none: the model is not told of the tools, so it does not call them */
        if (q->tools_json && !s_tool_choice_is(q, "none")) {
            json_error_t je;
            json_t *tools = json_loads(q->tools_json, 0, &je);
            if (!tools) {
                json_decref(msgs);
                snprintf(err, err_len, "tools is not valid JSON");
                return TB_EINVAL;
            }
            extra = json_object();
            json_object_set_new(extra, "tools", tools);
        }
        bool add_gen = q->has_add_generation_prompt ? q->add_generation_prompt : add_gen_default;
        char *text = NULL;
        size_t len = 0;
        rc = tb_chat_template_apply(p->tmpl, msgs, add_gen, extra, &text, &len, err, err_len);
        json_decref(msgs);
        json_decref(extra);
        if (rc != 0) {
            return rc;
        }
        /* The template writes the special tokens itself (BOS included). */
        rc = tb_tokenizer_encode(p->tok, text, len, false, true, ids, n);
        if (think_open) {
            *think_open = tb_reasoning_prompt_opens(text, len);
        }
        free(text);
    } else if (q->tokens_count > 0) {
        size_t vocab = tb_tokenizer_vocab_size(p->tok);
        for (size_t i = 0; i < q->tokens_count; i++) {
            if (q->tokens[i] < 0 || (size_t)q->tokens[i] >= vocab) {
                snprintf(err, err_len, "token id %d is outside the vocabulary of %zu",
                         (int)q->tokens[i], vocab);
                return TB_EINVAL;
            }
        }
        *ids = malloc(q->tokens_count * sizeof(int32_t));
        if (!*ids) {
            return TB_ENOMEM;
        }
        memcpy(*ids, q->tokens, q->tokens_count * sizeof(int32_t));
        *n = q->tokens_count;
        return 0;
    } else {
        const char *text = q->prompt ? q->prompt : "";
        rc = tb_tokenizer_encode(p->tok, text, strlen(text), add_special_default, true, ids, n);
    }
    if (rc == TB_EINVAL) {
        snprintf(err, err_len, "the prompt is not valid UTF-8");
    } else if (rc != 0) {
        snprintf(err, err_len, "tokenization failed: %s", p->host->strerror(rc));
    }
    return rc;
}

/* Checks the prompt against the context and resolves max_tokens.  0, or fails `r`. */
static int s_limits(tb_preproc_t *p, req_t *r, bool chat)
{
    const struct tb_msg_gen_request *q = r->msg;
    int64_t ctx = s_context(p);
    const char *what = chat ? "messages" : "prompt";
    if (ctx > 0 && (int64_t)r->n_ids >= ctx) {
        tb_pp_request_fail(r, TB_ECONTEXT,
                           "the prompt has %zu tokens but model '%s' has a context of %" PRId64
                           " tokens (prompt plus completion): shorten the %s",
                           r->n_ids, p->cfg.served_model_name, ctx, what);
        return TB_ECONTEXT;
    }
    if (q->has_max_tokens) {
        if (ctx > 0 && (int64_t)r->n_ids + q->max_tokens > ctx) {
            tb_pp_request_fail(r, TB_ECONTEXT,
                               "the prompt has %zu tokens and max_tokens asks for %" PRId64
                               " more, but model '%s' has a context of %" PRId64
                               " tokens: shorten the %s or lower max_tokens",
                               r->n_ids, q->max_tokens, p->cfg.served_model_name, ctx, what);
            return TB_ECONTEXT;
        }
        r->max_tokens = q->max_tokens;
    } else if (ctx > 0) {
        r->max_tokens = ctx - (int64_t)r->n_ids;
    }
    return 0;
}

/* A forced call (tool_choice required or a named function): the GBNF the engine must follow.
 * 0, or fails `r`. */
static int s_forced_call(tb_preproc_t *p, req_t *r, const json_t *tools, tb_tool_format_t fmt)
{
    const struct tb_msg_gen_request *q = r->msg;
    bool named = s_tool_choice_is(q, "function");
    if (!s_tool_choice_is(q, "required") && !named) {
        return 0;
    }
    char err[512];
    if (q->grammar) {
        tb_pp_request_fail(r, TB_EINVAL,
                           "tool_choice '%s' cannot be combined with another "
                           "constraint on the answer (response_format or a grammar)",
                           q->tool_choice);
        return TB_EINVAL;
    }
    if (!tools || (named && !q->tool_choice_function)) {
        tb_pp_request_fail(r, TB_EINVAL, "tool_choice '%s' needs tools%s", q->tool_choice,
                           named ? " and a function name" : "");
        return TB_EINVAL;
    }
    bool parallel = !named && (!q->has_parallel_tool_calls || q->parallel_tool_calls);
    size_t len = 0;
    int rc = tb_tool_format_gbnf(fmt, tools, named ? q->tool_choice_function : NULL, parallel,
                                 &r->grammar, &len, err, sizeof(err));
    if (rc != 0) {
        tb_pp_request_fail(r, rc == TB_ENOMEM ? TB_ENOMEM : rc, "%s", err);
        return rc;
    }
    (void)p;
    return 0;
}

/* How the answer of a chat request is split: reasoning apart (when the model thinks), tool calls
 * apart (when the request has tools and tool_choice is not none); a forced call's grammar.
 * 0, or fails `r`. */
static int s_answer_parts(tb_preproc_t *p, req_t *r, bool think_open)
{
    const struct tb_msg_gen_request *q = r->msg;
    json_t *tools = NULL;
    if (q->tools_json && !s_tool_choice_is(q, "none")) {
        json_error_t je;
        tools = json_loads(q->tools_json, 0, &je);
        if (!json_is_array(tools) || json_array_size(tools) == 0) {
            json_decref(tools);
            tools = NULL;
        }
    }
    /* a model with no known call format gets the hermes markup when a call is forced */
    tb_tool_format_t fmt = p->tool_fmt != TB_TOOL_FORMAT_NONE ? p->tool_fmt
                                                              : TB_TOOL_FORMAT_HERMES;
    bool forced = s_tool_choice_is(q, "required") || s_tool_choice_is(q, "function");
    if (!tools || (p->tool_fmt == TB_TOOL_FORMAT_NONE && !forced)) {
        fmt = TB_TOOL_FORMAT_NONE;
    }
    int rc = s_forced_call(p, r, tools, fmt);
    if (rc == 0 && (fmt != TB_TOOL_FORMAT_NONE || p->reasoning_fmt != TB_REASONING_NONE)) {
        struct tb_pp_parse_config pc = {.reasoning = p->reasoning_fmt,
                                        /* a forced call starts at once: no thinking */
                                        .think_open = think_open && !r->grammar,
                                        .tools_format = fmt,
                                        .tools = tools,
                                        .stream = q->has_stream && q->stream,
                                        .seed = p->host->now_ns() ^ (uint64_t)(uintptr_t)r};
        rc = tb_pp_parse_new(&pc, &r->parse);
        if (rc != 0) {
            tb_pp_request_fail(r, rc, "out of memory");
        }
    }
    json_decref(tools);
    return rc;
}

static void s_on_generate(tb_request_t *in, const void *payload, size_t len, void *user)
{
    tb_preproc_t *p = user;
    const struct tb_host *h = p->host;
    char err[1024];
    void *m = NULL;
    if (h->msg_decode(TB_MSG_GEN_REQUEST, payload, len, &m, err, sizeof(err)) != 0) {
        h->bus_reply_error(in, TB_EPROTO, "unreadable request: %s", err);
        return;
    }
    struct tb_msg_gen_request *q = m;
    req_t *r = NULL;
    if (tb_pp_request_new(&p->reqs, p, in, &q, p->cfg.request_timeout_s, &r) != 0) {
        h->msg_free(&m);
        h->bus_reply_error(in, TB_ENOMEM, "out of memory");
        return;
    }
    q = r->msg;
    bool chat = strcmp(q->mode, "chat") == 0;
    if (!chat && strcmp(q->mode, "completion") != 0) {
        tb_pp_request_fail(r, TB_EINVAL, "mode '%s' is not chat or completion", q->mode);
        return;
    }
    if (chat && q->messages_count == 0) {
        tb_pp_request_fail(r, TB_EINVAL, "messages must not be empty");
        return;
    }
    bool think_open = false;
    int rc = s_prompt_ids(p, q, true, true, &r->ids, &r->n_ids, &think_open, err, sizeof(err));
    if (rc != 0) {
        tb_pp_request_fail(r, rc == TB_ENOMEM ? TB_ENOMEM : TB_EINVAL, "%s", err);
        return;
    }
    if (r->n_ids == 0) {
        tb_pp_request_fail(r, TB_EINVAL, "the prompt is empty after tokenization");
        return;
    }
    if (s_limits(p, r, chat) != 0) {
        return;
    }
    tb_pp_usage_init(&r->usage, r->n_ids);
    if (tb_pp_text_new(p->tok, r->ids, r->n_ids, (const char *const *)q->stop, q->stop_count,
                       &r->text) != 0) {
        tb_pp_request_fail(r, TB_ENOMEM, "out of memory");
        return;
    }
    if (chat && s_answer_parts(p, r, think_open) != 0) {
        return;
    }
    /* the markup's special tokens come out only where a parser takes them away again */
    if (r->parse && tb_pp_text_keep_special(r->text, p->keep_ids, p->n_keep) != 0) {
        tb_pp_request_fail(r, TB_ENOMEM, "out of memory");
        return;
    }
    s_dispatch(r);
}

static void s_on_generate_cancel(tb_request_t *in, void *user)
{
    tb_preproc_t *p = user;
    req_t *r = p->host->bus_request_user(in);
    if (r) {
        tb_pp_request_fail(r, TB_ECANCELED, "cancelled by the caller");
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Tokenize endpoint */

static void s_on_tokenize(tb_request_t *in, const void *payload, size_t len, void *user)
{
    tb_preproc_t *p = user;
    const struct tb_host *h = p->host;
    char err[1024];
    void *m = NULL;
    if (h->msg_decode(TB_MSG_TOKENIZE_REQUEST, payload, len, &m, err, sizeof(err)) != 0) {
        h->bus_reply_error(in, TB_EPROTO, "unreadable request: %s", err);
        return;
    }
    struct tb_msg_tokenize_request *q = m;
    struct tb_msg_tokenize_reply rep = {0};
    int64_t ctx = s_context(p);
    if (ctx > 0) {
        rep.max_model_len = ctx;
        rep.has_max_model_len = true;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    char *text = NULL;
    const char **pieces = NULL;
    int rc = 0;
    if (strcmp(q->op, "detokenize") == 0) {
        size_t tl = 0;
        size_t vocab = tb_tokenizer_vocab_size(p->tok);
        for (size_t i = 0; i < q->tokens_count && rc == 0; i++) {
            if (q->tokens[i] < 0 || (size_t)q->tokens[i] >= vocab) {
                snprintf(err, sizeof(err), "token id %d is outside the vocabulary of %zu",
                         (int)q->tokens[i], vocab);
                rc = TB_EINVAL;
            }
        }
        if (rc == 0) {
            rc = tb_tokenizer_decode(p->tok, q->tokens, q->tokens_count, false, &text, &tl);
            if (rc != 0) {
                snprintf(err, sizeof(err), "decoding failed");
            }
        }
        rep.text = text;
    } else if (strcmp(q->op, "tokenize") == 0) {
        struct tb_msg_gen_request g = {.request_id = "tokenize", .model = q->model};
        g.mode = q->messages_count ? "chat" : "completion";
        g.messages = q->messages;
        g.messages_count = q->messages_count;
        g.prompt = q->prompt;
        g.add_generation_prompt = q->add_generation_prompt;
        g.has_add_generation_prompt = q->has_add_generation_prompt;
        bool add_special = q->has_add_special ? q->add_special : true;
        rc = s_prompt_ids(p, &g, true, add_special, &ids, &n, NULL, err, sizeof(err));
        rep.tokens = ids;
        rep.tokens_count = n;
        if (rc == 0 && q->has_with_pieces && q->with_pieces) {
            pieces = calloc(n + 1, sizeof(char *));
            for (size_t i = 0; pieces && i < n; i++) {
                const char *s = tb_tokenizer_piece(p->tok, ids[i], NULL);
                pieces[i] = s ? s : "";
            }
            rep.pieces = pieces;
            rep.pieces_count = pieces ? n : 0;
        }
    } else {
        snprintf(err, sizeof(err), "op '%s' is not tokenize or detokenize", q->op);
        rc = TB_EINVAL;
    }
    if (rc != 0) {
        h->bus_reply_error(in, rc == TB_ENOMEM ? TB_ENOMEM : TB_EINVAL, "%s", err);
    } else {
        struct tb_buf buf = {0};
        if (h->msg_encode(TB_MSG_TOKENIZE_REPLY, &rep, &buf) == 0) {
            h->bus_reply(in, buf.data, buf.len, true);
        } else {
            h->bus_reply_error(in, TB_EINTERNAL, "cannot encode the reply");
        }
        h->buf_free(&buf);
    }
    free(pieces);
    free(ids);
    free(text);
    h->msg_free(&m);
}

static void s_on_tokenize_cancel(tb_request_t *in, void *user)
{
    (void)in;
    (void)user; /* answered synchronously: never pending */
}

/* ------------------------------------------------------------------------------------------- */
/* Engines coming and going */

static void s_on_route(const struct tb_route *r, bool added, void *user)
{
    tb_preproc_t *p = user;
    if (!r->model || strcmp(r->model, p->cfg.served_model_name) != 0) {
        return;
    }
    if (added) {
        int rc = tb_instance_dir_add(p->engines, r, 0);
        if (rc < 0) {
            TB_LOG_ERROR(p->host, p->comp, "cannot track engine %s: out of memory", r->endpoint);
        }
        p->engines_changed |= rc == 1;
    } else {
        p->engines_changed |= tb_instance_dir_remove(p->engines, r->instance_id, NULL);
    }
}

/* Offers the model exactly while an engine serves it (called on the actor thread). */
static void s_sync_endpoint(tb_preproc_t *p)
{
    const struct tb_host *h = p->host;
    if (!p->engines_changed) {
        return;
    }
    p->engines_changed = false;
    size_t n = tb_instance_dir_count(p->engines);
    size_t logged = p->n_engines_logged;
    p->n_engines_logged = n;
    if (n > 0 && !p->gen_ep && !h->is_draining(p->comp)) {
        struct tb_endpoint_meta meta = {.model = p->cfg.served_model_name,
                                        .kind = "text",
                                        .context_length = s_context(p)};
        int rc = h->bus_endpoint_add(p->bus, "generate", &meta, s_on_generate,
                                     s_on_generate_cancel, p, &p->gen_ep);
        if (rc == 0) {
            LOG_I(p, "model '%s' is servable: %zu engine instance%s", p->cfg.served_model_name, n,
                  n == 1 ? "" : "s");
        } else {
            LOG_W(p, "cannot offer model '%s': %s", p->cfg.served_model_name, h->strerror(rc));
            p->gen_ep = NULL;
            p->engines_changed = true; /* try again on the next step */
        }
    } else if (n > 0 && p->gen_ep && n != logged) {
        LOG_I(p, "model '%s': %zu engine instance%s", p->cfg.served_model_name, n,
              n == 1 ? "" : "s");
    } else if (n == 0 && p->gen_ep) {
        /* Requests still open (a migrating one between two engines) end here, with the reason,
         * before the endpoint goes and takes their callers with it. */
        while (p->reqs.head) {
            tb_pp_request_fail(p->reqs.head, TB_ENOROUTE,
                               "no engine instance serves model '%s' any more",
                               p->cfg.served_model_name);
        }
        h->bus_endpoint_remove(p->bus, p->gen_ep);
        p->gen_ep = NULL;
        LOG_I(p, "no engine serves model '%s' any more: no longer offering it",
              p->cfg.served_model_name);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Actor */

static int s_init(void *user, tb_bus_t *bus)
{
    tb_preproc_t *p = user;
    const struct tb_host *h = p->host;
    p->bus = bus;
    tb_endpoint_t *ep;
    struct tb_endpoint_meta meta = {.model = p->cfg.served_model_name, .kind = "tokenize"};
    int rc = h->bus_endpoint_add(bus, "tokenize", &meta, s_on_tokenize, s_on_tokenize_cancel, p,
                                 &ep);
    if (rc != 0) {
        h->set_error(p->comp, "cannot serve the tokenize endpoint: %s", h->strerror(rc));
        return rc;
    }
    rc = h->bus_routes_watch(bus, s_on_route, p);
    if (rc != 0) {
        h->set_error(p->comp, "cannot watch routes: %s", h->strerror(rc));
        return rc;
    }
    p->engines_changed = true;
    s_sync_endpoint(p);
    if (!p->gen_ep) {
        LOG_I(p, "waiting for an engine serving model '%s' (kind tokens)",
              p->cfg.served_model_name);
    }
    if (!p->router_ep[0]) {
        LOG_I(p, "no router configured: engines are chosen here in turn, each choice a counted "
                 "fallback (turbine_router_fallback_total)");
    }
    return 0;
}

static int s_step(void *user, tb_bus_t *bus)
{
    (void)bus;
    tb_preproc_t *p = user;
    s_sync_endpoint(p);
    return p->engines_changed ? 100 : -1;
}

static void s_fini(void *user, tb_bus_t *bus)
{
    (void)bus;
    tb_preproc_t *p = user;
    while (p->reqs.head) {
        tb_pp_request_fail(p->reqs.head, TB_EDRAINING, "the preprocessor is stopping");
    }
}

static const struct tb_actor_ops s_ops = {.init = s_init, .step = s_step, .fini = s_fini};

/* ------------------------------------------------------------------------------------------- */

/* Reads a chat template file (at most 16 MiB) into `out`.  0, or TB_EIO / TB_ENOMEM / TB_E2BIG. */
static int s_read_file(const char *path, struct tb_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return TB_EIO;
    }
    int rc = tb_buf_read_file(out, f);
    fclose(f);
    if (rc == 0 && out->len >= (1u << 24)) {
        rc = TB_E2BIG;
    }
    return rc;
}

static bool s_is_gguf(const char *path)
{
    size_t n = strlen(path);
    return n > 5 && strcmp(path + n - 5, ".gguf") == 0;
}

static int s_load_template(tb_preproc_t *p, char *err, size_t err_len)
{
    const char *bos = NULL, *eos = NULL;
    int32_t b = tb_tokenizer_bos(p->tok);
    int32_t e = tb_tokenizer_eos(p->tok);
    if (b >= 0) {
        bos = tb_tokenizer_piece(p->tok, b, NULL);
    }
    if (e >= 0) {
        eos = tb_tokenizer_piece(p->tok, e, NULL);
    }
    if (p->cfg.chat_template) {
        struct tb_buf src = {0};
        int rc = s_read_file(p->cfg.chat_template, &src);
        if (rc != 0) {
            tb_buf_free(&src);
            return tb_err_fail(err, err_len, TB_EIO, "cannot read chat_template '%s' (%s)",
                               p->cfg.chat_template, tb_strerror(rc));
        }
        rc = tb_chat_template_new((const char *)src.data, src.len, bos, eos, NULL, &p->tmpl, err,
                                  err_len);
        tb_buf_free(&src);
        return rc;
    }
    if (s_is_gguf(p->cfg.model)) {
        tb_gguf_t *g = NULL;
        int rc = tb_gguf_open(p->cfg.model, &g, err, err_len);
        if (rc != 0) {
            return rc;
        }
        struct tb_gguf_str s = {0};
        bool has = tb_gguf_get_str(g, "tokenizer.chat_template", &s);
        rc = tb_chat_template_new(has ? s.ptr : NULL, has ? s.len : 0, bos, eos, NULL, &p->tmpl,
                                  err, err_len);
        tb_gguf_close(&g);
        return rc;
    }
    return tb_chat_template_new_from_hf_dir(p->cfg.model, NULL, &p->tmpl, err, err_len);
}

static void s_migration_metrics(tb_preproc_t *p)
{
    const struct tb_host *h = p->host;
    p->m_migrations = h->metric_get(p->comp, "turbine_migrations_total", TB_METRIC_COUNTER,
                                    "requests moved to another engine instance after their "
                                    "stream broke",
                                    "model", NULL, 0);
    p->m_mig_exhausted = h->metric_get(p->comp, "turbine_migrations_exhausted_total",
                                       TB_METRIC_COUNTER,
                                       "broken streams that ended in an error: migration_limit "
                                       "was used up",
                                       "model", NULL, 0);
    static const double buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30};
    p->m_mig_seconds = h->metric_get(p->comp, "turbine_migration_seconds", TB_METRIC_HISTOGRAM,
                                     "from a stream breaking to the first answer from the next "
                                     "instance",
                                     "model", buckets, sizeof(buckets) / sizeof(buckets[0]));
}

/* Tool-call and reasoning formats: configured, or told by the chat template's markup, else by
 * the vocabulary; and the special tokens among their markup (kept in the text). */
static void s_choose_parsers(tb_preproc_t *p)
{
    static const char *const tools[] = TB_PREPROC_TOOL_PARSERS;
    static const char *const reasoning[] = TB_PREPROC_REASONING_PARSERS;
    size_t len = 0;
    const char *src = tb_chat_template_source(p->tmpl, &len);
    int tc = p->cfg.tool_call_parser, rc = p->cfg.reasoning_parser;
    if (tc > 0) {
        tb_tool_format_from_name(tools[tc], &p->tool_fmt);
    } else {
        p->tool_fmt = tb_tool_format_from_template(src, len);
        for (int f = TB_TOOL_FORMAT_HERMES; f <= TB_TOOL_FORMAT_DEEPSEEK && !p->tool_fmt; f++) {
            const char *m = tb_tool_format_marker((tb_tool_format_t)f);
            if (tb_tokenizer_find(p->tok, m, strlen(m)) >= 0) {
                p->tool_fmt = (tb_tool_format_t)f;
            }
        }
    }
    if (rc > 0) {
        tb_reasoning_format_from_name(reasoning[rc], &p->reasoning_fmt);
    } else {
        p->reasoning_fmt = tb_reasoning_format_from_template(src, len);
        if (tb_tokenizer_find(p->tok, "</think>", 8) >= 0 &&
            tb_tokenizer_find(p->tok, "<think>", 7) >= 0) {
            p->reasoning_fmt = TB_REASONING_THINK;
        }
    }
    const char *const *markup = tb_tool_format_markup(p->tool_fmt);
    const char *think[] = {"<think>", "</think>", NULL};
    for (int k = 0; k < 2; k++) {
        const char *const *m = k == 0 ? markup : p->reasoning_fmt ? think : NULL;
        for (size_t i = 0; m && m[i] && p->n_keep < 16; i++) {
            int32_t id = tb_tokenizer_find(p->tok, m[i], strlen(m[i]));
            if (id >= 0 && tb_tokenizer_is_special(p->tok, id)) {
                p->keep_ids[p->n_keep++] = id;
            }
        }
    }
    TB_LOG_INFO(p->host, p->comp, "tool calls: %s%s; reasoning: %s%s",
                tb_tool_format_name(p->tool_fmt), tc > 0 ? " (configured)" : "",
                p->reasoning_fmt ? "think" : "none", rc > 0 ? " (configured)" : "");
}

int tb_preproc_new(const struct tb_host *host, tb_component_t *comp,
                   const struct tb_preproc_config *cfg, tb_preproc_t **out)
{
    char err[1024];
    *out = NULL;
    tb_preproc_t *p = calloc(1, sizeof(*p));
    if (!p) {
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    p->host = host;
    p->comp = comp;
    p->cfg = *cfg;
    tb_pp_request_list_init(&p->reqs, host);
    tb_route_fallback_init(&p->fallback, host, comp);
    s_migration_metrics(p);
    p->engines = tb_instance_dir_new("tokens");
    if (!p->engines) {
        free(p);
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    if (cfg->router && *cfg->router) {
        snprintf(p->router_ep, sizeof(p->router_ep), "%s.%s.route", host->namespace_name(comp),
                 cfg->router);
    }
    int rc = tb_tokenizer_load(cfg->model, &p->tok, err, sizeof(err));
    if (rc != 0) {
        host->set_error(comp, "cannot load the tokenizer of '%s': %s", cfg->model, err);
        goto fail;
    }
    rc = s_load_template(p, err, sizeof(err));
    if (rc != 0) {
        host->set_error(comp, "cannot load the chat template of '%s': %s", cfg->model, err);
        goto fail;
    }
    s_choose_parsers(p);
    TB_LOG_INFO(host, comp, "model '%s' from %s: vocabulary %zu, %s chat template",
                cfg->served_model_name, cfg->model, tb_tokenizer_vocab_size(p->tok),
                tb_chat_template_is_fallback(p->tmpl) ? "fallback (ChatML)" : "the model's");
    *out = p;
    return 0;
fail:
    tb_chat_template_destroy(&p->tmpl);
    tb_tokenizer_destroy(&p->tok);
    tb_instance_dir_destroy(&p->engines);
    free(p);
    return rc;
}

int tb_preproc_start(tb_preproc_t *p)
{
    return tb_actor_start(&p->actor, p->host, p->comp, &s_ops, p);
}

size_t tb_preproc_in_flight(tb_preproc_t *p)
{
    return atomic_load(&p->reqs.in_flight);
}

void tb_preproc_stop(tb_preproc_t *p)
{
    tb_actor_stop(&p->actor);
}

void tb_preproc_destroy(tb_preproc_t **p_p)
{
    if (!p_p || !*p_p) {
        return;
    }
    tb_preproc_t *p = *p_p;
    tb_chat_template_destroy(&p->tmpl);
    tb_tokenizer_destroy(&p->tok);
    tb_instance_dir_destroy(&p->engines);
    free(p);
    *p_p = NULL;
}
