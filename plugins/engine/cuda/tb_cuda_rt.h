/*
 * tb_cuda_rt.h - the slice of the CUDA runtime and of cuBLASLt that the CUDA backend uses, as
 * one small C API with two implementations:
 *  - tb_cuda_rt.c: the real thing.  cudart is linked statically; cuBLASLt is opened with dlopen
 *    by tb_cu_blas_new, i.e. only after a device was found, so the plugin loads (and refuses
 *    cleanly) on a machine without a GPU or without cuBLAS.
 *  - tb_cuda_rt_emu.cpp: the emulation (docs/engine-cuda.md).  "Device" memory is host memory
 *    from a budget (TB_CUDA_EMU_MEM bytes, default 4 GiB) so sizing and out-of-memory refusals
 *    behave as on a device; copies and launches are synchronous; a stream capturing a graph
 *    records each kernel launch with its arguments copied by value (tb_cuda_compat.h) and a
 *    replay runs the recorded launches, so a replay sees exactly what the GPU's would: the
 *    contents of the buffers at replay time, the launch arguments of capture time.  The GEMM
 *    is a plain reference loop (f32 accumulation, one fixed order per output).
 * The backend's source is the same for both; which one a program gets is decided at link time.
 *
 * Errors: every int function returns 0 or a TB_E* code and writes the reason, with the CUDA
 * error string where there is one, into `err` (`err_len` bytes; may be NULL).  Out of device
 * memory is TB_ENOMEM, no usable device TB_ENOTSUP, any other CUDA failure TB_EIO.
 *
 * Thread-safety: as the CUDA runtime (the backend drives one device from one thread).
 */
#ifndef TB_CUDA_RT_H
#define TB_CUDA_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_cu_stream tb_cu_stream_t; /* a cudaStream_t */
typedef struct tb_cu_graph tb_cu_graph_t;   /* an instantiated cudaGraphExec_t */
typedef struct tb_cu_blas tb_cu_blas_t;     /* a cuBLASLt handle and its workspace */

/* What the device is. */
struct tb_cu_device_info {
    char name[256];
    int cc_major, cc_minor;
    int driver_version, runtime_version; /* as cudaDriverGetVersion: 13000 is 13.0 */
    size_t total_mem;
    int sm_count;
};

/* "cuda" or "cuda-emulated": which implementation this program was linked with. */
const char *tb_cu_impl(void);

/* Finds device `device` and makes it current.  TB_ENOTSUP with "no CUDA device was found
 * (cudaGetDeviceCount: <the CUDA error>)" when there is none, or "device N does not exist
 * (M found)".  *info (may be NULL) receives its description. */
int tb_cu_open(int device, struct tb_cu_device_info *info, char *err, size_t err_len);

/* Free and total device memory now. */
int tb_cu_mem_info(size_t *free_bytes, size_t *total_bytes, char *err, size_t err_len);

/* Device memory, 256-byte aligned.  TB_ENOMEM names the size and the CUDA error. */
int tb_cu_malloc(void **p, size_t bytes, char *err, size_t err_len);
void tb_cu_free(void *p); /* NULL-safe */

/* Copies on `s` (NULL: synchronous); host buffers must stay valid until the stream syncs. */
int tb_cu_h2d(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
              size_t err_len);
int tb_cu_d2h(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
              size_t err_len);
int tb_cu_d2d(void *dst, const void *src, size_t bytes, tb_cu_stream_t *s, char *err,
              size_t err_len);
int tb_cu_memset(void *dst, int value, size_t bytes, tb_cu_stream_t *s, char *err,
                 size_t err_len);

int tb_cu_stream_new(tb_cu_stream_t **out, char *err, size_t err_len);
void tb_cu_stream_destroy(tb_cu_stream_t **s_p);
/* Waits for the stream's work; an asynchronous kernel fault surfaces here. */
int tb_cu_stream_sync(tb_cu_stream_t *s, char *err, size_t err_len);
/* The stream as the kernels' `void *stream` argument. */
void *tb_cu_stream_handle(tb_cu_stream_t *s);

/* A kernel launch function returned TB_EIO: takes the runtime's pending error and writes
 * "<what>: <the CUDA error>" into err.  Returns TB_EIO. */
int tb_cu_take_error(const char *what, char *err, size_t err_len);

/* Graph capture on `s`: every kernel launched on it between begin and end is recorded (not
 * run); end instantiates the graph.  No copies may be issued on a capturing stream. */
int tb_cu_capture_begin(tb_cu_stream_t *s, char *err, size_t err_len);
int tb_cu_capture_end(tb_cu_stream_t *s, tb_cu_graph_t **out, char *err, size_t err_len);
int tb_cu_graph_launch(tb_cu_graph_t *g, tb_cu_stream_t *s, char *err, size_t err_len);
void tb_cu_graph_destroy(tb_cu_graph_t **g_p);

/* cuBLASLt (real: libcublasLt opened now with dlopen; its absence is TB_ENOTSUP with the
 * dlopen message) with `workspace_bytes` of device workspace. */
int tb_cu_blas_new(size_t workspace_bytes, tb_cu_blas_t **out, char *err, size_t err_len);
void tb_cu_blas_destroy(tb_cu_blas_t **h_p);

/* Y[t][o] = sum_k X[t][k] * W[o][k] for t < n_tok, o < rows, k < cols: W row-major
 * (rows x cols), X n_tok rows (stride ldx elements), both of `dtype` (0 f32, 1 f16, 2 bf16, the
 * tb_cuda_dtype_t values), Y f32 (stride ldy), f32 accumulation (f32 inputs: full f32, no
 * TF32), on stream s. */
int tb_cu_gemm(tb_cu_blas_t *h, tb_cu_stream_t *s, int dtype, int64_t rows, int64_t cols,
               int n_tok, const void *w, const void *x, size_t ldx, float *y, size_t ldy,
               char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* TB_CUDA_RT_H */
