/*
 * test_grammar_sampling.c - grammar-constrained sampling (tb_sampler.h with a grammar from
 * tb_grammar_set.h): greedy and seeded sampling with top_k / top_p / min_p only ever produce
 * sentences of the grammar, whatever the logits favour; the end-of-sequence id comes exactly
 * where the grammar is complete (min_tokens does not hold it back there); logprobs are those of
 * the masked distribution; a forced token advances the grammar and a disallowed one is refused;
 * the set compiles each text once, stays bounded, names line:col on a bad grammar, refuses a
 * grammar no token can start, and an entry dropped from it lives on while a sequence follows it.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_grammar_set.h"
#include "tb_rng.h"
#include "tb_sampler.h"
#include "tb_token_trie.h"

/* The vocabulary: ids 0..9 are these texts, 10 is the end-of-sequence id, 11 a special token
 * (not in the trie), 12..15 padding ids past the tokenizer's vocabulary (the model's rows are
 * wider than its tokenizer, as with padded embeddings). */
#define N_TEXT 10
#define EOS 10
#define VOCAB 16
static const char *const s_texts[N_TEXT] = {"a", "b", "ab", "c", "x", "{", "}", "\"", "1", "12"};

struct fixture {
    tb_token_trie_t *trie;
    tb_grammar_set_t *set;
    tb_sampler_t *sampler;
};

static int s_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *bytes[EOS + 2] = {0};
    size_t lens[EOS + 2] = {0};
    for (int i = 0; i < N_TEXT; i++) {
        bytes[i] = s_texts[i];
        lens[i] = strlen(s_texts[i]);
    }
    int32_t eos = EOS;
    assert_int_equal(tb_token_trie_new(EOS + 2, bytes, lens, &eos, 1, &f->trie), 0);
    assert_int_equal(tb_grammar_set_new_trie(f->trie, 2, &f->set), 0);
    struct tb_sampler_config cfg = {.vocab_size = VOCAB, .seed = 7, .n_eos = 1};
    cfg.eos_ids[0] = EOS;
    assert_int_equal(tb_sampler_new(&cfg, &f->sampler), 0);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    struct fixture *f = *state;
    tb_sampler_destroy(&f->sampler);
    tb_grammar_set_destroy(&f->set);
    tb_token_trie_destroy(&f->trie);
    free(f);
    return 0;
}

static tb_grammar_ref_t *s_grammar(struct fixture *f, const char *gbnf)
{
    tb_grammar_ref_t *g = NULL;
    char err[256] = "";
    int rc = tb_grammar_set_get(f->set, gbnf, strlen(gbnf), &g, err, sizeof err);
    if (rc != 0) {
        fail_msg("grammar refused: %s", err);
    }
    return g;
}

/* Runs one sequence to its end (at most 256 steps) with `logits` every step; writes the text
 * (without the EOS) to `text` and returns the number of tokens, the EOS included. */
static int s_run(struct fixture *f, const struct tb_sampling_params *p, const float *logits,
                 char *text, size_t text_len)
{
    int32_t prompt = 0;
    tb_sampler_seq_t *q = NULL;
    assert_int_equal(tb_sampler_seq_new(f->sampler, p, &prompt, 1, &q), 0);
    text[0] = '\0';
    int n = 0;
    for (; n < 256 && !tb_sampler_seq_grammar_done(q); n++) {
        struct tb_sample out;
        assert_int_equal(tb_sampler_sample(f->sampler, q, logits, &out), 0);
        assert_true(out.token >= 0 && out.token <= EOS);
        if (out.token < N_TEXT) {
            assert_true(strlen(text) + strlen(s_texts[out.token]) < text_len);
            strcat(text, s_texts[out.token]);
        }
    }
    assert_true(tb_sampler_seq_grammar_done(q));
    tb_sampler_seq_destroy(&q);
    return n;
}

static void test_greedy_follows_the_grammar(void **state)
{
    struct fixture *f = *state;
    tb_grammar_ref_t *g = s_grammar(f, "root ::= \"ab\" \"c\"* | \"x1\"");
    struct tb_sampling_params p;
    tb_sampling_params_init(&p);
    p.temperature = 0;
    p.grammar = g;
    /* the model wants "}" then the padding id 13 then the special id 11: none is allowed */
    float logits[VOCAB];
    for (int i = 0; i < VOCAB; i++) {
        logits[i] = (float)-i;
    }
    logits[6] = 9, logits[13] = 8, logits[11] = 7, logits[EOS] = 5, logits[3] = 4;
    char text[1024];
    /* greedy: "a" (id 0) beats "ab" (2) and "x" (4); then "b" alone; then the EOS (5) beats
     * "c" (4) */
    assert_int_equal(s_run(f, &p, logits, text, sizeof text), 3);
    assert_string_equal(text, "ab");
    /* "c" beating the EOS: "c" as long as the EOS is not the best allowed token */
    logits[3] = 6;
    logits[EOS] = 20; /* the EOS is refused until "ab" is complete, then wins */
    assert_int_equal(s_run(f, &p, logits, text, sizeof text), 3);
    assert_string_equal(text, "ab");
    tb_grammar_ref_release(&g);
}

static void test_seeded_sampling_only_produces_sentences(void **state)
{
    struct fixture *f = *state;
    tb_grammar_ref_t *g = s_grammar(f, "root ::= \"{\" item (\"\\\"\" item)* \"}\"\n"
                                       "item ::= \"a\" | \"b\" | \"12\" | \"1\"");
    float logits[VOCAB];
    struct tb_rng rng;
    tb_rng_seed(&rng, 99);
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < VOCAB; i++) {
            logits[i] = (float)(tb_rng_uniform(&rng) * 6.0 - 3.0);
        }
        logits[6] = 3.0f; /* "}" likely enough that every sequence ends within 256 steps */
        struct tb_sampling_params p;
        tb_sampling_params_init(&p);
        p.grammar = g;
        p.has_seed = true;
        p.seed = (uint64_t)round;
        p.temperature = 0.5f + (float)(round % 4) * 0.5f;
        p.top_k = round % 3 == 0 ? 2 : 0;
        p.top_p = round % 5 == 0 ? 0.7f : 1.0f;
        p.min_p = round % 7 == 0 ? 0.1f : 0.0f;
        p.max_tokens = 0;
        char text[1024];
        s_run(f, &p, logits, text, sizeof text);
        size_t len = strlen(text);
        assert_true(len >= 3);
        assert_int_equal(text[0], '{');
        assert_int_equal(text[len - 1], '}');
        for (size_t i = 1; i + 1 < len; i++) {
            assert_non_null(strchr("ab12\"", text[i]));
        }
    }
    tb_grammar_ref_release(&g);
}

static void test_logprobs_of_the_masked_distribution(void **state)
{
    struct fixture *f = *state;
    tb_grammar_ref_t *g = s_grammar(f, "root ::= (\"a\" | \"b\" | \"c\") \"x\"");
    struct tb_sampling_params p;
    tb_sampling_params_init(&p);
    p.temperature = 0;
    p.grammar = g;
    p.logprobs = true;
    p.top_logprobs = 5;
    float logits[VOCAB];
    for (int i = 0; i < VOCAB; i++) {
        logits[i] = 3.0f; /* the disallowed tokens hold most of the raw mass */
    }
    logits[0] = 1.0f, logits[1] = 0.0f, logits[3] = -1.0f;
    int32_t prompt = 0;
    tb_sampler_seq_t *q = NULL;
    assert_int_equal(tb_sampler_seq_new(f->sampler, &p, &prompt, 1, &q), 0);
    struct tb_sample out;
    assert_int_equal(tb_sampler_sample(f->sampler, q, logits, &out), 0);
    assert_int_equal(out.token, 0);
    double z = exp(1.0) + exp(0.0) + exp(-1.0);
    assert_true(fabs(out.logprob - (1.0 - log(z))) < 1e-5);
    assert_int_equal(out.n_top, 3); /* only the three allowed tokens are listed */
    assert_int_equal(out.top_ids[0], 0);
    assert_int_equal(out.top_ids[1], 1);
    assert_int_equal(out.top_ids[2], 3);
    double sum = 0;
    for (uint32_t i = 0; i < out.n_top; i++) {
        sum += exp(out.top_logprobs[i]);
    }
    assert_true(fabs(sum - 1.0) < 1e-5);
    /* the next step allows "x" alone: logprob 0 */
    assert_int_equal(tb_sampler_sample(f->sampler, q, logits, &out), 0);
    assert_int_equal(out.token, 4);
    assert_true(fabs(out.logprob) < 1e-6);
    tb_sampler_seq_destroy(&q);
    tb_grammar_ref_release(&g);
}

static void test_min_tokens_and_ignore_eos(void **state)
{
    struct fixture *f = *state;
    tb_grammar_ref_t *g = s_grammar(f, "root ::= \"a\"");
    struct tb_sampling_params p;
    tb_sampling_params_init(&p);
    p.temperature = 0;
    p.grammar = g;
    p.min_tokens = 5;    /* the grammar ends after one token: its end wins */
    p.ignore_eos = true; /* and the grammar's end still ends the sequence */
    float logits[VOCAB] = {0};
    char text[16];
    assert_int_equal(s_run(f, &p, logits, text, sizeof text), 2);
    assert_string_equal(text, "a");
    tb_grammar_ref_release(&g);
}

static void test_forced_tokens_advance_the_grammar(void **state)
{
    struct fixture *f = *state;
    tb_grammar_ref_t *g = s_grammar(f, "root ::= \"ab\" \"c\"");
    struct tb_sampling_params p;
    tb_sampling_params_init(&p);
    p.temperature = 0;
    p.grammar = g;
    int32_t prompt = 0;
    tb_sampler_seq_t *q = NULL;
    assert_int_equal(tb_sampler_seq_new(f->sampler, &p, &prompt, 1, &q), 0);
    assert_int_equal(tb_sampler_seq_accept(q, 4), TB_EINVAL); /* "x" is not allowed */
    assert_int_equal(tb_sampler_seq_n_generated(q), 0);
    assert_int_equal(tb_sampler_seq_accept(q, 2), 0); /* "ab" */
    float logits[VOCAB] = {0};
    logits[EOS] = 10;
    struct tb_sample out;
    assert_int_equal(tb_sampler_sample(f->sampler, q, logits, &out), 0);
    assert_int_equal(out.token, 3); /* "c", whatever the model prefers */
    assert_int_equal(tb_sampler_sample(f->sampler, q, logits, &out), 0);
    assert_int_equal(out.token, EOS);
    assert_true(tb_sampler_seq_grammar_done(q));
    /* done: nothing more can be sampled */
    assert_int_not_equal(tb_sampler_sample(f->sampler, q, logits, &out), 0);
    tb_sampler_seq_destroy(&q);
    tb_grammar_ref_release(&g);
}

static void test_set_compiles_once_and_stays_bounded(void **state)
{
    struct fixture *f = *state;
    const char *a = "root ::= \"a\"", *b = "root ::= \"b\"", *c = "root ::= \"c\"";
    tb_grammar_ref_t *ga = s_grammar(f, a);
    tb_grammar_ref_t *ga2 = s_grammar(f, a);
    assert_ptr_equal(ga, ga2); /* the same text: the same compiled grammar */
    assert_int_equal(tb_grammar_set_size(f->set), 1);
    tb_grammar_ref_t *gb = s_grammar(f, b);
    tb_grammar_ref_t *gc = s_grammar(f, c); /* capacity 2: "a" is dropped from the set... */
    assert_int_equal(tb_grammar_set_size(f->set), 2);
    assert_string_equal(tb_grammar_ref_text(ga), a); /* ...but lives on while referenced */
    struct tb_sampling_params p;
    tb_sampling_params_init(&p);
    p.temperature = 0;
    p.grammar = ga;
    float logits[VOCAB] = {0};
    char text[16];
    s_run(f, &p, logits, text, sizeof text);
    assert_string_equal(text, "a");
    tb_grammar_ref_release(&ga);
    tb_grammar_ref_release(&ga2);
    tb_grammar_ref_release(&gb);
    tb_grammar_ref_release(&gc);

    tb_grammar_ref_t *bad = NULL;
    char err[256] = "";
    const char *text_bad = "root ::= \"a\" (\"b\"";
    assert_int_equal(tb_grammar_set_get(f->set, text_bad, strlen(text_bad), &bad, err,
                                        sizeof err),
                     TB_EINVAL);
    assert_null(bad);
    assert_non_null(strstr(err, "grammar: 1:"));

    /* no token of the vocabulary spells "z": refused at once, not at the first step */
    const char *text_z = "root ::= \"z\" | \"zz\"";
    assert_int_equal(tb_grammar_set_get(f->set, text_z, strlen(text_z), &bad, err, sizeof err),
                     TB_EINVAL);
    assert_non_null(strstr(err, "cannot spell"));
}

static void test_set_without_tokenizer_refuses(void **state)
{
    (void)state;
    tb_grammar_set_t *s = NULL;
    assert_int_equal(tb_grammar_set_new(NULL, NULL, 0, 4, &s), 0);
    tb_grammar_ref_t *g = NULL;
    char err[256] = "";
    assert_int_equal(tb_grammar_set_get(s, "root ::= \"a\"", 12, &g, err, sizeof err),
                     TB_ENOTSUP);
    assert_non_null(strstr(err, "no tokenizer"));
    tb_grammar_set_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_greedy_follows_the_grammar, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_seeded_sampling_only_produces_sentences, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_logprobs_of_the_masked_distribution, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_min_tokens_and_ignore_eos, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_forced_tokens_advance_the_grammar, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_set_compiles_once_and_stays_bounded, s_setup,
                                        s_teardown),
        cmocka_unit_test(test_set_without_tokenizer_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
