/* Unit tests of tb_model_table: models appear with their first instance and go with their last,
 * only the wanted kind counts, health states drive readiness and picking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/http/tb_model_table.h" /* plugin-private header */

static struct tb_route route(uint64_t id, const char *model, const char *kind)
{
    struct tb_route r = {.endpoint = "ns.engine.generate", .instance_id = id, .model = model,
                         .kind = kind, .context_length = 4096, .info = "{}", .local = true};
    return r;
}

static void test_models_follow_instances(void **state)
{
    (void)state;
    tb_model_table_t *t = tb_model_table_new("text");
    assert_non_null(t);
    struct tb_route a = route(1, "alpha", "text");
    struct tb_route b = route(2, "alpha", NULL); /* no kind means text */
    struct tb_route c = route(3, "beta", "text");
    struct tb_route tok = route(4, "gamma", "tokens");
    struct tb_route none = route(5, "", "text");
    struct tb_route rt = route(6, NULL, "route");
    assert_int_equal(tb_model_table_add(t, &a, 100), 1);
    assert_int_equal(tb_model_table_add(t, &a, 100), 0); /* known */
    assert_int_equal(tb_model_table_add(t, &b, 200), 1);
    assert_int_equal(tb_model_table_add(t, &c, 300), 1);
    assert_int_equal(tb_model_table_add(t, &tok, 300), 0);
    assert_int_equal(tb_model_table_add(t, &none, 300), 0);
    assert_int_equal(tb_model_table_add(t, &rt, 300), 0);
    assert_int_equal(tb_model_table_count(t), 3);
    assert_int_equal(tb_model_table_model_count(t), 2);
    const struct tb_mt_model *m = tb_model_table_model(t, "alpha");
    assert_non_null(m);
    assert_int_equal(m->instances, 2);
    assert_int_equal(m->created, 100);
    assert_null(tb_model_table_model(t, "gamma"));
    assert_string_equal(tb_model_table_model_at(t, 1)->name, "beta");
    assert_int_equal(tb_model_table_get(t, 3)->context_length, 4096);

    bool gone = true;
    assert_true(tb_model_table_remove(t, 1, &gone));
    assert_false(gone);
    assert_false(tb_model_table_remove(t, 1, &gone));
    assert_true(tb_model_table_remove(t, 2, &gone));
    assert_true(gone);
    assert_null(tb_model_table_model(t, "alpha"));
    assert_int_equal(tb_model_table_model_count(t), 1);
    assert_null(tb_model_table_pick(t, "alpha"));
    /* a model that comes back is a new model */
    assert_int_equal(tb_model_table_add(t, &a, 999), 1);
    assert_int_equal(tb_model_table_model(t, "alpha")->created, 999);
    tb_model_table_destroy(&t);
    assert_null(t);
}

static void test_health_and_pick(void **state)
{
    (void)state;
    tb_model_table_t *t = tb_model_table_new("text");
    struct tb_route r1 = route(11, "m", "text");
    struct tb_route r2 = route(12, "m", "text");
    struct tb_route r3 = route(13, "other", "text");
    tb_model_table_add(t, &r1, 1);
    tb_model_table_add(t, &r2, 1);
    tb_model_table_add(t, &r3, 1);
    assert_false(tb_model_table_is_ready(t));
    /* round robin over both while none is known bad */
    int seen11 = 0, seen12 = 0;
    for (int i = 0; i < 10; i++) {
        struct tb_mt_instance *p = tb_model_table_pick(t, "m");
        assert_non_null(p);
        assert_string_equal(p->model, "m");
        seen11 += p->instance_id == 11;
        seen12 += p->instance_id == 12;
    }
    assert_int_equal(seen11, 5);
    assert_int_equal(seen12, 5);
    struct tb_mt_instance *i11 = tb_model_table_get(t, 11);
    struct tb_mt_instance *i12 = tb_model_table_get(t, 12);
    tb_model_table_set_state(t, i11, TB_INST_HEALTHY);
    assert_true(tb_model_table_is_ready(t));
    assert_int_equal(tb_model_table_model(t, "m")->healthy, 1);
    tb_model_table_set_state(t, i12, TB_INST_UNHEALTHY);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tb_model_table_pick(t, "m")->instance_id, 11);
    }
    /* all bad: still answer (the bus says whether it is alive) */
    tb_model_table_set_state(t, i11, TB_INST_UNHEALTHY);
    assert_false(tb_model_table_is_ready(t));
    assert_int_equal(tb_model_table_model(t, "m")->healthy, 0);
    assert_non_null(tb_model_table_pick(t, "m"));
    tb_model_table_set_state(t, i12, TB_INST_HEALTHY);
    assert_true(tb_model_table_remove(t, 12, NULL));
    assert_false(tb_model_table_is_ready(t)); /* the healthy one left */
    tb_model_table_destroy(&t);
}

static void test_other_kind(void **state)
{
    (void)state;
    tb_model_table_t *t = tb_model_table_new("tokens");
    struct tb_route a = route(1, "m", "tokens");
    struct tb_route b = route(2, "m", "text");
    assert_int_equal(tb_model_table_add(t, &a, 1), 1);
    assert_int_equal(tb_model_table_add(t, &b, 1), 0);
    tb_model_table_destroy(&t);
    tb_model_table_destroy(&t); /* NULL is accepted */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models_follow_instances),
        cmocka_unit_test(test_health_and_pick),
        cmocka_unit_test(test_other_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
