/* tb_preproc: the preprocessor service (see tb_preproc.h). */
#include "tb_preproc.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_actor.h"
#include "tb_chat_template.h"
#include "tb_detok.h"
#include "tb_gguf.h"
#include "tb_stop_matcher.h"
#include "tb_tokenizer.h"

#define MAX_ENGINES 64

struct engine {
    char endpoint[256];
    uint64_t instance;
    int64_t context_length;
};

struct req {
    tb_preproc_t *p;
    tb_request_t *in;
    tb_call_t *router_call;
    tb_call_t *engine_call;
    struct tb_msg_gen_request *msg; /* decoded, owned (host->msg_free) */
    int32_t *ids;
    size_t n_ids;
    int64_t max_tokens; /* resolved; 0: the engine's default */
    tb_detok_t *detok;
    tb_stop_matcher_t *stop;
    int64_t completion_tokens;
    int64_t cached_tokens;
    int timeout_ms;
    struct req *prev, *next;
};

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
    struct engine engines[MAX_ENGINES];
    size_t n_engines;
    bool engines_changed;
    uint64_t rr;
    struct req *reqs;
    atomic_size_t in_flight;
};

#define LOG_I(p, ...) TB_LOG_INFO((p)->host, (p)->comp, __VA_ARGS__)
#define LOG_W(p, ...) TB_LOG_WARN((p)->host, (p)->comp, __VA_ARGS__)
#define LOG_D(p, ...) TB_LOG_DEBUG((p)->host, (p)->comp, __VA_ARGS__)

/* ------------------------------------------------------------------------------------------- */
/* Requests */

static void s_req_free(struct req *r)
{
    tb_preproc_t *p = r->p;
    if (r->prev) {
        r->prev->next = r->next;
    } else if (p->reqs == r) {
        p->reqs = r->next;
    }
    if (r->next) {
        r->next->prev = r->prev;
    }
    if (r->router_call) {
        p->host->bus_call_cancel(r->router_call);
    }
    if (r->engine_call) {
        p->host->bus_call_cancel(r->engine_call);
    }
    void *m = r->msg;
    p->host->msg_free(&m);
    free(r->ids);
    tb_detok_destroy(&r->detok);
    tb_stop_matcher_destroy(&r->stop);
    free(r);
    atomic_fetch_sub(&p->in_flight, 1);
}

static void s_fail(struct req *r, int code, const char *fmt, ...) TB_PRINTF(3, 4);

static void s_fail(struct req *r, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->p->host->bus_reply_error(r->in, code, "%s", msg);
    s_req_free(r);
}

/* Sends a gen_chunk to the caller; final ends the request. */
static int s_send(struct req *r, const struct tb_msg_gen_chunk *c, bool final)
{
    const struct tb_host *h = r->p->host;
    struct tb_buf buf = {0};
    int rc = h->msg_encode(TB_MSG_GEN_CHUNK, c, &buf);
    if (rc == 0) {
        rc = h->bus_reply(r->in, buf.data, buf.len, final);
    } else if (final) {
        h->bus_reply_error(r->in, TB_EINTERNAL, "cannot encode a reply");
    }
    h->buf_free(&buf);
    return rc;
}

/* The text of one token as it reads inside a longer text (SentencePiece spaces kept). */
static char *s_token_text(const tb_tokenizer_t *tok, int32_t id)
{
    tb_detok_t *d = NULL;
    const char *s;
    size_t len;
    char *out = NULL;
    size_t n = 0;
    if (tb_detok_new(tok, false, &d) != 0 || tb_detok_set_continuation(d) != 0) {
        tb_detok_destroy(&d);
        return NULL;
    }
    if (tb_detok_push(d, id, &s, &len) == 0) {
        out = malloc(len + 1);
        if (out) {
            memcpy(out, s, len);
            n = len;
        }
    }
    if (out && tb_detok_flush(d, &s, &len) == 0 && len) {
        char *o2 = realloc(out, n + len + 1);
        if (o2) {
            memcpy(o2 + n, s, len);
            out = o2;
            n += len;
        }
    }
    if (out) {
        out[n] = 0;
    }
    tb_detok_destroy(&d);
    return out;
}

static void s_on_engine_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    struct req *r = user;
    tb_preproc_t *p = r->p;
    const struct tb_host *h = p->host;
    if (ch->kind == TB_CHUNK_ERROR) {
        r->engine_call = NULL;
        s_fail(r, ch->code, "%s", ch->message);
        return;
    }
    void *m = NULL;
    char err[256];
    if (ch->len && h->msg_decode(TB_MSG_GEN_CHUNK, ch->data, ch->len, &m, err, sizeof(err)) != 0) {
        if (ch->kind == TB_CHUNK_FINAL) {
            r->engine_call = NULL;
        }
        s_fail(r, TB_EPROTO, "the engine sent an unreadable chunk: %s", err);
        return;
    }
    struct tb_msg_gen_chunk *c = m;
    /* Detokenize the new ids and pass the text through the stop matcher. */
    char *text = NULL;
    size_t text_len = 0, text_cap = 0;
    int stopped = 0;
    size_t used_ids = 0;
    for (size_t i = 0; c && i < c->token_ids_count && !stopped; i++) {
        const char *s;
        size_t len;
        used_ids++;
        r->completion_tokens++;
        if (tb_detok_push(r->detok, c->token_ids[i], &s, &len) != 0) {
            continue;
        }
        const char *out;
        size_t out_len;
        stopped = tb_stop_matcher_push(r->stop, s, len, &out, &out_len);
        if (out_len) {
            if (text_len + out_len + 1 > text_cap) {
                text_cap = (text_len + out_len + 1) * 2;
                char *t = realloc(text, text_cap);
                if (!t) {
                    break;
                }
                text = t;
            }
            memcpy(text + text_len, out, out_len);
            text_len += out_len;
            text[text_len] = 0;
        }
    }
    bool final = ch->kind == TB_CHUNK_FINAL || stopped == 1;
    if (final && stopped != 1) {
        /* The engine finished: release what the detokenizer and the matcher still hold. */
        const char *s;
        size_t len;
        if (tb_detok_flush(r->detok, &s, &len) == 0 && len) {
            const char *out;
            size_t out_len;
            stopped = tb_stop_matcher_push(r->stop, s, len, &out, &out_len);
            if (out_len) {
                char *t = realloc(text, text_len + out_len + 1);
                if (t) {
                    text = t;
                    memcpy(text + text_len, out, out_len);
                    text_len += out_len;
                    text[text_len] = 0;
                }
            }
        }
        if (stopped != 1) {
            const char *out;
            size_t out_len;
            tb_stop_matcher_flush(r->stop, &out, &out_len);
            if (out_len) {
                char *t = realloc(text, text_len + out_len + 1);
                if (t) {
                    text = t;
                    memcpy(text + text_len, out, out_len);
                    text_len += out_len;
                    text[text_len] = 0;
                }
            }
        }
    }
    if (c && c->usage && c->usage->has_cached_tokens) {
        r->cached_tokens = c->usage->cached_tokens;
    }
    /* Logprobs of the ids used, with each token's text. */
    struct tb_msg_token_logprob *lps = NULL;
    char **texts = NULL;
    size_t n_lp = c ? (c->logprobs_count < used_ids ? c->logprobs_count : used_ids) : 0;
    if (n_lp) {
        lps = calloc(n_lp, sizeof(*lps));
        texts = calloc(n_lp, sizeof(*texts));
        for (size_t i = 0; lps && texts && i < n_lp; i++) {
            lps[i] = c->logprobs[i];
            texts[i] = s_token_text(p->tok, (int32_t)c->logprobs[i].token_id);
            lps[i].text = texts[i] ? texts[i] : "";
        }
    }
    struct tb_msg_gen_chunk outc = {.text = text};
    outc.token_ids = c ? c->token_ids : NULL;
    outc.token_ids_count = used_ids;
    outc.logprobs = lps;
    outc.logprobs_count = lps ? n_lp : 0;
    if (final) {
        const char *reason = stopped == 1 ? "stop"
                             : (c && c->finish_reason) ? c->finish_reason
                                                       : "stop";
        if (stopped == 1 && r->engine_call && ch->kind != TB_CHUNK_FINAL) {
            h->bus_call_cancel(r->engine_call); /* the engine need not go on */
        }
        r->engine_call = NULL;
        struct tb_msg_usage u = {.prompt_tokens = (int64_t)r->n_ids,
                                 .completion_tokens = r->completion_tokens};
        if (r->cached_tokens > 0) {
            u.cached_tokens = r->cached_tokens;
            u.has_cached_tokens = true;
        }
        outc.finish_reason = reason;
        outc.usage = &u;
        s_send(r, &outc, true);
        r->in = NULL;
        s_req_free(r);
    } else if (text_len || used_ids) {
        if (s_send(r, &outc, false) == TB_EGONE) {
            /* The caller is gone: stop the engine too. */
            h->bus_call_cancel(r->engine_call);
            r->engine_call = NULL;
            h->bus_reply_error(r->in, TB_ECANCELED, "caller gone");
            r->in = NULL;
            s_req_free(r);
        }
    }
    for (size_t i = 0; texts && i < n_lp; i++) {
        free(texts[i]);
    }
    free(texts);
    free(lps);
    free(text);
    h->msg_free(&m);
}

static int s_call_engine(struct req *r, const char *endpoint, uint64_t instance)
{
    tb_preproc_t *p = r->p;
    const struct tb_host *h = p->host;
    struct tb_msg_gen_request q = *r->msg;
    q.mode = "tokens";
    q.messages = NULL;
    q.messages_count = 0;
    q.prompt = NULL;
    q.tools_json = NULL;
    q.stop = NULL;
    q.stop_count = 0;
    q.has_add_generation_prompt = false;
    q.tokens = r->ids;
    q.tokens_count = r->n_ids;
    if (r->max_tokens > 0) {
        q.max_tokens = r->max_tokens;
        q.has_max_tokens = true;
    }
    struct tb_buf buf = {0};
    int rc = h->msg_encode(TB_MSG_GEN_REQUEST, &q, &buf);
    if (rc == 0) {
        rc = h->bus_call(p->bus, endpoint, instance, buf.data, buf.len, r->timeout_ms,
                         s_on_engine_chunk, r, &r->engine_call);
    }
    h->buf_free(&buf);
    return rc;
}

/* Round robin over the engines serving the model. */
static int s_call_any_engine(struct req *r)
{
    tb_preproc_t *p = r->p;
    for (size_t tries = 0; tries < p->n_engines; tries++) {
        const struct engine *e = &p->engines[p->rr++ % p->n_engines];
        int rc = s_call_engine(r, e->endpoint, e->instance);
        if (rc != TB_ENOROUTE) {
            return rc;
        }
    }
    return TB_ENOROUTE;
}

static void s_on_router_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    struct req *r = user;
    tb_preproc_t *p = r->p;
    const struct tb_host *h = p->host;
    if (ch->kind == TB_CHUNK_DATA) {
        return;
    }
    r->router_call = NULL;
    int rc = TB_ENOROUTE;
    if (ch->kind == TB_CHUNK_FINAL) {
        void *m = NULL;
        char err[256];
        if (h->msg_decode(TB_MSG_ROUTE_ANSWER, ch->data, ch->len, &m, err, sizeof(err)) == 0) {
            struct tb_msg_route_answer *a = m;
            rc = s_call_engine(r, a->endpoint, a->instance_id);
            h->msg_free(&m);
        } else {
            LOG_W(p, "unreadable answer from the router: %s", err);
        }
    } else {
        LOG_D(p, "router answered %d (%s): choosing an engine here", ch->code, ch->message);
    }
    if (rc != 0) {
        rc = s_call_any_engine(r);
    }
    if (rc != 0) {
        s_fail(r, rc == TB_ENOROUTE ? TB_ENOROUTE : rc,
               "no engine instance serves model '%s' right now", p->cfg.served_model_name);
    }
}

static void s_dispatch(struct req *r)
{
    tb_preproc_t *p = r->p;
    const struct tb_host *h = p->host;
    int rc = TB_ENOROUTE;
    if (p->router_ep[0]) {
        struct tb_msg_route_query q = {.model = p->cfg.served_model_name, .kind = "tokens"};
        q.tokens = r->ids;
        q.tokens_count = r->n_ids;
        struct tb_buf buf = {0};
        if (h->msg_encode(TB_MSG_ROUTE_QUERY, &q, &buf) == 0) {
            rc = h->bus_call(p->bus, p->router_ep, 0, buf.data, buf.len, 2000, s_on_router_chunk,
                             r, &r->router_call);
        }
        h->buf_free(&buf);
        if (rc == 0) {
            return;
        }
    }
    rc = s_call_any_engine(r);
    if (rc != 0) {
        s_fail(r, rc, "no engine instance serves model '%s' right now",
               p->cfg.served_model_name);
    }
}

static int64_t s_context(const tb_preproc_t *p)
{
    int64_t ctx = p->cfg.context_length;
    for (size_t i = 0; i < p->n_engines; i++) {
        int64_t c = p->engines[i].context_length;
        if (c > 0 && (ctx == 0 || c < ctx)) {
            ctx = c;
        }
    }
    return ctx;
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
        json_array_append_new(arr, o);
    }
    return arr;
}

/* Renders the prompt ids of a text request: 0, or a code with `err`. */
static int s_prompt_ids(tb_preproc_t *p, const struct tb_msg_gen_request *q, bool add_gen_default,
                        bool add_special_default, int32_t **ids, size_t *n, char *err,
                        size_t err_len)
{
    int rc;
    *ids = NULL;
    *n = 0;
    if (q->messages_count > 0) {
        json_t *msgs = s_messages_json(q);
        json_t *extra = NULL;
        if (q->tools_json) {
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
    struct req *r = calloc(1, sizeof(*r));
    if (!r) {
        h->msg_free(&m);
        h->bus_reply_error(in, TB_ENOMEM, "out of memory");
        return;
    }
    atomic_fetch_add(&p->in_flight, 1);
    r->p = p;
    r->in = in;
    r->msg = m;
    r->next = p->reqs;
    if (p->reqs) {
        p->reqs->prev = r;
    }
    p->reqs = r;
    h->bus_request_set_user(in, r);
    struct tb_msg_gen_request *q = r->msg;
    int64_t dl = h->bus_request_deadline_ns(in);
    int64_t left_ms = dl ? (dl - h->now_ns()) / 1000000 : 0;
    r->timeout_ms = (int)(p->cfg.request_timeout_s * 1000);
    if (left_ms > 0 && left_ms < r->timeout_ms) {
        r->timeout_ms = (int)left_ms;
    }
    bool chat = strcmp(q->mode, "chat") == 0;
    if (!chat && strcmp(q->mode, "completion") != 0) {
        s_fail(r, TB_EINVAL, "mode '%s' is not chat or completion", q->mode);
        return;
    }
    if (chat && q->messages_count == 0) {
        s_fail(r, TB_EINVAL, "messages must not be empty");
        return;
    }
    int rc = s_prompt_ids(p, q, true, true, &r->ids, &r->n_ids, err, sizeof(err));
    if (rc != 0) {
        s_fail(r, rc == TB_ENOMEM ? TB_ENOMEM : TB_EINVAL, "%s", err);
        return;
    }
    if (r->n_ids == 0) {
        s_fail(r, TB_EINVAL, "the prompt is empty after tokenization");
        return;
    }
    int64_t ctx = s_context(p);
    if (ctx > 0 && (int64_t)r->n_ids >= ctx) {
        s_fail(r, TB_ECONTEXT,
               "the prompt has %zu tokens but model '%s' has a context of %" PRId64
               " tokens (prompt plus completion): shorten the %s",
               r->n_ids, p->cfg.served_model_name, ctx, chat ? "messages" : "prompt");
        return;
    }
    if (q->has_max_tokens) {
        if (ctx > 0 && (int64_t)r->n_ids + q->max_tokens > ctx) {
            s_fail(r, TB_ECONTEXT,
                   "the prompt has %zu tokens and max_tokens asks for %" PRId64
                   " more, but model '%s' has a context of %" PRId64
                   " tokens: shorten the %s or lower max_tokens",
                   r->n_ids, q->max_tokens, p->cfg.served_model_name, ctx,
                   chat ? "messages" : "prompt");
            return;
        }
        r->max_tokens = q->max_tokens;
    } else if (ctx > 0) {
        r->max_tokens = ctx - (int64_t)r->n_ids;
    }
    if (tb_detok_new(p->tok, true, &r->detok) != 0 ||
        tb_detok_set_prefix(r->detok, r->ids, r->n_ids) != 0 ||
        tb_stop_matcher_new(q->stop, q->stop_count, &r->stop) != 0) {
        s_fail(r, TB_ENOMEM, "out of memory");
        return;
    }
    s_dispatch(r);
}

static void s_on_generate_cancel(tb_request_t *in, void *user)
{
    tb_preproc_t *p = user;
    struct req *r = p->host->bus_request_user(in);
    if (r) {
        s_fail(r, TB_ECANCELED, "cancelled by the caller");
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
        rc = s_prompt_ids(p, &g, true, add_special, &ids, &n, err, sizeof(err));
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
    if (strcmp(r->kind, "tokens") != 0 || strcmp(r->model, p->cfg.served_model_name) != 0) {
        return;
    }
    if (added) {
        if (p->n_engines < MAX_ENGINES) {
            struct engine *e = &p->engines[p->n_engines++];
            snprintf(e->endpoint, sizeof(e->endpoint), "%s", r->endpoint);
            e->instance = r->instance_id;
            e->context_length = r->context_length;
        }
    } else {
        for (size_t i = 0; i < p->n_engines; i++) {
            if (p->engines[i].instance == r->instance_id) {
                p->engines[i] = p->engines[--p->n_engines];
                break;
            }
        }
    }
    p->engines_changed = true;
}

/* Offers the model exactly while an engine serves it (called on the actor thread). */
static void s_sync_endpoint(tb_preproc_t *p)
{
    const struct tb_host *h = p->host;
    if (!p->engines_changed) {
        return;
    }
    p->engines_changed = false;
    if (p->n_engines > 0 && !p->gen_ep && !h->is_draining(p->comp)) {
        struct tb_endpoint_meta meta = {.model = p->cfg.served_model_name, .kind = "text",
                                        .context_length = s_context(p)};
        int rc = h->bus_endpoint_add(p->bus, "generate", &meta, s_on_generate,
                                     s_on_generate_cancel, p, &p->gen_ep);
        if (rc == 0) {
            LOG_I(p, "model '%s' is servable: %zu engine instance%s", p->cfg.served_model_name,
                  p->n_engines, p->n_engines == 1 ? "" : "s");
        } else {
            LOG_W(p, "cannot offer model '%s': %s", p->cfg.served_model_name, h->strerror(rc));
            p->gen_ep = NULL;
            p->engines_changed = true; /* try again on the next step */
        }
    } else if (p->n_engines == 0 && p->gen_ep) {
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
    while (p->reqs) {
        s_fail(p->reqs, TB_EDRAINING, "the preprocessor is stopping");
    }
}

static const struct tb_actor_ops s_ops = {.init = s_init, .step = s_step, .fini = s_fini};

/* ------------------------------------------------------------------------------------------- */

static char *s_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 && n < (1 << 24) ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
    return buf;
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
        size_t len = 0;
        char *src = s_read_file(p->cfg.chat_template, &len);
        if (!src) {
            snprintf(err, err_len, "cannot read chat_template '%s'", p->cfg.chat_template);
            return TB_EIO;
        }
        int rc = tb_chat_template_new(src, len, bos, eos, NULL, &p->tmpl, err, err_len);
        free(src);
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
    atomic_init(&p->in_flight, 0);
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
    TB_LOG_INFO(host, comp, "model '%s' from %s: vocabulary %zu, %s chat template",
                cfg->served_model_name, cfg->model, tb_tokenizer_vocab_size(p->tok),
                tb_chat_template_is_fallback(p->tmpl) ? "fallback (ChatML)" : "the model's");
    *out = p;
    return 0;
fail:
    tb_chat_template_destroy(&p->tmpl);
    tb_tokenizer_destroy(&p->tok);
    free(p);
    return rc;
}

int tb_preproc_start(tb_preproc_t *p)
{
    return tb_actor_start(&p->actor, p->host, p->comp, &s_ops, p);
}

size_t tb_preproc_in_flight(tb_preproc_t *p)
{
    return atomic_load(&p->in_flight);
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
    free(p);
    *p_p = NULL;
}
