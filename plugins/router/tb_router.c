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
#include "tb_kv_index.h"
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
    struct kv_state {
        tb_kv_index_t *index; /* kv_aware only */
        tb_bus_t *bus;
        char sync_topic[160];
        tb_metric_series_t *overlap, *events, *gaps, *snap_asked, *blocks;
        int64_t next_expire_ns;
    } kv;
};

#define KV_SNAPSHOT_INTERVAL_NS 1000000000 /* one snapshot request per instance per second */
#define KV_EXPIRE_NS 1000000000            /* approximate mode: sweep expired predictions */

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

/* ---- kv_aware: the prefix index ------------------------------------------------------------ */

static void s_kv_ask_snapshot(struct tb_router *r, uint64_t instance_id)
{
    const struct tb_host *h = r->host;
    if (!tb_kv_index_snapshot_due(r->kv.index, instance_id, h->now_ns(),
                                  KV_SNAPSHOT_INTERVAL_NS)) {
        return;
    }
    struct tb_msg_kv_snapshot_request q = {.instance_id = instance_id};
    struct tb_buf buf = {0};
    if (h->msg_encode(TB_MSG_KV_SNAPSHOT_REQUEST, &q, &buf) == 0) {
        h->bus_publish(r->kv.bus, r->kv.sync_topic, buf.data, buf.len);
        h->metric_series_add(r->kv.snap_asked, 1);
        LOG_DEBUG(r, "kv events of instance %016" PRIx64 " skipped some: asked for a snapshot",
                  instance_id);
    }
    h->buf_free(&buf);
}

static void s_on_kv(const char *topic, const void *data, size_t len, void *user)
{
    (void)topic;
    struct tb_router *r = user;
    const struct tb_host *h = r->host;
    void *msg = NULL;
    char err[200];
    if (h->msg_decode(TB_MSG_KV_EVENT, data, len, &msg, err, sizeof(err)) != 0) {
        LOG_DEBUG(r, "dropped a malformed kv event: %s", err);
        return;
    }
    const struct tb_msg_kv_event *ev = msg;
    /* the index is what kv_aware reads, on direct callers' threads too: under the lock */
    pthread_mutex_lock(&r->lock);
    /* An instance the router does not (or no longer) know: its events would outlive it.  When it
     * appears, its next event shows a gap and a snapshot fills the index. */
    if (tb_instance_dir_get(r->dir, ev->instance_id)) {
        struct tb_kv_index_event ie = {
            .instance_id = ev->instance_id,
            .seq = ev->has_seq ? ev->seq : 0,
            .stored = ev->stored,
            .parents = ev->parents_count == ev->stored_count ? ev->parents : NULL,
            .n_stored = ev->stored_count,
            .removed = ev->removed,
            .n_removed = ev->removed_count,
            .cleared = ev->has_cleared && ev->cleared,
            .snapshot = ev->has_snapshot && ev->snapshot,
        };
        int rc = tb_kv_index_apply(r->kv.index, &ie);
        if (ie.snapshot) {
            LOG_DEBUG(r, "kv snapshot of instance %016" PRIx64 ": %zu blocks", ie.instance_id,
                      ie.n_stored);
        }
        if (rc == TB_KV_INDEX_GAP) {
            h->metric_series_add(r->kv.gaps, 1);
        }
        if (rc != 0) {
            s_kv_ask_snapshot(r, ev->instance_id); /* on the actor: its bus handle */
        }
    }
    pthread_mutex_unlock(&r->lock);
    /* Counted once applied: a direct caller that saw the count sees the blocks too. */
    h->metric_series_add(r->kv.events, 1);
    h->msg_free(&msg);
}

/* The decision's overlap in the histogram, and a debug line. */
static void s_kv_note_decision(struct tb_router *r, const struct tb_idir_instance *inst)
{
    const struct tb_rp_kv_decision *d = tb_rpolicy_last_kv(r->policy);
    r->host->metric_series_add(r->kv.overlap, (double)d->overlap_blocks);
    LOG_DEBUG(r,
              "kv_aware: model '%s' to instance %016" PRIx64 ": %u of %u prompt blocks cached "
              "there (best %u), cost %.1f",
              inst->model, inst->instance_id, d->overlap_blocks, d->prompt_blocks,
              d->best_overlap, d->cost);
}

/* Approximate mode: frees expired predictions now and then; the index size as a gauge. */
static void s_kv_housekeeping(struct tb_router *r, int64_t now)
{
    if (now < r->kv.next_expire_ns) {
        return;
    }
    r->kv.next_expire_ns = now + KV_EXPIRE_NS;
    tb_kv_index_expire(r->kv.index, now);
    /* a snapshot request (or its answer) can be lost like any event: ask again */
    for (size_t i = 0; i < tb_instance_dir_count(r->dir); i++) {
        s_kv_ask_snapshot(r, tb_instance_dir_at(r->dir, i)->instance_id);
    }
    struct tb_kv_index_stats st;
    tb_kv_index_get_stats(r->kv.index, &st);
    r->host->metric_series_set(r->kv.blocks, (double)st.entries);
}

static int s_kv_init(struct tb_router *r, tb_bus_t *bus)
{
    const struct tb_host *h = r->host;
    r->kv.bus = bus;
    const char *ns = h->namespace_name(r->comp);
    snprintf(r->kv.sync_topic, sizeof(r->kv.sync_topic), "kvsync.%s", ns);
    static const double buckets[] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    tb_metric_t *m = h->metric_get(
        r->comp, "turbine_router_kv_overlap_blocks", TB_METRIC_HISTOGRAM,
        "kv_aware: prompt blocks already cached on the instance chosen (queries with tokens)", "",
        buckets, sizeof(buckets) / sizeof(buckets[0]));
    r->kv.overlap = h->metric_series(m, "");
    m = h->metric_get(r->comp, "turbine_router_kv_events_total", TB_METRIC_COUNTER,
                      "kv events received", "", NULL, 0);
    r->kv.events = h->metric_series(m, "");
    m = h->metric_get(r->comp, "turbine_router_kv_gaps_total", TB_METRIC_COUNTER,
                      "kv events that skipped sequence numbers (a snapshot is asked for)", "",
                      NULL, 0);
    r->kv.gaps = h->metric_series(m, "");
    m = h->metric_get(r->comp, "turbine_router_kv_snapshot_requests_total", TB_METRIC_COUNTER,
                      "snapshots asked of engines", "", NULL, 0);
    r->kv.snap_asked = h->metric_series(m, "");
    m = h->metric_get(r->comp, "turbine_router_kv_index_blocks", TB_METRIC_GAUGE,
                      "(block, instance) entries in the prefix index", "", NULL, 0);
    r->kv.blocks = h->metric_series(m, "");
    if (r->cfg.kv_mode != TB_RP_KV_EVENTS) {
        return 0;
    }
    /* Publishing connects a socket on first use, and what is published before the connection
     * is up is lost: publish a request for no instance now, so the first real one arrives. */
    struct tb_msg_kv_snapshot_request none = {.instance_id = 0};
    struct tb_buf buf = {0};
    if (h->msg_encode(TB_MSG_KV_SNAPSHOT_REQUEST, &none, &buf) == 0) {
        h->bus_publish(bus, r->kv.sync_topic, buf.data, buf.len);
    }
    h->buf_free(&buf);
    char topic[160];
    snprintf(topic, sizeof(topic), "kv.%s", ns);
    return h->bus_subscribe(bus, topic, s_on_kv, r);
}

/* Flushes the counters every FLUSH_NS while there is something to flush. */
static int s_step(void *user, tb_bus_t *bus)
{
    (void)bus;
    struct tb_router *r = user;
    int64_t now = r->host->now_ns();
    int wait_ms = -1;
    pthread_mutex_lock(&r->lock);
    int kv_wait = -1;
    if (r->kv.index) {
        s_kv_housekeeping(r, now);
        kv_wait = (int)((r->kv.next_expire_ns - now) / 1000000) + 1;
    }
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
    return kv_wait >= 0 && (wait_ms < 0 || kv_wait < wait_ms) ? kv_wait : wait_ms;
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
        if (r->kv.index) {
            tb_kv_index_remove_instance(r->kv.index, rt->instance_id);
        }
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
    if (ev->has_prefill_blocks || ev->has_decode_blocks) {
        tb_instance_dir_load_blocks(r->dir, ev->instance_id, ev->prefill_blocks,
                                    ev->decode_blocks);
    }
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
                             .n_tokens = q->tokens_count,
                             .exclude = q->exclude,
                             .n_exclude = q->exclude_count,
                             .now_ns = r->kv.index ? h->now_ns() : 0};
    int rc = tb_rpolicy_pick(r->policy, r->dir, &rq, &inst);
    if (rc == 0 && r->kv.index && q->tokens_count > 0) {
        s_kv_note_decision(r, inst);
    }
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
    if (rc == 0 && r->kv.index) {
        rc = s_kv_init(r, bus);
    }
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
    LOG_INFO(r, "router serves %s.%s.%s with policy %s%s", h->namespace_name(r->comp),
             h->component_name(r->comp), r->cfg.endpoint, tb_rpolicy_name(r->cfg.policy),
             !r->kv.index ? ""
             : r->cfg.kv_mode == TB_RP_KV_EVENTS
                 ? " (from the engines' kv events)"
                 : " (approximate: predicted from its own decisions)");
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
    if (cfg->policy == TB_RP_KV_AWARE) {
        r->kv.index = tb_kv_index_new();
        struct tb_rp_kv_config kc = {.prefill_weight = cfg->kv_prefill_weight,
                                     .temperature = cfg->kv_temperature,
                                     .mode = (tb_rp_kv_mode_t)cfg->kv_mode,
                                     .approx_ttl_ns = (int64_t)(cfg->kv_approx_ttl * 1e9),
                                     .block_size = (uint32_t)cfg->kv_block_size};
        if (r->policy && r->kv.index) {
            tb_rpolicy_set_kv(r->policy, &kc, r->kv.index);
        }
    }
    if (!r->policy || !r->dir || (cfg->policy == TB_RP_KV_AWARE && !r->kv.index)) {
        tb_kv_index_destroy(&r->kv.index);
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
    tb_kv_index_destroy(&r->kv.index);
    r->host->buf_free(&r->enc);
    free(r->pend);
    pthread_mutex_destroy(&r->lock);
    free(r);
    *r_p = NULL;
}
