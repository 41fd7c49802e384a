/* The http plugin: descriptor, config table and lifecycle.  The work is in tb_http.c and
 * tb_http_gen.c; docs/http.md describes every key. */
#include <stddef.h>

#include "tb_http.h"
#include "tb_plugin.h"

#define OFF(m) offsetof(struct tb_http_config, m)

static const struct tb_config_field s_fields[] = {
    {.key = "host",
     .type = TB_CFG_STRING,
     .offset = OFF(host),
     .default_value = "127.0.0.1",
     .help = "address to listen on (0.0.0.0 or :: for every interface)"},
    {.key = "port",
     .type = TB_CFG_INT,
     .offset = OFF(port),
     .default_value = "8000",
     .has_bounds = true,
     .min = 0,
     .max = 65535,
     .help = "TCP port (0: any free port)"},
    {.key = "router",
     .type = TB_CFG_STRING,
     .offset = OFF(router),
     .help = "router component to ask (absent: instances in turn here, a counted fallback)"},
    {.key = "router_timeout",
     .type = TB_CFG_SECONDS,
     .offset = OFF(router_timeout_s),
     .default_value = "500ms",
     .has_bounds = true,
     .min = 0.001,
     .max = 60,
     .help = "how long to wait for the router before picking here"},
    {.key = "request_timeout",
     .type = TB_CFG_SECONDS,
     .offset = OFF(request_timeout_s),
     .default_value = "600s",
     .has_bounds = true,
     .min = 0.01,
     .max = 86400,
     .help = "a generation not finished within this ends with 504"},
    {.key = "max_body_size",
     .type = TB_CFG_BYTES,
     .offset = OFF(max_body_size),
     .default_value = "4MiB",
     .has_bounds = true,
     .min = 1024,
     .max = 1073741824.0,
     .help = "larger request bodies get 413"},
    {.key = "max_header_size",
     .type = TB_CFG_BYTES,
     .offset = OFF(max_header_size),
     .default_value = "32KiB",
     .has_bounds = true,
     .min = 4096,
     .max = 16777216.0,
     .help = "per-connection buffer for the request line and headers (larger: 431)"},
    {.key = "header_timeout",
     .type = TB_CFG_SECONDS,
     .offset = OFF(header_timeout_s),
     .default_value = "10s",
     .has_bounds = true,
     .min = 1,
     .max = 3600,
     .help = "a new connection idle this long before its headers are complete is closed"},
    {.key = "idle_timeout",
     .type = TB_CFG_SECONDS,
     .offset = OFF(idle_timeout_s),
     .default_value = "60s",
     .has_bounds = true,
     .min = 1,
     .max = 86400,
     .help = "a connection idle this long (body upload, keep-alive) is closed"},
    {.key = "max_connections",
     .type = TB_CFG_INT,
     .offset = OFF(max_connections),
     .default_value = "1024",
     .has_bounds = true,
     .min = 1,
     .max = 1000000,
     .help = "open connections at once; more are refused"},
    {.key = "max_in_flight",
     .type = TB_CFG_INT,
     .offset = OFF(max_in_flight),
     .default_value = "1024",
     .has_bounds = true,
     .min = 1,
     .max = 1000000,
     .help = "generation requests at once; more get 503 with Retry-After"},
    {.key = "retry_after",
     .type = TB_CFG_INT,
     .offset = OFF(retry_after_s),
     .default_value = "1",
     .has_bounds = true,
     .min = 0,
     .max = 3600,
     .help = "seconds in the Retry-After header of 503 answers"},
    {.key = "api_keys",
     .type = TB_CFG_STR_LIST,
     .offset = OFF(api_keys),
     .help = "accepted keys for 'Authorization: Bearer <key>' on /v1/ (absent: no auth)"},
    {.key = "api_keys_file",
     .type = TB_CFG_PATH,
     .offset = OFF(api_keys_file),
     .must_exist = true,
     .help = "a file of accepted keys, one per line ('#' comments), added to api_keys"},
    {.key = "health_interval",
     .type = TB_CFG_SECONDS,
     .offset = OFF(health_interval_s),
     .default_value = "2s",
     .has_bounds = true,
     .min = 0.05,
     .max = 3600,
     .help = "how often each engine instance is probed"},
    {.key = "health_timeout",
     .type = TB_CFG_SECONDS,
     .offset = OFF(health_timeout_s),
     .default_value = "1s",
     .has_bounds = true,
     .min = 0.01,
     .max = 600,
     .help = "a probe not answered within this marks the instance unhealthy"},
    {.key = "metrics_prefix",
     .type = TB_CFG_STRING,
     .offset = OFF(metrics_prefix),
     .default_value = "dynamo_frontend",
     .help = "prefix of the frontend's metric names (Dynamo's by default, for its dashboards)"},
    {.key = "system_fingerprint",
     .type = TB_CFG_STRING,
     .offset = OFF(system_fingerprint),
     .help = "system_fingerprint of every answer (absent: derived from the version)"},
    {.key = "threads",
     .type = TB_CFG_INT,
     .offset = OFF(threads),
     .default_value = "1",
     .has_bounds = true,
     .min = 1,
     .max = 64,
     .help = "event loops, each a thread with its own connections, accepted from one listening "
             "socket"},
    {.key = "spin",
     .type = TB_CFG_SECONDS,
     .offset = OFF(spin_s),
     .default_value = "50us",
     .has_bounds = true,
     .min = 0,
     .max = 0.01,
     .help = "how long the event loop polls after work before it sleeps (0: never)"},
};

static int s_create(const struct tb_host *host, tb_component_t *comp, const void *config,
                    void **state)
{
    return tb_http_new(host, comp, config, (tb_http_t **)state);
}

static int s_start(void *state)
{
    return tb_http_start(state);
}

static void s_drain(void *state)
{
    tb_http_drain(state);
}

static size_t s_in_flight(void *state)
{
    return tb_http_in_flight(state);
}

static void s_stop(void *state)
{
    tb_http_stop(state);
}

static void s_destroy(void *state)
{
    tb_http_t *h = state;
    tb_http_destroy(&h);
}

static const struct tb_plugin s_plugin = {
    .struct_size = sizeof(struct tb_plugin),
    .abi_major = TB_ABI_MAJOR,
    .abi_minor = TB_ABI_MINOR,
    .name = "http",
    .version = "0.1.0",
    .description = "OpenAI-compatible HTTP frontend (chat, completions, models, SSE streaming, "
                   "health, metrics)",
    .config_fields = s_fields,
    .config_field_count = sizeof(s_fields) / sizeof(s_fields[0]),
    .config_size = sizeof(struct tb_http_config),
    .create = s_create,
    .start = s_start,
    .drain = s_drain,
    .in_flight = s_in_flight,
    .stop = s_stop,
    .destroy = s_destroy,
};

TB_EXPORT const struct tb_plugin *tb_plugin_entry(void)
{
    return &s_plugin;
}
