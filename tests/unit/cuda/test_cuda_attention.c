/* Unit tests for the CUDA flavour's KV write and attention kernels (decode over paged blocks
 * with fixed-size splits, tiled prefill), run through the host emulation, against a direct
 * softmax in float64 over the f16 values the cache holds: GQA ratios, partial blocks, block
 * sizes that do not divide the split, several splits, and batch invariance. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the standard headers it needs */

#include "cuda/tb_cuda_kernels.h"
#include "tb_cuda_test_util.h"
#include "tb_errors.h"

#define NSEQ 3
#define SPLIT 32

struct cfg {
    int n_kv, group, hd, bs;
};

/* A cache holding three sequences of 1, 37 and 70 tokens in shuffled blocks. */
struct world {
    struct cfg c;
    struct tb_cuda_kv_layout L;
    uint16_t *kc, *vc;
    int32_t *tables; /* NSEQ x max_blocks */
    int max_blocks;
    int32_t lens[NSEQ];
};

static const int s_lens[NSEQ] = {1, 37, 70};

static void s_world_make(struct world *w, const struct cfg *c)
{
    memset(w, 0, sizeof(*w));
    w->c = *c;
    int total = 0;
    for (int s = 0; s < NSEQ; s++) {
        w->lens[s] = s_lens[s];
        const int nb = (s_lens[s] + c->bs - 1) / c->bs;
        total += nb;
        w->max_blocks = nb > w->max_blocks ? nb : w->max_blocks;
    }
    w->L = (struct tb_cuda_kv_layout){c->bs, c->n_kv, c->hd, total + 3};
    const size_t elems = (size_t)w->L.n_blocks * c->bs * c->n_kv * c->hd;
    w->kc = (uint16_t *)s_alloc(elems * 2);
    w->vc = (uint16_t *)s_alloc(elems * 2);
    memset(w->kc, 0xff, elems * 2); /* NaN: reading a slot never written would show */
    memset(w->vc, 0xff, elems * 2);
    w->tables = (int32_t *)s_alloc(sizeof(int32_t) * NSEQ * (size_t)w->max_blocks);
    int32_t *perm = (int32_t *)s_alloc(sizeof(int32_t) * (size_t)w->L.n_blocks);
    for (int i = 0; i < w->L.n_blocks; i++) {
        perm[i] = i;
    }
    for (int i = (int)w->L.n_blocks - 1; i > 0; i--) {
        const int j = (int)s_randu((uint32_t)i + 1);
        const int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int next = 0;
    const int kvw = c->n_kv * c->hd;
    for (int s = 0; s < NSEQ; s++) {
        const int n = s_lens[s];
        int32_t *slots = (int32_t *)s_alloc(sizeof(int32_t) * (size_t)n);
        for (int b = 0; b < w->max_blocks; b++) {
            w->tables[s * w->max_blocks + b] = b * c->bs < n ? perm[next++] : -1;
        }
        for (int p = 0; p < n; p++) {
            slots[p] = w->tables[s * w->max_blocks + p / c->bs] * c->bs + p % c->bs;
        }
        float *k = s_rand_floats((size_t)n * kvw, 1.0f),
              *v = s_rand_floats((size_t)n * kvw, 1.0f);
        assert_int_equal(tb_cuda_kv_write(&w->L, w->kc, w->vc, n, slots, k, kvw, v, kvw, NULL),
                         0);
        free(slots), free(k), free(v);
    }
    free(perm);
}

static void s_world_free(struct world *w)
{
    free(w->kc), free(w->vc), free(w->tables);
}

/* Cached K (which = 0) or V value of sequence s, position p, kv head h, dimension d. */
static double s_kv(const struct world *w, int which, int s, int p, int h, int d)
{
    const struct cfg *c = &w->c;
    const int32_t blk = w->tables[s * w->max_blocks + p / c->bs];
    const size_t at = ((size_t)(blk * c->n_kv + h) * c->bs + p % c->bs) * c->hd + d;
    return tb_cpu_f16_to_f32((which ? w->vc : w->kc)[at]);
}

/* out[0..hd) = attention of query q (one head, pre-scale) at position pos of sequence s. */
static void s_reference(const struct world *w, int s, int pos, int head, const float *q,
                        double *out)
{
    const struct cfg *c = &w->c;
    const int kvh = head / c->group;
    const double scale = 1.0 / sqrt((double)c->hd);
    double *sc = (double *)s_alloc(sizeof(double) * (size_t)(pos + 1)), m = -INFINITY, l = 0;
    for (int p = 0; p <= pos; p++) {
        double dot = 0;
        for (int d = 0; d < c->hd; d++) {
            dot += q[d] * s_kv(w, 0, s, p, kvh, d);
        }
        sc[p] = dot * scale;
        m = sc[p] > m ? sc[p] : m;
    }
    for (int d = 0; d < c->hd; d++) {
        out[d] = 0;
    }
    for (int p = 0; p <= pos; p++) {
        const double e = exp(sc[p] - m);
        l += e;
        for (int d = 0; d < c->hd; d++) {
            out[d] += e * s_kv(w, 1, s, p, kvh, d);
        }
    }
    for (int d = 0; d < c->hd; d++) {
        out[d] /= l;
    }
    free(sc);
}

/* Decode for sequences `seqs[0..n)` of the world, in that order; out rows follow. */
static void s_decode(const struct world *w, const int *seqs, int n, const float *q, float *out)
{
    const int n_heads = w->c.n_kv * w->c.group, qw = n_heads * w->c.hd;
    int32_t *tables = (int32_t *)s_alloc(sizeof(int32_t) * (size_t)(n * w->max_blocks));
    int32_t lens[NSEQ];
    int max_ctx = 1;
    for (int i = 0; i < n; i++) {
        memcpy(tables + i * w->max_blocks, w->tables + seqs[i] * w->max_blocks,
               sizeof(int32_t) * (size_t)w->max_blocks);
        lens[i] = w->lens[seqs[i]];
        max_ctx = lens[i] > max_ctx ? lens[i] : max_ctx;
    }
    const struct tb_cuda_attn_batch b = {n, tables, w->max_blocks, lens, NULL, NULL, max_ctx, 0};
    const size_t nsc = tb_cuda_attn_decode_scratch_floats(n, n_heads, w->c.hd, max_ctx, SPLIT);
    float *scratch = (float *)s_alloc(sizeof(float) * nsc);
    assert_true(nsc > 0);
    assert_int_equal(tb_cuda_attn_decode(&w->L, w->kc, w->vc, &b, q, qw, n_heads, 0.0f, SPLIT,
                                         scratch, out, qw, NULL),
                     0);
    free(scratch), free(tables);
}

static const struct cfg s_cfgs[] = {
    {2, 4, 32, 16}, /* GQA 4, block 16: 70 tokens = 3 splits, the last block partial */
    {1, 6, 16, 5},  /* GQA 6 (two head batches), blocks of 5 straddle the splits */
    {2, 1, 64, 7},  /* no GQA, head_dim 64 */
    {1, 2, 8, 16},  /* head_dim 8: one lane per row */
};

static void test_decode_against_reference(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < sizeof(s_cfgs) / sizeof(s_cfgs[0]); ci++) {
        struct world w;
        s_world_make(&w, &s_cfgs[ci]);
        const int n_heads = w.c.n_kv * w.c.group, qw = n_heads * w.c.hd;
        float *q = s_rand_floats((size_t)NSEQ * qw, 2.0f);
        float *out = (float *)s_alloc(sizeof(float) * NSEQ * (size_t)qw);
        double *ref = (double *)s_alloc(sizeof(double) * (size_t)w.c.hd);
        const int seqs[NSEQ] = {0, 1, 2};
        s_decode(&w, seqs, NSEQ, q, out);
        for (int s = 0; s < NSEQ; s++) {
            for (int h = 0; h < n_heads; h++) {
                s_reference(&w, s, w.lens[s] - 1, h, q + s * qw + h * w.c.hd, ref);
                for (int d = 0; d < w.c.hd; d++) {
                    assert_true(s_close(out[s * qw + h * w.c.hd + d], ref[d], 2e-6, 1e-5));
                }
            }
        }
        free(q), free(out), free(ref);
        s_world_free(&w);
    }
}

/* Sequence 2 decoded alone, first of a batch and last of a batch: the same bits. */
static void test_decode_batch_invariance(void **state)
{
    (void)state;
    struct world w;
    s_world_make(&w, &s_cfgs[0]);
    const int qw = w.c.n_kv * w.c.group * w.c.hd;
    float *q = s_rand_floats((size_t)NSEQ * qw, 2.0f);
    float *qa = (float *)s_alloc(sizeof(float) * NSEQ * (size_t)qw);
    float *alone = (float *)s_alloc(sizeof(float) * (size_t)qw);
    float *first = (float *)s_alloc(sizeof(float) * NSEQ * (size_t)qw);
    float *last = (float *)s_alloc(sizeof(float) * NSEQ * (size_t)qw);
    const int one[1] = {2}, fwd[3] = {2, 0, 1}, rev[3] = {1, 0, 2};
    s_decode(&w, one, 1, q + 2 * qw, alone);
    memcpy(qa, q + 2 * qw, sizeof(float) * (size_t)qw);
    memcpy(qa + qw, q, sizeof(float) * (size_t)qw);
    memcpy(qa + 2 * qw, q + qw, sizeof(float) * (size_t)qw);
    s_decode(&w, fwd, 3, qa, first);
    memcpy(qa, q + qw, sizeof(float) * (size_t)qw);
    memcpy(qa + 2 * qw, q + 2 * qw, sizeof(float) * (size_t)qw);
    s_decode(&w, rev, 3, qa, last);
    assert_memory_equal(alone, first, sizeof(float) * (size_t)qw);
    assert_memory_equal(alone, last + 2 * qw, sizeof(float) * (size_t)qw);
    free(q), free(qa), free(alone), free(first), free(last);
    s_world_free(&w);
}

/* A prefill batch: sequence 0's whole prompt (1 token), sequence 1's whole prompt (37 tokens:
 * three query tiles) and the last 20 tokens of sequence 2 (a chunk after 50 cached ones). */
static void test_prefill_against_reference(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < 3; ci++) {
        struct world w;
        s_world_make(&w, &s_cfgs[ci]);
        const int n_heads = w.c.n_kv * w.c.group, qw = n_heads * w.c.hd;
        const int32_t q_lens[NSEQ] = {1, 37, 20}, q_start[NSEQ] = {0, 1, 38};
        const int n_rows = 58;
        float *q = s_rand_floats((size_t)n_rows * qw, 2.0f);
        float *out = (float *)s_alloc(sizeof(float) * (size_t)n_rows * qw);
        double *ref = (double *)s_alloc(sizeof(double) * (size_t)w.c.hd);
        const struct tb_cuda_attn_batch b = {NSEQ,    w.tables, w.max_blocks, w.lens,
                                             q_start, q_lens,   70,           37};
        assert_int_equal(tb_cuda_attn_prefill(&w.L, w.kc, w.vc, &b, q, qw, n_heads, 0.0f, out, qw,
                                              NULL),
                         0);
        for (int s = 0; s < NSEQ; s++) {
            for (int i = 0; i < q_lens[s]; i++) {
                const int row = q_start[s] + i, pos = w.lens[s] - q_lens[s] + i;
                for (int h = 0; h < n_heads; h++) {
                    s_reference(&w, s, pos, h, q + row * qw + h * w.c.hd, ref);
                    for (int d = 0; d < w.c.hd; d++) {
                        assert_true(s_close(out[row * qw + h * w.c.hd + d], ref[d], 2e-6, 1e-5));
                    }
                }
            }
        }
        free(q), free(out), free(ref);
        s_world_free(&w);
    }
}

static void test_attention_arguments(void **state)
{
    (void)state;
    struct world w;
    s_world_make(&w, &s_cfgs[0]);
    const int n_heads = 8, qw = n_heads * 32;
    float q[8 * 32] = {0}, out[8 * 32], scratch[4096];
    const struct tb_cuda_attn_batch b = {1, w.tables, w.max_blocks, w.lens, NULL, NULL, 1, 0};
    assert_int_equal(tb_cuda_attn_decode(&w.L, w.kc, w.vc, &b, q, qw, n_heads, 0, 48, scratch,
                                         out, qw, NULL),
                     TB_EINVAL); /* split not a multiple of 32 */
    assert_int_equal(tb_cuda_attn_decode(&w.L, w.kc, w.vc, &b, q, qw, 3, 0, 32, scratch, out, qw,
                                         NULL),
                     TB_EINVAL); /* 3 query heads over 2 kv heads */
    assert_int_equal(tb_cuda_attn_decode(&w.L, w.kc, w.vc, &b, q, qw, n_heads, 0, 32, scratch,
                                         out, qw, NULL),
                     0); /* the same call, valid */
    struct tb_cuda_kv_layout big = w.L;
    big.head_dim = 256;
    const struct tb_cuda_attn_batch pb = {1, w.tables, w.max_blocks, w.lens, w.lens, w.lens,
                                          1, 1};
    assert_int_equal(tb_cuda_attn_prefill(&big, w.kc, w.vc, &pb, q, 2 * 256, 2, 0, out, 2 * 256,
                                          NULL),
                     TB_ENOTSUP);
    s_world_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_against_reference),
        cmocka_unit_test(test_decode_batch_invariance),
        cmocka_unit_test(test_prefill_against_reference),
        cmocka_unit_test(test_attention_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
