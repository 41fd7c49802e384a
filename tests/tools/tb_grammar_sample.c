/*
 * tb_grammar_sample - random constrained sampling over a real vocabulary, for the structured
 * output tests (tests/integration/test_grammar.py).
 *
 *   tb_grammar_sample VOCAB [--samples N] [--max-tokens M] [--check-every K] [--seed S]
 *
 * VOCAB is a .gguf file, a tokenizer.json or a folder holding one.  Reads one JSON request per
 * line on stdin: {"schema": S}, {"gbnf": TEXT}, {"json_object": true} or {"tools": [...]}; and
 * writes one JSON line per request: {"error": MESSAGE, "code": N} when the grammar is refused,
 * else {"outputs": [HEX...], "ended": [BOOL...], "checked": C, "mismatches": X, "gbnf": TEXT}:
 * N sampled texts (hex of their bytes), whether each ended with EOS within M tokens, and how
 * many of the C steps compared (every K-th) had a fast mask different from the brute-force one.
 *
 * Sampling picks uniformly among the allowed tokens at first, then more and more often the
 * allowed token that best closes a JSON text (EOS, then '"', '}', ']', digits...), so that most
 * samples end within M tokens.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tb_grammar.h"
#include "tb_grammar_cache.h"
#include "tb_grammar_matcher.h"
#include "tb_json_schema.h"
#include "tb_token_trie.h"
#include "tb_tokenizer.h"

struct opts {
    int samples, max_tokens, check_every;
    uint64_t seed;
};

struct ctx {
    const tb_token_trie_t *trie;
    int32_t closer[16]; /* single-byte tokens in closing preference order, -1 when absent */
    uint32_t *mask, *slow;
    size_t words;
    uint64_t rng;
    size_t checked, mismatches;
};

static uint64_t s_rand(struct ctx *c)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

static bool s_allowed(const uint32_t *mask, int32_t id)
{
    return id >= 0 && ((mask[id >> 5] >> (id & 31)) & 1);
}

/* The closing choice: an allowed EOS, else the first allowed closer, else -1. */
static int32_t s_closing(const struct ctx *c, const uint32_t *mask)
{
    const int32_t *eos = NULL;
    size_t n = tb_token_trie_eos(c->trie, &eos);
    for (size_t i = 0; i < n; i++) {
        if (s_allowed(mask, eos[i])) {
            return eos[i];
        }
    }
    for (size_t i = 0; i < 16; i++) {
        if (s_allowed(mask, c->closer[i])) {
            return c->closer[i];
        }
    }
    return -1;
}

static int32_t s_uniform(struct ctx *c, const uint32_t *mask)
{
    size_t count = 0;
    for (size_t w = 0; w < c->words; w++) {
        count += (size_t)__builtin_popcount(mask[w]);
    }
    if (count == 0) {
        return -1;
    }
    size_t k = s_rand(c) % count;
    for (size_t w = 0; w < c->words; w++) {
        size_t pc = (size_t)__builtin_popcount(mask[w]);
        if (k < pc) {
            uint32_t m = mask[w];
            for (; k > 0; k--) {
                m &= m - 1;
            }
            return (int32_t)(w * 32 + (size_t)__builtin_ctz(m));
        }
        k -= pc;
    }
    return -1;
}

/* One sample: appends its bytes as hex to `hex`; returns whether it ended with EOS. */
static int s_sample(struct ctx *c, const tb_grammar_cache_t *cache, const struct opts *o,
                    json_t *hex, bool *ended)
{
    tb_grammar_matcher_t *m = NULL;
    int rc = tb_grammar_matcher_new(cache, &m);
    size_t cap = 1 << 16, n = 0;
    char *h = malloc(cap);
    *ended = false;
    for (int step = 0; rc == 0 && h && step < o->max_tokens; step++) {
        rc = tb_grammar_matcher_fill_mask(m, c->mask);
        if (rc == 0 && o->check_every > 0 && step % o->check_every == 0) {
            rc = tb_grammar_matcher_fill_mask_slow(m, c->slow);
            c->checked++;
            c->mismatches += memcmp(c->mask, c->slow, c->words * sizeof(uint32_t)) != 0;
        }
        /* the share of closing picks grows from 0 to 1 over the token budget */
        bool close = (int)(s_rand(c) % (uint64_t)o->max_tokens) < 2 * step;
        int32_t id = close ? s_closing(c, c->mask) : -1;
        id = id >= 0 ? id : s_uniform(c, c->mask);
        if (rc != 0 || id < 0) {
            break;
        }
        rc = tb_grammar_matcher_accept(m, id);
        if (rc == 0 && tb_grammar_matcher_is_done(m)) {
            *ended = true;
            break;
        }
        size_t len = 0;
        const uint8_t *b = tb_token_trie_bytes(c->trie, id, &len);
        for (size_t i = 0; b && i < len && n + 3 < cap; i++) {
            n += (size_t)snprintf(h + n, cap - n, "%02x", b[i]);
        }
    }
    if (h) {
        h[n] = 0;
        json_array_append_new(hex, json_string(h));
    }
    free(h);
    tb_grammar_matcher_destroy(&m);
    return h ? rc : -12;
}

/* The GBNF of a request line, or an error reply. */
static int s_gbnf(const json_t *req, char **gbnf, size_t *len, char *err, size_t err_len)
{
    const json_t *v;
    if ((v = json_object_get(req, "schema"))) {
        return tb_json_schema_to_gbnf(v, gbnf, len, err, err_len);
    }
    if ((v = json_object_get(req, "tools"))) {
        return tb_json_schema_tools_gbnf(v, gbnf, len, err, err_len);
    }
    if ((v = json_object_get(req, "gbnf")) && json_is_string(v)) {
        *gbnf = strdup(json_string_value(v));
        *len = strlen(json_string_value(v));
        return *gbnf ? 0 : -12;
    }
    return tb_json_schema_object_gbnf(gbnf, len);
}

static json_t *s_request(struct ctx *c, const json_t *req, const struct opts *o)
{
    char err[512] = "", *gbnf = NULL;
    size_t len = 0;
    tb_grammar_t *g = NULL;
    tb_grammar_cache_t *cache = NULL;
    int rc = s_gbnf(req, &gbnf, &len, err, sizeof(err));
    rc = rc != 0 ? rc : tb_grammar_parse_gbnf(gbnf, len, &g, err, sizeof(err));
    rc = rc != 0 ? rc : tb_grammar_cache_new(g, c->trie, &cache);
    json_t *out = json_object(), *hex = json_array(), *ended = json_array();
    c->checked = c->mismatches = 0;
    for (int i = 0; rc == 0 && i < o->samples; i++) {
        bool e = false;
        rc = s_sample(c, cache, o, hex, &e);
        json_array_append_new(ended, json_boolean(e));
    }
    if (rc != 0) {
        json_object_set_new(out, "error", json_string(err));
        json_object_set_new(out, "code", json_integer(rc));
    } else {
        json_object_set_new(out, "outputs", hex);
        json_object_set_new(out, "ended", ended);
        json_object_set_new(out, "checked", json_integer((json_int_t)c->checked));
        json_object_set_new(out, "mismatches", json_integer((json_int_t)c->mismatches));
        json_object_set_new(out, "gbnf", json_string(gbnf));
        hex = ended = NULL;
    }
    json_decref(hex);
    json_decref(ended);
    tb_grammar_cache_destroy(&cache);
    tb_grammar_destroy(&g);
    free(gbnf);
    return out;
}

static int s_parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){4, 300, 8, 1};
    for (int i = 2; i + 1 < argc; i += 2) {
        long v = strtol(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--samples") == 0) {
            o->samples = (int)v;
        } else if (strcmp(argv[i], "--max-tokens") == 0) {
            o->max_tokens = v > 0 ? (int)v : 1;
        } else if (strcmp(argv[i], "--check-every") == 0) {
            o->check_every = (int)v;
        } else if (strcmp(argv[i], "--seed") == 0) {
            o->seed = (uint64_t)v | 1;
        } else {
            return -1;
        }
    }
    return argc >= 2 && argc % 2 == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (s_parse_opts(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: tb_grammar_sample VOCAB [--samples N] [--max-tokens M] "
                        "[--check-every K] [--seed S] < requests.jsonl\n");
        return 2;
    }
    char err[512] = "";
    tb_tokenizer_t *tok = NULL;
    tb_token_trie_t *trie = NULL;
    if (tb_tokenizer_load(argv[1], &tok, err, sizeof(err)) != 0 ||
        tb_token_trie_from_tokenizer(tok, &trie) != 0) {
        fprintf(stderr, "tb_grammar_sample: cannot load '%s': %s\n", argv[1], err);
        return 1;
    }
    struct ctx c = {.trie = trie, .rng = o.seed * 0x9E3779B97F4A7C15ull | 1};
    c.words = (tb_token_trie_vocab_size(trie) + 31) / 32;
    c.mask = calloc(c.words, sizeof(uint32_t));
    c.slow = calloc(c.words, sizeof(uint32_t));
    const char *closers = "\"}].01tfn-{[a,: ";
    for (size_t i = 0; i < 16; i++) {
        c.closer[i] = tb_tokenizer_find(tok, closers + i, 1); /* single-byte pieces */
        size_t len = 0;
        const uint8_t *b = tb_token_trie_bytes(trie, c.closer[i], &len);
        c.closer[i] = b && len == 1 && b[0] == (uint8_t)closers[i] ? c.closer[i] : -1;
    }
    char line[1 << 16];
    while (c.mask && c.slow && fgets(line, sizeof(line), stdin)) {
        json_error_t je;
        json_t *req = json_loads(line, 0, &je);
        json_t *out = req ? s_request(&c, req, &o) : json_pack("{ss}", "error", je.text);
        char *s = json_dumps(out, JSON_COMPACT);
        printf("%s\n", s ? s : "{\"error\":\"out of memory\"}");
        fflush(stdout);
        free(s);
        json_decref(out);
        json_decref(req);
    }
    free(c.mask);
    free(c.slow);
    tb_token_trie_destroy(&trie);
    tb_tokenizer_destroy(&tok);
    return 0;
}
