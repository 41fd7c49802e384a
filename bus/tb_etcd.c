/*
 * tb_etcd.c - etcd v3 through its JSON gateway: see tb_etcd.h.
 */
#include "tb_etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tb_buf.h"
#include "tb_errors.h"

#define B64 sodium_base64_VARIANT_ORIGINAL

struct tb_etcd {
    char **endpoints;
    size_t n_endpoints;
    size_t current;
    int timeout_ms;
    CURL *curl;
};

static pthread_once_t s_init_once = PTHREAD_ONCE_INIT;
static int s_init_rc;

static void s_global_init(void)
{
    /* Both are process-wide and idempotent; curl's must happen before any handle exists. */
    s_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK && sodium_init() >= 0 ? 0 : -1;
}

int tb_etcd_new(const struct tb_etcd_config *cfg, tb_etcd_t **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!cfg || cfg->n_endpoints == 0 || cfg->timeout_ms <= 0)
        return tb_err_fail(err, err_len, TB_EINVAL, "etcd: no endpoints or no timeout given");
    pthread_once(&s_init_once, s_global_init);
    if (s_init_rc != 0)
        return tb_err_fail(err, err_len, TB_EIO, "etcd: libcurl or libsodium failed to start");
    tb_etcd_t *e = calloc(1, sizeof(*e));
    if (!e)
        return tb_err_fail(err, err_len, TB_ENOMEM, "etcd: out of memory");
    e->endpoints = calloc(cfg->n_endpoints, sizeof(char *));
    e->curl = curl_easy_init();
    if (!e->endpoints || !e->curl)
        goto oom;
    e->n_endpoints = cfg->n_endpoints;
    e->timeout_ms = cfg->timeout_ms;
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        const char *ep = cfg->endpoints[i];
        size_t n = strlen(ep);
        while (n > 0 && ep[n - 1] == '/')
            n--; /* "http://h:2379/" and "http://h:2379" name the same endpoint */
        e->endpoints[i] = strndup(ep, n);
        if (!e->endpoints[i])
            goto oom;
    }
    *out = e;
    return 0;
oom:
    tb_etcd_destroy(&e);
    return tb_err_fail(err, err_len, TB_ENOMEM, "etcd: out of memory");
}

void tb_etcd_destroy(tb_etcd_t **e_p)
{
    if (!e_p || !*e_p)
        return;
    tb_etcd_t *e = *e_p;
    for (size_t i = 0; e->endpoints && i < e->n_endpoints; i++)
        free(e->endpoints[i]);
    free(e->endpoints);
    if (e->curl)
        curl_easy_cleanup(e->curl);
    free(e);
    *e_p = NULL;
}

const char *tb_etcd_endpoint(const tb_etcd_t *e)
{
    return e->endpoints[e->current];
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* Caller frees the result; NULL on out of memory. */
static char *s_b64(const void *data, size_t len)
{
    size_t n = sodium_base64_ENCODED_LEN(len, B64);
    char *s = malloc(n);
    if (s)
        sodium_bin2base64(s, n, data, len, B64);
    return s;
}

/* Decodes `s` into a new buffer with a NUL after its *len bytes.  Caller frees; NULL when `s` is
 * not base64 or on out of memory. */
static uint8_t *s_unb64(const char *s, size_t *len)
{
    size_t n = strlen(s);
    uint8_t *out = malloc(n / 4 * 3 + 4);
    if (!out)
        return NULL;
    if (sodium_base642bin(out, n / 4 * 3 + 3, s, n, NULL, len, NULL, B64) != 0) {
        free(out);
        return NULL;
    }
    out[*len] = 0;
    return out;
}

/* The gateway writes 64-bit integers as JSON strings ("revision": "12"); accepts both forms. */
static int64_t s_int(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

/* The smallest key greater than every key that starts with `prefix` (etcd's range_end for a
 * prefix): the prefix with its last byte below 0xff incremented and what follows dropped.
 * Caller frees the base64 result. */
static char *s_prefix_end_b64(const char *prefix)
{
    size_t n = strlen(prefix);
    uint8_t *end = malloc(n + 1);
    if (!end)
        return NULL;
    memcpy(end, prefix, n);
    while (n > 0 && end[n - 1] == 0xff)
        n--;
    char *b64;
    if (n == 0) {
        uint8_t zero = 0; /* every key: etcd reads "\0" as "to the end" */
        b64 = s_b64(&zero, 1);
    } else {
        end[n - 1]++;
        b64 = s_b64(end, n);
    }
    free(end);
    return b64;
}

/* Adds "key" (and "range_end" for a prefix) to `obj`; 0 or TB_ENOMEM. */
static int s_set_key(json_t *obj, const char *key, int prefix)
{
    char *k = s_b64(key, strlen(key));
    char *end = prefix ? s_prefix_end_b64(key) : NULL;
    int rc = TB_ENOMEM;
    if (k && (!prefix || end) && json_object_set_new(obj, "key", json_string(k)) == 0 &&
        (!prefix || json_object_set_new(obj, "range_end", json_string(end)) == 0))
        rc = 0;
    free(k);
    free(end);
    return rc;
}

/* Reads one kv object of the gateway into `kv`; *owned receives the decoded buffers the caller
 * frees (key then value).  0 or TB_EPROTO. */
static int s_read_kv(const json_t *o, struct tb_etcd_kv *kv, uint8_t *owned[2])
{
    owned[0] = owned[1] = NULL;
    const char *k = json_string_value(json_object_get(o, "key"));
    const char *v = json_string_value(json_object_get(o, "value"));
    size_t klen = 0, vlen = 0;
    if (!k || !(owned[0] = s_unb64(k, &klen)))
        return TB_EPROTO;
    if (v && !(owned[1] = s_unb64(v, &vlen))) {
        free(owned[0]);
        owned[0] = NULL;
        return TB_EPROTO;
    }
    kv->key = (const char *)owned[0];
    kv->value = owned[1] ? owned[1] : (const uint8_t *)"";
    kv->value_len = vlen;
    kv->mod_revision = s_int(o, "mod_revision");
    kv->lease = s_int(o, "lease");
    return 0;
}

/* ---- transport ----------------------------------------------------------------------------- */

struct s_sink {
    struct tb_buf body;
    size_t limit;
    /* Streaming (watch): called with the bytes gathered so far; returns how many it consumed,
     * or SIZE_MAX to abort the transfer. */
    size_t (*consume)(void *ud, const char *data, size_t len);
    void *ud;
    const atomic_int *stop;
    int aborted;
    int streamed; /* a streaming answer began: the stream is not retried on another endpoint */
};

static size_t s_on_data(char *data, size_t size, size_t nmemb, void *ud)
{
    struct s_sink *s = ud;
    size_t n = size * nmemb;
    if (s->body.len + n > s->limit || tb_buf_append(&s->body, data, n) != 0)
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    if (s->consume) {
        s->streamed = 1;
        size_t used = s->consume(s->ud, (const char *)s->body.data, s->body.len);
        if (used == SIZE_MAX) {
            s->aborted = 1;
            return 0;
        }
        memmove(s->body.data, s->body.data + used, s->body.len - used);
        s->body.len -= used;
    }
    return n;
}

/* Sockets that notice a dead peer in seconds, not the kernel's two hours: a watch stream to a
 * member cut off by a partition must break (and resume elsewhere) well within a lease TTL. */
static int s_on_socket(void *ud, curl_socket_t fd, curlsocktype purpose)
{
    const tb_etcd_t *e = ud;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKOPT_OK;
    int one = 1, idle = 1, intvl = 1, cnt = 2;
    unsigned user_timeout = (unsigned)e->timeout_ms;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
    return CURL_SOCKOPT_OK;
}

static int s_on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    const struct s_sink *s = ud;
    return s->stop && atomic_load(s->stop) ? 1 : 0;
}

/* One POST of `body` to `path` on endpoint `i`.  *status receives the HTTP status (0 when no
 * answer).  Returns the curl result. */
static CURLcode s_post_once(tb_etcd_t *e, size_t i, const char *path, const char *body,
                            struct s_sink *sink, long total_timeout_ms, long *status)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", e->endpoints[i], path);
    CURL *c = e->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, total_timeout_ms);
    curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, s_on_socket);
    curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, e);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, s_on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, sink);
    *status = 0;
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    return rc;
}

/* Says why a 4xx answer was refused, from the gateway's {"error"/"message": ...}. */
static int s_refused(const struct tb_buf *body, long status, const char *path, char *err,
                     size_t err_len)
{
    json_t *j = json_loadb((const char *)body->data, body->len, 0, NULL);
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (!msg)
        msg = json_string_value(json_object_get(j, "error"));
    int code = msg && strstr(msg, "lease not found") ? TB_ENOENT : TB_EPROTO;
    tb_err_set(err, err_len, "etcd %s: HTTP %ld: %s", path, status, msg ? msg : "(no message)");
    json_decref(j);
    return code;
}

/* POSTs `req` (consumed) to `path`, trying each endpoint once from the current one, and parses
 * the answer into *reply (caller decrefs).  With a streaming sink the answer is consumed by it
 * and *reply stays NULL. */
static int s_call(tb_etcd_t *e, const char *path, json_t *req, struct s_sink *sink,
                  long total_timeout_ms, json_t **reply, char *err, size_t err_len)
{
    *reply = NULL;
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!body)
        return tb_err_fail(err, err_len, TB_ENOMEM, "etcd: out of memory");
    int rc = TB_EIO;
    char last[256] = "no endpoint tried";
    for (size_t t = 0; t < e->n_endpoints; t++) {
        size_t i = (e->current + t) % e->n_endpoints;
        sink->body.len = 0;
        long status;
        CURLcode cc = s_post_once(e, i, path, body, sink, total_timeout_ms, &status);
        if (sink->aborted || (cc == CURLE_ABORTED_BY_CALLBACK && sink->stop)) {
            e->current = i;
            rc = 0; /* stopped by the consumer or the stop flag: not a failure */
            goto done;
        }
        if (cc == CURLE_OK && status >= 200 && status < 300) {
            e->current = i;
            rc = 0;
            if (!sink->consume) {
                *reply = json_loadb((const char *)sink->body.data, sink->body.len, 0, NULL);
                if (!*reply)
                    rc = tb_err_fail(err, err_len, TB_EPROTO, "etcd %s at %s: answer is not JSON",
                                     path, e->endpoints[i]);
            } else {
                rc = tb_err_fail(err, err_len, TB_EIO, "etcd %s at %s: stream ended", path,
                                 e->endpoints[i]);
            }
            goto done;
        }
        if (sink->streamed) {
            e->current = i; /* the caller resumes after the last event it was given */
            rc = tb_err_fail(err, err_len, TB_EIO, "etcd %s at %s: stream broken: %s", path,
                             e->endpoints[i], curl_easy_strerror(cc));
            goto done;
        }
        if (cc == CURLE_OK && status >= 400 && status < 500) {
            e->current = i;
            rc = s_refused(&sink->body, status, path, err, err_len);
            goto done;
        }
        if (cc == CURLE_OK)
            snprintf(last, sizeof(last), "%s: HTTP %ld", e->endpoints[i], status);
        else
            snprintf(last, sizeof(last), "%s: %s", e->endpoints[i], curl_easy_strerror(cc));
    }
    tb_err_set(err, err_len, "etcd %s: no endpoint answered (last: %s)", path, last);
done:
    free(body);
    return rc;
}

static int s_unary(tb_etcd_t *e, const char *path, json_t *req, json_t **reply, char *err,
                   size_t err_len)
{
    if (!req)
        return tb_err_fail(err, err_len, TB_ENOMEM, "etcd: out of memory");
    struct s_sink sink = {.limit = 64u << 20};
    tb_buf_init(&sink.body);
    int rc = s_call(e, path, req, &sink, e->timeout_ms, reply, err, err_len);
    tb_buf_free(&sink.body);
    return rc;
}

/* ---- leases -------------------------------------------------------------------------------- */

int tb_etcd_lease_grant(tb_etcd_t *e, int ttl_s, int64_t *id, int *granted_ttl_s, char *err,
                        size_t err_len)
{
    json_t *reply;
    int rc = s_unary(e, "/v3/lease/grant", json_pack("{s:I}", "TTL", (json_int_t)ttl_s), &reply,
                     err, err_len);
    if (rc != 0)
        return rc;
    *id = s_int(reply, "ID");
    *granted_ttl_s = (int)s_int(reply, "TTL");
    const char *error = json_string_value(json_object_get(reply, "error"));
    if (*id == 0 || error)
        rc = tb_err_fail(err, err_len, TB_EPROTO, "etcd lease grant refused: %s",
                         error ? error : "no lease id in the answer");
    json_decref(reply);
    return rc;
}

int tb_etcd_lease_keepalive(tb_etcd_t *e, int64_t id, int *ttl_left_s, char *err, size_t err_len)
{
    /* The gateway streams keep-alives; one request with one answer renews the lease once. */
    json_t *reply;
    int rc = s_unary(e, "/v3/lease/keepalive", json_pack("{s:I}", "ID", (json_int_t)id), &reply,
                     err, err_len);
    if (rc != 0)
        return rc;
    const json_t *result = json_object_get(reply, "result");
    int64_t ttl = s_int(result ? result : reply, "TTL");
    *ttl_left_s = (int)ttl;
    if (ttl <= 0)
        rc = tb_err_fail(err, err_len, TB_ENOENT, "etcd lease %" PRIx64 " has expired",
                         (uint64_t)id);
    json_decref(reply);
    return rc;
}

int tb_etcd_lease_revoke(tb_etcd_t *e, int64_t id, char *err, size_t err_len)
{
    json_t *reply;
    int rc = s_unary(e, "/v3/lease/revoke", json_pack("{s:I}", "ID", (json_int_t)id), &reply, err,
                     err_len);
    json_decref(reply);
    return rc;
}

/* ---- keys ---------------------------------------------------------------------------------- */

/* {"key", "value", "lease"} of a put request; NULL on out of memory. */
static json_t *s_put_request(const char *key, const void *value, size_t value_len, int64_t lease)
{
    json_t *put = json_object();
    char *v = s_b64(value, value_len);
    if (!put || !v || s_set_key(put, key, 0) != 0 ||
        json_object_set_new(put, "value", json_string(v)) != 0 ||
        (lease && json_object_set_new(put, "lease", json_integer(lease)) != 0)) {
        json_decref(put);
        put = NULL;
    }
    free(v);
    return put;
}

int tb_etcd_put(tb_etcd_t *e, const char *key, const void *value, size_t value_len, int64_t lease,
                int if_absent, int *created, char *err, size_t err_len)
{
    json_t *put = s_put_request(key, value, value_len, lease);
    if (!put)
        return tb_err_fail(err, err_len, TB_ENOMEM, "etcd: out of memory");
    json_t *reply;
    int rc;
    if (!if_absent) {
        rc = s_unary(e, "/v3/kv/put", put, &reply, err, err_len);
        if (rc == 0 && created)
            *created = 1;
        json_decref(reply);
        return rc;
    }
    /* A transaction: if the key's create revision is 0 (it does not exist), put it. */
    json_t *cmp = json_object();
    if (cmp && (s_set_key(cmp, key, 0) != 0 ||
                json_object_set_new(cmp, "target", json_string("CREATE")) != 0 ||
                json_object_set_new(cmp, "result", json_string("EQUAL")) != 0 ||
                json_object_set_new(cmp, "create_revision", json_integer(0)) != 0)) {
        json_decref(cmp);
        cmp = NULL;
    }
    json_t *txn = cmp ? json_pack("{s:[o],s:[{s:o}]}", "compare", cmp, "success", "request_put",
                                  put)
                      : NULL;
    if (!txn)
        json_decref(put);
    rc = s_unary(e, "/v3/kv/txn", txn, &reply, err, err_len);
    if (rc == 0 && created)
        *created = json_is_true(json_object_get(reply, "succeeded"));
    json_decref(reply);
    return rc;
}

int tb_etcd_delete(tb_etcd_t *e, const char *key, char *err, size_t err_len)
{
    json_t *req = json_object();
    if (req && s_set_key(req, key, 0) != 0) {
        json_decref(req);
        req = NULL;
    }
    json_t *reply;
    int rc = s_unary(e, "/v3/kv/deleterange", req, &reply, err, err_len);
    json_decref(reply);
    return rc;
}

int tb_etcd_list(tb_etcd_t *e, const char *prefix, tb_etcd_kv_fn fn, void *ud, int64_t *revision,
                 char *err, size_t err_len)
{
    json_t *req = json_object();
    if (req && s_set_key(req, prefix, 1) != 0) {
        json_decref(req);
        req = NULL;
    }
    json_t *reply;
    int rc = s_unary(e, "/v3/kv/range", req, &reply, err, err_len);
    if (rc != 0)
        return rc;
    if (revision)
        *revision = s_int(json_object_get(reply, "header"), "revision");
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(reply, "kvs"), i, o)
    {
        struct tb_etcd_kv kv;
        uint8_t *owned[2];
        if (s_read_kv(o, &kv, owned) != 0) {
            rc = tb_err_fail(err, err_len, TB_EPROTO, "etcd range: a key is not base64");
            break;
        }
        rc = fn(ud, &kv);
        free(owned[0]);
        free(owned[1]);
        if (rc != 0)
            break;
    }
    json_decref(reply);
    return rc;
}

/* ---- watch --------------------------------------------------------------------------------- */

struct s_watch {
    tb_etcd_event_fn fn;
    void *ud;
    int64_t *last_revision;
    int rc; /* why the stream was aborted: the callback's value, or an error */
    char *err;
    size_t err_len;
};

/* Delivers the events of one streamed answer; 0 to go on. */
static int s_watch_result(struct s_watch *w, const json_t *msg)
{
    const json_t *result = json_object_get(msg, "result");
    if (!result) {
        const json_t *error = json_object_get(msg, "error");
        const char *m = json_string_value(json_object_get(error, "message"));
        return tb_err_fail(w->err, w->err_len, TB_EPROTO, "etcd watch: %s",
                           m ? m : "an answer without a result");
    }
    if (s_int(result, "compact_revision") > 0)
        return tb_err_fail(w->err, w->err_len, TB_ERANGE,
                           "etcd watch: revisions up to %" PRId64 " were compacted: list again",
                           s_int(result, "compact_revision"));
    if (json_is_true(json_object_get(result, "canceled")))
        return tb_err_fail(w->err, w->err_len, TB_EIO, "etcd watch: canceled by the server");
    size_t i;
    const json_t *ev;
    json_array_foreach(json_object_get(result, "events"), i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        struct tb_etcd_kv kv;
        uint8_t *owned[2];
        if (s_read_kv(json_object_get(ev, "kv"), &kv, owned) != 0)
            return tb_err_fail(w->err, w->err_len, TB_EPROTO, "etcd watch: a key is not base64");
        int rc = w->fn(w->ud,
                       type && strcmp(type, "DELETE") == 0 ? TB_ETCD_EVENT_DELETE
                                                           : TB_ETCD_EVENT_PUT,
                       &kv);
        if (kv.mod_revision > *w->last_revision)
            *w->last_revision = kv.mod_revision;
        free(owned[0]);
        free(owned[1]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The gateway streams one JSON object per answer, each followed by a newline. */
static size_t s_watch_consume(void *ud, const char *data, size_t len)
{
    struct s_watch *w = ud;
    size_t used = 0;
    for (;;) {
        const char *nl = memchr(data + used, '\n', len - used);
        if (!nl)
            return used;
        size_t n = (size_t)(nl - (data + used));
        json_t *msg = n ? json_loadb(data + used, n, 0, NULL) : NULL;
        used += n + 1;
        if (n == 0)
            continue;
        int rc = msg ? s_watch_result(w, msg)
                     : tb_err_fail(w->err, w->err_len, TB_EPROTO, "etcd watch: not JSON");
        json_decref(msg);
        if (rc != 0) {
            w->rc = rc;
            return SIZE_MAX;
        }
    }
}

int tb_etcd_watch(tb_etcd_t *e, const char *prefix, int64_t start_revision, tb_etcd_event_fn fn,
                  void *ud, const atomic_int *stop, int64_t *last_revision, char *err,
                  size_t err_len)
{
    json_t *create = json_object();
    if (create && (s_set_key(create, prefix, 1) != 0 ||
                   (start_revision > 0 && json_object_set_new(create, "start_revision",
                                                              json_integer(start_revision))))) {
        json_decref(create);
        create = NULL;
    }
    json_t *req = create ? json_pack("{s:o}", "create_request", create) : NULL;
    if (!req)
        return tb_err_fail(err, err_len, TB_ENOMEM, "etcd: out of memory");
    struct s_watch w = {
        .fn = fn, .ud = ud, .last_revision = last_revision, .err = err, .err_len = err_len};
    struct s_sink sink = {.limit = 64u << 20, .consume = s_watch_consume, .ud = &w, .stop = stop};
    tb_buf_init(&sink.body);
    json_t *reply;
    int rc = s_call(e, "/v3/watch", req, &sink, 0, &reply, err, err_len);
    if (sink.aborted)
        rc = w.rc;
    tb_buf_free(&sink.body);
    return rc;
}
