/*
 * tb_detok.c - streaming detokenizer over the tokenizer's decoder tables: per-token bytes, a
 * small hold-back buffer for incomplete UTF-8, and the start-of-text rules (first-token piece
 * variant, leading strip, separator for decoder-less tokenizers).
 */
#include "tb_detok.h"

#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"
#include "tb_errors.h"
#include "tb_tok_buf.h"
#include "tb_tok_utf8.h"
#include "tb_tokenizer_impl.h"

#define REPLACEMENT "\xEF\xBF\xBD"

struct tb_detok {
    const tb_tokenizer_t *tok;
    bool skip_special;
    bool started;      /* a token has been decoded */
    size_t strip_left; /* leading strip characters still to drop */
    bool emitted;      /* a character has been output */
    uint8_t hold[4];   /* an incomplete character */
    size_t n_hold;
    struct tb_buf out;
};

static void s_reset(struct tb_detok *d)
{
    d->started = false;
    d->strip_left = d->tok->strip_n;
    d->emitted = false;
    d->n_hold = 0;
}

int tb_detok_new(const tb_tokenizer_t *tok, bool skip_special, tb_detok_t **out)
{
    struct tb_detok *d = calloc(1, sizeof(*d));
    *out = NULL;
    if (!d) {
        return TB_ENOMEM;
    }
    d->tok = tok;
    d->skip_special = skip_special;
    tb_buf_init(&d->out);
    s_reset(d);
    *out = d;
    return 0;
}

int tb_detok_set_continuation(tb_detok_t *d)
{
    if (d->started || d->emitted || d->n_hold > 0) {
        return TB_EINVAL;
    }
    d->started = true;
    d->strip_left = 0;
    d->emitted = true;
    return 0;
}

int tb_detok_set_prefix(tb_detok_t *d, const int32_t *ids, size_t n)
{
    const char *text = NULL;
    size_t len = 0;
    if (d->started || d->emitted || d->n_hold > 0) {
        return TB_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = tb_detok_push(d, ids[i], &text, &len);
        if (rc < 0) {
            return rc;
        }
    }
    tb_buf_clear(&d->out);
    return 0;
}

void tb_detok_destroy(tb_detok_t **d_p)
{
    if (!d_p || !*d_p) {
        return;
    }
    tb_buf_free(&(*d_p)->out);
    free(*d_p);
    *d_p = NULL;
}

/* Outputs one decoded character (its bytes), applying the leading strip. */
static int s_put_char(struct tb_detok *d, const char *c, size_t n, uint32_t cp)
{
    if (d->strip_left > 0 && !d->emitted) {
        if (cp == d->tok->strip_cp) {
            d->strip_left--;
            return 0;
        }
        d->strip_left = 0;
    }
    d->emitted = true;
    return tb_buf_append(&d->out, c, n);
}

/* Feeds bytes through the UTF-8 assembler.  At `end`, an incomplete tail is flushed as
 * U+FFFD instead of being held. */
static int s_feed(struct tb_detok *d, const char *p, size_t n, bool end)
{
    int rc = 0;
    uint8_t buf[8];
    size_t i = 0;
    /* First complete a held character with the new bytes. */
    while (d->n_hold > 0 && rc == 0) {
        size_t k = 0;
        memcpy(buf, d->hold, d->n_hold);
        size_t have = d->n_hold;
        while (have < 4 && i + k < n) {
            buf[have++] = (uint8_t)p[i + k];
            k++;
        }
        uint32_t cp = 0;
        size_t cl = 0;
        tb_utf8_status_t st = tb_utf8_decode(buf, have, &cp, &cl);
        if (st == TB_UTF8_INCOMPLETE && !end) {
            /* All new bytes belong to the held character. */
            memcpy(d->hold, buf, have);
            d->n_hold = have;
            return 0;
        }
        if (st == TB_UTF8_OK) {
            rc = s_put_char(d, (const char *)buf, cl, cp);
        } else {
            rc = s_put_char(d, REPLACEMENT, 3, 0xFFFD);
        }
        /* cl bytes of buf were consumed: those beyond the held ones came from p. */
        size_t from_p = cl > d->n_hold ? cl - d->n_hold : 0;
        if (cl < d->n_hold) {
            /* Only part of the held bytes were consumed (an ill-formed prefix). */
            memmove(d->hold, d->hold + cl, d->n_hold - cl);
            d->n_hold -= cl;
        } else {
            d->n_hold = 0;
        }
        i += from_p;
        if (st == TB_UTF8_INCOMPLETE) {
            d->n_hold = 0; /* end of stream: the incomplete tail became U+FFFD */
        }
    }
    while (i < n && rc == 0) {
        uint8_t b = (uint8_t)p[i];
        if (b < 0x80) {
            rc = s_put_char(d, p + i, 1, b);
            i++;
            continue;
        }
        uint32_t cp = 0;
        size_t cl = 0;
        tb_utf8_status_t st = tb_utf8_decode((const uint8_t *)p + i, n - i, &cp, &cl);
        if (st == TB_UTF8_OK) {
            rc = s_put_char(d, p + i, cl, cp);
        } else if (st == TB_UTF8_INVALID) {
            rc = s_put_char(d, REPLACEMENT, 3, 0xFFFD);
        } else if (!end) {
            memcpy(d->hold, p + i, cl);
            d->n_hold = cl;
        } else {
            rc = s_put_char(d, REPLACEMENT, 3, 0xFFFD);
        }
        i += cl;
    }
    return rc;
}

int tb_detok_push(tb_detok_t *d, int32_t id, const char **text, size_t *len)
{
    int rc = 0;
    const tb_tokenizer_t *tok = d->tok;
    tb_buf_clear(&d->out);
    *text = "";
    *len = 0;
    if (id < 0 || (size_t)id >= tb_tok_vocab_size(tok->vocab) ||
        !tb_tok_vocab_piece(tok->vocab, id, NULL)) {
        return 0;
    }
    if (d->skip_special && (tok->attr[id] & TB_TOK_ATTR_SPECIAL)) {
        return 0;
    }
    bool first = !d->started;
    d->started = true;
    if (tok->dec_join && !first) {
        rc = s_feed(d, " ", 1, false);
    }
    size_t n = 0;
    const char *bytes = tb_tok_dec_bytes(tok, id, first, &n);
    if (rc == 0) {
        rc = s_feed(d, bytes, n, false);
    }
    if (rc == 0 && d->out.data) {
        *text = (char *)d->out.data;
        *len = d->out.len;
    }
    return rc;
}

int tb_detok_flush(tb_detok_t *d, const char **text, size_t *len)
{
    int rc = 0;
    tb_buf_clear(&d->out);
    *text = "";
    *len = 0;
    if (d->n_hold > 0) {
        rc = s_feed(d, "", 0, true);
    }
    if (rc == 0 && d->out.data) {
        *text = (char *)d->out.data;
        *len = d->out.len;
    }
    s_reset(d);
    return rc;
}
