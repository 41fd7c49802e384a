/*
 * tb_model_moe.c - the mixture-of-experts part of the loaded model: the parameter checks, the
 * placement of GGUF's 3-D expert tensors as one 2-D slice per expert, and the completeness and
 * shape checks of every expert layer's experts (a model may mix dense layers among them).
 */
#include <stdio.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_model_internal.h"

#define MAX_EXPERTS 1024u

const char *tb_expert_tensor_name(tb_expert_tensor_t t)
{
    static const char *const n[TB_EXPERT_TENSOR_COUNT] = {"w_gate", "w_up", "w_down"};
    return (int)t >= 0 && t < TB_EXPERT_TENSOR_COUNT ? n[t] : "?";
}

const char *tb_moe_gating_name(tb_moe_gating_t g)
{
    return g == TB_MOE_SOFTMAX_TOPK  ? "softmax_topk"
           : g == TB_MOE_SOFTMAX_ALL ? "softmax_all"
                                     : "?";
}

int tb_model_check_moe(const struct tb_model_params *p, char *err, size_t err_len)
{
    if (p->n_experts < 1 || p->n_experts > MAX_EXPERTS) {
        return tb_err_fail(err, err_len, TB_EMODEL, "expert count %u is out of range 1..%u",
                           p->n_experts, MAX_EXPERTS);
    }
    if (p->n_experts_used < 1 || p->n_experts_used > p->n_experts) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "experts used per token %u is out of range 1..%u (the expert count)",
                           p->n_experts_used, p->n_experts);
    }
    if (p->expert_intermediate < 1 || p->expert_intermediate > (1u << 20)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "expert intermediate size %u is out of range 1..%u",
                           p->expert_intermediate, 1u << 20);
    }
    if (p->shared_intermediate > (1u << 20)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "shared expert intermediate size %u is out of range 0..%u",
                           p->shared_intermediate, 1u << 20);
    }
    if (p->moe_gating != TB_MOE_SOFTMAX_TOPK && p->moe_gating != TB_MOE_SOFTMAX_ALL) {
        return tb_err_fail(err, err_len, TB_EMODEL, "unknown expert gating %d",
                           (int)p->moe_gating);
    }
    return 0;
}

int tb_model_place_experts(tb_model_t *m, const struct tb_slot *slot, const char *source,
                           tb_dtype_t dtype, const uint64_t *dims, const void *data,
                           uint64_t size, char *err, size_t err_len)
{
    const struct tb_model_params *p = &m->params;
    if (p->n_experts == 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s' holds experts, the metadata gives no expert count",
                           source);
    }
    if (dims[0] != p->n_experts) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s' holds %llu experts, the metadata says %u", source,
                           (unsigned long long)dims[0], p->n_experts);
    }
    if (size % p->n_experts != 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': %llu bytes do not split into %u experts", source,
                           (unsigned long long)size, p->n_experts);
    }
    uint64_t each = size / p->n_experts;
    for (uint32_t e = 0; e < p->n_experts; e++) {
        struct tb_slot s = *slot;
        s.is_layer = true;
        s.is_expert = true;
        s.expert = e;
        char name[128];
        snprintf(name, sizeof name, "%.100s[%u]", source, e);
        int rc = tb_model_place(m, &s, name, dtype, 2, dims + 1, (const uint8_t *)data + e * each,
                                each, err, err_len);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int tb_model_check_experts(const tb_model_t *m, char *err, size_t err_len)
{
    const struct tb_model_params *p = &m->params;
    const uint64_t h = p->hidden, ff = p->expert_intermediate;
    const uint64_t rows[TB_EXPERT_TENSOR_COUNT] = {ff, ff, h};
    const uint64_t cols[TB_EXPERT_TENSOR_COUNT] = {h, h, ff};
    for (uint32_t l = 0; l < p->n_layers; l++) {
        const bool moe = tb_model_layer_is_moe(p, l);
        for (uint32_t e = 0; e < p->n_experts; e++) {
            for (int k = 0; k < TB_EXPERT_TENSOR_COUNT; k++) {
                size_t i = ((size_t)l * p->n_experts + e) * TB_EXPERT_TENSOR_COUNT + (size_t)k;
                const struct tb_tensor *t = &m->experts[i];
                if (!moe && m->has_expert[i]) {
                    return tb_err_fail(err, err_len, TB_EMODEL,
                                       "tensor '%s' holds experts, but layer %u has a dense "
                                       "MLP",
                                       t->source, l);
                }
                if (!moe) {
                    continue;
                }
                if (!m->has_expert[i]) {
                    return tb_err_fail(err, err_len, TB_EMODEL,
                                       "tensor 'layers.%u.experts.%u.%s' is missing", l, e,
                                       tb_expert_tensor_name((tb_expert_tensor_t)k));
                }
                if (t->n_dims != 2 || t->rows != rows[k] || t->cols != cols[k]) {
                    return tb_err_fail(err, err_len, TB_EMODEL,
                                       "tensor '%s' (%s) has shape [%llu, %llu], the config "
                                       "implies [%llu, %llu]",
                                       t->name, t->source, (unsigned long long)t->rows,
                                       (unsigned long long)t->cols, (unsigned long long)rows[k],
                                       (unsigned long long)cols[k]);
                }
            }
        }
    }
    return 0;
}
