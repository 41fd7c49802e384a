/* Unit tests for the per-token ops: rmsnorm, rope (both pairings, partial rotation, frequency
 * table), silu*up, add, softmax, argmax; against direct double-precision formulas. */
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
#include "tb_errors.h"

static float s_val(int i)
{
    return sinf((float)i * 0.731f) * 3.0f + 0.1f;
}

static void test_rmsnorm(void **state)
{
    (void)state;
    enum { N = 203, ROWS = 3 };
    float x[N * ROWS], y[N * ROWS], w[N];
    for (int i = 0; i < N * ROWS; i++) {
        x[i] = s_val(i);
    }
    for (int i = 0; i < N; i++) {
        w[i] = 1.0f + 0.01f * (float)i;
    }
    tb_cpu_rmsnorm(y, x, w, N, ROWS, 1e-5f);
    for (int r = 0; r < ROWS; r++) {
        double ss = 0.0;
        for (int i = 0; i < N; i++) {
            ss += (double)x[r * N + i] * x[r * N + i];
        }
        double inv = 1.0 / sqrt(ss / N + 1e-5);
        for (int i = 0; i < N; i++) {
            assert_float_equal(y[r * N + i], x[r * N + i] * inv * w[i], 1e-5);
        }
    }
    /* in place, no weight */
    memcpy(y, x, sizeof(x));
    tb_cpu_rmsnorm(y, y, NULL, N, ROWS, 1e-5f);
    double ss = 0.0;
    for (int i = 0; i < N; i++) {
        ss += (double)y[i] * y[i];
    }
    assert_float_equal(ss / N, 1.0, 1e-3);
}

static void s_rope_check(tb_cpu_rope_mode_t mode, int rot_dim)
{
    enum { NT = 3, NH = 2, HD = 16 };
    float x[NT * NH * HD], orig[NT * NH * HD], freq[HD / 2];
    int32_t pos[NT] = {0, 7, 100000};
    for (int i = 0; i < NT * NH * HD; i++) {
        x[i] = orig[i] = s_val(i);
    }
    tb_cpu_rope_freqs(freq, rot_dim, 10000.0f);
    for (int i = 0; i < rot_dim / 2; i++) {
        assert_float_equal(freq[i], pow(10000.0, -2.0 * i / rot_dim), 1e-7);
    }
    assert_int_equal(tb_cpu_rope(x, NH * HD, NT, pos, NH, HD, rot_dim, freq, mode), TB_OK);
    for (int t = 0; t < NT; t++) {
        for (int h = 0; h < NH; h++) {
            const float *o = orig + (t * NH + h) * HD;
            const float *v = x + (t * NH + h) * HD;
            for (int i = 0; i < rot_dim / 2; i++) {
                int a = mode == TB_CPU_ROPE_NEOX ? i : 2 * i;
                int b = mode == TB_CPU_ROPE_NEOX ? i + rot_dim / 2 : 2 * i + 1;
                double ang = (double)pos[t] * freq[i];
                double ra = o[a] * cos(ang) - o[b] * sin(ang);
                double rb = o[a] * sin(ang) + o[b] * cos(ang);
                assert_float_equal(v[a], ra, 1e-5);
                assert_float_equal(v[b], rb, 1e-5);
            }
            for (int i = rot_dim; i < HD; i++) {
                assert_true(v[i] == o[i]); /* beyond rot_dim: untouched */
            }
        }
    }
}

static void test_rope(void **state)
{
    (void)state;
    s_rope_check(TB_CPU_ROPE_NEOX, 16);
    s_rope_check(TB_CPU_ROPE_INTERLEAVED, 16);
    s_rope_check(TB_CPU_ROPE_NEOX, 8);
    s_rope_check(TB_CPU_ROPE_INTERLEAVED, 10);
    float x[16] = {0}, f[8] = {0};
    int32_t p = 1;
    assert_int_equal(tb_cpu_rope(x, 16, 1, &p, 1, 16, 7, f, TB_CPU_ROPE_NEOX), TB_EINVAL);
    assert_int_equal(tb_cpu_rope(x, 16, 1, &p, 1, 16, 18, f, TB_CPU_ROPE_NEOX), TB_EINVAL);
    assert_int_equal(tb_cpu_rope(x, 8, 1, &p, 1, 16, 16, f, TB_CPU_ROPE_NEOX), TB_EINVAL);
}

static double s_rope_dot(tb_cpu_rope_mode_t mode, const float *freq, int32_t pq, int32_t pk)
{
    enum { HD = 64 };
    float q[HD], k[HD];
    for (int i = 0; i < HD; i++) {
        q[i] = s_val(i);
        k[i] = s_val(i + 99);
    }
    assert_int_equal(tb_cpu_rope(q, HD, 1, &pq, 1, HD, HD, freq, mode), TB_OK);
    assert_int_equal(tb_cpu_rope(k, HD, 1, &pk, 1, HD, HD, freq, mode), TB_OK);
    double dot = 0.0;
    for (int i = 0; i < HD; i++) {
        dot += (double)q[i] * k[i];
    }
    return dot;
}

static void test_rope_relative(void **state)
{
    (void)state;
    /* The property attention relies on: <rope(q, m), rope(k, n)> depends on m - n only, and
     * does depend on it (a rotation that did nothing would pass the first half alone). */
    enum { HD = 64 };
    float freq[HD / 2];
    tb_cpu_rope_freqs(freq, HD, 10000.0f);
    double plain = 0.0;
    for (int i = 0; i < HD; i++) {
        plain += (double)s_val(i) * s_val(i + 99);
    }
    for (int mode = 0; mode < 2; mode++) {
        const tb_cpu_rope_mode_t m = (tb_cpu_rope_mode_t)mode;
        const double d30 = s_rope_dot(m, freq, 50, 20);
        assert_float_equal(s_rope_dot(m, freq, 350, 320), d30, 1e-3);
        assert_float_equal(s_rope_dot(m, freq, 20, 20), plain, 1e-3); /* offset 0: no turn */
        assert_float_equal(s_rope_dot(m, freq, 333, 333), plain, 1e-3);
        assert_true(fabs(d30 - plain) > 0.1 * fabs(plain) + 0.1);
        assert_true(fabs(s_rope_dot(m, freq, 51, 20) - d30) > 1e-2);
    }
}

static void test_silu_add(void **state)
{
    (void)state;
    enum { N = 77 };
    float g[N], u[N], o[N];
    for (int i = 0; i < N; i++) {
        g[i] = s_val(i) * 5.0f;
        u[i] = s_val(i + 1000);
    }
    tb_cpu_silu_mul(o, g, u, N);
    for (int i = 0; i < N; i++) {
        assert_float_equal(o[i], g[i] / (1.0 + exp(-(double)g[i])) * u[i], 1e-5);
    }
    tb_cpu_add(o, g, u, N);
    for (int i = 0; i < N; i++) {
        assert_true(o[i] == g[i] + u[i]);
    }
    float want3 = g[3] / (1.0f + expf(-g[3])) * u[3];
    tb_cpu_silu_mul(g, g, u, N); /* in place */
    assert_float_equal(g[3], want3, 1e-6);
    float big = -100.0f, one = 1.0f, r;
    tb_cpu_silu_mul(&r, &big, &one, 1);
    assert_true(fabsf(r) < 1e-20f && !isnan(r));
    /* the vector kernel (whole 16s) and the scalar tail are the same function, bit for bit,
     * over the clamp and across it, zeros and subnormals included */
    enum { M = 4096 + 7 };
    static float gg[M], uu[M], oo[M];
    for (int i = 0; i < M; i++) {
        gg[i] = (float)(i - M / 2) * 0.05f;
        uu[i] = s_val(i);
    }
    gg[5] = -0.0f;
    gg[6] = 1e-40f;
    gg[7] = -1e-40f;
    tb_cpu_silu_mul(oo, gg, uu, M);
    for (int i = 0; i < M; i++) {
        const float want = gg[i] / (1.0f + tb_cpu_silu_exp(-gg[i])) * uu[i];
        if (memcmp(&want, &oo[i], sizeof want) != 0) {
            fail_msg("silu at %g: %.9g, scalar %.9g", (double)gg[i], (double)oo[i], (double)want);
        }
        const double exact = gg[i] / (1.0 + exp(-(double)gg[i])) * uu[i];
        assert_true(fabs(oo[i] - exact) <= 1e-6 * fabs(exact) + 1e-30);
    }
    if (tb_cpu_isa_detect() >= TB_CPU_ISA_AVX2) { /* the 8-lane kernel of AVX2-only machines */
        static float o8[M];
        tb_cpu_silu_mul_avx2(o8, gg, uu, M / 8 * 8);
        assert_memory_equal(o8, oo, (M / 8 * 8) * sizeof(float));
    } else {
        printf("# hardware: silu did not run the avx2 path (this CPU lacks it)\n");
    }
}

static void test_softmax_argmax(void **state)
{
    (void)state;
    float x[5] = {1000.0f, 1001.0f, 999.0f, -INFINITY, 1001.0f};
    float c[5];
    memcpy(c, x, sizeof(x));
    tb_cpu_softmax(c, 5);
    double z = exp(-1.0) + 1.0 + exp(-2.0) + 0.0 + 1.0;
    assert_float_equal(c[0], exp(-1.0) / z, 1e-6);
    assert_float_equal(c[1], 1.0 / z, 1e-6);
    assert_true(c[3] == 0.0f);
    assert_int_equal(tb_cpu_argmax(x, 5), 1); /* first of the tie */
    float n[3] = {NAN, 2.0f, 3.0f};
    assert_int_equal(tb_cpu_argmax(n, 3), 2);
    assert_int_equal(tb_cpu_argmax(n, 0), -1);
    float one = 5.0f;
    tb_cpu_softmax(&one, 1);
    assert_true(one == 1.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rope_relative),  cmocka_unit_test(test_silu_add),
        cmocka_unit_test(test_softmax_argmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
