/*
 * tb_cpu_kernels.c - the kernel context: ISA detection and choice, scratch memory, and the
 * drivers that validate arguments and split matmul and attention into parallel tasks.
 */
#include "tb_cpu_kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "tb_cpu_internal.h"
#include "tb_errors.h"

#define TASKS_PER_THREAD 8       /* load balance when another process steals a core */
#define MV_CHUNKS_PER_THREAD 32  /* batch 1: chunks per thread (a short tail at the end) */
#define MV_MAX_RANGES 16         /* batch 1 keeps per-thread ranges up to this many threads */
#define TASK_W_BYTES (384 << 10) /* weight bytes one matmul task keeps hot in L2 */

struct tb_cpu_kernels {
    tb_threadpool_t *pool; /* borrowed */
    const struct tb_cpu_isa_impl *impl;
    const struct tb_quant_kernels *qk; /* the GGUF block dtypes' dots, for the same ISA */
    uint8_t *scratch;                  /* 64-byte aligned */
    size_t scratch_bytes;
};

/* ------------------------------------------------------------------------------------------ */
/* ISA                                                                                         */
/* ------------------------------------------------------------------------------------------ */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* XCR0: which register states the OS saves (AVX needs bits 1-2, AVX-512 also 5-7). */
static uint64_t s_xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

tb_cpu_isa_t tb_cpu_isa_detect(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) {
        return TB_CPU_ISA_GENERIC;
    }
    bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!osxsave || __get_cpuid_max(0, NULL) < 7) {
        return TB_CPU_ISA_GENERIC;
    }
    uint64_t xcr0 = s_xgetbv0();
    __cpuid_count(7, 0, a, b, c, d);
    bool avx2 = (b & (1u << 5)) && fma && f16c && (xcr0 & 0x6) == 0x6;
    bool avx512 = avx2 && (b & (1u << 16)) /* F */ && (b & (1u << 17)) /* DQ */ &&
                  (b & (1u << 30)) /* BW */ && (b & (1u << 31)) /* VL */ &&
                  (c & (1u << 11)) /* VNNI */ && (xcr0 & 0xe6) == 0xe6;
    if (avx512) {
        return TB_CPU_ISA_AVX512;
    }
    if (avx2) {
        return TB_CPU_ISA_AVX2;
    }
#endif
    return TB_CPU_ISA_GENERIC;
}

const char *tb_cpu_isa_name(tb_cpu_isa_t isa)
{
    switch (isa) {
    case TB_CPU_ISA_GENERIC:
        return "generic";
    case TB_CPU_ISA_AVX2:
        return "avx2";
    case TB_CPU_ISA_AVX512:
        return "avx512";
    }
    return "unknown";
}

/* The shared quantized-dot table of the same instruction set (tb_quant_kernels.h needs a
 * subset of the features tb_cpu_isa_detect asks for, so it is there whenever the ISA is). */
static const struct tb_quant_kernels *s_qk_of(tb_cpu_isa_t isa)
{
    const struct tb_quant_kernels *qk = tb_quant_kernels_for(
        isa == TB_CPU_ISA_AVX512 ? TB_QUANT_ISA_AVX512
        : isa == TB_CPU_ISA_AVX2 ? TB_QUANT_ISA_AVX2
                                 : TB_QUANT_ISA_GENERIC);
    return qk ? qk : tb_quant_kernels_for(TB_QUANT_ISA_GENERIC);
}

static const struct tb_cpu_isa_impl *s_impl_of(tb_cpu_isa_t isa)
{
#if defined(__x86_64__)
    if (isa == TB_CPU_ISA_AVX512) {
        return &tb_cpu_impl_avx512;
    }
    if (isa == TB_CPU_ISA_AVX2) {
        return &tb_cpu_impl_avx2;
    }
#endif
    return &tb_cpu_impl_generic;
}

int tb_cpu_kernels_set_isa(tb_cpu_kernels_t *self, tb_cpu_isa_t isa)
{
    if (!self || (unsigned)isa > TB_CPU_ISA_AVX512) {
        return TB_EINVAL;
    }
    if (isa > tb_cpu_isa_detect()) {
        return TB_ENOTSUP;
    }
    self->impl = s_impl_of(isa);
    self->qk = s_qk_of(isa);
    return TB_OK;
}

tb_cpu_isa_t tb_cpu_kernels_isa(const tb_cpu_kernels_t *self)
{
    return self ? self->impl->isa : TB_CPU_ISA_GENERIC;
}

tb_threadpool_t *tb_cpu_kernels_pool(const tb_cpu_kernels_t *self)
{
    return self ? self->pool : NULL;
}

int tb_cpu_kernels_new(tb_threadpool_t *pool, tb_cpu_kernels_t **out)
{
    int rc = TB_OK;
    tb_cpu_kernels_t *k = NULL;
    if (!out) {
        rc = TB_EINVAL;
        goto done;
    }
    *out = NULL;
    k = calloc(1, sizeof(*k));
    if (!k) {
        rc = TB_ENOMEM;
        goto done;
    }
    k->pool = pool;
    k->impl = s_impl_of(tb_cpu_isa_detect());
    k->qk = s_qk_of(k->impl->isa);
    const char *env = getenv("TB_CPU_ISA");
    if (env && *env) {
        tb_cpu_isa_t want;
        if (strcmp(env, "generic") == 0) {
            want = TB_CPU_ISA_GENERIC;
        } else if (strcmp(env, "avx2") == 0) {
            want = TB_CPU_ISA_AVX2;
        } else if (strcmp(env, "avx512") == 0) {
            want = TB_CPU_ISA_AVX512;
        } else {
            rc = TB_EINVAL;
            goto fail;
        }
        rc = tb_cpu_kernels_set_isa(k, want);
        if (rc != TB_OK) {
            goto fail;
        }
    }
    *out = k;
    goto done;

fail:
    free(k);
done:
    return rc;
}

void tb_cpu_kernels_destroy(tb_cpu_kernels_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    free((*self_p)->scratch);
    free(*self_p);
    *self_p = NULL;
}

/* Makes the scratch at least `bytes` long (contents not kept). */
static int s_scratch(tb_cpu_kernels_t *k, size_t bytes)
{
    if (bytes <= k->scratch_bytes) {
        return TB_OK;
    }
    size_t want = (bytes + (bytes >> 2) + 63) / 64 * 64;
    uint8_t *p = aligned_alloc(64, want);
    if (!p) {
        return TB_ENOMEM;
    }
    free(k->scratch);
    k->scratch = p;
    k->scratch_bytes = want;
    return TB_OK;
}

static int s_threads(const tb_cpu_kernels_t *k)
{
    return k->pool ? tb_threadpool_size(k->pool) : 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Matmul                                                                                      */
/* ------------------------------------------------------------------------------------------ */

#define MM_MAX_OUTS TB_CPU_MATMUL_MAX_OUTS

/* Batch 1 (a matmul that streams its weights once): thread t owns a contiguous range of the
 * chunks, [front, back), takes its next chunk from the front, and once its range is empty takes
 * the last chunk of another thread's range.  So each thread reads its own part of the weights in
 * order, one stream (its next-tile prefetch runs into rows it reads next), and a thread slowed by
 * other load still hands its remaining chunks over one at a time. */
struct mm_range {
    _Alignas(64) _Atomic uint64_t fb; /* front << 32 | back */
};

struct mm_job {
    const struct tb_cpu_isa_impl *impl;
    int n_outs;
    struct tb_mm_args args[MM_MAX_OUTS]; /* one per output; they share x / qx */
    int first_task[MM_MAX_OUTS + 1];     /* tasks of output i: [first_task[i], first_task[i+1]) */
    int64_t rows_per_task;
    /* activation quantization */
    void (*quant_act)(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst);
    int tok_per_task;
    int n_ranges;                          /* 0: task i is chunk i; else one range per thread */
    struct mm_range ranges[MV_MAX_RANGES]; /* (n_ranges > 0) */
};

/* The chunk that thread `thread`'s task runs: the front of its own range, else the back of the
 * first non-empty other range.  There are as many tasks as chunks, so one is always left. */
static int s_claim_chunk(struct mm_job *j, int thread)
{
    const int n = j->n_ranges;
    for (int k = 0; k < n; k++) {
        const int t = (thread + k) % n;
        _Atomic uint64_t *fb = &j->ranges[t].fb;
        uint64_t v = atomic_load_explicit(fb, memory_order_relaxed);
        while ((uint32_t)(v >> 32) < (uint32_t)v) {
            uint64_t nv = k == 0 ? v + ((uint64_t)1 << 32) : v - 1;
            if (atomic_compare_exchange_weak_explicit(fb, &v, nv, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                return k == 0 ? (int)(uint32_t)(v >> 32) : (int)(uint32_t)v - 1;
            }
        }
    }
    return -1;
}

/* Splits chunks [0, n_chunks) into one contiguous range per thread. */
static void s_ranges_init(struct mm_job *j, int n_chunks, int nth)
{
    j->n_ranges = nth;
    for (int t = 0; t < nth; t++) {
        uint64_t f = (uint64_t)((int64_t)n_chunks * t / nth);
        uint64_t b = (uint64_t)((int64_t)n_chunks * (t + 1) / nth);
        atomic_init(&j->ranges[t].fb, f << 32 | b);
    }
}

/* Whether matmuls read w's packed copy. */
static bool s_packed(const struct tb_cpu_weight *w)
{
    return w->packed &&
           (w->dtype == TB_CPU_Q4_0 || w->dtype == TB_CPU_Q8_0 || tb_cpu_kp_kind(w->dtype));
}

static void s_mm_task(void *arg, int task, int thread)
{
    struct mm_job *j = arg;
    if (j->n_ranges > 0) {
        task = s_claim_chunk(j, thread);
        if (task < 0) {
            return;
        }
    }
    int o = 0;
    while (task >= j->first_task[o + 1]) {
        o++;
    }
    const struct tb_mm_args *a = &j->args[o];
    int64_t r0 = (int64_t)(task - j->first_task[o]) * j->rows_per_task;
    int64_t r1 = r0 + j->rows_per_task < a->rows ? r0 + j->rows_per_task : a->rows;
    if (a->kpacked) {
        j->impl->kpack_rows(a, r0, r1);
    } else if (a->qk) {
        tb_cpu_quant_rows(a, r0, r1);
    } else {
        j->impl->matmul_rows(a, r0, r1);
    }
}

static void s_quant_task(void *arg, int task, int thread)
{
    (void)thread;
    struct mm_job *j = arg;
    const struct tb_mm_args *a = &j->args[0];
    int t0 = task * j->tok_per_task;
    int t1 = t0 + j->tok_per_task < a->n_tok ? t0 + j->tok_per_task : a->n_tok;
    for (int t = t0; t < t1; t++) {
        j->quant_act(a->dtype, a->x + (size_t)t * a->ldx, a->cols,
                     (uint8_t *)a->qx + (size_t)t * a->qx_stride);
    }
}

int tb_cpu_matmul_multi(tb_cpu_kernels_t *self, const float *x, size_t ldx, int n_tok,
                        const struct tb_cpu_matmul_out *outs, int n_outs)
{
    if (!self || !x || !outs || n_tok < 0 || n_outs < 1 || n_outs > MM_MAX_OUTS) {
        return TB_EINVAL;
    }
    const struct tb_cpu_weight *w0 = outs[0].w;
    if (!w0) {
        return TB_EINVAL;
    }
    size_t row_bytes = tb_cpu_dtype_row_bytes(w0->dtype, w0->cols);
    if (row_bytes == 0 || w0->cols < 1 || ldx < (size_t)w0->cols) {
        return TB_EINVAL;
    }
    const bool packed = s_packed(w0);
    const int q8 = w0->dtype == TB_CPU_Q8_0;
    const int kind = tb_cpu_kp_kind(w0->dtype); /* Q4_K, Q5_K, Q6_K: Kx16 when packed */
    const bool gguf = tb_cpu_dtype_gguf(w0->dtype, NULL);
    struct mm_job j = {.impl = self->impl,
                       .n_outs = n_outs,
                       .quant_act = !gguf                        ? self->impl->quant_act
                                    : self->impl->quant_act_gguf ? self->impl->quant_act_gguf
                                                                 : tb_cpu_quant_act};
    int64_t total_rows = 0;
    for (int i = 0; i < n_outs; i++) {
        const struct tb_cpu_weight *w = outs[i].w;
        if (!w || !w->data || !outs[i].y || w->rows < 1 || w->dtype != w0->dtype ||
            w->cols != w0->cols || outs[i].ldy < (size_t)w->rows) {
            return TB_EINVAL;
        }
        if (s_packed(w) != packed) { /* activations differ: one matmul at a time */
            for (int o = 0; o < n_outs; o++) {
                int rc = tb_cpu_matmul_multi(self, x, ldx, n_tok, &outs[o], 1);
                if (rc != TB_OK) {
                    return rc;
                }
            }
            return TB_OK;
        }
        j.args[i] = (struct tb_mm_args){
            .w = packed ? w->packed : w->data,
            .w_row_bytes = !packed ? row_bytes
                           : kind  ? tb_cpu_kp_group_bytes(kind, w->cols)
                                   : tb_cpu_pk_group_bytes(q8, w->cols),
            .dtype = !packed || kind ? w->dtype
                     : q8            ? TB_CPU_Q8_0_PACKED
                                     : TB_CPU_Q4_0_PACKED,
            .kpacked = packed && kind,
            .rows = w->rows,
            .cols = w->cols,
            .x = x,
            .ldx = ldx,
            .n_tok = n_tok,
            .bias = outs[i].bias,
            .y = outs[i].y,
            .ldy = outs[i].ldy,
            .qk = gguf ? self->qk : NULL,
        };
        total_rows += w->rows;
    }
    if (n_tok == 0) {
        return TB_OK;
    }
    int nth = s_threads(self);
    size_t act = gguf ? tb_cpu_quant_act_row_bytes(w0->dtype, w0->cols)
                      : self->impl->act_row_bytes(j.args[0].dtype, w0->cols);
    if (act > 0) {
        int rc = s_scratch(self, act * (size_t)n_tok);
        if (rc != TB_OK) {
            return rc;
        }
        for (int i = 0; i < n_outs; i++) {
            j.args[i].qx = self->scratch;
            j.args[i].qx_stride = act;
        }
        j.tok_per_task = (n_tok + nth * 2 - 1) / (nth * 2);
        int n_qtasks = (n_tok + j.tok_per_task - 1) / j.tok_per_task;
        tb_threadpool_run(self->pool, n_qtasks, s_quant_task, &j);
    }
    /* Rows per task: enough tasks to balance the threads, few enough weight bytes per task to
     * stay in L2 while a block of token rows sweeps them; a multiple of the row tiles (packed:
     * two 16-row groups; else 16). */
    const int64_t unit = packed && !kind ? 2 * TB_CPU_PACK_ROWS : TB_CPU_PACK_ROWS;
    const bool ranged = n_tok == 1 && nth > 1 && nth <= MV_MAX_RANGES;
    const int64_t parts = (int64_t)nth * (ranged ? MV_CHUNKS_PER_THREAD : TASKS_PER_THREAD);
    int64_t per = (total_rows + parts - 1) / parts;
    if (n_tok > 1) {
        int64_t cap = (int64_t)(TASK_W_BYTES / row_bytes);
        if (per > cap) {
            per = cap;
        }
    }
    per = (per + unit - 1) / unit * unit;
    if (per < unit) {
        per = unit;
    }
    j.rows_per_task = per;
    int64_t n_tasks = 0;
    for (int i = 0; i < n_outs; i++) {
        j.first_task[i] = (int)n_tasks;
        n_tasks += (j.args[i].rows + per - 1) / per;
    }
    if (n_tasks > INT32_MAX) {
        return TB_EINVAL;
    }
    j.first_task[n_outs] = (int)n_tasks;
    if (ranged) {
        s_ranges_init(&j, (int)n_tasks, nth);
    }
    tb_threadpool_run(self->pool, (int)n_tasks, s_mm_task, &j);
    return TB_OK;
}

int tb_cpu_matmul(tb_cpu_kernels_t *self, const struct tb_cpu_weight *w, const float *x,
                  size_t ldx, int n_tok, const float *bias, float *y, size_t ldy)
{
    struct tb_cpu_matmul_out o = {.w = w, .bias = bias, .y = y, .ldy = ldy};
    return tb_cpu_matmul_multi(self, x, ldx, n_tok, &o, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* KV cache and attention                                                                      */
/* ------------------------------------------------------------------------------------------ */

int tb_cpu_kv_check(const struct tb_cpu_kv_layout *L)
{
    if (!L || L->block_size < 1 || L->block_size > 256 || L->n_kv_heads < 1 || L->head_dim < 1 ||
        L->head_dim > 512 || L->n_blocks < 1 ||
        (L->dtype != TB_CPU_F16 && L->dtype != TB_CPU_F32)) {
        return TB_EINVAL;
    }
    return TB_OK;
}

static size_t s_kv_elem(const struct tb_cpu_kv_layout *L)
{
    return L->dtype == TB_CPU_F16 ? 2 : 4;
}

size_t tb_cpu_kv_bytes(const struct tb_cpu_kv_layout *L)
{
    if (tb_cpu_kv_check(L) != TB_OK) {
        return 0;
    }
    return (size_t)L->n_blocks * (size_t)L->n_kv_heads * (size_t)L->block_size *
           (size_t)L->head_dim * s_kv_elem(L);
}

int tb_cpu_kv_write(const struct tb_cpu_kv_layout *L, void *k_cache, void *v_cache, int n_tok,
                    const int32_t *slots, const float *k, size_t ldk, const float *v, size_t ldv)
{
    if (tb_cpu_kv_check(L) != TB_OK || !k_cache || !v_cache || n_tok < 0 ||
        (n_tok > 0 && (!slots || !k || !v))) {
        return TB_EINVAL;
    }
    const size_t width = (size_t)L->n_kv_heads * (size_t)L->head_dim;
    if (ldk < width || ldv < width) {
        return TB_EINVAL;
    }
    const int64_t n_slots = L->n_blocks * L->block_size;
    for (int t = 0; t < n_tok; t++) {
        if (slots[t] >= n_slots) {
            return TB_EINVAL;
        }
    }
    const size_t es = s_kv_elem(L);
    const size_t hd = (size_t)L->head_dim;
    const size_t head_bytes = (size_t)L->block_size * hd * es;
    const size_t block_bytes = head_bytes * (size_t)L->n_kv_heads;
    for (int t = 0; t < n_tok; t++) {
        if (slots[t] < 0) {
            continue;
        }
        size_t blk = (size_t)slots[t] / (size_t)L->block_size;
        size_t off = (size_t)slots[t] % (size_t)L->block_size;
        for (int h = 0; h < L->n_kv_heads; h++) {
            uint8_t *kd = (uint8_t *)k_cache + blk * block_bytes + (size_t)h * head_bytes;
            uint8_t *vd = (uint8_t *)v_cache + blk * block_bytes + (size_t)h * head_bytes;
            const float *ks = k + (size_t)t * ldk + (size_t)h * hd;
            const float *vs = v + (size_t)t * ldv + (size_t)h * hd;
            const size_t bs = (size_t)L->block_size;
            /* K transposed within the block ([head_dim][slot]), V as rows ([slot][head_dim]) */
            if (es == 4) {
                for (size_t d = 0; d < hd; d++) {
                    memcpy(kd + (d * bs + off) * 4, &ks[d], 4);
                }
                memcpy(vd + off * hd * 4, vs, hd * 4);
            } else {
                for (size_t d = 0; d < hd; d++) {
                    tb_cpu_store_u16(kd + (d * bs + off) * 2, tb_cpu_f32_to_f16(ks[d]));
                    tb_cpu_store_u16(vd + (off * hd + d) * 2, tb_cpu_f32_to_f16(vs[d]));
                }
            }
        }
    }
    return TB_OK;
}

int tb_cpu_kv_copy_block(const struct tb_cpu_kv_layout *L, void *k_cache, void *v_cache,
                         int32_t src, int32_t dst)
{
    if (tb_cpu_kv_check(L) != TB_OK || !k_cache || !v_cache || src < 0 || dst < 0 ||
        src >= L->n_blocks || dst >= L->n_blocks) {
        return TB_EINVAL;
    }
    if (src != dst) {
        size_t bb = (size_t)L->n_kv_heads * (size_t)L->block_size * (size_t)L->head_dim *
                    s_kv_elem(L);
        memcpy((uint8_t *)k_cache + (size_t)dst * bb, (uint8_t *)k_cache + (size_t)src * bb, bb);
        memcpy((uint8_t *)v_cache + (size_t)dst * bb, (uint8_t *)v_cache + (size_t)src * bb, bb);
    }
    return TB_OK;
}

struct attn_job {
    const struct tb_cpu_isa_impl *impl;
    struct tb_attn_args args;
    int n_kv_heads;
};

static void s_attn_task(void *arg, int task, int thread)
{
    struct attn_job *j = arg;
    float *scratch = j->args.scratch + (size_t)thread * j->args.scratch_floats;
    j->impl->attn_task(&j->args, task / j->n_kv_heads, task % j->n_kv_heads, scratch);
}

int tb_cpu_attention(tb_cpu_kernels_t *self, const struct tb_cpu_kv_layout *L,
                     const void *k_cache, const void *v_cache, int n_tok,
                     const struct tb_cpu_attn_seq *seqs, const float *q, size_t ldq, int n_heads,
                     float scale, float *out, size_t ldo)
{
    return tb_cpu_attention_capped(self, L, k_cache, v_cache, n_tok, seqs, q, ldq, n_heads, scale,
                                   0.0f, out, ldo);
}

int tb_cpu_attention_capped(tb_cpu_kernels_t *self, const struct tb_cpu_kv_layout *L,
                            const void *k_cache, const void *v_cache, int n_tok,
                            const struct tb_cpu_attn_seq *seqs, const float *q, size_t ldq,
                            int n_heads, float scale, float softcap, float *out, size_t ldo)
{
    if (!self || tb_cpu_kv_check(L) != TB_OK || !k_cache || !v_cache || n_tok < 0 ||
        n_heads < 1 || n_heads % L->n_kv_heads != 0 || !isfinite(scale) ||
        !(softcap >= 0.0f && isfinite(softcap))) {
        return TB_EINVAL;
    }
    if (n_tok == 0) {
        return TB_OK;
    }
    const size_t width = (size_t)n_heads * (size_t)L->head_dim;
    if (!seqs || !q || !out || ldq < width || ldo < width ||
        (int64_t)n_tok * L->n_kv_heads > (int64_t)1 << 30) {
        return TB_EINVAL;
    }
    /* Every block a query will read must exist: cheap next to the attention itself. */
    for (int t = 0; t < n_tok; t++) {
        const struct tb_cpu_attn_seq *s = &seqs[t];
        if (s->window < 0) {
            return TB_EINVAL;
        }
        int n_att = s->pos + 1 < s->ctx_len ? s->pos + 1 : s->ctx_len;
        int lo = s->window > 0 && s->pos - s->window + 1 > 0 ? s->pos - s->window + 1 : 0;
        if (n_att <= lo) {
            continue;
        }
        int need = (n_att + L->block_size - 1) / L->block_size;
        if (!s->block_table || s->n_blocks < need) {
            return TB_EINVAL;
        }
        for (int b = lo / L->block_size; b < need; b++) {
            if (s->block_table[b] < 0 || s->block_table[b] >= L->n_blocks) {
                return TB_EINVAL;
            }
        }
    }
    const int group = n_heads / L->n_kv_heads;
    /* acc and pre-scaled queries (group * head_dim each), scores (block_size), max and sum */
    /* the attention task's scratch (tb_cpu_attn_impl.h): numerators and queries, a block of
     * scores per head of the group, running maxima, sums and block maxima */
    const size_t per_thread = (2 * (size_t)group * (size_t)L->head_dim +
                               (size_t)group * (size_t)L->block_size + 3 * (size_t)group + 15) /
                              16 * 16;
    const int nth = s_threads(self);
    int rc = s_scratch(self, per_thread * sizeof(float) * (size_t)nth);
    if (rc != TB_OK) {
        return rc;
    }
    const size_t es = s_kv_elem(L);
    struct attn_job j = {.impl = self->impl, .n_kv_heads = L->n_kv_heads};
    j.args = (struct tb_attn_args){
        .layout = L,
        .k = k_cache,
        .v = v_cache,
        .head_bytes = (size_t)L->block_size * (size_t)L->head_dim * es,
        .seqs = seqs,
        .q = q,
        .ldq = ldq,
        .n_heads = n_heads,
        .group = group,
        .scale = scale != 0.0f ? scale : 1.0f / sqrtf((float)L->head_dim),
        .softcap = softcap,
        .out = out,
        .ldo = ldo,
        .scratch = (float *)self->scratch,
        .scratch_floats = per_thread,
    };
    j.args.block_bytes = j.args.head_bytes * (size_t)L->n_kv_heads;
    tb_threadpool_run(self->pool, n_tok * L->n_kv_heads, s_attn_task, &j);
    return TB_OK;
}
