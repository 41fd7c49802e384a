/*
 * test_jinja.c - the Jinja interpreter through its public API: language cases with expected
 * output, errors with their line:column, and every resource bound.
 */
#include <pthread.h>
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
#include "tb_jinja.h"

/* Renders src with the JSON context `ctx` (NULL: none); returns the TB_E* code and fills
 * out/err. */
static int s_render_lim(const char *src, const char *ctx, const struct tb_jinja_limits *lim,
                        char **out, char *err, size_t err_len)
{
    tb_jinja_t *tpl = NULL;
    *out = NULL;
    int rc = tb_jinja_parse_with_limits(src, strlen(src), lim, &tpl, err, err_len);
    if (rc != 0) {
        return rc;
    }
    json_t *j = NULL;
    if (ctx) {
        json_error_t jerr;
        j = json_loads(ctx, 0, &jerr);
        assert_non_null(j);
    }
    size_t len = 0;
    rc = tb_jinja_render(tpl, j, out, &len, err, err_len);
    if (rc == 0) {
        assert_int_equal(strlen(*out), len);
    }
    json_decref(j);
    tb_jinja_destroy(&tpl);
    assert_null(tpl);
    return rc;
}

static void s_expect(const char *src, const char *ctx, const char *want)
{
    char *out = NULL;
    char err[512];
    int rc = s_render_lim(src, ctx, NULL, &out, err, sizeof(err));
    if (rc != 0) {
        fail_msg("%s: error %d: %s", src, rc, err);
    }
    if (strcmp(out, want) != 0) {
        fail_msg("%s: got '%s', want '%s'", src, out, want);
    }
    free(out);
}

/* Expects failure `code` with an error starting with `pos` ("L:C:") and containing `what`. */
static void s_expect_err_lim(const char *src, const char *ctx, const struct tb_jinja_limits *lim,
                             int code, const char *pos, const char *what)
{
    char *out = NULL;
    char err[512];
    int rc = s_render_lim(src, ctx, lim, &out, err, sizeof(err));
    if (rc == 0) {
        fail_msg("%s: rendered '%s', want error '%s'", src, out, what);
    }
    assert_null(out);
    if (rc != code) {
        fail_msg("%s: code %d, want %d (%s)", src, rc, code, err);
    }
    if (pos && strncmp(err, pos, strlen(pos)) != 0) {
        fail_msg("%s: error '%s' should start with '%s'", src, err, pos);
    }
    if (!strstr(err, what)) {
        fail_msg("%s: error '%s' should mention '%s'", src, err, what);
    }
}

static void s_expect_err(const char *src, const char *ctx, int code, const char *pos,
                         const char *what)
{
    s_expect_err_lim(src, ctx, NULL, code, pos, what);
}

static const char *CTX = "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, "
                         "{\"role\": \"user\", \"content\": \" Hi \\u00e9 \"}], "
                         "\"n\": 3, \"f\": 1.5, \"s\": \"Hello\", \"e\": \"\", "
                         "\"d\": {\"b\": 2, \"a\": [1, null, true]}}";

static void test_data_and_output(void **state)
{
    (void)state;
    s_expect("", NULL, "");
    s_expect("plain text", NULL, "plain text");
    s_expect("{{ s }}, {{ n }} {{ f }} {{ e }}|{{ missing }}|", CTX, "Hello, 3 1.5 ||");
    s_expect("{{ none }} {{ true }} {{ false }} {{ [1, 'a', none] }} {{ d }}", CTX,
             "None True False [1, 'a', None] {'b': 2, 'a': [1, None, True]}");
    s_expect("{{ (1, 2) }}{{ (1,) }}{{ 1, 2 }}", NULL, "(1, 2)(1,)(1, 2)");
    s_expect("{{ \"it's\" }}{{ ['it\\'s', 'q\"'] }}", NULL, "it's[\"it's\", 'q\"']");
    s_expect("a\nb\n", NULL, "a\nb"); /* one trailing newline is dropped */
    s_expect("a\r\nb\rc", NULL, "a\nb\nc");
}

static void test_whitespace_control(void **state)
{
    (void)state;
    s_expect("{% if true %}\nx\n{% endif %}\ny", NULL, "x\ny");             /* trim_blocks */
    s_expect("  {% if true %}\n  x\n  {% endif %}\n  y", NULL, "  x\n  y"); /* lstrip */
    s_expect("a  {%- if true -%}  b  {%- endif -%}  c", NULL, "abc");
    s_expect("a  {{- 'b' -}}  c", NULL, "abc");
    s_expect("  {{ 'v' }}\n", NULL, "  v"); /* no lstrip before {{ */
    s_expect("x {#- comment -#} y {# c #}\nz", NULL, "xy z");
    s_expect("  {%+ if true %}p{% endif %}", NULL, "  p");
    s_expect("{% if true +%}\nkeep{% endif %}", NULL, "\nkeep");
    s_expect("{% raw %}{{ x }}{% endraw %}", NULL, "{{ x }}");
    s_expect("a \xe3\x80\x80{%- if true %}b{% endif %}", NULL, "ab"); /* Unicode space */
}

static void test_loops(void **state)
{
    (void)state;
    s_expect("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}"
             "{{ loop.last }}{{ loop.length }}{{ loop.revindex }};{% endfor %}",
             CTX, "10TrueFalse22;21FalseTrue21;");
    s_expect("{% for x in [] %}a{% else %}empty{% endfor %}", NULL, "empty");
    s_expect("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}/{{ loop.length }}{% endfor %}",
             NULL, "2/24/2");
    s_expect("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", CTX,
             "b=2;a=[1, None, True];");
    s_expect("{% for k in d %}{{ k }}{% endfor %}{% for c in 'h\xc3\xa9' %}[{{ c }}]{% endfor %}",
             CTX, "ba[h][\xc3\xa9]");
    s_expect("{% for i in range(6) %}{% if i == 4 %}{% break %}{% endif %}"
             "{% if i is odd %}{% continue %}{% endif %}{{ i }}{% endfor %}",
             NULL, "02");
    s_expect("{% for x in [1, 2] %}{{ loop.cycle('a', 'b') }}{% if not loop.first %}"
             "{{ loop.previtem }}{% endif %}{% endfor %}",
             NULL, "ab1");
    /* loop scope: assignments do not leak, each iteration starts fresh */
    s_expect("{% set x = 5 %}{% for i in [1, 2] %}[{{ x }}]{% set x = i %}{% endfor %}{{ x }}",
             NULL, "[5][5]5");
    s_expect("{% for x in missing %}a{% endfor %}ok", NULL, "ok");
}

static void test_conditions_and_sets(void **state)
{
    (void)state;
    s_expect("{% if n > 5 %}a{% elif n > 2 %}b{% else %}c{% endif %}", CTX, "b");
    s_expect("{% if e %}a{% elif not e %}b{% endif %}", CTX, "b");
    s_expect("{% if true %}{% set y = 3 %}{% endif %}{{ y }}", NULL, "3");
    s_expect("{% set a, b = 1, 2 %}{{ a }}{{ b }}", NULL, "12");
    s_expect("{% set ns = namespace(found=false, n=0) %}{% for m in messages %}"
             "{% if m.role == 'system' %}{% set ns.found = true %}{% endif %}"
             "{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.found }}{{ ns.n }}",
             CTX, "True2");
    s_expect("{% set x %}<{{ s }}>{% endset %}{{ x }}{% set y | upper %}q{% endset %}{{ y }}",
             CTX, "<Hello>Q");
    s_expect("{% filter upper %}a{{ s }}{% endfilter %}", CTX, "AHELLO");
    s_expect("{% with a = 1 %}{{ a }}{% endwith %}[{{ a }}]", NULL, "1[]");
    s_expect("{% macro m(a, b='d') %}({{ a }}{{ b }}){% endmacro %}{{ m(1) }}{{ m(2, b=3) }}",
             NULL, "(1d)(23)");
    s_expect("{% generation %}g{% endgeneration %}", NULL, "g");
}

static void test_expressions(void **state)
{
    (void)state;
    s_expect("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ 7 // 2 }} {{ -7 // 2 }}"
             " {{ -7 % 3 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ -n }}",
             CTX, "7 9 64 3 -4 2 3.5 2.0 -3");
    s_expect("{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 1e-5 }} {{ 0.0001 }} {{ 1.0 }} {{ -0.0 }}",
             NULL, "0.30000000000000004 1e+16 1000000000000000.0 1e-05 0.0001 1.0 -0.0");
    s_expect("{{ 'a' ~ 1 ~ none ~ true ~ missing }}", NULL, "a1NoneTrue");
    s_expect("{{ 'ab' + 'cd' }} {{ [1] + [2] }} {{ 'ab' * 2 }} {{ 2 * [0] }}", NULL,
             "abcd [1, 2] abab [0, 0]");
    s_expect("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'b' }}",
             NULL, "True False True True True");
    s_expect("{{ 'x' in 'axb' }} {{ 2 in [1, 2] }} {{ 'b' in d }} {{ 'z' not in d }}", CTX,
             "True True True True");
    s_expect("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 1 }} {{ not 0 }}", NULL, "x y  True");
    s_expect("{{ 'y' if n > 1 else 'n' }} [{{ 'y' if false }}]", CTX, "y []");
    s_expect("{{ messages[0].role }} {{ messages[-1]['content'] }} {{ messages.1.role }}", CTX,
             "system  Hi \xc3\xa9  user");
    s_expect("{{ messages[1:]|length }} {{ 'h\xc3\xa9llo'[1:3] }} {{ [1, 2, 3][::-1] }} "
             "{{ 'abc'[-1] }} [{{ [1][5] }}]",
             CTX, "1 \xc3\xa9l [3, 2, 1] c []");
    s_expect("{{ d.a[1] is none }} {{ d.missing is defined }} {{ d.b is number }}", CTX,
             "True False True");
    s_expect("{{ 'a' 'b' }} {{ 0x1f }} {{ 1_000 }} {{ 2.5e2 }}", NULL, "ab 31 1000 250.0");
    s_expect("{{ '\\x41\\u00e9\\n\\d' }}", NULL, "A\xc3\xa9\n\\d");
}

static void test_filters_and_methods(void **state)
{
    (void)state;
    s_expect("[{{ messages[1].content|trim }}] [{{ messages[1].content.strip() }}] "
             "[{{ '  x  '.lstrip() }}] [{{ 'xxaxx'.rstrip('x') }}]",
             CTX, "[Hi \xc3\xa9] [Hi \xc3\xa9] [x  ] [xxa]");
    s_expect("{{ s|upper }} {{ s|lower }} {{ 'hello world'|title }} {{ 'aBC'|capitalize }} "
             "{{ 'x-y z'.title() }} {{ 'stra\xc3\x9f' | upper }}",
             CTX, "HELLO hello Hello World Abc X-Y Z STRASS");
    s_expect("{{ d|tojson }} {{ 'a\"\\n\xc3\xa9'|tojson }}", CTX,
             "{\"b\": 2, \"a\": [1, null, true]} \"a\\\"\\n\xc3\xa9\"");
    s_expect("{{ d|tojson(indent=2) }}", CTX,
             "{\n  \"b\": 2,\n  \"a\": [\n    1,\n    null,\n    true\n  ]\n}");
    s_expect("{{ d|tojson(sort_keys=true) }}", CTX, "{\"a\": [1, null, true], \"b\": 2}");
    s_expect("{{ s|length }} {{ messages|length }} {{ missing|length }} {{ d.a|first }} "
             "{{ d.a|last }} {{ [3, 1, 2]|sort|join(',') }} {{ [1, 2]|reverse|list }}",
             CTX, "5 2 0 1 True 1,2,3 [2, 1]");
    s_expect("{{ missing|default('x') }} {{ e|default('y', true) }} {{ none|default('z') }}", CTX,
             "x y None");
    s_expect("{{ messages|map(attribute='role')|join('/') }} "
             "{{ messages|selectattr('role', 'equalto', 'user')|list|length }} "
             "{{ [1, 2, 3]|select('odd')|list }} {{ [1, 2, 3]|reject('odd')|list }}",
             CTX, "system/user 1 [1, 3] [2]");
    s_expect("{{ '3'|int + 1 }} {{ '2.5'|float }} {{ 'x'|int }} {{ 2.567|round(2) }} "
             "{{ -2|abs }} {{ 3|string ~ 'x' }} {{ [1, 2]|sum }} {{ [4, 9]|max }}",
             NULL, "4 2.5 0 2.57 2 3x 3 9");
    s_expect("{{ 'a,b'.split(',') }} {{ ' a  b '.split() }} {{ 'ab'.startswith('a') }} "
             "{{ 'ab'.endswith(('x', 'b')) }} {{ 'aaa'.replace('a', 'b', 2) }} "
             "{{ '-'.join(['x', 'y']) }} {{ '{}:{}'.format(1, 'z') }}",
             NULL, "['a', 'b'] ['a', 'b'] True True bba x-y 1:z");
    s_expect("{{ d.get('b') }} {{ d.get('q', 7) }} {{ d.keys()|list }} {{ d|items|list }}", CTX,
             "2 7 ['b', 'a'] [('b', 2), ('a', [1, None, True])]");
    s_expect("{{ 'a\\nb'|indent(2) }}|{{ '<&>'|e }}|{{ '%s=%d' % ('k', 4) }}", NULL,
             "a\n  b|&lt;&amp;&gt;|k=4");
    s_expect("{{ strftime_now('%Y')|length }}", NULL, "4");
    /* dict keys outlive their dict when shared through list/keys() (fuzzer regression) */
    s_expect("{{ [{'k': 1}, {'k': 2}]|max(attribute='k')|list }} {{ ({'x': 1}.keys()|list)[0] }}"
             " {{ d|map(attribute='zz')|list }}",
             CTX, "['k'] x [Undefined, Undefined]");
}

static void test_tests(void **state)
{
    (void)state;
    s_expect("{{ s is string }}{{ n is integer }}{{ f is float }}{{ d is mapping }}"
             "{{ none is none }}{{ missing is undefined }}{{ n is odd }}{{ 9 is divisibleby 3 }}"
             "{{ s is not number }}{{ range is callable }}{{ 2 is in [1, 2] }}",
             CTX, "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue");
}

static void test_syntax_errors_have_positions(void **state)
{
    (void)state;
    s_expect_err("{% for x in %}{% endfor %}", NULL, TB_EINVAL,
                 "1:13:", "expected an expression");
    s_expect_err("line\n  {% if true %}open", NULL, TB_EINVAL, "2:20:", "expected 'endif'");
    s_expect_err("{% endif %}", NULL, TB_EINVAL, "1:4:", "unexpected 'endif'");
    s_expect_err("{{ [1, 2 }}", NULL, TB_EINVAL, "1:10:", "unexpected '}'");
    s_expect_err("a\n\n{{ 'abc }}", NULL, TB_EINVAL, "3:4:", "unterminated string");
    s_expect_err("{{ x|nosuch }}", NULL, TB_EINVAL, "1:6:", "no filter named 'nosuch'");
    s_expect_err("{{ x is nosuch }}", NULL, TB_EINVAL, "1:9:", "no test named 'nosuch'");
    s_expect_err("{% break %}", NULL, TB_EINVAL, "1:4:", "'break' outside loop");
    s_expect_err("{% include 'x' %}", NULL, TB_EINVAL, "1:4:", "not supported");
    s_expect_err("{% frobnicate %}", NULL, TB_EINVAL, "1:4:", "unknown tag");
    s_expect_err("{# never closed", NULL, TB_EINVAL, "1:3:", "missing end of comment");
    s_expect_err("{{ 99999999999999999999 }}", NULL, TB_EINVAL, "1:4:", "too large");
    s_expect_err("ok \xff bad", NULL, TB_EINVAL, "1:4:", "not valid UTF-8");
    s_expect_err("{{ '\\u12' }}", NULL, TB_EINVAL, "1:", "truncated");
    /* an unknown filter inside an if-body only fails when it runs, as in jinja2 */
    s_expect("{% if false %}{{ x|nosuch }}{% endif %}ok", NULL, "ok");
    s_expect_err("{% if true %}{{ x|nosuch }}{% endif %}", NULL, TB_EINVAL,
                 "1:19:", "no filter named");
}

static void test_render_errors_have_positions(void **state)
{
    (void)state;
    s_expect_err("ab\n {{ raise_exception('Roles must alternate') }}", NULL, TB_EINVAL,
                 "2:5:", "raise_exception: Roles must alternate");
    s_expect_err("{{ foo.bar }}", NULL, TB_EINVAL, "1:", "'foo' is undefined");
    s_expect_err("{{ 'a' + 1 }}", NULL, TB_EINVAL, "1:8:", "can only concatenate str");
    s_expect_err("{{ 1 // 0 }}", NULL, TB_EINVAL, "1:6:", "division or modulo by zero");
    s_expect_err("{{ 1 < 'a' }}", NULL, TB_EINVAL, "1:", "not supported between");
    s_expect_err("{{ [1].append(2) }}", NULL, TB_EINVAL, "1:", "'append' is undefined");
    s_expect_err("{% set x = 1 %}{% set x.y = 2 %}", NULL, TB_EINVAL, "1:", "non-namespace");
    s_expect_err("{% set ns = namespace() %}{% set ns.me = [ns] %}", NULL, TB_EINVAL,
                 "1:", "cannot contain itself");
    s_expect_err("{% for a, b in [[1, 2, 3]] %}{% endfor %}", NULL, TB_EINVAL,
                 "1:", "too many values to unpack");
    s_expect_err("{{ 9223372036854775807 + 1 }}", NULL, TB_ERANGE, "1:", "integer overflow");
    s_expect_err("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, TB_EINVAL,
                 "1:", "takes not more than 1");
    s_expect_err("{{ none.x.y }}", NULL, TB_EINVAL, "1:", "undefined");
}

static void test_limits(void **state)
{
    (void)state;
    struct tb_jinja_limits lim;
    memset(&lim, 0, sizeof(lim));

    lim.max_output_bytes = 100;
    s_expect_err_lim("{% for i in range(50) %}abcd{% endfor %}", NULL, &lim, TB_E2BIG,
                     "1:", "over the 100-byte bound");
    s_expect_err_lim("{{ 'x' * 1000 }}", NULL, &lim, TB_E2BIG, "1:", "bound");

    memset(&lim, 0, sizeof(lim));
    lim.max_loop_iterations = 1000;
    s_expect_err_lim("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}",
                     NULL, &lim, TB_ERANGE, "1:", "more than 1000 loop iterations");

    memset(&lim, 0, sizeof(lim));
    lim.max_steps = 5000;
    s_expect_err_lim("{% for i in range(10000) %}{{ i }}{% endfor %}", NULL, &lim, TB_ERANGE,
                     "1:", "evaluation steps");

    memset(&lim, 0, sizeof(lim));
    lim.max_depth = 16;
    char deep[256];
    size_t o = 0;
    o += (size_t)snprintf(deep + o, sizeof(deep) - o, "{{ ");
    for (int i = 0; i < 40; i++) {
        deep[o++] = '(';
    }
    deep[o++] = '1';
    for (int i = 0; i < 40; i++) {
        deep[o++] = ')';
    }
    snprintf(deep + o, sizeof(deep) - o, " }}");
    s_expect_err_lim(deep, NULL, &lim, TB_EINVAL, "1:", "nested deeper than 16");
    s_expect_err_lim("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", NULL, &lim,
                     TB_ERANGE, "1:", "nested deeper than");

    memset(&lim, 0, sizeof(lim));
    lim.max_template_bytes = 10;
    s_expect_err_lim("0123456789ab", NULL, &lim, TB_EINVAL, "1:1:", "over the 10-byte bound");

    memset(&lim, 0, sizeof(lim));
    lim.max_alloc_bytes = 64 * 1024;
    s_expect_err_lim("{% set ns = namespace(s='') %}{% for i in range(10000) %}"
                     "{% set ns.s = ns.s ~ 'xxxxxxxxxxxxxxxx' %}{% endfor %}",
                     NULL, &lim, TB_ERANGE, "1:", "bytes of memory");

    /* the sandbox's range cap and a doubling string within the default bounds */
    s_expect_err("{{ range(100001)|length }}", NULL, TB_ERANGE, "1:", "range too big");
    s_expect_err("{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
                 "{% set ns.s = ns.s + ns.s %}{% endfor %}",
                 NULL, TB_E2BIG, "1:", "bound");
    s_expect_err("{% set ns = namespace(l=[]) %}{% for i in range(300) %}"
                 "{% set ns.l = [ns.l] %}{% endfor %}",
                 NULL, TB_ERANGE, "1:", "nested deeper");
}

static void test_limits_defaults_and_reuse(void **state)
{
    (void)state;
    struct tb_jinja_limits lim;
    tb_jinja_limits_default(&lim);
    assert_int_equal(lim.max_template_bytes, 256 * 1024);
    assert_int_equal(lim.max_depth, 64);
    assert_true(lim.max_output_bytes >= 1024 * 1024);

    /* one parse, many renders with different contexts; NULL destroy is fine */
    char err[256];
    tb_jinja_t *tpl = NULL;
    const char *src = "{{ who }}!";
    assert_int_equal(tb_jinja_parse(src, strlen(src), &tpl, err, sizeof(err)), 0);
    for (int i = 0; i < 3; i++) {
        json_t *ctx = json_pack("{s:i}", "who", i);
        char *out = NULL;
        size_t len = 0;
        assert_int_equal(tb_jinja_render(tpl, ctx, &out, &len, err, sizeof(err)), 0);
        char want[16];
        snprintf(want, sizeof(want), "%d!", i);
        assert_string_equal(out, want);
        free(out);
        json_decref(ctx);
    }
    /* a maximal one-line template with tens of thousands of tags parses and renders (lexing
     * is linear in the source, not in line length times tokens) */
    size_t big = lim.max_template_bytes;
    char *src2 = malloc(big + 1);
    assert_non_null(src2);
    for (size_t i = 0; i + 8 <= big; i += 8) {
        memcpy(src2 + i, "{{ n }}-", 8);
    }
    src2[big] = '\0';
    tb_jinja_t *t2 = NULL;
    assert_int_equal(tb_jinja_parse(src2, big, &t2, err, sizeof(err)), 0);
    json_t *c2 = json_pack("{s:i}", "n", 7);
    char *o2 = NULL;
    size_t l2 = 0;
    assert_int_equal(tb_jinja_render(t2, c2, &o2, &l2, err, sizeof(err)), 0);
    assert_int_equal(l2, big / 4);
    free(o2);
    json_decref(c2);
    tb_jinja_destroy(&t2);
    free(src2);

    json_t *arr = json_array();
    char *out = NULL;
    assert_int_equal(tb_jinja_render(tpl, arr, &out, NULL, err, sizeof(err)), TB_EINVAL);
    assert_non_null(strstr(err, "JSON object"));
    json_decref(arr);
    tb_jinja_destroy(&tpl);
    tb_jinja_destroy(&tpl);
    tb_jinja_destroy(NULL);
}

typedef struct {
    const tb_jinja_t *tpl;
    json_t *ctx;
    const char *want;
    int failures;
} s_thread_arg_t;

static void *s_render_loop(void *p)
{
    s_thread_arg_t *a = p;
    for (int i = 0; i < 300; i++) {
        char *out = NULL;
        char err[256];
        if (tb_jinja_render(a->tpl, a->ctx, &out, NULL, err, sizeof(err)) != 0 ||
            strcmp(out, a->want) != 0) {
            a->failures++;
        }
        free(out);
    }
    return NULL;
}

static void test_concurrent_renders_share_a_template(void **state)
{
    (void)state;
    const char *src =
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
        "[{{ m.role|upper }}:{{ m.content|trim }}]{% endfor %}{{ ns.n }}";
    char err[256];
    tb_jinja_t *tpl = NULL;
    assert_int_equal(tb_jinja_parse(src, strlen(src), &tpl, err, sizeof(err)), 0);
    json_error_t jerr;
    json_t *ctx = json_loads(CTX, 0, &jerr);
    assert_non_null(ctx);
    pthread_t th[4];
    s_thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (s_thread_arg_t){tpl, ctx, "[SYSTEM:S][USER:Hi \xc3\xa9]2", 0};
        assert_int_equal(pthread_create(&th[i], NULL, s_render_loop, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    json_decref(ctx);
    tb_jinja_destroy(&tpl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_and_output),
        cmocka_unit_test(test_whitespace_control),
        cmocka_unit_test(test_loops),
        cmocka_unit_test(test_conditions_and_sets),
        cmocka_unit_test(test_expressions),
        cmocka_unit_test(test_filters_and_methods),
        cmocka_unit_test(test_tests),
        cmocka_unit_test(test_syntax_errors_have_positions),
        cmocka_unit_test(test_render_errors_have_positions),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_limits_defaults_and_reuse),
        cmocka_unit_test(test_concurrent_renders_share_a_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
