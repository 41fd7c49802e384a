/* Unit tests for the paged KV cache and attention: random block tables, GQA ratios, odd head
 * sizes and block sizes, f16 and f32 caches, sliding windows, every ISA, against a direct
 * softmax in double. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the standard headers it needs */

#include "cpu/tb_cpu_kernels.h"
#include "tb_errors.h"

#include "../tb_test_isa.h"

static uint64_t s_rng = 0x9e3779b97f4a7c15ull;

static float s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float)((s_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static uint32_t s_randu(uint32_t n)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (uint32_t)((s_rng >> 33) % n);
}

struct cfg {
    int n_kv, group, hd, bs;
    tb_cpu_dtype_t dt;
};

#define NSEQ 3
#define MAXQ 16

/* Writes three sequences (1, 37 and 100 tokens) into a cache and checks decode and prefill
 * queries against the reference.  window: the queries' sliding window (0: none); the query at
 * pos attends to positions (pos - window, pos].  save: when not NULL, receives the outputs
 * (MAXQ rows of stride `(n_heads * hd + 1)` floats) for bitwise comparisons. */
static void s_run(tb_cpu_kernels_t *k, const struct cfg *c, int window, float *save)
{
    const int lens[NSEQ] = {1, 37, 100};
    const int n_heads = c->n_kv * c->group;
    const int kvw = c->n_kv * c->hd, qw = n_heads * c->hd;
    int total_blocks = 0;
    for (int s = 0; s < NSEQ; s++) {
        total_blocks += (lens[s] + c->bs - 1) / c->bs;
    }
    struct tb_cpu_kv_layout L = {c->bs, c->n_kv, c->hd, c->dt, total_blocks + 7};
    assert_int_equal(tb_cpu_kv_check(&L), TB_OK);
    size_t bytes = tb_cpu_kv_bytes(&L);
    assert_int_equal(bytes, (size_t)L.n_blocks * c->bs * kvw * (c->dt == TB_CPU_F16 ? 2 : 4));
    uint8_t *kc = malloc(bytes), *vc = malloc(bytes);
    memset(kc, 0xff, bytes); /* NaN garbage: reading an unwritten slot would show */
    memset(vc, 0xff, bytes);
    /* Random block tables: a shuffled subset of the cache's blocks. */
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)L.n_blocks);
    for (int i = 0; i < L.n_blocks; i++) {
        perm[i] = i;
    }
    for (int i = (int)L.n_blocks - 1; i > 0; i--) {
        int j = (int)s_randu((uint32_t)i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int32_t *tables[NSEQ];
    float *kref[NSEQ], *vref[NSEQ]; /* logical [pos][kv_head][hd], as stored (rounded) */
    int used = 0;
    for (int s = 0; s < NSEQ; s++) {
        int nb = (lens[s] + c->bs - 1) / c->bs;
        tables[s] = perm + used;
        used += nb;
        kref[s] = malloc(sizeof(float) * (size_t)lens[s] * kvw);
        vref[s] = malloc(sizeof(float) * (size_t)lens[s] * kvw);
        float *kin = malloc(sizeof(float) * (size_t)lens[s] * kvw);
        float *vin = malloc(sizeof(float) * (size_t)lens[s] * kvw);
        int32_t *slots = malloc(sizeof(int32_t) * (size_t)lens[s]);
        for (int p = 0; p < lens[s]; p++) {
            slots[p] = tables[s][p / c->bs] * c->bs + p % c->bs;
            for (int i = 0; i < kvw; i++) {
                kin[p * kvw + i] = s_rand() * 2.0f;
                vin[p * kvw + i] = s_rand();
                kref[s][p * kvw + i] = c->dt == TB_CPU_F16 ? tb_cpu_f16_to_f32(tb_cpu_f32_to_f16(
                                                                 kin[p * kvw + i]))
                                                           : kin[p * kvw + i];
                vref[s][p * kvw + i] = c->dt == TB_CPU_F16 ? tb_cpu_f16_to_f32(tb_cpu_f32_to_f16(
                                                                 vin[p * kvw + i]))
                                                           : vin[p * kvw + i];
            }
        }
        /* write in two calls, the second with a padding slot (-1) in between */
        int half = lens[s] / 2;
        assert_int_equal(tb_cpu_kv_write(&L, kc, vc, half, slots, kin, kvw, vin, kvw), TB_OK);
        int32_t pad_slots[2] = {-1, 0};
        for (int p = half; p < lens[s]; p++) {
            pad_slots[1] = slots[p];
            float kk[2 * 512], vv[2 * 512];
            memcpy(kk + kvw, kin + p * kvw, sizeof(float) * kvw);
            memcpy(vv + kvw, vin + p * kvw, sizeof(float) * kvw);
            memset(kk, 0, sizeof(float) * kvw);
            memset(vv, 0, sizeof(float) * kvw);
            assert_int_equal(tb_cpu_kv_write(&L, kc, vc, 2, pad_slots, kk, kvw, vv, kvw), TB_OK);
        }
        free(kin);
        free(vin);
        free(slots);
    }
    /* Queries: decode steps of each sequence, a prefill-like run of sequence 2, and a query
     * that sees nothing (ctx_len 0). */
    struct tb_cpu_attn_seq qs[MAXQ];
    int qseq[MAXQ];
    int nq = 0;
    for (int s = 0; s < NSEQ; s++) {
        qs[nq] = (struct tb_cpu_attn_seq){tables[s], (lens[s] + c->bs - 1) / c->bs, lens[s],
                                          lens[s] - 1, window};
        qseq[nq++] = s;
    }
    static const int prefill_pos[] = {0, 4, 5, 15, 16, 17, 63, 64, 99};
    for (size_t i = 0; i < sizeof(prefill_pos) / sizeof(prefill_pos[0]); i++) {
        qs[nq] = (struct tb_cpu_attn_seq){tables[2], (lens[2] + c->bs - 1) / c->bs, lens[2],
                                          prefill_pos[i], window};
        qseq[nq++] = 2;
    }
    qs[nq] = (struct tb_cpu_attn_seq){tables[1], 0, 0, 3, window};
    qseq[nq++] = 1;
    const size_t ldq = (size_t)qw + 3, ldo = (size_t)qw + 1;
    float *q = malloc(sizeof(float) * ldq * nq);
    float *out = malloc(sizeof(float) * ldo * nq);
    for (size_t i = 0; i < ldq * nq; i++) {
        q[i] = s_rand();
    }
    assert_int_equal(tb_cpu_attention(k, &L, kc, vc, nq, qs, q, ldq, n_heads, 0.0f, out, ldo),
                     TB_OK);
    const double scale = 1.0 / sqrt((double)c->hd);
    double *sc = malloc(sizeof(double) * 128);
    for (int t = 0; t < nq; t++) {
        int s = qseq[t];
        int n_att = qs[t].pos + 1 < qs[t].ctx_len ? qs[t].pos + 1 : qs[t].ctx_len;
        /* transformers' sliding-window mask: key j is seen by query i when j > i - window */
        int lo = window > 0 && qs[t].pos + 1 - window > 0 ? qs[t].pos + 1 - window : 0;
        for (int h = 0; h < n_heads; h++) {
            int g = h / c->group;
            const float *qh = q + (size_t)t * ldq + (size_t)h * c->hd;
            double mx = -INFINITY, sum = 0.0;
            for (int p = lo; p < n_att; p++) {
                double d = 0.0;
                for (int i = 0; i < c->hd; i++) {
                    d += (double)qh[i] * kref[s][(size_t)p * kvw + g * c->hd + i];
                }
                sc[p] = d * scale;
                mx = sc[p] > mx ? sc[p] : mx;
            }
            for (int p = lo; p < n_att; p++) {
                sc[p] = exp(sc[p] - mx);
                sum += sc[p];
            }
            for (int i = 0; i < c->hd; i++) {
                double o = 0.0;
                for (int p = lo; p < n_att; p++) {
                    o += sc[p] * vref[s][(size_t)p * kvw + g * c->hd + i];
                }
                o = n_att > lo ? o / sum : 0.0;
                double got = out[(size_t)t * ldo + (size_t)h * c->hd + i];
                if (!(fabs(got - o) <= 2e-5 + 2e-5 * fabs(o))) {
                    print_error("kv %d group %d hd %d bs %d dt %d window %d isa %s: q %d head %d "
                                "dim %d: got %.7g want %.7g\n",
                                c->n_kv, c->group, c->hd, c->bs, c->dt, window,
                                tb_cpu_isa_name(tb_cpu_kernels_isa(k)), t, h, i, got, o);
                    fail();
                }
            }
        }
    }
    if (save) {
        for (int t = 0; t < nq; t++) {
            memcpy(save + (size_t)t * ldo, out + (size_t)t * ldo, sizeof(float) * (size_t)qw);
        }
    }
    /* With a window, blocks wholly before it are not read: the same query with their table
     * entries replaced by an invalid id gives the same bits. */
    if (window > 0) {
        int32_t table[128];
        for (int t = 0; t < nq; t++) {
            int lo = qs[t].pos + 1 - window;
            if (lo < c->bs || qs[t].ctx_len == 0) {
                continue;
            }
            memcpy(table, qs[t].block_table, sizeof(int32_t) * (size_t)qs[t].n_blocks);
            for (int b = 0; b < lo / c->bs; b++) {
                table[b] = -1;
            }
            struct tb_cpu_attn_seq one = qs[t];
            one.block_table = table;
            float *o1 = malloc(sizeof(float) * ldo);
            assert_int_equal(tb_cpu_attention(k, &L, kc, vc, 1, &one, q + (size_t)t * ldq, ldq,
                                              n_heads, 0.0f, o1, ldo),
                             TB_OK);
            assert_memory_equal(o1, out + (size_t)t * ldo, sizeof(float) * (size_t)qw);
            free(o1);
        }
    }
    /* Broken tables and windows are refused. */
    int32_t bad[1] = {(int32_t)L.n_blocks};
    struct tb_cpu_attn_seq bq = {bad, 1, 1, 0, 0};
    assert_int_equal(tb_cpu_attention(k, &L, kc, vc, 1, &bq, q, ldq, n_heads, 0.0f, out, ldo),
                     TB_EINVAL);
    bq = (struct tb_cpu_attn_seq){tables[2], 1, lens[2], lens[2] - 1, 0}; /* table too short */
    assert_int_equal(tb_cpu_attention(k, &L, kc, vc, 1, &bq, q, ldq, n_heads, 0.0f, out, ldo),
                     TB_EINVAL);
    bq = qs[0];
    bq.window = -1;
    assert_int_equal(tb_cpu_attention(k, &L, kc, vc, 1, &bq, q, ldq, n_heads, 0.0f, out, ldo),
                     TB_EINVAL);
    if (c->n_kv > 1) { /* n_heads not a multiple of n_kv_heads */
        assert_int_equal(tb_cpu_attention(k, &L, kc, vc, 1, qs, q, ldq, n_heads + 1, 0.0f, out,
                                          ldo),
                         TB_EINVAL);
    }
    for (int s = 0; s < NSEQ; s++) {
        free(kref[s]);
        free(vref[s]);
    }
    free(sc);
    free(q);
    free(out);
    free(perm);
    free(kc);
    free(vc);
}

/* Runs `fn` on every ISA the CPU has, with a 2-thread pool. */
static void s_for_each_isa(void (*fn)(tb_cpu_kernels_t *k))
{
    tb_threadpool_t *pool = NULL;
    assert_int_equal(tb_threadpool_new(2, &pool), TB_OK);
    tb_cpu_kernels_t *k = NULL;
    assert_int_equal(tb_cpu_kernels_new(pool, &k), TB_OK);
    int ran = 0;
    for (int isa = TB_CPU_ISA_GENERIC; isa <= (int)tb_cpu_isa_detect(); isa++) {
        assert_int_equal(tb_cpu_kernels_set_isa(k, (tb_cpu_isa_t)isa), TB_OK);
        fn(k);
        ran++;
    }
    tb_test_isa_ran("attention", ran);
    tb_cpu_kernels_destroy(&k);
    tb_threadpool_destroy(&pool);
}

static void s_configs(tb_cpu_kernels_t *k)
{
    static const struct cfg cfgs[] = {
        {1, 1, 64, 16, TB_CPU_F16},
        {4, 8, 64, 16, TB_CPU_F16},
        {2, 4, 128, 16, TB_CPU_F32},
        {3, 2, 20, 5, TB_CPU_F16},
        {2, 3, 17, 7, TB_CPU_F32},
        {8, 1, 32, 1, TB_CPU_F16},
        {1, 16, 80, 32, TB_CPU_F16},
        {4, 4, 64, 16, TB_CPU_F32},
        /* groups of 4 or more heads (AVX-512's grouped path) with odd sizes */
        {2, 5, 20, 5, TB_CPU_F16},
        {1, 6, 17, 7, TB_CPU_F32},
        {1, 12, 96, 16, TB_CPU_F16},
    };
    for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
        s_run(k, &cfgs[i], 0, NULL);
    }
}

static void test_attention_configs(void **state)
{
    (void)state;
    s_for_each_isa(s_configs);
}

/* Sliding windows (Mistral's rule: query i sees keys j with i - window < j <= i) against the
 * reference: windows smaller than the context, crossing block boundaries (block sizes 16, 5, 7
 * and 1; windows 2, 5, 16, 17, 40), W = 1 (each query sees only itself), and W >= the context
 * giving exactly the bits of no window. */
static void s_windows(tb_cpu_kernels_t *k)
{
    static const struct cfg cfgs[] = {
        {4, 8, 64, 16, TB_CPU_F16}, {2, 5, 20, 5, TB_CPU_F16}, {3, 2, 20, 5, TB_CPU_F16},
        {2, 3, 17, 7, TB_CPU_F32},  {8, 1, 32, 1, TB_CPU_F16},
    };
    static const int windows[] = {1, 2, 5, 16, 17, 40};
    static const int wide_windows[] = {100, 1000};
    for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
        const struct cfg *c = &cfgs[i];
        for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
            s_run(k, c, windows[w], NULL);
        }
        /* the longest sequence has 100 tokens: windows of 100 and more cover every query */
        size_t rows = (size_t)MAXQ * ((size_t)c->n_kv * c->group * c->hd + 1);
        float *full = calloc(rows, sizeof(float)), *wide = calloc(rows, sizeof(float));
        s_rng = 0x1234567ull;
        s_run(k, c, 0, full);
        for (size_t w = 0; w < 2; w++) {
            s_rng = 0x1234567ull; /* the same cache and queries */
            s_run(k, c, wide_windows[w], wide);
            assert_memory_equal(full, wide, rows * sizeof(float));
        }
        free(full);
        free(wide);
    }
}

static void test_sliding_window(void **state)
{
    (void)state;
    s_for_each_isa(s_windows);
}

static void test_kv_write_bounds(void **state)
{
    (void)state;
    struct tb_cpu_kv_layout L = {16, 2, 8, TB_CPU_F16, 4};
    size_t bytes = tb_cpu_kv_bytes(&L);
    assert_int_equal(bytes, 4 * 2 * 16 * 8 * 2);
    uint16_t *kc = calloc(1, bytes), *vc = calloc(1, bytes);
    float k[16], v[16];
    for (int i = 0; i < 16; i++) {
        k[i] = (float)i;
        v[i] = -(float)i;
    }
    int32_t slot = 4 * 16; /* one past the end */
    assert_int_equal(tb_cpu_kv_write(&L, kc, vc, 1, &slot, k, 16, v, 16), TB_EINVAL);
    slot = 2 * 16 + 3; /* block 2, offset 3 */
    assert_int_equal(tb_cpu_kv_write(&L, kc, vc, 1, &slot, k, 16, v, 16), TB_OK);
    /* head 1 of block 2 starts at (2 * 2 + 1) * 16 * 8; K is [head_dim][slot] there, V is
     * [slot][head_dim] */
    size_t base = ((size_t)2 * 2 + 1) * 16 * 8;
    for (int d = 0; d < 8; d++) {
        assert_int_equal(kc[base + (size_t)d * 16 + 3], tb_cpu_f32_to_f16(8.0f + (float)d));
        assert_int_equal(vc[base + 3 * 8 + (size_t)d], tb_cpu_f32_to_f16(-8.0f - (float)d));
    }
    /* copy-on-write: block 2 copied to block 0 reads back the same values */
    assert_int_equal(tb_cpu_kv_copy_block(&L, kc, vc, 2, 0), TB_OK);
    assert_int_equal(kc[(size_t)1 * 16 * 8 + 3], tb_cpu_f32_to_f16(8.0f));
    assert_int_equal(vc[(size_t)1 * 16 * 8 + 3 * 8 + 7], tb_cpu_f32_to_f16(-15.0f));
    assert_int_equal(tb_cpu_kv_copy_block(&L, kc, vc, 2, 4), TB_EINVAL);
    assert_int_equal(tb_cpu_kv_copy_block(&L, kc, vc, -1, 0), TB_EINVAL);
    assert_int_equal(tb_cpu_kv_copy_block(&L, kc, vc, 1, 1), TB_OK);
    struct tb_cpu_kv_layout bad = L;
    bad.dtype = TB_CPU_Q8_0;
    assert_int_equal(tb_cpu_kv_check(&bad), TB_EINVAL);
    assert_int_equal(tb_cpu_kv_bytes(&bad), 0);
    bad = L;
    bad.block_size = 0;
    assert_int_equal(tb_cpu_kv_check(&bad), TB_EINVAL);
    free(kc);
    free(vc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_configs),
        cmocka_unit_test(test_sliding_window),
        cmocka_unit_test(test_kv_write_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
