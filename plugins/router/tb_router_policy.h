/*
 * tb_router_policy.h - the router's decision: which live instance of the instance directory
 * serves the next request for a model (and kind), by policy: round_robin, random, or
 * least_loaded (fewest running + waiting requests as the engines last reported, plus the
 * requests sent to each since that report, so a burst between two reports spreads out; ties go
 * round robin), or kv_aware (the lowest cost: prefill weight x the prompt blocks it would have to
 * compute on top of its active prefill, plus its active decode blocks; see docs/router.md).
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

struct tb_kv_index;

typedef enum {
    TB_RP_ROUND_ROBIN = 0,
    TB_RP_RANDOM = 1,
    TB_RP_LEAST_LOADED = 2,
    TB_RP_KV_AWARE = 3,
} tb_rp_kind_t;

/* Where kv_aware learns what each instance caches. */
typedef enum {
    TB_RP_KV_EVENTS = 0, /* the engines' kv_event messages (tb_kv_index_apply) */
    TB_RP_KV_APPROX = 1, /* predicted from this policy's own decisions, expiring after a ttl */
} tb_rp_kv_mode_t;

/* kv_aware's settings (docs/router.md, "kv_aware"). */
struct tb_rp_kv_config {
    double prefill_weight; /* cost of one prompt block to compute relative to one decode block */
    double temperature;    /* 0: lowest cost wins; > 0: softmax sampling over normalised costs */
    tb_rp_kv_mode_t mode;
    int64_t approx_ttl_ns; /* approximate mode: how long a predicted block counts */
    uint32_t block_size;   /* 0: each instance's announced kv_block_size (16 when none) */
    uint64_t hash_root;    /* the engines' block hash root (TB_BLOCK_HASH_ROOT) */
};

/* What the last kv_aware decision saw (for the log and metrics). */
struct tb_rp_kv_decision {
    uint32_t prompt_blocks;  /* full blocks of the prompt */
    uint32_t overlap_blocks; /* of those, cached on the chosen instance */
    uint32_t best_overlap;   /* the most any candidate had cached */
    double cost;             /* the chosen instance's cost */
};

/* What a decision is asked about (borrowed for the call). */
struct tb_rp_query {
    const char *model;
    const char *kind;      /* endpoint kind wanted ("text", "tokens"); NULL: any */
    const int32_t *tokens; /* the prompt's ids when known (NULL otherwise) */
    size_t n_tokens;
    const uint64_t *exclude; /* instances to avoid unless no other serves the model */
    size_t n_exclude;
    int64_t now_ns; /* kv_aware: the time (prediction expiry); 0 when not known */
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

/* Gives a kv_aware policy its settings (copied) and the prefix index it reads (borrowed; the
 * router feeds it; in the approximate mode the policy also writes its predictions there).
 * Without it kv_aware routes as least_loaded. */
void tb_rpolicy_set_kv(tb_rpolicy_t *p, const struct tb_rp_kv_config *cfg,
                       struct tb_kv_index *index);

/* What the last successful kv_aware pick saw; zeroed for the other policies. */
const struct tb_rp_kv_decision *tb_rpolicy_last_kv(const tb_rpolicy_t *p);

/* "round_robin", "random", "least_loaded", "kv_aware". */
const char *tb_rpolicy_name(tb_rp_kind_t kind);

#endif /* TB_ROUTER_POLICY_H */
