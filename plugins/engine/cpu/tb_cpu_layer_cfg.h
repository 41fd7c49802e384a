/*
 * tb_cpu_layer_cfg.h - the per-layer attention settings of the CPU backend (window, rotary
 * frequencies, soft-cap) and the per-row ops that the Gemma and Phi-3 families add to the
 * Llama forward pass (GeGLU, soft-capping, scaling).  Built once per backend from the model
 * (tb_model_layer_window, tb_model_layer_rope_inv_freq), immutable afterwards.
 */
#ifndef TB_CPU_LAYER_CFG_H
#define TB_CPU_LAYER_CFG_H

#include <stdbool.h>
#include <stdint.h>

#include "tb_model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tb_cpu_layer_cfg {
    int window;                 /* 0: full attention; else positions (pos - window, pos] */
    const float *inv_freq;      /* rot_dim / 2 frequencies (short set with LongRoPE) */
    const float *inv_freq_long; /* LongRoPE's long set (positions >= long_from), or NULL */
};

struct tb_cpu_layer_cfgs {
    uint32_t n_layers;
    struct tb_cpu_layer_cfg *layers; /* [n_layers] */
    float *freqs;                    /* owned storage of every frequency array */
    int rot_dim;                     /* rotating dimensions of a head (rope_dim) */
    int long_from;       /* LongRoPE: first position of the long set; else INT32_MAX */
    float attn_scale;    /* score scale (with LongRoPE's factor squared); 0: default */
    float attn_softcap;  /* 0: none */
    float final_softcap; /* 0: none */
    float embed_scale;   /* 0: none */
};

/* Fills *c from `model`.  0, TB_ENOMEM or TB_EMODEL (frequencies refused), with `err`. */
int tb_cpu_layer_cfgs_init(struct tb_cpu_layer_cfgs *c, const tb_model_t *model, char *err,
                           size_t err_len);
void tb_cpu_layer_cfgs_release(struct tb_cpu_layer_cfgs *c);

/* out[i] = gelu_tanh(gate[i]) * up[i], GELU's tanh approximation
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); out may equal gate or up. */
void tb_cpu_gelu_tanh_mul(float *out, const float *gate, const float *up, int64_t n);

/* x[i] = cap * tanh(x[i] / cap) for n values; cap > 0. */
void tb_cpu_softcap(float *x, int64_t n, float cap);

/* x[i] *= a for n values. */
void tb_cpu_scale(float *x, int64_t n, float a);

#ifdef __cplusplus
}
#endif

#endif /* TB_CPU_LAYER_CFG_H */
