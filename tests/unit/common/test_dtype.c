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
    assert_false(tb_dtype_from_name("q4_k", &t));
    assert_true(tb_dtype_is_quantized(TB_DTYPE_Q4_0));
    assert_false(tb_dtype_is_quantized(TB_DTYPE_F16));
    assert_int_equal(tb_dtype_block_elems(TB_DTYPE_Q8_0), 32);
    assert_int_equal(tb_dtype_block_bytes(TB_DTYPE_Q4_0), 18);
}

static void test_f16(void **state)
{
    (void)state;
    assert_int_equal(tb_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(tb_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(tb_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(tb_f32_to_f16(65520.0f), 0x7c00); /* rounds to infinity */
    assert_int_equal(tb_f32_to_f16(0.0f), 0);
    assert_int_equal(tb_f32_to_f16(5.9604645e-8f), 0x0001); /* smallest subnormal */
    assert_int_equal(tb_f32_to_f16(2.9802322e-8f), 0x0000); /* half of it: ties to even */
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
        assert_true(out[j] == 2.0f * (float)(j - 8));             /* low nibbles: 0..15 */
        assert_true(out[j + 16] == 2.0f * (float)(15 - j - 8));   /* high nibbles: 16..31 */
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
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_dequant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
