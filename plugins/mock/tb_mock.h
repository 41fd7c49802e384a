/*
 * tb_mock.h - the mock engine ("mocker"): serves <namespace>.<component>.<endpoint> like a real
 * engine (kind "text" or "tokens", the served model name, a context length), queues and runs
 * requests with a batch limit, streams deterministic tokens with a configured time to first token
 * and inter-token latency (scaled by a speedup factor; 0 = as fast as possible), honours
 * max_tokens, stop strings and ids, cancellation and deadlines, and publishes its load; in the
 * tokens kind it keeps a pretend prefix cache (tb_mock_kv) whose hits save a per-token prefill
 * cost, publishes its KV events, and continues a migrated answer (resumed_tokens) exactly.
 * See docs/mock.md.
 */
#ifndef TB_MOCK_H
#define TB_MOCK_H

#include <stddef.h>
#include <stdint.h>

#include "tb_plugin.h"

struct tb_mock_config {
    const char *served_model_name;
    const char *model; /* a model folder the mock ignores (swap-in compatibility) */
    const char *endpoint;
    int kind; /* 0 text, 1 tokens */
    double ttft_s;
    double itl_s;
    double speedup;        /* 0: as fast as possible */
    int64_t output_tokens; /* natural length of an answer */
    int64_t seed;
    int64_t context_length;
    int64_t max_running; /* batch size */
    int64_t max_waiting; /* queue beyond the batch; more get TB_EOVERLOAD */
    int64_t kv_blocks;
    int64_t kv_block_size;
    double load_interval_s; /* load published at least this often */
    int64_t token_id_min;   /* tokens mode: ids generated */
    int64_t token_id_max;
    double prefill_per_token_s; /* prefill cost of each prompt token not found cached */
    bool kv_events;             /* tokens kind: publish the pretend cache's kv events */
    const char *script;         /* tokens kind: a file of scripted answers (token ids), or NULL */
    bool direct; /* speedup 0: every request answered at once, on the caller's thread if local */
};

typedef struct tb_mock tb_mock_t;

/* 0 or a TB_E* code after host->set_error; *out is owned by the caller. */
int tb_mock_new(const struct tb_host *host, tb_component_t *comp,
                const struct tb_mock_config *cfg, tb_mock_t **out);
/* Starts the engine thread and registers the endpoint. */
int tb_mock_start(tb_mock_t *m);
/* Requests queued or running.  Any thread. */
size_t tb_mock_in_flight(tb_mock_t *m);
/* Ends what is left with TB_EDRAINING, deregisters, joins. */
void tb_mock_stop(tb_mock_t *m);
void tb_mock_destroy(tb_mock_t **m_p);

#endif /* TB_MOCK_H */
