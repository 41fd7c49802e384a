/*
 * tb_deploy.h - a deployment file: YAML read with libyaml, every key validated against the core's
 * own field tables and each component's plugin field table, all errors collected (file, line,
 * column, key, value, why, fix) before anything starts.
 */
#ifndef TB_DEPLOY_H
#define TB_DEPLOY_H

#include <stdbool.h>
#include <stddef.h>

#include "tb_arena.h"
#include "tb_diag.h"
#include "tb_loader.h"
#include "tb_plugin.h"

/* The core's settings (docs/config.md).  Strings live in the deployment's arena. */
struct tb_core_config {
    const char *ns;       /* namespace */
    int log_level;        /* tb_log_level_t */
    int log_format;       /* 0 text, 1 json */
    const char *log_file; /* NULL: stderr */
    const char *registry_listen;
    double heartbeat_s;
    double lease_ttl_s;
    int transport; /* 0 auto, 1 tcp, 2 ipc */
    const char *bus_host;
    double grace_s;
    double join_timeout_s;
    double bus_spin_s;
    struct tb_str_list plugin_path;
    int discovery;                     /* 0 embedded, 1 etcd */
    struct tb_str_list etcd_endpoints; /* discovery.endpoints */
    const char *etcd_prefix;           /* discovery.prefix */
    double etcd_lease_ttl_s;           /* discovery.lease_ttl */
    double etcd_timeout_s;             /* discovery.request_timeout */
    /* bus.curve (docs/bus.md "Authentication and encryption"): all NULL when absent */
    const char *curve_secret_key_file;
    const char *curve_public_key_file; /* optional */
    const char *curve_allowed_keys_file;
    const char *curve_head_public_key_file; /* optional: for --join over tcp */
};

/* Where a key's value sits in the file ("bus.curve.allowed_keys_file",
 * "components[0](http).config.router"), for checks made after loading. */
struct tb_deploy_pos {
    const char *key; /* in the deployment's arena */
    int line, column;
    struct tb_deploy_pos *next;
};

struct tb_deploy_component {
    const char *name;
    const char *plugin;
    int64_t replicas;
    const struct tb_loaded_plugin *lp; /* borrowed from the loader */
    void *config;                      /* the plugin's config struct (arena) */
    int line, column;
};

struct tb_deploy {
    char *file;
    struct tb_core_config core;
    struct tb_deploy_component *comps;
    size_t n_comps;
    tb_arena_t *arena;
    struct tb_deploy_pos *positions; /* every key given in the file */
};

/* The position of `key`'s value in the file (the section's or the file's start when the key was
 * not written): line and column, 0 when unknown. */
void tb_deploy_pos(const struct tb_deploy *d, const char *key, int *line, int *column);

/* Reads and validates `file`.  Creates the plugin loader (from plugin_path and the default
 * places) into *loader_out and loads every plugin the file names.  Returns 0 with *out (caller
 * destroys it before the loader), or TB_ECONFIG with every problem in `diag` (*out NULL;
 * *loader_out may be set and must be destroyed). */
int tb_deploy_load(const char *file, tb_loader_t **loader_out, struct tb_deploy **out,
                   struct tb_diag *diag);

/* For tb_deploy_load_flags: the file may belong to another host, whose secret key is not here
 * (`turbine check` over several files).  A bus.curve.secret_key_file that does not exist is then
 * accepted when public_key_file is given; one that exists is checked as always. */
#define TB_DEPLOY_KEYS_ELSEWHERE 1

/* tb_deploy_load with TB_DEPLOY_* flags. */
int tb_deploy_load_flags(const char *file, int flags, tb_loader_t **loader_out,
                         struct tb_deploy **out, struct tb_diag *diag);

void tb_deploy_destroy(struct tb_deploy **d_p);

/* The core's own field tables, for `turbine plugins --core` and docs. */
size_t tb_deploy_core_sections(const char *const **names);

#endif /* TB_DEPLOY_H */
