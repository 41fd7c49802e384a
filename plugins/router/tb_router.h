/*
 * tb_router.h - the router service: serves <namespace>.<component>.<endpoint> ("route"), answers
 * route_query {model, kind} with route_answer {endpoint, instance_id} by its policy, or
 * TB_ENOROUTE.  It learns instances from route events, their load from load_event messages
 * on "load.<namespace>" and, for kv_aware, the blocks they cache from kv_event messages on
 * "kv.<namespace>" (asking for a snapshot on "kvsync.<namespace>" after a gap).  See
 * docs/router.md.
 */
#ifndef TB_ROUTER_H
#define TB_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "tb_plugin.h"

struct tb_router_config {
    int policy;           /* tb_rp_kind_t */
    const char *endpoint; /* "route" */
    int64_t seed;         /* random policy; 0: from the clock */
    /* kv_aware (docs/router.md) */
    double kv_prefill_weight;
    double kv_temperature;
    int kv_mode;          /* tb_rp_kv_mode_t: 0 events, 1 approximate */
    double kv_approx_ttl; /* seconds */
    int64_t kv_block_size;
};

typedef struct tb_router tb_router_t;

int tb_router_new(const struct tb_host *host, tb_component_t *comp,
                  const struct tb_router_config *cfg, tb_router_t **out);
int tb_router_start(tb_router_t *r);
void tb_router_stop(tb_router_t *r);
void tb_router_destroy(tb_router_t **r_p);

#endif /* TB_ROUTER_H */
