/*
 * tb_router.h - the router service: serves <namespace>.<component>.<endpoint> ("route"), answers
 * route_query {model, kind} with route_answer {endpoint, instance_id} by its policy, or
 * TB_ENOROUTE.  It learns instances from route events and their load from load_event messages
 * on "load.<namespace>".  See docs/router.md.
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
};

typedef struct tb_router tb_router_t;

int tb_router_new(const struct tb_host *host, tb_component_t *comp,
                  const struct tb_router_config *cfg, tb_router_t **out);
int tb_router_start(tb_router_t *r);
void tb_router_stop(tb_router_t *r);
void tb_router_destroy(tb_router_t **r_p);

#endif /* TB_ROUTER_H */
