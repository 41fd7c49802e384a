/*
 * tb_chat_template.c - chat messages to prompt text with the model's Jinja template; see
 * tb_chat_template.h.  Validation happens here so that a bad request is reported as the
 * client's mistake ("messages[1].content: ...") before the template sees it.
 */
#include "tb_chat_template.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tb_errors.h"

struct tb_chat_template {
    tb_jinja_t *tpl;
    json_t *base; /* special tokens: bos_token, eos_token, ... */
    bool fallback;
    char *source; /* a copy, for tb_chat_template_source */
    size_t source_len;
};

/* ChatML, the de-facto default of Hugging Face chat models; content that is not a string
 * (an assistant message with only tool_calls) renders as empty. */
static const char s_fallback[] =
    "{% for message in messages %}"
    "{{ '<|im_start|>' ~ message['role'] ~ '\\n' ~ "
    "(message['content'] if message['content'] is string else '') ~ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const char *tb_chat_template_fallback_source(void)
{
    return s_fallback;
}

bool tb_chat_template_is_fallback(const tb_chat_template_t *ct)
{
    return ct && ct->fallback;
}

const char *tb_chat_template_source(const tb_chat_template_t *ct, size_t *len)
{
    *len = ct->source_len;
    return ct->source;
}

void tb_chat_template_destroy(tb_chat_template_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tb_chat_template_t *ct = *self_p;
    tb_jinja_destroy(&ct->tpl);
    json_decref(ct->base);
    free(ct->source);
    free(ct);
    *self_p = NULL;
}

/* Builds from source with a prepared `base` object (ownership taken). */
static int s_new(const char *source, size_t len, json_t *base,
                 const struct tb_jinja_limits *limits, tb_chat_template_t **out, char *err,
                 size_t err_len)
{
    int rc = 0;
    char jerr[512];
    *out = NULL;
    tb_chat_template_t *ct = calloc(1, sizeof(*ct));
    if (!ct) {
        json_decref(base);
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    ct->base = base;
    ct->fallback = source == NULL;
    if (ct->fallback) {
        source = s_fallback;
        len = strlen(s_fallback);
    }
    ct->source = malloc(len + 1);
    if (!ct->source) {
        snprintf(err, err_len, "out of memory");
        tb_chat_template_destroy(&ct);
        return TB_ENOMEM;
    }
    memcpy(ct->source, source, len);
    ct->source[len] = 0;
    ct->source_len = len;
    rc = tb_jinja_parse_with_limits(source, len, limits, &ct->tpl, jerr, sizeof(jerr));
    if (rc != 0) {
        snprintf(err, err_len, "chat template does not parse: %s", jerr);
        tb_chat_template_destroy(&ct);
        return rc;
    }
    *out = ct;
    return 0;
}

static bool s_set_str(json_t *obj, const char *key, const char *val)
{
    return !val || json_object_set_new(obj, key, json_string(val)) == 0;
}

int tb_chat_template_new(const char *source, size_t len, const char *bos_token,
                         const char *eos_token, const struct tb_jinja_limits *limits,
                         tb_chat_template_t **out, char *err, size_t err_len)
{
    json_t *base = json_object();
    if (!base || !s_set_str(base, "bos_token", bos_token) ||
        !s_set_str(base, "eos_token", eos_token)) {
        json_decref(base);
        *out = NULL;
        snprintf(err, err_len, "special tokens must be valid UTF-8");
        return TB_EINVAL;
    }
    return s_new(source, len, base, limits, out, err, err_len);
}

/* A special token in tokenizer_config.json: a string, an {"content": "..."} object, or null. */
static int s_token(const json_t *cfg, const char *key, json_t *base, char *err, size_t err_len)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (json_is_object(v)) {
        v = json_object_get(v, "content");
    }
    if (!json_is_string(v)) {
        snprintf(err, err_len,
                 "tokenizer_config.json: '%s' must be a string or an object with "
                 "a string 'content'",
                 key);
        return TB_EMODEL;
    }
    json_object_set(base, key, (json_t *)v);
    return 0;
}

/* Reads a whole file (bounded); *buf is malloc'd. */
static int s_read_file(const char *path, size_t max, char **buf, size_t *len, char *err,
                       size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "cannot open '%s': %s", path, strerror(errno));
        return errno == ENOENT ? TB_ENOENT : TB_EIO;
    }
    char *data = malloc(max + 1);
    size_t n = data ? fread(data, 1, max + 1, f) : 0;
    int rc = 0;
    if (!data) {
        snprintf(err, err_len, "out of memory");
        rc = TB_ENOMEM;
    } else if (ferror(f)) {
        snprintf(err, err_len, "cannot read '%s'", path);
        rc = TB_EIO;
    } else if (n > max) {
        snprintf(err, err_len, "'%s' is larger than %zu bytes", path, max);
        rc = TB_EINVAL;
    }
    fclose(f);
    if (rc != 0) {
        free(data);
        return rc;
    }
    data[n] = '\0';
    *buf = data;
    *len = n;
    return 0;
}

int tb_chat_template_new_from_hf_dir(const char *dir, const struct tb_jinja_limits *limits,
                                     tb_chat_template_t **out, char *err, size_t err_len)
{
    int rc = 0;
    char path[4096];
    json_t *cfg = NULL;
    json_t *base = NULL;
    char *jinja_src = NULL;
    size_t jinja_len = 0;
    const char *src = NULL;
    size_t src_len = 0;
    struct tb_jinja_limits lim;
    struct stat st;
    *out = NULL;

    tb_jinja_limits_default(&lim);
    if (limits && limits->max_template_bytes) {
        lim.max_template_bytes = limits->max_template_bytes;
    }
    if (!dir || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_len, "model folder '%s' does not exist", dir ? dir : "(null)");
        return TB_ENOENT;
    }
    base = json_object();
    if (!base) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    if (stat(path, &st) == 0) {
        json_error_t jerr;
        /* model_max_length is often 1e30 written as an integer: read numbers as reals */
        cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &jerr);
        if (!json_is_object(cfg)) {
            snprintf(err, err_len, "%s:%d:%d: %s", path, jerr.line, jerr.column,
                     cfg ? "not a JSON object" : jerr.text);
            rc = TB_EMODEL;
            goto done;
        }
        static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            rc = s_token(cfg, keys[i], base, err, err_len);
            if (rc != 0) {
                goto done;
            }
        }
        const json_t *t = json_object_get(cfg, "chat_template");
        if (json_is_array(t)) {
            /* named templates: "default", else the first */
            const json_t *pick = NULL;
            size_t i;
            const json_t *e;
            json_array_foreach(t, i, e)
            {
                const json_t *name = json_object_get(e, "name");
                if (!pick ||
                    (json_is_string(name) && !strcmp(json_string_value(name), "default"))) {
                    pick = e;
                }
            }
            t = pick ? json_object_get(pick, "template") : NULL;
            if (pick && !json_is_string(t)) {
                snprintf(err, err_len,
                         "tokenizer_config.json: a named chat_template has no "
                         "string 'template'");
                rc = TB_EMODEL;
                goto done;
            }
        }
        if (t && !json_is_null(t) && !json_is_string(t)) {
            snprintf(err, err_len,
                     "tokenizer_config.json: 'chat_template' must be a string or "
                     "a list of {name, template}");
            rc = TB_EMODEL;
            goto done;
        }
        if (json_is_string(t)) {
            src = json_string_value(t);
            src_len = json_string_length(t);
        }
    }
    snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
    if (stat(path, &st) == 0) {
        rc = s_read_file(path, lim.max_template_bytes, &jinja_src, &jinja_len, err, err_len);
        if (rc != 0) {
            goto done;
        }
        src = jinja_src;
        src_len = jinja_len;
    }
    rc = s_new(src, src_len, base, limits, out, err, err_len);
    base = NULL;
done:
    json_decref(base);
    json_decref(cfg);
    free(jinja_src);
    return rc;
}

/* Validates one message and returns the normalised copy (new reference) or NULL. */
static json_t *s_message(const json_t *m, size_t idx, char *err, size_t err_len)
{
    if (!json_is_object(m)) {
        snprintf(err, err_len, "messages[%zu]: must be an object", idx);
        return NULL;
    }
    const json_t *role = json_object_get(m, "role");
    if (!json_is_string(role) || json_string_length(role) == 0) {
        snprintf(err, err_len, "messages[%zu].role: must be a non-empty string", idx);
        return NULL;
    }
    json_t *copy = json_deep_copy(m);
    if (!copy) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    const json_t *content = json_object_get(m, "content");
    const json_t *calls = json_object_get(m, "tool_calls");
    if (json_is_string(content)) {
        return copy;
    }
    if (!content || json_is_null(content)) {
        if (!strcmp(json_string_value(role), "assistant") && json_is_array(calls) &&
            json_array_size(calls) > 0) {
            json_object_set_new(copy, "content", json_null());
            return copy;
        }
        snprintf(err, err_len,
                 "messages[%zu].content: must be a string or an array of text "
                 "parts",
                 idx);
        json_decref(copy);
        return NULL;
    }
    if (!json_is_array(content)) {
        snprintf(err, err_len,
                 "messages[%zu].content: must be a string or an array of text "
                 "parts, not %s",
                 idx,
                 json_is_object(content)   ? "an object"
                 : json_is_number(content) ? "a number"
                                           : "a boolean");
        json_decref(copy);
        return NULL;
    }
    /* flatten text parts: their texts joined with "\n" */
    size_t total = 0;
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const json_t *type = json_object_get(part, "type");
        const json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type)) {
            snprintf(err, err_len,
                     "messages[%zu].content[%zu]: must be an object with a "
                     "string 'type'",
                     idx, i);
            json_decref(copy);
            return NULL;
        }
        if (strcmp(json_string_value(type), "text") != 0) {
            snprintf(err, err_len,
                     "messages[%zu].content[%zu]: content parts of type '%.40s' "
                     "are not supported (text only)",
                     idx, i, json_string_value(type));
            json_decref(copy);
            return NULL;
        }
        if (!json_is_string(text)) {
            snprintf(err, err_len, "messages[%zu].content[%zu].text: must be a string", idx, i);
            json_decref(copy);
            return NULL;
        }
        total += json_string_length(text) + 1;
    }
    char *flat = malloc(total + 1);
    if (!flat) {
        snprintf(err, err_len, "out of memory");
        json_decref(copy);
        return NULL;
    }
    size_t o = 0;
    json_array_foreach(content, i, part)
    {
        const json_t *text = json_object_get(part, "text");
        if (i > 0) {
            flat[o++] = '\n';
        }
        memcpy(flat + o, json_string_value(text), json_string_length(text));
        o += json_string_length(text);
    }
    json_t *s = json_stringn_nocheck(flat, o);
    free(flat);
    if (!s || json_object_set_new(copy, "content", s) != 0) {
        snprintf(err, err_len, "out of memory");
        json_decref(copy);
        return NULL;
    }
    return copy;
}

int tb_chat_template_apply(const tb_chat_template_t *ct, const json_t *messages,
                           bool add_generation_prompt, const json_t *extra, char **out,
                           size_t *out_len, char *err, size_t err_len)
{
    int rc = 0;
    json_t *ctx = NULL;
    json_t *msgs = NULL;
    char jerr[2048];
    *out = NULL;
    if (out_len) {
        *out_len = 0;
    }
    if (!ct) {
        snprintf(err, err_len, "no chat template");
        return TB_EINVAL;
    }
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        snprintf(err, err_len, "messages: must be a non-empty array");
        return TB_EINVAL;
    }
    if (extra && !json_is_object(extra)) {
        snprintf(err, err_len, "extra template variables must be an object");
        return TB_EINVAL;
    }
    if (extra &&
        (json_object_get(extra, "messages") || json_object_get(extra, "add_generation_prompt"))) {
        snprintf(err, err_len,
                 "extra template variables may not set 'messages' or "
                 "'add_generation_prompt'");
        return TB_EINVAL;
    }
    msgs = json_array();
    ctx = json_object();
    if (!msgs || !ctx) {
        snprintf(err, err_len, "out of memory");
        rc = TB_ENOMEM;
        goto done;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m)
    {
        json_t *norm = s_message(m, i, err, err_len);
        if (!norm) {
            rc = TB_EINVAL;
            goto done;
        }
        if (json_array_append_new(msgs, norm) != 0) {
            snprintf(err, err_len, "out of memory");
            rc = TB_ENOMEM;
            goto done;
        }
    }
    /* the order of Hugging Face's render(): messages, tools, documents, generation prompt,
     * then special tokens and other keyword arguments */
    json_object_set(ctx, "messages", msgs);
    json_object_set_new(ctx, "tools", json_null());
    json_object_set_new(ctx, "documents", json_null());
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
    if (json_object_update(ctx, ct->base) != 0 ||
        (extra && json_object_update(ctx, (json_t *)extra))) {
        snprintf(err, err_len, "out of memory");
        rc = TB_ENOMEM;
        goto done;
    }
    rc = tb_jinja_render(ct->tpl, ctx, out, out_len, jerr, sizeof(jerr));
    if (rc != 0) {
        snprintf(err, err_len, "chat template error at %s", jerr);
    }
done:
    json_decref(msgs);
    json_decref(ctx);
    return rc;
}
