/*
 * tb_cpu_moe.h - the mixture-of-experts FFN of the CPU backend (Mixtral, Qwen3-MoE, Qwen2-MoE):
 * a layer's router and experts as the kernels take them, and the step that routes every token
 * of a plan to its top-k experts and runs each expert once for all the tokens that chose it.
 * It serves the expert layers; a model's dense layers among them (Qwen MoE's mlp_only_layers)
 * run the backend's dense MLP.
 *
 * The step, for T token rows h (already RMS-normed):
 *   1. router logits r = h Router^T, one matmul for all T tokens;
 *   2. per token the k largest logits (ties: the lower expert index) and their weights: a
 *      softmax over the k chosen logits (TB_MOE_SOFTMAX_TOPK) or the chosen entries of a softmax
 *      over all (TB_MOE_SOFTMAX_ALL);
 *   3. the tokens grouped by expert (counting sort); each expert that some token chose gathers
 *      its tokens' rows and runs gate/up (one call), SiLU(gate) * up and down over them: its
 *      weights are read once per step however many tokens chose it;
 *   4. out[t] = sum over t's experts, in expert index order, of weight * expert output, plus
 *      sigmoid(h . sh_gate_inp) * shared_expert(h) when the model has a shared expert.
 * Every token's output depends on its own row only, summed in a fixed order: batch invariant
 * as the rest of the forward pass (tb_cpu_matmul is).
 *
 * Thread-safety: a tb_cpu_moe_t (the step's scratch) is used by one thread at a time; the layer
 * weights are immutable after creation.
 */
#ifndef TB_CPU_MOE_H
#define TB_CPU_MOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_cpu_kernels.h"
#include "tb_model.h"
#include "tb_threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One layer's experts.  Matrices borrow the model's data; the vector is owned. */
struct tb_cpu_moe_layer {
    uint32_t n_experts;
    struct tb_cpu_weight router;            /* [n_experts, hidden] */
    struct tb_cpu_weight *gate, *up, *down; /* [n_experts] each (owned arrays) */
    bool shared;                            /* a shared expert (Qwen2-MoE) */
    struct tb_cpu_weight sh_gate, sh_up, sh_down;
    float *sh_gate_inp; /* [hidden], with shared */
};

/* Describes layer `l`'s router and experts of `model` (an expert layer: tb_model_layer_is_moe;
 * the dense layers of an expert model take the backend's dense MLP).  On success *out
 * is the caller's (tb_cpu_moe_layer_destroy); else TB_EMODEL / TB_ENOMEM with the message. */
int tb_cpu_moe_layer_new(const tb_model_t *model, uint32_t l, struct tb_cpu_moe_layer **out,
                         char *err, size_t err_len);
void tb_cpu_moe_layer_destroy(struct tb_cpu_moe_layer **self_p);

/* Up to `cap` pointers to the layer's matrices (router, experts, shared expert) into out, for
 * the packing pass; returns how many. */
size_t tb_cpu_moe_layer_matrices(struct tb_cpu_moe_layer *ml, struct tb_cpu_weight **out,
                                 size_t cap);
/* How many matrices a layer of `p`'s has (the cap above). */
size_t tb_cpu_moe_matrix_count(const struct tb_model_params *p);

typedef struct tb_cpu_moe tb_cpu_moe_t;

/* The step's scratch for up to max_tokens tokens of model `p` (n_experts > 0).  TB_ENOMEM. */
int tb_cpu_moe_new(const struct tb_model_params *p, uint32_t max_tokens, tb_cpu_moe_t **out);
void tb_cpu_moe_destroy(tb_cpu_moe_t **self_p);

/* out[t] (T rows of hidden floats, stride hidden) = the layer's MoE FFN of xn[t] (stride
 * hidden), as above.  T <= max_tokens.  Returns TB_OK or the kernels' error. */
int tb_cpu_moe_ffn(tb_cpu_moe_t *self, tb_cpu_kernels_t *kern, tb_threadpool_t *pool,
                   const struct tb_cpu_moe_layer *ml, const float *xn, int T, float *out);

/* Counters of the last call (tests and the benchmark): experts run, and token rows they ran. */
void tb_cpu_moe_last_step(const tb_cpu_moe_t *self, uint32_t *experts_run, uint32_t *rows);

#ifdef __cplusplus
}
#endif

#endif /* TB_CPU_MOE_H */
