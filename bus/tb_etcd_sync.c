/*
 * tb_etcd_sync.c - routes mirrored between the local registry and etcd: see tb_etcd_sync.h.
 */
#include "tb_etcd_sync.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "tb_buf.h"
#include "tb_codec.h"
#include "tb_curve.h"
#include "tb_errors.h"
#include "tb_etcd.h"
#include "tb_log.h"
#include "tb_msgs.h"
#include "tb_registry.h"
#include "tb_u64map.h"
#include "tb_zmq.h"

#define LOG_NAME "discovery"
#define BACKOFF_MAX_MS 5000

/* A route another process wrote, as etcd holds it. */
struct blob {
    uint8_t *data;
    size_t len;
};

struct tb_etcd_sync {
    struct tb_etcd_sync_config cfg;
    char **endpoints;
    char *prefix;
    char *routes_prefix; /* prefix + "routes/" */
    char *hubs_prefix;   /* prefix + "hubs/" */
    char *hub_export;    /* ours, or NULL */
    char *process_id;
    atomic_int stop;
    pthread_t sync_thread, watch_thread;
    bool sync_started, watch_started;

    /* Shared: what the watch thread last saw in etcd (instance id -> struct blob *). */
    pthread_mutex_t lock;
    struct tb_u64map remote;
    struct tb_u64map hubs;   /* process id (as a number) -> struct blob * (its export address) */
    uint64_t remote_version; /* bumped at every change */

    /* The sync thread's own state. */
    tb_etcd_t *etcd;
    int64_t lease;             /* 0: none held */
    struct tb_u64map exported; /* instance id -> (void *)1: written to etcd under the lease */
    struct tb_u64map imported; /* instance id -> decoded route registered locally */
    struct tb_u64map refused;  /* instance id -> (void *)1: its CURVE key is not allowed */
    void *dealer;              /* to the local registry */
    uint64_t seq;
    bool hub_written;          /* our export address is in etcd under the current lease */
    void *import_pub;          /* to the local hub's import socket */
    void *hub_sub;             /* subscribed to the other processes' exports */
    struct tb_u64map hub_conn; /* process id -> strdup'ed address hub_sub is connected to */
};

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps up to `ms`, returning early (true) when asked to stop. */
static bool s_nap(tb_etcd_sync_t *s, int ms)
{
    for (int left = ms; left > 0 && !atomic_load(&s->stop); left -= 50)
        usleep((useconds_t)(left < 50 ? left : 50) * 1000);
    return atomic_load(&s->stop) != 0;
}

/* The next retry delay: doubled up to BACKOFF_MAX_MS, with +-25% jitter so that many processes
 * that lost etcd together do not come back in lockstep. */
static int s_backoff(int *delay_ms)
{
    *delay_ms = *delay_ms ? *delay_ms * 2 : 100;
    if (*delay_ms > BACKOFF_MAX_MS)
        *delay_ms = BACKOFF_MAX_MS;
    return *delay_ms * 3 / 4 + rand() % (*delay_ms / 2 + 1);
}

static void s_blob_free(struct blob *b)
{
    if (b) {
        free(b->data);
        free(b);
    }
}

static void s_clear_remote(struct tb_u64map *m)
{
    struct blob *b;
    for (size_t it = 0; tb_u64map_next(m, &it, NULL, (void **)&b);)
        s_blob_free(b);
    tb_u64map_release(m);
    tb_u64map_init(m);
}

/* ---- the watch thread: etcd -> s->remote ----------------------------------------------------- */

/* The number of a key "<kind prefix><16 hex digits>" (an instance or a process id); 0 when the
 * key is not one of that kind. */
static uint64_t s_key_id(const char *kind, const char *key)
{
    size_t n = strlen(kind);
    if (strncmp(key, kind, n) != 0 || strlen(key + n) != 16)
        return 0;
    char *end;
    uint64_t id = strtoull(key + n, &end, 16);
    return *end ? 0 : id;
}

/* The map a key belongs in (routes or hubs of `maps`) and its number; NULL for other keys. */
static struct tb_u64map *s_key_map(const tb_etcd_sync_t *s, struct tb_u64map *maps[2],
                                   const char *key, uint64_t *id)
{
    if ((*id = s_key_id(s->routes_prefix, key)) != 0)
        return maps[0];
    if ((*id = s_key_id(s->hubs_prefix, key)) != 0)
        return maps[1];
    return NULL;
}

/* Records key = value in the routes or hubs map of `maps`. */
static int s_remote_put(tb_etcd_sync_t *s, struct tb_u64map *maps[2], const struct tb_etcd_kv *kv)
{
    uint64_t id;
    struct tb_u64map *m = s_key_map(s, maps, kv->key, &id);
    if (!m)
        return 0; /* not one of ours: ignored */
    struct blob *b = calloc(1, sizeof(*b));
    if (!b || !(b->data = malloc(kv->value_len ? kv->value_len : 1))) {
        free(b);
        return 0; /* out of memory: the route is missed until the next listing */
    }
    memcpy(b->data, kv->value, kv->value_len);
    b->len = kv->value_len;
    s_blob_free(tb_u64map_del(m, id));
    if (tb_u64map_put(m, id, b) != 0)
        s_blob_free(b);
    return 0;
}

static int s_on_listed(void *ud, const struct tb_etcd_kv *kv)
{
    void **args = ud;
    return s_remote_put(args[0], args[1], kv);
}

static int s_on_event(void *ud, enum tb_etcd_event_type type, const struct tb_etcd_kv *kv)
{
    tb_etcd_sync_t *s = ud;
    struct tb_u64map *maps[2] = {&s->remote, &s->hubs};
    pthread_mutex_lock(&s->lock);
    uint64_t id;
    struct tb_u64map *m;
    if (type == TB_ETCD_EVENT_PUT)
        s_remote_put(s, maps, kv);
    else if ((m = s_key_map(s, maps, kv->key, &id)) != NULL)
        s_blob_free(tb_u64map_del(m, id));
    s->remote_version++;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Lists the namespace; on success replaces the routes and hubs with it and returns the
 * revision. */
static int s_relist(tb_etcd_sync_t *s, tb_etcd_t *e, int64_t *revision, char *err, size_t len)
{
    struct tb_u64map routes, hubs;
    tb_u64map_init(&routes);
    tb_u64map_init(&hubs);
    struct tb_u64map *fresh[2] = {&routes, &hubs};
    void *args[2] = {s, fresh};
    int rc = tb_etcd_list(e, s->prefix, s_on_listed, args, revision, err, len);
    pthread_mutex_lock(&s->lock);
    if (rc == 0) {
        s_clear_remote(&s->remote);
        s_clear_remote(&s->hubs);
        s->remote = routes;
        s->hubs = hubs;
        s->remote_version++;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc != 0) {
        s_clear_remote(&routes);
        s_clear_remote(&hubs);
    }
    return rc;
}

static void *s_watch_main(void *arg)
{
    tb_etcd_sync_t *s = arg;
    struct tb_etcd_config ec = {(const char *const *)s->endpoints, s->cfg.n_endpoints,
                                s->cfg.timeout_ms};
    char err[512];
    tb_etcd_t *e = NULL;
    if (tb_etcd_new(&ec, &e, err, sizeof(err)) != 0) {
        TB_CLOG_ERROR(LOG_NAME, "etcd watch not started: %s", err);
        return NULL;
    }
    int64_t last = -1; /* -1: list first */
    int delay = 0;
    while (!atomic_load(&s->stop)) {
        int rc = 0;
        if (last < 0) {
            rc = s_relist(s, e, &last, err, sizeof(err));
            if (rc == 0)
                TB_CLOG_DEBUG(LOG_NAME, "listed the routes in etcd at revision %" PRId64, last);
        }
        if (rc == 0) {
            delay = 0;
            rc = tb_etcd_watch(e, s->prefix, last + 1, s_on_event, s, &s->stop, &last, err,
                               sizeof(err));
        }
        if (atomic_load(&s->stop))
            break;
        if (rc == TB_ERANGE)
            last = -1; /* compacted past what we saw: list again */
        int wait = s_backoff(&delay);
        TB_CLOG_INFO(LOG_NAME, "etcd watch: %s; again in %d ms", err, wait);
        s_nap(s, wait);
    }
    tb_etcd_destroy(&e);
    return NULL;
}

/* ---- the sync thread: the local registry <-> etcd -------------------------------------------- */

static int s_registry_send(tb_etcd_sync_t *s, struct tb_msg_reg_request *q)
{
    struct tb_buf buf = {0};
    int rc = tb_codec_encode(TB_MSG_REG_REQUEST, q, &buf);
    if (rc == 0) {
        const void *parts[1] = {buf.data};
        size_t lens[1] = {buf.len};
        rc = tb_zmq_send(s->dealer, 1, parts, lens, ZMQ_DONTWAIT);
    }
    tb_buf_free(&buf);
    return rc;
}

/* Handles one reply of the registry: instances a heartbeat named unknown are registered again
 * at the next pass.  Returns the decoded reply when its seq is `want` (caller frees). */
static void *s_registry_reply(tb_etcd_sync_t *s, uint64_t want)
{
    zmq_msg_t parts[TB_ZMQ_MAX_PARTS];
    int np;
    if (tb_zmq_recv(s->dealer, parts, TB_ZMQ_MAX_PARTS, &np, ZMQ_DONTWAIT) != 0)
        return NULL;
    void *msg = NULL;
    char err[256];
    if (np != 1 || tb_codec_decode(TB_MSG_REG_REPLY, zmq_msg_data(&parts[0]),
                                   zmq_msg_size(&parts[0]), &msg, err, sizeof(err)) != 0)
        msg = NULL;
    tb_zmq_close_parts(parts, np > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : np);
    struct tb_msg_reg_reply *rep = msg;
    if (!rep)
        return NULL;
    for (size_t i = 0; i < rep->unknown_count; i++) {
        void *route = tb_u64map_del(&s->imported, rep->unknown[i]);
        tb_codec_free(&route);
    }
    if (rep->code != 0 && rep->seq != want)
        TB_CLOG_WARN(LOG_NAME, "the local registry refused a route from etcd: %s",
                     rep->message ? rep->message : tb_strerror((int)rep->code));
    if (rep->seq == want)
        return msg;
    tb_codec_free(&msg);
    return NULL;
}

/* Asks the local registry for every route it holds; NULL when it did not answer in a second. */
static struct tb_msg_reg_reply *s_snapshot(tb_etcd_sync_t *s)
{
    struct tb_msg_reg_request q = {.op = "snapshot", .seq = ++s->seq};
    if (s_registry_send(s, &q) != 0)
        return NULL;
    for (int64_t end = s_now_ms() + 1000; s_now_ms() < end;) {
        zmq_pollitem_t it = {s->dealer, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        void *rep;
        while ((rep = s_registry_reply(s, q.seq)) != NULL || zmq_poll(&it, 1, 0) > 0)
            if (rep)
                return rep;
    }
    return NULL;
}

/* Holds a lease, granting one when there is none.  0 when one is held. */
static int s_hold_lease(tb_etcd_sync_t *s, int64_t *next_keepalive, char *err, size_t len)
{
    int64_t now = s_now_ms();
    if (s->lease && now < *next_keepalive)
        return 0;
    int ttl_s = (s->cfg.lease_ttl_ms + 999) / 1000;
    int rc;
    if (s->lease) {
        int left;
        rc = tb_etcd_lease_keepalive(s->etcd, s->lease, &left, err, len);
        if (rc == TB_ENOENT) {
            TB_CLOG_WARN(LOG_NAME, "etcd lost this process's lease (%s): registering again", err);
            s->lease = 0;
        } else if (rc != 0) {
            return rc;
        }
    }
    if (!s->lease) {
        int granted;
        rc = tb_etcd_lease_grant(s->etcd, ttl_s, &s->lease, &granted, err, len);
        if (rc != 0)
            return rc;
        /* Everything is written again under the new lease. */
        tb_u64map_release(&s->exported);
        tb_u64map_init(&s->exported);
        s->hub_written = false;
        TB_CLOG_INFO(LOG_NAME, "etcd at %s: lease %016" PRIx64 " (%d s), routes under %s",
                     tb_etcd_endpoint(s->etcd), (uint64_t)s->lease, granted, s->routes_prefix);
    }
    *next_keepalive = now + s->cfg.lease_ttl_ms / 3;
    return 0;
}

/* Writes this process's new routes to etcd and deletes the ones that left. */
static int s_export(tb_etcd_sync_t *s, const struct tb_msg_reg_reply *snap, char *err, size_t len)
{
    int rc = 0;
    if (s->hub_export && !s->hub_written) {
        char key[512];
        snprintf(key, sizeof(key), "%s%s", s->hubs_prefix, s->process_id);
        rc = tb_etcd_put(s->etcd, key, s->hub_export, strlen(s->hub_export), s->lease, 0, NULL,
                         err, len);
        if (rc != 0)
            return rc;
        s->hub_written = true;
    }
    struct tb_u64map live;
    tb_u64map_init(&live);
    for (size_t i = 0; rc == 0 && i < snap->routes_count; i++) {
        const struct tb_msg_route *rt = &snap->routes[i];
        if (strcmp(rt->process_id, s->process_id) != 0)
            continue;
        tb_u64map_put(&live, rt->instance_id, (void *)1);
        if (tb_u64map_get(&s->exported, rt->instance_id))
            continue;
        char key[512];
        snprintf(key, sizeof(key), "%s%016" PRIx64, s->routes_prefix, rt->instance_id);
        struct tb_buf buf = {0};
        rc = tb_codec_encode(TB_MSG_ROUTE, rt, &buf);
        if (rc == 0)
            rc = tb_etcd_put(s->etcd, key, buf.data, buf.len, s->lease, 1, NULL, err, len);
        tb_buf_free(&buf);
        if (rc == 0) {
            tb_u64map_put(&s->exported, rt->instance_id, (void *)1);
            TB_CLOG_DEBUG(LOG_NAME, "route %s instance %016" PRIx64 " written to etcd",
                          rt->endpoint, rt->instance_id);
        }
    }
    uint64_t id;
    for (size_t it = 0; rc == 0 && tb_u64map_next(&s->exported, &it, &id, NULL);) {
        if (tb_u64map_get(&live, id))
            continue;
        char key[512];
        snprintf(key, sizeof(key), "%s%016" PRIx64, s->routes_prefix, id);
        rc = tb_etcd_delete(s->etcd, key, err, len);
        if (rc == 0) {
            tb_u64map_del(&s->exported, id);
            it = 0; /* the map changed under the iterator: start over */
        }
    }
    tb_u64map_release(&live);
    return rc;
}

/* With CURVE, a route is taken from etcd only with a public key this process allows: etcd is
 * not the bus, and a peer whose key is not allowed must not appear to serve anything here.  Each
 * refused instance is logged once at warn. */
static bool s_route_allowed(tb_etcd_sync_t *s, const struct tb_msg_route *rt)
{
    bool tcp = false;
    for (size_t i = 0; i < rt->addresses_count; i++) {
        tcp = tcp || tb_curve_applies(rt->addresses[i]);
    }
    if (!s->cfg.curve || !tcp ||
        (rt->curve_key && tb_curve_is_allowed(s->cfg.curve, rt->curve_key))) {
        return true;
    }
    if (!tb_u64map_get(&s->refused, rt->instance_id) &&
        tb_u64map_put(&s->refused, rt->instance_id, (void *)1) == 0) {
        TB_CLOG_WARN(LOG_NAME,
                     "refused route %s instance %016" PRIx64 " of process %s in etcd (at %s): %s",
                     rt->endpoint, rt->instance_id, rt->process_id,
                     rt->addresses_count ? rt->addresses[rt->addresses_count - 1] : "?",
                     rt->curve_key ? "its CURVE public key is not in the allowed keys"
                                   : "it has no CURVE public key");
    }
    return false;
}

/* Registers in the local registry the routes other processes hold in etcd, deregisters the ones
 * that left, and renews the rest. */
static void s_import(tb_etcd_sync_t *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t id;
    struct blob *b;
    for (size_t it = 0; tb_u64map_next(&s->remote, &it, &id, (void **)&b);) {
        /* a refused key stays refused: the allowed list is read once, at start */
        if (tb_u64map_get(&s->imported, id) || tb_u64map_get(&s->refused, id))
            continue;
        void *msg = NULL;
        char err[256];
        if (tb_codec_decode(TB_MSG_ROUTE, b->data, b->len, &msg, err, sizeof(err)) != 0) {
            TB_CLOG_WARN(LOG_NAME, "ignored route %016" PRIx64 " in etcd: %s", id, err);
            continue;
        }
        struct tb_msg_route *rt = msg;
        if (strcmp(rt->process_id, s->process_id) == 0 || rt->instance_id != id ||
            !s_route_allowed(s, rt) || tb_u64map_put(&s->imported, id, msg) != 0) {
            tb_codec_free(&msg);
            continue;
        }
        struct tb_msg_reg_request q = {.op = "register",
                                       .seq = ++s->seq,
                                       .process_id = rt->process_id,
                                       .route = rt};
        s_registry_send(s, &q);
    }
    size_t n = 0;
    uint64_t *gone = calloc(s->imported.count + 1, sizeof(*gone));
    uint64_t *kept = calloc(s->imported.count + 1, sizeof(*kept));
    size_t n_kept = 0;
    void *route;
    if (!gone || !kept) {
        /* nothing is deregistered or renewed this pass; the next pass (a watch event or the
         * renewal timer) tries again, and a route not renewed meanwhile expires by its lease */
        pthread_mutex_unlock(&s->lock);
        TB_CLOG_WARN(LOG_NAME, "out of memory: %zu imported routes not checked this pass",
                     s->imported.count);
        free(gone);
        free(kept);
        return;
    }
    for (size_t it = 0; tb_u64map_next(&s->imported, &it, &id, &route);) {
        if (tb_u64map_get(&s->remote, id))
            kept[n_kept++] = id;
        else
            gone[n++] = id;
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        route = tb_u64map_del(&s->imported, gone[i]);
        tb_codec_free(&route);
    }
    if (n) {
        struct tb_msg_reg_request q = {.op = "deregister",
                                       .seq = ++s->seq,
                                       .instances = gone,
                                       .instances_count = n};
        s_registry_send(s, &q);
    }
    if (n_kept) {
        struct tb_msg_reg_request q = {.op = "heartbeat",
                                       .seq = ++s->seq,
                                       .instances = kept,
                                       .instances_count = n_kept};
        s_registry_send(s, &q);
    }
    free(gone);
    free(kept);
}

/* A hubs/ value is the export's address, then with CURVE a space and its public key: copies the
 * address into addr and returns the key (NULL without one). */
static const char *s_hub_split(const char *value, char *addr, size_t size)
{
    const char *sp = strchr(value, ' ');
    snprintf(addr, size, "%.*s", sp ? (int)(sp - value) : (int)strlen(value), value);
    return sp ? sp + 1 : NULL;
}

static int s_hub_connect(tb_etcd_sync_t *s, const char *value)
{
    char addr[300];
    const char *key = s_hub_split(value, addr, sizeof(addr));
    if (s->cfg.curve && tb_curve_applies(addr)) {
        char err[512];
        if (tb_curve_client(s->cfg.curve, s->hub_sub, key, err, sizeof(err))) {
            TB_CLOG_WARN(LOG_NAME, "not importing events from %s: %s", addr, err);
            return TB_EINVAL;
        }
    }
    return zmq_connect(s->hub_sub, addr) == 0 ? 0 : TB_EIO;
}

static void s_hub_disconnect(tb_etcd_sync_t *s, const char *value)
{
    char addr[300];
    s_hub_split(value, addr, sizeof(addr));
    zmq_disconnect(s->hub_sub, addr);
}

/* Connects the event subscriber to every other process's export and drops the ones that left. */
static void s_follow_hubs(tb_etcd_sync_t *s)
{
    if (!s->hub_sub)
        return;
    uint64_t self = strtoull(s->process_id, NULL, 16);
    uint64_t id;
    struct blob *b;
    char *addr;
    pthread_mutex_lock(&s->lock);
    for (size_t it = 0; tb_u64map_next(&s->hub_conn, &it, &id, (void **)&addr);) {
        b = tb_u64map_get(&s->hubs, id);
        if (b && strlen(addr) == b->len && memcmp(addr, b->data, b->len) == 0)
            continue;
        s_hub_disconnect(s, addr);
        TB_CLOG_DEBUG(LOG_NAME, "no longer importing events from process %016" PRIx64, id);
        free(tb_u64map_del(&s->hub_conn, id));
        it = 0; /* the map changed under the iterator: start over */
    }
    for (size_t it = 0; tb_u64map_next(&s->hubs, &it, &id, (void **)&b);) {
        if (id == self || tb_u64map_get(&s->hub_conn, id))
            continue;
        addr = strndup((const char *)b->data, b->len);
        if (!addr || s_hub_connect(s, addr) != 0 || tb_u64map_put(&s->hub_conn, id, addr) != 0) {
            TB_CLOG_WARN(LOG_NAME, "cannot import events from process %016" PRIx64 " at %s", id,
                         addr ? addr : "?");
            free(addr);
            continue;
        }
        TB_CLOG_DEBUG(LOG_NAME, "importing events from process %016" PRIx64 " at %s", id, addr);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Waits `ms`, meanwhile handing the events other processes export to the local hub.  Returns
 * true when asked to stop. */
static bool s_pump(tb_etcd_sync_t *s, int ms)
{
    if (!s->hub_sub)
        return s_nap(s, ms);
    for (int64_t end = s_now_ms() + ms; !atomic_load(&s->stop);) {
        int64_t left = end - s_now_ms();
        if (left <= 0)
            break;
        zmq_pollitem_t it = {s->hub_sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, left < 100 ? (long)left : 100) <= 0)
            continue;
        for (int budget = 0; budget < 1000; budget++) {
            zmq_msg_t parts[TB_ZMQ_MAX_PARTS];
            int n;
            if (tb_zmq_recv(s->hub_sub, parts, TB_ZMQ_MAX_PARTS, &n, ZMQ_DONTWAIT) != 0)
                break;
            int keep = n > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : n;
            for (int i = 0; n <= TB_ZMQ_MAX_PARTS && i < n; i++)
                zmq_msg_send(&parts[i], s->import_pub,
                             (i + 1 < n ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
            tb_zmq_close_parts(parts, keep);
        }
    }
    return atomic_load(&s->stop) != 0;
}

static void *s_sync_main(void *arg)
{
    tb_etcd_sync_t *s = arg;
    int64_t next_keepalive = 0;
    int delay = 0, tick = s->cfg.heartbeat_ms / 2 > 0 ? s->cfg.heartbeat_ms / 2 : 100;
    char err[512];
    bool reported = false;
    while (!atomic_load(&s->stop)) {
        int rc = s_hold_lease(s, &next_keepalive, err, sizeof(err));
        struct tb_msg_reg_reply *snap = rc == 0 ? s_snapshot(s) : NULL;
        if (snap) {
            rc = s_export(s, snap, err, sizeof(err));
            void *m = snap;
            tb_codec_free(&m);
        }
        s_import(s);
        s_follow_hubs(s);
        while (s_registry_reply(s, 0))
            ; /* drain the replies to registrations and heartbeats */
        if (rc != 0) {
            int wait = s_backoff(&delay);
            /* etcd starting after us, or briefly away, is normal operation: info, not error. */
            TB_CLOG_INFO(LOG_NAME, "etcd not reachable%s: %s; again in %d ms",
                         reported ? "" : " yet", err, wait);
            reported = true;
            if (s_pump(s, wait))
                break;
            continue;
        }
        delay = 0;
        s_pump(s, tick);
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void s_free(tb_etcd_sync_t *s)
{
    for (size_t i = 0; s->endpoints && i < s->cfg.n_endpoints; i++)
        free(s->endpoints[i]);
    free(s->endpoints);
    free(s->prefix);
    free(s->routes_prefix);
    free(s->hubs_prefix);
    free(s->hub_export);
    free(s->process_id);
    s_clear_remote(&s->remote);
    s_clear_remote(&s->hubs);
    char *addr;
    for (size_t it = 0; tb_u64map_next(&s->hub_conn, &it, NULL, (void **)&addr);)
        free(addr);
    tb_u64map_release(&s->hub_conn);
    if (s->hub_sub)
        zmq_close(s->hub_sub);
    if (s->import_pub)
        zmq_close(s->import_pub);
    tb_u64map_release(&s->exported);
    void *route;
    tb_u64map_release(&s->refused);
    for (size_t it = 0; tb_u64map_next(&s->imported, &it, NULL, &route);)
        tb_codec_free(&route);
    tb_u64map_release(&s->imported);
    if (s->dealer)
        zmq_close(s->dealer);
    tb_etcd_destroy(&s->etcd);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int tb_etcd_sync_start(const struct tb_etcd_sync_config *cfg, tb_etcd_sync_t **out, char *err,
                       size_t err_len)
{
    *out = NULL;
    if (!cfg->n_endpoints || !cfg->prefix || !cfg->process_id || !cfg->zctx ||
        cfg->lease_ttl_ms < 2000 || cfg->heartbeat_ms <= 0 || cfg->timeout_ms <= 0)
        return tb_err_fail(err, err_len, TB_EINVAL, "etcd discovery: incomplete configuration");
    tb_etcd_sync_t *s = calloc(1, sizeof(*s));
    if (!s)
        return tb_err_fail(err, err_len, TB_ENOMEM, "etcd discovery: out of memory");
    pthread_mutex_init(&s->lock, NULL);
    tb_u64map_init(&s->remote);
    tb_u64map_init(&s->hubs);
    tb_u64map_init(&s->hub_conn);
    tb_u64map_init(&s->exported);
    tb_u64map_init(&s->imported);
    tb_u64map_init(&s->refused);
    s->cfg = *cfg;
    s->endpoints = calloc(cfg->n_endpoints, sizeof(char *));
    s->prefix = strdup(cfg->prefix);
    s->process_id = strdup(cfg->process_id);
    int rc = TB_ENOMEM;
    if (!s->endpoints || !s->prefix || !s->process_id ||
        asprintf(&s->routes_prefix, "%sroutes/", cfg->prefix) < 0) {
        s->routes_prefix = NULL;
        goto fail;
    }
    if (asprintf(&s->hubs_prefix, "%shubs/", cfg->prefix) < 0) {
        s->hubs_prefix = NULL;
        goto fail;
    }
    if (cfg->hub_export) {
        static const char all[] = "";
        s->hub_export = strdup(cfg->hub_export);
        s->import_pub = tb_zmq_socket(cfg->zctx, ZMQ_PUB);
        s->hub_sub = tb_zmq_socket(cfg->zctx, ZMQ_SUB);
        if (!s->hub_export || !s->import_pub || !s->hub_sub ||
            zmq_connect(s->import_pub, TB_HUB_IMPORT_INPROC) != 0 ||
            zmq_setsockopt(s->hub_sub, ZMQ_SUBSCRIBE, all, 0) != 0)
            goto fail;
    }
    for (size_t i = 0; i < cfg->n_endpoints; i++)
        if (!(s->endpoints[i] = strdup(cfg->endpoints[i])))
            goto fail;
    /* A renewal must be able to fail over to the next endpoint and still arrive in time: no
     * request may take more than a quarter of the TTL. */
    if (s->cfg.timeout_ms > cfg->lease_ttl_ms / 4)
        s->cfg.timeout_ms = cfg->lease_ttl_ms / 4;
    struct tb_etcd_config ec = {(const char *const *)s->endpoints, cfg->n_endpoints,
                                s->cfg.timeout_ms};
    rc = tb_etcd_new(&ec, &s->etcd, err, err_len);
    if (rc != 0)
        goto fail_quiet;
    s->dealer = tb_zmq_socket(cfg->zctx, ZMQ_DEALER);
    if (!s->dealer || zmq_connect(s->dealer, TB_REGISTRY_INPROC) != 0) {
        rc = TB_EIO;
        goto fail;
    }
    if (pthread_create(&s->sync_thread, NULL, s_sync_main, s) != 0)
        goto fail;
    s->sync_started = true;
    if (pthread_create(&s->watch_thread, NULL, s_watch_main, s) != 0) {
        tb_etcd_sync_stop(&s);
        return tb_err_fail(err, err_len, TB_ENOMEM, "etcd discovery: cannot start a thread");
    }
    s->watch_started = true;
    *out = s;
    return 0;
fail:
    tb_err_set(err, err_len, "etcd discovery: %s", tb_strerror(rc));
fail_quiet:
    s_free(s);
    return rc;
}

void tb_etcd_sync_stop(tb_etcd_sync_t **s_p)
{
    if (!s_p || !*s_p)
        return;
    tb_etcd_sync_t *s = *s_p;
    atomic_store(&s->stop, 1);
    if (s->sync_started)
        pthread_join(s->sync_thread, NULL);
    if (s->watch_started)
        pthread_join(s->watch_thread, NULL);
    if (s->lease) {
        char err[256];
        if (tb_etcd_lease_revoke(s->etcd, s->lease, err, sizeof(err)) != 0)
            TB_CLOG_INFO(LOG_NAME,
                         "leaving without revoking the etcd lease (%s): this "
                         "process's routes go when it expires",
                         err);
    }
    s_free(s);
    *s_p = NULL;
}
