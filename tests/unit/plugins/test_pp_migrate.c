/* Unit tests of tb_pp_migrate: only broken streams migrate, at most migration_limit times; the
 * next attempt's tokens are the prompt plus every id passed on so far, with the count of those
 * ids (resumed_tokens); instances that broke are remembered for the router to avoid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_pp_migrate.h"

static const int32_t g_prompt[] = {1, 2, 3};

static void test_before_any_break(void **state)
{
    (void)state;
    struct tb_pp_migrate m = {0};
    size_t n = 0;
    assert_ptr_equal(tb_pp_migrate_tokens(&m, g_prompt, 3, &n), g_prompt);
    assert_int_equal(n, 3);
    assert_int_equal(tb_pp_migrate_resumed(&m), 0);
    tb_pp_migrate_release(&m);
    tb_pp_migrate_release(&m); /* twice is fine */
}

static void test_only_broken_streams_migrate(void **state)
{
    (void)state;
    struct tb_pp_migrate m = {0};
    assert_true(tb_pp_migrate_is_break(TB_EGONE));
    assert_true(tb_pp_migrate_is_break(TB_EDRAINING));
    int not_breaks[] = {TB_ETIMEDOUT, TB_ECANCELED, TB_EINVAL,
                        TB_ECONTEXT,  TB_EOVERLOAD, TB_EINTERNAL};
    for (size_t i = 0; i < sizeof(not_breaks) / sizeof(not_breaks[0]); i++) {
        assert_int_equal(tb_pp_migrate_on_break(&m, not_breaks[i], 3, g_prompt, 3, 1),
                         TB_PP_MIGRATE_NO);
    }
    /* migration_limit 0: the old behaviour, the error goes to the caller */
    assert_int_equal(tb_pp_migrate_on_break(&m, TB_EGONE, 0, g_prompt, 3, 1), TB_PP_MIGRATE_NO);
    assert_int_equal(m.migrations, 0);
    tb_pp_migrate_release(&m);
}

static void test_resume_tokens_and_limit(void **state)
{
    (void)state;
    struct tb_pp_migrate m = {0};
    m.instance = 0xaa;
    int32_t a[] = {10, 11}, b[] = {12};
    assert_int_equal(tb_pp_migrate_note(&m, a, 2), 0);
    assert_int_equal(tb_pp_migrate_note(&m, b, 1), 0);
    assert_int_equal(tb_pp_migrate_note(&m, NULL, 0), 0);
    assert_int_equal(tb_pp_migrate_on_break(&m, TB_EGONE, 2, g_prompt, 3, 100), TB_PP_MIGRATE_GO);
    size_t n = 0;
    const int32_t *t = tb_pp_migrate_tokens(&m, g_prompt, 3, &n);
    const int32_t want[] = {1, 2, 3, 10, 11, 12};
    assert_int_equal(n, 6);
    assert_memory_equal(t, want, sizeof(want));
    assert_int_equal(tb_pp_migrate_resumed(&m), 3);
    assert_int_equal(m.n_failed, 1);
    assert_int_equal(m.failed[0], 0xaa);
    assert_int_equal(m.broke_ns, 100);
    assert_int_equal(m.instance, 0);
    /* the next instance streams more; what it sent counts too, the resumed count does not move
     * until the next break */
    m.instance = 0xbb;
    int32_t c[] = {13, 14};
    assert_int_equal(tb_pp_migrate_note(&m, c, 2), 0);
    assert_int_equal(tb_pp_migrate_resumed(&m), 3);
    assert_int_equal(tb_pp_migrate_on_break(&m, TB_EDRAINING, 2, g_prompt, 3, 200),
                     TB_PP_MIGRATE_GO);
    t = tb_pp_migrate_tokens(&m, g_prompt, 3, &n);
    assert_int_equal(n, 8);
    assert_int_equal(t[7], 14);
    assert_int_equal(tb_pp_migrate_resumed(&m), 5);
    assert_int_equal(m.n_failed, 2);
    assert_int_equal(m.failed[1], 0xbb);
    /* the limit is used up */
    assert_int_equal(tb_pp_migrate_on_break(&m, TB_EGONE, 2, g_prompt, 3, 300),
                     TB_PP_MIGRATE_EXHAUSTED);
    assert_int_equal(m.migrations, 2);
    tb_pp_migrate_release(&m);
    assert_null(m.generated);
    assert_int_equal(m.migrations, 0);
}

static void test_many_tokens(void **state)
{
    (void)state;
    struct tb_pp_migrate m = {0};
    for (int32_t i = 0; i < 5000; i++) {
        assert_int_equal(tb_pp_migrate_note(&m, &i, 1), 0);
    }
    assert_int_equal(tb_pp_migrate_on_break(&m, TB_EGONE, 1, g_prompt, 3, 1), TB_PP_MIGRATE_GO);
    size_t n = 0;
    const int32_t *t = tb_pp_migrate_tokens(&m, g_prompt, 3, &n);
    assert_int_equal(n, 5003);
    assert_int_equal(t[5002], 4999);
    tb_pp_migrate_release(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_before_any_break),
        cmocka_unit_test(test_only_broken_streams_migrate),
        cmocka_unit_test(test_resume_tokens_and_limit),
        cmocka_unit_test(test_many_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
