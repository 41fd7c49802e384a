/* tb_metrics: a small Prometheus-style registry (see tb_metrics.h). */
#include "tb_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"

struct tb_metric_series {
    struct tb_metric *family;
    char *values; /* the label values as given: "v1,v2" */
    char *labels; /* rendered label set: name="value",... (escaped) */
    double value; /* counter, gauge; histogram: sum */
    double count; /* histogram */
    double *buckets;
    struct tb_metric_series *alias_of; /* renders like an older series: updates go there */
    struct tb_metric_series *next;
};

struct tb_metric {
    struct tb_metrics *owner;
    char *name;
    char *help;
    tb_metric_kind_t kind;
    char **label_names;
    size_t n_labels;
    double *bounds;
    size_t n_bounds;
    struct tb_metric_series *series;
    struct tb_metric *next;
};

struct tb_metrics {
    pthread_mutex_t lock;
    struct tb_metric *families;
};

tb_metrics_t *tb_metrics_new(void)
{
    tb_metrics_t *r = calloc(1, sizeof(*r));
    if (r) {
        pthread_mutex_init(&r->lock, NULL);
    }
    return r;
}

static bool s_valid_name(const char *s)
{
    if (!s || !*s || (*s >= '0' && *s <= '9')) {
        return false;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == ':')) {
            return false;
        }
    }
    return true;
}

static size_t s_split(const char *list, char ***out)
{
    size_t n = 0;
    *out = NULL;
    if (!list || !*list) {
        return 0;
    }
    for (const char *p = list; *p; p++) {
        n += *p == ',';
    }
    n++;
    char **v = calloc(n, sizeof(*v));
    if (!v) {
        return (size_t)-1;
    }
    const char *start = list;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(start, ',');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        v[i] = strndup(start, len);
        start = end ? end + 1 : start + len;
    }
    *out = v;
    return n;
}

static void s_free_family(struct tb_metric *m)
{
    for (size_t i = 0; i < m->n_labels; i++) {
        free(m->label_names[i]);
    }
    free(m->label_names);
    while (m->series) {
        struct tb_metric_series *s = m->series;
        m->series = s->next;
        free(s->values);
        free(s->labels);
        free(s->buckets);
        free(s);
    }
    free(m->bounds);
    free(m->name);
    free(m->help);
    free(m);
}

tb_metric_t *tb_metric_get(tb_metrics_t *r, const char *name, tb_metric_kind_t kind,
                           const char *help, const char *label_names, const double *buckets,
                           size_t n_buckets)
{
    if (!s_valid_name(name)) {
        return NULL;
    }
    pthread_mutex_lock(&r->lock);
    struct tb_metric *m;
    for (m = r->families; m; m = m->next) {
        if (strcmp(m->name, name) == 0) {
            break;
        }
    }
    if (m) {
        pthread_mutex_unlock(&r->lock);
        return m->kind == kind ? m : NULL;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        pthread_mutex_unlock(&r->lock);
        return NULL;
    }
    m->owner = r;
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    m->kind = kind;
    size_t nl = s_split(label_names, &m->label_names);
    m->n_labels = nl == (size_t)-1 ? 0 : nl;
    if (kind == TB_METRIC_HISTOGRAM && n_buckets) {
        m->bounds = malloc(n_buckets * sizeof(double));
        if (m->bounds) {
            memcpy(m->bounds, buckets, n_buckets * sizeof(double));
            m->n_bounds = n_buckets;
        }
    }
    if (!m->name || !m->help || nl == (size_t)-1) {
        s_free_family(m);
        pthread_mutex_unlock(&r->lock);
        return NULL;
    }
    /* Keep families in creation order for a stable exposition. */
    struct tb_metric **pp = &r->families;
    while (*pp) {
        pp = &(*pp)->next;
    }
    *pp = m;
    pthread_mutex_unlock(&r->lock);
    return m;
}

/* Renders `values` (comma-separated, in label order) as name="value",... with escaping. */
static char *s_label_set(const struct tb_metric *m, const char *values)
{
    struct tb_buf b = {0};
    const char *p = values ? values : "";
    for (size_t i = 0; i < m->n_labels; i++) {
        const char *end = strchr(p, ',');
        size_t len = end && i + 1 < m->n_labels ? (size_t)(end - p) : strlen(p);
        tb_buf_printf(&b, "%s%s=\"", i ? "," : "", m->label_names[i]);
        for (size_t k = 0; k < len; k++) {
            char c = p[k];
            if (c == '\\' || c == '"') {
                tb_buf_printf(&b, "\\%c", c);
            } else if (c == '\n') {
                tb_buf_printf(&b, "\\n");
            } else {
                tb_buf_append(&b, &c, 1);
            }
        }
        tb_buf_printf(&b, "\"");
        p += len;
        if (*p == ',') {
            p++;
        }
    }
    if (!b.data) {
        return strdup("");
    }
    return (char *)b.data;
}

/* The series of `values` (caller holds the lock): found by the values as given, so an update
 * formats and allocates nothing once its series exists. */
static struct tb_metric_series *s_series(struct tb_metric *m, const char *values)
{
    if (!values) {
        values = "";
    }
    for (struct tb_metric_series *s = m->series; s; s = s->next) {
        if (strcmp(s->values, values) == 0) {
            return s;
        }
    }
    struct tb_metric_series *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->family = m;
    s->values = strdup(values);
    s->labels = s_label_set(m, values);
    if (m->kind == TB_METRIC_HISTOGRAM) {
        s->buckets = calloc(m->n_bounds + 1, sizeof(double));
    }
    if (!s->values || !s->labels || (m->kind == TB_METRIC_HISTOGRAM && !s->buckets)) {
        free(s->values);
        free(s->labels);
        free(s->buckets);
        free(s);
        return NULL;
    }
    /* Distinct value lists can render alike ("a" and "a," for one label): keep one series per
     * rendered set, aliases pointing at the first. */
    for (struct tb_metric_series *o = m->series; o; o = o->next) {
        if (!o->alias_of && strcmp(o->labels, s->labels) == 0) {
            s->alias_of = o;
            break;
        }
    }
    s->next = m->series;
    m->series = s;
    return s;
}

static void s_observe(struct tb_metric_series *s, double v)
{
    struct tb_metric *m = s->family;
    if (s->alias_of) {
        s = s->alias_of;
    }
    s->value += v;
    if (m->kind == TB_METRIC_HISTOGRAM) {
        s->count += 1;
        for (size_t i = 0; i < m->n_bounds; i++) {
            if (v <= m->bounds[i]) {
                s->buckets[i] += 1;
            }
        }
    }
}

void tb_metric_add(tb_metric_t *m, const char *label_values, double v)
{
    if (!m) {
        return;
    }
    tb_metrics_t *r = m->owner;
    pthread_mutex_lock(&r->lock);
    struct tb_metric_series *s = s_series(m, label_values);
    if (s) {
        s_observe(s, v);
    }
    pthread_mutex_unlock(&r->lock);
}

void tb_metric_set(tb_metric_t *m, const char *label_values, double v)
{
    if (!m || m->kind != TB_METRIC_GAUGE) {
        return;
    }
    tb_metrics_t *r = m->owner;
    pthread_mutex_lock(&r->lock);
    struct tb_metric_series *s = s_series(m, label_values);
    if (s) {
        (s->alias_of ? s->alias_of : s)->value = v;
    }
    pthread_mutex_unlock(&r->lock);
}

tb_metric_series_t *tb_metric_series(tb_metric_t *m, const char *label_values)
{
    if (!m) {
        return NULL;
    }
    tb_metrics_t *r = m->owner;
    pthread_mutex_lock(&r->lock);
    struct tb_metric_series *s = s_series(m, label_values);
    pthread_mutex_unlock(&r->lock);
    return s;
}

void tb_metric_series_add(tb_metric_series_t *s, double v)
{
    if (!s) {
        return;
    }
    tb_metrics_t *r = s->family->owner;
    pthread_mutex_lock(&r->lock);
    s_observe(s, v);
    pthread_mutex_unlock(&r->lock);
}

void tb_metric_series_set(tb_metric_series_t *s, double v)
{
    if (!s || s->family->kind != TB_METRIC_GAUGE) {
        return;
    }
    tb_metrics_t *r = s->family->owner;
    pthread_mutex_lock(&r->lock);
    (s->alias_of ? s->alias_of : s)->value = v;
    pthread_mutex_unlock(&r->lock);
}

static void s_num(struct tb_buf *b, double v)
{
    if (isinf(v)) {
        tb_buf_printf(b, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        tb_buf_printf(b, "%.0f", v);
    } else {
        tb_buf_printf(b, "%.9g", v);
    }
}

int tb_metrics_render(tb_metrics_t *r, struct tb_buf *out)
{
    static const char *const kinds[] = {"", "counter", "gauge", "histogram"};
    pthread_mutex_lock(&r->lock);
    for (struct tb_metric *m = r->families; m; m = m->next) {
        tb_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                      kinds[m->kind]);
        for (struct tb_metric_series *s = m->series; s; s = s->next) {
            if (s->alias_of) {
                continue;
            }
            const char *sep = *s->labels ? "," : "";
            if (m->kind != TB_METRIC_HISTOGRAM) {
                tb_buf_printf(out, "%s%s%s%s ", m->name, *s->labels ? "{" : "", s->labels,
                              *s->labels ? "}" : "");
                s_num(out, s->value);
                tb_buf_printf(out, "\n");
                continue;
            }
            for (size_t i = 0; i < m->n_bounds; i++) {
                tb_buf_printf(out, "%s_bucket{%s%sle=\"", m->name, s->labels, sep);
                s_num(out, m->bounds[i]);
                tb_buf_printf(out, "\"} ");
                s_num(out, s->buckets[i]);
                tb_buf_printf(out, "\n");
            }
            tb_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} ", m->name, s->labels, sep);
            s_num(out, s->count);
            tb_buf_printf(out, "\n%s_sum%s%s%s ", m->name, *s->labels ? "{" : "", s->labels,
                          *s->labels ? "}" : "");
            s_num(out, s->value);
            tb_buf_printf(out, "\n%s_count%s%s%s ", m->name, *s->labels ? "{" : "", s->labels,
                          *s->labels ? "}" : "");
            s_num(out, s->count);
            tb_buf_printf(out, "\n");
        }
    }
    pthread_mutex_unlock(&r->lock);
    return 0;
}

void tb_metrics_destroy(tb_metrics_t **r_p)
{
    if (!r_p || !*r_p) {
        return;
    }
    tb_metrics_t *r = *r_p;
    while (r->families) {
        struct tb_metric *m = r->families;
        r->families = m->next;
        s_free_family(m);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
    *r_p = NULL;
}
