/* Unit tests for the CPU kernels' GGUF block dtypes (tb_cpu_quant.c through tb_cpu_matmul):
 * Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K and IQ4_XS weights made of random valid blocks (random
 * bytes, f16 scales in a sane range), on every ISA this CPU runs (forced one by one), with and
 * without a thread pool, n_tok 1 and more, odd row counts, bias and strides.
 *
 * Checked:
 *  - against the dequantized-F32 weights times the f32 activations (double sums): within the
 *    error the 8-bit activations allow, |y - ref| <= sum_i |w_i| * d_i / 2 (d_i the scale of
 *    x_i's activation block, max|x| / 127), plus 1e-5 of sum_i |w_i x_i| for f32 rounding;
 *  - bit-equal to tb_quant_matmul (the portable integer reference), whatever the ISA, from the
 *    stored rows and (Q2_K .. Q6_K, IQ4_XS) from the packed Kx16 copy;
 *  - batch invariance: a token's outputs are the same bits alone, in a batch, and at any place
 *    in it, with any thread count;
 *  - the AVX2 and AVX-512 Q8_K activation quantizers equal the portable one byte for byte, on random
 *    rows and on blocks of edge values (zeros, NaN, infinities, halves after scaling, subnormals);
 *  - tb_cpu_matmul_multi equals separate calls; the embedding lookup (tb_cpu_dequantize_row)
 *    equals the reference decoder row by row; refusals. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the standard headers it needs */

#include "cpu/tb_cpu_internal.h"
#include "cpu/tb_cpu_kernels.h"
#include "tb_dtype.h"
#include "tb_errors.h"
#include "tb_quant.h"
#include "tb_quant_dot.h"

#include "../tb_test_isa.h" /* after tb_cpu_kernels.h */

static uint64_t s_rng = 0x9e3779b97f4a7c15ull;

static uint32_t s_next(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (uint32_t)(s_rng >> 32);
}

static float s_rand(void) /* uniform in [-1, 1) */
{
    return (float)(s_next() & 0xffffff) / 8388608.0f - 1.0f;
}

/* The GGUF block dtypes: ours, the model's, and where their f16 fields sit in a block (the
 * scale d, and the min m / dmin when there is one). */
static const struct {
    tb_cpu_dtype_t cpu;
    tb_dtype_t model;
    int f16_off[2];
    int n_f16;
} s_types[] = {
    {TB_CPU_Q4_1, TB_DTYPE_Q4_1, {0, 2}, 2},   {TB_CPU_Q5_0, TB_DTYPE_Q5_0, {0, 0}, 1},
    {TB_CPU_Q5_1, TB_DTYPE_Q5_1, {0, 2}, 2},   {TB_CPU_IQ4_NL, TB_DTYPE_IQ4_NL, {0, 0}, 1},
    {TB_CPU_Q2_K, TB_DTYPE_Q2_K, {80, 82}, 2}, {TB_CPU_Q3_K, TB_DTYPE_Q3_K, {108, 0}, 1},
    {TB_CPU_Q4_K, TB_DTYPE_Q4_K, {0, 2}, 2},   {TB_CPU_Q5_K, TB_DTYPE_Q5_K, {0, 2}, 2},
    {TB_CPU_Q6_K, TB_DTYPE_Q6_K, {208, 0}, 1}, {TB_CPU_IQ4_XS, TB_DTYPE_IQ4_XS, {0, 0}, 1},
};
#define N_TYPES (sizeof s_types / sizeof s_types[0])

/* A [rows, cols] matrix of random valid blocks of type i: random bytes, then each f16 field a
 * random value of magnitude 1e-3..1e-2 (a min of either sign), as real models have.  Caller
 * frees. */
static uint8_t *s_random_matrix(size_t i, int64_t rows, int64_t cols)
{
    const size_t rb = tb_cpu_dtype_row_bytes(s_types[i].cpu, cols);
    const int bb = tb_cpu_dtype_info(s_types[i].cpu)->block_bytes;
    assert_true(rb > 0);
    uint8_t *w = malloc(rb * (size_t)rows);
    assert_non_null(w);
    for (size_t b = 0; b < rb * (size_t)rows; b++) {
        w[b] = (uint8_t)s_next();
    }
    for (size_t blk = 0; blk < rb * (size_t)rows / (size_t)bb; blk++) {
        for (int f = 0; f < s_types[i].n_f16; f++) {
            float v = (1e-3f + 9e-3f * (s_rand() + 1.0f) / 2.0f) * (s_rand() < 0 ? -1.0f : 1.0f);
            uint16_t h = tb_f32_to_f16(v);
            memcpy(w + blk * (size_t)bb + s_types[i].f16_off[f], &h, 2);
        }
    }
    return w;
}

/* Per element of a row of x: half the scale of its 8-bit activation block of `be` values. */
static void s_half_steps(const float *x, int64_t cols, size_t be, double *out)
{
    for (int64_t b0 = 0; b0 < cols; b0 += (int64_t)be) {
        double amax = 0.0;
        for (size_t j = 0; j < be; j++) {
            amax = fmax(amax, fabs(x[b0 + (int64_t)j]));
        }
        for (size_t j = 0; j < be; j++) {
            out[b0 + (int64_t)j] = amax / 127.0 / 2.0;
        }
    }
}

struct fixture {
    size_t type;
    int64_t rows, cols;
    int n_tok;
    size_t ldx, ldy;
    uint8_t *w;
    float *wf;   /* dequantized weights [rows][cols] */
    float *x;    /* n_tok rows, stride ldx */
    float *bias; /* rows */
    float *ref;  /* tb_quant_matmul: [n_tok][rows] */
};

static void s_fixture(struct fixture *f, size_t type, int64_t rows, int64_t cols, int n_tok)
{
    *f = (struct fixture){.type = type, .rows = rows, .cols = cols, .n_tok = n_tok};
    f->ldx = (size_t)cols + 3;
    f->ldy = (size_t)rows + 5;
    f->w = s_random_matrix(type, rows, cols);
    f->wf = malloc(sizeof(float) * (size_t)(rows * cols));
    f->x = malloc(sizeof(float) * f->ldx * (size_t)n_tok);
    f->bias = malloc(sizeof(float) * (size_t)rows);
    f->ref = malloc(sizeof(float) * (size_t)rows * (size_t)n_tok);
    float *xc = malloc(sizeof(float) * (size_t)(cols * n_tok));
    assert_true(f->wf && f->x && f->bias && f->ref && xc);
    assert_int_equal(tb_quant_dequantize(s_types[type].model, f->w, f->wf,
                                         (uint64_t)(rows * cols)),
                     0);
    for (int t = 0; t < n_tok; t++) {
        for (int64_t c = 0; c < cols; c++) {
            /* a few large values per row, as activations have */
            float v = s_rand();
            f->x[(size_t)t * f->ldx + (size_t)c] = (s_next() % 97 == 0) ? 20.0f * v : v;
            xc[t * cols + c] = f->x[(size_t)t * f->ldx + (size_t)c];
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        f->bias[r] = s_rand();
    }
    assert_int_equal(tb_quant_matmul(s_types[type].model, f->w, (uint64_t)rows, (uint64_t)cols,
                                     xc, (uint64_t)n_tok, f->ref),
                     0);
    free(xc);
}

static void s_fixture_free(struct fixture *f)
{
    free(f->w);
    free(f->wf);
    free(f->x);
    free(f->bias);
    free(f->ref);
}

/* y (stride ldy) against the f32 reference within the activation-quantization bound, and
 * against tb_quant_matmul + bias exactly. */
static void s_check(const struct fixture *f, const float *y, bool with_bias, const char *what)
{
    const tb_quant_act_t at = tb_quant_act_for(s_types[f->type].model);
    double *half = malloc(sizeof(double) * (size_t)f->cols);
    assert_non_null(half);
    for (int t = 0; t < f->n_tok; t++) {
        const float *x = f->x + (size_t)t * f->ldx;
        s_half_steps(x, f->cols, tb_quant_act_block_elems(at), half);
        for (int64_t r = 0; r < f->rows; r++) {
            const float *w = f->wf + r * f->cols;
            double exact = with_bias ? f->bias[r] : 0.0, bound = 0.0, mag = 0.0;
            for (int64_t c = 0; c < f->cols; c++) {
                exact += (double)w[c] * x[c];
                bound += fabs(w[c]) * half[c];
                mag += fabs((double)w[c] * x[c]);
            }
            const float got = y[(size_t)t * f->ldy + (size_t)r];
            if (!(fabs(got - exact) <= bound + 1e-5 * mag + 1e-6)) {
                fail_msg("%s %s: token %d row %lld: %.7g, f32 reference %.7g, bound %.3g", what,
                         tb_cpu_dtype_info(s_types[f->type].cpu)->name, t, (long long)r, got,
                         exact, bound + 1e-5 * mag);
            }
            const float want = f->ref[(size_t)t * (size_t)f->rows + (size_t)r] +
                               (with_bias ? f->bias[r] : 0.0f);
            if (got != want) {
                fail_msg("%s %s: token %d row %lld: %.9g, integer reference %.9g", what,
                         tb_cpu_dtype_info(s_types[f->type].cpu)->name, t, (long long)r, got,
                         want);
            }
        }
    }
    free(half);
}

/* `wt` with its packed copy (Kx16 for the K-quants and IQ4_XS), in memory the caller frees; NULL
 * (and wt unchanged) for a type without one. */
static void *s_pack(struct tb_cpu_weight *wt)
{
    const size_t pb = tb_cpu_weight_packed_bytes(wt);
    if (pb == 0) {
        return NULL;
    }
    void *mem = aligned_alloc(64, pb);
    assert_non_null(mem);
    assert_int_equal(tb_cpu_weight_pack(wt, mem, pb), TB_OK);
    wt->packed = mem;
    return mem;
}

/* Every type, every ISA, pool or not, stored and (K-quants, IQ4_XS) packed, batch 1 and 6
 * (with bias) and batch 9: against both references, and each token alone gives the batch's
 * bits. */
static void test_matmul_all_types_all_isas(void **state)
{
    (void)state;
    tb_threadpool_t *pool = NULL;
    assert_int_equal(tb_threadpool_new(3, &pool), TB_OK);
    for (size_t i = 0; i < N_TYPES; i++) {
        const int64_t bs = tb_cpu_dtype_info(s_types[i].cpu)->block_size;
        const int64_t cols = bs == 32 ? 96 : 512; /* 3 blocks / 2 super-blocks */
        const int64_t rows = 37;                  /* odd: a partial row tile */
        struct fixture f;
        s_fixture(&f, i, rows, cols, 9);
        float *y = malloc(sizeof(float) * f.ldy * 9);
        float *y1 = malloc(sizeof(float) * f.ldy * 9);
        assert_true(y && y1);
        struct tb_cpu_weight wt = {s_types[i].cpu, rows, cols, f.w, NULL};
        void *packed = NULL;
        for (int use_pool = 0; use_pool < 4; use_pool++) {
            if (use_pool == 2 && !(packed = s_pack(&wt))) {
                break; /* no packed form: the stored layout only */
            }
            tb_cpu_kernels_t *k = NULL;
            assert_int_equal(tb_cpu_kernels_new(use_pool % 2 ? pool : NULL, &k), TB_OK);
            for (int isa = 0; isa <= (int)tb_cpu_isa_detect(); isa++) {
                assert_int_equal(tb_cpu_kernels_set_isa(k, (tb_cpu_isa_t)isa), TB_OK);
                char what[64];
                snprintf(what, sizeof what, "%s%s", tb_cpu_isa_name((tb_cpu_isa_t)isa),
                         packed ? " packed" : "");
                for (int with_bias = 0; with_bias < 2; with_bias++) {
                    const float *bias = with_bias ? f.bias : NULL;
                    assert_int_equal(tb_cpu_matmul(k, &wt, f.x, f.ldx, 9, bias, y, f.ldy), 0);
                    s_check(&f, y, with_bias, what);
                    /* batch invariance: each token alone, and 6 tokens from each offset */
                    for (int t = 0; t < 9; t++) {
                        assert_int_equal(tb_cpu_matmul(k, &wt, f.x + (size_t)t * f.ldx, f.ldx, 1,
                                                       bias, y1, f.ldy),
                                         0);
                        if (memcmp(y1, y + (size_t)t * f.ldy, sizeof(float) * rows) != 0) {
                            fail_msg("%s %s: token %d alone differs from the batch", what,
                                     tb_cpu_dtype_info(s_types[i].cpu)->name, t);
                        }
                    }
                    for (int t0 = 0; t0 + 6 <= 9; t0++) {
                        assert_int_equal(tb_cpu_matmul(k, &wt, f.x + (size_t)t0 * f.ldx, f.ldx, 6,
                                                       bias, y1, f.ldy),
                                         0);
                        for (int t = 0; t < 6; t++) {
                            if (memcmp(y1 + (size_t)t * f.ldy, y + (size_t)(t0 + t) * f.ldy,
                                       sizeof(float) * rows) != 0) {
                                fail_msg("%s %s: token %d differs at offset %d of a batch of 6",
                                         what, tb_cpu_dtype_info(s_types[i].cpu)->name, t0 + t,
                                         t);
                            }
                        }
                    }
                }
            }
            tb_cpu_kernels_destroy(&k);
        }
        free(packed);
        free(y);
        free(y1);
        s_fixture_free(&f);
    }
    tb_threadpool_destroy(&pool);
}

/* A larger matrix (many tasks per thread; rows not a multiple of 16 or of the task size):
 * the pool's split gives the same bits as one thread, and both references hold. */
static void test_matmul_threads_large(void **state)
{
    (void)state;
    tb_threadpool_t *pool = NULL;
    assert_int_equal(tb_threadpool_new(4, &pool), TB_OK);
    const size_t pick[] = {6, 8, 3, 4, 5}; /* Q4_K, Q6_K, IQ4_NL, Q2_K, Q3_K */
    for (size_t p = 0; p < sizeof pick / sizeof pick[0]; p++) {
        struct fixture f;
        s_fixture(&f, pick[p], 1001, 1024, 3);
        float *y = malloc(sizeof(float) * f.ldy * 3);
        float *y1 = malloc(sizeof(float) * f.ldy * 3);
        assert_true(y && y1);
        struct tb_cpu_weight wt = {s_types[pick[p]].cpu, f.rows, f.cols, f.w, NULL};
        tb_cpu_kernels_t *kp = NULL, *k1 = NULL;
        assert_int_equal(tb_cpu_kernels_new(pool, &kp), TB_OK);
        assert_int_equal(tb_cpu_kernels_new(NULL, &k1), TB_OK);
        void *packed = NULL;
        for (int pass = 0; pass < 2; pass++) { /* stored, then packed where the type has it */
            if (pass == 1 && !(packed = s_pack(&wt))) {
                break;
            }
            assert_int_equal(tb_cpu_matmul(kp, &wt, f.x, f.ldx, 3, NULL, y, f.ldy), 0);
            assert_int_equal(tb_cpu_matmul(k1, &wt, f.x, f.ldx, 3, NULL, y1, f.ldy), 0);
            s_check(&f, y, false, pass ? "4 threads packed" : "4 threads");
            for (int t = 0; t < 3; t++) {
                assert_memory_equal(y + (size_t)t * f.ldy, y1 + (size_t)t * f.ldy,
                                    sizeof(float) * (size_t)f.rows);
            }
        }
        free(packed);
        tb_cpu_kernels_destroy(&kp);
        tb_cpu_kernels_destroy(&k1);
        free(y);
        free(y1);
        s_fixture_free(&f);
    }
    tb_threadpool_destroy(&pool);
}

/* Two weights of one GGUF dtype in one dispatch equal two calls; two dtypes (Q4_K beside
 * Q6_K, as Q4_K_M mixes them) are refused by matmul_multi. */
static void test_matmul_multi(void **state)
{
    (void)state;
    tb_cpu_kernels_t *k = NULL;
    assert_int_equal(tb_cpu_kernels_new(NULL, &k), TB_OK);
    struct fixture a, b;
    s_fixture(&a, 6, 40, 256, 2);
    s_rng ^= 0x1234;
    s_fixture(&b, 6, 24, 256, 2);
    const struct tb_cpu_weight wa = {TB_CPU_Q4_K, 40, 256, a.w, NULL};
    const struct tb_cpu_weight wb = {TB_CPU_Q4_K, 24, 256, b.w, NULL};
    float ya[2 * 45], yb[2 * 29], sa[2 * 45], sb[2 * 29];
    const struct tb_cpu_matmul_out outs[2] = {{&wa, a.bias, ya, 45}, {&wb, NULL, yb, 29}};
    assert_int_equal(tb_cpu_matmul_multi(k, a.x, a.ldx, 2, outs, 2), 0);
    assert_int_equal(tb_cpu_matmul(k, &wa, a.x, a.ldx, 2, a.bias, sa, 45), 0);
    assert_int_equal(tb_cpu_matmul(k, &wb, a.x, a.ldx, 2, NULL, sb, 29), 0);
    for (int t = 0; t < 2; t++) {
        assert_memory_equal(ya + 45 * t, sa + 45 * t, 40 * sizeof(float));
        assert_memory_equal(yb + 29 * t, sb + 29 * t, 24 * sizeof(float));
    }
    const struct tb_cpu_weight w6 = {TB_CPU_Q6_K, 24, 256, b.w, NULL};
    const struct tb_cpu_matmul_out mixed[2] = {{&wa, NULL, ya, 45}, {&w6, NULL, yb, 29}};
    assert_int_equal(tb_cpu_matmul_multi(k, a.x, a.ldx, 2, mixed, 2), TB_EINVAL);
    s_fixture_free(&a);
    s_fixture_free(&b);
    tb_cpu_kernels_destroy(&k);
}

/* The embedding lookup of a quantized tok_embd: row r of the stored matrix decodes to the
 * reference decoder's row r, for every type. */
static void test_dequantize_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TYPES; i++) {
        const int64_t rows = 5, cols = 512;
        uint8_t *w = s_random_matrix(i, rows, cols);
        float *all = malloc(sizeof(float) * (size_t)(rows * cols));
        float row[512];
        assert_non_null(all);
        assert_int_equal(tb_quant_dequantize(s_types[i].model, w, all, (uint64_t)(rows * cols)),
                         0);
        const size_t rb = tb_cpu_dtype_row_bytes(s_types[i].cpu, cols);
        for (int64_t r = 0; r < rows; r++) {
            assert_int_equal(tb_cpu_dequantize_row(s_types[i].cpu, w + (size_t)r * rb, row, cols),
                             TB_OK);
            assert_memory_equal(row, all + r * cols, sizeof row);
        }
        free(all);
        free(w);
    }
}

/* Shapes that are not whole blocks, and the encoder the kernels do not have. */
static void test_refusals(void **state)
{
    (void)state;
    tb_cpu_kernels_t *k = NULL;
    assert_int_equal(tb_cpu_kernels_new(NULL, &k), TB_OK);
    uint8_t w[2 * 210] = {0};
    float x[512] = {0}, y[4];
    const struct tb_cpu_weight bad = {TB_CPU_Q6_K, 2, 128, w, NULL}; /* half a super-block */
    assert_int_equal(tb_cpu_matmul(k, &bad, x, 128, 1, NULL, y, 2), TB_EINVAL);
    const struct tb_cpu_weight bad32 = {TB_CPU_Q5_0, 2, 48, w, NULL};
    assert_int_equal(tb_cpu_matmul(k, &bad32, x, 48, 1, NULL, y, 2), TB_EINVAL);
    float row[256];
    assert_int_equal(tb_cpu_dequantize_row(TB_CPU_Q4_K, w, row, 128), TB_EINVAL);
    for (size_t i = 0; i < N_TYPES; i++) {
        uint8_t out[512];
        assert_int_equal(tb_cpu_quantize_row(s_types[i].cpu, x, out, 256), TB_ENOTSUP);
        const struct tb_cpu_weight wt = {s_types[i].cpu, 16, 256, w, NULL};
        const tb_cpu_dtype_t dt = s_types[i].cpu;
        const size_t want = dt == TB_CPU_Q2_K     ? 1408
                            : dt == TB_CPU_Q3_K   ? 1856
                            : dt == TB_CPU_Q4_K   ? 2432
                            : dt == TB_CPU_Q5_K   ? 2944
                            : dt == TB_CPU_Q6_K   ? 3392
                            : dt == TB_CPU_IQ4_XS ? 2240
                                                  : 0; /* one 16-row group, one super-block */
        assert_int_equal(tb_cpu_weight_packed_bytes(&wt), want);
        const struct tb_cpu_weight half = {s_types[i].cpu, 16, 128, w, NULL};
        assert_int_equal(tb_cpu_weight_packed_bytes(&half), 0);
    }
    tb_cpu_kernels_destroy(&k);
}

/* The AVX2 and AVX-512 quantizers of Q8_K activations against the portable one
 * (tb_quant_act_quantize's blocks, then the split sums of tb_cpu_q8k_split, checked to add up),
 * byte for byte: random rows of several magnitudes, then blocks made of edge values. */
static void test_quant_act_simd(void **state)
{
    (void)state;
    typedef void (*quant_fn)(tb_cpu_dtype_t, const float *, int64_t, uint8_t *);
    const quant_fn fns[2] = {tb_cpu_quant_act_avx2, tb_cpu_quant_act_avx512};
    const char *names[2] = {"AVX2", "AVX-512"};
    const int n_fns = tb_cpu_isa_detect() >= TB_CPU_ISA_AVX512 ? 2
                      : tb_cpu_isa_detect() >= TB_CPU_ISA_AVX2 ? 1
                                                               : 0;
    tb_test_isa_ran("Q8_K activation quantizer", n_fns + 1);
    enum { COLS = 256 * 8 };
    static float x[COLS];
    static uint8_t want[COLS * 2]; /* either activation block format, padded */
    static uint8_t got[sizeof want];
    /* the infinities last: odd rounds leave them out, so NaNs meet finite blocks */
    const float edge[] = {0.0f, -0.0f, NAN,    -NAN,  1e-40f,  -1e-40f,  0.5f,     -0.5f,
                          1.5f, -2.5f, 127.0f, 63.5f, 3.4e38f, INFINITY, -INFINITY};
    const int n_edge = (int)(sizeof edge / sizeof edge[0]);
    for (int round = 0; round < 64; round++) {
        const float scale = round < 32 ? powf(10.0f, (float)(round % 8) - 4.0f) : 1.0f;
        for (int i = 0; i < COLS; i++) {
            x[i] = ((float)(s_next() % 2000001) - 1000000.0f) * 1e-6f * scale;
            if (round >= 32 && s_next() % 4 == 0) { /* blocks with edge values mixed in */
                x[i] = edge[s_next() % (uint32_t)(round % 2 ? n_edge - 2 : n_edge)];
            }
        }
        if (round == 33) {
            memset(x, 0, 256 * sizeof(float)); /* an all-zero block */
        }
        if (round == 34) { /* a block whose largest value lands exactly on 127 halves */
            for (int i = 0; i < 256; i++) {
                x[i] = (float)((int)(s_next() % 255) - 127) + 0.5f;
            }
            x[0] = 127.0f;
        }
        for (int tt = 0; tt < TB_CPU_DTYPE_COUNT; tt++) {
            const tb_cpu_dtype_t dt = (tb_cpu_dtype_t)tt;
            tb_dtype_t mt;
            if (!tb_cpu_dtype_gguf(dt, &mt)) {
                continue;
            }
            const size_t n = tb_cpu_quant_act_row_bytes(dt, COLS);
            assert_true(n <= sizeof want);
            memset(want, 0xa5, sizeof want);
            tb_cpu_quant_act(dt, x, COLS, want);
            const tb_quant_act_t at = tb_quant_act_for(mt);
            const int64_t nb = COLS / (int64_t)tb_quant_act_block_elems(at);
            size_t used = (size_t)nb * tb_quant_act_block_bytes(at);
            if (at == TB_QUANT_ACT_Q8_K) { /* the blocks, then their split sums */
                used += (size_t)nb * TB_CPU_Q8K_SPLIT_BYTES;
                const struct tb_block_q8_k *y = (const struct tb_block_q8_k *)want;
                for (int64_t b = 0; b < nb; b++) {
                    const int8_t *sp = tb_cpu_q8k_split(want, nb, b);
                    for (int j = 0; j < 8; j++) {
                        assert_int_equal(128 * sp[8 + j] + sp[j],
                                         y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
                        assert_true(sp[j] >= 0);
                    }
                }
            }
            for (int f = 0; f < n_fns; f++) {
                memset(got, 0x5a, sizeof got);
                fns[f](dt, x, COLS, got);
                if (memcmp(want, got, used) != 0) {
                    fail_msg("round %d %s: the %s quantizer differs from the portable one", round,
                             tb_cpu_dtype_info(dt)->name, names[f]);
                }
            }
        }
    }
}

/* The Kx16 kernels' prefetch windows (tb_cpu_pf_tile): the tiles of a group ask, record step by
 * record step, for every line of the next group and for nothing outside it but the rounding of
 * the last step; none with one tile, and none for the last group of the caller's rows. */
static void test_prefetch_windows(void **state)
{
    (void)state;
    static const struct {
        size_t group_bytes;
        int64_t nrec;
        int ntile;
    } cases[] = {
        {2432 * 8, 8, 4}, {3392 * 22, 22, 2}, {2240 * 3, 3, 256}, {1856 * 2, 2, 8}, {2432, 1, 2}};
    enum { N_GROUPS = 4 };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const size_t gb = cases[c].group_bytes;
        uint8_t *w = malloc(gb * N_GROUPS);
        assert_non_null(w);
        struct tb_mm_args a = {.w = w, .w_row_bytes = gb};
        const int64_t r1 = N_GROUPS * TB_CPU_PACK_ROWS;
        for (int64_t g = 0; g < N_GROUPS; g++) {
            const uint8_t *next = w + (size_t)(g + 1) * gb;
            size_t covered = 0; /* the windows come in order, each right after the last */
            for (int ti = 0; ti < cases[c].ntile; ti++) {
                const struct tb_cpu_pf pf = tb_cpu_pf_tile(&a, g, r1, ti, cases[c].ntile,
                                                           cases[c].nrec);
                if (g == N_GROUPS - 1 || !pf.p) {
                    assert_null(pf.p);
                    continue;
                }
                assert_int_equal(pf.step % 64, 0);
                assert_ptr_equal(pf.p, next + covered);
                covered += (size_t)cases[c].nrec * pf.step;
            }
            if (g < N_GROUPS - 1) {
                assert_true(covered >= gb);
                /* the overshoot is under one step per record step of a tile */
                assert_true(covered - gb < (size_t)cases[c].nrec * 64 * (size_t)cases[c].ntile);
            }
        }
        /* one tile: the hardware prefetcher's case */
        assert_null(tb_cpu_pf_tile(&a, 0, r1, 0, 1, cases[c].nrec).p);
        free(w);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_all_types_all_isas),
        cmocka_unit_test(test_matmul_threads_large),
        cmocka_unit_test(test_matmul_multi),
        cmocka_unit_test(test_dequantize_rows),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_quant_act_simd),
        cmocka_unit_test(test_prefetch_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
