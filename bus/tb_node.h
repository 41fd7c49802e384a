/*
 * tb_node.h - a process's place on the bus: the ZeroMQ context, the process id, the addresses of
 * the registry and the event hub, how endpoints bind, and the registration agent.
 *
 * The agent is a thread that owns the process's leases: it registers endpoints with the registry,
 * heartbeats them every interval (so a long computation on a component's thread never loses its
 * routes), re-registers what the registry forgot, and deregisters on request.  A process either
 * hosts the registry (it is the head; `join` is NULL) or joins one over tcp:// or ipc://.
 *
 * Thread-safety: every function may be called from any thread once tb_node_new returned.
 */
#ifndef TB_NODE_H
#define TB_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_curve.h"
#include "tb_msgs.h"

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

typedef struct tb_node tb_node_t;

struct tb_node_config {
    const char *join; /* NULL: host the registry here; else its tcp:// / ipc:// address */
    const char *registry_listen; /* head only: also accept joins at this address (NULL: no) */
    const char *transport;       /* "tcp" or "ipc": how endpoints are reached from other
                                    processes; NULL: tcp when joined or listening, else none */
    const char *host;            /* tcp: the host endpoints bind and advertise (127.0.0.1) */
    int heartbeat_ms;            /* head: heartbeat interval (1000) */
    int lease_ttl_ms;            /* head: lease TTL (3000) */
    int join_timeout_ms;         /* how long to wait for the registry's first answer (5000) */
    int spin_us;                 /* how long a bus handle polls after running callbacks before
                                    it sleeps (0: never; docs/bus.md) */
    /* Discovery on etcd (docs/bus.md "Discovery on etcd"): with endpoints, this process hosts
     * its own registry and mirrors routes through etcd (libturbine-etcd.so, opened here). */
    const char *const *etcd_endpoints;
    size_t n_etcd_endpoints;
    const char *etcd_prefix; /* keys live under this, e.g. "/turbine/demo/" */
    int etcd_lease_ttl_ms;   /* >= 2000 */
    int etcd_timeout_ms;     /* per request */
    /* CURVE on every tcp socket of the bus (docs/bus.md "Authentication and encryption"): NULL
     * for none.  With `join` over tcp, `join_key` is the head's public key (Z85). */
    const struct tb_curve_config *curve;
    const char *join_key;
};

/* Creates the context, starts the registry (head) and the agent, and says hello to the registry.
 * On success *out is owned by the caller (destroy with tb_node_destroy).  On failure returns a
 * negative code and writes why into `err` (e.g. "registry at tcp://10.0.0.1:7700 did not answer
 * within 5000 ms"). */
int tb_node_new(const struct tb_node_config *cfg, tb_node_t **out, char *err, size_t err_len);

/* Deregisters what is left, stops the agent and the registry, terminates the context.  Every bus
 * handle must be destroyed first.  Sets *node_p to NULL; accepts NULL. */
void tb_node_destroy(tb_node_t **node_p);

void *tb_node_zmq(const tb_node_t *node);
const char *tb_node_process_id(const tb_node_t *node);
const char *tb_node_registry_addr(const tb_node_t *node); /* for snapshot requests */
const char *tb_node_hub_pub(const tb_node_t *node);       /* subscribers connect here */
const char *tb_node_hub_sub(const tb_node_t *node);       /* publishers connect here */
const char *tb_node_listen_addr(const tb_node_t *node);   /* head with registry_listen, or NULL */
int tb_node_heartbeat_ms(const tb_node_t *node);
int tb_node_lease_ttl_ms(const tb_node_t *node);
int tb_node_spin_us(const tb_node_t *node); /* tb_node_config.spin_us */
/* The process's CURVE keys and guard (borrowed, valid until tb_node_destroy), or NULL without
 * CURVE; and the public key of the registry this process joined over tcp, or NULL. */
tb_curve_t *tb_node_curve(const tb_node_t *node);
const char *tb_node_join_key(const tb_node_t *node);

/* With CURVE and a tcp:// `addr`, makes `sock` a CURVE client of the server whose public key is
 * `key` (Z85; NULL: none known, which is refused); else does nothing.  Call before connecting
 * `sock` to `addr`.  0, or a negative code with `err`. */
int tb_node_curve_client(const tb_node_t *node, void *sock, const char *addr, const char *key,
                         char *err, size_t err_len);

/* A fresh instance id, unique with overwhelming probability (random per process + counter). */
uint64_t tb_node_new_instance_id(tb_node_t *node);

/* Binds `router` for instance `id` on inproc and, when the process is reachable from others, on
 * the configured transport; fills `addrs` (each malloc'ed, caller frees) and *n_addrs (<= 2).
 * 0 or a negative code with `err`. */
int tb_node_bind_endpoint(tb_node_t *node, void *router, uint64_t id, char **addrs,
                          size_t *n_addrs, char *err, size_t err_len);

/* Registers `route` (copied) with the registry and keeps its lease until tb_node_lease_remove.
 * Waits for the registry's answer up to `timeout_ms`: 0, or a negative code with `err`. */
int tb_node_lease_add(tb_node_t *node, const struct tb_msg_route *route, int timeout_ms,
                      char *err, size_t err_len);

/* Deregisters an instance (asynchronously; the route event follows). */
void tb_node_lease_remove(tb_node_t *node, uint64_t instance_id);

/* Direct endpoints (docs/bus.md, "Direct calls"): instances whose request handler a caller in this
 * process runs on its own thread.  `obj` (borrowed) is what tb_node_direct_acquire returns for
 * `instance_id`.  Add: 0 or TB_ENOMEM; adding an instance again replaces its object. */
int tb_node_direct_add(tb_node_t *node, uint64_t instance_id, void *obj);
/* Removes the instance; returns once no caller is inside tb_node_direct_acquire/_release for
 * it, so `obj` may be freed afterwards. */
void tb_node_direct_remove(tb_node_t *node, uint64_t instance_id);
/* The object of a direct instance, or NULL (nothing held).  When not NULL, the caller must call
 * tb_node_direct_release once it is done with it; until then the instance cannot be removed. */
void *tb_node_direct_acquire(tb_node_t *node, uint64_t instance_id);
void tb_node_direct_release(tb_node_t *node);

/* Local endpoints (docs/bus.md, "Calls within a process"): every endpoint served in this process,
 * with the mailbox (tb_mbox.h, borrowed) of the bus handle serving it, so that a caller in the
 * process sends it requests without ZeroMQ.  Add: 0 or TB_ENOMEM.  Remove returns once no caller
 * is between acquire and release for it.  Acquire returns the mailbox or NULL (nothing held);
 * when not NULL the caller takes its reference (tb_mbox_ref) and then calls release. */
int tb_node_local_add(tb_node_t *node, uint64_t instance_id, void *mbox);
void tb_node_local_remove(tb_node_t *node, uint64_t instance_id);
void *tb_node_local_acquire(tb_node_t *node, uint64_t instance_id);
void tb_node_local_release(tb_node_t *node);

#pragma GCC visibility pop

#endif /* TB_NODE_H */
