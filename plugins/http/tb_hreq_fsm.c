/*
 * tb_hreq_fsm: the request lifecycle's transition table (see tb_hreq_fsm.h).  One row per state,
 * one cell per event it expects; an empty cell is an event the state never sees.
 */
#include "tb_hreq_fsm.h"

#include <assert.h>
#include <stddef.h>

struct cell {
    bool ok;
    unsigned char to;
    unsigned char act;
};

#define GO(state, actions)                                                                       \
    {                                                                                            \
        .ok = true, .to = (state), .act = (actions)                                              \
    }
#define LATE(state) GO(state, TB_HACT_DROP)

/* What ends a request from any state before its answer is complete. */
#define ENDINGS(cancel)                                                                          \
    [TB_HEV_CLIENT_GONE] = GO(TB_HS_GONE, (cancel) | TB_HACT_RESUME),                            \
    [TB_HEV_STOP] = GO(TB_HS_STOPPED, (cancel) | TB_HACT_RESUME),                                \
    [TB_HEV_COMPLETED] = GO(TB_HS_CLOSED, (cancel))

/* Upstream events arriving after the request moved on. */
#define LATE_UPSTREAM(state)                                                                     \
    [TB_HEV_CHUNK] = LATE(state), [TB_HEV_FRAME] = LATE(state), [TB_HEV_END] = LATE(state),      \
    [TB_HEV_FAIL] = LATE(state)

#define ERR_BODY (TB_HACT_ERROR_BODY | TB_HACT_RESUME)

static const struct cell s_table[TB_HS_COUNT][TB_HEV_COUNT] = {
    [TB_HS_NEW] = {[TB_HEV_ADMIT] = GO(TB_HS_BODY, 0),
                   [TB_HEV_FAIL] = GO(TB_HS_ANSWERED, ERR_BODY),
                   ENDINGS(0)},
    [TB_HS_BODY] = {[TB_HEV_ROUTE] = GO(TB_HS_ROUTING, 0),
                    [TB_HEV_CALL] = GO(TB_HS_WAITING, 0),
                    [TB_HEV_FAIL] = GO(TB_HS_ANSWERED, ERR_BODY),
                    ENDINGS(0)},
    [TB_HS_ROUTING] = {[TB_HEV_CALL] = GO(TB_HS_WAITING, 0),
                       [TB_HEV_FAIL] = GO(TB_HS_ANSWERED, ERR_BODY),
                       ENDINGS(TB_HACT_CANCEL)},
    [TB_HS_WAITING] = {[TB_HEV_CALL] = GO(TB_HS_WAITING, 0),
                       [TB_HEV_CHUNK] = GO(TB_HS_COLLECTING, 0),
                       [TB_HEV_FRAME] = GO(TB_HS_STREAMING, TB_HACT_RESUME),
                       [TB_HEV_END] = GO(TB_HS_ANSWERED, TB_HACT_RESUME),
                       [TB_HEV_FAIL] = GO(TB_HS_ANSWERED, ERR_BODY),
                       ENDINGS(TB_HACT_CANCEL)},
    [TB_HS_COLLECTING] = {[TB_HEV_CHUNK] = GO(TB_HS_COLLECTING, 0),
                          [TB_HEV_END] = GO(TB_HS_ANSWERED, TB_HACT_RESUME),
                          [TB_HEV_FAIL] = GO(TB_HS_ANSWERED, ERR_BODY),
                          ENDINGS(TB_HACT_CANCEL)},
    [TB_HS_STREAMING] = {[TB_HEV_FRAME] = GO(TB_HS_STREAMING, TB_HACT_RESUME),
                         [TB_HEV_END] = GO(TB_HS_ANSWERED, TB_HACT_RESUME),
                         [TB_HEV_FAIL] = GO(TB_HS_ANSWERED, TB_HACT_ERROR_EVENT | TB_HACT_RESUME),
                         ENDINGS(TB_HACT_CANCEL)},
    [TB_HS_ANSWERED] = {LATE_UPSTREAM(TB_HS_ANSWERED), [TB_HEV_HANDED] = GO(TB_HS_SENT, 0),
                        ENDINGS(0)},
    /* the whole answer is out: the client closing is the normal end */
    [TB_HS_SENT] = {LATE_UPSTREAM(TB_HS_SENT), [TB_HEV_CLIENT_GONE] = GO(TB_HS_SENT, 0),
                    [TB_HEV_STOP] = GO(TB_HS_STOPPED, TB_HACT_RESUME),
                    [TB_HEV_COMPLETED] = GO(TB_HS_CLOSED, 0)},
    /* the client left first: stopping does not make it a shutdown */
    [TB_HS_GONE] = {LATE_UPSTREAM(TB_HS_GONE), [TB_HEV_CLIENT_GONE] = GO(TB_HS_GONE, 0),
                    [TB_HEV_STOP] = GO(TB_HS_GONE, 0), [TB_HEV_COMPLETED] = GO(TB_HS_CLOSED, 0)},
    [TB_HS_STOPPED] =
        {LATE_UPSTREAM(TB_HS_STOPPED), [TB_HEV_CLIENT_GONE] = GO(TB_HS_STOPPED, 0),
         [TB_HEV_STOP] = GO(TB_HS_STOPPED, 0), [TB_HEV_COMPLETED] = GO(TB_HS_CLOSED, 0)},
    [TB_HS_CLOSED] = {{0}},
};

bool tb_hreq_fsm_can(tb_hreq_state_t s, tb_hreq_event_t ev)
{
    return (unsigned)s < TB_HS_COUNT && (unsigned)ev < TB_HEV_COUNT && s_table[s][ev].ok;
}

unsigned tb_hreq_fsm_apply(tb_hreq_state_t *state, tb_hreq_event_t ev)
{
    assert(tb_hreq_fsm_can(*state, ev) && "unexpected event for the request's state");
    if (!tb_hreq_fsm_can(*state, ev)) {
        return TB_HACT_DROP; /* NDEBUG builds: change nothing */
    }
    const struct cell *c = &s_table[*state][ev];
    *state = (tb_hreq_state_t)c->to;
    return c->act;
}

bool tb_hreq_fsm_is_upstream(tb_hreq_state_t s)
{
    return s == TB_HS_ROUTING || s == TB_HS_WAITING || s == TB_HS_COLLECTING ||
           s == TB_HS_STREAMING;
}

bool tb_hreq_fsm_is_dead(tb_hreq_state_t s)
{
    return s == TB_HS_GONE || s == TB_HS_STOPPED || s == TB_HS_CLOSED;
}

const char *tb_hreq_fsm_state_name(tb_hreq_state_t s)
{
    static const char *const names[TB_HS_COUNT] = {"new",      "body",       "routing",
                                                   "waiting",  "collecting", "streaming",
                                                   "answered", "sent",       "gone",
                                                   "stopped",  "closed"};
    return (unsigned)s < TB_HS_COUNT ? names[s] : "?";
}

const char *tb_hreq_fsm_event_name(tb_hreq_event_t ev)
{
    static const char *const names[TB_HEV_COUNT] = {"admit",       "route", "call",     "chunk",
                                                    "frame",       "end",   "fail",     "handed",
                                                    "client_gone", "stop",  "completed"};
    return (unsigned)ev < TB_HEV_COUNT ? names[ev] : "?";
}
