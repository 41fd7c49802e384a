/* Unit tests for tb_threadpool: every task runs exactly once per loop, on a valid thread index,
 * across many back-to-back loops, with spinning and with immediate sleeping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h> /* after the standard headers it needs */

#include "cpu/tb_threadpool.h"
#include "tb_errors.h"

struct count_ctx {
    atomic_int *hits;
    atomic_int bad_thread;
    int n_threads;
};

static void s_count(void *arg, int task, int thread)
{
    struct count_ctx *c = arg;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 0 || thread >= c->n_threads) {
        atomic_fetch_add(&c->bad_thread, 1);
    }
}

static void s_run_many(int n_threads, int spin_us, int loops)
{
    tb_threadpool_t *p = NULL;
    assert_int_equal(tb_threadpool_new(n_threads, &p), TB_OK);
    assert_non_null(p);
    assert_int_equal(tb_threadpool_size(p), n_threads);
    tb_threadpool_set_spin_us(p, spin_us);
    enum { MAXT = 300 };
    atomic_int *hits = calloc(MAXT, sizeof(atomic_int));
    assert_non_null(hits);
    struct count_ctx c = {.hits = hits, .n_threads = n_threads};
    for (int l = 0; l < loops; l++) {
        int n = (l * 37) % MAXT;
        for (int i = 0; i < MAXT; i++) {
            atomic_store(&hits[i], 0);
        }
        tb_threadpool_run(p, n, s_count, &c);
        for (int i = 0; i < MAXT; i++) {
            assert_int_equal(atomic_load(&hits[i]), i < n ? 1 : 0);
        }
    }
    assert_int_equal(atomic_load(&c.bad_thread), 0);
    free(hits);
    tb_threadpool_destroy(&p);
    assert_null(p);
}

static void test_two_threads_spinning(void **state)
{
    (void)state;
    s_run_many(2, 200, 2000);
}

static void test_sleeping_workers(void **state)
{
    (void)state;
    s_run_many(2, 0, 500);
}

static void test_oversubscribed(void **state)
{
    (void)state;
    s_run_many(5, 50, 300);
}

static void test_single_thread(void **state)
{
    (void)state;
    s_run_many(1, 0, 50);
}

static void test_default_size_and_null(void **state)
{
    (void)state;
    tb_threadpool_t *p = NULL;
    assert_int_equal(tb_threadpool_new(0, &p), TB_OK);
    assert_true(tb_threadpool_size(p) >= 1);
    tb_threadpool_destroy(&p);
    tb_threadpool_destroy(&p); /* NULL is accepted */
    tb_threadpool_destroy(NULL);
    assert_int_equal(tb_threadpool_new(-1, &p), TB_EINVAL);
    assert_null(p);
    /* A NULL pool runs the loop on the caller. */
    atomic_int hits[3] = {0};
    struct count_ctx c = {.hits = hits, .n_threads = 1};
    tb_threadpool_run(NULL, 3, s_count, &c);
    assert_int_equal(hits[0] + hits[1] + hits[2], 3);
}

struct sum_ctx {
    int64_t *partial; /* per task */
};

static void s_sum(void *arg, int task, int thread)
{
    (void)thread;
    struct sum_ctx *c = arg;
    int64_t s = 0;
    for (int i = 0; i < 1000; i++) {
        s += (int64_t)task * 1000 + i;
    }
    c->partial[task] = s; /* plain store: run() must publish it to the caller */
}

static void test_results_visible(void **state)
{
    (void)state;
    tb_threadpool_t *p = NULL;
    assert_int_equal(tb_threadpool_new(2, &p), TB_OK);
    int64_t partial[64];
    struct sum_ctx c = {.partial = partial};
    for (int l = 0; l < 200; l++) {
        for (int i = 0; i < 64; i++) {
            partial[i] = -1;
        }
        tb_threadpool_run(p, 64, s_sum, &c);
        int64_t total = 0;
        for (int i = 0; i < 64; i++) {
            total += partial[i];
        }
        assert_int_equal(total, (int64_t)64000 * 63999 / 2);
    }
    tb_threadpool_destroy(&p);
}

static void s_slow(void *arg, int task, int thread)
{
    (void)thread;
    struct timespec ts = {0, 200000 * (task % 3)};
    nanosleep(&ts, NULL);
    atomic_fetch_add(&((atomic_int *)arg)[task], 1);
}

/* Tasks that sleep: the caller finishes its share first and must wait (spin, then futex) for
 * the tasks still running on a worker; every task still runs exactly once. */
static void test_slow_tasks_and_sleeping_caller(void **state)
{
    (void)state;
    tb_threadpool_t *p = NULL;
    assert_int_equal(tb_threadpool_new(3, &p), TB_OK);
    tb_threadpool_set_spin_us(p, 10);
    atomic_int hits[7];
    for (int l = 0; l < 30; l++) {
        for (int i = 0; i < 7; i++) {
            atomic_store(&hits[i], 0);
        }
        tb_threadpool_run(p, 7, s_slow, hits);
        for (int i = 0; i < 7; i++) {
            assert_int_equal(atomic_load(&hits[i]), 1);
        }
    }
    tb_threadpool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_threads_spinning),
        cmocka_unit_test(test_sleeping_workers),
        cmocka_unit_test(test_oversubscribed),
        cmocka_unit_test(test_single_thread),
        cmocka_unit_test(test_default_size_and_null),
        cmocka_unit_test(test_results_visible),
        cmocka_unit_test(test_slow_tasks_and_sleeping_caller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
