/*
 * tb_cpu_backend.c - the CPU flavour's backend (tb_backend.h): KV cache memory, per-step scratch
 * and the Llama forward pass over a scheduler plan, on the kernels of tb_cpu_kernels.h.
 *
 * Memory (docs/engine-cpu.md):
 *   KV cache  one anonymous mapping: layer-major, each layer's K then its V cache, each
 *             [block][kv_head][slot][head_dim] in f16 or f32 (the kernels' layout).
 *   scratch   sized once for max_batch_tokens: the residual stream x, the normed rows xn, the
 *             projection output tmp, and one work area holding q, k, v and the attention output
 *             during attention, gate and up during the MLP; plus the logits rows' inputs.
 * Per-row work other than matmul and attention (embedding, norms, RoPE, K/V writes, SwiGLU,
 * residual adds) runs in parallel over token rows on the same pool; every row is computed by
 * itself, so results never depend on how rows are split (batch invariance).
 */
#include "tb_cpu_backend.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "tb_cpu_kernels.h"
#include "tb_cpu_layer_cfg.h"
#include "tb_cpu_moe.h"
#include "tb_cpu_weights.h"
#include "tb_errors.h"
#include "tb_threadpool.h"

#define MAX_BLOCK_SIZE 256 /* the attention kernel's limit */
#define MAX_HEAD_DIM 512   /* the attention kernel's limit */
#define MAX_BATCH_TOKENS (1u << 20)
#define ROWS_PER_TASK 4 /* token rows per task of the per-row loops */

struct tb_backend {
    const tb_model_t *model; /* borrowed */
    const struct tb_model_params *p;
    tb_threadpool_t *pool;
    tb_cpu_kernels_t *kern;
    struct tb_cpu_weights *w;
    int n_threads;
    int hidden, q_dim, kv_dim, inter, n_heads, n_kv_heads, head_dim;
    uint32_t vocab;
    float eps;
    tb_cpu_rope_mode_t rope_mode;
    struct tb_cpu_layer_cfgs lc; /* per-layer window and rotary frequencies, family settings */

    /* KV cache */
    struct tb_cpu_kv_layout kv; /* one layer's geometry (the same for every layer) */
    size_t kv_layer_bytes;      /* one layer's K cache (its V cache is as large) */
    uint8_t *kv_mem;            /* mmap'ed, n_layers * 2 * kv_layer_bytes */
    size_t kv_mem_bytes;
    uint32_t n_blocks, block_size;
    size_t block_bytes;

    /* scratch for max_tokens tokens and max_seqs logits rows */
    uint32_t max_tokens, max_seqs;
    size_t work_stride; /* floats per token of the work area */
    float *x, *xn, *tmp, *work, *xl;
    int32_t *pos, *slots, *logit_rows;
    struct tb_cpu_attn_seq *aseq;
    tb_cpu_moe_t *moe; /* the mixture-of-experts step's scratch, or NULL (dense model) */

    struct tb_cpu_backend_stats stats;
};

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float *s_falloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes ? bytes : 64);
}

size_t tb_cpu_backend_block_bytes_for(const tb_model_t *model, uint32_t block_size, bool kv_f16)
{
    if (!model || block_size == 0) {
        return 0;
    }
    const struct tb_model_params *p = tb_model_params(model);
    return (size_t)p->n_layers * 2 * (size_t)p->n_kv_heads * (size_t)p->head_dim *
           (size_t)block_size * (kv_f16 ? 2 : 4);
}

/* ------------------------------------------------------------------------------------------ */
/* Create / destroy                                                                            */
/* ------------------------------------------------------------------------------------------ */

static void s_destroy(tb_backend_t **b_p)
{
    if (!b_p || !*b_p) {
        return;
    }
    tb_backend_t *b = *b_p;
    if (b->kv_mem) {
        munmap(b->kv_mem, b->kv_mem_bytes);
    }
    free(b->x);
    free(b->xn);
    free(b->tmp);
    free(b->work);
    free(b->xl);
    free(b->pos);
    free(b->slots);
    free(b->logit_rows);
    free(b->aseq);
    tb_cpu_layer_cfgs_release(&b->lc);
    tb_cpu_moe_destroy(&b->moe);
    tb_cpu_weights_destroy(&b->w);
    tb_cpu_kernels_destroy(&b->kern);
    tb_threadpool_destroy(&b->pool);
    free(b);
    *b_p = NULL;
}

/* Refuses what the kernels cannot run; `err` says why. */
static int s_check_model(const struct tb_model_params *p, char *err, size_t err_len)
{
    if (p->n_layers < 1 || p->hidden < 1 || p->vocab < 1 || p->intermediate < 1 ||
        p->n_heads < 1 || p->n_kv_heads < 1) {
        tb_err_set(err, err_len, "model has an empty dimension (layers %u, hidden %u, vocab %u)",
                   p->n_layers, p->hidden, p->vocab);
        return TB_EMODEL;
    }
    if (p->head_dim < 2 || p->head_dim % 2 != 0 || p->head_dim > MAX_HEAD_DIM) {
        tb_err_set(err, err_len, "head_dim %u: the cpu backend supports even sizes 2..%d",
                   p->head_dim, MAX_HEAD_DIM);
        return TB_EMODEL;
    }
    if (p->n_heads % p->n_kv_heads != 0) {
        tb_err_set(err, err_len, "%u attention heads are not a multiple of %u kv heads",
                   p->n_heads, p->n_kv_heads);
        return TB_EMODEL;
    }
    if ((uint64_t)p->n_heads * p->head_dim > (1u << 24) || p->hidden > (1u << 24) ||
        p->intermediate > (1u << 26)) {
        tb_err_set(err, err_len, "model dimensions too large for the cpu backend");
        return TB_EMODEL;
    }
    if (p->rope_layout != TB_ROPE_NEOX && p->rope_layout != TB_ROPE_INTERLEAVED) {
        tb_err_set(err, err_len, "unknown rope layout %d", (int)p->rope_layout);
        return TB_EMODEL;
    }
    return TB_OK;
}

static int s_check_config(const struct tb_backend_config *cfg, char *err, size_t err_len)
{
    const struct tb_cpu_config *cc = cfg->flavour;
    if (cc && (cc->threads < 0 || cc->threads > TB_CPU_MAX_THREADS)) {
        tb_err_set(err, err_len, "threads %lld: must be 0 (all cores) to %d",
                   (long long)cc->threads, TB_CPU_MAX_THREADS);
        return TB_ECONFIG;
    }
    if (cfg->block_size < 1 || cfg->block_size > MAX_BLOCK_SIZE) {
        tb_err_set(err, err_len, "block_size %u: the cpu backend supports 1..%d", cfg->block_size,
                   MAX_BLOCK_SIZE);
        return TB_ECONFIG;
    }
    if (cfg->max_batch_tokens < 1 || cfg->max_batch_tokens > MAX_BATCH_TOKENS) {
        tb_err_set(err, err_len, "max_batch_tokens %u: must be 1..%u", cfg->max_batch_tokens,
                   MAX_BATCH_TOKENS);
        return TB_ECONFIG;
    }
    if (cfg->max_batch_seqs < 1) {
        tb_err_set(err, err_len, "max_batch_seqs 0: must be at least 1");
        return TB_ECONFIG;
    }
    return TB_OK;
}

static int s_alloc_kv(tb_backend_t *b, const struct tb_backend_config *cfg, char *err,
                      size_t err_len)
{
    b->block_size = cfg->block_size;
    b->block_bytes = tb_cpu_backend_block_bytes_for(b->model, cfg->block_size, cfg->kv_f16);
    uint64_t n = cfg->kv_budget_bytes > 0 ? (uint64_t)cfg->kv_budget_bytes / b->block_bytes : 0;
    if (n < 1) {
        tb_err_set(
            err, err_len,
            "kv budget of %lld bytes holds no KV block: one block of %u tokens needs %zu bytes",
            (long long)cfg->kv_budget_bytes, cfg->block_size, b->block_bytes);
        return TB_ECONFIG;
    }
    /* slots are int32 in the kernels; block ids must stay below TB_KV_NO_BLOCK */
    uint64_t cap = (uint64_t)INT32_MAX / cfg->block_size;
    if (n > cap) {
        n = cap;
    }
    b->n_blocks = (uint32_t)n;
    b->kv = (struct tb_cpu_kv_layout){
        .block_size = (int)cfg->block_size,
        .n_kv_heads = b->n_kv_heads,
        .head_dim = b->head_dim,
        .dtype = cfg->kv_f16 ? TB_CPU_F16 : TB_CPU_F32,
        .n_blocks = (int64_t)n,
    };
    b->kv_layer_bytes = tb_cpu_kv_bytes(&b->kv);
    b->kv_mem_bytes = b->kv_layer_bytes * 2 * b->p->n_layers;
    if (b->kv_layer_bytes == 0) {
        tb_err_set(err, err_len, "invalid KV cache geometry");
        return TB_ECONFIG;
    }
    /* anonymous memory: zeroed and committed page by page as blocks are first used */
    void *mem = mmap(NULL, b->kv_mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (mem == MAP_FAILED) {
        tb_err_set(err, err_len, "cannot map %zu bytes for the KV cache", b->kv_mem_bytes);
        return TB_ENOMEM;
    }
    b->kv_mem = mem;
    return TB_OK;
}

static int s_alloc_scratch(tb_backend_t *b, char *err, size_t err_len)
{
    const size_t T = b->max_tokens;
    size_t att = 2 * (size_t)b->q_dim + 2 * (size_t)b->kv_dim;
    /* expert layers use tb_cpu_moe's own scratch; dense layers (all of a dense model, some of
     * an expert model) this one */
    const uint32_t n_moe = tb_model_moe_layer_count(b->p);
    size_t mlp = n_moe == b->p->n_layers ? 0 : 2 * (size_t)b->inter;
    b->work_stride = att > mlp ? att : mlp;
    b->x = s_falloc(T * (size_t)b->hidden);
    b->xn = s_falloc(T * (size_t)b->hidden);
    b->tmp = s_falloc(T * (size_t)b->hidden);
    b->work = s_falloc(T * b->work_stride);
    b->xl = s_falloc((size_t)b->max_seqs * (size_t)b->hidden);
    b->pos = malloc(T * sizeof(int32_t));
    b->slots = malloc(T * sizeof(int32_t));
    b->logit_rows = malloc((size_t)b->max_seqs * sizeof(int32_t));
    b->aseq = malloc(T * sizeof(*b->aseq));
    if (n_moe > 0 && tb_cpu_moe_new(b->p, b->max_tokens, &b->moe) != TB_OK) {
        tb_err_set(err, err_len, "cannot allocate the expert scratch of %zu tokens", T);
        return TB_ENOMEM;
    }
    if (!b->x || !b->xn || !b->tmp || !b->work || !b->xl || !b->pos || !b->slots ||
        !b->logit_rows || !b->aseq) {
        tb_err_set(err, err_len, "cannot allocate the scratch of %zu tokens (%zu bytes)", T,
                   T * ((3 * (size_t)b->hidden + b->work_stride) * sizeof(float) + 8 +
                        sizeof(*b->aseq)));
        return TB_ENOMEM;
    }
    return TB_OK;
}

static int s_create(const tb_model_t *model, const struct tb_backend_config *cfg,
                    tb_backend_t **out, uint32_t *n_blocks, char *err, size_t err_len)
{
    int rc = TB_OK;
    tb_backend_t *b = NULL;
    if (!model || !cfg || !out || !n_blocks) {
        tb_err_set(err, err_len, "cpu backend: missing argument");
        rc = TB_EINVAL;
        goto done;
    }
    *out = NULL;
    *n_blocks = 0;
    const struct tb_model_params *p = tb_model_params(model);
    rc = s_check_model(p, err, err_len);
    if (rc != TB_OK) {
        goto done;
    }
    rc = s_check_config(cfg, err, err_len);
    if (rc != TB_OK) {
        goto done;
    }
    b = calloc(1, sizeof(*b));
    if (!b) {
        tb_err_set(err, err_len, "out of memory");
        rc = TB_ENOMEM;
        goto done;
    }
    b->model = model;
    b->p = p;
    b->hidden = (int)p->hidden;
    b->n_heads = (int)p->n_heads;
    b->n_kv_heads = (int)p->n_kv_heads;
    b->head_dim = (int)p->head_dim;
    b->q_dim = b->n_heads * b->head_dim;
    b->kv_dim = b->n_kv_heads * b->head_dim;
    b->inter = (int)p->intermediate;
    b->vocab = p->vocab;
    b->eps = (float)p->rms_eps;
    b->rope_mode = p->rope_layout == TB_ROPE_NEOX ? TB_CPU_ROPE_NEOX : TB_CPU_ROPE_INTERLEAVED;
    b->max_tokens = cfg->max_batch_tokens;
    /* an entry has at least one token: never more entries than tokens */
    b->max_seqs = cfg->max_batch_seqs < cfg->max_batch_tokens ? cfg->max_batch_seqs
                                                              : cfg->max_batch_tokens;

    /* TB_CPU_REPACK=0 keeps Q4_0/Q8_0 matrices in their stored layout only (docs/engine-cpu.md) */
    const char *repack = getenv("TB_CPU_REPACK");
    if (repack && *repack && strcmp(repack, "0") != 0 && strcmp(repack, "1") != 0) {
        tb_err_set(err, err_len, "TB_CPU_REPACK=%s: unknown (0 or 1)", repack);
        rc = TB_ECONFIG;
        goto fail;
    }
    unsigned wflags = repack && strcmp(repack, "0") == 0 ? 0u : TB_CPU_WEIGHTS_PACK;
    rc = tb_cpu_weights_new(model, wflags, &b->w, err, err_len);
    if (rc != TB_OK) {
        goto fail;
    }
    rc = tb_cpu_layer_cfgs_init(&b->lc, model, err, err_len);
    if (rc != TB_OK) {
        goto fail;
    }
    int threads = cfg->flavour ? (int)((const struct tb_cpu_config *)cfg->flavour)->threads : 0;
    rc = tb_threadpool_new(threads, &b->pool);
    if (rc != TB_OK) {
        tb_err_set(err, err_len, "cannot start %d threads: %s", threads, strerror(-rc));
        goto fail;
    }
    b->n_threads = tb_threadpool_size(b->pool);
    rc = tb_cpu_kernels_new(b->pool, &b->kern);
    if (rc != TB_OK) {
        const char *isa = getenv("TB_CPU_ISA");
        if (rc == TB_ENOTSUP || rc == TB_EINVAL) {
            tb_err_set(err, err_len, "TB_CPU_ISA=%s: %s", isa ? isa : "",
                       rc == TB_ENOTSUP ? "this CPU lacks that instruction set"
                                        : "unknown (generic, avx2 or avx512)");
        } else {
            tb_err_set(err, err_len, "cannot create the kernel context");
        }
        goto fail;
    }
    rc = s_alloc_kv(b, cfg, err, err_len);
    if (rc != TB_OK) {
        goto fail;
    }
    rc = s_alloc_scratch(b, err, err_len);
    if (rc != TB_OK) {
        goto fail;
    }
    *out = b;
    *n_blocks = b->n_blocks;
    goto done;

fail:
    s_destroy(&b);
done:
    return rc;
}

static size_t s_block_bytes(const tb_backend_t *b)
{
    return b ? b->block_bytes : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Plan validation                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* Checks `plan` against the contract and fills pos, slots, aseq and logit_rows.  Nothing is
 * written to the cache before this passes. */
static int s_prepare(tb_backend_t *b, const struct tb_sched_plan *plan, char *err, size_t err_len)
{
    const uint32_t T = plan->n_tokens;
    if (T > b->max_tokens) {
        tb_err_set(err, err_len, "plan has %u tokens; the backend was sized for %u", T,
                   b->max_tokens);
        return TB_EINVAL;
    }
    if (plan->n_seqs > b->max_seqs) {
        tb_err_set(err, err_len, "plan has %u sequences; the backend was sized for %u",
                   plan->n_seqs, b->max_seqs);
        return TB_EINVAL;
    }
    if (!plan->tokens || !plan->positions || !plan->slots || !plan->seqs) {
        tb_err_set(err, err_len, "plan lacks tokens, positions, slots or entries");
        return TB_EINVAL;
    }
    const uint64_t n_slots = (uint64_t)b->n_blocks * b->block_size;
    for (uint32_t t = 0; t < T; t++) {
        if (plan->tokens[t] < 0 || (uint32_t)plan->tokens[t] >= b->vocab) {
            tb_err_set(err, err_len, "token %u: id %d is outside the vocabulary (%u)", t,
                       plan->tokens[t], b->vocab);
            return TB_EINVAL;
        }
        if (plan->slots[t] >= n_slots) {
            tb_err_set(err, err_len, "token %u: slot %u is outside the cache (%llu slots)", t,
                       plan->slots[t], (unsigned long long)n_slots);
            return TB_EINVAL;
        }
        b->aseq[t].block_table = NULL; /* marks "not covered by an entry yet" */
    }
    uint32_t n_logits = 0;
    for (uint32_t s = 0; s < plan->n_seqs; s++) {
        const struct tb_sched_entry *e = &plan->seqs[s];
        if (e->n_tokens < 1 || e->start > T || e->n_tokens > T - e->start) {
            tb_err_set(err, err_len, "entry %u: tokens [%u, +%u) outside the plan's %u", s,
                       e->start, e->n_tokens, T);
            return TB_EINVAL;
        }
        if (e->pos > (uint32_t)INT32_MAX - e->n_tokens || e->n_ctx != e->pos + e->n_tokens) {
            tb_err_set(err, err_len, "entry %u: n_ctx %u is not pos %u + n_tokens %u", s,
                       e->n_ctx, e->pos, e->n_tokens);
            return TB_EINVAL;
        }
        if (!e->block_table || e->n_blocks > (uint32_t)INT32_MAX ||
            (uint64_t)e->n_blocks * b->block_size < e->n_ctx) {
            tb_err_set(err, err_len, "entry %u: %u blocks do not cover %u tokens", s, e->n_blocks,
                       e->n_ctx);
            return TB_EINVAL;
        }
        uint32_t need = (e->n_ctx + b->block_size - 1) / b->block_size;
        for (uint32_t i = 0; i < need; i++) {
            if (e->block_table[i] >= b->n_blocks) {
                tb_err_set(err, err_len, "entry %u: block %u is outside the cache (%u blocks)", s,
                           e->block_table[i], b->n_blocks);
                return TB_EINVAL;
            }
        }
        for (uint32_t i = 0; i < e->n_tokens; i++) {
            uint32_t t = e->start + i;
            uint32_t ps = e->pos + i;
            uint64_t want = (uint64_t)e->block_table[ps / b->block_size] * b->block_size +
                            ps % b->block_size;
            if (b->aseq[t].block_table) {
                tb_err_set(err, err_len, "token %u belongs to two entries", t);
                return TB_EINVAL;
            }
            if (plan->positions[t] != ps || plan->slots[t] != want) {
                tb_err_set(err, err_len,
                           "token %u: position %u / slot %u, entry %u implies %u / %llu", t,
                           plan->positions[t], plan->slots[t], s, ps, (unsigned long long)want);
                return TB_EINVAL;
            }
            /* uint32 -> int32 views: the values were checked to fit */
            b->aseq[t] = (struct tb_cpu_attn_seq){
                .block_table = (const int32_t *)e->block_table,
                .n_blocks = (int)need,
                .ctx_len = (int)e->n_ctx,
                .pos = (int)ps,
                .window = 0, /* set per layer (s_layer) */
            };
            b->pos[t] = (int32_t)ps;
            b->slots[t] = (int32_t)plan->slots[t];
        }
        if (e->need_logits) {
            b->logit_rows[n_logits++] = (int32_t)(e->start + e->n_tokens - 1);
        }
    }
    for (uint32_t t = 0; t < T; t++) {
        if (!b->aseq[t].block_table) {
            tb_err_set(err, err_len, "token %u belongs to no entry", t);
            return TB_EINVAL;
        }
    }
    if (n_logits != plan->n_logits) {
        tb_err_set(err, err_len, "plan says %u logits rows, its entries ask for %u",
                   plan->n_logits, n_logits);
        return TB_EINVAL;
    }
    return TB_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Per-row work on the pool                                                                    */
/* ------------------------------------------------------------------------------------------ */

enum row_op {
    OP_EMBED,    /* x[t] = tok_embd[token t]; xn[t] = norm(x[t]) * layer 0's attn_norm */
    OP_ROPE_KV,  /* rope q[t] and k[t]; write k[t], v[t] to slot t of layer `layer` */
    OP_ADD_NORM, /* x[t] += tmp[t]; xn[t] = norm(x[t]) * norm_w (no norm without norm_w) */
    OP_SILU,     /* gate[t] = act(gate[t]) * up[t] (SiLU, or GELU-tanh for GeGLU) */
};

struct row_job {
    tb_backend_t *b;
    enum row_op op;
    int n_rows;
    const int32_t *tokens;
    const float *norm_w;
    const float *post_w; /* OP_ADD_NORM: tmp[t] = norm(tmp[t]) * post_w first (Gemma) */
    uint32_t layer;
    float *q, *k, *v, *gate, *up;
    int rc; /* first failure of a task (all tasks check the same validated data) */
};

/* Rows [r0, r0 + n) of q and k: the per-head q/k norms when the model has them (Gemma 3), then
 * RoPE with the layer's frequencies (LongRoPE: each row's set by its position). */
static int s_qk_norm_rope(tb_backend_t *b, const struct row_job *j, int r0, int n)
{
    const struct tb_cpu_layer_weights *lw = &b->w->layers[j->layer];
    const struct tb_cpu_layer_cfg *lc = &b->lc.layers[j->layer];
    const size_t qs = (size_t)b->q_dim, ks = (size_t)b->kv_dim;
    float *q = j->q + (size_t)r0 * qs, *k = j->k + (size_t)r0 * ks;
    if (lw->q_norm) {
        tb_cpu_rmsnorm(q, q, lw->q_norm, b->head_dim, n * b->n_heads, b->eps);
        tb_cpu_rmsnorm(k, k, lw->k_norm, b->head_dim, n * b->n_kv_heads, b->eps);
    }
    int rc = TB_OK;
    for (int t = 0; rc == TB_OK && t < n;) {
        /* a run of rows that take the same frequency set */
        bool lng = lc->inv_freq_long && b->pos[r0 + t] >= b->lc.long_from;
        int e = t + 1;
        while (e < n && (lc->inv_freq_long && b->pos[r0 + e] >= b->lc.long_from) == lng) {
            e++;
        }
        const float *f = lng ? lc->inv_freq_long : lc->inv_freq;
        rc = tb_cpu_rope(q + (size_t)t * qs, qs, e - t, b->pos + r0 + t, b->n_heads, b->head_dim,
                         b->lc.rot_dim, f, b->rope_mode);
        if (rc == TB_OK) {
            rc = tb_cpu_rope(k + (size_t)t * ks, ks, e - t, b->pos + r0 + t, b->n_kv_heads,
                             b->head_dim, b->lc.rot_dim, f, b->rope_mode);
        }
        t = e;
    }
    return rc;
}

static void s_row_task(void *arg, int task, int thread)
{
    (void)thread;
    struct row_job *j = arg;
    tb_backend_t *b = j->b;
    const int r0 = task * ROWS_PER_TASK;
    const int r1 = r0 + ROWS_PER_TASK < j->n_rows ? r0 + ROWS_PER_TASK : j->n_rows;
    const int n = r1 - r0;
    const size_t h = (size_t)b->hidden;
    switch (j->op) {
    case OP_EMBED: {
        const struct tb_cpu_weight *e = &b->w->tok_embd;
        size_t rb = tb_cpu_dtype_row_bytes(e->dtype, e->cols);
        for (int t = r0; t < r1; t++) {
            const uint8_t *row = (const uint8_t *)e->data + (size_t)j->tokens[t] * rb;
            if (tb_cpu_dequantize_row(e->dtype, row, b->x + (size_t)t * h, e->cols) != TB_OK) {
                j->rc = TB_EINTERNAL;
            }
        }
        if (b->lc.embed_scale > 0.0f) {
            tb_cpu_scale(b->x + (size_t)r0 * h, (int64_t)((size_t)n * h), b->lc.embed_scale);
        }
        tb_cpu_rmsnorm(b->xn + (size_t)r0 * h, b->x + (size_t)r0 * h, j->norm_w, (int64_t)h, n,
                       b->eps);
        break;
    }
    case OP_ROPE_KV: {
        const size_t ks = (size_t)b->kv_dim;
        int rc = s_qk_norm_rope(b, j, r0, n);
        if (rc == TB_OK) {
            uint8_t *kc = b->kv_mem + (size_t)j->layer * 2 * b->kv_layer_bytes;
            rc = tb_cpu_kv_write(&b->kv, kc, kc + b->kv_layer_bytes, n, b->slots + r0,
                                 j->k + (size_t)r0 * ks, ks, j->v + (size_t)r0 * ks, ks);
        }
        if (rc != TB_OK) {
            j->rc = rc;
        }
        break;
    }
    case OP_ADD_NORM:
        if (j->post_w) {
            tb_cpu_rmsnorm(b->tmp + (size_t)r0 * h, b->tmp + (size_t)r0 * h, j->post_w,
                           (int64_t)h, n, b->eps);
        }
        tb_cpu_add(b->x + (size_t)r0 * h, b->x + (size_t)r0 * h, b->tmp + (size_t)r0 * h,
                   (int64_t)((size_t)n * h));
        if (!j->norm_w) {
            break;
        }
        tb_cpu_rmsnorm(b->xn + (size_t)r0 * h, b->x + (size_t)r0 * h, j->norm_w, (int64_t)h, n,
                       b->eps);
        break;
    case OP_SILU: {
        const size_t ff = (size_t)b->inter;
        if (b->p->ffn_act == TB_FFN_GELU_TANH) {
            tb_cpu_gelu_tanh_mul(j->gate + (size_t)r0 * ff, j->gate + (size_t)r0 * ff,
                                 j->up + (size_t)r0 * ff, (int64_t)((size_t)n * ff));
        } else {
            tb_cpu_silu_mul(j->gate + (size_t)r0 * ff, j->gate + (size_t)r0 * ff,
                            j->up + (size_t)r0 * ff, (int64_t)((size_t)n * ff));
        }
        break;
    }
    }
}

static int s_rows(tb_backend_t *b, struct row_job *j)
{
    j->b = b;
    j->rc = TB_OK;
    int n_tasks = (j->n_rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    tb_threadpool_run(b->pool, n_tasks, s_row_task, j);
    return j->rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Matmuls of one input: one dispatch (activations quantized once) when the weights share
 * dtype and width, as a layer's Q/K/V and gate/up usually do; else one call per weight.  Both
 * give the same numbers. */
static int s_matmuls(tb_backend_t *b, const float *x, size_t ldx, int T,
                     const struct tb_cpu_matmul_out *outs, int n)
{
    bool same = true;
    for (int i = 1; i < n; i++) {
        same = same && outs[i].w->dtype == outs[0].w->dtype && outs[i].w->cols == outs[0].w->cols;
    }
    if (same) {
        return tb_cpu_matmul_multi(b->kern, x, ldx, T, outs, n);
    }
    int rc = TB_OK;
    for (int i = 0; rc == TB_OK && i < n; i++) {
        rc = tb_cpu_matmul(b->kern, outs[i].w, x, ldx, T, outs[i].bias, outs[i].y, outs[i].ldy);
    }
    return rc;
}

static int s_mlp(tb_backend_t *b, const struct tb_cpu_layer_weights *lw, int T);

static int s_layer(tb_backend_t *b, uint32_t l, int T)
{
    const struct tb_cpu_layer_weights *lw = &b->w->layers[l];
    const size_t h = (size_t)b->hidden, qd = (size_t)b->q_dim, kvd = (size_t)b->kv_dim;
    float *q = b->work;
    float *k = q + (size_t)T * qd;
    float *v = k + (size_t)T * kvd;
    float *att = v + (size_t)T * kvd;
    /* xn holds norm(x) * attn_norm (from the embedding step or the previous layer) */
    const struct tb_cpu_matmul_out qkv[3] = {{&lw->wq, lw->bq, q, qd},
                                             {&lw->wk, lw->bk, k, kvd},
                                             {&lw->wv, lw->bv, v, kvd}};
    int rc = s_matmuls(b, b->xn, h, T, qkv, 3);
    if (rc != TB_OK) {
        return rc;
    }
    struct row_job rj = {.op = OP_ROPE_KV, .n_rows = T, .layer = l, .q = q, .k = k, .v = v};
    rc = s_rows(b, &rj);
    if (rc != TB_OK) {
        return rc;
    }
    const uint8_t *kc = b->kv_mem + (size_t)l * 2 * b->kv_layer_bytes;
    for (int t = 0; t < T; t++) {
        b->aseq[t].window = b->lc.layers[l].window;
    }
    rc = tb_cpu_attention_capped(b->kern, &b->kv, kc, kc + b->kv_layer_bytes, T, b->aseq, q, qd,
                                 b->n_heads, b->lc.attn_scale, b->lc.attn_softcap, att, qd);
    if (rc == TB_OK) {
        rc = tb_cpu_matmul(b->kern, &lw->wo, att, qd, T, NULL, b->tmp, h);
    }
    if (rc != TB_OK) {
        return rc;
    }
    rj = (struct row_job){.op = OP_ADD_NORM,
                          .n_rows = T,
                          .norm_w = lw->ffn_norm,
                          .post_w = lw->attn_post_norm};
    s_rows(b, &rj);
    rc = lw->moe ? tb_cpu_moe_ffn(b->moe, b->kern, b->pool, lw->moe, b->xn, T, b->tmp)
                 : s_mlp(b, lw, T);
    if (rc != TB_OK) {
        return rc;
    }
    /* residual, then the next layer's input norm (the last layer's output is normed with
     * out_norm only for the logits rows) */
    const float *next = l + 1 < b->w->n_layers ? b->w->layers[l + 1].attn_norm : NULL;
    rj = (struct row_job){.op = OP_ADD_NORM,
                          .n_rows = T,
                          .norm_w = next,
                          .post_w = lw->ffn_post_norm};
    s_rows(b, &rj);
    return TB_OK;
}

/* The dense SwiGLU (GeGLU with ffn_act) MLP of xn into tmp. */
static int s_mlp(tb_backend_t *b, const struct tb_cpu_layer_weights *lw, int T)
{
    const size_t h = (size_t)b->hidden;
    const size_t ff = (size_t)b->inter;
    float *gate = b->work;
    float *up = gate + (size_t)T * ff;
    const struct tb_cpu_matmul_out gu[2] = {{&lw->w_gate, NULL, gate, ff},
                                            {&lw->w_up, NULL, up, ff}};
    int rc = s_matmuls(b, b->xn, h, T, gu, 2);
    if (rc != TB_OK) {
        return rc;
    }
    struct row_job rj = {.op = OP_SILU, .n_rows = T, .gate = gate, .up = up};
    s_rows(b, &rj);
    return tb_cpu_matmul(b->kern, &lw->w_down, gate, ff, T, NULL, b->tmp, h);
}

static int s_forward(tb_backend_t *b, const struct tb_sched_plan *plan, float *logits, char *err,
                     size_t err_len)
{
    if (!b || !plan) {
        tb_err_set(err, err_len, "cpu backend: missing argument");
        return TB_EINVAL;
    }
    if (plan->n_tokens == 0 && plan->n_seqs == 0) {
        return TB_OK; /* an idle step */
    }
    double t0 = s_now();
    int rc = s_prepare(b, plan, err, err_len);
    if (rc != TB_OK) {
        return rc;
    }
    if (plan->n_logits > 0 && !logits) {
        tb_err_set(err, err_len, "plan needs %u logits rows and no buffer was given",
                   plan->n_logits);
        return TB_EINVAL;
    }
    const int T = (int)plan->n_tokens;
    struct row_job rj = {.op = OP_EMBED,
                         .n_rows = T,
                         .tokens = plan->tokens,
                         .norm_w = b->w->layers[0].attn_norm};
    rc = s_rows(b, &rj);
    for (uint32_t l = 0; rc == TB_OK && l < b->w->n_layers; l++) {
        rc = s_layer(b, l, T);
    }
    if (rc == TB_OK && plan->n_logits > 0) {
        const size_t h = (size_t)b->hidden;
        for (uint32_t i = 0; i < plan->n_logits; i++) {
            memcpy(b->xl + i * h, b->x + (size_t)b->logit_rows[i] * h, h * sizeof(float));
        }
        tb_cpu_rmsnorm(b->xl, b->xl, b->w->out_norm, (int64_t)h, (int)plan->n_logits, b->eps);
        rc = tb_cpu_matmul(b->kern, &b->w->output, b->xl, h, (int)plan->n_logits, NULL, logits,
                           b->vocab);
        if (rc == TB_OK && b->lc.final_softcap > 0.0f) {
            tb_cpu_softcap(logits, (int64_t)plan->n_logits * b->vocab, b->lc.final_softcap);
        }
    }
    if (rc != TB_OK) {
        tb_err_set(err, err_len, "cpu forward failed: %s",
                   rc == TB_ENOMEM ? "out of memory for kernel scratch"
                                   : "kernel refused its input");
        return rc;
    }
    b->stats.forwards++;
    b->stats.tokens += plan->n_tokens;
    b->stats.logits_rows += plan->n_logits;
    b->stats.forward_seconds += s_now() - t0;
    return TB_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Public                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* "q4_k x 154, q6_k x 1, f32 x 45": the model's tensors by type, most numerous first. */
static void s_describe_types(const struct tb_cpu_weights *w, char *buf, size_t len)
{
    size_t off = 0;
    bool done[TB_DTYPE_COUNT] = {false};
    buf[0] = '\0';
    for (;;) {
        int best = -1;
        for (int t = 0; t < TB_DTYPE_COUNT; t++) {
            if (!done[t] && w->dtype_tensors[t] > 0 &&
                (best < 0 || w->dtype_tensors[t] > w->dtype_tensors[best])) {
                best = t;
            }
        }
        if (best < 0 || off >= len) {
            return;
        }
        done[best] = true;
        int n = snprintf(buf + off, len - off, "%s%s x %u", off ? ", " : "",
                         tb_dtype_name((tb_dtype_t)best), w->dtype_tensors[best]);
        off = n < 0 ? len : off + (size_t)n;
    }
}

static void s_describe(const tb_backend_t *b, char *buf, size_t len)
{
    if (!buf || len == 0) {
        return;
    }
    char types[320];
    s_describe_types(b->w, types, sizeof types);
    if (b->p->n_experts > 0) {
        size_t n = strlen(types);
        uint32_t n_moe = tb_model_moe_layer_count(b->p);
        int w = snprintf(types + n, sizeof types - n, ", %u experts, top %u", b->p->n_experts,
                         b->p->n_experts_used);
        n += w > 0 ? (size_t)w : 0;
        if (n_moe < b->p->n_layers && n < sizeof types) {
            snprintf(types + n, sizeof types - n, ", in %u of %u layers (the others dense)",
                     n_moe, b->p->n_layers);
        }
    }
    if (b->w->packed_bytes == 0) {
        snprintf(buf, len, "%s, %d threads, weights %s, no packed weights", tb_cpu_backend_isa(b),
                 b->n_threads, types);
        return;
    }
    snprintf(buf, len,
             "%s, %d threads, weights %s, packed copies %.1f MiB made in %.0f ms "
             "(file pages released %.1f MiB)",
             tb_cpu_backend_isa(b), b->n_threads, types, (double)b->w->packed_bytes / 1048576.0,
             b->w->pack_seconds * 1e3, (double)b->w->released_bytes / 1048576.0);
}

const struct tb_backend_ops tb_cpu_backend_ops = {
    .name = "cpu",
    .create = s_create,
    .forward = s_forward,
    .block_bytes = s_block_bytes,
    .destroy = s_destroy,
    .describe = s_describe,
};

void tb_cpu_backend_get_stats(const tb_backend_t *b, struct tb_cpu_backend_stats *out)
{
    if (!out) {
        return;
    }
    if (!b) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = b->stats;
}

const char *tb_cpu_backend_isa(const tb_backend_t *b)
{
    return tb_cpu_isa_name(b ? tb_cpu_kernels_isa(b->kern) : TB_CPU_ISA_GENERIC);
}

int tb_cpu_backend_threads(const tb_backend_t *b)
{
    return b ? b->n_threads : 0;
}
