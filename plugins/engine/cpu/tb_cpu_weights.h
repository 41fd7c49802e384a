/*
 * tb_cpu_weights.h - a model's tensors as the CPU kernels take them: each weight matrix as a
 * struct tb_cpu_weight pointing into the model's file mapping in its stored dtype (nothing is
 * dequantized), and each 1-D tensor (norms, biases) as an f32 copy, since the per-row ops take
 * f32 vectors and these are a few KB per layer.  With TB_CPU_WEIGHTS_PACK, Q4_0, Q8_0, Q4_K,
 * Q5_K, Q6_K and IQ4_XS matrices also get their packed copy (tb_cpu_weight_pack: the same quantized
 * values, interleaved 16 rows at a time), all in one allocation about as large as those
 * matrices; the matmuls then read only it, and the pages of the file mapping they came from are
 * released (madvise MADV_DONTNEED; never touched again), so the process holds one copy.  F32,
 * F16 and BF16 matrices are copied there unchanged (same bytes and layout: `data` then points
 * into the allocation) so that the matmuls stream them from huge pages; an output head that is
 * the token embedding stays in the mapping.  The other GGUF block types (Q4_1, Q5_0, Q5_1,
 * IQ4_NL, Q2_K, Q3_K) are used as stored.
 *
 * Thread-safety: immutable after tb_cpu_weights_new; any number of threads may read it.
 */
#ifndef TB_CPU_WEIGHTS_H
#define TB_CPU_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "tb_cpu_kernels.h"
#include "tb_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One transformer layer.  Matrices borrow the model's data; vectors are owned here. */
struct tb_cpu_layer_weights {
    struct tb_cpu_weight wq, wk, wv,
        wo;                            /* [q_dim, hidden], [kv_dim, hidden] x2, [hidden, q_dim] */
    struct tb_cpu_weight w_gate, w_up; /* [intermediate, hidden] */
    struct tb_cpu_weight w_down;       /* [hidden, intermediate] */
    float *attn_norm, *ffn_norm;       /* [hidden] */
    float *bq, *bk, *bv;               /* [q_dim], [kv_dim], [kv_dim]; NULL without biases */
    float *attn_post_norm, *ffn_post_norm; /* [hidden]; NULL without post_norms (Gemma) */
    float *q_norm, *k_norm; /* [head_dim]; NULL without qk_norm (Gemma 3, Qwen3); already (1 + w)
                               with norm_plus_one */
    struct tb_cpu_moe_layer *moe; /* router and experts (owned), or NULL: dense MLP */
};

struct tb_cpu_weights {
    struct tb_cpu_weight tok_embd; /* [vocab, hidden]: decoded one row per token */
    struct tb_cpu_weight output;   /* [vocab, hidden]: the same data as tok_embd when tied */
    float *out_norm;               /* [hidden] */
    uint32_t n_layers;
    struct tb_cpu_layer_weights *layers; /* [n_layers] */
    void *packed; /* the packed copies and the float matrices' copies (owned), or NULL */
    size_t packed_bytes;
    double pack_seconds;   /* time spent packing */
    size_t released_bytes; /* file-mapping pages of packed matrices released (MADV_DONTNEED) */
    uint32_t dtype_tensors[TB_DTYPE_COUNT]; /* how many of the model's tensors each type has */
};

/* Norm vectors hold the factor the kernels multiply by: 1 + weight for a model with
 * norm_plus_one (Gemma's HF layout), the weight otherwise. */

/* Flags of tb_cpu_weights_new. */
#define TB_CPU_WEIGHTS_PACK 1u /* packed copies of Q4_0, Q8_0, Q4_K..Q6_K, IQ4_XS; float copies */

/* The kernels' dtype for a model dtype (every tb_dtype_t has one); TB_ENOTSUP for a value out
 * of range. */
int tb_cpu_weights_dtype(tb_dtype_t dt, tb_cpu_dtype_t *out);

/* Describes `model`'s tensors for the kernels; `flags`: TB_CPU_WEIGHTS_PACK or 0.  `model` is
 * borrowed and must outlive the result.  On success *out is the caller's (free with
 * tb_cpu_weights_destroy).  On failure TB_EMODEL (a tensor missing, mis-shaped or in a dtype the
 * kernels cannot use; the message names it) or TB_ENOMEM, with the message in `err` (may be
 * NULL), and *out is NULL. */
int tb_cpu_weights_new(const tb_model_t *model, unsigned flags, struct tb_cpu_weights **out,
                       char *err, size_t err_len);

/* Tensor `t` (named `name` for messages; NULL: missing) checked against [rows, cols] and
 * described in *w; and an f32 copy of 1-D tensor `t` of n values (*out the caller's). */
int tb_cpu_weights_matrix(const struct tb_tensor *t, const char *name, uint64_t rows,
                          uint64_t cols, struct tb_cpu_weight *w, char *err, size_t err_len);
int tb_cpu_weights_vector(const struct tb_tensor *t, const char *name, uint64_t n, float **out,
                          char *err, size_t err_len);

/* Frees the vectors and the struct; sets *self_p to NULL; accepts NULL. */
void tb_cpu_weights_destroy(struct tb_cpu_weights **self_p);

#ifdef __cplusplus
}
#endif

#endif /* TB_CPU_WEIGHTS_H */
