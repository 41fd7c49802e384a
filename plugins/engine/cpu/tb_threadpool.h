/*
 * tb_threadpool.h - a fixed set of worker threads running parallel-for loops for the CPU kernels.
 *
 * One caller (the engine's forward-pass thread) submits a loop of `n_tasks` tasks with
 * tb_threadpool_run; the caller itself works as thread 0 and the pool's n_threads - 1 workers as
 * threads 1..n_threads-1.  Tasks are claimed dynamically, so a thread slowed down by other load
 * on the machine simply takes fewer, and the caller waits only for tasks still running, never for
 * a worker that has not woken up yet.  tb_threadpool_run returns when every task has finished;
 * the memory effects of all tasks are visible to the caller then.
 *
 * Between loops the workers spin for a short while (spin_us, default 200 microseconds) so that the
 * hundreds of back-to-back loops of one decode step cost about a microsecond each, then sleep on a
 * futex so an idle engine burns no CPU.  The caller likewise spins, then sleeps, while it waits
 * for the last task.
 *
 * Thread-safety: tb_threadpool_run must not be called concurrently on one pool (one submitting
 * thread at a time; calls from different threads must be serialised by the caller).  Task
 * functions must not call tb_threadpool_run on the same pool.  tb_threadpool_size is safe always.
 */
#ifndef TB_THREADPOOL_H
#define TB_THREADPOOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_threadpool tb_threadpool_t;

/* One task of a parallel loop: `task` in [0, n_tasks), `thread` in [0, n_threads) names the
 * thread running it (stable for the duration of the task; use it to index per-thread scratch). */
typedef void (*tb_threadpool_fn)(void *arg, int task, int thread);

/* Starts a pool of `n_threads` threads in all, counting the caller (0 = one per online CPU;
 * capped at 256).  On success *out is owned by the caller; destroy with tb_threadpool_destroy.
 * Returns TB_EINVAL for a negative count, TB_ENOMEM, or -errno from pthread_create when a thread
 * cannot be created (nothing is left running then). */
int tb_threadpool_new(int n_threads, tb_threadpool_t **out);

/* Stops and joins the workers and frees the pool; sets *self_p to NULL; accepts NULL. */
void tb_threadpool_destroy(tb_threadpool_t **self_p);

/* Number of threads, the caller included (>= 1). */
int tb_threadpool_size(const tb_threadpool_t *self);

/* How long idle workers (and the waiting caller) spin before sleeping, in microseconds
 * (0 = sleep at once).  Call between loops, from the submitting thread. */
void tb_threadpool_set_spin_us(tb_threadpool_t *self, int spin_us);

/* Runs fn(arg, task, thread) for every task in [0, n_tasks) across the pool and returns when all
 * have finished.  n_tasks <= 0 does nothing; n_tasks == 1 or a one-thread pool runs inline on the
 * caller without waking anyone.  `arg` is borrowed for the duration of the call. */
void tb_threadpool_run(tb_threadpool_t *self, int n_tasks, tb_threadpool_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* TB_THREADPOOL_H */
