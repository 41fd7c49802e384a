/* Unit tests for the dtype helpers: descriptors, f16/bf16 conversion (exhaustive over all half
 * values, checked against a double-precision reference), row quantization and dequantization. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the standard headers it needs */

#include "cpu/tb_cpu_kernels.h"
#include "tb_errors.h"

static void test_descriptors(void **state)
{
    (void)state;
    static const struct {
        tb_cpu_dtype_t dt;
        const char *name;
        int bs, bb;
        uint32_t ggml;
    } want[] = {{TB_CPU_F32, "f32", 1, 4, 0},
                {TB_CPU_F16, "f16", 1, 2, 1},
                {TB_CPU_BF16, "bf16", 1, 2, 30},
                {TB_CPU_Q8_0, "q8_0", 32, 34, 8},
                {TB_CPU_Q4_0, "q4_0", 32, 18, 2}};
    for (size_t i = 0; i < 5; i++) {
        const struct tb_cpu_dtype_info *in = tb_cpu_dtype_info(want[i].dt);
        assert_non_null(in);
        assert_string_equal(in->name, want[i].name);
        assert_int_equal(in->block_size, want[i].bs);
        assert_int_equal(in->block_bytes, want[i].bb);
        tb_cpu_dtype_t dt;
        assert_int_equal(tb_cpu_dtype_from_ggml(want[i].ggml, &dt), TB_OK);
        assert_int_equal(dt, want[i].dt);
    }
    assert_null(tb_cpu_dtype_info(TB_CPU_DTYPE_COUNT));
    tb_cpu_dtype_t k4;
    assert_int_equal(tb_cpu_dtype_from_ggml(12, &k4), TB_OK); /* Q4_K */
    assert_int_equal(k4, TB_CPU_Q4_K);
    assert_string_equal(tb_cpu_dtype_info(TB_CPU_Q4_K)->name, "q4_k");
    assert_int_equal(tb_cpu_dtype_info(TB_CPU_Q6_K)->block_bytes, 210);
    assert_int_equal(tb_cpu_dtype_row_bytes(TB_CPU_IQ4_XS, 512), 272);
    assert_int_equal(tb_cpu_dtype_row_bytes(TB_CPU_Q5_0, 64), 44);
    assert_int_equal(tb_cpu_dtype_row_bytes(TB_CPU_Q2_K, 128), 0);
    assert_int_equal(tb_cpu_dtype_from_ggml(16, NULL), TB_ENOTSUP); /* IQ2_XXS */
    assert_int_equal(tb_cpu_dtype_row_bytes(TB_CPU_Q4_0, 64), 36);
    assert_int_equal(tb_cpu_dtype_row_bytes(TB_CPU_Q8_0, 96), 102);
    assert_int_equal(tb_cpu_dtype_row_bytes(TB_CPU_Q8_0, 33), 0);
    assert_int_equal(tb_cpu_dtype_row_bytes(TB_CPU_F16, 7), 14);
}

/* Independent references, in double arithmetic straight from the binary16 definition. */
static double s_ref_half_value(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static uint16_t s_ref_f32_to_half(float f)
{ /* finite f; round to nearest, ties to even */
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (a >= 65520.0) {
        return sign | 0x7c00;
    }
    if (a < ldexp(1.0, -14)) {
        return (uint16_t)(sign | (uint16_t)nearbyint(a * 16777216.0)); /* m * 2^-24 */
    }
    int e;
    double r = nearbyint(ldexp(frexp(a, &e), 11)); /* [1024, 2048] */
    if (r == 2048.0) {
        r = 1024.0;
        e++;
    }
    int E = e - 1 + 15;
    if (E >= 31) {
        return sign | 0x7c00;
    }
    return (uint16_t)(sign | (E << 10) | ((int)r - 1024));
}

static void test_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t hb = (uint16_t)h;
        float f = tb_cpu_f16_to_f32(hb);
        if (((h >> 10) & 0x1f) == 0x1f) {
            if (h & 0x3ff) {
                assert_true(isnan(f));
                assert_true(isnan(tb_cpu_f16_to_f32(tb_cpu_f32_to_f16(f))));
            } else {
                assert_true(isinf(f) && (signbit(f) != 0) == ((h & 0x8000) != 0));
                assert_int_equal(tb_cpu_f32_to_f16(f), hb);
            }
            continue;
        }
        assert_true((double)f == s_ref_half_value(hb));
        assert_int_equal(tb_cpu_f32_to_f16(f), hb); /* round trip is exact */
    }
}

static void test_f32_to_f16_rounding(void **state)
{
    (void)state;
    /* Random floats across the whole half range and beyond, and exact halfway cases. */
    uint64_t s = 12345;
    for (int i = 0; i < 2000000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(s >> 32);
        if (i % 4 == 0) {
            u = (u & 0x80000000u) | (0x33000000u + (u % 0x15000000u)); /* ~[2^-25, 2^17) */
        } else if (i % 4 == 1) {
            u = (u & 0xffffe000u) | 0x1000u; /* exactly halfway between two halves */
        }
        float f;
        memcpy(&f, &u, 4);
        if (!isfinite(f)) {
            continue;
        }
        uint16_t want = s_ref_f32_to_half(f);
        uint16_t got = tb_cpu_f32_to_f16(f);
        if (got != want) {
            print_error("f32 %a (0x%08x): got 0x%04x want 0x%04x\n", (double)f, u, got, want);
            fail();
        }
    }
}

static void test_bf16(void **state)
{
    (void)state;
    assert_true(tb_cpu_bf16_to_f32(0x3f80) == 1.0f);
    assert_int_equal(tb_cpu_f32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0). */
    assert_int_equal(tb_cpu_f32_to_bf16(1.00390625f), 0x3f80);
    assert_int_equal(tb_cpu_f32_to_bf16(1.01171875f), 0x3f82); /* 1 + 3*2^-8 -> up to even */
    assert_true(isnan(tb_cpu_bf16_to_f32(tb_cpu_f32_to_bf16(NAN))));
    assert_int_equal(tb_cpu_f32_to_bf16(INFINITY), 0x7f80);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = tb_cpu_bf16_to_f32((uint16_t)h);
        if (!isnan(f)) {
            assert_int_equal(tb_cpu_f32_to_bf16(f), h);
        }
    }
}

static void test_q8_0_known_block(void **state)
{
    (void)state;
    float x[32];
    for (int i = 0; i < 32; i++) {
        x[i] = (float)(i - 16) / 16.0f * 2.54f; /* amax = 2.54 at i = 0: d = 0.02 */
    }
    uint8_t blk[34];
    assert_int_equal(tb_cpu_quantize_row(TB_CPU_Q8_0, x, blk, 32), TB_OK);
    assert_int_equal(blk[0] | blk[1] << 8, tb_cpu_f32_to_f16(0.02f));
    assert_int_equal((int8_t)blk[2], -127);
    assert_int_equal((int8_t)blk[2 + 16], 0);
    assert_int_equal((int8_t)blk[2 + 24], 64); /* 8/16 * 127 = 63.5 rounds away from zero */
    float back[32];
    assert_int_equal(tb_cpu_dequantize_row(TB_CPU_Q8_0, blk, back, 32), TB_OK);
    for (int i = 0; i < 32; i++) {
        /* half a step, plus 127 times the f16 rounding of d (2^-11 relative) */
        assert_true(fabsf(back[i] - x[i]) <= 0.01f + 127.0f * 0.02f / 2048.0f);
    }
}

static void test_q4_0_known_block(void **state)
{
    (void)state;
    float x[32];
    for (int i = 0; i < 32; i++) {
        x[i] = (float)(i - 8); /* largest magnitude: 23 at i = 31 -> d = -23/8 */
    }
    uint8_t blk[18];
    assert_int_equal(tb_cpu_quantize_row(TB_CPU_Q4_0, x, blk, 32), TB_OK);
    assert_int_equal(blk[0] | blk[1] << 8, tb_cpu_f32_to_f16(-23.0f / 8.0f));
    assert_int_equal(blk[2 + 15] >> 4, 0); /* x[31] = 23 -> q = 0 -> value 8 * 23/8 */
    float back[32];
    assert_int_equal(tb_cpu_dequantize_row(TB_CPU_Q4_0, blk, back, 32), TB_OK);
    float d = 23.0f / 8.0f;
    for (int i = 0; i < 32; i++) {
        assert_true(fabsf(back[i] - x[i]) <= d * 0.5f + 0.02f);
    }
    assert_true(fabsf(back[31] - 23.0f) < 0.02f);
}

static void test_roundtrip_errors(void **state)
{
    (void)state;
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint8_t *row = malloc(N * 4);
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1;
        x[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 6.0f;
    }
    static const struct {
        tb_cpu_dtype_t dt;
        float rel;
    } cases[] = {{TB_CPU_F32, 0.0f},
                 {TB_CPU_F16, 4.9e-4f},
                 {TB_CPU_BF16, 3.9e-3f},
                 {TB_CPU_Q8_0, 0.0f},
                 {TB_CPU_Q4_0, 0.0f}};
    for (size_t c = 0; c < 5; c++) {
        assert_int_equal(tb_cpu_quantize_row(cases[c].dt, x, row, N), TB_OK);
        assert_int_equal(tb_cpu_dequantize_row(cases[c].dt, row, y, N), TB_OK);
        for (int b = 0; b < N / 32; b++) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) {
                amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            }
            for (int j = 0; j < 32; j++) {
                int i = b * 32 + j;
                float err = fabsf(x[i] - y[i]);
                float bound;
                if (cases[c].dt == TB_CPU_Q8_0) {
                    /* half a step, plus 127 x the f16 rounding of d */
                    bound = amax / 127.0f * (0.5f + 127.0f / 2048.0f) + 1e-6f;
                } else if (cases[c].dt == TB_CPU_Q4_0) {
                    /* one step (the side opposite the largest value clamps at q = 15), plus
                     * 8 x the f16 rounding of d */
                    bound = amax / 8.0f * (1.0f + 8.0f / 2048.0f) + 1e-6f;
                } else {
                    bound = fabsf(x[i]) * cases[c].rel;
                }
                assert_true(err <= bound);
            }
        }
    }
    assert_int_equal(tb_cpu_dequantize_row(TB_CPU_Q4_0, row, y, 33), TB_EINVAL);
    assert_int_equal(tb_cpu_quantize_row(TB_CPU_Q8_0, x, row, 31), TB_EINVAL);
    free(x);
    free(y);
    free(row);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptors),         cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_f32_to_f16_rounding), cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_q8_0_known_block),    cmocka_unit_test(test_q4_0_known_block),
        cmocka_unit_test(test_roundtrip_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
