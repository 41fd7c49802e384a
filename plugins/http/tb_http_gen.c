/*
 * tb_http_gen: one generation request through the frontend (POST /v1/chat/completions and
 * /v1/completions): admission, body, validation, routing (the router component's choice, or a
 * counted fallback), the engine call, chunks into an OpenAI answer or a server-sent event stream,
 * errors into statuses, and cancellation when the client goes away.
 *
 * A request's connection is suspended while it waits on the bus; bus callbacks fill its answer
 * and resume it; the access handler (unary, errors) or the stream reader then hands the bytes to
 * libmicrohttpd.  Everything runs on the http thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_http_int.h"

#define LOG_WARN(h, ...) TB_LOG_WARN((h)->host, (h)->comp, __VA_ARGS__)
#define LOG_DEBUG(h, ...) TB_LOG_DEBUG((h)->host, (h)->comp, __VA_ARGS__)

#define STREAM_BLOCK (32 * 1024)

static const char *s_endpoint_label(const struct tb_hreq *r)
{
    return r->api == TB_OAI_CHAT ? "chat_completions" : "completions";
}

static bool s_streaming(const struct tb_hreq *r)
{
    return r->oreq && r->oreq->stream;
}

/* ------------------------------------------------------------------------------------------- */
/* Bookkeeping */

static void s_release_instance(struct tb_http *h, struct tb_hreq *r)
{
    if (r->inst_counted) {
        struct tb_idir_instance *inst = tb_instance_dir_get(h->models, r->instance);
        if (inst && inst->in_flight > 0) {
            inst->in_flight--;
        }
        r->inst_counted = false;
    }
}

/* The request's model metrics (the "" model for a request refused before its model was
 * known). */
static struct tb_http_mm *s_mm(struct tb_http *h, struct tb_hreq *r)
{
    if (!r->mm) {
        r->mm = tb_http_metrics_model(&h->metrics, r->model_label);
    }
    return r->mm;
}

static void s_release_choice(struct tb_http *h, struct tb_hreq *r, struct tb_hchoice *c)
{
    if (c->inst_counted) {
        struct tb_idir_instance *inst = tb_instance_dir_get(h->models, r->instance);
        if (inst && inst->in_flight > 0) {
            inst->in_flight--;
        }
        c->inst_counted = false;
    }
}

/* Cancels the open engine calls of the choices (n > 1); true when one was open. */
static bool s_cancel_choices(struct tb_http *h, struct tb_hreq *r)
{
    bool any = false;
    for (size_t i = 0; i < r->n_choices; i++) {
        struct tb_hchoice *c = &r->choices[i];
        if (c->call) {
            h->host->bus_call_cancel(c->call);
            h->bus_dirty = true;
            c->call = NULL;
            any = true;
        }
        s_release_choice(h, r, c);
    }
    return any;
}

/* Cancels the open bus calls, if any; `count` puts them in the model's cancel counter (once
 * per request). */
static void s_cancel_call(struct tb_http *h, struct tb_hreq *r, tb_hm_reason_t reason, bool count)
{
    bool any = s_cancel_choices(h, r);
    if (!r->call && !any) {
        return;
    }
    if (r->call) {
        h->host->bus_call_cancel(r->call);
        h->bus_dirty = true;
        r->call = NULL;
    }
    s_release_instance(h, r);
    if (count && r->kind == TB_HR_GENERATE) {
        struct tb_http_mm *mm = s_mm(h, r);
        if (mm) {
            mm->cancels[reason] += 1;
        }
    }
}

unsigned tb_http_req_step(struct tb_http *h, struct tb_hreq *r, tb_hreq_event_t ev)
{
    unsigned act = tb_hreq_fsm_apply(&r->state, ev);
    if (act & TB_HACT_CANCEL) {
        /* only ever from a state with an upstream call: count it */
        s_cancel_call(h, r, ev == TB_HEV_STOP ? TB_HM_SHUTDOWN : TB_HM_DISCONNECT, true);
    }
    if (act & TB_HACT_RESUME) {
        tb_http_resume(h, r);
    }
    return act;
}

void tb_http_gen_link(struct tb_http *h, struct tb_hreq *r)
{
    r->next = h->gens;
    if (h->gens) {
        h->gens->prev = r;
    }
    h->gens = r;
    h->n_gens++;
    atomic_fetch_add_explicit(&h->sh->n_gens, 1, memory_order_relaxed);
}

void tb_http_gen_unlink(struct tb_http *h, struct tb_hreq *r)
{
    if (r->prev) {
        r->prev->next = r->next;
    } else if (h->gens == r) {
        h->gens = r->next;
    } else {
        return;
    }
    if (r->next) {
        r->next->prev = r->prev;
    }
    r->prev = r->next = NULL;
    h->n_gens--;
    atomic_fetch_sub_explicit(&h->sh->n_gens, 1, memory_order_relaxed);
}

static void s_count_request(struct tb_http *h, struct tb_hreq *r, int status)
{
    tb_http_metrics_request(&h->metrics, s_mm(h, r), s_endpoint_label(r),
                            s_streaming(r) ? "stream" : "unary", status);
}

/* ------------------------------------------------------------------------------------------- */
/* Errors */

/* An engine or bus error code as the API reports it. */
static void s_map_error(int code, const char *msg, const struct tb_hreq *r,
                        struct tb_oai_error *e, bool *retry_after)
{
    *retry_after = false;
    const char *m = msg && *msg ? msg : "no detail";
    switch (code) {
    case TB_EINVAL:
    case TB_ERANGE:
    case TB_E2BIG:
    case TB_EMSGSIZE:
        tb_oai_error_set(e, 400, "invalid_request_error", "invalid_value", NULL, "%s", m);
        break;
    case TB_ENOTSUP:
        tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_value", NULL, "%s", m);
        break;
    case TB_ECONTEXT:
        tb_oai_error_set(e, 400, "invalid_request_error", "context_length_exceeded",
                         r->api == TB_OAI_CHAT ? "messages" : "prompt", "%s", m);
        break;
    case TB_EOVERLOAD:
        tb_oai_error_set(e, 503, "server_error", "overloaded", NULL,
                         "the engine is overloaded, retry later: %s", m);
        *retry_after = true;
        break;
    case TB_EDRAINING:
        tb_oai_error_set(e, 503, "server_error", "shutting_down", NULL,
                         "the engine is shutting down, retry later: %s", m);
        *retry_after = true;
        break;
    case TB_ENOROUTE:
        tb_oai_error_set(e, 503, "server_error", "no_route", NULL,
                         "no live engine instance serves this model now: %s", m);
        *retry_after = true;
        break;
    case TB_EGONE:
    case TB_EIO:
    case TB_EPROTO:
        tb_oai_error_set(e, 502, "server_error", "upstream_error", NULL,
                         "the engine instance serving this request failed: %s", m);
        break;
    case TB_ETIMEDOUT:
        tb_oai_error_set(e, 504, "server_error", "timeout", NULL,
                         "the engine did not finish in time: %s", m);
        break;
    case TB_ECANCELED:
        tb_oai_error_set(e, 503, "server_error", "cancelled", NULL,
                         "the engine cancelled the request: %s", m);
        break;
    default:
        tb_oai_error_set(e, 500, "server_error", "internal_error", NULL, "%s", m);
        break;
    }
}

void tb_http_req_fail(struct tb_http *h, struct tb_hreq *r, const struct tb_oai_error *e,
                      bool retry_after)
{
    s_release_instance(h, r);
    unsigned act = tb_http_req_step(h, r, TB_HEV_FAIL);
    if (act & TB_HACT_ERROR_EVENT) {
        tb_oai_stream_error(r->stream, &r->out, e);
    } else if (act & TB_HACT_ERROR_BODY) {
        free(r->resp_body);
        r->resp_body = tb_oai_error_body(e, &r->resp_len);
        r->resp_status = e->status;
        r->resp_retry_after = retry_after;
    }
    if (!(act & TB_HACT_DROP)) {
        r->final_status = e->status;
    }
    LOG_DEBUG(h, "request %s failed with %d: %s", r->id[0] ? r->id : "(no id)", e->status,
              e->message);
}

enum MHD_Result tb_http_req_hand_over(struct tb_http *h, struct tb_hreq *r)
{
    char inst[24] = "";
    uint64_t id = r->served_by ? r->served_by : r->instance;
    if (r->resp_status == 200 && id) {
        *tb_http_hex(inst, id, 16) = 0;
    }
    enum MHD_Result q = tb_http_queue_json_as(h, r->conn, r->resp_status, r->resp_body,
                                              r->resp_len, r->resp_retry_after, r->resp_close,
                                              inst[0] ? inst : NULL);
    r->resp_body = NULL;
    tb_http_req_step(h, r, TB_HEV_HANDED);
    return q;
}

enum MHD_Result tb_http_req_refuse(struct tb_http *h, struct tb_hreq *r,
                                   const struct tb_oai_error *e, bool retry_after, bool close)
{
    tb_http_req_fail(h, r, e, retry_after);
    r->resp_close = close;
    return tb_http_req_hand_over(h, r);
}

static void s_fail_code(struct tb_http *h, struct tb_hreq *r, int code, const char *msg)
{
    struct tb_oai_error e;
    bool retry;
    s_map_error(code, msg, r, &e, &retry);
    tb_http_req_fail(h, r, &e, retry);
}

/* ------------------------------------------------------------------------------------------- */
/* Chunks */

static void s_observe_tokens(struct tb_http *h, struct tb_hreq *r, int64_t n_tok, size_t text_len)
{
    if (n_tok <= 0 && text_len == 0) {
        return;
    }
    int64_t now = h->host->now_ns();
    if (!r->t_first_ns) {
        r->t_first_ns = now;
        tb_http_metrics_observe(&h->metrics, r->mm, h->metrics.ttft, r->mm ? r->mm->ttft : NULL,
                                (double)(now - r->t_start_ns) / 1e9);
    } else if (n_tok > 0) {
        tb_http_metrics_observe(&h->metrics, r->mm, h->metrics.itl, r->mm ? r->mm->itl : NULL,
                                (double)(now - r->t_last_ns) / 1e9 / (double)n_tok);
    }
    r->t_last_ns = now;
    r->n_tokens += n_tok;
}

static struct tb_oai_head s_head(const struct tb_http *h, const struct tb_hreq *r)
{
    return (struct tb_oai_head){.api = r->api,
                                .id = r->id,
                                .model = r->oreq->model,
                                .created = r->created,
                                .fingerprint = h->fingerprint};
}

/* The whole answer is ready (in r->out or r->resp_body): 0. */
static int s_answered(struct tb_http *h, struct tb_hreq *r)
{
    r->final_status = 200;
    tb_http_req_step(h, r, TB_HEV_END); /* resumes: the rest of the answer goes out */
    return 0;
}

static int s_open_stream(struct tb_http *h, struct tb_hreq *r)
{
    struct tb_oai_head head = s_head(h, r);
    r->stream = tb_oai_stream_new(&head, r->oreq->include_usage);
    if (!r->stream) {
        return TB_ENOMEM;
    }
    int rc = 0;
    size_t n = r->choices ? r->n_choices : 1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        tb_oai_logprobs_t *lp = r->choices ? r->choices[i].lp : r->lp;
        rc = r->choices ? tb_oai_stream_set_index(r->stream, i) : 0;
        rc = rc ? rc : tb_oai_stream_open(r->stream, &r->out);
        if (rc == 0 && r->oreq->echo && r->oreq->gen.prompt) {
            const char *p = r->oreq->gen.prompt;
            rc = tb_oai_stream_text(r->stream, &r->out, p, strlen(p), NULL);
            if (lp) {
                tb_oai_logprobs_skip(lp, strlen(p));
            }
        }
    }
    return rc;
}

/* Takes one decoded chunk's text, tokens and log-probabilities into the answer (into choice
 * `ch`'s when the request has several). */
static int s_absorb(struct tb_http *h, struct tb_hreq *r, struct tb_hchoice *ch,
                    const struct tb_msg_gen_chunk *c)
{
    struct tb_buf *text = ch ? &ch->text : &r->text;
    tb_oai_logprobs_t *lp = ch ? ch->lp : r->lp;
    tb_oai_parts_t **parts = ch ? &ch->parts : &r->parts;
    if (c->has_instance_id) {
        r->served_by = c->instance_id;
    }
    size_t text_len = c->text ? strlen(c->text) : 0;
    int64_t n_tok = c->token_ids_count  ? (int64_t)c->token_ids_count
                    : c->logprobs_count ? (int64_t)c->logprobs_count
                    : text_len          ? 1
                                        : 0;
    s_observe_tokens(h, r, n_tok, text_len);
    if (ch) {
        ch->n_tokens += n_tok;
    }
    bool has_lp = lp && c->logprobs_count > 0;
    if (has_lp && tb_oai_logprobs_add(lp, c->logprobs, c->logprobs_count) != 0) {
        return TB_ENOMEM;
    }
    if (s_streaming(r)) {
        if (!r->stream && s_open_stream(h, r) != 0) {
            return TB_ENOMEM;
        }
        if (ch && tb_oai_stream_set_index(r->stream, ch->index) != 0) {
            return TB_ENOMEM;
        }
        struct tb_msg_gen_chunk thought = {.reasoning = c->reasoning};
        struct tb_msg_gen_chunk calls = {.tool_calls = c->tool_calls,
                                         .tool_calls_count = c->tool_calls_count};
        if (c->reasoning && tb_oai_stream_parts(r->stream, &r->out, &thought) != 0) {
            return TB_ENOMEM;
        }
        if (text_len > 0 || has_lp) {
            if (tb_oai_stream_text(r->stream, &r->out, c->text, text_len,
                                   has_lp ? tb_oai_logprobs_json(lp) : NULL) != 0) {
                return TB_ENOMEM;
            }
            if (has_lp) {
                tb_oai_logprobs_clear(lp);
            }
        }
        if (c->tool_calls_count && tb_oai_stream_parts(r->stream, &r->out, &calls) != 0) {
            return TB_ENOMEM;
        }
        tb_http_req_step(h, r, TB_HEV_FRAME); /* resumes: the frames go out */
    } else {
        if (text_len > 0 && tb_buf_append(text, c->text, text_len) != 0) {
            return TB_ENOMEM;
        }
        if ((c->reasoning || c->tool_calls_count) && !*parts && !(*parts = tb_oai_parts_new())) {
            return TB_ENOMEM;
        }
        if (*parts && tb_oai_parts_add(*parts, c) != 0) {
            return TB_ENOMEM;
        }
        tb_http_req_step(h, r, TB_HEV_CHUNK);
    }
    return 0;
}

/* The usage a final chunk reports (`n_tokens` counted when it reports none). */
static struct tb_oai_usage s_usage(const struct tb_msg_gen_chunk *c, int64_t n_tokens)
{
    struct tb_oai_usage u = {.prompt_tokens = 0, .completion_tokens = n_tokens};
    if (c && c->usage) {
        u.prompt_tokens = c->usage->prompt_tokens;
        u.completion_tokens = c->usage->completion_tokens;
        u.cached_tokens = c->usage->cached_tokens;
        u.has_cached_tokens = c->usage->has_cached_tokens;
        u.reasoning_tokens = c->usage->reasoning_tokens;
        u.has_reasoning_tokens = c->usage->has_reasoning_tokens;
    }
    return u;
}

static void s_count_tokens(struct tb_http *h, struct tb_hreq *r, const struct tb_oai_usage *u)
{
    struct tb_http_mm *mm = r->mm;
    if (mm) {
        mm->in_tokens += (double)u->prompt_tokens;
        mm->out_tokens += (double)u->completion_tokens;
        tb_http_metrics_observe(&h->metrics, mm, h->metrics.in_seq, mm->in_seq,
                                (double)u->prompt_tokens);
        tb_http_metrics_observe(&h->metrics, mm, h->metrics.out_seq, mm->out_seq,
                                (double)u->completion_tokens);
    }
}

/* The engine's final chunk: finish the answer. */
static int s_complete(struct tb_http *h, struct tb_hreq *r, const struct tb_msg_gen_chunk *c)
{
    struct tb_oai_usage u = s_usage(c, r->n_tokens);
    const char *finish = c && c->finish_reason ? c->finish_reason : "stop";
    tb_http_copy_str(r->finish_reason, sizeof(r->finish_reason), finish);
    s_count_tokens(h, r, &u);
    s_release_instance(h, r);
    int rc = 0;
    if (s_streaming(r)) {
        if (!r->stream) {
            rc = s_open_stream(h, r);
        }
        rc = rc ? rc : tb_oai_stream_finish(r->stream, &r->out, r->finish_reason, &u);
    } else {
        struct tb_oai_head head = s_head(h, r);
        r->resp_body = tb_oai_final_body_parts(&head, (const char *)r->text.data, r->text.len,
                                               r->parts, r->finish_reason,
                                               r->lp ? tb_oai_logprobs_json(r->lp) : NULL, &u,
                                               &r->resp_len);
        r->resp_status = 200;
        rc = r->resp_body ? 0 : TB_ENOMEM;
    }
    return rc ? rc : s_answered(h, r);
}

/* Forgets the call in `*slot` after its last chunk (the bus frees it).  True when the chunk came
 * late (the answer is complete, or nobody is left to send it to): the call, if still open, is
 * cancelled and the chunk dropped. */
static bool s_chunk_late(struct tb_http *h, struct tb_hreq *r, tb_call_t **slot, tb_call_t *call,
                         const struct tb_chunk *ch)
{
    if (ch->kind != TB_CHUNK_DATA) {
        *slot = NULL;
    }
    if (tb_hreq_fsm_is_upstream(r->state)) {
        return false;
    }
    if (*slot == call) {
        h->host->bus_call_cancel(call);
        h->bus_dirty = true;
        *slot = NULL;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------- */
/* Several choices (n > 1): one engine call each, on the instance choice 0 went to */

/* Every choice ended: the usage (the prompt counted once, the completions summed) and the end
 * of the answer. */
static int s_complete_choices(struct tb_http *h, struct tb_hreq *r)
{
    struct tb_oai_usage u = r->choices[0].usage;
    for (size_t i = 1; i < r->n_choices; i++) {
        u.completion_tokens += r->choices[i].usage.completion_tokens;
        u.reasoning_tokens += r->choices[i].usage.reasoning_tokens;
    }
    s_count_tokens(h, r, &u);
    int rc = 0;
    if (s_streaming(r)) {
        rc = tb_oai_stream_end(r->stream, &r->out, &u);
    } else {
        struct tb_oai_choice *v = calloc(r->n_choices, sizeof(*v));
        if (!v) {
            return TB_ENOMEM;
        }
        for (size_t i = 0; i < r->n_choices; i++) {
            struct tb_hchoice *c = &r->choices[i];
            v[i] = (struct tb_oai_choice){.text = (const char *)c->text.data,
                                          .len = c->text.len,
                                          .parts = c->parts,
                                          .finish_reason = c->finish_reason,
                                          .logprobs = c->lp ? tb_oai_logprobs_json(c->lp) : NULL};
        }
        struct tb_oai_head head = s_head(h, r);
        r->resp_body = tb_oai_final_body_choices(&head, v, r->n_choices, &u, &r->resp_len);
        free(v);
        r->resp_status = 200;
        rc = r->resp_body ? 0 : TB_ENOMEM;
    }
    return rc ? rc : s_answered(h, r);
}

/* A choice's final chunk: its finish frame (streams), then the whole answer once it was the
 * last. */
static int s_complete_choice(struct tb_http *h, struct tb_hreq *r, struct tb_hchoice *ch,
                             const struct tb_msg_gen_chunk *c)
{
    ch->usage = s_usage(c, ch->n_tokens);
    const char *finish = c && c->finish_reason ? c->finish_reason : "stop";
    tb_http_copy_str(ch->finish_reason, sizeof(ch->finish_reason), finish);
    ch->done = true;
    r->n_done++;
    s_release_choice(h, r, ch);
    if (s_streaming(r)) {
        int rc = r->stream ? 0 : s_open_stream(h, r);
        rc = rc ? rc : tb_oai_stream_set_index(r->stream, ch->index);
        rc = rc ? rc : tb_oai_stream_finish_choice(r->stream, &r->out, ch->finish_reason);
        if (rc != 0) {
            return rc;
        }
        tb_http_req_step(h, r, TB_HEV_FRAME);
    } else {
        tb_http_req_step(h, r, TB_HEV_CHUNK);
    }
    return r->n_done == r->n_choices ? s_complete_choices(h, r) : 0;
}

static void s_on_choice_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user);

/* Calls choices 1..n-1 on the instance that answers choice 0 (its first chunk came, so the
 * prompt's blocks are in that instance's prefix cache).  0 or the bus's error. */
static int s_start_choices(struct tb_http *h, struct tb_hreq *r)
{
    r->choices_started = true;
    struct tb_idir_instance *inst = tb_instance_dir_get(h->models, r->instance);
    if (!inst) {
        return TB_EGONE;
    }
    int timeout_ms = (int)(h->cfg.request_timeout_s * 1000);
    for (size_t i = 1; i < r->n_choices; i++) {
        struct tb_hchoice *c = &r->choices[i];
        int rc = h->host->bus_call(h->bus, inst->endpoint, inst->instance_id, c->msg.data,
                                   c->msg.len, timeout_ms, s_on_choice_chunk, c, &c->call);
        h->bus_dirty = true;
        if (rc != 0) {
            return rc;
        }
        c->inst_counted = true;
        inst->in_flight++;
        inst->served++;
    }
    return 0;
}

/* A chunk of one choice's call.  Any failure fails the whole request (no retry elsewhere). */
static void s_on_choice_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    struct tb_hchoice *c = user;
    struct tb_hreq *r = c->r;
    struct tb_http *h = r->h;
    const struct tb_host *host = h->host;
    if (s_chunk_late(h, r, &c->call, call, ch)) {
        return;
    }
    if (ch->kind == TB_CHUNK_ERROR) {
        s_cancel_call(h, r, TB_HM_ERROR, true);
        s_fail_code(h, r, ch->code, ch->message);
        return;
    }
    void *msg = NULL;
    char err[200];
    err[0] = 0;
    const char *why = err;
    int rc = 0, code = TB_EPROTO;
    if (c->index == 0 && !r->choices_started && (rc = s_start_choices(h, r)) != 0) {
        code = rc;
        why = host->strerror(rc);
    }
    if (rc == 0 && ch->len > 0) {
        rc = host->msg_decode(TB_MSG_GEN_CHUNK, ch->data, ch->len, &msg, err, sizeof(err));
    }
    if (rc == 0 && msg) {
        rc = s_absorb(h, r, c, msg);
        why = rc ? "out of memory" : why;
    }
    if (rc == 0 && ch->kind == TB_CHUNK_FINAL) {
        rc = s_complete_choice(h, r, c, msg);
        why = rc ? "out of memory" : why;
    }
    host->msg_free(&msg);
    if (rc != 0) {
        s_cancel_call(h, r, TB_HM_ERROR, true);
        LOG_WARN(h, "request %s: choice %zu on engine instance %016" PRIx64 " failed: %s", r->id,
                 c->index, r->instance, why);
        s_fail_code(h, r, rc == TB_ENOMEM ? TB_EINTERNAL : code, why);
    }
}

/* n > 1: a gen_request per choice (choice i's seed is seed + i when the request has a seed),
 * and each choice's collectors.  0 or an error code. */
static int s_prepare_choices(struct tb_http *h, struct tb_hreq *r)
{
    size_t n = (size_t)r->oreq->n;
    r->choices = calloc(n, sizeof(*r->choices));
    if (!r->choices) {
        return TB_ENOMEM;
    }
    r->n_choices = n;
    struct tb_msg_gen_request *g = &r->oreq->gen;
    int64_t seed = g->seed;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct tb_hchoice *c = &r->choices[i];
        c->r = r;
        c->index = i;
        if (g->has_seed) {
            g->seed = (int64_t)((uint64_t)seed + i); /* wraps, as the engines' seeds do */
        }
        rc = h->host->msg_encode(TB_MSG_GEN_REQUEST, g, &c->msg);
        if (rc == 0 && r->oreq->logprobs) {
            c->lp = tb_oai_logprobs_new(r->api, (int)r->oreq->top_logprobs);
            rc = c->lp ? 0 : TB_ENOMEM;
        }
        if (rc == 0 && !s_streaming(r) && r->oreq->echo && g->prompt) {
            rc = tb_buf_puts(&c->text, g->prompt);
            if (c->lp) {
                tb_oai_logprobs_skip(c->lp, strlen(g->prompt));
            }
        }
    }
    g->seed = seed;
    return rc;
}

static void s_free_choices(struct tb_http *h, struct tb_hreq *r)
{
    for (size_t i = 0; i < r->n_choices; i++) {
        struct tb_hchoice *c = &r->choices[i];
        h->host->buf_free(&c->msg);
        tb_buf_free(&c->text);
        tb_oai_logprobs_destroy(&c->lp);
        tb_oai_parts_destroy(&c->parts);
    }
    free(r->choices);
    r->choices = NULL;
    r->n_choices = 0;
}

static void s_call_engine(struct tb_http *h, struct tb_hreq *r, uint64_t instance,
                          tb_rf_reason_t why, const char *detail);

static void s_on_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    struct tb_hreq *r = user;
    struct tb_http *h = r->h;
    const struct tb_host *host = h->host;
    if (s_chunk_late(h, r, &r->call, call, ch)) {
        return;
    }
    if (ch->kind == TB_CHUNK_ERROR) {
        if (ch->code == TB_EGONE && r->state == TB_HS_WAITING && r->tries < 2) {
            /* The instance went away before producing anything: nothing was sent, so the
             * request moves to another instance, once. */
            struct tb_idir_instance *gone = tb_instance_dir_get(h->models, r->instance);
            s_release_instance(h, r);
            if (gone) {
                tb_instance_dir_set_state(h->models, gone, TB_INST_UNHEALTHY);
            }
            LOG_DEBUG(h,
                      "request %s: engine instance %016" PRIx64 " went away before "
                      "answering: trying another",
                      r->id, r->instance);
            s_call_engine(h, r, 0, TB_RF_RETRY, "the instance went away before answering");
            return;
        }
        s_fail_code(h, r, ch->code, ch->message);
        return;
    }
    struct tb_idir_instance *inst = tb_instance_dir_get(h->models, r->instance);
    if (inst && inst->state != TB_INST_HEALTHY) {
        tb_instance_dir_set_state(h->models, inst, TB_INST_HEALTHY);
    }
    void *msg = NULL;
    char err[200];
    err[0] = 0;
    const char *why = err; /* the decoder's message, or what went wrong after it */
    int rc = 0;
    if (ch->len > 0) {
        rc = host->msg_decode(TB_MSG_GEN_CHUNK, ch->data, ch->len, &msg, err, sizeof(err));
    }
    if (rc == 0 && msg) {
        rc = s_absorb(h, r, NULL, msg);
        why = rc ? "out of memory" : why;
    }
    if (rc == 0 && ch->kind == TB_CHUNK_FINAL) {
        rc = s_complete(h, r, msg);
        why = rc ? "out of memory" : why;
    }
    host->msg_free(&msg);
    if (rc != 0) {
        s_cancel_call(h, r, TB_HM_ERROR, true);
        LOG_WARN(h, "request %s: bad chunk from engine instance %016" PRIx64 ": %s", r->id,
                 r->instance, why);
        s_fail_code(h, r, rc == TB_ENOMEM ? TB_EINTERNAL : TB_EPROTO, why);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Routing */

/* Calls `instance` (the router's choice), or, when it is 0 or cannot be called, an instance
 * chosen here: a fallback counted and logged with `why`. */
static void s_call_engine(struct tb_http *h, struct tb_hreq *r, uint64_t instance,
                          tb_rf_reason_t why, const char *detail)
{
    const struct tb_host *host = h->host;
    for (int attempt = 0; attempt < 3; attempt++) {
        struct tb_idir_instance *inst = instance ? tb_instance_dir_get(h->models, instance)
                                                 : NULL;
        if (!inst || strcmp(inst->model, r->oreq->model) != 0) {
            inst = tb_instance_dir_next(h->models, r->oreq->model);
            if (inst) {
                tb_route_fallback_note(&h->fallback, r->oreq->model, why, detail);
            }
        }
        if (!inst) {
            struct tb_oai_error e;
            tb_oai_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                             "the model '%.200s' does not exist (its last instance left)",
                             r->oreq->model);
            tb_http_req_fail(h, r, &e, false);
            return;
        }
        int timeout_ms = (int)(h->cfg.request_timeout_s * 1000);
        struct tb_hchoice *c0 = r->choices; /* n > 1: choice 0 goes first */
        int rc = c0 ? host->bus_call(h->bus, inst->endpoint, inst->instance_id, c0->msg.data,
                                     c0->msg.len, timeout_ms, s_on_choice_chunk, c0, &c0->call)
                    : host->bus_call(h->bus, inst->endpoint, inst->instance_id, r->msg.data,
                                     r->msg.len, timeout_ms, s_on_chunk, r, &r->call);
        h->bus_dirty = true;
        if (rc == 0) {
            r->instance = inst->instance_id;
            *(c0 ? &c0->inst_counted : &r->inst_counted) = true;
            inst->in_flight++;
            inst->served++;
            r->tries++;
            tb_http_req_step(h, r, TB_HEV_CALL);
            return;
        }
        LOG_DEBUG(h, "request %s: cannot call %s (instance %016" PRIx64 "): %s", r->id,
                  inst->endpoint, inst->instance_id, host->strerror(rc));
        if (rc != TB_ENOROUTE) {
            s_fail_code(h, r, rc, host->strerror(rc));
            return;
        }
        instance = 0;
        why = TB_RF_BAD_ANSWER;
        detail = "the chosen instance is gone";
    }
    s_fail_code(h, r, TB_ENOROUTE, "every pick was refused");
}

static void s_on_route_answer(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    struct tb_hreq *r = user;
    struct tb_http *h = r->h;
    if (ch->kind == TB_CHUNK_DATA) {
        return;
    }
    r->call = NULL;
    uint64_t instance = 0;
    tb_rf_reason_t why = TB_RF_BAD_ANSWER;
    char detail[200] = "";
    if (ch->kind == TB_CHUNK_FINAL && ch->len > 0) {
        void *msg = NULL;
        char err[160];
        if (h->host->msg_decode(TB_MSG_ROUTE_ANSWER, ch->data, ch->len, &msg, err, sizeof(err)) ==
            0) {
            const struct tb_msg_route_answer *a = msg;
            struct tb_idir_instance *inst = tb_instance_dir_get(h->models, a->instance_id);
            if (inst && strcmp(inst->model, r->oreq->model) == 0) {
                instance = a->instance_id;
            } else {
                snprintf(detail, sizeof(detail),
                         "the router chose instance %016" PRIx64 ", unknown here",
                         a->instance_id);
            }
        } else {
            snprintf(detail, sizeof(detail), "malformed answer: %s", err);
        }
        h->host->msg_free(&msg);
    } else if (ch->kind == TB_CHUNK_ERROR) {
        why = ch->code == TB_ETIMEDOUT || ch->code == TB_EGONE ? TB_RF_ROUTER_DOWN
                                                               : TB_RF_ROUTER_ERROR;
        snprintf(detail, sizeof(detail), "%s: %s", h->host->strerror(ch->code),
                 ch->message ? ch->message : "");
    } else {
        snprintf(detail, sizeof(detail), "an empty answer");
    }
    s_call_engine(h, r, instance, why, detail);
}

static void s_route(struct tb_http *h, struct tb_hreq *r)
{
    const struct tb_host *host = h->host;
    tb_rf_reason_t why = h->router_ep[0] ? TB_RF_ROUTER_DOWN : TB_RF_NO_ROUTER;
    const char *detail = h->router_ep[0] ? "no live router instance" : NULL;
    if (h->router_ep[0] && h->router_instances > 0) {
        struct tb_msg_route_query q = {.model = r->oreq->model, .kind = "text"};
        struct tb_buf b = {0};
        int rc = host->msg_encode(TB_MSG_ROUTE_QUERY, &q, &b);
        if (rc == 0) {
            rc = host->bus_call(h->bus, h->router_ep, 0, b.data, b.len,
                                (int)(h->cfg.router_timeout_s * 1000), s_on_route_answer, r,
                                &r->call);
            h->bus_dirty = true;
        }
        host->buf_free(&b);
        if (rc == 0) {
            tb_http_req_step(h, r, TB_HEV_ROUTE);
            return;
        }
        detail = host->strerror(rc);
    }
    s_call_engine(h, r, 0, why, detail);
}

/* ------------------------------------------------------------------------------------------- */
/* HTTP side */

bool tb_http_req_too_long(struct tb_http *h, struct tb_hreq *r, struct tb_oai_error *e)
{
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl) {
        return false;
    }
    char *end = NULL;
    unsigned long long v = strtoull(cl, &end, 10);
    if (end == cl || v <= (unsigned long long)h->cfg.max_body_size) {
        return false;
    }
    tb_oai_error_set(e, 413, "invalid_request_error", "request_too_large", NULL,
                     "the request body has %llu bytes: the limit is %" PRId64, v,
                     h->cfg.max_body_size);
    return true;
}

enum MHD_Result tb_http_gen_begin(struct tb_http *h, struct tb_hreq *r)
{
    struct tb_oai_error e;
    bool retry = false, close = false;
    if (atomic_load(&h->sh->draining)) {
        tb_oai_error_set(&e, 503, "server_error", "shutting_down", NULL,
                         "the server is shutting down: send this request to another replica");
        retry = close = true;
    } else if (tb_http_req_too_long(h, r, &e)) {
        close = true;
    } else if (!tb_http_shared_admit(h->sh, (size_t)h->cfg.max_in_flight)) {
        tb_oai_error_set(&e, 503, "server_error", "overloaded", NULL,
                         "too many requests in flight (%" PRId64 "): retry later",
                         h->cfg.max_in_flight);
        retry = true;
    } else {
        r->counted = true;
        tb_http_req_step(h, r, TB_HEV_ADMIT);
        tb_http_gen_link(h, r);
        return MHD_YES;
    }
    s_count_request(h, r, e.status);
    return tb_http_req_refuse(h, r, &e, retry, close);
}

static void s_make_id(struct tb_http *h, struct tb_hreq *r)
{
    uint64_t a = h->id_seed + 0x9e3779b97f4a7c15ULL * ++h->id_counter;
    uint64_t z = a;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    /* "<prefix>-" then z as 16 hex digits and the low 32 bits of a >> 11 as 8 */
    const char *prefix = r->api == TB_OAI_CHAT ? "chatcmpl-" : "cmpl-";
    size_t at = strlen(prefix);
    memcpy(r->id, prefix, at);
    char *end = tb_http_hex(r->id + at, z, 16);
    end = tb_http_hex(end, (uint32_t)(a >> 11), 8);
    *end = 0;
}

/* Decodes the body and prepares the gen_request message; 0, or -1 with `e` set (and whether
 * the connection must close). */
static int s_prepare(struct tb_http *h, struct tb_hreq *r, struct tb_oai_error *e, bool *close)
{
    *close = false;
    if (r->body_too_big) {
        tb_oai_error_set(e, 413, "invalid_request_error", "request_too_large", NULL,
                         "the request body is larger than the limit of %" PRId64 " bytes",
                         h->cfg.max_body_size);
        *close = true;
        return -1;
    }
    int rc = tb_oai_request_parse(r->api, r->body.data, r->body.len, &r->oreq, e);
    tb_buf_free(&r->body);
    if (rc != 0) {
        return -1;
    }
    if (!tb_instance_dir_model(h->models, r->oreq->model)) {
        tb_oai_error_set(e, 404, "invalid_request_error", "model_not_found", "model",
                         "the model '%.200s' does not exist", r->oreq->model);
        return -1;
    }
    tb_http_metrics_label(r->oreq->model, r->model_label, sizeof(r->model_label));
    r->mm = tb_http_metrics_model(&h->metrics, r->model_label);
    s_make_id(h, r);
    r->created = (int64_t)time(NULL);
    r->oreq->gen.request_id = r->id;
    if (r->oreq->n >
        1) { /* each choice its message (its own seed) and collectors; no request's */
        rc = s_prepare_choices(h, r);
        if (rc != 0) {
            tb_oai_error_set(e, 500, "server_error", "internal_error", NULL,
                             "cannot prepare the choices: %s", h->host->strerror(rc));
            return -1;
        }
        return 0;
    }
    rc = h->host->msg_encode(TB_MSG_GEN_REQUEST, &r->oreq->gen, &r->msg);
    if (rc == 0 && r->oreq->logprobs) {
        r->lp = tb_oai_logprobs_new(r->api, (int)r->oreq->top_logprobs);
        rc = r->lp ? 0 : TB_ENOMEM;
    }
    if (rc != 0) {
        tb_oai_error_set(e, 500, "server_error", "internal_error", NULL,
                         "cannot encode the request: %s", h->host->strerror(rc));
        return -1;
    }
    if (!s_streaming(r) && r->oreq->echo && r->oreq->gen.prompt) {
        tb_buf_puts(&r->text, r->oreq->gen.prompt);
        if (r->lp) {
            tb_oai_logprobs_skip(r->lp, strlen(r->oreq->gen.prompt));
        }
    }
    return 0;
}

/* The whole body is here: decode, check the model, start routing. */
static enum MHD_Result s_start(struct tb_http *h, struct tb_hreq *r)
{
    struct tb_oai_error e;
    bool close;
    if (s_prepare(h, r, &e, &close) != 0) {
        return tb_http_req_refuse(h, r, &e, false, close);
    }
    s_route(h, r);
    if (r->state == TB_HS_ANSWERED) {
        return tb_http_req_hand_over(h, r); /* failed before anything went out: answer now */
    }
    tb_http_suspend(h, r);
    if (!tb_http_watch(h, r)) {
        tb_http_req_client_gone(h, r); /* closed while its body was read */
    }
    return MHD_YES;
}

/* libmicrohttpd's content reader of a stream: hands it the frames written so far. */
static ssize_t s_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct tb_hreq *r = cls;
    if (tb_hreq_fsm_is_dead(r->state)) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = r->out.len - r->out_off;
    if (n > 0) {
        if (n > max) {
            n = max;
        }
        memcpy(buf, r->out.data + r->out_off, n);
        r->out_off += n;
        if (r->out_off == r->out.len) {
            tb_buf_clear(&r->out);
            r->out_off = 0;
            if (r->state == TB_HS_ANSWERED) {
                tb_http_req_step(r->h, r, TB_HEV_HANDED); /* that was the last frame */
            }
        }
        return (ssize_t)n;
    }
    if (r->state == TB_HS_ANSWERED) {
        tb_http_req_step(r->h, r, TB_HEV_HANDED);
    }
    if (r->state == TB_HS_SENT) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    /* Nothing to send until the engine's next chunk: sleep until tb_http_resume. */
    tb_http_suspend(r->h, r);
    return 0;
}

/* x-turbine-instance: the engine instance that generated the answer (16 hex digits), for tests
 * and operators (docs/http.md). */
static void s_instance_header(const struct tb_hreq *r, struct MHD_Response *resp)
{
    uint64_t id = r->served_by ? r->served_by : r->instance;
    if (id) {
        char v[24];
        *tb_http_hex(v, id, 16) = 0;
        MHD_add_response_header(resp, "x-turbine-instance", v);
    }
}

static enum MHD_Result s_queue_stream(struct tb_http *h, struct tb_hreq *r)
{
    (void)h;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                                                  s_reader, r, NULL);
    if (!resp) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    s_instance_header(r, resp);
    enum MHD_Result rc = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    r->sse_queued = rc == MHD_YES;
    return rc;
}

enum MHD_Result tb_http_gen_access(struct tb_http *h, struct tb_hreq *r, const char *upload,
                                   size_t *upload_size)
{
    if (*upload_size > 0) {
        return tb_http_read_body(h, r, upload, upload_size);
    }
    if (r->state == TB_HS_BODY) {
        return s_start(h, r);
    }
    /* Resumed. */
    if (tb_hreq_fsm_is_dead(r->state)) {
        return MHD_NO;
    }
    if (r->resp_body) {
        return tb_http_req_hand_over(h, r);
    }
    if (r->stream && !r->sse_queued) {
        return s_queue_stream(h, r);
    }
    tb_http_suspend(h, r);
    return MHD_YES;
}

enum MHD_Result tb_http_read_body(struct tb_http *h, struct tb_hreq *r, const char *upload,
                                  size_t *upload_size)
{
    size_t n = *upload_size;
    *upload_size = 0;
    if (r->state != TB_HS_BODY) {
        return MHD_YES;
    }
    if (!r->body_too_big && r->body.len + n > (size_t)h->cfg.max_body_size) {
        r->body_too_big = true;
        tb_buf_free(&r->body);
    }
    if (r->body_too_big) {
        r->discarded += n;
        /* A body sent without Content-Length is read (and dropped) up to 4x the limit so the
         * client can get its 413; past that the connection is closed. */
        return r->discarded > 4 * (size_t)h->cfg.max_body_size ? MHD_NO : MHD_YES;
    }
    if (tb_buf_append(&r->body, upload, n) != 0) {
        r->body_too_big = true;
        tb_buf_free(&r->body);
    }
    return MHD_YES;
}

void tb_http_req_client_gone(struct tb_http *h, struct tb_hreq *r)
{
    tb_http_unwatch(h, r);
    if (r->call && r->state != TB_HS_GONE) {
        LOG_DEBUG(h, "request %s: the client disconnected: cancelling it upstream",
                  r->id[0] ? r->id : "(no id)");
    }
    tb_http_req_step(h, r, TB_HEV_CLIENT_GONE);
}

void tb_http_gen_completed(struct tb_http *h, struct tb_hreq *r,
                           enum MHD_RequestTerminationCode toe)
{
    tb_http_unwatch(h, r);
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && r->state != TB_HS_GONE;
    bool stopped = r->state == TB_HS_STOPPED;
    s_cancel_call(h, r,
                  toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN || stopped ? TB_HM_SHUTDOWN
                                                                           : TB_HM_DISCONNECT,
                  tb_hreq_fsm_is_upstream(r->state));
    tb_http_req_step(h, r, TB_HEV_COMPLETED);
    s_release_instance(h, r);
    if (r->counted) {
        int status = r->final_status ? r->final_status : 499;
        if (!ok && !stopped && r->oreq) {
            status = 499; /* client closed request (nginx's convention) */
            struct tb_http_mm *mm = s_mm(h, r);
            if (mm) {
                mm->disconnects += 1;
            }
        }
        s_count_request(h, r, status);
        if (r->oreq) {
            tb_http_metrics_observe(&h->metrics, s_mm(h, r), h->metrics.duration,
                                    r->mm ? r->mm->duration : NULL,
                                    (double)(h->host->now_ns() - r->t_start_ns) / 1e9);
        }
        atomic_fetch_sub(&h->sh->in_flight, 1);
        r->counted = false;
    }
    tb_http_gen_unlink(h, r);
    tb_oai_request_destroy(&r->oreq);
    h->host->buf_free(&r->msg);
    tb_buf_free(&r->out);
    tb_buf_free(&r->text);
    tb_oai_stream_destroy(&r->stream);
    tb_oai_parts_destroy(&r->parts);
    tb_oai_logprobs_destroy(&r->lp);
    s_free_choices(h, r);
    free(r->resp_body);
    r->resp_body = NULL;
}

void tb_http_gen_abort_all(struct tb_http *h)
{
    for (struct tb_hreq *r = h->gens; r; r = r->next) {
        tb_http_unwatch(h, r);
        tb_http_req_step(h, r, TB_HEV_STOP); /* cancels upstream, resumes */
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Gauges */

static bool s_remember_model(struct tb_http *h, const char *label)
{
    for (size_t i = 0; i < h->n_metric_models; i++) {
        if (strcmp(h->metric_models[i], label) == 0) {
            return true;
        }
    }
    char **v = realloc(h->metric_models, (h->n_metric_models + 1) * sizeof(*v));
    if (!v) {
        return false;
    }
    h->metric_models = v;
    v[h->n_metric_models] = strdup(label);
    if (!v[h->n_metric_models]) {
        return false;
    }
    h->n_metric_models++;
    return true;
}

void tb_http_gen_update_gauges(struct tb_http *h)
{
    char label[160];
    for (size_t i = 0; i < tb_instance_dir_model_count(h->models); i++) {
        s_remember_model(h, tb_http_metrics_label(tb_instance_dir_model_at(h->models, i)->name,
                                                  label, sizeof(label)));
    }
    for (struct tb_hreq *r = h->gens; r; r = r->next) {
        if (r->model_label[0]) {
            s_remember_model(h, r->model_label);
        }
    }
    for (size_t i = 0; i < h->n_metric_models; i++) {
        const char *m = h->metric_models[i];
        int64_t inflight = 0, queued = 0;
        for (struct tb_hreq *r = h->gens; r; r = r->next) {
            if (strcmp(r->model_label, m) != 0) {
                continue;
            }
            inflight++;
            queued += r->state == TB_HS_ROUTING || r->state == TB_HS_WAITING;
        }
        if (h->sh->n_loops > 1) {
            tb_http_shared_gauge(h->sh, h->index, m, inflight, queued, &inflight, &queued);
        }
        h->host->metric_set(h->metrics.inflight, m, (double)inflight);
        h->host->metric_set(h->metrics.queued, m, (double)queued);
    }
}
