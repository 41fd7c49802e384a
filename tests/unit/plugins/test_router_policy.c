/* Unit tests of tb_router_policy: round robin is even, random covers every instance and is
 * reproducible with a seed, least_loaded follows reported load and spreads a burst, only the
 * asked model and kind are candidates, and a removed instance is never picked.  The policy
 * decides over an instance directory (tb_instance_dir), as the router's does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/router/tb_router_policy.h" /* plugin-private header */
#include "tb_errors.h"

/* One directory per test, as the router keeps it (engines and text-level servers). */
static tb_instance_dir_t *g_dir;

static void add(uint64_t id, const char *endpoint, const char *model, const char *kind, int want)
{
    struct tb_route r = {
        .endpoint = endpoint, .instance_id = id, .model = model, .kind = kind, .info = "{}"};
    assert_int_equal(tb_instance_dir_add(g_dir, &r, 0), want);
}

static tb_rpolicy_t *three(tb_rp_kind_t kind, uint64_t seed)
{
    tb_rpolicy_t *p = tb_rpolicy_new(kind, seed);
    assert_non_null(p);
    if (!g_dir) {
        g_dir = tb_instance_dir_new("text,tokens");
        assert_non_null(g_dir);
        add(1, "ns.a.generate", "m", "text", 1);
        add(2, "ns.b.generate", "m", "text", 1);
        add(3, "ns.c.generate", "m", "text", 1);
        add(3, "ns.c.generate", "m", "text", 0);
        add(4, "ns.t.generate", "m", "tokens", 1);
        add(5, "ns.o.generate", "other", "text", 1);
    }
    return p;
}

static int teardown(void **state)
{
    (void)state;
    tb_instance_dir_destroy(&g_dir);
    return 0;
}

static uint64_t pick(tb_rpolicy_t *p, const char *model, const char *kind)
{
    struct tb_idir_instance *i = NULL;
    struct tb_rp_query q = {.model = model, .kind = kind};
    assert_int_equal(tb_rpolicy_pick(p, g_dir, &q, &i), 0);
    assert_non_null(i);
    assert_string_equal(i->model, model);
    assert_string_equal(i->kind, kind);
    return i->instance_id;
}

static void test_round_robin(void **state)
{
    (void)state;
    tb_rpolicy_t *p = three(TB_RP_ROUND_ROBIN, 1);
    int n[6] = {0};
    for (int i = 0; i < 30; i++) {
        n[pick(p, "m", "text")]++;
    }
    assert_int_equal(n[1], 10);
    assert_int_equal(n[2], 10);
    assert_int_equal(n[3], 10);
    assert_int_equal(n[4], 0);
    assert_int_equal(pick(p, "m", "tokens"), 4);
    assert_int_equal(pick(p, "other", "text"), 5);
    struct tb_idir_instance *i;
    struct tb_rp_query absent = {.model = "absent", .kind = "text"};
    assert_int_equal(tb_rpolicy_pick(p, g_dir, &absent, &i), TB_ENOROUTE);
    assert_null(i);
    /* any kind when the query names none */
    struct tb_rp_query any = {.model = "other"};
    assert_int_equal(tb_rpolicy_pick(p, g_dir, &any, &i), 0);
    assert_int_equal(i->instance_id, 5);
    assert_true(tb_instance_dir_remove(g_dir, 2, NULL));
    assert_false(tb_instance_dir_remove(g_dir, 2, NULL));
    for (int k = 0; k < 10; k++) {
        assert_int_not_equal(pick(p, "m", "text"), 2);
    }
    assert_string_equal(tb_rpolicy_name(TB_RP_ROUND_ROBIN), "round_robin");
    tb_rpolicy_destroy(&p);
    assert_null(p);
}

static void test_random(void **state)
{
    (void)state;
    tb_rpolicy_t *a = three(TB_RP_RANDOM, 42);
    tb_rpolicy_t *b = three(TB_RP_RANDOM, 42);
    int n[6] = {0};
    for (int i = 0; i < 300; i++) {
        uint64_t x = pick(a, "m", "text");
        assert_int_equal(x, pick(b, "m", "text")); /* same seed, same sequence */
        n[x]++;
    }
    assert_true(n[1] > 50 && n[2] > 50 && n[3] > 50);
    assert_int_equal(n[1] + n[2] + n[3], 300);
    tb_rpolicy_destroy(&a);
    tb_rpolicy_destroy(&b);
}

static void test_least_loaded(void **state)
{
    (void)state;
    tb_rpolicy_t *p = three(TB_RP_LEAST_LOADED, 1);
    assert_true(tb_instance_dir_load(g_dir, 1, 5, 2, 10, 100));
    assert_true(tb_instance_dir_load(g_dir, 2, 0, 0, 0, 100));
    assert_true(tb_instance_dir_load(g_dir, 3, 3, 0, 5, 100));
    assert_false(tb_instance_dir_load(g_dir, 99, 0, 0, 0, 0));
    /* the idle one first; picks since the report count as load, so a burst spreads */
    assert_int_equal(pick(p, "m", "text"), 2);
    int n[6] = {0};
    for (int i = 0; i < 8; i++) {
        n[pick(p, "m", "text")]++;
    }
    /* loads: 1 -> 7, 2 -> 1 + picks, 3 -> 3 + picks: 8 picks fill 2 and 3 up to 7 first */
    assert_int_equal(n[1], 0);
    assert_int_equal(n[2] + n[3], 8);
    assert_true(n[2] >= 5);
    /* a new report resets what was counted since */
    assert_true(tb_instance_dir_load(g_dir, 1, 0, 0, 0, 100));
    assert_int_equal(pick(p, "m", "text"), 1);
    /* KV use breaks ties */
    tb_instance_dir_load(g_dir, 1, 1, 0, 90, 100);
    tb_instance_dir_load(g_dir, 2, 1, 0, 10, 100);
    tb_instance_dir_load(g_dir, 3, 1, 0, 50, 100);
    assert_int_equal(pick(p, "m", "text"), 2);
    tb_rpolicy_destroy(&p);
}

static void test_least_loaded_without_reports(void **state)
{
    (void)state;
    tb_rpolicy_t *p = three(TB_RP_LEAST_LOADED, 1);
    int n[6] = {0};
    for (int i = 0; i < 9; i++) {
        n[pick(p, "m", "text")]++;
    }
    assert_int_equal(n[1], 3);
    assert_int_equal(n[2], 3);
    assert_int_equal(n[3], 3);
    assert_int_equal(tb_instance_dir_count(g_dir), 5);
    assert_int_equal(tb_instance_dir_at(g_dir, 0)->served, 3);
    assert_int_equal(tb_instance_dir_at(g_dir, 0)->pending, 3); /* no report since */
    assert_int_equal(tb_rpolicy_kind(p), TB_RP_LEAST_LOADED);
    tb_rpolicy_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_round_robin, teardown),
        cmocka_unit_test_teardown(test_random, teardown),
        cmocka_unit_test_teardown(test_least_loaded, teardown),
        cmocka_unit_test_teardown(test_least_loaded_without_reports, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
