/* tb_loader: plugin discovery, dlopen and descriptor checks (see tb_loader.h). */
#include "tb_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tb_codec.h"
#include "tb_fields.h"

/* The size of a struct tb_config_field row in ABI 1.0 to 1.2 (it has not grown yet): the stride
 * of a plugin that leaves config_field_size 0.  A later ABI minor that appends to the row keeps
 * this for plugins declaring an older minor. */
#define CONFIG_FIELD_SIZE_1_0 (offsetof(struct tb_config_field, help) + sizeof(const char *))

/* True when the plugin's descriptor is long enough to hold `member`. */
#define DESC_HAS(d, member)                                                                      \
    ((d)->struct_size >= offsetof(struct tb_plugin, member) + sizeof((d)->member))

static size_t s_field_stride(const struct tb_plugin *d)
{
    return DESC_HAS(d, config_field_size) && d->config_field_size ? d->config_field_size
                                                                  : CONFIG_FIELD_SIZE_1_0;
}

/* Row i of the plugin's config table, read with the plugin's stride. */
static const struct tb_config_field *s_row(const struct tb_plugin *d, size_t stride, size_t i)
{
    return (const struct tb_config_field *)((const char *)d->config_fields + i * stride);
}

struct tb_loader {
    char **dirs;
    size_t n_dirs;
    struct tb_loaded_plugin **loaded;
    size_t n_loaded;
};

static int s_add_dir(tb_loader_t *l, const char *d, size_t len)
{
    if (len == 0) {
        return 0;
    }
    char *copy = strndup(d, len);
    if (!copy) {
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < l->n_dirs; i++) {
        if (strcmp(l->dirs[i], copy) == 0) {
            free(copy);
            return 0;
        }
    }
    char **v = realloc(l->dirs, (l->n_dirs + 1) * sizeof(*v));
    if (!v) {
        free(copy);
        return TB_ENOMEM;
    }
    l->dirs = v;
    l->dirs[l->n_dirs++] = copy;
    return 0;
}

tb_loader_t *tb_loader_new(const char *const *dirs, size_t n_dirs)
{
    tb_loader_t *l = calloc(1, sizeof(*l));
    if (!l) {
        return NULL;
    }
    int rc = 0;
    for (size_t i = 0; i < n_dirs && rc == 0; i++) {
        rc = s_add_dir(l, dirs[i], strlen(dirs[i]));
    }
    const char *env = getenv("TURBINE_PLUGIN_PATH");
    while (env && *env && rc == 0) {
        const char *colon = strchr(env, ':');
        size_t len = colon ? (size_t)(colon - env) : strlen(env);
        rc = s_add_dir(l, env, len);
        env = colon ? colon + 1 : NULL;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0 && rc == 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char dir[PATH_MAX + 16];
            snprintf(dir, sizeof(dir), "%s/../plugins", exe);
            char real[PATH_MAX];
            const char *use = realpath(dir, real) ? real : dir;
            rc = s_add_dir(l, use, strlen(use));
        }
    }
    if (rc != 0) {
        tb_loader_destroy(&l);
    }
    return l;
}

void tb_loader_destroy(tb_loader_t **l_p)
{
    if (!l_p || !*l_p) {
        return;
    }
    tb_loader_t *l = *l_p;
    for (size_t i = 0; i < l->n_loaded; i++) {
        struct tb_loaded_plugin *p = l->loaded[i];
#ifndef TB_ASAN
        /* Under ASan keep plugins mapped so leak reports can name their frames. */
        dlclose(p->handle);
#endif
        free(p->name);
        free(p->path);
        free(p->rows);
        free(p);
    }
    free(l->loaded);
    for (size_t i = 0; i < l->n_dirs; i++) {
        free(l->dirs[i]);
    }
    free(l->dirs);
    free(l);
    *l_p = NULL;
}

int tb_loader_check_descriptor(const struct tb_plugin *d, const char *expect_name, char *err,
                               size_t err_len)
{
    if (!d) {
        snprintf(err, err_len, "the entry point returned no descriptor");
        return TB_EINVAL;
    }
    if (d->struct_size < offsetof(struct tb_plugin, abi_minor) + sizeof(d->abi_minor)) {
        snprintf(err, err_len, "the descriptor is %u bytes, too small to hold a version",
                 (unsigned)d->struct_size);
        return TB_EABI;
    }
    if (d->abi_major != TB_ABI_MAJOR) {
        snprintf(err, err_len,
                 "plugin ABI %u.%u does not match this turbine's ABI %d.%d: rebuild the plugin "
                 "against this turbine's tb_plugin.h",
                 d->abi_major, d->abi_minor, TB_ABI_MAJOR, TB_ABI_MINOR);
        return TB_EABI;
    }
    if (d->abi_minor > TB_ABI_MINOR) {
        snprintf(
            err, err_len,
            "plugin needs ABI %u.%u, newer than this turbine's ABI %d.%d: upgrade turbine or "
            "rebuild the plugin against this version",
            d->abi_major, d->abi_minor, TB_ABI_MAJOR, TB_ABI_MINOR);
        return TB_EABI;
    }
    /* Every member of ABI 1.0 is required; later minors only append. */
    size_t need = offsetof(struct tb_plugin, destroy) + sizeof(d->destroy);
    if (d->struct_size < need) {
        snprintf(err, err_len,
                 "the descriptor is %u bytes, smaller than the %zu bytes ABI %u.%u defines "
                 "(struct_size must be sizeof(struct tb_plugin))",
                 (unsigned)d->struct_size, need, d->abi_major, d->abi_minor);
        return TB_EABI;
    }
    if (!d->name || !d->version || !d->create || !d->start || !d->stop || !d->destroy) {
        snprintf(err, err_len,
                 "the descriptor lacks a name, version or one of create/start/stop/destroy");
        return TB_EINVAL;
    }
    if (expect_name && strcmp(d->name, expect_name) != 0) {
        snprintf(err, err_len, "the file is named for plugin '%s' but the descriptor says '%s'",
                 expect_name, d->name);
        return TB_EINVAL;
    }
    const struct tb_codec_layout *layout = tb_codec_layout_for_abi(d->abi_minor);
    if (layout->minor > tb_codec_schema_minor()) {
        snprintf(
            err, err_len,
            "plugin ABI %u.%u carries message schema %d.%u, newer than the %d.%u this process "
            "speaks (pinned by TB_SCHEMA_MINOR): unset it, or use a plugin built for %d.%u",
            d->abi_major, d->abi_minor, TB_SCHEMA_MAJOR, layout->minor, TB_SCHEMA_MAJOR,
            tb_codec_schema_minor(), TB_SCHEMA_MAJOR, tb_codec_schema_minor());
        return TB_EABI;
    }
    size_t stride = s_field_stride(d);
    if (stride < CONFIG_FIELD_SIZE_1_0) {
        snprintf(err, err_len,
                 "config_field_size is %zu, smaller than the %zu bytes of a config row "
                 "(it must be sizeof(struct tb_config_field))",
                 stride, (size_t)CONFIG_FIELD_SIZE_1_0);
        return TB_EABI;
    }
    if (d->config_field_count > 0 && !d->config_fields) {
        snprintf(err, err_len, "config_field_count is %zu but config_fields is NULL",
                 d->config_field_count);
        return TB_EINVAL;
    }
    for (size_t i = 0; i < d->config_field_count; i++) {
        char why[256];
        if (!tb_field_check_decl(s_row(d, stride, i), d->config_size, why, sizeof(why))) {
            snprintf(err, err_len, "bad config table: %s", why);
            return TB_EINVAL;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(s_row(d, stride, k)->key, s_row(d, stride, i)->key) == 0) {
                snprintf(err, err_len, "bad config table: key '%s' declared twice",
                         s_row(d, stride, i)->key);
                return TB_EINVAL;
            }
        }
    }
    return 0;
}

/* Copies the descriptor and its config rows into `p` as this host lays them out: members and row
 * bytes the plugin did not declare are zero.  0 or TB_ENOMEM. */
static int s_normalize(struct tb_loaded_plugin *p, const struct tb_plugin *d)
{
    size_t n = d->struct_size < sizeof(p->desc_copy) ? d->struct_size : sizeof(p->desc_copy);
    memset(&p->desc_copy, 0, sizeof(p->desc_copy));
    memcpy(&p->desc_copy, d, n);
    size_t stride = s_field_stride(d);
    size_t row = stride < sizeof(*p->rows) ? stride : sizeof(*p->rows);
    if (d->config_field_count > 0) {
        p->rows = calloc(d->config_field_count, sizeof(*p->rows));
        if (!p->rows) {
            return TB_ENOMEM;
        }
        for (size_t i = 0; i < d->config_field_count; i++) {
            memcpy(&p->rows[i], s_row(d, stride, i), row);
        }
    }
    p->desc_copy.config_fields = p->rows;
    p->desc_copy.config_field_size = sizeof(*p->rows);
    p->desc = &p->desc_copy;
    p->layout = tb_codec_layout_for_abi(d->abi_minor);
    return 0;
}

static bool s_valid_plugin_name(const char *name)
{
    if (!*name || strlen(name) > 64) {
        return false;
    }
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            return false;
        }
    }
    return true;
}

int tb_loader_load(tb_loader_t *l, const char *name, const struct tb_loaded_plugin **out,
                   char *err, size_t err_len)
{
    *out = NULL;
    for (size_t i = 0; i < l->n_loaded; i++) {
        if (strcmp(l->loaded[i]->name, name) == 0) {
            *out = l->loaded[i];
            return 0;
        }
    }
    if (!s_valid_plugin_name(name)) {
        snprintf(err, err_len, "'%s' is not a plugin name ([a-z0-9_]+)", name);
        return TB_EINVAL;
    }
    char path[PATH_MAX];
    bool found = false;
    for (size_t i = 0; i < l->n_dirs && !found; i++) {
        snprintf(path, sizeof(path), "%s/tb_%s.so", l->dirs[i], name);
        found = access(path, F_OK) == 0;
    }
    if (!found) {
        size_t k = (size_t)snprintf(err, err_len, "plugin '%s' not found: looked for tb_%s.so in",
                                    name, name);
        for (size_t i = 0; i < l->n_dirs && k < err_len; i++) {
            k += (size_t)snprintf(err + k, err_len - k, "%s %s", i ? "," : "", l->dirs[i]);
        }
        return TB_ENOENT;
    }
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(err, err_len, "cannot load plugin '%s' from %s: %s", name, path,
                 e ? e : "unknown error");
        return TB_EIO;
    }
    tb_plugin_entry_fn entry = (tb_plugin_entry_fn)dlsym(h, TB_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        snprintf(err, err_len,
                 "%s does not export the symbol '%s': it is not a turbine plugin, or was built "
                 "without TB_EXPORT on its entry point",
                 path, TB_PLUGIN_ENTRY_SYMBOL);
        dlclose(h);
        return TB_EINVAL;
    }
    const struct tb_plugin *d = entry();
    char why[512];
    int rc = tb_loader_check_descriptor(d, name, why, sizeof(why));
    if (rc != 0) {
        snprintf(err, err_len, "plugin '%s' (%s) refused: %s", name, path, why);
        dlclose(h);
        return rc;
    }
    struct tb_loaded_plugin *p = calloc(1, sizeof(*p));
    struct tb_loaded_plugin **v = realloc(l->loaded, (l->n_loaded + 1) * sizeof(*v));
    if (v) {
        l->loaded = v;
    }
    if (!p || !v || s_normalize(p, d) != 0) {
        if (p) {
            free(p->rows);
        }
        free(p);
        dlclose(h);
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    p->name = strdup(name);
    p->path = strdup(path);
    p->handle = h;
    l->loaded[l->n_loaded++] = p;
    *out = p;
    return 0;
}

size_t tb_loader_dirs(const tb_loader_t *l, const char *const **dirs)
{
    *dirs = (const char *const *)l->dirs;
    return l->n_dirs;
}

static int s_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t tb_loader_available(const tb_loader_t *l, char ***names)
{
    char **v = NULL;
    size_t n = 0;
    for (size_t i = 0; i < l->n_dirs; i++) {
        DIR *dir = opendir(l->dirs[i]);
        if (!dir) {
            continue;
        }
        struct dirent *de;
        while ((de = readdir(dir))) {
            size_t len = strlen(de->d_name);
            if (len < 7 || strncmp(de->d_name, "tb_", 3) != 0 ||
                strcmp(de->d_name + len - 3, ".so") != 0) {
                continue;
            }
            char *nm = strndup(de->d_name + 3, len - 6);
            bool dup = false;
            for (size_t k = 0; nm && k < n && !dup; k++) {
                dup = strcmp(v[k], nm) == 0;
            }
            char **nv = dup || !nm ? NULL : realloc(v, (n + 2) * sizeof(*v));
            if (!nv) {
                free(nm);
                continue;
            }
            v = nv;
            v[n++] = nm;
            v[n] = NULL;
        }
        closedir(dir);
    }
    if (n) {
        qsort(v, n, sizeof(*v), s_cmp);
    }
    *names = v;
    return n;
}
