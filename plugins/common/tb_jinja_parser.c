/*
 * tb_jinja_parser.c - recursive-descent parser of the Jinja interpreter; see
 * tb_jinja_parser.h.  Recursion depth is bounded by max_depth so that hostile templates
 * ("((((((..." or thousands of nested ifs) fail with a message instead of exhausting the stack.
 */
#include "tb_jinja_parser.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_jinja_builtins.h"

typedef struct {
    tb_jarena_t *arena;
    const tb_jtok_t *t;
    size_t n;
    size_t i;
    uint32_t depth;
    uint32_t max_depth;
    uint32_t loops; /* for-loops enclosing the current statement (break/continue) */
    uint32_t in_if; /* if-bodies enclosing it: unknown filters there fail only when run */
    char *err;
    size_t err_len;
    int rc;
} s_parser_t;

/* A growable node list, copied into the arena when finished. */
typedef struct {
    tb_jnode_t **v;
    size_t n, cap;
} s_vec_t;

static int s_fail_at(s_parser_t *p, const tb_jtok_t *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_fail_at(s_parser_t *p, const tb_jtok_t *t, const char *fmt, ...)
{
    if (p->rc == 0) {
        p->rc = TB_EINVAL;
        if (p->err && p->err_len) {
            int n = snprintf(p->err, p->err_len, "%u:%u: ", t->line, t->col);
            if (n >= 0 && (size_t)n < p->err_len) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(p->err + n, p->err_len - (size_t)n, fmt, ap);
                va_end(ap);
            }
        }
    }
    return p->rc;
}

static int s_oom(s_parser_t *p)
{
    if (p->rc == 0) {
        p->rc = TB_ENOMEM;
        if (p->err && p->err_len) {
            snprintf(p->err, p->err_len, "%u:%u: out of memory (or template too large)",
                     p->t[p->i].line, p->t[p->i].col);
        }
    }
    return p->rc;
}

static const tb_jtok_t *s_cur(const s_parser_t *p)
{
    return &p->t[p->i];
}

static const tb_jtok_t *s_look(const s_parser_t *p)
{
    return &p->t[p->i + 1 < p->n ? p->i + 1 : p->n - 1];
}

static void s_next(s_parser_t *p)
{
    if (p->i + 1 < p->n) {
        p->i++;
    }
}

static bool s_is_op(const tb_jtok_t *t, uint8_t op)
{
    return t->type == TB_JT_OP && t->op == op;
}

static bool s_is_name(const tb_jtok_t *t, const char *name)
{
    return t->type == TB_JT_NAME && strcmp(t->str, name) == 0;
}

static bool s_skip_name(s_parser_t *p, const char *name)
{
    if (s_is_name(s_cur(p), name)) {
        s_next(p);
        return true;
    }
    return false;
}

static bool s_skip_op(s_parser_t *p, uint8_t op)
{
    if (s_is_op(s_cur(p), op)) {
        s_next(p);
        return true;
    }
    return false;
}

static int s_unexpected(s_parser_t *p, const char *expected)
{
    char what[64];
    tb_jtok_describe(s_cur(p), what, sizeof(what));
    if (expected) {
        return s_fail_at(p, s_cur(p), "expected %s, got %s", expected, what);
    }
    return s_fail_at(p, s_cur(p), "unexpected %s", what);
}

static bool s_expect_op(s_parser_t *p, uint8_t op, const char *desc)
{
    if (s_skip_op(p, op)) {
        return true;
    }
    s_unexpected(p, desc);
    return false;
}

static bool s_expect_type(s_parser_t *p, uint8_t type, const char *desc)
{
    if (s_cur(p)->type == type) {
        s_next(p);
        return true;
    }
    s_unexpected(p, desc);
    return false;
}

static tb_jnode_t *s_node(s_parser_t *p, uint8_t kind, const tb_jtok_t *at)
{
    tb_jnode_t *nd = tb_jarena_alloc(p->arena, sizeof(*nd));
    if (!nd) {
        s_oom(p);
        return NULL;
    }
    nd->kind = kind;
    nd->line = at->line;
    nd->col = at->col;
    return nd;
}

static bool s_vec_push(s_parser_t *p, s_vec_t *v, tb_jnode_t *nd)
{
    if (!nd) {
        return false;
    }
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 8;
        tb_jnode_t **nv = realloc(v->v, ncap * sizeof(*nv));
        if (!nv) {
            s_oom(p);
            return false;
        }
        v->v = nv;
        v->cap = ncap;
    }
    v->v[v->n++] = nd;
    return true;
}

/* Moves the vector into the arena (the vector is freed either way). */
static bool s_vec_finish(s_parser_t *p, s_vec_t *v, tb_jnodes_t *out)
{
    out->n = 0;
    out->v = NULL;
    if (v->n > 0) {
        out->v = tb_jarena_alloc(p->arena, v->n * sizeof(tb_jnode_t *));
        if (!out->v) {
            free(v->v);
            v->v = NULL;
            s_oom(p);
            return false;
        }
        memcpy(out->v, v->v, v->n * sizeof(tb_jnode_t *));
        out->n = v->n;
    }
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
    return true;
}

static bool s_enter(s_parser_t *p)
{
    if (++p->depth > p->max_depth) {
        s_fail_at(p, s_cur(p), "template nested deeper than %u levels", p->max_depth);
        return false;
    }
    return true;
}

static void s_leave(s_parser_t *p)
{
    p->depth--;
}

/* ------------------------------------------------------------------ expressions */

static tb_jnode_t *s_expression(s_parser_t *p, bool with_condexpr);
static tb_jnode_t *s_or(s_parser_t *p);
static tb_jnode_t *s_unary(s_parser_t *p, bool with_filter);
static tb_jnode_t *s_primary(s_parser_t *p);
static tb_jnode_t *s_postfix(s_parser_t *p, tb_jnode_t *nd);
static tb_jnode_t *s_filter_expr(s_parser_t *p, tb_jnode_t *nd);

/* extra_end: a name that also ends a tuple ("in" for loop targets, "recursive"). */
static bool s_tuple_end(const s_parser_t *p, const char *extra_end)
{
    const tb_jtok_t *t = s_cur(p);
    if (t->type == TB_JT_VAR_END || t->type == TB_JT_BLOCK_END || t->type == TB_JT_EOF ||
        s_is_op(t, TB_JOP_RPAREN)) {
        return true;
    }
    return extra_end && s_is_name(t, extra_end);
}

/* simplified: only names and literals (assignment targets). */
static tb_jnode_t *s_tuple(s_parser_t *p, bool simplified, bool with_condexpr,
                           const char *extra_end, bool explicit_parens)
{
    const tb_jtok_t *start = s_cur(p);
    s_vec_t items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n > 0 && !s_expect_op(p, TB_JOP_COMMA, "','")) {
            goto fail;
        }
        if (s_tuple_end(p, extra_end)) {
            break;
        }
        tb_jnode_t *e = simplified ? s_primary(p) : s_expression(p, with_condexpr);
        if (!s_vec_push(p, &items, e)) {
            goto fail;
        }
        if (s_is_op(s_cur(p), TB_JOP_COMMA)) {
            is_tuple = true;
        } else {
            break;
        }
    }
    if (!is_tuple) {
        if (items.n > 0) {
            tb_jnode_t *e = items.v[0];
            free(items.v);
            return e;
        }
        if (!explicit_parens) {
            char what[64];
            tb_jtok_describe(s_cur(p), what, sizeof(what));
            s_fail_at(p, s_cur(p), "expected an expression, got %s", what);
            goto fail;
        }
    }
    tb_jnode_t *nd = s_node(p, TB_JN_TUPLE, start);
    if (!nd || !s_vec_finish(p, &items, &nd->list)) {
        goto fail;
    }
    return nd;
fail:
    free(items.v);
    return NULL;
}

static tb_jnode_t *s_expression(s_parser_t *p, bool with_condexpr)
{
    if (!s_enter(p)) {
        return NULL;
    }
    tb_jnode_t *e1 = s_or(p);
    while (e1 && with_condexpr && s_is_name(s_cur(p), "if")) {
        const tb_jtok_t *at = s_cur(p);
        s_next(p);
        tb_jnode_t *cond = s_or(p);
        tb_jnode_t *e3 = NULL;
        if (!cond) {
            e1 = NULL;
            break;
        }
        if (s_skip_name(p, "else")) {
            e3 = s_expression(p, true);
            if (!e3) {
                e1 = NULL;
                break;
            }
        }
        tb_jnode_t *nd = s_node(p, TB_JN_CONDEXPR, at);
        if (!nd) {
            e1 = NULL;
            break;
        }
        nd->a = cond;
        nd->b = e1;
        nd->c = e3;
        e1 = nd;
    }
    s_leave(p);
    return e1;
}

static tb_jnode_t *s_binary(s_parser_t *p, uint8_t kind, uint8_t op, tb_jnode_t *a, tb_jnode_t *b,
                            const tb_jtok_t *at)
{
    if (!a || !b) {
        return NULL;
    }
    tb_jnode_t *nd = s_node(p, kind, at);
    if (nd) {
        nd->op = op;
        nd->a = a;
        nd->b = b;
    }
    return nd;
}

static tb_jnode_t *s_not(s_parser_t *p);
static tb_jnode_t *s_and(s_parser_t *p)
{
    tb_jnode_t *left = s_not(p);
    while (left && s_is_name(s_cur(p), "and")) {
        const tb_jtok_t *at = s_cur(p);
        s_next(p);
        left = s_binary(p, TB_JN_AND, 0, left, s_not(p), at);
    }
    return left;
}

static tb_jnode_t *s_or(s_parser_t *p)
{
    tb_jnode_t *left = s_and(p);
    while (left && s_is_name(s_cur(p), "or")) {
        const tb_jtok_t *at = s_cur(p);
        s_next(p);
        left = s_binary(p, TB_JN_OR, 0, left, s_and(p), at);
    }
    return left;
}

static tb_jnode_t *s_compare(s_parser_t *p);
static tb_jnode_t *s_not(s_parser_t *p)
{
    if (s_is_name(s_cur(p), "not")) {
        const tb_jtok_t *at = s_cur(p);
        s_next(p);
        if (!s_enter(p)) {
            return NULL;
        }
        tb_jnode_t *inner = s_not(p);
        s_leave(p);
        if (!inner) {
            return NULL;
        }
        tb_jnode_t *nd = s_node(p, TB_JN_NOT, at);
        if (nd) {
            nd->a = inner;
        }
        return nd;
    }
    return s_compare(p);
}

static tb_jnode_t *s_math1(s_parser_t *p);
static tb_jnode_t *s_compare(s_parser_t *p)
{
    const tb_jtok_t *at = s_cur(p);
    tb_jnode_t *first = s_math1(p);
    if (!first) {
        return NULL;
    }
    s_vec_t operands = {0};
    uint8_t ops[64];
    for (;;) {
        const tb_jtok_t *t = s_cur(p);
        uint8_t op = 0;
        if (t->type == TB_JT_OP &&
            (t->op == TB_JOP_EQ || t->op == TB_JOP_NE || t->op == TB_JOP_GT ||
             t->op == TB_JOP_GTEQ || t->op == TB_JOP_LT || t->op == TB_JOP_LTEQ)) {
            op = t->op;
            s_next(p);
        } else if (s_is_name(t, "in")) {
            op = TB_JCMP_IN;
            s_next(p);
        } else if (s_is_name(t, "not") && s_is_name(s_look(p), "in")) {
            op = TB_JCMP_NOTIN;
            s_next(p);
            s_next(p);
        } else {
            break;
        }
        if (operands.n >= sizeof(ops)) {
            free(operands.v);
            s_fail_at(p, t, "too many chained comparisons");
            return NULL;
        }
        ops[operands.n] = op;
        if (!s_vec_push(p, &operands, s_math1(p))) {
            free(operands.v);
            return NULL;
        }
    }
    if (operands.n == 0) {
        return first;
    }
    tb_jnode_t *nd = s_node(p, TB_JN_COMPARE, at);
    uint8_t *o = nd ? tb_jarena_alloc(p->arena, operands.n) : NULL;
    if (!nd || !o) {
        free(operands.v);
        s_oom(p);
        return NULL;
    }
    memcpy(o, ops, operands.n);
    nd->a = first;
    nd->ops = o;
    if (!s_vec_finish(p, &operands, &nd->list)) {
        return NULL;
    }
    return nd;
}

static tb_jnode_t *s_concat(s_parser_t *p);
static tb_jnode_t *s_math1(s_parser_t *p)
{
    tb_jnode_t *left = s_concat(p);
    while (left && (s_is_op(s_cur(p), TB_JOP_ADD) || s_is_op(s_cur(p), TB_JOP_SUB))) {
        const tb_jtok_t *at = s_cur(p);
        s_next(p);
        left = s_binary(p, TB_JN_BINOP, at->op, left, s_concat(p), at);
    }
    return left;
}

static tb_jnode_t *s_math2(s_parser_t *p);
static tb_jnode_t *s_concat(s_parser_t *p)
{
    const tb_jtok_t *at = s_cur(p);
    tb_jnode_t *first = s_math2(p);
    if (!first || !s_is_op(s_cur(p), TB_JOP_TILDE)) {
        return first;
    }
    s_vec_t args = {0};
    if (!s_vec_push(p, &args, first)) {
        return NULL;
    }
    while (s_skip_op(p, TB_JOP_TILDE)) {
        if (!s_vec_push(p, &args, s_math2(p))) {
            free(args.v);
            return NULL;
        }
    }
    tb_jnode_t *nd = s_node(p, TB_JN_CONCAT, at);
    if (!nd || !s_vec_finish(p, &args, &nd->list)) {
        free(args.v);
        return NULL;
    }
    return nd;
}

static tb_jnode_t *s_pow(s_parser_t *p);
static tb_jnode_t *s_math2(s_parser_t *p)
{
    tb_jnode_t *left = s_pow(p);
    while (left && (s_is_op(s_cur(p), TB_JOP_MUL) || s_is_op(s_cur(p), TB_JOP_DIV) ||
                    s_is_op(s_cur(p), TB_JOP_FLOORDIV) || s_is_op(s_cur(p), TB_JOP_MOD))) {
        const tb_jtok_t *at = s_cur(p);
        s_next(p);
        left = s_binary(p, TB_JN_BINOP, at->op, left, s_pow(p), at);
    }
    return left;
}

static tb_jnode_t *s_pow(s_parser_t *p)
{
    tb_jnode_t *left = s_unary(p, true);
    while (left && s_is_op(s_cur(p), TB_JOP_POW)) {
        const tb_jtok_t *at = s_cur(p);
        s_next(p);
        left = s_binary(p, TB_JN_BINOP, TB_JOP_POW, left, s_unary(p, true), at);
    }
    return left;
}

static tb_jnode_t *s_unary(s_parser_t *p, bool with_filter)
{
    if (!s_enter(p)) {
        return NULL;
    }
    const tb_jtok_t *at = s_cur(p);
    tb_jnode_t *nd;
    if (s_is_op(at, TB_JOP_SUB) || s_is_op(at, TB_JOP_ADD)) {
        s_next(p);
        tb_jnode_t *inner = s_unary(p, false);
        nd = inner ? s_node(p, at->op == TB_JOP_SUB ? TB_JN_NEG : TB_JN_POS, at) : NULL;
        if (nd) {
            nd->a = inner;
        }
    } else {
        nd = s_primary(p);
    }
    nd = nd ? s_postfix(p, nd) : NULL;
    if (nd && with_filter) {
        nd = s_filter_expr(p, nd);
    }
    s_leave(p);
    return nd;
}

static tb_jnode_t *s_const(s_parser_t *p, const tb_jtok_t *at, uint8_t lit)
{
    tb_jnode_t *nd = s_node(p, TB_JN_CONST, at);
    if (nd) {
        nd->lit_kind = lit;
    }
    return nd;
}

/* "[a, b]" or "{k: v}" */
static tb_jnode_t *s_list_or_dict(s_parser_t *p, bool is_dict)
{
    const tb_jtok_t *at = s_cur(p);
    s_next(p);
    uint8_t close = is_dict ? TB_JOP_RBRACE : TB_JOP_RBRACKET;
    s_vec_t keys = {0}, vals = {0};
    while (!s_is_op(s_cur(p), close)) {
        if (keys.n > 0 && !s_expect_op(p, TB_JOP_COMMA, "','")) {
            goto fail;
        }
        if (s_is_op(s_cur(p), close)) {
            break;
        }
        if (!s_vec_push(p, &keys, s_expression(p, true))) {
            goto fail;
        }
        if (is_dict) {
            if (!s_expect_op(p, TB_JOP_COLON, "':'") ||
                !s_vec_push(p, &vals, s_expression(p, true))) {
                goto fail;
            }
        }
    }
    if (!s_expect_op(p, close, is_dict ? "'}'" : "']'")) {
        goto fail;
    }
    tb_jnode_t *nd = s_node(p, is_dict ? TB_JN_DICT : TB_JN_LIST, at);
    if (!nd || !s_vec_finish(p, &keys, &nd->list) || !s_vec_finish(p, &vals, &nd->list2)) {
        goto fail;
    }
    return nd;
fail:
    free(keys.v);
    free(vals.v);
    return NULL;
}

static tb_jnode_t *s_primary(s_parser_t *p)
{
    const tb_jtok_t *t = s_cur(p);
    tb_jnode_t *nd = NULL;
    switch (t->type) {
    case TB_JT_NAME:
        if (!strcmp(t->str, "true") || !strcmp(t->str, "True") || !strcmp(t->str, "false") ||
            !strcmp(t->str, "False")) {
            nd = s_const(p, t, TB_JLIT_BOOL);
            if (nd) {
                nd->ival = t->str[0] == 't' || t->str[0] == 'T';
            }
        } else if (!strcmp(t->str, "none") || !strcmp(t->str, "None")) {
            nd = s_const(p, t, TB_JLIT_NONE);
        } else {
            nd = s_node(p, TB_JN_NAME, t);
            if (nd) {
                nd->str = t->str;
                nd->len = t->len;
            }
        }
        s_next(p);
        return nd;
    case TB_JT_STRING: {
        /* adjacent literals concatenate */
        size_t total = 0;
        size_t k = p->i;
        for (; k < p->n && p->t[k].type == TB_JT_STRING; k++) {
            total += p->t[k].len;
        }
        char *buf = tb_jarena_alloc(p->arena, total + 1);
        nd = s_const(p, t, TB_JLIT_STR);
        if (!buf || !nd) {
            s_oom(p);
            return NULL;
        }
        size_t o = 0;
        for (; p->i < k; p->i++) {
            memcpy(buf + o, p->t[p->i].str, p->t[p->i].len);
            o += p->t[p->i].len;
        }
        buf[o] = '\0';
        nd->str = buf;
        nd->len = o;
        return nd;
    }
    case TB_JT_INT:
        nd = s_const(p, t, TB_JLIT_INT);
        if (nd) {
            nd->ival = t->ival;
        }
        s_next(p);
        return nd;
    case TB_JT_FLOAT:
        nd = s_const(p, t, TB_JLIT_FLOAT);
        if (nd) {
            nd->fval = t->fval;
        }
        s_next(p);
        return nd;
    case TB_JT_OP:
        if (t->op == TB_JOP_LPAREN) {
            s_next(p);
            if (!s_enter(p)) {
                return NULL;
            }
            nd = s_tuple(p, false, true, NULL, true);
            s_leave(p);
            if (nd && !s_expect_op(p, TB_JOP_RPAREN, "')'")) {
                return NULL;
            }
            return nd;
        }
        if (t->op == TB_JOP_LBRACKET || t->op == TB_JOP_LBRACE) {
            if (!s_enter(p)) {
                return NULL;
            }
            nd = s_list_or_dict(p, t->op == TB_JOP_LBRACE);
            s_leave(p);
            return nd;
        }
        break;
    default:
        break;
    }
    s_unexpected(p, NULL);
    return NULL;
}

/* "(a, b, k=v)": positional args into `args`, keywords into `kw` and `names`. */
static bool s_call_args(s_parser_t *p, tb_jnode_t *nd)
{
    const tb_jtok_t *open = s_cur(p);
    if (!s_expect_op(p, TB_JOP_LPAREN, "'('")) {
        return false;
    }
    s_vec_t args = {0}, kw = {0};
    const char *names[TB_JMAX_ARGS];
    size_t nnames = 0;
    while (!s_is_op(s_cur(p), TB_JOP_RPAREN)) {
        if ((args.n > 0 || kw.n > 0) && !s_expect_op(p, TB_JOP_COMMA, "','")) {
            goto fail;
        }
        if (s_is_op(s_cur(p), TB_JOP_RPAREN)) {
            break;
        }
        if (args.n + kw.n >= TB_JMAX_ARGS) {
            s_fail_at(p, s_cur(p), "more than %d arguments", TB_JMAX_ARGS);
            goto fail;
        }
        if (s_is_op(s_cur(p), TB_JOP_MUL) || s_is_op(s_cur(p), TB_JOP_POW)) {
            s_fail_at(p, s_cur(p), "*args and **kwargs in calls are not supported");
            goto fail;
        }
        if (s_cur(p)->type == TB_JT_NAME && s_is_op(s_look(p), TB_JOP_ASSIGN)) {
            if (nnames >= sizeof(names) / sizeof(names[0])) {
                s_fail_at(p, s_cur(p), "too many keyword arguments");
                goto fail;
            }
            names[nnames++] = s_cur(p)->str;
            s_next(p);
            s_next(p);
            if (!s_vec_push(p, &kw, s_expression(p, true))) {
                goto fail;
            }
        } else {
            if (kw.n > 0) {
                s_fail_at(p, open, "invalid syntax for function call expression");
                goto fail;
            }
            if (!s_vec_push(p, &args, s_expression(p, true))) {
                goto fail;
            }
        }
    }
    if (!s_expect_op(p, TB_JOP_RPAREN, "')'")) {
        goto fail;
    }
    if (nnames > 0) {
        nd->names = tb_jarena_alloc(p->arena, nnames * sizeof(char *));
        if (!nd->names) {
            s_oom(p);
            goto fail;
        }
        memcpy(nd->names, names, nnames * sizeof(char *));
        nd->nnames = nnames;
    }
    return s_vec_finish(p, &args, &nd->list) && s_vec_finish(p, &kw, &nd->list2);
fail:
    free(args.v);
    free(kw.v);
    return false;
}

static tb_jnode_t *s_subscript(s_parser_t *p, tb_jnode_t *obj)
{
    const tb_jtok_t *at = s_cur(p);
    if (s_skip_op(p, TB_JOP_DOT)) {
        const tb_jtok_t *t = s_cur(p);
        if (t->type == TB_JT_NAME) {
            tb_jnode_t *nd = s_node(p, TB_JN_GETATTR, at);
            if (nd) {
                nd->a = obj;
                nd->str = t->str;
                nd->len = t->len;
            }
            s_next(p);
            return nd;
        }
        if (t->type == TB_JT_INT) {
            tb_jnode_t *key = s_const(p, t, TB_JLIT_INT);
            tb_jnode_t *nd = key ? s_node(p, TB_JN_GETITEM, at) : NULL;
            if (nd) {
                key->ival = t->ival;
                nd->a = obj;
                nd->b = key;
            }
            s_next(p);
            return nd;
        }
        s_unexpected(p, "name or number");
        return NULL;
    }
    s_next(p); /* '[' */
    /* one subscript: expression or slice; several make a tuple key (rare) */
    tb_jnode_t *parts[3] = {NULL, NULL, NULL};
    bool is_slice = false;
    int k = 0;
    for (;;) {
        if (s_is_op(s_cur(p), TB_JOP_COLON)) {
            is_slice = true;
            s_next(p);
            k++;
            if (k > 2) {
                s_unexpected(p, "']'");
                return NULL;
            }
            continue;
        }
        if (s_is_op(s_cur(p), TB_JOP_RBRACKET)) {
            break;
        }
        if (parts[k]) {
            s_unexpected(p, "']'");
            return NULL;
        }
        parts[k] = s_expression(p, true);
        if (!parts[k]) {
            return NULL;
        }
    }
    s_next(p); /* ']' */
    if (!is_slice && !parts[0]) {
        s_fail_at(p, at, "expected subscript expression");
        return NULL;
    }
    tb_jnode_t *nd = s_node(p, is_slice ? TB_JN_SLICE : TB_JN_GETITEM, at);
    if (nd) {
        nd->a = obj;
        nd->b = parts[0];
        nd->c = parts[1];
        nd->d = parts[2];
    }
    return nd;
}

static tb_jnode_t *s_postfix(s_parser_t *p, tb_jnode_t *nd)
{
    while (nd) {
        const tb_jtok_t *t = s_cur(p);
        if (s_is_op(t, TB_JOP_DOT) || s_is_op(t, TB_JOP_LBRACKET)) {
            nd = s_subscript(p, nd);
        } else if (s_is_op(t, TB_JOP_LPAREN)) {
            tb_jnode_t *call = s_node(p, TB_JN_CALL, t);
            if (!call) {
                return NULL;
            }
            call->line = nd->line; /* errors point at the callee, not at '(' */
            call->col = nd->col;
            call->a = nd;
            nd = s_call_args(p, call) ? call : NULL;
        } else {
            break;
        }
    }
    return nd;
}

/* "name" or "name.more", then optional args */
static tb_jnode_t *s_filter_or_test(s_parser_t *p, tb_jnode_t *input, uint8_t kind,
                                    const tb_jtok_t *at, bool negated)
{
    const tb_jtok_t *name = s_cur(p);
    if (name->type != TB_JT_NAME) {
        s_unexpected(p, kind == TB_JN_FILTER ? "filter name" : "test name");
        return NULL;
    }
    s_next(p);
    if (s_is_op(s_cur(p), TB_JOP_DOT)) {
        s_fail_at(p, s_cur(p), "dotted filter and test names are not supported");
        return NULL;
    }
    if (p->in_if == 0 && (kind == TB_JN_FILTER ? !tb_jinja_filter_exists(name->str)
                                               : !tb_jinja_test_exists(name->str))) {
        s_fail_at(p, name, "no %s named '%.60s'", kind == TB_JN_FILTER ? "filter" : "test",
                  name->str);
        return NULL;
    }
    tb_jnode_t *nd = s_node(p, kind, kind == TB_JN_FILTER ? name : at);
    if (!nd) {
        return NULL;
    }
    nd->a = input;
    nd->str = name->str;
    nd->len = name->len;
    nd->flag = negated;
    if (s_is_op(s_cur(p), TB_JOP_LPAREN)) {
        if (!s_call_args(p, nd)) {
            return NULL;
        }
    } else if (kind == TB_JN_TEST) {
        const tb_jtok_t *t = s_cur(p);
        bool arg = t->type == TB_JT_NAME || t->type == TB_JT_STRING || t->type == TB_JT_INT ||
                   t->type == TB_JT_FLOAT || s_is_op(t, TB_JOP_LBRACKET) ||
                   s_is_op(t, TB_JOP_LBRACE);
        if (arg && (s_is_name(t, "else") || s_is_name(t, "or") || s_is_name(t, "and"))) {
            arg = false;
        }
        if (arg) {
            if (s_is_name(t, "is")) {
                s_fail_at(p, t, "you cannot chain multiple tests with is");
                return NULL;
            }
            tb_jnode_t *a = s_primary(p);
            a = a ? s_postfix(p, a) : NULL;
            if (!a) {
                return NULL;
            }
            nd->list.v = tb_jarena_alloc(p->arena, sizeof(tb_jnode_t *));
            if (!nd->list.v) {
                s_oom(p);
                return NULL;
            }
            nd->list.v[0] = a;
            nd->list.n = 1;
        }
    }
    return nd;
}

static tb_jnode_t *s_filter_expr(s_parser_t *p, tb_jnode_t *nd)
{
    while (nd) {
        const tb_jtok_t *t = s_cur(p);
        if (s_is_op(t, TB_JOP_PIPE)) {
            s_next(p);
            nd = s_filter_or_test(p, nd, TB_JN_FILTER, t, false);
        } else if (s_is_name(t, "is")) {
            s_next(p);
            bool neg = s_skip_name(p, "not");
            nd = s_filter_or_test(p, nd, TB_JN_TEST, t, neg);
        } else if (s_is_op(t, TB_JOP_LPAREN)) {
            tb_jnode_t *call = s_node(p, TB_JN_CALL, t);
            if (!call) {
                return NULL;
            }
            call->line = nd->line; /* errors point at the callee, not at '(' */
            call->col = nd->col;
            call->a = nd;
            nd = s_call_args(p, call) ? call : NULL;
        } else {
            break;
        }
    }
    return nd;
}

/* A filter chain with no input ("upper|trim" of filter blocks and block sets). */
static tb_jnode_t *s_filter_chain(s_parser_t *p)
{
    const tb_jtok_t *at = s_cur(p);
    tb_jnode_t *nd = s_filter_or_test(p, NULL, TB_JN_FILTER, at, false);
    while (nd && s_is_op(s_cur(p), TB_JOP_PIPE)) {
        const tb_jtok_t *t = s_cur(p);
        s_next(p);
        nd = s_filter_or_test(p, nd, TB_JN_FILTER, t, false);
    }
    return nd;
}

/* ------------------------------------------------------------------ statements */

static bool s_body(s_parser_t *p, const char *const *ends, tb_jnodes_t *out);

static bool s_block_end(s_parser_t *p)
{
    return s_expect_type(p, TB_JT_BLOCK_END, "end of statement block");
}

/* After s_body stopped at "{% name": consumes "name %}" checking it is `name`. */
static bool s_end_tag(s_parser_t *p, const char *name)
{
    if (!s_skip_name(p, name)) {
        char what[64];
        tb_jtok_describe(s_cur(p), what, sizeof(what));
        s_fail_at(p, s_cur(p), "expected '%s', got %s", name, what);
        return false;
    }
    return s_block_end(p);
}

/* Assignment target: a name, "a, b" names, or (with_ns) "ns.attr". */
static tb_jnode_t *s_assign_target(s_parser_t *p, bool with_ns, const char *extra_end)
{
    const tb_jtok_t *t = s_cur(p);
    if (with_ns && t->type == TB_JT_NAME && s_is_op(s_look(p), TB_JOP_DOT)) {
        s_next(p);
        s_next(p);
        const tb_jtok_t *attr = s_cur(p);
        if (attr->type != TB_JT_NAME) {
            s_unexpected(p, "attribute name");
            return NULL;
        }
        s_next(p);
        tb_jnode_t *nd = s_node(p, TB_JN_NSREF, t);
        if (nd) {
            nd->str = t->str;
            nd->str2 = attr->str;
        }
        return nd;
    }
    tb_jnode_t *nd = s_tuple(p, true, true, extra_end, false);
    if (!nd) {
        return NULL;
    }
    if (nd->kind == TB_JN_TUPLE) {
        for (size_t i = 0; i < nd->list.n; i++) {
            if (nd->list.v[i]->kind != TB_JN_NAME) {
                s_fail_at(p, t, "can't assign to %s", "a non-name");
                return NULL;
            }
        }
    } else if (nd->kind != TB_JN_NAME) {
        s_fail_at(p, t, "can't assign to %s", "a non-name");
        return NULL;
    }
    return nd;
}

static tb_jnode_t *s_stmt_if(s_parser_t *p, const tb_jtok_t *at)
{
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    tb_jnode_t *nd = s_node(p, TB_JN_IF, at);
    tb_jnode_t *cur = nd;
    if (!nd) {
        return NULL;
    }
    for (;;) {
        cur->a = s_tuple(p, false, false, NULL, false);
        if (!cur->a || !s_block_end(p)) {
            return NULL;
        }
        p->in_if++;
        bool ok = s_body(p, ends, &cur->list);
        p->in_if--;
        if (!ok) {
            return NULL;
        }
        const tb_jtok_t *t = s_cur(p);
        if (s_skip_name(p, "elif")) {
            tb_jnode_t *next = s_node(p, TB_JN_IF, t);
            if (!next) {
                return NULL;
            }
            cur->list2.v = tb_jarena_alloc(p->arena, sizeof(tb_jnode_t *));
            if (!cur->list2.v) {
                s_oom(p);
                return NULL;
            }
            cur->list2.v[0] = next;
            cur->list2.n = 1;
            cur = next;
            continue;
        }
        if (s_skip_name(p, "else")) {
            static const char *const end_only[] = {"endif", NULL};
            if (!s_block_end(p)) {
                return NULL;
            }
            p->in_if++;
            bool ok = s_body(p, end_only, &cur->list2);
            p->in_if--;
            if (!ok) {
                return NULL;
            }
        }
        return s_end_tag(p, "endif") ? nd : NULL;
    }
}

static tb_jnode_t *s_stmt_for(s_parser_t *p, const tb_jtok_t *at)
{
    static const char *const ends[] = {"endfor", "else", NULL};
    static const char *const end_only[] = {"endfor", NULL};
    tb_jnode_t *nd = s_node(p, TB_JN_FOR, at);
    if (!nd) {
        return NULL;
    }
    nd->a = s_assign_target(p, false, "in");
    if (!nd->a) {
        return NULL;
    }
    if (!s_skip_name(p, "in")) {
        s_unexpected(p, "'in'");
        return NULL;
    }
    nd->b = s_tuple(p, false, false, "recursive", false);
    if (!nd->b) {
        return NULL;
    }
    if (s_skip_name(p, "if")) {
        nd->c = s_expression(p, true);
        if (!nd->c) {
            return NULL;
        }
    }
    if (s_is_name(s_cur(p), "recursive")) {
        s_fail_at(p, s_cur(p), "recursive loops are not supported");
        return NULL;
    }
    if (!s_block_end(p)) {
        return NULL;
    }
    p->loops++;
    bool ok = s_body(p, ends, &nd->list);
    p->loops--;
    if (!ok) {
        return NULL;
    }
    if (s_skip_name(p, "else")) {
        if (!s_block_end(p) || !s_body(p, end_only, &nd->list2)) {
            return NULL;
        }
    }
    return s_end_tag(p, "endfor") ? nd : NULL;
}

static tb_jnode_t *s_stmt_set(s_parser_t *p, const tb_jtok_t *at)
{
    tb_jnode_t *target = s_assign_target(p, true, NULL);
    if (!target) {
        return NULL;
    }
    if (s_skip_op(p, TB_JOP_ASSIGN)) {
        tb_jnode_t *nd = s_node(p, TB_JN_SET, at);
        if (!nd) {
            return NULL;
        }
        nd->a = target;
        nd->b = s_tuple(p, false, true, NULL, false);
        return nd->b && s_block_end(p) ? nd : NULL;
    }
    if (target->kind == TB_JN_TUPLE) {
        s_unexpected(p, "'='");
        return NULL;
    }
    static const char *const ends[] = {"endset", NULL};
    tb_jnode_t *nd = s_node(p, TB_JN_SET_BLOCK, at);
    if (!nd) {
        return NULL;
    }
    nd->a = target;
    if (s_skip_op(p, TB_JOP_PIPE)) {
        nd->c = s_filter_chain(p);
        if (!nd->c) {
            return NULL;
        }
    }
    if (!s_block_end(p) || !s_body(p, ends, &nd->list)) {
        return NULL;
    }
    return s_end_tag(p, "endset") ? nd : NULL;
}

static tb_jnode_t *s_stmt_macro(s_parser_t *p, const tb_jtok_t *at)
{
    static const char *const ends[] = {"endmacro", NULL};
    const tb_jtok_t *name = s_cur(p);
    if (name->type != TB_JT_NAME) {
        s_unexpected(p, "macro name");
        return NULL;
    }
    s_next(p);
    tb_jnode_t *nd = s_node(p, TB_JN_MACRO, at);
    if (!nd || !s_expect_op(p, TB_JOP_LPAREN, "'('")) {
        return NULL;
    }
    nd->str = name->str;
    const char *names[TB_JMAX_ARGS];
    s_vec_t defaults = {0};
    size_t n = 0;
    bool have_default = false;
    while (!s_is_op(s_cur(p), TB_JOP_RPAREN)) {
        if (n > 0 && !s_expect_op(p, TB_JOP_COMMA, "','")) {
            goto fail;
        }
        const tb_jtok_t *arg = s_cur(p);
        if (arg->type != TB_JT_NAME) {
            s_unexpected(p, "parameter name");
            goto fail;
        }
        if (n >= sizeof(names) / sizeof(names[0])) {
            s_fail_at(p, arg, "too many macro parameters");
            goto fail;
        }
        names[n++] = arg->str;
        s_next(p);
        tb_jnode_t *def = NULL;
        if (s_skip_op(p, TB_JOP_ASSIGN)) {
            def = s_expression(p, true);
            if (!def) {
                goto fail;
            }
            have_default = true;
        } else if (have_default) {
            s_fail_at(p, arg, "non-default argument follows default argument");
            goto fail;
        }
        /* list2 holds one entry per parameter; NULL entries are kept via a placeholder */
        if (!def) {
            def = s_node(p, TB_JN_CONST, arg);
            if (!def) {
                goto fail;
            }
            def->lit_kind = 0; /* "no default" */
        }
        if (!s_vec_push(p, &defaults, def)) {
            goto fail;
        }
    }
    s_next(p); /* ')' */
    if (n > 0) {
        nd->names = tb_jarena_alloc(p->arena, n * sizeof(char *));
        if (!nd->names) {
            s_oom(p);
            goto fail;
        }
        memcpy(nd->names, names, n * sizeof(char *));
        nd->nnames = n;
    }
    if (!s_vec_finish(p, &defaults, &nd->list2)) {
        return NULL;
    }
    uint32_t loops = p->loops;
    p->loops = 0;
    bool ok = s_block_end(p) && s_body(p, ends, &nd->list);
    p->loops = loops;
    return ok && s_end_tag(p, "endmacro") ? nd : NULL;
fail:
    free(defaults.v);
    return NULL;
}

static tb_jnode_t *s_stmt_with(s_parser_t *p, const tb_jtok_t *at)
{
    static const char *const ends[] = {"endwith", NULL};
    tb_jnode_t *nd = s_node(p, TB_JN_WITH, at);
    if (!nd) {
        return NULL;
    }
    s_vec_t targets = {0}, values = {0};
    while (s_cur(p)->type != TB_JT_BLOCK_END) {
        if (targets.n > 0 && !s_expect_op(p, TB_JOP_COMMA, "','")) {
            goto fail;
        }
        if (targets.n >= TB_JMAX_ARGS) {
            s_fail_at(p, s_cur(p), "more than %d assignments", TB_JMAX_ARGS);
            goto fail;
        }
        tb_jnode_t *t = s_assign_target(p, false, NULL);
        if (!s_vec_push(p, &targets, t) || !s_expect_op(p, TB_JOP_ASSIGN, "'='") ||
            !s_vec_push(p, &values, s_expression(p, true))) {
            goto fail;
        }
    }
    if (!s_vec_finish(p, &targets, &nd->list2) || !s_vec_finish(p, &values, &nd->list3)) {
        goto fail;
    }
    if (!s_block_end(p) || !s_body(p, ends, &nd->list)) {
        return NULL;
    }
    return s_end_tag(p, "endwith") ? nd : NULL;
fail:
    free(targets.v);
    free(values.v);
    return NULL;
}

static tb_jnode_t *s_stmt_block(s_parser_t *p, const tb_jtok_t *at, uint8_t kind, const char *end)
{
    const char *ends[] = {end, NULL};
    tb_jnode_t *nd = s_node(p, kind, at);
    if (!nd) {
        return NULL;
    }
    if (kind == TB_JN_FILTER_BLOCK) {
        nd->c = s_filter_chain(p);
        if (!nd->c) {
            return NULL;
        }
    }
    if (!s_block_end(p) || !s_body(p, ends, &nd->list)) {
        return NULL;
    }
    return s_end_tag(p, end) ? nd : NULL;
}

/* At the name after "{%". */
static tb_jnode_t *s_statement(s_parser_t *p)
{
    const tb_jtok_t *t = s_cur(p);
    if (t->type != TB_JT_NAME) {
        s_unexpected(p, "statement name");
        return NULL;
    }
    if (!s_enter(p)) {
        return NULL;
    }
    s_next(p);
    tb_jnode_t *nd = NULL;
    const char *w = t->str;
    if (!strcmp(w, "if")) {
        nd = s_stmt_if(p, t);
    } else if (!strcmp(w, "for")) {
        nd = s_stmt_for(p, t);
    } else if (!strcmp(w, "set")) {
        nd = s_stmt_set(p, t);
    } else if (!strcmp(w, "macro")) {
        nd = s_stmt_macro(p, t);
    } else if (!strcmp(w, "with")) {
        nd = s_stmt_with(p, t);
    } else if (!strcmp(w, "filter")) {
        nd = s_stmt_block(p, t, TB_JN_FILTER_BLOCK, "endfilter");
    } else if (!strcmp(w, "generation")) {
        nd = s_stmt_block(p, t, TB_JN_SCOPE, "endgeneration");
    } else if (!strcmp(w, "break") || !strcmp(w, "continue")) {
        if (p->loops == 0) {
            s_fail_at(p, t, "'%s' outside loop", w);
        } else {
            nd = s_node(p, w[0] == 'b' ? TB_JN_BREAK : TB_JN_CONTINUE, t);
            if (nd && !s_block_end(p)) {
                nd = NULL;
            }
        }
    } else if (!strcmp(w, "include") || !strcmp(w, "import") || !strcmp(w, "from") ||
               !strcmp(w, "extends") || !strcmp(w, "block") || !strcmp(w, "call") ||
               !strcmp(w, "do") || !strcmp(w, "autoescape") || !strcmp(w, "trans")) {
        s_fail_at(p, t, "the '%s' statement is not supported in chat templates", w);
    } else {
        s_fail_at(p, t, "encountered unknown tag '%.40s'", w);
    }
    s_leave(p);
    return nd;
}

static bool s_in(const char *const *ends, const char *w)
{
    for (size_t i = 0; ends && ends[i]; i++) {
        if (!strcmp(ends[i], w)) {
            return true;
        }
    }
    return false;
}

/* Parses statements until "{% <one of ends>" (left at that name) or the end of template. */
static bool s_body(s_parser_t *p, const char *const *ends, tb_jnodes_t *out)
{
    s_vec_t body = {0};
    for (;;) {
        const tb_jtok_t *t = s_cur(p);
        if (t->type == TB_JT_EOF) {
            if (ends && ends[0]) {
                const char *closer = ends[0];
                for (size_t k = 0; ends[k]; k++) {
                    if (!strncmp(ends[k], "end", 3)) {
                        closer = ends[k];
                    }
                }
                s_fail_at(p, t, "unexpected end of template, expected '%s'", closer);
                goto fail;
            }
            break;
        }
        if (t->type == TB_JT_DATA) {
            tb_jnode_t *nd = s_node(p, TB_JN_DATA, t);
            if (!nd) {
                goto fail;
            }
            nd->str = t->str;
            nd->len = t->len;
            if (!s_vec_push(p, &body, nd)) {
                goto fail;
            }
            s_next(p);
            continue;
        }
        if (t->type == TB_JT_VAR_BEGIN) {
            s_next(p);
            tb_jnode_t *nd = s_node(p, TB_JN_OUTPUT, t);
            if (!nd) {
                goto fail;
            }
            nd->a = s_tuple(p, false, true, NULL, false);
            if (!nd->a || !s_expect_type(p, TB_JT_VAR_END, "end of print statement") ||
                !s_vec_push(p, &body, nd)) {
                goto fail;
            }
            continue;
        }
        if (t->type == TB_JT_BLOCK_BEGIN) {
            s_next(p);
            const tb_jtok_t *name = s_cur(p);
            if (name->type == TB_JT_NAME && s_in(ends, name->str)) {
                break;
            }
            if (name->type == TB_JT_NAME &&
                (!strncmp(name->str, "end", 3) || !strcmp(name->str, "elif") ||
                 !strcmp(name->str, "else"))) {
                if (ends && ends[0]) {
                    s_fail_at(p, name, "unexpected '%.40s', expected '%s'", name->str, ends[0]);
                } else {
                    s_fail_at(p, name, "unexpected '%.40s'", name->str);
                }
                goto fail;
            }
            if (!s_vec_push(p, &body, s_statement(p))) {
                goto fail;
            }
            continue;
        }
        s_unexpected(p, NULL);
        goto fail;
    }
    return s_vec_finish(p, &body, out);
fail:
    free(body.v);
    return false;
}

int tb_jinja_parse_tokens(tb_jarena_t *arena, const tb_jtoks_t *toks, uint32_t max_depth,
                          tb_jnode_t **root, char *err, size_t err_len)
{
    s_parser_t p;
    memset(&p, 0, sizeof(p));
    p.arena = arena;
    p.t = toks->v;
    p.n = toks->n;
    p.max_depth = max_depth;
    p.err = err;
    p.err_len = err_len;
    tb_jnode_t *nd = s_node(&p, TB_JN_BODY, &toks->v[0]);
    if (nd && s_body(&p, NULL, &nd->list) && p.rc == 0) {
        *root = nd;
        return 0;
    }
    return p.rc ? p.rc : TB_EINVAL;
}
