/*
 * bench_engine - prefill and decode tokens/s of the CPU engine on one model file, measured the
 * way llama.cpp's llama-bench measures (so bench/engine/run.py can set them side by side).
 *
 * It drives the engine's runner (tb_runner.h: scheduler step, the CPU backend's forward pass,
 * the sampler, scheduler completion: what the engine_cpu plugin does per step, minus the bus) and
 * times whole steps, sampling included:
 *   pp N   one request of N random prompt tokens and max_tokens 1: one step computes the whole
 *          prompt (llama-bench "pp N": a batch of N tokens from an empty cache).  N / time.
 *   tg N   one request of 1 token, greedy, ignore_eos, max_tokens N: N steps of one token at
 *          positions 0..N-1 (llama-bench "tg N").  N / time.
 *   bB     B such requests at once: after the first step every step decodes B tokens, one per
 *          sequence, reading the weights once for all of them.  B x N / time.
 * Prefix caching is off so every repetition computes everything.  One warm-up run of each test
 * comes first and is not counted.
 *
 * Prints one JSON object per line: first the model
 *     {"model": PATH, "dtype": "q8_0", "params": 15191712, "weight_bytes_per_token": N, ...}
 * where weight_bytes_per_token counts every matrix a decode step reads (all layer weights and
 * the output head; the token embedding only when it is also the output head), then one line per
 * test {"test": "tg", "n": 32, "batch": 1, "samples_tok_s": [...], "best_tok_s": ...}.
 *
 * Usage: bench_engine -m FILE [-t threads] [-p 64] [-n 32] [-r reps] [-B 1,16] [-k MiB]
 *                     [--kv f16|f32]
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tb_cpu_backend.h"
#include "tb_dtype.h"
#include "tb_errors.h"
#include "tb_model.h"
#include "tb_runner.h"

#define MAX_REPS 100
#define MAX_BATCHES 8

struct opts {
    const char *model;
    int threads;
    uint32_t n_prompt;
    uint32_t n_gen;
    int reps;
    uint32_t batches[MAX_BATCHES];
    int n_batches;
    int64_t kv_mib;
    int kv_f16;
};

/* Everything one run needs; torn down by s_bench_free. */
struct bench {
    tb_model_t *model;
    const struct tb_model_params *mp;
    tb_runner_t *runner;
    int32_t *prompt;
    uint64_t rng;
};

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t s_rand(struct bench *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (uint32_t)(b->rng >> 32);
}

static void s_bench_free(struct bench *b)
{
    tb_runner_destroy(&b->runner);
    tb_model_close(&b->model);
    free(b->prompt);
    memset(b, 0, sizeof(*b));
}

/* This process's resident memory (VmRSS), its peak (VmHWM) and the file-backed part of it
 * (RssFile: pages of the model's mapping among them), in bytes; 0 when unknown. */
static void s_rss(uint64_t *rss, uint64_t *hwm, uint64_t *file)
{
    *rss = *hwm = *file = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) {
        return;
    }
    char line[256];
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) {
            *rss = kb * 1024;
        } else if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) {
            *hwm = kb * 1024;
        } else if (sscanf(line, "RssFile: %llu kB", &kb) == 1) {
            *file = kb * 1024;
        }
    }
    fclose(f);
}

/* The memory line: resident bytes after every test against the file size plus the KV budget
 * (the engine's budget is mapped whole; only the blocks used become resident). */
static void s_print_memory(const struct opts *o)
{
    uint64_t rss, hwm, rss_file;
    s_rss(&rss, &hwm, &rss_file);
    struct stat st;
    uint64_t file = stat(o->model, &st) == 0 ? (uint64_t)st.st_size : 0;
    uint64_t kv = (uint64_t)o->kv_mib << 20;
    printf("{\"test\": \"mem\", \"rss_bytes\": %llu, \"rss_peak_bytes\": %llu, "
           "\"rss_file_bytes\": %llu, \"file_bytes\": %llu, \"kv_budget_bytes\": %llu, "
           "\"rss_over_file_plus_kv\": %.4f}\n",
           (unsigned long long)rss, (unsigned long long)hwm, (unsigned long long)rss_file,
           (unsigned long long)file, (unsigned long long)kv,
           file + kv ? (double)rss / (double)(file + kv) : 0.0);
}

static int s_bench_init(struct bench *b, const struct opts *o)
{
    char err[1024] = "";
    memset(b, 0, sizeof(*b));
    b->rng = 0x2545f4914f6cdd1dull;
    uint32_t max_seqs = 1;
    for (int i = 0; i < o->n_batches; i++) {
        max_seqs = o->batches[i] > max_seqs ? o->batches[i] : max_seqs;
    }
    int rc = tb_model_open(o->model, &b->model, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "bench_engine: cannot open '%s': %s\n", o->model, err);
        goto fail;
    }
    b->mp = tb_model_params(b->model);
    struct tb_cpu_config cpu = {.threads = o->threads};
    struct tb_runner_config rc_;
    tb_runner_config_init(&rc_);
    rc_.context_length = b->mp->max_context ? 0 : 2048;
    rc_.max_batch_seqs = max_seqs;
    rc_.max_batch_tokens = o->n_prompt > max_seqs ? o->n_prompt : max_seqs;
    rc_.kv_cache_bytes = o->kv_mib << 20;
    rc_.kv_f16 = o->kv_f16 != 0;
    rc_.prefix_caching = false;
    rc_.kv_event_capacity = 0;
    rc_.seed = 1;
    rc_.flavour = &cpu;
    rc = tb_runner_new(b->model, &tb_cpu_backend_ops, &rc_, &b->runner, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "bench_engine: '%s': %s\n", o->model, err);
        goto fail;
    }
    b->prompt = calloc(o->n_prompt, sizeof(int32_t));
    if (!b->prompt) {
        fprintf(stderr, "bench_engine: out of memory\n");
        rc = TB_ENOMEM;
        goto fail;
    }
    return 0;
fail:
    s_bench_free(b);
    return rc ? rc : TB_EINTERNAL;
}

/* Submits `n_req` requests of `n_prompt` random tokens that each generate `n_gen` tokens
 * greedily, runs steps until all are done and returns the seconds the steps took (scheduling,
 * forward pass, sampling, completion), or a negative value on failure. */
static double s_run(struct bench *b, uint32_t n_req, uint32_t n_prompt, uint32_t n_gen)
{
    struct tb_sampling_params sp;
    tb_sampling_params_init(&sp);
    sp.temperature = 0.0f;
    sp.ignore_eos = true;
    sp.max_tokens = n_gen;
    uint32_t vocab = b->mp->vocab;
    for (uint32_t r = 0; r < n_req; r++) {
        for (uint32_t i = 0; i < n_prompt; i++) {
            b->prompt[i] = (int32_t)(1 + s_rand(b) % (vocab - 1));
        }
        struct tb_runner_request req = {.prompt = b->prompt, .n_prompt = n_prompt, .params = &sp};
        if (tb_runner_submit(b->runner, &req, NULL) != 0) {
            fprintf(stderr, "bench_engine: submit: %s\n", tb_runner_errmsg(b->runner));
            return -1.0;
        }
    }
    double t0 = s_now();
    while (tb_runner_has_work(b->runner)) {
        const struct tb_runner_output *outs;
        uint32_t n_outs;
        int rc = tb_runner_step(b->runner, &outs, &n_outs);
        if (rc != 0) {
            fprintf(stderr, "bench_engine: %s\n",
                    rc == TB_AGAIN ? "the scheduler made no plan" : tb_runner_errmsg(b->runner));
            return -1.0;
        }
        for (uint32_t k = 0; k < n_outs; k++) {
            if (outs[k].finish == TB_FINISH_ERROR) {
                fprintf(stderr, "bench_engine: sampling failed (non-finite logits?)\n");
                return -1.0;
            }
        }
    }
    return s_now() - t0;
}

static void s_print_samples(const char *test, uint32_t n, uint32_t batch, const double *tok_s,
                            int reps)
{
    double best = 0.0, sum = 0.0;
    printf("{\"test\": \"%s\", \"n\": %u, \"batch\": %u, \"samples_tok_s\": [", test, n, batch);
    for (int i = 0; i < reps; i++) {
        printf("%s%.3f", i ? ", " : "", tok_s[i]);
        best = tok_s[i] > best ? tok_s[i] : best;
        sum += tok_s[i];
    }
    printf("], \"best_tok_s\": %.3f, \"avg_tok_s\": %.3f}\n", best, sum / reps);
    fflush(stdout);
}

/* Bytes of weights one decode step reads: every 2-D tensor once, the output head included,
 * but of the token embedding only the one row a token looks up (when the output head is tied
 * to the embedding, the head's pass reads it whole).  *all_bytes: every tensor, aliases once. */
static uint64_t s_weight_bytes(const tb_model_t *m, uint64_t *all_bytes)
{
    uint64_t per_token = 0;
    *all_bytes = 0;
    const struct tb_tensor *embd = tb_model_tensor(m, TB_TENSOR_TOK_EMBD);
    const struct tb_tensor *out = tb_model_tensor(m, TB_TENSOR_OUTPUT);
    bool tied = out && embd && out->data == embd->data;
    const struct tb_tensor *t;
    for (size_t i = 0; (t = tb_model_tensor_at(m, i)) != NULL; i++) {
        if (!(tied && t == out)) {
            *all_bytes += t->size;
        }
        if (t->n_dims < 2) {
            continue;
        }
        per_token += t == embd ? t->row_bytes : t->size;
    }
    return per_token;
}

static int s_parse_batches(struct opts *o, const char *s)
{
    o->n_batches = 0;
    char *copy = strdup(s);
    int rc = copy ? 0 : -1;
    for (char *tok = copy ? strtok(copy, ",") : NULL; tok; tok = strtok(NULL, ",")) {
        long v = strtol(tok, NULL, 10);
        if (v < 1 || v > 4096 || o->n_batches == MAX_BATCHES) {
            rc = -1;
            break;
        }
        o->batches[o->n_batches++] = (uint32_t)v;
    }
    free(copy);
    return o->n_batches > 0 ? rc : -1;
}

static void s_usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s -m FILE [-t threads] [-p prompt_tokens] [-n gen_tokens] [-r reps]\n"
            "       [-B batch,batch,...] [-k kv_MiB] [--kv f16|f32]\n"
            "  -B 1 measures pp and tg at batch 1; B > 1 adds decode of B sequences at once\n",
            argv0);
}

int main(int argc, char **argv)
{
    struct opts o = {.threads = 2,
                     .n_prompt = 64,
                     .n_gen = 32,
                     .reps = 3,
                     .batches = {1},
                     .n_batches = 1,
                     .kv_mib = 512,
                     .kv_f16 = 1};
    static const struct option longs[] = {{"kv", required_argument, NULL, 'K'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "m:t:p:n:r:B:k:h", longs, NULL)) != -1) {
        switch (opt) {
        case 'm':
            o.model = optarg;
            break;
        case 't':
            o.threads = atoi(optarg);
            break;
        case 'p':
            o.n_prompt = (uint32_t)atoi(optarg);
            break;
        case 'n':
            o.n_gen = (uint32_t)atoi(optarg);
            break;
        case 'r':
            o.reps = atoi(optarg);
            break;
        case 'B':
            if (s_parse_batches(&o, optarg) != 0) {
                fprintf(stderr, "bench_engine: -B takes batch sizes 1..4096, e.g. 1,16\n");
                return 2;
            }
            break;
        case 'k':
            o.kv_mib = atol(optarg);
            break;
        case 'K':
            o.kv_f16 = strcmp(optarg, "f32") != 0;
            break;
        default:
            s_usage(argv[0]);
            return 2;
        }
    }
    if (!o.model || o.threads < 0 || o.n_prompt < 1 || o.n_gen < 1 || o.reps < 1 ||
        o.reps > MAX_REPS || o.kv_mib < 1) {
        s_usage(argv[0]);
        return 2;
    }
    struct bench b;
    if (s_bench_init(&b, &o) != 0) {
        return 1;
    }
    int rc = 1;
    uint64_t all_bytes = 0;
    uint64_t per_token = s_weight_bytes(b.model, &all_bytes);
    const struct tb_model_params *mp = b.mp;
    printf("{\"model\": \"%s\", \"dtype\": \"%s\", \"backend\": \"%s\", \"threads\": %d, "
           "\"layers\": %u, \"hidden\": %u, \"vocab\": %u, \"tensor_bytes\": %llu, "
           "\"weight_bytes_per_token\": %llu, \"kv\": \"%s\"}\n",
           o.model, tb_dtype_name(mp->dtype), tb_runner_ops(b.runner)->name, o.threads,
           mp->n_layers, mp->hidden, mp->vocab, (unsigned long long)all_bytes,
           (unsigned long long)per_token, o.kv_f16 ? "f16" : "f32");
    fflush(stdout);
    double samples[MAX_REPS];
    /* Warm-up: page the weights in, spin up the threads. */
    if (s_run(&b, 1, o.n_prompt, 1) < 0 || s_run(&b, 1, 1, 4) < 0) {
        goto done;
    }
    for (int i = 0; i < o.reps; i++) {
        double dt = s_run(&b, 1, o.n_prompt, 1);
        if (dt < 0) {
            goto done;
        }
        samples[i] = o.n_prompt / dt;
    }
    s_print_samples("pp", o.n_prompt, 1, samples, o.reps);
    for (int bi = 0; bi < o.n_batches; bi++) {
        uint32_t batch = o.batches[bi];
        if (batch > 1 && s_run(&b, batch, 1, 2) < 0) {
            goto done;
        }
        for (int i = 0; i < o.reps; i++) {
            double dt = s_run(&b, batch, 1, o.n_gen);
            if (dt < 0) {
                goto done;
            }
            samples[i] = (double)batch * o.n_gen / dt;
        }
        s_print_samples("tg", o.n_gen, batch, samples, o.reps);
    }
    s_print_memory(&o);
    rc = 0;
done:
    s_bench_free(&b);
    return rc;
}
