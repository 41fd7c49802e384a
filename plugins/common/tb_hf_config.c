/*
 * tb_hf_config.c - parses a Hugging Face folder's config.json, generation_config.json and
 * tokenizer_config.json (jansson) into tb_model_params, refusing what Turbine cannot compute.
 */
#include "tb_hf_config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tb_errors.h"

#define MAX_FILE (64u << 20)

enum { ABSENT = 1 }; /* helper result: key absent or null, nothing written */

/* A short printable rendering of a JSON value for messages (static buffer per call site is
 * avoided: the caller passes one). */
static const char *s_show(json_t *v, char *buf, size_t n)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s) {
        snprintf(buf, n, "?");
    } else if (strlen(s) > 60) {
        snprintf(buf, n, "%.57s...", s);
    } else {
        snprintf(buf, n, "%s", s);
    }
    free(s);
    return buf;
}

static int s_bad(const char *file, const char *key, json_t *v, const char *why, char *err,
                 size_t err_len)
{
    char buf[72];
    return tb_err_fail(err, err_len, TB_EMODEL, "%s: %s %s: %s", file, key,
                       s_show(v, buf, sizeof buf), why);
}

/* Integer in [lo, hi]; integral reals (2048.0) are accepted. */
static int s_int(json_t *obj, const char *file, const char *key, long long lo, long long hi,
                 long long *out, char *err, size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        return ABSENT;
    }
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v);
    } else {
        return s_bad(file, key, v, "is not an integer", err, err_len);
    }
    if (x < lo || x > hi) {
        char why[64];
        snprintf(why, sizeof why, "is out of range %lld..%lld", lo, hi);
        return s_bad(file, key, v, why, err, err_len);
    }
    *out = x;
    return 0;
}

static int s_u32(json_t *obj, const char *file, const char *key, bool required, long long lo,
                 long long hi, uint32_t *out, char *err, size_t err_len)
{
    long long x;
    int rc = s_int(obj, file, key, lo, hi, &x, err, err_len);
    if (rc == ABSENT && required) {
        return tb_err_fail(err, err_len, TB_EMODEL, "%s: required key '%s' is missing", file,
                           key);
    }
    if (rc == 0) {
        *out = (uint32_t)x;
    }
    return rc;
}

/* Number (integer or real) in [lo, hi]. */
static int s_num(json_t *obj, const char *file, const char *key, double lo, double hi,
                 double *out, char *err, size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        return ABSENT;
    }
    if (!json_is_number(v)) {
        return s_bad(file, key, v, "is not a number", err, err_len);
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        char why[80];
        snprintf(why, sizeof why, "is out of range %g..%g", lo, hi);
        return s_bad(file, key, v, why, err, err_len);
    }
    *out = x;
    return 0;
}

static int s_bool(json_t *obj, const char *file, const char *key, bool *out, char *err,
                  size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        return ABSENT;
    }
    if (!json_is_boolean(v)) {
        return s_bad(file, key, v, "is not true or false", err, err_len);
    }
    *out = json_is_true(v);
    return 0;
}

static bool s_has_eos(const struct tb_model_params *p, int32_t id)
{
    for (uint32_t i = 0; i < p->n_eos_ids; i++) {
        if (p->eos_ids[i] == id) {
            return true;
        }
    }
    return false;
}

/* Token id fields: an integer, null, or (for eos) a list of integers. */
static int s_ids(json_t *obj, const char *file, const char *key, bool list_ok, int32_t *first,
                 struct tb_model_params *eos_into, char *err, size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        return ABSENT;
    }
    json_t *one = v;
    size_t n = 1;
    if (json_is_array(v)) {
        if (!list_ok) {
            return s_bad(file, key, v, "is not an integer", err, err_len);
        }
        n = json_array_size(v);
        if (n == 0) {
            return ABSENT;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (json_is_array(v)) {
            one = json_array_get(v, i);
        }
        if (!json_is_integer(one) || json_integer_value(one) < 0 ||
            json_integer_value(one) > INT32_MAX) {
            return s_bad(file, key, v, "is not a token id (a non-negative integer)", err,
                         err_len);
        }
        int32_t id = (int32_t)json_integer_value(one);
        if (i == 0) {
            *first = id;
        }
        if (eos_into && !s_has_eos(eos_into, id)) {
            if (eos_into->n_eos_ids >= TB_MODEL_MAX_EOS) {
                return s_bad(file, key, v, "lists too many end-of-sequence ids", err, err_len);
            }
            eos_into->eos_ids[eos_into->n_eos_ids++] = id;
        }
    }
    return 0;
}

static json_t *s_load(const char *file, const char *text, size_t len, char *err, size_t err_len,
                      int *rc)
{
    json_error_t jerr;
    /* tokenizer_config.json files carry integers beyond 64 bits (model_max_length 1e30) and
     * read no integer Turbine needs: there, integers decode as reals. */
    size_t flags = JSON_REJECT_DUPLICATES;
    if (strcmp(file, "tokenizer_config.json") == 0 || strcmp(file, "chat_template.json") == 0) {
        flags |= JSON_DECODE_INT_AS_REAL;
    }
    json_t *root = json_loadb(text, len, flags, &jerr);
    if (!root) {
        *rc = tb_err_fail(err, err_len, TB_EMODEL, "%s: invalid JSON at line %d column %d: %s",
                          file, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *rc = tb_err_fail(err, err_len, TB_EMODEL, "%s: the top level is not a JSON object",
                          file);
        return NULL;
    }
    *rc = 0;
    return root;
}

/* model_type, architectures[0], the arch Turbine records */
static const char *const s_arch_names[][3] = {
    {"llama", "LlamaForCausalLM", "llama"},
    {"mistral", "MistralForCausalLM", "mistral"},
    {"qwen2", "Qwen2ForCausalLM", "qwen2"},
    {"gemma2", "Gemma2ForCausalLM", "gemma2"},
    {"gemma3_text", "Gemma3ForCausalLM", "gemma3"},
    {"phi3", "Phi3ForCausalLM", "phi3"},
    {"qwen3", "Qwen3ForCausalLM", "qwen3"},
    {"mixtral", "MixtralForCausalLM", "mixtral"},
    {"qwen3_moe", "Qwen3MoeForCausalLM", "qwen3_moe"},
    {"qwen2_moe", "Qwen2MoeForCausalLM", "qwen2_moe"},
};

static bool s_is_gemma(const struct tb_model_params *p)
{
    return strcmp(p->arch, "gemma2") == 0 || strcmp(p->arch, "gemma3") == 0;
}
#define N_ARCH (sizeof s_arch_names / sizeof s_arch_names[0])

static int s_arch(json_t *root, const char *file, struct tb_model_params *p, char *err,
                  size_t err_len)
{
    json_t *mt = json_object_get(root, "model_type");
    json_t *archs = json_object_get(root, "architectures");
    json_t *a0 = json_is_array(archs) ? json_array_get(archs, 0) : NULL;
    if (archs && !json_is_null(archs) && !(json_is_array(archs) && json_is_string(a0))) {
        return s_bad(file, "architectures", archs, "is not a list of class names", err, err_len);
    }
    int found = -1;
    if (mt && !json_is_null(mt)) {
        if (!json_is_string(mt)) {
            return s_bad(file, "model_type", mt, "is not a string", err, err_len);
        }
        for (size_t i = 0; i < N_ARCH; i++) {
            if (strcmp(json_string_value(mt), s_arch_names[i][0]) == 0) {
                found = (int)i;
            }
        }
        if (found < 0) {
            return s_bad(file, "model_type", mt,
                         "is not supported (supported: llama, mistral, qwen2, gemma2, "
                         "gemma3_text, phi3, qwen3, mixtral, qwen3_moe, qwen2_moe)",
                         err, err_len);
        }
    }
    if (a0) {
        int by_class = -1;
        for (size_t i = 0; i < N_ARCH; i++) {
            if (strcmp(json_string_value(a0), s_arch_names[i][1]) == 0) {
                by_class = (int)i;
            }
        }
        if (by_class < 0) {
            return s_bad(file, "architectures[0]", a0,
                         "is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
                         "Qwen2ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, "
                         "Phi3ForCausalLM, Qwen3ForCausalLM, MixtralForCausalLM, "
                         "Qwen3MoeForCausalLM, Qwen2MoeForCausalLM)",
                         err, err_len);
        }
        if (found < 0) {
            found = by_class;
        }
    }
    if (found < 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "%s: neither model_type nor architectures is given", file);
    }
    snprintf(p->arch, sizeof p->arch, "%s", s_arch_names[found][2]);
    return 0;
}

/* One longrope factor list: rope_dim / 2 positive numbers. */
static int s_factor_list(json_t *rs, const char *file, const char *key, uint32_t n, double *out,
                         char *err, size_t err_len)
{
    json_t *v = json_object_get(rs, key);
    if (!json_is_array(v) || json_array_size(v) != n) {
        char why[96];
        snprintf(why, sizeof why, "is not a list of %u factors (rotary dimensions / 2)", n);
        return s_bad(file, key, v ? v : json_null(), why, err, err_len);
    }
    for (uint32_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_number(x) || !(json_number_value(x) > 0 && json_number_value(x) < 1e12)) {
            return s_bad(file, key, x, "is not a positive number", err, err_len);
        }
        out[i] = json_number_value(x);
    }
    return 0;
}

/* Phi-3's LongRoPE ("longrope", formerly "su"): short and long factor lists, the original
 * context (config.json's original_max_position_embeddings, else rope_scaling's, else
 * max_position_embeddings) and the attention factor (given, else transformers' formula
 * sqrt(1 + ln(max / original) / ln(original)) when max > original, else 1). */
static int s_longrope(json_t *rs, const char *file, struct tb_model_params *p, char *err,
                      size_t err_len)
{
    struct tb_rope_scaling *s = &p->rope_scaling;
    s->type = TB_ROPE_SCALING_LONGROPE;
    uint32_t n = p->rope_dim / 2;
    if (n > TB_MODEL_MAX_ROPE_PAIRS) {
        return tb_err_fail(err, err_len, TB_EMODEL, "%s: longrope over %u rotary pairs", file, n);
    }
    int rc = s_factor_list(rs, file, "short_factor", n, s->short_factor, err, err_len);
    if (rc == 0) {
        rc = s_factor_list(rs, file, "long_factor", n, s->long_factor, err, err_len);
    }
    if (rc != 0) {
        return rc;
    }
    if (s->original_max_positions == 0) {
        rc = s_u32(rs, file, "original_max_position_embeddings", false, 1, 1 << 24,
                   &s->original_max_positions, err, err_len);
        if (rc < 0) {
            return rc;
        }
    }
    if (s->original_max_positions == 0) {
        s->original_max_positions = p->max_context;
    }
    s->attn_factor = 0;
    rc = s_num(rs, file, "attention_factor", 1e-6, 1e6, &s->attn_factor, err, err_len);
    if (rc < 0) {
        return rc;
    }
    double scale = (double)p->max_context / (double)s->original_max_positions;
    if (rc == ABSENT) {
        s->attn_factor = scale > 1.0 && s->original_max_positions > 1
                             ? sqrt(1.0 + log(scale) / log((double)s->original_max_positions))
                             : 1.0;
    }
    return 0;
}

/* rope_scaling (or transformers 5's rope_parameters) object. */
static int s_rope_scaling(json_t *rs, const char *file, struct tb_model_params *p, char *err,
                          size_t err_len)
{
    if (!rs || json_is_null(rs)) {
        return 0;
    }
    if (!json_is_object(rs)) {
        return s_bad(file, "rope_scaling", rs, "is not an object", err, err_len);
    }
    json_t *t = json_object_get(rs, "rope_type");
    const char *tkey = "rope_scaling.rope_type";
    if (!t || json_is_null(t)) {
        t = json_object_get(rs, "type");
        tkey = "rope_scaling.type";
    }
    if (!t || json_is_null(t)) {
        return tb_err_fail(err, err_len, TB_EMODEL, "%s: rope_scaling has no rope_type", file);
    }
    if (!json_is_string(t)) {
        return s_bad(file, tkey, t, "is not a string", err, err_len);
    }
    const char *name = json_string_value(t);
    struct tb_rope_scaling *s = &p->rope_scaling;
    int rc;
    if (strcmp(name, "default") == 0) {
        s->type = TB_ROPE_SCALING_NONE;
        return 0;
    }
    if (strcmp(name, "linear") == 0) {
        s->type = TB_ROPE_SCALING_LINEAR;
        rc = s_num(rs, file, "factor", 1e-6, 1e6, &s->factor, err, err_len);
        if (rc == ABSENT) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "%s: rope_scaling type linear needs 'factor'", file);
        }
        return rc;
    }
    if (strcmp(name, "llama3") == 0) {
        s->type = TB_ROPE_SCALING_LLAMA3;
        const char *keys[3] = {"factor", "low_freq_factor", "high_freq_factor"};
        double *vals[3] = {&s->factor, &s->low_freq_factor, &s->high_freq_factor};
        for (int i = 0; i < 3; i++) {
            rc = s_num(rs, file, keys[i], 1e-6, 1e6, vals[i], err, err_len);
            if (rc == ABSENT) {
                return tb_err_fail(err, err_len, TB_EMODEL,
                                   "%s: rope_scaling type llama3 needs '%s'", file, keys[i]);
            }
            if (rc != 0) {
                return rc;
            }
        }
        rc = s_u32(rs, file, "original_max_position_embeddings", true, 1, 1 << 24,
                   &s->original_max_positions, err, err_len);
        if (rc != 0) {
            return rc;
        }
        if (!(s->high_freq_factor > s->low_freq_factor)) {
            return tb_err_fail(
                err, err_len, TB_EMODEL,
                "%s: rope_scaling high_freq_factor %g must exceed low_freq_factor %g", file,
                s->high_freq_factor, s->low_freq_factor);
        }
        return 0;
    }
    if (strcmp(name, "longrope") == 0 || strcmp(name, "su") == 0) {
        return s_longrope(rs, file, p, err, err_len);
    }
    return s_bad(file, tkey, t, "is not supported (supported: default, linear, llama3, longrope)",
                 err, err_len);
}

/* Which layers the window applies to, as transformers decides: `layer_types` when the config
 * lists it, else for qwen2 the layers from `max_window_layers` on (default 28), else for Gemma
 * its pattern (Gemma 2: every second layer global; Gemma 3: every sliding_window_pattern-th,
 * default 6), else all.  The others are marked full (params.layer_full); none sliding clears
 * the window. */
static int s_window_layers(json_t *root, const char *file, struct tb_model_params *p, char *err,
                           size_t err_len)
{
    uint32_t n_sliding = 0;
    json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || json_array_size(lt) != p->n_layers) {
            return s_bad(file, "layer_types", lt, "is not a list of one type per layer", err,
                         err_len);
        }
        for (size_t i = 0; i < json_array_size(lt); i++) {
            const char *t = json_string_value(json_array_get(lt, i));
            p->layer_full[i] = true;
            if (t && strcmp(t, "sliding_attention") == 0) {
                p->layer_full[i] = false;
                n_sliding++;
            } else if (!t || strcmp(t, "full_attention") != 0) {
                return s_bad(file, "layer_types", lt,
                             "holds a type other than full_attention and sliding_attention", err,
                             err_len);
            }
        }
    } else if (strncmp(p->arch, "qwen", 4) == 0) {
        uint32_t first = 28; /* transformers' Qwen2Config default (Qwen3's too) */
        int rc = s_u32(root, file, "max_window_layers", false, 0, 1 << 20, &first, err, err_len);
        if (rc < 0) {
            return rc;
        }
        for (uint32_t l = 0; l < p->n_layers; l++) {
            p->layer_full[l] = l < first;
            n_sliding += l >= first;
        }
    } else if (s_is_gemma(p)) {
        uint32_t period = strcmp(p->arch, "gemma2") == 0 ? 2 : 6;
        int rc = strcmp(p->arch, "gemma3") == 0 ? s_u32(root, file, "sliding_window_pattern",
                                                        false, 1, 1 << 20, &period, err, err_len)
                                                : 0;
        if (rc < 0) {
            return rc;
        }
        tb_model_set_window_pattern(p, period);
        for (uint32_t l = 0; l < p->n_layers; l++) {
            n_sliding += !p->layer_full[l];
        }
    } else {
        n_sliding = p->n_layers;
    }
    if (n_sliding == 0) {
        p->sliding_window = 0;
        memset(p->layer_full, 0, sizeof p->layer_full);
    }
    return 0;
}

/* Layer count, widths, heads and head_dim, with their consistency checks. */
static int s_shape(json_t *root, const char *F, struct tb_model_params *p, char *err,
                   size_t err_len)
{
    int rc;
    struct {
        const char *key;
        long long hi;
        uint32_t *dst;
    } req[] = {
        {"num_hidden_layers", 1024, &p->n_layers},
        {"hidden_size", 1 << 16, &p->hidden},
        {"intermediate_size", 1 << 20, &p->intermediate},
        {"num_attention_heads", 1024, &p->n_heads},
        {"vocab_size", 1 << 22, &p->vocab},
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        rc = s_u32(root, F, req[i].key, true, 1, req[i].hi, req[i].dst, err, err_len);
        if (rc != 0) {
            return rc;
        }
    }
    p->n_kv_heads = p->n_heads;
    rc = s_u32(root, F, "num_key_value_heads", false, 1, 1024, &p->n_kv_heads, err, err_len);
    if (rc < 0) {
        return rc;
    }
    if (p->n_heads % p->n_kv_heads != 0) {
        rc = tb_err_fail(err, err_len, TB_EMODEL,
                         "%s: num_attention_heads %u is not a multiple of num_key_value_heads %u",
                         F, p->n_heads, p->n_kv_heads);
        return rc;
    }
    p->head_dim = 0;
    rc = s_u32(root, F, "head_dim", false, 2, 1024, &p->head_dim, err, err_len);
    if (rc < 0) {
        return rc;
    }
    if (rc == ABSENT && s_is_gemma(p)) {
        p->head_dim = 256; /* transformers' Gemma2Config / Gemma3TextConfig default */
    } else if (rc == ABSENT) {
        if (p->hidden % p->n_heads != 0) {
            rc = tb_err_fail(err, err_len, TB_EMODEL,
                             "%s: hidden_size %u is not a multiple of num_attention_heads %u "
                             "and head_dim is not given",
                             F, p->hidden, p->n_heads);
            return rc;
        }
        p->head_dim = p->hidden / p->n_heads;
    }
    if (p->head_dim % 2 != 0 || p->head_dim < 2 || p->head_dim > 1024) {
        rc = tb_err_fail(err, err_len, TB_EMODEL,
                         "%s: head_dim %u (given or hidden_size / num_attention_heads) must be "
                         "even and in 2..1024",
                         F, p->head_dim);
        return rc;
    }
    return 0;
}

static int s_rotary_dims(json_t *root, const char *F, struct tb_model_params *p, char *err,
                         size_t err_len);

/* Context length, norm epsilon, RoPE (theta, scaling, partial rotary) and the activation. */
static int s_positions(json_t *root, const char *F, struct tb_model_params *p, char *err,
                       size_t err_len)
{
    int rc;
    p->max_context = strcmp(p->arch, "llama") == 0    ? 2048
                     : strcmp(p->arch, "gemma2") == 0 ? 8192
                     : strcmp(p->arch, "gemma3") == 0 ? 131072
                     : strcmp(p->arch, "phi3") == 0   ? 4096
                                                      : 32768;
    rc = s_u32(root, F, "max_position_embeddings", false, 1, 1 << 24, &p->max_context, err,
               err_len);
    if (rc < 0) {
        return rc;
    }
    p->rms_eps = 1e-6;
    rc = s_num(root, F, "rms_norm_eps", 1e-12, 0.5, &p->rms_eps, err, err_len);
    if (rc < 0) {
        return rc;
    }
    json_t *rp = json_object_get(root, "rope_parameters"); /* transformers 5 layout */
    if (rp && !json_is_null(rp) && !json_is_object(rp)) {
        rc = s_bad(F, "rope_parameters", rp, "is not an object", err, err_len);
        return rc;
    }
    p->rope_theta = strcmp(p->arch, "gemma3") == 0 ? 1000000.0 : 10000.0;
    rc = s_num(json_is_object(rp) ? rp : root, F, "rope_theta", 1e-3, 1e12, &p->rope_theta, err,
               err_len);
    if (rc < 0) {
        return rc;
    }
    rc = s_rotary_dims(root, F, p, err, err_len);
    if (rc != 0) {
        return rc;
    }
    if (strcmp(p->arch, "phi3") == 0) {
        rc = s_u32(root, F, "original_max_position_embeddings", false, 1, 1 << 24,
                   &p->rope_scaling.original_max_positions, err, err_len);
        if (rc < 0) {
            return rc;
        }
    }
    rc = s_rope_scaling(json_is_object(rp) ? rp : json_object_get(root, "rope_scaling"), F, p,
                        err, err_len);
    if (rc != 0) {
        return rc;
    }
    json_t *act = json_object_get(root, s_is_gemma(p) ? "hidden_activation" : "hidden_act");
    if (s_is_gemma(p) && (!act || json_is_null(act))) {
        act = json_object_get(root, "hidden_act");
    }
    const char *want = s_is_gemma(p) ? "gelu_pytorch_tanh" : "silu";
    if (act && !json_is_null(act) &&
        !(json_is_string(act) && strcmp(json_string_value(act), want) == 0)) {
        char why[64];
        snprintf(why, sizeof why, "is not supported (only %s for this model_type)", want);
        rc = s_bad(F, s_is_gemma(p) ? "hidden_activation" : "hidden_act", act, why, err, err_len);
        return rc;
    }
    p->ffn_act = s_is_gemma(p) ? TB_FFN_GELU_TANH : TB_FFN_SILU;
    return 0;
}

/* partial_rotary_factor (Phi-3 family only): the rotating dimensions, rope_dim. */
static int s_rotary_dims(json_t *root, const char *F, struct tb_model_params *p, char *err,
                         size_t err_len)
{
    double prf = 1.0;
    int rc = s_num(root, F, "partial_rotary_factor", 0.0, 1.0, &prf, err, err_len);
    if (rc < 0) {
        return rc;
    }
    p->rope_dim = p->head_dim;
    if (prf == 1.0) {
        return 0;
    }
    uint32_t dim = (uint32_t)((double)p->head_dim * prf);
    if (strcmp(p->arch, "phi3") != 0 || dim < 2 || dim % 2 != 0) {
        return s_bad(F, "partial_rotary_factor", json_object_get(root, "partial_rotary_factor"),
                     strcmp(p->arch, "phi3") != 0
                         ? "is not supported for this model_type (only 1.0)"
                         : "does not give an even number of rotary dimensions",
                     err, err_len);
    }
    p->rope_dim = dim;
    return 0;
}

/* Biases, tied embeddings and the sliding window. */
static int s_biases_window(json_t *root, const char *F, struct tb_model_params *p, char *err,
                           size_t err_len)
{
    int rc;
    bool b = false;
    rc = s_bool(root, F, "attention_bias", &b, err, err_len);
    if (rc < 0) {
        return rc;
    }
    p->qkv_bias = strcmp(p->arch, "qwen2") == 0 || strcmp(p->arch, "qwen2_moe") == 0;
    if (b && !p->qkv_bias) {
        rc = s_bad(F, "attention_bias", json_object_get(root, "attention_bias"),
                   "is not supported for this model_type (it adds an o_proj bias)", err, err_len);
        return rc;
    }
    b = false;
    rc = s_bool(root, F, "mlp_bias", &b, err, err_len);
    if (rc < 0) {
        return rc;
    }
    if (b) {
        rc = s_bad(F, "mlp_bias", json_object_get(root, "mlp_bias"), "is not supported", err,
                   err_len);
        return rc;
    }
    p->tied_embeddings = false;
    rc = s_bool(root, F, "tie_word_embeddings", &p->tied_embeddings, err, err_len);
    if (rc < 0) {
        return rc;
    }
    p->sliding_window = s_is_gemma(p) ? 4096 : 0;   /* transformers' Gemma configs' default */
    bool use_sw = strncmp(p->arch, "qwen", 4) != 0; /* the Qwen configs default to false */
    rc = s_bool(root, F, "use_sliding_window", &use_sw, err, err_len);
    if (rc < 0) {
        return rc;
    }
    if (use_sw) {
        rc = s_u32(root, F, "sliding_window", false, 1, 1 << 24, &p->sliding_window, err,
                   err_len);
        if (rc < 0) {
            return rc;
        }
    }
    if (p->sliding_window) {
        rc = s_window_layers(root, F, p, err, err_len);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* A soft-cap: a number >= 0; JSON null: none (0); absent: `def`. */
static int s_softcap(json_t *root, const char *F, const char *key, double def, double *out,
                     char *err, size_t err_len)
{
    json_t *v = json_object_get(root, key);
    *out = !v ? def : 0.0;
    int rc = s_num(root, F, key, 0.0, 1e9, out, err, err_len);
    return rc < 0 ? rc : 0;
}

/* Gemma 2 / 3: (1 + weight) norms, post-norms, embeddings times sqrt(hidden), scores scaled by
 * query_pre_attn_scalar^-0.5, soft-caps (Gemma 2's defaults 50 and 30), tied embeddings by
 * default, and Gemma 3's q/k norms and local RoPE base (rope_local_base_freq, default 10000);
 * defaults as transformers' Gemma2Config / Gemma3TextConfig. */
static int s_gemma(json_t *root, const char *F, struct tb_model_params *p, char *err,
                   size_t err_len)
{
    bool g3 = strcmp(p->arch, "gemma3") == 0;
    p->norm_plus_one = true;
    p->post_norms = true;
    p->qk_norm = g3;
    p->embed_scale = sqrt((double)p->hidden);
    double qpas = 256.0;
    int rc = s_num(root, F, "query_pre_attn_scalar", 1e-6, 1e9, &qpas, err, err_len);
    if (rc < 0) {
        return rc;
    }
    p->attn_scale = 1.0 / sqrt(qpas);
    if ((rc = s_softcap(root, F, "attn_logit_softcapping", g3 ? 0.0 : 50.0, &p->attn_softcap, err,
                        err_len)) < 0 ||
        (rc = s_softcap(root, F, "final_logit_softcapping", g3 ? 0.0 : 30.0, &p->final_softcap,
                        err, err_len)) < 0) {
        return rc;
    }
    if (!json_object_get(root, "tie_word_embeddings")) {
        p->tied_embeddings = true;
    }
    if (g3) {
        p->rope_theta_local = 10000.0;
        rc = s_num(root, F, "rope_local_base_freq", 1e-3, 1e12, &p->rope_theta_local, err,
                   err_len);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* Mixtral's routed experts: num_local_experts, num_experts_per_tok, each intermediate_size
 * wide, top-k weights a softmax over the k chosen logits. */
static int s_moe_mixtral(json_t *root, const char *F, struct tb_model_params *p, char *err,
                         size_t err_len)
{
    int rc = s_u32(root, F, "num_local_experts", true, 1, 1024, &p->n_experts, err, err_len);
    if (rc != 0) {
        return rc;
    }
    p->n_experts_used = 2; /* transformers' MixtralConfig default */
    rc = s_u32(root, F, "num_experts_per_tok", false, 1, 1024, &p->n_experts_used, err, err_len);
    p->expert_intermediate = p->intermediate;
    p->moe_gating = TB_MOE_SOFTMAX_TOPK;
    return rc < 0 ? rc : 0;
}

/* Qwen MoE's dense layers, as transformers picks them: layer i has the experts unless i is in
 * mlp_only_layers (a list of layer indices; null or absent: none) or (i + 1) is not a multiple of
 * decoder_sparse_step (default 1).  An index out of 0..layers-1 is refused. */
static int s_moe_dense_layers(json_t *root, const char *F, struct tb_model_params *p, char *err,
                              size_t err_len)
{
    uint32_t step = 1;
    int rc = s_u32(root, F, "decoder_sparse_step", false, 1, 1 << 20, &step, err, err_len);
    if (rc < 0) {
        return rc;
    }
    for (uint32_t l = 0; l < p->n_layers && l < TB_MODEL_MAX_LAYERS; l++) {
        p->layer_dense[l] = (l + 1) % step != 0;
    }
    json_t *dense = json_object_get(root, "mlp_only_layers");
    if (!dense || json_is_null(dense)) {
        return 0;
    }
    if (!json_is_array(dense)) {
        return tb_err_fail(err, err_len, TB_EMODEL, "%s: mlp_only_layers: is not a list", F);
    }
    size_t i;
    json_t *v;
    json_array_foreach(dense, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= (json_int_t)p->n_layers) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "%s: mlp_only_layers[%zu]: is not a layer index 0..%u", F, i,
                               p->n_layers - 1);
        }
        p->layer_dense[json_integer_value(v)] = true;
    }
    return 0;
}

/* Qwen2-MoE / Qwen3-MoE: num_experts of moe_intermediate_size, num_experts_per_tok,
 * norm_topk_prob (renormalise the top-k probabilities; default false), Qwen2-MoE's shared
 * expert (shared_expert_intermediate_size, in the expert layers only), and the dense layers among
 * them (each an MLP of intermediate_size). */
static int s_moe_qwen(json_t *root, const char *F, struct tb_model_params *p, char *err,
                      size_t err_len)
{
    int rc;
    if ((rc = s_u32(root, F, "num_experts", true, 1, 1024, &p->n_experts, err, err_len)) != 0 ||
        (rc = s_u32(root, F, "moe_intermediate_size", true, 1, 1 << 20, &p->expert_intermediate,
                    err, err_len)) != 0) {
        return rc;
    }
    p->n_experts_used = strcmp(p->arch, "qwen3_moe") == 0 ? 8 : 4; /* the config defaults */
    rc = s_u32(root, F, "num_experts_per_tok", false, 1, 1024, &p->n_experts_used, err, err_len);
    if (rc < 0) {
        return rc;
    }
    bool norm = false;
    if ((rc = s_bool(root, F, "norm_topk_prob", &norm, err, err_len)) < 0) {
        return rc;
    }
    p->moe_gating = norm ? TB_MOE_SOFTMAX_TOPK : TB_MOE_SOFTMAX_ALL;
    if (strcmp(p->arch, "qwen2_moe") == 0 &&
        (rc = s_u32(root, F, "shared_expert_intermediate_size", true, 0, 1 << 20,
                    &p->shared_intermediate, err, err_len)) != 0) {
        return rc;
    }
    return s_moe_dense_layers(root, F, p, err, err_len);
}

/* The family's own parts: Qwen3's q/k norms, the experts of the MoE families. */
static int s_family(json_t *root, const char *F, struct tb_model_params *p, char *err,
                    size_t err_len)
{
    int rc = 0;
    if (strcmp(p->arch, "qwen3") == 0 || strcmp(p->arch, "qwen3_moe") == 0) {
        p->qk_norm = true; /* plain weight (Gemma 3's are set with norm_plus_one) */
    }
    if (strcmp(p->arch, "mixtral") == 0) {
        rc = s_moe_mixtral(root, F, p, err, err_len);
    } else if (strcmp(p->arch, "qwen3_moe") == 0 || strcmp(p->arch, "qwen2_moe") == 0) {
        rc = s_moe_qwen(root, F, p, err, err_len);
    }
    if (rc == 0 && p->n_experts_used > p->n_experts) {
        rc = tb_err_fail(err, err_len, TB_EMODEL,
                         "%s: num_experts_per_tok %u is more than the %u experts", F,
                         p->n_experts_used, p->n_experts);
    }
    return rc;
}

/* BOS, EOS (one id or a list) and PAD. */
static int s_special_ids(json_t *root, const char *F, struct tb_model_params *p, char *err,
                         size_t err_len)
{
    int rc;
    rc = s_ids(root, F, "bos_token_id", false, &p->bos_id, NULL, err, err_len);
    if (rc < 0) {
        return rc;
    }
    rc = s_ids(root, F, "eos_token_id", true, &p->eos_id, p, err, err_len);
    if (rc < 0) {
        return rc;
    }
    rc = s_ids(root, F, "pad_token_id", false, &p->pad_id, NULL, err, err_len);
    if (rc < 0) {
        return rc;
    }
    return 0;
}

int tb_hf_config_parse(const char *text, size_t len, struct tb_model_params *p, char *err,
                       size_t err_len)
{
    const char *F = "config.json";
    int rc;
    json_t *root = s_load(F, text, len, err, err_len, &rc);
    if (!root) {
        return rc;
    }
    rc = s_arch(root, F, p, err, err_len);
    if (rc != 0) {
        goto out;
    }
    p->format = TB_MODEL_FORMAT_HF;
    p->rope_layout = TB_ROPE_NEOX;
    if (json_object_get(root, "text_config")) {
        rc = tb_err_fail(err, err_len, TB_EMODEL,
                         "%s: text_config (a multimodal wrapper) is not supported", F);
        goto out;
    }
    rc = s_shape(root, F, p, err, err_len);
    if (rc == 0) {
        rc = s_positions(root, F, p, err, err_len);
    }
    if (rc == 0) {
        rc = s_biases_window(root, F, p, err, err_len);
    }
    if (rc == 0 && s_is_gemma(p)) {
        rc = s_gemma(root, F, p, err, err_len);
    }
    if (rc == 0) {
        rc = s_special_ids(root, F, p, err, err_len);
    }
    if (rc == 0) {
        rc = s_family(root, F, p, err, err_len);
    }
out:
    json_decref(root);
    return rc;
}

int tb_hf_generation_config_parse(const char *text, size_t len, struct tb_model_params *p,
                                  char *err, size_t err_len)
{
    const char *F = "generation_config.json";
    int rc;
    json_t *root = s_load(F, text, len, err, err_len, &rc);
    if (!root) {
        return rc;
    }
    struct tb_generation_defaults *g = &p->gen;
    long long x;
    bool b;
    if ((rc = s_num(root, F, "temperature", 0.0, 1e6, &g->temperature, err, err_len)) < 0 ||
        (rc = s_num(root, F, "top_p", 0.0, 1.0, &g->top_p, err, err_len)) < 0 ||
        (rc = s_num(root, F, "repetition_penalty", 1e-6, 1e6, &g->repetition_penalty, err,
                    err_len)) < 0) {
        goto out;
    }
    rc = s_int(root, F, "top_k", 0, INT32_MAX, &x, err, err_len);
    if (rc < 0) {
        goto out;
    }
    if (rc == 0) {
        g->top_k = (int32_t)x;
    }
    rc = s_int(root, F, "max_new_tokens", 1, INT32_MAX, &x, err, err_len);
    if (rc < 0) {
        goto out;
    }
    if (rc == 0) {
        g->max_new_tokens = (int32_t)x;
    }
    rc = s_int(root, F, "max_length", 1, INT32_MAX, &x, err, err_len);
    if (rc < 0) {
        goto out;
    }
    if (rc == 0) {
        g->max_length = (int32_t)x;
    }
    rc = s_bool(root, F, "do_sample", &b, err, err_len);
    if (rc < 0) {
        goto out;
    }
    if (rc == 0) {
        g->do_sample = b;
    }
    int32_t first = -1;
    rc = s_ids(root, F, "eos_token_id", true, &first, p, err, err_len);
    if (rc < 0) {
        goto out;
    }
    if (p->eos_id < 0) {
        p->eos_id = first;
    }
    int32_t *maybe[2] = {&p->bos_id, &p->pad_id};
    const char *keys[2] = {"bos_token_id", "pad_token_id"};
    for (int i = 0; i < 2; i++) {
        int32_t id = -1;
        rc = s_ids(root, F, keys[i], false, &id, NULL, err, err_len);
        if (rc < 0) {
            goto out;
        }
        if (*maybe[i] < 0) {
            *maybe[i] = id;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* The text of a special-token field: a string or {"content": string}. */
static const char *s_token_text(json_t *v)
{
    if (json_is_object(v)) {
        v = json_object_get(v, "content");
    }
    return json_string_value(v);
}

static int s_set_template(struct tb_model_params *p, const char *s, size_t n, char *err,
                          size_t err_len)
{
    char *copy = malloc(n + 1);
    if (!copy) {
        snprintf(err, err_len, "out of memory for the chat template");
        return TB_ENOMEM;
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    free(p->chat_template);
    p->chat_template = copy;
    return 0;
}

/* chat_template: a string, or a list of {"name", "template"}. */
static int s_chat_template(json_t *v, const char *file, struct tb_model_params *p, char *err,
                           size_t err_len)
{
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (json_is_string(v)) {
        return s_set_template(p, json_string_value(v), json_string_length(v), err, err_len);
    }
    if (json_is_array(v)) {
        json_t *pick = NULL;
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            json_t *name = json_object_get(item, "name");
            json_t *tpl = json_object_get(item, "template");
            if (!json_is_string(name) || !json_is_string(tpl)) {
                return s_bad(file, "chat_template", v,
                             "is not a list of {\"name\", \"template\"} strings", err, err_len);
            }
            if (!pick || strcmp(json_string_value(name), "default") == 0) {
                if (!pick ||
                    strcmp(json_string_value(json_object_get(pick, "name")), "default") != 0) {
                    pick = item;
                }
            }
        }
        if (!pick) {
            return 0;
        }
        json_t *tpl = json_object_get(pick, "template");
        return s_set_template(p, json_string_value(tpl), json_string_length(tpl), err, err_len);
    }
    return s_bad(file, "chat_template", v, "is not a string or a list of templates", err,
                 err_len);
}

int tb_hf_tokenizer_config_parse(const char *text, size_t len, struct tb_model_params *p,
                                 char *err, size_t err_len)
{
    const char *F = "tokenizer_config.json";
    int rc;
    json_t *root = s_load(F, text, len, err, err_len, &rc);
    if (!root) {
        return rc;
    }
    bool b;
    rc = s_bool(root, F, "add_bos_token", &b, err, err_len);
    if (rc < 0) {
        goto out;
    }
    if (rc == 0) {
        p->add_bos = b;
    }
    rc = s_bool(root, F, "add_eos_token", &b, err, err_len);
    if (rc < 0) {
        goto out;
    }
    if (rc == 0) {
        p->add_eos = b;
    }
    rc = s_chat_template(json_object_get(root, "chat_template"), F, p, err, err_len);
    if (rc != 0) {
        goto out;
    }
    json_t *dec = json_object_get(root, "added_tokens_decoder");
    if (dec && !json_is_null(dec) && !json_is_object(dec)) {
        rc = s_bad(F, "added_tokens_decoder", dec, "is not an object", err, err_len);
        goto out;
    }
    const char *keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    int32_t *ids[4] = {&p->bos_id, &p->eos_id, &p->pad_id, &p->unk_id};
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(root, keys[i]);
        if (!v || json_is_null(v)) {
            continue;
        }
        const char *want = s_token_text(v);
        if (!want) {
            rc = s_bad(F, keys[i], v, "is not a string or {\"content\": string}", err, err_len);
            goto out;
        }
        if (*ids[i] >= 0 || !json_is_object(dec)) {
            continue;
        }
        const char *idtext;
        json_t *tok;
        json_object_foreach(dec, idtext, tok)
        {
            const char *content = s_token_text(tok);
            char *end = NULL;
            errno = 0;
            long id = strtol(idtext, &end, 10);
            if (content && strcmp(content, want) == 0 && end && *end == '\0' && end != idtext &&
                errno == 0 && id >= 0 && id <= INT32_MAX) {
                *ids[i] = (int32_t)id;
                break;
            }
        }
        if (i == 1 && p->eos_id >= 0 && p->n_eos_ids == 0) {
            p->eos_ids[p->n_eos_ids++] = p->eos_id;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int tb_hf_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                    size_t err_len)
{
    *out = NULL;
    *len = 0;
    int rc = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        rc = -errno;
        snprintf(err, err_len, "cannot open '%s': %s", path, strerror(errno));
        return rc;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = TB_EIO;
        snprintf(err, err_len, "'%s' is not a regular file", path);
        goto close_f;
    }
    if ((uint64_t)sb.st_size > max) {
        rc = TB_E2BIG;
        snprintf(err, err_len, "'%s' is %lld bytes, more than the %zu allowed", path,
                 (long long)sb.st_size, max);
        goto close_f;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        rc = TB_ENOMEM;
        snprintf(err, err_len, "out of memory reading '%s'", path);
        goto close_f;
    }
    size_t n = fread(buf, 1, (size_t)sb.st_size, f);
    if (n != (size_t)sb.st_size) {
        free(buf);
        rc = TB_EIO;
        snprintf(err, err_len, "short read on '%s'", path);
        goto close_f;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
close_f:
    fclose(f);
    return rc;
}

typedef int (*parse_fn)(const char *, size_t, struct tb_model_params *, char *, size_t);

/* Reads dir/name and parses it; absent files are fine unless `required`. */
static int s_file(const char *dir, const char *name, bool required, parse_fn fn,
                  struct tb_model_params *p, char *err, size_t err_len)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        return tb_err_fail(err, err_len, TB_EMODEL, "path too long: '%s/%s'", dir, name);
    }
    char *text = NULL;
    size_t len = 0;
    int rc = tb_hf_read_file(path, MAX_FILE, &text, &len, err, err_len);
    if (rc == TB_ENOENT && !required) {
        return 0;
    }
    if (rc != 0) {
        return rc == TB_ENOENT ? tb_err_fail(err, err_len, TB_EMODEL, "'%s': no such file", path)
                               : rc;
    }
    rc = fn(text, len, p, err, err_len);
    free(text);
    return rc;
}

static int s_parse_template_json(const char *text, size_t len, struct tb_model_params *p,
                                 char *err, size_t err_len)
{
    int rc;
    json_t *root = s_load("chat_template.json", text, len, err, err_len, &rc);
    if (!root) {
        return rc;
    }
    rc = s_chat_template(json_object_get(root, "chat_template"), "chat_template.json", p, err,
                         err_len);
    json_decref(root);
    return rc;
}

static int s_parse_template_jinja(const char *text, size_t len, struct tb_model_params *p,
                                  char *err, size_t err_len)
{
    return s_set_template(p, text, len, err, err_len);
}

int tb_hf_config_load_folder(const char *dir, struct tb_model_params *p, char *err,
                             size_t err_len)
{
    int rc = s_file(dir, "config.json", true, tb_hf_config_parse, p, err, err_len);
    if (rc == 0) {
        rc = s_file(dir, "generation_config.json", false, tb_hf_generation_config_parse, p, err,
                    err_len);
    }
    if (rc == 0) {
        rc = s_file(dir, "tokenizer_config.json", false, tb_hf_tokenizer_config_parse, p, err,
                    err_len);
    }
    if (rc == 0 && !p->chat_template) {
        rc = s_file(dir, "chat_template.jinja", false, s_parse_template_jinja, p, err, err_len);
    }
    if (rc == 0 && !p->chat_template) {
        rc = s_file(dir, "chat_template.json", false, s_parse_template_json, p, err, err_len);
    }
    if (rc != 0) {
        return rc;
    }
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path) {
        return tb_err_fail(err, err_len, TB_EMODEL, "path too long: '%s'", dir);
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        free(p->tokenizer_path);
        p->tokenizer_path = strdup(path);
        if (!p->tokenizer_path) {
            snprintf(err, err_len, "out of memory");
            return TB_ENOMEM;
        }
        p->tokenizer_source = TB_TOKENIZER_HF_JSON;
    }
    p->format = TB_MODEL_FORMAT_HF;
    return 0;
}
