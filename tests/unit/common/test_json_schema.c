/*
 * test_json_schema.c - tb_json_schema: every supported keyword checked on JSON texts the
 * resulting grammar accepts and refuses, json_object and tool-call grammars, and every
 * unsupported keyword (or format, or combination) refused with its name and path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "tb_errors.h"
#include "tb_grammar.h"
#include "tb_grammar_cache.h"
#include "tb_grammar_matcher.h"
#include "tb_json_schema.h"
#include "tb_token_trie.h"

#define EOS 256

/* One token per byte, and EOS. */
static tb_token_trie_t *s_bytes_trie(void)
{
    static char bytes[256];
    const char *b[EOS + 1];
    size_t lens[EOS + 1];
    for (int i = 0; i < 256; i++) {
        bytes[i] = (char)i;
        b[i] = &bytes[i];
        lens[i] = 1;
    }
    b[EOS] = NULL;
    lens[EOS] = 0;
    int32_t eos = EOS;
    tb_token_trie_t *t = NULL;
    assert_int_equal(tb_token_trie_new(EOS + 1, b, lens, &eos, 1, &t), 0);
    return t;
}

/* Whether the GBNF accepts each text of texts[] (NULL-terminated) as a whole. */
static void s_check(const char *gbnf, const char *const *good, const char *const *bad)
{
    char err[256] = "";
    tb_grammar_t *g = NULL;
    if (tb_grammar_parse_gbnf(gbnf, strlen(gbnf), &g, err, sizeof(err)) != 0) {
        fail_msg("%s\n%s", err, gbnf);
    }
    tb_token_trie_t *t = s_bytes_trie();
    tb_grammar_cache_t *c = NULL;
    assert_int_equal(tb_grammar_cache_new(g, t, &c), 0);
    for (int pass = 0; pass < 2; pass++) {
        const char *const *list = pass == 0 ? good : bad;
        for (size_t i = 0; list && list[i]; i++) {
            tb_grammar_matcher_t *m = NULL;
            assert_int_equal(tb_grammar_matcher_new(c, &m), 0);
            bool ok = true;
            for (size_t k = 0; list[i][k] && ok; k++) {
                ok = tb_grammar_matcher_accept(m, (uint8_t)list[i][k]) == 0;
            }
            ok = ok && tb_grammar_matcher_accept(m, EOS) == 0;
            if (ok != (pass == 0)) {
                fail_msg("%s %s\n%s", list[i], pass == 0 ? "refused" : "accepted", gbnf);
            }
            tb_grammar_matcher_destroy(&m);
        }
    }
    tb_grammar_cache_destroy(&c);
    tb_token_trie_destroy(&t);
    tb_grammar_destroy(&g);
}

static void s_schema(const char *schema, const char *const *good, const char *const *bad)
{
    json_error_t je;
    json_t *s = json_loads(schema, 0, &je);
    if (!s) {
        fail_msg("bad test schema: %s", je.text);
    }
    char err[256] = "", *gbnf = NULL;
    size_t len = 0;
    if (tb_json_schema_to_gbnf(s, &gbnf, &len, err, sizeof(err)) != 0) {
        fail_msg("schema refused: %s", err);
    }
    assert_int_equal(strlen(gbnf), len);
    s_check(gbnf, good, bad);
    free(gbnf);
    json_decref(s);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_scalars(void **state)
{
    (void)state;
    s_schema("{\"type\":\"integer\"}", L("0", "-12", "1234567890123456"),
             L("01", "1.5", "+1", "", "\"1\"", "12345678901234567"));
    s_schema("{\"type\":\"number\"}", L("0", "-1.25", "3e10", "2.5E-3"),
             L(".5", "1.", "1e", "-"));
    s_schema("{\"type\":\"boolean\"}", L("true", "false"), L("True", "1", "null"));
    s_schema("{\"type\":\"null\"}", L("null"), L("nul", "0"));
    s_schema("{\"type\":\"string\"}",
             L("\"\"", "\"a b\"", "\"\\\"\\\\\\n\\u00e9\"", "\"\xc3\xa9\""),
             L("\"\n\"", "\"\\x\"", "\"a", "a", "\"\xc3\""));
    s_schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
             L("\"ab\"", "\"\xc3\xa9\xc3\xa9\xc3\xa9\"", "\"\\n\\t\""), L("\"a\"", "\"abcd\""));
    s_schema("{\"type\":[\"string\",\"null\"]}", L("null", "\"x\""), L("1"));
}

static void test_formats(void **state)
{
    (void)state;
    s_schema("{\"type\":\"string\",\"format\":\"date\"}",
             L("\"2024-02-28\"", "\"1999-12-31\"", "\"2024-04-30\""),
             L("\"2024-02-30\"", "\"2024-04-31\"", "\"0000-01-01\"", "\"2024-13-01\"",
               "\"2024-1-01\""));
    s_schema("{\"format\":\"time\"}", L("\"23:59:59Z\"", "\"00:00:00.123+05:30\""),
             L("\"24:00:00Z\"", "\"12:00:00\""));
    s_schema("{\"type\":\"string\",\"format\":\"date-time\"}", L("\"2024-01-05T10:20:30Z\""),
             L("\"2024-01-05 10:20:30Z\""));
    s_schema("{\"type\":\"string\",\"format\":\"uuid\"}",
             L("\"123e4567-e89b-12d3-a456-426614174000\""),
             L("\"123e4567e89b12d3a456426614174000\""));
    s_schema("{\"type\":\"string\",\"format\":\"ipv4\"}", L("\"192.168.0.1\"", "\"0.0.0.0\""),
             L("\"256.1.1.1\"", "\"01.1.1.1\""));
}

static void test_enum_const(void **state)
{
    (void)state;
    s_schema("{\"enum\":[\"a\",1,null,{\"k\":[true]}]}",
             L("\"a\"", "1", "null", "{\"k\":[true]}"), L("\"b\"", "2", "{}"));
    s_schema("{\"const\":\"x\\\"y\"}", L("\"x\\\"y\""), L("\"x\"", "\"xy\""));
    s_schema("{\"type\":\"string\",\"enum\":[\"a\",1]}", L("\"a\""), L("1"));
}

static void test_objects(void **state)
{
    (void)state;
    const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                    "\"b\":{\"type\":\"string\"},\"c\":{\"type\":\"boolean\"}},"
                    "\"required\":[\"b\"],\"additionalProperties\":false}";
    s_schema(s,
             L("{\"b\":\"x\"}", "{\"a\":1,\"b\":\"x\"}",
               "{ \"a\" : 1 , \"b\" : \"\" , \"c\":true }", "{\"b\":\"x\",\"c\":false}"),
             L("{}", "{\"a\":1}", "{\"b\":\"x\",\"a\":1}", "{\"b\":\"x\",}",
               "{\"b\":\"x\",\"d\":1}"));
    s_schema(
        "{\"properties\":{\"x\":{\"properties\":{\"y\":{\"const\":1}},\"required\":[\"y\"]}},"
        "\"required\":[\"x\"]}",
        L("{\"x\":{\"y\":1}}"), L("{\"x\":{}}", "{\"x\":{\"y\":2}}"));
    /* no properties: a map, of any values or of the additionalProperties schema */
    s_schema("{\"type\":\"object\"}", L("{}", "{\"k\":[1,{\"z\":null}],\"j\":\"v\"}"), L("[]"));
    s_schema("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}",
             L("{}", "{\"k\":1,\"j\":2}"), L("{\"k\":\"v\"}"));
    s_schema("{\"type\":\"object\",\"additionalProperties\":false}", L("{}"), L("{\"k\":1}"));
}

static void test_arrays_anyof_refs(void **state)
{
    (void)state;
    s_schema(
        "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":3}",
        L("[1]", "[1, 2,3]"), L("[]", "[1,2,3,4]", "[1,]", "[\"a\"]"));
    s_schema("{\"type\":\"array\",\"maxItems\":0}", L("[]"), L("[1]"));
    s_schema("{\"type\":\"array\"}", L("[]", "[1,\"a\",[null]]"), L("[,]"));
    s_schema(
        "{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"array\",\"items\":{\"const\":\"x\"}}]}",
        L("1", "[\"x\",\"x\"]"), L("[1]", "\"x\""));
    s_schema(
        "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
        "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},"
        "\"required\":[\"v\",\"kids\"]}},\"$ref\":\"#/$defs/node\"}",
        L("{\"v\":1,\"kids\":[]}", "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]}]}"),
        L("{\"v\":1,\"kids\":[{}]}"));
    s_schema("{\"title\":\"t\",\"description\":\"d\",\"type\":\"integer\",\"default\":1}", L("1"),
             L("\"1\""));
}

static void test_object_and_tools(void **state)
{
    (void)state;
    char *gbnf = NULL;
    size_t len = 0;
    assert_int_equal(tb_json_schema_object_gbnf(&gbnf, &len), 0);
    s_check(gbnf, L("{}", "{\"a\":{\"b\":[1,2.5,-3e2,true,false,null,\"\\u0041\"]}}"),
            L("[]", "1", "\"s\"", "{\"a\"}", "{\"a\":1,}"));
    free(gbnf);
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                               "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":"
                               "{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
                               "{\"name\":\"now\"}]",
                               0, NULL);
    char err[256] = "";
    assert_int_equal(tb_json_schema_tools_gbnf(tools, &gbnf, &len, err, sizeof(err)), 0);
    s_check(gbnf,
            L("{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}",
              "{\"name\": \"now\", \"arguments\": {}}"),
            L("{\"name\":\"get_weather\",\"arguments\":{}}",
              "{\"name\":\"other\",\"arguments\":{}}", "{\"arguments\":{},\"name\":\"now\"}"));
    free(gbnf);
    json_decref(tools);
}

/* Each unsupported construct: TB_ENOTSUP (or TB_EINVAL) and a message naming it. */
static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *schema, *msg;
        int rc;
    } cases[] = {
        {"{\"type\":\"string\",\"pattern\":\"a+\"}",
         "unsupported JSON schema keyword 'pattern' at '/'", TB_ENOTSUP},
        {"{\"type\":\"integer\",\"minimum\":0}", "keyword 'minimum'", TB_ENOTSUP},
        {"{\"type\":\"integer\",\"maximum\":9}", "keyword 'maximum'", TB_ENOTSUP},
        {"{\"type\":\"number\",\"exclusiveMinimum\":0}", "keyword 'exclusiveMinimum'",
         TB_ENOTSUP},
        {"{\"type\":\"number\",\"exclusiveMaximum\":0}", "keyword 'exclusiveMaximum'",
         TB_ENOTSUP},
        {"{\"type\":\"number\",\"multipleOf\":2}", "keyword 'multipleOf'", TB_ENOTSUP},
        {"{\"oneOf\":[{\"type\":\"null\"}]}", "keyword 'oneOf'", TB_ENOTSUP},
        {"{\"allOf\":[{\"type\":\"null\"}]}", "keyword 'allOf'", TB_ENOTSUP},
        {"{\"not\":{\"type\":\"null\"}}", "keyword 'not'", TB_ENOTSUP},
        {"{\"if\":{},\"then\":{}}", "keyword 'if'", TB_ENOTSUP},
        {"{\"type\":\"object\",\"patternProperties\":{}}", "keyword 'patternProperties'",
         TB_ENOTSUP},
        {"{\"type\":\"object\",\"propertyNames\":{}}", "keyword 'propertyNames'", TB_ENOTSUP},
        {"{\"type\":\"object\",\"minProperties\":1}", "keyword 'minProperties'", TB_ENOTSUP},
        {"{\"type\":\"object\",\"maxProperties\":1}", "keyword 'maxProperties'", TB_ENOTSUP},
        {"{\"type\":\"object\",\"dependentRequired\":{}}", "keyword 'dependentRequired'",
         TB_ENOTSUP},
        {"{\"type\":\"array\",\"uniqueItems\":true}", "keyword 'uniqueItems'", TB_ENOTSUP},
        {"{\"type\":\"array\",\"contains\":{}}", "keyword 'contains'", TB_ENOTSUP},
        {"{\"type\":\"array\",\"prefixItems\":[]}", "keyword 'prefixItems'", TB_ENOTSUP},
        {"{\"type\":\"array\",\"items\":[{}]}", "keyword 'items' as an array", TB_ENOTSUP},
        {"{\"type\":\"string\",\"format\":\"email\"}", "unsupported string format 'email'",
         TB_ENOTSUP},
        {"{\"type\":\"string\",\"format\":\"date\",\"maxLength\":3}",
         "'maxLength' beside 'format'", TB_ENOTSUP},
        {"{\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"x\"}}}",
         "keyword 'pattern' at '/properties/a'", TB_ENOTSUP},
        {"{\"$ref\":\"http://x/s.json\"}", "unsupported '$ref' 'http://x/s.json'", TB_ENOTSUP},
        {"{\"enum\":[1],\"minimum\":0}", "keyword 'minimum'", TB_ENOTSUP},
        {"{\"enum\":[\"a\"],\"maxLength\":3}", "keyword 'maxLength' beside 'enum'", TB_ENOTSUP},
        {"{\"anyOf\":[{}],\"type\":\"string\"}", "keyword 'type' beside 'anyOf'", TB_ENOTSUP},
        {"{\"properties\":{},\"required\":[\"x\"]}",
         "'required' property 'x' not in 'properties'", TB_ENOTSUP},
        {"{\"type\":\"strin\"}", "unknown type 'strin'", TB_EINVAL},
        {"{\"type\":\"array\",\"minItems\":-1}", "invalid 'minItems'", TB_EINVAL},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", "'maxItems' below 'minItems'",
         TB_EINVAL},
        {"{\"enum\":[]}", "invalid 'enum'", TB_EINVAL},
        {"{\"type\":\"string\",\"enum\":[1]}", "no value satisfies", TB_EINVAL},
        {"false", "a schema must be an object or true", TB_EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_t *s = json_loads(cases[i].schema, JSON_DECODE_ANY, NULL);
        assert_non_null(s);
        char err[256] = "", *gbnf = NULL;
        size_t len = 0;
        int rc = tb_json_schema_to_gbnf(s, &gbnf, &len, err, sizeof(err));
        if (rc != cases[i].rc || !strstr(err, cases[i].msg)) {
            fail_msg("%s: %d '%s', expected %d '%s'", cases[i].schema, rc, err, cases[i].rc,
                     cases[i].msg);
        }
        assert_null(gbnf);
        json_decref(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),           cmocka_unit_test(test_formats),
        cmocka_unit_test(test_enum_const),        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_arrays_anyof_refs), cmocka_unit_test(test_object_and_tools),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
