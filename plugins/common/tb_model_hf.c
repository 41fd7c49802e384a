/*
 * tb_model_hf.c - loads a Hugging Face folder: the JSON configs (tb_hf_config) and the weights
 * from model.safetensors or the shards listed by model.safetensors.index.json, mapping
 * transformers' tensor names to Turbine's canonical ones.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tb_errors.h"
#include "tb_hf_config.h"
#include "tb_model_internal.h"

#define MAX_INDEX (64u << 20)

static const struct {
    const char *suffix;
    tb_layer_tensor_t kind;
} s_layer_map[] = {
    {"input_layernorm.weight", TB_LAYER_ATTN_NORM},
    {"self_attn.q_proj.weight", TB_LAYER_WQ},
    {"self_attn.k_proj.weight", TB_LAYER_WK},
    {"self_attn.v_proj.weight", TB_LAYER_WV},
    {"self_attn.q_proj.bias", TB_LAYER_BQ},
    {"self_attn.k_proj.bias", TB_LAYER_BK},
    {"self_attn.v_proj.bias", TB_LAYER_BV},
    {"self_attn.o_proj.weight", TB_LAYER_WO},
    {"post_attention_layernorm.weight", TB_LAYER_FFN_NORM},
    {"mlp.gate_proj.weight", TB_LAYER_W_GATE},
    {"mlp.up_proj.weight", TB_LAYER_W_UP},
    {"mlp.down_proj.weight", TB_LAYER_W_DOWN},
    {"pre_feedforward_layernorm.weight", TB_LAYER_FFN_NORM},
    {"post_feedforward_layernorm.weight", TB_LAYER_FFN_POST_NORM},
    {"self_attn.q_norm.weight", TB_LAYER_Q_NORM},
    {"self_attn.k_norm.weight", TB_LAYER_K_NORM},
    {"mlp.gate.weight", TB_LAYER_ROUTER},              /* Qwen MoE */
    {"block_sparse_moe.gate.weight", TB_LAYER_ROUTER}, /* Mixtral */
    {"mlp.shared_expert.gate_proj.weight", TB_LAYER_SH_GATE},
    {"mlp.shared_expert.up_proj.weight", TB_LAYER_SH_UP},
    {"mlp.shared_expert.down_proj.weight", TB_LAYER_SH_DOWN},
    {"mlp.shared_expert_gate.weight", TB_LAYER_SH_GATE_INP},
};

/* Experts: "mlp.experts.E.{gate,up,down}_proj.weight" (Qwen MoE) or
 * "block_sparse_moe.experts.E.w{1,3,2}.weight" (Mixtral).  True with the slot filled. */
static bool s_map_expert(const char *p, uint32_t n_experts, struct tb_slot *slot)
{
    static const struct {
        const char *prefix, *suffix;
        tb_expert_tensor_t kind;
    } kinds[] = {
        {"mlp.experts.", "gate_proj.weight", TB_EXPERT_GATE},
        {"mlp.experts.", "up_proj.weight", TB_EXPERT_UP},
        {"mlp.experts.", "down_proj.weight", TB_EXPERT_DOWN},
        {"block_sparse_moe.experts.", "w1.weight", TB_EXPERT_GATE},
        {"block_sparse_moe.experts.", "w3.weight", TB_EXPERT_UP},
        {"block_sparse_moe.experts.", "w2.weight", TB_EXPERT_DOWN},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t n = strlen(kinds[k].prefix);
        if (strncmp(p, kinds[k].prefix, n) != 0) {
            continue;
        }
        const char *d = p + n, *digits = d;
        uint64_t e = 0;
        while (*d >= '0' && *d <= '9' && d - digits < 6) {
            e = e * 10 + (uint64_t)(*d - '0');
            d++;
        }
        if (d == digits || *d != '.' || (d - digits > 1 && *digits == '0') || e >= n_experts ||
            strcmp(d + 1, kinds[k].suffix) != 0) {
            continue;
        }
        slot->is_expert = true;
        slot->expert = (uint32_t)e;
        slot->ekind = kinds[k].kind;
        return true;
    }
    return false;
}

/* Fused matrices (Phi-3): placed as row ranges of their parts. */
enum { FUSED_NONE = 0, FUSED_QKV = 1, FUSED_GATE_UP = 2 };

/* 1: mapped into *slot (*fused: FUSED_* for a fused matrix of slot->layer); 0: a tensor to
 * ignore; -1: unknown. */
static int s_map_name(const char *name, const struct tb_model_params *params,
                      struct tb_slot *slot, int *fused)
{
    const uint32_t n_layers = params->n_layers;
    memset(slot, 0, sizeof *slot);
    *fused = FUSED_NONE;
    if (strcmp(name, "model.embed_tokens.weight") == 0) {
        slot->global = TB_TENSOR_TOK_EMBD;
        return 1;
    }
    if (strcmp(name, "model.norm.weight") == 0) {
        slot->global = TB_TENSOR_OUT_NORM;
        return 1;
    }
    if (strcmp(name, "lm_head.weight") == 0) {
        slot->global = TB_TENSOR_OUTPUT;
        return 1;
    }
    const char *pre = "model.layers.";
    if (strncmp(name, pre, strlen(pre)) != 0) {
        return -1;
    }
    const char *p = name + strlen(pre);
    uint64_t layer = 0;
    const char *digits = p;
    while (*p >= '0' && *p <= '9' && p - digits < 6) {
        layer = layer * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == digits || *p != '.' || (p - digits > 1 && *digits == '0') || layer >= n_layers) {
        return -1;
    }
    p++;
    if (strcmp(p, "self_attn.rotary_emb.inv_freq") == 0) {
        return 0; /* a cache some old checkpoints saved; recomputed from the config */
    }
    slot->is_layer = true;
    slot->layer = (uint32_t)layer;
    if (strcmp(p, "self_attn.qkv_proj.weight") == 0 ||
        strcmp(p, "mlp.gate_up_proj.weight") == 0) {
        *fused = p[0] == 's' ? FUSED_QKV : FUSED_GATE_UP;
        return strcmp(params->arch, "phi3") == 0 ? 1 : -1;
    }
    for (size_t i = 0; i < sizeof s_layer_map / sizeof s_layer_map[0]; i++) {
        if (strcmp(p, s_layer_map[i].suffix) == 0) {
            slot->kind = s_layer_map[i].kind;
            /* Gemma: post_attention_layernorm normalises the attention output, and
             * pre_feedforward_layernorm is the MLP's input norm */
            if (slot->kind == TB_LAYER_FFN_NORM && params->post_norms) {
                slot->kind = p[0] == 'p' && p[1] == 'o' ? TB_LAYER_ATTN_POST_NORM
                                                        : TB_LAYER_FFN_NORM;
            } else if (slot->kind == TB_LAYER_FFN_NORM && p[1] == 'r') {
                return -1; /* pre_feedforward_layernorm outside Gemma */
            }
            return 1;
        }
    }
    if (s_map_expert(p, params->n_experts, slot)) {
        slot->is_layer = true;
        slot->layer = (uint32_t)layer;
        return 1;
    }
    return -1;
}

/* Places a Phi-3 fused matrix into its parts. */
static int s_place_fused(tb_model_t *m, const struct tb_slot *slot, int fused, tb_dtype_t dt,
                         const struct tb_st_tensor *t, char *err, size_t err_len)
{
    const struct tb_model_params *p = &m->params;
    const uint64_t qd = (uint64_t)p->n_heads * p->head_dim;
    const uint64_t kvd = (uint64_t)p->n_kv_heads * p->head_dim;
    const tb_layer_tensor_t qkv[3] = {TB_LAYER_WQ, TB_LAYER_WK, TB_LAYER_WV};
    const tb_layer_tensor_t gu[2] = {TB_LAYER_W_GATE, TB_LAYER_W_UP};
    const uint64_t qkv_rows[3] = {qd, kvd, kvd};
    const uint64_t gu_rows[2] = {p->intermediate, p->intermediate};
    bool is_qkv = fused == FUSED_QKV;
    return tb_model_place_fused(m, slot->layer, is_qkv ? qkv : gu, is_qkv ? qkv_rows : gu_rows,
                                is_qkv ? 3 : 2, t->name, dt, t->n_dims, t->shape, t->data,
                                t->size, err, err_len);
}

static int s_place(tb_model_t *m, const struct tb_st_tensor *t, char *err, size_t err_len)
{
    struct tb_slot slot;
    int fused;
    int r = s_map_name(t->name, &m->params, &slot, &fused);
    if (r == 0) {
        return 0;
    }
    if (r < 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%.96s' is not part of a supported %s model "
                           "with %u layers",
                           t->name, m->params.arch, m->params.n_layers);
    }
    tb_dtype_t dt;
    switch (t->dtype) {
    case TB_ST_F32:
        dt = TB_DTYPE_F32;
        break;
    case TB_ST_F16:
        dt = TB_DTYPE_F16;
        break;
    case TB_ST_BF16:
        dt = TB_DTYPE_BF16;
        break;
    default:
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%.96s': dtype '%s' is not supported (F32, F16, "
                           "BF16)",
                           t->name, tb_st_dtype_name(t->dtype));
    }
    if (fused != FUSED_NONE) {
        return s_place_fused(m, &slot, fused, dt, t, err, err_len);
    }
    return tb_model_place(m, &slot, t->name, dt, t->n_dims, t->shape, t->data, t->size, err,
                          err_len);
}

static int s_open_shard(tb_model_t *m, const char *dir, const char *file, char *err,
                        size_t err_len)
{
    if (m->n_shards >= TB_MODEL_MAX_SHARDS) {
        return tb_err_fail(err, err_len, TB_EMODEL, "more than %d safetensors shards",
                           TB_MODEL_MAX_SHARDS);
    }
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path) {
        return tb_err_fail(err, err_len, TB_EMODEL, "path too long: '%s/%s'", dir, file);
    }
    char inner[512];
    int rc = tb_safetensors_open(path, &m->shards[m->n_shards], inner, sizeof inner);
    if (rc != 0) {
        snprintf(err, err_len, "%s: %s", file, inner);
        return rc == TB_ENOENT ? TB_EMODEL : rc;
    }
    m->n_shards++;
    return 0;
}

/* A shard file name from the index: a plain file name inside the folder. */
static bool s_plain_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 256 && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int s_load_sharded(tb_model_t *m, const char *dir, const char *index_path, char *err,
                          size_t err_len)
{
    const char *F = "model.safetensors.index.json";
    char *text = NULL;
    size_t len = 0;
    int rc = tb_hf_read_file(index_path, MAX_INDEX, &text, &len, err, err_len);
    if (rc != 0) {
        return rc;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) {
        return tb_err_fail(err, err_len, TB_EMODEL, "%s: invalid JSON at line %d column %d: %s",
                           F, jerr.line, jerr.column, jerr.text);
    }
    json_t *map = json_object_get(root, "weight_map");
    const char **names = NULL;
    if (!json_is_object(root) || !json_is_object(map) || json_object_size(map) == 0) {
        rc = tb_err_fail(err, err_len, TB_EMODEL,
                         "%s: 'weight_map' missing, empty or not an object", F);
        goto out;
    }
    /* Open each distinct shard once, in first-mention order. */
    names = calloc(TB_MODEL_MAX_SHARDS, sizeof *names);
    if (!names) {
        rc = TB_ENOMEM;
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val)
    {
        if (!json_is_string(val) || !s_plain_name(json_string_value(val))) {
            rc = tb_err_fail(err, err_len, TB_EMODEL,
                             "%s: weight_map['%.96s'] is not a file name in the folder", F, key);
            goto out;
        }
        bool seen = false;
        for (size_t i = 0; i < m->n_shards; i++) {
            seen = seen || strcmp(names[i], json_string_value(val)) == 0;
        }
        if (!seen) {
            names[m->n_shards] = json_string_value(val);
            rc = s_open_shard(m, dir, json_string_value(val), err, err_len);
            if (rc != 0) {
                goto out;
            }
        }
    }
    json_object_foreach(map, key, val)
    {
        size_t s = 0;
        while (strcmp(names[s], json_string_value(val)) != 0) {
            s++;
        }
        struct tb_st_tensor t;
        if (!tb_safetensors_find(m->shards[s], key, &t)) {
            rc = tb_err_fail(err, err_len, TB_EMODEL,
                             "%s lists tensor '%.96s' in '%s', which does not hold it", F, key,
                             names[s]);
            goto out;
        }
        rc = s_place(m, &t, err, err_len);
        if (rc != 0) {
            goto out;
        }
    }
    for (size_t s = 0; s < m->n_shards; s++) {
        for (size_t i = 0; i < tb_safetensors_count(m->shards[s]); i++) {
            struct tb_st_tensor t;
            tb_safetensors_at(m->shards[s], i, &t);
            const char *where = json_string_value(json_object_get(map, t.name));
            if (!where || strcmp(where, names[s]) != 0) {
                rc = tb_err_fail(err, err_len, TB_EMODEL,
                                 "tensor '%.96s' in '%s' is not listed there by %s", t.name,
                                 names[s], F);
                goto out;
            }
        }
    }
    rc = 0;
out:
    free(names);
    json_decref(root);
    return rc;
}

int tb_model_load_hf(tb_model_t *m, const char *dir, char *err, size_t err_len)
{
    int rc = tb_hf_config_load_folder(dir, &m->params, err, err_len);
    if (rc != 0) {
        return rc == TB_ENOENT ? TB_EMODEL : rc;
    }
    rc = tb_model_alloc_layers(m, err, err_len);
    if (rc != 0) {
        return rc;
    }
    char path[4096];
    struct stat sb;
    if ((size_t)snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir) >=
        sizeof path) {
        return tb_err_fail(err, err_len, TB_EMODEL, "path too long");
    }
    if (stat(path, &sb) == 0) {
        return s_load_sharded(m, dir, path, err, err_len);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (stat(path, &sb) != 0) {
        snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
        bool bin = stat(path, &sb) == 0;
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "no model.safetensors or model.safetensors.index.json%s",
                           bin ? " (PyTorch .bin weights are not supported)" : "");
    }
    rc = s_open_shard(m, dir, "model.safetensors", err, err_len);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < tb_safetensors_count(m->shards[0]); i++) {
        struct tb_st_tensor t;
        tb_safetensors_at(m->shards[0], i, &t);
        rc = s_place(m, &t, err, err_len);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}
