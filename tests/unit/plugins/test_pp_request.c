/* Unit tests of the preprocessor's request state (tb_pp_request): a request takes the decoded
 * message, is linked and counted in flight, its timeout is the smaller of the configured one and
 * the caller's deadline; it ends exactly once (an error reply, or a final chunk), and freeing it
 * cancels the calls it still has open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/preprocessor/tb_pp_request.h" /* plugin-private header */

/* A host recording what the request does to the bus. */
static struct {
    int64_t now_ns, deadline_ns;
    void *user_set;
    int errors, last_code, replies, finals, cancels, frees;
    char last_error[256];
    int reply_rc;
} g;

/* Opaque handles: any distinct addresses do. */
static int g_in, g_call_a, g_call_b;

static int64_t s_now(void)
{
    return g.now_ns;
}

static int64_t s_deadline(const tb_request_t *req)
{
    assert_ptr_equal(req, &g_in);
    return g.deadline_ns;
}

static void s_set_user(tb_request_t *req, void *user)
{
    assert_ptr_equal(req, &g_in);
    g.user_set = user;
}

static int s_reply_error(tb_request_t *req, int code, const char *fmt, ...)
{
    assert_ptr_equal(req, &g_in);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.last_error, sizeof(g.last_error), fmt, ap);
    va_end(ap);
    g.errors++;
    g.last_code = code;
    return 0;
}

static int s_reply(tb_request_t *req, const void *data, size_t len, bool final)
{
    assert_ptr_equal(req, &g_in);
    assert_true(len > 0 && data);
    g.replies++;
    g.finals += final;
    return g.reply_rc;
}

static void s_cancel(tb_call_t *call)
{
    assert_true(call == (tb_call_t *)&g_call_a || call == (tb_call_t *)&g_call_b);
    g.cancels++;
}

static int s_encode(tb_msg_type_t type, const void *msg, struct tb_buf *out)
{
    assert_int_equal(type, TB_MSG_GEN_CHUNK);
    assert_non_null(msg);
    out->data = malloc(4);
    memcpy(out->data, "\x81\xa1t\xa0", 4);
    out->len = out->cap = 4;
    return 0;
}

static void s_buf_free(struct tb_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static void s_msg_free(void **m)
{
    if (*m) {
        g.frees++;
        free(*m);
        *m = NULL;
    }
}

static const struct tb_host s_host = {
    .struct_size = sizeof(struct tb_host),
    .now_ns = s_now,
    .bus_request_deadline_ns = s_deadline,
    .bus_request_set_user = s_set_user,
    .bus_reply_error = s_reply_error,
    .bus_reply = s_reply,
    .bus_call_cancel = s_cancel,
    .msg_encode = s_encode,
    .buf_free = s_buf_free,
    .msg_free = s_msg_free,
};

static struct tb_pp_request *make(struct tb_pp_request_list *l, double timeout_s)
{
    struct tb_msg_gen_request *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    struct tb_pp_request *r = NULL;
    assert_int_equal(tb_pp_request_new(l, (void *)l, (tb_request_t *)&g_in, &m, timeout_s, &r),
                     0);
    assert_null(m); /* taken */
    assert_non_null(r);
    assert_ptr_equal(g.user_set, r);
    return r;
}

static void test_lifecycle_and_timeout(void **state)
{
    (void)state;
    memset(&g, 0, sizeof(g));
    struct tb_pp_request_list l;
    tb_pp_request_list_init(&l, &s_host);
    g.now_ns = 1000000000;
    g.deadline_ns = 0; /* the caller set none: the configured timeout */
    struct tb_pp_request *a = make(&l, 2.5);
    assert_int_equal(a->timeout_ms, 2500);
    g.deadline_ns = g.now_ns + 700 * 1000000LL; /* sooner than the configured one */
    struct tb_pp_request *b = make(&l, 2.5);
    assert_int_equal(b->timeout_ms, 700);
    assert_int_equal(atomic_load(&l.in_flight), 2);
    assert_ptr_equal(l.head, b);
    assert_ptr_equal(b->next, a);

    /* an error ends the request once, cancels its open calls and frees its message */
    b->router_call = (tb_call_t *)&g_call_a;
    b->engine_call = (tb_call_t *)&g_call_b;
    tb_pp_request_fail(b, TB_ECONTEXT, "too long: %d", 42);
    assert_int_equal(g.errors, 1);
    assert_int_equal(g.last_code, TB_ECONTEXT);
    assert_string_equal(g.last_error, "too long: 42");
    assert_int_equal(g.cancels, 2);
    assert_int_equal(g.frees, 1);
    assert_int_equal(atomic_load(&l.in_flight), 1);
    assert_ptr_equal(l.head, a);
    assert_null(a->prev);

    /* chunks, then a final one; the answered request is freed without a second answer */
    struct tb_msg_gen_chunk c = {.text = "t"};
    assert_int_equal(tb_pp_request_send(a, &c, false), 0);
    assert_non_null(a->in);
    assert_int_equal(tb_pp_request_send(a, &c, true), 0);
    assert_null(a->in);
    assert_int_equal(g.replies, 2);
    assert_int_equal(g.finals, 1);
    tb_pp_request_fail(a, TB_EINTERNAL, "late"); /* nothing more reaches the caller */
    assert_int_equal(g.errors, 1);
    assert_int_equal(atomic_load(&l.in_flight), 0);
    assert_null(l.head);
}

static void test_caller_gone(void **state)
{
    (void)state;
    memset(&g, 0, sizeof(g));
    struct tb_pp_request_list l;
    tb_pp_request_list_init(&l, &s_host);
    struct tb_pp_request *r = make(&l, 1);
    r->engine_call = (tb_call_t *)&g_call_b;
    g.reply_rc = TB_EGONE;
    struct tb_msg_gen_chunk c = {.text = "t"};
    assert_int_equal(tb_pp_request_send(r, &c, false), TB_EGONE);
    /* the caller's request must still be ended; that also stops the engine */
    tb_pp_request_fail(r, TB_ECANCELED, "caller gone");
    assert_int_equal(g.errors, 1);
    assert_int_equal(g.cancels, 1);
    assert_int_equal(atomic_load(&l.in_flight), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_and_timeout),
        cmocka_unit_test(test_caller_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
