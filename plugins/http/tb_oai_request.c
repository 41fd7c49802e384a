/*
 * tb_oai_request: OpenAI request bodies -> gen_request (see tb_oai_request.h).
 *
 * jansson parses; the fields are declared in one table (s_request_fields: name, JSON type,
 * bounds, default, endpoints, where the value goes) that the generic walker of tb_oai_fields.c
 * checks and stores; the few shapes a row cannot say (messages, prompt, stop, token ids, tools)
 * have small decoders here.  Memory the message points to beyond the parsed tree (flattened
 * message contents, arrays) comes from one per-request arena.
 */
#include "tb_oai_request.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_grammar.h"
#include "tb_json_schema.h"
#include "tb_oai_fields.h"
#include "tb_oai_tools.h"

/* ---- a small bump arena: everything is freed at once with the request ---- */

struct block {
    struct block *next;
    size_t used, cap;
    max_align_t data[];
};

struct tb_oai_req_priv {
    json_t *root;
    struct block *blocks;
    const char *rf_type; /* response_format.type, NULL when absent */
    json_t *rf_schema;   /* response_format.json_schema.schema (borrowed from root) */
    const char *grammar; /* the raw `grammar` body field (borrowed from root) */
    char *gbnf;          /* the grammar the request sends (malloc), NULL for none */
};

static void *s_alloc(struct tb_oai_req_priv *p, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n == 0) {
        n = sizeof(max_align_t);
    }
    struct block *b = p->blocks;
    if (!b || b->cap - b->used < n) {
        /* the first block (992 bytes with its header) fits glibc's per-thread cache and, past
         * it, a small bin: most requests need no more.  A larger first block took malloc's slow
         * path on every request; one of 1 KiB or more, once 64 requests in flight had emptied
         * the cache, made every malloc of it consolidate the fast bins first */
        size_t cap = !b ? 960 : b->cap < 65536 ? b->cap * 2 : b->cap;
        cap = cap < n ? n : cap;
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
    tb_err_vset(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

static int s_oom(struct tb_oai_error *e)
{
    tb_oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return -2;
}

/* ---- decoders for the shapes a table row cannot say (tb_oai_field_fn) ---- */

#define UNUSED_FN_ARGS                                                                           \
    (void)f;                                                                                     \
    (void)base

/* An array of token ids (integers 0..INT32_MAX) into the arena; 0, -1 or -2. */
static int s_token_ids(struct tb_oai_request *r, json_t *a, const char *param,
                       const int32_t **out, size_t *count, struct tb_oai_error *e)
{
    size_t n = json_array_size(a);
    int32_t *ids = s_alloc(r->priv, (n + 1) * sizeof(int32_t));
    if (!ids) {
        return s_oom(e);
    }
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        if (!tb_oai_json_int(json_array_get(a, i), &x) || x < 0 || x > INT32_MAX) {
            tb_oai_error_invalid(e, param, "'%s' item %zu is not a token id (an integer >= 0)",
                                 param, i);
            return -1;
        }
        ids[i] = (int32_t)x;
    }
    *out = ids;
    *count = n;
    return 0;
}

static int s_keep_stop_token_ids(const struct tb_oai_field *f, json_t *v, void *base,
                                 const char *param, void *ctx, struct tb_oai_error *e)
{
    UNUSED_FN_ARGS;
    struct tb_oai_request *r = ctx;
    return s_token_ids(r, v, param, &r->gen.stop_token_ids, &r->gen.stop_token_ids_count, e);
}

/* stop: a string or up to 4 strings (the row checked the count and the items' type); empty
 * strings stop nothing and are dropped. */
static int s_keep_stop(const struct tb_oai_field *f, json_t *v, void *base, const char *param,
                       void *ctx, struct tb_oai_error *e)
{
    UNUSED_FN_ARGS;
    (void)param;
    struct tb_oai_request *r = ctx;
    size_t n = json_is_string(v) ? 1 : json_array_size(v);
    const char **s = s_alloc(r->priv, (n + 1) * sizeof(char *));
    if (!s) {
        return s_oom(e);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *one = json_string_value(json_is_string(v) ? v : json_array_get(v, i));
        if (one[0]) {
            s[k++] = one;
        }
    }
    r->gen.stop = s;
    r->gen.stop_count = k;
    return 0;
}

/* A content part: {"type": "text", "text": "..."}. */
struct part {
    const char *type;
    const char *text;
};

static const char *const s_part_types[] = {"text", NULL};

static const struct tb_oai_field s_part_fields[] = {
    {.name = "type",
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_STR,
     .flags = TB_OAI_F_REQUIRED | TB_OAI_F_UNSUPPORTED,
     .one_of = s_part_types,
     .off = offsetof(struct part, type)},
    {.name = "text",
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_STR,
     .flags = TB_OAI_F_REQUIRED,
     .off = offsetof(struct part, text)},
    {.name = NULL},
};

/* A message's content: a string, null (assistant only), or text parts, which are joined. */
static int s_keep_content(const struct tb_oai_field *f, json_t *v, void *base, const char *param,
                          void *ctx, struct tb_oai_error *e)
{
    (void)f;
    struct tb_oai_request *r = ctx;
    struct tb_msg_chat_message *m = base;
    if (!v) {
        if (strcmp(m->role, "assistant") != 0) {
            tb_oai_error_invalid(e, param, "'%s' is required for role '%s'", param, m->role);
            return -1;
        }
        return 0;
    }
    if (json_is_string(v)) {
        m->content = json_string_value(v);
        return 0;
    }
    size_t n = json_array_size(v), total = 0;
    for (size_t i = 0; i < n; i++) {
        char pp[128];
        tb_oai_path_index(pp, sizeof(pp), param, i);
        struct part p = {0};
        int rc = tb_oai_fields_walk(s_part_fields, r->api, json_array_get(v, i), &p, pp, r, e);
        if (rc != 0) {
            return rc;
        }
        total += strlen(p.text);
    }
    char *s = s_alloc(r->priv, total + 1);
    if (!s) {
        return s_oom(e);
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *text = json_object_get(json_array_get(v, i), "text");
        memcpy(s + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    s[at] = 0;
    m->content = s;
    return 0;
}

static const char *const s_roles[] = {"system", "developer", "user", "assistant",
                                      "tool",   "function",  NULL};

static const struct tb_oai_field s_message_fields[] = {
    {.name = "role",
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_STR,
     .flags = TB_OAI_F_REQUIRED,
     .one_of = s_roles,
     .off = offsetof(struct tb_msg_chat_message, role)},
    {.name = "content",
     .types = TB_OAI_J_STR | TB_OAI_J_ARR,
     .items = TB_OAI_J_OBJ,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_keep_content,
     .flags = TB_OAI_F_FN_ABSENT,
     .what = "a string or an array of content parts"},
    {.name = "name",
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_STR,
     .off = offsetof(struct tb_msg_chat_message, name)},
    {.name = "tool_calls",
     .types = TB_OAI_J_ARR,
     .items = TB_OAI_J_OBJ,
     .keep = TB_OAI_KEEP_FN,
     .fn = tb_oai_keep_msg_tool_calls},
    {.name = "tool_call_id",
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_FN,
     .fn = tb_oai_keep_msg_tool_call_id,
     .flags = TB_OAI_F_FN_ABSENT},
    {.name = NULL},
};

/* messages: the row checked that it is a non-empty array of objects; each is walked. */
static int s_keep_messages(const struct tb_oai_field *f, json_t *v, void *base, const char *param,
                           void *ctx, struct tb_oai_error *e)
{
    UNUSED_FN_ARGS;
    struct tb_oai_request *r = ctx;
    size_t n = json_array_size(v);
    struct tb_msg_chat_message *m = s_alloc(r->priv, n * sizeof(*m));
    if (!m) {
        return s_oom(e);
    }
    memset(m, 0, n * sizeof(*m));
    for (size_t i = 0; i < n; i++) {
        char mp[128];
        tb_oai_path_index(mp, sizeof(mp), param, i);
        int rc = tb_oai_fields_walk(s_message_fields, r->api, json_array_get(v, i), &m[i], mp, r,
                                    e);
        if (rc != 0) {
            return rc;
        }
    }
    r->gen.messages = m;
    r->gen.messages_count = n;
    return 0;
}

static int s_batched(struct tb_oai_error *e)
{
    tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_value", "prompt",
                     "batched prompts are not supported: send one prompt per request");
    return -1;
}

/* prompt: a string, token ids, or an array holding one of those (the row checked string or
 * non-empty array). */
static int s_keep_prompt(const struct tb_oai_field *f, json_t *v, void *base, const char *param,
                         void *ctx, struct tb_oai_error *e)
{
    UNUSED_FN_ARGS;
    struct tb_oai_request *r = ctx;
    struct tb_msg_gen_request *g = &r->gen;
    if (json_is_string(v)) {
        g->prompt = json_string_value(v);
        return 0;
    }
    json_t *first = json_array_get(v, 0);
    if (json_is_number(first)) {
        return s_token_ids(r, v, param, &g->tokens, &g->tokens_count, e);
    }
    if (!json_is_string(first) && !json_is_array(first)) {
        tb_oai_error_invalid(e, param,
                             "'%s' must be a string, an array of token ids or an "
                             "array of one of those",
                             param);
        return -1;
    }
    if (json_array_size(v) > 1) {
        return s_batched(e);
    }
    if (json_is_string(first)) {
        g->prompt = json_string_value(first);
        return 0;
    }
    if (json_array_size(first) == 0) {
        tb_oai_error_invalid(e, param, "'%s' must not be an empty array", param);
        return -1;
    }
    return s_token_ids(r, first, param, &g->tokens, &g->tokens_count, e);
}

/* ---- the tables: one row per OpenAI field ---- */

#define CHAT TB_OAI_FOR(TB_OAI_CHAT)
#define CMPL TB_OAI_FOR(TB_OAI_COMPLETIONS)
#define REQ(member) offsetof(struct tb_oai_request, member)
#define GEN(member) offsetof(struct tb_oai_request, gen.member)

/* Integers and numbers kept in the message with their has_ flag. */
#define INT_ROW(key, apis_, member, lo_, hi_)                                                    \
    {                                                                                            \
        .name = key, .apis = apis_, .types = TB_OAI_J_INT, .keep = TB_OAI_KEEP_INT,              \
        .off = GEN(member), .has_off = GEN(has_##member), .ilo = lo_, .ihi = hi_                 \
    }
#define NUM_ROW(key, member, lo_, hi_, flags_)                                                   \
    {                                                                                            \
        .name = key, .types = TB_OAI_J_NUM, .keep = TB_OAI_KEEP_NUM, .flags = flags_,            \
        .off = GEN(member), .has_off = GEN(has_##member), .lo = lo_, .hi = hi_                   \
    }

static const struct tb_oai_field s_stream_options_fields[] = {
    {.name = "include_usage",
     .types = TB_OAI_J_BOOL,
     .keep = TB_OAI_KEEP_BOOL,
     .off = REQ(include_usage)},
    {.name = NULL},
};

static const char *const s_response_formats[] = {"text", "json_object", "json_schema", NULL};

static int s_keep_rf_type(const struct tb_oai_field *f, json_t *v, void *base, const char *param,
                          void *ctx, struct tb_oai_error *e)
{
    UNUSED_FN_ARGS;
    (void)param;
    (void)e;
    ((struct tb_oai_request *)ctx)->priv->rf_type = json_string_value(v);
    return 0;
}

static int s_keep_rf_schema(const struct tb_oai_field *f, json_t *v, void *base,
                            const char *param, void *ctx, struct tb_oai_error *e)
{
    UNUSED_FN_ARGS;
    (void)param;
    (void)e;
    ((struct tb_oai_request *)ctx)->priv->rf_schema = v;
    return 0;
}

/* A JSON schema is an object or a boolean. */
static const struct tb_oai_field s_json_schema_fields[] = {
    {.name = "name", .types = TB_OAI_J_STR, .flags = TB_OAI_F_REQUIRED | TB_OAI_F_NONEMPTY},
    {.name = "description", .types = TB_OAI_J_STR},
    {.name = "schema",
     .types = TB_OAI_J_OBJ | TB_OAI_J_BOOL,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_keep_rf_schema,
     .what = "a JSON schema (an object)"},
    {.name = "strict", .types = TB_OAI_J_BOOL},
    {.name = NULL},
};

static const struct tb_oai_field s_response_format_fields[] = {
    {.name = "type",
     .types = TB_OAI_J_STR,
     .flags = TB_OAI_F_REQUIRED | TB_OAI_F_UNSUPPORTED,
     .one_of = s_response_formats,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_keep_rf_type},
    {.name = "json_schema", .types = TB_OAI_J_OBJ, .sub = s_json_schema_fields},
    {.name = NULL},
};

static int s_keep_grammar(const struct tb_oai_field *f, json_t *v, void *base, const char *param,
                          void *ctx, struct tb_oai_error *e)
{
    UNUSED_FN_ARGS;
    (void)param;
    (void)e;
    ((struct tb_oai_request *)ctx)->priv->grammar = json_string_value(v);
    return 0;
}

/* Checked in this order; the first error is the answer.  The endpoint-specific shape (messages,
 * prompt) comes first, as a request missing it is the likeliest mistake. */
static const struct tb_oai_field s_request_fields[] = {
    {.name = "model",
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_STR,
     .flags = TB_OAI_F_REQUIRED | TB_OAI_F_NONEMPTY,
     .off = REQ(model)},
    {.name = "messages",
     .apis = CHAT,
     .types = TB_OAI_J_ARR,
     .items = TB_OAI_J_OBJ,
     .ilo = 1,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_keep_messages,
     .flags = TB_OAI_F_REQUIRED},
    {.name = "prompt",
     .apis = CMPL,
     .types = TB_OAI_J_STR | TB_OAI_J_ARR,
     .ilo = 1,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_keep_prompt,
     .flags = TB_OAI_F_REQUIRED},
    /* chat: logprobs is a switch, top_logprobs the alternatives per position */
    {.name = "logprobs",
     .apis = CHAT,
     .types = TB_OAI_J_BOOL,
     .keep = TB_OAI_KEEP_BOOL,
     .off = REQ(logprobs)},
    {.name = "top_logprobs",
     .apis = CHAT,
     .types = TB_OAI_J_INT,
     .keep = TB_OAI_KEEP_INT,
     .off = REQ(top_logprobs),
     .ilo = 0,
     .ihi = TB_OAI_MAX_TOP_LOGPROBS_CHAT,
     .needs = "logprobs",
     .needs_off = REQ(logprobs)},
    /* completions: logprobs is the count of alternatives, and giving it asks for them */
    {.name = "logprobs",
     .apis = CMPL,
     .types = TB_OAI_J_INT,
     .keep = TB_OAI_KEEP_INT,
     .off = REQ(top_logprobs),
     .has_off = REQ(logprobs),
     .ilo = 0,
     .ihi = TB_OAI_MAX_LOGPROBS_COMPLETIONS},
    {.name = "add_generation_prompt",
     .apis = CHAT,
     .types = TB_OAI_J_BOOL,
     .keep = TB_OAI_KEEP_BOOL,
     .off = GEN(add_generation_prompt),
     .has_off = GEN(has_add_generation_prompt),
     .dflt_apis = CHAT,
     .dflt = 1},
    {.name = "tools",
     .apis = CHAT,
     .types = TB_OAI_J_ARR,
     .items = TB_OAI_J_OBJ,
     .keep = TB_OAI_KEEP_FN,
     .fn = tb_oai_keep_tools},
    {.name = "tool_choice",
     .apis = CHAT,
     .types = TB_OAI_J_STR | TB_OAI_J_OBJ,
     .keep = TB_OAI_KEEP_FN,
     .fn = tb_oai_keep_tool_choice},
    {.name = "parallel_tool_calls",
     .apis = CHAT,
     .types = TB_OAI_J_BOOL,
     .keep = TB_OAI_KEEP_BOOL,
     .off = GEN(parallel_tool_calls),
     .has_off = GEN(has_parallel_tool_calls)},
    {.name = "response_format", .types = TB_OAI_J_OBJ, .sub = s_response_format_fields},
    /* our extension: a GBNF grammar the output must follow (docs/http.md) */
    {.name = "grammar",
     .types = TB_OAI_J_STR,
     .flags = TB_OAI_F_NONEMPTY,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_keep_grammar},
    {.name = "echo",
     .apis = CMPL,
     .types = TB_OAI_J_BOOL,
     .keep = TB_OAI_KEEP_BOOL,
     .off = REQ(echo)},
    {.name = "best_of",
     .apis = CMPL,
     .types = TB_OAI_J_INT,
     .ilo = 1,
     .ihi = 128,
     .flags = TB_OAI_F_ONLY,
     .only = 1},
    {.name = "suffix", .apis = CMPL, .types = TB_OAI_J_STR, .flags = TB_OAI_F_EMPTY_ONLY},
    /* sampling, both endpoints */
    {.name = "n",
     .types = TB_OAI_J_INT,
     .keep = TB_OAI_KEEP_INT,
     .off = REQ(n),
     .ilo = 1,
     .ihi = TB_OAI_MAX_N},
    /* max_completion_tokens (chat) wins over max_tokens: max_tokens is skipped when it came */
    INT_ROW("max_completion_tokens", CHAT, max_tokens, 1, INT32_MAX),
    {.name = "max_tokens",
     .types = TB_OAI_J_INT,
     .keep = TB_OAI_KEEP_INT,
     .flags = TB_OAI_F_IF_UNSET,
     .off = GEN(max_tokens),
     .has_off = GEN(has_max_tokens),
     .ilo = 1,
     .ihi = INT32_MAX,
     .dflt_apis = CMPL,
     .dflt = TB_OAI_COMPLETIONS_DEFAULT_MAX_TOKENS},
    INT_ROW("min_tokens", 0, min_tokens, 0, INT32_MAX),
    NUM_ROW("temperature", temperature, 0, 2, 0),
    NUM_ROW("top_p", top_p, 0, 1, TB_OAI_F_LO_OPEN),
    INT_ROW("top_k", 0, top_k, -1, INT32_MAX),
    NUM_ROW("min_p", min_p, 0, 1, 0),
    INT_ROW("seed", 0, seed, INT64_MIN, INT64_MAX),
    NUM_ROW("presence_penalty", presence_penalty, -2, 2, 0),
    NUM_ROW("frequency_penalty", frequency_penalty, -2, 2, 0),
    NUM_ROW("repetition_penalty", repetition_penalty, 0, 2, TB_OAI_F_LO_OPEN),
    {.name = "ignore_eos",
     .types = TB_OAI_J_BOOL,
     .keep = TB_OAI_KEEP_BOOL,
     .off = GEN(ignore_eos),
     .has_off = GEN(has_ignore_eos)},
    {.name = "stop",
     .types = TB_OAI_J_STR | TB_OAI_J_ARR,
     .items = TB_OAI_J_STR,
     .ihi = TB_OAI_MAX_STOP,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_keep_stop,
     .what = "a string or an array of strings"},
    {.name = "stop_token_ids",
     .types = TB_OAI_J_ARR,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_keep_stop_token_ids,
     .what = "an array of integers"},
    /* a bias the engines cannot apply is refused, not ignored */
    {.name = "logit_bias", .types = TB_OAI_J_OBJ, .flags = TB_OAI_F_EMPTY_ONLY},
    {.name = "user", .types = TB_OAI_J_STR},
    {.name = "stream", .types = TB_OAI_J_BOOL, .keep = TB_OAI_KEEP_BOOL, .off = REQ(stream)},
    {.name = "stream_options",
     .types = TB_OAI_J_OBJ,
     .sub = s_stream_options_fields,
     .needs = "stream",
     .needs_off = REQ(stream)},
    {.name = NULL},
};

/* The grammar the request asks for (response_format json_object / json_schema, or the raw
 * `grammar` field) as GBNF in gen.grammar; 0, -1 or -2. */
static int s_grammar(struct tb_oai_request *r, struct tb_oai_error *e)
{
    struct tb_oai_req_priv *p = r->priv;
    bool rf = p->rf_type && strcmp(p->rf_type, "text") != 0;
    if (rf && p->grammar) {
        tb_oai_error_invalid(e, "grammar",
                             "'grammar' and a response_format of type '%s' cannot be combined",
                             p->rf_type);
        return -1;
    }
    char err[512] = "";
    size_t len = 0;
    int rc = 0;
    const char *param = "grammar";
    if (p->grammar) {
        tb_grammar_t *g = NULL;
        rc = tb_grammar_parse_gbnf(p->grammar, strlen(p->grammar), &g, err, sizeof err);
        tb_grammar_destroy(&g);
        if (rc == 0) {
            r->gen.grammar = p->grammar;
            return 0;
        }
    } else if (rf && strcmp(p->rf_type, "json_object") == 0) {
        rc = tb_json_schema_object_gbnf(&p->gbnf, &len);
    } else if (rf) {
        param = "response_format.json_schema";
        if (!p->rf_schema) {
            tb_oai_error_invalid(e, param,
                                 "response_format of type 'json_schema' needs 'json_schema' "
                                 "with a 'schema'");
            return -1;
        }
        param = "response_format.json_schema.schema";
        rc = tb_json_schema_to_gbnf(p->rf_schema, &p->gbnf, &len, err, sizeof err);
    }
    if (rc == TB_ENOMEM) {
        return s_oom(e);
    }
    if (rc == TB_ENOTSUP) {
        tb_oai_error_set(e, 400, "invalid_request_error", "unsupported_value", param, "%s", err);
        return -1;
    }
    if (rc != 0) {
        tb_oai_error_invalid(e, param, "%s: %s", param, err);
        return -1;
    }
    r->gen.grammar = p->gbnf;
    return 0;
}

/* Rules between fields, and what the message carries that the table does not set directly. */
static int s_finish(struct tb_oai_request *r, struct tb_oai_error *e)
{
    struct tb_msg_gen_request *g = &r->gen;
    g->model = r->model;
    g->mode = r->api == TB_OAI_CHAT ? "chat" : "completion";
    if (g->has_min_tokens && g->has_max_tokens && g->min_tokens > g->max_tokens) {
        tb_oai_error_invalid(e, "min_tokens",
                             "'min_tokens' (%lld) must not exceed max_tokens "
                             "(%lld)",
                             (long long)g->min_tokens, (long long)g->max_tokens);
        return -1;
    }
    if (r->logprobs) {
        g->logprobs = true;
        g->has_logprobs = true;
        g->top_logprobs = r->top_logprobs;
        g->has_top_logprobs = true;
    }
    if (r->echo) {
        g->echo = true;
        g->has_echo = true;
    }
    if (r->stream) {
        g->stream = true; /* the preprocessor may then send tool-call arguments as they come */
        g->has_stream = true;
    }
    return s_grammar(r, e);
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
                         tb_oai_json_type_name(p->root));
        goto fail;
    }
    int k = tb_oai_fields_walk(s_request_fields, api, p->root, r, "", r, err);
    if (k == 0) {
        k = s_finish(r, err);
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

const char *tb_oai_request_keep_string(struct tb_oai_request *r, const char *s)
{
    size_t n = strlen(s);
    char *c = s_alloc(r->priv, n + 1);
    if (c) {
        memcpy(c, s, n + 1);
    }
    return c;
}

json_t *tb_oai_request_body(const struct tb_oai_request *r)
{
    return r->priv->root;
}

void tb_oai_request_destroy(struct tb_oai_request **r_p)
{
    if (!r_p || !*r_p) {
        return;
    }
    struct tb_oai_request *r = *r_p;
    if (r->priv) {
        json_decref(r->priv->root);
        free(r->priv->gbnf);
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
