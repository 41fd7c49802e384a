/*
 * tb_component.h - a running instance of a plugin, and the host services table plugins receive.
 *
 * The core creates one tb_component per replica of each component in the deployment and drives
 * its plugin's lifecycle.  The struct tb_host functions find their context (log name, namespace,
 * bus node, metrics, draining flag) through the component pointer.
 */
#ifndef TB_COMPONENT_H
#define TB_COMPONENT_H

#include <stdatomic.h>
#include <stdbool.h>

#include "tb_loader.h"
#include "tb_metrics.h"
#include "tb_node.h"
#include "tb_plugin.h"

/* What every component of a process shares. */
struct tb_core {
    tb_node_t *node;
    tb_metrics_t *metrics;
    const char *ns;
    atomic_bool draining;
};

struct tb_component {
    struct tb_core *core;
    const struct tb_loaded_plugin *lp;
    const char *name;  /* the component's name (replicas share it) */
    char log_name[96]; /* "name" or "name#2" */
    int replica;
    const void *config; /* validated config, borrowed from the deployment */
    void *state;        /* the plugin's */
    bool created;
    bool started;
    bool declined; /* its plugin's probe refused this machine (serve then exits 2) */
    char error[1024];
    /* The table this component's plugin receives: the static one, with the message codec of the
     * schema minor the plugin was built against (tb_component_create fills it). */
    struct tb_host host;
};

/* The host table of the newest ABI and schema (static, constant). */
const struct tb_host *tb_host_table(void);

/* Lifecycle helpers: they log the start ("component 'x' (plugin y 0.1.0) started"), and on
 * failure log the plugin's own message and undo what was done.  0 or the plugin's code. */
int tb_component_create(struct tb_component *c);
int tb_component_start(struct tb_component *c);
void tb_component_drain(struct tb_component *c);
size_t tb_component_in_flight(struct tb_component *c);
void tb_component_stop(struct tb_component *c);
void tb_component_destroy(struct tb_component *c);

#endif /* TB_COMPONENT_H */
