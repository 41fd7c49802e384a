/*
 * tb_jinja_eval.h - tree-walking evaluator of the Jinja interpreter (internal to tb_jinja*.c).
 *
 * Renders a parsed tree with jinja2's scoping (a fresh scope per loop iteration, macro call
 * and with-block; `if` shares its enclosing scope; namespaces are mutable objects), counting
 * steps, loop iterations, stack depth and memory against the template's limits.
 */
#ifndef TB_JINJA_EVAL_H
#define TB_JINJA_EVAL_H

#include <locale.h>

#include <jansson.h>

#include "tb_jinja.h"
#include "tb_jinja_parser.h"
#include "tb_jinja_value.h"

typedef struct tb_jscope tb_jscope_t;

/* State of one render.  Owned by tb_jinja_eval_render. */
typedef struct tb_jeval {
    tb_jrt_t rt;
    tb_jv_t ctx;        /* dict of the caller's variables */
    tb_jscope_t *scope; /* innermost scope */
    tb_jscope_t *root;  /* template-level scope */
    tb_jbuf_t *out;     /* where output goes (captures swap it) */
    uint32_t max_stack; /* bound on rt.depth */
} tb_jeval_t;

/* Arguments of a call: positional, then keyword (names parallel to values).  Borrowed. */
typedef struct {
    tb_jv_t *pos;
    size_t npos;
    const char *const *kwnames;
    tb_jv_t *kw;
    size_t nkw;
} tb_jargs_t;

/* Renders `root`.  See tb_jinja_render for the contract. */
int tb_jinja_eval_render(const tb_jnode_t *root, const struct tb_jinja_limits *limits,
                         locale_t loc, const json_t *ctx, char **out, size_t *out_len, char *err,
                         size_t err_len);

/* Calls any callable (builtin or macro) with `args`; returns a new reference or an error. */
tb_jv_t tb_jinja_eval_call(tb_jeval_t *ev, tb_jv_t fn, const tb_jargs_t *args);

/* Counts one evaluation step; false (error recorded) when over the bound. */
bool tb_jinja_eval_step(tb_jeval_t *ev, uint64_t n);

#endif /* TB_JINJA_EVAL_H */
