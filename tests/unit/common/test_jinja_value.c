/*
 * test_jinja_value.c - values of the Jinja interpreter: Python's float repr, UTF-8 helpers,
 * json.dumps formatting, dicts past their hash threshold, and the bounds every value obeys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_jinja_value.h"

static void s_rt(tb_jrt_t *rt, char *err, size_t err_len)
{
    memset(rt, 0, sizeof(*rt));
    tb_jinja_limits_default(&rt->limits);
    rt->err = err;
    rt->err_len = err_len;
    rt->line = 1;
    rt->col = 1;
}

static void test_float_repr_matches_python(void **state)
{
    (void)state;
    /* expected strings are Python 3's repr() of the same doubles */
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {1.0, "1.0"},
        {0.1, "0.1"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {123456789012345678.0, "1.2345678901234568e+17"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {1.5e-7, "1.5e-07"},
        {2.5, "2.5"},
        {-3.25, "-3.25"},
        {1.0 / 3, "0.3333333333333333"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {1e100, "1e+100"},
        {12345.678, "12345.678"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[64];
        tb_jv_float_repr(cases[i].v, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].want);
    }
}

static void test_utf8(void **state)
{
    (void)state;
    assert_int_equal(tb_utf8_valid_prefix("abc", 3), 3);
    assert_int_equal(tb_utf8_valid_prefix("a\xc3\xa9", 3), 3);
    assert_int_equal(tb_utf8_valid_prefix("a\xc3", 2), 1);            /* truncated */
    assert_int_equal(tb_utf8_valid_prefix("\xc0\xaf", 2), 0);         /* overlong */
    assert_int_equal(tb_utf8_valid_prefix("\xed\xa0\x80", 3), 0);     /* surrogate */
    assert_int_equal(tb_utf8_valid_prefix("\xf4\x90\x80\x80", 4), 0); /* > U+10FFFF */
    assert_int_equal(tb_utf8_valid_prefix("\xf0\x9f\x98\x80", 4), 4); /* emoji */
    char out[4];
    assert_int_equal(tb_utf8_encode(0x1F600, out), 4);
    assert_int_equal(tb_utf8_encode(0xD800, out), 0);
    size_t i = 0;
    assert_int_equal(tb_utf8_next("\xe2\x82\xac", 3, &i), 0x20AC);
    assert_int_equal(i, 3);
    assert_int_equal(tb_utf8_offset("a\xc3\xa9z", 4, 2), 3);
    assert_true(tb_py_isspace(0x3000) && tb_py_isspace(0x85) && tb_py_isspace(0x1F));
    assert_false(tb_py_isspace(0x200B) || tb_py_isspace('a'));
}

static void test_json_writer(void **state)
{
    (void)state;
    char err[256];
    tb_jrt_t rt;
    s_rt(&rt, err, sizeof(err));
    tb_jv_t d = tb_jv_dict_new(&rt, 0);
    assert_true(
        tb_jv_dict_set(&rt, d.u.d, "s", 1,
                       tb_jv_str_new(&rt, "\x01\x1f\"\\\t/\xc3\xa9\xf0\x9f\x98\x80", 12)));
    assert_true(tb_jv_dict_set(&rt, d.u.d, "f", 1, tb_jv_float(1e16)));
    assert_true(tb_jv_dict_set(&rt, d.u.d, "e", 1, tb_jv_list_new(&rt, 0)));
    tb_jbuf_t b;
    tb_jbuf_init(&b, &rt);
    assert_true(tb_jv_write_json(&b, d, -1, NULL, NULL, false, false));
    assert_string_equal(b.data, "{\"s\": \"\\u0001\\u001f\\\"\\\\\\t/\xc3\xa9\xf0\x9f\x98\x80\", "
                                "\"f\": 1e+16, \"e\": []}");
    tb_jbuf_release(&b);
    tb_jbuf_init(&b, &rt);
    assert_true(tb_jv_write_json(&b, d, 1, NULL, NULL, true, true));
    assert_string_equal(b.data, "{\n \"e\": [],\n \"f\": 1e+16,\n \"s\": "
                                "\"\\u0001\\u001f\\\"\\\\\\t/\\u00e9\\ud83d\\ude00\"\n}");
    tb_jbuf_release(&b);
    /* a namespace is not JSON */
    tb_jv_t ns = tb_jv_dict_new(&rt, 0);
    ns.u.d->ns = true;
    tb_jbuf_init(&b, &rt);
    assert_false(tb_jv_write_json(&b, ns, -1, NULL, NULL, false, false));
    assert_non_null(strstr(err, "Namespace is not JSON serializable"));
    tb_jbuf_release(&b);
    tb_jv_unref(ns);
    tb_jv_unref(d);
}

static void test_dict_index_and_equality(void **state)
{
    (void)state;
    char err[256];
    tb_jrt_t rt;
    s_rt(&rt, err, sizeof(err));
    tb_jv_t d = tb_jv_dict_new(&rt, 0);
    char key[16];
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(tb_jv_dict_set(&rt, d.u.d, key, strlen(key), tb_jv_int(i)));
    }
    assert_true(tb_jv_dict_set(&rt, d.u.d, "k7", 2, tb_jv_int(-7))); /* replace */
    assert_int_equal(d.u.d->n, 500);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        tb_jv_t *v = tb_jv_dict_get(d.u.d, key, strlen(key));
        assert_non_null(v);
        assert_int_equal(v->u.i, i == 7 ? -7 : i);
    }
    assert_null(tb_jv_dict_get(d.u.d, "nope", 4));
    assert_string_equal(d.u.d->keys[0]->data, "k0"); /* insertion order */
    assert_true(tb_jv_equal(tb_jv_int(1), tb_jv_float(1.0)));
    assert_true(tb_jv_equal(tb_jv_bool(true), tb_jv_int(1)));
    assert_false(tb_jv_equal(tb_jv_none(), tb_jv_int(0)));
    assert_true(tb_jv_truthy(d) && !tb_jv_truthy(tb_jv_float(0.0)));
    tb_jv_unref(d);
}

static void test_bounds(void **state)
{
    (void)state;
    char err[256];
    tb_jrt_t rt;
    s_rt(&rt, err, sizeof(err));
    rt.limits.max_output_bytes = 8;
    tb_jv_t s = tb_jv_str_alloc(&rt, 9);
    assert_true(tb_jv_is_err(s));
    assert_int_equal(rt.code, TB_E2BIG);
    assert_non_null(strstr(err, "1:1: string of 9 bytes"));

    s_rt(&rt, err, sizeof(err));
    rt.limits.max_alloc_bytes = 1000;
    tb_jv_t l = tb_jv_list_new(&rt, 0);
    bool ok = true;
    for (int i = 0; ok && i < 1000; i++) {
        ok = tb_jv_list_push(&rt, l.u.l, tb_jv_int(i));
    }
    assert_false(ok);
    assert_int_equal(rt.code, TB_ERANGE);
    tb_jv_unref(l);

    /* nesting is capped */
    s_rt(&rt, err, sizeof(err));
    tb_jv_t v = tb_jv_list_new(&rt, 0);
    int depth = 1;
    for (;;) {
        tb_jv_t outer = tb_jv_list_new(&rt, 1);
        if (!tb_jv_list_push(&rt, outer.u.l, v)) {
            tb_jv_unref(outer);
            break;
        }
        v = outer;
        depth++;
    }
    assert_true(depth < 300);
    assert_non_null(strstr(err, "nested deeper"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_repr_matches_python),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_json_writer),
        cmocka_unit_test(test_dict_index_and_equality),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
