/* tb_buf: the SDK's growable byte buffer (see tb_buf.h). */
#include "tb_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_utf8.h"

void tb_buf_init(struct tb_buf *b)
{
    memset(b, 0, sizeof(*b));
}

int tb_buf_reserve(struct tb_buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len - 1) {
        return TB_ENOMEM;
    }
    if (b->len + extra + 1 <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) {
            return TB_ENOMEM;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        return TB_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int tb_buf_append(struct tb_buf *b, const void *data, size_t len)
{
    if (tb_buf_reserve(b, len) != 0) {
        return TB_ENOMEM;
    }
    if (len) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = 0;
    return 0;
}

int tb_buf_puts(struct tb_buf *b, const char *s)
{
    return tb_buf_append(b, s, strlen(s));
}

int tb_buf_append_cp(struct tb_buf *b, uint32_t cp)
{
    char u[4];
    size_t n = tb_utf8_encode(cp, u);
    return n ? tb_buf_append(b, u, n) : TB_EINVAL;
}

int tb_buf_put_u64(struct tb_buf *b, uint64_t v)
{
    char d[20]; /* 18446744073709551615 */
    size_t n = sizeof(d);
    do {
        d[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return tb_buf_append(b, d + n, sizeof(d) - n);
}

int tb_buf_put_i64(struct tb_buf *b, int64_t v)
{
    if (v >= 0) {
        return tb_buf_put_u64(b, (uint64_t)v);
    }
    if (tb_buf_reserve(b, 21) != 0) {
        return TB_ENOMEM;
    }
    tb_buf_append(b, "-", 1);
    return tb_buf_put_u64(b, 0 - (uint64_t)v); /* INT64_MIN included */
}

int tb_buf_vprintf(struct tb_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return TB_EINVAL;
    }
    if ((size_t)n < sizeof(small)) {
        return tb_buf_append(b, small, (size_t)n);
    }
    if (tb_buf_reserve(b, (size_t)n) != 0) {
        return TB_ENOMEM;
    }
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int tb_buf_printf(struct tb_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tb_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int tb_buf_read_file(struct tb_buf *b, FILE *f)
{
    for (;;) {
        if (tb_buf_reserve(b, b->cap > 65536 ? b->cap / 2 : 65536) != 0) {
            return TB_ENOMEM;
        }
        size_t room = b->cap - b->len - 1;
        size_t got = fread(b->data + b->len, 1, room, f);
        b->len += got;
        b->data[b->len] = 0;
        if (got < room) {
            return ferror(f) ? TB_EIO : 0;
        }
    }
}

void tb_buf_clear(struct tb_buf *b)
{
    b->len = 0;
    if (b->cap > 0) {
        b->data[0] = 0;
    }
}

char *tb_buf_steal(struct tb_buf *b, size_t *len)
{
    char *p = (char *)b->data;
    size_t n = b->len;
    if (!p) {
        p = calloc(1, 1);
        n = 0;
    }
    tb_buf_init(b);
    if (len) {
        *len = p ? n : 0;
    }
    return p;
}

void tb_buf_free(struct tb_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}
