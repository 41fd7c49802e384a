/* Unit tests for tb_dtype: sizes, names, half/bfloat conversions, block dequantization. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tb_dtype.h"
#include "tb_errors.h"

static void test_sizes_and_names(void **state)
{
    (void)state;
    uint64_t n;
    assert_int_equal(tb_dtype_bytes(TB_DTYPE_F32, 10, &n), 0);
    assert_int_equal(n, 40);
    assert_int_equal(tb_dtype_bytes(TB_DTYPE_BF16, 10, &n), 0);
    assert_int_equal(n, 20);
    assert_int_equal(tb_dtype_bytes(TB_DTYPE_Q8_0, 64, &n), 0);
    assert_int_equal(n, 68);
    assert_int_equal(tb_dtype_bytes(TB_DTYPE_Q4_0, 64, &n), 0);
    assert_int_equal(n, 36);
    assert_int_equal(tb_dtype_bytes(TB_DTYPE_Q4_0, 33, &n), TB_EINVAL);
    assert_int_equal(tb_dtype_bytes(TB_DTYPE_F32, UINT64_MAX / 2, &n), TB_ERANGE);
    assert_int_equal(tb_dtype_bytes(TB_DTYPE_COUNT, 1, &n), TB_EINVAL);
    assert_string_equal(tb_dtype_name(TB_DTYPE_Q8_0), "q8_0");
    assert_string_equal(tb_dtype_name(TB_DTYPE_COUNT), "?");
    tb_dtype_t t;
    assert_true(tb_dtype_from_name("BF16", &t));
    assert_int_equal(t, TB_DTYPE_BF16);
    assert_true(tb_dtype_from_name("Q4_K", &t));
    assert_int_equal(t, TB_DTYPE_Q4_K);
    assert_false(tb_dtype_from_name("q8_k", &t)); /* an activation format, not a file type */
    assert_false(tb_dtype_from_name("iq2_xxs", &t));
    assert_true(tb_dtype_is_quantized(TB_DTYPE_Q4_0));
    assert_false(tb_dtype_is_quantized(TB_DTYPE_F16));
    assert_int_equal(tb_dtype_block_elems(TB_DTYPE_Q8_0), 32);
    assert_int_equal(tb_dtype_block_bytes(TB_DTYPE_Q4_0), 18);
}

/* Every type: ggml's number, block shape and byte size (ggml's GGML_QUANT_SIZES). */
static void test_block_table(void **state)
{
    (void)state;
    static const struct {
        tb_dtype_t t;
        const char *name;
        uint32_t ggml;
        size_t elems, bytes;
    } want[] = {
        {TB_DTYPE_F32, "f32", 0, 1, 4},
        {TB_DTYPE_F16, "f16", 1, 1, 2},
        {TB_DTYPE_BF16, "bf16", 30, 1, 2},
        {TB_DTYPE_Q8_0, "q8_0", 8, 32, 34},
        {TB_DTYPE_Q4_0, "q4_0", 2, 32, 18},
        {TB_DTYPE_Q4_1, "q4_1", 3, 32, 20},
        {TB_DTYPE_Q5_0, "q5_0", 6, 32, 22},
        {TB_DTYPE_Q5_1, "q5_1", 7, 32, 24},
        {TB_DTYPE_IQ4_NL, "iq4_nl", 20, 32, 18},
        {TB_DTYPE_Q2_K, "q2_k", 10, 256, 84},
        {TB_DTYPE_Q3_K, "q3_k", 11, 256, 110},
        {TB_DTYPE_Q4_K, "q4_k", 12, 256, 144},
        {TB_DTYPE_Q5_K, "q5_k", 13, 256, 176},
        {TB_DTYPE_Q6_K, "q6_k", 14, 256, 210},
        {TB_DTYPE_IQ4_XS, "iq4_xs", 23, 256, 136},
    };
    assert_int_equal(sizeof want / sizeof want[0], TB_DTYPE_COUNT);
    for (size_t i = 0; i < TB_DTYPE_COUNT; i++) {
        tb_dtype_t t = want[i].t, back;
        assert_string_equal(tb_dtype_name(t), want[i].name);
        assert_int_equal(tb_dtype_ggml_type(t), want[i].ggml);
        assert_true(tb_dtype_from_ggml(want[i].ggml, &back));
        assert_int_equal(back, t);
        assert_int_equal(tb_dtype_block_elems(t), want[i].elems);
        assert_int_equal(tb_dtype_block_bytes(t), want[i].bytes);
        assert_int_equal(tb_dtype_is_quantized(t), want[i].elems > 1);
        uint64_t n;
        /* a row of 4 blocks; one element more is not whole blocks */
        assert_int_equal(tb_dtype_bytes(t, 4 * want[i].elems, &n), 0);
        assert_int_equal(n, 4 * want[i].bytes);
        if (want[i].elems > 1) {
            assert_int_equal(tb_dtype_bytes(t, 4 * want[i].elems + 1, &n), TB_EINVAL);
            assert_int_equal(tb_dtype_bytes(t, want[i].elems / 2, &n), TB_EINVAL);
        }
    }
    /* ggml types that are not file types here */
    static const uint32_t refused[] = {4, 5, 9, 15, 16, 17, 18, 19, 21, 22, 24, 28, 29, 31, 99};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        tb_dtype_t t = TB_DTYPE_F32;
        assert_false(tb_dtype_from_ggml(refused[i], &t));
    }
    assert_int_equal(tb_dtype_ggml_type(TB_DTYPE_COUNT), UINT32_MAX);
}

static void test_f16(void **state)
{
    (void)state;
    assert_int_equal(tb_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(tb_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(tb_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(tb_f32_to_f16(65520.0f), 0x7c00); /* rounds to infinity */
    assert_int_equal(tb_f32_to_f16(0.0f), 0);
    assert_int_equal(tb_f32_to_f16(5.9604645e-8f), 0x0001);      /* smallest subnormal */
    assert_int_equal(tb_f32_to_f16(2.9802322e-8f), 0x0000);      /* half of it: ties to even */
    assert_int_equal(tb_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    assert_int_equal(tb_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    assert_true(isnan(tb_f16_to_f32(tb_f32_to_f16(NAN))));
    assert_true(isinf(tb_f16_to_f32(0x7c00)));
    assert_true(tb_f16_to_f32(0x0001) == 5.9604645e-8f);
    /* every finite half round-trips exactly */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) {
            continue;
        }
        assert_int_equal(tb_f32_to_f16(tb_f16_to_f32((uint16_t)h)), h);
    }
}

static void test_bf16(void **state)
{
    (void)state;
    assert_int_equal(tb_f32_to_bf16(1.0f), 0x3f80);
    assert_true(tb_bf16_to_f32(0x3f80) == 1.0f);
    assert_int_equal(tb_f32_to_bf16(1.00390625f), 0x3f80); /* tie to even */
    assert_int_equal(tb_f32_to_bf16(1.01171875f), 0x3f82);
    assert_true(isnan(tb_bf16_to_f32(tb_f32_to_bf16(NAN))));
}

static void test_dequant(void **state)
{
    (void)state;
    uint8_t q8[34];
    uint16_t d = tb_f32_to_f16(0.5f);
    memcpy(q8, &d, 2);
    for (int i = 0; i < 32; i++) {
        q8[2 + i] = (uint8_t)(int8_t)(i - 16);
    }
    float out[32];
    assert_int_equal(tb_dtype_to_f32(TB_DTYPE_Q8_0, q8, out, 32), 0);
    for (int i = 0; i < 32; i++) {
        assert_true(out[i] == 0.5f * (float)(i - 16));
    }
    uint8_t q4[18];
    d = tb_f32_to_f16(2.0f);
    memcpy(q4, &d, 2);
    for (int j = 0; j < 16; j++) {
        q4[2 + j] = (uint8_t)((j & 0xf) | ((15 - j) << 4));
    }
    assert_int_equal(tb_dtype_to_f32(TB_DTYPE_Q4_0, q4, out, 32), 0);
    for (int j = 0; j < 16; j++) {
        assert_true(out[j] == 2.0f * (float)(j - 8));           /* low nibbles: 0..15 */
        assert_true(out[j + 16] == 2.0f * (float)(15 - j - 8)); /* high nibbles: 16..31 */
    }
    assert_int_equal(tb_dtype_to_f32(TB_DTYPE_Q4_0, q4, out, 31), TB_EINVAL);
    uint16_t h[2] = {0x3c00, 0xc000};
    assert_int_equal(tb_dtype_to_f32(TB_DTYPE_F16, h, out, 2), 0);
    assert_true(out[0] == 1.0f && out[1] == -2.0f);
    uint16_t b[2] = {0x3f80, 0x4000};
    assert_int_equal(tb_dtype_to_f32(TB_DTYPE_BF16, b, out, 2), 0);
    assert_true(out[0] == 1.0f && out[1] == 2.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_names),
        cmocka_unit_test(test_block_table),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_dequant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
