/*
 * tb_kv_index.h - the router's prefix index: which engine instance holds which KV blocks.
 *
 * A block is named by its chained hash (tb_block_hash.h): block i's hash covers every token up
 * to the end of block i, so the blocks of all prompts form a tree (each node a block hash with
 * its parent's hash) and a chain of hashes computed from a request's tokens is a path from the
 * root.  The index keeps that tree as nodes looked up by hash; each node lists the instances
 * holding the block (and, for predicted entries, until when).  Matching a request walks its chain
 * from the root and gives each instance the number of leading blocks it holds.
 *
 * Fed by the engines' kv_event messages (tb_kv_index_apply): blocks stored, removed, everything
 * cleared, and snapshots, with a per-instance sequence number so a lost event is noticed (the
 * caller then asks the instance for a snapshot).  In the approximate mode (engines that publish
 * nothing) the caller records its own decisions instead (tb_kv_index_predict), each entry
 * expiring after a time to live.  An instance that goes away is dropped at once
 * (tb_kv_index_remove_instance).
 *
 * Pure data, no I/O.  Not thread-safe: the router's thread owns it.
 */
#ifndef TB_KV_INDEX_H
#define TB_KV_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* tb_kv_index_apply's result when the event's sequence number skipped some: it was applied, but
 * the instance's entries may be wrong until a snapshot replaces them.  Not an error. */
#define TB_KV_INDEX_GAP 1

typedef struct tb_kv_index tb_kv_index_t;

/* One kv_event as the index takes it (arrays borrowed for the call). */
struct tb_kv_index_event {
    uint64_t instance_id;
    uint64_t seq;            /* 1, 2, ... per instance; 0: the engine numbers nothing */
    const uint64_t *stored;  /* block hashes now cached there */
    const uint64_t *parents; /* stored[i]'s parent hash, or NULL */
    size_t n_stored;
    const uint64_t *removed; /* block hashes evicted there */
    size_t n_removed;
    bool cleared;  /* forget everything the instance announced before, then apply the rest */
    bool snapshot; /* `stored` is everything the instance holds; `seq` the last event it covers */
};

/* What one instance holds of a request's chain (tb_kv_index_match). */
struct tb_kv_overlap {
    uint64_t instance_id;
    uint32_t blocks; /* leading blocks of the chain cached there */
};

/* Figures for metrics and the log. */
struct tb_kv_index_stats {
    size_t nodes;       /* distinct block hashes */
    size_t entries;     /* (block, instance) pairs */
    size_t instances;   /* instances known */
    uint64_t gaps;      /* events that skipped sequence numbers, ever */
    uint64_t snapshots; /* snapshots applied, ever */
};

/* An empty index.  Caller owns it; destroy with tb_kv_index_destroy.  NULL when out of memory. */
tb_kv_index_t *tb_kv_index_new(void);
/* Frees everything; sets *x_p to NULL; accepts NULL. */
void tb_kv_index_destroy(tb_kv_index_t **x_p);

/* Applies one event.  0, TB_KV_INDEX_GAP (applied; the caller should ask for a snapshot, see
 * tb_kv_index_snapshot_due), or TB_ENOMEM (the index may miss part of the event).  An event
 * whose seq is not newer than one already applied for the instance is ignored (0). */
int tb_kv_index_apply(tb_kv_index_t *x, const struct tb_kv_index_event *ev);

/* Approximate mode: records that `instance_id` now holds blocks `hashes[0..n)` until
 * `expires_ns` (refreshing entries it had).  0 or TB_ENOMEM. */
int tb_kv_index_predict(tb_kv_index_t *x, uint64_t instance_id, const uint64_t *hashes, size_t n,
                        int64_t expires_ns);

/* Drops predicted entries that expired by `now_ns` (tb_kv_index_match already ignores them;
 * this frees their memory).  Walks the whole index: call it now and then. */
void tb_kv_index_expire(tb_kv_index_t *x, int64_t now_ns);

/* Forgets the instance and every block it held. */
void tb_kv_index_remove_instance(tb_kv_index_t *x, uint64_t instance_id);

/* For the chain `hashes[0..n)` (block 0 first), writes to `out` each instance holding at least
 * its first block, with the number of leading blocks it holds (entries expired by `now_ns` do
 * not count), at most `max` of them; returns how many it wrote. */
size_t tb_kv_index_match(const tb_kv_index_t *x, const uint64_t *hashes, size_t n, int64_t now_ns,
                         struct tb_kv_overlap *out, size_t max);

/* Blocks the instance holds (0 when unknown). */
size_t tb_kv_index_instance_blocks(const tb_kv_index_t *x, uint64_t instance_id);

/* True when the instance's entries are known to be incomplete (a gap, no snapshot since) and no
 * snapshot was asked for in the last `interval_ns`; then it notes `now_ns` as the time one was
 * asked, so the caller asks once per interval. */
bool tb_kv_index_snapshot_due(tb_kv_index_t *x, uint64_t instance_id, int64_t now_ns,
                              int64_t interval_ns);

void tb_kv_index_get_stats(const tb_kv_index_t *x, struct tb_kv_index_stats *out);

#endif /* TB_KV_INDEX_H */
