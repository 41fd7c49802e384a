/*
 * tb_model_info - prints what tb_model_open read from a model as one JSON object: the params,
 * the rotary inverse frequencies, and per tensor its dtype, shape, byte size and an FNV-1a 64
 * checksum of its bytes (the Python tests compare these with what the writer wrote).
 *
 * usage: tb_model_info MODEL_PATH      exit 0 and JSON on stdout, or exit 1 and the error
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "tb_model.h"

static json_t *s_ids(const int32_t *ids, uint32_t n)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++) {
        json_array_append_new(a, json_integer(ids[i]));
    }
    return a;
}

static json_t *s_params(const tb_model_t *m)
{
    const struct tb_model_params *p = tb_model_params(m);
    json_t *o = json_object();
    json_object_set_new(o, "arch", json_string(p->arch));
    json_object_set_new(o, "format", json_string(tb_model_format_name(p->format)));
    json_object_set_new(o, "n_layers", json_integer(p->n_layers));
    json_object_set_new(o, "hidden", json_integer(p->hidden));
    json_object_set_new(o, "intermediate", json_integer(p->intermediate));
    json_object_set_new(o, "n_heads", json_integer(p->n_heads));
    json_object_set_new(o, "n_kv_heads", json_integer(p->n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(p->head_dim));
    json_object_set_new(o, "vocab", json_integer(p->vocab));
    json_object_set_new(o, "max_context", json_integer(p->max_context));
    json_object_set_new(o, "sliding_window", json_integer(p->sliding_window));
    json_object_set_new(o, "rms_eps", json_real(p->rms_eps));
    json_object_set_new(o, "rope_theta", json_real(p->rope_theta));
    json_t *rs = json_object();
    json_object_set_new(rs, "type", json_string(tb_rope_scaling_name(p->rope_scaling.type)));
    json_object_set_new(rs, "factor", json_real(p->rope_scaling.factor));
    json_object_set_new(rs, "low_freq_factor", json_real(p->rope_scaling.low_freq_factor));
    json_object_set_new(rs, "high_freq_factor", json_real(p->rope_scaling.high_freq_factor));
    json_object_set_new(rs, "original_max_positions",
                        json_integer(p->rope_scaling.original_max_positions));
    json_object_set_new(o, "rope_scaling", rs);
    json_object_set_new(o, "rope_layout", json_string(tb_rope_layout_name(p->rope_layout)));
    json_object_set_new(o, "qkv_bias", json_boolean(p->qkv_bias));
    json_object_set_new(o, "tied_embeddings", json_boolean(p->tied_embeddings));
    json_object_set_new(o, "qk_norm", json_boolean(p->qk_norm));
    json_object_set_new(o, "n_experts", json_integer(p->n_experts));
    json_object_set_new(o, "n_experts_used", json_integer(p->n_experts_used));
    json_object_set_new(o, "expert_intermediate", json_integer(p->expert_intermediate));
    json_object_set_new(o, "shared_intermediate", json_integer(p->shared_intermediate));
    json_object_set_new(o, "moe_gating", json_string(tb_moe_gating_name(p->moe_gating)));
    json_t *dense = json_array(); /* an expert model's dense layers */
    for (uint32_t l = 0; l < p->n_layers && p->n_experts > 0; l++) {
        if (!tb_model_layer_is_moe(p, l)) {
            json_array_append_new(dense, json_integer(l));
        }
    }
    json_object_set_new(o, "dense_layers", dense);
    json_object_set_new(o, "dtype", json_string(tb_dtype_name(p->dtype)));
    json_object_set_new(o, "bos_id", json_integer(p->bos_id));
    json_object_set_new(o, "eos_id", json_integer(p->eos_id));
    json_object_set_new(o, "pad_id", json_integer(p->pad_id));
    json_object_set_new(o, "unk_id", json_integer(p->unk_id));
    json_object_set_new(o, "eos_ids", s_ids(p->eos_ids, p->n_eos_ids));
    json_object_set_new(o, "add_bos", json_integer(p->add_bos));
    json_object_set_new(o, "add_eos", json_integer(p->add_eos));
    json_t *g = json_object();
    json_object_set_new(g, "temperature", json_real(p->gen.temperature));
    json_object_set_new(g, "top_p", json_real(p->gen.top_p));
    json_object_set_new(g, "top_k", json_integer(p->gen.top_k));
    json_object_set_new(g, "repetition_penalty", json_real(p->gen.repetition_penalty));
    json_object_set_new(g, "do_sample", json_integer(p->gen.do_sample));
    json_object_set_new(g, "max_new_tokens", json_integer(p->gen.max_new_tokens));
    json_object_set_new(g, "max_length", json_integer(p->gen.max_length));
    json_object_set_new(o, "generation", g);
    json_object_set_new(o, "chat_template",
                        p->chat_template ? json_string(p->chat_template) : json_null());
    json_object_set_new(o, "tokenizer_source",
                        json_string(tb_tokenizer_source_name(p->tokenizer_source)));
    json_object_set_new(o, "tokenizer_path",
                        p->tokenizer_path ? json_string(p->tokenizer_path) : json_null());
    return o;
}

static uint64_t s_fnv1a(const unsigned char *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tb_model_info MODEL_PATH\n");
        return 2;
    }
    char err[1024];
    tb_model_t *m = NULL;
    int rc = tb_model_open(argv[1], &m, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    json_t *root = json_object();
    json_object_set_new(root, "params", s_params(m));
    const struct tb_model_params *p = tb_model_params(m);
    double *inv = calloc(p->head_dim / 2, sizeof *inv);
    json_t *freqs = json_array();
    if (inv && tb_model_rope_inv_freq(m, inv, p->rope_dim / 2) == 0) {
        for (uint32_t i = 0; i < p->rope_dim / 2; i++) {
            json_array_append_new(freqs, json_real(inv[i]));
        }
    }
    free(inv);
    json_object_set_new(root, "rope_inv_freq", freqs);
    json_object_set_new(root, "weight_bytes", json_integer((json_int_t)tb_model_weight_bytes(m)));
    json_object_set_new(root, "copied_bytes", json_integer((json_int_t)tb_model_copied_bytes(m)));
    json_t *ts = json_array();
    for (size_t i = 0; i < tb_model_tensor_count(m); i++) {
        const struct tb_tensor *t = tb_model_tensor_at(m, i);
        json_t *o = json_object();
        char sum[17];
        snprintf(sum, sizeof sum, "%016llx", (unsigned long long)s_fnv1a(t->data, t->size));
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "source", json_string(t->source));
        json_object_set_new(o, "dtype", json_string(tb_dtype_name(t->dtype)));
        json_t *shape = json_array();
        if (t->n_dims == 2) {
            json_array_append_new(shape, json_integer((json_int_t)t->rows));
        }
        json_array_append_new(shape, json_integer((json_int_t)t->cols));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "size", json_integer((json_int_t)t->size));
        json_object_set_new(o, "fnv1a64", json_string(sum));
        json_array_append_new(ts, o);
    }
    json_object_set_new(root, "tensors", ts);
    char *s = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    if (s) {
        puts(s);
    }
    free(s);
    json_decref(root);
    tb_model_close(&m);
    return s ? 0 : 1;
}
