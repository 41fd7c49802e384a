/*
 * bench_membw - this machine's memory-read bandwidth, the ceiling of batch-1 decode.
 *
 * Streams a buffer far larger than the last-level cache with `threads` threads, each reading its
 * own contiguous part with wide loads, and prints the best of `rounds` rounds as one JSON object:
 *     {"threads": 2, "bytes": 1073741824, "rounds": 8, "gbs": 23.4, "samples_gbs": [...]}
 * Decode reads every weight once per token, so decode tok/s x weight bytes / this figure is the
 * fraction of the bandwidth a forward pass reaches (bench/engine/run.py prints it).
 *
 * Usage: bench_membw [-t threads] [-m MiB] [-r rounds]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define MAX_THREADS 256
#define MAX_ROUNDS 64

/* Where the reads' results go, so the compiler cannot drop them. */
static volatile double g_sink;

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#if defined(__x86_64__)
/* Four independent 256-bit accumulators keep enough loads in flight to saturate DRAM. */
__attribute__((target("avx2"))) static double s_read_avx2(const uint8_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(const void *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(const void *)(p + i + 32)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(const void *)(p + i + 64)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(const void *)(p + i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    int64_t t[4];
    _mm256_storeu_si256((__m256i *)(void *)t, a);
    return (double)(t[0] ^ t[1] ^ t[2] ^ t[3]);
}
#endif

static double s_read_scalar(const uint8_t *p, size_t n)
{
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, sizeof(w));
        a ^= w[0];
        b ^= w[1];
        c ^= w[2];
        d ^= w[3];
    }
    return (double)(a ^ b ^ c ^ d);
}

struct part {
    const uint8_t *p;
    size_t n;
    int avx2;
    pthread_barrier_t *start;
    double sink;
};

static void *s_reader(void *arg)
{
    struct part *pt = arg;
    pthread_barrier_wait(pt->start);
#if defined(__x86_64__)
    pt->sink = pt->avx2 ? s_read_avx2(pt->p, pt->n) : s_read_scalar(pt->p, pt->n);
#else
    pt->sink = s_read_scalar(pt->p, pt->n);
#endif
    return NULL;
}

/* One round: `threads` threads read their parts; the time is from the common start to the last
 * one's end.  Returns GB/s, or a negative value when a thread could not start. */
static double s_round(const uint8_t *buf, size_t bytes, int threads, int avx2, double *sink)
{
    pthread_t tid[MAX_THREADS];
    struct part parts[MAX_THREADS];
    pthread_barrier_t start;
    size_t chunk = bytes / (size_t)threads / 4096 * 4096;
    double gbs = -1.0;
    if (pthread_barrier_init(&start, NULL, (unsigned)threads + 1) != 0) {
        return gbs;
    }
    int started = 0;
    for (int i = 0; i < threads; i++) {
        parts[i] = (struct part){buf + (size_t)i * chunk, chunk, avx2, &start, 0.0};
        if (pthread_create(&tid[i], NULL, s_reader, &parts[i]) != 0) {
            break;
        }
        started++;
    }
    if (started < threads) {
        /* The barrier cannot complete: the started threads stay blocked; give up the process. */
        fprintf(stderr, "bench_membw: cannot start %d threads\n", threads);
        exit(1);
    }
    double t0 = s_now();
    pthread_barrier_wait(&start);
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        *sink += parts[i].sink;
    }
    double dt = s_now() - t0;
    pthread_barrier_destroy(&start);
    gbs = (double)(chunk * (size_t)threads) / dt / 1e9;
    return gbs;
}

int main(int argc, char **argv)
{
    int threads = 2, rounds = 8;
    long mib = 1024;
    int opt;
    while ((opt = getopt(argc, argv, "t:m:r:")) != -1) {
        if (opt == 't') {
            threads = atoi(optarg);
        } else if (opt == 'm') {
            mib = atol(optarg);
        } else if (opt == 'r') {
            rounds = atoi(optarg);
        } else {
            fprintf(stderr, "usage: %s [-t threads] [-m MiB] [-r rounds]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > MAX_THREADS || rounds < 1 || rounds > MAX_ROUNDS || mib < 64) {
        fprintf(stderr, "bench_membw: threads 1..%d, rounds 1..%d, at least 64 MiB\n",
                MAX_THREADS, MAX_ROUNDS);
        return 2;
    }
    size_t bytes = (size_t)mib << 20;
    /* 2 MB-aligned and huge pages advised, as the engine's weight copies are: on 4 KB pages the
     * stream takes a TLB miss per page and reads measurably slower than the weights do. */
    const size_t huge = (size_t)2 << 20;
    uint8_t *buf = aligned_alloc(huge, (bytes + huge - 1) / huge * huge);
    if (!buf) {
        fprintf(stderr, "bench_membw: cannot allocate %ld MiB\n", mib);
        return 1;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(buf, bytes, MADV_HUGEPAGE);
#endif
    /* Touch every page (and give the data no pattern the hardware could compress). */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < bytes; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    int avx2 = 0;
#if defined(__x86_64__)
    avx2 = __builtin_cpu_supports("avx2");
#endif
    double samples[MAX_ROUNDS], best = 0.0, sink = 0.0;
    int rc = 0;
    for (int r = 0; r < rounds; r++) {
        samples[r] = s_round(buf, bytes, threads, avx2, &sink);
        if (samples[r] < 0) {
            fprintf(stderr, "bench_membw: a round failed\n");
            rc = 1;
            goto done;
        }
        best = samples[r] > best ? samples[r] : best;
    }
    printf("{\"threads\": %d, \"bytes\": %zu, \"rounds\": %d, \"isa\": \"%s\", \"gbs\": %.3f, "
           "\"samples_gbs\": [",
           threads, bytes, rounds, avx2 ? "avx2" : "scalar", best);
    for (int r = 0; r < rounds; r++) {
        printf("%s%.3f", r ? ", " : "", samples[r]);
    }
    printf("]}\n");
    g_sink = sink;
done:
    free(buf);
    return rc;
}
