/*
 * tb_loader.h - finding and loading plugins: tb_<name>.so files on a search path, opened with
 * dlopen, checked for the one entry symbol and a compatible descriptor.
 *
 * Search order: the deployment's `plugin_path` entries, then TURBINE_PLUGIN_PATH (colon-separated),
 * then the plugins folder of this build (<dir of turbine>/../plugins).  A loaded plugin stays
 * loaded until the loader is destroyed.  Not thread-safe.
 */
#ifndef TB_LOADER_H
#define TB_LOADER_H

#include <stdbool.h>
#include <stddef.h>

#include "tb_plugin.h"

typedef struct tb_loader tb_loader_t;

struct tb_codec_layout;

struct tb_loaded_plugin {
    char *name;
    char *path;
    void *handle; /* dlopen handle */
    /* The plugin's descriptor as this host reads it: members its struct_size does not cover are
     * zero, and config_fields are copied into rows of this host's struct tb_config_field (the
     * strings stay the plugin's).  Owned by the loader. */
    const struct tb_plugin *desc;
    /* The message layouts the plugin was built with (its ABI minor's schema minor). */
    const struct tb_codec_layout *layout;
    struct tb_plugin desc_copy;   /* private: what desc points to */
    struct tb_config_field *rows; /* private: desc_copy.config_fields (owned) */
};

/* A loader searching `dirs` (copied; may be NULL when n_dirs is 0) before the default places.
 * Caller owns it; NULL when out of memory. */
tb_loader_t *tb_loader_new(const char *const *dirs, size_t n_dirs);

/* Unloads every plugin (after every component is destroyed); sets *l_p to NULL; accepts NULL. */
void tb_loader_destroy(tb_loader_t **l_p);

/* Loads plugin `name` (once; later calls return the same).  On success *out is borrowed until the
 * loader is destroyed.  On failure returns TB_ENOENT (not found: `err` lists where it looked),
 * TB_EABI (version or size mismatch, both versions named), TB_EINVAL (no entry symbol, bad
 * descriptor, bad config table) or TB_EIO (dlopen failed, with dlerror's text). */
int tb_loader_load(tb_loader_t *l, const char *name, const struct tb_loaded_plugin **out,
                   char *err, size_t err_len);

/* Checks a descriptor against this host's ABI and the expected name (reading config rows with the
 * plugin's stride; refusing a plugin built for a newer message schema minor than the process
 * speaks).  0, TB_EABI or TB_EINVAL with `err`. */
int tb_loader_check_descriptor(const struct tb_plugin *d, const char *expect_name, char *err,
                               size_t err_len);

/* The search directories, in order (borrowed). */
size_t tb_loader_dirs(const tb_loader_t *l, const char *const **dirs);

/* Names of every tb_<name>.so found on the path (first occurrence wins), sorted.  Caller frees
 * each string and the array, which is NULL-terminated (NULL when none).  Returns the count. */
size_t tb_loader_available(const tb_loader_t *l, char ***names);

#endif /* TB_LOADER_H */
