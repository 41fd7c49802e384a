/*
 * tb_threadpool.h - a fixed set of worker threads running parallel-for loops for the CPU kernels.
 *
 * One caller (the engine's forward-pass thread) submits a loop of `n_tasks` tasks with
 * tb_threadpool_run; the caller itself works as thread 0 and the pool's n_threads - 1 workers as
 * threads 1..n_threads-1.  Tasks are claimed one at a time, so a thread slowed down by other load
 * on the machine simply takes fewer, and the caller waits only for tasks still running, never for
 * a worker that has not woken up yet.  tb_threadpool_run returns when every task has finished;
 * the memory effects of all tasks are visible to the caller then.  Which thread runs a task never
 * changes what the task computes: a loop gives the same results run in parallel or on the caller.
 *
 * Between loops the workers spin for a short while (spin_us, default 200 microseconds) so that the
 * hundreds of back-to-back loops of one decode step cost about a microsecond each, then sleep on a
 * futex so an idle engine burns no CPU.  A spinning worker yields its CPU now and then after the
 * first 20 microseconds (to whatever else is ready there), and in adaptive mode sleeps at once
 * when it finds itself on the caller's CPU or the pool backs off (below).
 *
 * Adaptive mode (the default) keeps the pool from ever being much slower than the caller alone:
 *  - the caller times its own share of each parallel loop and so estimates what the loop would
 *    have cost on it alone; a kind of loop (same function, same task count) whose parallel runs
 *    lose to that estimate over a window of about 2 ms of parallel time (its work is smaller
 *    than the cost of dispatching it) runs on the caller, and is tried in parallel again every
 *    50 ms;
 *  - when the parallel loops of the last ~2 ms of parallel time lost, in sum, to the caller alone
 *    (workers kept off their cores by other processes: a worker descheduled holding a task makes
 *    the caller wait for it), every loop runs on the caller for a back-off period (4 ms, doubling
 *    while parallel keeps losing, up to 256 ms) with the workers asleep, then parallel is tried
 *    again;
 *  - a caller whose last task is done stops spinning and sleeps as soon as the task still running
 *    elsewhere takes clearly longer than a task should (its thread was descheduled).
 * tb_threadpool_set_adaptive(pool, false) dispatches every loop of two or more tasks.
 *
 * Thread-safety: tb_threadpool_run must not be called concurrently on one pool (one submitting
 * thread at a time; calls from different threads must be serialised by the caller), nor must
 * the setters and tb_threadpool_get_stats race with it.  Task functions must not call
 * tb_threadpool_run on the same pool.  tb_threadpool_size is safe always.
 */
#ifndef TB_THREADPOOL_H
#define TB_THREADPOOL_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_threadpool tb_threadpool_t;

/* One task of a parallel loop: `task` in [0, n_tasks), `thread` in [0, n_threads) names the
 * thread running it (stable for the duration of the task; use it to index per-thread scratch). */
typedef void (*tb_threadpool_fn)(void *arg, int task, int thread);

/* Counters since the pool was created (loops of one task, and every loop of a one-thread pool,
 * run inline and are not counted). */
struct tb_threadpool_stats {
    uint64_t loops;          /* tb_threadpool_run calls of two or more tasks */
    uint64_t parallel;       /* of them, dispatched to the workers */
    uint64_t inline_small;   /* run on the caller: this kind of loop costs less there */
    uint64_t inline_backoff; /* run on the caller: in a back-off period */
    uint64_t backoffs;       /* back-off periods begun */
    uint64_t stalls;         /* parallel loops where the caller slept waiting for a worker */
    uint64_t worker_tasks;   /* tasks run by the workers */
};

/* Starts a pool of `n_threads` threads in all, counting the caller (0 = one per online CPU;
 * capped at 256).  On success *out is owned by the caller; destroy with tb_threadpool_destroy.
 * Returns TB_EINVAL for a negative count, TB_ENOMEM, or -errno from pthread_create when a thread
 * cannot be created (nothing is left running then). */
int tb_threadpool_new(int n_threads, tb_threadpool_t **out);

/* Stops and joins the workers and frees the pool; sets *self_p to NULL; accepts NULL. */
void tb_threadpool_destroy(tb_threadpool_t **self_p);

/* Number of threads, the caller included (>= 1). */
int tb_threadpool_size(const tb_threadpool_t *self);

/* How long idle workers spin before sleeping, in microseconds (0 = sleep at once); with
 * adaptive mode off, also how long the caller spins waiting for the last task.  Call between
 * loops, from the submitting thread. */
void tb_threadpool_set_spin_us(tb_threadpool_t *self, int spin_us);

/* Adaptive mode on (the default) or off (every loop of two or more tasks goes to the workers,
 * and the caller waits for them by spinning spin_us, then sleeping).  From the submitting
 * thread, between loops; turning it on starts the pool's measurements afresh. */
void tb_threadpool_set_adaptive(tb_threadpool_t *self, bool on);

/* Copies the counters into *out (zeros for a NULL pool).  From the submitting thread. */
void tb_threadpool_get_stats(const tb_threadpool_t *self, struct tb_threadpool_stats *out);

/* Runs fn(arg, task, thread) for every task in [0, n_tasks) across the pool and returns when all
 * have finished.  n_tasks <= 0 does nothing; n_tasks == 1 or a one-thread pool runs inline on the
 * caller without waking anyone; in adaptive mode other loops may too (see above).  `arg` is
 * borrowed for the duration of the call. */
void tb_threadpool_run(tb_threadpool_t *self, int n_tasks, tb_threadpool_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* TB_THREADPOOL_H */
