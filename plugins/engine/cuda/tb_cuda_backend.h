/*
 * tb_cuda_backend.h - the CUDA engine flavour's backend (tb_backend.h): weights uploaded once to
 * device memory, the paged KV cache in device memory, the Llama forward pass over a scheduler
 * plan on the kernels of tb_cuda_kernels.h, decode steps replayed as CUDA graphs.
 *
 * The same source runs on a GPU (linked with tb_cuda_rt.c and the nvcc-built kernels) and on
 * the host as an emulation (tb_cuda_rt_emu.cpp and the emulated kernels), see
 * docs/engine-cuda.md.  What it does:
 *  - create: finds the device (TB_ENOTSUP "no CUDA device was found (...)" without one),
 *    uploads every weight matrix in its stored format (F32/F16/BF16 as they are; Q8_0/Q4_0
 *    repacked on the device into values + scales; other types are refused by name), the norms
 *    and biases as f32, allocates the scratch of one step for cfg->max_batch_tokens, then the
 *    KV cache (f16 only): gpu_memory_utilization x the device memory still free, or, with
 *    gpu_memory_utilization 0, cfg->kv_budget_bytes.  Out of device memory at any point is
 *    TB_ENOMEM with what was asked and what was free.
 *  - forward, decode steps (every entry one token): per-step data (tokens, positions, slots,
 *    block tables, context lengths) goes into fixed device buffers with one copy, then the
 *    step's kernels run as a CUDA graph captured once per (batch-size bucket, context bucket)
 *    and replayed; the batch is padded to its bucket with rows that write no KV slot and attend
 *    to nothing.  With cuda_graphs off the same launches run directly.
 *  - forward, steps with prefill chunks: run directly; F32/F16/BF16 matrices through cuBLASLt
 *    GEMMs when the step has more than TB_CUDA_GEMM_MIN_TOKENS tokens (f32 accumulation; f16/bf16
 *    weights take their activations rounded to the weight's type), Q8_0/Q4_0 through the
 *    integer GEMV kernels; the decode rows of a mixed step are recomputed with the GEMV kernels
 *    and decode attention, so a decode's results never depend on the step around it.
 *  - Logits rows are copied back to the host, where the shared sampler runs.
 *
 * Thread-safety: one backend is driven by one thread at a time.  The model must outlive it.
 */
#ifndef TB_CUDA_BACKEND_H
#define TB_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_backend.h"
#include "tb_model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TB_CUDA_GEMM_MIN_TOKENS 8 /* steps with more tokens use cuBLASLt for float weights */
#define TB_CUDA_ATTN_SPLIT 128    /* decode attention's split size (tokens) */

/* The CUDA flavour's own config (its plugin's extra keys; NULL: the defaults in brackets). */
struct tb_cuda_config {
    double gpu_memory_utilization; /* share of the free device memory after weights and scratch
                                      for the KV cache; 0: use kv_cache bytes [0 when NULL; the
                                      plugin's default is 0.9] */
    bool cuda_graphs;              /* replay decode steps as CUDA graphs [true] */
    int64_t device;                /* device ordinal [0] */
};

/* The "cuda" backend.  create's errors: TB_EINVAL (NULL arguments), TB_ENOTSUP (no usable
 * device, or cuBLASLt missing), TB_ECONFIG (kv_dtype f32, block_size outside 1..256, a budget
 * below one block), TB_EMODEL (a tensor type or shape the kernels do not cover), TB_ENOMEM (out
 * of device or host memory), TB_EIO (any other CUDA failure); `err` says which, with the CUDA
 * error string.  forward's: TB_EINVAL for a plan that breaks the contract, TB_ENOMEM when the
 * per-step buffers cannot grow, TB_EIO for a CUDA failure. */
extern const struct tb_backend_ops tb_cuda_backend_ops;

/* Cumulative figures, for tests and metrics.  Plain data. */
struct tb_cuda_backend_stats {
    uint64_t forwards;       /* successful forward calls with tokens */
    uint64_t graph_captures; /* decode graphs captured */
    uint64_t graph_replays;  /* decode steps run by replaying a graph */
    uint64_t direct_decodes; /* decode steps run without a graph */
    uint64_t gemm_calls;     /* cuBLASLt GEMMs issued */
    size_t weight_bytes;     /* device memory of the weights */
    size_t kv_bytes;         /* device memory of the KV cache */
    size_t scratch_bytes;    /* device memory of everything else */
    double forward_seconds;  /* wall time inside forward */
};

/* Fills *out for backend `b` (created by tb_cuda_backend_ops.create). */
void tb_cuda_backend_get_stats(const tb_backend_t *b, struct tb_cuda_backend_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* TB_CUDA_BACKEND_H */
