/*
 * tb_render_template - renders a Jinja template with Turbine's interpreter, for the tests that
 * compare it with jinja2.
 *
 *   tb_render_template TEMPLATE CONTEXT.json         render with CONTEXT's variables
 *   tb_render_template --chat TEMPLATE CONTEXT.json  chat mode: CONTEXT holds messages,
 *       add_generation_prompt, bos_token, eos_token and optional extra variables; rendered
 *       through tb_chat_template (message validation included)
 *   tb_render_template --chat-dir MODEL_DIR CONTEXT.json   chat mode with the template and
 *       special tokens of a Hugging Face model folder (the fallback when it has none)
 *   tb_render_template --print-fallback              prints the fallback template source
 *
 * TEMPLATE is a file of Jinja source, or a .json file whose "chat_template" string is used
 * (the shape of tokenizer_config.json).  "-" as TEMPLATE in --chat mode selects the fallback.
 * The render goes to stdout with nothing added; errors go to stderr and the exit status is 1
 * (2 for usage and I/O errors).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tb_buf.h"
#include "tb_chat_template.h"
#include "tb_jinja.h"

static char *s_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    struct tb_buf b = {0};
    int rc = tb_buf_read_file(&b, f);
    fclose(f);
    if (rc != 0) {
        tb_buf_free(&b);
        return NULL;
    }
    return tb_buf_steal(&b, len);
}

/* Template source of TEMPLATE (raw file, or the chat_template of a JSON file); malloc'd. */
static char *s_template(const char *path, size_t *len)
{
    char *src = s_read(path, len);
    size_t pl = strlen(path);
    if (!src || pl < 5 || strcmp(path + pl - 5, ".json") != 0) {
        return src;
    }
    json_error_t jerr;
    json_t *j = json_loadb(src, *len, 0, &jerr);
    free(src);
    const json_t *t = json_object_get(j, "chat_template");
    if (!json_is_string(t)) {
        fprintf(stderr, "%s: no string \"chat_template\"\n", path);
        json_decref(j);
        return NULL;
    }
    *len = json_string_length(t);
    char *copy = malloc(*len + 1);
    if (copy) {
        memcpy(copy, json_string_value(t), *len + 1);
    }
    json_decref(j);
    return copy;
}

static int s_emit(int rc, char *out, size_t out_len, const char *err)
{
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    fwrite(out, 1, out_len, stdout);
    free(out);
    return 0;
}

static const char *s_opt_str(const json_t *ctx, const char *key)
{
    const json_t *v = json_object_get(ctx, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int s_chat(const char *tpath, const char *dir, const json_t *ctx)
{
    char err[4096];
    tb_chat_template_t *ct = NULL;
    int rc;
    if (dir) {
        rc = tb_chat_template_new_from_hf_dir(dir, NULL, &ct, err, sizeof(err));
    } else if (!strcmp(tpath, "-")) {
        rc = tb_chat_template_new(NULL, 0, s_opt_str(ctx, "bos_token"),
                                  s_opt_str(ctx, "eos_token"), NULL, &ct, err, sizeof(err));
    } else {
        size_t len = 0;
        char *src = s_template(tpath, &len);
        if (!src) {
            fprintf(stderr, "cannot read template '%s'\n", tpath);
            return 2;
        }
        rc = tb_chat_template_new(src, len, s_opt_str(ctx, "bos_token"),
                                  s_opt_str(ctx, "eos_token"), NULL, &ct, err, sizeof(err));
        free(src);
    }
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    json_t *extra = json_deep_copy(ctx);
    json_object_del(extra, "messages");
    json_object_del(extra, "add_generation_prompt");
    json_object_del(extra, "bos_token");
    json_object_del(extra, "eos_token");
    char *out = NULL;
    size_t out_len = 0;
    rc = tb_chat_template_apply(ct, json_object_get(ctx, "messages"),
                                json_is_true(json_object_get(ctx, "add_generation_prompt")),
                                extra, &out, &out_len, err, sizeof(err));
    json_decref(extra);
    tb_chat_template_destroy(&ct);
    return s_emit(rc, out, out_len, err);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--print-fallback")) {
        fputs(tb_chat_template_fallback_source(), stdout);
        return 0;
    }
    bool chat = argc == 4 && !strcmp(argv[1], "--chat");
    bool chat_dir = argc == 4 && !strcmp(argv[1], "--chat-dir");
    if (argc != 3 && !chat && !chat_dir) {
        fprintf(stderr,
                "usage: %s [--chat] TEMPLATE CONTEXT.json | --chat-dir MODEL_DIR "
                "CONTEXT.json | --print-fallback\n",
                argv[0]);
        return 2;
    }
    const char *tpath = argv[argc - 2];
    const char *cpath = argv[argc - 1];
    json_error_t jerr;
    json_t *ctx = json_load_file(cpath, 0, &jerr);
    if (!json_is_object(ctx)) {
        fprintf(stderr, "%s:%d:%d: %s\n", cpath, jerr.line, jerr.column,
                ctx ? "context must be a JSON object" : jerr.text);
        json_decref(ctx);
        return 2;
    }
    int rc;
    if (chat || chat_dir) {
        rc = s_chat(tpath, chat_dir ? tpath : NULL, ctx);
    } else {
        size_t len = 0;
        char *src = s_template(tpath, &len);
        if (!src) {
            fprintf(stderr, "cannot read template '%s'\n", tpath);
            json_decref(ctx);
            return 2;
        }
        char err[4096];
        tb_jinja_t *tpl = NULL;
        rc = tb_jinja_parse(src, len, &tpl, err, sizeof(err));
        free(src);
        if (rc != 0) {
            fprintf(stderr, "%s\n", err);
            rc = 1;
        } else {
            char *out = NULL;
            size_t out_len = 0;
            rc = tb_jinja_render(tpl, ctx, &out, &out_len, err, sizeof(err));
            rc = s_emit(rc, out, out_len, err);
        }
        tb_jinja_destroy(&tpl);
    }
    json_decref(ctx);
    return rc;
}
