/* tb_check: a deployment split into per-host files, validated as a whole (see tb_check.h). */
#include "tb_check.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_curve.h"
#include "tb_deploy.h"
#include "tb_diag.h"
#include "tb_serve.h"

/* One per-host file. */
struct host {
    const char *file;
    tb_loader_t *loader;
    struct tb_deploy *d;
    char pub[TB_CURVE_KEY_SIZE]; /* its process's CURVE public key, "" when unknown */
};

struct ctx {
    struct host *h;
    size_t n;
    struct tb_diag diag;
};

/* ------------------------------------------------------------------------------------------- */
/* Reading a component's config through its plugin's field table. */

static const struct tb_config_field *s_field(const struct tb_deploy_component *c, const char *key)
{
    const struct tb_plugin *p = c->lp->desc;
    for (size_t i = 0; i < p->config_field_count; i++) {
        if (strcmp(p->config_fields[i].key, key) == 0) {
            return &p->config_fields[i];
        }
    }
    return NULL;
}

/* A string-valued key (string, model name, path, enum), or NULL when absent or not set. */
static const char *s_value(const struct tb_deploy_component *c, const char *key)
{
    const struct tb_config_field *f = s_field(c, key);
    if (!f || !c->config) {
        return NULL;
    }
    const char *at = (const char *)c->config + f->offset;
    if (f->type == TB_CFG_ENUM) {
        int i;
        memcpy(&i, at, sizeof(i));
        return i >= 0 ? f->choices[i] : NULL;
    }
    if (f->type == TB_CFG_STRING || f->type == TB_CFG_MODEL_NAME || f->type == TB_CFG_PATH) {
        const char *s;
        memcpy(&s, at, sizeof(s));
        return s;
    }
    return NULL;
}

static bool s_is(const struct tb_deploy_component *c, const char *plugin)
{
    return strcmp(c->plugin, plugin) == 0;
}

/* An engine: a plugin that serves a model and is not the preprocessor (mock, engine_cpu, ...). */
static bool s_is_engine(const struct tb_deploy_component *c)
{
    return !s_is(c, "preprocessor") && s_value(c, "served_model_name") != NULL;
}

/* What an engine takes: its `kind` key (the mock's), else token ids. */
static const char *s_engine_kind(const struct tb_deploy_component *c)
{
    const char *k = s_value(c, "kind");
    return k ? k : "tokens";
}

/* ------------------------------------------------------------------------------------------- */

static void s_error(struct ctx *x, const struct host *h, const struct tb_deploy_component *comp,
                    const char *key, const char *value, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* An error at `key` of host h (or at the component, or at the file's start, where the key was
 * not written). */
static void s_error(struct ctx *x, const struct host *h, const struct tb_deploy_component *comp,
                    const char *key, const char *value, const char *fix, const char *fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    int line, col;
    tb_deploy_pos(h->d, key, &line, &col);
    if (line == 0) {
        line = comp ? comp->line : 1;
        col = comp ? comp->column : 1;
    }
    tb_diag_add(&x->diag, h->file, line, col, key, value, why, fix);
}

static void s_comp_key(char *out, size_t len, const struct host *h,
                       const struct tb_deploy_component *c, const char *key)
{
    snprintf(out, len, "components[%zu](%s)%s%s", (size_t)(c - h->d->comps), c->name,
             key ? ".config." : "", key ? key : "");
}

/* Calls fn for every component of every file until it returns true; returns that. */
typedef bool (*s_comp_fn)(const struct tb_deploy_component *c, const void *arg);
static bool s_any(const struct ctx *x, s_comp_fn fn, const void *arg)
{
    for (size_t k = 0; k < x->n; k++) {
        for (size_t i = 0; i < x->h[k].d->n_comps; i++) {
            if (fn(&x->h[k].d->comps[i], arg)) {
                return true;
            }
        }
    }
    return false;
}

static bool s_router_named(const struct tb_deploy_component *c, const void *name)
{
    return s_is(c, "router") && strcmp(c->name, name) == 0;
}

static bool s_any_engine(const struct tb_deploy_component *c, const void *arg)
{
    (void)arg;
    return s_is_engine(c);
}

static bool s_tokens_engine_of(const struct tb_deploy_component *c, const void *model)
{
    return s_is_engine(c) && strcmp(s_engine_kind(c), "tokens") == 0 &&
           strcmp(s_value(c, "served_model_name"), model) == 0;
}

static bool s_text_model(const struct tb_deploy_component *c, const void *arg)
{
    (void)arg;
    return s_is(c, "preprocessor") || (s_is_engine(c) && strcmp(s_engine_kind(c), "text") == 0);
}

/* ------------------------------------------------------------------------------------------- */

static bool s_same_list(const struct tb_str_list *a, const struct tb_str_list *b)
{
    if (a->count != b->count) {
        return false;
    }
    for (size_t i = 0; i < a->count; i++) {
        bool found = false;
        for (size_t j = 0; j < b->count && !found; j++) {
            found = strcmp(a->items[i], b->items[j]) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

/* One namespace and one discovery for every file. */
static void s_check_discovery(struct ctx *x)
{
    const struct tb_core_config *c0 = &x->h[0].d->core;
    const char *f0 = x->h[0].file;
    size_t heads = 0;
    for (size_t k = 0; k < x->n; k++) {
        const struct host *h = &x->h[k];
        const struct tb_core_config *c = &h->d->core;
        if (strcmp(c->ns, c0->ns) != 0) {
            s_error(x, h, NULL, "namespace", c->ns, "write the same 'namespace:' in every file",
                    "%s has namespace '%s': the files of one deployment share one namespace", f0,
                    c0->ns);
        }
        if (c->discovery != c0->discovery) {
            s_error(x, h, NULL, "discovery.backend", c->discovery ? "etcd" : "embedded",
                    "use the same discovery backend in every file",
                    "%s uses discovery backend '%s'", f0, c0->discovery ? "etcd" : "embedded");
        } else if (c->discovery == 1 && (!s_same_list(&c->etcd_endpoints, &c0->etcd_endpoints) ||
                                         strcmp(c->etcd_prefix, c0->etcd_prefix) != 0)) {
            s_error(x, h, NULL, "discovery.endpoints", NULL,
                    "give every file the same discovery.endpoints and discovery.prefix",
                    "the etcd endpoints or prefix differ from those of %s: the processes would "
                    "not see each other's routes",
                    f0);
        }
        if (c->discovery == 0 && c->registry_listen && ++heads > 1) {
            s_error(x, h, NULL, "registry.listen", c->registry_listen,
                    "keep registry.listen in the head's file only; the other processes join it "
                    "with --join",
                    "a second head: with the embedded registry one process holds the routes");
        }
    }
    if (c0->discovery == 0 && heads == 0) {
        s_error(x, &x->h[0], NULL, "registry.listen", NULL,
                "add 'registry: {listen: tcp://HOST:7700}' to the head's file (the others "
                "--join it), or use 'discovery: {backend: etcd}'",
                "no file has registry.listen: with the embedded registry one head process must "
                "accept the others' joins");
    }
}

/* A name used in several files names replicas of one component. */
static void s_check_names(struct ctx *x)
{
    for (size_t k = 1; k < x->n; k++) {
        for (size_t i = 0; i < x->h[k].d->n_comps; i++) {
            const struct tb_deploy_component *c = &x->h[k].d->comps[i];
            for (size_t j = 0; j < k; j++) {
                for (size_t m = 0; m < x->h[j].d->n_comps; m++) {
                    const struct tb_deploy_component *o = &x->h[j].d->comps[m];
                    if (strcmp(o->name, c->name) != 0) {
                        continue;
                    }
                    const char *mc = s_value(c, "served_model_name");
                    const char *mo = s_value(o, "served_model_name");
                    bool same_model = (!mc && !mo) || (mc && mo && strcmp(mc, mo) == 0);
                    if (strcmp(o->plugin, c->plugin) != 0 || !same_model) {
                        char key[200];
                        s_comp_key(key, sizeof(key), &x->h[k], c, NULL);
                        s_error(x, &x->h[k], c, key, c->name,
                                "give it its own name, or make it the same plugin and model",
                                "%s:%d has a component of this name (plugin %s%s%s%s): one name "
                                "across files means replicas of one component",
                                x->h[j].file, o->line, o->plugin, mo ? ", model '" : "",
                                mo ? mo : "", mo ? "'" : "");
                    }
                }
            }
        }
    }
}

/* Routers named, engines behind routers and preprocessors, models for the frontend. */
static void s_check_services(struct ctx *x)
{
    for (size_t k = 0; k < x->n; k++) {
        const struct host *h = &x->h[k];
        for (size_t i = 0; i < h->d->n_comps; i++) {
            const struct tb_deploy_component *c = &h->d->comps[i];
            char key[200];
            const char *router = s_is(c, "http") || s_is(c, "preprocessor") ? s_value(c, "router")
                                                                            : NULL;
            if (router && !s_any(x, s_router_named, router)) {
                s_comp_key(key, sizeof(key), h, c, "router");
                s_error(x, h, c, key, router,
                        "add a router component of that name to one of the files, or correct "
                        "the name",
                        "no file has a component '%s' with plugin router", router);
            }
            if (s_is(c, "router") && !s_any(x, s_any_engine, NULL)) {
                s_comp_key(key, sizeof(key), h, c, NULL);
                s_error(x, h, c, key, c->name, "add an engine (mock, engine_cpu, ...) to a file",
                        "no file has an engine for this router to choose from");
            }
            const char *model = s_is(c, "preprocessor") ? s_value(c, "served_model_name") : NULL;
            if (model && !s_any(x, s_tokens_engine_of, model)) {
                s_comp_key(key, sizeof(key), h, c, "served_model_name");
                s_error(x, h, c, key, model,
                        "add an engine serving this model (kind tokens) to a file, or correct "
                        "the name",
                        "no file has an engine that serves model '%s' from token ids", model);
            }
            if (s_is(c, "http") && !s_any(x, s_text_model, NULL)) {
                s_comp_key(key, sizeof(key), h, c, NULL);
                s_error(x, h, c, key, c->name,
                        "add an engine of kind text, or a preprocessor and its engine, to a file",
                        "no file has a model this frontend could serve");
            }
        }
    }
}

/* The public key of each process, from public_key_file or else its secret key. */
static void s_public_keys(struct ctx *x)
{
    char err[1024], key[TB_CURVE_KEY_SIZE];
    for (size_t k = 0; k < x->n; k++) {
        const struct tb_core_config *c = &x->h[k].d->core;
        x->h[k].pub[0] = 0;
        if (c->curve_public_key_file) {
            if (tb_curve_read_key_file(c->curve_public_key_file, "public key file", false,
                                       x->h[k].pub, err, sizeof(err)) != 0) {
                x->h[k].pub[0] = 0;
            }
        } else if (c->curve_secret_key_file &&
                   tb_curve_read_key_file(c->curve_secret_key_file, "secret key file", true, key,
                                          err, sizeof(err)) == 0) {
            tb_curve_public_of(key, x->h[k].pub);
            explicit_bzero(key, sizeof(key));
        }
    }
}

/* CURVE in every file or none; each process's key allowed by every other; the head's key. */
static void s_check_curve(struct ctx *x)
{
    size_t with = 0, head = x->n;
    for (size_t k = 0; k < x->n; k++) {
        with += x->h[k].d->core.curve_secret_key_file != NULL;
        if (x->h[k].d->core.discovery == 0 && x->h[k].d->core.registry_listen && head == x->n) {
            head = k;
        }
    }
    if (with == 0) {
        return;
    }
    for (size_t k = 0; k < x->n && with < x->n; k++) {
        if (!x->h[k].d->core.curve_secret_key_file) {
            s_error(x, &x->h[k], NULL, "bus.curve", NULL,
                    "give every file a bus.curve section (turbine keygen makes each its keys)",
                    "the other files set bus.curve: a process without CURVE cannot reach them, "
                    "nor they it");
        }
    }
    if (with < x->n) {
        return;
    }
    s_public_keys(x);
    for (size_t k = 0; k < x->n; k++) {
        const struct host *h = &x->h[k];
        char(*allowed)[TB_CURVE_KEY_SIZE] = NULL;
        size_t na = 0;
        char err[1024];
        if (tb_curve_read_allowed(h->d->core.curve_allowed_keys_file, &allowed, &na, err,
                                  sizeof(err)) != 0) {
            continue; /* the file's own check said why */
        }
        for (size_t j = 0; j < x->n; j++) {
            bool listed = false;
            for (size_t i = 0; i < na && x->h[j].pub[0]; i++) {
                listed = listed || strcmp(allowed[i], x->h[j].pub) == 0;
            }
            if (j == k || listed) {
                continue;
            }
            char fix[600];
            if (x->h[j].pub[0]) {
                snprintf(fix, sizeof(fix), "add the line '%s' to %s", x->h[j].pub,
                         h->d->core.curve_allowed_keys_file);
            } else {
                snprintf(fix, sizeof(fix), "set bus.curve.public_key_file in %s", x->h[j].file);
            }
            s_error(x, h, NULL, "bus.curve.allowed_keys_file", h->d->core.curve_allowed_keys_file,
                    fix,
                    x->h[j].pub[0] ? "it does not list the public key of the process of %s: this "
                                     "process would refuse it"
                                   : "the public key of the process of %s is not known here",
                    x->h[j].file);
        }
        free(allowed);
    }
    if (head == x->n || !tb_curve_applies(x->h[head].d->core.registry_listen)) {
        return;
    }
    for (size_t k = 0; k < x->n; k++) {
        const struct host *h = &x->h[k];
        char key[TB_CURVE_KEY_SIZE] = "", err[1024];
        const char *path = h->d->core.curve_head_public_key_file;
        if (k == head || (path && tb_curve_read_key_file(path, "head's public key file", false,
                                                         key, err, sizeof(err)) != 0)) {
            continue;
        }
        if (!path || (x->h[head].pub[0] && strcmp(key, x->h[head].pub) != 0)) {
            char fix[600];
            snprintf(fix, sizeof(fix), "name the .pub file of %s's process (public key %s)",
                     x->h[head].file, x->h[head].pub[0] ? x->h[head].pub : "unknown");
            s_error(x, h, NULL, path ? "bus.curve.head_public_key_file" : "bus.curve", path, fix,
                    path ? "it is not the public key of the head (%s)"
                         : "--join %s over tcp with CURVE needs bus.curve.head_public_key_file",
                    x->h[head].file);
        }
    }
}

static void s_summary(const struct ctx *x)
{
    const struct tb_core_config *c0 = &x->h[0].d->core;
    printf("deployment of %zu files: ok: namespace '%s', discovery %s, CURVE %s, models:", x->n,
           c0->ns, c0->discovery ? "etcd" : "embedded", c0->curve_secret_key_file ? "on" : "off");
    size_t shown = 0;
    for (size_t k = 0; k < x->n; k++) {
        for (size_t i = 0; i < x->h[k].d->n_comps; i++) {
            const struct tb_deploy_component *c = &x->h[k].d->comps[i];
            const char *m = s_is_engine(c) ? s_value(c, "served_model_name") : NULL;
            if (m) {
                printf("%s %s (%s)", shown++ ? "," : "", m, x->h[k].file);
            }
        }
    }
    printf("%s\n", shown ? "" : " none");
}

int tb_check_files_main(const char *const *files, size_t n)
{
    struct ctx x = {.n = n};
    x.h = calloc(n, sizeof(*x.h));
    tb_diag_init(&x.diag);
    if (!x.h) {
        fprintf(stderr, "turbine check: out of memory\n");
        return 2;
    }
    bool all_valid = true;
    for (size_t k = 0; k < n; k++) {
        x.h[k].file = files[k];
        for (size_t j = 0; j < k; j++) {
            if (strcmp(files[j], files[k]) == 0) {
                fprintf(stderr, "turbine check: '%s' is named twice\n", files[k]);
                all_valid = false;
            }
        }
        /* each file on its own first, as `turbine check FILE` does, except that another host's
         * secret key need not be here */
        struct tb_diag diag;
        tb_diag_init(&diag);
        if (tb_deploy_load_flags(files[k], TB_DEPLOY_KEYS_ELSEWHERE, &x.h[k].loader, &x.h[k].d,
                                 &diag) == 0) {
            tb_check_print_ok(files[k], x.h[k].d);
        } else {
            tb_diag_print(&diag, stderr);
            fprintf(stderr, "%s: %zu error%s\n", files[k], diag.n, diag.n == 1 ? "" : "s");
            all_valid = false;
        }
        tb_diag_release(&diag);
    }
    int status = 2;
    if (!all_valid) {
        fprintf(stderr,
                "the deployment was not checked across files: fix the files above first\n");
        goto out;
    }
    s_check_discovery(&x);
    s_check_names(&x);
    s_check_services(&x);
    s_check_curve(&x);
    if (x.diag.n == 0) {
        s_summary(&x);
        status = 0;
    }
out:
    if (x.diag.n) {
        tb_diag_print(&x.diag, stderr);
        fprintf(stderr, "deployment of %zu files: %zu error%s across files\n", n, x.diag.n,
                x.diag.n == 1 ? "" : "s");
    }
    for (size_t k = 0; k < n; k++) {
        tb_deploy_destroy(&x.h[k].d);
        tb_loader_destroy(&x.h[k].loader);
    }
    tb_diag_release(&x.diag);
    free(x.h);
    return status;
}
