/* tb_pp_text: ids to text with stop strings, for one request (see tb_pp_text.h). */
#include "tb_pp_text.h"

#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"
#include "tb_detok.h"
#include "tb_errors.h"
#include "tb_stop_matcher.h"

struct tb_pp_text {
    const tb_tokenizer_t *tok;
    int32_t *keep; /* special ids whose text comes out */
    size_t n_keep;
    tb_detok_t *detok;
    tb_stop_matcher_t *stop;
    bool stopped;
    struct tb_buf text; /* released text not yet taken, NUL-terminated */
    bool taken;         /* the next push starts a new text */
};

int tb_pp_text_new(const tb_tokenizer_t *tok, const int32_t *prompt, size_t n_prompt,
                   const char *const *stops, size_t n_stops, tb_pp_text_t **out)
{
    *out = NULL;
    tb_pp_text_t *t = calloc(1, sizeof(*t));
    if (!t) {
        return TB_ENOMEM;
    }
    t->tok = tok;
    int rc = tb_detok_new(tok, true, &t->detok);
    if (rc == 0) {
        rc = tb_detok_set_prefix(t->detok, prompt, n_prompt);
    }
    if (rc == 0) {
        rc = tb_stop_matcher_new(stops, n_stops, &t->stop);
    }
    if (rc != 0) {
        tb_pp_text_destroy(&t);
        return rc;
    }
    *out = t;
    return 0;
}

void tb_pp_text_destroy(tb_pp_text_t **t_p)
{
    if (!t_p || !*t_p) {
        return;
    }
    tb_pp_text_t *t = *t_p;
    tb_detok_destroy(&t->detok);
    tb_stop_matcher_destroy(&t->stop);
    tb_buf_free(&t->text);
    free(t->keep);
    free(t);
    *t_p = NULL;
}

/* A push after a take starts a new text. */
static void s_begin(tb_pp_text_t *t)
{
    if (t->taken) {
        tb_buf_clear(&t->text);
        t->taken = false;
    }
}

/* Text through the stop matcher into the buffer: 1 stopped, 0, TB_ENOMEM. */
static int s_match(tb_pp_text_t *t, const char *s, size_t n)
{
    const char *out;
    size_t out_len;
    int stopped = tb_stop_matcher_push(t->stop, s, n, &out, &out_len);
    if (stopped < 0) {
        return stopped;
    }
    int rc = tb_buf_append(&t->text, out, out_len);
    if (rc != 0) {
        return rc;
    }
    t->stopped = stopped == 1;
    return stopped;
}

int tb_pp_text_keep_special(tb_pp_text_t *t, const int32_t *ids, size_t n)
{
    int32_t *k = n ? malloc(n * sizeof(*k)) : NULL;
    if (n && !k) {
        return TB_ENOMEM;
    }
    if (n) {
        memcpy(k, ids, n * sizeof(*k));
    }
    free(t->keep);
    t->keep = k;
    t->n_keep = n;
    return 0;
}

/* One id's text: a kept special token's piece as it is, anything else through the detokenizer
 * (which leaves special tokens out). */
static int s_detok(tb_pp_text_t *t, int32_t id, const char **s, size_t *len)
{
    for (size_t k = 0; k < t->n_keep; k++) {
        if (t->keep[k] == id) {
            *s = tb_tokenizer_piece(t->tok, id, len);
            return *s ? 0 : tb_detok_push(t->detok, id, s, len);
        }
    }
    return tb_detok_push(t->detok, id, s, len);
}

int tb_pp_text_push(tb_pp_text_t *t, const int32_t *ids, size_t n, size_t *used)
{
    *used = 0;
    s_begin(t);
    for (size_t i = 0; i < n && !t->stopped; i++) {
        const char *s;
        size_t len;
        int rc = s_detok(t, ids[i], &s, &len);
        if (rc == 0) {
            rc = s_match(t, s, len);
        }
        if (rc < 0) {
            return rc;
        }
        (*used)++;
    }
    return t->stopped ? 1 : 0;
}

int tb_pp_text_finish(tb_pp_text_t *t)
{
    s_begin(t);
    if (t->stopped) {
        return 1;
    }
    const char *s;
    size_t len;
    int rc = tb_detok_flush(t->detok, &s, &len);
    if (rc == 0 && len) {
        rc = s_match(t, s, len);
    }
    if (rc < 0) {
        return rc;
    }
    if (t->stopped) {
        return 1;
    }
    tb_stop_matcher_flush(t->stop, &s, &len);
    return tb_buf_append(&t->text, s, len);
}

bool tb_pp_text_stopped(const tb_pp_text_t *t)
{
    return t->stopped;
}

const char *tb_pp_text_take(tb_pp_text_t *t, size_t *len)
{
    const char *out = !t->taken && t->text.len ? (const char *)t->text.data : NULL;
    *len = out ? t->text.len : 0;
    t->taken = true;
    return out;
}

int tb_pp_token_text(const tb_tokenizer_t *tok, int32_t id, char **out)
{
    *out = NULL;
    tb_detok_t *d = NULL;
    const char *s, *tail = NULL;
    size_t len = 0, tail_len = 0;
    int rc = tb_detok_new(tok, false, &d);
    if (rc == 0) {
        rc = tb_detok_set_continuation(d);
    }
    if (rc == 0) {
        rc = tb_detok_push(d, id, &s, &len);
    }
    struct tb_buf text = {0};
    if (rc == 0) {
        rc = tb_buf_append(&text, s, len);
    }
    if (rc == 0) {
        rc = tb_detok_flush(d, &tail, &tail_len);
    }
    if (rc == 0) {
        rc = tb_buf_append(&text, tail, tail_len);
    }
    if (rc == 0) {
        *out = tb_buf_steal(&text, NULL);
        rc = *out ? 0 : TB_ENOMEM;
    }
    tb_buf_free(&text);
    tb_detok_destroy(&d);
    return rc;
}
