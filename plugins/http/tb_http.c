/*
 * tb_http: the frontend's thread and event loop, libmicrohttpd setup, the routes answered at once
 * (/live, /ready, /health, /metrics, /v1/models), authentication, engine discovery from route
 * events and health probes.  Generation requests are in tb_http_gen.c.
 *
 * One thread runs one epoll loop over three kinds of descriptors: libmicrohttpd's epoll fd (it
 * runs in external-epoll mode, MHD_run does its work), the bus handle's fd (bus_run(bus, 0) does
 * its work), and the sockets of requests waiting on an engine, watched for EPOLLRDHUP because
 * libmicrohttpd does not notice a client closing a suspended connection.  Every callback of both
 * libraries runs on this thread, so no request state is shared with any other thread.  The
 * frontend runs `threads` such loops (tb_http_front.c), each with its own daemon accepting on the
 * first loop's listening socket (whichever is free takes a new connection), bus handle and view of
 * the engines; they share only struct tb_http_shared.
 */
#include "tb_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "tb_errors.h"
#include "tb_http_int.h"
#include "tb_spin.h"

#define LOG_ERROR(h, ...) TB_LOG_ERROR((h)->host, (h)->comp, __VA_ARGS__)
#define LOG_WARN(h, ...) TB_LOG_WARN((h)->host, (h)->comp, __VA_ARGS__)
#define LOG_INFO(h, ...) TB_LOG_INFO((h)->host, (h)->comp, __VA_ARGS__)
#define LOG_DEBUG(h, ...) TB_LOG_DEBUG((h)->host, (h)->comp, __VA_ARGS__)

/* Tags of the loop's own descriptors (request sockets carry their struct tb_hreq). */
static char s_tag_wake;
static char s_tag_mhd;
static char s_tag_bus;

#define BUS_TICK_MS 20 /* bus_run(bus, 0) at least this often while calls are open */

/* ------------------------------------------------------------------------------------------- */
/* Answers */

enum MHD_Result tb_http_queue_json(struct tb_http *h, struct MHD_Connection *conn, int status,
                                   char *body, size_t len, bool retry_after, bool close)
{
    return tb_http_queue_json_as(h, conn, status, body, len, retry_after, close, NULL);
}

enum MHD_Result tb_http_queue_json_as(struct tb_http *h, struct MHD_Connection *conn, int status,
                                      char *body, size_t len, bool retry_after, bool close,
                                      const char *instance)
{
    struct MHD_Response *resp = NULL;
    if (body) {
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(body);
        }
    }
    if (!resp) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (retry_after) {
        char v[24];
        snprintf(v, sizeof(v), "%" PRId64, h->cfg.retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (close) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    if (status == MHD_HTTP_UNAUTHORIZED) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    }
    if (instance) {
        MHD_add_response_header(resp, "x-turbine-instance", instance);
    }
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

enum MHD_Result tb_http_queue_error(struct tb_http *h, struct MHD_Connection *conn,
                                    const struct tb_oai_error *e, bool retry_after, bool close)
{
    size_t len = 0;
    char *body = tb_oai_error_body(e, &len);
    return tb_http_queue_json(h, conn, e->status, body, len, retry_after, close);
}

static enum MHD_Result s_error(struct tb_http *h, struct MHD_Connection *conn, int status,
                               const char *type, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static enum MHD_Result s_error(struct tb_http *h, struct MHD_Connection *conn, int status,
                               const char *type, const char *code, const char *fmt, ...)
{
    struct tb_oai_error e;
    tb_oai_error_set(&e, status, type, code, NULL, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    tb_err_vset(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    return tb_http_queue_error(h, conn, &e, false, false);
}

static enum MHD_Result s_json(struct tb_http *h, struct MHD_Connection *conn, int status,
                              json_t *o)
{
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return tb_http_queue_json(h, conn, status, body, body ? strlen(body) : 0, false, false);
}

/* ------------------------------------------------------------------------------------------- */
/* Connections and the loop's descriptors */

void tb_http_resume(struct tb_http *h, struct tb_hreq *r)
{
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
        h->resumed = true;
    }
}

void tb_http_suspend(struct tb_http *h, struct tb_hreq *r)
{
    (void)h;
    MHD_suspend_connection(r->conn);
    r->suspended = true;
}

bool tb_http_watch(struct tb_http *h, struct tb_hreq *r)
{
    (void)h;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct tb_hconn *hc = ci ? ci->socket_context : NULL;
    if (!hc) {
        return true;
    }
    hc->req = r;
    r->hc = hc;
    return !hc->rdhup;
}

void tb_http_unwatch(struct tb_http *h, struct tb_hreq *r)
{
    (void)h;
    if (r->hc) {
        if (r->hc->req == r) {
            r->hc->req = NULL;
        }
        r->hc = NULL;
    }
}

static void s_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                            enum MHD_ConnectionNotificationCode code)
{
    struct tb_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct tb_hconn *hc = calloc(1, sizeof(*hc));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!hc || !ci) {
            free(hc);
            return;
        }
        hc->fd = ci->connect_fd;
        struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLET};
        ev.data.ptr = hc;
        hc->watched = epoll_ctl(h->epfd, EPOLL_CTL_ADD, hc->fd, &ev) == 0;
        *socket_context = hc;
        return;
    }
    struct tb_hconn *hc = *socket_context;
    if (hc) {
        if (hc->watched) {
            epoll_ctl(h->epfd, EPOLL_CTL_DEL, hc->fd, NULL);
        }
        if (hc->req) {
            hc->req->hc = NULL;
        }
        free(hc);
        *socket_context = NULL;
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Engines: route events and health probes */

struct probe {
    struct tb_http *h;
    uint64_t instance;
    tb_call_t *call;
};

static void s_probe_cancel(struct tb_http *h, struct tb_idir_instance *inst)
{
    struct probe *p = inst->probe;
    if (p) {
        h->host->bus_call_cancel(p->call);
        h->bus_dirty = true;
        free(p);
        inst->probe = NULL;
    }
}

static void s_on_probe(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    struct probe *p = user;
    struct tb_http *h = p->h;
    if (ch->kind == TB_CHUNK_DATA) {
        return;
    }
    struct tb_idir_instance *inst = tb_instance_dir_get(h->models, p->instance);
    if (inst && inst->probe == p) {
        inst->probe = NULL;
        tb_inst_state_t st = ch->kind == TB_CHUNK_FINAL ? TB_INST_HEALTHY : TB_INST_UNHEALTHY;
        if (st != inst->state) {
            if (st == TB_INST_HEALTHY) {
                LOG_INFO(h,
                         "engine %s (instance %016" PRIx64 ", model '%s') answered its "
                         "health probe",
                         inst->endpoint, inst->instance_id, inst->model);
            } else {
                LOG_WARN(h,
                         "engine %s (instance %016" PRIx64 ", model '%s') failed its health "
                         "probe: %s",
                         inst->endpoint, inst->instance_id, inst->model,
                         ch->message ? ch->message : "no answer");
            }
        }
        tb_instance_dir_set_state(h->models, inst, st);
    }
    free(p);
}

static void s_probe_due(struct tb_http *h, int64_t now)
{
    for (size_t i = 0; i < tb_instance_dir_count(h->models); i++) {
        struct tb_idir_instance *inst = tb_instance_dir_at(h->models, i);
        if (inst->probe || now < inst->next_probe_ns) {
            continue;
        }
        inst->next_probe_ns = now + (int64_t)(h->cfg.health_interval_s * 1e9);
        struct probe *p = calloc(1, sizeof(*p));
        if (!p) {
            continue;
        }
        p->h = h;
        p->instance = inst->instance_id;
        int rc = h->host->bus_ping(h->bus, inst->endpoint, inst->instance_id,
                                   (int)(h->cfg.health_timeout_s * 1000), s_on_probe, p,
                                   &p->call);
        h->bus_dirty = true;
        if (rc != 0) {
            free(p);
            tb_instance_dir_set_state(h->models, inst, TB_INST_UNHEALTHY);
            continue;
        }
        inst->probe = p;
    }
}

static int64_t s_next_probe(struct tb_http *h)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < tb_instance_dir_count(h->models); i++) {
        struct tb_idir_instance *inst = tb_instance_dir_at(h->models, i);
        if (!inst->probe && inst->next_probe_ns < next) {
            next = inst->next_probe_ns;
        }
    }
    return next;
}

static void s_on_route(const struct tb_route *r, bool added, void *user)
{
    struct tb_http *h = user;
    if (h->router_ep[0] && strcmp(r->endpoint, h->router_ep) == 0) {
        if (added) {
            h->router_instances++;
            LOG_INFO(h, "router %s (instance %016" PRIx64 ") available", r->endpoint,
                     r->instance_id);
        } else if (h->router_instances > 0) {
            h->router_instances--;
            LOG_INFO(h, "router %s (instance %016" PRIx64 ") gone%s", r->endpoint, r->instance_id,
                     h->router_instances ? "" : ": choosing instances here (a counted fallback)");
        }
        return;
    }
    if (added) {
        bool is_new = !tb_instance_dir_model(h->models, r->model ? r->model : "");
        int rc = tb_instance_dir_add(h->models, r, (int64_t)time(NULL));
        if (rc == 1) {
            LOG_INFO(h, "engine %s (instance %016" PRIx64 ") serves model '%s'%s", r->endpoint,
                     r->instance_id, r->model, is_new ? ": model added to /v1/models" : "");
        } else if (rc < 0) {
            LOG_ERROR(h, "cannot track route %s: out of memory", r->endpoint);
        }
        return;
    }
    struct tb_idir_instance *inst = tb_instance_dir_get(h->models, r->instance_id);
    if (!inst) {
        return;
    }
    s_probe_cancel(h, inst);
    char model[160];
    snprintf(model, sizeof(model), "%s", inst->model);
    bool gone = false;
    tb_instance_dir_remove(h->models, r->instance_id, &gone);
    LOG_INFO(h, "engine %s (instance %016" PRIx64 ") of model '%s' is gone%s", r->endpoint,
             r->instance_id, model, gone ? ": model removed from /v1/models" : "");
}

/* ------------------------------------------------------------------------------------------- */
/* Routes answered at once */

static json_t *s_model_json(const struct tb_idir_model *m, tb_instance_dir_t *t)
{
    json_t *o = json_object();
    if (!o) {
        return NULL;
    }
    json_object_set_new(o, "id", json_string(m->name));
    json_object_set_new(o, "object", json_string("model"));
    json_object_set_new(o, "created", json_integer(m->created));
    json_object_set_new(o, "owned_by", json_string("turbine"));
    int64_t ctx = 0;
    for (size_t i = 0; i < tb_instance_dir_count(t); i++) {
        struct tb_idir_instance *inst = tb_instance_dir_at(t, i);
        if (strcmp(inst->model, m->name) == 0 && inst->context_length > ctx) {
            ctx = inst->context_length;
        }
    }
    if (ctx > 0) {
        json_object_set_new(o, "max_model_len", json_integer(ctx));
    }
    return o;
}

static enum MHD_Result s_models(struct tb_http *h, struct MHD_Connection *conn, const char *id)
{
    if (id) {
        const struct tb_idir_model *m = tb_instance_dir_model(h->models, id);
        if (!m) {
            struct tb_oai_error e;
            tb_oai_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                             "the model '%.200s' does not exist", id);
            return tb_http_queue_error(h, conn, &e, false, false);
        }
        return s_json(h, conn, 200, s_model_json(m, h->models));
    }
    json_t *o = json_object();
    json_t *data = json_array();
    for (size_t i = 0; o && data && i < tb_instance_dir_model_count(h->models); i++) {
        json_array_append_new(data,
                              s_model_json(tb_instance_dir_model_at(h->models, i), h->models));
    }
    if (o && data) {
        json_object_set_new(o, "object", json_string("list"));
        json_object_set(o, "data", data);
    }
    json_decref(data);
    return s_json(h, conn, 200, o);
}

static const char *s_ready_reason(struct tb_http *h)
{
    if (atomic_load(&h->sh->draining)) {
        return "draining: the process is shutting down";
    }
    if (tb_instance_dir_model_count(h->models) == 0) {
        return "no model is routable: no engine instance has registered";
    }
    if (!tb_instance_dir_is_ready(h->models)) {
        return "no engine instance answered its last health probe";
    }
    return NULL;
}

static json_t *s_model_names(struct tb_http *h)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < tb_instance_dir_model_count(h->models); i++) {
        json_array_append_new(a, json_string(tb_instance_dir_model_at(h->models, i)->name));
    }
    return a;
}

static enum MHD_Result s_ready(struct tb_http *h, struct MHD_Connection *conn)
{
    const char *why = s_ready_reason(h);
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "status", json_string(why ? "not_ready" : "ready"));
        if (why) {
            json_object_set_new(o, "reason", json_string(why));
        }
        json_object_set_new(o, "models", s_model_names(h));
    }
    return s_json(h, conn, why ? 503 : 200, o);
}

static const char *s_state_name(tb_inst_state_t s)
{
    return s == TB_INST_HEALTHY ? "healthy" : s == TB_INST_UNHEALTHY ? "unhealthy" : "probing";
}

static enum MHD_Result s_health(struct tb_http *h, struct MHD_Connection *conn)
{
    const char *why = s_ready_reason(h);
    json_t *o = json_object();
    json_t *comps = json_array();
    json_t *routes = json_array();
    json_t *models = json_array();
    json_t *insts = json_array();
    if (!o || !comps || !routes || !models || !insts) {
        json_decref(o);
        json_decref(comps);
        json_decref(routes);
        json_decref(models);
        json_decref(insts);
        return MHD_NO;
    }
    const char *status = atomic_load(&h->sh->draining) ? "draining" : why ? "not_ready" : "ready";
    json_object_set_new(o, "status", json_string(status));
    if (why) {
        json_object_set_new(o, "reason", json_string(why));
    }
    json_object_set_new(o, "uptime_s",
                        json_real((double)(h->host->now_ns() - h->started_ns) / 1e9));
    json_object_set_new(o, "in_flight", json_integer((json_int_t)atomic_load(&h->sh->n_gens)));
    /* Every route the bus knows: components are the "namespace.component" parts. */
    struct tb_route rv[256];
    int n = h->host->bus_routes_find(h->bus, NULL, NULL, rv, 256);
    if (n > 256) {
        n = 256;
    }
    char self[300];
    snprintf(self, sizeof(self), "%s.%s", h->ns, h->host->component_name(h->comp));
    json_array_append_new(comps, json_string(self));
    for (int i = 0; i < n; i++) {
        const char *ep = rv[i].endpoint;
        const char *last = strrchr(ep, '.');
        if (last) {
            json_t *c = json_stringn(ep, (size_t)(last - ep));
            bool seen = false;
            for (size_t k = 0; c && k < json_array_size(comps); k++) {
                seen = seen || json_equal(json_array_get(comps, k), c);
            }
            if (c && !seen) {
                json_array_append(comps, c);
            }
            json_decref(c);
        }
        json_t *r = NULL;
        for (size_t k = 0; k < json_array_size(routes); k++) {
            json_t *e = json_array_get(routes, k);
            if (strcmp(json_string_value(json_object_get(e, "endpoint")), ep) == 0) {
                r = e;
            }
        }
        if (!r) {
            r = json_object();
            if (!r) {
                continue;
            }
            json_object_set_new(r, "endpoint", json_string(ep));
            json_object_set_new(r, "kind", json_string(rv[i].kind ? rv[i].kind : ""));
            json_object_set_new(r, "instances", json_integer(0));
            json_array_append_new(routes, r);
        }
        json_object_set_new(r, "instances",
                            json_integer(json_integer_value(json_object_get(r, "instances")) +
                                         1));
    }
    for (size_t i = 0; i < tb_instance_dir_model_count(h->models); i++) {
        const struct tb_idir_model *m = tb_instance_dir_model_at(h->models, i);
        json_t *e = json_object();
        if (e) {
            json_object_set_new(e, "id", json_string(m->name));
            json_object_set_new(e, "instances", json_integer((json_int_t)m->instances));
            json_object_set_new(e, "healthy", json_integer((json_int_t)m->healthy));
            json_array_append_new(models, e);
        }
    }
    for (size_t i = 0; i < tb_instance_dir_count(h->models); i++) {
        struct tb_idir_instance *inst = tb_instance_dir_at(h->models, i);
        json_t *e = json_object();
        char idbuf[24];
        if (!e) {
            continue;
        }
        snprintf(idbuf, sizeof(idbuf), "%016" PRIx64, inst->instance_id);
        json_object_set_new(e, "instance_id", json_string(idbuf));
        json_object_set_new(e, "endpoint", json_string(inst->endpoint));
        json_object_set_new(e, "model", json_string(inst->model));
        json_object_set_new(e, "kind", json_string(inst->kind));
        json_object_set_new(e, "state", json_string(s_state_name(inst->state)));
        json_object_set_new(e, "local", json_boolean(inst->local));
        json_object_set_new(e, "in_flight", json_integer(inst->in_flight));
        json_object_set_new(e, "served", json_integer(inst->served));
        json_array_append_new(insts, e);
    }
    json_object_set_new(o, "components", comps);
    json_object_set_new(o, "routes", routes);
    json_object_set_new(o, "models", models);
    json_object_set_new(o, "instances", insts);
    json_object_set_new(o, "router", h->router_ep[0] ? json_string(h->router_ep) : json_null());
    return s_json(h, conn, 200, o);
}

static enum MHD_Result s_metrics(struct tb_http *h, struct MHD_Connection *conn)
{
    tb_http_gen_update_gauges(h);
    tb_http_metrics_flush(&h->metrics);
    struct tb_buf b = {0};
    if (h->host->metrics_render(h->comp, &b) != 0) {
        h->host->buf_free(&b);
        return s_error(h, conn, 500, "server_error", NULL, "cannot render the metrics");
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(b.len, b.data,
                                                                MHD_RESPMEM_MUST_COPY);
    h->host->buf_free(&b);
    if (!resp) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* Authentication */

/* NULL when authorised, else why not. */
static const char *s_auth(struct tb_http *h, struct MHD_Connection *conn)
{
    if (h->keys.count == 0) {
        return NULL;
    }
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    if (!v) {
        return "missing API key: send the header 'Authorization: Bearer <key>'";
    }
    if (strncasecmp(v, "Bearer ", 7) != 0) {
        return "the Authorization header must be 'Bearer <key>'";
    }
    const char *key = v + 7;
    while (*key == ' ') {
        key++;
    }
    return tb_api_keys_match(&h->keys, key, strlen(key)) ? NULL : "incorrect API key provided";
}

/* ------------------------------------------------------------------------------------------- */
/* The access handler */

static bool s_is(const char *method, const char *m)
{
    return strcmp(method, m) == 0;
}

static enum MHD_Result s_method_not_allowed(struct tb_http *h, struct MHD_Connection *conn,
                                            const char *allow, const char *method,
                                            const char *url)
{
    (void)h;
    struct tb_oai_error e;
    tb_oai_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                     "method %.16s is not allowed on %.200s: use %s", method, url, allow);
    size_t len;
    char *body = tb_oai_error_body(&e, &len);
    struct MHD_Response *resp = body ? MHD_create_response_from_buffer(len, body,
                                                                       MHD_RESPMEM_MUST_FREE)
                                     : NULL;
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Answers a route that needs no body; sets *handled to false for an unknown route. */
static enum MHD_Result s_answer_get(struct tb_http *h, struct MHD_Connection *conn,
                                    const char *url, const char *method, bool *handled)
{
    bool get = s_is(method, MHD_HTTP_METHOD_GET) || s_is(method, MHD_HTTP_METHOD_HEAD);
    *handled = true;
    if (strcmp(url, "/live") == 0) {
        if (!get) {
            return s_method_not_allowed(h, conn, "GET", method, url);
        }
        char *b = strdup("{\"status\":\"live\"}");
        return tb_http_queue_json(h, conn, 200, b, b ? strlen(b) : 0, false, false);
    }
    if (strcmp(url, "/ready") == 0) {
        return get ? s_ready(h, conn) : s_method_not_allowed(h, conn, "GET", method, url);
    }
    if (strcmp(url, "/health") == 0) {
        return get ? s_health(h, conn) : s_method_not_allowed(h, conn, "GET", method, url);
    }
    if (strcmp(url, "/metrics") == 0) {
        return get ? s_metrics(h, conn) : s_method_not_allowed(h, conn, "GET", method, url);
    }
    if (strcmp(url, "/v1/models") == 0) {
        return get ? s_models(h, conn, NULL) : s_method_not_allowed(h, conn, "GET", method, url);
    }
    if (strncmp(url, "/v1/models/", 11) == 0 && url[11]) {
        return get ? s_models(h, conn, url + 11)
                   : s_method_not_allowed(h, conn, "GET", method, url);
    }
    *handled = false;
    return MHD_NO;
}

/* Answers a request that is not a generation, once its body (if any) was read and dropped:
 * answering earlier would make libmicrohttpd close the connection. */
static enum MHD_Result s_answer(struct tb_http *h, struct MHD_Connection *conn, const char *url,
                                const char *method)
{
    bool tokenize = strcmp(url, "/tokenize") == 0 || strcmp(url, "/detokenize") == 0;
    if (strncmp(url, "/v1/", 4) == 0 || tokenize) {
        const char *why = s_auth(h, conn);
        if (why) {
            struct tb_oai_error e;
            tb_oai_error_set(&e, 401, "invalid_request_error", "invalid_api_key", NULL, "%s",
                             why);
            return tb_http_queue_error(h, conn, &e, false, false);
        }
    }
    if (strcmp(url, "/v1/chat/completions") == 0 || strcmp(url, "/v1/completions") == 0 ||
        tokenize) {
        return s_method_not_allowed(h, conn, "POST", method, url);
    }
    bool handled;
    enum MHD_Result rc = s_answer_get(h, conn, url, method, &handled);
    if (handled) {
        return rc;
    }
    return s_error(h, conn, 404, "invalid_request_error", "not_found",
                   "no route for %.16s %.200s", method, url);
}

static enum MHD_Result s_access(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **req_cls)
{
    (void)version;
    struct tb_http *h = cls;
    struct tb_hreq *r = *req_cls;
    if (r) {
        if (r->kind == TB_HR_GENERATE) {
            return tb_http_gen_access(h, r, upload, upload_size);
        }
        if (r->kind == TB_HR_TOKENIZE) {
            return tb_http_tok_access(h, r, upload, upload_size);
        }
        if (*upload_size > 0) {
            *upload_size = 0; /* a body nobody reads: drop it */
            return MHD_YES;
        }
        return s_answer(h, conn, url, method);
    }
    /* The headers arrived.  malloc, not calloc: glibc's calloc bypasses the per-thread cache. */
    r = malloc(sizeof(*r));
    if (!r) {
        return MHD_NO;
    }
    *r = (struct tb_hreq){0};
    r->h = h;
    r->conn = conn;
    r->kind = TB_HR_ANSWERED;
    r->t_start_ns = h->host->now_ns();
    *req_cls = r;
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned)(h->cfg.idle_timeout_s + 0.999));
    LOG_DEBUG(h, "%s %s", method, url);
    bool chat = strcmp(url, "/v1/chat/completions") == 0;
    bool cmpl = strcmp(url, "/v1/completions") == 0;
    if ((chat || cmpl) && s_is(method, MHD_HTTP_METHOD_POST) && !s_auth(h, conn)) {
        r->kind = TB_HR_GENERATE;
        r->api = chat ? TB_OAI_CHAT : TB_OAI_COMPLETIONS;
        return tb_http_gen_begin(h, r);
    }
    bool tok = strcmp(url, "/tokenize") == 0;
    bool detok = strcmp(url, "/detokenize") == 0;
    if ((tok || detok) && s_is(method, MHD_HTTP_METHOD_POST) && !s_auth(h, conn)) {
        r->kind = TB_HR_TOKENIZE;
        r->api = tok ? TB_OAI_TOKENIZE : TB_OAI_DETOKENIZE;
        return tb_http_tok_begin(h, r);
    }
    return MHD_YES; /* answered when the request is complete */
}

static void s_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                        enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct tb_http *h = cls;
    struct tb_hreq *r = *req_cls;
    if (!r) {
        return;
    }
    *req_cls = NULL;
    if (r->kind == TB_HR_GENERATE) {
        tb_http_gen_completed(h, r, toe);
    } else if (r->kind == TB_HR_TOKENIZE) {
        tb_http_tok_completed(h, r);
    }
    tb_buf_free(&r->body);
    free(r);
}

static void s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct tb_http *h = cls;
    if (h->host->log_enabled(h->comp, TB_LOG_DEBUG)) {
        char msg[512];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        size_t n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) {
            msg[--n] = 0;
        }
        h->host->log(h->comp, TB_LOG_DEBUG, "libmicrohttpd: %s", msg);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* The thread */

static int s_bind_addr(struct tb_http *h, struct sockaddr_storage *ss, bool *v6)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%" PRId64, h->cfg.port);
    int rc = getaddrinfo(h->cfg.host, port, &hints, &res);
    if (rc != 0 || !res) {
        h->host->set_error(h->comp, "cannot resolve listen address '%s': %s", h->cfg.host,
                           gai_strerror(rc));
        return TB_EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

static int s_start_mhd(struct tb_http *h)
{
    struct sockaddr_storage ss;
    bool v6 = false;
    int rc = s_bind_addr(h, &ss, &v6);
    if (rc != 0) {
        return rc;
    }
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     MHD_USE_TURBO | (v6 ? MHD_USE_IPv6 : 0);
    if (ss.ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)h->bind_port);
    } else {
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)h->bind_port);
    }
    /* Several loops: the first binds and listens; each other daemon accepts on its own duplicate
     * of that socket (closed by its daemon), whichever loop is free taking a new connection, and
     * a loop at its connection limit leaving it to the others.  One socket rather than
     * SO_REUSEPORT: no other process can bind the port beside ours. */
    MHD_socket fd = MHD_INVALID_SOCKET;
    if (h->index > 0) {
        fd = fcntl(h->sh->listen_fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            h->host->set_error(h->comp, "cannot share the listening socket: %s", strerror(errno));
            return TB_EIO;
        }
    }
    unsigned limit = (unsigned)((h->cfg.max_connections + (int64_t)h->sh->n_loops - 1) /
                                (int64_t)h->sh->n_loops);
    errno = 0;
    h->mhd = MHD_start_daemon(flags, (uint16_t)h->bind_port, NULL, NULL, s_access, h,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)h->cfg.max_header_size,
                              MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)(h->cfg.header_timeout_s + 0.999),
                              MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_NOTIFY_COMPLETED,
                              s_completed, h, MHD_OPTION_NOTIFY_CONNECTION, s_on_connection, h,
                              MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, h,
                              MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_LISTEN_SOCKET, fd,
                              MHD_OPTION_END);
    if (!h->mhd && fd != MHD_INVALID_SOCKET) {
        close(fd);
    }
    if (!h->mhd) {
        h->host->set_error(h->comp, "cannot listen on %s:%u: %s", h->cfg.host, h->bind_port,
                           errno ? strerror(errno) : "libmicrohttpd refused");
        return TB_EIO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : h->bind_port;
    if (h->index == 0) {
        di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_LISTEN_FD);
        h->sh->listen_fd = di ? di->listen_fd : -1;
        if (h->sh->n_loops > 1 && h->sh->listen_fd < 0) {
            h->host->set_error(h->comp, "libmicrohttpd gave no listening socket to share");
            return TB_EIO;
        }
    }
    di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di) {
        h->host->set_error(h->comp, "libmicrohttpd gave no epoll descriptor");
        return TB_EIO;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.ptr = &s_tag_mhd;
    if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, di->epoll_fd, &ev) != 0) {
        h->host->set_error(h->comp, "cannot watch libmicrohttpd: %s", strerror(errno));
        return TB_EIO;
    }
    return 0;
}

static int s_init(struct tb_http *h)
{
    const struct tb_host *host = h->host;
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (h->epfd < 0) {
        host->set_error(h->comp, "cannot create an epoll instance: %s", strerror(errno));
        return TB_EIO;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.ptr = &s_tag_wake;
    epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->wake_fd, &ev);
    h->bus = host->bus_new(h->comp);
    if (!h->bus) {
        host->set_error(h->comp, "cannot create a bus handle (see the log)");
        return TB_EIO;
    }
    ev.data.ptr = &s_tag_bus;
    if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, host->bus_fd(h->bus), &ev) != 0) {
        host->set_error(h->comp, "cannot watch the bus: %s", strerror(errno));
        return TB_EIO;
    }
    int rc = host->bus_routes_watch(h->bus, s_on_route, h);
    if (rc != 0) {
        host->set_error(h->comp, "cannot follow routes: %s", host->strerror(rc));
        return rc;
    }
    rc = s_start_mhd(h);
    if (rc != 0) {
        return rc;
    }
    if (h->index == 0) {
        LOG_INFO(h,
                 "http listening on %s%s%s:%u (OpenAI API under /v1, health on /live /ready "
                 "/health, metrics on /metrics%s; %zu thread%s)",
                 strchr(h->cfg.host, ':') ? "[" : "", h->cfg.host,
                 strchr(h->cfg.host, ':') ? "]" : "", h->port,
                 h->keys.count ? ", API keys required" : "", h->sh->n_loops,
                 h->sh->n_loops == 1 ? "" : "s");
    }
    return 0;
}

static void s_fini(struct tb_http *h)
{
    const struct tb_host *host = h->host;
    if (h->mhd) {
        tb_http_gen_abort_all(h);
        MHD_run(h->mhd);
        MHD_stop_daemon(h->mhd);
        h->mhd = NULL;
    }
    for (size_t i = 0; h->models && i < tb_instance_dir_count(h->models); i++) {
        s_probe_cancel(h, tb_instance_dir_at(h->models, i));
    }
    host->bus_destroy(&h->bus);
    tb_http_metrics_release(&h->metrics);
    if (h->epfd >= 0) {
        close(h->epfd);
        h->epfd = -1;
    }
}

/* Runs the bus: when its descriptor fired, when this thread used it outside bus_run (a send can
 * consume the wake-up signal of a reply that arrived meanwhile, so the sockets must be looked at
 * again), and every BUS_TICK_MS for deadlines.  Repeats while callbacks used the bus or a
 * dispatch budget may have been hit. */
static void s_bus_pump(struct tb_http *h, bool fd_ready, int64_t now)
{
    if (!fd_ready && !h->bus_dirty && now < h->next_bus_tick_ns) {
        return;
    }
    h->next_bus_tick_ns = now + (int64_t)BUS_TICK_MS * 1000000;
    for (int i = 0; i < 16; i++) {
        h->bus_dirty = false;
        int n = h->host->bus_run(h->bus, 0);
        if (!h->bus_dirty && n < 128) {
            break;
        }
    }
}

/* Waits for events; polls until spin_ns after the last turn that had work before sleeping
 * (tb_spin.h, as the bus handles do; see docs/bus.md).  An idle thread never spins. */
static int s_wait(struct tb_http *h, struct epoll_event *evs, int timeout)
{
    const int64_t until = h->spin_ns > 0 ? h->last_activity_ns + h->spin_ns : 0;
    int n = tb_epoll_wait_spin(h->epfd, evs, 64, timeout, until);
    if (n > 0 && h->spin_ns > 0) {
        h->last_activity_ns = h->host->now_ns();
    }
    return n;
}

static void s_loop(struct tb_http *h)
{
    const struct tb_host *host = h->host;
    struct epoll_event evs[64];
    while (!atomic_load(&h->stop)) {
        int64_t now = host->now_ns();
        int timeout = 200;
        MHD_UNSIGNED_LONG_LONG mt;
        bool mhd_due = false;
        if (MHD_get_timeout(h->mhd, &mt) == MHD_YES && mt < (MHD_UNSIGNED_LONG_LONG)timeout) {
            timeout = (int)mt;
            mhd_due = mt == 0;
        }
        if (h->n_gens > 0 && timeout > BUS_TICK_MS) {
            timeout = BUS_TICK_MS;
        }
        int64_t probe = s_next_probe(h);
        if (probe != INT64_MAX) {
            int64_t ms = probe <= now ? 0 : (probe - now + 999999) / 1000000;
            if (ms < timeout) {
                timeout = (int)ms;
            }
        }
        int n = s_wait(h, evs, timeout);
        if (n < 0 && errno != EINTR) {
            LOG_ERROR(h, "epoll_wait failed: %s", strerror(errno));
            break;
        }
        bool mhd_ready = mhd_due || n == 0;
        bool bus_ready = false;
        /* Client sockets first: their requests are alive until MHD or the bus runs. */
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &s_tag_wake) {
                uint64_t v;
                if (read(h->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
                    LOG_WARN(h, "wakeup read failed: %s", strerror(errno));
                }
            } else if (tag == &s_tag_mhd) {
                mhd_ready = true;
            } else if (tag == &s_tag_bus) {
                bus_ready = true;
            } else {
                struct tb_hconn *hc = tag;
                hc->rdhup = true;
                if (hc->req) {
                    tb_http_req_client_gone(h, hc->req);
                }
            }
        }
        if (mhd_ready || h->resumed) {
            h->resumed = false;
            MHD_run(h->mhd);
        }
        now = host->now_ns();
        s_bus_pump(h, bus_ready, now);
        for (int k = 0; k < 4 && h->resumed; k++) {
            h->resumed = false;
            MHD_run(h->mhd);
            s_bus_pump(h, false, now);
        }
        s_probe_due(h, now);
        if (now >= h->next_flush_ns) {
            if (h->sh->n_loops > 1) {
                tb_http_gen_update_gauges(h); /* the other loops' share of the gauges */
            }
            tb_http_metrics_flush(&h->metrics);
            h->next_flush_ns = now + 1000000000;
        }
    }
}

static void *s_main(void *arg)
{
    struct tb_http *h = arg;
    int rc = s_init(h);
    pthread_mutex_lock(&h->lock);
    h->start_rc = rc;
    h->ready = true;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->lock);
    if (rc == 0) {
        s_loop(h);
    }
    s_fini(h);
    return NULL;
}

/* ------------------------------------------------------------------------------------------- */
/* Lifecycle */

static uint64_t s_fnv(const char *s, uint64_t h)
{
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    }
    return h;
}

int tb_http_loop_new(const struct tb_host *host, tb_component_t *comp,
                     const struct tb_http_config *cfg, struct tb_http_shared *sh, size_t index,
                     struct tb_http **out)
{
    *out = NULL;
    struct tb_http *h = calloc(1, sizeof(*h));
    if (!h) {
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    h->host = host;
    h->comp = comp;
    h->cfg = *cfg;
    h->sh = sh;
    h->index = index;
    h->epfd = -1;
    h->wake_fd = -1;
    h->spin_ns = (int64_t)(cfg->spin_s * 1e9 + 0.5);
    atomic_init(&h->stop, false);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    snprintf(h->ns, sizeof(h->ns), "%s", host->namespace_name(comp));
    if (cfg->router && *cfg->router) {
        snprintf(h->router_ep, sizeof(h->router_ep), "%s.%s.route", h->ns, cfg->router);
    }
    if (cfg->system_fingerprint && *cfg->system_fingerprint) {
        snprintf(h->fingerprint, sizeof(h->fingerprint), "%s", cfg->system_fingerprint);
    } else {
        uint64_t f = s_fnv("turbine-http-0.1.0", 0xcbf29ce484222325ULL);
        snprintf(h->fingerprint, sizeof(h->fingerprint), "fp_%010" PRIx64,
                 (uint64_t)(f & 0xffffffffffULL));
    }
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        seed = (uint64_t)host->now_ns() ^ ((uint64_t)getpid() << 32);
    }
    h->id_seed = seed;
    int rc = 0;
    h->models = tb_instance_dir_new("text");
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!h->models || h->wake_fd < 0) {
        host->set_error(comp, "out of memory");
        rc = TB_ENOMEM;
        goto fail;
    }
    rc = tb_http_metrics_init(&h->metrics, host, comp, cfg->metrics_prefix);
    if (rc != 0) {
        goto fail;
    }
    tb_route_fallback_init(&h->fallback, host, comp);
    char err[512];
    rc = tb_api_keys_load(&h->keys, &cfg->api_keys, cfg->api_keys_file, err, sizeof(err));
    if (rc != 0) {
        host->set_error(comp, err);
        goto fail;
    }
    *out = h;
    return 0;
fail:
    tb_http_loop_destroy(&h);
    return rc;
}

/* The thread is started here rather than with tb_actor_start (tb_actor.h): an actor's loop
 * waits in bus_run, on the bus alone, while this one waits in one epoll set over libmicrohttpd's
 * listening socket, the client sockets (peer hang-ups), the wakeup eventfd and the bus's fd,
 * with its own timeouts (MHD's, the bus tick, instance probes) and the optional spin.  Fitting
 * it into an actor would mean blocking inside step and calling bus_run with no wait, which hides
 * the loop's real shape; the handshake below is the same as the actor's. */
int tb_http_loop_start(struct tb_http *h, unsigned port)
{
    h->bind_port = port;
    h->started_ns = h->host->now_ns();
    if (pthread_create(&h->thread, NULL, s_main, h) != 0) {
        h->host->set_error(h->comp, "cannot start a thread");
        return TB_EIO;
    }
    h->thread_started = true;
    pthread_mutex_lock(&h->lock);
    while (!h->ready) {
        pthread_cond_wait(&h->cond, &h->lock);
    }
    int rc = h->start_rc;
    pthread_mutex_unlock(&h->lock);
    if (rc != 0) {
        pthread_join(h->thread, NULL);
        h->thread_started = false;
    }
    return rc;
}

unsigned tb_http_loop_port(const struct tb_http *h)
{
    return h->port;
}

void tb_http_loop_wake(struct tb_http *h)
{
    uint64_t one = 1;
    if (write(h->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        LOG_WARN(h, "wakeup write failed: %s", strerror(errno));
    }
}

void tb_http_loop_stop(struct tb_http *h)
{
    if (!h->thread_started) {
        return;
    }
    atomic_store(&h->stop, true);
    tb_http_loop_wake(h);
    pthread_join(h->thread, NULL);
    h->thread_started = false;
}

void tb_http_loop_destroy(struct tb_http **h_p)
{
    if (!h_p || !*h_p) {
        return;
    }
    struct tb_http *h = *h_p;
    tb_http_loop_stop(h);
    tb_api_keys_release(&h->keys);
    tb_instance_dir_destroy(&h->models);
    for (size_t i = 0; i < h->n_metric_models; i++) {
        free(h->metric_models[i]);
    }
    free(h->metric_models);
    if (h->wake_fd >= 0) {
        close(h->wake_fd);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h);
    *h_p = NULL;
}
