/* Unit tests of tb_oai_fields: the generic walker of a request field table, on a small table of
 * its own (every kind of rule once: types, bounds, accepted values, defaults per endpoint,
 * required, only-empty, only-one-value, a field that needs another, array items and length,
 * nested objects, decoder functions, and unknown fields). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/http/tb_oai_fields.h" /* plugin-private header */

struct target {
    int tag; /* never a presence flag: offset 0 */
    bool flag;
    int64_t count;
    bool has_count;
    double ratio;
    bool has_ratio;
    const char *kind;
    bool on;
    int64_t level;
    bool has_level;
    int fn_calls;
    bool fn_saw_absent;
    const char *inner;
};

static int s_fn(const struct tb_oai_field *f, json_t *v, void *base, const char *param, void *ctx,
                struct tb_oai_error *e)
{
    (void)f;
    struct target *t = base;
    assert_ptr_equal(ctx, base);
    t->fn_calls++;
    t->fn_saw_absent = v == NULL;
    if (v && json_array_size(v) == 3) {
        tb_oai_error_invalid(e, param, "three is refused by the fn");
        return -1;
    }
    return 0;
}

static const char *const s_kinds[] = {"a", "b", NULL};
static const char *const s_modes[] = {"plain", NULL};

static const struct tb_oai_field s_inner[] = {
    {.name = "name",
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_STR,
     .flags = TB_OAI_F_REQUIRED,
     .off = offsetof(struct target, inner)},
    {.name = "mode", .types = TB_OAI_J_STR, .flags = TB_OAI_F_UNSUPPORTED, .one_of = s_modes},
    {.name = NULL},
};

#define A1 TB_OAI_FOR(TB_OAI_CHAT)
#define A2 TB_OAI_FOR(TB_OAI_COMPLETIONS)

static const struct tb_oai_field s_table[] = {
    {.name = "flag",
     .types = TB_OAI_J_BOOL,
     .keep = TB_OAI_KEEP_BOOL,
     .off = offsetof(struct target, flag)},
    {.name = "count",
     .types = TB_OAI_J_INT,
     .keep = TB_OAI_KEEP_INT,
     .ilo = 1,
     .ihi = 10,
     .off = offsetof(struct target, count),
     .has_off = offsetof(struct target, has_count),
     .dflt_apis = A2,
     .dflt = 7},
    {.name = "ratio",
     .types = TB_OAI_J_NUM,
     .keep = TB_OAI_KEEP_NUM,
     .lo = 0,
     .hi = 1,
     .flags = TB_OAI_F_LO_OPEN,
     .off = offsetof(struct target, ratio),
     .has_off = offsetof(struct target, has_ratio)},
    {.name = "kind",
     .apis = A1,
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_STR,
     .flags = TB_OAI_F_REQUIRED | TB_OAI_F_NONEMPTY,
     .one_of = s_kinds,
     .off = offsetof(struct target, kind)},
    {.name = "on",
     .types = TB_OAI_J_BOOL,
     .keep = TB_OAI_KEEP_BOOL,
     .off = offsetof(struct target, on)},
    {.name = "level",
     .types = TB_OAI_J_INT,
     .keep = TB_OAI_KEEP_INT,
     .ilo = 0,
     .ihi = 5,
     .needs = "on",
     .needs_off = offsetof(struct target, on),
     .off = offsetof(struct target, level),
     .has_off = offsetof(struct target, has_level)},
    {.name = "level_max",
     .types = TB_OAI_J_INT,
     .keep = TB_OAI_KEEP_INT,
     .flags = TB_OAI_F_IF_UNSET,
     .off = offsetof(struct target, level),
     .has_off = offsetof(struct target, has_level)},
    {.name = "copies",
     .types = TB_OAI_J_INT,
     .ilo = 1,
     .ihi = 9,
     .flags = TB_OAI_F_ONLY,
     .only = 1},
    {.name = "bias", .types = TB_OAI_J_OBJ, .flags = TB_OAI_F_EMPTY_ONLY},
    {.name = "words",
     .types = TB_OAI_J_STR | TB_OAI_J_ARR,
     .items = TB_OAI_J_STR,
     .ilo = 1,
     .ihi = 2},
    {.name = "list",
     .types = TB_OAI_J_ARR,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_fn,
     .flags = TB_OAI_F_FN_ABSENT},
    {.name = "inner", .types = TB_OAI_J_OBJ, .sub = s_inner},
    {.name = NULL},
};

/* The last walked document: kept strings point into it. */
static json_t *s_doc;

/* Walks `json` for `api` into *t; returns the walker's result. */
static int s_walk(tb_oai_api_t api, const char *json, struct target *t, struct tb_oai_error *e)
{
    json_error_t je;
    json_decref(s_doc);
    s_doc = json_loads(json, 0, &je);
    assert_non_null(s_doc);
    memset(t, 0, sizeof(*t));
    memset(e, 0, sizeof(*e));
    return tb_oai_fields_walk(s_table, api, s_doc, t, "", t, e);
}

static int s_teardown(void **state)
{
    (void)state;
    json_decref(s_doc);
    s_doc = NULL;
    return 0;
}

static void s_bad(tb_oai_api_t api, const char *json, const char *param, const char *code,
                  const char *needle)
{
    struct target t;
    struct tb_oai_error e;
    int rc = s_walk(api, json, &t, &e);
    if (rc != -1 || strcmp(e.param, param) != 0 || strcmp(e.code, code) != 0 ||
        (needle && !strstr(e.message, needle))) {
        print_error("%s: rc %d, param '%s', code %s, message '%s'\n", json, rc, e.param, e.code,
                    e.message);
        fail();
    }
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "invalid_request_error");
}

static void test_keeps_values(void **state)
{
    (void)state;
    struct target t;
    struct tb_oai_error e;
    assert_int_equal(s_walk(TB_OAI_CHAT,
                            "{\"flag\":true,\"count\":4.0,\"ratio\":0.5,\"kind\":\"b\","
                            "\"on\":true,\"level\":3,\"level_max\":5,\"words\":[\"x\"],"
                            "\"list\":[1],\"inner\":{\"name\":\"n\",\"mode\":\"plain\"},"
                            "\"unknown\":{\"anything\":[1]}}",
                            &t, &e),
                     0);
    assert_true(t.flag);
    assert_int_equal(t.count, 4); /* an integral real is an integer */
    assert_true(t.has_count);
    assert_true(t.ratio == 0.5 && t.has_ratio);
    assert_string_equal(t.kind, "b");
    assert_int_equal(t.level, 3); /* level_max skipped: level came first */
    assert_true(t.has_level);
    assert_int_equal(t.fn_calls, 1);
    assert_false(t.fn_saw_absent);
    assert_string_equal(t.inner, "n");
    assert_int_equal(t.tag, 0); /* nothing wrote offset 0 */
}

static void test_defaults_and_absence(void **state)
{
    (void)state;
    struct target t;
    struct tb_oai_error e;
    /* null is absent; the default applies to its endpoints only; absent fn fields are asked */
    assert_int_equal(s_walk(TB_OAI_COMPLETIONS, "{\"count\":null,\"ratio\":null}", &t, &e), 0);
    assert_int_equal(t.count, 7);
    assert_true(t.has_count);
    assert_false(t.has_ratio);
    assert_null(t.kind); /* required, but only for the other endpoint */
    assert_int_equal(t.fn_calls, 1);
    assert_true(t.fn_saw_absent);
    assert_int_equal(s_walk(TB_OAI_CHAT, "{\"kind\":\"a\"}", &t, &e), 0);
    assert_false(t.has_count);
    assert_int_equal(t.count, 0);
    /* level_max alone is taken */
    assert_int_equal(s_walk(TB_OAI_CHAT, "{\"kind\":\"a\",\"level_max\":9}", &t, &e), 0);
    assert_int_equal(t.level, 9);
    assert_true(t.has_level);
}

static void test_errors(void **state)
{
    (void)state;
    s_bad(TB_OAI_CHAT, "{}", "kind", "invalid_value", "required");
    s_bad(TB_OAI_CHAT, "{\"kind\":null}", "kind", "invalid_value", "required");
    s_bad(TB_OAI_CHAT, "{\"kind\":\"\"}", "kind", "invalid_value", "non-empty");
    s_bad(TB_OAI_CHAT, "{\"kind\":\"z\"}", "kind", "invalid_value", "'a', 'b'");
    s_bad(TB_OAI_CHAT, "{\"kind\":1}", "kind", "invalid_value",
          "must be a string, not an integer");
    s_bad(TB_OAI_COMPLETIONS, "{\"flag\":1}", "flag", "invalid_value", "boolean");
    s_bad(TB_OAI_COMPLETIONS, "{\"count\":0}", "count", "invalid_value", "between 1 and 10");
    s_bad(TB_OAI_COMPLETIONS, "{\"count\":11}", "count", "invalid_value", NULL);
    s_bad(TB_OAI_COMPLETIONS, "{\"count\":1.5}", "count", "invalid_value", "fractional");
    s_bad(TB_OAI_COMPLETIONS, "{\"count\":\"3\"}", "count", "invalid_value", "an integer");
    s_bad(TB_OAI_COMPLETIONS, "{\"ratio\":0}", "ratio", "invalid_value", "> 0"); /* open */
    s_bad(TB_OAI_COMPLETIONS, "{\"ratio\":1.5}", "ratio", "invalid_value", "1.5");
    s_bad(TB_OAI_COMPLETIONS, "{\"ratio\":true}", "ratio", "invalid_value", "a number");
    s_bad(TB_OAI_COMPLETIONS, "{\"level\":1}", "level", "invalid_value", "'on' is true");
    s_bad(TB_OAI_COMPLETIONS, "{\"on\":false,\"level\":1}", "level", "invalid_value", NULL);
    s_bad(TB_OAI_COMPLETIONS, "{\"on\":true,\"level\":6}", "level", "invalid_value", NULL);
    s_bad(TB_OAI_COMPLETIONS, "{\"copies\":2}", "copies", "unsupported_value", "copies=1");
    s_bad(TB_OAI_COMPLETIONS, "{\"copies\":10}", "copies", "invalid_value", NULL);
    s_bad(TB_OAI_COMPLETIONS, "{\"bias\":{\"1\":2}}", "bias", "unsupported_parameter",
          "not supported");
    s_bad(TB_OAI_COMPLETIONS, "{\"words\":[]}", "words", "invalid_value", "at least one");
    s_bad(TB_OAI_COMPLETIONS, "{\"words\":[\"a\",\"b\",\"c\"]}", "words", "invalid_value",
          "at most 2");
    s_bad(TB_OAI_COMPLETIONS, "{\"words\":[\"a\",3]}", "words[1]", "invalid_value",
          "must be a string");
    s_bad(TB_OAI_COMPLETIONS, "{\"words\":{}}", "words", "invalid_value",
          "a string or an array, not an object");
    s_bad(TB_OAI_COMPLETIONS, "{\"list\":[1,2,3]}", "list", "invalid_value", "three");
    s_bad(TB_OAI_COMPLETIONS, "{\"inner\":{}}", "inner.name", "invalid_value", "required");
    s_bad(TB_OAI_COMPLETIONS, "{\"inner\":{\"name\":\"n\",\"mode\":\"fancy\"}}", "inner.mode",
          "unsupported_value", "fancy");
    /* the first error in table order is the answer */
    s_bad(TB_OAI_COMPLETIONS, "{\"inner\":{},\"flag\":2}", "flag", "invalid_value", NULL);
}

static void test_paths(void **state)
{
    (void)state;
    char b[16];
    assert_string_equal(tb_oai_path_index(b, sizeof(b), "stop", 0), "stop[0]");
    assert_string_equal(tb_oai_path_index(b, sizeof(b), "m", 1234567), "m[1234567]");
    assert_string_equal(tb_oai_path_index(b, sizeof(b), "messages", 12345), "messages[12345]");
    assert_string_equal(tb_oai_path_index(b, sizeof(b), "messages", 123456), "messages");
    /* a nested path is built from the walk's prefix; a very long one is cut, never overrun */
    char prefix[200];
    memset(prefix, 'p', sizeof(prefix) - 1);
    prefix[sizeof(prefix) - 1] = 0;
    json_error_t je;
    json_t *o = json_loads("{\"kind\":7}", 0, &je);
    struct target t;
    struct tb_oai_error e;
    memset(&t, 0, sizeof(t));
    assert_int_equal(tb_oai_fields_walk(s_table, TB_OAI_CHAT, o, &t, "a.b[3]", &t, &e), -1);
    assert_string_equal(e.param, "a.b[3].kind");
    assert_int_equal(tb_oai_fields_walk(s_table, TB_OAI_CHAT, o, &t, prefix, &t, &e), -1);
    assert_int_equal(strlen(e.param), sizeof(e.param) - 1);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keeps_values),
        cmocka_unit_test(test_defaults_and_absence),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, s_teardown);
}
