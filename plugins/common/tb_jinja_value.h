/*
 * tb_jinja_value.h - values of the Jinja interpreter (internal to tb_jinja*.c).
 *
 * A value is a small tagged struct passed by value; strings, lists, dicts and callables live on
 * the heap with a reference count.  Values follow Python's semantics where templates can see
 * them (truthiness, equality, str(), repr(), json.dumps), because the reference renderer is
 * jinja2.  Every allocation is charged to the render's runtime (tb_jrt_t) and fails softly:
 * a function that cannot build its result returns a value of kind TB_JV_ERROR after recording
 * why in the runtime.
 *
 * Thread-safety: values are owned by one render; none are shared between threads.
 */
#ifndef TB_JINJA_VALUE_H
#define TB_JINJA_VALUE_H

#include <locale.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tb_jinja.h"
#include "tb_utf8.h"

typedef enum {
    TB_JV_ERROR = 0, /* not a value: the runtime holds the error */
    TB_JV_UNDEFINED,
    TB_JV_NONE,
    TB_JV_BOOL,
    TB_JV_INT,
    TB_JV_FLOAT,
    TB_JV_STR,
    TB_JV_LIST, /* also tuples (flag on the list) */
    TB_JV_DICT, /* also namespaces (flag on the dict) */
    TB_JV_FUNC, /* builtin functions, bound methods, macros */
    TB_JV_LOOP, /* the `loop` variable of a for loop */
} tb_jv_kind_t;

typedef struct tb_jv_str tb_jv_str_t;
typedef struct tb_jv_list tb_jv_list_t;
typedef struct tb_jv_dict tb_jv_dict_t;
typedef struct tb_jv_func tb_jv_func_t;
typedef struct tb_jv_loop tb_jv_loop_t;

typedef struct {
    uint8_t kind;
    union {
        bool b;
        int64_t i;
        double f;
        tb_jv_str_t *s;
        tb_jv_list_t *l;
        tb_jv_dict_t *d;
        tb_jv_func_t *fn;
        tb_jv_loop_t *loop;
        const char *name; /* UNDEFINED: the missing name (borrowed from the AST), or NULL */
    } u;
} tb_jv_t;

struct tb_jv_str {
    uint32_t refs;
    size_t len;  /* bytes, excluding the NUL */
    size_t ncp;  /* code points, or SIZE_MAX when not counted yet */
    char data[]; /* valid UTF-8, NUL-terminated */
};

struct tb_jv_list {
    uint32_t refs;
    bool tuple;
    size_t n, cap;
    tb_jv_t *items;
};

struct tb_jv_dict {
    uint32_t refs;
    bool ns; /* a namespace() object: attribute assignment allowed */
    size_t n, cap;
    tb_jv_str_t **keys; /* insertion order */
    tb_jv_t *vals;
    uint32_t *index; /* open-addressing table of entry numbers + 1, or NULL when small */
    size_t index_cap;
};

/* A callable: a builtin global, a method bound to `self`, or a macro of the template. */
struct tb_jv_func {
    uint32_t refs;
    const char *name;  /* static or AST-owned */
    int builtin;       /* builtin id (tb_jinja_builtins.h), or -1 for a macro */
    tb_jv_t self;      /* owned: the bound object (methods), or state (cycler, joiner) */
    const void *macro; /* borrowed AST node of a macro */
    size_t counter;    /* mutable state of cycler/joiner */
};

/* The `loop` object of one for-loop iteration. */
struct tb_jv_loop {
    uint32_t refs;
    size_t index0, length;
    tb_jv_t seq; /* owned list being iterated (previtem/nextitem) */
};

/* Runtime of one render: error state, limits and counters.  Owned by the renderer. */
typedef struct tb_jrt {
    char *err;
    size_t err_len;
    int code; /* 0 or the TB_E* of the first failure */
    struct tb_jinja_limits limits;
    uint64_t alloc_bytes;
    uint64_t steps;
    uint64_t loop_iters;
    uint32_t depth;
    uint32_t line, col; /* position of the node being evaluated, for messages */
    locale_t loc;       /* C.UTF-8 for Unicode case mapping, or (locale_t)0 for ASCII only */
} tb_jrt_t;

/* Records the first failure (later ones are ignored) as "LINE:COL: message" and returns an
 * error value. */
tb_jv_t tb_jrt_fail(tb_jrt_t *rt, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Charges `n` bytes to the render; false (and a recorded error) when over the bound. */
bool tb_jrt_charge(tb_jrt_t *rt, size_t n);

/* --- constructors (immediates need no release) --- */
static inline tb_jv_t tb_jv_undef(const char *name)
{
    tb_jv_t v = {.kind = TB_JV_UNDEFINED};
    v.u.name = name;
    return v;
}
static inline tb_jv_t tb_jv_none(void)
{
    tb_jv_t v = {.kind = TB_JV_NONE};
    return v;
}
static inline tb_jv_t tb_jv_bool(bool b)
{
    tb_jv_t v = {.kind = TB_JV_BOOL};
    v.u.b = b;
    return v;
}
static inline tb_jv_t tb_jv_int(int64_t i)
{
    tb_jv_t v = {.kind = TB_JV_INT};
    v.u.i = i;
    return v;
}
static inline tb_jv_t tb_jv_float(double f)
{
    tb_jv_t v = {.kind = TB_JV_FLOAT};
    v.u.f = f;
    return v;
}
static inline tb_jv_t tb_jv_err(void)
{
    tb_jv_t v = {.kind = TB_JV_ERROR};
    return v;
}
static inline bool tb_jv_is_err(tb_jv_t v)
{
    return v.kind == TB_JV_ERROR;
}

/* Takes a reference; returns v. */
tb_jv_t tb_jv_ref(tb_jv_t v);
/* Drops a reference (frees at zero). */
void tb_jv_unref(tb_jv_t v);

/* --- strings --- */
/* Copies `len` bytes (must be valid UTF-8). */
tb_jv_t tb_jv_str_new(tb_jrt_t *rt, const char *data, size_t len);
/* An uninitialised string of `len` bytes for the caller to fill (data[len] is set to NUL). */
tb_jv_t tb_jv_str_alloc(tb_jrt_t *rt, size_t len);
tb_jv_t tb_jv_str_cat(tb_jrt_t *rt, const char *a, size_t alen, const char *b, size_t blen);
size_t tb_jv_str_ncp(tb_jv_str_t *s);

/* --- lists --- */
tb_jv_t tb_jv_list_new(tb_jrt_t *rt, size_t cap);
/* Appends, taking ownership of `item` (released on failure).  Returns false on failure. */
bool tb_jv_list_push(tb_jrt_t *rt, tb_jv_list_t *l, tb_jv_t item);

/* --- dicts --- */
tb_jv_t tb_jv_dict_new(tb_jrt_t *rt, size_t cap);
/* A callable; takes ownership of `self`. */
tb_jv_t tb_jv_func_new(tb_jrt_t *rt, const char *name, int builtin, tb_jv_t self,
                       const void *macro);
/* A loop object over `seq` (a reference is taken). */
tb_jv_t tb_jv_loop_new(tb_jrt_t *rt, tb_jv_t seq);
/* Borrowed value for `key`, or NULL. */
tb_jv_t *tb_jv_dict_get(const tb_jv_dict_t *d, const char *key, size_t klen);
/* Sets key -> val, taking ownership of `val` (released on failure); replaces an existing key. */
bool tb_jv_dict_set(tb_jrt_t *rt, tb_jv_dict_t *d, const char *key, size_t klen, tb_jv_t val);

/* --- conversions --- */
/* Deep copy of a JSON value.  `depth` bounds nesting. */
tb_jv_t tb_jv_from_json(tb_jrt_t *rt, const json_t *j, uint32_t depth);
/* Python truthiness. */
bool tb_jv_truthy(tb_jv_t v);
/* Python ==. */
bool tb_jv_equal(tb_jv_t a, tb_jv_t b);
/* Python-style type name for messages ("str", "int", "list", "dict", "undefined", ...). */
const char *tb_jv_type_name(tb_jv_t v);

/* A growable byte buffer bounded by max_output_bytes and charged to the runtime. */
typedef struct {
    char *data;
    size_t len, cap;
    tb_jrt_t *rt;
} tb_jbuf_t;

void tb_jbuf_init(tb_jbuf_t *b, tb_jrt_t *rt);
void tb_jbuf_release(tb_jbuf_t *b);
bool tb_jbuf_add(tb_jbuf_t *b, const char *s, size_t n);
bool tb_jbuf_addc(tb_jbuf_t *b, char c);
/* Moves the buffer's bytes into a new string value (the buffer is reset). */
tb_jv_t tb_jbuf_to_str(tb_jbuf_t *b);

/* Appends Python's str(v) (what {{ v }} prints).  False on failure (error recorded). */
bool tb_jv_write_str(tb_jbuf_t *b, tb_jv_t v);
/* Appends Python's repr(v). */
bool tb_jv_write_repr(tb_jbuf_t *b, tb_jv_t v);
/* Appends json.dumps(v, ensure_ascii=False, indent, separators, sort_keys) as the
 * Hugging Face `tojson` filter does.  indent < 0 means None. */
bool tb_jv_write_json(tb_jbuf_t *b, tb_jv_t v, int indent, const char *item_sep,
                      const char *key_sep, bool sort_keys, bool ensure_ascii);
/* str(v) as a new string value (a string is returned with a new reference). */
tb_jv_t tb_jv_to_str(tb_jrt_t *rt, tb_jv_t v);

/* Python's repr() of a float into buf (at least 32 bytes). */
void tb_jv_float_repr(double f, char *buf, size_t size);

/* --- Python string helpers (UTF-8 decoding and encoding: the SDK's tb_utf8.h) --- */
/* Python's str.isspace() for one code point. */
bool tb_py_isspace(uint32_t cp);
/* Byte offset of code point number `cp` (cp <= number of code points). */
size_t tb_utf8_offset(const char *s, size_t len, size_t cp);
/* Case mapping of one code point through the runtime's locale (ASCII without one). */
uint32_t tb_jrt_upper(const tb_jrt_t *rt, uint32_t cp);
uint32_t tb_jrt_lower(const tb_jrt_t *rt, uint32_t cp);
bool tb_jrt_is_cased(const tb_jrt_t *rt, uint32_t cp);

#endif /* TB_JINJA_VALUE_H */
