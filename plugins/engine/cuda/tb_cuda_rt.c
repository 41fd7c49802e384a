/*
 * tb_cuda_rt.c - tb_cuda_rt.h over the CUDA runtime (linked statically, so the plugin needs no
 * libcudart at run time) and cuBLASLt, opened with dlopen by tb_cu_blas_new only: loading the
 * plugin, and refusing on a machine without a device, touch neither cuBLAS nor the driver's
 * allocations beyond cudaGetDeviceCount.
 *
 * Mutable state: none of its own (the CUDA runtime's).
 */
#include "tb_cuda_rt.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_cuda_kernels.h"
#include "tb_errors.h"

struct tb_cu_graph {
    cudaGraphExec_t exec;
};

/* The cuBLASLt entry points we use, resolved from the library at run time. */
struct lt_api {
    __typeof__(cublasLtCreate) *create;
    __typeof__(cublasLtDestroy) *destroy;
    __typeof__(cublasLtMatmulDescCreate) *desc_create;
    __typeof__(cublasLtMatmulDescDestroy) *desc_destroy;
    __typeof__(cublasLtMatmulDescSetAttribute) *desc_set;
    __typeof__(cublasLtMatrixLayoutCreate) *layout_create;
    __typeof__(cublasLtMatrixLayoutDestroy) *layout_destroy;
    __typeof__(cublasLtMatmulPreferenceCreate) *pref_create;
    __typeof__(cublasLtMatmulPreferenceDestroy) *pref_destroy;
    __typeof__(cublasLtMatmulPreferenceSetAttribute) *pref_set;
    __typeof__(cublasLtMatmulAlgoGetHeuristic) *heuristic;
    __typeof__(cublasLtMatmul) *matmul;
};

struct tb_cu_blas {
    void *lib;
    struct lt_api f;
    cublasLtHandle_t handle;
    void *workspace;
    size_t workspace_bytes;
};

static int s_cuda(cudaError_t e, const char *what, char *err, size_t err_len)
{
    if (e == cudaSuccess) {
        return TB_OK;
    }
    tb_err_set(err, err_len, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return e == cudaErrorMemoryAllocation ? TB_ENOMEM : TB_EIO;
}

const char *tb_cu_impl(void)
{
    return "cuda";
}

int tb_cu_open(int device, struct tb_cu_device_info *info, char *err, size_t err_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        const char *why = e != cudaSuccess ? cudaGetErrorString(e) : "no device reported";
        (void)cudaGetLastError();
        return tb_err_fail(err, err_len, TB_ENOTSUP,
                           "no CUDA device was found (cudaGetDeviceCount: %s)", why);
    }
    if (device < 0 || device >= n) {
        return tb_err_fail(err, err_len, TB_ENOTSUP, "CUDA device %d does not exist (%d found)",
                           device, n);
    }
    int rc = s_cuda(cudaSetDevice(device), "cudaSetDevice", err, err_len);
    if (rc != TB_OK || !info) {
        return rc;
    }
    struct cudaDeviceProp prop;
    rc = s_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties", err, err_len);
    if (rc != TB_OK) {
        return rc;
    }
    memset(info, 0, sizeof(*info));
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    info->cc_major = prop.major;
    info->cc_minor = prop.minor;
    info->total_mem = prop.totalGlobalMem;
    info->sm_count = prop.multiProcessorCount;
    (void)cudaDriverGetVersion(&info->driver_version);
    (void)cudaRuntimeGetVersion(&info->runtime_version);
    return TB_OK;
}

int tb_cu_mem_info(size_t *free_bytes, size_t *total_bytes, char *err, size_t err_len)
{
    size_t f = 0, t = 0;
    int rc = s_cuda(cudaMemGetInfo(&f, &t), "cudaMemGetInfo", err, err_len);
    if (free_bytes) {
        *free_bytes = f;
    }
    if (total_bytes) {
        *total_bytes = t;
    }
    return rc;
}

int tb_cu_malloc(void **p, size_t bytes, char *err, size_t err_len)
{
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *p = NULL;
        tb_err_set(err, err_len, "cudaMalloc of %zu bytes: %s", bytes, cudaGetErrorString(e));
        return e == cudaErrorMemoryAllocation ? TB_ENOMEM : TB_EIO;
    }
    return TB_OK;
}

void tb_cu_free(void *p)
{
    if (p) {
        (void)cudaFree(p);
    }
}

static cudaStream_t s_st(tb_cu_stream_t *s)
{
    return (cudaStream_t)s;
}

static int s_copy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                  tb_cu_stream_t *s, char *err, size_t err_len)
{
    if (bytes == 0) {
        return TB_OK;
    }
    cudaError_t e = s ? cudaMemcpyAsync(dst, src, bytes, kind, s_st(s))
                      : cudaMemcpy(dst, src, bytes, kind);
    return s_cuda(e, "cudaMemcpy", err, err_len);
}

int tb_cu_h2d(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
              size_t err_len)
{
    return s_copy(dst, src, bytes, cudaMemcpyHostToDevice, s, err, err_len);
}

int tb_cu_d2h(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
              size_t err_len)
{
    return s_copy(dst, src, bytes, cudaMemcpyDeviceToHost, s, err, err_len);
}

int tb_cu_d2d(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
              size_t err_len)
{
    return s_copy(dst, src, bytes, cudaMemcpyDeviceToDevice, s, err, err_len);
}

int tb_cu_memset(void *dst, int value, size_t bytes, tb_cu_stream_t *s, char *err, size_t err_len)
{
    cudaError_t e = s ? cudaMemsetAsync(dst, value, bytes, s_st(s))
                      : cudaMemset(dst, value, bytes);
    return s_cuda(e, "cudaMemset", err, err_len);
}

int tb_cu_stream_new(tb_cu_stream_t **out, char *err, size_t err_len)
{
    cudaStream_t st = NULL;
    int rc = s_cuda(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreate",
                    err, err_len);
    *out = rc == TB_OK ? (tb_cu_stream_t *)st : NULL;
    return rc;
}

void tb_cu_stream_destroy(tb_cu_stream_t **s_p)
{
    if (s_p && *s_p) {
        (void)cudaStreamDestroy(s_st(*s_p));
        *s_p = NULL;
    }
}

int tb_cu_stream_sync(tb_cu_stream_t *s, char *err, size_t err_len)
{
    return s_cuda(s ? cudaStreamSynchronize(s_st(s)) : cudaDeviceSynchronize(),
                  "kernel execution", err, err_len);
}

void *tb_cu_stream_handle(tb_cu_stream_t *s)
{
    return s;
}

int tb_cu_take_error(const char *what, char *err, size_t err_len)
{
    cudaError_t e = cudaGetLastError();
    tb_err_set(err, err_len, "%s: %s", what,
               e != cudaSuccess ? cudaGetErrorString(e) : "launch failed");
    return TB_EIO;
}

int tb_cu_capture_begin(tb_cu_stream_t *s, char *err, size_t err_len)
{
    return s_cuda(cudaStreamBeginCapture(s_st(s), cudaStreamCaptureModeThreadLocal),
                  "cudaStreamBeginCapture", err, err_len);
}

int tb_cu_capture_end(tb_cu_stream_t *s, tb_cu_graph_t **out, char *err, size_t err_len)
{
    *out = NULL;
    cudaGraph_t g = NULL;
    int rc = s_cuda(cudaStreamEndCapture(s_st(s), &g), "cudaStreamEndCapture", err, err_len);
    if (rc != TB_OK) {
        return rc;
    }
    cudaGraphExec_t exec = NULL;
    rc = s_cuda(cudaGraphInstantiate(&exec, g, 0), "cudaGraphInstantiate", err, err_len);
    (void)cudaGraphDestroy(g);
    if (rc != TB_OK) {
        return rc;
    }
    tb_cu_graph_t *r = malloc(sizeof(*r));
    if (!r) {
        (void)cudaGraphExecDestroy(exec);
        return tb_err_fail(err, err_len, TB_ENOMEM, "out of host memory");
    }
    r->exec = exec;
    *out = r;
    return TB_OK;
}

int tb_cu_graph_launch(tb_cu_graph_t *g, tb_cu_stream_t *s, char *err, size_t err_len)
{
    return s_cuda(cudaGraphLaunch(g->exec, s_st(s)), "cudaGraphLaunch", err, err_len);
}

void tb_cu_graph_destroy(tb_cu_graph_t **g_p)
{
    if (g_p && *g_p) {
        (void)cudaGraphExecDestroy((*g_p)->exec);
        free(*g_p);
        *g_p = NULL;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* cuBLASLt through dlopen                                                                     */
/* ------------------------------------------------------------------------------------------ */

static int s_resolve(struct tb_cu_blas *h, char *err, size_t err_len)
{
    const char *names[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !h->lib; i++) {
        h->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    }
    if (!h->lib) {
        return tb_err_fail(err, err_len, TB_ENOTSUP, "cannot open cuBLASLt: %s", dlerror());
    }
    struct {
        void **slot;
        const char *sym;
    } syms[] = {
        {(void **)&h->f.create, "cublasLtCreate"},
        {(void **)&h->f.destroy, "cublasLtDestroy"},
        {(void **)&h->f.desc_create, "cublasLtMatmulDescCreate"},
        {(void **)&h->f.desc_destroy, "cublasLtMatmulDescDestroy"},
        {(void **)&h->f.desc_set, "cublasLtMatmulDescSetAttribute"},
        {(void **)&h->f.layout_create, "cublasLtMatrixLayoutCreate"},
        {(void **)&h->f.layout_destroy, "cublasLtMatrixLayoutDestroy"},
        {(void **)&h->f.pref_create, "cublasLtMatmulPreferenceCreate"},
        {(void **)&h->f.pref_destroy, "cublasLtMatmulPreferenceDestroy"},
        {(void **)&h->f.pref_set, "cublasLtMatmulPreferenceSetAttribute"},
        {(void **)&h->f.heuristic, "cublasLtMatmulAlgoGetHeuristic"},
        {(void **)&h->f.matmul, "cublasLtMatmul"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(h->lib, syms[i].sym);
        if (!*syms[i].slot) {
            return tb_err_fail(err, err_len, TB_ENOTSUP, "cuBLASLt lacks %s", syms[i].sym);
        }
    }
    return TB_OK;
}

int tb_cu_blas_new(size_t workspace_bytes, tb_cu_blas_t **out, char *err, size_t err_len)
{
    *out = NULL;
    struct tb_cu_blas *h = calloc(1, sizeof(*h));
    if (!h) {
        return tb_err_fail(err, err_len, TB_ENOMEM, "out of host memory");
    }
    int rc = s_resolve(h, err, err_len);
    if (rc == TB_OK && h->f.create(&h->handle) != CUBLAS_STATUS_SUCCESS) {
        rc = tb_err_fail(err, err_len, TB_EIO, "cublasLtCreate failed");
        h->handle = NULL;
    }
    if (rc == TB_OK) {
        rc = tb_cu_malloc(&h->workspace, workspace_bytes, err, err_len);
        h->workspace_bytes = rc == TB_OK ? workspace_bytes : 0;
    }
    if (rc != TB_OK) {
        tb_cu_blas_destroy(&h);
        return rc;
    }
    *out = h;
    return TB_OK;
}

void tb_cu_blas_destroy(tb_cu_blas_t **h_p)
{
    if (!h_p || !*h_p) {
        return;
    }
    struct tb_cu_blas *h = *h_p;
    tb_cu_free(h->workspace);
    if (h->handle) {
        h->f.destroy(h->handle);
    }
    if (h->lib) {
        dlclose(h->lib);
    }
    free(h);
    *h_p = NULL;
}

static cudaDataType_t s_type(int dtype)
{
    return dtype == TB_CUDA_F16 ? CUDA_R_16F : dtype == TB_CUDA_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* Column-major view: Y^T (rows x n_tok, ld ldy) = W^T^T (A: cols x rows, transposed) times
 * X^T (B: cols x n_tok, ld ldx). */
int tb_cu_gemm(tb_cu_blas_t *h, tb_cu_stream_t *s, int dtype, int64_t rows, int64_t cols,
               int n_tok, const void *w, const void *x, size_t ldx, float *y, size_t ldy,
               char *err, size_t err_len)
{
    if (!h || !w || !x || !y || rows < 1 || cols < 1 || n_tok < 0 || ldx < (size_t)cols ||
        ldy < (size_t)rows || dtype < TB_CUDA_F32 || dtype > TB_CUDA_BF16) {
        return tb_err_fail(err, err_len, TB_EINVAL, "gemm: invalid arguments");
    }
    if (n_tok == 0) {
        return TB_OK;
    }
    const struct lt_api *f = &h->f;
    const cudaDataType_t t = s_type(dtype);
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t algo;
    int found = 0;
    const cublasOperation_t op_t = CUBLAS_OP_T;
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t st = f->desc_create(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    st = st ? st : f->desc_set(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t);
    st = st ? st : f->layout_create(&la, t, (uint64_t)cols, (uint64_t)rows, cols);
    st = st ? st : f->layout_create(&lb, t, (uint64_t)cols, (uint64_t)n_tok, (int64_t)ldx);
    st = st ? st
            : f->layout_create(&lc, CUDA_R_32F, (uint64_t)rows, (uint64_t)n_tok, (int64_t)ldy);
    st = st ? st : f->pref_create(&pref);
    st = st ? st
            : f->pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &h->workspace_bytes,
                          sizeof h->workspace_bytes);
    st = st ? st : f->heuristic(h->handle, desc, la, lb, lc, lc, pref, 1, &algo, &found);
    if (st == CUBLAS_STATUS_SUCCESS && found < 1) {
        st = CUBLAS_STATUS_NOT_SUPPORTED;
    }
    st = st ? st
            : f->matmul(h->handle, desc, &alpha, w, la, x, lb, &beta, y, lc, y, lc, &algo.algo,
                        h->workspace, h->workspace_bytes, s_st(s));
    if (pref) {
        f->pref_destroy(pref);
    }
    if (lc) {
        f->layout_destroy(lc);
    }
    if (lb) {
        f->layout_destroy(lb);
    }
    if (la) {
        f->layout_destroy(la);
    }
    if (desc) {
        f->desc_destroy(desc);
    }
    if (st != CUBLAS_STATUS_SUCCESS) {
        return tb_err_fail(err, err_len, TB_EIO, "cuBLASLt matmul %lldx%lldx%d: status %d",
                           (long long)rows, (long long)cols, n_tok, (int)st);
    }
    return TB_OK;
}
