/*
 * tb_json_schema.h - JSON schema to grammar, for structured output (response_format json_schema
 * and json_object) and for forced tool calls.
 *
 * The schema becomes GBNF text (tb_grammar.h) whose sentences are exactly JSON texts valid
 * against the schema, within documented limits (docs/tools-and-structured-output.md): bounded
 * whitespace and number lengths, properties in schema order, no extra properties generated.
 * Every keyword is either honoured, or ignored because it only annotates (title, description,
 * ...), or refused by name: a schema is never silently loosened.
 *
 * Errors: TB_ENOTSUP with "unsupported ... 'KEYWORD' at PATH" in err for a keyword (or format,
 * or combination) we do not implement; TB_EINVAL with the path for a malformed schema; TB_E2BIG
 * for a grammar over the size limit; TB_ENOMEM.
 *
 * Thread-safety: no shared state.
 */
#ifndef TB_JSON_SCHEMA_H
#define TB_JSON_SCHEMA_H

#include <stddef.h>

#include <jansson.h>

#include "tb_grammar.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GBNF text for `schema` (borrowed).  On success *gbnf is a malloc'd NUL-terminated string of
 * *len bytes owned by the caller (free() it). */
int tb_json_schema_to_gbnf(const json_t *schema, char **gbnf, size_t *len, char *err,
                           size_t err_len);

/* GBNF for any JSON object (response_format json_object).  Same ownership; TB_ENOMEM only. */
int tb_json_schema_object_gbnf(char **gbnf, size_t *len);

/* GBNF for one call to one of `tools` (borrowed): an array of {"name": N, "parameters": S} or of
 * OpenAI's {"type": "function", "function": {"name": N, "parameters": S}}.  A sentence is
 * {"name": "N", "arguments": A} with A valid against that function's S (no parameters: any
 * object).  Same ownership and errors. */
int tb_json_schema_tools_gbnf(const json_t *tools, char **gbnf, size_t *len, char *err,
                              size_t err_len);

/* tb_json_schema_to_gbnf then tb_grammar_parse_gbnf.  Caller owns *out (tb_grammar_destroy). */
int tb_json_schema_compile(const json_t *schema, tb_grammar_t **out, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* TB_JSON_SCHEMA_H */
