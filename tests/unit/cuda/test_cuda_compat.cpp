/* Unit tests for the host emulation of tb_cuda_compat.h itself: thread and block indices over a
 * 3-D grid, block-shared and dynamic shared memory across blocks, the warp shuffles (xor, down,
 * broadcast, sub-warp widths), atomics, __dp4a, the f16 conversions (every half value, and
 * rounding against the CPU's converter), and that a thread leaving a block early while others
 * wait at __syncthreads aborts with a message instead of hanging.  C++: it writes kernels. */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {
#include <cmocka.h> /* after the standard headers it needs */

#include "cpu/tb_cpu_kernels.h"
}
#include "cuda/tb_cuda_compat.h"

/* out[block][thread] = linear ids, written after a barrier from a block-shared copy that the
 * neighbouring thread stored: wrong without a working barrier and a shared arena. */
__global__ void k_indices(unsigned *out)
{
    TB_SHARED(unsigned, s, 64);
    const unsigned n = blockDim.x * blockDim.y * blockDim.z;
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    s[t] = b * 1000 + t;
    __syncthreads();
    out[b * n + t] = s[(t + 1) % n];
}

static void test_grid_and_shared(void **state)
{
    (void)state;
    unsigned out[2 * 3 * 2 * 24];
    memset(out, 0xff, sizeof(out));
    assert_int_equal(tb_launch(k_indices, dim3(2, 3, 2), dim3(4, 3, 2), 0, NULL, out), 0);
    for (unsigned b = 0; b < 12; b++) {
        for (unsigned t = 0; t < 24; t++) {
            assert_int_equal(out[b * 24 + t], b * 1000 + (t + 1) % 24);
        }
    }
    assert_int_equal(tb_launch(k_indices, dim3(1), dim3(2048), 0, NULL, out), 1); /* too big */
}

/* Dynamic shared memory: each block reverses its slice through it. */
__global__ void k_reverse(const float *in, float *out, int n)
{
    TB_DYNAMIC_SHARED(float, s);
    const int i = threadIdx.x;
    s[i] = in[blockIdx.x * n + i];
    __syncthreads();
    out[blockIdx.x * n + i] = s[n - 1 - i];
}

static void test_dynamic_shared(void **state)
{
    (void)state;
    float in[3 * 96], out[3 * 96];
    for (int i = 0; i < 3 * 96; i++) {
        in[i] = (float)i;
    }
    assert_int_equal(tb_launch(k_reverse, dim3(3), dim3(96), 96 * sizeof(float), NULL,
                               (const float *)in, out, 96),
                     0);
    for (int b = 0; b < 3; b++) {
        for (int i = 0; i < 96; i++) {
            assert_true(out[b * 96 + i] == in[b * 96 + 95 - i]);
        }
    }
}

/* Per thread: xor with 5, down by 3, broadcast of lane 7, and the same within 8-lane groups. */
__global__ void k_shuffles(int *out)
{
    const int t = threadIdx.x, lane = t % 32;
    const int v = 100 * t;
    out[6 * t + 0] = __shfl_xor_sync(0xffffffffu, v, 5);
    out[6 * t + 1] = __shfl_down_sync(0xffffffffu, v, 3);
    out[6 * t + 2] = __shfl_sync(0xffffffffu, v, 7);
    out[6 * t + 3] = __shfl_xor_sync(0xffffffffu, v, 4, 8);
    out[6 * t + 4] = __shfl_down_sync(0xffffffffu, v, 3, 8);
    out[6 * t + 5] = __shfl_sync(0xffffffffu, v, 2, 8);
    (void)lane;
}

static void test_shuffles(void **state)
{
    (void)state;
    int out[64 * 6];
    assert_int_equal(tb_launch(k_shuffles, dim3(1), dim3(64), 0, NULL, out), 0);
    for (int t = 0; t < 64; t++) {
        const int lane = t % 32, base = t - lane, g = lane - lane % 8;
        assert_int_equal(out[6 * t + 0], 100 * (base + (lane ^ 5)));
        assert_int_equal(out[6 * t + 1], 100 * (lane + 3 < 32 ? t + 3 : t));
        assert_int_equal(out[6 * t + 2], 100 * (base + 7));
        assert_int_equal(out[6 * t + 3], 100 * (base + (lane ^ 4)));
        assert_int_equal(out[6 * t + 4], 100 * (lane % 8 + 3 < 8 ? t + 3 : t));
        assert_int_equal(out[6 * t + 5], 100 * (base + g + 2));
    }
}

__global__ void k_atomics(float *f, int *i, int *m)
{
    atomicAdd(f, 0.5f);
    atomicAdd(i, (int)threadIdx.x);
    atomicMax(m, (int)(blockIdx.x * blockDim.x + threadIdx.x));
}

static void test_atomics_and_dp4a(void **state)
{
    (void)state;
    float f = 0;
    int i = 0, m = -5;
    assert_int_equal(tb_launch(k_atomics, dim3(3), dim3(64), 0, NULL, &f, &i, &m), 0);
    assert_true(f == 96.0f);
    assert_int_equal(i, 3 * (63 * 64 / 2));
    assert_int_equal(m, 191);
    /* bytes (1, -2, 127, -128) . (-1, 3, 2, -128) + 10 */
    const int a = (int)(0x01u | 0xfeu << 8 | 0x7fu << 16 | 0x80u << 24);
    const int b = (int)(0xffu | 0x03u << 8 | 0x02u << 16 | 0x80u << 24);
    assert_int_equal(__dp4a(a, b, 10), 10 - 1 - 6 + 254 + 16384);
}

static void test_half_conversions(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = tb_f16_to_f32((uint16_t)h), want = tb_cpu_f16_to_f32((uint16_t)h);
        if (isnan(want)) {
            assert_true(isnan(f));
            continue;
        }
        assert_memory_equal(&f, &want, sizeof(f));
        assert_int_equal(tb_f32_to_f16(f), h); /* exact values round-trip */
    }
    const float cases[] = {1.0f + 1.0f / 4096, 65519.0f, 65520.0f,   1e-8f,   3e-5f,
                           -2.9802322e-8f,     0.1f,     -1234.567f, INFINITY};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        assert_int_equal(tb_f32_to_f16(cases[c]), tb_cpu_f32_to_f16(cases[c]));
    }
    assert_true(tb_bf16_to_f32(0x3f80) == 1.0f);
}

/* Thread 0 returns while the others wait at __syncthreads: a bug the emulation must report. */
__global__ void k_divergent(int *out)
{
    if (threadIdx.x == 0) {
        return;
    }
    __syncthreads();
    out[threadIdx.x] = 1;
}

static void test_divergent_barrier_aborts(void **state)
{
    (void)state;
    fflush(NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out[64];
        const int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 2); /* the expected message is not a test failure */
        }
        tb_launch(k_divergent, dim3(1), dim3(64), 0, NULL, out);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_and_shared),  cmocka_unit_test(test_dynamic_shared),
        cmocka_unit_test(test_shuffles),         cmocka_unit_test(test_atomics_and_dp4a),
        cmocka_unit_test(test_half_conversions), cmocka_unit_test(test_divergent_barrier_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
