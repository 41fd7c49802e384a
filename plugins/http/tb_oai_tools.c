/* tb_oai_tools: the tool-calling fields of a chat request (see tb_oai_tools.h). */
#include "tb_oai_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_oai_request.h"

static const char *const s_function_type[] = {"function", NULL};

/* A function name as OpenAI takes it: 1..64 of [a-zA-Z0-9_-]. */
static int s_check_name(const struct tb_oai_field *f, json_t *v, void *base, const char *param,
                        void *ctx, struct tb_oai_error *e)
{
    (void)f;
    (void)base;
    (void)ctx;
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    bool ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++) {
        char c = s[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    }
    if (!ok) {
        tb_oai_error_invalid(e, param,
                             "'%s' must be 1 to 64 letters, digits, underscores or dashes",
                             param);
        return -1;
    }
    return 0;
}

static const struct tb_oai_field s_function_fields[] = {
    {.name = "name",
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_check_name,
     .flags = TB_OAI_F_REQUIRED},
    {.name = "description", .types = TB_OAI_J_STR},
    {.name = "parameters", .types = TB_OAI_J_OBJ, .what = "a JSON schema object"},
    {.name = "strict", .types = TB_OAI_J_BOOL},
    {.name = NULL},
};

static const struct tb_oai_field s_tool_fields[] = {
    {.name = "type",
     .types = TB_OAI_J_STR,
     .flags = TB_OAI_F_REQUIRED | TB_OAI_F_UNSUPPORTED,
     .one_of = s_function_type},
    {.name = "function",
     .types = TB_OAI_J_OBJ,
     .flags = TB_OAI_F_REQUIRED,
     .sub = s_function_fields},
    {.name = NULL},
};

static const char *s_tool_name(json_t *tool)
{
    return json_string_value(json_object_get(json_object_get(tool, "function"), "name"));
}

int tb_oai_keep_tools(const struct tb_oai_field *f, json_t *v, void *base, const char *param,
                      void *ctx, struct tb_oai_error *e)
{
    (void)f;
    (void)base;
    struct tb_oai_request *r = ctx;
    int scratch = 0; /* the walks' base: their rows only check */
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        char tp[128];
        tb_oai_path_index(tp, sizeof(tp), param, i);
        int rc = tb_oai_fields_walk(s_tool_fields, r->api, json_array_get(v, i), &scratch, tp, r,
                                    e);
        if (rc != 0) {
            return rc;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(s_tool_name(json_array_get(v, k)), s_tool_name(json_array_get(v, i))) ==
                0) {
                char np[160];
                snprintf(np, sizeof(np), "%s.function.name", tp);
                tb_oai_error_invalid(e, np,
                                     "'%s' is '%s', the name of %s[%zu] too: names must "
                                     "be unique",
                                     np, s_tool_name(json_array_get(v, i)), param, k);
                return -1;
            }
        }
    }
    if (n == 0) {
        return 0;
    }
    char *s = json_dumps(v, JSON_COMPACT);
    const char *kept = s ? tb_oai_request_keep_string(r, s) : NULL;
    free(s);
    if (!kept) {
        tb_oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -2;
    }
    r->gen.tools_json = kept;
    return 0;
}

static const char *const s_tool_choices[] = {"none", "auto", "required", NULL};

int tb_oai_keep_tool_choice(const struct tb_oai_field *f, json_t *v, void *base,
                            const char *param, void *ctx, struct tb_oai_error *e)
{
    (void)f;
    (void)base;
    struct tb_oai_request *r = ctx;
    json_t *tools = json_object_get(tb_oai_request_body(r), "tools");
    size_t n_tools = json_array_size(tools);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        for (size_t i = 0; s_tool_choices[i]; i++) {
            if (strcmp(s, s_tool_choices[i]) == 0) {
                if (i == 2 && n_tools == 0) {
                    tb_oai_error_invalid(e, param,
                                         "'%s' is 'required' but the request has no "
                                         "tools",
                                         param);
                    return -1;
                }
                r->gen.tool_choice = s_tool_choices[i];
                return 0;
            }
        }
        tb_oai_error_invalid(e, param,
                             "'%s' is '%s': it must be 'none', 'auto', 'required' or "
                             "{\"type\": \"function\", \"function\": {\"name\": ...}}",
                             param, s);
        return -1;
    }
    const char *type = json_string_value(json_object_get(v, "type"));
    const char *name = s_tool_name(v);
    char np[160];
    snprintf(np, sizeof(np), "%s.function.name", param);
    if (!type || strcmp(type, "function") != 0 || !name) {
        tb_oai_error_invalid(e, type && strcmp(type, "function") == 0 ? np : param,
                             "'%s' must be {\"type\": \"function\", \"function\": {\"name\": "
                             "...}}",
                             param);
        return -1;
    }
    for (size_t i = 0; i < n_tools; i++) {
        if (strcmp(s_tool_name(json_array_get(tools, i)), name) == 0) {
            r->gen.tool_choice = "function";
            r->gen.tool_choice_function = name;
            return 0;
        }
    }
    tb_oai_error_invalid(e, np, "'%s' is '%s', which is not the name of one of the tools", np,
                         name);
    return -1;
}

static int s_check_arguments(const struct tb_oai_field *f, json_t *v, void *base,
                             const char *param, void *ctx, struct tb_oai_error *e)
{
    (void)f;
    (void)base;
    (void)ctx;
    json_error_t je;
    json_t *a = json_loads(json_string_value(v), JSON_DECODE_ANY, &je);
    bool ok = json_is_object(a);
    json_decref(a);
    if (!ok) {
        tb_oai_error_invalid(e, param, "'%s' must be a JSON object, as a string", param);
        return -1;
    }
    return 0;
}

static const struct tb_oai_field s_call_function_fields[] = {
    {.name = "name", .types = TB_OAI_J_STR, .flags = TB_OAI_F_REQUIRED | TB_OAI_F_NONEMPTY},
    {.name = "arguments",
     .types = TB_OAI_J_STR,
     .keep = TB_OAI_KEEP_FN,
     .fn = s_check_arguments,
     .flags = TB_OAI_F_REQUIRED},
    {.name = NULL},
};

static const struct tb_oai_field s_call_fields[] = {
    {.name = "id", .types = TB_OAI_J_STR, .flags = TB_OAI_F_REQUIRED},
    {.name = "type",
     .types = TB_OAI_J_STR,
     .flags = TB_OAI_F_REQUIRED | TB_OAI_F_UNSUPPORTED,
     .one_of = s_function_type},
    {.name = "function",
     .types = TB_OAI_J_OBJ,
     .flags = TB_OAI_F_REQUIRED,
     .sub = s_call_function_fields},
    {.name = NULL},
};

int tb_oai_keep_msg_tool_calls(const struct tb_oai_field *f, json_t *v, void *base,
                               const char *param, void *ctx, struct tb_oai_error *e)
{
    (void)f;
    struct tb_oai_request *r = ctx;
    struct tb_msg_chat_message *m = base;
    if (strcmp(m->role, "assistant") != 0) {
        tb_oai_error_invalid(e, param, "'%s' is only for role 'assistant'", param);
        return -1;
    }
    int scratch = 0; /* the walks' base: their rows only check */
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        char cp[128];
        tb_oai_path_index(cp, sizeof(cp), param, i);
        int rc = tb_oai_fields_walk(s_call_fields, r->api, json_array_get(v, i), &scratch, cp, r,
                                    e);
        if (rc != 0) {
            return rc;
        }
    }
    if (n == 0) {
        return 0;
    }
    char *s = json_dumps(v, JSON_COMPACT);
    m->tool_calls_json = s ? tb_oai_request_keep_string(r, s) : NULL;
    free(s);
    if (!m->tool_calls_json) {
        tb_oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -2;
    }
    return 0;
}

int tb_oai_keep_msg_tool_call_id(const struct tb_oai_field *f, json_t *v, void *base,
                                 const char *param, void *ctx, struct tb_oai_error *e)
{
    (void)f;
    (void)ctx;
    struct tb_msg_chat_message *m = base;
    if (!v) {
        if (strcmp(m->role, "tool") == 0) {
            tb_oai_error_invalid(e, param, "'%s' is required for role 'tool'", param);
            return -1;
        }
        return 0;
    }
    m->tool_call_id = json_string_value(v);
    return 0;
}
