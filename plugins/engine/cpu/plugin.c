/* The engine_cpu plugin: the shared engine (tb_engine.h) over the CPU backend, plus the CPU's
 * own config key. */
#include <stddef.h>

#include "tb_cpu_backend.h"
#include "tb_engine.h"
#include "tb_plugin.h"

static const struct tb_config_field s_cpu_fields[] = {
    {.key = "threads",
     .type = TB_CFG_INT,
     .offset = offsetof(struct tb_cpu_config, threads),
     .default_value = "0",
     .has_bounds = true,
     .min = 0,
     .max = TB_CPU_MAX_THREADS,
     .help = "compute threads (0: all cores)"},
};

static const struct tb_engine_flavour s_cpu = {
    .plugin_name = "engine_cpu",
    .version = "0.1.0",
    .description = "Llama-family inference on the CPU: continuous batching over a paged KV "
                   "cache with prefix reuse, F32/F16/BF16/Q8_0/Q4_0 weights, AVX2/AVX-512",
    .ops = &tb_cpu_backend_ops,
    .fields = s_cpu_fields,
    .field_count = sizeof s_cpu_fields / sizeof s_cpu_fields[0],
    .config_size = sizeof(struct tb_cpu_config),
};

TB_EXPORT const struct tb_plugin *tb_plugin_entry(void)
{
    return tb_engine_plugin(&s_cpu);
}
