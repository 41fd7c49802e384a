/*
 * tb_http_front: the frontend as the plugin sees it (tb_http.h): `threads` event loops
 * (tb_http.c), each a thread with its own libmicrohttpd daemon on the same port, its own bus
 * handle and its own view of the engines, and the little state they share (struct
 * tb_http_shared, tb_http_int.h): draining, the in-flight count max_in_flight is checked
 * against, and the per-model gauges.  The first loop binds the configured port (0: any), the
 * others the port it got.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_http_int.h"

struct tb_http_front {
    const struct tb_host *host;
    tb_component_t *comp;
    struct tb_http_shared sh;
    struct tb_http **loops; /* sh.n_loops of them */
    unsigned port;          /* the configured port (0: any) */
};

bool tb_http_shared_admit(struct tb_http_shared *sh, size_t max)
{
    size_t cur = atomic_load(&sh->in_flight);
    do {
        if (cur >= max) {
            return false;
        }
    } while (!atomic_compare_exchange_weak(&sh->in_flight, &cur, cur + 1));
    return true;
}

/* The gauge row of `model`, created if new; NULL when out of memory.  Under sh->lock. */
static struct tb_http_gauge *s_gauge(struct tb_http_shared *sh, const char *model)
{
    for (size_t i = 0; i < sh->n_gauges; i++) {
        if (strcmp(sh->gauges[i].model, model) == 0) {
            return &sh->gauges[i];
        }
    }
    if (sh->n_gauges == sh->cap_gauges) {
        size_t cap = sh->cap_gauges ? sh->cap_gauges * 2 : 8;
        struct tb_http_gauge *g = realloc(sh->gauges, cap * sizeof(*g));
        if (!g) {
            return NULL;
        }
        sh->gauges = g;
        sh->cap_gauges = cap;
    }
    struct tb_http_gauge *g = &sh->gauges[sh->n_gauges];
    g->counts = calloc(2 * sh->n_loops, sizeof(*g->counts));
    if (!g->counts) {
        return NULL;
    }
    snprintf(g->model, sizeof(g->model), "%s", model);
    sh->n_gauges++;
    return g;
}

void tb_http_shared_gauge(struct tb_http_shared *sh, size_t loop, const char *model,
                          int64_t inflight, int64_t queued, int64_t *sum_inflight,
                          int64_t *sum_queued)
{
    *sum_inflight = inflight;
    *sum_queued = queued;
    pthread_mutex_lock(&sh->lock);
    struct tb_http_gauge *g = s_gauge(sh, model);
    if (g) {
        g->counts[2 * loop] = inflight;
        g->counts[2 * loop + 1] = queued;
        *sum_inflight = *sum_queued = 0;
        for (size_t i = 0; i < sh->n_loops; i++) {
            *sum_inflight += g->counts[2 * i];
            *sum_queued += g->counts[2 * i + 1];
        }
    }
    pthread_mutex_unlock(&sh->lock);
}

int tb_http_new(const struct tb_host *host, tb_component_t *comp,
                const struct tb_http_config *cfg, tb_http_t **out)
{
    *out = NULL;
    struct tb_http_front *f = calloc(1, sizeof(*f));
    size_t n = cfg->threads > 0 ? (size_t)cfg->threads : 1;
    struct tb_http **loops = calloc(n, sizeof(*loops));
    if (!f || !loops) {
        free(f);
        free(loops);
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    f->host = host;
    f->comp = comp;
    f->loops = loops;
    f->port = (unsigned)cfg->port;
    f->sh.n_loops = n;
    f->sh.listen_fd = -1;
    atomic_init(&f->sh.draining, false);
    atomic_init(&f->sh.in_flight, 0);
    atomic_init(&f->sh.n_gens, 0);
    pthread_mutex_init(&f->sh.lock, NULL);
    for (size_t i = 0; i < n; i++) {
        int rc = tb_http_loop_new(host, comp, cfg, &f->sh, i, &f->loops[i]);
        if (rc != 0) {
            tb_http_destroy(&f);
            return rc;
        }
    }
    *out = f;
    return 0;
}

int tb_http_start(tb_http_t *f)
{
    int rc = tb_http_loop_start(f->loops[0], f->port);
    for (size_t i = 1; rc == 0 && i < f->sh.n_loops; i++) {
        rc = tb_http_loop_start(f->loops[i], tb_http_loop_port(f->loops[0]));
    }
    if (rc != 0) {
        tb_http_stop(f);
    }
    return rc;
}

void tb_http_drain(tb_http_t *f)
{
    atomic_store(&f->sh.draining, true);
    TB_LOG_INFO(f->host, f->comp,
                "draining: /ready answers 503, new requests get 503, %zu in flight finish",
                atomic_load(&f->sh.in_flight));
    for (size_t i = 0; i < f->sh.n_loops; i++) {
        tb_http_loop_wake(f->loops[i]);
    }
}

size_t tb_http_in_flight(tb_http_t *f)
{
    return atomic_load(&f->sh.in_flight);
}

void tb_http_stop(tb_http_t *f)
{
    for (size_t i = 0; i < f->sh.n_loops; i++) {
        if (f->loops[i]) {
            tb_http_loop_stop(f->loops[i]);
        }
    }
}

void tb_http_destroy(tb_http_t **f_p)
{
    if (!f_p || !*f_p) {
        return;
    }
    struct tb_http_front *f = *f_p;
    for (size_t i = 0; i < f->sh.n_loops; i++) {
        tb_http_loop_destroy(&f->loops[i]);
    }
    for (size_t i = 0; i < f->sh.n_gauges; i++) {
        free(f->sh.gauges[i].counts);
    }
    free(f->sh.gauges);
    pthread_mutex_destroy(&f->sh.lock);
    free(f->loops);
    free(f);
    *f_p = NULL;
}
