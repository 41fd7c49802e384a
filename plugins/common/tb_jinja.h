/*
 * tb_jinja.h - a bounded interpreter for the Jinja subset that chat templates use.
 *
 * Templates come from untrusted model files and are rendered per request, so the language is
 * the one Hugging Face renders chat templates with (jinja2's ImmutableSandboxedEnvironment with
 * trim_blocks, lstrip_blocks, the loop-controls extension, and its own `raise_exception`,
 * `tojson` and `strftime_now`), and every resource is bounded: template size, nesting depth,
 * loop iterations, evaluation steps, memory made while rendering and output size.  Exceeding a
 * bound is an error with a message, never a crash.
 *
 * Supported: data, {{ }}, {% %}, {# #}, whitespace control (-, +), if/elif/else, for/else (with
 * unpacking, `if` filters and `loop.*`), break/continue, set (names, tuples, `ns.attr`, block
 * set), macros, with, filter blocks, raw, generation; expressions with literals, lists, tuples,
 * dicts, attribute/item access, slicing, calls, filters, tests, arithmetic, `~`, comparisons,
 * `in`, and/or/not and conditional expressions.  docs/chat-templates.md lists the filters,
 * tests, methods and globals and the known differences from jinja2.
 *
 * Thread-safety: a parsed template is immutable; any number of threads may render it at once.
 * Stack: with the default max_depth a render uses up to about 256 KiB of stack (release build);
 * give rendering threads at least 512 KiB.
 */
#ifndef TB_JINJA_H
#define TB_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_jinja tb_jinja_t;

/* Resource bounds.  Zero in a field means "use the default" (tb_jinja_limits_default). */
struct tb_jinja_limits {
    size_t max_template_bytes;    /* source size; default 256 KiB */
    size_t max_output_bytes;      /* rendered size, and the size of any one string; 8 MiB */
    uint64_t max_loop_iterations; /* for-loop iterations in one render, all loops; 1,000,000 */
    uint64_t max_steps;           /* expression and statement evaluations in one render; 10M */
    uint32_t max_depth;           /* nesting of blocks/expressions, and macro calls; 64 */
    uint64_t max_alloc_bytes;     /* bytes of strings, lists and dicts made in one render;
                                     256 MiB */
};

/* Fills `out` with the defaults listed above. */
void tb_jinja_limits_default(struct tb_jinja_limits *out);

/* Parses `len` bytes of template source (UTF-8; need not be NUL-terminated) with the default
 * limits.  On success returns 0 and *out owns the template (destroy with tb_jinja_destroy).  On
 * failure returns TB_EINVAL (syntax error, invalid UTF-8, too large, too deep) or TB_ENOMEM and
 * writes "LINE:COL: message" into `err` (always NUL-terminated when err_len > 0). */
int tb_jinja_parse(const char *src, size_t len, tb_jinja_t **out, char *err, size_t err_len);

/* Same, with explicit limits (NULL means defaults); the limits are copied into the template
 * and also bound every render of it. */
int tb_jinja_parse_with_limits(const char *src, size_t len, const struct tb_jinja_limits *limits,
                               tb_jinja_t **out, char *err, size_t err_len);

/* Renders `tpl` with the variables of the JSON object `ctx` (borrowed; NULL means none) plus
 * the globals range, namespace, dict, raise_exception, strftime_now, cycler and joiner.
 * On success returns 0, *out is a malloc'd NUL-terminated string of *out_len bytes owned by the
 * caller (free with free()).  On failure *out is NULL and the return is TB_EINVAL (a template
 * error, including raise_exception, whose message is kept), TB_E2BIG (output or a string over
 * max_output_bytes), TB_ERANGE (loop, step, depth or memory bound) or TB_ENOMEM, with
 * "LINE:COL: message" in `err`. */
int tb_jinja_render(const tb_jinja_t *tpl, const json_t *ctx, char **out, size_t *out_len,
                    char *err, size_t err_len);

/* Destroys a template and sets *self_p to NULL; accepts NULL and *self_p == NULL. */
void tb_jinja_destroy(tb_jinja_t **self_p);

#ifdef __cplusplus
}
#endif

#endif /* TB_JINJA_H */
