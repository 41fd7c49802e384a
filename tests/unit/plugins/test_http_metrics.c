/* Unit tests of tb_http_metrics against a stub host: every family is registered under the
 * prefix with Dynamo's names, counters are summed until a flush, label values lose commas. */
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
    const char *want[] = {"requests_total", "inflight_requests", "queued_requests",
                          "time_to_first_token_seconds", "inter_token_latency_seconds",
                          "request_duration_seconds", "input_sequence_tokens",
                          "output_sequence_tokens", "input_tokens_total", "output_tokens_total",
                          "disconnected_clients", "cancelled_requests_total"};
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
    tb_http_metrics_count(&m, m.requests, "a,chat,unary,success,200", 1);
    tb_http_metrics_count(&m, m.requests, "a,chat,unary,success,200", 1);
    tb_http_metrics_count(&m, m.requests, "b,chat,unary,error,404", 1);
    tb_http_metrics_count(&m, m.out_tokens, "a", 16);
    tb_http_metrics_count(&m, m.out_tokens, "a", 4);
    assert_int_equal(s_n_adds, 0); /* nothing reaches the registry before a flush */
    tb_http_metrics_flush(&m);
    assert_int_equal(s_n_adds, 3);
    assert_string_equal(s_adds[0].labels, "a,chat,unary,success,200");
    assert_true(s_adds[0].v == 2);
    assert_true(s_adds[1].v == 1);
    assert_true(s_adds[2].v == 20);
    tb_http_metrics_flush(&m); /* nothing new: nothing added */
    assert_int_equal(s_n_adds, 3);
    tb_http_metrics_count(&m, m.out_tokens, "a", 1);
    tb_http_metrics_release(&m); /* release flushes */
    assert_int_equal(s_n_adds, 4);
    assert_null(m.pending);
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
        cmocka_unit_test(test_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
