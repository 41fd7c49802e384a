/* Unit tests of tb_mbox: order and signalling, the pool a block returns to from another thread,
 * references held by messages, a closed mailbox, oversize messages. */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_mbox.h"

static bool readable(const tb_mbox_t *mb)
{
    struct pollfd p = {.fd = tb_mbox_fd(mb), .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static struct tb_mbox_msg *msg_with(tb_mbox_t *owner, uint64_t id, const char *text)
{
    struct tb_mbox_msg *m = tb_mbox_msg_new(owner, strlen(text), 0);
    assert_non_null(m);
    assert_ptr_equal(m->owner, owner);
    assert_null(m->from);
    m->id = id;
    m->len = strlen(text);
    memcpy(m->data, text, m->len);
    return m;
}

/* Messages come out in the order pushed; one signal for a batch, none after the take. */
static void test_order_and_signal(void **state)
{
    (void)state;
    tb_mbox_t *a = tb_mbox_new(), *b = tb_mbox_new();
    assert_non_null(a);
    assert_non_null(b);
    assert_false(readable(b));
    assert_null(tb_mbox_take(b));
    for (uint64_t i = 1; i <= 3; i++) {
        assert_int_equal(tb_mbox_push(b, msg_with(a, i, "abc")), 0);
        assert_true(readable(b));
    }
    struct tb_mbox_msg *m = tb_mbox_take(b);
    assert_false(readable(b));
    for (uint64_t i = 1; i <= 3; i++) {
        assert_non_null(m);
        assert_int_equal(m->id, i);
        assert_int_equal(m->len, 3);
        assert_memory_equal(m->data, "abc", 3);
        struct tb_mbox_msg *next = m->next;
        tb_mbox_msg_free(m);
        m = next;
    }
    assert_null(m);
    /* a push after the take signals again */
    assert_int_equal(tb_mbox_push(b, msg_with(a, 4, "x")), 0);
    assert_true(readable(b));
    m = tb_mbox_take(b);
    assert_non_null(m);
    assert_null(m->next);
    tb_mbox_msg_free(m);
    tb_mbox_unref(&a);
    tb_mbox_unref(&b);
    assert_null(a);
    tb_mbox_unref(&a); /* NULL accepted */
}

struct freer {
    struct tb_mbox_msg *m;
};

static void *free_elsewhere(void *arg)
{
    struct freer *f = arg;
    tb_mbox_msg_free(f->m);
    return NULL;
}

/* A block freed on another thread goes back to its owner's pool: the owner's next message reuses
 * it.  Oversize messages are one-offs. */
static void test_pool_across_threads(void **state)
{
    (void)state;
    tb_mbox_t *a = tb_mbox_new();
    struct tb_mbox_msg *m = msg_with(a, 1, "hello");
    void *block = m;
    struct freer f = {.m = m};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_elsewhere, &f), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    struct tb_mbox_msg *again = tb_mbox_msg_new(a, 10, 20);
    assert_ptr_equal(again, block);
    assert_int_equal(again->id, 0); /* fields cleared */
    assert_int_equal(again->len, 0);
    tb_mbox_msg_free(again);
    struct tb_mbox_msg *big = tb_mbox_msg_new(a, 100000, 10);
    assert_non_null(big);
    memset(big->data, 7, 100010);
    tb_mbox_msg_free(big);
    tb_mbox_unref(&a);
}

/* A burst larger than the pool keeps: every block comes back and is reused or freed (under ASan:
 * nothing leaks, nothing is freed twice). */
static void test_pool_after_burst(void **state)
{
    (void)state;
    tb_mbox_t *a = tb_mbox_new(), *b = tb_mbox_new();
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(tb_mbox_push(b, msg_with(a, (uint64_t)i + 1, "burst")), 0);
    }
    int n = 0;
    for (struct tb_mbox_msg *m = tb_mbox_take(b), *next; m; m = next, n++) {
        next = m->next;
        tb_mbox_msg_free(m);
    }
    assert_int_equal(n, 1000);
    for (int i = 0; i < 1000; i++) { /* the kept blocks, then fresh ones */
        tb_mbox_msg_free(msg_with(a, 1, "again"));
    }
    tb_mbox_unref(&b);
    tb_mbox_unref(&a);
}

/* A message keeps its owner and its `from` alive after their holders dropped them. */
static void test_references(void **state)
{
    (void)state;
    tb_mbox_t *a = tb_mbox_new(), *b = tb_mbox_new(), *c = tb_mbox_new();
    struct tb_mbox_msg *m = msg_with(a, 9, "req");
    tb_mbox_ref(c);
    m->from = c;
    assert_int_equal(tb_mbox_push(b, m), 0);
    tb_mbox_unref(&a); /* the message still holds a */
    tb_mbox_unref(&c); /* and c */
    m = tb_mbox_take(b);
    assert_non_null(m);
    assert_int_equal(m->id, 9);
    tb_mbox_msg_free(m); /* the last references of a and c (ASan: nothing leaks) */
    tb_mbox_unref(&b);
}

/* A closed mailbox frees what it held and refuses pushes (the message is freed). */
static void test_closed(void **state)
{
    (void)state;
    tb_mbox_t *a = tb_mbox_new(), *b = tb_mbox_new();
    assert_int_equal(tb_mbox_push(b, msg_with(a, 1, "queued")), 0);
    struct tb_mbox_msg *rest = tb_mbox_close(b); /* handed back to be answered */
    assert_non_null(rest);
    assert_null(rest->next);
    assert_int_equal(rest->id, 1);
    tb_mbox_msg_free(rest);
    assert_int_equal(tb_mbox_push(b, msg_with(a, 2, "late")), TB_EGONE);
    assert_null(tb_mbox_take(b));
    tb_mbox_unref(&b);
    tb_mbox_unref(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_signal), cmocka_unit_test(test_pool_across_threads),
        cmocka_unit_test(test_pool_after_burst), cmocka_unit_test(test_references),
        cmocka_unit_test(test_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
