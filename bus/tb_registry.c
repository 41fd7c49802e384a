/* tb_registry: the lease-based route registry and the event hub (see tb_registry.h). */
#include "tb_registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "tb_buf.h"
#include "tb_codec.h"
#include "tb_curve.h"
#include "tb_log.h"
#include "tb_u64map.h"
#include "tb_zmq.h"

#define LOG_NAME "registry"

struct lease {
    void *req;                        /* the decoded reg_request that registered it (owned) */
    const struct tb_msg_route *route; /* inside req */
    int64_t expires_ns;
};

struct tb_registry {
    void *zctx;
    void *router;
    void *xsub;
    void *xpub;
    void *export_pub;  /* export_host: local publishers' events, for other processes */
    void *import_xsub; /* export_host: other processes' events, for local subscribers only */
    char *export_addr;
    int stop_fd;
    pthread_t thread;
    int heartbeat_ms;
    int ttl_ms;
    char *listen;
    char *hub_pub;
    char *hub_sub;
    struct tb_u64map leases;
    uint64_t seq;
    int64_t next_tick_ns;
    tb_curve_t *curve; /* borrowed from the node, or NULL */
};

static int64_t s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char *s_last_endpoint(void *sock)
{
    char buf[512];
    size_t len = sizeof(buf);
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, buf, &len) != 0) {
        return NULL;
    }
    buf[sizeof(buf) - 1] = 0;
    return strdup(buf);
}

/* With CURVE, makes `sock` a CURVE server before it binds the tcp address `addr`. */
static int s_curve_server(tb_registry_t *r, void *sock, const char *addr, char *err,
                          size_t err_len)
{
    if (!r->curve || !tb_curve_applies(addr)) {
        return 0;
    }
    return tb_curve_server(r->curve, sock, err, err_len);
}

/* For a listen address "tcp://H:P" the hub binds "tcp://H:*"; for "ipc://PATH", PATH.suffix. */
static int s_bind_external(tb_registry_t *r, void *sock, const char *listen, const char *suffix,
                           char **bound, char *err, size_t err_len)
{
    char addr[512];
    if (strncmp(listen, "tcp://", 6) == 0) {
        const char *colon = strrchr(listen + 6, ':');
        int hl = colon ? (int)(colon - (listen + 6)) : (int)strlen(listen + 6);
        snprintf(addr, sizeof(addr), "tcp://%.*s:*", hl, listen + 6);
    } else {
        snprintf(addr, sizeof(addr), "%s.%s", listen, suffix);
    }
    if (s_curve_server(r, sock, addr, err, err_len) != 0) {
        return TB_EIO;
    }
    if (zmq_bind(sock, addr) != 0) {
        snprintf(err, err_len, "cannot bind the event hub at '%s': %s", addr,
                 zmq_strerror(errno));
        return TB_EIO;
    }
    *bound = s_last_endpoint(sock);
    return *bound ? 0 : TB_ENOMEM;
}

static void s_publish_event(tb_registry_t *r, bool tick, bool added,
                            const struct tb_msg_route *route)
{
    struct tb_msg_route_event ev = {0};
    struct tb_buf buf = {0};
    if (!tick) {
        r->seq++;
        ev.added = added;
        ev.has_added = true;
        ev.route = route;
    }
    ev.seq = r->seq;
    if (tb_codec_encode(TB_MSG_ROUTE_EVENT, &ev, &buf) == 0) {
        const void *parts[2] = {"route.", buf.data};
        size_t lens[2] = {6, buf.len};
        tb_zmq_send(r->xpub, 2, parts, lens, ZMQ_DONTWAIT);
    }
    tb_buf_free(&buf);
}

static void s_log_route(const char *what, const struct tb_msg_route *rt, const char *why)
{
    TB_CLOG_INFO(LOG_NAME, "route %s: %s instance %016llx%s%s%s at %s%s%s", what, rt->endpoint,
                 (unsigned long long)rt->instance_id, rt->model ? " model '" : "",
                 rt->model ? rt->model : "", rt->model ? "'" : "",
                 rt->addresses_count ? rt->addresses[rt->addresses_count - 1] : "?",
                 why ? " " : "", why ? why : "");
}

static void s_drop_lease(tb_registry_t *r, uint64_t id, const char *why)
{
    struct lease *l = tb_u64map_del(&r->leases, id);
    if (!l) {
        return;
    }
    s_log_route("removed", l->route, why);
    s_publish_event(r, false, false, l->route);
    tb_codec_free(&l->req);
    free(l);
}

static void s_reply(tb_registry_t *r, zmq_msg_t *identity, struct tb_msg_reg_reply *rep)
{
    struct tb_buf buf = {0};
    if (tb_codec_encode(TB_MSG_REG_REPLY, rep, &buf) == 0) {
        const void *parts[2] = {zmq_msg_data(identity), buf.data};
        size_t lens[2] = {zmq_msg_size(identity), buf.len};
        tb_zmq_send(r->router, 2, parts, lens, ZMQ_DONTWAIT);
    }
    tb_buf_free(&buf);
}

static void s_handle(tb_registry_t *r, zmq_msg_t *identity, void *decoded)
{
    struct tb_msg_reg_request *q = decoded;
    struct tb_msg_reg_reply rep = {.seq = q->seq, .code = 0};
    int64_t now = s_now();
    uint64_t *unknown = NULL;
    struct tb_msg_route *routes = NULL;
    bool keep = false;
    struct tb_msg_schema_version self;
    char why[600];
    tb_codec_schema_self(&self);

    if (strcmp(q->op, "hello") == 0) {
        bool remote = q->has_remote && q->remote;
        rep.hub_pub = remote ? r->hub_pub : TB_HUB_OUT_INPROC;
        rep.hub_sub = remote ? r->hub_sub : TB_HUB_IN_INPROC;
        if (remote && !rep.hub_pub) {
            rep.code = TB_EINVAL;
            rep.message = "this registry does not listen for other processes";
        }
        rep.heartbeat_ms = r->heartbeat_ms;
        rep.has_heartbeat_ms = true;
        rep.lease_ttl_ms = r->ttl_ms;
        rep.has_lease_ttl_ms = true;
        rep.schema = &self;
        if (rep.code == 0 && tb_codec_check_peer_schema(q->schema, why, sizeof(why)) != 0) {
            rep.code = TB_EPROTO;
            rep.message = why;
            TB_CLOG_WARN(LOG_NAME, "refused process %s: %s", q->process_id ? q->process_id : "?",
                         why);
        }
        TB_CLOG_DEBUG(LOG_NAME, "hello from process %s%s, message schema %lld.%lld",
                      q->process_id ? q->process_id : "?", remote ? " (remote)" : "",
                      q->schema ? (long long)q->schema->major : 1LL,
                      q->schema ? (long long)q->schema->minor : 0LL);
    } else if (strcmp(q->op, "register") == 0) {
        const struct tb_msg_route *rt = q->route;
        if (!rt || rt->instance_id == 0 || rt->instance_id == UINT64_MAX ||
            rt->addresses_count == 0) {
            rep.code = TB_EINVAL;
            rep.message = "register: a route with an instance id and addresses is required";
        } else if (tb_codec_check_peer_schema(rt->schema ? rt->schema : q->schema, why,
                                              sizeof(why)) != 0) {
            rep.code = TB_EPROTO;
            rep.message = why;
            TB_CLOG_WARN(LOG_NAME, "refused route %s: %s", rt->endpoint, why);
        } else if (tb_u64map_get(&r->leases, rt->instance_id)) {
            struct lease *l = tb_u64map_get(&r->leases, rt->instance_id);
            l->expires_ns = now + (int64_t)r->ttl_ms * 1000000;
            rep.instance_id = rt->instance_id;
            rep.has_instance_id = true;
        } else {
            struct lease *l = calloc(1, sizeof(*l));
            if (!l || tb_u64map_put(&r->leases, rt->instance_id, l) != 0) {
                free(l);
                rep.code = TB_ENOMEM;
                rep.message = "out of memory";
            } else {
                l->req = decoded;
                l->route = rt;
                l->expires_ns = now + (int64_t)r->ttl_ms * 1000000;
                keep = true;
                rep.instance_id = rt->instance_id;
                rep.has_instance_id = true;
                s_log_route("added", rt, NULL);
                s_publish_event(r, false, true, rt);
            }
        }
    } else if (strcmp(q->op, "deregister") == 0) {
        for (size_t i = 0; i < q->instances_count; i++) {
            s_drop_lease(r, q->instances[i], "(deregistered)");
        }
    } else if (strcmp(q->op, "heartbeat") == 0) {
        size_t n_unknown = 0;
        unknown = calloc(q->instances_count + 1, sizeof(*unknown));
        for (size_t i = 0; i < q->instances_count; i++) {
            struct lease *l = tb_u64map_get(&r->leases, q->instances[i]);
            if (l) {
                l->expires_ns = now + (int64_t)r->ttl_ms * 1000000;
            } else if (unknown) {
                unknown[n_unknown++] = q->instances[i];
            }
        }
        rep.unknown = unknown;
        rep.unknown_count = n_unknown;
    } else if (strcmp(q->op, "snapshot") == 0) {
        routes = calloc(r->leases.count + 1, sizeof(*routes));
        size_t n = 0;
        struct lease *l;
        for (size_t it = 0; routes && tb_u64map_next(&r->leases, &it, NULL, (void **)&l);) {
            routes[n++] = *l->route;
        }
        rep.routes = routes;
        rep.routes_count = n;
        rep.routes_seq = r->seq;
        rep.has_routes_seq = true;
        if (!routes) {
            rep.code = TB_ENOMEM;
        }
    } else {
        rep.code = TB_EINVAL;
        rep.message = "unknown op";
    }
    s_reply(r, identity, &rep);
    free(unknown);
    free(routes);
    if (!keep) {
        tb_codec_free(&decoded);
    }
}

static void s_on_router(tb_registry_t *r)
{
    for (int budget = 0; budget < 1000; budget++) {
        zmq_msg_t parts[TB_ZMQ_MAX_PARTS];
        int n;
        if (tb_zmq_recv(r->router, parts, TB_ZMQ_MAX_PARTS, &n, ZMQ_DONTWAIT) != 0) {
            return;
        }
        if (n == 2) {
            void *msg = NULL;
            char err[256];
            if (tb_codec_decode(TB_MSG_REG_REQUEST, zmq_msg_data(&parts[1]),
                                zmq_msg_size(&parts[1]), &msg, err, sizeof(err)) == 0) {
                s_handle(r, &parts[0], msg);
            } else {
                TB_CLOG_WARN(LOG_NAME, "dropped a malformed registry request: %s", err);
            }
        } else {
            TB_CLOG_WARN(LOG_NAME, "dropped a registry request of %d parts", n);
        }
        tb_zmq_close_parts(parts, n > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : n);
    }
}

/* Moves the waiting messages from `from` to `to` and, when `also` is set, a copy to `also`. */
static void s_forward_tee(void *from, void *to, void *also)
{
    for (int budget = 0; budget < 1000; budget++) {
        int more = 1;
        for (int part = 0; more; part++) {
            zmq_msg_t m, c;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, from, part == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close(&m);
                return;
            }
            more = zmq_msg_more(&m);
            int flags = (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT;
            zmq_msg_init(&c);
            if (also && zmq_msg_copy(&c, &m) == 0) {
                zmq_msg_send(&c, also, flags);
            }
            zmq_msg_close(&c);
            zmq_msg_send(&m, to, flags);
            zmq_msg_close(&m);
        }
    }
}

static void s_forward(void *from, void *to)
{
    for (int budget = 0; budget < 1000; budget++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, from, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        int more = zmq_msg_more(&m);
        zmq_msg_send(&m, to, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
        zmq_msg_close(&m);
        while (more) {
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, from, 0) < 0) {
                zmq_msg_close(&m);
                return;
            }
            more = zmq_msg_more(&m);
            zmq_msg_send(&m, to, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
            zmq_msg_close(&m);
        }
    }
}

static void s_expire(tb_registry_t *r, int64_t now)
{
    uint64_t id;
    struct lease *l;
    for (size_t it = 0; tb_u64map_next(&r->leases, &it, &id, (void **)&l);) {
        if (l->expires_ns <= now) {
            char why[96];
            snprintf(why, sizeof(why), "(lease expired: no heartbeat for %d ms)", r->ttl_ms);
            s_drop_lease(r, id, why);
        }
    }
}

static void *s_thread(void *arg)
{
    tb_registry_t *r = arg;
    zmq_pollitem_t items[5] = {
        {r->router, 0, ZMQ_POLLIN, 0},      {r->xsub, 0, ZMQ_POLLIN, 0},
        {r->xpub, 0, ZMQ_POLLIN, 0},        {NULL, r->stop_fd, ZMQ_POLLIN, 0},
        {r->import_xsub, 0, ZMQ_POLLIN, 0},
    };
    int n_items = r->import_xsub ? 5 : 4;
    r->next_tick_ns = s_now() + (int64_t)r->heartbeat_ms * 1000000;
    for (;;) {
        int64_t now = s_now();
        /* Check leases at least every 50 ms so a dead instance goes within TTL + 50 ms. */
        int64_t wait_ns = r->next_tick_ns - now;
        if (wait_ns > 50000000) {
            wait_ns = 50000000;
        }
        long timeout = wait_ns > 0 ? (long)(wait_ns / 1000000) : 0;
        if (zmq_poll(items, n_items, timeout) < 0 && errno != EINTR) {
            TB_CLOG_ERROR(LOG_NAME, "poll failed: %s", zmq_strerror(errno));
            break;
        }
        if (items[3].revents & ZMQ_POLLIN) {
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            s_on_router(r);
        }
        if (items[1].revents & ZMQ_POLLIN) {
            s_forward_tee(r->xsub, r->xpub, r->export_pub);
        }
        if (n_items > 4 && (items[4].revents & ZMQ_POLLIN)) {
            s_forward(r->import_xsub, r->xpub);
        }
        if (items[2].revents & ZMQ_POLLIN) {
            s_forward(r->xpub, r->xsub);
        }
        now = s_now();
        s_expire(r, now);
        if (now >= r->next_tick_ns) {
            s_publish_event(r, true, false, NULL);
            r->next_tick_ns = now + (int64_t)r->heartbeat_ms * 1000000;
        }
    }
    return NULL;
}

static void s_free(tb_registry_t *r)
{
    struct lease *l;
    for (size_t it = 0; tb_u64map_next(&r->leases, &it, NULL, (void **)&l);) {
        tb_codec_free(&l->req);
        free(l);
    }
    tb_u64map_release(&r->leases);
    if (r->router) {
        zmq_close(r->router);
    }
    if (r->xsub) {
        zmq_close(r->xsub);
    }
    if (r->xpub) {
        zmq_close(r->xpub);
    }
    if (r->export_pub) {
        zmq_close(r->export_pub);
    }
    if (r->import_xsub) {
        zmq_close(r->import_xsub);
    }
    free(r->export_addr);
    if (r->stop_fd >= 0) {
        close(r->stop_fd);
    }
    free(r->listen);
    free(r->hub_pub);
    free(r->hub_sub);
    free(r);
}

/* The export PUB (tcp://host:*) and the import XSUB (inproc), subscribed to everything. */
static int s_bind_export(tb_registry_t *r, const char *host, char *err, size_t err_len)
{
    char addr[300];
    snprintf(addr, sizeof(addr), "tcp://%s:*", host);
    r->export_pub = tb_zmq_socket(r->zctx, ZMQ_PUB);
    r->import_xsub = tb_zmq_socket(r->zctx, ZMQ_XSUB);
    if (r->export_pub) {
        int rc = s_curve_server(r, r->export_pub, addr, err, err_len);
        if (rc != 0) {
            return rc; /* err says why */
        }
    }
    if (!r->export_pub || !r->import_xsub || zmq_bind(r->export_pub, addr) != 0 ||
        zmq_bind(r->import_xsub, TB_HUB_IMPORT_INPROC) != 0) {
        snprintf(err, err_len, "cannot bind the event export on %s: %s", addr,
                 zmq_strerror(errno));
        return TB_EIO;
    }
    /* Every local publication must reach the hub to be exported, whether or not a subscriber
     * in this process wants it (a PUB sends only what some upstream XSUB subscribed to). */
    const char subscribe_all = 1;
    zmq_send(r->import_xsub, &subscribe_all, 1, ZMQ_DONTWAIT);
    zmq_send(r->xsub, &subscribe_all, 1, ZMQ_DONTWAIT);
    r->export_addr = s_last_endpoint(r->export_pub);
    return r->export_addr ? 0 : TB_ENOMEM;
}

int tb_registry_start(void *zctx, const struct tb_registry_config *cfg, tb_registry_t **out,
                      char *err, size_t err_len)
{
    int rc = TB_EIO;
    tb_registry_t *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (!r) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    r->stop_fd = -1;
    r->zctx = zctx;
    r->heartbeat_ms = cfg->heartbeat_ms;
    r->ttl_ms = cfg->lease_ttl_ms;
    r->curve = cfg->curve;
    tb_u64map_init(&r->leases);
    r->router = tb_zmq_socket(zctx, ZMQ_ROUTER);
    r->xsub = tb_zmq_socket(zctx, ZMQ_XSUB);
    r->xpub = tb_zmq_socket(zctx, ZMQ_XPUB);
    r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!r->router || !r->xsub || !r->xpub || r->stop_fd < 0) {
        snprintf(err, err_len, "cannot create the registry's sockets: %s", strerror(errno));
        goto fail;
    }
    int one = 1;
    zmq_setsockopt(r->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    /* Late subscribers must not miss the subscription handshake of others. */
    zmq_setsockopt(r->xpub, ZMQ_XPUB_VERBOSE, &one, sizeof(one));
    if (zmq_bind(r->router, TB_REGISTRY_INPROC) != 0 ||
        zmq_bind(r->xsub, TB_HUB_IN_INPROC) != 0 || zmq_bind(r->xpub, TB_HUB_OUT_INPROC) != 0) {
        snprintf(err, err_len, "cannot bind the registry in this process: %s",
                 zmq_strerror(errno));
        goto fail;
    }
    if (cfg->listen) {
        if (s_curve_server(r, r->router, cfg->listen, err, err_len) != 0) {
            goto fail;
        }
        if (zmq_bind(r->router, cfg->listen) != 0) {
            snprintf(err, err_len, "registry cannot listen on '%s': %s", cfg->listen,
                     zmq_strerror(errno));
            goto fail;
        }
        r->listen = s_last_endpoint(r->router);
        rc = s_bind_external(r, r->xpub, cfg->listen, "hub-out", &r->hub_pub, err, err_len);
        if (rc == 0) {
            rc = s_bind_external(r, r->xsub, cfg->listen, "hub-in", &r->hub_sub, err, err_len);
        }
        if (rc != 0) {
            goto fail;
        }
        rc = TB_EIO;
    }
    if (cfg->export_host && s_bind_export(r, cfg->export_host, err, err_len) != 0) {
        goto fail;
    }
    if (pthread_create(&r->thread, NULL, s_thread, r) != 0) {
        snprintf(err, err_len, "cannot start the registry thread");
        goto fail;
    }
    if (r->listen) {
        TB_CLOG_INFO(LOG_NAME, "listening on %s (events on %s), heartbeat %d ms, lease ttl %d ms",
                     r->listen, r->hub_pub, r->heartbeat_ms, r->ttl_ms);
    } else {
        TB_CLOG_INFO(LOG_NAME, "started in-process, heartbeat %d ms, lease ttl %d ms",
                     r->heartbeat_ms, r->ttl_ms);
    }
    *out = r;
    return 0;
fail:
    s_free(r);
    return rc;
}

void tb_registry_stop(tb_registry_t **r_p)
{
    if (!r_p || !*r_p) {
        return;
    }
    tb_registry_t *r = *r_p;
    uint64_t one = 1;
    if (write(r->stop_fd, &one, sizeof(one)) < 0) {
        TB_CLOG_ERROR(LOG_NAME, "cannot signal the registry thread: %s", strerror(errno));
    }
    pthread_join(r->thread, NULL);
    s_free(r);
    *r_p = NULL;
}

const char *tb_registry_listen_addr(const tb_registry_t *r)
{
    return r->listen;
}

const char *tb_registry_hub_pub_addr(const tb_registry_t *r)
{
    return r->hub_pub;
}

const char *tb_registry_export_addr(const tb_registry_t *r)
{
    return r->export_addr;
}

const char *tb_registry_hub_sub_addr(const tb_registry_t *r)
{
    return r->hub_sub;
}
