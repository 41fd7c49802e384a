/*
 * tb_tool_parser: tool calls out of a model's text (see tb_tool_parser.h).
 *
 * The text not yet decided is kept in `in` (from `at`); each format is a small state machine
 * over it that waits whenever the text so far could still go two ways (a marker's prefix, a
 * call's JSON not closed yet).  A call's JSON is followed byte by byte by a scanner that knows
 * the nesting, so the name and the start and end of the arguments are known as they arrive;
 * jansson checks the whole call once it is closed.
 */
#include "tb_tool_parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"
#include "tb_errors.h"
#include "tb_json_schema.h"

#define MAX_CALL (1u << 20) /* a call's text beyond this is not a call */
#define MAX_NAME 128
#define MAX_DEPTH 64

/* DeepSeek's markers (fullwidth bars, U+2581 for spaces). */
#define DS_CALLS_BEGIN                                                                           \
    "<\xef\xbd\x9c"                                                                              \
    "tool\xe2\x96\x81"                                                                           \
    "calls\xe2\x96\x81"                                                                          \
    "begin\xef\xbd\x9c>"
#define DS_CALLS_END                                                                             \
    "<\xef\xbd\x9c"                                                                              \
    "tool\xe2\x96\x81"                                                                           \
    "calls\xe2\x96\x81"                                                                          \
    "end\xef\xbd\x9c>"
#define DS_CALL_BEGIN                                                                            \
    "<\xef\xbd\x9c"                                                                              \
    "tool\xe2\x96\x81"                                                                           \
    "call\xe2\x96\x81"                                                                           \
    "begin\xef\xbd\x9c>"
#define DS_CALL_END                                                                              \
    "<\xef\xbd\x9c"                                                                              \
    "tool\xe2\x96\x81"                                                                           \
    "call\xe2\x96\x81"                                                                           \
    "end\xef\xbd\x9c>"
#define DS_SEP                                                                                   \
    "<\xef\xbd\x9c"                                                                              \
    "tool\xe2\x96\x81"                                                                           \
    "sep\xef\xbd\x9c>"
#define PY_TAG "<|python_tag|>"

/* ---- formats ---- */

static const char *const s_names[] = {"none", "hermes", "llama3_json", "mistral", "deepseek_v3"};

const char *tb_tool_format_name(tb_tool_format_t f)
{
    return (unsigned)f < sizeof(s_names) / sizeof(s_names[0]) ? s_names[f] : "none";
}

int tb_tool_format_from_name(const char *name, tb_tool_format_t *out)
{
    for (size_t i = 0; name && i < sizeof(s_names) / sizeof(s_names[0]); i++) {
        if (strcmp(name, s_names[i]) == 0) {
            *out = (tb_tool_format_t)i;
            return 0;
        }
    }
    return TB_EINVAL;
}

static bool s_has(const char *src, size_t len, const char *what)
{
    return src && memmem(src, len, what, strlen(what)) != NULL;
}

tb_tool_format_t tb_tool_format_from_template(const char *src, size_t len)
{
    if (s_has(src, len, "<tool_call>")) {
        return TB_TOOL_FORMAT_HERMES;
    }
    if (s_has(src, len, DS_CALLS_BEGIN) || s_has(src, len, DS_CALL_BEGIN)) {
        return TB_TOOL_FORMAT_DEEPSEEK;
    }
    if (s_has(src, len, "[TOOL_CALLS]")) {
        return TB_TOOL_FORMAT_MISTRAL;
    }
    if (s_has(src, len, PY_TAG) || s_has(src, len, "<|start_header_id|>ipython")) {
        return TB_TOOL_FORMAT_LLAMA3;
    }
    return TB_TOOL_FORMAT_NONE;
}

const char *tb_tool_format_marker(tb_tool_format_t f)
{
    switch (f) {
    case TB_TOOL_FORMAT_HERMES:
        return "<tool_call>";
    case TB_TOOL_FORMAT_LLAMA3:
        return PY_TAG;
    case TB_TOOL_FORMAT_MISTRAL:
        return "[TOOL_CALLS]";
    case TB_TOOL_FORMAT_DEEPSEEK:
        return DS_CALLS_BEGIN;
    default:
        return NULL;
    }
}

static const char *const s_markup_hermes[] = {"<tool_call>", "</tool_call>", NULL};
static const char *const s_markup_llama[] = {PY_TAG, NULL};
static const char *const s_markup_mistral[] = {"[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", NULL};
static const char *const s_markup_deepseek[] = {DS_CALLS_BEGIN, DS_CALLS_END, DS_CALL_BEGIN,
                                                DS_CALL_END,    DS_SEP,       NULL};
static const char *const s_markup_none[] = {NULL};

const char *const *tb_tool_format_markup(tb_tool_format_t f)
{
    switch (f) {
    case TB_TOOL_FORMAT_HERMES:
        return s_markup_hermes;
    case TB_TOOL_FORMAT_LLAMA3:
        return s_markup_llama;
    case TB_TOOL_FORMAT_MISTRAL:
        return s_markup_mistral;
    case TB_TOOL_FORMAT_DEEPSEEK:
        return s_markup_deepseek;
    default:
        return s_markup_none;
    }
}

/* ---- forced calls as GBNF ---- */

/* The call markup of a format: OPEN call (SEP call)* CLOSE, call ::= PRE "N" MID ARGS POST. */
struct wrap {
    const char *open, *sep, *close, *pre, *mid, *post;
};

static int s_wrap(tb_tool_format_t f, struct wrap *w)
{
    static const struct wrap hermes = {
        "", "\n", "", "<tool_call>\n{\"name\": \"", "\", \"arguments\": ", "}\n</tool_call>"};
    static const struct wrap llama = {"", "; ", "", "{\"name\": \"", "\", \"parameters\": ", "}"};
    static const struct wrap mistral = {"[TOOL_CALLS][",       ", ", "]", "{\"name\": \"",
                                        "\", \"arguments\": ", "}"};
    static const struct wrap deepseek = {DS_CALLS_BEGIN, "\n",
                                         DS_CALLS_END,   DS_CALL_BEGIN "function" DS_SEP,
                                         "\n```json\n",  "\n```" DS_CALL_END};
    switch (f) {
    case TB_TOOL_FORMAT_HERMES:
        *w = hermes;
        return 0;
    case TB_TOOL_FORMAT_LLAMA3:
        *w = llama;
        return 0;
    case TB_TOOL_FORMAT_MISTRAL:
        *w = mistral;
        return 0;
    case TB_TOOL_FORMAT_DEEPSEEK:
        *w = deepseek;
        return 0;
    default:
        return TB_EINVAL;
    }
}

/* A GBNF string literal of s. */
static int s_gbnf_lit(struct tb_buf *out, const char *s)
{
    int rc = tb_buf_puts(out, "\"");
    for (; rc == 0 && *s; s++) {
        if (*s == '"' || *s == '\\') {
            rc = tb_buf_printf(out, "\\%c", *s);
        } else if (*s == '\n') {
            rc = tb_buf_puts(out, "\\n");
        } else {
            rc = tb_buf_append(out, s, 1);
        }
    }
    return rc ? rc : tb_buf_puts(out, "\"");
}

static bool s_ident(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && ((c >= '0' && c <= '9') || c == '-'));
}

/* Copies GBNF text src[0..len) with every rule name prefixed by `prefix` (literals, classes
 * and comments are copied as they are). */
static int s_prefixed(struct tb_buf *out, const char *src, size_t len, const char *prefix)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < len;) {
        char c = src[i];
        size_t j = i + 1;
        if (c == '"' || c == '[') {
            char end = c == '"' ? '"' : ']';
            while (j < len && src[j] != end) {
                j += src[j] == '\\' && j + 1 < len ? 2 : 1;
            }
            j = j < len ? j + 1 : j;
        } else if (c == '#') {
            while (j < len && src[j] != '\n') {
                j++;
            }
        } else if (s_ident(c, true)) {
            while (j < len && s_ident(src[j], false)) {
                j++;
            }
            rc = tb_buf_puts(out, prefix);
        }
        rc = rc ? rc : tb_buf_append(out, src + i, j - i);
        i = j;
    }
    return rc;
}

static bool s_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!s_ident(c, false) && c != '.') {
            return false;
        }
    }
    return n > 0 && n <= 64;
}

static const json_t *s_function(const json_t *t)
{
    const json_t *f = json_object_get(t, "function");
    return f ? f : t;
}

/* The alternatives of one call: "N" MID tI-root per tool, the tools' rules into `rules`. */
static int s_gbnf_tools(const json_t *tools, const char *only, const struct wrap *w,
                        struct tb_buf *alts, struct tb_buf *rules, char *err, size_t err_len)
{
    size_t i, n = 0;
    json_t *t;
    int rc = 0;
    json_array_foreach((json_t *)tools, i, t)
    {
        const json_t *fn = s_function(t);
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name || !s_name_ok(name)) {
            return tb_err_fail(err, err_len, TB_EINVAL,
                               "tools[%zu]: a function name must be 1 to "
                               "64 letters, digits, '_', '-' or '.'",
                               i);
        }
        if (only && strcmp(only, name) != 0) {
            continue;
        }
        const json_t *params = json_object_get(fn, "parameters");
        char *g = NULL;
        size_t glen = 0;
        char sub[320];
        rc = params ? tb_json_schema_to_gbnf(params, &g, &glen, sub, sizeof(sub))
                    : tb_json_schema_object_gbnf(&g, &glen);
        if (rc != 0) {
            free(g);
            return tb_err_fail(err, err_len, rc, "tools[%zu].function.parameters: %s", i,
                               params ? sub : "out of memory");
        }
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "t%zu-", i);
        rc = tb_buf_puts(alts, n ? " | " : "( ");
        rc = rc ? rc : s_gbnf_lit(alts, name);
        rc = rc ? rc : tb_buf_puts(alts, " ");
        rc = rc ? rc : s_gbnf_lit(alts, w->mid);
        rc = rc ? rc : tb_buf_printf(alts, " %sroot", prefix);
        rc = rc ? rc : s_prefixed(rules, g, glen, prefix);
        rc = rc ? rc : tb_buf_puts(rules, "\n");
        free(g);
        if (rc != 0) {
            return tb_err_fail(err, err_len, rc, "out of memory");
        }
        n++;
    }
    if (n == 0) {
        return tb_err_fail(err, err_len, TB_EINVAL,
                           only ? "no tool is a function named '%s'" : "no tools%s",
                           only ? only : "");
    }
    return tb_buf_puts(alts, " )");
}

int tb_tool_format_gbnf(tb_tool_format_t f, const json_t *tools, const char *only, bool parallel,
                        char **gbnf, size_t *len, char *err, size_t err_len)
{
    struct wrap w;
    struct tb_buf out = {0}, alts = {0}, rules = {0};
    *gbnf = NULL;
    *len = 0;
    if (s_wrap(f, &w) != 0 || !json_is_array(tools)) {
        return tb_err_fail(err, err_len, TB_EINVAL, "no tool-call format, or tools not an array");
    }
    int rc = s_gbnf_tools(tools, only, &w, &alts, &rules, err, err_len);
    rc = rc ? rc : tb_buf_puts(&out, "root ::= ");
    rc = rc ? rc : s_gbnf_lit(&out, w.open);
    rc = rc ? rc : tb_buf_puts(&out, " tool-call ");
    if (rc == 0 && parallel) {
        rc = tb_buf_puts(&out, "( ");
        rc = rc ? rc : s_gbnf_lit(&out, w.sep);
        rc = rc ? rc : tb_buf_puts(&out, " tool-call )* ");
    }
    rc = rc ? rc : s_gbnf_lit(&out, w.close);
    rc = rc ? rc : tb_buf_puts(&out, "\ntool-call ::= ");
    rc = rc ? rc : s_gbnf_lit(&out, w.pre);
    rc = rc ? rc : tb_buf_printf(&out, " %s ", (const char *)alts.data);
    rc = rc ? rc : s_gbnf_lit(&out, w.post);
    rc = rc ? rc : tb_buf_printf(&out, "\n%s", (const char *)rules.data);
    tb_buf_free(&alts);
    tb_buf_free(&rules);
    if (rc != 0) {
        tb_buf_free(&out);
        return rc == TB_ENOMEM ? tb_err_fail(err, err_len, rc, "out of memory") : rc;
    }
    *gbnf = tb_buf_steal(&out, len);
    return 0;
}

/* ---- a JSON scanner that follows the nesting byte by byte ---- */

enum {
    J_VALUE,
    J_OPEN_OBJ,
    J_KEY,
    J_COLON,
    J_OPEN_ARR,
    J_STR,
    J_ESC,
    J_ATOM,
    J_AFTER,
    J_DONE,
    J_ERR
};

struct jscan {
    int st;
    int depth;
    bool key; /* the string being read is a key */
    char stack[MAX_DEPTH];
};

static bool s_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void js_after_value(struct jscan *s)
{
    s->st = s->depth == 0 ? J_DONE : J_AFTER;
}

static void js_value(struct jscan *s, char c)
{
    if (c == '{' || c == '[') {
        if (s->depth >= MAX_DEPTH) {
            s->st = J_ERR;
            return;
        }
        s->stack[s->depth++] = c;
        s->st = c == '{' ? J_OPEN_OBJ : J_OPEN_ARR;
    } else if (c == '"') {
        s->key = false;
        s->st = J_STR;
    } else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n') {
        s->st = J_ATOM;
    } else {
        s->st = J_ERR;
    }
}

static void js_close(struct jscan *s, char c)
{
    char top = s->depth ? s->stack[s->depth - 1] : 0;
    if ((c == '}' && top == '{') || (c == ']' && top == '[')) {
        s->depth--;
        js_after_value(s);
    } else {
        s->st = J_ERR;
    }
}

static void js_feed(struct jscan *s, char c)
{
    bool ws = s_ws(c);
    switch (s->st) {
    case J_VALUE:
        if (!ws) {
            js_value(s, c);
        }
        break;
    case J_OPEN_ARR:
        if (!ws) {
            c == ']' ? js_close(s, c) : js_value(s, c);
        }
        break;
    case J_OPEN_OBJ:
    case J_KEY:
        if (ws) {
            break;
        }
        if (c == '}' && s->st == J_OPEN_OBJ) {
            js_close(s, c);
        } else {
            s->key = true;
            s->st = c == '"' ? J_STR : J_ERR;
        }
        break;
    case J_COLON:
        if (!ws) {
            s->st = c == ':' ? J_VALUE : J_ERR;
        }
        break;
    case J_STR:
        if (c == '\\') {
            s->st = J_ESC;
        } else if (c == '"') {
            s->key ? (void)(s->st = J_COLON) : js_after_value(s);
        } else if ((unsigned char)c < 0x20) {
            s->st = J_ERR;
        }
        break;
    case J_ESC:
        s->st = J_STR;
        break;
    case J_ATOM:
        if (!s_ws(c) && c != ',' && c != '}' && c != ']') {
            break; /* jansson judges the atom's spelling at the end */
        }
        js_after_value(s);
        if (s->st == J_AFTER) {
            js_feed(s, c);
        }
        break;
    case J_AFTER:
        if (ws) {
            break;
        }
        if (c == ',') {
            s->st = s->stack[s->depth - 1] == '{' ? J_KEY : J_VALUE;
        } else {
            js_close(s, c);
        }
        break;
    default:
        break;
    }
}

/* ---- the parser ---- */

typedef enum {
    ST_TEXT,      /* content; looking for the start of calls */
    ST_WS_TEXT,   /* after calls: whitespace dropped, then content */
    ST_OBJ,       /* a call as one JSON object {"name", "arguments"} */
    ST_NAME,      /* a bare name up to `lit` */
    ST_ARGS,      /* a bare arguments JSON value */
    ST_LIT,       /* whitespace, then `lit`, then state `next` */
    ST_AFTER_OBJ, /* a call object closed: the format decides */
    ST_AFTER_ARGS,
    ST_MISTRAL_OPEN, /* after [TOOL_CALLS]: '[' (array) or a name */
    ST_DS_PRE,       /* DeepSeek: the text before <｜tool▁sep｜> */
    ST_DS_AFTER,     /* DeepSeek: after a call's end */
} st_t;

struct delta {
    int64_t index;
    char *id, *name;
    struct tb_buf args;
};

struct tb_tool_parser {
    tb_tool_format_t fmt;
    bool stream;
    uint64_t seed;
    char **tools; /* allowed names, NULL-terminated; NULL: any */
    bool eof;

    struct tb_buf in; /* text not yet released, from `at` */
    size_t at;
    st_t st;
    const char *lit;  /* ST_LIT, ST_NAME */
    st_t next;        /* ST_LIT */
    bool text_seen;   /* llama3: calls only open the answer */
    bool in_array;    /* mistral: [TOOL_CALLS][...] */
    bool ds_fenced;   /* deepseek: arguments in a ```json fence */
    size_t seq_calls; /* calls completed since the markup opened */

    /* the call being read */
    size_t call_start; /* in `in`: its raw text starts here */
    size_t obj_start;  /* ST_OBJ / ST_ARGS: the JSON starts here */
    struct jscan js;
    char key[16];
    size_t key_len;
    int cur;       /* the depth-1 value being read: 0 none, 1 name, 2 arguments, 3 other */
    size_t vstart; /* its first byte */
    size_t name_at, name_end;
    size_t args_at, args_end; /* args_end 0: not closed */
    bool has_args;
    char name[MAX_NAME + 1];
    bool named;       /* the name is known and allowed */
    bool started;     /* stream: the call's first delta went out */
    size_t args_sent; /* stream: arguments released up to here */

    int64_t n_calls;
    struct tb_buf content;
    struct delta *deltas;
    size_t n_deltas, cap_deltas;
    struct tb_tool_delta *pub;
};

static int s_copy_tools(tb_tool_parser_t *p, const json_t *tools)
{
    if (!json_is_array(tools)) {
        return 0;
    }
    size_t n = json_array_size(tools);
    p->tools = calloc(n + 1, sizeof(char *));
    if (!p->tools) {
        return TB_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(
            json_object_get(s_function(json_array_get(tools, i)), "name"));
        if (name && !(p->tools[k++] = strdup(name))) {
            return TB_ENOMEM;
        }
    }
    return 0;
}

int tb_tool_parser_new(tb_tool_format_t f, const json_t *tools, bool stream, uint64_t id_seed,
                       tb_tool_parser_t **out)
{
    *out = NULL;
    if (f == TB_TOOL_FORMAT_NONE || (unsigned)f >= sizeof(s_names) / sizeof(s_names[0])) {
        return TB_EINVAL;
    }
    tb_tool_parser_t *p = calloc(1, sizeof(*p));
    if (!p) {
        return TB_ENOMEM;
    }
    p->fmt = f;
    p->stream = stream;
    p->seed = id_seed;
    if (s_copy_tools(p, tools) != 0) {
        tb_tool_parser_destroy(&p);
        return TB_ENOMEM;
    }
    *out = p;
    return 0;
}

void tb_tool_parser_take(tb_tool_parser_t *p)
{
    for (size_t i = 0; i < p->n_deltas; i++) {
        free(p->deltas[i].id);
        free(p->deltas[i].name);
        tb_buf_free(&p->deltas[i].args);
    }
    p->n_deltas = 0;
    tb_buf_clear(&p->content);
}

void tb_tool_parser_destroy(tb_tool_parser_t **p_p)
{
    if (!p_p || !*p_p) {
        return;
    }
    tb_tool_parser_t *p = *p_p;
    tb_tool_parser_take(p);
    for (size_t i = 0; p->tools && p->tools[i]; i++) {
        free(p->tools[i]);
    }
    free(p->tools);
    free(p->deltas);
    free(p->pub);
    tb_buf_free(&p->in);
    tb_buf_free(&p->content);
    free(p);
    *p_p = NULL;
}

/* ---- what comes out ---- */

static uint64_t s_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static struct delta *s_new_delta(tb_tool_parser_t *p, int64_t index)
{
    if (p->n_deltas == p->cap_deltas) {
        size_t cap = p->cap_deltas ? p->cap_deltas * 2 : 4;
        struct delta *d = realloc(p->deltas, cap * sizeof(*d));
        if (!d) {
            return NULL;
        }
        p->deltas = d;
        p->cap_deltas = cap;
    }
    struct delta *d = &p->deltas[p->n_deltas++];
    memset(d, 0, sizeof(*d));
    d->index = index;
    tb_buf_init(&d->args);
    return d;
}

/* The current call's first delta: index, id, name, arguments "". */
static int s_emit_first(tb_tool_parser_t *p)
{
    struct delta *d = s_new_delta(p, p->n_calls);
    if (!d) {
        return TB_ENOMEM;
    }
    static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char id[32] = "call_";
    uint64_t x = s_mix(p->seed ^ ((uint64_t)p->n_calls * 0x100000001B3ull));
    for (int i = 0; i < 24; i++) {
        if (i % 8 == 0) {
            x = s_mix(x);
        }
        id[5 + i] = abc[x % 62];
        x /= 62;
    }
    id[29] = 0;
    d->id = strdup(id);
    d->name = strdup(p->name);
    p->started = true;
    p->n_calls++;
    return d->id && d->name && tb_buf_puts(&d->args, "") == 0 ? 0 : TB_ENOMEM;
}

/* More of the current call's arguments (merged into the last delta when it is this call's). */
static int s_emit_args(tb_tool_parser_t *p, const char *s, size_t n)
{
    int64_t index = p->n_calls - 1;
    struct delta *d = p->n_deltas ? &p->deltas[p->n_deltas - 1] : NULL;
    if (!d || d->index != index) {
        d = s_new_delta(p, index);
    }
    if (!d) {
        return TB_ENOMEM;
    }
    return n ? tb_buf_append(&d->args, s, n) : tb_buf_puts(&d->args, "");
}

static int s_content(tb_tool_parser_t *p, const char *s, size_t n)
{
    return n ? tb_buf_append(&p->content, s, n) : 0;
}

const char *tb_tool_parser_content(const tb_tool_parser_t *p, size_t *len)
{
    *len = p->content.len;
    return p->content.len ? (const char *)p->content.data : NULL;
}

const struct tb_tool_delta *tb_tool_parser_deltas(const tb_tool_parser_t *p, size_t *n)
{
    tb_tool_parser_t *m = (tb_tool_parser_t *)p; /* the public view is rebuilt on demand */
    *n = 0;
    if (p->n_deltas == 0) {
        return NULL;
    }
    struct tb_tool_delta *pub = realloc(m->pub, p->n_deltas * sizeof(*pub));
    if (!pub) {
        return NULL;
    }
    m->pub = pub;
    for (size_t i = 0; i < p->n_deltas; i++) {
        const struct delta *d = &p->deltas[i];
        pub[i] = (struct tb_tool_delta){.index = d->index,
                                        .id = d->id,
                                        .name = d->name,
                                        .arguments = d->args.data ? (const char *)d->args.data
                                                                  : ""};
    }
    *n = p->n_deltas;
    return pub;
}

size_t tb_tool_parser_calls(const tb_tool_parser_t *p)
{
    return (size_t)p->n_calls;
}

/* ---- the input ---- */

static const char *s_buf(const tb_tool_parser_t *p)
{
    return p->in.data ? (const char *)p->in.data : "";
}

static size_t s_left(const tb_tool_parser_t *p)
{
    return p->in.len - p->at;
}

/* 1: the text at `at` starts with `lit` (consumed); 0: it is a proper prefix of it (wait);
 * -1: it does not (or the text ended). */
static int s_lit(tb_tool_parser_t *p, const char *lit)
{
    size_t n = strlen(lit), left = s_left(p);
    size_t k = left < n ? left : n;
    if (memcmp(s_buf(p) + p->at, lit, k) != 0) {
        return -1;
    }
    if (k < n) {
        return p->eof ? -1 : 0;
    }
    p->at += n;
    return 1;
}

/* Skips whitespace; true when a byte follows. */
static bool s_skip_ws(tb_tool_parser_t *p)
{
    while (p->at < p->in.len && s_ws(s_buf(p)[p->at])) {
        p->at++;
    }
    return p->at < p->in.len;
}

static bool s_allowed(const tb_tool_parser_t *p, const char *name)
{
    if (!name[0] || !p->tools) {
        return name[0] != 0;
    }
    for (size_t i = 0; p->tools[i]; i++) {
        if (strcmp(p->tools[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static void s_begin_call(tb_tool_parser_t *p, size_t raw_start)
{
    p->call_start = raw_start;
    p->named = p->started = p->has_args = false;
    p->name[0] = 0;
    p->args_at = p->args_end = p->args_sent = 0;
    p->cur = 0;
    p->key_len = 0;
}

static void s_begin_json(tb_tool_parser_t *p, st_t st)
{
    memset(&p->js, 0, sizeof(p->js));
    p->obj_start = p->at;
    p->st = st;
}

/* The current call is not a call: its raw text becomes content (unless a stream already
 * released it as a call), and the text after it is read as content. */
static int s_fail(tb_tool_parser_t *p)
{
    int rc = 0;
    size_t end = p->at > p->call_start ? p->at : p->call_start;
    if (!p->started) {
        rc = s_content(p, s_buf(p) + p->call_start, end - p->call_start);
    }
    p->started = false;
    p->at = end;
    p->st = ST_TEXT;
    p->text_seen = true;
    return rc;
}

/* Sets the name (a copy of s[0..n)) and checks it; stream mode releases the first delta. */
static int s_name(tb_tool_parser_t *p, const char *s, size_t n)
{
    while (n && s_ws(*s)) {
        s++;
        n--;
    }
    while (n && s_ws(s[n - 1])) {
        n--;
    }
    if (n > MAX_NAME || memchr(s, '\\', n) || memchr(s, '"', n)) {
        return -1;
    }
    memcpy(p->name, s, n);
    p->name[n] = 0;
    if (!s_allowed(p, p->name)) {
        return -1;
    }
    p->named = true;
    return p->stream ? s_emit_first(p) : 0;
}

/* Stream mode: the arguments read so far (a container's bytes as they come). */
static int s_stream_args(tb_tool_parser_t *p, size_t upto)
{
    if (!p->stream || !p->started || !p->has_args) {
        return 0;
    }
    char c = s_buf(p)[p->args_at];
    if (c != '{' && c != '[') {
        return 0; /* a string or an atom: released whole at the end */
    }
    if (p->args_sent < p->args_at) {
        p->args_sent = p->args_at;
    }
    if (upto <= p->args_sent) {
        return 0;
    }
    int rc = s_emit_args(p, s_buf(p) + p->args_sent, upto - p->args_sent);
    p->args_sent = upto;
    return rc;
}

/* The call is complete with arguments `args` (its JSON text): release what is left of it. */
static int s_complete(tb_tool_parser_t *p, const char *args, size_t n, bool raw_args)
{
    int rc = 0;
    if (!p->started) {
        rc = s_emit_first(p);
        rc = rc ? rc : s_emit_args(p, args, n);
    } else if (raw_args && p->args_sent >= p->args_at && p->args_sent > 0) {
        rc = s_stream_args(p, p->args_end);
    } else {
        rc = s_emit_args(p, args, n);
    }
    p->started = false;
    p->call_start = p->at; /* a failure after this call leaves it released */
    p->seq_calls++;
    return rc;
}

/* The arguments' text of a closed call object `o`: "arguments" or "parameters", an object as
 * its raw text, a string holding JSON as that JSON; absent: {}.  -1 when unusable. */
static int s_obj_args(tb_tool_parser_t *p, const json_t *o, const char **s, size_t *n, bool *raw)
{
    const json_t *a = json_object_get(o, "arguments");
    a = a ? a : json_object_get(o, "parameters");
    *raw = false;
    if (!a) {
        *s = "{}";
        *n = 2;
        return 0;
    }
    if (json_is_string(a)) {
        json_error_t je;
        json_t *inner = json_loads(json_string_value(a), JSON_DECODE_ANY, &je);
        bool ok = json_is_object(inner);
        json_decref(inner);
        *s = json_string_value(a);
        *n = json_string_length(a);
        return ok ? 0 : -1;
    }
    if (!json_is_object(a) || !p->has_args || !p->args_end) {
        return -1;
    }
    *s = s_buf(p) + p->args_at;
    *n = p->args_end - p->args_at;
    *raw = true;
    return 0;
}

/* A call object closed at `at`: checked whole by jansson. */
static int s_obj_done(tb_tool_parser_t *p)
{
    json_error_t je;
    json_t *o = json_loadb(s_buf(p) + p->obj_start, p->at - p->obj_start, 0, &je);
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *args = NULL;
    size_t n = 0;
    bool raw = false;
    int rc = -1;
    if (name && (p->named ? strcmp(name, p->name) == 0 : s_name(p, name, strlen(name)) == 0) &&
        s_obj_args(p, o, &args, &n, &raw) == 0) {
        rc = s_complete(p, args, n, raw);
        p->st = ST_AFTER_OBJ;
    }
    json_decref(o);
    return rc == -1 ? s_fail(p) : rc;
}

/* Key and value bookkeeping at depth 1 of a call object, around one byte. */
static int s_obj_byte(tb_tool_parser_t *p, size_t i)
{
    char c = s_buf(p)[i];
    struct jscan *js = &p->js;
    int before = js->st, d0 = js->depth;
    if (d0 == 1 && (before == J_OPEN_OBJ || before == J_KEY) && c == '"') {
        p->key_len = 0;
    } else if (d0 == 1 && before == J_STR && js->key && c != '"' && p->key_len < 15) {
        p->key[p->key_len++] = c;
    } else if (d0 == 1 && before == J_VALUE && !s_ws(c)) {
        p->key[p->key_len] = 0;
        p->cur = strcmp(p->key, "name") == 0                                             ? 1
                 : strcmp(p->key, "arguments") == 0 || strcmp(p->key, "parameters") == 0 ? 2
                                                                                         : 3;
        p->vstart = i;
        if (p->cur == 2) {
            p->has_args = true;
            p->args_at = i;
        }
    }
    js_feed(js, c);
    if (js->st == J_ERR) {
        return -1;
    }
    /* the depth-1 value ended: an atom at its terminator, a string or container as it closes */
    bool ended = p->cur && ((d0 == 1 && before == J_ATOM && js->st != J_ATOM) ||
                            (js->st == J_AFTER && js->depth == 1 &&
                             !(d0 == 1 && (before == J_AFTER || before == J_ATOM))));
    if (ended) {
        size_t end = before == J_ATOM && d0 == 1 ? i : i + 1; /* a depth-1 atom's terminator */
        if (p->cur == 1 && !p->named && s_buf(p)[p->vstart] == '"') {
            if (s_name(p, s_buf(p) + p->vstart + 1, end - p->vstart - 2) != 0) {
                return -1;
            }
        } else if (p->cur == 2) {
            p->args_end = end;
        }
        p->cur = 0;
    }
    return 0;
}

static int s_step_obj(tb_tool_parser_t *p)
{
    while (p->at < p->in.len) {
        size_t i = p->at++;
        if (p->at - p->obj_start > MAX_CALL || s_obj_byte(p, i) != 0) {
            return s_fail(p);
        }
        if (p->js.st == J_DONE) {
            return s_obj_done(p);
        }
    }
    int rc = s_stream_args(p, p->args_end ? p->args_end : p->at);
    return rc ? rc : (p->eof ? s_fail(p) : 0);
}

/* A bare arguments value (after a bare name): an object or array. */
static int s_step_args(tb_tool_parser_t *p)
{
    if (p->js.st == J_VALUE && p->js.depth == 0 && !p->has_args) {
        if (!s_skip_ws(p)) {
            return p->eof ? s_fail(p) : 0;
        }
        char c = s_buf(p)[p->at];
        if (c != '{' && c != '[') {
            return s_fail(p);
        }
        p->has_args = true;
        p->args_at = p->obj_start = p->at;
    }
    while (p->at < p->in.len) {
        js_feed(&p->js, s_buf(p)[p->at++]);
        if (p->js.st == J_ERR || p->at - p->obj_start > MAX_CALL) {
            return s_fail(p);
        }
        if (p->js.st == J_DONE) {
            p->args_end = p->at;
            json_error_t je;
            json_t *a = json_loadb(s_buf(p) + p->args_at, p->args_end - p->args_at, 0, &je);
            bool ok = json_is_object(a);
            json_decref(a);
            if (!ok) {
                return s_fail(p);
            }
            int rc = s_complete(p, s_buf(p) + p->args_at, p->args_end - p->args_at, true);
            p->st = ST_AFTER_ARGS;
            return rc;
        }
    }
    int rc = s_stream_args(p, p->at);
    return rc ? rc : (p->eof ? s_fail(p) : 0);
}

/* A bare name up to `lit`. */
static int s_step_name(tb_tool_parser_t *p)
{
    const char *hit = memmem(s_buf(p) + p->at, s_left(p), p->lit, strlen(p->lit));
    if (!hit) {
        return s_left(p) > MAX_NAME + strlen(p->lit) || p->eof ? s_fail(p) : 0;
    }
    size_t n = (size_t)(hit - (s_buf(p) + p->at));
    const char *call_id = memmem(s_buf(p) + p->at, n, "[CALL_ID]",
                                 9); /* mistral: NAME[CALL_ID]ID */
    size_t name_len = call_id ? (size_t)(call_id - (s_buf(p) + p->at)) : n;
    if (s_name(p, s_buf(p) + p->at, name_len) != 0) {
        return s_fail(p);
    }
    p->at += n + strlen(p->lit);
    s_begin_json(p, ST_ARGS);
    return 0;
}

/* ---- the formats' structure ---- */

/* Where calls start in content: the earliest marker, or -1; *hold: bytes at the end that could
 * start one. */
static long s_find_start(const tb_tool_parser_t *p, size_t *hold)
{
    static const char *const ds[] = {DS_CALLS_BEGIN, DS_CALL_BEGIN, NULL};
    const char *one[] = {tb_tool_format_marker(p->fmt), NULL};
    const char *const *m = p->fmt == TB_TOOL_FORMAT_DEEPSEEK ? ds : one;
    const char *s = s_buf(p) + p->at;
    size_t left = s_left(p);
    long best = -1;
    *hold = 0;
    for (size_t k = 0; m[k]; k++) {
        size_t n = strlen(m[k]);
        const char *hit = memmem(s, left, m[k], n);
        if (hit && (best < 0 || hit - s < best)) {
            best = hit - s;
        }
        for (size_t h = n - 1; h > *hold && !hit; h--) {
            if (h <= left && memcmp(s + left - h, m[k], h) == 0) {
                *hold = h;
                break;
            }
        }
    }
    return best;
}

/* Content, until calls start. */
static int s_step_text(tb_tool_parser_t *p)
{
    if (p->fmt == TB_TOOL_FORMAT_LLAMA3) {
        if (p->text_seen || (!s_skip_ws(p) && p->eof)) {
            p->text_seen = true;
            int rc = s_content(p, s_buf(p) + p->at, s_left(p));
            p->at = p->in.len;
            return rc;
        }
        if (p->at == p->in.len) {
            return 0;
        }
        s_begin_call(p, p->at);
        int t = s_lit(p, PY_TAG);
        if (t == 0) {
            return 0;
        }
        s_skip_ws(p);
        if (p->at < p->in.len && s_buf(p)[p->at] == '{') {
            s_begin_json(p, ST_OBJ);
            return 0;
        }
        if (p->at == p->in.len && !p->eof) {
            return 0; /* the tag arrived, its call not yet */
        }
        p->text_seen = true;
        p->at = p->call_start;
        return 0;
    }
    size_t hold;
    long k = s_find_start(p, &hold);
    size_t upto = k >= 0 ? (size_t)k : s_left(p) - (p->eof ? 0 : hold);
    int rc = s_content(p, s_buf(p) + p->at, upto);
    p->at += upto;
    if (rc != 0 || k < 0) {
        return rc;
    }
    s_begin_call(p, p->at);
    p->seq_calls = 0;
    if (p->fmt == TB_TOOL_FORMAT_HERMES) {
        p->at += strlen("<tool_call>");
        p->st = ST_LIT;
        p->lit = "{";
        p->next = ST_OBJ;
    } else if (p->fmt == TB_TOOL_FORMAT_MISTRAL) {
        p->at += strlen("[TOOL_CALLS]");
        p->st = ST_MISTRAL_OPEN;
    } else {
        p->st = ST_DS_AFTER; /* the markers are read there */
    }
    return 0;
}

/* ST_LIT: whitespace, then p->lit, then p->next (an object's '{' is kept for it). */
static int s_step_lit(tb_tool_parser_t *p)
{
    if (!s_skip_ws(p)) {
        return p->eof ? s_fail(p) : 0;
    }
    bool brace = strcmp(p->lit, "{") == 0;
    int t = s_lit(p, p->lit);
    if (t < 0) {
        return s_fail(p);
    }
    if (t == 1) {
        if (brace) {
            p->at--;
        }
        if (p->next == ST_OBJ || p->next == ST_ARGS) {
            s_begin_json(p, p->next);
        } else {
            p->st = p->next;
        }
    }
    return 0;
}

static void s_expect(tb_tool_parser_t *p, const char *lit, st_t next)
{
    p->st = ST_LIT;
    p->lit = lit;
    p->next = next;
}

/* After a call object: what each format allows next. */
static int s_step_after_obj(tb_tool_parser_t *p)
{
    switch (p->fmt) {
    case TB_TOOL_FORMAT_HERMES:
        s_expect(p, "</tool_call>", ST_WS_TEXT);
        return 0;
    case TB_TOOL_FORMAT_LLAMA3:
        if (!s_skip_ws(p)) {
            if (p->eof) {
                p->st = ST_TEXT;
            }
            return 0;
        }
        if (s_buf(p)[p->at] == ';') {
            p->at++;
            s_begin_call(p, p->at);
            s_expect(p, "{", ST_OBJ);
        } else {
            p->st = ST_TEXT; /* text after the calls is content */
        }
        return 0;
    default: /* mistral's array */
        if (!s_skip_ws(p)) {
            return p->eof ? (p->st = ST_TEXT, 0) : 0;
        }
        if (s_buf(p)[p->at] == ',') {
            p->at++;
            s_begin_call(p, p->at);
            s_expect(p, "{", ST_OBJ);
        } else if (s_buf(p)[p->at] == ']') {
            p->at++;
            p->st = ST_WS_TEXT;
        } else {
            s_begin_call(p, p->at);
            return s_fail(p);
        }
        return 0;
    }
}

static int s_step_mistral_open(tb_tool_parser_t *p)
{
    if (!s_skip_ws(p)) {
        return p->eof ? s_fail(p) : 0;
    }
    if (s_buf(p)[p->at] == '[') {
        p->at++;
        s_expect(p, "{", ST_OBJ);
    } else {
        p->st = ST_NAME;
        p->lit = "[ARGS]";
    }
    return 0;
}

/* DeepSeek: "function" <sep> NAME "\n" ```json ARGS ``` or NAME <sep> ARGS. */
static int s_step_ds_pre(tb_tool_parser_t *p)
{
    const char *hit = memmem(s_buf(p) + p->at, s_left(p), DS_SEP, strlen(DS_SEP));
    if (!hit) {
        return s_left(p) > MAX_NAME + strlen(DS_SEP) || p->eof ? s_fail(p) : 0;
    }
    size_t n = (size_t)(hit - (s_buf(p) + p->at));
    bool typed = n == 8 && memcmp(s_buf(p) + p->at, "function", 8) == 0;
    if (typed) {
        p->at += n + strlen(DS_SEP);
        p->st = ST_NAME;
        p->lit = "\n";
        p->ds_fenced = true;
        return 0;
    }
    p->ds_fenced = false;
    if (s_name(p, s_buf(p) + p->at, n) != 0) {
        return s_fail(p);
    }
    p->at += n + strlen(DS_SEP);
    s_begin_json(p, ST_ARGS);
    return 0;
}

/* DeepSeek between calls: <｜tool▁calls▁begin｜>, <｜tool▁call▁begin｜>, <｜tool▁calls▁end｜>. */
static int s_step_ds_after(tb_tool_parser_t *p)
{
    if (!s_skip_ws(p)) {
        return !p->eof ? 0 : p->seq_calls ? (p->st = ST_TEXT, 0) : s_fail(p);
    }
    const char *const next[] = {DS_CALLS_BEGIN, DS_CALL_BEGIN, DS_CALLS_END};
    for (int k = 0; k < 3; k++) {
        size_t at = p->at;
        int t = s_lit(p, next[k]);
        if (t == 0) {
            return 0;
        }
        if (t == 1 && k == 1) {
            /* the first call's raw text starts at the markup that opened the calls */
            s_begin_call(p, p->seq_calls ? at : p->call_start);
            p->st = ST_DS_PRE;
            return 0;
        }
        if (t == 1 && k == 2 && !p->seq_calls) {
            return s_fail(p); /* markup without a call is not a call */
        }
        if (t == 1) {
            p->st = k == 0 ? ST_DS_AFTER : ST_WS_TEXT;
            return 0;
        }
    }
    if (!p->seq_calls) {
        return s_fail(p);
    }
    p->st = ST_TEXT;
    return 0;
}

static int s_step_after_args(tb_tool_parser_t *p)
{
    if (p->fmt == TB_TOOL_FORMAT_MISTRAL) {
        p->st = ST_WS_TEXT;
    } else if (p->ds_fenced) {
        p->ds_fenced = false;
        s_expect(p, "```", ST_AFTER_ARGS);
    } else {
        s_expect(p, DS_CALL_END, ST_DS_AFTER);
    }
    return 0;
}

/* One step; *moved says whether it consumed text or changed state. */
static int s_step(tb_tool_parser_t *p, bool *moved)
{
    size_t at = p->at;
    st_t st = p->st;
    int rc = 0;
    switch (p->st) {
    case ST_TEXT:
        rc = s_step_text(p);
        break;
    case ST_WS_TEXT:
        if (s_skip_ws(p) || p->eof) {
            p->st = ST_TEXT;
        }
        break;
    case ST_OBJ:
        rc = s_step_obj(p);
        break;
    case ST_NAME:
        if (p->fmt == TB_TOOL_FORMAT_DEEPSEEK) {
            rc = s_step_name(p);
            if (rc == 0 && p->st == ST_ARGS) {
                s_expect(p, "```json", ST_ARGS);
            }
        } else {
            rc = s_step_name(p);
        }
        break;
    case ST_ARGS:
        rc = s_step_args(p);
        break;
    case ST_LIT:
        rc = s_step_lit(p);
        break;
    case ST_AFTER_OBJ:
        rc = s_step_after_obj(p);
        break;
    case ST_AFTER_ARGS:
        rc = s_step_after_args(p);
        break;
    case ST_MISTRAL_OPEN:
        rc = s_step_mistral_open(p);
        break;
    case ST_DS_PRE:
        rc = s_step_ds_pre(p);
        break;
    case ST_DS_AFTER:
        rc = s_step_ds_after(p);
        break;
    }
    *moved = p->at != at || p->st != st;
    return rc;
}

static int s_run(tb_tool_parser_t *p)
{
    bool moved = true;
    int rc = 0;
    while (rc == 0 && moved) {
        rc = s_step(p, &moved);
    }
    if (rc == 0 && (p->st == ST_TEXT || p->st == ST_WS_TEXT) && p->at > 0) {
        /* nothing before `at` is needed any more */
        memmove(p->in.data, p->in.data + p->at, s_left(p));
        p->in.len -= p->at;
        p->in.data[p->in.len] = 0;
        p->at = 0;
    }
    return rc;
}

int tb_tool_parser_push(tb_tool_parser_t *p, const char *text, size_t len)
{
    if (p->eof || len == 0) {
        return 0;
    }
    int rc = tb_buf_append(&p->in, text, len);
    return rc ? rc : s_run(p);
}

int tb_tool_parser_finish(tb_tool_parser_t *p)
{
    if (p->eof) {
        return 0;
    }
    p->eof = true;
    int rc = s_run(p);
    if (rc == 0 && p->st != ST_TEXT && p->st != ST_WS_TEXT) {
        rc = s_fail(p); /* cut inside a call */
        rc = rc ? rc : s_run(p);
    }
    return rc;
}
