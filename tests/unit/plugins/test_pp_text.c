/* Unit tests of the preprocessor's text out (tb_pp_text) and usage (tb_pp_usage): ids become
 * whole UTF-8 characters, a stop string spanning tokens ends the text without itself (the id
 * completing it counted), text that could begin a stop string is held and released at the end,
 * takes split the text per chunk, logprob token texts, running out of memory is an error and
 * not a shorter text; the usage message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../plugins/preprocessor/tb_pp_parse.h" /* plugin-private header */
#include "../../../plugins/preprocessor/tb_pp_text.h"  /* plugin-private header */
#include "../../../plugins/preprocessor/tb_pp_usage.h" /* plugin-private header */
#include "tb_errors.h"
#include "tb_tok_utf8.h"
#include "tb_tokenizer.h"
#include "tb_utf8.h"

/* A byte-level BPE vocabulary without merges: token id b is byte b. */
static tb_tokenizer_t *g_tok;

static int setup(void **state)
{
    (void)state;
    char *json = malloc(8192);
    assert_non_null(json);
    int n = sprintf(
        json, "{\"added_tokens\":[{\"id\":256,\"content\":\"[TOOL_CALLS]\",\"special\":true}],"
              "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
              "\"decoder\":{\"type\":\"ByteLevel\"},"
              "\"model\":{\"type\":\"BPE\",\"merges\":[],\"vocab\":{");
    for (int b = 0; b < 256; b++) {
        char cp[5] = {0};
        tb_utf8_encode(tb_tok_byte_to_cp((uint8_t)b), cp);
        bool esc = cp[0] == '"' || cp[0] == '\\';
        n += sprintf(json + n, "%s\"%s%s\":%d", b == 0 ? "" : ",", esc ? "\\" : "", cp, b);
    }
    n += sprintf(json + n, "}}}");
    char err[256] = "";
    int rc = tb_tokenizer_load_hf_memory(json, (size_t)n, NULL, 0, &g_tok, err, sizeof(err));
    free(json);
    if (rc != 0) {
        fail_msg("cannot build the test tokenizer: %s", err);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tb_tokenizer_destroy(&g_tok);
    return 0;
}

/* The ids of a byte string. */
static size_t ids_of(const char *s, int32_t *ids)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        ids[i] = (uint8_t)s[i];
    }
    return n;
}

/* Pushes `s` as ids; appends what is released to `acc`.  Returns push's result. */
static int push(tb_pp_text_t *t, const char *s, char *acc, size_t *used)
{
    int32_t ids[64];
    size_t n = ids_of(s, ids);
    int rc = tb_pp_text_push(t, ids, n, used);
    size_t len = 0;
    const char *out = tb_pp_text_take(t, &len);
    if (out) {
        assert_int_equal(strlen(out), len);
        strcat(acc, out);
    } else {
        assert_int_equal(len, 0);
    }
    return rc;
}

static void test_plain_text_and_utf8(void **state)
{
    (void)state;
    int32_t prompt[8];
    size_t np = ids_of("Hi", prompt);
    tb_pp_text_t *t = NULL;
    assert_int_equal(tb_pp_text_new(g_tok, prompt, np, NULL, 0, &t), 0);
    char acc[128] = "";
    size_t used = 0;
    assert_int_equal(push(t, " caf", acc, &used), 0);
    assert_int_equal(used, 4);
    assert_string_equal(acc, " caf"); /* the continuation keeps its leading space */
    /* "é" is two bytes: nothing is released until the character is whole */
    int32_t e1 = 0xc3, e2 = 0xa9;
    assert_int_equal(tb_pp_text_push(t, &e1, 1, &used), 0);
    size_t len = 99;
    assert_null(tb_pp_text_take(t, &len));
    assert_int_equal(len, 0);
    assert_int_equal(tb_pp_text_push(t, &e2, 1, &used), 0);
    assert_string_equal(tb_pp_text_take(t, &len), "\xc3\xa9");
    assert_int_equal(len, 2);
    /* a take with nothing new is empty */
    assert_null(tb_pp_text_take(t, &len));
    assert_int_equal(tb_pp_text_finish(t), 0);
    assert_null(tb_pp_text_take(t, &len));
    assert_false(tb_pp_text_stopped(t));
    tb_pp_text_destroy(&t);
    assert_null(t);
    tb_pp_text_destroy(&t);
}

/* A special token is left out, unless it is markup a parser needs (kept). */
static void test_keep_special(void **state)
{
    (void)state;
    int32_t ids[] = {'a', 256, 'b'};
    for (int keep = 0; keep < 2; keep++) {
        tb_pp_text_t *t = NULL;
        assert_int_equal(tb_pp_text_new(g_tok, NULL, 0, NULL, 0, &t), 0);
        int32_t k = 256;
        assert_int_equal(tb_pp_text_keep_special(t, &k, keep ? 1 : 0), 0);
        size_t used = 0, len = 0;
        assert_int_equal(tb_pp_text_push(t, ids, 3, &used), 0);
        assert_int_equal(used, 3);
        assert_string_equal(tb_pp_text_take(t, &len), keep ? "a[TOOL_CALLS]b" : "ab");
        tb_pp_text_destroy(&t);
    }
}

/* Reasoning, content and tool calls apart; reasoning tokens counted. */
static void test_parse(void **state)
{
    (void)state;
    json_error_t je;
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]", 0, &je);
    struct tb_pp_parse_config cfg = {.reasoning = TB_REASONING_THINK,
                                     .think_open = true,
                                     .tools_format = TB_TOOL_FORMAT_HERMES,
                                     .tools = tools,
                                     .seed = 1};
    tb_pp_parse_t *p = NULL;
    assert_int_equal(tb_pp_parse_new(&cfg, &p), 0);
    json_decref(tools);
    const char *pieces[] = {
        "hmm",  " ok",   "</think>",
        "\n\n", "Sure.", "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>"};
    char reasoning[64] = "", content[64] = "";
    size_t calls = 0;
    for (size_t i = 0; i <= 6; i++) {
        if (i < 6) {
            assert_int_equal(tb_pp_parse_push(p, pieces[i], strlen(pieces[i]), true), 0);
        } else {
            assert_int_equal(tb_pp_parse_finish(p), 0);
        }
        struct tb_msg_gen_chunk c = {0};
        assert_int_equal(tb_pp_parse_take(p, &c), 0);
        strcat(reasoning, c.reasoning ? c.reasoning : "");
        strcat(content, c.text ? c.text : "");
        for (size_t k = 0; k < c.tool_calls_count; k++) {
            if (c.tool_calls[k].name) {
                assert_string_equal(c.tool_calls[k].name, "f");
                calls++;
            }
        }
    }
    assert_string_equal(reasoning, "hmm ok");
    assert_string_equal(content, "Sure.");
    assert_int_equal(calls, 1);
    assert_int_equal(tb_pp_parse_calls(p), 1);
    assert_int_equal(tb_pp_parse_reasoning_tokens(p), 3); /* "hmm", " ok", "</think>" */
    tb_pp_parse_destroy(&p);
}

static void test_stop_across_tokens(void **state)
{
    (void)state;
    const char *stops[] = {"END", "\n\n"};
    tb_pp_text_t *t = NULL;
    assert_int_equal(tb_pp_text_new(g_tok, NULL, 0, stops, 2, &t), 0);
    char acc[128] = "";
    size_t used = 0;
    assert_int_equal(push(t, "one E", acc, &used), 0);
    assert_string_equal(acc, "one "); /* "E" may begin "END": held */
    assert_int_equal(push(t, "Nx EN", acc, &used), 0);
    assert_string_equal(acc, "one ENx ");
    /* "D" completes the stop string: the rest of the ids are not consumed */
    assert_int_equal(push(t, "D and more", acc, &used), 1);
    assert_int_equal(used, 1);
    assert_string_equal(acc, "one ENx ");
    assert_true(tb_pp_text_stopped(t));
    assert_int_equal(push(t, "zzz", acc, &used), 1);
    assert_int_equal(used, 0);
    assert_int_equal(tb_pp_text_finish(t), 1);
    tb_pp_text_destroy(&t);
}

static void test_finish_releases_held_text(void **state)
{
    (void)state;
    const char *stops[] = {"STOP"};
    tb_pp_text_t *t = NULL;
    assert_int_equal(tb_pp_text_new(g_tok, NULL, 0, stops, 1, &t), 0);
    char acc[128] = "";
    size_t used = 0;
    assert_int_equal(push(t, "last ST", acc, &used), 0);
    assert_string_equal(acc, "last ");
    assert_int_equal(tb_pp_text_finish(t), 0);
    size_t len = 0;
    assert_string_equal(tb_pp_text_take(t, &len), "ST");
    tb_pp_text_destroy(&t);
}

static void test_token_text(void **state)
{
    (void)state;
    char *s = NULL;
    assert_int_equal(tb_pp_token_text(g_tok, 'x', &s), 0);
    assert_string_equal(s, "x");
    free(s);
    assert_int_equal(tb_pp_token_text(g_tok, ' ', &s), 0);
    assert_string_equal(s, " ");
    free(s);
}

#ifndef TB_ASAN
/* In a child whose address space is capped just above what it uses, a text that must grow past
 * the cap makes the push fail with TB_ENOMEM (it must not return a cut text as success).  Not in
 * the ASan build: ASan reserves far more address space than any such cap. */
static void test_out_of_memory_is_an_error(void **state)
{
    (void)state;
    size_t n = 16u << 20; /* 16 Mi ids of 'a': 16 MiB of text */
    int32_t *ids = malloc(n * sizeof(*ids));
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++) {
        ids[i] = 'a';
    }
    tb_pp_text_t *t = NULL;
    assert_int_equal(tb_pp_text_new(g_tok, NULL, 0, NULL, 0, &t), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1) {
            _exit(3);
        }
        fclose(f);
        rlim_t cap = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (4u << 20);
        struct rlimit rl = {.rlim_cur = cap, .rlim_max = cap};
        if (setrlimit(RLIMIT_AS, &rl) != 0) {
            _exit(4);
        }
        size_t used = 0;
        int rc = tb_pp_text_push(t, ids, n, &used);
        _exit(rc == TB_ENOMEM ? 0 : rc == 0 ? 1 : 2);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* 1: the push claimed success */
    /* without the cap the same push succeeds, whole */
    size_t used = 0;
    assert_int_equal(tb_pp_text_push(t, ids, n, &used), 0);
    assert_int_equal(used, n);
    size_t len = 0;
    assert_non_null(tb_pp_text_take(t, &len));
    assert_int_equal(len, n);
    tb_pp_text_destroy(&t);
    free(ids);
}
#endif

static void test_usage(void **state)
{
    (void)state;
    struct tb_pp_usage u;
    tb_pp_usage_init(&u, 12);
    tb_pp_usage_add_completion(&u, 3);
    tb_pp_usage_add_completion(&u, 2);
    struct tb_msg_usage m = tb_pp_usage_message(&u);
    assert_int_equal(m.prompt_tokens, 12);
    assert_int_equal(m.completion_tokens, 5);
    assert_false(m.has_cached_tokens); /* not reported: absent, not 0 */
    struct tb_msg_usage eng = {.cached_tokens = 8, .has_cached_tokens = true};
    tb_pp_usage_engine(&u, &eng);
    tb_pp_usage_engine(&u, NULL);
    struct tb_msg_usage none = {0};
    tb_pp_usage_engine(&u, &none); /* a chunk without cached tokens keeps the last report */
    m = tb_pp_usage_message(&u);
    assert_true(m.has_cached_tokens);
    assert_int_equal(m.cached_tokens, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_and_utf8),
        cmocka_unit_test(test_stop_across_tokens),
        cmocka_unit_test(test_keep_special),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_finish_releases_held_text),
        cmocka_unit_test(test_token_text),
#ifndef TB_ASAN
        cmocka_unit_test(test_out_of_memory_is_an_error),
#endif
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
