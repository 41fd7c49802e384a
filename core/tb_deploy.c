/* tb_deploy: reading and validating a deployment file (see tb_deploy.h, docs/config.md). */
#include "tb_deploy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "tb_curve.h"
#include "tb_fields.h"

#define OFF(m) offsetof(struct tb_core_config, m)

static const char *const s_levels[] = {"error", "warn", "info", "debug", "trace", NULL};
static const char *const s_formats[] = {"text", "json", NULL};
static const char *const s_transports[] = {"auto", "tcp", "ipc", NULL};
static const char *const s_discovery_backends[] = {"embedded", "etcd", NULL};

static const struct tb_config_field s_log_fields[] = {
    {.key = "level",
     .type = TB_CFG_ENUM,
     .offset = OFF(log_level),
     .default_value = "info",
     .choices = s_levels,
     .help = "least severe level written"},
    {.key = "format",
     .type = TB_CFG_ENUM,
     .offset = OFF(log_format),
     .default_value = "text",
     .choices = s_formats,
     .help = "text lines or JSON lines"},
    {.key = "file",
     .type = TB_CFG_STRING,
     .offset = OFF(log_file),
     .help = "append to this file (reopened on SIGHUP) instead of stderr"},
};

static const struct tb_config_field s_registry_fields[] = {
    {.key = "listen",
     .type = TB_CFG_STRING,
     .offset = OFF(registry_listen),
     .help = "tcp://HOST:PORT or ipc://PATH where other processes join this one"},
    {.key = "heartbeat_interval",
     .type = TB_CFG_SECONDS,
     .offset = OFF(heartbeat_s),
     .default_value = "1s",
     .has_bounds = true,
     .min = 0.05,
     .max = 60,
     .help = "how often leases are renewed"},
    {.key = "lease_ttl",
     .type = TB_CFG_SECONDS,
     .offset = OFF(lease_ttl_s),
     .default_value = "3s",
     .has_bounds = true,
     .min = 0.1,
     .max = 600,
     .help = "a route whose lease is not renewed for this long is removed"},
};

static const struct tb_config_field s_bus_fields[] = {
    {.key = "transport",
     .type = TB_CFG_ENUM,
     .offset = OFF(transport),
     .default_value = "auto",
     .choices = s_transports,
     .help =
         "how endpoints are reached from other processes (auto: tcp when joined or listening)"},
    {.key = "host",
     .type = TB_CFG_STRING,
     .offset = OFF(bus_host),
     .default_value = "127.0.0.1",
     .help = "tcp: address endpoints bind and advertise"},
    {.key = "join_timeout",
     .type = TB_CFG_SECONDS,
     .offset = OFF(join_timeout_s),
     .default_value = "5s",
     .has_bounds = true,
     .min = 0.1,
     .max = 600,
     .help = "how long --join waits for the head's registry"},
    {.key = "spin",
     .type = TB_CFG_SECONDS,
     .offset = OFF(bus_spin_s),
     .default_value = "50us",
     .has_bounds = true,
     .min = 0,
     .max = 0.01,
     .help = "how long a component's bus loop polls after work before it sleeps (0: never)"},
};

/* bus.curve: a section inside `bus` (every tcp socket of the bus authenticated and encrypted). */
static const struct tb_config_field s_curve_fields[] = {
    {.key = "secret_key_file",
     .type = TB_CFG_PATH,
     .offset = OFF(curve_secret_key_file),
     .required = true,
     .must_exist = true,
     .help =
         "this process's CURVE secret key (turbine keygen PREFIX writes PREFIX.key, mode 600)"},
    {.key = "public_key_file",
     .type = TB_CFG_PATH,
     .offset = OFF(curve_public_key_file),
     .must_exist = true,
     .help = "its public key (PREFIX.pub); checked against the secret key"},
    {.key = "allowed_keys_file",
     .type = TB_CFG_PATH,
     .offset = OFF(curve_allowed_keys_file),
     .required = true,
     .must_exist = true,
     .help = "the public keys of every process allowed on the bus, one per line ('#' comments)"},
    {.key = "head_public_key_file",
     .type = TB_CFG_PATH,
     .offset = OFF(curve_head_public_key_file),
     .must_exist = true,
     .help = "--join over tcp: the public key of the head process joined"},
};

static const struct tb_config_field s_discovery_fields[] = {
    {.key = "backend",
     .type = TB_CFG_ENUM,
     .offset = OFF(discovery),
     .default_value = "embedded",
     .choices = s_discovery_backends,
     .help = "embedded: one process holds the registry (--join it); etcd: every process "
             "registers its routes in etcd and sees everyone else's"},
    {.key = "endpoints",
     .type = TB_CFG_STR_LIST,
     .offset = OFF(etcd_endpoints),
     .help = "etcd: the cluster's client URLs, http://HOST:PORT"},
    {.key = "prefix",
     .type = TB_CFG_STRING,
     .offset = OFF(etcd_prefix),
     .default_value = "/turbine/",
     .help = "etcd: keys live under PREFIX<namespace>/"},
    {.key = "lease_ttl",
     .type = TB_CFG_SECONDS,
     .offset = OFF(etcd_lease_ttl_s),
     .default_value = "10s",
     .has_bounds = true,
     .min = 2,
     .max = 600,
     .help = "etcd: a process that stops renewing its lease for this long loses its routes"},
    {.key = "request_timeout",
     .type = TB_CFG_SECONDS,
     .offset = OFF(etcd_timeout_s),
     .default_value = "2s",
     .has_bounds = true,
     .min = 0.1,
     .max = 60,
     .help = "etcd: how long one request to an endpoint may take before the next is tried"},
};

static const struct tb_config_field s_shutdown_fields[] = {
    {.key = "grace_period",
     .type = TB_CFG_SECONDS,
     .offset = OFF(grace_s),
     .default_value = "30s",
     .has_bounds = true,
     .min = 0,
     .max = 3600,
     .help = "on SIGTERM/SIGINT, how long in-flight work may finish"},
};

static const struct tb_config_field s_top_fields[] = {
    {.key = "namespace",
     .type = TB_CFG_STRING,
     .offset = OFF(ns),
     .default_value = "turbine",
     .help = "first part of every endpoint name"},
    {.key = "plugin_path",
     .type = TB_CFG_STR_LIST,
     .offset = OFF(plugin_path),
     .help = "folders searched first for tb_<name>.so"},
};

struct section {
    const char *name;
    const struct tb_config_field *fields;
    size_t n;
};

static const struct section s_sections[] = {
    {"log", s_log_fields, sizeof(s_log_fields) / sizeof(s_log_fields[0])},
    {"registry", s_registry_fields, sizeof(s_registry_fields) / sizeof(s_registry_fields[0])},
    {"bus", s_bus_fields, sizeof(s_bus_fields) / sizeof(s_bus_fields[0])},
    {"shutdown", s_shutdown_fields, sizeof(s_shutdown_fields) / sizeof(s_shutdown_fields[0])},
    {"discovery", s_discovery_fields, sizeof(s_discovery_fields) / sizeof(s_discovery_fields[0])},
};
#define N_SECTIONS (sizeof(s_sections) / sizeof(s_sections[0]))

static const char *const s_top_keys[] = {"namespace", "plugin_path", "log",
                                         "registry",  "bus",         "shutdown",
                                         "discovery", "components",  NULL};
static const char *const s_comp_keys[] = {"name", "plugin", "replicas", "config", NULL};

size_t tb_deploy_core_sections(const char *const **names)
{
    *names = s_top_keys;
    return sizeof(s_top_keys) / sizeof(s_top_keys[0]) - 1;
}

/* ------------------------------------------------------------------------------------------- */

struct loader_ctx {
    const char *file;
    yaml_document_t *doc;
    struct tb_diag *diag;
    tb_arena_t *arena;
    struct tb_deploy *d;
    int flags; /* TB_DEPLOY_* */
};

/* Remembers where `key`'s value sits (tb_deploy_pos). */
static void s_remember(struct loader_ctx *c, const char *key, const yaml_node_t *v)
{
    struct tb_deploy_pos *p = tb_arena_alloc(c->arena, sizeof(*p));
    char *k = tb_arena_strndup(c->arena, key, strlen(key));
    if (!p || !k) {
        return;
    }
    p->key = k;
    p->line = (int)v->start_mark.line + 1;
    p->column = (int)v->start_mark.column + 1;
    p->next = c->d->positions;
    c->d->positions = p;
}

void tb_deploy_pos(const struct tb_deploy *d, const char *key, int *line, int *column)
{
    *line = 0;
    *column = 0;
    size_t best = 0;
    /* the key itself, else the longest section above it that was written */
    for (const struct tb_deploy_pos *p = d->positions; p; p = p->next) {
        size_t n = strlen(p->key);
        bool match = strcmp(p->key, key) == 0 ||
                     (strncmp(p->key, key, n) == 0 && (key[n] == '.' || key[n] == '['));
        if (match && n > best) {
            best = n;
            *line = p->line;
            *column = p->column;
        }
    }
}

static int s_line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

static int s_col(const yaml_node_t *n)
{
    return (int)n->start_mark.column + 1;
}

static const char *s_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static const char *s_kind(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE    ? "mapping"
           : n->type == YAML_SEQUENCE_NODE ? "list"
                                           : "value";
}

/* Applies `fields` to mapping `node`: defaults first, then each key; unknown and duplicate keys
 * and missing required keys are diagnosed.  `prefix` is the key path of the mapping. */
static bool s_apply_mapping(struct loader_ctx *c, yaml_node_t *node,
                            const struct tb_config_field *fields, size_t n, void *config,
                            const char *prefix, const char *nested)
{
    bool ok = true;
    char err[512];
    for (size_t i = 0; i < n; i++) {
        if (!tb_field_apply_default(&fields[i], config, c->arena, err, sizeof(err))) {
            tb_diag_add(c->diag, c->file, 0, 0, prefix, NULL, err,
                        "this is a bug in the plugin's config table: report it");
            ok = false;
        }
    }
    if (node->type != YAML_MAPPING_NODE) {
        tb_diag_addf(c->diag, c->file, s_line(node), s_col(node), prefix, NULL,
                     "write 'key: value' lines indented under it",
                     "expected a mapping, found a %s", s_kind(node));
        return false;
    }
    bool *seen = calloc(n + 1, sizeof(bool));
    const char **names = calloc(n + 1, sizeof(char *));
    if (!seen || !names) {
        free(seen);
        free(names);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        names[i] = fields[i].key;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *key = s_scalar(k);
        if (!key || !v) {
            tb_diag_add(c->diag, c->file, k ? s_line(k) : 0, k ? s_col(k) : 0, prefix, NULL,
                        "a key must be a plain word", NULL);
            ok = false;
            continue;
        }
        char path[512];
        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
        s_remember(c, path, v);
        if (nested && strcmp(key, nested) == 0) {
            continue; /* a section of its own, applied by the caller */
        }
        size_t fi = n;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(fields[i].key, key) == 0) {
                fi = i;
                break;
            }
        }
        if (fi == n) {
            char allowed[1024];
            size_t kk = 0;
            allowed[0] = 0;
            for (size_t i = 0; i < n && kk < sizeof(allowed); i++) {
                kk += (size_t)snprintf(allowed + kk, sizeof(allowed) - kk, "%s%s", i ? ", " : "",
                                       fields[i].key);
            }
            const char *near = tb_closest(key, names);
            char fix[1200];
            if (near) {
                snprintf(fix, sizeof(fix), "did you mean '%s'? known keys: %s", near, allowed);
            } else {
                snprintf(fix, sizeof(fix), "remove it; known keys: %s%s%s",
                         n ? allowed : "(none)", nested ? ", " : "", nested ? nested : "");
            }
            tb_diag_add(c->diag, c->file, s_line(k), s_col(k), path, NULL, "unknown key", fix);
            ok = false;
            continue;
        }
        if (seen[fi]) {
            tb_diag_add(c->diag, c->file, s_line(k), s_col(k), path, NULL,
                        "the key appears twice", "keep one of them");
            ok = false;
            continue;
        }
        seen[fi] = true;
        struct tb_field_ctx fc = {.file = c->file,
                                  .key = path,
                                  .diag = c->diag,
                                  .arena = c->arena};
        ok = tb_field_apply(&fields[fi], c->doc, v, config, &fc) && ok;
    }
    for (size_t i = 0; i < n; i++) {
        if (fields[i].required && !seen[i]) {
            char path[512];
            char fix[600];
            snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", fields[i].key);
            snprintf(fix, sizeof(fix), "add '%s: <%s>' (%s)", fields[i].key,
                     tb_field_type_name(fields[i].type), fields[i].help ? fields[i].help : "");
            tb_diag_add(c->diag, c->file, s_line(node), s_col(node), path, NULL,
                        "required key is missing", fix);
            ok = false;
        }
    }
    free(seen);
    free(names);
    return ok;
}

static bool s_name_ok(const char *s)
{
    if (!*s || strlen(s) > 64) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')) {
            return false;
        }
    }
    return true;
}

/* Appends " name" for each plugin the loader can find to fix[k..size). */
static void s_append_available(tb_loader_t *loader, char *fix, size_t size, size_t k)
{
    char **avail = NULL;
    size_t na = tb_loader_available(loader, &avail);
    for (size_t i = 0; i < na; i++) {
        if (k < size) {
            k += (size_t)snprintf(fix + k, size - k, " %s", avail[i]);
        }
        free(avail[i]);
    }
    free(avail);
}

/* The value of a component's `name` (ki 0), `plugin` (1) or `replicas` (2) key into comp. */
static bool s_component_value(struct loader_ctx *c, struct tb_deploy_component *comp, int ki,
                              yaml_node_t *v, const char *path)
{
    const char *val = s_scalar(v);
    if (!val) {
        tb_diag_addf(c->diag, c->file, s_line(v), s_col(v), path, NULL, "write a single value",
                     "expected a value, found a %s", s_kind(v));
        return false;
    }
    char *exp = NULL;
    char err[256];
    if (!tb_expand_env(val, &exp, err, sizeof(err))) {
        tb_diag_add(c->diag, c->file, s_line(v), s_col(v), path, val, err,
                    "export the variable, or give a default: ${NAME:-value}");
        return false;
    }
    bool ok = true;
    if (ki == 0) {
        if (!s_name_ok(exp)) {
            tb_diag_add(c->diag, c->file, s_line(v), s_col(v), path, exp,
                        "a component name is 1-64 characters of [a-z0-9_-]",
                        "use lowercase letters, digits, '_' and '-', e.g. 'engine-1'");
            ok = false;
        } else {
            comp->name = tb_arena_strndup(c->arena, exp, strlen(exp));
        }
    } else if (ki == 1) {
        comp->plugin = tb_arena_strndup(c->arena, exp, strlen(exp));
    } else {
        char *end;
        long long r = strtoll(exp, &end, 10);
        if (end == exp || *end || r < 1 || r > 64) {
            tb_diag_add(c->diag, c->file, s_line(v), s_col(v), path, exp,
                        "replicas must be a whole number between 1 and 64",
                        "write e.g. 'replicas: 2'");
            ok = false;
        } else {
            comp->replicas = r;
        }
    }
    free(exp);
    return ok;
}

/* The keys of one component mapping: name, plugin and replicas into comp; the `config` node
 * and the `plugin` value node (for messages) are handed back; seen[] marks the keys given. */
static bool s_component_keys(struct loader_ctx *c, yaml_node_t *node, const char *prefix,
                             struct tb_deploy_component *comp, yaml_node_t **config_node,
                             yaml_node_t **plugin_node, bool seen[4])
{
    bool ok = true;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *key = s_scalar(k);
        char path[128];
        snprintf(path, sizeof(path), "%s.%s", prefix, key ? key : "?");
        int ki = -1;
        for (int i = 0; key && s_comp_keys[i]; i++) {
            if (strcmp(key, s_comp_keys[i]) == 0) {
                ki = i;
            }
        }
        if (ki < 0 || !v) {
            const char *near = key ? tb_closest(key, s_comp_keys) : NULL;
            char fix[256];
            snprintf(fix, sizeof(fix),
                     "%s%s%sa component has: name, plugin, replicas, config "
                     "(plugin settings go under 'config')",
                     near ? "did you mean '" : "", near ? near : "", near ? "'? " : "");
            tb_diag_add(c->diag, c->file, k ? s_line(k) : 0, k ? s_col(k) : 0, path, NULL,
                        "unknown key", fix);
            ok = false;
            continue;
        }
        if (seen[ki]) {
            tb_diag_add(c->diag, c->file, s_line(k), s_col(k), path, NULL,
                        "the key appears twice", "keep one of them");
            ok = false;
            continue;
        }
        seen[ki] = true;
        if (ki == 3) {
            *config_node = v;
            continue;
        }
        if (ki == 1) {
            *plugin_node = v;
        }
        ok = s_component_value(c, comp, ki, v, path) && ok;
    }
    return ok;
}

/* Diagnostics for a missing name or plugin, and for a name used by an earlier component. */
static bool s_component_check(struct loader_ctx *c, tb_loader_t *loader, yaml_node_t *node,
                              const char *prefix, const bool seen[4], const struct tb_deploy *d)
{
    const struct tb_deploy_component *comp = &d->comps[d->n_comps];
    bool ok = true;
    if (!seen[0]) {
        tb_diag_add(c->diag, c->file, s_line(node), s_col(node), prefix, NULL,
                    "required key 'name' is missing",
                    "add 'name: <component name>', e.g. 'name: http'");
        ok = false;
    }
    if (!seen[1]) {
        char fix[1024];
        size_t k = (size_t)snprintf(fix, sizeof(fix), "add 'plugin: <name>'; available:");
        s_append_available(loader, fix, sizeof(fix), k);
        tb_diag_add(c->diag, c->file, s_line(node), s_col(node), prefix, NULL,
                    "required key 'plugin' is missing", fix);
        ok = false;
    }
    for (size_t i = 0; comp->name && i < d->n_comps; i++) {
        if (d->comps[i].name && strcmp(d->comps[i].name, comp->name) == 0) {
            tb_diag_addf(c->diag, c->file, comp->line, comp->column, prefix, comp->name,
                         "give each component its own name (use 'replicas: N' for copies)",
                         "component name already used on line %d", d->comps[i].line);
            ok = false;
        }
    }
    return ok;
}

/* Loads comp->plugin; on failure says why at the `plugin` key (plugin_node, when given) with a
 * fix (the closest available name, or a rebuild for an ABI mismatch) and leaves comp->lp NULL. */
static bool s_component_load(struct loader_ctx *c, tb_loader_t *loader,
                             struct tb_deploy_component *comp, const char *prefix,
                             yaml_node_t *plugin_node)
{
    char err[2048];
    int rc = tb_loader_load(loader, comp->plugin, &comp->lp, err, sizeof(err));
    if (rc == 0) {
        return true;
    }
    char fix[1024] = "check the plugin name, TURBINE_PLUGIN_PATH and plugin_path";
    if (rc == TB_ENOENT) {
        char **avail = NULL;
        size_t na = tb_loader_available(loader, &avail);
        const char *near = tb_closest(comp->plugin, (const char *const *)avail);
        size_t k = (size_t)snprintf(fix, sizeof(fix),
                                    "%s%s%savailable plugins:", near ? "did you mean '" : "",
                                    near ? near : "", near ? "'? " : "");
        for (size_t i = 0; i < na; i++) {
            free(avail[i]);
        }
        free(avail);
        s_append_available(loader, fix, sizeof(fix), k);
    } else if (rc == TB_EABI) {
        snprintf(fix, sizeof(fix), "rebuild the plugin against this turbine");
    }
    char ppath[96];
    snprintf(ppath, sizeof(ppath), "%s.plugin", prefix);
    tb_diag_add(c->diag, c->file, plugin_node ? s_line(plugin_node) : comp->line,
                plugin_node ? s_col(plugin_node) : comp->column, ppath, comp->plugin, err, fix);
    comp->lp = NULL;
    return false;
}

/* Applies the plugin's config fields to the component's `config` block (or to an empty one:
 * defaults only, required keys still required). */
static bool s_component_config(struct loader_ctx *c, struct tb_deploy_component *comp, size_t idx,
                               yaml_node_t *node, yaml_node_t *config_node)
{
    const struct tb_plugin *pd = comp->lp->desc;
    comp->config = tb_arena_alloc(c->arena, pd->config_size ? pd->config_size : 1);
    if (!comp->config) {
        return false;
    }
    char cprefix[160];
    snprintf(cprefix, sizeof(cprefix), "components[%zu](%s).config", idx,
             comp->name ? comp->name : "?");
    yaml_node_t empty = {.type = YAML_MAPPING_NODE, .start_mark = node->start_mark};
    return s_apply_mapping(c, config_node ? config_node : &empty, pd->config_fields,
                           pd->config_field_count, comp->config, cprefix, NULL);
}

/* One entry of `components`.  Every problem becomes a diagnostic; the entry is kept either way
 * so that later entries can be checked against it. */
static void s_component(struct loader_ctx *c, tb_loader_t *loader, yaml_node_t *node, size_t idx,
                        struct tb_deploy *d)
{
    struct tb_deploy_component *comp = &d->comps[d->n_comps];
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "components[%zu]", idx);
    comp->line = s_line(node);
    comp->column = s_col(node);
    comp->replicas = 1;
    if (node->type != YAML_MAPPING_NODE) {
        tb_diag_addf(c->diag, c->file, s_line(node), s_col(node), prefix, NULL,
                     "write '- name: ...' then 'plugin: ...' under it",
                     "expected a component mapping, found a %s", s_kind(node));
        return;
    }
    yaml_node_t *config_node = NULL;
    yaml_node_t *plugin_node = NULL;
    bool seen[4] = {false, false, false, false};
    s_component_keys(c, node, prefix, comp, &config_node, &plugin_node, seen);
    s_component_check(c, loader, node, prefix, seen, d);
    if (comp->plugin) {
        s_component_load(c, loader, comp, prefix, plugin_node);
    }
    if (comp->lp) {
        s_component_config(c, comp, idx, node, config_node);
    }
    d->n_comps++;
}

static int s_load_yaml(const char *file, yaml_document_t *doc, struct tb_diag *diag)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        tb_diag_addf(diag, file, 0, 0, NULL, NULL, "check the path given to turbine",
                     "cannot open the deployment file: %s", strerror(errno));
        return TB_ENOENT;
    }
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc = 0;
    if (!yaml_parser_load(&parser, doc)) {
        tb_diag_addf(diag, file, (int)parser.problem_mark.line + 1,
                     (int)parser.problem_mark.column + 1, NULL, NULL,
                     "fix the YAML syntax (indent with spaces; quote values containing ': ')",
                     "YAML syntax error: %s%s%s", parser.problem ? parser.problem : "invalid",
                     parser.context ? " " : "", parser.context ? parser.context : "");
        rc = TB_ECONFIG;
    } else if (!yaml_document_get_root_node(doc)) {
        tb_diag_add(diag, file, 0, 0, NULL, NULL, "the file is empty",
                    "list the components to run; see examples/");
        yaml_document_delete(doc);
        rc = TB_ECONFIG;
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

static yaml_node_t *s_get(yaml_document_t *doc, yaml_node_t *map, const char *key,
                          yaml_node_t **key_node)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        const char *ks = s_scalar(k);
        if (ks && strcmp(ks, key) == 0) {
            if (key_node) {
                *key_node = k;
            }
            return yaml_document_get_node(doc, p->value);
        }
    }
    return NULL;
}

/* Unknown and repeated top-level keys. */
static void s_check_top_keys(struct loader_ctx *c, yaml_node_t *root)
{
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        const char *key = s_scalar(k);
        bool known = false;
        for (int i = 0; key && s_top_keys[i]; i++) {
            known = known || strcmp(key, s_top_keys[i]) == 0;
        }
        int dup = 0;
        for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < p; q++) {
            const char *qk = s_scalar(yaml_document_get_node(c->doc, q->key));
            dup += key && qk && strcmp(qk, key) == 0;
        }
        if (!known) {
            const char *near = key ? tb_closest(key, s_top_keys) : NULL;
            char fix[300];
            snprintf(
                fix, sizeof(fix),
                "%s%s%stop-level keys: namespace, plugin_path, log, registry, bus, shutdown, "
                "discovery, components",
                near ? "did you mean '" : "", near ? near : "", near ? "'? " : "");
            tb_diag_add(c->diag, c->file, k ? s_line(k) : 0, k ? s_col(k) : 0, key ? key : "?",
                        NULL, "unknown key", fix);
        } else if (dup) {
            tb_diag_add(c->diag, c->file, s_line(k), s_col(k), key, NULL, "the key appears twice",
                        "keep one of them");
        }
    }
}

/* discovery: the etcd backend needs its endpoints, each an http(s) URL, and a /prefix/. */
static void s_check_discovery(struct loader_ctx *c, yaml_node_t *root, const struct tb_deploy *d)
{
    yaml_node_t *sec = s_get(c->doc, root, "discovery", NULL);
    yaml_node_t *eps = sec && sec->type == YAML_MAPPING_NODE
                           ? s_get(c->doc, sec, "endpoints", NULL)
                           : NULL;
    yaml_node_t *at = eps ? eps : sec;
    const struct tb_str_list *l = &d->core.etcd_endpoints;
    if (d->core.discovery == 1 && l->count == 0) {
        tb_diag_add(c->diag, c->file, at ? s_line(at) : 0, at ? s_col(at) : 0,
                    "discovery.endpoints", NULL,
                    "the etcd backend needs the cluster's client URLs",
                    "e.g. 'endpoints: [http://10.0.0.1:2379, http://10.0.0.2:2379]'");
    }
    for (size_t i = 0; i < l->count; i++) {
        if (strncmp(l->items[i], "http://", 7) != 0 && strncmp(l->items[i], "https://", 8) != 0) {
            tb_diag_add(c->diag, c->file, at ? s_line(at) : 0, at ? s_col(at) : 0,
                        "discovery.endpoints", l->items[i], "an etcd endpoint is a client URL",
                        "write it as http://HOST:PORT (etcd's client port, usually 2379)");
        }
    }
    const char *p = d->core.etcd_prefix;
    if (p && (p[0] != '/' || p[strlen(p) - 1] != '/')) {
        yaml_node_t *v = sec && sec->type == YAML_MAPPING_NODE
                             ? s_get(c->doc, sec, "prefix", NULL)
                             : NULL;
        tb_diag_add(c->diag, c->file, v ? s_line(v) : 0, v ? s_col(v) : 0, "discovery.prefix", p,
                    "a key prefix starts and ends with '/'", "e.g. 'prefix: /turbine/'");
    }
}

/* bus.curve: CURVE is in this libzmq, and every key file reads as a key (never quoting one). */
static void s_check_curve(struct loader_ctx *c, const struct tb_core_config *core)
{
    int line, col;
    char err[1024];
    char key[TB_CURVE_KEY_SIZE];
    if (!tb_curve_is_available()) {
        tb_deploy_pos(c->d, "bus.curve", &line, &col);
        tb_diag_add(c->diag, c->file, line, col, "bus.curve", NULL,
                    "this libzmq was built without CURVE (zmq_has(\"curve\") is false)",
                    "install a libzmq built with libsodium (Debian's libzmq5 is), or remove "
                    "bus.curve");
        return;
    }
    const struct {
        const char *key, *path, *what;
        bool secret;
    } files[] = {
        {"bus.curve.secret_key_file", core->curve_secret_key_file, "secret key file", true},
        {"bus.curve.public_key_file", core->curve_public_key_file, "public key file", false},
        {"bus.curve.head_public_key_file", core->curve_head_public_key_file,
         "head's public key file", false},
    };
    char secret_pub[TB_CURVE_KEY_SIZE] = "";
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (!files[i].path) {
            continue;
        }
        tb_deploy_pos(c->d, files[i].key, &line, &col);
        if (files[i].secret && (c->flags & TB_DEPLOY_KEYS_ELSEWHERE) &&
            access(files[i].path, F_OK) != 0) {
            if (!core->curve_public_key_file) {
                tb_diag_addf(c->diag, c->file, line, col, files[i].key, files[i].path,
                             "check this file on its own host, or give its public_key_file to "
                             "check the deployment here",
                             "cannot access it: %s", strerror(errno));
            }
            continue; /* its host checks it */
        }
        if (tb_curve_read_key_file(files[i].path, files[i].what, files[i].secret, key, err,
                                   sizeof(err)) != 0) {
            tb_diag_add(c->diag, c->file, line, col, files[i].key, files[i].path, err,
                        files[i].secret ? "make a key pair with 'turbine keygen PREFIX' and name "
                                          "PREFIX.key here"
                                        : "name a .pub file 'turbine keygen' wrote");
        } else if (files[i].secret) {
            tb_curve_public_of(key, secret_pub);
        } else if (i == 1 && secret_pub[0] && strcmp(key, secret_pub) != 0) {
            tb_diag_add(c->diag, c->file, line, col, files[i].key, files[i].path,
                        "it does not hold the public key of secret_key_file",
                        "name the .pub file written with the .key file by 'turbine keygen'");
        }
        explicit_bzero(key, sizeof(key));
    }
    char(*allowed)[TB_CURVE_KEY_SIZE] = NULL;
    size_t n = 0;
    if (core->curve_allowed_keys_file &&
        tb_curve_read_allowed(core->curve_allowed_keys_file, &allowed, &n, err, sizeof(err)) !=
            0) {
        tb_deploy_pos(c->d, "bus.curve.allowed_keys_file", &line, &col);
        tb_diag_add(c->diag, c->file, line, col, "bus.curve.allowed_keys_file",
                    core->curve_allowed_keys_file, err,
                    "list the public key (the line of each .pub file) of every process of the "
                    "deployment, one per line");
    }
    free(allowed);
}

/* The core's own settings: namespace and plugin_path, then the log, registry, bus and shutdown
 * sections (defaults for an absent one), then the checks across keys. */
static void s_core_settings(struct loader_ctx *c, yaml_node_t *root, struct tb_deploy *d)
{
    /* namespace and plugin_path: apply through a synthetic mapping of just those keys. */
    for (size_t i = 0; i < sizeof(s_top_fields) / sizeof(s_top_fields[0]); i++) {
        char err[256];
        const struct tb_config_field *f = &s_top_fields[i];
        tb_field_apply_default(f, &d->core, d->arena, err, sizeof(err));
        yaml_node_t *v = s_get(c->doc, root, f->key, NULL);
        if (v) {
            s_remember(c, f->key, v);
            struct tb_field_ctx fc = {.file = c->file,
                                      .key = f->key,
                                      .diag = c->diag,
                                      .arena = d->arena};
            tb_field_apply(f, c->doc, v, &d->core, &fc);
        }
    }
    if (d->core.ns && !s_name_ok(d->core.ns)) {
        yaml_node_t *v = s_get(c->doc, root, "namespace", NULL);
        tb_diag_add(c->diag, c->file, v ? s_line(v) : 0, v ? s_col(v) : 0, "namespace",
                    d->core.ns, "a namespace is 1-64 characters of [a-z0-9_-]",
                    "e.g. 'namespace: demo'");
    }
    for (size_t s = 0; s < N_SECTIONS; s++) {
        yaml_node_t *v = s_get(c->doc, root, s_sections[s].name, NULL);
        if (v) {
            s_remember(c, s_sections[s].name, v);
        }
        yaml_node_t empty = {.type = YAML_MAPPING_NODE};
        bool bus = strcmp(s_sections[s].name, "bus") == 0;
        s_apply_mapping(c, v ? v : &empty, s_sections[s].fields, s_sections[s].n, &d->core,
                        s_sections[s].name, bus ? "curve" : NULL);
        yaml_node_t *curve = bus && v && v->type == YAML_MAPPING_NODE
                                 ? s_get(c->doc, v, "curve", NULL)
                                 : NULL;
        if (curve) {
            struct tb_config_field fields[sizeof(s_curve_fields) / sizeof(s_curve_fields[0])];
            memcpy(fields, s_curve_fields, sizeof(fields));
            /* another host's secret key need not be here: s_check_curve says when it must */
            fields[0].must_exist = !(c->flags & TB_DEPLOY_KEYS_ELSEWHERE);
            s_apply_mapping(c, curve, fields, sizeof(fields) / sizeof(fields[0]), &d->core,
                            "bus.curve", NULL);
            s_check_curve(c, &d->core);
        }
    }
    if (d->core.lease_ttl_s <= d->core.heartbeat_s) {
        yaml_node_t *reg = s_get(c->doc, root, "registry", NULL);
        yaml_node_t *v = reg && reg->type == YAML_MAPPING_NODE
                             ? s_get(c->doc, reg, "lease_ttl", NULL)
                             : NULL;
        v = v ? v : reg;
        tb_diag_addf(c->diag, c->file, v ? s_line(v) : 0, v ? s_col(v) : 0, "registry.lease_ttl",
                     NULL, "make lease_ttl at least twice heartbeat_interval",
                     "lease_ttl (%g s) must be longer than heartbeat_interval (%g s)",
                     d->core.lease_ttl_s, d->core.heartbeat_s);
    }
    s_check_discovery(c, root, d);
}

/* The `components` list: at least one, each checked and its plugin loaded through loader. */
static void s_components(struct loader_ctx *c, yaml_node_t *root, tb_loader_t *loader,
                         struct tb_deploy *d)
{
    yaml_node_t *ck = NULL;
    yaml_node_t *comps = s_get(c->doc, root, "components", &ck);
    if (!comps || comps->type != YAML_SEQUENCE_NODE ||
        comps->data.sequence.items.top == comps->data.sequence.items.start) {
        tb_diag_add(c->diag, c->file, ck ? s_line(ck) : s_line(root),
                    ck ? s_col(ck) : s_col(root), "components", NULL,
                    comps && comps->type != YAML_SEQUENCE_NODE
                        ? "components must be a list"
                        : "no components: nothing would run",
                    "list them: 'components:' then '- name: http' / '  plugin: http' lines");
        return;
    }
    size_t n = (size_t)(comps->data.sequence.items.top - comps->data.sequence.items.start);
    d->comps = tb_arena_alloc(d->arena, n * sizeof(*d->comps));
    if (!d->comps) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *cn = yaml_document_get_node(c->doc, comps->data.sequence.items.start[i]);
        if (cn) {
            s_component(c, loader, cn, i, d);
        }
    }
}

int tb_deploy_load(const char *file, tb_loader_t **loader_out, struct tb_deploy **out,
                   struct tb_diag *diag)
{
    return tb_deploy_load_flags(file, 0, loader_out, out, diag);
}

int tb_deploy_load_flags(const char *file, int flags, tb_loader_t **loader_out,
                         struct tb_deploy **out, struct tb_diag *diag)
{
    yaml_document_t doc;
    *out = NULL;
    *loader_out = NULL;
    size_t errors_before = diag->n;
    struct tb_deploy *d = calloc(1, sizeof(*d));
    if (!d) {
        return TB_ENOMEM;
    }
    d->file = strdup(file);
    d->arena = tb_arena_new(8192);
    if (!d->file || !d->arena) {
        tb_deploy_destroy(&d);
        return TB_ENOMEM;
    }
    if (s_load_yaml(file, &doc, diag) != 0) {
        tb_deploy_destroy(&d);
        return TB_ECONFIG;
    }
    struct loader_ctx c = {
        .file = file, .doc = &doc, .diag = diag, .arena = d->arena, .d = d, .flags = flags};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root->type != YAML_MAPPING_NODE) {
        tb_diag_addf(diag, file, s_line(root), s_col(root), NULL, NULL,
                     "start with 'components:' and list the components under it",
                     "the file must be a mapping of settings, found a %s", s_kind(root));
        goto done;
    }
    s_check_top_keys(&c, root);
    s_core_settings(&c, root, d);
    *loader_out = tb_loader_new(d->core.plugin_path.items, d->core.plugin_path.count);
    if (!*loader_out) {
        tb_diag_add(diag, file, 0, 0, NULL, NULL, "out of memory", NULL);
        goto done;
    }
    s_components(&c, root, *loader_out, d);
done:
    yaml_document_delete(&doc);
    if (diag->n > errors_before) {
        tb_deploy_destroy(&d);
        return TB_ECONFIG;
    }
    *out = d;
    return 0;
}

void tb_deploy_destroy(struct tb_deploy **d_p)
{
    if (!d_p || !*d_p) {
        return;
    }
    struct tb_deploy *d = *d_p;
    tb_arena_destroy(&d->arena);
    free(d->file);
    free(d);
    *d_p = NULL;
}
