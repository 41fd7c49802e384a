/* tb_instance_dir: models and their live instances (see tb_instance_dir.h). */
#include "tb_instance_dir.h"

#include <stdlib.h>
#include <string.h>

struct tb_instance_dir {
    char *kinds; /* ",text,tokens," */
    struct tb_idir_instance **insts;
    size_t n_insts, cap_insts;
    struct tb_idir_model *models;
    size_t n_models, cap_models;
};

tb_instance_dir_t *tb_instance_dir_new(const char *kinds)
{
    tb_instance_dir_t *t = calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    const char *k = kinds && *kinds ? kinds : "text";
    size_t n = strlen(k);
    t->kinds = malloc(n + 3);
    if (!t->kinds) {
        free(t);
        return NULL;
    }
    t->kinds[0] = ',';
    memcpy(t->kinds + 1, k, n);
    t->kinds[n + 1] = ',';
    t->kinds[n + 2] = 0;
    return t;
}

/* Whether `kind` is one of the directory's kinds. */
static bool s_wants(const tb_instance_dir_t *t, const char *kind)
{
    if (!*kind || strchr(kind, ',')) {
        return false; /* cannot match, and p[-1] below stays inside the list */
    }
    size_t n = strlen(kind);
    for (const char *p = strstr(t->kinds, kind); p; p = strstr(p + 1, kind)) {
        if (p[-1] == ',' && p[n] == ',') {
            return true;
        }
    }
    return false;
}

static void s_inst_free(struct tb_idir_instance *i)
{
    free(i->endpoint);
    free(i->model);
    free(i->kind);
    free(i);
}

void tb_instance_dir_destroy(tb_instance_dir_t **t_p)
{
    if (!t_p || !*t_p) {
        return;
    }
    tb_instance_dir_t *t = *t_p;
    for (size_t i = 0; i < t->n_insts; i++) {
        s_inst_free(t->insts[i]);
    }
    for (size_t i = 0; i < t->n_models; i++) {
        free(t->models[i].name);
    }
    free(t->insts);
    free(t->models);
    free(t->kinds);
    free(t);
    *t_p = NULL;
}

static struct tb_idir_model *s_model(tb_instance_dir_t *t, const char *name)
{
    for (size_t i = 0; i < t->n_models; i++) {
        if (strcmp(t->models[i].name, name) == 0) {
            return &t->models[i];
        }
    }
    return NULL;
}

int tb_instance_dir_add(tb_instance_dir_t *t, const struct tb_route *r, int64_t now_unix)
{
    const char *kind = r->kind && *r->kind ? r->kind : "text";
    if (!r->model || !*r->model || !s_wants(t, kind) || tb_instance_dir_get(t, r->instance_id)) {
        return 0;
    }
    if (t->n_insts == t->cap_insts) {
        size_t cap = t->cap_insts ? t->cap_insts * 2 : 8;
        struct tb_idir_instance **v = realloc(t->insts, cap * sizeof(*v));
        if (!v) {
            return TB_ENOMEM;
        }
        t->insts = v;
        t->cap_insts = cap;
    }
    struct tb_idir_model *m = s_model(t, r->model);
    if (!m) {
        if (t->n_models == t->cap_models) {
            size_t cap = t->cap_models ? t->cap_models * 2 : 4;
            struct tb_idir_model *v = realloc(t->models, cap * sizeof(*v));
            if (!v) {
                return TB_ENOMEM;
            }
            t->models = v;
            t->cap_models = cap;
        }
        char *name = strdup(r->model);
        if (!name) {
            return TB_ENOMEM;
        }
        m = &t->models[t->n_models++];
        memset(m, 0, sizeof(*m));
        m->name = name;
        m->created = now_unix;
    }
    struct tb_idir_instance *i = calloc(1, sizeof(*i));
    if (i) {
        i->instance_id = r->instance_id;
        i->endpoint = strdup(r->endpoint);
        i->model = strdup(r->model);
        i->kind = strdup(kind);
        i->context_length = r->context_length;
        i->kv_block_size = r->kv_block_size;
        i->local = r->local;
        i->state = TB_INST_PROBING;
    }
    if (!i || !i->endpoint || !i->model || !i->kind) {
        if (i) {
            s_inst_free(i);
        }
        if (m->instances == 0) {
            free(m->name);
            t->n_models--;
        }
        return TB_ENOMEM;
    }
    t->insts[t->n_insts++] = i;
    m->instances++;
    return 1;
}

bool tb_instance_dir_remove(tb_instance_dir_t *t, uint64_t instance_id, bool *out_model_gone)
{
    if (out_model_gone) {
        *out_model_gone = false;
    }
    for (size_t k = 0; k < t->n_insts; k++) {
        struct tb_idir_instance *i = t->insts[k];
        if (i->instance_id != instance_id) {
            continue;
        }
        struct tb_idir_model *m = s_model(t, i->model);
        if (m) {
            m->instances--;
            if (i->state == TB_INST_HEALTHY) {
                m->healthy--;
            }
            if (m->instances == 0) {
                size_t mi = (size_t)(m - t->models);
                free(m->name);
                memmove(&t->models[mi], &t->models[mi + 1], (t->n_models - mi - 1) * sizeof(*m));
                t->n_models--;
                if (out_model_gone) {
                    *out_model_gone = true;
                }
            }
        }
        memmove(&t->insts[k], &t->insts[k + 1], (t->n_insts - k - 1) * sizeof(t->insts[0]));
        t->n_insts--;
        s_inst_free(i);
        return true;
    }
    return false;
}

bool tb_instance_dir_load(tb_instance_dir_t *d, uint64_t instance_id, int64_t running,
                          int64_t waiting, int64_t kv_used, int64_t kv_total)
{
    struct tb_idir_instance *i = tb_instance_dir_get(d, instance_id);
    if (!i) {
        return false;
    }
    i->has_load = true;
    i->running = running;
    i->waiting = waiting;
    i->kv_used = kv_used;
    i->kv_total = kv_total;
    i->pending = 0;
    i->pending_prefill = 0;
    return true;
}

bool tb_instance_dir_load_blocks(tb_instance_dir_t *d, uint64_t instance_id,
                                 int64_t prefill_blocks, int64_t decode_blocks)
{
    struct tb_idir_instance *i = tb_instance_dir_get(d, instance_id);
    if (!i) {
        return false;
    }
    i->has_block_load = true;
    i->prefill_blocks = prefill_blocks;
    i->decode_blocks = decode_blocks;
    return true;
}

int64_t tb_instance_dir_min_context(const tb_instance_dir_t *d, const char *model)
{
    int64_t ctx = 0;
    for (size_t k = 0; k < d->n_insts; k++) {
        const struct tb_idir_instance *i = d->insts[k];
        if (i->context_length > 0 && (ctx == 0 || i->context_length < ctx) &&
            strcmp(i->model, model) == 0) {
            ctx = i->context_length;
        }
    }
    return ctx;
}

struct tb_idir_instance *tb_instance_dir_get(tb_instance_dir_t *t, uint64_t instance_id)
{
    for (size_t k = 0; k < t->n_insts; k++) {
        if (t->insts[k]->instance_id == instance_id) {
            return t->insts[k];
        }
    }
    return NULL;
}

size_t tb_instance_dir_count(const tb_instance_dir_t *t)
{
    return t->n_insts;
}

struct tb_idir_instance *tb_instance_dir_at(tb_instance_dir_t *t, size_t i)
{
    return i < t->n_insts ? t->insts[i] : NULL;
}

size_t tb_instance_dir_model_count(const tb_instance_dir_t *t)
{
    return t->n_models;
}

const struct tb_idir_model *tb_instance_dir_model_at(const tb_instance_dir_t *t, size_t i)
{
    return i < t->n_models ? &t->models[i] : NULL;
}

const struct tb_idir_model *tb_instance_dir_model(const tb_instance_dir_t *t, const char *name)
{
    return s_model((tb_instance_dir_t *)t, name);
}

void tb_instance_dir_set_state(tb_instance_dir_t *t, struct tb_idir_instance *inst,
                               tb_inst_state_t state)
{
    if (inst->state == state) {
        return;
    }
    struct tb_idir_model *m = s_model(t, inst->model);
    if (m) {
        if (inst->state == TB_INST_HEALTHY) {
            m->healthy--;
        }
        if (state == TB_INST_HEALTHY) {
            m->healthy++;
        }
    }
    inst->state = state;
}

struct tb_idir_instance *tb_instance_dir_next(tb_instance_dir_t *t, const char *model)
{
    struct tb_idir_model *m = s_model(t, model);
    if (!m || t->n_insts == 0) {
        return NULL;
    }
    struct tb_idir_instance *fallback = NULL;
    size_t n = t->n_insts;
    for (size_t step = 0; step < n; step++) {
        struct tb_idir_instance *i = t->insts[(m->cursor + step) % n];
        if (strcmp(i->model, model) != 0) {
            continue;
        }
        if (i->state != TB_INST_UNHEALTHY) {
            m->cursor = (m->cursor + step + 1) % n;
            return i;
        }
        if (!fallback) {
            fallback = i;
        }
    }
    if (fallback) {
        m->cursor = (m->cursor + 1) % n;
    }
    return fallback;
}

bool tb_instance_dir_is_ready(const tb_instance_dir_t *t)
{
    for (size_t i = 0; i < t->n_models; i++) {
        if (t->models[i].healthy > 0) {
            return true;
        }
    }
    return false;
}
