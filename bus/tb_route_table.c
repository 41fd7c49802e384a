/* tb_route_table: the routes a bus handle knows, from registry snapshots and events. */
#include "tb_route_table.h"

#include <stdlib.h>
#include <string.h>

struct tb_route_table {
    char *process_id;
    struct tb_rt_entry *v;
    size_t n, cap;
};

tb_route_table_t *tb_route_table_new(const char *process_id)
{
    tb_route_table_t *t = calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    t->process_id = strdup(process_id);
    if (!t->process_id) {
        free(t);
        return NULL;
    }
    return t;
}

void tb_rt_entry_release(struct tb_rt_entry *e)
{
    free((char *)e->pub.endpoint);
    free((char *)e->pub.model);
    free((char *)e->pub.kind);
    free((char *)e->pub.info);
    free(e->process_id);
    free(e->address);
    free(e->curve_key);
    memset(e, 0, sizeof(*e));
}

void tb_route_table_destroy(tb_route_table_t **t_p)
{
    if (!t_p || !*t_p) {
        return;
    }
    tb_route_table_t *t = *t_p;
    for (size_t i = 0; i < t->n; i++) {
        tb_rt_entry_release(&t->v[i]);
    }
    free(t->v);
    free(t->process_id);
    free(t);
    *t_p = NULL;
}

static const char *s_pick_address(const struct tb_msg_route *r, bool local)
{
    for (size_t i = 0; i < r->addresses_count; i++) {
        bool inproc = strncmp(r->addresses[i], "inproc://", 9) == 0;
        if (inproc == local) {
            return r->addresses[i];
        }
    }
    return NULL;
}

int tb_route_table_add(tb_route_table_t *t, const struct tb_msg_route *r)
{
    bool local = strcmp(r->process_id, t->process_id) == 0;
    const char *addr = s_pick_address(r, local);
    if (!addr) {
        return TB_EINVAL;
    }
    struct tb_rt_entry e = {0};
    e.pub.endpoint = strdup(r->endpoint);
    e.pub.instance_id = r->instance_id;
    e.pub.model = strdup(r->model ? r->model : "");
    e.pub.kind = strdup(r->kind ? r->kind : "text");
    e.pub.context_length = r->has_context_length ? r->context_length : 0;
    e.pub.kv_block_size = r->has_kv_block_size ? r->kv_block_size : 0;
    e.pub.info = strdup(r->info ? r->info : "{}");
    e.pub.local = local;
    e.process_id = strdup(r->process_id);
    e.address = strdup(addr);
    e.curve_key = r->curve_key ? strdup(r->curve_key) : NULL;
    if (!e.pub.endpoint || !e.pub.model || !e.pub.kind || !e.pub.info || !e.process_id ||
        !e.address || (r->curve_key && !e.curve_key)) {
        tb_rt_entry_release(&e);
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].pub.instance_id == r->instance_id) {
            tb_rt_entry_release(&t->v[i]);
            t->v[i] = e;
            return 0;
        }
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        struct tb_rt_entry *v = realloc(t->v, cap * sizeof(*v));
        if (!v) {
            tb_rt_entry_release(&e);
            return TB_ENOMEM;
        }
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = e;
    return 1;
}

bool tb_route_table_remove(tb_route_table_t *t, uint64_t instance_id, struct tb_rt_entry *out)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].pub.instance_id == instance_id) {
            if (out) {
                *out = t->v[i];
            } else {
                tb_rt_entry_release(&t->v[i]);
            }
            t->v[i] = t->v[--t->n];
            return true;
        }
    }
    return false;
}

const struct tb_rt_entry *tb_route_table_get(const tb_route_table_t *t, uint64_t instance_id)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].pub.instance_id == instance_id) {
            return &t->v[i];
        }
    }
    return NULL;
}

size_t tb_route_table_count(const tb_route_table_t *t)
{
    return t->n;
}

const struct tb_rt_entry *tb_route_table_at(const tb_route_table_t *t, size_t i)
{
    return i < t->n ? &t->v[i] : NULL;
}

int tb_route_table_find(const tb_route_table_t *t, const char *endpoint, const char *model,
                        struct tb_route *out, int max)
{
    return tb_route_table_find_sized(t, endpoint, model, out, sizeof(*out), max);
}

int tb_route_table_find_sized(const tb_route_table_t *t, const char *endpoint, const char *model,
                              void *out, size_t route_size, int max)
{
    if (route_size < offsetof(struct tb_route, local) + sizeof(bool)) {
        return TB_EINVAL;
    }
    size_t copy = route_size < sizeof(struct tb_route) ? route_size : sizeof(struct tb_route);
    int found = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct tb_route *r = &t->v[i].pub;
        if ((endpoint && strcmp(r->endpoint, endpoint) != 0) ||
            (model && strcmp(r->model, model) != 0)) {
            continue;
        }
        if (found < max && out) {
            memcpy((char *)out + (size_t)found * route_size, r, copy);
        }
        found++;
    }
    return found;
}

uint64_t tb_route_table_pick(const tb_route_table_t *t, const char *endpoint, uint64_t *cursor)
{
    size_t matches = 0;
    for (size_t i = 0; i < t->n; i++) {
        matches += strcmp(t->v[i].pub.endpoint, endpoint) == 0;
    }
    if (matches == 0) {
        return 0;
    }
    /* Order by instance id so the rotation does not depend on table order. */
    uint64_t want = (*cursor)++ % matches;
    uint64_t prev = 0;
    uint64_t pick = 0;
    for (uint64_t k = 0; k <= want; k++) {
        pick = UINT64_MAX;
        for (size_t i = 0; i < t->n; i++) {
            uint64_t id = t->v[i].pub.instance_id;
            if (strcmp(t->v[i].pub.endpoint, endpoint) == 0 && (k == 0 || id > prev) &&
                id < pick) {
                pick = id;
            }
        }
        prev = pick;
    }
    return pick;
}
