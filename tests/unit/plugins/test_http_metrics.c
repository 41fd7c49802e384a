/* Unit tests of tb_http_metrics against a stub host: every family is registered under the
 * prefix with Dynamo's names, counters are summed per model until a flush, histograms go through
 * series handles when the host has them (metric_add otherwise), label values lose commas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/http/tb_http_metrics.h" /* plugin-private header */

/* A stub registry: families are their index + 1, additions are recorded. */
static char s_names[32][128];
static int s_n_names;
static struct {
    int family;
    char labels[128];
    double v;
} s_adds[64];
static int s_n_adds;

static tb_metric_t *stub_get(tb_component_t *comp, const char *name, tb_metric_kind_t kind,
                             const char *help, const char *labels, const double *b, size_t nb)
{
    (void)comp;
    (void)help;
    (void)labels;
    if (strchr(name, '-')) {
        return NULL; /* an invalid name */
    }
    assert_true(kind != TB_METRIC_HISTOGRAM || (b && nb > 0));
    snprintf(s_names[s_n_names], sizeof(s_names[0]), "%s", name);
    return (tb_metric_t *)(intptr_t)(++s_n_names);
}

static void stub_add(tb_metric_t *m, const char *labels, double v)
{
    s_adds[s_n_adds].family = (int)(intptr_t)m;
    snprintf(s_adds[s_n_adds].labels, sizeof(s_adds[0].labels), "%s", labels);
    s_adds[s_n_adds].v = v;
    s_n_adds++;
}

static void stub_set_error(tb_component_t *comp, const char *fmt, ...)
{
    (void)comp;
    (void)fmt;
}

static struct tb_host stub_host(void)
{
    struct tb_host h;
    memset(&h, 0, sizeof(h));
    h.struct_size = sizeof(h);
    h.metric_get = stub_get;
    h.metric_add = stub_add;
    h.set_error = stub_set_error;
    return h;
}

static bool has(const char *name)
{
    for (int i = 0; i < s_n_names; i++) {
        if (strcmp(s_names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static void test_families(void **state)
{
    (void)state;
    s_n_names = s_n_adds = 0;
    struct tb_host host = stub_host();
    struct tb_http_metrics m;
    assert_int_equal(tb_http_metrics_init(&m, &host, NULL, "dynamo_frontend"), 0);
    const char *want[] = {"requests_total",
                          "inflight_requests",
                          "queued_requests",
                          "time_to_first_token_seconds",
                          "inter_token_latency_seconds",
                          "request_duration_seconds",
                          "input_sequence_tokens",
                          "output_sequence_tokens",
                          "input_tokens_total",
                          "output_tokens_total",
                          "disconnected_clients",
                          "cancelled_requests_total"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char n[128];
        snprintf(n, sizeof(n), "dynamo_frontend_%s", want[i]);
        assert_true(has(n));
    }
    tb_http_metrics_release(&m);
    s_n_names = 0;
    assert_int_not_equal(tb_http_metrics_init(&m, &host, NULL, "bad-prefix"), 0);
}

static void test_counters_are_summed(void **state)
{
    (void)state;
    s_n_names = s_n_adds = 0;
    struct tb_host host = stub_host();
    struct tb_http_metrics m;
    assert_int_equal(tb_http_metrics_init(&m, &host, NULL, "p"), 0);
    struct tb_http_mm *a = tb_http_metrics_model(&m, "a");
    struct tb_http_mm *b = tb_http_metrics_model(&m, "b");
    assert_non_null(a);
    assert_ptr_equal(tb_http_metrics_model(&m, "a"), a); /* found again, not created */
    tb_http_metrics_request(&m, a, "chat", "unary", 200);
    tb_http_metrics_request(&m, a, "chat", "unary", 200);
    tb_http_metrics_request(&m, b, "chat", "unary", 404);
    a->out_tokens += 16;
    a->out_tokens += 4;
    a->cancels[TB_HM_DISCONNECT] += 1;
    assert_int_equal(s_n_adds, 0); /* nothing reaches the registry before a flush */
    tb_http_metrics_flush(&m);
    assert_int_equal(s_n_adds, 4);
    assert_string_equal(s_adds[0].labels, "a,chat,unary,success,200");
    assert_true(s_adds[0].v == 2);
    assert_string_equal(s_adds[1].labels, "a");
    assert_true(s_adds[1].v == 20);
    assert_string_equal(s_adds[2].labels, "a,disconnect");
    assert_true(s_adds[2].v == 1);
    assert_string_equal(s_adds[3].labels, "b,chat,unary,error,404");
    assert_true(s_adds[3].v == 1);
    tb_http_metrics_flush(&m); /* nothing new: nothing added */
    assert_int_equal(s_n_adds, 4);
    b->in_tokens += 1;
    tb_http_metrics_release(&m); /* release flushes */
    assert_int_equal(s_n_adds, 5);
    assert_null(m.models);
}

/* Without series handles (a host older than ABI 1.1) histograms go through metric_add with the
 * model label; a model name with commas becomes one label value. */
static void test_observe_without_series(void **state)
{
    (void)state;
    s_n_names = s_n_adds = 0;
    struct tb_host host = stub_host();
    host.struct_size = offsetof(struct tb_host, metric_series);
    struct tb_http_metrics m;
    assert_int_equal(tb_http_metrics_init(&m, &host, NULL, "p"), 0);
    assert_false(m.series);
    struct tb_http_mm *mm = tb_http_metrics_model(&m, "x,y");
    assert_string_equal(mm->label, "x_y");
    assert_null(mm->ttft);
    tb_http_metrics_observe(&m, mm, m.ttft, mm->ttft, 0.25);
    assert_int_equal(s_n_adds, 1);
    assert_int_equal(s_adds[0].family, (int)(intptr_t)m.ttft);
    assert_string_equal(s_adds[0].labels, "x_y");
    assert_true(s_adds[0].v == 0.25);
    tb_http_metrics_release(&m);
}

/* With series handles each model's histogram series is found once and observed directly. */
static tb_metric_series_t *stub_series(tb_metric_t *m, const char *labels)
{
    assert_string_equal(labels, "m");
    return (tb_metric_series_t *)m; /* the family stands for its one series here */
}

static int s_series_adds;
static tb_metric_series_t *s_last_series;

static void stub_series_add(tb_metric_series_t *s, double v)
{
    (void)v;
    s_series_adds++;
    s_last_series = s;
}

static void stub_series_set(tb_metric_series_t *s, double v)
{
    (void)s;
    (void)v;
}

static void test_observe_with_series(void **state)
{
    (void)state;
    s_n_names = s_n_adds = s_series_adds = 0;
    struct tb_host host = stub_host();
    host.metric_series = stub_series;
    host.metric_series_add = stub_series_add;
    host.metric_series_set = stub_series_set;
    struct tb_http_metrics m;
    assert_int_equal(tb_http_metrics_init(&m, &host, NULL, "p"), 0);
    assert_true(m.series);
    struct tb_http_mm *mm = tb_http_metrics_model(&m, "m");
    assert_ptr_equal(mm->itl, (tb_metric_series_t *)m.itl);
    tb_http_metrics_observe(&m, mm, m.itl, mm->itl, 0.01);
    assert_int_equal(s_series_adds, 1);
    assert_ptr_equal(s_last_series, mm->itl);
    assert_int_equal(s_n_adds, 0);                        /* not through metric_add */
    tb_http_metrics_observe(&m, NULL, m.itl, NULL, 0.01); /* no model metrics: dropped */
    assert_int_equal(s_series_adds, 1);
    tb_http_metrics_release(&m);
}

static void test_label(void **state)
{
    (void)state;
    char out[16];
    assert_string_equal(tb_http_metrics_label("a,b,c", out, sizeof(out)), "a_b_c");
    assert_string_equal(tb_http_metrics_label(NULL, out, sizeof(out)), "");
    assert_string_equal(tb_http_metrics_label("0123456789abcdefXYZ", out, sizeof(out)),
                        "0123456789abcde");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_counters_are_summed),
        cmocka_unit_test(test_observe_without_series),
        cmocka_unit_test(test_observe_with_series),
        cmocka_unit_test(test_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
