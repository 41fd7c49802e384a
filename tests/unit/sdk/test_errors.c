/*
 * test_errors.c - the SDK's tb_strerror (every TB_E* code has its own name) and the error
 * formatters (truncation, optional buffer, the returned code).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"

static void test_strerror(void **state)
{
    (void)state;
    static const int codes[] = {
        TB_OK,      TB_AGAIN,     TB_ENOENT,    TB_EIO,      TB_E2BIG,    TB_ENOMEM,
        TB_EBUSY,   TB_EEXIST,    TB_EINVAL,    TB_ERANGE,   TB_EPROTO,   TB_EMSGSIZE,
        TB_ENOTSUP, TB_ETIMEDOUT, TB_ECANCELED, TB_ENOROUTE, TB_EGONE,    TB_EABI,
        TB_ECONFIG, TB_EOVERLOAD, TB_EDRAINING, TB_EMODEL,   TB_ECONTEXT, TB_EINTERNAL,
    };
    size_t n = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < n; i++) {
        const char *name = tb_strerror(codes[i]);
        assert_non_null(name);
        assert_string_not_equal(name, "unknown error");
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(name, tb_strerror(codes[j]));
        }
    }
    assert_string_equal(tb_strerror(TB_ENOROUTE), "no route");
    assert_string_equal(tb_strerror(-424242), "unknown error");
}

static void test_formatters(void **state)
{
    (void)state;
    char err[16];
    tb_err_set(err, sizeof(err), "cannot open '%s'", "model.gguf");
    assert_string_equal(err, "cannot open 'mo"); /* truncated, terminated */
    tb_err_set(NULL, 0, "ignored %d", 1);        /* no buffer: nothing happens */
    memset(err, 'x', sizeof(err));
    tb_err_set(err, 0, "ignored");
    assert_int_equal(err[0], 'x');
    assert_int_equal(tb_err_fail(err, sizeof(err), TB_EMODEL, "bad %s", "dtype"), TB_EMODEL);
    assert_string_equal(err, "bad dtype");
    assert_int_equal(tb_err_fail(NULL, 0, TB_EINVAL, "x"), TB_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_formatters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
