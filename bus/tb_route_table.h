/*
 * tb_route_table.h - a bus handle's copy of the registry's routes, kept from route events.
 *
 * Entries own copies of their strings.  Lookups are linear: a deployment has tens of routes.
 * Not thread-safe: one bus handle owns one table.
 */
#ifndef TB_ROUTE_TABLE_H
#define TB_ROUTE_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_msgs.h"
#include "tb_plugin.h"

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

typedef struct tb_route_table tb_route_table_t;

/* One entry: the public view plus where to connect. */
struct tb_rt_entry {
    struct tb_route pub; /* strings owned by the entry */
    char *process_id;
    char *address;   /* the address this process should connect to */
    char *curve_key; /* the route's CURVE public key (Z85), or NULL */
};

/* A table for a process whose id is `process_id` (copied): routes from that process are marked
 * local and reached over inproc.  Caller owns the result; NULL when out of memory. */
tb_route_table_t *tb_route_table_new(const char *process_id);
void tb_route_table_destroy(tb_route_table_t **t_p);

/* Adds (or replaces) a route from a decoded message.  Returns 1 when the instance is new, 0 when
 * it replaced an entry, TB_EINVAL when the route has no usable address, TB_ENOMEM. */
int tb_route_table_add(tb_route_table_t *t, const struct tb_msg_route *r);

/* Removes an instance.  When `out` is not NULL the removed entry is moved there (caller releases
 * it with tb_rt_entry_release); returns true when it existed. */
bool tb_route_table_remove(tb_route_table_t *t, uint64_t instance_id, struct tb_rt_entry *out);
void tb_rt_entry_release(struct tb_rt_entry *e);

/* The entry of an instance, or NULL.  Borrowed until the table changes. */
const struct tb_rt_entry *tb_route_table_get(const tb_route_table_t *t, uint64_t instance_id);

/* Number of entries, and entry i (0 <= i < count), borrowed until the table changes. */
size_t tb_route_table_count(const tb_route_table_t *t);
const struct tb_rt_entry *tb_route_table_at(const tb_route_table_t *t, size_t i);

/* Copies the public view of up to `max` routes matching `endpoint` (NULL: any) and `model` (NULL:
 * any) into `out`; returns how many match. */
int tb_route_table_find(const tb_route_table_t *t, const char *endpoint, const char *model,
                        struct tb_route *out, int max);

/* tb_route_table_find into rows of `route_size` bytes (a plugin's sizeof(struct tb_route)): each
 * row gets the first min(route_size, sizeof(struct tb_route)) bytes of the route, the rest of it
 * is left as it was.  TB_EINVAL when route_size is smaller than the ABI 1.0 members. */
int tb_route_table_find_sized(const tb_route_table_t *t, const char *endpoint, const char *model,
                              void *out, size_t route_size, int max);

/* Picks an instance of `endpoint` round robin (advancing *cursor); 0 when none. */
uint64_t tb_route_table_pick(const tb_route_table_t *t, const char *endpoint, uint64_t *cursor);

#pragma GCC visibility pop

#endif /* TB_ROUTE_TABLE_H */
