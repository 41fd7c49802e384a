/*
 * tb_engine.h - the serving loop every engine flavour shares: token requests in from the bus,
 * continuous batching through the scheduler, the flavour's forward pass (tb_backend.h), sampling,
 * token chunks streamed back, cancellation, load and KV events, metrics.
 *
 * The engine serves `<ns>.<component>.generate` with kind "tokens" (gen_request mode "tokens":
 * prompt ids and sampling parameters) for its served model name and context length.  Each
 * sampled token goes back at once as a gen_chunk DATA chunk (token_ids, logprobs when asked);
 * the last one comes in the FINAL chunk with finish_reason ("stop", "length") and usage.
 * A cancelled request frees its KV blocks before the next step.
 *
 * One thread (an actor) runs the loop: between steps it serves the bus; while there is work it
 * does not block.
 */
#ifndef TB_ENGINE_H
#define TB_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "tb_backend.h"
#include "tb_plugin.h"

/* The config every flavour takes (their plugin.c declares the same table). */
struct tb_engine_config {
    const char *served_model_name;
    const char *model;
    int64_t context_length;   /* 0: the model's */
    int64_t max_batch_seqs;
    int64_t max_batch_tokens;
    int64_t max_seqs;
    int64_t kv_cache_bytes;
    int64_t block_size;
    int kv_dtype;             /* 0 f16, 1 f32 */
    bool prefix_caching;
    int64_t threads;          /* 0: all cores */
    int64_t seed;             /* 0: random; seeds requests that bring none */
    double load_interval_s;   /* publish load at least this often */
};

typedef struct tb_engine tb_engine_t;

/* Opens the model and creates the backend, KV manager, sampler and scheduler.  On failure:
 * host->set_error and a TB_E* code, nothing left allocated. */
int tb_engine_new(const struct tb_host *host, tb_component_t *comp,
                  const struct tb_engine_config *cfg, const struct tb_backend_ops *ops,
                  tb_engine_t **out);
int tb_engine_start(tb_engine_t *e);
size_t tb_engine_in_flight(tb_engine_t *e);
void tb_engine_stop(tb_engine_t *e);
void tb_engine_destroy(tb_engine_t **e_p);

/* The shared config table (for flavours' descriptors). */
#define TB_ENGINE_CONFIG_FIELD_COUNT 13
extern const struct tb_config_field tb_engine_config_fields[TB_ENGINE_CONFIG_FIELD_COUNT];

#endif /* TB_ENGINE_H */
