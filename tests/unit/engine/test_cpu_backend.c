/*
 * test_cpu_backend.c - the cpu backend's edges on small random-weight models written here as
 * Hugging Face folders: configuration and model refusals, KV sizing, empty and malformed plans,
 * chunked prefill positions, and bitwise batch invariance (a sequence's logits alone, among
 * others, at another row, with another thread count, prefilled in chunks or at once), plus the
 * kernel property it rests on (tb_cpu_matmul rows independent of n_tok on every ISA).
 * Agreement with the independent reference is tests/integration/test_forward.py's job.
 */
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

#include "cpu/tb_cpu_backend.h"
#include "cpu/tb_cpu_kernels.h"
#include "cpu/tb_cpu_weights.h"
#include "tb_errors.h"

#include "../tb_test_isa.h"
#include "tb_model.h"

/* ------------------------------------------------------------------------------------------ */
/* A model on disk                                                                             */
/* ------------------------------------------------------------------------------------------ */

#define VOCAB 64
#define HIDDEN 32
#define FF 64
#define BS 4 /* block size used by the tests */

struct shape {
    int n_layers, n_heads, n_kv_heads, head_dim;
    bool tied, bias;
};

static const struct shape s_default = {2, 4, 2, 8, false, false};

static uint64_t s_rng;

static float s_rand(void) /* uniform in [-1, 1) */
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float)((s_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

struct wt {
    char name[96];
    int n_dims;
    long rows, cols;
    bool norm;
};

/* Writes config.json and model.safetensors (F32, uniform weights; norms near 1) to `dir`. */
static void s_write_model(const char *dir, const struct shape *sh, const char *head_dim_override)
{
    struct wt t[128];
    int n = 0;
    const long qd = (long)sh->n_heads * sh->head_dim, kvd = (long)sh->n_kv_heads * sh->head_dim;
#define ADD(nm, nd, r, c, isnorm)                                                                \
    do {                                                                                         \
        snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                         \
        t[n].n_dims = nd;                                                                        \
        t[n].rows = r;                                                                           \
        t[n].cols = c;                                                                           \
        t[n].norm = isnorm;                                                                      \
        n++;                                                                                     \
    } while (0)
    ADD("model.embed_tokens.weight", 2, VOCAB, HIDDEN, false);
    if (!sh->tied) {
        ADD("lm_head.weight", 2, VOCAB, HIDDEN, false);
    }
    ADD("model.norm.weight", 1, HIDDEN, 1, true);
    for (int l = 0; l < sh->n_layers; l++) {
        char p[64], nm[96];
        snprintf(p, sizeof p, "model.layers.%d.", l);
#define LADD(suffix, nd, r, c, isnorm)                                                           \
    do {                                                                                         \
        snprintf(nm, sizeof nm, "%s%s", p, suffix);                                              \
        ADD(nm, nd, r, c, isnorm);                                                               \
    } while (0)
        LADD("input_layernorm.weight", 1, HIDDEN, 1, true);
        LADD("self_attn.q_proj.weight", 2, qd, HIDDEN, false);
        LADD("self_attn.k_proj.weight", 2, kvd, HIDDEN, false);
        LADD("self_attn.v_proj.weight", 2, kvd, HIDDEN, false);
        if (sh->bias) {
            LADD("self_attn.q_proj.bias", 1, qd, 1, false);
            LADD("self_attn.k_proj.bias", 1, kvd, 1, false);
            LADD("self_attn.v_proj.bias", 1, kvd, 1, false);
        }
        LADD("self_attn.o_proj.weight", 2, HIDDEN, qd, false);
        LADD("post_attention_layernorm.weight", 1, HIDDEN, 1, true);
        LADD("mlp.gate_proj.weight", 2, FF, HIDDEN, false);
        LADD("mlp.up_proj.weight", 2, FF, HIDDEN, false);
        LADD("mlp.down_proj.weight", 2, HIDDEN, FF, false);
#undef LADD
    }
#undef ADD
    char header[16384];
    size_t off = 0;
    int hn = snprintf(header, sizeof header, "{");
    for (int i = 0; i < n; i++) {
        size_t size = (size_t)t[i].rows * (size_t)t[i].cols * 4;
        char shape[64];
        if (t[i].n_dims == 2) {
            snprintf(shape, sizeof shape, "[%ld,%ld]", t[i].rows, t[i].cols);
        } else {
            snprintf(shape, sizeof shape, "[%ld]", t[i].rows);
        }
        hn += snprintf(header + hn, sizeof header - (size_t)hn,
                       "%s\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                       i ? "," : "", t[i].name, shape, off, off + size);
        off += size;
    }
    hn += snprintf(header + hn, sizeof header - (size_t)hn, "}");
    int pad = (8 - (8 + hn) % 8) % 8;
    hn += snprintf(header + hn, sizeof header - (size_t)hn, "%*s", pad, "");
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    uint64_t h = (uint64_t)hn;
    assert_int_equal(fwrite(&h, 8, 1, fp), 1);
    assert_int_equal(fwrite(header, 1, (size_t)hn, fp), (size_t)hn);
    s_rng = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)t[i].rows * (size_t)t[i].cols;
        for (size_t j = 0; j < cnt; j++) {
            float v = t[i].norm ? 1.0f + 0.1f * s_rand() : 0.25f * s_rand();
            assert_int_equal(fwrite(&v, 4, 1, fp), 1);
        }
    }
    fclose(fp);
    snprintf(path, sizeof path, "%s/config.json", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp,
            "{\"model_type\":\"%s\",\"hidden_size\":%d,\"intermediate_size\":%d,"
            "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
            "\"vocab_size\":%d,\"rms_norm_eps\":1e-5,\"bos_token_id\":1,\"eos_token_id\":2,"
            "\"max_position_embeddings\":256,\"tie_word_embeddings\":%s%s}",
            sh->bias ? "qwen2" : "llama", HIDDEN, FF, sh->n_layers, sh->n_heads, sh->n_kv_heads,
            VOCAB, sh->tied ? "true" : "false", head_dim_override ? head_dim_override : "");
    fclose(fp);
}

struct fixture {
    char dir[64];
    tb_model_t *model;
};

static int s_setup_shape(void **state, const struct shape *sh, const char *extra)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tb_cpu_backend_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    s_write_model(f->dir, sh, extra);
    char err[256] = "";
    int rc = tb_model_open(f->dir, &f->model, err, sizeof err);
    if (rc != TB_OK) {
        fail_msg("cannot open the test model: %s", err);
    }
    *state = f;
    return 0;
}

static int s_setup(void **state)
{
    return s_setup_shape(state, &s_default, NULL);
}

static int s_teardown(void **state)
{
    struct fixture *f = *state;
    tb_model_close(&f->model);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* The CPU flavour's config of the last s_cfg (create reads it at once). */
static struct tb_cpu_config s_cpu_cfg;

static struct tb_backend_config s_cfg(int threads, uint32_t n_blocks, const tb_model_t *m)
{
    s_cpu_cfg.threads = threads;
    struct tb_backend_config c = {
        .flavour = &s_cpu_cfg,
        .block_size = BS,
        .max_batch_tokens = 64,
        .max_batch_seqs = 8,
        .kv_f16 = false,
    };
    c.kv_budget_bytes = (int64_t)(n_blocks * tb_cpu_backend_block_bytes_for(m, BS, false));
    return c;
}

static tb_backend_t *s_backend(const tb_model_t *m, int threads, uint32_t n_blocks)
{
    struct tb_backend_config c = s_cfg(threads, n_blocks, m);
    tb_backend_t *b = NULL;
    uint32_t nb = 0;
    char err[256] = "";
    int rc = tb_cpu_backend_ops.create(m, &c, &b, &nb, err, sizeof err);
    if (rc != TB_OK) {
        fail_msg("create failed: %s", err);
    }
    assert_int_equal(nb, n_blocks);
    return b;
}

/* ------------------------------------------------------------------------------------------ */
/* Plans built by hand                                                                         */
/* ------------------------------------------------------------------------------------------ */

/* One sequence's part of a step: its tokens [pos, pos + n) and its block table. */
struct part {
    const int32_t *tokens; /* the sequence's tokens from position 0 */
    uint32_t pos, n;
    const uint32_t *blocks;
    uint32_t n_blocks;
    bool logits;
};

struct plan_buf {
    struct tb_sched_plan plan;
    struct tb_sched_entry e[8];
    int32_t tok[64];
    uint32_t pos[64], slot[64];
};

static void s_plan(struct plan_buf *pb, const struct part *parts, int n_parts)
{
    memset(pb, 0, sizeof *pb);
    uint32_t t = 0;
    for (int i = 0; i < n_parts; i++) {
        const struct part *p = &parts[i];
        struct tb_sched_entry *e = &pb->e[i];
        e->id = (uint64_t)i + 1;
        e->start = t;
        e->n_tokens = p->n;
        e->pos = p->pos;
        e->n_ctx = p->pos + p->n;
        e->block_table = p->blocks;
        e->n_blocks = p->n_blocks;
        e->need_logits = p->logits;
        for (uint32_t k = 0; k < p->n; k++) {
            uint32_t ps = p->pos + k;
            pb->tok[t] = p->tokens[ps];
            pb->pos[t] = ps;
            pb->slot[t] = p->blocks[ps / BS] * BS + ps % BS;
            t++;
        }
        pb->plan.n_logits += p->logits ? 1 : 0;
    }
    pb->plan.n_seqs = (uint32_t)n_parts;
    pb->plan.seqs = pb->e;
    pb->plan.n_tokens = t;
    pb->plan.tokens = pb->tok;
    pb->plan.positions = pb->pos;
    pb->plan.slots = pb->slot;
}

static int s_run(tb_backend_t *b, const struct part *parts, int n_parts, float *logits)
{
    struct plan_buf pb;
    s_plan(&pb, parts, n_parts);
    char err[256] = "";
    int rc = tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err);
    if (rc != TB_OK) {
        print_message("forward: %s\n", err);
    }
    return rc;
}

static const int32_t s_seq_a[16] = {1, 17, 5, 33, 60, 2, 9, 41, 8, 8, 30, 12, 55, 3, 19, 44};
static const int32_t s_seq_b[16] = {1, 40, 41, 42, 7, 7, 7, 21, 22, 63, 0, 10, 11, 12, 13, 14};
static const int32_t s_seq_c[16] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static void test_create_refusals(void **state)
{
    struct fixture *f = *state;
    tb_backend_t *b = NULL;
    uint32_t nb = 0;
    char err[256];
    struct tb_backend_config c = s_cfg(1, 4, f->model);

    assert_int_equal(tb_cpu_backend_ops.create(NULL, &c, &b, &nb, err, sizeof err), TB_EINVAL);
    assert_int_equal(tb_cpu_backend_ops.create(f->model, NULL, &b, &nb, err, sizeof err),
                     TB_EINVAL);

    c.block_size = 0;
    assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err),
                     TB_ECONFIG);
    assert_non_null(strstr(err, "block_size 0"));
    c.block_size = 300;
    assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err),
                     TB_ECONFIG);
    assert_non_null(strstr(err, "1..256"));

    c = s_cfg(1, 4, f->model);
    c.kv_budget_bytes = (int64_t)tb_cpu_backend_block_bytes_for(f->model, BS, false) - 1;
    assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err),
                     TB_ECONFIG);
    assert_non_null(strstr(err, "holds no KV block"));
    c.kv_budget_bytes = -5;
    assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err),
                     TB_ECONFIG);

    c = s_cfg(1, 4, f->model);
    c.max_batch_tokens = 0;
    assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err),
                     TB_ECONFIG);
    assert_non_null(strstr(err, "max_batch_tokens"));
    c = s_cfg(1, 4, f->model);
    c.max_batch_seqs = 0;
    assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err),
                     TB_ECONFIG);
    c = s_cfg(-1, 4, f->model);
    assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err),
                     TB_ECONFIG);
    assert_non_null(strstr(err, "threads -1"));

    /* an instruction set the environment names but cannot be had */
    c = s_cfg(1, 4, f->model);
    setenv("TB_CPU_ISA", "sse9", 1);
    int rc = tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err);
    unsetenv("TB_CPU_ISA");
    assert_int_equal(rc, TB_EINVAL);
    assert_non_null(strstr(err, "TB_CPU_ISA=sse9"));
    assert_null(b);
    assert_int_equal(nb, 0);

    /* the Q4_0 packing switch takes 0 or 1 */
    setenv("TB_CPU_REPACK", "yes", 1);
    rc = tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err);
    assert_int_equal(rc, TB_ECONFIG);
    assert_non_null(strstr(err, "TB_CPU_REPACK=yes"));
    assert_null(b);
    for (int v = 0; v < 2; v++) {
        setenv("TB_CPU_REPACK", v ? "1" : "0", 1);
        rc = tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err);
        assert_int_equal(rc, TB_OK);
        tb_cpu_backend_ops.destroy(&b);
    }
    unsetenv("TB_CPU_REPACK");
}

static void test_refuses_huge_heads(void **state)
{
    (void)state;
    const struct shape sh = {1, 1, 1, 1024, true, false};
    void *st = NULL;
    s_setup_shape(&st, &sh, ",\"head_dim\":1024");
    struct fixture *f = st;
    struct tb_backend_config c = s_cfg(1, 2, f->model);
    tb_backend_t *b = NULL;
    uint32_t nb = 0;
    char err[256] = "";
    assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err),
                     TB_EMODEL);
    assert_non_null(strstr(err, "head_dim 1024"));
    assert_null(b);
    s_teardown(&st);
}

static void test_block_bytes_and_budget(void **state)
{
    struct fixture *f = *state;
    const struct tb_model_params *p = tb_model_params(f->model);
    size_t per = (size_t)p->n_layers * 2 * p->n_kv_heads * p->head_dim * BS;
    assert_int_equal(tb_cpu_backend_block_bytes_for(f->model, BS, true), per * 2);
    assert_int_equal(tb_cpu_backend_block_bytes_for(f->model, BS, false), per * 4);
    assert_int_equal(tb_cpu_backend_block_bytes_for(f->model, 0, false), 0);

    for (int f16 = 0; f16 < 2; f16++) {
        struct tb_backend_config c = s_cfg(1, 1, f->model);
        c.kv_f16 = f16;
        size_t bb = tb_cpu_backend_block_bytes_for(f->model, BS, f16);
        c.kv_budget_bytes = (int64_t)(bb * 7 + bb / 2); /* 7.5 blocks: rounds down */
        tb_backend_t *b = NULL;
        uint32_t nb = 0;
        char err[256] = "";
        assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err), 0);
        assert_int_equal(nb, 7);
        assert_int_equal(tb_cpu_backend_ops.block_bytes(b), bb);
        assert_int_equal(tb_cpu_backend_threads(b), 1);
        assert_non_null(tb_cpu_backend_isa(b));
        tb_cpu_backend_ops.destroy(&b);
        assert_null(b);
    }
    tb_cpu_backend_ops.destroy(NULL);
}

static void test_empty_plan(void **state)
{
    struct fixture *f = *state;
    tb_backend_t *b = s_backend(f->model, 2, 8);
    struct tb_sched_plan plan = {0};
    float sentinel[4] = {7.0f, 7.0f, 7.0f, 7.0f};
    char err[64] = "";
    assert_int_equal(tb_cpu_backend_ops.forward(b, &plan, sentinel, err, sizeof err), 0);
    assert_int_equal(tb_cpu_backend_ops.forward(b, &plan, NULL, err, sizeof err), 0);
    assert_true(sentinel[0] == 7.0f && sentinel[3] == 7.0f);
    struct tb_cpu_backend_stats st;
    tb_cpu_backend_get_stats(b, &st);
    assert_int_equal(st.forwards, 0);
    assert_int_equal(tb_cpu_backend_ops.forward(b, NULL, NULL, err, sizeof err), TB_EINVAL);
    tb_cpu_backend_ops.destroy(&b);
}

/* Each malformed plan is refused with TB_EINVAL and a message naming the fault. */
static void test_bad_plans(void **state)
{
    struct fixture *f = *state;
    tb_backend_t *b = s_backend(f->model, 1, 8);
    const uint32_t blocks[2] = {3, 5};
    float logits[2 * VOCAB];
    char err[256];
    struct part good = {s_seq_a, 0, 6, blocks, 2, true};
    struct plan_buf pb;

    s_plan(&pb, &good, 1);
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), 0);

    s_plan(&pb, &good, 1);
    pb.tok[2] = VOCAB;
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "outside the vocabulary"));

    s_plan(&pb, &good, 1);
    pb.slot[1] = 8 * BS;
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "outside the cache"));

    s_plan(&pb, &good, 1);
    pb.slot[1] = blocks[1] * BS; /* a slot the block table does not imply */
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "implies"));

    s_plan(&pb, &good, 1);
    pb.pos[3] = 9;
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);

    s_plan(&pb, &good, 1);
    pb.e[0].n_ctx = 7;
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "n_ctx"));

    s_plan(&pb, &good, 1);
    pb.e[0].n_blocks = 1; /* 6 tokens need 2 blocks of 4 */
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "do not cover"));

    const uint32_t bad_blocks[2] = {3, 8};
    struct part bad = good;
    bad.blocks = bad_blocks;
    s_plan(&pb, &bad, 1);
    pb.slot[4] = pb.slot[5] = 0; /* keep slots inside the cache: the block id is the fault */
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "block 8"));

    s_plan(&pb, &good, 1);
    pb.e[0].n_tokens = 5; /* token 5 belongs to no entry */
    pb.e[0].n_ctx = 5;
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "no entry"));

    s_plan(&pb, &good, 1);
    pb.e[0].start = 1;
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);

    s_plan(&pb, &good, 1);
    pb.plan.n_logits = 2;
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "logits rows"));

    s_plan(&pb, &good, 1);
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, NULL, err, sizeof err), TB_EINVAL);

    s_plan(&pb, &good, 1);
    pb.plan.n_tokens = 65; /* above max_batch_tokens */
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "sized for 64"));

    /* two entries claiming the same token */
    struct part two[2] = {good, good};
    s_plan(&pb, two, 2);
    pb.e[1].start = 0;
    pb.plan.n_tokens = 6;
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, logits, err, sizeof err), TB_EINVAL);
    assert_non_null(strstr(err, "two entries"));

    /* after all that, a good plan still gives the same logits as the first time */
    float again[VOCAB];
    s_plan(&pb, &good, 1);
    assert_int_equal(tb_cpu_backend_ops.forward(b, &pb.plan, again, err, sizeof err), 0);
    assert_memory_equal(again, logits, sizeof again);
    tb_cpu_backend_ops.destroy(&b);
}

/* Prefill in one plan, in chunks of 4/5/3 tokens, and token by token (decodes): the logits of
 * the last token are bitwise equal, and finite. */
static void test_chunked_prefill_positions(void **state)
{
    struct fixture *f = *state;
    const uint32_t blocks[4] = {6, 2, 7, 0};
    float whole[VOCAB], chunked[VOCAB], steps[VOCAB];

    tb_backend_t *b = s_backend(f->model, 2, 8);
    struct part all = {s_seq_a, 0, 12, blocks, 3, true};
    assert_int_equal(s_run(b, &all, 1, whole), 0);
    for (int i = 0; i < VOCAB; i++) {
        assert_true(isfinite(whole[i]));
    }
    tb_cpu_backend_ops.destroy(&b);

    b = s_backend(f->model, 2, 8);
    struct part c1 = {s_seq_a, 0, 4, blocks, 1, false};
    struct part c2 = {s_seq_a, 4, 5, blocks, 3, false};
    struct part c3 = {s_seq_a, 9, 3, blocks, 3, true};
    assert_int_equal(s_run(b, &c1, 1, NULL), 0);
    assert_int_equal(s_run(b, &c2, 1, NULL), 0);
    assert_int_equal(s_run(b, &c3, 1, chunked), 0);
    assert_memory_equal(whole, chunked, sizeof whole);
    tb_cpu_backend_ops.destroy(&b);

    b = s_backend(f->model, 1, 8);
    for (uint32_t p = 0; p < 12; p++) {
        struct part d = {s_seq_a, p, 1, blocks, p / BS + 1, true};
        assert_int_equal(s_run(b, &d, 1, steps), 0);
    }
    assert_memory_equal(whole, steps, sizeof whole);

    /* a later position really differs (the positions are used) */
    struct part more = {s_seq_a, 12, 1, blocks, 4, true};
    assert_int_equal(s_run(b, &more, 1, steps), 0);
    assert_memory_not_equal(whole, steps, sizeof whole);
    struct tb_cpu_backend_stats st;
    tb_cpu_backend_get_stats(b, &st);
    assert_int_equal(st.forwards, 13);
    assert_int_equal(st.tokens, 13);
    assert_int_equal(st.logits_rows, 13);
    tb_cpu_backend_ops.destroy(&b);
}

/* Sequence A's logits alone, first among others, last among others, mid-prefill next to
 * decodes, with one thread or two: bitwise the same.  Logits rows come in entry order. */
static void test_batch_invariance(void **state)
{
    struct fixture *f = *state;
    const uint32_t ba[3] = {0, 1, 2}, bb[3] = {3, 4, 5}, bc[3] = {6, 7, 8};
    float alone[VOCAB], rows[3 * VOCAB], other[VOCAB];

    tb_backend_t *b = s_backend(f->model, 1, 12);
    struct part a0 = {s_seq_a, 0, 9, ba, 3, true};
    assert_int_equal(s_run(b, &a0, 1, alone), 0);
    struct part a1 = {s_seq_a, 9, 1, ba, 3, true}; /* one decode */
    float alone_dec[VOCAB];
    assert_int_equal(s_run(b, &a1, 1, alone_dec), 0);
    tb_cpu_backend_ops.destroy(&b);

    struct part c_only = {s_seq_c, 0, 7, bc, 2, true};
    b = s_backend(f->model, 1, 12);
    assert_int_equal(s_run(b, &c_only, 1, other), 0);
    tb_cpu_backend_ops.destroy(&b);

    for (int threads = 1; threads <= 2; threads++) {
        /* A first, then B's prefill, then C's prefill */
        b = s_backend(f->model, threads, 12);
        struct part p1[3] = {
            {s_seq_a, 0, 9, ba, 3, true},
            {s_seq_b, 0, 11, bb, 3, true},
            {s_seq_c, 0, 7, bc, 2, true},
        };
        assert_int_equal(s_run(b, p1, 3, rows), 0);
        assert_memory_equal(rows, alone, sizeof alone);
        assert_memory_equal(rows + 2 * VOCAB, other, sizeof other);
        assert_memory_not_equal(rows, rows + VOCAB, sizeof alone);
        /* next step: B decodes, A decodes last */
        struct part p2[2] = {
            {s_seq_b, 11, 1, bb, 3, true},
            {s_seq_a, 9, 1, ba, 3, true},
        };
        assert_int_equal(s_run(b, p2, 2, rows), 0);
        assert_memory_equal(rows + VOCAB, alone_dec, sizeof alone_dec);
        tb_cpu_backend_ops.destroy(&b);

        /* A's prefill in two chunks, the first without logits, beside C */
        b = s_backend(f->model, threads, 12);
        struct part q1[2] = {
            {s_seq_c, 0, 3, bc, 1, false},
            {s_seq_a, 0, 5, ba, 2, false},
        };
        assert_int_equal(s_run(b, q1, 2, NULL), 0);
        struct part q2[2] = {
            {s_seq_a, 5, 4, ba, 3, true},
            {s_seq_c, 3, 4, bc, 2, true},
        };
        assert_int_equal(s_run(b, q2, 2, rows), 0);
        assert_memory_equal(rows, alone, sizeof alone);
        assert_memory_equal(rows + VOCAB, other, sizeof other);
        tb_cpu_backend_ops.destroy(&b);
    }
}

/* Prefix reuse as the KV manager does it: B's first block is A's (same tokens), B computes
 * only its tail, and gets what it gets computing everything itself. */
static void test_shared_prefix_blocks(void **state)
{
    struct fixture *f = *state;
    int32_t seq_d[12];
    memcpy(seq_d, s_seq_a, 8 * sizeof(int32_t));
    for (int i = 8; i < 12; i++) {
        seq_d[i] = 50 + i;
    }
    const uint32_t ba[3] = {0, 1, 2}, bd_own[3] = {4, 5, 6}, bd_shared[3] = {0, 1, 7};
    float own[VOCAB], shared[VOCAB];

    tb_backend_t *b = s_backend(f->model, 2, 8);
    struct part d = {seq_d, 0, 11, bd_own, 3, true};
    assert_int_equal(s_run(b, &d, 1, own), 0);
    struct part a = {s_seq_a, 0, 10, ba, 3, false};
    assert_int_equal(s_run(b, &a, 1, NULL), 0);
    struct part d2 = {seq_d, 8, 3, bd_shared, 3, true};
    assert_int_equal(s_run(b, &d2, 1, shared), 0);
    assert_memory_equal(own, shared, sizeof own);
    tb_cpu_backend_ops.destroy(&b);
}

/* The f16 cache gives finite logits close to the f32 cache's. */
static void test_kv_f16(void **state)
{
    struct fixture *f = *state;
    const uint32_t blocks[3] = {0, 1, 2};
    float l32[VOCAB], l16[VOCAB];
    tb_backend_t *b = s_backend(f->model, 2, 4);
    struct part a = {s_seq_a, 0, 10, blocks, 3, true};
    assert_int_equal(s_run(b, &a, 1, l32), 0);
    tb_cpu_backend_ops.destroy(&b);

    struct tb_backend_config c = s_cfg(2, 4, f->model);
    c.kv_f16 = true;
    c.kv_budget_bytes = (int64_t)(4 * tb_cpu_backend_block_bytes_for(f->model, BS, true));
    uint32_t nb = 0;
    char err[256] = "";
    assert_int_equal(tb_cpu_backend_ops.create(f->model, &c, &b, &nb, err, sizeof err), 0);
    assert_int_equal(nb, 4);
    assert_int_equal(s_run(b, &a, 1, l16), 0);
    float mx = 0.0f, diff = 0.0f;
    for (int i = 0; i < VOCAB; i++) {
        assert_true(isfinite(l16[i]));
        mx = fmaxf(mx, fabsf(l32[i]));
        diff = fmaxf(diff, fabsf(l32[i] - l16[i]));
    }
    assert_true(diff <= 5e-3f * mx);
    tb_cpu_backend_ops.destroy(&b);
}

/* A model with Q/K/V biases (qwen2) and tied embeddings runs, and the biases matter. */
static void test_bias_and_tied(void **state)
{
    (void)state;
    const struct shape with = {2, 4, 2, 8, true, true};
    const struct shape without = {2, 4, 2, 8, true, false};
    float lw[VOCAB], lo[VOCAB];
    const uint32_t blocks[2] = {0, 1};
    struct part a = {s_seq_b, 0, 6, blocks, 2, true};
    void *st = NULL;

    s_setup_shape(&st, &with, NULL);
    struct fixture *f = st;
    assert_true(tb_model_params(f->model)->qkv_bias);
    assert_true(tb_model_params(f->model)->tied_embeddings);
    tb_backend_t *b = s_backend(f->model, 2, 4);
    assert_int_equal(s_run(b, &a, 1, lw), 0);
    tb_cpu_backend_ops.destroy(&b);
    s_teardown(&st);

    s_setup_shape(&st, &without, NULL);
    f = st;
    b = s_backend(f->model, 2, 4);
    assert_int_equal(s_run(b, &a, 1, lo), 0);
    tb_cpu_backend_ops.destroy(&b);
    s_teardown(&st);
    for (int i = 0; i < VOCAB; i++) {
        assert_true(isfinite(lw[i]));
    }
    assert_memory_not_equal(lw, lo, sizeof lw);
}

/* Float matrices (this model's F32 ones) get an unchanged copy in the packed allocation: every
 * layer matrix and an untied output head point into it with the file's bytes, the token
 * embedding (and a head tied to it) stay in the file mapping, and the logits are bitwise those of
 * the stored matrices (TB_CPU_REPACK=0). */
static void test_float_copies(void **state)
{
    (void)state;
    for (int tied = 0; tied < 2; tied++) {
        const struct shape sh = {2, 4, 2, 8, tied != 0, false};
        void *st = NULL;
        s_setup_shape(&st, &sh, NULL);
        struct fixture *f = st;
        struct tb_cpu_weights *wc = NULL, *ws = NULL;
        char err[256] = "";
        assert_int_equal(tb_cpu_weights_new(f->model, TB_CPU_WEIGHTS_PACK, &wc, err, sizeof err),
                         TB_OK);
        assert_int_equal(tb_cpu_weights_new(f->model, 0, &ws, err, sizeof err), TB_OK);
        assert_null(ws->packed);
        assert_non_null(wc->packed);
        const uint8_t *lo = wc->packed, *hi = lo + wc->packed_bytes;
        for (uint32_t l = 0; l < wc->n_layers; l++) {
            const struct tb_cpu_weight *mc[] = {&wc->layers[l].wq,     &wc->layers[l].wk,
                                                &wc->layers[l].wv,     &wc->layers[l].wo,
                                                &wc->layers[l].w_gate, &wc->layers[l].w_up,
                                                &wc->layers[l].w_down};
            const struct tb_cpu_weight *ms[] = {&ws->layers[l].wq,     &ws->layers[l].wk,
                                                &ws->layers[l].wv,     &ws->layers[l].wo,
                                                &ws->layers[l].w_gate, &ws->layers[l].w_up,
                                                &ws->layers[l].w_down};
            for (size_t i = 0; i < sizeof mc / sizeof mc[0]; i++) {
                const uint8_t *d = mc[i]->data;
                size_t n = (size_t)mc[i]->rows * (size_t)mc[i]->cols * 4;
                assert_true(d >= lo && d + n <= hi);
                assert_int_equal((uintptr_t)d % 64, 0);
                assert_null(mc[i]->packed);
                assert_ptr_not_equal(d, ms[i]->data);
                assert_memory_equal(d, ms[i]->data, n);
            }
        }
        assert_ptr_equal(wc->tok_embd.data, ws->tok_embd.data);
        const uint8_t *head = wc->output.data;
        if (tied) {
            assert_ptr_equal(head, wc->tok_embd.data);
        } else {
            assert_true(head >= lo && head < hi);
            assert_memory_equal(head, ws->output.data, (size_t)VOCAB * HIDDEN * 4);
        }
        tb_cpu_weights_destroy(&wc);
        tb_cpu_weights_destroy(&ws);

        float y[2][VOCAB];
        const uint32_t blocks[2] = {0, 1};
        struct part a = {s_seq_a, 0, 7, blocks, 2, true};
        for (int v = 0; v < 2; v++) {
            setenv("TB_CPU_REPACK", v ? "1" : "0", 1);
            tb_backend_t *b = s_backend(f->model, 2, 4);
            assert_int_equal(s_run(b, &a, 1, y[v]), 0);
            tb_cpu_backend_ops.destroy(&b);
        }
        unsetenv("TB_CPU_REPACK");
        assert_memory_equal(y[0], y[1], sizeof y[0]);
        s_teardown(&st);
    }
}

/* The kernel property batch invariance rests on: every ISA, every dtype (Q8_0 and Q4_0 stored
 * and packed), a token's matmul row is bitwise the same for n_tok = 1 and at any row of a larger
 * batch. */
static void test_matmul_rows_batch_invariant(void **state)
{
    (void)state;
    tb_threadpool_t *pool = NULL;
    tb_cpu_kernels_t *k = NULL;
    assert_int_equal(tb_threadpool_new(2, &pool), 0);
    assert_int_equal(tb_cpu_kernels_new(pool, &k), 0);
    const int rows = 45, cols = 96, n_tok = 37;
    float *x = malloc(sizeof(float) * cols * n_tok);
    float *y = malloc(sizeof(float) * rows * n_tok);
    float *y1 = malloc(sizeof(float) * rows * 3);
    float *src = malloc(sizeof(float) * cols);
    uint8_t *w = malloc(rows * tb_cpu_dtype_row_bytes(TB_CPU_F32, cols));
    float bias[45];
    s_rng = 12345;
    for (int i = 0; i < cols * n_tok; i++) {
        x[i] = s_rand();
    }
    for (int i = 0; i < rows; i++) {
        bias[i] = s_rand();
    }
    const struct tb_cpu_weight q8 = {TB_CPU_Q8_0, rows, cols, w, NULL};
    const size_t pmax = tb_cpu_weight_packed_bytes(&q8); /* the larger packed form */
    uint8_t *packed = aligned_alloc(64, pmax);
    assert_non_null(packed);
    for (int isa = TB_CPU_ISA_GENERIC; isa <= (int)tb_cpu_isa_detect(); isa++) {
        assert_int_equal(tb_cpu_kernels_set_isa(k, (tb_cpu_isa_t)isa), 0);
        /* every dtype as stored, then Q8_0 and Q4_0 through their packed copies */
        for (int v = 0; v < TB_CPU_DTYPE_WRITABLE + 2; v++) {
            const int pack = v >= TB_CPU_DTYPE_WRITABLE;
            const int dt = !pack ? v : v == TB_CPU_DTYPE_WRITABLE ? TB_CPU_Q8_0 : TB_CPU_Q4_0;
            size_t rb = tb_cpu_dtype_row_bytes((tb_cpu_dtype_t)dt, cols);
            for (int r = 0; r < rows; r++) {
                for (int c = 0; c < cols; c++) {
                    src[c] = 0.2f * s_rand();
                }
                assert_int_equal(tb_cpu_quantize_row((tb_cpu_dtype_t)dt, src, w + r * rb, cols),
                                 0);
            }
            struct tb_cpu_weight wt = {(tb_cpu_dtype_t)dt, rows, cols, w, NULL};
            if (pack) {
                assert_int_equal(tb_cpu_weight_pack(&wt, packed, pmax), 0);
                wt.packed = packed;
            }
            assert_int_equal(tb_cpu_matmul(k, &wt, x, cols, n_tok, bias, y, rows), 0);
            for (int t = 0; t < n_tok; t++) {
                assert_int_equal(tb_cpu_matmul(k, &wt, x + t * cols, cols, 1, bias, y1, rows), 0);
                if (memcmp(y1, y + t * rows, sizeof(float) * rows) != 0) {
                    fail_msg("isa %s dtype %d%s: token %d differs at n_tok 1",
                             tb_cpu_isa_name((tb_cpu_isa_t)isa), dt, pack ? " packed" : "", t);
                }
                if (t + 3 <= n_tok) {
                    assert_int_equal(tb_cpu_matmul(k, &wt, x + t * cols, cols, 3, bias, y1, rows),
                                     0);
                    if (memcmp(y1, y + t * rows, sizeof(float) * rows * 3) != 0) {
                        fail_msg("isa %s dtype %d%s: tokens %d.. differ at n_tok 3",
                                 tb_cpu_isa_name((tb_cpu_isa_t)isa), dt, pack ? " packed" : "",
                                 t);
                    }
                }
            }
        }
    }
    tb_test_isa_ran("matmul batch invariance", (int)tb_cpu_isa_detect() + 1);
    free(packed);
    free(x);
    free(y);
    free(y1);
    free(src);
    free(w);
    tb_cpu_kernels_destroy(&k);
    tb_threadpool_destroy(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_refusals, s_setup, s_teardown),
        cmocka_unit_test(test_refuses_huge_heads),
        cmocka_unit_test_setup_teardown(test_block_bytes_and_budget, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_empty_plan, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_plans, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_chunked_prefill_positions, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_invariance, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_shared_prefix_blocks, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_kv_f16, s_setup, s_teardown),
        cmocka_unit_test(test_bias_and_tied),
        cmocka_unit_test(test_float_copies),
        cmocka_unit_test(test_matmul_rows_batch_invariant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
