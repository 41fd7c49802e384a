/* tb_router_policy: picking an instance (see tb_router_policy.h). */
#include "tb_router_policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_block_hash.h"
#include "tb_errors.h"
#include "tb_kv_index.h"

struct tb_rpolicy {
    tb_rp_kind_t kind;
    uint64_t rng;
    size_t cursor;
    struct tb_idir_instance **cand; /* scratch: the candidates of one pick */
    size_t cap_cand;
    /* kv_aware */
    struct tb_rp_kv_config kv;
    tb_kv_index_t *index; /* borrowed */
    struct tb_rp_kv_decision last;
    uint64_t *hashes; /* scratch: the prompt's block hashes */
    size_t cap_hashes;
    struct tb_kv_overlap *ov; /* scratch: what each instance holds of them */
    size_t cap_ov;
    double *cost; /* scratch: per candidate */
    uint32_t *cached;
    size_t cap_cost;
};

static uint64_t s_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

const char *tb_rpolicy_name(tb_rp_kind_t kind)
{
    switch (kind) {
    case TB_RP_ROUND_ROBIN:
        return "round_robin";
    case TB_RP_RANDOM:
        return "random";
    case TB_RP_LEAST_LOADED:
        return "least_loaded";
    case TB_RP_KV_AWARE:
        return "kv_aware";
    }
    return "?";
}

tb_rpolicy_t *tb_rpolicy_new(tb_rp_kind_t kind, uint64_t seed)
{
    tb_rpolicy_t *p = calloc(1, sizeof(*p));
    if (!p) {
        return NULL;
    }
    p->kind = kind;
    if (seed == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    }
    p->rng = seed;
    return p;
}

void tb_rpolicy_destroy(tb_rpolicy_t **p_p)
{
    if (!p_p || !*p_p) {
        return;
    }
    tb_rpolicy_t *p = *p_p;
    free(p->cand);
    free(p->hashes);
    free(p->ov);
    free(p->cost);
    free(p->cached);
    free(p);
    *p_p = NULL;
}

tb_rp_kind_t tb_rpolicy_kind(const tb_rpolicy_t *p)
{
    return p->kind;
}

void tb_rpolicy_set_kv(tb_rpolicy_t *p, const struct tb_rp_kv_config *cfg,
                       struct tb_kv_index *index)
{
    p->kv = *cfg;
    if (p->kv.hash_root == 0) {
        p->kv.hash_root = TB_BLOCK_HASH_ROOT;
    }
    p->index = index;
}

const struct tb_rp_kv_decision *tb_rpolicy_last_kv(const tb_rpolicy_t *p)
{
    return &p->last;
}

/* Load as least_loaded compares it: requests, then KV use (per mille) as a tie-breaker. */
static int64_t s_score(const struct tb_idir_instance *i)
{
    return (i->running + i->waiting + i->pending) * 1024 +
           (i->kv_total > 0 ? i->kv_used * 1000 / i->kv_total : 0);
}

static bool s_excluded(const struct tb_rp_query *q, uint64_t id)
{
    for (size_t i = 0; i < q->n_exclude; i++) {
        if (q->exclude[i] == id) {
            return true;
        }
    }
    return false;
}

/* Fills p->cand with the instances serving the query, leaving out the excluded ones unless that
 * leaves none; returns how many, or TB_ENOMEM. */
static int s_candidates(tb_rpolicy_t *p, tb_instance_dir_t *dir, const struct tb_rp_query *q)
{
    size_t total = tb_instance_dir_count(dir);
    if (total > p->cap_cand) {
        struct tb_idir_instance **c = realloc(p->cand, total * sizeof(*c));
        if (!c) {
            return TB_ENOMEM;
        }
        p->cand = c;
        p->cap_cand = total;
    }
    int n = 0;
    for (int pass = 0; pass < 2 && n == 0; pass++) {
        for (size_t i = 0; i < total; i++) {
            struct tb_idir_instance *inst = tb_instance_dir_at(dir, i);
            if (strcmp(inst->model, q->model) == 0 &&
                (!q->kind || strcmp(inst->kind, q->kind) == 0) &&
                (pass == 1 || !s_excluded(q, inst->instance_id))) {
                p->cand[n++] = inst;
            }
        }
        if (q->n_exclude == 0) {
            break;
        }
    }
    return n;
}

/* The fewest-load candidate of p->cand[0..n) (only among those whose cost is `lo` when `cost`
 * is not NULL), ties in turn from the cursor. */
static size_t s_least_loaded(tb_rpolicy_t *p, size_t n, const double *cost, double lo)
{
    size_t start = p->cursor++ % n;
    size_t pick = start;
    int64_t best = INT64_MAX;
    for (size_t k = 0; k < n; k++) {
        size_t c = (start + k) % n;
        int64_t s = s_score(p->cand[c]);
        if ((!cost || cost[c] == lo) && s < best) {
            best = s;
            pick = c;
        }
    }
    return pick;
}

/* Grows the kv_aware scratch for `n` candidates and a prompt of `n_tokens`.  0 or TB_ENOMEM. */
static int s_kv_scratch(tb_rpolicy_t *p, size_t n, size_t n_tokens)
{
    if (n > p->cap_cost) {
        double *c = realloc(p->cost, n * sizeof(*c));
        if (c) {
            p->cost = c;
        }
        uint32_t *h = realloc(p->cached, n * sizeof(*h));
        if (h) {
            p->cached = h;
        }
        struct tb_kv_overlap *o = realloc(p->ov, n * sizeof(*o));
        if (o) {
            p->ov = o;
        }
        if (!c || !h || !o) {
            return TB_ENOMEM;
        }
        p->cap_cost = p->cap_ov = n;
    }
    if (n_tokens + 1 > p->cap_hashes) {
        uint64_t *h = realloc(p->hashes, (n_tokens + 1) * sizeof(*h));
        if (!h) {
            return TB_ENOMEM;
        }
        p->hashes = h;
        p->cap_hashes = n_tokens + 1;
    }
    return 0;
}

static uint32_t s_block_size(const tb_rpolicy_t *p, const struct tb_idir_instance *i)
{
    if (p->kv.block_size > 0) {
        return p->kv.block_size;
    }
    return i->kv_block_size > 0 && i->kv_block_size <= 65536 ? (uint32_t)i->kv_block_size : 16;
}

/* Hashes the prompt's full blocks for block size `bs` into p->hashes; returns how many. */
static uint32_t s_chain(tb_rpolicy_t *p, const struct tb_rp_query *q, uint32_t bs)
{
    uint32_t n = q->n_tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)q->n_tokens;
    return tb_block_hash_chain(p->kv.hash_root, q->tokens, n, bs, p->hashes,
                               (uint32_t)p->cap_hashes);
}

/* Picks among the lowest costs, or samples a softmax over them when a temperature is set. */
static size_t s_kv_choose(tb_rpolicy_t *p, size_t n)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t c = 0; c < n; c++) {
        lo = p->cost[c] < lo ? p->cost[c] : lo;
        hi = p->cost[c] > hi ? p->cost[c] : hi;
    }
    if (p->kv.temperature > 0 && hi > lo) {
        double sum = 0;
        for (size_t c = 0; c < n; c++) {
            sum += exp(-(p->cost[c] - lo) / (hi - lo) / p->kv.temperature);
        }
        double u = (double)(s_next(&p->rng) >> 11) / 9007199254740992.0 * sum;
        for (size_t c = 0; c < n; c++) {
            u -= exp(-(p->cost[c] - lo) / (hi - lo) / p->kv.temperature);
            if (u <= 0) {
                return c;
            }
        }
        return n - 1;
    }
    /* the lowest cost; among equals the least loaded, then in turn */
    return s_least_loaded(p, n, p->cost, lo);
}

/* kv_aware: cost = prefill_weight x max(active prefill + prompt blocks - cached blocks, 0) +
 * active decode blocks, per candidate.  0 with *pick, or TB_ENOMEM. */
static int s_kv_pick(tb_rpolicy_t *p, const struct tb_rp_query *q, size_t n, size_t *pick)
{
    if (s_kv_scratch(p, n, q->tokens ? q->n_tokens : 0) != 0) {
        return TB_ENOMEM;
    }
    uint32_t cur_bs = 0, n_hashes = 0;
    size_t n_ov = 0;
    uint32_t best_overlap = 0;
    for (size_t c = 0; c < n; c++) {
        const struct tb_idir_instance *i = p->cand[c];
        uint32_t bs = s_block_size(p, i);
        if (bs != cur_bs) {
            cur_bs = bs;
            n_hashes = q->tokens ? s_chain(p, q, bs) : 0;
            n_ov = tb_kv_index_match(p->index, p->hashes, n_hashes, q->now_ns, p->ov, p->cap_ov);
        }
        uint32_t cached = 0;
        for (size_t k = 0; k < n_ov; k++) {
            if (p->ov[k].instance_id == i->instance_id) {
                cached = p->ov[k].blocks;
            }
        }
        int64_t prompt_blocks = (int64_t)((q->n_tokens + bs - 1) / bs);
        int64_t prefill = (i->has_block_load ? i->prefill_blocks : 0) + i->pending_prefill;
        int64_t decode = i->has_block_load ? i->decode_blocks : i->kv_used;
        int64_t todo = prefill + prompt_blocks - (int64_t)cached;
        p->cost[c] = p->kv.prefill_weight * (double)(todo > 0 ? todo : 0) + (double)decode;
        p->cached[c] = cached;
        best_overlap = cached > best_overlap ? cached : best_overlap;
    }
    size_t k = s_kv_choose(p, n);
    struct tb_idir_instance *i = p->cand[k];
    uint32_t bs = s_block_size(p, i);
    n_hashes = q->tokens ? s_chain(p, q, bs) : 0;
    uint32_t prompt_blocks = (uint32_t)((q->n_tokens + bs - 1) / bs);
    i->pending_prefill += prompt_blocks > p->cached[k] ? prompt_blocks - p->cached[k] : 0;
    p->last = (struct tb_rp_kv_decision){.prompt_blocks = n_hashes,
                                         .overlap_blocks = p->cached[k],
                                         .best_overlap = best_overlap,
                                         .cost = p->cost[k]};
    if (p->kv.mode == TB_RP_KV_APPROX && n_hashes > 0) {
        int rc = tb_kv_index_predict(p->index, i->instance_id, p->hashes, n_hashes,
                                     q->now_ns + p->kv.approx_ttl_ns);
        if (rc != 0) {
            return rc;
        }
    }
    *pick = k;
    return 0;
}

int tb_rpolicy_pick(tb_rpolicy_t *p, tb_instance_dir_t *dir, const struct tb_rp_query *q,
                    struct tb_idir_instance **out)
{
    *out = NULL;
    int found = s_candidates(p, dir, q);
    if (found <= 0) {
        return found < 0 ? found : TB_ENOROUTE;
    }
    size_t n = (size_t)found;
    size_t pick = 0;
    switch (p->kind) {
    case TB_RP_ROUND_ROBIN:
        pick = p->cursor++ % n;
        break;
    case TB_RP_RANDOM:
        pick = (size_t)(s_next(&p->rng) % n);
        break;
    case TB_RP_LEAST_LOADED:
        pick = s_least_loaded(p, n, NULL, 0);
        break;
    case TB_RP_KV_AWARE: {
        memset(&p->last, 0, sizeof(p->last));
        if (!p->index) {
            pick = s_least_loaded(p, n, NULL, 0);
            break;
        }
        int rc = s_kv_pick(p, q, n, &pick);
        if (rc != 0) {
            return rc;
        }
        break;
    }
    }
    struct tb_idir_instance *i = p->cand[pick];
    i->pending++;
    i->served++;
    *out = i;
    return 0;
}
