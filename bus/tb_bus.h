/*
 * tb_bus.h - a bus handle: one thread's sockets for serving endpoints, calling them with streamed
 * replies, publishing and subscribing to events, and following the route table.
 *
 * The functions mirror the bus members of struct tb_host (tb_plugin.h), where their contracts
 * are documented; the host table points at them.  A handle belongs to the thread that created
 * it: every function except tb_bus_wakeup must be called on that thread, and callbacks run there
 * inside tb_bus_run.
 *
 * Two ways to drive a handle: call tb_bus_run(bus, timeout) as the thread's loop (engines), or
 * watch tb_bus_fd(bus) in another event loop and call tb_bus_run(bus, 0) when it is readable and
 * after each batch of the loop's own work (the http frontend); a periodic tb_bus_run(bus, 0)
 * every few tens of milliseconds keeps deadlines exact.
 */
#ifndef TB_BUS_H
#define TB_BUS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_metrics.h"
#include "tb_node.h"
#include "tb_plugin.h"

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

/* A handle for component `component` of namespace `ns` (both copied).  Waits up to 3 s for the
 * first route snapshot.  NULL on failure (logged). */
tb_bus_t *tb_bus_new(tb_node_t *node, const char *ns, const char *component);
void tb_bus_destroy(tb_bus_t **bus_p);
/* Counts the handle's fallbacks in `metrics` (borrowed; it must outlive the handle): a call with
 * instance 0 on an endpoint that serves a model is the bus's choice, not the router's, and adds 1
 * to turbine_router_fallback_total{component, model, reason="bus_any_instance"} (see
 * docs/router.md).  Without it such calls are only logged. */
void tb_bus_set_metrics(tb_bus_t *bus, tb_metrics_t *metrics);

int tb_bus_run(tb_bus_t *bus, int timeout_ms);
void tb_bus_wakeup(tb_bus_t *bus);
/* A file descriptor that becomes readable when tb_bus_run has work (see above). */
int tb_bus_fd(tb_bus_t *bus);
int tb_bus_watch_fd(tb_bus_t *bus, int fd, tb_fd_fn fn, void *user);
int tb_bus_unwatch_fd(tb_bus_t *bus, int fd);

int tb_bus_endpoint_add(tb_bus_t *bus, const char *name, const struct tb_endpoint_meta *meta,
                        tb_request_fn on_request, tb_cancel_fn on_cancel, void *user,
                        tb_endpoint_t **ep_out);
int tb_bus_endpoint_remove(tb_bus_t *bus, tb_endpoint_t *ep);
uint64_t tb_bus_endpoint_instance(const tb_endpoint_t *ep);
int tb_bus_endpoint_set_direct(tb_endpoint_t *ep, bool on);

int tb_bus_reply(tb_request_t *req, const void *data, size_t len, bool final);
int tb_bus_reply_error(tb_request_t *req, int code, const char *fmt, ...) TB_PRINTF(3, 4);
int tb_bus_vreply_error(tb_request_t *req, int code, const char *fmt, va_list ap);
uint64_t tb_bus_request_id(const tb_request_t *req);
int64_t tb_bus_request_deadline_ns(const tb_request_t *req);
void tb_bus_request_set_user(tb_request_t *req, void *user);
void *tb_bus_request_user(const tb_request_t *req);

int tb_bus_call(tb_bus_t *bus, const char *endpoint, uint64_t instance_id, const void *data,
                size_t len, int timeout_ms, tb_chunk_fn on_chunk, void *user,
                tb_call_t **call_out);
/* A health probe: the serving handle's bus layer answers at once (FINAL, no data) while its
 * thread runs its loop; same contract as tb_bus_call otherwise. */
int tb_bus_ping(tb_bus_t *bus, const char *endpoint, uint64_t instance_id, int timeout_ms,
                tb_chunk_fn on_chunk, void *user, tb_call_t **call_out);
void tb_bus_call_cancel(tb_call_t *call);
uint64_t tb_bus_call_instance(const tb_call_t *call);

int tb_bus_publish(tb_bus_t *bus, const char *topic, const void *data, size_t len);
int tb_bus_subscribe(tb_bus_t *bus, const char *prefix, tb_event_fn fn, void *user);

int tb_bus_routes_watch(tb_bus_t *bus, tb_route_fn fn, void *user);
int tb_bus_routes_find(tb_bus_t *bus, const char *endpoint, const char *model,
                       struct tb_route *out, int max);
/* tb_host.bus_routes_list: rows of the caller's route_size (tb_route_table_find_sized). */
int tb_bus_routes_list(tb_bus_t *bus, const char *endpoint, const char *model, void *out,
                       size_t route_size, int max);

/* Validates an endpoint name part ([a-z0-9_-]+) or a full dotted name (three such parts). */
bool tb_bus_name_is_valid(const char *name, bool full);

#pragma GCC visibility pop

#endif /* TB_BUS_H */
