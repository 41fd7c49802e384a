/* Unit tests for tb_model over Hugging Face folders written here: complete models, tied
 * embeddings, shards, misaligned data, and folders that must be refused with a clear message. */
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

/* Tiny shape: 2 layers, hidden 8, 2 heads of 4, 1 kv head, intermediate 16, vocab 10. */
#define CONFIG                                                                                   \
    "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,"                      \
    "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"               \
    "\"vocab_size\":10,\"rms_norm_eps\":1e-5,\"bos_token_id\":1,\"eos_token_id\":2%s}"

struct ten {
    char name[96];
    const char *dtype;
    int n_dims;
    long shape[2];
};

struct folder {
    char dir[64];
    struct ten t[64];
    int n;
};

static void s_add(struct folder *f, const char *name, const char *dtype, int n_dims, long r,
                  long c)
{
    struct ten *t = &f->t[f->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->n_dims = n_dims;
    t->shape[0] = r;
    t->shape[1] = c;
}

static void s_standard(struct folder *f, bool tied, bool lm_head_only, const char *dtype)
{
    f->n = 0;
    if (!lm_head_only) {
        s_add(f, "model.embed_tokens.weight", dtype, 2, 10, 8);
    }
    if (!tied || lm_head_only) {
        s_add(f, "lm_head.weight", dtype, 2, 10, 8);
    }
    s_add(f, "model.norm.weight", dtype, 1, 8, 0);
    for (int l = 0; l < 2; l++) {
        char n[96];
        const struct {
            const char *s;
            int nd;
            long r, c;
        } k[] = {
            {"input_layernorm.weight", 1, 8, 0},  {"self_attn.q_proj.weight", 2, 8, 8},
            {"self_attn.k_proj.weight", 2, 4, 8}, {"self_attn.v_proj.weight", 2, 4, 8},
            {"self_attn.o_proj.weight", 2, 8, 8}, {"post_attention_layernorm.weight", 1, 8, 0},
            {"mlp.gate_proj.weight", 2, 16, 8},   {"mlp.up_proj.weight", 2, 16, 8},
            {"mlp.down_proj.weight", 2, 8, 16},
        };
        for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
            snprintf(n, sizeof n, "model.layers.%d.%s", l, k[i].s);
            s_add(f, n, dtype, k[i].nd, k[i].r, k[i].c);
        }
    }
}

static size_t s_esize(const char *dtype)
{
    return strcmp(dtype, "F32") == 0 ? 4 : strcmp(dtype, "I8") == 0 ? 1 : 2;
}

/* Writes tensors [from, to) of f into dir/file; element j of tensor i is float i + j/1000 for
 * F32, byte pattern otherwise.  The data area starts 8-aligned plus `pad` bytes. */
static void s_write_st(struct folder *f, const char *file, int from, int to, int pad)
{
    char header[8192];
    size_t off = 0;
    int hn = snprintf(header, sizeof header, "{");
    for (int i = from; i < to; i++) {
        struct ten *t = &f->t[i];
        size_t count = (size_t)t->shape[0] * (t->n_dims == 2 ? (size_t)t->shape[1] : 1);
        size_t size = count * s_esize(t->dtype);
        char shape[64];
        if (t->n_dims == 2) {
            snprintf(shape, sizeof shape, "[%ld,%ld]", t->shape[0], t->shape[1]);
        } else {
            snprintf(shape, sizeof shape, "[%ld]", t->shape[0]);
        }
        hn += snprintf(header + hn, sizeof header - (size_t)hn,
                       "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                       i > from ? "," : "", t->name, t->dtype, shape, off, off + size);
        off += size;
    }
    hn += snprintf(header + hn, sizeof header - (size_t)hn, "}");
    int align = (8 - (8 + hn) % 8) % 8 + pad; /* data 8-aligned, then shifted by pad */
    hn += snprintf(header + hn, sizeof header - (size_t)hn, "%*s", align, "");
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, file);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    uint64_t h = (uint64_t)hn;
    assert_int_equal(fwrite(&h, 8, 1, fp), 1);
    assert_int_equal(fwrite(header, 1, (size_t)hn, fp), (size_t)hn);
    for (int i = from; i < to; i++) {
        struct ten *t = &f->t[i];
        size_t count = (size_t)t->shape[0] * (t->n_dims == 2 ? (size_t)t->shape[1] : 1);
        for (size_t j = 0; j < count; j++) {
            if (strcmp(t->dtype, "F32") == 0) {
                float v = (float)i + (float)j / 1000.0f;
                fwrite(&v, 4, 1, fp);
            } else {
                uint8_t b[2] = {(uint8_t)j, (uint8_t)i};
                fwrite(b, s_esize(t->dtype), 1, fp);
            }
        }
    }
    fclose(fp);
}

static void s_text(struct folder *f, const char *file, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, file);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void s_config(struct folder *f, const char *extra)
{
    char cfg[1024];
    snprintf(cfg, sizeof cfg, CONFIG, extra);
    s_text(f, "config.json", cfg);
}

static int s_setup(void **state)
{
    struct folder *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tb_model_hf_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    struct folder *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int s_open(struct folder *f, tb_model_t **m, char *err, size_t n)
{
    return tb_model_open(f->dir, m, err, n);
}

static void test_untied_f32(void **state)
{
    struct folder *f = *state;
    s_config(f, "");
    s_standard(f, false, false, "F32");
    s_write_st(f, "model.safetensors", 0, f->n, 0);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(s_open(f, &m, err, sizeof err), 0);
    const struct tb_model_params *p = tb_model_params(m);
    assert_int_equal(p->n_layers, 2);
    assert_int_equal(p->head_dim, 4);
    assert_int_equal(p->dtype, TB_DTYPE_F32);
    assert_false(p->tied_embeddings);
    assert_int_equal(p->tokenizer_source, TB_TOKENIZER_NONE);
    const struct tb_tensor *e = tb_model_tensor(m, TB_TENSOR_TOK_EMBD);
    const struct tb_tensor *o = tb_model_tensor(m, TB_TENSOR_OUTPUT);
    assert_string_equal(e->name, "tok_embd");
    assert_string_equal(o->source, "lm_head.weight");
    assert_ptr_not_equal(e->data, o->data);
    assert_int_equal(e->rows, 10);
    assert_int_equal(e->cols, 8);
    assert_int_equal(e->row_bytes, 32);
    assert_true(((const float *)e->data)[9] == 0.0f + 9.0f / 1000.0f);
    const struct tb_tensor *wk = tb_model_layer_tensor(m, 1, TB_LAYER_WK);
    assert_string_equal(wk->name, "layers.1.wk");
    assert_string_equal(wk->source, "model.layers.1.self_attn.k_proj.weight");
    assert_int_equal(wk->rows, 4);
    assert_int_equal(wk->cols, 8);
    assert_null(tb_model_layer_tensor(m, 0, TB_LAYER_BQ));
    assert_null(tb_model_layer_tensor(m, 2, TB_LAYER_WQ));
    assert_null(tb_model_tensor(m, TB_TENSOR_ROPE_FREQS));
    const struct tb_tensor *norm = tb_model_find_tensor(m, "layers.0.ffn_norm");
    assert_non_null(norm);
    assert_int_equal(norm->n_dims, 1);
    assert_int_equal(norm->rows, 1);
    assert_int_equal(norm->cols, 8);
    assert_null(tb_model_find_tensor(m, "layers.0.bq"));
    assert_int_equal(tb_model_tensor_count(m), 3 + 2 * 9);
    assert_int_equal(tb_model_copied_bytes(m), 0);
    uint64_t total = 0;
    for (size_t i = 0; i < tb_model_tensor_count(m); i++) {
        total += tb_model_tensor_at(m, i)->size;
    }
    assert_int_equal(tb_model_weight_bytes(m), total);
    double inv[2];
    assert_int_equal(tb_model_rope_inv_freq(m, inv, 2), 0);
    assert_true(inv[0] == 1.0);
    assert_true(inv[1] == 0.01); /* 10000^(-2/4) */
    assert_int_equal(tb_model_rope_inv_freq(m, inv, 3), TB_EINVAL);
    tb_model_close(&m);
    assert_null(m);
    tb_model_close(&m);
}

static void test_tied_from_lm_head_only(void **state)
{
    struct folder *f = *state;
    s_config(f, ",\"tie_word_embeddings\":true");
    s_standard(f, true, true, "BF16");
    s_write_st(f, "model.safetensors", 0, f->n, 0);
    s_text(f, "tokenizer.json", "{}");
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(s_open(f, &m, err, sizeof err), 0);
    const struct tb_model_params *p = tb_model_params(m);
    assert_true(p->tied_embeddings);
    assert_int_equal(p->dtype, TB_DTYPE_BF16);
    assert_int_equal(p->tokenizer_source, TB_TOKENIZER_HF_JSON);
    const struct tb_tensor *e = tb_model_tensor(m, TB_TENSOR_TOK_EMBD);
    const struct tb_tensor *o = tb_model_tensor(m, TB_TENSOR_OUTPUT);
    assert_ptr_equal(e->data, o->data);
    assert_string_equal(e->name, "tok_embd");
    assert_string_equal(o->name, "output");
    assert_string_equal(e->source, "lm_head.weight");
    /* the alias is listed but its bytes are counted once */
    assert_int_equal(tb_model_weight_bytes(m) + o->size,
                     (uint64_t)(10 * 8 * 2 * 2 + 8 * 2 +
                                2 * (8 * 2 * 2 + (64 + 32 + 32 + 64 + 128 * 3) * 2)));
    tb_model_close(&m);
}

static void test_tied_both_stored(void **state)
{
    struct folder *f = *state;
    s_config(f, ",\"tie_word_embeddings\":true");
    s_standard(f, false, false, "F16");
    s_write_st(f, "model.safetensors", 0, f->n, 0);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(s_open(f, &m, err, sizeof err), 0);
    assert_ptr_equal(tb_model_tensor(m, TB_TENSOR_OUTPUT)->data,
                     tb_model_tensor(m, TB_TENSOR_TOK_EMBD)->data);
    assert_string_equal(tb_model_tensor(m, TB_TENSOR_OUTPUT)->source,
                        "model.embed_tokens.weight");
    tb_model_close(&m);
}

static void test_misaligned_data_is_copied(void **state)
{
    struct folder *f = *state;
    s_config(f, "");
    s_standard(f, false, false, "F32");
    for (int pad = 1; pad < 4; pad++) {
        s_write_st(f, "model.safetensors", 0, f->n, pad);
        tb_model_t *m = NULL;
        char err[512] = "";
        assert_int_equal(s_open(f, &m, err, sizeof err), 0);
        assert_int_equal(tb_model_copied_bytes(m), tb_model_weight_bytes(m));
        for (size_t i = 0; i < tb_model_tensor_count(m); i++) {
            const struct tb_tensor *t = tb_model_tensor_at(m, i);
            assert_int_equal((uintptr_t)t->data % 4, 0);
        }
        const float *w = tb_model_layer_tensor(m, 1, TB_LAYER_W_DOWN)->data;
        assert_true(w[5] == (float)(f->n - 1) + 5.0f / 1000.0f);
        tb_model_close(&m);
    }
}

static void test_sharded(void **state)
{
    struct folder *f = *state;
    s_config(f, "");
    s_standard(f, false, false, "F32");
    s_write_st(f, "model-00001-of-00002.safetensors", 0, 10, 0);
    s_write_st(f, "model-00002-of-00002.safetensors", 10, f->n, 0);
    char idx[8192];
    int n = snprintf(idx, sizeof idx, "{\"metadata\":{},\"weight_map\":{");
    for (int i = 0; i < f->n; i++) {
        n += snprintf(idx + n, sizeof idx - (size_t)n,
                      "%s\"%s\":\"model-0000%d-of-00002"
                      ".safetensors\"",
                      i ? "," : "", f->t[i].name, i < 10 ? 1 : 2);
    }
    snprintf(idx + n, sizeof idx - (size_t)n, "}}");
    s_text(f, "model.safetensors.index.json", idx);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(s_open(f, &m, err, sizeof err), 0);
    assert_true(((const float *)tb_model_layer_tensor(m, 1, TB_LAYER_W_DOWN)->data)[0] ==
                (float)(f->n - 1));
    tb_model_close(&m);

    /* the index says a tensor is in the wrong shard */
    char *p = strstr(idx, "model.norm.weight\":\"model-00001");
    assert_non_null(p);
    p[strlen("model.norm.weight\":\"model-0000")] = '2';
    s_text(f, "model.safetensors.index.json", idx);
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "does not hold it"));
    /* path traversal and missing shards */
    s_text(f, "model.safetensors.index.json",
           "{\"weight_map\":{\"model.norm.weight\":\"../x.safetensors\"}}");
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "not a file name in the folder"));
    s_text(f, "model.safetensors.index.json",
           "{\"weight_map\":{\"model.norm.weight\":\"nope.safetensors\"}}");
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "nope.safetensors: cannot open"));
    /* a shard holds a tensor the index does not list */
    s_text(
        f, "model.safetensors.index.json",
        "{\"weight_map\":{\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\"}}");
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "is not listed there"));
    s_text(f, "model.safetensors.index.json", "{\"weight_map\":[]}");
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "weight_map"));
    assert_null(m);
}

struct bad_case {
    const char *extra_config;
    void (*mutate)(struct folder *f);
    const char *expect;
};

static void s_drop_up(struct folder *f)
{
    for (int i = 0; i < f->n; i++) {
        if (strcmp(f->t[i].name, "model.layers.1.mlp.up_proj.weight") == 0) {
            f->t[i] = f->t[--f->n];
        }
    }
}

static void s_bad_shape(struct folder *f)
{
    f->t[5].shape[1] = 4; /* model.layers.0.self_attn.k_proj.weight */
    f->t[5].shape[0] = 8;
}

static void s_extra_layer(struct folder *f)
{
    s_add(f, "model.layers.2.input_layernorm.weight", "F32", 1, 8, 0);
}

static void s_unknown(struct folder *f)
{
    s_add(f, "model.layers.0.self_attn.o_proj.bias", "F32", 1, 8, 0);
}

static void s_int8(struct folder *f)
{
    f->t[3].dtype = "I8";
}

static void s_leading_zero(struct folder *f)
{
    snprintf(f->t[3].name, sizeof f->t[3].name, "model.layers.00.input_layernorm.weight");
}

static void s_three_dims(struct folder *f)
{
    f->t[0].n_dims = 1;
    f->t[0].shape[0] = 80;
}

static void s_bias(struct folder *f)
{
    s_add(f, "model.layers.0.self_attn.q_proj.bias", "F32", 1, 8, 0);
    s_add(f, "model.layers.0.self_attn.k_proj.bias", "F32", 1, 4, 0);
    s_add(f, "model.layers.0.self_attn.v_proj.bias", "F32", 1, 4, 0);
}

static void s_vocab11(struct folder *f)
{
    f->t[0].shape[0] = 11;
}

static void s_nothing(struct folder *f)
{
    (void)f;
}

static void test_refusals(void **state)
{
    struct folder *f = *state;
    const struct bad_case cases[] = {
        {"", s_drop_up, "tensor 'layers.1.w_up' is missing"},
        {"", s_bad_shape,
         "tensor 'layers.0.wk' (model.layers.0.self_attn.k_proj.weight) has "
         "shape [8, 4], the config implies [4, 8]"},
        {"", s_extra_layer, "tensor 'model.layers.2.input_layernorm.weight' is not part"},
        {"", s_unknown, "tensor 'model.layers.0.self_attn.o_proj.bias' is not part"},
        {"", s_int8, "dtype 'I8' is not supported"},
        {"", s_leading_zero, "model.layers.00.input_layernorm.weight"},
        {"", s_three_dims, "tensor 'tok_embd' (model.embed_tokens.weight) has shape [80]"},
        {"", s_vocab11, "has shape [11, 8], the config implies [10, 8]"},
        {",\"model_type\":\"qwen2\"", s_nothing, "duplicate"},
        {"", s_bias, "tensor 'layers.1.bq' is missing (other layers have q/k/v biases)"},
        {NULL, NULL, NULL},
    };
    for (size_t i = 0; cases[i].mutate; i++) {
        s_config(f, cases[i].extra_config);
        s_standard(f, false, false, "F32");
        cases[i].mutate(f);
        s_write_st(f, "model.safetensors", 0, f->n, 0);
        tb_model_t *m = NULL;
        char err[512] = "";
        int rc = s_open(f, &m, err, sizeof err);
        if (rc != TB_EMODEL || !strstr(err, cases[i].expect) || m != NULL ||
            !strstr(err, "cannot load model '/tmp/tb_model_hf_")) {
            fail_msg("case %zu: rc %d, message '%s', expected '%s'", i, rc, err, cases[i].expect);
        }
    }
}

static void test_qwen2_biases(void **state)
{
    struct folder *f = *state;
    s_text(f, "config.json",
           "{\"model_type\":\"qwen2\",\"hidden_size\":8,\"intermediate_size\":16,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
           "\"vocab_size\":10}");
    s_standard(f, false, false, "F32");
    s_bias(f);
    s_write_st(f, "model.safetensors", 0, f->n, 0);
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "tensor 'layers.1.bq' is missing"));
    s_add(f, "model.layers.1.self_attn.q_proj.bias", "F32", 1, 8, 0);
    s_add(f, "model.layers.1.self_attn.k_proj.bias", "F32", 1, 4, 0);
    s_add(f, "model.layers.1.self_attn.v_proj.bias", "F32", 1, 4, 0);
    s_write_st(f, "model.safetensors", 0, f->n, 0);
    assert_int_equal(s_open(f, &m, err, sizeof err), 0);
    assert_true(tb_model_params(m)->qkv_bias);
    assert_int_equal(tb_model_layer_tensor(m, 1, TB_LAYER_BK)->cols, 4);
    tb_model_close(&m);
}

static void test_missing_things(void **state)
{
    struct folder *f = *state;
    tb_model_t *m = NULL;
    char err[512] = "";
    assert_int_equal(tb_model_open("/nonexistent/model", &m, err, sizeof err), TB_ENOENT);
    assert_non_null(strstr(err, "cannot open model '/nonexistent/model'"));
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "config.json': no such file"));
    s_config(f, "");
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "no model.safetensors"));
    s_text(f, "pytorch_model.bin", "x");
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "PyTorch .bin weights are not supported"));
    s_text(f, "model.safetensors", "garbage!garbage!");
    assert_int_equal(s_open(f, &m, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "model.safetensors: header length"));
    assert_null(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_untied_f32, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tied_from_lm_head_only, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tied_both_stored, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_misaligned_data_is_copied, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sharded, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_qwen2_biases, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_missing_things, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
