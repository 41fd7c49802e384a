/*
 * tb_model_internal.h - what the model loaders (tb_model.c, tb_model_hf.c, tb_model_gguf.c)
 * share: the model struct and the helpers that place and check tensors.  Not a public header.
 */
#ifndef TB_MODEL_INTERNAL_H
#define TB_MODEL_INTERNAL_H

#include "tb_gguf.h"
#include "tb_model.h"
#include "tb_safetensors.h"

#define TB_MODEL_MAX_SHARDS 256

struct tb_model {
    struct tb_model_params params;
    struct tb_tensor globals[TB_TENSOR_GLOBAL_COUNT];
    bool has_global[TB_TENSOR_GLOBAL_COUNT];
    struct tb_tensor *layers; /* n_layers * TB_LAYER_TENSOR_COUNT */
    bool *has_layer;
    struct tb_tensor *experts; /* n_layers * n_experts * TB_EXPERT_TENSOR_COUNT, or NULL */
    bool *has_expert;
    const struct tb_tensor **list; /* present tensors, in tb_model_tensor_at order */
    size_t n_list;
    tb_safetensors_t *shards[TB_MODEL_MAX_SHARDS];
    size_t n_shards;
    tb_gguf_t *gguf;
    void **copies; /* aligned copies of misaligned tensors */
    size_t n_copies;
    uint64_t copied_bytes;
    uint64_t weight_bytes;
};

/* Where a file tensor goes: a global id, a layer and kind, or a layer's expert and kind. */
struct tb_slot {
    bool is_layer;
    tb_tensor_id_t global;
    uint32_t layer;
    tb_layer_tensor_t kind;
    bool is_expert; /* with is_layer: expert `expert`'s tensor `ekind` of `layer` */
    uint32_t expert;
    tb_expert_tensor_t ekind;
};

/* Allocates the per-layer arrays once params.n_layers (and n_experts) is known. */
int tb_model_alloc_layers(tb_model_t *m, char *err, size_t err_len);

/* Places one tensor read from a file into `slot`: checks the dtype-implied size against
 * `size`, refuses duplicates, copies misaligned data.  `dims` are rows-first (rows, cols) for
 * n_dims 2 or (len) for n_dims 1.  `source` is the file's name for messages. */
int tb_model_place(tb_model_t *m, const struct tb_slot *slot, const char *source,
                   tb_dtype_t dtype, uint32_t n_dims, const uint64_t *dims, const void *data,
                   uint64_t size, char *err, size_t err_len);

/* After all tensors are placed: resolves tied embeddings, checks completeness and every shape
 * against the params, sets params.dtype and builds the tensor list. */
int tb_model_finish(tb_model_t *m, char *err, size_t err_len);

/* Loaders: fill m->params and place every tensor; tb_model_open calls finish afterwards. */
int tb_model_load_hf(tb_model_t *m, const char *dir, char *err, size_t err_len);
int tb_model_load_gguf(tb_model_t *m, const char *path, char *err, size_t err_len);

/* Per-family parts (tb_model_family.c). */
/* Checks the per-family params (rope_dim, soft-caps, scales, longrope factors). */
int tb_model_check_family(const struct tb_model_params *p, char *err, size_t err_len);
/* Whether a tensor kind belongs to layer `layer` of models with these params: post-norms, q/k
 * norms, the dense MLP (dense layers) or the router and shared expert (expert layers); biases:
 * decided by qkv_bias or the file. */
bool tb_model_layer_tensor_wanted(const struct tb_model_params *p, uint32_t layer,
                                  tb_layer_tensor_t kind);
/* Places a fused matrix (Phi-3's qkv_proj, gate_up_proj) as n row ranges of `rows[i]` rows into
 * layer `layer`'s `kinds[i]`: every part is a view of the file's rows.  The fused shape must be
 * [sum of rows, cols]; a mismatch is refused naming the tensor. */
int tb_model_place_fused(tb_model_t *m, uint32_t layer, const tb_layer_tensor_t *kinds,
                         const uint64_t *rows, size_t n, const char *source, tb_dtype_t dtype,
                         uint32_t n_dims, const uint64_t *dims, const void *data, uint64_t size,
                         char *err, size_t err_len);
/* Frequencies of base `theta` over `dim` rotating dimensions with scaling `s` (LONGROPE: the
 * long set when `long_set`). */
void tb_model_rope_freqs_scaled(const tb_model_t *m, double theta, uint32_t dim,
                                const struct tb_rope_scaling *s, bool long_set, double *out,
                                size_t n);

/* Canonical names. */
void tb_model_slot_name(const struct tb_slot *slot, char *buf, size_t n);

/* Mixture-of-experts parameters (tb_model_moe.c): refuses top-k out of 1..n_experts, expert
 * counts out of range, an expert width of 0. */
int tb_model_check_moe(const struct tb_model_params *p, char *err, size_t err_len);

/* Places a GGUF 3-D expert tensor [n, rows, cols] (rows-first dims) as n 2-D slices into the
 * experts of `slot`'s layer and kind: n must equal params.n_experts. */
int tb_model_place_experts(tb_model_t *m, const struct tb_slot *slot, const char *source,
                           tb_dtype_t dtype, const uint64_t *dims, const void *data,
                           uint64_t size, char *err, size_t err_len);

/* After placement: every expert of every expert layer present and shaped [expert_intermediate,
 * hidden] (gate, up) or [hidden, expert_intermediate] (down); a dense layer holds no expert (the
 * first one present is refused, naming the layer and the file's tensor). */
int tb_model_check_experts(const tb_model_t *m, char *err, size_t err_len);

#endif /* TB_MODEL_INTERNAL_H */
