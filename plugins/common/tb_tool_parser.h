/*
 * tb_tool_parser.h - tool calls out of a model's text, incrementally: the text of an answer is
 * pushed in pieces of any size (single bytes included); what comes out is the answer's content
 * (the text outside the calls, none of the calls' markup) and tool-call deltas in OpenAI's
 * streaming shape (a call's first delta carries its index, id and name, the next ones pieces of
 * its arguments' JSON text).
 *
 * Formats (docs/tools-and-structured-output.md, "Tool calls"):
 *   hermes       <tool_call>{"name": N, "arguments": {...}}</tool_call>, repeated (Hermes 2/3,
 *                Qwen2.5, Qwen3, QwQ)
 *   llama3_json  the whole answer is {"name": N, "parameters": {...}} (or "arguments"), optionally
 *                after <|python_tag|>, several separated by ';' (Llama 3.1-3.3)
 *   mistral      [TOOL_CALLS][{"name": N, "arguments": {...}}, ...] and the newer
 *                [TOOL_CALLS]N[ARGS]{...}, repeated
 *   deepseek_v3  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N\n```json\n{...}\n```
 *                <｜tool▁call▁end｜>...<｜tool▁calls▁end｜> (DeepSeek-V3, R1), and the V3.1 body
 *                N<｜tool▁sep｜>{...}
 *
 * A call that does not parse (bad JSON, a name that is not one of the request's tools, markup out
 * of order, or the text ending inside it) is not a call: its text, markup included, becomes
 * content.  In stream mode the arguments are released as they arrive, so a call that breaks
 * after its name was released stays as released (its text is then not repeated as content); in
 * held mode (stream false) a call is released only once it is complete and valid.
 *
 * Not thread-safe: one parser per answer.
 */
#ifndef TB_TOOL_PARSER_H
#define TB_TOOL_PARSER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TB_TOOL_FORMAT_NONE = 0,
    TB_TOOL_FORMAT_HERMES,
    TB_TOOL_FORMAT_LLAMA3,
    TB_TOOL_FORMAT_MISTRAL,
    TB_TOOL_FORMAT_DEEPSEEK,
} tb_tool_format_t;

/* The format's config name ("hermes", "llama3_json", "mistral", "deepseek_v3", "none"). */
const char *tb_tool_format_name(tb_tool_format_t f);

/* The format whose name is `name`; TB_EINVAL when none is. */
int tb_tool_format_from_name(const char *name, tb_tool_format_t *out);

/* The format a chat template's source uses (its call markup), or NONE. */
tb_tool_format_t tb_tool_format_from_template(const char *src, size_t len);

/* The text that starts the format's calls: a token whose text it is marks the format in a
 * vocabulary.  NULL for NONE. */
const char *tb_tool_format_marker(tb_tool_format_t f);

/* The markup texts of the format's output, NULL-terminated (a detokenizer must not drop tokens
 * with these texts even when they are special). */
const char *const *tb_tool_format_markup(tb_tool_format_t f);

/* GBNF (root rule `root`) whose sentences are calls in format `f` to the functions of `tools`
 * (OpenAI's array of {"type": "function", "function": {"name", "parameters"}}, borrowed), or to
 * `only` alone when not NULL, with arguments valid against the function's parameters; one call,
 * or several when `parallel`.  Caller frees *gbnf.  TB_EINVAL / TB_ENOTSUP with err (a tool or
 * schema that cannot be compiled, `only` not among the tools), TB_ENOMEM. */
int tb_tool_format_gbnf(tb_tool_format_t f, const json_t *tools, const char *only, bool parallel,
                        char **gbnf, size_t *len, char *err, size_t err_len);

/* One tool-call delta: borrowed strings, NULL when absent. */
struct tb_tool_delta {
    int64_t index;
    const char *id;        /* first delta of a call */
    const char *name;      /* first delta of a call */
    const char *arguments; /* a piece of the arguments' JSON text ("" in a first delta) */
};

typedef struct tb_tool_parser tb_tool_parser_t;

/* A parser for format `f` (not NONE).  `tools`: the request's tools (borrowed during the call;
 * NULL: any name is taken); `stream`: release arguments as they arrive; `id_seed` makes the
 * call ids (call_ + 24 characters).  Caller owns *out (tb_tool_parser_destroy).  0, TB_EINVAL
 * (format NONE), TB_ENOMEM. */
int tb_tool_parser_new(tb_tool_format_t f, const json_t *tools, bool stream, uint64_t id_seed,
                       tb_tool_parser_t **out);

/* Frees; sets *p_p to NULL; accepts NULL. */
void tb_tool_parser_destroy(tb_tool_parser_t **p_p);

/* Pushes more of the answer's text.  0 or TB_ENOMEM. */
int tb_tool_parser_push(tb_tool_parser_t *p, const char *text, size_t len);

/* The answer ended: releases what is held (a call left open becomes content, see above).
 * 0 or TB_ENOMEM. */
int tb_tool_parser_finish(tb_tool_parser_t *p);

/* Content released since the last take (NUL-terminated, *len bytes), or NULL when none; the
 * deltas released since the last take in *out (*n of them).  Borrowed until the next push,
 * finish or take on `p`. */
const char *tb_tool_parser_content(const tb_tool_parser_t *p, size_t *len);
const struct tb_tool_delta *tb_tool_parser_deltas(const tb_tool_parser_t *p, size_t *n);

/* Empties the released content and deltas (call after sending them). */
void tb_tool_parser_take(tb_tool_parser_t *p);

/* Calls released so far (complete ones in held mode; started ones in stream mode). */
size_t tb_tool_parser_calls(const tb_tool_parser_t *p);

#ifdef __cplusplus
}
#endif

#endif /* TB_TOOL_PARSER_H */
