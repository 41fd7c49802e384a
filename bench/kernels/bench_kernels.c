/*
 * bench_kernels - measures the CPU kernels against this machine's memory-read bandwidth.
 *
 * Prints: memory-read bandwidth (a multi-threaded streaming read), batch-1 matvec GB/s and % of
 * that bandwidth per dtype on 1.1B-Llama-shaped matrices, a whole 1.1B decode step (every
 * weight of 22 layers + the output head, each read once), the same step for 16 sequences
 * decoding together (n_tok 16), GFLOP/s at n_tok = 16 and 512, and
 * the thread pool's dispatch overhead.  Weight sets are sized past the last-level cache so every
 * figure comes from DRAM.  Usage: bench_kernels [-t threads] [-q] [-d dtype]
 */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu/tb_cpu_kernels.h"
#include "cpu/tb_threadpool.h"

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------- memory bandwidth ---------------- */

struct bw_job {
    const uint8_t *buf;
    size_t bytes;
    int parts;
    int avx512;
    double sink[256];
};

__attribute__((target("avx2"))) static double s_read_avx2(const uint8_t *p, size_t n)
{
    __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a = _mm256_add_ps(a, _mm256_load_ps((const float *)(p + i)));
        b = _mm256_add_ps(b, _mm256_load_ps((const float *)(p + i + 32)));
        c = _mm256_add_ps(c, _mm256_load_ps((const float *)(p + i + 64)));
        d = _mm256_add_ps(d, _mm256_load_ps((const float *)(p + i + 96)));
    }
    a = _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
    float t[8];
    _mm256_storeu_ps(t, a);
    return t[0] + t[7];
}

__attribute__((target("avx512f"))) static double s_read_avx512(const uint8_t *p, size_t n)
{
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a = _mm512_add_ps(a, _mm512_load_ps((const float *)(p + i)));
        b = _mm512_add_ps(b, _mm512_load_ps((const float *)(p + i + 64)));
        c = _mm512_add_ps(c, _mm512_load_ps((const float *)(p + i + 128)));
        d = _mm512_add_ps(d, _mm512_load_ps((const float *)(p + i + 192)));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

static void s_bw_task(void *arg, int task, int thread)
{
    (void)thread;
    struct bw_job *j = arg;
    size_t chunk = j->bytes / (size_t)j->parts / 4096 * 4096;
    const uint8_t *p = j->buf + (size_t)task * chunk;
    j->sink[task] = j->avx512 ? s_read_avx512(p, chunk) : s_read_avx2(p, chunk);
}

static double s_bandwidth(tb_threadpool_t *pool)
{
    size_t bytes = (size_t)1 << 30;
    uint8_t *buf = aligned_alloc(4096, bytes);
    if (!buf) {
        return 0.0;
    }
    memset(buf, 1, bytes);
    struct bw_job j = {.buf = buf,
                       .bytes = bytes,
                       .parts = 64, /* small chunks: a descheduled thread delays little */
                       .avx512 = tb_cpu_isa_detect() == TB_CPU_ISA_AVX512};
    /* best of many passes: on a shared machine some passes lose the core to other processes */
    double best = 0.0;
    for (int r = 0; r < 24; r++) {
        double t0 = s_now();
        tb_threadpool_run(pool, j.parts, s_bw_task, &j);
        double gbs = (double)bytes / (s_now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    free(buf);
    return best;
}

/* ---------------- weights ---------------- */

static const tb_cpu_dtype_t s_all[] = {TB_CPU_F32, TB_CPU_F16, TB_CPU_BF16, TB_CPU_Q8_0,
                                       TB_CPU_Q4_0};

/* Whether Q4_0 matrices get their packed copy, as the engine gives them (TB_CPU_REPACK=0 measures
 * the stored layout). */
static int s_repack = 1;

/* Bytes of w's packed copy when it gets one, else 0. */
static size_t s_packed_bytes(const struct tb_cpu_weight *w)
{
    return s_repack ? tb_cpu_weight_packed_bytes(w) : 0;
}

/* A set of `copies` distinct random matrices of one shape, > LLC in total. */
struct wset {
    struct tb_cpu_weight *w;
    int copies;
    uint8_t *mem;
    uint8_t *packed; /* the packed copies, or NULL */
    size_t bytes;    /* one matrix */
};

static int s_wset_init(struct wset *s, tb_cpu_dtype_t dt, int64_t rows, int64_t cols,
                       size_t min_total)
{
    size_t rb = tb_cpu_dtype_row_bytes(dt, cols);
    s->bytes = rb * (size_t)rows;
    s->copies = (int)((min_total + s->bytes - 1) / s->bytes);
    if (s->copies < 1) {
        s->copies = 1;
    }
    s->packed = NULL;
    s->mem = aligned_alloc(64, (s->bytes * (size_t)s->copies + 63) / 64 * 64);
    s->w = calloc((size_t)s->copies, sizeof(*s->w));
    if (!s->mem || !s->w) {
        return -1;
    }
    /* One random row pattern per matrix row, quantized once, replicated (fast to build). */
    float *src = malloc(sizeof(float) * (size_t)cols);
    uint8_t *row = malloc(rb);
    for (int64_t i = 0; i < cols; i++) {
        src[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    }
    tb_cpu_quantize_row(dt, src, row, cols);
    for (int c = 0; c < s->copies; c++) {
        uint8_t *m = s->mem + (size_t)c * s->bytes;
        for (int64_t r = 0; r < rows; r++) {
            memcpy(m + (size_t)r * rb, row, rb);
        }
        s->w[c] = (struct tb_cpu_weight){dt, rows, cols, m, NULL};
    }
    free(src);
    free(row);
    size_t pb = s_packed_bytes(&s->w[0]);
    if (pb > 0) {
        s->packed = aligned_alloc(64, pb * (size_t)s->copies);
        if (!s->packed) {
            return -1;
        }
        for (int c = 0; c < s->copies; c++) {
            tb_cpu_weight_pack(&s->w[c], s->packed + (size_t)c * pb, pb);
            s->w[c].packed = s->packed + (size_t)c * pb;
        }
    }
    return 0;
}

static void s_wset_free(struct wset *s)
{
    free(s->mem);
    free(s->packed);
    free(s->w);
}

/* ---------------- matvec ---------------- */

static double s_matvec_gbs(tb_cpu_kernels_t *k, tb_cpu_dtype_t dt, int64_t rows, int64_t cols,
                           double *us_per_call)
{
    struct wset s;
    if (s_wset_init(&s, dt, rows, cols, (size_t)256 << 20) != 0) {
        return 0.0;
    }
    float *x = malloc(sizeof(float) * (size_t)cols);
    float *y = malloc(sizeof(float) * (size_t)rows);
    for (int64_t i = 0; i < cols; i++) {
        x[i] = sinf((float)i);
    }
    for (int c = 0; c < s.copies; c++) { /* warm-up: page faults, pool spin-up */
        tb_cpu_matmul(k, &s.w[c], x, (size_t)cols, 1, NULL, y, (size_t)rows);
    }
    double best = 1e30;
    for (int rep = 0; rep < 10; rep++) {
        double t0 = s_now();
        for (int c = 0; c < s.copies; c++) {
            tb_cpu_matmul(k, &s.w[c], x, (size_t)cols, 1, NULL, y, (size_t)rows);
        }
        double dt_s = (s_now() - t0) / s.copies;
        best = dt_s < best ? dt_s : best;
    }
    *us_per_call = best * 1e6;
    double gbs = (double)s.bytes / best / 1e9;
    free(x);
    free(y);
    s_wset_free(&s);
    return gbs;
}

/* One decode step of a 1.1B Llama (TinyLlama shape: hidden 2048, 22 layers, 32 heads of 64,
 * 4 KV heads, FFN 5632, vocab 32000): every weight matrix read once, in model order. */
struct step_result {
    double bytes, seconds; /* seconds 0: not measured */
};

static struct step_result s_model_step(tb_cpu_kernels_t *k, tb_cpu_dtype_t dt, int n_tok)
{
    struct step_result res = {0.0, 0.0};
    static const int64_t shapes[7][2] = {{2048, 2048}, {256, 2048},  {256, 2048}, {2048, 2048},
                                         {5632, 2048}, {5632, 2048}, {2048, 5632}};
    const int layers = 22;
    size_t total = 0;
    size_t off[7 * 22 + 1];
    int n = 0;
    for (int l = 0; l < layers; l++) {
        for (int m = 0; m < 7; m++) {
            off[n++] = total;
            total += tb_cpu_dtype_row_bytes(dt, shapes[m][1]) * (size_t)shapes[m][0];
        }
    }
    size_t head = tb_cpu_dtype_row_bytes(dt, 2048) * 32000;
    off[n] = total;
    total += head;
    uint8_t *mem = aligned_alloc(64, (total + 63) / 64 * 64);
    if (!mem) {
        fprintf(stderr, "  %-5s model step: cannot allocate %.1f GB\n",
                tb_cpu_dtype_info(dt)->name, (double)total / 1e9);
        return res;
    }
    /* fill with valid blocks: small random-ish values */
    float src[5632];
    for (int i = 0; i < 5632; i++) {
        src[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    }
    uint8_t row[5632 * 4];
    for (int i = 0; i <= n; i++) {
        int64_t rows = i < n ? shapes[i % 7][0] : 32000;
        int64_t cols = i < n ? shapes[i % 7][1] : 2048;
        size_t rb = tb_cpu_dtype_row_bytes(dt, cols);
        tb_cpu_quantize_row(dt, src, row, cols);
        for (int64_t r = 0; r < rows; r++) {
            memcpy(mem + off[i] + (size_t)r * rb, row, rb);
        }
    }
    /* the packed copies of every matrix (Q4_0), in the same order */
    size_t poff[7 * 22 + 2] = {0};
    uint8_t *pmem = NULL;
    for (int i = 0; i <= n; i++) {
        struct tb_cpu_weight w = {dt, i < n ? shapes[i % 7][0] : 32000,
                                  i < n ? shapes[i % 7][1] : 2048, mem + off[i], NULL};
        poff[i + 1] = poff[i] + s_packed_bytes(&w);
    }
    if (poff[n + 1] > 0 && (pmem = aligned_alloc(64, poff[n + 1])) != NULL) {
        for (int i = 0; i <= n; i++) {
            struct tb_cpu_weight w = {dt, i < n ? shapes[i % 7][0] : 32000,
                                      i < n ? shapes[i % 7][1] : 2048, mem + off[i], NULL};
            tb_cpu_weight_pack(&w, pmem + poff[i], poff[i + 1] - poff[i]);
        }
    }
    float *x = calloc((size_t)5632 * n_tok, sizeof(float));
    float *y = calloc((size_t)(32000 + 2 * 5632) * n_tok, sizeof(float));
    for (int i = 0; i < 5632 * n_tok; i++) {
        x[i] = cosf((float)i);
    }
    /* As a forward pass issues them: Q, K, V in one call, O, gate and up in one call, down. */
    static const int groups[4][2] = {{0, 3}, {3, 1}, {4, 2}, {6, 1}};
    double best = 1e30;
    for (int rep = 0; rep < 12; rep++) {
        double t0 = s_now();
        for (int l = 0; l < layers; l++) {
            for (int g = 0; g < 4; g++) {
                struct tb_cpu_weight w[3];
                struct tb_cpu_matmul_out o[3];
                size_t yoff = 0;
                for (int m = 0; m < groups[g][1]; m++) {
                    int i = l * 7 + groups[g][0] + m;
                    w[m] = (struct tb_cpu_weight){dt, shapes[i % 7][0], shapes[i % 7][1],
                                                  mem + off[i], pmem ? pmem + poff[i] : NULL};
                    o[m] = (struct tb_cpu_matmul_out){&w[m], NULL, y + yoff,
                                                      (size_t)shapes[i % 7][0]};
                    yoff += (size_t)shapes[i % 7][0] * (size_t)n_tok;
                }
                tb_cpu_matmul_multi(k, x, (size_t)w[0].cols, n_tok, o, groups[g][1]);
            }
        }
        struct tb_cpu_weight hw = {dt, 32000, 2048, mem + off[n], pmem ? pmem + poff[n] : NULL};
        tb_cpu_matmul(k, &hw, x, 2048, n_tok, NULL, y, 32000);
        double s = s_now() - t0;
        best = rep > 0 && s < best ? s : best; /* rep 0 warms up */
    }
    free(x);
    free(y);
    free(mem);
    free(pmem);
    res.bytes = (double)total;
    res.seconds = best;
    return res;
}

/* ---------------- matmul GFLOP/s ---------------- */

static void s_gflops(tb_cpu_kernels_t *k, tb_cpu_dtype_t dt, int64_t rows, int64_t cols,
                     int n_tok)
{
    struct wset s;
    if (s_wset_init(&s, dt, rows, cols, 0) != 0) {
        return;
    }
    float *x = malloc(sizeof(float) * (size_t)cols * (size_t)n_tok);
    float *y = malloc(sizeof(float) * (size_t)rows * (size_t)n_tok);
    for (size_t i = 0; i < (size_t)cols * (size_t)n_tok; i++) {
        x[i] = sinf((float)i);
    }
    tb_cpu_matmul(k, &s.w[0], x, (size_t)cols, n_tok, NULL, y, (size_t)rows);
    int reps = n_tok >= 256 ? 3 : 20;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = s_now();
        tb_cpu_matmul(k, &s.w[0], x, (size_t)cols, n_tok, NULL, y, (size_t)rows);
        double e = s_now() - t0;
        best = e < best ? e : best;
    }
    double gf = 2.0 * (double)rows * (double)cols * n_tok / best / 1e9;
    printf("  %-5s %5lldx%-5lld n_tok %3d  %8.1f GFLOP/s  %8.3f ms\n",
           tb_cpu_dtype_info(dt)->name, (long long)rows, (long long)cols, n_tok, gf, best * 1e3);
    free(x);
    free(y);
    s_wset_free(&s);
}

/* ---------------- pool overhead ---------------- */

static void s_nop(void *arg, int task, int thread)
{
    (void)arg;
    (void)task;
    (void)thread;
}

static void s_busy(void *arg, int task, int thread)
{
    (void)task;
    (void)thread;
    double until = s_now() + *(const double *)arg;
    while (s_now() < until) {
    }
}

static void s_overhead(tb_threadpool_t *pool)
{
    int nth = tb_threadpool_size(pool);
    for (int nt = 2; nt <= 64; nt *= 8) {
        int n = 20000;
        for (int i = 0; i < 1000; i++) {
            tb_threadpool_run(pool, nt, s_nop, NULL);
        }
        double t0 = s_now();
        for (int i = 0; i < n; i++) {
            tb_threadpool_run(pool, nt, s_nop, NULL);
        }
        double us = (s_now() - t0) / n * 1e6;
        printf("  empty parallel-for, %2d tasks: %.2f us per call\n", nt, us);
    }
    /* Tasks that each take 5 us: with every thread working, a call takes
     * ceil(n_tasks / threads) * 5 us; the excess is what dispatch and the final wait cost. */
    double task_s = 5e-6;
    int nt = nth;
    int n = 5000;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = s_now();
        for (int i = 0; i < n; i++) {
            tb_threadpool_run(pool, nt, s_busy, &task_s);
        }
        double us = (s_now() - t0) / n * 1e6;
        best = us < best ? us : best;
    }
    printf("  %d tasks of 5 us on %d threads: %.2f us per call (ideal 5.00; overhead %.2f us)\n",
           nt, nth, best, best - 5.0);
}

int main(int argc, char **argv)
{
    int threads = 2, quick = 0;
    int only = -1;
    int opt;
    while ((opt = getopt(argc, argv, "t:qd:")) != -1) {
        if (opt == 't') {
            threads = atoi(optarg);
        } else if (opt == 'q') {
            quick = 1;
        } else if (opt == 'd') {
            for (int i = 0; i < TB_CPU_DTYPE_WRITABLE; i++) {
                if (strcmp(optarg, tb_cpu_dtype_info((tb_cpu_dtype_t)i)->name) == 0) {
                    only = i;
                }
            }
        } else {
            fprintf(stderr, "usage: %s [-t threads] [-q] [-d dtype]\n", argv[0]);
            return 2;
        }
    }
    const char *rp = getenv("TB_CPU_REPACK");
    s_repack = !(rp && strcmp(rp, "0") == 0);
    tb_threadpool_t *pool = NULL;
    tb_cpu_kernels_t *k = NULL;
    if (tb_threadpool_new(threads, &pool) != 0 || tb_cpu_kernels_new(pool, &k) != 0) {
        fprintf(stderr, "bench_kernels: cannot create the pool or the kernel context\n");
        return 1;
    }
    printf("threads %d, isa %s, q4_0 %s\n", tb_threadpool_size(pool),
           tb_cpu_isa_name(tb_cpu_kernels_isa(k)),
           s_repack ? "packed (TB_CPU_REPACK=0: stored layout)" : "stored layout");
    /* Bandwidth is measured before and after each DRAM section; the percentages use the highest
     * figure seen, so other load on a shared machine cannot inflate them. */
    double bws[4];
    bws[0] = s_bandwidth(pool);

    printf("\nthread pool dispatch overhead\n");
    s_overhead(pool);

    static const int64_t shapes[5][2] = {
        {2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
    double mv_gbs[TB_CPU_DTYPE_WRITABLE][5] = {{0}}, mv_us[TB_CPU_DTYPE_WRITABLE][5] = {{0}};
    for (int d = 0; d < TB_CPU_DTYPE_WRITABLE; d++) {
        for (int s = 0; s < 5 && (only < 0 || d == only); s++) {
            mv_gbs[d][s] = s_matvec_gbs(k, s_all[d], shapes[s][0], shapes[s][1], &mv_us[d][s]);
        }
    }
    bws[1] = s_bandwidth(pool);
    struct step_result steps[TB_CPU_DTYPE_WRITABLE] = {{0, 0}};
    for (int d = quick ? 1 : 0; d < TB_CPU_DTYPE_WRITABLE; d++) {
        if (only < 0 || d == only) {
            steps[d] = s_model_step(k, s_all[d], 1);
        }
    }
    bws[2] = s_bandwidth(pool);
    double bw = 0.0;
    for (int i = 0; i < 3; i++) {
        bw = bws[i] > bw ? bws[i] : bw;
    }
    printf("\nmemory-read bandwidth (%d threads, 1 GiB streamed, best of 24 passes): "
           "%.1f GB/s\n  (measured %.1f / %.1f / %.1f GB/s before, between and after the DRAM "
           "sections; percentages use the highest)\n",
           tb_threadpool_size(pool), bw, bws[0], bws[1], bws[2]);
    printf("\nbatch-1 matvec (weights > LLC, read from DRAM)\n");
    for (int d = 0; d < TB_CPU_DTYPE_WRITABLE; d++) {
        for (int s = 0; s < 5 && (only < 0 || d == only); s++) {
            printf("  %-5s %5lldx%-5lld %8.1f us  %6.1f GB/s  %5.1f%% of bandwidth\n",
                   tb_cpu_dtype_info(s_all[d])->name, (long long)shapes[s][0],
                   (long long)shapes[s][1], mv_us[d][s], mv_gbs[d][s], 100.0 * mv_gbs[d][s] / bw);
        }
    }
    printf("\n1.1B Llama decode step, batch 1 (all 155 weight matrices once)\n");
    for (int d = 0; d < TB_CPU_DTYPE_WRITABLE; d++) {
        if (steps[d].seconds > 0.0) {
            double gbs = steps[d].bytes / steps[d].seconds / 1e9;
            printf("  %-5s %6.2f GB/step  %7.2f ms  %6.1f tok/s (matmuls only)  %6.1f GB/s  "
                   "%5.1f%%\n",
                   tb_cpu_dtype_info(s_all[d])->name, steps[d].bytes / 1e9,
                   steps[d].seconds * 1e3, 1.0 / steps[d].seconds, gbs, 100.0 * gbs / bw);
        }
    }
    printf("\n1.1B Llama batched step, 16 tokens (16 sequences decoding together; matmuls "
           "only)\n");
    for (int d = 1; d < TB_CPU_DTYPE_WRITABLE; d++) {
        if (only >= 0 && d != only) {
            continue;
        }
        struct step_result r = s_model_step(k, s_all[d], 16);
        if (r.seconds > 0.0) {
            printf("  %-5s %7.2f ms per step  %7.1f tokens/s  %6.1f GFLOP/s\n",
                   tb_cpu_dtype_info(s_all[d])->name, r.seconds * 1e3, 16.0 / r.seconds,
                   16.0 * 2.0 * 1.1e9 / r.seconds / 1e9);
        }
    }
    printf("\nmatmul throughput\n");
    for (int d = 0; d < TB_CPU_DTYPE_WRITABLE; d++) {
        if (only >= 0 && d != only) {
            continue;
        }
        s_gflops(k, s_all[d], 2048, 2048, 16);
        s_gflops(k, s_all[d], 5632, 2048, 16);
        if (!quick) {
            s_gflops(k, s_all[d], 2048, 2048, 512);
        }
    }
    tb_cpu_kernels_destroy(&k);
    tb_threadpool_destroy(&pool);
    return 0;
}
