/*
 * tb_model.c - the unified loaded model: dispatch to the HF or GGUF loader, tensor placement
 * (size and alignment checks), completeness and shape validation against the parameters, and
 * the accessors engines use.
 */
#include "tb_model_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tb_errors.h"

static const char *const s_global_names[TB_TENSOR_GLOBAL_COUNT] = {"tok_embd", "out_norm",
                                                                   "output", "rope_freqs"};
static const char *const s_layer_names[TB_LAYER_TENSOR_COUNT] = {"attn_norm",
                                                                 "wq",
                                                                 "wk",
                                                                 "wv",
                                                                 "bq",
                                                                 "bk",
                                                                 "bv",
                                                                 "wo",
                                                                 "ffn_norm",
                                                                 "w_gate",
                                                                 "w_up",
                                                                 "w_down",
                                                                 "attn_post_norm",
                                                                 "ffn_post_norm",
                                                                 "q_norm",
                                                                 "k_norm",
                                                                 "router",
                                                                 "sh_gate",
                                                                 "sh_up",
                                                                 "sh_down",
                                                                 "sh_gate_inp"};

const char *tb_rope_layout_name(tb_rope_layout_t l)
{
    return l == TB_ROPE_NEOX ? "neox" : l == TB_ROPE_INTERLEAVED ? "interleaved" : "?";
}

const char *tb_rope_scaling_name(tb_rope_scaling_type_t t)
{
    static const char *const n[] = {"none", "linear", "llama3", "freq_factors", "longrope"};
    return (int)t >= 0 && (size_t)t < sizeof n / sizeof n[0] ? n[t] : "?";
}

const char *tb_model_format_name(tb_model_format_t f)
{
    return f == TB_MODEL_FORMAT_HF ? "hf" : f == TB_MODEL_FORMAT_GGUF ? "gguf" : "?";
}

const char *tb_tokenizer_source_name(tb_tokenizer_source_t s)
{
    static const char *const n[] = {"none", "hf_json", "gguf"};
    return (int)s >= 0 && (size_t)s < sizeof n / sizeof n[0] ? n[s] : "?";
}

const char *tb_layer_tensor_name(tb_layer_tensor_t t)
{
    return (int)t >= 0 && t < TB_LAYER_TENSOR_COUNT ? s_layer_names[t] : "?";
}

const char *tb_tensor_id_name(tb_tensor_id_t id)
{
    return (int)id >= 0 && id < TB_TENSOR_GLOBAL_COUNT ? s_global_names[id] : "?";
}

void tb_model_slot_name(const struct tb_slot *slot, char *buf, size_t n)
{
    if (slot->is_layer && slot->is_expert) {
        snprintf(buf, n, "layers.%u.experts.%u.%s", slot->layer, slot->expert,
                 tb_expert_tensor_name(slot->ekind));
    } else if (slot->is_layer) {
        snprintf(buf, n, "layers.%u.%s", slot->layer, s_layer_names[slot->kind]);
    } else {
        snprintf(buf, n, "%s", s_global_names[slot->global]);
    }
}

void tb_model_params_init(struct tb_model_params *p)
{
    memset(p, 0, sizeof *p);
    p->bos_id = p->eos_id = p->pad_id = p->unk_id = -1;
    p->add_bos = p->add_eos = -1;
    p->gen.temperature = p->gen.top_p = p->gen.repetition_penalty = -1.0;
    p->gen.top_k = -1;
    p->gen.do_sample = -1;
    p->rope_theta = 10000.0;
}

void tb_model_params_release(struct tb_model_params *p)
{
    free(p->chat_template);
    free(p->tokenizer_path);
    p->chat_template = NULL;
    p->tokenizer_path = NULL;
}

int tb_model_alloc_layers(tb_model_t *m, char *err, size_t err_len)
{
    size_t n = (size_t)m->params.n_layers * TB_LAYER_TENSOR_COUNT;
    m->layers = calloc(n ? n : 1, sizeof *m->layers);
    m->has_layer = calloc(n ? n : 1, sizeof *m->has_layer);
    if (!m->layers || !m->has_layer) {
        snprintf(err, err_len, "out of memory for %u layers", m->params.n_layers);
        return TB_ENOMEM;
    }
    if (m->params.n_experts > 0) {
        int rc = tb_model_check_moe(&m->params, err, err_len);
        if (rc != 0) {
            return rc;
        }
        size_t ne = (size_t)m->params.n_layers * m->params.n_experts * TB_EXPERT_TENSOR_COUNT;
        m->experts = calloc(ne, sizeof *m->experts);
        m->has_expert = calloc(ne, sizeof *m->has_expert);
        if (!m->experts || !m->has_expert) {
            snprintf(err, err_len, "out of memory for %u experts", m->params.n_experts);
            return TB_ENOMEM;
        }
    }
    return 0;
}

static struct tb_tensor *s_slot_tensor(tb_model_t *m, const struct tb_slot *s, bool **has)
{
    if (s->is_layer && s->is_expert) {
        size_t i = ((size_t)s->layer * m->params.n_experts + s->expert) * TB_EXPERT_TENSOR_COUNT +
                   s->ekind;
        *has = &m->has_expert[i];
        return &m->experts[i];
    }
    if (s->is_layer) {
        size_t i = (size_t)s->layer * TB_LAYER_TENSOR_COUNT + s->kind;
        *has = &m->has_layer[i];
        return &m->layers[i];
    }
    *has = &m->has_global[s->global];
    return &m->globals[s->global];
}

int tb_model_place(tb_model_t *m, const struct tb_slot *slot, const char *source,
                   tb_dtype_t dtype, uint32_t n_dims, const uint64_t *dims, const void *data,
                   uint64_t size, char *err, size_t err_len)
{
    bool *has;
    struct tb_tensor *t = s_slot_tensor(m, slot, &has);
    if (*has) {
        return tb_err_fail(err, err_len, TB_EMODEL, "tensor '%s' appears twice (also as '%s')",
                           source, t->source);
    }
    if (n_dims != 1 && n_dims != 2) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': %u dimensions (expected 1 or 2)", source, n_dims);
    }
    uint64_t rows = n_dims == 2 ? dims[0] : 1;
    uint64_t cols = n_dims == 2 ? dims[1] : dims[0];
    uint64_t row_bytes;
    int rc = tb_dtype_bytes(dtype, cols, &row_bytes);
    if (rc == TB_EINVAL) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': row length %llu is not a multiple of %s's "
                           "block of %zu",
                           source, (unsigned long long)cols, tb_dtype_name(dtype),
                           tb_dtype_block_elems(dtype));
    }
    if (rc != 0 || (row_bytes && rows > UINT64_MAX / row_bytes) || rows * row_bytes != size) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': %llu x %llu %s needs %llu bytes, the file "
                           "gives %llu",
                           source, (unsigned long long)rows, (unsigned long long)cols,
                           tb_dtype_name(dtype),
                           (unsigned long long)(rc == 0 ? rows * row_bytes : 0),
                           (unsigned long long)size);
    }
    memset(t, 0, sizeof *t);
    tb_model_slot_name(slot, t->name, sizeof t->name);
    snprintf(t->source, sizeof t->source, "%s", source);
    t->dtype = dtype;
    t->n_dims = n_dims;
    t->rows = rows;
    t->cols = cols;
    t->row_bytes = row_bytes;
    t->size = size;
    size_t align = dtype == TB_DTYPE_F32 ? 4 : 2;
    if ((uintptr_t)data % align != 0) {
        void **grown = realloc(m->copies, (m->n_copies + 1) * sizeof *m->copies);
        if (!grown) {
            snprintf(err, err_len, "out of memory");
            return TB_ENOMEM;
        }
        m->copies = grown;
        void *copy = aligned_alloc(64, (size + 63) / 64 * 64);
        if (!copy) {
            snprintf(err, err_len, "out of memory copying misaligned tensor '%s' (%llu bytes)",
                     source, (unsigned long long)size);
            return TB_ENOMEM;
        }
        memcpy(copy, data, size);
        m->copies[m->n_copies++] = copy;
        m->copied_bytes += size;
        data = copy;
    }
    t->data = data;
    *has = true;
    return 0;
}

/* Bounds that keep every product below 2^63 and catch nonsense early. */
static int s_check_params(const struct tb_model_params *p, char *err, size_t err_len)
{
    const struct {
        const char *name;
        uint32_t v;
        uint32_t lo;
        uint32_t hi;
    } c[] = {
        {"layer count", p->n_layers, 1, 1024},
        {"hidden size", p->hidden, 1, 1 << 16},
        {"intermediate size", p->intermediate, 1, 1 << 20},
        {"attention head count", p->n_heads, 1, 1024},
        {"key/value head count", p->n_kv_heads, 1, 1024},
        {"head dimension", p->head_dim, 2, 1024},
        {"vocabulary size", p->vocab, 1, 1 << 22},
        {"context length", p->max_context, 1, 1 << 24},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        if (c[i].v < c[i].lo || c[i].v > c[i].hi) {
            return tb_err_fail(err, err_len, TB_EMODEL, "%s %u is out of range %u..%u", c[i].name,
                               c[i].v, c[i].lo, c[i].hi);
        }
    }
    if (p->head_dim % 2 != 0) {
        return tb_err_fail(err, err_len, TB_EMODEL, "head dimension %u is odd", p->head_dim);
    }
    if (p->n_heads % p->n_kv_heads != 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "attention head count %u is not a multiple of the "
                           "key/value head count %u",
                           p->n_heads, p->n_kv_heads);
    }
    if (p->n_experts > 0) {
        int rc = tb_model_check_moe(p, err, err_len);
        if (rc != 0) {
            return rc;
        }
    }
    if (!(p->rms_eps > 0 && p->rms_eps < 1)) {
        return tb_err_fail(err, err_len, TB_EMODEL, "rms norm epsilon %g is out of range (0, 1)",
                           p->rms_eps);
    }
    if (!(p->rope_theta > 0 && isfinite(p->rope_theta))) {
        return tb_err_fail(err, err_len, TB_EMODEL, "rope theta %g is not positive",
                           p->rope_theta);
    }
    const struct tb_rope_scaling *s = &p->rope_scaling;
    if ((s->type == TB_ROPE_SCALING_LINEAR || s->type == TB_ROPE_SCALING_LLAMA3) &&
        !(s->factor > 0 && isfinite(s->factor))) {
        return tb_err_fail(err, err_len, TB_EMODEL, "rope scaling factor %g is not positive",
                           s->factor);
    }
    if (s->type == TB_ROPE_SCALING_LLAMA3 &&
        !(s->low_freq_factor > 0 && s->high_freq_factor > s->low_freq_factor &&
          s->original_max_positions > 0)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "llama3 rope scaling needs 0 < low_freq_factor (%g) < "
                           "high_freq_factor (%g) and original_max_position_embeddings > 0",
                           s->low_freq_factor, s->high_freq_factor);
    }
    return tb_model_check_family(p, err, err_len);
}

static int s_check_shape(const struct tb_tensor *t, uint32_t n_dims, uint64_t rows, uint64_t cols,
                         char *err, size_t err_len)
{
    if (t->n_dims == n_dims && t->rows == rows && t->cols == cols) {
        return 0;
    }
    char want[64], got[64];
    if (n_dims == 1) {
        snprintf(want, sizeof want, "[%llu]", (unsigned long long)cols);
    } else {
        snprintf(want, sizeof want, "[%llu, %llu]", (unsigned long long)rows,
                 (unsigned long long)cols);
    }
    if (t->n_dims == 1) {
        snprintf(got, sizeof got, "[%llu]", (unsigned long long)t->cols);
    } else {
        snprintf(got, sizeof got, "[%llu, %llu]", (unsigned long long)t->rows,
                 (unsigned long long)t->cols);
    }
    return tb_err_fail(err, err_len, TB_EMODEL,
                       "tensor '%s' (%s) has shape %s, the config implies %s", t->name, t->source,
                       got, want);
}

static int s_check_vector_dtype(const struct tb_tensor *t, char *err, size_t err_len)
{
    if (tb_dtype_is_quantized(t->dtype)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s' (%s): dtype %s is not supported for a vector "
                           "(f32, f16, bf16)",
                           t->name, t->source, tb_dtype_name(t->dtype));
    }
    return 0;
}

/* Ties the embeddings when the config says so (either tensor stands for both). */
static void s_tie_embeddings(tb_model_t *m)
{
    struct tb_tensor *g = m->globals;
    bool *hg = m->has_global;
    if (!hg[TB_TENSOR_TOK_EMBD] && hg[TB_TENSOR_OUTPUT]) {
        g[TB_TENSOR_TOK_EMBD] = g[TB_TENSOR_OUTPUT];
        hg[TB_TENSOR_TOK_EMBD] = true;
    }
    if (hg[TB_TENSOR_TOK_EMBD]) {
        g[TB_TENSOR_OUTPUT] = g[TB_TENSOR_TOK_EMBD];
        hg[TB_TENSOR_OUTPUT] = true;
    }
    snprintf(g[TB_TENSOR_TOK_EMBD].name, sizeof g->name, "tok_embd");
    snprintf(g[TB_TENSOR_OUTPUT].name, sizeof g->name, "output");
}

/* rope_freqs (llama3 frequency factors): head_dim / 2 positive f32 values. */
static int s_check_rope_freqs(const tb_model_t *m, char *err, size_t err_len)
{
    const struct tb_model_params *p = &m->params;
    const struct tb_tensor *f = &m->globals[TB_TENSOR_ROPE_FREQS];
    int rc = s_check_shape(f, 1, 1, p->head_dim / 2, err, err_len);
    if (rc != 0) {
        return rc;
    }
    if (f->dtype != TB_DTYPE_F32) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor 'rope_freqs': dtype %s (expected f32)",
                           tb_dtype_name(f->dtype));
    }
    const float *v = f->data;
    for (uint32_t i = 0; i < p->head_dim / 2; i++) {
        if (!(v[i] > 0 && isfinite(v[i]))) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "tensor 'rope_freqs': element %u is %g, not a positive number", i,
                               (double)v[i]);
        }
    }
    return 0;
}

/* The model-wide tensors: present (embeddings, output, final norm, rope_freqs exactly when
 * the scaling uses them) and of the right shapes. */
static int s_check_globals(tb_model_t *m, char *err, size_t err_len)
{
    const struct tb_model_params *p = &m->params;
    const struct tb_tensor *g = m->globals;
    const bool *hg = m->has_global;
    bool hf = p->format == TB_MODEL_FORMAT_HF;
    if (!hg[TB_TENSOR_TOK_EMBD]) {
        return tb_err_fail(err, err_len, TB_EMODEL, "tensor 'tok_embd'%s is missing",
                           hf ? " (model.embed_tokens.weight)" : " (token_embd.weight)");
    }
    if (!hg[TB_TENSOR_OUTPUT]) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor 'output'%s is missing and the embeddings are not tied",
                           hf ? " (lm_head.weight)" : " (output.weight)");
    }
    if (!hg[TB_TENSOR_OUT_NORM]) {
        return tb_err_fail(err, err_len, TB_EMODEL, "tensor 'out_norm'%s is missing",
                           hf ? " (model.norm.weight)" : " (output_norm.weight)");
    }
    bool want_freqs = p->rope_scaling.type == TB_ROPE_SCALING_FREQ_FACTORS;
    if (want_freqs != hg[TB_TENSOR_ROPE_FREQS]) {
        return tb_err_fail(err, err_len, TB_EMODEL, "tensor 'rope_freqs' is %s",
                           want_freqs ? "missing" : "unexpected");
    }
    uint64_t h = p->hidden;
    int rc;
    if ((rc = s_check_shape(&g[TB_TENSOR_TOK_EMBD], 2, p->vocab, h, err, err_len)) != 0 ||
        (rc = s_check_shape(&g[TB_TENSOR_OUTPUT], 2, p->vocab, h, err, err_len)) != 0 ||
        (rc = s_check_shape(&g[TB_TENSOR_OUT_NORM], 1, 1, h, err, err_len)) != 0 ||
        (rc = s_check_vector_dtype(&g[TB_TENSOR_OUT_NORM], err, err_len)) != 0) {
        return rc;
    }
    return want_freqs ? s_check_rope_freqs(m, err, err_len) : 0;
}

/* One present layer tensor against its expected shape (the shared expert's gate may be a
 * vector or a one-row matrix: GGUF and HF store it so). */
static int s_check_layer_tensor(const struct tb_model_params *p, const struct tb_tensor *t, int k,
                                char *err, size_t err_len)
{
    uint64_t h = p->hidden;
    uint64_t qd = (uint64_t)p->n_heads * p->head_dim;
    uint64_t kvd = (uint64_t)p->n_kv_heads * p->head_dim;
    uint64_t ff = p->intermediate, sh = p->shared_intermediate;
    const struct {
        uint32_t n_dims;
        uint64_t rows;
        uint64_t cols;
    } want[TB_LAYER_TENSOR_COUNT] = {
        [TB_LAYER_ATTN_NORM] = {1, 1, h},
        [TB_LAYER_WQ] = {2, qd, h},
        [TB_LAYER_WK] = {2, kvd, h},
        [TB_LAYER_WV] = {2, kvd, h},
        [TB_LAYER_BQ] = {1, 1, qd},
        [TB_LAYER_BK] = {1, 1, kvd},
        [TB_LAYER_BV] = {1, 1, kvd},
        [TB_LAYER_WO] = {2, h, qd},
        [TB_LAYER_FFN_NORM] = {1, 1, h},
        [TB_LAYER_W_GATE] = {2, ff, h},
        [TB_LAYER_W_UP] = {2, ff, h},
        [TB_LAYER_W_DOWN] = {2, h, ff},
        [TB_LAYER_ATTN_POST_NORM] = {1, 1, h},
        [TB_LAYER_FFN_POST_NORM] = {1, 1, h},
        [TB_LAYER_Q_NORM] = {1, 1, p->head_dim},
        [TB_LAYER_K_NORM] = {1, 1, p->head_dim},
        [TB_LAYER_ROUTER] = {2, p->n_experts, h},
        [TB_LAYER_SH_GATE] = {2, sh, h},
        [TB_LAYER_SH_UP] = {2, sh, h},
        [TB_LAYER_SH_DOWN] = {2, h, sh},
        [TB_LAYER_SH_GATE_INP] = {1, 1, h},
    };
    uint32_t nd = want[k].n_dims;
    bool vector = nd == 1 || k == TB_LAYER_SH_GATE_INP;
    if (k == TB_LAYER_SH_GATE_INP && t->n_dims == 2) {
        nd = 2;
    }
    int rc = s_check_shape(t, nd, want[k].rows, want[k].cols, err, err_len);
    if (rc == 0 && vector) {
        rc = s_check_vector_dtype(t, err, err_len);
    }
    return rc;
}

/* What a misplaced tensor's message adds about its layer's MLP, into buf. */
static const char *s_layer_ffn_note(const struct tb_model_params *p, uint32_t l, char *buf,
                                    size_t n)
{
    buf[0] = '\0';
    if (p->n_experts > 0 && tb_model_moe_layer_count(p) == p->n_layers) {
        snprintf(buf, n, " (it has experts)");
    } else if (p->n_experts > 0) {
        snprintf(buf, n, " (its layer %u has %s)", l,
                 tb_model_layer_is_moe(p, l) ? "experts" : "a dense MLP");
    }
    return buf;
}

/* Layer l holds no tensor of another kind of layer (checked before the missing ones, so that a
 * layer of the wrong MLP kind is named as such). */
static int s_check_unwanted(const tb_model_t *m, uint32_t l, char *err, size_t err_len)
{
    const struct tb_model_params *p = &m->params;
    for (int k = 0; k < TB_LAYER_TENSOR_COUNT; k++) {
        size_t i = (size_t)l * TB_LAYER_TENSOR_COUNT + (size_t)k;
        bool is_bias = k == TB_LAYER_BQ || k == TB_LAYER_BK || k == TB_LAYER_BV;
        if (m->has_layer[i] && !is_bias &&
            !tb_model_layer_tensor_wanted(p, l, (tb_layer_tensor_t)k)) {
            char note[48];
            return tb_err_fail(err, err_len, TB_EMODEL, "tensor '%s' is not part of a %s model%s",
                               m->layers[i].source, p->arch,
                               s_layer_ffn_note(p, l, note, sizeof note));
        }
    }
    return 0;
}

/* Every layer's tensors present (q/k/v biases only when the model has them; the dense MLP or
 * the router and experts) and shaped for the params.  GGUF llama files may carry q/k/v
 * biases: then every layer must have all three, and params.qkv_bias is set. */
static int s_check_layers(tb_model_t *m, char *err, size_t err_len)
{
    struct tb_model_params *p = &m->params;
    bool any_bias = false;
    for (uint32_t l = 0; l < p->n_layers; l++) {
        int rc = s_check_unwanted(m, l, err, err_len);
        if (rc != 0) {
            return rc;
        }
        for (int k = 0; k < TB_LAYER_TENSOR_COUNT; k++) {
            size_t i = (size_t)l * TB_LAYER_TENSOR_COUNT + (size_t)k;
            bool is_bias = k == TB_LAYER_BQ || k == TB_LAYER_BK || k == TB_LAYER_BV;
            if (is_bias && m->has_layer[i]) {
                any_bias = true;
            }
            bool wanted = tb_model_layer_tensor_wanted(p, l, (tb_layer_tensor_t)k);
            if (!m->has_layer[i]) {
                if (!wanted || (is_bias && !p->qkv_bias)) {
                    continue;
                }
                return tb_err_fail(err, err_len, TB_EMODEL, "tensor 'layers.%u.%s' is missing", l,
                                   s_layer_names[k]);
            }
            rc = s_check_layer_tensor(p, &m->layers[i], k, err, err_len);
            if (rc != 0) {
                return rc;
            }
        }
    }
    if (any_bias && !p->qkv_bias) {
        p->qkv_bias = true;
        for (uint32_t l = 0; l < p->n_layers; l++) {
            for (int k = TB_LAYER_BQ; k <= TB_LAYER_BV; k++) {
                if (!m->has_layer[(size_t)l * TB_LAYER_TENSOR_COUNT + (size_t)k]) {
                    return tb_err_fail(err, err_len, TB_EMODEL,
                                       "tensor 'layers.%u.%s' is missing (other layers have "
                                       "q/k/v biases)",
                                       l, s_layer_names[k]);
                }
            }
        }
    }
    return p->n_experts > 0 ? tb_model_check_experts(m, err, err_len) : 0;
}

/* m->list: every present tensor (globals first), and the weight bytes (a tied output once). */
static int s_list_tensors(tb_model_t *m, char *err, size_t err_len)
{
    const struct tb_model_params *p = &m->params;
    size_t n_exp = (size_t)p->n_layers * p->n_experts * TB_EXPERT_TENSOR_COUNT;
    size_t cap = TB_TENSOR_GLOBAL_COUNT + (size_t)p->n_layers * TB_LAYER_TENSOR_COUNT + n_exp;
    m->list = calloc(cap, sizeof *m->list);
    if (!m->list) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    m->weight_bytes = 0;
    for (int i = 0; i < TB_TENSOR_GLOBAL_COUNT; i++) {
        if (m->has_global[i]) {
            m->list[m->n_list++] = &m->globals[i];
            if (!(i == TB_TENSOR_OUTPUT && p->tied_embeddings)) {
                m->weight_bytes += m->globals[i].size;
            }
        }
    }
    for (size_t i = 0; i < (size_t)p->n_layers * TB_LAYER_TENSOR_COUNT; i++) {
        if (m->has_layer[i]) {
            m->list[m->n_list++] = &m->layers[i];
            m->weight_bytes += m->layers[i].size;
        }
    }
    for (size_t i = 0; i < n_exp; i++) {
        if (m->has_expert[i]) {
            m->list[m->n_list++] = &m->experts[i];
            m->weight_bytes += m->experts[i].size;
        }
    }
    return 0;
}

int tb_model_finish(tb_model_t *m, char *err, size_t err_len)
{
    struct tb_model_params *p = &m->params;
    if (p->rope_dim == 0) {
        p->rope_dim = p->head_dim;
    }
    int rc = s_check_params(p, err, err_len);
    if (rc != 0) {
        return rc;
    }
    if (p->tied_embeddings) {
        s_tie_embeddings(m);
    }
    rc = s_check_globals(m, err, err_len);
    if (rc == 0) {
        rc = s_check_layers(m, err, err_len);
    }
    if (rc != 0) {
        return rc;
    }
    p->dtype = m->layers[TB_LAYER_WQ].dtype;
    return s_list_tensors(m, err, err_len);
}

int tb_model_open(const char *path, tb_model_t **out, char *err, size_t err_len)
{
    *out = NULL;
    int rc;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        rc = -errno;
        snprintf(err, err_len, "cannot open model '%s': %s", path, strerror(errno));
        return rc;
    }
    tb_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    tb_model_params_init(&m->params);
    char inner[1024] = "";
    if (S_ISDIR(sb.st_mode)) {
        rc = tb_model_load_hf(m, path, inner, sizeof inner);
    } else if (S_ISREG(sb.st_mode)) {
        rc = tb_model_load_gguf(m, path, inner, sizeof inner);
    } else {
        rc = TB_EMODEL;
        snprintf(inner, sizeof inner, "not a folder or a regular file");
    }
    if (rc == 0) {
        rc = tb_model_finish(m, inner, sizeof inner);
    }
    if (rc != 0) {
        snprintf(err, err_len, "cannot load model '%s': %s", path, inner);
        tb_model_close(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void tb_model_close(tb_model_t **m_p)
{
    if (!m_p || !*m_p) {
        return;
    }
    tb_model_t *m = *m_p;
    for (size_t i = 0; i < m->n_shards; i++) {
        tb_safetensors_close(&m->shards[i]);
    }
    tb_gguf_close(&m->gguf);
    for (size_t i = 0; i < m->n_copies; i++) {
        free(m->copies[i]);
    }
    free(m->copies);
    free(m->layers);
    free(m->has_layer);
    free(m->experts);
    free(m->has_expert);
    free(m->list);
    tb_model_params_release(&m->params);
    free(m);
    *m_p = NULL;
}

const struct tb_model_params *tb_model_params(const tb_model_t *m)
{
    return &m->params;
}

const struct tb_tensor *tb_model_tensor(const tb_model_t *m, tb_tensor_id_t id)
{
    if ((int)id < 0 || id >= TB_TENSOR_GLOBAL_COUNT || !m->has_global[id]) {
        return NULL;
    }
    return &m->globals[id];
}

const struct tb_tensor *tb_model_layer_tensor(const tb_model_t *m, uint32_t layer,
                                              tb_layer_tensor_t t)
{
    if (layer >= m->params.n_layers || (int)t < 0 || t >= TB_LAYER_TENSOR_COUNT) {
        return NULL;
    }
    size_t i = (size_t)layer * TB_LAYER_TENSOR_COUNT + t;
    return m->has_layer[i] ? &m->layers[i] : NULL;
}

const struct tb_tensor *tb_model_expert_tensor(const tb_model_t *m, uint32_t layer, uint32_t e,
                                               tb_expert_tensor_t t)
{
    const struct tb_model_params *p = &m->params;
    if (layer >= p->n_layers || e >= p->n_experts || (int)t < 0 || t >= TB_EXPERT_TENSOR_COUNT) {
        return NULL;
    }
    size_t i = ((size_t)layer * p->n_experts + e) * TB_EXPERT_TENSOR_COUNT + t;
    return m->has_expert[i] ? &m->experts[i] : NULL;
}

size_t tb_model_tensor_count(const tb_model_t *m)
{
    return m->n_list;
}

const struct tb_tensor *tb_model_tensor_at(const tb_model_t *m, size_t idx)
{
    return idx < m->n_list ? m->list[idx] : NULL;
}

const struct tb_tensor *tb_model_find_tensor(const tb_model_t *m, const char *name)
{
    for (size_t i = 0; i < m->n_list; i++) {
        if (strcmp(m->list[i]->name, name) == 0) {
            return m->list[i];
        }
    }
    return NULL;
}

/* Frequencies of base `theta` over `dim` rotating dimensions, scaled per `s` (`long_set`
 * picks LONGROPE's long factors). */
void tb_model_rope_freqs_scaled(const tb_model_t *m, double theta, uint32_t dim,
                                const struct tb_rope_scaling *s, bool long_set, double *out,
                                size_t n)
{
    const float *factors = s->type == TB_ROPE_SCALING_FREQ_FACTORS
                               ? m->globals[TB_TENSOR_ROPE_FREQS].data
                               : NULL;
    for (size_t i = 0; i < n; i++) {
        double f = pow(theta, -(double)(2 * i) / (double)dim);
        switch (s->type) {
        case TB_ROPE_SCALING_LINEAR:
            f /= s->factor;
            break;
        case TB_ROPE_SCALING_LLAMA3: {
            double old = (double)s->original_max_positions;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > old / s->low_freq_factor) {
                f /= s->factor;
            } else if (!(wavelen < old / s->high_freq_factor)) {
                double smooth = (old / wavelen - s->low_freq_factor) /
                                (s->high_freq_factor - s->low_freq_factor);
                f = (1.0 - smooth) * f / s->factor + smooth * f;
            }
            break;
        }
        case TB_ROPE_SCALING_FREQ_FACTORS:
            f /= (double)factors[i];
            break;
        case TB_ROPE_SCALING_LONGROPE:
            f /= long_set ? s->long_factor[i] : s->short_factor[i];
            break;
        default:
            break;
        }
        out[i] = f;
    }
}

int tb_model_rope_inv_freq(const tb_model_t *m, double *out, size_t n)
{
    const struct tb_model_params *p = &m->params;
    uint32_t dim = p->rope_dim ? p->rope_dim : p->head_dim;
    if (n != dim / 2) {
        return TB_EINVAL;
    }
    tb_model_rope_freqs_scaled(m, p->rope_theta, dim, &p->rope_scaling, false, out, n);
    return 0;
}

uint64_t tb_model_weight_bytes(const tb_model_t *m)
{
    return m->weight_bytes;
}

uint64_t tb_model_copied_bytes(const tb_model_t *m)
{
    return m->copied_bytes;
}

bool tb_model_in_file_map(const tb_model_t *m, const void *p, uint64_t n)
{
    return m && n <= SIZE_MAX && tb_gguf_in_file_map(m->gguf, p, (size_t)n);
}
