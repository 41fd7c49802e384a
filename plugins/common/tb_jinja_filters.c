/*
 * tb_jinja_filters.c - the filters of the Jinja interpreter and the string helpers they share
 * with Python's str methods (strip, case mapping, replace, % formatting); see
 * tb_jinja_builtins.h.  Each filter follows jinja2 3.1's definition in jinja2/filters.py, with
 * `tojson` replaced by Hugging Face's json.dumps(ensure_ascii=False) version.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_jinja_builtins.h"

/* ------------------------------------------------------------------ string helpers */

static bool s_in_chars(uint32_t cp, const tb_jv_t *chars)
{
    if (!chars || chars->kind != TB_JV_STR) {
        return tb_py_isspace(cp);
    }
    size_t i = 0;
    while (i < chars->u.s->len) {
        if (tb_utf8_next(chars->u.s->data, chars->u.s->len, &i) == cp) {
            return true;
        }
    }
    return false;
}

tb_jv_t tb_jinja_str_strip(tb_jeval_t *ev, tb_jv_str_t *s, const tb_jv_t *chars, bool left,
                           bool right)
{
    size_t a = 0, b = s->len;
    if (left) {
        while (a < b) {
            size_t j = a;
            if (!s_in_chars(tb_utf8_next(s->data, s->len, &j), chars)) {
                break;
            }
            a = j;
        }
    }
    if (right) {
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s->data[k] & 0xC0) == 0x80) {
                k--;
            }
            size_t j = k;
            if (!s_in_chars(tb_utf8_next(s->data, s->len, &j), chars)) {
                break;
            }
            b = k;
        }
    }
    return tb_jv_str_new(&ev->rt, s->data + a, b - a);
}

static bool s_put_cp(tb_jbuf_t *b, uint32_t cp)
{
    char enc[4];
    size_t n = tb_utf8_encode(cp, enc);
    if (n == 0) {
        n = tb_utf8_encode(0xFFFD, enc);
    }
    return tb_jbuf_add(b, enc, n);
}

/* jinja2's title filter splits words at runs of '-', whitespace, '[', '(' and '{'. */
static bool s_jtitle_delim(uint32_t cp)
{
    return cp == '-' || cp == '[' || cp == '(' || cp == '{' || tb_py_isspace(cp);
}

/* Python's full case mappings that are not one code point to one (SpecialCasing.txt):
 * the common ones, by mode (0 upper, 1 lower, 2 title). */
static const struct {
    uint32_t cp;
    const char *map[3];
} s_special[] = {
    {0x00DF, {"SS", NULL, "Ss"}},                             /* sharp s */
    {0x0130, {NULL, "i\xcc\x87", NULL}},                      /* capital I with dot */
    {0x0149, {"\xca\xbcN", NULL, "\xca\xbcN"}},               /* n preceded by apostrophe */
    {0x01F0, {"J\xcc\x8c", NULL, "J\xcc\x8c"}},               /* j with caron */
    {0x0587, {"\xd4\xb5\xd5\x92", NULL, "\xd4\xb5\xd6\x82"}}, /* Armenian ech yiwn */
    {0xFB00, {"FF", NULL, "Ff"}},
    {0xFB01, {"FI", NULL, "Fi"}},
    {0xFB02, {"FL", NULL, "Fl"}},
    {0xFB03, {"FFI", NULL, "Ffi"}},
    {0xFB04, {"FFL", NULL, "Ffl"}},
    {0xFB05, {"ST", NULL, "St"}},
    {0xFB06, {"ST", NULL, "St"}},
};

/* Appends the mapping of cp (0 upper, 1 lower, 2 title). */
static bool s_put_case(tb_jeval_t *ev, tb_jbuf_t *b, uint32_t cp, int how)
{
    if (cp >= 0x80) {
        for (size_t i = 0; i < sizeof(s_special) / sizeof(s_special[0]); i++) {
            if (s_special[i].cp == cp && s_special[i].map[how]) {
                return tb_jbuf_add(b, s_special[i].map[how], strlen(s_special[i].map[how]));
            }
        }
        if (how == 2) {
            /* the digraphs with a distinct title case: DŽ Dž dž -> Dž, LJ.. -> Lj, NJ.. -> Nj,
             * DZ.. -> Dz */
            if (cp >= 0x01C4 && cp <= 0x01CC) {
                return s_put_cp(b, 0x01C5 + 3 * ((cp - 0x01C4) / 3));
            }
            if (cp >= 0x01F1 && cp <= 0x01F3) {
                return s_put_cp(b, 0x01F2);
            }
        }
    }
    uint32_t out = how == 1 ? tb_jrt_lower(&ev->rt, cp) : tb_jrt_upper(&ev->rt, cp);
    return s_put_cp(b, out);
}

tb_jv_t tb_jinja_str_case(tb_jeval_t *ev, tb_jv_str_t *s, int mode)
{
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    size_t i = 0;
    bool first = true;
    bool prev_cased = false;
    bool prev_delim = true;
    while (i < s->len) {
        uint32_t cp = tb_utf8_next(s->data, s->len, &i);
        int how = -1; /* -1: unchanged, else as s_put_case */
        switch (mode) {
        case TB_JCASE_UPPER:
            how = 0;
            break;
        case TB_JCASE_LOWER:
            how = 1;
            break;
        case TB_JCASE_CAPITALIZE:
            how = first ? 2 : 1;
            break;
        case TB_JCASE_TITLE: {
            bool cased = tb_jrt_is_cased(&ev->rt, cp);
            if (cased) {
                how = prev_cased ? 1 : 2;
            }
            prev_cased = cased;
            break;
        }
        default: { /* jinja title: each word's first char .upper(), the rest .lower() */
            bool delim = s_jtitle_delim(cp);
            if (!delim) {
                how = prev_delim ? 0 : 1;
            }
            prev_delim = delim;
            break;
        }
        }
        first = false;
        bool ok = how < 0 ? s_put_cp(&b, cp) : s_put_case(ev, &b, cp, how);
        if (!ok) {
            tb_jbuf_release(&b);
            return tb_jv_err();
        }
    }
    return tb_jbuf_to_str(&b);
}

tb_jv_t tb_jinja_str_replace(tb_jeval_t *ev, tb_jv_str_t *s, tb_jv_t old, tb_jv_t new_,
                             int64_t count)
{
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    const char *o = old.u.s->data, *n = new_.u.s->data;
    size_t ol = old.u.s->len, nl = new_.u.s->len;
    size_t at = 0;
    int64_t done = 0;
    bool ok = true;
    if (ol == 0) {
        /* Python inserts `new` before every code point and at the end */
        while (ok && (count < 0 || done < count) && at <= s->len) {
            ok = tb_jbuf_add(&b, n, nl);
            done++;
            if (at == s->len) {
                at++;
                break;
            }
            size_t j = at;
            tb_utf8_next(s->data, s->len, &j);
            ok = ok && tb_jbuf_add(&b, s->data + at, j - at);
            at = j;
        }
        if (ok && at < s->len) {
            ok = tb_jbuf_add(&b, s->data + at, s->len - at);
        }
    } else {
        while (ok && (count < 0 || done < count)) {
            const char *hit = memmem(s->data + at, s->len - at, o, ol);
            if (!hit) {
                break;
            }
            size_t h = (size_t)(hit - s->data);
            ok = tb_jbuf_add(&b, s->data + at, h - at) && tb_jbuf_add(&b, n, nl) &&
                 tb_jinja_eval_step(ev, 1);
            at = h + ol;
            done++;
        }
        ok = ok && tb_jbuf_add(&b, s->data + at, s->len - at);
    }
    if (!ok) {
        tb_jbuf_release(&b);
        return tb_jv_err();
    }
    return tb_jbuf_to_str(&b);
}

tb_jv_t tb_jinja_percent_format(tb_jeval_t *ev, tb_jv_str_t *fmt, tb_jv_t args)
{
    tb_jv_t one[1] = {args};
    const tb_jv_t *items = one;
    size_t n = 1, used = 0;
    if (args.kind == TB_JV_LIST && args.u.l->tuple) {
        items = args.u.l->items;
        n = args.u.l->n;
    }
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    const char *f = fmt->data;
    size_t len = fmt->len;
    for (size_t i = 0; i < len; i++) {
        if (f[i] != '%') {
            if (!tb_jbuf_addc(&b, f[i])) {
                goto fail;
            }
            continue;
        }
        if (++i >= len) {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "incomplete format");
            goto fail;
        }
        char c = f[i];
        if (c == '%') {
            if (!tb_jbuf_addc(&b, '%')) {
                goto fail;
            }
            continue;
        }
        if (used >= n) {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "not enough arguments for format string");
            goto fail;
        }
        tb_jv_t v = items[used++];
        bool ok;
        if (c == 's') {
            ok = tb_jv_write_str(&b, v);
        } else if (c == 'r') {
            ok = tb_jv_write_repr(&b, v);
        } else if ((c == 'd' || c == 'i' || c == 'x' || c == 'f') &&
                   (v.kind == TB_JV_INT || v.kind == TB_JV_BOOL || v.kind == TB_JV_FLOAT)) {
            char tmp[64];
            double dv = v.kind == TB_JV_FLOAT ? v.u.f
                                              : (double)(v.kind == TB_JV_INT ? v.u.i : v.u.b);
            int64_t iv = v.kind == TB_JV_FLOAT ? (int64_t)v.u.f
                                               : (v.kind == TB_JV_INT ? v.u.i : v.u.b);
            if (c == 'f') {
                snprintf(tmp, sizeof(tmp), "%f", dv);
            } else if (c == 'x') {
                snprintf(tmp, sizeof(tmp), "%s%llx", iv < 0 ? "-" : "",
                         (unsigned long long)(iv < 0 ? -(uint64_t)iv : (uint64_t)iv));
            } else {
                snprintf(tmp, sizeof(tmp), "%lld", (long long)iv);
            }
            ok = tb_jbuf_add(&b, tmp, strlen(tmp));
        } else {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "unsupported %% format '%c' (supported: s r d i f x)",
                        c);
            goto fail;
        }
        if (!ok) {
            goto fail;
        }
    }
    /* Python skips this check when the argument supports item access (lists, dicts) */
    bool mapping = args.kind == TB_JV_DICT || (args.kind == TB_JV_LIST && !args.u.l->tuple);
    if (used < n && !mapping) {
        tb_jrt_fail(&ev->rt, TB_EINVAL, "not all arguments converted during string formatting");
        goto fail;
    }
    return tb_jbuf_to_str(&b);
fail:
    tb_jbuf_release(&b);
    return tb_jv_err();
}

/* ------------------------------------------------------------------ sorting */

typedef struct {
    tb_jeval_t *ev;
    bool case_sensitive;
    bool failed;
} s_sort_t;

/* The sort key of an item: strings lowercased unless case_sensitive (new reference). */
static tb_jv_t s_key(tb_jeval_t *ev, tb_jv_t v, bool case_sensitive)
{
    if (!case_sensitive && v.kind == TB_JV_STR) {
        return tb_jinja_str_case(ev, v.u.s, TB_JCASE_LOWER);
    }
    return tb_jv_ref(v);
}

static int s_cmp(s_sort_t *st, tb_jv_t a, tb_jv_t b)
{
    int c = 0;
    if (!st->failed && tb_jinja_order(st->ev, a, b, &c) != 0) {
        st->failed = true;
    }
    return c;
}

/* Stable merge sort of idx[0..n) by keys[idx]. */
static void s_msort(s_sort_t *st, const tb_jv_t *keys, size_t *idx, size_t *tmp, size_t n)
{
    if (n < 2 || st->failed) {
        return;
    }
    size_t h = n / 2;
    s_msort(st, keys, idx, tmp, h);
    s_msort(st, keys, idx + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        if (s_cmp(st, keys[idx[j]], keys[idx[i]]) < 0) {
            tmp[k++] = idx[j++];
        } else {
            tmp[k++] = idx[i++];
        }
    }
    while (i < h) {
        tmp[k++] = idx[i++];
    }
    while (j < n) {
        tmp[k++] = idx[j++];
    }
    memcpy(idx, tmp, n * sizeof(size_t));
}

/* Follows a dotted attribute path with item-then-attribute lookups (jinja's attrgetter). */
static tb_jv_t s_attr_path(tb_jeval_t *ev, tb_jv_t item, const tb_jv_t *attribute)
{
    if (!attribute || attribute->kind == TB_JV_NONE) {
        return tb_jv_ref(item);
    }
    if (attribute->kind == TB_JV_INT) {
        return tb_jinja_getitem(ev, item, *attribute);
    }
    if (attribute->kind != TB_JV_STR) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "attribute must be a string");
    }
    tb_jv_t cur = tb_jv_ref(item);
    const char *p = attribute->u.s->data;
    const char *end = p + attribute->u.s->len;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        tb_jv_t key;
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++) {
            digits &= p[i] >= '0' && p[i] <= '9';
        }
        if (digits && n < 18) {
            key = tb_jv_int(strtoll(p, NULL, 10));
        } else {
            key = tb_jv_str_new(&ev->rt, p, n);
        }
        if (tb_jv_is_err(key)) {
            tb_jv_unref(cur);
            return key;
        }
        tb_jv_t next = cur.kind == TB_JV_UNDEFINED ? tb_jinja_undefined_error(ev, cur)
                                                   : tb_jinja_getitem(ev, cur, key);
        tb_jv_unref(key);
        tb_jv_unref(cur);
        if (tb_jv_is_err(next)) {
            return next;
        }
        cur = next;
        if (!dot) {
            break;
        }
        p = dot + 1;
    }
    return cur;
}

/* Sorts `items` (a list value) by attribute; returns a new list. */
static tb_jv_t s_sorted(tb_jeval_t *ev, tb_jv_t items, bool reverse, bool case_sensitive,
                        const tb_jv_t *attribute)
{
    size_t n = items.u.l->n;
    if (!tb_jinja_eval_step(ev, n + 1) || !tb_jrt_charge(&ev->rt, n * 3 * sizeof(size_t) * 2)) {
        return tb_jv_err();
    }
    tb_jv_t *keys = calloc(n ? n : 1, sizeof(tb_jv_t));
    size_t *idx = malloc((n ? n : 1) * sizeof(size_t));
    size_t *tmp = malloc((n ? n : 1) * sizeof(size_t));
    tb_jv_t r = tb_jv_err();
    s_sort_t st = {ev, case_sensitive, false};
    size_t made = 0;
    if (!keys || !idx || !tmp) {
        tb_jrt_fail(&ev->rt, TB_ENOMEM, "out of memory");
        goto done;
    }
    for (; made < n; made++) {
        tb_jv_t k = s_attr_path(ev, items.u.l->items[made], attribute);
        if (tb_jv_is_err(k)) {
            goto done;
        }
        keys[made] = s_key(ev, k, case_sensitive);
        tb_jv_unref(k);
        if (tb_jv_is_err(keys[made])) {
            goto done;
        }
        idx[made] = made;
    }
    if (reverse) {
        /* Python's reverse sort keeps equal items in order: sort reversed input, reverse */
        for (size_t i = 0; i < n / 2; i++) {
            size_t t = idx[i];
            idx[i] = idx[n - 1 - i];
            idx[n - 1 - i] = t;
        }
    }
    s_msort(&st, keys, idx, tmp, n);
    if (st.failed) {
        goto done;
    }
    if (reverse) {
        for (size_t i = 0; i < n / 2; i++) {
            size_t t = idx[i];
            idx[i] = idx[n - 1 - i];
            idx[n - 1 - i] = t;
        }
    }
    r = tb_jv_list_new(&ev->rt, n);
    for (size_t i = 0; !tb_jv_is_err(r) && i < n; i++) {
        if (!tb_jv_list_push(&ev->rt, r.u.l, tb_jv_ref(items.u.l->items[idx[i]]))) {
            tb_jv_unref(r);
            r = tb_jv_err();
        }
    }
done:
    for (size_t i = 0; keys && i < made; i++) {
        tb_jv_unref(keys[i]);
    }
    free(keys);
    free(idx);
    free(tmp);
    return r;
}

/* ------------------------------------------------------------------ filters */

typedef tb_jv_t (*s_filter_fn)(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a);

static bool s_flag(const tb_jargs_t *a, size_t idx, const char *name, bool def)
{
    const tb_jv_t *v = tb_jarg(a, idx, name);
    return v ? tb_jv_truthy(*v) : def;
}

static tb_jv_t s_f_str(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    return tb_jv_to_str(&ev->rt, in);
}

static tb_jv_t s_f_case(tb_jeval_t *ev, tb_jv_t in, int mode)
{
    tb_jv_t s = tb_jv_to_str(&ev->rt, in);
    if (tb_jv_is_err(s)) {
        return s;
    }
    tb_jv_t r = tb_jinja_str_case(ev, s.u.s, mode);
    tb_jv_unref(s);
    return r;
}

static tb_jv_t s_f_upper(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    return s_f_case(ev, in, TB_JCASE_UPPER);
}

static tb_jv_t s_f_lower(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    return s_f_case(ev, in, TB_JCASE_LOWER);
}

static tb_jv_t s_f_capitalize(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    return s_f_case(ev, in, TB_JCASE_CAPITALIZE);
}

static tb_jv_t s_f_title(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    return s_f_case(ev, in, TB_JCASE_JTITLE);
}

static tb_jv_t s_f_trim(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    tb_jv_t s = tb_jv_to_str(&ev->rt, in);
    if (tb_jv_is_err(s)) {
        return s;
    }
    tb_jv_t r = tb_jinja_str_strip(ev, s.u.s, tb_jarg(a, 0, "chars"), true, true);
    tb_jv_unref(s);
    return r;
}

static tb_jv_t s_f_length(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    switch (in.kind) {
    case TB_JV_STR:
        return tb_jv_int((int64_t)tb_jv_str_ncp(in.u.s));
    case TB_JV_LIST:
        return tb_jv_int((int64_t)in.u.l->n);
    case TB_JV_DICT:
        if (!in.u.d->ns) {
            return tb_jv_int((int64_t)in.u.d->n);
        }
        break;
    case TB_JV_UNDEFINED:
        return tb_jv_int(0);
    default:
        break;
    }
    return tb_jrt_fail(&ev->rt, TB_EINVAL, "object of type '%s' has no len()",
                       tb_jv_type_name(in));
}

static tb_jv_t s_f_tojson(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    /* Hugging Face's tojson(x, ensure_ascii=False, indent=None, separators=None,
     * sort_keys=False) */
    bool ensure_ascii = s_flag(a, 0, "ensure_ascii", false);
    const tb_jv_t *ind = tb_jarg(a, 1, "indent");
    const tb_jv_t *sep = tb_jarg(a, 2, "separators");
    bool sort_keys = s_flag(a, 3, "sort_keys", false);
    int indent = -1;
    if (ind && ind->kind != TB_JV_NONE) {
        if (ind->kind != TB_JV_INT) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "tojson indent must be an integer");
        }
        indent = ind->u.i < 0 ? 0 : ind->u.i > 32 ? 32 : (int)ind->u.i;
    }
    const char *item_sep = NULL, *key_sep = NULL;
    if (sep && sep->kind != TB_JV_NONE) {
        if (sep->kind != TB_JV_LIST || sep->u.l->n != 2 || sep->u.l->items[0].kind != TB_JV_STR ||
            sep->u.l->items[1].kind != TB_JV_STR) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "tojson separators must be two strings");
        }
        item_sep = sep->u.l->items[0].u.s->data;
        key_sep = sep->u.l->items[1].u.s->data;
    }
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    if (!tb_jv_write_json(&b, in, indent, item_sep, key_sep, sort_keys, ensure_ascii)) {
        tb_jbuf_release(&b);
        return tb_jv_err();
    }
    return tb_jbuf_to_str(&b);
}

static tb_jv_t s_f_default(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    const tb_jv_t *def = tb_jarg(a, 0, "default_value");
    bool boolean = s_flag(a, 1, "boolean", false);
    if (in.kind == TB_JV_UNDEFINED || (boolean && !tb_jv_truthy(in))) {
        return def ? tb_jv_ref(*def) : tb_jv_str_new(&ev->rt, "", 0);
    }
    return tb_jv_ref(in);
}

static tb_jv_t s_f_list(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l) || !l.u.l->tuple) {
        return l;
    }
    tb_jv_t r = tb_jv_list_new(&ev->rt, l.u.l->n);
    for (size_t i = 0; !tb_jv_is_err(r) && i < l.u.l->n; i++) {
        if (!tb_jv_list_push(&ev->rt, r.u.l, tb_jv_ref(l.u.l->items[i]))) {
            tb_jv_unref(r);
            r = tb_jv_err();
        }
    }
    tb_jv_unref(l);
    return r;
}

static tb_jv_t s_f_first_last(tb_jeval_t *ev, tb_jv_t in, bool last)
{
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l)) {
        return l;
    }
    tb_jv_t r = l.u.l->n == 0 ? tb_jv_undef(NULL)
                              : tb_jv_ref(l.u.l->items[last ? l.u.l->n - 1 : 0]);
    tb_jv_unref(l);
    return r;
}

static tb_jv_t s_f_first(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    return s_f_first_last(ev, in, false);
}

static tb_jv_t s_f_last(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    return s_f_first_last(ev, in, true);
}

static tb_jv_t s_f_join(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    const tb_jv_t *d = tb_jarg(a, 0, "d");
    const tb_jv_t *attribute = tb_jarg(a, 1, "attribute");
    tb_jv_t sep = d ? tb_jv_to_str(&ev->rt, *d) : tb_jv_str_new(&ev->rt, "", 0);
    if (tb_jv_is_err(sep)) {
        return sep;
    }
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l)) {
        tb_jv_unref(sep);
        return l;
    }
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    bool ok = true;
    for (size_t i = 0; ok && i < l.u.l->n; i++) {
        tb_jv_t v = s_attr_path(ev, l.u.l->items[i], attribute);
        ok = !tb_jv_is_err(v) && (i == 0 || tb_jbuf_add(&b, sep.u.s->data, sep.u.s->len)) &&
             tb_jv_write_str(&b, v);
        tb_jv_unref(v);
    }
    tb_jv_unref(l);
    tb_jv_unref(sep);
    if (!ok) {
        tb_jbuf_release(&b);
        return tb_jv_err();
    }
    return tb_jbuf_to_str(&b);
}

/* Python's int()/float() of a string, jinja-style: NULL when it does not parse. */
static bool s_parse_num(tb_jv_str_t *s, int base, bool want_int, int64_t *iv, double *fv)
{
    char buf[128];
    size_t o = 0;
    size_t i = 0, n = s->len;
    while (i < n && tb_py_isspace((unsigned char)s->data[i])) {
        i++;
    }
    while (n > i && tb_py_isspace((unsigned char)s->data[n - 1])) {
        n--;
    }
    if (n - i == 0 || n - i >= sizeof(buf)) {
        return false;
    }
    for (; i < n; i++) {
        char c = s->data[i];
        if (c == '_') {
            continue;
        }
        buf[o++] = c;
    }
    buf[o] = '\0';
    char *end = NULL;
    if (want_int) {
        errno = 0;
        long long v = strtoll(buf, &end, base);
        if (*end == '\0' && end != buf && errno == 0) {
            *iv = v;
            return true;
        }
        return false;
    }
    if (strchr(buf, 'x') || strchr(buf, 'X') || strchr(buf, 'p') || strchr(buf, 'P')) {
        return false;
    }
    double d = strtod(buf, &end);
    if (*end == '\0' && end != buf) {
        *fv = d;
        return true;
    }
    return false;
}

static tb_jv_t s_f_int(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)ev;
    const tb_jv_t *def = tb_jarg(a, 0, "default");
    const tb_jv_t *basev = tb_jarg(a, 1, "base");
    int base = basev && basev->kind == TB_JV_INT ? (int)basev->u.i : 10;
    int64_t iv;
    double fv;
    switch (in.kind) {
    case TB_JV_INT:
        return in;
    case TB_JV_BOOL:
        return tb_jv_int(in.u.b);
    case TB_JV_FLOAT:
        if (isfinite(in.u.f) && fabs(in.u.f) < 9.2e18) {
            return tb_jv_int((int64_t)in.u.f);
        }
        break;
    case TB_JV_STR:
        if (base >= 2 && base <= 36 && s_parse_num(in.u.s, base, true, &iv, &fv)) {
            return tb_jv_int(iv);
        }
        if (s_parse_num(in.u.s, 10, false, &iv, &fv) && isfinite(fv) && fabs(fv) < 9.2e18) {
            return tb_jv_int((int64_t)fv);
        }
        break;
    default:
        break;
    }
    return def ? tb_jv_ref(*def) : tb_jv_int(0);
}

static tb_jv_t s_f_float(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)ev;
    const tb_jv_t *def = tb_jarg(a, 0, "default");
    int64_t iv;
    double fv;
    switch (in.kind) {
    case TB_JV_FLOAT:
        return in;
    case TB_JV_INT:
        return tb_jv_float((double)in.u.i);
    case TB_JV_BOOL:
        return tb_jv_float(in.u.b);
    case TB_JV_STR:
        if (s_parse_num(in.u.s, 10, false, &iv, &fv)) {
            return tb_jv_float(fv);
        }
        break;
    default:
        break;
    }
    return def ? tb_jv_ref(*def) : tb_jv_float(0.0);
}

static tb_jv_t s_f_abs(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    if (in.kind == TB_JV_FLOAT) {
        return tb_jv_float(fabs(in.u.f));
    }
    if (in.kind == TB_JV_INT || in.kind == TB_JV_BOOL) {
        int64_t x = in.kind == TB_JV_INT ? in.u.i : in.u.b;
        if (x == INT64_MIN) {
            return tb_jrt_fail(&ev->rt, TB_ERANGE, "integer overflow in abs");
        }
        return tb_jv_int(x < 0 ? -x : x);
    }
    return tb_jrt_fail(&ev->rt, TB_EINVAL, "bad operand type for abs(): '%s'",
                       tb_jv_type_name(in));
}

static tb_jv_t s_f_round(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    const tb_jv_t *pv = tb_jarg(a, 0, "precision");
    const tb_jv_t *mv = tb_jarg(a, 1, "method");
    int64_t prec = pv && pv->kind == TB_JV_INT ? pv->u.i : 0;
    if (in.kind != TB_JV_FLOAT && in.kind != TB_JV_INT && in.kind != TB_JV_BOOL) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "round() needs a number, not '%s'",
                           tb_jv_type_name(in));
    }
    double x = in.kind == TB_JV_FLOAT ? in.u.f : (double)(in.kind == TB_JV_INT ? in.u.i : in.u.b);
    const char *method = mv && mv->kind == TB_JV_STR ? mv->u.s->data : "common";
    if (in.kind != TB_JV_FLOAT && !strcmp(method, "common") && prec >= 0) {
        /* Python's round() of an int with ndigits >= 0 is the int itself */
        return tb_jv_int(in.kind == TB_JV_INT ? in.u.i : in.u.b);
    }
    if (prec < 0 || prec > 15 || !isfinite(x)) {
        return tb_jv_float(x);
    }
    double scale = pow(10.0, (double)prec);
    if (!strcmp(method, "ceil")) {
        return tb_jv_float(ceil(x * scale) / scale);
    }
    if (!strcmp(method, "floor")) {
        return tb_jv_float(floor(x * scale) / scale);
    }
    if (strcmp(method, "common") != 0) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "method must be common, ceil or floor");
    }
    /* Python's round(x, n): correctly rounded, ties to even, as printf does */
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%.*f", (int)prec, x);
    return tb_jv_float(strtod(tmp, NULL));
}

static tb_jv_t s_f_replace(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    const tb_jv_t *o = tb_jarg(a, 0, "old"), *n = tb_jarg(a, 1, "new");
    const tb_jv_t *c = tb_jarg(a, 2, "count");
    if (!o || !n) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "replace needs old and new strings");
    }
    tb_jv_t s = tb_jv_to_str(&ev->rt, in);
    tb_jv_t os = tb_jv_to_str(&ev->rt, *o);
    tb_jv_t ns = tb_jv_to_str(&ev->rt, *n);
    tb_jv_t r = tb_jv_err();
    if (!tb_jv_is_err(s) && !tb_jv_is_err(os) && !tb_jv_is_err(ns)) {
        r = tb_jinja_str_replace(ev, s.u.s, os, ns, c && c->kind == TB_JV_INT ? c->u.i : -1);
    }
    tb_jv_unref(s);
    tb_jv_unref(os);
    tb_jv_unref(ns);
    return r;
}

static tb_jv_t s_f_reverse(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    if (in.kind == TB_JV_STR) {
        tb_jv_t none = tb_jv_none();
        return tb_jinja_slice(ev, in, none, none, tb_jv_int(-1));
    }
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l)) {
        return l;
    }
    tb_jv_t r = tb_jv_list_new(&ev->rt, l.u.l->n);
    for (size_t i = l.u.l->n; !tb_jv_is_err(r) && i > 0; i--) {
        if (!tb_jv_list_push(&ev->rt, r.u.l, tb_jv_ref(l.u.l->items[i - 1]))) {
            tb_jv_unref(r);
            r = tb_jv_err();
        }
    }
    tb_jv_unref(l);
    return r;
}

static tb_jv_t s_f_sort(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l)) {
        return l;
    }
    tb_jv_t r = s_sorted(ev, l, s_flag(a, 0, "reverse", false),
                         s_flag(a, 1, "case_sensitive", false), tb_jarg(a, 2, "attribute"));
    tb_jv_unref(l);
    return r;
}

static tb_jv_t s_f_dictsort(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    if (in.kind != TB_JV_DICT || in.u.d->ns) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "dictsort expects a dict");
    }
    const tb_jv_t *by = tb_jarg(a, 1, "by");
    bool by_value = by && by->kind == TB_JV_STR && !strcmp(by->u.s->data, "value");
    tb_jv_t items = tb_jv_list_new(&ev->rt, in.u.d->n);
    for (size_t i = 0; !tb_jv_is_err(items) && i < in.u.d->n; i++) {
        tb_jv_t pair = tb_jv_list_new(&ev->rt, 2);
        bool ok = !tb_jv_is_err(pair);
        if (ok) {
            pair.u.l->tuple = true;
            ok = tb_jv_list_push(&ev->rt, pair.u.l,
                                 tb_jv_ref(
                                     (tb_jv_t){.kind = TB_JV_STR, .u.s = in.u.d->keys[i]})) &&
                 tb_jv_list_push(&ev->rt, pair.u.l, tb_jv_ref(in.u.d->vals[i]));
        }
        if (!ok || !tb_jv_list_push(&ev->rt, items.u.l, pair)) {
            if (!ok) {
                tb_jv_unref(pair);
            }
            tb_jv_unref(items);
            items = tb_jv_err();
        }
    }
    if (tb_jv_is_err(items)) {
        return items;
    }
    tb_jv_t attr = tb_jv_int(by_value ? 1 : 0);
    tb_jv_t r = s_sorted(ev, items, s_flag(a, 2, "reverse", false),
                         s_flag(a, 0, "case_sensitive", false), &attr);
    tb_jv_unref(items);
    return r;
}

static tb_jv_t s_f_unique(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    bool cs = s_flag(a, 0, "case_sensitive", false);
    const tb_jv_t *attribute = tb_jarg(a, 1, "attribute");
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l)) {
        return l;
    }
    tb_jv_t r = tb_jv_list_new(&ev->rt, 0);
    tb_jv_t seen = tb_jv_list_new(&ev->rt, 0);
    for (size_t i = 0; !tb_jv_is_err(r) && !tb_jv_is_err(seen) && i < l.u.l->n; i++) {
        tb_jv_t k = s_attr_path(ev, l.u.l->items[i], attribute);
        tb_jv_t key = tb_jv_is_err(k) ? k : s_key(ev, k, cs);
        tb_jv_unref(k);
        bool dup = false;
        if (!tb_jv_is_err(key)) {
            if (!tb_jinja_eval_step(ev, seen.u.l->n)) {
                tb_jv_unref(key);
                key = tb_jv_err();
            }
            for (size_t j = 0; !tb_jv_is_err(key) && j < seen.u.l->n && !dup; j++) {
                dup = tb_jv_equal(seen.u.l->items[j], key);
            }
        }
        if (tb_jv_is_err(key) ||
            (!dup && (!tb_jv_list_push(&ev->rt, seen.u.l, key) ||
                      !tb_jv_list_push(&ev->rt, r.u.l, tb_jv_ref(l.u.l->items[i]))))) {
            tb_jv_unref(r);
            r = tb_jv_err();
            break;
        }
        if (dup) {
            tb_jv_unref(key);
        }
    }
    tb_jv_unref(seen);
    tb_jv_unref(l);
    return r;
}

static tb_jv_t s_f_minmax(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a, bool max)
{
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l)) {
        return l;
    }
    tb_jv_t s = s_sorted(ev, l, false, s_flag(a, 0, "case_sensitive", false),
                         tb_jarg(a, 1, "attribute"));
    tb_jv_unref(l);
    if (tb_jv_is_err(s)) {
        return s;
    }
    tb_jv_t r = tb_jv_undef(NULL);
    if (s.u.l->n > 0) {
        /* Python's max returns the first of equal maxima; the sorted list is stable */
        size_t i = 0;
        if (max) {
            i = s.u.l->n - 1;
        }
        r = tb_jv_ref(s.u.l->items[i]);
    }
    tb_jv_unref(s);
    return r;
}

static tb_jv_t s_f_min(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    return s_f_minmax(ev, in, a, false);
}

static tb_jv_t s_f_max(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    return s_f_minmax(ev, in, a, true);
}

static tb_jv_t s_f_sum(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    const tb_jv_t *attribute = tb_jarg(a, 0, "attribute");
    const tb_jv_t *start = tb_jarg(a, 1, "start");
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l)) {
        return l;
    }
    tb_jv_t acc = start ? tb_jv_ref(*start) : tb_jv_int(0);
    for (size_t i = 0; !tb_jv_is_err(acc) && i < l.u.l->n; i++) {
        tb_jv_t v = s_attr_path(ev, l.u.l->items[i], attribute);
        tb_jv_t next = tb_jv_is_err(v) ? v : tb_jinja_binop(ev, TB_JOP_ADD, acc, v);
        tb_jv_unref(v);
        tb_jv_unref(acc);
        acc = next;
    }
    tb_jv_unref(l);
    return acc;
}

static tb_jv_t s_f_items(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    if (in.kind == TB_JV_UNDEFINED) {
        return tb_jv_list_new(&ev->rt, 0);
    }
    if (in.kind != TB_JV_DICT || in.u.d->ns) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "can only get item pairs from a mapping");
    }
    tb_jv_t m = tb_jinja_getattr(ev, in, "items", 5);
    if (tb_jv_is_err(m)) {
        return m;
    }
    tb_jargs_t none = {0};
    tb_jv_t r = tb_jinja_call_builtin(ev, m.u.fn, &none);
    tb_jv_unref(m);
    return r;
}

/* select/reject/selectattr/rejectattr: `attr` picks the tested value, `select` keeps matches. */
static tb_jv_t s_select(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a, bool attr, bool select)
{
    size_t off = 0;
    const tb_jv_t *attribute = NULL;
    if (attr) {
        attribute = tb_jarg(a, 0, NULL);
        if (!attribute) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "missing parameter for attribute name");
        }
        off = 1;
    }
    const tb_jv_t *test = off < a->npos ? &a->pos[off] : NULL;
    if (test && test->kind != TB_JV_STR) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "test name must be a string");
    }
    if (test && !tb_jinja_test_exists(test->u.s->data)) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "no test named '%.60s'", test->u.s->data);
    }
    tb_jargs_t targs = {0};
    if (test) {
        targs.pos = a->pos + off + 1;
        targs.npos = a->npos - off - 1;
        targs.kwnames = a->kwnames;
        targs.kw = a->kw;
        targs.nkw = a->nkw;
    }
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l)) {
        return l;
    }
    tb_jv_t r = tb_jv_list_new(&ev->rt, 0);
    for (size_t i = 0; !tb_jv_is_err(r) && i < l.u.l->n; i++) {
        tb_jv_t v = s_attr_path(ev, l.u.l->items[i], attribute);
        int t = -1;
        if (!tb_jv_is_err(v)) {
            t = test ? tb_jinja_test(ev, test->u.s->data, v, &targs) : tb_jv_truthy(v);
        }
        tb_jv_unref(v);
        if (t < 0 ||
            (t == select && !tb_jv_list_push(&ev->rt, r.u.l, tb_jv_ref(l.u.l->items[i])))) {
            tb_jv_unref(r);
            r = tb_jv_err();
        }
    }
    tb_jv_unref(l);
    return r;
}

static tb_jv_t s_f_select(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    return s_select(ev, in, a, false, true);
}

static tb_jv_t s_f_reject(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    return s_select(ev, in, a, false, false);
}

static tb_jv_t s_f_selectattr(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    return s_select(ev, in, a, true, true);
}

static tb_jv_t s_f_rejectattr(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    return s_select(ev, in, a, true, false);
}

static tb_jv_t s_f_map(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    const tb_jv_t *attribute = NULL;
    const tb_jv_t *def = NULL;
    const char *filter = NULL;
    tb_jargs_t fargs = {0};
    if (a->npos == 0) {
        attribute = tb_jarg(a, 0, "attribute");
        def = tb_jarg(a, 99, "default");
        if (!attribute) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "map requires a filter argument");
        }
    } else {
        if (a->pos[0].kind != TB_JV_STR || !tb_jinja_filter_exists(a->pos[0].u.s->data)) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "map: unknown filter");
        }
        filter = a->pos[0].u.s->data;
        fargs.pos = a->pos + 1;
        fargs.npos = a->npos - 1;
        fargs.kwnames = a->kwnames;
        fargs.kw = a->kw;
        fargs.nkw = a->nkw;
    }
    tb_jv_t l = tb_jinja_to_list(ev, in);
    if (tb_jv_is_err(l)) {
        return l;
    }
    tb_jv_t r = tb_jv_list_new(&ev->rt, l.u.l->n);
    for (size_t i = 0; !tb_jv_is_err(r) && i < l.u.l->n; i++) {
        tb_jv_t v;
        if (filter) {
            v = tb_jinja_filter(ev, filter, l.u.l->items[i], &fargs);
        } else {
            v = s_attr_path(ev, l.u.l->items[i], attribute);
            if (!tb_jv_is_err(v) && v.kind == TB_JV_UNDEFINED && def) {
                v = tb_jv_ref(*def);
            }
        }
        if (tb_jv_is_err(v) || !tb_jv_list_push(&ev->rt, r.u.l, v)) {
            tb_jv_unref(r);
            r = tb_jv_err();
        }
    }
    tb_jv_unref(l);
    return r;
}

static tb_jv_t s_f_indent(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    const tb_jv_t *wv = tb_jarg(a, 0, "width");
    bool first = s_flag(a, 1, "first", false);
    bool blank = s_flag(a, 2, "blank", false);
    tb_jv_t ind;
    if (wv && wv->kind == TB_JV_STR) {
        ind = tb_jv_ref(*wv);
    } else {
        int64_t w = wv && wv->kind == TB_JV_INT ? wv->u.i : 4;
        if (w < 0) {
            w = 0;
        }
        if (w > 256) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "indent width too large");
        }
        char sp[257];
        memset(sp, ' ', (size_t)w);
        ind = tb_jv_str_new(&ev->rt, sp, (size_t)w);
    }
    if (in.kind != TB_JV_STR) {
        /* jinja2 appends "\n" to the value itself, which only strings allow */
        tb_jv_unref(ind);
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "indent expects a string, not '%s'",
                           tb_jv_type_name(in));
    }
    tb_jv_t s = tb_jv_is_err(ind) ? ind : tb_jv_ref(in);
    tb_jv_t lines = tb_jv_err();
    if (!tb_jv_is_err(s)) {
        tb_jv_t nl = tb_jv_str_cat(&ev->rt, s.u.s->data, s.u.s->len, "\n", 1);
        if (!tb_jv_is_err(nl)) {
            tb_jv_t m = tb_jinja_getattr(ev, nl, "splitlines", 10);
            tb_jargs_t none = {0};
            lines = tb_jv_is_err(m) ? m : tb_jinja_call_builtin(ev, m.u.fn, &none);
            tb_jv_unref(m);
        }
        tb_jv_unref(nl);
    }
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    bool ok = !tb_jv_is_err(lines);
    if (ok && first) {
        ok = tb_jbuf_add(&b, ind.u.s->data, ind.u.s->len);
    }
    for (size_t i = 0; ok && i < lines.u.l->n; i++) {
        tb_jv_str_t *line = lines.u.l->items[i].u.s;
        if (i > 0) {
            ok = tb_jbuf_addc(&b, '\n') &&
                 ((line->len == 0 && !blank) || tb_jbuf_add(&b, ind.u.s->data, ind.u.s->len));
        }
        ok = ok && tb_jbuf_add(&b, line->data, line->len);
    }
    tb_jv_unref(lines);
    tb_jv_unref(s);
    tb_jv_unref(ind);
    if (!ok) {
        tb_jbuf_release(&b);
        return tb_jv_err();
    }
    return tb_jbuf_to_str(&b);
}

static tb_jv_t s_f_escape(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    tb_jv_t s = tb_jv_to_str(&ev->rt, in);
    if (tb_jv_is_err(s)) {
        return s;
    }
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    bool ok = true;
    for (size_t i = 0; ok && i < s.u.s->len; i++) {
        char c = s.u.s->data[i];
        switch (c) {
        case '&':
            ok = tb_jbuf_add(&b, "&amp;", 5);
            break;
        case '<':
            ok = tb_jbuf_add(&b, "&lt;", 4);
            break;
        case '>':
            ok = tb_jbuf_add(&b, "&gt;", 4);
            break;
        case '"':
            ok = tb_jbuf_add(&b, "&#34;", 5);
            break;
        case '\'':
            ok = tb_jbuf_add(&b, "&#39;", 5);
            break;
        default:
            ok = tb_jbuf_addc(&b, c);
            break;
        }
    }
    tb_jv_unref(s);
    if (!ok) {
        tb_jbuf_release(&b);
        return tb_jv_err();
    }
    return tb_jbuf_to_str(&b);
}

static tb_jv_t s_f_safe(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)ev;
    (void)a;
    return tb_jv_ref(in);
}

static tb_jv_t s_f_wordcount(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    (void)a;
    tb_jv_t s = tb_jv_to_str(&ev->rt, in);
    if (tb_jv_is_err(s)) {
        return s;
    }
    int64_t n = 0;
    bool in_word = false;
    size_t i = 0;
    while (i < s.u.s->len) {
        uint32_t cp = tb_utf8_next(s.u.s->data, s.u.s->len, &i);
        bool w = (cp >= '0' && cp <= '9') || ((cp | 32) >= 'a' && (cp | 32) <= 'z') ||
                 cp == '_' || (cp >= 0xAA && !tb_py_isspace(cp) && tb_jrt_is_cased(&ev->rt, cp));
        if (w && !in_word) {
            n++;
        }
        in_word = w;
    }
    tb_jv_unref(s);
    return tb_jv_int(n);
}

static tb_jv_t s_f_attr(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    const tb_jv_t *name = tb_jarg(a, 0, "name");
    if (!name || name->kind != TB_JV_STR) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "attr expects an attribute name");
    }
    if (in.kind == TB_JV_DICT && !in.u.d->ns) {
        /* attribute lookup only: dict keys are not attributes */
        tb_jv_t m = tb_jinja_getattr(ev, in, name->u.s->data, name->u.s->len);
        if (!tb_jv_is_err(m) && m.kind != TB_JV_FUNC) {
            tb_jv_unref(m);
            return tb_jv_undef(NULL);
        }
        return m;
    }
    tb_jv_t r = tb_jinja_getattr(ev, in, name->u.s->data, name->u.s->len);
    if (r.kind == TB_JV_UNDEFINED) {
        r.u.name = NULL; /* the name string does not outlive this call */
    }
    return r;
}

static tb_jv_t s_f_format(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    tb_jv_t s = tb_jv_to_str(&ev->rt, in);
    if (tb_jv_is_err(s)) {
        return s;
    }
    tb_jv_t args = tb_jv_list_new(&ev->rt, a->npos);
    for (size_t i = 0; !tb_jv_is_err(args) && i < a->npos; i++) {
        if (!tb_jv_list_push(&ev->rt, args.u.l, tb_jv_ref(a->pos[i]))) {
            tb_jv_unref(args);
            args = tb_jv_err();
        }
    }
    tb_jv_t r = args;
    if (!tb_jv_is_err(args)) {
        args.u.l->tuple = true;
        r = tb_jinja_percent_format(ev, s.u.s, args);
        tb_jv_unref(args);
    }
    tb_jv_unref(s);
    return r;
}

static tb_jv_t s_f_center(tb_jeval_t *ev, tb_jv_t in, const tb_jargs_t *a)
{
    const tb_jv_t *wv = tb_jarg(a, 0, "width");
    int64_t w = wv && wv->kind == TB_JV_INT ? wv->u.i : 80;
    tb_jv_t s = tb_jv_to_str(&ev->rt, in);
    if (tb_jv_is_err(s)) {
        return s;
    }
    int64_t n = (int64_t)tb_jv_str_ncp(s.u.s);
    if (w <= n || w > 4096) {
        return s;
    }
    /* Python's str.center: left = pad/2 + (pad & width & 1) */
    int64_t pad = w - n;
    int64_t left = pad / 2 + (pad & w & 1);
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    bool ok = true;
    for (int64_t i = 0; ok && i < left; i++) {
        ok = tb_jbuf_addc(&b, ' ');
    }
    ok = ok && tb_jbuf_add(&b, s.u.s->data, s.u.s->len);
    for (int64_t i = 0; ok && i < pad - left; i++) {
        ok = tb_jbuf_addc(&b, ' ');
    }
    tb_jv_unref(s);
    if (!ok) {
        tb_jbuf_release(&b);
        return tb_jv_err();
    }
    return tb_jbuf_to_str(&b);
}

static const struct {
    const char *name;
    s_filter_fn fn;
} s_filters[] = {
    {"abs", s_f_abs},
    {"attr", s_f_attr},
    {"capitalize", s_f_capitalize},
    {"center", s_f_center},
    {"count", s_f_length},
    {"d", s_f_default},
    {"default", s_f_default},
    {"dictsort", s_f_dictsort},
    {"e", s_f_escape},
    {"escape", s_f_escape},
    {"first", s_f_first},
    {"float", s_f_float},
    {"forceescape", s_f_escape},
    {"format", s_f_format},
    {"indent", s_f_indent},
    {"int", s_f_int},
    {"items", s_f_items},
    {"join", s_f_join},
    {"last", s_f_last},
    {"length", s_f_length},
    {"list", s_f_list},
    {"lower", s_f_lower},
    {"map", s_f_map},
    {"max", s_f_max},
    {"min", s_f_min},
    {"reject", s_f_reject},
    {"rejectattr", s_f_rejectattr},
    {"replace", s_f_replace},
    {"reverse", s_f_reverse},
    {"round", s_f_round},
    {"safe", s_f_safe},
    {"select", s_f_select},
    {"selectattr", s_f_selectattr},
    {"sort", s_f_sort},
    {"string", s_f_str},
    {"sum", s_f_sum},
    {"title", s_f_title},
    {"tojson", s_f_tojson},
    {"trim", s_f_trim},
    {"unique", s_f_unique},
    {"upper", s_f_upper},
    {"wordcount", s_f_wordcount},
};

bool tb_jinja_filter_exists(const char *name)
{
    for (size_t i = 0; i < sizeof(s_filters) / sizeof(s_filters[0]); i++) {
        if (!strcmp(s_filters[i].name, name)) {
            return true;
        }
    }
    return false;
}

tb_jv_t tb_jinja_filter(tb_jeval_t *ev, const char *name, tb_jv_t input, const tb_jargs_t *a)
{
    for (size_t i = 0; i < sizeof(s_filters) / sizeof(s_filters[0]); i++) {
        if (!strcmp(s_filters[i].name, name)) {
            if (!tb_jinja_eval_step(ev, 1)) {
                return tb_jv_err();
            }
            return s_filters[i].fn(ev, input, a);
        }
    }
    return tb_jrt_fail(&ev->rt, TB_EINVAL, "no filter named '%.60s'", name);
}
