/* tb_echo: the echo service (see tb_echo.h). */
#include "tb_echo.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tb_actor.h"

struct stream {
    tb_request_t *req;
    uint8_t *data;
    size_t len;
    size_t sent_chunks;
    int64_t next_ns;
    bool cancelled;
    struct stream *next;
};

struct tb_echo {
    const struct tb_host *host;
    tb_component_t *comp;
    struct tb_echo_config cfg;
    tb_actor_t *actor;
    struct stream *streams;
    atomic_size_t in_flight;
};

static void s_on_request(tb_request_t *req, const void *payload, size_t len, void *user)
{
    tb_echo_t *e = user;
    struct stream *s = calloc(1, sizeof(*s));
    uint8_t *copy = len ? malloc(len) : NULL;
    if (!s || (len && !copy)) {
        free(s);
        free(copy);
        e->host->bus_reply_error(req, TB_ENOMEM, "out of memory");
        return;
    }
    if (len) {
        memcpy(copy, payload, len);
    }
    s->req = req;
    s->data = copy;
    s->len = len;
    s->next_ns = e->host->now_ns() + (int64_t)(e->cfg.delay_s * 1e9);
    s->next = e->streams;
    e->streams = s;
    e->host->bus_request_set_user(req, s);
    atomic_fetch_add(&e->in_flight, 1);
}

static void s_on_cancel(tb_request_t *req, void *user)
{
    (void)user;
    struct stream *s = ((tb_echo_t *)user)->host->bus_request_user(req);
    if (s) {
        s->cancelled = true;
    }
}

static int s_init(void *user, tb_bus_t *bus)
{
    tb_echo_t *e = user;
    tb_endpoint_t *ep;
    struct tb_endpoint_meta meta = {.kind = "echo"};
    int rc = e->host->bus_endpoint_add(bus, e->cfg.endpoint, &meta, s_on_request, s_on_cancel, e,
                                       &ep);
    if (rc != 0) {
        e->host->set_error(e->comp, "cannot serve endpoint '%s': %s", e->cfg.endpoint,
                           e->host->strerror(rc));
    }
    return rc;
}

/* Sends every chunk that is due; returns ms until the next one (-1 when none). */
static int s_step(void *user, tb_bus_t *bus)
{
    (void)bus;
    tb_echo_t *e = user;
    const struct tb_host *h = e->host;
    int64_t now = h->now_ns();
    int64_t wait = -1;
    size_t n_chunks = (size_t)e->cfg.chunks;
    for (struct stream **ps = &e->streams; *ps;) {
        struct stream *s = *ps;
        bool done = false;
        while (!s->cancelled && s->next_ns <= now && s->sent_chunks < n_chunks) {
            size_t a = s->len * s->sent_chunks / n_chunks;
            size_t b = s->len * (s->sent_chunks + 1) / n_chunks;
            if (h->bus_reply(s->req, s->data + a, b - a, false) == TB_EGONE) {
                s->cancelled = true;
                break;
            }
            s->sent_chunks++;
            s->next_ns += (int64_t)(e->cfg.delay_s * 1e9);
        }
        if (s->cancelled) {
            h->bus_reply_error(s->req, TB_ECANCELED, "cancelled");
            done = true;
        } else if (s->sent_chunks == n_chunks) {
            h->bus_reply(s->req, NULL, 0, true);
            done = true;
        } else {
            int64_t ms = (s->next_ns - now + 999999) / 1000000;
            if (wait < 0 || ms < wait) {
                wait = ms;
            }
        }
        if (done) {
            *ps = s->next;
            free(s->data);
            free(s);
            atomic_fetch_sub(&e->in_flight, 1);
        } else {
            ps = &s->next;
        }
    }
    return wait;
}

static void s_fini(void *user, tb_bus_t *bus)
{
    (void)bus;
    tb_echo_t *e = user;
    while (e->streams) {
        struct stream *s = e->streams;
        e->streams = s->next;
        e->host->bus_reply_error(s->req, TB_EDRAINING, "echo is stopping");
        free(s->data);
        free(s);
        atomic_fetch_sub(&e->in_flight, 1);
    }
}

static const struct tb_actor_ops s_ops = {.init = s_init, .step = s_step, .fini = s_fini};

int tb_echo_new(const struct tb_host *host, tb_component_t *comp,
                const struct tb_echo_config *cfg, tb_echo_t **out)
{
    tb_echo_t *e = calloc(1, sizeof(*e));
    if (!e) {
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    e->host = host;
    e->comp = comp;
    e->cfg = *cfg;
    atomic_init(&e->in_flight, 0);
    *out = e;
    return 0;
}

int tb_echo_start(tb_echo_t *e)
{
    return tb_actor_start(&e->actor, e->host, e->comp, &s_ops, e);
}

size_t tb_echo_in_flight(tb_echo_t *e)
{
    return atomic_load(&e->in_flight);
}

void tb_echo_stop(tb_echo_t *e)
{
    tb_actor_stop(&e->actor);
}

void tb_echo_destroy(tb_echo_t **e_p)
{
    if (e_p && *e_p) {
        free(*e_p);
        *e_p = NULL;
    }
}
