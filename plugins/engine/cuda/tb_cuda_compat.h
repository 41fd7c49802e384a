/*
 * tb_cuda_compat.h - lets one kernel source compile with nvcc for the GPU and with the host C++
 * compiler (g++ -x c++ -std=c++17) as an emulation that runs on the CPU under sanitizers.
 *
 * Under __CUDACC__ this header only includes the CUDA runtime and defines the few names below
 * (tb_launch, TB_SHARED, TB_DYNAMIC_SHARED, the f16/bf16 helpers).  Otherwise it emulates the
 * subset of CUDA that our kernels use:
 *
 *  - Threads: tb_launch runs the grid one block at a time; a block is blockDim host threads
 *    (pthreads, created once per launch and reused for every block).  threadIdx, blockIdx,
 *    blockDim and gridDim are thread-local variables.  The launch is synchronous; streams are
 *    ignored.
 *  - __syncthreads is a barrier over the block's threads (mutex + condition variable, so TSan
 *    sees the happens-before edges it creates and nothing more: a missing barrier between a
 *    shared-memory write and another thread's read is a TSan report).  Every thread of a block
 *    must reach every barrier: a block may return early only as a whole.  A thread that
 *    finishes the block while others wait in __syncthreads is reported and aborts, instead of
 *    silently pairing with the wrong barrier.
 *  - Shared memory: TB_SHARED(T, name, n) declares a block-shared array.  In the emulation
 *    every thread of the block gets the same address because each thread carves its arrays,
 *    in declaration order, from the block's arena (48 KiB, the static limit on the GPU).
 *    TB_DYNAMIC_SHARED(T, name) is the launch's dynamic shared memory.
 *  - Warps are 32 consecutive threads (threadIdx.x fastest).  __shfl_xor_sync,
 *    __shfl_down_sync and __shfl_sync go through a per-lane exchange slot and a warp barrier;
 *    every lane of the warp must take part (partial masks are not emulated: a mask that leaves
 *    out the calling lane aborts).  __syncwarp is the warp barrier.
 *  - Atomics (atomicAdd, atomicMax) are GCC __atomic builtins; __dp4a is four int8 products.
 *  - uint4, int4, float4, float2 carry the GPU's alignment, so UBSan flags a misaligned 128-bit
 *    access that would fault on the device.
 *
 * Mutable state: the emulation's thread-locals (the CUDA built-in variables and the current
 * block); the GPU build has none.  Kernels are plain C++17 in both builds.
 */
#ifndef TB_CUDA_COMPAT_H
#define TB_CUDA_COMPAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
/* ------------------------------------------------------------------------------------------ */
/* The real thing                                                                              */
/* ------------------------------------------------------------------------------------------ */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define TB_EMULATED 0
#define TB_DEV __device__ __forceinline__
#define TB_UNROLL _Pragma("unroll")
#define TB_SHARED(T, name, n) __shared__ T name[n]
#define TB_DYNAMIC_SHARED(T, name)                                                                \
    extern __shared__ __align__(16) unsigned char tb_dyn_smem_[];                                 \
    T *name = reinterpret_cast<T *>(tb_dyn_smem_)

typedef cudaStream_t tb_stream_t;

/* Launches `kernel` on `stream`; returns 0 or the launch error (cudaError_t, > 0). */
template <typename... P, typename... A>
static inline int tb_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem,
                            tb_stream_t stream, A... args) {
    kernel<<<grid, block, shmem, stream>>>(args...);
    return (int)cudaGetLastError();
}

TB_DEV float tb_f16_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }
TB_DEV uint16_t tb_f32_to_f16(float f) { return __half_as_ushort(__float2half_rn(f)); }
TB_DEV float tb_bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

#else
/* ------------------------------------------------------------------------------------------ */
/* Host emulation                                                                              */
/* ------------------------------------------------------------------------------------------ */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tuple>
#include <type_traits>

#define TB_EMULATED 1
#define TB_DEV static inline
#define TB_UNROLL
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __ldg(p) (*(p))
#define warpSize 32

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

typedef void *tb_stream_t;

#define TB_EMU_MAX_THREADS 1024
#define TB_EMU_SHARED_BYTES (48 * 1024)

/* A reusable barrier; `site` tells a __syncthreads from the end of a block (see above). */
struct tb_emu_barrier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned count, waiting, gen;
    int site;
};

enum { TB_EMU_SITE_SYNC = 1, TB_EMU_SITE_END = 2 };

/* One block's state, shared by its threads. */
struct tb_emu_block {
    tb_emu_barrier bar;                        /* all the block's threads */
    tb_emu_barrier warp_bar[TB_EMU_MAX_THREADS / 32];
    uint64_t xchg[TB_EMU_MAX_THREADS];         /* one shuffle slot per thread */
    alignas(16) unsigned char shared[TB_EMU_SHARED_BYTES];
    unsigned char *dynamic;                    /* the launch's dynamic shared memory */
};

inline thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0), blockDim, gridDim;
inline thread_local tb_emu_block *tb_emu_cur;
inline thread_local size_t tb_emu_shared_off; /* this thread's next free arena byte */

[[noreturn]] static inline void tb_emu_die(const char *what) {
    fprintf(stderr, "tb_cuda emulation: %s\n", what);
    abort();
}

static inline void tb_emu_barrier_init(tb_emu_barrier *b, unsigned count) {
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->count = count;
    b->waiting = 0;
    b->gen = 0;
    b->site = 0;
}

static inline void tb_emu_barrier_release(tb_emu_barrier *b) {
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

static inline void tb_emu_barrier_wait(tb_emu_barrier *b, int site) {
    pthread_mutex_lock(&b->mu);
    if (b->waiting == 0) {
        b->site = site;
    } else if (b->site != site) {
        tb_emu_die("threads of one block reached different barriers (a thread returned early "
                   "or __syncthreads sits in divergent code)");
    }
    if (++b->waiting == b->count) {
        b->waiting = 0;
        b->gen++;
        pthread_cond_broadcast(&b->cv);
    } else {
        unsigned gen = b->gen;
        while (gen == b->gen) {
            pthread_cond_wait(&b->cv, &b->mu);
        }
    }
    pthread_mutex_unlock(&b->mu);
}

static inline unsigned tb_emu_tid(void) {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

static inline void __syncthreads(void) { tb_emu_barrier_wait(&tb_emu_cur->bar, TB_EMU_SITE_SYNC); }

static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    tb_emu_barrier_wait(&tb_emu_cur->warp_bar[tb_emu_tid() / 32], TB_EMU_SITE_SYNC);
}

static inline void *tb_emu_shared_take(size_t bytes, size_t align) {
    size_t off = (tb_emu_shared_off + align - 1) & ~(align - 1);
    if (off + bytes > TB_EMU_SHARED_BYTES) {
        tb_emu_die("static shared memory beyond 48 KiB");
    }
    tb_emu_shared_off = off + bytes;
    return tb_emu_cur->shared + off;
}

#define TB_SHARED(T, name, n) T *name = static_cast<T *>(tb_emu_shared_take(sizeof(T) * (n), alignof(T)))
#define TB_DYNAMIC_SHARED(T, name) T *name = reinterpret_cast<T *>(tb_emu_cur->dynamic)

/* Lane `src` of this thread's warp (its own lane when `src` is outside the warp). */
template <typename T> static inline T tb_emu_exchange(unsigned mask, T v, int src) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
    unsigned tid = tb_emu_tid();
    unsigned lane = tid % 32, base = tid - lane;
    if (!(mask & (1u << lane))) {
        tb_emu_die("shuffle mask leaves out the calling lane");
    }
    tb_emu_block *b = tb_emu_cur;
    memcpy(&b->xchg[tid], &v, sizeof(T));
    tb_emu_barrier_wait(&b->warp_bar[tid / 32], TB_EMU_SITE_SYNC);
    T r = v;
    if (src >= 0 && src < 32) {
        memcpy(&r, &b->xchg[base + (unsigned)src], sizeof(T));
    }
    tb_emu_barrier_wait(&b->warp_bar[tid / 32], TB_EMU_SITE_SYNC); /* slots free again */
    return r;
}

template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int lane = (int)(tb_emu_tid() % 32);
    int src = lane ^ lane_mask;
    return tb_emu_exchange(mask, v, (src / width == lane / width) ? src : lane);
}

template <typename T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)(tb_emu_tid() % 32);
    int src = lane + (int)delta;
    return tb_emu_exchange(mask, v, (src / width == lane / width) ? src : lane);
}

template <typename T> static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    int lane = (int)(tb_emu_tid() % 32);
    return tb_emu_exchange(mask, v, (lane / width) * width + src_lane % width);
}

static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline float atomicAdd(float *p, float v) {
    float old, sum;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    do {
        sum = old + v;
    } while (!__atomic_compare_exchange(p, &old, &sum, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST));
    return old;
}
static inline int atomicMax(int *p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST)) {
    }
    return old;
}

#define __sincosf(x, s, c) sincosf(x, s, c) /* glibc has a __sincosf of its own */

/* Sum of the four signed byte products of a and b, plus c. */
static inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; i++) {
        c += (int)(int8_t)(uint8_t)((unsigned)a >> (8 * i)) *
             (int)(int8_t)(uint8_t)((unsigned)b >> (8 * i));
    }
    return c;
}

static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline int __float_as_int(float f) {
    int i;
    memcpy(&i, &f, 4);
    return i;
}
static inline unsigned __float_as_uint(float f) { return (unsigned)__float_as_int(f); }
static inline float __uint_as_float(unsigned u) { return __int_as_float((int)u); }

/* IEEE binary16 to float, subnormals, inf and NaN included. */
static inline float tb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) {
        return __uint_as_float(sign | 0x7f800000u | (man << 13));
    }
    if (exp == 0) {
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    return __uint_as_float(sign | ((exp + 112) << 23) | (man << 13));
}

/* float to binary16, round to nearest even, overflow to inf, NaN stays NaN. */
static inline uint16_t tb_f32_to_f16(float f) {
    uint32_t x = __float_as_uint(f), sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    }
    if (ax >= 0x477ff000u) { /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    }
    if (ax < 0x38800000u) { /* below the smallest normal: scale to the subnormal grid */
        float m = __uint_as_float(ax) * 16777216.0f; /* * 2^24, exact */
        return (uint16_t)(sign | (uint32_t)nearbyintf(m));
    }
    uint32_t r = ax + 0xfff + ((ax >> 13) & 1); /* round to nearest even at bit 13 */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

static inline float tb_bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

/* What each host thread runs: every block of the grid, in order. */
struct tb_emu_launch {
    dim3 grid, block;
    tb_emu_block *blk;
    void (*body)(void *);
    void *ctx;
    unsigned tid;
};

static inline void *tb_emu_thread(void *arg) {
    const tb_emu_launch *l = static_cast<const tb_emu_launch *>(arg);
    gridDim = l->grid;
    blockDim = l->block;
    threadIdx = dim3(l->tid % l->block.x, l->tid / l->block.x % l->block.y,
                     l->tid / (l->block.x * l->block.y));
    tb_emu_cur = l->blk;
    for (unsigned z = 0; z < l->grid.z; z++) {
        for (unsigned y = 0; y < l->grid.y; y++) {
            for (unsigned x = 0; x < l->grid.x; x++) {
                blockIdx = dim3(x, y, z);
                tb_emu_shared_off = 0;
                l->body(l->ctx);
                tb_emu_barrier_wait(&l->blk->bar, TB_EMU_SITE_END);
            }
        }
    }
    return NULL;
}

/* Runs body(ctx) as every thread of every block; 0, or 1 (cudaErrorInvalidValue's value) for a
 * bad shape, 2 (cudaErrorMemoryAllocation) when memory or threads run out. */
static inline int tb_emu_run(dim3 grid, dim3 block, size_t shmem, void (*body)(void *), void *ctx) {
    unsigned n = block.x * block.y * block.z;
    if (n == 0 || n > TB_EMU_MAX_THREADS || grid.x == 0 || grid.y == 0 || grid.z == 0) {
        return 1;
    }
    if (shmem > 227 * 1024) {
        return 1;
    }
    int rc = 0;
    unsigned started = 0;
    tb_emu_block *blk = static_cast<tb_emu_block *>(calloc(1, sizeof(tb_emu_block)));
    unsigned char *dyn = static_cast<unsigned char *>(aligned_alloc(16, (shmem + 16) & ~(size_t)15));
    tb_emu_launch *ls = static_cast<tb_emu_launch *>(calloc(n, sizeof(tb_emu_launch)));
    pthread_t *th = static_cast<pthread_t *>(calloc(n, sizeof(pthread_t)));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    if (!blk || !dyn || !ls || !th) {
        rc = 2;
        goto out;
    }
    blk->dynamic = dyn;
    tb_emu_barrier_init(&blk->bar, n);
    for (unsigned w = 0; w < (n + 31) / 32; w++) {
        tb_emu_barrier_init(&blk->warp_bar[w], n - w * 32 < 32 ? n - w * 32 : 32);
    }
    for (unsigned i = 0; i < n; i++) {
        ls[i] = tb_emu_launch{grid, block, blk, body, ctx, i};
        if (pthread_create(&th[i], &attr, tb_emu_thread, &ls[i]) != 0) {
            tb_emu_die("cannot start a block's threads"); /* the others wait for them forever */
        }
        started++;
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    tb_emu_barrier_release(&blk->bar);
    for (unsigned w = 0; w < (n + 31) / 32; w++) {
        tb_emu_barrier_release(&blk->warp_bar[w]);
    }
out:
    pthread_attr_destroy(&attr);
    free(th);
    free(ls);
    free(dyn);
    free(blk);
    return rc;
}

template <typename... P> struct tb_emu_call {
    void (*kernel)(P...);
    std::tuple<P...> args;
    static void run(void *self) {
        tb_emu_call *c = static_cast<tb_emu_call *>(self);
        std::apply(c->kernel, c->args);
    }
};

/* Runs `kernel` over the grid and returns when it is done; 0 or an error as tb_emu_run. */
template <typename... P, typename... A>
static inline int tb_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem,
                            tb_stream_t stream, A... args) {
    (void)stream;
    tb_emu_call<P...> call{kernel, std::tuple<P...>(args...)};
    return tb_emu_run(grid, block, shmem, &tb_emu_call<P...>::run, &call);
}

#endif /* __CUDACC__ */

#endif /* TB_CUDA_COMPAT_H */
