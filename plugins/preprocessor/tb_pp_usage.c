/* tb_pp_usage: a request's token counts (see tb_pp_usage.h). */
#include "tb_pp_usage.h"

void tb_pp_usage_init(struct tb_pp_usage *u, size_t prompt_tokens)
{
    u->prompt_tokens = (int64_t)prompt_tokens;
    u->completion_tokens = 0;
    u->cached_tokens = 0;
}

void tb_pp_usage_add_completion(struct tb_pp_usage *u, size_t n)
{
    u->completion_tokens += (int64_t)n;
}

void tb_pp_usage_engine(struct tb_pp_usage *u, const struct tb_msg_usage *engine)
{
    if (engine && engine->has_cached_tokens) {
        u->cached_tokens = engine->cached_tokens;
    }
}

struct tb_msg_usage tb_pp_usage_message(const struct tb_pp_usage *u)
{
    struct tb_msg_usage m = {.prompt_tokens = u->prompt_tokens,
                             .completion_tokens = u->completion_tokens};
    if (u->cached_tokens > 0) {
        m.cached_tokens = u->cached_tokens;
        m.has_cached_tokens = true;
    }
    return m;
}
