/*
 * tb_etcd_sync.h - discovery on etcd: mirrors this process's routes into etcd and the other
 * processes' routes from etcd into this process's registry.
 *
 * With `discovery: {backend: etcd}` every process runs its own embedded registry (no head) and
 * one of these.  Its sync thread holds one etcd lease per process (TTL `lease_ttl_ms`, renewed at
 * a third of it) and writes each route this process registered as
 * `<prefix>routes/<instance id, 16 hex digits>` = the route message (msgpack, schemas/messages.yaml
 * `route`), attached to the lease, created only if absent; a route that leaves is deleted.  Its
 * watch thread lists `<prefix>routes/` and then follows it from the next revision (resuming after
 * the last revision seen when a stream breaks, listing again when etcd compacted past it), and the
 * sync thread registers every other process's route in the local registry (keeping its local
 * lease alive while etcd holds the key) and deregisters it when the key goes: a process that dies
 * loses its lease, so its routes leave every other process within the etcd lease TTL.
 *
 * etcd may be absent at start and may come and go: connection attempts are retried with jittered
 * backoff (up to 5 s apart) and logged at info; a lease etcd forgot (this process stalled past its
 * TTL, or the cluster lost it) is granted again and the routes written again, never an exit.
 *
 * Events (load, KV) cross processes the same way: each process's registry exports what its own
 * publishers send on a tcp PUB socket whose address is written as `<prefix>hubs/<process id>`;
 * the sync thread subscribes to every other process's and hands their events to the local hub,
 * which gives them to local subscribers only (never exporting them again, so nothing loops).
 *
 * Lives in libturbine-etcd.so, which the node opens with dlopen only when a deployment names the
 * etcd backend, so processes that do not use etcd never load libcurl.
 */
#ifndef TB_ETCD_SYNC_H
#define TB_ETCD_SYNC_H

#include <stddef.h>

#pragma GCC visibility push(default)

typedef struct tb_etcd_sync tb_etcd_sync_t;

struct tb_etcd_sync_config {
    const char *const *endpoints; /* "http://HOST:PORT" client URLs of the cluster; copied */
    size_t n_endpoints;
    const char *prefix;     /* key prefix ending in '/', e.g. "/turbine/demo/"; copied */
    const char *process_id; /* this process's id: its own routes are exported, not imported */
    void *zctx;             /* the node's ZeroMQ context (reaches the local registry) */
    int lease_ttl_ms;       /* the etcd lease, >= 2000 (etcd counts in seconds) */
    int heartbeat_ms; /* the local registry's heartbeat: imported routes renewed this often */
    int timeout_ms;   /* per etcd request */
    /* NULL, or where this process's events are published for others (tb_registry_export_addr):
     * written as <prefix>hubs/<process id>; every other process's such address is subscribed
     * to and its events handed to the local hub at TB_HUB_IMPORT_INPROC. */
    const char *hub_export;
    /* NULL, or the process's CURVE keys: with them `hub_export` is "ADDRESS PUBLIC-KEY", and the
     * other processes' exports are reached as a CURVE client with the key their value carries
     * (docs/bus.md "Authentication and encryption"). */
    struct tb_curve *curve;
};

/* Starts the threads; contacts nothing synchronously (etcd may come later).  Caller owns *out
 * (stop with tb_etcd_sync_stop).  Fails only on bad arguments or out of memory. */
int tb_etcd_sync_start(const struct tb_etcd_sync_config *cfg, tb_etcd_sync_t **out, char *err,
                       size_t err_len);

/* Revokes the lease (this process's routes leave the other processes at once), stops the
 * threads, frees everything.  Sets *s_p to NULL; accepts NULL. */
void tb_etcd_sync_stop(tb_etcd_sync_t **s_p);

/* The type of the two functions above, for dlsym. */
typedef int (*tb_etcd_sync_start_fn)(const struct tb_etcd_sync_config *, tb_etcd_sync_t **,
                                     char *, size_t);
typedef void (*tb_etcd_sync_stop_fn)(tb_etcd_sync_t **);

#pragma GCC visibility pop

#endif /* TB_ETCD_SYNC_H */
