/*
 * tb_kv_manager.h - the paged KV cache's bookkeeping: block ids, reference counts, per-sequence
 * block tables and prefix reuse by chained block hashes.
 *
 * The cache memory itself belongs to the engine flavour (a CPU array, a CUDA allocation) and is
 * cut into `n_blocks` blocks of `block_size` token slots; this class only hands out block ids.
 * Token slot `pos` of a sequence lives in block `blocks[pos / block_size]` at offset
 * `pos % block_size`, i.e. flat slot `block * block_size + pos % block_size`.
 *
 * Prefix reuse: once a block is full and its keys and values are computed, it gets the chained
 * hash of tb_block_hash.h and is registered in a hash -> block map.  A new sequence whose prompt
 * starts with the same tokens takes those blocks (reference-counted, shared read-only) instead
 * of recomputing them.  A partial block is never shared and the match always leaves at least
 * the prompt's last token to compute, so writes only ever go to a sequence's own blocks.  On a
 * hash hit the stored token ids are compared too, so a 64-bit collision never serves another
 * prompt's cache.  When two sequences compute the same block at once, the first to commit
 * registers it; the other keeps a private copy.
 *
 * Freeing: a block whose count drops to zero goes to the free list.  Blocks without a hash go to
 * its head (reused first); hashed blocks go to its tail in least-recently-used order and keep
 * their hash, so a later prompt can still reuse them; a sequence's blocks are released last
 * block first, so its prefix outlives its tail.  Allocation takes the head; taking a hashed
 * block evicts it (removes its hash).
 *
 * Events: registering a hash queues TB_KV_EVENT_STORED, evicting one queues
 * TB_KV_EVENT_REMOVED; the engine plugin drains them (tb_kv_manager_pop_event) and publishes
 * them on the bus for the router's prefix index.
 *
 * Not thread-safe: one owner (the engine's scheduling thread) calls everything.  No I/O.
 */
#ifndef TB_KV_MANAGER_H
#define TB_KV_MANAGER_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TB_KV_DEFAULT_BLOCK_SIZE 16
/* Block id meaning "none". */
#define TB_KV_NO_BLOCK UINT32_MAX

typedef struct tb_kv_manager tb_kv_manager_t;

/* Configuration; fill with tb_kv_config_init, then override. */
struct tb_kv_config {
    uint32_t n_blocks;       /* blocks in the cache, >= 1 (the flavour derives it from its
                                memory budget: budget / (block_size * bytes per token slot)) */
    uint32_t block_size;     /* token slots per block, 1..4096, default 16 */
    bool prefix_caching;     /* hash full blocks and reuse them across sequences (default on) */
    uint64_t hash_root;      /* parent hash of every sequence's first block
                                (default TB_BLOCK_HASH_ROOT); routers must use the same */
    uint32_t event_capacity; /* events kept until drained; 0 disables events (default 4096) */
};

/* Fills `cfg` with the defaults above and n_blocks 0 (which the caller must set). */
void tb_kv_config_init(struct tb_kv_config *cfg);

enum tb_kv_event_type {
    TB_KV_EVENT_STORED = 1,  /* a full block was registered under `hash` */
    TB_KV_EVENT_REMOVED = 2, /* the block under `hash` was evicted; the hash is gone */
    TB_KV_EVENT_CLEARED = 3, /* events were lost (queue overflow): forget every hash this
                                cache announced before; later events start afresh */
};

/* One KV event.  Plain data. */
struct tb_kv_event {
    enum tb_kv_event_type type;
    uint64_t hash;        /* STORED, REMOVED: the block's chained hash */
    uint64_t parent_hash; /* STORED: the previous block's hash, or the root for a first block */
    uint32_t block;       /* STORED, REMOVED: the block id (local meaning only) */
};

/* Usage figures for load reports and metrics. */
struct tb_kv_usage {
    uint32_t total;        /* n_blocks */
    uint32_t used;         /* blocks referenced by at least one sequence */
    uint32_t cached;       /* unreferenced blocks still holding a reusable hash */
    uint32_t free;         /* total - used: blocks an allocation may take (cached included) */
    double fraction;       /* used / total */
    uint64_t query_tokens; /* prompt tokens looked up by tb_kv_manager_seq_match, ever */
    uint64_t hit_tokens;   /* of those, tokens found cached */
    uint64_t evictions;    /* hashed blocks evicted, ever */
    uint64_t events_lost;  /* events dropped by queue overflow, ever */
};

/* A sequence's block table, embedded in the caller's sequence record.  Members are read-only
 * for callers; only tb_kv_manager_seq_* functions change them. */
struct tb_kv_seq {
    uint32_t *blocks;   /* block ids, blocks[i] holds token slots [i*bs, (i+1)*bs) */
    uint32_t n_blocks;  /* blocks held */
    uint32_t cap;       /* most blocks this sequence may ever hold */
    uint32_t n_hashed;  /* leading blocks whose hash is known (matched or committed) */
    uint64_t last_hash; /* hash of block n_hashed-1 (the root when n_hashed is 0) */
};

/* Creates a manager.  `cfg` is borrowed for the call.  On success *out is the caller's;
 * destroy with tb_kv_manager_destroy.  Errors: TB_ECONFIG (bad n_blocks or block_size; *out
 * untouched), TB_ENOMEM. */
int tb_kv_manager_new(const struct tb_kv_config *cfg, tb_kv_manager_t **out);

/* Destroys the manager and sets *self_p to NULL; NULL and *self_p == NULL are no-ops.
 * Sequences still holding blocks must not be used with it afterwards (release their
 * tb_kv_seq memory with tb_kv_seq_release). */
void tb_kv_manager_destroy(tb_kv_manager_t **self_p);

/* Geometry.  */
uint32_t tb_kv_manager_block_size(const tb_kv_manager_t *self);
uint32_t tb_kv_manager_n_blocks(const tb_kv_manager_t *self);

/* Blocks an allocation can take now (unreferenced ones, cached ones included). */
uint32_t tb_kv_manager_n_free(const tb_kv_manager_t *self);

/* Fills `*out` with the current usage. */
void tb_kv_manager_get_usage(const tb_kv_manager_t *self, struct tb_kv_usage *out);

/* ---- single blocks (the sequence functions below are built on these) ---- */

/* Takes a free block with reference count 1, evicting the least recently used cached block
 * when no unhashed one is free.  Returns 0 and sets *block, or TB_ENOMEM when every block is
 * referenced. */
int tb_kv_manager_alloc(tb_kv_manager_t *self, uint32_t *block);

/* Looks up the full block of `tokens[0..block_size)` whose parent hash is `parent`.  On a hit
 * (hash and tokens equal) takes a reference to it, sets *block and *hash and returns 0;
 * otherwise sets *hash to the computed hash and returns TB_ENOENT.  TB_ENOENT too when prefix
 * caching is off. */
int tb_kv_manager_acquire_cached(tb_kv_manager_t *self, uint64_t parent, const int32_t *tokens,
                                 uint32_t *block, uint64_t *hash);

/* Registers full block `block` (referenced by the caller) under hash(parent, tokens) and queues
 * a STORED event.  Returns 0 when registered, TB_EEXIST when another block already holds that
 * hash (this one stays private), TB_EINVAL when the block is unreferenced or already hashed,
 * TB_ENOTSUP when prefix caching is off.  *hash (may be NULL) receives the hash in every case
 * but TB_EINVAL. */
int tb_kv_manager_register(tb_kv_manager_t *self, uint32_t block, uint64_t parent,
                           const int32_t *tokens, uint64_t *hash);

/* Drops one reference; at zero the block joins the free list as described above.  Releasing
 * an unreferenced or out-of-range block is a programmer error: it is ignored. */
void tb_kv_manager_release(tb_kv_manager_t *self, uint32_t block);

/* The block's reference count (0 for an id out of range). */
uint32_t tb_kv_manager_ref_count(const tb_kv_manager_t *self, uint32_t block);

/* True when the block is registered under a hash (*hash, may be NULL, receives it). */
bool tb_kv_manager_is_hashed(const tb_kv_manager_t *self, uint32_t block, uint64_t *hash);

/* Evicts every unreferenced cached block now (REMOVED events), e.g. after a weight reload. */
void tb_kv_manager_clear_cache(tb_kv_manager_t *self);

/* Takes the oldest queued event into *ev and returns 0, or returns TB_AGAIN when none. */
int tb_kv_manager_pop_event(tb_kv_manager_t *self, struct tb_kv_event *ev);

/* ---- sequences ---- */

/* Prepares an empty block table able to hold `max_blocks` blocks.  Returns 0, TB_EINVAL
 * (max_blocks 0) or TB_ENOMEM.  Release with tb_kv_seq_release. */
int tb_kv_seq_init(struct tb_kv_seq *seq, uint32_t max_blocks);

/* Frees the table's memory.  Its blocks must have been returned (tb_kv_manager_seq_free)
 * unless the manager is gone.  Safe on a zeroed or already released struct. */
void tb_kv_seq_release(struct tb_kv_seq *seq);

/* For an empty sequence about to compute `tokens[0..n)`: takes the longest run of cached full
 * blocks that prefixes them, stopping so that at least the last token is left to compute, and
 * returns how many tokens it covers (a multiple of block_size; 0 when nothing matched, caching
 * is off or the sequence already holds blocks).  `tokens` is borrowed for the call. */
uint32_t tb_kv_manager_seq_match(tb_kv_manager_t *self, struct tb_kv_seq *seq,
                                 const int32_t *tokens, uint32_t n);

/* New blocks the sequence needs so that it holds `n_slots` token slots (0 if it has them). */
uint32_t tb_kv_manager_seq_blocks_needed(const tb_kv_manager_t *self, const struct tb_kv_seq *seq,
                                         uint32_t n_slots);

/* Grows the sequence to hold `n_slots` token slots, all or nothing.  Returns 0, TB_ENOMEM when
 * too few blocks are free (nothing taken), TB_E2BIG beyond the sequence's cap. */
int tb_kv_manager_seq_grow(tb_kv_manager_t *self, struct tb_kv_seq *seq, uint32_t n_slots);

/* Records that `tokens[0..n_computed)` now have their keys and values in the cache: registers
 * every newly full block (tb_kv_manager_register), extending the sequence's hash chain.
 * `tokens` are the sequence's tokens from position 0, borrowed for the call.  No-op when
 * prefix caching is off. */
void tb_kv_manager_seq_commit(tb_kv_manager_t *self, struct tb_kv_seq *seq, const int32_t *tokens,
                              uint32_t n_computed);

/* Returns all the sequence's blocks (last first) and empties its table; keeps its memory. */
void tb_kv_manager_seq_free(tb_kv_manager_t *self, struct tb_kv_seq *seq);

#ifdef __cplusplus
}
#endif

#endif /* TB_KV_MANAGER_H */
