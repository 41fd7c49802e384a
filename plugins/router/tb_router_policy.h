/*
 * tb_router_policy.h - the router's decision: which live instance of the instance directory
 * serves the next request for a model (and kind), by policy: round_robin, random, or
 * least_loaded (fewest running + waiting requests as the engines last reported, plus the
 * requests sent to each since that report, so a burst between two reports spreads out; ties go
 * round robin).
 *
 * The only routing policy in Turbine: other components ask the router, and choose an instance
 * themselves only as a counted fallback (tb_route_fallback).  A decision is made from a query
 * (model, kind, the prompt's tokens) so that a policy that looks at the tokens (a KV-aware one)
 * fits the same call; it names the instance by id.
 *
 * Pure: no I/O.  Not thread-safe (the router thread owns it and its directory).
 */
#ifndef TB_ROUTER_POLICY_H
#define TB_ROUTER_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_instance_dir.h"

typedef enum {
    TB_RP_ROUND_ROBIN = 0,
    TB_RP_RANDOM = 1,
    TB_RP_LEAST_LOADED = 2,
} tb_rp_kind_t;

/* What a decision is asked about (borrowed for the call). */
struct tb_rp_query {
    const char *model;
    const char *kind;      /* endpoint kind wanted ("text", "tokens"); NULL: any */
    const int32_t *tokens; /* the prompt's ids when known (NULL otherwise) */
    size_t n_tokens;
};

typedef struct tb_rpolicy tb_rpolicy_t;

/* A policy of `kind`; `seed` drives random (0: seeded from the clock).  Caller owns it; NULL
 * when out of memory. */
tb_rpolicy_t *tb_rpolicy_new(tb_rp_kind_t kind, uint64_t seed);
void tb_rpolicy_destroy(tb_rpolicy_t **p_p);

/* Picks an instance of `dir` serving q->model with endpoint kind q->kind, and counts the pick on
 * it (`pending` and `served`).  0 with *out borrowed (valid until `dir` changes), TB_ENOROUTE
 * when none serves it, TB_ENOMEM. */
int tb_rpolicy_pick(tb_rpolicy_t *p, tb_instance_dir_t *dir, const struct tb_rp_query *q,
                    struct tb_idir_instance **out);

tb_rp_kind_t tb_rpolicy_kind(const tb_rpolicy_t *p);

/* "round_robin", "random", "least_loaded". */
const char *tb_rpolicy_name(tb_rp_kind_t kind);

#endif /* TB_ROUTER_POLICY_H */
