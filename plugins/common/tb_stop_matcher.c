/* tb_stop_matcher: stop strings across token boundaries (see tb_stop_matcher.h). */
#include "tb_stop_matcher.h"

#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"

struct tb_stop_matcher {
    char **stops;
    size_t *lens;
    size_t n;
    size_t max_len;
    char *held; /* pending text: released later or dropped */
    size_t held_len, held_cap;
    char *out; /* what the last call released */
    size_t out_cap;
    bool stopped;
    int which;
};

int tb_stop_matcher_new(const char *const *stops, size_t n, tb_stop_matcher_t **out)
{
    tb_stop_matcher_t *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m) {
        return TB_ENOMEM;
    }
    m->which = -1;
    m->stops = calloc(n + 1, sizeof(char *));
    m->lens = calloc(n + 1, sizeof(size_t));
    if (!m->stops || !m->lens) {
        tb_stop_matcher_destroy(&m);
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = stops[i] ? strlen(stops[i]) : 0;
        m->stops[i] = strdup(stops[i] ? stops[i] : "");
        if (!m->stops[i]) {
            m->n = i;
            tb_stop_matcher_destroy(&m);
            return TB_ENOMEM;
        }
        m->lens[i] = len;
        if (len > m->max_len) {
            m->max_len = len;
        }
    }
    m->n = n;
    *out = m;
    return 0;
}

void tb_stop_matcher_destroy(tb_stop_matcher_t **m_p)
{
    if (!m_p || !*m_p) {
        return;
    }
    tb_stop_matcher_t *m = *m_p;
    for (size_t i = 0; i < m->n; i++) {
        free(m->stops[i]);
    }
    free(m->stops);
    free(m->lens);
    free(m->held);
    free(m->out);
    free(m);
    *m_p = NULL;
}

static int s_reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        c *= 2;
    }
    char *p = realloc(*buf, c);
    if (!p) {
        return TB_ENOMEM;
    }
    *buf = p;
    *cap = c;
    return 0;
}

/* Releases held[0..k): copies it to the output buffer and shifts the rest down. */
static int s_release(tb_stop_matcher_t *m, size_t k, const char **out, size_t *out_len)
{
    if (s_reserve(&m->out, &m->out_cap, k + 1) != 0) {
        return TB_ENOMEM;
    }
    memcpy(m->out, m->held, k);
    m->out[k] = 0;
    memmove(m->held, m->held + k, m->held_len - k);
    m->held_len -= k;
    *out = m->out;
    *out_len = k;
    return 0;
}

int tb_stop_matcher_push(tb_stop_matcher_t *m, const char *text, size_t len, const char **out,
                         size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (m->stopped) {
        return 1;
    }
    if (s_reserve(&m->held, &m->held_cap, m->held_len + len + 1) != 0) {
        return TB_ENOMEM;
    }
    memcpy(m->held + m->held_len, text, len);
    m->held_len += len;
    m->held[m->held_len] = 0;
    if (m->max_len == 0) {
        return s_release(m, m->held_len, out, out_len);
    }
    /* The earliest complete stop string wins; a search only needs to start where a previous
     * one could not have ended, but held text is short (< longest stop + this piece). */
    size_t best = (size_t)-1;
    for (size_t i = 0; i < m->n; i++) {
        if (m->lens[i] == 0 || m->lens[i] > m->held_len) {
            continue;
        }
        const char *p = memmem(m->held, m->held_len, m->stops[i], m->lens[i]);
        if (p && (size_t)(p - m->held) < best) {
            best = (size_t)(p - m->held);
            m->which = (int)i;
        }
    }
    if (best != (size_t)-1) {
        m->stopped = true;
        int rc = s_release(m, best, out, out_len);
        m->held_len = 0;
        return rc == 0 ? 1 : rc;
    }
    /* Hold back the longest tail that is a proper prefix of some stop string. */
    size_t keep = 0;
    size_t limit = m->max_len - 1 < m->held_len ? m->max_len - 1 : m->held_len;
    for (size_t t = limit; t > 0 && keep == 0; t--) {
        const char *tail = m->held + m->held_len - t;
        for (size_t i = 0; i < m->n; i++) {
            if (m->lens[i] > t && memcmp(m->stops[i], tail, t) == 0) {
                keep = t;
                break;
            }
        }
    }
    return s_release(m, m->held_len - keep, out, out_len);
}

void tb_stop_matcher_flush(tb_stop_matcher_t *m, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (m->stopped) {
        return;
    }
    if (s_release(m, m->held_len, out, out_len) != 0) {
        *out = "";
        *out_len = 0;
    }
}

int tb_stop_matcher_which(const tb_stop_matcher_t *m)
{
    return m->which;
}
