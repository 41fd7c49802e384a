/*
 * test_scheduler.c - continuous batching against a fake forward pass.
 *
 * The fake model keeps a "KV cache" of one 64-bit value per token slot, in memory laid out as
 * the scheduler's slots say: the value at position p is a hash of the value at p-1 (read back
 * through the block table, as attention would), the token and p.  Logits come from the value at
 * the last position.  So a token's logits depend on the whole history as stored in the cache:
 * a wrong block table, a shared block overwritten, a stale prefix hit, a lost token or a bad
 * recompute after preemption changes the output.  Every request's output is compared with a
 * reference computed from its prompt alone, with no scheduler and no cache, through the same
 * sampler: alone, among 15 others, chunked, preempted or served from the prefix cache, the
 * tokens must be the same.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_kv_manager.h"
#include "tb_rng.h"
#include "tb_sampler.h"
#include "tb_scheduler.h"

#define V 64  /* vocabulary */
#define EOS 0 /* the fake model's end-of-sequence id */
#define MAXREQ 32
#define MAXTOK 512
#define ROOT_KV 0x5eed5eed5eed5eedULL

/* ---- the fake model ---- */

static uint64_t s_mix(uint64_t prev, int32_t tok, uint32_t pos)
{
    uint64_t st = prev ^ ((uint64_t)(uint32_t)tok * 0x9e3779b97f4a7c15ULL) ^
                  ((uint64_t)pos << 40);
    return tb_rng_splitmix64(&st);
}

static void s_logits(uint64_t h, float *row)
{
    for (uint32_t v = 0; v < V; v++) {
        uint64_t st = h + v * 0xd1b54a32d192ed03ULL;
        row[v] = (float)(tb_rng_splitmix64(&st) >> 40) * (8.0f / 16777216.0f);
    }
}

/* A request as the tests describe it. */
struct req {
    uint64_t id;
    int32_t prompt[MAXTOK];
    uint32_t n_prompt;
    struct tb_sampling_params p;
};

/* What came out for a request. */
struct result {
    int32_t toks[MAXTOK];
    uint32_t n;
    enum tb_finish_reason why;
    uint32_t n_cached;
    bool done;
    uint32_t max_ctx; /* largest n_ctx seen in a plan */
    bool went_back;   /* a later plan restarted it below what it had computed: preempted */
};

struct harness {
    struct tb_sched_config cfg;
    uint32_t n_blocks, bs;
    bool caching;
    tb_kv_manager_t *kv;
    tb_sampler_t *smp;
    tb_scheduler_t *s;
    uint64_t *mem;  /* the fake cache */
    uint64_t *snap; /* the cache as it was when the step began */
    struct result res[MAXREQ];
    uint32_t steps, max_running, preempted;
    /* forcing tokens instead of sampling (finish-reason tests) */
    const int32_t *force;
    uint32_t n_force, i_force;
};

static void s_open(struct harness *h, uint32_t n_blocks, uint32_t bs, bool caching,
                   const struct tb_sched_config *cfg)
{
    memset(h, 0, sizeof *h);
    h->n_blocks = n_blocks;
    h->bs = bs;
    h->caching = caching;
    h->cfg = *cfg;
    struct tb_kv_config kc;
    tb_kv_config_init(&kc);
    kc.n_blocks = n_blocks;
    kc.block_size = bs;
    kc.prefix_caching = caching;
    assert_int_equal(tb_kv_manager_new(&kc, &h->kv), 0);
    struct tb_sampler_config sc = {.vocab_size = V, .eos_ids = {EOS}, .n_eos = 1, .seed = 77};
    assert_int_equal(tb_sampler_new(&sc, &h->smp), 0);
    char err[256];
    assert_int_equal(tb_scheduler_new(cfg, h->kv, h->smp, &h->s, err, sizeof err), 0);
    h->mem = calloc((size_t)n_blocks * bs, sizeof *h->mem);
    h->snap = calloc((size_t)n_blocks * bs, sizeof *h->snap);
    assert_non_null(h->mem);
    assert_non_null(h->snap);
}

static void s_close(struct harness *h)
{
    tb_scheduler_destroy(&h->s);
    assert_null(h->s);
    /* Everything returned: no block is referenced. */
    struct tb_kv_usage u;
    tb_kv_manager_get_usage(h->kv, &u);
    assert_int_equal(u.used, 0);
    tb_sampler_destroy(&h->smp);
    tb_kv_manager_destroy(&h->kv);
    free(h->mem);
    free(h->snap);
}

static void s_cfg(struct tb_sched_config *c, uint32_t batch_seqs, uint32_t batch_tokens,
                  uint32_t model_len)
{
    tb_sched_config_init(c);
    c->max_batch_seqs = batch_seqs;
    c->max_batch_tokens = batch_tokens;
    c->max_model_len = model_len;
}

static uint32_t s_slot(const struct tb_sched_entry *e, uint32_t pos, uint32_t bs)
{
    assert_true(pos / bs < e->n_blocks);
    return e->block_table[pos / bs] * bs + pos % bs;
}

/* Runs one plan on the fake cache, checking it; samples (or forces) the tokens.  As in a real
 * batched forward pass, a token sees the cache as it was when the step began plus the tokens
 * of its own chunk, never what another sequence writes in the same step. */
static void s_forward(struct harness *h, const struct tb_sched_plan *p, int32_t *sampled)
{
    memcpy(h->snap, h->mem, (size_t)h->n_blocks * h->bs * sizeof *h->mem);
    assert_true(p->n_tokens <= h->cfg.max_batch_tokens);
    assert_true(p->n_seqs <= h->cfg.max_batch_seqs);
    uint32_t at = 0, n_logits = 0;
    for (uint32_t e = 0; e < p->n_seqs; e++) {
        const struct tb_sched_entry *en = &p->seqs[e];
        assert_int_equal(en->start, at);
        assert_true(en->n_tokens >= 1);
        assert_int_equal(en->n_ctx, en->pos + en->n_tokens);
        assert_true((uint64_t)en->n_blocks * h->bs >= en->n_ctx);
        uint32_t n_all;
        const int32_t *all = tb_scheduler_seq_tokens(h->s, en->id, &n_all);
        assert_non_null(all);
        assert_true(en->n_ctx <= n_all);
        assert_int_equal(en->need_logits, en->n_ctx == n_all);
        struct result *r = &h->res[en->id];
        if (en->pos < r->max_ctx) {
            r->went_back = true;
        }
        if (en->n_ctx > r->max_ctx) {
            r->max_ctx = en->n_ctx;
        }
        for (uint32_t i = 0; i < en->n_tokens; i++) {
            uint32_t pos = en->pos + i;
            assert_int_equal(p->positions[at + i], pos);
            assert_int_equal(p->tokens[at + i], all[pos]);
            uint32_t slot = p->slots[at + i];
            assert_int_equal(slot, s_slot(en, pos, h->bs));
            /* A block being written belongs to this sequence alone. */
            assert_int_equal(tb_kv_manager_ref_count(h->kv, slot / h->bs), 1);
            uint64_t prev = ROOT_KV;
            if (pos > en->pos) {
                prev = h->mem[s_slot(en, pos - 1, h->bs)];
            } else if (pos > 0) {
                prev = h->snap[s_slot(en, pos - 1, h->bs)];
            }
            h->mem[slot] = s_mix(prev, all[pos], pos);
        }
        if (en->need_logits) {
            float row[V];
            s_logits(h->mem[s_slot(en, en->n_ctx - 1, h->bs)], row);
            if (h->force) {
                int32_t t = h->force[h->i_force++ % h->n_force];
                if (t >= 0) {
                    assert_int_equal(tb_sampler_seq_accept(en->sampler, t), 0);
                }
                sampled[e] = t;
            } else {
                struct tb_sample smp;
                assert_int_equal(tb_sampler_sample(h->smp, en->sampler, row, &smp), 0);
                sampled[e] = smp.token;
            }
            n_logits++;
        } else {
            sampled[e] = -7; /* ignored */
        }
        at += en->n_tokens;
    }
    assert_int_equal(at, p->n_tokens);
    assert_int_equal(n_logits, p->n_logits);
}

static void s_collect_outs(struct harness *h, const struct tb_sched_output *outs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const struct tb_sched_output *o = &outs[i];
        assert_true(o->id < MAXREQ);
        struct result *r = &h->res[o->id];
        assert_false(r->done);
        assert_true((uintptr_t)o->user == o->id + 1000);
        if (o->token >= 0) {
            r->toks[r->n++] = o->token;
        }
        assert_int_equal(o->n_generated, r->n);
        r->n_cached = o->n_cached;
        if (o->finish != TB_FINISH_NONE) {
            r->why = o->finish;
            r->done = true;
        }
    }
}

/* One step: plan, fake forward, complete.  Returns the plan's sequence count. */
static uint32_t s_step(struct harness *h)
{
    const struct tb_sched_plan *p;
    assert_int_equal(tb_scheduler_step(h->s, &p), 0);
    if (p->n_seqs == 0) {
        return 0;
    }
    uint32_t n_seqs = p->n_seqs; /* the plan is gone after complete */
    h->steps++;
    h->preempted += p->n_preempted;
    struct tb_sched_load ld;
    tb_scheduler_get_load(h->s, &ld);
    assert_true(ld.running <= h->cfg.max_batch_seqs);
    if (ld.running > h->max_running) {
        h->max_running = ld.running;
    }
    int32_t sampled[256];
    s_forward(h, p, sampled);
    const struct tb_sched_output *outs;
    uint32_t n;
    assert_int_equal(tb_scheduler_complete(h->s, sampled, &outs, &n), 0);
    s_collect_outs(h, outs, n);
    return n_seqs;
}

static void s_submit(struct harness *h, const struct req *r)
{
    struct tb_sched_request q = {.id = r->id,
                                 .prompt = r->prompt,
                                 .n_prompt = r->n_prompt,
                                 .params = &r->p,
                                 .user = (void *)(uintptr_t)(r->id + 1000)};
    int rc = tb_scheduler_submit(h->s, &q);
    if (rc != 0) {
        fail_msg("submit %llu: %s", (unsigned long long)r->id, tb_scheduler_errmsg(h->s));
    }
}

/* Steps until idle; every step with work left must schedule something. */
static void s_run(struct harness *h)
{
    for (uint32_t guard = 0; tb_scheduler_has_work(h->s); guard++) {
        assert_true(guard < 100000);
        assert_true(s_step(h) > 0);
    }
}

/* The tokens request `r` must produce: the same model and sampler, no scheduler, no cache. */
static void s_reference(const struct req *r, uint32_t model_len, uint32_t cache_slots,
                        struct result *out)
{
    memset(out, 0, sizeof *out);
    struct tb_sampler_config sc = {.vocab_size = V, .eos_ids = {EOS}, .n_eos = 1, .seed = 77};
    tb_sampler_t *smp;
    assert_int_equal(tb_sampler_new(&sc, &smp), 0);
    tb_sampler_seq_t *q;
    assert_int_equal(tb_sampler_seq_new(smp, &r->p, r->prompt, r->n_prompt, &q), 0);
    uint32_t max_len = model_len < cache_slots ? model_len : cache_slots;
    if (r->p.max_tokens > 0 && r->n_prompt + r->p.max_tokens < max_len) {
        max_len = r->n_prompt + r->p.max_tokens;
    }
    uint64_t hv = ROOT_KV;
    uint32_t pos = 0;
    for (; pos < r->n_prompt; pos++) {
        hv = s_mix(hv, r->prompt[pos], pos);
    }
    for (;;) {
        float row[V];
        s_logits(hv, row);
        struct tb_sample smpl;
        assert_int_equal(tb_sampler_sample(smp, q, row, &smpl), 0);
        int32_t t = smpl.token;
        out->toks[out->n++] = t;
        bool stop = (!r->p.ignore_eos && t == EOS) || tb_sampler_seq_is_stop(q, t);
        if (out->n >= r->p.min_tokens && stop) {
            out->why = TB_FINISH_STOP;
            break;
        }
        if (r->n_prompt + out->n >= max_len) {
            out->why = TB_FINISH_LENGTH;
            break;
        }
        hv = s_mix(hv, t, pos++);
    }
    tb_sampler_seq_destroy(&q);
    tb_sampler_destroy(&smp);
}

static void s_expect_reference(const struct harness *h, const struct req *r)
{
    struct result ref;
    s_reference(r, h->cfg.max_model_len, h->n_blocks * h->bs, &ref);
    const struct result *got = &h->res[r->id];
    assert_true(got->done);
    uint32_t k = 0;
    while (k < got->n && k < ref.n && got->toks[k] == ref.toks[k]) {
        k++;
    }
    if (got->n != ref.n || k != ref.n) {
        fail_msg("request %llu: %u tokens, the reference %u, first difference at %u",
                 (unsigned long long)r->id, got->n, ref.n, k);
    }
    assert_int_equal(got->why, ref.why);
}

/* A request with a prompt made from `seed`; the first `shared` tokens come from seed 0 so
 * that requests share prefixes. */
static void s_make(struct req *r, uint64_t id, uint32_t n_prompt, uint32_t shared, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    r->id = id;
    r->n_prompt = n_prompt;
    struct tb_rng a, b;
    tb_rng_seed(&a, 1000);
    tb_rng_seed(&b, seed);
    for (uint32_t i = 0; i < n_prompt; i++) {
        uint64_t x = i < shared ? tb_rng_next(&a) : tb_rng_next(&b);
        r->prompt[i] = 1 + (int32_t)(x % (V - 1)); /* never EOS */
    }
    tb_sampling_params_init(&r->p);
    r->p.temperature = 0.0f;
    r->p.max_tokens = 24;
}

/* ---- tests ---- */

static void test_config_errors(void **state)
{
    (void)state;
    struct tb_kv_config kc;
    tb_kv_config_init(&kc);
    kc.n_blocks = 8;
    tb_kv_manager_t *kv;
    assert_int_equal(tb_kv_manager_new(&kc, &kv), 0);
    struct tb_sampler_config sc = {.vocab_size = V};
    tb_sampler_t *smp;
    assert_int_equal(tb_sampler_new(&sc, &smp), 0);
    struct tb_sched_config c;
    tb_sched_config_init(&c);
    assert_int_equal(c.max_batch_seqs, 64);
    assert_int_equal(c.max_batch_tokens, 2048);
    assert_true(c.chunked_prefill);
    tb_scheduler_t *s = NULL;
    char err[256];
    assert_int_equal(tb_scheduler_new(&c, kv, smp, &s, err, sizeof err), TB_ECONFIG);
    assert_non_null(strstr(err, "max_model_len"));
    c.max_model_len = 100;
    c.max_batch_seqs = 0;
    assert_int_equal(tb_scheduler_new(&c, kv, smp, &s, err, sizeof err), TB_ECONFIG);
    c.max_batch_seqs = 8;
    c.max_seqs = 4;
    assert_int_equal(tb_scheduler_new(&c, kv, smp, &s, err, sizeof err), TB_ECONFIG);
    assert_non_null(strstr(err, "max_seqs"));
    c.max_seqs = 16;
    c.chunked_prefill = false;
    c.max_batch_tokens = 64; /* the longest sequence is min(100, 8 * 16 = 128) = 100 */
    assert_int_equal(tb_scheduler_new(&c, kv, smp, &s, err, sizeof err), TB_ECONFIG);
    assert_non_null(strstr(err, "chunked_prefill"));
    assert_null(s);
    c.max_batch_tokens = 100;
    assert_int_equal(tb_scheduler_new(&c, kv, smp, &s, err, sizeof err), 0);
    tb_scheduler_destroy(&s);
    tb_scheduler_destroy(&s);
    tb_sampler_destroy(&smp);
    tb_kv_manager_destroy(&kv);
}

static void test_submit_errors(void **state)
{
    (void)state;
    struct harness h;
    struct tb_sched_config c;
    s_cfg(&c, 4, 64, 40);
    c.max_seqs = 4;
    s_open(&h, 4, 4, true, &c); /* 16 token slots */
    struct req r;
    s_make(&r, 1, 10, 0, 1);
    struct tb_sched_request q = {.id = 1, .prompt = r.prompt, .n_prompt = 0, .params = &r.p};
    assert_int_equal(tb_scheduler_submit(h.s, &q), TB_EINVAL);
    assert_non_null(strstr(tb_scheduler_errmsg(h.s), "empty"));
    q.n_prompt = 10;
    r.prompt[3] = V; /* outside the vocabulary */
    assert_int_equal(tb_scheduler_submit(h.s, &q), TB_EINVAL);
    assert_non_null(strstr(tb_scheduler_errmsg(h.s), "vocabulary"));
    r.prompt[3] = 5;
    r.p.top_p = 0.0f;
    assert_int_equal(tb_scheduler_submit(h.s, &q), TB_EINVAL);
    assert_non_null(strstr(tb_scheduler_errmsg(h.s), "top_p"));
    r.p.top_p = 1.0f;
    q.n_prompt = 16; /* fits the context (40) but not the cache (16 slots) */
    assert_int_equal(tb_scheduler_submit(h.s, &q), TB_E2BIG);
    assert_non_null(strstr(tb_scheduler_errmsg(h.s), "KV cache"));
    q.n_prompt = 10;
    assert_int_equal(tb_scheduler_submit(h.s, &q), 0);
    assert_string_equal(tb_scheduler_errmsg(h.s), "");
    assert_int_equal(tb_scheduler_submit(h.s, &q), TB_EEXIST);
    for (uint64_t id = 2; id <= 4; id++) {
        q.id = id;
        assert_int_equal(tb_scheduler_submit(h.s, &q), 0);
    }
    q.id = 5;
    assert_int_equal(tb_scheduler_submit(h.s, &q), TB_EOVERLOAD);
    assert_int_equal(tb_scheduler_cancel(h.s, 77), TB_ENOENT);
    for (uint64_t id = 1; id <= 4; id++) {
        assert_int_equal(tb_scheduler_cancel(h.s, id), 0);
    }
    assert_false(tb_scheduler_has_work(h.s));
    s_close(&h);

    /* The context: a prompt must leave room for one token. */
    s_cfg(&c, 4, 64, 12);
    s_open(&h, 16, 4, true, &c);
    q.id = 9;
    q.n_prompt = 12;
    assert_int_equal(tb_scheduler_submit(h.s, &q), TB_ECONTEXT);
    assert_non_null(strstr(tb_scheduler_errmsg(h.s), "context"));
    q.n_prompt = 11;
    assert_int_equal(tb_scheduler_submit(h.s, &q), 0);
    s_close(&h); /* destroy with a live request returns its blocks */
}

/* The headline property: alone, or among 15 others (sharing prefixes, different lengths), a
 * request yields the same greedy tokens, which are the reference's. */
static void test_alone_vs_batched(void **state)
{
    (void)state;
    enum { N = 16 };
    struct req *r = calloc(N, sizeof *r);
    assert_non_null(r);
    for (uint32_t i = 0; i < N; i++) {
        s_make(&r[i], i, 5 + (i * 7) % 40, (i % 3) * 12, 100 + i);
        r[i].p.max_tokens = 10 + (i * 5) % 30;
        r[i].p.ignore_eos = i % 4 == 0;
    }
    struct tb_sched_config c;
    s_cfg(&c, 16, 512, 256);
    struct result alone[N];
    for (uint32_t i = 0; i < N; i++) {
        struct harness h;
        s_open(&h, 512, 16, true, &c);
        s_submit(&h, &r[i]);
        s_run(&h);
        s_expect_reference(&h, &r[i]);
        alone[i] = h.res[i];
        s_close(&h);
    }
    struct harness h;
    s_open(&h, 512, 16, true, &c);
    for (uint32_t i = 0; i < N; i++) {
        s_submit(&h, &r[i]);
    }
    s_run(&h);
    assert_int_equal(h.max_running, N); /* they really ran together */
    for (uint32_t i = 0; i < N; i++) {
        s_expect_reference(&h, &r[i]);
        assert_int_equal(h.res[i].n, alone[i].n);
        assert_memory_equal(h.res[i].toks, alone[i].toks, alone[i].n * sizeof(int32_t));
    }
    struct tb_sched_load ld;
    tb_scheduler_get_load(h.s, &ld);
    assert_int_equal(ld.running, 0);
    assert_int_equal(ld.waiting, 0);
    assert_true(ld.steps == h.steps);
    s_close(&h);
    free(r);
}

/* Seeded random sampling (temperature, top_p, penalties) is as reproducible as greedy. */
static void test_seeded_sampling_batched(void **state)
{
    (void)state;
    enum { N = 8 };
    struct req *r = calloc(N, sizeof *r);
    assert_non_null(r);
    for (uint32_t i = 0; i < N; i++) {
        s_make(&r[i], i, 6 + i * 3, 8, 300 + i);
        r[i].p.temperature = 0.8f + 0.1f * (float)i;
        r[i].p.top_p = 0.9f;
        r[i].p.top_k = i % 2 ? 20 : 0;
        r[i].p.frequency_penalty = 0.3f;
        r[i].p.has_seed = true;
        r[i].p.seed = 5000 + i;
        r[i].p.max_tokens = 30;
        r[i].p.min_tokens = 5;
    }
    struct tb_sched_config c;
    s_cfg(&c, 8, 32, 256);
    struct harness h;
    s_open(&h, 64, 8, true, &c);
    for (uint32_t i = 0; i < N; i++) {
        s_submit(&h, &r[i]);
    }
    s_run(&h);
    for (uint32_t i = 0; i < N; i++) {
        s_expect_reference(&h, &r[i]);
        assert_true(h.res[i].n >= 5);
    }
    s_close(&h);
    free(r);
}

/* A long prompt arriving while three sequences decode is cut into chunks that fit beside the
 * decodes: every decode gets its token at every step. */
static void test_chunked_prefill_interleaves(void **state)
{
    (void)state;
    struct tb_sched_config c;
    s_cfg(&c, 8, 16, 256);
    struct harness h;
    s_open(&h, 128, 4, true, &c);
    struct req r[4];
    for (uint32_t i = 0; i < 3; i++) {
        s_make(&r[i], i, 4, 0, 10 + i);
        r[i].p.max_tokens = 60;
        r[i].p.ignore_eos = true;
        s_submit(&h, &r[i]);
    }
    s_step(&h); /* the three prefills */
    s_step(&h); /* the three decode */
    s_make(&r[3], 3, 100, 0, 99);
    r[3].p.max_tokens = 5;
    r[3].p.ignore_eos = true;
    s_submit(&h, &r[3]);
    uint32_t prefill_steps = 0;
    for (;;) {
        const struct tb_sched_plan *p;
        assert_int_equal(tb_scheduler_step(h.s, &p), 0);
        assert_int_equal(p->n_seqs, 4);
        for (uint32_t e = 0; e < 3; e++) {
            assert_true(p->seqs[e].id < 3);           /* the decodes first ... */
            assert_int_equal(p->seqs[e].n_tokens, 1); /* ... one token each */
            assert_true(p->seqs[e].need_logits);
        }
        const struct tb_sched_entry *lp = &p->seqs[3];
        assert_int_equal(lp->id, 3);
        assert_int_equal(lp->n_tokens, lp->pos + 13 <= 100 ? 13 : 100 - lp->pos);
        assert_int_equal(p->n_tokens, 3 + lp->n_tokens);
        bool last = lp->need_logits;
        prefill_steps++;
        int32_t sampled[8];
        s_forward(&h, p, sampled);
        const struct tb_sched_output *outs;
        uint32_t n;
        assert_int_equal(tb_scheduler_complete(h.s, sampled, &outs, &n), 0);
        assert_int_equal(n, last ? 4 : 3);
        s_collect_outs(&h, outs, n);
        if (last) {
            break;
        }
    }
    assert_int_equal(prefill_steps, 8); /* ceil(100 / 13) */
    s_run(&h);
    for (uint32_t i = 0; i < 4; i++) {
        s_expect_reference(&h, &r[i]);
    }
    s_close(&h);
}

/* A cache far too small for the load: sequences are preempted and recomputed over and over,
 * yet every request finishes with the reference tokens, the oldest is never preempted, and
 * no step is empty while work remains. */
static void test_preemption_tiny_cache(void **state)
{
    (void)state;
    for (int caching = 0; caching < 2; caching++) {
        enum { N = 8 };
        struct req r[N];
        struct tb_sched_config c;
        s_cfg(&c, 8, 24, 64);
        struct harness h;
        s_open(&h, 10, 4, caching, &c); /* 40 token slots; each request needs up to 28 */
        for (uint32_t i = 0; i < N; i++) {
            s_make(&r[i], i, 6 + i % 7, i % 2 ? 8 : 0, 700 + i);
            r[i].p.max_tokens = 16;
            r[i].p.ignore_eos = true;
            s_submit(&h, &r[i]);
        }
        s_run(&h);
        assert_true(h.preempted > 0);
        for (uint32_t i = 0; i < N; i++) {
            s_expect_reference(&h, &r[i]);
            assert_int_equal(h.res[i].why, TB_FINISH_LENGTH);
        }
        assert_false(h.res[0].went_back);
        bool some_back = false;
        for (uint32_t i = 1; i < N; i++) {
            some_back |= h.res[i].went_back;
        }
        assert_true(some_back);
        struct tb_sched_load ld;
        tb_scheduler_get_load(h.s, &ld);
        assert_int_equal(ld.preemptions, h.preempted);
        s_close(&h);
    }
}

/* The oldest sequence, short of blocks, preempts the newer one rather than itself. */
static void test_preempts_newest(void **state)
{
    (void)state;
    struct tb_sched_config c;
    s_cfg(&c, 4, 32, 64);
    struct harness h;
    s_open(&h, 8, 4, false, &c); /* 32 slots; each request wants 4 + 24 = 28 */
    struct req r[2];
    for (uint32_t i = 0; i < 2; i++) {
        s_make(&r[i], i, 4, 0, 20 + i);
        r[i].p.max_tokens = 24;
        r[i].p.ignore_eos = true;
        s_submit(&h, &r[i]);
    }
    s_run(&h);
    assert_true(h.preempted > 0);
    assert_false(h.res[0].went_back);
    assert_true(h.res[1].went_back);
    s_expect_reference(&h, &r[0]);
    s_expect_reference(&h, &r[1]);
    s_close(&h);
}

/* A block is offered for reuse only once all its tokens are computed: B, whose prompt is A's
 * prompt plus A's first generated token, arrives while that token's keys and values are still
 * being computed (in the same step) and must not read them from A's block. */
static void test_no_reuse_before_computed(void **state)
{
    (void)state;
    struct tb_sched_config c;
    s_cfg(&c, 4, 64, 128);
    struct harness h;
    s_open(&h, 32, 4, true, &c);
    struct req a, b;
    s_make(&a, 0, 7, 0, 31); /* 7 prompt tokens + the first generated fill block 1 */
    a.p.max_tokens = 10;
    a.p.ignore_eos = true;
    s_submit(&h, &a);
    s_step(&h);
    assert_int_equal(h.res[0].n, 1);
    s_make(&b, 1, 12, 0, 32);
    memcpy(b.prompt, a.prompt, 7 * sizeof *b.prompt);
    b.prompt[7] = h.res[0].toks[0];
    s_submit(&h, &b);
    s_run(&h);
    s_expect_reference(&h, &a);
    s_expect_reference(&h, &b);
    assert_int_equal(h.res[1].n_cached, 4); /* block 0 only: block 1 was not ready */
    s_close(&h);
}

/* Requests arriving at random times, random lengths, a small cache, prefix sharing: the
 * outputs are the reference's, whatever happened. */
static void test_random_arrivals(void **state)
{
    (void)state;
    enum { N = MAXREQ };
    struct req *r = calloc(N, sizeof *r);
    assert_non_null(r);
    struct tb_rng rng;
    tb_rng_seed(&rng, 2024);
    struct tb_sched_config c;
    s_cfg(&c, 6, 20, 96);
    struct harness h;
    s_open(&h, 24, 4, true, &c);
    uint32_t next = 0;
    for (uint32_t guard = 0; next < N || tb_scheduler_has_work(h.s); guard++) {
        assert_true(guard < 100000);
        if (next < N && tb_rng_next(&rng) % 3 == 0) {
            s_make(&r[next], next, 1 + (uint32_t)(tb_rng_next(&rng) % 40),
                   (uint32_t)(tb_rng_next(&rng) % 3) * 8, 900 + next);
            r[next].p.max_tokens = 1 + (uint32_t)(tb_rng_next(&rng) % 30);
            s_submit(&h, &r[next]);
            next++;
        }
        s_step(&h);
    }
    for (uint32_t i = 0; i < N; i++) {
        s_expect_reference(&h, &r[i]);
    }
    struct tb_sched_load ld;
    tb_scheduler_get_load(h.s, &ld);
    assert_true(ld.prefix_hit_tokens > 0);
    s_close(&h);
    free(r);
}

/* The same prompt again reuses the cached blocks (all but the last token), with the same
 * output; a request arriving while the first still runs shares its blocks too. */
static void test_prefix_reuse(void **state)
{
    (void)state;
    struct tb_sched_config c;
    s_cfg(&c, 8, 64, 256);
    struct harness h;
    s_open(&h, 64, 4, true, &c);
    struct req a, b, d;
    s_make(&a, 0, 40, 40, 1);
    a.p.ignore_eos = true;
    a.p.max_tokens = 20;
    s_submit(&h, &a);
    s_step(&h);               /* a's prefill */
    s_make(&b, 1, 30, 22, 2); /* shares 22 tokens: 5 full blocks */
    s_submit(&h, &b);
    s_step(&h);
    struct tb_kv_event ev;
    uint32_t stored = 0;
    while (tb_kv_manager_pop_event(h.kv, &ev) == 0) {
        stored += ev.type == TB_KV_EVENT_STORED;
    }
    assert_true(stored >= 10);
    s_run(&h);
    s_expect_reference(&h, &a);
    s_expect_reference(&h, &b);
    assert_int_equal(h.res[0].n_cached, 0);
    assert_int_equal(h.res[1].n_cached, 20);
    /* a again, after it finished: 39 of 40 tokens in full blocks of 4 -> 36 cached. */
    d = a;
    d.id = 2;
    s_submit(&h, &d);
    s_run(&h);
    s_expect_reference(&h, &d);
    assert_int_equal(h.res[2].n_cached, 36);
    assert_memory_equal(h.res[2].toks, h.res[0].toks, h.res[0].n * sizeof(int32_t));
    struct tb_sched_load ld;
    tb_scheduler_get_load(h.s, &ld);
    assert_int_equal(ld.prefix_hit_tokens, 20 + 36);
    s_close(&h);
}

static void test_cancel(void **state)
{
    (void)state;
    struct tb_sched_config c;
    s_cfg(&c, 8, 64, 256);
    struct harness h;
    s_open(&h, 64, 4, false, &c);
    struct req r[3];
    for (uint32_t i = 0; i < 3; i++) {
        s_make(&r[i], i, 20, 0, 40 + i);
        r[i].p.ignore_eos = true;
        r[i].p.max_tokens = 30;
        s_submit(&h, &r[i]);
    }
    s_step(&h);
    s_step(&h);
    struct tb_kv_usage u0, u1;
    tb_kv_manager_get_usage(h.kv, &u0);
    assert_int_equal(u0.used, 3 * 6); /* 21 computed slots each -> 6 blocks of 4 */
    assert_int_equal(tb_scheduler_cancel(h.s, 1), 0);
    tb_kv_manager_get_usage(h.kv, &u1);
    assert_int_equal(u1.used, 2 * 6); /* freed at once */
    assert_int_equal(tb_scheduler_cancel(h.s, 1), TB_ENOENT);
    assert_null(tb_scheduler_seq_tokens(h.s, 1, &(uint32_t){0}));

    /* Cancelled between step and complete: its blocks go at once, its entry is skipped. */
    const struct tb_sched_plan *p;
    assert_int_equal(tb_scheduler_step(h.s, &p), 0);
    assert_int_equal(p->n_seqs, 2);
    int32_t sampled[8];
    s_forward(&h, p, sampled);
    assert_int_equal(tb_scheduler_cancel(h.s, 2), 0);
    tb_kv_manager_get_usage(h.kv, &u1);
    assert_int_equal(u1.used, 6);
    /* A waiting request cancelled never runs. */
    struct req w;
    s_make(&w, 5, 8, 0, 5);
    s_submit(&h, &w);
    assert_int_equal(tb_scheduler_cancel(h.s, 5), 0);
    const struct tb_sched_output *outs;
    uint32_t n;
    assert_int_equal(tb_scheduler_complete(h.s, sampled, &outs, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(outs[0].id, 0);
    s_collect_outs(&h, outs, n);
    s_run(&h);
    s_expect_reference(&h, &r[0]);
    assert_false(h.res[1].done);
    assert_false(h.res[2].done);
    assert_false(h.res[5].done);
    s_close(&h);
}

/* max_batch_seqs bounds the running set, max_batch_tokens each step (checked in s_forward);
 * the rest waits in order. */
static void test_limits(void **state)
{
    (void)state;
    struct tb_sched_config c;
    s_cfg(&c, 2, 10, 256);
    struct harness h;
    s_open(&h, 64, 4, true, &c);
    struct req r[5];
    for (uint32_t i = 0; i < 5; i++) {
        s_make(&r[i], i, 7, 0, 60 + i);
        r[i].p.max_tokens = 6;
        r[i].p.ignore_eos = true;
        s_submit(&h, &r[i]);
    }
    struct tb_sched_load ld;
    tb_scheduler_get_load(h.s, &ld);
    assert_int_equal(ld.waiting, 5);
    s_step(&h); /* 10 tokens: 7 of r0, 3 of r1 */
    tb_scheduler_get_load(h.s, &ld);
    assert_int_equal(ld.running, 2);
    assert_int_equal(ld.waiting, 3);
    assert_true(ld.kv_usage > 0.0 && ld.kv_usage < 1.0);
    assert_int_equal(ld.kv_total_blocks, 64);
    s_run(&h);
    assert_int_equal(h.max_running, 2);
    for (uint32_t i = 0; i < 5; i++) {
        s_expect_reference(&h, &r[i]);
        assert_int_equal(h.res[i].n, 6);
    }
    s_close(&h);
}

/* Without chunked prefill a prompt runs whole in one step. */
static void test_unchunked(void **state)
{
    (void)state;
    struct tb_sched_config c;
    s_cfg(&c, 4, 64, 64);
    c.chunked_prefill = false;
    struct harness h;
    s_open(&h, 32, 4, true, &c);
    struct req r[4];
    for (uint32_t i = 0; i < 4; i++) {
        s_make(&r[i], i, 30 + i, 0, 80 + i);
        r[i].p.max_tokens = 8;
        s_submit(&h, &r[i]);
    }
    for (uint32_t guard = 0; tb_scheduler_has_work(h.s); guard++) {
        assert_true(guard < 1000);
        const struct tb_sched_plan *p;
        assert_int_equal(tb_scheduler_step(h.s, &p), 0);
        assert_true(p->n_seqs > 0);
        for (uint32_t e = 0; e < p->n_seqs; e++) {
            assert_true(p->seqs[e].need_logits); /* never a partial prefill */
        }
        int32_t sampled[8];
        s_forward(&h, p, sampled);
        const struct tb_sched_output *outs;
        uint32_t n;
        assert_int_equal(tb_scheduler_complete(h.s, sampled, &outs, &n), 0);
        s_collect_outs(&h, outs, n);
    }
    for (uint32_t i = 0; i < 4; i++) {
        s_expect_reference(&h, &r[i]);
    }
    s_close(&h);
}

/* eos, stop ids, min_tokens, ignore_eos, max_tokens, the context, a failed sample. */
static void test_finish_reasons(void **state)
{
    (void)state;
    struct tb_sched_config c;
    s_cfg(&c, 4, 64, 12);
    struct harness h;
    s_open(&h, 32, 4, true, &c);
    struct req r;
    int32_t stops[1] = {5};

    /* min_tokens 3: eos (0) and the stop id (5) before it do not stop. */
    s_make(&r, 0, 4, 0, 1);
    r.p.stop_ids = stops;
    r.p.n_stop_ids = 1;
    r.p.min_tokens = 3;
    int32_t f1[4] = {5, EOS, 7, 5};
    h.force = f1;
    h.n_force = 4;
    h.i_force = 0;
    s_submit(&h, &r);
    s_run(&h);
    assert_int_equal(h.res[0].why, TB_FINISH_STOP);
    assert_int_equal(h.res[0].n, 4);
    assert_int_equal(h.res[0].toks[3], 5);

    /* eos stops at once without min_tokens. */
    s_make(&r, 1, 4, 0, 1);
    int32_t f2[2] = {9, EOS};
    h.force = f2;
    h.n_force = 2;
    h.i_force = 0;
    s_submit(&h, &r);
    s_run(&h);
    assert_int_equal(h.res[1].why, TB_FINISH_STOP);
    assert_int_equal(h.res[1].n, 2);

    /* ignore_eos: eos is a token like another; max_tokens ends it. */
    s_make(&r, 2, 4, 0, 1);
    r.p.ignore_eos = true;
    r.p.max_tokens = 3;
    int32_t f3[1] = {EOS};
    h.force = f3;
    h.n_force = 1;
    h.i_force = 0;
    s_submit(&h, &r);
    s_run(&h);
    assert_int_equal(h.res[2].why, TB_FINISH_LENGTH);
    assert_int_equal(h.res[2].n, 3);

    /* The context (12): a prompt of 9 gets 3 tokens. */
    s_make(&r, 3, 9, 0, 1);
    r.p.max_tokens = 0;
    int32_t f4[1] = {4};
    h.force = f4;
    h.n_force = 1;
    h.i_force = 0;
    s_submit(&h, &r);
    s_run(&h);
    assert_int_equal(h.res[3].why, TB_FINISH_LENGTH);
    assert_int_equal(h.res[3].n, 3);

    /* No valid token: the sequence ends with an error and gives its blocks back. */
    s_make(&r, 4, 6, 0, 1);
    int32_t f5[2] = {3, -1};
    h.force = f5;
    h.n_force = 2;
    h.i_force = 0;
    s_submit(&h, &r);
    s_run(&h);
    assert_int_equal(h.res[4].why, TB_FINISH_ERROR);
    assert_int_equal(h.res[4].n, 1);
    s_close(&h);
}

/* The step protocol: a pending plan blocks the next step; an aborted plan runs again. */
static void test_step_protocol(void **state)
{
    (void)state;
    struct tb_sched_config c;
    s_cfg(&c, 4, 64, 64);
    struct harness h;
    s_open(&h, 16, 4, true, &c);
    const struct tb_sched_plan *p;
    assert_int_equal(tb_scheduler_step(h.s, &p), 0);
    assert_int_equal(p->n_seqs, 0); /* idle */
    const struct tb_sched_output *outs;
    uint32_t n;
    assert_int_equal(tb_scheduler_complete(h.s, NULL, &outs, &n), TB_EINVAL);
    struct req r;
    s_make(&r, 0, 9, 0, 3);
    s_submit(&h, &r);
    assert_int_equal(tb_scheduler_step(h.s, &p), 0);
    assert_int_equal(p->n_seqs, 1);
    assert_int_equal(p->seqs[0].n_tokens, 9);
    const struct tb_sched_plan *p2;
    assert_int_equal(tb_scheduler_step(h.s, &p2), TB_EBUSY);
    assert_int_equal(tb_scheduler_complete(h.s, NULL, &outs, &n), TB_EINVAL); /* needs tokens */
    tb_scheduler_abort_step(h.s);
    tb_scheduler_abort_step(h.s); /* no-op */
    assert_int_equal(tb_scheduler_step(h.s, &p), 0);
    assert_int_equal(p->n_seqs, 1);
    assert_int_equal(p->seqs[0].pos, 0);
    assert_int_equal(p->seqs[0].n_tokens, 9);
    int32_t sampled[4];
    s_forward(&h, p, sampled);
    assert_int_equal(tb_scheduler_complete(h.s, sampled, &outs, &n), 0);
    s_collect_outs(&h, outs, n);
    s_run(&h);
    s_expect_reference(&h, &r);
    s_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_submit_errors),
        cmocka_unit_test(test_alone_vs_batched),
        cmocka_unit_test(test_seeded_sampling_batched),
        cmocka_unit_test(test_chunked_prefill_interleaves),
        cmocka_unit_test(test_preemption_tiny_cache),
        cmocka_unit_test(test_preempts_newest),
        cmocka_unit_test(test_no_reuse_before_computed),
        cmocka_unit_test(test_random_arrivals),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_unchunked),
        cmocka_unit_test(test_finish_reasons),
        cmocka_unit_test(test_step_protocol),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
