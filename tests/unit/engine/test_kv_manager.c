/*
 * test_kv_manager.c - block allocation, reference counts, the chained block hash, prefix
 * reuse, LRU eviction of cached blocks, events and the hash map under churn.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_block_hash.h"
#include "tb_errors.h"
#include "tb_kv_manager.h"
#include "tb_rng.h"

static tb_kv_manager_t *s_new(uint32_t n_blocks, uint32_t bs, bool caching, uint32_t ev_cap)
{
    struct tb_kv_config cfg;
    tb_kv_config_init(&cfg);
    cfg.n_blocks = n_blocks;
    cfg.block_size = bs;
    cfg.prefix_caching = caching;
    cfg.event_capacity = ev_cap;
    tb_kv_manager_t *kv = NULL;
    assert_int_equal(tb_kv_manager_new(&cfg, &kv), 0);
    assert_non_null(kv);
    return kv;
}

static void s_fill(int32_t *t, uint32_t n, int32_t base)
{
    for (uint32_t i = 0; i < n; i++) {
        t[i] = base + (int32_t)i;
    }
}

static uint32_t s_drain(tb_kv_manager_t *kv, struct tb_kv_event *evs, uint32_t max)
{
    uint32_t n = 0;
    struct tb_kv_event ev;
    while (tb_kv_manager_pop_event(kv, &ev) == 0) {
        if (n < max) {
            evs[n] = ev;
        }
        n++;
    }
    return n;
}

static void test_config_errors(void **state)
{
    (void)state;
    struct tb_kv_config cfg;
    tb_kv_config_init(&cfg);
    assert_int_equal(cfg.block_size, 16);
    assert_true(cfg.prefix_caching);
    assert_true(cfg.hash_root == TB_BLOCK_HASH_ROOT);
    tb_kv_manager_t *kv = NULL;
    assert_int_equal(tb_kv_manager_new(&cfg, &kv), TB_ECONFIG); /* n_blocks 0 */
    assert_null(kv);
    cfg.n_blocks = 8;
    cfg.block_size = 0;
    assert_int_equal(tb_kv_manager_new(&cfg, &kv), TB_ECONFIG);
    cfg.block_size = 5000;
    assert_int_equal(tb_kv_manager_new(&cfg, &kv), TB_ECONFIG);
    assert_null(kv);
    tb_kv_manager_destroy(&kv); /* NULL-safe */
    tb_kv_manager_destroy(NULL);
}

/* Golden values from an independent byte-wise MurmurHash64A written in Python over the
 * little-endian int32 bytes: other implementations (the router) must agree with these. */
static void test_hash_golden(void **state)
{
    (void)state;
    int32_t a[3] = {1, 2, 3};
    int32_t b[16], c[16];
    s_fill(b, 16, 0);
    s_fill(c, 16, 100);
    int32_t d[3] = {-1, 151935, 7};
    assert_true(tb_block_hash(TB_BLOCK_HASH_ROOT, NULL, 0) == 0xc25dd9d152bf1d3cULL);
    assert_true(tb_block_hash(TB_BLOCK_HASH_ROOT, a, 3) == 0x63019e50eac304a6ULL);
    uint64_t h1 = tb_block_hash(TB_BLOCK_HASH_ROOT, b, 16);
    assert_true(h1 == 0xfdf2e70ca123273cULL);
    assert_true(tb_block_hash(h1, c, 16) == 0xc98a80d5ac48054dULL);
    assert_true(tb_block_hash(0, d, 3) == 0x9923c690f3a91a8bULL);
}

static void test_hash_chain(void **state)
{
    (void)state;
    int32_t t[64], u[64];
    s_fill(t, 64, 10);
    memcpy(u, t, sizeof t);
    u[40] = 9999; /* differs in block 2 (of 16 tokens) */
    uint64_t ht[4], hu[4];
    assert_int_equal(tb_block_hash_chain(TB_BLOCK_HASH_ROOT, t, 64, 16, ht, 4), 4);
    assert_int_equal(tb_block_hash_chain(TB_BLOCK_HASH_ROOT, u, 64, 16, hu, 4), 4);
    assert_true(ht[0] == hu[0] && ht[1] == hu[1]);
    assert_true(ht[2] != hu[2] && ht[3] != hu[3]); /* the change propagates down the chain */
    /* The same block content after a different prefix hashes differently. */
    assert_true(tb_block_hash(ht[0], t + 32, 16) != tb_block_hash(ht[1], t + 32, 16));
    /* Only full blocks; the partial tail is not hashed; max_out caps. */
    assert_int_equal(tb_block_hash_chain(TB_BLOCK_HASH_ROOT, t, 47, 16, ht, 4), 2);
    assert_int_equal(tb_block_hash_chain(TB_BLOCK_HASH_ROOT, t, 64, 16, ht, 1), 1);
    assert_int_equal(tb_block_hash_chain(TB_BLOCK_HASH_ROOT, t, 64, 0, ht, 4), 0);
    /* Order of tokens matters. */
    int32_t x[2] = {1, 2}, y[2] = {2, 1};
    assert_true(tb_block_hash(0, x, 2) != tb_block_hash(0, y, 2));
}

static void test_alloc_release_refcounts(void **state)
{
    (void)state;
    tb_kv_manager_t *kv = s_new(4, 16, true, 16);
    assert_int_equal(tb_kv_manager_n_blocks(kv), 4);
    assert_int_equal(tb_kv_manager_block_size(kv), 16);
    uint32_t b[4];
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(tb_kv_manager_alloc(kv, &b[i]), 0);
        assert_int_equal(b[i], i); /* a fresh cache hands out ascending ids */
        assert_int_equal(tb_kv_manager_ref_count(kv, b[i]), 1);
    }
    uint32_t extra = 77;
    assert_int_equal(tb_kv_manager_alloc(kv, &extra), TB_ENOMEM);
    assert_int_equal(extra, 77);
    struct tb_kv_usage u;
    tb_kv_manager_get_usage(kv, &u);
    assert_int_equal(u.used, 4);
    assert_int_equal(u.free, 0);
    assert_true(u.fraction == 1.0);
    tb_kv_manager_release(kv, b[2]);
    assert_int_equal(tb_kv_manager_ref_count(kv, b[2]), 0);
    tb_kv_manager_release(kv, b[2]); /* double release: ignored */
    tb_kv_manager_release(kv, 1000); /* out of range: ignored */
    assert_int_equal(tb_kv_manager_n_free(kv), 1);
    assert_int_equal(tb_kv_manager_alloc(kv, &extra), 0);
    assert_int_equal(extra, 2);
    assert_int_equal(tb_kv_manager_ref_count(kv, 1000), 0);
    tb_kv_manager_get_usage(kv, &u);
    assert_true(u.fraction == 1.0);
    for (uint32_t i = 0; i < 4; i++) {
        tb_kv_manager_release(kv, b[i]);
    }
    tb_kv_manager_get_usage(kv, &u);
    assert_int_equal(u.used, 0);
    assert_int_equal(u.free, 4);
    assert_int_equal(u.cached, 0);
    struct tb_kv_event ev;
    assert_int_equal(tb_kv_manager_pop_event(kv, &ev), TB_AGAIN); /* nothing was hashed */
    tb_kv_manager_destroy(&kv);
    assert_null(kv);
}

static void test_seq_grow_all_or_nothing(void **state)
{
    (void)state;
    tb_kv_manager_t *kv = s_new(5, 4, true, 16);
    struct tb_kv_seq a, b;
    assert_int_equal(tb_kv_seq_init(&a, 0), TB_EINVAL);
    assert_int_equal(tb_kv_seq_init(&a, 3), 0);
    assert_int_equal(tb_kv_seq_init(&b, 8), 0);
    assert_int_equal(tb_kv_manager_seq_blocks_needed(kv, &a, 9), 3);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &a, 9), 0);
    assert_int_equal(a.n_blocks, 3);
    assert_int_equal(tb_kv_manager_seq_blocks_needed(kv, &a, 12), 0);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &a, 13), TB_E2BIG);  /* beyond its cap */
    assert_int_equal(tb_kv_manager_seq_grow(kv, &b, 12), TB_ENOMEM); /* needs 3, 2 free */
    assert_int_equal(b.n_blocks, 0);
    assert_int_equal(tb_kv_manager_n_free(kv), 2);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &b, 8), 0);
    assert_int_equal(tb_kv_manager_n_free(kv), 0);
    tb_kv_manager_seq_free(kv, &a);
    assert_int_equal(a.n_blocks, 0);
    assert_int_equal(tb_kv_manager_n_free(kv), 3);
    tb_kv_manager_seq_free(kv, &b);
    assert_int_equal(tb_kv_manager_n_free(kv), 5);
    tb_kv_seq_release(&a);
    tb_kv_seq_release(&b);
    tb_kv_seq_release(&b); /* twice is safe */
    tb_kv_manager_destroy(&kv);
}

/* A computes 40 tokens (2 full blocks of 16 and a partial one); B shares its first 35. */
static void test_prefix_reuse(void **state)
{
    (void)state;
    tb_kv_manager_t *kv = s_new(16, 16, true, 64);
    int32_t ta[40], tb[50];
    s_fill(ta, 40, 1000);
    memcpy(tb, ta, 35 * sizeof *ta);
    s_fill(tb + 35, 15, 5000);
    struct tb_kv_seq a, b, c;
    assert_int_equal(tb_kv_seq_init(&a, 8), 0);
    assert_int_equal(tb_kv_seq_init(&b, 8), 0);
    assert_int_equal(tb_kv_seq_init(&c, 8), 0);

    assert_int_equal(tb_kv_manager_seq_match(kv, &a, ta, 40), 0); /* empty cache */
    assert_int_equal(tb_kv_manager_seq_grow(kv, &a, 40), 0);
    tb_kv_manager_seq_commit(kv, &a, ta, 20); /* a first chunk: one full block */
    assert_int_equal(a.n_hashed, 1);
    tb_kv_manager_seq_commit(kv, &a, ta, 40);
    assert_int_equal(a.n_hashed, 2); /* the partial third block is never hashed */
    assert_false(tb_kv_manager_is_hashed(kv, a.blocks[2], NULL));

    uint64_t want[2];
    tb_block_hash_chain(TB_BLOCK_HASH_ROOT, ta, 40, 16, want, 2);
    struct tb_kv_event ev[8];
    assert_int_equal(s_drain(kv, ev, 8), 2);
    assert_int_equal(ev[0].type, TB_KV_EVENT_STORED);
    assert_true(ev[0].hash == want[0]);
    assert_true(ev[0].parent_hash == TB_BLOCK_HASH_ROOT);
    assert_int_equal(ev[0].block, a.blocks[0]);
    assert_true(ev[1].hash == want[1] && ev[1].parent_hash == want[0]);
    uint64_t h;
    assert_true(tb_kv_manager_is_hashed(kv, a.blocks[1], &h) && h == want[1]);

    /* B shares 35 tokens: two full blocks, reused while A still runs. */
    assert_int_equal(tb_kv_manager_seq_match(kv, &b, tb, 50), 32);
    assert_int_equal(b.n_blocks, 2);
    assert_int_equal(b.blocks[0], a.blocks[0]);
    assert_int_equal(b.blocks[1], a.blocks[1]);
    assert_int_equal(tb_kv_manager_ref_count(kv, a.blocks[0]), 2);
    assert_true(b.last_hash == want[1]);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &b, 50), 0);
    assert_true(b.blocks[2] != a.blocks[2]); /* writes go to its own blocks */
    tb_kv_manager_seq_commit(kv, &b, tb, 50);
    assert_int_equal(b.n_hashed, 3);
    assert_int_equal(s_drain(kv, ev, 8), 1); /* only B's third block is new */

    /* A prompt of exactly 32 cached tokens still leaves its last token to compute. */
    assert_int_equal(tb_kv_manager_seq_match(kv, &c, ta, 32), 16);
    tb_kv_manager_seq_free(kv, &c);
    /* A match needs an empty sequence. */
    assert_int_equal(tb_kv_manager_seq_match(kv, &b, tb, 50), 0);

    struct tb_kv_usage u;
    tb_kv_manager_get_usage(kv, &u);
    assert_int_equal(u.query_tokens, 40 + 50 + 32);
    assert_int_equal(u.hit_tokens, 32 + 16);

    tb_kv_manager_seq_free(kv, &a);
    assert_int_equal(tb_kv_manager_ref_count(kv, b.blocks[0]), 1);
    tb_kv_manager_seq_free(kv, &b);
    tb_kv_manager_get_usage(kv, &u);
    assert_int_equal(u.used, 0);
    assert_int_equal(u.cached, 3); /* hashed blocks stay cached after their sequences end */
    /* ... and are found again. */
    assert_int_equal(tb_kv_manager_seq_match(kv, &c, tb, 50), 48);
    tb_kv_manager_get_usage(kv, &u);
    assert_int_equal(u.cached, 0);
    assert_int_equal(u.used, 3);
    tb_kv_manager_seq_free(kv, &c);
    tb_kv_seq_release(&a);
    tb_kv_seq_release(&b);
    tb_kv_seq_release(&c);
    tb_kv_manager_destroy(&kv);
}

/* Unhashed free blocks are taken first; then cached ones, least recently used first, with a
 * REMOVED event; a sequence's tail goes before its prefix. */
static void test_lru_eviction(void **state)
{
    (void)state;
    tb_kv_manager_t *kv = s_new(6, 4, true, 64);
    int32_t t1[12], t2[8];
    s_fill(t1, 12, 100);
    s_fill(t2, 8, 200);
    struct tb_kv_seq a, b;
    assert_int_equal(tb_kv_seq_init(&a, 4), 0);
    assert_int_equal(tb_kv_seq_init(&b, 4), 0);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &a, 12), 0); /* blocks 0 1 2 */
    tb_kv_manager_seq_commit(kv, &a, t1, 12);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &b, 8), 0); /* blocks 3 4 */
    tb_kv_manager_seq_commit(kv, &b, t2, 8);
    struct tb_kv_event ev[16];
    assert_int_equal(s_drain(kv, ev, 16), 5);
    tb_kv_manager_seq_free(kv, &a); /* frees 2, 1, 0 in that order: LRU order 2 1 0 */
    tb_kv_manager_seq_free(kv, &b); /* then 4 3 */
    struct tb_kv_usage u;
    tb_kv_manager_get_usage(kv, &u);
    assert_int_equal(u.cached, 5);
    assert_int_equal(u.free, 6);

    uint32_t blk;
    assert_int_equal(tb_kv_manager_alloc(kv, &blk), 0);
    assert_int_equal(blk, 5); /* the never-hashed block first */
    assert_int_equal(s_drain(kv, ev, 16), 0);
    uint32_t order[5];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(tb_kv_manager_alloc(kv, &order[i]), 0);
        assert_int_equal(s_drain(kv, ev, 16), 1);
        assert_int_equal(ev[0].type, TB_KV_EVENT_REMOVED);
        assert_int_equal(ev[0].block, order[i]);
        assert_false(tb_kv_manager_is_hashed(kv, order[i], NULL));
    }
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 0);
    assert_int_equal(order[3], 4);
    assert_int_equal(order[4], 3);
    tb_kv_manager_get_usage(kv, &u);
    assert_int_equal(u.evictions, 5);
    assert_int_equal(u.cached, 0);
    /* Evicted hashes are gone from the map. */
    struct tb_kv_seq c;
    assert_int_equal(tb_kv_seq_init(&c, 4), 0);
    for (int i = 0; i < 6; i++) {
        tb_kv_manager_release(kv, i);
    }
    assert_int_equal(tb_kv_manager_seq_match(kv, &c, t1, 12), 0);
    tb_kv_seq_release(&a);
    tb_kv_seq_release(&b);
    tb_kv_seq_release(&c);
    tb_kv_manager_destroy(&kv);
}

/* A hit on a cached free block moves it out of the free list, so it is not evicted. */
static void test_hit_protects_from_eviction(void **state)
{
    (void)state;
    tb_kv_manager_t *kv = s_new(3, 4, true, 0); /* events off */
    int32_t t[9];
    s_fill(t, 9, 7);
    struct tb_kv_seq a, b;
    assert_int_equal(tb_kv_seq_init(&a, 3), 0);
    assert_int_equal(tb_kv_seq_init(&b, 3), 0);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &a, 9), 0);
    tb_kv_manager_seq_commit(kv, &a, t, 9);
    tb_kv_manager_seq_free(kv, &a);
    assert_int_equal(tb_kv_manager_seq_match(kv, &b, t, 9), 8);
    assert_int_equal(tb_kv_manager_n_free(kv), 1);
    uint32_t blk, blk2;
    assert_int_equal(tb_kv_manager_alloc(kv, &blk), 0);
    assert_int_equal(blk, 2);
    assert_int_equal(tb_kv_manager_alloc(kv, &blk2), TB_ENOMEM);
    assert_true(tb_kv_manager_is_hashed(kv, b.blocks[0], NULL));
    assert_true(tb_kv_manager_is_hashed(kv, b.blocks[1], NULL));
    struct tb_kv_event ev;
    assert_int_equal(tb_kv_manager_pop_event(kv, &ev), TB_AGAIN);
    tb_kv_manager_release(kv, blk);
    tb_kv_manager_seq_free(kv, &b);
    tb_kv_seq_release(&a);
    tb_kv_seq_release(&b);
    tb_kv_manager_destroy(&kv);
}

/* Two sequences compute the same prompt at once: the first commit registers, the second
 * copy stays private and is not announced; reuse finds the first. */
static void test_concurrent_twins(void **state)
{
    (void)state;
    tb_kv_manager_t *kv = s_new(8, 4, true, 16);
    int32_t t[9];
    s_fill(t, 9, 3);
    struct tb_kv_seq a, b, c;
    assert_int_equal(tb_kv_seq_init(&a, 3), 0);
    assert_int_equal(tb_kv_seq_init(&b, 3), 0);
    assert_int_equal(tb_kv_seq_init(&c, 3), 0);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &a, 9), 0);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &b, 9), 0);
    tb_kv_manager_seq_commit(kv, &a, t, 9);
    tb_kv_manager_seq_commit(kv, &b, t, 9);
    assert_int_equal(b.n_hashed, 2);
    assert_true(b.last_hash == a.last_hash);
    assert_false(tb_kv_manager_is_hashed(kv, b.blocks[0], NULL));
    struct tb_kv_event ev[8];
    assert_int_equal(s_drain(kv, ev, 8), 2);
    uint64_t h;
    assert_int_equal(tb_kv_manager_register(kv, b.blocks[0], TB_BLOCK_HASH_ROOT, t, &h),
                     TB_EEXIST);
    assert_int_equal(tb_kv_manager_register(kv, a.blocks[0], TB_BLOCK_HASH_ROOT, t, &h),
                     TB_EINVAL); /* already hashed */
    assert_int_equal(tb_kv_manager_register(kv, 7, TB_BLOCK_HASH_ROOT, t, &h),
                     TB_EINVAL); /* unreferenced */
    tb_kv_manager_seq_free(kv, &b);
    assert_int_equal(tb_kv_manager_seq_match(kv, &c, t, 9), 8);
    assert_int_equal(c.blocks[0], a.blocks[0]);
    assert_int_equal(c.blocks[1], a.blocks[1]);
    tb_kv_manager_seq_free(kv, &a);
    tb_kv_manager_seq_free(kv, &c);
    tb_kv_seq_release(&a);
    tb_kv_seq_release(&b);
    tb_kv_seq_release(&c);
    tb_kv_manager_destroy(&kv);
}

static void test_caching_off(void **state)
{
    (void)state;
    tb_kv_manager_t *kv = s_new(4, 4, false, 16);
    int32_t t[9];
    s_fill(t, 9, 1);
    struct tb_kv_seq a, b;
    assert_int_equal(tb_kv_seq_init(&a, 3), 0);
    assert_int_equal(tb_kv_seq_init(&b, 3), 0);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &a, 9), 0);
    tb_kv_manager_seq_commit(kv, &a, t, 9);
    assert_false(tb_kv_manager_is_hashed(kv, a.blocks[0], NULL));
    uint64_t h = 0;
    assert_int_equal(tb_kv_manager_register(kv, a.blocks[0], 0, t, &h), TB_ENOTSUP);
    assert_true(h == tb_block_hash(0, t, 4));
    tb_kv_manager_seq_free(kv, &a);
    assert_int_equal(tb_kv_manager_seq_match(kv, &b, t, 9), 0);
    uint32_t blk;
    assert_int_equal(tb_kv_manager_acquire_cached(kv, TB_BLOCK_HASH_ROOT, t, &blk, &h),
                     TB_ENOENT);
    struct tb_kv_event ev;
    assert_int_equal(tb_kv_manager_pop_event(kv, &ev), TB_AGAIN);
    tb_kv_seq_release(&a);
    tb_kv_seq_release(&b);
    tb_kv_manager_destroy(&kv);
}

/* A full queue turns into CLEARED + the newest event; the loss is counted. */
static void test_event_overflow(void **state)
{
    (void)state;
    tb_kv_manager_t *kv = s_new(8, 2, true, 3);
    int32_t t[16];
    s_fill(t, 16, 50);
    struct tb_kv_seq a;
    assert_int_equal(tb_kv_seq_init(&a, 8), 0);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &a, 16), 0);
    tb_kv_manager_seq_commit(kv, &a, t, 8); /* 4 STORED into a queue of 3 */
    struct tb_kv_event ev[8];
    assert_int_equal(s_drain(kv, ev, 8), 2);
    assert_int_equal(ev[0].type, TB_KV_EVENT_CLEARED);
    assert_int_equal(ev[1].type, TB_KV_EVENT_STORED);
    assert_int_equal(ev[1].block, a.blocks[3]);
    struct tb_kv_usage u;
    tb_kv_manager_get_usage(kv, &u);
    assert_int_equal(u.events_lost, 3);
    tb_kv_manager_seq_commit(kv, &a, t, 12); /* 2 more fit */
    assert_int_equal(s_drain(kv, ev, 8), 2);
    assert_int_equal(ev[0].type, TB_KV_EVENT_STORED);
    tb_kv_manager_seq_free(kv, &a);
    tb_kv_seq_release(&a);
    tb_kv_manager_destroy(&kv);
}

static void test_clear_cache(void **state)
{
    (void)state;
    tb_kv_manager_t *kv = s_new(6, 2, true, 32);
    int32_t t[6], u6[6];
    s_fill(t, 6, 1);
    s_fill(u6, 6, 100);
    struct tb_kv_seq a, b, c;
    assert_int_equal(tb_kv_seq_init(&a, 3), 0);
    assert_int_equal(tb_kv_seq_init(&b, 3), 0);
    assert_int_equal(tb_kv_seq_init(&c, 3), 0);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &a, 6), 0);
    tb_kv_manager_seq_commit(kv, &a, t, 6);
    assert_int_equal(tb_kv_manager_seq_grow(kv, &b, 6), 0);
    tb_kv_manager_seq_commit(kv, &b, u6, 6);
    tb_kv_manager_seq_free(kv, &a); /* a's 3 blocks cached, b's 3 in use */
    struct tb_kv_event ev[16];
    s_drain(kv, ev, 16);
    tb_kv_manager_clear_cache(kv);
    assert_int_equal(s_drain(kv, ev, 16), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ev[i].type, TB_KV_EVENT_REMOVED);
    }
    struct tb_kv_usage us;
    tb_kv_manager_get_usage(kv, &us);
    assert_int_equal(us.cached, 0);
    assert_int_equal(us.free, 3);
    assert_true(tb_kv_manager_is_hashed(kv, b.blocks[0], NULL)); /* in use: kept */
    assert_int_equal(tb_kv_manager_seq_match(kv, &c, t, 6), 0);
    assert_int_equal(tb_kv_manager_seq_match(kv, &c, u6, 6), 4);
    tb_kv_manager_seq_free(kv, &b);
    tb_kv_manager_seq_free(kv, &c);
    tb_kv_seq_release(&a);
    tb_kv_seq_release(&b);
    tb_kv_seq_release(&c);
    tb_kv_manager_destroy(&kv);
}

/* Many sequences with shared prefixes over a small cache: after every operation the counts
 * add up, every hashed block is found by its hash, and reused blocks hold the right tokens. */
static void test_churn_invariants(void **state)
{
    (void)state;
    enum { NB = 48, BS = 4, NSEQ = 12, LEN = 40 };
    tb_kv_manager_t *kv = s_new(NB, BS, true, 8);
    struct tb_kv_seq seqs[NSEQ];
    int32_t toks[NSEQ][LEN];
    uint32_t len[NSEQ];
    bool live[NSEQ] = {false};
    /* Owner of each block's contents: which token ids it was computed for. */
    int32_t content[NB][BS];
    memset(content, 0xff, sizeof content);
    for (int i = 0; i < NSEQ; i++) {
        assert_int_equal(tb_kv_seq_init(&seqs[i], LEN / BS + 1), 0);
    }
    struct tb_rng rng;
    tb_rng_seed(&rng, 42);
    uint64_t hits = 0;
    for (int iter = 0; iter < 4000; iter++) {
        int i = (int)(tb_rng_next(&rng) % NSEQ);
        if (live[i]) {
            tb_kv_manager_seq_free(kv, &seqs[i]);
            live[i] = false;
        } else {
            /* Tokens from a 2-letter alphabet in runs of blocks: many shared prefixes. */
            len[i] = 1 + (uint32_t)(tb_rng_next(&rng) % LEN);
            for (uint32_t k = 0; k < len[i]; k++) {
                toks[i][k] = (int32_t)((tb_rng_next(&rng) >> 7) % 2);
            }
            uint32_t got = tb_kv_manager_seq_match(kv, &seqs[i], toks[i], len[i]);
            assert_true(got % BS == 0 && got < len[i]);
            hits += got;
            for (uint32_t bi = 0; bi < got / BS; bi++) {
                assert_memory_equal(content[seqs[i].blocks[bi]], &toks[i][bi * BS],
                                    BS * sizeof(int32_t));
            }
            if (tb_kv_manager_seq_grow(kv, &seqs[i], len[i]) != 0) {
                tb_kv_manager_seq_free(kv, &seqs[i]);
                continue;
            }
            for (uint32_t bi = got / BS; bi < seqs[i].n_blocks; bi++) {
                uint32_t b = seqs[i].blocks[bi];
                assert_int_equal(tb_kv_manager_ref_count(kv, b), 1); /* written: private */
                for (uint32_t k = 0; k < BS; k++) {
                    content[b][k] = bi * BS + k < len[i] ? toks[i][bi * BS + k] : -1;
                }
            }
            tb_kv_manager_seq_commit(kv, &seqs[i], toks[i], len[i]);
            live[i] = true;
        }
        /* Invariants. */
        uint32_t refs_used = 0;
        for (uint32_t b = 0; b < NB; b++) {
            refs_used += tb_kv_manager_ref_count(kv, b) > 0;
        }
        struct tb_kv_usage u;
        tb_kv_manager_get_usage(kv, &u);
        assert_int_equal(u.used, refs_used);
        assert_int_equal(u.used + u.free, NB);
        assert_true(u.cached <= u.free);
        struct tb_kv_event ev;
        while (tb_kv_manager_pop_event(kv, &ev) == 0) {
        }
    }
    /* Registered blocks are reachable through the map by their chain: a sequence asking for
     * a live sequence's exact tokens gets that sequence's leading registered blocks back.  (A
     * private twin is not registered, so the run stops at the first one.) */
    uint32_t probed = 0;
    for (int i = 0; i < NSEQ; i++) {
        if (!live[i]) {
            continue;
        }
        uint32_t r = 0;
        while (r < seqs[i].n_hashed && tb_kv_manager_is_hashed(kv, seqs[i].blocks[r], NULL)) {
            r++;
        }
        uint32_t full = (len[i] - 1) / BS;
        uint32_t expect = r < full ? r : full;
        struct tb_kv_seq probe;
        assert_int_equal(tb_kv_seq_init(&probe, LEN / BS + 1), 0);
        uint32_t got = tb_kv_manager_seq_match(kv, &probe, toks[i], len[i]);
        assert_true(got / BS >= expect);
        for (uint32_t k = 0; k < expect; k++) {
            assert_int_equal(probe.blocks[k], seqs[i].blocks[k]);
        }
        probed += expect;
        tb_kv_manager_seq_free(kv, &probe);
        tb_kv_seq_release(&probe);
    }
    assert_true(probed > 0);
    assert_true(hits > 0);
    for (int i = 0; i < NSEQ; i++) {
        tb_kv_manager_seq_free(kv, &seqs[i]);
        tb_kv_seq_release(&seqs[i]);
    }
    struct tb_kv_usage u;
    tb_kv_manager_get_usage(kv, &u);
    assert_int_equal(u.used, 0);
    tb_kv_manager_destroy(&kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_hash_golden),
        cmocka_unit_test(test_hash_chain),
        cmocka_unit_test(test_alloc_release_refcounts),
        cmocka_unit_test(test_seq_grow_all_or_nothing),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_hit_protects_from_eviction),
        cmocka_unit_test(test_concurrent_twins),
        cmocka_unit_test(test_caching_off),
        cmocka_unit_test(test_event_overflow),
        cmocka_unit_test(test_clear_cache),
        cmocka_unit_test(test_churn_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
