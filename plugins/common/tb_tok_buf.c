/*
 * tb_tok_buf.c - the growable int32 vector of the tokenizer classes.
 */
#include "tb_tok_buf.h"

#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"

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
