/*
 * tb_jinja_value.c - values of the Jinja interpreter: reference counting, strings, lists,
 * dicts, JSON input, and Python's str()/repr()/json.dumps() output, which the rendered prompt
 * must reproduce byte for byte.
 *
 * Values are reference counted rather than arena-allocated because templates build and drop
 * strings in loops (`set ns.x = ns.x + ...`): freeing early keeps a render's memory near its
 * live data, and every byte is still charged to the render's bound.  Containers record their
 * nesting depth so that no value is deeper than TB_JV_MAX_NEST (recursive walks stay shallow),
 * and namespaces refuse to contain themselves (no reference cycles).
 */
#include "tb_jinja_value.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "tb_errors.h"

#define TB_JV_MAX_NEST 200

/* Every heap object starts with its reference count; lists and dicts also carry flags. */
typedef struct {
    uint16_t depth;
    bool has_ns;
} s_meta_t;

tb_jv_t tb_jrt_fail(tb_jrt_t *rt, int code, const char *fmt, ...)
{
    if (rt->code == 0) {
        rt->code = code;
        if (rt->err && rt->err_len > 0) {
            int n = snprintf(rt->err, rt->err_len, "%u:%u: ", rt->line, rt->col);
            if (n >= 0 && (size_t)n < rt->err_len) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(rt->err + n, rt->err_len - (size_t)n, fmt, ap);
                va_end(ap);
            }
        }
    }
    return tb_jv_err();
}

bool tb_jrt_charge(tb_jrt_t *rt, size_t n)
{
    rt->alloc_bytes += n;
    if (rt->alloc_bytes > rt->limits.max_alloc_bytes) {
        tb_jrt_fail(rt, TB_ERANGE, "render used more than %llu bytes of memory",
                    (unsigned long long)rt->limits.max_alloc_bytes);
        return false;
    }
    return true;
}

static void *s_alloc(tb_jrt_t *rt, size_t n)
{
    if (!tb_jrt_charge(rt, n)) {
        return NULL;
    }
    void *p = malloc(n);
    if (!p) {
        tb_jrt_fail(rt, TB_ENOMEM, "out of memory");
    }
    return p;
}

/* ------------------------------------------------------------------ refcounting */

tb_jv_t tb_jv_ref(tb_jv_t v)
{
    switch (v.kind) {
    case TB_JV_STR:
        v.u.s->refs++;
        break;
    case TB_JV_LIST:
        v.u.l->refs++;
        break;
    case TB_JV_DICT:
        v.u.d->refs++;
        break;
    case TB_JV_FUNC:
        v.u.fn->refs++;
        break;
    case TB_JV_LOOP:
        v.u.loop->refs++;
        break;
    default:
        break;
    }
    return v;
}

void tb_jv_unref(tb_jv_t v)
{
    switch (v.kind) {
    case TB_JV_STR:
        if (--v.u.s->refs == 0) {
            free(v.u.s);
        }
        break;
    case TB_JV_LIST:
        if (--v.u.l->refs == 0) {
            for (size_t i = 0; i < v.u.l->n; i++) {
                tb_jv_unref(v.u.l->items[i]);
            }
            free(v.u.l->items);
            free(v.u.l);
        }
        break;
    case TB_JV_DICT:
        if (--v.u.d->refs == 0) {
            for (size_t i = 0; i < v.u.d->n; i++) {
                /* keys are shared with lists made by keys(), items(), iteration */
                tb_jv_t k = {.kind = TB_JV_STR};
                k.u.s = v.u.d->keys[i];
                tb_jv_unref(k);
                tb_jv_unref(v.u.d->vals[i]);
            }
            free(v.u.d->keys);
            free(v.u.d->vals);
            free(v.u.d->index);
            free(v.u.d);
        }
        break;
    case TB_JV_FUNC:
        if (--v.u.fn->refs == 0) {
            tb_jv_unref(v.u.fn->self);
            free(v.u.fn);
        }
        break;
    case TB_JV_LOOP:
        if (--v.u.loop->refs == 0) {
            tb_jv_unref(v.u.loop->seq);
            free(v.u.loop);
        }
        break;
    default:
        break;
    }
}

/* Nesting depth and "may contain a namespace" of a value, for the bounds above. */
static s_meta_t s_meta(tb_jv_t v);

/* ------------------------------------------------------------------ strings */

tb_jv_t tb_jv_str_alloc(tb_jrt_t *rt, size_t len)
{
    if (len > rt->limits.max_output_bytes) {
        return tb_jrt_fail(rt, TB_E2BIG, "string of %zu bytes is over the %zu-byte bound", len,
                           rt->limits.max_output_bytes);
    }
    tb_jv_str_t *s = s_alloc(rt, sizeof(*s) + len + 1);
    if (!s) {
        return tb_jv_err();
    }
    s->refs = 1;
    s->len = len;
    s->ncp = SIZE_MAX;
    s->data[len] = '\0';
    tb_jv_t v = {.kind = TB_JV_STR};
    v.u.s = s;
    return v;
}

tb_jv_t tb_jv_str_new(tb_jrt_t *rt, const char *data, size_t len)
{
    tb_jv_t v = tb_jv_str_alloc(rt, len);
    if (!tb_jv_is_err(v) && len > 0) {
        memcpy(v.u.s->data, data, len);
    }
    return v;
}

tb_jv_t tb_jv_str_cat(tb_jrt_t *rt, const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen > SIZE_MAX / 2 || blen > SIZE_MAX / 2) {
        return tb_jrt_fail(rt, TB_E2BIG, "string too large");
    }
    tb_jv_t v = tb_jv_str_alloc(rt, alen + blen);
    if (!tb_jv_is_err(v)) {
        if (alen) {
            memcpy(v.u.s->data, a, alen);
        }
        if (blen) {
            memcpy(v.u.s->data + alen, b, blen);
        }
    }
    return v;
}

size_t tb_jv_str_ncp(tb_jv_str_t *s)
{
    if (s->ncp == SIZE_MAX) {
        size_t n = 0;
        for (size_t i = 0; i < s->len; i++) {
            n += ((unsigned char)s->data[i] & 0xC0) != 0x80;
        }
        s->ncp = n;
    }
    return s->ncp;
}

/* ------------------------------------------------------------------ lists */

/* Lists and dicts are allocated with a trailer holding their nesting depth and whether they
 * may contain a namespace; the public structs stay plain. */
typedef struct {
    tb_jv_list_t l;
    s_meta_t m;
} s_list_t;

typedef struct {
    tb_jv_dict_t d;
    s_meta_t m;
} s_dict_t;

tb_jv_t tb_jv_list_new(tb_jrt_t *rt, size_t cap)
{
    s_list_t *sl = s_alloc(rt, sizeof(*sl));
    if (!sl) {
        return tb_jv_err();
    }
    memset(sl, 0, sizeof(*sl));
    sl->l.refs = 1;
    sl->m.depth = 1;
    if (cap > 0) {
        if (cap > SIZE_MAX / sizeof(tb_jv_t) || !tb_jrt_charge(rt, cap * sizeof(tb_jv_t))) {
            free(sl);
            return tb_jrt_fail(rt, TB_ERANGE, "list too large");
        }
        sl->l.items = malloc(cap * sizeof(tb_jv_t));
        if (!sl->l.items) {
            free(sl);
            return tb_jrt_fail(rt, TB_ENOMEM, "out of memory");
        }
        sl->l.cap = cap;
    }
    tb_jv_t v = {.kind = TB_JV_LIST};
    v.u.l = &sl->l;
    return v;
}

static bool s_check_nest(tb_jrt_t *rt, s_meta_t *parent, tb_jv_t child)
{
    s_meta_t cm = s_meta(child);
    if (cm.depth + 1 > TB_JV_MAX_NEST) {
        tb_jrt_fail(rt, TB_ERANGE, "value nested deeper than %d levels", TB_JV_MAX_NEST);
        return false;
    }
    if (cm.depth + 1 > parent->depth) {
        parent->depth = (uint16_t)(cm.depth + 1);
    }
    if (cm.has_ns) {
        parent->has_ns = true;
    }
    return true;
}

bool tb_jv_list_push(tb_jrt_t *rt, tb_jv_list_t *l, tb_jv_t item)
{
    s_list_t *sl = (s_list_t *)l;
    if (!s_check_nest(rt, &sl->m, item)) {
        tb_jv_unref(item);
        return false;
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 4;
        if (ncap > SIZE_MAX / sizeof(tb_jv_t) ||
            !tb_jrt_charge(rt, (ncap - l->cap) * sizeof(tb_jv_t))) {
            tb_jv_unref(item);
            tb_jrt_fail(rt, TB_ERANGE, "list too large");
            return false;
        }
        tb_jv_t *ni = realloc(l->items, ncap * sizeof(tb_jv_t));
        if (!ni) {
            tb_jv_unref(item);
            tb_jrt_fail(rt, TB_ENOMEM, "out of memory");
            return false;
        }
        l->items = ni;
        l->cap = ncap;
    }
    l->items[l->n++] = item;
    return true;
}

/* ------------------------------------------------------------------ dicts */

static uint32_t s_hash(const char *k, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 16777619u;
    }
    return h;
}

tb_jv_t tb_jv_dict_new(tb_jrt_t *rt, size_t cap)
{
    s_dict_t *sd = s_alloc(rt, sizeof(*sd));
    if (!sd) {
        return tb_jv_err();
    }
    memset(sd, 0, sizeof(*sd));
    sd->d.refs = 1;
    sd->m.depth = 1;
    (void)cap;
    tb_jv_t v = {.kind = TB_JV_DICT};
    v.u.d = &sd->d;
    return v;
}

static size_t s_dict_find(const tb_jv_dict_t *d, const char *key, size_t klen)
{
    if (d->index) {
        size_t mask = d->index_cap - 1;
        for (size_t i = s_hash(key, klen) & mask;; i = (i + 1) & mask) {
            uint32_t e = d->index[i];
            if (e == 0) {
                return SIZE_MAX;
            }
            const tb_jv_str_t *k = d->keys[e - 1];
            if (k->len == klen && memcmp(k->data, key, klen) == 0) {
                return e - 1;
            }
        }
    }
    for (size_t i = 0; i < d->n; i++) {
        if (d->keys[i]->len == klen && memcmp(d->keys[i]->data, key, klen) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

tb_jv_t *tb_jv_dict_get(const tb_jv_dict_t *d, const char *key, size_t klen)
{
    size_t i = s_dict_find(d, key, klen);
    return i == SIZE_MAX ? NULL : &d->vals[i];
}

static bool s_dict_reindex(tb_jrt_t *rt, tb_jv_dict_t *d)
{
    size_t cap = 16;
    while (cap < d->n * 2 + 2) {
        cap *= 2;
    }
    if (!tb_jrt_charge(rt, cap * sizeof(uint32_t))) {
        return false;
    }
    uint32_t *idx = calloc(cap, sizeof(uint32_t));
    if (!idx) {
        tb_jrt_fail(rt, TB_ENOMEM, "out of memory");
        return false;
    }
    for (size_t e = 0; e < d->n; e++) {
        size_t i = s_hash(d->keys[e]->data, d->keys[e]->len) & (cap - 1);
        while (idx[i]) {
            i = (i + 1) & (cap - 1);
        }
        idx[i] = (uint32_t)(e + 1);
    }
    free(d->index);
    d->index = idx;
    d->index_cap = cap;
    return true;
}

bool tb_jv_dict_set(tb_jrt_t *rt, tb_jv_dict_t *d, const char *key, size_t klen, tb_jv_t val)
{
    s_dict_t *sd = (s_dict_t *)d;
    if (!s_check_nest(rt, &sd->m, val)) {
        tb_jv_unref(val);
        return false;
    }
    size_t at = s_dict_find(d, key, klen);
    if (at != SIZE_MAX) {
        tb_jv_unref(d->vals[at]);
        d->vals[at] = val;
        return true;
    }
    if (d->n >= UINT32_MAX - 1) {
        tb_jv_unref(val);
        tb_jrt_fail(rt, TB_ERANGE, "dict too large");
        return false;
    }
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 4;
        if (!tb_jrt_charge(rt, (ncap - d->cap) * (sizeof(void *) + sizeof(tb_jv_t)))) {
            tb_jv_unref(val);
            return false;
        }
        tb_jv_str_t **nk = realloc(d->keys, ncap * sizeof(*nk));
        if (nk) {
            d->keys = nk;
        }
        tb_jv_t *nv = nk ? realloc(d->vals, ncap * sizeof(*nv)) : NULL;
        if (!nv) {
            tb_jv_unref(val);
            tb_jrt_fail(rt, TB_ENOMEM, "out of memory");
            return false;
        }
        d->vals = nv;
        d->cap = ncap;
    }
    tb_jv_t ks = tb_jv_str_new(rt, key, klen);
    if (tb_jv_is_err(ks)) {
        tb_jv_unref(val);
        return false;
    }
    d->keys[d->n] = ks.u.s;
    d->vals[d->n] = val;
    d->n++;
    if (d->n > 8 && (d->index == NULL || d->n * 2 > d->index_cap)) {
        if (!s_dict_reindex(rt, d)) {
            return false; /* the entry stays; the dict is still consistent (linear search) */
        }
    } else if (d->index) {
        size_t i = s_hash(key, klen) & (d->index_cap - 1);
        while (d->index[i]) {
            i = (i + 1) & (d->index_cap - 1);
        }
        d->index[i] = (uint32_t)d->n;
    }
    return true;
}

/* ------------------------------------------------------------------ callables and loops */

tb_jv_t tb_jv_func_new(tb_jrt_t *rt, const char *name, int builtin, tb_jv_t self,
                       const void *macro)
{
    tb_jv_func_t *f = s_alloc(rt, sizeof(*f));
    if (!f) {
        tb_jv_unref(self);
        return tb_jv_err();
    }
    f->refs = 1;
    f->name = name;
    f->builtin = builtin;
    f->self = self;
    f->macro = macro;
    f->counter = 0;
    tb_jv_t v = {.kind = TB_JV_FUNC};
    v.u.fn = f;
    return v;
}

tb_jv_t tb_jv_loop_new(tb_jrt_t *rt, tb_jv_t seq)
{
    tb_jv_loop_t *lp = s_alloc(rt, sizeof(*lp));
    if (!lp) {
        return tb_jv_err();
    }
    lp->refs = 1;
    lp->index0 = 0;
    lp->length = seq.kind == TB_JV_LIST ? seq.u.l->n : 0;
    lp->seq = tb_jv_ref(seq);
    tb_jv_t v = {.kind = TB_JV_LOOP};
    v.u.loop = lp;
    return v;
}

static s_meta_t s_meta(tb_jv_t v)
{
    s_meta_t m = {0, false};
    switch (v.kind) {
    case TB_JV_LIST:
        return ((s_list_t *)v.u.l)->m;
    case TB_JV_DICT:
        m = ((s_dict_t *)v.u.d)->m;
        if (v.u.d->ns) {
            m.has_ns = true;
        }
        return m;
    case TB_JV_FUNC:
        m = s_meta(v.u.fn->self);
        m.depth++;
        return m;
    case TB_JV_LOOP:
        m = s_meta(v.u.loop->seq);
        m.depth++;
        return m;
    default:
        return m;
    }
}

/* ------------------------------------------------------------------ JSON input */

tb_jv_t tb_jv_from_json(tb_jrt_t *rt, const json_t *j, uint32_t depth)
{
    if (depth > TB_JV_MAX_NEST - 1) {
        return tb_jrt_fail(rt, TB_EINVAL, "context nested deeper than %d levels",
                           TB_JV_MAX_NEST - 1);
    }
    switch (json_typeof(j)) {
    case JSON_NULL:
        return tb_jv_none();
    case JSON_TRUE:
        return tb_jv_bool(true);
    case JSON_FALSE:
        return tb_jv_bool(false);
    case JSON_INTEGER:
        return tb_jv_int((int64_t)json_integer_value(j));
    case JSON_REAL:
        return tb_jv_float(json_real_value(j));
    case JSON_STRING:
        return tb_jv_str_new(rt, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        tb_jv_t l = tb_jv_list_new(rt, json_array_size(j));
        if (tb_jv_is_err(l)) {
            return l;
        }
        size_t i;
        json_t *e;
        json_array_foreach(j, i, e)
        {
            tb_jv_t item = tb_jv_from_json(rt, e, depth + 1);
            if (tb_jv_is_err(item) || !tb_jv_list_push(rt, l.u.l, item)) {
                tb_jv_unref(l);
                return tb_jv_err();
            }
        }
        return l;
    }
    case JSON_OBJECT: {
        tb_jv_t d = tb_jv_dict_new(rt, json_object_size(j));
        if (tb_jv_is_err(d)) {
            return d;
        }
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)j, k, e)
        {
            tb_jv_t item = tb_jv_from_json(rt, e, depth + 1);
            if (tb_jv_is_err(item) || !tb_jv_dict_set(rt, d.u.d, k, strlen(k), item)) {
                tb_jv_unref(d);
                return tb_jv_err();
            }
        }
        return d;
    }
    }
    return tb_jv_none();
}

/* ------------------------------------------------------------------ Python semantics */

bool tb_jv_truthy(tb_jv_t v)
{
    switch (v.kind) {
    case TB_JV_BOOL:
        return v.u.b;
    case TB_JV_INT:
        return v.u.i != 0;
    case TB_JV_FLOAT:
        return v.u.f != 0.0;
    case TB_JV_STR:
        return v.u.s->len > 0;
    case TB_JV_LIST:
        return v.u.l->n > 0;
    case TB_JV_DICT:
        return v.u.d->ns || v.u.d->n > 0;
    case TB_JV_FUNC:
    case TB_JV_LOOP:
        return true;
    default:
        return false;
    }
}

static bool s_is_num(tb_jv_t v)
{
    return v.kind == TB_JV_INT || v.kind == TB_JV_FLOAT || v.kind == TB_JV_BOOL;
}

bool tb_jv_equal(tb_jv_t a, tb_jv_t b)
{
    if (s_is_num(a) && s_is_num(b)) {
        if (a.kind == TB_JV_FLOAT || b.kind == TB_JV_FLOAT) {
            double x = a.kind == TB_JV_FLOAT ? a.u.f
                                             : (double)(a.kind == TB_JV_INT ? a.u.i : a.u.b);
            double y = b.kind == TB_JV_FLOAT ? b.u.f
                                             : (double)(b.kind == TB_JV_INT ? b.u.i : b.u.b);
            return x == y;
        }
        int64_t x = a.kind == TB_JV_INT ? a.u.i : a.u.b;
        int64_t y = b.kind == TB_JV_INT ? b.u.i : b.u.b;
        return x == y;
    }
    if (a.kind != b.kind) {
        return false;
    }
    switch (a.kind) {
    case TB_JV_UNDEFINED:
    case TB_JV_NONE:
        return true;
    case TB_JV_STR:
        return a.u.s->len == b.u.s->len && memcmp(a.u.s->data, b.u.s->data, a.u.s->len) == 0;
    case TB_JV_LIST:
        if (a.u.l == b.u.l) {
            return true;
        }
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n) {
            return false;
        }
        for (size_t i = 0; i < a.u.l->n; i++) {
            if (!tb_jv_equal(a.u.l->items[i], b.u.l->items[i])) {
                return false;
            }
        }
        return true;
    case TB_JV_DICT:
        if (a.u.d == b.u.d) {
            return true;
        }
        if (a.u.d->ns || b.u.d->ns || a.u.d->n != b.u.d->n) {
            return false;
        }
        for (size_t i = 0; i < a.u.d->n; i++) {
            tb_jv_t *o = tb_jv_dict_get(b.u.d, a.u.d->keys[i]->data, a.u.d->keys[i]->len);
            if (!o || !tb_jv_equal(a.u.d->vals[i], *o)) {
                return false;
            }
        }
        return true;
    case TB_JV_FUNC:
        return a.u.fn == b.u.fn;
    case TB_JV_LOOP:
        return a.u.loop == b.u.loop;
    default:
        return false;
    }
}

const char *tb_jv_type_name(tb_jv_t v)
{
    switch (v.kind) {
    case TB_JV_UNDEFINED:
        return "undefined";
    case TB_JV_NONE:
        return "NoneType";
    case TB_JV_BOOL:
        return "bool";
    case TB_JV_INT:
        return "int";
    case TB_JV_FLOAT:
        return "float";
    case TB_JV_STR:
        return "str";
    case TB_JV_LIST:
        return v.u.l->tuple ? "tuple" : "list";
    case TB_JV_DICT:
        return v.u.d->ns ? "Namespace" : "dict";
    case TB_JV_FUNC:
        return "function";
    case TB_JV_LOOP:
        return "LoopContext";
    default:
        return "error";
    }
}

/* ------------------------------------------------------------------ buffers */

void tb_jbuf_init(tb_jbuf_t *b, tb_jrt_t *rt)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->rt = rt;
}

void tb_jbuf_release(tb_jbuf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

bool tb_jbuf_add(tb_jbuf_t *b, const char *s, size_t n)
{
    if (n == 0) {
        return true;
    }
    if (n > b->rt->limits.max_output_bytes || b->len > b->rt->limits.max_output_bytes - n) {
        tb_jrt_fail(b->rt, TB_E2BIG, "output is over the %zu-byte bound",
                    b->rt->limits.max_output_bytes);
        return false;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 64;
        while (ncap < b->len + n + 1) {
            ncap *= 2;
        }
        if (!tb_jrt_charge(b->rt, ncap - b->cap)) {
            return false;
        }
        char *nd = realloc(b->data, ncap);
        if (!nd) {
            tb_jrt_fail(b->rt, TB_ENOMEM, "out of memory");
            return false;
        }
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

bool tb_jbuf_addc(tb_jbuf_t *b, char c)
{
    return tb_jbuf_add(b, &c, 1);
}

tb_jv_t tb_jbuf_to_str(tb_jbuf_t *b)
{
    tb_jv_t v = tb_jv_str_new(b->rt, b->data ? b->data : "", b->len);
    tb_jbuf_release(b);
    return v;
}

/* ------------------------------------------------------------------ float repr */

void tb_jv_float_repr(double f, char *buf, size_t size)
{
    if (isnan(f)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, size, f < 0 ? "-inf" : "inf");
        return;
    }
    /* Shortest digit string that reads back to the same double, as Python's repr. */
    char tmp[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) {
            break;
        }
    }
    /* tmp is [-]d[.ddd]e[+-]XX */
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9' && nd < sizeof(digits) - 1) {
            digits[nd++] = *p;
        }
    }
    int exp10 = atoi(*p == 'e' ? p + 1 : "0");
    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }
    digits[nd] = '\0';
    int decpt = exp10 + 1;
    if (f == 0.0) {
        decpt = 1;
    }
    char out[64];
    size_t o = 0;
    if (neg) {
        out[o++] = '-';
    }
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -decpt; i++) {
                out[o++] = '0';
            }
            for (size_t i = 0; i < nd; i++) {
                out[o++] = digits[i];
            }
        } else if ((size_t)decpt >= nd) {
            for (size_t i = 0; i < nd; i++) {
                out[o++] = digits[i];
            }
            for (size_t i = nd; i < (size_t)decpt; i++) {
                out[o++] = '0';
            }
            out[o++] = '.';
            out[o++] = '0';
        } else {
            for (size_t i = 0; i < nd; i++) {
                if ((int)i == decpt) {
                    out[o++] = '.';
                }
                out[o++] = digits[i];
            }
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++) {
                out[o++] = digits[i];
            }
        }
        int e = decpt - 1;
        snprintf(out + o, sizeof(out) - o, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
    snprintf(buf, size, "%s", out);
}

/* ------------------------------------------------------------------ str / repr / json */

static bool s_write_int(tb_jbuf_t *b, int64_t i)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)i);
    return tb_jbuf_add(b, tmp, (size_t)n);
}

static bool s_write_float(tb_jbuf_t *b, double f)
{
    char tmp[64];
    tb_jv_float_repr(f, tmp, sizeof(tmp));
    return tb_jbuf_add(b, tmp, strlen(tmp));
}

/* Python's str.isprintable() for one code point, approximately: the control, separator and
 * format characters of the BMP that repr() escapes. */
static bool s_py_printable(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) {
        return false;
    }
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
        (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF ||
        (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0xFFF9 && cp <= 0xFFFB)) {
        return false;
    }
    return true;
}

static bool s_write_str_repr(tb_jbuf_t *b, const char *s, size_t len)
{
    bool has_sq = memchr(s, '\'', len) != NULL;
    bool has_dq = memchr(s, '"', len) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    if (!tb_jbuf_addc(b, q)) {
        return false;
    }
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        uint32_t cp = tb_utf8_next(s, len, &i);
        char tmp[16];
        const char *rep = NULL;
        if (cp == (uint32_t)q || cp == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)cp;
            tmp[2] = '\0';
            rep = tmp;
        } else if (cp == '\n') {
            rep = "\\n";
        } else if (cp == '\r') {
            rep = "\\r";
        } else if (cp == '\t') {
            rep = "\\t";
        } else if (!s_py_printable(cp)) {
            if (cp < 0x100) {
                snprintf(tmp, sizeof(tmp), "\\x%02x", cp);
            } else if (cp < 0x10000) {
                snprintf(tmp, sizeof(tmp), "\\u%04x", cp);
            } else {
                snprintf(tmp, sizeof(tmp), "\\U%08x", cp);
            }
            rep = tmp;
        }
        bool ok = rep ? tb_jbuf_add(b, rep, strlen(rep)) : tb_jbuf_add(b, s + start, i - start);
        if (!ok) {
            return false;
        }
    }
    return tb_jbuf_addc(b, q);
}

static bool s_write_container(tb_jbuf_t *b, tb_jv_t v)
{
    if (v.kind == TB_JV_LIST) {
        tb_jv_list_t *l = v.u.l;
        if (!tb_jbuf_addc(b, l->tuple ? '(' : '[')) {
            return false;
        }
        for (size_t i = 0; i < l->n; i++) {
            if (i > 0 && !tb_jbuf_add(b, ", ", 2)) {
                return false;
            }
            if (!tb_jv_write_repr(b, l->items[i])) {
                return false;
            }
        }
        if (l->tuple && l->n == 1 && !tb_jbuf_addc(b, ',')) {
            return false;
        }
        return tb_jbuf_addc(b, l->tuple ? ')' : ']');
    }
    tb_jv_dict_t *d = v.u.d;
    if (d->ns && !tb_jbuf_add(b, "<Namespace ", 11)) {
        return false;
    }
    if (!tb_jbuf_addc(b, '{')) {
        return false;
    }
    for (size_t i = 0; i < d->n; i++) {
        if (i > 0 && !tb_jbuf_add(b, ", ", 2)) {
            return false;
        }
        if (!s_write_str_repr(b, d->keys[i]->data, d->keys[i]->len) || !tb_jbuf_add(b, ": ", 2) ||
            !tb_jv_write_repr(b, d->vals[i])) {
            return false;
        }
    }
    if (!tb_jbuf_addc(b, '}')) {
        return false;
    }
    return !d->ns || tb_jbuf_addc(b, '>');
}

static bool s_write_other(tb_jbuf_t *b, tb_jv_t v)
{
    char tmp[96];
    if (v.kind == TB_JV_FUNC) {
        snprintf(tmp, sizeof(tmp), "<function %s>", v.u.fn->name ? v.u.fn->name : "?");
    } else {
        snprintf(tmp, sizeof(tmp), "<LoopContext %zu/%zu>", v.u.loop->index0 + 1,
                 v.u.loop->length);
    }
    return tb_jbuf_add(b, tmp, strlen(tmp));
}

bool tb_jv_write_str(tb_jbuf_t *b, tb_jv_t v)
{
    switch (v.kind) {
    case TB_JV_UNDEFINED:
        return true;
    case TB_JV_NONE:
        return tb_jbuf_add(b, "None", 4);
    case TB_JV_BOOL:
        return v.u.b ? tb_jbuf_add(b, "True", 4) : tb_jbuf_add(b, "False", 5);
    case TB_JV_INT:
        return s_write_int(b, v.u.i);
    case TB_JV_FLOAT:
        return s_write_float(b, v.u.f);
    case TB_JV_STR:
        return tb_jbuf_add(b, v.u.s->data, v.u.s->len);
    case TB_JV_LIST:
    case TB_JV_DICT:
        return s_write_container(b, v);
    case TB_JV_FUNC:
    case TB_JV_LOOP:
        return s_write_other(b, v);
    default:
        return false;
    }
}

bool tb_jv_write_repr(tb_jbuf_t *b, tb_jv_t v)
{
    if (v.kind == TB_JV_STR) {
        return s_write_str_repr(b, v.u.s->data, v.u.s->len);
    }
    if (v.kind == TB_JV_UNDEFINED) {
        return tb_jbuf_add(b, "Undefined", 9);
    }
    return tb_jv_write_str(b, v);
}

static bool s_json_str(tb_jbuf_t *b, const char *s, size_t len, bool ensure_ascii)
{
    if (!tb_jbuf_addc(b, '"')) {
        return false;
    }
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        uint32_t cp = tb_utf8_next(s, len, &i);
        char tmp[16];
        const char *rep = NULL;
        switch (cp) {
        case '"':
            rep = "\\\"";
            break;
        case '\\':
            rep = "\\\\";
            break;
        case '\n':
            rep = "\\n";
            break;
        case '\r':
            rep = "\\r";
            break;
        case '\t':
            rep = "\\t";
            break;
        case '\b':
            rep = "\\b";
            break;
        case '\f':
            rep = "\\f";
            break;
        default:
            if (cp < 0x20 || (ensure_ascii && cp == 0x7F)) {
                snprintf(tmp, sizeof(tmp), "\\u%04x", cp);
                rep = tmp;
            } else if (ensure_ascii && cp > 0x7F) {
                if (cp >= 0x10000) {
                    uint32_t c = cp - 0x10000;
                    snprintf(tmp, sizeof(tmp), "\\u%04x\\u%04x", 0xD800 + (c >> 10),
                             0xDC00 + (c & 0x3FF));
                } else {
                    snprintf(tmp, sizeof(tmp), "\\u%04x", cp);
                }
                rep = tmp;
            }
            break;
        }
        bool ok = rep ? tb_jbuf_add(b, rep, strlen(rep)) : tb_jbuf_add(b, s + start, i - start);
        if (!ok) {
            return false;
        }
    }
    return tb_jbuf_addc(b, '"');
}

typedef struct {
    const char *indent; /* NULL: no newlines */
    const char *item_sep;
    const char *key_sep;
    bool sort_keys;
    bool ensure_ascii;
} s_json_opts_t;

static bool s_json_newline(tb_jbuf_t *b, const s_json_opts_t *o, int level)
{
    if (!tb_jbuf_addc(b, '\n')) {
        return false;
    }
    size_t il = strlen(o->indent);
    for (int i = 0; i < level; i++) {
        if (!tb_jbuf_add(b, o->indent, il)) {
            return false;
        }
    }
    return true;
}

static int s_key_cmp(const void *a, const void *b)
{
    const tb_jv_str_t *x = *(tb_jv_str_t *const *)a;
    const tb_jv_str_t *y = *(tb_jv_str_t *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->data, y->data, n);
    if (c != 0) {
        return c;
    }
    return x->len < y->len ? -1 : (x->len > y->len);
}

static bool s_json(tb_jbuf_t *b, tb_jv_t v, const s_json_opts_t *o, int level)
{
    switch (v.kind) {
    case TB_JV_NONE:
        return tb_jbuf_add(b, "null", 4);
    case TB_JV_BOOL:
        return v.u.b ? tb_jbuf_add(b, "true", 4) : tb_jbuf_add(b, "false", 5);
    case TB_JV_INT:
        return s_write_int(b, v.u.i);
    case TB_JV_FLOAT:
        if (isnan(v.u.f)) {
            return tb_jbuf_add(b, "NaN", 3);
        }
        if (isinf(v.u.f)) {
            return v.u.f < 0 ? tb_jbuf_add(b, "-Infinity", 9) : tb_jbuf_add(b, "Infinity", 8);
        }
        return s_write_float(b, v.u.f);
    case TB_JV_STR:
        return s_json_str(b, v.u.s->data, v.u.s->len, o->ensure_ascii);
    case TB_JV_LIST: {
        tb_jv_list_t *l = v.u.l;
        if (l->n == 0) {
            return tb_jbuf_add(b, "[]", 2);
        }
        if (!tb_jbuf_addc(b, '[')) {
            return false;
        }
        for (size_t i = 0; i < l->n; i++) {
            if (i > 0 && !tb_jbuf_add(b, o->item_sep, strlen(o->item_sep))) {
                return false;
            }
            if (o->indent && !s_json_newline(b, o, level + 1)) {
                return false;
            }
            if (!s_json(b, l->items[i], o, level + 1)) {
                return false;
            }
        }
        if (o->indent && !s_json_newline(b, o, level)) {
            return false;
        }
        return tb_jbuf_addc(b, ']');
    }
    case TB_JV_DICT: {
        tb_jv_dict_t *d = v.u.d;
        if (d->ns) {
            break;
        }
        if (d->n == 0) {
            return tb_jbuf_add(b, "{}", 2);
        }
        size_t *order = malloc(d->n * sizeof(size_t));
        tb_jv_str_t **keys = o->sort_keys ? malloc(d->n * sizeof(*keys)) : NULL;
        if (!order || (o->sort_keys && !keys)) {
            free(order);
            free(keys);
            tb_jrt_fail(b->rt, TB_ENOMEM, "out of memory");
            return false;
        }
        for (size_t i = 0; i < d->n; i++) {
            order[i] = i;
        }
        if (keys) {
            memcpy(keys, d->keys, d->n * sizeof(*keys));
            qsort(keys, d->n, sizeof(*keys), s_key_cmp);
            for (size_t i = 0; i < d->n; i++) {
                order[i] = s_dict_find(d, keys[i]->data, keys[i]->len);
            }
            free(keys);
        }
        bool ok = tb_jbuf_addc(b, '{');
        for (size_t k = 0; ok && k < d->n; k++) {
            size_t i = order[k];
            if (k > 0) {
                ok = tb_jbuf_add(b, o->item_sep, strlen(o->item_sep));
            }
            if (ok && o->indent) {
                ok = s_json_newline(b, o, level + 1);
            }
            ok = ok && s_json_str(b, d->keys[i]->data, d->keys[i]->len, o->ensure_ascii) &&
                 tb_jbuf_add(b, o->key_sep, strlen(o->key_sep)) &&
                 s_json(b, d->vals[i], o, level + 1);
        }
        free(order);
        if (ok && o->indent) {
            ok = s_json_newline(b, o, level);
        }
        return ok && tb_jbuf_addc(b, '}');
    }
    default:
        break;
    }
    tb_jrt_fail(b->rt, TB_EINVAL, "Object of type %s is not JSON serializable",
                tb_jv_type_name(v));
    return false;
}

bool tb_jv_write_json(tb_jbuf_t *b, tb_jv_t v, int indent, const char *item_sep,
                      const char *key_sep, bool sort_keys, bool ensure_ascii)
{
    char ind[64];
    s_json_opts_t o;
    o.indent = NULL;
    if (indent >= 0) {
        int n = indent < (int)sizeof(ind) - 1 ? indent : (int)sizeof(ind) - 1;
        memset(ind, ' ', (size_t)n);
        ind[n] = '\0';
        o.indent = ind;
    }
    o.item_sep = item_sep ? item_sep : (indent >= 0 ? "," : ", ");
    o.key_sep = key_sep ? key_sep : ": ";
    o.sort_keys = sort_keys;
    o.ensure_ascii = ensure_ascii;
    return s_json(b, v, &o, 0);
}

tb_jv_t tb_jv_to_str(tb_jrt_t *rt, tb_jv_t v)
{
    if (v.kind == TB_JV_STR) {
        return tb_jv_ref(v);
    }
    tb_jbuf_t b;
    tb_jbuf_init(&b, rt);
    if (!tb_jv_write_str(&b, v)) {
        tb_jbuf_release(&b);
        return tb_jv_err();
    }
    return tb_jbuf_to_str(&b);
}

/* ------------------------------------------------- Python string helpers */

bool tb_py_isspace(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

size_t tb_utf8_offset(const char *s, size_t len, size_t cp)
{
    size_t i = 0;
    while (cp > 0 && i < len) {
        i++;
        while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80) {
            i++;
        }
        cp--;
    }
    return i;
}

uint32_t tb_jrt_upper(const tb_jrt_t *rt, uint32_t cp)
{
    if (cp < 0x80) {
        return (cp >= 'a' && cp <= 'z') ? cp - 32 : cp;
    }
    if (rt->loc != (locale_t)0) {
        return (uint32_t)towupper_l((wint_t)cp, rt->loc);
    }
    return cp;
}

uint32_t tb_jrt_lower(const tb_jrt_t *rt, uint32_t cp)
{
    if (cp < 0x80) {
        return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    }
    if (rt->loc != (locale_t)0) {
        return (uint32_t)towlower_l((wint_t)cp, rt->loc);
    }
    return cp;
}

bool tb_jrt_is_cased(const tb_jrt_t *rt, uint32_t cp)
{
    if (cp >= 0x80 && rt->loc != (locale_t)0) {
        return iswupper_l((wint_t)cp, rt->loc) || iswlower_l((wint_t)cp, rt->loc) ||
               towupper_l((wint_t)cp, rt->loc) != (wint_t)cp;
    }
    return tb_jrt_upper(rt, cp) != cp || tb_jrt_lower(rt, cp) != cp;
}
