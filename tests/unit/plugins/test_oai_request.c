/* Unit tests of tb_oai_request: OpenAI request bodies decoded into gen_request, and every
 * validation error naming its parameter with status 400. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/http/tb_oai_request.h" /* plugin-private header */
#include "tb_errors.h"

static struct tb_oai_request *parse_ok(tb_oai_api_t api, const char *body)
{
    struct tb_oai_request *r = NULL;
    struct tb_oai_error e;
    int rc = tb_oai_request_parse(api, body, strlen(body), &r, &e);
    if (rc != 0) {
        print_error("unexpected error for %s: %d %s (param %s)\n", body, e.status, e.message,
                    e.param);
    }
    assert_int_equal(rc, 0);
    assert_non_null(r);
    return r;
}

/* Asserts a 400 naming `param` ("" for none) and returns the message for further checks. */
static void parse_bad(tb_oai_api_t api, const char *body, const char *param, const char *needle)
{
    struct tb_oai_request *r = NULL;
    struct tb_oai_error e;
    memset(&e, 0, sizeof(e));
    int rc = tb_oai_request_parse(api, body, strlen(body), &r, &e);
    assert_int_equal(rc, TB_EINVAL);
    assert_null(r);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "invalid_request_error");
    assert_string_equal(e.param, param);
    if (needle && !strstr(e.message, needle)) {
        print_error("message '%s' lacks '%s'\n", e.message, needle);
        fail();
    }
}

static void test_chat_minimal(void **state)
{
    (void)state;
    struct tb_oai_request *r = parse_ok(
        TB_OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(r->api, TB_OAI_CHAT);
    assert_string_equal(r->model, "m");
    assert_string_equal(r->gen.model, "m");
    assert_string_equal(r->gen.mode, "chat");
    assert_int_equal(r->gen.messages_count, 1);
    assert_string_equal(r->gen.messages[0].role, "user");
    assert_string_equal(r->gen.messages[0].content, "hi");
    assert_false(r->stream);
    assert_false(r->gen.has_max_tokens);
    assert_true(r->gen.has_add_generation_prompt);
    assert_true(r->gen.add_generation_prompt);
    assert_null(r->gen.request_id);
    tb_oai_request_destroy(&r);
    assert_null(r);
}

static void test_chat_full(void **state)
{
    (void)state;
    struct tb_oai_request *r = parse_ok(
        TB_OAI_CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
        "\"text\":\"b\"}],\"name\":\"bob\"},{\"role\":\"assistant\",\"content\":null}],"
        "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":7,"
        "\"max_completion_tokens\":9,\"temperature\":0.5,\"top_p\":1,\"seed\":42,"
        "\"stop\":[\"x\",\"\",\"yz\"],\"presence_penalty\":-2,\"frequency_penalty\":2,"
        "\"logprobs\":true,\"top_logprobs\":3,\"n\":1,\"user\":\"u\",\"top_k\":40,"
        "\"min_p\":0.1,\"repetition_penalty\":1.1,\"ignore_eos\":true,\"min_tokens\":2,"
        "\"stop_token_ids\":[2,7],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}"
        "}],\"tool_choice\":\"auto\","
        "\"response_format\":{\"type\":\"text\"},\"logit_bias\":{},\"unknown_field\":[1]}");
    const struct tb_msg_gen_request *g = &r->gen;
    assert_int_equal(g->messages_count, 3);
    assert_string_equal(g->messages[1].content, "ab");
    assert_string_equal(g->messages[1].name, "bob");
    assert_null(g->messages[2].content);
    assert_true(r->stream);
    assert_true(r->include_usage);
    assert_true(g->has_max_tokens);
    assert_int_equal(g->max_tokens, 9); /* max_completion_tokens wins */
    assert_true(g->has_temperature);
    assert_true(g->temperature == 0.5);
    assert_true(g->has_top_p);
    assert_true(g->has_seed);
    assert_int_equal(g->seed, 42);
    assert_int_equal(g->stop_count, 2); /* the empty string is dropped */
    assert_string_equal(g->stop[0], "x");
    assert_string_equal(g->stop[1], "yz");
    assert_true(r->logprobs);
    assert_int_equal(r->top_logprobs, 3);
    assert_true(g->logprobs);
    assert_int_equal(g->top_logprobs, 3);
    assert_int_equal(g->top_k, 40);
    assert_true(g->has_min_p);
    assert_true(g->has_repetition_penalty);
    assert_true(g->ignore_eos);
    assert_int_equal(g->min_tokens, 2);
    assert_int_equal(g->stop_token_ids_count, 2);
    assert_int_equal(g->stop_token_ids[1], 7);
    assert_non_null(g->tools_json);
    assert_non_null(strstr(g->tools_json, "function"));
    tb_oai_request_destroy(&r);
}

static void test_completions(void **state)
{
    (void)state;
    struct tb_oai_request *r = parse_ok(TB_OAI_COMPLETIONS,
                                        "{\"model\":\"m\",\"prompt\":\"once\",\"logprobs\":2,"
                                        "\"echo\":true,\"stop\":\"\\n\"}");
    assert_string_equal(r->gen.mode, "completion");
    assert_string_equal(r->gen.prompt, "once");
    assert_true(r->gen.has_max_tokens);
    assert_int_equal(r->gen.max_tokens, TB_OAI_COMPLETIONS_DEFAULT_MAX_TOKENS);
    assert_true(r->logprobs);
    assert_int_equal(r->top_logprobs, 2);
    assert_true(r->echo);
    assert_int_equal(r->gen.stop_count, 1);
    assert_string_equal(r->gen.stop[0], "\n");
    tb_oai_request_destroy(&r);

    r = parse_ok(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"only\"],\"max_tokens\":3}");
    assert_string_equal(r->gen.prompt, "only");
    assert_int_equal(r->gen.max_tokens, 3);
    tb_oai_request_destroy(&r);

    r = parse_ok(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,2,3]}");
    assert_null(r->gen.prompt);
    assert_int_equal(r->gen.tokens_count, 3);
    assert_int_equal(r->gen.tokens[2], 3);
    tb_oai_request_destroy(&r);

    r = parse_ok(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[[5,6]]}");
    assert_int_equal(r->gen.tokens_count, 2);
    tb_oai_request_destroy(&r);
}

static void test_malformed(void **state)
{
    (void)state;
    parse_bad(TB_OAI_CHAT, "{\"model\":", "", "not valid JSON");
    parse_bad(TB_OAI_CHAT, "", "", "not valid JSON");
    parse_bad(TB_OAI_CHAT, "[1,2]", "", "must be a JSON object");
    parse_bad(TB_OAI_CHAT, "{\"messages\":[]}", "model", "required");
    parse_bad(TB_OAI_CHAT, "{\"model\":3,\"messages\":[]}", "model", "string");
    parse_bad(TB_OAI_CHAT, "{\"model\":\"m\"}", "messages", "required");
    parse_bad(TB_OAI_CHAT, "{\"model\":\"m\",\"messages\":{}}", "messages", "array");
    parse_bad(TB_OAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages", "at least one");
    parse_bad(TB_OAI_CHAT, "{\"model\":\"m\",\"messages\":[1]}", "messages[0]", "object");
    parse_bad(TB_OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
              "messages[0].role", "required");
    parse_bad(TB_OAI_CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}",
              "messages[0].role", "robot");
    parse_bad(TB_OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}",
              "messages[0].content", "required");
    parse_bad(TB_OAI_CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
              "\"image_url\"}]}]}",
              "messages[0].content[0].type", "image_url");
    /* a NUL byte inside a string is refused by the parser */
    parse_bad(TB_OAI_CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}",
              "", "not valid JSON");
}

static const char *s_chat_with(const char *extra, char *buf, size_t len)
{
    snprintf(buf, len,
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],%s}", extra);
    return buf;
}

/* Tools, tool_choice and the tool messages of a conversation. */
static void test_tools(void **state)
{
    (void)state;
    char b[2048];
    const char *tools =
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"parameters\":{\"type\":\"object\"}}},{\"type\":\"function\","
        "\"function\":{\"name\":\"get_time\"}}]";
    char with[1024];
    snprintf(with, sizeof(with),
             "%s,\"tool_choice\":{\"type\":\"function\",\"function\":"
             "{\"name\":\"get_time\"}},\"parallel_tool_calls\":false",
             tools);
    struct tb_oai_request *r = parse_ok(TB_OAI_CHAT, s_chat_with(with, b, sizeof(b)));
    assert_string_equal(r->gen.tool_choice, "function");
    assert_string_equal(r->gen.tool_choice_function, "get_time");
    assert_true(r->gen.has_parallel_tool_calls);
    assert_false(r->gen.parallel_tool_calls);
    assert_non_null(strstr(r->gen.tools_json, "get_weather"));
    tb_oai_request_destroy(&r);
    snprintf(with, sizeof(with), "%s,\"tool_choice\":\"required\",\"stream\":true", tools);
    r = parse_ok(TB_OAI_CHAT, s_chat_with(with, b, sizeof(b)));
    assert_string_equal(r->gen.tool_choice, "required");
    assert_true(r->gen.has_stream && r->gen.stream);
    tb_oai_request_destroy(&r);
    /* a conversation with a call and its result */
    r = parse_ok(
        TB_OAI_CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":"
        "\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"noon\"}]}");
    assert_non_null(strstr(r->gen.messages[1].tool_calls_json, "call_1"));
    assert_string_equal(r->gen.messages[2].tool_call_id, "call_1");
    tb_oai_request_destroy(&r);
    /* malformed definitions and choices: 400 naming the field */
    struct {
        const char *extra, *param;
    } bad[] = {
        {"\"tools\":[{\"type\":\"function\"}]", "tools[0].function"},
        {"\"tools\":[{\"type\":\"code\",\"function\":{\"name\":\"f\"}}]", "tools[0].type"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]",
         "tools[0].function.name"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":3}}]",
         "tools[0].function.parameters"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},{\"type\":"
         "\"function\",\"function\":{\"name\":\"f\"}}]",
         "tools[1].function.name"},
        {"\"tools\":[3]", "tools[0]"},
        {"\"tool_choice\":\"required\"", "tool_choice"},
        {"\"tool_choice\":\"always\"", "tool_choice"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":"
         "{\"type\":\"function\",\"function\":{\"name\":\"g\"}}",
         "tool_choice.function.name"},
        {"\"parallel_tool_calls\":1", "parallel_tool_calls"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        parse_bad(TB_OAI_CHAT, s_chat_with(bad[i].extra, b, sizeof(b)), bad[i].param, NULL);
    }
    parse_bad(TB_OAI_CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
              "messages[0].tool_call_id", "required");
    parse_bad(
        TB_OAI_CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":"
        "\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}]}",
        "messages[0].tool_calls[0].function.arguments", NULL);
    parse_bad(
        TB_OAI_CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":"
        "[]}]}",
        "messages[0].tool_calls", "assistant");
}

static void test_ranges_and_types(void **state)
{
    (void)state;
    char b[512];
    parse_bad(TB_OAI_CHAT, s_chat_with("\"temperature\":2.5", b, sizeof(b)), "temperature",
              "2.5");
    parse_bad(TB_OAI_CHAT, s_chat_with("\"temperature\":-0.1", b, sizeof(b)), "temperature",
              NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"temperature\":\"hot\"", b, sizeof(b)), "temperature",
              "number");
    parse_bad(TB_OAI_CHAT, s_chat_with("\"top_p\":0", b, sizeof(b)), "top_p", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"top_p\":1.01", b, sizeof(b)), "top_p", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"max_tokens\":0", b, sizeof(b)), "max_tokens", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"max_tokens\":1.5", b, sizeof(b)), "max_tokens",
              "integer");
    parse_bad(TB_OAI_CHAT, s_chat_with("\"max_tokens\":\"9\"", b, sizeof(b)), "max_tokens",
              "integer");
    parse_bad(TB_OAI_CHAT, s_chat_with("\"max_completion_tokens\":-1", b, sizeof(b)),
              "max_completion_tokens", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", b, sizeof(b)),
              "stop", "at most 4");
    parse_bad(TB_OAI_CHAT, s_chat_with("\"stop\":[\"a\",1]", b, sizeof(b)), "stop[1]", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"stop\":5", b, sizeof(b)), "stop", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"presence_penalty\":3", b, sizeof(b)),
              "presence_penalty", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"frequency_penalty\":-2.5", b, sizeof(b)),
              "frequency_penalty", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"n\":17", b, sizeof(b)), "n", "between 1 and 16");
    struct tb_oai_request *rn = parse_ok(TB_OAI_CHAT, s_chat_with("\"n\":16", b, sizeof(b)));
    assert_int_equal(rn->n, 16);
    tb_oai_request_destroy(&rn);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"n\":0", b, sizeof(b)), "n", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"stream\":\"yes\"", b, sizeof(b)), "stream", "boolean");
    parse_bad(TB_OAI_CHAT,
              s_chat_with("\"stream_options\":{\"include_usage\":true}", b, sizeof(b)),
              "stream_options", "stream");
    parse_bad(TB_OAI_CHAT,
              s_chat_with("\"stream\":true,\"stream_options\":{\"include_usage\":1}", b,
                          sizeof(b)),
              "stream_options.include_usage", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"top_logprobs\":2", b, sizeof(b)), "top_logprobs",
              "logprobs");
    parse_bad(TB_OAI_CHAT, s_chat_with("\"logprobs\":true,\"top_logprobs\":21", b, sizeof(b)),
              "top_logprobs", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"logit_bias\":{\"12\":5}", b, sizeof(b)), "logit_bias",
              "not supported");
    parse_bad(TB_OAI_CHAT, s_chat_with("\"response_format\":{\"type\":\"xml\"}", b, sizeof(b)),
              "response_format.type", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"seed\":\"x\"", b, sizeof(b)), "seed", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"min_tokens\":9,\"max_tokens\":3", b, sizeof(b)),
              "min_tokens", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"tools\":{}", b, sizeof(b)), "tools", NULL);
    /* null means absent */
    struct tb_oai_request *r = parse_ok(TB_OAI_CHAT,
                                        s_chat_with("\"temperature\":null,\"stop\":null", b,
                                                    sizeof(b)));
    assert_false(r->gen.has_temperature);
    assert_int_equal(r->gen.stop_count, 0);
    tb_oai_request_destroy(&r);
    /* an integral real is an integer */
    r = parse_ok(TB_OAI_CHAT, s_chat_with("\"max_tokens\":16.0,\"temperature\":0", b, sizeof(b)));
    assert_int_equal(r->gen.max_tokens, 16);
    tb_oai_request_destroy(&r);
}

/* response_format and the raw grammar: GBNF on the message, or a 400 naming the fault. */
static void test_structured_output(void **state)
{
    (void)state;
    char b[1024];
    struct tb_oai_request *r = parse_ok(TB_OAI_CHAT, s_chat_with("\"response_format\":{\"type\":"
                                                                 "\"text\"}",
                                                                 b, sizeof(b)));
    assert_null(r->gen.grammar);
    tb_oai_request_destroy(&r);
    r = parse_ok(TB_OAI_CHAT,
                 s_chat_with("\"response_format\":{\"type\":\"json_object\"}", b, sizeof(b)));
    assert_non_null(r->gen.grammar);
    assert_non_null(strstr(r->gen.grammar, "root ::="));
    tb_oai_request_destroy(&r);
    r = parse_ok(TB_OAI_COMPLETIONS,
                 "{\"model\":\"m\",\"prompt\":\"p\",\"response_format\":{\"type\":"
                 "\"json_schema\",\"json_schema\":{\"name\":\"n\",\"strict\":true,\"schema\":{"
                 "\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}}}}");
    assert_non_null(r->gen.grammar);
    tb_oai_request_destroy(&r);
    r = parse_ok(TB_OAI_COMPLETIONS,
                 "{\"model\":\"m\",\"prompt\":\"p\",\"grammar\":\"root ::= [a-z]+\"}");
    assert_string_equal(r->gen.grammar, "root ::= [a-z]+");
    tb_oai_request_destroy(&r);

    parse_bad(TB_OAI_CHAT,
              s_chat_with("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{"
                          "\"name\":\"n\",\"schema\":{\"properties\":{\"x\":{\"type\":"
                          "\"string\",\"pattern\":\"a+\"}}}}}",
                          b, sizeof(b)),
              "response_format.json_schema.schema", "'pattern' at '/properties/x'");
    parse_bad(TB_OAI_CHAT,
              s_chat_with("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{"
                          "\"name\":\"n\",\"schema\":{\"type\":\"strin\"}}}",
                          b, sizeof(b)),
              "response_format.json_schema.schema", "strin");
    parse_bad(TB_OAI_CHAT,
              s_chat_with("\"response_format\":{\"type\":\"json_schema\"}", b, sizeof(b)),
              "response_format.json_schema", "needs");
    parse_bad(TB_OAI_CHAT,
              s_chat_with("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{"
                          "\"schema\":{}}}",
                          b, sizeof(b)),
              "response_format.json_schema.name", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"grammar\":\"root ::= (\"", b, sizeof(b)), "grammar",
              "1:");
    parse_bad(TB_OAI_CHAT, s_chat_with("\"grammar\":\"\"", b, sizeof(b)), "grammar", NULL);
    parse_bad(TB_OAI_CHAT, s_chat_with("\"grammar\":7", b, sizeof(b)), "grammar", NULL);
    parse_bad(TB_OAI_CHAT,
              s_chat_with("\"grammar\":\"root ::= \\\"a\\\"\",\"response_format\":{\"type\":"
                          "\"json_object\"}",
                          b, sizeof(b)),
              "grammar", "cannot be combined");
}

static void test_completions_errors(void **state)
{
    (void)state;
    parse_bad(TB_OAI_COMPLETIONS, "{\"model\":\"m\"}", "prompt", "required");
    parse_bad(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", "prompt",
              "batched");
    parse_bad(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[]}", "prompt", NULL);
    parse_bad(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,-2]}", "prompt", "token id");
    parse_bad(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":{}}", "prompt", NULL);
    parse_bad(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"a\",\"logprobs\":6}", "logprobs",
              NULL);
    parse_bad(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"a\",\"best_of\":3}", "best_of",
              NULL);
    parse_bad(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"a\",\"suffix\":\"z\"}", "suffix",
              NULL);
    parse_bad(TB_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"a\",\"echo\":1}", "echo", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_minimal),      cmocka_unit_test(test_chat_full),
        cmocka_unit_test(test_completions),       cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_ranges_and_types),  cmocka_unit_test(test_completions_errors),
        cmocka_unit_test(test_structured_output), cmocka_unit_test(test_tools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
