/*
 * bench_grammar - the cost of a grammar-constrained decoding step (plugins/common
 * tb_grammar_matcher.h): time of one token mask (median, p99, max) over real vocabularies, for a
 * typical nested JSON schema, a flat strict schema and json_object; and the one-off cost of
 * compiling a grammar and building its mask cache.  Prints figures; asserts nothing.
 *
 *   bench_grammar [-n SAMPLES] [-m MAX_TOKENS] [-p PAD] VOCAB...
 *
 * Each VOCAB (.gguf, tokenizer.json or its folder) is measured alone; with several, also their
 * union (every distinct token byte string of all of them, one id each), and that union padded
 * to PAD ids (default 152064, Qwen2's vocabulary size; 0: none) with concatenations of two of
 * its tokens of up to 24 bytes, as a larger BPE vocabulary's merges would add: none of the
 * vocabularies at hand is Qwen-sized.
 *
 * Each step's mask is timed twice: computed (the matcher's memo of recent masks off), then as
 * the matcher runs by default (memo on: a step whose stacks repeat a recent one, as inside a
 * string, copies its mask).
 *
 * The token sequence is sampled at random among the allowed tokens with a growing preference
 * for tokens that close the JSON text, as tests/tools/tb_grammar_sample does, so steps inside
 * strings, numbers, keys and structure are all measured.  The matcher's advance by the chosen
 * token (accept) is timed too.
 *
 * For the nested schema it also times the engine's whole sampling step (tb_sampler_sample:
 * mask, masked copy of the row, sampling at temperature 1, advance) against the same step
 * without a grammar on the same random logits rows, alternating the two, as the decode loop
 * pays it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "tb_grammar.h"
#include "tb_grammar_cache.h"
#include "tb_grammar_matcher.h"
#include "tb_grammar_set.h"
#include "tb_json_schema.h"
#include "tb_sampler.h"
#include "tb_token_trie.h"
#include "tb_tokenizer.h"

static const char s_nested[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"customer\":{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":40},\"email\":{\"type\":\"string\"},"
    "\"vip\":{\"type\":\"boolean\"},\"address\":{\"type\":\"object\",\"properties\":{"
    "\"street\":{\"type\":\"string\"},\"city\":{\"type\":\"string\"},"
    "\"country\":{\"enum\":[\"FR\",\"DE\",\"US\",\"JP\"]}},"
    "\"required\":[\"street\",\"city\",\"country\"],\"additionalProperties\":false}},"
    "\"required\":[\"name\",\"address\"],\"additionalProperties\":false},"
    "\"items\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":5,\"items\":{\"type\":\"object\","
    "\"properties\":{\"sku\":{\"type\":\"string\"},\"qty\":{\"type\":\"integer\"},"
    "\"price\":{\"type\":\"number\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":"
    "\"string\"}}},\"required\":[\"sku\",\"qty\",\"price\"],\"additionalProperties\":false}},"
    "\"status\":{\"anyOf\":[{\"const\":\"open\"},{\"const\":\"closed\"},{\"type\":\"null\"}]},"
    "\"created\":{\"type\":\"string\",\"format\":\"date-time\"}},"
    "\"required\":[\"id\",\"customer\",\"items\",\"status\",\"created\"],"
    "\"additionalProperties\":false}";

static const char s_flat[] =
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"temperature\":{\"type\":\"number\"},\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},"
    "\"humid\":{\"type\":\"boolean\"}},"
    "\"required\":[\"city\",\"temperature\",\"unit\",\"humid\"],\"additionalProperties\":false}";

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t s_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Picks an allowed token: uniformly, or (with a probability growing with the step) EOS or the
 * first allowed single-byte closer. */
static int32_t s_pick(const tb_token_trie_t *t, const int32_t *closer, const uint32_t *mask,
                      size_t words, uint64_t *rng, int step, int max_tokens)
{
    if ((int)(s_rand(rng) % (uint64_t)max_tokens) < 2 * step) {
        const int32_t *eos = NULL;
        size_t n = tb_token_trie_eos(t, &eos);
        for (size_t i = 0; i < n + 16; i++) {
            int32_t id = i < n ? eos[i] : closer[i - n];
            if (id >= 0 && ((mask[id >> 5] >> (id & 31)) & 1)) {
                return id;
            }
        }
    }
    size_t count = 0;
    for (size_t w = 0; w < words; w++) {
        count += (size_t)__builtin_popcount(mask[w]);
    }
    size_t k = count ? s_rand(rng) % count : 0;
    for (size_t w = 0; w < words && count; w++) {
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

/* Single-byte tokens of the closers, -1 where the vocabulary has none. */
static void s_closers(const tb_token_trie_t *t, int32_t *closer)
{
    const char *c = "\"}].01tfn-{[a,: ";
    for (size_t i = 0; i < 16; i++) {
        closer[i] = -1;
    }
    for (size_t id = 0; id < tb_token_trie_vocab_size(t); id++) {
        size_t len = 0;
        const uint8_t *b = tb_token_trie_bytes(t, (int32_t)id, &len);
        const char *hit = b && len == 1 ? memchr(c, b[0], 16) : NULL;
        if (hit && closer[hit - c] < 0) {
            closer[hit - c] = (int32_t)id;
        }
    }
}

struct run {
    double *t, *t_off; /* mask times with the memo, and computed (memo off) */
    double *t_acc;     /* accept times */
    size_t n, cap, samples_ended;
};

static void s_sample(const tb_grammar_cache_t *cache, const tb_token_trie_t *trie,
                     const int32_t *closer, uint32_t *mask, int max_tokens, uint64_t *rng,
                     struct run *r)
{
    tb_grammar_matcher_t *m = NULL;
    if (tb_grammar_matcher_new(cache, &m) != 0) {
        return;
    }
    size_t words = tb_grammar_matcher_mask_words(m);
    for (int step = 0; step < max_tokens; step++) {
        tb_grammar_matcher_set_memo(m, false);
        double t0 = s_now();
        tb_grammar_matcher_fill_mask(m, mask);
        double t1 = s_now();
        tb_grammar_matcher_set_memo(m, true);
        tb_grammar_matcher_fill_mask(m, mask); /* from the memo when the stacks repeat */
        double t2 = s_now();
        if (r->n < r->cap) {
            r->t_off[r->n] = t1 - t0;
            r->t[r->n++] = t2 - t1;
        }
        int32_t id = s_pick(trie, closer, mask, words, rng, step, max_tokens);
        double t3 = s_now();
        if (id < 0 || tb_grammar_matcher_accept(m, id) != 0) {
            break;
        }
        if (r->n <= r->cap) {
            r->t_acc[r->n - 1] = s_now() - t3;
        }
        if (tb_grammar_matcher_is_done(m)) {
            r->samples_ended++;
            break;
        }
    }
    tb_grammar_matcher_destroy(&m);
}

static void s_bench(const char *label, const char *gbnf, size_t len, const tb_token_trie_t *trie,
                    int samples, int max_tokens)
{
    char err[256] = "";
    tb_grammar_t *g = NULL;
    tb_grammar_cache_t *cache = NULL;
    double t0 = s_now();
    if (tb_grammar_parse_gbnf(gbnf, len, &g, err, sizeof(err)) != 0) {
        printf("  %-12s grammar error: %s\n", label, err);
        return;
    }
    double t1 = s_now();
    if (tb_grammar_cache_new(g, trie, &cache) != 0) {
        printf("  %-12s cache error\n", label);
        tb_grammar_destroy(&g);
        return;
    }
    double t2 = s_now();
    struct tb_grammar_cache_stats st;
    tb_grammar_cache_stats(cache, &st);
    int32_t closer[16];
    s_closers(trie, closer);
    uint32_t *mask = calloc((tb_token_trie_vocab_size(trie) + 31) / 32, sizeof(uint32_t));
    struct run r = {.cap = (size_t)samples * (size_t)max_tokens};
    r.t = malloc(r.cap * sizeof(double));
    r.t_off = malloc(r.cap * sizeof(double));
    r.t_acc = calloc(r.cap, sizeof(double));
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int i = 0; mask && r.t && r.t_off && r.t_acc && i < samples; i++) {
        s_sample(cache, trie, closer, mask, max_tokens, &rng, &r);
    }
    for (int k = 0; k < 2 && r.n > 0; k++) {
        double *t = k == 0 ? r.t_off : r.t;
        qsort(t, r.n, sizeof(double), s_cmp_double);
        double sum = 0;
        for (size_t i = 0; i < r.n; i++) {
            sum += t[i];
        }
        printf("  %-12s mask median %7.1f us  p99 %7.1f us  max %8.1f us  mean %7.1f us  "
               "(%zu steps, %zu/%d samples ended)%s\n",
               k == 0 ? label : "", t[r.n / 2] * 1e6, t[r.n * 99 / 100] * 1e6, t[r.n - 1] * 1e6,
               sum / (double)r.n * 1e6, r.n, r.samples_ended, samples,
               k == 0 ? " memo off" : " memo on");
    }
    if (r.n > 0) {
        qsort(r.t_acc, r.n, sizeof(double), s_cmp_double);
        printf("  %-12s accept median %5.1f us  p99 %7.1f us\n", "", r.t_acc[r.n / 2] * 1e6,
               r.t_acc[r.n * 99 / 100] * 1e6);
    }
    printf("  %-12s compile %.1f ms (grammar %.1f ms, %zu rules, %zu elements; cache %.1f ms, "
           "%zu positions, %zu uncertain tokens, %.1f MB)\n",
           "", (t2 - t0) * 1e3, (t1 - t0) * 1e3, tb_grammar_n_rules(g), tb_grammar_n_elements(g),
           (t2 - t1) * 1e3, st.positions, st.uncertain, (double)st.bytes / 1e6);
    free(r.t);
    free(r.t_off);
    free(r.t_acc);
    free(mask);
    tb_grammar_cache_destroy(&cache);
    tb_grammar_destroy(&g);
}

/* One timed tb_sampler_sample; its seconds.  A failed step (the grammar ended) is -1. */
static double s_step(tb_sampler_t *sp, tb_sampler_seq_t *q, const float *row)
{
    struct tb_sample out;
    double t0 = s_now();
    int rc = tb_sampler_sample(sp, q, row, &out);
    return rc == 0 ? s_now() - t0 : -1;
}

/* The engine's sampling step with the grammar gbnf and without, alternating, on `rows` random
 * logits rows; prints the medians. */
static void s_bench_sampler(const char *gbnf, size_t len, const tb_token_trie_t *trie,
                            int samples, int max_tokens)
{
    uint32_t vocab = (uint32_t)tb_token_trie_vocab_size(trie);
    const int32_t *eos = NULL;
    size_t n_eos = tb_token_trie_eos(trie, &eos);
    struct tb_sampler_config sc = {.vocab_size = vocab, .seed = 1};
    for (size_t i = 0; i < n_eos && sc.n_eos < TB_SAMPLER_MAX_EOS; i++) {
        sc.eos_ids[sc.n_eos++] = eos[i];
    }
    enum { ROWS = 16 };
    tb_sampler_t *sp = NULL;
    tb_grammar_set_t *set = NULL;
    tb_grammar_ref_t *ref = NULL;
    float *rows = malloc((size_t)ROWS * vocab * sizeof(float));
    size_t cap = (size_t)samples * (size_t)max_tokens, n = 0;
    double *tg = malloc(cap * sizeof(double)), *tp = malloc(cap * sizeof(double));
    char err[256] = "";
    if (!rows || !tg || !tp || tb_sampler_new(&sc, &sp) != 0 ||
        tb_grammar_set_new_trie(trie, 1, &set) != 0 ||
        tb_grammar_set_get(set, gbnf, len, &ref, err, sizeof(err)) != 0) {
        printf("  sampler step: cannot set up %s\n", err);
        goto done;
    }
    uint64_t rng = 12345;
    for (size_t i = 0; i < (size_t)ROWS * vocab; i++) { /* logits ~ uniform in [-8, 8) */
        rows[i] = (float)((double)(s_rand(&rng) >> 11) * 0x1p-53 * 16.0 - 8.0);
    }
    struct tb_sampling_params pg, pp;
    tb_sampling_params_init(&pg);
    pg.grammar = ref;
    tb_sampling_params_init(&pp);
    int32_t prompt = 0;
    for (int s = 0; s < samples; s++) {
        tb_sampler_seq_t *qg = NULL, *qp = NULL;
        if (tb_sampler_seq_new(sp, &pg, &prompt, 1, &qg) != 0 ||
            tb_sampler_seq_new(sp, &pp, &prompt, 1, &qp) != 0) {
            tb_sampler_seq_destroy(&qg);
            break;
        }
        for (int k = 0; k < max_tokens && n < cap && !tb_sampler_seq_grammar_done(qg); k++) {
            const float *row = rows + (size_t)((s * 7 + k) % ROWS) * vocab;
            tg[n] = s_step(sp, qg, row);
            tp[n] = s_step(sp, qp, row);
            if (tg[n] < 0 || tp[n] < 0) {
                break;
            }
            n++;
        }
        tb_sampler_seq_destroy(&qg);
        tb_sampler_seq_destroy(&qp);
    }
    if (n > 0) {
        double *d = malloc(n * sizeof(double));
        for (size_t i = 0; d && i < n; i++) {
            d[i] = tg[i] - tp[i];
        }
        qsort(tg, n, sizeof(double), s_cmp_double);
        qsort(tp, n, sizeof(double), s_cmp_double);
        if (d) {
            qsort(d, n, sizeof(double), s_cmp_double);
        }
        printf("  %-12s sampler step median: with the grammar %.1f us, without %.1f us; "
               "added per step median %.1f us, p99 %.1f us (%zu steps, temperature 1)\n",
               "", tg[n / 2] * 1e6, tp[n / 2] * 1e6, d ? d[n / 2] * 1e6 : 0.0,
               d ? d[n * 99 / 100] * 1e6 : 0.0, n);
        free(d);
    }
done:
    tb_grammar_ref_release(&ref);
    tb_grammar_set_destroy(&set);
    tb_sampler_destroy(&sp);
    free(rows);
    free(tg);
    free(tp);
}

static void s_bench_vocab(const char *name, const tb_token_trie_t *trie, int samples,
                          int max_tokens)
{
    printf("%s: %zu ids\n", name, tb_token_trie_vocab_size(trie));
    const char *schemas[][2] = {{"nested", s_nested}, {"flat", s_flat}};
    for (size_t i = 0; i < 2; i++) {
        json_error_t je;
        json_t *s = json_loads(schemas[i][1], 0, &je);
        char err[256] = "", *gbnf = NULL;
        size_t len = 0;
        if (!s || tb_json_schema_to_gbnf(s, &gbnf, &len, err, sizeof(err)) != 0) {
            printf("  %s: schema error %s %s\n", schemas[i][0], je.text, err);
        } else {
            s_bench(schemas[i][0], gbnf, len, trie, samples, max_tokens);
            if (i == 0) {
                s_bench_sampler(gbnf, len, trie, samples, max_tokens);
            }
        }
        free(gbnf);
        json_decref(s);
    }
    char *gbnf = NULL;
    size_t len = 0;
    if (tb_json_schema_object_gbnf(&gbnf, &len) == 0) {
        s_bench("json_object", gbnf, len, trie, samples, max_tokens);
    }
    free(gbnf);
}

struct piece {
    const uint8_t *p;
    size_t len;
};

static int s_cmp_piece(const void *a, const void *b)
{
    const struct piece *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Pads the distinct pieces all[0..*m) to `want` with concatenations of two of them (what a
 * larger BPE vocabulary's merges add), written into pool. */
static void s_pad(struct piece *all, size_t *m, size_t want, uint8_t *pool)
{
    uint64_t rng = 12345;
    size_t n0 = *m, off = 0;
    while (*m < want && n0 > 0) {
        const struct piece *a = &all[s_rand(&rng) % n0], *b = &all[s_rand(&rng) % n0];
        if (a->len + b->len > 24) {
            continue;
        }
        memcpy(pool + off, a->p, a->len);
        memcpy(pool + off + a->len, b->p, b->len);
        all[(*m)++] = (struct piece){pool + off, a->len + b->len};
        off += a->len + b->len;
    }
}

/* Every distinct token string of the tries, one id each, padded to `want` ids (0: no padding),
 * plus one EOS id. */
static tb_token_trie_t *s_union(tb_token_trie_t **tries, size_t n, size_t want)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += tb_token_trie_vocab_size(tries[i]);
    }
    total = total > want ? total : want;
    struct piece *all = malloc((total + 1) * sizeof(*all));
    uint8_t *pool = malloc(want * 24 + 1);
    const char **bytes = malloc((total + 1) * sizeof(*bytes));
    size_t *lens = malloc((total + 1) * sizeof(*lens));
    tb_token_trie_t *u = NULL;
    size_t k = 0, m = 0;
    for (size_t i = 0; all && i < n; i++) {
        for (size_t id = 0; id < tb_token_trie_vocab_size(tries[i]); id++) {
            all[k].p = tb_token_trie_bytes(tries[i], (int32_t)id, &all[k].len);
            k += all[k].p != NULL;
        }
    }
    for (int round = 0; all && bytes && lens && pool && round < 2; round++) {
        qsort(all, k, sizeof(*all), s_cmp_piece);
        m = 0;
        for (size_t i = 0; i < k; i++) {
            if (m == 0 || s_cmp_piece(&all[i], &all[m - 1]) != 0) {
                all[m++] = all[i];
            }
        }
        if (round == 0) {
            s_pad(all, &m, want, pool);
        }
        k = m;
    }
    for (size_t i = 0; i < m; i++) {
        bytes[i] = (const char *)all[i].p;
        lens[i] = all[i].len;
    }
    if (all && bytes && lens && pool) {
        bytes[m] = NULL;
        lens[m] = 0;
        int32_t eos = (int32_t)m;
        if (tb_token_trie_new(m + 1, bytes, lens, &eos, 1, &u) != 0) {
            u = NULL;
        }
    }
    free(all);
    free(bytes);
    free(lens);
    free(pool);
    return u;
}

int main(int argc, char **argv)
{
    int samples = 20, max_tokens = 300, first = 1;
    size_t pad = 152064; /* Qwen2's vocabulary size */
    for (; first + 1 < argc && argv[first][0] == '-'; first += 2) {
        if (strcmp(argv[first], "-n") == 0) {
            samples = atoi(argv[first + 1]);
        } else if (strcmp(argv[first], "-m") == 0) {
            max_tokens = atoi(argv[first + 1]);
        } else if (strcmp(argv[first], "-p") == 0) {
            pad = (size_t)atol(argv[first + 1]);
        }
    }
    if (first >= argc || samples <= 0 || max_tokens <= 0) {
        fprintf(stderr, "usage: bench_grammar [-n SAMPLES] [-m MAX_TOKENS] [-p PAD] VOCAB...\n");
        return 2;
    }
    size_t n = (size_t)(argc - first);
    tb_token_trie_t **tries = calloc(n, sizeof(*tries));
    for (size_t i = 0; tries && i < n; i++) {
        char err[256] = "";
        tb_tokenizer_t *tok = NULL;
        if (tb_tokenizer_load(argv[first + (int)i], &tok, err, sizeof(err)) != 0 ||
            tb_token_trie_from_tokenizer(tok, &tries[i]) != 0) {
            fprintf(stderr, "bench_grammar: cannot load '%s': %s\n", argv[first + (int)i], err);
            return 1;
        }
        tb_tokenizer_destroy(&tok);
        s_bench_vocab(argv[first + (int)i], tries[i], samples, max_tokens);
    }
    if (n > 1) {
        tb_token_trie_t *u = s_union(tries, n, 0);
        if (u) {
            s_bench_vocab("union of the above", u, samples, max_tokens);
        }
        tb_token_trie_destroy(&u);
        u = pad > 0 ? s_union(tries, n, pad) : NULL;
        if (u) {
            s_bench_vocab("union padded with two-token concatenations", u, samples, max_tokens);
        }
        tb_token_trie_destroy(&u);
    }
    for (size_t i = 0; tries && i < n; i++) {
        tb_token_trie_destroy(&tries[i]);
    }
    free(tries);
    return 0;
}
