/* Stub plugins for the loader's edge cases, one source built several times (tests/plugins/
 * SConscript):  STUB_OK (every config field type), STUB_MAJOR (wrong ABI major), STUB_MINOR (newer
 * minor), STUB_SHORT (struct_size too small), STUB_NOSYM (no entry symbol), STUB_INITFAIL (create
 * fails with its own message), STUB_STARTFAIL (start fails after create succeeded), STUB_STRIDE
 * (config rows of a future ABI, 16 bytes longer: read with config_field_size), STUB_BADSTRIDE
 * (config_field_size smaller than a row). */
#include <stdlib.h>

#include "tb_plugin.h"

struct stub_config {
    bool flag;
    int64_t count;
    double ratio;
    const char *label;
    int mode;
    const char *served_model_name;
    const char *model;
    int64_t budget;
    double timeout;
    struct tb_str_list stops;
};

static const char *const s_modes[] = {"fast", "slow", "auto", NULL};

#define F(k, t, m) .key = k, .type = t, .offset = offsetof(struct stub_config, m)
static const struct tb_config_field s_fields[] = {
    {F("flag", TB_CFG_BOOL, flag), .default_value = "false", .help = "a switch"},
    {F("count", TB_CFG_INT, count), .default_value = "4", .has_bounds = true, .min = 1, .max = 64,
     .help = "a bounded integer"},
    {F("ratio", TB_CFG_DOUBLE, ratio), .default_value = "0.5", .has_bounds = true, .min = 0,
     .max = 1, .help = "a bounded number"},
    {F("label", TB_CFG_STRING, label), .help = "free text"},
    {F("mode", TB_CFG_ENUM, mode), .default_value = "auto", .choices = s_modes,
     .help = "one of three"},
    {F("served_model_name", TB_CFG_MODEL_NAME, served_model_name), .required = true,
     .help = "public model name"},
    {F("model", TB_CFG_PATH, model), .must_exist = true, .help = "model files"},
    {F("budget", TB_CFG_BYTES, budget), .default_value = "1MiB", .has_bounds = true, .min = 1024,
     .max = 1e12, .help = "a size"},
    {F("timeout", TB_CFG_SECONDS, timeout), .default_value = "2s", .has_bounds = true, .min = 0,
     .max = 60, .help = "a duration"},
    {F("stops", TB_CFG_STR_LIST, stops), .help = "a list"},
};

struct state {
    const struct tb_host *host;
    tb_component_t *comp;
};

static int s_create(const struct tb_host *host, tb_component_t *comp, const void *config,
                    void **out)
{
    (void)config;
#ifdef STUB_INITFAIL
    host->set_error(comp, "stub cannot open its model: no such file");
    *out = NULL;
    return TB_EMODEL;
#else
    struct state *s = calloc(1, sizeof(*s));
    if (!s) {
        return TB_ENOMEM;
    }
    s->host = host;
    s->comp = comp;
    *out = s;
    return 0;
#endif
}

static int s_start(void *state)
{
#ifdef STUB_STARTFAIL
    struct state *s = state;
    s->host->set_error(s->comp, "stub cannot bind its port: address in use");
    return TB_EIO;
#else
    (void)state;
    return 0;
#endif
}

static void s_stop(void *state)
{
    (void)state;
}

static void s_destroy(void *state)
{
    free(state);
}

#ifdef STUB_STRIDE
/* A config row as a later ABI minor might append to it. */
struct future_row {
    struct tb_config_field f;
    uint64_t added_later[2];
};
static struct future_row s_rows[sizeof(s_fields) / sizeof(s_fields[0])];
#endif

static const struct tb_plugin s_plugin = {
#ifdef STUB_SHORT
    .struct_size = 48,
#else
    .struct_size = sizeof(struct tb_plugin),
#endif
#ifdef STUB_MAJOR
    .abi_major = TB_ABI_MAJOR + 1,
#else
    .abi_major = TB_ABI_MAJOR,
#endif
#ifdef STUB_MINOR
    .abi_minor = TB_ABI_MINOR + 1,
#else
    .abi_minor = TB_ABI_MINOR,
#endif
    .name = STUB_NAME,
    .version = "9.9.9",
    .description = "loader test stub",
#ifdef STUB_STRIDE
    .config_fields = &s_rows[0].f,
    .config_field_size = sizeof(struct future_row),
#elif defined(STUB_BADSTRIDE)
    .config_fields = s_fields,
    .config_field_size = 8,
#else
    .config_fields = s_fields,
    .config_field_size = sizeof(struct tb_config_field),
#endif
    .config_field_count = sizeof(s_fields) / sizeof(s_fields[0]),
    .config_size = sizeof(struct stub_config),
    .create = s_create,
    .start = s_start,
    .stop = s_stop,
    .destroy = s_destroy,
};

#ifndef STUB_NOSYM
TB_EXPORT const struct tb_plugin *tb_plugin_entry(void)
{
#ifdef STUB_STRIDE
    for (size_t i = 0; i < sizeof(s_fields) / sizeof(s_fields[0]); i++) {
        s_rows[i].f = s_fields[i];
        s_rows[i].added_later[0] = s_rows[i].added_later[1] = ~(uint64_t)0;
    }
#endif
    return &s_plugin;
}
#else
TB_EXPORT const struct tb_plugin *tb_plugin_entry_misspelled(void)
{
    return &s_plugin;
}
#endif
