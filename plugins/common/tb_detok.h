/*
 * tb_detok.h - streaming detokenizer: push generated ids one at a time, get back the text they
 * complete.
 *
 * Output is always whole UTF-8 characters: bytes of a character split across tokens (byte
 * fallback "<0xE2>" "<0x82>" "<0xAC>", or byte-level pieces) are held until the character is
 * complete; an ill-formed sequence becomes U+FFFD as soon as it is known to be ill-formed, and
 * an incomplete one at the end becomes U+FFFD at flush.  The concatenation of every push and the
 * flush equals tb_tokenizer_decode of the same ids.
 *
 * Leading space: a SentencePiece decoder drops the space its encoder prepended, i.e. the leading
 * space of the first token decoded (Hugging Face's Strip / Metaspace decoders).  That is right
 * for a text decoded from its start; a stream that continues a prompt must keep the space:
 * give the prompt's ids to tb_detok_set_prefix before the first push, and the output is then
 * what decode(prompt + ids) adds after decode(prompt) (when the prompt decodes to no text, as a
 * lone BOS with skip_special, the stream is the start of the text and the rule applies).
 * tb_detok_set_continuation is the shortcut for "some text precedes".
 *
 * A tb_detok_t belongs to one thread; the tokenizer must outlive it.
 */
#ifndef TB_DETOK_H
#define TB_DETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_detok tb_detok_t;

/* A detokenizer over `tok` (borrowed).  skip_special: special tokens produce no text.  Caller
 * owns *out; destroy with tb_detok_destroy.  0 or TB_ENOMEM. */
int tb_detok_new(const tb_tokenizer_t *tok, bool skip_special, tb_detok_t **out);

/* Declares that the ids continue existing text: no start-of-text rule applies (no dropped
 * leading space).  Call before the first push; TB_EINVAL afterwards. */
int tb_detok_set_continuation(tb_detok_t *d);

/* Declares that the ids follow the prompt ids[0..n) (borrowed during the call): they are
 * decoded into the detokenizer's state without being output; bytes of a character the prompt
 * leaves incomplete are held for the stream.  Call before the first push; TB_EINVAL
 * afterwards; TB_ENOMEM. */
int tb_detok_set_prefix(tb_detok_t *d, const int32_t *ids, size_t n);

/* Pushes one id.  *text / *len receive the newly completed text (possibly empty), borrowed from
 * `d` and valid until its next call.  Ids outside the vocabulary produce nothing.  0 or
 * TB_ENOMEM. */
int tb_detok_push(tb_detok_t *d, int32_t id, const char **text, size_t *len);

/* Ends the stream: returns what was held back (an incomplete character becomes U+FFFD) with
 * the same ownership as push.  The detokenizer may then be reused for a new stream (from the
 * start of a text).  0 or TB_ENOMEM. */
int tb_detok_flush(tb_detok_t *d, const char **text, size_t *len);

/* Frees; sets *d_p to NULL; accepts NULL. */
void tb_detok_destroy(tb_detok_t **d_p);

#ifdef __cplusplus
}
#endif

#endif /* TB_DETOK_H */
