/* A plugin built against the frozen SDK of ABI 1.1 / message schema 1.0 (tests/plugins/sdk-v1):
 * it serves <ns>.<component>.generate as a text engine and relays each gen_request to the endpoint
 * `target`, passing the gen_chunks back.  Every message goes through the host's codec in the
 * frozen layouts, from heap blocks of exactly the frozen struct sizes (so an ASan build catches a
 * host that reads past them): the host must skip the fields added since (token_logprob.bytes) and
 * stride the arrays of nested structs as this plugin declared them. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_plugin.h"

#if TB_ABI_MINOR != 1
#error "relay_v1 must be built against tests/plugins/sdk-v1 (ABI 1.1) only"
#endif

struct relay_config {
    const char *served_model_name;
    const char *target;
};

struct relay {
    const struct tb_host *host;
    tb_component_t *comp;
    const struct relay_config *cfg;
    tb_bus_t *bus;
    pthread_t thread;
    atomic_bool stop;
    atomic_int ready; /* 0 starting, 1 serving, -1 failed */
    uint64_t chunks;  /* relayed */
    uint64_t dropped; /* bytes of upstream chunks the frozen layout has no field for */
};

/* One relayed request: the caller's request and the upstream call. */
struct hop {
    struct relay *r;
    tb_request_t *req;
    tb_call_t *call;
};

/* Re-encodes `c` from exact-size heap copies of the chunk and its logprob entries. */
static int s_encode_chunk(const struct tb_host *h, const struct tb_msg_gen_chunk *c,
                          struct tb_buf *out)
{
    struct tb_msg_gen_chunk *copy = malloc(sizeof(*copy));
    struct tb_msg_token_logprob *lps = NULL;
    int rc = TB_ENOMEM;
    if (!copy) {
        return rc;
    }
    *copy = *c;
    if (c->logprobs_count) {
        lps = malloc(c->logprobs_count * sizeof(*lps));
        if (!lps) {
            goto out;
        }
        memcpy(lps, c->logprobs, c->logprobs_count * sizeof(*lps));
        copy->logprobs = lps;
    }
    rc = h->msg_encode(TB_MSG_GEN_CHUNK, copy, out);
out:
    free(lps);
    free(copy);
    return rc;
}

static void on_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    struct hop *hop = user;
    const struct tb_host *h = hop->r->host;
    (void)call;
    if (ch->kind == TB_CHUNK_ERROR) {
        h->bus_reply_error(hop->req, ch->code, "%s",
                           ch->message ? ch->message : "upstream error");
        free(hop);
        return;
    }
    bool final = ch->kind == TB_CHUNK_FINAL;
    void *msg = NULL;
    char err[256] = "cannot re-encode it";
    struct tb_buf buf = {0};
    int rc = h->msg_decode(TB_MSG_GEN_CHUNK, ch->data, ch->len, &msg, err, sizeof(err));
    if (rc == 0) {
        rc = s_encode_chunk(h, msg, &buf);
    }
    if (rc != 0) {
        if (!final) {
            h->bus_call_cancel(hop->call);
        }
        h->bus_reply_error(hop->req, TB_EPROTO, "relay_v1 cannot read a chunk: %s", err);
        free(hop);
    } else {
        /* Encoding is canonical: what the re-encoded chunk lacks is the keys the host skipped. */
        hop->r->chunks++;
        hop->r->dropped += ch->len > buf.len ? ch->len - buf.len : 0;
        rc = h->bus_reply(hop->req, buf.data, buf.len, final);
        if (final) {
            free(hop);
        } else if (rc == TB_EGONE) {
            h->bus_call_cancel(hop->call);
            h->bus_reply_error(hop->req, TB_ECANCELED, "caller gone");
            free(hop);
        }
    }
    h->msg_free(&msg);
    h->buf_free(&buf);
}

static void on_request(tb_request_t *req, const void *payload, size_t len, void *user)
{
    struct relay *r = user;
    const struct tb_host *h = r->host;
    void *msg = NULL;
    char err[256];
    if (h->msg_decode(TB_MSG_GEN_REQUEST, payload, len, &msg, err, sizeof(err)) != 0) {
        h->bus_reply_error(req, TB_EPROTO, "relay_v1: %s", err);
        return;
    }
    struct tb_msg_gen_request *q = malloc(sizeof(*q));
    struct hop *hop = calloc(1, sizeof(*hop));
    struct tb_buf buf = {0};
    int rc = q && hop ? 0 : TB_ENOMEM;
    if (rc == 0) {
        *q = *(const struct tb_msg_gen_request *)msg;
        rc = h->msg_encode(TB_MSG_GEN_REQUEST, q, &buf);
    }
    if (rc == 0) {
        hop->r = r;
        hop->req = req;
        int64_t left = h->bus_request_deadline_ns(req) - h->now_ns();
        int timeout_ms = left > 0 ? (int)(left / 1000000) + 1 : 0;
        rc = h->bus_call(r->bus, r->cfg->target, 0, buf.data, buf.len, timeout_ms, on_chunk, hop,
                         &hop->call);
    }
    if (rc != 0) {
        h->bus_reply_error(req, rc, "relay_v1 cannot call %s: %s", r->cfg->target,
                           h->strerror(rc));
        free(hop);
    } else {
        h->bus_request_set_user(req, hop);
    }
    free(q);
    h->buf_free(&buf);
    h->msg_free(&msg);
}

static void on_cancel(tb_request_t *req, void *user)
{
    struct relay *r = user;
    struct hop *hop = r->host->bus_request_user(req);
    if (hop) {
        r->host->bus_call_cancel(hop->call);
        free(hop);
    }
    r->host->bus_reply_error(req, TB_ECANCELED, "cancelled");
}

static void *s_run(void *arg)
{
    struct relay *r = arg;
    const struct tb_host *h = r->host;
    struct tb_endpoint_meta meta = {.model = r->cfg->served_model_name, .kind = "text"};
    tb_endpoint_t *ep;
    r->bus = h->bus_new(r->comp);
    if (!r->bus ||
        h->bus_endpoint_add(r->bus, "generate", &meta, on_request, on_cancel, r, &ep)) {
        h->bus_destroy(&r->bus);
        atomic_store(&r->ready, -1);
        return NULL;
    }
    atomic_store(&r->ready, 1);
    while (!atomic_load(&r->stop)) {
        h->bus_run(r->bus, 50);
    }
    h->bus_destroy(&r->bus);
    return NULL;
}

static int s_create(const struct tb_host *host, tb_component_t *comp, const void *config,
                    void **state)
{
    struct relay *r = calloc(1, sizeof(*r));
    if (!r) {
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    r->host = host;
    r->comp = comp;
    r->cfg = config;
    *state = r;
    return 0;
}

static int s_start(void *state)
{
    struct relay *r = state;
    if (pthread_create(&r->thread, NULL, s_run, r) != 0) {
        r->host->set_error(r->comp, "cannot start a thread");
        return TB_EIO;
    }
    while (atomic_load(&r->ready) == 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&r->ready) < 0) {
        pthread_join(r->thread, NULL);
        r->host->set_error(r->comp, "cannot serve the generate endpoint");
        return TB_EIO;
    }
    TB_LOG_INFO(r->host, r->comp, "relay_v1 (ABI %d.%d) relays model '%s' to %s", TB_ABI_MAJOR,
                TB_ABI_MINOR, r->cfg->served_model_name, r->cfg->target);
    return 0;
}

static void s_stop(void *state)
{
    struct relay *r = state;
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    TB_LOG_INFO(r->host, r->comp,
                "relay_v1 relayed %llu chunks; %llu bytes of them were fields newer than schema "
                "1.0, skipped",
                (unsigned long long)r->chunks, (unsigned long long)r->dropped);
}

static void s_destroy(void *state)
{
    free(state);
}

static const struct tb_config_field s_fields[] = {
    {.key = "served_model_name",
     .type = TB_CFG_MODEL_NAME,
     .required = true,
     .offset = offsetof(struct relay_config, served_model_name),
     .help = "model name served"},
    {.key = "target",
     .type = TB_CFG_STRING,
     .required = true,
     .offset = offsetof(struct relay_config, target),
     .help = "endpoint relayed to"},
};

static const struct tb_plugin s_plugin = {
    .struct_size = sizeof(struct tb_plugin),
    .abi_major = TB_ABI_MAJOR,
    .abi_minor = TB_ABI_MINOR,
    .name = "relay_v1",
    .version = "1.0.0",
    .description = "test plugin built against the frozen ABI 1.1 SDK: relays generation",
    .config_fields = s_fields,
    .config_field_count = 2,
    .config_size = sizeof(struct relay_config),
    .create = s_create,
    .start = s_start,
    .stop = s_stop,
    .destroy = s_destroy,
};

TB_EXPORT const struct tb_plugin *tb_plugin_entry(void)
{
    return &s_plugin;
}
