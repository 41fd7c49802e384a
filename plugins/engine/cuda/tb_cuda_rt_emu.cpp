/*
 * tb_cuda_rt_emu.cpp - tb_cuda_rt.h emulated on the host (see there): device memory from a
 * byte budget, synchronous copies, graphs as lists of recorded launches replayed in order, and
 * a reference GEMM.  Part of libtb_cuda_emu.a with the emulated kernels.
 *
 * Mutable state: the budget's use (an atomic counter).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <vector>

#include "tb_cuda_compat.h"
#include "tb_cuda_kernels.h"
#include "tb_cuda_rt.h"
#include "tb_errors.h"

struct tb_cu_stream {
    bool capturing;
    std::vector<tb_emu_node> nodes;
};

struct tb_cu_graph {
    std::vector<tb_emu_node> nodes;
};

struct tb_cu_blas {
    size_t workspace;
};

/* Every allocation carries its size in front of the returned pointer, for the budget. */
#define EMU_HDR 256
static std::atomic<size_t> s_used{0};

__attribute__((format(printf, 3, 4))) static void s_err(char *err, size_t len, const char *fmt,
                                                        ...)
{
    if (err && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, len, fmt, ap);
        va_end(ap);
    }
}

static size_t s_budget(void)
{
    const char *v = getenv("TB_CUDA_EMU_MEM");
    if (v && *v) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (!errno && end != v && *end == '\0') {
            return (size_t)n;
        }
    }
    return (size_t)4 << 30;
}

extern "C" const char *tb_cu_impl(void)
{
    return "cuda-emulated";
}

extern "C" int tb_cu_open(int device, struct tb_cu_device_info *info, char *err, size_t err_len)
{
    if (device != 0) {
        s_err(err, err_len, "device %d does not exist (1 found)", device);
        return TB_ENOTSUP;
    }
    if (info) {
        memset(info, 0, sizeof(*info));
        snprintf(info->name, sizeof info->name, "emulated device (host CPU)");
        info->cc_major = 9;
        info->total_mem = s_budget();
        info->sm_count = 1;
    }
    return TB_OK;
}

extern "C" int tb_cu_mem_info(size_t *free_bytes, size_t *total_bytes, char *err, size_t err_len)
{
    (void)err;
    (void)err_len;
    const size_t total = s_budget(), used = s_used.load();
    if (free_bytes) {
        *free_bytes = used < total ? total - used : 0;
    }
    if (total_bytes) {
        *total_bytes = total;
    }
    return TB_OK;
}

extern "C" int tb_cu_malloc(void **p, size_t bytes, char *err, size_t err_len)
{
    *p = NULL;
    const size_t total = s_budget();
    size_t used = s_used.fetch_add(bytes);
    if (bytes > total || used > total - bytes) {
        s_used.fetch_sub(bytes);
        s_err(err, err_len, "cudaMalloc of %zu bytes: out of memory (emulated device)", bytes);
        return TB_ENOMEM;
    }
    unsigned char *m = static_cast<unsigned char *>(
        aligned_alloc(256, EMU_HDR + (bytes + 255) / 256 * 256));
    if (!m) {
        s_used.fetch_sub(bytes);
        s_err(err, err_len, "cudaMalloc of %zu bytes: out of host memory (emulated device)",
              bytes);
        return TB_ENOMEM;
    }
    memcpy(m, &bytes, sizeof bytes);
    memset(m + EMU_HDR, 0xa5, bytes); /* device memory starts as garbage, not zeros */
    *p = m + EMU_HDR;
    return TB_OK;
}

extern "C" void tb_cu_free(void *p)
{
    if (!p) {
        return;
    }
    unsigned char *m = static_cast<unsigned char *>(p) - EMU_HDR;
    size_t bytes;
    memcpy(&bytes, m, sizeof bytes);
    s_used.fetch_sub(bytes);
    free(m);
}

static int s_copy(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
                  size_t err_len)
{
    if (s && s->capturing) {
        s_err(err, err_len, "copy of %zu bytes issued on a capturing stream", bytes);
        return TB_EINVAL;
    }
    if (bytes) {
        memmove(dst, src, bytes);
    }
    return TB_OK;
}

extern "C" int tb_cu_h2d(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
                         size_t err_len)
{
    return s_copy(dst, src, bytes, s, err, err_len);
}

extern "C" int tb_cu_d2h(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
                         size_t err_len)
{
    return s_copy(dst, src, bytes, s, err, err_len);
}

extern "C" int tb_cu_d2d(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
                         size_t err_len)
{
    return s_copy(dst, src, bytes, s, err, err_len);
}

extern "C" int tb_cu_memset(void *dst, int value, size_t bytes, tb_cu_stream_t *s, char *err,
                            size_t err_len)
{
    if (s && s->capturing) {
        s_err(err, err_len, "memset of %zu bytes issued on a capturing stream", bytes);
        return TB_EINVAL;
    }
    memset(dst, value, bytes);
    return TB_OK;
}

extern "C" int tb_cu_stream_new(tb_cu_stream_t **out, char *err, size_t err_len)
{
    *out = new (std::nothrow) tb_cu_stream();
    if (!*out) {
        s_err(err, err_len, "cannot create a stream");
        return TB_ENOMEM;
    }
    return TB_OK;
}

static void s_free_nodes(std::vector<tb_emu_node> &nodes)
{
    for (tb_emu_node &n : nodes) {
        n.destroy(n.call);
    }
    nodes.clear();
}

extern "C" void tb_cu_stream_destroy(tb_cu_stream_t **s_p)
{
    if (!s_p || !*s_p) {
        return;
    }
    s_free_nodes((*s_p)->nodes);
    delete *s_p;
    *s_p = NULL;
}

extern "C" int tb_cu_stream_sync(tb_cu_stream_t *s, char *err, size_t err_len)
{
    (void)s;
    (void)err;
    (void)err_len;
    return TB_OK;
}

extern "C" void *tb_cu_stream_handle(tb_cu_stream_t *s)
{
    return s;
}

extern "C" int tb_cu_take_error(const char *what, char *err, size_t err_len)
{
    s_err(err, err_len, "%s: emulated kernel launch failed", what);
    return TB_EIO;
}

/* The compat header's hook: a launch on a capturing stream becomes a graph node. */
extern "C" int tb_emu_stream_record(tb_stream_t stream, const struct tb_emu_node *node)
{
    tb_cu_stream_t *s = static_cast<tb_cu_stream_t *>(stream);
    if (!s->capturing) {
        return 0;
    }
    s->nodes.push_back(*node);
    return 1;
}

extern "C" int tb_cu_capture_begin(tb_cu_stream_t *s, char *err, size_t err_len)
{
    if (s->capturing) {
        s_err(err, err_len, "stream is already capturing");
        return TB_EINVAL;
    }
    s->capturing = true;
    return TB_OK;
}

extern "C" int tb_cu_capture_end(tb_cu_stream_t *s, tb_cu_graph_t **out, char *err,
                                 size_t err_len)
{
    *out = NULL;
    if (!s->capturing) {
        s_err(err, err_len, "stream is not capturing");
        return TB_EINVAL;
    }
    s->capturing = false;
    tb_cu_graph_t *g = new (std::nothrow) tb_cu_graph();
    if (!g) {
        s_free_nodes(s->nodes);
        s_err(err, err_len, "cannot instantiate a graph");
        return TB_ENOMEM;
    }
    g->nodes.swap(s->nodes);
    *out = g;
    return TB_OK;
}

extern "C" int tb_cu_graph_launch(tb_cu_graph_t *g, tb_cu_stream_t *s, char *err, size_t err_len)
{
    if (s && s->capturing) {
        s_err(err, err_len, "graph launched on a capturing stream");
        return TB_EINVAL;
    }
    for (const tb_emu_node &n : g->nodes) {
        if (tb_emu_run(n.grid, n.block, n.shmem, n.run, n.call) != 0) {
            s_err(err, err_len, "a replayed launch failed");
            return TB_EIO;
        }
    }
    return TB_OK;
}

extern "C" void tb_cu_graph_destroy(tb_cu_graph_t **g_p)
{
    if (!g_p || !*g_p) {
        return;
    }
    s_free_nodes((*g_p)->nodes);
    delete *g_p;
    *g_p = NULL;
}

extern "C" int tb_cu_blas_new(size_t workspace_bytes, tb_cu_blas_t **out, char *err,
                              size_t err_len)
{
    *out = new (std::nothrow) tb_cu_blas{workspace_bytes};
    if (!*out) {
        s_err(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    return TB_OK;
}

extern "C" void tb_cu_blas_destroy(tb_cu_blas_t **h_p)
{
    if (h_p) {
        delete *h_p;
        *h_p = NULL;
    }
}

static inline float s_elem(int dtype, const void *p, size_t i)
{
    if (dtype == TB_CUDA_F32) {
        return static_cast<const float *>(p)[i];
    }
    const uint16_t h = static_cast<const uint16_t *>(p)[i];
    return dtype == TB_CUDA_F16 ? tb_f16_to_f32(h) : tb_bf16_to_f32(h);
}

extern "C" int tb_cu_gemm(tb_cu_blas_t *h, tb_cu_stream_t *s, int dtype, int64_t rows,
                          int64_t cols, int n_tok, const void *w, const void *x, size_t ldx,
                          float *y, size_t ldy, char *err, size_t err_len)
{
    if (!h || !w || !x || !y || rows < 1 || cols < 1 || n_tok < 0 || ldx < (size_t)cols ||
        ldy < (size_t)rows || dtype < TB_CUDA_F32 || dtype > TB_CUDA_BF16 ||
        (s && s->capturing)) {
        s_err(err, err_len, "gemm: invalid arguments");
        return TB_EINVAL;
    }
    for (int t = 0; t < n_tok; t++) {
        for (int64_t o = 0; o < rows; o++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < cols; k++) {
                acc += s_elem(dtype, w, (size_t)(o * cols + k)) *
                       s_elem(dtype, x, (size_t)t * ldx + (size_t)k);
            }
            y[(size_t)t * ldy + (size_t)o] = acc;
        }
    }
    return TB_OK;
}
