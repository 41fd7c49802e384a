/*
 * tb_router_policy.h - the router's decision: which live instance of a model (and kind) serves
 * the next request, by policy: round_robin, random, or least_loaded (fewest running + waiting
 * requests as the engines last reported, plus the requests sent to each since that report, so a
 * burst between two reports spreads out; ties go round robin).
 *
 * Pure: no I/O.  Not thread-safe (the router thread owns it).
 */
#ifndef TB_ROUTER_POLICY_H
#define TB_ROUTER_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    TB_RP_ROUND_ROBIN = 0,
    TB_RP_RANDOM = 1,
    TB_RP_LEAST_LOADED = 2,
} tb_rp_kind_t;

/* One instance as the policy knows it (strings owned by the policy). */
struct tb_rp_instance {
    uint64_t id;
    char *endpoint;
    char *model;
    char *kind;
    bool has_load;    /* a load event arrived */
    int64_t running;  /* from its last load event */
    int64_t waiting;
    int64_t kv_used;
    int64_t kv_total;
    int64_t pending;  /* picks since its last load event */
    int64_t picked;   /* picks in total */
};

typedef struct tb_rpolicy tb_rpolicy_t;

/* A policy of `kind`; `seed` drives random (0: seeded from the clock).  Caller owns it; NULL
 * when out of memory. */
tb_rpolicy_t *tb_rpolicy_new(tb_rp_kind_t kind, uint64_t seed);
void tb_rpolicy_destroy(tb_rpolicy_t **p_p);

/* Adds an instance (strings copied).  1 added, 0 already known, TB_ENOMEM. */
int tb_rpolicy_add(tb_rpolicy_t *p, uint64_t id, const char *endpoint, const char *model,
                   const char *kind);
/* Removes an instance; true when it was known. */
bool tb_rpolicy_remove(tb_rpolicy_t *p, uint64_t id);
/* Records an instance's reported load; false when the instance is unknown. */
bool tb_rpolicy_load(tb_rpolicy_t *p, uint64_t id, int64_t running, int64_t waiting,
                     int64_t kv_used, int64_t kv_total);

/* Picks an instance serving `model` with endpoint kind `kind`.  0 with *out borrowed (valid until
 * the policy changes), or TB_ENOROUTE when none serves it. */
int tb_rpolicy_pick(tb_rpolicy_t *p, const char *model, const char *kind,
                    const struct tb_rp_instance **out);

size_t tb_rpolicy_count(const tb_rpolicy_t *p);
const struct tb_rp_instance *tb_rpolicy_at(const tb_rpolicy_t *p, size_t i);

/* "round_robin", "random", "least_loaded". */
const char *tb_rpolicy_name(tb_rp_kind_t kind);

#endif /* TB_ROUTER_POLICY_H */
