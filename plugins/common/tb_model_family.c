/*
 * tb_model_family.c - what the Gemma 2/3 and Phi-3 families add to the loaded model: checks of
 * their parameters, which per-layer tensors a model carries (also Qwen3's q/k norms and the
 * experts' router and shared expert, per layer: a mixture of experts may have dense layers),
 * fused matrices split into views, the sliding/global layer pattern and the per-layer attention
 * settings engines read (tb_model_layer_window, tb_model_layer_rope_inv_freq, which layers run
 * experts: tb_model_layer_is_moe).  See docs/models.md.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_model_internal.h"

int tb_model_check_family(const struct tb_model_params *p, char *err, size_t err_len)
{
    if (p->rope_dim < 2 || p->rope_dim % 2 != 0 || p->rope_dim > p->head_dim) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "rotary dimension %u must be even and in 2..head_dim (%u)",
                           p->rope_dim, p->head_dim);
    }
    const struct {
        const char *name;
        double v;
    } nonneg[] = {
        {"embedding scale", p->embed_scale},
        {"attention scale", p->attn_scale},
        {"attention logit soft-cap", p->attn_softcap},
        {"final logit soft-cap", p->final_softcap},
        {"local rope theta", p->rope_theta_local},
        {"rope attention factor", p->rope_scaling.attn_factor},
    };
    for (size_t i = 0; i < sizeof nonneg / sizeof nonneg[0]; i++) {
        if (!(nonneg[i].v >= 0 && nonneg[i].v < 1e12)) {
            return tb_err_fail(err, err_len, TB_EMODEL, "%s %g is not a finite number >= 0",
                               nonneg[i].name, nonneg[i].v);
        }
    }
    if (p->ffn_act != TB_FFN_SILU && p->ffn_act != TB_FFN_GELU_TANH) {
        return tb_err_fail(err, err_len, TB_EMODEL, "unknown feed-forward activation %d",
                           (int)p->ffn_act);
    }
    const struct tb_rope_scaling *s = &p->rope_scaling;
    if (s->type == TB_ROPE_SCALING_LONGROPE) {
        if (s->original_max_positions < 1) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "longrope scaling needs original_max_position_embeddings > 0");
        }
        for (uint32_t i = 0; i < p->rope_dim / 2; i++) {
            if (!(s->short_factor[i] > 0 && s->short_factor[i] < 1e12 && s->long_factor[i] > 0 &&
                  s->long_factor[i] < 1e12)) {
                return tb_err_fail(err, err_len, TB_EMODEL,
                                   "longrope factor %u (short %g, long %g) is not a positive "
                                   "number",
                                   i, s->short_factor[i], s->long_factor[i]);
            }
        }
    }
    return 0;
}

bool tb_model_layer_is_moe(const struct tb_model_params *p, uint32_t layer)
{
    return p->n_experts > 0 && layer < p->n_layers && layer < TB_MODEL_MAX_LAYERS &&
           !p->layer_dense[layer];
}

uint32_t tb_model_moe_layer_count(const struct tb_model_params *p)
{
    uint32_t n = 0;
    for (uint32_t l = 0; l < p->n_layers; l++) {
        n += tb_model_layer_is_moe(p, l);
    }
    return n;
}

bool tb_model_layer_tensor_wanted(const struct tb_model_params *p, uint32_t layer,
                                  tb_layer_tensor_t kind)
{
    const bool moe = tb_model_layer_is_moe(p, layer);
    switch (kind) {
    case TB_LAYER_ATTN_POST_NORM:
    case TB_LAYER_FFN_POST_NORM:
        return p->post_norms;
    case TB_LAYER_Q_NORM:
    case TB_LAYER_K_NORM:
        return p->qk_norm;
    case TB_LAYER_W_GATE:
    case TB_LAYER_W_UP:
    case TB_LAYER_W_DOWN:
        return !moe;
    case TB_LAYER_ROUTER:
        return moe;
    case TB_LAYER_SH_GATE:
    case TB_LAYER_SH_UP:
    case TB_LAYER_SH_DOWN:
    case TB_LAYER_SH_GATE_INP:
        return moe && p->shared_intermediate > 0;
    default:
        return true;
    }
}

int tb_model_place_fused(tb_model_t *m, uint32_t layer, const tb_layer_tensor_t *kinds,
                         const uint64_t *rows, size_t n, const char *source, tb_dtype_t dtype,
                         uint32_t n_dims, const uint64_t *dims, const void *data, uint64_t size,
                         char *err, size_t err_len)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += rows[i];
    }
    if (n_dims != 2 || dims[0] != total) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s' has %llu rows, the config implies %llu (the fused "
                           "parts)",
                           source, (unsigned long long)(n_dims == 2 ? dims[0] : 1),
                           (unsigned long long)total);
    }
    uint64_t row_bytes;
    int rc = tb_dtype_bytes(dtype, dims[1], &row_bytes);
    if (rc != 0 || (row_bytes && total > UINT64_MAX / row_bytes) || total * row_bytes != size) {
        /* let the ordinary placement word the size error */
        struct tb_slot whole = {.is_layer = true, .layer = layer, .kind = kinds[0]};
        return tb_model_place(m, &whole, source, dtype, n_dims, dims, data, size, err, err_len);
    }
    const uint8_t *at = data;
    for (size_t i = 0; i < n; i++) {
        struct tb_slot slot = {.is_layer = true, .layer = layer, .kind = kinds[i]};
        uint64_t part[2] = {rows[i], dims[1]};
        rc = tb_model_place(m, &slot, source, dtype, 2, part, at, rows[i] * row_bytes, err,
                            err_len);
        if (rc != 0) {
            return rc;
        }
        at += rows[i] * row_bytes;
    }
    return 0;
}

void tb_model_set_window_pattern(struct tb_model_params *p, uint32_t period)
{
    for (uint32_t l = 0; l < p->n_layers && l < TB_MODEL_MAX_LAYERS; l++) {
        p->layer_full[l] = period > 1 && l % period == period - 1;
    }
}

uint32_t tb_model_layer_window(const tb_model_t *m, uint32_t layer)
{
    const struct tb_model_params *p = &m->params;
    if (layer >= p->n_layers || p->layer_full[layer]) {
        return 0;
    }
    return p->sliding_window;
}

int tb_model_layer_rope_inv_freq(const tb_model_t *m, uint32_t layer, bool long_factors,
                                 double *out, size_t n)
{
    const struct tb_model_params *p = &m->params;
    uint32_t dim = p->rope_dim ? p->rope_dim : p->head_dim;
    if (layer >= p->n_layers || n != dim / 2) {
        return TB_EINVAL;
    }
    if (p->rope_theta_local > 0 && tb_model_layer_window(m, layer) > 0) {
        const struct tb_rope_scaling none = {.type = TB_ROPE_SCALING_NONE};
        tb_model_rope_freqs_scaled(m, p->rope_theta_local, dim, &none, false, out, n);
        return 0;
    }
    tb_model_rope_freqs_scaled(m, p->rope_theta, dim, &p->rope_scaling, long_factors, out, n);
    return 0;
}

int tb_model_params_family_features(const struct tb_model_params *p, char *buf, size_t len)
{
    bool mixed = false;
    for (uint32_t l = 0; l < p->n_layers && l < TB_MODEL_MAX_LAYERS; l++) {
        mixed = mixed || (p->sliding_window > 0 && p->layer_full[l]);
    }
    const struct {
        bool on;
        const char *name;
    } f[] = {
        {p->ffn_act != TB_FFN_SILU, "GeGLU"},
        {p->norm_plus_one, "(1 + weight) norms"},
        {p->post_norms, "post-norms"},
        {p->qk_norm, "q/k norms"},
        {p->embed_scale > 0, "embedding scale"},
        {p->attn_scale > 0, "attention scale"},
        {p->attn_softcap > 0 || p->final_softcap > 0, "logit soft-caps"},
        {p->rope_dim != 0 && p->rope_dim != p->head_dim, "partial rotary"},
        {p->rope_theta_local > 0, "local RoPE base"},
        {mixed, "per-layer sliding windows"},
        {p->rope_scaling.type == TB_ROPE_SCALING_LONGROPE, "LongRoPE"},
        {p->n_experts > 0, "mixture of experts"},
        {p->n_experts > 0 && tb_model_moe_layer_count(p) < p->n_layers,
         "dense layers among the experts"},
    };
    int n = 0;
    size_t off = 0;
    if (buf && len) {
        buf[0] = '\0';
    }
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!f[i].on) {
            continue;
        }
        if (buf && off < len) {
            int w = snprintf(buf + off, len - off, "%s%s", n ? ", " : "", f[i].name);
            off = w < 0 ? len : off + (size_t)w;
        }
        n++;
    }
    return n;
}
