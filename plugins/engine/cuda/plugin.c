/* The engine_cuda plugin: the shared engine (tb_engine.h) over the CUDA backend, plus the
 * CUDA flavour's own config keys and a probe that declines without a device (the reason, with
 * the CUDA error, goes to the log and `turbine serve` exits 2 before any port is bound). */
#include <stddef.h>

#include "tb_cuda_backend.h"
#include "tb_cuda_rt.h"
#include "tb_engine.h"
#include "tb_plugin.h"

static const struct tb_config_field s_cuda_fields[] = {
    {.key = "gpu_memory_utilization",
     .type = TB_CFG_DOUBLE,
     .offset = offsetof(struct tb_cuda_config, gpu_memory_utilization),
     .default_value = "0.9",
     .has_bounds = true,
     .min = 0,
     .max = 1,
     .help = "share of the device memory free after weights and scratch that the KV cache takes "
             "(0: use kv_cache)"},
    {.key = "cuda_graphs",
     .type = TB_CFG_BOOL,
     .offset = offsetof(struct tb_cuda_config, cuda_graphs),
     .default_value = "true",
     .help = "replay decode steps as CUDA graphs (one per batch-size bucket)"},
    {.key = "device",
     .type = TB_CFG_INT,
     .offset = offsetof(struct tb_cuda_config, device),
     .default_value = "0",
     .has_bounds = true,
     .min = 0,
     .max = 1024,
     .help = "CUDA device ordinal"},
};

static int s_probe(const struct tb_host *host, char *why, size_t why_len)
{
    (void)host;
    return tb_cu_open(0, NULL, why, why_len);
}

static const struct tb_engine_flavour s_cuda = {
    .plugin_name = "engine_cuda",
    .version = "0.1.0",
    .description = "Llama-family inference on an NVIDIA GPU: the cpu flavour's scheduler, paged "
                   "KV cache and sampler over CUDA kernels, cuBLASLt prefill and CUDA-graph "
                   "decode; F32/F16/BF16/Q8_0/Q4_0 weights",
    .ops = &tb_cuda_backend_ops,
    .fields = s_cuda_fields,
    .field_count = sizeof s_cuda_fields / sizeof s_cuda_fields[0],
    .config_size = sizeof(struct tb_cuda_config),
    .probe = s_probe,
};

TB_EXPORT const struct tb_plugin *tb_plugin_entry(void)
{
    return tb_engine_plugin(&s_cuda);
}
