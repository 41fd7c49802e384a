/* tb_serve: serve, check and plugins commands (see tb_serve.h). */
#include "tb_serve.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tb_codec.h"
#include "tb_component.h"
#include "tb_deploy.h"
#include "tb_fields.h"
#include "tb_log.h"
#include "tb_signals.h"

#define LOG_NAME "core"

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int s_load(const char *file, tb_loader_t **loader, struct tb_deploy **d)
{
    struct tb_diag diag;
    tb_diag_init(&diag);
    int rc = tb_deploy_load(file, loader, d, &diag);
    if (rc != 0) {
        tb_diag_print(&diag, stderr);
        fprintf(stderr, "%s: %zu error%s: nothing was started\n", file, diag.n,
                diag.n == 1 ? "" : "s");
    }
    tb_diag_release(&diag);
    return rc;
}

void tb_check_print_ok(const char *file, const struct tb_deploy *d)
{
    {
        size_t total = 0;
        for (size_t i = 0; i < d->n_comps; i++) {
            total += (size_t)d->comps[i].replicas;
        }
        printf("%s: ok: namespace '%s', %zu component%s (%zu instance%s):", file, d->core.ns,
               d->n_comps, d->n_comps == 1 ? "" : "s", total, total == 1 ? "" : "s");
        for (size_t i = 0; i < d->n_comps; i++) {
            if (d->comps[i].replicas > 1) {
                printf(" %s[%s x%" PRId64 "]", d->comps[i].name, d->comps[i].plugin,
                       d->comps[i].replicas);
            } else {
                printf(" %s[%s]", d->comps[i].name, d->comps[i].plugin);
            }
        }
        printf("\n");
    }
}

int tb_check_main(const char *file)
{
    tb_loader_t *loader = NULL;
    struct tb_deploy *d = NULL;
    int rc = s_load(file, &loader, &d);
    if (rc == 0) {
        tb_check_print_ok(file, d);
    }
    tb_deploy_destroy(&d);
    tb_loader_destroy(&loader);
    return rc == 0 ? 0 : 2;
}

/* ------------------------------------------------------------------------------------------- */

struct run {
    struct tb_core core;
    struct tb_component *comps;
    size_t n;
};

static void s_stop_all(struct run *r)
{
    for (size_t i = r->n; i-- > 0;) {
        tb_component_stop(&r->comps[i]);
    }
    for (size_t i = r->n; i-- > 0;) {
        tb_component_destroy(&r->comps[i]);
    }
}

static size_t s_in_flight(struct run *r)
{
    size_t total = 0;
    for (size_t i = 0; i < r->n; i++) {
        total += tb_component_in_flight(&r->comps[i]);
    }
    return total;
}

/* Runs until SIGINT/SIGTERM; returns after draining (or the grace period). */
static void s_loop(struct run *r, int sig_fd, double grace_s)
{
    bool draining = false;
    int64_t drain_deadline = 0;
    int64_t last_report = 0;
    for (;;) {
        struct pollfd p = {.fd = sig_fd, .events = POLLIN};
        int timeout = draining ? 20 : 1000;
        if (poll(&p, 1, timeout) < 0 && errno != EINTR) {
            TB_CLOG_ERROR(LOG_NAME, "poll failed: %s", strerror(errno));
            return;
        }
        int sig;
        while ((sig = tb_signals_next(sig_fd)) != 0) {
            if (sig == SIGINT || sig == SIGTERM) {
                if (draining) {
                    TB_CLOG_WARN(LOG_NAME,
                                 "second %s: stopping now without waiting for %zu "
                                 "in-flight request%s",
                                 sig == SIGINT ? "SIGINT" : "SIGTERM", s_in_flight(r),
                                 s_in_flight(r) == 1 ? "" : "s");
                    return;
                }
                draining = true;
                atomic_store(&r->core.draining, true);
                drain_deadline = s_now_ms() + (int64_t)(grace_s * 1000);
                TB_CLOG_INFO(LOG_NAME,
                             "received %s: not ready, accepting no new work, draining %zu "
                             "in-flight request%s for up to %.1f s",
                             sig == SIGINT ? "SIGINT" : "SIGTERM", s_in_flight(r),
                             s_in_flight(r) == 1 ? "" : "s", grace_s);
                for (size_t i = 0; i < r->n; i++) {
                    tb_component_drain(&r->comps[i]);
                }
            } else if (sig == SIGHUP) {
                int rc = tb_log_reopen();
                if (rc == 0) {
                    TB_CLOG_INFO(LOG_NAME, "SIGHUP: log file reopened");
                } else {
                    TB_CLOG_ERROR(LOG_NAME, "SIGHUP: cannot reopen the log file: %s",
                                  strerror(-rc));
                }
            } else {
                /* SIGWINCH, SIGPIPE and other terminal noise change nothing. */
                TB_CLOG_DEBUG(LOG_NAME, "ignored signal %d (%s)", sig, strsignal(sig));
            }
        }
        if (draining) {
            size_t left = s_in_flight(r);
            int64_t now = s_now_ms();
            if (left == 0) {
                TB_CLOG_INFO(LOG_NAME, "drained: no work in flight");
                return;
            }
            if (now >= drain_deadline) {
                TB_CLOG_WARN(LOG_NAME,
                             "grace period of %.1f s over with %zu request%s in flight: "
                             "stopping them",
                             grace_s, left, left == 1 ? "" : "s");
                return;
            }
            if (now - last_report >= 1000) {
                TB_CLOG_INFO(LOG_NAME, "draining: %zu in flight, %.1f s left", left,
                             (double)(drain_deadline - now) / 1000.0);
                last_report = now;
            }
        }
    }
}

/* Log level, format and file from the deployment, overridden by the command line.  0, or 2
 * (the exit status for bad arguments) after saying why on stderr. */
static int s_setup_log(const struct tb_serve_opts *o, const struct tb_deploy *d)
{
    tb_log_level_t level = (tb_log_level_t)d->core.log_level;
    if (o->log_level && !tb_log_level_parse(o->log_level, &level)) {
        fprintf(stderr,
                "turbine: unknown log level '%s': use error, warn, info, debug or trace\n",
                o->log_level);
        return 2;
    }
    tb_log_set_level(level);
    int fmt = d->core.log_format;
    if (o->log_format) {
        if (strcmp(o->log_format, "json") == 0) {
            fmt = 1;
        } else if (strcmp(o->log_format, "text") == 0) {
            fmt = 0;
        } else {
            fprintf(stderr, "turbine: unknown log format '%s': use text or json\n",
                    o->log_format);
            return 2;
        }
    }
    tb_log_set_format(fmt ? TB_LOG_FORMAT_JSON : TB_LOG_FORMAT_TEXT);
    if (d->core.log_file) {
        int rc = tb_log_set_file(d->core.log_file);
        if (rc != 0) {
            fprintf(stderr, "turbine: cannot open log file '%s': %s\n", d->core.log_file,
                    strerror(-rc));
            return 2;
        }
    }
    return 0;
}

/* The process's metrics and bus node (the embedded registry, or a join to another's). */
static int s_start_bus(const struct tb_serve_opts *o, const struct tb_deploy *d, struct run *r)
{
    r->core.metrics = tb_metrics_new();
    r->core.ns = d->core.ns;
    atomic_init(&r->core.draining, false);
    static const char *const transports[] = {NULL, "tcp", "ipc"};
    struct tb_node_config nc = {
        .join = o->join,
        .registry_listen = o->join ? NULL : d->core.registry_listen,
        .transport = transports[d->core.transport],
        .host = d->core.bus_host,
        .heartbeat_ms = (int)(d->core.heartbeat_s * 1000),
        .lease_ttl_ms = (int)(d->core.lease_ttl_s * 1000),
        .join_timeout_ms = (int)(d->core.join_timeout_s * 1000),
        .spin_us = (int)(d->core.bus_spin_s * 1e6 + 0.5),
    };
    char etcd_prefix[512];
    if (d->core.discovery == 1 && !o->join) {
        snprintf(etcd_prefix, sizeof(etcd_prefix), "%s%s/", d->core.etcd_prefix, d->core.ns);
        nc.etcd_endpoints = (const char *const *)d->core.etcd_endpoints.items;
        nc.n_etcd_endpoints = d->core.etcd_endpoints.count;
        nc.etcd_prefix = etcd_prefix;
        nc.etcd_lease_ttl_ms = (int)(d->core.etcd_lease_ttl_s * 1000);
        nc.etcd_timeout_ms = (int)(d->core.etcd_timeout_s * 1000);
    } else if (d->core.discovery == 1) {
        TB_CLOG_WARN(LOG_NAME, "discovery on etcd is off in this process: it joins %s", o->join);
    }
    if (o->join && d->core.registry_listen) {
        TB_CLOG_WARN(LOG_NAME, "registry.listen (%s) is ignored: this process joins %s",
                     d->core.registry_listen, o->join);
    }
    char err[1024];
    struct tb_curve_config curve = {.secret_key_file = d->core.curve_secret_key_file,
                                    .public_key_file = d->core.curve_public_key_file,
                                    .allowed_keys_file = d->core.curve_allowed_keys_file,
                                    .metrics = r->core.metrics};
    char head_key[TB_CURVE_KEY_SIZE];
    if (d->core.curve_secret_key_file) {
        nc.curve = &curve;
        if (o->join && d->core.curve_head_public_key_file) {
            if (tb_curve_read_key_file(d->core.curve_head_public_key_file,
                                       "head's public key file", false, head_key, err,
                                       sizeof(err)) != 0) {
                TB_CLOG_ERROR(LOG_NAME, "cannot start the bus: %s", err);
                return TB_EINVAL;
            }
            nc.join_key = head_key;
        }
    }
    if (!r->core.metrics || tb_node_new(&nc, &r->core.node, err, sizeof(err)) != 0) {
        TB_CLOG_ERROR(LOG_NAME, "cannot start the bus: %s",
                      r->core.metrics ? err : "out of memory");
        return TB_EIO;
    }
    return 0;
}

/* One tb_component per replica of each deployment entry ("name#k" in logs when replicated). */
static int s_make_components(const struct tb_deploy *d, struct run *r)
{
    size_t total = 0;
    for (size_t i = 0; i < d->n_comps; i++) {
        total += (size_t)d->comps[i].replicas;
    }
    r->comps = calloc(total, sizeof(*r->comps));
    if (!r->comps) {
        TB_CLOG_ERROR(LOG_NAME, "out of memory");
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < d->n_comps; i++) {
        for (int64_t k = 0; k < d->comps[i].replicas; k++) {
            struct tb_component *c = &r->comps[r->n++];
            c->core = &r->core;
            c->lp = d->comps[i].lp;
            c->name = d->comps[i].name;
            c->replica = (int)k;
            c->config = d->comps[i].config;
            if (d->comps[i].replicas > 1) {
                snprintf(c->log_name, sizeof(c->log_name), "%s#%d", c->name, (int)k);
            } else {
                snprintf(c->log_name, sizeof(c->log_name), "%s", c->name);
            }
        }
    }
    return 0;
}

int tb_serve_main(const struct tb_serve_opts *o)
{
    tb_loader_t *loader = NULL;
    struct tb_deploy *d = NULL;
    struct run r = {0};
    int status = 1;
    bool declined = false;
    int sig_fd = -1;

    if (s_load(o->file, &loader, &d) != 0) {
        tb_loader_destroy(&loader);
        return 2;
    }
    if (s_setup_log(o, d) != 0) {
        status = 2;
        goto out;
    }
    sig_fd = tb_signals_install();
    if (sig_fd < 0) {
        TB_CLOG_ERROR(LOG_NAME, "cannot install signal handlers: %s", strerror(-sig_fd));
        goto out;
    }
    TB_CLOG_INFO(LOG_NAME, "turbine %s starting %s (namespace '%s', pid %d)", TB_VERSION, o->file,
                 d->core.ns, (int)getpid());
    if (s_start_bus(o, d, &r) != 0 || s_make_components(d, &r) != 0) {
        goto out;
    }
    for (size_t i = 0; i < r.n; i++) {
        if (tb_component_create(&r.comps[i]) != 0) {
            declined = r.comps[i].declined;
            goto fail_components;
        }
    }
    for (size_t i = 0; i < r.n; i++) {
        if (tb_component_start(&r.comps[i]) != 0) {
            goto fail_components;
        }
    }
    TB_CLOG_INFO(LOG_NAME, "running %zu component instance%s; SIGTERM or SIGINT drains and stops",
                 r.n, r.n == 1 ? "" : "s");
    s_loop(&r, sig_fd, d->core.grace_s);
    s_stop_all(&r);
    status = 0;
    TB_CLOG_INFO(LOG_NAME, "stopped");
    goto out;

fail_components:
    TB_CLOG_ERROR(LOG_NAME, "startup failed: stopping what was started");
    s_stop_all(&r);
    status = declined ? 2 : 1; /* a plugin that cannot run here: like a refused config */
out:
    free(r.comps);
    tb_node_destroy(&r.core.node);
    tb_metrics_destroy(&r.core.metrics);
    tb_deploy_destroy(&d);
    tb_loader_destroy(&loader);
    if (sig_fd >= 0) {
        close(sig_fd);
    }
    return status;
}

/* ------------------------------------------------------------------------------------------- */

static void s_print_plugin(const struct tb_loaded_plugin *lp)
{
    const struct tb_plugin *p = lp->desc;
    printf("%s %s  (ABI %u.%u, message schema %d.%u, %s)\n  %s\n", p->name, p->version,
           p->abi_major, p->abi_minor, TB_SCHEMA_MAJOR, lp->layout ? lp->layout->minor : 0u,
           lp->path, p->description ? p->description : "");
    if (p->config_field_count == 0) {
        printf("  config: none\n");
    }
    for (size_t i = 0; i < p->config_field_count; i++) {
        const struct tb_config_field *f = &p->config_fields[i];
        printf("  %-22s %-14s", f->key, tb_field_type_name(f->type));
        if (f->required) {
            printf(" required");
        } else if (f->default_value) {
            printf(" default %s", f->default_value);
        }
        if (f->has_bounds) {
            printf(" [%g..%g]", f->min, f->max);
        }
        if (f->type == TB_CFG_ENUM) {
            printf(" {");
            for (int k = 0; f->choices[k]; k++) {
                printf("%s%s", k ? "|" : "", f->choices[k]);
            }
            printf("}");
        }
        printf("\n  %-22s %s\n", "", f->help ? f->help : "");
    }
}

int tb_plugins_main(const char *const *dirs, int n_dirs, const char *only)
{
    tb_loader_t *l = tb_loader_new(dirs, (size_t)n_dirs);
    if (!l) {
        fprintf(stderr, "turbine: out of memory\n");
        return 1;
    }
    const char *const *search;
    size_t nd = tb_loader_dirs(l, &search);
    printf("plugin search path:");
    for (size_t i = 0; i < nd; i++) {
        printf(" %s", search[i]);
    }
    printf("\n\n");
    char **names = NULL;
    size_t n = tb_loader_available(l, &names);
    int status = 0;
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, names[i]) != 0) {
            free(names[i]);
            continue;
        }
        const struct tb_loaded_plugin *lp;
        char err[1024];
        if (tb_loader_load(l, names[i], &lp, err, sizeof(err)) == 0) {
            s_print_plugin(lp);
        } else {
            printf("%s: cannot be used: %s\n", names[i], err);
            status = 1;
        }
        printf("\n");
        any = true;
        free(names[i]);
    }
    free(names);
    if (!any) {
        printf(only ? "plugin '%s' not found\n" : "no plugins found\n", only);
        status = 1;
    }
    tb_loader_destroy(&l);
    return status;
}
