/* Unit tests of tb_kv_index, the router's prefix index: stored blocks are found as leading runs
 * per instance, removals and clears take effect, sequence gaps are reported (and a snapshot
 * replaces the instance's entries and clears the gap), an instance that goes away leaves no
 * entry, predictions expire, and old or duplicate events change nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../plugins/router/tb_kv_index.h" /* plugin-private header */
#include "tb_block_hash.h"
#include "tb_errors.h"

#define A 0xa1
#define B 0xb2

static size_t g_n;
static struct tb_kv_overlap g_out[8];

/* Overlap of `id` for `chain[0..n)` (0 when it holds nothing of it). */
static uint32_t overlap(tb_kv_index_t *x, const uint64_t *chain, size_t n, uint64_t id,
                        int64_t now)
{
    g_n = tb_kv_index_match(x, chain, n, now, g_out, 8);
    for (size_t i = 0; i < g_n; i++) {
        if (g_out[i].instance_id == id) {
            return g_out[i].blocks;
        }
    }
    return 0;
}

static int stored(tb_kv_index_t *x, uint64_t id, uint64_t seq, const uint64_t *h, size_t n)
{
    struct tb_kv_index_event ev = {.instance_id = id, .seq = seq, .stored = h, .n_stored = n};
    return tb_kv_index_apply(x, &ev);
}

/* A chain of 8 real block hashes over tokens 0..127 (block size 16). */
static void chain(uint64_t *out, int32_t salt)
{
    int32_t toks[128];
    for (int i = 0; i < 128; i++) {
        toks[i] = i + salt;
    }
    assert_int_equal(tb_block_hash_chain(TB_BLOCK_HASH_ROOT, toks, 128, 16, out, 8), 8);
}

static void test_insert_and_match(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    assert_non_null(x);
    uint64_t c[8], d[8];
    chain(c, 0);
    chain(d, 1000);
    assert_int_equal(stored(x, A, 1, c, 5), 0); /* A holds blocks 0..4 */
    assert_int_equal(stored(x, B, 1, c, 2), 0); /* B holds blocks 0..1 */
    assert_int_equal(overlap(x, c, 8, A, 0), 5);
    assert_int_equal(overlap(x, c, 8, B, 0), 2);
    assert_int_equal(g_n, 2);
    /* a prompt that diverges after block 2 matches at most 3 */
    uint64_t e[8];
    memcpy(e, c, sizeof(e));
    e[3] = 12345;
    assert_int_equal(overlap(x, e, 8, A, 0), 3);
    /* another prefix: nobody */
    assert_int_equal(overlap(x, d, 8, A, 0), 0);
    assert_int_equal(g_n, 0);
    /* a hole in A's run stops its count there, even if later blocks are held */
    struct tb_kv_index_event rm = {.instance_id = A, .seq = 2, .removed = &c[1], .n_removed = 1};
    assert_int_equal(tb_kv_index_apply(x, &rm), 0);
    assert_int_equal(overlap(x, c, 8, A, 0), 1);
    assert_int_equal(overlap(x, c, 8, B, 0), 2);
    assert_int_equal(tb_kv_index_instance_blocks(x, A), 4);
    struct tb_kv_index_stats st;
    tb_kv_index_get_stats(x, &st);
    assert_int_equal(st.entries, 6);
    assert_int_equal(st.nodes, 5); /* c[0..4] */
    assert_int_equal(st.instances, 2);
    tb_kv_index_destroy(&x);
    assert_null(x);
    tb_kv_index_destroy(&x);
}

static void test_cleared_and_duplicates(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    uint64_t c[8];
    chain(c, 7);
    assert_int_equal(stored(x, A, 1, c, 4), 0);
    /* the same event again, and an older one, are ignored */
    uint64_t extra = 99;
    assert_int_equal(stored(x, A, 1, &extra, 1), 0);
    assert_int_equal(tb_kv_index_instance_blocks(x, A), 4);
    /* a clear forgets everything, then applies what the event stores */
    struct tb_kv_index_event ev = {
        .instance_id = A, .seq = 2, .cleared = true, .stored = c, .n_stored = 1};
    assert_int_equal(tb_kv_index_apply(x, &ev), 0);
    assert_int_equal(overlap(x, c, 8, A, 0), 1);
    assert_int_equal(tb_kv_index_instance_blocks(x, A), 1);
    /* unnumbered events (seq 0) always apply */
    assert_int_equal(stored(x, A, 0, c, 3), 0);
    assert_int_equal(overlap(x, c, 8, A, 0), 3);
    tb_kv_index_destroy(&x);
}

static void test_gap_then_snapshot(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    uint64_t c[8];
    chain(c, 3);
    assert_int_equal(stored(x, A, 1, c, 2), 0);
    assert_false(tb_kv_index_snapshot_due(x, A, 100, 1000)); /* nothing missing */
    /* seq 3 after 1: event 2 was lost; the event still applies */
    assert_int_equal(stored(x, A, 3, &c[2], 1), TB_KV_INDEX_GAP);
    assert_int_equal(overlap(x, c, 8, A, 0), 3);
    assert_true(tb_kv_index_snapshot_due(x, A, 100, 1000));
    assert_false(tb_kv_index_snapshot_due(x, A, 500, 1000)); /* asked already */
    assert_true(tb_kv_index_snapshot_due(x, A, 1200, 1000)); /* not answered: ask again */
    /* the snapshot replaces everything: A really holds blocks 0..5 */
    struct tb_kv_index_event snap = {
        .instance_id = A, .seq = 4, .snapshot = true, .stored = c, .n_stored = 6};
    assert_int_equal(tb_kv_index_apply(x, &snap), 0);
    assert_int_equal(overlap(x, c, 8, A, 0), 6);
    assert_false(tb_kv_index_snapshot_due(x, A, 5000, 1000));
    /* numbering goes on from the snapshot's seq */
    assert_int_equal(stored(x, A, 5, &c[6], 1), 0);
    assert_int_equal(overlap(x, c, 8, A, 0), 7);
    /* an instance first heard of mid-stream (seq > 1) has missed its start */
    assert_int_equal(stored(x, B, 9, c, 1), TB_KV_INDEX_GAP);
    struct tb_kv_index_stats st;
    tb_kv_index_get_stats(x, &st);
    assert_int_equal(st.gaps, 2);
    assert_int_equal(st.snapshots, 1);
    tb_kv_index_destroy(&x);
}

static void test_instance_loss(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    uint64_t c[8];
    chain(c, 11);
    assert_int_equal(stored(x, A, 1, c, 8), 0);
    assert_int_equal(stored(x, B, 1, c, 3), 0);
    tb_kv_index_remove_instance(x, A);
    assert_int_equal(overlap(x, c, 8, A, 0), 0);
    assert_int_equal(overlap(x, c, 8, B, 0), 3);
    assert_int_equal(g_n, 1);
    struct tb_kv_index_stats st;
    tb_kv_index_get_stats(x, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.nodes, 3); /* blocks only A held are gone */
    assert_int_equal(st.instances, 1);
    tb_kv_index_remove_instance(x, A); /* again: nothing */
    tb_kv_index_remove_instance(x, B);
    tb_kv_index_get_stats(x, &st);
    assert_int_equal(st.entries + st.nodes + st.instances, 0);
    /* an id seen again starts afresh (no stale numbering) */
    assert_int_equal(stored(x, A, 1, c, 1), 0);
    tb_kv_index_destroy(&x);
}

static void test_predictions_expire(void **state)
{
    (void)state;
    tb_kv_index_t *x = tb_kv_index_new();
    uint64_t c[8];
    chain(c, 5);
    assert_int_equal(tb_kv_index_predict(x, A, c, 4, 1000), 0);
    assert_int_equal(overlap(x, c, 8, A, 999), 4);
    assert_int_equal(overlap(x, c, 8, A, 1000), 0); /* expired: not counted */
    /* a refresh extends the expiry of what it covers */
    assert_int_equal(tb_kv_index_predict(x, A, c, 2, 3000), 0);
    assert_int_equal(overlap(x, c, 8, A, 2000), 2);
    tb_kv_index_expire(x, 2000);
    struct tb_kv_index_stats st;
    tb_kv_index_get_stats(x, &st);
    assert_int_equal(st.entries, 2);
    /* an event-fed entry never expires, even when predicted too */
    assert_int_equal(stored(x, B, 1, c, 1), 0);
    assert_int_equal(tb_kv_index_predict(x, B, c, 1, 10), 0);
    tb_kv_index_expire(x, 5000);
    assert_int_equal(overlap(x, c, 8, B, 5000), 1);
    assert_int_equal(overlap(x, c, 8, A, 5000), 0);
    tb_kv_index_destroy(&x);
}

static void test_many_blocks(void **state)
{
    (void)state;
    /* enough nodes to grow the table several times; every run still matches */
    tb_kv_index_t *x = tb_kv_index_new();
    enum { N = 5000 };
    static int32_t toks[N * 4];
    static uint64_t h[N];
    for (int i = 0; i < N * 4; i++) {
        toks[i] = i * 7 + 1;
    }
    assert_int_equal(tb_block_hash_chain(TB_BLOCK_HASH_ROOT, toks, N * 4, 4, h, N), N);
    assert_int_equal(stored(x, A, 1, h, N), 0);
    assert_int_equal(stored(x, B, 1, h, N / 2), 0);
    assert_int_equal(overlap(x, h, N, A, 0), N);
    assert_int_equal(overlap(x, h, N, B, 0), N / 2);
    tb_kv_index_destroy(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_and_match),   cmocka_unit_test(test_cleared_and_duplicates),
        cmocka_unit_test(test_gap_then_snapshot),  cmocka_unit_test(test_instance_loss),
        cmocka_unit_test(test_predictions_expire), cmocka_unit_test(test_many_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
