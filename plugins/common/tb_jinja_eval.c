/*
 * tb_jinja_eval.c - tree-walking evaluator of the Jinja interpreter; see tb_jinja_eval.h.
 *
 * Statements return 0 (go on), S_BREAK, S_CONTINUE or -1 (error recorded in ev->rt);
 * expressions return a new reference or an error value.  Scopes live on the C stack of the
 * statement that opens them; their variables are a dict created on first assignment.
 */
#include "tb_jinja_eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_jinja_builtins.h"

enum { S_OK = 0, S_BREAK = 1, S_CONTINUE = 2, S_ERR = -1 };

struct tb_jscope {
    tb_jscope_t *parent;
    tb_jv_t vars; /* dict, or UNDEFINED until the first assignment */
};

static int s_exec_list(tb_jeval_t *ev, const tb_jnodes_t *list);
static tb_jv_t s_eval(tb_jeval_t *ev, const tb_jnode_t *nd);

bool tb_jinja_eval_step(tb_jeval_t *ev, uint64_t n)
{
    ev->rt.steps += n;
    if (ev->rt.steps > ev->rt.limits.max_steps) {
        tb_jrt_fail(&ev->rt, TB_ERANGE, "template took more than %llu evaluation steps",
                    (unsigned long long)ev->rt.limits.max_steps);
        return false;
    }
    return true;
}

/* Enters a node: position for messages, step count and stack depth. */
static bool s_enter(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    ev->rt.line = nd->line;
    ev->rt.col = nd->col;
    if (ev->rt.code != 0 || !tb_jinja_eval_step(ev, 1)) {
        return false;
    }
    if (++ev->rt.depth > ev->max_stack) {
        tb_jrt_fail(&ev->rt, TB_ERANGE, "template evaluation nested deeper than %u levels",
                    ev->max_stack);
        ev->rt.depth--;
        return false;
    }
    return true;
}

static void s_leave(tb_jeval_t *ev)
{
    ev->rt.depth--;
}

static void s_at(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    ev->rt.line = nd->line;
    ev->rt.col = nd->col;
}

/* ------------------------------------------------------------------ scopes */

static void s_scope_open(tb_jeval_t *ev, tb_jscope_t *sc, tb_jscope_t *parent)
{
    sc->parent = parent;
    sc->vars = tb_jv_undef(NULL);
    ev->scope = sc;
}

static void s_scope_close(tb_jeval_t *ev, tb_jscope_t *sc, tb_jscope_t *restore)
{
    tb_jv_unref(sc->vars);
    sc->vars = tb_jv_undef(NULL);
    ev->scope = restore;
}

/* Assigns in the innermost scope; takes ownership of `val`. */
static bool s_assign(tb_jeval_t *ev, const char *name, tb_jv_t val)
{
    tb_jscope_t *sc = ev->scope;
    if (sc->vars.kind != TB_JV_DICT) {
        sc->vars = tb_jv_dict_new(&ev->rt, 4);
        if (tb_jv_is_err(sc->vars)) {
            sc->vars = tb_jv_undef(NULL);
            tb_jv_unref(val);
            return false;
        }
    }
    return tb_jv_dict_set(&ev->rt, sc->vars.u.d, name, strlen(name), val);
}

static tb_jv_t s_lookup(tb_jeval_t *ev, const char *name, size_t len)
{
    for (tb_jscope_t *sc = ev->scope; sc; sc = sc->parent) {
        if (sc->vars.kind == TB_JV_DICT) {
            tb_jv_t *v = tb_jv_dict_get(sc->vars.u.d, name, len);
            if (v) {
                return tb_jv_ref(*v);
            }
        }
    }
    tb_jv_t *v = tb_jv_dict_get(ev->ctx.u.d, name, len);
    if (v) {
        return tb_jv_ref(*v);
    }
    return tb_jinja_global(ev, name);
}

/* Binds a for/set target (a name or a tuple of names) to `val` (owned). */
static bool s_bind(tb_jeval_t *ev, const tb_jnode_t *target, tb_jv_t val)
{
    if (target->kind == TB_JN_NAME) {
        return s_assign(ev, target->str, val);
    }
    /* tuple unpacking */
    tb_jv_t items = tb_jinja_to_list(ev, val);
    tb_jv_unref(val);
    if (tb_jv_is_err(items)) {
        return false;
    }
    size_t want = target->list.n;
    size_t have = items.u.l->n;
    if (have != want) {
        s_at(ev, target);
        if (have > want) {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "too many values to unpack (expected %zu)", want);
        } else {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "not enough values to unpack (expected %zu, got %zu)",
                        want, have);
        }
        tb_jv_unref(items);
        return false;
    }
    for (size_t i = 0; i < want; i++) {
        if (!s_assign(ev, target->list.v[i]->str, tb_jv_ref(items.u.l->items[i]))) {
            tb_jv_unref(items);
            return false;
        }
    }
    tb_jv_unref(items);
    return true;
}

/* Walks `hay` looking for the object `ns` (so that a namespace never contains itself);
 * *visited counts the values walked, charged as steps by the caller. */
static bool s_contains(tb_jv_t hay, const void *ns, uint64_t *visited)
{
    (*visited)++;
    switch (hay.kind) {
    case TB_JV_DICT:
        if (hay.u.d == ns) {
            return true;
        }
        for (size_t i = 0; i < hay.u.d->n; i++) {
            if (s_contains(hay.u.d->vals[i], ns, visited)) {
                return true;
            }
        }
        return false;
    case TB_JV_LIST:
        for (size_t i = 0; i < hay.u.l->n; i++) {
            if (s_contains(hay.u.l->items[i], ns, visited)) {
                return true;
            }
        }
        return false;
    case TB_JV_FUNC:
        return s_contains(hay.u.fn->self, ns, visited);
    case TB_JV_LOOP:
        return s_contains(hay.u.loop->seq, ns, visited);
    default:
        return false;
    }
}

/* "set ns.attr = val" (val owned). */
static bool s_assign_ns(tb_jeval_t *ev, const tb_jnode_t *target, tb_jv_t val)
{
    tb_jv_t ns = s_lookup(ev, target->str, strlen(target->str));
    s_at(ev, target);
    bool ok = false;
    uint64_t visited = 0;
    if (ns.kind != TB_JV_DICT || !ns.u.d->ns) {
        if (ns.kind == TB_JV_UNDEFINED) {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "'%s' is undefined", target->str);
        } else {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "cannot assign attribute on non-namespace object");
        }
        tb_jv_unref(val);
    } else if (s_contains(val, ns.u.d, &visited) || !tb_jinja_eval_step(ev, visited)) {
        if (ev->rt.code == 0) {
            tb_jrt_fail(&ev->rt, TB_EINVAL, "a namespace cannot contain itself");
        }
        tb_jv_unref(val);
    } else {
        ok = tb_jv_dict_set(&ev->rt, ns.u.d, target->str2, strlen(target->str2), val);
    }
    tb_jv_unref(ns);
    return ok;
}

static bool s_assign_target(tb_jeval_t *ev, const tb_jnode_t *target, tb_jv_t val)
{
    if (target->kind == TB_JN_NSREF) {
        return s_assign_ns(ev, target, val);
    }
    return s_bind(ev, target, val);
}

/* ------------------------------------------------------------------ calls */

/* Argument storage: a few on the stack (the evaluator recurses through calls, so frames stay
 * small), more on the heap. */
typedef struct {
    tb_jv_t small[6];
    tb_jv_t *v;
    size_t n;
} s_argbuf_t;

static void s_free_argbuf(s_argbuf_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        tb_jv_unref(b->v[i]);
    }
    if (b->v != b->small) {
        free(b->v);
    }
    b->v = b->small;
    b->n = 0;
}

static bool s_eval_args_vals(tb_jeval_t *ev, const tb_jnode_t *nd, tb_jv_t *vals, tb_jargs_t *a);

/* Evaluates the arguments of a CALL/FILTER/TEST node into `b` (release with s_free_argbuf). */
static bool s_eval_args(tb_jeval_t *ev, const tb_jnode_t *nd, s_argbuf_t *b, tb_jargs_t *a)
{
    size_t n = nd->list.n + nd->list2.n;
    b->v = b->small;
    b->n = 0;
    if (n > sizeof(b->small) / sizeof(b->small[0])) {
        b->v = malloc(n * sizeof(tb_jv_t));
        if (!b->v) {
            b->v = b->small;
            tb_jrt_fail(&ev->rt, TB_ENOMEM, "out of memory");
            return false;
        }
    }
    if (!s_eval_args_vals(ev, nd, b->v, a)) {
        if (b->v != b->small) {
            free(b->v);
            b->v = b->small;
        }
        return false;
    }
    b->n = n;
    return true;
}

static bool s_eval_args_vals(tb_jeval_t *ev, const tb_jnode_t *nd, tb_jv_t *vals, tb_jargs_t *a)
{
    size_t n = nd->list.n + nd->list2.n;
    for (size_t i = 0; i < n; i++) {
        const tb_jnode_t *e = i < nd->list.n ? nd->list.v[i] : nd->list2.v[i - nd->list.n];
        vals[i] = s_eval(ev, e);
        if (tb_jv_is_err(vals[i])) {
            for (size_t k = 0; k < i; k++) {
                tb_jv_unref(vals[k]);
            }
            return false;
        }
    }
    a->pos = vals;
    a->npos = nd->list.n;
    a->kw = vals + nd->list.n;
    a->kwnames = nd->names;
    a->nkw = nd->list2.n;
    return true;
}

static void s_free_args(tb_jv_t *vals, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tb_jv_unref(vals[i]);
    }
}

static tb_jv_t s_call_macro(tb_jeval_t *ev, tb_jv_func_t *fn, const tb_jargs_t *a)
{
    const tb_jnode_t *m = fn->macro;
    if (a->npos > m->nnames) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "macro '%s' takes not more than %zu argument(s)",
                           m->str, m->nnames);
    }
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i = 0;
        while (i < m->nnames && strcmp(m->names[i], a->kwnames[k]) != 0) {
            i++;
        }
        if (i == m->nnames) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "macro '%s' takes no keyword argument '%s'",
                               m->str, a->kwnames[k]);
        }
        if (i < a->npos) {
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "macro '%s' got multiple values for '%s'",
                               m->str, a->kwnames[k]);
        }
    }
    tb_jscope_t *saved = ev->scope;
    tb_jscope_t sc;
    s_scope_open(ev, &sc, ev->root);
    bool ok = true;
    for (size_t i = 0; ok && i < m->nnames; i++) {
        tb_jv_t v = tb_jv_undef(m->names[i]);
        bool given = false;
        if (i < a->npos) {
            v = tb_jv_ref(a->pos[i]);
            given = true;
        }
        for (size_t k = 0; !given && k < a->nkw; k++) {
            if (!strcmp(m->names[i], a->kwnames[k])) {
                v = tb_jv_ref(a->kw[k]);
                given = true;
            }
        }
        if (!given && m->list2.v[i]->lit_kind != 0) {
            /* defaults are evaluated in the macro's scope, as jinja2 does */
            v = s_eval(ev, m->list2.v[i]);
            if (tb_jv_is_err(v)) {
                ok = false;
                break;
            }
        }
        ok = s_assign(ev, m->names[i], v);
    }
    tb_jbuf_t buf;
    tb_jbuf_init(&buf, &ev->rt);
    tb_jbuf_t *saved_out = ev->out;
    ev->out = &buf;
    int rc = ok ? s_exec_list(ev, &m->list) : S_ERR;
    ev->out = saved_out;
    s_scope_close(ev, &sc, saved);
    if (rc == S_ERR) {
        tb_jbuf_release(&buf);
        return tb_jv_err();
    }
    return tb_jbuf_to_str(&buf);
}

tb_jv_t tb_jinja_eval_call(tb_jeval_t *ev, tb_jv_t fn, const tb_jargs_t *args)
{
    if (fn.kind == TB_JV_UNDEFINED) {
        return tb_jinja_undefined_error(ev, fn);
    }
    if (fn.kind != TB_JV_FUNC) {
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "'%s' object is not callable",
                           tb_jv_type_name(fn));
    }
    if (fn.u.fn->macro) {
        if (++ev->rt.depth > ev->max_stack) {
            ev->rt.depth--;
            return tb_jrt_fail(&ev->rt, TB_ERANGE, "macro calls nested deeper than %u levels",
                               ev->max_stack);
        }
        tb_jv_t r = s_call_macro(ev, fn.u.fn, args);
        ev->rt.depth--;
        return r;
    }
    return tb_jinja_call_builtin(ev, fn.u.fn, args);
}

/* Applies the filter chain `chain` whose innermost input is `input` (borrowed). */
static tb_jv_t s_apply_chain(tb_jeval_t *ev, const tb_jnode_t *chain, tb_jv_t input)
{
    tb_jv_t in = chain->a ? s_apply_chain(ev, chain->a, input) : tb_jv_ref(input);
    if (tb_jv_is_err(in)) {
        return in;
    }
    s_argbuf_t b;
    tb_jargs_t a;
    if (!s_eval_args(ev, chain, &b, &a)) {
        tb_jv_unref(in);
        return tb_jv_err();
    }
    s_at(ev, chain);
    tb_jv_t r = tb_jinja_filter(ev, chain->str, in, &a);
    s_free_argbuf(&b);
    tb_jv_unref(in);
    return r;
}

/* ------------------------------------------------------------------ expressions */

static tb_jv_t s_eval_const(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    switch (nd->lit_kind) {
    case TB_JLIT_BOOL:
        return tb_jv_bool(nd->ival != 0);
    case TB_JLIT_INT:
        return tb_jv_int(nd->ival);
    case TB_JLIT_FLOAT:
        return tb_jv_float(nd->fval);
    case TB_JLIT_STR:
        return tb_jv_str_new(&ev->rt, nd->str, nd->len);
    default:
        return tb_jv_none();
    }
}

static tb_jv_t s_eval_list(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t l = tb_jv_list_new(&ev->rt, nd->list.n);
    if (tb_jv_is_err(l)) {
        return l;
    }
    l.u.l->tuple = nd->kind == TB_JN_TUPLE;
    for (size_t i = 0; i < nd->list.n; i++) {
        tb_jv_t v = s_eval(ev, nd->list.v[i]);
        if (tb_jv_is_err(v) || !tb_jv_list_push(&ev->rt, l.u.l, v)) {
            tb_jv_unref(l);
            return tb_jv_err();
        }
    }
    return l;
}

static tb_jv_t s_eval_dict(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t d = tb_jv_dict_new(&ev->rt, nd->list.n);
    if (tb_jv_is_err(d)) {
        return d;
    }
    for (size_t i = 0; i < nd->list.n; i++) {
        tb_jv_t k = s_eval(ev, nd->list.v[i]);
        if (tb_jv_is_err(k)) {
            tb_jv_unref(d);
            return k;
        }
        if (k.kind != TB_JV_STR) {
            s_at(ev, nd->list.v[i]);
            tb_jv_unref(k);
            tb_jv_unref(d);
            return tb_jrt_fail(&ev->rt, TB_EINVAL, "dict keys must be strings here");
        }
        tb_jv_t v = s_eval(ev, nd->list2.v[i]);
        bool ok = !tb_jv_is_err(v) && tb_jv_dict_set(&ev->rt, d.u.d, k.u.s->data, k.u.s->len, v);
        tb_jv_unref(k);
        if (!ok) {
            tb_jv_unref(d);
            return tb_jv_err();
        }
    }
    return d;
}

static tb_jv_t s_eval_call(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t fn = s_eval(ev, nd->a);
    if (tb_jv_is_err(fn)) {
        return fn;
    }
    s_argbuf_t b;
    tb_jargs_t a;
    if (!s_eval_args(ev, nd, &b, &a)) {
        tb_jv_unref(fn);
        return tb_jv_err();
    }
    s_at(ev, nd);
    tb_jv_t r = tb_jinja_eval_call(ev, fn, &a);
    s_free_argbuf(&b);
    tb_jv_unref(fn);
    return r;
}

/* The input (nd->a) and the arguments of a filter or test node; false (nothing left to free)
 * on an error. */
static bool s_eval_input_args(tb_jeval_t *ev, const tb_jnode_t *nd, tb_jv_t *in, s_argbuf_t *b,
                              tb_jargs_t *a)
{
    *in = s_eval(ev, nd->a);
    if (tb_jv_is_err(*in)) {
        return false;
    }
    if (!s_eval_args(ev, nd, b, a)) {
        tb_jv_unref(*in);
        return false;
    }
    s_at(ev, nd);
    return true;
}

static tb_jv_t s_eval_test(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t in;
    s_argbuf_t b;
    tb_jargs_t a;
    if (!s_eval_input_args(ev, nd, &in, &b, &a)) {
        return tb_jv_err();
    }
    int r = tb_jinja_test(ev, nd->str, in, &a);
    s_free_argbuf(&b);
    tb_jv_unref(in);
    if (r < 0) {
        return tb_jv_err();
    }
    return tb_jv_bool(nd->flag ? r == 0 : r == 1);
}

static tb_jv_t s_eval_concat(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jbuf_t b;
    tb_jbuf_init(&b, &ev->rt);
    for (size_t i = 0; i < nd->list.n; i++) {
        tb_jv_t v = s_eval(ev, nd->list.v[i]);
        bool ok = !tb_jv_is_err(v) && tb_jv_write_str(&b, v);
        tb_jv_unref(v);
        if (!ok) {
            tb_jbuf_release(&b);
            return tb_jv_err();
        }
    }
    return tb_jbuf_to_str(&b);
}

static tb_jv_t s_eval_compare(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t left = s_eval(ev, nd->a);
    if (tb_jv_is_err(left)) {
        return left;
    }
    for (size_t i = 0; i < nd->list.n; i++) {
        tb_jv_t right = s_eval(ev, nd->list.v[i]);
        if (tb_jv_is_err(right)) {
            tb_jv_unref(left);
            return right;
        }
        s_at(ev, nd);
        int r = tb_jinja_compare(ev, nd->ops[i], left, right);
        tb_jv_unref(left);
        left = right;
        if (r <= 0) {
            tb_jv_unref(left);
            return r < 0 ? tb_jv_err() : tb_jv_bool(false);
        }
    }
    tb_jv_unref(left);
    return tb_jv_bool(true);
}

/* obj.name */
static tb_jv_t s_eval_getattr(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t obj = s_eval(ev, nd->a);
    if (tb_jv_is_err(obj)) {
        return obj;
    }
    s_at(ev, nd);
    tb_jv_t r = obj.kind == TB_JV_UNDEFINED ? tb_jinja_undefined_error(ev, obj)
                                            : tb_jinja_getattr(ev, obj, nd->str, nd->len);
    tb_jv_unref(obj);
    return r;
}

/* obj[key] */
static tb_jv_t s_eval_getitem(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t obj = s_eval(ev, nd->a);
    if (tb_jv_is_err(obj)) {
        return obj;
    }
    tb_jv_t key = s_eval(ev, nd->b);
    if (tb_jv_is_err(key)) {
        tb_jv_unref(obj);
        return key;
    }
    s_at(ev, nd);
    tb_jv_t r = obj.kind == TB_JV_UNDEFINED ? tb_jinja_undefined_error(ev, obj)
                                            : tb_jinja_getitem(ev, obj, key);
    tb_jv_unref(obj);
    tb_jv_unref(key);
    return r;
}

/* obj[start:stop:step] (nd->a the object, b..d the parts, each optional) */
static tb_jv_t s_eval_slice(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t parts[4] = {tb_jv_none(), tb_jv_none(), tb_jv_none(), tb_jv_none()};
    const tb_jnode_t *src[4] = {nd->a, nd->b, nd->c, nd->d};
    for (int i = 0; i < 4; i++) {
        if (src[i]) {
            parts[i] = s_eval(ev, src[i]);
            if (tb_jv_is_err(parts[i])) {
                for (int k = 0; k < i; k++) {
                    tb_jv_unref(parts[k]);
                }
                return tb_jv_err();
            }
        }
    }
    s_at(ev, nd);
    tb_jv_t r = parts[0].kind == TB_JV_UNDEFINED
                    ? tb_jinja_undefined_error(ev, parts[0])
                    : tb_jinja_slice(ev, parts[0], parts[1], parts[2], parts[3]);
    for (int i = 0; i < 4; i++) {
        tb_jv_unref(parts[i]);
    }
    return r;
}

/* in | name(args): a filter expression has an input; chains without one only occur in
 * blocks */
static tb_jv_t s_eval_filter(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t in;
    s_argbuf_t b;
    tb_jargs_t a;
    if (!s_eval_input_args(ev, nd, &in, &b, &a)) {
        return tb_jv_err();
    }
    tb_jv_t r = tb_jinja_filter(ev, nd->str, in, &a);
    s_free_argbuf(&b);
    tb_jv_unref(in);
    return r;
}

/* a <op> b for the arithmetic operators */
static tb_jv_t s_eval_binop(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t a = s_eval(ev, nd->a);
    if (tb_jv_is_err(a)) {
        return a;
    }
    tb_jv_t b = s_eval(ev, nd->b);
    if (tb_jv_is_err(b)) {
        tb_jv_unref(a);
        return b;
    }
    s_at(ev, nd);
    tb_jv_t r = tb_jinja_binop(ev, nd->op, a, b);
    tb_jv_unref(a);
    tb_jv_unref(b);
    return r;
}

static tb_jv_t s_eval_inner(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    switch (nd->kind) {
    case TB_JN_CONST:
        return s_eval_const(ev, nd);
    case TB_JN_NAME:
        return s_lookup(ev, nd->str, nd->len);
    case TB_JN_LIST:
    case TB_JN_TUPLE:
        return s_eval_list(ev, nd);
    case TB_JN_DICT:
        return s_eval_dict(ev, nd);
    case TB_JN_GETATTR:
        return s_eval_getattr(ev, nd);
    case TB_JN_GETITEM:
        return s_eval_getitem(ev, nd);
    case TB_JN_SLICE:
        return s_eval_slice(ev, nd);
    case TB_JN_CALL:
        return s_eval_call(ev, nd);
    case TB_JN_FILTER:
        return s_eval_filter(ev, nd);
    case TB_JN_TEST:
        return s_eval_test(ev, nd);
    case TB_JN_BINOP:
        return s_eval_binop(ev, nd);
    case TB_JN_NEG:
    case TB_JN_POS: {
        tb_jv_t a = s_eval(ev, nd->a);
        if (tb_jv_is_err(a)) {
            return a;
        }
        s_at(ev, nd);
        tb_jv_t r = tb_jinja_neg(ev, a, nd->kind == TB_JN_NEG);
        tb_jv_unref(a);
        return r;
    }
    case TB_JN_NOT: {
        tb_jv_t a = s_eval(ev, nd->a);
        if (tb_jv_is_err(a)) {
            return a;
        }
        bool t = tb_jv_truthy(a);
        tb_jv_unref(a);
        return tb_jv_bool(!t);
    }
    case TB_JN_AND:
    case TB_JN_OR: {
        tb_jv_t a = s_eval(ev, nd->a);
        if (tb_jv_is_err(a)) {
            return a;
        }
        bool t = tb_jv_truthy(a);
        if ((nd->kind == TB_JN_AND) != t) {
            return a; /* "a and b" is a when a is falsy; "a or b" is a when a is truthy */
        }
        tb_jv_unref(a);
        return s_eval(ev, nd->b);
    }
    case TB_JN_CONCAT:
        return s_eval_concat(ev, nd);
    case TB_JN_COMPARE:
        return s_eval_compare(ev, nd);
    case TB_JN_CONDEXPR: {
        tb_jv_t c = s_eval(ev, nd->a);
        if (tb_jv_is_err(c)) {
            return c;
        }
        bool t = tb_jv_truthy(c);
        tb_jv_unref(c);
        if (t) {
            return s_eval(ev, nd->b);
        }
        return nd->c ? s_eval(ev, nd->c) : tb_jv_undef(NULL);
    }
    default:
        return tb_jrt_fail(&ev->rt, TB_EINTERNAL, "unexpected node %d in expression", nd->kind);
    }
}

static tb_jv_t s_eval(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    if (!s_enter(ev, nd)) {
        return tb_jv_err();
    }
    tb_jv_t r = s_eval_inner(ev, nd);
    s_leave(ev);
    return r;
}

/* ------------------------------------------------------------------ statements */

static bool s_write(tb_jeval_t *ev, tb_jv_t v)
{
    return tb_jv_write_str(ev->out, v);
}

/* Renders `list` into a new string (a capture for set blocks, filter blocks). */
static tb_jv_t s_capture(tb_jeval_t *ev, const tb_jnodes_t *list)
{
    tb_jbuf_t buf;
    tb_jbuf_init(&buf, &ev->rt);
    tb_jbuf_t *saved = ev->out;
    ev->out = &buf;
    /* the captured body has its own scope: its assignments do not leak (as in jinja2) */
    tb_jscope_t *outer = ev->scope;
    tb_jscope_t sc;
    s_scope_open(ev, &sc, outer);
    int rc = s_exec_list(ev, list);
    s_scope_close(ev, &sc, outer);
    ev->out = saved;
    if (rc == S_ERR) {
        tb_jbuf_release(&buf);
        return tb_jv_err();
    }
    if (rc != S_OK) {
        /* break/continue inside a captured block leave the loop only after the capture */
        tb_jbuf_release(&buf);
        return tb_jrt_fail(&ev->rt, TB_EINVAL, "break/continue inside a set or filter block");
    }
    return tb_jbuf_to_str(&buf);
}

static int s_exec_for(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jv_t iterable = s_eval(ev, nd->b);
    if (tb_jv_is_err(iterable)) {
        return S_ERR;
    }
    s_at(ev, nd);
    tb_jv_t items = tb_jinja_to_list(ev, iterable);
    tb_jv_unref(iterable);
    if (tb_jv_is_err(items)) {
        return S_ERR;
    }
    tb_jscope_t *outer = ev->scope;
    int rc = S_OK;
    if (nd->c) {
        /* "for x in xs if cond": filter first; loop.* counts the kept items */
        tb_jv_t kept = tb_jv_list_new(&ev->rt, items.u.l->n);
        for (size_t i = 0; !tb_jv_is_err(kept) && i < items.u.l->n; i++) {
            tb_jscope_t sc;
            s_scope_open(ev, &sc, outer);
            bool ok = s_bind(ev, nd->a, tb_jv_ref(items.u.l->items[i]));
            tb_jv_t c = ok ? s_eval(ev, nd->c) : tb_jv_err();
            s_scope_close(ev, &sc, outer);
            if (tb_jv_is_err(c)) {
                tb_jv_unref(kept);
                kept = tb_jv_err();
                break;
            }
            bool keep = tb_jv_truthy(c);
            tb_jv_unref(c);
            if (keep && !tb_jv_list_push(&ev->rt, kept.u.l, tb_jv_ref(items.u.l->items[i]))) {
                tb_jv_unref(kept);
                kept = tb_jv_err();
            }
        }
        tb_jv_unref(items);
        if (tb_jv_is_err(kept)) {
            return S_ERR;
        }
        items = kept;
    }
    tb_jv_t loop = tb_jv_loop_new(&ev->rt, items);
    if (tb_jv_is_err(loop)) {
        tb_jv_unref(items);
        return S_ERR;
    }
    size_t n = items.u.l->n;
    for (size_t i = 0; i < n; i++) {
        if (++ev->rt.loop_iters > ev->rt.limits.max_loop_iterations) {
            s_at(ev, nd);
            tb_jrt_fail(&ev->rt, TB_ERANGE, "template ran more than %llu loop iterations",
                        (unsigned long long)ev->rt.limits.max_loop_iterations);
            rc = S_ERR;
            break;
        }
        loop.u.loop->index0 = i;
        tb_jscope_t sc;
        s_scope_open(ev, &sc, outer);
        bool ok = s_bind(ev, nd->a, tb_jv_ref(items.u.l->items[i])) &&
                  s_assign(ev, "loop", tb_jv_ref(loop));
        rc = ok ? s_exec_list(ev, &nd->list) : S_ERR;
        s_scope_close(ev, &sc, outer);
        if (rc == S_ERR || rc == S_BREAK) {
            break;
        }
        rc = S_OK;
    }
    if (rc == S_BREAK) {
        rc = S_OK;
    }
    tb_jv_unref(loop);
    tb_jv_unref(items);
    if (rc == S_OK && n == 0 && nd->list2.n > 0) {
        tb_jscope_t sc;
        s_scope_open(ev, &sc, outer);
        rc = s_exec_list(ev, &nd->list2);
        s_scope_close(ev, &sc, outer);
    }
    return rc;
}

/* "with a = x, b = y": values are evaluated in the outer scope, bound in a new one. */
static int s_exec_with(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    tb_jscope_t *outer = ev->scope;
    size_t n = nd->list2.n;
    tb_jv_t *vals = calloc(n ? n : 1, sizeof(tb_jv_t));
    if (!vals) {
        tb_jrt_fail(&ev->rt, TB_ENOMEM, "out of memory");
        return S_ERR;
    }
    for (size_t i = 0; i < n; i++) {
        vals[i] = s_eval(ev, nd->list3.v[i]);
        if (tb_jv_is_err(vals[i])) {
            s_free_args(vals, i);
            free(vals);
            return S_ERR;
        }
    }
    tb_jscope_t sc;
    s_scope_open(ev, &sc, outer);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        if (ok) {
            ok = s_bind(ev, nd->list2.v[i], vals[i]);
        } else {
            tb_jv_unref(vals[i]);
        }
    }
    free(vals);
    int rc = ok ? s_exec_list(ev, &nd->list) : S_ERR;
    s_scope_close(ev, &sc, outer);
    return rc;
}

static int s_exec(tb_jeval_t *ev, const tb_jnode_t *nd);

static int s_exec_inner(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    switch (nd->kind) {
    case TB_JN_DATA:
        return tb_jbuf_add(ev->out, nd->str, nd->len) ? S_OK : S_ERR;
    case TB_JN_OUTPUT: {
        tb_jv_t v = s_eval(ev, nd->a);
        bool ok = !tb_jv_is_err(v) && s_write(ev, v);
        tb_jv_unref(v);
        return ok ? S_OK : S_ERR;
    }
    case TB_JN_IF: {
        tb_jv_t c = s_eval(ev, nd->a);
        if (tb_jv_is_err(c)) {
            return S_ERR;
        }
        bool t = tb_jv_truthy(c);
        tb_jv_unref(c);
        return s_exec_list(ev, t ? &nd->list : &nd->list2);
    }
    case TB_JN_FOR:
        return s_exec_for(ev, nd);
    case TB_JN_SET: {
        tb_jv_t v = s_eval(ev, nd->b);
        if (tb_jv_is_err(v)) {
            return S_ERR;
        }
        return s_assign_target(ev, nd->a, v) ? S_OK : S_ERR;
    }
    case TB_JN_SET_BLOCK: {
        tb_jv_t v = s_capture(ev, &nd->list);
        if (!tb_jv_is_err(v) && nd->c) {
            tb_jv_t f = s_apply_chain(ev, nd->c, v);
            tb_jv_unref(v);
            v = f;
        }
        if (tb_jv_is_err(v)) {
            return S_ERR;
        }
        return s_assign_target(ev, nd->a, v) ? S_OK : S_ERR;
    }
    case TB_JN_FILTER_BLOCK: {
        tb_jv_t v = s_capture(ev, &nd->list);
        if (tb_jv_is_err(v)) {
            return S_ERR;
        }
        tb_jv_t f = s_apply_chain(ev, nd->c, v);
        tb_jv_unref(v);
        bool ok = !tb_jv_is_err(f) && s_write(ev, f);
        tb_jv_unref(f);
        return ok ? S_OK : S_ERR;
    }
    case TB_JN_MACRO: {
        tb_jv_t fn = tb_jv_func_new(&ev->rt, nd->str, -1, tb_jv_undef(NULL), nd);
        if (tb_jv_is_err(fn)) {
            return S_ERR;
        }
        return s_assign(ev, nd->str, fn) ? S_OK : S_ERR;
    }
    case TB_JN_WITH:
        return s_exec_with(ev, nd);
    case TB_JN_SCOPE: {
        tb_jscope_t *outer = ev->scope;
        tb_jscope_t sc;
        s_scope_open(ev, &sc, outer);
        int rc = s_exec_list(ev, &nd->list);
        s_scope_close(ev, &sc, outer);
        return rc;
    }
    case TB_JN_BREAK:
        return S_BREAK;
    case TB_JN_CONTINUE:
        return S_CONTINUE;
    default:
        tb_jrt_fail(&ev->rt, TB_EINTERNAL, "unexpected node %d in statement", nd->kind);
        return S_ERR;
    }
}

static int s_exec(tb_jeval_t *ev, const tb_jnode_t *nd)
{
    if (!s_enter(ev, nd)) {
        return S_ERR;
    }
    int rc = s_exec_inner(ev, nd);
    s_leave(ev);
    return rc;
}

static int s_exec_list(tb_jeval_t *ev, const tb_jnodes_t *list)
{
    for (size_t i = 0; i < list->n; i++) {
        int rc = s_exec(ev, list->v[i]);
        if (rc != S_OK) {
            return rc;
        }
    }
    return S_OK;
}

/* ------------------------------------------------------------------ entry */

int tb_jinja_eval_render(const tb_jnode_t *root, const struct tb_jinja_limits *limits,
                         locale_t loc, const json_t *ctx, char **out, size_t *out_len, char *err,
                         size_t err_len)
{
    tb_jeval_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.rt.err = err;
    ev.rt.err_len = err_len;
    ev.rt.limits = *limits;
    ev.rt.loc = loc;
    ev.rt.line = 1;
    ev.rt.col = 1;
    ev.max_stack = limits->max_depth * 8;
    if (err && err_len) {
        err[0] = '\0';
    }
    *out = NULL;
    if (out_len) {
        *out_len = 0;
    }

    tb_jbuf_t buf;
    tb_jbuf_init(&buf, &ev.rt);
    tb_jscope_t root_scope;
    root_scope.parent = NULL;
    root_scope.vars = tb_jv_undef(NULL);
    int rc = 0;

    if (ctx && !json_is_object(ctx)) {
        tb_jrt_fail(&ev.rt, TB_EINVAL, "the render context must be a JSON object");
        goto done;
    }
    if (ctx) {
        ev.ctx = tb_jv_from_json(&ev.rt, ctx, 0);
    } else {
        ev.ctx = tb_jv_dict_new(&ev.rt, 0);
    }
    if (tb_jv_is_err(ev.ctx)) {
        goto done;
    }
    ev.root = &root_scope;
    ev.scope = &root_scope;
    ev.out = &buf;
    rc = s_exec_list(&ev, &root->list);
    if (rc != S_ERR && ev.rt.code == 0) {
        *out = buf.data ? buf.data : strdup("");
        if (!*out) {
            tb_jrt_fail(&ev.rt, TB_ENOMEM, "out of memory");
            goto done;
        }
        if (out_len) {
            *out_len = buf.len;
        }
        buf.data = NULL;
    }
done:
    tb_jbuf_release(&buf);
    tb_jv_unref(root_scope.vars);
    tb_jv_unref(ev.ctx);
    if (ev.rt.code == 0 && rc == S_ERR) {
        tb_jrt_fail(&ev.rt, TB_EINTERNAL, "render failed without a message");
    }
    return ev.rt.code;
}
