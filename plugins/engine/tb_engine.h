/*
 * tb_engine.h - the bus glue every engine flavour shares: token requests in from the bus, the
 * runner (tb_runner.h) stepped between bus events, token chunks streamed back, cancellation,
 * load and KV events, metrics; and the plugin descriptor a flavour gets from its backend.
 *
 * The engine serves `<ns>.<component>.generate` with kind "tokens" (gen_request mode "tokens":
 * prompt ids and sampling parameters) for its served model name and context length.  Each
 * sampled token goes back at once as a gen_chunk DATA chunk (token_ids, logprobs when asked);
 * the last one comes in the FINAL chunk with finish_reason ("stop", "length") and usage.
 * A cancelled request frees its KV blocks before the next step.
 *
 * One thread (an actor) runs the loop: between steps it serves the bus; while there is work it
 * does not block.
 *
 * A flavour (plugins/engine/<flavour>/plugin.c) is a struct tb_engine_flavour: its backend ops,
 * its own config keys and its plugin's name; tb_engine_plugin builds the descriptor from it.
 * The config the host fills is the shared struct tb_engine_config followed, at
 * TB_ENGINE_FLAVOUR_OFFSET, by the flavour's own struct; the backend receives a pointer to the
 * latter (tb_backend_config.flavour).  Adding a flavour changes nothing in this folder.
 */
#ifndef TB_ENGINE_H
#define TB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_backend.h"
#include "tb_plugin.h"

/* The config every flavour takes (the keys of tb_engine_config_fields). */
struct tb_engine_config {
    const char *served_model_name;
    const char *model;
    int64_t context_length; /* 0: the model's */
    int64_t max_batch_seqs;
    int64_t max_batch_tokens;
    int64_t max_seqs;
    int64_t kv_cache_bytes;
    int64_t block_size;
    int kv_dtype; /* 0 f16, 1 f32 */
    bool prefix_caching;
    int64_t seed;           /* 0: random; seeds requests that bring none */
    double load_interval_s; /* publish load at least this often */
};

/* Where a flavour's own config struct starts in the config the host fills. */
#define TB_ENGINE_FLAVOUR_OFFSET ((sizeof(struct tb_engine_config) + 15) & ~(size_t)15)

/* The shared config table (its offsets are into struct tb_engine_config). */
#define TB_ENGINE_CONFIG_FIELD_COUNT 12
extern const struct tb_config_field tb_engine_config_fields[TB_ENGINE_CONFIG_FIELD_COUNT];

/* Keys a flavour may add at most. */
#define TB_ENGINE_MAX_FLAVOUR_FIELDS 32

/* An engine flavour: what its plugin.c declares.  Static storage: borrowed for the process. */
struct tb_engine_flavour {
    const char *plugin_name; /* "engine_cpu": the descriptor's name (file tb_engine_cpu.so) */
    const char *version;
    const char *description;
    const struct tb_backend_ops *ops;
    /* Its own keys, appended to the shared ones; offsets into its own config struct. */
    const struct tb_config_field *fields;
    size_t field_count; /* <= TB_ENGINE_MAX_FLAVOUR_FIELDS */
    size_t config_size; /* sizeof its config struct; 0 when it has none */
    /* Optional: may the flavour run here (a device present)?  As tb_plugin.probe. */
    int (*probe)(const struct tb_host *host, char *why, size_t why_len);
};

/* The plugin descriptor of `flavour`, built on the first call (thread-safe) and the same
 * afterwards; static storage.  NULL when the flavour declares too many keys.  A flavour's
 * tb_plugin_entry returns it.  One flavour per plugin file. */
const struct tb_plugin *tb_engine_plugin(const struct tb_engine_flavour *flavour);

typedef struct tb_engine tb_engine_t;

/* Opens the model and creates the runner with `flavour`'s backend.  `config` is the host's
 * (shared struct, then the flavour's at TB_ENGINE_FLAVOUR_OFFSET), borrowed until destroy.  On
 * failure: host->set_error and a TB_E* code, nothing left allocated. */
int tb_engine_new(const struct tb_host *host, tb_component_t *comp, const void *config,
                  const struct tb_engine_flavour *flavour, tb_engine_t **out);
int tb_engine_start(tb_engine_t *e);
size_t tb_engine_in_flight(tb_engine_t *e);
void tb_engine_stop(tb_engine_t *e);
void tb_engine_destroy(tb_engine_t **e_p);

#endif /* TB_ENGINE_H */
