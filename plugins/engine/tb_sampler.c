/*
 * tb_sampler.c - logits -> token for one sequence: raw logprobs, penalties, min_tokens masking,
 * greedy or temperature sampling with min_p / top_k / top_p (the order and the conventions are
 * in the header).
 *
 * Per-step work uses only the sampler's scratch arrays (sized for the vocabulary at creation):
 * a copy of the logits when penalties or masks change them, and a candidate array that the
 * selection steps partition in place.  A sequence's penalty state is a small open-addressing
 * map token -> (output count) over the distinct tokens of its prompt and output; it only grows
 * (rarely, by doubling) when a new distinct token would overfill it.
 */
#include "tb_sampler.h"

#include "tb_errors.h"
#include "tb_grammar_matcher.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VW 4       /* floats per vector */
#define BLOCK 1024 /* elements per partial sum */

struct cand {
    float v; /* a logit, then an unnormalised probability */
    int32_t id;
};

struct passes; /* the vocabulary passes of one instruction set (below) */
static const struct passes *s_passes_for(bool baseline);

struct tb_sampler {
    const struct passes *k;
    uint32_t vocab;
    int32_t eos[TB_SAMPLER_MAX_EOS];
    uint32_t n_eos;
    uint64_t seed_state;
    float *work;        /* the penalised and masked copy of a row */
    float *gwork;       /* the grammar-masked copy of a row */
    uint32_t *gmask;    /* a grammar step's token mask */
    size_t gmask_words; /* its capacity in 32-bit words */
    double *block_mass; /* a row's probability mass per BLOCK tokens */
    struct cand *cand;
};

struct pen_entry {
    int32_t tok;
    uint32_t out_count;
};

struct tb_sampler_seq {
    struct tb_sampling_params p;
    int32_t *stop;
    uint32_t vocab;
    struct tb_rng rng;
    uint32_t n_gen;
    bool penalize;
    uint32_t *map; /* index into ent, or UINT32_MAX; map_mask + 1 slots */
    uint32_t map_mask;
    struct pen_entry *ent;
    uint32_t n_ent;
    uint32_t cap_ent;
    tb_grammar_ref_t *grammar;     /* own reference, NULL without a grammar */
    tb_grammar_matcher_t *matcher; /* the grammar's state */
};

/* ---- parameters ---- */

void tb_sampling_params_init(struct tb_sampling_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
}

static int s_invalid(char *err, uint32_t err_len, const char *msg)
{
    if (err && err_len > 0) {
        snprintf(err, err_len, "%s", msg);
    }
    return TB_EINVAL;
}

int tb_sampling_params_validate(const struct tb_sampling_params *p, uint32_t vocab_size,
                                char *err, uint32_t err_len)
{
    /* Written so that NaN fails every range check. */
    if (!(p->temperature >= 0.0f && p->temperature <= 1e4f)) {
        return s_invalid(err, err_len, "'temperature' must be between 0 and 10000");
    }
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) {
        return s_invalid(err, err_len, "'top_p' must be in (0, 1]");
    }
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) {
        return s_invalid(err, err_len, "'min_p' must be in [0, 1]");
    }
    if (p->top_k < -1) {
        return s_invalid(err, err_len, "'top_k' must be -1, 0 (both disable it) or positive");
    }
    if (!(p->repetition_penalty > 0.0f && p->repetition_penalty <= 100.0f)) {
        return s_invalid(err, err_len, "'repetition_penalty' must be in (0, 100]");
    }
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f)) {
        return s_invalid(err, err_len, "'presence_penalty' must be between -2 and 2");
    }
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f)) {
        return s_invalid(err, err_len, "'frequency_penalty' must be between -2 and 2");
    }
    if (p->max_tokens > 0 && p->min_tokens > p->max_tokens) {
        return s_invalid(err, err_len, "'min_tokens' must not exceed 'max_tokens'");
    }
    if (p->top_logprobs > TB_SAMPLER_MAX_TOP_LOGPROBS) {
        return s_invalid(err, err_len, "'top_logprobs' must be between 0 and 20");
    }
    if (p->top_logprobs > 0 && !p->logprobs) {
        return s_invalid(err, err_len, "'top_logprobs' needs 'logprobs'");
    }
    if (p->n_stop_ids > 0 && !p->stop_ids) {
        return s_invalid(err, err_len, "'stop_token_ids' is missing");
    }
    for (uint32_t i = 0; i < p->n_stop_ids; i++) {
        if (p->stop_ids[i] < 0 || (uint32_t)p->stop_ids[i] >= vocab_size) {
            if (err && err_len > 0) {
                snprintf(err, err_len, "'stop_token_ids' holds %d, outside the vocabulary (%u)",
                         (int)p->stop_ids[i], vocab_size);
            }
            return TB_EINVAL;
        }
    }
    return 0;
}

/* ---- sampler ---- */

int tb_sampler_new(const struct tb_sampler_config *cfg, tb_sampler_t **out)
{
    int rc = TB_ECONFIG;
    tb_sampler_t *s = NULL;
    bool ok = cfg->vocab_size > 0 && cfg->vocab_size <= (1u << 30) &&
              cfg->n_eos <= TB_SAMPLER_MAX_EOS;
    for (uint32_t i = 0; ok && i < cfg->n_eos; i++) {
        ok = cfg->eos_ids[i] >= 0 && (uint32_t)cfg->eos_ids[i] < cfg->vocab_size;
    }
    if (!ok) {
        goto fail;
    }
    rc = TB_ENOMEM;
    s = calloc(1, sizeof *s);
    if (!s) {
        goto fail;
    }
    s->k = s_passes_for(cfg->baseline_simd);
    s->vocab = cfg->vocab_size;
    memcpy(s->eos, cfg->eos_ids, sizeof s->eos);
    s->n_eos = cfg->n_eos;
    s->seed_state = cfg->seed;
    s->work = malloc((size_t)s->vocab * sizeof *s->work);
    s->gwork = malloc((size_t)s->vocab * sizeof *s->gwork);
    s->cand = malloc((size_t)s->vocab * sizeof *s->cand);
    s->block_mass = malloc(((size_t)s->vocab / BLOCK + 1) * sizeof *s->block_mass);
    if (!s->work || !s->gwork || !s->cand || !s->block_mass) {
        goto fail_sampler;
    }
    *out = s;
    s = NULL;
    rc = 0;
fail_sampler:
    tb_sampler_destroy(&s);
fail:
    return rc;
}

void tb_sampler_destroy(tb_sampler_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tb_sampler_t *s = *self_p;
    free(s->work);
    free(s->gwork);
    free(s->gmask);
    free(s->block_mass);
    free(s->cand);
    free(s);
    *self_p = NULL;
}

uint32_t tb_sampler_vocab_size(const tb_sampler_t *self)
{
    return self->vocab;
}

bool tb_sampler_is_eos(const tb_sampler_t *self, int32_t token)
{
    for (uint32_t i = 0; i < self->n_eos; i++) {
        if (self->eos[i] == token) {
            return true;
        }
    }
    return false;
}

/* ---- per-sequence penalty map ---- */

static uint32_t s_tok_home(int32_t tok, uint32_t mask)
{
    return ((uint32_t)tok * 2654435761u) & mask;
}

/* The entry index of `tok`, or UINT32_MAX; *slot receives where it is or would go. */
static uint32_t s_pen_find(const tb_sampler_seq_t *q, int32_t tok, uint32_t *slot)
{
    uint32_t i = s_tok_home(tok, q->map_mask);
    while (q->map[i] != UINT32_MAX) {
        if (q->ent[q->map[i]].tok == tok) {
            *slot = i;
            return q->map[i];
        }
        i = (i + 1) & q->map_mask;
    }
    *slot = i;
    return UINT32_MAX;
}

/* Sizes the map for `cap` entries (load <= 1/2) and rebuilds it.  0 or TB_ENOMEM (unchanged). */
static int s_pen_reserve(tb_sampler_seq_t *q, uint32_t cap)
{
    if (cap <= q->cap_ent) {
        return 0;
    }
    uint32_t slots = 16;
    while (slots < 2u * cap) {
        slots <<= 1;
    }
    struct pen_entry *ent = realloc(q->ent, (size_t)cap * sizeof *ent);
    if (!ent) {
        return TB_ENOMEM;
    }
    q->ent = ent;
    uint32_t *map = malloc((size_t)slots * sizeof *map);
    if (!map) {
        return TB_ENOMEM; /* ent grew but cap_ent did not: harmless */
    }
    free(q->map);
    q->map = map;
    q->map_mask = slots - 1;
    q->cap_ent = cap;
    memset(map, 0xff, (size_t)slots * sizeof *map);
    for (uint32_t e = 0; e < q->n_ent; e++) {
        uint32_t slot;
        s_pen_find(q, q->ent[e].tok, &slot);
        map[slot] = e;
    }
    return 0;
}

/* Counts `tok` (output when `out`).  Capacity must have been reserved. */
static void s_pen_add(tb_sampler_seq_t *q, int32_t tok, bool out)
{
    uint32_t slot;
    uint32_t e = s_pen_find(q, tok, &slot);
    if (e == UINT32_MAX) {
        e = q->n_ent++;
        q->ent[e].tok = tok;
        q->ent[e].out_count = 0;
        q->map[slot] = e;
    }
    if (out) {
        q->ent[e].out_count++;
    }
}

/* Ensures one more distinct token fits. */
static int s_pen_room(tb_sampler_seq_t *q)
{
    if (q->n_ent < q->cap_ent) {
        return 0;
    }
    uint32_t cap = q->cap_ent * 2;
    if (cap > q->vocab) {
        cap = q->vocab;
    }
    return s_pen_reserve(q, cap);
}

int tb_sampler_seq_new(tb_sampler_t *self, const struct tb_sampling_params *params,
                       const int32_t *prompt, uint32_t n_prompt, tb_sampler_seq_t **out)
{
    tb_sampler_seq_t *q = NULL;
    int rc = tb_sampling_params_validate(params, self->vocab, NULL, 0);
    if (rc != 0) {
        goto fail;
    }
    rc = TB_ENOMEM;
    q = calloc(1, sizeof *q);
    if (!q) {
        goto fail;
    }
    q->p = *params;
    q->vocab = self->vocab;
    if (params->n_stop_ids > 0) {
        q->stop = malloc((size_t)params->n_stop_ids * sizeof *q->stop);
        if (!q->stop) {
            goto fail_seq;
        }
        memcpy(q->stop, params->stop_ids, (size_t)params->n_stop_ids * sizeof *q->stop);
    }
    q->p.stop_ids = q->stop;
    if (params->grammar) {
        q->grammar = tb_grammar_ref_acquire(params->grammar);
        rc = tb_grammar_matcher_new(tb_grammar_ref_cache(q->grammar), &q->matcher);
        if (rc != 0) {
            goto fail_seq;
        }
        rc = TB_ENOMEM;
    }
    if (!q->p.has_seed) {
        q->p.seed = tb_rng_splitmix64(&self->seed_state);
    }
    tb_rng_seed(&q->rng, q->p.seed);
    q->penalize = params->repetition_penalty != 1.0f || params->presence_penalty != 0.0f ||
                  params->frequency_penalty != 0.0f;
    if (q->penalize) {
        uint64_t want = (uint64_t)n_prompt + (params->max_tokens ? params->max_tokens : 256);
        if (want > q->vocab) {
            want = q->vocab;
        }
        if (s_pen_reserve(q, (uint32_t)want) != 0) {
            goto fail_seq;
        }
        for (uint32_t i = 0; i < n_prompt; i++) {
            /* Out-of-vocabulary prompt ids cannot be penalised (the engine refuses them). */
            if (prompt[i] >= 0 && (uint32_t)prompt[i] < q->vocab && s_pen_room(q) == 0) {
                s_pen_add(q, prompt[i], false);
            }
        }
    }
    *out = q;
    q = NULL;
    rc = 0;
fail_seq:
    tb_sampler_seq_destroy(&q);
fail:
    return rc;
}

void tb_sampler_seq_destroy(tb_sampler_seq_t **seq_p)
{
    if (!seq_p || !*seq_p) {
        return;
    }
    tb_sampler_seq_t *q = *seq_p;
    tb_grammar_matcher_destroy(&q->matcher);
    tb_grammar_ref_release(&q->grammar);
    q->p.grammar = NULL;
    free(q->stop);
    free(q->map);
    free(q->ent);
    free(q);
    *seq_p = NULL;
}

const struct tb_sampling_params *tb_sampler_seq_params(const tb_sampler_seq_t *seq)
{
    return &seq->p;
}

uint32_t tb_sampler_seq_n_generated(const tb_sampler_seq_t *seq)
{
    return seq->n_gen;
}

bool tb_sampler_seq_is_stop(const tb_sampler_seq_t *seq, int32_t token)
{
    for (uint32_t i = 0; i < seq->p.n_stop_ids; i++) {
        if (seq->stop[i] == token) {
            return true;
        }
    }
    return false;
}

void tb_sampler_seq_get_rng(const tb_sampler_seq_t *seq, struct tb_rng *out)
{
    *out = seq->rng;
}

void tb_sampler_seq_set_rng(tb_sampler_seq_t *seq, const struct tb_rng *rng)
{
    seq->rng = *rng;
}

int tb_sampler_seq_accept(tb_sampler_seq_t *seq, int32_t token)
{
    if (token < 0 || (uint32_t)token >= seq->vocab) {
        return TB_EINVAL;
    }
    if (seq->penalize) {
        int rc = s_pen_room(seq);
        if (rc != 0) {
            return rc;
        }
    }
    if (seq->matcher) {
        int rc = tb_grammar_matcher_accept(seq->matcher, token);
        if (rc != 0) {
            return rc;
        }
    }
    if (seq->penalize) {
        s_pen_add(seq, token, true);
    }
    seq->n_gen++;
    return 0;
}

bool tb_sampler_seq_grammar_done(const tb_sampler_seq_t *seq)
{
    return seq->matcher && tb_grammar_matcher_is_done(seq->matcher);
}

/* ---- passes over the vocabulary ----
 *
 * These run once or twice per token over 32k-152k logits, so they are written with GCC/Clang
 * vector extensions (4 floats, plain SSE2 on x86-64, NEON on arm64): independent lanes and no
 * branches, so each pass runs at memory speed.  Sums are taken per block of BLOCK elements in
 * float lanes and folded into a double, which keeps the rounding error of a 152k-term sum far
 * below what the top_p boundary could notice. */

typedef float vf __attribute__((vector_size(16)));
typedef int32_t vi __attribute__((vector_size(16)));

static inline vf s_splat(float a)
{
    return (vf){a, a, a, a};
}

/* x[i, i+4), lanes at or past n read as -infinity. */
static inline vf s_load(const float *x, uint32_t i, uint32_t n)
{
    vf v;
    if (i + VW <= n) {
        memcpy(&v, x + i, sizeof v);
        return v;
    }
    float t[VW];
    for (uint32_t k = 0; k < VW; k++) {
        t[k] = i + k < n ? x[i + k] : -INFINITY;
    }
    memcpy(&v, t, sizeof v);
    return v;
}

static inline vf s_sel(vi m, vf a, vf b)
{
    return (vf)((m & (vi)a) | (~m & (vi)b));
}

static inline double s_hsum(vf v)
{
    return (double)v[0] + (double)v[1] + (double)v[2] + (double)v[3];
}

/* The end of one block of a mass pass (portable and AVX2 alike): the block's mass into the
 * total and block_mass[blk], the ladder's partial masses into mass[0..3]. */
static inline void s_block_done(vf acc, vf m0, vf m1, vf m2, vf m3, bool with_lad, uint32_t blk,
                                double *total, double *mass, double *block_mass)
{
    double bsum = s_hsum(acc);
    *total += bsum;
    if (block_mass) {
        block_mass[blk] = bsum;
    }
    if (with_lad) {
        mass[0] += s_hsum(m0);
        mass[1] += s_hsum(m1);
        mass[2] += s_hsum(m2);
        mass[3] += s_hsum(m3);
    }
}

/* The largest value; NaN is ignored.  -infinity when there is none. */
static float s_max(const float *x, uint32_t n)
{
    vf m0 = s_splat(-INFINITY), m1 = m0;
    uint32_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        vf a, b;
        memcpy(&a, x + i, sizeof a);
        memcpy(&b, x + i + VW, sizeof b);
        m0 = s_sel(a > m0, a, m0);
        m1 = s_sel(b > m1, b, m1);
    }
    for (; i < n; i += VW) {
        vf a = s_load(x, i, n);
        m0 = s_sel(a > m0, a, m0);
    }
    m0 = s_sel(m1 > m0, m1, m0);
    float m = -INFINITY;
    for (int k = 0; k < VW; k++) {
        if (m0[k] > m) {
            m = m0[k];
        }
    }
    return m;
}

/* e^d for d <= 0, 0 where d < -87 (or NaN): 2^(d log2 e) split into an integer power, put in
 * the exponent bits, and a fraction in (-0.5, 0.5] by a degree-6 Taylor polynomial (relative
 * error about 1e-7). */
static inline vf s_exp(vf d)
{
    vi ok = d >= s_splat(-87.0f);
    d = (vf)((vi)d & ok);
    vf x = d * s_splat(1.44269504088896341f);
    vi n = __builtin_convertvector(x - s_splat(0.5f), vi); /* rounds: x <= 0 */
    vf g = (x - __builtin_convertvector(n, vf)) * s_splat(0.693147180559945309f);
    vf p = s_splat(1.0f / 720.0f);
    p = p * g + s_splat(1.0f / 120.0f);
    p = p * g + s_splat(1.0f / 24.0f);
    p = p * g + s_splat(1.0f / 6.0f);
    p = p * g + s_splat(0.5f);
    p = p * g + s_splat(1.0f);
    p = p * g + s_splat(1.0f);
    vi bits = (n + 127) << 23;
    return (vf)((vi)(p * (vf)bits) & ok);
}

/* Everything below works on d_i = (x_i - max) / temperature, the log of token i's probability
 * relative to the most likely token's, computed by the same expression in every pass so that
 * all passes agree on which tokens pass a threshold.  min_p is the threshold d >= ln(min_p).
 * The ladder: thresholds (in nats below the maximum) whose survivors' count or mass one pass
 * measures, so that top_k / top_p then only look at the few tokens that can matter; the last
 * slot holds ln(min_p), or +infinity when unused.  A fixed count keeps the pass unrolled. */
#define N_LADDER 4
static const float s_ladder[N_LADDER - 1] = {-4.6f, -9.2f, -13.8f}; /* 1e-2, 1e-4, 1e-6 */

static inline vf s_d(const float *x, uint32_t i, uint32_t e, vf vm, vf vit)
{
    return (s_load(x, i, e) - vm) * vit;
}

/* cnt[j]: how many d >= lad[j].  (The ladder is spelled out lane by lane, in registers.) */
static void s_counts(const float *x, uint32_t n, float m, float inv_t, const float *lad,
                     uint32_t *cnt)
{
    vf vm = s_splat(m), vit = s_splat(inv_t);
    vf l0 = s_splat(lad[0]), l1 = s_splat(lad[1]), l2 = s_splat(lad[2]), l3 = s_splat(lad[3]);
    vi c0 = {0, 0, 0, 0}, c1 = c0, c2 = c0, c3 = c0;
    uint32_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf v;
        memcpy(&v, x + i, sizeof v);
        vf d = (v - vm) * vit;
        c0 -= d >= l0;
        c1 -= d >= l1;
        c2 -= d >= l2;
        c3 -= d >= l3;
    }
    if (i < n) {
        vf d = s_d(x, i, n, vm, vit);
        c0 -= d >= l0;
        c1 -= d >= l1;
        c2 -= d >= l2;
        c3 -= d >= l3;
    }
    cnt[0] = (uint32_t)(c0[0] + c0[1] + c0[2] + c0[3]);
    cnt[1] = (uint32_t)(c1[0] + c1[1] + c1[2] + c1[3]);
    cnt[2] = (uint32_t)(c2[0] + c2[1] + c2[2] + c2[3]);
    cnt[3] = (uint32_t)(c3[0] + c3[1] + c3[2] + c3[3]);
}

/* Returns the mass (sum of e^d) of the tokens with d >= surv.  Optionally: mass[j], the mass
 * of those with d >= lad[j]; block_mass[b], the survivors' mass within block b (BLOCK
 * tokens).  lad/mass and block_mass may be NULL. */
static inline __attribute__((always_inline)) double
s_masses_impl(const float *x, uint32_t n, float m, float inv_t, float surv, const float *lad,
              double *mass, double *block_mass, bool with_lad)
{
    vf vm = s_splat(m), vit = s_splat(inv_t), vs = s_splat(surv);
    vf l0 = s_splat(INFINITY), l1 = l0, l2 = l0, l3 = l0;
    if (with_lad) {
        l0 = s_splat(lad[0]);
        l1 = s_splat(lad[1]);
        l2 = s_splat(lad[2]);
        l3 = s_splat(lad[3]);
        mass[0] = mass[1] = mass[2] = mass[3] = 0.0;
    }
    double total = 0.0;
    for (uint32_t b = 0; b < n; b += BLOCK) {
        uint32_t e = b + BLOCK < n ? b + BLOCK : n;
        vf acc = s_splat(0.0f), m0 = acc, m1 = acc, m2 = acc, m3 = acc;
        for (uint32_t i = b; i < e; i += VW) {
            vf d;
            if (i + VW <= e) {
                vf v;
                memcpy(&v, x + i, sizeof v);
                d = (v - vm) * vit;
            } else {
                d = s_d(x, i, e, vm, vit);
            }
            vi p = (vi)s_exp(d);
            acc += (vf)((d >= vs) & p);
            if (with_lad) {
                m0 += (vf)((d >= l0) & p);
                m1 += (vf)((d >= l1) & p);
                m2 += (vf)((d >= l2) & p);
                m3 += (vf)((d >= l3) & p);
            }
        }
        s_block_done(acc, m0, m1, m2, m3, with_lad, b / BLOCK, &total, mass, block_mass);
    }
    return total;
}

/* Two copies of the loop, with and without the ladder, so that neither tests `lad` per
 * element (the passes are called through a table, where nothing is known at compile time). */
static double s_masses(const float *x, uint32_t n, float m, float inv_t, float surv,
                       const float *lad, double *mass, double *block_mass)
{
    return lad ? s_masses_impl(x, n, m, inv_t, surv, lad, mass, block_mass, true)
               : s_masses_impl(x, n, m, inv_t, surv, NULL, mass, block_mass, false);
}

/* Appends the tokens of [b, e) with d >= t to c (value: e^d when `prob`, else the logit);
 * returns the new count.  Tokens below -87 (probability 0 in s_exp: masked ones among them)
 * are never collected. */
static uint32_t s_collect(const float *x, uint32_t b, uint32_t e, float m, float inv_t, float t,
                          bool prob, struct cand *c, uint32_t n)
{
    vf vm = s_splat(m), vit = s_splat(inv_t), vt = s_splat(t > -87.0f ? t : -87.0f);
    for (uint32_t i = b; i < e; i += VW) {
        vf d = s_d(x, i, e, vm, vit);
        vi hit = d >= vt;
        if (hit[0] | hit[1] | hit[2] | hit[3]) {
            vf p = s_exp(d);
            for (uint32_t k = 0; k < VW; k++) {
                if (hit[k]) {
                    c[n].v = prob ? p[k] : x[i + k];
                    c[n].id = (int32_t)(i + k);
                    n++;
                }
            }
        }
    }
    return n;
}

/* e^d for one candidate, bit-identical to the vector passes. */
static float s_exp1(float d)
{
    return s_exp(s_splat(d))[0];
}

/* ---- AVX2 passes ----
 *
 * The same passes 8 floats at a time, chosen at run time where the CPU has AVX2 (see
 * s_passes_for).  They give bit-identical results to the 4-wide ones above, so a sequence
 * samples the same tokens on every machine: each element goes through the same operations in
 * the same order (no FMA: the target is "avx2" alone, so nothing can be contracted); masses
 * keep their 4-lane accumulators, fed the low half of a vector and then its high half, which
 * is exactly the order the 4-wide loop adds them in; the tail of a row or of a block (fewer
 * than 8 elements) runs through the 4-wide code.  Maxima and counts do not depend on order.
 * Each pass clears the upper halves of the vector registers (vzeroupper) before it calls
 * 4-wide code and before it returns: SSE code that runs while they are dirty runs several
 * times slower (measured: 4x on the development machine). */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TB_SAMPLER_HAVE_AVX2 1
#define AVX2_FN __attribute__((target("avx2")))
#define VW8 8

typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

AVX2_FN static inline vf8 s_splat8(float a)
{
    return (vf8){a, a, a, a, a, a, a, a};
}

AVX2_FN static inline vf8 s_load8(const float *x)
{
    vf8 v;
    memcpy(&v, x, sizeof v);
    return v;
}

AVX2_FN static inline vf8 s_sel8(vi8 m, vf8 a, vf8 b)
{
    return (vf8)((m & (vi8)a) | (~m & (vi8)b));
}

AVX2_FN static inline int s_any8(vi8 m)
{
    return _mm256_movemask_ps((__m256)m);
}

AVX2_FN static inline vf s_lo(vf8 v)
{
    vf r;
    memcpy(&r, &v, sizeof r);
    return r;
}

AVX2_FN static inline vf s_hi(vf8 v)
{
    vf r;
    memcpy(&r, (const char *)&v + sizeof r, sizeof r);
    return r;
}

/* s_exp, 8 lanes: the same steps. */
AVX2_FN static inline vf8 s_exp8(vf8 d)
{
    vi8 ok = d >= s_splat8(-87.0f);
    d = (vf8)((vi8)d & ok);
    vf8 x = d * s_splat8(1.44269504088896341f);
    vi8 n = __builtin_convertvector(x - s_splat8(0.5f), vi8);
    vf8 g = (x - __builtin_convertvector(n, vf8)) * s_splat8(0.693147180559945309f);
    vf8 p = s_splat8(1.0f / 720.0f);
    p = p * g + s_splat8(1.0f / 120.0f);
    p = p * g + s_splat8(1.0f / 24.0f);
    p = p * g + s_splat8(1.0f / 6.0f);
    p = p * g + s_splat8(0.5f);
    p = p * g + s_splat8(1.0f);
    p = p * g + s_splat8(1.0f);
    vi8 bits = (n + 127) << 23;
    return (vf8)((vi8)(p * (vf8)bits) & ok);
}

AVX2_FN static float s_max_avx2(const float *x, uint32_t n)
{
    vf8 m0 = s_splat8(-INFINITY), m1 = m0;
    uint32_t i = 0;
    for (; i + 2 * VW8 <= n; i += 2 * VW8) {
        vf8 a = s_load8(x + i), b = s_load8(x + i + VW8);
        m0 = s_sel8(a > m0, a, m0);
        m1 = s_sel8(b > m1, b, m1);
    }
    m0 = s_sel8(m1 > m0, m1, m0);
    float m = -INFINITY;
    for (int k = 0; k < VW8; k++) {
        if (m0[k] > m) {
            m = m0[k];
        }
    }
    _mm256_zeroupper(); /* before 4-wide SSE code: dirty upper halves make it pay */
    float t = s_max(x + i, n - i);
    return t > m ? t : m;
}

AVX2_FN static void s_counts_avx2(const float *x, uint32_t n, float m, float inv_t,
                                  const float *lad, uint32_t *cnt)
{
    vf8 vm = s_splat8(m), vit = s_splat8(inv_t);
    vf8 l0 = s_splat8(lad[0]), l1 = s_splat8(lad[1]), l2 = s_splat8(lad[2]);
    vf8 l3 = s_splat8(lad[3]);
    vi8 c0 = {0, 0, 0, 0, 0, 0, 0, 0}, c1 = c0, c2 = c0, c3 = c0;
    uint32_t i = 0;
    for (; i + VW8 <= n; i += VW8) {
        vf8 d = (s_load8(x + i) - vm) * vit;
        c0 -= d >= l0;
        c1 -= d >= l1;
        c2 -= d >= l2;
        c3 -= d >= l3;
    }
    uint32_t sum[N_LADDER] = {0, 0, 0, 0};
    for (int k = 0; k < VW8; k++) {
        sum[0] += (uint32_t)c0[k];
        sum[1] += (uint32_t)c1[k];
        sum[2] += (uint32_t)c2[k];
        sum[3] += (uint32_t)c3[k];
    }
    _mm256_zeroupper();
    s_counts(x + i, n - i, m, inv_t, lad, cnt);
    for (int j = 0; j < N_LADDER; j++) {
        cnt[j] += sum[j];
    }
}

AVX2_FN static inline __attribute__((always_inline)) double
s_masses_avx2_impl(const float *x, uint32_t n, float m, float inv_t, float surv, const float *lad,
                   double *mass, double *block_mass, bool with_lad)
{
    vf8 vm = s_splat8(m), vit = s_splat8(inv_t), vs = s_splat8(surv);
    vf8 l0 = s_splat8(INFINITY), l1 = l0, l2 = l0, l3 = l0;
    vf vm4 = s_splat(m), vit4 = s_splat(inv_t), vs4 = s_splat(surv);
    vf k0 = s_splat(INFINITY), k1 = k0, k2 = k0, k3 = k0;
    if (with_lad) {
        l0 = s_splat8(lad[0]);
        l1 = s_splat8(lad[1]);
        l2 = s_splat8(lad[2]);
        l3 = s_splat8(lad[3]);
        k0 = s_splat(lad[0]);
        k1 = s_splat(lad[1]);
        k2 = s_splat(lad[2]);
        k3 = s_splat(lad[3]);
        mass[0] = mass[1] = mass[2] = mass[3] = 0.0;
    }
    double total = 0.0;
    for (uint32_t b = 0; b < n; b += BLOCK) {
        uint32_t e = b + BLOCK < n ? b + BLOCK : n;
        vf acc = s_splat(0.0f), m0 = acc, m1 = acc, m2 = acc, m3 = acc;
        uint32_t i = b;
        for (; i + VW8 <= e; i += VW8) {
            vf8 d = (s_load8(x + i) - vm) * vit;
            vi8 p = (vi8)s_exp8(d);
            vf8 a = (vf8)((d >= vs) & p);
            acc += s_lo(a);
            acc += s_hi(a);
            if (with_lad) {
                vf8 t0 = (vf8)((d >= l0) & p), t1 = (vf8)((d >= l1) & p);
                vf8 t2 = (vf8)((d >= l2) & p), t3 = (vf8)((d >= l3) & p);
                m0 += s_lo(t0);
                m0 += s_hi(t0);
                m1 += s_lo(t1);
                m1 += s_hi(t1);
                m2 += s_lo(t2);
                m2 += s_hi(t2);
                m3 += s_lo(t3);
                m3 += s_hi(t3);
            }
        }
        for (; i < e; i += VW) { /* the 4-wide loop's steps, for the last elements */
            vf d = s_d(x, i, e, vm4, vit4);
            vi p = (vi)s_exp(d);
            acc += (vf)((d >= vs4) & p);
            if (with_lad) {
                m0 += (vf)((d >= k0) & p);
                m1 += (vf)((d >= k1) & p);
                m2 += (vf)((d >= k2) & p);
                m3 += (vf)((d >= k3) & p);
            }
        }
        s_block_done(acc, m0, m1, m2, m3, with_lad, b / BLOCK, &total, mass, block_mass);
    }
    return total;
}

AVX2_FN static double s_masses_avx2(const float *x, uint32_t n, float m, float inv_t, float surv,
                                    const float *lad, double *mass, double *block_mass)
{
    return lad ? s_masses_avx2_impl(x, n, m, inv_t, surv, lad, mass, block_mass, true)
               : s_masses_avx2_impl(x, n, m, inv_t, surv, NULL, mass, block_mass, false);
}

AVX2_FN static uint32_t s_collect_avx2(const float *x, uint32_t b, uint32_t e, float m,
                                       float inv_t, float t, bool prob, struct cand *c,
                                       uint32_t n)
{
    vf8 vm = s_splat8(m), vit = s_splat8(inv_t), vt = s_splat8(t > -87.0f ? t : -87.0f);
    uint32_t i = b;
    for (; i + VW8 <= e; i += VW8) {
        vf8 d = (s_load8(x + i) - vm) * vit;
        int hit = s_any8(d >= vt);
        if (hit) {
            vf8 p = s_exp8(d);
            for (uint32_t k = 0; k < VW8; k++) {
                if (hit & (1 << k)) {
                    c[n].v = prob ? p[k] : x[i + k];
                    c[n].id = (int32_t)(i + k);
                    n++;
                }
            }
        }
    }
    _mm256_zeroupper();
    return s_collect(x, i, e, m, inv_t, t, prob, c, n);
}
#endif

/* ---- dispatch ---- */

struct passes {
    const char *name;
    float (*max)(const float *x, uint32_t n);
    void (*counts)(const float *x, uint32_t n, float m, float inv_t, const float *lad,
                   uint32_t *cnt);
    double (*masses)(const float *x, uint32_t n, float m, float inv_t, float surv,
                     const float *lad, double *mass, double *block_mass);
    uint32_t (*collect)(const float *x, uint32_t b, uint32_t e, float m, float inv_t, float t,
                        bool prob, struct cand *c, uint32_t n);
};

static const struct passes s_passes_vec4 = {"vec4", s_max, s_counts, s_masses, s_collect};
#ifdef TB_SAMPLER_HAVE_AVX2
static const struct passes s_passes_avx2 = {"avx2", s_max_avx2, s_counts_avx2, s_masses_avx2,
                                            s_collect_avx2};
#endif

static const struct passes *s_passes_for(bool baseline)
{
#ifdef TB_SAMPLER_HAVE_AVX2
    if (!baseline && __builtin_cpu_supports("avx2")) {
        return &s_passes_avx2;
    }
#else
    (void)baseline;
#endif
    return &s_passes_vec4;
}

/* Largest value, ties to the lowest index; NaN never wins.  -1 when every value is -inf/NaN.
 * (Any maximum will do: the scan compares with ==, so -0 and +0 are the same.) */
static int32_t s_argmax(const struct passes *k, const float *x, uint32_t n)
{

    float m = k->max(x, n);
    if (!(m > -INFINITY)) {
        return -1;
    }
    vf vm = s_splat(m);
    for (uint32_t i = 0; i < n; i += VW) {
        vi eq = s_load(x, i, n) == vm;
        if (eq[0] | eq[1] | eq[2] | eq[3]) {
            for (uint32_t l = 0; l < VW; l++) {
                if (eq[l]) {
                    return (int32_t)(i + l);
                }
            }
        }
    }
    return -1; /* not reached */
}

/* ---- selection on a candidate array ---- */

static void s_swap(struct cand *a, struct cand *b)
{
    struct cand t = *a;
    *a = *b;
    *b = t;
}

/* Median of three values by `v`, a deterministic pivot. */
static float s_pivot(const struct cand *c, uint32_t lo, uint32_t hi)
{
    float a = c[lo].v, b = c[lo + (hi - lo) / 2].v, d = c[hi - 1].v;
    if (a > b) {
        float t = a;
        a = b;
        b = t;
    }
    if (b > d) {
        b = d;
    }
    return a > b ? a : b;
}

/* Three-way partition of c[lo, hi) in descending order around `pv`: [lo, lo+*n_gt) greater,
 * then *n_eq equal, then smaller; *sum_gt and *sum_eq receive the sums of the first two. */
static void s_partition(struct cand *c, uint32_t lo, uint32_t hi, float pv, uint32_t *n_gt,
                        uint32_t *n_eq, double *sum_gt, double *sum_eq)
{
    uint32_t gt = lo, i = lo, lt = hi;
    double sg = 0.0, se = 0.0;
    while (i < lt) {
        float v = c[i].v;
        if (v > pv) {
            sg += v;
            s_swap(&c[gt++], &c[i++]);
        } else if (v < pv) {
            s_swap(&c[i], &c[--lt]);
        } else {
            se += v;
            i++;
        }
    }
    *n_gt = gt - lo;
    *n_eq = lt - gt;
    *sum_gt = sg;
    *sum_eq = se;
}

/* Keeps the candidates whose value is at least the k-th largest (ties included), 1 <= k < n;
 * returns how many remain, at the front.  Expected linear (quickselect). */
static uint32_t s_top_k(struct cand *c, uint32_t n, uint32_t k)
{
    uint32_t lo = 0, hi = n;
    float kth;
    for (;;) {
        uint32_t n_gt, n_eq;
        double sg, se;
        float pv = s_pivot(c, lo, hi);
        s_partition(c, lo, hi, pv, &n_gt, &n_eq, &sg, &se);
        uint32_t want = k - lo; /* still to place, >= 1 */
        if (want <= n_gt) {
            hi = lo + n_gt;
        } else if (want <= n_gt + n_eq) {
            kth = pv;
            break;
        } else {
            lo += n_gt + n_eq;
        }
    }
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (c[i].v >= kth) {
            c[m++] = c[i];
        }
    }
    return m;
}

static void s_sort_desc(struct cand *c, uint32_t lo, uint32_t hi)
{
    for (uint32_t i = lo + 1; i < hi; i++) {
        struct cand x = c[i];
        uint32_t j = i;
        while (j > lo && (c[j - 1].v < x.v || (c[j - 1].v == x.v && c[j - 1].id > x.id))) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
}

/* c[0, n) hold probabilities.  Moves the smallest set of most likely candidates whose mass
 * reaches `target` (ties at the boundary kept; all of them if the mass never does) to the
 * front, returns its size and sets *mass to its mass.  Expected linear: partitions around
 * pivots and goes on in the side that holds the boundary; only the last small range is
 * sorted. */
static uint32_t s_top_p(struct cand *c, uint32_t n, double target, double *mass)
{
    uint32_t lo = 0, hi = n;
    double acc = 0.0; /* mass of c[0, lo), all kept */
    while (hi - lo > 32) {
        uint32_t n_gt, n_eq;
        double sg, se;
        float pv = s_pivot(c, lo, hi);
        s_partition(c, lo, hi, pv, &n_gt, &n_eq, &sg, &se);
        if (acc + sg >= target) {
            hi = lo + n_gt;
        } else if (acc + sg + se >= target) {
            *mass = acc + sg + se;
            return lo + n_gt + n_eq;
        } else {
            acc += sg + se;
            lo += n_gt + n_eq;
        }
    }
    s_sort_desc(c, lo, hi);
    uint32_t end = lo;
    while (end < hi && acc < target) {
        acc += c[end++].v;
    }
    while (end > lo && end < hi && c[end].v == c[end - 1].v) {
        acc += c[end++].v;
    }
    *mass = acc;
    return end;
}

/* ---- the step ---- */

/* Raw log-softmax facts: the chosen token's logprob and the top `n_top` tokens. */
static void s_logprobs(const struct passes *kp, const float *x, uint32_t vocab, int32_t chosen,
                       uint32_t n_top, struct tb_sample *out)
{
    float m = kp->max(x, vocab);
    double lse = (double)m + log(kp->masses(x, vocab, m, 1.0f, -INFINITY, NULL, NULL, NULL));
    out->logprob = (float)((double)x[chosen] - lse);
    /* A small descending array; a chunk of four is only looked at when one of its values
     * beats the array's last (most chunks do not). */
    uint32_t k = 0;
    float *tv = out->top_logprobs;
    int32_t *ti = out->top_ids;
    float thr = -INFINITY; /* a value must beat this to enter */
    for (uint32_t i = 0; i < vocab && n_top > 0; i += VW) {
        vi hit = s_load(x, i, vocab) > s_splat(thr);
        if (!(hit[0] | hit[1] | hit[2] | hit[3])) {
            continue;
        }
        for (uint32_t l = 0; l < VW && i + l < vocab; l++) {
            float v = x[i + l];
            if (!(v > thr)) {
                continue;
            }
            uint32_t j = (k < n_top) ? k++ : k - 1;
            while (j > 0 && v > tv[j - 1]) {
                tv[j] = tv[j - 1];
                ti[j] = ti[j - 1];
                j--;
            }
            tv[j] = v;
            ti[j] = (int32_t)(i + l);
            if (k == n_top) {
                thr = tv[k - 1];
            }
        }
    }
    for (uint32_t j = 0; j < k; j++) {
        out->top_logprobs[j] = (float)((double)out->top_logprobs[j] - lse);
    }
    out->n_top = k;
}

/* Temperature sampling with min_p, top_k and top_p from processed logits x; -1 when nothing
 * can be chosen. */
static int32_t s_sample_random(tb_sampler_t *self, tb_sampler_seq_t *seq, const float *x)
{
    const struct tb_sampling_params *p = &seq->p;
    const struct passes *kp = self->k;
    uint32_t vocab = self->vocab;
    float m = kp->max(x, vocab);
    if (!(m > -INFINITY)) {
        return -1;
    }
    if (m == INFINITY) {
        return s_argmax(kp, x, vocab);
    }
    bool top_k = p->top_k > 0 && (uint32_t)p->top_k < vocab;
    float inv_t = 1.0f / p->temperature;
    float surv = p->min_p > 0.0f ? logf(p->min_p) : -INFINITY; /* min_p: d >= ln(min_p) */
    struct cand *c = self->cand;
    uint32_t n;

    if (!top_k && p->top_p >= 1.0f) {
        /* Straight from the masses: find the block holding the draw, then the token in it. */
        double *bm = self->block_mass;
        uint32_t n_blocks = (vocab + BLOCK - 1) / BLOCK;
        double total = kp->masses(x, vocab, m, inv_t, surv, NULL, NULL, bm);
        if (!(total > 0.0)) {
            return s_argmax(kp, x, vocab);
        }
        double u = tb_rng_uniform(&seq->rng) * total;
        uint32_t b = 0;
        while (b + 1 < n_blocks && !(u < bm[b])) {
            u -= bm[b++];
        }
        uint32_t e = (b + 1) * BLOCK < vocab ? (b + 1) * BLOCK : vocab;
        n = kp->collect(x, b * BLOCK, e, m, inv_t, surv, true, c, 0);
        double acc = 0.0;
        for (uint32_t i = 0; i < n; i++) {
            acc += c[i].v;
            if (u < acc) {
                return c[i].id;
            }
        }
        /* Rounding left u a hair past the block's sum: its last survivor. */
        return n > 0 ? c[n - 1].id : s_argmax(kp, x, vocab);
    }

    /* Pick the highest ladder threshold whose survivors surely hold the answer: at least k
     * tokens for top_k; for top_p alone, at least top_p of the survivors' mass.  Only the
     * tokens above it are collected. */
    float lad[N_LADDER];
    memcpy(lad, s_ladder, sizeof s_ladder);
    lad[N_LADDER - 1] = p->min_p > 0.0f ? surv : INFINITY;
    double total = 0.0;
    float floor_d = surv;
    if (top_k) {
        uint32_t cnt[N_LADDER];
        kp->counts(x, vocab, m, inv_t, lad, cnt);
        for (uint32_t j = 0; j + 1 < N_LADDER && lad[j] >= surv; j++) {
            if (cnt[j] >= (uint32_t)p->top_k) {
                floor_d = lad[j];
                break;
            }
        }
    } else {
        double mass[N_LADDER];
        total = kp->masses(x, vocab, m, inv_t, surv, lad, mass, NULL);
        if (!(total > 0.0)) {
            return s_argmax(kp, x, vocab);
        }
        for (uint32_t j = 0; j + 1 < N_LADDER && lad[j] >= surv; j++) {
            if (mass[j] >= (double)p->top_p * total) {
                floor_d = lad[j];
                break;
            }
        }
    }
    n = kp->collect(x, 0, vocab, m, inv_t, floor_d, !top_k, c, 0);
    if (n == 0) {
        return s_argmax(kp, x, vocab);
    }
    double mass = 0.0;
    if (top_k) {
        if ((uint32_t)p->top_k < n) {
            n = s_top_k(c, n, (uint32_t)p->top_k); /* on logits: exact ties */
        }
        for (uint32_t i = 0; i < n; i++) {
            c[i].v = s_exp1((c[i].v - m) * inv_t);
            mass += c[i].v;
        }
        total = mass; /* top_p renormalises over the top_k survivors */
    } else {
        for (uint32_t i = 0; i < n; i++) {
            mass += c[i].v;
        }
    }
    if (p->top_p < 1.0f) {
        n = s_top_p(c, n, (double)p->top_p * total, &mass);
    }
    double u = tb_rng_uniform(&seq->rng) * mass;
    double acc = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        acc += c[i].v;
        if (u < acc) {
            return c[i].id;
        }
    }
    return c[n - 1].id;
}

/* The grammar's mask for this step applied to a copy of `logits` (self->gwork): tokens the
 * grammar does not allow, and ids past the trie's vocabulary, become -infinity.  0, TB_ENOMEM. */
static int s_grammar_mask(tb_sampler_t *self, tb_sampler_seq_t *seq, const float *logits)
{
    size_t words = tb_grammar_matcher_mask_words(seq->matcher);
    if (words > self->gmask_words) {
        uint32_t *m = realloc(self->gmask, words * sizeof *m);
        if (!m) {
            return TB_ENOMEM;
        }
        self->gmask = m;
        self->gmask_words = words;
    }
    int rc = tb_grammar_matcher_fill_mask(seq->matcher, self->gmask);
    if (rc != 0) {
        return rc;
    }
    float *w = self->gwork;
    uint32_t vocab = self->vocab;
    uint32_t full = vocab / 32; /* whole words: fixed-length loops the compiler vectorises */
    for (uint32_t k = 0; k < full; k++) {
        uint32_t bits = k < words ? self->gmask[k] : 0;
        float *o = w + (size_t)k * 32;
        const float *x = logits + (size_t)k * 32;
        if (bits == 0) { /* most words of a JSON grammar's mask */
            for (int j = 0; j < 32; j++) {
                o[j] = -INFINITY;
            }
        } else if (bits == UINT32_MAX) {
            memcpy(o, x, 32 * sizeof *o);
        } else {
            for (int j = 0; j < 32; j++) {
                o[j] = (bits >> j) & 1u ? x[j] : -INFINITY;
            }
        }
    }
    uint32_t bits = full < words ? self->gmask[full] : 0;
    for (uint32_t i = full * 32; i < vocab; i++) {
        w[i] = (bits >> (i - full * 32)) & 1u ? logits[i] : -INFINITY;
    }
    return 0;
}

int tb_sampler_sample(tb_sampler_t *self, tb_sampler_seq_t *seq, const float *logits,
                      struct tb_sample *out)
{
    const struct tb_sampling_params *p = &seq->p;
    uint32_t vocab = self->vocab;
    memset(out, 0, sizeof *out);
    out->token = -1;
    if (seq->penalize && s_pen_room(seq) != 0) {
        return TB_ENOMEM;
    }
    /* With a grammar, its masked copy stands for the model's row from here on. */
    bool can_end = false;
    if (seq->matcher) {
        int rc = s_grammar_mask(self, seq, logits);
        if (rc != 0) {
            return rc;
        }
        logits = self->gwork;
        can_end = tb_grammar_matcher_can_end(seq->matcher);
    }

    /* Penalties and masks work on a copy: the raw row stays intact for logprobs. */
    const float *x = logits;
    bool mask = seq->n_gen < p->min_tokens;
    if ((seq->penalize && seq->n_ent > 0) || mask) {
        float *w = self->work;
        memcpy(w, logits, (size_t)vocab * sizeof *w);
        float rep = p->repetition_penalty;
        for (uint32_t e = 0; seq->penalize && e < seq->n_ent; e++) {
            const struct pen_entry *pe = &seq->ent[e];
            float v = w[pe->tok];
            if (rep != 1.0f) {
                v = v > 0.0f ? v / rep : v * rep;
            }
            if (pe->out_count > 0) {
                v -= p->frequency_penalty * (float)pe->out_count + p->presence_penalty;
            }
            w[pe->tok] = v;
        }
        if (mask) {
            for (uint32_t i = 0; i < p->n_stop_ids; i++) {
                w[seq->stop[i]] = -INFINITY;
            }
            for (uint32_t i = 0; !p->ignore_eos && !can_end && i < self->n_eos; i++) {
                w[self->eos[i]] = -INFINITY;
            }
        }
        x = w;
    }

    int32_t tok;
    if (p->temperature < TB_SAMPLER_GREEDY_EPS || p->top_k == 1) {
        tok = s_argmax(self->k, x, vocab);
    } else {
        tok = s_sample_random(self, seq, x);
    }
    if (tok < 0) {
        return TB_EINVAL;
    }
    if (seq->matcher) {
        int rc = tb_grammar_matcher_accept(seq->matcher, tok);
        if (rc != 0) {
            return rc;
        }
    }
    out->token = tok;
    if (p->logprobs) {
        s_logprobs(self->k, logits, vocab, tok, p->top_logprobs, out);
    }
    if (seq->penalize) {
        s_pen_add(seq, tok, true);
    }
    seq->n_gen++;
    return 0;
}

const char *tb_sampler_simd(const tb_sampler_t *self)
{
    return self->k->name;
}
