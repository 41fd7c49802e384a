/*
 * test_tokenizer_bpe.c - tb_tok_vocab and tb_bpe: piece lookups, merge order by rank and by
 * score (ties leftmost), stale candidates, byte fallback, unknown-token fusing, single-byte
 * fallback, ignore_merges, duplicate merges, and a long word in O(n log n).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tb_bpe.h"
#include "tb_errors.h"
#include "tb_tok_vocab.h"

static tb_tok_vocab_t *s_vocab(const char *const *pieces, size_t n)
{
    tb_tok_vocab_t *v = NULL;
    assert_int_equal(tb_tok_vocab_new(n, &v), 0);
    for (size_t i = 0; i < n; i++) {
        if (pieces[i]) {
            assert_int_equal(tb_tok_vocab_set(v, (int32_t)i, pieces[i], strlen(pieces[i]), true),
                             0);
        }
    }
    assert_int_equal(tb_tok_vocab_build_index(v), 0);
    return v;
}

static void s_encode(const tb_bpe_t *b, const char *word, const int32_t *want, size_t n)
{
    struct tb_bpe_work w = {0};
    struct tb_tok_ids out;
    tb_tok_ids_init(&out);
    assert_int_equal(tb_bpe_encode(b, word, strlen(word), &w, &out), 0);
    if (out.len != n || (n && memcmp(out.ptr, want, n * sizeof(int32_t)) != 0)) {
        fprintf(stderr, "word '%s': got", word);
        for (size_t i = 0; i < out.len; i++) {
            fprintf(stderr, " %d", out.ptr[i]);
        }
        fprintf(stderr, "\n");
        fail_msg("unexpected ids");
    }
    tb_tok_ids_release(&out);
    tb_bpe_work_release(&w);
}

static void test_vocab(void **state)
{
    (void)state;
    tb_tok_vocab_t *v = NULL;
    assert_int_equal(tb_tok_vocab_new(4, &v), 0);
    assert_int_equal(tb_tok_vocab_set(v, 0, "a", 1, true), 0);
    assert_int_equal(tb_tok_vocab_set(v, 0, "b", 1, true), TB_EEXIST);
    assert_int_equal(tb_tok_vocab_set(v, 4, "b", 1, true), TB_ERANGE);
    assert_int_equal(tb_tok_vocab_set(v, 1, "hidden", 6, false), 0);
    assert_int_equal(tb_tok_vocab_set(v, 3, "a", 1, true), 0); /* duplicate piece */
    assert_int_equal(tb_tok_vocab_build_index(v), 0);
    assert_int_equal(tb_tok_vocab_size(v), 4);
    assert_int_equal(tb_tok_vocab_find(v, "a", 1), 3); /* the larger id wins */
    assert_int_equal(tb_tok_vocab_find(v, "hidden", 6), -1);
    assert_int_equal(tb_tok_vocab_find(v, "zz", 2), -1);
    size_t len = 0;
    assert_string_equal(tb_tok_vocab_piece(v, 1, &len), "hidden");
    assert_int_equal(len, 6);
    assert_null(tb_tok_vocab_piece(v, 2, &len)); /* unset */
    assert_null(tb_tok_vocab_piece(v, -1, &len));
    assert_null(tb_tok_vocab_piece(v, 4, &len));
    tb_tok_vocab_destroy(&v);
    assert_null(v);
    tb_tok_vocab_destroy(&v);
}

enum { A, B, C, AB, BC, ABC, UNK, BX, AA, AAAA, AC, N_TOK };
static const char *const s_pieces[N_TOK] = {"a",     "b",      "c",  "ab",   "bc", "abc",
                                            "<unk>", "<0x78>", "aa", "aaaa", "ac"};

static tb_bpe_t *s_ranked(const tb_tok_vocab_t *v, bool byte_fallback, int32_t unk, bool fuse,
                          bool ignore)
{
    struct tb_bpe_config cfg = {0};
    cfg.mode = TB_BPE_RANKS;
    cfg.missing = TB_BPE_MISSING_HF;
    cfg.vocab = v;
    cfg.byte_fallback = byte_fallback;
    cfg.unk_id = unk;
    cfg.fuse_unk = fuse;
    cfg.ignore_merges = ignore;
    tb_bpe_t *b = NULL;
    assert_int_equal(tb_bpe_new(&cfg, &b), 0);
    assert_int_equal(tb_bpe_add_merge(b, A, B, AB, 0), 0);
    assert_int_equal(tb_bpe_add_merge(b, B, C, BC, 1), 0);
    assert_int_equal(tb_bpe_add_merge(b, AB, C, ABC, 2), 0);
    assert_int_equal(tb_bpe_add_merge(b, A, A, AA, 3), 0);
    assert_int_equal(tb_bpe_add_merge(b, AA, AA, AAAA, 4), 0);
    assert_int_equal(tb_bpe_add_merge(b, A, B, AB, 9), 0); /* duplicate: first kept */
    assert_int_equal(tb_bpe_add_merge(b, -1, B, AB, 9), TB_EINVAL);
    assert_int_equal(tb_bpe_merge_count(b), 5);
    return b;
}

static void test_ranks(void **state)
{
    (void)state;
    tb_tok_vocab_t *v = s_vocab(s_pieces, N_TOK);
    tb_bpe_t *b = s_ranked(v, true, UNK, true, false);
    s_encode(b, "abc", (int32_t[]){ABC}, 1);
    s_encode(b, "bcb", (int32_t[]){BC, B}, 2);
    s_encode(b, "aaa", (int32_t[]){AA, A}, 2); /* equal ranks: leftmost first */
    s_encode(b, "aaaa", (int32_t[]){AAAA}, 1);
    s_encode(b, "aaaaa", (int32_t[]){AAAA, A}, 2);
    s_encode(b, "cab", (int32_t[]){C, AB}, 2);
    s_encode(b, "ac", (int32_t[]){A, C}, 2);        /* no merge although "ac" is a token */
    s_encode(b, "x", (int32_t[]){BX}, 1);           /* byte fallback */
    s_encode(b, "ayyb", (int32_t[]){A, UNK, B}, 3); /* 'y' has no byte token: fused unk */
    s_encode(b, "yax", (int32_t[]){UNK, A, BX}, 3);
    tb_bpe_destroy(&b);

    b = s_ranked(v, true, UNK, false, true);
    s_encode(b, "ac", (int32_t[]){AC}, 1); /* ignore_merges: the word is a token */
    s_encode(b, "yy", (int32_t[]){UNK, UNK}, 2);
    tb_bpe_destroy(&b);

    b = s_ranked(v, false, -1, false, false);
    s_encode(b, "axyb", (int32_t[]){AB}, 1); /* no fallback, no unk: dropped, a+b merge */
    tb_bpe_destroy(&b);
    assert_null(b);
    tb_tok_vocab_destroy(&v);
}

static void test_last_merge_wins(void **state)
{
    (void)state;
    tb_tok_vocab_t *v = s_vocab(s_pieces, N_TOK);
    struct tb_bpe_config cfg = {0};
    cfg.vocab = v;
    cfg.unk_id = -1;
    cfg.last_merge_wins = true;
    tb_bpe_t *b = NULL;
    assert_int_equal(tb_bpe_new(&cfg, &b), 0);
    assert_int_equal(tb_bpe_add_merge(b, A, B, AB, 0), 0);
    assert_int_equal(tb_bpe_add_merge(b, B, C, BC, 1), 0);
    assert_int_equal(tb_bpe_add_merge(b, A, B, AB, 5), 0); /* now ranks after (b, c) */
    s_encode(b, "abc", (int32_t[]){A, BC}, 2);
    tb_bpe_destroy(&b);
    tb_tok_vocab_destroy(&v);
}

static void test_scores(void **state)
{
    (void)state;
    static const char *const pieces[] = {"<unk>", "a",   "b",      "c",   "ab",
                                         "bc",    "abc", "<0x78>", "\xc3"};
    float scores[] = {0, 0, 0, 0, -1.0f, -0.5f, -2.0f, 0, 0};
    tb_tok_vocab_t *v = s_vocab(pieces, 9);
    struct tb_bpe_config cfg = {0};
    cfg.mode = TB_BPE_SCORES;
    cfg.missing = TB_BPE_MISSING_BYTES;
    cfg.vocab = v;
    cfg.scores = scores;
    cfg.unk_id = 0;
    tb_bpe_t *b = NULL;
    assert_int_equal(tb_bpe_new(&cfg, &b), 0);
    /* "bc" scores higher than "ab"; then "a"+"bc" forms "abc". */
    s_encode(b, "abc", (int32_t[]){6}, 1);
    s_encode(b, "abab", (int32_t[]){4, 4}, 2);
    s_encode(b, "cab", (int32_t[]){3, 4}, 2);
    s_encode(b, "ax", (int32_t[]){1, 7}, 2);       /* <0x78> */
    s_encode(b, "\xc3\xa9", (int32_t[]){0, 0}, 2); /* no <0xC3>/<0xA9> tokens: unknown */
    tb_bpe_destroy(&b);

    cfg.mode = TB_BPE_RANKS;
    cfg.missing = TB_BPE_MISSING_RAW_BYTE;
    assert_int_equal(tb_bpe_new(&cfg, &b), 0);
    s_encode(b, "a\xc3\xa9", (int32_t[]){1, 8}, 2); /* the 0xC3 byte token, 0xA9 dropped */
    tb_bpe_destroy(&b);
    tb_tok_vocab_destroy(&v);
}

/* A 400k-character word: the heap keeps it O(n log n) (a quadratic loop would take minutes). */
static void test_long_word(void **state)
{
    (void)state;
    tb_tok_vocab_t *v = s_vocab(s_pieces, N_TOK);
    tb_bpe_t *b = s_ranked(v, true, UNK, true, false);
    size_t n = 400000;
    char *word = malloc(n + 1);
    assert_non_null(word);
    memset(word, 'a', n);
    word[n] = '\0';
    struct tb_bpe_work w = {0};
    struct tb_tok_ids out;
    tb_tok_ids_init(&out);
    clock_t t0 = clock();
    assert_int_equal(tb_bpe_encode(b, word, n, &w, &out), 0);
    double sec = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_int_equal(out.len, n / 4);
    for (size_t i = 0; i < out.len; i++) {
        assert_int_equal(out.ptr[i], AAAA);
    }
    assert_true(sec < 20.0);
    tb_tok_ids_release(&out);
    tb_bpe_work_release(&w);
    free(word);
    tb_bpe_destroy(&b);
    tb_tok_vocab_destroy(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab),           cmocka_unit_test(test_ranks),
        cmocka_unit_test(test_last_merge_wins), cmocka_unit_test(test_scores),
        cmocka_unit_test(test_long_word),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
