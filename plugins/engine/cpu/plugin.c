/* The engine_cpu plugin: the shared serving loop (tb_engine.c) over the CPU backend. */
#include "tb_cpu_backend.h"
#include "tb_engine.h"
#include "tb_plugin.h"

static int s_create(const struct tb_host *host, tb_component_t *comp, const void *config,
                    void **state)
{
    return tb_engine_new(host, comp, config, &tb_cpu_backend_ops, (tb_engine_t **)state);
}

static int s_start(void *state)
{
    return tb_engine_start(state);
}

static size_t s_in_flight(void *state)
{
    return tb_engine_in_flight(state);
}

static void s_stop(void *state)
{
    tb_engine_stop(state);
}

static void s_destroy(void *state)
{
    tb_engine_t *e = state;
    tb_engine_destroy(&e);
}

static const struct tb_plugin s_plugin = {
    .struct_size = sizeof(struct tb_plugin),
    .abi_major = TB_ABI_MAJOR,
    .abi_minor = TB_ABI_MINOR,
    .name = "engine_cpu",
    .version = "0.1.0",
    .description = "Llama-family inference on the CPU: continuous batching over a paged KV "
                   "cache with prefix reuse, F32/F16/BF16/Q8_0/Q4_0 weights, AVX2/AVX-512",
    .config_fields = tb_engine_config_fields,
    .config_field_count = TB_ENGINE_CONFIG_FIELD_COUNT,
    .config_size = sizeof(struct tb_engine_config),
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
