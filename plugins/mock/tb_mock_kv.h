/*
 * tb_mock_kv.h - the mock engine's pretend prefix cache: the engine's own KV manager
 * (tb_kv_manager.h) with no tensors behind it.  Every prompt the mock prefills is looked up (the
 * leading full blocks found cached are its hit) and then stored block by block, so a later
 * prompt with the same prefix finds it, until least-recently-used eviction takes it; the KV
 * manager's stored / removed events become kv_event messages with a per-instance sequence
 * number, and a snapshot lists every block held, exactly as a real engine publishes them for
 * the router's prefix index (docs/router.md).
 *
 * Not thread-safe: the mock's engine thread owns it.
 */
#ifndef TB_MOCK_KV_H
#define TB_MOCK_KV_H

#include <stdbool.h>
#include <stdint.h>

#include "tb_msgs.h"

typedef struct tb_mock_kv tb_mock_kv_t;

/* A cache of `n_blocks` blocks of `block_size` tokens.  0 with *out (the caller's; destroy with
 * tb_mock_kv_destroy), TB_ECONFIG or TB_ENOMEM. */
int tb_mock_kv_new(uint32_t n_blocks, uint32_t block_size, tb_mock_kv_t **out);
void tb_mock_kv_destroy(tb_mock_kv_t **kv_p);

/* Prefills `tokens[0..n)` (borrowed for the call): returns how many leading tokens were cached
 * (a multiple of the block size, never all of them), and stores the prompt's full blocks. */
uint32_t tb_mock_kv_prefill(tb_mock_kv_t *kv, const int32_t *tokens, uint32_t n);

/* Tokens looked up and found cached so far (for hit-rate metrics). */
uint64_t tb_mock_kv_query_tokens(const tb_mock_kv_t *kv);
uint64_t tb_mock_kv_hit_tokens(const tb_mock_kv_t *kv);

/* Called with each kv_event to publish (borrowed for the call). */
typedef void (*tb_mock_kv_emit_fn)(const struct tb_msg_kv_event *ev, void *user);

/* Turns the events queued since the last call into kv_event messages of instance
 * `instance_id` serving `model`, numbered 1, 2, ... (`seq`), and passes each to `fn`; with
 * `snapshot`, then one snapshot event listing every block held (carrying the seq of the last
 * event, so the router knows which later events follow it).  0 or TB_ENOMEM. */
int tb_mock_kv_drain(tb_mock_kv_t *kv, uint64_t instance_id, const char *model, bool snapshot,
                     tb_mock_kv_emit_fn fn, void *user);

#endif /* TB_MOCK_KV_H */
