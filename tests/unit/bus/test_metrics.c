/* Unit tests of the metrics registry and its Prometheus text exposition, and of series handles
 * (tb_metric_series): they meet label-value updates on one series; value lists that render alike
 * share one series. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tb_buf.h"
#include "tb_metrics.h"

static char *render(tb_metrics_t *r, struct tb_buf *b)
{
    b->len = 0;
    assert_int_equal(tb_metrics_render(r, b), 0);
    tb_buf_append(b, "", 0);
    return (char *)b->data;
}

static void test_counter_gauge_histogram(void **state)
{
    (void)state;
    tb_metrics_t *r = tb_metrics_new();
    struct tb_buf b = {0};
    tb_metric_t *c = tb_metric_get(r, "tb_requests_total", TB_METRIC_COUNTER, "requests served",
                                   "model,code", NULL, 0);
    tb_metric_t *g = tb_metric_get(r, "tb_inflight", TB_METRIC_GAUGE, "in flight", "", NULL, 0);
    const double buckets[] = {0.1, 1};
    tb_metric_t *h = tb_metric_get(r, "tb_latency_seconds", TB_METRIC_HISTOGRAM, "latency",
                                   "model", buckets, 2);
    assert_non_null(c);
    assert_non_null(g);
    assert_non_null(h);
    tb_metric_add(c, "tiny,200", 1);
    tb_metric_add(c, "tiny,200", 2);
    tb_metric_add(c, "tiny,404", 1);
    tb_metric_set(g, "", 7);
    tb_metric_add(h, "tiny", 0.05);
    tb_metric_add(h, "tiny", 0.5);
    tb_metric_add(h, "tiny", 5);
    const char *text = render(r, &b);
    assert_non_null(strstr(text, "# HELP tb_requests_total requests served\n"
                                 "# TYPE tb_requests_total counter\n"));
    assert_non_null(strstr(text, "tb_requests_total{model=\"tiny\",code=\"200\"} 3\n"));
    assert_non_null(strstr(text, "tb_requests_total{model=\"tiny\",code=\"404\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE tb_inflight gauge\ntb_inflight 7\n"));
    assert_non_null(strstr(text, "tb_latency_seconds_bucket{model=\"tiny\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(text, "tb_latency_seconds_bucket{model=\"tiny\",le=\"1\"} 2\n"));
    assert_non_null(strstr(text, "tb_latency_seconds_bucket{model=\"tiny\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "tb_latency_seconds_sum{model=\"tiny\"} 5.55\n"));
    assert_non_null(strstr(text, "tb_latency_seconds_count{model=\"tiny\"} 3\n"));
    tb_buf_free(&b);
    tb_metrics_destroy(&r);
    assert_null(r);
}

static void test_same_name_same_family_other_kind_refused(void **state)
{
    (void)state;
    tb_metrics_t *r = tb_metrics_new();
    tb_metric_t *a = tb_metric_get(r, "x_total", TB_METRIC_COUNTER, "x", "", NULL, 0);
    assert_ptr_equal(tb_metric_get(r, "x_total", TB_METRIC_COUNTER, "x", "", NULL, 0), a);
    assert_null(tb_metric_get(r, "x_total", TB_METRIC_GAUGE, "x", "", NULL, 0));
    assert_null(tb_metric_get(r, "1bad", TB_METRIC_GAUGE, "x", "", NULL, 0));
    assert_null(tb_metric_get(r, "bad-name", TB_METRIC_GAUGE, "x", "", NULL, 0));
    assert_non_null(
        tb_metric_get(r, "vllm:num_requests_running", TB_METRIC_GAUGE, "x", "", NULL, 0));
    tb_metric_add(NULL, "", 1); /* accepted, does nothing */
    tb_metrics_destroy(&r);
}

static void test_label_values_escaped(void **state)
{
    (void)state;
    tb_metrics_t *r = tb_metrics_new();
    struct tb_buf b = {0};
    tb_metric_t *c = tb_metric_get(r, "m_total", TB_METRIC_COUNTER, "m", "model", NULL, 0);
    tb_metric_add(c, "a\"b\\c\nd", 1);
    const char *text = render(r, &b);
    assert_non_null(strstr(text, "m_total{model=\"a\\\"b\\\\c\\nd\"} 1\n"));
    tb_buf_free(&b);
    tb_metrics_destroy(&r);
}

static void test_series_and_labels_meet(void **state)
{
    (void)state;
    tb_metrics_t *r = tb_metrics_new();
    tb_metric_t *c = tb_metric_get(r, "t_total", TB_METRIC_COUNTER, "help", "model,code", NULL,
                                   0);
    assert_non_null(c);
    tb_metric_series_t *s = tb_metric_series(c, "m,200");
    assert_non_null(s);
    assert_ptr_equal(tb_metric_series(c, "m,200"), s); /* the same series again */
    tb_metric_series_add(s, 2);
    tb_metric_add(c, "m,200", 3);
    tb_metric_add(c, "m,500", 1);
    struct tb_buf b = {0};
    const char *text = render(r, &b);
    assert_non_null(strstr(text, "t_total{model=\"m\",code=\"200\"} 5\n"));
    assert_non_null(strstr(text, "t_total{model=\"m\",code=\"500\"} 1\n"));
    tb_metric_series_add(NULL, 1); /* accepted, nothing happens */
    assert_null(tb_metric_series(NULL, "x"));
    tb_buf_free(&b);
    tb_metrics_destroy(&r);
    assert_null(r);
}

/* "a" and "a," both mean model="a",code="": one line, the sum of both. */
static void test_alike_value_lists_share_a_series(void **state)
{
    (void)state;
    tb_metrics_t *r = tb_metrics_new();
    tb_metric_t *c = tb_metric_get(r, "u_total", TB_METRIC_COUNTER, "help", "model,code", NULL,
                                   0);
    tb_metric_add(c, "a", 1);
    tb_metric_add(c, "a,", 2);
    tb_metric_series_add(tb_metric_series(c, "a,"), 4);
    struct tb_buf b = {0};
    const char *text = render(r, &b);
    assert_non_null(strstr(text, "u_total{model=\"a\",code=\"\"} 7\n"));
    const char *first = strstr(text, "u_total{");
    assert_null(strstr(first + 1, "u_total{")); /* rendered once */
    tb_buf_free(&b);
    tb_metrics_destroy(&r);
}

static void test_series_histogram_and_gauge(void **state)
{
    (void)state;
    tb_metrics_t *r = tb_metrics_new();
    static const double bounds[] = {0.1, 1.0};
    tb_metric_t *h = tb_metric_get(r, "lat_seconds", TB_METRIC_HISTOGRAM, "help", "model", bounds,
                                   2);
    tb_metric_t *g = tb_metric_get(r, "q", TB_METRIC_GAUGE, "help", "model", NULL, 0);
    tb_metric_series_t *hs = tb_metric_series(h, "m");
    tb_metric_series_add(hs, 0.05);
    tb_metric_series_add(hs, 0.5);
    tb_metric_add(h, "m", 5);
    tb_metric_series_t *gs = tb_metric_series(g, "m");
    tb_metric_series_set(gs, 3);
    tb_metric_series_set(gs, 2);
    tb_metric_series_set(hs, 9); /* not a gauge: ignored */
    struct tb_buf b = {0};
    const char *text = render(r, &b);
    assert_non_null(strstr(text, "lat_seconds_bucket{model=\"m\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{model=\"m\",le=\"1\"} 2\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{model=\"m\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "lat_seconds_sum{model=\"m\"} 5.55\n"));
    assert_non_null(strstr(text, "lat_seconds_count{model=\"m\"} 3\n"));
    assert_non_null(strstr(text, "q{model=\"m\"} 2\n"));
    tb_buf_free(&b);
    tb_metrics_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_histogram),
        cmocka_unit_test(test_same_name_same_family_other_kind_refused),
        cmocka_unit_test(test_label_values_escaped),
        cmocka_unit_test(test_series_and_labels_meet),
        cmocka_unit_test(test_alike_value_lists_share_a_series),
        cmocka_unit_test(test_series_histogram_and_gauge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
