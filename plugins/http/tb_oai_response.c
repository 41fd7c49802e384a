/* tb_oai_response: OpenAI response bodies and stream frames (see tb_oai_response.h). */
#include "tb_oai_response.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_utf8.h"

/* ---- strings ---- */

/* A copy of s with each ill-formed sequence (its maximal subpart, tb_utf8.h) replaced by one
 * U+FFFD, in `out` (emptied first).  0 or TB_ENOMEM. */
static int s_utf8_repair(struct tb_buf *out, const char *s, size_t len)
{
    tb_buf_clear(out);
    if (tb_buf_reserve(out, len + 8) != 0) {
        return TB_ENOMEM;
    }
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t q;
        int rc;
        if (tb_utf8_decode(u + i, len - i, &cp, &q) == TB_UTF8_OK) {
            rc = tb_buf_append(out, u + i, q);
        } else {
            rc = tb_buf_append(out, "\xEF\xBF\xBD", 3);
        }
        if (rc != 0) {
            return rc;
        }
        i += q;
    }
    return 0;
}

int tb_oai_json_string(struct tb_buf *b, const char *s, size_t len)
{
    /* Printable ASCII without quote or backslash needs no escaping: copy it as is. */
    size_t i = 0;
    while (i < len && (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f && s[i] != '"' &&
           s[i] != '\\') {
        i++;
    }
    if (i == len) {
        if (tb_buf_reserve(b, len + 2) != 0) {
            return TB_ENOMEM;
        }
        b->data[b->len++] = '"';
        memcpy(b->data + b->len, s, len);
        b->len += len;
        b->data[b->len++] = '"';
        b->data[b->len] = 0;
        return 0;
    }
    struct tb_buf fixed = {0};
    json_t *j = json_stringn(s, len);
    if (!j) {
        j = s_utf8_repair(&fixed, s, len) == 0 ? json_stringn((const char *)fixed.data, fixed.len)
                                               : NULL;
        len = fixed.len;
    }
    int rc = TB_ENOMEM;
    size_t cap = len * 6 + 2; /* every byte as \u00XX, plus quotes */
    if (j && tb_buf_reserve(b, cap) == 0) {
        size_t n = json_dumpb(j, (char *)b->data + b->len, cap, JSON_ENCODE_ANY);
        if (n > 0 && n <= cap) {
            b->len += n;
            b->data[b->len] = 0;
            rc = 0;
        }
    }
    json_decref(j);
    tb_buf_free(&fixed);
    return rc;
}

/* A json string value from arbitrary bytes (repairing invalid UTF-8); NULL when out of memory. */
static json_t *s_jstr(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    if (!j) {
        struct tb_buf fixed = {0};
        if (s_utf8_repair(&fixed, s, len) == 0) {
            j = json_stringn((const char *)fixed.data, fixed.len);
        }
        tb_buf_free(&fixed);
    }
    return j;
}

char *tb_oai_error_body(const struct tb_oai_error *e, size_t *len_out)
{
    json_t *err = json_object();
    json_t *root = json_object();
    char *out = NULL;
    if (err && root) {
        json_object_set_new(err, "message", s_jstr(e->message, strlen(e->message)));
        json_object_set_new(err, "type", json_string(e->type ? e->type : "server_error"));
        json_object_set_new(err, "param",
                            e->param[0] ? s_jstr(e->param, strlen(e->param)) : json_null());
        json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
        json_object_set(root, "error", err);
        out = json_dumps(root, JSON_COMPACT);
    }
    json_decref(err);
    json_decref(root);
    if (out && len_out) {
        *len_out = strlen(out);
    }
    return out;
}

/* ---- log-probabilities ---- */

struct tb_oai_logprobs {
    tb_oai_api_t api;
    int top_n;
    json_t *root;
    json_t *content;                             /* chat */
    json_t *tokens, *token_lps, *tops, *offsets; /* completions */
    size_t offset;
};

static json_t *s_bytes(const char *s)
{
    json_t *a = json_array();
    for (const unsigned char *p = (const unsigned char *)s; a && *p; p++) {
        json_array_append_new(a, json_integer(*p));
    }
    return a;
}

/* A log-probability as JSON: -inf (and NaN) become -9999.0, as OpenAI reports them. */
static json_t *s_lp(double v)
{
    return json_real(isfinite(v) ? v : -9999.0);
}

/* The text of a position, or "token_id:N" when the engine sent no text. */
static json_t *s_tok_text(const char *text, int64_t id, char *tmp, size_t tmp_len)
{
    if (text) {
        return s_jstr(text, strlen(text));
    }
    snprintf(tmp, tmp_len, "token_id:%" PRId64, id);
    return json_string(tmp);
}

tb_oai_logprobs_t *tb_oai_logprobs_new(tb_oai_api_t api, int top_n)
{
    tb_oai_logprobs_t *lp = calloc(1, sizeof(*lp));
    if (!lp) {
        return NULL;
    }
    lp->api = api;
    lp->top_n = top_n;
    tb_oai_logprobs_clear(lp);
    if (!lp->root) {
        free(lp);
        return NULL;
    }
    return lp;
}

void tb_oai_logprobs_destroy(tb_oai_logprobs_t **lp_p)
{
    if (lp_p && *lp_p) {
        json_decref((*lp_p)->root);
        free(*lp_p);
        *lp_p = NULL;
    }
}

void tb_oai_logprobs_clear(tb_oai_logprobs_t *lp)
{
    json_decref(lp->root);
    lp->root = json_object();
    if (!lp->root) {
        return;
    }
    if (lp->api == TB_OAI_CHAT) {
        lp->content = json_array();
        json_object_set_new(lp->root, "content", lp->content);
    } else {
        lp->tokens = json_array();
        lp->token_lps = json_array();
        lp->tops = json_array();
        lp->offsets = json_array();
        json_object_set_new(lp->root, "tokens", lp->tokens);
        json_object_set_new(lp->root, "token_logprobs", lp->token_lps);
        json_object_set_new(lp->root, "top_logprobs", lp->tops);
        json_object_set_new(lp->root, "text_offset", lp->offsets);
    }
}

void tb_oai_logprobs_skip(tb_oai_logprobs_t *lp, size_t bytes)
{
    lp->offset += bytes;
}

int tb_oai_logprobs_add(tb_oai_logprobs_t *lp, const struct tb_msg_token_logprob *v, size_t n)
{
    char tmp[48];
    if (!lp->root) {
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct tb_msg_token_logprob *t = &v[i];
        size_t ntop = t->top_count < (size_t)lp->top_n ? t->top_count : (size_t)lp->top_n;
        if (lp->api == TB_OAI_CHAT) {
            json_t *e = json_object();
            json_t *tops = json_array();
            if (!e || !tops) {
                json_decref(e);
                json_decref(tops);
                return TB_ENOMEM;
            }
            json_object_set_new(e, "token", s_tok_text(t->text, t->token_id, tmp, sizeof(tmp)));
            json_object_set_new(e, "logprob", s_lp(t->logprob));
            json_object_set_new(e, "bytes", t->text ? s_bytes(t->text) : json_null());
            for (size_t k = 0; k < ntop; k++) {
                const struct tb_msg_top_logprob *a = &t->top[k];
                json_t *o = json_object();
                if (!o) {
                    break;
                }
                json_object_set_new(o, "token",
                                    s_tok_text(a->text, a->token_id, tmp, sizeof(tmp)));
                json_object_set_new(o, "logprob", s_lp(a->logprob));
                json_object_set_new(o, "bytes", a->text ? s_bytes(a->text) : json_null());
                json_array_append_new(tops, o);
            }
            json_object_set_new(e, "top_logprobs", tops);
            json_array_append_new(lp->content, e);
        } else {
            json_t *top = json_object();
            if (!top) {
                return TB_ENOMEM;
            }
            for (size_t k = 0; k < ntop; k++) {
                const struct tb_msg_top_logprob *a = &t->top[k];
                char key[48];
                if (a->text) {
                    json_object_set_new(top, a->text, s_lp(a->logprob));
                } else {
                    snprintf(key, sizeof(key), "token_id:%" PRId64, a->token_id);
                    json_object_set_new(top, key, s_lp(a->logprob));
                }
            }
            json_array_append_new(lp->tokens, s_tok_text(t->text, t->token_id, tmp, sizeof(tmp)));
            json_array_append_new(lp->token_lps, s_lp(t->logprob));
            json_array_append_new(lp->tops, top);
            json_array_append_new(lp->offsets, json_integer((json_int_t)lp->offset));
            lp->offset += t->text ? strlen(t->text) : 0;
        }
    }
    return 0;
}

json_t *tb_oai_logprobs_json(const tb_oai_logprobs_t *lp)
{
    return lp->root;
}

/* ---- complete answers ---- */

/* Appends the usage object. */
static int s_usage_text(struct tb_buf *b, const struct tb_oai_usage *u)
{
    /* Numbers through tb_buf_put_i64, not printf: this runs for every answer. */
    int rc = tb_buf_puts(b, "{\"prompt_tokens\":");
    rc = rc ? rc : tb_buf_put_i64(b, u->prompt_tokens);
    rc = rc ? rc : tb_buf_puts(b, ",\"completion_tokens\":");
    rc = rc ? rc : tb_buf_put_i64(b, u->completion_tokens);
    rc = rc ? rc : tb_buf_puts(b, ",\"total_tokens\":");
    rc = rc ? rc : tb_buf_put_i64(b, u->prompt_tokens + u->completion_tokens);
    if (rc == 0 && u->has_cached_tokens) {
        rc = tb_buf_puts(b, ",\"prompt_tokens_details\":{\"cached_tokens\":");
        rc = rc ? rc : tb_buf_put_i64(b, u->cached_tokens);
        rc = rc ? rc : tb_buf_puts(b, "}");
    }
    if (rc == 0 && u->has_reasoning_tokens) {
        rc = tb_buf_puts(b, ",\"completion_tokens_details\":{\"reasoning_tokens\":");
        rc = rc ? rc : tb_buf_put_i64(b, u->reasoning_tokens);
        rc = rc ? rc : tb_buf_puts(b, "}");
    }
    return rc ? rc : tb_buf_puts(b, "}");
}

/* ---- reasoning and tool calls ---- */

struct call {
    char *id, *name;
    struct tb_buf args;
};

struct tb_oai_parts {
    struct tb_buf reasoning;
    struct call *calls;
    size_t n_calls;
};

tb_oai_parts_t *tb_oai_parts_new(void)
{
    return calloc(1, sizeof(tb_oai_parts_t));
}

void tb_oai_parts_destroy(tb_oai_parts_t **p_p)
{
    if (!p_p || !*p_p) {
        return;
    }
    tb_oai_parts_t *p = *p_p;
    for (size_t i = 0; i < p->n_calls; i++) {
        free(p->calls[i].id);
        free(p->calls[i].name);
        tb_buf_free(&p->calls[i].args);
    }
    free(p->calls);
    tb_buf_free(&p->reasoning);
    free(p);
    *p_p = NULL;
}

int tb_oai_parts_add(tb_oai_parts_t *p, const struct tb_msg_gen_chunk *c)
{
    int rc = c->reasoning ? tb_buf_puts(&p->reasoning, c->reasoning) : 0;
    for (size_t i = 0; rc == 0 && i < c->tool_calls_count; i++) {
        const struct tb_msg_tool_call_delta *d = &c->tool_calls[i];
        if (d->index < 0 || d->index > (int64_t)p->n_calls) {
            continue; /* not the next call nor one started: nothing to add it to */
        }
        if (d->index == (int64_t)p->n_calls) {
            struct call *m = realloc(p->calls, (p->n_calls + 1) * sizeof(*m));
            if (!m) {
                return TB_ENOMEM;
            }
            p->calls = m;
            memset(&m[p->n_calls], 0, sizeof(*m));
            p->n_calls++;
        }
        struct call *k = &p->calls[d->index];
        if (d->id && !k->id && !(k->id = strdup(d->id))) {
            return TB_ENOMEM;
        }
        if (d->name && !k->name && !(k->name = strdup(d->name))) {
            return TB_ENOMEM;
        }
        rc = tb_buf_puts(&k->args, d->arguments ? d->arguments : "");
    }
    return rc;
}

/* ,"tool_calls":[...] of a message, or of a streamed delta (`deltas`). */
static int s_calls_text(struct tb_buf *b, const struct tb_msg_tool_call_delta *d, size_t n,
                        const tb_oai_parts_t *p)
{
    int rc = tb_buf_puts(b, ",\"tool_calls\":[");
    size_t count = d ? n : p->n_calls;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        const char *id = d ? d[i].id : p->calls[i].id;
        const char *name = d ? d[i].name : p->calls[i].name;
        const char *args = d ? d[i].arguments : (const char *)p->calls[i].args.data;
        args = args ? args : "";
        rc = tb_buf_printf(b, "%s{\"index\":%zu", i ? "," : "", d ? (size_t)d[i].index : i);
        if (rc == 0 && (id || name)) {
            rc = tb_buf_puts(b, ",\"id\":");
            rc = rc ? rc : tb_oai_json_string(b, id ? id : "", id ? strlen(id) : 0);
            rc = rc ? rc : tb_buf_puts(b, ",\"type\":\"function\",\"function\":{\"name\":");
            rc = rc ? rc : tb_oai_json_string(b, name ? name : "", name ? strlen(name) : 0);
            rc = rc ? rc : tb_buf_puts(b, ",\"arguments\":");
        } else {
            rc = rc ? rc : tb_buf_puts(b, ",\"function\":{\"arguments\":");
        }
        rc = rc ? rc : tb_oai_json_string(b, args, strlen(args));
        rc = rc ? rc : tb_buf_puts(b, "}}");
    }
    return rc ? rc : tb_buf_puts(b, "]");
}

/* ,"reasoning_content":R,"reasoning":R */
static int s_reasoning_text(struct tb_buf *b, const char *r, size_t n)
{
    int rc = tb_buf_puts(b, ",\"reasoning_content\":");
    rc = rc ? rc : tb_oai_json_string(b, r, n);
    rc = rc ? rc : tb_buf_puts(b, ",\"reasoning\":");
    return rc ? rc : tb_oai_json_string(b, r, n);
}

char *tb_oai_final_body(const struct tb_oai_head *h, const char *text, size_t len,
                        const char *finish_reason, json_t *logprobs,
                        const struct tb_oai_usage *usage, size_t *len_out)
{
    return tb_oai_final_body_parts(h, text, len, NULL, finish_reason, logprobs, usage, len_out);
}

/* One choice object {"index",message or text,"logprobs","finish_reason"}. */
static int s_choice_text(struct tb_buf *b, bool chat, size_t index, const struct tb_oai_choice *c)
{
    int rc = tb_buf_puts(b, "{\"index\":");
    rc = rc ? rc : tb_buf_put_u64(b, index);
    rc = rc ? rc : tb_buf_puts(b, ",");
    rc = rc ? rc
            : tb_buf_puts(b, chat ? "\"message\":{\"role\":\"assistant\",\"content\":"
                                  : "\"text\":");
    bool has_parts = chat && c->parts && (c->parts->reasoning.len || c->parts->n_calls);
    if (has_parts && (!c->text || !c->len)) {
        rc = rc ? rc : tb_buf_puts(b, "null");
    } else {
        rc = rc ? rc : tb_oai_json_string(b, c->text ? c->text : "", c->text ? c->len : 0);
    }
    if (has_parts && c->parts->reasoning.len) {
        rc = rc ? rc
                : s_reasoning_text(b, (const char *)c->parts->reasoning.data,
                                   c->parts->reasoning.len);
    }
    if (has_parts && c->parts->n_calls) {
        rc = rc ? rc : s_calls_text(b, NULL, 0, c->parts);
    }
    rc = rc ? rc : tb_buf_puts(b, chat ? "},\"logprobs\":" : ",\"logprobs\":");
    if (rc == 0 && c->logprobs) {
        char *lp = json_dumps(c->logprobs, JSON_COMPACT | JSON_REAL_PRECISION(8));
        rc = lp ? tb_buf_puts(b, lp) : TB_ENOMEM;
        free(lp);
    } else if (rc == 0) {
        rc = tb_buf_puts(b, "null");
    }
    rc = rc ? rc : tb_buf_puts(b, ",\"finish_reason\":");
    if (rc == 0 && c->finish_reason) {
        rc = tb_oai_json_string(b, c->finish_reason, strlen(c->finish_reason));
    } else if (rc == 0) {
        rc = tb_buf_puts(b, "null");
    }
    return rc ? rc : tb_buf_puts(b, "}");
}

char *tb_oai_final_body_parts(const struct tb_oai_head *h, const char *text, size_t len,
                              const tb_oai_parts_t *parts, const char *finish_reason,
                              json_t *logprobs, const struct tb_oai_usage *usage, size_t *len_out)
{
    struct tb_oai_choice c = {.text = text,
                              .len = len,
                              .parts = parts,
                              .finish_reason = finish_reason,
                              .logprobs = logprobs};
    return tb_oai_final_body_choices(h, &c, 1, usage, len_out);
}

/* The fixed shape is written directly; every string goes through tb_oai_json_string (jansson
 * escapes whatever is not plain ASCII) and the log-probabilities object through json_dumps. */
char *tb_oai_final_body_choices(const struct tb_oai_head *h, const struct tb_oai_choice *c,
                                size_t n, const struct tb_oai_usage *usage, size_t *len_out)
{
    bool chat = h->api == TB_OAI_CHAT;
    struct tb_buf b;
    tb_buf_init(&b);
    /* a short answer's body stays under 1 KiB (a small bin: no fast-bin consolidation) */
    int rc = tb_buf_reserve(&b, (n ? c[0].len : 0) + 384);
    rc = rc ? rc : tb_buf_puts(&b, "{\"id\":");
    rc = rc ? rc : tb_oai_json_string(&b, h->id, strlen(h->id));
    rc = rc ? rc
            : tb_buf_puts(&b, chat ? ",\"object\":\"chat.completion\",\"created\":"
                                   : ",\"object\":\"text_completion\",\"created\":");
    rc = rc ? rc : tb_buf_put_i64(&b, h->created);
    rc = rc ? rc : tb_buf_puts(&b, ",\"model\":");
    rc = rc ? rc : tb_oai_json_string(&b, h->model, strlen(h->model));
    rc = rc ? rc : tb_buf_puts(&b, ",\"system_fingerprint\":");
    rc = rc ? rc : tb_oai_json_string(&b, h->fingerprint, strlen(h->fingerprint));
    rc = rc ? rc : tb_buf_puts(&b, ",\"choices\":[");
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = i ? tb_buf_puts(&b, ",") : 0;
        rc = rc ? rc : s_choice_text(&b, chat, i, &c[i]);
    }
    rc = rc ? rc : tb_buf_puts(&b, "],\"usage\":");
    rc = rc ? rc : s_usage_text(&b, usage);
    rc = rc ? rc : tb_buf_puts(&b, "}");
    if (rc != 0) {
        tb_buf_free(&b);
        return NULL;
    }
    return tb_buf_steal(&b, len_out);
}

/* ---- streams ---- */

struct tb_oai_stream {
    tb_oai_api_t api;
    bool include_usage;
    /* data: {"id":..,"object":..,"created":..,"model":..,"system_fingerprint":..,"choices":[ */
    struct tb_buf head;
    struct tb_buf usage_head; /* the same with "choices":[] for the usage frame */
    size_t head_fixed;        /* `head` up to its choice's "index" */
};

tb_oai_stream_t *tb_oai_stream_new(const struct tb_oai_head *h, bool include_usage)
{
    tb_oai_stream_t *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->api = h->api;
    s->include_usage = include_usage;
    tb_buf_init(&s->head);
    tb_buf_init(&s->usage_head);
    struct tb_buf *b = &s->head;
    const char *obj = h->api == TB_OAI_CHAT ? "chat.completion.chunk" : "text_completion";
    int rc = tb_buf_puts(b, "data: {\"id\":");
    rc = rc ? rc : tb_oai_json_string(b, h->id, strlen(h->id));
    rc = rc ? rc
            : tb_buf_printf(b, ",\"object\":\"%s\",\"created\":%" PRId64 ",\"model\":", obj,
                            h->created);
    rc = rc ? rc : tb_oai_json_string(b, h->model, strlen(h->model));
    rc = rc ? rc : tb_buf_puts(b, ",\"system_fingerprint\":");
    rc = rc ? rc : tb_oai_json_string(b, h->fingerprint, strlen(h->fingerprint));
    rc = rc ? rc : tb_buf_puts(b, ",\"choices\":");
    rc = rc ? rc : tb_buf_append(&s->usage_head, b->data, b->len);
    rc = rc ? rc : tb_buf_puts(&s->usage_head, "[]");
    rc = rc ? rc : tb_buf_puts(b, "[{");
    s->head_fixed = b->len;
    rc = rc ? rc : tb_buf_puts(b, "\"index\":0,");
    if (rc != 0) {
        tb_oai_stream_destroy(&s);
    }
    return s;
}

void tb_oai_stream_destroy(tb_oai_stream_t **s_p)
{
    if (s_p && *s_p) {
        tb_buf_free(&(*s_p)->head);
        tb_buf_free(&(*s_p)->usage_head);
        free(*s_p);
        *s_p = NULL;
    }
}

/* Closes a choice frame: logprobs, finish_reason, usage:null, end of event. */
static int s_tail(tb_oai_stream_t *s, struct tb_buf *out, json_t *logprobs,
                  const char *finish_reason)
{
    int rc = tb_buf_puts(out, ",\"logprobs\":");
    if (rc == 0 && logprobs) {
        char *lp = json_dumps(logprobs, JSON_COMPACT | JSON_REAL_PRECISION(8));
        rc = lp ? tb_buf_puts(out, lp) : TB_ENOMEM;
        free(lp);
    } else if (rc == 0) {
        rc = tb_buf_puts(out, "null");
    }
    if (rc == 0 && finish_reason) {
        rc = tb_buf_puts(out, ",\"finish_reason\":");
        rc = rc ? rc : tb_oai_json_string(out, finish_reason, strlen(finish_reason));
        rc = rc ? rc : tb_buf_puts(out, "}]");
    } else if (rc == 0) {
        rc = tb_buf_puts(out, ",\"finish_reason\":null}]");
    }
    if (rc == 0 && s->include_usage) {
        rc = tb_buf_puts(out, ",\"usage\":null");
    }
    return rc ? rc : tb_buf_puts(out, "}\n\n");
}

int tb_oai_stream_open(tb_oai_stream_t *s, struct tb_buf *out)
{
    if (s->api != TB_OAI_CHAT) {
        return 0;
    }
    int rc = tb_buf_append(out, s->head.data, s->head.len);
    rc = rc ? rc : tb_buf_puts(out, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}");
    return rc ? rc : s_tail(s, out, NULL, NULL);
}

int tb_oai_stream_text(tb_oai_stream_t *s, struct tb_buf *out, const char *text, size_t len,
                       json_t *logprobs)
{
    size_t mark = out->len;
    int rc = tb_buf_reserve(out, s->head.len + len + 128);
    rc = rc ? rc : tb_buf_append(out, s->head.data, s->head.len);
    rc = rc ? rc
            : tb_buf_puts(out, s->api == TB_OAI_CHAT ? "\"delta\":{\"content\":" : "\"text\":");
    rc = rc ? rc : tb_oai_json_string(out, text ? text : "", text ? len : 0);
    if (rc == 0 && s->api == TB_OAI_CHAT) {
        rc = tb_buf_puts(out, "}");
    }
    rc = rc ? rc : s_tail(s, out, logprobs, NULL);
    if (rc != 0) {
        out->len = mark; /* never leave half a frame */
    }
    return rc;
}

int tb_oai_stream_parts(tb_oai_stream_t *s, struct tb_buf *out, const struct tb_msg_gen_chunk *c)
{
    size_t mark = out->len;
    int rc = 0;
    if (s->api != TB_OAI_CHAT) {
        return 0;
    }
    if (c->reasoning && c->reasoning[0]) {
        rc = tb_buf_append(out, s->head.data, s->head.len);
        rc = rc ? rc : tb_buf_puts(out, "\"delta\":{\"content\":null");
        rc = rc ? rc : s_reasoning_text(out, c->reasoning, strlen(c->reasoning));
        rc = rc ? rc : tb_buf_puts(out, "}");
        rc = rc ? rc : s_tail(s, out, NULL, NULL);
    }
    if (rc == 0 && c->tool_calls_count) {
        rc = tb_buf_append(out, s->head.data, s->head.len);
        rc = rc ? rc : tb_buf_puts(out, "\"delta\":{\"content\":null");
        rc = rc ? rc : s_calls_text(out, c->tool_calls, c->tool_calls_count, NULL);
        rc = rc ? rc : tb_buf_puts(out, "}");
        rc = rc ? rc : s_tail(s, out, NULL, NULL);
    }
    if (rc != 0) {
        out->len = mark;
    }
    return rc;
}

int tb_oai_stream_set_index(tb_oai_stream_t *s, size_t index)
{
    s->head.len = s->head_fixed;
    return tb_buf_printf(&s->head, "\"index\":%zu,", index);
}

int tb_oai_stream_finish_choice(tb_oai_stream_t *s, struct tb_buf *out, const char *finish_reason)
{
    size_t mark = out->len;
    int rc = tb_buf_append(out, s->head.data, s->head.len);
    rc = rc ? rc : tb_buf_puts(out, s->api == TB_OAI_CHAT ? "\"delta\":{}" : "\"text\":\"\"");
    rc = rc ? rc : s_tail(s, out, NULL, finish_reason ? finish_reason : "stop");
    if (rc != 0) {
        out->len = mark;
    }
    return rc;
}

int tb_oai_stream_end(tb_oai_stream_t *s, struct tb_buf *out, const struct tb_oai_usage *usage)
{
    size_t mark = out->len;
    int rc = 0;
    if (s->include_usage && usage) {
        rc = tb_buf_append(out, s->usage_head.data, s->usage_head.len);
        rc = rc ? rc : tb_buf_puts(out, ",\"usage\":");
        rc = rc ? rc : s_usage_text(out, usage);
        rc = rc ? rc : tb_buf_puts(out, "}\n\n");
    }
    rc = rc ? rc : tb_buf_puts(out, "data: [DONE]\n\n");
    if (rc != 0) {
        out->len = mark;
    }
    return rc;
}

int tb_oai_stream_finish(tb_oai_stream_t *s, struct tb_buf *out, const char *finish_reason,
                         const struct tb_oai_usage *usage)
{
    size_t mark = out->len;
    int rc = tb_oai_stream_finish_choice(s, out, finish_reason);
    rc = rc ? rc : tb_oai_stream_end(s, out, usage);
    if (rc != 0) {
        out->len = mark;
    }
    return rc;
}

int tb_oai_stream_error(tb_oai_stream_t *s, struct tb_buf *out, const struct tb_oai_error *e)
{
    (void)s;
    size_t len;
    char *body = tb_oai_error_body(e, &len);
    if (!body) {
        return TB_ENOMEM;
    }
    size_t mark = out->len;
    int rc = tb_buf_puts(out, "data: ");
    rc = rc ? rc : tb_buf_append(out, body, len);
    rc = rc ? rc : tb_buf_puts(out, "\n\ndata: [DONE]\n\n");
    free(body);
    if (rc != 0) {
        out->len = mark;
    }
    return rc;
}
