/*
 * tb_forward - runs token ids through the cpu backend with the engine's real scheduler, KV
 * manager and sampler, for the tests that hold the forward pass to the reference
 * (tools/tb_ref_forward.py) and for benchmarks.
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
#include <time.h>

#include "cpu/tb_cpu_backend.h"
#include "tb_errors.h"
#include "tb_kv_manager.h"
#include "tb_model.h"
#include "tb_sampler.h"
#include "tb_scheduler.h"

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
            "       [--no-prefix-cache] [--no-chunked-prefill]\n");
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

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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

int main(int argc, char **argv)
{
    int rc = 1;
    struct opts o;
    char err[512] = "";
    tb_model_t *model = NULL;
    tb_backend_t *be = NULL;
    tb_kv_manager_t *kv = NULL;
    tb_sampler_t *sampler = NULL;
    tb_scheduler_t *sched = NULL;
    struct req *reqs = NULL;
    uint32_t n_reqs = 0;
    float *logits = NULL, **all = NULL;
    int32_t *sampled = NULL;
    struct step_time *times = NULL;
    uint32_t n_times = 0, cap_times = 0;
    json_t *out = NULL;
    const struct tb_backend_ops *ops = &tb_cpu_backend_ops;

    if (s_parse(argc, argv, &o) != TB_OK) {
        goto done;
    }
    if (tb_model_open(o.model, &model, err, sizeof err) != TB_OK) {
        fprintf(stderr, "tb_forward: %s\n", err);
        goto done;
    }
    const struct tb_model_params *p = tb_model_params(model);
    if (s_add_random(&o, p->vocab) != TB_OK) {
        goto done;
    }

    /* the requests the scheduler sees */
    if (o.all_logits) {
        for (uint32_t i = 0; i < o.n_prompts; i++) {
            n_reqs += o.prompts[i].n_prompt;
        }
    } else {
        n_reqs = o.n_prompts;
    }
    reqs = calloc(n_reqs, sizeof(*reqs));
    all = calloc(o.n_prompts, sizeof(*all));
    if (!reqs || !all) {
        fprintf(stderr, "tb_forward: out of memory\n");
        goto done;
    }
    uint32_t k = 0;
    uint64_t need_blocks = 0;
    for (uint32_t i = 0; i < o.n_prompts; i++) {
        struct req *src = &o.prompts[i];
        uint32_t lens = o.all_logits ? src->n_prompt : 1;
        if (o.all_logits) {
            all[i] = calloc((size_t)src->n_prompt * p->vocab, sizeof(float));
            if (!all[i]) {
                fprintf(stderr, "tb_forward: out of memory\n");
                goto done;
            }
        }
        for (uint32_t j = 0; j < lens; j++) {
            struct req *r = &reqs[k];
            r->prompt = src->prompt;
            r->n_prompt = o.all_logits ? j + 1 : src->n_prompt;
            r->owner = (int)i;
            r->max_gen = o.all_logits ? 1 : (o.generate ? o.generate : 1);
            r->submit_at = k * o.stagger;
            r->gen = calloc(r->max_gen, sizeof(int32_t));
            if (o.logits_out) {
                r->rows = calloc((size_t)r->max_gen * p->vocab, sizeof(float));
            }
            if (!r->gen || (o.logits_out && !r->rows)) {
                fprintf(stderr, "tb_forward: out of memory\n");
                goto done;
            }
            need_blocks += (r->n_prompt + r->max_gen + o.block_size - 1) / o.block_size + 1;
            k++;
        }
    }

    struct tb_backend_config bc = {
        .threads = o.threads,
        .block_size = o.block_size,
        .max_batch_tokens = o.max_batch_tokens,
        .max_batch_seqs = o.max_batch_seqs,
        .kv_f16 = !o.kv_f32,
    };
    size_t bb = tb_cpu_backend_block_bytes_for(model, o.block_size ? o.block_size : 1, bc.kv_f16);
    uint64_t blocks = o.kv_blocks ? o.kv_blocks : need_blocks;
    bc.kv_budget_bytes = (int64_t)(blocks * bb);
    uint32_t n_blocks = 0;
    if (ops->create(model, &bc, &be, &n_blocks, err, sizeof err) != TB_OK) {
        fprintf(stderr, "tb_forward: %s\n", err);
        goto done;
    }
    struct tb_kv_config kc;
    tb_kv_config_init(&kc);
    kc.n_blocks = n_blocks;
    kc.block_size = o.block_size;
    kc.prefix_caching = !o.no_prefix;
    kc.event_capacity = 0;
    if (tb_kv_manager_new(&kc, &kv) != TB_OK) {
        fprintf(stderr, "tb_forward: cannot create the KV manager\n");
        goto done;
    }
    struct tb_sampler_config sc = {.vocab_size = p->vocab, .seed = 1};
    for (uint32_t i = 0; i < p->n_eos_ids && i < TB_SAMPLER_MAX_EOS; i++) {
        if (p->eos_ids[i] >= 0 && (uint32_t)p->eos_ids[i] < p->vocab) {
            sc.eos_ids[sc.n_eos++] = p->eos_ids[i];
        }
    }
    if (tb_sampler_new(&sc, &sampler) != TB_OK) {
        fprintf(stderr, "tb_forward: cannot create the sampler\n");
        goto done;
    }
    struct tb_sched_config scfg;
    tb_sched_config_init(&scfg);
    scfg.max_batch_seqs = o.max_batch_seqs;
    scfg.max_batch_tokens = o.max_batch_tokens;
    scfg.max_seqs = n_reqs > o.max_batch_seqs ? n_reqs : o.max_batch_seqs;
    scfg.max_model_len = p->max_context >= 2 ? p->max_context : 2;
    scfg.chunked_prefill = !o.no_chunked;
    if (tb_scheduler_new(&scfg, kv, sampler, &sched, err, sizeof err) != TB_OK) {
        fprintf(stderr, "tb_forward: %s\n", err);
        goto done;
    }
    logits = malloc((size_t)o.max_batch_seqs * p->vocab * sizeof(float));
    sampled = malloc((size_t)o.max_batch_seqs * sizeof(int32_t));
    if (!logits || !sampled) {
        fprintf(stderr, "tb_forward: out of memory\n");
        goto done;
    }

    struct tb_sampling_params sp;
    tb_sampling_params_init(&sp);
    sp.temperature = 0.0f;
    sp.ignore_eos = !o.stop_eos;
    uint32_t n_submitted = 0;
    for (uint32_t step = 0;; step++) {
        for (uint32_t i = n_submitted; i < n_reqs && reqs[i].submit_at <= step; i++) {
            sp.max_tokens = reqs[i].max_gen;
            struct tb_sched_request rq = {.id = i + 1,
                                          .prompt = reqs[i].prompt,
                                          .n_prompt = reqs[i].n_prompt,
                                          .params = &sp,
                                          .user = &reqs[i]};
            if (tb_scheduler_submit(sched, &rq) != TB_OK) {
                fprintf(stderr, "tb_forward: request %u: %s\n", i,
                        tb_scheduler_errmsg(sched));
                goto done;
            }
            reqs[i].submitted = true;
            n_submitted++;
        }
        if (!tb_scheduler_has_work(sched) && n_submitted == n_reqs) {
            break;
        }
        const struct tb_sched_plan *plan;
        if (tb_scheduler_step(sched, &plan) != TB_OK) {
            fprintf(stderr, "tb_forward: %s\n", tb_scheduler_errmsg(sched));
            goto done;
        }
        if (plan->n_seqs == 0) {
            if (n_submitted == n_reqs) {
                fprintf(stderr, "tb_forward: the scheduler has work but planned nothing\n");
                goto done;
            }
            continue;
        }
        double t0 = s_now();
        if (ops->forward(be, plan, logits, err, sizeof err) != TB_OK) {
            fprintf(stderr, "tb_forward: step %u: %s\n", step, err);
            goto done;
        }
        double dt = s_now() - t0;
        if (o.bench) {
            if (n_times == cap_times) {
                cap_times = cap_times ? 2 * cap_times : 256;
                struct step_time *nt = realloc(times, cap_times * sizeof(*nt));
                if (!nt) {
                    fprintf(stderr, "tb_forward: out of memory\n");
                    goto done;
                }
                times = nt;
            }
            bool decode = true;
            for (uint32_t i = 0; i < plan->n_seqs; i++) {
                decode = decode && plan->seqs[i].n_tokens == 1;
            }
            times[n_times++] = (struct step_time){plan->n_seqs, plan->n_tokens, decode, dt};
        }
        uint32_t row = 0;
        for (uint32_t i = 0; i < plan->n_seqs; i++) {
            const struct tb_sched_entry *e = &plan->seqs[i];
            sampled[i] = -1;
            if (!e->need_logits) {
                continue;
            }
            const float *lr = logits + (size_t)row * p->vocab;
            struct tb_sample smp;
            if (tb_sampler_sample(sampler, e->sampler, lr, &smp) == TB_OK) {
                sampled[i] = smp.token;
            }
            struct req *r = e->user;
            if (r->rows && r->n_gen < r->max_gen) {
                memcpy(r->rows + (size_t)r->n_gen * p->vocab, lr, p->vocab * sizeof(float));
            }
            if (o.all_logits) {
                memcpy(all[r->owner] + (size_t)(r->n_prompt - 1) * p->vocab, lr,
                       p->vocab * sizeof(float));
            }
            row++;
        }
        const struct tb_sched_output *outs;
        uint32_t n_outs;
        if (tb_scheduler_complete(sched, sampled, &outs, &n_outs) != TB_OK) {
            fprintf(stderr, "tb_forward: %s\n", tb_scheduler_errmsg(sched));
            goto done;
        }
        for (uint32_t i = 0; i < n_outs; i++) {
            struct req *r = outs[i].user;
            if (r->n_gen < r->max_gen) {
                r->gen[r->n_gen++] = outs[i].token;
            }
            r->n_cached = outs[i].n_cached;
            if (outs[i].finish != TB_FINISH_NONE) {
                r->done = true;
                r->finish = outs[i].finish;
            }
        }
    }

    /* outputs */
    out = json_object();
    json_object_set_new(out, "model", json_string(o.model));
    json_object_set_new(out, "isa", json_string(tb_cpu_backend_isa(be)));
    json_object_set_new(out, "threads", json_integer(tb_cpu_backend_threads(be)));
    json_object_set_new(out, "n_blocks", json_integer(n_blocks));
    json_object_set_new(out, "block_bytes", json_integer((json_int_t)ops->block_bytes(be)));
    json_t *ja = json_array();
    for (uint32_t i = 0; i < n_reqs; i++) {
        struct req *r = &reqs[i];
        json_t *jr = json_object();
        json_object_set_new(jr, "prompt_len", json_integer(r->n_prompt));
        json_t *g = json_array();
        for (uint32_t t = 0; t < r->n_gen; t++) {
            json_array_append_new(g, json_integer(r->gen[t]));
        }
        json_object_set_new(jr, "generated", g);
        json_object_set_new(jr, "finish", json_string(s_finish(r->finish)));
        json_object_set_new(jr, "n_cached", json_integer(r->n_cached));
        json_array_append_new(ja, jr);
    }
    json_object_set_new(out, "requests", ja);
    struct tb_sched_load ld;
    tb_scheduler_get_load(sched, &ld);
    json_t *jl = json_object();
    json_object_set_new(jl, "steps", json_integer((json_int_t)ld.steps));
    json_object_set_new(jl, "preemptions", json_integer((json_int_t)ld.preemptions));
    json_object_set_new(jl, "prefix_query_tokens",
                        json_integer((json_int_t)ld.prefix_query_tokens));
    json_object_set_new(jl, "prefix_hit_tokens", json_integer((json_int_t)ld.prefix_hit_tokens));
    json_object_set_new(out, "load", jl);
    if (o.bench) {
        json_t *jb = s_bench_json(times, n_times);
        struct tb_cpu_backend_stats bs;
        tb_cpu_backend_get_stats(be, &bs);
        json_object_set_new(jb, "forward_seconds", json_real(bs.forward_seconds));
        json_object_set_new(jb, "forward_tokens", json_integer((json_int_t)bs.tokens));
        json_object_set_new(out, "bench", jb);
    }
    const char *dir = o.all_logits ? o.all_logits : o.logits_out;
    if (dir) {
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "tb_forward: cannot create '%s': %s\n", dir, strerror(errno));
            goto done;
        }
        for (uint32_t i = 0; i < (o.all_logits ? o.n_prompts : n_reqs); i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%u.npy", dir, i);
            int w = o.all_logits
                        ? s_write_npy(path, all[i], o.prompts[i].n_prompt, p->vocab)
                        : s_write_npy(path, reqs[i].rows, reqs[i].n_gen, p->vocab);
            if (w != TB_OK) {
                goto done;
            }
        }
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
    tb_scheduler_destroy(&sched);
    tb_sampler_destroy(&sampler);
    tb_kv_manager_destroy(&kv);
    if (be) {
        ops->destroy(&be);
    }
    tb_model_close(&model);
    for (uint32_t i = 0; reqs && i < n_reqs; i++) {
        free(reqs[i].gen);
        free(reqs[i].rows);
    }
    free(reqs);
    for (uint32_t i = 0; all && i < o.n_prompts; i++) {
        free(all[i]);
    }
    free(all);
    for (uint32_t i = 0; i < o.n_prompts; i++) {
        free(o.prompts[i].prompt);
    }
    free(o.prompts);
    free(logits);
    free(sampled);
    free(times);
    return rc;
}
