/*
 * tb_oai_tools.h - the tool-calling fields of a chat request (tools, tool_choice, a message's
 * tool_calls and tool_call_id): row decoders for the field tables of tb_oai_request.c.
 *
 * Pure, like tb_oai_request: a malformed tool definition is a 400 naming the field
 * ("tools[1].function.name"), and what the preprocessor needs goes into the gen_request
 * (tools_json, tool_choice, tool_choice_function; a message's tool_calls_json, tool_call_id).
 */
#ifndef TB_OAI_TOOLS_H
#define TB_OAI_TOOLS_H

#include "tb_oai_fields.h"

/* tools: an array of {"type": "function", "function": {"name", "description", "parameters",
 * "strict"}}; names 1..64 of [a-zA-Z0-9_-], each once.  Keeps the array as JSON. */
int tb_oai_keep_tools(const struct tb_oai_field *f, json_t *v, void *base, const char *param,
                      void *ctx, struct tb_oai_error *e);

/* tool_choice: "none", "auto", "required" or {"type": "function", "function": {"name"}} naming
 * one of the tools (required and a name need tools). */
int tb_oai_keep_tool_choice(const struct tb_oai_field *f, json_t *v, void *base,
                            const char *param, void *ctx, struct tb_oai_error *e);

/* A message's tool_calls (assistant): [{"id", "type": "function", "function": {"name",
 * "arguments"}}], kept as JSON. */
int tb_oai_keep_msg_tool_calls(const struct tb_oai_field *f, json_t *v, void *base,
                               const char *param, void *ctx, struct tb_oai_error *e);

/* A message's tool_call_id: required for role tool (called when absent too). */
int tb_oai_keep_msg_tool_call_id(const struct tb_oai_field *f, json_t *v, void *base,
                                 const char *param, void *ctx, struct tb_oai_error *e);

#endif /* TB_OAI_TOOLS_H */
