/* tb_engine: the serving loop shared by engine flavours (see tb_engine.h). */
#include "tb_engine.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_actor.h"
#include "tb_dtype.h"
#include "tb_kv_manager.h"
#include "tb_model.h"
#include "tb_sampler.h"
#include "tb_scheduler.h"

#define OFF(m) offsetof(struct tb_engine_config, m)

static const char *const s_kv_dtypes[] = {"f16", "f32", NULL};

const struct tb_config_field tb_engine_config_fields[TB_ENGINE_CONFIG_FIELD_COUNT] = {
    {.key = "served_model_name", .type = TB_CFG_MODEL_NAME, .offset = OFF(served_model_name),
     .required = true, .help = "public model name clients send"},
    {.key = "model", .type = TB_CFG_PATH, .offset = OFF(model), .required = true,
     .must_exist = true, .help = "Hugging Face model folder or .gguf file"},
    {.key = "context_length", .type = TB_CFG_INT, .offset = OFF(context_length),
     .default_value = "0", .has_bounds = true, .min = 0, .max = 10000000,
     .help = "tokens of prompt + completion at most (0: the model's maximum)"},
    {.key = "max_batch_seqs", .type = TB_CFG_INT, .offset = OFF(max_batch_seqs),
     .default_value = "64", .has_bounds = true, .min = 1, .max = 4096,
     .help = "sequences in one batch step at most"},
    {.key = "max_batch_tokens", .type = TB_CFG_INT, .offset = OFF(max_batch_tokens),
     .default_value = "512", .has_bounds = true, .min = 16, .max = 65536,
     .help = "tokens in one batch step at most (prefill chunks + decodes)"},
    {.key = "max_seqs", .type = TB_CFG_INT, .offset = OFF(max_seqs), .default_value = "1024",
     .has_bounds = true, .min = 1, .max = 1000000,
     .help = "requests running or waiting at most; more are refused as overload"},
    {.key = "kv_cache", .type = TB_CFG_BYTES, .offset = OFF(kv_cache_bytes),
     .default_value = "1GiB", .has_bounds = true, .min = 65536, .max = 1e15,
     .help = "memory for the paged KV cache"},
    {.key = "block_size", .type = TB_CFG_INT, .offset = OFF(block_size), .default_value = "16",
     .has_bounds = true, .min = 1, .max = 1024, .help = "tokens per KV block"},
    {.key = "kv_dtype", .type = TB_CFG_ENUM, .offset = OFF(kv_dtype), .default_value = "f16",
     .choices = s_kv_dtypes, .help = "element type of cached keys and values"},
    {.key = "prefix_caching", .type = TB_CFG_BOOL, .offset = OFF(prefix_caching),
     .default_value = "true", .help = "reuse the KV blocks of shared prompt prefixes"},
    {.key = "threads", .type = TB_CFG_INT, .offset = OFF(threads), .default_value = "0",
     .has_bounds = true, .min = 0, .max = 1024, .help = "compute threads (0: all cores)"},
    {.key = "seed", .type = TB_CFG_INT, .offset = OFF(seed), .default_value = "0",
     .help = "seeds the seeds of requests that give none (0: random)"},
    {.key = "load_interval", .type = TB_CFG_SECONDS, .offset = OFF(load_interval_s),
     .default_value = "1s", .has_bounds = true, .min = 0.01, .max = 60,
     .help = "publish load at least this often"},
};

struct seq {
    uint64_t id;
    tb_request_t *req;
    uint32_t n_prompt;
    bool logprobs;
    struct seq *prev, *next;
};

struct tb_engine {
    const struct tb_host *host;
    tb_component_t *comp;
    struct tb_engine_config cfg;
    const struct tb_backend_ops *ops;
    tb_model_t *model;
    const struct tb_model_params *mp;
    tb_backend_t *backend;
    tb_kv_manager_t *kv;
    tb_sampler_t *sampler;
    tb_scheduler_t *sched;
    uint32_t vocab;
    uint32_t context;
    uint32_t n_blocks;
    float *logits;
    struct tb_sample *samples;
    int32_t *sampled;
    tb_actor_t *actor;
    tb_bus_t *bus;
    tb_endpoint_t *ep;
    uint64_t instance;
    char load_topic[128];
    char kv_topic[128];
    uint64_t next_id;
    struct seq *seqs;
    atomic_size_t in_flight;
    int64_t last_load_ns;
    struct tb_sched_load last_load;
    /* metrics */
    tb_metric_t *m_running, *m_waiting, *m_kv_usage, *m_preempt, *m_prompt_toks, *m_gen_toks,
        *m_prefix_q, *m_prefix_h, *m_step;
    char labels[192];
    uint64_t last_preempt, last_pq, last_ph;
};

#define LOG_I(e, ...) TB_LOG_INFO((e)->host, (e)->comp, __VA_ARGS__)
#define LOG_W(e, ...) TB_LOG_WARN((e)->host, (e)->comp, __VA_ARGS__)
#define LOG_E(e, ...) TB_LOG_ERROR((e)->host, (e)->comp, __VA_ARGS__)

/* ------------------------------------------------------------------------------------------- */

static void s_seq_unlink(tb_engine_t *e, struct seq *s)
{
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        e->seqs = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    free(s);
    atomic_fetch_sub(&e->in_flight, 1);
}

static int s_send_chunk(tb_engine_t *e, struct seq *s, const struct tb_msg_gen_chunk *c,
                        bool final)
{
    const struct tb_host *h = e->host;
    struct tb_buf buf = {0};
    int rc = h->msg_encode(TB_MSG_GEN_CHUNK, c, &buf);
    if (rc == 0) {
        rc = h->bus_reply(s->req, buf.data, buf.len, final);
    } else if (final) {
        h->bus_reply_error(s->req, TB_EINTERNAL, "cannot encode a chunk");
    }
    h->buf_free(&buf);
    return rc;
}

static void s_on_request(tb_request_t *req, const void *payload, size_t len, void *user)
{
    tb_engine_t *e = user;
    const struct tb_host *h = e->host;
    char err[512];
    void *m = NULL;
    if (h->msg_decode(TB_MSG_GEN_REQUEST, payload, len, &m, err, sizeof(err)) != 0) {
        h->bus_reply_error(req, TB_EPROTO, "unreadable request: %s", err);
        return;
    }
    struct tb_msg_gen_request *q = m;
    if (strcmp(q->mode, "tokens") != 0 || q->tokens_count == 0) {
        h->bus_reply_error(req, TB_EINVAL,
                           "this engine takes token ids (mode 'tokens', got '%s'%s): put a "
                           "preprocessor in front of it",
                           q->mode, q->tokens_count ? "" : " without tokens");
        h->msg_free(&m);
        return;
    }
    struct tb_sampling_params sp;
    tb_sampling_params_init(&sp);
    const struct tb_generation_defaults *g = &e->mp->gen;
    if (g->temperature >= 0) {
        sp.temperature = (float)g->temperature;
    }
    if (g->do_sample == 0) {
        sp.temperature = 0;
    }
    if (g->top_p > 0) {
        sp.top_p = (float)g->top_p;
    }
    if (g->top_k >= 0) {
        sp.top_k = g->top_k;
    }
    if (g->repetition_penalty > 0) {
        sp.repetition_penalty = (float)g->repetition_penalty;
    }
    if (q->has_temperature) {
        sp.temperature = (float)q->temperature;
    }
    if (q->has_top_p) {
        sp.top_p = (float)q->top_p;
    }
    if (q->has_top_k) {
        sp.top_k = (int32_t)q->top_k;
    }
    if (q->has_min_p) {
        sp.min_p = (float)q->min_p;
    }
    if (q->has_presence_penalty) {
        sp.presence_penalty = (float)q->presence_penalty;
    }
    if (q->has_frequency_penalty) {
        sp.frequency_penalty = (float)q->frequency_penalty;
    }
    if (q->has_repetition_penalty) {
        sp.repetition_penalty = (float)q->repetition_penalty;
    }
    if (q->has_seed) {
        sp.has_seed = true;
        sp.seed = (uint64_t)q->seed;
    }
    if (q->has_max_tokens && q->max_tokens > 0) {
        sp.max_tokens = q->max_tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)q->max_tokens;
    } else if (g->max_new_tokens > 0) {
        sp.max_tokens = (uint32_t)g->max_new_tokens;
    }
    if (q->has_min_tokens && q->min_tokens > 0) {
        sp.min_tokens = q->min_tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)q->min_tokens;
    }
    sp.ignore_eos = q->has_ignore_eos && q->ignore_eos;
    sp.stop_ids = q->stop_token_ids;
    sp.n_stop_ids = (uint32_t)q->stop_token_ids_count;
    sp.logprobs = q->has_logprobs && q->logprobs;
    if (q->has_top_logprobs && q->top_logprobs > 0) {
        sp.logprobs = true;
        sp.top_logprobs = q->top_logprobs > TB_SAMPLER_MAX_TOP_LOGPROBS
                              ? TB_SAMPLER_MAX_TOP_LOGPROBS
                              : (uint32_t)q->top_logprobs;
    }
    struct seq *s = calloc(1, sizeof(*s));
    if (!s) {
        h->bus_reply_error(req, TB_ENOMEM, "out of memory");
        h->msg_free(&m);
        return;
    }
    s->id = ++e->next_id;
    s->req = req;
    s->n_prompt = (uint32_t)q->tokens_count;
    s->logprobs = sp.logprobs;
    struct tb_sched_request sr = {.id = s->id, .prompt = q->tokens,
                                  .n_prompt = (uint32_t)q->tokens_count, .params = &sp,
                                  .user = s};
    int rc = tb_scheduler_submit(e->sched, &sr);
    h->msg_free(&m);
    if (rc != 0) {
        h->bus_reply_error(req, rc, "%s", tb_scheduler_errmsg(e->sched));
        free(s);
        return;
    }
    s->next = e->seqs;
    if (e->seqs) {
        e->seqs->prev = s;
    }
    e->seqs = s;
    atomic_fetch_add(&e->in_flight, 1);
    h->bus_request_set_user(req, s);
    h->metric_add(e->m_prompt_toks, e->labels, (double)s->n_prompt);
}

static void s_on_cancel(tb_request_t *req, void *user)
{
    tb_engine_t *e = user;
    struct seq *s = e->host->bus_request_user(req);
    if (!s) {
        return;
    }
    tb_scheduler_cancel(e->sched, s->id); /* blocks are free before the next step */
    e->host->bus_reply_error(req, TB_ECANCELED, "cancelled");
    s_seq_unlink(e, s);
}

/* ------------------------------------------------------------------------------------------- */

static void s_publish_load(tb_engine_t *e, bool force)
{
    const struct tb_host *h = e->host;
    struct tb_sched_load ld;
    tb_scheduler_get_load(e->sched, &ld);
    int64_t now = h->now_ns();
    bool changed = ld.running != e->last_load.running || ld.waiting != e->last_load.waiting ||
                   ld.kv_used_blocks != e->last_load.kv_used_blocks;
    if (!force && !changed && now - e->last_load_ns < (int64_t)(e->cfg.load_interval_s * 1e9)) {
        return;
    }
    /* At most every 20 ms when only the numbers move, so big batches do not flood the hub. */
    if (!force && changed && now - e->last_load_ns < 20000000) {
        return;
    }
    e->last_load = ld;
    e->last_load_ns = now;
    struct tb_msg_load_event ev = {.instance_id = e->instance,
                                   .endpoint = "", .model = e->cfg.served_model_name,
                                   .running = ld.running, .waiting = ld.waiting};
    char ep[256];
    snprintf(ep, sizeof(ep), "%s.%s.generate", h->namespace_name(e->comp),
             h->component_name(e->comp));
    ev.endpoint = ep;
    ev.kv_used_blocks = ld.kv_used_blocks;
    ev.has_kv_used_blocks = true;
    ev.kv_total_blocks = ld.kv_total_blocks;
    ev.has_kv_total_blocks = true;
    struct tb_buf buf = {0};
    if (h->msg_encode(TB_MSG_LOAD_EVENT, &ev, &buf) == 0) {
        h->bus_publish(e->bus, e->load_topic, buf.data, buf.len);
    }
    h->buf_free(&buf);
    h->metric_set(e->m_running, e->labels, ld.running);
    h->metric_set(e->m_waiting, e->labels, ld.waiting);
    h->metric_set(e->m_kv_usage, e->labels, ld.kv_usage);
    h->metric_add(e->m_preempt, e->labels, (double)(ld.preemptions - e->last_preempt));
    h->metric_add(e->m_prefix_q, e->labels, (double)(ld.prefix_query_tokens - e->last_pq));
    h->metric_add(e->m_prefix_h, e->labels, (double)(ld.prefix_hit_tokens - e->last_ph));
    e->last_preempt = ld.preemptions;
    e->last_pq = ld.prefix_query_tokens;
    e->last_ph = ld.prefix_hit_tokens;
}

static void s_publish_kv_events(tb_engine_t *e)
{
    const struct tb_host *h = e->host;
    uint64_t stored[256], removed[256];
    size_t ns = 0, nr = 0;
    bool cleared = false;
    struct tb_kv_event ev;
    for (;;) {
        bool more = tb_kv_manager_pop_event(e->kv, &ev) == 0;
        if (more) {
            if (ev.type == TB_KV_EVENT_STORED) {
                stored[ns++] = ev.hash;
            } else if (ev.type == TB_KV_EVENT_REMOVED) {
                removed[nr++] = ev.hash;
            } else {
                cleared = true;
                ns = nr = 0;
            }
        }
        if ((!more || ns == 256 || nr == 256) && (ns || nr || cleared)) {
            struct tb_msg_kv_event k = {.instance_id = e->instance,
                                        .block_size = e->cfg.block_size};
            k.stored = stored;
            k.stored_count = ns;
            k.removed = removed;
            k.removed_count = nr;
            k.cleared = cleared;
            k.has_cleared = cleared;
            struct tb_buf buf = {0};
            if (h->msg_encode(TB_MSG_KV_EVENT, &k, &buf) == 0) {
                h->bus_publish(e->bus, e->kv_topic, buf.data, buf.len);
            }
            h->buf_free(&buf);
            ns = nr = 0;
            cleared = false;
        }
        if (!more) {
            break;
        }
    }
}

static const char *s_finish_name(enum tb_finish_reason f)
{
    switch (f) {
    case TB_FINISH_STOP:
        return "stop";
    case TB_FINISH_LENGTH:
        return "length";
    default:
        return "error";
    }
}

/* One batch step: plan, forward, sample, complete, stream. */
static int s_step(void *user, tb_bus_t *bus)
{
    (void)bus;
    tb_engine_t *e = user;
    const struct tb_host *h = e->host;
    if (!tb_scheduler_has_work(e->sched)) {
        s_publish_load(e, false);
        int64_t left = (int64_t)(e->cfg.load_interval_s * 1000) -
                       (h->now_ns() - e->last_load_ns) / 1000000;
        return left > 0 ? (int)left : 0;
    }
    const struct tb_sched_plan *plan;
    if (tb_scheduler_step(e->sched, &plan) != 0 || plan->n_seqs == 0) {
        s_publish_load(e, false);
        return 10; /* waiting requests that cannot be admitted yet: look again soon */
    }
    int64_t t0 = h->now_ns();
    char err[512] = "";
    int rc = e->ops->forward(e->backend, plan, e->logits, err, sizeof(err));
    if (rc != 0) {
        LOG_E(e, "forward pass failed: %s: ending this step's requests", err);
        tb_scheduler_abort_step(e->sched);
        /* A backend failure is not the requests' fault but must not repeat forever: end them. */
        for (uint32_t i = 0; i < plan->n_seqs; i++) {
            struct seq *s = plan->seqs[i].user;
            tb_scheduler_cancel(e->sched, s->id);
            h->bus_reply_error(s->req, TB_EINTERNAL, "forward pass failed: %s", err);
            s_seq_unlink(e, s);
        }
        return 0;
    }
    uint32_t row = 0;
    for (uint32_t i = 0; i < plan->n_seqs; i++) {
        const struct tb_sched_entry *en = &plan->seqs[i];
        e->sampled[i] = -1;
        if (!en->need_logits) {
            continue;
        }
        struct tb_sample *smp = &e->samples[i];
        if (tb_sampler_sample(e->sampler, en->sampler, e->logits + (size_t)row * e->vocab, smp) ==
            0) {
            e->sampled[i] = smp->token;
        }
        row++;
    }
    const struct tb_sched_output *outs;
    uint32_t n_outs;
    tb_scheduler_complete(e->sched, e->sampled, &outs, &n_outs);
    h->metric_add(e->m_step, e->labels, (double)(h->now_ns() - t0) / 1e9);
    /* Outputs come in plan order; find each one's sample by walking the plan alongside. */
    uint32_t pi = 0;
    for (uint32_t k = 0; k < n_outs; k++) {
        const struct tb_sched_output *o = &outs[k];
        while (pi < plan->n_seqs && plan->seqs[pi].id != o->id) {
            pi++;
        }
        struct seq *s = o->user;
        const struct tb_sample *smp = pi < plan->n_seqs ? &e->samples[pi] : NULL;
        struct tb_msg_gen_chunk c = {0};
        int32_t tok = o->token;
        struct tb_msg_top_logprob tops[TB_SAMPLER_MAX_TOP_LOGPROBS];
        struct tb_msg_token_logprob lp = {0};
        if (tok >= 0) {
            c.token_ids = &tok;
            c.token_ids_count = 1;
            h->metric_add(e->m_gen_toks, e->labels, 1);
            if (s->logprobs && smp) {
                lp.token_id = tok;
                lp.logprob = smp->logprob;
                for (uint32_t t = 0; t < smp->n_top; t++) {
                    tops[t] = (struct tb_msg_top_logprob){.token_id = smp->top_ids[t],
                                                          .logprob = smp->top_logprobs[t]};
                }
                lp.top = tops;
                lp.top_count = smp->n_top;
                c.logprobs = &lp;
                c.logprobs_count = 1;
            }
        }
        if (o->finish == TB_FINISH_NONE) {
            if (s_send_chunk(e, s, &c, false) == TB_EGONE) {
                tb_scheduler_cancel(e->sched, s->id); /* nobody listens any more */
                h->bus_reply_error(s->req, TB_ECANCELED, "caller gone");
                s_seq_unlink(e, s);
            }
            continue;
        }
        struct tb_msg_usage u = {.prompt_tokens = o->n_prompt,
                                 .completion_tokens = o->n_generated};
        if (o->n_cached > 0) {
            u.cached_tokens = o->n_cached;
            u.has_cached_tokens = true;
        }
        c.finish_reason = s_finish_name(o->finish);
        c.usage = &u;
        if (o->finish == TB_FINISH_ERROR) {
            h->bus_reply_error(s->req, TB_EINTERNAL, "sampling failed");
        } else {
            s_send_chunk(e, s, &c, true);
        }
        s_seq_unlink(e, s);
    }
    s_publish_kv_events(e);
    s_publish_load(e, false);
    return 0;
}

static int s_init(void *user, tb_bus_t *bus)
{
    tb_engine_t *e = user;
    const struct tb_host *h = e->host;
    e->bus = bus;
    struct tb_endpoint_meta meta = {.model = e->cfg.served_model_name, .kind = "tokens",
                                    .context_length = e->context,
                                    .kv_block_size = e->cfg.block_size};
    char info[256];
    snprintf(info, sizeof(info), "{\"flavour\":\"%s\",\"kv_blocks\":%u,\"vocab\":%u}",
             e->ops->name, e->n_blocks, e->vocab);
    meta.info = info;
    int rc = h->bus_endpoint_add(bus, "generate", &meta, s_on_request, s_on_cancel, e, &e->ep);
    if (rc != 0) {
        h->set_error(e->comp, "cannot serve the generate endpoint: %s", h->strerror(rc));
        return rc;
    }
    e->instance = h->bus_endpoint_instance(e->ep);
    s_publish_load(e, true);
    return 0;
}

static void s_fini(void *user, tb_bus_t *bus)
{
    (void)bus;
    tb_engine_t *e = user;
    while (e->seqs) {
        struct seq *s = e->seqs;
        tb_scheduler_cancel(e->sched, s->id);
        e->host->bus_reply_error(s->req, TB_EDRAINING, "the engine is stopping");
        s_seq_unlink(e, s);
    }
}

static const struct tb_actor_ops s_ops = {.init = s_init, .step = s_step, .fini = s_fini};

/* ------------------------------------------------------------------------------------------- */

static void s_free(tb_engine_t *e)
{
    tb_scheduler_destroy(&e->sched);
    tb_sampler_destroy(&e->sampler);
    tb_kv_manager_destroy(&e->kv);
    if (e->backend) {
        e->ops->destroy(&e->backend);
    }
    tb_model_close(&e->model);
    free(e->logits);
    free(e->samples);
    free(e->sampled);
    free(e);
}

int tb_engine_new(const struct tb_host *host, tb_component_t *comp,
                  const struct tb_engine_config *cfg, const struct tb_backend_ops *ops,
                  tb_engine_t **out)
{
    char err[1024];
    *out = NULL;
    tb_engine_t *e = calloc(1, sizeof(*e));
    if (!e) {
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    e->host = host;
    e->comp = comp;
    e->cfg = *cfg;
    e->ops = ops;
    atomic_init(&e->in_flight, 0);
    int64_t t0 = host->now_ns();
    int rc = tb_model_open(cfg->model, &e->model, err, sizeof(err));
    if (rc != 0) {
        host->set_error(comp, "cannot open model '%s': %s", cfg->model, err);
        goto fail;
    }
    e->mp = tb_model_params(e->model);
    e->vocab = e->mp->vocab;
    e->context = e->mp->max_context;
    if (cfg->context_length > 0 && (e->context == 0 || cfg->context_length < e->context)) {
        e->context = (uint32_t)cfg->context_length;
    }
    if (e->context < 2) {
        host->set_error(comp, "model '%s' declares no usable context length: set context_length",
                        cfg->model);
        rc = TB_ECONFIG;
        goto fail;
    }
    struct tb_backend_config bc = {.threads = (int)cfg->threads,
                                   .block_size = (uint32_t)cfg->block_size,
                                   .kv_budget_bytes = cfg->kv_cache_bytes,
                                   .max_batch_tokens = (uint32_t)cfg->max_batch_tokens,
                                   .max_batch_seqs = (uint32_t)cfg->max_batch_seqs,
                                   .kv_f16 = cfg->kv_dtype == 0};
    rc = ops->create(e->model, &bc, &e->backend, &e->n_blocks, err, sizeof(err));
    if (rc != 0) {
        host->set_error(comp, "the %s backend cannot run model '%s': %s", ops->name, cfg->model,
                        err);
        goto fail;
    }
    struct tb_kv_config kc;
    tb_kv_config_init(&kc);
    kc.n_blocks = e->n_blocks;
    kc.block_size = (uint32_t)cfg->block_size;
    kc.prefix_caching = cfg->prefix_caching;
    rc = tb_kv_manager_new(&kc, &e->kv);
    if (rc != 0) {
        host->set_error(comp, "cannot create the KV manager (%u blocks of %u tokens)",
                        e->n_blocks, (unsigned)cfg->block_size);
        goto fail;
    }
    struct tb_sampler_config sc = {.vocab_size = e->vocab, .seed = (uint64_t)cfg->seed};
    for (uint32_t i = 0; i < e->mp->n_eos_ids && i < TB_SAMPLER_MAX_EOS; i++) {
        sc.eos_ids[sc.n_eos++] = e->mp->eos_ids[i];
    }
    rc = tb_sampler_new(&sc, &e->sampler);
    if (rc != 0) {
        host->set_error(comp, "cannot create the sampler");
        goto fail;
    }
    struct tb_sched_config sched;
    tb_sched_config_init(&sched);
    sched.max_batch_seqs = (uint32_t)cfg->max_batch_seqs;
    sched.max_batch_tokens = (uint32_t)cfg->max_batch_tokens;
    sched.max_seqs = (uint32_t)cfg->max_seqs;
    sched.max_model_len = e->context;
    rc = tb_scheduler_new(&sched, e->kv, e->sampler, &e->sched, err, sizeof(err));
    if (rc != 0) {
        host->set_error(comp, "cannot create the scheduler: %s", err);
        goto fail;
    }
    e->logits = malloc((size_t)cfg->max_batch_seqs * e->vocab * sizeof(float));
    e->samples = calloc((size_t)cfg->max_batch_seqs, sizeof(*e->samples));
    e->sampled = calloc((size_t)cfg->max_batch_seqs, sizeof(*e->sampled));
    if (!e->logits || !e->samples || !e->sampled) {
        host->set_error(comp, "out of memory for %lld rows of logits",
                        (long long)cfg->max_batch_seqs);
        rc = TB_ENOMEM;
        goto fail;
    }
    const char *ns = host->namespace_name(comp);
    snprintf(e->load_topic, sizeof(e->load_topic), "load.%s", ns);
    snprintf(e->kv_topic, sizeof(e->kv_topic), "kv.%s", ns);
    snprintf(e->labels, sizeof(e->labels), "%s,%s", cfg->served_model_name,
             host->component_name(comp));
    static const double step_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,   0.25,   0.5,   1,    2.5,   5};
    const char *lab = "model_name,engine";
    e->m_running = host->metric_get(comp, "vllm:num_requests_running", TB_METRIC_GAUGE,
                                    "requests in the running batch", lab, NULL, 0);
    e->m_waiting = host->metric_get(comp, "vllm:num_requests_waiting", TB_METRIC_GAUGE,
                                    "requests waiting to be scheduled", lab, NULL, 0);
    e->m_kv_usage = host->metric_get(comp, "vllm:kv_cache_usage_perc", TB_METRIC_GAUGE,
                                     "fraction of KV cache blocks in use (0..1)", lab, NULL, 0);
    e->m_preempt = host->metric_get(comp, "vllm:num_preemptions_total", TB_METRIC_COUNTER,
                                    "sequences preempted for lack of KV blocks", lab, NULL, 0);
    e->m_prompt_toks = host->metric_get(comp, "vllm:prompt_tokens_total", TB_METRIC_COUNTER,
                                        "prompt tokens received by the engine", lab, NULL, 0);
    e->m_gen_toks = host->metric_get(comp, "vllm:generation_tokens_total", TB_METRIC_COUNTER,
                                     "tokens generated by the engine", lab, NULL, 0);
    e->m_prefix_q = host->metric_get(comp, "vllm:prefix_cache_queries_total", TB_METRIC_COUNTER,
                                     "prompt tokens looked up in the prefix cache", lab, NULL,
                                     0);
    e->m_prefix_h = host->metric_get(comp, "vllm:prefix_cache_hits_total", TB_METRIC_COUNTER,
                                     "prompt tokens found in the prefix cache", lab, NULL, 0);
    e->m_step = host->metric_get(comp, "tb_engine_step_seconds", TB_METRIC_HISTOGRAM,
                                 "time of one batch step (forward pass and sampling)", lab,
                                 step_buckets, sizeof(step_buckets) / sizeof(step_buckets[0]));
    const struct tb_model_params *mp = e->mp;
    char desc[160] = "", how[sizeof desc + 3] = "";
    if (ops->describe) {
        ops->describe(e->backend, desc, sizeof desc);
        snprintf(how, sizeof how, " (%s)", desc);
    }
    LOG_I(e,
          "model '%s' from %s: %s, %u layers, hidden %u, %u/%u heads, vocab %u, context %u, "
          "weights %s; %s backend%s: %u KV blocks of %lld tokens (%.1f MiB); loaded in %.0f ms",
          cfg->served_model_name, cfg->model, mp->arch, mp->n_layers, mp->hidden, mp->n_heads,
          mp->n_kv_heads, e->vocab, e->context, tb_dtype_name(mp->dtype), ops->name, how,
          e->n_blocks, (long long)cfg->block_size,
          (double)e->n_blocks * (double)ops->block_bytes(e->backend) / 1048576.0,
          (double)(host->now_ns() - t0) / 1e6);
    *out = e;
    return 0;
fail:
    s_free(e);
    return rc;
}

int tb_engine_start(tb_engine_t *e)
{
    return tb_actor_start(&e->actor, e->host, e->comp, &s_ops, e);
}

size_t tb_engine_in_flight(tb_engine_t *e)
{
    return atomic_load(&e->in_flight);
}

void tb_engine_stop(tb_engine_t *e)
{
    tb_actor_stop(&e->actor);
}

void tb_engine_destroy(tb_engine_t **e_p)
{
    if (!e_p || !*e_p) {
        return;
    }
    s_free(*e_p);
    *e_p = NULL;
}
