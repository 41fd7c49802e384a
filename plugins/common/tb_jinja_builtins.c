/*
 * tb_jinja_builtins.c - Python operators, attribute and item access, iteration and the tests
 * ("is defined", ...) of the Jinja interpreter; see tb_jinja_builtins.h.  Globals and methods
 * are in tb_jinja_methods.c, filters in tb_jinja_filters.c.
 */
#include "tb_jinja_builtins.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"

/* ------------------------------------------------------------------ helpers */

const tb_jv_t *tb_jarg(const tb_jargs_t *a, size_t idx, const char *name)
{
    if (idx < a->npos) {
        return &a->pos[idx];
    }
    for (size_t k = 0; name && k < a->nkw; k++) {
        if (!strcmp(a->kwnames[k], name)) {
            return &a->kw[k];
        }
    }
    return NULL;
}

tb_jv_t tb_jinja_undefined_error(tb_jeval_t *ev, tb_jv_t undef)
{
    if (undef.kind == TB_JV_UNDEFINED && undef.u.name) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "'%.60s' is undefined", undef.u.name);
    }
    return tb_jrt_fail(&ev->rt, TB_EINVAL, "value is undefined");
}

static tb_jv_t s_type_error(tb_jeval_t *ev, const char *what, tb_jv_t v)
{
    return tb_jrt_fail(&ev->rt, TB_EINVAL, "%s: '%s'", what, tb_jv_type_name(v));
}

static tb_jv_t s_str1(tb_jeval_t *ev, const char *s, size_t n)
{
    return tb_jv_str_new(&ev->rt, s, n);
}

/* ------------------------------------------------------------------ iteration */

/* Items of a container, for charging work proportional to its size. */
static size_t s_size(tb_jv_t v)
{
    return v.kind == TB_JV_LIST   ? v.u.l->n
           : v.kind == TB_JV_DICT ? v.u.d->n
           : v.kind == TB_JV_STR  ? v.u.s->len
                                  : 0;
}

tb_jv_t tb_jinja_to_list(tb_jeval_t *ev, tb_jv_t v)
{
    /* every consumer walks the items: charge them as steps */
    if (!tb_jinja_eval_step(ev, s_size(v))) {
        return tb_jv_err();
    }
    switch (v.kind) {
    case TB_JV_LIST:
        return tb_jv_ref(v);
    case TB_JV_UNDEFINED:
        return tb_jv_list_new(&ev->rt, 0);
    case TB_JV_STR: {
        tb_jv_str_t *s = v.u.s;
        tb_jv_t l = tb_jv_list_new(&ev->rt, tb_jv_str_ncp(s));
        size_t i = 0;
        while (!tb_jv_is_err(l) && i < s->len) {
            size_t start = i;
            tb_utf8_next(s->data, s->len, &i);
            tb_jv_t c = s_str1(ev, s->data + start, i - start);
            if (tb_jv_is_err(c) || !tb_jv_list_push(&ev->rt, l.u.l, c)) {
                tb_jv_unref(l);
                l = tb_jv_err();
            }
        }
        return l;
    }
    case TB_JV_DICT: {
        if (v.u.d->ns) {
            break;
        }
        tb_jv_t l = tb_jv_list_new(&ev->rt, v.u.d->n);
        for (size_t i = 0; !tb_jv_is_err(l) && i < v.u.d->n; i++) {
            if (!tb_jv_list_push(&ev->rt, l.u.l,
                                 tb_jv_ref(
                                     (tb_jv_t){.kind = TB_JV_STR, .u.s = v.u.d->keys[i]}))) {
                tb_jv_unref(l);
                l = tb_jv_err();
            }
        }
        return l;
    }
    default:
        break;
    }
    return tb_jrt_fail(&ev->rt, TB_EINVAL, "'%s' object is not iterable", tb_jv_type_name(v));
}

/* ------------------------------------------------------------------ operators */

static bool s_num(tb_jv_t v)
{
    return v.kind == TB_JV_INT || v.kind == TB_JV_FLOAT || v.kind == TB_JV_BOOL;
}

static double s_f(tb_jv_t v)
{
    return v.kind == TB_JV_FLOAT ? v.u.f : v.kind == TB_JV_INT ? (double)v.u.i : (double)v.u.b;
}

static int64_t s_i(tb_jv_t v)
{
    return v.kind == TB_JV_INT ? v.u.i : (int64_t)v.u.b;
}

static const char *s_opname(int op)
{
    switch (op) {
    case TB_JOP_ADD:
        return "+";
    case TB_JOP_SUB:
        return "-";
    case TB_JOP_MUL:
        return "*";
    case TB_JOP_DIV:
        return "/";
    case TB_JOP_FLOORDIV:
        return "//";
    case TB_JOP_MOD:
        return "%";
    default:
        return "**";
    }
}

static tb_jv_t s_repeat(tb_jeval_t *ev, tb_jv_t seq, int64_t times)
{
    if (times < 0) {
        times = 0;
    }
    if (seq.kind == TB_JV_STR) {
        size_t len = seq.u.s->len;
        if (len > 0 && (uint64_t)times > ev->rt.limits.max_output_bytes / len) {
            return tb_jrt_fail(&ev->rt, TB_E2BIG, "string repetition is over the %zu-byte bound",
                               ev->rt.limits.max_output_bytes);
        }
        tb_jv_t r = tb_jv_str_alloc(&ev->rt, len * (size_t)times);
        for (int64_t i = 0; !tb_jv_is_err(r) && i < times; i++) {
            memcpy(r.u.s->data + (size_t)i * len, seq.u.s->data, len);
        }
        return r;
    }
    size_t n = seq.u.l->n;
    if (n > 0 && (uint64_t)times > ev->rt.limits.max_output_bytes / n) {
        return tb_jrt_fail(&ev->rt, TB_E2BIG, "list repetition too large");
    }
    tb_jv_t r = tb_jv_list_new(&ev->rt, n * (size_t)times);
    if (!tb_jv_is_err(r)) {
        r.u.l->tuple = seq.u.l->tuple;
    }
    for (int64_t t = 0; !tb_jv_is_err(r) && t < times; t++) {
        if (!tb_jinja_eval_step(ev, n)) {
            tb_jv_unref(r);
            return tb_jv_err();
        }
        for (size_t i = 0; i < n; i++) {
            if (!tb_jv_list_push(&ev->rt, r.u.l, tb_jv_ref(seq.u.l->items[i]))) {
                tb_jv_unref(r);
                return tb_jv_err();
            }
        }
    }
    return r;
}

/* Arithmetic on two floats (Python's semantics: floored modulo, ** refusing a negative base
 * with a fractional exponent).  Division is handled by the caller. */
static tb_jv_t s_float_binop(tb_jeval_t *ev, int op, double x, double y)
{
    switch (op) {
    case TB_JOP_ADD:
        return tb_jv_float(x + y);
    case TB_JOP_SUB:
        return tb_jv_float(x - y);
    case TB_JOP_MUL:
        return tb_jv_float(x * y);
    case TB_JOP_FLOORDIV:
    case TB_JOP_MOD: {
        if (y == 0.0) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "float modulo or division by zero");
        }
        double m = fmod(x, y);
        if (m != 0.0 && ((m < 0) != (y < 0))) {
            m += y;
        }
        if (op == TB_JOP_MOD) {
            return tb_jv_float(m);
        }
        return tb_jv_float(floor((x - m) / y + 0.5));
    }
    default: {
        double r = pow(x, y);
        if (x < 0 && y != floor(y)) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL,
                               "negative number raised to a fractional power");
        }
        return tb_jv_float(r);
    }
    }
}

/* x ** y for integers: exact, an error on overflow; a negative exponent gives a float. */
static tb_jv_t s_int_pow(tb_jeval_t *ev, int64_t x, int64_t y)
{
    if (y < 0) {
        return tb_jv_float(pow((double)x, (double)y));
    }
    int64_t r = 1;
    for (int64_t k = 0; k < y; k++) {
        if (__builtin_mul_overflow(r, x, &r)) {
            return tb_jrt_fail(&ev->rt, TB_ERANGE, "integer overflow in **");
        }
        if (r == 0 || r == 1) {
            break; /* stays put */
        }
        if (r == -1) {
            r = ((y - k - 1) % 2 == 0) ? -1 : 1;
            break;
        }
    }
    return tb_jv_int(r);
}

/* Arithmetic on two integers: exact, floored division and modulo, an error on overflow
 * (Jinja's Python ints are unbounded; ours are 64-bit).  Division is handled by the caller. */
static tb_jv_t s_int_binop(tb_jeval_t *ev, int op, int64_t x, int64_t y)
{
    int64_t r = 0;
    switch (op) {
    case TB_JOP_ADD:
        if (__builtin_add_overflow(x, y, &r)) {
            break;
        }
        return tb_jv_int(r);
    case TB_JOP_SUB:
        if (__builtin_sub_overflow(x, y, &r)) {
            break;
        }
        return tb_jv_int(r);
    case TB_JOP_MUL:
        if (__builtin_mul_overflow(x, y, &r)) {
            break;
        }
        return tb_jv_int(r);
    case TB_JOP_FLOORDIV:
    case TB_JOP_MOD: {
        if (y == 0) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "integer division or modulo by zero");
        }
        if (x == INT64_MIN && y == -1) {
            if (op == TB_JOP_MOD) {
                return tb_jv_int(0);
            }
            break;
        }
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
            m += y;
            q -= 1;
        }
        return tb_jv_int(op == TB_JOP_MOD ? m : q);
    }
    default:
        return s_int_pow(ev, x, y);
    }
    return tb_jrt_fail(&ev->rt, TB_ERANGE, "integer overflow in %s", s_opname(op));
}

/* list + list (or tuple + tuple): a new sequence of both. */
static tb_jv_t s_seq_cat(tb_jeval_t *ev, tb_jv_t a, tb_jv_t b)
{
    tb_jv_t r = tb_jv_list_new(&ev->rt, a.u.l->n + b.u.l->n);
    if (!tb_jv_is_err(r)) {
        r.u.l->tuple = a.u.l->tuple;
    }
    for (size_t i = 0; !tb_jv_is_err(r) && i < a.u.l->n + b.u.l->n; i++) {
        tb_jv_t it = i < a.u.l->n ? a.u.l->items[i] : b.u.l->items[i - a.u.l->n];
        if (!tb_jv_list_push(&ev->rt, r.u.l, tb_jv_ref(it))) {
            tb_jv_unref(r);
            r = tb_jv_err();
        }
    }
    return r;
}

tb_jv_t tb_jinja_binop(tb_jeval_t *ev, int op, tb_jv_t a, tb_jv_t b)
{
    if (a.kind == TB_JV_UNDEFINED) {
        return tb_jinja_undefined_error(ev, a);
    }
    if (b.kind == TB_JV_UNDEFINED) {
        return tb_jinja_undefined_error(ev, b);
    }
    if (s_num(a) && s_num(b)) {
        if (op == TB_JOP_DIV) {
            if (s_f(b) == 0.0) {
                return tb_jrt_fail(&ev->rt, TB_EINVAL, "division by zero");
            }
            return tb_jv_float(s_f(a) / s_f(b));
        }
        if (a.kind == TB_JV_FLOAT || b.kind == TB_JV_FLOAT) {
            return s_float_binop(ev, op, s_f(a), s_f(b));
        }
        return s_int_binop(ev, op, s_i(a), s_i(b));
    }
    if (op == TB_JOP_ADD && a.kind == TB_JV_STR && b.kind == TB_JV_STR) {
        return tb_jv_str_cat(&ev->rt, a.u.s->data, a.u.s->len, b.u.s->data, b.u.s->len);
    }
    if (op == TB_JOP_ADD && a.kind == TB_JV_LIST && b.kind == TB_JV_LIST &&
        a.u.l->tuple == b.u.l->tuple) {
        return s_seq_cat(ev, a, b);
    }
    if (op == TB_JOP_MUL) {
        if ((a.kind == TB_JV_STR || a.kind == TB_JV_LIST) &&
            (b.kind == TB_JV_INT || b.kind == TB_JV_BOOL)) {
            return s_repeat(ev, a, s_i(b));
        }
        if ((b.kind == TB_JV_STR || b.kind == TB_JV_LIST) &&
            (a.kind == TB_JV_INT || a.kind == TB_JV_BOOL)) {
            return s_repeat(ev, b, s_i(a));
        }
    }
    if (op == TB_JOP_MOD && a.kind == TB_JV_STR) {
        return tb_jinja_percent_format(ev, a.u.s, b);
    }
    if (op == TB_JOP_ADD && a.kind == TB_JV_STR) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "can only concatenate str (not \"%s\") to str",
                           tb_jv_type_name(b));
    }
    return tb_jrt_fail(&ev->rt, TB_EINVAL, "unsupported operand type(s) for %s: '%s' and '%s'",
                       s_opname(op), tb_jv_type_name(a), tb_jv_type_name(b));
}

tb_jv_t tb_jinja_neg(tb_jeval_t *ev, tb_jv_t a, bool minus)
{
    if (a.kind == TB_JV_UNDEFINED) {
        return tb_jinja_undefined_error(ev, a);
    }
    if (a.kind == TB_JV_FLOAT) {
        return tb_jv_float(minus ? -a.u.f : a.u.f);
    }
    if (a.kind == TB_JV_INT || a.kind == TB_JV_BOOL) {
        int64_t x = s_i(a);
        if (minus && x == INT64_MIN) {
            return tb_jrt_fail(&ev->rt, TB_ERANGE, "integer overflow in unary -");
        }
        return tb_jv_int(minus ? -x : x);
    }
    return tb_jrt_fail(&ev->rt, TB_EINVAL, "bad operand type for unary %s: '%s'",
                       minus ? "-" : "+", tb_jv_type_name(a));
}

/* Python's <: -2 on a type error, else -1/0/1. */
static int s_order(tb_jv_t a, tb_jv_t b)
{
    if (s_num(a) && s_num(b)) {
        if (a.kind != TB_JV_FLOAT && b.kind != TB_JV_FLOAT) {
            int64_t x = s_i(a), y = s_i(b);
            return x < y ? -1 : x > y;
        }
        double x = s_f(a), y = s_f(b);
        return x < y ? -1 : x > y;
    }
    if (a.kind == TB_JV_STR && b.kind == TB_JV_STR) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int c = memcmp(a.u.s->data, b.u.s->data, n);
        if (c != 0) {
            return c < 0 ? -1 : 1;
        }
        return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
    }
    if (a.kind == TB_JV_LIST && b.kind == TB_JV_LIST && a.u.l->tuple == b.u.l->tuple) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (tb_jv_equal(a.u.l->items[i], b.u.l->items[i])) {
                continue;
            }
            return s_order(a.u.l->items[i], b.u.l->items[i]);
        }
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
    }
    return -2;
}

int tb_jinja_order(tb_jeval_t *ev, tb_jv_t a, tb_jv_t b, int *out)
{
    if (a.kind == TB_JV_UNDEFINED || b.kind == TB_JV_UNDEFINED) {
        tb_jinja_undefined_error(ev, a.kind == TB_JV_UNDEFINED ? a : b);
        return -1;
    }
    int c = s_order(a, b);
    if (c == -2) {
        tb_jrt_fail(&ev->rt, TB_EINVAL, "'<' not supported between instances of '%s' and '%s'",
                    tb_jv_type_name(a), tb_jv_type_name(b));
        return -1;
    }
    *out = c;
    return 0;
}

static int s_contains(tb_jeval_t *ev, tb_jv_t item, tb_jv_t seq)
{
    switch (seq.kind) {
    case TB_JV_STR:
        if (item.kind != TB_JV_STR) {
            tb_jrt_fail(&ev->rt, TB_EINVAL,
                        "'in <string>' requires string as left operand, not %s",
                        tb_jv_type_name(item));
            return -1;
        }
        if (item.u.s->len == 0) {
            return 1;
        }
        if (!tb_jinja_eval_step(ev, seq.u.s->len / 64)) {
            return -1;
        }
        return memmem(seq.u.s->data, seq.u.s->len, item.u.s->data, item.u.s->len) != NULL;
    case TB_JV_LIST:
        for (size_t i = 0; i < seq.u.l->n; i++) {
            if (tb_jv_equal(item, seq.u.l->items[i])) {
                return 1;
            }
        }
        return 0;
    case TB_JV_DICT:
        if (item.kind != TB_JV_STR) {
            return 0;
        }
        return tb_jv_dict_get(seq.u.d, item.u.s->data, item.u.s->len) != NULL;
    case TB_JV_UNDEFINED:
        return 0;
    default:
        tb_jrt_fail(&ev->rt, TB_EINVAL, "argument of type '%s' is not iterable",
                    tb_jv_type_name(seq));
        return -1;
    }
}

int tb_jinja_compare(tb_jeval_t *ev, int op, tb_jv_t a, tb_jv_t b)
{
    int c = 0;
    /* == on containers and `in` walk them */
    if (!tb_jinja_eval_step(ev,
                            (a.kind == TB_JV_LIST || a.kind == TB_JV_DICT ? s_size(a) : 0) +
                                (b.kind == TB_JV_LIST || b.kind == TB_JV_DICT ? s_size(b) : 0))) {
        return -1;
    }
    switch (op) {
    case TB_JOP_EQ:
        return tb_jv_equal(a, b);
    case TB_JOP_NE:
        return !tb_jv_equal(a, b);
    case TB_JCMP_IN:
        return s_contains(ev, a, b);
    case TB_JCMP_NOTIN: {
        int r = s_contains(ev, a, b);
        return r < 0 ? r : !r;
    }
    default:
        if (tb_jinja_order(ev, a, b, &c) != 0) {
            return -1;
        }
        switch (op) {
        case TB_JOP_LT:
            return c < 0;
        case TB_JOP_LTEQ:
            return c <= 0;
        case TB_JOP_GT:
            return c > 0;
        default:
            return c >= 0;
        }
    }
}

/* ------------------------------------------------------------------ attribute and item */

static tb_jv_t s_loop_attr(tb_jeval_t *ev, tb_jv_loop_t *lp, const char *name, bool *found)
{
    *found = true;
    size_t i = lp->index0, n = lp->length;
    if (!strcmp(name, "index")) {
        return tb_jv_int((int64_t)i + 1);
    }
    if (!strcmp(name, "index0")) {
        return tb_jv_int((int64_t)i);
    }
    if (!strcmp(name, "revindex")) {
        return tb_jv_int((int64_t)(n - i));
    }
    if (!strcmp(name, "revindex0")) {
        return tb_jv_int((int64_t)(n - i - 1));
    }
    if (!strcmp(name, "first")) {
        return tb_jv_bool(i == 0);
    }
    if (!strcmp(name, "last")) {
        return tb_jv_bool(i + 1 == n);
    }
    if (!strcmp(name, "length")) {
        return tb_jv_int((int64_t)n);
    }
    if (!strcmp(name, "depth")) {
        return tb_jv_int(1);
    }
    if (!strcmp(name, "depth0")) {
        return tb_jv_int(0);
    }
    if (!strcmp(name, "previtem")) {
        return i > 0 ? tb_jv_ref(lp->seq.u.l->items[i - 1]) : tb_jv_undef("previtem");
    }
    if (!strcmp(name, "nextitem")) {
        return i + 1 < n ? tb_jv_ref(lp->seq.u.l->items[i + 1]) : tb_jv_undef("nextitem");
    }
    (void)ev;
    *found = false;
    return tb_jv_undef(NULL);
}

tb_jv_t tb_jinja_getattr(tb_jeval_t *ev, tb_jv_t obj, const char *name, size_t len)
{
    bool found = false;
    if (obj.kind == TB_JV_LOOP) {
        tb_jv_t r = s_loop_attr(ev, obj.u.loop, name, &found);
        if (found) {
            return r;
        }
    }
    tb_jv_t m = tb_jinja_bind_method(ev, obj, name, len, &found);
    if (found || tb_jv_is_err(m)) {
        return m;
    }
    if (obj.kind == TB_JV_DICT) {
        tb_jv_t *v = tb_jv_dict_get(obj.u.d, name, len);
        if (v) {
            return tb_jv_ref(*v);
        }
    }
    return tb_jv_undef(name);
}

/* Python index normalisation: -1 when out of range. */
static int64_t s_index(int64_t i, size_t n)
{
    if (i < 0) {
        i += (int64_t)n;
    }
    return (i < 0 || (uint64_t)i >= n) ? -1 : i;
}

/* getattr with a name that does not outlive the call: a missing attribute's undefined value
 * must not keep pointing at it. */
static tb_jv_t s_getattr_transient(tb_jeval_t *ev, tb_jv_t obj, const char *name, size_t len)
{
    tb_jv_t r = tb_jinja_getattr(ev, obj, name, len);
    if (r.kind == TB_JV_UNDEFINED) {
        r.u.name = NULL;
    }
    return r;
}

tb_jv_t tb_jinja_getitem(tb_jeval_t *ev, tb_jv_t obj, tb_jv_t key)
{
    switch (obj.kind) {
    case TB_JV_DICT:
        if (key.kind == TB_JV_STR) {
            if (!obj.u.d->ns) {
                tb_jv_t *v = tb_jv_dict_get(obj.u.d, key.u.s->data, key.u.s->len);
                if (v) {
                    return tb_jv_ref(*v);
                }
            }
            return s_getattr_transient(ev, obj, key.u.s->data, key.u.s->len);
        }
        return tb_jv_undef(NULL);
    case TB_JV_LIST:
        if (key.kind == TB_JV_INT || key.kind == TB_JV_BOOL) {
            int64_t i = s_index(s_i(key), obj.u.l->n);
            return i < 0 ? tb_jv_undef(NULL) : tb_jv_ref(obj.u.l->items[i]);
        }
        break;
    case TB_JV_STR:
        if (key.kind == TB_JV_INT || key.kind == TB_JV_BOOL) {
            int64_t i = s_index(s_i(key), tb_jv_str_ncp(obj.u.s));
            if (i < 0) {
                return tb_jv_undef(NULL);
            }
            /* finding a code point walks the string: charge it */
            if (!tb_jinja_eval_step(ev, (uint64_t)i / 16 + 1)) {
                return tb_jv_err();
            }
            size_t at = tb_utf8_offset(obj.u.s->data, obj.u.s->len, (size_t)i);
            size_t end = at;
            tb_utf8_next(obj.u.s->data, obj.u.s->len, &end);
            return s_str1(ev, obj.u.s->data + at, end - at);
        }
        break;
    default:
        break;
    }
    if (key.kind == TB_JV_STR) {
        return s_getattr_transient(ev, obj, key.u.s->data, key.u.s->len);
    }
    return tb_jv_undef(NULL);
}

static bool s_slice_arg(tb_jeval_t *ev, tb_jv_t v, int64_t *out, bool *given)
{
    *given = false;
    if (v.kind == TB_JV_NONE) {
        return true;
    }
    if (v.kind == TB_JV_INT || v.kind == TB_JV_BOOL) {
        *out = s_i(v);
        *given = true;
        return true;
    }
    if (v.kind == TB_JV_UNDEFINED) {
        tb_jinja_undefined_error(ev, v);
        return false;
    }
    tb_jrt_fail(&ev->rt, TB_EINVAL, "slice indices must be integers or None");
    return false;
}

tb_jv_t tb_jinja_slice(tb_jeval_t *ev, tb_jv_t obj, tb_jv_t start, tb_jv_t stop, tb_jv_t step)
{
    int64_t a = 0, b = 0, st = 1;
    bool ha, hb, hs;
    if (!s_slice_arg(ev, start, &a, &ha) || !s_slice_arg(ev, stop, &b, &hb) ||
        !s_slice_arg(ev, step, &st, &hs)) {
        return tb_jv_err();
    }
    if (st == 0) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "slice step cannot be zero");
    }
    size_t n;
    if (obj.kind == TB_JV_STR) {
        n = tb_jv_str_ncp(obj.u.s);
    } else if (obj.kind == TB_JV_LIST) {
        n = obj.u.l->n;
    } else {
        return s_type_error(ev, "object is not subscriptable", obj);
    }
    int64_t len = (int64_t)n;
    /* Python's PySlice_AdjustIndices */
    if (!ha) {
        a = st < 0 ? len - 1 : 0;
    } else if (a < 0) {
        a += len;
        if (a < 0) {
            a = st < 0 ? -1 : 0;
        }
    } else if (a >= len) {
        a = st < 0 ? len - 1 : len;
    }
    if (!hb) {
        b = st < 0 ? -1 : len;
    } else if (b < 0) {
        b += len;
        if (b < 0) {
            b = st < 0 ? -1 : 0;
        }
    } else if (b >= len) {
        b = st < 0 ? len - 1 : len;
    }
    if (obj.kind == TB_JV_STR) {
        tb_jv_str_t *s = obj.u.s;
        if (!tb_jinja_eval_step(ev, s->len / 16 + 1)) {
            return tb_jv_err();
        }
        if (st == 1) {
            if (b <= a) {
                return s_str1(ev, "", 0);
            }
            size_t x = tb_utf8_offset(s->data, s->len, (size_t)a);
            size_t y = x + tb_utf8_offset(s->data + x, s->len - x, (size_t)(b - a));
            return s_str1(ev, s->data + x, y - x);
        }
        tb_jbuf_t buf;
        tb_jbuf_init(&buf, &ev->rt);
        for (int64_t i = a; st > 0 ? i < b : i > b; i += st) {
            size_t x = tb_utf8_offset(s->data, s->len, (size_t)i);
            size_t y = x;
            tb_utf8_next(s->data, s->len, &y);
            if (!tb_jinja_eval_step(ev, 1) || !tb_jbuf_add(&buf, s->data + x, y - x)) {
                tb_jbuf_release(&buf);
                return tb_jv_err();
            }
        }
        return tb_jbuf_to_str(&buf);
    }
    tb_jv_t r = tb_jv_list_new(&ev->rt, 0);
    if (tb_jv_is_err(r)) {
        return r;
    }
    r.u.l->tuple = obj.u.l->tuple;
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st) {
        if (!tb_jv_list_push(&ev->rt, r.u.l, tb_jv_ref(obj.u.l->items[i]))) {
            tb_jv_unref(r);
            return tb_jv_err();
        }
    }
    return r;
}

/* ------------------------------------------------------------------ tests */

static const char *const s_test_names[] = {
    "defined", "undefined", "none",        "boolean", "true",        "false",    "integer",
    "float",   "number",    "string",      "mapping", "iterable",    "sequence", "callable",
    "sameas",  "escaped",   "odd",         "even",    "divisibleby", "eq",       "equalto",
    "==",      "ne",        "!=",          "lt",      "lessthan",    "<",        "le",
    "<=",      "gt",        "greaterthan", ">",       "ge",          ">=",       "in",
    "lower",   "upper",     "filter",      "test",
};

bool tb_jinja_test_exists(const char *name)
{
    for (size_t i = 0; i < sizeof(s_test_names) / sizeof(s_test_names[0]); i++) {
        if (!strcmp(s_test_names[i], name)) {
            return true;
        }
    }
    return false;
}

static int s_cmp_test(tb_jeval_t *ev, int op, tb_jv_t v, const tb_jargs_t *a)
{
    const tb_jv_t *o = tb_jarg(a, 0, NULL);
    if (!o) {
        tb_jrt_fail(&ev->rt, TB_EINVAL, "comparison test needs an argument");
        return -1;
    }
    return tb_jinja_compare(ev, op, v, *o);
}

/* Tests taking one argument; all others take none. */
static bool s_test_takes_arg(const char *name)
{
    static const char *const one[] = {"sameas", "divisibleby", "eq", "equalto",     "==",
                                      "ne",     "!=",          "lt", "lessthan",    "<",
                                      "le",     "<=",          "gt", "greaterthan", ">",
                                      "ge",     ">=",          "in", "filter",      "test"};
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        if (!strcmp(one[i], name)) {
            return true;
        }
    }
    return false;
}

/* Result of a test helper that does not know the name. */
enum { NOT_MINE = -2 };

/* The tests on a value's kind ("defined", "string", "mapping", ...): 0/1, or NOT_MINE. */
static int s_kind_test(const char *name, tb_jv_t v)
{
    uint8_t k = v.kind;
    bool map = k == TB_JV_DICT && !v.u.d->ns; /* a namespace() is not a mapping */
    static const struct {
        const char *name;
        int kind;
    } simple[] = {
        {"none", TB_JV_NONE},   {"boolean", TB_JV_BOOL}, {"integer", TB_JV_INT},
        {"float", TB_JV_FLOAT}, {"string", TB_JV_STR},   {"callable", TB_JV_FUNC},
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        if (!strcmp(name, simple[i].name)) {
            return k == simple[i].kind;
        }
    }
    if (!strcmp(name, "defined")) {
        return k != TB_JV_UNDEFINED;
    }
    if (!strcmp(name, "undefined")) {
        return k == TB_JV_UNDEFINED;
    }
    if (!strcmp(name, "true")) {
        return k == TB_JV_BOOL && v.u.b;
    }
    if (!strcmp(name, "false")) {
        return k == TB_JV_BOOL && !v.u.b;
    }
    if (!strcmp(name, "number")) {
        return s_num(v);
    }
    if (!strcmp(name, "mapping")) {
        return map;
    }
    if (!strcmp(name, "iterable") || !strcmp(name, "sequence")) {
        return k == TB_JV_STR || k == TB_JV_LIST || map || k == TB_JV_UNDEFINED;
    }
    if (!strcmp(name, "escaped")) {
        return 0;
    }
    return NOT_MINE;
}

/* "sameas": the same object for containers and functions, equality for plain values. */
static int s_sameas_test(tb_jeval_t *ev, tb_jv_t v, const tb_jargs_t *a)
{
    const tb_jv_t *o = tb_jarg(a, 0, NULL);
    if (!o) {
        tb_jrt_fail(&ev->rt, TB_EINVAL, "sameas needs an argument");
        return -1;
    }
    if (o->kind != v.kind) {
        return 0;
    }
    switch (v.kind) {
    case TB_JV_STR:
        return v.u.s == o->u.s;
    case TB_JV_LIST:
        return v.u.l == o->u.l;
    case TB_JV_DICT:
        return v.u.d == o->u.d;
    case TB_JV_FUNC:
        return v.u.fn == o->u.fn;
    case TB_JV_LOOP:
        return v.u.loop == o->u.loop;
    default:
        return tb_jv_equal(v, *o);
    }
}

/* "odd", "even" and "divisibleby(num)", through the % operator. */
static int s_parity_test(tb_jeval_t *ev, const char *name, tb_jv_t v, const tb_jargs_t *a)
{
    uint8_t k = v.kind;
    if (k == TB_JV_UNDEFINED) {
        tb_jinja_undefined_error(ev, v);
        return -1;
    }
    if (k != TB_JV_INT && k != TB_JV_BOOL && k != TB_JV_FLOAT) {
        s_type_error(ev, "unsupported operand type for %", v);
        return -1;
    }
    tb_jv_t d = tb_jv_int(2);
    if (name[0] == 'd') {
        const tb_jv_t *o = tb_jarg(a, 0, "num");
        if (!o) {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "divisibleby needs an argument");
            return -1;
        }
        d = *o;
    }
    tb_jv_t m = tb_jinja_binop(ev, TB_JOP_MOD, v, d);
    if (tb_jv_is_err(m)) {
        return -1;
    }
    bool zero = !tb_jv_truthy(m);
    return name[0] == 'o' ? !zero : zero;
}

/* The comparison tests ("eq", "lessthan", "<=", "in", ...): 0/1, -1, or NOT_MINE. */
static int s_compare_test(tb_jeval_t *ev, const char *name, tb_jv_t v, const tb_jargs_t *a)
{
    static const struct {
        const char *name;
        int op;
    } ops[] = {
        {"eq", TB_JOP_EQ},       {"equalto", TB_JOP_EQ}, {"==", TB_JOP_EQ},
        {"ne", TB_JOP_NE},       {"!=", TB_JOP_NE},      {"lt", TB_JOP_LT},
        {"lessthan", TB_JOP_LT}, {"<", TB_JOP_LT},       {"le", TB_JOP_LTEQ},
        {"<=", TB_JOP_LTEQ},     {"gt", TB_JOP_GT},      {"greaterthan", TB_JOP_GT},
        {">", TB_JOP_GT},        {"ge", TB_JOP_GTEQ},    {">=", TB_JOP_GTEQ},
        {"in", TB_JCMP_IN},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (!strcmp(name, ops[i].name)) {
            return s_cmp_test(ev, ops[i].op, v, a);
        }
    }
    return NOT_MINE;
}

int tb_jinja_test(tb_jeval_t *ev, const char *name, tb_jv_t v, const tb_jargs_t *a)
{
    size_t want = s_test_takes_arg(name) ? 1 : 0;
    if (a->npos + a->nkw > want) {
        tb_jrt_fail(&ev->rt, TB_EINVAL, "test '%.40s' takes %zu argument(s), got %zu", name, want,
                    a->npos + a->nkw);
        return -1;
    }
    int r = s_kind_test(name, v);
    if (r == NOT_MINE) {
        r = s_compare_test(ev, name, v, a);
    }
    if (r != NOT_MINE) {
        return r;
    }
    if (!strcmp(name, "sameas")) {
        return s_sameas_test(ev, v, a);
    }
    if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        return s_parity_test(ev, name, v, a);
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        tb_jv_t s = tb_jv_to_str(&ev->rt, v);
        if (tb_jv_is_err(s)) {
            return -1;
        }
        bool cased = tb_jinja_str_is_cased_as(ev, s.u.s, name[0] == 'u');
        tb_jv_unref(s);
        return cased;
    }
    if (!strcmp(name, "filter") || !strcmp(name, "test")) {
        const tb_jv_t *o = tb_jarg(a, 0, NULL);
        if (!o || o->kind != TB_JV_STR) {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "%s test needs a name", name);
            return -1;
        }
        return name[0] == 'f' ? tb_jinja_filter_exists(o->u.s->data)
                              : tb_jinja_test_exists(o->u.s->data);
    }
    tb_jrt_fail(&ev->rt, TB_EINVAL, "no test named '%.60s'", name);
    return -1;
}
