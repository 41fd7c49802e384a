/*
 * tb_model.h - a loaded decoder-only transformer: its hyper-parameters, tokenizer facts,
 * generation defaults and weight tensors, from a Hugging Face folder or a GGUF v3 file.
 *
 * Supported: the Llama family as transformers describes it (Llama 2/3 incl. Llama-3 RoPE
 * scaling, TinyLlama, Mistral-style, Qwen2-style QKV bias), Gemma 2 / Gemma 3 and Phi-3 (their
 * per-family settings below, per-layer windows), Qwen3 (per-head q/k norms) and the mixtures of
 * experts Mixtral, Qwen3-MoE and Qwen2-MoE (routed experts, shared expert), MHA or GQA, tied or
 * untied embeddings, weights in F32/F16/BF16 (both sources) and the GGUF block types
 * (docs/models.md).  Anything else is
 * refused with TB_EMODEL and a message naming the file, the key and the value.
 *
 * Weights stay in the file mappings: a tensor's `data` points into the mmap.  The only copies
 * are of tensors whose bytes are not aligned to their element size in the file (possible in a
 * safetensors file with an odd header length), so that engines may always load F32 with float
 * loads; `tb_model_copied_bytes` says how much was copied.
 *
 * Every tensor is checked against the parameters: the set of tensors must be complete (no
 * missing, no unknown), shapes must match, dtypes must be supported.
 *
 * Thread-safety: a tb_model_t is immutable after open; any number of threads may read it.
 */
#ifndef TB_MODEL_H
#define TB_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_model tb_model_t;

typedef enum { TB_MODEL_FORMAT_HF = 0, TB_MODEL_FORMAT_GGUF = 1 } tb_model_format_t;

/* How rotary embedding pairs dimensions inside a head of size d:
 *   NEOX ("rotate half", the layout of HF weights): dimension i pairs with i + d/2, i < d/2;
 *   INTERLEAVED (llama.cpp's layout for GGUF llama, whose converter permutes the Q/K rows):
 *   dimension 2i pairs with 2i + 1.
 * Either way pair i rotates by angle pos * inv_freq[i] (see tb_model_rope_inv_freq). */
typedef enum { TB_ROPE_NEOX = 0, TB_ROPE_INTERLEAVED = 1 } tb_rope_layout_t;

typedef enum {
    TB_ROPE_SCALING_NONE = 0,
    TB_ROPE_SCALING_LINEAR = 1,       /* inv_freq / factor */
    TB_ROPE_SCALING_LLAMA3 = 2,       /* factor, low/high_freq_factor, original_max_positions */
    TB_ROPE_SCALING_FREQ_FACTORS = 3, /* per-pair divisors from the GGUF tensor rope_freqs */
    TB_ROPE_SCALING_LONGROPE = 4      /* Phi-3: per-pair divisors, short and long sets */
} tb_rope_scaling_type_t;

#define TB_MODEL_MAX_LAYERS 1024
#define TB_MODEL_MAX_ROPE_PAIRS 512

/* The feed-forward's gate activation: SwiGLU (Llama) or GeGLU with GELU's tanh approximation
 * (Gemma's gelu_pytorch_tanh). */
typedef enum { TB_FFN_SILU = 0, TB_FFN_GELU_TANH = 1 } tb_ffn_act_t;

struct tb_rope_scaling {
    tb_rope_scaling_type_t type;
    double factor;                   /* LINEAR, LLAMA3 */
    double low_freq_factor;          /* LLAMA3 */
    double high_freq_factor;         /* LLAMA3 */
    uint32_t original_max_positions; /* LLAMA3, LONGROPE */
    /* LONGROPE: divisors of pair i's frequency, rope_dim / 2 each: short for positions below
     * original_max_positions, long from there on; attn_factor multiplies cos and sin (so the
     * scores by its square; 0 or 1: none). */
    double attn_factor;
    double short_factor[TB_MODEL_MAX_ROPE_PAIRS];
    double long_factor[TB_MODEL_MAX_ROPE_PAIRS];
};

typedef enum {
    TB_TOKENIZER_NONE = 0,    /* no tokenizer found next to the model */
    TB_TOKENIZER_HF_JSON = 1, /* tokenizer_path is a tokenizer.json file */
    TB_TOKENIZER_GGUF = 2     /* tokenizer.ggml.* metadata inside the GGUF at tokenizer_path */
} tb_tokenizer_source_t;

/* How a mixture-of-experts layer weighs its top-k experts, from the router logits r:
 *   SOFTMAX_TOPK (Mixtral; Qwen MoE with norm_topk_prob): softmax over the k largest logits;
 *   SOFTMAX_ALL (Qwen MoE without norm_topk_prob): softmax over all experts, the k largest
 *   probabilities kept as they are (they sum to less than 1). */
typedef enum { TB_MOE_SOFTMAX_TOPK = 0, TB_MOE_SOFTMAX_ALL = 1 } tb_moe_gating_t;

/* Sampling defaults from generation_config.json (HF only; GGUF files carry none).  A member
 * holds its "unset" value when the file does not say. */
struct tb_generation_defaults {
    double temperature;        /* < 0: unset */
    double top_p;              /* < 0: unset */
    int32_t top_k;             /* < 0: unset */
    double repetition_penalty; /* < 0: unset */
    int32_t do_sample;         /* -1 unset, 0 greedy, 1 sample */
    int32_t max_new_tokens;    /* 0: unset */
    int32_t max_length;        /* 0: unset (prompt + new tokens) */
};

#define TB_MODEL_MAX_EOS 8

struct tb_model_params {
    char arch[16];            /* "llama", "mistral", "qwen2", "gemma2", "gemma3", "phi3", "qwen3",
                                 "mixtral", ... */
    tb_model_format_t format; /* where it was loaded from */
    uint32_t n_layers;
    uint32_t hidden;       /* model width */
    uint32_t intermediate; /* MLP width */
    uint32_t n_heads;
    uint32_t n_kv_heads;     /* == n_heads for MHA, a divisor of it for GQA */
    uint32_t head_dim;       /* usually hidden / n_heads; even */
    uint32_t vocab;          /* rows of tok_embd and output */
    uint32_t max_context;    /* max_position_embeddings / context_length */
    uint32_t sliding_window; /* 0: none; else attend to positions i - W < j <= i (Mistral) */
    double rms_eps;
    double rope_theta;
    struct tb_rope_scaling rope_scaling;
    tb_rope_layout_t rope_layout;
    bool qkv_bias;        /* bq, bk, bv present in every layer */
    bool tied_embeddings; /* output projection is tok_embd (the "output" tensor aliases it) */
    tb_dtype_t dtype;     /* dtype of layer 0's wq: the model's "main" weight type */
    int32_t bos_id;       /* -1 when unknown */
    int32_t eos_id;       /* first end-of-sequence id, -1 when unknown */
    int32_t pad_id;       /* -1 when unknown */
    int32_t unk_id;       /* -1 when unknown */
    uint32_t n_eos_ids;   /* all ids that end generation (config + generation config) */
    int32_t eos_ids[TB_MODEL_MAX_EOS];
    int32_t add_bos; /* -1 unknown (the tokenizer file decides), 0, 1 */
    int32_t add_eos; /* -1 unknown, 0, 1 */
    struct tb_generation_defaults gen;
    char *chat_template; /* NUL-terminated Jinja source, or NULL when the model has none */
    tb_tokenizer_source_t tokenizer_source;
    char *tokenizer_path; /* tokenizer.json or the .gguf file; NULL with TB_TOKENIZER_NONE */

    /* Per-family settings (Gemma 2/3, Phi-3, Qwen3); the zero values are Llama's behaviour. */
    tb_ffn_act_t ffn_act; /* SwiGLU or GeGLU */
    bool norm_plus_one;   /* every RMSNorm multiplies by (1 + weight) (Gemma in HF layout; the
                              GGUF converter stores 1 + weight) */
    bool post_norms;      /* attn_post_norm / ffn_post_norm normalise the attention and MLP
                              outputs before the residual add (Gemma 2/3) */
    bool qk_norm;         /* q_norm / k_norm: per-head RMSNorm of q and k before RoPE (Gemma 3,
                             Qwen3, Qwen3-MoE); (1 + w) with norm_plus_one, plain w otherwise */
    double embed_scale;   /* 0: none; the embeddings are multiplied by it (Gemma: sqrt(hidden)) */
    double attn_scale;    /* 0: 1 / sqrt(head_dim); else the scores' scale (query_pre_attn_scalar
                              ^ -0.5) */
    double attn_softcap;  /* 0: none; scores become c * tanh(scores / c) (after the scale) */
    double final_softcap; /* 0: none; logits become c * tanh(logits / c) */
    uint32_t rope_dim;    /* dimensions of a head that rotate (partial rotary); = head_dim */
    double rope_theta_local; /* 0: none; the RoPE base of sliding-window layers, which then take
                                no rope scaling (Gemma 3's rope_local_base_freq) */
    /* layer_full[l]: layer l attends globally although sliding_window is set (Gemma's pattern,
     * layer_types).  All false (the zero value): the window, if any, applies to every layer. */
    bool layer_full[TB_MODEL_MAX_LAYERS];

    /* Mixture of experts (docs/models.md); all 0 for a dense model. */
    uint32_t n_experts;           /* 0: dense MLP in every layer; else routed experts */
    uint32_t n_experts_used;      /* top-k: experts per token, 1..n_experts */
    uint32_t expert_intermediate; /* each routed expert's FFN width */
    uint32_t shared_intermediate; /* 0: no shared expert; else its FFN width (Qwen2-MoE) */
    tb_moe_gating_t moe_gating;
    /* layer_dense[l], with n_experts: layer l has the dense MLP (w_gate/w_up/w_down of
     * `intermediate` width, no router, experts or shared expert) instead of the experts (Qwen
     * MoE's mlp_only_layers / decoder_sparse_step; a GGUF layer with ffn_gate/up/down).  All
     * false (the zero value): every layer of an expert model is sparse. */
    bool layer_dense[TB_MODEL_MAX_LAYERS];
};

/* Global tensors. */
typedef enum {
    TB_TENSOR_TOK_EMBD = 0, /* [vocab, hidden] */
    TB_TENSOR_OUT_NORM,     /* [hidden] */
    TB_TENSOR_OUTPUT,       /* [vocab, hidden]; aliases tok_embd when tied */
    TB_TENSOR_ROPE_FREQS,   /* [head_dim / 2] F32, only with TB_ROPE_SCALING_FREQ_FACTORS */
    TB_TENSOR_GLOBAL_COUNT
} tb_tensor_id_t;

/* Whether layer `layer` runs routed experts: the model has experts and the layer is not one of
 * its dense layers (layer_dense).  False for a dense model or a layer out of range. */
bool tb_model_layer_is_moe(const struct tb_model_params *p, uint32_t layer);
/* How many layers run routed experts (0 for a dense model). */
uint32_t tb_model_moe_layer_count(const struct tb_model_params *p);

/* Per-layer tensors (q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim). */
typedef enum {
    TB_LAYER_ATTN_NORM = 0,  /* [hidden] */
    TB_LAYER_WQ,             /* [q_dim, hidden] */
    TB_LAYER_WK,             /* [kv_dim, hidden] */
    TB_LAYER_WV,             /* [kv_dim, hidden] */
    TB_LAYER_BQ,             /* [q_dim], only with qkv_bias */
    TB_LAYER_BK,             /* [kv_dim], only with qkv_bias */
    TB_LAYER_BV,             /* [kv_dim], only with qkv_bias */
    TB_LAYER_WO,             /* [hidden, q_dim] */
    TB_LAYER_FFN_NORM,       /* [hidden] */
    TB_LAYER_W_GATE,         /* [intermediate, hidden]: the dense MLP (dense layers only) */
    TB_LAYER_W_UP,           /* [intermediate, hidden] */
    TB_LAYER_W_DOWN,         /* [hidden, intermediate] */
    TB_LAYER_ATTN_POST_NORM, /* [hidden], only with post_norms */
    TB_LAYER_FFN_POST_NORM,  /* [hidden], only with post_norms */
    TB_LAYER_Q_NORM,         /* [head_dim], only with qk_norm */
    TB_LAYER_K_NORM,         /* [head_dim], only with qk_norm */
    TB_LAYER_ROUTER,         /* [n_experts, hidden], only in expert layers (replaces w_gate..) */
    TB_LAYER_SH_GATE,        /* [shared_intermediate, hidden], only with a shared expert */
    TB_LAYER_SH_UP,          /* [shared_intermediate, hidden] */
    TB_LAYER_SH_DOWN,        /* [hidden, shared_intermediate] */
    TB_LAYER_SH_GATE_INP,    /* [hidden]: the shared expert's sigmoid gate (a 1-row matrix) */
    TB_LAYER_TENSOR_COUNT
} tb_layer_tensor_t;

/* Each routed expert's FFN (n_experts per layer): [expert_intermediate, hidden] for gate and up,
 * [hidden, expert_intermediate] for down.  A GGUF file stores them as 3-D tensors (one per kind
 * and layer); each expert is then a 2-D slice of it. */
typedef enum {
    TB_EXPERT_GATE = 0,
    TB_EXPERT_UP,
    TB_EXPERT_DOWN,
    TB_EXPERT_TENSOR_COUNT
} tb_expert_tensor_t;

/* One weight tensor.  Matrices are row-major with rows = output features and cols = input
 * features (y = W x); vectors have n_dims 1, rows 1 and cols = length.  For quantized dtypes
 * each row is cols / 32 blocks.  `data` is borrowed from the model, aligned to at least the
 * element size (2 for the block types, whose blocks start with an f16). */
struct tb_tensor {
    char name[40];   /* canonical: "tok_embd", "layers.3.wq", "layers.3.experts.7.w_up" ... */
    char source[96]; /* the name in the file ("model.layers.3.self_attn.q_proj.weight") */
    tb_dtype_t dtype;
    uint32_t n_dims; /* 1 or 2 */
    uint64_t rows;
    uint64_t cols;
    uint64_t row_bytes; /* bytes per row */
    uint64_t size;      /* rows * row_bytes */
    const void *data;
};

/* Opens `path`: a Hugging Face folder (config.json + model.safetensors or
 * model.safetensors.index.json, optional generation_config.json, tokenizer_config.json,
 * tokenizer.json, chat_template.jinja) or a .gguf file.  On success returns 0 and *out is owned
 * by the caller (close with tb_model_close).  On failure returns a negative TB_E* code
 * (TB_ENOENT when the path does not exist, TB_EMODEL for a bad or unsupported model, TB_ENOMEM)
 * with a message in `err`, and *out is NULL. */
int tb_model_open(const char *path, tb_model_t **out, char *err, size_t err_len);

/* Unmaps and frees everything; sets *m_p to NULL; accepts NULL.  Every pointer obtained from
 * the model (params strings, tensors, data) dies with it. */
void tb_model_close(tb_model_t **m_p);

/* Borrowed until close. */
const struct tb_model_params *tb_model_params(const tb_model_t *m);

/* A global tensor, or NULL when absent (ROPE_FREQS unless FREQ_FACTORS).  Borrowed. */
const struct tb_tensor *tb_model_tensor(const tb_model_t *m, tb_tensor_id_t id);

/* A layer's tensor, or NULL when absent (biases without qkv_bias) or out of range.  Borrowed. */
const struct tb_tensor *tb_model_layer_tensor(const tb_model_t *m, uint32_t layer,
                                              tb_layer_tensor_t t);

/* Expert `e`'s tensor of a mixture-of-experts layer, or NULL (a dense model or layer, out of
 * range).  Borrowed. */
const struct tb_tensor *tb_model_expert_tensor(const tb_model_t *m, uint32_t layer, uint32_t e,
                                               tb_expert_tensor_t t);

/* All present tensors, globals first, then layer by layer, then the experts layer by layer
 * (the aliased output included). */
size_t tb_model_tensor_count(const tb_model_t *m);
const struct tb_tensor *tb_model_tensor_at(const tb_model_t *m, size_t idx);
/* By canonical name, NULL when absent. */
const struct tb_tensor *tb_model_find_tensor(const tb_model_t *m, const char *name);

/* Fills out[0 .. head_dim/2) with the rotary inverse frequencies after scaling:
 * theta^(-2i/head_dim), divided per the rope scaling.  Returns 0, or TB_EINVAL when
 * n != head_dim / 2. */
int tb_model_rope_inv_freq(const tb_model_t *m, double *out, size_t n);

/* Layer `layer`'s attention: its window (0: none; params.sliding_window unless the layer is
 * marked full) and its rotary inverse frequencies (rope_dim / 2 values in out; n must equal
 * that): a sliding layer of a model with rope_theta_local uses that base unscaled, others as
 * tb_model_rope_inv_freq.  With LONGROPE, `long_factors` picks the long set (positions from
 * original_max_positions on); otherwise it is ignored.  0, or TB_EINVAL for a bad n/layer. */
uint32_t tb_model_layer_window(const tb_model_t *m, uint32_t layer);
int tb_model_layer_rope_inv_freq(const tb_model_t *m, uint32_t layer, bool long_factors,
                                 double *out, size_t n);

/* The per-family settings a model uses beyond Llama's layer (GeGLU, (1 + w) norms, post-norms,
 * q/k norms (Gemma 3's and Qwen3's), embedding or score scale, soft-caps, partial rotary, local
 * RoPE base, per-layer windows, LongRoPE, a mixture of experts, dense layers among its expert
 * layers), as a comma-separated list in buf ("" when none; may be NULL); returns how many.  An
 * engine that implements only Llama's layer refuses a model with any, naming them. */
int tb_model_params_family_features(const struct tb_model_params *p, char *buf, size_t len);

/* Total bytes of distinct weight data, and how many of them had to be copied for alignment. */
uint64_t tb_model_weight_bytes(const tb_model_t *m);
uint64_t tb_model_copied_bytes(const tb_model_t *m);

/* Parameter structs: init sets every "unknown" value; release frees the strings (and sets them
 * NULL).  Used by the loaders and by tests that fill params by hand. */
void tb_model_params_init(struct tb_model_params *p);
void tb_model_params_release(struct tb_model_params *p);
/* Marks the layers l with l % period == period - 1 full attention (Gemma's pattern: every
 * period-th layer global, the others sliding); period 0 or 1 marks none. */
void tb_model_set_window_pattern(struct tb_model_params *p, uint32_t period);

/* Names for printing: "neox"/"interleaved", "none"/"linear"/"llama3"/"freq_factors",
 * "hf"/"gguf", "none"/"hf_json"/"gguf". */
const char *tb_rope_layout_name(tb_rope_layout_t l);
const char *tb_rope_scaling_name(tb_rope_scaling_type_t t);
const char *tb_model_format_name(tb_model_format_t f);
const char *tb_tokenizer_source_name(tb_tokenizer_source_t s);
const char *tb_layer_tensor_name(tb_layer_tensor_t t);
const char *tb_tensor_id_name(tb_tensor_id_t id);
const char *tb_expert_tensor_name(tb_expert_tensor_t t); /* "w_gate", "w_up", "w_down" */
const char *tb_moe_gating_name(tb_moe_gating_t g);       /* "softmax_topk", "softmax_all" */

/* True when the `n` bytes at `p` lie in the mapping of a GGUF model's file (not a copy), so
 * that an engine which has made its own copy of them may release the pages
 * (madvise(MADV_DONTNEED): they would read back from the file). */
bool tb_model_in_file_map(const tb_model_t *m, const void *p, uint64_t n);

#ifdef __cplusplus
}
#endif

#endif /* TB_MODEL_H */
