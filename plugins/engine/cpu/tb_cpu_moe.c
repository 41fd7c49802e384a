/*
 * tb_cpu_moe.c - the mixture-of-experts FFN (tb_cpu_moe.h): routing, grouping tokens by expert,
 * one gate/up + down pass per chosen expert, and the weighted sum back into the token rows; a
 * lone token (batch-1 decode) takes its chosen experts' gate/up products in one call.
 */
#include "tb_cpu_moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_cpu_weights.h"
#include "tb_errors.h"

#define ROWS_PER_TASK 4
#define USE_GROUPS 1 /* s_one_token: these experts take the grouped path (not a TB_ code) */

struct tb_cpu_moe {
    uint32_t max_tokens, n_experts, k, hidden, ff;
    tb_moe_gating_t gating;
    float *logits;   /* [T, n_experts] */
    int32_t *sel;    /* [T, k] chosen experts */
    float *sel_w;    /* [T, k] their weights */
    uint32_t *count; /* [n_experts] tokens per expert */
    uint32_t *start; /* [n_experts + 1] offsets into tok_of / w_of */
    int32_t *tok_of; /* [T * k] token rows grouped by expert */
    float *w_of;     /* [T * k] */
    float *xg;       /* [T, hidden] gathered rows */
    float *g, *u;    /* [T, ff] */
    float *y;        /* [T, hidden] */
    uint32_t last_experts, last_rows;
};

static float *s_falloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* ------------------------------------------------------------------------------------------ */
/* Weights                                                                                     */
/* ------------------------------------------------------------------------------------------ */

void tb_cpu_moe_layer_destroy(struct tb_cpu_moe_layer **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    struct tb_cpu_moe_layer *ml = *self_p;
    free(ml->gate);
    free(ml->up);
    free(ml->down);
    free(ml->sh_gate_inp);
    free(ml);
    *self_p = NULL;
}

static int s_shared(const tb_model_t *model, uint32_t l, struct tb_cpu_moe_layer *ml, char *err,
                    size_t err_len)
{
    const struct tb_model_params *p = tb_model_params(model);
    const uint64_t h = p->hidden, sh = p->shared_intermediate;
    char name[64];
    const struct {
        tb_layer_tensor_t id;
        struct tb_cpu_weight *w;
        uint64_t rows, cols;
    } mats[] = {{TB_LAYER_SH_GATE, &ml->sh_gate, sh, h},
                {TB_LAYER_SH_UP, &ml->sh_up, sh, h},
                {TB_LAYER_SH_DOWN, &ml->sh_down, h, sh}};
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        snprintf(name, sizeof name, "layers.%u.%s", l, tb_layer_tensor_name(mats[i].id));
        int rc = tb_cpu_weights_matrix(tb_model_layer_tensor(model, l, mats[i].id), name,
                                       mats[i].rows, mats[i].cols, mats[i].w, err, err_len);
        if (rc != TB_OK) {
            return rc;
        }
    }
    snprintf(name, sizeof name, "layers.%u.sh_gate_inp", l);
    ml->shared = true;
    return tb_cpu_weights_vector(tb_model_layer_tensor(model, l, TB_LAYER_SH_GATE_INP), name, h,
                                 &ml->sh_gate_inp, err, err_len);
}

int tb_cpu_moe_layer_new(const tb_model_t *model, uint32_t l, struct tb_cpu_moe_layer **out,
                         char *err, size_t err_len)
{
    const struct tb_model_params *p = tb_model_params(model);
    const uint64_t h = p->hidden, ff = p->expert_intermediate;
    const uint32_t E = p->n_experts;
    *out = NULL;
    struct tb_cpu_moe_layer *ml = calloc(1, sizeof *ml);
    if (!ml || E == 0 || !(ml->gate = calloc(E, sizeof *ml->gate)) ||
        !(ml->up = calloc(E, sizeof *ml->up)) || !(ml->down = calloc(E, sizeof *ml->down))) {
        tb_cpu_moe_layer_destroy(&ml);
        snprintf(err, err_len, E == 0 ? "model has no experts" : "out of memory");
        return E == 0 ? TB_EMODEL : TB_ENOMEM;
    }
    ml->n_experts = E;
    char name[64];
    snprintf(name, sizeof name, "layers.%u.router", l);
    int rc = tb_cpu_weights_matrix(tb_model_layer_tensor(model, l, TB_LAYER_ROUTER), name, E, h,
                                   &ml->router, err, err_len);
    for (uint32_t e = 0; rc == TB_OK && e < E; e++) {
        struct tb_cpu_weight *dst[TB_EXPERT_TENSOR_COUNT] = {&ml->gate[e], &ml->up[e],
                                                             &ml->down[e]};
        for (int k = 0; rc == TB_OK && k < TB_EXPERT_TENSOR_COUNT; k++) {
            snprintf(name, sizeof name, "layers.%u.experts.%u.%s", l, e,
                     tb_expert_tensor_name((tb_expert_tensor_t)k));
            bool down = k == TB_EXPERT_DOWN;
            rc = tb_cpu_weights_matrix(tb_model_expert_tensor(model, l, e, (tb_expert_tensor_t)k),
                                       name, down ? h : ff, down ? ff : h, dst[k], err, err_len);
        }
    }
    if (rc == TB_OK && p->shared_intermediate > 0) {
        rc = s_shared(model, l, ml, err, err_len);
    }
    if (rc != TB_OK) {
        tb_cpu_moe_layer_destroy(&ml);
        return rc;
    }
    *out = ml;
    return TB_OK;
}

size_t tb_cpu_moe_matrix_count(const struct tb_model_params *p)
{
    return 1 + 3 * (size_t)p->n_experts + 3;
}

size_t tb_cpu_moe_layer_matrices(struct tb_cpu_moe_layer *ml, struct tb_cpu_weight **out,
                                 size_t cap)
{
    size_t n = 0;
    if (n < cap) {
        out[n++] = &ml->router;
    }
    for (uint32_t e = 0; e < ml->n_experts && n + 3 <= cap; e++) {
        out[n++] = &ml->gate[e];
        out[n++] = &ml->up[e];
        out[n++] = &ml->down[e];
    }
    if (ml->shared && n + 3 <= cap) {
        out[n++] = &ml->sh_gate;
        out[n++] = &ml->sh_up;
        out[n++] = &ml->sh_down;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Scratch                                                                                     */
/* ------------------------------------------------------------------------------------------ */

void tb_cpu_moe_destroy(tb_cpu_moe_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tb_cpu_moe_t *m = *self_p;
    free(m->logits);
    free(m->sel);
    free(m->sel_w);
    free(m->count);
    free(m->start);
    free(m->tok_of);
    free(m->w_of);
    free(m->xg);
    free(m->g);
    free(m->u);
    free(m->y);
    free(m);
    *self_p = NULL;
}

int tb_cpu_moe_new(const struct tb_model_params *p, uint32_t max_tokens, tb_cpu_moe_t **out)
{
    *out = NULL;
    if (p->n_experts == 0 || p->n_experts_used == 0 || p->n_experts_used > p->n_experts ||
        max_tokens == 0) {
        return TB_EINVAL;
    }
    tb_cpu_moe_t *m = calloc(1, sizeof *m);
    if (!m) {
        return TB_ENOMEM;
    }
    const size_t T = max_tokens, E = p->n_experts, K = p->n_experts_used, H = p->hidden;
    m->max_tokens = max_tokens;
    m->n_experts = p->n_experts;
    m->k = p->n_experts_used;
    m->hidden = p->hidden;
    m->ff = p->expert_intermediate > p->shared_intermediate ? p->expert_intermediate
                                                            : p->shared_intermediate;
    m->gating = p->moe_gating;
    m->logits = s_falloc(T * E);
    m->sel = malloc(T * K * sizeof *m->sel);
    m->sel_w = s_falloc(T * K);
    m->count = calloc(E, sizeof *m->count);
    m->start = calloc(E + 1, sizeof *m->start);
    m->tok_of = malloc(T * K * sizeof *m->tok_of);
    m->w_of = s_falloc(T * K);
    m->xg = s_falloc(T * H);
    m->g = s_falloc(T * m->ff);
    m->u = s_falloc(T * m->ff);
    m->y = s_falloc(T * H);
    if (!m->logits || !m->sel || !m->sel_w || !m->count || !m->start || !m->tok_of || !m->w_of ||
        !m->xg || !m->g || !m->u || !m->y) {
        tb_cpu_moe_destroy(&m);
        return TB_ENOMEM;
    }
    *out = m;
    return TB_OK;
}

void tb_cpu_moe_last_step(const tb_cpu_moe_t *self, uint32_t *experts_run, uint32_t *rows)
{
    if (experts_run) {
        *experts_run = self ? self->last_experts : 0;
    }
    if (rows) {
        *rows = self ? self->last_rows : 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Routing                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Token t's k experts (largest logits first, ties to the lower index) and their weights. */
static void s_route_token(tb_cpu_moe_t *m, int t)
{
    const float *r = m->logits + (size_t)t * m->n_experts;
    int32_t *sel = m->sel + (size_t)t * m->k;
    float *w = m->sel_w + (size_t)t * m->k;
    for (uint32_t j = 0; j < m->k; j++) {
        int32_t best = -1;
        for (uint32_t e = 0; e < m->n_experts; e++) {
            bool taken = false;
            for (uint32_t i = 0; i < j && !taken; i++) {
                taken = sel[i] == (int32_t)e;
            }
            /* a NaN logit is never chosen over a number */
            if (!taken && (best < 0 || r[e] > r[best] || (isnan(r[best]) && !isnan(r[e])))) {
                best = (int32_t)e;
            }
        }
        sel[j] = best;
    }
    const float mx = r[sel[0]];
    double sum = 0.0;
    if (m->gating == TB_MOE_SOFTMAX_ALL) {
        for (uint32_t e = 0; e < m->n_experts; e++) {
            sum += exp((double)r[e] - (double)mx);
        }
    } else {
        for (uint32_t j = 0; j < m->k; j++) {
            sum += exp((double)r[sel[j]] - (double)mx);
        }
    }
    for (uint32_t j = 0; j < m->k; j++) {
        w[j] = (float)(exp((double)r[sel[j]] - (double)mx) / sum);
    }
}

/* Routes every token and groups the (token, weight) pairs by expert, tokens ascending. */
static void s_group(tb_cpu_moe_t *m, int T)
{
    memset(m->count, 0, m->n_experts * sizeof *m->count);
    for (int t = 0; t < T; t++) {
        s_route_token(m, t);
        for (uint32_t j = 0; j < m->k; j++) {
            m->count[m->sel[(size_t)t * m->k + j]]++;
        }
    }
    m->start[0] = 0;
    for (uint32_t e = 0; e < m->n_experts; e++) {
        m->start[e + 1] = m->start[e] + m->count[e];
        m->count[e] = 0;
    }
    for (int t = 0; t < T; t++) {
        for (uint32_t j = 0; j < m->k; j++) {
            uint32_t e = (uint32_t)m->sel[(size_t)t * m->k + j];
            uint32_t at = m->start[e] + m->count[e]++;
            m->tok_of[at] = t;
            m->w_of[at] = m->sel_w[(size_t)t * m->k + j];
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Expert FFNs                                                                                 */
/* ------------------------------------------------------------------------------------------ */

struct silu_job {
    float *g;
    const float *u;
    size_t ff;
    int n;
};

static void s_silu_task(void *arg, int task, int thread)
{
    (void)thread;
    struct silu_job *j = arg;
    int r0 = task * ROWS_PER_TASK;
    int r1 = r0 + ROWS_PER_TASK < j->n ? r0 + ROWS_PER_TASK : j->n;
    size_t off = (size_t)r0 * j->ff;
    tb_cpu_silu_mul(j->g + off, j->g + off, j->u + off, (int64_t)((size_t)(r1 - r0) * j->ff));
}

/* y[0..n) = down(silu(gate x) * up x) for the n rows of x (stride hidden). */
static int s_expert(tb_cpu_moe_t *m, tb_cpu_kernels_t *kern, tb_threadpool_t *pool,
                    const struct tb_cpu_weight *gate, const struct tb_cpu_weight *up,
                    const struct tb_cpu_weight *down, const float *x, int n)
{
    const size_t h = m->hidden, ff = (size_t)gate->rows;
    int rc;
    if (gate->dtype == up->dtype && gate->cols == up->cols) {
        const struct tb_cpu_matmul_out gu[2] = {{gate, NULL, m->g, ff}, {up, NULL, m->u, ff}};
        rc = tb_cpu_matmul_multi(kern, x, h, n, gu, 2);
    } else {
        rc = tb_cpu_matmul(kern, gate, x, h, n, NULL, m->g, ff);
        if (rc == TB_OK) {
            rc = tb_cpu_matmul(kern, up, x, h, n, NULL, m->u, ff);
        }
    }
    if (rc != TB_OK) {
        return rc;
    }
    struct silu_job sj = {.g = m->g, .u = m->u, .ff = ff, .n = n};
    tb_threadpool_run(pool, (n + ROWS_PER_TASK - 1) / ROWS_PER_TASK, s_silu_task, &sj);
    return tb_cpu_matmul(kern, down, m->g, ff, n, NULL, m->y, h);
}

/* The shared expert on all T rows, gated per token by sigmoid(xn . sh_gate_inp), added to out. */
static int s_shared_expert(tb_cpu_moe_t *m, tb_cpu_kernels_t *kern, tb_threadpool_t *pool,
                           const struct tb_cpu_moe_layer *ml, const float *xn, int T, float *out)
{
    const size_t h = m->hidden;
    int rc = s_expert(m, kern, pool, &ml->sh_gate, &ml->sh_up, &ml->sh_down, xn, T);
    if (rc != TB_OK) {
        return rc;
    }
    for (int t = 0; t < T; t++) {
        const float *x = xn + (size_t)t * h;
        double dot = 0.0;
        for (size_t i = 0; i < h; i++) {
            dot += (double)x[i] * (double)ml->sh_gate_inp[i];
        }
        float s = (float)(1.0 / (1.0 + exp(-dot)));
        float *o = out + (size_t)t * h;
        const float *y = m->y + (size_t)t * h;
        for (size_t i = 0; i < h; i++) {
            o[i] += s * y[i];
        }
    }
    return TB_OK;
}

/* One token (batch-1 decode): its k experts read the same row, so their gate and up products
 * go as one tb_cpu_matmul_multi per TB_CPU_MATMUL_MAX_OUTS / 2 experts (one activation
 * quantization, one dispatch), silu runs on the caller's thread (k * ff values, under the cost
 * of a dispatch), then each expert's down.  The same bits as the grouped path: every output row
 * is the same dot, and the experts are added in ascending order as there.  USE_GROUPS when
 * the experts do not allow it (dtypes or shapes differ, too little scratch). */
static int s_one_token(tb_cpu_moe_t *m, tb_cpu_kernels_t *kern, const struct tb_cpu_moe_layer *ml,
                       const float *xn, float *out)
{
    enum { PER_CALL = TB_CPU_MATMUL_MAX_OUTS / 2 };
    const size_t h = m->hidden;
    uint32_t ex[PER_CALL];
    uint32_t n = 0;
    const struct tb_cpu_weight *w0 = NULL;
    for (uint32_t e = 0; e < m->n_experts; e++) {
        if (m->start[e + 1] == m->start[e]) {
            continue;
        }
        const struct tb_cpu_weight *g = &ml->gate[e], *u = &ml->up[e];
        if (!w0) {
            w0 = g;
        }
        if (g->dtype != w0->dtype || u->dtype != w0->dtype || g->cols != w0->cols ||
            u->cols != w0->cols || g->rows != w0->rows || u->rows != w0->rows) {
            return USE_GROUPS;
        }
    }
    const size_t ff = w0 ? (size_t)w0->rows : 0;
    if (!w0 || ff * PER_CALL > (size_t)m->max_tokens * m->ff) {
        return USE_GROUPS;
    }
    for (uint32_t e = 0; e <= m->n_experts; e++) {
        if (e < m->n_experts && m->start[e + 1] != m->start[e]) {
            ex[n++] = e;
        }
        if (n == 0 || (n < PER_CALL && e < m->n_experts)) {
            continue;
        }
        struct tb_cpu_matmul_out gu[TB_CPU_MATMUL_MAX_OUTS];
        for (uint32_t j = 0; j < n; j++) {
            gu[2 * j] = (struct tb_cpu_matmul_out){&ml->gate[ex[j]], NULL, m->g + j * ff, ff};
            gu[2 * j + 1] = (struct tb_cpu_matmul_out){&ml->up[ex[j]], NULL, m->u + j * ff, ff};
        }
        int rc = tb_cpu_matmul_multi(kern, xn, h, 1, gu, (int)(2 * n));
        if (rc != TB_OK) {
            return rc;
        }
        tb_cpu_silu_mul(m->g, m->g, m->u, (int64_t)(n * ff));
        for (uint32_t j = 0; j < n; j++) {
            rc = tb_cpu_matmul(kern, &ml->down[ex[j]], m->g + j * ff, ff, 1, NULL, m->y, h);
            if (rc != TB_OK) {
                return rc;
            }
            const float w = m->w_of[m->start[ex[j]]];
            for (size_t c = 0; c < h; c++) {
                out[c] += w * m->y[c];
            }
            m->last_experts++;
            m->last_rows++;
        }
        n = 0;
    }
    return TB_OK;
}

int tb_cpu_moe_ffn(tb_cpu_moe_t *m, tb_cpu_kernels_t *kern, tb_threadpool_t *pool,
                   const struct tb_cpu_moe_layer *ml, const float *xn, int T, float *out)
{
    if (!m || !ml || !xn || !out || T < 0 || (uint32_t)T > m->max_tokens ||
        ml->n_experts != m->n_experts) {
        return TB_EINVAL;
    }
    const size_t h = m->hidden;
    m->last_experts = m->last_rows = 0;
    memset(out, 0, (size_t)T * h * sizeof(float));
    if (T == 0) {
        return TB_OK;
    }
    int rc = tb_cpu_matmul(kern, &ml->router, xn, h, T, NULL, m->logits, m->n_experts);
    if (rc != TB_OK) {
        return rc;
    }
    s_group(m, T);
    rc = T == 1 ? s_one_token(m, kern, ml, xn, out) : USE_GROUPS;
    if (rc != USE_GROUPS) {
        return rc != TB_OK  ? rc
               : ml->shared ? s_shared_expert(m, kern, pool, ml, xn, T, out)
                            : TB_OK;
    }
    for (uint32_t e = 0; e < m->n_experts; e++) {
        const uint32_t s0 = m->start[e], n = m->start[e + 1] - s0;
        if (n == 0) {
            continue;
        }
        for (uint32_t i = 0; i < n; i++) {
            memcpy(m->xg + (size_t)i * h, xn + (size_t)m->tok_of[s0 + i] * h, h * sizeof(float));
        }
        rc = s_expert(m, kern, pool, &ml->gate[e], &ml->up[e], &ml->down[e], m->xg, (int)n);
        if (rc != TB_OK) {
            return rc;
        }
        for (uint32_t i = 0; i < n; i++) {
            float *o = out + (size_t)m->tok_of[s0 + i] * h;
            const float *y = m->y + (size_t)i * h;
            const float w = m->w_of[s0 + i];
            for (size_t c = 0; c < h; c++) {
                o[c] += w * y[c];
            }
        }
        m->last_experts++;
        m->last_rows += n;
    }
    return ml->shared ? s_shared_expert(m, kern, pool, ml, xn, T, out) : TB_OK;
}
