/* tb_node: the process's bus context and its registration agent (see tb_node.h). */
#include "tb_node.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "tb_buf.h"
#include "tb_codec.h"
#include "tb_etcd_sync.h"
#include "tb_log.h"
#include "tb_registry.h"
#include "tb_zmq.h"

#define LOG_NAME "bus"

struct lease {
    uint64_t id;
    void *route_msg; /* decoded copy of the route (owned) */
    struct lease *next;
};

struct cmd {
    int op; /* 1 add, 2 remove */
    uint64_t id;
    struct lease *lease; /* add */
    uint64_t seq;        /* add: set when sent */
    bool done;
    bool abandoned; /* the waiter timed out: whoever finishes the command frees it */
    int rc;
    char message[256];
    struct cmd *next;
};

/* Instance id -> object, for the endpoints of this process that callers reach without ZeroMQ. */
struct itable {
    pthread_rwlock_t lock;
    struct ientry {
        uint64_t instance;
        void *obj;
    } * v;
    size_t n_slots;
    _Atomic size_t n; /* read without the lock: none is the common case */
};

struct tb_node {
    void *zctx;
    tb_registry_t *registry;
    char process_id[20];
    char *registry_addr;
    char *hub_pub;
    char *hub_sub;
    char *transport; /* NULL, "tcp", "ipc" */
    char *host;
    int heartbeat_ms;
    int spin_us;
    int ttl_ms;
    _Atomic uint64_t id_counter;
    uint64_t id_base;

    /* agent */
    void *dealer;
    int wake_fd;
    pthread_t agent;
    bool agent_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct lease *leases; /* held */
    struct cmd *queue;    /* to send */
    struct cmd *inflight; /* adds sent, awaiting answers */
    bool stopping;
    uint64_t seq;

    /* direct endpoints (read-locked while a caller runs one's handler) and the mailboxes of the
     * endpoints served in this process (read-locked while a caller takes a reference) */
    struct itable direct, local;

    /* discovery on etcd (libturbine-etcd.so, opened only when configured) */
    void *etcd_lib;
    tb_etcd_sync_t *etcd_sync;
    tb_etcd_sync_stop_fn etcd_stop;

    tb_curve_t *curve; /* CURVE keys and guard, or NULL */
    char *join_key;    /* the head's public key when joined over tcp with CURVE */
};

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int s_send_request(tb_node_t *n, struct tb_msg_reg_request *q)
{
    struct tb_buf buf = {0};
    int rc = tb_codec_encode(TB_MSG_REG_REQUEST, q, &buf);
    if (rc == 0) {
        const void *parts[1] = {buf.data};
        size_t lens[1] = {buf.len};
        rc = tb_zmq_send(n->dealer, 1, parts, lens, ZMQ_DONTWAIT);
    }
    tb_buf_free(&buf);
    return rc;
}

static void s_send_register(tb_node_t *n, struct lease *l, uint64_t seq)
{
    struct tb_msg_reg_request q = {.op = "register", .seq = seq, .process_id = n->process_id};
    q.route = l->route_msg;
    int rc = s_send_request(n, &q);
    if (rc != 0) {
        TB_CLOG_WARN(LOG_NAME, "cannot send a registration to %s: %s", n->registry_addr,
                     strerror(-rc));
    }
}

/* Answers of the registry, on the agent thread. */
static void s_on_reply(tb_node_t *n, struct tb_msg_reg_reply *rep)
{
    pthread_mutex_lock(&n->lock);
    for (struct cmd **pc = &n->inflight; *pc; pc = &(*pc)->next) {
        struct cmd *c = *pc;
        if (c->seq != rep->seq) {
            continue;
        }
        *pc = c->next;
        c->rc = (int)rep->code;
        snprintf(c->message, sizeof(c->message), "%s", rep->message ? rep->message : "");
        if (c->rc == 0) {
            c->lease->next = n->leases;
            n->leases = c->lease;
        } else {
            tb_codec_free(&c->lease->route_msg);
            free(c->lease);
        }
        c->lease = NULL;
        c->done = true;
        if (c->abandoned) {
            free(c);
        } else {
            pthread_cond_broadcast(&n->cond);
        }
        break;
    }
    /* Leases the registry forgot (it restarted, or this process stalled past the TTL). */
    for (size_t i = 0; i < rep->unknown_count; i++) {
        for (struct lease *l = n->leases; l; l = l->next) {
            if (l->id == rep->unknown[i]) {
                TB_CLOG_INFO(LOG_NAME,
                             "re-registering instance %016" PRIx64
                             " that the registry no longer held",
                             l->id);
                s_send_register(n, l, ++n->seq);
            }
        }
    }
    pthread_mutex_unlock(&n->lock);
}

static void s_flush_queue(tb_node_t *n)
{
    pthread_mutex_lock(&n->lock);
    while (n->queue) {
        struct cmd *c = n->queue;
        n->queue = c->next;
        if (c->op == 1) {
            c->seq = ++n->seq;
            c->next = n->inflight;
            n->inflight = c;
            s_send_register(n, c->lease, c->seq);
        } else {
            struct tb_msg_reg_request q = {.op = "deregister", .seq = ++n->seq};
            q.instances = &c->id;
            q.instances_count = 1;
            s_send_request(n, &q);
            for (struct lease **pl = &n->leases; *pl; pl = &(*pl)->next) {
                if ((*pl)->id == c->id) {
                    struct lease *l = *pl;
                    *pl = l->next;
                    tb_codec_free(&l->route_msg);
                    free(l);
                    break;
                }
            }
            free(c);
        }
    }
    pthread_mutex_unlock(&n->lock);
}

static void s_heartbeat(tb_node_t *n)
{
    pthread_mutex_lock(&n->lock);
    size_t count = 0;
    for (struct lease *l = n->leases; l; l = l->next) {
        count++;
    }
    uint64_t *ids = calloc(count + 1, sizeof(*ids));
    if (ids) {
        size_t k = 0;
        for (struct lease *l = n->leases; l; l = l->next) {
            ids[k++] = l->id;
        }
        struct tb_msg_reg_request q = {.op = "heartbeat", .seq = ++n->seq};
        q.instances = ids;
        q.instances_count = count;
        s_send_request(n, &q);
    }
    pthread_mutex_unlock(&n->lock);
    free(ids);
}

static void *s_agent(void *arg)
{
    tb_node_t *n = arg;
    zmq_pollitem_t items[2] = {{n->dealer, 0, ZMQ_POLLIN, 0}, {NULL, n->wake_fd, ZMQ_POLLIN, 0}};
    int64_t next_hb = s_now_ms() + n->heartbeat_ms;
    int64_t last_answer = s_now_ms();
    bool silent = false;
    for (;;) {
        int64_t now = s_now_ms();
        long timeout = next_hb > now ? (long)(next_hb - now) : 0;
        if (zmq_poll(items, 2, timeout) < 0 && errno != EINTR) {
            TB_CLOG_ERROR(LOG_NAME, "agent poll failed: %s", zmq_strerror(errno));
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t v;
            if (read(n->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
                TB_CLOG_ERROR(LOG_NAME, "agent wakeup read failed: %s", strerror(errno));
            }
        }
        s_flush_queue(n);
        pthread_mutex_lock(&n->lock);
        bool stopping = n->stopping;
        pthread_mutex_unlock(&n->lock);
        if (stopping) {
            break;
        }
        while (items[0].revents & ZMQ_POLLIN) {
            zmq_msg_t parts[TB_ZMQ_MAX_PARTS];
            int np;
            if (tb_zmq_recv(n->dealer, parts, TB_ZMQ_MAX_PARTS, &np, ZMQ_DONTWAIT) != 0) {
                break;
            }
            void *msg = NULL;
            char err[200];
            if (np == 1 &&
                tb_codec_decode(TB_MSG_REG_REPLY, zmq_msg_data(&parts[0]),
                                zmq_msg_size(&parts[0]), &msg, err, sizeof(err)) == 0) {
                last_answer = s_now_ms();
                if (silent) {
                    TB_CLOG_INFO(LOG_NAME, "registry at %s answers again", n->registry_addr);
                    silent = false;
                }
                s_on_reply(n, msg);
                tb_codec_free(&msg);
            }
            tb_zmq_close_parts(parts, np > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : np);
        }
        now = s_now_ms();
        if (now >= next_hb) {
            s_heartbeat(n);
            next_hb = now + n->heartbeat_ms;
            if (!silent && now - last_answer > n->ttl_ms) {
                TB_CLOG_WARN(LOG_NAME,
                             "registry at %s has not answered for %" PRId64
                             " ms: routes of this process may have been dropped",
                             n->registry_addr, now - last_answer);
                silent = true;
            }
        }
    }
    /* Clean stop: deregister what is left so routes go at once, not after the TTL. */
    pthread_mutex_lock(&n->lock);
    size_t count = 0;
    for (struct lease *l = n->leases; l; l = l->next) {
        count++;
    }
    if (count) {
        uint64_t *ids = calloc(count, sizeof(*ids));
        if (ids) {
            size_t k = 0;
            for (struct lease *l = n->leases; l; l = l->next) {
                ids[k++] = l->id;
            }
            struct tb_msg_reg_request q = {.op = "deregister", .seq = ++n->seq};
            q.instances = ids;
            q.instances_count = count;
            s_send_request(n, &q);
            free(ids);
        }
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

static void s_wake(tb_node_t *n)
{
    uint64_t one = 1;
    if (write(n->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        TB_CLOG_ERROR(LOG_NAME, "cannot wake the agent: %s", strerror(errno));
    }
}

/* The first exchange with the registry, on the caller's thread before the agent starts. */
static int s_hello(tb_node_t *n, bool remote, int timeout_ms, char *err, size_t err_len)
{
    struct tb_msg_schema_version self;
    tb_codec_schema_self(&self);
    struct tb_msg_reg_request q = {.op = "hello", .seq = ++n->seq, .process_id = n->process_id};
    q.remote = remote;
    q.has_remote = true;
    q.schema = &self; /* not sent by a process pinned to schema 1.0, as a 1.0 build would not */
    int rc = s_send_request(n, &q);
    if (rc != 0) {
        snprintf(err, err_len, "cannot send to the registry at %s: %s", n->registry_addr,
                 strerror(-rc));
        return TB_EIO;
    }
    int64_t deadline = s_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - s_now_ms();
        zmq_pollitem_t it = {n->dealer, 0, ZMQ_POLLIN, 0};
        if (left <= 0 || zmq_poll(&it, 1, (long)left) <= 0) {
            snprintf(err, err_len,
                     "registry at %s did not answer within %d ms: is the head process running "
                     "and is the address right?",
                     n->registry_addr, timeout_ms);
            return TB_ETIMEDOUT;
        }
        zmq_msg_t parts[TB_ZMQ_MAX_PARTS];
        int np;
        if (tb_zmq_recv(n->dealer, parts, TB_ZMQ_MAX_PARTS, &np, ZMQ_DONTWAIT) != 0) {
            continue;
        }
        void *msg = NULL;
        char derr[512] = "not one frame";
        rc = np == 1 ? tb_codec_decode(TB_MSG_REG_REPLY, zmq_msg_data(&parts[0]),
                                       zmq_msg_size(&parts[0]), &msg, derr, sizeof(derr))
                     : TB_EPROTO;
        tb_zmq_close_parts(parts, np > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : np);
        if (rc != 0) {
            snprintf(err, err_len, "registry at %s answered something unreadable: %s",
                     n->registry_addr, derr);
            return TB_EPROTO;
        }
        struct tb_msg_reg_reply *rep = msg;
        if (rep->code != 0 || !rep->hub_pub || !rep->hub_sub) {
            snprintf(err, err_len, "registry at %s refused: %s", n->registry_addr,
                     rep->message ? rep->message : "no event hub address");
            tb_codec_free(&msg);
            return TB_EPROTO;
        }
        /* The registry judged this process if it is the newer one; judge it if this one is. */
        char why[512];
        if (tb_codec_check_peer_schema(rep->schema, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "cannot join the registry at %s: %s", n->registry_addr, why);
            tb_codec_free(&msg);
            return TB_EPROTO;
        }
        n->hub_pub = strdup(rep->hub_pub);
        n->hub_sub = strdup(rep->hub_sub);
        if (rep->has_heartbeat_ms && rep->heartbeat_ms > 0) {
            n->heartbeat_ms = (int)rep->heartbeat_ms;
        }
        if (rep->has_lease_ttl_ms && rep->lease_ttl_ms > 0) {
            n->ttl_ms = (int)rep->lease_ttl_ms;
        }
        tb_codec_free(&msg);
        return n->hub_pub && n->hub_sub ? 0 : TB_ENOMEM;
    }
}

/* Opens libturbine-etcd.so from the folder this library was loaded from (else the loader's
 * search path) and starts the etcd mirror of the local registry. */
static int s_start_etcd(tb_node_t *n, const struct tb_node_config *cfg, char *err, size_t err_len)
{
    Dl_info info;
    char path[4096] = "libturbine-etcd.so";
    if (dladdr((void *)tb_node_new, &info) && info.dli_fname && strchr(info.dli_fname, '/')) {
        snprintf(path, sizeof(path), "%.*s/libturbine-etcd.so",
                 (int)(strrchr(info.dli_fname, '/') - info.dli_fname), info.dli_fname);
    }
    n->etcd_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!n->etcd_lib) {
        n->etcd_lib = dlopen("libturbine-etcd.so", RTLD_NOW | RTLD_LOCAL);
    }
    tb_etcd_sync_start_fn start = NULL;
    if (n->etcd_lib) {
        *(void **)&start = dlsym(n->etcd_lib, "tb_etcd_sync_start");
        *(void **)&n->etcd_stop = dlsym(n->etcd_lib, "tb_etcd_sync_stop");
    }
    if (!start || !n->etcd_stop) {
        snprintf(err, err_len,
                 "discovery on etcd needs libturbine-etcd.so (built beside "
                 "libturbine-bus.so): %s",
                 dlerror());
        return TB_EIO;
    }
    struct tb_etcd_sync_config sc = {
        .endpoints = cfg->etcd_endpoints,
        .n_endpoints = cfg->n_etcd_endpoints,
        .prefix = cfg->etcd_prefix ? cfg->etcd_prefix : "/turbine/",
        .process_id = n->process_id,
        .zctx = n->zctx,
        .lease_ttl_ms = cfg->etcd_lease_ttl_ms > 0 ? cfg->etcd_lease_ttl_ms : 10000,
        .heartbeat_ms = n->heartbeat_ms,
        .timeout_ms = cfg->etcd_timeout_ms > 0 ? cfg->etcd_timeout_ms : 2000,
        .hub_export = tb_registry_export_addr(n->registry),
        .curve = n->curve};
    char hub[400];
    if (n->curve && sc.hub_export) {
        /* the key travels with the address: "ADDRESS PUBLIC-KEY" (docs/bus.md) */
        snprintf(hub, sizeof(hub), "%s %s", sc.hub_export, tb_curve_public_key(n->curve));
        sc.hub_export = hub;
    }
    int rc = start(&sc, &n->etcd_sync, err, err_len);
    if (rc == 0) {
        TB_CLOG_INFO(LOG_NAME, "discovery on etcd (%zu endpoint%s, keys under %s, process %s)",
                     sc.n_endpoints, sc.n_endpoints == 1 ? "" : "s", sc.prefix, n->process_id);
    }
    return rc;
}

/* CURVE: the keys and the guard, before any socket of the context binds. */
static int s_start_curve(tb_node_t *n, const struct tb_node_config *cfg, char *err,
                         size_t err_len)
{
    if (!cfg->curve) {
        return 0;
    }
    int rc = tb_curve_new(n->zctx, cfg->curve, &n->curve, err, err_len);
    if (rc != 0) {
        return rc;
    }
    if (cfg->join && tb_curve_applies(cfg->join)) {
        if (!cfg->join_key) {
            snprintf(err, err_len,
                     "joining %s over tcp with CURVE needs the head's public key: set "
                     "bus.curve.head_public_key_file",
                     cfg->join);
            return TB_EINVAL;
        }
        n->join_key = strdup(cfg->join_key);
        if (!n->join_key) {
            snprintf(err, err_len, "out of memory");
            return TB_ENOMEM;
        }
    }
    return 0;
}

int tb_node_new(const struct tb_node_config *cfg, tb_node_t **out, char *err, size_t err_len)
{
    int rc = TB_ENOMEM;
    *out = NULL;
    if (tb_codec_schema_pin_check(err, err_len) != 0) {
        return TB_EINVAL;
    }
    tb_node_t *n = calloc(1, sizeof(*n));
    if (!n) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    pthread_rwlock_init(&n->direct.lock, NULL);
    pthread_rwlock_init(&n->local.lock, NULL);
    n->wake_fd = -1;
    uint64_t rnd[2] = {0, 0};
    if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
        rnd[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        rnd[1] = rnd[0] * 0x9e3779b97f4a7c15ULL;
    }
    snprintf(n->process_id, sizeof(n->process_id), "%016" PRIx64, rnd[0]);
    n->id_base = rnd[1] & 0xffffffffff000000ULL;
    n->heartbeat_ms = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 1000;
    n->spin_us = cfg->spin_us > 0 ? cfg->spin_us : 0;
    n->ttl_ms = cfg->lease_ttl_ms > 0 ? cfg->lease_ttl_ms : 3000;
    n->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    const char *transport = cfg->transport;
    if (!transport && (cfg->join || cfg->registry_listen || cfg->n_etcd_endpoints)) {
        transport = "tcp";
    }
    if (transport && strcmp(transport, "tcp") != 0 && strcmp(transport, "ipc") != 0 &&
        strcmp(transport, "inproc") != 0) {
        snprintf(err, err_len, "unknown bus transport '%s': use tcp, ipc or inproc", transport);
        rc = TB_EINVAL;
        goto fail;
    }
    if (transport && strcmp(transport, "inproc") != 0) {
        n->transport = strdup(transport);
    }
    n->zctx = zmq_ctx_new();
    if (!n->zctx || !n->host) {
        snprintf(err, err_len, "cannot create the ZeroMQ context");
        goto fail;
    }
    rc = s_start_curve(n, cfg, err, err_len);
    if (rc != 0) {
        goto fail;
    }
    if (!cfg->join) {
        struct tb_registry_config rc_cfg = {.listen = cfg->registry_listen,
                                            .heartbeat_ms = n->heartbeat_ms,
                                            .lease_ttl_ms = n->ttl_ms,
                                            .export_host = cfg->n_etcd_endpoints ? n->host : NULL,
                                            .curve = n->curve};
        rc = tb_registry_start(n->zctx, &rc_cfg, &n->registry, err, err_len);
        if (rc != 0) {
            goto fail;
        }
        n->registry_addr = strdup(TB_REGISTRY_INPROC);
    } else {
        n->registry_addr = strdup(cfg->join);
    }
    n->dealer = tb_zmq_socket(n->zctx, ZMQ_DEALER);
    n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!n->registry_addr || !n->dealer || n->wake_fd < 0) {
        snprintf(err, err_len, "cannot create the registration agent's sockets");
        rc = TB_EIO;
        goto fail;
    }
    rc = tb_node_curve_client(n, n->dealer, n->registry_addr, n->join_key, err, err_len);
    if (rc != 0) {
        goto fail;
    }
    if (zmq_connect(n->dealer, n->registry_addr) != 0) {
        snprintf(err, err_len, "cannot connect to the registry at '%s': %s", n->registry_addr,
                 zmq_strerror(errno));
        rc = TB_EINVAL;
        goto fail;
    }
    rc = s_hello(n, cfg->join != NULL, cfg->join_timeout_ms > 0 ? cfg->join_timeout_ms : 5000,
                 err, err_len);
    if (rc != 0) {
        goto fail;
    }
    if (pthread_create(&n->agent, NULL, s_agent, n) != 0) {
        snprintf(err, err_len, "cannot start the registration agent");
        rc = TB_EIO;
        goto fail;
    }
    n->agent_started = true;
    if (cfg->n_etcd_endpoints && !cfg->join) {
        rc = s_start_etcd(n, cfg, err, err_len);
        if (rc != 0) {
            goto fail;
        }
    }
    if (cfg->join) {
        TB_CLOG_INFO(LOG_NAME, "joined the registry at %s (process %s, message schema %d.%u)",
                     cfg->join, n->process_id, TB_SCHEMA_MAJOR, tb_codec_schema_minor());
    }
    *out = n;
    return 0;
fail:
    tb_node_destroy(&n);
    return rc;
}

void tb_node_destroy(tb_node_t **node_p)
{
    if (!node_p || !*node_p) {
        return;
    }
    tb_node_t *n = *node_p;
    if (n->etcd_sync) {
        n->etcd_stop(&n->etcd_sync); /* first: the routes leave the other processes at once */
    }
    if (n->agent_started) {
        pthread_mutex_lock(&n->lock);
        n->stopping = true;
        pthread_mutex_unlock(&n->lock);
        s_wake(n);
        pthread_join(n->agent, NULL);
    }
    if (n->dealer) {
        /* Give the final deregistration a moment to leave over tcp. */
        int linger = n->registry ? 0 : 500;
        zmq_setsockopt(n->dealer, ZMQ_LINGER, &linger, sizeof(linger));
        zmq_close(n->dealer);
    }
    while (n->leases) {
        struct lease *l = n->leases;
        n->leases = l->next;
        tb_codec_free(&l->route_msg);
        free(l);
    }
    for (struct cmd *c = n->inflight; c;) {
        struct cmd *next = c->next;
        if (c->lease) {
            tb_codec_free(&c->lease->route_msg);
            free(c->lease);
        }
        free(c); /* a waiter, if any, timed out long ago: destroy comes after every handle */
        c = next;
    }
    for (struct cmd *c = n->queue; c;) {
        struct cmd *next = c->next;
        if (c->lease) {
            tb_codec_free(&c->lease->route_msg);
            free(c->lease);
        }
        free(c);
        c = next;
    }
    tb_registry_stop(&n->registry);
    tb_curve_destroy(&n->curve); /* last: every other socket of the context is closed */
    free(n->join_key);
    if (n->zctx) {
        zmq_ctx_term(n->zctx);
    }
    if (n->wake_fd >= 0) {
        close(n->wake_fd);
    }
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->cond);
    pthread_rwlock_destroy(&n->direct.lock);
    free(n->direct.v);
    pthread_rwlock_destroy(&n->local.lock);
    free(n->local.v);
    free(n->registry_addr);
    free(n->hub_pub);
    free(n->hub_sub);
    free(n->transport);
    free(n->host);
    if (n->etcd_lib) {
        dlclose(n->etcd_lib);
    }
    free(n);
    *node_p = NULL;
}

void *tb_node_zmq(const tb_node_t *n)
{
    return n->zctx;
}

const char *tb_node_process_id(const tb_node_t *n)
{
    return n->process_id;
}

const char *tb_node_registry_addr(const tb_node_t *n)
{
    return n->registry_addr;
}

const char *tb_node_hub_pub(const tb_node_t *n)
{
    return n->hub_pub;
}

const char *tb_node_hub_sub(const tb_node_t *n)
{
    return n->hub_sub;
}

const char *tb_node_listen_addr(const tb_node_t *n)
{
    return n->registry ? tb_registry_listen_addr(n->registry) : NULL;
}

int tb_node_heartbeat_ms(const tb_node_t *n)
{
    return n->heartbeat_ms;
}

int tb_node_spin_us(const tb_node_t *n)
{
    return n->spin_us;
}

int tb_node_lease_ttl_ms(const tb_node_t *n)
{
    return n->ttl_ms;
}

tb_curve_t *tb_node_curve(const tb_node_t *n)
{
    return n->curve;
}

const char *tb_node_join_key(const tb_node_t *n)
{
    return n->join_key;
}

int tb_node_curve_client(const tb_node_t *n, void *sock, const char *addr, const char *key,
                         char *err, size_t err_len)
{
    if (!n->curve || !tb_curve_applies(addr)) {
        return 0;
    }
    char why[512];
    int rc = tb_curve_client(n->curve, sock, key, why, sizeof(why));
    if (rc != 0) {
        snprintf(err, err_len, "cannot connect to %s: %s", addr, why);
    }
    return rc;
}

uint64_t tb_node_new_instance_id(tb_node_t *n)
{
    uint64_t c = atomic_fetch_add(&n->id_counter, 1) + 1;
    uint64_t id = n->id_base | (c & 0xffffff);
    return id == 0 || id == UINT64_MAX ? 1 : id;
}

int tb_node_bind_endpoint(tb_node_t *n, void *router, uint64_t id, char **addrs, size_t *n_addrs,
                          char *err, size_t err_len)
{
    char addr[256];
    *n_addrs = 0;
    snprintf(addr, sizeof(addr), "inproc://tb-ep-%016" PRIx64, id);
    if (zmq_bind(router, addr) != 0) {
        snprintf(err, err_len, "cannot bind '%s': %s", addr, zmq_strerror(errno));
        return TB_EIO;
    }
    addrs[(*n_addrs)++] = strdup(addr);
    if (n->transport) {
        if (strcmp(n->transport, "tcp") == 0) {
            snprintf(addr, sizeof(addr), "tcp://%s:*", n->host);
        } else {
            snprintf(addr, sizeof(addr), "ipc:///tmp/turbine-%d-%016" PRIx64 ".sock",
                     (int)getpid(), id);
        }
        if (n->curve && tb_curve_applies(addr)) {
            int rc = tb_curve_server(n->curve, router, err, err_len);
            if (rc != 0) {
                return rc;
            }
        }
        if (zmq_bind(router, addr) != 0) {
            snprintf(err, err_len, "cannot bind '%s': %s", addr, zmq_strerror(errno));
            return TB_EIO;
        }
        char bound[256];
        size_t len = sizeof(bound);
        if (zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, bound, &len) != 0) {
            snprintf(err, err_len, "cannot read the bound address of '%s'", addr);
            return TB_EIO;
        }
        addrs[(*n_addrs)++] = strdup(bound);
    }
    for (size_t i = 0; i < *n_addrs; i++) {
        if (!addrs[i]) {
            snprintf(err, err_len, "out of memory");
            return TB_ENOMEM;
        }
    }
    return 0;
}

int tb_node_lease_add(tb_node_t *n, const struct tb_msg_route *route, int timeout_ms, char *err,
                      size_t err_len)
{
    struct tb_buf buf = {0};
    struct lease *l = calloc(1, sizeof(*l));
    struct cmd *c = calloc(1, sizeof(*c));
    int rc = TB_ENOMEM;
    /* The route says which schema its messages are in: this process's. */
    struct tb_msg_schema_version self;
    tb_codec_schema_self(&self);
    struct tb_msg_route copy = *route;
    if (!copy.schema) {
        copy.schema = &self;
    }
    for (size_t i = 0; n->curve && !copy.curve_key && i < copy.addresses_count; i++) {
        if (tb_curve_applies(copy.addresses[i])) {
            copy.curve_key = tb_curve_public_key(n->curve); /* how to reach it over tcp */
        }
    }
    if (!l || !c || tb_codec_encode(TB_MSG_ROUTE, &copy, &buf) != 0 ||
        tb_codec_decode(TB_MSG_ROUTE, buf.data, buf.len, &l->route_msg, err, err_len) != 0) {
        snprintf(err, err_len, "cannot copy the route");
        free(l);
        free(c);
        tb_buf_free(&buf);
        return rc;
    }
    tb_buf_free(&buf);
    l->id = route->instance_id;
    c->op = 1;
    c->id = l->id;
    c->lease = l;
    pthread_mutex_lock(&n->lock);
    c->next = n->queue;
    n->queue = c;
    pthread_mutex_unlock(&n->lock);
    s_wake(n);

    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&n->lock);
    while (!c->done) {
        if (pthread_cond_timedwait(&n->cond, &n->lock, &dl) == ETIMEDOUT) {
            break;
        }
    }
    if (c->done) {
        rc = c->rc;
        if (rc != 0) {
            snprintf(err, err_len, "registry refused the route: %s", c->message);
        }
        free(c);
    } else {
        /* The agent still owns the command: it keeps trying, and the lease stays held if the
         * registry answers later.  Report the silence now rather than hang. */
        rc = TB_ETIMEDOUT;
        snprintf(err, err_len, "registry at %s did not confirm the registration within %d ms",
                 n->registry_addr, timeout_ms);
        c->abandoned = true;
    }
    pthread_mutex_unlock(&n->lock);
    return rc;
}

void tb_node_lease_remove(tb_node_t *n, uint64_t instance_id)
{
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c) {
        TB_CLOG_ERROR(LOG_NAME, "out of memory deregistering %016" PRIx64, instance_id);
        return;
    }
    c->op = 2;
    c->id = instance_id;
    pthread_mutex_lock(&n->lock);
    /* Append so a remove never overtakes the add of the same instance. */
    struct cmd **pc = &n->queue;
    while (*pc) {
        pc = &(*pc)->next;
    }
    *pc = c;
    pthread_mutex_unlock(&n->lock);
    s_wake(n);
}

/* ------------------------------------------------------------------------------------------- */
/* Direct endpoints and local mailboxes */

static int s_itable_add(struct itable *t, uint64_t instance_id, void *obj)
{
    int rc = 0;
    pthread_rwlock_wrlock(&t->lock);
    size_t count = atomic_load(&t->n);
    size_t i = 0;
    while (i < count && t->v[i].instance != instance_id) {
        i++;
    }
    if (i == count && count == t->n_slots) {
        size_t cap = count ? count * 2 : 4;
        struct ientry *v = realloc(t->v, cap * sizeof(*v));
        if (v) {
            t->v = v;
            t->n_slots = cap;
        } else {
            rc = TB_ENOMEM;
        }
    }
    if (rc == 0) {
        t->v[i].instance = instance_id;
        t->v[i].obj = obj;
        if (i == count) {
            atomic_store(&t->n, count + 1);
        }
    }
    pthread_rwlock_unlock(&t->lock);
    return rc;
}

static void s_itable_remove(struct itable *t, uint64_t instance_id)
{
    pthread_rwlock_wrlock(&t->lock);
    size_t count = atomic_load(&t->n);
    for (size_t i = 0; i < count; i++) {
        if (t->v[i].instance == instance_id) {
            t->v[i] = t->v[count - 1];
            atomic_store(&t->n, count - 1);
            break;
        }
    }
    pthread_rwlock_unlock(&t->lock);
}

static void *s_itable_acquire(struct itable *t, uint64_t instance_id)
{
    if (atomic_load_explicit(&t->n, memory_order_relaxed) == 0) {
        return NULL;
    }
    pthread_rwlock_rdlock(&t->lock);
    size_t count = atomic_load(&t->n);
    for (size_t i = 0; i < count; i++) {
        if (t->v[i].instance == instance_id) {
            return t->v[i].obj; /* still read-locked: the release unlocks */
        }
    }
    pthread_rwlock_unlock(&t->lock);
    return NULL;
}

int tb_node_direct_add(tb_node_t *n, uint64_t instance_id, void *obj)
{
    return s_itable_add(&n->direct, instance_id, obj);
}

void tb_node_direct_remove(tb_node_t *n, uint64_t instance_id)
{
    s_itable_remove(&n->direct, instance_id);
}

void *tb_node_direct_acquire(tb_node_t *n, uint64_t instance_id)
{
    return s_itable_acquire(&n->direct, instance_id);
}

void tb_node_direct_release(tb_node_t *n)
{
    pthread_rwlock_unlock(&n->direct.lock);
}

int tb_node_local_add(tb_node_t *n, uint64_t instance_id, void *mbox)
{
    return s_itable_add(&n->local, instance_id, mbox);
}

void tb_node_local_remove(tb_node_t *n, uint64_t instance_id)
{
    s_itable_remove(&n->local, instance_id);
}

void *tb_node_local_acquire(tb_node_t *n, uint64_t instance_id)
{
    return s_itable_acquire(&n->local, instance_id);
}

void tb_node_local_release(tb_node_t *n)
{
    pthread_rwlock_unlock(&n->local.lock);
}
