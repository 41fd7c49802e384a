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

#include "../../../plugins/router/tb_kv_index.h"      /* plugin-private header */
#include "../../../plugins/router/tb_router_policy.h" /* plugin-private header */
#include "tb_block_hash.h"
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

/* ---- kv_aware ---- */

static int32_t g_prompt[128]; /* 8 blocks of 16 */

static uint64_t kv_pick(tb_rpolicy_t *p, const uint64_t *exclude, size_t n_exclude, int64_t now)
{
    struct tb_idir_instance *i = NULL;
    struct tb_rp_query q = {.model = "m",
                            .kind = "text",
                            .tokens = g_prompt,
                            .n_tokens = 128,
                            .exclude = exclude,
                            .n_exclude = n_exclude,
                            .now_ns = now};
    assert_int_equal(tb_rpolicy_pick(p, g_dir, &q, &i), 0);
    return i->instance_id;
}

/* Instances 1..3 report no load at all (prefill and decode blocks 0). */
static void idle(void)
{
    for (uint64_t id = 1; id <= 3; id++) {
        assert_true(tb_instance_dir_load(g_dir, id, 0, 0, 0, 100));
        assert_true(tb_instance_dir_load_blocks(g_dir, id, 0, 0));
    }
}

static tb_rpolicy_t *kv_policy(tb_kv_index_t *x, double weight, double temperature,
                               tb_rp_kv_mode_t mode)
{
    tb_rpolicy_t *p = three(TB_RP_KV_AWARE, 3);
    struct tb_rp_kv_config kc = {.prefill_weight = weight,
                                 .temperature = temperature,
                                 .mode = mode,
                                 .approx_ttl_ns = 1000};
    tb_rpolicy_set_kv(p, &kc, x);
    for (int i = 0; i < 128; i++) {
        g_prompt[i] = 100 + i;
    }
    idle();
    return p;
}

/* Instance `id` holds the prompt's first `blocks` blocks, as its engine announced them. */
static void holds(tb_kv_index_t *x, uint64_t id, uint64_t seq, uint32_t blocks)
{
    uint64_t h[8];
    assert_int_equal(tb_block_hash_chain(TB_BLOCK_HASH_ROOT, g_prompt, 128, 16, h, 8), 8);
    struct tb_kv_index_event ev = {.instance_id = id,
                                   .seq = seq,
                                   .stored = h,
                                   .n_stored = blocks};
    assert_int_equal(tb_kv_index_apply(x, &ev), 0);
}

static void test_kv_aware_prefers_the_cached_prefix(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    tb_rpolicy_t *p = kv_policy(x, 1.0, 0, TB_RP_KV_EVENTS);
    holds(x, 3, 1, 8);
    holds(x, 2, 1, 3);
    for (int k = 0; k < 5; k++) {
        idle(); /* reports in between: no request counts as pending prefill */
        assert_int_equal(kv_pick(p, NULL, 0, 0), 3);
    }
    const struct tb_rp_kv_decision *d = tb_rpolicy_last_kv(p);
    assert_int_equal(d->prompt_blocks, 8);
    assert_int_equal(d->overlap_blocks, 8);
    assert_int_equal(d->best_overlap, 8);
    assert_true(d->cost == 0);
    /* the instance goes away: the one with the next longest prefix wins */
    tb_kv_index_remove_instance(x, 3);
    idle();
    assert_int_equal(kv_pick(p, NULL, 0, 0), 2);
    assert_int_equal(tb_rpolicy_last_kv(p)->overlap_blocks, 3);
    assert_string_equal(tb_rpolicy_name(TB_RP_KV_AWARE), "kv_aware");
    tb_rpolicy_destroy(&p);
    tb_kv_index_destroy(&x);
}

static void test_kv_aware_weighs_load(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    tb_rpolicy_t *p = kv_policy(x, 1.0, 0, TB_RP_KV_EVENTS);
    holds(x, 1, 1, 8);
    /* instance 1 holds the prefix but decodes 100 blocks: 100 > 8 prompt blocks elsewhere */
    tb_instance_dir_load_blocks(g_dir, 1, 0, 100);
    tb_instance_dir_load_blocks(g_dir, 2, 0, 5);
    tb_instance_dir_load_blocks(g_dir, 3, 0, 1);
    assert_int_equal(kv_pick(p, NULL, 0, 0), 3); /* cost 8 + 1 */
    tb_rpolicy_destroy(&p);
    /* prefill weighted 20x: 20 * 8 + 1 > 100, the cached one wins */
    p = kv_policy(x, 20.0, 0, TB_RP_KV_EVENTS);
    tb_instance_dir_load_blocks(g_dir, 1, 0, 100);
    assert_int_equal(kv_pick(p, NULL, 0, 0), 1);
    /* active prefill counts: instance 1 has 200 prompt blocks queued */
    tb_instance_dir_load(g_dir, 1, 0, 0, 0, 100);
    tb_instance_dir_load_blocks(g_dir, 1, 200, 0);
    assert_int_not_equal(kv_pick(p, NULL, 0, 0), 1);
    tb_rpolicy_destroy(&p);
    tb_kv_index_destroy(&x);
}

static void test_kv_aware_spreads_a_burst_and_breaks_ties_by_load(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    tb_rpolicy_t *p = kv_policy(x, 1.0, 0, TB_RP_KV_EVENTS);
    /* nothing cached anywhere, no report between picks: the prompt blocks sent count as the
     * instance's pending prefill, so three picks go to three instances */
    int n[6] = {0};
    for (int k = 0; k < 3; k++) {
        n[kv_pick(p, NULL, 0, 0)]++;
    }
    assert_int_equal(n[1] * n[2] * n[3], 1);
    assert_int_equal(tb_instance_dir_get(g_dir, 1)->pending_prefill, 8);
    /* equal costs: the lower reported load (running + waiting) wins */
    idle();
    tb_instance_dir_load(g_dir, 1, 4, 0, 0, 100);
    tb_instance_dir_load(g_dir, 2, 0, 0, 0, 100);
    tb_instance_dir_load(g_dir, 3, 2, 0, 0, 100);
    assert_int_equal(kv_pick(p, NULL, 0, 0), 2);
    tb_rpolicy_destroy(&p);
    tb_kv_index_destroy(&x);
}

static void test_kv_aware_exclude_and_no_index(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    tb_rpolicy_t *p = kv_policy(x, 1.0, 0, TB_RP_KV_EVENTS);
    holds(x, 2, 1, 8);
    uint64_t ex[] = {2};
    assert_int_not_equal(kv_pick(p, ex, 1, 0), 2); /* a migrating request avoids it */
    uint64_t all[] = {1, 2, 3};
    idle();
    assert_int_equal(kv_pick(p, all, 3, 0), 2); /* unless nothing else is left */
    tb_rpolicy_destroy(&p);
    /* without an index it is least_loaded */
    p = three(TB_RP_KV_AWARE, 3);
    idle();
    tb_instance_dir_load(g_dir, 1, 3, 0, 0, 100);
    tb_instance_dir_load(g_dir, 3, 3, 0, 0, 100);
    assert_int_equal(kv_pick(p, NULL, 0, 0), 2);
    tb_rpolicy_destroy(&p);
    tb_kv_index_destroy(&x);
}

static void test_kv_aware_temperature(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    tb_rpolicy_t *p = kv_policy(x, 1.0, 0.5, TB_RP_KV_EVENTS);
    holds(x, 1, 1, 8);
    int n[6] = {0};
    for (int k = 0; k < 300; k++) {
        idle();
        n[kv_pick(p, NULL, 0, 0)]++;
    }
    /* costs 0, 8, 8 normalised to 0, 1, 1: weights 1, e^-2, e^-2 -> about 79% on instance 1 */
    assert_true(n[1] > 200 && n[1] < 270);
    assert_true(n[2] > 5 && n[3] > 5);
    tb_rpolicy_destroy(&p);
    tb_kv_index_destroy(&x);
}

static void test_kv_aware_approximate(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    tb_rpolicy_t *p = kv_policy(x, 1.0, 0, TB_RP_KV_APPROX);
    /* the first pick is a guess; the same prompt then follows it while the prediction lives */
    uint64_t first = kv_pick(p, NULL, 0, 100);
    for (int k = 0; k < 4; k++) {
        idle();
        assert_int_equal(kv_pick(p, NULL, 0, 200 + k), first);
        assert_int_equal(tb_rpolicy_last_kv(p)->overlap_blocks, 8);
    }
    /* after the ttl (1000 ns from the last pick) nothing is predicted any more */
    idle();
    kv_pick(p, NULL, 0, 5000);
    assert_int_equal(tb_rpolicy_last_kv(p)->best_overlap, 0);
    tb_rpolicy_destroy(&p);
    tb_kv_index_destroy(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_round_robin, teardown),
        cmocka_unit_test_teardown(test_random, teardown),
        cmocka_unit_test_teardown(test_least_loaded, teardown),
        cmocka_unit_test_teardown(test_least_loaded_without_reports, teardown),
        cmocka_unit_test_teardown(test_kv_aware_prefers_the_cached_prefix, teardown),
        cmocka_unit_test_teardown(test_kv_aware_weighs_load, teardown),
        cmocka_unit_test_teardown(test_kv_aware_spreads_a_burst_and_breaks_ties_by_load,
                                  teardown),
        cmocka_unit_test_teardown(test_kv_aware_exclude_and_no_index, teardown),
        cmocka_unit_test_teardown(test_kv_aware_temperature, teardown),
        cmocka_unit_test_teardown(test_kv_aware_approximate, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
