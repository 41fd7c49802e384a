/*
 * tb_sampler.h - turns one row of logits into one token for one sequence.
 *
 * Two classes:
 *   tb_sampler_t      per engine thread: the model's vocabulary size and end-of-sequence ids, a
 *                     seed source, and scratch memory sized once for the vocabulary, so that
 *                     sampling allocates nothing per step;
 *   tb_sampler_seq_t  per sequence: its parameters, its own random generator (seeded from the
 *                     request's seed, or from the sampler's seed source when it has none) and
 *                     the token counts its penalties need.  Its tokens therefore depend only on
 *                     its own logits and seed, never on the batch around it.
 *
 * The pipeline for one step, in this order:
 *   0. grammar (when the sequence has one): the grammar matcher's mask for this step
 *      (tb_grammar_matcher.h) sets every token the grammar does not allow next to -infinity in
 *      a copy of the row; everything below works on that copy as if it were the model's row:
 *      logprobs and top_logprobs are those of the MASKED distribution (renormalised over the
 *      allowed tokens, and only allowed tokens are listed), as vLLM reports them with
 *      structured output; greedy, top_k, top_p and min_p choose among the allowed tokens.  The
 *      end-of-sequence ids are allowed only where the grammar is complete, and min_tokens does
 *      not hold them back there.  The sampled token advances the matcher; once it accepted an
 *      end-of-sequence id the sequence is done (tb_sampler_seq_grammar_done), even with
 *      ignore_eos.
 *   1. logprobs: when asked, log-softmax of the RAW logits as the model produced them (before
 *      penalties, masks and temperature), for the chosen token and the top_logprobs most likely
 *      tokens.  This is vLLM's default (its logprobs mode "raw_logprobs", V1 engine); OpenAI's
 *      API documents no other.  A token masked at step 3 still reports its raw logprob.
 *   2. penalties on a copy of the logits: repetition (Hugging Face / CTRL style: a logit > 0 is
 *      divided by the penalty, a logit < 0 multiplied) over every distinct token of the prompt
 *      and of the output so far; then frequency (minus penalty * count) and presence (minus
 *      penalty once) over the output tokens so far, as OpenAI defines them (vLLM does the same).
 *   3. min_tokens: while fewer than min_tokens tokens were generated, the stop token ids and
 *      (unless ignore_eos) the end-of-sequence ids get -infinity.
 *   4. temperature < TB_SAMPLER_GREEDY_EPS (0 included), or top_k 1: greedy, the largest
 *      logit, ties to the lowest token id; nothing below applies and no random number is
 *      drawn.
 *   5. otherwise probabilities softmax(logits / temperature), then the survivors are the tokens
 *      that pass min_p (p >= min_p * p_max) and top_k (the k largest: every token whose logit
 *      ties the k-th largest is kept too); the two commute; then top_p over the survivors'
 *      renormalised probabilities: the smallest set of most likely tokens whose mass reaches
 *      top_p (tokens tying the boundary kept too); one uniform draw picks a token from the
 *      renormalised result.  vLLM applies min_p, top_k and top_p in the same order.
 *
 * Cost: greedy is one vectorised pass over the vocabulary (two with penalties: the copy).
 * The passes run 8 floats at a time on CPUs with AVX2 (detected at run time) and 4 otherwise,
 * with bit-identical results either way.
 * Sampling is two or three vectorised passes (maximum; probability mass or counts above a few
 * thresholds; collection of the tokens that can matter) plus expected-linear selection among
 * those: the vocabulary is never sorted, only the last few top_p candidates are.  Probabilities
 * use an exp approximation with a relative error of about 1e-7.
 *
 * Not thread-safe: a tb_sampler_t and the sequences sampled through it belong to one thread.
 * No I/O.
 */
#ifndef TB_SAMPLER_H
#define TB_SAMPLER_H

#include "tb_grammar_set.h"
#include "tb_rng.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TB_SAMPLER_MAX_TOP_LOGPROBS 20 /* OpenAI's limit on top_logprobs */
#define TB_SAMPLER_MAX_EOS 8           /* end-of-sequence ids a model may declare */
#define TB_SAMPLER_GREEDY_EPS 1e-5f    /* temperatures below this sample greedily */

typedef struct tb_sampler tb_sampler_t;
typedef struct tb_sampler_seq tb_sampler_seq_t;

/* A request's sampling parameters after defaults are applied (tb_sampling_params_init gives
 * OpenAI's defaults; the engine overlays the model's generation config, then the request's
 * fields).  Plain data. */
struct tb_sampling_params {
    float temperature;        /* >= 0; < TB_SAMPLER_GREEDY_EPS means greedy.  Default 1 */
    int32_t top_k;            /* keep the k most likely; <= 0 disables.  Default 0 */
    float top_p;              /* (0, 1]; 1 disables.  Default 1 */
    float min_p;              /* [0, 1]; 0 disables.  Default 0 */
    float repetition_penalty; /* > 0; 1 disables.  Default 1 */
    float presence_penalty;   /* [-2, 2]; 0 disables.  Default 0 */
    float frequency_penalty;  /* [-2, 2]; 0 disables.  Default 0 */
    bool has_seed;            /* use `seed`; otherwise the sampler draws one */
    uint64_t seed;
    uint32_t max_tokens;     /* tokens to generate at most; 0: until the context is full */
    uint32_t min_tokens;     /* stop ids and eos are masked until this many were generated */
    bool ignore_eos;         /* eos neither stops nor is masked by min_tokens */
    const int32_t *stop_ids; /* extra token ids that end the sequence; borrowed, copied by
                                tb_sampler_seq_new */
    uint32_t n_stop_ids;
    bool logprobs;             /* report the chosen token's logprob */
    uint32_t top_logprobs;     /* and this many alternatives, 0..TB_SAMPLER_MAX_TOP_LOGPROBS;
                              needs logprobs */
    tb_grammar_ref_t *grammar; /* a grammar the tokens must follow (tb_grammar_set.h), NULL for
                                  none; borrowed: tb_sampler_seq_new takes its own reference */
};

/* The sampler's configuration. */
struct tb_sampler_config {
    uint32_t vocab_size;                 /* logits per row, >= 1 */
    int32_t eos_ids[TB_SAMPLER_MAX_EOS]; /* the model's end-of-sequence ids */
    uint32_t n_eos;
    uint64_t seed;      /* seeds the source of seeds for requests that give none
                      (the plugin passes a random value) */
    bool baseline_simd; /* use the 4-wide passes even where the CPU has AVX2 (for tests and
                           comparisons: both give bit-identical results) */
};

/* What one sampling step produced.  Plain data. */
struct tb_sample {
    int32_t token;
    float logprob;  /* raw log-probability of `token` (0 unless params.logprobs) */
    uint32_t n_top; /* entries in top_ids/top_logprobs, most likely first, ties lowest id first */
    int32_t top_ids[TB_SAMPLER_MAX_TOP_LOGPROBS];
    float top_logprobs[TB_SAMPLER_MAX_TOP_LOGPROBS];
};

/* Fills `p` with OpenAI's defaults: temperature 1, top_p 1, everything else off, no seed, no
 * stop ids, max_tokens 0 (context-limited). */
void tb_sampling_params_init(struct tb_sampling_params *p);

/* Checks `p` against the ranges above and `vocab_size` (stop ids must be token ids).  Returns 0
 * or TB_EINVAL with a message (lowercase, naming the field and the allowed range) written to
 * `err` (may be NULL) of `err_len` bytes. */
int tb_sampling_params_validate(const struct tb_sampling_params *p, uint32_t vocab_size,
                                char *err, uint32_t err_len);

/* Creates a sampler.  `cfg` is borrowed for the call.  On success *out is the caller's; destroy
 * with tb_sampler_destroy.  Errors: TB_ECONFIG (vocab_size 0, n_eos too large, an eos id out of
 * the vocabulary), TB_ENOMEM. */
int tb_sampler_new(const struct tb_sampler_config *cfg, tb_sampler_t **out);

/* Destroys the sampler and sets *self_p to NULL; NULL-safe.  Destroy its sequences first. */
void tb_sampler_destroy(tb_sampler_t **self_p);

uint32_t tb_sampler_vocab_size(const tb_sampler_t *self);

/* The instruction set of the sampler's passes over the vocabulary: "avx2" (x86-64 CPUs with
 * AVX2, chosen at creation) or "vec4" (4-wide vectors: SSE2 on x86-64, NEON on arm64).  The
 * choice never changes a result.  Borrowed, static. */
const char *tb_sampler_simd(const tb_sampler_t *self);

/* True when `token` is one of the model's end-of-sequence ids. */
bool tb_sampler_is_eos(const tb_sampler_t *self, int32_t token);

/* Creates a sequence's sampling state.  `params` (stop ids included) and `prompt[0..n_prompt)`
 * are borrowed for the call; the prompt feeds the repetition penalty.  `params` must be valid
 * (tb_sampling_params_validate): invalid ones give TB_EINVAL.  On success *out is the
 * caller's; destroy with tb_sampler_seq_destroy.  Errors: TB_EINVAL, TB_ENOMEM. */
int tb_sampler_seq_new(tb_sampler_t *self, const struct tb_sampling_params *params,
                       const int32_t *prompt, uint32_t n_prompt, tb_sampler_seq_t **out);

/* Destroys a sequence's state and sets *seq_p to NULL; NULL-safe. */
void tb_sampler_seq_destroy(tb_sampler_seq_t **seq_p);

/* The sequence's parameters (a copy; stop_ids point into the sequence).  Borrowed, valid while
 * the sequence lives. */
const struct tb_sampling_params *tb_sampler_seq_params(const tb_sampler_seq_t *seq);

/* Tokens generated so far (counted by tb_sampler_sample and tb_sampler_seq_accept). */
uint32_t tb_sampler_seq_n_generated(const tb_sampler_seq_t *seq);

/* True when `token` is one of the sequence's stop ids. */
bool tb_sampler_seq_is_stop(const tb_sampler_seq_t *seq, int32_t token);

/* The sequence's random generator as it stands (*out), and its replacement by a state taken
 * that way (a sequence resumed elsewhere goes on drawing the same numbers). */
void tb_sampler_seq_get_rng(const tb_sampler_seq_t *seq, struct tb_rng *out);
void tb_sampler_seq_set_rng(tb_sampler_seq_t *seq, const struct tb_rng *rng);

/* Samples the sequence's next token from `logits[0..vocab_size)` (borrowed, not modified),
 * writes it to *out and records it as generated (penalties and min_tokens see it from the next
 * step on).  Returns 0; TB_EINVAL when no token can be chosen (every logit NaN or -infinity
 * after masking, a grammar that allows nothing here); TB_ENOMEM when the penalty state or the
 * grammar matcher could not grow.  On error out->token is -1 and nothing is recorded.  Uses the
 * sampler's scratch memory: allocates nothing (but for that rare growth, and the grammar mask's
 * buffer on the first grammar step). */
int tb_sampler_sample(tb_sampler_t *self, tb_sampler_seq_t *seq, const float *logits,
                      struct tb_sample *out);

/* Records `token` as generated without sampling it (a token forced by the caller, or one of a
 * resumed sequence).  With a grammar the token advances it too.  Returns 0, TB_EINVAL for a
 * token outside the vocabulary or one the grammar does not allow, TB_ENOMEM. */
int tb_sampler_seq_accept(tb_sampler_seq_t *seq, int32_t token);

/* True when the sequence follows a grammar and the grammar has accepted an end-of-sequence id:
 * the sequence must end (the scheduler ends it with "stop"). */
bool tb_sampler_seq_grammar_done(const tb_sampler_seq_t *seq);

#ifdef __cplusplus
}
#endif

#endif /* TB_SAMPLER_H */
