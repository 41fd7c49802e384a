/*
 * test_grammar.c - tb_grammar (GBNF dialect and its errors with line:column), tb_token_trie,
 * tb_grammar_cache and tb_grammar_matcher: texts accepted and refused byte by byte, the EOS
 * rule, and the fast mask equal to the brute-force mask at every step of random walks over a
 * small vocabulary with multi-byte tokens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_grammar.h"
#include "tb_grammar_cache.h"
#include "tb_grammar_matcher.h"
#include "tb_token_trie.h"

/* Ids 0..255: the single bytes; then multi-byte tokens; then one left out (a special token);
 * then EOS. */
static const char *const s_multi[] = {"ab",   "abc",  "ba",  "{\"",  "\"}",   "\",",
                                      "\":",  "12",   "1.5", "true", "null",  "é",
                                      "\xc3", "\xa9", "aé",  "  ",   "\n\n",  "}]",
                                      "],",   "a\"",  "xyz", "0,",   "\"a\"", "ééé"};
#define N_MULTI (sizeof(s_multi) / sizeof(*s_multi))
#define ID_SPECIAL (256 + (int32_t)N_MULTI)
#define ID_EOS (ID_SPECIAL + 1)
#define VOCAB (ID_EOS + 1)

static tb_token_trie_t *s_trie(void)
{
    static char bytes[256][2];
    const char *b[VOCAB];
    size_t lens[VOCAB];
    for (int i = 0; i < 256; i++) {
        bytes[i][0] = (char)i;
        b[i] = bytes[i];
        lens[i] = 1;
    }
    for (size_t i = 0; i < N_MULTI; i++) {
        b[256 + i] = s_multi[i];
        lens[256 + i] = strlen(s_multi[i]);
    }
    b[ID_SPECIAL] = NULL;
    lens[ID_SPECIAL] = 0;
    b[ID_EOS] = NULL;
    lens[ID_EOS] = 0;
    int32_t eos = ID_EOS;
    tb_token_trie_t *t = NULL;
    assert_int_equal(tb_token_trie_new(VOCAB, b, lens, &eos, 1, &t), 0);
    return t;
}

static tb_grammar_t *s_parse(const char *text)
{
    char err[256] = "";
    tb_grammar_t *g = NULL;
    if (tb_grammar_parse_gbnf(text, strlen(text), &g, err, sizeof(err)) != 0) {
        fail_msg("grammar refused: %s", err);
    }
    return g;
}

/* Whether the grammar accepts text as a whole (one byte token at a time, then EOS). */
static bool s_accepts(const char *grammar, const char *text)
{
    tb_token_trie_t *t = s_trie();
    tb_grammar_t *g = s_parse(grammar);
    tb_grammar_cache_t *c = NULL;
    tb_grammar_matcher_t *m = NULL;
    assert_int_equal(tb_grammar_cache_new(g, t, &c), 0);
    assert_int_equal(tb_grammar_matcher_new(c, &m), 0);
    bool ok = true;
    for (size_t i = 0; text[i] && ok; i++) {
        ok = tb_grammar_matcher_accept(m, (uint8_t)text[i]) == 0;
    }
    ok = ok && tb_grammar_matcher_accept(m, ID_EOS) == 0 && tb_grammar_matcher_is_done(m);
    tb_grammar_matcher_destroy(&m);
    tb_grammar_cache_destroy(&c);
    tb_grammar_destroy(&g);
    tb_token_trie_destroy(&t);
    return ok;
}

static void test_syntax(void **state)
{
    (void)state;
    const char *g = "# a comment\n"
                    "root ::= greeting (\" \" name)? \"!\"{1,3} tail\n"
                    "greeting ::= \"hi\" | \"hello\"   # trailing comment\n"
                    "name ::= [A-Z] [a-z]*\n"
                    "tail ::= \"\\n\"? | \"\\x41\" \"\\u00e9\"\n";
    assert_true(s_accepts(g, "hi!"));
    assert_true(s_accepts(g, "hello Bob!!!"));
    assert_true(s_accepts(g, "hi Al!\n"));
    assert_true(s_accepts(g, "hi!A\xc3\xa9"));
    assert_false(s_accepts(g, "hi!!!!"));
    assert_false(s_accepts(g, "hi bob!"));
    assert_false(s_accepts(g, "hey!"));
    assert_false(s_accepts(g, "hi"));
}

static void test_repetitions(void **state)
{
    (void)state;
    const char *g = "root ::= \"a\"{2} \"b\"{1,} \"c\"{0,2} \"d\"+ \"e\"*\n";
    assert_true(s_accepts(g, "aabd"));
    assert_true(s_accepts(g, "aabbbccdddeee"));
    assert_false(s_accepts(g, "abd"));
    assert_false(s_accepts(g, "aad"));
    assert_false(s_accepts(g, "aabcccd"));
    assert_false(s_accepts(g, "aab"));
    assert_true(s_accepts("root ::= (\"x\" | \"yz\"){2,3}\n", "xyz"));
    assert_false(s_accepts("root ::= (\"x\" | \"yz\"){2,3}\n", "x"));
    assert_true(s_accepts("root ::= \"\"\n", ""));
}

static void test_classes(void **state)
{
    (void)state;
    const char *g = "root ::= [^\"\\\\a-c]+ [α-ω] . [\\x00-\\x1f\\]]\n";
    assert_true(s_accepts(g, "xyz\xce\xb1"
                             "d]"));
    assert_true(s_accepts(g, "\xe2\x82\xac\xcf\x89\xf0\x9f\x98\x80\n"));
    assert_false(s_accepts(g, "a\xce\xb1"
                              "d]"));
    assert_false(s_accepts(g, "x\xce\xb1"
                              "dd"));
    assert_false(s_accepts(g, "\"\xce\xb1"
                              "d]"));
    /* invalid UTF-8 is never accepted by a negated class or '.' */
    assert_false(s_accepts("root ::= .\n", "\xc3"));
    assert_false(s_accepts("root ::= [^a]\n", "\xff"));
    assert_false(s_accepts("root ::= .\n", "\xed\xa0\x80")); /* a surrogate */
    assert_true(s_accepts("root ::= .\n", "\xc3\xa9"));
}

/* Errors: code and "line:col: message". */
static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"root ::= \"a\" (\n", "1:14: unclosed '('"},
        {"root ::= \"a\nb\"", NULL},
        {"root ::= \"abc", "1:10: unterminated string"},
        {"root ::= [abc", "1:10: unterminated character class"},
        {"root ::= x\n", "1:10: undefined rule 'x'"},
        {"a ::= \"x\"\n", "2:1: no rule named 'root'"},
        {"root ::= \"a\"\nroot ::= \"b\"\n", "2:1: rule 'root' defined twice"},
        {"root ::= \"\\q\"", "1:11: unknown escape '\\q'"},
        {"root ::= \"a\" )", "1:14: unexpected ')'"},
        {"root ::= \"a\"{3,2}", "1:13: bad repetition bounds"},
        {"root ::= [z-a]", "1:10: reversed range"},
        {"root := \"a\"", "1:1: expected a rule definition 'name ::= ...'"},
        {"root ::= \"a\"\n  expr ::= expr \"+\" | \"1\"\n", "2:3: rule 'expr' is left-recursive"},
        {"root ::= x \"a\"\nx ::= \"\" | root\n", "1:1: rule 'root' is left-recursive"},
        {"root ::= \"\\U00110000\"", "1:11: escape is not a Unicode character"},
        {"root ::= \"a\" ,", "1:14: unexpected ','"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char err[256] = "";
        tb_grammar_t *g = NULL;
        int rc = tb_grammar_parse_gbnf(cases[i].text, strlen(cases[i].text), &g, err,
                                       sizeof(err));
        if (!cases[i].msg) {
            assert_int_equal(rc, 0); /* a literal may span lines */
            tb_grammar_destroy(&g);
            continue;
        }
        assert_int_equal(rc, TB_EINVAL);
        assert_null(g);
        assert_string_equal(err, cases[i].msg);
    }
}

static void test_eos_and_refusal(void **state)
{
    (void)state;
    tb_token_trie_t *t = s_trie();
    tb_grammar_t *g = s_parse("root ::= \"ab\" \"c\"?\n");
    tb_grammar_cache_t *c = NULL;
    tb_grammar_matcher_t *m = NULL;
    assert_int_equal(tb_grammar_cache_new(g, t, &c), 0);
    assert_int_equal(tb_grammar_matcher_new(c, &m), 0);
    uint32_t mask[(VOCAB + 31) / 32];
    assert_int_equal(tb_grammar_matcher_mask_words(m), (VOCAB + 31) / 32);
    assert_int_equal(tb_grammar_matcher_fill_mask(m, mask), 0);
    /* "a", "ab", "abc" allowed; not EOS, not the special token, not "b" */
    assert_true(mask['a' / 32] & (1u << ('a' % 32)));
    assert_false(mask['b' / 32] & (1u << ('b' % 32)));
    assert_false(mask[ID_EOS / 32] & (1u << (ID_EOS % 32)));
    assert_false(mask[ID_SPECIAL / 32] & (1u << (ID_SPECIAL % 32)));
    assert_int_equal(tb_grammar_matcher_accept(m, ID_EOS), TB_EINVAL);
    assert_int_equal(tb_grammar_matcher_accept(m, 'b'), TB_EINVAL);
    assert_int_equal(tb_grammar_matcher_accept(m, ID_SPECIAL), TB_EINVAL);
    assert_int_equal(tb_grammar_matcher_accept(m, 256), 0); /* "ab" */
    assert_true(tb_grammar_matcher_can_end(m));
    assert_int_equal(tb_grammar_matcher_fill_mask(m, mask), 0);
    assert_true(mask[ID_EOS / 32] & (1u << (ID_EOS % 32)));
    assert_true(mask['c' / 32] & (1u << ('c' % 32)));
    assert_int_equal(tb_grammar_matcher_accept(m, 'c'), 0);
    assert_int_equal(tb_grammar_matcher_accept(m, 'c'), TB_EINVAL);
    assert_int_equal(tb_grammar_matcher_accept(m, ID_EOS), 0);
    assert_true(tb_grammar_matcher_is_done(m));
    assert_false(tb_grammar_matcher_can_end(m));
    assert_int_equal(tb_grammar_matcher_accept(m, 'c'), TB_EINVAL);
    assert_int_equal(tb_grammar_matcher_fill_mask(m, mask), 0);
    for (size_t w = 0; w < (VOCAB + 31) / 32; w++) {
        assert_int_equal(mask[w], 0);
    }
    tb_grammar_matcher_destroy(&m);
    tb_grammar_cache_destroy(&c);
    tb_grammar_destroy(&g);
    tb_token_trie_destroy(&t);
}

/* Random walks: at every step the cached mask equals the brute-force mask, and the allowed set
 * is never empty before the end. */
static void s_walks(const char *grammar, int walks, int steps, uint64_t seed)
{
    tb_token_trie_t *t = s_trie();
    tb_grammar_t *g = s_parse(grammar);
    tb_grammar_cache_t *c = NULL;
    assert_int_equal(tb_grammar_cache_new(g, t, &c), 0);
    uint32_t fast[(VOCAB + 31) / 32], slow[(VOCAB + 31) / 32];
    for (int w = 0; w < walks; w++) {
        tb_grammar_matcher_t *m = NULL;
        assert_int_equal(tb_grammar_matcher_new(c, &m), 0);
        for (int s = 0; s < steps && !tb_grammar_matcher_is_done(m); s++) {
            tb_grammar_matcher_set_memo(m, w % 2 == 0); /* both paths, memo on and off */
            assert_int_equal(tb_grammar_matcher_fill_mask(m, fast), 0);
            assert_int_equal(tb_grammar_matcher_fill_mask_slow(m, slow), 0);
            assert_memory_equal(fast, slow, sizeof(fast));
            int32_t allowed[VOCAB];
            int n = 0;
            for (int32_t id = 0; id < VOCAB; id++) {
                if ((fast[id >> 5] >> (id & 31)) & 1) {
                    allowed[n++] = id;
                }
            }
            assert_true(n > 0);
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            assert_int_equal(tb_grammar_matcher_accept(m, allowed[seed % (uint64_t)n]), 0);
        }
        tb_grammar_matcher_destroy(&m);
    }
    tb_grammar_cache_destroy(&c);
    tb_grammar_destroy(&g);
    tb_token_trie_destroy(&t);
}

static void test_mask_equals_brute_force(void **state)
{
    (void)state;
    /* shared rules (several call sites), recursion, nullable rules, Unicode, whitespace */
    s_walks("root ::= value\n"
            "value ::= object | array | string | num | \"true\" | \"null\"\n"
            "object ::= \"{\" ws ( string ws \":\" ws value ( ws \",\" ws string ws \":\" ws "
            "value )* )? ws \"}\"\n"
            "array ::= \"[\" ws ( value ( ws \",\" ws value )* )? ws \"]\"\n"
            "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1f] | \"\\\\\" [\"nt] )* \"\\\"\"\n"
            "num ::= \"-\"? [0-9]+ ( \".\" [0-9]+ )?\n"
            "ws ::= [ \\n]*\n",
            40, 60, 7);
    s_walks("root ::= ( item \",\" )* item\nitem ::= [a-c]+ | \"xyz\" | \"é\"+\n", 40, 40, 3);
    s_walks("root ::= a b a\na ::= \"a\"? \"b\"?\nb ::= \"1\" | \"12\" | \"1.5\" a\n", 60, 20, 5);
    s_walks(
        "root ::= \"{\\\"\" [a-z]{0,3} \"\\\":\" ( \"true\" | \"null\" | [0-9]{1,2} ) \"}\"\n",
        60, 20, 11);
}

static void test_trie(void **state)
{
    (void)state;
    tb_token_trie_t *t = s_trie();
    struct tb_token_trie_nodes n;
    tb_token_trie_nodes(t, &n);
    assert_int_equal(tb_token_trie_vocab_size(t), VOCAB);
    assert_int_equal(n.n_tokens, VOCAB - 2); /* the special token and EOS are left out */
    size_t len = 0;
    assert_null(tb_token_trie_bytes(t, ID_SPECIAL, &len));
    assert_null(tb_token_trie_bytes(t, ID_EOS, &len));
    assert_memory_equal(tb_token_trie_bytes(t, 257, &len), "abc", 3);
    assert_int_equal(len, 3);
    /* every token lies under the path of its bytes, in pre-order */
    for (size_t i = 0; i < n.n; i++) {
        assert_true(n.end[i] > i && n.end[i] <= n.n);
        for (uint32_t k = n.tok_at[i]; k < n.tok_at[i + 1]; k++) {
            const uint8_t *b = tb_token_trie_bytes(t, n.tokens[k], &len);
            assert_int_equal(len, n.depth[i]);
            assert_int_equal(b[len - 1], n.byte[i]);
        }
    }
    tb_token_trie_destroy(&t);
    tb_token_trie_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_repetitions),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_eos_and_refusal),
        cmocka_unit_test(test_mask_equals_brute_force),
        cmocka_unit_test(test_trie),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
