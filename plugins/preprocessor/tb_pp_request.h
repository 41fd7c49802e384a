/*
 * tb_pp_request.h - one generation request inside the preprocessor: the caller's request, the
 * bus calls it has open (router, engine), the decoded message, the prompt ids and limits, its
 * text out (tb_pp_text) and usage (tb_pp_usage).  Requests live in a list owned by the
 * preprocessor, which counts them for the host's in_flight.
 *
 * Every request ends exactly once: with a final chunk (tb_pp_request_send(final=true) then
 * tb_pp_request_free) or an error (tb_pp_request_fail).  Freeing cancels the calls still open.
 *
 * Not thread-safe: the preprocessor's actor thread owns every request; only the list's in_flight
 * counter is read from other threads.
 */
#ifndef TB_PP_REQUEST_H
#define TB_PP_REQUEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_plugin.h"
#include "tb_pp_migrate.h"
#include "tb_pp_parse.h"
#include "tb_pp_text.h"
#include "tb_pp_usage.h"

struct tb_pp_request;

/* The requests of one preprocessor (embedded in it; zero it, then tb_pp_request_list_init). */
struct tb_pp_request_list {
    const struct tb_host *host; /* borrowed */
    struct tb_pp_request *head;
    atomic_size_t in_flight; /* requests not yet freed; read from any thread */
};

struct tb_pp_request {
    struct tb_pp_request_list *list;
    void *owner;                    /* the preprocessor (borrowed) */
    tb_request_t *in;               /* the caller's request, NULL once answered */
    tb_call_t *router_call;         /* open call to the router, or NULL */
    tb_call_t *engine_call;         /* open call to the engine, or NULL */
    struct tb_msg_gen_request *msg; /* decoded request (owned; host->msg_free) */
    int32_t *ids;                   /* the prompt ids (owned) */
    size_t n_ids;
    int64_t max_tokens;   /* resolved; 0: the engine's default */
    int timeout_ms;       /* for the engine call */
    tb_pp_text_t *text;   /* owned */
    tb_pp_parse_t *parse; /* owned; NULL when the answer is text only */
    char *grammar;        /* owned: a forced tool call's GBNF, or NULL */
    struct tb_pp_usage usage;
    struct tb_pp_request *prev, *next;
    struct tb_pp_migrate mig; /* what migration needs (tb_pp_migrate.h) */
    int64_t started_ns;       /* when the request came in (the engine call's remaining time) */
};

void tb_pp_request_list_init(struct tb_pp_request_list *l, const struct tb_host *host);

/* A request for caller `in`, taking ownership of `*msg_p` (set to NULL), linked into `l`.  Its
 * timeout is the smaller of `timeout_s` and what is left of the caller's deadline.  0 with *out
 * (owned by the list), or TB_ENOMEM (then `in` is still the caller's to answer and *msg_p kept). */
int tb_pp_request_new(struct tb_pp_request_list *l, void *owner, tb_request_t *in,
                      struct tb_msg_gen_request **msg_p, double timeout_s,
                      struct tb_pp_request **out);

/* Unlinks and frees `r`, cancelling its open calls.  An `in` still set is not answered: the
 * caller has done so or cleared it. */
void tb_pp_request_free(struct tb_pp_request *r);

/* Ends `r` with an error chunk (code, message) and frees it. */
void tb_pp_request_fail(struct tb_pp_request *r, int code, const char *fmt, ...) TB_PRINTF(3, 4);

/* Sends chunk `c` to the caller; final ends the caller's request (then `r->in` is NULL, and the
 * caller frees `r`).  0, TB_EGONE when the caller has gone, or another TB_E* code (a final
 * chunk that cannot be encoded is answered with an error instead). */
int tb_pp_request_send(struct tb_pp_request *r, const struct tb_msg_gen_chunk *c, bool final);

#endif /* TB_PP_REQUEST_H */
