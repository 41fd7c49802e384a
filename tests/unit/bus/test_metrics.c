/* Unit tests of the metrics registry and its Prometheus text exposition. */
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
    assert_non_null(tb_metric_get(r, "vllm:num_requests_running", TB_METRIC_GAUGE, "x", "",
                                  NULL, 0));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_histogram),
        cmocka_unit_test(test_same_name_same_family_other_kind_refused),
        cmocka_unit_test(test_label_values_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
