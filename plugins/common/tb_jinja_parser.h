/*
 * tb_jinja_parser.h - syntax tree and parser of the Jinja interpreter (internal to
 * tb_jinja*.c).
 *
 * The grammar and operator precedence are jinja2's (conditional < or < and < not < comparison
 * < + - < ~ < * / // % < ** < unary - + < filters and tests < postfix . [] ()), so that every
 * template means what it means to the reference.  Nodes live in an arena; the tree is
 * immutable after parsing and shared by concurrent renders.
 */
#ifndef TB_JINJA_PARSER_H
#define TB_JINJA_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_jinja_lexer.h"

typedef enum {
    /* statements */
    TB_JN_BODY = 1,  /* list: statements */
    TB_JN_DATA,      /* str/len */
    TB_JN_OUTPUT,    /* a: expression */
    TB_JN_IF,        /* a: condition, list: then, list2: else (elif is a nested IF) */
    TB_JN_FOR,       /* a: target, b: iterable, c: filter or NULL, list: body, list2: else */
    TB_JN_SET,       /* a: target (NAME, TUPLE of NAMEs, NSREF), b: value */
    TB_JN_SET_BLOCK, /* a: target, c: filter chain over a NULL input or NULL, list: body */
    TB_JN_MACRO,     /* str: name, names/list2: parameters and defaults, list: body */
    TB_JN_BREAK,
    TB_JN_CONTINUE,
    TB_JN_FILTER_BLOCK, /* c: filter chain over a NULL input, list: body */
    TB_JN_WITH,  /* list2: targets (NAME), names unused, a..: values in list3, list: body */
    TB_JN_SCOPE, /* list: body rendered in its own scope (generation blocks) */
    /* expressions */
    TB_JN_CONST,    /* lit_kind + ival/fval/str */
    TB_JN_NAME,     /* str */
    TB_JN_NSREF,    /* str: namespace name, str2: attribute (assignment target only) */
    TB_JN_LIST,     /* list: items */
    TB_JN_TUPLE,    /* list: items */
    TB_JN_DICT,     /* list: keys, list2: values */
    TB_JN_GETATTR,  /* a: object, str: attribute */
    TB_JN_GETITEM,  /* a: object, b: key */
    TB_JN_SLICE,    /* a: object, b/c/d: start, stop, step (each may be NULL) */
    TB_JN_CALL,     /* a: callee, list: positional args, names/list2: keyword args */
    TB_JN_FILTER,   /* a: input (NULL in filter blocks), str: name, args as CALL */
    TB_JN_TEST,     /* a: input, str: name, args as CALL, flag: negated */
    TB_JN_BINOP,    /* op (TB_JOP_ADD..POW), a, b */
    TB_JN_NEG,      /* a */
    TB_JN_POS,      /* a */
    TB_JN_NOT,      /* a */
    TB_JN_AND,      /* a, b */
    TB_JN_OR,       /* a, b */
    TB_JN_CONCAT,   /* list: operands */
    TB_JN_COMPARE,  /* a: first operand, list: other operands, ops: operators */
    TB_JN_CONDEXPR, /* a: condition, b: value if true, c: value if false or NULL */
} tb_jnode_kind_t;

/* Most arguments (positional + keyword) one call, filter, test or with-block takes. */
#define TB_JMAX_ARGS 64

/* Comparison operators of TB_JN_COMPARE (TB_JOP_EQ..LTEQ, plus these two). */
enum { TB_JCMP_IN = 100, TB_JCMP_NOTIN = 101 };

/* Literal kinds of TB_JN_CONST. */
enum { TB_JLIT_NONE = 1, TB_JLIT_BOOL, TB_JLIT_INT, TB_JLIT_FLOAT, TB_JLIT_STR };

typedef struct tb_jnode tb_jnode_t;

typedef struct {
    tb_jnode_t **v;
    size_t n;
} tb_jnodes_t;

struct tb_jnode {
    uint8_t kind;
    uint8_t op;
    uint8_t lit_kind;
    bool flag;
    uint32_t line, col;
    const char *str; /* arena-owned, NUL-terminated (DATA may contain NULs: use len) */
    size_t len;
    const char *str2;
    int64_t ival;
    double fval;
    tb_jnode_t *a, *b, *c, *d;
    tb_jnodes_t list;
    tb_jnodes_t list2;
    tb_jnodes_t list3;
    const char **names; /* keyword / parameter names, parallel to list2 */
    size_t nnames;
    uint8_t *ops; /* COMPARE operators, parallel to list */
};

/* Parses tokens into a tree allocated in `arena`.  `max_depth` bounds nesting.  On success
 * returns 0 and *root is a TB_JN_BODY.  On failure TB_EINVAL/TB_ENOMEM with "LINE:COL:
 * message" in err. */
int tb_jinja_parse_tokens(tb_jarena_t *arena, const tb_jtoks_t *toks, uint32_t max_depth,
                          tb_jnode_t **root, char *err, size_t err_len);

#endif /* TB_JINJA_PARSER_H */
