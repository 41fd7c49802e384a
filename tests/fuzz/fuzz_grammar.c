/*
 * fuzz_grammar.c - libFuzzer target: any bytes as a GBNF grammar (first byte even) or a JSON
 * schema (first byte odd), compiled; when it compiles to a small grammar, a walk of up to 16
 * steps over a small vocabulary, choosing tokens from the input, with the fast mask checked
 * against the brute-force mask at every step.  Must never crash, leak, hang, or disagree.
 *
 * FUZZ_SOURCES: plugins/common/tb_grammar.c plugins/common/tb_grammar_stack.c plugins/common/tb_grammar_cache.c plugins/common/tb_grammar_matcher.c plugins/common/tb_token_trie.c plugins/common/tb_json_schema.c schemas/tb_utf8.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tb_grammar.h"
#include "tb_grammar_cache.h"
#include "tb_grammar_matcher.h"
#include "tb_json_schema.h"
#include "tb_token_trie.h"
#include "tb_tokenizer_impl.h"

/* tb_token_trie_from_tokenizer is not called here: stubs instead of the tokenizer sources. */
size_t tb_tokenizer_vocab_size(const tb_tokenizer_t *tok)
{
    (void)tok;
    return 0;
}

const char *tb_tokenizer_piece(const tb_tokenizer_t *tok, int32_t id, size_t *len)
{
    (void)tok, (void)id, (void)len;
    return NULL;
}

bool tb_tokenizer_is_special(const tb_tokenizer_t *tok, int32_t id)
{
    (void)tok, (void)id;
    return false;
}

bool tb_tokenizer_is_eos(const tb_tokenizer_t *tok, int32_t id)
{
    (void)tok, (void)id;
    return false;
}

size_t tb_tokenizer_eos_ids(const tb_tokenizer_t *tok, const int32_t **ids)
{
    (void)tok, (void)ids;
    return 0;
}

const char *tb_tok_dec_bytes(const tb_tokenizer_t *tok, int32_t id, bool first, size_t *len)
{
    (void)tok, (void)id, (void)first, (void)len;
    return NULL;
}

static const char *const s_tokens[] = {"a",    "b",    "0",   "1",    "9",    "-",
                                       ".",    "e",    "\"",  "\\",   "{",    "}",
                                       "[",    "]",    ",",   ":",    " ",    "\n",
                                       "t",    "n",    "u",   "\xc3", "\xa9", "\xe2\x82\xac",
                                       "ab",   "{\"",  "\"}", "\",",  "\":",  "12",
                                       "true", "null", "a\"", "],",   "}]",   "é",
                                       "  ",   "x"};
#define N_TOK (sizeof(s_tokens) / sizeof(*s_tokens))
#define VOCAB (N_TOK + 1)
#define WORDS ((VOCAB + 31) / 32)

static tb_grammar_t *s_compile(const uint8_t *data, size_t size)
{
    char err[256];
    tb_grammar_t *g = NULL;
    if (data[0] % 2 == 0) {
        tb_grammar_parse_gbnf((const char *)data + 1, size - 1, &g, err, sizeof(err));
        return g;
    }
    json_t *s = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
    if (s) {
        tb_json_schema_compile(s, &g, err, sizeof(err));
    }
    json_decref(s);
    return g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tb_token_trie_t *trie;
    if (!trie) {
        const char *b[VOCAB];
        size_t lens[VOCAB];
        for (size_t i = 0; i < N_TOK; i++) {
            b[i] = s_tokens[i];
            lens[i] = strlen(s_tokens[i]);
        }
        b[N_TOK] = NULL;
        lens[N_TOK] = 0;
        int32_t eos = (int32_t)N_TOK;
        if (tb_token_trie_new(VOCAB, b, lens, &eos, 1, &trie) != 0) {
            abort();
        }
    }
    if (size < 1 || size > 4096) {
        return 0;
    }
    tb_grammar_t *g = s_compile(data, size);
    tb_grammar_cache_t *c = NULL;
    tb_grammar_matcher_t *m = NULL;
    if (g && tb_grammar_n_elements(g) <= 20000 && tb_grammar_cache_new(g, trie, &c) == 0 &&
        tb_grammar_matcher_new(c, &m) == 0) {
        uint32_t fast[WORDS], slow[WORDS];
        for (size_t step = 0; step < 16 && !tb_grammar_matcher_is_done(m); step++) {
            if (tb_grammar_matcher_fill_mask(m, fast) != 0 ||
                tb_grammar_matcher_fill_mask_slow(m, slow) != 0) {
                break;
            }
            if (memcmp(fast, slow, sizeof(fast)) != 0) {
                abort();
            }
            size_t pick = data[(step * 7 + 1) % size] % VOCAB, k = 0;
            for (;
                 k < VOCAB && !((fast[(pick + k) % VOCAB / 32] >> ((pick + k) % VOCAB % 32)) & 1);
                 k++) {
            }
            if (k == VOCAB || tb_grammar_matcher_accept(m, (int32_t)((pick + k) % VOCAB)) != 0) {
                break;
            }
        }
    }
    tb_grammar_matcher_destroy(&m);
    tb_grammar_cache_destroy(&c);
    tb_grammar_destroy(&g);
    return 0;
}
