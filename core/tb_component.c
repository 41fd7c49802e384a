/* tb_component: plugin lifecycle and the host services table (see tb_component.h). */
#include "tb_component.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tb_buf.h"
#include "tb_bus.h"
#include "tb_codec.h"
#include "tb_log.h"

static bool s_log_enabled(const tb_component_t *comp, tb_log_level_t level)
{
    (void)comp;
    return tb_log_enabled(level);
}

static void s_log(const tb_component_t *comp, tb_log_level_t level, const char *fmt, ...)
{
    if (!tb_log_enabled(level)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    tb_log_vwrite(level, comp ? comp->log_name : "plugin", fmt, ap);
    va_end(ap);
}

static void s_set_error(tb_component_t *comp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(comp->error, sizeof(comp->error), fmt, ap);
    va_end(ap);
}

static const char *s_component_name(const tb_component_t *comp)
{
    return comp->name;
}

static const char *s_namespace_name(const tb_component_t *comp)
{
    return comp->core->ns;
}

static int s_replica_index(const tb_component_t *comp)
{
    return comp->replica;
}

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool s_is_draining(const tb_component_t *comp)
{
    return atomic_load(&comp->core->draining);
}

static tb_bus_t *s_bus_new(tb_component_t *comp)
{
    tb_bus_t *bus = tb_bus_new(comp->core->node, comp->core->ns, comp->name);
    if (bus) {
        tb_bus_set_metrics(bus, comp->core->metrics);
    }
    return bus;
}

static int s_msg_encode(tb_msg_type_t type, const void *msg, struct tb_buf *out)
{
    return tb_codec_encode(type, msg, out);
}

static int s_msg_decode(tb_msg_type_t type, const void *data, size_t len, void **msg_out,
                        char *err, size_t err_len)
{
    return tb_codec_decode(type, data, len, msg_out, err, err_len);
}

static void s_msg_free(void **msg_p)
{
    tb_codec_free(msg_p);
}

static tb_metric_t *s_metric_get(tb_component_t *comp, const char *name, tb_metric_kind_t kind,
                                 const char *help, const char *label_names, const double *buckets,
                                 size_t n_buckets)
{
    return tb_metric_get(comp->core->metrics, name, kind, help, label_names, buckets, n_buckets);
}

static int s_metrics_render(tb_component_t *comp, struct tb_buf *out)
{
    return tb_metrics_render(comp->core->metrics, out);
}

static const struct tb_host s_host = {
    .struct_size = sizeof(struct tb_host),
    .abi_major = TB_ABI_MAJOR,
    .abi_minor = TB_ABI_MINOR,
    .log_enabled = s_log_enabled,
    .log = s_log,
    .set_error = s_set_error,
    .strerror = tb_strerror,
    .component_name = s_component_name,
    .namespace_name = s_namespace_name,
    .replica_index = s_replica_index,
    .now_ns = s_now_ns,
    .is_draining = s_is_draining,
    .bus_new = s_bus_new,
    .bus_destroy = tb_bus_destroy,
    .bus_run = tb_bus_run,
    .bus_wakeup = tb_bus_wakeup,
    .bus_watch_fd = tb_bus_watch_fd,
    .bus_unwatch_fd = tb_bus_unwatch_fd,
    .bus_fd = tb_bus_fd,
    .bus_endpoint_add = tb_bus_endpoint_add,
    .bus_endpoint_remove = tb_bus_endpoint_remove,
    .bus_endpoint_instance = tb_bus_endpoint_instance,
    .bus_reply = tb_bus_reply,
    .bus_reply_error = tb_bus_reply_error,
    .bus_request_id = tb_bus_request_id,
    .bus_request_deadline_ns = tb_bus_request_deadline_ns,
    .bus_request_set_user = tb_bus_request_set_user,
    .bus_request_user = tb_bus_request_user,
    .bus_call = tb_bus_call,
    .bus_ping = tb_bus_ping,
    .bus_call_cancel = tb_bus_call_cancel,
    .bus_call_instance = tb_bus_call_instance,
    .bus_publish = tb_bus_publish,
    .bus_subscribe = tb_bus_subscribe,
    .bus_routes_watch = tb_bus_routes_watch,
    .bus_routes_find = tb_bus_routes_find,
    .msg_encode = s_msg_encode,
    .msg_decode = s_msg_decode,
    .msg_free = s_msg_free,
    .buf_free = tb_buf_free,
    .metric_get = s_metric_get,
    .metric_add = tb_metric_add,
    .metric_set = tb_metric_set,
    .metrics_render = s_metrics_render,
    .metric_series = tb_metric_series,
    .metric_series_add = tb_metric_series_add,
    .metric_series_set = tb_metric_series_set,
    .bus_routes_list = tb_bus_routes_list,
    .bus_endpoint_set_direct = tb_bus_endpoint_set_direct,
};

/* bus_routes_find writes rows of sizeof(struct tb_route) into arrays plugins of every ABI 1.x
 * sized: the struct must stay ABI 1.0's size, or bus_routes_find must fill rows of that size. */
_Static_assert(sizeof(struct tb_route) == (offsetof(struct tb_route, local) + sizeof(bool) +
                                           _Alignof(struct tb_route) - 1) /
                                              _Alignof(struct tb_route) *
                                              _Alignof(struct tb_route),
               "struct tb_route grew: make bus_routes_find fill rows of ABI 1.0's size");

const struct tb_host *tb_host_table(void)
{
    return &s_host;
}

/* ------------------------------------------------------------------------------------------- */

static const char *s_err(struct tb_component *c, int rc)
{
    return c->error[0] ? c->error : tb_strerror(rc);
}

int tb_component_create(struct tb_component *c)
{
    const struct tb_plugin *p = c->lp->desc;
    c->error[0] = 0;
    /* A plugin built before the newest schema minor hands and expects structs of its own (shorter)
     * layout: its codec entry points read and write exactly those. */
    c->host = s_host;
    if (c->lp->layout) {
        c->host.msg_encode = c->lp->layout->encode;
        c->host.msg_decode = c->lp->layout->decode;
    }
    if (p->probe) {
        char why[512] = "";
        int rc = p->probe(&c->host, why, sizeof(why));
        if (rc != 0) {
            TB_CLOG_ERROR(c->log_name, "plugin %s cannot run here: %s", p->name,
                          why[0] ? why : tb_strerror(rc));
            c->declined = true;
            return rc;
        }
    }
    int rc = p->create(&c->host, c, c->config, &c->state);
    if (rc != 0) {
        TB_CLOG_ERROR(c->log_name, "cannot create component '%s' (plugin %s %s): %s", c->name,
                      p->name, p->version, s_err(c, rc));
        c->state = NULL;
        return rc;
    }
    c->created = true;
    return 0;
}

int tb_component_start(struct tb_component *c)
{
    const struct tb_plugin *p = c->lp->desc;
    c->error[0] = 0;
    int rc = p->start(c->state);
    if (rc != 0) {
        TB_CLOG_ERROR(c->log_name, "cannot start component '%s' (plugin %s %s): %s", c->name,
                      p->name, p->version, s_err(c, rc));
        return rc;
    }
    c->started = true;
    TB_CLOG_INFO(c->log_name, "component '%s' started (plugin %s %s from %s)", c->name, p->name,
                 p->version, c->lp->path);
    return 0;
}

void tb_component_drain(struct tb_component *c)
{
    if (c->started && c->lp->desc->drain) {
        c->lp->desc->drain(c->state);
    }
}

size_t tb_component_in_flight(struct tb_component *c)
{
    if (c->started && c->lp->desc->in_flight) {
        return c->lp->desc->in_flight(c->state);
    }
    return 0;
}

void tb_component_stop(struct tb_component *c)
{
    if (c->started) {
        c->lp->desc->stop(c->state);
        c->started = false;
        TB_CLOG_INFO(c->log_name, "component '%s' stopped", c->name);
    }
}

void tb_component_destroy(struct tb_component *c)
{
    if (c->created) {
        c->lp->desc->destroy(c->state);
        c->created = false;
        c->state = NULL;
    }
}
