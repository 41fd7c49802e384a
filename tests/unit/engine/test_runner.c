/*
 * test_runner.c - the engine runner (tb_runner.h) driven the way its callers drive it: submit,
 * step, cancel, export/import, KV events, over the real CPU backend and a trained model (the
 * shared tinystories-656k, ../shared/models; the tests skip, saying so, when it is absent).
 *
 * What must hold: a greedy token is the argmax of the logits row handed out with it; a request's
 * tokens are the same alone and batched with others (chunked prefill, shared prefixes);
 * a cache too small for all of them at once (preemption) changes nothing either;
 * max_tokens and stop ids end requests with the right finish reason and counts; cancelling
 * returns a sequence's KV blocks at once and nothing more is reported for it; a failing forward
 * pass ends the step's requests with errors and frees their blocks; a sequence exported
 * mid-generation and imported into another runner goes on with exactly the tokens it would
 * have produced (sampling with a seed and penalties included); full prompt blocks are announced
 * as KV events with their chained hashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cpu/tb_cpu_backend.h"
#include "tb_block_hash.h"
#include "tb_errors.h"
#include "tb_runner.h"
#include "tb_tokenizer.h"

#define MAXTOK 128
#define NREQ 6

static tb_model_t *s_model;

/* Opens the shared model once; NULL when absent. */
static tb_model_t *s_open_model(void)
{
    if (s_model) {
        return s_model;
    }
    const char *root = getenv("TB_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/../shared/models/tinystories-656k/config.json",
             root ? root : ".");
    if (access(path, R_OK) != 0) {
        return NULL;
    }
    path[strlen(path) - strlen("/config.json")] = '\0';
    char err[512] = "";
    if (tb_model_open(path, &s_model, err, sizeof err) != 0) {
        fail_msg("cannot open %s: %s", path, err);
    }
    return s_model;
}

static struct tb_cpu_config s_cpu = {.threads = 1};

static tb_runner_t *s_runner_blocks(const struct tb_backend_ops *ops, uint32_t batch_tokens,
                                    bool prefix, uint32_t n_blocks, uint32_t block_size)
{
    tb_model_t *m = s_open_model();
    if (!m) {
        printf("# skip: ../shared/models/tinystories-656k absent\n");
        skip();
    }
    struct tb_runner_config c;
    tb_runner_config_init(&c);
    c.max_batch_seqs = 8;
    c.max_batch_tokens = batch_tokens;
    c.max_seqs = 16;
    c.block_size = block_size;
    c.kv_cache_bytes = (int64_t)(n_blocks * tb_cpu_backend_block_bytes_for(m, block_size, true));
    c.prefix_caching = prefix;
    c.seed = 42;
    c.flavour = &s_cpu;
    tb_runner_t *r = NULL;
    char err[512] = "";
    int rc = tb_runner_new(m, ops, &c, &r, err, sizeof err);
    if (rc != 0) {
        fail_msg("tb_runner_new: %s", err);
    }
    assert_int_equal(tb_runner_n_blocks(r), n_blocks);
    assert_int_equal(tb_runner_vocab(r), 2048);
    assert_int_equal(tb_runner_context(r), 512);
    return r;
}

static tb_runner_t *s_runner_with(const struct tb_backend_ops *ops, uint32_t batch_tokens,
                                  bool prefix)
{
    return s_runner_blocks(ops, batch_tokens, prefix, 64, 16);
}

static tb_runner_t *s_runner(uint32_t batch_tokens, bool prefix)
{
    return s_runner_with(&tb_cpu_backend_ops, batch_tokens, prefix);
}

/* A prompt: BOS, then `shared` tokens common to every prompt, then tokens of its own. */
static uint32_t s_prompt(int32_t *out, uint32_t n, uint32_t shared, uint32_t seed)
{
    uint64_t st = seed;
    out[0] = 1;
    for (uint32_t i = 1; i < n; i++) {
        uint64_t v = i <= shared ? i * 7919u : tb_rng_splitmix64(&st);
        out[i] = 3 + (int32_t)(v % 2000);
    }
    return n;
}

struct got {
    int32_t toks[MAXTOK];
    uint32_t n;
    enum tb_finish_reason finish;
    uint32_t n_generated, n_prompt;
    bool ended;
};

static int32_t s_argmax(const float *row, uint32_t n)
{
    int32_t best = 0;
    for (uint32_t v = 1; v < n; v++) {
        if (row[v] > row[best]) {
            best = (int32_t)v;
        }
    }
    return best;
}

/* Records outputs into got[user index]; greedy outputs must be their row's argmax. */
static void s_collect(tb_runner_t *r, const struct tb_runner_output *outs, uint32_t n,
                      struct got *got, bool greedy)
{
    for (uint32_t k = 0; k < n; k++) {
        const struct tb_runner_output *o = &outs[k];
        struct got *g = &got[(uintptr_t)o->user];
        assert_false(g->ended);
        assert_true(g->n < MAXTOK);
        assert_non_null(o->logits);
        assert_non_null(o->sample);
        assert_int_equal(o->sample->token, o->token);
        if (greedy) {
            assert_int_equal(o->token, s_argmax(o->logits, tb_runner_vocab(r)));
        }
        g->toks[g->n++] = o->token;
        g->n_generated = o->n_generated;
        g->n_prompt = o->n_prompt;
        assert_int_equal(o->n_generated, g->n);
        if (o->finish != TB_FINISH_NONE) {
            g->ended = true;
            g->finish = o->finish;
        }
    }
}

/* Steps until the runner has no work; returns the steps that ran a batch. */
static uint32_t s_drain(tb_runner_t *r, struct got *got, bool greedy)
{
    uint32_t steps = 0;
    while (tb_runner_has_work(r)) {
        const struct tb_runner_output *outs;
        uint32_t n;
        int rc = tb_runner_step(r, &outs, &n);
        assert_int_equal(rc, 0);
        s_collect(r, outs, n, got, greedy);
        steps++;
        assert_true(steps < 10000);
    }
    const struct tb_runner_output *outs;
    uint32_t n = 1;
    assert_int_equal(tb_runner_step(r, &outs, &n), TB_AGAIN);
    assert_int_equal(n, 0);
    return steps;
}

static void s_greedy(struct tb_sampling_params *p, uint32_t max_tokens)
{
    tb_sampling_params_init(p);
    p->temperature = 0;
    p->ignore_eos = true;
    p->max_tokens = max_tokens;
}

/* ------------------------------------------------------------------------------------------- */

static void test_alone_equals_batched(void **state)
{
    (void)state;
    static const uint32_t lens[NREQ] = {1, 5, 17, 40, 40, 33};
    int32_t prompts[NREQ][MAXTOK];
    struct tb_sampling_params p;
    s_greedy(&p, 9);
    struct got alone[NREQ] = {0}, batched[NREQ] = {0}, squeezed[NREQ] = {0};
    for (uint32_t i = 0; i < NREQ; i++) {
        s_prompt(prompts[i], lens[i], i >= 3 ? 32 : 0, 100 + i);
        tb_runner_t *r = s_runner(512, false);
        struct tb_runner_request q = {.prompt = prompts[i],
                                      .n_prompt = lens[i],
                                      .params = &p,
                                      .user = (void *)(uintptr_t)i};
        uint64_t id = 0;
        assert_int_equal(tb_runner_submit(r, &q, &id), 0);
        assert_int_equal(id, 1);
        s_drain(r, alone, true);
        tb_runner_destroy(&r);
        assert_null(r);
    }
    /* All at once, 16 tokens a step (prefills in chunks beside decodes), prefix reuse on. */
    tb_runner_t *r = s_runner(16, true);
    for (uint32_t i = 0; i < NREQ; i++) {
        struct tb_runner_request q = {.prompt = prompts[i],
                                      .n_prompt = lens[i],
                                      .params = &p,
                                      .user = (void *)(uintptr_t)i};
        uint64_t id = 0;
        assert_int_equal(tb_runner_submit(r, &q, &id), 0);
        assert_int_equal(id, i + 1);
    }
    s_drain(r, batched, true);
    struct tb_sched_load ld;
    tb_runner_get_load(r, &ld);
    assert_int_equal(ld.kv_used_blocks, 0);
    assert_true(ld.prefix_hit_tokens > 0); /* the shared 32-token prefix was reused */
    tb_runner_destroy(&r);
    /* All at once in a cache of 13 blocks of 4 tokens: the first three are admitted (8 blocks)
     * and outgrow it (14): preemptions, recomputes. */
    r = s_runner_blocks(&tb_cpu_backend_ops, 64, false, 13, 4);
    for (uint32_t i = 0; i < NREQ; i++) {
        struct tb_runner_request q = {.prompt = prompts[i],
                                      .n_prompt = lens[i],
                                      .params = &p,
                                      .user = (void *)(uintptr_t)i};
        assert_int_equal(tb_runner_submit(r, &q, NULL), 0);
    }
    s_drain(r, squeezed, true);
    tb_runner_get_load(r, &ld);
    assert_true(ld.preemptions > 0);
    tb_runner_destroy(&r);
    for (uint32_t i = 0; i < NREQ; i++) {
        assert_int_equal(squeezed[i].n, 9);
        assert_memory_equal(alone[i].toks, squeezed[i].toks, 9 * sizeof(int32_t));
        assert_true(alone[i].ended);
        assert_int_equal(alone[i].finish, TB_FINISH_LENGTH);
        assert_int_equal(alone[i].n, 9);
        assert_int_equal(alone[i].n_prompt, lens[i]);
        assert_int_equal(batched[i].n, 9);
        assert_int_equal(batched[i].finish, TB_FINISH_LENGTH);
        assert_memory_equal(alone[i].toks, batched[i].toks, 9 * sizeof(int32_t));
    }
    /* The model is not a constant: different prompts gave different continuations. */
    assert_memory_not_equal(alone[1].toks, alone[2].toks, 9 * sizeof(int32_t));
}

static void test_stop_id_and_refusals(void **state)
{
    (void)state;
    tb_runner_t *r = s_runner(512, true);
    int32_t prompt[20];
    s_prompt(prompt, 20, 0, 7);
    struct tb_sampling_params p;
    s_greedy(&p, 12);
    struct got ref[1] = {0};
    struct tb_runner_request q = {.prompt = prompt, .n_prompt = 20, .params = &p};
    assert_int_equal(tb_runner_submit(r, &q, NULL), 0);
    s_drain(r, ref, true);
    /* Stop at the first occurrence of the 4th token. */
    int32_t stop = ref[0].toks[3];
    uint32_t first = 0;
    while (ref[0].toks[first] != stop) {
        first++;
    }
    p.stop_ids = &stop;
    p.n_stop_ids = 1;
    struct got got[1] = {0};
    assert_int_equal(tb_runner_submit(r, &q, NULL), 0);
    s_drain(r, got, true);
    assert_int_equal(got[0].finish, TB_FINISH_STOP);
    assert_int_equal(got[0].n, first + 1);
    assert_int_equal(got[0].toks[first], stop);
    assert_memory_equal(got[0].toks, ref[0].toks, (first + 1) * sizeof(int32_t));

    /* refusals carry a message and leave nothing behind */
    int32_t bad = 5000;
    struct tb_runner_request qb = {.prompt = &bad, .n_prompt = 1, .params = &p};
    assert_int_equal(tb_runner_submit(r, &qb, NULL), TB_EINVAL);
    assert_non_null(strstr(tb_runner_errmsg(r), "vocabulary"));
    qb.n_prompt = 0;
    assert_int_equal(tb_runner_submit(r, &qb, NULL), TB_EINVAL);
    p.temperature = -1;
    assert_int_equal(tb_runner_submit(r, &q, NULL), TB_EINVAL);
    assert_non_null(strstr(tb_runner_errmsg(r), "temperature"));
    assert_false(tb_runner_has_work(r));
    assert_int_equal(tb_runner_cancel(r, 12345), TB_ENOENT);
    tb_runner_destroy(&r);
}

static void test_cancel_frees_blocks(void **state)
{
    (void)state;
    tb_runner_t *r = s_runner(512, false);
    int32_t a[40], b[40];
    s_prompt(a, 40, 0, 1);
    s_prompt(b, 40, 0, 2);
    struct tb_sampling_params p;
    s_greedy(&p, 50);
    uint64_t ida = 0, idb = 0;
    struct tb_runner_request qa = {.prompt = a,
                                   .n_prompt = 40,
                                   .params = &p,
                                   .user = (void *)(uintptr_t)0};
    struct tb_runner_request qb = {.prompt = b,
                                   .n_prompt = 40,
                                   .params = &p,
                                   .user = (void *)(uintptr_t)1};
    assert_int_equal(tb_runner_submit(r, &qa, &ida), 0);
    assert_int_equal(tb_runner_submit(r, &qb, &idb), 0);
    struct got got[2] = {0};
    for (int i = 0; i < 3; i++) {
        const struct tb_runner_output *outs;
        uint32_t n;
        assert_int_equal(tb_runner_step(r, &outs, &n), 0);
        assert_int_equal(n, 2);
        s_collect(r, outs, n, got, true);
    }
    struct tb_sched_load ld;
    tb_runner_get_load(r, &ld);
    assert_int_equal(ld.running, 2);
    assert_int_equal(ld.kv_used_blocks, 2 * 3); /* 43 tokens each: 3 blocks of 16 */
    assert_int_equal(tb_runner_cancel(r, ida), 0);
    tb_runner_get_load(r, &ld);
    assert_int_equal(ld.running, 1);
    assert_int_equal(ld.kv_used_blocks, 3);
    assert_int_equal(tb_runner_cancel(r, ida), TB_ENOENT);
    for (int i = 0; i < 4; i++) {
        const struct tb_runner_output *outs;
        uint32_t n;
        assert_int_equal(tb_runner_step(r, &outs, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(outs[0].id, idb);
        s_collect(r, outs, n, got, true);
    }
    assert_int_equal(tb_runner_cancel(r, idb), 0);
    tb_runner_get_load(r, &ld);
    assert_int_equal(ld.running + ld.waiting, 0);
    assert_int_equal(ld.kv_used_blocks, 0);
    assert_false(tb_runner_has_work(r));
    assert_int_equal(got[0].n, 3);
    assert_int_equal(got[1].n, 7);
    tb_runner_destroy(&r);
}

/* ---- a backend whose forward pass fails on demand (the CPU one underneath) ---- */

static int s_fail_at; /* the forward call that fails (1-based), 0: none */
static int s_calls;

static int s_failing_forward(tb_backend_t *b, const struct tb_sched_plan *plan, float *logits,
                             char *err, size_t err_len)
{
    if (++s_calls == s_fail_at) {
        snprintf(err, err_len, "injected failure");
        return TB_EIO;
    }
    return tb_cpu_backend_ops.forward(b, plan, logits, err, err_len);
}

static void test_forward_failure_ends_the_step(void **state)
{
    (void)state;
    struct tb_backend_ops ops = tb_cpu_backend_ops;
    ops.forward = s_failing_forward;
    s_calls = 0;
    s_fail_at = 3;
    tb_runner_t *r = s_runner_with(&ops, 512, true);
    int32_t a[24], b[30];
    s_prompt(a, 24, 0, 3);
    s_prompt(b, 30, 0, 4);
    struct tb_sampling_params p;
    s_greedy(&p, 20);
    uint64_t ida, idb;
    struct tb_runner_request qa = {.prompt = a, .n_prompt = 24, .params = &p};
    struct tb_runner_request qb = {.prompt = b, .n_prompt = 30, .params = &p};
    assert_int_equal(tb_runner_submit(r, &qa, &ida), 0);
    assert_int_equal(tb_runner_submit(r, &qb, &idb), 0);
    const struct tb_runner_output *outs;
    uint32_t n;
    assert_int_equal(tb_runner_step(r, &outs, &n), 0);
    assert_int_equal(tb_runner_step(r, &outs, &n), 0);
    assert_int_equal(tb_runner_step(r, &outs, &n), TB_EIO);
    assert_non_null(strstr(tb_runner_errmsg(r), "forward pass failed: injected failure"));
    assert_int_equal(n, 2);
    for (uint32_t k = 0; k < n; k++) {
        assert_int_equal(outs[k].finish, TB_FINISH_ERROR);
        assert_int_equal(outs[k].token, -1);
        assert_null(outs[k].logits);
        assert_null(outs[k].sample);
    }
    assert_true((outs[0].id == ida && outs[1].id == idb) ||
                (outs[0].id == idb && outs[1].id == ida));
    struct tb_sched_load ld;
    tb_runner_get_load(r, &ld);
    assert_int_equal(ld.kv_used_blocks, 0);
    assert_false(tb_runner_has_work(r));
    /* the runner serves on */
    assert_int_equal(tb_runner_submit(r, &qa, NULL), 0);
    struct got got[1] = {0};
    s_drain(r, got, true);
    assert_int_equal(got[0].n, 20);
    tb_runner_destroy(&r);
}

/* A sampled request moved to another runner after `cut` tokens ends with the same tokens as one
 * that ran through; the KV events name the prompt's full blocks by their chained hashes. */
/* Steps `r` until its one sequence (user 0) has `n` tokens in got[0]. */
static void s_step_until(tb_runner_t *r, struct got *got, uint32_t n)
{
    while (got[0].n < n) {
        const struct tb_runner_output *outs;
        uint32_t k;
        assert_int_equal(tb_runner_step(r, &outs, &k), 0);
        s_collect(r, outs, k, got, false);
    }
}

static void test_export_import_and_kv_events(void **state)
{
    (void)state;
    int32_t prompt[40];
    s_prompt(prompt, 40, 0, 9);
    struct tb_sampling_params p;
    tb_sampling_params_init(&p);
    p.temperature = 0.9f;
    p.top_k = 50;
    p.presence_penalty = 0.5f;
    p.repetition_penalty = 1.1f;
    p.max_tokens = 14;
    p.ignore_eos = true; /* no seed: the runner draws one, and the export must carry it */
    tb_runner_t *a = s_runner(512, true);
    struct tb_runner_request q = {.prompt = prompt, .n_prompt = 40, .params = &p};
    uint64_t id;
    assert_int_equal(tb_runner_submit(a, &q, &id), 0);
    struct got part[1] = {0};
    s_step_until(a, part, 5);
    struct tb_runner_seq_state st;
    assert_int_equal(tb_runner_export(a, id, &st), 0);
    assert_int_equal(st.n_prompt, 40);
    assert_int_equal(st.n_tokens, 45);
    assert_memory_equal(st.tokens, prompt, sizeof prompt);
    assert_memory_equal(st.tokens + 40, part[0].toks, 5 * sizeof(int32_t));
    assert_true(st.params.has_seed);

    /* the reference: the same request, same seed, uninterrupted, in a third runner */
    struct tb_sampling_params ps = p;
    ps.has_seed = true;
    ps.seed = st.params.seed;
    tb_runner_t *c = s_runner(512, false);
    struct tb_runner_request qs = {.prompt = prompt, .n_prompt = 40, .params = &ps};
    assert_int_equal(tb_runner_submit(c, &qs, NULL), 0);
    struct got ref[1] = {0};
    s_drain(c, ref, false);
    tb_runner_destroy(&c);
    assert_int_equal(ref[0].n, 14);
    assert_memory_equal(ref[0].toks, part[0].toks, 5 * sizeof(int32_t));

    /* move it: cancel here, import there */
    assert_int_equal(tb_runner_cancel(a, id), 0);
    tb_runner_t *b = s_runner(512, true);
    uint64_t id2;
    assert_int_equal(tb_runner_import(b, &st, NULL, &id2), 0);
    tb_runner_seq_state_release(&st);
    tb_runner_seq_state_release(&st); /* safe twice */
    struct got rest[1] = {0};
    rest[0].n = 5; /* outputs count generated tokens from the original start */
    memcpy(rest[0].toks, part[0].toks, 5 * sizeof(int32_t));
    s_drain(b, rest, false);
    assert_int_equal(rest[0].n, 14);
    assert_int_equal(rest[0].n_prompt, 40);
    assert_int_equal(rest[0].finish, TB_FINISH_LENGTH);
    assert_memory_equal(rest[0].toks, ref[0].toks, 14 * sizeof(int32_t));
    assert_int_equal(tb_runner_export(b, id2, &st), TB_ENOENT);

    /* runner a computed the prompt's 2 full blocks (and the first generated block boundary
     * is not reached at 45 tokens): STORED events for hash(block 0), hash(block 1) */
    uint64_t want[2];
    assert_int_equal(tb_block_hash_chain(TB_BLOCK_HASH_ROOT, prompt, 40, 16, want, 2), 2);
    struct tb_kv_event ev;
    uint32_t stored = 0;
    while (tb_runner_pop_kv_event(a, &ev) == 0) {
        assert_int_equal(ev.type, TB_KV_EVENT_STORED);
        assert_true(stored < 2);
        assert_true(ev.hash == want[stored]);
        assert_true(ev.parent_hash == (stored ? want[0] : TB_BLOCK_HASH_ROOT));
        stored++;
    }
    assert_int_equal(stored, 2);
    tb_runner_destroy(&a);
    tb_runner_destroy(&b);
}

/* A grammar through the runner: the sequence follows it and ends where it is complete; an
 * export carries its text and the imported sequence goes on exactly as an uninterrupted one; a
 * grammar that does not compile or that the vocabulary cannot start is refused at submit. */
static void test_grammar_follow_export_import(void **state)
{
    (void)state;
    const char *g =
        "root ::= (\"yes\" | \"no\") \", \" [a-z]{2,12} (\" \" [a-z]{2,12}){0,3} \".\"";
    int32_t prompt[12];
    s_prompt(prompt, 12, 0, 3);
    struct tb_sampling_params p;
    tb_sampling_params_init(&p);
    p.temperature = 0.9f;
    p.has_seed = true;
    p.seed = 77;
    p.max_tokens = 100;
    tb_runner_t *c = s_runner(512, false);
    struct tb_runner_request q = {.prompt = prompt, .n_prompt = 12, .params = &p, .grammar = g};
    assert_int_equal(tb_runner_submit(c, &q, NULL), 0);
    struct got ref[1] = {0};
    s_drain(c, ref, false);
    assert_int_equal(ref[0].finish, TB_FINISH_STOP);
    assert_true(ref[0].n >= 4);
    assert_int_equal(ref[0].toks[ref[0].n - 1], 2); /* the model's EOS, where it is complete */
    tb_tokenizer_t *tok = NULL;
    char terr[256] = "", *text = NULL;
    size_t len = 0;
    assert_int_equal(tb_tokenizer_load(tb_model_params(s_model)->tokenizer_path, &tok, terr,
                                       sizeof terr),
                     0);
    assert_int_equal(tb_tokenizer_decode(tok, ref[0].toks, ref[0].n - 1, true, &text, &len), 0);
    size_t head = strncmp(text, "yes, ", 5) == 0 ? 5 : strncmp(text, "no, ", 4) == 0 ? 4 : 0;
    assert_true(head > 0 && len > head + 2 && text[len - 1] == '.');
    for (size_t i = head; i + 1 < len; i++) {
        assert_true((text[i] >= 'a' && text[i] <= 'z') || text[i] == ' ');
    }
    free(text);
    tb_tokenizer_destroy(&tok);

    /* refusals at submit, with the reason */
    struct tb_runner_request bad = q;
    bad.grammar = "root ::= (\"a\"";
    assert_int_equal(tb_runner_submit(c, &bad, NULL), TB_EINVAL);
    assert_non_null(strstr(tb_runner_errmsg(c), "grammar: 1:"));
    bad.grammar = "root ::= \"{\"";
    assert_int_equal(tb_runner_submit(c, &bad, NULL), TB_EINVAL);
    assert_non_null(strstr(tb_runner_errmsg(c), "cannot spell"));
    tb_runner_destroy(&c);

    /* the same request interrupted after 3 tokens and moved to another runner */
    tb_runner_t *a = s_runner(512, true);
    uint64_t id;
    assert_int_equal(tb_runner_submit(a, &q, &id), 0);
    struct got part[1] = {0};
    s_step_until(a, part, 3);
    struct tb_runner_seq_state st;
    assert_int_equal(tb_runner_export(a, id, &st), 0);
    assert_non_null(st.grammar);
    assert_string_equal(st.grammar, g);
    assert_null(st.params.grammar);
    assert_int_equal(tb_runner_cancel(a, id), 0);
    tb_runner_destroy(&a);
    tb_runner_t *b = s_runner(512, true);
    assert_int_equal(tb_runner_import(b, &st, NULL, &id), 0);
    tb_runner_seq_state_release(&st);
    struct got rest[1] = {0};
    rest[0].n = 3;
    memcpy(rest[0].toks, part[0].toks, 3 * sizeof(int32_t));
    s_drain(b, rest, false);
    assert_int_equal(rest[0].finish, TB_FINISH_STOP);
    assert_int_equal(rest[0].n, ref[0].n);
    assert_memory_equal(rest[0].toks, ref[0].toks, ref[0].n * sizeof(int32_t));
    tb_runner_destroy(&b);
}

static int s_teardown(void **state)
{
    (void)state;
    tb_model_close(&s_model);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone_equals_batched),
        cmocka_unit_test(test_stop_id_and_refusals),
        cmocka_unit_test(test_cancel_frees_blocks),
        cmocka_unit_test(test_forward_failure_ends_the_step),
        cmocka_unit_test(test_export_import_and_kv_events),
        cmocka_unit_test(test_grammar_follow_export_import),
    };
    return cmocka_run_group_tests(tests, NULL, s_teardown);
}
