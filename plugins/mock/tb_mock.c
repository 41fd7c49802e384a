/*
 * tb_mock: the mock engine (see tb_mock.h).
 *
 * One actor thread owns the bus handle.  Requests wait in a FIFO until the batch (max_running)
 * and the pretend KV cache have room; a running request's next token is due at a time computed
 * from the configured latencies; a timerfd armed at the earliest due time wakes the loop with
 * nanosecond precision (bus_run only counts milliseconds), so the latencies a client sees are the
 * configured ones plus what the framework adds.  All tokens due at once go out in one chunk, the
 * way a real engine's step emits one token per sequence; at speedup 0 an answer is one chunk.
 *
 * With `direct` (speedup 0 only) every request is answered inside on_request, and the endpoint is
 * direct (docs/bus.md, "Direct calls"): a caller in this process computes its answer on its own
 * thread, so a benchmark measures the framework without the engine's thread hand-off.  The
 * actor's state is then shared with callers' threads, under `lock` (taken in every mode: one
 * uncontended mutex per callback).
 */
#include "tb_mock.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "tb_actor.h"
#include "tb_mock_gen.h"
#include "tb_mock_kv.h"

#define LOG_INFO(m, ...) TB_LOG_INFO((m)->host, (m)->comp, __VA_ARGS__)
#define LOG_WARN(m, ...) TB_LOG_WARN((m)->host, (m)->comp, __VA_ARGS__)
#define LOG_DEBUG(m, ...) TB_LOG_DEBUG((m)->host, (m)->comp, __VA_ARGS__)

#define LOAD_MIN_GAP_NS 5000000 /* load changes are published at most every 5 ms */

struct mreq {
    tb_request_t *req;
    tb_mock_seq_t *seq;
    int64_t prompt_tokens;
    int64_t limit;     /* tokens it may generate at most */
    int64_t next_ns;   /* when its next token is due */
    int64_t kv_blocks; /* blocks it holds */
    int64_t uncached;  /* prompt tokens to prefill (not found in the pretend cache) */
    int64_t cached;    /* prompt tokens found there */
    int64_t resumed;   /* of the prompt, tokens an earlier attempt generated (migration) */
    bool prefilling;   /* admitted, first token not yet sent */
    bool cancelled;
    struct mreq *next;
};

struct tb_mock {
    const struct tb_host *host;
    tb_component_t *comp;
    struct tb_mock_config cfg;
    int32_t **answers; /* the script's answers (cfg.script), n_answers of them */
    size_t *answer_lens;
    size_t n_answers;
    tb_actor_t *actor;
    atomic_size_t in_flight;
    pthread_mutex_t lock; /* over everything below, for direct callers (see the top) */
    bool kv_wake;         /* direct: the actor was woken to publish KV events */

    /* the actor thread's */
    tb_bus_t *bus;
    tb_endpoint_t *ep;
    uint64_t instance;
    char endpoint[256];
    char topic[160];
    char label[220]; /* "model,instance" */
    int timer_fd;
    int64_t armed_ns; /* when the timer fires next (INT64_MAX: disarmed) */
    int64_t ttft_ns, itl_ns;
    struct mreq *wait_head, *wait_tail;
    size_t n_waiting;
    struct mreq *running;
    size_t n_running;
    int64_t kv_used;
    bool load_dirty;
    int64_t last_pub_ns;
    struct tb_buf enc;
    char *scratch;
    size_t scratch_cap;

    /* the pretend prefix cache (tokens kind) and the prefill lane */
    tb_mock_kv_t *kv;
    char kv_topic[160];
    bool kv_snapshot;        /* a router asked for a snapshot */
    int64_t prefill_ns;      /* per uncached prompt token */
    int64_t prefill_free_ns; /* when the prefill lane is free */

    tb_metric_t *m_requests, *m_cancelled, *m_rejected, *m_running, *m_waiting, *m_gen_tokens,
        *m_prompt_tokens;
    /* counter increments not yet in the registry (added when the load is published) */
    int64_t p_requests, p_cancelled, p_gen_tokens, p_prompt_tokens;
};

static int64_t s_blocks(const struct tb_mock *m, int64_t tokens)
{
    int64_t bs = m->cfg.kv_block_size > 0 ? m->cfg.kv_block_size : 16;
    return (tokens + bs - 1) / bs;
}

static void s_free(struct tb_mock *m, struct mreq *r)
{
    m->kv_used -= r->kv_blocks;
    tb_mock_seq_destroy(&r->seq);
    free(r);
    atomic_fetch_sub(&m->in_flight, 1);
    m->load_dirty = true;
}

/* ------------------------------------------------------------------------------------------- */
/* Requests */

static int s_reject(struct tb_mock *m, tb_request_t *req, int code, const char *reason,
                    const char *fmt, const char *detail)
{
    char v[300];
    snprintf(v, sizeof(v), "%s,%s", m->label, reason);
    m->host->metric_add(m->m_rejected, v, 1);
    return m->host->bus_reply_error(req, code, fmt, detail);
}

/* Tokens of a token prompt that an earlier attempt of the request generated (0..count). */
static int64_t s_resumed(const struct tb_msg_gen_request *g)
{
    if (!g->has_resumed_tokens || g->resumed_tokens <= 0 || g->tokens_count == 0) {
        return 0;
    }
    return g->resumed_tokens < (int64_t)g->tokens_count ? g->resumed_tokens
                                                        : (int64_t)g->tokens_count - 1;
}

/* Counts the prompt and hashes it into the sequence's seed; a migrated request hashes only the
 * original prompt, so that it continues the answer it had begun. */
static int64_t s_prompt_tokens(const struct tb_msg_gen_request *g, uint64_t *hash)
{
    int64_t n = 0;
    uint64_t h = 0;
    if (g->tokens_count > 0) {
        size_t orig = g->tokens_count - (size_t)s_resumed(g);
        h = tb_mock_hash(g->tokens, orig * sizeof(int32_t), h);
        n = (int64_t)g->tokens_count;
    } else if (g->messages_count > 0) {
        for (size_t i = 0; i < g->messages_count; i++) {
            const struct tb_msg_chat_message *msg = &g->messages[i];
            h = tb_mock_hash(msg->role, strlen(msg->role), h);
            if (msg->content) {
                h = tb_mock_hash(msg->content, strlen(msg->content), h);
                n += tb_mock_count_words(msg->content);
            }
            n += 3; /* what a chat template adds per message */
        }
        n += 3;
    } else if (g->prompt) {
        h = tb_mock_hash(g->prompt, strlen(g->prompt), h);
        n = tb_mock_count_words(g->prompt);
    }
    *hash = h;
    return n;
}

/* A migrated request: replays the `resumed` tokens the earlier attempt generated (the same
 * seed gives the same tokens), so the answer goes on where it broke.  0 or TB_ENOMEM. */
static int s_resume(struct mreq *r, int64_t resumed)
{
    r->resumed = resumed;
    struct tb_mock_step st;
    return resumed > 0 ? tb_mock_seq_advance(r->seq, (size_t)resumed, &st) : 0;
}

/* Checks and admits a request to the queue's accounting; NULL when it was answered with an
 * error.  The caller queues it (or answers it at once, in direct mode). */
static struct mreq *s_accept(struct tb_mock *m, tb_request_t *req, const void *payload,
                             size_t len)
{
    const struct tb_host *h = m->host;
    void *msg = NULL;
    char err[256];
    struct mreq *r = NULL;
    if (h->msg_decode(TB_MSG_GEN_REQUEST, payload, len, &msg, err, sizeof(err)) != 0) {
        s_reject(m, req, TB_EPROTO, "malformed", "malformed gen_request: %s", err);
        return NULL;
    }
    const struct tb_msg_gen_request *g = msg;
    bool tokens_kind = m->cfg.kind == 1;
    bool is_tokens = strcmp(g->mode, "tokens") == 0;
    if (tokens_kind && !(is_tokens || g->tokens_count > 0)) {
        s_reject(m, req, TB_EINVAL, "mode", "%s",
                 "this engine takes token ids (mode 'tokens'): put a preprocessor in front");
        goto done;
    }
    if (!tokens_kind && !(strcmp(g->mode, "chat") == 0 || strcmp(g->mode, "completion") == 0)) {
        s_reject(m, req, TB_EINVAL, "mode",
                 "mode '%s' is not served here: use chat or "
                 "completion",
                 g->mode);
        goto done;
    }
    if (strcmp(g->mode, "chat") == 0 && g->messages_count == 0) {
        s_reject(m, req, TB_EINVAL, "mode", "%s", "a chat request needs messages");
        goto done;
    }
    if (g->grammar) {
        /* its text is made up: it cannot follow a grammar, and must not pretend to */
        s_reject(m, req, TB_ENOTSUP, "grammar", "%s",
                 "the mock engine cannot follow a grammar (response_format json_object / "
                 "json_schema, grammar, forced tool calls): serve a real engine");
        goto done;
    }
    uint64_t hash;
    int64_t prompt = s_prompt_tokens(g, &hash);
    int64_t ctx = m->cfg.context_length;
    if (prompt >= ctx || (g->has_max_tokens && prompt + g->max_tokens > ctx)) {
        char why[256];
        snprintf(why, sizeof(why),
                 "this model's maximum context length is %" PRId64
                 " tokens; the request has %" PRId64 " prompt tokens and asks for %" PRId64
                 " more",
                 ctx, prompt, g->has_max_tokens ? g->max_tokens : (int64_t)0);
        s_reject(m, req, TB_ECONTEXT, "context", "%s", why);
        goto done;
    }
    if (m->n_running + m->n_waiting >= (size_t)(m->cfg.max_running + m->cfg.max_waiting)) {
        s_reject(m, req, TB_EOVERLOAD, "overload", "%s",
                 "the mock engine's queue is full: retry later");
        goto done;
    }
    int64_t resumed = s_resumed(g);
    struct tb_mock_seq_config sc = {
        .seed = (uint64_t)m->cfg.seed ^
                (g->has_seed ? (uint64_t)g->seed * 0x9e3779b97f4a7c15ULL : hash),
        .tokens_mode = tokens_kind,
        .natural_length = m->cfg.output_tokens,
        .max_tokens = resumed + (g->has_max_tokens ? g->max_tokens : ctx - prompt),
        .min_tokens = g->has_min_tokens ? resumed + g->min_tokens : 0,
        .ignore_eos = g->has_ignore_eos && g->ignore_eos,
        .stop = g->stop,
        .n_stop = g->stop_count,
        .stop_ids = g->stop_token_ids,
        .n_stop_ids = g->stop_token_ids_count,
        .token_id_min = (int32_t)m->cfg.token_id_min,
        .token_id_max = (int32_t)m->cfg.token_id_max,
        .top_logprobs = g->has_top_logprobs ? (int)g->top_logprobs : 0,
    };
    if (m->n_answers) {
        size_t pick = g->has_seed ? (size_t)((uint64_t)g->seed % m->n_answers) : 0;
        sc.script = m->answers[pick];
        sc.natural_length = (int64_t)m->answer_lens[pick];
    }
    r = calloc(1, sizeof(*r));
    if (r) {
        r->seq = tb_mock_seq_new(&sc, g->has_logprobs && g->logprobs);
    }
    if (!r || !r->seq || s_resume(r, resumed) != 0) {
        if (r) {
            tb_mock_seq_destroy(&r->seq);
        }
        free(r);
        r = NULL;
        s_reject(m, req, TB_ENOMEM, "memory", "%s", "out of memory");
        goto done;
    }
    r->req = req;
    r->prompt_tokens = prompt;
    r->uncached = prompt;
    if (m->kv && g->tokens_count > 0) {
        r->cached = tb_mock_kv_prefill(m->kv, g->tokens, (uint32_t)g->tokens_count);
        r->uncached = prompt - r->cached;
    }
    r->limit = sc.max_tokens;
    if (!sc.ignore_eos) {
        int64_t natural = sc.natural_length > sc.min_tokens ? sc.natural_length : sc.min_tokens;
        if (natural < r->limit) {
            r->limit = natural;
        }
    }
    atomic_fetch_add(&m->in_flight, 1);
    m->p_requests++;
    m->p_prompt_tokens += prompt;
    m->load_dirty = true;
done:
    h->msg_free(&msg);
    return r;
}

static bool s_emit(struct tb_mock *m, struct mreq *r, int64_t now);
static void s_free(struct tb_mock *m, struct mreq *r);

static void s_on_request(tb_request_t *req, const void *payload, size_t len, void *user)
{
    struct tb_mock *m = user;
    pthread_mutex_lock(&m->lock);
    struct mreq *r = s_accept(m, req, payload, len);
    if (r && m->cfg.direct) {
        /* speedup 0: the whole answer is one chunk, due now (s_emit ends the request) */
        s_emit(m, r, m->host->now_ns());
        s_free(m, r);
        if (m->kv && m->cfg.kv_events && !m->kv_wake) {
            m->kv_wake = true; /* the prefill's KV events are published by the actor */
            m->host->bus_wakeup(m->bus);
        }
    } else if (r) {
        if (m->wait_tail) {
            m->wait_tail->next = r;
        } else {
            m->wait_head = r;
        }
        m->wait_tail = r;
        m->n_waiting++;
        m->host->bus_request_set_user(req, r);
    }
    pthread_mutex_unlock(&m->lock);
}

static void s_on_cancel(tb_request_t *req, void *user)
{
    struct tb_mock *m = user;
    pthread_mutex_lock(&m->lock);
    struct mreq *r = m->host->bus_request_user(req);
    if (r) {
        r->cancelled = true;
    }
    pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------------------------------------- */
/* The engine step */

static void s_cancel_reply(struct tb_mock *m, struct mreq *r, const char *why)
{
    m->p_cancelled++;
    m->load_dirty = true;
    LOG_DEBUG(m, "request %" PRIu64 " cancelled (%s) after %" PRId64 " tokens",
              m->host->bus_request_id(r->req), why, tb_mock_seq_generated(r->seq));
    m->host->bus_reply_error(r->req, TB_ECANCELED, "cancelled: %s", why);
}

static void s_admit(struct tb_mock *m, int64_t now)
{
    while (m->wait_head && m->n_running < (size_t)m->cfg.max_running) {
        struct mreq *r = m->wait_head;
        int64_t need = s_blocks(m, r->prompt_tokens + 1);
        if (!r->cancelled && m->n_running > 0 && m->kv_used + need > m->cfg.kv_blocks) {
            break; /* the pretend KV cache is full: wait for a sequence to finish */
        }
        m->wait_head = r->next;
        if (!m->wait_head) {
            m->wait_tail = NULL;
        }
        m->n_waiting--;
        r->next = m->running;
        m->running = r;
        m->n_running++;
        r->kv_blocks = need;
        m->kv_used += need;
        /* prefills run one at a time, each costing its uncached tokens */
        int64_t start = m->prefill_free_ns > now ? m->prefill_free_ns : now;
        m->prefill_free_ns = start + r->uncached * m->prefill_ns;
        r->next_ns = m->prefill_free_ns + m->ttft_ns;
        r->prefilling = true;
        m->load_dirty = true;
    }
}

/* Sends what `r` has due; returns true when the request ended. */
static bool s_emit(struct tb_mock *m, struct mreq *r, int64_t now)
{
    const struct tb_host *h = m->host;
    int64_t k = m->itl_ns > 0 ? 1 + (now - r->next_ns) / m->itl_ns : r->limit;
    int64_t left = r->limit - tb_mock_seq_generated(r->seq);
    if (k > left) {
        k = left;
    }
    struct tb_mock_step st;
    if (tb_mock_seq_advance(r->seq, (size_t)(k > 0 ? k : 1), &st) != 0) {
        h->bus_reply_error(r->req, TB_ENOMEM, "out of memory");
        return true;
    }
    if (!st.finished && tb_mock_seq_generated(r->seq) >= r->limit) {
        st.finished = true; /* the context is full */
        st.finish_reason = "length";
    }
    struct tb_msg_gen_chunk c = {0};
    if (st.text_len > 0) {
        if (st.text_len + 1 > m->scratch_cap) {
            char *s = realloc(m->scratch, st.text_len + 1);
            if (!s) {
                h->bus_reply_error(r->req, TB_ENOMEM, "out of memory");
                return true;
            }
            m->scratch = s;
            m->scratch_cap = st.text_len + 1;
        }
        memcpy(m->scratch, st.text, st.text_len);
        m->scratch[st.text_len] = 0;
        c.text = m->scratch;
    }
    c.token_ids = st.ids;
    c.token_ids_count = st.n_ids;
    c.logprobs = st.logprobs;
    c.logprobs_count = st.logprobs ? st.n_ids : 0;
    struct tb_msg_usage u = {.prompt_tokens = r->prompt_tokens,
                             .completion_tokens = tb_mock_seq_generated(r->seq) - r->resumed};
    if (m->kv) {
        u.cached_tokens = r->cached;
        u.has_cached_tokens = true;
    }
    r->prefilling = false;
    if (st.finished) {
        c.finish_reason = st.finish_reason;
        c.usage = &u;
    }
    m->enc.len = 0;
    if (h->msg_encode(TB_MSG_GEN_CHUNK, &c, &m->enc) != 0) {
        h->bus_reply_error(r->req, TB_EINTERNAL, "cannot encode a chunk");
        return true;
    }
    m->p_gen_tokens += (int64_t)st.n_ids;
    int rc = h->bus_reply(r->req, m->enc.data, m->enc.len, st.finished);
    if (st.finished) {
        return true;
    }
    if (rc == TB_EGONE) {
        s_cancel_reply(m, r, "the caller is gone");
        return true;
    }
    r->next_ns = m->itl_ns > 0 ? r->next_ns + k * m->itl_ns : now;
    int64_t blocks = s_blocks(m, r->prompt_tokens + tb_mock_seq_generated(r->seq));
    m->kv_used += blocks - r->kv_blocks;
    r->kv_blocks = blocks;
    return false;
}

/* The load kv_aware routing weighs: prompt blocks still to prefill (queued or admitted before
 * their first token), and the blocks of the sequences decoding. */
static void s_block_load(const struct tb_mock *m, struct tb_msg_load_event *ev)
{
    int64_t prefill = 0, decode = 0;
    for (const struct mreq *r = m->wait_head; r; r = r->next) {
        prefill += s_blocks(m, r->uncached);
    }
    for (const struct mreq *r = m->running; r; r = r->next) {
        if (r->prefilling) {
            prefill += s_blocks(m, r->uncached);
        } else {
            decode += r->kv_blocks;
        }
    }
    ev->prefill_blocks = prefill;
    ev->has_prefill_blocks = true;
    ev->decode_blocks = decode;
    ev->has_decode_blocks = true;
}

static void s_kv_emit(const struct tb_msg_kv_event *ev, void *user)
{
    struct tb_mock *m = user;
    m->enc.len = 0;
    if (m->host->msg_encode(TB_MSG_KV_EVENT, ev, &m->enc) == 0) {
        m->host->bus_publish(m->bus, m->kv_topic, m->enc.data, m->enc.len);
    }
}

/* Publishes the pretend cache's new events (and a snapshot when one was asked for). */
static void s_publish_kv(struct tb_mock *m)
{
    if (m->kv && m->cfg.kv_events) {
        tb_mock_kv_drain(m->kv, m->instance, m->cfg.served_model_name, m->kv_snapshot, s_kv_emit,
                         m);
        m->kv_snapshot = false;
    }
}

static void s_on_kv_sync(const char *topic, const void *data, size_t len, void *user)
{
    (void)topic;
    struct tb_mock *m = user;
    void *msg = NULL;
    if (m->host->msg_decode(TB_MSG_KV_SNAPSHOT_REQUEST, data, len, &msg, NULL, 0) == 0) {
        const struct tb_msg_kv_snapshot_request *q = msg;
        if (q->instance_id == m->instance) {
            LOG_DEBUG(m, "a router asked for a snapshot of the KV events");
            pthread_mutex_lock(&m->lock);
            m->kv_snapshot = true;
            s_publish_kv(m);
            pthread_mutex_unlock(&m->lock);
        }
        m->host->msg_free(&msg);
    }
}

static void s_publish_load(struct tb_mock *m, int64_t now)
{
    struct tb_msg_load_event ev = {
        .instance_id = m->instance,
        .endpoint = m->endpoint,
        .model = m->cfg.served_model_name,
        .running = (int64_t)m->n_running,
        .waiting = (int64_t)m->n_waiting,
        .kv_used_blocks = m->kv_used,
        .has_kv_used_blocks = true,
        .kv_total_blocks = m->cfg.kv_blocks,
        .has_kv_total_blocks = true,
    };
    s_block_load(m, &ev);
    m->enc.len = 0;
    if (m->host->msg_encode(TB_MSG_LOAD_EVENT, &ev, &m->enc) == 0) {
        m->host->bus_publish(m->bus, m->topic, m->enc.data, m->enc.len);
    }
    const struct tb_host *h = m->host;
    h->metric_set(m->m_running, m->label, (double)m->n_running);
    h->metric_set(m->m_waiting, m->label, (double)m->n_waiting);
    int64_t *pend[] = {&m->p_requests, &m->p_cancelled, &m->p_gen_tokens, &m->p_prompt_tokens};
    tb_metric_t *fam[] = {m->m_requests, m->m_cancelled, m->m_gen_tokens, m->m_prompt_tokens};
    for (size_t i = 0; i < sizeof(pend) / sizeof(pend[0]); i++) {
        if (*pend[i]) {
            h->metric_add(fam[i], m->label, (double)*pend[i]);
            *pend[i] = 0;
        }
    }
    m->last_pub_ns = now;
    m->load_dirty = false;
}

static void s_arm(struct tb_mock *m, int64_t at_ns)
{
    if (at_ns == m->armed_ns) {
        return; /* already armed for that time (a fired timer was re-armed by the step) */
    }
    m->armed_ns = at_ns;
    struct itimerspec its = {0};
    if (at_ns != INT64_MAX) {
        if (at_ns <= 0) {
            at_ns = 1;
        }
        its.it_value.tv_sec = at_ns / 1000000000;
        its.it_value.tv_nsec = at_ns % 1000000000;
    }
    timerfd_settime(m->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int s_step(void *user, tb_bus_t *bus)
{
    (void)bus;
    struct tb_mock *m = user;
    pthread_mutex_lock(&m->lock);
    m->kv_wake = false;
    int64_t now = m->host->now_ns();
    /* Cancelled requests still waiting end at once. */
    for (struct mreq **pp = &m->wait_head; *pp;) {
        struct mreq *r = *pp;
        if (!r->cancelled) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        m->n_waiting--;
        s_cancel_reply(m, r, "cancelled while queued");
        s_free(m, r);
    }
    m->wait_tail = NULL;
    for (struct mreq *r = m->wait_head; r; r = r->next) {
        m->wait_tail = r;
    }
    s_admit(m, now);
    int64_t next = INT64_MAX;
    for (int round = 0; round < 2; round++) {
        for (struct mreq **pp = &m->running; *pp;) {
            struct mreq *r = *pp;
            bool done = false;
            if (r->cancelled) {
                s_cancel_reply(m, r, "cancelled by the caller");
                done = true;
            } else if (r->next_ns <= now) {
                done = s_emit(m, r, now);
            }
            if (done) {
                *pp = r->next;
                m->n_running--;
                s_free(m, r);
                continue;
            }
            if (r->next_ns < next) {
                next = r->next_ns;
            }
            pp = &r->next;
        }
        /* Finished sequences made room: admit and run the newcomers in the same step. */
        if (!m->wait_head || m->n_running >= (size_t)m->cfg.max_running) {
            break;
        }
        s_admit(m, now);
        next = INT64_MAX;
    }
    s_publish_kv(m);
    int64_t interval = (int64_t)(m->cfg.load_interval_s * 1e9);
    if ((m->load_dirty && now - m->last_pub_ns >= LOAD_MIN_GAP_NS) ||
        now - m->last_pub_ns >= interval) {
        s_publish_load(m, now);
    }
    int64_t pub = m->last_pub_ns + (m->load_dirty ? LOAD_MIN_GAP_NS : interval);
    if (pub < next) {
        next = pub;
    }
    s_arm(m, next);
    pthread_mutex_unlock(&m->lock);
    return -1;
}

static void s_on_timer(int fd, void *user)
{
    struct tb_mock *m = user;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN) {
        return;
    }
    m->armed_ns = INT64_MIN; /* fired: the next step arms it again */
}

static int s_init(void *user, tb_bus_t *bus)
{
    struct tb_mock *m = user;
    const struct tb_host *h = m->host;
    m->bus = bus;
    char info[256];
    snprintf(info, sizeof(info),
             "{\"engine\":\"mock\",\"ttft_s\":%g,\"itl_s\":%g,\"speedup\":%g,"
             "\"output_tokens\":%" PRId64 "}",
             m->cfg.ttft_s, m->cfg.itl_s, m->cfg.speedup, m->cfg.output_tokens);
    struct tb_endpoint_meta meta = {
        .model = m->cfg.served_model_name,
        .kind = m->cfg.kind == 1 ? "tokens" : "text",
        .context_length = m->cfg.context_length,
        .kv_block_size = m->cfg.kv_block_size,
        .info = info,
    };
    int rc = h->bus_watch_fd(bus, m->timer_fd, s_on_timer, m);
    if (rc != 0) {
        h->set_error(m->comp, "cannot watch the timer: %s", h->strerror(rc));
        return rc;
    }
    rc = h->bus_endpoint_add(bus, m->cfg.endpoint, &meta, s_on_request, s_on_cancel, m, &m->ep);
    if (rc != 0) {
        h->set_error(m->comp, "cannot serve endpoint '%s': %s", m->cfg.endpoint, h->strerror(rc));
        return rc;
    }
    if (m->cfg.direct) {
        rc = TB_HOST_HAS(h, bus_endpoint_set_direct) ? h->bus_endpoint_set_direct(m->ep, true)
                                                     : TB_ENOTSUP;
        if (rc != 0) {
            h->set_error(m->comp, "cannot make endpoint '%s' direct: %s", m->cfg.endpoint,
                         h->strerror(rc));
            return rc;
        }
    }
    m->instance = h->bus_endpoint_instance(m->ep);
    snprintf(m->endpoint, sizeof(m->endpoint), "%s.%s.%s", h->namespace_name(m->comp),
             h->component_name(m->comp), m->cfg.endpoint);
    snprintf(m->topic, sizeof(m->topic), "load.%s", h->namespace_name(m->comp));
    if (m->kv && m->cfg.kv_events) {
        snprintf(m->kv_topic, sizeof(m->kv_topic), "kv.%s", h->namespace_name(m->comp));
        char sync[160];
        snprintf(sync, sizeof(sync), "kvsync.%s", h->namespace_name(m->comp));
        rc = h->bus_subscribe(bus, sync, s_on_kv_sync, m);
        if (rc != 0) {
            h->set_error(m->comp, "cannot follow snapshot requests: %s", h->strerror(rc));
            return rc;
        }
    }
    char model[160];
    snprintf(model, sizeof(model), "%s", m->cfg.served_model_name);
    for (char *p = model; *p; p++) {
        if (*p == ',') {
            *p = '_';
        }
    }
    snprintf(m->label, sizeof(m->label), "%s,%016" PRIx64, model, m->instance);
    LOG_INFO(m,
             "mock engine serves model '%s' (%s) at %s: ttft %.3f s, itl %.3f s, speedup %g, "
             "%" PRId64 " tokens per answer",
             m->cfg.served_model_name, meta.kind, m->endpoint, m->cfg.ttft_s, m->cfg.itl_s,
             m->cfg.speedup, m->cfg.output_tokens);
    s_publish_load(m, h->now_ns());
    return 0;
}

static void s_fini(void *user, tb_bus_t *bus)
{
    (void)bus;
    struct tb_mock *m = user;
    pthread_mutex_lock(&m->lock);
    while (m->wait_head) {
        struct mreq *r = m->wait_head;
        m->wait_head = r->next;
        m->n_waiting--;
        m->host->bus_reply_error(r->req, TB_EDRAINING, "the mock engine is stopping");
        s_free(m, r);
    }
    m->wait_tail = NULL;
    while (m->running) {
        struct mreq *r = m->running;
        m->running = r->next;
        m->n_running--;
        m->host->bus_reply_error(r->req, TB_EDRAINING, "the mock engine is stopping");
        s_free(m, r);
    }
    s_publish_load(m, m->host->now_ns());
    pthread_mutex_unlock(&m->lock);
    m->host->bus_unwatch_fd(bus, m->timer_fd);
}

static const struct tb_actor_ops s_ops = {.init = s_init, .step = s_step, .fini = s_fini};

/* ------------------------------------------------------------------------------------------- */
/* Lifecycle */

static void s_free_script(struct tb_mock *m)
{
    for (size_t i = 0; i < m->n_answers; i++) {
        free(m->answers[i]);
    }
    free(m->answers);
    free(m->answer_lens);
    m->answers = NULL;
    m->answer_lens = NULL;
    m->n_answers = 0;
}

/* One line of the script: whitespace-separated token ids.  0, TB_EINVAL, TB_ENOMEM. */
static int s_script_line(struct tb_mock *m, const char *line)
{
    size_t cap = strlen(line) / 2 + 1, n = 0;
    int32_t *ids = malloc(cap * sizeof(*ids));
    int32_t **a = realloc(m->answers, (m->n_answers + 1) * sizeof(*a));
    m->answers = a ? a : m->answers;
    size_t *l = realloc(m->answer_lens, (m->n_answers + 1) * sizeof(*l));
    m->answer_lens = l ? l : m->answer_lens;
    if (!ids || !a || !l) {
        free(ids);
        return TB_ENOMEM;
    }
    for (const char *p = line; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) {
            if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
                p++;
                continue;
            }
            free(ids);
            return TB_EINVAL;
        }
        if (v < 0 || v > INT32_MAX) {
            free(ids);
            return TB_EINVAL;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (n == 0) {
        free(ids);
        return 0; /* blank lines are skipped */
    }
    m->answers[m->n_answers] = ids;
    m->answer_lens[m->n_answers++] = n;
    return 0;
}

/* Reads cfg.script: one answer per line. */
static int s_load_script(struct tb_mock *m)
{
    FILE *f = fopen(m->cfg.script, "r");
    if (!f) {
        m->host->set_error(m->comp, "cannot open script '%s': %s", m->cfg.script,
                           strerror(errno));
        return TB_EIO;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (size_t no = 1; rc == 0 && getline(&line, &cap, f) >= 0; no++) {
        rc = s_script_line(m, line);
        if (rc == TB_EINVAL) {
            m->host->set_error(m->comp, "script '%s' line %zu: not a list of token ids",
                               m->cfg.script, no);
        }
    }
    free(line);
    fclose(f);
    if (rc == 0 && m->n_answers == 0) {
        m->host->set_error(m->comp, "script '%s' holds no answer", m->cfg.script);
        rc = TB_ECONFIG;
    }
    return rc == TB_EINVAL ? TB_ECONFIG : rc;
}

int tb_mock_new(const struct tb_host *host, tb_component_t *comp,
                const struct tb_mock_config *cfg, tb_mock_t **out)
{
    *out = NULL;
    if (cfg->token_id_max < cfg->token_id_min) {
        host->set_error(comp, "token_id_max (%" PRId64 ") is below token_id_min (%" PRId64 ")",
                        cfg->token_id_max, cfg->token_id_min);
        return TB_ECONFIG;
    }
    struct tb_mock *m = calloc(1, sizeof(*m));
    if (!m) {
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    m->host = host;
    m->comp = comp;
    m->cfg = *cfg;
    if (cfg->script && cfg->kind != 1) {
        host->set_error(comp, "script needs kind: tokens (the answers are token ids)");
        free(m);
        return TB_ECONFIG;
    }
    if (cfg->direct && cfg->speedup != 0) {
        host->set_error(comp, "direct needs speedup: 0 (a timed answer is sent by the engine's "
                              "own thread)");
        free(m);
        return TB_ECONFIG;
    }
    if (cfg->script) {
        int rc = s_load_script(m);
        if (rc != 0) {
            s_free_script(m);
            free(m);
            return rc;
        }
    }
    atomic_init(&m->in_flight, 0);
    m->armed_ns = INT64_MIN;
    if (cfg->speedup > 0) {
        m->ttft_ns = (int64_t)(cfg->ttft_s / cfg->speedup * 1e9);
        m->itl_ns = (int64_t)(cfg->itl_s / cfg->speedup * 1e9);
        m->prefill_ns = (int64_t)(cfg->prefill_per_token_s / cfg->speedup * 1e9);
    }
    if (cfg->kind == 1) {
        int rc = tb_mock_kv_new((uint32_t)cfg->kv_blocks, (uint32_t)cfg->kv_block_size, &m->kv);
        if (rc != 0) {
            host->set_error(comp, "cannot make the pretend KV cache: %s", host->strerror(rc));
            free(m);
            return rc;
        }
    }
    m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (m->timer_fd < 0) {
        host->set_error(comp, "cannot create a timer: %s", strerror(errno));
        tb_mock_kv_destroy(&m->kv);
        s_free_script(m);
        free(m);
        return TB_EIO;
    }
    m->m_requests = host->metric_get(comp, "turbine_mock_requests_total", TB_METRIC_COUNTER,
                                     "requests the mock engine accepted", "model,instance", NULL,
                                     0);
    m->m_cancelled = host->metric_get(comp, "turbine_mock_cancelled_total", TB_METRIC_COUNTER,
                                      "requests the mock engine stopped because they were "
                                      "cancelled (caller gone, disconnect, deadline)",
                                      "model,instance", NULL, 0);
    m->m_rejected = host->metric_get(comp, "turbine_mock_rejected_total", TB_METRIC_COUNTER,
                                     "requests refused, by reason", "model,instance,reason", NULL,
                                     0);
    m->m_running = host->metric_get(comp, "turbine_mock_num_requests_running", TB_METRIC_GAUGE,
                                    "requests in the batch", "model,instance", NULL, 0);
    m->m_waiting = host->metric_get(comp, "turbine_mock_num_requests_waiting", TB_METRIC_GAUGE,
                                    "requests queued for the batch", "model,instance", NULL, 0);
    m->m_gen_tokens = host->metric_get(comp, "turbine_mock_generation_tokens_total",
                                       TB_METRIC_COUNTER, "tokens generated", "model,instance",
                                       NULL, 0);
    m->m_prompt_tokens = host->metric_get(comp, "turbine_mock_prompt_tokens_total",
                                          TB_METRIC_COUNTER, "prompt tokens accepted",
                                          "model,instance", NULL, 0);
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return 0;
}

int tb_mock_start(tb_mock_t *m)
{
    return tb_actor_start(&m->actor, m->host, m->comp, &s_ops, m);
}

size_t tb_mock_in_flight(tb_mock_t *m)
{
    return atomic_load(&m->in_flight);
}

void tb_mock_stop(tb_mock_t *m)
{
    tb_actor_stop(&m->actor);
}

void tb_mock_destroy(tb_mock_t **m_p)
{
    if (!m_p || !*m_p) {
        return;
    }
    struct tb_mock *m = *m_p;
    tb_mock_stop(m);
    if (m->timer_fd >= 0) {
        close(m->timer_fd);
    }
    m->host->buf_free(&m->enc);
    tb_mock_kv_destroy(&m->kv);
    free(m->scratch);
    s_free_script(m);
    pthread_mutex_destroy(&m->lock);
    free(m);
    *m_p = NULL;
}
