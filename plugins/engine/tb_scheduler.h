/*
 * tb_scheduler.h - continuous batching over the paged KV cache.
 *
 * Requests wait in a FIFO queue.  Each step builds one batch (a plan) that the flavour's forward
 * pass executes, within two budgets: `max_batch_tokens` tokens and `max_batch_seqs` running
 * sequences.  Sequences join and leave the running set at every step.  The plan is filled in
 * three passes:
 *   1. running sequences that decode (one token each), oldest first;
 *   2. running sequences still in their prefill, oldest first, each given as many of its
 *      remaining tokens as the budget and the cache allow (chunked prefill: a long prompt is
 *      cut into chunks across steps and never stalls the decodes of pass 1);
 *   3. waiting requests, in order, while the budgets last and blocks for their first chunk are
 *      free; a new request first takes whatever prefix of its tokens the KV manager has cached.
 *      No request is admitted in a step that had to preempt.
 * Preemption: when pass 1 or 2 needs a block and none is free, the most recently admitted
 * running sequence not yet in this step's plan is preempted: its blocks are returned (hashed
 * ones stay cached, so its recompute is usually a prefix hit), its sampling state is kept, and
 * it goes back to the front of the queue to recompute prompt + generated tokens.  A decode may
 * preempt itself when it is the newest; the oldest sequence is never preempted for a younger
 * one.  A prefill chunk only preempts sequences younger than itself and otherwise shrinks to
 * the free blocks.  Nothing is lost: a preempted sequence continues exactly where it stopped.
 * Tokens never depend on this: a sequence's tokens are a function of its own history and its
 * sampler's state, whatever the batch, the chunking, the prefix hits or the preemptions.
 *
 * The engine's loop:
 *     tb_scheduler_step(s, &plan);            // plan->n_seqs may be 0: idle
 *     forward pass over plan->tokens / positions / slots, per-entry block tables;
 *     for each entry with need_logits: tb_sampler_sample(sampler, e->sampler, row, &sample);
 *     tb_scheduler_complete(s, sampled_tokens, &outs, &n_outs);   // stream outs[i]
 * (tb_scheduler_abort_step instead of complete when the forward pass failed.)
 *
 * Limits: prompts must leave room for one generated token within min(max_model_len, the
 * cache's token slots) (TB_ECONTEXT, TB_E2BIG); at most `max_seqs` requests live at once
 * (TB_EOVERLOAD).  A sequence ends with TB_FINISH_STOP on an end-of-sequence id (unless
 * ignore_eos) or one of its stop ids, once it has min_tokens tokens; with TB_FINISH_LENGTH at
 * max_tokens or when it fills the context (or the whole cache).
 *
 * Cancellation (tb_scheduler_cancel) returns the sequence's blocks at once.  Load figures
 * (tb_scheduler_get_load) feed the bus's load events; the KV manager's event queue its KV
 * events.
 *
 * One scheduler per KV manager: it alone takes and returns blocks (the owner may still drain
 * the manager's events and read its usage).
 *
 * Not thread-safe: one thread (the engine's scheduling loop) calls everything.  No I/O.
 */
#ifndef TB_SCHEDULER_H
#define TB_SCHEDULER_H

#include "tb_kv_manager.h"
#include "tb_sampler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_scheduler tb_scheduler_t;

/* Configuration; fill with tb_sched_config_init, then override. */
struct tb_sched_config {
    uint32_t max_batch_seqs;   /* running sequences at most (the batch size), default 64 */
    uint32_t max_batch_tokens; /* tokens per step at most, default 2048 */
    uint32_t max_seqs;         /* live requests (running + waiting) at most, default 1024 */
    uint32_t max_model_len;    /* the model's context length in tokens (must be set, >= 2) */
    bool chunked_prefill;      /* cut prefills into chunks (default on); off: a prefill runs
                                  whole, so max_batch_tokens must cover a full context */
};

/* Fills `cfg` with the defaults above; max_model_len 0 (the caller must set it). */
void tb_sched_config_init(struct tb_sched_config *cfg);

enum tb_finish_reason {
    TB_FINISH_NONE = 0,   /* still running */
    TB_FINISH_STOP = 1,   /* an end-of-sequence id or a stop id (the output's token) */
    TB_FINISH_LENGTH = 2, /* max_tokens, the context length or the whole cache */
    TB_FINISH_ERROR = 3,  /* the caller reported no valid token for it (sampling failed) */
};

/* A new request.  Borrowed by tb_scheduler_submit for the call. */
struct tb_sched_request {
    uint64_t id;                             /* unique among live requests */
    const int32_t *prompt;                   /* token ids, each < the vocabulary size */
    uint32_t n_prompt;                       /* >= 1 */
    const struct tb_sampling_params *params; /* after defaults; validated here */
    void *user;                              /* the caller's, handed back in plans/outputs */
    /* A sequence resumed elsewhere (migration): the last n_generated tokens of `prompt` were
     * generated before; they count against max_tokens, min_tokens and the penalties, and
     * `rng` (NULL: seed from params) is the sampling generator's state to go on from. */
    uint32_t n_generated;
    const struct tb_rng *rng;
};

/* One sequence's part of a plan.  Borrowed, valid until the next step, complete or abort. */
struct tb_sched_entry {
    uint64_t id;
    void *user;
    tb_sampler_seq_t *sampler;   /* the sequence's sampling state, for tb_sampler_sample */
    uint32_t start;              /* its tokens are plan->tokens[start, start + n_tokens) */
    uint32_t n_tokens;           /* tokens to run this step, >= 1 */
    uint32_t pos;                /* position of its first token (positions are consecutive) */
    uint32_t n_ctx;              /* pos + n_tokens: tokens attention reads after the writes */
    const uint32_t *block_table; /* the sequence's blocks, covering n_ctx slots */
    uint32_t n_blocks;
    bool need_logits; /* sample from the last token's logits after this step
                         (a decode or the last chunk of a prefill) */
};

/* A step's batch.  Borrowed, valid until the next step, complete or abort. */
struct tb_sched_plan {
    uint32_t n_seqs;                   /* entries; 0 when idle */
    const struct tb_sched_entry *seqs; /* decodes first, then prefill chunks */
    uint32_t n_tokens;                 /* total tokens, <= max_batch_tokens */
    const int32_t *tokens;             /* [n_tokens] token ids, entry after entry */
    const uint32_t *positions;         /* [n_tokens] their positions in their sequences */
    const uint32_t *slots;             /* [n_tokens] KV slot each token's keys and values go
                                          to: block * block_size + position % block_size */
    uint32_t n_logits;                 /* entries with need_logits */
    uint32_t n_preempted;              /* sequences preempted while building this plan */
};

/* What a step did to one sequence that got a token.  Borrowed, valid until the next call. */
struct tb_sched_output {
    uint64_t id;
    void *user;
    int32_t token;        /* the token appended (-1 with TB_FINISH_ERROR) */
    uint32_t n_generated; /* tokens generated so far, this one included */
    uint32_t n_prompt;
    uint32_t n_cached;            /* prompt tokens its first admission found cached */
    enum tb_finish_reason finish; /* TB_FINISH_NONE while it runs on; otherwise it is gone */
};

/* Load figures for the bus and metrics. */
struct tb_sched_load {
    uint32_t running; /* sequences admitted and holding blocks */
    uint32_t waiting; /* queued, preempted ones included */
    uint32_t kv_used_blocks;
    uint32_t kv_total_blocks;
    double kv_usage;              /* kv_used_blocks / kv_total_blocks */
    uint64_t steps;               /* plans with at least one sequence, ever */
    uint64_t preemptions;         /* ever */
    uint64_t prefix_query_tokens; /* tokens looked up in the prefix cache, ever */
    uint64_t prefix_hit_tokens;   /* of those, found cached */
};

/* Creates a scheduler over `kv` and `sampler`, both borrowed: they must outlive it and belong
 * to the same thread.  `cfg` is borrowed for the call.  On success *out is the caller's;
 * destroy with tb_scheduler_destroy.  Errors: TB_ECONFIG (message in `err`, may be NULL, of
 * `err_len` bytes), TB_ENOMEM. */
int tb_scheduler_new(const struct tb_sched_config *cfg, tb_kv_manager_t *kv,
                     tb_sampler_t *sampler, tb_scheduler_t **out, char *err, size_t err_len);

/* Destroys the scheduler, returning every sequence's blocks, and sets *self_p to NULL;
 * NULL-safe. */
void tb_scheduler_destroy(tb_scheduler_t **self_p);

/* Queues a request.  Copies what it needs from `req`.  Returns 0, or: TB_EINVAL (empty prompt,
 * a token outside the vocabulary, invalid sampling parameters), TB_EEXIST (the id is live),
 * TB_EOVERLOAD (max_seqs requests live), TB_ECONTEXT (prompt too long for the context),
 * TB_E2BIG (prompt too long for the whole KV cache), TB_ENOMEM; the message is in
 * tb_scheduler_errmsg. */
int tb_scheduler_submit(tb_scheduler_t *self, const struct tb_sched_request *req);

/* Ends request `id` now: returns its blocks, drops it from the queue or the running set and
 * reports nothing more for it.  If the pending plan holds it, its entry (and sampler state)
 * stays readable until complete/abort, which skip it.  Returns 0 or TB_ENOENT. */
int tb_scheduler_cancel(tb_scheduler_t *self, uint64_t id);

/* Builds the next plan; *plan is borrowed until complete/abort.  Returns 0 (an empty plan when
 * there is nothing to run) or TB_EBUSY when the previous non-empty plan was neither completed
 * nor aborted.  Allocates nothing. */
int tb_scheduler_step(tb_scheduler_t *self, const struct tb_sched_plan **plan);

/* Records the pending plan as executed.  `sampled[i]` is the token sampled for plan entry i
 * (read only where need_logits; may be NULL when no entry needs logits); a token outside the
 * vocabulary ends that sequence with TB_FINISH_ERROR.  The caller must already have recorded
 * the tokens in the sequences' sampler states (tb_sampler_sample does; otherwise
 * tb_sampler_seq_accept).  Appends the tokens, registers newly full blocks for prefix reuse,
 * ends finished sequences and returns their blocks.  *outs / *n_outs receive one output per
 * entry that got a token, in plan order, borrowed until the next call.  Returns 0 or TB_EINVAL
 * when no plan is pending. */
int tb_scheduler_complete(tb_scheduler_t *self, const int32_t *sampled,
                          const struct tb_sched_output **outs, uint32_t *n_outs);

/* Forgets the pending plan as if it never ran (the forward pass failed): its sequences run
 * those tokens again in a later step.  No-op without a pending plan. */
void tb_scheduler_abort_step(tb_scheduler_t *self);

/* True while any request is running or waiting. */
bool tb_scheduler_has_work(const tb_scheduler_t *self);

/* Fills *out with the current load. */
void tb_scheduler_get_load(const tb_scheduler_t *self, struct tb_sched_load *out);

/* The token ids of live request `id` (prompt then generated), borrowed until the next call
 * that changes it; *n receives the count.  NULL when `id` is not live. */
const int32_t *tb_scheduler_seq_tokens(const tb_scheduler_t *self, uint64_t id, uint32_t *n);

/* Live request `id`'s prompt length and sampling state (for migration), borrowed until the
 * next call that changes it; NULL when `id` is not live. */
const tb_sampler_seq_t *tb_scheduler_seq_sampler(const tb_scheduler_t *self, uint64_t id,
                                                 uint32_t *n_prompt);

/* The message of the last failed call (lowercase, no trailing period); "" after success.
 * Borrowed until the next call. */
const char *tb_scheduler_errmsg(const tb_scheduler_t *self);

#ifdef __cplusplus
}
#endif

#endif /* TB_SCHEDULER_H */
