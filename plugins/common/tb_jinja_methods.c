/*
 * tb_jinja_methods.c - global functions (range, namespace, dict, raise_exception,
 * strftime_now) and the methods of strings, dicts, lists and `loop` in the Jinja interpreter;
 * see tb_jinja_builtins.h.  Each follows Python's definition; methods that would mutate a
 * value are absent, as jinja2's immutable sandbox refuses them.
 */
#include "tb_jinja_builtins.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_errors.h"

/* The sandbox's cap on range() (jinja2.sandbox.MAX_RANGE). */
#define S_MAX_RANGE 100000

enum {
    B_RANGE = 1,
    B_NAMESPACE,
    B_DICT,
    B_RAISE,
    B_STRFTIME,
    /* str methods */
    B_S_STRIP,
    B_S_LSTRIP,
    B_S_RSTRIP,
    B_S_STARTSWITH,
    B_S_ENDSWITH,
    B_S_SPLIT,
    B_S_UPPER,
    B_S_LOWER,
    B_S_TITLE,
    B_S_CAPITALIZE,
    B_S_REPLACE,
    B_S_FIND,
    B_S_COUNT,
    B_S_JOIN,
    B_S_ISDIGIT,
    B_S_ISSPACE,
    B_S_ISALPHA,
    B_S_ISUPPER,
    B_S_ISLOWER,
    B_S_SPLITLINES,
    B_S_FORMAT,
    /* dict methods */
    B_D_ITEMS,
    B_D_KEYS,
    B_D_VALUES,
    B_D_GET,
    /* list methods */
    B_L_INDEX,
    B_L_COUNT,
    /* loop methods */
    B_LOOP_CYCLE,
};

static const struct {
    const char *name;
    int id;
} s_globals[] = {
    {"range", B_RANGE},           {"namespace", B_NAMESPACE},   {"dict", B_DICT},
    {"raise_exception", B_RAISE}, {"strftime_now", B_STRFTIME},
};

static const struct {
    uint8_t kind;
    const char *name;
    int id;
} s_methods[] = {
    {TB_JV_STR, "strip", B_S_STRIP},       {TB_JV_STR, "lstrip", B_S_LSTRIP},
    {TB_JV_STR, "rstrip", B_S_RSTRIP},     {TB_JV_STR, "startswith", B_S_STARTSWITH},
    {TB_JV_STR, "endswith", B_S_ENDSWITH}, {TB_JV_STR, "split", B_S_SPLIT},
    {TB_JV_STR, "upper", B_S_UPPER},       {TB_JV_STR, "lower", B_S_LOWER},
    {TB_JV_STR, "title", B_S_TITLE},       {TB_JV_STR, "capitalize", B_S_CAPITALIZE},
    {TB_JV_STR, "replace", B_S_REPLACE},   {TB_JV_STR, "find", B_S_FIND},
    {TB_JV_STR, "count", B_S_COUNT},       {TB_JV_STR, "join", B_S_JOIN},
    {TB_JV_STR, "isdigit", B_S_ISDIGIT},   {TB_JV_STR, "isspace", B_S_ISSPACE},
    {TB_JV_STR, "isalpha", B_S_ISALPHA},   {TB_JV_STR, "isupper", B_S_ISUPPER},
    {TB_JV_STR, "islower", B_S_ISLOWER},   {TB_JV_STR, "splitlines", B_S_SPLITLINES},
    {TB_JV_STR, "format", B_S_FORMAT},     {TB_JV_DICT, "items", B_D_ITEMS},
    {TB_JV_DICT, "keys", B_D_KEYS},        {TB_JV_DICT, "values", B_D_VALUES},
    {TB_JV_DICT, "get", B_D_GET},          {TB_JV_LIST, "index", B_L_INDEX},
    {TB_JV_LIST, "count", B_L_COUNT},      {TB_JV_LOOP, "cycle", B_LOOP_CYCLE},
};

static tb_jv_t s_type_error(tb_jeval_t *ev, const char *what, tb_jv_t v)
{
    return tb_jrt_fail(&ev->rt, TB_EINVAL, "%s: '%s'", what, tb_jv_type_name(v));
}

static tb_jv_t s_str1(tb_jeval_t *ev, const char *s, size_t n)
{
    return tb_jv_str_new(&ev->rt, s, n);
}

static int64_t s_i(tb_jv_t v)
{
    return v.kind == TB_JV_INT ? v.u.i : (int64_t)v.u.b;
}

tb_jv_t tb_jinja_bind_method(tb_jeval_t *ev, tb_jv_t obj, const char *name, size_t len,
                             bool *found)
{
    *found = false;
    uint8_t kind = obj.kind;
    if (kind == TB_JV_DICT && obj.u.d->ns) {
        return tb_jv_undef(NULL);
    }
    for (size_t i = 0; i < sizeof(s_methods) / sizeof(s_methods[0]); i++) {
        if (s_methods[i].kind == kind && strlen(s_methods[i].name) == len &&
            !memcmp(s_methods[i].name, name, len)) {
            *found = true;
            return tb_jv_func_new(&ev->rt, s_methods[i].name, s_methods[i].id, tb_jv_ref(obj),
                                  NULL);
        }
    }
    return tb_jv_undef(NULL);
}

/* ------------------------------------------------------------------ globals */

tb_jv_t tb_jinja_global(tb_jeval_t *ev, const char *name)
{
    for (size_t i = 0; i < sizeof(s_globals) / sizeof(s_globals[0]); i++) {
        if (!strcmp(s_globals[i].name, name)) {
            return tb_jv_func_new(&ev->rt, s_globals[i].name, s_globals[i].id, tb_jv_undef(NULL),
                                  NULL);
        }
    }
    return tb_jv_undef(name);
}

static tb_jv_t s_range(tb_jeval_t *ev, const tb_jargs_t *a)
{
    int64_t v[3] = {0, 0, 1};
    if (a->npos < 1 || a->npos > 3 || a->nkw > 0) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "range expected 1 to 3 integer arguments");
    }
    for (size_t i = 0; i < a->npos; i++) {
        if (a->pos[i].kind != TB_JV_INT && a->pos[i].kind != TB_JV_BOOL) {
            return s_type_error(ev, "range() integer argument expected, got", a->pos[i]);
        }
    }
    if (a->npos == 1) {
        v[1] = s_i(a->pos[0]);
    } else {
        v[0] = s_i(a->pos[0]);
        v[1] = s_i(a->pos[1]);
        if (a->npos == 3) {
            v[2] = s_i(a->pos[2]);
        }
    }
    if (v[2] == 0) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "range() arg 3 must not be zero");
    }
    /* count without overflow */
    double span = ((double)v[1] - (double)v[0]) / (double)v[2];
    uint64_t count = span <= 0 ? 0 : (uint64_t)ceil(span);
    if (count > S_MAX_RANGE) {
        return tb_jrt_fail(&ev->rt, TB_ERANGE,
                           "range too big: the sandbox blocks ranges larger than %d",
                           S_MAX_RANGE);
    }
    tb_jv_t l = tb_jv_list_new(&ev->rt, count);
    for (uint64_t i = 0; !tb_jv_is_err(l) && i < count; i++) {
        if (!tb_jv_list_push(&ev->rt, l.u.l, tb_jv_int(v[0] + (int64_t)i * v[2]))) {
            tb_jv_unref(l);
            l = tb_jv_err();
        }
    }
    return l;
}

static tb_jv_t s_make_dict(tb_jeval_t *ev, const tb_jargs_t *a, bool ns)
{
    if (a->npos > 1) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "expected at most 1 positional argument");
    }
    tb_jv_t d = tb_jv_dict_new(&ev->rt, a->nkw);
    if (tb_jv_is_err(d)) {
        return d;
    }
    d.u.d->ns = ns;
    if (a->npos == 1) {
        tb_jv_t src = a->pos[0];
        if (src.kind != TB_JV_DICT || src.u.d->ns) {
            tb_jv_unref(d);
            return s_type_error(ev, "expected a dict argument, got", src);
        }
        for (size_t i = 0; i < src.u.d->n; i++) {
            if (!tb_jv_dict_set(&ev->rt, d.u.d, src.u.d->keys[i]->data, src.u.d->keys[i]->len,
                                tb_jv_ref(src.u.d->vals[i]))) {
                tb_jv_unref(d);
                return tb_jv_err();
            }
        }
    }
    for (size_t k = 0; k < a->nkw; k++) {
        if (!tb_jv_dict_set(&ev->rt, d.u.d, a->kwnames[k], strlen(a->kwnames[k]),
                            tb_jv_ref(a->kw[k]))) {
            tb_jv_unref(d);
            return tb_jv_err();
        }
    }
    return d;
}

static tb_jv_t s_strftime_now(tb_jeval_t *ev, const tb_jargs_t *a)
{
    const tb_jv_t *f = tb_jarg(a, 0, "format");
    if (!f || f->kind != TB_JV_STR) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "strftime_now expects a format string");
    }
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm)) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "cannot read the clock");
    }
    char out[512];
    size_t n = f->u.s->len > 200 ? 0 : strftime(out, sizeof(out), f->u.s->data, &tm);
    if (n == 0 && f->u.s->len > 0) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "strftime_now format too long or invalid");
    }
    return s_str1(ev, out, n);
}

/* ------------------------------------------------------------------ methods */

static bool s_prefix_match(tb_jv_str_t *s, tb_jv_t p, bool end)
{
    if (p.kind != TB_JV_STR) {
        return false;
    }
    size_t n = p.u.s->len;
    if (n > s->len) {
        return false;
    }
    return memcmp(end ? s->data + s->len - n : s->data, p.u.s->data, n) == 0;
}

static tb_jv_t s_startswith(tb_jeval_t *ev, tb_jv_str_t *s, const tb_jargs_t *a, bool end)
{
    const tb_jv_t *p = tb_jarg(a, 0, NULL);
    if (!p) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "%s() takes at least 1 argument",
                           end ? "endswith" : "startswith");
    }
    if (p->kind == TB_JV_LIST && p->u.l->tuple) {
        for (size_t i = 0; i < p->u.l->n; i++) {
            if (p->u.l->items[i].kind != TB_JV_STR) {
                return s_type_error(ev, "tuple for startswith must only contain str, not",
                                    p->u.l->items[i]);
            }
            if (s_prefix_match(s, p->u.l->items[i], end)) {
                return tb_jv_bool(true);
            }
        }
        return tb_jv_bool(false);
    }
    if (p->kind != TB_JV_STR) {
        return s_type_error(ev,
                            "startswith/endswith first arg must be str or a tuple of str, not",
                            *p);
    }
    return tb_jv_bool(s_prefix_match(s, *p, end));
}

static bool s_push_str(tb_jeval_t *ev, tb_jv_t l, const char *p, size_t n)
{
    tb_jv_t v = s_str1(ev, p, n);
    return !tb_jv_is_err(v) && tb_jv_list_push(&ev->rt, l.u.l, v);
}

static tb_jv_t s_split(tb_jeval_t *ev, tb_jv_str_t *s, const tb_jargs_t *a)
{
    const tb_jv_t *sep = tb_jarg(a, 0, "sep");
    const tb_jv_t *maxv = tb_jarg(a, 1, "maxsplit");
    int64_t maxsplit = -1;
    if (maxv) {
        if (maxv->kind != TB_JV_INT) {
            return s_type_error(ev, "maxsplit must be an integer, not", *maxv);
        }
        maxsplit = maxv->u.i;
    }
    tb_jv_t l = tb_jv_list_new(&ev->rt, 0);
    if (tb_jv_is_err(l)) {
        return l;
    }
    const char *d = s->data;
    size_t len = s->len;
    if (!sep || sep->kind == TB_JV_NONE) {
        size_t i = 0;
        int64_t splits = 0;
        for (;;) {
            /* skip whitespace */
            while (i < len) {
                size_t j = i;
                if (!tb_py_isspace(tb_utf8_next(d, len, &j))) {
                    break;
                }
                i = j;
            }
            if (i >= len) {
                break;
            }
            if (maxsplit >= 0 && splits >= maxsplit) {
                if (!s_push_str(ev, l, d + i, len - i)) {
                    goto fail;
                }
                break;
            }
            size_t start = i;
            while (i < len) {
                size_t j = i;
                if (tb_py_isspace(tb_utf8_next(d, len, &j))) {
                    break;
                }
                i = j;
            }
            if (!s_push_str(ev, l, d + start, i - start)) {
                goto fail;
            }
            splits++;
        }
        return l;
    }
    if (sep->kind != TB_JV_STR) {
        tb_jv_unref(l);
        return s_type_error(ev, "must be str or None, not", *sep);
    }
    if (sep->u.s->len == 0) {
        tb_jv_unref(l);
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "empty separator");
    }
    size_t start = 0;
    int64_t splits = 0;
    for (;;) {
        const char *hit = NULL;
        if (maxsplit < 0 || splits < maxsplit) {
            hit = memmem(d + start, len - start, sep->u.s->data, sep->u.s->len);
        }
        if (!hit) {
            if (!s_push_str(ev, l, d + start, len - start)) {
                goto fail;
            }
            return l;
        }
        if (!s_push_str(ev, l, d + start, (size_t)(hit - (d + start)))) {
            goto fail;
        }
        start = (size_t)(hit - d) + sep->u.s->len;
        splits++;
    }
fail:
    tb_jv_unref(l);
    return tb_jv_err();
}

static tb_jv_t s_splitlines(tb_jeval_t *ev, tb_jv_str_t *s)
{
    tb_jv_t l = tb_jv_list_new(&ev->rt, 0);
    size_t start = 0, i = 0;
    while (!tb_jv_is_err(l) && i < s->len) {
        size_t j = i;
        uint32_t cp = tb_utf8_next(s->data, s->len, &j);
        bool brk = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C ||
                   (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
        if (brk) {
            if (!s_push_str(ev, l, s->data + start, i - start)) {
                tb_jv_unref(l);
                return tb_jv_err();
            }
            if (cp == '\r' && j < s->len && s->data[j] == '\n') {
                j++;
            }
            start = j;
        }
        i = j;
    }
    if (!tb_jv_is_err(l) && start < s->len &&
        !s_push_str(ev, l, s->data + start, s->len - start)) {
        tb_jv_unref(l);
        return tb_jv_err();
    }
    return l;
}

/* Python's str.find / str.count by code points. */
static tb_jv_t s_find_count(tb_jeval_t *ev, tb_jv_str_t *s, const tb_jargs_t *a, bool count)
{
    const tb_jv_t *sub = tb_jarg(a, 0, NULL);
    if (!sub || sub->kind != TB_JV_STR) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "%s() expects a string argument",
                           count ? "count" : "find");
    }
    if (sub->u.s->len == 0) {
        return tb_jv_int(count ? (int64_t)tb_jv_str_ncp(s) + 1 : 0);
    }
    if (!tb_jinja_eval_step(ev, s->len / 64)) {
        return tb_jv_err();
    }
    int64_t n = 0;
    size_t at = 0;
    for (;;) {
        const char *hit = memmem(s->data + at, s->len - at, sub->u.s->data, sub->u.s->len);
        if (!hit) {
            return tb_jv_int(count ? n : -1);
        }
        if (!count) {
            size_t cps = 0;
            for (const char *p = s->data; p < hit; p++) {
                cps += ((unsigned char)*p & 0xC0) != 0x80;
            }
            return tb_jv_int((int64_t)cps);
        }
        n++;
        at = (size_t)(hit - s->data) + sub->u.s->len;
    }
}

static tb_jv_t s_join(tb_jeval_t *ev, tb_jv_str_t *sep, const tb_jargs_t *a)
{
    const tb_jv_t *it = tb_jarg(a, 0, NULL);
    if (!it) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "join() takes exactly one argument");
    }
    tb_jv_t items = tb_jinja_to_list(ev, *it);
    if (tb_jv_is_err(items)) {
        return items;
    }
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    bool ok = true;
    for (size_t i = 0; ok && i < items.u.l->n; i++) {
        tb_jv_t v = items.u.l->items[i];
        if (v.kind != TB_JV_STR) {
            s_type_error(ev, "sequence item: expected str instance, got", v);
            ok = false;
            break;
        }
        ok = (i == 0 || tb_jbuf_add(&b, sep->data, sep->len)) &&
             tb_jbuf_add(&b, v.u.s->data, v.u.s->len);
    }
    tb_jv_unref(items);
    if (!ok) {
        tb_jbuf_release(&b);
        return tb_jv_err();
    }
    return tb_jbuf_to_str(&b);
}

/* str.format with plain replacement fields: {}, {0}, {name}, optional !s / !r; no format
 * specs or attribute paths. */
static tb_jv_t s_format(tb_jeval_t *ev, tb_jv_str_t *fmt, const tb_jargs_t *a)
{
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    const char *f = fmt->data;
    size_t len = fmt->len;
    size_t auto_idx = 0;
    for (size_t i = 0; i < len; i++) {
        char c = f[i];
        if (c == '}') {
            if (i + 1 < len && f[i + 1] == '}') {
                i++;
            } else {
                tb_jrt_fail(&ev->rt, TB_EINVAL, "single '}' encountered in format string");
                goto fail;
            }
        } else if (c == '{') {
            if (i + 1 < len && f[i + 1] == '{') {
                i++;
            } else {
                size_t start = i + 1;
                size_t end = start;
                while (end < len && f[end] != '}' && f[end] != '!' && f[end] != ':' &&
                       f[end] != '{') {
                    end++;
                }
                char conv = 's';
                size_t close = end;
                if (close < len && f[close] == '!' && close + 2 < len && f[close + 2] == '}') {
                    conv = f[close + 1];
                    close += 2;
                }
                if (close >= len || f[close] != '}' || (conv != 's' && conv != 'r')) {
                    tb_jrt_fail(&ev->rt, TB_EINVAL,
                                "unsupported str.format field (only {}, {N}, {name}, !s, !r)");
                    goto fail;
                }
                const tb_jv_t *v = NULL;
                size_t n = end - start;
                if (n == 0) {
                    v = tb_jarg(a, auto_idx++, NULL);
                } else if (f[start] >= '0' && f[start] <= '9') {
                    v = tb_jarg(a, (size_t)strtoul(f + start, NULL, 10), NULL);
                } else {
                    char name[64];
                    if (n < sizeof(name)) {
                        memcpy(name, f + start, n);
                        name[n] = '\0';
                        for (size_t k = 0; k < a->nkw; k++) {
                            if (!strcmp(a->kwnames[k], name)) {
                                v = &a->kw[k];
                            }
                        }
                    }
                }
                if (!v) {
                    tb_jrt_fail(&ev->rt, TB_EINVAL, "replacement field %.*s has no argument",
                                (int)(n > 40 ? 40 : n), f + start);
                    goto fail;
                }
                bool ok = conv == 'r' ? tb_jv_write_repr(&b, *v) : tb_jv_write_str(&b, *v);
                if (!ok) {
                    goto fail;
                }
                i = close;
                continue;
            }
        }
        if (!tb_jbuf_addc(&b, c)) {
            goto fail;
        }
    }
    return tb_jbuf_to_str(&b);
fail:
    tb_jbuf_release(&b);
    return tb_jv_err();
}

static tb_jv_t s_str_pred(tb_jeval_t *ev, tb_jv_str_t *s, int id)
{
    if (s->len == 0) {
        return tb_jv_bool(false);
    }
    bool any_cased = false;
    size_t i = 0;
    while (i < s->len) {
        uint32_t cp = tb_utf8_next(s->data, s->len, &i);
        bool up = tb_jrt_lower(&ev->rt, cp) != cp;
        bool lo = tb_jrt_upper(&ev->rt, cp) != cp;
        switch (id) {
        case B_S_ISDIGIT:
            if (!(cp >= '0' && cp <= '9')) {
                return tb_jv_bool(false);
            }
            break;
        case B_S_ISSPACE:
            if (!tb_py_isspace(cp)) {
                return tb_jv_bool(false);
            }
            break;
        case B_S_ISALPHA:
            if (!(up || lo || (cp >= 0x80 && !tb_py_isspace(cp) && cp > 0x2FF))) {
                if (!((cp | 32) >= 'a' && (cp | 32) <= 'z')) {
                    return tb_jv_bool(false);
                }
            }
            break;
        case B_S_ISUPPER:
            if (lo) {
                return tb_jv_bool(false);
            }
            any_cased |= up;
            break;
        default: /* islower */
            if (up) {
                return tb_jv_bool(false);
            }
            any_cased |= lo;
            break;
        }
    }
    if (id == B_S_ISUPPER || id == B_S_ISLOWER) {
        return tb_jv_bool(any_cased);
    }
    return tb_jv_bool(true);
}

static tb_jv_t s_dict_method(tb_jeval_t *ev, tb_jv_dict_t *d, int id, const tb_jargs_t *a)
{
    if (id == B_D_GET) {
        const tb_jv_t *k = tb_jarg(a, 0, NULL);
        const tb_jv_t *def = tb_jarg(a, 1, NULL);
        if (!k) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "get expected at least 1 argument");
        }
        tb_jv_t *v = k->kind == TB_JV_STR ? tb_jv_dict_get(d, k->u.s->data, k->u.s->len) : NULL;
        if (v) {
            return tb_jv_ref(*v);
        }
        return def ? tb_jv_ref(*def) : tb_jv_none();
    }
    tb_jv_t l = tb_jv_list_new(&ev->rt, d->n);
    for (size_t i = 0; !tb_jv_is_err(l) && i < d->n; i++) {
        tb_jv_t key = tb_jv_ref((tb_jv_t){.kind = TB_JV_STR, .u.s = d->keys[i]});
        tb_jv_t item;
        if (id == B_D_KEYS) {
            item = key;
        } else if (id == B_D_VALUES) {
            tb_jv_unref(key);
            item = tb_jv_ref(d->vals[i]);
        } else {
            item = tb_jv_list_new(&ev->rt, 2);
            if (tb_jv_is_err(item)) {
                tb_jv_unref(key);
            } else {
                item.u.l->tuple = true;
                if (!tb_jv_list_push(&ev->rt, item.u.l, key) ||
                    !tb_jv_list_push(&ev->rt, item.u.l, tb_jv_ref(d->vals[i]))) {
                    tb_jv_unref(item);
                    item = tb_jv_err();
                }
            }
        }
        if (tb_jv_is_err(item) || !tb_jv_list_push(&ev->rt, l.u.l, item)) {
            tb_jv_unref(l);
            l = tb_jv_err();
        }
    }
    return l;
}

/* Positional arity of methods (Python's), and whether they take keyword arguments. */
static bool s_method_arity(tb_jeval_t *ev, tb_jv_func_t *fn, const tb_jargs_t *a)
{
    size_t lo = 0, hi = 0;
    bool kw = false;
    switch (fn->builtin) {
    case B_S_STRIP:
    case B_S_LSTRIP:
    case B_S_RSTRIP:
        hi = 1;
        break;
    case B_S_STARTSWITH:
    case B_S_ENDSWITH:
    case B_S_FIND:
    case B_S_COUNT:
    case B_S_JOIN:
    case B_L_INDEX:
    case B_L_COUNT:
        lo = hi = 1; /* start/end arguments are not supported */
        break;
    case B_S_SPLIT:
        hi = 2;
        kw = true;
        break;
    case B_S_SPLITLINES:
        hi = 1;
        kw = true;
        break;
    case B_S_REPLACE:
        lo = 2;
        hi = 3;
        break;
    case B_D_GET:
        lo = 1;
        hi = 2;
        break;
    case B_S_FORMAT:
    case B_LOOP_CYCLE:
        return true;
    default:
        if (fn->builtin < B_S_STRIP) {
            return true; /* globals check their own arguments */
        }
        break; /* no arguments */
    }
    if (a->npos < lo || a->npos > hi || (!kw && a->nkw > 0)) {
        tb_jrt_fail(&ev->rt, TB_EINVAL, "%s() takes %zu to %zu positional arguments%s, got %zu",
                    fn->name, lo, hi, kw ? "" : " and no keyword arguments", a->npos);
        return false;
    }
    return true;
}

tb_jv_t tb_jinja_call_builtin(tb_jeval_t *ev, tb_jv_func_t *fn, const tb_jargs_t *a)
{
    tb_jv_t self = fn->self;
    const tb_jv_t *x;
    if (!s_method_arity(ev, fn, a)) {
        return tb_jv_err();
    }
    switch (fn->builtin) {
    case B_RANGE:
        return s_range(ev, a);
    case B_NAMESPACE:
        return s_make_dict(ev, a, true);
    case B_DICT:
        return s_make_dict(ev, a, false);
    case B_RAISE: {
        x = tb_jarg(a, 0, "message");
        tb_jv_t msg = x ? tb_jv_to_str(&ev->rt, *x) : tb_jv_str_new(&ev->rt, "", 0);
        if (tb_jv_is_err(msg)) {
            return msg;
        }
        tb_jrt_fail(&ev->rt, TB_EINVAL, "raise_exception: %.*s",
                    (int)(msg.u.s->len > 2000 ? 2000 : msg.u.s->len), msg.u.s->data);
        tb_jv_unref(msg);
        return tb_jv_err();
    }
    case B_STRFTIME:
        return s_strftime_now(ev, a);
    case B_S_STRIP:
    case B_S_LSTRIP:
    case B_S_RSTRIP:
        x = tb_jarg(a, 0, "chars");
        if (x && x->kind != TB_JV_STR && x->kind != TB_JV_NONE) {
            return s_type_error(ev, "strip arg must be None or str, not", *x);
        }
        return tb_jinja_str_strip(ev, self.u.s, x, fn->builtin != B_S_RSTRIP,
                                  fn->builtin != B_S_LSTRIP);
    case B_S_STARTSWITH:
    case B_S_ENDSWITH:
        return s_startswith(ev, self.u.s, a, fn->builtin == B_S_ENDSWITH);
    case B_S_SPLIT:
        return s_split(ev, self.u.s, a);
    case B_S_SPLITLINES:
        x = tb_jarg(a, 0, "keepends");
        if (x && tb_jv_truthy(*x)) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "splitlines(keepends=True) is not supported");
        }
        return s_splitlines(ev, self.u.s);
    case B_S_UPPER:
        return tb_jinja_str_case(ev, self.u.s, TB_JCASE_UPPER);
    case B_S_LOWER:
        return tb_jinja_str_case(ev, self.u.s, TB_JCASE_LOWER);
    case B_S_CAPITALIZE:
        return tb_jinja_str_case(ev, self.u.s, TB_JCASE_CAPITALIZE);
    case B_S_TITLE:
        return tb_jinja_str_case(ev, self.u.s, TB_JCASE_TITLE);
    case B_S_REPLACE: {
        const tb_jv_t *o = tb_jarg(a, 0, NULL), *n = tb_jarg(a, 1, NULL);
        const tb_jv_t *c = tb_jarg(a, 2, "count");
        if (!o || !n || o->kind != TB_JV_STR || n->kind != TB_JV_STR ||
            (c && c->kind != TB_JV_INT)) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "replace() expects (str, str[, int])");
        }
        return tb_jinja_str_replace(ev, self.u.s, *o, *n, c ? c->u.i : -1);
    }
    case B_S_FIND:
        return s_find_count(ev, self.u.s, a, false);
    case B_S_COUNT:
        return s_find_count(ev, self.u.s, a, true);
    case B_S_JOIN:
        return s_join(ev, self.u.s, a);
    case B_S_FORMAT:
        return s_format(ev, self.u.s, a);
    case B_S_ISDIGIT:
    case B_S_ISSPACE:
    case B_S_ISALPHA:
    case B_S_ISUPPER:
    case B_S_ISLOWER:
        return s_str_pred(ev, self.u.s, fn->builtin);
    case B_D_ITEMS:
    case B_D_KEYS:
    case B_D_VALUES:
    case B_D_GET:
        return s_dict_method(ev, self.u.d, fn->builtin, a);
    case B_L_INDEX:
    case B_L_COUNT: {
        x = tb_jarg(a, 0, NULL);
        if (!x) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "%s() takes exactly one argument", fn->name);
        }
        int64_t n = 0;
        if (!tb_jinja_eval_step(ev, self.u.l->n)) {
            return tb_jv_err();
        }
        for (size_t i = 0; i < self.u.l->n; i++) {
            if (tb_jv_equal(self.u.l->items[i], *x)) {
                if (fn->builtin == B_L_INDEX) {
                    return tb_jv_int((int64_t)i);
                }
                n++;
            }
        }
        if (fn->builtin == B_L_INDEX) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "value is not in list");
        }
        return tb_jv_int(n);
    }
    case B_LOOP_CYCLE:
        if (a->npos == 0) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "no items for cycling given");
        }
        return tb_jv_ref(a->pos[self.u.loop->index0 % a->npos]);
    default:
        return tb_jrt_fail(&ev->rt, TB_EINTERNAL, "unknown builtin %d", fn->builtin);
    }
}

bool tb_jinja_str_is_cased_as(tb_jeval_t *ev, tb_jv_str_t *s, bool upper)
{
    return s_str_pred(ev, s, upper ? B_S_ISUPPER : B_S_ISLOWER).u.b;
}
