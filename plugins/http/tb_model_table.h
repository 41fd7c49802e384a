/*
 * tb_model_table.h - the http frontend's view of what it can serve: every live instance of an
 * endpoint of the wanted kind ("text") that names a model, grouped by model, with the state of
 * its health probes.  Kept from the bus's route events; a model exists exactly while at least one
 * of its instances does.
 *
 * Pure data, no I/O.  Not thread-safe: the http thread owns it.  Linear lookups: a deployment has
 * tens of routes.
 */
#ifndef TB_MODEL_TABLE_H
#define TB_MODEL_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_plugin.h"

typedef enum {
    TB_INST_PROBING = 0,   /* registered, no probe answered yet */
    TB_INST_HEALTHY = 1,   /* the last probe was answered */
    TB_INST_UNHEALTHY = 2, /* the last probe failed or timed out */
} tb_inst_state_t;

/* One instance.  Strings are owned by the table.  The caller may write the fields marked
 * (caller). */
struct tb_mt_instance {
    uint64_t instance_id;
    char *endpoint;
    char *model;
    char *kind;
    int64_t context_length;
    bool local;
    tb_inst_state_t state;  /* (caller) */
    int64_t next_probe_ns;  /* (caller) when to probe next */
    void *probe;            /* (caller) the probe in flight, NULL when none */
    int64_t in_flight;      /* (caller) requests the frontend has on it */
    int64_t served;         /* (caller) requests sent to it so far */
};

/* A model: `instances` live instances, `healthy` of them answered their last probe. */
struct tb_mt_model {
    char *name;
    int64_t created; /* unix seconds when its first instance appeared */
    size_t instances;
    size_t healthy;
    size_t cursor;   /* round robin position */
};

typedef struct tb_model_table tb_model_table_t;

/* A table keeping routes whose kind equals `kind` (copied).  Caller owns it; NULL on OOM. */
tb_model_table_t *tb_model_table_new(const char *kind);
void tb_model_table_destroy(tb_model_table_t **t_p);

/* Adds a route.  Returns 1 when kept (new instance), 0 when ignored (other kind, no model, or
 * already known), TB_ENOMEM.  `now_unix` stamps a model seen for the first time. */
int tb_model_table_add(tb_model_table_t *t, const struct tb_route *r, int64_t now_unix);
/* Removes an instance; true when it was kept.  When `out_model_gone` is not NULL it receives
 * whether its model has no instance left. */
bool tb_model_table_remove(tb_model_table_t *t, uint64_t instance_id, bool *out_model_gone);

/* Instances: lookup by id (NULL when absent), count and index (borrowed until the table
 * changes). */
struct tb_mt_instance *tb_model_table_get(tb_model_table_t *t, uint64_t instance_id);
size_t tb_model_table_count(const tb_model_table_t *t);
struct tb_mt_instance *tb_model_table_at(tb_model_table_t *t, size_t i);

/* Models, in the order they appeared (borrowed until the table changes). */
size_t tb_model_table_model_count(const tb_model_table_t *t);
const struct tb_mt_model *tb_model_table_model_at(const tb_model_table_t *t, size_t i);
const struct tb_mt_model *tb_model_table_model(const tb_model_table_t *t, const char *name);

/* Sets an instance's state and keeps the model's healthy count right. */
void tb_model_table_set_state(tb_model_table_t *t, struct tb_mt_instance *inst,
                              tb_inst_state_t state);

/* Picks an instance of `model` round robin, preferring instances not known to be unhealthy.
 * NULL when the model has none. */
struct tb_mt_instance *tb_model_table_pick(tb_model_table_t *t, const char *model);

/* True when some model has a healthy instance. */
bool tb_model_table_is_ready(const tb_model_table_t *t);

#endif /* TB_MODEL_TABLE_H */
