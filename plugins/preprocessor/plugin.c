/* The preprocessor plugin: descriptor, config table and lifecycle.  The work is in tb_preproc.c. */
#include <stddef.h>

#include "tb_plugin.h"
#include "tb_preproc.h"

#define OFF(m) offsetof(struct tb_preproc_config, m)

static const char *const s_tool_parsers[] = TB_PREPROC_TOOL_PARSERS;
static const char *const s_reasoning_parsers[] = TB_PREPROC_REASONING_PARSERS;

static const struct tb_config_field s_fields[] = {
    {.key = "served_model_name",
     .type = TB_CFG_MODEL_NAME,
     .offset = OFF(served_model_name),
     .required = true,
     .help = "public model name clients send; engines must serve the same"},
    {.key = "model",
     .type = TB_CFG_PATH,
     .offset = OFF(model),
     .required = true,
     .must_exist = true,
     .help = "model folder (tokenizer.json, tokenizer_config.json) or .gguf file"},
    {.key = "chat_template",
     .type = TB_CFG_PATH,
     .offset = OFF(chat_template),
     .must_exist = true,
     .help = "Jinja file to use instead of the model's chat template"},
    {.key = "router",
     .type = TB_CFG_STRING,
     .offset = OFF(router),
     .help = "router component to ask for an engine (absent: in turn here, a counted fallback)"},
    {.key = "context_length",
     .type = TB_CFG_INT,
     .offset = OFF(context_length),
     .default_value = "0",
     .has_bounds = true,
     .min = 0,
     .max = 10000000,
     .help = "cap on prompt + completion tokens (0: the smallest the engines announce)"},
    {.key = "request_timeout",
     .type = TB_CFG_SECONDS,
     .offset = OFF(request_timeout_s),
     .default_value = "600s",
     .has_bounds = true,
     .min = 0.1,
     .max = 86400,
     .help = "longest a request may take, engine included"},
    {.key = "migration_limit",
     .type = TB_CFG_INT,
     .offset = OFF(migration_limit),
     .default_value = "3",
     .has_bounds = true,
     .min = 0,
     .max = 100,
     .help = "times a request moves to another engine instance when its stream breaks (the "
             "instance died or stopped); 0: the caller gets the error"},
    {.key = "tool_call_parser",
     .type = TB_CFG_ENUM,
     .offset = OFF(tool_call_parser),
     .default_value = "auto",
     .choices = s_tool_parsers,
     .help = "how the model writes tool calls (auto: from its chat template and tokenizer)"},
    {.key = "reasoning_parser",
     .type = TB_CFG_ENUM,
     .offset = OFF(reasoning_parser),
     .default_value = "auto",
     .choices = s_reasoning_parsers,
     .help = "how the model writes its thinking: think is <think>...</think> (auto: from its "
             "chat template and tokenizer)"},
};

static int s_create(const struct tb_host *host, tb_component_t *comp, const void *config,
                    void **state)
{
    return tb_preproc_new(host, comp, config, (tb_preproc_t **)state);
}

static int s_start(void *state)
{
    return tb_preproc_start(state);
}

static size_t s_in_flight(void *state)
{
    return tb_preproc_in_flight(state);
}

static void s_stop(void *state)
{
    tb_preproc_stop(state);
}

static void s_destroy(void *state)
{
    tb_preproc_t *p = state;
    tb_preproc_destroy(&p);
}

static const struct tb_plugin s_plugin = {
    .struct_size = sizeof(struct tb_plugin),
    .abi_major = TB_ABI_MAJOR,
    .abi_minor = TB_ABI_MINOR,
    .name = "preprocessor",
    .version = "0.1.0",
    .description = "tokenizer and chat template of one model: text requests in, token requests "
                   "to engines, text streamed back (stop strings, usage)",
    .config_fields = s_fields,
    .config_field_count = sizeof(s_fields) / sizeof(s_fields[0]),
    .config_size = sizeof(struct tb_preproc_config),
    .create = s_create,
    .start = s_start,
    .in_flight = s_in_flight,
    .stop = s_stop,
    .destroy = s_destroy,
};

TB_EXPORT const struct tb_plugin *tb_plugin_entry(void)
{
    return &s_plugin;
}
