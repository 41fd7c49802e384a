/*
 * tb_tok_regex.c - PCRE2 wrapper for the tokenizers (UTF + UCP, JIT when the platform has it).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tb_tok_regex.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"
#include "tb_errors.h"
#include "tb_tok_buf.h"
#include "tb_tok_utf8.h"

struct tb_tok_regex {
    pcre2_code *code;
};

/* Rewrites \s and \S so that they include U+0085 (NEXT LINE), which Oniguruma, Rust and
 * llama.cpp count as whitespace and PCRE2 does not. */
static int s_widen_space(const char *p, size_t n, struct tb_buf *out)
{
    int depth = 0; /* inside a character class */
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            const char *rep = NULL;
            if (d == 's') {
                rep = depth ? "\\s\\x{85}" : "[\\s\\x{85}]";
            } else if (d == 'S' && !depth) {
                rep = "[^\\s\\x{85}]";
            }
            if (rep) {
                if (tb_buf_append(out, rep, strlen(rep)) < 0) {
                    return TB_ENOMEM;
                }
            } else if (tb_buf_append(out, p + i, 2) < 0) {
                return TB_ENOMEM;
            }
            i++;
            continue;
        }
        if (c == '[' && !depth) {
            depth = 1;
            /* A ']' right after '[' or '[^' is a literal member. */
            size_t j = i + 1;
            if (j < n && p[j] == '^') {
                j++;
            }
            if (j < n && p[j] == ']') {
                if (tb_buf_append(out, p + i, j + 1 - i) < 0) {
                    return TB_ENOMEM;
                }
                i = j;
                continue;
            }
        } else if (c == ']' && depth) {
            depth = 0;
        }
        if (tb_buf_append(out, &c, 1) < 0) {
            return TB_ENOMEM;
        }
    }
    return 0;
}

int tb_tok_regex_new(const char *pattern, size_t len, bool literal, tb_tok_regex_t **out,
                     char *err, size_t err_len)
{
    int rc = 0;
    struct tb_buf pat;
    struct tb_tok_regex *re = NULL;
    int errcode = 0;
    PCRE2_SIZE erroff = 0;

    *out = NULL;
    tb_buf_init(&pat);
    if (literal) {
        rc = tb_buf_append(&pat, pattern, len);
    } else {
        rc = s_widen_space(pattern, len, &pat);
    }
    if (rc < 0) {
        goto done;
    }
    re = calloc(1, sizeof(*re));
    if (!re) {
        rc = TB_ENOMEM;
        goto done;
    }
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    re->code = pcre2_compile((PCRE2_SPTR)(pat.data ? (char *)pat.data : ""), pat.len, opts,
                             &errcode, &erroff, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        if (err && err_len) {
            snprintf(err, err_len, "bad regex '%.*s': %s at offset %zu",
                     (int)(len > 200 ? 200 : len), pattern, (const char *)msg, (size_t)erroff);
        }
        rc = TB_EINVAL;
        goto done;
    }
    /* JIT is an optimisation: where it is unavailable the interpreter is used. */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    *out = re;
    re = NULL;
done:
    if (re) {
        pcre2_code_free(re->code);
        free(re);
    }
    tb_buf_free(&pat);
    return rc;
}

void tb_tok_regex_destroy(tb_tok_regex_t **re_p)
{
    if (!re_p || !*re_p) {
        return;
    }
    pcre2_code_free((*re_p)->code);
    free(*re_p);
    *re_p = NULL;
}

int tb_tok_spans_push(struct tb_tok_spans *sp, size_t start, size_t end)
{
    if (sp->n == sp->cap) {
        size_t cap = sp->cap ? sp->cap * 2 : 64;
        struct tb_tok_span *a = realloc(sp->a, cap * sizeof(*a));
        if (!a) {
            return TB_ENOMEM;
        }
        sp->a = a;
        sp->cap = cap;
    }
    sp->a[sp->n].start = start;
    sp->a[sp->n].end = end;
    sp->n++;
    return 0;
}

void tb_tok_spans_release(struct tb_tok_spans *sp)
{
    free(sp->a);
    sp->a = NULL;
    sp->n = 0;
    sp->cap = 0;
}

int tb_tok_regex_find_all(const tb_tok_regex_t *re, const char *s, size_t len,
                          struct tb_tok_spans *out)
{
    int rc = 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md) {
        return TB_ENOMEM;
    }
    size_t pos = 0;
    while (pos <= len) {
        int m = pcre2_match(re->code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (m == PCRE2_ERROR_JIT_STACKLIMIT) {
            /* The JIT's machine stack is small; the interpreter backtracks on the heap. */
            m = pcre2_match(re->code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                            md, NULL);
        }
        if (m == PCRE2_ERROR_NOMATCH) {
            break;
        }
        if (m < 0) {
            rc = TB_EINTERNAL;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me > ms) {
            rc = tb_tok_spans_push(out, ms, me);
            if (rc < 0) {
                break;
            }
            pos = me;
        } else {
            if (ms >= len) {
                break;
            }
            pos = ms + tb_utf8_lead_len((uint8_t)s[ms]);
        }
    }
    pcre2_match_data_free(md);
    return rc;
}
