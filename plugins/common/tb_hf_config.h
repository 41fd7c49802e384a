/*
 * tb_hf_config.h - the facts Turbine takes from a Hugging Face model folder's JSON files:
 * config.json (architecture and shape), generation_config.json (sampling defaults, extra eos
 * ids) and tokenizer_config.json (add_bos/add_eos, special tokens, chat_template).
 *
 * Every parser takes the file's bytes (untrusted) and fills part of a tb_model_params.  Values
 * of the wrong JSON type, out of range, or naming something Turbine does not implement
 * (another model_type, hidden_act, rope_scaling type, biases on o_proj or the MLP) are refused
 * with TB_EMODEL and a message "<file>: <key> <value>: why".  Unknown keys are ignored: the
 * files carry many that do not change the computation (dropout, initializer_range...).
 *
 * Thread-safety: the functions keep no state; callers own their params.
 */
#ifndef TB_HF_CONFIG_H
#define TB_HF_CONFIG_H

#include <stddef.h>

#include "tb_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* config.json: arch, shapes, rope, norms, tied embeddings, bos/eos/pad ids, rope layout NEOX. */
int tb_hf_config_parse(const char *text, size_t len, struct tb_model_params *p, char *err,
                       size_t err_len);

/* generation_config.json: p->gen, and eos ids merged into p->eos_ids; bos/pad when unknown. */
int tb_hf_generation_config_parse(const char *text, size_t len, struct tb_model_params *p,
                                  char *err, size_t err_len);

/* tokenizer_config.json: add_bos/add_eos, chat_template (replaces p->chat_template; a list of
 * named templates gives the one named "default", else the first), and bos/eos/pad/unk ids from
 * added_tokens_decoder when p does not know them yet. */
int tb_hf_tokenizer_config_parse(const char *text, size_t len, struct tb_model_params *p,
                                 char *err, size_t err_len);

/* Reads the files of folder `dir` into `p` (initialised by the caller): config.json (required),
 * then generation_config.json, tokenizer_config.json, chat_template.jinja or
 * chat_template.json when tokenizer_config.json has no template, and records tokenizer.json's
 * path when it exists.  Files larger than 64 MiB are refused.  p->format is set to HF.
 * On failure p may hold part of the values; the caller releases it either way. */
int tb_hf_config_load_folder(const char *dir, struct tb_model_params *p, char *err,
                             size_t err_len);

/* Reads a whole (small) file into a NUL-terminated heap buffer.  Caller frees *out.  Returns
 * TB_ENOENT when absent, TB_E2BIG past `max` bytes, TB_EIO on read errors. */
int tb_hf_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                    size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* TB_HF_CONFIG_H */
