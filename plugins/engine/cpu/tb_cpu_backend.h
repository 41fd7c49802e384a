/*
 * tb_cpu_backend.h - the CPU engine flavour's backend: the Llama forward pass over a scheduler
 * plan, on the kernels of tb_cpu_kernels.h, with the paged KV cache in host memory.
 *
 * The backend implements tb_backend.h (see there for the forward-pass contract); the shared
 * serving loop reaches it only through `tb_cpu_backend_ops`.  What it does:
 *  - create: a thread pool of `threads` threads (struct tb_cpu_config below; the caller counted
 *    as one), a kernel context, the KV cache (every layer's keys and values, f16 or f32, in
 *    whole blocks of cfg->block_size token slots: as many blocks as cfg->kv_budget_bytes holds)
 *    and the scratch of one step sized for cfg->max_batch_tokens.  Weight matrices stay in the model's file
 *    mapping in their stored dtype (F32, F16, BF16, Q8_0, Q4_0); only the 1-D tensors (norms,
 *    biases: a few KB per layer) are converted to f32 copies.  Embeddings are decoded row by row
 *    for the plan's tokens.
 *  - forward: embedding rows; per layer RMSNorm, the Q/K/V matmuls for every token of the plan
 *    at once (each weight read once per step), optional Q/K/V biases, RoPE at each token's
 *    position in the model's layout and with its scaled inverse frequencies, K/V written to the
 *    tokens' slots, paged attention per token over its entry's block table (causal), output
 *    projection, residual, RMSNorm, SwiGLU MLP, residual; then the final norm and the LM head
 *    only for the last token of the entries with need_logits.
 *  - Batch invariance: a token's logits are bitwise the same whatever else is in the plan and
 *    wherever its rows sit: every kernel computes a row independently of the others in a fixed
 *    order (docs/engine-cpu.md).
 *
 * Thread-safety: one backend is driven by one thread at a time (the engine's loop); its pool's
 * workers run only inside forward.  The model must outlive the backend.
 */
#ifndef TB_CPU_BACKEND_H
#define TB_CPU_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_backend.h"
#include "tb_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The CPU flavour's own config: the keys its plugin adds to the engine's table
 * (tb_backend_config.flavour points at one; NULL means the defaults). */
#define TB_CPU_MAX_THREADS 1024
struct tb_cpu_config {
    int64_t threads; /* compute threads, the caller's included; 0 (default): one per CPU */
};

/* The "cpu" backend.  create's errors: TB_EINVAL (NULL arguments), TB_ECONFIG (a configuration
 * the backend cannot honour: block_size outside 1..256, a budget below one block, zero
 * max_batch_tokens or max_batch_seqs, threads outside 0..TB_CPU_MAX_THREADS), TB_EMODEL (a
 * model these kernels cannot run, e.g. head_dim above 512), TB_ENOTSUP (TB_CPU_ISA asks for an
 * instruction set this CPU lacks), TB_ENOMEM (KV cache or scratch), or pthread errors; `err` says which.  forward's
 * errors: TB_EINVAL for a plan that breaks the contract (a token outside the vocabulary, a slot
 * or block outside the cache, an entry whose range or block table does not fit, more tokens
 * or entries than configured), with the reason in `err`; nothing is written to the cache then. */
extern const struct tb_backend_ops tb_cpu_backend_ops;

/* Bytes one KV block of `block_size` slots takes for `model` (every layer's keys and values,
 * f16 or f32 elements): what create divides the budget by.  0 when block_size is 0.  `model`
 * is borrowed for the call. */
size_t tb_cpu_backend_block_bytes_for(const tb_model_t *model, uint32_t block_size, bool kv_f16);

/* Cumulative figures of a backend, for benchmarks and metrics.  Plain data. */
struct tb_cpu_backend_stats {
    uint64_t forwards;      /* successful forward calls with at least one token */
    uint64_t tokens;        /* plan tokens they processed */
    uint64_t logits_rows;   /* rows of logits they wrote */
    double forward_seconds; /* wall time spent inside those calls */
};

/* Fills *out with the figures of backend `b` (created by tb_cpu_backend_ops.create; a backend
 * of another flavour must not be passed).  Both borrowed for the call. */
void tb_cpu_backend_get_stats(const tb_backend_t *b, struct tb_cpu_backend_stats *out);

/* The instruction set the backend's kernels use ("avx512", "avx2" or "generic"; static
 * storage) and its thread count. */
const char *tb_cpu_backend_isa(const tb_backend_t *b);
int tb_cpu_backend_threads(const tb_backend_t *b);

#ifdef __cplusplus
}
#endif

#endif /* TB_CPU_BACKEND_H */
