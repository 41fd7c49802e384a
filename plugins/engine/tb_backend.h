/*
 * tb_backend.h - the line between what engine flavours share and what they do not.
 *
 * Shared (plugins/engine/, libtb_engine.a): the runner (tb_runner.h) over the scheduler
 * (tb_scheduler.h), the KV block manager (tb_kv_manager.h) and the sampler (tb_sampler.h); the
 * bus glue (tb_engine.h: requests, cancellation, streaming, load and KV events); the model files
 * (plugins/common/tb_model.h).
 * Per flavour (plugins/engine/cpu/, plugins/engine/cuda/, each its own library and plugin): a
 * backend, i.e. the memory of the KV cache and the forward pass over a scheduler plan, and the
 * flavour's own config keys.  A flavour's plugin.c declares its backend ops and keys
 * (struct tb_engine_flavour); nothing above this line knows about thread pools, SIMD or
 * devices.
 *
 * The contract of a forward pass: for every token of the plan, in order, compute the layer
 * stack at its position, writing its keys and values into KV slot plan->slots[i] of every layer
 * before attention reads them; attention for a token of entry e reads slots of e's block table
 * at positions 0..its own position (causal).  For each entry with need_logits, write the logits
 * of its last token (vocab floats) as the next row of `logits`, in plan order.
 */
#ifndef TB_BACKEND_H
#define TB_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_model.h"
#include "tb_scheduler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_backend tb_backend_t;

/* What the serving loop asks of a backend. */
struct tb_backend_config {
    uint32_t block_size;       /* tokens per KV block */
    int64_t kv_budget_bytes;   /* memory for the KV cache: the backend derives n_blocks from it */
    uint32_t max_batch_tokens; /* largest plan->n_tokens the backend must accept */
    uint32_t max_batch_seqs;   /* largest plan->n_seqs */
    bool kv_f16;               /* keys and values stored as f16 (else f32) */
    const void *flavour;       /* the flavour's own config struct (the values of the extra keys
                                 its plugin declares, e.g. the CPU's threads), borrowed for
                                 create; NULL: the flavour's defaults */
};

struct tb_backend_ops {
    const char *name; /* "cpu", "cuda" */
    /* Prepares the model for this device and allocates the KV cache within the budget.  `model`
     * is borrowed and outlives the backend.  On success *out is the caller's and *n_blocks says
     * how many KV blocks fit.  On failure a TB_E* code and `err`. */
    int (*create)(const tb_model_t *model, const struct tb_backend_config *cfg,
                  tb_backend_t **out, uint32_t *n_blocks, char *err, size_t err_len);
    /* Runs `plan` (see above); `logits` has room for plan->n_logits * vocab floats.  0, or a
     * TB_E* code with `err` (the serving loop then aborts the step). */
    int (*forward)(tb_backend_t *b, const struct tb_sched_plan *plan, float *logits, char *err,
                   size_t err_len);
    /* Bytes one KV block takes (all layers, keys and values), for sizing and metrics. */
    size_t (*block_bytes)(const tb_backend_t *b);
    void (*destroy)(tb_backend_t **b_p);
    /* Optional (NULL: nothing to add): writes a one-line account of how the backend runs the
     * model (instruction set, threads, memory it allocated beyond the KV cache), for the
     * engine's start log line. */
    void (*describe)(const tb_backend_t *b, char *buf, size_t len);
};

#ifdef __cplusplus
}
#endif

#endif /* TB_BACKEND_H */
