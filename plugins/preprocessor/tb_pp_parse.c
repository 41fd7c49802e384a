/* tb_pp_parse: reasoning, then tool calls, out of one answer's text (see tb_pp_parse.h). */
#include "tb_pp_parse.h"

#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"
#include "tb_errors.h"

struct tb_pp_parse {
    tb_reasoning_parser_t *reasoning; /* NULL: none */
    tb_tool_parser_t *tools;          /* NULL: none */
    int64_t reasoning_tokens;
    struct tb_buf content, thought; /* released, not taken yet */
    bool taken;
    struct tb_msg_tool_call_delta *deltas;
    size_t cap_deltas;
};

int tb_pp_parse_new(const struct tb_pp_parse_config *cfg, tb_pp_parse_t **out)
{
    *out = NULL;
    tb_pp_parse_t *p = calloc(1, sizeof(*p));
    if (!p) {
        return TB_ENOMEM;
    }
    int rc = 0;
    if (cfg->reasoning != TB_REASONING_NONE) {
        rc = tb_reasoning_parser_new(cfg->think_open, &p->reasoning);
    }
    if (rc == 0 && cfg->tools_format != TB_TOOL_FORMAT_NONE) {
        rc = tb_tool_parser_new(cfg->tools_format, cfg->tools, cfg->stream, cfg->seed, &p->tools);
    }
    if (rc != 0) {
        tb_pp_parse_destroy(&p);
        return rc;
    }
    *out = p;
    return 0;
}

void tb_pp_parse_destroy(tb_pp_parse_t **p_p)
{
    if (!p_p || !*p_p) {
        return;
    }
    tb_pp_parse_t *p = *p_p;
    tb_reasoning_parser_destroy(&p->reasoning);
    tb_tool_parser_destroy(&p->tools);
    tb_buf_free(&p->content);
    tb_buf_free(&p->thought);
    free(p->deltas);
    free(p);
    *p_p = NULL;
}

static void s_begin(tb_pp_parse_t *p)
{
    if (p->taken) {
        tb_buf_clear(&p->content);
        tb_buf_clear(&p->thought);
        if (p->tools) {
            tb_tool_parser_take(p->tools);
        }
        p->taken = false;
    }
}

/* Content released by the reasoning parser (or all of it without one) into the tool parser. */
static int s_content(tb_pp_parse_t *p, const char *s, size_t n)
{
    if (!n) {
        return 0;
    }
    return p->tools ? tb_tool_parser_push(p->tools, s, n) : tb_buf_append(&p->content, s, n);
}

/* Moves what the reasoning parser released on. */
static int s_drain_reasoning(tb_pp_parse_t *p)
{
    size_t rl, cl;
    const char *r = tb_reasoning_parser_reasoning(p->reasoning, &rl);
    const char *c = tb_reasoning_parser_content(p->reasoning, &cl);
    int rc = r ? tb_buf_append(&p->thought, r, rl) : 0;
    rc = rc ? rc : s_content(p, c, cl);
    tb_reasoning_parser_take(p->reasoning);
    return rc;
}

int tb_pp_parse_push(tb_pp_parse_t *p, const char *text, size_t len, bool counted)
{
    s_begin(p);
    if (!p->reasoning) {
        return s_content(p, text, len);
    }
    bool was = tb_reasoning_parser_in_reasoning(p->reasoning);
    int rc = tb_reasoning_parser_push(p->reasoning, text, len);
    if (counted && (was || tb_reasoning_parser_in_reasoning(p->reasoning))) {
        p->reasoning_tokens++;
    }
    return rc ? rc : s_drain_reasoning(p);
}

int tb_pp_parse_finish(tb_pp_parse_t *p)
{
    s_begin(p);
    int rc = p->reasoning ? tb_reasoning_parser_finish(p->reasoning) : 0;
    rc = rc ? rc : p->reasoning ? s_drain_reasoning(p) : 0;
    return rc ? rc : p->tools ? tb_tool_parser_finish(p->tools) : 0;
}

int tb_pp_parse_take(tb_pp_parse_t *p, struct tb_msg_gen_chunk *c)
{
    s_begin(p);
    p->taken = true;
    size_t len = p->content.len;
    const char *text = len ? (const char *)p->content.data : NULL;
    if (p->tools) {
        text = tb_tool_parser_content(p->tools, &len);
    }
    c->text = (char *)text;
    c->reasoning = p->thought.len ? (char *)p->thought.data : NULL;
    c->tool_calls = NULL;
    c->tool_calls_count = 0;
    size_t n = 0;
    const struct tb_tool_delta *d = p->tools ? tb_tool_parser_deltas(p->tools, &n) : NULL;
    if (n > p->cap_deltas) {
        struct tb_msg_tool_call_delta *m = realloc(p->deltas, n * sizeof(*m));
        if (!m) {
            return TB_ENOMEM;
        }
        p->deltas = m;
        p->cap_deltas = n;
    }
    for (size_t i = 0; i < n; i++) {
        p->deltas[i] = (struct tb_msg_tool_call_delta){.index = d[i].index,
                                                       .id = d[i].id,
                                                       .name = d[i].name,
                                                       .arguments = d[i].arguments};
    }
    c->tool_calls = n ? p->deltas : NULL;
    c->tool_calls_count = n;
    return 0;
}

size_t tb_pp_parse_calls(const tb_pp_parse_t *p)
{
    return p->tools ? tb_tool_parser_calls(p->tools) : 0;
}

int64_t tb_pp_parse_reasoning_tokens(const tb_pp_parse_t *p)
{
    return p->reasoning_tokens;
}

bool tb_pp_parse_has_reasoning(const tb_pp_parse_t *p)
{
    return p->reasoning != NULL;
}
