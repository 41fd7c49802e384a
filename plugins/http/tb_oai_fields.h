/*
 * tb_oai_fields.h - declarative validation of a JSON request body: one table row per field
 * (name, JSON types, bounds, accepted values, default, which endpoints take it, where its value
 * goes), walked by one generic validator, the way plugins declare their config tables.
 *
 * The OpenAI tables are in tb_oai_request.c; the walker is separate so that its rules can be
 * tested on small tables of their own.  Pure: no I/O, no allocation of its own.
 *
 * Errors are OpenAI's: status 400, type "invalid_request_error", code "invalid_value" (or
 * "unsupported_value" / "unsupported_parameter" where a valid value is one this server does not
 * implement), `param` naming the field with its path ("stream_options.include_usage",
 * "messages[2].content").  `null` means absent; fields no row names are ignored.
 */
#ifndef TB_OAI_FIELDS_H
#define TB_OAI_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_oai_request.h"

/* JSON types a field accepts (a mask).  TB_OAI_J_INT also accepts a real with an integral value
 * (16.0); TB_OAI_J_NUM accepts integers and reals. */
enum {
    TB_OAI_J_BOOL = 1u << 0,
    TB_OAI_J_INT = 1u << 1,
    TB_OAI_J_NUM = 1u << 2,
    TB_OAI_J_STR = 1u << 3,
    TB_OAI_J_ARR = 1u << 4,
    TB_OAI_J_OBJ = 1u << 5,
};

/* Endpoints a row applies to (0: every endpoint; for nested tables). */
#define TB_OAI_FOR(api) (1u << (api))

/* What the walker does with a valid value: stores it at `off` from the base pointer as the C
 * type named here, and sets the bool at `has_off` (when not 0). */
typedef enum {
    TB_OAI_KEEP_NONE = 0, /* checked only (accepted and ignored) */
    TB_OAI_KEEP_BOOL,     /* bool */
    TB_OAI_KEEP_INT,      /* int64_t */
    TB_OAI_KEEP_NUM,      /* double */
    TB_OAI_KEEP_STR,      /* const char *, borrowed from the parsed tree */
    TB_OAI_KEEP_FN,       /* `fn` decodes and stores it (shapes a row cannot say) */
} tb_oai_keep_t;

enum {
    TB_OAI_F_REQUIRED = 1u << 0,    /* absent or null: 400 "is required" */
    TB_OAI_F_LO_OPEN = 1u << 1,     /* numbers: the lower bound itself is refused */
    TB_OAI_F_NONEMPTY = 1u << 2,    /* strings: "" is refused */
    TB_OAI_F_EMPTY_ONLY = 1u << 3,  /* only an empty value ("", [], {}) is accepted; anything
                                       else is 400 unsupported_parameter */
    TB_OAI_F_IF_UNSET = 1u << 4,    /* skipped (not even checked) when its `has_off` flag is
                                       already set: an earlier row that wins over it was given */
    TB_OAI_F_UNSUPPORTED = 1u << 5, /* a value outside `one_of` / `only` is unsupported_value */
    TB_OAI_F_ONLY = 1u << 6,        /* integers: in bounds, but only `only` is implemented */
    TB_OAI_F_FN_ABSENT = 1u << 7,   /* TB_OAI_KEEP_FN: `fn` is called with v == NULL when the
                                       field is absent too (rules that depend on other fields) */
};

struct tb_oai_field;

/* Decodes a value a row's checks accepted (v is NULL for an absent TB_OAI_F_FN_ABSENT field).
 * `base` is the walk's base pointer, `param` the field's path, `ctx` the walk's context.
 * Returns 0, -1 with `e` set (a client mistake), or -2 with `e` set (out of memory). */
typedef int (*tb_oai_field_fn)(const struct tb_oai_field *f, json_t *v, void *base,
                               const char *param, void *ctx, struct tb_oai_error *e);

/* One field.  Rows are checked in table order; a table ends with a row whose name is NULL. */
struct tb_oai_field {
    const char *name;
    unsigned apis;  /* TB_OAI_FOR(...) mask; 0: every endpoint */
    unsigned types; /* TB_OAI_J_* mask */
    tb_oai_keep_t keep;
    unsigned flags;            /* TB_OAI_F_* */
    size_t off;                /* where the value goes, from the base pointer */
    size_t has_off;            /* its presence flag (bool), or 0 for none (a presence flag is
                                  never the first member of the struct the base points to) */
    int64_t ilo, ihi;          /* integers: bounds (both 0: no bounds); arrays: length bounds
                                  (ihi 0: no upper bound) */
    double lo, hi;             /* numbers: bounds (both 0: no bounds) */
    int64_t only;              /* TB_OAI_F_ONLY: the one implemented value */
    const char *const *one_of; /* strings: the accepted values, NULL-terminated (NULL: any) */
    unsigned items;            /* arrays: the JSON types every item must have (0: any) */
    const struct tb_oai_field *sub; /* objects: their own fields, walked with the same base */
    const char *needs;  /* a boolean field that must be true for this one to be given */
    size_t needs_off;   /* ... where that boolean was kept, from the base pointer */
    unsigned dflt_apis; /* endpoints on which an absent field takes `dflt` (0: none) */
    double dflt;        /* the default, converted to the kept type */
    tb_oai_field_fn fn; /* TB_OAI_KEEP_FN */
    const char *what;   /* the accepted types in words for errors (NULL: from `types`) */
};

/* Checks every row of `table` that applies to `api` against object `o` (a JSON object), stores
 * what the rows keep at their offsets from `base`, and applies defaults.  `prefix` is the path
 * of `o` for `param` ("" at the top level).  Returns 0, -1 with `e` set (400), or -2 with `e`
 * set (500, out of memory, from a row's fn).  Stops at the first error. */
int tb_oai_fields_walk(const struct tb_oai_field *table, tb_oai_api_t api, json_t *o, void *base,
                       const char *prefix, void *ctx, struct tb_oai_error *e);

/* "a string", "an array", ... for error messages. */
const char *tb_oai_json_type_name(const json_t *v);

/* 1 and *out set when `v` is an integer (or a real with an integral value), else 0. */
int tb_oai_json_int(const json_t *v, int64_t *out);

/* Writes "param[i]" into `buf` (`len` bytes) and returns it; a path too long for `buf` is
 * written without its index.  Cheaper than snprintf: it runs once per array item. */
const char *tb_oai_path_index(char *buf, size_t len, const char *param, size_t i);

/* Sets `e` to a 400 invalid_value error on `param`. */
void tb_oai_error_invalid(struct tb_oai_error *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* TB_OAI_FIELDS_H */
