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

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cand {
    float v; /* a logit, then an unnormalised probability */
    int32_t id;
};

struct tb_sampler {
    uint32_t vocab;
    int32_t eos[TB_SAMPLER_MAX_EOS];
    uint32_t n_eos;
    uint64_t seed_state;
    float *work;
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
    if (cfg->vocab_size == 0 || cfg->vocab_size > (1u << 30) || cfg->n_eos > TB_SAMPLER_MAX_EOS) {
        return TB_ECONFIG;
    }
    for (uint32_t i = 0; i < cfg->n_eos; i++) {
        if (cfg->eos_ids[i] < 0 || (uint32_t)cfg->eos_ids[i] >= cfg->vocab_size) {
            return TB_ECONFIG;
        }
    }
    tb_sampler_t *s = calloc(1, sizeof *s);
    if (!s) {
        return TB_ENOMEM;
    }
    s->vocab = cfg->vocab_size;
    memcpy(s->eos, cfg->eos_ids, sizeof s->eos);
    s->n_eos = cfg->n_eos;
    s->seed_state = cfg->seed;
    s->work = malloc((size_t)s->vocab * sizeof *s->work);
    s->cand = malloc((size_t)s->vocab * sizeof *s->cand);
    if (!s->work || !s->cand) {
        tb_sampler_destroy(&s);
        return TB_ENOMEM;
    }
    *out = s;
    return 0;
}

void tb_sampler_destroy(tb_sampler_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tb_sampler_t *s = *self_p;
    free(s->work);
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
    int rc = tb_sampling_params_validate(params, self->vocab, NULL, 0);
    if (rc != 0) {
        return rc;
    }
    tb_sampler_seq_t *q = calloc(1, sizeof *q);
    if (!q) {
        return TB_ENOMEM;
    }
    q->p = *params;
    q->vocab = self->vocab;
    if (params->n_stop_ids > 0) {
        q->stop = malloc((size_t)params->n_stop_ids * sizeof *q->stop);
        if (!q->stop) {
            goto fail;
        }
        memcpy(q->stop, params->stop_ids, (size_t)params->n_stop_ids * sizeof *q->stop);
    }
    q->p.stop_ids = q->stop;
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
            goto fail;
        }
        for (uint32_t i = 0; i < n_prompt; i++) {
            /* Out-of-vocabulary prompt ids cannot be penalised (the engine refuses them). */
            if (prompt[i] >= 0 && (uint32_t)prompt[i] < q->vocab && s_pen_room(q) == 0) {
                s_pen_add(q, prompt[i], false);
            }
        }
    }
    *out = q;
    return 0;

fail:
    tb_sampler_seq_destroy(&q);
    return TB_ENOMEM;
}

void tb_sampler_seq_destroy(tb_sampler_seq_t **seq_p)
{
    if (!seq_p || !*seq_p) {
        return;
    }
    tb_sampler_seq_t *q = *seq_p;
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
        s_pen_add(seq, token, true);
    }
    seq->n_gen++;
    return 0;
}

/* ---- the step ---- */

/* Largest value, ties to the lowest index; NaN never wins.  -1 when every value is -inf/NaN. */
static int32_t s_argmax(const float *x, uint32_t n)
{
    int32_t best = -1;
    float bv = -INFINITY;
    for (uint32_t i = 0; i < n; i++) {
        if (x[i] > bv) {
            bv = x[i];
            best = (int32_t)i;
        }
    }
    return best;
}

/* Raw log-softmax facts: the chosen token's logprob and the top `n_top` tokens. */
static void s_logprobs(const float *x, uint32_t vocab, int32_t chosen, uint32_t n_top,
                       struct tb_sample *out)
{
    float m = -INFINITY;
    for (uint32_t i = 0; i < vocab; i++) {
        if (x[i] > m) {
            m = x[i];
        }
    }
    double sum = 0.0;
    for (uint32_t i = 0; i < vocab; i++) {
        if (x[i] > -INFINITY) { /* false for NaN too */
            sum += expf(x[i] - m);
        }
    }
    double lse = (double)m + log(sum);
    out->logprob = (float)((double)x[chosen] - lse);
    /* A small descending array: most ids fail the first comparison and cost nothing more. */
    uint32_t k = 0;
    for (uint32_t i = 0; i < vocab && n_top > 0; i++) {
        float v = x[i];
        if (!(v > -INFINITY) || (k == n_top && !(v > out->top_logprobs[k - 1]))) {
            continue;
        }
        uint32_t j = (k < n_top) ? k++ : k - 1;
        while (j > 0 && v > out->top_logprobs[j - 1]) {
            out->top_logprobs[j] = out->top_logprobs[j - 1];
            out->top_ids[j] = out->top_ids[j - 1];
            j--;
        }
        out->top_logprobs[j] = v;
        out->top_ids[j] = (int32_t)i;
    }
    for (uint32_t j = 0; j < k; j++) {
        out->top_logprobs[j] = (float)((double)out->top_logprobs[j] - lse);
    }
    out->n_top = k;
}

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
 * then *n_eq equal, then smaller.  Sums of the greater and equal parts when `sums`. */
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

/* Keeps the candidates whose value is at least the k-th largest (ties included); returns how
 * many remain, at the front.  Expected linear. */
static uint32_t s_top_k(struct cand *c, uint32_t n, uint32_t k)
{
    uint32_t lo = 0, hi = n;
    float kth = 0.0f;
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
    /* Everything before the equal run is greater; the run ties kth; pick up nothing else. */
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

/* c[0, n) hold unnormalised probabilities summing to `total`.  Moves the smallest set of most
 * likely candidates whose mass reaches top_p * total (ties at the boundary kept) to the front,
 * returns its size and sets *mass.  Expected linear: partitions around pivots and recurses into
 * the side that holds the boundary; only the last small range is sorted. */
static uint32_t s_top_p(struct cand *c, uint32_t n, double total, float top_p, double *mass)
{
    double target = (double)top_p * total;
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
    if (end == 0) { /* rounding left nothing: keep the most likely */
        end = 1;
        acc = c[0].v;
    }
    *mass = acc;
    return end;
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
            for (uint32_t i = 0; !p->ignore_eos && i < self->n_eos; i++) {
                w[self->eos[i]] = -INFINITY;
            }
        }
        x = w;
    }

    int32_t tok;
    float T = p->temperature;
    if (T < TB_SAMPLER_GREEDY_EPS || p->top_k == 1) {
        tok = s_argmax(x, vocab);
    } else {
        float m = -INFINITY;
        for (uint32_t i = 0; i < vocab; i++) {
            if (x[i] > m) {
                m = x[i];
            }
        }
        if (!(m > -INFINITY)) {
            return TB_EINVAL;
        }
        /* min_p as a logit threshold: p_i >= min_p * p_max <=> x_i >= m + T * ln(min_p). */
        float thr = p->min_p > 0.0f ? m + T * logf(p->min_p) : -INFINITY;
        struct cand *c = self->cand;
        uint32_t n = 0;
        for (uint32_t i = 0; i < vocab; i++) {
            if (x[i] >= thr && x[i] > -INFINITY) {
                c[n].v = x[i];
                c[n].id = (int32_t)i;
                n++;
            }
        }
        if (p->top_k > 0 && (uint32_t)p->top_k < n) {
            n = s_top_k(c, n, (uint32_t)p->top_k);
        }
        double total = 0.0;
        float inv_t = 1.0f / T;
        for (uint32_t i = 0; i < n; i++) {
            c[i].v = expf((c[i].v - m) * inv_t);
            total += c[i].v;
        }
        double mass = total;
        if (p->top_p < 1.0f) {
            n = s_top_p(c, n, total, p->top_p, &mass);
        }
        double u = tb_rng_uniform(&seq->rng) * mass;
        double acc = 0.0;
        tok = c[n - 1].id;
        for (uint32_t i = 0; i < n; i++) {
            acc += c[i].v;
            if (u < acc) {
                tok = c[i].id;
                break;
            }
        }
    }
    if (tok < 0) {
        return TB_EINVAL;
    }
    out->token = tok;
    if (p->logprobs) {
        s_logprobs(logits, vocab, tok, p->top_logprobs, out);
    }
    if (seq->penalize) {
        s_pen_add(seq, tok, true);
    }
    seq->n_gen++;
    return 0;
}
