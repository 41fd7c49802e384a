/*
 * tb_http_metrics.h - the frontend's Prometheus metrics, named and labelled as Dynamo's HTTP
 * frontend names them (prefix configurable, "dynamo_frontend" by default) so existing dashboards
 * read them.  See docs/http.md for the list.
 *
 * The families live in the process registry (host->metric_get).  Counters are summed here and
 * added to the registry by tb_http_metrics_flush (before /metrics renders, and every second), so a
 * request costs a few additions instead of a locked registry update per counter; histograms go
 * to the registry at once.  One thread (the http thread) uses a struct tb_http_metrics.
 */
#ifndef TB_HTTP_METRICS_H
#define TB_HTTP_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "tb_plugin.h"

struct tb_http_metrics {
    const struct tb_host *host;
    tb_metric_t *requests;     /* counter {model,endpoint,request_type,status,code} */
    tb_metric_t *inflight;     /* gauge {model} */
    tb_metric_t *queued;       /* gauge {model} */
    tb_metric_t *ttft;         /* histogram {model} seconds */
    tb_metric_t *itl;          /* histogram {model} seconds */
    tb_metric_t *duration;     /* histogram {model} seconds */
    tb_metric_t *in_seq;       /* histogram {model} tokens */
    tb_metric_t *out_seq;      /* histogram {model} tokens */
    tb_metric_t *in_tokens;    /* counter {model} */
    tb_metric_t *out_tokens;   /* counter {model} */
    tb_metric_t *disconnects;  /* counter {model} */
    tb_metric_t *cancels;      /* counter {model,reason} */
    struct tb_http_pending *pending; /* counter increments not yet in the registry */
    size_t n_pending, cap_pending;
};

struct tb_http_pending {
    tb_metric_t *family;
    char *labels;
    double value;
};

/* Registers every family under `prefix` (e.g. "dynamo_frontend").  0, or TB_EINVAL when the
 * registry refused a name (bad prefix). */
int tb_http_metrics_init(struct tb_http_metrics *m, const struct tb_host *host,
                         tb_component_t *comp, const char *prefix);

/* Adds `v` to counter `family` for `labels` (summed here until the next flush). */
void tb_http_metrics_count(struct tb_http_metrics *m, tb_metric_t *family, const char *labels,
                           double v);
/* Adds the summed counter increments to the registry. */
void tb_http_metrics_flush(struct tb_http_metrics *m);
/* Flushes and frees the sums. */
void tb_http_metrics_release(struct tb_http_metrics *m);

/* A model name usable as a label value (commas would split the value list): copied into `out`
 * with ',' replaced by '_'. */
const char *tb_http_metrics_label(const char *model, char *out, size_t out_len);

#endif /* TB_HTTP_METRICS_H */
