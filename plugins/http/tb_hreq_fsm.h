/*
 * tb_hreq_fsm.h - the lifecycle of one HTTP request that waits on the bus (a generation, a
 * tokenize): one enum of states and one transition table from (state, event) to the next state
 * and what the caller must do.  tb_hreq_fsm_apply is the only writer of a request's state.
 *
 * Pure: no I/O, no libmicrohttpd; the http plugin (tb_http_gen.c, tb_http_tok.c, tb_http.c)
 * feeds it events and carries out the actions.  docs/http.md draws the diagram.
 *
 *   NEW --admit--> BODY --route--> ROUTING --call--> WAITING --chunk--> COLLECTING (unary)
 *                    \------------------call------------^   \--frame--> STREAMING (SSE)
 *   WAITING / COLLECTING / STREAMING --end or fail--> ANSWERED --handed--> SENT
 *   any state before SENT --client_gone--> GONE;  any state before CLOSED --stop--> STOPPED
 *   any state --completed--> CLOSED
 *
 * An event a state does not expect is a programmer error (asserted), except the ones that can
 * legitimately arrive late (a chunk, an end or an error after the client left, the frontend
 * stopped or the answer was complete), which the table marks TB_HACT_DROP.
 */
#ifndef TB_HREQ_FSM_H
#define TB_HREQ_FSM_H

#include <stdbool.h>

typedef enum {
    TB_HS_NEW = 0,    /* headers arrived, not admitted yet */
    TB_HS_BODY,       /* admitted: receiving the body */
    TB_HS_ROUTING,    /* asking the router which engine instance serves it */
    TB_HS_WAITING,    /* an engine instance (or a preprocessor) was called, nothing back yet */
    TB_HS_COLLECTING, /* unary answer: chunks arriving, kept until the end */
    TB_HS_STREAMING,  /* streamed answer: the 200 event stream is open (or about to be), frames
                         go out as they come; an error now can only be an error event */
    TB_HS_ANSWERED,   /* upstream is over: the rest of the answer (or the error) is ready to hand
                         to libmicrohttpd */
    TB_HS_SENT,       /* the whole answer is with libmicrohttpd: a client closing now is the
                         normal end */
    TB_HS_GONE,       /* the client left before the answer was out: nothing more is sent */
    TB_HS_STOPPED,    /* the frontend is stopping: nothing more is sent */
    TB_HS_CLOSED,     /* libmicrohttpd is done with it; only freeing remains */
    TB_HS_COUNT
} tb_hreq_state_t;

typedef enum {
    TB_HEV_ADMIT = 0,   /* the headers passed admission: read the body */
    TB_HEV_ROUTE,       /* the router was asked */
    TB_HEV_CALL,        /* an engine (or preprocessor) was called: first, after routing, or
                           again because the instance left before answering */
    TB_HEV_CHUNK,       /* a data chunk for a unary answer */
    TB_HEV_FRAME,       /* a data chunk for a streamed answer */
    TB_HEV_END,         /* the final chunk: the answer is complete */
    TB_HEV_FAIL,        /* an error (refusal, upstream error, timeout, bad chunk) ends it */
    TB_HEV_HANDED,      /* the last byte of the answer went to libmicrohttpd */
    TB_HEV_CLIENT_GONE, /* the client closed its connection */
    TB_HEV_STOP,        /* the frontend stops */
    TB_HEV_COMPLETED,   /* libmicrohttpd's completion notice */
    TB_HEV_COUNT
} tb_hreq_event_t;

/* What the caller does after a transition (a mask). */
enum {
    TB_HACT_CANCEL = 1u << 0,      /* an upstream call may be open: cancel it (and count it) */
    TB_HACT_RESUME = 1u << 1,      /* resume the connection so libmicrohttpd sees the change */
    TB_HACT_ERROR_BODY = 1u << 2,  /* the error goes out as an HTTP error status and body */
    TB_HACT_ERROR_EVENT = 1u << 3, /* the error goes out as an event closing the stream */
    TB_HACT_DROP = 1u << 4,        /* the event came after the request moved on: ignore it
                                      (cancelling the call it came from if still open) */
};

/* Whether `ev` is expected in state `s` (late events marked TB_HACT_DROP included). */
bool tb_hreq_fsm_can(tb_hreq_state_t s, tb_hreq_event_t ev);

/* The transition: sets *state to the next state and returns the actions.  `ev` must be expected
 * in *state (tb_hreq_fsm_can); anything else is a programmer error and asserts.  Not
 * thread-safe per state (a request belongs to the http thread). */
unsigned tb_hreq_fsm_apply(tb_hreq_state_t *state, tb_hreq_event_t ev);

/* True while an upstream call may be open for it (ROUTING, WAITING, COLLECTING, STREAMING). */
bool tb_hreq_fsm_is_upstream(tb_hreq_state_t s);

/* True once nothing more goes to the client (GONE, STOPPED, CLOSED). */
bool tb_hreq_fsm_is_dead(tb_hreq_state_t s);

/* "body", "streaming", ... for logs; static strings. */
const char *tb_hreq_fsm_state_name(tb_hreq_state_t s);
const char *tb_hreq_fsm_event_name(tb_hreq_event_t ev);

#endif /* TB_HREQ_FSM_H */
