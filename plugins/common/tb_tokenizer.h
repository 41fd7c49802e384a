/*
 * tb_tokenizer.h - BPE tokenizers loaded from a Hugging Face `tokenizer.json` (with the
 * `tokenizer_config.json`, `generation_config.json` and `config.json` beside it) or from the
 * metadata of a GGUF file.
 *
 * Both BPE families are covered:
 *  - SentencePiece style (U+2581 for spaces, "<0xXX>" byte fallback): Llama 2, TinyLlama,
 *    Mistral, Phi-3, TinyStories;
 *  - byte-level (GPT-2 alphabet, per-family split regexes): GPT-2, Llama 3, Qwen2, Falcon, MPT.
 * Encoding reproduces the reference implementations: Hugging Face `tokenizers` for
 * tokenizer.json, llama.cpp for GGUF vocabularies.  docs/tokenizers.md describes the pipeline,
 * the special-token rules and the known differences.
 *
 * Ownership and errors: loaders return 0 and a caller-owned tokenizer, or a negative TB_E* code
 * with a message in `err`.  Results returned through pointers are owned as each function says.
 *
 * Thread-safety: a loaded tokenizer is immutable; any number of threads may encode and decode
 * with it at once.  A tb_detok_t (tb_detok.h) belongs to one thread.
 */
#ifndef TB_TOKENIZER_H
#define TB_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_tokenizer tb_tokenizer_t;

typedef enum {
    TB_TOKENIZER_SPM = 1,        /* SentencePiece-style BPE */
    TB_TOKENIZER_BYTE_LEVEL = 2, /* GPT-2-style byte-level BPE */
} tb_tokenizer_kind_t;

/* Loads `path`: a folder holding tokenizer.json, or a tokenizer.json file.  Reads, when present
 * in the same folder: tokenizer_config.json (add_bos_token, add_eos_token, bos_token,
 * eos_token, added tokens of added_tokens_decoder that tokenizer.json lacks),
 * generation_config.json and config.json (bos_token_id, eos_token_id: a number or a
 * list).  Caller owns *out; destroy with tb_tokenizer_destroy.  Errors: -errno for
 * an unreadable file, TB_EMODEL for invalid JSON or a malformed tokenizer, TB_ENOTSUP for a
 * model, normalizer, pre-tokenizer or decoder type we do not implement (named in err),
 * TB_ENOMEM. */
int tb_tokenizer_load_hf(const char *path, tb_tokenizer_t **out, char *err, size_t err_len);

/* Same from memory: `json` is the content of a tokenizer.json, `config` (NULL when absent) that
 * of a tokenizer_config.json.  Both are only read during the call. */
int tb_tokenizer_load_hf_memory(const char *json, size_t len, const char *config,
                                size_t config_len, tb_tokenizer_t **out, char *err,
                                size_t err_len);

/* Loads the tokenizer stored in a GGUF file's metadata (tokenizer.ggml.*: model "llama" or
 * "gpt2", pre, tokens, scores, token_type, merges, special token ids, add_bos/add_eos,
 * add_space_prefix).  Everything needed is copied: `g` may be closed afterwards.  Caller owns
 * *out; destroy with tb_tokenizer_destroy.  Errors: TB_EMODEL (missing or inconsistent
 * metadata), TB_ENOTSUP (another tokenizer model or an unknown pre-tokenizer name), TB_ENOMEM. */
int tb_tokenizer_load_gguf(const tb_gguf_t *g, tb_tokenizer_t **out, char *err, size_t err_len);

/* Loads from a path that may be a GGUF file (by its .gguf suffix), a tokenizer.json or a folder
 * holding one. Same ownership and errors as the two loaders above. */
int tb_tokenizer_load(const char *path, tb_tokenizer_t **out, char *err, size_t err_len);

/* Frees the tokenizer; sets *tok_p to NULL; accepts NULL. */
void tb_tokenizer_destroy(tb_tokenizer_t **tok_p);

/* Encodes text[0..len) (UTF-8).
 *  add_special:   add the model's BOS/EOS (or whatever its post-processor template adds);
 *  parse_special: text that spells a special token ("<|eot_id|>") becomes that token; when
 *                 false it is encoded as plain text.  Added tokens that are not special are
 *                 always recognised, as in both references.
 * On success *ids is a malloc'd array of *n_ids ids owned by the caller (free() it; never
 * NULL).  Errors: TB_EINVAL (text is not valid UTF-8), TB_E2BIG (text of 2 GiB or more),
 * TB_ENOMEM, TB_EINTERNAL (regex engine failure); *ids is NULL then. */
int tb_tokenizer_encode(const tb_tokenizer_t *tok, const char *text, size_t len, bool add_special,
                        bool parse_special, int32_t **ids, size_t *n_ids);

/* Decodes ids to text, as the model's decoder does (Hugging Face's decode): ids outside the
 * vocabulary are ignored; special tokens are left out when skip_special.  Invalid UTF-8 that
 * byte tokens spell becomes U+FFFD.  On success *text is a malloc'd NUL-terminated string of
 * *len bytes owned by the caller (free() it).  Errors: TB_ENOMEM. */
int tb_tokenizer_decode(const tb_tokenizer_t *tok, const int32_t *ids, size_t n_ids,
                        bool skip_special, char **text, size_t *len);

tb_tokenizer_kind_t tb_tokenizer_kind(const tb_tokenizer_t *tok);

/* Number of ids (the largest id + 1, added tokens included). */
size_t tb_tokenizer_vocab_size(const tb_tokenizer_t *tok);

/* The BOS / EOS ids, -1 when the model has none. */
int32_t tb_tokenizer_bos(const tb_tokenizer_t *tok);
int32_t tb_tokenizer_eos(const tb_tokenizer_t *tok);

/* Whether encode with add_special prepends BOS / appends EOS. */
bool tb_tokenizer_adds_bos(const tb_tokenizer_t *tok);
bool tb_tokenizer_adds_eos(const tb_tokenizer_t *tok);

/* Every id that ends generation (EOS first, then the others, no duplicates).  Sets *ids to a
 * borrowed array valid for the tokenizer's life; returns its length (0 when none). */
size_t tb_tokenizer_eos_ids(const tb_tokenizer_t *tok, const int32_t **ids);

/* True when `id` ends generation. */
bool tb_tokenizer_is_eos(const tb_tokenizer_t *tok, int32_t id);

/* The piece of `id` as the vocabulary stores it ("▁the", "Ġthe", "<0x0A>", "<s>"), borrowed and
 * NUL-terminated, valid for the tokenizer's life; NULL when id is outside the vocabulary.
 * *len (may be NULL) receives its length. */
const char *tb_tokenizer_piece(const tb_tokenizer_t *tok, int32_t id, size_t *len);

/* The id whose piece is s[0..len) (added tokens first, then the model's vocabulary), or -1. */
int32_t tb_tokenizer_find(const tb_tokenizer_t *tok, const char *s, size_t len);

/* True when id is a special token (left out by decode with skip_special). */
bool tb_tokenizer_is_special(const tb_tokenizer_t *tok, int32_t id);

#ifdef __cplusplus
}
#endif

#endif /* TB_TOKENIZER_H */
