/* The echo plugin: descriptor, config table and lifecycle.  The work is in tb_echo.c. */
#include <stddef.h>

#include "tb_echo.h"
#include "tb_plugin.h"

static const struct tb_config_field s_fields[] = {
    {.key = "chunks",
     .type = TB_CFG_INT,
     .offset = offsetof(struct tb_echo_config, chunks),
     .default_value = "3",
     .has_bounds = true,
     .min = 1,
     .max = 1000000,
     .help = "pieces each payload is streamed back in"},
    {.key = "delay",
     .type = TB_CFG_SECONDS,
     .offset = offsetof(struct tb_echo_config, delay_s),
     .default_value = "0",
     .has_bounds = true,
     .min = 0,
     .max = 60,
     .help = "pause before each piece"},
    {.key = "endpoint",
     .type = TB_CFG_STRING,
     .offset = offsetof(struct tb_echo_config, endpoint),
     .default_value = "echo",
     .help = "endpoint name (namespace.component.<endpoint>)"},
};

static int s_create(const struct tb_host *host, tb_component_t *comp, const void *config,
                    void **state)
{
    return tb_echo_new(host, comp, config, (tb_echo_t **)state);
}

static int s_start(void *state)
{
    return tb_echo_start(state);
}

static size_t s_in_flight(void *state)
{
    return tb_echo_in_flight(state);
}

static void s_stop(void *state)
{
    tb_echo_stop(state);
}

static void s_destroy(void *state)
{
    tb_echo_t *e = state;
    tb_echo_destroy(&e);
}

static const struct tb_plugin s_plugin = {
    .struct_size = sizeof(struct tb_plugin),
    .abi_major = TB_ABI_MAJOR,
    .abi_minor = TB_ABI_MINOR,
    .name = "echo",
    .version = "0.1.0",
    .description = "streams each request's payload back in N chunks (bus test service)",
    .config_fields = s_fields,
    .config_field_count = sizeof(s_fields) / sizeof(s_fields[0]),
    .config_size = sizeof(struct tb_echo_config),
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
