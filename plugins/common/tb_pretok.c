/*
 * tb_pretok.c - pre-tokenizer steps.  Every step maps a list of pieces (one text buffer plus
 * spans) to a new list; two lists alternate between steps.
 */
#include "tb_pretok.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_tok_utf8.h"

/* The GPT-2 split of the byte-level pre-tokenizer. */
#define GPT2_PATTERN                                                                             \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define WORD_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}"

typedef enum {
    STEP_SPLIT,
    STEP_BYTE_LEVEL,
    STEP_METASPACE,
} step_kind_t;

struct step {
    step_kind_t kind;
    tb_tok_regex_t *re; /* SPLIT; BYTE_LEVEL when use_regex */
    tb_split_behavior_t behavior;
    bool invert;
    bool add_prefix_space;
    char repl[8]; /* METASPACE */
    size_t repl_len;
    tb_prepend_scheme_t scheme;
    bool split;
};

struct tb_pretok {
    struct step *steps;
    size_t n;
};

int tb_pretok_new(tb_pretok_t **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : TB_ENOMEM;
}

void tb_pretok_destroy(tb_pretok_t **p_p)
{
    if (!p_p || !*p_p) {
        return;
    }
    struct tb_pretok *p = *p_p;
    for (size_t i = 0; i < p->n; i++) {
        tb_tok_regex_destroy(&p->steps[i].re);
    }
    free(p->steps);
    free(p);
    *p_p = NULL;
}

static struct step *s_add(struct tb_pretok *p, step_kind_t kind)
{
    struct step *a = realloc(p->steps, (p->n + 1) * sizeof(*a));
    if (!a) {
        return NULL;
    }
    p->steps = a;
    struct step *st = &a[p->n++];
    memset(st, 0, sizeof(*st));
    st->kind = kind;
    return st;
}

static int s_add_split_re(struct tb_pretok *p, const char *pattern, size_t len, bool regex,
                          tb_split_behavior_t behavior, bool invert, char *err, size_t err_len)
{
    tb_tok_regex_t *re = NULL;
    int rc = tb_tok_regex_new(pattern, len, !regex, &re, err, err_len);
    if (rc < 0) {
        return rc;
    }
    struct step *st = s_add(p, STEP_SPLIT);
    if (!st) {
        tb_tok_regex_destroy(&re);
        return TB_ENOMEM;
    }
    st->re = re;
    st->behavior = behavior;
    st->invert = invert;
    return 0;
}

int tb_pretok_add_split(tb_pretok_t *p, const char *pattern, size_t len, bool regex,
                        tb_split_behavior_t behavior, bool invert, char *err, size_t err_len)
{
    if (behavior > TB_SPLIT_CONTIGUOUS) {
        return TB_EINVAL;
    }
    return s_add_split_re(p, pattern, len, regex, behavior, invert, err, err_len);
}

int tb_pretok_add_byte_level(tb_pretok_t *p, bool add_prefix_space, bool use_regex)
{
    tb_tok_regex_t *re = NULL;
    if (use_regex) {
        int rc = tb_tok_regex_new(GPT2_PATTERN, strlen(GPT2_PATTERN), false, &re, NULL, 0);
        if (rc < 0) {
            return rc == TB_ENOMEM ? rc : TB_EINTERNAL;
        }
    }
    struct step *st = s_add(p, STEP_BYTE_LEVEL);
    if (!st) {
        tb_tok_regex_destroy(&re);
        return TB_ENOMEM;
    }
    st->re = re;
    st->add_prefix_space = add_prefix_space;
    return 0;
}

int tb_pretok_add_metaspace(tb_pretok_t *p, const char *replacement, size_t len,
                            tb_prepend_scheme_t scheme, bool split)
{
    if (len == 0 || len >= sizeof(((struct step *)0)->repl)) {
        return TB_EINVAL;
    }
    struct step *st = s_add(p, STEP_METASPACE);
    if (!st) {
        return TB_ENOMEM;
    }
    memcpy(st->repl, replacement, len);
    st->repl_len = len;
    st->scheme = scheme;
    st->split = split;
    return 0;
}

int tb_pretok_add_digits(tb_pretok_t *p, bool individual)
{
    static const char pat[] = "\\p{N}";
    return s_add_split_re(p, pat, strlen(pat), true,
                          individual ? TB_SPLIT_ISOLATED : TB_SPLIT_CONTIGUOUS, false, NULL, 0);
}

int tb_pretok_add_punctuation(tb_pretok_t *p, tb_split_behavior_t behavior)
{
    static const char pat[] = "[\\p{P}!-/:-@\\[-`{-~]";
    return s_add_split_re(p, pat, strlen(pat), true, behavior, false, NULL, 0);
}

int tb_pretok_add_whitespace(tb_pretok_t *p)
{
    static const char pat[] = "[" WORD_CLASS "]+|[^" WORD_CLASS "\\s]+";
    return s_add_split_re(p, pat, strlen(pat), true, TB_SPLIT_REMOVED, true, NULL, 0);
}

int tb_pretok_add_whitespace_split(tb_pretok_t *p)
{
    static const char pat[] = "\\s";
    return s_add_split_re(p, pat, strlen(pat), true, TB_SPLIT_REMOVED, false, NULL, 0);
}

void tb_pretok_work_release(struct tb_pretok_work *w)
{
    tb_buf_free(&w->out.text);
    tb_tok_spans_release(&w->out.spans);
    tb_buf_free(&w->tmp.text);
    tb_tok_spans_release(&w->tmp.spans);
    tb_tok_spans_release(&w->matches);
}

/* Appends piece bytes to `out` as a new word (empty pieces are dropped). */
static int s_emit(struct tb_pretok_words *out, const char *s, size_t len)
{
    if (len == 0) {
        return 0;
    }
    size_t start = out->text.len;
    if (tb_buf_append(&out->text, s, len) < 0) {
        return TB_ENOMEM;
    }
    return tb_tok_spans_push(&out->spans, start, start + len);
}

/* Splits s[0..len) by `matches` (non-overlapping, ascending, non-empty) with `behavior` and
 * appends the pieces to `out`.  Sets *starts_at_zero when the first piece emitted begins at 0. */
static int s_split(const char *s, size_t len, const struct tb_tok_spans *matches,
                   tb_split_behavior_t behavior, bool invert, struct tb_pretok_words *out,
                   bool *starts_at_zero)
{
    /* Segments covering the text: gaps and matches alternate. */
    struct seg {
        size_t a, b;
        bool m;
    };
    size_t cap = matches->n * 2 + 1;
    struct seg *sg = malloc(cap * sizeof(*sg));
    struct seg *res = malloc(cap * sizeof(*res));
    size_t n = 0, nr = 0;
    int rc = 0;
    if (!sg || !res) {
        rc = TB_ENOMEM;
        goto done;
    }
    size_t at = 0;
    for (size_t i = 0; i < matches->n; i++) {
        if (matches->a[i].start > at) {
            sg[n++] = (struct seg){at, matches->a[i].start, invert};
        }
        sg[n++] = (struct seg){matches->a[i].start, matches->a[i].end, !invert};
        at = matches->a[i].end;
    }
    if (at < len) {
        sg[n++] = (struct seg){at, len, invert};
    }
    bool prev = false;
    switch (behavior) {
    case TB_SPLIT_ISOLATED:
        memcpy(res, sg, n * sizeof(*sg));
        nr = n;
        break;
    case TB_SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++) {
            if (!sg[i].m) {
                res[nr++] = sg[i];
            }
        }
        break;
    case TB_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (nr > 0 && sg[i].m == prev) {
                res[nr - 1].b = sg[i].b;
            } else {
                res[nr++] = sg[i];
            }
            prev = sg[i].m;
        }
        break;
    case TB_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < n; i++) {
            if (nr > 0 && sg[i].m && !prev) {
                res[nr - 1].b = sg[i].b;
            } else {
                res[nr++] = sg[i];
            }
            prev = sg[i].m;
        }
        break;
    case TB_SPLIT_MERGED_WITH_NEXT:
        /* Built right to left, then reversed. */
        for (size_t k = n; k-- > 0;) {
            if (nr > 0 && sg[k].m && !prev) {
                res[nr - 1].a = sg[k].a;
            } else {
                res[nr++] = sg[k];
            }
            prev = sg[k].m;
        }
        for (size_t i = 0; i < nr / 2; i++) {
            struct seg t = res[i];
            res[i] = res[nr - 1 - i];
            res[nr - 1 - i] = t;
        }
        break;
    }
    *starts_at_zero = false;
    bool any = false;
    for (size_t i = 0; i < nr && rc == 0; i++) {
        if (res[i].b > res[i].a && !any) {
            any = true;
            *starts_at_zero = res[i].a == 0;
        }
        rc = s_emit(out, s + res[i].a, res[i].b - res[i].a);
    }
done:
    free(sg);
    free(res);
    return rc;
}

/* Byte-level: maps every byte of s to its alphabet character and emits the result. */
static int s_emit_mapped(struct tb_pretok_words *out, const char *s, size_t len)
{
    if (len == 0) {
        return 0;
    }
    size_t start = out->text.len;
    if (tb_buf_reserve(&out->text, len * 2) < 0) {
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        char u[4];
        size_t n = tb_utf8_encode(tb_tok_byte_to_cp((uint8_t)s[i]), u);
        memcpy((char *)out->text.data + out->text.len, u, n);
        out->text.len += n;
    }
    ((char *)out->text.data)[out->text.len] = '\0';
    return tb_tok_spans_push(&out->spans, start, out->text.len);
}

static int s_step(const struct step *st, const struct tb_pretok_words *in, bool first,
                  struct tb_pretok_words *out, struct tb_tok_spans *matches, bool *first_out)
{
    int rc = 0;
    struct tb_buf tmp;
    tb_buf_init(&tmp);
    tb_buf_clear(&out->text);
    out->spans.n = 0;
    *first_out = false;
    for (size_t i = 0; i < in->spans.n && rc == 0; i++) {
        const char *s = (char *)in->text.data + in->spans.a[i].start;
        size_t len = in->spans.a[i].end - in->spans.a[i].start;
        bool zero = false;
        size_t before = out->spans.n;
        matches->n = 0;
        switch (st->kind) {
        case STEP_SPLIT:
            rc = tb_tok_regex_find_all(st->re, s, len, matches);
            if (rc == 0) {
                rc = s_split(s, len, matches, st->behavior, st->invert, out, &zero);
            }
            break;
        case STEP_BYTE_LEVEL: {
            tb_buf_clear(&tmp);
            if (st->add_prefix_space && (len == 0 || s[0] != ' ')) {
                rc = tb_buf_append(&tmp, " ", 1);
            }
            if (rc == 0) {
                rc = tb_buf_append(&tmp, s, len);
            }
            if (rc == 0 && st->re) {
                rc = tb_tok_regex_find_all(st->re, (char *)tmp.data, tmp.len, matches);
            } else if (rc == 0) {
                rc = tb_tok_spans_push(matches, 0, tmp.len);
            }
            /* Isolated split: the matches and the gaps between them, each mapped. */
            size_t at = 0;
            for (size_t k = 0; rc == 0 && k <= matches->n; k++) {
                size_t a = k < matches->n ? matches->a[k].start : tmp.len;
                if (a > at) {
                    rc = s_emit_mapped(out, (char *)tmp.data + at, a - at);
                }
                if (rc == 0 && k < matches->n) {
                    rc = s_emit_mapped(out, (char *)tmp.data + a, matches->a[k].end - a);
                    at = matches->a[k].end;
                }
            }
            zero = true;
            break;
        }
        case STEP_METASPACE: {
            tb_buf_clear(&tmp);
            bool starts = len > 0 && (s[0] == ' ' || (len >= st->repl_len &&
                                                      !memcmp(s, st->repl, st->repl_len)));
            bool prepend = !starts && (st->scheme == TB_PREPEND_ALWAYS ||
                                       (st->scheme == TB_PREPEND_FIRST && i == 0 && first));
            if (prepend) {
                rc = tb_buf_append(&tmp, st->repl, st->repl_len);
            }
            for (size_t k = 0; rc == 0 && k < len; k++) {
                if (s[k] == ' ') {
                    rc = tb_buf_append(&tmp, st->repl, st->repl_len);
                } else {
                    rc = tb_buf_append(&tmp, s + k, 1);
                }
            }
            if (rc == 0 && st->split) {
                for (size_t k = 0; rc == 0 && k + st->repl_len <= tmp.len;) {
                    if (!memcmp((char *)tmp.data + k, st->repl, st->repl_len)) {
                        rc = tb_tok_spans_push(matches, k, k + st->repl_len);
                        k += st->repl_len;
                    } else {
                        k++;
                    }
                }
                if (rc == 0) {
                    rc = s_split((char *)tmp.data, tmp.len, matches, TB_SPLIT_MERGED_WITH_NEXT,
                                 false, out, &zero);
                }
            } else if (rc == 0) {
                rc = s_emit(out, (char *)tmp.data, tmp.len);
                zero = true;
            }
            break;
        }
        }
        if (i == 0 && first && out->spans.n > before && zero) {
            *first_out = true;
        }
    }
    tb_buf_free(&tmp);
    return rc;
}

int tb_pretok_run(const tb_pretok_t *p, const char *text, size_t len, bool first,
                  struct tb_pretok_work *w)
{
    int rc = 0;
    struct tb_pretok_words *cur = &w->out;
    struct tb_pretok_words *nxt = &w->tmp;
    tb_buf_clear(&cur->text);
    cur->spans.n = 0;
    rc = s_emit(cur, text, len);
    if (rc == 0 && cur->text.data == NULL) {
        rc = tb_buf_append(&cur->text, "", 0);
    }
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        bool f = false;
        rc = s_step(&p->steps[i], cur, first, nxt, &w->matches, &f);
        first = f;
        struct tb_pretok_words *t = cur;
        cur = nxt;
        nxt = t;
    }
    if (cur != &w->out) {
        struct tb_pretok_words t = w->out;
        w->out = *cur;
        *cur = t;
    }
    return rc;
}
