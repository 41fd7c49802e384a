/*
 * tb_reasoning_parser: <think>...</think> apart from the answer (see tb_reasoning_parser.h).
 * Text that could still be the start of a marker is held until it is known not to be.
 */
#include "tb_reasoning_parser.h"

#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"
#include "tb_errors.h"

#define OPEN "<think>"
#define CLOSE "</think>"

typedef enum {
    RS_START,   /* the answer's start: a block may open */
    RS_OPENED,  /* just inside: whitespace dropped */
    RS_THINK,   /* inside */
    RS_CLOSED,  /* just after: whitespace dropped */
    RS_CONTENT, /* the answer */
} rs_t;

struct tb_reasoning_parser {
    rs_t st;
    bool eof;
    struct tb_buf held; /* text not decided yet */
    struct tb_buf reasoning, content;
};

int tb_reasoning_format_from_name(const char *name, tb_reasoning_format_t *out)
{
    if (name && strcmp(name, "none") == 0) {
        *out = TB_REASONING_NONE;
        return 0;
    }
    if (name && (strcmp(name, "think") == 0 || strcmp(name, "deepseek_r1") == 0 ||
                 strcmp(name, "qwen3") == 0)) {
        *out = TB_REASONING_THINK;
        return 0;
    }
    return TB_EINVAL;
}

tb_reasoning_format_t tb_reasoning_format_from_template(const char *src, size_t len)
{
    return src && memmem(src, len, CLOSE, strlen(CLOSE)) ? TB_REASONING_THINK : TB_REASONING_NONE;
}

/* The last occurrence of `what` in s[0..len), or NULL. */
static const char *s_last(const char *s, size_t len, const char *what)
{
    const char *last = NULL;
    size_t n = strlen(what);
    for (const char *at = s; at && (size_t)(at - s) + n <= len;) {
        at = memmem(at, len - (size_t)(at - s), what, n);
        if (at) {
            last = at++;
        }
    }
    return last;
}

bool tb_reasoning_prompt_opens(const char *prompt, size_t len)
{
    const char *o = s_last(prompt, len, OPEN);
    const char *c = s_last(prompt, len, CLOSE);
    return o && (!c || o > c);
}

int tb_reasoning_parser_new(bool opened, tb_reasoning_parser_t **out)
{
    *out = calloc(1, sizeof(**out));
    if (!*out) {
        return TB_ENOMEM;
    }
    (*out)->st = opened ? RS_OPENED : RS_START;
    return 0;
}

void tb_reasoning_parser_destroy(tb_reasoning_parser_t **p_p)
{
    if (!p_p || !*p_p) {
        return;
    }
    tb_reasoning_parser_t *p = *p_p;
    tb_buf_free(&p->held);
    tb_buf_free(&p->reasoning);
    tb_buf_free(&p->content);
    free(p);
    *p_p = NULL;
}

static bool s_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Length of the longest end of s[0..n) that is a proper prefix of `m`. */
static size_t s_partial(const char *s, size_t n, const char *m)
{
    size_t mn = strlen(m);
    for (size_t h = mn - 1; h > 0; h--) {
        if (h <= n && memcmp(s + n - h, m, h) == 0) {
            return h;
        }
    }
    return 0;
}

/* Decides what it can of the held text `s[0..n)`; returns how many bytes it consumed. */
static size_t s_step(tb_reasoning_parser_t *p, const char *s, size_t n, int *rc)
{
    size_t i = 0;
    switch (p->st) {
    case RS_START:
        while (i < n && s_ws(s[i])) {
            i++;
        }
        if (n - i >= strlen(OPEN) && memcmp(s + i, OPEN, strlen(OPEN)) == 0) {
            p->st = RS_OPENED;
            return i + strlen(OPEN);
        }
        if (!p->eof && n - i < strlen(OPEN) && memcmp(s + i, OPEN, n - i) == 0) {
            return 0; /* wait: still a prefix of <think> (or only whitespace) */
        }
        p->st = RS_CONTENT;
        return 0;
    case RS_OPENED:
    case RS_CLOSED:
        while (i < n && s_ws(s[i])) {
            i++;
        }
        if (i < n) {
            p->st = p->st == RS_OPENED ? RS_THINK : RS_CONTENT;
        }
        return i;
    case RS_THINK: {
        const char *hit = memmem(s, n, CLOSE, strlen(CLOSE));
        size_t upto = hit ? (size_t)(hit - s) : n - (p->eof ? 0 : s_partial(s, n, CLOSE));
        *rc = tb_buf_append(&p->reasoning, s, upto);
        if (hit) {
            p->st = RS_CLOSED;
            return upto + strlen(CLOSE);
        }
        return upto;
    }
    default:
        *rc = tb_buf_append(&p->content, s, n);
        return n;
    }
}

static int s_run(tb_reasoning_parser_t *p)
{
    int rc = 0;
    for (;;) {
        rs_t st = p->st;
        size_t k = s_step(p, (const char *)p->held.data, p->held.len, &rc);
        if (rc != 0) {
            return rc;
        }
        if (k) {
            memmove(p->held.data, p->held.data + k, p->held.len - k);
            p->held.len -= k;
        }
        if ((k == 0 && st == p->st) || p->held.len == 0) {
            return 0;
        }
    }
}

int tb_reasoning_parser_push(tb_reasoning_parser_t *p, const char *text, size_t len)
{
    if (len == 0 || p->eof) {
        return 0;
    }
    int rc = tb_buf_append(&p->held, text, len);
    return rc ? rc : s_run(p);
}

int tb_reasoning_parser_finish(tb_reasoning_parser_t *p)
{
    p->eof = true;
    return p->held.len ? s_run(p) : 0;
}

bool tb_reasoning_parser_in_reasoning(const tb_reasoning_parser_t *p)
{
    return p->st == RS_OPENED || p->st == RS_THINK;
}

const char *tb_reasoning_parser_reasoning(const tb_reasoning_parser_t *p, size_t *len)
{
    *len = p->reasoning.len;
    return p->reasoning.len ? (const char *)p->reasoning.data : NULL;
}

const char *tb_reasoning_parser_content(const tb_reasoning_parser_t *p, size_t *len)
{
    *len = p->content.len;
    return p->content.len ? (const char *)p->content.data : NULL;
}

void tb_reasoning_parser_take(tb_reasoning_parser_t *p)
{
    tb_buf_clear(&p->reasoning);
    tb_buf_clear(&p->content);
}
