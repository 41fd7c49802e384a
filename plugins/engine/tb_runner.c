/*
 * tb_runner.c - the engine runner: model + backend + KV manager + sampler + scheduler, stepped
 * by its owner (see tb_runner.h).  Everything a step needs is allocated at creation, so a step
 * allocates nothing.
 */
#include "tb_runner.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_errors.h"

struct tb_runner {
    const tb_model_t *model;
    const struct tb_backend_ops *ops;
    tb_backend_t *backend;
    tb_kv_manager_t *kv;
    tb_sampler_t *sampler;
    tb_scheduler_t *sched;
    tb_grammar_set_t *grammars; /* compiled grammars by text, the token trie */
    uint32_t vocab;
    uint32_t context;
    uint32_t n_blocks;
    uint32_t max_seqs; /* rows of logits and outputs one step may need */
    uint64_t next_id;
    float *logits;
    struct tb_sample *samples;
    int32_t *sampled;
    uint64_t *entry_ids; /* the step's plan entries (the plan is gone after completion) */
    int32_t *entry_rows; /* their logits rows, -1 for none */
    uint32_t n_entries;
    struct tb_runner_output *outs;
    struct tb_runner_step_info last;
    char err[512];
};

static void s_err(tb_runner_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_err(tb_runner_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tb_err_vset(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void tb_runner_config_init(struct tb_runner_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_batch_seqs = 64;
    cfg->max_batch_tokens = 512;
    cfg->max_seqs = 1024;
    cfg->kv_cache_bytes = (int64_t)1 << 30;
    cfg->block_size = TB_KV_DEFAULT_BLOCK_SIZE;
    cfg->kv_f16 = true;
    cfg->prefix_caching = true;
    cfg->chunked_prefill = true;
    cfg->kv_event_capacity = 4096;
}

void tb_runner_seq_state_release(struct tb_runner_seq_state *st)
{
    if (!st) {
        return;
    }
    free(st->tokens);
    free(st->stop_ids);
    free(st->grammar);
    memset(st, 0, sizeof *st);
}

/* The model's context, capped by the config; 0 when neither gives a usable one. */
static uint32_t s_context(const struct tb_model_params *mp, const struct tb_runner_config *cfg)
{
    uint32_t ctx = mp->max_context;
    if (cfg->context_length > 0 && (ctx == 0 || cfg->context_length < ctx)) {
        ctx = cfg->context_length;
    }
    return ctx >= 2 ? ctx : 0;
}

/* The KV manager, sampler and scheduler over the backend's blocks. */
static int s_new_parts(tb_runner_t *r, const struct tb_model_params *mp,
                       const struct tb_runner_config *cfg)
{
    struct tb_kv_config kc;
    tb_kv_config_init(&kc);
    kc.n_blocks = r->n_blocks;
    kc.block_size = cfg->block_size;
    kc.prefix_caching = cfg->prefix_caching;
    kc.event_capacity = cfg->kv_event_capacity;
    int rc = tb_kv_manager_new(&kc, &r->kv);
    if (rc != 0) {
        s_err(r, "cannot create the KV manager (%u blocks of %u tokens)", r->n_blocks,
              cfg->block_size);
        return rc;
    }
    struct tb_sampler_config sc = {.vocab_size = r->vocab, .seed = cfg->seed};
    for (uint32_t i = 0; i < mp->n_eos_ids && sc.n_eos < TB_SAMPLER_MAX_EOS; i++) {
        if (mp->eos_ids[i] >= 0 && (uint32_t)mp->eos_ids[i] < r->vocab) {
            sc.eos_ids[sc.n_eos++] = mp->eos_ids[i];
        }
    }
    rc = tb_sampler_new(&sc, &r->sampler);
    if (rc != 0) {
        s_err(r, "cannot create the sampler");
        return rc;
    }
    rc = tb_grammar_set_new(mp->tokenizer_path, sc.eos_ids, sc.n_eos,
                            TB_GRAMMAR_SET_DEFAULT_CAPACITY, &r->grammars);
    if (rc != 0) {
        s_err(r, "cannot create the grammar set");
        return rc;
    }
    struct tb_sched_config sched;
    tb_sched_config_init(&sched);
    sched.max_batch_seqs = cfg->max_batch_seqs;
    sched.max_batch_tokens = cfg->max_batch_tokens;
    sched.max_seqs = cfg->max_seqs;
    sched.max_model_len = r->context;
    sched.chunked_prefill = cfg->chunked_prefill;
    char err[256];
    rc = tb_scheduler_new(&sched, r->kv, r->sampler, &r->sched, err, sizeof err);
    if (rc != 0) {
        s_err(r, "cannot create the scheduler: %s", err);
    }
    return rc;
}

int tb_runner_new(const tb_model_t *model, const struct tb_backend_ops *ops,
                  const struct tb_runner_config *cfg, tb_runner_t **out, char *err,
                  size_t err_len)
{
    *out = NULL;
    tb_runner_t *r = calloc(1, sizeof *r);
    if (!r) {
        tb_err_set(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    const struct tb_model_params *mp = tb_model_params(model);
    r->model = model;
    r->ops = ops;
    r->vocab = mp->vocab;
    r->max_seqs = cfg->max_batch_seqs;
    r->context = s_context(mp, cfg);
    int rc = TB_ECONFIG;
    if (r->context == 0) {
        s_err(r, "it declares no usable context length: set context_length");
        goto fail;
    }
    struct tb_backend_config bc = {.block_size = cfg->block_size,
                                   .kv_budget_bytes = cfg->kv_cache_bytes,
                                   .max_batch_tokens = cfg->max_batch_tokens,
                                   .max_batch_seqs = cfg->max_batch_seqs,
                                   .kv_f16 = cfg->kv_f16,
                                   .flavour = cfg->flavour};
    char berr[384] = "";
    rc = ops->create(model, &bc, &r->backend, &r->n_blocks, berr, sizeof berr);
    if (rc != 0) {
        s_err(r, "the %s backend cannot run it: %s", ops->name, berr);
        goto fail;
    }
    rc = s_new_parts(r, mp, cfg);
    if (rc != 0) {
        goto fail;
    }
    r->logits = malloc((size_t)r->max_seqs * r->vocab * sizeof *r->logits);
    r->samples = calloc(r->max_seqs, sizeof *r->samples);
    r->sampled = calloc(r->max_seqs, sizeof *r->sampled);
    r->outs = calloc(r->max_seqs, sizeof *r->outs);
    r->entry_ids = calloc(r->max_seqs, sizeof *r->entry_ids);
    r->entry_rows = calloc(r->max_seqs, sizeof *r->entry_rows);
    if (!r->logits || !r->samples || !r->sampled || !r->outs || !r->entry_ids || !r->entry_rows) {
        s_err(r, "out of memory for %u rows of logits", r->max_seqs);
        rc = TB_ENOMEM;
        goto fail;
    }
    r->err[0] = '\0';
    *out = r;
    return 0;
fail:
    tb_err_set(err, err_len, "%s", r->err);
    tb_runner_destroy(&r);
    return rc;
}

void tb_runner_destroy(tb_runner_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tb_runner_t *r = *self_p;
    tb_scheduler_destroy(&r->sched);
    tb_grammar_set_destroy(&r->grammars);
    tb_sampler_destroy(&r->sampler);
    tb_kv_manager_destroy(&r->kv);
    if (r->backend) {
        r->ops->destroy(&r->backend);
    }
    free(r->logits);
    free(r->samples);
    free(r->sampled);
    free(r->outs);
    free(r->entry_ids);
    free(r->entry_rows);
    free(r);
    *self_p = NULL;
}

/* Hands `sr` (its id set here) to the scheduler, with the compiled `grammar` (NULL: none) in
 * a copy of its parameters. */
static int s_submit(tb_runner_t *r, struct tb_sched_request *sr, const char *grammar,
                    uint64_t *id)
{
    struct tb_sampling_params params = *sr->params;
    params.grammar = NULL;
    sr->params = &params;
    if (grammar) {
        char gerr[320];
        int rc = tb_grammar_set_get(r->grammars, grammar, strlen(grammar), &params.grammar, gerr,
                                    sizeof gerr);
        if (rc != 0) {
            s_err(r, "%s", gerr);
            return rc;
        }
    }
    sr->id = r->next_id + 1;
    int rc = tb_scheduler_submit(r->sched, sr);
    tb_grammar_ref_release(&params.grammar); /* the sequence holds its own reference */
    if (rc != 0) {
        s_err(r, "%s", tb_scheduler_errmsg(r->sched));
        return rc;
    }
    r->err[0] = '\0';
    r->next_id++;
    if (id) {
        *id = r->next_id;
    }
    return 0;
}

int tb_runner_submit(tb_runner_t *self, const struct tb_runner_request *req, uint64_t *id)
{
    struct tb_sched_request sr = {.prompt = req->prompt,
                                  .n_prompt = req->n_prompt,
                                  .params = req->params,
                                  .user = req->user};
    return s_submit(self, &sr, req->grammar, id);
}

int tb_runner_cancel(tb_runner_t *self, uint64_t id)
{
    int rc = tb_scheduler_cancel(self->sched, id);
    snprintf(self->err, sizeof self->err, "%s", rc ? tb_scheduler_errmsg(self->sched) : "");
    return rc;
}

/* The forward pass failed: end the plan's sequences, each one an output with an error. */
static uint32_t s_fail_plan(tb_runner_t *r, const struct tb_sched_plan *plan)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < plan->n_seqs; i++) {
        const struct tb_sched_entry *en = &plan->seqs[i];
        r->outs[n++] = (struct tb_runner_output){.id = en->id,
                                                 .user = en->user,
                                                 .token = -1,
                                                 .finish = TB_FINISH_ERROR};
    }
    tb_scheduler_abort_step(r->sched);
    for (uint32_t i = 0; i < n; i++) {
        tb_scheduler_cancel(r->sched, r->outs[i].id);
    }
    return n;
}

/* Samples every entry that needs a token from its row of logits, and notes each entry's id and
 * row for s_outputs. */
static void s_sample(tb_runner_t *r, const struct tb_sched_plan *plan)
{
    int32_t row = 0;
    r->n_entries = plan->n_seqs;
    for (uint32_t i = 0; i < plan->n_seqs; i++) {
        const struct tb_sched_entry *en = &plan->seqs[i];
        r->sampled[i] = -1;
        r->entry_ids[i] = en->id;
        r->entry_rows[i] = -1;
        if (!en->need_logits) {
            continue;
        }
        if (tb_sampler_sample(r->sampler, en->sampler, r->logits + (size_t)row * r->vocab,
                              &r->samples[i]) == 0) {
            r->sampled[i] = r->samples[i].token;
        }
        r->entry_rows[i] = row++;
    }
}

/* Turns the scheduler's outputs into the runner's, finding each one's entry (outputs come in
 * plan order) for its sample and logits row. */
static uint32_t s_outputs(tb_runner_t *r, const struct tb_sched_output *so, uint32_t n)
{
    uint32_t e = 0;
    for (uint32_t k = 0; k < n; k++) {
        while (e < r->n_entries && r->entry_ids[e] != so[k].id) {
            e++;
        }
        bool ok = so[k].finish != TB_FINISH_ERROR && e < r->n_entries && r->entry_rows[e] >= 0;
        r->outs[k] = (struct tb_runner_output){
            .id = so[k].id,
            .user = so[k].user,
            .token = so[k].token,
            .finish = so[k].finish,
            .n_prompt = so[k].n_prompt,
            .n_generated = so[k].n_generated,
            .n_cached = so[k].n_cached,
            .sample = ok ? &r->samples[e] : NULL,
            .logits = ok ? r->logits + (size_t)r->entry_rows[e] * r->vocab : NULL};
    }
    return n;
}

int tb_runner_step(tb_runner_t *self, const struct tb_runner_output **outs, uint32_t *n_outs)
{
    tb_runner_t *r = self;
    *outs = r->outs;
    *n_outs = 0;
    memset(&r->last, 0, sizeof r->last);
    if (!tb_scheduler_has_work(r->sched)) {
        return TB_AGAIN;
    }
    double t0 = s_now();
    const struct tb_sched_plan *plan;
    int src = tb_scheduler_step(r->sched, &plan);
    if (src != 0) {
        s_err(r, "%s", tb_scheduler_errmsg(r->sched));
        return src;
    }
    if (plan->n_seqs == 0) {
        return TB_AGAIN; /* waiting requests that cannot be admitted yet */
    }
    r->last.n_seqs = plan->n_seqs;
    r->last.n_tokens = plan->n_tokens;
    r->last.n_preempted = plan->n_preempted;
    r->last.decode = plan->n_tokens == plan->n_seqs;
    char err[384] = "";
    double tf = s_now();
    int rc = r->ops->forward(r->backend, plan, r->logits, err, sizeof err);
    r->last.forward_seconds = s_now() - tf;
    if (rc != 0) {
        s_err(r, "forward pass failed: %s", err);
        *n_outs = s_fail_plan(r, plan);
        r->last.step_seconds = s_now() - t0;
        return rc;
    }
    s_sample(r, plan);
    const struct tb_sched_output *so;
    uint32_t n;
    tb_scheduler_complete(r->sched, r->sampled, &so, &n);
    *n_outs = s_outputs(r, so, n);
    r->last.step_seconds = s_now() - t0;
    r->err[0] = '\0';
    return 0;
}

bool tb_runner_has_work(const tb_runner_t *self)
{
    return tb_scheduler_has_work(self->sched);
}

void tb_runner_get_load(const tb_runner_t *self, struct tb_sched_load *out)
{
    tb_scheduler_get_load(self->sched, out);
}

void tb_runner_last_step(const tb_runner_t *self, struct tb_runner_step_info *out)
{
    *out = self->last;
}

int tb_runner_pop_kv_event(tb_runner_t *self, struct tb_kv_event *ev)
{
    return tb_kv_manager_pop_event(self->kv, ev);
}

int tb_runner_export(tb_runner_t *self, uint64_t id, struct tb_runner_seq_state *st)
{
    memset(st, 0, sizeof *st);
    uint32_t n_tokens = 0, n_prompt = 0;
    const int32_t *tokens = tb_scheduler_seq_tokens(self->sched, id, &n_tokens);
    const tb_sampler_seq_t *sq = tb_scheduler_seq_sampler(self->sched, id, &n_prompt);
    if (!tokens || !sq) {
        s_err(self, "no live request %llu", (unsigned long long)id);
        return TB_ENOENT;
    }
    const struct tb_sampling_params *p = tb_sampler_seq_params(sq);
    st->tokens = malloc((size_t)n_tokens * sizeof *st->tokens);
    st->stop_ids = p->n_stop_ids ? malloc((size_t)p->n_stop_ids * sizeof *st->stop_ids) : NULL;
    st->grammar = p->grammar ? strdup(tb_grammar_ref_text(p->grammar)) : NULL;
    if (!st->tokens || (p->n_stop_ids && !st->stop_ids) || (p->grammar && !st->grammar)) {
        tb_runner_seq_state_release(st);
        s_err(self, "out of memory");
        return TB_ENOMEM;
    }
    memcpy(st->tokens, tokens, (size_t)n_tokens * sizeof *st->tokens);
    if (p->n_stop_ids) {
        memcpy(st->stop_ids, p->stop_ids, (size_t)p->n_stop_ids * sizeof *st->stop_ids);
    }
    st->n_tokens = n_tokens;
    st->n_prompt = n_prompt;
    st->params = *p;
    st->params.has_seed = true; /* the seed it drew, so that the copy is complete */
    st->params.stop_ids = st->stop_ids;
    st->params.grammar = NULL;
    tb_sampler_seq_get_rng(sq, &st->rng);
    self->err[0] = '\0';
    return 0;
}

int tb_runner_import(tb_runner_t *self, const struct tb_runner_seq_state *st, void *user,
                     uint64_t *id)
{
    if (!st->tokens || st->n_prompt == 0 || st->n_prompt > st->n_tokens) {
        s_err(self, "not an exported sequence");
        return TB_EINVAL;
    }
    struct tb_sched_request sr = {.prompt = st->tokens,
                                  .n_prompt = st->n_tokens,
                                  .params = &st->params,
                                  .user = user,
                                  .n_generated = st->n_tokens - st->n_prompt,
                                  .rng = &st->rng};
    return s_submit(self, &sr, st->grammar, id);
}

uint32_t tb_runner_vocab(const tb_runner_t *self)
{
    return self->vocab;
}

uint32_t tb_runner_context(const tb_runner_t *self)
{
    return self->context;
}

uint32_t tb_runner_n_blocks(const tb_runner_t *self)
{
    return self->n_blocks;
}

size_t tb_runner_block_bytes(const tb_runner_t *self)
{
    return self->ops->block_bytes(self->backend);
}

const tb_kv_manager_t *tb_runner_kv(const tb_runner_t *self)
{
    return self->kv;
}

tb_backend_t *tb_runner_backend(const tb_runner_t *self)
{
    return self->backend;
}

const struct tb_backend_ops *tb_runner_ops(const tb_runner_t *self)
{
    return self->ops;
}

const char *tb_runner_errmsg(const tb_runner_t *self)
{
    return self->err;
}
