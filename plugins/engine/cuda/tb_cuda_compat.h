/*
 * tb_cuda_compat.h - lets one kernel source compile with nvcc for the GPU and with the host C++
 * compiler (g++ -x c++ -std=c++17) as an emulation that runs on the CPU under sanitizers.
 *
 * Under __CUDACC__ this header only includes the CUDA runtime and defines the few names below
 * (tb_launch, TB_SHARED, TB_DYNAMIC_SHARED, the f16/bf16 helpers).  Otherwise it emulates the
 * subset of CUDA that our kernels use:
 *
 *  - Threads: tb_launch runs the grid one block at a time on the calling thread; each CUDA
 *    thread of a block is a fiber (its own stack, started through a ucontext, switched with
 *    __builtin_setjmp / __builtin_longjmp), created once per launch and run
 *    through every block.  A fiber runs until it waits at a barrier, then the next one runs, so
 *    a launch is deterministic and cheap (no OS threads, no locks).  threadIdx, blockIdx,
 *    blockDim and gridDim are thread-locals the scheduler sets on each switch.  The launch is
 *    synchronous; streams are ignored, except that a launch on a stream the emulated runtime
 *    (tb_cuda_rt_emu.cpp) is capturing is recorded for the graph instead (tb_emu_node).
 *  - __syncthreads is a barrier over the block's fibers.  Under TSan every fiber is a TSan
 *    fiber switched without synchronisation, and a barrier is the only happens-before edge
 *    between them (each arrival releases, each departure acquires): a missing barrier between
 *    a shared-memory write and another thread's read is a TSan report, although the fibers
 *    never run at the same time.  Under ASan the stack switches are announced.  Every thread of
 *    a block must reach every barrier: a block may return early only as a whole.  Threads that
 *    reach different barriers (a __syncthreads and the end of the block) or a barrier that can
 *    never complete are reported and abort.
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
#define TB_DYNAMIC_SHARED(T, name)                                                               \
    extern __shared__ __align__(16) unsigned char tb_dyn_smem_[];                                \
    T *name = reinterpret_cast<T *>(tb_dyn_smem_)

typedef cudaStream_t tb_stream_t;

/* Launches `kernel` on `stream`; returns 0 or the launch error (cudaError_t, > 0). */
template <typename... P, typename... A>
static inline int tb_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem,
                            tb_stream_t stream, A... args)
{
    kernel<<<grid, block, shmem, stream>>>(args...);
    /* peek, not get: the backend takes the error with its message (tb_cu_take_error) */
    return (int)cudaPeekAtLastError();
}

TB_DEV float tb_f16_to_f32(uint16_t h)
{
    return __half2float(__ushort_as_half(h));
}
TB_DEV uint16_t tb_f32_to_f16(float f)
{
    return __half_as_ushort(__float2half_rn(f));
}
TB_DEV float tb_bf16_to_f32(uint16_t h)
{
    return __uint_as_float((uint32_t)h << 16);
}
TB_DEV uint16_t tb_f32_to_bf16(float f)
{
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

#else
/* ------------------------------------------------------------------------------------------ */
/* Host emulation                                                                              */
/* ------------------------------------------------------------------------------------------ */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

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
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_)
    {
    }
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
static inline float2 make_float2(float x, float y)
{
    return float2{x, y};
}
static inline float4 make_float4(float x, float y, float z, float w)
{
    return float4{x, y, z, w};
}

typedef void *tb_stream_t;

#define TB_EMU_MAX_THREADS 1024
#define TB_EMU_SHARED_BYTES (48 * 1024)
#define TB_EMU_STACK (128 * 1024) /* bytes of stack per emulated thread */

/* Sanitizer hooks: TSan must see each emulated thread as a fiber of its own that synchronises
 * only at barriers; ASan must know which stack is live.  Nothing without sanitizers. */
#if defined(__SANITIZE_THREAD__)
extern "C" {
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
}
#define TB_EMU_TSAN(x) x
#else
#define TB_EMU_TSAN(x)
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define TB_EMU_ASAN(x) x
#else
#define TB_EMU_ASAN(x)
#endif

/* A barrier over `count` emulated threads; `site` tells a __syncthreads from the end of a
 * block (see above). */
struct tb_emu_barrier {
    unsigned count, waiting, gen;
    int site;
    char sync[2]; /* TSan sync objects of even and odd generations (see tb_emu_barrier_wait) */
};

enum { TB_EMU_SITE_SYNC = 1, TB_EMU_SITE_END = 2 };

/* One emulated CUDA thread: a fiber with its own stack. */
struct tb_emu_fiber {
    ucontext_t ctx;
    unsigned char *stack;
    dim3 thread, block;
    size_t shared_off; /* its next free byte of the block's static shared arena */
    unsigned xchg_bank;
    bool done;
    bool started; /* entered once through its ucontext; later switches use jb */
    void *jb[5];  /* __builtin_setjmp buffer: where it resumes */
    void *tsan;
};

/* One launch: its fibers and the state of the block they run. */
struct tb_emu_block {
    tb_emu_barrier bar; /* all the block's threads */
    tb_emu_barrier warp_bar[TB_EMU_MAX_THREADS / 32];
    uint64_t xchg[2][TB_EMU_MAX_THREADS]; /* shuffle slots, two banks */
    alignas(16) unsigned char shared[TB_EMU_SHARED_BYTES];
    unsigned char *dynamic; /* the launch's dynamic shared memory */
    tb_emu_fiber *fib;
    unsigned n, cur, n_done, stalled;
    void *main_jb[5]; /* where the launching thread resumes */
    void *main_tsan;
    const void *main_stack;
    size_t main_stack_size;
    dim3 grid, blockdim;
    void (*body)(void *);
    void *ctx;
};

/* The CUDA built-ins and the running fiber.  Only the scheduler writes them (on a switch, in a
 * region TSan ignores); kernels read them. */
inline thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0), blockDim, gridDim;
inline thread_local tb_emu_block *tb_emu_cur;

[[noreturn]] static inline void tb_emu_die(const char *what)
{
    fprintf(stderr, "tb_cuda emulation: %s\n", what);
    abort();
}

static inline unsigned tb_emu_tid(void)
{
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

/* Continues fiber `to` (L->n: the launching thread) where it last stopped; a fiber that never
 * ran starts through its ucontext.  Switches go through __builtin_setjmp / __builtin_longjmp
 * rather than swapcontext, which makes a signal-mask system call on every switch: with a few
 * hundred launches per forward pass those calls cost more than the kernels. */
/* Not instrumented by TSan: it never returns, so TSan's shadow call stack of the fiber would
 * grow by one frame per switch. */
[[noreturn]] __attribute__((noinline, no_sanitize("thread"))) static void
tb_emu_jump(tb_emu_block *L, unsigned to)
{
    if (to >= L->n) {
        __builtin_longjmp(L->main_jb, 1);
    }
    tb_emu_fiber *f = &L->fib[to];
    if (!f->started) {
        f->started = true;
        setcontext(&f->ctx);
    }
    __builtin_longjmp(f->jb, 1);
}

/* Makes fiber `to` run; returns when this fiber is switched back to.  `last`: this fiber has
 * finished and is never resumed. */
static inline void tb_emu_switch(tb_emu_block *L, unsigned to, bool last)
{
    TB_EMU_TSAN(__tsan_ignore_thread_begin()); /* scheduler state is shared by all fibers */
    tb_emu_fiber *self = &L->fib[L->cur];
    const bool to_main = to >= L->n;
    void *to_tsan = to_main ? L->main_tsan : L->fib[to].tsan;
    const void *to_stack = to_main ? L->main_stack : (const void *)L->fib[to].stack;
    const size_t to_size = to_main ? L->main_stack_size : TB_EMU_STACK;
    (void)to_tsan, (void)to_stack, (void)to_size;
    L->cur = to;
    if (last) {
        /* before the switch (TSan's state is per fiber), and after the last read of L, which
         * the launching thread frees once every fiber is done */
        TB_EMU_TSAN(__tsan_ignore_thread_end());
    }
    TB_EMU_TSAN(__tsan_switch_to_fiber(to_tsan, 1));
    void *fake = NULL;
    TB_EMU_ASAN(__sanitizer_start_switch_fiber(last ? NULL : &fake, to_stack, to_size));
    if (last) {
        tb_emu_jump(L, to);
    }
    if (__builtin_setjmp(self->jb) == 0) {
        tb_emu_jump(L, to);
    }
    TB_EMU_ASAN(__sanitizer_finish_switch_fiber(fake, NULL, NULL));
    (void)fake;
    threadIdx = self->thread; /* this fiber's own values back */
    blockIdx = self->block;
    TB_EMU_TSAN(__tsan_ignore_thread_end());
}

/* Runs the next unfinished fiber after the current one. */
static inline void tb_emu_yield(tb_emu_block *L)
{
    unsigned to = L->cur;
    do {
        to = (to + 1) % L->n;
    } while (L->fib[to].done);
    if (to != L->cur) {
        tb_emu_switch(L, to, false);
    }
}

static inline void tb_emu_barrier_init(tb_emu_barrier *b, unsigned count)
{
    b->count = count;
    b->waiting = 0;
    b->gen = 0;
    b->site = 0;
}

/* Waits until all `count` threads arrived.  The bookkeeping is invisible to TSan; what it sees
 * is each arrival releasing and each departure acquiring a sync object of this generation.
 * (One object for all generations would be wrong: a fast thread's arrival at the next
 * barrier would be acquired by a slow one still leaving this one, hiding the race between
 * them.  Two alternate, as no thread can reach generation g + 2 before all left g.) */
static inline void tb_emu_barrier_wait(tb_emu_barrier *b, int site)
{
    tb_emu_block *L = tb_emu_cur;
    TB_EMU_TSAN(__tsan_ignore_thread_begin());
    const unsigned gen = b->gen;
    TB_EMU_TSAN(__tsan_release(&b->sync[gen & 1]));
    if (b->waiting == 0) {
        b->site = site;
    } else if (b->site != site) {
        tb_emu_die("threads of one block reached different barriers (a thread returned early "
                   "or __syncthreads sits in divergent code)");
    }
    L->stalled = 0;
    if (++b->waiting == b->count) {
        b->waiting = 0;
        b->gen++;
    } else {
        while (gen == b->gen) {
            if (++L->stalled > L->n) {
                tb_emu_die("deadlock: every thread waits at a barrier that cannot complete "
                           "(a thread left early, or a shuffle in divergent code)");
            }
            tb_emu_yield(L);
        }
    }
    TB_EMU_TSAN(__tsan_acquire(&b->sync[gen & 1]));
    TB_EMU_TSAN(__tsan_ignore_thread_end());
}

static inline void __syncthreads(void)
{
    tb_emu_barrier_wait(&tb_emu_cur->bar, TB_EMU_SITE_SYNC);
}

static inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    (void)mask;
    tb_emu_barrier_wait(&tb_emu_cur->warp_bar[tb_emu_tid() / 32], TB_EMU_SITE_SYNC);
}

static inline void *tb_emu_shared_take(size_t bytes, size_t align)
{
    tb_emu_block *L = tb_emu_cur;
    tb_emu_fiber *f = &L->fib[L->cur];
    size_t off = (f->shared_off + align - 1) & ~(align - 1);
    if (off + bytes > TB_EMU_SHARED_BYTES) {
        tb_emu_die("static shared memory beyond 48 KiB");
    }
    f->shared_off = off + bytes;
    return L->shared + off;
}

#define TB_SHARED(T, name, n)                                                                    \
    T *name = static_cast<T *>(tb_emu_shared_take(sizeof(T) * (n), alignof(T)))
#define TB_DYNAMIC_SHARED(T, name) T *name = reinterpret_cast<T *>(tb_emu_cur->dynamic)

/* Lane `src` of this thread's warp (its own lane when `src` is outside the warp). */
template <typename T> static inline T tb_emu_exchange(unsigned mask, T v, int src)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
    unsigned tid = tb_emu_tid();
    unsigned lane = tid % 32, base = tid - lane;
    if (!(mask & (1u << lane))) {
        tb_emu_die("shuffle mask leaves out the calling lane");
    }
    tb_emu_block *L = tb_emu_cur;
    tb_emu_fiber *f = &L->fib[L->cur];
    /* Two banks: a lane writes bank k only after every lane passed the barrier of the shuffle
     * that read it last (two shuffles ago), so one barrier per shuffle suffices. */
    uint64_t *slots = L->xchg[f->xchg_bank];
    f->xchg_bank ^= 1;
    memcpy(&slots[tid], &v, sizeof(T));
    tb_emu_barrier_wait(&L->warp_bar[tid / 32], TB_EMU_SITE_SYNC);
    T r = v;
    if (src >= 0 && src < 32) {
        memcpy(&r, &slots[base + (unsigned)src], sizeof(T));
    }
    return r;
}

template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    int lane = (int)(tb_emu_tid() % 32);
    int src = lane ^ lane_mask;
    return tb_emu_exchange(mask, v, (src / width == lane / width) ? src : lane);
}

template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    int lane = (int)(tb_emu_tid() % 32);
    int src = lane + (int)delta;
    return tb_emu_exchange(mask, v, (src / width == lane / width) ? src : lane);
}

template <typename T>
static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32)
{
    int lane = (int)(tb_emu_tid() % 32);
    return tb_emu_exchange(mask, v, (lane / width) * width + src_lane % width);
}

static inline int atomicAdd(int *p, int v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline unsigned atomicAdd(unsigned *p, unsigned v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline float atomicAdd(float *p, float v)
{
    float old, sum;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    do {
        sum = old + v;
    } while (
        !__atomic_compare_exchange(p, &old, &sum, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return old;
}
static inline int atomicMax(int *p, int v)
{
    int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (old < v &&
           !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    return old;
}

#define __sincosf(x, s, c) sincosf(x, s, c) /* glibc has a __sincosf of its own */

/* Sum of the four signed byte products of a and b, plus c. */
static inline int __dp4a(int a, int b, int c)
{
    for (int i = 0; i < 4; i++) {
        c += (int)(int8_t)(uint8_t)((unsigned)a >> (8 * i)) *
             (int)(int8_t)(uint8_t)((unsigned)b >> (8 * i));
    }
    return c;
}

static inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline int __float_as_int(float f)
{
    int i;
    memcpy(&i, &f, 4);
    return i;
}
static inline unsigned __float_as_uint(float f)
{
    return (unsigned)__float_as_int(f);
}
static inline float __uint_as_float(unsigned u)
{
    return __int_as_float((int)u);
}

/* IEEE binary16 to float, subnormals, inf and NaN included. */
static inline float tb_f16_to_f32(uint16_t h)
{
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
static inline uint16_t tb_f32_to_f16(float f)
{
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

static inline float tb_bf16_to_f32(uint16_t h)
{
    return __uint_as_float((uint32_t)h << 16);
}

/* float to bfloat16, round to nearest even; NaN stays a (quiet) NaN. */
static inline uint16_t tb_f32_to_bf16(float f)
{
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((x >> 16) | 0x40);
    }
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* A fiber's life: every block of the grid in order, then hand over to the next fiber (the last
 * one back to the launching thread). */
static inline void tb_emu_fiber_main(void)
{
    TB_EMU_TSAN(__tsan_acquire(&tb_emu_cur)); /* the launching thread's setup */
    tb_emu_block *L = tb_emu_cur;
    /* the first fiber is entered from the launching thread: note that thread's stack */
    TB_EMU_ASAN(__sanitizer_finish_switch_fiber(NULL, L->cur == 0 ? &L->main_stack : NULL,
                                                L->cur == 0 ? &L->main_stack_size : NULL));
    TB_EMU_TSAN(__tsan_ignore_thread_begin()); /* the built-ins are written by every fiber */
    tb_emu_fiber *self = &L->fib[L->cur];
    threadIdx = self->thread;
    TB_EMU_TSAN(__tsan_ignore_thread_end());
    for (unsigned z = 0; z < L->grid.z; z++) {
        for (unsigned y = 0; y < L->grid.y; y++) {
            for (unsigned x = 0; x < L->grid.x; x++) {
                TB_EMU_TSAN(__tsan_ignore_thread_begin());
                self->block = blockIdx = dim3(x, y, z);
                TB_EMU_TSAN(__tsan_ignore_thread_end());
                self->shared_off = 0;
                L->body(L->ctx);
                tb_emu_barrier_wait(&L->bar, TB_EMU_SITE_END);
            }
        }
    }
    TB_EMU_TSAN(__tsan_release(&tb_emu_cur)); /* for the launching thread */
    TB_EMU_TSAN(__tsan_ignore_thread_begin());
    self->done = true;
    L->stalled = 0;
    unsigned to = L->n; /* the launching thread, once every fiber is done */
    if (++L->n_done < L->n) {
        to = L->cur;
        do {
            to = (to + 1) % L->n;
        } while (L->fib[to].done);
    }
    TB_EMU_TSAN(__tsan_ignore_thread_end());
    tb_emu_switch(L, to, true);
}

/* Prepares fiber `f` to start in tb_emu_fiber_main on `stack` (TB_EMU_STACK bytes).  Its own
 * function, as getcontext returns twice. */
__attribute__((noinline)) static void tb_emu_fiber_init(tb_emu_fiber *f, unsigned char *stack,
                                                        dim3 thread)
{
    f->stack = stack;
    f->thread = thread;
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = stack;
    f->ctx.uc_stack.ss_size = TB_EMU_STACK;
    f->ctx.uc_link = NULL;
    makecontext(&f->ctx, tb_emu_fiber_main, 0);
    TB_EMU_TSAN(f->tsan = __tsan_create_fiber(0));
}

/* Switches from the launching thread to the first fiber; returns when the last one finished.
 * (Its own function: __builtin_setjmp returns twice, which would clobber the caller's
 * locals.) */
__attribute__((noinline)) static void tb_emu_enter(tb_emu_block *L)
{
    void *fake = NULL;
    TB_EMU_TSAN(__tsan_switch_to_fiber(L->fib[0].tsan, 1));
    TB_EMU_ASAN(__sanitizer_start_switch_fiber(&fake, L->fib[0].stack, TB_EMU_STACK));
    if (__builtin_setjmp(L->main_jb) == 0) {
        tb_emu_jump(L, 0);
    }
    TB_EMU_ASAN(__sanitizer_finish_switch_fiber(fake, NULL, NULL));
    (void)fake;
}

/* The fibers' stacks: one buffer per launching thread, kept for the next launch (mapping and
 * touching fresh stacks on every launch cost more than the kernels when a forward pass makes
 * hundreds of launches); freed when the thread ends.  NULL when memory runs out. */
struct tb_emu_stack_cache {
    unsigned char *p = nullptr;
    size_t bytes = 0;
    ~tb_emu_stack_cache()
    {
        free(p);
    }
};
static inline unsigned char *tb_emu_stacks(size_t bytes)
{
    static thread_local tb_emu_stack_cache c;
    if (c.bytes < bytes) {
        free(c.p);
        c.p = static_cast<unsigned char *>(aligned_alloc(64, bytes));
        c.bytes = c.p ? bytes : 0;
    }
    /* the last launch's fibers left their frames' redzones poisoned: start clean */
    TB_EMU_ASAN(if (c.p) __asan_unpoison_memory_region(c.p, c.bytes));
    return c.p;
}

/* Runs body(ctx) as every thread of every block; 0, or 1 (cudaErrorInvalidValue's value) for a
 * bad shape, 2 (cudaErrorMemoryAllocation) when memory runs out.  Blocks run one after the
 * other on the calling thread, their threads as fibers switched at barriers. */
static inline int tb_emu_run(dim3 grid, dim3 block, size_t shmem, void (*body)(void *), void *ctx)
{
    const unsigned n = block.x * block.y * block.z;
    if (n == 0 || n > TB_EMU_MAX_THREADS || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        shmem > 227 * 1024) {
        return 1;
    }
    int rc = 0;
    tb_emu_block *L = static_cast<tb_emu_block *>(calloc(1, sizeof(tb_emu_block)));
    unsigned char *dyn = static_cast<unsigned char *>(
        aligned_alloc(16, (shmem + 16) & ~(size_t)15));
    tb_emu_fiber *fib = static_cast<tb_emu_fiber *>(calloc(n, sizeof(tb_emu_fiber)));
    unsigned char *stacks = tb_emu_stacks((size_t)n * TB_EMU_STACK);
    tb_emu_block *outer = tb_emu_cur;
    const dim3 outer_t = threadIdx, outer_b = blockIdx, outer_bd = blockDim, outer_gd = gridDim;
    if (!L || !dyn || !fib || !stacks) {
        rc = 2;
        goto out;
    }
    L->dynamic = dyn;
    L->fib = fib;
    L->n = n;
    L->grid = grid;
    L->blockdim = block;
    L->body = body;
    L->ctx = ctx;
    tb_emu_barrier_init(&L->bar, n);
    for (unsigned w = 0; w < (n + 31) / 32; w++) {
        tb_emu_barrier_init(&L->warp_bar[w], n - w * 32 < 32 ? n - w * 32 : 32);
    }
    for (unsigned i = 0; i < n; i++) {
        tb_emu_fiber_init(&fib[i], stacks + (size_t)i * TB_EMU_STACK,
                          dim3(i % block.x, i / block.x % block.y, i / (block.x * block.y)));
    }
    TB_EMU_TSAN(L->main_tsan = __tsan_get_current_fiber());
    tb_emu_cur = L;
    blockDim = block;
    gridDim = grid;
    L->cur = 0;
    threadIdx = fib[0].thread;
    TB_EMU_TSAN(__tsan_release(&tb_emu_cur)); /* every fiber acquires it on entry */
    tb_emu_enter(L);
    TB_EMU_TSAN(__tsan_acquire(&tb_emu_cur)); /* every fiber released it at its end */
    for (unsigned i = 0; i < n; i++) {
        TB_EMU_TSAN(__tsan_destroy_fiber(fib[i].tsan));
    }
out:
    tb_emu_cur = outer; /* a launch from inside an emulated kernel is not supported, but keep
                           the caller's view intact */
    threadIdx = outer_t;
    blockIdx = outer_b;
    blockDim = outer_bd;
    gridDim = outer_gd;
    free(fib);
    free(dyn);
    free(L);
    return rc;
}

template <typename... P> struct tb_emu_call {
    void (*kernel)(P...);
    std::tuple<P...> args;
    static void run(void *self)
    {
        tb_emu_call *c = static_cast<tb_emu_call *>(self);
        std::apply(c->kernel, c->args);
    }
};

/* A launch as a graph node: the call with its arguments copied by value (what a CUDA graph
 * keeps of a captured launch), run by tb_emu_run when the graph is replayed. */
struct tb_emu_node {
    dim3 grid, block;
    size_t shmem;
    void (*run)(void *call);
    void (*destroy)(void *call);
    void *call;
};

/* Defined by the emulated runtime (tb_cuda_rt_emu.cpp) when it is linked: takes `node` into the
 * graph `stream` is capturing and returns 1, or returns 0 when the stream is not capturing (the
 * launch then runs now).  Weak: programs without the runtime run every launch at once. */
extern "C" int tb_emu_stream_record(tb_stream_t stream, const struct tb_emu_node *node)
    __attribute__((weak));

template <typename... P> static void tb_emu_call_delete(void *self)
{
    delete static_cast<tb_emu_call<P...> *>(self);
}

/* Runs `kernel` over the grid and returns when it is done (0 or an error as tb_emu_run), or,
 * on a stream that is capturing a graph, records it for the graph's replays. */
template <typename... P, typename... A>
static inline int tb_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem,
                            tb_stream_t stream, A... args)
{
    if (stream && tb_emu_stream_record) {
        auto *rec = new tb_emu_call<P...>{kernel, std::tuple<P...>(args...)};
        const tb_emu_node node = {
            grid, block, shmem, &tb_emu_call<P...>::run, &tb_emu_call_delete<P...>, rec};
        if (tb_emu_stream_record(stream, &node)) {
            return 0;
        }
        delete rec;
    }
    tb_emu_call<P...> call{kernel, std::tuple<P...>(args...)};
    return tb_emu_run(grid, block, shmem, &tb_emu_call<P...>::run, &call);
}

#endif /* __CUDACC__ */

#endif /* TB_CUDA_COMPAT_H */
