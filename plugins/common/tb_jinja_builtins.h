/*
 * tb_jinja_builtins.h - filters, tests, methods, globals and Python operators of the Jinja
 * interpreter (internal to tb_jinja*.c).
 *
 * Each follows the behaviour of jinja2 3.1 inside Hugging Face's sandboxed environment (for
 * example `tojson` is json.dumps with ensure_ascii=False, list-mutating methods are refused,
 * range() is capped at 100000 items).  Every function returns a new reference or an error
 * value with the reason recorded in the runtime.
 */
#ifndef TB_JINJA_BUILTINS_H
#define TB_JINJA_BUILTINS_H

#include <stdbool.h>

#include "tb_jinja_eval.h"

/* Whether a filter / test of that name exists (the parser rejects unknown ones). */
bool tb_jinja_filter_exists(const char *name);
bool tb_jinja_test_exists(const char *name);

/* Applies filter `name` to `input`. */
tb_jv_t tb_jinja_filter(tb_jeval_t *ev, const char *name, tb_jv_t input, const tb_jargs_t *a);
/* Runs test `name`: 1 true, 0 false, -1 error. */
int tb_jinja_test(tb_jeval_t *ev, const char *name, tb_jv_t input, const tb_jargs_t *a);

/* A global function (range, namespace, dict, raise_exception, strftime_now) or undefined. */
tb_jv_t tb_jinja_global(tb_jeval_t *ev, const char *name);
/* Calls a builtin callable. */
tb_jv_t tb_jinja_call_builtin(tb_jeval_t *ev, tb_jv_func_t *fn, const tb_jargs_t *a);

/* obj.name (attribute first, then item) and obj[key] (item first, then attribute), as the
 * sandbox does; `name_hint` names a missing attribute in later errors. */
tb_jv_t tb_jinja_getattr(tb_jeval_t *ev, tb_jv_t obj, const char *name, size_t len);
tb_jv_t tb_jinja_getitem(tb_jeval_t *ev, tb_jv_t obj, tb_jv_t key);
/* obj[start:stop:step] (each may be NONE/UNDEFINED for "omitted"). */
tb_jv_t tb_jinja_slice(tb_jeval_t *ev, tb_jv_t obj, tb_jv_t start, tb_jv_t stop, tb_jv_t step);

/* The items of an iterable as a list (str: characters, dict: keys, undefined: empty). */
tb_jv_t tb_jinja_to_list(tb_jeval_t *ev, tb_jv_t v);

/* Python binary operators (TB_JOP_ADD..POW), unary minus/plus, comparisons and `in`. */
tb_jv_t tb_jinja_binop(tb_jeval_t *ev, int op, tb_jv_t a, tb_jv_t b);
tb_jv_t tb_jinja_neg(tb_jeval_t *ev, tb_jv_t a, bool minus);
/* op: TB_JOP_EQ..LTEQ, TB_JCMP_IN, TB_JCMP_NOTIN.  1 true, 0 false, -1 error. */
int tb_jinja_compare(tb_jeval_t *ev, int op, tb_jv_t a, tb_jv_t b);

/* --- helpers shared by tb_jinja_builtins.c and tb_jinja_filters.c --- */

/* Positional argument `idx`, else keyword `name` (may be NULL), else NULL.  Borrowed. */
const tb_jv_t *tb_jarg(const tb_jargs_t *a, size_t idx, const char *name);
/* Python ordering of a and b into *out (-1/0/1); -1 with an error when not comparable. */
int tb_jinja_order(tb_jeval_t *ev, tb_jv_t a, tb_jv_t b, int *out);
/* str.strip/lstrip/rstrip with optional `chars` (NULL or NONE: whitespace). */
tb_jv_t tb_jinja_str_strip(tb_jeval_t *ev, tb_jv_str_t *s, const tb_jv_t *chars, bool left,
                           bool right);
/* Case mappings: TB_JCASE_* */
enum { TB_JCASE_UPPER, TB_JCASE_LOWER, TB_JCASE_CAPITALIZE, TB_JCASE_TITLE, TB_JCASE_JTITLE };
tb_jv_t tb_jinja_str_case(tb_jeval_t *ev, tb_jv_str_t *s, int mode);
/* str.replace(old, new, count); count < 0 means all. */
tb_jv_t tb_jinja_str_replace(tb_jeval_t *ev, tb_jv_str_t *s, tb_jv_t old, tb_jv_t new_,
                             int64_t count);
/* Python's "fmt % args" for %s, %r, %d, %i, %f, %x and %%. */
tb_jv_t tb_jinja_percent_format(tb_jeval_t *ev, tb_jv_str_t *fmt, tb_jv_t args);

/* The method `name` of obj bound to it (*found true), or undefined (*found false). */
tb_jv_t tb_jinja_bind_method(tb_jeval_t *ev, tb_jv_t obj, const char *name, size_t len,
                             bool *found);
/* str.isupper() / str.islower(). */
bool tb_jinja_str_is_cased_as(tb_jeval_t *ev, tb_jv_str_t *s, bool upper);

/* Error for an operation on an undefined value ("'x' is undefined"). */
tb_jv_t tb_jinja_undefined_error(tb_jeval_t *ev, tb_jv_t undef);

#endif /* TB_JINJA_BUILTINS_H */
