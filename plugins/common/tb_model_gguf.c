/*
 * tb_model_gguf.c - loads a GGUF file written the way llama.cpp writes them: the "llama",
 * "qwen2", "gemma2", "gemma3" and "phi3" architectures' metadata keys, tokenizer.ggml.* facts
 * and the blk.N.* tensors.
 * llama.cpp's converter permutes llama's Q/K rows so rotary pairs are interleaved; qwen2 files
 * keep the HF ("neox") layout.  Every tensor carries its own type and a file mixes them freely
 * (a "Q4_K_M" file is Q4_K and Q6_K matrices with F32 norms); tb_dtype.h lists the types taken.
 * Also "qwen3" (per-head q/k norms), and the mixtures of experts "qwen3moe", "qwen2moe" and
 * "llama" with an expert count (Mixtral): the router ffn_gate_inp and each layer's experts as
 * 3-D tensors ffn_{gate,up,down}_exps (or, in older Mixtral files, one 2-D tensor per expert);
 * a layer with ffn_{gate,up,down} and no router is a dense layer among the expert layers.
 */
#include <math.h>
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
    uint32_t kl = 0, vl = 0, rd = 0;
    if ((rc = s_u32(g, arch, "attention.key_length", false, 2, 1024, &kl, err, err_len)) < 0 ||
        (rc = s_u32(g, arch, "attention.value_length", false, 2, 1024, &vl, err, err_len)) < 0 ||
        (rc = s_u32(g, arch, "rope.dimension_count", false, 2, 1024, &rd, err, err_len)) < 0) {
        return rc;
    }
    if (!kl && p->hidden % p->n_heads != 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "%s.embedding_length %u is not a multiple of "
                           "%s.attention.head_count %u",
                           arch, p->hidden, arch, p->n_heads);
    }
    p->head_dim = kl ? kl : p->hidden / p->n_heads;
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
    p->rope_dim = rd ? rd : p->head_dim;
    if (rd && rd != p->head_dim && !(strcmp(arch, "phi3") == 0 && rd < p->head_dim)) {
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
        if ((st.len == 4 && memcmp(st.ptr, "none", 4) == 0) ||
            (strcmp(arch, "phi3") == 0 && st.len == 8 && memcmp(st.ptr, "longrope", 8) == 0)) {
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
    {"post_attention_norm.weight", TB_LAYER_ATTN_POST_NORM},
    {"post_ffw_norm.weight", TB_LAYER_FFN_POST_NORM},
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

/* attention.sliding_window_pattern as a list of one bool per layer (true: sliding), the form
 * newer llama.cpp converters write for some models. */
static int s_window_flags(const tb_gguf_t *g, const char *key, tb_gguf_type_t et, uint64_t n,
                          struct tb_model_params *p, char *err, size_t err_len)
{
    if ((et != TB_GGUF_BOOL && et != TB_GGUF_UINT8) || n != p->n_layers) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "metadata '%s' is not a list of %u booleans (one per layer)", key,
                           p->n_layers);
    }
    const uint8_t *v = tb_gguf_array_data(g, key);
    for (uint32_t l = 0; l < p->n_layers; l++) {
        p->layer_full[l] = v[l] == 0;
    }
    return 0;
}

/* Gemma 2/3 (llama.cpp's gemma2 / gemma3): GeGLU, post-norms (the converter stores norms as
 * 1 + weight), embeddings times sqrt(hidden), soft-caps from their keys, the score scale
 * (attention.scale, else llama.cpp's rule: 1/sqrt(hidden / heads) for the 27B shapes of 46 or 62
 * layers, 1/sqrt(head_dim) otherwise), the sliding pattern (every 2nd / 6th layer global, or
 * attention.sliding_window_pattern) and Gemma 3's q/k norms and local RoPE base
 * (rope.freq_base_swa, else 10000); without attention.sliding_window the window is 4096, as
 * llama.cpp assumes. */
static int s_gemma_params(const tb_gguf_t *g, const char *arch, struct tb_model_params *p,
                          char *err, size_t err_len)
{
    bool g3 = strcmp(arch, "gemma3") == 0;
    char key[128];
    int rc;
    p->ffn_act = TB_FFN_GELU_TANH;
    p->post_norms = true;
    p->qk_norm = g3;
    p->embed_scale = sqrt((double)p->hidden);
    bool big = p->n_layers == (g3 ? 62u : 46u);
    p->attn_scale = 1.0 / sqrt(big ? (double)p->hidden / p->n_heads : (double)p->head_dim);
    const char *f64_keys[4] = {"attention.scale", "attn_logit_softcapping",
                               "final_logit_softcapping", "rope.freq_base_swa"};
    double *f64_dst[4] = {&p->attn_scale, &p->attn_softcap, &p->final_softcap,
                          &p->rope_theta_local};
    if (g3) {
        p->rope_theta_local = 10000.0;
    }
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, f64_keys[i]);
        if ((rc = s_f64(g, key, f64_dst[i], err, err_len)) < 0) {
            return rc;
        }
    }
    snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
    if (tb_gguf_find_key(g, key) < 0) {
        p->sliding_window = 4096; /* llama.cpp's default for Gemma files without the key */
    }
    uint32_t period = g3 ? 6 : 2;
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", arch);
    tb_gguf_type_t et;
    uint64_t n = 0;
    if (tb_gguf_get_array(g, key, &et, &n)) {
        return s_window_flags(g, key, et, n, p, err, err_len);
    }
    if ((rc = s_u32(g, arch, "attention.sliding_window_pattern", false, 1, 1 << 20, &period, err,
                    err_len)) < 0) {
        return rc;
    }
    tb_model_set_window_pattern(p, period);
    return 0;
}

/* Phi-3's LongRoPE: the rope_factors_short / _long tensors (rope_dim / 2 f32 values each). */
static int s_longrope_tensor(struct tb_model_params *p, const struct tb_gguf_tensor *t, bool lng,
                             const char *name, char *err, size_t err_len)
{
    uint32_t n = p->rope_dim / 2;
    if (t->ggml_type != 0 || t->n_dims != 1 || t->dims[0] != n || t->size != (uint64_t)n * 4 ||
        n > TB_MODEL_MAX_ROPE_PAIRS) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': expected %u f32 values (rotary dimensions / 2)", name,
                           n);
    }
    double *dst = lng ? p->rope_scaling.long_factor : p->rope_scaling.short_factor;
    for (uint32_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, (const uint8_t *)t->data + (size_t)i * 4, 4);
        dst[i] = v;
    }
    p->rope_scaling.type = TB_ROPE_SCALING_LONGROPE;
    return 0;
}

/* Phi-3: LongRoPE's original context and attention factor keys. */
static int s_phi3_params(const tb_gguf_t *g, const char *arch, struct tb_model_params *p,
                         char *err, size_t err_len)
{
    int rc = s_u32(g, arch, "rope.scaling.original_context_length", false, 1, 1 << 24,
                   &p->rope_scaling.original_max_positions, err, err_len);
    if (rc < 0) {
        return rc;
    }
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.attn_factor", arch);
    rc = s_f64(g, key, &p->rope_scaling.attn_factor, err, err_len);
    return rc < 0 ? rc : 0;
}

/* Where tensor `name` goes: MAP_SLOT (*slot, *fused for Phi-3's fused matrices, *all_experts for
 * a 3-D tensor of every expert), MAP_SHORT / MAP_LONG (Phi-3's rope factors), or MAP_UNKNOWN. */
enum { MAP_UNKNOWN = 0, MAP_SLOT, MAP_SHORT, MAP_LONG };
enum { FUSED_NONE = 0, FUSED_QKV, FUSED_GATE_UP };

static int s_map_name(const char *name, const struct tb_model_params *params,
                      struct tb_slot *slot, int *fused, bool *all_experts)
{
    static const char *const globals[TB_TENSOR_GLOBAL_COUNT] = {"token_embd.weight",
                                                                "output_norm.weight",
                                                                "output.weight",
                                                                "rope_freqs.weight"};
    const bool phi3 = strcmp(params->arch, "phi3") == 0;
    memset(slot, 0, sizeof *slot);
    *fused = FUSED_NONE;
    *all_experts = false;
    for (int i = 0; i < TB_TENSOR_GLOBAL_COUNT; i++) {
        if (strcmp(name, globals[i]) == 0) {
            slot->global = (tb_tensor_id_t)i;
            return MAP_SLOT;
        }
    }
    if (phi3 && strcmp(name, "rope_factors_short.weight") == 0) {
        return MAP_SHORT;
    }
    if (phi3 && strcmp(name, "rope_factors_long.weight") == 0) {
        return MAP_LONG;
    }
    if (strncmp(name, "blk.", 4) != 0) {
        return MAP_UNKNOWN;
    }
    const char *p = name + 4;
    const char *digits = p;
    uint64_t layer = 0;
    while (*p >= '0' && *p <= '9' && p - digits < 6) {
        layer = layer * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == digits || *p != '.' || (p - digits > 1 && *digits == '0') ||
        layer >= params->n_layers) {
        return MAP_UNKNOWN;
    }
    p++;
    slot->is_layer = true;
    slot->layer = (uint32_t)layer;
    if (phi3 && (strcmp(p, "attn_qkv.weight") == 0 || strcmp(p, "ffn_up.weight") == 0)) {
        *fused = p[0] == 'a' ? FUSED_QKV : FUSED_GATE_UP;
        return MAP_SLOT;
    }
    for (size_t i = 0; i < sizeof s_layer_map / sizeof s_layer_map[0]; i++) {
        if (strcmp(p, s_layer_map[i].suffix) == 0) {
            slot->kind = s_layer_map[i].kind;
            return MAP_SLOT;
        }
    }
    if (params->n_experts > 0 && s_map_expert(p, slot, all_experts)) {
        return *all_experts || slot->expert < params->n_experts ? MAP_SLOT : MAP_UNKNOWN;
    }
    return MAP_UNKNOWN;
}

/* Places one file tensor per its mapping (fused matrices split into views). */
static int s_place_tensor(tb_model_t *m, const struct tb_slot *slot, int fused, const char *name,
                          tb_dtype_t dt, const struct tb_gguf_tensor *t, char *err,
                          size_t err_len)
{
    const struct tb_model_params *p = &m->params;
    uint64_t dims[2] = {t->n_dims == 2 ? t->dims[1] : t->dims[0], t->dims[0]};
    if (fused == FUSED_NONE) {
        return tb_model_place(m, slot, name, dt, t->n_dims, dims, t->data, t->size, err, err_len);
    }
    const uint64_t qd = (uint64_t)p->n_heads * p->head_dim;
    const uint64_t kvd = (uint64_t)p->n_kv_heads * p->head_dim;
    const tb_layer_tensor_t qkv[3] = {TB_LAYER_WQ, TB_LAYER_WK, TB_LAYER_WV};
    const tb_layer_tensor_t gu[2] = {TB_LAYER_W_GATE, TB_LAYER_W_UP};
    const uint64_t qkv_rows[3] = {qd, kvd, kvd};
    const uint64_t gu_rows[2] = {p->intermediate, p->intermediate};
    bool is_qkv = fused == FUSED_QKV;
    return tb_model_place_fused(m, slot->layer, is_qkv ? qkv : gu, is_qkv ? qkv_rows : gu_rows,
                                is_qkv ? 3 : 2, name, dt, t->n_dims, dims, t->data, t->size, err,
                                err_len);
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
 * Qwen, Gemma and Phi-3 families in the HF layout (llama.cpp's converter keeps HF's rows; Gemma 3's
 * q/k norms are set by s_gemma_params). */
static int s_arch(struct tb_gguf_str a, struct tb_model_params *p, char *err, size_t err_len)
{
    static const struct {
        const char *name;
        tb_rope_layout_t layout;
        bool qkv_bias, qk_norm;
    } archs[] = {
        {"llama", TB_ROPE_INTERLEAVED, false, false}, {"qwen2", TB_ROPE_NEOX, true, false},
        {"qwen3", TB_ROPE_NEOX, false, true},         {"qwen3moe", TB_ROPE_NEOX, false, true},
        {"qwen2moe", TB_ROPE_NEOX, true, false},      {"gemma2", TB_ROPE_NEOX, false, false},
        {"gemma3", TB_ROPE_NEOX, false, false},       {"phi3", TB_ROPE_NEOX, false, false},
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
                       "(llama, qwen2, qwen3, qwen3moe, qwen2moe, gemma2, gemma3, phi3)",
                       (int)(a.len > 32 ? 32 : a.len), a.ptr);
}

/* Which layers of an expert model are dense: GGUF has no per-layer key for Qwen MoE's
 * mlp_only_layers, so a layer is dense when it carries the dense MLP (ffn_gate/ffn_up/ffn_down)
 * and no router (ffn_gate_inp); the loader's checks then refuse the other tensors of its kind.
 * <arch>.leading_dense_block_count (written for families whose first layers are dense), when
 * present, must agree: layers below it dense, the others not. */
static int s_dense_layers(tb_model_t *m, char *err, size_t err_len)
{
    struct tb_model_params *p = &m->params;
    if (p->n_experts == 0) {
        return 0;
    }
    uint32_t lead = 0;
    int rc = s_u32(m->gguf, p->arch, "leading_dense_block_count", false, 0, p->n_layers, &lead,
                   err, err_len);
    if (rc < 0) {
        return rc;
    }
    for (uint32_t l = 0; l < p->n_layers; l++) {
        const bool *has = &m->has_layer[(size_t)l * TB_LAYER_TENSOR_COUNT];
        bool mlp = has[TB_LAYER_W_GATE] || has[TB_LAYER_W_UP] || has[TB_LAYER_W_DOWN];
        p->layer_dense[l] = mlp && !has[TB_LAYER_ROUTER];
        if (rc == 0 && p->layer_dense[l] && l >= lead) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "metadata '%s.leading_dense_block_count' is %u, but layer %u is "
                               "dense (blk.%u.ffn_gate/up/down, no ffn_gate_inp)",
                               p->arch, lead, l, l);
        }
        if (rc == 0 && !p->layer_dense[l] && l < lead) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "metadata '%s.leading_dense_block_count' is %u, but layer %u is "
                               "not dense (blk.%u.ffn_gate_inp, or no ffn_gate/up/down)",
                               p->arch, lead, l, l);
        }
    }
    return 0;
}

/* One tensor of the file into its slot (3-D only for all of a layer's experts; Phi-3's rope
 * factors into the params, its fused matrices split into views). */
static int s_place_one(tb_model_t *m, const struct tb_gguf_tensor *t, const char *name,
                       bool *has_output, char *err, size_t err_len)
{
    struct tb_model_params *p = &m->params;
    struct tb_slot slot;
    bool all_experts;
    int fused;
    int where = t->name.len > 120 ? MAP_UNKNOWN
                                  : s_map_name(name, p, &slot, &fused, &all_experts);
    if (where == MAP_UNKNOWN) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s' is not part of a supported %s model with "
                           "%u layers%s",
                           name, p->arch, p->n_layers, p->n_experts ? " and experts" : "");
    }
    if (where == MAP_SHORT || where == MAP_LONG) {
        return s_longrope_tensor(p, t, where == MAP_LONG, name, err, err_len);
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
    if (slot.global == TB_TENSOR_OUTPUT && !slot.is_layer) {
        *has_output = true;
    }
    return s_place_tensor(m, &slot, fused, name, dt, t, err, err_len);
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
        (strncmp(p->arch, "gemma", 5) == 0 &&
         (rc = s_gemma_params(g, p->arch, p, err, err_len)) != 0) ||
        (strcmp(p->arch, "phi3") == 0 &&
         (rc = s_phi3_params(g, p->arch, p, err, err_len)) != 0) ||
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
    if ((rc = s_dense_layers(m, err, err_len)) != 0) {
        return rc;
    }
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
