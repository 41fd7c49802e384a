/*
 * bench_quant - single-thread speed of the shared weight-format kernels (plugins/common
 * tb_quant_kernels.h): for every quantized type, a matrix-vector product over rows sized past
 * the last-level cache, through each instruction-set table this CPU runs (generic = the
 * reference), as GB/s of weights read and the speed-up over the reference; and the reference
 * dequantizer's speed.  What a packed or interleaved layout would have to beat.
 *
 * usage: bench_quant [-m MB] [-t TYPE]   MB of weights per type (default 64); one type only
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_quant.h"
#include "tb_quant_kernels.h"

enum { COLS = 4096 };

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Random blocks with f16 scales of 2^-6 (finite, and no overflow in any product). */
static void s_fill(tb_dtype_t t, uint8_t *w, size_t nb)
{
    size_t bb = tb_dtype_block_bytes(t);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < nb * bb; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w[i] = (uint8_t)x;
    }
    uint8_t probe[292] = {0};
    struct tb_quant_unpacked u;
    /* find the f16 fields: the offsets where the half 1.0 (bytes 00 3c) reads as d or dmin */
    for (size_t off = 0; off + 1 < bb; off++) {
        memset(probe, 0, bb);
        probe[off + 1] = 0x3c;
        tb_quant_unpack(t, probe, &u);
        if (u.d == 1.0f || u.dmin == 1.0f || u.dmin == -1.0f) {
            for (size_t b = 0; b < nb; b++) {
                w[b * bb + off] = 0x00;
                w[b * bb + off + 1] = 0x18;
            }
            off++;
        }
    }
}

/* Seconds per pass of `dot` over `rows` rows (best of `reps`). */
static double s_time(const struct tb_quant_kernels *k, tb_dtype_t t, const uint8_t *w,
                     size_t rows, const void *act, int reps, float *sink)
{
    size_t rb = COLS / tb_dtype_block_elems(t) * tb_dtype_block_bytes(t);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = s_now();
        for (size_t i = 0; i < rows; i++) {
            float o;
            k->dot(t, w + i * rb, act, COLS, &o);
            *sink += o;
        }
        double dt = s_now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    size_t mb = 64;
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-m") == 0) {
            mb = (size_t)atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "-t") == 0) {
            only = argv[i + 1];
        }
    }
    float x[COLS], sink = 0.0f;
    for (int i = 0; i < COLS; i++) {
        x[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
    }
    static struct tb_block_q8_32 act[COLS / 32]; /* room for either activation format */
    printf("%-7s %-8s %9s %8s %9s\n", "type", "isa", "ms/pass", "GB/s", "vs ref");
    for (int ti = 0; ti < TB_DTYPE_COUNT; ti++) {
        tb_dtype_t t = (tb_dtype_t)ti;
        if (!tb_dtype_is_quantized(t) || (only && strcmp(only, tb_dtype_name(t)) != 0)) {
            continue;
        }
        size_t rb = COLS / tb_dtype_block_elems(t) * tb_dtype_block_bytes(t);
        size_t rows = mb * 1024 * 1024 / rb;
        uint8_t *w = malloc(rows * rb);
        float *deq = malloc(COLS * sizeof(float) * 64);
        if (!w || !deq || rows == 0) {
            fprintf(stderr, "bench_quant: out of memory\n");
            return 1;
        }
        s_fill(t, w, rows * COLS / tb_dtype_block_elems(t));
        tb_quant_act_quantize(tb_quant_act_for(t), x, act, COLS);
        double ref = 0.0;
        for (int isa = 0; isa < TB_QUANT_ISA_COUNT; isa++) {
            const struct tb_quant_kernels *k = tb_quant_kernels_for((tb_quant_isa_t)isa);
            if (!k) {
                printf("%-7s %-8s %9s (this CPU lacks it)\n", tb_dtype_name(t),
                       isa == TB_QUANT_ISA_AVX2 ? "avx2" : "avx512", "-");
                continue;
            }
            double s = s_time(k, t, w, isa ? rows : rows / 8, act, isa ? 5 : 1, &sink);
            s *= isa ? 1.0 : 8.0; /* the reference runs over an eighth of the rows */
            ref = isa ? ref : s;
            printf("%-7s %-8s %9.2f %8.2f %8.1fx\n", tb_dtype_name(t), k->name, s * 1e3,
                   (double)(rows * rb) / s / 1e9, ref / s);
        }
        double t0 = s_now();
        for (size_t i = 0; i < rows / 8; i++) {
            tb_quant_dequantize(t, w + i * rb, deq + (i % 64) * COLS, COLS);
        }
        double dq = (s_now() - t0) * 8.0;
        printf("%-7s %-8s %9.2f %8.2f   (reference dequantize to f32)\n", tb_dtype_name(t),
               "generic", dq * 1e3, (double)(rows * rb) / dq / 1e9);
        free(w);
        free(deq);
    }
    return sink == 12345.0f; /* keeps the sums alive */
}
