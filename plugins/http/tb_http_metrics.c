/* tb_http_metrics: the frontend's metric families (see tb_http_metrics.h). */
#include "tb_http_metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Latency buckets (seconds) as vLLM and Dynamo use them, so dashboards' quantiles line up. */
static const double s_ttft_buckets[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06,  0.08,
                                        0.1,   0.25,  0.5,  0.75, 1.0,  2.5,   5.0,
                                        7.5,   10.0,  20.0, 40.0, 80.0, 160.0, 640.0};
static const double s_itl_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,  0.015, 0.02,
                                       0.025,  0.03,  0.04,   0.05,  0.075, 0.1,   0.15,
                                       0.2,    0.3,   0.4,    0.5,   0.75,  1.0,   2.5};
static const double s_dur_buckets[] = {0.005, 0.01, 0.025, 0.05,  0.1,   0.25,  0.5,
                                       1.0,   2.5,  5.0,   10.0,  15.0,  20.0,  30.0,
                                       40.0,  50.0, 60.0,  120.0, 240.0, 480.0, 960.0};
static const double s_tok_buckets[] = {1,    8,    16,   32,   64,    128,   256,   512,
                                       1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static tb_metric_t *s_get(const struct tb_host *host, tb_component_t *comp, const char *prefix,
                          const char *suffix, tb_metric_kind_t kind, const char *help,
                          const char *labels, const double *b, size_t nb, bool *ok)
{
    char name[200];
    snprintf(name, sizeof(name), "%s_%s", prefix, suffix);
    tb_metric_t *m = host->metric_get(comp, name, kind, help, labels, b, nb);
    if (!m && *ok) {
        host->set_error(comp, "cannot register metric '%s': check metrics_prefix", name);
        *ok = false;
    }
    return m;
}

int tb_http_metrics_init(struct tb_http_metrics *m, const struct tb_host *host,
                         tb_component_t *comp, const char *prefix)
{
    bool ok = true;
    memset(m, 0, sizeof(*m));
    m->host = host;
    m->requests = s_get(host, comp, prefix, "requests_total", TB_METRIC_COUNTER,
                        "HTTP generation requests finished, by model, endpoint, request type "
                        "(stream or unary), status (success or error) and HTTP status code",
                        "model,endpoint,request_type,status,code", NULL, 0, &ok);
    m->inflight = s_get(host, comp, prefix, "inflight_requests", TB_METRIC_GAUGE,
                        "generation requests accepted and not yet answered completely", "model",
                        NULL, 0, &ok);
    m->queued = s_get(host, comp, prefix, "queued_requests", TB_METRIC_GAUGE,
                      "generation requests waiting for their first token (routing, queue, "
                      "prefill)",
                      "model", NULL, 0, &ok);
    m->ttft = s_get(host, comp, prefix, "time_to_first_token_seconds", TB_METRIC_HISTOGRAM,
                    "time from a request's arrival to its first generated text", "model",
                    s_ttft_buckets, N(s_ttft_buckets), &ok);
    m->itl = s_get(host, comp, prefix, "inter_token_latency_seconds", TB_METRIC_HISTOGRAM,
                   "time between generated tokens (per chunk, divided by the tokens it carries)",
                   "model", s_itl_buckets, N(s_itl_buckets), &ok);
    m->duration = s_get(host, comp, prefix, "request_duration_seconds", TB_METRIC_HISTOGRAM,
                        "time from a generation request's arrival to its last byte", "model",
                        s_dur_buckets, N(s_dur_buckets), &ok);
    m->in_seq = s_get(host, comp, prefix, "input_sequence_tokens", TB_METRIC_HISTOGRAM,
                      "prompt tokens per request", "model", s_tok_buckets, N(s_tok_buckets), &ok);
    m->out_seq = s_get(host, comp, prefix, "output_sequence_tokens", TB_METRIC_HISTOGRAM,
                       "generated tokens per request", "model", s_tok_buckets, N(s_tok_buckets),
                       &ok);
    m->in_tokens = s_get(host, comp, prefix, "input_tokens_total", TB_METRIC_COUNTER,
                         "prompt tokens processed", "model", NULL, 0, &ok);
    m->out_tokens = s_get(host, comp, prefix, "output_tokens_total", TB_METRIC_COUNTER,
                          "tokens generated", "model", NULL, 0, &ok);
    m->disconnects = s_get(host, comp, prefix, "disconnected_clients", TB_METRIC_COUNTER,
                           "clients that closed their connection before their answer was "
                           "complete",
                           "model", NULL, 0, &ok);
    m->cancels = s_get(host, comp, prefix, "cancelled_requests_total", TB_METRIC_COUNTER,
                       "generation requests cancelled upstream, by reason (disconnect, shutdown)",
                       "model,reason", NULL, 0, &ok);
    m->series = TB_HOST_HAS(host, metric_series_set) && host->metric_series &&
                host->metric_series_add;
    return ok ? 0 : TB_EINVAL;
}

const char *tb_http_metrics_label(const char *model, char *out, size_t out_len)
{
    /* once or twice per request: a copy loop, not snprintf */
    size_t i = 0;
    if (out_len == 0) {
        return out;
    }
    for (; model && model[i] && i + 1 < out_len; i++) {
        out[i] = model[i] == ',' ? '_' : model[i];
    }
    out[i] = 0;
    return out;
}

struct tb_http_mm *tb_http_metrics_model(struct tb_http_metrics *m, const char *model)
{
    char label[sizeof(((struct tb_http_mm *)0)->label)];
    tb_http_metrics_label(model, label, sizeof(label));
    for (size_t i = 0; i < m->n_models; i++) {
        if (strcmp(m->models[i]->label, label) == 0) {
            return m->models[i];
        }
    }
    if (m->n_models == m->cap_models) {
        size_t cap = m->cap_models ? m->cap_models * 2 : 4;
        struct tb_http_mm **v = realloc(m->models, cap * sizeof(*v));
        if (!v) {
            return NULL;
        }
        m->models = v;
        m->cap_models = cap;
    }
    struct tb_http_mm *mm = calloc(1, sizeof(*mm));
    if (!mm) {
        return NULL;
    }
    memcpy(mm->label, label, sizeof(label));
    if (m->series) {
        const struct tb_host *h = m->host;
        mm->ttft = h->metric_series(m->ttft, label);
        mm->itl = h->metric_series(m->itl, label);
        mm->duration = h->metric_series(m->duration, label);
        mm->in_seq = h->metric_series(m->in_seq, label);
        mm->out_seq = h->metric_series(m->out_seq, label);
    }
    m->models[m->n_models++] = mm;
    return mm;
}

void tb_http_metrics_request(struct tb_http_metrics *m, struct tb_http_mm *mm,
                             const char *endpoint, const char *type, int status)
{
    (void)m;
    if (!mm) {
        return;
    }
    for (size_t i = 0; i < mm->n_req; i++) {
        struct tb_hm_req_count *c = &mm->req[i];
        if (c->code == status && c->endpoint == endpoint && c->type == type) {
            c->n++;
            return;
        }
    }
    if (mm->n_req == mm->cap_req) {
        size_t cap = mm->cap_req ? mm->cap_req * 2 : 8;
        struct tb_hm_req_count *v = realloc(mm->req, cap * sizeof(*v));
        if (!v) {
            return;
        }
        mm->req = v;
        mm->cap_req = cap;
    }
    mm->req[mm->n_req++] = (struct tb_hm_req_count){endpoint, type, status, 1};
}

void tb_http_metrics_observe(struct tb_http_metrics *m, struct tb_http_mm *mm,
                             tb_metric_t *family, tb_metric_series_t *s, double v)
{
    if (!mm) {
        return;
    }
    if (m->series) {
        m->host->metric_series_add(s, v);
    } else {
        m->host->metric_add(family, mm->label, v);
    }
}

static void s_add(struct tb_http_metrics *m, tb_metric_t *family, const char *labels, double *v)
{
    if (*v != 0) {
        m->host->metric_add(family, labels, *v);
        *v = 0;
    }
}

void tb_http_metrics_flush(struct tb_http_metrics *m)
{
    static const char *const reasons[TB_HM_N_REASONS] = {"disconnect", "shutdown", "error"};
    char v[300];
    for (size_t i = 0; i < m->n_models; i++) {
        struct tb_http_mm *mm = m->models[i];
        for (size_t k = 0; k < mm->n_req; k++) {
            struct tb_hm_req_count *c = &mm->req[k];
            if (c->n != 0) {
                snprintf(v, sizeof(v), "%s,%s,%s,%s,%d", mm->label, c->endpoint, c->type,
                         c->code == 200 ? "success" : "error", c->code);
                s_add(m, m->requests, v, &c->n);
            }
        }
        s_add(m, m->in_tokens, mm->label, &mm->in_tokens);
        s_add(m, m->out_tokens, mm->label, &mm->out_tokens);
        s_add(m, m->disconnects, mm->label, &mm->disconnects);
        for (int k = 0; k < TB_HM_N_REASONS; k++) {
            if (mm->cancels[k] != 0) {
                snprintf(v, sizeof(v), "%s,%s", mm->label, reasons[k]);
                s_add(m, m->cancels, v, &mm->cancels[k]);
            }
        }
    }
}

void tb_http_metrics_release(struct tb_http_metrics *m)
{
    tb_http_metrics_flush(m);
    for (size_t i = 0; i < m->n_models; i++) {
        free(m->models[i]->req);
        free(m->models[i]);
    }
    free(m->models);
    m->models = NULL;
    m->n_models = m->cap_models = 0;
}
