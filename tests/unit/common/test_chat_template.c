/*
 * test_chat_template.c - tb_chat_template: message validation and flattening, the variables a
 * template sees, the fallback, Hugging Face model folders, and errors as 400-ready messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "tb_chat_template.h"
#include "tb_errors.h"

static json_t *s_json(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j) {
        fail_msg("bad test JSON: %s", jerr.text);
    }
    return j;
}

/* Applies `tpl` (NULL: fallback) to `messages` and returns the TB_E* code; out/err filled. */
static int s_apply(const char *tpl, const char *bos, const char *eos, const char *messages,
                   bool agp, const char *extra, char **out, char *err, size_t err_len)
{
    tb_chat_template_t *ct = NULL;
    int rc = tb_chat_template_new(tpl, tpl ? strlen(tpl) : 0, bos, eos, NULL, &ct, err, err_len);
    if (rc != 0) {
        *out = NULL;
        return rc;
    }
    assert_int_equal(tb_chat_template_is_fallback(ct), tpl == NULL);
    json_t *m = s_json(messages);
    json_t *x = extra ? s_json(extra) : NULL;
    size_t len = 0;
    rc = tb_chat_template_apply(ct, m, agp, x, out, &len, err, err_len);
    if (rc == 0) {
        assert_int_equal(strlen(*out), len);
    } else {
        assert_null(*out);
    }
    json_decref(m);
    json_decref(x);
    tb_chat_template_destroy(&ct);
    assert_null(ct);
    return rc;
}

static void s_expect(const char *tpl, const char *messages, bool agp, const char *want)
{
    char *out = NULL;
    char err[512];
    int rc = s_apply(tpl, "<s>", "</s>", messages, agp, NULL, &out, err, sizeof(err));
    if (rc != 0) {
        fail_msg("error %d: %s", rc, err);
    }
    if (strcmp(out, want) != 0) {
        fail_msg("got '%s', want '%s'", out, want);
    }
    free(out);
}

static void s_expect_err(const char *tpl, const char *messages, const char *extra, int code,
                         const char *what)
{
    char *out = NULL;
    char err[512];
    int rc = s_apply(tpl, "<s>", "</s>", messages, true, extra, &out, err, sizeof(err));
    if (rc != code) {
        fail_msg("code %d, want %d (%s)", rc, code, rc ? err : out);
    }
    if (!strstr(err, what)) {
        fail_msg("error '%s' should mention '%s'", err, what);
    }
}

static const char *ZEPHYR =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}";

static void test_fallback_is_chatml(void **state)
{
    (void)state;
    s_expect(NULL,
             "[{\"role\": \"system\", \"content\": \"Be nice.\"},"
             " {\"role\": \"user\", \"content\": \"Hi\"}]",
             true,
             "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
             "<|im_start|>assistant\n");
    s_expect(NULL, "[{\"role\": \"user\", \"content\": \"\"}]", false,
             "<|im_start|>user\n<|im_end|>\n");
    assert_non_null(strstr(tb_chat_template_fallback_source(), "<|im_start|>"));
}

static void test_published_template_shape(void **state)
{
    (void)state;
    s_expect(ZEPHYR,
             "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", "
             "\"content\": \"U\"}]",
             true, "<|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\n");
    s_expect(ZEPHYR, "[{\"role\": \"user\", \"content\": \"U\"}]", false, "<|user|>\nU</s>\n");
}

static void test_variables(void **state)
{
    (void)state;
    const char *tpl = "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|"
                      "{{ tools is none }}|{{ documents is none }}|{{ messages|length }}|"
                      "{{ flag }}";
    char *out = NULL;
    char err[256];
    assert_int_equal(s_apply(tpl, "<B>", "<E>", "[{\"role\": \"user\", \"content\": \"x\"}]",
                             true, "{\"flag\": 7}", &out, err, sizeof(err)),
                     0);
    assert_string_equal(out, "<B>|<E>|True|True|True|1|7");
    free(out);
    /* absent special tokens are undefined, as for a tokenizer without them */
    assert_int_equal(s_apply("[{{ bos_token }}]{{ bos_token is defined }}", NULL, NULL,
                             "[{\"role\": \"user\", \"content\": \"x\"}]", false, NULL, &out, err,
                             sizeof(err)),
                     0);
    assert_string_equal(out, "[]False");
    free(out);
    /* tools given by the request */
    assert_int_equal(s_apply("{{ tools[0].function.name }}", NULL, NULL,
                             "[{\"role\": \"user\", \"content\": \"x\"}]", false,
                             "{\"tools\": [{\"function\": {\"name\": \"f\"}}]}", &out, err,
                             sizeof(err)),
                     0);
    assert_string_equal(out, "f");
    free(out);
}

static void test_content_parts_are_flattened(void **state)
{
    (void)state;
    s_expect("{% for m in messages %}[{{ m.content }}]{% endfor %}",
             "[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, "
             "{\"type\": \"text\", \"text\": \"b\"}]}, {\"role\": \"user\", \"content\": []}]",
             false, "[a\nb][]");
}

static void test_passthrough_fields(void **state)
{
    (void)state;
    s_expect("{% for m in messages %}{{ m.name }}:{{ m.tool_calls[0].function.name if "
             "m.tool_calls else '-' }}:{{ m.content is none }};{% endfor %}",
             "[{\"role\": \"user\", \"content\": \"q\", \"name\": \"bob\"}, "
             "{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"get\"}}]}]",
             false, "bob:-:False;:get:True;");
}

static void test_invalid_messages(void **state)
{
    (void)state;
    const char *tpl = "{{ messages|length }}";
    s_expect_err(tpl, "[]", NULL, TB_EINVAL, "messages: must be a non-empty array");
    s_expect_err(tpl, "{\"role\": \"user\"}", NULL, TB_EINVAL, "non-empty array");
    s_expect_err(tpl, "[1]", NULL, TB_EINVAL, "messages[0]: must be an object");
    s_expect_err(tpl, "[{\"content\": \"x\"}]", NULL, TB_EINVAL, "messages[0].role");
    s_expect_err(tpl, "[{\"role\": \"\", \"content\": \"x\"}]", NULL, TB_EINVAL, "role");
    s_expect_err(tpl,
                 "[{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"user\", "
                 "\"content\": 3}]",
                 NULL, TB_EINVAL, "messages[1].content: must be a string");
    s_expect_err(tpl, "[{\"role\": \"user\", \"content\": null}]", NULL, TB_EINVAL,
                 "messages[0].content");
    s_expect_err(tpl, "[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]", NULL,
                 TB_EINVAL, "type 'image_url' are not supported");
    s_expect_err(tpl, "[{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]", NULL,
                 TB_EINVAL, "content[0].text");
    s_expect_err(tpl, "[{\"role\": \"user\", \"content\": \"x\"}]", "{\"messages\": []}",
                 TB_EINVAL, "may not set 'messages'");
}

static void test_template_errors(void **state)
{
    (void)state;
    const char *msgs = "[{\"role\": \"user\", \"content\": \"a\"}]";
    s_expect_err("{{ raise_exception('Only user and assistant roles are supported!') }}", msgs,
                 NULL, TB_EINVAL,
                 "chat template error at 1:4: raise_exception: Only user and assistant roles");
    s_expect_err("{{ messages[0].content + 1 }}", msgs, NULL, TB_EINVAL, "chat template error");
    char *out = NULL;
    char err[256];
    assert_int_equal(s_apply("{% for m in messages %}", "<s>", "</s>", msgs, true, NULL, &out,
                             err, sizeof(err)),
                     TB_EINVAL);
    assert_non_null(strstr(err, "chat template does not parse: 1:"));
    /* bounds surface with their own codes */
    struct tb_jinja_limits lim = {0};
    lim.max_output_bytes = 16;
    tb_chat_template_t *ct = NULL;
    assert_int_equal(tb_chat_template_new(NULL, 0, NULL, NULL, &lim, &ct, err, sizeof(err)), 0);
    json_t *m = s_json("[{\"role\": \"user\", \"content\": \"a long message here\"}]");
    assert_int_equal(tb_chat_template_apply(ct, m, true, NULL, &out, NULL, err, sizeof(err)),
                     TB_E2BIG);
    assert_null(out);
    json_decref(m);
    tb_chat_template_destroy(&ct);
    tb_chat_template_destroy(NULL);
}

static void s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_hf_folder(void **state)
{
    (void)state;
    char dir[] = "/tmp/tb_chat_template_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512], err[512], *out = NULL;
    tb_chat_template_t *ct = NULL;
    json_t *m = s_json("[{\"role\": \"user\", \"content\": \"hi\"}]");

    /* no tokenizer_config.json at all: fallback */
    assert_int_equal(tb_chat_template_new_from_hf_dir(dir, NULL, &ct, err, sizeof(err)), 0);
    assert_true(tb_chat_template_is_fallback(ct));
    tb_chat_template_destroy(&ct);

    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    s_write(path,
            "{\"bos_token\": {\"content\": \"<B>\"}, \"eos_token\": \"<E>\", "
            "\"model_max_length\": 1000000000000000019884624838656, "
            "\"chat_template\": [{\"name\": \"rag\", \"template\": \"R\"}, "
            "{\"name\": \"default\", \"template\": \"{{ bos_token }}{{ messages[0].content }}"
            "{{ eos_token }}\"}]}");
    assert_int_equal(tb_chat_template_new_from_hf_dir(dir, NULL, &ct, err, sizeof(err)), 0);
    assert_false(tb_chat_template_is_fallback(ct));
    assert_int_equal(tb_chat_template_apply(ct, m, false, NULL, &out, NULL, err, sizeof(err)), 0);
    assert_string_equal(out, "<B>hi<E>");
    free(out);
    tb_chat_template_destroy(&ct);

    /* chat_template.jinja wins over tokenizer_config.json */
    char jpath[512];
    snprintf(jpath, sizeof(jpath), "%s/chat_template.jinja", dir);
    s_write(jpath, "J:{{ messages[0].content }}\n");
    assert_int_equal(tb_chat_template_new_from_hf_dir(dir, NULL, &ct, err, sizeof(err)), 0);
    assert_int_equal(tb_chat_template_apply(ct, m, false, NULL, &out, NULL, err, sizeof(err)), 0);
    assert_string_equal(out, "J:hi");
    free(out);
    tb_chat_template_destroy(&ct);
    unlink(jpath);

    /* broken files are model errors with a reason */
    s_write(path, "{\"chat_template\": 5}");
    assert_int_equal(tb_chat_template_new_from_hf_dir(dir, NULL, &ct, err, sizeof(err)),
                     TB_EMODEL);
    assert_non_null(strstr(err, "chat_template"));
    s_write(path, "{not json");
    assert_int_equal(tb_chat_template_new_from_hf_dir(dir, NULL, &ct, err, sizeof(err)),
                     TB_EMODEL);
    s_write(path, "{\"eos_token\": 3}");
    assert_int_equal(tb_chat_template_new_from_hf_dir(dir, NULL, &ct, err, sizeof(err)),
                     TB_EMODEL);
    assert_non_null(strstr(err, "eos_token"));
    s_write(path, "{\"chat_template\": \"{% if %}\"}");
    assert_int_equal(tb_chat_template_new_from_hf_dir(dir, NULL, &ct, err, sizeof(err)),
                     TB_EINVAL);
    assert_non_null(strstr(err, "does not parse"));
    unlink(path);
    rmdir(dir);
    assert_int_equal(tb_chat_template_new_from_hf_dir(dir, NULL, &ct, err, sizeof(err)),
                     TB_ENOENT);
    assert_null(ct);
    json_decref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fallback_is_chatml),
        cmocka_unit_test(test_published_template_shape),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_content_parts_are_flattened),
        cmocka_unit_test(test_passthrough_fields),
        cmocka_unit_test(test_invalid_messages),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_hf_folder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
