/*
 * tb_forward - runs token ids through the engine's runner (tb_runner.h: the real scheduler, KV
 * manager and sampler) over the cpu backend, for the tests that hold the forward pass to the
 * reference (tools/tb_ref_forward.py) and for benchmarks.
 *
 * usage: tb_forward MODEL [options]
 * requests (each one a sequence of the scheduler, all greedy):
 *   --prompt IDS            comma-separated token ids; repeat for more requests
 *   --random N:MIN:MAX      N random prompts of MIN..MAX tokens (ids 3..vocab-1, see --seed)
 *   --shared-prefix N       the random prompts all start with the same N random tokens
 *   --seed N                random prompts' seed (default 1)
 *   --stagger K             submit request i before step i*K (default 0: all at once)
 * what to compute:
 *   --generate N            N greedy tokens per request (EOS ignored unless --stop-eos)
 *   --logits-out DIR        with --generate: DIR/<i>.npy, the logits each token was chosen
 *                           from ([N, vocab] float32: positions len-1 .. len+N-2)
 *   --all-logits DIR        DIR/<i>.npy, logits of every prompt position of request i
 *                           ([len, vocab] float32), computed as one request per prefix length
 *                           (all submitted together: prefill chunks, prefix reuse, batching)
 *   --bench                 time every forward call; summary in the JSON's "bench"
 * engine:
 *   --threads N (2)  --block-size N (16)  --kv-blocks N (default: all requests fit at once)
 *   --max-batch-tokens N (2048)  --max-batch-seqs N (64)  --kv-f32 (default f16)
 *   --no-prefix-cache  --no-chunked-prefill
 *   --backend cpu|cuda   the engine flavour (default cpu).  cuda is the CUDA backend linked
 *                        into this binary: the emulation (tb_cuda_rt_emu.cpp) in tb_forward,
 *                        the GPU in tb_forward_gpu (built where nvcc exists)
 *   --no-cuda-graphs     cuda: run decode steps without graphs
 *
 * Prints one JSON object on stdout: the backend (isa, threads, n_blocks, block_bytes), per
 * request its prompt length, generated ids, finish reason and cached prompt tokens, the
 * scheduler's load figures (steps, preemptions, prefix hits) and with --bench the timings.
 * Exit 0, or 1 with the error on stderr.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cpu/tb_cpu_backend.h"
#include "cuda/tb_cuda_backend.h"
#include "tb_errors.h"
#include "tb_model.h"
#include "tb_runner.h"

struct req {
    int32_t *prompt;
    uint32_t n_prompt;
    int32_t *gen;
    uint32_t n_gen, max_gen;
    float *rows;        /* max_gen logits rows when recorded (--logits-out) */
    int owner;          /* --all-logits: the prompt this prefix request belongs to */
    uint32_t submit_at; /* step before which it is submitted */
    bool submitted, done;
    int finish;
    uint32_t n_cached;
};

struct opts {
    const char *model;
    struct req *prompts; /* the user's requests (before --all-logits expansion) */
    uint32_t n_prompts;
    uint32_t rand_n, rand_min, rand_max, shared_prefix, stagger;
    uint64_t seed;
    uint32_t generate;
    const char *logits_out, *all_logits;
    bool bench, stop_eos, kv_f32, no_prefix, no_chunked;
    bool cuda, no_graphs; /* --backend cuda, --no-cuda-graphs */
    int threads;
    uint32_t block_size, kv_blocks, max_batch_tokens, max_batch_seqs;
};

struct step_time {
    uint32_t n_seqs, n_tokens;
    bool decode; /* every entry ran one token */
    double seconds;
};

static void s_usage(void)
{
    fprintf(stderr,
            "usage: tb_forward MODEL [--prompt IDS]... [--random N:MIN:MAX] [--shared-prefix N]\n"
            "       [--seed N] [--stagger K] [--generate N] [--logits-out DIR]\n"
            "       [--all-logits DIR] [--bench] [--stop-eos] [--threads N] [--block-size N]\n"
            "       [--kv-blocks N] [--max-batch-tokens N] [--max-batch-seqs N] [--kv-f32]\n"
            "       [--no-prefix-cache] [--no-chunked-prefill] [--backend cpu|cuda]\n"
            "       [--no-cuda-graphs]\n");
}

static bool s_uint(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > UINT32_MAX) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static int s_add_prompt(struct opts *o, int32_t *ids, uint32_t n)
{
    struct req *r = realloc(o->prompts, (o->n_prompts + 1) * sizeof(*r));
    if (!r) {
        return TB_ENOMEM;
    }
    o->prompts = r;
    memset(&r[o->n_prompts], 0, sizeof(*r));
    r[o->n_prompts].prompt = ids;
    r[o->n_prompts].n_prompt = n;
    o->n_prompts++;
    return TB_OK;
}

static int s_parse_ids(const char *s, int32_t **out, uint32_t *n)
{
    uint32_t cap = 1;
    for (const char *c = s; *c; c++) {
        cap += *c == ',';
    }
    int32_t *ids = malloc(cap * sizeof(int32_t));
    if (!ids) {
        return TB_ENOMEM;
    }
    uint32_t k = 0;
    const char *c = s;
    while (*c) {
        char *end;
        errno = 0;
        long v = strtol(c, &end, 10);
        if (errno || end == c || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return TB_EINVAL;
        }
        ids[k++] = (int32_t)v;
        c = *end ? end + 1 : end;
    }
    if (k == 0) {
        free(ids);
        return TB_EINVAL;
    }
    *out = ids;
    *n = k;
    return TB_OK;
}

static int s_parse(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->seed = 1;
    o->threads = 2;
    o->block_size = 16;
    o->max_batch_tokens = 2048;
    o->max_batch_seqs = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint32_t u;
        bool ok = true, used = true;
        if (strcmp(a, "--prompt") == 0 && v) {
            int32_t *ids;
            uint32_t n;
            ok = s_parse_ids(v, &ids, &n) == TB_OK && s_add_prompt(o, ids, n) == TB_OK;
        } else if (strcmp(a, "--random") == 0 && v) {
            ok = sscanf(v, "%u:%u:%u", &o->rand_n, &o->rand_min, &o->rand_max) == 3 &&
                 o->rand_min >= 1 && o->rand_min <= o->rand_max;
        } else if (strcmp(a, "--shared-prefix") == 0 && v) {
            ok = s_uint(v, &o->shared_prefix);
        } else if (strcmp(a, "--seed") == 0 && v) {
            ok = s_uint(v, &u);
            o->seed = u;
        } else if (strcmp(a, "--stagger") == 0 && v) {
            ok = s_uint(v, &o->stagger);
        } else if (strcmp(a, "--generate") == 0 && v) {
            ok = s_uint(v, &o->generate);
        } else if (strcmp(a, "--logits-out") == 0 && v) {
            o->logits_out = v;
        } else if (strcmp(a, "--all-logits") == 0 && v) {
            o->all_logits = v;
        } else if (strcmp(a, "--threads") == 0 && v) {
            ok = s_uint(v, &u) && u <= 256;
            o->threads = (int)u;
        } else if (strcmp(a, "--block-size") == 0 && v) {
            ok = s_uint(v, &o->block_size);
        } else if (strcmp(a, "--kv-blocks") == 0 && v) {
            ok = s_uint(v, &o->kv_blocks);
        } else if (strcmp(a, "--max-batch-tokens") == 0 && v) {
            ok = s_uint(v, &o->max_batch_tokens);
        } else if (strcmp(a, "--max-batch-seqs") == 0 && v) {
            ok = s_uint(v, &o->max_batch_seqs);
        } else if (strcmp(a, "--backend") == 0 && v) {
            ok = strcmp(v, "cpu") == 0 || strcmp(v, "cuda") == 0;
            o->cuda = strcmp(v, "cuda") == 0;
        } else {
            used = false;
            if (strcmp(a, "--bench") == 0) {
                o->bench = true;
            } else if (strcmp(a, "--stop-eos") == 0) {
                o->stop_eos = true;
            } else if (strcmp(a, "--kv-f32") == 0) {
                o->kv_f32 = true;
            } else if (strcmp(a, "--no-prefix-cache") == 0) {
                o->no_prefix = true;
            } else if (strcmp(a, "--no-chunked-prefill") == 0) {
                o->no_chunked = true;
            } else if (strcmp(a, "--no-cuda-graphs") == 0) {
                o->no_graphs = true;
            } else if (a[0] != '-' && !o->model) {
                o->model = a;
            } else {
                ok = false;
            }
        }
        if (!ok) {
            fprintf(stderr, "tb_forward: bad argument '%s'%s%s\n", a, v && used ? " " : "",
                    v && used ? v : "");
            return TB_EINVAL;
        }
        i += used ? 1 : 0;
    }
    if (!o->model || (o->n_prompts == 0 && o->rand_n == 0)) {
        s_usage();
        return TB_EINVAL;
    }
    if (o->logits_out && o->generate == 0) {
        fprintf(stderr, "tb_forward: --logits-out needs --generate\n");
        return TB_EINVAL;
    }
    if (o->all_logits && o->generate) {
        fprintf(stderr, "tb_forward: --all-logits and --generate are separate runs\n");
        return TB_EINVAL;
    }
    return TB_OK;
}

static uint64_t s_rand(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return *st;
}

static int s_add_random(struct opts *o, uint32_t vocab)
{
    if (o->rand_n == 0) {
        return TB_OK;
    }
    if (vocab < 4 || o->shared_prefix >= o->rand_min) {
        fprintf(stderr, "tb_forward: --shared-prefix must be below the shortest random prompt\n");
        return TB_EINVAL;
    }
    uint64_t st = o->seed * 2654435761ull + 88172645463325252ull;
    int32_t prefix[4096];
    uint32_t np = o->shared_prefix < 4096 ? o->shared_prefix : 4096;
    for (uint32_t i = 0; i < np; i++) {
        prefix[i] = 3 + (int32_t)(s_rand(&st) % (vocab - 3));
    }
    for (uint32_t r = 0; r < o->rand_n; r++) {
        uint32_t n = o->rand_min + (uint32_t)(s_rand(&st) % (o->rand_max - o->rand_min + 1));
        int32_t *ids = malloc(n * sizeof(int32_t));
        if (!ids) {
            return TB_ENOMEM;
        }
        for (uint32_t i = 0; i < n; i++) {
            ids[i] = i < np ? prefix[i] : 3 + (int32_t)(s_rand(&st) % (vocab - 3));
        }
        if (s_add_prompt(o, ids, n) != TB_OK) {
            free(ids);
            return TB_ENOMEM;
        }
    }
    return TB_OK;
}

static int s_write_npy(const char *path, const float *data, uint32_t rows, uint32_t cols)
{
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%u, %u), }", rows, cols);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "tb_forward: cannot write '%s': %s\n", path, strerror(errno));
        return TB_EIO;
    }
    uint16_t hl = (uint16_t)(n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hl & 0xff, f);
    fputc(hl >> 8, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++) {
        fputc(' ', f);
    }
    fputc('\n', f);
    size_t cnt = (size_t)rows * cols;
    bool ok = fwrite(data, sizeof(float), cnt, f) == cnt;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        fprintf(stderr, "tb_forward: cannot write '%s'\n", path);
        return TB_EIO;
    }
    return TB_OK;
}

static const char *s_finish(int f)
{
    switch (f) {
    case TB_FINISH_STOP:
        return "stop";
    case TB_FINISH_LENGTH:
        return "length";
    case TB_FINISH_ERROR:
        return "error";
    default:
        return "none";
    }
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median time of the decode steps of batch size `batch` (0 when none or out of memory). */
static double s_median(const struct step_time *st, uint32_t n, uint32_t batch)
{
    double *v = malloc((n ? n : 1) * sizeof(double));
    uint32_t k = 0;
    for (uint32_t i = 0; v && i < n; i++) {
        if (st[i].decode && st[i].n_seqs == batch) {
            v[k++] = st[i].seconds;
        }
    }
    double m = 0.0;
    if (k > 0) {
        qsort(v, k, sizeof(double), s_cmp_double);
        m = k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
    }
    free(v);
    return m;
}

/* The bench summary: decode steps grouped by batch size, and prefill throughput. */
static json_t *s_bench_json(const struct step_time *st, uint32_t n)
{
    json_t *o = json_object();
    json_t *dec = json_array();
    for (uint32_t b = 1; b <= 4096; b++) {
        uint32_t cnt = 0;
        double sec = 0.0, mn = 1e30;
        for (uint32_t i = 0; i < n; i++) {
            if (st[i].decode && st[i].n_seqs == b) {
                cnt++;
                sec += st[i].seconds;
                mn = st[i].seconds < mn ? st[i].seconds : mn;
            }
        }
        if (cnt == 0) {
            continue;
        }
        json_t *d = json_object();
        json_object_set_new(d, "batch", json_integer(b));
        json_object_set_new(d, "steps", json_integer(cnt));
        json_object_set_new(d, "mean_ms", json_real(sec / cnt * 1e3));
        json_object_set_new(d, "min_ms", json_real(mn * 1e3));
        json_object_set_new(d, "median_ms", json_real(s_median(st, n, b) * 1e3));
        json_object_set_new(d, "tokens_per_s", json_real((double)b * cnt / sec));
        json_array_append_new(dec, d);
    }
    json_object_set_new(o, "decode", dec);
    uint64_t ptok = 0;
    double psec = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        if (!st[i].decode) {
            ptok += st[i].n_tokens;
            psec += st[i].seconds;
        }
    }
    json_t *p = json_object();
    json_object_set_new(p, "tokens", json_integer((json_int_t)ptok));
    json_object_set_new(p, "seconds", json_real(psec));
    json_object_set_new(p, "tokens_per_s", json_real(psec > 0 ? (double)ptok / psec : 0.0));
    json_object_set_new(o, "prefill", p);
    return o;
}

/* One run: the options, the model, the runner and the requests it sees. */
struct run {
    struct opts o;
    tb_model_t *model;
    const struct tb_model_params *p;
    tb_runner_t *runner;
    struct req *reqs; /* the requests the runner sees (one per prefix with --all-logits) */
    uint32_t n_reqs;
    float **all; /* --all-logits: per user prompt, [n_prompt, vocab] */
    struct step_time *times;
    uint32_t n_times, cap_times;
};

static int s_oom(void)
{
    fprintf(stderr, "tb_forward: out of memory\n");
    return TB_ENOMEM;
}

/* Expands the user's prompts into the runner's requests; *need_blocks: KV blocks for all of
 * them at once. */
static int s_make_reqs(struct run *r, uint64_t *need_blocks)
{
    const struct opts *o = &r->o;
    uint32_t vocab = r->p->vocab;
    r->n_reqs = 0;
    for (uint32_t i = 0; i < o->n_prompts; i++) {
        r->n_reqs += o->all_logits ? o->prompts[i].n_prompt : 1;
    }
    r->reqs = calloc(r->n_reqs, sizeof(*r->reqs));
    r->all = calloc(o->n_prompts, sizeof(*r->all));
    if (!r->reqs || !r->all) {
        return s_oom();
    }
    uint32_t k = 0;
    *need_blocks = 0;
    for (uint32_t i = 0; i < o->n_prompts; i++) {
        const struct req *src = &o->prompts[i];
        uint32_t lens = o->all_logits ? src->n_prompt : 1;
        if (o->all_logits &&
            !(r->all[i] = calloc((size_t)src->n_prompt * vocab, sizeof(float)))) {
            return s_oom();
        }
        for (uint32_t j = 0; j < lens; j++, k++) {
            struct req *q = &r->reqs[k];
            q->prompt = src->prompt;
            q->n_prompt = o->all_logits ? j + 1 : src->n_prompt;
            q->owner = (int)i;
            q->max_gen = o->all_logits ? 1 : (o->generate ? o->generate : 1);
            q->submit_at = k * o->stagger;
            q->gen = calloc(q->max_gen, sizeof(int32_t));
            if (o->logits_out) {
                q->rows = calloc((size_t)q->max_gen * vocab, sizeof(float));
            }
            if (!q->gen || (o->logits_out && !q->rows)) {
                return s_oom();
            }
            *need_blocks += (q->n_prompt + q->max_gen + o->block_size - 1) / o->block_size + 1;
        }
    }
    return TB_OK;
}

static int s_new_runner(struct run *r, uint64_t need_blocks)
{
    const struct opts *o = &r->o;
    struct tb_cpu_config cpu = {.threads = o->threads};
    /* the cuda flavour sizes its KV cache from kv_cache bytes here (utilization 0) */
    struct tb_cuda_config cuda = {.cuda_graphs = !o->no_graphs};
    struct tb_runner_config rc;
    tb_runner_config_init(&rc);
    rc.context_length = r->p->max_context >= 2 ? 0 : 2;
    rc.max_batch_seqs = o->max_batch_seqs;
    rc.max_batch_tokens = o->max_batch_tokens;
    rc.max_seqs = r->n_reqs > o->max_batch_seqs ? r->n_reqs : o->max_batch_seqs;
    rc.block_size = o->block_size;
    rc.kv_f16 = !o->kv_f32;
    rc.prefix_caching = !o->no_prefix;
    rc.chunked_prefill = !o->no_chunked;
    rc.kv_event_capacity = 0;
    rc.seed = 1;
    rc.flavour = o->cuda ? (const void *)&cuda : (const void *)&cpu;
    size_t bb = tb_cpu_backend_block_bytes_for(r->model, o->block_size ? o->block_size : 1,
                                               rc.kv_f16);
    rc.kv_cache_bytes = (int64_t)((o->kv_blocks ? o->kv_blocks : need_blocks) * bb);
    char err[512] = "";
    const struct tb_backend_ops *ops = o->cuda ? &tb_cuda_backend_ops : &tb_cpu_backend_ops;
    if (tb_runner_new(r->model, ops, &rc, &r->runner, err, sizeof err) != 0) {
        fprintf(stderr, "tb_forward: %s\n", err);
        return TB_EINVAL;
    }
    return TB_OK;
}

/* Records the timing of the step that just ran (--bench). */
static int s_time_step(struct run *r)
{
    struct tb_runner_step_info si;
    tb_runner_last_step(r->runner, &si);
    if (r->n_times == r->cap_times) {
        r->cap_times = r->cap_times ? 2 * r->cap_times : 256;
        struct step_time *nt = realloc(r->times, r->cap_times * sizeof(*nt));
        if (!nt) {
            return s_oom();
        }
        r->times = nt;
    }
    r->times[r->n_times++] = (struct step_time){si.n_seqs, si.n_tokens, si.decode,
                                                si.forward_seconds};
    return TB_OK;
}

/* Keeps what one output brings: its token, finish, logits rows. */
static void s_record(struct run *r, const struct tb_runner_output *out)
{
    struct req *q = out->user;
    uint32_t vocab = r->p->vocab;
    if (out->logits && q->rows && q->n_gen < q->max_gen) {
        memcpy(q->rows + (size_t)q->n_gen * vocab, out->logits, vocab * sizeof(float));
    }
    if (out->logits && r->o.all_logits) {
        memcpy(r->all[q->owner] + (size_t)(q->n_prompt - 1) * vocab, out->logits,
               vocab * sizeof(float));
    }
    if (q->n_gen < q->max_gen) {
        q->gen[q->n_gen++] = out->token;
    }
    q->n_cached = out->n_cached;
    if (out->finish != TB_FINISH_NONE) {
        q->done = true;
        q->finish = out->finish;
    }
}

/* Submits each request at its step and runs the runner until everything is done. */
static int s_loop(struct run *r)
{
    struct tb_sampling_params sp;
    tb_sampling_params_init(&sp);
    sp.temperature = 0.0f;
    sp.ignore_eos = !r->o.stop_eos;
    uint32_t n_submitted = 0;
    for (uint32_t step = 0;; step++) {
        for (uint32_t i = n_submitted; i < r->n_reqs && r->reqs[i].submit_at <= step; i++) {
            sp.max_tokens = r->reqs[i].max_gen;
            struct tb_runner_request rq = {.prompt = r->reqs[i].prompt,
                                           .n_prompt = r->reqs[i].n_prompt,
                                           .params = &sp,
                                           .user = &r->reqs[i]};
            if (tb_runner_submit(r->runner, &rq, NULL) != TB_OK) {
                fprintf(stderr, "tb_forward: request %u: %s\n", i, tb_runner_errmsg(r->runner));
                return TB_EINVAL;
            }
            r->reqs[i].submitted = true;
            n_submitted++;
        }
        if (!tb_runner_has_work(r->runner) && n_submitted == r->n_reqs) {
            return TB_OK;
        }
        const struct tb_runner_output *outs;
        uint32_t n_outs;
        int rc = tb_runner_step(r->runner, &outs, &n_outs);
        if (rc == TB_AGAIN && n_submitted == r->n_reqs) {
            fprintf(stderr, "tb_forward: the scheduler has work but planned nothing\n");
            return TB_EINVAL;
        }
        if (rc == TB_AGAIN) {
            continue;
        }
        if (rc != TB_OK) {
            fprintf(stderr, "tb_forward: step %u: %s\n", step, tb_runner_errmsg(r->runner));
            return rc;
        }
        if (r->o.bench && s_time_step(r) != TB_OK) {
            return TB_ENOMEM;
        }
        for (uint32_t i = 0; i < n_outs; i++) {
            s_record(r, &outs[i]);
        }
    }
}

static json_t *s_requests_json(const struct run *r)
{
    json_t *ja = json_array();
    for (uint32_t i = 0; i < r->n_reqs; i++) {
        const struct req *q = &r->reqs[i];
        json_t *jr = json_object();
        json_object_set_new(jr, "prompt_len", json_integer(q->n_prompt));
        json_t *g = json_array();
        for (uint32_t t = 0; t < q->n_gen; t++) {
            json_array_append_new(g, json_integer(q->gen[t]));
        }
        json_object_set_new(jr, "generated", g);
        json_object_set_new(jr, "finish", json_string(s_finish(q->finish)));
        json_object_set_new(jr, "n_cached", json_integer(q->n_cached));
        json_array_append_new(ja, jr);
    }
    return ja;
}

/* The cuda backend's figures: graphs captured and replayed, memory. */
static void s_cuda_json(json_t *out, const tb_backend_t *be)
{
    struct tb_cuda_backend_stats cs;
    tb_cuda_backend_get_stats(be, &cs);
    json_t *j = json_object();
    json_object_set_new(j, "graph_captures", json_integer((json_int_t)cs.graph_captures));
    json_object_set_new(j, "graph_replays", json_integer((json_int_t)cs.graph_replays));
    json_object_set_new(j, "direct_decodes", json_integer((json_int_t)cs.direct_decodes));
    json_object_set_new(j, "gemm_calls", json_integer((json_int_t)cs.gemm_calls));
    json_object_set_new(j, "weight_bytes", json_integer((json_int_t)cs.weight_bytes));
    json_object_set_new(j, "kv_bytes", json_integer((json_int_t)cs.kv_bytes));
    json_object_set_new(j, "forward_seconds", json_real(cs.forward_seconds));
    json_object_set_new(out, "cuda", j);
}

/* The JSON the tool prints: backend, requests, load, and with --bench the timings. */
static json_t *s_result_json(const struct run *r)
{
    const tb_backend_t *be = tb_runner_backend(r->runner);
    json_t *out = json_object();
    json_object_set_new(out, "model", json_string(r->o.model));
    if (r->o.cuda) {
        char desc[512] = "";
        tb_cuda_backend_ops.describe(be, desc, sizeof desc);
        json_object_set_new(out, "backend", json_string(desc));
        s_cuda_json(out, be);
    } else {
        json_object_set_new(out, "isa", json_string(tb_cpu_backend_isa(be)));
        json_object_set_new(out, "threads", json_integer(tb_cpu_backend_threads(be)));
    }
    json_object_set_new(out, "n_blocks", json_integer(tb_runner_n_blocks(r->runner)));
    json_object_set_new(out, "block_bytes",
                        json_integer((json_int_t)tb_runner_block_bytes(r->runner)));
    json_object_set_new(out, "requests", s_requests_json(r));
    struct tb_sched_load ld;
    tb_runner_get_load(r->runner, &ld);
    json_t *jl = json_object();
    json_object_set_new(jl, "steps", json_integer((json_int_t)ld.steps));
    json_object_set_new(jl, "preemptions", json_integer((json_int_t)ld.preemptions));
    json_object_set_new(jl, "prefix_query_tokens",
                        json_integer((json_int_t)ld.prefix_query_tokens));
    json_object_set_new(jl, "prefix_hit_tokens", json_integer((json_int_t)ld.prefix_hit_tokens));
    json_object_set_new(out, "load", jl);
    if (r->o.bench) {
        json_t *jb = s_bench_json(r->times, r->n_times);
        if (!r->o.cuda) {
            struct tb_cpu_backend_stats bs;
            tb_cpu_backend_get_stats(be, &bs);
            json_object_set_new(jb, "forward_seconds", json_real(bs.forward_seconds));
            json_object_set_new(jb, "forward_tokens", json_integer((json_int_t)bs.tokens));
        }
        json_object_set_new(out, "bench", jb);
    }
    return out;
}

/* --logits-out / --all-logits: one .npy per request (per user prompt with --all-logits). */
static int s_write_logits(const struct run *r)
{
    const struct opts *o = &r->o;
    const char *dir = o->all_logits ? o->all_logits : o->logits_out;
    if (!dir) {
        return TB_OK;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "tb_forward: cannot create '%s': %s\n", dir, strerror(errno));
        return TB_EIO;
    }
    for (uint32_t i = 0; i < (o->all_logits ? o->n_prompts : r->n_reqs); i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%u.npy", dir, i);
        int w = o->all_logits ? s_write_npy(path, r->all[i], o->prompts[i].n_prompt, r->p->vocab)
                              : s_write_npy(path, r->reqs[i].rows, r->reqs[i].n_gen, r->p->vocab);
        if (w != TB_OK) {
            return w;
        }
    }
    return TB_OK;
}

static void s_run_free(struct run *r)
{
    tb_runner_destroy(&r->runner);
    tb_model_close(&r->model);
    for (uint32_t i = 0; r->reqs && i < r->n_reqs; i++) {
        free(r->reqs[i].gen);
        free(r->reqs[i].rows);
    }
    free(r->reqs);
    for (uint32_t i = 0; r->all && i < r->o.n_prompts; i++) {
        free(r->all[i]);
    }
    free(r->all);
    for (uint32_t i = 0; i < r->o.n_prompts; i++) {
        free(r->o.prompts[i].prompt);
    }
    free(r->o.prompts);
    free(r->times);
}

int main(int argc, char **argv)
{
    int rc = 1;
    struct run r = {0};
    char err[512] = "";
    uint64_t need_blocks = 0;
    json_t *out = NULL;
    if (s_parse(argc, argv, &r.o) != TB_OK) {
        goto done;
    }
    if (tb_model_open(r.o.model, &r.model, err, sizeof err) != TB_OK) {
        fprintf(stderr, "tb_forward: %s\n", err);
        goto done;
    }
    r.p = tb_model_params(r.model);
    if (s_add_random(&r.o, r.p->vocab) != TB_OK || s_make_reqs(&r, &need_blocks) != TB_OK ||
        s_new_runner(&r, need_blocks) != TB_OK || s_loop(&r) != TB_OK) {
        goto done;
    }
    out = s_result_json(&r);
    if (s_write_logits(&r) != TB_OK) {
        goto done;
    }
    char *s = json_dumps(out, JSON_COMPACT);
    if (!s) {
        goto done;
    }
    puts(s);
    free(s);
    rc = 0;
done:
    json_decref(out);
    s_run_free(&r);
    return rc;
}
