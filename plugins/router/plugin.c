/* The router plugin: descriptor, config table and lifecycle.  The work is in tb_router.c and
 * tb_router_policy.c; docs/router.md describes every key. */
#include <stddef.h>

#include "tb_plugin.h"
#include "tb_router.h"

#define OFF(m) offsetof(struct tb_router_config, m)

/* In the order of tb_rp_kind_t. */
static const char *const s_policies[] = {"round_robin", "random", "least_loaded", "kv_aware",
                                         NULL};
/* In the order of tb_rp_kv_mode_t. */
static const char *const s_kv_modes[] = {"events", "approximate", NULL};

static const struct tb_config_field s_fields[] = {
    {.key = "policy",
     .type = TB_CFG_ENUM,
     .offset = OFF(policy),
     .default_value = "round_robin",
     .choices = s_policies,
     .help = "how an instance is chosen: round_robin, random, least_loaded (reported load), "
             "kv_aware (cached prefix and load)"},
    {.key = "endpoint",
     .type = TB_CFG_STRING,
     .offset = OFF(endpoint),
     .default_value = "route",
     .help = "endpoint name (namespace.component.<endpoint>)"},
    {.key = "seed",
     .type = TB_CFG_INT,
     .offset = OFF(seed),
     .default_value = "0",
     .help = "random policy seed (0: from the clock)"},
    {.key = "kv_prefill_weight",
     .type = TB_CFG_DOUBLE,
     .offset = OFF(kv_prefill_weight),
     .default_value = "1",
     .has_bounds = true,
     .min = 0,
     .max = 1e6,
     .help = "kv_aware: cost of a prompt block to compute, relative to an active decode block"},
    {.key = "kv_temperature",
     .type = TB_CFG_DOUBLE,
     .offset = OFF(kv_temperature),
     .default_value = "0",
     .has_bounds = true,
     .min = 0,
     .max = 100,
     .help =
         "kv_aware: 0 takes the lowest cost; above 0 samples a softmax over normalised costs"},
    {.key = "kv_mode",
     .type = TB_CFG_ENUM,
     .offset = OFF(kv_mode),
     .default_value = "events",
     .choices = s_kv_modes,
     .help = "kv_aware: events (engines publish their cache) or approximate (predicted from "
             "the router's own decisions, for engines that publish nothing)"},
    {.key = "kv_approx_ttl",
     .type = TB_CFG_SECONDS,
     .offset = OFF(kv_approx_ttl),
     .default_value = "120s",
     .has_bounds = true,
     .min = 0.001,
     .max = 86400,
     .help = "kv_mode approximate: how long a routed prompt counts as cached there"},
    {.key = "kv_block_size",
     .type = TB_CFG_INT,
     .offset = OFF(kv_block_size),
     .default_value = "0",
     .has_bounds = true,
     .min = 0,
     .max = 4096,
     .help = "kv_aware: tokens per block to hash prompts with (0: each instance's announced "
             "block size)"},
};

static int s_create(const struct tb_host *host, tb_component_t *comp, const void *config,
                    void **state)
{
    return tb_router_new(host, comp, config, (tb_router_t **)state);
}

static int s_start(void *state)
{
    return tb_router_start(state);
}

static void s_stop(void *state)
{
    tb_router_stop(state);
}

static void s_destroy(void *state)
{
    tb_router_t *r = state;
    tb_router_destroy(&r);
}

static const struct tb_plugin s_plugin = {
    .struct_size = sizeof(struct tb_plugin),
    .abi_major = TB_ABI_MAJOR,
    .abi_minor = TB_ABI_MINOR,
    .name = "router",
    .version = "0.1.0",
    .description =
        "picks an engine instance per request: round_robin, random, least_loaded, kv_aware",
    .config_fields = s_fields,
    .config_field_count = sizeof(s_fields) / sizeof(s_fields[0]),
    .config_size = sizeof(struct tb_router_config),
    .create = s_create,
    .start = s_start,
    .stop = s_stop,
    .destroy = s_destroy,
};

TB_EXPORT const struct tb_plugin *tb_plugin_entry(void)
{
    return &s_plugin;
}
