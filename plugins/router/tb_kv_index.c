/* tb_kv_index: the router's prefix index (see tb_kv_index.h).  Nodes live in a chained hash
 * table keyed by block hash; each lists its holders as (instance slot, expiry) pairs, usually
 * one or two, so a match costs one lookup per block of the request plus its holders. */
#include "tb_kv_index.h"

#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"

struct holder {
    uint32_t slot;
    int64_t expires_ns; /* 0: until removed (event-fed); else a prediction's expiry */
};

struct node {
    uint64_t hash;
    uint64_t parent;
    struct node *next; /* in its bucket */
    struct holder *h;
    uint32_t n, cap;
};

struct inst {
    uint64_t id;
    bool used;
    bool stale;        /* a gap was seen and no snapshot replaced the entries since */
    uint64_t next_seq; /* the seq expected next; 0 before the first numbered event */
    int64_t asked_ns;  /* when a snapshot was last asked for */
    size_t blocks;
};

struct tb_kv_index {
    struct node **buckets;
    size_t n_buckets; /* a power of two */
    size_t n_nodes;
    size_t n_entries;
    struct inst *insts;
    size_t n_insts;
    uint64_t gaps, snapshots;
};

#define INITIAL_BUCKETS 1024

tb_kv_index_t *tb_kv_index_new(void)
{
    tb_kv_index_t *x = calloc(1, sizeof(*x));
    if (!x) {
        return NULL;
    }
    x->buckets = calloc(INITIAL_BUCKETS, sizeof(*x->buckets));
    if (!x->buckets) {
        free(x);
        return NULL;
    }
    x->n_buckets = INITIAL_BUCKETS;
    return x;
}

void tb_kv_index_destroy(tb_kv_index_t **x_p)
{
    if (!x_p || !*x_p) {
        return;
    }
    tb_kv_index_t *x = *x_p;
    for (size_t b = 0; b < x->n_buckets; b++) {
        for (struct node *n = x->buckets[b], *next; n; n = next) {
            next = n->next;
            free(n->h);
            free(n);
        }
    }
    free(x->buckets);
    free(x->insts);
    free(x);
    *x_p = NULL;
}

static size_t s_bucket(const tb_kv_index_t *x, uint64_t hash)
{
    /* the hashes are already well mixed; fold the high half in for good measure */
    return (size_t)((hash ^ (hash >> 32)) & (x->n_buckets - 1));
}

static struct node *s_find(const tb_kv_index_t *x, uint64_t hash)
{
    for (struct node *n = x->buckets[s_bucket(x, hash)]; n; n = n->next) {
        if (n->hash == hash) {
            return n;
        }
    }
    return NULL;
}

/* Doubles the table when it holds more nodes than buckets; keeps it as is when out of memory. */
static void s_grow(tb_kv_index_t *x)
{
    if (x->n_nodes < x->n_buckets) {
        return;
    }
    size_t nb = x->n_buckets * 2;
    struct node **b = calloc(nb, sizeof(*b));
    if (!b) {
        return;
    }
    struct node **old = x->buckets;
    size_t old_n = x->n_buckets;
    x->buckets = b;
    x->n_buckets = nb;
    for (size_t i = 0; i < old_n; i++) {
        for (struct node *n = old[i], *next; n; n = next) {
            next = n->next;
            size_t k = s_bucket(x, n->hash);
            n->next = b[k];
            b[k] = n;
        }
    }
    free(old);
}

static struct node *s_get_or_add(tb_kv_index_t *x, uint64_t hash, uint64_t parent)
{
    struct node *n = s_find(x, hash);
    if (n) {
        if (parent) {
            n->parent = parent;
        }
        return n;
    }
    s_grow(x);
    n = calloc(1, sizeof(*n));
    if (!n) {
        return NULL;
    }
    n->hash = hash;
    n->parent = parent;
    size_t k = s_bucket(x, hash);
    n->next = x->buckets[k];
    x->buckets[k] = n;
    x->n_nodes++;
    return n;
}

static void s_unlink(tb_kv_index_t *x, struct node *n)
{
    for (struct node **pp = &x->buckets[s_bucket(x, n->hash)]; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            break;
        }
    }
    free(n->h);
    free(n);
    x->n_nodes--;
}

/* Adds (or refreshes) `slot` as a holder of `n`.  0 or TB_ENOMEM. */
static int s_hold(tb_kv_index_t *x, struct node *n, uint32_t slot, int64_t expires_ns)
{
    for (uint32_t i = 0; i < n->n; i++) {
        if (n->h[i].slot == slot) {
            /* an event-fed entry (0) outlives any prediction */
            if (n->h[i].expires_ns != 0 && (expires_ns == 0 || expires_ns > n->h[i].expires_ns)) {
                n->h[i].expires_ns = expires_ns;
            }
            return 0;
        }
    }
    if (n->n == n->cap) {
        uint32_t cap = n->cap ? n->cap * 2 : 2;
        struct holder *h = realloc(n->h, cap * sizeof(*h));
        if (!h) {
            return TB_ENOMEM;
        }
        n->h = h;
        n->cap = cap;
    }
    n->h[n->n++] = (struct holder){.slot = slot, .expires_ns = expires_ns};
    x->n_entries++;
    x->insts[slot].blocks++;
    return 0;
}

/* Drops `slot` from `n`'s holders; frees the node when none is left. */
static void s_drop(tb_kv_index_t *x, struct node *n, uint32_t slot)
{
    for (uint32_t i = 0; i < n->n; i++) {
        if (n->h[i].slot == slot) {
            n->h[i] = n->h[--n->n];
            x->n_entries--;
            x->insts[slot].blocks--;
            break;
        }
    }
    if (n->n == 0) {
        s_unlink(x, n);
    }
}

/* Drops every entry of `slot` (and, with `expired_before` > 0, only predictions expired by
 * then, for every slot: then `slot` is ignored). */
static void s_sweep(tb_kv_index_t *x, uint32_t slot, int64_t expired_before)
{
    for (size_t b = 0; b < x->n_buckets; b++) {
        struct node *n = x->buckets[b];
        while (n) {
            struct node *next = n->next;
            for (uint32_t i = 0; i < n->n;) {
                struct holder *h = &n->h[i];
                bool drop = expired_before > 0
                                ? (h->expires_ns != 0 && h->expires_ns <= expired_before)
                                : h->slot == slot;
                if (drop) {
                    x->insts[h->slot].blocks--;
                    x->n_entries--;
                    *h = n->h[--n->n];
                } else {
                    i++;
                }
            }
            if (n->n == 0) {
                s_unlink(x, n);
            }
            n = next;
        }
    }
}

static struct inst *s_inst(const tb_kv_index_t *x, uint64_t id, uint32_t *slot)
{
    for (size_t i = 0; i < x->n_insts; i++) {
        if (x->insts[i].used && x->insts[i].id == id) {
            if (slot) {
                *slot = (uint32_t)i;
            }
            return &x->insts[i];
        }
    }
    return NULL;
}

static struct inst *s_inst_add(tb_kv_index_t *x, uint64_t id, uint32_t *slot)
{
    struct inst *in = s_inst(x, id, slot);
    if (in) {
        return in;
    }
    size_t k = 0;
    while (k < x->n_insts && x->insts[k].used) {
        k++;
    }
    if (k == x->n_insts) {
        struct inst *v = realloc(x->insts, (x->n_insts + 1) * sizeof(*v));
        if (!v) {
            return NULL;
        }
        x->insts = v;
        x->n_insts++;
    }
    x->insts[k] = (struct inst){.id = id, .used = true};
    *slot = (uint32_t)k;
    return &x->insts[k];
}

/* Where the event stands in the instance's numbering: 1 apply, 0 ignore (old), or
 * TB_KV_INDEX_GAP + 1 (apply, a gap before it). */
static int s_sequence(tb_kv_index_t *x, struct inst *in, const struct tb_kv_index_event *ev)
{
    if (ev->snapshot) {
        in->stale = false;
        in->next_seq = ev->seq + 1;
        x->snapshots++;
        return 1;
    }
    if (ev->seq == 0) {
        return 1;
    }
    if (in->next_seq != 0 && ev->seq < in->next_seq) {
        return 0;
    }
    bool gap = in->next_seq != 0 ? ev->seq > in->next_seq : ev->seq > 1;
    in->next_seq = ev->seq + 1;
    if (gap) {
        in->stale = true;
        x->gaps++;
        return TB_KV_INDEX_GAP + 1;
    }
    return 1;
}

int tb_kv_index_apply(tb_kv_index_t *x, const struct tb_kv_index_event *ev)
{
    uint32_t slot;
    struct inst *in = s_inst_add(x, ev->instance_id, &slot);
    if (!in) {
        return TB_ENOMEM;
    }
    int where = s_sequence(x, in, ev);
    if (where == 0) {
        return 0;
    }
    if (ev->cleared || ev->snapshot) {
        s_sweep(x, slot, 0);
    }
    for (size_t i = 0; i < ev->n_removed; i++) {
        struct node *n = s_find(x, ev->removed[i]);
        if (n) {
            s_drop(x, n, slot);
        }
    }
    int rc = 0;
    for (size_t i = 0; i < ev->n_stored && rc == 0; i++) {
        struct node *n = s_get_or_add(x, ev->stored[i], ev->parents ? ev->parents[i] : 0);
        rc = n ? s_hold(x, n, slot, 0) : TB_ENOMEM;
        if (rc != 0 && n && n->n == 0) {
            s_unlink(x, n);
        }
    }
    if (rc != 0) {
        in->stale = true; /* the entries are incomplete: a snapshot will mend them */
        return rc;
    }
    return where == TB_KV_INDEX_GAP + 1 ? TB_KV_INDEX_GAP : 0;
}

int tb_kv_index_predict(tb_kv_index_t *x, uint64_t instance_id, const uint64_t *hashes, size_t n,
                        int64_t expires_ns)
{
    uint32_t slot;
    if (!s_inst_add(x, instance_id, &slot)) {
        return TB_ENOMEM;
    }
    if (expires_ns == 0) {
        expires_ns = 1; /* 0 means "never expires" inside */
    }
    for (size_t i = 0; i < n; i++) {
        struct node *nd = s_get_or_add(x, hashes[i], i > 0 ? hashes[i - 1] : 0);
        if (!nd || s_hold(x, nd, slot, expires_ns) != 0) {
            if (nd && nd->n == 0) {
                s_unlink(x, nd);
            }
            return TB_ENOMEM;
        }
    }
    return 0;
}

void tb_kv_index_expire(tb_kv_index_t *x, int64_t now_ns)
{
    if (now_ns > 0) {
        s_sweep(x, 0, now_ns);
    }
}

void tb_kv_index_remove_instance(tb_kv_index_t *x, uint64_t instance_id)
{
    uint32_t slot;
    struct inst *in = s_inst(x, instance_id, &slot);
    if (!in) {
        return;
    }
    if (in->blocks > 0) {
        s_sweep(x, slot, 0);
    }
    in->used = false;
}

static bool s_holds(const tb_kv_index_t *x, const struct node *n, uint64_t id, int64_t now_ns)
{
    for (uint32_t i = 0; i < n->n; i++) {
        const struct holder *h = &n->h[i];
        if (x->insts[h->slot].id == id && (h->expires_ns == 0 || h->expires_ns > now_ns)) {
            return true;
        }
    }
    return false;
}

size_t tb_kv_index_match(const tb_kv_index_t *x, const uint64_t *hashes, size_t n, int64_t now_ns,
                         struct tb_kv_overlap *out, size_t max)
{
    if (n == 0 || max == 0) {
        return 0;
    }
    const struct node *first = s_find(x, hashes[0]);
    if (!first) {
        return 0;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < first->n && k < max; i++) {
        const struct holder *h = &first->h[i];
        if (h->expires_ns == 0 || h->expires_ns > now_ns) {
            out[k++] = (struct tb_kv_overlap){.instance_id = x->insts[h->slot].id, .blocks = 1};
        }
    }
    for (size_t depth = 1; depth < n; depth++) {
        const struct node *nd = s_find(x, hashes[depth]);
        if (!nd) {
            break;
        }
        bool advanced = false;
        for (size_t j = 0; j < k; j++) {
            if (out[j].blocks == depth && s_holds(x, nd, out[j].instance_id, now_ns)) {
                out[j].blocks++;
                advanced = true;
            }
        }
        if (!advanced) {
            break;
        }
    }
    return k;
}

size_t tb_kv_index_instance_blocks(const tb_kv_index_t *x, uint64_t instance_id)
{
    const struct inst *in = s_inst(x, instance_id, NULL);
    return in ? in->blocks : 0;
}

bool tb_kv_index_snapshot_due(tb_kv_index_t *x, uint64_t instance_id, int64_t now_ns,
                              int64_t interval_ns)
{
    struct inst *in = s_inst(x, instance_id, NULL);
    if (!in || !in->stale || (in->asked_ns != 0 && now_ns - in->asked_ns < interval_ns)) {
        return false;
    }
    in->asked_ns = now_ns;
    return true;
}

void tb_kv_index_get_stats(const tb_kv_index_t *x, struct tb_kv_index_stats *out)
{
    size_t used = 0;
    for (size_t i = 0; i < x->n_insts; i++) {
        used += x->insts[i].used;
    }
    *out = (struct tb_kv_index_stats){.nodes = x->n_nodes,
                                      .entries = x->n_entries,
                                      .instances = used,
                                      .gaps = x->gaps,
                                      .snapshots = x->snapshots};
}
