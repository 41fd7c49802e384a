/*
 * test_buf.c - the SDK's tb_buf: growth keeps the contents and the NUL, printf past the small
 * stack buffer, UTF-8 appends, clear/steal, reading a whole stream, integers as printf writes them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <inttypes.h>

#include <cmocka.h>

#include "tb_buf.h"

static void test_append_grows(void **state)
{
    (void)state;
    struct tb_buf b;
    tb_buf_init(&b);
    assert_null(b.data);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(tb_buf_append(&b, "0123456789", 10), 0);
    }
    assert_int_equal(b.len, 10000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], 0);
    assert_memory_equal(b.data + 9990, "0123456789", 10);
    assert_int_equal(tb_buf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 10000);
    /* a request that cannot be sized is refused and changes nothing */
    assert_int_equal(tb_buf_reserve(&b, SIZE_MAX - 8), TB_ENOMEM);
    assert_int_equal(b.len, 10000);
    tb_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    tb_buf_free(&b); /* a zeroed buffer is fine */
}

static void test_printf_puts_cp(void **state)
{
    (void)state;
    struct tb_buf b = {0};
    assert_int_equal(tb_buf_printf(&b, "%s=%d", "x", 42), 0);
    assert_int_equal(tb_buf_puts(&b, ";"), 0);
    char big[1000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(tb_buf_printf(&b, "[%s]", big), 0); /* past the 256-byte fast path */
    assert_int_equal(b.len, 5 + 1001);
    assert_memory_equal(b.data, "x=42;[zz", 8);
    assert_int_equal(b.data[b.len - 1], ']');
    tb_buf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal((char *)b.data, "");
    assert_int_equal(tb_buf_append_cp(&b, 0xE9), 0);
    assert_int_equal(tb_buf_append_cp(&b, 0x1F642), 0);
    assert_int_equal(tb_buf_append_cp(&b, 0xDC00), TB_EINVAL);
    assert_string_equal((char *)b.data, "\xc3\xa9\xf0\x9f\x99\x82");
    size_t len = 0;
    char *s = tb_buf_steal(&b, &len);
    assert_int_equal(len, 6);
    assert_string_equal(s, "\xc3\xa9\xf0\x9f\x99\x82");
    assert_null(b.data);
    free(s);
    s = tb_buf_steal(&b, &len); /* empty: an allocated "" */
    assert_non_null(s);
    assert_int_equal(len, 0);
    assert_string_equal(s, "");
    free(s);
}

static void test_read_file(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    for (int i = 0; i < 50000; i++) {
        fprintf(f, "%04d", i % 10000);
    }
    rewind(f);
    struct tb_buf b = {0};
    assert_int_equal(tb_buf_puts(&b, ">"), 0);
    assert_int_equal(tb_buf_read_file(&b, f), 0);
    assert_int_equal(b.len, 1 + 200000);
    assert_memory_equal(b.data, ">00000001", 9);
    assert_memory_equal(b.data + b.len - 4, "9999", 4);
    assert_int_equal(b.data[b.len], 0);
    fclose(f);
    tb_buf_free(&b);
}

/* tb_buf_put_i64/u64 write what printf writes, at the edges of both ranges included. */
static void test_put_integers(void **state)
{
    (void)state;
    const int64_t is[] = {0,   1,         -1,         9,         10,        -10,          99,
                          100, 123456789, -987654321, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    const uint64_t us[] = {
        0, 7, 10, 1000000, UINT64_MAX, UINT64_MAX - 1, (uint64_t)INT64_MAX + 1};
    for (size_t i = 0; i < sizeof(is) / sizeof(is[0]); i++) {
        struct tb_buf b = {0};
        char want[32];
        snprintf(want, sizeof(want), "x%" PRId64, is[i]);
        assert_int_equal(tb_buf_puts(&b, "x"), 0);
        assert_int_equal(tb_buf_put_i64(&b, is[i]), 0);
        assert_string_equal((char *)b.data, want);
        assert_int_equal(b.len, strlen(want));
        tb_buf_free(&b);
    }
    for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
        struct tb_buf b = {0};
        char want[32];
        snprintf(want, sizeof(want), "%" PRIu64, us[i]);
        assert_int_equal(tb_buf_put_u64(&b, us[i]), 0);
        assert_string_equal((char *)b.data, want);
        assert_int_equal(b.len, strlen(want));
        tb_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grows),
        cmocka_unit_test(test_printf_puts_cp),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_put_integers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
