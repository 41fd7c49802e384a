/* tb_hbuf: a growable byte buffer (see tb_hbuf.h). */
#include "tb_hbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tb_hbuf_init(struct tb_hbuf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->off = 0;
}

void tb_hbuf_release(struct tb_hbuf *b)
{
    free(b->data);
    tb_hbuf_init(b);
}

void tb_hbuf_reset(struct tb_hbuf *b)
{
    b->len = 0;
    b->off = 0;
    if (b->data) {
        b->data[0] = 0;
    }
}

int tb_hbuf_reserve(struct tb_hbuf *b, size_t n)
{
    if (n > ((size_t)1 << 40) || b->len + n + 1 < b->len) {
        return TB_ENOMEM;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) {
        return TB_ENOMEM;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

int tb_hbuf_append(struct tb_hbuf *b, const void *p, size_t n)
{
    if (tb_hbuf_reserve(b, n) != 0) {
        return TB_ENOMEM;
    }
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int tb_hbuf_puts(struct tb_hbuf *b, const char *s)
{
    return tb_hbuf_append(b, s, strlen(s));
}

int tb_hbuf_printf(struct tb_hbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return TB_EINVAL;
    }
    if ((size_t)n < sizeof(small)) {
        return tb_hbuf_append(b, small, (size_t)n);
    }
    if (tb_hbuf_reserve(b, (size_t)n) != 0) {
        return TB_ENOMEM;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *tb_hbuf_detach(struct tb_hbuf *b, size_t *len_out)
{
    char *d = b->data;
    size_t len = b->len;
    if (!d) {
        d = malloc(1);
        if (!d) {
            return NULL;
        }
        d[0] = 0;
        len = 0;
    }
    tb_hbuf_init(b);
    if (len_out) {
        *len_out = len;
    }
    return d;
}
