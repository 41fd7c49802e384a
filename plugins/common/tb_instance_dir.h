/*
 * tb_instance_dir.h - the instance directory: every live instance of the endpoint kinds a
 * component cares about ("text" for the http frontend, "tokens" for a preprocessor, both for the
 * router), grouped by the model it serves, with what is known of each: its health (set by the
 * caller's probes and calls), its load as it last reported it (load events), and the caller's
 * own counts (requests in flight on it, requests sent to it).
 *
 * One class for every plugin that needs to know instances; it is fed from the bus's route events
 * (tb_instance_dir_add / _remove in the component's tb_route_fn) and load events
 * (tb_instance_dir_load).  It holds no routing policy: the router is the only holder of one.
 * tb_instance_dir_next is the documented fallback choice for when the router cannot be asked
 * (see docs/router.md, "Fallback"); a caller that uses it must say so (tb_route_fallback).
 *
 * Pure data, no I/O.  Not thread-safe: one thread owns a directory.  Linear lookups: a deployment
 * has tens of routes.
 */
#ifndef TB_INSTANCE_DIR_H
#define TB_INSTANCE_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_plugin.h"

typedef enum {
    TB_INST_PROBING = 0,   /* registered, health not known yet */
    TB_INST_HEALTHY = 1,   /* the last probe (or call) was answered */
    TB_INST_UNHEALTHY = 2, /* the last probe failed or timed out, or the instance went away */
} tb_inst_state_t;

/* One instance.  Strings are owned by the directory.  The caller may write the fields marked
 * (caller); the others change only through the directory's functions. */
struct tb_idir_instance {
    uint64_t instance_id;
    char *endpoint;
    char *model;
    char *kind;             /* "text" when the route named none */
    int64_t context_length; /* 0 when not announced */
    int64_t kv_block_size;  /* 0 when not announced */
    bool local;
    tb_inst_state_t state; /* tb_instance_dir_set_state */
    /* Load as the instance last reported it (tb_instance_dir_load). */
    bool has_load;
    int64_t running;
    int64_t waiting;
    int64_t kv_used;  /* KV blocks in use */
    int64_t kv_total; /* KV blocks in all, 0 when not reported */
    int64_t
        pending; /* (caller) requests sent since that report; tb_instance_dir_load zeroes it */
    int64_t in_flight;     /* (caller) requests the caller has on it now */
    int64_t served;        /* (caller) requests sent to it so far */
    int64_t next_probe_ns; /* (caller) when to probe next */
    void *probe;           /* (caller) the probe in flight, NULL when none */
    /* KV block load as the instance last reported it (tb_instance_dir_load_blocks), for kv_aware
     * routing: prompt blocks still to compute, blocks of sequences decoding. */
    bool has_block_load;
    int64_t prefill_blocks;
    int64_t decode_blocks;
    int64_t pending_prefill; /* (caller) prompt blocks sent since the last load report;
                                tb_instance_dir_load zeroes it */
};

/* A model: `instances` live instances, `healthy` of them answered their last probe. */
struct tb_idir_model {
    char *name;
    int64_t created; /* unix seconds when its first instance appeared */
    size_t instances;
    size_t healthy;
    size_t cursor; /* tb_instance_dir_next's position */
};

typedef struct tb_instance_dir tb_instance_dir_t;

/* A directory keeping routes whose kind is one of `kinds`, a comma-separated list ("text",
 * "text,tokens"; copied).  A route that names no kind counts as "text".  Caller owns it; destroy
 * with tb_instance_dir_destroy.  NULL when out of memory. */
tb_instance_dir_t *tb_instance_dir_new(const char *kinds);
/* Frees the directory and every instance; sets *d_p to NULL; accepts NULL. */
void tb_instance_dir_destroy(tb_instance_dir_t **d_p);

/* Adds a route.  Returns 1 when kept (new instance), 0 when ignored (other kind, no model, or
 * already known), TB_ENOMEM.  `now_unix` stamps a model seen for the first time. */
int tb_instance_dir_add(tb_instance_dir_t *d, const struct tb_route *r, int64_t now_unix);
/* Removes an instance; true when it was kept.  When `out_model_gone` is not NULL it receives
 * whether its model has no instance left. */
bool tb_instance_dir_remove(tb_instance_dir_t *d, uint64_t instance_id, bool *out_model_gone);

/* Records an instance's reported load (and zeroes its `pending`); false when it is unknown. */
bool tb_instance_dir_load(tb_instance_dir_t *d, uint64_t instance_id, int64_t running,
                          int64_t waiting, int64_t kv_used, int64_t kv_total);

/* Records an instance's reported KV block load (load_event prefill_blocks, decode_blocks);
 * false when it is unknown.  Call it with tb_instance_dir_load, which zeroes pending_prefill. */
bool tb_instance_dir_load_blocks(tb_instance_dir_t *d, uint64_t instance_id,
                                 int64_t prefill_blocks, int64_t decode_blocks);

/* Instances: lookup by id (NULL when absent), count and index, in the order they were added
 * (borrowed until the directory changes). */
struct tb_idir_instance *tb_instance_dir_get(tb_instance_dir_t *d, uint64_t instance_id);
size_t tb_instance_dir_count(const tb_instance_dir_t *d);
struct tb_idir_instance *tb_instance_dir_at(tb_instance_dir_t *d, size_t i);

/* Models, in the order they appeared (borrowed until the directory changes). */
size_t tb_instance_dir_model_count(const tb_instance_dir_t *d);
const struct tb_idir_model *tb_instance_dir_model_at(const tb_instance_dir_t *d, size_t i);
const struct tb_idir_model *tb_instance_dir_model(const tb_instance_dir_t *d, const char *name);

/* The smallest context length the instances of `model` announce, 0 when none announces one. */
int64_t tb_instance_dir_min_context(const tb_instance_dir_t *d, const char *model);

/* Sets an instance's state and keeps the model's healthy count right. */
void tb_instance_dir_set_state(tb_instance_dir_t *d, struct tb_idir_instance *inst,
                               tb_inst_state_t state);

/* The fallback choice, for when the router cannot be asked: the instances of `model` in turn,
 * skipping those known to be unhealthy unless every one is.  NULL when the model has none.  Not
 * a policy: the caller logs and counts each use (tb_route_fallback). */
struct tb_idir_instance *tb_instance_dir_next(tb_instance_dir_t *d, const char *model);

/* True when some model has a healthy instance. */
bool tb_instance_dir_is_ready(const tb_instance_dir_t *d);

#endif /* TB_INSTANCE_DIR_H */
