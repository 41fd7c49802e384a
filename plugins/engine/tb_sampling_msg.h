/*
 * tb_sampling_msg.h - the one conversion from a gen_request message (schemas/messages.yaml, the
 * single declaration of the sampling parameters on the wire) to the sampler's parameters.
 *
 * Precedence, field by field: OpenAI's defaults (tb_sampling_params_init), then the model's
 * generation config (generation_config.json: temperature, top_p, top_k, repetition_penalty,
 * do_sample false meaning greedy, max_new_tokens), then every field the request sets.
 * max_tokens and min_tokens of 0 or less count as unset; top_logprobs implies logprobs and is
 * capped at TB_SAMPLER_MAX_TOP_LOGPROBS.  Ranges are not checked here: the scheduler validates
 * the result (tb_sampling_params_validate) and refuses a request with the field's name.
 */
#ifndef TB_SAMPLING_MSG_H
#define TB_SAMPLING_MSG_H

#include "tb_model.h"
#include "tb_msgs.h"
#include "tb_sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *out for request `q` over the model's defaults `gen` (may be NULL: none).  out->stop_ids
 * borrows q->stop_token_ids: valid while `q` is. */
void tb_sampling_params_from_msg(struct tb_sampling_params *out,
                                 const struct tb_msg_gen_request *q,
                                 const struct tb_generation_defaults *gen);

#ifdef __cplusplus
}
#endif

#endif /* TB_SAMPLING_MSG_H */
