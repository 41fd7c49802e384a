/*
 * tb_engine_plugin: the engine's shared config table and the plugin descriptor a flavour gets
 * from tb_engine_plugin (see tb_engine.h): the shared keys, then the flavour's own keys moved
 * past the shared struct, and lifecycle functions over tb_engine.c.
 */
#include <pthread.h>
#include <string.h>

#include "tb_engine.h"

#define OFF(m) offsetof(struct tb_engine_config, m)

static const char *const s_kv_dtypes[] = {"f16", "f32", NULL};

const struct tb_config_field tb_engine_config_fields[TB_ENGINE_CONFIG_FIELD_COUNT] = {
    {.key = "served_model_name",
     .type = TB_CFG_MODEL_NAME,
     .offset = OFF(served_model_name),
     .required = true,
     .help = "public model name clients send"},
    {.key = "model",
     .type = TB_CFG_PATH,
     .offset = OFF(model),
     .required = true,
     .must_exist = true,
     .help = "Hugging Face model folder or .gguf file"},
    {.key = "context_length",
     .type = TB_CFG_INT,
     .offset = OFF(context_length),
     .default_value = "0",
     .has_bounds = true,
     .min = 0,
     .max = 10000000,
     .help = "tokens of prompt + completion at most (0: the model's maximum)"},
    {.key = "max_batch_seqs",
     .type = TB_CFG_INT,
     .offset = OFF(max_batch_seqs),
     .default_value = "64",
     .has_bounds = true,
     .min = 1,
     .max = 4096,
     .help = "sequences in one batch step at most"},
    {.key = "max_batch_tokens",
     .type = TB_CFG_INT,
     .offset = OFF(max_batch_tokens),
     .default_value = "512",
     .has_bounds = true,
     .min = 16,
     .max = 65536,
     .help = "tokens in one batch step at most (prefill chunks + decodes)"},
    {.key = "max_seqs",
     .type = TB_CFG_INT,
     .offset = OFF(max_seqs),
     .default_value = "1024",
     .has_bounds = true,
     .min = 1,
     .max = 1000000,
     .help = "requests running or waiting at most; more are refused as overload"},
    {.key = "kv_cache",
     .type = TB_CFG_BYTES,
     .offset = OFF(kv_cache_bytes),
     .default_value = "1GiB",
     .has_bounds = true,
     .min = 65536,
     .max = 1e15,
     .help = "memory for the paged KV cache"},
    {.key = "block_size",
     .type = TB_CFG_INT,
     .offset = OFF(block_size),
     .default_value = "16",
     .has_bounds = true,
     .min = 1,
     .max = 1024,
     .help = "tokens per KV block"},
    {.key = "kv_dtype",
     .type = TB_CFG_ENUM,
     .offset = OFF(kv_dtype),
     .default_value = "f16",
     .choices = s_kv_dtypes,
     .help = "element type of cached keys and values"},
    {.key = "prefix_caching",
     .type = TB_CFG_BOOL,
     .offset = OFF(prefix_caching),
     .default_value = "true",
     .help = "reuse the KV blocks of shared prompt prefixes"},
    {.key = "seed",
     .type = TB_CFG_INT,
     .offset = OFF(seed),
     .default_value = "0",
     .help = "seeds the seeds of requests that give none (0: random)"},
    {.key = "load_interval",
     .type = TB_CFG_SECONDS,
     .offset = OFF(load_interval_s),
     .default_value = "1s",
     .has_bounds = true,
     .min = 0.01,
     .max = 60,
     .help = "publish load at least this often"},
};

/* The one flavour of this plugin file and its descriptor, built once: the descriptor must point
 * at one field table, shared keys and the flavour's together, which C cannot concatenate at
 * compile time.  Written once under the lock, read-only afterwards. */
static struct {
    pthread_mutex_t lock;
    const struct tb_engine_flavour *flavour;
    struct tb_config_field fields[TB_ENGINE_CONFIG_FIELD_COUNT + TB_ENGINE_MAX_FLAVOUR_FIELDS];
    struct tb_plugin plugin;
} s_desc = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int s_create(const struct tb_host *host, tb_component_t *comp, const void *config,
                    void **state)
{
    return tb_engine_new(host, comp, config, s_desc.flavour, (tb_engine_t **)state);
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

static void s_build(const struct tb_engine_flavour *f)
{
    size_t n = TB_ENGINE_CONFIG_FIELD_COUNT;
    memcpy(s_desc.fields, tb_engine_config_fields, sizeof tb_engine_config_fields);
    for (size_t i = 0; i < f->field_count; i++) {
        s_desc.fields[n] = f->fields[i];
        s_desc.fields[n++].offset += TB_ENGINE_FLAVOUR_OFFSET;
    }
    s_desc.plugin = (struct tb_plugin){
        .struct_size = sizeof(struct tb_plugin),
        .abi_major = TB_ABI_MAJOR,
        .abi_minor = TB_ABI_MINOR,
        .name = f->plugin_name,
        .version = f->version,
        .description = f->description,
        .config_fields = s_desc.fields,
        .config_field_count = n,
        .config_size = TB_ENGINE_FLAVOUR_OFFSET + f->config_size,
        .probe = f->probe,
        .create = s_create,
        .start = s_start,
        .in_flight = s_in_flight,
        .stop = s_stop,
        .destroy = s_destroy,
    };
    s_desc.flavour = f;
}

const struct tb_plugin *tb_engine_plugin(const struct tb_engine_flavour *flavour)
{
    if (flavour->field_count > TB_ENGINE_MAX_FLAVOUR_FIELDS) {
        return NULL;
    }
    pthread_mutex_lock(&s_desc.lock);
    if (!s_desc.flavour) {
        s_build(flavour);
    }
    pthread_mutex_unlock(&s_desc.lock);
    return s_desc.flavour == flavour ? &s_desc.plugin : NULL;
}
