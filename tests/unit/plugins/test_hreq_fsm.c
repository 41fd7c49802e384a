/* Unit tests of tb_hreq_fsm: the HTTP request lifecycle.  Each test drives one story through
 * the transition function (an answer, a stream, a client leaving mid-stream, an error after the
 * stream's headers went out, a timeout, a shutdown, a retry, a refusal) and checks the states
 * and the actions; then properties of the whole table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/http/tb_hreq_fsm.h" /* plugin-private header */

/* Applies `ev`, checks the state reached and the exact actions. */
static void s_go(tb_hreq_state_t *s, tb_hreq_event_t ev, tb_hreq_state_t to, unsigned act)
{
    tb_hreq_state_t from = *s;
    assert_true(tb_hreq_fsm_can(from, ev));
    unsigned got = tb_hreq_fsm_apply(s, ev);
    if (*s != to || got != act) {
        print_error("%s --%s--> %s (actions %#x), expected %s (actions %#x)\n",
                    tb_hreq_fsm_state_name(from), tb_hreq_fsm_event_name(ev),
                    tb_hreq_fsm_state_name(*s), got, tb_hreq_fsm_state_name(to), act);
        fail();
    }
}

static void test_unary_answer(void **state)
{
    (void)state;
    tb_hreq_state_t s = TB_HS_NEW;
    s_go(&s, TB_HEV_ADMIT, TB_HS_BODY, 0);
    s_go(&s, TB_HEV_ROUTE, TB_HS_ROUTING, 0);
    s_go(&s, TB_HEV_CALL, TB_HS_WAITING, 0);
    s_go(&s, TB_HEV_CHUNK, TB_HS_COLLECTING, 0);
    s_go(&s, TB_HEV_CHUNK, TB_HS_COLLECTING, 0);
    s_go(&s, TB_HEV_END, TB_HS_ANSWERED, TB_HACT_RESUME); /* final chunk */
    s_go(&s, TB_HEV_HANDED, TB_HS_SENT, 0);
    /* the client closing after the whole answer is the normal end: nothing to do */
    s_go(&s, TB_HEV_CLIENT_GONE, TB_HS_SENT, 0);
    s_go(&s, TB_HEV_COMPLETED, TB_HS_CLOSED, 0);
}

static void test_stream_answer(void **state)
{
    (void)state;
    tb_hreq_state_t s = TB_HS_BODY;
    s_go(&s, TB_HEV_CALL, TB_HS_WAITING, 0); /* no router: picked here */
    s_go(&s, TB_HEV_FRAME, TB_HS_STREAMING, TB_HACT_RESUME);
    s_go(&s, TB_HEV_FRAME, TB_HS_STREAMING, TB_HACT_RESUME);
    s_go(&s, TB_HEV_END, TB_HS_ANSWERED, TB_HACT_RESUME);
    /* frames still pending with libmicrohttpd: a client leaving now is a disconnect */
    tb_hreq_state_t copy = s;
    s_go(&copy, TB_HEV_CLIENT_GONE, TB_HS_GONE, TB_HACT_RESUME);
    s_go(&s, TB_HEV_HANDED, TB_HS_SENT, 0);
    s_go(&s, TB_HEV_COMPLETED, TB_HS_CLOSED, 0);
}

static void test_disconnect_mid_stream(void **state)
{
    (void)state;
    tb_hreq_state_t s = TB_HS_STREAMING;
    s_go(&s, TB_HEV_CLIENT_GONE, TB_HS_GONE, TB_HACT_CANCEL | TB_HACT_RESUME);
    assert_true(tb_hreq_fsm_is_dead(s));
    /* a frame already on its way, and the end, are dropped */
    s_go(&s, TB_HEV_FRAME, TB_HS_GONE, TB_HACT_DROP);
    s_go(&s, TB_HEV_END, TB_HS_GONE, TB_HACT_DROP);
    s_go(&s, TB_HEV_CLIENT_GONE, TB_HS_GONE, 0); /* the watch may fire twice */
    s_go(&s, TB_HEV_STOP, TB_HS_GONE, 0);        /* still a disconnect, not a shutdown */
    assert_false(tb_hreq_fsm_can(s, TB_HEV_HANDED));
    s_go(&s, TB_HEV_COMPLETED, TB_HS_CLOSED, 0);
    /* gone while waiting for the router, for the engine, or while the body came */
    s = TB_HS_ROUTING;
    s_go(&s, TB_HEV_CLIENT_GONE, TB_HS_GONE, TB_HACT_CANCEL | TB_HACT_RESUME);
    s = TB_HS_WAITING;
    s_go(&s, TB_HEV_CLIENT_GONE, TB_HS_GONE, TB_HACT_CANCEL | TB_HACT_RESUME);
    s = TB_HS_BODY;
    s_go(&s, TB_HEV_CLIENT_GONE, TB_HS_GONE, TB_HACT_RESUME); /* no call yet */
}

static void test_errors(void **state)
{
    (void)state;
    /* after the stream's 200 went out, an error can only be an event closing the stream */
    tb_hreq_state_t s = TB_HS_STREAMING;
    s_go(&s, TB_HEV_FAIL, TB_HS_ANSWERED, TB_HACT_ERROR_EVENT | TB_HACT_RESUME);
    s_go(&s, TB_HEV_FAIL, TB_HS_ANSWERED, TB_HACT_DROP); /* a second error changes nothing */
    s_go(&s, TB_HEV_HANDED, TB_HS_SENT, 0);
    /* before anything went out it is an HTTP error status: from every earlier state */
    const tb_hreq_state_t before[] = {TB_HS_NEW, TB_HS_BODY, TB_HS_ROUTING, TB_HS_WAITING,
                                      TB_HS_COLLECTING};
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        s = before[i];
        s_go(&s, TB_HEV_FAIL, TB_HS_ANSWERED, TB_HACT_ERROR_BODY | TB_HACT_RESUME);
    }
    /* a refusal at admission: the error answer is handed over at once */
    s = TB_HS_NEW;
    s_go(&s, TB_HEV_FAIL, TB_HS_ANSWERED, TB_HACT_ERROR_BODY | TB_HACT_RESUME);
    s_go(&s, TB_HEV_HANDED, TB_HS_SENT, 0);
    /* an error arriving after the answer is complete is dropped */
    s = TB_HS_SENT;
    s_go(&s, TB_HEV_FAIL, TB_HS_SENT, TB_HACT_DROP);
}

static void test_timeouts(void **state)
{
    (void)state;
    /* the bus's deadline ends the call with an error chunk: a failure like any other */
    tb_hreq_state_t s = TB_HS_COLLECTING;
    s_go(&s, TB_HEV_FAIL, TB_HS_ANSWERED, TB_HACT_ERROR_BODY | TB_HACT_RESUME);
    /* libmicrohttpd's connection timeout ends the request while the engine still runs: the
     * completion must cancel the call */
    s = TB_HS_WAITING;
    s_go(&s, TB_HEV_COMPLETED, TB_HS_CLOSED, TB_HACT_CANCEL);
    s = TB_HS_STREAMING;
    s_go(&s, TB_HEV_COMPLETED, TB_HS_CLOSED, TB_HACT_CANCEL);
    s = TB_HS_BODY; /* a client too slow with its body */
    s_go(&s, TB_HEV_COMPLETED, TB_HS_CLOSED, 0);
}

static void test_shutdown_and_retry(void **state)
{
    (void)state;
    tb_hreq_state_t s = TB_HS_WAITING;
    s_go(&s, TB_HEV_CALL, TB_HS_WAITING, 0); /* the instance left: called again */
    s_go(&s, TB_HEV_STOP, TB_HS_STOPPED, TB_HACT_CANCEL | TB_HACT_RESUME);
    s_go(&s, TB_HEV_CLIENT_GONE, TB_HS_STOPPED, 0);
    s_go(&s, TB_HEV_CHUNK, TB_HS_STOPPED, TB_HACT_DROP);
    s_go(&s, TB_HEV_COMPLETED, TB_HS_CLOSED, 0);
    /* stopping with the answer out, or ready */
    s = TB_HS_SENT;
    s_go(&s, TB_HEV_STOP, TB_HS_STOPPED, TB_HACT_RESUME);
    s = TB_HS_ANSWERED;
    s_go(&s, TB_HEV_STOP, TB_HS_STOPPED, TB_HACT_RESUME);
    /* retrying is only for a call that produced nothing */
    assert_false(tb_hreq_fsm_can(TB_HS_COLLECTING, TB_HEV_CALL));
    assert_false(tb_hreq_fsm_can(TB_HS_STREAMING, TB_HEV_CALL));
}

static void test_impossible(void **state)
{
    (void)state;
    assert_false(tb_hreq_fsm_can(TB_HS_NEW, TB_HEV_CHUNK));
    assert_false(tb_hreq_fsm_can(TB_HS_BODY, TB_HEV_HANDED));
    assert_false(tb_hreq_fsm_can(TB_HS_BODY, TB_HEV_END));
    assert_false(tb_hreq_fsm_can(TB_HS_COLLECTING, TB_HEV_FRAME)); /* unary never streams */
    assert_false(tb_hreq_fsm_can(TB_HS_STREAMING, TB_HEV_CHUNK));
    assert_false(tb_hreq_fsm_can(TB_HS_ROUTING, TB_HEV_ROUTE));
    assert_false(tb_hreq_fsm_can(TB_HS_SENT, TB_HEV_CALL));
    assert_false(tb_hreq_fsm_can(TB_HS_SENT, TB_HEV_HANDED));
    for (int ev = 0; ev < TB_HEV_COUNT; ev++) {
        assert_false(tb_hreq_fsm_can(TB_HS_CLOSED, (tb_hreq_event_t)ev));
    }
    assert_false(tb_hreq_fsm_can(TB_HS_COUNT, TB_HEV_ADMIT));
    assert_false(tb_hreq_fsm_can(TB_HS_BODY, TB_HEV_COUNT));
}

/* Properties of the whole table. */
static void test_table(void **state)
{
    (void)state;
    for (int st = 0; st < TB_HS_COUNT; st++) {
        assert_string_not_equal(tb_hreq_fsm_state_name((tb_hreq_state_t)st), "?");
        /* every state but CLOSED can complete (libmicrohttpd may end any request) */
        assert_int_equal(tb_hreq_fsm_can((tb_hreq_state_t)st, TB_HEV_COMPLETED),
                         st != TB_HS_CLOSED);
        for (int ev = 0; ev < TB_HEV_COUNT; ev++) {
            assert_string_not_equal(tb_hreq_fsm_event_name((tb_hreq_event_t)ev), "?");
            tb_hreq_state_t s = (tb_hreq_state_t)st;
            if (!tb_hreq_fsm_can(s, (tb_hreq_event_t)ev)) {
                continue;
            }
            unsigned act = tb_hreq_fsm_apply(&s, (tb_hreq_event_t)ev);
            /* a call is only cancelled where one can be open */
            if (act & TB_HACT_CANCEL) {
                assert_true(tb_hreq_fsm_is_upstream((tb_hreq_state_t)st));
            }
            /* a dropped event changes nothing; nothing leaves a dead state but completion */
            if (act & TB_HACT_DROP) {
                assert_int_equal(s, st);
            }
            if (tb_hreq_fsm_is_dead((tb_hreq_state_t)st) && ev != TB_HEV_COMPLETED) {
                assert_int_equal(s, st);
            }
            /* an error has exactly one shape */
            assert_false((act & TB_HACT_ERROR_BODY) && (act & TB_HACT_ERROR_EVENT));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_answer),
        cmocka_unit_test(test_stream_answer),
        cmocka_unit_test(test_disconnect_mid_stream),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_shutdown_and_retry),
        cmocka_unit_test(test_impossible),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
