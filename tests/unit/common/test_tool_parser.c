/* Unit tests of the tool-call parsers and the reasoning parser: answers written from each
 * family's documented format, fed whole, one byte at a time and in random pieces, in stream and
 * held mode; malformed and truncated calls; the OpenAI streaming shape of the deltas; and the
 * forced-call grammars, compiled and run byte by byte through the grammar matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_grammar.h"
#include "tb_grammar_cache.h"
#include "tb_grammar_matcher.h"
#include "tb_reasoning_parser.h"
#include "tb_token_trie.h"
#include "tb_tool_parser.h"

#define DS_CALLS_BEGIN                                                                           \
    "<\xef\xbd\x9ctool\xe2\x96\x81"                                                              \
    "calls\xe2\x96\x81"                                                                          \
    "begin\xef\xbd\x9c>"
#define DS_CALLS_END                                                                             \
    "<\xef\xbd\x9ctool\xe2\x96\x81"                                                              \
    "calls\xe2\x96\x81"                                                                          \
    "end\xef\xbd\x9c>"
#define DS_CALL_BEGIN                                                                            \
    "<\xef\xbd\x9ctool\xe2\x96\x81"                                                              \
    "call\xe2\x96\x81"                                                                           \
    "begin\xef\xbd\x9c>"
#define DS_CALL_END                                                                              \
    "<\xef\xbd\x9ctool\xe2\x96\x81"                                                              \
    "call\xe2\x96\x81"                                                                           \
    "end\xef\xbd\x9c>"
#define DS_SEP                                                                                   \
    "<\xef\xbd\x9ctool\xe2\x96\x81"                                                              \
    "sep\xef\xbd\x9c>"

#define MAX_CALLS 4

/* What an answer parsed to, assembled the way an OpenAI client assembles deltas. */
struct result {
    char content[4096];
    size_t n_calls;
    char id[MAX_CALLS][40];
    char name[MAX_CALLS][64];
    char args[MAX_CALLS][512];
};

static json_t *s_tools(void)
{
    const char *src =
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":{\"enum\":"
        "[\"c\",\"f\"]}},\"required\":[\"city\"]}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}]";
    json_error_t je;
    json_t *t = json_loads(src, 0, &je);
    assert_non_null(t);
    return t;
}

/* Collects what the parser released; checks the streaming shape on the way. */
static void s_collect(tb_tool_parser_t *p, struct result *r)
{
    size_t len;
    const char *c = tb_tool_parser_content(p, &len);
    if (c) {
        assert_true(strlen(r->content) + len < sizeof(r->content));
        strncat(r->content, c, len);
    }
    size_t n;
    const struct tb_tool_delta *d = tb_tool_parser_deltas(p, &n);
    for (size_t i = 0; i < n; i++) {
        assert_true(d[i].index >= 0 && d[i].index < MAX_CALLS);
        size_t k = (size_t)d[i].index;
        if (d[i].id) {
            /* a call's first delta: index, id and name, and the index is the next one */
            assert_int_equal(k, r->n_calls);
            assert_non_null(d[i].name);
            assert_int_equal(strlen(d[i].id), 29);
            assert_memory_equal(d[i].id, "call_", 5);
            snprintf(r->id[k], sizeof(r->id[k]), "%s", d[i].id);
            snprintf(r->name[k], sizeof(r->name[k]), "%s", d[i].name);
            r->n_calls++;
        } else {
            assert_null(d[i].name);
            assert_true(k + 1 == r->n_calls); /* pieces only for the latest call */
        }
        assert_non_null(d[i].arguments);
        assert_true(strlen(r->args[k]) + strlen(d[i].arguments) < sizeof(r->args[k]));
        strcat(r->args[k], d[i].arguments);
    }
    tb_tool_parser_take(p);
}

/* Parses `text` cut at the given piece size (0: random pieces from `seed`). */
static void s_parse(tb_tool_format_t f, bool stream, const char *text, size_t piece,
                    unsigned seed, struct result *r)
{
    memset(r, 0, sizeof(*r));
    json_t *tools = s_tools();
    tb_tool_parser_t *p = NULL;
    assert_int_equal(tb_tool_parser_new(f, tools, stream, 42, &p), 0);
    json_decref(tools);
    size_t len = strlen(text);
    srand(seed);
    for (size_t at = 0; at < len;) {
        size_t n = piece ? piece : 1 + (size_t)rand() % 9;
        n = n < len - at ? n : len - at;
        assert_int_equal(tb_tool_parser_push(p, text + at, n), 0);
        s_collect(p, r);
        at += n;
    }
    assert_int_equal(tb_tool_parser_finish(p), 0);
    s_collect(p, r);
    tb_tool_parser_destroy(&p);
}

struct expect {
    const char *content;
    size_t n_calls;
    const char *name[MAX_CALLS];
    const char *args[MAX_CALLS];
};

/* The same result whole, byte by byte and in random pieces, in both modes. */
static void s_check(tb_tool_format_t f, const char *text, const struct expect *e)
{
    for (int mode = 0; mode < 2; mode++) {
        for (int cut = 0; cut < 6; cut++) {
            struct result r;
            size_t piece = cut == 0 ? strlen(text) + 1 : cut == 1 ? 1 : 0;
            s_parse(f, mode == 1, text, piece, (unsigned)cut, &r);
            if (strcmp(r.content, e->content) != 0 || r.n_calls != e->n_calls) {
                fail_msg("format %s, %s, cut %d: content '%s' (want '%s'), %zu calls (want %zu)",
                         tb_tool_format_name(f), mode ? "stream" : "held", cut, r.content,
                         e->content, r.n_calls, e->n_calls);
            }
            for (size_t k = 0; k < e->n_calls; k++) {
                assert_string_equal(r.name[k], e->name[k]);
                assert_string_equal(r.args[k], e->args[k]);
            }
        }
    }
}

static void test_hermes(void **state)
{
    (void)state;
    struct expect one = {"Let me check.\n", 1, {"get_weather"}, {"{\"city\": \"Paris\"}"}};
    s_check(TB_TOOL_FORMAT_HERMES,
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
            "\"Paris\"}}\n</tool_call>",
            &one);
    /* Qwen2.5 / Qwen3: several calls, newline-separated; a call without closing tag at the end */
    struct expect two = {"",
                         2,
                         {"get_weather", "get_time"},
                         {"{\"city\": \"Oslo\", \"unit\": \"c\"}", "{}"}};
    s_check(TB_TOOL_FORMAT_HERMES,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", "
            "\"unit\": \"c\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", "
            "\"arguments\": {}}\n</tool_call>\n",
            &two);
    /* arguments ending in a number, a literal, a nested array */
    struct expect atoms = {"",
                           1,
                           {"get_weather"},
                           {"{\"n\": 3, \"ok\": true, \"l\": [1, null]}"}};
    s_check(TB_TOOL_FORMAT_HERMES,
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"n\": 3, \"ok\": true, "
            "\"l\": [1, null]}}</tool_call>",
            &atoms);
    struct expect atom_last = {"", 1, {"get_weather"}, {"{\"n\": 3}"}};
    s_check(TB_TOOL_FORMAT_HERMES,
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"n\": 3}}</tool_call>",
            &atom_last);
    struct expect open_end = {"", 1, {"get_time"}, {"{}"}};
    s_check(TB_TOOL_FORMAT_HERMES, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}",
            &open_end);
    /* arguments before the name, and arguments given as a JSON string */
    struct expect order = {"", 1, {"get_weather"}, {"{\"city\":\"Rome\"}"}};
    s_check(TB_TOOL_FORMAT_HERMES,
            "<tool_call>{\"arguments\": {\"city\":\"Rome\"}, \"name\": \"get_weather\"}"
            "</tool_call>",
            &order);
    struct expect str = {"", 1, {"get_weather"}, {"{\"city\": \"Rome\"}"}};
    s_check(TB_TOOL_FORMAT_HERMES,
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": "
            "\\\"Rome\\\"}\"}</tool_call>",
            &str);
    /* plain text with a '<' that is not a call */
    struct expect text = {"a < b and <tool is fine", 0, {0}, {0}};
    s_check(TB_TOOL_FORMAT_HERMES, "a < b and <tool is fine", &text);
}

static void test_llama3(void **state)
{
    (void)state;
    struct expect one = {"", 1, {"get_weather"}, {"{\"city\": \"Paris\"}"}};
    s_check(TB_TOOL_FORMAT_LLAMA3,
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": "
            "\"Paris\"}}",
            &one);
    s_check(TB_TOOL_FORMAT_LLAMA3,
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": "
            "{\"city\": \"Paris\"}}",
            &one);
    struct expect two = {"", 2, {"get_time", "get_weather"}, {"{}", "{\"city\": \"Lima\"}"}};
    s_check(TB_TOOL_FORMAT_LLAMA3,
            "{\"type\": \"function\", \"name\": \"get_time\", \"parameters\": {}}; {\"name\": "
            "\"get_weather\", \"arguments\": {\"city\": \"Lima\"}}",
            &two);
    /* an answer that is text, or JSON that is not a call, is content */
    struct expect text = {"The weather is {fine}.", 0, {0}, {0}};
    s_check(TB_TOOL_FORMAT_LLAMA3, "The weather is {fine}.", &text);
    struct expect json = {"{\"answer\": 42}", 0, {0}, {0}};
    s_check(TB_TOOL_FORMAT_LLAMA3, "{\"answer\": 42}", &json);
}

static void test_mistral(void **state)
{
    (void)state;
    struct expect two = {"", 2, {"get_weather", "get_time"}, {"{\"city\": \"Paris\"}", "{}"}};
    s_check(TB_TOOL_FORMAT_MISTRAL,
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, "
            "{\"name\": \"get_time\", \"arguments\": {}}]",
            &two);
    struct expect newer = {"", 2, {"get_weather", "get_time"}, {"{\"city\": \"Paris\"}", "{}"}};
    s_check(TB_TOOL_FORMAT_MISTRAL,
            "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}",
            &newer);
    struct expect before = {"Sure. ", 1, {"get_time"}, {"{}"}};
    s_check(TB_TOOL_FORMAT_MISTRAL, "Sure. [TOOL_CALLS]get_time[CALL_ID]a1b2c3d4e[ARGS]{}",
            &before);
}

static void test_deepseek(void **state)
{
    (void)state;
    struct expect one = {"Checking.", 1, {"get_weather"}, {"{\"city\": \"Paris\"}"}};
    s_check(TB_TOOL_FORMAT_DEEPSEEK,
            "Checking." DS_CALLS_BEGIN DS_CALL_BEGIN "function" DS_SEP
            "get_weather\n```json\n{\"city\": \"Paris\"}\n```" DS_CALL_END DS_CALLS_END,
            &one);
    struct expect two = {"", 2, {"get_weather", "get_time"}, {"{\"city\": \"Kyiv\"}", "{}"}};
    s_check(TB_TOOL_FORMAT_DEEPSEEK,
            DS_CALLS_BEGIN DS_CALL_BEGIN
            "function" DS_SEP "get_weather\n```json\n{\"city\": \"Kyiv\"}\n```" DS_CALL_END
            "\n" DS_CALL_BEGIN "function" DS_SEP
            "get_time\n```json\n{}\n```" DS_CALL_END DS_CALLS_END,
            &two);
    /* the V3.1 body: NAME<sep>ARGS */
    struct expect v31 = {"", 1, {"get_weather"}, {"{\"city\": \"Paris\"}"}};
    s_check(TB_TOOL_FORMAT_DEEPSEEK,
            DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP
                                         "{\"city\": \"Paris\"}" DS_CALL_END DS_CALLS_END,
            &v31);
}

/* Malformed calls are content in held mode, whatever the cut. */
static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": }}</tool_call>",
        "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>",
        "<tool_call>not json</tool_call>",
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": [1, 2]}</tool_call>",
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        for (int cut = 0; cut < 4; cut++) {
            struct result r;
            s_parse(TB_TOOL_FORMAT_HERMES, false, bad[i], cut == 0 ? 1000 : (size_t)cut - 1,
                    (unsigned)cut, &r);
            assert_string_equal(r.content, bad[i]);
            assert_int_equal(r.n_calls, 0);
        }
    }
    struct result r;
    s_parse(TB_TOOL_FORMAT_MISTRAL, false, "[TOOL_CALLS]nope[ARGS]{}", 1, 0, &r);
    assert_string_equal(r.content, "[TOOL_CALLS]nope[ARGS]{}");
    s_parse(TB_TOOL_FORMAT_DEEPSEEK, false, DS_CALLS_BEGIN DS_CALL_BEGIN "function" DS_SEP "x", 3,
            0, &r);
    assert_int_equal(r.n_calls, 0);
    assert_non_null(strstr(r.content, "function"));
}

/* A call cut by max_tokens: held mode returns it as content; stream mode has sent its name and
 * the arguments so far, and nothing of it as content. */
static void test_truncated(void **state)
{
    (void)state;
    const char *text =
        "Hi. <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa";
    struct result r;
    s_parse(TB_TOOL_FORMAT_HERMES, false, text, 1, 0, &r);
    assert_string_equal(r.content, text);
    assert_int_equal(r.n_calls, 0);
    s_parse(TB_TOOL_FORMAT_HERMES, true, text, 1, 0, &r);
    assert_string_equal(r.content, "Hi. ");
    assert_int_equal(r.n_calls, 1);
    assert_string_equal(r.name[0], "get_weather");
    assert_string_equal(r.args[0], "{\"city\": \"Pa");
}

/* In stream mode the arguments come in pieces as they arrive. */
static void test_stream_pieces(void **state)
{
    (void)state;
    json_t *tools = s_tools();
    tb_tool_parser_t *p = NULL;
    assert_int_equal(tb_tool_parser_new(TB_TOOL_FORMAT_HERMES, tools, true, 7, &p), 0);
    const char *pieces[] = {"<tool_call>\n{\"name\": \"get_", "weather\", \"argu",
                            "ments\": {\"city\"", ": \"Paris\"}}\n</tool_call>"};
    size_t n_deltas[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tb_tool_parser_push(p, pieces[i], strlen(pieces[i])), 0);
        tb_tool_parser_deltas(p, &n_deltas[i]);
        if (i == 1) {
            size_t n;
            const struct tb_tool_delta *d = tb_tool_parser_deltas(p, &n);
            assert_int_equal(n, 1);
            assert_string_equal(d[0].name, "get_weather");
            assert_string_equal(d[0].arguments, "");
        }
        if (i == 2) {
            size_t n;
            const struct tb_tool_delta *d = tb_tool_parser_deltas(p, &n);
            assert_int_equal(n, 1);
            assert_null(d[0].id);
            assert_string_equal(d[0].arguments, "{\"city\"");
        }
        tb_tool_parser_take(p);
    }
    assert_int_equal(n_deltas[0], 0);
    assert_int_equal(n_deltas[3], 1);
    assert_int_equal(tb_tool_parser_finish(p), 0);
    assert_int_equal(tb_tool_parser_calls(p), 1);
    tb_tool_parser_destroy(&p);
    json_decref(tools);
}

static void test_detect(void **state)
{
    (void)state;
    const char *h = "{% for tool in tools %}<tool_call>{{ tool }}</tool_call>{% endfor %}";
    assert_int_equal(tb_tool_format_from_template(h, strlen(h)), TB_TOOL_FORMAT_HERMES);
    const char *m = "{{ '[TOOL_CALLS]' }}";
    assert_int_equal(tb_tool_format_from_template(m, strlen(m)), TB_TOOL_FORMAT_MISTRAL);
    const char *l = "{{- '<|python_tag|>' }}";
    assert_int_equal(tb_tool_format_from_template(l, strlen(l)), TB_TOOL_FORMAT_LLAMA3);
    const char *d = "{{'" DS_CALLS_BEGIN "'}}";
    assert_int_equal(tb_tool_format_from_template(d, strlen(d)), TB_TOOL_FORMAT_DEEPSEEK);
    assert_int_equal(tb_tool_format_from_template("{{ x }}", 7), TB_TOOL_FORMAT_NONE);
    tb_tool_format_t f;
    assert_int_equal(tb_tool_format_from_name("llama3_json", &f), 0);
    assert_int_equal(f, TB_TOOL_FORMAT_LLAMA3);
    assert_int_equal(tb_tool_format_from_name("pythonic", &f), TB_EINVAL);
    const char *r1 = "{{'<think>\\n'}}{{ content.split('</think>')[-1] }}";
    assert_int_equal(tb_reasoning_format_from_template(r1, strlen(r1)), TB_REASONING_THINK);
}

/* ---- forced calls: the grammar accepts exactly valid calls ---- */

#define ID_EOS 256

static bool s_accepts(const tb_grammar_cache_t *c, const char *text)
{
    tb_grammar_matcher_t *m = NULL;
    assert_int_equal(tb_grammar_matcher_new(c, &m), 0);
    bool ok = true;
    for (size_t i = 0; text[i] && ok; i++) {
        ok = tb_grammar_matcher_accept(m, (uint8_t)text[i]) == 0;
    }
    ok = ok && tb_grammar_matcher_accept(m, ID_EOS) == 0 && tb_grammar_matcher_is_done(m);
    tb_grammar_matcher_destroy(&m);
    return ok;
}

struct forced {
    tb_tool_format_t f;
    const char *good[3];
    const char *bad[4];
};

static void test_gbnf(void **state)
{
    (void)state;
    static char bytes[256][2];
    const char *b[257];
    size_t lens[257];
    for (int i = 0; i < 256; i++) {
        bytes[i][0] = (char)i;
        b[i] = bytes[i];
        lens[i] = 1;
    }
    b[256] = NULL;
    lens[256] = 0;
    int32_t eos = ID_EOS;
    tb_token_trie_t *trie = NULL;
    assert_int_equal(tb_token_trie_new(257, b, lens, &eos, 1, &trie), 0);
    const struct forced cases[] = {
        {TB_TOOL_FORMAT_HERMES,
         {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
          "</tool_call>",
          "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
          "{\"name\": \"get_weather\", \"arguments\": {\"city\":\"x\",\"unit\":\"f\"}}\n"
          "</tool_call>"},
         {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>",
          "<tool_call>\n{\"name\": \"rm\", \"arguments\": {}}\n</tool_call>",
          "{\"name\": \"get_time\", \"arguments\": {}}",
          "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": 3}}\n"
          "</tool_call>"}},
        {TB_TOOL_FORMAT_LLAMA3,
         {"{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
          "{\"name\": \"get_time\", \"parameters\": {}}; {\"name\": \"get_time\", "
          "\"parameters\": {}}"},
         {"{\"name\": \"get_weather\", \"parameters\": {\"unit\": \"c\"}}",
          "{\"name\": \"get_time\", \"parameters\": {}} trailing"}},
        {TB_TOOL_FORMAT_MISTRAL,
         {"[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]"},
         {"[TOOL_CALLS][]", "[{\"name\": \"get_time\", \"arguments\": {}}]"}},
        {TB_TOOL_FORMAT_DEEPSEEK,
         {DS_CALLS_BEGIN DS_CALL_BEGIN
          "function" DS_SEP
          "get_weather\n```json\n{\"city\": \"Paris\"}\n```" DS_CALL_END DS_CALLS_END},
         {DS_CALLS_BEGIN DS_CALL_BEGIN
          "function" DS_SEP
          "get_weather\n```json\n{\"town\": \"Paris\"}\n```" DS_CALL_END DS_CALLS_END}},
    };
    json_t *tools = s_tools();
    for (size_t k = 0; k < sizeof(cases) / sizeof(*cases); k++) {
        char err[256] = "", *text = NULL;
        size_t len = 0;
        int rc = tb_tool_format_gbnf(cases[k].f, tools, NULL, true, &text, &len, err,
                                     sizeof(err));
        if (rc != 0) {
            fail_msg("%s: %s", tb_tool_format_name(cases[k].f), err);
        }
        tb_grammar_t *g = NULL;
        if (tb_grammar_parse_gbnf(text, len, &g, err, sizeof(err)) != 0) {
            fail_msg("%s grammar refused: %s\n%s", tb_tool_format_name(cases[k].f), err, text);
        }
        tb_grammar_cache_t *c = NULL;
        assert_int_equal(tb_grammar_cache_new(g, trie, &c), 0);
        for (size_t i = 0; i < 3 && cases[k].good[i]; i++) {
            if (!s_accepts(c, cases[k].good[i])) {
                fail_msg("%s refuses %s", tb_tool_format_name(cases[k].f), cases[k].good[i]);
            }
            /* and the parser reads what the grammar allows as calls, with no content */
            struct result r;
            s_parse(cases[k].f, false, cases[k].good[i], 3, 0, &r);
            assert_string_equal(r.content, "");
            assert_true(r.n_calls >= 1);
        }
        for (size_t i = 0; i < 4 && cases[k].bad[i]; i++) {
            if (s_accepts(c, cases[k].bad[i])) {
                fail_msg("%s accepts %s", tb_tool_format_name(cases[k].f), cases[k].bad[i]);
            }
        }
        tb_grammar_cache_destroy(&c);
        tb_grammar_destroy(&g);
        free(text);
    }
    /* a named function: only that one; one call without `parallel` */
    char err[256] = "", *text = NULL;
    size_t len = 0;
    assert_int_equal(tb_tool_format_gbnf(TB_TOOL_FORMAT_HERMES, tools, "get_time", false, &text,
                                         &len, err, sizeof(err)),
                     0);
    tb_grammar_t *g = NULL;
    assert_int_equal(tb_grammar_parse_gbnf(text, len, &g, err, sizeof(err)), 0);
    tb_grammar_cache_t *c = NULL;
    assert_int_equal(tb_grammar_cache_new(g, trie, &c), 0);
    assert_true(s_accepts(c, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n"
                             "</tool_call>"));
    assert_false(s_accepts(c, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                              "{\"city\": \"x\"}}\n</tool_call>"));
    assert_false(s_accepts(c, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n"
                              "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", "
                              "\"arguments\": {}}\n</tool_call>"));
    tb_grammar_cache_destroy(&c);
    tb_grammar_destroy(&g);
    free(text);
    assert_int_equal(tb_tool_format_gbnf(TB_TOOL_FORMAT_HERMES, tools, "nope", false, &text, &len,
                                         err, sizeof(err)),
                     TB_EINVAL);
    assert_non_null(strstr(err, "nope"));
    json_decref(tools);
    tb_token_trie_destroy(&trie);
}

/* ---- reasoning ---- */

static void s_think(bool opened, const char *text, size_t piece, char *reasoning, char *content,
                    size_t cap)
{
    tb_reasoning_parser_t *p = NULL;
    assert_int_equal(tb_reasoning_parser_new(opened, &p), 0);
    reasoning[0] = content[0] = 0;
    size_t len = strlen(text);
    for (size_t at = 0; at <= len;
         at = at + piece < len ? at + piece : (at < len ? len : len + 1)) {
        size_t n = piece < len - at ? piece : len - at;
        if (at == len) {
            assert_int_equal(tb_reasoning_parser_finish(p), 0);
        } else {
            assert_int_equal(tb_reasoning_parser_push(p, text + at, n), 0);
        }
        size_t rl, cl;
        const char *r = tb_reasoning_parser_reasoning(p, &rl);
        const char *c = tb_reasoning_parser_content(p, &cl);
        assert_true(strlen(reasoning) + rl < cap && strlen(content) + cl < cap);
        if (r) {
            strncat(reasoning, r, rl);
        }
        if (c) {
            strncat(content, c, cl);
        }
        tb_reasoning_parser_take(p);
        if (at == len) {
            break;
        }
    }
    tb_reasoning_parser_destroy(&p);
}

static void test_reasoning(void **state)
{
    (void)state;
    struct {
        bool opened;
        const char *text, *reasoning, *content;
    } cases[] = {
        /* Qwen3 / QwQ: the answer opens the block */
        {false, "<think>\nThe user greets.\n</think>\n\nHello!", "The user greets.\n", "Hello!"},
        /* R1 distills: the prompt opened it */
        {true, "Two plus two.\n</think>\n\nIt is 4.", "Two plus two.\n", "It is 4."},
        /* cut by max_tokens inside the block */
        {true, "Let me think about </thi", "Let me think about </thi", ""},
        {false, "<think>still going", "still going", ""},
        /* no block */
        {false, "Just an answer with <think> inside.", "", "Just an answer with <think> inside."},
        {false, "  <thin", "", "  <thin"},
        /* Qwen3 with thinking off: the prompt closed an empty block */
        {false, "Plain.", "", "Plain."},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        for (size_t piece = 1; piece <= 64; piece = piece * 3 + 1) {
            char r[256], c[256];
            s_think(cases[i].opened, cases[i].text, piece, r, c, sizeof(r));
            if (strcmp(r, cases[i].reasoning) != 0 || strcmp(c, cases[i].content) != 0) {
                fail_msg("case %zu, pieces of %zu: reasoning '%s' content '%s'", i, piece, r, c);
            }
        }
    }
    const char *r1 = "<|User|>2+2?<|Assistant|><think>\n";
    assert_true(tb_reasoning_prompt_opens(r1, strlen(r1)));
    const char *q3 = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    assert_false(tb_reasoning_prompt_opens(q3, strlen(q3)));
    assert_false(tb_reasoning_prompt_opens("hello", 5));
    tb_reasoning_format_t f;
    assert_int_equal(tb_reasoning_format_from_name("deepseek_r1", &f), 0);
    assert_int_equal(f, TB_REASONING_THINK);
    assert_int_equal(tb_reasoning_format_from_name("gpt_oss", &f), TB_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hermes),        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_mistral),       cmocka_unit_test(test_deepseek),
        cmocka_unit_test(test_malformed),     cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_stream_pieces), cmocka_unit_test(test_detect),
        cmocka_unit_test(test_gbnf),          cmocka_unit_test(test_reasoning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
