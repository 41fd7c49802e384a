/*
 * tb_cpu_weights.c - maps a loaded model's tensors onto the CPU kernels' weight descriptors
 * (borrowed, in their stored format) and f32 copies of the 1-D tensors.
 */
#include "tb_cpu_weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tb_cpu_moe.h"
#include "tb_errors.h"

#define PACK_ALIGN ((size_t)2 << 20) /* the packed copies start on a huge-page boundary */

int tb_cpu_weights_dtype(tb_dtype_t dt, tb_cpu_dtype_t *out)
{
    uint32_t ggml = tb_dtype_ggml_type(dt);
    return ggml == UINT32_MAX ? TB_ENOTSUP : tb_cpu_dtype_from_ggml(ggml, out);
}

/* Checks tensor `t` (named `name` for messages) against [rows, cols] and describes it. */
static int s_matrix(const struct tb_tensor *t, const char *name, uint64_t rows, uint64_t cols,
                    struct tb_cpu_weight *w, char *err, size_t err_len)
{
    if (!t || !t->data) {
        snprintf(err, err_len, "tensor '%s' is missing", name);
        return TB_EMODEL;
    }
    tb_cpu_dtype_t dt;
    if (tb_cpu_weights_dtype(t->dtype, &dt) != TB_OK) {
        snprintf(err, err_len, "tensor '%s': dtype %s is not supported by the cpu kernels",
                 t->name, tb_dtype_name(t->dtype));
        return TB_EMODEL;
    }
    if (t->rows != rows || t->cols != cols) {
        snprintf(err, err_len, "tensor '%s' has shape [%llu, %llu], expected [%llu, %llu]",
                 t->name, (unsigned long long)t->rows, (unsigned long long)t->cols,
                 (unsigned long long)rows, (unsigned long long)cols);
        return TB_EMODEL;
    }
    size_t rb = tb_cpu_dtype_row_bytes(dt, (int64_t)cols);
    if (rb == 0 || rb != t->row_bytes) {
        snprintf(err, err_len, "tensor '%s': rows of %llu %s values are not whole blocks",
                 t->name, (unsigned long long)cols, tb_dtype_name(t->dtype));
        return TB_EMODEL;
    }
    *w = (struct tb_cpu_weight){.dtype = dt,
                                .rows = (int64_t)rows,
                                .cols = (int64_t)cols,
                                .data = t->data};
    return TB_OK;
}

/* An f32 copy of 1-D tensor `t` of n values (owned by the caller in *out). */
static int s_vector(const struct tb_tensor *t, const char *name, uint64_t n, float **out,
                    char *err, size_t err_len)
{
    if (!t || !t->data) {
        snprintf(err, err_len, "tensor '%s' is missing", name);
        return TB_EMODEL;
    }
    tb_cpu_dtype_t dt;
    if (tb_cpu_weights_dtype(t->dtype, &dt) != TB_OK || t->rows * t->cols != n ||
        tb_cpu_dtype_row_bytes(dt, (int64_t)n) != t->size) {
        snprintf(err, err_len, "tensor '%s': expected %llu values, found %s [%llu, %llu]",
                 t->name, (unsigned long long)n, tb_dtype_name(t->dtype),
                 (unsigned long long)t->rows, (unsigned long long)t->cols);
        return TB_EMODEL;
    }
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    if (tb_cpu_dequantize_row(dt, t->data, v, (int64_t)n) != TB_OK) {
        free(v);
        snprintf(err, err_len, "tensor '%s': cannot decode %llu %s values", t->name,
                 (unsigned long long)n, tb_dtype_name(t->dtype));
        return TB_EMODEL;
    }
    *out = v;
    return TB_OK;
}

/* Gemma's HF norms multiply by 1 + weight: the stored vector becomes that factor. */
static void s_norm_plus_one(const struct tb_model_params *p, float *v, uint64_t n)
{
    for (uint64_t i = 0; p->norm_plus_one && i < n; i++) {
        v[i] += 1.0f;
    }
}

int tb_cpu_weights_matrix(const struct tb_tensor *t, const char *name, uint64_t rows,
                          uint64_t cols, struct tb_cpu_weight *w, char *err, size_t err_len)
{
    return s_matrix(t, name, rows, cols, w, err, err_len);
}

int tb_cpu_weights_vector(const struct tb_tensor *t, const char *name, uint64_t n, float **out,
                          char *err, size_t err_len)
{
    return s_vector(t, name, n, out, err, err_len);
}

static int s_layer(const tb_model_t *m, uint32_t l, struct tb_cpu_layer_weights *lw, char *err,
                   size_t err_len)
{
    const struct tb_model_params *p = tb_model_params(m);
    const uint64_t h = p->hidden, ff = p->intermediate;
    const uint64_t qd = (uint64_t)p->n_heads * p->head_dim;
    const uint64_t kvd = (uint64_t)p->n_kv_heads * p->head_dim;
    char name[48];
    const struct {
        tb_layer_tensor_t id;
        struct tb_cpu_weight *w;
        uint64_t rows, cols;
    } mats[] = {
        {TB_LAYER_WQ, &lw->wq, qd, h},         {TB_LAYER_WK, &lw->wk, kvd, h},
        {TB_LAYER_WV, &lw->wv, kvd, h},        {TB_LAYER_WO, &lw->wo, h, qd},
        {TB_LAYER_W_GATE, &lw->w_gate, ff, h}, {TB_LAYER_W_UP, &lw->w_up, ff, h},
        {TB_LAYER_W_DOWN, &lw->w_down, h, ff},
    };
    /* an expert layer has a router and experts (tb_cpu_moe.c) for the MLP; a dense layer of an
     * expert model (mlp_only_layers) its own MLP of `intermediate` width */
    const bool moe = tb_model_layer_is_moe(p, l);
    const size_t n_mats = moe ? 4 : sizeof mats / sizeof mats[0];
    for (size_t i = 0; i < n_mats; i++) {
        snprintf(name, sizeof name, "layers.%u.%s", l, tb_layer_tensor_name(mats[i].id));
        int rc = s_matrix(tb_model_layer_tensor(m, l, mats[i].id), name, mats[i].rows,
                          mats[i].cols, mats[i].w, err, err_len);
        if (rc != TB_OK) {
            return rc;
        }
    }
    const struct {
        tb_layer_tensor_t id;
        float **v;
        uint64_t n;
        bool present;
    } vecs[] = {
        {TB_LAYER_ATTN_NORM, &lw->attn_norm, h, true},
        {TB_LAYER_FFN_NORM, &lw->ffn_norm, h, true},
        {TB_LAYER_BQ, &lw->bq, qd, p->qkv_bias},
        {TB_LAYER_BK, &lw->bk, kvd, p->qkv_bias},
        {TB_LAYER_BV, &lw->bv, kvd, p->qkv_bias},
        {TB_LAYER_ATTN_POST_NORM, &lw->attn_post_norm, h, p->post_norms},
        {TB_LAYER_FFN_POST_NORM, &lw->ffn_post_norm, h, p->post_norms},
        {TB_LAYER_Q_NORM, &lw->q_norm, p->head_dim, p->qk_norm},
        {TB_LAYER_K_NORM, &lw->k_norm, p->head_dim, p->qk_norm},
    };
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        if (!vecs[i].present) {
            continue;
        }
        snprintf(name, sizeof name, "layers.%u.%s", l, tb_layer_tensor_name(vecs[i].id));
        int rc = s_vector(tb_model_layer_tensor(m, l, vecs[i].id), name, vecs[i].n, vecs[i].v,
                          err, err_len);
        if (rc != TB_OK) {
            return rc;
        }
        bool is_bias = vecs[i].id == TB_LAYER_BQ || vecs[i].id == TB_LAYER_BK ||
                       vecs[i].id == TB_LAYER_BV;
        if (!is_bias) {
            s_norm_plus_one(p, *vecs[i].v, vecs[i].n);
        }
    }
    return moe ? tb_cpu_moe_layer_new(m, l, &lw->moe, err, err_len) : TB_OK;
}

/* Every matrix of `w` (the output head last), for the packing pass. */
static size_t s_matrices(struct tb_cpu_weights *w, struct tb_cpu_weight **out, size_t cap)
{
    size_t n = 0;
    for (uint32_t l = 0; l < w->n_layers; l++) {
        struct tb_cpu_layer_weights *lw = &w->layers[l];
        struct tb_cpu_weight *m[] = {&lw->wq,     &lw->wk,   &lw->wv,    &lw->wo,
                                     &lw->w_gate, &lw->w_up, &lw->w_down};
        size_t n_m = lw->moe ? 4 : sizeof m / sizeof m[0];
        for (size_t i = 0; i < n_m && n < cap; i++) {
            out[n++] = m[i];
        }
        if (lw->moe) {
            n += tb_cpu_moe_layer_matrices(lw->moe, out + n, cap - n);
        }
    }
    if (n < cap) {
        out[n++] = &w->output;
    }
    return n;
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Releases the file pages of matrix `m`, now read only through its packed copy: the whole pages
 * inside its bytes (a page shared with a neighbouring tensor stays), when they are the model
 * file's mapping and not the token embedding's (which row lookups still read).  The pages would
 * read back from the file, but nothing touches them again.  Returns the bytes released. */
static size_t s_release(const tb_model_t *model, const struct tb_cpu_weights *w,
                        const struct tb_cpu_weight *m)
{
    size_t n = tb_cpu_dtype_row_bytes(m->dtype, m->cols) * (size_t)m->rows;
    long ps = sysconf(_SC_PAGESIZE);
    if (m->data == w->tok_embd.data || ps <= 0 || !tb_model_in_file_map(model, m->data, n)) {
        return 0;
    }
    uintptr_t a = (uintptr_t)m->data, e = a + n, page = (uintptr_t)ps;
    uintptr_t a0 = (a + page - 1) / page * page, e0 = e / page * page;
    if (e0 <= a0 || madvise((void *)a0, e0 - a0, MADV_DONTNEED) != 0) {
        return 0;
    }
    return e0 - a0;
}

/* Bytes of matrix m's copy in the packed allocation: its packed form, or for a float matrix
 * (F32, F16, BF16) its stored bytes as they are (64-byte multiple), or 0: m stays in the file
 * mapping (the other block types, and an output head that is the token embedding, whose file
 * pages the row lookups keep). */
static size_t s_copy_bytes(const struct tb_cpu_weights *w, const struct tb_cpu_weight *m)
{
    size_t pb = tb_cpu_weight_packed_bytes(m);
    if (pb > 0 || m->data == w->tok_embd.data) {
        return pb;
    }
    if (m->dtype != TB_CPU_F32 && m->dtype != TB_CPU_F16 && m->dtype != TB_CPU_BF16) {
        return 0;
    }
    return (tb_cpu_dtype_row_bytes(m->dtype, m->cols) * (size_t)m->rows + 63) / 64 * 64;
}

/* Packs every Q4_0, Q8_0, Q4_K, Q5_K, Q6_K and IQ4_XS matrix, and copies every float matrix
 * unchanged, into one allocation (huge pages when the kernel gives them: a batch-1 matmul
 * streams each float matrix once per token, and 2 MB pages spare it a TLB miss every 4 KB), and
 * releases the file pages those matrices came from. */
static int s_pack_all(const tb_model_t *model, struct tb_cpu_weights *w, char *err,
                      size_t err_len)
{
    const struct tb_model_params *p = tb_model_params(model);
    const double t0 = s_now();
    const size_t cap = (size_t)w->n_layers *
                           (7 + (p->n_experts ? tb_cpu_moe_matrix_count(p) : 0)) +
                       1;
    struct tb_cpu_weight **m = malloc(cap * sizeof(*m));
    if (!m) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    size_t n = s_matrices(w, m, cap);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += s_copy_bytes(w, m[i]);
    }
    int rc = TB_OK;
    if (total == 0) {
        goto done;
    }
    size_t alloc = (total + PACK_ALIGN - 1) / PACK_ALIGN * PACK_ALIGN;
    uint8_t *mem = aligned_alloc(PACK_ALIGN, alloc);
    if (!mem) {
        snprintf(err, err_len,
                 "out of memory for the packed and copied weights (%zu MB; "
                 "TB_CPU_REPACK=0 runs without them)",
                 alloc >> 20);
        rc = TB_ENOMEM;
        goto done;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(mem, alloc, MADV_HUGEPAGE); /* fewer TLB misses while streaming; optional */
#endif
    w->packed = mem;
    w->packed_bytes = total;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pb = s_copy_bytes(w, m[i]);
        if (pb == 0) {
            continue;
        }
        if (tb_cpu_weight_packed_bytes(m[i]) == 0) { /* a float matrix: the same bytes */
            memcpy(mem + off, m[i]->data,
                   tb_cpu_dtype_row_bytes(m[i]->dtype, m[i]->cols) * (size_t)m[i]->rows);
            w->released_bytes += s_release(model, w, m[i]);
            m[i]->data = mem + off;
            off += pb;
            continue;
        }
        rc = tb_cpu_weight_pack(m[i], mem + off, pb);
        if (rc != TB_OK) {
            snprintf(err, err_len, "cannot pack a quantized matrix");
            goto done;
        }
        m[i]->packed = mem + off;
        off += pb;
        w->released_bytes += s_release(model, w, m[i]);
    }
    w->pack_seconds = s_now() - t0;
done:
    free(m);
    return rc;
}

int tb_cpu_weights_new(const tb_model_t *model, unsigned flags, struct tb_cpu_weights **out,
                       char *err, size_t err_len)
{
    char dummy[1];
    if (!err || err_len == 0) {
        err = dummy;
        err_len = sizeof dummy;
    }
    int rc = TB_OK;
    struct tb_cpu_weights *w = NULL;
    if (!out || !model) {
        snprintf(err, err_len, "no model");
        rc = TB_EINVAL;
        goto done;
    }
    *out = NULL;
    const struct tb_model_params *p = tb_model_params(model);
    w = calloc(1, sizeof(*w));
    if (!w || !(w->layers = calloc(p->n_layers ? p->n_layers : 1, sizeof(*w->layers)))) {
        snprintf(err, err_len, "out of memory");
        rc = TB_ENOMEM;
        goto fail;
    }
    w->n_layers = p->n_layers;
    rc = s_matrix(tb_model_tensor(model, TB_TENSOR_TOK_EMBD), "tok_embd", p->vocab, p->hidden,
                  &w->tok_embd, err, err_len);
    if (rc != TB_OK) {
        goto fail;
    }
    rc = s_matrix(tb_model_tensor(model, TB_TENSOR_OUTPUT), "output", p->vocab, p->hidden,
                  &w->output, err, err_len);
    if (rc != TB_OK) {
        goto fail;
    }
    rc = s_vector(tb_model_tensor(model, TB_TENSOR_OUT_NORM), "out_norm", p->hidden, &w->out_norm,
                  err, err_len);
    if (rc != TB_OK) {
        goto fail;
    }
    s_norm_plus_one(p, w->out_norm, p->hidden);
    for (uint32_t l = 0; l < p->n_layers; l++) {
        rc = s_layer(model, l, &w->layers[l], err, err_len);
        if (rc != TB_OK) {
            goto fail;
        }
    }
    for (size_t i = 0; i < tb_model_tensor_count(model); i++) {
        const struct tb_tensor *t = tb_model_tensor_at(model, i);
        if (t && (unsigned)t->dtype < TB_DTYPE_COUNT) {
            w->dtype_tensors[t->dtype]++;
        }
    }
    if (flags & TB_CPU_WEIGHTS_PACK) {
        rc = s_pack_all(model, w, err, err_len);
        if (rc != TB_OK) {
            goto fail;
        }
    }
    *out = w;
    goto done;

fail:
    tb_cpu_weights_destroy(&w);
done:
    return rc;
}

void tb_cpu_weights_destroy(struct tb_cpu_weights **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    struct tb_cpu_weights *w = *self_p;
    if (w->layers) {
        for (uint32_t l = 0; l < w->n_layers; l++) {
            struct tb_cpu_layer_weights *lw = &w->layers[l];
            free(lw->attn_norm);
            free(lw->ffn_norm);
            free(lw->bq);
            free(lw->bk);
            free(lw->bv);
            free(lw->attn_post_norm);
            free(lw->ffn_post_norm);
            free(lw->q_norm);
            free(lw->k_norm);
            tb_cpu_moe_layer_destroy(&lw->moe);
        }
    }
    free(w->layers);
    free(w->out_norm);
    free(w->packed);
    free(w);
    *self_p = NULL;
}
