/*
 * tb_cpu_layer_cfg.c - per-layer attention settings and the family row ops (see the header).
 */
#include "tb_cpu_layer_cfg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"

#define MAX_PAIRS 512

/* One frequency array of layer l (long set or not) into dst, as floats. */
static int s_freqs(const tb_model_t *model, uint32_t l, bool long_set, float *dst, size_t half)
{
    double f[MAX_PAIRS];
    int rc = tb_model_layer_rope_inv_freq(model, l, long_set, f, half);
    for (size_t i = 0; rc == TB_OK && i < half; i++) {
        dst[i] = (float)f[i];
    }
    return rc;
}

int tb_cpu_layer_cfgs_init(struct tb_cpu_layer_cfgs *c, const tb_model_t *model, char *err,
                           size_t err_len)
{
    memset(c, 0, sizeof *c);
    const struct tb_model_params *p = tb_model_params(model);
    const bool longrope = p->rope_scaling.type == TB_ROPE_SCALING_LONGROPE;
    c->n_layers = p->n_layers;
    c->rot_dim = (int)(p->rope_dim ? p->rope_dim : p->head_dim);
    const size_t half = (size_t)c->rot_dim / 2;
    if (half < 1 || half > MAX_PAIRS) {
        tb_err_set(err, err_len, "rotary dimension %d: the cpu backend supports 2..%d",
                   c->rot_dim, 2 * MAX_PAIRS);
        return TB_EMODEL;
    }
    const size_t per_layer = half * (longrope ? 2 : 1);
    c->layers = calloc(p->n_layers, sizeof *c->layers);
    c->freqs = malloc((size_t)p->n_layers * per_layer * sizeof(float));
    if (!c->layers || !c->freqs) {
        tb_err_set(err, err_len, "out of memory");
        tb_cpu_layer_cfgs_release(c);
        return TB_ENOMEM;
    }
    for (uint32_t l = 0; l < p->n_layers; l++) {
        float *f = c->freqs + (size_t)l * per_layer;
        int rc = s_freqs(model, l, false, f, half);
        if (rc == TB_OK && longrope) {
            rc = s_freqs(model, l, true, f + half, half);
        }
        if (rc != TB_OK) {
            tb_err_set(err, err_len, "cannot compute the rotary frequencies of layer %u", l);
            tb_cpu_layer_cfgs_release(c);
            return TB_EMODEL;
        }
        c->layers[l] = (struct tb_cpu_layer_cfg){
            .window = (int)tb_model_layer_window(model, l),
            .inv_freq = f,
            .inv_freq_long = longrope ? f + half : NULL,
        };
    }
    c->long_from = longrope ? (int)p->rope_scaling.original_max_positions : INT32_MAX;
    double scale = p->attn_scale > 0 ? p->attn_scale : 1.0 / sqrt((double)p->head_dim);
    double af = p->rope_scaling.attn_factor;
    if (longrope && af > 0) {
        scale *= af * af; /* cos and sin both carry the factor: q.k by its square */
    }
    c->attn_scale = (float)scale;
    c->attn_softcap = (float)p->attn_softcap;
    c->final_softcap = (float)p->final_softcap;
    c->embed_scale = (float)p->embed_scale;
    return TB_OK;
}

void tb_cpu_layer_cfgs_release(struct tb_cpu_layer_cfgs *c)
{
    free(c->layers);
    free(c->freqs);
    c->layers = NULL;
    c->freqs = NULL;
}

void tb_cpu_gelu_tanh_mul(float *out, const float *gate, const float *up, int64_t n)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        float x = gate[i];
        float g = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
        out[i] = g * up[i];
    }
}

void tb_cpu_softcap(float *x, int64_t n, float cap)
{
    const float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; i++) {
        x[i] = cap * tanhf(x[i] * inv);
    }
}

void tb_cpu_scale(float *x, int64_t n, float a)
{
    for (int64_t i = 0; i < n; i++) {
        x[i] *= a;
    }
}
