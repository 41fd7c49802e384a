/*
 * tb_bus: a thread's bus handle (see tb_bus.h).
 *
 * Wire protocol (docs/bus.md): a caller's DEALER sends [frame][payload] to the serving ROUTER,
 * which answers [frame][payload] chunks to the caller's identity.  frame.kind: 1 request,
 * 2 cancel, 3 data, 4 final, 5 error, 6 ping, 7 pong.  Calls fail at once with TB_ENOROUTE when no
 * instance is known, with TB_EGONE when the route of their instance is removed (death is noticed
 * within the lease TTL), and with TB_ETIMEDOUT at their deadline.
 */
#include "tb_bus.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "tb_buf.h"
#include "tb_codec.h"
#include "tb_log.h"
#include "tb_mbox.h"
#include "tb_metrics.h"
#include "tb_route_table.h"
#include "tb_spin.h"
#include "tb_u64map.h"
#include "tb_zmq.h"

enum {
    K_REQUEST = 1,
    K_CANCEL = 2,
    K_DATA = 3,
    K_FINAL = 4,
    K_ERROR = 5,
    K_PING = 6,
    K_PONG = 7,
};

#define MAX_IDENT 255
#define DEADLINE_CHECK_NS 20000000         /* 20 ms */
#define DISPATCH_BUDGET 256                /* messages per socket per run, for fairness */
#define SERVER_DEADLINE_SLACK_NS 500000000 /* 0.5 s */
#define EPOLL_BATCH 64

/* What a watched descriptor stands for. */
enum src_kind { IT_WAKE, IT_SUB, IT_REG, IT_ENDPOINT, IT_CONN, IT_WATCH, IT_DIRECT, IT_MBOX };

/* One descriptor in the handle's epoll set: the wake eventfd, a watched fd, or a ZeroMQ socket's
 * ZMQ_FD.  A ZeroMQ socket's descriptor only says that commands are waiting, and any call on the
 * socket (a send too) may consume that signal, so a socket is read while `ready` and `ready` is
 * cleared only when a read found nothing (EAGAIN): from then on a new message signals again. */
struct src {
    enum src_kind kind;
    void *obj;  /* struct conn, struct endpoint or struct watch; NULL otherwise */
    void *sock; /* the ZeroMQ socket, or NULL */
    int fd;
    bool ready;
    bool tracked; /* in the epoll set */
};

struct endpoint {
    struct src src;
    tb_bus_t *bus;
    char *name;
    uint64_t instance;
    void *router;
    tb_request_fn on_request;
    tb_cancel_fn on_cancel;
    void *user;
    struct tb_u64map reqs; /* key: mix(identity, id) */
    bool direct;           /* callers in this process run on_request (tb_node_direct_*) */
    bool dead;             /* removed: closed at the end of the run */
    struct endpoint *next_dead;
};

struct tb_request {
    struct endpoint *ep;
    uint64_t key;
    uint64_t id;
    int64_t deadline_ns;
    void *user;
    bool cancelled;
    /* a direct request (on the caller's stack): the caller's handle, where its chunks queue */
    tb_bus_t *caller;
    bool answered; /* direct: its final or error chunk is queued */
    /* a local request (from a handle of this process, by mailbox): the caller's mailbox, a
     * reference; its address is also the request's identity */
    tb_mbox_t *from;
    size_t ident_len;
    uint8_t ident[MAX_IDENT];
};

struct conn {
    struct src src;
    uint64_t instance;
    void *dealer;     /* NULL for a local instance */
    tb_mbox_t *local; /* a local instance: its handle's mailbox (a reference) */
    size_t n_calls;
    bool dead;
    struct conn *next_dead;
};

struct tb_call {
    tb_bus_t *bus;
    uint64_t id;
    uint64_t instance;
    struct conn *conn;
    int64_t deadline_ns;
    int timeout_ms;
    tb_chunk_fn cb;
    void *user;
};

struct subscription {
    char *prefix;
    size_t prefix_len;
    tb_event_fn fn;
    void *user;
};

struct watch {
    struct src src;
    int fd;
    tb_fd_fn fn;
    void *user;
    struct watch *next_dead;
};

struct route_watcher {
    tb_route_fn fn;
    void *user;
};

/* A chunk a direct endpoint answered, queued for the caller's next run (its on_chunk must not run
 * inside bus_call). */
struct dchunk {
    struct dchunk *next;
    uint64_t call_id;
    tb_chunk_kind_t kind;
    int code;
    char *message; /* ERROR: points into data, after the payload */
    size_t len;
    uint8_t data[];
};

struct tb_bus {
    tb_node_t *node;
    char *ns;
    char *comp;
    char log_name[80];
    void *sub;
    void *pub;
    void *reg;
    int wake_fd;
    int epfd;

    tb_route_table_t *routes;
    uint64_t routes_seq;
    bool synced;
    bool snapshot_pending;
    int64_t snapshot_sent_ns;
    uint64_t reg_seq;
    uint64_t rr_cursor;
    /* calls that named no instance of a model-serving endpoint: the bus chose (a fallback) */
    tb_metric_t *m_fallback;
    int64_t fallback_next_log_ns;
    int64_t fallback_unlogged;

    struct endpoint **eps;
    size_t n_eps, cap_eps;
    struct endpoint *dead_eps;

    struct tb_u64map calls;
    struct tb_u64map conns;
    struct conn *dead_conns;
    uint64_t next_call_id;

    struct subscription *subs;
    size_t n_subs;
    struct watch **watches;
    size_t n_watches;
    struct watch *dead_watches;
    struct route_watcher *rwatch;
    size_t n_rwatch;

    struct dchunk *dq_head, *dq_tail; /* direct endpoints' answers, in order */

    tb_mbox_t *mbox;        /* local requests to our endpoints, and answers to our local calls */
    struct tb_mbox_msg *mq; /* taken from it, not yet handled (a run's budget was spent) */
    struct src wake_src, sub_src, reg_src, direct_src, mbox_src;
    struct src **order; /* every source in dispatch order (rebuilt when dirty) */
    size_t n_order, cap_order;
    bool dirty;
    bool in_run;
    int64_t next_deadline_ns;
    int callbacks;
    int64_t last_activity_ns; /* the end of the last run that ran callbacks */
    int64_t spin_ns;          /* how long after it s_wait polls before sleeping; 0: never */
    bool fd_exported;         /* tb_bus_fd was called: an outside loop waits on epfd */
};

static int64_t s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t s_mix(const uint8_t *ident, size_t len, uint64_t id)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ ident[i]) * 0x100000001b3ULL;
    }
    h ^= id + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    return (h == 0 || h == UINT64_MAX) ? 1 : h;
}

bool tb_bus_name_is_valid(const char *name, bool full)
{
    int parts = 1;
    size_t run = 0;
    if (!name || !*name) {
        return false;
    }
    for (const char *p = name; *p; p++) {
        if (*p == '.') {
            if (!full || run == 0) {
                return false;
            }
            parts++;
            run = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                   *p == '-') {
            run++;
        } else {
            return false;
        }
    }
    return run > 0 && (!full || parts == 3) && strlen(name) <= 200;
}

/* ------------------------------------------------------------------------------------------- */
/* Sockets and the poll set */

static int s_zmq_fd(void *sock)
{
    int fd = -1;
    size_t len = sizeof(fd);
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &len) != 0) {
        return -1;
    }
    return fd;
}

/* Adds a source to the epoll set.  A socket starts ready: it may hold messages already. */
static void s_src_track(tb_bus_t *bus, struct src *s, enum src_kind kind, void *obj, void *sock,
                        int fd)
{
    s->kind = kind;
    s->obj = obj;
    s->sock = sock;
    s->fd = sock ? s_zmq_fd(sock) : fd;
    s->ready = sock != NULL;
    bus->dirty = true;
    if (s->fd < 0) {
        TB_CLOG_WARN(bus->log_name, "cannot get the descriptor of a socket");
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.ptr = s;
    if (epoll_ctl(bus->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
        TB_CLOG_WARN(bus->log_name, "cannot watch fd %d: %s", s->fd, strerror(errno));
        return;
    }
    s->tracked = true;
}

static void s_src_untrack(tb_bus_t *bus, struct src *s)
{
    if (s->tracked) {
        epoll_ctl(bus->epfd, EPOLL_CTL_DEL, s->fd, NULL);
        s->tracked = false;
    }
    s->ready = false;
    bus->dirty = true;
}

static int s_order_push(tb_bus_t *bus, struct src *s)
{
    if (bus->n_order == bus->cap_order) {
        size_t cap = bus->cap_order ? bus->cap_order * 2 : 16;
        struct src **v = realloc(bus->order, cap * sizeof(*v));
        if (!v) {
            return TB_ENOMEM;
        }
        bus->order = v;
        bus->cap_order = cap;
    }
    bus->order[bus->n_order++] = s;
    return 0;
}

static int s_rebuild_order(tb_bus_t *bus)
{
    bus->n_order = 0;
    /* Replies before route events: when an instance stops cleanly its last error chunks
     * (TB_EDRAINING) must reach the caller before the route removal fails the call as gone. */
    int rc = s_order_push(bus, &bus->wake_src);
    rc = rc ? rc : s_order_push(bus, &bus->mbox_src);
    struct conn *c;
    for (size_t it = 0; rc == 0 && tb_u64map_next(&bus->conns, &it, NULL, (void **)&c);) {
        rc = s_order_push(bus, &c->src);
    }
    rc = rc ? rc : s_order_push(bus, &bus->direct_src);
    for (size_t i = 0; i < bus->n_eps && rc == 0; i++) {
        rc = s_order_push(bus, &bus->eps[i]->src);
    }
    rc = rc ? rc : s_order_push(bus, &bus->sub_src);
    rc = rc ? rc : s_order_push(bus, &bus->reg_src);
    for (size_t i = 0; i < bus->n_watches && rc == 0; i++) {
        rc = s_order_push(bus, &bus->watches[i]->src);
    }
    if (rc == 0) {
        bus->dirty = false;
    }
    return rc;
}

static int s_send_frame(void *sock, const uint8_t *ident, size_t ident_len,
                        const struct tb_msg_frame *f, const void *data, size_t len)
{
    struct tb_buf hdr = {0};
    int rc = tb_codec_encode(TB_MSG_FRAME, f, &hdr);
    if (rc == 0) {
        const void *parts[3];
        size_t lens[3];
        int n = 0;
        if (ident) {
            parts[n] = ident;
            lens[n++] = ident_len;
        }
        parts[n] = hdr.data;
        lens[n++] = hdr.len;
        if (data || len) {
            parts[n] = data ? data : "";
            lens[n++] = len;
        }
        rc = tb_zmq_send(sock, n, parts, lens, ZMQ_DONTWAIT);
    }
    tb_buf_free(&hdr);
    return rc;
}

/* Sends a message to a handle of this process: a block from our mailbox's pool queued in `to`
 * (docs/bus.md, "Calls within a process").  `from` (requests, cancels, pings: our mailbox) gets a
 * reference.  0, TB_ENOMEM, or TB_EGONE when `to` is closing. */
static int s_local_send(tb_bus_t *bus, tb_mbox_t *to, const struct tb_msg_frame *f,
                        uint64_t instance, tb_mbox_t *from, const void *data, size_t len)
{
    size_t mlen = f->message ? strlen(f->message) + 1 : 0;
    struct tb_mbox_msg *m = tb_mbox_msg_new(bus->mbox, len, mlen);
    if (!m) {
        return TB_ENOMEM;
    }
    m->kind = (int)f->kind;
    m->id = f->id;
    m->instance = instance;
    m->code = f->has_code ? (int)f->code : TB_EINTERNAL;
    m->timeout_ms = f->has_timeout_ms ? (int)f->timeout_ms : 0;
    m->len = len;
    if (len) {
        memcpy(m->data, data, len);
    }
    if (mlen) {
        m->message = (char *)m->data + len;
        memcpy(m->data + len, f->message, mlen);
    }
    if (from) {
        tb_mbox_ref(from);
        m->from = from;
    }
    return tb_mbox_push(to, m);
}

/* Tells the callee of `call` to stop (its connection, if still open). */
static void s_send_cancel(struct tb_call *call)
{
    struct tb_msg_frame f = {.kind = K_CANCEL, .id = call->id};
    struct conn *c = call->conn;
    if (c && !c->dead && c->local) {
        s_local_send(call->bus, c->local, &f, call->instance, call->bus->mbox, NULL, 0);
    } else if (c && !c->dead) {
        s_send_frame(c->dealer, NULL, 0, &f, NULL, 0);
        c->src.ready = true;
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Calls */

static void s_conn_release_call(tb_bus_t *bus, struct conn *c)
{
    (void)bus;
    if (c && c->n_calls > 0) {
        c->n_calls--;
    }
}

/* Ends a call: delivers its last chunk and frees it. */
static void s_call_finish(tb_bus_t *bus, struct tb_call *call, const struct tb_chunk *ch)
{
    tb_u64map_del(&bus->calls, call->id);
    s_conn_release_call(bus, call->conn);
    bus->callbacks++;
    call->cb(call, ch, call->user);
    free(call);
}

/* The calls matching `pred` (NULL: all), collected first because ending a call runs callbacks
 * that may start others (the map must not grow while iterated).  Caller frees the array. */
static uint64_t *s_calls_where(tb_bus_t *bus, bool (*pred)(const struct tb_call *, void *),
                               void *arg, size_t *n_out)
{
    uint64_t *v = calloc(bus->calls.count + 1, sizeof(*v));
    size_t n = 0;
    struct tb_call *call;
    for (size_t it = 0; v && tb_u64map_next(&bus->calls, &it, NULL, (void **)&call);) {
        if (!pred || pred(call, arg)) {
            v[n++] = call->id;
        }
    }
    *n_out = n;
    return v;
}

static void s_call_fail(tb_bus_t *bus, struct tb_call *call, int code, const char *fmt, ...)
    TB_PRINTF(4, 5);

static void s_call_fail(tb_bus_t *bus, struct tb_call *call, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct tb_chunk ch = {.kind = TB_CHUNK_ERROR, .code = code, .message = msg};
    s_call_finish(bus, call, &ch);
}

static void s_conn_close(tb_bus_t *bus, struct conn *c)
{
    if (c->dead) {
        return;
    }
    tb_u64map_del(&bus->conns, c->instance);
    s_src_untrack(bus, &c->src);
    c->dead = true;
    c->next_dead = bus->dead_conns;
    bus->dead_conns = c;
}

static bool s_on_instance(const struct tb_call *call, void *arg)
{
    return call->instance == *(const uint64_t *)arg;
}

/* Fails every call on `instance` (its route went away) and drops the connection. */
static void s_instance_gone(tb_bus_t *bus, uint64_t instance, const char *endpoint)
{
    int ttl = tb_node_lease_ttl_ms(bus->node);
    size_t n = 0;
    uint64_t *v = s_calls_where(bus, s_on_instance, &instance, &n);
    for (size_t i = 0; i < n; i++) {
        struct tb_call *call = tb_u64map_get(&bus->calls, v[i]);
        if (call) {
            s_call_fail(bus, call, TB_EGONE,
                        "instance %016" PRIx64 " of '%s' went away (deregistered, or no "
                        "heartbeat for %d ms)",
                        instance, endpoint, ttl);
        }
    }
    free(v);
    struct conn *c = tb_u64map_get(&bus->conns, instance);
    if (c) {
        s_conn_close(bus, c);
    }
}

static struct conn *s_conn_get(tb_bus_t *bus, const struct tb_rt_entry *e, int *rc)
{
    struct conn *c = tb_u64map_get(&bus->conns, e->pub.instance_id);
    if (c) {
        return c;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        *rc = TB_ENOMEM;
        return NULL;
    }
    c->instance = e->pub.instance_id;
    c->src.kind = IT_CONN;
    c->src.obj = c;
    /* An instance served in this process: its handle's mailbox, no socket (never ready). */
    c->local = tb_node_local_acquire(bus->node, c->instance);
    if (c->local) {
        tb_mbox_ref(c->local);
        tb_node_local_release(bus->node);
        if (tb_u64map_put(&bus->conns, c->instance, c) != 0) {
            tb_mbox_unref(&c->local);
            free(c);
            *rc = TB_ENOMEM;
            return NULL;
        }
        bus->dirty = true;
        return c;
    }
    c->dealer = tb_zmq_socket(tb_node_zmq(bus->node), ZMQ_DEALER);
    char cerr[600] = "";
    if (!c->dealer ||
        tb_node_curve_client(bus->node, c->dealer, e->address, e->curve_key, cerr,
                             sizeof(cerr)) != 0 ||
        zmq_connect(c->dealer, e->address) != 0) {
        TB_CLOG_ERROR(bus->log_name, "cannot connect to '%s' at %s: %s", e->pub.endpoint,
                      e->address, cerr[0] ? cerr : zmq_strerror(errno));
        if (c->dealer) {
            zmq_close(c->dealer);
        }
        free(c);
        *rc = TB_EIO;
        return NULL;
    }
    if (tb_u64map_put(&bus->conns, c->instance, c) != 0) {
        zmq_close(c->dealer);
        free(c);
        *rc = TB_ENOMEM;
        return NULL;
    }
    s_src_track(bus, &c->src, IT_CONN, c, c->dealer, -1);
    return c;
}

/* A call named no instance of an endpoint that serves a model, so the bus chose one in turn, not
 * the router: counted in turbine_router_fallback_total{reason="bus_any_instance"} and logged at
 * warn (the first, then at most one line every 10 s with the number since the last). */
static void s_note_fallback(tb_bus_t *bus, const struct tb_rt_entry *e)
{
    if (bus->m_fallback) {
        /* label values go comma-separated: a comma inside one would shift the others */
        char comp[100], model[200], labels[340];
        snprintf(comp, sizeof(comp), "%s", bus->comp);
        snprintf(model, sizeof(model), "%s", e->pub.model);
        for (char *p = comp; *p; p++) {
            *p = *p == ',' ? '_' : *p;
        }
        for (char *p = model; *p; p++) {
            *p = *p == ',' ? '_' : *p;
        }
        snprintf(labels, sizeof(labels), "%s,%s,bus_any_instance", comp, model);
        tb_metric_add(bus->m_fallback, labels, 1);
    }
    bus->fallback_unlogged++;
    int64_t now = s_now();
    if (now >= bus->fallback_next_log_ns) {
        TB_CLOG_WARN(bus->log_name,
                     "routing fallback (bus_any_instance) for model '%s': a call of %s named no "
                     "instance, so the bus chose %016" PRIx64 " in turn, not the router; %lld "
                     "such since the last line (turbine_router_fallback_total)",
                     e->pub.model, e->pub.endpoint, e->pub.instance_id,
                     (long long)bus->fallback_unlogged);
        bus->fallback_unlogged = 0;
        bus->fallback_next_log_ns = now + 10000000000LL;
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Direct calls: an endpoint of this process declared callable on its callers' threads
 * (tb_bus_endpoint_set_direct) runs on_request inside bus_call; its chunks wait in the caller's
 * queue for the caller's next run, so on_chunk never runs inside bus_call. */

/* Queues a chunk of a direct answer; 0 or TB_ENOMEM. */
static int s_direct_push(tb_bus_t *bus, uint64_t call_id, tb_chunk_kind_t kind, int code,
                         const char *message, const void *data, size_t len)
{
    size_t mlen = message ? strlen(message) + 1 : 0;
    struct dchunk *d = malloc(sizeof(*d) + len + mlen);
    if (!d) {
        return TB_ENOMEM;
    }
    d->next = NULL;
    d->call_id = call_id;
    d->kind = kind;
    d->code = code;
    d->len = len;
    if (len) {
        memcpy(d->data, data, len);
    }
    d->message = NULL;
    if (message) {
        d->message = (char *)d->data + len;
        memcpy(d->message, message, mlen);
    }
    if (bus->dq_tail) {
        bus->dq_tail->next = d;
    } else {
        bus->dq_head = d;
    }
    bus->dq_tail = d;
    bus->direct_src.ready = true;
    return 0;
}

/* Delivers the queued chunks (those of calls since cancelled are dropped); true when the queue is
 * empty afterwards (a callback may have queued more). */
static bool s_on_direct(tb_bus_t *bus)
{
    struct dchunk *d = bus->dq_head;
    bus->dq_head = bus->dq_tail = NULL;
    while (d) {
        struct dchunk *next = d->next;
        struct tb_call *call = tb_u64map_get(&bus->calls, d->call_id);
        if (call) {
            struct tb_chunk ch = {.kind = d->kind,
                                  .data = d->len ? d->data : NULL,
                                  .len = d->len};
            ch.code = d->code;
            ch.message = d->message;
            if (d->kind == TB_CHUNK_DATA) {
                bus->callbacks++;
                call->cb(call, &ch, call->user);
            } else {
                s_call_finish(bus, call, &ch);
            }
        }
        free(d);
        d = next;
    }
    return bus->dq_head == NULL;
}

/* Runs `ep`'s handler for `call` here; it answers before it returns (docs/bus.md). */
static void s_call_direct(tb_bus_t *bus, struct endpoint *ep, struct tb_call *call,
                          const void *data, size_t len)
{
    struct tb_request req = {.ep = ep, .id = call->id, .caller = bus};
    if (call->timeout_ms > 0) {
        req.deadline_ns = call->deadline_ns + SERVER_DEADLINE_SLACK_NS;
    }
    ep->on_request(&req, data, len, ep->user);
    if (!req.answered) {
        TB_CLOG_ERROR(bus->log_name, "'%s' did not answer a direct call before returning",
                      ep->name);
        if (s_direct_push(bus, call->id, TB_CHUNK_ERROR, TB_EINTERNAL,
                          "the endpoint did not answer a direct call", NULL, 0) != 0) {
            /* no memory for the error: the call ends at its deadline */
            TB_CLOG_ERROR(bus->log_name, "out of memory for the error of a direct call");
        }
    }
}

static int s_call_start(tb_bus_t *bus, int kind, const char *endpoint, uint64_t instance_id,
                        const void *data, size_t len, int timeout_ms, tb_chunk_fn on_chunk,
                        void *user, tb_call_t **call_out)
{
    *call_out = NULL;
    if (!endpoint || !on_chunk) {
        return TB_EINVAL;
    }
    bool any = instance_id == 0;
    if (any) {
        instance_id = tb_route_table_pick(bus->routes, endpoint, &bus->rr_cursor);
    }
    const struct tb_rt_entry *e = instance_id ? tb_route_table_get(bus->routes, instance_id)
                                              : NULL;
    if (!e || strcmp(e->pub.endpoint, endpoint) != 0) {
        return TB_ENOROUTE;
    }
    if (any && kind == K_REQUEST && e->pub.model && *e->pub.model) {
        s_note_fallback(bus, e);
    }
    int rc = 0;
    struct endpoint *direct = kind == K_REQUEST ? tb_node_direct_acquire(bus->node, instance_id)
                                                : NULL;
    struct conn *c = direct ? NULL : s_conn_get(bus, e, &rc);
    /* malloc, not calloc: glibc's calloc bypasses the per-thread cache, and this runs for every
     * call */
    struct tb_call *call = direct || c ? malloc(sizeof(*call)) : NULL;
    if (!call) {
        if (direct) {
            tb_node_direct_release(bus->node);
        }
        return c || direct ? TB_ENOMEM : rc;
    }
    *call = (struct tb_call){0};
    call->bus = bus;
    call->id = ++bus->next_call_id;
    call->instance = instance_id;
    call->conn = c;
    call->cb = on_chunk;
    call->user = user;
    call->timeout_ms = timeout_ms;
    call->deadline_ns = timeout_ms > 0 ? s_now() + (int64_t)timeout_ms * 1000000 : 0;
    struct tb_msg_frame f = {.kind = kind, .id = call->id, .endpoint = endpoint};
    f.instance = instance_id;
    f.has_instance = true;
    f.timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
    f.has_timeout_ms = true;
    rc = tb_u64map_put(&bus->calls, call->id, call);
    if (direct) {
        if (rc == 0) {
            s_call_direct(bus, direct, call, data, len);
        }
        tb_node_direct_release(bus->node);
    } else if (rc == 0 && c->local) {
        rc = s_local_send(bus, c->local, &f, instance_id, bus->mbox, data,
                          kind == K_PING ? 0 : len);
        rc = rc == TB_EGONE ? TB_ENOROUTE : rc; /* its handle is closing */
        if (rc != 0) {
            tb_u64map_del(&bus->calls, call->id);
        }
    } else if (rc == 0) {
        rc = s_send_frame(c->dealer, NULL, 0, &f, data, kind == K_PING ? 0 : len);
        c->src.ready = true; /* the send may have taken the signal of a waiting reply */
        if (rc == -EAGAIN) {
            rc = TB_EOVERLOAD;
        } else if (rc < 0 && rc > -200) {
            rc = TB_EIO;
        }
        if (rc != 0) {
            tb_u64map_del(&bus->calls, call->id);
        }
    }
    if (rc != 0) {
        free(call);
        return rc;
    }
    if (c) {
        c->n_calls++;
    }
    *call_out = call;
    return 0;
}

int tb_bus_call(tb_bus_t *bus, const char *endpoint, uint64_t instance_id, const void *data,
                size_t len, int timeout_ms, tb_chunk_fn on_chunk, void *user,
                tb_call_t **call_out)
{
    return s_call_start(bus, K_REQUEST, endpoint, instance_id, data, len, timeout_ms, on_chunk,
                        user, call_out);
}

int tb_bus_ping(tb_bus_t *bus, const char *endpoint, uint64_t instance_id, int timeout_ms,
                tb_chunk_fn on_chunk, void *user, tb_call_t **call_out)
{
    return s_call_start(bus, K_PING, endpoint, instance_id, NULL, 0, timeout_ms, on_chunk, user,
                        call_out);
}

void tb_bus_call_cancel(tb_call_t *call)
{
    if (!call) {
        return;
    }
    tb_bus_t *bus = call->bus;
    if (tb_u64map_get(&bus->calls, call->id) != call) {
        return; /* already finished */
    }
    s_send_cancel(call);
    tb_u64map_del(&bus->calls, call->id);
    s_conn_release_call(bus, call->conn);
    free(call);
}

uint64_t tb_bus_call_instance(const tb_call_t *call)
{
    return call->instance;
}

/* Hands a chunk of the callee's answer (frame kind `kind`) to the call's callback. */
static void s_deliver(tb_bus_t *bus, struct tb_call *call, int kind, int code,
                      const char *message, const void *data, size_t len)
{
    struct tb_chunk ch = {.data = data, .len = len};
    if (kind == K_DATA) {
        ch.kind = TB_CHUNK_DATA;
        bus->callbacks++;
        call->cb(call, &ch, call->user);
    } else if (kind == K_FINAL || kind == K_PONG) {
        ch.kind = TB_CHUNK_FINAL;
        s_call_finish(bus, call, &ch);
    } else if (kind == K_ERROR) {
        ch.kind = TB_CHUNK_ERROR;
        ch.code = code;
        ch.message = message ? message : "error";
        s_call_finish(bus, call, &ch);
    }
}

/* Reads until nothing is left (true) or the budget is spent (false). */
static bool s_on_conn(tb_bus_t *bus, struct conn *c)
{
    for (int budget = 0; budget < DISPATCH_BUDGET && !c->dead; budget++) {
        zmq_msg_t parts[TB_ZMQ_MAX_PARTS];
        int n;
        if (tb_zmq_recv(c->dealer, parts, TB_ZMQ_MAX_PARTS, &n, ZMQ_DONTWAIT) != 0) {
            return true;
        }
        void *fmsg = NULL;
        char err[200];
        if ((n == 1 || n == 2) &&
            tb_codec_decode(TB_MSG_FRAME, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), &fmsg,
                            err, sizeof(err)) == 0) {
            struct tb_msg_frame *f = fmsg;
            struct tb_call *call = tb_u64map_get(&bus->calls, f->id);
            if (call && call->conn == c) {
                s_deliver(bus, call, (int)f->kind, f->has_code ? (int)f->code : TB_EINTERNAL,
                          f->message, n == 2 ? zmq_msg_data(&parts[1]) : NULL,
                          n == 2 ? zmq_msg_size(&parts[1]) : 0);
            }
            tb_codec_free(&fmsg);
        } else {
            TB_CLOG_WARN(bus->log_name, "dropped a malformed reply (%d parts)", n);
        }
        tb_zmq_close_parts(parts, n > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : n);
    }
    return false;
}

/* ------------------------------------------------------------------------------------------- */
/* Serving */

static void s_request_free(struct tb_request *req)
{
    struct endpoint *ep = req->ep;
    if (tb_u64map_get(&ep->reqs, req->key) == req) {
        tb_u64map_del(&ep->reqs, req->key);
    }
    tb_mbox_unref(&req->from);
    free(req);
}

/* Sends one frame of the answer to `req` to its caller, by socket or mailbox: 0 or a TB_E* code. */
static int s_answer(struct tb_request *req, const struct tb_msg_frame *f, const void *data,
                    size_t len)
{
    struct endpoint *ep = req->ep;
    if (ep->dead) {
        return TB_EGONE;
    }
    if (req->from) {
        return s_local_send(ep->bus, req->from, f, ep->instance, NULL, data, len);
    }
    int rc = s_send_frame(ep->router, req->ident, req->ident_len, f, data, len);
    ep->src.ready = true;
    if (rc == -EHOSTUNREACH) {
        rc = TB_EGONE;
    } else if (rc == -EAGAIN) {
        rc = TB_EOVERLOAD;
    } else if (rc < 0 && rc > -200) {
        rc = TB_EIO;
    }
    return rc;
}

int tb_bus_reply(tb_request_t *req, const void *data, size_t len, bool final)
{
    if (req->caller) {
        if (req->answered) {
            return TB_EINVAL;
        }
        int rc = s_direct_push(req->caller, req->id, final ? TB_CHUNK_FINAL : TB_CHUNK_DATA, 0,
                               NULL, data, len);
        req->answered = final && rc == 0;
        return rc;
    }
    struct tb_msg_frame f = {.kind = final ? K_FINAL : K_DATA, .id = req->id};
    int rc = s_answer(req, &f, data, len);
    if (final) {
        s_request_free(req);
    }
    return rc;
}

int tb_bus_vreply_error(tb_request_t *req, int code, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (req->caller) {
        if (req->answered) {
            return TB_EINVAL;
        }
        int rc = s_direct_push(req->caller, req->id, TB_CHUNK_ERROR, code, msg, NULL, 0);
        req->answered = rc == 0;
        return rc;
    }
    struct tb_msg_frame f = {.kind = K_ERROR, .id = req->id, .message = msg};
    f.code = code;
    f.has_code = true;
    int rc = s_answer(req, &f, NULL, 0);
    s_request_free(req);
    return rc;
}

int tb_bus_reply_error(tb_request_t *req, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tb_bus_vreply_error(req, code, fmt, ap);
    va_end(ap);
    return rc;
}

uint64_t tb_bus_request_id(const tb_request_t *req)
{
    return req->id;
}

int64_t tb_bus_request_deadline_ns(const tb_request_t *req)
{
    return req->deadline_ns;
}

void tb_bus_request_set_user(tb_request_t *req, void *user)
{
    req->user = user;
}

void *tb_bus_request_user(const tb_request_t *req)
{
    return req->user;
}

static void s_error_to(struct endpoint *ep, const zmq_msg_t *ident, uint64_t id, int code,
                       const char *msg)
{
    struct tb_msg_frame f = {.kind = K_ERROR, .id = id, .message = msg};
    f.code = code;
    f.has_code = true;
    s_send_frame(ep->router, zmq_msg_data((zmq_msg_t *)ident), zmq_msg_size((zmq_msg_t *)ident),
                 &f, NULL, 0);
    ep->src.ready = true;
}

/* A request record for `ep` (in its map unless the key is taken), or NULL when out of memory.
 * `ident` is the caller's identity (its socket's, or its mailbox's address). */
static struct tb_request *s_request_new(struct endpoint *ep, uint64_t id, uint64_t key,
                                        const uint8_t *ident, size_t ilen, int timeout_ms)
{
    struct tb_request *req = malloc(sizeof(*req)); /* as in s_call_start */
    if (!req) {
        return NULL;
    }
    *req = (struct tb_request){0};
    req->ep = ep;
    req->id = id;
    req->key = key;
    req->ident_len = ilen;
    memcpy(req->ident, ident, ilen);
    if (timeout_ms > 0) {
        /* The caller gives up (and sends a cancel) at its deadline; ours comes a little later and
         * covers callers that died. */
        req->deadline_ns = s_now() + (int64_t)timeout_ms * 1000000 + SERVER_DEADLINE_SLACK_NS;
    }
    if (!tb_u64map_get(&ep->reqs, key)) {
        tb_u64map_put(&ep->reqs, key, req);
    }
    return req;
}

/* A caller cancelled its request `id`: tells the handler, once. */
static void s_cancel_request(tb_bus_t *bus, struct endpoint *ep, uint64_t key, uint64_t id,
                             const uint8_t *ident, size_t ilen)
{
    struct tb_request *req = tb_u64map_get(&ep->reqs, key);
    if (req && req->id == id && req->ident_len == ilen && memcmp(req->ident, ident, ilen) == 0 &&
        !req->cancelled) {
        req->cancelled = true;
        if (ep->on_cancel) {
            bus->callbacks++;
            ep->on_cancel(req, ep->user);
        }
    }
}

/* A request, cancel or ping from a handle of this process. */
static void s_on_local_request(tb_bus_t *bus, struct tb_mbox_msg *m)
{
    struct endpoint *ep = NULL;
    for (size_t i = 0; i < bus->n_eps && !ep; i++) {
        ep = bus->eps[i]->instance == m->instance && !bus->eps[i]->dead ? bus->eps[i] : NULL;
    }
    struct tb_msg_frame f = {.kind = K_ERROR, .id = m->id, .code = TB_EGONE, .has_code = true};
    f.message = "the instance is no longer served";
    const uint8_t *ident = (const uint8_t *)&m->from;
    uint64_t key = s_mix(ident, sizeof(m->from), m->id);
    if (!ep) {
        if (m->kind != K_CANCEL) {
            s_local_send(bus, m->from, &f, m->instance, NULL, NULL, 0);
        }
    } else if (m->kind == K_PING) {
        f.kind = K_PONG;
        s_local_send(bus, m->from, &f, m->instance, NULL, NULL, 0);
    } else if (m->kind == K_CANCEL) {
        s_cancel_request(bus, ep, key, m->id, ident, sizeof(m->from));
    } else if (m->kind == K_REQUEST) {
        struct tb_request *req = s_request_new(ep, m->id, key, ident, sizeof(m->from),
                                               m->timeout_ms);
        if (!req) {
            f.code = TB_ENOMEM;
            f.message = "out of memory";
            s_local_send(bus, m->from, &f, m->instance, NULL, NULL, 0);
            return;
        }
        req->from = m->from; /* the message's reference moves to the request */
        m->from = NULL;
        bus->callbacks++;
        ep->on_request(req, m->len ? m->data : NULL, m->len, ep->user);
    }
}

/* Our mailbox: requests to our endpoints and answers to our local calls.  Like a socket's, at
 * most a budget of messages per run (the rest wait in `mq`); true when none is left. */
static bool s_on_mbox(tb_bus_t *bus)
{
    if (!bus->mq) {
        bus->mq = tb_mbox_take(bus->mbox);
    }
    for (int budget = 0; budget < DISPATCH_BUDGET && bus->mq; budget++) {
        struct tb_mbox_msg *m = bus->mq;
        bus->mq = m->next;
        if (m->kind == K_REQUEST || m->kind == K_CANCEL || m->kind == K_PING) {
            s_on_local_request(bus, m);
        } else {
            struct tb_call *call = tb_u64map_get(&bus->calls, m->id);
            if (call && call->conn && call->conn->local && call->instance == m->instance) {
                s_deliver(bus, call, m->kind, m->code, m->message, m->len ? m->data : NULL,
                          m->len);
            }
        }
        tb_mbox_msg_free(m);
    }
    return bus->mq == NULL;
}

/* Reads until nothing is left (true) or the budget is spent (false). */
static bool s_on_endpoint(tb_bus_t *bus, struct endpoint *ep)
{
    for (int budget = 0; budget < DISPATCH_BUDGET && !ep->dead; budget++) {
        zmq_msg_t parts[TB_ZMQ_MAX_PARTS];
        int n;
        if (tb_zmq_recv(ep->router, parts, TB_ZMQ_MAX_PARTS, &n, ZMQ_DONTWAIT) != 0) {
            return true;
        }
        void *fmsg = NULL;
        char err[200];
        size_t ilen = n >= 1 ? zmq_msg_size(&parts[0]) : 0;
        if ((n == 2 || n == 3) && ilen <= MAX_IDENT &&
            tb_codec_decode(TB_MSG_FRAME, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), &fmsg,
                            err, sizeof(err)) == 0) {
            struct tb_msg_frame *f = fmsg;
            const uint8_t *ident = zmq_msg_data(&parts[0]);
            uint64_t key = s_mix(ident, ilen, f->id);
            if (f->kind == K_PING) {
                struct tb_msg_frame pong = {.kind = K_PONG, .id = f->id};
                s_send_frame(ep->router, ident, ilen, &pong, NULL, 0);
            } else if (f->kind == K_CANCEL) {
                s_cancel_request(bus, ep, key, f->id, ident, ilen);
            } else if (f->kind == K_REQUEST) {
                if (!f->endpoint || strcmp(f->endpoint, ep->name) != 0) {
                    s_error_to(ep, &parts[0], f->id, TB_ENOROUTE,
                               "this instance does not serve that endpoint");
                } else {
                    struct tb_request *req = s_request_new(ep, f->id, key, ident, ilen,
                                                           f->has_timeout_ms ? (int)f->timeout_ms
                                                                             : 0);
                    if (!req) {
                        s_error_to(ep, &parts[0], f->id, TB_ENOMEM, "out of memory");
                    } else {
                        const void *payload = n == 3 ? zmq_msg_data(&parts[2]) : NULL;
                        size_t plen = n == 3 ? zmq_msg_size(&parts[2]) : 0;
                        bus->callbacks++;
                        ep->on_request(req, payload, plen, ep->user);
                    }
                }
            }
            tb_codec_free(&fmsg);
        } else if (n >= 2) {
            TB_CLOG_WARN(bus->log_name, "'%s' dropped a malformed request (%d parts)", ep->name,
                         n);
        }
        tb_zmq_close_parts(parts, n > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : n);
    }
    return false;
}

int tb_bus_endpoint_add(tb_bus_t *bus, const char *name, const struct tb_endpoint_meta *meta,
                        tb_request_fn on_request, tb_cancel_fn on_cancel, void *user,
                        tb_endpoint_t **ep_out)
{
    char full[256];
    char err[512];
    char *addrs[2] = {NULL, NULL};
    size_t n_addrs = 0;
    int rc;
    *ep_out = NULL;
    if (!tb_bus_name_is_valid(name, false) || !on_request) {
        TB_CLOG_ERROR(bus->log_name, "invalid endpoint name '%s': use [a-z0-9_-]+",
                      name ? name : "");
        return TB_EINVAL;
    }
    snprintf(full, sizeof(full), "%s.%s.%s", bus->ns, bus->comp, name);
    struct endpoint *ep = calloc(1, sizeof(*ep));
    if (!ep) {
        return TB_ENOMEM;
    }
    tb_u64map_init(&ep->reqs);
    ep->bus = bus;
    ep->name = strdup(full);
    ep->instance = tb_node_new_instance_id(bus->node);
    ep->on_request = on_request;
    ep->on_cancel = on_cancel;
    ep->user = user;
    ep->router = tb_zmq_socket(tb_node_zmq(bus->node), ZMQ_ROUTER);
    if (!ep->name || !ep->router) {
        rc = TB_ENOMEM;
        goto fail;
    }
    int one = 1;
    zmq_setsockopt(ep->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    rc = tb_node_bind_endpoint(bus->node, ep->router, ep->instance, addrs, &n_addrs, err,
                               sizeof(err));
    if (rc != 0) {
        TB_CLOG_ERROR(bus->log_name, "cannot serve '%s': %s", full, err);
        goto fail;
    }
    struct tb_msg_route route = {.endpoint = full, .instance_id = ep->instance};
    route.process_id = tb_node_process_id(bus->node);
    route.addresses = (const char *const *)addrs;
    route.addresses_count = n_addrs;
    if (meta) {
        route.model = meta->model && *meta->model ? meta->model : NULL;
        route.kind = meta->kind;
        route.context_length = meta->context_length;
        route.has_context_length = meta->context_length > 0;
        route.kv_block_size = meta->kv_block_size;
        route.has_kv_block_size = meta->kv_block_size > 0;
        route.info = meta->info;
    }
    /* before the route is known, so that callers in this process use the mailbox from the
     * first call (without it they still reach the socket) */
    if (tb_node_local_add(bus->node, ep->instance, bus->mbox) != 0) {
        TB_CLOG_WARN(bus->log_name, "'%s': calls from this process will go by socket", full);
    }
    rc = tb_node_lease_add(bus->node, &route, 5000, err, sizeof(err));
    if (rc != 0) {
        tb_node_local_remove(bus->node, ep->instance);
        TB_CLOG_ERROR(bus->log_name, "cannot register '%s': %s", full, err);
        goto fail;
    }
    /* Know our own route at once, before the event comes back from the hub. */
    tb_route_table_add(bus->routes, &route);
    if (bus->n_eps == bus->cap_eps) {
        size_t cap = bus->cap_eps ? bus->cap_eps * 2 : 4;
        struct endpoint **v = realloc(bus->eps, cap * sizeof(*v));
        if (!v) {
            tb_node_local_remove(bus->node, ep->instance);
            tb_node_lease_remove(bus->node, ep->instance);
            rc = TB_ENOMEM;
            goto fail;
        }
        bus->eps = v;
        bus->cap_eps = cap;
    }
    bus->eps[bus->n_eps++] = ep;
    s_src_track(bus, &ep->src, IT_ENDPOINT, ep, ep->router, -1);
    TB_CLOG_INFO(bus->log_name, "serving %s (instance %016" PRIx64 ") at %s", full, ep->instance,
                 addrs[n_addrs - 1]);
    for (size_t i = 0; i < n_addrs; i++) {
        free(addrs[i]);
    }
    *ep_out = (tb_endpoint_t *)ep;
    return 0;
fail:
    for (size_t i = 0; i < 2; i++) {
        free(addrs[i]);
    }
    if (ep->router) {
        zmq_close(ep->router);
    }
    tb_u64map_release(&ep->reqs);
    free(ep->name);
    free(ep);
    return rc;
}

int tb_bus_endpoint_set_direct(tb_endpoint_t *handle, bool on)
{
    struct endpoint *ep = (struct endpoint *)handle;
    if (ep->dead) {
        return TB_EGONE;
    }
    if (on) {
        int rc = tb_node_direct_add(ep->bus->node, ep->instance, ep);
        ep->direct = rc == 0;
        return rc;
    }
    if (ep->direct) {
        tb_node_direct_remove(ep->bus->node, ep->instance);
        ep->direct = false;
    }
    return 0;
}

static void s_endpoint_close(tb_bus_t *bus, struct endpoint *ep, const char *why)
{
    /* no new local connections; those open get an error for each later request */
    tb_node_local_remove(bus->node, ep->instance);
    if (ep->direct) {
        /* waits for callers inside its handler: after this only its own thread sees it */
        tb_node_direct_remove(bus->node, ep->instance);
        ep->direct = false;
    }
    struct tb_request *req;
    for (size_t it = 0; tb_u64map_next(&ep->reqs, &it, NULL, (void **)&req);) {
        tb_bus_reply_error(req, TB_EDRAINING, "%s", why);
    }
    tb_node_lease_remove(bus->node, ep->instance);
    tb_route_table_remove(bus->routes, ep->instance, NULL);
    s_src_untrack(bus, &ep->src);
    ep->dead = true;
    ep->next_dead = bus->dead_eps;
    bus->dead_eps = ep;
}

int tb_bus_endpoint_remove(tb_bus_t *bus, tb_endpoint_t *handle)
{
    struct endpoint *ep = (struct endpoint *)handle;
    for (size_t i = 0; i < bus->n_eps; i++) {
        if (bus->eps[i] == ep) {
            bus->eps[i] = bus->eps[--bus->n_eps];
            TB_CLOG_INFO(bus->log_name, "no longer serving %s", ep->name);
            s_endpoint_close(bus, ep, "the endpoint was removed");
            return 0;
        }
    }
    return TB_ENOENT;
}

uint64_t tb_bus_endpoint_instance(const tb_endpoint_t *handle)
{
    return ((const struct endpoint *)handle)->instance;
}

/* ------------------------------------------------------------------------------------------- */
/* Routes and events */

static void s_notify_route(tb_bus_t *bus, const struct tb_route *r, bool added)
{
    for (size_t i = 0; i < bus->n_rwatch; i++) {
        bus->callbacks++;
        bus->rwatch[i].fn(r, added, bus->rwatch[i].user);
    }
}

static void s_route_added(tb_bus_t *bus, const struct tb_msg_route *r)
{
    int rc = tb_route_table_add(bus->routes, r);
    if (rc == 1) {
        const struct tb_rt_entry *e = tb_route_table_get(bus->routes, r->instance_id);
        if (e) {
            s_notify_route(bus, &e->pub, true);
        }
    } else if (rc < 0) {
        TB_CLOG_WARN(bus->log_name, "ignored route %s: %s", r->endpoint,
                     rc == TB_EINVAL ? "no address reachable from this process" : "no memory");
    }
}

static void s_route_removed(tb_bus_t *bus, uint64_t instance)
{
    struct tb_rt_entry e;
    if (tb_route_table_remove(bus->routes, instance, &e)) {
        s_instance_gone(bus, instance, e.pub.endpoint);
        s_notify_route(bus, &e.pub, false);
        tb_rt_entry_release(&e);
    } else {
        s_instance_gone(bus, instance, "?");
    }
}

static void s_request_snapshot(tb_bus_t *bus)
{
    struct tb_msg_reg_request q = {.op = "snapshot", .seq = ++bus->reg_seq};
    struct tb_buf buf = {0};
    if (tb_codec_encode(TB_MSG_REG_REQUEST, &q, &buf) == 0) {
        const void *parts[1] = {buf.data};
        size_t lens[1] = {buf.len};
        bus->reg_src.ready = true;
        if (tb_zmq_send(bus->reg, 1, parts, lens, ZMQ_DONTWAIT) == 0) {
            bus->snapshot_pending = true;
            bus->snapshot_sent_ns = s_now();
        }
    }
    tb_buf_free(&buf);
}

static void s_apply_snapshot(tb_bus_t *bus, const struct tb_msg_reg_reply *rep)
{
    /* Removed: in the table but not in the snapshot. */
    for (size_t i = tb_route_table_count(bus->routes); i-- > 0;) {
        const struct tb_rt_entry *e = tb_route_table_at(bus->routes, i);
        bool found = false;
        for (size_t k = 0; k < rep->routes_count && !found; k++) {
            found = rep->routes[k].instance_id == e->pub.instance_id;
        }
        if (!found) {
            s_route_removed(bus, e->pub.instance_id);
        }
    }
    for (size_t k = 0; k < rep->routes_count; k++) {
        s_route_added(bus, &rep->routes[k]);
    }
    bus->routes_seq = rep->routes_seq;
    bus->synced = true;
    bus->snapshot_pending = false;
}

/* Reads until nothing is left (true) or the budget is spent (false). */
static bool s_on_reg(tb_bus_t *bus)
{
    for (int budget = 0; budget < DISPATCH_BUDGET; budget++) {
        zmq_msg_t parts[TB_ZMQ_MAX_PARTS];
        int n;
        if (tb_zmq_recv(bus->reg, parts, TB_ZMQ_MAX_PARTS, &n, ZMQ_DONTWAIT) != 0) {
            return true;
        }
        void *msg = NULL;
        char err[200];
        if (n == 1 && tb_codec_decode(TB_MSG_REG_REPLY, zmq_msg_data(&parts[0]),
                                      zmq_msg_size(&parts[0]), &msg, err, sizeof(err)) == 0) {
            struct tb_msg_reg_reply *rep = msg;
            if (rep->seq == bus->reg_seq && rep->code == 0 && rep->has_routes_seq) {
                s_apply_snapshot(bus, rep);
            }
            tb_codec_free(&msg);
        }
        tb_zmq_close_parts(parts, n > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : n);
    }
    return false;
}

static void s_on_route_event(tb_bus_t *bus, const void *data, size_t len)
{
    void *msg = NULL;
    char err[200];
    if (tb_codec_decode(TB_MSG_ROUTE_EVENT, data, len, &msg, err, sizeof(err)) != 0) {
        TB_CLOG_WARN(bus->log_name, "dropped a malformed route event: %s", err);
        return;
    }
    struct tb_msg_route_event *ev = msg;
    if (!bus->synced || bus->snapshot_pending) {
        /* A snapshot is on its way; it supersedes this. */
    } else if (!ev->has_added) {
        if (ev->seq != bus->routes_seq) {
            s_request_snapshot(bus); /* a tick shows events we missed */
        }
    } else if (ev->seq <= bus->routes_seq) {
        /* old news */
    } else if (ev->seq != bus->routes_seq + 1 || !ev->route) {
        s_request_snapshot(bus);
    } else {
        bus->routes_seq = ev->seq;
        if (ev->added) {
            s_route_added(bus, ev->route);
        } else {
            s_route_removed(bus, ev->route->instance_id);
        }
    }
    tb_codec_free(&msg);
}

/* Reads until nothing is left (true) or the budget is spent (false). */
static bool s_on_sub(tb_bus_t *bus)
{
    for (int budget = 0; budget < DISPATCH_BUDGET; budget++) {
        zmq_msg_t parts[TB_ZMQ_MAX_PARTS];
        int n;
        if (tb_zmq_recv(bus->sub, parts, TB_ZMQ_MAX_PARTS, &n, ZMQ_DONTWAIT) != 0) {
            return true;
        }
        if (n == 2) {
            const char *topic = zmq_msg_data(&parts[0]);
            size_t tlen = zmq_msg_size(&parts[0]);
            const void *data = zmq_msg_data(&parts[1]);
            size_t dlen = zmq_msg_size(&parts[1]);
            if (tlen == 6 && memcmp(topic, "route.", 6) == 0) {
                s_on_route_event(bus, data, dlen);
            } else if (tlen < 256) {
                char t[256];
                memcpy(t, topic, tlen);
                t[tlen] = 0;
                if (strlen(t) == tlen) {
                    for (size_t i = 0; i < bus->n_subs; i++) {
                        if (tlen >= bus->subs[i].prefix_len &&
                            memcmp(t, bus->subs[i].prefix, bus->subs[i].prefix_len) == 0) {
                            bus->callbacks++;
                            bus->subs[i].fn(t, data, dlen, bus->subs[i].user);
                        }
                    }
                }
            }
        }
        tb_zmq_close_parts(parts, n > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : n);
    }
    return false;
}

int tb_bus_publish(tb_bus_t *bus, const char *topic, const void *data, size_t len)
{
    if (!topic || !*topic || strncmp(topic, "route.", 6) == 0 || strlen(topic) >= 255) {
        return TB_EINVAL;
    }
    if (!bus->pub) {
        bus->pub = tb_zmq_socket(tb_node_zmq(bus->node), ZMQ_PUB);
        char cerr[600];
        if (!bus->pub ||
            tb_node_curve_client(bus->node, bus->pub, tb_node_hub_sub(bus->node),
                                 tb_node_join_key(bus->node), cerr, sizeof(cerr)) != 0 ||
            zmq_connect(bus->pub, tb_node_hub_sub(bus->node)) != 0) {
            TB_CLOG_ERROR(bus->log_name, "cannot connect a publisher to %s",
                          tb_node_hub_sub(bus->node));
            if (bus->pub) {
                zmq_close(bus->pub);
                bus->pub = NULL;
            }
            return TB_EIO;
        }
    }
    const void *parts[2] = {topic, data ? data : ""};
    size_t lens[2] = {strlen(topic), len};
    int rc = tb_zmq_send(bus->pub, 2, parts, lens, ZMQ_DONTWAIT);
    return rc == 0 ? 0 : TB_EIO;
}

int tb_bus_subscribe(tb_bus_t *bus, const char *prefix, tb_event_fn fn, void *user)
{
    if (!prefix || !fn || strncmp(prefix, "route.", 6) == 0) {
        return TB_EINVAL;
    }
    struct subscription *v = realloc(bus->subs, (bus->n_subs + 1) * sizeof(*v));
    if (!v) {
        return TB_ENOMEM;
    }
    bus->subs = v;
    struct subscription *s = &v[bus->n_subs];
    s->prefix = strdup(prefix);
    if (!s->prefix) {
        return TB_ENOMEM;
    }
    s->prefix_len = strlen(prefix);
    s->fn = fn;
    s->user = user;
    bus->n_subs++;
    zmq_setsockopt(bus->sub, ZMQ_SUBSCRIBE, prefix, strlen(prefix));
    bus->sub_src.ready = true; /* any call on the socket may take its descriptor's signal */
    return 0;
}

int tb_bus_routes_watch(tb_bus_t *bus, tb_route_fn fn, void *user)
{
    struct route_watcher *v = realloc(bus->rwatch, (bus->n_rwatch + 1) * sizeof(*v));
    if (!v) {
        return TB_ENOMEM;
    }
    bus->rwatch = v;
    v[bus->n_rwatch++] = (struct route_watcher){fn, user};
    for (size_t i = 0; i < tb_route_table_count(bus->routes); i++) {
        fn(&tb_route_table_at(bus->routes, i)->pub, true, user);
    }
    return 0;
}

int tb_bus_routes_find(tb_bus_t *bus, const char *endpoint, const char *model,
                       struct tb_route *out, int max)
{
    return tb_route_table_find(bus->routes, endpoint, model, out, max);
}

int tb_bus_routes_list(tb_bus_t *bus, const char *endpoint, const char *model, void *out,
                       size_t route_size, int max)
{
    return tb_route_table_find_sized(bus->routes, endpoint, model, out, route_size, max);
}

/* ------------------------------------------------------------------------------------------- */
/* Watched descriptors */

int tb_bus_watch_fd(tb_bus_t *bus, int fd, tb_fd_fn fn, void *user)
{
    for (size_t i = 0; i < bus->n_watches; i++) {
        if (bus->watches[i]->fd == fd) {
            bus->watches[i]->fn = fn;
            bus->watches[i]->user = user;
            return 0;
        }
    }
    struct watch **v = realloc(bus->watches, (bus->n_watches + 1) * sizeof(*v));
    if (!v) {
        return TB_ENOMEM;
    }
    bus->watches = v;
    struct watch *w = calloc(1, sizeof(*w));
    if (!w) {
        return TB_ENOMEM;
    }
    *w = (struct watch){.fd = fd, .fn = fn, .user = user};
    v[bus->n_watches++] = w;
    s_src_track(bus, &w->src, IT_WATCH, w, NULL, fd);
    return 0;
}

int tb_bus_unwatch_fd(tb_bus_t *bus, int fd)
{
    for (size_t i = 0; i < bus->n_watches; i++) {
        struct watch *w = bus->watches[i];
        if (w->fd == fd) {
            bus->watches[i] = bus->watches[--bus->n_watches];
            s_src_untrack(bus, &w->src);
            /* Freed at the end of the run: the dispatch loop may still hold it. */
            w->next_dead = bus->dead_watches;
            bus->dead_watches = w;
            return 0;
        }
    }
    return TB_ENOENT;
}

/* ------------------------------------------------------------------------------------------- */
/* Deadlines */

static bool s_is_late(const struct tb_call *call, void *arg)
{
    return call->deadline_ns && call->deadline_ns <= *(const int64_t *)arg;
}

static void s_check_deadlines(tb_bus_t *bus, int64_t now)
{
    size_t n = 0;
    uint64_t *v = s_calls_where(bus, s_is_late, &now, &n);
    for (size_t i = 0; i < n; i++) {
        struct tb_call *call = tb_u64map_get(&bus->calls, v[i]);
        if (!call) {
            continue;
        }
        s_send_cancel(call);
        s_call_fail(bus, call, TB_ETIMEDOUT, "no complete answer within %d ms", call->timeout_ms);
    }
    free(v);
    for (size_t i = 0; i < bus->n_eps; i++) {
        struct endpoint *ep = bus->eps[i];
        struct tb_request *req;
        for (size_t it = 0; tb_u64map_next(&ep->reqs, &it, NULL, (void **)&req);) {
            if (req->deadline_ns && req->deadline_ns <= now && !req->cancelled) {
                req->cancelled = true;
                if (ep->on_cancel) {
                    bus->callbacks++;
                    ep->on_cancel(req, ep->user);
                }
            }
        }
    }
    /* A snapshot request the registry never answered: ask again. */
    if (bus->snapshot_pending && now - bus->snapshot_sent_ns > 1000000000) {
        s_request_snapshot(bus);
    }
}

static bool s_has_deadlines(tb_bus_t *bus)
{
    if (bus->snapshot_pending || bus->calls.count > 0) {
        return true;
    }
    for (size_t i = 0; i < bus->n_eps; i++) {
        if (bus->eps[i]->reqs.count > 0) {
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------------------------------- */
/* The loop */

static void s_reap(tb_bus_t *bus)
{
    while (bus->dead_conns) {
        struct conn *c = bus->dead_conns;
        bus->dead_conns = c->next_dead;
        if (c->dealer) {
            zmq_close(c->dealer);
        }
        tb_mbox_unref(&c->local);
        free(c);
    }
    while (bus->dead_eps) {
        struct endpoint *ep = bus->dead_eps;
        bus->dead_eps = ep->next_dead;
        zmq_close(ep->router);
        tb_u64map_release(&ep->reqs);
        free(ep->name);
        free(ep);
    }
    while (bus->dead_watches) {
        struct watch *w = bus->dead_watches;
        bus->dead_watches = w->next_dead;
        free(w);
    }
}

/* Runs the source's handler; false when it may have more to read. */
static bool s_dispatch(tb_bus_t *bus, struct src *s)
{
    switch (s->kind) {
    case IT_WAKE: {
        uint64_t v;
        if (read(bus->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
            TB_CLOG_WARN(bus->log_name, "wakeup read failed: %s", strerror(errno));
        }
        return true;
    }
    case IT_SUB:
        return s_on_sub(bus);
    case IT_REG:
        return s_on_reg(bus);
    case IT_ENDPOINT: {
        struct endpoint *ep = s->obj;
        return ep->dead || s_on_endpoint(bus, ep);
    }
    case IT_CONN: {
        struct conn *c = s->obj;
        return c->dead || !c->dealer || s_on_conn(bus, c);
    }
    case IT_MBOX:
        return s_on_mbox(bus);
    case IT_DIRECT:
        return s_on_direct(bus);
    case IT_WATCH: {
        struct watch *w = s->obj;
        if (w->src.tracked) {
            bus->callbacks++;
            w->fn(w->fd, w->user);
        }
        return true; /* level-triggered: the descriptor fires again while readable */
    }
    }
    return true;
}

/* Waits for events.  A thread that ran callbacks less than spin_ns ago polls until spin_ns after
 * them before sleeping (tb_spin.h): under load the next message comes within microseconds, and
 * a sleeping thread's wake-up costs more than those polls.  An idle thread never spins. */
static int s_wait(tb_bus_t *bus, struct epoll_event *evs, int timeout_ms)
{
    const int64_t until = bus->spin_ns > 0 ? bus->last_activity_ns + bus->spin_ns : 0;
    return tb_epoll_wait_spin(bus->epfd, evs, EPOLL_BATCH, timeout_ms, until);
}

int tb_bus_run(tb_bus_t *bus, int timeout_ms)
{
    if (bus->in_run) {
        return TB_EBUSY;
    }
    if (bus->dirty && s_rebuild_order(bus) != 0) {
        return TB_ENOMEM;
    }
    bool pending = false;
    for (size_t i = 0; i < bus->n_order && !pending; i++) {
        pending = bus->order[i]->ready;
    }
    int64_t now = s_now();
    if (pending) {
        timeout_ms = 0;
    } else if (s_has_deadlines(bus)) {
        int64_t left_ms = (bus->next_deadline_ns - now + 999999) / 1000000;
        if (left_ms < 0) {
            left_ms = 0;
        }
        if (timeout_ms < 0 || left_ms < timeout_ms) {
            timeout_ms = (int)left_ms;
        }
    }
    bus->in_run = true;
    bus->callbacks = 0;
    struct epoll_event evs[EPOLL_BATCH];
    for (int round = 0; round < 8; round++) {
        int n = round == 0 ? s_wait(bus, evs, timeout_ms)
                           : epoll_wait(bus->epfd, evs, EPOLL_BATCH, 0);
        if (n < 0 && errno != EINTR) {
            bus->in_run = false;
            return TB_EIO;
        }
        for (int i = 0; i < n; i++) {
            ((struct src *)evs[i].data.ptr)->ready = true;
        }
        if (n < EPOLL_BATCH) {
            break;
        }
    }
    /* In order over a snapshot: callbacks may add sources (dirty, next run) or close them (they
     * stay allocated until s_reap). */
    size_t n = bus->n_order;
    bool left = false;
    for (size_t i = 0; i < n; i++) {
        struct src *s = bus->order[i];
        if (s->ready && s_dispatch(bus, s)) {
            s->ready = false;
        }
        left = left || s->ready;
    }
    /* Direct answers to calls that callbacks made after the queue's turn: delivered now (they
     * cost no system call), so a loop driven through tb_bus_fd never waits on them.  Bounded:
     * their callbacks may call again. */
    for (int k = 0; k < 4 && bus->direct_src.ready; k++) {
        if (s_on_direct(bus)) {
            bus->direct_src.ready = false;
        }
    }
    left = left || bus->direct_src.ready;
    /* A source still ready (a budget spent, or a send that may have taken a reply's signal) has
     * no descriptor event to come: an outside loop watching tb_bus_fd learns of it by the wake-up
     * eventfd.  tb_bus_run's own next turn checks the flags without it. */
    if (left && bus->fd_exported) {
        tb_bus_wakeup(bus);
    }
    now = s_now();
    if (now >= bus->next_deadline_ns) {
        s_check_deadlines(bus, now);
        bus->next_deadline_ns = now + DEADLINE_CHECK_NS;
    }
    s_reap(bus);
    bus->in_run = false;
    if (bus->callbacks > 0) {
        bus->last_activity_ns = now;
    }
    return bus->callbacks;
}

void tb_bus_wakeup(tb_bus_t *bus)
{
    uint64_t one = 1;
    if (write(bus->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        TB_CLOG_WARN(bus->log_name, "wakeup write failed: %s", strerror(errno));
    }
}

int tb_bus_fd(tb_bus_t *bus)
{
    bus->fd_exported = true;
    return bus->epfd;
}

/* ------------------------------------------------------------------------------------------- */
/* Life cycle */

tb_bus_t *tb_bus_new(tb_node_t *node, const char *ns, const char *component)
{
    tb_bus_t *bus = calloc(1, sizeof(*bus));
    if (!bus) {
        return NULL;
    }
    bus->wake_fd = -1;
    bus->epfd = -1;
    bus->node = node;
    bus->spin_ns = (int64_t)tb_node_spin_us(node) * 1000;
    bus->ns = strdup(ns);
    bus->comp = strdup(component);
    snprintf(bus->log_name, sizeof(bus->log_name), "%s", component);
    tb_u64map_init(&bus->calls);
    tb_u64map_init(&bus->conns);
    bus->routes = tb_route_table_new(tb_node_process_id(node));
    bus->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    bus->epfd = epoll_create1(EPOLL_CLOEXEC);
    void *z = tb_node_zmq(node);
    bus->sub = tb_zmq_socket(z, ZMQ_SUB);
    bus->reg = tb_zmq_socket(z, ZMQ_DEALER);
    bus->mbox = tb_mbox_new();
    if (!bus->ns || !bus->comp || !bus->routes || bus->wake_fd < 0 || bus->epfd < 0 ||
        !bus->sub || !bus->reg || !bus->mbox) {
        TB_CLOG_ERROR(component, "cannot create a bus handle: %s", strerror(errno));
        goto fail;
    }
    char cerr[600];
    if (tb_node_curve_client(node, bus->sub, tb_node_hub_pub(node), tb_node_join_key(node), cerr,
                             sizeof(cerr)) != 0 ||
        tb_node_curve_client(node, bus->reg, tb_node_registry_addr(node), tb_node_join_key(node),
                             cerr, sizeof(cerr)) != 0) {
        TB_CLOG_ERROR(component, "cannot connect to the registry: %s", cerr);
        goto fail;
    }
    if (zmq_connect(bus->sub, tb_node_hub_pub(node)) != 0 ||
        zmq_connect(bus->reg, tb_node_registry_addr(node)) != 0) {
        TB_CLOG_ERROR(component, "cannot connect to the registry: %s", zmq_strerror(errno));
        goto fail;
    }
    zmq_setsockopt(bus->sub, ZMQ_SUBSCRIBE, "route.", 6);
    bus->direct_src.kind = IT_DIRECT; /* no descriptor: ready when a direct answer is queued */
    s_src_track(bus, &bus->wake_src, IT_WAKE, NULL, NULL, bus->wake_fd);
    s_src_track(bus, &bus->mbox_src, IT_MBOX, NULL, NULL, tb_mbox_fd(bus->mbox));
    s_src_track(bus, &bus->sub_src, IT_SUB, NULL, bus->sub, -1);
    s_src_track(bus, &bus->reg_src, IT_REG, NULL, bus->reg, -1);
    s_request_snapshot(bus);
    int64_t deadline = s_now() + 3000000000LL;
    while (!bus->synced && s_now() < deadline) {
        tb_bus_run(bus, 50);
    }
    if (!bus->synced) {
        TB_CLOG_WARN(component, "no route snapshot from the registry yet: routes may appear "
                                "late");
    }
    return bus;
fail:
    tb_bus_destroy(&bus);
    return NULL;
}

void tb_bus_set_metrics(tb_bus_t *bus, tb_metrics_t *metrics)
{
    bus->m_fallback = metrics ? tb_metric_get(metrics, "turbine_router_fallback_total",
                                              TB_METRIC_COUNTER,
                                              "instances chosen without the router (it could not "
                                              "be asked or its answer could not be used), by "
                                              "component, model and why",
                                              "component,model,reason", NULL, 0)
                              : NULL;
}

void tb_bus_destroy(tb_bus_t **bus_p)
{
    if (!bus_p || !*bus_p) {
        return;
    }
    tb_bus_t *bus = *bus_p;
    while (bus->n_eps > 0) {
        struct endpoint *ep = bus->eps[--bus->n_eps];
        TB_CLOG_INFO(bus->log_name, "no longer serving %s", ep->name);
        s_endpoint_close(bus, ep, "the component is stopping");
    }
    size_t n = 0;
    uint64_t *v = s_calls_where(bus, NULL, NULL, &n);
    for (size_t i = 0; i < n; i++) {
        struct tb_call *call = tb_u64map_get(&bus->calls, v[i]);
        if (!call) {
            continue;
        }
        s_send_cancel(call);
        s_call_fail(bus, call, TB_EDRAINING, "the calling component is stopping");
    }
    free(v);
    struct conn *c;
    for (size_t it = 0; tb_u64map_next(&bus->conns, &it, NULL, (void **)&c);) {
        s_conn_close(bus, c);
    }
    s_reap(bus);
    if (bus->mbox) {
        /* Closed first, so that a later local call fails at once (TB_ENOROUTE) instead of
         * waiting for its deadline; what was queued is answered (no endpoint left: an error
         * each), after what a previous run left in mq. */
        struct tb_mbox_msg *rest = tb_mbox_close(bus->mbox), **tail = &bus->mq;
        while (*tail) {
            tail = &(*tail)->next;
        }
        *tail = rest;
        while (!s_on_mbox(bus)) {
        }
        tb_mbox_unref(&bus->mbox);
    }
    while (bus->dq_head) {
        struct dchunk *d = bus->dq_head;
        bus->dq_head = d->next;
        free(d);
    }
    tb_u64map_release(&bus->calls);
    tb_u64map_release(&bus->conns);
    for (size_t i = 0; i < bus->n_subs; i++) {
        free(bus->subs[i].prefix);
    }
    free(bus->subs);
    for (size_t i = 0; i < bus->n_watches; i++) {
        free(bus->watches[i]);
    }
    free(bus->watches);
    free(bus->rwatch);
    free(bus->eps);
    free(bus->order);
    if (bus->sub) {
        zmq_close(bus->sub);
    }
    if (bus->reg) {
        zmq_close(bus->reg);
    }
    if (bus->pub) {
        zmq_close(bus->pub);
    }
    if (bus->wake_fd >= 0) {
        close(bus->wake_fd);
    }
    if (bus->epfd >= 0) {
        close(bus->epfd);
    }
    tb_route_table_destroy(&bus->routes);
    free(bus->ns);
    free(bus->comp);
    free(bus);
    *bus_p = NULL;
}
