/* Unit tests for tb_cpu_matmul: every dtype (and Q4_0 / Q8_0 through their packed copies), every
 * ISA this CPU has (generic, AVX2, AVX-512), odd shapes, n_tok 1..70, bias and strides, against scalar
 * references written here from the documented formats (not from the library's code). */
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

static uint64_t s_rng = 88172645463325252ull;

static float s_rand(void) /* uniform in [-1, 1) */
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float)((s_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* Reference decoding of one stored value, straight from the format description. */
static double s_ref_half(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static void s_ref_dequant(tb_cpu_dtype_t dt, const uint8_t *row, int64_t n, double *out)
{
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case TB_CPU_F32: {
            float f;
            memcpy(&f, row + 4 * i, 4);
            out[i] = f;
            break;
        }
        case TB_CPU_F16:
            out[i] = s_ref_half((uint16_t)(row[2 * i] | row[2 * i + 1] << 8));
            break;
        case TB_CPU_BF16: {
            uint32_t u = (uint32_t)(row[2 * i] | row[2 * i + 1] << 8) << 16;
            float f;
            memcpy(&f, &u, 4);
            out[i] = f;
            break;
        }
        case TB_CPU_Q8_0: {
            const uint8_t *b = row + (i / 32) * 34;
            out[i] = s_ref_half((uint16_t)(b[0] | b[1] << 8)) * (int8_t)b[2 + i % 32];
            break;
        }
        case TB_CPU_Q4_0: {
            const uint8_t *b = row + (i / 32) * 18;
            int j = i % 32;
            int nib = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
            out[i] = s_ref_half((uint16_t)(b[0] | b[1] << 8)) * (nib - 8);
            break;
        }
        default:
            break;
        }
    }
}

/* The documented activation quantization: per 32 values, q = round-half-even of x * (127 / amax)
 * and d = amax / 127 rounded to f16 (llama.cpp's block_q8_0 scale) where that is a normal f16,
 * else the f32 amax / 127; returns the dequantized values. */
static void s_ref_quant_act(const float *x, int64_t n, double *out)
{
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        }
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        float d32 = amax / 127.0f;
        float h = tb_cpu_f16_to_f32(tb_cpu_f32_to_f16(d32));
        double d = h >= 0x1p-14f && h < 65504.0f ? h : d32;
        for (int j = 0; j < 32; j++) {
            out[b * 32 + j] = d * nearbyintf(x[b * 32 + j] * id);
        }
    }
}

struct case_cfg {
    tb_cpu_dtype_t dt;
    int rows, cols, n_tok;
    int bias, pad;
};

static int s_quantized(tb_cpu_dtype_t dt)
{
    return dt == TB_CPU_Q8_0 || dt == TB_CPU_Q4_0;
}

/* Gives `wt` its packed copy (Q4_0, Q8_0): returns the buffer to free. */
static uint8_t *s_pack(struct tb_cpu_weight *wt)
{
    size_t pb = tb_cpu_weight_packed_bytes(wt);
    assert_true(pb > 0 && pb % 64 == 0);
    uint8_t *p = aligned_alloc(64, pb);
    assert_non_null(p);
    memset(p, 0xa5, pb); /* padding must be written too */
    assert_int_equal(tb_cpu_weight_pack(wt, p, pb), TB_OK);
    wt->packed = p;
    return p;
}

/* Runs one matmul (through the packed copy when `pack`) and checks every output; returns the
 * worst error relative to sum|w*x| against the pure-float reference (for the accuracy report of
 * quantized activations). */
static double s_check(tb_cpu_kernels_t *k, const struct case_cfg *c, int pack)
{
    const int64_t R = c->rows, C = c->cols;
    const size_t rb = tb_cpu_dtype_row_bytes(c->dt, C);
    assert_true(rb > 0);
    uint8_t *w = malloc(rb * (size_t)R);
    float *wsrc = malloc(sizeof(float) * (size_t)C);
    size_t ldx = (size_t)C + (c->pad ? 3 : 0), ldy = (size_t)R + (c->pad ? 5 : 0);
    float *x = malloc(sizeof(float) * ldx * (size_t)c->n_tok);
    float *y = malloc(sizeof(float) * ldy * (size_t)c->n_tok);
    float *bias = malloc(sizeof(float) * (size_t)R);
    double *wd = malloc(sizeof(double) * (size_t)C * (size_t)R);
    double *xq = malloc(sizeof(double) * (size_t)C);
    assert_true(w && wsrc && x && y && bias && wd && xq);
    for (int64_t r = 0; r < R; r++) {
        for (int64_t i = 0; i < C; i++) {
            wsrc[i] = s_rand() * (1.0f + (float)(r % 3));
        }
        assert_int_equal(tb_cpu_quantize_row(c->dt, wsrc, w + (size_t)r * rb, C), TB_OK);
        s_ref_dequant(c->dt, w + (size_t)r * rb, C, wd + (size_t)r * C);
        bias[r] = s_rand();
    }
    for (size_t i = 0; i < ldx * (size_t)c->n_tok; i++) {
        x[i] = s_rand() * 2.0f;
    }
    for (size_t i = 0; i < ldy * (size_t)c->n_tok; i++) {
        y[i] = 12345.0f; /* padding must stay untouched */
    }
    struct tb_cpu_weight wt = {.dtype = c->dt, .rows = R, .cols = C, .data = w};
    uint8_t *packed = pack ? s_pack(&wt) : NULL;
    assert_int_equal(tb_cpu_matmul(k, &wt, x, ldx, c->n_tok, c->bias ? bias : NULL, y, ldy),
                     TB_OK);
    double worst_float = 0.0;
    for (int t = 0; t < c->n_tok; t++) {
        const float *xt = x + (size_t)t * ldx;
        if (s_quantized(c->dt)) {
            s_ref_quant_act(xt, C, xq);
        } else {
            for (int64_t i = 0; i < C; i++) {
                xq[i] = xt[i];
            }
        }
        for (int64_t r = 0; r < R; r++) {
            double ref = 0.0, refq = 0.0, mag = 0.0;
            for (int64_t i = 0; i < C; i++) {
                ref += wd[r * C + i] * xt[i];
                refq += wd[r * C + i] * xq[i];
                mag += fabs(wd[r * C + i] * xt[i]);
            }
            double b = c->bias ? bias[r] : 0.0;
            double got = y[(size_t)t * ldy + r];
            double tol = 2e-5 * mag + 1e-5 * fabs(b) + 1e-6;
            if (fabs(got - (refq + b)) > tol) {
                print_error("dtype %d%s rows %d cols %d n_tok %d: y[%d][%d] = %.7g, want %.7g\n",
                            c->dt, pack ? " packed" : "", c->rows, c->cols, c->n_tok, t, (int)r,
                            got, refq + b);
                fail();
            }
            double e = fabs(got - (ref + b)) / (mag + 1e-30);
            worst_float = e > worst_float ? e : worst_float;
        }
        for (size_t i = (size_t)R; i < ldy; i++) {
            assert_true(y[(size_t)t * ldy + i] == 12345.0f);
        }
    }
    free(w);
    free(packed);
    free(wsrc);
    free(x);
    free(y);
    free(bias);
    free(wd);
    free(xq);
    return worst_float;
}

/* What the shape tests run: every dtype as stored, and Q8_0 / Q4_0 through their packed
 * copies. */
static const struct {
    tb_cpu_dtype_t dt;
    int pack;
} s_variants[] = {{TB_CPU_F32, 0},  {TB_CPU_F16, 0},  {TB_CPU_BF16, 0}, {TB_CPU_Q8_0, 0},
                  {TB_CPU_Q4_0, 0}, {TB_CPU_Q8_0, 1}, {TB_CPU_Q4_0, 1}};
#define N_VARIANTS (sizeof(s_variants) / sizeof(s_variants[0]))

/* Runs `fn` for each ISA the CPU has, with a 2-thread pool and without a pool. */
static void s_for_each_isa(void (*fn)(tb_cpu_kernels_t *k))
{
    tb_threadpool_t *pool = NULL;
    assert_int_equal(tb_threadpool_new(2, &pool), TB_OK);
    for (int use_pool = 0; use_pool < 2; use_pool++) {
        tb_cpu_kernels_t *k = NULL;
        assert_int_equal(tb_cpu_kernels_new(use_pool ? pool : NULL, &k), TB_OK);
        int ran = 0;
        for (int isa = TB_CPU_ISA_GENERIC; isa <= (int)tb_cpu_isa_detect(); isa++) {
            assert_int_equal(tb_cpu_kernels_set_isa(k, (tb_cpu_isa_t)isa), TB_OK);
            assert_int_equal(tb_cpu_kernels_isa(k), isa);
            fn(k);
            ran++;
        }
        tb_test_isa_ran(use_pool ? "matmul (2-thread pool)" : "matmul (no pool)", ran);
        tb_cpu_kernels_destroy(&k);
        assert_null(k);
    }
    tb_threadpool_destroy(&pool);
}

static void s_shapes(tb_cpu_kernels_t *k)
{
    static const int float_cols[] = {1, 7, 16, 17, 33, 100, 257};
    static const int quant_cols[] = {32, 64, 96, 160, 544};
    static const int rows[] = {1, 5, 37};
    static const int toks[] = {1, 2, 7, 13};
    for (size_t d = 0; d < N_VARIANTS; d++) {
        tb_cpu_dtype_t dt = s_variants[d].dt;
        const int *cols = s_quantized(dt) ? quant_cols : float_cols;
        size_t nc = s_quantized(dt) ? 5 : 7;
        for (size_t ci = 0; ci < nc; ci++) {
            for (size_t ri = 0; ri < 3; ri++) {
                for (size_t ti = 0; ti < 4; ti++) {
                    struct case_cfg c = {dt,       rows[ri],           cols[ci],
                                         toks[ti], (int)(ci + ti) % 2, (int)(ri + ti) % 2};
                    s_check(k, &c, s_variants[d].pack);
                }
            }
        }
    }
}

static void test_shapes_all_isas(void **state)
{
    (void)state;
    s_for_each_isa(s_shapes);
}

static void s_ntok_range(tb_cpu_kernels_t *k)
{
    for (size_t d = 0; d < N_VARIANTS; d++) {
        tb_cpu_dtype_t dt = s_variants[d].dt;
        for (int n = 1; n <= 70; n++) {
            struct case_cfg c = {dt, 23, s_quantized(dt) ? 96 : 45, n, n % 2, n % 3 == 0};
            s_check(k, &c, s_variants[d].pack);
        }
    }
}

static void test_ntok_1_to_70_all_isas(void **state)
{
    (void)state;
    s_for_each_isa(s_ntok_range);
}

static void s_large(tb_cpu_kernels_t *k)
{
    /* Model-like widths (many row tiles, several tasks, a token block edge at 64). */
    for (size_t d = 0; d < N_VARIANTS; d++) {
        struct case_cfg c = {s_variants[d].dt, 131, 1024, 66, 1, 0};
        s_check(k, &c, s_variants[d].pack);
    }
}

static void test_large_all_isas(void **state)
{
    (void)state;
    s_for_each_isa(s_large);
}

/* The accuracy quantized activations cost, against the float product of the same weights:
 * bounded well under 1% of sum|w*x| (docs/kernels.md reports the measured figure). */
static void test_activation_quantization_error(void **state)
{
    (void)state;
    tb_cpu_kernels_t *k = NULL;
    assert_int_equal(tb_cpu_kernels_new(NULL, &k), TB_OK);
    for (int q = 0; q < 4; q++) {
        struct case_cfg c = {q % 2 ? TB_CPU_Q4_0 : TB_CPU_Q8_0, 64, 2048, 4, 0, 0};
        double e = s_check(k, &c, q >= 2);
        print_message("# %s%s: worst |y - y_float| / sum|w*x| = %.2e\n", q % 2 ? "q4_0" : "q8_0",
                      q >= 2 ? " packed" : "", e);
        assert_true(e < 5e-3);
    }
    tb_cpu_kernels_destroy(&k);
}

/* tb_cpu_matmul_multi gives bit-identical results to one tb_cpu_matmul per weight (packed
 * weights too, and a mix of packed and stored ones). */
static void s_multi(tb_cpu_kernels_t *k)
{
    static const int rows[3] = {37, 5, 6};
    for (size_t d = 0; d < N_VARIANTS; d++) {
        tb_cpu_dtype_t dt = s_variants[d].dt;
        uint8_t *packed[3] = {NULL, NULL, NULL};
        const int C = 96;
        const int n_tok = 9;
        size_t rb = tb_cpu_dtype_row_bytes(dt, C);
        uint8_t *w[3];
        float *y1[3], *y2[3], *bias[3];
        struct tb_cpu_weight wt[3];
        struct tb_cpu_matmul_out outs[3];
        float src[96];
        float *x = malloc(sizeof(float) * C * n_tok);
        for (int i = 0; i < C * n_tok; i++) {
            x[i] = s_rand();
        }
        for (int o = 0; o < 3; o++) {
            w[o] = malloc(rb * (size_t)rows[o]);
            for (int r = 0; r < rows[o]; r++) {
                for (int i = 0; i < C; i++) {
                    src[i] = s_rand();
                }
                tb_cpu_quantize_row(dt, src, w[o] + rb * (size_t)r, C);
            }
            y1[o] = calloc((size_t)rows[o] * n_tok, sizeof(float));
            y2[o] = calloc((size_t)rows[o] * n_tok, sizeof(float));
            bias[o] = malloc(sizeof(float) * (size_t)rows[o]);
            for (int r = 0; r < rows[o]; r++) {
                bias[o][r] = s_rand();
            }
            wt[o] = (struct tb_cpu_weight){dt, rows[o], C, w[o], NULL};
            if (s_variants[d].pack) {
                packed[o] = s_pack(&wt[o]);
            }
            outs[o] = (struct tb_cpu_matmul_out){&wt[o], o == 1 ? NULL : bias[o], y2[o],
                                                 (size_t)rows[o]};
            assert_int_equal(tb_cpu_matmul(k, &wt[o], x, C, n_tok, o == 1 ? NULL : bias[o], y1[o],
                                           (size_t)rows[o]),
                             TB_OK);
        }
        assert_int_equal(tb_cpu_matmul_multi(k, x, C, n_tok, outs, 3), TB_OK);
        for (int o = 0; o < 3; o++) {
            assert_memory_equal(y1[o], y2[o], sizeof(float) * (size_t)rows[o] * n_tok);
        }
        /* one token: the batch-1 path */
        assert_int_equal(tb_cpu_matmul_multi(k, x, C, 1, outs, 3), TB_OK);
        for (int o = 0; o < 3; o++) {
            float one[64];
            tb_cpu_matmul(k, &wt[o], x, C, 1, o == 1 ? NULL : bias[o], one, 64);
            assert_memory_equal(one, y2[o], sizeof(float) * (size_t)rows[o]);
        }
        if (s_variants[d].pack) { /* packed and stored side by side: still the same */
            struct tb_cpu_weight stored = wt[1];
            stored.packed = NULL;
            float *y0 = calloc((size_t)rows[1] * n_tok, sizeof(float));
            assert_int_equal(tb_cpu_matmul(k, &stored, x, C, n_tok, NULL, y0, (size_t)rows[1]),
                             TB_OK);
            outs[1].w = &stored;
            assert_int_equal(tb_cpu_matmul_multi(k, x, C, n_tok, outs, 3), TB_OK);
            assert_memory_equal(y1[0], y2[0], sizeof(float) * (size_t)rows[0] * n_tok);
            assert_memory_equal(y0, y2[1], sizeof(float) * (size_t)rows[1] * n_tok);
            assert_memory_equal(y1[2], y2[2], sizeof(float) * (size_t)rows[2] * n_tok);
            free(y0);
        }
        /* mixed dtypes are refused */
        struct tb_cpu_weight other = wt[1];
        other.dtype = dt == TB_CPU_F32 ? TB_CPU_F16 : TB_CPU_F32;
        outs[1].w = &other;
        assert_int_equal(tb_cpu_matmul_multi(k, x, C, n_tok, outs, 3), TB_EINVAL);
        for (int o = 0; o < 3; o++) {
            free(w[o]);
            free(packed[o]);
            free(y1[o]);
            free(y2[o]);
            free(bias[o]);
        }
        free(x);
    }
}

static void test_multi_all_isas(void **state)
{
    (void)state;
    s_for_each_isa(s_multi);
}

/* Batch-1 matmuls split their rows into one contiguous range of chunks per thread, a thread
 * with an empty range taking chunks from the back of another's: with pools of 2, 3, 5 and 17
 * threads (17: more than the ranges kept, the plain split), on every ISA, each output row is
 * written once and is bitwise the row of the poolless call, for one matrix of many chunks, fewer
 * chunks than threads, and three outputs in one call. */
static void test_batch1_ranges(void **state)
{
    (void)state;
    enum { C = 96, R0 = 2000, R1 = 16, R2 = 37, ROWS = R0 + R1 + R2 };
    static const int pools[] = {2, 3, 5, 17};
    static const tb_cpu_dtype_t dts[] = {TB_CPU_F32, TB_CPU_F16, TB_CPU_BF16, TB_CPU_Q8_0,
                                         TB_CPU_Q4_0};
    static const int rows[3] = {R0, R1, R2};
    float *src = malloc(sizeof(float) * C), *x = malloc(sizeof(float) * C);
    float *want = malloc(sizeof(float) * ROWS), *got = malloc(sizeof(float) * ROWS);
    uint8_t *w = malloc((size_t)4 * C * ROWS);
    assert_non_null(src && x && want && got && w);
    for (int i = 0; i < C; i++) {
        x[i] = sinf(0.37f * (float)i);
    }
    tb_cpu_kernels_t *k0 = NULL;
    assert_int_equal(tb_cpu_kernels_new(NULL, &k0), TB_OK);
    for (size_t p = 0; p < sizeof pools / sizeof pools[0]; p++) {
        tb_threadpool_t *pool = NULL;
        tb_cpu_kernels_t *k = NULL;
        assert_int_equal(tb_threadpool_new(pools[p], &pool), TB_OK);
        assert_int_equal(tb_cpu_kernels_new(pool, &k), TB_OK);
        for (int isa = TB_CPU_ISA_GENERIC; isa <= (int)tb_cpu_isa_detect(); isa++) {
            assert_int_equal(tb_cpu_kernels_set_isa(k, (tb_cpu_isa_t)isa), TB_OK);
            assert_int_equal(tb_cpu_kernels_set_isa(k0, (tb_cpu_isa_t)isa), TB_OK);
            for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
                size_t rb = tb_cpu_dtype_row_bytes(dts[d], C);
                for (int r = 0; r < ROWS; r++) {
                    for (int i = 0; i < C; i++) {
                        src[i] = cosf(0.01f * (float)(r * C + i));
                    }
                    tb_cpu_quantize_row(dts[d], src, w + rb * (size_t)r, C);
                }
                struct tb_cpu_weight wt[3];
                struct tb_cpu_matmul_out o[3], o0[3];
                size_t off = 0;
                for (int m = 0; m < 3; m++) {
                    wt[m] = (struct tb_cpu_weight){dts[d], rows[m], C, w + rb * off, NULL};
                    o[m] = (struct tb_cpu_matmul_out){&wt[m], NULL, got + off, (size_t)rows[m]};
                    o0[m] = (struct tb_cpu_matmul_out){&wt[m], NULL, want + off, (size_t)rows[m]};
                    off += (size_t)rows[m];
                }
                for (int multi = 0; multi < 2; multi++) {
                    for (int i = 0; i < ROWS; i++) {
                        got[i] = NAN;
                        want[i] = NAN;
                    }
                    if (multi) {
                        assert_int_equal(tb_cpu_matmul_multi(k, x, C, 1, o, 3), TB_OK);
                        assert_int_equal(tb_cpu_matmul_multi(k0, x, C, 1, o0, 3), TB_OK);
                    } else {
                        for (int m = 0; m < 3; m++) {
                            assert_int_equal(tb_cpu_matmul_multi(k, x, C, 1, &o[m], 1), TB_OK);
                            assert_int_equal(tb_cpu_matmul_multi(k0, x, C, 1, &o0[m], 1), TB_OK);
                        }
                    }
                    for (int i = 0; i < ROWS; i++) {
                        if (!isfinite(got[i]) || memcmp(&got[i], &want[i], sizeof got[i]) != 0) {
                            fail_msg("%d threads, isa %d, dtype %d, multi %d: row %d is %g, "
                                     "want %g",
                                     pools[p], isa, (int)dts[d], multi, i, got[i], want[i]);
                        }
                    }
                }
            }
        }
        tb_cpu_kernels_destroy(&k);
        tb_threadpool_destroy(&pool);
    }
    tb_cpu_kernels_destroy(&k0);
    free(src);
    free(x);
    free(want);
    free(got);
    free(w);
}

/* TB_CPU_ISA lowers the level chosen at creation; unknown names and levels above the CPU's are
 * refused. */
static void test_isa_env(void **state)
{
    (void)state;
    tb_cpu_kernels_t *k = NULL;
    assert_int_equal(setenv("TB_CPU_ISA", "generic", 1), 0);
    assert_int_equal(tb_cpu_kernels_new(NULL, &k), TB_OK);
    assert_int_equal(tb_cpu_kernels_isa(k), TB_CPU_ISA_GENERIC);
    tb_cpu_kernels_destroy(&k);
    if (tb_cpu_isa_detect() >= TB_CPU_ISA_AVX2) {
        assert_int_equal(setenv("TB_CPU_ISA", "avx2", 1), 0);
        assert_int_equal(tb_cpu_kernels_new(NULL, &k), TB_OK);
        assert_int_equal(tb_cpu_kernels_isa(k), TB_CPU_ISA_AVX2);
        assert_string_equal(tb_cpu_isa_name(tb_cpu_kernels_isa(k)), "avx2");
        tb_cpu_kernels_destroy(&k);
    }
    if (tb_cpu_isa_detect() < TB_CPU_ISA_AVX512) {
        assert_int_equal(setenv("TB_CPU_ISA", "avx512", 1), 0);
        assert_int_equal(tb_cpu_kernels_new(NULL, &k), TB_ENOTSUP);
        assert_null(k);
    }
    assert_int_equal(setenv("TB_CPU_ISA", "sse9", 1), 0);
    assert_int_equal(tb_cpu_kernels_new(NULL, &k), TB_EINVAL);
    assert_null(k);
    assert_int_equal(unsetenv("TB_CPU_ISA"), 0);
    assert_int_equal(tb_cpu_kernels_new(NULL, &k), TB_OK);
    assert_int_equal(tb_cpu_kernels_isa(k), tb_cpu_isa_detect());
    assert_int_equal(tb_cpu_kernels_set_isa(k, (tb_cpu_isa_t)7), TB_EINVAL);
    tb_cpu_kernels_destroy(&k);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    tb_cpu_kernels_t *k = NULL;
    assert_int_equal(tb_cpu_kernels_new(NULL, &k), TB_OK);
    uint8_t w[34 * 4] = {0};
    float x[64] = {0}, y[8] = {0};
    struct tb_cpu_weight wt = {.dtype = TB_CPU_Q8_0, .rows = 2, .cols = 48, .data = w};
    assert_int_equal(tb_cpu_matmul(k, &wt, x, 48, 1, NULL, y, 2), TB_EINVAL); /* 48 % 32 */
    wt.cols = 64;
    assert_int_equal(tb_cpu_matmul(k, &wt, x, 32, 1, NULL, y, 2), TB_EINVAL); /* ldx < cols */
    assert_int_equal(tb_cpu_matmul(k, &wt, x, 64, 1, NULL, y, 1), TB_EINVAL); /* ldy < rows */
    wt.dtype = (tb_cpu_dtype_t)99;
    assert_int_equal(tb_cpu_matmul(k, &wt, x, 64, 1, NULL, y, 2), TB_EINVAL);
    wt.dtype = TB_CPU_Q8_0;
    assert_int_equal(tb_cpu_matmul(k, &wt, x, 64, 0, NULL, y, 2), TB_OK);
    assert_int_equal(tb_cpu_matmul(k, &wt, x, 64, 1, NULL, y, 2), TB_OK);
    assert_true(y[0] == 0.0f && y[1] == 0.0f);
    assert_int_equal(tb_cpu_matmul(NULL, &wt, x, 64, 1, NULL, y, 2), TB_EINVAL);
    tb_cpu_kernels_destroy(&k);
}

/* The packed forms: their sizes, the refusals, and that packing moves bytes without changing
 * them (every block's scale and values found where the documented layout puts them; Q8_0 values
 * + 128). */
static void test_pack_layout(void **state)
{
    (void)state;
    const int R = 21, C = 96; /* a partial second group, an odd block count (3) */
    for (int q8 = 0; q8 < 2; q8++) {
        const tb_cpu_dtype_t dt = q8 ? TB_CPU_Q8_0 : TB_CPU_Q4_0;
        const size_t rb = tb_cpu_dtype_row_bytes(dt, C), bb = q8 ? 34 : 18;
        const size_t pair = q8 ? 1088 : 576, vb = q8 ? 512 : 256;
        const int nval = q8 ? 32 : 16; /* value bytes per block */
        uint8_t *w = malloc(rb * R);
        assert_non_null(w);
        for (size_t i = 0; i < rb * R; i++) {
            w[i] = (uint8_t)(i * 131u + 7u);
        }
        struct tb_cpu_weight wt = {.dtype = dt, .rows = R, .cols = C, .data = w};
        const size_t pb = tb_cpu_weight_packed_bytes(&wt);
        assert_int_equal(pb, 2 * 2 * pair); /* 2 groups x 2 block pairs */
        uint8_t *p = aligned_alloc(64, pb + 64);
        assert_non_null(p);
        memset(p, 0xa5, pb);
        assert_int_equal(tb_cpu_weight_pack(&wt, p, pb), TB_OK);
        for (int r = 0; r < 32; r++) {
            const uint8_t *g = p + (size_t)(r / 16) * 2 * pair;
            int i = r % 16;
            for (int b = 0; b < 4; b++) {
                const uint8_t *sc = g + (size_t)(b / 2) * pair + (size_t)(b % 2) * 32 + 2 * i;
                const uint8_t *v = g + (size_t)(b / 2) * pair + 64 + (size_t)(b % 2) * vb + 4 * i;
                const uint8_t *src = r < R && b < 3 ? w + (size_t)r * rb + (size_t)b * bb : NULL;
                assert_int_equal(sc[0], src ? src[0] : 0);
                assert_int_equal(sc[1], src ? src[1] : 0);
                for (int j = 0; j < nval; j++) {
                    int want = src ? src[2 + j] : 0;
                    if (q8) {
                        want ^= 0x80;
                    }
                    assert_int_equal(v[64 * (j / 4) + j % 4], want);
                }
            }
        }
        /* refusals */
        assert_int_equal(tb_cpu_weight_pack(&wt, p, pb - 1), TB_EINVAL);
        assert_int_equal(tb_cpu_weight_pack(&wt, p + 32, pb), TB_EINVAL);
        assert_int_equal(tb_cpu_weight_pack(&wt, NULL, pb), TB_EINVAL);
        assert_int_equal(tb_cpu_weight_pack(NULL, p, pb), TB_EINVAL);
        struct tb_cpu_weight other = wt;
        other.data = NULL;
        assert_int_equal(tb_cpu_weight_pack(&other, p, pb), TB_EINVAL);
        for (int d = 0; d < TB_CPU_DTYPE_COUNT; d++) {
            other = wt;
            other.dtype = (tb_cpu_dtype_t)d;
            assert_true((tb_cpu_weight_packed_bytes(&other) > 0) ==
                        (d == TB_CPU_Q4_0 || d == TB_CPU_Q8_0));
        }
        other = wt;
        other.cols = 48;
        assert_int_equal(tb_cpu_weight_packed_bytes(&other), 0);
        other.cols = 96;
        other.rows = 0;
        assert_int_equal(tb_cpu_weight_packed_bytes(&other), 0);
        free(p);
        free(w);
    }
    assert_int_equal(tb_cpu_weight_packed_bytes(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_all_isas),
        cmocka_unit_test(test_ntok_1_to_70_all_isas),
        cmocka_unit_test(test_large_all_isas),
        cmocka_unit_test(test_activation_quantization_error),
        cmocka_unit_test(test_multi_all_isas),
        cmocka_unit_test(test_batch1_ranges),
        cmocka_unit_test(test_isa_env),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_pack_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
