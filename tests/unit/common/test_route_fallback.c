/* Unit tests of tb_route_fallback: every fallback is counted with its component, model and
 * reason (commas in a model name cannot shift the labels), and logged at warn: the first at once,
 * then at most one line per TB_ROUTE_FALLBACK_LOG_NS carrying the number since the last line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tb_route_fallback.h"

/* A host with just what the class uses: a clock we move, a log and a metric we record. */
static int64_t g_now;
static char g_lines[8][512];
static int g_n_lines;
static tb_log_level_t g_levels[8];
static char g_labels[8][256];
static double g_added[8];
static int g_n_adds;
static int g_metric_family; /* its address is the family handle */

static bool s_log_enabled(const tb_component_t *c, tb_log_level_t l)
{
    (void)c;
    return l <= TB_LOG_INFO;
}

static void s_log(const tb_component_t *c, tb_log_level_t l, const char *fmt, ...)
{
    (void)c;
    assert_true(g_n_lines < 8);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_lines[g_n_lines], sizeof(g_lines[0]), fmt, ap);
    va_end(ap);
    g_levels[g_n_lines++] = l;
}

static const char *s_comp_name(const tb_component_t *c)
{
    (void)c;
    return "http";
}

static int64_t s_now(void)
{
    return g_now;
}

static tb_metric_t *s_metric_get(tb_component_t *c, const char *name, tb_metric_kind_t kind,
                                 const char *help, const char *labels, const double *b, size_t n)
{
    (void)c, (void)help, (void)b, (void)n;
    assert_string_equal(name, "turbine_router_fallback_total");
    assert_int_equal(kind, TB_METRIC_COUNTER);
    assert_string_equal(labels, "component,model,reason");
    return (tb_metric_t *)&g_metric_family;
}

static void s_metric_add(tb_metric_t *m, const char *labels, double v)
{
    assert_ptr_equal(m, &g_metric_family);
    assert_true(g_n_adds < 8);
    snprintf(g_labels[g_n_adds], sizeof(g_labels[0]), "%s", labels);
    g_added[g_n_adds++] = v;
}

static const struct tb_host s_host = {
    .struct_size = sizeof(struct tb_host),
    .log_enabled = s_log_enabled,
    .log = s_log,
    .component_name = s_comp_name,
    .now_ns = s_now,
    .metric_get = s_metric_get,
    .metric_add = s_metric_add,
};

static void test_counted_and_logged(void **state)
{
    (void)state;
    struct tb_route_fallback f;
    g_now = 5;
    tb_route_fallback_init(&f, &s_host, NULL);
    tb_route_fallback_note(&f, "m", TB_RF_NO_ROUTER, NULL);
    assert_int_equal(g_n_adds, 1);
    assert_string_equal(g_labels[0], "http,m,no_router");
    assert_true(g_added[0] == 1.0);
    assert_int_equal(g_n_lines, 1);
    assert_int_equal(g_levels[0], TB_LOG_WARN);
    assert_non_null(strstr(g_lines[0], "routing fallback (no_router) for model 'm'"));
    assert_non_null(strstr(g_lines[0], "1 such since the last line"));

    /* within the quiet period: counted, not logged */
    g_now += TB_ROUTE_FALLBACK_LOG_NS / 2;
    tb_route_fallback_note(&f, "a,b", TB_RF_ROUTER_ERROR, "no_route: none");
    tb_route_fallback_note(&f, "m", TB_RF_ROUTER_DOWN, NULL);
    assert_int_equal(g_n_adds, 3);
    assert_string_equal(g_labels[1], "http,a_b,router_error");
    assert_string_equal(g_labels[2], "http,m,router_down");
    assert_int_equal(g_n_lines, 1);

    /* the next line once the period is over, with the number since the last one */
    g_now += TB_ROUTE_FALLBACK_LOG_NS;
    tb_route_fallback_note(&f, "m", TB_RF_BAD_ANSWER, "malformed answer");
    assert_int_equal(g_n_lines, 2);
    assert_non_null(strstr(g_lines[1], "(bad_answer: malformed answer)"));
    assert_non_null(strstr(g_lines[1], "3 such since the last line"));
    assert_string_equal(tb_route_fallback_reason(TB_RF_RETRY), "retry");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counted_and_logged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
