/* Unit tests of tb_oai_response (over the SDK's struct tb_buf): every body and frame parses as JSON with
 * the OpenAI shape, strings are escaped (invalid UTF-8 repaired), streams frame correctly. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/http/tb_oai_response.h" /* plugin-private header */

static json_t *load(const char *s, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &e);
    if (!j) {
        print_error("not JSON (%s): %.*s\n", e.text, (int)len, s);
    }
    assert_non_null(j);
    return j;
}

static void test_json_string(void **state)
{
    (void)state;
    struct tb_buf b;
    tb_buf_init(&b);
    assert_int_equal(tb_oai_json_string(&b, "plain", 5), 0);
    assert_string_equal(b.data, "\"plain\"");
    tb_buf_clear(&b);
    const char tricky[] = "q\"b\\n\nt\t\x01 \xc3\xa9 \xe2\x82\xac";
    assert_int_equal(tb_oai_json_string(&b, tricky, sizeof(tricky) - 1), 0);
    json_t *j = load((const char *)b.data, b.len);
    assert_true(json_is_string(j));
    assert_string_equal(json_string_value(j), tricky);
    json_decref(j);
    tb_buf_clear(&b);
    /* invalid UTF-8 (lone continuation, truncated sequence, overlong) becomes U+FFFD */
    const char bad[] = "a\x80z\xe2\x82\xc0\xaf"
                       "b";
    assert_int_equal(tb_oai_json_string(&b, bad, sizeof(bad) - 1), 0);
    j = load((const char *)b.data, b.len);
    const char *v = json_string_value(j);
    assert_non_null(strstr(v, "a\xef\xbf\xbdz"));
    assert_int_equal(v[strlen(v) - 1], 'b');
    json_decref(j);
    tb_buf_free(&b);
}

static void test_error_body(void **state)
{
    (void)state;
    struct tb_oai_error e;
    tb_oai_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                     "the model '%s' does not exist", "x\"y");
    size_t len;
    char *body = tb_oai_error_body(&e, &len);
    json_t *j = load(body, len);
    json_t *err = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(err, "message")),
                        "the model 'x\"y' does not exist");
    assert_string_equal(json_string_value(json_object_get(err, "type")), "invalid_request_error");
    assert_string_equal(json_string_value(json_object_get(err, "param")), "model");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "model_not_found");
    json_decref(j);
    free(body);
    tb_oai_error_set(&e, 500, "server_error", NULL, NULL, "boom");
    body = tb_oai_error_body(&e, &len);
    j = load(body, len);
    err = json_object_get(j, "error");
    assert_true(json_is_null(json_object_get(err, "param")));
    assert_true(json_is_null(json_object_get(err, "code")));
    json_decref(j);
    free(body);
}

static const struct tb_oai_head s_chat = {.api = TB_OAI_CHAT,
                                          .id = "chatcmpl-1",
                                          .model = "m/1",
                                          .created = 1700000000,
                                          .fingerprint = "fp_x"};
static const struct tb_oai_head s_cmpl = {
    .api = TB_OAI_COMPLETIONS, .id = "cmpl-1", .model = "m", .created = 5, .fingerprint = "fp_y"};

static void test_final_chat(void **state)
{
    (void)state;
    struct tb_oai_usage u = {.prompt_tokens = 3,
                             .completion_tokens = 4,
                             .cached_tokens = 2,
                             .has_cached_tokens = true};
    size_t len;
    char *body = tb_oai_final_body(&s_chat, "h\xc3\xa9llo \"x\"", 10, "stop", NULL, &u, &len);
    json_t *j = load(body, len);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "chatcmpl-1");
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    assert_int_equal(json_integer_value(json_object_get(j, "created")), 1700000000);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "m/1");
    assert_string_equal(json_string_value(json_object_get(j, "system_fingerprint")), "fp_x");
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    assert_int_equal(json_integer_value(json_object_get(c, "index")), 0);
    json_t *msg = json_object_get(c, "message");
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(msg, "content")), "h\xc3\xa9llo \"x\"");
    assert_true(json_is_null(json_object_get(c, "logprobs")));
    assert_string_equal(json_string_value(json_object_get(c, "finish_reason")), "stop");
    json_t *us = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(us, "prompt_tokens")), 3);
    assert_int_equal(json_integer_value(json_object_get(us, "completion_tokens")), 4);
    assert_int_equal(json_integer_value(json_object_get(us, "total_tokens")), 7);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(us, "prompt_tokens_details"),
                                         "cached_tokens")),
                     2);
    json_decref(j);
    free(body);
}

/* Reasoning and tool calls accumulated from deltas into the message; streamed as deltas. */
static void test_parts(void **state)
{
    (void)state;
    tb_oai_parts_t *p = tb_oai_parts_new();
    assert_non_null(p);
    struct tb_msg_tool_call_delta d1[] = {
        {.index = 0, .id = "call_a", .name = "get_weather", .arguments = ""},
        {.index = 0, .arguments = "{\"city\": "}};
    struct tb_msg_tool_call_delta d2[] = {
        {.index = 0, .arguments = "\"Paris\"}"},
        {.index = 1, .id = "call_b", .name = "f", .arguments = "{}"}};
    struct tb_msg_gen_chunk c1 = {.reasoning = "thinking ",
                                  .tool_calls = d1,
                                  .tool_calls_count = 2};
    struct tb_msg_gen_chunk c2 = {.reasoning = "done", .tool_calls = d2, .tool_calls_count = 2};
    assert_int_equal(tb_oai_parts_add(p, &c1), 0);
    assert_int_equal(tb_oai_parts_add(p, &c2), 0);
    struct tb_oai_usage u = {.prompt_tokens = 3,
                             .completion_tokens = 9,
                             .reasoning_tokens = 2,
                             .has_reasoning_tokens = true};
    size_t len;
    char *body = tb_oai_final_body_parts(&s_chat, "", 0, p, "tool_calls", NULL, &u, &len);
    json_t *j = load(body, len);
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    json_t *msg = json_object_get(c, "message");
    assert_true(json_is_null(json_object_get(msg, "content")));
    assert_string_equal(json_string_value(json_object_get(msg, "reasoning_content")),
                        "thinking done");
    assert_string_equal(json_string_value(json_object_get(msg, "reasoning")), "thinking done");
    json_t *calls = json_object_get(msg, "tool_calls");
    assert_int_equal(json_array_size(calls), 2);
    json_t *k0 = json_array_get(calls, 0);
    assert_string_equal(json_string_value(json_object_get(k0, "id")), "call_a");
    assert_string_equal(json_string_value(json_object_get(k0, "type")), "function");
    json_t *f0 = json_object_get(k0, "function");
    assert_string_equal(json_string_value(json_object_get(f0, "name")), "get_weather");
    assert_string_equal(json_string_value(json_object_get(f0, "arguments")),
                        "{\"city\": \"Paris\"}");
    assert_string_equal(json_string_value(json_object_get(c, "finish_reason")), "tool_calls");
    json_t *det = json_object_get(json_object_get(j, "usage"), "completion_tokens_details");
    assert_int_equal(json_integer_value(json_object_get(det, "reasoning_tokens")), 2);
    json_decref(j);
    free(body);
    tb_oai_parts_destroy(&p);
    assert_null(p);

    /* streamed: one frame for the reasoning, one for the calls */
    tb_oai_stream_t *st = tb_oai_stream_new(&s_chat, false);
    struct tb_buf out;
    tb_buf_init(&out);
    assert_int_equal(tb_oai_stream_parts(st, &out, &c1), 0);
    const char *f1 = (const char *)out.data;
    assert_memory_equal(f1, "data: ", 6);
    const char *f2 = strstr(f1 + 6, "\n\ndata: ");
    assert_non_null(f2);
    json_t *e1 = load(f1 + 6, (size_t)(f2 - f1 - 6));
    json_t *e2 = load(f2 + 8, strlen(f2 + 8) - 2);
    json_t *dl1 = json_object_get(json_array_get(json_object_get(e1, "choices"), 0), "delta");
    assert_string_equal(json_string_value(json_object_get(dl1, "reasoning_content")),
                        "thinking ");
    json_t *dl2 = json_object_get(json_array_get(json_object_get(e2, "choices"), 0), "delta");
    json_t *tc = json_object_get(dl2, "tool_calls");
    assert_int_equal(json_array_size(tc), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tc, 0), "id")),
                        "call_a");
    assert_null(json_object_get(json_array_get(tc, 1), "id")); /* a later piece: no id */
    assert_string_equal(json_string_value(
                            json_object_get(json_object_get(json_array_get(tc, 1), "function"),
                                            "arguments")),
                        "{\"city\": ");
    json_decref(e1);
    json_decref(e2);
    tb_buf_free(&out);
    tb_oai_stream_destroy(&st);
}

static void test_final_completions_logprobs(void **state)
{
    (void)state;
    tb_oai_logprobs_t *lp = tb_oai_logprobs_new(TB_OAI_COMPLETIONS, 1);
    assert_non_null(lp);
    struct tb_msg_top_logprob top[2] = {{.token_id = 5, .logprob = -0.5, .text = "ab"},
                                        {.token_id = 6, .logprob = -1.5, .text = "cd"}};
    struct tb_msg_token_logprob v[2] = {
        {.token_id = 5, .logprob = -0.5, .text = "ab", .top = top, .top_count = 2},
        {.token_id = 9, .logprob = -1.0 / 0.0, .text = NULL, .top = NULL, .top_count = 0},
    };
    tb_oai_logprobs_skip(lp, 4); /* echo of a 4-byte prompt */
    assert_int_equal(tb_oai_logprobs_add(lp, v, 2), 0);
    struct tb_oai_usage u = {.prompt_tokens = 1, .completion_tokens = 2};
    size_t len;
    char *body = tb_oai_final_body(&s_cmpl, "abX", 3, "length", tb_oai_logprobs_json(lp), &u,
                                   &len);
    json_t *j = load(body, len);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "text")), "abX");
    assert_string_equal(json_string_value(json_object_get(c, "finish_reason")), "length");
    json_t *l = json_object_get(c, "logprobs");
    assert_string_equal(json_string_value(json_array_get(json_object_get(l, "tokens"), 0)), "ab");
    assert_string_equal(json_string_value(json_array_get(json_object_get(l, "tokens"), 1)),
                        "token_id:9");
    assert_true(json_real_value(json_array_get(json_object_get(l, "token_logprobs"), 1)) ==
                -9999.0);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(l, "text_offset"), 0)), 4);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(l, "text_offset"), 1)), 6);
    json_t *t0 = json_array_get(json_object_get(l, "top_logprobs"), 0);
    assert_int_equal(json_object_size(t0), 1); /* top_n = 1 */
    assert_true(json_real_value(json_object_get(t0, "ab")) == -0.5);
    json_decref(j);
    free(body);
    tb_oai_logprobs_destroy(&lp);
    assert_null(lp);
}

static void test_chat_logprobs(void **state)
{
    (void)state;
    tb_oai_logprobs_t *lp = tb_oai_logprobs_new(TB_OAI_CHAT, 2);
    struct tb_msg_top_logprob top[1] = {{.token_id = 1, .logprob = -0.25, .text = "A"}};
    struct tb_msg_token_logprob v = {
        .token_id = 1, .logprob = -0.25, .text = "A", .top = top, .top_count = 1};
    assert_int_equal(tb_oai_logprobs_add(lp, &v, 1), 0);
    json_t *c = json_object_get(tb_oai_logprobs_json(lp), "content");
    assert_int_equal(json_array_size(c), 1);
    json_t *e = json_array_get(c, 0);
    assert_string_equal(json_string_value(json_object_get(e, "token")), "A");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(e, "bytes"), 0)), 65);
    assert_int_equal(json_array_size(json_object_get(e, "top_logprobs")), 1);
    tb_oai_logprobs_clear(lp);
    assert_int_equal(json_array_size(json_object_get(tb_oai_logprobs_json(lp), "content")), 0);
    tb_oai_logprobs_destroy(&lp);
}

/* Splits "data: ...\n\n" frames; returns how many and checks each is well formed. */
static int frames(const char *s, size_t len, json_t **out, int max, bool *done)
{
    int n = 0;
    *done = false;
    const char *p = s, *end = s + len;
    while (p < end) {
        assert_true(strncmp(p, "data: ", 6) == 0);
        const char *e = strstr(p, "\n\n");
        assert_non_null(e);
        const char *payload = p + 6;
        if ((size_t)(e - payload) == 6 && strncmp(payload, "[DONE]", 6) == 0) {
            *done = true;
            assert_true(e + 2 == end); /* [DONE] is last */
        } else {
            assert_true(n < max);
            out[n++] = load(payload, (size_t)(e - payload));
        }
        p = e + 2;
    }
    return n;
}

static void test_stream_chat(void **state)
{
    (void)state;
    tb_oai_stream_t *s = tb_oai_stream_new(&s_chat, true);
    assert_non_null(s);
    struct tb_buf b;
    tb_buf_init(&b);
    assert_int_equal(tb_oai_stream_open(s, &b), 0);
    assert_int_equal(tb_oai_stream_text(s, &b, "He", 2, NULL), 0);
    assert_int_equal(tb_oai_stream_text(s, &b, "llo\n", 4, NULL), 0);
    struct tb_oai_usage u = {.prompt_tokens = 2, .completion_tokens = 2};
    assert_int_equal(tb_oai_stream_finish(s, &b, "stop", &u), 0);
    json_t *f[8];
    bool done;
    int n = frames((const char *)b.data, b.len, f, 8, &done);
    assert_true(done);
    assert_int_equal(n, 5);
    for (int i = 0; i < n; i++) {
        assert_string_equal(json_string_value(json_object_get(f[i], "object")),
                            "chat.completion.chunk");
        assert_string_equal(json_string_value(json_object_get(f[i], "id")), "chatcmpl-1");
        assert_non_null(json_object_get(f[i], "usage"));
    }
    json_t *d0 = json_object_get(json_array_get(json_object_get(f[0], "choices"), 0), "delta");
    assert_string_equal(json_string_value(json_object_get(d0, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(d0, "content")), "");
    json_t *c2 = json_array_get(json_object_get(f[2], "choices"), 0);
    assert_string_equal(json_string_value(
                            json_object_get(json_object_get(c2, "delta"), "content")),
                        "llo\n");
    assert_true(json_is_null(json_object_get(c2, "finish_reason")));
    assert_true(json_is_null(json_object_get(f[2], "usage")));
    json_t *c3 = json_array_get(json_object_get(f[3], "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c3, "finish_reason")), "stop");
    assert_int_equal(json_object_size(json_object_get(c3, "delta")), 0);
    assert_int_equal(json_array_size(json_object_get(f[4], "choices")), 0);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(f[4], "usage"), "total_tokens")),
                     4);
    for (int i = 0; i < n; i++) {
        json_decref(f[i]);
    }
    tb_buf_free(&b);
    tb_oai_stream_destroy(&s);
    assert_null(s);
}

static void test_stream_completions_and_error(void **state)
{
    (void)state;
    tb_oai_stream_t *s = tb_oai_stream_new(&s_cmpl, false);
    struct tb_buf b;
    tb_buf_init(&b);
    assert_int_equal(tb_oai_stream_open(s, &b), 0);
    assert_int_equal(b.len, 0); /* completions have no role frame */
    assert_int_equal(tb_oai_stream_text(s, &b, "x", 1, NULL), 0);
    struct tb_oai_error e;
    tb_oai_error_set(&e, 502, "server_error", "upstream_error", NULL, "instance gone");
    assert_int_equal(tb_oai_stream_error(s, &b, &e), 0);
    json_t *f[4];
    bool done;
    int n = frames((const char *)b.data, b.len, f, 4, &done);
    assert_true(done);
    assert_int_equal(n, 2);
    json_t *c0 = json_array_get(json_object_get(f[0], "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "text")), "x");
    assert_null(json_object_get(f[0], "usage")); /* no include_usage: no usage key */
    json_t *err = json_object_get(f[1], "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "upstream_error");
    json_decref(f[0]);
    json_decref(f[1]);
    tb_buf_free(&b);
    tb_oai_stream_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_final_chat),
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_final_completions_logprobs),
        cmocka_unit_test(test_chat_logprobs),
        cmocka_unit_test(test_stream_chat),
        cmocka_unit_test(test_stream_completions_and_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
