/* tb_mock_gen: the mock engine's deterministic sequences (see tb_mock_gen.h). */
#include "tb_mock_gen.h"

#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"
#include "tb_errors.h"

/* Every word carries its leading space; the first token of a sequence drops it. */
static const char *const s_vocab[] = {
    " lorem",       " ipsum",         " dolor",      " sit",      " amet",
    " consectetur", " adipiscing",    " elit",       " sed",      " do",
    " eiusmod",     " tempor",        " incididunt", " ut",       " labore",
    " et",          " dolore",        " magna",      " aliqua",   " enim",
    " ad",          " minim",         " veniam",     " quis",     " nostrud",
    " ullamco",     " laboris",       " nisi",       " aliquip",  " ex",
    " ea",          " commodo",       " duis",       " aute",     " irure",
    " in",          " reprehenderit", " voluptate",  " velit",    " esse",
    " cillum",      " fugiat",        " nulla",      " pariatur", " excepteur",
    " sint",        " occaecat",      " cupidatat",  " non",      " proident",
    " sunt",        " culpa",         " qui",        " officia",  " deserunt",
    " mollit",      " anim",          " id",         " est",      " laborum",
    " turbine",     " token",         " stream",     " model"};
#define VOCAB_N (sizeof(s_vocab) / sizeof(s_vocab[0]))
#define VOCAB_BASE 1000 /* text-mode token id of word 0 */
#define MAX_TOP 20

struct tb_mock_seq {
    struct tb_mock_seq_config cfg;
    char **stop;
    size_t max_stop_len;
    int32_t *stop_ids;
    uint64_t rng;
    int64_t generated;
    bool finished;
    const char *finish_reason;
    bool logprobs;

    struct tb_buf text; /* every generated word (text mode) */
    size_t sent;        /* bytes of `text` handed out */

    int32_t *ids; /* this advance's ids */
    struct tb_msg_token_logprob *lps;
    struct tb_msg_top_logprob *tops;
    size_t cap_step;
};

uint64_t tb_mock_hash(const void *data, size_t len, uint64_t h)
{
    const unsigned char *p = data;
    if (h == 0) {
        h = 0xcbf29ce484222325ULL;
    }
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }
    return h;
}

int64_t tb_mock_count_words(const char *text)
{
    int64_t n = 0;
    bool in_word = false;
    for (const char *p = text ? text : ""; *p; p++) {
        bool space = *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r';
        if (!space && !in_word) {
            n++;
        }
        in_word = !space;
    }
    return n;
}

static uint64_t s_next(uint64_t *state)
{
    /* splitmix64: good enough and fully determined by the seed */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

tb_mock_seq_t *tb_mock_seq_new(const struct tb_mock_seq_config *cfg, bool want_logprobs)
{
    tb_mock_seq_t *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->cfg = *cfg;
    s->cfg.stop = NULL;
    s->cfg.stop_ids = NULL;
    s->rng = cfg->seed;
    s->logprobs = want_logprobs;
    if (s->cfg.top_logprobs > MAX_TOP) {
        s->cfg.top_logprobs = MAX_TOP;
    }
    if (s->cfg.token_id_max < s->cfg.token_id_min) {
        s->cfg.token_id_max = s->cfg.token_id_min;
    }
    if (!cfg->tokens_mode && cfg->n_stop > 0) {
        s->stop = calloc(cfg->n_stop, sizeof(char *));
        if (!s->stop) {
            goto fail;
        }
        for (size_t i = 0; i < cfg->n_stop; i++) {
            s->stop[i] = strdup(cfg->stop[i] ? cfg->stop[i] : "");
            if (!s->stop[i]) {
                s->cfg.n_stop = i;
                goto fail;
            }
            size_t l = strlen(s->stop[i]);
            if (l > s->max_stop_len) {
                s->max_stop_len = l;
            }
        }
    } else {
        s->cfg.n_stop = 0;
    }
    if (cfg->n_stop_ids > 0) {
        s->stop_ids = malloc(cfg->n_stop_ids * sizeof(int32_t));
        if (!s->stop_ids) {
            goto fail;
        }
        memcpy(s->stop_ids, cfg->stop_ids, cfg->n_stop_ids * sizeof(int32_t));
    }
    return s;
fail:
    tb_mock_seq_destroy(&s);
    return NULL;
}

void tb_mock_seq_destroy(tb_mock_seq_t **s_p)
{
    if (!s_p || !*s_p) {
        return;
    }
    tb_mock_seq_t *s = *s_p;
    for (size_t i = 0; s->stop && i < s->cfg.n_stop; i++) {
        free(s->stop[i]);
    }
    free(s->stop);
    free(s->stop_ids);
    tb_buf_free(&s->text);
    free(s->ids);
    free(s->lps);
    free(s->tops);
    free(s);
    *s_p = NULL;
}

int64_t tb_mock_seq_generated(const tb_mock_seq_t *s)
{
    return s->generated;
}

bool tb_mock_seq_finished(const tb_mock_seq_t *s)
{
    return s->finished;
}

static int s_reserve_step(tb_mock_seq_t *s, size_t k)
{
    if (k <= s->cap_step) {
        return 0;
    }
    int32_t *ids = realloc(s->ids, k * sizeof(*ids));
    if (!ids) {
        return TB_ENOMEM;
    }
    s->ids = ids;
    if (s->logprobs) {
        struct tb_msg_token_logprob *lps = realloc(s->lps, k * sizeof(*lps));
        if (!lps) {
            return TB_ENOMEM;
        }
        s->lps = lps;
        struct tb_msg_top_logprob *tops = realloc(s->tops, k * MAX_TOP * sizeof(*tops));
        if (!tops) {
            return TB_ENOMEM;
        }
        s->tops = tops;
    }
    s->cap_step = k;
    return 0;
}

/* Earliest position in text[from..len) where a stop string starts and is complete, or -1. */
static long s_find_stop(const tb_mock_seq_t *s, size_t from)
{
    long best = -1;
    for (size_t i = 0; i < s->cfg.n_stop; i++) {
        size_t sl = strlen(s->stop[i]);
        if (sl == 0 || s->text.len < sl) {
            continue;
        }
        for (size_t p = from; p + sl <= s->text.len; p++) {
            if (memcmp(s->text.data + p, s->stop[i], sl) == 0) {
                if (best < 0 || (long)p < best) {
                    best = (long)p;
                }
                break;
            }
        }
    }
    return best;
}

/* Length of the longest suffix of text[from..len) that is a proper prefix of a stop string. */
static size_t s_holdback(const tb_mock_seq_t *s, size_t from)
{
    size_t avail = s->text.len - from;
    size_t best = 0;
    for (size_t i = 0; i < s->cfg.n_stop; i++) {
        size_t sl = strlen(s->stop[i]);
        for (size_t n = sl > 0 ? sl - 1 : 0; n > best; n--) {
            if (n <= avail && memcmp(s->text.data + s->text.len - n, s->stop[i], n) == 0) {
                best = n;
                break;
            }
        }
    }
    return best;
}

static bool s_is_stop_id(const tb_mock_seq_t *s, int32_t id)
{
    for (size_t i = 0; i < s->cfg.n_stop_ids; i++) {
        if (s->stop_ids[i] == id) {
            return true;
        }
    }
    return false;
}

static void s_logprob(tb_mock_seq_t *s, size_t at, int32_t id, size_t word, bool first)
{
    struct tb_msg_token_logprob *lp = &s->lps[at];
    uint64_t r = s_next(&s->rng);
    memset(lp, 0, sizeof(*lp));
    lp->token_id = id;
    lp->logprob = -0.01 - (double)(r % 2000) / 1000.0;
    lp->text = s->cfg.tokens_mode ? NULL : first ? s_vocab[word] + 1 : s_vocab[word];
    if (lp->text) {
        lp->bytes = (const uint8_t *)lp->text; /* the mock's words are ASCII */
        lp->bytes_len = strlen(lp->text);
    }
    size_t n = (size_t)s->cfg.top_logprobs;
    struct tb_msg_top_logprob *tops = &s->tops[at * MAX_TOP];
    for (size_t k = 0; k < n; k++) {
        size_t w = (word + k) % VOCAB_N;
        tops[k].token_id = k == 0 ? id
                                  : (s->cfg.tokens_mode ? id + (int32_t)k
                                                        : (int32_t)(VOCAB_BASE + w));
        tops[k].logprob = lp->logprob - (double)k * 0.5;
        tops[k].text = s->cfg.tokens_mode ? NULL : s_vocab[w] + (first ? 1 : 0);
    }
    lp->top = tops;
    lp->top_count = n;
}

int tb_mock_seq_advance(tb_mock_seq_t *s, size_t k, struct tb_mock_step *out)
{
    memset(out, 0, sizeof(*out));
    if (s->finished) {
        out->finished = true;
        out->finish_reason = s->finish_reason;
        return 0;
    }
    if (k == 0) {
        k = 1;
    }
    if (s_reserve_step(s, k) != 0) {
        return TB_ENOMEM;
    }
    size_t n = 0;
    while (n < k && !s->finished) {
        uint64_t r = s_next(&s->rng);
        int32_t id;
        size_t word = (size_t)(r % VOCAB_N);
        if (s->cfg.script && s->generated >= s->cfg.natural_length) {
            s->finished = true; /* the scripted answer is all there is */
            s->finish_reason = "stop";
            break;
        }
        if (s->cfg.tokens_mode && s->cfg.script) {
            id = s->cfg.script[s->generated];
        } else if (s->cfg.tokens_mode) {
            uint64_t span = (uint64_t)(s->cfg.token_id_max - s->cfg.token_id_min) + 1;
            id = s->cfg.token_id_min + (int32_t)(r % span);
        } else {
            id = (int32_t)(VOCAB_BASE + word);
        }
        bool first = s->generated == 0;
        s->generated++;
        if (s_is_stop_id(s, id)) {
            s->finished = true;
            s->finish_reason = "stop";
            break;
        }
        if (s->logprobs) {
            s_logprob(s, n, id, word, first);
        }
        s->ids[n++] = id;
        if (!s->cfg.tokens_mode) {
            const char *w = first ? s_vocab[word] + 1 : s_vocab[word];
            if (tb_buf_puts(&s->text, w) != 0) {
                return TB_ENOMEM;
            }
            long at = s->cfg.n_stop ? s_find_stop(s, s->sent) : -1;
            if (at >= 0) {
                s->text.len = (size_t)at;
                s->text.data[at] = 0;
                s->finished = true;
                s->finish_reason = "stop";
                break;
            }
        }
        if (!s->cfg.ignore_eos && s->generated >= s->cfg.natural_length &&
            s->generated >= s->cfg.min_tokens) {
            s->finished = true;
            s->finish_reason = "stop";
        } else if (s->cfg.max_tokens > 0 && s->generated >= s->cfg.max_tokens) {
            s->finished = true;
            s->finish_reason = "length";
        }
    }
    out->ids = s->ids;
    out->n_ids = n;
    out->logprobs = s->logprobs && n ? s->lps : NULL;
    size_t hold = s->finished ? 0 : s_holdback(s, s->sent);
    size_t upto = s->text.len - hold;
    if (upto > s->sent) {
        out->text = (const char *)s->text.data + s->sent;
        out->text_len = upto - s->sent;
        s->sent = upto;
    }
    out->finished = s->finished;
    out->finish_reason = s->finish_reason;
    return 0;
}
