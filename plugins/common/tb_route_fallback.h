/*
 * tb_route_fallback.h - saying so when an instance is chosen without the router.
 *
 * The router is the only holder of a routing policy.  When a component cannot ask it (none is
 * configured, none is live, the call failed, its answer cannot be used) and chooses an instance
 * itself (tb_instance_dir_next), the choice is a fallback, and never a silent one: each is counted
 * in turbine_router_fallback_total{component, model, reason}, and logged at warn: the first one,
 * then at most one line every TB_ROUTE_FALLBACK_LOG_NS with the number since the last line (a
 * deployment without a router would otherwise write a line per request).  See docs/router.md.
 *
 * Not thread-safe: one per component thread.
 */
#ifndef TB_ROUTE_FALLBACK_H
#define TB_ROUTE_FALLBACK_H

#include <stdint.h>

#include "tb_plugin.h"

#define TB_ROUTE_FALLBACK_LOG_NS 10000000000LL /* 10 s */

/* Why the router was not followed (the metric's `reason` label). */
typedef enum {
    TB_RF_NO_ROUTER = 0,    /* "no_router": the component has no router configured */
    TB_RF_ROUTER_DOWN = 1,  /* "router_down": no live router instance, or the call failed */
    TB_RF_ROUTER_ERROR = 2, /* "router_error": the router answered an error */
    TB_RF_BAD_ANSWER = 3,   /* "bad_answer": malformed, or an instance unknown or gone here */
    TB_RF_RETRY = 4,        /* "retry": the chosen instance went away before answering */
} tb_rf_reason_t;

struct tb_route_fallback {
    const struct tb_host *host; /* borrowed */
    tb_component_t *comp;       /* borrowed */
    tb_metric_t *metric;        /* NULL when the registry refused it (counting is then skipped) */
    int64_t next_log_ns;        /* no line before this */
    int64_t unlogged;           /* fallbacks since the last line */
};

/* Prepares `f` for component `comp` (both borrowed for f's life) and finds the metric family.
 * Nothing to release. */
void tb_route_fallback_init(struct tb_route_fallback *f, const struct tb_host *host,
                            tb_component_t *comp);

/* Counts one fallback for `model` and logs it when due.  `detail` (may be NULL) says what
 * happened, e.g. the router's error message. */
void tb_route_fallback_note(struct tb_route_fallback *f, const char *model, tb_rf_reason_t reason,
                            const char *detail);

/* The label value of `reason` ("no_router", ...). */
const char *tb_route_fallback_reason(tb_rf_reason_t reason);

#endif /* TB_ROUTE_FALLBACK_H */
