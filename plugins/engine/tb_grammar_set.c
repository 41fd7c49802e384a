/* tb_grammar_set: a runner's compiled grammars, by text (see tb_grammar_set.h). */
#include "tb_grammar_set.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_grammar.h"
#include "tb_grammar_matcher.h"
#include "tb_token_trie.h"
#include "tb_tokenizer.h"

struct tb_grammar_ref {
    uint32_t refs;
    uint64_t hash;
    char *text;
    size_t len;
    tb_grammar_t *grammar;
    tb_grammar_cache_t *cache;
};

struct tb_grammar_set {
    char *tokenizer_path;
    int32_t *eos;
    size_t n_eos;
    tb_token_trie_t *own_trie;   /* built on the first get, NULL until then */
    const tb_token_trie_t *trie; /* own_trie, or a borrowed one */
    size_t capacity;
    size_t n;
    tb_grammar_ref_t **entries; /* most recently used last */
};

int tb_grammar_set_new(const char *tokenizer_path, const int32_t *eos, size_t n_eos,
                       size_t capacity, tb_grammar_set_t **out)
{
    *out = NULL;
    tb_grammar_set_t *s = calloc(1, sizeof *s);
    if (!s) {
        return TB_ENOMEM;
    }
    s->capacity = capacity ? capacity : 1;
    s->entries = calloc(s->capacity, sizeof *s->entries);
    s->eos = malloc((n_eos + 1) * sizeof *s->eos);
    s->tokenizer_path = tokenizer_path ? strdup(tokenizer_path) : NULL;
    if (!s->entries || !s->eos || (tokenizer_path && !s->tokenizer_path)) {
        tb_grammar_set_destroy(&s);
        return TB_ENOMEM;
    }
    if (n_eos) {
        memcpy(s->eos, eos, n_eos * sizeof *eos);
    }
    s->n_eos = n_eos;
    *out = s;
    return 0;
}

int tb_grammar_set_new_trie(const tb_token_trie_t *trie, size_t capacity, tb_grammar_set_t **out)
{
    int rc = tb_grammar_set_new(NULL, NULL, 0, capacity, out);
    if (rc == 0) {
        (*out)->trie = trie;
    }
    return rc;
}

void tb_grammar_set_destroy(tb_grammar_set_t **set_p)
{
    if (!set_p || !*set_p) {
        return;
    }
    tb_grammar_set_t *s = *set_p;
    for (size_t i = 0; i < s->n; i++) {
        tb_grammar_ref_release(&s->entries[i]);
    }
    tb_token_trie_destroy(&s->own_trie);
    free(s->entries);
    free(s->eos);
    free(s->tokenizer_path);
    free(s);
    *set_p = NULL;
}

size_t tb_grammar_set_size(const tb_grammar_set_t *set)
{
    return set->n;
}

tb_grammar_ref_t *tb_grammar_ref_acquire(tb_grammar_ref_t *ref)
{
    ref->refs++;
    return ref;
}

void tb_grammar_ref_release(tb_grammar_ref_t **ref_p)
{
    if (!ref_p || !*ref_p) {
        return;
    }
    tb_grammar_ref_t *r = *ref_p;
    *ref_p = NULL;
    if (--r->refs > 0) {
        return;
    }
    tb_grammar_cache_destroy(&r->cache);
    tb_grammar_destroy(&r->grammar);
    free(r->text);
    free(r);
}

const tb_grammar_cache_t *tb_grammar_ref_cache(const tb_grammar_ref_t *ref)
{
    return ref->cache;
}

const char *tb_grammar_ref_text(const tb_grammar_ref_t *ref)
{
    return ref->text;
}

/* FNV-1a over the text. */
static uint64_t s_hash(const char *text, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)text[i]) * 0x100000001b3ULL;
    }
    return h;
}

/* The trie, built from the tokenizer the first time. */
static int s_trie(tb_grammar_set_t *s, char *err, size_t err_len)
{
    if (s->trie) {
        return 0;
    }
    if (!s->tokenizer_path) {
        tb_err_set(err, err_len,
                   "grammar: the model has no tokenizer to constrain decoding with");
        return TB_ENOTSUP;
    }
    tb_tokenizer_t *tok = NULL;
    char terr[256] = "";
    int rc = tb_tokenizer_load(s->tokenizer_path, &tok, terr, sizeof terr);
    if (rc == 0) {
        rc = tb_token_trie_from_tokenizer_eos(tok, s->eos, s->n_eos, &s->own_trie);
        s->trie = s->own_trie;
        snprintf(terr, sizeof terr, "cannot build the token trie");
    }
    tb_tokenizer_destroy(&tok);
    if (rc != 0) {
        tb_err_set(err, err_len, "grammar: %s", terr);
        return rc == TB_ENOMEM ? TB_ENOMEM : TB_ENOTSUP;
    }
    return 0;
}

/* TB_EINVAL when no token of the vocabulary can start a sentence of r's grammar (a vocabulary
 * without '{' and a JSON object, say): the request is refused at once rather than failing at
 * its first step. */
static int s_check_start(tb_grammar_ref_t *r, char *err, size_t err_len)
{
    tb_grammar_matcher_t *m = NULL;
    uint32_t *mask = NULL;
    int rc = tb_grammar_matcher_new(r->cache, &m);
    size_t words = m ? tb_grammar_matcher_mask_words(m) : 0;
    if (rc == 0) {
        mask = malloc((words + 1) * sizeof *mask);
        rc = mask ? tb_grammar_matcher_fill_mask(m, mask) : TB_ENOMEM;
    }
    bool any = false;
    for (size_t i = 0; rc == 0 && i < words && !any; i++) {
        any = mask[i] != 0;
    }
    if (rc != 0) {
        tb_err_set(err, err_len, "grammar: %s",
                   rc == TB_E2BIG ? "too ambiguous to compile (runaway expansion)"
                                  : "out of memory");
    } else if (!any) {
        tb_err_set(err, err_len,
                   "grammar: no token of this model's vocabulary can start it (the vocabulary "
                   "cannot spell the text it requires)");
        rc = TB_EINVAL;
    }
    free(mask);
    tb_grammar_matcher_destroy(&m);
    return rc;
}

/* A new entry for text (one reference, the caller's). */
static int s_compile(tb_grammar_set_t *s, const char *text, size_t len, uint64_t h,
                     tb_grammar_ref_t **out, char *err, size_t err_len)
{
    tb_grammar_ref_t *r = calloc(1, sizeof *r);
    if (!r || !(r->text = malloc(len + 1))) {
        free(r);
        tb_err_set(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    r->refs = 1;
    r->hash = h;
    r->len = len;
    memcpy(r->text, text, len);
    r->text[len] = '\0';
    char gerr[256] = "";
    int rc = tb_grammar_parse_gbnf(text, len, &r->grammar, gerr, sizeof gerr);
    if (rc != 0) {
        tb_err_set(err, err_len, "grammar: %s", rc == TB_ENOMEM ? "out of memory" : gerr);
        tb_grammar_ref_release(&r);
        return rc;
    }
    rc = tb_grammar_cache_new(r->grammar, s->trie, &r->cache);
    if (rc != 0) {
        tb_err_set(err, err_len, "grammar: %s",
                   rc == TB_E2BIG ? "too ambiguous to compile (runaway expansion)"
                                  : "out of memory");
        tb_grammar_ref_release(&r);
        return rc;
    }
    rc = s_check_start(r, err, err_len);
    if (rc != 0) {
        tb_grammar_ref_release(&r);
        return rc;
    }
    *out = r;
    return 0;
}

int tb_grammar_set_get(tb_grammar_set_t *set, const char *text, size_t len,
                       tb_grammar_ref_t **out, char *err, size_t err_len)
{
    tb_grammar_set_t *s = set;
    *out = NULL;
    uint64_t h = s_hash(text, len);
    for (size_t i = 0; i < s->n; i++) {
        tb_grammar_ref_t *r = s->entries[i];
        if (r->hash == h && r->len == len && memcmp(r->text, text, len) == 0) {
            memmove(&s->entries[i], &s->entries[i + 1], (s->n - i - 1) * sizeof *s->entries);
            s->entries[s->n - 1] = r;
            *out = tb_grammar_ref_acquire(r);
            return 0;
        }
    }
    int rc = s_trie(s, err, err_len);
    tb_grammar_ref_t *r = NULL;
    if (rc == 0) {
        rc = s_compile(s, text, len, h, &r, err, err_len);
    }
    if (rc != 0) {
        return rc;
    }
    if (s->n == s->capacity) {
        tb_grammar_ref_release(&s->entries[0]);
        memmove(&s->entries[0], &s->entries[1], (s->n - 1) * sizeof *s->entries);
        s->n--;
    }
    s->entries[s->n++] = tb_grammar_ref_acquire(r);
    *out = r;
    return 0;
}
