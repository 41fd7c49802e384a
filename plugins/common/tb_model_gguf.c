/*
 * tb_model_gguf.c - loads a GGUF file written the way llama.cpp writes them: the "llama" and
 * "qwen2" architectures' metadata keys, tokenizer.ggml.* facts and the blk.N.* tensors.
 * llama.cpp's converter permutes llama's Q/K rows so rotary pairs are interleaved; qwen2 files
 * keep the HF ("neox") layout.  Every tensor carries its own type and a file mixes them freely
 * (a "Q4_K_M" file is Q4_K and Q6_K matrices with F32 norms); tb_dtype.h lists the types taken.
 * Also "qwen3" (per-head q/k norms), and the mixtures of experts "qwen3moe", "qwen2moe" and
 * "llama" with an expert count (Mixtral): the router ffn_gate_inp and each layer's experts as
 * 3-D tensors ffn_{gate,up,down}_exps (or, in older Mixtral files, one 2-D tensor per expert).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_model_internal.h"

static const char *s_ggml_type_name(uint32_t t)
{
    static const char *const names[] = {
        "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
        "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
        "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
        "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16",
    };
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* An integer key in [lo, hi]; ABSENT (1) when missing and not required. */
static int s_u32(const tb_gguf_t *g, const char *arch, const char *key, bool required,
                 uint64_t lo, uint64_t hi, uint32_t *out, char *err, size_t err_len)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    uint64_t v;
    if (!tb_gguf_get_u64(g, full, &v)) {
        if (tb_gguf_find_key(g, full) >= 0) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "metadata '%s' is not a non-negative integer", full);
        }
        if (required) {
            return tb_err_fail(err, err_len, TB_EMODEL, "metadata '%s' is missing", full);
        }
        return 1;
    }
    if (v < lo || v > hi) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "metadata '%s' %llu is out of range %llu..%llu", full,
                           (unsigned long long)v, (unsigned long long)lo, (unsigned long long)hi);
    }
    *out = (uint32_t)v;
    return 0;
}

static int s_f64(const tb_gguf_t *g, const char *full, double *out, char *err, size_t err_len)
{
    if (!tb_gguf_get_f64(g, full, out)) {
        if (tb_gguf_find_key(g, full) >= 0) {
            return tb_err_fail(err, err_len, TB_EMODEL, "metadata '%s' is not a number", full);
        }
        return 1;
    }
    return 0;
}

static int s_id(const tb_gguf_t *g, const char *key, int32_t *out, char *err, size_t err_len)
{
    uint64_t v;
    if (!tb_gguf_get_u64(g, key, &v)) {
        if (tb_gguf_find_key(g, key) >= 0) {
            return tb_err_fail(err, err_len, TB_EMODEL, "metadata '%s' is not a token id", key);
        }
        return 1;
    }
    if (v > INT32_MAX) {
        return tb_err_fail(err, err_len, TB_EMODEL, "metadata '%s' %llu is not a token id", key,
                           (unsigned long long)v);
    }
    *out = (int32_t)v;
    return 0;
}

static void s_add_eos(struct tb_model_params *p, int32_t id)
{
    for (uint32_t i = 0; i < p->n_eos_ids; i++) {
        if (p->eos_ids[i] == id) {
            return;
        }
    }
    if (p->n_eos_ids < TB_MODEL_MAX_EOS) {
        p->eos_ids[p->n_eos_ids++] = id;
    }
}

static int s_tokenizer(const tb_gguf_t *g, const char *path, struct tb_model_params *p, char *err,
                       size_t err_len)
{
    struct tb_gguf_str s;
    int rc;
    if (tb_gguf_get_str(g, "tokenizer.ggml.model", &s)) {
        p->tokenizer_source = TB_TOKENIZER_GGUF;
        p->tokenizer_path = strdup(path);
        if (!p->tokenizer_path) {
            snprintf(err, err_len, "out of memory");
            return TB_ENOMEM;
        }
    }
    const char *keys[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                           "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id"};
    int32_t *ids[4] = {&p->bos_id, &p->eos_id, &p->pad_id, &p->unk_id};
    for (int i = 0; i < 4; i++) {
        if ((rc = s_id(g, keys[i], ids[i], err, err_len)) < 0) {
            return rc;
        }
    }
    if (p->eos_id >= 0) {
        s_add_eos(p, p->eos_id);
    }
    const char *stops[2] = {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"};
    for (int i = 0; i < 2; i++) {
        int32_t id;
        if ((rc = s_id(g, stops[i], &id, err, err_len)) < 0) {
            return rc;
        }
        if (rc == 0) {
            s_add_eos(p, id);
        }
    }
    bool b;
    if (tb_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) {
        p->add_bos = b;
    }
    if (tb_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b)) {
        p->add_eos = b;
    }
    if (tb_gguf_get_str(g, "tokenizer.chat_template", &s)) {
        p->chat_template = malloc(s.len + 1);
        if (!p->chat_template) {
            snprintf(err, err_len, "out of memory");
            return TB_ENOMEM;
        }
        memcpy(p->chat_template, s.ptr, s.len);
        p->chat_template[s.len] = '\0';
    }
    return 0;
}

static int s_params(const tb_gguf_t *g, const char *arch, struct tb_model_params *p, char *err,
                    size_t err_len)
{
    int rc;
    if ((rc = s_u32(g, arch, "block_count", true, 1, 1024, &p->n_layers, err, err_len)) != 0 ||
        (rc = s_u32(g, arch, "embedding_length", true, 1, 1 << 16, &p->hidden, err, err_len)) !=
            0 ||
        (rc = s_u32(g, arch, "feed_forward_length", true, 1, 1 << 20, &p->intermediate, err,
                    err_len)) != 0 ||
        (rc = s_u32(g, arch, "attention.head_count", true, 1, 1024, &p->n_heads, err, err_len)) !=
            0 ||
        (rc = s_u32(g, arch, "context_length", true, 1, 1 << 24, &p->max_context, err,
                    err_len)) != 0) {
        return rc;
    }
    p->n_kv_heads = p->n_heads;
    if ((rc = s_u32(g, arch, "attention.head_count_kv", false, 1, 1024, &p->n_kv_heads, err,
                    err_len)) < 0) {
        return rc;
    }
    if (p->hidden % p->n_heads != 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "%s.embedding_length %u is not a multiple of "
                           "%s.attention.head_count %u",
                           arch, p->hidden, arch, p->n_heads);
    }
    p->head_dim = p->hidden / p->n_heads;
    uint32_t kl = 0, vl = 0, rd = 0;
    if ((rc = s_u32(g, arch, "attention.key_length", false, 2, 1024, &kl, err, err_len)) < 0 ||
        (rc = s_u32(g, arch, "attention.value_length", false, 2, 1024, &vl, err, err_len)) < 0 ||
        (rc = s_u32(g, arch, "rope.dimension_count", false, 2, 1024, &rd, err, err_len)) < 0) {
        return rc;
    }
    if (kl) {
        p->head_dim = kl;
    }
    /* Mistral-style sliding window (llama.cpp's key); absent or 0: none */
    p->sliding_window = 0;
    if ((rc = s_u32(g, arch, "attention.sliding_window", false, 0, 1 << 24, &p->sliding_window,
                    err, err_len)) < 0) {
        return rc;
    }
    if (vl && vl != p->head_dim) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "metadata '%s.attention.value_length' %u differs from the "
                           "key length %u (not supported)",
                           arch, vl, p->head_dim);
    }
    if (rd && rd != p->head_dim) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "metadata '%s.rope.dimension_count' %u differs from the "
                           "head dimension %u (partial rotary embedding is not supported)",
                           arch, rd, p->head_dim);
    }
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    rc = s_f64(g, key, &p->rms_eps, err, err_len);
    if (rc == 1) {
        return tb_err_fail(err, err_len, TB_EMODEL, "metadata '%s' is missing", key);
    }
    if (rc < 0) {
        return rc;
    }
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    if ((rc = s_f64(g, key, &p->rope_theta, err, err_len)) < 0) {
        return rc;
    }
    struct tb_gguf_str st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    double factor = 0;
    char fkey[128];
    snprintf(fkey, sizeof fkey, "%s.rope.scaling.factor", arch);
    if ((rc = s_f64(g, fkey, &factor, err, err_len)) < 0) {
        return rc;
    }
    if (tb_gguf_get_str(g, key, &st)) {
        if (st.len == 4 && memcmp(st.ptr, "none", 4) == 0) {
            /* nothing */
        } else if (st.len == 6 && memcmp(st.ptr, "linear", 6) == 0) {
            if (rc == 1) {
                return tb_err_fail(err, err_len, TB_EMODEL,
                                   "metadata '%s' is missing for linear scaling", fkey);
            }
            p->rope_scaling.type = TB_ROPE_SCALING_LINEAR;
            p->rope_scaling.factor = factor;
        } else {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "metadata '%s' '%.*s' is not supported (none, linear)", key,
                               (int)(st.len > 32 ? 32 : st.len), st.ptr);
        }
    } else if (tb_gguf_find_key(g, key) >= 0) {
        return tb_err_fail(err, err_len, TB_EMODEL, "metadata '%s' is not a string", key);
    }
    snprintf(key, sizeof key, "%s.rope.scale_linear", arch); /* older files */
    if ((rc = s_f64(g, key, &factor, err, err_len)) < 0) {
        return rc;
    }
    if (rc == 0 && factor != 1.0) {
        p->rope_scaling.type = TB_ROPE_SCALING_LINEAR;
        p->rope_scaling.factor = factor;
    }
    return 0;
}

static const struct {
    const char *suffix;
    tb_layer_tensor_t kind;
} s_layer_map[] = {
    {"attn_norm.weight", TB_LAYER_ATTN_NORM},
    {"attn_q.weight", TB_LAYER_WQ},
    {"attn_k.weight", TB_LAYER_WK},
    {"attn_v.weight", TB_LAYER_WV},
    {"attn_q.bias", TB_LAYER_BQ},
    {"attn_k.bias", TB_LAYER_BK},
    {"attn_v.bias", TB_LAYER_BV},
    {"attn_output.weight", TB_LAYER_WO},
    {"ffn_norm.weight", TB_LAYER_FFN_NORM},
    {"ffn_gate.weight", TB_LAYER_W_GATE},
    {"ffn_up.weight", TB_LAYER_W_UP},
    {"ffn_down.weight", TB_LAYER_W_DOWN},
    {"attn_q_norm.weight", TB_LAYER_Q_NORM},
    {"attn_k_norm.weight", TB_LAYER_K_NORM},
    {"ffn_gate_inp.weight", TB_LAYER_ROUTER},
    {"ffn_gate_shexp.weight", TB_LAYER_SH_GATE},
    {"ffn_up_shexp.weight", TB_LAYER_SH_UP},
    {"ffn_down_shexp.weight", TB_LAYER_SH_DOWN},
    {"ffn_gate_inp_shexp.weight", TB_LAYER_SH_GATE_INP},
};

/* Experts: "ffn_gate_exps.weight" (3-D, every expert) or "ffn_gate.E.weight" (one expert). */
static bool s_map_expert(const char *p, struct tb_slot *slot, bool *all)
{
    static const char *const kinds[TB_EXPERT_TENSOR_COUNT] = {"ffn_gate", "ffn_up", "ffn_down"};
    for (int k = 0; k < TB_EXPERT_TENSOR_COUNT; k++) {
        size_t n = strlen(kinds[k]);
        if (strncmp(p, kinds[k], n) != 0) {
            continue;
        }
        slot->is_expert = true;
        slot->ekind = (tb_expert_tensor_t)k;
        if (strcmp(p + n, "_exps.weight") == 0) {
            *all = true;
            return true;
        }
        const char *d = p + n;
        if (*d++ != '.') {
            return false;
        }
        const char *digits = d;
        uint64_t e = 0;
        while (*d >= '0' && *d <= '9' && d - digits < 6) {
            e = e * 10 + (uint64_t)(*d - '0');
            d++;
        }
        if (d == digits || (d - digits > 1 && *digits == '0') || strcmp(d, ".weight") != 0) {
            return false;
        }
        *all = false;
        slot->expert = (uint32_t)e;
        return true;
    }
    return false;
}

static bool s_map_name(const char *name, const struct tb_model_params *pr, struct tb_slot *slot,
                       bool *all_experts)
{
    uint32_t n_layers = pr->n_layers;
    *all_experts = false;
    static const char *const globals[TB_TENSOR_GLOBAL_COUNT] = {"token_embd.weight",
                                                                "output_norm.weight",
                                                                "output.weight",
                                                                "rope_freqs.weight"};
    memset(slot, 0, sizeof *slot);
    for (int i = 0; i < TB_TENSOR_GLOBAL_COUNT; i++) {
        if (strcmp(name, globals[i]) == 0) {
            slot->global = (tb_tensor_id_t)i;
            return true;
        }
    }
    if (strncmp(name, "blk.", 4) != 0) {
        return false;
    }
    const char *p = name + 4;
    const char *digits = p;
    uint64_t layer = 0;
    while (*p >= '0' && *p <= '9' && p - digits < 6) {
        layer = layer * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == digits || *p != '.' || (p - digits > 1 && *digits == '0') || layer >= n_layers) {
        return false;
    }
    p++;
    for (size_t i = 0; i < sizeof s_layer_map / sizeof s_layer_map[0]; i++) {
        if (strcmp(p, s_layer_map[i].suffix) == 0) {
            slot->is_layer = true;
            slot->layer = (uint32_t)layer;
            slot->kind = s_layer_map[i].kind;
            return true;
        }
    }
    if (pr->n_experts > 0 && s_map_expert(p, slot, all_experts)) {
        slot->is_layer = true;
        slot->layer = (uint32_t)layer;
        return *all_experts || slot->expert < pr->n_experts;
    }
    return false;
}

/* The mixture-of-experts keys: <arch>.expert_count (none or 0: a dense model), expert_used_count,
 * expert_feed_forward_length (llama, i.e. Mixtral: feed_forward_length), the shared expert's
 * expert_shared_feed_forward_length (qwen2moe), and expert_weights_norm (whether the top-k
 * weights are renormalised; qwen3moe and Mixtral do, qwen2moe does not). */
static int s_moe_params(const tb_gguf_t *g, const char *arch, struct tb_model_params *p,
                        char *err, size_t err_len)
{
    bool moe_arch = strcmp(arch, "qwen3moe") == 0 || strcmp(arch, "qwen2moe") == 0;
    int rc = s_u32(g, arch, "expert_count", moe_arch, 0, 1u << 20, &p->n_experts, err, err_len);
    if (rc < 0 || p->n_experts == 0) {
        return rc < 0 ? rc : 0;
    }
    if ((rc = s_u32(g, arch, "expert_used_count", true, 0, 1u << 20, &p->n_experts_used, err,
                    err_len)) != 0) {
        return rc;
    }
    p->expert_intermediate = p->intermediate;
    if ((rc = s_u32(g, arch, "expert_feed_forward_length", moe_arch, 1, 1 << 20,
                    &p->expert_intermediate, err, err_len)) < 0 ||
        (rc = s_u32(g, arch, "expert_shared_feed_forward_length", false, 0, 1 << 20,
                    &p->shared_intermediate, err, err_len)) < 0) {
        return rc;
    }
    bool norm = strcmp(arch, "qwen2moe") != 0;
    char key[128];
    snprintf(key, sizeof key, "%s.expert_weights_norm", arch);
    if (!tb_gguf_get_bool(g, key, &norm) && tb_gguf_find_key(g, key) >= 0) {
        return tb_err_fail(err, err_len, TB_EMODEL, "metadata '%s' is not a boolean", key);
    }
    p->moe_gating = norm ? TB_MOE_SOFTMAX_TOPK : TB_MOE_SOFTMAX_ALL;
    return tb_model_check_moe(p, err, err_len);
}

/* The architectures: llama (Q/K rows permuted by the converter: interleaved rotary pairs), the
 * Qwen family in the HF layout. */
static int s_arch(struct tb_gguf_str a, struct tb_model_params *p, char *err, size_t err_len)
{
    static const struct {
        const char *name;
        tb_rope_layout_t layout;
        bool qkv_bias, qk_norm;
    } archs[] = {
        {"llama", TB_ROPE_INTERLEAVED, false, false}, {"qwen2", TB_ROPE_NEOX, true, false},
        {"qwen3", TB_ROPE_NEOX, false, true},         {"qwen3moe", TB_ROPE_NEOX, false, true},
        {"qwen2moe", TB_ROPE_NEOX, true, false},
    };
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        if (a.len == strlen(archs[i].name) && memcmp(a.ptr, archs[i].name, a.len) == 0) {
            p->rope_layout = archs[i].layout;
            p->qkv_bias = archs[i].qkv_bias;
            p->qk_norm = archs[i].qk_norm;
            memcpy(p->arch, a.ptr, a.len);
            p->arch[a.len] = '\0';
            return 0;
        }
    }
    return tb_err_fail(err, err_len, TB_EMODEL,
                       "metadata 'general.architecture' '%.*s' is not supported "
                       "(llama, qwen2, qwen3, qwen3moe, qwen2moe)",
                       (int)(a.len > 32 ? 32 : a.len), a.ptr);
}

/* One tensor of the file into its slot (3-D only for all of a layer's experts). */
static int s_place_one(tb_model_t *m, const struct tb_gguf_tensor *t, const char *name,
                       bool *has_output, char *err, size_t err_len)
{
    struct tb_model_params *p = &m->params;
    struct tb_slot slot;
    bool all_experts;
    if (t->name.len > 120 || !s_map_name(name, p, &slot, &all_experts)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s' is not part of a supported %s model with "
                           "%u layers%s",
                           name, p->arch, p->n_layers, p->n_experts ? " and experts" : "");
    }
    tb_dtype_t dt;
    if (!tb_dtype_from_ggml(t->ggml_type, &dt)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': ggml type %u (%s) is not supported (F32, F16, BF16, "
                           "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, "
                           "IQ4_XS)",
                           name, t->ggml_type, s_ggml_type_name(t->ggml_type));
    }
    uint32_t want_dims = all_experts ? 3 : 0;
    if (want_dims ? t->n_dims != 3 : (t->n_dims < 1 || t->n_dims > 2)) {
        return tb_err_fail(err, err_len, TB_EMODEL, "tensor '%s': %u dimensions (expected %s)",
                           name, t->n_dims, want_dims ? "3" : "1 or 2");
    }
    if (all_experts) {
        uint64_t dims[3] = {t->dims[2], t->dims[1], t->dims[0]};
        return tb_model_place_experts(m, &slot, name, dt, dims, t->data, t->size, err, err_len);
    }
    uint64_t dims[2] = {t->n_dims == 2 ? t->dims[1] : t->dims[0], t->dims[0]};
    if (slot.global == TB_TENSOR_OUTPUT && !slot.is_layer) {
        *has_output = true;
    }
    return tb_model_place(m, &slot, name, dt, t->n_dims, dims, t->data, t->size, err, err_len);
}

int tb_model_load_gguf(tb_model_t *m, const char *path, char *err, size_t err_len)
{
    struct tb_model_params *p = &m->params;
    int rc = tb_gguf_open(path, &m->gguf, err, err_len);
    if (rc != 0) {
        /* the reader's message repeats the path that tb_model_open puts in front */
        char prefix[256];
        int n = snprintf(prefix, sizeof prefix, "cannot open model '%s': ", path);
        size_t len = strlen(err);
        if (n > 0 && (size_t)n < sizeof prefix && len >= (size_t)n &&
            strncmp(err, prefix, (size_t)n) == 0) {
            memmove(err, err + n, len - (size_t)n + 1);
        }
        return rc;
    }
    const tb_gguf_t *g = m->gguf;
    p->format = TB_MODEL_FORMAT_GGUF;
    struct tb_gguf_str a;
    if (!tb_gguf_get_str(g, "general.architecture", &a)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "metadata 'general.architecture' is missing or not a "
                           "string");
    }
    if ((rc = s_arch(a, p, err, err_len)) != 0) {
        return rc;
    }
    if ((rc = s_params(g, p->arch, p, err, err_len)) != 0 ||
        (rc = s_moe_params(g, p->arch, p, err, err_len)) != 0 ||
        (rc = s_tokenizer(g, path, p, err, err_len)) != 0 ||
        (rc = tb_model_alloc_layers(m, err, err_len)) != 0) {
        return rc;
    }
    bool has_output = false;
    for (size_t i = 0; i < tb_gguf_tensor_count(g); i++) {
        struct tb_gguf_tensor t;
        tb_gguf_tensor_at(g, i, &t);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(t.name.len > 120 ? 120 : t.name.len),
                 t.name.ptr);
        rc = s_place_one(m, &t, name, &has_output, err, err_len);
        if (rc != 0) {
            return rc;
        }
    }
    p->tied_embeddings = !has_output;
    if (m->has_global[TB_TENSOR_ROPE_FREQS]) {
        if (p->rope_scaling.type != TB_ROPE_SCALING_NONE) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "tensor 'rope_freqs.weight' together with rope scaling "
                               "type %s is not supported",
                               tb_rope_scaling_name(p->rope_scaling.type));
        }
        p->rope_scaling.type = TB_ROPE_SCALING_FREQ_FACTORS;
    }
    uint32_t vocab = 0;
    int vrc = s_u32(g, p->arch, "vocab_size", false, 1, 1 << 22, &vocab, err, err_len);
    if (vrc < 0) {
        return vrc;
    }
    tb_gguf_type_t et;
    uint64_t n_tok = 0;
    if (vrc == 1 && tb_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n_tok) && n_tok > 0 &&
        n_tok <= (1u << 22)) {
        vocab = (uint32_t)n_tok;
        vrc = 0;
    }
    if (vrc == 1 && m->has_global[TB_TENSOR_TOK_EMBD]) {
        uint64_t rows = m->globals[TB_TENSOR_TOK_EMBD].rows;
        vocab = rows <= (1u << 22) ? (uint32_t)rows : 0;
    }
    p->vocab = vocab;
    return 0;
}
