/*
 * tb_jinja.c - public entry points of the Jinja interpreter: parse once (lexer + parser into
 * an arena owned by the template), render many times (tb_jinja_eval.c), destroy.
 */
#include "tb_jinja.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_jinja_eval.h"
#include "tb_jinja_lexer.h"
#include "tb_jinja_parser.h"
#include "tb_jinja_value.h"

struct tb_jinja {
    tb_jarena_t arena;
    tb_jnode_t *root;
    struct tb_jinja_limits limits;
    locale_t loc; /* C.UTF-8 for case mapping, or (locale_t)0 */
};

void tb_jinja_limits_default(struct tb_jinja_limits *out)
{
    out->max_template_bytes = 256 * 1024;
    out->max_output_bytes = 8 * 1024 * 1024;
    out->max_loop_iterations = 1000000;
    out->max_steps = 10000000;
    out->max_depth = 64;
    out->max_alloc_bytes = 256ull * 1024 * 1024;
}

static void s_fill_limits(const struct tb_jinja_limits *in, struct tb_jinja_limits *out)
{
    tb_jinja_limits_default(out);
    if (!in) {
        return;
    }
    if (in->max_template_bytes) {
        out->max_template_bytes = in->max_template_bytes;
    }
    if (in->max_output_bytes) {
        out->max_output_bytes = in->max_output_bytes;
    }
    if (in->max_loop_iterations) {
        out->max_loop_iterations = in->max_loop_iterations;
    }
    if (in->max_steps) {
        out->max_steps = in->max_steps;
    }
    if (in->max_depth) {
        out->max_depth = in->max_depth;
    }
    if (in->max_alloc_bytes) {
        out->max_alloc_bytes = in->max_alloc_bytes;
    }
}

int tb_jinja_parse(const char *src, size_t len, tb_jinja_t **out, char *err, size_t err_len)
{
    return tb_jinja_parse_with_limits(src, len, NULL, out, err, err_len);
}

int tb_jinja_parse_with_limits(const char *src, size_t len, const struct tb_jinja_limits *limits,
                               tb_jinja_t **out, char *err, size_t err_len)
{
    int rc = 0;
    tb_jinja_t *tpl = NULL;
    if (err && err_len) {
        err[0] = '\0';
    }
    *out = NULL;
    struct tb_jinja_limits lim;
    s_fill_limits(limits, &lim);
    if (!src && len > 0) {
        rc = TB_EINVAL;
        snprintf(err, err_len, "1:1: no template source");
        goto fail;
    }
    if (len > lim.max_template_bytes) {
        rc = TB_EINVAL;
        snprintf(err, err_len, "1:1: template of %zu bytes is over the %zu-byte bound", len,
                 lim.max_template_bytes);
        goto fail;
    }
    size_t valid = tb_utf8_valid_prefix(src, len);
    if (valid < len) {
        uint32_t line = 1;
        size_t ls = 0;
        for (size_t i = 0; i < valid; i++) {
            if (src[i] == '\n') {
                line++;
                ls = i + 1;
            }
        }
        rc = TB_EINVAL;
        snprintf(err, err_len, "%u:%zu: template is not valid UTF-8 (byte offset %zu)", line,
                 valid - ls + 1, valid);
        goto fail;
    }
    tpl = calloc(1, sizeof(*tpl));
    if (!tpl) {
        rc = TB_ENOMEM;
        snprintf(err, err_len, "1:1: out of memory");
        goto fail;
    }
    tpl->limits = lim;
    /* tokens and nodes are a small multiple of the source; the bound stops pathological
     * inputs (for example thousands of one-character tags) from growing without limit */
    tb_jarena_init(&tpl->arena, 128 * len + (1u << 20));
    tb_jtoks_t toks = {0};
    rc = tb_jinja_lex(&tpl->arena, src ? src : "", len, &toks, err, err_len);
    if (rc != 0) {
        goto fail;
    }
    rc = tb_jinja_parse_tokens(&tpl->arena, &toks, lim.max_depth, &tpl->root, err, err_len);
    if (rc != 0) {
        goto fail;
    }
    tpl->loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    *out = tpl;
    return 0;
fail:
    tb_jinja_destroy(&tpl);
    return rc;
}

int tb_jinja_render(const tb_jinja_t *tpl, const json_t *ctx, char **out, size_t *out_len,
                    char *err, size_t err_len)
{
    if (!tpl || !out) {
        if (err && err_len) {
            snprintf(err, err_len, "1:1: no template");
        }
        return TB_EINVAL;
    }
    return tb_jinja_eval_render(tpl->root, &tpl->limits, tpl->loc, ctx, out, out_len, err,
                                err_len);
}

void tb_jinja_destroy(tb_jinja_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tb_jinja_t *tpl = *self_p;
    tb_jarena_release(&tpl->arena);
    if (tpl->loc != (locale_t)0) {
        freelocale(tpl->loc);
    }
    free(tpl);
    *self_p = NULL;
}
