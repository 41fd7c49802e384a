/*
 * tb_tok_norm.c - normalizer steps.  Each step reads one buffer and writes the other; the two
 * buffers swap between steps.
 */
#include "tb_tok_norm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tb_errors.h"
#include "tb_tok_regex.h"
#include "tb_tok_utf8.h"

typedef enum {
    STEP_PREPEND,
    STEP_REPLACE,
    STEP_UNICODE,
    STEP_LOWER,
    STEP_STRIP,
    STEP_STRIP_ACCENTS,
} step_kind_t;

struct step {
    step_kind_t kind;
    char *s; /* PREPEND: the prefix; REPLACE: the replacement */
    size_t s_len;
    tb_tok_regex_t *re; /* REPLACE */
    tb_tok_nf_t form;
    bool left, right;
};

struct tb_tok_norm {
    struct step *steps;
    size_t n;
};

int tb_tok_norm_new(tb_tok_norm_t **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : TB_ENOMEM;
}

void tb_tok_norm_destroy(tb_tok_norm_t **n_p)
{
    if (!n_p || !*n_p) {
        return;
    }
    struct tb_tok_norm *n = *n_p;
    for (size_t i = 0; i < n->n; i++) {
        free(n->steps[i].s);
        tb_tok_regex_destroy(&n->steps[i].re);
    }
    free(n->steps);
    free(n);
    *n_p = NULL;
}

static struct step *s_add(struct tb_tok_norm *n, step_kind_t kind)
{
    struct step *a = realloc(n->steps, (n->n + 1) * sizeof(*a));
    if (!a) {
        return NULL;
    }
    n->steps = a;
    struct step *st = &a[n->n++];
    memset(st, 0, sizeof(*st));
    st->kind = kind;
    return st;
}

static char *s_dup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

int tb_tok_norm_add_prepend(tb_tok_norm_t *n, const char *s, size_t len)
{
    char *d = s_dup(s, len);
    struct step *st = d ? s_add(n, STEP_PREPEND) : NULL;
    if (!st) {
        free(d);
        return TB_ENOMEM;
    }
    st->s = d;
    st->s_len = len;
    return 0;
}

int tb_tok_norm_add_replace(tb_tok_norm_t *n, const char *pattern, size_t plen, bool regex,
                            const char *content, size_t clen, char *err, size_t err_len)
{
    tb_tok_regex_t *re = NULL;
    int rc = tb_tok_regex_new(pattern, plen, !regex, &re, err, err_len);
    if (rc < 0) {
        return rc;
    }
    char *d = s_dup(content, clen);
    struct step *st = d ? s_add(n, STEP_REPLACE) : NULL;
    if (!st) {
        free(d);
        tb_tok_regex_destroy(&re);
        return TB_ENOMEM;
    }
    st->s = d;
    st->s_len = clen;
    st->re = re;
    return 0;
}

int tb_tok_norm_add_unicode(tb_tok_norm_t *n, tb_tok_nf_t form)
{
    struct step *st = s_add(n, STEP_UNICODE);
    if (!st) {
        return TB_ENOMEM;
    }
    st->form = form;
    return 0;
}

int tb_tok_norm_add_lowercase(tb_tok_norm_t *n)
{
    return s_add(n, STEP_LOWER) ? 0 : TB_ENOMEM;
}

int tb_tok_norm_add_strip(tb_tok_norm_t *n, bool left, bool right)
{
    struct step *st = s_add(n, STEP_STRIP);
    if (!st) {
        return TB_ENOMEM;
    }
    st->left = left;
    st->right = right;
    return 0;
}

int tb_tok_norm_add_strip_accents(tb_tok_norm_t *n)
{
    return s_add(n, STEP_STRIP_ACCENTS) ? 0 : TB_ENOMEM;
}

bool tb_tok_norm_is_empty(const tb_tok_norm_t *n)
{
    return !n || n->n == 0;
}

static int s_apply_step(const struct step *st, const char *in, size_t len, struct tb_buf *out)
{
    int rc = 0;
    tb_buf_clear(out);
    switch (st->kind) {
    case STEP_PREPEND:
        if (len > 0) {
            rc = tb_buf_append(out, st->s, st->s_len);
        }
        if (rc == 0) {
            rc = tb_buf_append(out, in, len);
        }
        return rc;
    case STEP_REPLACE: {
        struct tb_tok_spans sp = {0};
        rc = tb_tok_regex_find_all(st->re, in, len, &sp);
        size_t at = 0;
        for (size_t i = 0; rc == 0 && i < sp.n; i++) {
            rc = tb_buf_append(out, in + at, sp.a[i].start - at);
            if (rc == 0) {
                rc = tb_buf_append(out, st->s, st->s_len);
            }
            at = sp.a[i].end;
        }
        if (rc == 0) {
            rc = tb_buf_append(out, in + at, len - at);
        }
        tb_tok_spans_release(&sp);
        return rc;
    }
    case STEP_UNICODE: {
        static const int opts[] = {
            UTF8PROC_STABLE | UTF8PROC_COMPOSE,
            UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
            UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
            UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
        };
        if (len == 0) {
            return tb_buf_append(out, "", 0);
        }
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)len,
                                          &dst, (utf8proc_option_t)opts[st->form]);
        if (n < 0) {
            return n == UTF8PROC_ERROR_NOMEM ? TB_ENOMEM : TB_EINTERNAL;
        }
        rc = tb_buf_append(out, dst, (size_t)n);
        free(dst);
        return rc;
    }
    case STEP_LOWER:
    case STEP_STRIP_ACCENTS: {
        size_t i = 0;
        while (rc == 0 && i < len) {
            uint32_t cp = 0;
            size_t cl = 1;
            tb_utf8_decode((const uint8_t *)in + i, len - i, &cp, &cl);
            if (st->kind == STEP_LOWER) {
                if (cp == 0x130) { /* the one full mapping longer than a character */
                    rc = tb_buf_append(out, "i\xcc\x87", 3);
                } else {
                    rc = tb_buf_append_cp(out, (uint32_t)utf8proc_tolower((int32_t)cp));
                }
            } else {
                utf8proc_category_t cat = utf8proc_category((int32_t)cp);
                if (cat != UTF8PROC_CATEGORY_MN && cat != UTF8PROC_CATEGORY_MC &&
                    cat != UTF8PROC_CATEGORY_ME) {
                    rc = tb_buf_append(out, in + i, cl);
                }
            }
            i += cl;
        }
        return rc == 0 ? tb_buf_append(out, "", 0) : rc;
    }
    case STEP_STRIP: {
        size_t a = 0, b = len;
        while (st->left && a < b) {
            uint32_t cp = 0;
            size_t cl = 1;
            tb_utf8_decode((const uint8_t *)in + a, b - a, &cp, &cl);
            if (!tb_tok_is_space(cp)) {
                break;
            }
            a += cl;
        }
        while (st->right && b > a) {
            size_t k = b - 1;
            while (k > a && ((uint8_t)in[k] & 0xC0) == 0x80) {
                k--;
            }
            uint32_t cp = 0;
            size_t cl = 1;
            tb_utf8_decode((const uint8_t *)in + k, b - k, &cp, &cl);
            if (!tb_tok_is_space(cp)) {
                break;
            }
            b = k;
        }
        return tb_buf_append(out, in + a, b - a);
    }
    }
    return TB_EINTERNAL;
}

int tb_tok_norm_apply(const tb_tok_norm_t *n, const char *in, size_t len, struct tb_buf *out)
{
    int rc = 0;
    struct tb_buf tmp;
    tb_buf_init(&tmp);
    tb_buf_clear(out);
    rc = tb_buf_append(out, in, len);
    for (size_t i = 0; rc == 0 && n && i < n->n; i++) {
        rc = s_apply_step(&n->steps[i], (char *)out->data, out->len, &tmp);
        if (rc == 0) {
            struct tb_buf t = *out;
            *out = tmp;
            tmp = t;
        }
    }
    tb_buf_free(&tmp);
    return rc;
}
