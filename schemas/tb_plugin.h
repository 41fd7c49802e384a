/*
 * tb_plugin.h - the Turbine plugin SDK: the one public header a plugin needs.
 *
 * A plugin is a shared object that exports one symbol, `tb_plugin_entry`, returning a constant
 * `struct tb_plugin` descriptor.  The host (the `turbine` process) validates the plugin's config
 * against the descriptor's field table, then drives the lifecycle:
 *
 *     create -> start -> [drain -> in_flight == 0 or grace over] -> stop -> destroy
 *
 * and hands every call a constant `struct tb_host` table of services: logging, clock, the bus
 * (endpoints, streamed calls, events, routes), message codecs and metrics.  A plugin never links
 * against the core or another plugin; everything it uses comes through that table.
 *
 * Versioning: both structs begin with `struct_size`, `abi_major`, `abi_minor`.  Members are only
 * ever appended.  The host refuses a plugin whose major differs or whose minor is newer than its
 * own, and reads a descriptor member only if the plugin's `struct_size` covers it; a plugin must
 * likewise check `host->struct_size` before using a member added after the minor it was built for
 * (TB_HOST_HAS).
 *
 * The message structs of tb_msgs.h (generated from schemas/messages.yaml) are part of this ABI: a
 * schema minor that adds a field comes with an ABI minor, and the host encodes and decodes a
 * plugin's messages with the layouts of the schema minor its ABI minor shipped with, so a plugin
 * built before a field was added keeps working and is never read past the end of its structs.
 * Arrays of structs the host reads from a plugin carry their stride (config_field_size).  The
 * rules for what a minor may change are in docs/plugins.md.
 *
 * Only C standard headers are needed.
 */
#ifndef TB_PLUGIN_H
#define TB_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_errors.h"
#include "tb_msgs.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TB_ABI_MAJOR 1
#define TB_ABI_MINOR 4

#if TB_SCHEMA_ABI_MINOR > TB_ABI_MINOR
#error "tb_msgs.h is newer than tb_plugin.h: bump TB_ABI_MINOR with the schema minor"
#endif

/* The name of the one symbol a plugin exports. */
#define TB_PLUGIN_ENTRY_SYMBOL "tb_plugin_entry"

#if defined(__GNUC__)
#define TB_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define TB_EXPORT __attribute__((visibility("default")))
#else
#define TB_PRINTF(fmt_idx, arg_idx)
#define TB_EXPORT
#endif

/* Log levels, most severe first. */
typedef enum {
    TB_LOG_ERROR = 0,
    TB_LOG_WARN = 1,
    TB_LOG_INFO = 2,
    TB_LOG_DEBUG = 3,
    TB_LOG_TRACE = 4,
} tb_log_level_t;

/* ---------------------------------------------------------------------------------------------
 * Config fields.  A plugin describes its config as a table; the core parses YAML, validates each
 * value (type, required, bounds, choices, model-name rules), applies defaults and writes the result
 * into a zeroed struct of `config_size` bytes at each field's `offset`.  Unknown keys are errors.
 *
 * C types written per field type:
 *   TB_CFG_BOOL        bool
 *   TB_CFG_INT         int64_t        (bounds: min..max when has_bounds)
 *   TB_CFG_DOUBLE      double         (bounds likewise)
 *   TB_CFG_STRING      const char *   (NULL when optional and absent with no default)
 *   TB_CFG_ENUM        int            (index into `choices`)
 *   TB_CFG_MODEL_NAME  const char *   (a public model name: see docs/config.md)
 *   TB_CFG_PATH        const char *   (a filesystem path; must exist when `must_exist`)
 *   TB_CFG_BYTES       int64_t        (accepts 512, "64KiB", "8MiB", "2GiB", "1GB")
 *   TB_CFG_SECONDS     double         (accepts 1.5, "250ms", "2s", "1m")
 *   TB_CFG_STR_LIST    struct tb_str_list
 * Strings are owned by the host and stay valid until the component is destroyed.
 */
typedef enum {
    TB_CFG_BOOL = 1,
    TB_CFG_INT,
    TB_CFG_DOUBLE,
    TB_CFG_STRING,
    TB_CFG_ENUM,
    TB_CFG_MODEL_NAME,
    TB_CFG_PATH,
    TB_CFG_BYTES,
    TB_CFG_SECONDS,
    TB_CFG_STR_LIST,
} tb_cfg_type_t;

struct tb_str_list {
    size_t count;
    const char *const *items;
};

struct tb_config_field {
    const char *key; /* YAML key, [a-z0-9_]+ */
    tb_cfg_type_t type;
    size_t offset;             /* offsetof(the plugin's config struct, member) */
    bool required;             /* absent and no default: error */
    const char *default_value; /* as it would be written in YAML; NULL for none */
    bool has_bounds;           /* INT, DOUBLE, BYTES, SECONDS: enforce min <= v <= max */
    double min, max;
    const char *const *choices; /* ENUM: NULL-terminated list of allowed strings */
    bool must_exist;            /* PATH: the path must exist at validation time */
    const char *help;           /* one line for `turbine plugins` and error messages */
};

/* ---------------------------------------------------------------------------------------------
 * Opaque handles the host gives out.  All are owned by the host.
 */
typedef struct tb_component tb_component_t;         /* one running instance of a plugin */
typedef struct tb_bus tb_bus_t;                     /* a bus handle: use from one thread only */
typedef struct tb_endpoint tb_endpoint_t;           /* an endpoint this component serves */
typedef struct tb_request tb_request_t;             /* an incoming call being served */
typedef struct tb_call tb_call_t;                   /* an outgoing call */
typedef struct tb_metric tb_metric_t;               /* a metric family in the process registry */
typedef struct tb_metric_series tb_metric_series_t; /* one label set of a family (ABI 1.1) */

/* A route: one live instance of an endpoint, as the registry knows it.  Borrowed: valid only
 * during the callback or until the next tb_host.bus_* call on the same bus handle.  Members are
 * only appended; arrays of it are filled with the plugin's stride (bus_routes_list). */
struct tb_route {
    const char *endpoint;   /* "namespace.component.endpoint" */
    uint64_t instance_id;   /* unique per registration, never reused in a registry's life */
    const char *model;      /* served model name, "" when the endpoint serves none */
    const char *kind;       /* what the endpoint takes: "text", "tokens", "route", ... */
    int64_t context_length; /* 0 when not applicable */
    int64_t kv_block_size;  /* 0 when not applicable */
    const char *info;       /* free-form JSON object from the registrant, "{}" when none */
    bool local;             /* served in this process */
};

/* What a component announces when it adds an endpoint (copied by the host).  Frozen. */
struct tb_endpoint_meta {
    const char *model; /* NULL or "" for none */
    const char *kind;  /* NULL means "text" */
    int64_t context_length;
    int64_t kv_block_size;
    const char *info; /* NULL or a JSON object */
};

/* One chunk of a streamed reply, as a caller receives it.  Borrowed for the callback only. */
typedef enum {
    TB_CHUNK_DATA = 0,  /* more chunks follow */
    TB_CHUNK_FINAL = 1, /* the last chunk: the call succeeded */
    TB_CHUNK_ERROR = 2, /* the last chunk: the call failed with `code` and `message` */
} tb_chunk_kind_t;

struct tb_chunk {
    tb_chunk_kind_t kind;
    const void *data; /* payload (msgpack), may be NULL for errors */
    size_t len;
    int code;            /* ERROR: a TB_E* code */
    const char *message; /* ERROR: human-readable cause */
};

/* Callbacks run on the thread that calls tb_host.bus_run for that bus handle. */

/* A request arrived.  `payload` is borrowed for the callback.  The component must end `req`
 * exactly once, with bus_reply(final=true) or bus_reply_error, now or later from the same thread. */
typedef void (*tb_request_fn)(tb_request_t *req, const void *payload, size_t len, void *user);
/* The caller cancelled `req`, disconnected, or its deadline passed: stop work and end it (an
 * error reply is expected; it may not be delivered). */
typedef void (*tb_cancel_fn)(tb_request_t *req, void *user);
/* A chunk arrived for `call`.  After a FINAL or ERROR chunk the call handle is freed. */
typedef void (*tb_chunk_fn)(tb_call_t *call, const struct tb_chunk *chunk, void *user);
/* A published event matching a subscription. */
typedef void (*tb_event_fn)(const char *topic, const void *data, size_t len, void *user);
/* A route was added (true) or removed (false). */
typedef void (*tb_route_fn)(const struct tb_route *route, bool added, void *user);
/* A watched file descriptor is readable. */
typedef void (*tb_fd_fn)(int fd, void *user);

/* Metric kinds (Prometheus). */
typedef enum {
    TB_METRIC_COUNTER = 1,
    TB_METRIC_GAUGE = 2,
    TB_METRIC_HISTOGRAM = 3,
} tb_metric_kind_t;

/* A growable byte buffer the host fills (codec output, metrics text).  Release with buf_free. */
struct tb_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

/* ---------------------------------------------------------------------------------------------
 * The host's services.  Every function is thread-safe unless it takes a tb_bus_t, tb_request_t
 * or tb_call_t, which belong to the thread that created the bus handle.
 */
struct tb_host {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;

    /* --- logging --- */
    /* True when a line at `level` would be written; check before building costly arguments. */
    bool (*log_enabled)(const tb_component_t *comp, tb_log_level_t level);
    /* Writes one log line tagged with the component's name (git style: lowercase, no period). */
    void (*log)(const tb_component_t *comp, tb_log_level_t level, const char *fmt, ...)
        TB_PRINTF(3, 4);
    /* Sets the component's error message, shown by the host when create/start fails. */
    void (*set_error)(tb_component_t *comp, const char *fmt, ...) TB_PRINTF(2, 3);
    /* A static description of a TB_E* code. */
    const char *(*strerror)(int code);

    /* --- identity and clock --- */
    const char *(*component_name)(const tb_component_t *comp); /* e.g. "engine" */
    const char *(*namespace_name)(const tb_component_t *comp); /* e.g. "demo" */
    int (*replica_index)(const tb_component_t *comp);          /* 0-based */
    int64_t (*now_ns)(void);                                   /* CLOCK_MONOTONIC */
    /* True once the process started draining (SIGTERM/SIGINT). */
    bool (*is_draining)(const tb_component_t *comp);

    /* --- bus: handles --- */
    /* A new bus handle for the calling thread.  Caller owns it; destroy with bus_destroy from the
     * same thread.  NULL on failure (message logged). */
    tb_bus_t *(*bus_new)(tb_component_t *comp);
    /* Ends every open call with an error, deregisters the handle's endpoints, frees it, sets *bus_p
     * to NULL.  Accepts NULL. */
    void (*bus_destroy)(tb_bus_t **bus_p);
    /* Waits up to `timeout_ms` (-1: no limit, 0: poll) for bus activity and runs the callbacks it
     * causes.  Returns the number of callbacks run (>= 0) or a TB_E* code. */
    int (*bus_run)(tb_bus_t *bus, int timeout_ms);
    /* Makes a bus_run in progress (or the next one) return at once.  Callable from any thread and
     * from the handle's own thread. */
    void (*bus_wakeup)(tb_bus_t *bus);
    /* Watches `fd` for readability inside bus_run; `fn` runs on the handle's thread. */
    int (*bus_watch_fd)(tb_bus_t *bus, int fd, tb_fd_fn fn, void *user);
    int (*bus_unwatch_fd)(tb_bus_t *bus, int fd);
    /* For a thread whose loop is another event loop: a descriptor that becomes readable when
     * bus_run(bus, 0) has work.  Call bus_run(bus, 0) when it is readable, after each batch of the
     * loop's own work that used the bus, and every few tens of milliseconds (deadlines). */
    int (*bus_fd)(tb_bus_t *bus);

    /* --- bus: serving --- */
    /* Registers endpoint "namespace.component.<name>" served by this handle.  The route exists
     * from this call until bus_endpoint_remove or bus_destroy, as long as the process lives.
     * On success *ep_out is borrowed (owned by the bus handle). */
    int (*bus_endpoint_add)(tb_bus_t *bus, const char *name, const struct tb_endpoint_meta *meta,
                            tb_request_fn on_request, tb_cancel_fn on_cancel, void *user,
                            tb_endpoint_t **ep_out);
    /* Deregisters the endpoint and ends its open requests with TB_EDRAINING. */
    int (*bus_endpoint_remove)(tb_bus_t *bus, tb_endpoint_t *ep);
    /* Instance id the registry gave the endpoint (0 until registered). */
    uint64_t (*bus_endpoint_instance)(const tb_endpoint_t *ep);
    /* Sends a chunk of `req`'s reply.  final=true ends the request (and frees `req`).
     * Returns TB_EGONE when the caller has gone (the request is then cancelled: on_cancel has not
     * been and will not be called; the component should end it as usual). */
    int (*bus_reply)(tb_request_t *req, const void *data, size_t len, bool final);
    /* Ends `req` with an error chunk and frees it. */
    int (*bus_reply_error)(tb_request_t *req, int code, const char *fmt, ...) TB_PRINTF(3, 4);
    /* Per-request facts. */
    uint64_t (*bus_request_id)(const tb_request_t *req);
    int64_t (*bus_request_deadline_ns)(const tb_request_t *req); /* monotonic, local clock */
    void (*bus_request_set_user)(tb_request_t *req, void *user);
    void *(*bus_request_user)(const tb_request_t *req);

    /* --- bus: calling --- */
    /* Starts a streamed call of `endpoint` ("ns.comp.ep") on `instance_id` (0: any live instance,
     * in turn; for an endpoint that serves a model that bypasses the router, and is logged and
     * counted as a routing fallback: pass the instance the router chose).  Fails at once with
     * TB_ENOROUTE when no live instance serves it.  `timeout_ms` bounds the whole call (<= 0: no
     * deadline).  `on_chunk` receives zero or more DATA chunks and exactly one FINAL or ERROR
     * chunk; an instance that dies mid-call gives ERROR TB_EGONE within the lease TTL.  On
     * success *call_out is borrowed until that last chunk. */
    int (*bus_call)(tb_bus_t *bus, const char *endpoint, uint64_t instance_id, const void *data,
                    size_t len, int timeout_ms, tb_chunk_fn on_chunk, void *user,
                    tb_call_t **call_out);
    /* Cancels the call: the callee is told, no further chunk is delivered, the handle is freed. */
    /* A health probe of an instance: its bus layer answers (a FINAL chunk without data) as long as
     * the thread serving it runs its loop.  Same contract as bus_call otherwise. */
    int (*bus_ping)(tb_bus_t *bus, const char *endpoint, uint64_t instance_id, int timeout_ms,
                    tb_chunk_fn on_chunk, void *user, tb_call_t **call_out);
    void (*bus_call_cancel)(tb_call_t *call);
    uint64_t (*bus_call_instance)(const tb_call_t *call);

    /* --- bus: events --- */
    /* Publishes `data` under `topic` (dotted, e.g. "load.demo.engine") to every subscriber. */
    int (*bus_publish)(tb_bus_t *bus, const char *topic, const void *data, size_t len);
    /* Subscribes to topics starting with `prefix`. */
    int (*bus_subscribe)(tb_bus_t *bus, const char *prefix, tb_event_fn fn, void *user);

    /* --- bus: routes --- */
    /* Calls `fn` for route changes from now on, starting with an "added" call for every route
     * already known. */
    int (*bus_routes_watch)(tb_bus_t *bus, tb_route_fn fn, void *user);
    /* Fills up to `max` routes whose endpoint equals `endpoint` (NULL: any) and, when `model`
     * is not NULL, serve that model.  Returns how many exist (may exceed max).  The routes are
     * borrowed until the next bus_* call on this handle. */
    int (*bus_routes_find)(tb_bus_t *bus, const char *endpoint, const char *model,
                           struct tb_route *out, int max);

    /* --- message codecs (schemas/messages.yaml) --- */
    /* Encodes `msg` (a struct of type `type`) as msgpack into `out` (appended). */
    int (*msg_encode)(tb_msg_type_t type, const void *msg, struct tb_buf *out);
    /* Decodes msgpack `data` as `type`.  On success *msg_out is one heap block the caller owns
     * (strings and arrays inside it); free with msg_free.  Malformed, truncated or mistyped input
     * gives TB_EPROTO and never reads outside `data`.  `err` (may be NULL) receives why. */
    int (*msg_decode)(tb_msg_type_t type, const void *data, size_t len, void **msg_out, char *err,
                      size_t err_len);
    void (*msg_free)(void **msg_p);
    void (*buf_free)(struct tb_buf *buf);

    /* --- metrics (process-wide registry, rendered by whoever serves /metrics) --- */
    /* Finds or creates a metric family.  `label_names` is a comma-separated list ("" for none).
     * HISTOGRAM takes `buckets` (upper bounds, increasing); others ignore it.  Borrowed; lives as
     * long as the process. */
    tb_metric_t *(*metric_get)(tb_component_t *comp, const char *name, tb_metric_kind_t kind,
                               const char *help, const char *label_names, const double *buckets,
                               size_t n_buckets);
    /* Adds `v` to a counter or gauge, or observes `v` in a histogram, for the label values given
     * as a comma-separated list in the order of label_names ("" for none). */
    void (*metric_add)(tb_metric_t *m, const char *label_values, double v);
    /* Sets a gauge. */
    void (*metric_set)(tb_metric_t *m, const char *label_values, double v);
    /* Appends the Prometheus text exposition of every metric of this process to `out`. */
    int (*metrics_render)(tb_component_t *comp, struct tb_buf *out);

    /* --- added in ABI 1.1 (check with TB_HOST_HAS) --- */
    /* The series of family `m` for `label_values` (as metric_add takes them), created if new.  A
     * handle for code that updates the same series often: metric_series_add/_set skip parsing,
     * escaping and finding the labels on every update.  Borrowed; lives as long as the process.
     * NULL when `m` is NULL or out of memory (the update functions then do nothing). */
    tb_metric_series_t *(*metric_series)(tb_metric_t *m, const char *label_values);
    /* metric_add and metric_set on a series handle (NULL accepted). */
    void (*metric_series_add)(tb_metric_series_t *s, double v);
    void (*metric_series_set)(tb_metric_series_t *s, double v);

    /* --- added in ABI 1.2 (check with TB_HOST_HAS) --- */
    /* bus_routes_find into rows of `route_size` bytes: pass sizeof(struct tb_route) as the plugin
     * was built.  The host fills the members that fit in a row, so struct tb_route may gain members
     * in a later minor without writing past a plugin's array (bus_routes_find fills rows of ABI
     * 1.0's size, always).  TB_EINVAL when route_size is smaller than ABI 1.0's struct. */
    int (*bus_routes_list)(tb_bus_t *bus, const char *endpoint, const char *model, void *out,
                           size_t route_size, int max);

    /* --- added in ABI 1.3 (check with TB_HOST_HAS) --- */
    /* Makes `ep` (on=true) a direct endpoint: a caller in this process runs its on_request on the
     * caller's own thread, inside bus_call, instead of sending the request to the thread that
     * serves it; callers in other processes still reach it through its socket (docs/bus.md,
     * "Direct calls").  Such an on_request must (1) be safe to run on any thread, concurrently
     * with itself and with the serving thread's callbacks (the component locks its own state),
     * (2) answer every request before it returns (bus_reply with final=true, or
     * bus_reply_error), never keeping `req`, and (3) call no bus_* function other than those
     * replies and the bus_request_* accessors.  on_cancel is never called for a direct request.
     * The answer reaches the caller's on_chunk from its next bus_run, like any answer.  On the
     * serving thread; 0, TB_ENOMEM, or TB_EGONE for a removed endpoint.  on=false: back to the
     * socket only. */
    int (*bus_endpoint_set_direct)(tb_endpoint_t *ep, bool on);
};

/* True when the host table is recent enough to have `member`. */
#define TB_HOST_HAS(host, member)                                                                \
    ((host)->struct_size >= offsetof(struct tb_host, member) + sizeof((host)->member))

/* ---------------------------------------------------------------------------------------------
 * The plugin descriptor.
 */
struct tb_plugin {
    uint32_t struct_size; /* sizeof(struct tb_plugin) as the plugin was built */
    uint16_t abi_major;   /* TB_ABI_MAJOR */
    uint16_t abi_minor;   /* TB_ABI_MINOR */
    const char *name;     /* [a-z0-9_]+, equals the file name tb_<name>.so */
    const char *version;  /* the plugin's own version, e.g. "0.1.0" */
    const char *description;

    const struct tb_config_field *config_fields;
    size_t config_field_count;
    size_t config_size; /* sizeof the plugin's config struct */

    /* Optional: may this plugin run here?  Return 0, or a negative code and a reason in `why`
     * (e.g. "no CUDA device").  Called before create. */
    int (*probe)(const struct tb_host *host, char *why, size_t why_len);
    /* Allocates the component's state from its validated config (borrowed until destroy).  Loads
     * what it needs (models), binds nothing yet.  On failure returns a TB_E* code after
     * host->set_error, having freed what it allocated. */
    int (*create)(const struct tb_host *host, tb_component_t *comp, const void *config,
                  void **state_out);
    /* Starts threads, binds ports, adds endpoints.  On failure: set_error, undo, return code. */
    int (*start)(void *state);
    /* Optional: stop accepting new work; finish what is in flight.  Must not block. */
    void (*drain)(void *state);
    /* Optional: how much work is in flight (requests, streams).  Thread-safe. */
    size_t (*in_flight)(void *state);
    /* Stops threads, removes endpoints, ends what is left with errors.  Blocks until done. */
    void (*stop)(void *state);
    /* Frees the state.  Called after stop, or after a failed start, or alone after create. */
    void (*destroy)(void *state);

    /* --- added in ABI 1.2 --- */
    /* sizeof(struct tb_config_field) as the plugin was built: the stride of config_fields, so a
     * later ABI may append members to a row.  0 (as every plugin of ABI 1.0 or 1.1 leaves it)
     * means the row size of the ABI minor the plugin declares. */
    size_t config_field_size;
};

/* The entry point's type.  A plugin defines it as:
 *     TB_EXPORT const struct tb_plugin *tb_plugin_entry(void) { return &descriptor; } */
typedef const struct tb_plugin *(*tb_plugin_entry_fn)(void);

/* Convenience macros for plugin code: check the level before evaluating arguments. */
#define TB_LOG(host, comp, level, ...)                                                           \
    do {                                                                                         \
        if ((host)->log_enabled((comp), (level))) {                                              \
            (host)->log((comp), (level), __VA_ARGS__);                                           \
        }                                                                                        \
    } while (0)
#define TB_LOG_ERROR(host, comp, ...) TB_LOG(host, comp, TB_LOG_ERROR, __VA_ARGS__)
#define TB_LOG_WARN(host, comp, ...) TB_LOG(host, comp, TB_LOG_WARN, __VA_ARGS__)
#define TB_LOG_INFO(host, comp, ...) TB_LOG(host, comp, TB_LOG_INFO, __VA_ARGS__)
#define TB_LOG_DEBUG(host, comp, ...) TB_LOG(host, comp, TB_LOG_DEBUG, __VA_ARGS__)
#define TB_LOG_TRACE(host, comp, ...) TB_LOG(host, comp, TB_LOG_TRACE, __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif /* TB_PLUGIN_H */
