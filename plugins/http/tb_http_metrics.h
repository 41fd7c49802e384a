/*
 * tb_http_metrics.h - the frontend's Prometheus metrics, named and labelled as Dynamo's HTTP
 * frontend names them (prefix configurable, "dynamo_frontend" by default) so existing dashboards
 * read them.  See docs/http.md for the list.
 *
 * The families live in the process registry (host->metric_get).  Everything a request touches is
 * kept per model in a struct tb_http_mm found once per request: its histograms' series handles
 * (host->metric_series, so an observation neither formats nor looks up labels; hosts older than
 * ABI 1.1 get metric_add with the label instead) and its counters, summed here and added to the
 * registry by tb_http_metrics_flush (before /metrics renders, and every second).  One thread (the
 * http thread) uses a struct tb_http_metrics.
 */
#ifndef TB_HTTP_METRICS_H
#define TB_HTTP_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "tb_plugin.h"

/* Why a request was cancelled upstream (the `reason` label). */
typedef enum {
    TB_HM_DISCONNECT = 0,
    TB_HM_SHUTDOWN = 1,
    TB_HM_ERROR = 2,
    TB_HM_N_REASONS = 3,
} tb_hm_reason_t;

/* Finished requests of one label set, not yet in the registry. */
struct tb_hm_req_count {
    const char *endpoint; /* static strings */
    const char *type;
    int code;
    double n;
};

/* One model's metrics. */
struct tb_http_mm {
    char label[160]; /* the model as a label value (commas replaced) */
    tb_metric_series_t *ttft, *itl, *duration, *in_seq, *out_seq; /* NULL: use the label */
    double in_tokens, out_tokens, disconnects; /* counter sums not yet in the registry */
    double cancels[TB_HM_N_REASONS];
    struct tb_hm_req_count *req;
    size_t n_req, cap_req;
};

struct tb_http_metrics {
    const struct tb_host *host;
    tb_metric_t *requests;      /* counter {model,endpoint,request_type,status,code} */
    tb_metric_t *inflight;      /* gauge {model} */
    tb_metric_t *queued;        /* gauge {model} */
    tb_metric_t *ttft;          /* histogram {model} seconds */
    tb_metric_t *itl;           /* histogram {model} seconds */
    tb_metric_t *duration;      /* histogram {model} seconds */
    tb_metric_t *in_seq;        /* histogram {model} tokens */
    tb_metric_t *out_seq;       /* histogram {model} tokens */
    tb_metric_t *in_tokens;     /* counter {model} */
    tb_metric_t *out_tokens;    /* counter {model} */
    tb_metric_t *disconnects;   /* counter {model} */
    tb_metric_t *cancels;       /* counter {model,reason} */
    bool series;                /* the host has series handles */
    struct tb_http_mm **models; /* every model seen (owned) */
    size_t n_models, cap_models;
};

/* Registers every family under `prefix` (e.g. "dynamo_frontend").  0, or TB_EINVAL when the
 * registry refused a name (bad prefix). */
int tb_http_metrics_init(struct tb_http_metrics *m, const struct tb_host *host,
                         tb_component_t *comp, const char *prefix);

/* The metrics of `model` (NULL or "" for requests refused before their model was known), created
 * on first use.  Borrowed until release; NULL only when out of memory (the functions below
 * accept NULL and drop the update). */
struct tb_http_mm *tb_http_metrics_model(struct tb_http_metrics *m, const char *model);

/* Counts a finished request (`endpoint`, `type` must be static strings). */
void tb_http_metrics_request(struct tb_http_metrics *m, struct tb_http_mm *mm,
                             const char *endpoint, const char *type, int status);
/* Observes `v` in histogram `family` through its series `s` (see above). */
void tb_http_metrics_observe(struct tb_http_metrics *m, struct tb_http_mm *mm,
                             tb_metric_t *family, tb_metric_series_t *s, double v);
/* Adds the summed counter increments to the registry. */
void tb_http_metrics_flush(struct tb_http_metrics *m);
/* Flushes and frees the per-model state. */
void tb_http_metrics_release(struct tb_http_metrics *m);

/* A model name usable as a label value (commas would split the value list): copied into `out`
 * with ',' replaced by '_'. */
const char *tb_http_metrics_label(const char *model, char *out, size_t out_len);

#endif /* TB_HTTP_METRICS_H */
