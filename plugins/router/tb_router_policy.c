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
    struct tb_rp_instance *v;
    size_t n, cap;
    size_t *cand; /* scratch: candidate indexes */
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

static void s_release(struct tb_rp_instance *i)
{
    free(i->endpoint);
    free(i->model);
    free(i->kind);
}

void tb_rpolicy_destroy(tb_rpolicy_t **p_p)
{
    if (!p_p || !*p_p) {
        return;
    }
    tb_rpolicy_t *p = *p_p;
    for (size_t i = 0; i < p->n; i++) {
        s_release(&p->v[i]);
    }
    free(p->v);
    free(p->cand);
    free(p);
    *p_p = NULL;
}

static struct tb_rp_instance *s_find(tb_rpolicy_t *p, uint64_t id)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i].id == id) {
            return &p->v[i];
        }
    }
    return NULL;
}

int tb_rpolicy_add(tb_rpolicy_t *p, uint64_t id, const char *endpoint, const char *model,
                   const char *kind)
{
    if (s_find(p, id)) {
        return 0;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        struct tb_rp_instance *v = realloc(p->v, cap * sizeof(*v));
        if (!v) {
            return TB_ENOMEM;
        }
        p->v = v;
        p->cap = cap;
        size_t *c = realloc(p->cand, cap * sizeof(*c));
        if (!c) {
            return TB_ENOMEM;
        }
        p->cand = c;
        p->cap_cand = cap;
    }
    struct tb_rp_instance *i = &p->v[p->n];
    memset(i, 0, sizeof(*i));
    i->id = id;
    i->endpoint = strdup(endpoint ? endpoint : "");
    i->model = strdup(model ? model : "");
    i->kind = strdup(kind && *kind ? kind : "text");
    if (!i->endpoint || !i->model || !i->kind) {
        s_release(i);
        return TB_ENOMEM;
    }
    p->n++;
    return 1;
}

bool tb_rpolicy_remove(tb_rpolicy_t *p, uint64_t id)
{
    struct tb_rp_instance *i = s_find(p, id);
    if (!i) {
        return false;
    }
    size_t k = (size_t)(i - p->v);
    s_release(i);
    memmove(&p->v[k], &p->v[k + 1], (p->n - k - 1) * sizeof(*i));
    p->n--;
    return true;
}

bool tb_rpolicy_load(tb_rpolicy_t *p, uint64_t id, int64_t running, int64_t waiting,
                     int64_t kv_used, int64_t kv_total)
{
    struct tb_rp_instance *i = s_find(p, id);
    if (!i) {
        return false;
    }
    i->has_load = true;
    i->running = running;
    i->waiting = waiting;
    i->kv_used = kv_used;
    i->kv_total = kv_total;
    i->pending = 0;
    return true;
}

/* Load as least_loaded compares it: requests, then KV use (per mille) as a tie-breaker. */
static int64_t s_score(const struct tb_rp_instance *i)
{
    return (i->running + i->waiting + i->pending) * 1024 +
           (i->kv_total > 0 ? i->kv_used * 1000 / i->kv_total : 0);
}

int tb_rpolicy_pick(tb_rpolicy_t *p, const char *model, const char *kind,
                    const struct tb_rp_instance **out)
{
    *out = NULL;
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->v[i].model, model) == 0 && (!kind || strcmp(p->v[i].kind, kind) == 0)) {
            p->cand[n++] = i;
        }
    }
    if (n == 0) {
        return TB_ENOROUTE;
    }
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
            int64_t s = s_score(&p->v[p->cand[c]]);
            if (s < best) {
                best = s;
                pick = c;
            }
        }
        break;
    }
    }
    struct tb_rp_instance *i = &p->v[p->cand[pick]];
    i->pending++;
    i->picked++;
    *out = i;
    return 0;
}

size_t tb_rpolicy_count(const tb_rpolicy_t *p)
{
    return p->n;
}

const struct tb_rp_instance *tb_rpolicy_at(const tb_rpolicy_t *p, size_t i)
{
    return i < p->n ? &p->v[i] : NULL;
}
