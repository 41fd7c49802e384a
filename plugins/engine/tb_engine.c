/* tb_engine: the bus glue shared by engine flavours (see tb_engine.h): requests and
 * cancellations from the bus into the runner, its outputs back as chunks, load and KV events,
 * metrics. */
#include "tb_engine.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_actor.h"
#include "tb_dtype.h"
#include "tb_model.h"
#include "tb_runner.h"
#include "tb_sampling_msg.h"

struct seq {
    uint64_t id;
    tb_request_t *req;
    bool logprobs;
    bool grammar; /* it follows a grammar */
    struct seq *prev, *next;
};

struct tb_engine {
    const struct tb_host *host;
    tb_component_t *comp;
    struct tb_engine_config cfg;
    const void *flavour_cfg; /* the flavour's part of the host's config */
    const struct tb_engine_flavour *flavour;
    tb_model_t *model;
    const struct tb_model_params *mp;
    tb_runner_t *runner;
    tb_actor_t *actor;
    tb_bus_t *bus;
    tb_endpoint_t *ep;
    uint64_t instance;
    char load_topic[128];
    char kv_topic[128];
    char kv_sync_topic[128];
    uint64_t kv_seq;  /* of the last kv_event published */
    bool kv_snapshot; /* a router asked for a snapshot */
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

/* A migrated request (resumed_tokens): the last tokens of its prompt are the answer an earlier
 * attempt had generated.  It continues as that answer: they count as generated (max_tokens,
 * min_tokens and penalties see them), and a seeded sampler's generator is advanced by one draw
 * per such token, the draws a sampling step takes, so a seeded answer goes on as it would have
 * (greedy ones need no generator). */
static int s_submit_resumed(tb_engine_t *e, const struct tb_msg_gen_request *q,
                            const struct tb_sampling_params *sp, struct seq *s)
{
    uint32_t n = (uint32_t)q->tokens_count;
    uint32_t resumed = q->resumed_tokens < (int64_t)n ? (uint32_t)q->resumed_tokens : n - 1;
    struct tb_runner_seq_state st = {.tokens = (int32_t *)q->tokens,
                                     .n_tokens = n,
                                     .n_prompt = n - resumed,
                                     .params = *sp,
                                     /* borrowed: import compiles it (or finds it compiled) */
                                     .grammar = (char *)q->grammar};
    if (st.params.max_tokens > 0) {
        st.params.max_tokens += resumed;
    }
    if (st.params.min_tokens > 0) {
        st.params.min_tokens += resumed;
    }
    if (!st.params.has_seed) {
        st.params.seed = (uint64_t)e->host->now_ns() ^ s->id ^ (uintptr_t)s;
    }
    tb_rng_seed(&st.rng, st.params.seed);
    for (uint32_t i = 0; i < resumed && st.params.temperature > 0; i++) {
        (void)tb_rng_uniform(&st.rng);
    }
    return tb_runner_import(e->runner, &st, s, &s->id);
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
    struct seq *s = NULL;
    if (strcmp(q->mode, "tokens") != 0 || q->tokens_count == 0) {
        h->bus_reply_error(req, TB_EINVAL,
                           "this engine takes token ids (mode 'tokens', got '%s'%s): put a "
                           "preprocessor in front of it",
                           q->mode, q->tokens_count ? "" : " without tokens");
        goto done;
    }
    struct tb_sampling_params sp;
    tb_sampling_params_from_msg(&sp, q, &e->mp->gen);
    s = calloc(1, sizeof(*s));
    if (!s) {
        h->bus_reply_error(req, TB_ENOMEM, "out of memory");
        goto done;
    }
    s->req = req;
    s->logprobs = sp.logprobs;
    s->grammar = q->grammar != NULL;
    struct tb_runner_request rr = {.prompt = q->tokens,
                                   .n_prompt = (uint32_t)q->tokens_count,
                                   .params = &sp,
                                   .user = s,
                                   .grammar = q->grammar};
    int rc = q->has_resumed_tokens && q->resumed_tokens > 0
                 ? s_submit_resumed(e, q, &sp, s)
                 : tb_runner_submit(e->runner, &rr, &s->id);
    if (rc != 0) {
        h->bus_reply_error(req, rc, "%s", tb_runner_errmsg(e->runner));
        free(s);
        goto done;
    }
    s->next = e->seqs;
    if (e->seqs) {
        e->seqs->prev = s;
    }
    e->seqs = s;
    atomic_fetch_add(&e->in_flight, 1);
    h->bus_request_set_user(req, s);
    h->metric_add(e->m_prompt_toks, e->labels, (double)rr.n_prompt);
done:
    h->msg_free(&m);
}

static void s_on_cancel(tb_request_t *req, void *user)
{
    tb_engine_t *e = user;
    struct seq *s = e->host->bus_request_user(req);
    if (!s) {
        return;
    }
    tb_runner_cancel(e->runner, s->id); /* blocks are free before the next step */
    e->host->bus_reply_error(req, TB_ECANCELED, "cancelled");
    s_seq_unlink(e, s);
}

/* ------------------------------------------------------------------------------------------- */

static void s_publish_load(tb_engine_t *e, bool force)
{
    const struct tb_host *h = e->host;
    struct tb_sched_load ld;
    tb_runner_get_load(e->runner, &ld);
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
                                   .endpoint = "",
                                   .model = e->cfg.served_model_name,
                                   .running = ld.running,
                                   .waiting = ld.waiting};
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

/* Every block hash the cache holds, as one kv_event (snapshot), for a router that saw a gap. */
static void s_publish_kv_snapshot(tb_engine_t *e)
{
    const struct tb_host *h = e->host;
    const tb_kv_manager_t *kv = tb_runner_kv(e->runner);
    uint32_t nb = tb_kv_manager_n_blocks(kv);
    uint64_t *all = malloc((size_t)nb * sizeof(*all) + 1);
    if (!all) {
        return; /* the router asks again */
    }
    size_t n = 0;
    for (uint32_t b = 0; b < nb; b++) {
        if (tb_kv_manager_is_hashed(kv, b, &all[n])) {
            n++;
        }
    }
    struct tb_msg_kv_event k = {.instance_id = e->instance,
                                .block_size = e->cfg.block_size,
                                .stored = all,
                                .stored_count = n,
                                .seq = e->kv_seq,
                                .has_seq = true,
                                .snapshot = true,
                                .has_snapshot = true,
                                .model = e->cfg.served_model_name};
    struct tb_buf buf = {0};
    if (h->msg_encode(TB_MSG_KV_EVENT, &k, &buf) == 0) {
        h->bus_publish(e->bus, e->kv_topic, buf.data, buf.len);
    }
    h->buf_free(&buf);
    free(all);
}

static void s_publish_kv_events(tb_engine_t *e)
{
    const struct tb_host *h = e->host;
    uint64_t stored[256], parents[256], removed[256];
    size_t ns = 0, nr = 0;
    bool cleared = false;
    struct tb_kv_event ev;
    for (;;) {
        bool more = tb_runner_pop_kv_event(e->runner, &ev) == 0;
        if (more) {
            if (ev.type == TB_KV_EVENT_STORED) {
                parents[ns] = ev.parent_hash;
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
            k.parents = parents;
            k.parents_count = ns;
            k.seq = ++e->kv_seq;
            k.has_seq = true;
            k.model = e->cfg.served_model_name;
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
    if (e->kv_snapshot) {
        e->kv_snapshot = false;
        s_publish_kv_snapshot(e);
    }
}

static void s_on_kv_sync(const char *topic, const void *data, size_t len, void *user)
{
    (void)topic;
    tb_engine_t *e = user;
    void *msg = NULL;
    if (e->host->msg_decode(TB_MSG_KV_SNAPSHOT_REQUEST, data, len, &msg, NULL, 0) == 0) {
        const struct tb_msg_kv_snapshot_request *q = msg;
        if (q->instance_id == e->instance) {
            e->kv_snapshot = true; /* answered after the events queued before it */
            s_publish_kv_events(e);
        }
        e->host->msg_free(&msg);
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

/* Streams one output of a step: a token chunk, the final chunk, or the error that ended it
 * (`failed`: the step's forward pass failed). */
static void s_emit(tb_engine_t *e, const struct tb_runner_output *o, bool failed)
{
    const struct tb_host *h = e->host;
    struct seq *s = o->user;
    if (o->finish == TB_FINISH_ERROR) {
        if (failed) {
            h->bus_reply_error(s->req, TB_EINTERNAL, "%s", tb_runner_errmsg(e->runner));
        } else if (s->grammar) {
            /* the likeliest cause: the vocabulary cannot spell what the grammar requires */
            h->bus_reply_error(s->req, TB_EINVAL,
                               "sampling failed: the grammar allows no token of this model's "
                               "vocabulary here (after %u generated tokens)",
                               o->n_generated);
        } else {
            h->bus_reply_error(s->req, TB_EINTERNAL, "sampling failed");
        }
        s_seq_unlink(e, s);
        return;
    }
    struct tb_msg_gen_chunk c = {0};
    int32_t tok = o->token;
    struct tb_msg_top_logprob tops[TB_SAMPLER_MAX_TOP_LOGPROBS];
    struct tb_msg_token_logprob lp = {0};
    c.token_ids = &tok;
    c.token_ids_count = 1;
    h->metric_add(e->m_gen_toks, e->labels, 1);
    const struct tb_sample *smp = o->sample;
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
    if (o->finish == TB_FINISH_NONE) {
        if (s_send_chunk(e, s, &c, false) == TB_EGONE) {
            tb_runner_cancel(e->runner, s->id); /* nobody listens any more */
            h->bus_reply_error(s->req, TB_ECANCELED, "caller gone");
            s_seq_unlink(e, s);
        }
        return;
    }
    struct tb_msg_usage u = {.prompt_tokens = o->n_prompt, .completion_tokens = o->n_generated};
    if (o->n_cached > 0) {
        u.cached_tokens = o->n_cached;
        u.has_cached_tokens = true;
    }
    c.finish_reason = s_finish_name(o->finish);
    c.usage = &u;
    s_send_chunk(e, s, &c, true);
    s_seq_unlink(e, s);
}

/* One batch step of the runner, its outputs streamed. */
static int s_step(void *user, tb_bus_t *bus)
{
    (void)bus;
    tb_engine_t *e = user;
    const struct tb_host *h = e->host;
    if (!tb_runner_has_work(e->runner)) {
        s_publish_load(e, false);
        int64_t left = (int64_t)(e->cfg.load_interval_s * 1000) -
                       (h->now_ns() - e->last_load_ns) / 1000000;
        return left > 0 ? (int)left : 0;
    }
    const struct tb_runner_output *outs;
    uint32_t n_outs;
    int rc = tb_runner_step(e->runner, &outs, &n_outs);
    if (rc == TB_AGAIN) {
        s_publish_load(e, false);
        return 10; /* waiting requests that cannot be admitted yet: look again soon */
    }
    if (rc != 0) {
        /* A backend failure is not the requests' fault but must not repeat forever: the
         * runner ended them. */
        LOG_E(e, "%s: ending this step's requests", tb_runner_errmsg(e->runner));
    } else {
        struct tb_runner_step_info si;
        tb_runner_last_step(e->runner, &si);
        h->metric_add(e->m_step, e->labels, si.step_seconds);
    }
    for (uint32_t k = 0; k < n_outs; k++) {
        s_emit(e, &outs[k], rc != 0);
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
    struct tb_endpoint_meta meta = {.model = e->cfg.served_model_name,
                                    .kind = "tokens",
                                    .context_length = tb_runner_context(e->runner),
                                    .kv_block_size = e->cfg.block_size};
    char info[256];
    snprintf(info, sizeof(info), "{\"flavour\":\"%s\",\"kv_blocks\":%u,\"vocab\":%u}",
             e->flavour->ops->name, tb_runner_n_blocks(e->runner), tb_runner_vocab(e->runner));
    meta.info = info;
    int rc = h->bus_endpoint_add(bus, "generate", &meta, s_on_request, s_on_cancel, e, &e->ep);
    if (rc != 0) {
        h->set_error(e->comp, "cannot serve the generate endpoint: %s", h->strerror(rc));
        return rc;
    }
    e->instance = h->bus_endpoint_instance(e->ep);
    rc = h->bus_subscribe(bus, e->kv_sync_topic, s_on_kv_sync, e);
    if (rc != 0) {
        h->set_error(e->comp, "cannot follow kv snapshot requests: %s", h->strerror(rc));
        return rc;
    }
    s_publish_load(e, true);
    return 0;
}

static void s_fini(void *user, tb_bus_t *bus)
{
    (void)bus;
    tb_engine_t *e = user;
    while (e->seqs) {
        struct seq *s = e->seqs;
        tb_runner_cancel(e->runner, s->id);
        e->host->bus_reply_error(s->req, TB_EDRAINING, "the engine is stopping");
        s_seq_unlink(e, s);
    }
}

static const struct tb_actor_ops s_ops = {.init = s_init, .step = s_step, .fini = s_fini};

/* ------------------------------------------------------------------------------------------- */

static void s_free(tb_engine_t *e)
{
    tb_runner_destroy(&e->runner);
    tb_model_close(&e->model);
    free(e);
}

/* Opens the model and builds the runner from the config. */
static int s_open(tb_engine_t *e)
{
    const struct tb_engine_config *cfg = &e->cfg;
    const struct tb_host *host = e->host;
    char err[1024];
    int rc = tb_model_open(cfg->model, &e->model, err, sizeof(err));
    if (rc != 0) {
        host->set_error(e->comp, "cannot open model '%s': %s", cfg->model, err);
        return rc;
    }
    e->mp = tb_model_params(e->model);
    struct tb_runner_config rc_;
    tb_runner_config_init(&rc_);
    rc_.context_length = (uint32_t)cfg->context_length;
    rc_.max_batch_seqs = (uint32_t)cfg->max_batch_seqs;
    rc_.max_batch_tokens = (uint32_t)cfg->max_batch_tokens;
    rc_.max_seqs = (uint32_t)cfg->max_seqs;
    rc_.kv_cache_bytes = cfg->kv_cache_bytes;
    rc_.block_size = (uint32_t)cfg->block_size;
    rc_.kv_f16 = cfg->kv_dtype == 0;
    rc_.prefix_caching = cfg->prefix_caching;
    rc_.seed = (uint64_t)cfg->seed;
    rc_.flavour = e->flavour_cfg;
    rc = tb_runner_new(e->model, e->flavour->ops, &rc_, &e->runner, err, sizeof(err));
    if (rc != 0) {
        host->set_error(e->comp, "model '%s': %s", cfg->model, err);
    }
    return rc;
}

static void s_metrics(tb_engine_t *e)
{
    const struct tb_host *host = e->host;
    tb_component_t *comp = e->comp;
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
                                     "prompt tokens looked up in the prefix cache", lab, NULL, 0);
    e->m_prefix_h = host->metric_get(comp, "vllm:prefix_cache_hits_total", TB_METRIC_COUNTER,
                                     "prompt tokens found in the prefix cache", lab, NULL, 0);
    e->m_step = host->metric_get(comp, "tb_engine_step_seconds", TB_METRIC_HISTOGRAM,
                                 "time of one batch step (forward pass and sampling)", lab,
                                 step_buckets, sizeof(step_buckets) / sizeof(step_buckets[0]));
}

/* The start line: the model, how the backend runs it, the KV cache. */
static void s_log_start(tb_engine_t *e, int64_t t0)
{
    const struct tb_model_params *mp = e->mp;
    const struct tb_backend_ops *ops = e->flavour->ops;
    char desc[320] = "", how[sizeof desc + 3] = "";
    if (ops->describe) {
        ops->describe(tb_runner_backend(e->runner), desc, sizeof desc);
        snprintf(how, sizeof how, " (%s)", desc);
    }
    uint32_t n_blocks = tb_runner_n_blocks(e->runner);
    LOG_I(e,
          "model '%s' from %s: %s, %u layers, hidden %u, %u/%u heads, vocab %u, context %u, "
          "weights %s; %s backend%s: %u KV blocks of %lld tokens (%.1f MiB); loaded in %.0f ms",
          e->cfg.served_model_name, e->cfg.model, mp->arch, mp->n_layers, mp->hidden, mp->n_heads,
          mp->n_kv_heads, mp->vocab, tb_runner_context(e->runner), tb_dtype_name(mp->dtype),
          ops->name, how, n_blocks, (long long)e->cfg.block_size,
          (double)n_blocks * (double)tb_runner_block_bytes(e->runner) / 1048576.0,
          (double)(e->host->now_ns() - t0) / 1e6);
}

int tb_engine_new(const struct tb_host *host, tb_component_t *comp, const void *config,
                  const struct tb_engine_flavour *flavour, tb_engine_t **out)
{
    *out = NULL;
    tb_engine_t *e = calloc(1, sizeof(*e));
    if (!e) {
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    e->host = host;
    e->comp = comp;
    e->cfg = *(const struct tb_engine_config *)config;
    e->flavour = flavour;
    e->flavour_cfg = flavour->config_size ? (const char *)config + TB_ENGINE_FLAVOUR_OFFSET
                                          : NULL;
    atomic_init(&e->in_flight, 0);
    int64_t t0 = host->now_ns();
    int rc = s_open(e);
    if (rc != 0) {
        s_free(e);
        return rc;
    }
    const char *ns = host->namespace_name(comp);
    snprintf(e->load_topic, sizeof(e->load_topic), "load.%s", ns);
    snprintf(e->kv_topic, sizeof(e->kv_topic), "kv.%s", ns);
    snprintf(e->kv_sync_topic, sizeof(e->kv_sync_topic), "kvsync.%s", ns);
    snprintf(e->labels, sizeof(e->labels), "%s,%s", e->cfg.served_model_name,
             host->component_name(comp));
    s_metrics(e);
    s_log_start(e, t0);
    *out = e;
    return 0;
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
