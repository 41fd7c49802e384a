/*
 * tb_cuda_backend.c - the CUDA flavour's backend (see tb_cuda_backend.h): device memory,
 * weight upload, the forward pass over a scheduler plan and the decode graphs.
 *
 * Device memory (docs/engine-cuda.md):
 *   weights   one allocation per matrix (quantized: values, scales, Q2_K/Q3_K/Q6_K's super-block
 *             scales), one per vector;
 *   KV cache  one allocation: layer-major, each layer's K then V cache, each
 *             [block][kv_head][slot][head_dim] f16 (the kernels' layout);
 *   scratch   activations of max_batch_tokens tokens, logits of max_batch_seqs rows, the
 *             quantized / half-precision activations, decode attention's split partials;
 *   step      one int32 buffer at fixed offsets: tokens, positions, slots [max_tokens each],
 *             context lengths, query starts, query lengths [max_seqs each], block tables
 *             [max_seqs x stride].  A captured graph holds pointers into it, so it is filled
 *             by one copy before each replay and never moves while graphs exist (growing it,
 *             or the attention scratch, drops the graphs).
 */
#include "tb_cuda_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_cpu_kernels.h"
#include "tb_cpu_weights.h"
#include "tb_cuda_kernels.h"
#include "tb_cuda_rt.h"
#include "tb_errors.h"
#include "tb_quant.h"

#define MAX_BLOCK_SIZE 256
#define MAX_GRAPHS 64
#define MIN_CTX_BUCKET 256
#define GEMM_WORKSPACE ((size_t)32 << 20)

/* Weights are handed to the kernels with their file type cast to tb_cuda_dtype_t: the two
 * enumerations must keep the same values. */
#define TB_SAME_TYPE(x) _Static_assert((int)TB_CUDA_##x == (int)TB_DTYPE_##x, #x " differs")
TB_SAME_TYPE(F32);
TB_SAME_TYPE(F16);
TB_SAME_TYPE(BF16);
TB_SAME_TYPE(Q8_0);
TB_SAME_TYPE(Q4_0);
TB_SAME_TYPE(Q2_K);
TB_SAME_TYPE(Q3_K);
TB_SAME_TYPE(Q4_K);
TB_SAME_TYPE(Q5_K);
TB_SAME_TYPE(Q6_K);
TB_SAME_TYPE(IQ4_XS);
#undef TB_SAME_TYPE
/* repack_q.cu moves K-quant super-blocks by a table of their GGUF sizes (device code cannot take
 * the structs): the file's layouts must still have those sizes. */
_Static_assert(sizeof(struct tb_block_q2_k) == 84 && sizeof(struct tb_block_q3_k) == 110 &&
                   sizeof(struct tb_block_q4_k) == 144 && sizeof(struct tb_block_q5_k) == 176 &&
                   sizeof(struct tb_block_q6_k) == 210 && sizeof(struct tb_block_iq4_xs) == 136,
               "the GGUF super-block sizes of repack_q.cu's table");

struct cu_layer {
    struct tb_cuda_weight wq, wk, wv, wo, gate, up, down;
    float *attn_norm, *ffn_norm, *bq, *bk, *bv;
};

struct cu_graph {
    uint32_t batch, ctx; /* bucket sizes it was captured for */
    tb_cu_graph_t *g;
};

/* A run of decode entries with consecutive token rows (mixed steps). */
struct decode_run {
    uint32_t entry, row, n;
};

struct tb_backend {
    const tb_model_t *model;
    const struct tb_model_params *p;
    struct tb_cpu_weights *hw; /* host-side descriptors and f32 vectors */
    struct tb_cuda_config cc;
    struct tb_cu_device_info dev;
    tb_cu_stream_t *stream;
    tb_cu_blas_t *blas; /* NULL when no float matrix needs a GEMM */
    int hidden, q_dim, kv_dim, inter, n_heads, n_kv_heads, head_dim, rope_mode;
    uint32_t vocab;
    float eps;

    void **allocs; /* weight allocations, freed at destroy */
    size_t n_allocs, cap_allocs;
    struct cu_layer *layers;
    struct tb_cuda_weight embd, output;
    float *out_norm, *inv_freq;

    struct tb_cuda_kv_layout kv;
    uint16_t *kv_mem;
    size_t kv_layer_elems; /* one layer's K (or V) cache, in f16 elements */
    uint32_t n_blocks, block_size;
    size_t block_bytes;

    uint32_t max_tokens, max_seqs;
    int max_cols;
    float *x, *xn, *tmp, *q, *k, *v, *att, *gate, *up, *xl, *logits;
    int8_t *aq;
    float *ads;
    void *xh;
    float *attn_scratch;
    size_t attn_scratch_floats;

    int32_t *d_step, *h_step;
    uint32_t stride_cap; /* block-table row capacity of the step buffer */
    uint32_t stride;     /* this step's row length */

    struct cu_graph graphs[MAX_GRAPHS];
    uint32_t n_graphs;
    struct decode_run *runs;
    uint32_t n_runs;

    char *err; /* forward's error buffer, set for the call */
    size_t err_len;
    struct tb_cuda_backend_stats stats;
};

/* Offsets (in int32) of the step buffer's parts. */
#define OFF_TOK(b) 0
#define OFF_POS(b) ((size_t)(b)->max_tokens)
#define OFF_SLOT(b) (2 * (size_t)(b)->max_tokens)
#define OFF_CTX(b) (3 * (size_t)(b)->max_tokens)
#define OFF_QST(b) (OFF_CTX(b) + (b)->max_seqs)
#define OFF_QLEN(b) (OFF_QST(b) + (b)->max_seqs)
#define OFF_TAB(b) (OFF_QLEN(b) + (b)->max_seqs)

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A kernel's return code as the backend's: launch failures carry the CUDA error. */
static int s_k(tb_backend_t *b, int rc, const char *what)
{
    if (rc == TB_OK) {
        return TB_OK;
    }
    if (rc == TB_EIO) {
        return tb_cu_take_error(what, b->err, b->err_len);
    }
    tb_err_set(b->err, b->err_len, "kernel %s refused its arguments (%s)", what, tb_strerror(rc));
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Device memory of the weights                                                                */
/* ------------------------------------------------------------------------------------------ */

static int s_dev_alloc(tb_backend_t *b, size_t bytes, void **out, char *err, size_t err_len)
{
    if (b->n_allocs == b->cap_allocs) {
        size_t cap = b->cap_allocs ? 2 * b->cap_allocs : 64;
        void **a = realloc(b->allocs, cap * sizeof(*a));
        if (!a) {
            return tb_err_fail(err, err_len, TB_ENOMEM, "out of host memory");
        }
        b->allocs = a;
        b->cap_allocs = cap;
    }
    char why[256] = "";
    int rc = tb_cu_malloc(out, bytes ? bytes : 16, why, sizeof why);
    if (rc != TB_OK) {
        size_t free_b = 0, total = 0;
        (void)tb_cu_mem_info(&free_b, &total, NULL, 0);
        tb_err_set(err, err_len,
                   "out of device memory loading the model: %s (%zu MiB of weights uploaded, "
                   "%zu MiB free of %zu MiB)",
                   why, b->stats.weight_bytes >> 20, free_b >> 20, total >> 20);
        return rc;
    }
    b->allocs[b->n_allocs++] = *out;
    b->stats.weight_bytes += bytes;
    return TB_OK;
}

static int s_upload_vec(tb_backend_t *b, const float *v, size_t n, float **out, char *err,
                        size_t err_len)
{
    *out = NULL;
    if (!v) {
        return TB_OK;
    }
    void *d;
    int rc = s_dev_alloc(b, n * sizeof(float), &d, err, err_len);
    if (rc == TB_OK) {
        rc = tb_cu_h2d(d, v, n * sizeof(float), NULL, err, err_len);
    }
    *out = d;
    return rc;
}

/* Uploads quantized matrix `w` (Q8_0/Q4_0, or a K-quant): its raw blocks to a temporary
 * buffer, repacked on the device into values, scales (and the super-block scales of Q2_K, Q3_K, Q6_K) in one
 * allocation, each part 256-byte aligned. */
static int s_upload_quant(tb_backend_t *b, const struct tb_cpu_weight *w, const char *name,
                          size_t bytes, struct tb_cuda_weight *out, char *err, size_t err_len)
{
    const bool k = tb_cuda_dtype_is_k(out->dtype);
    const int64_t blk = k ? TB_CUDA_KBLOCK : TB_CUDA_QBLOCK;
    if (w->cols % blk != 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': %lld columns; the cuda kernels need a multiple of %lld",
                           name, (long long)w->cols, (long long)blk);
    }
    const size_t nblk = (size_t)w->rows * (size_t)(w->cols / blk);
    const size_t vals = k ? nblk * (size_t)tb_cuda_k_quant_bytes(out->dtype)
                        : out->dtype == TB_CUDA_Q8_0 ? nblk * 32
                                                     : nblk * 16;
    const size_t vals_al = (vals + 255) / 256 * 256;
    const size_t scales = k ? nblk * 16 : nblk * 2, scales_al = (scales + 255) / 256 * 256;
    const size_t sd = nblk * 2 * (size_t)tb_cuda_k_super_d(out->dtype);
    void *raw = NULL, *d = NULL;
    int rc = tb_cu_malloc(&raw, bytes, err, err_len);
    if (rc != TB_OK) {
        return rc;
    }
    rc = tb_cu_h2d(raw, w->data, bytes, NULL, err, err_len);
    if (rc == TB_OK) {
        rc = s_dev_alloc(b, vals_al + scales_al + sd, &d, err, err_len);
    }
    if (rc == TB_OK) {
        uint8_t *base = d;
        out->data = d;
        out->scales = (const uint16_t *)(base + vals_al);
        out->super_d = sd ? (const uint16_t *)(base + vals_al + scales_al) : NULL;
        void *st = tb_cu_stream_handle(b->stream);
        rc = k ? tb_cuda_repack_k(out->dtype, raw, w->rows, w->cols, d, base + vals_al,
                                  (uint16_t *)out->super_d, st)
               : tb_cuda_repack_q(out->dtype, raw, w->rows, w->cols, d, (uint16_t *)out->scales,
                                  st);
        rc = rc == TB_EIO ? tb_cu_take_error("repack", err, err_len) : rc;
    }
    if (rc == TB_OK) {
        rc = tb_cu_stream_sync(b->stream, err, err_len);
    }
    tb_cu_free(raw);
    return rc;
}

/* Uploads matrix `w` (named for messages) into *out in the kernels' layout. */
static int s_upload_mat(tb_backend_t *b, const struct tb_cpu_weight *w, const char *name,
                        struct tb_cuda_weight *out, char *err, size_t err_len)
{
    const size_t rb = tb_cpu_dtype_row_bytes(w->dtype, w->cols);
    const size_t bytes = rb * (size_t)w->rows;
    *out = (struct tb_cuda_weight){.dtype = (tb_cuda_dtype_t)w->dtype,
                                   .rows = w->rows,
                                   .cols = w->cols};
    void *d = NULL;
    int rc;
    switch (w->dtype) {
    case TB_CPU_F32:
    case TB_CPU_F16:
    case TB_CPU_BF16:
        if (w->cols % (w->dtype == TB_CPU_F32 ? 4 : 8) != 0) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "tensor '%s': %lld columns; the cuda kernels need a multiple of "
                               "8 (4 for f32)",
                               name, (long long)w->cols);
        }
        rc = s_dev_alloc(b, bytes, &d, err, err_len);
        if (rc == TB_OK) {
            rc = tb_cu_h2d(d, w->data, bytes, NULL, err, err_len);
        }
        out->data = d;
        return rc;
    case TB_CPU_Q8_0:
    case TB_CPU_Q4_0:
    case TB_CPU_Q4_K:
    case TB_CPU_Q5_K:
    case TB_CPU_Q6_K:
    case TB_CPU_Q2_K:
    case TB_CPU_Q3_K:
    case TB_CPU_IQ4_XS:
        return s_upload_quant(b, w, name, bytes, out, err, err_len);
    default: {
        const struct tb_cpu_dtype_info *di = tb_cpu_dtype_info(w->dtype);
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': type %s is not supported by the cuda flavour yet "
                           "(F32, F16, BF16, Q8_0, Q4_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS)",
                           name, di ? di->name : "unknown");
    }
    }
}

static int s_upload_layer(tb_backend_t *b, uint32_t l, char *err, size_t err_len)
{
    const struct tb_cpu_layer_weights *hl = &b->hw->layers[l];
    struct cu_layer *dl = &b->layers[l];
    const struct {
        const struct tb_cpu_weight *h;
        struct tb_cuda_weight *d;
        const char *name;
    } mats[] = {{&hl->wq, &dl->wq, "wq"},         {&hl->wk, &dl->wk, "wk"},
                {&hl->wv, &dl->wv, "wv"},         {&hl->wo, &dl->wo, "wo"},
                {&hl->w_gate, &dl->gate, "gate"}, {&hl->w_up, &dl->up, "up"},
                {&hl->w_down, &dl->down, "down"}};
    char name[64];
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        snprintf(name, sizeof name, "layers.%u.%s", l, mats[i].name);
        int rc = s_upload_mat(b, mats[i].h, name, mats[i].d, err, err_len);
        if (rc != TB_OK) {
            return rc;
        }
    }
    const size_t h = (size_t)b->hidden, qd = (size_t)b->q_dim, kvd = (size_t)b->kv_dim;
    int rc = s_upload_vec(b, hl->attn_norm, h, &dl->attn_norm, err, err_len);
    rc = rc ? rc : s_upload_vec(b, hl->ffn_norm, h, &dl->ffn_norm, err, err_len);
    rc = rc ? rc : s_upload_vec(b, hl->bq, qd, &dl->bq, err, err_len);
    rc = rc ? rc : s_upload_vec(b, hl->bk, kvd, &dl->bk, err, err_len);
    rc = rc ? rc : s_upload_vec(b, hl->bv, kvd, &dl->bv, err, err_len);
    return rc;
}

static int s_upload(tb_backend_t *b, char *err, size_t err_len)
{
    int rc = tb_cpu_weights_new(b->model, 0, &b->hw, err, err_len);
    if (rc != TB_OK) {
        return rc;
    }
    b->layers = calloc(b->hw->n_layers, sizeof(*b->layers));
    if (!b->layers) {
        return tb_err_fail(err, err_len, TB_ENOMEM, "out of host memory");
    }
    for (uint32_t l = 0; l < b->hw->n_layers; l++) {
        rc = s_upload_layer(b, l, err, err_len);
        if (rc != TB_OK) {
            return rc;
        }
    }
    rc = s_upload_mat(b, &b->hw->tok_embd, "tok_embd", &b->embd, err, err_len);
    if (rc != TB_OK) {
        return rc;
    }
    if (b->hw->output.data == b->hw->tok_embd.data) {
        b->output = b->embd; /* tied: stored once */
    } else {
        rc = s_upload_mat(b, &b->hw->output, "output", &b->output, err, err_len);
    }
    rc = rc ? rc
            : s_upload_vec(b, b->hw->out_norm, (size_t)b->hidden, &b->out_norm, err, err_len);
    if (rc != TB_OK) {
        return rc;
    }
    double freqs[128];
    float inv[128];
    const size_t half = (size_t)b->head_dim / 2;
    if (tb_model_rope_inv_freq(b->model, freqs, half) != TB_OK) {
        return tb_err_fail(err, err_len, TB_EMODEL, "cannot compute the rotary frequencies");
    }
    for (size_t i = 0; i < half; i++) {
        inv[i] = (float)freqs[i];
    }
    return s_upload_vec(b, inv, half, &b->inv_freq, err, err_len);
}

/* ------------------------------------------------------------------------------------------ */
/* Scratch, step buffers, KV cache                                                             */
/* ------------------------------------------------------------------------------------------ */

static int s_scratch_alloc(tb_backend_t *b, size_t bytes, void **out, char *err, size_t err_len)
{
    int rc = tb_cu_malloc(out, bytes ? bytes : 16, err, err_len);
    if (rc == TB_OK) {
        b->stats.scratch_bytes += bytes;
    }
    return rc;
}

static int s_alloc_scratch(tb_backend_t *b, char *err, size_t err_len)
{
    const size_t T = b->max_tokens, S = b->max_seqs, F = sizeof(float);
    const size_t mc = (size_t)b->max_cols;
    struct {
        void **p;
        size_t bytes;
    } bufs[] = {
        {(void **)&b->x, T * b->hidden * F},
        {(void **)&b->xn, T * b->hidden * F},
        {(void **)&b->tmp, T * b->hidden * F},
        {(void **)&b->q, T * b->q_dim * F},
        {(void **)&b->k, T * b->kv_dim * F},
        {(void **)&b->v, T * b->kv_dim * F},
        {(void **)&b->att, T * b->q_dim * F},
        {(void **)&b->gate, T * b->inter * F},
        {(void **)&b->up, T * b->inter * F},
        {(void **)&b->xl, S * b->hidden * F},
        {(void **)&b->logits, S * b->vocab * F},
        {(void **)&b->aq, T * mc},
        {(void **)&b->ads, T * (mc / TB_CUDA_QBLOCK) * 2 * F},
        {(void **)&b->xh, T * mc * 2},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        int rc = s_scratch_alloc(b, bufs[i].bytes, bufs[i].p, err, err_len);
        if (rc != TB_OK) {
            return rc;
        }
    }
    return TB_OK;
}

static void s_drop_graphs(tb_backend_t *b)
{
    for (uint32_t i = 0; i < b->n_graphs; i++) {
        tb_cu_graph_destroy(&b->graphs[i].g);
    }
    b->n_graphs = 0;
}

/* Makes the step buffers hold block-table rows of `stride` blocks and the decode partials of
 * `max_ctx` tokens; growing drops the graphs (they point at the old buffers). */
static int s_reserve(tb_backend_t *b, uint32_t stride, uint32_t max_ctx)
{
    const size_t need_att = tb_cuda_attn_decode_scratch_floats((int)b->max_seqs, b->n_heads,
                                                               b->head_dim, (int)max_ctx,
                                                               TB_CUDA_ATTN_SPLIT);
    if (stride > b->stride_cap) {
        uint32_t cap = b->stride_cap * 2 > stride ? b->stride_cap * 2 : stride;
        const size_t n = OFF_TAB(b) + (size_t)b->max_seqs * cap;
        int32_t *h = realloc(b->h_step, n * sizeof(int32_t));
        if (!h) {
            return tb_err_fail(b->err, b->err_len, TB_ENOMEM, "out of host memory");
        }
        b->h_step = h;
        s_drop_graphs(b);
        tb_cu_free(b->d_step);
        b->d_step = NULL;
        int rc = tb_cu_malloc((void **)&b->d_step, n * sizeof(int32_t), b->err, b->err_len);
        if (rc != TB_OK) {
            b->stride_cap = 0;
            return rc;
        }
        b->stride_cap = cap;
    }
    if (need_att > b->attn_scratch_floats) {
        s_drop_graphs(b);
        tb_cu_free(b->attn_scratch);
        b->attn_scratch = NULL;
        b->attn_scratch_floats = 0;
        int rc = tb_cu_malloc((void **)&b->attn_scratch, need_att * sizeof(float), b->err,
                              b->err_len);
        if (rc != TB_OK) {
            return rc;
        }
        b->attn_scratch_floats = need_att;
    }
    return TB_OK;
}

static int s_alloc_kv(tb_backend_t *b, const struct tb_backend_config *cfg, char *err,
                      size_t err_len)
{
    const struct tb_model_params *p = b->p;
    b->block_size = cfg->block_size;
    b->block_bytes = (size_t)p->n_layers * 2 * (size_t)b->n_kv_heads * (size_t)b->head_dim *
                     cfg->block_size * 2;
    size_t free_b = 0, total = 0;
    int rc = tb_cu_mem_info(&free_b, &total, err, err_len);
    if (rc != TB_OK) {
        return rc;
    }
    const double util = b->cc.gpu_memory_utilization;
    const double budget = util > 0 ? util * (double)free_b : (double)cfg->kv_budget_bytes;
    uint64_t n = budget > 0 ? (uint64_t)(budget / (double)b->block_bytes) : 0;
    if (n < 1) {
        return tb_err_fail(err, err_len, util > 0 ? TB_ENOMEM : TB_ECONFIG,
                           "no room for the KV cache: %s of %.0f bytes holds no block of %u "
                           "tokens (%zu bytes; %zu MiB of device memory free of %zu MiB after "
                           "the weights)",
                           util > 0 ? "gpu_memory_utilization" : "kv_cache", budget,
                           cfg->block_size, b->block_bytes, free_b >> 20, total >> 20);
    }
    const uint64_t cap = (uint64_t)INT32_MAX / cfg->block_size;
    n = n > cap ? cap : n;
    b->n_blocks = (uint32_t)n;
    b->kv = (struct tb_cuda_kv_layout){.block_size = (int)cfg->block_size,
                                       .n_kv_heads = b->n_kv_heads,
                                       .head_dim = b->head_dim,
                                       .n_blocks = (int64_t)n};
    b->kv_layer_elems = (size_t)n * cfg->block_size * (size_t)b->n_kv_heads * (size_t)b->head_dim;
    const size_t bytes = b->kv_layer_elems * 2 * 2 * p->n_layers;
    char why[256] = "";
    rc = tb_cu_malloc((void **)&b->kv_mem, bytes, why, sizeof why);
    if (rc != TB_OK) {
        return tb_err_fail(err, err_len, rc, "cannot allocate the KV cache (%u blocks): %s",
                           b->n_blocks, why);
    }
    b->stats.kv_bytes = bytes;
    return TB_OK;
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
    s_drop_graphs(b);
    void *scratch[] = {b->x,   b->xn,   b->tmp,          b->q,      b->k,      b->v,
                       b->att, b->gate, b->up,           b->xl,     b->logits, b->aq,
                       b->ads, b->xh,   b->attn_scratch, b->d_step, b->kv_mem};
    for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++) {
        tb_cu_free(scratch[i]);
    }
    for (size_t i = 0; i < b->n_allocs; i++) {
        tb_cu_free(b->allocs[i]);
    }
    free(b->allocs);
    free(b->layers);
    free(b->h_step);
    free(b->runs);
    tb_cu_blas_destroy(&b->blas);
    tb_cu_stream_destroy(&b->stream);
    tb_cpu_weights_destroy(&b->hw);
    free(b);
    *b_p = NULL;
}

static int s_check(const struct tb_model_params *p, const struct tb_backend_config *cfg,
                   char *err, size_t err_len)
{
    if (!cfg->kv_f16) {
        return tb_err_fail(err, err_len, TB_ECONFIG,
                           "kv_dtype f32: the cuda flavour stores keys and values as f16");
    }
    if (cfg->block_size < 1 || cfg->block_size > MAX_BLOCK_SIZE) {
        return tb_err_fail(err, err_len, TB_ECONFIG,
                           "block_size %u: the cuda flavour supports 1..%d", cfg->block_size,
                           MAX_BLOCK_SIZE);
    }
    if (cfg->max_batch_tokens < 1 || cfg->max_batch_seqs < 1 ||
        cfg->max_batch_tokens > (1u << 20)) {
        return tb_err_fail(err, err_len, TB_ECONFIG, "max_batch_tokens %u / max_batch_seqs %u",
                           cfg->max_batch_tokens, cfg->max_batch_seqs);
    }
    const unsigned hd = p->head_dim;
    if (hd != 8 && hd != 16 && hd != 32 && hd != 64 && hd != 128) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "head_dim %u: the cuda kernels support 8, 16, 32, 64 and 128", hd);
    }
    if (p->n_layers < 1 || p->vocab < 1 || p->n_kv_heads < 1 || p->n_heads % p->n_kv_heads ||
        p->hidden % 32 || p->intermediate % 32 || p->hidden > (1u << 24) ||
        p->intermediate > (1u << 26)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "model shape not supported by the cuda flavour (hidden %u and "
                           "intermediate %u must be multiples of 32; heads %u / kv heads %u)",
                           p->hidden, p->intermediate, p->n_heads, p->n_kv_heads);
    }
    char features[256];
    if (tb_model_params_family_features(p, features, sizeof(features)) > 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "the cuda flavour computes Llama's layer only; this model also uses: "
                           "%s (serve it with engine_cpu)",
                           features);
    }
    if (p->sliding_window) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "sliding-window attention is not supported by the cuda flavour yet");
    }
    if (p->rope_layout != TB_ROPE_NEOX && p->rope_layout != TB_ROPE_INTERLEAVED) {
        return tb_err_fail(err, err_len, TB_EMODEL, "unknown rope layout %d",
                           (int)p->rope_layout);
    }
    return TB_OK;
}

static bool s_has_float_matrix(const tb_backend_t *b)
{
    for (uint32_t l = 0; l < b->hw->n_layers; l++) {
        if (b->layers[l].wq.dtype <= TB_CUDA_BF16 || b->layers[l].gate.dtype <= TB_CUDA_BF16 ||
            b->layers[l].down.dtype <= TB_CUDA_BF16 || b->layers[l].wo.dtype <= TB_CUDA_BF16 ||
            b->layers[l].wk.dtype <= TB_CUDA_BF16 || b->layers[l].wv.dtype <= TB_CUDA_BF16 ||
            b->layers[l].up.dtype <= TB_CUDA_BF16) {
            return true;
        }
    }
    return false;
}

static void s_init_geometry(tb_backend_t *b, const struct tb_backend_config *cfg)
{
    const struct tb_model_params *p = b->p;
    b->hidden = (int)p->hidden;
    b->n_heads = (int)p->n_heads;
    b->n_kv_heads = (int)p->n_kv_heads;
    b->head_dim = (int)p->head_dim;
    b->q_dim = b->n_heads * b->head_dim;
    b->kv_dim = b->n_kv_heads * b->head_dim;
    b->inter = (int)p->intermediate;
    b->vocab = p->vocab;
    b->eps = (float)p->rms_eps;
    b->rope_mode = p->rope_layout == TB_ROPE_NEOX ? 0 : 1;
    b->max_tokens = cfg->max_batch_tokens;
    b->block_size = cfg->block_size;
    b->max_seqs = cfg->max_batch_seqs < cfg->max_batch_tokens ? cfg->max_batch_seqs
                                                              : cfg->max_batch_tokens;
    int mc = b->hidden > b->inter ? b->hidden : b->inter;
    b->max_cols = mc > b->q_dim ? mc : b->q_dim;
    if (cfg->flavour) {
        b->cc = *(const struct tb_cuda_config *)cfg->flavour;
    } else {
        b->cc = (struct tb_cuda_config){.gpu_memory_utilization = 0, .cuda_graphs = true};
    }
}

static int s_create(const tb_model_t *model, const struct tb_backend_config *cfg,
                    tb_backend_t **out, uint32_t *n_blocks, char *err, size_t err_len)
{
    if (!model || !cfg || !out || !n_blocks) {
        return tb_err_fail(err, err_len, TB_EINVAL, "cuda backend: missing argument");
    }
    *out = NULL;
    *n_blocks = 0;
    const struct tb_model_params *p = tb_model_params(model);
    int rc = s_check(p, cfg, err, err_len);
    if (rc != TB_OK) {
        return rc;
    }
    const struct tb_cuda_config *cc = cfg->flavour;
    if (cc && (!(cc->gpu_memory_utilization >= 0) || cc->gpu_memory_utilization > 1 ||
               cc->device < 0 || cc->device > 1024)) {
        return tb_err_fail(err, err_len, TB_ECONFIG,
                           "gpu_memory_utilization %g (0..1) or device %lld out of range",
                           cc->gpu_memory_utilization, (long long)cc->device);
    }
    tb_backend_t *b = calloc(1, sizeof(*b));
    if (!b) {
        return tb_err_fail(err, err_len, TB_ENOMEM, "out of host memory");
    }
    b->model = model;
    b->p = p;
    s_init_geometry(b, cfg);
    rc = tb_cu_open((int)b->cc.device, &b->dev, err, err_len);
    rc = rc ? rc : tb_cu_stream_new(&b->stream, err, err_len);
    rc = rc ? rc : s_upload(b, err, err_len);
    if (rc == TB_OK && s_has_float_matrix(b) && b->max_tokens > TB_CUDA_GEMM_MIN_TOKENS) {
        rc = tb_cu_blas_new(GEMM_WORKSPACE, &b->blas, err, err_len);
    }
    rc = rc ? rc : s_alloc_scratch(b, err, err_len);
    if (rc == TB_OK) {
        b->runs = malloc(b->max_seqs * sizeof(*b->runs));
        b->err = err;
        b->err_len = err_len;
        rc = b->runs ? s_reserve(b, (MIN_CTX_BUCKET + b->block_size - 1) / b->block_size,
                                 MIN_CTX_BUCKET)
                     : tb_err_fail(err, err_len, TB_ENOMEM, "out of host memory");
        b->err = NULL;
    }
    rc = rc ? rc : s_alloc_kv(b, cfg, err, err_len);
    if (rc != TB_OK) {
        s_destroy(&b);
        return rc;
    }
    *out = b;
    *n_blocks = b->n_blocks;
    return TB_OK;
}

static size_t s_block_bytes(const tb_backend_t *b)
{
    return b ? b->block_bytes : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Plan -> step buffer                                                                         */
/* ------------------------------------------------------------------------------------------ */

static uint32_t s_pow2_at_least(uint32_t v, uint32_t lo)
{
    uint32_t r = lo;
    while (r < v && r < (1u << 30)) {
        r <<= 1;
    }
    return r;
}

/* Checks one entry of `plan` and fills its part of the host step buffer (entry index s, block
 * table row of b->stride ids). */
static int s_stage_entry(tb_backend_t *b, const struct tb_sched_plan *plan, uint32_t s,
                         bool mixed, uint8_t *covered)
{
    const struct tb_sched_entry *e = &plan->seqs[s];
    const uint32_t T = plan->n_tokens, bs = b->block_size;
    if (!mixed && e->start != s) {
        return tb_err_fail(b->err, b->err_len, TB_EINVAL,
                           "decode entry %u starts at token %u (entries in token order)", s,
                           e->start);
    }
    if (e->n_tokens < 1 || e->start > T || e->n_tokens > T - e->start ||
        e->pos > (uint32_t)INT32_MAX - e->n_tokens || e->n_ctx != e->pos + e->n_tokens) {
        return tb_err_fail(b->err, b->err_len, TB_EINVAL,
                           "entry %u: tokens [%u, +%u) at position %u, n_ctx %u do not fit the "
                           "plan's %u tokens",
                           s, e->start, e->n_tokens, e->pos, e->n_ctx, T);
    }
    const uint32_t need = (e->n_ctx + bs - 1) / bs;
    if (!e->block_table || e->n_blocks < need) {
        return tb_err_fail(b->err, b->err_len, TB_EINVAL,
                           "entry %u: %u blocks do not cover %u tokens", s, e->n_blocks,
                           e->n_ctx);
    }
    int32_t *tab = b->h_step + OFF_TAB(b) + (size_t)s * b->stride;
    for (uint32_t i = 0; i < b->stride; i++) {
        const uint32_t blk = i < need ? e->block_table[i] : 0;
        if (blk >= b->n_blocks) {
            return tb_err_fail(b->err, b->err_len, TB_EINVAL,
                               "entry %u: block %u is outside the cache (%u blocks)", s, blk,
                               b->n_blocks);
        }
        tab[i] = (int32_t)blk;
    }
    for (uint32_t i = 0; i < e->n_tokens; i++) {
        const uint32_t t = e->start + i, ps = e->pos + i;
        const uint64_t want = (uint64_t)e->block_table[ps / bs] * bs + ps % bs;
        if (covered[t]++ || plan->positions[t] != ps || plan->slots[t] != want ||
            plan->tokens[t] < 0 || (uint32_t)plan->tokens[t] >= b->vocab) {
            return tb_err_fail(
                b->err, b->err_len, TB_EINVAL,
                "token %u: id %d, position %u, slot %u (entry %u implies %u, %llu; "
                "vocabulary %u; each token in one entry)",
                t, plan->tokens[t], plan->positions[t], plan->slots[t], s, ps,
                (unsigned long long)want, b->vocab);
        }
        b->h_step[OFF_TOK(b) + t] = plan->tokens[t];
        b->h_step[OFF_POS(b) + t] = (int32_t)ps;
        b->h_step[OFF_SLOT(b) + t] = (int32_t)want;
    }
    b->h_step[OFF_CTX(b) + s] = (int32_t)e->n_ctx;
    b->h_step[OFF_QST(b) + s] = (int32_t)e->start;
    /* mixed steps: decode entries go through decode attention, not the prefill kernel */
    b->h_step[OFF_QLEN(b) + s] = mixed && e->n_tokens == 1 ? 0 : (int32_t)e->n_tokens;
    return TB_OK;
}

/* Validates `plan` and fills the host step buffer; *max_ctx receives the longest context.
 * `rows`: the rows the step computes (a decode batch padded to its bucket). */
static int s_stage(tb_backend_t *b, const struct tb_sched_plan *plan, bool mixed, uint32_t rows,
                   uint32_t *max_ctx)
{
    const uint32_t T = plan->n_tokens;
    if (T > b->max_tokens || plan->n_seqs > b->max_seqs || rows > b->max_tokens ||
        !plan->tokens || !plan->positions || !plan->slots || !plan->seqs) {
        return tb_err_fail(b->err, b->err_len, TB_EINVAL,
                           "plan of %u tokens / %u sequences (sized for %u / %u) or lacking "
                           "arrays",
                           T, plan->n_seqs, b->max_tokens, b->max_seqs);
    }
    uint8_t *covered = calloc(T ? T : 1, 1);
    if (!covered) {
        return tb_err_fail(b->err, b->err_len, TB_ENOMEM, "out of host memory");
    }
    int rc = TB_OK;
    uint32_t n_logits = 0;
    for (uint32_t s = 0; rc == TB_OK && s < plan->n_seqs; s++) {
        rc = s_stage_entry(b, plan, s, mixed, covered);
        n_logits += plan->seqs[s].need_logits;
    }
    for (uint32_t t = 0; rc == TB_OK && t < T; t++) {
        if (!covered[t]) {
            rc = tb_err_fail(b->err, b->err_len, TB_EINVAL, "token %u belongs to no entry", t);
        }
    }
    free(covered);
    if (rc == TB_OK && n_logits != plan->n_logits) {
        rc = tb_err_fail(b->err, b->err_len, TB_EINVAL,
                         "plan says %u logits rows, its entries ask for %u", plan->n_logits,
                         n_logits);
    }
    if (rc != TB_OK) {
        return rc;
    }
    /* padding rows of a decode bucket: token 0 at position 0, no KV slot, empty context */
    for (uint32_t r = T; r < rows; r++) {
        b->h_step[OFF_TOK(b) + r] = 0;
        b->h_step[OFF_POS(b) + r] = 0;
        b->h_step[OFF_SLOT(b) + r] = -1;
        b->h_step[OFF_CTX(b) + r] = 0;
        memset(b->h_step + OFF_TAB(b) + (size_t)r * b->stride, 0, b->stride * sizeof(int32_t));
    }
    *max_ctx = 1;
    for (uint32_t s = 0; s < plan->n_seqs; s++) {
        *max_ctx = plan->seqs[s].n_ctx > *max_ctx ? plan->seqs[s].n_ctx : *max_ctx;
    }
    return TB_OK;
}

/* Copies the step buffer's used parts to the device (one copy up to the last table row). */
static int s_upload_step(tb_backend_t *b, uint32_t rows)
{
    const size_t n = OFF_TAB(b) + (size_t)rows * b->stride;
    return tb_cu_h2d(b->d_step, b->h_step, n * sizeof(int32_t), b->stream, b->err, b->err_len);
}

/* ------------------------------------------------------------------------------------------ */
/* The layer stack                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* How one pass runs: T rows; decode (every row its own sequence, decode attention over
 * n_seqs = T table rows) or mixed (prefill attention over n_seqs entries, then the decode
 * runs); gemm: float matrices through cuBLASLt. */
struct pass {
    int T;
    bool decode;
    bool gemm;
    int n_seqs;
    int max_ctx;
    int max_q;
};

/* An input of several matmuls, quantized / converted once. */
struct act {
    const float *x;
    size_t ldx;
    int cols;
    bool q8;
    int half; /* dtype its half copy in b->xh holds, or -1 */
};

static struct tb_cuda_attn_batch s_batch(tb_backend_t *b, const struct pass *ps, uint32_t entry,
                                         int n_seqs)
{
    const int32_t *d = b->d_step;
    return (struct tb_cuda_attn_batch){.n_seqs = n_seqs,
                                       .block_tables = d + OFF_TAB(b) + (size_t)entry * b->stride,
                                       .max_blocks = (int)b->stride,
                                       .ctx_lens = d + OFF_CTX(b) + entry,
                                       .q_start = d + OFF_QST(b) + entry,
                                       .q_lens = d + OFF_QLEN(b) + entry,
                                       .max_ctx = ps->max_ctx,
                                       .max_q_len = ps->max_q};
}

static int s_matmul(tb_backend_t *b, const struct pass *ps, struct act *a,
                    const struct tb_cuda_weight *w, const float *bias, float *y, size_t ldy)
{
    void *st = tb_cu_stream_handle(b->stream);
    if (w->dtype == TB_CUDA_Q8_0 || w->dtype == TB_CUDA_Q4_0 || tb_cuda_dtype_is_k(w->dtype)) {
        const struct tb_cuda_q8_act q8 = {.qs = b->aq,
                                          .ds = b->ads,
                                          .cols = a->cols,
                                          .n_tok = ps->T};
        int rc = TB_OK;
        if (!a->q8) {
            rc = s_k(b, tb_cuda_quantize_q8_1(a->x, a->ldx, ps->T, &q8, st), "quantize_q8_1");
            a->q8 = rc == TB_OK;
        }
        if (rc == TB_OK && tb_cuda_dtype_is_k(w->dtype)) {
            return s_k(b, tb_cuda_gemv_k(w, &q8, ps->T, bias, y, ldy, st), "gemv_k");
        }
        return rc ? rc : s_k(b, tb_cuda_gemv_q(w, &q8, ps->T, bias, y, ldy, st), "gemv_q");
    }
    if (!ps->gemm) {
        return s_k(b, tb_cuda_gemv(w, a->x, a->ldx, ps->T, bias, y, ldy, st), "gemv");
    }
    const void *xin = a->x;
    size_t ldin = a->ldx;
    int rc = TB_OK;
    if (w->dtype != TB_CUDA_F32) {
        if (a->half != (int)w->dtype) {
            rc = s_k(b,
                     tb_cuda_convert(a->x, a->ldx, ps->T, a->cols, w->dtype, b->xh,
                                     (size_t)a->cols, st),
                     "convert");
            a->half = rc == TB_OK ? (int)w->dtype : -1;
        }
        xin = b->xh;
        ldin = (size_t)a->cols;
    }
    rc = rc ? rc
            : tb_cu_gemm(b->blas, b->stream, (int)w->dtype, w->rows, w->cols, ps->T, w->data, xin,
                         ldin, y, ldy, b->err, b->err_len);
    b->stats.gemm_calls++;
    if (rc == TB_OK && bias) {
        rc = s_k(b, tb_cuda_bias_add(y, ldy, ps->T, w->rows, bias, st), "bias_add");
    }
    /* decode rows of a mixed step: the same GEMV a decode step runs (batch invariance) */
    for (uint32_t i = 0; rc == TB_OK && i < b->n_runs; i++) {
        const struct decode_run *r = &b->runs[i];
        rc = s_k(b,
                 tb_cuda_gemv(w, a->x + (size_t)r->row * a->ldx, a->ldx, (int)r->n, bias,
                              y + (size_t)r->row * ldy, ldy, st),
                 "gemv");
    }
    return rc;
}

static int s_attention(tb_backend_t *b, const struct pass *ps, uint32_t l)
{
    void *st = tb_cu_stream_handle(b->stream);
    const uint16_t *kc = b->kv_mem + (size_t)l * 2 * b->kv_layer_elems;
    const uint16_t *vc = kc + b->kv_layer_elems;
    const size_t qd = (size_t)b->q_dim;
    if (ps->decode) {
        const struct tb_cuda_attn_batch bt = s_batch(b, ps, 0, ps->T);
        return s_k(b,
                   tb_cuda_attn_decode(&b->kv, kc, vc, &bt, b->q, qd, b->n_heads, 0.0f,
                                       TB_CUDA_ATTN_SPLIT, b->attn_scratch, b->att, qd, st),
                   "attn_decode");
    }
    const struct tb_cuda_attn_batch bt = s_batch(b, ps, 0, ps->n_seqs);
    int rc = s_k(b,
                 tb_cuda_attn_prefill(&b->kv, kc, vc, &bt, b->q, qd, b->n_heads, 0.0f, b->att, qd,
                                      st),
                 "attn_prefill");
    for (uint32_t i = 0; rc == TB_OK && i < b->n_runs; i++) {
        const struct decode_run *r = &b->runs[i];
        const struct tb_cuda_attn_batch db = s_batch(b, ps, r->entry, (int)r->n);
        rc = s_k(b,
                 tb_cuda_attn_decode(&b->kv, kc, vc, &db, b->q + (size_t)r->row * qd, qd,
                                     b->n_heads, 0.0f, TB_CUDA_ATTN_SPLIT, b->attn_scratch,
                                     b->att + (size_t)r->row * qd, qd, st),
                 "attn_decode");
    }
    return rc;
}

static int s_layer(tb_backend_t *b, const struct pass *ps, uint32_t l)
{
    void *st = tb_cu_stream_handle(b->stream);
    const struct cu_layer *w = &b->layers[l];
    const size_t h = (size_t)b->hidden, qd = (size_t)b->q_dim, kvd = (size_t)b->kv_dim;
    const size_t ff = (size_t)b->inter;
    struct act a = {.x = b->xn, .ldx = h, .cols = b->hidden, .half = -1};
    int rc = s_matmul(b, ps, &a, &w->wq, w->bq, b->q, qd);
    rc = rc ? rc : s_matmul(b, ps, &a, &w->wk, w->bk, b->k, kvd);
    rc = rc ? rc : s_matmul(b, ps, &a, &w->wv, w->bv, b->v, kvd);
    rc = rc ? rc
            : s_k(b,
                  tb_cuda_rope(b->q, qd, b->n_heads, b->k, kvd, b->n_kv_heads, ps->T,
                               b->d_step + OFF_POS(b), b->head_dim, b->head_dim, b->inv_freq,
                               b->rope_mode, st),
                  "rope");
    uint16_t *kc = b->kv_mem + (size_t)l * 2 * b->kv_layer_elems;
    rc = rc ? rc
            : s_k(b,
                  tb_cuda_kv_write(&b->kv, kc, kc + b->kv_layer_elems, ps->T,
                                   b->d_step + OFF_SLOT(b), b->k, kvd, b->v, kvd, st),
                  "kv_write");
    rc = rc ? rc : s_attention(b, ps, l);
    struct act a2 = {.x = b->att, .ldx = qd, .cols = b->q_dim, .half = -1};
    rc = rc ? rc : s_matmul(b, ps, &a2, &w->wo, NULL, b->tmp, h);
    rc = rc ? rc
            : s_k(b,
                  tb_cuda_rmsnorm(b->xn, b->x, b->tmp, w->ffn_norm, (int64_t)h, ps->T, b->eps,
                                  st),
                  "rmsnorm");
    struct act a3 = {.x = b->xn, .ldx = h, .cols = b->hidden, .half = -1};
    rc = rc ? rc : s_matmul(b, ps, &a3, &w->gate, NULL, b->gate, ff);
    rc = rc ? rc : s_matmul(b, ps, &a3, &w->up, NULL, b->up, ff);
    rc = rc ? rc
            : s_k(b, tb_cuda_swiglu(b->gate, b->gate, b->up, (int64_t)(ps->T * ff), st),
                  "swiglu");
    struct act a4 = {.x = b->gate, .ldx = ff, .cols = b->inter, .half = -1};
    rc = rc ? rc : s_matmul(b, ps, &a4, &w->down, NULL, b->tmp, h);
    /* residual, then the next layer's input norm (after the last: the output norm) */
    const float *next = l + 1 < b->hw->n_layers ? b->layers[l + 1].attn_norm : b->out_norm;
    rc = rc ? rc
            : s_k(b, tb_cuda_rmsnorm(b->xn, b->x, b->tmp, next, (int64_t)h, ps->T, b->eps, st),
                  "rmsnorm");
    return rc;
}

/* Embedding, every layer; afterwards xn holds the output-normed rows. */
static int s_stack(tb_backend_t *b, const struct pass *ps)
{
    void *st = tb_cu_stream_handle(b->stream);
    const size_t h = (size_t)b->hidden;
    int rc = s_k(b, tb_cuda_embed(&b->embd, b->d_step + OFF_TOK(b), ps->T, b->x, h, st), "embed");
    rc = rc ? rc
            : s_k(b,
                  tb_cuda_rmsnorm(b->xn, b->x, NULL, b->layers[0].attn_norm, (int64_t)h, ps->T,
                                  b->eps, st),
                  "rmsnorm");
    for (uint32_t l = 0; rc == TB_OK && l < b->hw->n_layers; l++) {
        rc = s_layer(b, ps, l);
    }
    return rc;
}

/* logits[0..n) = output head over n rows of `x` (GEMV always: batch invariant). */
static int s_head(tb_backend_t *b, const float *x, int n)
{
    const struct pass ps = {.T = n};
    struct act a = {.x = x, .ldx = (size_t)b->hidden, .cols = b->hidden, .half = -1};
    const uint32_t saved = b->n_runs;
    b->n_runs = 0;
    int rc = s_matmul(b, &ps, &a, &b->output, NULL, b->logits, b->vocab);
    b->n_runs = saved;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The decode bucket of n sequences: the next power of two, at most max_seqs. */
static uint32_t s_bucket(const tb_backend_t *b, uint32_t n)
{
    uint32_t r = s_pow2_at_least(n, 1);
    return r < b->max_seqs ? r : b->max_seqs;
}

static int s_decode_launches(tb_backend_t *b, const struct pass *ps)
{
    int rc = s_stack(b, ps);
    return rc ? rc : s_head(b, b->xn, ps->T);
}

/* A decode step: rows padded to the bucket, replayed from a graph (captured on first use). */
static int s_decode(tb_backend_t *b, const struct tb_sched_plan *plan)
{
    const bool graphs = b->cc.cuda_graphs;
    const uint32_t rows = graphs ? s_bucket(b, plan->n_seqs) : plan->n_seqs;
    uint32_t max_ctx = 1;
    /* block tables sized by a power-of-two context bucket: part of what a graph bakes in */
    uint32_t longest = 1;
    for (uint32_t s = 0; s < plan->n_seqs; s++) {
        longest = plan->seqs[s].n_ctx > longest ? plan->seqs[s].n_ctx : longest;
    }
    const uint32_t ctxb = s_pow2_at_least(longest, MIN_CTX_BUCKET);
    b->stride = (ctxb + b->block_size - 1) / b->block_size;
    int rc = s_reserve(b, b->stride, ctxb);
    rc = rc ? rc : s_stage(b, plan, false, rows, &max_ctx);
    rc = rc ? rc : s_upload_step(b, rows);
    if (rc != TB_OK) {
        return rc;
    }
    b->n_runs = 0;
    const struct pass ps = {.T = (int)rows, .decode = true, .max_ctx = (int)ctxb};
    if (!graphs) {
        b->stats.direct_decodes++;
        return s_decode_launches(b, &ps);
    }
    struct cu_graph *g = NULL;
    for (uint32_t i = 0; i < b->n_graphs && !g; i++) {
        g = b->graphs[i].batch == rows && b->graphs[i].ctx == ctxb ? &b->graphs[i] : NULL;
    }
    if (!g) {
        if (b->n_graphs == MAX_GRAPHS) {
            s_drop_graphs(b);
        }
        rc = tb_cu_capture_begin(b->stream, b->err, b->err_len);
        if (rc != TB_OK) {
            return rc;
        }
        int lrc = s_decode_launches(b, &ps);
        tb_cu_graph_t *cg = NULL;
        rc = tb_cu_capture_end(b->stream, &cg, b->err, b->err_len);
        if (lrc != TB_OK || rc != TB_OK) {
            tb_cu_graph_destroy(&cg);
            return lrc ? lrc : rc;
        }
        g = &b->graphs[b->n_graphs++];
        *g = (struct cu_graph){.batch = rows, .ctx = ctxb, .g = cg};
        b->stats.graph_captures++;
    }
    b->stats.graph_replays++;
    return tb_cu_graph_launch(g->g, b->stream, b->err, b->err_len);
}

/* Finds the runs of decode entries (consecutive rows) of a mixed step. */
static void s_find_runs(tb_backend_t *b, const struct tb_sched_plan *plan)
{
    b->n_runs = 0;
    for (uint32_t s = 0; s < plan->n_seqs; s++) {
        const struct tb_sched_entry *e = &plan->seqs[s];
        if (e->n_tokens != 1) {
            continue;
        }
        struct decode_run *last = b->n_runs ? &b->runs[b->n_runs - 1] : NULL;
        if (last && last->entry + last->n == s && last->row + last->n == e->start) {
            last->n++;
        } else {
            b->runs[b->n_runs++] = (struct decode_run){.entry = s, .row = e->start, .n = 1};
        }
    }
}

/* A step with prefill chunks, run directly. */
static int s_mixed(tb_backend_t *b, const struct tb_sched_plan *plan)
{
    uint32_t longest = 1, max_q = 0;
    for (uint32_t s = 0; s < plan->n_seqs; s++) {
        const struct tb_sched_entry *e = &plan->seqs[s];
        longest = e->n_ctx > longest ? e->n_ctx : longest;
        max_q = e->n_tokens > 1 && e->n_tokens > max_q ? e->n_tokens : max_q;
    }
    const uint32_t ctxb = s_pow2_at_least(longest, MIN_CTX_BUCKET);
    b->stride = (longest + b->block_size - 1) / b->block_size;
    uint32_t max_ctx = 1;
    int rc = s_reserve(b, b->stride, ctxb);
    rc = rc ? rc : s_stage(b, plan, true, plan->n_tokens, &max_ctx);
    rc = rc ? rc : s_upload_step(b, plan->n_seqs);
    if (rc != TB_OK) {
        return rc;
    }
    s_find_runs(b, plan);
    const struct pass ps = {.T = (int)plan->n_tokens,
                            .gemm = b->blas && plan->n_tokens > TB_CUDA_GEMM_MIN_TOKENS,
                            .n_seqs = (int)plan->n_seqs,
                            .max_ctx = (int)ctxb,
                            .max_q = (int)max_q};
    rc = s_stack(b, &ps);
    /* gather the logits rows (last token of each entry that asks), then the head */
    const size_t hb = (size_t)b->hidden * sizeof(float);
    uint32_t n = 0;
    for (uint32_t s = 0; rc == TB_OK && s < plan->n_seqs; s++) {
        const struct tb_sched_entry *e = &plan->seqs[s];
        if (e->need_logits) {
            rc = tb_cu_d2d(b->xl + (size_t)n++ * b->hidden,
                           b->xn + (size_t)(e->start + e->n_tokens - 1) * b->hidden, hb,
                           b->stream, b->err, b->err_len);
        }
    }
    b->n_runs = 0;
    return rc || n == 0 ? rc : s_head(b, b->xl, (int)n);
}

/* Copies the logits rows to the caller: a decode step's rows are its entries' rows. */
static int s_fetch_logits(tb_backend_t *b, const struct tb_sched_plan *plan, bool decode,
                          float *logits)
{
    const size_t rb = (size_t)b->vocab * sizeof(float);
    int rc = TB_OK;
    if (!decode || plan->n_logits == plan->n_seqs) {
        rc = tb_cu_d2h(logits, b->logits, rb * plan->n_logits, b->stream, b->err, b->err_len);
    } else {
        uint32_t n = 0;
        for (uint32_t s = 0; rc == TB_OK && s < plan->n_seqs; s++) {
            if (plan->seqs[s].need_logits) {
                rc = tb_cu_d2h(logits + (size_t)n++ * b->vocab, b->logits + (size_t)s * b->vocab,
                               rb, b->stream, b->err, b->err_len);
            }
        }
    }
    return rc ? rc : tb_cu_stream_sync(b->stream, b->err, b->err_len);
}

static int s_forward(tb_backend_t *b, const struct tb_sched_plan *plan, float *logits, char *err,
                     size_t err_len)
{
    if (!b || !plan) {
        return tb_err_fail(err, err_len, TB_EINVAL, "cuda backend: missing argument");
    }
    if (plan->n_tokens == 0 && plan->n_seqs == 0) {
        return TB_OK;
    }
    if (plan->n_logits > 0 && !logits) {
        return tb_err_fail(err, err_len, TB_EINVAL,
                           "plan needs %u logits rows and no buffer was given", plan->n_logits);
    }
    const double t0 = s_now();
    b->err = err;
    b->err_len = err_len;
    bool decode = plan->n_seqs > 0 && plan->n_tokens == plan->n_seqs;
    int rc = decode ? s_decode(b, plan) : s_mixed(b, plan);
    if (rc == TB_OK) {
        rc = s_fetch_logits(b, plan, decode, logits);
    } else {
        (void)tb_cu_stream_sync(b->stream, NULL, 0); /* let queued work finish before reuse */
    }
    b->err = NULL;
    if (rc != TB_OK) {
        return rc;
    }
    b->stats.forwards++;
    b->stats.forward_seconds += s_now() - t0;
    return TB_OK;
}

static void s_describe(const tb_backend_t *b, char *buf, size_t len)
{
    if (!buf || len == 0) {
        return;
    }
    snprintf(buf, len,
             "%s on %s (sm_%d%d, %d SMs), weights %.1f MiB, KV cache %u blocks (%.1f MiB), "
             "scratch %.1f MiB, decode graphs %s, prefill GEMMs %s",
             tb_cu_impl(), b->dev.name, b->dev.cc_major, b->dev.cc_minor, b->dev.sm_count,
             (double)b->stats.weight_bytes / 1048576.0, b->n_blocks,
             (double)b->stats.kv_bytes / 1048576.0, (double)b->stats.scratch_bytes / 1048576.0,
             b->cc.cuda_graphs ? "on" : "off", b->blas ? "cuBLASLt" : "none (quantized weights)");
}

const struct tb_backend_ops tb_cuda_backend_ops = {
    .name = "cuda",
    .create = s_create,
    .forward = s_forward,
    .block_bytes = s_block_bytes,
    .destroy = s_destroy,
    .describe = s_describe,
};

void tb_cuda_backend_get_stats(const tb_backend_t *b, struct tb_cuda_backend_stats *out)
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
