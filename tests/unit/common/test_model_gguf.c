/* Unit tests for tb_model over GGUF files built here byte by byte: llama and qwen2 metadata,
 * F32/Q8_0/Q4_0 tensors, every other weight type mixed in one file, tied output, rope_freqs,
 * and refusals naming the key and value (unknown types, rows that are not whole blocks,
 * truncated super-blocks). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_model.h"

/* ---- a minimal GGUF v3 writer ---------------------------------------------------------- */

struct buf {
    uint8_t *p;
    size_t n;
    size_t cap;
};

static void b_put(struct buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void b_u32(struct buf *b, uint32_t v)
{
    b_put(b, &v, 4);
}

static void b_u64(struct buf *b, uint64_t v)
{
    b_put(b, &v, 8);
}

static void b_str(struct buf *b, const char *s)
{
    b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
}

struct kvs {
    struct buf b;
    uint64_t n;
};

static void kv_u32(struct kvs *k, const char *key, uint32_t v)
{
    b_str(&k->b, key);
    b_u32(&k->b, 4);
    b_u32(&k->b, v);
    k->n++;
}

static void kv_f32(struct kvs *k, const char *key, float v)
{
    b_str(&k->b, key);
    b_u32(&k->b, 6);
    b_put(&k->b, &v, 4);
    k->n++;
}

static void kv_bool(struct kvs *k, const char *key, bool v)
{
    uint8_t x = v;
    b_str(&k->b, key);
    b_u32(&k->b, 7);
    b_put(&k->b, &x, 1);
    k->n++;
}

static void kv_str(struct kvs *k, const char *key, const char *v)
{
    b_str(&k->b, key);
    b_u32(&k->b, 8);
    b_str(&k->b, v);
    k->n++;
}

static void kv_tokens(struct kvs *k, uint32_t n)
{
    b_str(&k->b, "tokenizer.ggml.tokens");
    b_u32(&k->b, 9);
    b_u32(&k->b, 8);
    b_u64(&k->b, n);
    for (uint32_t i = 0; i < n; i++) {
        char t[16];
        snprintf(t, sizeof t, "t%u", i);
        b_str(&k->b, t);
    }
    k->n++;
}

struct gt {
    char name[64];
    uint32_t type;
    uint32_t n_dims;
    uint64_t dims[2]; /* GGUF order: dims[0] = row length */
};

struct model {
    uint32_t hidden, ff; /* 0: 64 and 96 */
    char path[64];
    struct kvs kv;
    struct gt t[64]; /* s_tensor refuses more */
    int n;
};

static uint64_t s_tsize(const struct gt *t)
{
    uint64_t n = t->dims[0] * (t->n_dims == 2 ? t->dims[1] : 1);
    tb_dtype_t dt;
    uint64_t bytes = 0;
    if (tb_dtype_from_ggml(t->type, &dt)) {
        return tb_dtype_bytes(dt, n, &bytes) == 0 ? bytes : n;
    }
    switch (t->type) {
    case 15: /* Q8_K: 256-element blocks of 292 bytes */
        return n / 256 * 292;
    case 16: /* IQ2_XXS: 256-element blocks of 66 bytes */
        return n / 256 * 66;
    default:
        return n;
    }
}

static void s_tensor(struct model *m, const char *name, uint32_t type, uint32_t n_dims,
                     uint64_t rows, uint64_t cols)
{
    assert_true(m->n < (int)(sizeof m->t / sizeof m->t[0]));
    struct gt *t = &m->t[m->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    t->dims[0] = cols;
    t->dims[1] = rows;
}

/* Writes the file; tensor data: F32 element j of tensor i = i + j/1000, f16 scales 1.0. */
static void s_write(struct model *m)
{
    struct buf b = {0};
    b_u32(&b, 0x46554747u);
    b_u32(&b, 3);
    b_u64(&b, (uint64_t)m->n);
    b_u64(&b, m->kv.n);
    b_put(&b, m->kv.b.p, m->kv.b.n);
    uint64_t off = 0;
    for (int i = 0; i < m->n; i++) {
        b_str(&b, m->t[i].name);
        b_u32(&b, m->t[i].n_dims);
        for (uint32_t d = 0; d < m->t[i].n_dims; d++) {
            b_u64(&b, m->t[i].dims[d]);
        }
        b_u32(&b, m->t[i].type);
        b_u64(&b, off);
        off += (s_tsize(&m->t[i]) + 31) / 32 * 32;
    }
    while (b.n % 32) {
        uint8_t z = 0;
        b_put(&b, &z, 1);
    }
    for (int i = 0; i < m->n; i++) {
        uint64_t size = s_tsize(&m->t[i]);
        size_t start = b.n;
        if (m->t[i].type == 0) {
            for (uint64_t j = 0; j < size / 4; j++) {
                float v = (float)i + (float)j / 1000.0f;
                b_put(&b, &v, 4);
            }
        } else {
            for (uint64_t j = 0; j < size; j++) {
                uint8_t v = (uint8_t)(j * 7 + (uint64_t)i);
                b_put(&b, &v, 1);
            }
            if (m->t[i].type == 8 || m->t[i].type == 2) { /* scales of 1.0 */
                size_t bs = m->t[i].type == 8 ? 34 : 18;
                for (size_t k = start; k < b.n; k += bs) {
                    b.p[k] = 0x00;
                    b.p[k + 1] = 0x3c;
                }
            }
        }
        while (b.n % 32) {
            uint8_t z = 0;
            b_put(&b, &z, 1);
        }
    }
    FILE *f = fopen(m->path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b.p, 1, b.n, f), b.n);
    fclose(f);
    free(b.p);
}

/* hidden 64, 2 heads of 32, 1 kv head, intermediate 96, vocab 20, 2 layers. */
static void s_llama(struct model *m, const char *arch, uint32_t wtype, bool tied, bool tokens)
{
    char k[96];
    const uint32_t h = m->hidden ? m->hidden : 64, ff = m->ff ? m->ff : 96;
    m->kv.b.n = 0;
    m->kv.n = 0;
    m->n = 0;
    kv_str(&m->kv, "general.architecture", arch);
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
    kv_u32(&m->kv, KEY("block_count"), 2);
    kv_u32(&m->kv, KEY("context_length"), 256);
    kv_u32(&m->kv, KEY("embedding_length"), h);
    kv_u32(&m->kv, KEY("feed_forward_length"), ff);
    kv_u32(&m->kv, KEY("attention.head_count"), 2);
    kv_u32(&m->kv, KEY("attention.head_count_kv"), 1);
    kv_f32(&m->kv, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    kv_f32(&m->kv, KEY("rope.freq_base"), 10000.0f);
    kv_u32(&m->kv, KEY("rope.dimension_count"), h / 2);
#undef KEY
    if (tokens) {
        kv_str(&m->kv, "tokenizer.ggml.model", "llama");
        kv_tokens(&m->kv, 20);
        kv_u32(&m->kv, "tokenizer.ggml.bos_token_id", 1);
        kv_u32(&m->kv, "tokenizer.ggml.eos_token_id", 2);
        kv_u32(&m->kv, "tokenizer.ggml.eot_token_id", 7);
        kv_bool(&m->kv, "tokenizer.ggml.add_bos_token", true);
        kv_str(&m->kv, "tokenizer.chat_template", "{{ x }}");
    }
    s_tensor(m, "token_embd.weight", wtype, 2, 20, h);
    for (int l = 0; l < 2; l++) {
        char n[64];
#define T(s, ty, nd, r, c)                                                                       \
    (snprintf(n, sizeof n, "blk.%d.%s", l, s), s_tensor(m, n, ty, nd, r, c))
        T("attn_norm.weight", 0, 1, 1, h);
        T("attn_q.weight", wtype, 2, h, h);
        T("attn_k.weight", wtype, 2, h / 2, h);
        T("attn_v.weight", wtype, 2, h / 2, h);
        if (strcmp(arch, "qwen2") == 0) {
            T("attn_q.bias", 0, 1, 1, h);
            T("attn_k.bias", 0, 1, 1, h / 2);
            T("attn_v.bias", 0, 1, 1, h / 2);
        }
        T("attn_output.weight", wtype, 2, h, h);
        T("ffn_norm.weight", 0, 1, 1, h);
        T("ffn_gate.weight", wtype, 2, ff, h);
        T("ffn_up.weight", wtype, 2, ff, h);
        T("ffn_down.weight", wtype, 2, h, ff);
#undef T
    }
    s_tensor(m, "output_norm.weight", 0, 1, 1, h);
    if (!tied) {
        s_tensor(m, "output.weight", wtype, 2, 20, h);
    }
}

/* Gemma 3 (q/k norms, post-norms, 4 layers of 2 heads of 16, window 4, every 3rd layer global
 * by attention.sliding_window_pattern) or Phi-3 (fused
 * attn_qkv and gate/up ffn_up, LongRoPE factor tensors, partial rotary 12 of 16). */
static void s_family(struct model *m, const char *arch)
{
    char k[96];
    const bool phi3 = strcmp(arch, "phi3") == 0;
    const uint32_t h = 64, ff = 96, layers = phi3 ? 2 : 4;
    m->kv.b.n = 0;
    m->kv.n = 0;
    m->n = 0;
    kv_str(&m->kv, "general.architecture", arch);
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
    kv_u32(&m->kv, KEY("block_count"), layers);
    kv_u32(&m->kv, KEY("context_length"), 256);
    kv_u32(&m->kv, KEY("embedding_length"), h);
    kv_u32(&m->kv, KEY("feed_forward_length"), ff);
    kv_u32(&m->kv, KEY("attention.head_count"), 2);
    kv_u32(&m->kv, KEY("attention.head_count_kv"), 1);
    kv_u32(&m->kv, KEY("attention.key_length"), 16);
    kv_u32(&m->kv, KEY("attention.value_length"), 16);
    kv_f32(&m->kv, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    kv_f32(&m->kv, KEY("rope.freq_base"), 1000000.0f);
    kv_u32(&m->kv, KEY("rope.dimension_count"), phi3 ? 12 : 16);
    if (phi3) {
        kv_u32(&m->kv, KEY("rope.scaling.original_context_length"), 64);
        kv_f32(&m->kv, KEY("rope.scaling.attn_factor"), 1.25f);
    } else {
        kv_u32(&m->kv, KEY("attention.sliding_window"), 4);
        kv_u32(&m->kv, KEY("attention.sliding_window_pattern"), 3);
    }
#undef KEY
    s_tensor(m, "token_embd.weight", 0, 2, 20, h);
    if (phi3) {
        s_tensor(m, "rope_factors_long.weight", 0, 1, 1, 6);
        s_tensor(m, "rope_factors_short.weight", 0, 1, 1, 6);
    }
    for (uint32_t l = 0; l < layers; l++) {
        char n[64];
#define T(s, nd, r, c) (snprintf(n, sizeof n, "blk.%u.%s", l, s), s_tensor(m, n, 0, nd, r, c))
        T("attn_norm.weight", 1, 1, h);
        if (phi3) {
            T("attn_qkv.weight", 2, 32 + 16 + 16, h);
        } else {
            T("attn_q.weight", 2, 32, h);
            T("attn_k.weight", 2, 16, h);
            T("attn_v.weight", 2, 16, h);
            T("attn_q_norm.weight", 1, 1, 16);
            T("attn_k_norm.weight", 1, 1, 16);
            T("post_attention_norm.weight", 1, 1, h);
            T("post_ffw_norm.weight", 1, 1, h);
            T("ffn_gate.weight", 2, ff, h);
        }
        T("attn_output.weight", 2, h, 32);
        T("ffn_norm.weight", 1, 1, h);
        T("ffn_up.weight", 2, phi3 ? 2 * ff : ff, h);
        T("ffn_down.weight", 2, h, ff);
#undef T
    }
    s_tensor(m, "output_norm.weight", 0, 1, 1, h);
    if (phi3) {
        s_tensor(m, "output.weight", 0, 2, 20, h);
    }
}

static void test_gemma3(void **state)
{
    struct model *g = *state;
    s_family(g, "gemma3");
    s_write(g);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), 0);
    const struct tb_model_params *p = tb_model_params(m);
    assert_string_equal(p->arch, "gemma3");
    assert_true(p->qk_norm && p->post_norms && !p->norm_plus_one && p->tied_embeddings);
    assert_int_equal(p->ffn_act, TB_FFN_GELU_TANH);
    assert_true(fabs(p->embed_scale - 8.0) < 1e-12 && fabs(p->attn_scale - 0.25) < 1e-12);
    for (uint32_t l = 0; l < 4; l++) { /* every 3rd layer global */
        assert_int_equal(tb_model_layer_window(m, l), l == 2 ? 0 : 4);
    }
    double local[8], global[8];
    assert_int_equal(tb_model_layer_rope_inv_freq(m, 0, false, local, 8), 0);
    assert_int_equal(tb_model_layer_rope_inv_freq(m, 2, false, global, 8), 0);
    assert_true(fabs(local[1] - pow(10000.0, -2.0 / 16)) < 1e-12);
    assert_true(fabs(global[1] - pow(1e6, -2.0 / 16)) < 1e-9);
    assert_int_equal(tb_model_layer_tensor(m, 3, TB_LAYER_K_NORM)->cols, 16);
    assert_non_null(tb_model_layer_tensor(m, 3, TB_LAYER_FFN_POST_NORM));
    tb_model_close(&m);
}

static void test_phi3(void **state)
{
    struct model *g = *state;
    s_family(g, "phi3");
    s_write(g);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), 0);
    const struct tb_model_params *p = tb_model_params(m);
    assert_int_equal(p->rope_dim, 12);
    assert_int_equal(p->rope_scaling.type, TB_ROPE_SCALING_LONGROPE);
    assert_int_equal(p->rope_scaling.original_max_positions, 64);
    assert_true(fabs(p->rope_scaling.attn_factor - 1.25) < 1e-6);
    /* rope_factors_short is tensor 2: values 2 + j/1000 */
    assert_true(fabs(p->rope_scaling.short_factor[3] - 2.003) < 1e-6);
    double inv[6];
    assert_int_equal(tb_model_layer_rope_inv_freq(m, 1, true, inv, 6), 0);
    assert_true(fabs(inv[3] - pow(1e6, -6.0 / 12) / 1.003) < 1e-9); /* long: tensor 1 */
    assert_int_equal(tb_model_rope_inv_freq(m, inv, 8), TB_EINVAL);
    /* the fused matrices are views: q, k, v and gate, up are consecutive row ranges */
    const struct tb_tensor *q = tb_model_layer_tensor(m, 0, TB_LAYER_WQ);
    const struct tb_tensor *k = tb_model_layer_tensor(m, 0, TB_LAYER_WK);
    const struct tb_tensor *v = tb_model_layer_tensor(m, 0, TB_LAYER_WV);
    assert_true(q->rows == 32 && k->rows == 16 && v->rows == 16);
    assert_ptr_equal((const uint8_t *)q->data + q->size, k->data);
    assert_ptr_equal((const uint8_t *)k->data + k->size, v->data);
    const struct tb_tensor *gt = tb_model_layer_tensor(m, 1, TB_LAYER_W_GATE);
    const struct tb_tensor *up = tb_model_layer_tensor(m, 1, TB_LAYER_W_UP);
    assert_true(gt->rows == 96 && up->rows == 96);
    assert_ptr_equal((const uint8_t *)gt->data + gt->size, up->data);
    assert_string_equal(up->source, "blk.1.ffn_up.weight");
    tb_model_close(&m);
}

static void s_set_tensor(struct model *g, const char *name, uint32_t n_dims, uint64_t rows,
                         uint64_t cols)
{
    for (int i = 0; i < g->n; i++) {
        if (strcmp(g->t[i].name, name) == 0) {
            g->t[i].n_dims = n_dims;
            g->t[i].dims[0] = cols;
            g->t[i].dims[1] = rows;
        }
    }
}

static void test_family_refusals(void **state)
{
    struct model *g = *state;
    static const struct {
        const char *arch, *tensor;
        uint32_t n_dims;
        uint64_t rows, cols;
        const char *expect;
    } cases[] = {
        {"phi3", "blk.0.attn_qkv.weight", 2, 48, 64,
         "tensor 'blk.0.attn_qkv.weight' has 48 rows, the config implies 64"},
        {"phi3", "blk.1.ffn_up.weight", 2, 96, 64,
         "tensor 'blk.1.ffn_up.weight' has 96 rows, the config implies 192"},
        {"phi3", "rope_factors_long.weight", 1, 1, 8,
         "tensor 'rope_factors_long.weight': expected 6 f32 values"},
        {"gemma3", "blk.2.attn_q_norm.weight", 1, 1, 32,
         "tensor 'layers.2.q_norm' (blk.2.attn_q_norm.weight) has shape [32]"},
        {"gemma3", "blk.0.post_ffw_norm.weight", 2, 2, 32, "has shape [2, 32]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_family(g, cases[i].arch);
        s_set_tensor(g, cases[i].tensor, cases[i].n_dims, cases[i].rows, cases[i].cols);
        s_write(g);
        tb_model_t *m = NULL;
        char err[512] = "";
        int rc = tb_model_open(g->path, &m, err, sizeof err);
        if (rc != TB_EMODEL || !strstr(err, cases[i].expect) || m) {
            fail_msg("case %zu: rc %d, message '%s', expected '%s'", i, rc, err, cases[i].expect);
        }
    }
    /* a Gemma 3 tensor in a llama file, a phi3 fused matrix in a llama file */
    s_llama(g, "llama", 0, false, false);
    s_tensor(g, "blk.0.attn_q_norm.weight", 0, 1, 1, 32);
    s_write(g);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "is not part of a llama model"));
    s_llama(g, "llama", 0, false, false);
    s_tensor(g, "blk.0.attn_qkv.weight", 0, 2, 128, 64);
    s_write(g);
    assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "tensor 'blk.0.attn_qkv.weight' is not part of a supported"));
}

static int s_setup(void **state)
{
    struct model *m = calloc(1, sizeof *m);
    snprintf(m->path, sizeof m->path, "/tmp/tb_model_gguf_XXXXXX");
    int fd = mkstemp(m->path);
    assert_true(fd >= 0);
    close(fd);
    *state = m;
    return 0;
}

static int s_teardown(void **state)
{
    struct model *m = *state;
    unlink(m->path);
    free(m->kv.b.p);
    free(m);
    return 0;
}

static void test_llama_f32(void **state)
{
    struct model *g = *state;
    s_llama(g, "llama", 0, false, true);
    s_write(g);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), 0);
    const struct tb_model_params *p = tb_model_params(m);
    assert_string_equal(p->arch, "llama");
    assert_int_equal(p->format, TB_MODEL_FORMAT_GGUF);
    assert_int_equal(p->rope_layout, TB_ROPE_INTERLEAVED);
    assert_int_equal(p->n_layers, 2);
    assert_int_equal(p->hidden, 64);
    assert_int_equal(p->n_heads, 2);
    assert_int_equal(p->n_kv_heads, 1);
    assert_int_equal(p->head_dim, 32);
    assert_int_equal(p->intermediate, 96);
    assert_int_equal(p->vocab, 20); /* from the token list */
    assert_int_equal(p->max_context, 256);
    assert_int_equal(p->sliding_window, 0); /* no attention.sliding_window key */
    assert_true(p->rms_eps == (double)1e-5f);
    assert_false(p->tied_embeddings);
    assert_false(p->qkv_bias);
    assert_int_equal(p->bos_id, 1);
    assert_int_equal(p->eos_id, 2);
    assert_int_equal(p->n_eos_ids, 2);
    assert_int_equal(p->eos_ids[1], 7);
    assert_int_equal(p->add_bos, 1);
    assert_int_equal(p->add_eos, -1);
    assert_string_equal(p->chat_template, "{{ x }}");
    assert_int_equal(p->tokenizer_source, TB_TOKENIZER_GGUF);
    assert_string_equal(p->tokenizer_path, g->path);
    const struct tb_tensor *wd = tb_model_layer_tensor(m, 1, TB_LAYER_W_DOWN);
    assert_int_equal(wd->rows, 64);
    assert_int_equal(wd->cols, 96);
    assert_string_equal(wd->source, "blk.1.ffn_down.weight");
    assert_true(((const float *)wd->data)[3] == 18.0f + 3.0f / 1000.0f); /* tensor 18 */
    assert_int_equal((uintptr_t)wd->data % 32, 0);
    assert_int_equal(tb_model_copied_bytes(m), 0);
    tb_model_close(&m);
}

static void test_quantized_tied(void **state)
{
    struct model *g = *state;
    const uint32_t types[2] = {8, 2};
    const tb_dtype_t want[2] = {TB_DTYPE_Q8_0, TB_DTYPE_Q4_0};
    for (int i = 0; i < 2; i++) {
        s_llama(g, "llama", types[i], true, false);
        s_write(g);
        tb_model_t *m = NULL;
        char err[512] = "";
        assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), 0);
        const struct tb_model_params *p = tb_model_params(m);
        assert_true(p->tied_embeddings);
        assert_int_equal(p->dtype, want[i]);
        assert_int_equal(p->vocab, 20); /* from token_embd: no token list */
        assert_int_equal(p->tokenizer_source, TB_TOKENIZER_NONE);
        assert_null(p->chat_template);
        const struct tb_tensor *e = tb_model_tensor(m, TB_TENSOR_TOK_EMBD);
        assert_ptr_equal(e->data, tb_model_tensor(m, TB_TENSOR_OUTPUT)->data);
        assert_int_equal(e->row_bytes, types[i] == 8 ? 68 : 36);
        assert_int_equal(e->size, 20 * e->row_bytes);
        assert_int_equal(tb_model_layer_tensor(m, 0, TB_LAYER_ATTN_NORM)->dtype, TB_DTYPE_F32);
        float row[64];
        assert_int_equal(tb_dtype_to_f32(e->dtype, e->data, row, 64), 0);
        tb_model_close(&m);
    }
}

static void test_qwen2(void **state)
{
    struct model *g = *state;
    s_llama(g, "qwen2", 0, false, false);
    s_write(g);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), 0);
    assert_int_equal(tb_model_params(m)->rope_layout, TB_ROPE_NEOX);
    assert_true(tb_model_params(m)->qkv_bias);
    assert_int_equal(tb_model_layer_tensor(m, 1, TB_LAYER_BV)->cols, 32);
    tb_model_close(&m);
}

static void test_sliding_window(void **state)
{
    struct model *g = *state;
    const uint32_t windows[2] = {4096, 0}; /* 0 in the file: no window */
    for (int i = 0; i < 2; i++) {
        s_llama(g, "llama", 0, false, false);
        kv_u32(&g->kv, "llama.attention.sliding_window", windows[i]);
        s_write(g);
        tb_model_t *m = NULL;
        char err[512] = "";
        assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), 0);
        assert_int_equal(tb_model_params(m)->sliding_window, windows[i]);
        tb_model_close(&m);
    }
}

static void test_rope_freqs(void **state)
{
    struct model *g = *state;
    s_llama(g, "llama", 0, false, false);
    s_tensor(g, "rope_freqs.weight", 0, 1, 1, 16);
    s_write(g);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), 0);
    assert_int_equal(tb_model_params(m)->rope_scaling.type, TB_ROPE_SCALING_FREQ_FACTORS);
    const struct tb_tensor *f = tb_model_tensor(m, TB_TENSOR_ROPE_FREQS);
    assert_non_null(f);
    const float *fv = f->data;
    double inv[16];
    assert_int_equal(tb_model_rope_inv_freq(m, inv, 16), 0);
    /* rope_freqs is tensor index g->n - 1: values (n-1) + j/1000 */
    assert_true(inv[0] == 1.0 / (double)fv[0]);
    double base3 = 1.0 / pow(10000.0, 6.0 / 32.0);
    assert_true(fabs(inv[3] - base3 / (double)fv[3]) < 1e-15);
    tb_model_close(&m);
}

struct bad {
    void (*mutate)(struct model *g);
    const char *expect;
};

static void m_arch(struct model *g)
{
    s_llama(g, "gpt2", 0, false, false);
}

static void m_iq2(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    g->t[2].type = 16;
    g->t[2].dims[0] = 256; /* an IQ2_XXS-sized row so the GGUF reader accepts the file */
}

static void m_q8k(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    g->t[3].type = 15; /* Q8_K: ggml's activation format, never a weight */
    g->t[3].dims[0] = 256;
}

static void m_q4k_row(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    g->t[2].type = 12; /* Q4_K rows of 64: a quarter of a super-block */
}

static void m_q6k_shape(struct model *g)
{
    s_llama(g, "llama", 14, false, false); /* Q6_K with hidden 64: no tensor is whole blocks */
}

static void m_q4k_norm(struct model *g)
{
    g->hidden = 256;
    g->ff = 512;
    s_llama(g, "llama", 12, false, false);
    g->t[1].type = 12; /* blk.0.attn_norm.weight as one Q4_K super-block */
}

static void m_missing_key(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    /* rename the key in place: "llama.block_count" -> "llama.block_cOunt" */
    uint8_t *p = memmem(g->kv.b.p, g->kv.b.n, "block_count", 11);
    p[7] = 'O';
}

static void m_yarn(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    kv_str(&g->kv, "llama.rope.scaling.type", "yarn");
}

static void m_bad_window(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    kv_f32(&g->kv, "llama.attention.sliding_window", 4096.0f);
}

static void m_huge_window(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    kv_u32(&g->kv, "llama.attention.sliding_window", (1u << 24) + 1);
}

static void m_partial_rope(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    uint8_t *p = memmem(g->kv.b.p, g->kv.b.n, "rope.dimension_count", 20);
    p[20 + 4] = 16; /* the u32 value after the type */
}

static void m_quant_norm(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    g->t[1].type = 8; /* blk.0.attn_norm.weight, 64 elements: two Q8_0 blocks */
}

static void m_unknown_tensor(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    s_tensor(g, "blk.0.attn_output.bias", 0, 1, 1, 64);
}

static void m_bad_shape(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    g->t[3].dims[1] = 64; /* blk.0.attn_k.weight: 64 rows instead of 32 */
}

static void m_missing_tensor(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    g->t[9] = g->t[--g->n];
}

static void m_bad_freqs(struct model *g)
{
    s_llama(g, "llama", 0, false, false);
    s_tensor(g, "rope_freqs.weight", 0, 1, 1, 8);
}

static void m_odd_rows(struct model *g)
{
    s_llama(g, "llama", 8, false, false);
    /* Q8_0 rows of 48 elements are not whole blocks (the reader sees 3 blocks of the total) */
    g->t[2].dims[0] = 48;
    g->t[2].dims[1] = 64;
}

static void test_refusals(void **state)
{
    struct model *g = *state;
    const struct bad cases[] = {
        {m_arch, "metadata 'general.architecture' 'gpt2' is not supported"},
        {m_iq2, "tensor 'blk.0.attn_q.weight': ggml type 16 (IQ2_XXS) is not supported (F32, "
                "F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, "
                "IQ4_XS)"},
        {m_q8k, "tensor 'blk.0.attn_k.weight': ggml type 15 (Q8_K) is not supported"},
        {m_q4k_row, "tensor 'blk.0.attn_q.weight': row length 64 is not a multiple of the "
                    "type's block 256"},
        {m_q6k_shape, "tensor 'token_embd.weight': row length 64 is not a multiple of the "
                      "type's block 256"},
        {m_q4k_norm, "dtype q4_k is not supported for a vector"},
        {m_missing_key, "metadata 'llama.block_count' is missing"},
        {m_yarn, "metadata 'llama.rope.scaling.type' 'yarn' is not supported"},
        {m_partial_rope, "partial rotary embedding is not supported"},
        {m_bad_window, "metadata 'llama.attention.sliding_window' is not a non-negative integer"},
        {m_huge_window, "metadata 'llama.attention.sliding_window' 16777217 is out of range"},
        {m_quant_norm, "dtype q8_0 is not supported for a vector"},
        {m_unknown_tensor, "tensor 'blk.0.attn_output.bias' is not part"},
        {m_bad_shape, "tensor 'layers.0.wk' (blk.0.attn_k.weight) has shape [64, 64]"},
        {m_missing_tensor, "is missing"},
        {m_bad_freqs, "tensor 'rope_freqs' (rope_freqs.weight) has shape [8]"},
        {m_odd_rows, "row length 48 is not a multiple"},
        {NULL, NULL},
    };
    for (size_t i = 0; cases[i].mutate; i++) {
        g->hidden = g->ff = 0;
        cases[i].mutate(g);
        s_write(g);
        tb_model_t *m = NULL;
        char err[512] = "";
        int rc = tb_model_open(g->path, &m, err, sizeof err);
        if (rc != TB_EMODEL || !strstr(err, cases[i].expect) || m) {
            fail_msg("case %zu: rc %d, message '%s', expected '%s'", i, rc, err, cases[i].expect);
        }
    }
}

/* A "Q4_K_M"-like file and then some: every weight type in one model, F32 norms. */
static const uint32_t s_mixed[21] = {
    [0] = 12,                                                               /* token_embd: Q4_K */
    [2] = 12,  [3] = 13, [4] = 14, [5] = 11,  [7] = 10, [8] = 23, [9] = 14, /* layer 0 */
    [11] = 3,  [12] = 6, [13] = 7, [14] = 20, [16] = 8, [17] = 2, [18] = 1, /* layer 1 */
    [20] = 14,                                                              /* output: Q6_K */
};

static void s_mixed_model(struct model *g)
{
    g->hidden = 256;
    g->ff = 512;
    s_llama(g, "llama", 0, false, false);
    for (int i = 0; i < g->n; i++) {
        if (s_mixed[i]) {
            g->t[i].type = s_mixed[i];
        }
    }
}

static void test_mixed_types(void **state)
{
    struct model *g = *state;
    s_mixed_model(g);
    s_write(g);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(tb_model_open(g->path, &m, err, sizeof err), 0);
    assert_int_equal(tb_model_params(m)->dtype, TB_DTYPE_Q4_K); /* layer 0's wq */
    static const tb_layer_tensor_t kinds[9] = {
        TB_LAYER_ATTN_NORM, TB_LAYER_WQ,     TB_LAYER_WK,   TB_LAYER_WV,     TB_LAYER_WO,
        TB_LAYER_FFN_NORM,  TB_LAYER_W_GATE, TB_LAYER_W_UP, TB_LAYER_W_DOWN,
    };
    for (int i = 0; i < g->n; i++) {
        const struct tb_tensor *t = NULL;
        if (i == 0) {
            t = tb_model_tensor(m, TB_TENSOR_TOK_EMBD);
        } else if (i == 20) {
            t = tb_model_tensor(m, TB_TENSOR_OUTPUT);
        } else if (i < 19) {
            t = tb_model_layer_tensor(m, (uint32_t)(i - 1) / 9, kinds[(i - 1) % 9]);
        } else {
            t = tb_model_tensor(m, TB_TENSOR_OUT_NORM);
        }
        tb_dtype_t want;
        assert_true(tb_dtype_from_ggml(g->t[i].type, &want));
        if (t->dtype != want) {
            fail_msg("tensor %d (%s): dtype %s, want %s", i, t->source, tb_dtype_name(t->dtype),
                     tb_dtype_name(want));
        }
        uint64_t rb;
        assert_int_equal(tb_dtype_bytes(want, g->t[i].dims[0], &rb), 0);
        assert_int_equal(t->row_bytes, rb);
        assert_int_equal(t->size, rb * t->rows);
        /* the bytes are this tensor's: s_write's pattern j * 7 + i (f16 scales of 1.0 in the
         * first two bytes of Q8_0 / Q4_0 blocks) */
        if (want != TB_DTYPE_F32) {
            assert_int_equal(((const uint8_t *)t->data)[2], (uint8_t)(2 * 7 + i));
        }
        float *row = malloc(t->cols * sizeof *row);
        assert_non_null(row);
        assert_int_equal(tb_dtype_to_f32(t->dtype, t->data, row, t->cols), 0);
        free(row);
    }
    tb_model_close(&m);
}

/* Truncations inside the quantized data (the last tensor is a Q6_K matrix of 20 rows of one
 * super-block each): clean errors, never a read past the end. */
static void test_truncated_superblocks(void **state)
{
    struct model *g = *state;
    s_mixed_model(g);
    s_write(g);
    FILE *f = fopen(g->path, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    const long pad = (32 - 20 * 210 % 32) % 32; /* the file ends with padding to 32 bytes */
    const long cut[] = {1, 2, 105, 209, 210, 211, 20 * 210 - 1, 20 * 210 + 7, 30000};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        assert_int_equal(truncate(g->path, len - pad - cut[i]), 0);
        tb_model_t *m = NULL;
        char err[512] = "";
        int rc = tb_model_open(g->path, &m, err, sizeof err);
        if (rc >= 0 || m || !strstr(err, "past the end of the file")) {
            fail_msg("cut %ld bytes: rc %d, message '%s'", cut[i], rc, err);
        }
        s_write(g);
    }
}

static void test_truncated_file(void **state)
{
    struct model *g = *state;
    s_llama(g, "llama", 8, false, true);
    s_write(g);
    FILE *f = fopen(g->path, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    /* a sample of truncation points over header, metadata, index and data */
    for (long n = 0; n < len; n += (n < 2048 ? 7 : 997)) {
        assert_int_equal(truncate(g->path, n), 0);
        tb_model_t *m = NULL;
        char err[512] = "";
        int rc = tb_model_open(g->path, &m, err, sizeof err);
        assert_true(rc < 0);
        assert_null(m);
        assert_true(strlen(err) > 0);
        s_write(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_llama_f32, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_quantized_tied, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_qwen2, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sliding_window, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_rope_freqs, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_file, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_mixed_types, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_superblocks, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_gemma3, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_phi3, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_family_refusals, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
