/* Unit tests of the bus's own instance choice: a call naming no instance (0) of an endpoint that
 * serves a model is the bus's choice, not the router's, and is counted in
 * turbine_router_fallback_total{reason="bus_any_instance"}; a call naming its instance, and a
 * call of an endpoint serving no model (a router, an echo), are not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tb_buf.h"
#include "tb_bus.h"
#include "tb_metrics.h"
#include "tb_node.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_request(tb_request_t *req, const void *payload, size_t len, void *user)
{
    (void)user;
    assert_int_equal(tb_bus_reply(req, payload, len, true), 0);
}

static void on_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    if (ch->kind != TB_CHUNK_DATA) {
        (*(int *)user)++;
    }
}

/* Calls `endpoint` on `instance` and waits for its end. */
static void call(tb_bus_t *srv, tb_bus_t *cli, const char *endpoint, uint64_t instance)
{
    int ended = 0;
    tb_call_t *c = NULL;
    assert_int_equal(tb_bus_call(cli, endpoint, instance, "x", 1, 2000, on_chunk, &ended, &c), 0);
    int64_t end = now_ms() + 3000;
    while (!ended && now_ms() < end) {
        tb_bus_run(srv, 5);
        tb_bus_run(cli, 5);
    }
    assert_int_equal(ended, 1);
}

/* The fallback counter's value for `labels` in the exposition, or -1 when absent. */
static double counted(tb_metrics_t *m, const char *labels)
{
    struct tb_buf out = {0};
    assert_int_equal(tb_metrics_render(m, &out), 0);
    char key[256];
    snprintf(key, sizeof(key), "turbine_router_fallback_total{%s} ", labels);
    double v = -1;
    char *text = (char *)out.data;
    const char *at = text ? strstr(text, key) : NULL;
    if (at) {
        v = strtod(at + strlen(key), NULL);
    }
    tb_buf_free(&out);
    return v;
}

static void test_bus_choice_is_counted(void **state)
{
    (void)state;
    struct tb_node_config cfg = {.heartbeat_ms = 100, .lease_ttl_ms = 400};
    tb_node_t *n = NULL;
    char err[256];
    assert_int_equal(tb_node_new(&cfg, &n, err, sizeof(err)), 0);
    tb_metrics_t *metrics = tb_metrics_new();
    assert_non_null(metrics);
    tb_bus_t *srv = tb_bus_new(n, "t", "srv");
    tb_bus_t *cli = tb_bus_new(n, "t", "cli");
    tb_bus_set_metrics(cli, metrics);
    tb_endpoint_t *gen, *echo;
    struct tb_endpoint_meta with_model = {.model = "m1", .kind = "tokens"};
    struct tb_endpoint_meta without = {.kind = "echo"};
    assert_int_equal(tb_bus_endpoint_add(srv, "gen", &with_model, on_request, NULL, NULL, &gen),
                     0);
    assert_int_equal(tb_bus_endpoint_add(srv, "echo", &without, on_request, NULL, NULL, &echo),
                     0);
    int64_t end = now_ms() + 3000;
    while (now_ms() < end && (tb_bus_routes_find(cli, "t.srv.gen", NULL, NULL, 0) != 1 ||
                              tb_bus_routes_find(cli, "t.srv.echo", NULL, NULL, 0) != 1)) {
        tb_bus_run(srv, 5);
        tb_bus_run(cli, 5);
    }
    const char *labels = "component=\"cli\",model=\"m1\",reason=\"bus_any_instance\"";
    call(srv, cli, "t.srv.gen", tb_bus_endpoint_instance(gen)); /* named: the caller's choice */
    call(srv, cli, "t.srv.echo", 0);                            /* no model: not routing */
    assert_true(counted(metrics, labels) < 0);                  /* no such series yet */
    call(srv, cli, "t.srv.gen", 0);
    call(srv, cli, "t.srv.gen", 0);
    assert_true(counted(metrics, labels) == 2);
    tb_bus_destroy(&cli);
    tb_bus_destroy(&srv);
    tb_metrics_destroy(&metrics);
    tb_node_destroy(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_choice_is_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
