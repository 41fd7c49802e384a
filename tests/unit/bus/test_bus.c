/* Unit tests of the bus: calls with streamed replies, no_route, cancellation, deadlines, instance
 * loss, pings, events, route events, the tcp and ipc transports between two nodes, and the loop
 * itself: more than a dispatch budget of replies (bus_run and an outside loop on tb_bus_fd), fd
 * watches removed from a callback, the spin after activity staying bounded, and direct calls. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tb_bus.h"
#include "tb_log.h"
#include "tb_node.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a server that answers each request with `chunks` echoes of its payload ---- */
struct server {
    const struct tb_host *unused;
    int chunks;
    bool hold; /* keep requests open (for cancel/deadline tests) */
    tb_request_t *held;
    int requests;
    int cancels;
};

static void on_request(tb_request_t *req, const void *payload, size_t len, void *user)
{
    struct server *s = user;
    s->requests++;
    if (s->hold) {
        s->held = req;
        return;
    }
    for (int i = 0; i < s->chunks; i++) {
        assert_int_equal(tb_bus_reply(req, payload, len, false), 0);
    }
    assert_int_equal(tb_bus_reply(req, "end", 3, true), 0);
}

static void on_cancel(tb_request_t *req, void *user)
{
    struct server *s = user;
    s->cancels++;
    if (s->held == req) {
        tb_bus_reply_error(req, TB_ECANCELED, "cancelled");
        s->held = NULL;
    }
}

/* ---- a client collecting chunks ---- */
struct client {
    int data;
    int finals;
    int errors;
    int last_code;
    char last_msg[256];
    char payload[64];
};

static void on_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    struct client *c = user;
    if (ch->kind == TB_CHUNK_DATA) {
        c->data++;
        snprintf(c->payload, sizeof(c->payload), "%.*s", (int)ch->len, (const char *)ch->data);
    } else if (ch->kind == TB_CHUNK_FINAL) {
        c->finals++;
    } else {
        c->errors++;
        c->last_code = ch->code;
        snprintf(c->last_msg, sizeof(c->last_msg), "%s", ch->message);
    }
}

static bool done(const struct client *c)
{
    return c->finals + c->errors > 0;
}

/* Pumps both handles until `c` finished or `ms` passed. */
static void pump(tb_bus_t *a, tb_bus_t *b, const struct client *c, int ms)
{
    int64_t end = now_ms() + ms;
    while (now_ms() < end && !(c && done(c))) {
        tb_bus_run(a, 5);
        if (b) {
            tb_bus_run(b, 5);
        }
    }
}

static tb_node_t *head(void)
{
    struct tb_node_config cfg = {.heartbeat_ms = 100, .lease_ttl_ms = 400};
    tb_node_t *n = NULL;
    char err[256];
    assert_int_equal(tb_node_new(&cfg, &n, err, sizeof(err)), 0);
    return n;
}

static void wait_route(tb_bus_t *a, tb_bus_t *b, const char *endpoint, int want)
{
    int64_t end = now_ms() + 3000;
    while (now_ms() < end && tb_bus_routes_find(b, endpoint, NULL, NULL, 0) != want) {
        tb_bus_run(a, 5);
        tb_bus_run(b, 5);
    }
    assert_int_equal(tb_bus_routes_find(b, endpoint, NULL, NULL, 0), want);
}

static void test_call_streams_chunks(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *srv = tb_bus_new(n, "t", "srv");
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    struct server s = {.chunks = 3};
    tb_endpoint_t *ep;
    struct tb_endpoint_meta meta = {.model = "m1", .kind = "text", .context_length = 512};
    assert_int_equal(tb_bus_endpoint_add(srv, "gen", &meta, on_request, on_cancel, &s, &ep), 0);
    wait_route(srv, cli, "t.srv.gen", 1);
    struct tb_route r;
    assert_int_equal(tb_bus_routes_find(cli, NULL, "m1", &r, 1), 1);
    assert_string_equal(r.kind, "text");
    assert_int_equal(r.context_length, 512);
    assert_true(r.local);
    /* rows of a plugin whose struct tb_route is longer (a later ABI) or exactly ABI 1.0's: filled
     * with its stride, the bytes the host has no member for left alone */
    struct {
        struct tb_route r;
        uint64_t later[2];
    } rows[2];
    memset(rows, 0xab, sizeof(rows));
    assert_int_equal(tb_bus_routes_list(cli, NULL, "m1", rows, sizeof(rows[0]), 2), 1);
    assert_string_equal(rows[0].r.endpoint, "t.srv.gen");
    assert_int_equal(rows[0].later[1], 0xababababababababULL);
    assert_int_equal(rows[1].r.instance_id, 0xababababababababULL);
    assert_int_equal(tb_bus_routes_list(cli, NULL, "m1", rows, 16, 2), TB_EINVAL);

    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(cli, "t.srv.gen", 0, "hello", 5, 2000, on_chunk, &c, &call), 0);
    pump(srv, cli, &c, 2000);
    assert_int_equal(c.data, 3);
    assert_int_equal(c.finals, 1);
    assert_int_equal(c.errors, 0);
    assert_string_equal(c.payload, "hello");

    tb_bus_destroy(&cli);
    tb_bus_destroy(&srv);
    tb_node_destroy(&n);
}

static void test_no_route_fails_at_once(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    struct client c = {0};
    tb_call_t *call = (tb_call_t *)&c;
    int64_t t0 = now_ms();
    assert_int_equal(tb_bus_call(cli, "t.nobody.gen", 0, "x", 1, 1000, on_chunk, &c, &call),
                     TB_ENOROUTE);
    assert_null(call);
    assert_true(now_ms() - t0 < 50);
    tb_bus_destroy(&cli);
    tb_node_destroy(&n);
}

static void test_cancel_reaches_server(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *srv = tb_bus_new(n, "t", "srv");
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    struct server s = {.hold = true};
    tb_endpoint_t *ep;
    assert_int_equal(tb_bus_endpoint_add(srv, "gen", NULL, on_request, on_cancel, &s, &ep), 0);
    wait_route(srv, cli, "t.srv.gen", 1);
    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(cli, "t.srv.gen", 0, "x", 1, 0, on_chunk, &c, &call), 0);
    int64_t end = now_ms() + 2000;
    while (s.requests == 0 && now_ms() < end) {
        pump(srv, cli, NULL, 10);
    }
    assert_int_equal(s.requests, 1);
    tb_bus_call_cancel(call);
    end = now_ms() + 2000;
    while (s.cancels == 0 && now_ms() < end) {
        pump(srv, cli, NULL, 10);
    }
    assert_int_equal(s.cancels, 1);
    assert_null(s.held);
    /* A cancelled call delivers nothing more. */
    pump(srv, cli, NULL, 50);
    assert_int_equal(c.data + c.finals + c.errors, 0);
    tb_bus_destroy(&cli);
    tb_bus_destroy(&srv);
    tb_node_destroy(&n);
}

static void test_deadline_times_out_and_cancels(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *srv = tb_bus_new(n, "t", "srv");
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    struct server s = {.hold = true};
    tb_endpoint_t *ep;
    assert_int_equal(tb_bus_endpoint_add(srv, "gen", NULL, on_request, on_cancel, &s, &ep), 0);
    wait_route(srv, cli, "t.srv.gen", 1);
    struct client c = {0};
    tb_call_t *call;
    int64_t t0 = now_ms();
    assert_int_equal(tb_bus_call(cli, "t.srv.gen", 0, "x", 1, 150, on_chunk, &c, &call), 0);
    pump(srv, cli, &c, 2000);
    int64_t took = now_ms() - t0;
    assert_int_equal(c.errors, 1);
    assert_int_equal(c.last_code, TB_ETIMEDOUT);
    assert_true(took >= 140 && took < 1000);
    /* The server learns of it through a cancel (sent by the caller) or its own deadline. */
    pump(srv, cli, NULL, 200);
    assert_int_equal(s.cancels, 1);
    tb_bus_destroy(&cli);
    tb_bus_destroy(&srv);
    tb_node_destroy(&n);
}

static void test_lost_instance_ends_calls(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    /* A route whose address nobody serves: calls to it get no answer until the route goes. */
    const char *addrs[1] = {"inproc://tb-test-nowhere"};
    struct tb_msg_route r = {.endpoint = "t.ghost.gen",
                             .instance_id = 4242,
                             .process_id = tb_node_process_id(n),
                             .addresses = addrs,
                             .addresses_count = 1};
    char err[256];
    assert_int_equal(tb_node_lease_add(n, &r, 2000, err, sizeof(err)), 0);
    wait_route(cli, cli, "t.ghost.gen", 1);
    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(cli, "t.ghost.gen", 0, "x", 1, 0, on_chunk, &c, &call), 0);
    pump(cli, NULL, &c, 100);
    assert_false(done(&c));
    tb_node_lease_remove(n, 4242);
    pump(cli, NULL, &c, 2000);
    assert_int_equal(c.errors, 1);
    assert_int_equal(c.last_code, TB_EGONE);
    assert_non_null(strstr(c.last_msg, "went away"));
    tb_bus_destroy(&cli);
    tb_node_destroy(&n);
}

/* A request that reaches a handle of this process after its endpoint was removed (the caller had
 * not yet seen the route go) is answered at once with TB_EGONE. */
static void test_local_request_after_remove(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *srv = tb_bus_new(n, "t", "srv");
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    struct server s = {.chunks = 1};
    tb_endpoint_t *ep;
    assert_int_equal(tb_bus_endpoint_add(srv, "gen", NULL, on_request, on_cancel, &s, &ep), 0);
    wait_route(srv, cli, "t.srv.gen", 1);
    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(cli, "t.srv.gen", 0, "x", 1, 3000, on_chunk, &c, &call), 0);
    pump(srv, cli, &c, 3000);
    assert_int_equal(c.finals, 1);
    assert_int_equal(tb_bus_endpoint_remove(srv, ep), 0);
    /* cli has not run since: the route is still in its table, its connection still open */
    struct client c2 = {0};
    assert_int_equal(tb_bus_call(cli, "t.srv.gen", 0, "x", 1, 3000, on_chunk, &c2, &call), 0);
    tb_bus_run(srv, 0);
    int64_t end = now_ms() + 1000;
    while (!done(&c2) && now_ms() < end) {
        tb_bus_run(cli, 5);
    }
    assert_int_equal(c2.errors, 1);
    assert_int_equal(c2.last_code, TB_EGONE);
    assert_non_null(
        strstr(c2.last_msg, "no longer served")); /* the handle's answer, not the route's */
    assert_int_equal(s.requests, 1);
    tb_bus_destroy(&cli);
    tb_bus_destroy(&srv);
    tb_node_destroy(&n);
}

static void test_ping_answers(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *srv = tb_bus_new(n, "t", "srv");
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    struct server s = {.chunks = 1};
    tb_endpoint_t *ep;
    assert_int_equal(tb_bus_endpoint_add(srv, "gen", NULL, on_request, on_cancel, &s, &ep), 0);
    wait_route(srv, cli, "t.srv.gen", 1);
    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_ping(cli, "t.srv.gen", tb_bus_endpoint_instance(ep), 1000, on_chunk,
                                 &c, &call),
                     0);
    pump(srv, cli, &c, 2000);
    assert_int_equal(c.finals, 1);
    assert_int_equal(s.requests, 0); /* answered by the bus layer, not the component */
    tb_bus_destroy(&cli);
    tb_bus_destroy(&srv);
    tb_node_destroy(&n);
}

struct events {
    int count;
    char topic[64];
    char data[64];
};

static void on_event(const char *topic, const void *data, size_t len, void *user)
{
    struct events *e = user;
    e->count++;
    snprintf(e->topic, sizeof(e->topic), "%s", topic);
    snprintf(e->data, sizeof(e->data), "%.*s", (int)len, (const char *)data);
}

static void test_publish_subscribe(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *pub = tb_bus_new(n, "t", "pub");
    tb_bus_t *sub = tb_bus_new(n, "t", "sub");
    struct events e = {0};
    assert_int_equal(tb_bus_subscribe(sub, "load.", on_event, &e), 0);
    assert_int_equal(tb_bus_subscribe(sub, "route.", on_event, &e), TB_EINVAL);
    /* Subscriptions take a moment to reach the hub: publish until one arrives. */
    int64_t end = now_ms() + 3000;
    while (e.count == 0 && now_ms() < end) {
        assert_int_equal(tb_bus_publish(pub, "load.t.x", "42", 2), 0);
        tb_bus_publish(pub, "other.t.x", "no", 2);
        pump(pub, sub, NULL, 20);
    }
    assert_true(e.count >= 1);
    assert_string_equal(e.topic, "load.t.x");
    assert_string_equal(e.data, "42");
    tb_bus_destroy(&sub);
    tb_bus_destroy(&pub);
    tb_node_destroy(&n);
}

struct watch {
    int added;
    int removed;
};

static void on_route(const struct tb_route *r, bool added, void *user)
{
    struct watch *w = user;
    if (strcmp(r->endpoint, "t.srv.gen") == 0) {
        if (added) {
            w->added++;
        } else {
            w->removed++;
        }
    }
}

static void test_route_events(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *srv = tb_bus_new(n, "t", "srv");
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    struct watch w = {0};
    assert_int_equal(tb_bus_routes_watch(cli, on_route, &w), 0);
    struct server s = {.chunks = 1};
    tb_endpoint_t *ep;
    assert_int_equal(tb_bus_endpoint_add(srv, "gen", NULL, on_request, on_cancel, &s, &ep), 0);
    wait_route(srv, cli, "t.srv.gen", 1);
    assert_int_equal(w.added, 1);
    assert_int_equal(tb_bus_endpoint_remove(srv, ep), 0);
    wait_route(srv, cli, "t.srv.gen", 0);
    assert_int_equal(w.removed, 1);
    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(cli, "t.srv.gen", 0, "x", 1, 0, on_chunk, &c, &call),
                     TB_ENOROUTE);
    tb_bus_destroy(&cli);
    tb_bus_destroy(&srv);
    tb_node_destroy(&n);
}

/* Two nodes, the second joined to the first's registry: a cross-node call over `transport`. */
static void joined_call(const char *listen, const char *transport)
{
    struct tb_node_config hc = {.registry_listen = listen,
                                .transport = transport,
                                .heartbeat_ms = 100,
                                .lease_ttl_ms = 400};
    tb_node_t *h = NULL;
    tb_node_t *w = NULL;
    char err[256];
    assert_int_equal(tb_node_new(&hc, &h, err, sizeof(err)), 0);
    const char *addr = tb_node_listen_addr(h);
    assert_non_null(addr);
    struct tb_node_config wc = {.join = addr, .transport = transport};
    assert_int_equal(tb_node_new(&wc, &w, err, sizeof(err)), 0);
    assert_int_equal(tb_node_heartbeat_ms(w), 100); /* learnt from the head */

    tb_bus_t *srv = tb_bus_new(w, "t", "srv");
    tb_bus_t *cli = tb_bus_new(h, "t", "cli");
    struct server s = {.chunks = 2};
    tb_endpoint_t *ep;
    assert_int_equal(tb_bus_endpoint_add(srv, "gen", NULL, on_request, on_cancel, &s, &ep), 0);
    wait_route(srv, cli, "t.srv.gen", 1);
    struct tb_route r;
    tb_bus_routes_find(cli, "t.srv.gen", NULL, &r, 1);
    assert_false(r.local);
    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(cli, "t.srv.gen", 0, "ping", 4, 3000, on_chunk, &c, &call), 0);
    pump(srv, cli, &c, 3000);
    assert_int_equal(c.data, 2);
    assert_int_equal(c.finals, 1);
    /* A cancel crosses the socket too (calls within one process use mailboxes instead). */
    s.hold = true;
    struct client c2 = {0};
    assert_int_equal(tb_bus_call(cli, "t.srv.gen", 0, "x", 1, 0, on_chunk, &c2, &call), 0);
    int64_t end = now_ms() + 3000;
    while (s.requests < 2 && now_ms() < end) {
        pump(srv, cli, NULL, 10);
    }
    assert_int_equal(s.requests, 2);
    tb_bus_call_cancel(call);
    while (s.cancels == 0 && now_ms() < end) {
        pump(srv, cli, NULL, 10);
    }
    assert_int_equal(s.cancels, 1);
    assert_null(s.held);
    tb_bus_destroy(&cli);
    tb_bus_destroy(&srv);
    tb_node_destroy(&w);
    tb_node_destroy(&h);
}

static void test_tcp_transport(void **state)
{
    (void)state;
    joined_call("tcp://127.0.0.1:*", "tcp");
}

static void test_ipc_transport(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "ipc:///tmp/tb-test-%d.reg", (int)getpid());
    joined_call(path, "ipc");
}

static void test_join_unreachable_fails_fast(void **state)
{
    (void)state;
    struct tb_node_config wc = {.join = "tcp://127.0.0.1:1", .join_timeout_ms = 300};
    tb_node_t *w = NULL;
    char err[256];
    int64_t t0 = now_ms();
    assert_int_equal(tb_node_new(&wc, &w, err, sizeof(err)), TB_ETIMEDOUT);
    assert_null(w);
    assert_true(now_ms() - t0 < 2000);
    assert_non_null(strstr(err, "did not answer"));
}

/* A server handle serving t.srv.gen with `chunks` echoes and a client handle that sees its
 * route, on a fresh head node (`cfg`, or short heartbeats and leases when NULL). */
struct pair {
    tb_node_t *n;
    tb_bus_t *srv, *cli;
    struct server s;
    tb_endpoint_t *ep;
};

static void pair_open(struct pair *p, const struct tb_node_config *cfg, int chunks)
{
    struct tb_node_config dflt = {.heartbeat_ms = 100, .lease_ttl_ms = 400};
    char err[256];
    assert_int_equal(tb_node_new(cfg ? cfg : &dflt, &p->n, err, sizeof(err)), 0);
    p->srv = tb_bus_new(p->n, "t", "srv");
    p->cli = tb_bus_new(p->n, "t", "cli");
    p->s = (struct server){.chunks = chunks};
    assert_int_equal(tb_bus_endpoint_add(p->srv, "gen", NULL, on_request, on_cancel, &p->s,
                                         &p->ep),
                     0);
    wait_route(p->srv, p->cli, "t.srv.gen", 1);
}

static void pair_close(struct pair *p)
{
    tb_bus_destroy(&p->cli);
    tb_bus_destroy(&p->srv);
    tb_node_destroy(&p->n);
}

/* 500 chunks in one answer: more than a run's budget for one socket (256).  Run with a timeout,
 * the handle goes on at once while replies are left; driven by an outside loop that runs it only
 * when tb_bus_fd is readable, it keeps that descriptor readable while replies wait (a ZeroMQ
 * descriptor fires for new messages, not for those left unread). */
static void budget_run(bool outside_loop)
{
    struct pair p;
    pair_open(&p, NULL, 500);
    int fd = outside_loop ? tb_bus_fd(p.cli) : -1;
    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(p.cli, "t.srv.gen", 0, "x", 1, 5000, on_chunk, &c, &call), 0);
    int64_t end = now_ms() + 3000;
    while (p.s.requests == 0 && now_ms() < end) {
        tb_bus_run(p.srv, 5);
    }
    assert_int_equal(p.s.requests, 1);
    int64_t t0 = now_ms();
    int runs = 0;
    while (!done(&c) && now_ms() < end) {
        if (outside_loop) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (poll(&pfd, 1, 0) != 1) {
                break; /* not readable now, with replies waiting: they would be stranded */
            }
            tb_bus_run(p.cli, 0);
        } else {
            tb_bus_run(p.cli, 1000);
        }
        runs++;
    }
    assert_int_equal(c.data, 500);
    assert_int_equal(c.finals, 1);
    assert_true(runs >= 2);
    assert_true(now_ms() - t0 < 500);
    pair_close(&p);
}

static void test_more_than_a_budget(void **state)
{
    (void)state;
    budget_run(false);
    budget_run(true);
}

/* Two readable descriptors whose callbacks each unwatch both: only the first runs. */
struct unwatch_ctx {
    tb_bus_t *bus;
    int fds[2];
    int calls;
};

static void on_fd_unwatch(int fd, void *user)
{
    (void)fd;
    struct unwatch_ctx *u = user;
    u->calls++;
    tb_bus_unwatch_fd(u->bus, u->fds[0]);
    tb_bus_unwatch_fd(u->bus, u->fds[1]);
}

static void test_unwatch_in_callback(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *b = tb_bus_new(n, "t", "w");
    int p1[2], p2[2];
    assert_int_equal(pipe(p1), 0);
    assert_int_equal(pipe(p2), 0);
    struct unwatch_ctx u = {.bus = b, .fds = {p1[0], p2[0]}};
    assert_int_equal(tb_bus_watch_fd(b, p1[0], on_fd_unwatch, &u), 0);
    assert_int_equal(tb_bus_watch_fd(b, p2[0], on_fd_unwatch, &u), 0);
    assert_int_equal(write(p1[1], "x", 1), 1);
    assert_int_equal(write(p2[1], "x", 1), 1);
    for (int i = 0; i < 5; i++) {
        tb_bus_run(b, 10);
    }
    assert_int_equal(u.calls, 1);
    assert_int_equal(tb_bus_unwatch_fd(b, p1[0]), TB_ENOENT);
    tb_bus_destroy(&b);
    tb_node_destroy(&n);
    close(p1[0]);
    close(p1[1]);
    close(p2[0]);
    close(p2[1]);
}

/* With a 2 ms spin, a handle idle for 300 ms after a call uses a few ms of CPU, not 300. */
static void test_spin_is_bounded(void **state)
{
    (void)state;
    struct tb_node_config cfg = {.heartbeat_ms = 100, .lease_ttl_ms = 400, .spin_us = 2000};
    struct pair p;
    pair_open(&p, &cfg, 1);
    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(p.cli, "t.srv.gen", 0, "x", 1, 2000, on_chunk, &c, &call), 0);
    pump(p.srv, p.cli, &c, 2000);
    assert_int_equal(c.finals, 1);
    struct timespec a, z;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    int64_t end = now_ms() + 300;
    while (now_ms() < end) {
        tb_bus_run(p.cli, 20);
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &z);
    int64_t cpu_ms = (z.tv_sec - a.tv_sec) * 1000 + (z.tv_nsec - a.tv_nsec) / 1000000;
    assert_true(cpu_ms < 60);
    pair_close(&p);
}

/* A direct endpoint: the caller runs its handler inside tb_bus_call; the answer waits for the
 * caller's next run; cancel before that drops it; a handler that does not answer ends the call
 * with an error; pings and a handle with direct calls off still go over the socket. */
static void test_direct_call(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *srv = tb_bus_new(n, "t", "srv");
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    struct server s = {.chunks = 2};
    tb_endpoint_t *ep;
    assert_int_equal(tb_bus_endpoint_add(srv, "route", NULL, on_request, on_cancel, &s, &ep), 0);
    assert_int_equal(tb_bus_endpoint_set_direct(ep, true), 0);
    wait_route(srv, cli, "t.srv.route", 1);

    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(cli, "t.srv.route", 0, "hello", 5, 2000, on_chunk, &c, &call),
                     0);
    assert_int_equal(s.requests, 1); /* ran here, inside the call */
    assert_int_equal(c.data + c.finals + c.errors, 0);
    assert_true(tb_bus_run(cli, 0) > 0); /* delivered by the caller's next run, without waiting */
    assert_int_equal(c.data, 2);
    assert_int_equal(c.finals, 1);
    assert_string_equal(c.payload, "hello");

    /* cancelled before its answer was delivered: nothing comes, on_cancel is not called */
    struct client c2 = {0};
    assert_int_equal(tb_bus_call(cli, "t.srv.route", 0, "x", 1, 2000, on_chunk, &c2, &call), 0);
    tb_bus_call_cancel(call);
    tb_bus_run(cli, 0);
    assert_int_equal(c2.data + c2.finals + c2.errors, 0);
    assert_int_equal(s.cancels, 0);

    /* a handler that returns without answering: the call still ends, with an error */
    s.hold = true;
    struct client c3 = {0};
    assert_int_equal(tb_bus_call(cli, "t.srv.route", 0, "x", 1, 2000, on_chunk, &c3, &call), 0);
    tb_bus_run(cli, 0);
    assert_int_equal(c3.errors, 1);
    assert_int_equal(c3.last_code, TB_EINTERNAL);
    s.hold = false;
    s.held = NULL;

    /* a ping is answered by the serving thread's loop */
    struct client c4 = {0};
    assert_int_equal(tb_bus_ping(cli, "t.srv.route", 0, 2000, on_chunk, &c4, &call), 0);
    pump(srv, cli, &c4, 2000);
    assert_int_equal(c4.finals, 1);

    /* direct off: the request travels to the serving handle */
    assert_int_equal(tb_bus_endpoint_set_direct(ep, false), 0);
    int before = s.requests;
    struct client c5 = {0};
    assert_int_equal(tb_bus_call(cli, "t.srv.route", 0, "x", 1, 2000, on_chunk, &c5, &call), 0);
    assert_int_equal(s.requests, before);
    pump(srv, cli, &c5, 2000);
    assert_int_equal(s.requests, before + 1);
    assert_int_equal(c5.finals, 1);

    /* a removed direct endpoint is no longer called directly */
    assert_int_equal(tb_bus_endpoint_set_direct(ep, true), 0);
    uint64_t instance = tb_bus_endpoint_instance(ep);
    assert_non_null(tb_node_direct_acquire(n, instance));
    tb_node_direct_release(n);
    assert_int_equal(tb_bus_endpoint_remove(srv, ep), 0);
    assert_null(tb_node_direct_acquire(n, instance));

    tb_bus_destroy(&cli);
    tb_bus_destroy(&srv);
    tb_node_destroy(&n);
}

/* A handler that asks a direct endpoint and answers its own caller with the result. */
struct relay {
    tb_bus_t *bus;
    tb_request_t *req;
    int requests;
    int answers;
};

static void relay_on_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    struct relay *r = user;
    if (ch->kind != TB_CHUNK_DATA) {
        r->answers++;
        tb_bus_reply(r->req, "ok", 2, true);
    }
}

static void relay_on_request(tb_request_t *req, const void *payload, size_t len, void *user)
{
    struct relay *r = user;
    r->requests++;
    r->req = req;
    tb_call_t *call;
    assert_int_equal(tb_bus_call(r->bus, "t.srv.route", 0, payload, len, 1000, relay_on_chunk, r,
                                 &call),
                     0);
}

/* A direct call made by a callback inside tb_bus_run is answered within that same run. */
static void test_direct_call_from_callback(void **state)
{
    (void)state;
    tb_node_t *n = head();
    tb_bus_t *srv = tb_bus_new(n, "t", "srv");
    tb_bus_t *mid = tb_bus_new(n, "t", "mid");
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    struct server s = {.chunks = 0};
    struct relay r = {.bus = mid};
    tb_endpoint_t *ep, *ep2;
    assert_int_equal(tb_bus_endpoint_add(srv, "route", NULL, on_request, on_cancel, &s, &ep), 0);
    assert_int_equal(tb_bus_endpoint_set_direct(ep, true), 0);
    assert_int_equal(tb_bus_endpoint_add(mid, "mid", NULL, relay_on_request, NULL, &r, &ep2), 0);
    wait_route(srv, mid, "t.srv.route", 1);
    wait_route(mid, cli, "t.mid.mid", 1);
    struct client c = {0};
    tb_call_t *call;
    assert_int_equal(tb_bus_call(cli, "t.mid.mid", 0, "q", 1, 2000, on_chunk, &c, &call), 0);
    int64_t end = now_ms() + 2000;
    while (now_ms() < end && !done(&c)) {
        tb_bus_run(cli, 5);
        tb_bus_run(mid, 5);
        assert_int_equal(r.answers, r.requests); /* never left for a later run */
    }
    assert_int_equal(c.finals, 1);
    assert_int_equal(r.requests, 1);
    assert_int_equal(s.requests, 1);
    tb_bus_destroy(&cli);
    tb_bus_destroy(&mid);
    tb_bus_destroy(&srv);
    tb_node_destroy(&n);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(tb_bus_name_is_valid("demo.engine.generate", true));
    assert_false(tb_bus_name_is_valid("demo..generate", true));
    assert_false(tb_bus_name_is_valid("/demo.a.b", true));
    assert_false(tb_bus_name_is_valid("demo.a", true));
    assert_false(tb_bus_name_is_valid("Gen", false));
    assert_true(tb_bus_name_is_valid("gen-1", false));
}

int main(void)
{
    tb_log_set_level(TB_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_streams_chunks),
        cmocka_unit_test(test_no_route_fails_at_once),
        cmocka_unit_test(test_cancel_reaches_server),
        cmocka_unit_test(test_deadline_times_out_and_cancels),
        cmocka_unit_test(test_lost_instance_ends_calls),
        cmocka_unit_test(test_ping_answers),
        cmocka_unit_test(test_local_request_after_remove),
        cmocka_unit_test(test_publish_subscribe),
        cmocka_unit_test(test_route_events),
        cmocka_unit_test(test_tcp_transport),
        cmocka_unit_test(test_ipc_transport),
        cmocka_unit_test(test_join_unreachable_fails_fast),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_direct_call),
        cmocka_unit_test(test_direct_call_from_callback),
        cmocka_unit_test(test_more_than_a_budget),
        cmocka_unit_test(test_unwatch_in_callback),
        cmocka_unit_test(test_spin_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
