/*
 * tb_kv_manager.c - block ids, reference counts, an LRU free list and the hash -> block map of
 * the paged KV cache (see the header for the model).
 *
 * The free list is intrusive and doubly linked through per-block prev/next indices, with a
 * sentinel at index n_blocks, so taking a cached block out of it on a prefix hit is O(1).  The
 * hash map is open addressing with linear probing and backward-shift deletion, sized to twice
 * the block count, so it never grows or rehashes.
 */
#include "tb_kv_manager.h"

#include "tb_block_hash.h"
#include "tb_errors.h"

#include <stdlib.h>
#include <string.h>

struct block {
    uint64_t hash;   /* valid when hashed */
    uint64_t parent; /* valid when hashed */
    uint32_t ref;
    uint32_t prev, next; /* free-list links, valid when ref == 0 */
    uint8_t hashed;
};

struct slot {
    uint64_t key;
    uint32_t block; /* TB_KV_NO_BLOCK: empty */
};

struct tb_kv_manager {
    uint32_t n_blocks;
    uint32_t block_size;
    bool prefix_caching;
    uint64_t root;
    struct block *blocks; /* n_blocks + 1: the last is the free-list sentinel */
    int32_t *tokens;      /* n_blocks * block_size, the token ids of hashed blocks */
    uint32_t n_free;
    uint32_t n_cached;
    struct slot *map;
    uint32_t map_mask;
    struct tb_kv_event *events;
    uint32_t ev_cap, ev_head, ev_count;
    uint64_t query_tokens, hit_tokens, evictions, events_lost;
};

void tb_kv_config_init(struct tb_kv_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->block_size = TB_KV_DEFAULT_BLOCK_SIZE;
    cfg->prefix_caching = true;
    cfg->hash_root = TB_BLOCK_HASH_ROOT;
    cfg->event_capacity = 4096;
}

/* ---- free list ---- */

static void s_unlink(tb_kv_manager_t *kv, uint32_t b)
{
    struct block *bl = kv->blocks;
    bl[bl[b].prev].next = bl[b].next;
    bl[bl[b].next].prev = bl[b].prev;
    kv->n_free--;
    if (bl[b].hashed) {
        kv->n_cached--;
    }
}

static void s_push_front(tb_kv_manager_t *kv, uint32_t b)
{
    struct block *bl = kv->blocks;
    uint32_t s = kv->n_blocks;
    bl[b].prev = s;
    bl[b].next = bl[s].next;
    bl[bl[s].next].prev = b;
    bl[s].next = b;
    kv->n_free++;
}

static void s_push_back(tb_kv_manager_t *kv, uint32_t b)
{
    struct block *bl = kv->blocks;
    uint32_t s = kv->n_blocks;
    bl[b].next = s;
    bl[b].prev = bl[s].prev;
    bl[bl[s].prev].next = b;
    bl[s].prev = b;
    kv->n_free++;
    kv->n_cached++;
}

/* ---- events ---- */

static void s_event(tb_kv_manager_t *kv, enum tb_kv_event_type type, uint64_t hash,
                    uint64_t parent, uint32_t block)
{
    if (kv->ev_cap == 0) {
        return;
    }
    if (kv->ev_count == kv->ev_cap) {
        /* The consumer fell behind: tell it to start over rather than let it miss a removal
         * and keep routing to blocks that are gone. */
        kv->events_lost += kv->ev_count;
        kv->ev_head = 0;
        kv->ev_count = 1;
        kv->events[0] = (struct tb_kv_event){.type = TB_KV_EVENT_CLEARED};
        if (kv->ev_cap == 1) {
            kv->events_lost++;
            return;
        }
    }
    uint32_t at = (kv->ev_head + kv->ev_count) % kv->ev_cap;
    kv->events[at] =
        (struct tb_kv_event){.type = type, .hash = hash, .parent_hash = parent, .block = block};
    kv->ev_count++;
}

int tb_kv_manager_pop_event(tb_kv_manager_t *self, struct tb_kv_event *ev)
{
    if (self->ev_count == 0) {
        return TB_AGAIN;
    }
    *ev = self->events[self->ev_head];
    self->ev_head = (self->ev_head + 1) % self->ev_cap;
    self->ev_count--;
    return 0;
}

/* ---- hash map ---- */

static uint32_t s_home(const tb_kv_manager_t *kv, uint64_t key)
{
    return (uint32_t)(key ^ (key >> 32)) & kv->map_mask;
}

static uint32_t s_map_find(const tb_kv_manager_t *kv, uint64_t key)
{
    uint32_t i = s_home(kv, key);
    while (kv->map[i].block != TB_KV_NO_BLOCK) {
        if (kv->map[i].key == key) {
            return kv->map[i].block;
        }
        i = (i + 1) & kv->map_mask;
    }
    return TB_KV_NO_BLOCK;
}

static void s_map_insert(tb_kv_manager_t *kv, uint64_t key, uint32_t block)
{
    uint32_t i = s_home(kv, key);
    while (kv->map[i].block != TB_KV_NO_BLOCK) {
        i = (i + 1) & kv->map_mask;
    }
    kv->map[i].key = key;
    kv->map[i].block = block;
}

static void s_map_remove(tb_kv_manager_t *kv, uint64_t key)
{
    uint32_t i = s_home(kv, key);
    while (kv->map[i].block != TB_KV_NO_BLOCK && kv->map[i].key != key) {
        i = (i + 1) & kv->map_mask;
    }
    if (kv->map[i].block == TB_KV_NO_BLOCK) {
        return;
    }
    /* Backward-shift deletion: pull later entries of the probe run into the hole when their
     * home slot does not lie cyclically within (hole, entry]. */
    uint32_t hole = i;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & kv->map_mask;
        if (kv->map[j].block == TB_KV_NO_BLOCK) {
            break;
        }
        uint32_t home = s_home(kv, kv->map[j].key);
        bool stays = (hole <= j) ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            kv->map[hole] = kv->map[j];
            hole = j;
        }
    }
    kv->map[hole].block = TB_KV_NO_BLOCK;
}

/* ---- lifecycle ---- */

int tb_kv_manager_new(const struct tb_kv_config *cfg, tb_kv_manager_t **out)
{
    int rc = TB_ECONFIG;
    tb_kv_manager_t *kv = NULL;
    if (cfg->n_blocks == 0 || cfg->n_blocks >= (UINT32_MAX >> 2) || cfg->block_size == 0 ||
        cfg->block_size > 4096) {
        goto fail;
    }
    rc = TB_ENOMEM;
    kv = calloc(1, sizeof *kv);
    if (!kv) {
        goto fail;
    }
    kv->n_blocks = cfg->n_blocks;
    kv->block_size = cfg->block_size;
    kv->prefix_caching = cfg->prefix_caching;
    kv->root = cfg->hash_root;
    kv->blocks = calloc((size_t)cfg->n_blocks + 1, sizeof *kv->blocks);
    if (!kv->blocks) {
        goto fail_kv;
    }
    if (kv->prefix_caching) {
        kv->tokens = malloc((size_t)cfg->n_blocks * cfg->block_size * sizeof *kv->tokens);
        uint32_t cap = 16;
        while (cap < 2u * cfg->n_blocks) {
            cap <<= 1;
        }
        kv->map = malloc((size_t)cap * sizeof *kv->map);
        if (!kv->tokens || !kv->map) {
            goto fail_arrays;
        }
        kv->map_mask = cap - 1;
        for (uint32_t i = 0; i < cap; i++) {
            kv->map[i].block = TB_KV_NO_BLOCK;
        }
    }
    if (cfg->event_capacity > 0) {
        kv->events = malloc((size_t)cfg->event_capacity * sizeof *kv->events);
        if (!kv->events) {
            goto fail_arrays;
        }
        kv->ev_cap = cfg->event_capacity;
    }
    uint32_t s = kv->n_blocks;
    kv->blocks[s].next = kv->blocks[s].prev = s;
    /* Ascending ids from the head, so a fresh cache hands out 0, 1, 2, ... */
    for (uint32_t b = kv->n_blocks; b-- > 0;) {
        s_push_front(kv, b);
    }
    *out = kv;
    kv = NULL;
    rc = 0;
fail_arrays:
    if (kv) {
        free(kv->events);
        free(kv->map);
        free(kv->tokens);
        free(kv->blocks);
    }
fail_kv:
    free(kv);
fail:
    return rc;
}

void tb_kv_manager_destroy(tb_kv_manager_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tb_kv_manager_t *kv = *self_p;
    free(kv->events);
    free(kv->map);
    free(kv->tokens);
    free(kv->blocks);
    free(kv);
    *self_p = NULL;
}

uint32_t tb_kv_manager_block_size(const tb_kv_manager_t *self)
{
    return self->block_size;
}

uint32_t tb_kv_manager_n_blocks(const tb_kv_manager_t *self)
{
    return self->n_blocks;
}

uint32_t tb_kv_manager_n_free(const tb_kv_manager_t *self)
{
    return self->n_free;
}

void tb_kv_manager_get_usage(const tb_kv_manager_t *self, struct tb_kv_usage *out)
{
    memset(out, 0, sizeof *out);
    out->total = self->n_blocks;
    out->free = self->n_free;
    out->used = self->n_blocks - self->n_free;
    out->cached = self->n_cached;
    out->fraction = (double)out->used / (double)self->n_blocks;
    out->query_tokens = self->query_tokens;
    out->hit_tokens = self->hit_tokens;
    out->evictions = self->evictions;
    out->events_lost = self->events_lost;
}

/* ---- single blocks ---- */

static void s_evict(tb_kv_manager_t *kv, uint32_t b)
{
    struct block *bl = &kv->blocks[b];
    s_map_remove(kv, bl->hash);
    bl->hashed = 0;
    kv->evictions++;
    s_event(kv, TB_KV_EVENT_REMOVED, bl->hash, bl->parent, b);
}

int tb_kv_manager_alloc(tb_kv_manager_t *self, uint32_t *block)
{
    uint32_t s = self->n_blocks;
    uint32_t b = self->blocks[s].next;
    if (b == s) {
        return TB_ENOMEM;
    }
    s_unlink(self, b);
    if (self->blocks[b].hashed) {
        s_evict(self, b);
    }
    self->blocks[b].ref = 1;
    *block = b;
    return 0;
}

/* The registered block for (parent, tokens), verified, or TB_KV_NO_BLOCK. */
static uint32_t s_lookup(const tb_kv_manager_t *kv, uint64_t parent, const int32_t *tokens,
                         uint64_t *hash)
{
    uint64_t h = tb_block_hash(parent, tokens, kv->block_size);
    *hash = h;
    uint32_t b = s_map_find(kv, h);
    if (b == TB_KV_NO_BLOCK) {
        return b;
    }
    const int32_t *have = kv->tokens + (size_t)b * kv->block_size;
    if (kv->blocks[b].parent != parent ||
        memcmp(have, tokens, (size_t)kv->block_size * sizeof *tokens) != 0) {
        return TB_KV_NO_BLOCK; /* a 64-bit collision: treat as a miss */
    }
    return b;
}

int tb_kv_manager_acquire_cached(tb_kv_manager_t *self, uint64_t parent, const int32_t *tokens,
                                 uint32_t *block, uint64_t *hash)
{
    if (!self->prefix_caching) {
        *hash = tb_block_hash(parent, tokens, self->block_size);
        return TB_ENOENT;
    }
    uint32_t b = s_lookup(self, parent, tokens, hash);
    if (b == TB_KV_NO_BLOCK) {
        return TB_ENOENT;
    }
    if (self->blocks[b].ref == 0) {
        s_unlink(self, b);
    }
    self->blocks[b].ref++;
    *block = b;
    return 0;
}

int tb_kv_manager_register(tb_kv_manager_t *self, uint32_t block, uint64_t parent,
                           const int32_t *tokens, uint64_t *hash)
{
    if (block >= self->n_blocks || self->blocks[block].ref == 0 || self->blocks[block].hashed) {
        return TB_EINVAL;
    }
    uint64_t h = tb_block_hash(parent, tokens, self->block_size);
    if (hash) {
        *hash = h;
    }
    if (!self->prefix_caching) {
        return TB_ENOTSUP;
    }
    if (s_map_find(self, h) != TB_KV_NO_BLOCK) {
        return TB_EEXIST;
    }
    struct block *bl = &self->blocks[block];
    bl->hash = h;
    bl->parent = parent;
    bl->hashed = 1;
    memcpy(self->tokens + (size_t)block * self->block_size, tokens,
           (size_t)self->block_size * sizeof *tokens);
    s_map_insert(self, h, block);
    s_event(self, TB_KV_EVENT_STORED, h, parent, block);
    return 0;
}

void tb_kv_manager_release(tb_kv_manager_t *self, uint32_t block)
{
    if (block >= self->n_blocks || self->blocks[block].ref == 0) {
        return;
    }
    if (--self->blocks[block].ref > 0) {
        return;
    }
    if (self->blocks[block].hashed) {
        s_push_back(self, block);
    } else {
        s_push_front(self, block);
    }
}

uint32_t tb_kv_manager_ref_count(const tb_kv_manager_t *self, uint32_t block)
{
    return block < self->n_blocks ? self->blocks[block].ref : 0;
}

bool tb_kv_manager_is_hashed(const tb_kv_manager_t *self, uint32_t block, uint64_t *hash)
{
    if (block >= self->n_blocks || !self->blocks[block].hashed) {
        return false;
    }
    if (hash) {
        *hash = self->blocks[block].hash;
    }
    return true;
}

void tb_kv_manager_clear_cache(tb_kv_manager_t *self)
{
    uint32_t s = self->n_blocks;
    for (uint32_t b = self->blocks[s].next; b != s; b = self->blocks[b].next) {
        if (self->blocks[b].hashed) {
            s_evict(self, b);
            self->n_cached--;
        }
    }
}

/* ---- sequences ---- */

int tb_kv_seq_init(struct tb_kv_seq *seq, uint32_t max_blocks)
{
    memset(seq, 0, sizeof *seq);
    if (max_blocks == 0) {
        return TB_EINVAL;
    }
    seq->blocks = malloc((size_t)max_blocks * sizeof *seq->blocks);
    if (!seq->blocks) {
        return TB_ENOMEM;
    }
    seq->cap = max_blocks;
    return 0;
}

void tb_kv_seq_release(struct tb_kv_seq *seq)
{
    free(seq->blocks);
    memset(seq, 0, sizeof *seq);
}

uint32_t tb_kv_manager_seq_match(tb_kv_manager_t *self, struct tb_kv_seq *seq,
                                 const int32_t *tokens, uint32_t n)
{
    if (!self->prefix_caching || seq->n_blocks > 0 || n == 0) {
        return 0;
    }
    self->query_tokens += n;
    uint32_t bs = self->block_size;
    uint32_t max = (n - 1) / bs; /* leave the last token to compute: its logits are needed */
    if (max > seq->cap) {
        max = seq->cap;
    }
    uint64_t parent = self->root;
    uint32_t i = 0;
    for (; i < max; i++) {
        uint32_t b;
        uint64_t h;
        if (tb_kv_manager_acquire_cached(self, parent, tokens + (size_t)i * bs, &b, &h) != 0) {
            break;
        }
        seq->blocks[i] = b;
        parent = h;
    }
    seq->n_blocks = i;
    seq->n_hashed = i;
    seq->last_hash = parent;
    self->hit_tokens += (uint64_t)i * bs;
    return i * bs;
}

uint32_t tb_kv_manager_seq_blocks_needed(const tb_kv_manager_t *self, const struct tb_kv_seq *seq,
                                         uint32_t n_slots)
{
    uint32_t want = (uint32_t)(((uint64_t)n_slots + self->block_size - 1) / self->block_size);
    return want > seq->n_blocks ? want - seq->n_blocks : 0;
}

int tb_kv_manager_seq_grow(tb_kv_manager_t *self, struct tb_kv_seq *seq, uint32_t n_slots)
{
    uint32_t need = tb_kv_manager_seq_blocks_needed(self, seq, n_slots);
    if (need == 0) {
        return 0;
    }
    if (seq->n_blocks + need > seq->cap) {
        return TB_E2BIG;
    }
    if (need > self->n_free) {
        return TB_ENOMEM;
    }
    for (uint32_t i = 0; i < need; i++) {
        /* Cannot fail: n_free was checked above. */
        tb_kv_manager_alloc(self, &seq->blocks[seq->n_blocks++]);
    }
    return 0;
}

void tb_kv_manager_seq_commit(tb_kv_manager_t *self, struct tb_kv_seq *seq, const int32_t *tokens,
                              uint32_t n_computed)
{
    if (!self->prefix_caching) {
        return;
    }
    uint32_t bs = self->block_size;
    if (seq->n_hashed == 0) {
        seq->last_hash = self->root;
    }
    while (seq->n_hashed < seq->n_blocks && (uint64_t)(seq->n_hashed + 1) * bs <= n_computed) {
        uint32_t i = seq->n_hashed;
        uint64_t h;
        /* TB_EEXIST (a twin computed the same block first) keeps this copy private; the
         * chain goes on with the same hash either way. */
        tb_kv_manager_register(self, seq->blocks[i], seq->last_hash, tokens + (size_t)i * bs, &h);
        seq->last_hash = h;
        seq->n_hashed++;
    }
}

void tb_kv_manager_seq_free(tb_kv_manager_t *self, struct tb_kv_seq *seq)
{
    while (seq->n_blocks > 0) {
        tb_kv_manager_release(self, seq->blocks[--seq->n_blocks]);
    }
    seq->n_hashed = 0;
    seq->last_hash = self->root;
}
