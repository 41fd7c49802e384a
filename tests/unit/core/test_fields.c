/* Unit tests of typed config values: units, environment expansion, model names, suggestions and
 * the checks on plugins' field declarations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_fields.h"

static void test_bytes(void **state)
{
    (void)state;
    int64_t v;
    assert_true(tb_parse_bytes("512", &v) && v == 512);
    assert_true(tb_parse_bytes("64KiB", &v) && v == 65536);
    assert_true(tb_parse_bytes("8MiB", &v) && v == 8 << 20);
    assert_true(tb_parse_bytes("2GiB", &v) && v == (int64_t)2 << 30);
    assert_true(tb_parse_bytes("1GB", &v) && v == 1000000000);
    assert_true(tb_parse_bytes("1.5GiB", &v) && v == (int64_t)3 << 29);
    assert_false(tb_parse_bytes("1.5", &v));
    assert_false(tb_parse_bytes("-1", &v));
    assert_false(tb_parse_bytes("12XB", &v));
    assert_false(tb_parse_bytes("", &v));
    assert_false(tb_parse_bytes("99999999999TiB", &v));
}

static void test_seconds(void **state)
{
    (void)state;
    double v;
    assert_true(tb_parse_seconds("1.5", &v) && v == 1.5);
    assert_true(tb_parse_seconds("250ms", &v) && v == 0.25);
    assert_true(tb_parse_seconds("2s", &v) && v == 2);
    assert_true(tb_parse_seconds("1m", &v) && v == 60);
    assert_true(tb_parse_seconds("1h", &v) && v == 3600);
    assert_false(tb_parse_seconds("soon", &v));
    assert_false(tb_parse_seconds("3 days", &v));
}

static void test_env_expansion(void **state)
{
    (void)state;
    char err[256];
    char *out = NULL;
    setenv("TB_T_PORT", "8123", 1);
    unsetenv("TB_T_NONE");
    assert_true(tb_expand_env("port ${TB_T_PORT}", &out, err, sizeof(err)));
    assert_string_equal(out, "port 8123");
    free(out);
    assert_true(tb_expand_env("${TB_T_NONE:-8000}", &out, err, sizeof(err)));
    assert_string_equal(out, "8000");
    free(out);
    assert_true(tb_expand_env("$$HOME ${TB_T_PORT:-1}$", &out, err, sizeof(err)));
    assert_string_equal(out, "$HOME 8123$");
    free(out);
    assert_false(tb_expand_env("${TB_T_NONE}", &out, err, sizeof(err)));
    assert_non_null(strstr(err, "'TB_T_NONE' is not set"));
    assert_false(tb_expand_env("${TB_T_PORT", &out, err, sizeof(err)));
    assert_false(tb_expand_env("${A B}", &out, err, sizeof(err)));
    assert_null(out);
}

static void test_model_names(void **state)
{
    (void)state;
    char why[512], fix[512];
    assert_true(tb_model_name_check("tinystories", why, sizeof(why), fix, sizeof(fix)));
    assert_true(tb_model_name_check("meta-llama/Llama-3-8B", why, sizeof(why), fix, sizeof(fix)));
    assert_false(tb_model_name_check("/app/models/Qwen2-7B-Instruct/", why, sizeof(why), fix,
                                     sizeof(fix)));
    assert_non_null(strstr(fix, "'qwen2-7b-instruct'"));
    assert_false(tb_model_name_check("~/m", why, sizeof(why), fix, sizeof(fix)));
    assert_false(tb_model_name_check("a b", why, sizeof(why), fix, sizeof(fix)));
    assert_false(tb_model_name_check("", why, sizeof(why), fix, sizeof(fix)));
    char long_name[200];
    memset(long_name, 'a', 129);
    long_name[129] = 0;
    assert_false(tb_model_name_check(long_name, why, sizeof(why), fix, sizeof(fix)));
    long_name[128] = 0;
    assert_true(tb_model_name_check(long_name, why, sizeof(why), fix, sizeof(fix)));
}

static void test_closest(void **state)
{
    (void)state;
    const char *const keys[] = {"max_tokens", "temperature", "port", NULL};
    assert_string_equal(tb_closest("max_token", keys), "max_tokens");
    assert_string_equal(tb_closest("temprature", keys), "temperature");
    assert_string_equal(tb_closest("prot", keys), "port"); /* a transposition is one step */
    assert_null(tb_closest("zzz", keys));
    assert_null(tb_closest("x", NULL));
}

struct cfg {
    int64_t n;
    const char *s;
};

static void test_declaration_checks(void **state)
{
    (void)state;
    char err[256];
    struct tb_config_field ok = {.key = "n",
                                 .type = TB_CFG_INT,
                                 .offset = offsetof(struct cfg, n)};
    assert_true(tb_field_check_decl(&ok, sizeof(struct cfg), err, sizeof(err)));
    struct tb_config_field bad_key = ok;
    bad_key.key = "Bad-Key";
    assert_false(tb_field_check_decl(&bad_key, sizeof(struct cfg), err, sizeof(err)));
    struct tb_config_field outside = ok;
    outside.offset = sizeof(struct cfg);
    assert_false(tb_field_check_decl(&outside, sizeof(struct cfg), err, sizeof(err)));
    assert_non_null(strstr(err, "outside"));
    struct tb_config_field no_choices = {.key = "e", .type = TB_CFG_ENUM, .offset = 0};
    assert_false(tb_field_check_decl(&no_choices, sizeof(struct cfg), err, sizeof(err)));
    struct tb_config_field bounds = ok;
    bounds.has_bounds = true;
    bounds.min = 5;
    bounds.max = 1;
    assert_false(tb_field_check_decl(&bounds, sizeof(struct cfg), err, sizeof(err)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes),         cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_env_expansion), cmocka_unit_test(test_model_names),
        cmocka_unit_test(test_closest),       cmocka_unit_test(test_declaration_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
