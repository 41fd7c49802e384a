/*
 * tb_http_int.h - state shared by the frontend's server loop (tb_http.c), its generation
 * requests (tb_http_gen.c) and the frontend that runs `threads` such loops (tb_http_front.c).
 * Private to the http plugin.  A struct tb_http belongs to its loop's thread except the fields
 * marked atomic; struct tb_http_shared is read and written by every loop (atomics, or under its
 * lock).
 */
#ifndef TB_HTTP_INT_H
#define TB_HTTP_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "tb_api_keys.h"
#include "tb_buf.h"
#include "tb_hreq_fsm.h"
#include "tb_http.h"
#include "tb_http_metrics.h"
#include "tb_instance_dir.h"
#include "tb_oai_request.h"
#include "tb_oai_response.h"
#include "tb_route_fallback.h"

/* What every loop of the frontend shares (owned by tb_http_front.c). */
struct tb_http_gauge {
    char model[160]; /* the model's label value */
    int64_t *counts; /* per loop: in flight, queued (2 x n_loops) */
};

struct tb_http_shared {
    size_t n_loops;
    int listen_fd; /* the first loop's listening socket, which the others accept on too (-1 before
                    * it listens; owned by that loop's daemon) */
    atomic_bool draining;
    atomic_size_t in_flight; /* generation requests admitted and not yet completed, all loops */
    atomic_size_t n_gens;    /* requests past their headers, all loops (/health) */
    pthread_mutex_t lock;    /* over the gauges */
    struct tb_http_gauge *gauges;
    size_t n_gauges, cap_gauges;
};

/* Admits one generation request against max_in_flight across every loop: true (counted), or
 * false when `max` are in flight already. */
bool tb_http_shared_admit(struct tb_http_shared *sh, size_t max);
/* Records loop `loop`'s in-flight and queued requests of `model` and returns the sums over every
 * loop (the loops' latest records) in *sum_inflight, *sum_queued.  Out of memory: the sums are
 * this loop's own. */
void tb_http_shared_gauge(struct tb_http_shared *sh, size_t loop, const char *model,
                          int64_t inflight, int64_t queued, int64_t *sum_inflight,
                          int64_t *sum_queued);

/* What a request asks for, decided when its headers arrive. */
typedef enum {
    TB_HR_GENERATE = 1, /* POST /v1/chat/completions or /v1/completions */
    TB_HR_ANSWERED = 2, /* answered at once (GET routes, errors) */
    TB_HR_TOKENIZE = 3, /* POST /tokenize or /detokenize (tb_http_tok.c) */
} tb_hr_kind_t;

/* One client connection, from accept to close: its socket is in the loop's epoll for
 * EPOLLRDHUP (edge-triggered) all along, so a client that goes away while its request waits on
 * an engine (connection suspended, invisible to libmicrohttpd) is noticed at once. */
struct tb_hconn {
    int fd;
    bool watched;        /* in the loop's epoll */
    bool rdhup;          /* the client closed (or half-closed) its side */
    struct tb_hreq *req; /* the generation request waiting on this connection, or NULL */
};

/* One choice of a generation asked for with n > 1 (docs/http.md "Several choices"): its own
 * engine call on the instance choice 0 went to, and its own answer.  A request with n = 1 has
 * none (its one answer is in struct tb_hreq). */
struct tb_hchoice {
    struct tb_hreq *r;
    size_t index;
    tb_call_t *call;   /* its engine call, or NULL */
    bool inst_counted; /* in the instance's in_flight */
    bool done;
    struct tb_buf msg;  /* its gen_request (its own seed) (host->buf_free) */
    struct tb_buf text; /* unary: its text */
    tb_oai_logprobs_t *lp;
    tb_oai_parts_t *parts;
    int64_t n_tokens;
    char finish_reason[24];
    struct tb_oai_usage usage;
};

/* One HTTP request, from its headers to MHD's completion notice.  A request that waits on the
 * bus (kind GENERATE or TOKENIZE) moves through the states of tb_hreq_fsm.h; only
 * tb_http_req_step changes `state`.  The other flags say which resources it holds. */
struct tb_hreq {
    struct tb_http *h;
    struct MHD_Connection *conn;
    tb_hr_kind_t kind;
    tb_oai_api_t api;
    tb_hreq_state_t state;
    int64_t t_start_ns;

    /* body */
    struct tb_buf body;
    bool body_too_big;
    size_t discarded; /* body bytes dropped past the limit */

    /* resources held (released at completion) */
    bool counted;        /* in h->in_flight */
    bool inst_counted;   /* in its instance's in_flight */
    bool suspended;      /* MHD connection suspended */
    struct tb_hconn *hc; /* its connection's disconnect watch while it waits */
    tb_call_t *call;     /* the bus call in progress (router or engine), or NULL */

    /* generation */
    struct tb_oai_request *oreq;
    struct tb_buf msg; /* the encoded gen_request (host->buf_free) */
    char id[48];       /* chatcmpl-... / cmpl-... */
    char model_label[160];
    struct tb_http_mm *mm; /* its model's metrics (found once the model is known) */
    int64_t created;
    uint64_t instance;  /* the engine instance serving it */
    uint64_t served_by; /* the engine instance generating, as the chunks say (0: `instance`) */
    int tries;          /* engine calls started */
    bool sse_queued;    /* the 200 event-stream response is queued with MHD */
    struct tb_buf out;  /* stream: frames not yet handed to MHD */
    size_t out_off;     /* bytes of `out` already handed to MHD */
    struct tb_buf text; /* unary: the answer's text */
    tb_oai_stream_t *stream;
    tb_oai_logprobs_t *lp;
    tb_oai_parts_t *parts; /* unary chat: reasoning and tool calls, once any came */
    int64_t t_first_ns, t_last_ns;
    int64_t n_tokens; /* tokens seen in chunks */
    char finish_reason[24];
    struct tb_hchoice *choices; /* n > 1: n of them (malloc), else NULL */
    size_t n_choices, n_done;
    bool choices_started; /* choices 1..n-1 were called (choice 0's first chunk came) */

    /* the answer MHD gets when the connection resumes (unary, or errors before a stream) */
    int resp_status;
    char *resp_body; /* malloc; handed to MHD */
    size_t resp_len;
    bool resp_retry_after;
    bool resp_close;
    int final_status; /* for metrics */

    struct tb_hreq *prev, *next; /* h->gens */
};

struct tb_http {
    const struct tb_host *host;
    tb_component_t *comp;
    struct tb_http_config cfg;
    struct tb_api_keys keys; /* api_keys and api_keys_file: empty, no authentication */
    char ns[128];
    char router_ep[256]; /* "ns.router.route", "" when none configured */
    char fingerprint[64];

    struct tb_http_shared *sh; /* borrowed from the frontend */
    size_t index;              /* this loop's number, 0..sh->n_loops-1 */
    unsigned bind_port;        /* the port to bind (loops after the first: the first's) */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready;
    int start_rc;
    int wake_fd;
    atomic_bool stop;

    /* the loop's */
    tb_bus_t *bus;
    struct MHD_Daemon *mhd;
    int epfd;
    unsigned port;
    tb_instance_dir_t *models;
    size_t router_instances;
    struct tb_route_fallback fallback; /* instances chosen without the router */
    struct tb_http_metrics metrics;
    struct tb_hreq *gens; /* generation requests past their headers */
    size_t n_gens;
    bool resumed;   /* a connection was resumed: run MHD again */
    bool bus_dirty; /* the bus was used outside bus_run: run it again */
    int64_t next_bus_tick_ns;
    int64_t next_flush_ns; /* when summed counters go to the registry next */
    uint64_t id_seed;
    uint64_t id_counter;
    int64_t started_ns;
    int64_t now_unix_start;
    int64_t spin_ns, last_activity_ns;
    char **metric_models; /* models whose gauges were ever set */
    size_t n_metric_models;
};

/* ---- tb_http.c: one loop (its thread, libmicrohttpd daemon, bus handle), for tb_http_front.c
 * ---- */

/* Allocates loop `index` of the frontend from the validated config (borrowed until destroy) and
 * the shared state (borrowed).  Binds nothing.  0, or a TB_E* code after host->set_error. */
int tb_http_loop_new(const struct tb_host *host, tb_component_t *comp,
                     const struct tb_http_config *cfg, struct tb_http_shared *sh, size_t index,
                     struct tb_http **out);
/* Starts the loop's thread, which binds `port` (the first loop) or accepts on the first loop's
 * listening socket (the others: sh->listen_fd, started after it), and returns when it listens
 * (0) or failed.  The bound port: tb_http_loop_port. */
int tb_http_loop_start(struct tb_http *h, unsigned port);
unsigned tb_http_loop_port(const struct tb_http *h);
/* Wakes the loop (after a change of the shared state, e.g. draining).  Any thread. */
void tb_http_loop_wake(struct tb_http *h);
/* Ends what is left, closes the loop's connections, joins its thread. */
void tb_http_loop_stop(struct tb_http *h);
/* Frees the loop; sets *h_p to NULL; accepts NULL. */
void tb_http_loop_destroy(struct tb_http **h_p);

/* ---- tb_http_gen.c: the request lifecycle shared by generations and tokenize ---- */

/* Feeds `ev` to the request's state machine (tb_hreq_fsm.h) and carries out the actions every
 * caller needs: cancelling an open upstream call (counted as a disconnect, or a shutdown for
 * TB_HEV_STOP) and resuming the connection (which only schedules libmicrohttpd's next look).
 * Returns the actions, for the caller's own (error shape, late event).  The only writer of
 * r->state. */
unsigned tb_http_req_step(struct tb_http *h, struct tb_hreq *r, tb_hreq_event_t ev);
/* Ends the request with an error (TB_HEV_FAIL): an error answer when nothing was sent yet, else
 * an error event closing the stream. */
void tb_http_req_fail(struct tb_http *h, struct tb_hreq *r, const struct tb_oai_error *e,
                      bool retry_after);
/* Hands the ready answer (r->resp_body, taken) to libmicrohttpd (TB_HEV_HANDED). */
enum MHD_Result tb_http_req_hand_over(struct tb_http *h, struct tb_hreq *r);
/* Refuses the request at once (admission, validation): fails it and hands the error answer to
 * libmicrohttpd now, with Connection: close when `close`. */
enum MHD_Result tb_http_req_refuse(struct tb_http *h, struct tb_hreq *r,
                                   const struct tb_oai_error *e, bool retry_after, bool close);
/* True, with `e` set to a 413, when the request's Content-Length is over max_body_size: it is
 * refused before the body is read (a JSON 413, no 100 Continue). */
bool tb_http_req_too_long(struct tb_http *h, struct tb_hreq *r, struct tb_oai_error *e);
/* The client closed its connection (seen by the loop while the request runs). */
void tb_http_req_client_gone(struct tb_http *h, struct tb_hreq *r);

/* The request's headers arrived for a generation route: admission checks (draining, size,
 * overload).  Returns MHD_YES to read the body, or queues an error answer. */
enum MHD_Result tb_http_gen_begin(struct tb_http *h, struct tb_hreq *r);
/* A piece of body, or the end of it (*upload_size == 0). */
enum MHD_Result tb_http_gen_access(struct tb_http *h, struct tb_hreq *r, const char *upload,
                                   size_t *upload_size);
/* Takes a piece of a request body (*upload_size > 0) into r->body, up to max_body_size (past it
 * the body is dropped and r->body_too_big set, for a 413 once it ends). */
enum MHD_Result tb_http_read_body(struct tb_http *h, struct tb_hreq *r, const char *upload,
                                  size_t *upload_size);
/* MHD says the request is over (sent, failed or closed): cancel what runs, count, unlink. */
void tb_http_gen_completed(struct tb_http *h, struct tb_hreq *r,
                           enum MHD_RequestTerminationCode toe);
/* Stop: cancel every upstream call and let MHD close the connections. */
void tb_http_gen_abort_all(struct tb_http *h);
/* Sets the in-flight and queued gauges from the live requests. */
void tb_http_gen_update_gauges(struct tb_http *h);
/* Adds / removes a request past its headers to / from h->gens (every request that may wait on
 * the bus is there, so stopping reaches it). */
void tb_http_gen_link(struct tb_http *h, struct tb_hreq *r);
void tb_http_gen_unlink(struct tb_http *h, struct tb_hreq *r);

/* ---- tb_http_tok.c: POST /tokenize and /detokenize ---- */

enum MHD_Result tb_http_tok_begin(struct tb_http *h, struct tb_hreq *r);
enum MHD_Result tb_http_tok_access(struct tb_http *h, struct tb_hreq *r, const char *upload,
                                   size_t *upload_size);
void tb_http_tok_completed(struct tb_http *h, struct tb_hreq *r);

/* ---- tb_http.c, for tb_http_gen.c ---- */

/* Queues a JSON answer.  Takes ownership of `body` (malloc).  Adds Retry-After when asked and
 * Connection: close when `close`. */
enum MHD_Result tb_http_queue_json(struct tb_http *h, struct MHD_Connection *conn, int status,
                                   char *body, size_t len, bool retry_after, bool close);
/* The same, with the x-turbine-instance header when `instance` (16 hex digits) is given. */
enum MHD_Result tb_http_queue_json_as(struct tb_http *h, struct MHD_Connection *conn, int status,
                                      char *body, size_t len, bool retry_after, bool close,
                                      const char *instance);
/* Queues an OpenAI error answer. */
enum MHD_Result tb_http_queue_error(struct tb_http *h, struct MHD_Connection *conn,
                                    const struct tb_oai_error *e, bool retry_after, bool close);
/* Resumes a suspended connection (no-op otherwise). */
void tb_http_resume(struct tb_http *h, struct tb_hreq *r);
/* Suspends the request's connection until tb_http_resume. */
void tb_http_suspend(struct tb_http *h, struct tb_hreq *r);
/* Ties a waiting request to its connection's disconnect watch; returns false when the client
 * already closed it.  Unwatch unties it. */
bool tb_http_watch(struct tb_http *h, struct tb_hreq *r);
void tb_http_unwatch(struct tb_http *h, struct tb_hreq *r);

/* Writes the low `digits` hex digits of `v` (lower case, zero-padded: "%016" PRIx64 for 16) at
 * `out` and returns the position after them; no NUL.  By hand because snprintf costs more than
 * the rest of the per-request code that calls it. */
static inline char *tb_http_hex(char *out, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int k = digits - 1; k >= 0; k--) {
        *out++ = hex[(v >> (4 * k)) & 15];
    }
    return out;
}

/* Copies the string `s` into dst[cap] (cap > 0), cut to fit, always NUL-terminated: what
 * snprintf(dst, cap, "%s", s) writes, without the format. */
static inline void tb_http_copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strnlen(s, cap - 1);
    memcpy(dst, s, n);
    dst[n] = 0;
}

#endif /* TB_HTTP_INT_H */
