/* tb_sampling_msg: a gen_request's sampling fields to tb_sampling_params (see the header). */
#include "tb_sampling_msg.h"

#include <stdint.h>

static uint32_t s_u32(int64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* The model's generation config over OpenAI's defaults. */
static void s_model_defaults(struct tb_sampling_params *p, const struct tb_generation_defaults *g)
{
    if (g->temperature >= 0) {
        p->temperature = (float)g->temperature;
    }
    if (g->do_sample == 0) {
        p->temperature = 0;
    }
    if (g->top_p > 0) {
        p->top_p = (float)g->top_p;
    }
    if (g->top_k >= 0) {
        p->top_k = g->top_k;
    }
    if (g->repetition_penalty > 0) {
        p->repetition_penalty = (float)g->repetition_penalty;
    }
    if (g->max_new_tokens > 0) {
        p->max_tokens = (uint32_t)g->max_new_tokens;
    }
}

void tb_sampling_params_from_msg(struct tb_sampling_params *out,
                                 const struct tb_msg_gen_request *q,
                                 const struct tb_generation_defaults *gen)
{
    struct tb_sampling_params *p = out;
    tb_sampling_params_init(p);
    if (gen) {
        s_model_defaults(p, gen);
    }
    if (q->has_temperature) {
        p->temperature = (float)q->temperature;
    }
    if (q->has_top_p) {
        p->top_p = (float)q->top_p;
    }
    if (q->has_top_k) {
        p->top_k = q->top_k > INT32_MAX   ? INT32_MAX
                   : q->top_k < INT32_MIN ? INT32_MIN
                                          : (int32_t)q->top_k;
    }
    if (q->has_min_p) {
        p->min_p = (float)q->min_p;
    }
    if (q->has_presence_penalty) {
        p->presence_penalty = (float)q->presence_penalty;
    }
    if (q->has_frequency_penalty) {
        p->frequency_penalty = (float)q->frequency_penalty;
    }
    if (q->has_repetition_penalty) {
        p->repetition_penalty = (float)q->repetition_penalty;
    }
    if (q->has_seed) {
        p->has_seed = true;
        p->seed = (uint64_t)q->seed;
    }
    if (q->has_max_tokens && q->max_tokens > 0) {
        p->max_tokens = s_u32(q->max_tokens);
    }
    if (q->has_min_tokens && q->min_tokens > 0) {
        p->min_tokens = s_u32(q->min_tokens);
    }
    p->ignore_eos = q->has_ignore_eos && q->ignore_eos;
    p->stop_ids = q->stop_token_ids;
    p->n_stop_ids = (uint32_t)q->stop_token_ids_count;
    p->logprobs = q->has_logprobs && q->logprobs;
    if (q->has_top_logprobs && q->top_logprobs > 0) {
        p->logprobs = true;
        p->top_logprobs = q->top_logprobs > TB_SAMPLER_MAX_TOP_LOGPROBS
                              ? TB_SAMPLER_MAX_TOP_LOGPROBS
                              : (uint32_t)q->top_logprobs;
    }
}
