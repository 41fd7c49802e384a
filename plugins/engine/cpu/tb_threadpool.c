/*
 * tb_threadpool.c - the CPU kernels' parallel-for pool.
 *
 * A loop is published as a new generation: the job (fn, arg, n_tasks) goes into the slot of the
 * generation's parity, then one 64-bit word `work` = generation << 32 | next task index is set.
 * Threads claim a task with a compare-and-swap on `work`, so a worker that wakes late, after its
 * generation has ended, fails its claim and touches nothing.  The loop ends when `done` reaches
 * n_tasks: the caller never waits for a worker that found no task, which matters on a machine
 * where other processes keep a worker off its core (the caller then simply runs every task).
 * Idle workers spin on the generation for spin_us, then sleep on a futex.
 */
#include "tb_threadpool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tb_errors.h"

#define MAX_THREADS 256
#define DEFAULT_SPIN_US 200

/* A job slot.  Atomic members because a late worker may read a slot while the caller refills it
 * for a later generation; such a worker's claim then fails and what it read is discarded. */
struct job {
    _Atomic(tb_threadpool_fn) fn;
    _Atomic(void *) arg;
    atomic_int n_tasks;
};

struct tb_threadpool {
    int n_threads;
    pthread_t *threads;
    struct job jobs[2]; /* by generation parity */
    atomic_int spin_us;
    atomic_int stop;
    _Alignas(64) _Atomic uint64_t work; /* generation << 32 | next task */
    _Alignas(64) atomic_int gen;        /* futex word: the current generation */
    atomic_int sleepers;                /* workers inside futex_wait on gen */
    _Alignas(64) atomic_int done;       /* tasks finished in the current generation */
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

/* Claims and runs tasks of generation `g` until none is left. */
static void s_run_tasks(tb_threadpool_t *p, uint32_t g, int thread)
{
    const struct job *j = &p->jobs[g & 1];
    tb_threadpool_fn fn = atomic_load_explicit(&j->fn, memory_order_relaxed);
    void *arg = atomic_load_explicit(&j->arg, memory_order_relaxed);
    int n = atomic_load_explicit(&j->n_tasks, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(w >> 32) != g || (int)(uint32_t)w >= n) {
            return;
        }
        if (!atomic_compare_exchange_weak_explicit(&p->work, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire)) {
            continue;
        }
        fn(arg, (int)(uint32_t)w, thread);
        /* seq_cst, paired with the caller's store to caller_sleeping before it re-reads done */
        int d = atomic_fetch_add(&p->done, 1) + 1;
        if (d == n && atomic_load(&p->caller_sleeping)) {
            s_futex_wake(&p->done, 1);
        }
        w = atomic_load_explicit(&p->work, memory_order_acquire);
    }
}

static void *s_worker(void *varg)
{
    struct worker_arg *wa = varg;
    tb_threadpool_t *p = wa->pool;
    int index = wa->index;
    free(wa);
    /* Generation 0 is never a loop: workers start having "seen" it. */
    int seen = 0;
    for (;;) {
        int spin_us = atomic_load_explicit(&p->spin_us, memory_order_relaxed);
        int64_t deadline = 0;
        for (unsigned i = 0; atomic_load_explicit(&p->gen, memory_order_acquire) == seen; i++) {
            s_pause();
            if ((i & 63) != 63) {
                continue;
            }
            int64_t now = s_now_ns();
            if (deadline == 0) {
                deadline = now + (int64_t)spin_us * 1000;
            } else if (now > deadline) {
                atomic_fetch_add(&p->sleepers, 1);
                while (atomic_load(&p->gen) == seen) {
                    s_futex_wait(&p->gen, seen);
                }
                atomic_fetch_sub(&p->sleepers, 1);
                break;
            }
        }
        seen = atomic_load(&p->gen);
        if (atomic_load(&p->stop)) {
            break;
        }
        s_run_tasks(p, (uint32_t)seen, index);
    }
    return NULL;
}

/* Publishes generation `g` (jobs slot already filled) and wakes sleeping workers. */
static void s_publish(tb_threadpool_t *p, int g)
{
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->work, (uint64_t)(uint32_t)g << 32, memory_order_release);
    atomic_store(&p->gen, g);
    if (atomic_load(&p->sleepers) > 0) {
        s_futex_wake(&p->gen, INT_MAX);
    }
}

static void s_stop_workers(tb_threadpool_t *p)
{
    atomic_store(&p->stop, 1);
    int g = (int)((unsigned)atomic_load(&p->gen) + 1u);
    g = g == 0 ? 1 : g;
    atomic_store(&p->jobs[g & 1].n_tasks, 0);
    s_publish(p, g);
    for (int i = 1; i < p->n_threads; i++) {
        pthread_join(p->threads[i - 1], NULL);
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
    s_stop_workers(p);
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
    s_stop_workers(p);
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
    int g = (int)((unsigned)atomic_load_explicit(&p->gen, memory_order_relaxed) + 1u);
    if (g == 0) {
        g = 1; /* 0 is the workers' initial "seen" value */
    }
    struct job *j = &p->jobs[g & 1];
    atomic_store_explicit(&j->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&j->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&j->n_tasks, n_tasks, memory_order_relaxed);
    s_publish(p, g);
    s_run_tasks(p, (uint32_t)g, 0);
    /* Every task is claimed; wait for the ones still running elsewhere: spin, then sleep. */
    if (atomic_load_explicit(&p->done, memory_order_acquire) != n_tasks) {
        int64_t deadline = s_now_ns() + (int64_t)atomic_load(&p->spin_us) * 1000;
        while (atomic_load_explicit(&p->done, memory_order_acquire) != n_tasks &&
               s_now_ns() < deadline) {
            for (int i = 0; i < 16; i++) {
                s_pause();
            }
        }
        int d;
        atomic_store(&p->caller_sleeping, 1);
        while ((d = atomic_load(&p->done)) != n_tasks) {
            s_futex_wait(&p->done, d);
        }
        atomic_store(&p->caller_sleeping, 0);
    }
    atomic_thread_fence(memory_order_acquire);
}
