/* The mock engine plugin: descriptor, config table and lifecycle.  The work is in tb_mock.c and
 * tb_mock_gen.c; docs/mock.md describes every key. */
#include <stddef.h>

#include "tb_mock.h"
#include "tb_plugin.h"

#define OFF(m) offsetof(struct tb_mock_config, m)

static const char *const s_kinds[] = {"text", "tokens", NULL};

static const struct tb_config_field s_fields[] = {
    {.key = "served_model_name",
     .type = TB_CFG_MODEL_NAME,
     .offset = OFF(served_model_name),
     .required = true,
     .help = "the model name clients ask for (listed in /v1/models)"},
    {.key = "model",
     .type = TB_CFG_PATH,
     .offset = OFF(model),
     .help = "a model folder (ignored by the mock; accepted so engines swap in one line)"},
    {.key = "endpoint",
     .type = TB_CFG_STRING,
     .offset = OFF(endpoint),
     .default_value = "generate",
     .help = "endpoint name (namespace.component.<endpoint>)"},
    {.key = "kind",
     .type = TB_CFG_ENUM,
     .offset = OFF(kind),
     .default_value = "text",
     .choices = s_kinds,
     .help = "text: takes chat/completion requests, answers text; tokens: takes token ids"},
    {.key = "ttft",
     .type = TB_CFG_SECONDS,
     .offset = OFF(ttft_s),
     .default_value = "50ms",
     .has_bounds = true,
     .min = 0,
     .max = 3600,
     .help = "time to first token (before speedup)"},
    {.key = "itl",
     .type = TB_CFG_SECONDS,
     .offset = OFF(itl_s),
     .default_value = "10ms",
     .has_bounds = true,
     .min = 0,
     .max = 3600,
     .help = "inter-token latency (before speedup)"},
    {.key = "speedup",
     .type = TB_CFG_DOUBLE,
     .offset = OFF(speedup),
     .default_value = "1",
     .has_bounds = true,
     .min = 0,
     .max = 1e6,
     .help = "latencies are divided by this; 0 = as fast as possible"},
    {.key = "output_tokens",
     .type = TB_CFG_INT,
     .offset = OFF(output_tokens),
     .default_value = "16",
     .has_bounds = true,
     .min = 1,
     .max = 1000000,
     .help = "tokens in an answer that max_tokens, stop or ignore_eos do not change"},
    {.key = "seed",
     .type = TB_CFG_INT,
     .offset = OFF(seed),
     .default_value = "0",
     .help = "mixed into every sequence's seed (with the request's seed or its prompt)"},
    {.key = "context_length",
     .type = TB_CFG_INT,
     .offset = OFF(context_length),
     .default_value = "8192",
     .has_bounds = true,
     .min = 16,
     .max = 10000000,
     .help = "prompt + max_tokens beyond this are refused (400 context_length_exceeded)"},
    {.key = "max_running",
     .type = TB_CFG_INT,
     .offset = OFF(max_running),
     .default_value = "256",
     .has_bounds = true,
     .min = 1,
     .max = 1000000,
     .help = "requests generating at once (the batch)"},
    {.key = "max_waiting",
     .type = TB_CFG_INT,
     .offset = OFF(max_waiting),
     .default_value = "4096",
     .has_bounds = true,
     .min = 0,
     .max = 10000000,
     .help = "requests queued when the batch is full; more are refused (503 overloaded)"},
    {.key = "kv_blocks",
     .type = TB_CFG_INT,
     .offset = OFF(kv_blocks),
     .default_value = "65536",
     .has_bounds = true,
     .min = 1,
     .max = 1e9,
     .help = "pretend KV cache size in blocks (reported as load; limits the batch)"},
    {.key = "kv_block_size",
     .type = TB_CFG_INT,
     .offset = OFF(kv_block_size),
     .default_value = "16",
     .has_bounds = true,
     .min = 1,
     .max = 4096,
     .help = "tokens per pretend KV block"},
    {.key = "load_interval",
     .type = TB_CFG_SECONDS,
     .offset = OFF(load_interval_s),
     .default_value = "1s",
     .has_bounds = true,
     .min = 0.01,
     .max = 60,
     .help = "load events are published on changes and at least this often"},
    {.key = "token_id_min",
     .type = TB_CFG_INT,
     .offset = OFF(token_id_min),
     .default_value = "1000",
     .has_bounds = true,
     .min = 0,
     .max = 2147483647.0,
     .help = "tokens kind: smallest token id generated"},
    {.key = "token_id_max",
     .type = TB_CFG_INT,
     .offset = OFF(token_id_max),
     .default_value = "1999",
     .has_bounds = true,
     .min = 0,
     .max = 2147483647.0,
     .help = "tokens kind: largest token id generated"},
    {.key = "prefill_per_token",
     .type = TB_CFG_SECONDS,
     .offset = OFF(prefill_per_token_s),
     .default_value = "0s",
     .has_bounds = true,
     .min = 0,
     .max = 60,
     .help = "prefill time per prompt token not found in the pretend prefix cache (before "
             "speedup); prefills run one at a time"},
    {.key = "kv_events",
     .type = TB_CFG_BOOL,
     .offset = OFF(kv_events),
     .default_value = "true",
     .help = "tokens kind: publish the pretend prefix cache's KV events (for kv_aware routing)"},
    {.key = "direct",
     .type = TB_CFG_BOOL,
     .offset = OFF(direct),
     .default_value = "false",
     .help = "speedup 0 only: answer each request on the caller's thread (a direct endpoint), "
             "so that a benchmark measures the framework without an engine's thread hand-off"},
    {.key = "script",
     .type = TB_CFG_PATH,
     .offset = OFF(script),
     .must_exist = true,
     .help = "tokens kind: a file of scripted answers, one per line as token ids; a request "
             "gets answer (seed mod lines), the first without a seed"},
};

static int s_create(const struct tb_host *host, tb_component_t *comp, const void *config,
                    void **state)
{
    return tb_mock_new(host, comp, config, (tb_mock_t **)state);
}

static int s_start(void *state)
{
    return tb_mock_start(state);
}

static size_t s_in_flight(void *state)
{
    return tb_mock_in_flight(state);
}

static void s_stop(void *state)
{
    tb_mock_stop(state);
}

static void s_destroy(void *state)
{
    tb_mock_t *m = state;
    tb_mock_destroy(&m);
}

static const struct tb_plugin s_plugin = {
    .struct_size = sizeof(struct tb_plugin),
    .abi_major = TB_ABI_MAJOR,
    .abi_minor = TB_ABI_MINOR,
    .name = "mock",
    .version = "0.1.0",
    .description =
        "mock engine: deterministic text or tokens with configured latencies, no model",
    .config_fields = s_fields,
    .config_field_count = sizeof(s_fields) / sizeof(s_fields[0]),
    .config_size = sizeof(struct tb_mock_config),
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
