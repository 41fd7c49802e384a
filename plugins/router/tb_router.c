/*
 * tb_router: the router service (see tb_router.h).  One actor thread owns the bus handle and
 * follows route and load events into the instance directory; every answer is immediate (no
 * queue).  The endpoint is direct (docs/bus.md, "Direct calls"): a caller in this process runs
 * s_on_request on its own thread, so asking the router costs no thread hand-off; callers in other
 * processes reach it over its socket.  The directory, the policy and the counters are shared by
 * those threads under `lock`: every handler that feeds what the policy reads (route and load
 * events here, and any later event such as KV events) changes it under that lock.
 */
#include "tb_router.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_actor.h"
#include "tb_instance_dir.h"
#include "tb_router_policy.h"

#define LOG_INFO(r, ...) TB_LOG_INFO((r)->host, (r)->comp, __VA_ARGS__)
#define LOG_DEBUG(r, ...) TB_LOG_DEBUG((r)->host, (r)->comp, __VA_ARGS__)

struct tb_router {
    const struct tb_host *host;
    tb_component_t *comp;
    struct tb_router_config cfg;
    tb_actor_t *actor;
    pthread_mutex_t lock;   /* over everything below: direct callers and the actor share it */
    tb_instance_dir_t *dir; /* engines ("tokens") and text-level servers ("text") */
    tb_rpolicy_t *policy;
    tb_endpoint_t *ep;
    tb_bus_t *bus; /* the actor's; set in s_init, for wake-ups from direct callers */
    char self[256];
    struct tb_buf enc;
    tb_metric_t *m_decisions, *m_noroute, *m_load_events;
    /* decisions not yet in the registry, per instance (added every FLUSH_NS) */
    struct pending {
        uint64_t id;
        char labels[240];
        int64_t n;
    } * pend;
    size_t n_pend, cap_pend;
    int64_t load_events;
    int64_t next_flush_ns;
    bool flush_armed; /* the actor knows there is something to flush */
};

#define FLUSH_NS 100000000 /* 100 ms */

static void s_count_decision(struct tb_router *r, const struct tb_idir_instance *inst)
{
    if (!r->flush_armed && r->bus) {
        /* a direct caller's decision: the actor may be asleep with nothing to flush */
        r->flush_armed = true;
        r->host->bus_wakeup(r->bus);
    }
    for (size_t i = 0; i < r->n_pend; i++) {
        if (r->pend[i].id == inst->instance_id) {
            r->pend[i].n++;
            return;
        }
    }
    char v[240];
    snprintf(v, sizeof(v), "%s,%s,%016" PRIx64, tb_rpolicy_name(r->cfg.policy), inst->model,
             inst->instance_id);
    if (r->n_pend == r->cap_pend) {
        size_t cap = r->cap_pend ? r->cap_pend * 2 : 8;
        struct pending *p = realloc(r->pend, cap * sizeof(*p));
        if (!p) {
            r->host->metric_add(r->m_decisions, v, 1);
            return;
        }
        r->pend = p;
        r->cap_pend = cap;
    }
    struct pending *p = &r->pend[r->n_pend++];
    p->id = inst->instance_id;
    snprintf(p->labels, sizeof(p->labels), "%s", v);
    p->n = 1;
}

static void s_flush(struct tb_router *r)
{
    for (size_t i = 0; i < r->n_pend; i++) {
        if (r->pend[i].n) {
            r->host->metric_add(r->m_decisions, r->pend[i].labels, (double)r->pend[i].n);
            r->pend[i].n = 0;
        }
    }
    if (r->load_events) {
        r->host->metric_add(r->m_load_events, "", (double)r->load_events);
        r->load_events = 0;
    }
}

/* Flushes the counters every FLUSH_NS while there is something to flush. */
static int s_step(void *user, tb_bus_t *bus)
{
    (void)bus;
    struct tb_router *r = user;
    int64_t now = r->host->now_ns();
    int wait_ms = -1;
    pthread_mutex_lock(&r->lock);
    bool any = r->load_events > 0;
    for (size_t i = 0; i < r->n_pend && !any; i++) {
        any = r->pend[i].n > 0;
    }
    if (any && now >= r->next_flush_ns) {
        s_flush(r);
        r->next_flush_ns = now + FLUSH_NS;
        any = false;
    }
    r->flush_armed = any;
    if (any) {
        wait_ms = (int)((r->next_flush_ns - now) / 1000000) + 1;
    }
    pthread_mutex_unlock(&r->lock);
    return wait_ms;
}

static void s_on_route(const struct tb_route *rt, bool added, void *user)
{
    struct tb_router *r = user;
    pthread_mutex_lock(&r->lock);
    if (added) {
        int rc = tb_instance_dir_add(r->dir, rt, 0);
        if (rc == 1) {
            LOG_INFO(r, "routing model '%s' (%s) to %s instance %016" PRIx64, rt->model,
                     rt->kind && *rt->kind ? rt->kind : "text", rt->endpoint, rt->instance_id);
        } else if (rc < 0) {
            TB_LOG_ERROR(r->host, r->comp, "cannot track route %s: out of memory", rt->endpoint);
        }
    } else if (tb_instance_dir_remove(r->dir, rt->instance_id, NULL)) {
        LOG_INFO(r, "no longer routing to %s instance %016" PRIx64 " (model '%s')", rt->endpoint,
                 rt->instance_id, rt->model);
    }
    pthread_mutex_unlock(&r->lock);
}

static void s_on_load(const char *topic, const void *data, size_t len, void *user)
{
    (void)topic;
    struct tb_router *r = user;
    void *msg = NULL;
    char err[200];
    if (r->host->msg_decode(TB_MSG_LOAD_EVENT, data, len, &msg, err, sizeof(err)) != 0) {
        LOG_DEBUG(r, "dropped a malformed load event: %s", err);
        return;
    }
    const struct tb_msg_load_event *ev = msg;
    pthread_mutex_lock(&r->lock);
    tb_instance_dir_load(r->dir, ev->instance_id, ev->running, ev->waiting,
                         ev->has_kv_used_blocks ? ev->kv_used_blocks : 0,
                         ev->has_kv_total_blocks ? ev->kv_total_blocks : 0);
    r->load_events++;
    pthread_mutex_unlock(&r->lock);
    r->host->msg_free(&msg);
}

/* The answer to one decoded query, under the lock (the directory may change on the actor). */
static void s_answer(struct tb_router *r, tb_request_t *req, const struct tb_msg_route_query *q)
{
    const struct tb_host *h = r->host;
    struct tb_idir_instance *inst = NULL;
    struct tb_rp_query rq = {.model = q->model,
                             .kind = q->kind,
                             .tokens = q->tokens,
                             .n_tokens = q->tokens_count};
    int rc = tb_rpolicy_pick(r->policy, r->dir, &rq, &inst);
    if (rc == TB_ENOMEM) {
        h->bus_reply_error(req, TB_ENOMEM, "out of memory");
        return;
    }
    if (rc != 0) {
        char v[200];
        snprintf(v, sizeof(v), "%s", q->model);
        for (char *p = v; *p; p++) {
            *p = *p == ',' ? '_' : *p;
        }
        h->metric_add(r->m_noroute, v, 1);
        h->bus_reply_error(req, TB_ENOROUTE, "no live instance serves model '%s' (kind %s)",
                           q->model, q->kind);
        return;
    }
    struct tb_msg_route_answer a = {.endpoint = inst->endpoint, .instance_id = inst->instance_id};
    s_count_decision(r, inst);
    r->enc.len = 0;
    if (h->msg_encode(TB_MSG_ROUTE_ANSWER, &a, &r->enc) != 0) {
        h->bus_reply_error(req, TB_EINTERNAL, "cannot encode the answer");
    } else {
        h->bus_reply(req, r->enc.data, r->enc.len, true);
    }
}

/* On the actor, or on a caller's thread (a direct call): answers before it returns. */
static void s_on_request(tb_request_t *req, const void *payload, size_t len, void *user)
{
    struct tb_router *r = user;
    const struct tb_host *h = r->host;
    void *msg = NULL;
    char err[200];
    if (h->msg_decode(TB_MSG_ROUTE_QUERY, payload, len, &msg, err, sizeof(err)) != 0) {
        h->bus_reply_error(req, TB_EPROTO, "malformed route_query: %s", err);
        return;
    }
    pthread_mutex_lock(&r->lock);
    s_answer(r, req, msg);
    pthread_mutex_unlock(&r->lock);
    h->msg_free(&msg);
}

static int s_init(void *user, tb_bus_t *bus)
{
    struct tb_router *r = user;
    const struct tb_host *h = r->host;
    char topic[160];
    snprintf(topic, sizeof(topic), "load.%s", h->namespace_name(r->comp));
    int rc = h->bus_subscribe(bus, topic, s_on_load, r);
    if (rc == 0) {
        rc = h->bus_routes_watch(bus, s_on_route, r);
    }
    if (rc != 0) {
        h->set_error(r->comp, "cannot follow routes and load: %s", h->strerror(rc));
        return rc;
    }
    struct tb_endpoint_meta meta = {.kind = "route"};
    pthread_mutex_lock(&r->lock);
    r->bus = bus;
    pthread_mutex_unlock(&r->lock);
    rc = h->bus_endpoint_add(bus, r->cfg.endpoint, &meta, s_on_request, NULL, r, &r->ep);
    if (rc != 0) {
        h->set_error(r->comp, "cannot serve endpoint '%s': %s", r->cfg.endpoint, h->strerror(rc));
        return rc;
    }
    /* Without it (an older host, or no memory) every query comes over the socket: slower only. */
    if (TB_HOST_HAS(h, bus_endpoint_set_direct) && h->bus_endpoint_set_direct(r->ep, true) != 0) {
        LOG_INFO(r, "router answers over its socket only (no direct calls)");
    }
    LOG_INFO(r, "router serves %s.%s.%s with policy %s", h->namespace_name(r->comp),
             h->component_name(r->comp), r->cfg.endpoint, tb_rpolicy_name(r->cfg.policy));
    return 0;
}

static void s_fini(void *user, tb_bus_t *bus)
{
    (void)bus;
    struct tb_router *r = user;
    if (r->ep) {
        /* no direct caller may run s_on_request once the bus handle is gone */
        r->host->bus_endpoint_remove(bus, r->ep);
        r->ep = NULL;
    }
    pthread_mutex_lock(&r->lock);
    s_flush(r);
    r->bus = NULL;
    pthread_mutex_unlock(&r->lock);
}

static const struct tb_actor_ops s_ops = {.init = s_init, .step = s_step, .fini = s_fini};

int tb_router_new(const struct tb_host *host, tb_component_t *comp,
                  const struct tb_router_config *cfg, tb_router_t **out)
{
    *out = NULL;
    struct tb_router *r = calloc(1, sizeof(*r));
    if (!r) {
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    r->host = host;
    r->comp = comp;
    r->cfg = *cfg;
    pthread_mutex_init(&r->lock, NULL);
    r->policy = tb_rpolicy_new((tb_rp_kind_t)cfg->policy, (uint64_t)cfg->seed);
    r->dir = tb_instance_dir_new("text,tokens");
    if (!r->policy || !r->dir) {
        tb_rpolicy_destroy(&r->policy);
        tb_instance_dir_destroy(&r->dir);
        pthread_mutex_destroy(&r->lock);
        free(r);
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    r->m_decisions = host->metric_get(comp, "turbine_router_decisions_total", TB_METRIC_COUNTER,
                                      "requests routed, by policy, model and instance",
                                      "policy,model,instance", NULL, 0);
    r->m_noroute = host->metric_get(comp, "turbine_router_no_route_total", TB_METRIC_COUNTER,
                                    "queries for a model no live instance serves", "model", NULL,
                                    0);
    r->m_load_events = host->metric_get(comp, "turbine_router_load_events_total",
                                        TB_METRIC_COUNTER, "load events received", "", NULL, 0);
    *out = r;
    return 0;
}

int tb_router_start(tb_router_t *r)
{
    return tb_actor_start(&r->actor, r->host, r->comp, &s_ops, r);
}

void tb_router_stop(tb_router_t *r)
{
    tb_actor_stop(&r->actor);
}

void tb_router_destroy(tb_router_t **r_p)
{
    if (!r_p || !*r_p) {
        return;
    }
    struct tb_router *r = *r_p;
    tb_router_stop(r);
    tb_rpolicy_destroy(&r->policy);
    tb_instance_dir_destroy(&r->dir);
    r->host->buf_free(&r->enc);
    free(r->pend);
    pthread_mutex_destroy(&r->lock);
    free(r);
    *r_p = NULL;
}
