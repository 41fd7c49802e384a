/* tb_pp_migrate: a request's record for migration (see tb_pp_migrate.h). */
#include "tb_pp_migrate.h"

#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"

void tb_pp_migrate_release(struct tb_pp_migrate *m)
{
    free(m->generated);
    free(m->resume);
    free(m->failed);
    memset(m, 0, sizeof(*m));
}

int tb_pp_migrate_note(struct tb_pp_migrate *m, const int32_t *ids, size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (m->n_generated + n > m->cap_generated) {
        size_t cap = m->cap_generated ? m->cap_generated * 2 : 64;
        while (cap < m->n_generated + n) {
            cap *= 2;
        }
        int32_t *g = realloc(m->generated, cap * sizeof(*g));
        if (!g) {
            return TB_ENOMEM;
        }
        m->generated = g;
        m->cap_generated = cap;
    }
    memcpy(m->generated + m->n_generated, ids, n * sizeof(*ids));
    m->n_generated += n;
    return 0;
}

bool tb_pp_migrate_is_break(int code)
{
    return code == TB_EGONE || code == TB_EDRAINING;
}

static int s_remember(struct tb_pp_migrate *m, uint64_t instance)
{
    if (instance == 0) {
        return 0;
    }
    if (m->n_failed == m->cap_failed) {
        size_t cap = m->cap_failed ? m->cap_failed * 2 : 4;
        uint64_t *f = realloc(m->failed, cap * sizeof(*f));
        if (!f) {
            return TB_ENOMEM;
        }
        m->failed = f;
        m->cap_failed = cap;
    }
    m->failed[m->n_failed++] = instance;
    return 0;
}

tb_pp_migrate_verdict_t tb_pp_migrate_on_break(struct tb_pp_migrate *m, int code, int64_t limit,
                                               const int32_t *prompt, size_t n_prompt,
                                               int64_t now_ns)
{
    if (!tb_pp_migrate_is_break(code) || limit <= 0) {
        return TB_PP_MIGRATE_NO;
    }
    if (m->migrations >= limit) {
        return TB_PP_MIGRATE_EXHAUSTED;
    }
    size_t n = n_prompt + m->n_generated;
    int32_t *r = realloc(m->resume, (n ? n : 1) * sizeof(*r));
    if (!r || s_remember(m, m->instance) != 0) {
        if (r) {
            m->resume = r;
        }
        return TB_PP_MIGRATE_NO;
    }
    memcpy(r, prompt, n_prompt * sizeof(*r));
    if (m->n_generated) {
        memcpy(r + n_prompt, m->generated, m->n_generated * sizeof(*r));
    }
    m->resume = r;
    m->n_resume = n;
    m->n_resumed = m->n_generated;
    m->migrations++;
    m->broke_ns = now_ns;
    m->instance = 0;
    return TB_PP_MIGRATE_GO;
}

const int32_t *tb_pp_migrate_tokens(const struct tb_pp_migrate *m, const int32_t *prompt,
                                    size_t n_prompt, size_t *n_out)
{
    if (m->migrations == 0 || !m->resume) {
        *n_out = n_prompt;
        return prompt;
    }
    *n_out = m->n_resume;
    return m->resume;
}

size_t tb_pp_migrate_resumed(const struct tb_pp_migrate *m)
{
    return m->migrations > 0 && m->resume ? m->n_resumed : 0;
}
