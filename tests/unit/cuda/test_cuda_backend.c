/*
 * The CUDA backend (tb_cuda_backend.h) in its emulated build, driven by the engine's runner over
 * the TinyStories model (../shared, as tests/unit/engine/test_runner.c): seeded sampling gives
 * the cpu flavour's tokens, cancellation returns the KV blocks, gpu_memory_utilization sizes
 * the cache from the (emulated) free device memory, and what the backend cannot do is refused
 * with a message (f32 KV cache, too little device memory, no room for one block).
 */
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
#include "tb_cuda_backend.h"
#include "tb_cuda_rt.h"
#include "tb_errors.h"
#include "tb_runner.h"

#define NTOK 10

static tb_model_t *s_model;

static tb_model_t *s_open_model(void)
{
    if (s_model) {
        return s_model;
    }
    const char *root = getenv("TB_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/../shared/models/tinystories-656k", root ? root : ".");
    char cfg[1100];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    if (access(cfg, R_OK) != 0) {
        return NULL;
    }
    char err[512] = "";
    if (tb_model_open(path, &s_model, err, sizeof err) != 0) {
        fail_msg("cannot open %s: %s", path, err);
    }
    return s_model;
}

static tb_model_t *s_need_model(void)
{
    tb_model_t *m = s_open_model();
    if (!m) {
        printf("# skip: ../shared/models/tinystories-656k absent\n");
        skip();
    }
    return m;
}

static void s_config(struct tb_runner_config *c, const tb_model_t *m, const void *flavour,
                     bool prefix)
{
    tb_runner_config_init(c);
    c->max_batch_seqs = 4;
    c->max_batch_tokens = 32;
    c->max_seqs = 8;
    c->block_size = 8;
    c->kv_cache_bytes = (int64_t)(40 * tb_cpu_backend_block_bytes_for(m, 8, true));
    c->prefix_caching = prefix;
    c->seed = 7;
    c->flavour = flavour;
}

static tb_runner_t *s_new(const struct tb_backend_ops *ops, const void *flavour, bool prefix)
{
    tb_model_t *m = s_need_model();
    struct tb_runner_config c;
    s_config(&c, m, flavour, prefix);
    tb_runner_t *r = NULL;
    char err[512] = "";
    if (tb_runner_new(m, ops, &c, &r, err, sizeof err) != 0) {
        fail_msg("tb_runner_new (%s): %s", ops->name, err);
    }
    return r;
}

/* Runs two seeded sampled requests to the end; their tokens into toks[2][NTOK]. */
static void s_sample_two(tb_runner_t *r, int32_t toks[2][NTOK])
{
    const int32_t p0[] = {1, 450, 300, 12, 99, 7, 31, 64, 5, 18, 222};
    const int32_t p1[] = {1, 77, 78, 79};
    struct tb_sampling_params sp;
    tb_sampling_params_init(&sp);
    sp.temperature = 0.8f;
    sp.top_p = 0.9f;
    sp.seed = 1234;
    sp.has_seed = true;
    sp.ignore_eos = true;
    sp.max_tokens = NTOK;
    struct tb_runner_request q0 = {.prompt = p0,
                                   .n_prompt = 11,
                                   .params = &sp,
                                   .user = (void *)0};
    struct tb_runner_request q1 = {.prompt = p1, .n_prompt = 4, .params = &sp, .user = (void *)1};
    assert_int_equal(tb_runner_submit(r, &q0, NULL), 0);
    assert_int_equal(tb_runner_submit(r, &q1, NULL), 0);
    uint32_t got[2] = {0, 0};
    while (tb_runner_has_work(r)) {
        const struct tb_runner_output *outs;
        uint32_t n = 0;
        int rc = tb_runner_step(r, &outs, &n);
        assert_true(rc == 0 || rc == TB_AGAIN);
        for (uint32_t i = 0; i < n; i++) {
            uintptr_t u = (uintptr_t)outs[i].user;
            assert_true(u < 2 && got[u] < NTOK);
            toks[u][got[u]++] = outs[i].token;
        }
    }
    assert_int_equal(got[0], NTOK);
    assert_int_equal(got[1], NTOK);
}

static void test_seeded_sampling_equals_cpu(void **state)
{
    (void)state;
    struct tb_cpu_config cpu = {.threads = 1};
    struct tb_cuda_config cuda = {.cuda_graphs = true};
    int32_t a[2][NTOK], b[2][NTOK];
    tb_runner_t *r = s_new(&tb_cpu_backend_ops, &cpu, true);
    s_sample_two(r, a);
    tb_runner_destroy(&r);
    r = s_new(&tb_cuda_backend_ops, &cuda, true);
    s_sample_two(r, b);
    struct tb_cuda_backend_stats st;
    tb_cuda_backend_get_stats(tb_runner_backend(r), &st);
    tb_runner_destroy(&r);
    assert_memory_equal(a, b, sizeof a);
    assert_true(st.graph_replays > 0); /* the decode steps ran as graphs */
    assert_true(st.gemm_calls > 0);    /* and the 11-token prompt through the GEMM path */
}

static void test_cancel_frees_blocks(void **state)
{
    (void)state;
    tb_runner_t *r = s_new(&tb_cuda_backend_ops, NULL, false);
    const int32_t p[] = {1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    struct tb_sampling_params sp;
    tb_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.ignore_eos = true;
    sp.max_tokens = 100;
    struct tb_runner_request q = {.prompt = p, .n_prompt = 17, .params = &sp};
    uint64_t id0, id1;
    assert_int_equal(tb_runner_submit(r, &q, &id0), 0);
    assert_int_equal(tb_runner_submit(r, &q, &id1), 0);
    for (int i = 0; i < 4; i++) {
        const struct tb_runner_output *outs;
        uint32_t n;
        assert_int_equal(tb_runner_step(r, &outs, &n), 0);
    }
    struct tb_sched_load ld;
    tb_runner_get_load(r, &ld);
    assert_int_equal(ld.running, 2);
    const uint32_t both = ld.kv_used_blocks;
    assert_true(both >= 2 * 3); /* 17 + tokens of 8-token blocks each */
    assert_int_equal(tb_runner_cancel(r, id0), 0);
    tb_runner_get_load(r, &ld);
    assert_int_equal(ld.running, 1);
    assert_int_equal(ld.kv_used_blocks, both / 2);
    assert_int_equal(tb_runner_cancel(r, id1), 0);
    tb_runner_get_load(r, &ld);
    assert_int_equal(ld.kv_used_blocks, 0);
    assert_false(tb_runner_has_work(r));
    tb_runner_destroy(&r);
}

static int s_create(const struct tb_backend_config *bc, tb_backend_t **b, uint32_t *n, char *err,
                    size_t len)
{
    return tb_cuda_backend_ops.create(s_need_model(), bc, b, n, err, len);
}

static void test_memory_sizing_and_refusals(void **state)
{
    (void)state;
    tb_model_t *m = s_need_model();
    const size_t bb = tb_cpu_backend_block_bytes_for(m, 16, true);
    struct tb_cuda_config cc = {.gpu_memory_utilization = 0.5, .cuda_graphs = true};
    struct tb_backend_config bc = {.block_size = 16,
                                   .kv_budget_bytes = 1 << 20,
                                   .max_batch_tokens = 64,
                                   .max_batch_seqs = 8,
                                   .kv_f16 = true,
                                   .flavour = &cc};
    char err[512] = "";
    tb_backend_t *b = NULL;
    uint32_t n = 0;
    /* an emulated device of 64 MiB: half of what the weights and scratch leave */
    setenv("TB_CUDA_EMU_MEM", "67108864", 1);
    assert_int_equal(s_create(&bc, &b, &n, err, sizeof err), 0);
    struct tb_cuda_backend_stats st;
    tb_cuda_backend_get_stats(b, &st);
    const size_t left = (64u << 20) - st.weight_bytes - st.scratch_bytes;
    assert_int_equal(n, (uint32_t)((double)left * 0.5 / (double)bb));
    assert_int_equal(st.kv_bytes, (size_t)n * bb);
    assert_int_equal(tb_cuda_backend_ops.block_bytes(b), bb);
    tb_cuda_backend_ops.destroy(&b);

    /* utilization 0: the kv_cache bytes */
    cc.gpu_memory_utilization = 0;
    assert_int_equal(s_create(&bc, &b, &n, err, sizeof err), 0);
    assert_int_equal(n, (uint32_t)((1u << 20) / bb));
    tb_cuda_backend_ops.destroy(&b);

    /* a device too small for the weights: a refusal naming the allocation, nothing leaked */
    setenv("TB_CUDA_EMU_MEM", "1000000", 1);
    assert_int_equal(s_create(&bc, &b, &n, err, sizeof err), TB_ENOMEM);
    assert_null(b);
    assert_non_null(strstr(err, "out of device memory loading the model"));
    assert_non_null(strstr(err, "cudaMalloc of"));
    size_t free_b = 0;
    tb_cu_mem_info(&free_b, NULL, NULL, 0);
    assert_int_equal(free_b, 1000000); /* every allocation was returned */

    /* room for the weights but for no KV block */
    setenv("TB_CUDA_EMU_MEM", "67108864", 1);
    cc.gpu_memory_utilization = 1e-9;
    assert_int_equal(s_create(&bc, &b, &n, err, sizeof err), TB_ENOMEM);
    assert_non_null(strstr(err, "no room for the KV cache"));
    unsetenv("TB_CUDA_EMU_MEM");

    /* f32 KV cache: refused by name */
    cc.gpu_memory_utilization = 0;
    bc.kv_f16 = false;
    assert_int_equal(s_create(&bc, &b, &n, err, sizeof err), TB_ECONFIG);
    assert_non_null(strstr(err, "kv_dtype f32"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seeded_sampling_equals_cpu),
        cmocka_unit_test(test_cancel_frees_blocks),
        cmocka_unit_test(test_memory_sizing_and_refusals),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tb_model_close(&s_model);
    return rc;
}
