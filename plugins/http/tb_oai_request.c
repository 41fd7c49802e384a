/*
 * tb_oai_request: OpenAI request bodies -> gen_request (see tb_oai_request.h).
 *
 * jansson parses; this file only walks the parsed tree, checks each known field and copies what
 * the engines need into the message struct.  Memory the message points to beyond the parsed tree
 * (flattened message contents, arrays) comes from one per-request arena.
 */
#include "tb_oai_request.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"

/* ---- a small bump arena: everything is freed at once with the request ---- */

struct block {
    struct block *next;
    size_t used, cap;
    max_align_t data[];
};

struct tb_oai_req_priv {
    json_t *root;
    struct block *blocks;
    char *tools_json; /* json_dumps output (malloc) */
};

static void *s_alloc(struct tb_oai_req_priv *p, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n == 0) {
        n = sizeof(max_align_t);
    }
    struct block *b = p->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        b = malloc(sizeof(*b) + cap);
        if (!b) {
            return NULL;
        }
        b->used = 0;
        b->cap = cap;
        b->next = p->blocks;
        p->blocks = b;
    }
    void *r = (char *)b->data + b->used;
    b->used += n;
    return r;
}

/* ---- errors ---- */

void tb_oai_error_set(struct tb_oai_error *e, int status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

#define BAD(e, param, ...)                                                                         \
    tb_oai_error_set((e), 400, "invalid_request_error", "invalid_value", (param), __VA_ARGS__)

static const char *s_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

/* ---- typed getters: 1 present and valid, 0 absent (or null), -1 invalid (err set) ---- */

static int s_get_bool(json_t *o, const char *key, bool *out, struct tb_oai_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        BAD(e, key, "'%s' must be a boolean, not %s", key, s_type_name(v));
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

static int s_get_number(json_t *o, const char *key, double lo, double hi, bool lo_open,
                        double *out, struct tb_oai_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (!json_is_number(v)) {
        BAD(e, key, "'%s' must be a number, not %s", key, s_type_name(v));
        return -1;
    }
    double d = json_number_value(v);
    if (!isfinite(d) || (lo_open ? d <= lo : d < lo) || d > hi) {
        BAD(e, key, "'%s' is %g: it must be %s %g and <= %g", key, d, lo_open ? ">" : ">=", lo,
            hi);
        return -1;
    }
    *out = d;
    return 1;
}

/* Integers; a real with an integral value (16.0) is accepted as that integer. */
static int s_int_value(json_t *v, const char *key, int64_t *out, struct tb_oai_error *e)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (isfinite(d) && d == floor(d) && fabs(d) < 9e15) {
            *out = (int64_t)d;
            return 1;
        }
    }
    BAD(e, key, "'%s' must be an integer, not %s", key,
        json_is_real(v) ? "a fractional number" : s_type_name(v));
    return -1;
}

static int s_get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
                     struct tb_oai_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        return 0;
    }
    int64_t x;
    if (s_int_value(v, key, &x, e) < 0) {
        return -1;
    }
    if (x < lo || x > hi) {
        BAD(e, key, "'%s' is %lld: it must be between %lld and %lld", key, (long long)x,
            (long long)lo, (long long)hi);
        return -1;
    }
    *out = x;
    return 1;
}

static int s_get_string(json_t *o, const char *key, const char **out, struct tb_oai_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v)) {
        BAD(e, key, "'%s' must be a string, not %s", key, s_type_name(v));
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

/* ---- fields shared by both APIs ---- */

static int s_sampling(struct tb_oai_request *r, json_t *o, struct tb_oai_error *e)
{
    struct tb_msg_gen_request *g = &r->gen;
    int rc;
    int64_t n = 1;
    if ((rc = s_get_int(o, "n", 1, 128, &n, e)) < 0) {
        return -1;
    }
    if (n != 1) {
        tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_value", "n",
                         "'n' is %lld: only n=1 is supported", (long long)n);
        return -1;
    }
    /* max_completion_tokens (chat) supersedes max_tokens when both are given */
    int64_t mt;
    rc = 0;
    if (r->api == TB_OAI_CHAT) {
        rc = s_get_int(o, "max_completion_tokens", 1, INT32_MAX, &mt, e);
    }
    if (rc == 0) {
        rc = s_get_int(o, "max_tokens", 1, INT32_MAX, &mt, e);
    }
    if (rc < 0) {
        return -1;
    }
    if (rc > 0) {
        g->max_tokens = mt;
        g->has_max_tokens = true;
    } else if (r->api == TB_OAI_COMPLETIONS) {
        g->max_tokens = TB_OAI_COMPLETIONS_DEFAULT_MAX_TOKENS;
        g->has_max_tokens = true;
    }
    if ((rc = s_get_int(o, "min_tokens", 0, INT32_MAX, &g->min_tokens, e)) < 0) {
        return -1;
    }
    g->has_min_tokens = rc > 0;
    if (g->has_min_tokens && g->has_max_tokens && g->min_tokens > g->max_tokens) {
        BAD(e, "min_tokens", "'min_tokens' (%lld) must not exceed max_tokens (%lld)",
            (long long)g->min_tokens, (long long)g->max_tokens);
        return -1;
    }
    if ((rc = s_get_number(o, "temperature", 0, 2, false, &g->temperature, e)) < 0) {
        return -1;
    }
    g->has_temperature = rc > 0;
    if ((rc = s_get_number(o, "top_p", 0, 1, true, &g->top_p, e)) < 0) {
        return -1;
    }
    g->has_top_p = rc > 0;
    if ((rc = s_get_int(o, "top_k", -1, INT32_MAX, &g->top_k, e)) < 0) {
        return -1;
    }
    g->has_top_k = rc > 0;
    if ((rc = s_get_number(o, "min_p", 0, 1, false, &g->min_p, e)) < 0) {
        return -1;
    }
    g->has_min_p = rc > 0;
    if ((rc = s_get_int(o, "seed", INT64_MIN, INT64_MAX, &g->seed, e)) < 0) {
        return -1;
    }
    g->has_seed = rc > 0;
    if ((rc = s_get_number(o, "presence_penalty", -2, 2, false, &g->presence_penalty, e)) < 0) {
        return -1;
    }
    g->has_presence_penalty = rc > 0;
    if ((rc = s_get_number(o, "frequency_penalty", -2, 2, false, &g->frequency_penalty, e)) < 0) {
        return -1;
    }
    g->has_frequency_penalty = rc > 0;
    if ((rc = s_get_number(o, "repetition_penalty", 0, 2, true, &g->repetition_penalty, e)) <
        0) {
        return -1;
    }
    g->has_repetition_penalty = rc > 0;
    if ((rc = s_get_bool(o, "ignore_eos", &g->ignore_eos, e)) < 0) {
        return -1;
    }
    g->has_ignore_eos = rc > 0;

    /* stop: a string or up to 4 strings */
    json_t *stop = json_object_get(o, "stop");
    if (stop && !json_is_null(stop)) {
        const char **v = NULL;
        size_t count = 0;
        if (json_is_string(stop)) {
            v = s_alloc(r->priv, sizeof(char *));
            if (!v) {
                goto oom;
            }
            v[count++] = json_string_value(stop);
        } else if (json_is_array(stop)) {
            size_t n_stop = json_array_size(stop);
            if (n_stop > TB_OAI_MAX_STOP) {
                BAD(e, "stop", "'stop' has %zu sequences: at most %d are allowed", n_stop,
                    TB_OAI_MAX_STOP);
                return -1;
            }
            v = s_alloc(r->priv, (n_stop + 1) * sizeof(char *));
            if (!v) {
                goto oom;
            }
            for (size_t i = 0; i < n_stop; i++) {
                json_t *s = json_array_get(stop, i);
                if (!json_is_string(s)) {
                    char param[32];
                    snprintf(param, sizeof(param), "stop[%zu]", i);
                    BAD(e, param, "'stop' must hold strings; item %zu is %s", i, s_type_name(s));
                    return -1;
                }
                v[count++] = json_string_value(s);
            }
        } else {
            BAD(e, "stop", "'stop' must be a string or an array of strings, not %s",
                s_type_name(stop));
            return -1;
        }
        /* Empty strings stop nothing: drop them. */
        size_t k = 0;
        for (size_t i = 0; i < count; i++) {
            if (v[i][0]) {
                v[k++] = v[i];
            }
        }
        g->stop = v;
        g->stop_count = k;
    }

    json_t *sti = json_object_get(o, "stop_token_ids");
    if (sti && !json_is_null(sti)) {
        if (!json_is_array(sti)) {
            BAD(e, "stop_token_ids", "'stop_token_ids' must be an array of integers, not %s",
                s_type_name(sti));
            return -1;
        }
        size_t n_ids = json_array_size(sti);
        int32_t *ids = s_alloc(r->priv, (n_ids + 1) * sizeof(int32_t));
        if (!ids) {
            goto oom;
        }
        for (size_t i = 0; i < n_ids; i++) {
            int64_t x;
            json_t *v = json_array_get(sti, i);
            if (s_int_value(v, "stop_token_ids", &x, e) < 0 || x < 0 || x > INT32_MAX) {
                BAD(e, "stop_token_ids", "'stop_token_ids' item %zu is not a token id", i);
                return -1;
            }
            ids[i] = (int32_t)x;
        }
        g->stop_token_ids = ids;
        g->stop_token_ids_count = n_ids;
    }

    /* logit_bias: accepted when empty; a bias the engines cannot apply is refused, not ignored */
    json_t *lb = json_object_get(o, "logit_bias");
    if (lb && !json_is_null(lb)) {
        if (!json_is_object(lb)) {
            BAD(e, "logit_bias", "'logit_bias' must be an object, not %s", s_type_name(lb));
            return -1;
        }
        if (json_object_size(lb) > 0) {
            tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_parameter",
                             "logit_bias", "'logit_bias' is not supported by this server");
            return -1;
        }
    }
    const char *user;
    if (s_get_string(o, "user", &user, e) < 0) {
        return -1;
    }

    /* stream, stream_options */
    if (s_get_bool(o, "stream", &r->stream, e) < 0) {
        return -1;
    }
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            BAD(e, "stream_options", "'stream_options' must be an object, not %s",
                s_type_name(so));
            return -1;
        }
        if (!r->stream) {
            BAD(e, "stream_options", "'stream_options' is only allowed when 'stream' is true");
            return -1;
        }
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_null(iu)) {
            if (!json_is_boolean(iu)) {
                BAD(e, "stream_options.include_usage",
                    "'stream_options.include_usage' must be a boolean, not %s", s_type_name(iu));
                return -1;
            }
            r->include_usage = json_is_true(iu);
        }
    }
    return 0;
oom:
    tb_oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return -2;
}

/* ---- chat ---- */

static const char *const s_roles[] = {"system", "developer", "user", "assistant", "tool",
                                      "function", NULL};

/* Flattens a message's content (a string, null, or an array of text parts) into *out. */
static int s_content(struct tb_oai_request *r, json_t *c, size_t mi, const char **out,
                     struct tb_oai_error *e)
{
    char param[64];
    snprintf(param, sizeof(param), "messages[%zu].content", mi);
    if (!c || json_is_null(c)) {
        *out = NULL;
        return 0;
    }
    if (json_is_string(c)) {
        *out = json_string_value(c);
        return 0;
    }
    if (!json_is_array(c)) {
        BAD(e, param, "'%s' must be a string or an array of content parts, not %s", param,
            s_type_name(c));
        return -1;
    }
    size_t total = 0;
    size_t n = json_array_size(c);
    for (size_t i = 0; i < n; i++) {
        json_t *part = json_array_get(c, i);
        char pp[96];
        snprintf(pp, sizeof(pp), "%s[%zu]", param, i);
        if (!json_is_object(part)) {
            BAD(e, pp, "'%s' must be an object, not %s", pp, s_type_name(part));
            return -1;
        }
        json_t *type = json_object_get(part, "type");
        json_t *text = json_object_get(part, "text");
        if (!json_is_string(type)) {
            snprintf(pp, sizeof(pp), "%s[%zu].type", param, i);
            BAD(e, pp, "'%s' must be a string", pp);
            return -1;
        }
        if (strcmp(json_string_value(type), "text") != 0) {
            snprintf(pp, sizeof(pp), "%s[%zu].type", param, i);
            tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_value", pp,
                             "content parts of type '%.64s' are not supported: only 'text'",
                             json_string_value(type));
            return -1;
        }
        if (!json_is_string(text)) {
            snprintf(pp, sizeof(pp), "%s[%zu].text", param, i);
            BAD(e, pp, "'%s' must be a string", pp);
            return -1;
        }
        total += json_string_length(text);
    }
    char *s = s_alloc(r->priv, total + 1);
    if (!s) {
        tb_oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -2;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *text = json_object_get(json_array_get(c, i), "text");
        size_t len = json_string_length(text);
        memcpy(s + at, json_string_value(text), len);
        at += len;
    }
    s[at] = 0;
    *out = s;
    return 0;
}

static int s_chat(struct tb_oai_request *r, json_t *o, struct tb_oai_error *e)
{
    struct tb_msg_gen_request *g = &r->gen;
    json_t *msgs = json_object_get(o, "messages");
    if (!msgs || json_is_null(msgs)) {
        BAD(e, "messages", "'messages' is required");
        return -1;
    }
    if (!json_is_array(msgs)) {
        BAD(e, "messages", "'messages' must be an array, not %s", s_type_name(msgs));
        return -1;
    }
    size_t n = json_array_size(msgs);
    if (n == 0) {
        BAD(e, "messages", "'messages' must hold at least one message");
        return -1;
    }
    struct tb_msg_chat_message *v = s_alloc(r->priv, n * sizeof(*v));
    if (!v) {
        tb_oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -2;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char param[64];
        snprintf(param, sizeof(param), "messages[%zu]", i);
        if (!json_is_object(m)) {
            BAD(e, param, "'%s' must be an object, not %s", param, s_type_name(m));
            return -1;
        }
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        if (!json_is_string(role)) {
            BAD(e, param, "'%s' is required and must be a string", param);
            return -1;
        }
        bool known = false;
        for (int k = 0; s_roles[k]; k++) {
            known = known || strcmp(s_roles[k], json_string_value(role)) == 0;
        }
        if (!known) {
            BAD(e, param, "'%s' is '%.64s': use system, developer, user, assistant or tool",
                param, json_string_value(role));
            return -1;
        }
        memset(&v[i], 0, sizeof(v[i]));
        v[i].role = json_string_value(role);
        json_t *content = json_object_get(m, "content");
        if ((!content || json_is_null(content)) && strcmp(v[i].role, "assistant") != 0) {
            snprintf(param, sizeof(param), "messages[%zu].content", i);
            BAD(e, param, "'%s' is required for role '%s'", param, v[i].role);
            return -1;
        }
        int rc = s_content(r, content, i, &v[i].content, e);
        if (rc < 0) {
            return rc;
        }
        json_t *name = json_object_get(m, "name");
        if (name && !json_is_null(name)) {
            if (!json_is_string(name)) {
                snprintf(param, sizeof(param), "messages[%zu].name", i);
                BAD(e, param, "'%s' must be a string", param);
                return -1;
            }
            v[i].name = json_string_value(name);
        }
    }
    g->messages = v;
    g->messages_count = n;
    g->mode = "chat";

    bool lp = false;
    int rc;
    if ((rc = s_get_bool(o, "logprobs", &lp, e)) < 0) {
        return -1;
    }
    int64_t top = 0;
    if ((rc = s_get_int(o, "top_logprobs", 0, TB_OAI_MAX_TOP_LOGPROBS_CHAT, &top, e)) < 0) {
        return -1;
    }
    if (rc > 0 && !lp) {
        BAD(e, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
        return -1;
    }
    r->logprobs = lp;
    r->top_logprobs = (int)top;
    if (lp) {
        g->logprobs = true;
        g->has_logprobs = true;
        g->top_logprobs = top;
        g->has_top_logprobs = true;
    }
    bool agp = true;
    if ((rc = s_get_bool(o, "add_generation_prompt", &agp, e)) < 0) {
        return -1;
    }
    g->add_generation_prompt = agp;
    g->has_add_generation_prompt = true;

    json_t *tools = json_object_get(o, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            BAD(e, "tools", "'tools' must be an array, not %s", s_type_name(tools));
            return -1;
        }
        for (size_t i = 0; i < json_array_size(tools); i++) {
            if (!json_is_object(json_array_get(tools, i))) {
                char param[32];
                snprintf(param, sizeof(param), "tools[%zu]", i);
                BAD(e, param, "'%s' must be an object", param);
                return -1;
            }
        }
        if (json_array_size(tools) > 0) {
            r->priv->tools_json = json_dumps(tools, JSON_COMPACT);
            if (!r->priv->tools_json) {
                tb_oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
                return -2;
            }
            g->tools_json = r->priv->tools_json;
        }
    }
    json_t *tc = json_object_get(o, "tool_choice");
    if (tc && !json_is_null(tc) && !json_is_string(tc) && !json_is_object(tc)) {
        BAD(e, "tool_choice", "'tool_choice' must be a string or an object, not %s",
            s_type_name(tc));
        return -1;
    }
    json_t *rf = json_object_get(o, "response_format");
    if (rf && !json_is_null(rf)) {
        json_t *t = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
        if (!json_is_string(t)) {
            BAD(e, "response_format", "'response_format' must be an object with a 'type'");
            return -1;
        }
        if (strcmp(json_string_value(t), "text") != 0) {
            tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_value",
                             "response_format.type",
                             "response_format type '%.64s' is not supported: only 'text'",
                             json_string_value(t));
            return -1;
        }
    }
    return 0;
}

/* ---- completions ---- */

static int s_token_array(struct tb_oai_request *r, json_t *a, struct tb_oai_error *e)
{
    size_t n = json_array_size(a);
    int32_t *ids = s_alloc(r->priv, (n + 1) * sizeof(int32_t));
    if (!ids) {
        tb_oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -2;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        json_t *v = json_array_get(a, i);
        if (!json_is_number(v) || s_int_value(v, "prompt", &x, e) < 0 || x < 0 ||
            x > INT32_MAX) {
            BAD(e, "prompt", "'prompt' item %zu is not a token id (an integer >= 0)", i);
            return -1;
        }
        ids[i] = (int32_t)x;
    }
    r->gen.tokens = ids;
    r->gen.tokens_count = n;
    return 0;
}

static int s_completions(struct tb_oai_request *r, json_t *o, struct tb_oai_error *e)
{
    struct tb_msg_gen_request *g = &r->gen;
    g->mode = "completion";
    json_t *p = json_object_get(o, "prompt");
    if (!p || json_is_null(p)) {
        BAD(e, "prompt", "'prompt' is required");
        return -1;
    }
    if (json_is_string(p)) {
        g->prompt = json_string_value(p);
    } else if (json_is_array(p)) {
        size_t n = json_array_size(p);
        json_t *first = json_array_get(p, 0);
        if (n == 0) {
            BAD(e, "prompt", "'prompt' must not be an empty array");
            return -1;
        }
        if (json_is_string(first)) {
            if (n > 1) {
                tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_value", "prompt",
                                 "batched prompts are not supported: send one prompt per "
                                 "request");
                return -1;
            }
            g->prompt = json_string_value(first);
        } else if (json_is_number(first)) {
            int rc = s_token_array(r, p, e);
            if (rc < 0) {
                return rc;
            }
        } else if (json_is_array(first)) {
            if (n > 1) {
                tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_value", "prompt",
                                 "batched prompts are not supported: send one prompt per "
                                 "request");
                return -1;
            }
            if (json_array_size(first) == 0) {
                BAD(e, "prompt", "'prompt' must not be an empty array");
                return -1;
            }
            int rc = s_token_array(r, first, e);
            if (rc < 0) {
                return rc;
            }
        } else {
            BAD(e, "prompt", "'prompt' must be a string, an array of token ids or an array of "
                             "one of those");
            return -1;
        }
    } else {
        BAD(e, "prompt", "'prompt' must be a string or an array, not %s", s_type_name(p));
        return -1;
    }
    int rc;
    int64_t lp = 0;
    if ((rc = s_get_int(o, "logprobs", 0, TB_OAI_MAX_LOGPROBS_COMPLETIONS, &lp, e)) < 0) {
        return -1;
    }
    if (rc > 0) {
        r->logprobs = true;
        r->top_logprobs = (int)lp;
        g->logprobs = true;
        g->has_logprobs = true;
        g->top_logprobs = lp;
        g->has_top_logprobs = true;
    }
    if ((rc = s_get_bool(o, "echo", &r->echo, e)) < 0) {
        return -1;
    }
    if (r->echo) {
        g->echo = true;
        g->has_echo = true;
    }
    int64_t best_of = 1;
    if (s_get_int(o, "best_of", 1, 128, &best_of, e) < 0) {
        return -1;
    }
    if (best_of != 1) {
        tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_value", "best_of",
                         "'best_of' is %lld: only 1 is supported", (long long)best_of);
        return -1;
    }
    const char *suffix = NULL;
    if (s_get_string(o, "suffix", &suffix, e) < 0) {
        return -1;
    }
    if (suffix && *suffix) {
        tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_parameter", "suffix",
                         "'suffix' is not supported by this server");
        return -1;
    }
    return 0;
}

/* ---- entry points ---- */

int tb_oai_request_parse(tb_oai_api_t api, const void *body, size_t len,
                         struct tb_oai_request **out, struct tb_oai_error *err)
{
    *out = NULL;
    struct tb_oai_request *r = calloc(1, sizeof(*r));
    struct tb_oai_req_priv *p = calloc(1, sizeof(*p));
    if (!r || !p) {
        free(r);
        free(p);
        tb_oai_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return TB_ENOMEM;
    }
    r->priv = p;
    r->api = api;
    int rc = TB_EINVAL;
    json_error_t je;
    p->root = json_loadb(body ? body : "", len, 0, &je);
    if (!p->root) {
        tb_oai_error_set(err, 400, "invalid_request_error", "invalid_json", NULL,
                         "the request body is not valid JSON: %s (line %d, column %d)", je.text,
                         je.line, je.column);
        goto fail;
    }
    if (!json_is_object(p->root)) {
        tb_oai_error_set(err, 400, "invalid_request_error", "invalid_json", NULL,
                         "the request body must be a JSON object, not %s",
                         s_type_name(p->root));
        goto fail;
    }
    json_t *model = json_object_get(p->root, "model");
    if (!model || json_is_null(model)) {
        BAD(err, "model", "'model' is required");
        goto fail;
    }
    if (!json_is_string(model) || json_string_length(model) == 0) {
        BAD(err, "model", "'model' must be a non-empty string");
        goto fail;
    }
    r->model = json_string_value(model);
    r->gen.model = r->model;
    int k = api == TB_OAI_CHAT ? s_chat(r, p->root, err) : s_completions(r, p->root, err);
    if (k == 0) {
        k = s_sampling(r, p->root, err);
    }
    if (k == -2) {
        rc = TB_ENOMEM;
        goto fail;
    }
    if (k != 0) {
        goto fail;
    }
    *out = r;
    return 0;
fail:
    tb_oai_request_destroy(&r);
    return rc;
}

void tb_oai_request_destroy(struct tb_oai_request **r_p)
{
    if (!r_p || !*r_p) {
        return;
    }
    struct tb_oai_request *r = *r_p;
    if (r->priv) {
        json_decref(r->priv->root);
        free(r->priv->tools_json);
        while (r->priv->blocks) {
            struct block *b = r->priv->blocks;
            r->priv->blocks = b->next;
            free(b);
        }
        free(r->priv);
    }
    free(r);
    *r_p = NULL;
}
