/*
 * tb_threadpool.c - the CPU kernels' parallel-for pool: workers wait on a generation counter
 * (spin, then futex), claim tasks from an atomic counter, and count themselves out on `pending`.
 */
#include "tb_threadpool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tb_errors.h"

#define MAX_THREADS 256
#define DEFAULT_SPIN_US 200

struct tb_threadpool {
    int n_threads;
    pthread_t *threads;
    /* The current loop, written by the submitter before it bumps `gen`. */
    tb_threadpool_fn fn;
    void *arg;
    int n_tasks;
    _Atomic int spin_us;
    _Alignas(64) atomic_int next_task;
    _Alignas(64) atomic_int gen;      /* futex word the workers wait on */
    atomic_int sleepers;              /* workers inside futex_wait on gen */
    atomic_int stop;
    _Alignas(64) atomic_int pending;  /* workers not yet done with the current loop */
    atomic_int caller_sleeping;
};

struct worker_arg {
    tb_threadpool_t *pool;
    int index;
};

static void s_futex_wait(atomic_int *addr, int val)
{
    syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void s_futex_wake(atomic_int *addr, int n)
{
    syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void s_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until *addr != val or the spin budget is used; returns true when it changed. */
static bool s_spin_until_change(atomic_int *addr, int val, int spin_us)
{
    if (spin_us <= 0) {
        return atomic_load(addr) != val;
    }
    int64_t deadline = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != val) {
            return true;
        }
        s_pause();
        if ((i & 63) == 63) {
            int64_t now = s_now_ns();
            if (deadline == 0) {
                deadline = now + (int64_t)spin_us * 1000;
            } else if (now > deadline) {
                return false;
            }
        }
    }
}

static void s_run_tasks(tb_threadpool_t *p, int thread)
{
    int n = p->n_tasks;
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= n) {
            break;
        }
        p->fn(p->arg, t, thread);
    }
}

static void *s_worker(void *varg)
{
    struct worker_arg *wa = varg;
    tb_threadpool_t *p = wa->pool;
    int index = wa->index;
    free(wa);
    /* No loop can have started before tb_threadpool_new returned, so generation 0 is the one
     * every worker has seen, however late it starts running. */
    int seen = 0;
    for (;;) {
        if (!s_spin_until_change(&p->gen, seen, atomic_load(&p->spin_us))) {
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen) {
                s_futex_wait(&p->gen, seen);
            }
            atomic_fetch_sub(&p->sleepers, 1);
        }
        seen = atomic_load(&p->gen);
        if (atomic_load(&p->stop)) {
            break;
        }
        s_run_tasks(p, index);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            s_futex_wake(&p->pending, 1);
        }
    }
    return NULL;
}

static void s_wake_workers(tb_threadpool_t *p)
{
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        s_futex_wake(&p->gen, INT_MAX);
    }
}

int tb_threadpool_new(int n_threads, tb_threadpool_t **out)
{
    int rc = TB_OK;
    tb_threadpool_t *p = NULL;
    if (!out || n_threads < 0) {
        rc = TB_EINVAL;
        goto fail;
    }
    *out = NULL;
    if (n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > MAX_THREADS) {
        n_threads = MAX_THREADS;
    }
    p = aligned_alloc(64, (sizeof(*p) + 63) / 64 * 64);
    if (!p) {
        rc = TB_ENOMEM;
        goto fail;
    }
    *p = (tb_threadpool_t){.n_threads = 1};
    atomic_init(&p->spin_us, DEFAULT_SPIN_US);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!p->threads) {
            rc = TB_ENOMEM;
            goto fail_pool;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof(*wa));
        if (!wa) {
            rc = TB_ENOMEM;
            goto fail_threads;
        }
        wa->pool = p;
        wa->index = i;
        int err = pthread_create(&p->threads[i - 1], NULL, s_worker, wa);
        if (err != 0) {
            free(wa);
            rc = -err;
            goto fail_threads;
        }
        p->n_threads = i + 1;
    }
    *out = p;
    return TB_OK;

fail_threads:
    atomic_store(&p->stop, 1);
    s_wake_workers(p);
    for (int i = 1; i < p->n_threads; i++) {
        pthread_join(p->threads[i - 1], NULL);
    }
fail_pool:
    free(p->threads);
    free(p);
fail:
    return rc;
}

void tb_threadpool_destroy(tb_threadpool_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tb_threadpool_t *p = *self_p;
    atomic_store(&p->stop, 1);
    s_wake_workers(p);
    for (int i = 1; i < p->n_threads; i++) {
        pthread_join(p->threads[i - 1], NULL);
    }
    free(p->threads);
    free(p);
    *self_p = NULL;
}

int tb_threadpool_size(const tb_threadpool_t *self)
{
    return self ? self->n_threads : 1;
}

void tb_threadpool_set_spin_us(tb_threadpool_t *self, int spin_us)
{
    if (self) {
        atomic_store(&self->spin_us, spin_us < 0 ? 0 : spin_us);
    }
}

void tb_threadpool_run(tb_threadpool_t *self, int n_tasks, tb_threadpool_fn fn, void *arg)
{
    if (n_tasks <= 0 || !fn) {
        return;
    }
    if (!self || self->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) {
            fn(arg, t, 0);
        }
        return;
    }
    tb_threadpool_t *p = self;
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    s_wake_workers(p);
    s_run_tasks(p, 0);
    /* Wait for the workers: spin while the budget lasts, then sleep on `pending`. */
    int spin_us = atomic_load(&p->spin_us);
    if (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) {
        int64_t deadline = s_now_ns() + (int64_t)spin_us * 1000;
        while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0 &&
               s_now_ns() < deadline) {
            for (int i = 0; i < 16; i++) {
                s_pause();
            }
        }
        int left;
        atomic_store(&p->caller_sleeping, 1);
        while ((left = atomic_load(&p->pending)) != 0) {
            s_futex_wait(&p->pending, left);
        }
        atomic_store(&p->caller_sleeping, 0);
    }
    atomic_thread_fence(memory_order_acquire);
}
