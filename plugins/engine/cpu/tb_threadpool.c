/*
 * tb_threadpool.c - the CPU kernels' parallel-for pool.
 *
 * A loop is published as a new generation: the job (fn, arg, n_tasks) goes into the slot of the
 * generation's parity, then one 64-bit word `work` = generation << 32 | next task index is set.
 * Threads claim a task with a compare-and-swap on `work`, so a worker that wakes late, after its
 * generation has ended, fails its claim and touches nothing.  Each thread adds the tasks it ran
 * to `done` once, when its next claim fails (no task is left), and the loop ends when `done`
 * reaches n_tasks: the caller never waits for a worker that found no task.  Idle workers spin on
 * the generation for spin_us, then sleep on a futex.
 *
 * Adaptive mode (see tb_threadpool.h): every thread times its share of a parallel loop and the
 * caller the whole loop (W).  The sum of the shares estimates the loop on the caller alone; the
 * gain of going parallel is that minus W.  When the caller had to sleep for a worker (a stall:
 * the worker's time then includes the time it was off its core), the caller's own share scaled
 * to all tasks is the estimate instead.  Gains are kept per kind of loop
 * (function and task count, in a small table only the caller touches) and summed over windows of
 * parallel time; a kind that loses runs inline, a window that loses starts a back-off period.
 */
#include "tb_threadpool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tb_errors.h"

#define MAX_THREADS 256
#define DEFAULT_SPIN_US 200
#define KIND_SLOTS 64            /* kinds of loop remembered (power of two) */
#define WINDOW_NS 2000000        /* parallel wall time judged at once */
#define WINDOW_MAX_NS 10000000   /* ... or the parallel loops of this much real time */
#define EVAL_EVERY_NS 50000000   /* inline kinds are tried again this often while healthy */
#define BACKOFF_MIN_NS 4000000   /* first back-off period */
#define BACKOFF_MAX_NS 256000000 /* longest back-off period */
#define STALL_MIN_NS 20000       /* the caller spins at least this long for a last task */
#define YIELD_AFTER_NS 20000     /* an idle worker yields its CPU now and then after this */

/* A job slot.  Atomic members because a late worker may read a slot while the caller refills it
 * for a later generation; such a worker's claim then fails and what it read is discarded. */
struct job {
    _Atomic(tb_threadpool_fn) fn;
    _Atomic(void *) arg;
    atomic_int n_tasks;
};

/* What the caller learned about one kind of loop (same function, same task count). */
struct kind {
    tb_threadpool_fn fn; /* NULL: free slot */
    int n_tasks;
    uint32_t epoch;      /* the window `samples` and `gain_ns` belong to */
    uint32_t samples;    /* parallel runs measured in that window */
    int64_t gain_ns;     /* their summed gain: estimated time on the caller alone - wall time */
    bool run_inline;
};

struct tb_threadpool {
    int n_threads;
    pthread_t *threads;
    struct job jobs[2]; /* by generation parity */
    atomic_int spin_us;
    atomic_int stop;
    /* the submitting thread's own state */
    bool adaptive;
    bool eval;              /* in an evaluation window: every loop runs in parallel */
    bool hold;              /* in a back-off period: every loop runs on the caller */
    uint32_t epoch;         /* number of the current window */
    int64_t win_start_ns;
    int64_t win_wall_ns;    /* wall time of the window's parallel loops */
    int64_t win_other_ns;   /* gains of its loops that say nothing of their kind (stalls) */
    int64_t next_eval_ns;
    int64_t backoff_ns;
    struct tb_threadpool_stats stats;
    struct kind kinds[KIND_SLOTS];
    /* shared */
    _Alignas(64) _Atomic uint64_t work; /* generation << 32 | next task */
    _Alignas(64) atomic_int gen;        /* futex word: the current generation */
    atomic_int sleepers;                /* workers inside futex_wait on gen */
    atomic_int park;                    /* 1: idle workers sleep at once (back-off period) */
    atomic_int caller_cpu;              /* CPU the caller last dispatched from, -1 unknown */
    _Alignas(64) atomic_int done;       /* tasks finished in the current generation */
    _Atomic int64_t busy_ns;            /* time the workers spent on them */
    atomic_int caller_sleeping;
};

struct worker_arg {
    tb_threadpool_t *pool;
    int index;
};

static void s_futex_wait(atomic_int *addr, int val) {
    syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void s_futex_wake(atomic_int *addr, int n) {
    syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void s_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t s_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claims and runs tasks of generation `g` until none is left, then adds them to `done` (waking
 * a sleeping caller when they were the last).  Returns how many this thread ran. */
static int s_run_tasks(tb_threadpool_t *p, uint32_t g, int thread) {
    const struct job *j = &p->jobs[g & 1];
    tb_threadpool_fn fn = atomic_load_explicit(&j->fn, memory_order_relaxed);
    void *arg = atomic_load_explicit(&j->arg, memory_order_relaxed);
    int n = atomic_load_explicit(&j->n_tasks, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
    int ran = 0;
    int64_t start = 0;
    for (;;) {
        if ((uint32_t)(w >> 32) != g || (int)(uint32_t)w >= n) {
            break;
        }
        if (!atomic_compare_exchange_weak_explicit(&p->work, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire)) {
            continue;
        }
        if (ran == 0 && thread > 0) {
            start = s_now_ns();
        }
        fn(arg, (int)(uint32_t)w, thread);
        ran++;
        w = atomic_load_explicit(&p->work, memory_order_acquire);
    }
    /* While this thread holds unreported tasks the generation cannot end, so `g` is still the
     * current one here and `n` its task count.  seq_cst, paired with the caller's store to
     * caller_sleeping before it re-reads done. */
    if (ran > 0) {
        if (thread > 0) {
            atomic_fetch_add_explicit(&p->busy_ns, s_now_ns() - start, memory_order_relaxed);
        }
        int d = atomic_fetch_add(&p->done, ran) + ran;
        if (d == n && atomic_load(&p->caller_sleeping)) {
            s_futex_wake(&p->done, 1);
        }
    }
    return ran;
}

/* True when an idle worker should sleep now rather than spin on: the caller asked for it, or
 * spinning here takes the CPU the caller needs. */
static bool s_should_park(tb_threadpool_t *p) {
    if (atomic_load_explicit(&p->park, memory_order_relaxed)) {
        return true;
    }
    int cc = atomic_load_explicit(&p->caller_cpu, memory_order_relaxed);
    return cc >= 0 && sched_getcpu() == cc;
}

static void *s_worker(void *varg) {
    struct worker_arg *wa = varg;
    tb_threadpool_t *p = wa->pool;
    int index = wa->index;
    free(wa);
    /* Generation 0 is never a loop: workers start having "seen" it. */
    int seen = 0;
    for (;;) {
        int64_t spin_ns = (int64_t)atomic_load_explicit(&p->spin_us, memory_order_relaxed) * 1000;
        int64_t start = 0;
        for (unsigned i = 0; atomic_load_explicit(&p->gen, memory_order_acquire) == seen; i++) {
            s_pause();
            if ((i & 63) != 63) {
                continue;
            }
            int64_t now = s_now_ns();
            if (start == 0) {
                start = now;
            }
            /* Sleep when the spin is over, when the caller asks, or when this thread shares the
             * caller's CPU (spinning would only take it from the caller). */
            if (now - start > spin_ns || s_should_park(p)) {
                atomic_fetch_add(&p->sleepers, 1);
                while (atomic_load(&p->gen) == seen) {
                    s_futex_wait(&p->gen, seen);
                }
                atomic_fetch_sub(&p->sleepers, 1);
                break;
            }
            /* Idle past the gaps between the loops of one step: let whatever else is ready on
             * this CPU run (the threads taking the step's output onwards, other processes). */
            if (now - start > YIELD_AFTER_NS && (i & 255) == 255) {
                sched_yield();
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

/* Publishes generation `g` (jobs slot already filled) and wakes sleeping workers; returns true
 * when some were asleep. */
static bool s_publish(tb_threadpool_t *p, int g) {
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->busy_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&p->work, (uint64_t)(uint32_t)g << 32, memory_order_release);
    atomic_store(&p->gen, g);
    if (atomic_load(&p->sleepers) > 0) {
        s_futex_wake(&p->gen, INT_MAX);
        return true;
    }
    return false;
}

static int s_next_gen(tb_threadpool_t *p) {
    int g = (int)((unsigned)atomic_load_explicit(&p->gen, memory_order_relaxed) + 1u);
    return g == 0 ? 1 : g; /* 0 is the workers' initial "seen" value */
}

static void s_stop_workers(tb_threadpool_t *p) {
    atomic_store(&p->stop, 1);
    int g = s_next_gen(p);
    atomic_store(&p->jobs[g & 1].n_tasks, 0);
    s_publish(p, g);
    for (int i = 1; i < p->n_threads; i++) {
        pthread_join(p->threads[i - 1], NULL);
    }
}

static void s_reset_adaptive(tb_threadpool_t *p) {
    memset(p->kinds, 0, sizeof(p->kinds));
    p->eval = false;
    p->hold = false;
    p->epoch = 1;
    p->win_start_ns = 0;
    p->win_wall_ns = 0;
    p->win_other_ns = 0;
    p->next_eval_ns = 0; /* the first loop opens an evaluation window */
    p->backoff_ns = BACKOFF_MIN_NS;
    atomic_store(&p->park, 0);
    atomic_store(&p->caller_cpu, -1); /* set again by the next adaptive dispatch */
}

int tb_threadpool_new(int n_threads, tb_threadpool_t **out) {
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
    *p = (tb_threadpool_t){.n_threads = 1, .adaptive = true};
    atomic_init(&p->spin_us, DEFAULT_SPIN_US);
    atomic_init(&p->caller_cpu, -1);
    s_reset_adaptive(p);
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

void tb_threadpool_destroy(tb_threadpool_t **self_p) {
    if (!self_p || !*self_p) {
        return;
    }
    tb_threadpool_t *p = *self_p;
    s_stop_workers(p);
    free(p->threads);
    free(p);
    *self_p = NULL;
}

int tb_threadpool_size(const tb_threadpool_t *self) {
    return self ? self->n_threads : 1;
}

void tb_threadpool_set_spin_us(tb_threadpool_t *self, int spin_us) {
    if (self) {
        atomic_store(&self->spin_us, spin_us < 0 ? 0 : spin_us);
    }
}

void tb_threadpool_set_adaptive(tb_threadpool_t *self, bool on) {
    if (self) {
        self->adaptive = on;
        s_reset_adaptive(self);
    }
}

void tb_threadpool_get_stats(const tb_threadpool_t *self, struct tb_threadpool_stats *out) {
    if (!out) {
        return;
    }
    *out = self ? self->stats : (struct tb_threadpool_stats){0};
}

static struct kind *s_kind(tb_threadpool_t *p, tb_threadpool_fn fn, int n_tasks) {
    uint64_t h = (uint64_t)(uintptr_t)fn ^ ((uint64_t)(unsigned)n_tasks * 0x9e3779b97f4a7c15u);
    h ^= h >> 29;
    size_t i = (size_t)((h * 0x2545f4914f6cdd1du) >> 58) & (KIND_SLOTS - 1);
    for (size_t probe = 0; probe < 4; probe++) {
        struct kind *k = &p->kinds[(i + probe) & (KIND_SLOTS - 1)];
        if (k->fn == fn && k->n_tasks == n_tasks) {
            return k;
        }
        if (!k->fn) {
            *k = (struct kind){.fn = fn, .n_tasks = n_tasks};
            return k;
        }
    }
    /* A full neighbourhood: forget the first slot's kind. */
    struct kind *k = &p->kinds[i];
    *k = (struct kind){.fn = fn, .n_tasks = n_tasks};
    return k;
}

static void s_run_inline(int n_tasks, tb_threadpool_fn fn, void *arg) {
    for (int t = 0; t < n_tasks; t++) {
        fn(arg, t, 0);
    }
}

/* Waits for the tasks still running on workers: spins while the wait stays within `spin_ns`
 * from `from_ns`, then sleeps.  Returns true when it had to sleep. */
static bool s_wait_done(tb_threadpool_t *p, int n_tasks, int64_t from_ns, int64_t spin_ns) {
    if (atomic_load_explicit(&p->done, memory_order_acquire) == n_tasks) {
        return false;
    }
    int64_t deadline = from_ns + spin_ns;
    while (atomic_load_explicit(&p->done, memory_order_acquire) != n_tasks &&
           s_now_ns() < deadline) {
        for (int i = 0; i < 16; i++) {
            s_pause();
        }
    }
    int d;
    bool slept = false;
    atomic_store(&p->caller_sleeping, 1);
    while ((d = atomic_load(&p->done)) != n_tasks) {
        slept = true;
        s_futex_wait(&p->done, d);
    }
    atomic_store(&p->caller_sleeping, 0);
    return slept;
}

static void s_window_open(tb_threadpool_t *p, int64_t now, bool eval) {
    p->eval = eval;
    p->epoch++;
    p->win_start_ns = now;
    p->win_wall_ns = 0;
    p->win_other_ns = 0;
}

/* Ends a window: each kind measured in it runs inline from now on if its parallel runs lost.
 * If no kind is left in parallel, or the parallel ones together with the stalls lost, the workers
 * sleep until the next evaluation window, after a back-off that doubles each time. */
static void s_window_close(tb_threadpool_t *p, int64_t now) {
    int64_t total = p->win_other_ns;
    int n_parallel = 0;
    for (size_t i = 0; i < KIND_SLOTS; i++) {
        struct kind *k = &p->kinds[i];
        if (!k->fn) {
            continue;
        }
        bool fresh = k->epoch == p->epoch && k->samples > 0;
        if (fresh) {
            k->run_inline = k->gain_ns < 0;
        }
        if (!k->run_inline) {
            n_parallel++;
            total += fresh ? k->gain_ns : 0;
        }
    }
    if (n_parallel == 0 || total < 0) {
        p->hold = total < 0;
        p->next_eval_ns = now + p->backoff_ns;
        p->backoff_ns = p->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : p->backoff_ns * 2;
        p->stats.backoffs++;
        atomic_store_explicit(&p->park, 1, memory_order_relaxed);
    } else {
        p->backoff_ns = BACKOFF_MIN_NS;
        if (p->eval) {
            p->next_eval_ns = now + EVAL_EVERY_NS;
        }
    }
    s_window_open(p, now, false);
}

/* Learns from one parallel loop: t0 before publishing, t1 when the caller began claiming, t2
 * when its claims ran out, t3 when the last task was done; `mine` tasks ran on the caller.
 * The loop on the caller alone is estimated from the caller's own tasks (c = t2 - t1, scaled
 * to all tasks), but at most c plus the workers' time on theirs: the caller's share is the
 * better measure (a worker's time includes any time it spent descheduled holding a task), the
 * sum the safer one when the caller ran few tasks. */
static void s_learn(tb_threadpool_t *p, struct kind *k, int n_tasks, int mine, bool woke,
                    bool slept, int64_t t0, int64_t t1, int64_t t2, int64_t t3) {
    if (mine <= 0) {
        return; /* the caller was away (descheduled) while the workers ran it: no estimate */
    }
    int64_t wall = t3 - t0;
    int64_t c = t2 - t1;
    int64_t alone = c * n_tasks / mine;
    if (slept || (woke && mine == n_tasks)) {
        /* A stall (a worker descheduled holding a task), or workers that were asleep and did
         * not wake in time: the cost of going parallel now, not of this kind. */
        p->win_other_ns += alone - wall;
    } else {
        int64_t sum = c + atomic_load_explicit(&p->busy_ns, memory_order_relaxed);
        if (alone > sum) {
            alone = sum;
        }
        if (k->epoch != p->epoch) {
            k->epoch = p->epoch;
            k->samples = 0;
            k->gain_ns = 0;
        }
        k->samples++;
        k->gain_ns += alone - wall;
    }
    p->win_wall_ns += wall;
    if (p->win_wall_ns >= WINDOW_NS || t3 - p->win_start_ns >= WINDOW_MAX_NS ||
        p->win_other_ns < -WINDOW_NS / 2) {
        s_window_close(p, t3);
    }
}

void tb_threadpool_run(tb_threadpool_t *self, int n_tasks, tb_threadpool_fn fn, void *arg) {
    if (n_tasks <= 0 || !fn) {
        return;
    }
    if (!self || self->n_threads == 1 || n_tasks == 1) {
        s_run_inline(n_tasks, fn, arg);
        return;
    }
    tb_threadpool_t *p = self;
    p->stats.loops++;
    struct kind *k = NULL;
    int64_t t0 = 0;
    if (p->adaptive) {
        t0 = s_now_ns();
        if (!p->eval && t0 >= p->next_eval_ns) {
            p->hold = false;
            s_window_open(p, t0, true);
        }
        if (p->hold) {
            p->stats.inline_backoff++;
            s_run_inline(n_tasks, fn, arg);
            return;
        }
        k = s_kind(p, fn, n_tasks);
        if (k->run_inline && !p->eval) {
            p->stats.inline_small++;
            s_run_inline(n_tasks, fn, arg);
            return;
        }
        if (atomic_load_explicit(&p->park, memory_order_relaxed)) {
            atomic_store_explicit(&p->park, 0, memory_order_relaxed);
        }
        atomic_store_explicit(&p->caller_cpu, sched_getcpu(), memory_order_relaxed);
    }
    p->stats.parallel++;
    int g = s_next_gen(p);
    struct job *j = &p->jobs[g & 1];
    atomic_store_explicit(&j->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&j->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&j->n_tasks, n_tasks, memory_order_relaxed);
    bool woke = s_publish(p, g);
    int64_t t1 = p->adaptive ? s_now_ns() : 0;
    int mine = s_run_tasks(p, (uint32_t)g, 0);
    p->stats.worker_tasks += (uint64_t)(n_tasks - mine);
    if (!p->adaptive) {
        int64_t spin_ns = (int64_t)atomic_load(&p->spin_us) * 1000;
        if (s_wait_done(p, n_tasks, s_now_ns(), spin_ns)) {
            p->stats.stalls++;
        }
        atomic_thread_fence(memory_order_acquire);
        return;
    }
    int64_t t2 = s_now_ns();
    /* A task still running elsewhere started before the caller's last claim failed: it should
     * end within about one task's time.  Longer, its thread was most likely descheduled. */
    int64_t per_task = mine > 0 ? (t2 - t1) / mine : 0;
    int64_t spin_ns = 2 * per_task > STALL_MIN_NS ? 2 * per_task : STALL_MIN_NS;
    bool slept = s_wait_done(p, n_tasks, t2, spin_ns);
    if (slept) {
        p->stats.stalls++;
    }
    atomic_thread_fence(memory_order_acquire);
    s_learn(p, k, n_tasks, mine, woke, slept, t0, t1, t2, s_now_ns());
}
