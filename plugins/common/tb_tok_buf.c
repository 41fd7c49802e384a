/*
 * tb_tok_buf.c - growable byte buffer and int32 vector used by the tokenizer classes.
 */
#include "tb_tok_buf.h"

#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_utf8.h"

void tb_tok_buf_init(struct tb_tok_buf *b)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}

void tb_tok_buf_release(struct tb_tok_buf *b)
{
    free(b->ptr);
    tb_tok_buf_init(b);
}

int tb_tok_buf_reserve(struct tb_tok_buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len - 1) {
        return TB_ENOMEM;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap *= 2;
    }
    char *p = realloc(b->ptr, cap);
    if (!p) {
        return TB_ENOMEM;
    }
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int tb_tok_buf_append(struct tb_tok_buf *b, const void *src, size_t n)
{
    if (tb_tok_buf_reserve(b, n) < 0) {
        return TB_ENOMEM;
    }
    if (n > 0) {
        memcpy(b->ptr + b->len, src, n);
    }
    b->len += n;
    b->ptr[b->len] = '\0';
    return 0;
}

int tb_tok_buf_append_cp(struct tb_tok_buf *b, uint32_t cp)
{
    char u[4];
    size_t n = tb_utf8_encode(cp, u);
    return n ? tb_tok_buf_append(b, u, n) : TB_EINVAL;
}

void tb_tok_buf_clear(struct tb_tok_buf *b)
{
    b->len = 0;
    if (b->cap > 0) {
        b->ptr[0] = '\0';
    }
}

char *tb_tok_buf_steal(struct tb_tok_buf *b, size_t *len)
{
    char *p = b->ptr;
    size_t n = b->len;
    if (!p) {
        p = calloc(1, 1);
        n = 0;
    }
    tb_tok_buf_init(b);
    if (len) {
        *len = p ? n : 0;
    }
    return p;
}

void tb_tok_ids_init(struct tb_tok_ids *v)
{
    v->ptr = NULL;
    v->len = 0;
    v->cap = 0;
}

void tb_tok_ids_release(struct tb_tok_ids *v)
{
    free(v->ptr);
    tb_tok_ids_init(v);
}

static int s_ids_reserve(struct tb_tok_ids *v, size_t extra)
{
    if (extra > SIZE_MAX / 8 - v->len) {
        return TB_ENOMEM;
    }
    size_t need = v->len + extra;
    if (need <= v->cap) {
        return 0;
    }
    size_t cap = v->cap ? v->cap : 32;
    while (cap < need) {
        cap *= 2;
    }
    int32_t *p = realloc(v->ptr, cap * sizeof(int32_t));
    if (!p) {
        return TB_ENOMEM;
    }
    v->ptr = p;
    v->cap = cap;
    return 0;
}

int tb_tok_ids_push(struct tb_tok_ids *v, int32_t id)
{
    if (v->len == v->cap && s_ids_reserve(v, 1) < 0) {
        return TB_ENOMEM;
    }
    v->ptr[v->len++] = id;
    return 0;
}

int tb_tok_ids_append(struct tb_tok_ids *v, const int32_t *ids, size_t n)
{
    if (s_ids_reserve(v, n) < 0) {
        return TB_ENOMEM;
    }
    if (n > 0) {
        memcpy(v->ptr + v->len, ids, n * sizeof(int32_t));
    }
    v->len += n;
    return 0;
}
