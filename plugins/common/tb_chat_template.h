/*
 * tb_chat_template.h - turns OpenAI-style chat messages into a model's prompt text with the
 * model's own Jinja chat template (tb_jinja), the way Hugging Face's apply_chat_template does.
 *
 * The template is rendered with these variables: `messages` (validated and normalised, see
 * below), `add_generation_prompt`, `tools` and `documents` (null unless given, as Hugging Face
 * passes None), the model's special tokens (`bos_token`, `eos_token`, and from a model folder
 * also `unk_token`, `pad_token`), and any extra variables of the request.
 *
 * Messages: a non-empty array of objects with a non-empty string `role` and a `content` that is
 * a string, or an array of text parts ({"type": "text", "text": "..."}) which is flattened to
 * the texts joined with "\n", or null/absent on an assistant message that has `tool_calls`.
 * Other fields (name, tool_calls, tool_call_id, ...) are passed through unchanged.
 *
 * Models without a template get the documented fallback (ChatML: "<|im_start|>ROLE\nCONTENT
 * <|im_end|>\n" per message, "<|im_start|>assistant\n" for the generation prompt); see
 * docs/chat-templates.md.
 *
 * Thread-safety: a tb_chat_template_t is immutable after construction; any number of threads
 * may call tb_chat_template_apply on it at once.
 */
#ifndef TB_CHAT_TEMPLATE_H
#define TB_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "tb_jinja.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_chat_template tb_chat_template_t;

/* Builds a chat template from `source` (`len` bytes of Jinja; NULL selects the fallback) and
 * the special tokens (NULL: the variable is left undefined, as for a tokenizer without that
 * token).  `limits` may be NULL for the defaults.  On success *out is owned by the caller
 * (destroy with tb_chat_template_destroy).  On failure returns TB_EINVAL (the template does not
 * parse: the message names line and column) or TB_ENOMEM, with the reason in `err`. */
int tb_chat_template_new(const char *source, size_t len, const char *bos_token,
                         const char *eos_token, const struct tb_jinja_limits *limits,
                         tb_chat_template_t **out, char *err, size_t err_len);

/* Builds a chat template from a Hugging Face model folder: `chat_template.jinja` if present,
 * else the `chat_template` of tokenizer_config.json (a string, or a list of {name, template}
 * from which "default" or else the first is used), else the fallback; special tokens from
 * tokenizer_config.json (strings or {"content": ...} objects).  Returns TB_ENOENT when the
 * folder does not exist, TB_EMODEL when tokenizer_config.json is not valid JSON or its
 * fields have the wrong types, otherwise as tb_chat_template_new. */
int tb_chat_template_new_from_hf_dir(const char *dir, const struct tb_jinja_limits *limits,
                                     tb_chat_template_t **out, char *err, size_t err_len);

/* Renders the prompt for `messages` (a JSON array, borrowed).  `extra` (a JSON object or
 * NULL, borrowed) adds variables such as "tools", "documents" or template switches; it may not
 * set "messages" or "add_generation_prompt".  On success *out is a malloc'd NUL-terminated
 * string of *out_len bytes owned by the caller (free()).  On failure *out is NULL and the
 * return is TB_EINVAL for invalid messages or a template error (including the template's
 * raise_exception, whose message is kept), TB_E2BIG / TB_ERANGE when a bound is exceeded, or
 * TB_ENOMEM; `err` says what is wrong, suitable for a 400 reply. */
int tb_chat_template_apply(const tb_chat_template_t *ct, const json_t *messages,
                           bool add_generation_prompt, const json_t *extra, char **out,
                           size_t *out_len, char *err, size_t err_len);

/* True when the model had no template and the fallback is in use. */
bool tb_chat_template_is_fallback(const tb_chat_template_t *ct);

/* The template's Jinja source (the fallback's when it is in use), NUL-terminated, *len bytes;
 * borrowed for the template's life.  For telling which tool-call and reasoning markup the model
 * uses. */
const char *tb_chat_template_source(const tb_chat_template_t *ct, size_t *len);

/* The fallback template's Jinja source (static storage). */
const char *tb_chat_template_fallback_source(void);

/* Destroys and sets *self_p to NULL; accepts NULL. */
void tb_chat_template_destroy(tb_chat_template_t **self_p);

#ifdef __cplusplus
}
#endif

#endif /* TB_CHAT_TEMPLATE_H */
