/* tb_model_table: models and their live instances (see tb_model_table.h). */
#include "tb_model_table.h"

#include <stdlib.h>
#include <string.h>

struct tb_model_table {
    char *kind;
    struct tb_mt_instance **insts;
    size_t n_insts, cap_insts;
    struct tb_mt_model *models;
    size_t n_models, cap_models;
};

tb_model_table_t *tb_model_table_new(const char *kind)
{
    tb_model_table_t *t = calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    t->kind = strdup(kind ? kind : "text");
    if (!t->kind) {
        free(t);
        return NULL;
    }
    return t;
}

static void s_inst_free(struct tb_mt_instance *i)
{
    free(i->endpoint);
    free(i->model);
    free(i->kind);
    free(i);
}

void tb_model_table_destroy(tb_model_table_t **t_p)
{
    if (!t_p || !*t_p) {
        return;
    }
    tb_model_table_t *t = *t_p;
    for (size_t i = 0; i < t->n_insts; i++) {
        s_inst_free(t->insts[i]);
    }
    for (size_t i = 0; i < t->n_models; i++) {
        free(t->models[i].name);
    }
    free(t->insts);
    free(t->models);
    free(t->kind);
    free(t);
    *t_p = NULL;
}

static struct tb_mt_model *s_model(tb_model_table_t *t, const char *name)
{
    for (size_t i = 0; i < t->n_models; i++) {
        if (strcmp(t->models[i].name, name) == 0) {
            return &t->models[i];
        }
    }
    return NULL;
}

int tb_model_table_add(tb_model_table_t *t, const struct tb_route *r, int64_t now_unix)
{
    const char *kind = r->kind && *r->kind ? r->kind : "text";
    if (!r->model || !*r->model || strcmp(kind, t->kind) != 0 ||
        tb_model_table_get(t, r->instance_id)) {
        return 0;
    }
    if (t->n_insts == t->cap_insts) {
        size_t cap = t->cap_insts ? t->cap_insts * 2 : 8;
        struct tb_mt_instance **v = realloc(t->insts, cap * sizeof(*v));
        if (!v) {
            return TB_ENOMEM;
        }
        t->insts = v;
        t->cap_insts = cap;
    }
    struct tb_mt_model *m = s_model(t, r->model);
    if (!m) {
        if (t->n_models == t->cap_models) {
            size_t cap = t->cap_models ? t->cap_models * 2 : 4;
            struct tb_mt_model *v = realloc(t->models, cap * sizeof(*v));
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
    struct tb_mt_instance *i = calloc(1, sizeof(*i));
    if (i) {
        i->instance_id = r->instance_id;
        i->endpoint = strdup(r->endpoint);
        i->model = strdup(r->model);
        i->kind = strdup(kind);
        i->context_length = r->context_length;
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

bool tb_model_table_remove(tb_model_table_t *t, uint64_t instance_id, bool *out_model_gone)
{
    if (out_model_gone) {
        *out_model_gone = false;
    }
    for (size_t k = 0; k < t->n_insts; k++) {
        struct tb_mt_instance *i = t->insts[k];
        if (i->instance_id != instance_id) {
            continue;
        }
        struct tb_mt_model *m = s_model(t, i->model);
        if (m) {
            m->instances--;
            if (i->state == TB_INST_HEALTHY) {
                m->healthy--;
            }
            if (m->instances == 0) {
                size_t mi = (size_t)(m - t->models);
                free(m->name);
                memmove(&t->models[mi], &t->models[mi + 1],
                        (t->n_models - mi - 1) * sizeof(*m));
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

struct tb_mt_instance *tb_model_table_get(tb_model_table_t *t, uint64_t instance_id)
{
    for (size_t k = 0; k < t->n_insts; k++) {
        if (t->insts[k]->instance_id == instance_id) {
            return t->insts[k];
        }
    }
    return NULL;
}

size_t tb_model_table_count(const tb_model_table_t *t)
{
    return t->n_insts;
}

struct tb_mt_instance *tb_model_table_at(tb_model_table_t *t, size_t i)
{
    return i < t->n_insts ? t->insts[i] : NULL;
}

size_t tb_model_table_model_count(const tb_model_table_t *t)
{
    return t->n_models;
}

const struct tb_mt_model *tb_model_table_model_at(const tb_model_table_t *t, size_t i)
{
    return i < t->n_models ? &t->models[i] : NULL;
}

const struct tb_mt_model *tb_model_table_model(const tb_model_table_t *t, const char *name)
{
    return s_model((tb_model_table_t *)t, name);
}

void tb_model_table_set_state(tb_model_table_t *t, struct tb_mt_instance *inst,
                              tb_inst_state_t state)
{
    if (inst->state == state) {
        return;
    }
    struct tb_mt_model *m = s_model(t, inst->model);
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

struct tb_mt_instance *tb_model_table_pick(tb_model_table_t *t, const char *model)
{
    struct tb_mt_model *m = s_model(t, model);
    if (!m || t->n_insts == 0) {
        return NULL;
    }
    struct tb_mt_instance *fallback = NULL;
    size_t n = t->n_insts;
    for (size_t step = 0; step < n; step++) {
        struct tb_mt_instance *i = t->insts[(m->cursor + step) % n];
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

bool tb_model_table_is_ready(const tb_model_table_t *t)
{
    for (size_t i = 0; i < t->n_models; i++) {
        if (t->models[i].healthy > 0) {
            return true;
        }
    }
    return false;
}
