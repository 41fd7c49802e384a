/*
 * tb_metrics.h - a metrics registry (counters, gauges, histograms with labels) and its Prometheus
 * text exposition.  The core keeps one per process and hands it to plugins through the host
 * table.  Thread-safe; families live as long as the registry.
 */
#ifndef TB_METRICS_H
#define TB_METRICS_H

#include <stddef.h>

#include "tb_plugin.h"

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

typedef struct tb_metrics tb_metrics_t;

/* A new, empty registry.  Caller owns it; NULL when out of memory. */
tb_metrics_t *tb_metrics_new(void);
/* Frees every family; sets *r_p to NULL; accepts NULL. */
void tb_metrics_destroy(tb_metrics_t **r_p);

/* See tb_host.metric_get.  NULL when the name is invalid ([a-zA-Z_:][a-zA-Z0-9_:]*), when a
 * family of that name exists with another kind, or when out of memory. */
tb_metric_t *tb_metric_get(tb_metrics_t *r, const char *name, tb_metric_kind_t kind,
                           const char *help, const char *label_names, const double *buckets,
                           size_t n_buckets);
/* Counter/gauge: adds v.  Histogram: observes v.  Accepts NULL (does nothing). */
void tb_metric_add(tb_metric_t *m, const char *label_values, double v);
/* Gauge: sets v. */
void tb_metric_set(tb_metric_t *m, const char *label_values, double v);
/* See tb_host.metric_series: the series of `m` for `label_values`, created if new; borrowed, it
 * lives as long as the registry.  NULL when `m` is NULL or out of memory. */
tb_metric_series_t *tb_metric_series(tb_metric_t *m, const char *label_values);
/* As tb_metric_add / tb_metric_set on a series found once.  Accept NULL (do nothing). */
void tb_metric_series_add(tb_metric_series_t *s, double v);
void tb_metric_series_set(tb_metric_series_t *s, double v);
/* Appends the exposition of every family to `out`. */
int tb_metrics_render(tb_metrics_t *r, struct tb_buf *out);

#pragma GCC visibility pop

#endif /* TB_METRICS_H */
