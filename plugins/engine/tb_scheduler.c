/*
 * tb_scheduler.c - continuous batching: the waiting queue, the running set, the three-pass step
 * (decodes, prefill chunks, admissions), preemption by recompute, finish detection and
 * cancellation (the policy is described in the header).
 *
 * Everything a step touches is allocated up front (plan arrays sized by the budgets, per-sequence
 * token and block arrays sized for the sequence's whole life at submit), so a step allocates
 * nothing.  Sequences are found by id with a linear scan of the live set: it is bounded by
 * max_seqs and only submit and cancel do it.
 */
#include "tb_scheduler.h"

#include "tb_errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum seq_state { SEQ_WAITING, SEQ_RUNNING, SEQ_CANCELLED };

struct seq {
    uint64_t id;
    void *user;
    int32_t *tokens; /* prompt, then generated */
    uint32_t n_tokens;
    uint32_t n_prompt;
    uint32_t max_len;    /* n_tokens never exceeds it */
    uint32_t n_computed; /* leading tokens whose keys and values are in the cache */
    uint32_t n_cached;   /* prompt tokens found cached at the first admission */
    bool admitted_once;
    enum seq_state state;
    int32_t plan_index; /* its entry in the pending plan, or -1 */
    struct tb_kv_seq kv;
    tb_sampler_seq_t *sampler;
};

struct tb_scheduler {
    struct tb_sched_config cfg;
    tb_kv_manager_t *kv;
    tb_sampler_t *sampler;
    uint32_t block_size;
    uint32_t cache_slots;
    uint32_t vocab;

    struct seq **live; /* every live sequence, unordered */
    uint32_t n_live;
    struct seq **running; /* in admission order, oldest first */
    uint32_t n_running;
    struct seq **waiting; /* ring buffer of max_seqs, front at wait_head */
    uint32_t wait_head, n_waiting;
    struct seq **zombies; /* cancelled while in the pending plan */
    uint32_t n_zombies;

    bool pending;
    struct tb_sched_plan plan;
    struct tb_sched_entry *entries;
    struct seq **entry_seq;
    int32_t *tokens;
    uint32_t *positions;
    uint32_t *slots;
    struct tb_sched_output *outs;

    uint64_t steps;
    uint64_t preemptions;
    char err[256];
};

static void s_err(tb_scheduler_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_err(tb_scheduler_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tb_err_vset(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
}

void tb_sched_config_init(struct tb_sched_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_batch_seqs = 64;
    cfg->max_batch_tokens = 2048;
    cfg->max_seqs = 1024;
    cfg->chunked_prefill = true;
}

/* ---- sequences ---- */

static void s_seq_free(tb_scheduler_t *s, struct seq *q)
{
    if (!q) {
        return;
    }
    tb_kv_manager_seq_free(s->kv, &q->kv);
    tb_kv_seq_release(&q->kv);
    tb_sampler_seq_destroy(&q->sampler);
    free(q->tokens);
    free(q);
}

static void s_live_remove(tb_scheduler_t *s, struct seq *q)
{
    for (uint32_t i = 0; i < s->n_live; i++) {
        if (s->live[i] == q) {
            s->live[i] = s->live[--s->n_live];
            return;
        }
    }
}

static struct seq *s_find(const tb_scheduler_t *s, uint64_t id)
{
    for (uint32_t i = 0; i < s->n_live; i++) {
        if (s->live[i]->id == id) {
            return s->live[i];
        }
    }
    return NULL;
}

static struct seq **s_wait_at(tb_scheduler_t *s, uint32_t i)
{
    return &s->waiting[(s->wait_head + i) % s->cfg.max_seqs];
}

static void s_wait_push_back(tb_scheduler_t *s, struct seq *q)
{
    *s_wait_at(s, s->n_waiting++) = q;
    q->state = SEQ_WAITING;
}

static void s_wait_push_front(tb_scheduler_t *s, struct seq *q)
{
    s->wait_head = (s->wait_head + s->cfg.max_seqs - 1) % s->cfg.max_seqs;
    s->waiting[s->wait_head] = q;
    s->n_waiting++;
    q->state = SEQ_WAITING;
}

static void s_wait_pop_front(tb_scheduler_t *s)
{
    s->wait_head = (s->wait_head + 1) % s->cfg.max_seqs;
    s->n_waiting--;
}

static void s_wait_remove(tb_scheduler_t *s, struct seq *q)
{
    for (uint32_t i = 0; i < s->n_waiting; i++) {
        if (*s_wait_at(s, i) == q) {
            for (uint32_t j = i; j + 1 < s->n_waiting; j++) {
                *s_wait_at(s, j) = *s_wait_at(s, j + 1);
            }
            s->n_waiting--;
            return;
        }
    }
}

static void s_run_remove_at(tb_scheduler_t *s, uint32_t i)
{
    memmove(&s->running[i], &s->running[i + 1],
            (size_t)(s->n_running - i - 1) * sizeof *s->running);
    s->n_running--;
}

static void s_run_remove(tb_scheduler_t *s, struct seq *q)
{
    for (uint32_t i = 0; i < s->n_running; i++) {
        if (s->running[i] == q) {
            s_run_remove_at(s, i);
            return;
        }
    }
}

/* ---- lifecycle ---- */

int tb_scheduler_new(const struct tb_sched_config *cfg, tb_kv_manager_t *kv,
                     tb_sampler_t *sampler, tb_scheduler_t **out, char *err, size_t err_len)
{
    tb_scheduler_t *s = NULL;
    char msg[256] = "";
    int rc = TB_ECONFIG;
    uint32_t slots = tb_kv_manager_n_blocks(kv) * tb_kv_manager_block_size(kv);
    uint32_t longest = cfg->max_model_len < slots ? cfg->max_model_len : slots;
    if (cfg->max_batch_seqs == 0 || cfg->max_batch_tokens == 0) {
        snprintf(msg, sizeof msg, "'max_batch_seqs' and 'max_batch_tokens' must be at least 1");
    } else if (cfg->max_seqs < cfg->max_batch_seqs) {
        snprintf(msg, sizeof msg, "'max_seqs' (%u) must be at least 'max_batch_seqs' (%u)",
                 cfg->max_seqs, cfg->max_batch_seqs);
    } else if (cfg->max_model_len < 2) {
        snprintf(msg, sizeof msg, "'max_model_len' must be at least 2");
    } else if (!cfg->chunked_prefill && cfg->max_batch_tokens < longest) {
        snprintf(msg, sizeof msg,
                 "'max_batch_tokens' (%u) must cover the longest sequence (%u tokens) when "
                 "'chunked_prefill' is off",
                 cfg->max_batch_tokens, longest);
    } else {
        rc = 0;
    }
    if (rc != 0) {
        goto fail;
    }
    rc = TB_ENOMEM;
    snprintf(msg, sizeof msg, "out of memory");
    s = calloc(1, sizeof *s);
    if (!s) {
        goto fail;
    }
    s->cfg = *cfg;
    s->kv = kv;
    s->sampler = sampler;
    s->block_size = tb_kv_manager_block_size(kv);
    s->cache_slots = slots;
    s->vocab = tb_sampler_vocab_size(sampler);
    uint32_t nb = cfg->max_batch_seqs, nt = cfg->max_batch_tokens;
    s->live = calloc(cfg->max_seqs, sizeof *s->live);
    s->waiting = calloc(cfg->max_seqs, sizeof *s->waiting);
    s->running = calloc(nb, sizeof *s->running);
    s->zombies = calloc(nb, sizeof *s->zombies);
    s->entries = calloc(nb, sizeof *s->entries);
    s->entry_seq = calloc(nb, sizeof *s->entry_seq);
    s->outs = calloc(nb, sizeof *s->outs);
    s->tokens = calloc(nt, sizeof *s->tokens);
    s->positions = calloc(nt, sizeof *s->positions);
    s->slots = calloc(nt, sizeof *s->slots);
    if (!s->live || !s->waiting || !s->running || !s->zombies || !s->entries || !s->entry_seq ||
        !s->outs || !s->tokens || !s->positions || !s->slots) {
        goto fail_sched;
    }
    s->plan.seqs = s->entries;
    s->plan.tokens = s->tokens;
    s->plan.positions = s->positions;
    s->plan.slots = s->slots;
    *out = s;
    s = NULL;
    rc = 0;
fail_sched:
    tb_scheduler_destroy(&s);
fail:
    if (rc != 0 && err && err_len > 0) {
        snprintf(err, err_len, "%s", msg);
    }
    return rc;
}

void tb_scheduler_destroy(tb_scheduler_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tb_scheduler_t *s = *self_p;
    for (uint32_t i = 0; s->live && i < s->n_live; i++) {
        s_seq_free(s, s->live[i]);
    }
    for (uint32_t i = 0; s->zombies && i < s->n_zombies; i++) {
        s_seq_free(s, s->zombies[i]);
    }
    free(s->live);
    free(s->waiting);
    free(s->running);
    free(s->zombies);
    free(s->entries);
    free(s->entry_seq);
    free(s->outs);
    free(s->tokens);
    free(s->positions);
    free(s->slots);
    free(s);
    *self_p = NULL;
}

const char *tb_scheduler_errmsg(const tb_scheduler_t *self)
{
    return self->err;
}

/* ---- requests ---- */

int tb_scheduler_submit(tb_scheduler_t *self, const struct tb_sched_request *req)
{
    tb_scheduler_t *s = self;
    struct seq *q = NULL;
    int rc = TB_EINVAL;
    s->err[0] = '\0';
    if (!req->prompt || req->n_prompt == 0) {
        s_err(s, "empty prompt");
        goto fail;
    }
    if (!req->params) {
        s_err(s, "no sampling parameters");
        goto fail;
    }
    if (req->n_generated >= req->n_prompt) {
        s_err(s, "a resumed sequence needs at least one prompt token");
        goto fail;
    }
    if (s_find(s, req->id)) {
        s_err(s, "request id %llu is already live", (unsigned long long)req->id);
        rc = TB_EEXIST;
        goto fail;
    }
    if (s->n_live >= s->cfg.max_seqs) {
        s_err(s, "%u requests already live (max_seqs): try later", s->cfg.max_seqs);
        rc = TB_EOVERLOAD;
        goto fail;
    }
    char perr[160];
    if (tb_sampling_params_validate(req->params, s->vocab, perr, sizeof perr) != 0) {
        s_err(s, "%s", perr);
        goto fail;
    }
    for (uint32_t i = 0; i < req->n_prompt; i++) {
        if (req->prompt[i] < 0 || (uint32_t)req->prompt[i] >= s->vocab) {
            s_err(s, "prompt token %u is %d, outside the vocabulary (%u)", i, (int)req->prompt[i],
                  s->vocab);
            goto fail;
        }
    }
    if (req->n_prompt >= s->cfg.max_model_len) {
        s_err(s, "prompt of %u tokens leaves no room to generate within the context length %u",
              req->n_prompt, s->cfg.max_model_len);
        rc = TB_ECONTEXT;
        goto fail;
    }
    if (req->n_prompt >= s->cache_slots) {
        s_err(s, "prompt of %u tokens does not fit the KV cache (%u token slots in all)",
              req->n_prompt, s->cache_slots);
        rc = TB_E2BIG;
        goto fail;
    }
    uint32_t n_orig = req->n_prompt - req->n_generated; /* the prompt without resumed tokens */
    uint32_t max_len = s->cfg.max_model_len < s->cache_slots ? s->cfg.max_model_len
                                                             : s->cache_slots;
    if (req->params->max_tokens > 0 && (uint64_t)n_orig + req->params->max_tokens < max_len) {
        max_len = n_orig + req->params->max_tokens;
    }
    if (req->n_prompt >= max_len) {
        s_err(s, "the resumed sequence has no token left to generate (%u of %u)", req->n_prompt,
              max_len);
        rc = TB_EINVAL;
        goto fail;
    }

    rc = TB_ENOMEM;
    q = calloc(1, sizeof *q);
    if (!q) {
        s_err(s, "out of memory");
        goto fail;
    }
    q->id = req->id;
    q->user = req->user;
    q->n_prompt = n_orig;
    q->n_tokens = req->n_prompt;
    q->max_len = max_len;
    q->plan_index = -1;
    q->tokens = malloc((size_t)max_len * sizeof *q->tokens);
    if (!q->tokens) {
        s_err(s, "out of memory for %u tokens", max_len);
        goto fail_seq;
    }
    memcpy(q->tokens, req->prompt, (size_t)req->n_prompt * sizeof *q->tokens);
    rc = tb_kv_seq_init(&q->kv, (max_len + s->block_size - 1) / s->block_size);
    if (rc != 0) {
        s_err(s, "out of memory for a block table");
        goto fail_seq;
    }
    rc = tb_sampler_seq_new(s->sampler, req->params, req->prompt, n_orig, &q->sampler);
    if (rc != 0) {
        s_err(s, "cannot create the sampling state");
        goto fail_seq;
    }
    for (uint32_t i = n_orig; i < req->n_prompt && rc == 0; i++) {
        rc = tb_sampler_seq_accept(q->sampler, req->prompt[i]);
    }
    if (rc != 0) {
        s_err(s, "cannot resume the sampling state");
        goto fail_seq;
    }
    if (req->rng) {
        tb_sampler_seq_set_rng(q->sampler, req->rng);
    }
    s->live[s->n_live++] = q;
    s_wait_push_back(s, q);
    q = NULL;
    rc = 0;
fail_seq:
    s_seq_free(s, q);
fail:
    return rc;
}

int tb_scheduler_cancel(tb_scheduler_t *self, uint64_t id)
{
    tb_scheduler_t *s = self;
    struct seq *q = s_find(s, id);
    if (!q) {
        s_err(s, "no live request %llu", (unsigned long long)id);
        return TB_ENOENT;
    }
    s->err[0] = '\0';
    if (q->state == SEQ_RUNNING) {
        s_run_remove(s, q);
    } else {
        s_wait_remove(s, q);
    }
    s_live_remove(s, q);
    tb_kv_manager_seq_free(s->kv, &q->kv);
    if (s->pending && q->plan_index >= 0) {
        /* The plan still points at its entry, block table and sampler: keep the memory (its
         * blocks are already free; they are only handed out again by the next step). */
        q->state = SEQ_CANCELLED;
        s->zombies[s->n_zombies++] = q;
    } else {
        s_seq_free(s, q);
    }
    return 0;
}

bool tb_scheduler_has_work(const tb_scheduler_t *self)
{
    return self->n_live > 0;
}

void tb_scheduler_get_load(const tb_scheduler_t *self, struct tb_sched_load *out)
{
    struct tb_kv_usage u;
    tb_kv_manager_get_usage(self->kv, &u);
    memset(out, 0, sizeof *out);
    out->running = self->n_running;
    out->waiting = self->n_waiting;
    out->kv_used_blocks = u.used;
    out->kv_total_blocks = u.total;
    out->kv_usage = u.fraction;
    out->steps = self->steps;
    out->preemptions = self->preemptions;
    out->prefix_query_tokens = u.query_tokens;
    out->prefix_hit_tokens = u.hit_tokens;
}

const int32_t *tb_scheduler_seq_tokens(const tb_scheduler_t *self, uint64_t id, uint32_t *n)
{
    struct seq *q = s_find(self, id);
    if (!q) {
        *n = 0;
        return NULL;
    }
    *n = q->n_tokens;
    return q->tokens;
}

const tb_sampler_seq_t *tb_scheduler_seq_sampler(const tb_scheduler_t *self, uint64_t id,
                                                 uint32_t *n_prompt)
{
    struct seq *q = s_find(self, id);
    *n_prompt = q ? q->n_prompt : 0;
    return q ? q->sampler : NULL;
}

/* ---- the step ---- */

static void s_add(tb_scheduler_t *s, struct seq *q, uint32_t n)
{
    struct tb_sched_plan *p = &s->plan;
    uint32_t e = p->n_seqs++;
    struct tb_sched_entry *en = &s->entries[e];
    en->id = q->id;
    en->user = q->user;
    en->sampler = q->sampler;
    en->start = p->n_tokens;
    en->n_tokens = n;
    en->pos = q->n_computed;
    en->n_ctx = q->n_computed + n;
    en->block_table = q->kv.blocks;
    en->n_blocks = q->kv.n_blocks;
    en->need_logits = en->n_ctx == q->n_tokens;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pos = q->n_computed + i;
        s->tokens[p->n_tokens] = q->tokens[pos];
        s->positions[p->n_tokens] = pos;
        s->slots[p->n_tokens] = q->kv.blocks[pos / s->block_size] * s->block_size +
                                pos % s->block_size;
        p->n_tokens++;
    }
    p->n_logits += en->need_logits;
    s->entry_seq[e] = q;
    q->plan_index = (int32_t)e;
}

/* Preempts running[i]: returns its blocks and requeues it at the front to recompute. */
static void s_preempt(tb_scheduler_t *s, uint32_t i)
{
    struct seq *q = s->running[i];
    s_run_remove_at(s, i);
    tb_kv_manager_seq_free(s->kv, &q->kv);
    q->n_computed = 0;
    s_wait_push_front(s, q);
    s->plan.n_preempted++;
    s->preemptions++;
}

/* Index of the newest running sequence not in the plan, if it is newer than `than` (or is it,
 * when `self_ok`); -1 otherwise. */
static int32_t s_victim(const tb_scheduler_t *s, uint32_t than, bool self_ok)
{
    for (uint32_t i = s->n_running; i-- > than;) {
        if (s->running[i]->plan_index < 0 && (i > than || self_ok)) {
            return (int32_t)i;
        }
    }
    return -1;
}

/* Pass 1: a decode for running[*i].  Returns false when it preempted running[*i] itself. */
static bool s_schedule_decode(tb_scheduler_t *s, uint32_t i)
{
    struct seq *q = s->running[i];
    uint32_t need = tb_kv_manager_seq_blocks_needed(s->kv, &q->kv, q->n_computed + 1);
    while (need > tb_kv_manager_n_free(s->kv)) {
        int32_t v = s_victim(s, i, true);
        if (v < 0) {
            return true; /* cannot happen: the oldest fits the cache alone; skip the step */
        }
        s_preempt(s, (uint32_t)v);
        if ((uint32_t)v == i) {
            return false;
        }
    }
    if (tb_kv_manager_seq_grow(s->kv, &q->kv, q->n_computed + 1) == 0) {
        s_add(s, q, 1);
    }
    return true;
}

/* Pass 2: the next prefill chunk of running[i], at most `budget` tokens.  Returns the tokens
 * scheduled (0: none this step). */
static uint32_t s_schedule_chunk(tb_scheduler_t *s, uint32_t i, uint32_t budget)
{
    struct seq *q = s->running[i];
    uint32_t bs = s->block_size;
    uint32_t n = q->n_tokens - q->n_computed;
    if (n > budget) {
        n = budget;
    }
    while (tb_kv_manager_seq_blocks_needed(s->kv, &q->kv, q->n_computed + n) >
           tb_kv_manager_n_free(s->kv)) {
        int32_t v = s_victim(s, i, false);
        if (v < 0) {
            break;
        }
        s_preempt(s, (uint32_t)v);
    }
    uint64_t room = (uint64_t)q->kv.n_blocks * bs - q->n_computed +
                    (uint64_t)tb_kv_manager_n_free(s->kv) * bs;
    if (n > room) {
        n = (uint32_t)room;
    }
    if (n == 0 || tb_kv_manager_seq_grow(s->kv, &q->kv, q->n_computed + n) != 0) {
        return 0;
    }
    s_add(s, q, n);
    return n;
}

/* Pass 3: admits the front of the queue.  Returns the tokens scheduled, 0 when it must wait. */
static uint32_t s_admit(tb_scheduler_t *s, uint32_t budget)
{
    struct seq *q = *s_wait_at(s, 0);
    if (q->kv.n_blocks == 0) {
        q->n_computed = tb_kv_manager_seq_match(s->kv, &q->kv, q->tokens, q->n_tokens);
    }
    uint32_t n = q->n_tokens - q->n_computed;
    if (n > budget) {
        if (!s->cfg.chunked_prefill) {
            goto wait;
        }
        n = budget;
    }
    if (tb_kv_manager_seq_grow(s->kv, &q->kv, q->n_computed + n) != 0) {
        goto wait;
    }
    if (!q->admitted_once) {
        q->admitted_once = true;
        q->n_cached = q->n_computed < q->n_prompt ? q->n_computed : q->n_prompt;
    }
    s_wait_pop_front(s);
    q->state = SEQ_RUNNING;
    s->running[s->n_running++] = q;
    s_add(s, q, n);
    return n;

wait:
    /* Give back what the prefix match took so waiting holds no blocks. */
    tb_kv_manager_seq_free(s->kv, &q->kv);
    q->n_computed = 0;
    return 0;
}

int tb_scheduler_step(tb_scheduler_t *self, const struct tb_sched_plan **plan)
{
    tb_scheduler_t *s = self;
    if (s->pending) {
        s_err(s, "the previous plan was neither completed nor aborted");
        return TB_EBUSY;
    }
    s->err[0] = '\0';
    struct tb_sched_plan *p = &s->plan;
    p->n_seqs = p->n_tokens = p->n_logits = p->n_preempted = 0;
    uint32_t budget = s->cfg.max_batch_tokens;

    for (uint32_t i = 0; i < s->n_running && budget > 0; i++) {
        struct seq *q = s->running[i];
        if (q->n_tokens - q->n_computed != 1) {
            continue;
        }
        if (!s_schedule_decode(s, i)) {
            break;
        }
        if (q->plan_index >= 0) {
            budget--;
        }
    }
    for (uint32_t i = 0; i < s->n_running && budget > 0; i++) {
        if (s->running[i]->plan_index < 0) {
            budget -= s_schedule_chunk(s, i, budget);
        }
    }
    while (p->n_preempted == 0 && s->n_waiting > 0 && budget > 0 &&
           s->n_running < s->cfg.max_batch_seqs) {
        uint32_t n = s_admit(s, budget);
        if (n == 0) {
            break;
        }
        budget -= n;
    }
    if (p->n_seqs > 0) {
        s->pending = true;
        s->steps++;
    }
    *plan = p;
    return 0;
}

static void s_release_zombies(tb_scheduler_t *s)
{
    for (uint32_t i = 0; i < s->n_zombies; i++) {
        s_seq_free(s, s->zombies[i]);
    }
    s->n_zombies = 0;
}

static void s_end_plan(tb_scheduler_t *s)
{
    for (uint32_t e = 0; e < s->plan.n_seqs; e++) {
        s->entry_seq[e]->plan_index = -1;
    }
    s_release_zombies(s);
    s->plan.n_seqs = s->plan.n_tokens = s->plan.n_logits = 0;
    s->pending = false;
}

/* Whether `q`, having just appended `tok`, is done, and why. */
static enum tb_finish_reason s_finished(const tb_scheduler_t *s, const struct seq *q, int32_t tok)
{
    const struct tb_sampling_params *p = tb_sampler_seq_params(q->sampler);
    uint32_t n_gen = q->n_tokens - q->n_prompt;
    if (tb_sampler_seq_grammar_done(q->sampler)) {
        return TB_FINISH_STOP; /* its grammar accepted an end-of-sequence id */
    }
    if (n_gen >= p->min_tokens && ((!p->ignore_eos && tb_sampler_is_eos(s->sampler, tok)) ||
                                   tb_sampler_seq_is_stop(q->sampler, tok))) {
        return TB_FINISH_STOP;
    }
    if (q->n_tokens >= q->max_len) {
        return TB_FINISH_LENGTH;
    }
    return TB_FINISH_NONE;
}

int tb_scheduler_complete(tb_scheduler_t *self, const int32_t *sampled,
                          const struct tb_sched_output **outs, uint32_t *n_outs)
{
    tb_scheduler_t *s = self;
    *outs = s->outs;
    *n_outs = 0;
    if (!s->pending) {
        s_err(s, "no plan is pending");
        return TB_EINVAL;
    }
    if (!sampled && s->plan.n_logits > 0) {
        s_err(s, "the plan needs %u sampled tokens", s->plan.n_logits);
        return TB_EINVAL;
    }
    s->err[0] = '\0';
    uint32_t no = 0;
    for (uint32_t e = 0; e < s->plan.n_seqs; e++) {
        struct seq *q = s->entry_seq[e];
        const struct tb_sched_entry *en = &s->entries[e];
        if (q->state == SEQ_CANCELLED) {
            continue;
        }
        q->n_computed += en->n_tokens;
        tb_kv_manager_seq_commit(s->kv, &q->kv, q->tokens, q->n_computed);
        if (!en->need_logits) {
            continue;
        }
        int32_t tok = sampled[e];
        struct tb_sched_output *o = &s->outs[no++];
        o->id = q->id;
        o->user = q->user;
        o->n_prompt = q->n_prompt;
        o->n_cached = q->n_cached;
        if (tok < 0 || (uint32_t)tok >= s->vocab) {
            o->token = -1;
            o->finish = TB_FINISH_ERROR;
        } else {
            q->tokens[q->n_tokens++] = tok;
            o->token = tok;
            o->finish = s_finished(s, q, tok);
        }
        o->n_generated = q->n_tokens - q->n_prompt;
        if (o->finish != TB_FINISH_NONE) {
            s_run_remove(s, q);
            s_live_remove(s, q);
            q->state = SEQ_CANCELLED; /* freed with the zombies below */
            s->zombies[s->n_zombies++] = q;
        }
    }
    s_end_plan(s);
    *n_outs = no;
    return 0;
}

void tb_scheduler_abort_step(tb_scheduler_t *self)
{
    if (self->pending) {
        s_end_plan(self);
    }
}
