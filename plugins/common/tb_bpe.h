/*
 * tb_bpe.h - the byte-pair-encoding model: turns one pre-tokenized word into token ids.
 *
 * Two merge orders, one engine (a binary heap over adjacent pairs, O(n log n) per word):
 *  - TB_BPE_RANKS: merges come from a ranked list of pairs (Hugging Face `tokenizers`, GGUF
 *    "gpt2" vocabularies); the lowest rank merges first, ties go to the leftmost pair.
 *  - TB_BPE_SCORES: any two adjacent symbols whose concatenation is a token may merge, the
 *    token with the highest score first, ties leftmost (SentencePiece BPE as GGUF "llama"
 *    vocabularies store it).
 * What happens to characters the vocabulary lacks is configurable (byte fallback tokens
 * "<0xXX>", an unknown token, or single-byte tokens).
 *
 * A tb_bpe_t is immutable after tb_bpe_finish and may be shared by threads; each thread passes
 * its own struct tb_bpe_work.
 */
#ifndef TB_BPE_H
#define TB_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_tok_buf.h"
#include "tb_tok_vocab.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_bpe tb_bpe_t;

typedef enum {
    TB_BPE_RANKS = 0,
    TB_BPE_SCORES = 1,
} tb_bpe_mode_t;

/* What to do with a character (RANKS: before merging) or a final symbol (SCORES: after
 * merging) that is not a token. */
typedef enum {
    TB_BPE_MISSING_HF = 0,      /* byte fallback if enabled and every byte token exists, else the
                                   unknown token (fused when fuse_unk), else dropped */
    TB_BPE_MISSING_BYTES = 1,   /* "<0xXX>" tokens per byte, unknown token when one is absent */
    TB_BPE_MISSING_RAW_BYTE = 2 /* single-byte tokens per byte where they exist, else dropped */
} tb_bpe_missing_t;

struct tb_bpe_config {
    tb_bpe_mode_t mode;
    tb_bpe_missing_t missing;
    const tb_tok_vocab_t *vocab; /* borrowed; must outlive the model */
    const float *scores;         /* SCORES: one per id (borrowed, same lifetime) */
    bool byte_fallback;          /* MISSING_HF only */
    int32_t unk_id;              /* -1 when none */
    bool fuse_unk;
    bool ignore_merges;   /* a word that is itself a token is emitted whole */
    bool last_merge_wins; /* a pair listed twice keeps its last rank (else its first) */
};

/* Per-thread scratch space; zero-initialise, release with tb_bpe_work_release. */
struct tb_bpe_work {
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
};

/* Caller owns *out; destroy with tb_bpe_destroy.  0 or TB_ENOMEM. */
int tb_bpe_new(const struct tb_bpe_config *cfg, tb_bpe_t **out);
void tb_bpe_destroy(tb_bpe_t **b_p);

/* RANKS: adds the merge (left, right) -> merged with `rank` (lower merges first).  A pair
 * already present is replaced or kept as `last_merge_wins` says.  0, TB_EINVAL (negative id) or
 * TB_ENOMEM. */
int tb_bpe_add_merge(tb_bpe_t *b, int32_t left, int32_t right, int32_t merged, uint32_t rank);
size_t tb_bpe_merge_count(const tb_bpe_t *b);

/* Encodes one word (valid UTF-8, len > 0) and appends its ids to `out`.  0 or TB_ENOMEM. */
int tb_bpe_encode(const tb_bpe_t *b, const char *word, size_t len, struct tb_bpe_work *w,
                  struct tb_tok_ids *out);

void tb_bpe_work_release(struct tb_bpe_work *w);

#ifdef __cplusplus
}
#endif

#endif /* TB_BPE_H */
