/*
 * tb_registry.h - the registry service: routes as leases kept by heartbeats, route events, and the
 * event hub every publisher and subscriber of the deployment meets at.
 *
 * One process of a deployment (the head) runs it, on a thread of its own.  Clients (tb_node
 * agents, bus handles) talk to it with reg_request / reg_reply messages over a ROUTER socket at
 * TB_REGISTRY_INPROC and, when `listen` is set, at that tcp:// or ipc:// address too.  A route
 * lives until it is deregistered or its lease passes `lease_ttl_ms` without a heartbeat; every
 * change is published as a route_event on topic "route." with a contiguous sequence number, and
 * a tick carrying the current sequence is published every heartbeat interval so subscribers can
 * detect lost events.  The hub is an XSUB/XPUB pair: publishers connect to hub_sub, subscribers
 * to hub_pub.
 */
#ifndef TB_REGISTRY_H
#define TB_REGISTRY_H

#include <stddef.h>

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

#define TB_REGISTRY_INPROC "inproc://tb-registry"
#define TB_HUB_IN_INPROC "inproc://tb-hub-in"
#define TB_HUB_OUT_INPROC "inproc://tb-hub-out"
/* With export_host: events other processes' hubs exported, published here (by the etcd sync
 * thread) reach this hub's subscribers only and are never exported again. */
#define TB_HUB_IMPORT_INPROC "inproc://tb-hub-import"

typedef struct tb_registry tb_registry_t;

struct tb_registry_config {
    const char *listen; /* NULL, or "tcp://HOST:PORT" / "ipc://PATH" for other processes */
    int heartbeat_ms;   /* > 0 */
    int lease_ttl_ms;   /* > heartbeat_ms */
    /* NULL, or a host: the events this process's publishers send are also published on a PUB
     * socket bound at tcp://HOST:<ephemeral> (tb_registry_export_addr) for other processes'
     * hubs to import (discovery on etcd, docs/bus.md). */
    const char *export_host;
    /* NULL, or the process's CURVE keys: every tcp socket the registry binds (listen, hub,
     * export) is then a CURVE server (docs/bus.md "Authentication and encryption"). */
    struct tb_curve *curve;
};

/* Binds the registry's sockets (so a busy port is reported here) and starts its thread.  On
 * success *out is owned by the caller (stop with tb_registry_stop).  On failure returns a negative
 * code and says why in `err`. */
int tb_registry_start(void *zctx, const struct tb_registry_config *cfg, tb_registry_t **out,
                      char *err, size_t err_len);

/* Stops the thread and closes the sockets; sets *r_p to NULL; accepts NULL. */
void tb_registry_stop(tb_registry_t **r_p);

/* The external addresses (NULL when not listening): where joiners send requests, and the hub. */
const char *tb_registry_listen_addr(const tb_registry_t *r);
const char *tb_registry_hub_pub_addr(const tb_registry_t *r);
const char *tb_registry_hub_sub_addr(const tb_registry_t *r);
/* With export_host: where other processes subscribe to this process's events; else NULL. */
const char *tb_registry_export_addr(const tb_registry_t *r);

#pragma GCC visibility pop

#endif /* TB_REGISTRY_H */
