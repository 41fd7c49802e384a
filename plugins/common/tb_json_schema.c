/*
 * tb_json_schema.c - JSON schema to GBNF text: every subschema becomes an inline expression
 * (so each use gets its own grammar rules, which keeps token masks cheap: tb_grammar_cache.h);
 * named rules only where needed: objects with optional properties, $ref targets (recursion) and
 * the generic JSON value.
 */
#include "tb_json_schema.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"

#define MAX_GBNF (4u << 20)
#define MAX_DEPTH 64

/* Whitespace between tokens: bounded, so that a model cannot pad forever. */
#define WS "[ \\t\\n]{0,20}"
#define CHAR "( [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} ) )"
#define INT "\"-\"? ( \"0\" | [1-9] [0-9]{0,15} )"
#define FRAC "( \".\" [0-9]{1,15} )? ( [eE] [-+]? [0-9]{1,2} )?"

struct sbuf {
    char *p;
    size_t n, cap;
};

struct gen {
    struct sbuf rules;  /* named rules, appended after root */
    const json_t *root; /* for $ref */
    json_t *refs;       /* $ref string -> rule name */
    bool generic;       /* the json-* rules are needed */
    int n_rules;
    char path[256];
    char *err;
    size_t err_len;
};

static int s_put(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int s_put(struct sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            return TB_EINVAL;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return 0;
        }
        if (b->n + (size_t)k >= MAX_GBNF) {
            return TB_E2BIG;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap <= b->n + (size_t)k) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            return TB_ENOMEM;
        }
        b->p = p;
        b->cap = cap;
    }
}

static int s_fail(struct gen *g, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_fail(struct gen *g, int rc, const char *fmt, ...)
{
    if (g->err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(g->err, g->err_len, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < g->err_len) {
            snprintf(g->err + k, g->err_len - (size_t)k, " at '%s'", g->path[0] ? g->path : "/");
        }
    }
    return rc;
}

/* A GBNF literal spelling bytes s[0..n). */
static int s_lit(struct sbuf *b, const char *s, size_t n)
{
    int rc = s_put(b, "\"");
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            rc = s_put(b, "\\%c", c);
        } else if (c < 0x20 || c == 0x7F) {
            rc = s_put(b, "\\x%02X", c);
        } else {
            rc = s_put(b, "%c", c);
        }
    }
    return rc != 0 ? rc : s_put(b, "\"");
}

/* A literal spelling the JSON text of v. */
static int s_json_lit(struct sbuf *b, const json_t *v)
{
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!t) {
        return TB_ENOMEM;
    }
    int rc = s_lit(b, t, strlen(t));
    free(t);
    return rc;
}

static const char *const s_annotations[] = {"title",    "description", "$schema",  "$id",
                                            "$comment", "default",     "examples", "deprecated",
                                            "readOnly", "writeOnly",   "$defs",    "definitions",
                                            "strict",   NULL};

static const char *const s_supported[] = {
    "type",      "properties", "required", "additionalProperties",
    "items",     "minItems",   "maxItems", "enum",
    "const",     "anyOf",      "format",   "minLength",
    "maxLength", "$ref",       NULL};

static bool s_in(const char *const *list, const char *k)
{
    for (size_t i = 0; list[i]; i++) {
        if (strcmp(list[i], k) == 0) {
            return true;
        }
    }
    return false;
}

/* Refuses keywords we do not implement; with `only` set, also those outside it. */
static int s_check_keys(struct gen *g, const json_t *schema, const char *const *only,
                        const char *with)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)schema, k, v)
    {
        if (s_in(s_annotations, k)) {
            continue;
        }
        if (!s_in(s_supported, k)) {
            return s_fail(g, TB_ENOTSUP, "unsupported JSON schema keyword '%s'", k);
        }
        if (only && !s_in(only, k)) {
            return s_fail(g, TB_ENOTSUP, "unsupported JSON schema keyword '%s' beside '%s'", k,
                          with);
        }
    }
    return 0;
}

static int s_value(struct gen *g, const json_t *schema, struct sbuf *out, int depth);

/* Runs s_value with "/seg" appended to the error path. */
static int s_sub(struct gen *g, const json_t *schema, struct sbuf *out, int depth,
                 const char *seg)
{
    size_t n = strlen(g->path);
    snprintf(g->path + n, sizeof(g->path) - n, "/%s", seg);
    int rc = s_value(g, schema, out, depth + 1);
    if (rc == 0) {
        g->path[n] = 0;
    }
    return rc;
}

static int s_generic(struct gen *g, struct sbuf *out)
{
    g->generic = true;
    return s_put(out, "json-value");
}

/* A non-negative integer keyword; `def` when absent. */
static int s_count(struct gen *g, const json_t *schema, const char *key, int64_t def,
                   int64_t *out)
{
    const json_t *v = json_object_get(schema, key);
    *out = def;
    if (!v) {
        return 0;
    }
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v);
    if (!json_is_number(v) || d < 0 || d != (double)(int64_t)d || d > 100000) {
        return s_fail(g, TB_EINVAL, "invalid '%s' (a count from 0 to 100000 expected)", key);
    }
    *out = (int64_t)d;
    return 0;
}

/* "{a,b}" / "{a,}" repetition bounds text. */
static void s_bounds(char *buf, size_t n, int64_t lo, int64_t hi)
{
    if (hi < 0) {
        snprintf(buf, n, "{%lld,}", (long long)lo);
    } else {
        snprintf(buf, n, "{%lld,%lld}", (long long)lo, (long long)hi);
    }
}

#define DATE                                                                                     \
    "[1-9] [0-9]{3} \"-\" ( \"02-\" ( \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8] ) | ( \"0\" "      \
    "[13-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" ) | ( \"0\" [13578] | "    \
    "\"1\" [02] ) \"-31\" )"
#define TIME                                                                                     \
    "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,6} )? "    \
    "( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )"
#define OCTET "( \"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9]? [0-9] )"

static int s_format(struct gen *g, const char *f, struct sbuf *out)
{
    if (strcmp(f, "date") == 0) {
        return s_put(out, "\"\\\"\" " DATE " \"\\\"\"");
    }
    if (strcmp(f, "time") == 0) {
        return s_put(out, "\"\\\"\" " TIME " \"\\\"\"");
    }
    if (strcmp(f, "date-time") == 0) {
        return s_put(out, "\"\\\"\" " DATE " \"T\" " TIME " \"\\\"\"");
    }
    if (strcmp(f, "uuid") == 0) {
        return s_put(out, "\"\\\"\" [0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" "
                          "[0-9a-f]{4} \"-\" [0-9a-f]{12} \"\\\"\"");
    }
    if (strcmp(f, "ipv4") == 0) {
        return s_put(out, "\"\\\"\" " OCTET " \".\" " OCTET " \".\" " OCTET " \".\" " OCTET
                          " \"\\\"\"");
    }
    return s_fail(g, TB_ENOTSUP, "unsupported string format '%s'", f);
}

static int s_string(struct gen *g, const json_t *schema, struct sbuf *out)
{
    const json_t *f = json_object_get(schema, "format");
    int64_t lo = 0, hi = -1;
    int rc = s_count(g, schema, "minLength", 0, &lo);
    rc = rc != 0 ? rc : s_count(g, schema, "maxLength", -1, &hi);
    if (rc != 0) {
        return rc;
    }
    if (f) {
        if (!json_is_string(f)) {
            return s_fail(g, TB_EINVAL, "invalid 'format'");
        }
        if (lo > 0 || hi >= 0) {
            return s_fail(g, TB_ENOTSUP, "unsupported JSON schema keyword '%s' beside 'format'",
                          lo > 0 ? "minLength" : "maxLength");
        }
        return s_format(g, json_string_value(f), out);
    }
    if (hi >= 0 && hi < lo) {
        return s_fail(g, TB_EINVAL, "'maxLength' below 'minLength'");
    }
    char b[64];
    s_bounds(b, sizeof(b), lo, hi);
    return s_put(out, "( \"\\\"\" " CHAR "%s \"\\\"\" )", lo == 0 && hi < 0 ? "*" : b);
}

static bool s_type_matches(const char *t, const json_t *v)
{
    if (strcmp(t, "integer") == 0) {
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == (double)(int64_t)json_real_value(v));
    }
    return (strcmp(t, "null") == 0 && json_is_null(v)) ||
           (strcmp(t, "boolean") == 0 && json_is_boolean(v)) ||
           (strcmp(t, "number") == 0 && json_is_number(v)) ||
           (strcmp(t, "string") == 0 && json_is_string(v)) ||
           (strcmp(t, "object") == 0 && json_is_object(v)) ||
           (strcmp(t, "array") == 0 && json_is_array(v));
}

/* Whether v has one of the schema's types (no "type": any). */
static bool s_value_typed(const json_t *type, const json_t *v)
{
    if (json_is_string(type)) {
        return s_type_matches(json_string_value(type), v);
    }
    size_t i;
    json_t *t;
    json_array_foreach(type, i, t)
    {
        if (json_is_string(t) && s_type_matches(json_string_value(t), v)) {
            return true;
        }
    }
    return !type;
}

/* enum / const: the listed values (those of the schema's type) as literals. */
static int s_enum(struct gen *g, const json_t *schema, struct sbuf *out)
{
    static const char *const only[] = {"enum", "const", "type", NULL};
    const json_t *c = json_object_get(schema, "const"), *e = json_object_get(schema, "enum");
    const json_t *type = json_object_get(schema, "type");
    int rc = s_check_keys(g, schema, only, c ? "const" : "enum");
    if (rc != 0) {
        return rc;
    }
    if (e && (!json_is_array(e) || json_array_size(e) == 0)) {
        return s_fail(g, TB_EINVAL, "invalid 'enum' (a non-empty array expected)");
    }
    size_t n = 0, i;
    json_t *v;
    rc = s_put(out, "(");
    json_array_foreach(e, i, v)
    {
        if (rc == 0 && (!c || json_equal(c, v)) && s_value_typed(type, v)) {
            rc = s_put(out, "%s", n++ ? " | " : " ");
            rc = rc != 0 ? rc : s_json_lit(out, v);
        }
    }
    if (rc == 0 && c && !e && s_value_typed(type, c)) {
        rc = s_put(out, " ");
        rc = rc != 0 ? rc : s_json_lit(out, c);
        n++;
    }
    if (rc == 0 && n == 0) {
        return s_fail(g, TB_EINVAL, "no value satisfies 'enum'/'const' and 'type'");
    }
    return rc != 0 ? rc : s_put(out, " )");
}

/* One "KEY" WS ":" WS VALUE text per property, in schema order. */
static int s_members(struct gen *g, const json_t *props, struct sbuf *kv, int depth)
{
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach((json_t *)props, k, v)
    {
        json_t *key = json_string(k);
        int rc = key ? s_json_lit(&kv[i], key) : TB_ENOMEM;
        json_decref(key);
        rc = rc != 0 ? rc : s_put(&kv[i], " " WS " \":\" " WS " ");
        char seg[128];
        snprintf(seg, sizeof(seg), "properties/%.100s", k);
        rc = rc != 0 ? rc : s_sub(g, v, &kv[i], depth, seg);
        if (rc != 0) {
            return rc;
        }
        i++;
    }
    return 0;
}

static bool s_is_required(const json_t *req, const char *k)
{
    size_t j;
    json_t *r;
    json_array_foreach(req, j, r)
    {
        if (strcmp(json_string_value(r), k) == 0) {
            return true;
        }
    }
    return false;
}

/* Optional properties: a chain of rules F_i (nothing written yet), A_i (after a member) and B_i
 * (member i then A_{i+1}), all tail-called so the chain has one continuation. */
static int s_member_chain(struct gen *g, const json_t *props, const json_t *req, struct sbuf *kv,
                          struct sbuf *out)
{
    int id = ++g->n_rules, rc = 0;
    size_t n = json_object_size(props), i = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)props, k, v)
    {
        (void)v;
        bool required = s_is_required(req, k);
        rc = s_put(&g->rules, "o%d-b%zu ::= %s o%d-a%zu\n", id, i, kv[i].p, id, i + 1);
        rc = rc != 0 ? rc : s_put(&g->rules, "o%d-f%zu ::= o%d-b%zu", id, i, id, i);
        if (rc == 0 && !required) {
            rc = s_put(&g->rules, " | o%d-f%zu", id, i + 1);
        }
        rc = rc != 0
                 ? rc
                 : s_put(&g->rules, "\no%d-a%zu ::= " WS " \",\" " WS " o%d-b%zu", id, i, id, i);
        if (rc == 0 && !required) {
            rc = s_put(&g->rules, " | o%d-a%zu", id, i + 1);
        }
        rc = rc != 0 ? rc : s_put(&g->rules, "\n");
        if (rc != 0) {
            return rc;
        }
        i++;
    }
    rc = s_put(&g->rules, "o%d-f%zu ::= \"\"\no%d-a%zu ::= \"\"\n", id, n, id, n);
    return rc != 0 ? rc : s_put(out, "( \"{\" " WS " o%d-f0 " WS " \"}\" )", id);
}

static int s_map(struct gen *g, const json_t *schema, struct sbuf *out, int depth)
{
    const json_t *addl = json_object_get(schema, "additionalProperties");
    if (json_is_false(addl)) {
        return s_put(out, "( \"{\" " WS " \"}\" )");
    }
    if (addl && !json_is_true(addl) && !json_is_object(addl)) {
        return s_fail(g, TB_EINVAL, "invalid 'additionalProperties'");
    }
    struct sbuf v = {0};
    int rc = json_is_object(addl) ? s_sub(g, addl, &v, depth, "additionalProperties")
                                  : s_generic(g, &v);
    const char *kv = "\"\\\"\" " CHAR "* \"\\\"\" " WS " \":\" " WS;
    rc = rc != 0
             ? rc
             : s_put(out,
                     "( \"{\" " WS " ( %s %s ( " WS " \",\" " WS " %s %s )* )? " WS " \"}\" )",
                     kv, v.p, kv, v.p);
    free(v.p);
    return rc;
}

static int s_object(struct gen *g, const json_t *schema, struct sbuf *out, int depth)
{
    const json_t *props = json_object_get(schema, "properties");
    const json_t *req = json_object_get(schema, "required");
    if ((props && !json_is_object(props)) || (req && !json_is_array(req))) {
        return s_fail(g, TB_EINVAL, "invalid '%s'",
                      props && !json_is_object(props) ? "properties" : "required");
    }
    size_t j;
    json_t *r;
    json_array_foreach(req, j, r)
    {
        if (!json_is_string(r)) {
            return s_fail(g, TB_EINVAL, "invalid 'required' (names expected)");
        }
        if (!json_object_get(props, json_string_value(r))) {
            return s_fail(g, TB_ENOTSUP,
                          "unsupported 'required' property '%s' not in 'properties'",
                          json_string_value(r));
        }
    }
    size_t n = json_object_size(props);
    if (n == 0) {
        return s_map(g, schema, out, depth);
    }
    struct sbuf *kv = calloc(n, sizeof(*kv));
    int rc = kv ? s_members(g, props, kv, depth) : TB_ENOMEM;
    size_t n_req = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)props, k, v)
    {
        n_req += s_is_required(req, k);
    }
    if (rc == 0 && n_req == n) { /* all required: inline */
        rc = s_put(out, "( \"{\" " WS);
        for (size_t i = 0; i < n && rc == 0; i++) {
            rc = s_put(out, " %s%s", i ? WS " \",\" " WS " " : "", kv[i].p);
        }
        rc = rc != 0 ? rc : s_put(out, " " WS " \"}\" )");
    } else if (rc == 0) {
        rc = s_member_chain(g, props, req, kv, out);
    }
    for (size_t i = 0; kv && i < n; i++) {
        free(kv[i].p);
    }
    free(kv);
    return rc;
}

static int s_array(struct gen *g, const json_t *schema, struct sbuf *out, int depth)
{
    const json_t *items = json_object_get(schema, "items");
    int64_t lo = 0, hi = -1;
    int rc = s_count(g, schema, "minItems", 0, &lo);
    rc = rc != 0 ? rc : s_count(g, schema, "maxItems", -1, &hi);
    if (rc == 0 && hi >= 0 && hi < lo) {
        rc = s_fail(g, TB_EINVAL, "'maxItems' below 'minItems'");
    }
    if (rc == 0 && json_is_array(items)) {
        rc = s_fail(g, TB_ENOTSUP, "unsupported JSON schema keyword 'items' as an array");
    }
    if (rc != 0) {
        return rc;
    }
    if (hi == 0) {
        return s_put(out, "( \"[\" " WS " \"]\" )");
    }
    struct sbuf it = {0};
    rc = items ? s_sub(g, items, &it, depth, "items") : s_generic(g, &it);
    if (rc == 0 && (hi > 1 || lo > 2)) {
        /* bounded: the item appears in several copies; one shared rule keeps the grammar (and
         * the cache's positions) from growing with the bounds */
        int id = ++g->n_rules;
        rc = s_put(&g->rules, "i%d ::= %s\n", id, it.p);
        it.n = 0;
        rc = rc != 0 ? rc : s_put(&it, "i%d", id);
    }
    char b[64];
    s_bounds(b, sizeof(b), lo > 0 ? lo - 1 : 0, hi < 0 ? -1 : hi - 1);
    if (rc == 0) {
        rc = s_put(out, "( \"[\" " WS " %s%s ( " WS " \",\" " WS " %s )%s %s" WS " \"]\" )",
                   lo == 0 ? "( " : "", it.p, it.p, b, lo == 0 ? ")? " : "");
    }
    free(it.p);
    return rc;
}

static int s_ref(struct gen *g, const json_t *schema, struct sbuf *out, int depth)
{
    static const char *const only[] = {"$ref", NULL};
    const json_t *ref = json_object_get(schema, "$ref");
    int rc = s_check_keys(g, schema, only, "$ref");
    if (rc != 0) {
        return rc;
    }
    const char *r = json_string_value(ref);
    const json_t *target = NULL;
    if (r && strcmp(r, "#") == 0) {
        target = g->root;
    } else if (r && strncmp(r, "#/$defs/", 8) == 0 && !strpbrk(r + 8, "/~")) {
        target = json_object_get(json_object_get(g->root, "$defs"), r + 8);
    } else if (r && strncmp(r, "#/definitions/", 14) == 0 && !strpbrk(r + 14, "/~")) {
        target = json_object_get(json_object_get(g->root, "definitions"), r + 14);
    }
    if (!target) {
        return s_fail(g, r ? TB_ENOTSUP : TB_EINVAL,
                      "unsupported '$ref' '%s' (a local "
                      "#/$defs/NAME, #/definitions/NAME or # expected)",
                      r ? r : "");
    }
    const json_t *name = json_object_get(g->refs, r);
    if (name) {
        return s_put(out, "%s", json_string_value(name));
    }
    char buf[32];
    snprintf(buf, sizeof(buf), "ref%d", ++g->n_rules);
    if (json_object_set_new(g->refs, r, json_string(buf)) != 0) {
        return TB_ENOMEM;
    }
    struct sbuf body = {0};
    rc = s_sub(g, target, &body, depth, r);
    rc = rc != 0 ? rc : s_put(&g->rules, "%s ::= %s\n", buf, body.p);
    free(body.p);
    return rc != 0 ? rc : s_put(out, "%s", buf);
}

static int s_any_of(struct gen *g, const json_t *schema, struct sbuf *out, int depth)
{
    static const char *const only[] = {"anyOf", NULL};
    const json_t *a = json_object_get(schema, "anyOf");
    int rc = s_check_keys(g, schema, only, "anyOf");
    if (rc == 0 && (!json_is_array(a) || json_array_size(a) == 0)) {
        rc = s_fail(g, TB_EINVAL, "invalid 'anyOf' (a non-empty array expected)");
    }
    rc = rc != 0 ? rc : s_put(out, "(");
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        char seg[32];
        snprintf(seg, sizeof(seg), "anyOf/%zu", i);
        rc = rc != 0 ? rc : s_put(out, "%s", i ? " | " : " ");
        rc = rc != 0 ? rc : s_sub(g, v, out, depth, seg);
    }
    return rc != 0 ? rc : s_put(out, " )");
}

static int s_typed(struct gen *g, const json_t *schema, const char *t, struct sbuf *out,
                   int depth)
{
    if (strcmp(t, "null") == 0) {
        return s_put(out, "\"null\"");
    }
    if (strcmp(t, "boolean") == 0) {
        return s_put(out, "( \"true\" | \"false\" )");
    }
    if (strcmp(t, "integer") == 0) {
        return s_put(out, "( " INT " )");
    }
    if (strcmp(t, "number") == 0) {
        return s_put(out, "( " INT " " FRAC " )");
    }
    if (strcmp(t, "string") == 0) {
        return s_string(g, schema, out);
    }
    if (strcmp(t, "object") == 0) {
        return s_object(g, schema, out, depth);
    }
    if (strcmp(t, "array") == 0) {
        return s_array(g, schema, out, depth);
    }
    return s_fail(g, TB_EINVAL, "unknown type '%s'", t);
}

/* The type a schema without "type" constrains, from its keywords (NULL: any value). */
static const char *s_implied_type(const json_t *schema)
{
    static const char *const obj[] = {"properties", "required", "additionalProperties", NULL};
    static const char *const arr[] = {"items", "minItems", "maxItems", NULL};
    static const char *const str[] = {"format", "minLength", "maxLength", NULL};
    for (size_t i = 0; i < 3; i++) {
        if (json_object_get(schema, obj[i])) {
            return "object";
        }
        if (json_object_get(schema, arr[i])) {
            return "array";
        }
        if (json_object_get(schema, str[i])) {
            return "string";
        }
    }
    return NULL;
}

static int s_value(struct gen *g, const json_t *schema, struct sbuf *out, int depth)
{
    if (depth > MAX_DEPTH) {
        return s_fail(g, TB_EINVAL, "schema nests deeper than %d", MAX_DEPTH);
    }
    if (json_is_true(schema)) {
        return s_generic(g, out);
    }
    if (!json_is_object(schema)) {
        return s_fail(g, TB_EINVAL, "a schema must be an object or true");
    }
    int rc = s_check_keys(g, schema, NULL, NULL);
    if (rc != 0) {
        return rc;
    }
    if (json_object_get(schema, "$ref")) {
        return s_ref(g, schema, out, depth);
    }
    if (json_object_get(schema, "enum") || json_object_get(schema, "const")) {
        return s_enum(g, schema, out);
    }
    if (json_object_get(schema, "anyOf")) {
        return s_any_of(g, schema, out, depth);
    }
    const json_t *type = json_object_get(schema, "type");
    if (!type) {
        const char *t = s_implied_type(schema);
        return t ? s_typed(g, schema, t, out, depth) : s_generic(g, out);
    }
    if (json_is_string(type)) {
        return s_typed(g, schema, json_string_value(type), out, depth);
    }
    if (!json_is_array(type) || json_array_size(type) == 0) {
        return s_fail(g, TB_EINVAL, "invalid 'type'");
    }
    rc = s_put(out, "(");
    size_t i;
    json_t *t;
    json_array_foreach(type, i, t)
    {
        if (rc == 0 && !json_is_string(t)) {
            rc = s_fail(g, TB_EINVAL, "invalid 'type'");
        }
        rc = rc != 0 ? rc : s_put(out, "%s", i ? " | " : " ");
        rc = rc != 0 ? rc : s_typed(g, schema, json_string_value(t), out, depth);
    }
    return rc != 0 ? rc : s_put(out, " )");
}

static const char s_generic_rules[] =
    "json-value ::= json-object | json-array | json-string | json-number | \"true\" | "
    "\"false\" | \"null\"\n"
    "json-object ::= \"{\" " WS " ( json-key " WS " \":\" " WS " json-value ( " WS " \",\" " WS
    " json-key " WS " \":\" " WS " json-value )* )? " WS " \"}\"\n"
    "json-array ::= \"[\" " WS " ( json-value ( " WS " \",\" " WS " json-value )* )? " WS
    " \"]\"\n"
    "json-key ::= \"\\\"\" " CHAR "* \"\\\"\"\n"
    "json-string ::= \"\\\"\" " CHAR "* \"\\\"\"\n"
    "json-number ::= " INT " " FRAC "\n";

/* root ::= the expression `gen_root` writes, then the named rules. */
static int s_document(struct gen *g, struct sbuf *out,
                      int (*gen_root)(struct gen *, const void *, struct sbuf *), const void *arg,
                      char **gbnf, size_t *len)
{
    g->refs = json_object();
    int rc = g->refs ? s_put(out, "root ::= ") : TB_ENOMEM;
    rc = rc != 0 ? rc : gen_root(g, arg, out);
    rc = rc != 0 ? rc : s_put(out, "\n%s", g->rules.p ? g->rules.p : "");
    if (rc == 0 && g->generic) {
        rc = s_put(out, "%s", s_generic_rules);
    }
    json_decref(g->refs);
    free(g->rules.p);
    if (rc != 0) {
        if (rc == TB_E2BIG) {
            s_fail(g, rc, "grammar over %u bytes", MAX_GBNF);
        } else if (rc == TB_ENOMEM) {
            s_fail(g, rc, "out of memory");
        }
        free(out->p);
        return rc;
    }
    *gbnf = out->p;
    *len = out->n;
    return 0;
}

static int s_schema_root(struct gen *g, const void *schema, struct sbuf *out)
{
    return s_value(g, schema, out, 0);
}

int tb_json_schema_to_gbnf(const json_t *schema, char **gbnf, size_t *len, char *err,
                           size_t err_len)
{
    struct gen g = {.root = schema, .err = err, .err_len = err_len};
    struct sbuf out = {0};
    *gbnf = NULL;
    *len = 0;
    return s_document(&g, &out, s_schema_root, schema, gbnf, len);
}

static int s_object_root(struct gen *g, const void *arg, struct sbuf *out)
{
    (void)arg;
    g->generic = true;
    return s_put(out, "json-object");
}

int tb_json_schema_object_gbnf(char **gbnf, size_t *len)
{
    struct gen g = {0};
    struct sbuf out = {0};
    *gbnf = NULL;
    *len = 0;
    return s_document(&g, &out, s_object_root, NULL, gbnf, len);
}

/* One alternative per tool: {"name": "N", "arguments": ARGS}. */
static int s_tools_root(struct gen *g, const void *arg, struct sbuf *out)
{
    const json_t *tools = arg;
    size_t i;
    json_t *t;
    int rc = json_is_array(tools) && json_array_size(tools) > 0
                 ? s_put(out, "(")
                 : s_fail(g, TB_EINVAL, "tools must be a non-empty array");
    json_array_foreach(tools, i, t)
    {
        const json_t *f = json_object_get(t, "function") ? json_object_get(t, "function") : t;
        const json_t *name = json_object_get(f, "name"),
                     *params = json_object_get(f, "parameters");
        snprintf(g->path, sizeof(g->path), "/%zu", i);
        if (rc == 0 && !json_is_string(name)) {
            rc = s_fail(g, TB_EINVAL, "a tool without a string 'name'");
        }
        g->root = params;
        rc = rc != 0 ? rc
                     : s_put(out, "%s\"{\" " WS " \"\\\"name\\\"\" " WS " \":\" " WS " ",
                             i ? " | " : " ");
        rc = rc != 0 ? rc : s_json_lit(out, name);
        rc = rc != 0
                 ? rc
                 : s_put(out, " " WS " \",\" " WS " \"\\\"arguments\\\"\" " WS " \":\" " WS " ");
        if (rc == 0 && params) {
            rc = s_sub(g, params, out, 0, "parameters");
        } else if (rc == 0) {
            g->generic = true;
            rc = s_put(out, "json-object");
        }
        rc = rc != 0 ? rc : s_put(out, " " WS " \"}\"");
    }
    return rc != 0 ? rc : s_put(out, " )");
}

int tb_json_schema_tools_gbnf(const json_t *tools, char **gbnf, size_t *len, char *err,
                              size_t err_len)
{
    struct gen g = {.err = err, .err_len = err_len};
    struct sbuf out = {0};
    *gbnf = NULL;
    *len = 0;
    return s_document(&g, &out, s_tools_root, tools, gbnf, len);
}

int tb_json_schema_compile(const json_t *schema, tb_grammar_t **out, char *err, size_t err_len)
{
    char *gbnf = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = tb_json_schema_to_gbnf(schema, &gbnf, &len, err, err_len);
    if (rc == 0) {
        rc = tb_grammar_parse_gbnf(gbnf, len, out, err, err_len);
    }
    free(gbnf);
    return rc;
}
