/* tb_router_policy: picking an instance (see tb_router_policy.h). */
#include "tb_router_policy.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_errors.h"

struct tb_rpolicy {
    tb_rp_kind_t kind;
    uint64_t rng;
    size_t cursor;
    struct tb_idir_instance **cand; /* scratch: the candidates of one pick */
    size_t cap_cand;
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
    free(p);
    *p_p = NULL;
}

tb_rp_kind_t tb_rpolicy_kind(const tb_rpolicy_t *p)
{
    return p->kind;
}

/* Load as least_loaded compares it: requests, then KV use (per mille) as a tie-breaker. */
static int64_t s_score(const struct tb_idir_instance *i)
{
    return (i->running + i->waiting + i->pending) * 1024 +
           (i->kv_total > 0 ? i->kv_used * 1000 / i->kv_total : 0);
}

/* Fills p->cand with the instances serving the query; returns how many, or TB_ENOMEM. */
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
    for (size_t i = 0; i < total; i++) {
        struct tb_idir_instance *inst = tb_instance_dir_at(dir, i);
        if (strcmp(inst->model, q->model) == 0 &&
            (!q->kind || strcmp(inst->kind, q->kind) == 0)) {
            p->cand[n++] = inst;
        }
    }
    return n;
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
    case TB_RP_LEAST_LOADED: {
        size_t start = p->cursor++ % n;
        int64_t best = INT64_MAX;
        for (size_t k = 0; k < n; k++) {
            size_t c = (start + k) % n;
            int64_t s = s_score(p->cand[c]);
            if (s < best) {
                best = s;
                pick = c;
            }
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
