/* Unit tests of tb_instance_dir: models appear with their first instance and go with their last,
 * only the wanted kinds count, health states drive readiness and the fallback choice, load
 * reports and context lengths are kept per instance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tb_instance_dir.h"

static struct tb_route route(uint64_t id, const char *model, const char *kind)
{
    struct tb_route r = {.endpoint = "ns.engine.generate",
                         .instance_id = id,
                         .model = model,
                         .kind = kind,
                         .context_length = 4096,
                         .info = "{}",
                         .local = true};
    return r;
}

static void test_models_follow_instances(void **state)
{
    (void)state;
    tb_instance_dir_t *t = tb_instance_dir_new("text");
    assert_non_null(t);
    struct tb_route a = route(1, "alpha", "text");
    struct tb_route b = route(2, "alpha", NULL); /* no kind means text */
    struct tb_route c = route(3, "beta", "text");
    struct tb_route tok = route(4, "gamma", "tokens");
    struct tb_route none = route(5, "", "text");
    struct tb_route rt = route(6, NULL, "route");
    assert_int_equal(tb_instance_dir_add(t, &a, 100), 1);
    assert_int_equal(tb_instance_dir_add(t, &a, 100), 0); /* known */
    assert_int_equal(tb_instance_dir_add(t, &b, 200), 1);
    assert_int_equal(tb_instance_dir_add(t, &c, 300), 1);
    assert_int_equal(tb_instance_dir_add(t, &tok, 300), 0);
    assert_int_equal(tb_instance_dir_add(t, &none, 300), 0);
    assert_int_equal(tb_instance_dir_add(t, &rt, 300), 0);
    assert_int_equal(tb_instance_dir_count(t), 3);
    assert_int_equal(tb_instance_dir_model_count(t), 2);
    const struct tb_idir_model *m = tb_instance_dir_model(t, "alpha");
    assert_non_null(m);
    assert_int_equal(m->instances, 2);
    assert_int_equal(m->created, 100);
    assert_null(tb_instance_dir_model(t, "gamma"));
    assert_string_equal(tb_instance_dir_model_at(t, 1)->name, "beta");
    assert_int_equal(tb_instance_dir_get(t, 3)->context_length, 4096);

    bool gone = true;
    assert_true(tb_instance_dir_remove(t, 1, &gone));
    assert_false(gone);
    assert_false(tb_instance_dir_remove(t, 1, &gone));
    assert_true(tb_instance_dir_remove(t, 2, &gone));
    assert_true(gone);
    assert_null(tb_instance_dir_model(t, "alpha"));
    assert_int_equal(tb_instance_dir_model_count(t), 1);
    assert_null(tb_instance_dir_next(t, "alpha"));
    /* a model that comes back is a new model */
    assert_int_equal(tb_instance_dir_add(t, &a, 999), 1);
    assert_int_equal(tb_instance_dir_model(t, "alpha")->created, 999);
    tb_instance_dir_destroy(&t);
    assert_null(t);
}

static void test_health_and_pick(void **state)
{
    (void)state;
    tb_instance_dir_t *t = tb_instance_dir_new("text");
    struct tb_route r1 = route(11, "m", "text");
    struct tb_route r2 = route(12, "m", "text");
    struct tb_route r3 = route(13, "other", "text");
    tb_instance_dir_add(t, &r1, 1);
    tb_instance_dir_add(t, &r2, 1);
    tb_instance_dir_add(t, &r3, 1);
    assert_false(tb_instance_dir_is_ready(t));
    /* round robin over both while none is known bad */
    int seen11 = 0, seen12 = 0;
    for (int i = 0; i < 10; i++) {
        struct tb_idir_instance *p = tb_instance_dir_next(t, "m");
        assert_non_null(p);
        assert_string_equal(p->model, "m");
        seen11 += p->instance_id == 11;
        seen12 += p->instance_id == 12;
    }
    assert_int_equal(seen11, 5);
    assert_int_equal(seen12, 5);
    struct tb_idir_instance *i11 = tb_instance_dir_get(t, 11);
    struct tb_idir_instance *i12 = tb_instance_dir_get(t, 12);
    tb_instance_dir_set_state(t, i11, TB_INST_HEALTHY);
    assert_true(tb_instance_dir_is_ready(t));
    assert_int_equal(tb_instance_dir_model(t, "m")->healthy, 1);
    tb_instance_dir_set_state(t, i12, TB_INST_UNHEALTHY);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tb_instance_dir_next(t, "m")->instance_id, 11);
    }
    /* all bad: still answer (the bus says whether it is alive) */
    tb_instance_dir_set_state(t, i11, TB_INST_UNHEALTHY);
    assert_false(tb_instance_dir_is_ready(t));
    assert_int_equal(tb_instance_dir_model(t, "m")->healthy, 0);
    assert_non_null(tb_instance_dir_next(t, "m"));
    tb_instance_dir_set_state(t, i12, TB_INST_HEALTHY);
    assert_true(tb_instance_dir_remove(t, 12, NULL));
    assert_false(tb_instance_dir_is_ready(t)); /* the healthy one left */
    tb_instance_dir_destroy(&t);
}

static void test_other_kind(void **state)
{
    (void)state;
    tb_instance_dir_t *t = tb_instance_dir_new("tokens");
    struct tb_route a = route(1, "m", "tokens");
    struct tb_route b = route(2, "m", "text");
    assert_int_equal(tb_instance_dir_add(t, &a, 1), 1);
    assert_int_equal(tb_instance_dir_add(t, &b, 1), 0);
    tb_instance_dir_destroy(&t);
    tb_instance_dir_destroy(&t); /* NULL is accepted */
}

static void test_several_kinds(void **state)
{
    (void)state;
    tb_instance_dir_t *d = tb_instance_dir_new("text,tokens");
    assert_non_null(d);
    struct tb_route a = route(1, "m", "tokens");
    struct tb_route b = route(2, "m", "text");
    struct tb_route c = route(3, "m", NULL); /* text */
    struct tb_route r = route(4, "m", "route");
    struct tb_route t = route(5, "m", "tok"); /* a prefix of a wanted kind */
    struct tb_route x = route(6, "m", "text,tokens");
    assert_int_equal(tb_instance_dir_add(d, &a, 1), 1);
    assert_int_equal(tb_instance_dir_add(d, &b, 1), 1);
    assert_int_equal(tb_instance_dir_add(d, &c, 1), 1);
    assert_int_equal(tb_instance_dir_add(d, &r, 1), 0);
    assert_int_equal(tb_instance_dir_add(d, &t, 1), 0);
    assert_int_equal(tb_instance_dir_add(d, &x, 1), 0);
    assert_int_equal(tb_instance_dir_count(d), 3);
    assert_string_equal(tb_instance_dir_get(d, 3)->kind, "text");
    assert_int_equal(tb_instance_dir_model(d, "m")->instances, 3);
    /* instances stay in the order they came */
    assert_int_equal(tb_instance_dir_at(d, 0)->instance_id, 1);
    assert_int_equal(tb_instance_dir_at(d, 2)->instance_id, 3);
    assert_null(tb_instance_dir_at(d, 3));
    tb_instance_dir_destroy(&d);
}

static void test_load_and_context(void **state)
{
    (void)state;
    tb_instance_dir_t *d = tb_instance_dir_new("tokens");
    struct tb_route a = route(1, "m", "tokens");
    struct tb_route b = route(2, "m", "tokens");
    struct tb_route c = route(3, "other", "tokens");
    b.context_length = 1024;
    b.kv_block_size = 16;
    c.context_length = 10;
    a.context_length = 0; /* not announced */
    tb_instance_dir_add(d, &a, 1);
    tb_instance_dir_add(d, &b, 1);
    tb_instance_dir_add(d, &c, 1);
    assert_int_equal(tb_instance_dir_min_context(d, "m"), 1024);
    assert_int_equal(tb_instance_dir_min_context(d, "other"), 10);
    assert_int_equal(tb_instance_dir_min_context(d, "absent"), 0);
    assert_int_equal(tb_instance_dir_get(d, 2)->kv_block_size, 16);

    struct tb_idir_instance *i = tb_instance_dir_get(d, 1);
    assert_false(i->has_load);
    i->pending = 3;
    assert_true(tb_instance_dir_load(d, 1, 4, 2, 10, 100));
    assert_true(i->has_load);
    assert_int_equal(i->running, 4);
    assert_int_equal(i->waiting, 2);
    assert_int_equal(i->kv_used, 10);
    assert_int_equal(i->kv_total, 100);
    assert_int_equal(i->pending, 0); /* the report covers what was sent before it */
    assert_false(tb_instance_dir_load(d, 99, 0, 0, 0, 0));
    tb_instance_dir_destroy(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models_follow_instances),
        cmocka_unit_test(test_health_and_pick),
        cmocka_unit_test(test_other_kind),
        cmocka_unit_test(test_several_kinds),
        cmocka_unit_test(test_load_and_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
