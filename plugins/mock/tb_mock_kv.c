/* tb_mock_kv: the mock engine's pretend prefix cache (see tb_mock_kv.h). */
#include "tb_mock_kv.h"

#include <stdlib.h>

#include "tb_errors.h"
#include "tb_kv_manager.h"

#define BATCH 256 /* hashes per kv_event */

struct tb_mock_kv {
    tb_kv_manager_t *mgr;
    uint32_t block_size;
    uint64_t seq; /* of the last event published */
    uint64_t query_tokens, hit_tokens;
    uint64_t stored[BATCH], parents[BATCH], removed[BATCH];
};

int tb_mock_kv_new(uint32_t n_blocks, uint32_t block_size, tb_mock_kv_t **out)
{
    *out = NULL;
    tb_mock_kv_t *kv = calloc(1, sizeof(*kv));
    if (!kv) {
        return TB_ENOMEM;
    }
    struct tb_kv_config cfg;
    tb_kv_config_init(&cfg);
    cfg.n_blocks = n_blocks;
    cfg.block_size = block_size;
    int rc = tb_kv_manager_new(&cfg, &kv->mgr);
    if (rc != 0) {
        free(kv);
        return rc;
    }
    kv->block_size = block_size;
    *out = kv;
    return 0;
}

void tb_mock_kv_destroy(tb_mock_kv_t **kv_p)
{
    if (!kv_p || !*kv_p) {
        return;
    }
    tb_kv_manager_destroy(&(*kv_p)->mgr);
    free(*kv_p);
    *kv_p = NULL;
}

uint32_t tb_mock_kv_prefill(tb_mock_kv_t *kv, const int32_t *tokens, uint32_t n)
{
    uint32_t bs = kv->block_size;
    uint32_t full = n / bs;
    struct tb_kv_seq seq = {0};
    if (n == 0 || tb_kv_seq_init(&seq, full + 1) != 0) {
        return 0;
    }
    uint32_t cached = tb_kv_manager_seq_match(kv->mgr, &seq, tokens, n);
    kv->query_tokens += n;
    kv->hit_tokens += cached;
    /* Stores the full blocks (a prompt larger than the cache stores none: a real engine could
     * not hold it either). */
    if (full > 0 && tb_kv_manager_seq_grow(kv->mgr, &seq, full * bs) == 0) {
        tb_kv_manager_seq_commit(kv->mgr, &seq, tokens, full * bs);
    }
    tb_kv_manager_seq_free(kv->mgr, &seq);
    tb_kv_seq_release(&seq);
    return cached;
}

uint64_t tb_mock_kv_query_tokens(const tb_mock_kv_t *kv)
{
    return kv->query_tokens;
}

uint64_t tb_mock_kv_hit_tokens(const tb_mock_kv_t *kv)
{
    return kv->hit_tokens;
}

static void s_snapshot(tb_mock_kv_t *kv, struct tb_msg_kv_event *ev, tb_mock_kv_emit_fn fn,
                       void *user)
{
    /* One message may hold more than BATCH hashes: the snapshot must be one event, or the
     * router would take its second part for a replacement of the first. */
    uint32_t nb = tb_kv_manager_n_blocks(kv->mgr);
    uint64_t *all = malloc((size_t)nb * sizeof(*all));
    if (!all) {
        return;
    }
    size_t n = 0;
    for (uint32_t b = 0; b < nb; b++) {
        uint64_t h;
        if (tb_kv_manager_is_hashed(kv->mgr, b, &h)) {
            all[n++] = h;
        }
    }
    ev->stored = all;
    ev->stored_count = n;
    ev->snapshot = true;
    ev->has_snapshot = true;
    ev->seq = kv->seq;
    ev->has_seq = true;
    fn(ev, user);
    free(all);
}

int tb_mock_kv_drain(tb_mock_kv_t *kv, uint64_t instance_id, const char *model, bool snapshot,
                     tb_mock_kv_emit_fn fn, void *user)
{
    struct tb_msg_kv_event base = {.instance_id = instance_id,
                                   .block_size = kv->block_size,
                                   .model = model};
    size_t ns = 0, nr = 0;
    bool cleared = false;
    struct tb_kv_event e;
    for (;;) {
        bool more = tb_kv_manager_pop_event(kv->mgr, &e) == 0;
        if (more && e.type == TB_KV_EVENT_STORED) {
            kv->stored[ns] = e.hash;
            kv->parents[ns++] = e.parent_hash;
        } else if (more && e.type == TB_KV_EVENT_REMOVED) {
            kv->removed[nr++] = e.hash;
        } else if (more) {
            cleared = true;
            ns = nr = 0;
        }
        if ((!more || ns == BATCH || nr == BATCH) && (ns || nr || cleared)) {
            struct tb_msg_kv_event ev = base;
            ev.stored = kv->stored;
            ev.stored_count = ns;
            ev.parents = kv->parents;
            ev.parents_count = ns;
            ev.removed = kv->removed;
            ev.removed_count = nr;
            ev.cleared = cleared;
            ev.has_cleared = cleared;
            ev.seq = ++kv->seq;
            ev.has_seq = true;
            fn(&ev, user);
            ns = nr = 0;
            cleared = false;
        }
        if (!more) {
            break;
        }
    }
    if (snapshot) {
        struct tb_msg_kv_event ev = base;
        s_snapshot(kv, &ev, fn, user);
    }
    return 0;
}
