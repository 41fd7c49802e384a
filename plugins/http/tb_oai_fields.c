/*
 * tb_oai_fields: the generic walker of a field table (see tb_oai_fields.h).  One function per
 * kind of rule: presence and defaults, JSON type, value (bounds, accepted values, length, items),
 * then keeping the value.
 */
#include "tb_oai_fields.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void tb_oai_error_invalid(struct tb_oai_error *e, const char *param, const char *fmt, ...)
{
    e->status = 400;
    e->type = "invalid_request_error";
    e->code = "invalid_value";
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

const char *tb_oai_json_type_name(const json_t *v)
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

int tb_oai_json_int(const json_t *v, int64_t *out)
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
    return 0;
}

const char *tb_oai_path_index(char *buf, size_t len, const char *param, size_t i)
{
    char digits[24];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + i % 10);
        i /= 10;
    } while (i > 0);
    size_t at = strlen(param);
    if (at + nd + 3 > len) {
        snprintf(buf, len, "%s", param); /* too long for `buf`: the path without the index */
        return buf;
    }
    memmove(buf, param, at);
    buf[at++] = '[';
    while (nd > 0) {
        buf[at++] = digits[--nd];
    }
    buf[at++] = ']';
    buf[at] = 0;
    return buf;
}

static void *s_at(void *base, size_t off)
{
    return (char *)base + off;
}

static bool s_accepts(unsigned types, const json_t *v)
{
    int64_t x;
    return ((types & TB_OAI_J_BOOL) && json_is_boolean(v)) ||
           ((types & TB_OAI_J_INT) && tb_oai_json_int(v, &x)) ||
           ((types & TB_OAI_J_NUM) && json_is_number(v)) ||
           ((types & TB_OAI_J_STR) && json_is_string(v)) ||
           ((types & TB_OAI_J_ARR) && json_is_array(v)) ||
           ((types & TB_OAI_J_OBJ) && json_is_object(v));
}

/* "a string or an array", from a type mask. */
static const char *s_types_words(unsigned types, char *buf, size_t len)
{
    static const char *const words[] = {"a boolean", "an integer", "a number",
                                        "a string",  "an array",   "an object"};
    size_t n = 0, at = 0;
    buf[0] = 0;
    for (unsigned b = 0; b < sizeof(words) / sizeof(words[0]); b++) {
        n += (types >> b) & 1u;
    }
    for (unsigned b = 0, k = 0; b < sizeof(words) / sizeof(words[0]) && at < len; b++) {
        if (!((types >> b) & 1u)) {
            continue;
        }
        const char *sep = k == 0 ? "" : k + 1 == n ? " or " : ", ";
        at += (size_t)snprintf(buf + at, len - at, "%s%s", sep, words[b]);
        k++;
    }
    return buf;
}

static void s_unsupported(struct tb_oai_error *e, const char *code, const char *param,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void s_unsupported(struct tb_oai_error *e, const char *code, const char *param,
                          const char *fmt, ...)
{
    tb_oai_error_invalid(e, param, "%s", "");
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

/* A field's path for `param` ("stream_options.include_usage"), built only when an error or a
 * decoder needs it: most requests never do, and building it per field costs more than checking
 * the field. */
struct path {
    const char *prefix;
    const char *name;
    char buf[128];
    bool built;
};

static const char *s_param(struct path *pp)
{
    if (!pp->built) {
        size_t a = strlen(pp->prefix), b = strlen(pp->name), at = 0;
        const size_t cap = sizeof(pp->buf) - 1;
        memcpy(pp->buf, pp->prefix, a < cap ? a : cap);
        at = a < cap ? a : cap;
        if (a > 0 && at < cap) {
            pp->buf[at++] = '.';
        }
        size_t n = b < cap - at ? b : cap - at;
        memcpy(pp->buf + at, pp->name, n);
        pp->buf[at + n] = 0;
        pp->built = true;
    }
    return pp->buf;
}

static void s_set_has(const struct tb_oai_field *f, void *base)
{
    if (f->has_off != 0) {
        *(bool *)s_at(base, f->has_off) = true;
    }
}

/* An absent (or null) field: required, default, or a fn that decides. */
static int s_absent(const struct tb_oai_field *f, tb_oai_api_t api, void *base, struct path *pp,
                    void *ctx, struct tb_oai_error *e)
{
    if (f->flags & TB_OAI_F_REQUIRED) {
        const char *param = s_param(pp);
        tb_oai_error_invalid(e, param, "'%s' is required", param);
        return -1;
    }
    if (f->keep == TB_OAI_KEEP_FN && (f->flags & TB_OAI_F_FN_ABSENT)) {
        return f->fn(f, NULL, base, s_param(pp), ctx, e);
    }
    if (!(f->dflt_apis & TB_OAI_FOR(api))) {
        return 0;
    }
    void *p = s_at(base, f->off);
    switch (f->keep) {
    case TB_OAI_KEEP_BOOL:
        *(bool *)p = f->dflt != 0;
        break;
    case TB_OAI_KEEP_INT:
        *(int64_t *)p = (int64_t)f->dflt;
        break;
    case TB_OAI_KEEP_NUM:
        *(double *)p = f->dflt;
        break;
    default:
        return 0; /* strings and fn fields have no numeric default */
    }
    s_set_has(f, base);
    return 0;
}

static int s_check_type(const struct tb_oai_field *f, json_t *v, struct path *pp,
                        struct tb_oai_error *e)
{
    if (s_accepts(f->types, v)) {
        return 0;
    }
    char words[96];
    const char *what = f->what ? f->what : s_types_words(f->types, words, sizeof(words));
    bool fractional = json_is_real(v) && (f->types & TB_OAI_J_INT);
    const char *param = s_param(pp);
    tb_oai_error_invalid(e, param, "'%s' must be %s, not %s", param, what,
                         fractional ? "a fractional number" : tb_oai_json_type_name(v));
    return -1;
}

static int s_check_int(const struct tb_oai_field *f, json_t *v, struct path *pp,
                       struct tb_oai_error *e)
{
    int64_t x = 0;
    tb_oai_json_int(v, &x);
    if ((f->ilo || f->ihi) && (x < f->ilo || x > f->ihi)) {
        const char *param = s_param(pp);
        tb_oai_error_invalid(e, param, "'%s' is %lld: it must be between %lld and %lld", param,
                             (long long)x, (long long)f->ilo, (long long)f->ihi);
        return -1;
    }
    if ((f->flags & TB_OAI_F_ONLY) && x != f->only) {
        const char *param = s_param(pp);
        s_unsupported(e, "unsupported_value", param, "'%s' is %lld: only %s=%lld is supported",
                      param, (long long)x, param, (long long)f->only);
        return -1;
    }
    return 0;
}

static int s_check_num(const struct tb_oai_field *f, json_t *v, struct path *pp,
                       struct tb_oai_error *e)
{
    double d = json_number_value(v);
    bool open = (f->flags & TB_OAI_F_LO_OPEN) != 0;
    if (!isfinite(d) || ((f->lo || f->hi) && ((open ? d <= f->lo : d < f->lo) || d > f->hi))) {
        const char *param = s_param(pp);
        tb_oai_error_invalid(e, param, "'%s' is %g: it must be %s %g and <= %g", param, d,
                             open ? ">" : ">=", f->lo, f->hi);
        return -1;
    }
    return 0;
}

static int s_check_str(const struct tb_oai_field *f, json_t *v, struct path *pp,
                       struct tb_oai_error *e)
{
    const char *s = json_string_value(v);
    if ((f->flags & TB_OAI_F_NONEMPTY) && !*s) {
        const char *param = s_param(pp);
        tb_oai_error_invalid(e, param, "'%s' must be a non-empty string", param);
        return -1;
    }
    if (!f->one_of) {
        return 0;
    }
    for (int k = 0; f->one_of[k]; k++) {
        if (strcmp(f->one_of[k], s) == 0) {
            return 0;
        }
    }
    char list[160];
    size_t at = 0;
    list[0] = 0;
    for (int k = 0; f->one_of[k] && at < sizeof(list); k++) {
        at += (size_t)snprintf(list + at, sizeof(list) - at, "%s'%s'", k ? ", " : "",
                               f->one_of[k]);
    }
    const char *param = s_param(pp);
    if (f->flags & TB_OAI_F_UNSUPPORTED) {
        s_unsupported(e, "unsupported_value", param,
                      "'%s' is '%.64s': this server supports only %s", param, s, list);
    } else {
        tb_oai_error_invalid(e, param, "'%s' is '%.64s': use one of %s", param, s, list);
    }
    return -1;
}

static int s_check_arr(const struct tb_oai_field *f, json_t *v, struct path *pp,
                       struct tb_oai_error *e)
{
    size_t n = json_array_size(v);
    if (f->ilo > 0 && n < (size_t)f->ilo) {
        const char *param = s_param(pp);
        tb_oai_error_invalid(e, param, "'%s' must hold at least %s", param,
                             f->ilo == 1 ? "one item" : "more items");
        return -1;
    }
    if (f->ihi > 0 && n > (size_t)f->ihi) {
        const char *param = s_param(pp);
        tb_oai_error_invalid(e, param, "'%s' has %zu items: at most %lld are allowed", param, n,
                             (long long)f->ihi);
        return -1;
    }
    for (size_t i = 0; f->items && i < n; i++) {
        json_t *item = json_array_get(v, i);
        if (!s_accepts(f->items, item)) {
            char ip[160], words[96];
            tb_oai_path_index(ip, sizeof(ip), s_param(pp), i);
            tb_oai_error_invalid(e, ip, "'%s' must be %s, not %s", ip,
                                 s_types_words(f->items, words, sizeof(words)),
                                 tb_oai_json_type_name(item));
            return -1;
        }
    }
    return 0;
}

static bool s_is_empty(json_t *v)
{
    return (json_is_string(v) && json_string_length(v) == 0) ||
           (json_is_array(v) && json_array_size(v) == 0) ||
           (json_is_object(v) && json_object_size(v) == 0);
}

/* The value's own rules, once its type is right. */
static int s_check_value(const struct tb_oai_field *f, json_t *v, void *base, struct path *pp,
                         struct tb_oai_error *e)
{
    if (f->needs && !*(bool *)s_at(base, f->needs_off)) {
        const char *param = s_param(pp);
        tb_oai_error_invalid(e, param, "'%s' is only allowed when '%s' is true", param, f->needs);
        return -1;
    }
    if ((f->flags & TB_OAI_F_EMPTY_ONLY) && !s_is_empty(v)) {
        const char *param = s_param(pp);
        s_unsupported(e, "unsupported_parameter", param, "'%s' is not supported by this server",
                      param);
        return -1;
    }
    if (json_is_boolean(v)) {
        return 0;
    }
    int64_t x;
    if ((f->types & TB_OAI_J_INT) && tb_oai_json_int(v, &x)) {
        return s_check_int(f, v, pp, e);
    }
    if (json_is_number(v)) {
        return s_check_num(f, v, pp, e);
    }
    if (json_is_string(v)) {
        return s_check_str(f, v, pp, e);
    }
    if (json_is_array(v)) {
        return s_check_arr(f, v, pp, e);
    }
    return 0;
}

static int s_keep(const struct tb_oai_field *f, json_t *v, tb_oai_api_t api, void *base,
                  struct path *pp, void *ctx, struct tb_oai_error *e)
{
    void *p = s_at(base, f->off);
    int64_t x = 0;
    switch (f->keep) {
    case TB_OAI_KEEP_NONE:
        break;
    case TB_OAI_KEEP_BOOL:
        *(bool *)p = json_is_true(v);
        break;
    case TB_OAI_KEEP_INT:
        tb_oai_json_int(v, &x);
        *(int64_t *)p = x;
        break;
    case TB_OAI_KEEP_NUM:
        *(double *)p = json_number_value(v);
        break;
    case TB_OAI_KEEP_STR:
        *(const char **)p = json_string_value(v);
        break;
    case TB_OAI_KEEP_FN: {
        int rc = f->fn(f, v, base, s_param(pp), ctx, e);
        if (rc != 0) {
            return rc;
        }
        break;
    }
    }
    if (f->keep != TB_OAI_KEEP_NONE && f->keep != TB_OAI_KEEP_FN) {
        s_set_has(f, base);
    }
    if (f->sub && json_is_object(v)) {
        return tb_oai_fields_walk(f->sub, api, v, base, s_param(pp), ctx, e);
    }
    return 0;
}

static int s_field(const struct tb_oai_field *f, json_t *v, tb_oai_api_t api, void *base,
                   struct path *pp, void *ctx, struct tb_oai_error *e)
{
    if (!v || json_is_null(v)) {
        return s_absent(f, api, base, pp, ctx, e);
    }
    if ((f->flags & TB_OAI_F_IF_UNSET) && f->has_off != 0 && *(bool *)s_at(base, f->has_off)) {
        return 0;
    }
    if (s_check_type(f, v, pp, e) != 0 || s_check_value(f, v, base, pp, e) != 0) {
        return -1;
    }
    return s_keep(f, v, api, base, pp, ctx, e);
}

/* One of 64 bits for a key, from its first two bytes. */
static uint64_t s_key_bit(const char *k)
{
    unsigned a = (unsigned char)k[0];
    unsigned b = a ? (unsigned char)k[1] : 0;
    return (uint64_t)1 << ((a * 31u + b) & 63u);
}

int tb_oai_fields_walk(const struct tb_oai_field *table, tb_oai_api_t api, json_t *o, void *base,
                       const char *prefix, void *ctx, struct tb_oai_error *e)
{
    /* A request names a handful of the table's dozens of fields: a field whose key bit no key of
     * the object has is absent without a hash lookup (a shared bit only costs the lookup). */
    uint64_t keys = 0;
    const char *k;
    json_t *kv;
    json_object_foreach(o, k, kv)
    {
        keys |= s_key_bit(k);
    }
    for (const struct tb_oai_field *f = table; f->name; f++) {
        if (f->apis && !(f->apis & TB_OAI_FOR(api))) {
            continue;
        }
        struct path pp = {.prefix = prefix, .name = f->name};
        json_t *v = keys & s_key_bit(f->name) ? json_object_get(o, f->name) : NULL;
        int rc = s_field(f, v, api, base, &pp, ctx, e);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}
