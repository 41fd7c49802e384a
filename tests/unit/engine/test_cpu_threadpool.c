/* Unit tests for tb_threadpool: every task runs exactly once per loop, on a valid thread index,
 * across many back-to-back loops, with spinning and with immediate sleeping, adaptive or not;
 * adaptive mode runs tiny loops on the caller, backs off when a worker holds up the loops, and
 * still hands big loops to the workers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
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

static void s_count(void *arg, int task, int thread) {
    struct count_ctx *c = arg;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 0 || thread >= c->n_threads) {
        atomic_fetch_add(&c->bad_thread, 1);
    }
}

static void s_run_many(int n_threads, int spin_us, int loops, bool adaptive) {
    tb_threadpool_t *p = NULL;
    assert_int_equal(tb_threadpool_new(n_threads, &p), TB_OK);
    assert_non_null(p);
    assert_int_equal(tb_threadpool_size(p), n_threads);
    tb_threadpool_set_spin_us(p, spin_us);
    tb_threadpool_set_adaptive(p, adaptive);
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
    struct tb_threadpool_stats st;
    tb_threadpool_get_stats(p, &st);
    if (n_threads > 1) {
        /* every loop of two or more tasks is counted once, one way or another */
        assert_int_equal(st.loops, st.parallel + st.inline_small + st.inline_backoff);
        if (!adaptive) {
            assert_int_equal(st.parallel, st.loops);
        }
    }
    free(hits);
    tb_threadpool_destroy(&p);
    assert_null(p);
}

static void test_two_threads_spinning(void **state) {
    (void)state;
    s_run_many(2, 200, 2000, true);
    s_run_many(2, 200, 2000, false);
}

static void test_sleeping_workers(void **state) {
    (void)state;
    s_run_many(2, 0, 500, true);
    s_run_many(2, 0, 500, false);
}

static void test_oversubscribed(void **state) {
    (void)state;
    s_run_many(5, 50, 300, true);
    s_run_many(5, 50, 300, false);
}

static void test_single_thread(void **state) {
    (void)state;
    s_run_many(1, 0, 50, true);
}

static void test_default_size_and_null(void **state) {
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
    struct tb_threadpool_stats st = {.loops = 7};
    tb_threadpool_get_stats(NULL, &st);
    assert_int_equal(st.loops, 0);
    tb_threadpool_set_adaptive(NULL, false);
    tb_threadpool_set_spin_us(NULL, 5);
    tb_threadpool_get_stats(NULL, NULL);
}

struct sum_ctx {
    int64_t *partial; /* per task */
};

static void s_sum(void *arg, int task, int thread) {
    (void)thread;
    struct sum_ctx *c = arg;
    int64_t s = 0;
    for (int i = 0; i < 1000; i++) {
        s += (int64_t)task * 1000 + i;
    }
    c->partial[task] = s; /* plain store: run() must publish it to the caller */
}

static void test_results_visible(void **state) {
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

static void s_slow(void *arg, int task, int thread) {
    (void)thread;
    struct timespec ts = {0, 200000 * (task % 3)};
    nanosleep(&ts, NULL);
    atomic_fetch_add(&((atomic_int *)arg)[task], 1);
}

/* Tasks that sleep: the caller finishes its share first and must wait (spin, then futex) for
 * the tasks still running on a worker; every task still runs exactly once. */
static void test_slow_tasks_and_sleeping_caller(void **state) {
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

static int64_t s_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void s_spin_ns(int64_t ns) {
    int64_t until = s_now_ns() + ns;
    while (s_now_ns() < until) {
    }
}

static void s_nop(void *arg, int task, int thread) {
    (void)task;
    (void)thread;
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* Loops whose tasks do nothing cost more to dispatch than to run: after a while the pool runs
 * most of them on the caller, and each still runs every task once. */
static void test_tiny_loops_run_on_caller(void **state) {
    (void)state;
    tb_threadpool_t *p = NULL;
    assert_int_equal(tb_threadpool_new(2, &p), TB_OK);
    atomic_int count = 0;
    int64_t loops = 0;
    int64_t end = s_now_ns() + 200000000;
    while (s_now_ns() < end) {
        tb_threadpool_run(p, 16, s_nop, &count);
        loops++;
    }
    assert_int_equal(atomic_load(&count), loops * 16);
    struct tb_threadpool_stats st;
    tb_threadpool_get_stats(p, &st);
    assert_int_equal(st.loops, (uint64_t)loops);
    assert_int_equal(st.loops, st.parallel + st.inline_small + st.inline_backoff);
    assert_true(st.inline_small + st.inline_backoff > st.parallel);
    /* With adaptive mode off every loop goes to the workers. */
    tb_threadpool_set_adaptive(p, false);
    for (int i = 0; i < 100; i++) {
        tb_threadpool_run(p, 16, s_nop, &count);
    }
    struct tb_threadpool_stats st2;
    tb_threadpool_get_stats(p, &st2);
    assert_int_equal(st2.parallel, st.parallel + 100);
    assert_int_equal(atomic_load(&count), (loops + 100) * 16);
    tb_threadpool_destroy(&p);
}

struct stall_ctx {
    atomic_int *hits;
    atomic_int worker_tasks;
};

/* A worker's task takes 5 ms, as if the worker were descheduled while holding it; the caller's
 * take 20 us. */
static void s_stalling(void *arg, int task, int thread) {
    struct stall_ctx *c = arg;
    if (thread > 0) {
        atomic_fetch_add(&c->worker_tasks, 1);
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    } else {
        s_spin_ns(20000);
    }
    atomic_fetch_add(&c->hits[task], 1);
}

/* A worker that holds up the loops: the pool backs off and runs the following loops on the
 * caller, so only a few loops (one per back-off period, which doubles) wait for it. */
static void test_stalled_worker_backs_off(void **state) {
    (void)state;
    tb_threadpool_t *p = NULL;
    assert_int_equal(tb_threadpool_new(2, &p), TB_OK);
    atomic_int hits[4];
    struct stall_ctx c = {.hits = hits};
    enum { LOOPS = 200 };
    for (int l = 0; l < LOOPS; l++) {
        for (int i = 0; i < 4; i++) {
            atomic_store(&hits[i], 0);
        }
        tb_threadpool_run(p, 4, s_stalling, &c);
        for (int i = 0; i < 4; i++) {
            assert_int_equal(atomic_load(&hits[i]), 1);
        }
    }
    struct tb_threadpool_stats st;
    tb_threadpool_get_stats(p, &st);
    assert_int_equal(st.loops, LOOPS);
    assert_true(st.backoffs >= 1);
    assert_true(st.inline_backoff + st.inline_small >= LOOPS / 2);
    /* 200 loops of 80 us of caller work and doubling back-offs from 4 ms: a handful of loops
     * can have met the worker (without the back-off nearly all of them would). */
    assert_true(atomic_load(&c.worker_tasks) <= 12);
    assert_int_equal(st.worker_tasks, (uint64_t)atomic_load(&c.worker_tasks));
    tb_threadpool_destroy(&p);
}

static void s_big(void *arg, int task, int thread) {
    (void)task;
    s_spin_ns(200000);
    if (thread > 0) {
        atomic_fetch_add((atomic_int *)arg, 1);
    }
}

/* Loops of 200 us tasks are worth dispatching: the workers get tasks (given a second, on a
 * machine where other processes may keep them off the CPU for a while). */
static void test_big_loops_use_workers(void **state) {
    (void)state;
    tb_threadpool_t *p = NULL;
    assert_int_equal(tb_threadpool_new(2, &p), TB_OK);
    atomic_int on_workers = 0;
    int64_t end = s_now_ns() + 1000000000;
    int loops = 0;
    while (s_now_ns() < end && (loops < 20 || atomic_load(&on_workers) == 0)) {
        tb_threadpool_run(p, 4, s_big, &on_workers);
        loops++;
    }
    assert_true(atomic_load(&on_workers) > 0);
    struct tb_threadpool_stats st;
    tb_threadpool_get_stats(p, &st);
    assert_int_equal(st.worker_tasks, (uint64_t)atomic_load(&on_workers));
    assert_true(st.parallel > 0);
    tb_threadpool_destroy(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_threads_spinning),
        cmocka_unit_test(test_sleeping_workers),
        cmocka_unit_test(test_oversubscribed),
        cmocka_unit_test(test_single_thread),
        cmocka_unit_test(test_default_size_and_null),
        cmocka_unit_test(test_results_visible),
        cmocka_unit_test(test_slow_tasks_and_sleeping_caller),
        cmocka_unit_test(test_tiny_loops_run_on_caller),
        cmocka_unit_test(test_stalled_worker_backs_off),
        cmocka_unit_test(test_big_loops_use_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
