/*
 * tb_http.h - the OpenAI-compatible HTTP frontend: `threads` threads, each running one event loop
 * that drives its own libmicrohttpd daemon (external epoll mode, all on the same port) and its own
 * bus handle.  See docs/http.md.
 *
 * Lifecycle (from plugin.c): tb_http_new -> tb_http_start (binds, logs the address) ->
 * [tb_http_drain] -> tb_http_stop -> tb_http_destroy.  tb_http_in_flight and tb_http_drain may be
 * called from any thread.
 */
#ifndef TB_HTTP_H
#define TB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "tb_plugin.h"

struct tb_http_config {
    const char *host;         /* address to listen on */
    int64_t port;             /* 0: any free port */
    const char *router;       /* router component name, NULL: pick instances here */
    double router_timeout_s;  /* how long to wait for the router's answer */
    double request_timeout_s; /* bus deadline of one generation */
    int64_t max_body_size;    /* bytes */
    int64_t max_header_size;  /* bytes: request line + headers */
    double header_timeout_s;  /* a new connection's headers must not pause longer */
    double idle_timeout_s;    /* longest pause once headers arrived, and between requests */
    int64_t max_connections;
    int64_t max_in_flight;       /* generation requests at once; more get 503 */
    int64_t retry_after_s;       /* Retry-After of 503 answers */
    struct tb_str_list api_keys; /* empty (and no api_keys_file): no authentication */
    const char *api_keys_file;   /* NULL, or a file of keys, one per line */
    double health_interval_s;    /* how often each engine instance is probed */
    double health_timeout_s;     /* a probe not answered within this fails */
    const char *metrics_prefix;
    const char *system_fingerprint; /* NULL: derived from the version */
    double spin_s;                  /* the loop polls this long after work before sleeping */
    int64_t threads;                /* event loops (threads), each with its own daemon */
};

typedef struct tb_http_front tb_http_t;

/* Allocates the frontend from its validated config (borrowed until destroy).  Binds nothing.
 * 0, or a TB_E* code after host->set_error. *out is owned by the caller. */
int tb_http_new(const struct tb_host *host, tb_component_t *comp,
                const struct tb_http_config *cfg, tb_http_t **out);
/* Starts the threads, each of which creates its bus handle and binds the port; returns when all
 * listen (0) or one failed (a TB_E* code after host->set_error; the others are stopped). */
int tb_http_start(tb_http_t *h);
/* /ready turns 503; new generation requests get 503 with Connection: close; streams finish. */
void tb_http_drain(tb_http_t *h);
/* Generation requests not yet completed (their response not yet fully sent). */
size_t tb_http_in_flight(tb_http_t *h);
/* Ends what is left (cancelling upstream calls), closes every connection, joins the threads. */
void tb_http_stop(tb_http_t *h);
/* Frees the frontend; sets *h_p to NULL; accepts NULL. */
void tb_http_destroy(tb_http_t **h_p);

#endif /* TB_HTTP_H */
