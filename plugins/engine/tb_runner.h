/*
 * tb_runner.h - one engine runner: a model's forward pass (a flavour's backend, tb_backend.h),
 * the paged KV cache's bookkeeping (tb_kv_manager.h), the sampler (tb_sampler.h) and
 * continuous batching (tb_scheduler.h), assembled once.  No bus, no threads of its own, no I/O:
 * the engine plugin (tb_engine.c), the benchmark (bench/engine) and the forward tool
 * (tests/tools/tb_forward.c) all drive the same runner.
 *
 * The loop:
 *     tb_runner_submit(r, &req, &id);          // any time between steps
 *     while (tb_runner_has_work(r)) {
 *         rc = tb_runner_step(r, &outs, &n);   // one batch: plan, forward, sample, complete
 *         for each outs[i]: stream its token; finish != TB_FINISH_NONE ends it
 *     }
 *     tb_runner_cancel(r, id);                 // frees the sequence's KV blocks at once
 *
 * Each output carries the token, the sample (logprobs) and the logits row it was drawn from.
 * A sequence's tokens depend only on its prompt, its sampling parameters and its seed, never on
 * the batch around it (tb_scheduler.h, tb_sampler.h).
 *
 * Migration hooks: tb_runner_export copies a live sequence (prompt, generated tokens, effective
 * sampling parameters, random generator state); tb_runner_import resumes it in this or another
 * runner of the same model, so that it goes on with the tokens it would have produced.  KV
 * events (blocks stored and removed, with their chained hashes) are drained with
 * tb_runner_pop_kv_event.
 *
 * Not thread-safe: one thread calls everything (the backend may run worker threads inside
 * tb_runner_step).
 */
#ifndef TB_RUNNER_H
#define TB_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_backend.h"
#include "tb_kv_manager.h"
#include "tb_model.h"
#include "tb_rng.h"
#include "tb_sampler.h"
#include "tb_scheduler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_runner tb_runner_t;

/* What a runner is built with; fill with tb_runner_config_init, then override. */
struct tb_runner_config {
    uint32_t context_length;    /* tokens of prompt + completion at most; 0: the model's */
    uint32_t max_batch_seqs;    /* sequences in one step at most (default 64) */
    uint32_t max_batch_tokens;  /* tokens in one step at most (default 512) */
    uint32_t max_seqs;          /* requests running or waiting at most (default 1024) */
    int64_t kv_cache_bytes;     /* memory for the KV cache (default 1 GiB) */
    uint32_t block_size;        /* tokens per KV block (default 16) */
    bool kv_f16;                /* keys and values stored as f16 (default), else f32 */
    bool prefix_caching;        /* reuse the KV blocks of shared prompt prefixes (default on) */
    bool chunked_prefill;       /* cut long prompts into chunks (default on) */
    uint32_t kv_event_capacity; /* KV events kept until drained; 0: no events (default 4096) */
    uint64_t seed;              /* seeds the seeds of requests that bring none */
    const void *flavour;        /* the flavour's own config (its extra keys), borrowed for
                                   tb_runner_new; NULL: the flavour's defaults */
};

/* Fills `cfg` with the defaults above. */
void tb_runner_config_init(struct tb_runner_config *cfg);

/* A new request.  Borrowed by tb_runner_submit for the call. */
struct tb_runner_request {
    const int32_t *prompt;                   /* token ids */
    uint32_t n_prompt;                       /* >= 1 */
    const struct tb_sampling_params *params; /* after defaults (tb_sampling_msg.h); its
                                                `grammar` is ignored: use the one below */
    void *user;                              /* the caller's, handed back in outputs */
    const char *grammar; /* GBNF text (root rule `root`) the tokens must follow, NULL for none:
                            compiled once per distinct text (tb_grammar_set.h) */
};

/* What one step did to one sequence.  Borrowed, valid until the next step or destroy. */
struct tb_runner_output {
    uint64_t id;
    void *user;
    int32_t token;                /* the token appended; -1 with TB_FINISH_ERROR */
    enum tb_finish_reason finish; /* TB_FINISH_NONE: it runs on; otherwise it is gone */
    uint32_t n_prompt;
    uint32_t n_generated; /* tokens generated so far, this one included */
    uint32_t n_cached;    /* prompt tokens its first admission found in the prefix cache */
    const struct tb_sample *sample; /* the token's logprob and top alternatives (when its
                                       params asked for logprobs); NULL when it failed */
    const float *logits;            /* the vocab logits it was drawn from; NULL when it failed */
};

/* What the last step ran, for benchmarks and metrics.  Plain data. */
struct tb_runner_step_info {
    uint32_t n_seqs;        /* sequences in the batch (0: nothing ran) */
    uint32_t n_tokens;      /* tokens in the batch */
    bool decode;            /* every sequence ran one token */
    uint32_t n_preempted;   /* sequences preempted to make room for it */
    double forward_seconds; /* the backend's forward pass */
    double step_seconds;    /* the whole step: plan, forward, sampling, completion */
};

/* A sequence as tb_runner_export copies it.  Release with tb_runner_seq_state_release. */
struct tb_runner_seq_state {
    int32_t *tokens; /* prompt then generated, owned */
    uint32_t n_tokens;
    uint32_t n_prompt;                /* tokens[0..n_prompt) are the prompt */
    struct tb_sampling_params params; /* with the seed it drew; stop_ids point into stop_ids */
    int32_t *stop_ids;                /* owned */
    struct tb_rng rng;                /* its random generator, as it stands */
    char *grammar;                    /* owned: its grammar's GBNF text, NULL for none
                                         (params.grammar is NULL: import compiles it again) */
};

/* Frees what `st` owns and zeroes it; safe on a zeroed or released struct. */
void tb_runner_seq_state_release(struct tb_runner_seq_state *st);

/* Creates the backend (ops->create), KV manager, sampler and scheduler for `model` (borrowed:
 * it must outlive the runner).  `cfg` and `ops` are borrowed; `ops` must stay valid for the
 * runner's life.  On success *out is the caller's; destroy with tb_runner_destroy.  On failure a
 * TB_E* code (TB_ECONFIG for a config the model or backend cannot honour, TB_ENOMEM, or the
 * backend's) with the reason in `err` (`err_len` bytes), nothing left allocated. */
int tb_runner_new(const tb_model_t *model, const struct tb_backend_ops *ops,
                  const struct tb_runner_config *cfg, tb_runner_t **out, char *err,
                  size_t err_len);

/* Ends every sequence, frees everything and sets *self_p to NULL; NULL-safe. */
void tb_runner_destroy(tb_runner_t **self_p);

/* Queues a request; *id (may be NULL) receives its id, unique in this runner.  Returns 0, or
 * the scheduler's refusal (TB_EINVAL, TB_EOVERLOAD, TB_ECONTEXT, TB_E2BIG, TB_ENOMEM) with the
 * message in tb_runner_errmsg.  A request with a grammar is compiled here (in the caller's
 * thread) the first time its text is seen: a grammar that does not compile is TB_EINVAL with
 * "grammar: LINE:COL: what"; a model without a tokenizer gives TB_ENOTSUP. */
int tb_runner_submit(tb_runner_t *self, const struct tb_runner_request *req, uint64_t *id);

/* Ends request `id` now and returns its KV blocks; no output mentions it afterwards.  Returns 0
 * or TB_ENOENT. */
int tb_runner_cancel(tb_runner_t *self, uint64_t id);

/* Runs one batch step: plans it, runs the forward pass, samples every sequence that needs a
 * token and records the tokens.  *outs / *n_outs receive one output per sequence that got a
 * token (or failed), in batch order.  Returns:
 *   0          a batch ran (*n_outs may still be 0 while prompts are mid-prefill);
 *   TB_AGAIN   nothing ran: no work, or waiting requests that cannot be admitted yet;
 *   negative   the forward pass failed: the step's sequences were ended and come back as
 *              outputs with TB_FINISH_ERROR; the reason is in tb_runner_errmsg.
 * A sequence whose logits admit no token (all NaN) ends with TB_FINISH_ERROR and return 0. */
int tb_runner_step(tb_runner_t *self, const struct tb_runner_output **outs, uint32_t *n_outs);

/* True while any request is running or waiting. */
bool tb_runner_has_work(const tb_runner_t *self);

/* Fills *out with the scheduler's load figures. */
void tb_runner_get_load(const tb_runner_t *self, struct tb_sched_load *out);

/* What the last tb_runner_step ran. */
void tb_runner_last_step(const tb_runner_t *self, struct tb_runner_step_info *out);

/* Takes the oldest KV event (block stored / removed / events lost) into *ev: 0, or TB_AGAIN
 * when none is queued. */
int tb_runner_pop_kv_event(tb_runner_t *self, struct tb_kv_event *ev);

/* Copies live sequence `id` into *st (the caller's; release with tb_runner_seq_state_release).
 * Returns 0, TB_ENOENT or TB_ENOMEM.  The sequence runs on: cancel it to move it. */
int tb_runner_export(tb_runner_t *self, uint64_t id, struct tb_runner_seq_state *st);

/* Queues a sequence exported by tb_runner_export (from a runner of the same model): it
 * recomputes the cache for its tokens and continues with the sampling state it had, counting
 * the tokens it generated before against max_tokens.  `st` is borrowed for the call; `user` is
 * handed back in outputs.  Returns what tb_runner_submit returns. */
int tb_runner_import(tb_runner_t *self, const struct tb_runner_seq_state *st, void *user,
                     uint64_t *id);

/* Geometry and parts, borrowed for the runner's life. */
uint32_t tb_runner_vocab(const tb_runner_t *self);
uint32_t tb_runner_context(const tb_runner_t *self); /* the effective context length */
uint32_t tb_runner_n_blocks(const tb_runner_t *self);
size_t tb_runner_block_bytes(const tb_runner_t *self);
tb_backend_t *tb_runner_backend(const tb_runner_t *self);
const tb_kv_manager_t *tb_runner_kv(const tb_runner_t *self); /* for KV snapshots */
const struct tb_backend_ops *tb_runner_ops(const tb_runner_t *self);

/* The message of the last failed call (lowercase, no trailing period); "" after success.
 * Borrowed until the next call. */
const char *tb_runner_errmsg(const tb_runner_t *self);

#ifdef __cplusplus
}
#endif

#endif /* TB_RUNNER_H */
