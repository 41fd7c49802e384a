/* Unit tests for tb_quant_dot: for every quantized type, random weight rows (random bytes with
 * finite f16 scales, including the largest) times random activations, against
 *   (a) the exact (double) product of the dequantized weights with the dequantized quantized
 *       activations: equal up to f32 rounding, |err| <= 1e-5 * M, where M sums the magnitudes
 *       of both terms of every weight value (d*sc*q and dmin*m) times |activation|;
 *   (b) the exact product with the original f32 activations: additionally off by at most
 *       sum_i |w_i| * |x_i - x'_i| (x' the dequantized activation, |x_i - x'_i| <= d/2).
 * And the matrix product: each output equals the dot product of its row.  The SIMD paths of
 * tb_quant_kernels.h are forced one by one (each test skips, saying so, when the CPU lacks the
 * instruction set) and must equal the reference bit for bit on every type. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_quant_dot.h"
#include "tb_quant_kernels.h"

static uint64_t s_state = 0x9e3779b97f4a7c15ull;

static uint32_t s_rand(void)
{
    s_state ^= s_state << 13;
    s_state ^= s_state >> 7;
    s_state ^= s_state << 17;
    return (uint32_t)(s_state >> 16);
}

static float s_uniform(void)
{
    return (float)(s_rand() % 2000001u) / 1000000.0f - 1.0f;
}

/* byte offsets of each type's f16 fields */
static const struct {
    tb_dtype_t t;
    int off[2];
    int n_off;
} s_types[] = {
    {TB_DTYPE_Q8_0, {0}, 1},      {TB_DTYPE_Q4_0, {0}, 1},    {TB_DTYPE_Q4_1, {0, 2}, 2},
    {TB_DTYPE_Q5_0, {0}, 1},      {TB_DTYPE_Q5_1, {0, 2}, 2}, {TB_DTYPE_IQ4_NL, {0}, 1},
    {TB_DTYPE_Q2_K, {80, 82}, 2}, {TB_DTYPE_Q3_K, {108}, 1},  {TB_DTYPE_Q4_K, {0, 2}, 2},
    {TB_DTYPE_Q5_K, {0, 2}, 2},   {TB_DTYPE_Q6_K, {208}, 1},  {TB_DTYPE_IQ4_XS, {0}, 1},
};

/* Random blocks for `n` elements of type i; mode 0: random scales and codes; 1: the largest
 * scales with all codes 0xff; 2: scales of mixed signs with all codes 0. */
static uint8_t *s_weights(size_t i, uint64_t n, int mode)
{
    tb_dtype_t t = s_types[i].t;
    size_t bb = tb_dtype_block_bytes(t), nb = n / tb_dtype_block_elems(t);
    uint8_t *w = malloc(nb * bb);
    assert_non_null(w);
    for (size_t k = 0; k < nb * bb; k++) {
        w[k] = mode == 0 ? (uint8_t)s_rand() : mode == 1 ? 0xff : 0x00;
    }
    for (size_t b = 0; b < nb; b++) {
        for (int f = 0; f < s_types[i].n_off; f++) {
            float v = mode == 1 ? 65504.0f : ldexpf(s_uniform(), -(int)(s_rand() % 12));
            if (mode == 2 && f == 1) {
                v = -v;
            }
            uint16_t h = tb_f32_to_f16(v);
            w[b * bb + (size_t)s_types[i].off[f]] = (uint8_t)h;
            w[b * bb + (size_t)s_types[i].off[f] + 1] = (uint8_t)(h >> 8);
        }
    }
    return w;
}

/* sum over elements of (|d*sc*q| + |dmin*m|) * |a_i| */
static double s_magnitude(tb_dtype_t t, const uint8_t *w, const float *a, uint64_t n)
{
    size_t be = tb_dtype_block_elems(t), bb = tb_dtype_block_bytes(t);
    struct tb_quant_unpacked u;
    double m = 0.0;
    for (uint64_t b = 0; b < n / be; b++) {
        assert_int_equal(tb_quant_unpack(t, w + b * bb, &u), 0);
        for (int i = 0; i < u.n; i++) {
            int g = i / u.group;
            double v = fabs((double)u.d * u.sc[g] * u.code[i]) + fabs((double)u.dmin * u.mn[g]);
            m += v * fabs((double)a[b * be + (uint64_t)i]);
        }
    }
    return m;
}

/* For Q4_1 / Q5_1: sum over blocks of min * (s - d * sum), what the f16 s of the activation
 * blocks adds to the product with the dequantized activations (0 for the other types). */
static double s_min_s_correction(tb_dtype_t t, const uint8_t *w, const void *qa, uint64_t n)
{
    if (t != TB_DTYPE_Q4_1 && t != TB_DTYPE_Q5_1) {
        return 0.0;
    }
    size_t bb = tb_dtype_block_bytes(t);
    const struct tb_block_q8_32 *a = qa;
    struct tb_quant_unpacked u;
    double c = 0.0;
    for (uint64_t b = 0; b < n / TB_QK; b++) {
        assert_int_equal(tb_quant_unpack(t, w + b * bb, &u), 0);
        c += -(double)u.dmin * ((double)a[b].s - (double)a[b].d * a[b].sum);
    }
    return c;
}

static void s_check_type(size_t i, uint64_t n, int mode)
{
    tb_dtype_t t = s_types[i].t;
    tb_quant_act_t at = tb_quant_act_for(t);
    size_t ae = tb_quant_act_block_elems(at);
    uint8_t *w = s_weights(i, n, mode);
    float *x = malloc(n * sizeof *x), *xq = malloc(n * sizeof *x), *wf = malloc(n * sizeof *x);
    void *qa = malloc(n / ae * tb_quant_act_block_bytes(at));
    assert_true(x && xq && wf && qa);
    for (uint64_t k = 0; k < n; k++) {
        x[k] = s_uniform() * (k % 97 == 0 ? 40.0f : 1.0f); /* a few outliers per block */
    }
    assert_int_equal(tb_quant_act_quantize(at, x, qa, n), 0);
    assert_int_equal(tb_quant_act_to_f32(at, qa, xq, n), 0);
    assert_int_equal(tb_quant_dequantize(t, w, wf, n), 0);
    float got;
    assert_int_equal(tb_quant_dot(t, w, qa, n, &got), 0);
    double exact_q = 0.0, exact_x = 0.0, act_err = 0.0;
    for (uint64_t k = 0; k < n; k++) {
        exact_q += (double)wf[k] * xq[k];
        exact_x += (double)wf[k] * x[k];
        act_err += fabs((double)wf[k]) * fabs((double)x[k] - xq[k]);
    }
    /* Q4_1 / Q5_1 take their min times the block's s, d * sum rounded to f16 as ggml's Q8_1
     * stores it, not times the dequantized activations' sum: the exact value moves by that */
    double s_corr = s_min_s_correction(t, w, qa, n);
    exact_q += s_corr;
    act_err += fabs(s_corr);
    double tol = 1e-5 * s_magnitude(t, w, xq, n) + 1e-30;
    if (!(fabs(got - exact_q) <= tol) || !(fabs(got - exact_x) <= tol + act_err * 1.000001)) {
        fail_msg("%s mode %d: dot %.9g, exact with quantized activations %.9g (tolerance %.3g), "
                 "with f32 activations %.9g (tolerance %.3g)",
                 tb_dtype_name(t), mode, (double)got, exact_q, tol, exact_x, tol + act_err);
    }
    free(w);
    free(x);
    free(xq);
    free(wf);
    free(qa);
}

static void test_dot_every_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_types / sizeof s_types[0]; i++) {
        for (int rep = 0; rep < 20; rep++) {
            s_check_type(i, 1024, 0);
        }
        s_check_type(i, 256, 1);
        s_check_type(i, 256, 2);
        s_check_type(i, 4096, 0);
    }
}

static void test_matmul(void **state)
{
    (void)state;
    enum { ROWS = 7, COLS = 512, TOK = 3 };
    float x[TOK * COLS], y[TOK * ROWS];
    for (int k = 0; k < TOK * COLS; k++) {
        x[k] = s_uniform();
    }
    for (size_t i = 0; i < sizeof s_types / sizeof s_types[0]; i++) {
        tb_dtype_t t = s_types[i].t;
        tb_quant_act_t at = tb_quant_act_for(t);
        uint8_t *w = s_weights(i, (uint64_t)ROWS * COLS, 0);
        assert_int_equal(tb_quant_matmul(t, w, ROWS, COLS, x, TOK, y), 0);
        size_t row_bytes = COLS / tb_dtype_block_elems(t) * tb_dtype_block_bytes(t);
        static uint8_t qa[COLS / 32 * sizeof(struct tb_block_q8_32) + 1024];
        for (int k = 0; k < TOK; k++) {
            assert_int_equal(tb_quant_act_quantize(at, x + k * COLS, qa, COLS), 0);
            for (int r = 0; r < ROWS; r++) {
                float d;
                assert_int_equal(tb_quant_dot(t, w + (size_t)r * row_bytes, qa, COLS, &d), 0);
                assert_true(d == y[k * ROWS + r]);
            }
        }
        free(w);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    uint8_t w[210] = {0};
    struct tb_block_q8_k a = {0};
    float out = 1.0f, x[256] = {0}, y[1];
    assert_int_equal(tb_quant_dot(TB_DTYPE_F32, w, &a, 32, &out), TB_EINVAL);
    assert_int_equal(tb_quant_dot(TB_DTYPE_Q6_K, w, &a, 32, &out), TB_EINVAL);
    assert_int_equal(tb_quant_matmul(TB_DTYPE_Q4_K, w, 1, 100, x, 1, y), TB_EINVAL);
    assert_int_equal(tb_quant_matmul(TB_DTYPE_BF16, w, 1, 256, x, 1, y), TB_EINVAL);
    assert_int_equal(tb_quant_dot(TB_DTYPE_Q6_K, w, &a, 256, &out), 0);
    assert_true(out == 0.0f);
}

/* Every type, rows of 1, 3 and 16 super-blocks, random and edge blocks: bit-equal results. */
static void s_check_kernels(tb_quant_isa_t isa)
{
    const struct tb_quant_kernels *k = tb_quant_kernels_for(isa);
    if (!k) {
        skip(); /* this CPU lacks the instruction set */
    }
    assert_int_equal(k->isa, isa);
    static const uint64_t lens[3] = {256, 768, 4096};
    for (size_t i = 0; i < sizeof s_types / sizeof s_types[0]; i++) {
        tb_dtype_t t = s_types[i].t;
        tb_quant_act_t at = tb_quant_act_for(t);
        for (int mode = 0; mode < 3; mode++) {
            for (int rep = 0; rep < (mode == 0 ? 10 : 1); rep++) {
                uint64_t n = lens[rep % 3];
                uint8_t *w = s_weights(i, n, mode);
                float *x = malloc(n * sizeof *x);
                void *qa = malloc(n / tb_quant_act_block_elems(at) *
                                  tb_quant_act_block_bytes(at));
                assert_true(x && qa);
                for (uint64_t j = 0; j < n; j++) {
                    x[j] = mode == 1 ? (j % 2 ? 1.0f : -1.0f) : s_uniform() * 8.0f;
                }
                assert_int_equal(tb_quant_act_quantize(at, x, qa, n), 0);
                float want, got;
                assert_int_equal(tb_quant_dot(t, w, qa, n, &want), 0);
                assert_int_equal(k->dot(t, w, qa, n, &got), 0);
                if (memcmp(&want, &got, sizeof got) != 0) {
                    fail_msg("%s %s mode %d n %llu: %.9g, reference %.9g", k->name,
                             tb_dtype_name(t), mode, (unsigned long long)n, (double)got,
                             (double)want);
                }
                assert_int_equal(k->dot(t, w, qa, n - tb_dtype_block_elems(t) / 2, &got),
                                 TB_EINVAL);
                free(w);
                free(x);
                free(qa);
            }
        }
    }
}

static void test_kernels_generic(void **state)
{
    (void)state;
    s_check_kernels(TB_QUANT_ISA_GENERIC);
    const struct tb_quant_kernels *best = tb_quant_kernels_best();
    assert_non_null(best);
    for (int i = TB_QUANT_ISA_COUNT - 1; i >= 0; i--) {
        if (tb_quant_kernels_for((tb_quant_isa_t)i)) {
            assert_int_equal(best->isa, i); /* the best is the highest this CPU runs */
            break;
        }
    }
    assert_null(tb_quant_kernels_for(TB_QUANT_ISA_COUNT));
}

static void test_kernels_avx2(void **state)
{
    (void)state;
    s_check_kernels(TB_QUANT_ISA_AVX2);
}

static void test_kernels_avx512(void **state)
{
    (void)state;
    s_check_kernels(TB_QUANT_ISA_AVX512);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_every_type), cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_refusals),       cmocka_unit_test(test_kernels_generic),
        cmocka_unit_test(test_kernels_avx2),   cmocka_unit_test(test_kernels_avx512),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
