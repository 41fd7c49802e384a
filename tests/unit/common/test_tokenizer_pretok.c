/*
 * test_tokenizer_pretok.c - tb_pretok, tb_tok_regex and tb_tok_norm: every split behavior,
 * invert, byte-level mapping, metaspace prepend schemes, digits, punctuation, whitespace, the
 * widened \s, bad patterns, and each normalizer step.
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
#include "tb_pretok.h"
#include "tb_tok_norm.h"
#include "tb_tok_regex.h"

/* Runs `p` over text and compares the words with the NULL-terminated list `want`. */
static void s_check(const tb_pretok_t *p, const char *text, bool first, const char *const *want)
{
    struct tb_pretok_work w = {0};
    assert_int_equal(tb_pretok_run(p, text, strlen(text), first, &w), 0);
    size_t n = 0;
    while (want[n]) {
        n++;
    }
    bool ok = w.out.spans.n == n;
    for (size_t i = 0; ok && i < n; i++) {
        size_t len = w.out.spans.a[i].end - w.out.spans.a[i].start;
        ok = len == strlen(want[i]) &&
             !memcmp((char *)w.out.text.data + w.out.spans.a[i].start, want[i], len);
    }
    if (!ok) {
        fprintf(stderr, "text '%s' gave:", text);
        for (size_t i = 0; i < w.out.spans.n; i++) {
            fprintf(stderr, " [%.*s]", (int)(w.out.spans.a[i].end - w.out.spans.a[i].start),
                    (char *)w.out.text.data + w.out.spans.a[i].start);
        }
        fprintf(stderr, "\n");
        fail_msg("unexpected words");
    }
    tb_pretok_work_release(&w);
}

static tb_pretok_t *s_split(const char *pattern, bool regex, tb_split_behavior_t b, bool invert)
{
    tb_pretok_t *p = NULL;
    char err[256] = "";
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_split(p, pattern, strlen(pattern), regex, b, invert, err,
                                         sizeof(err)),
                     0);
    return p;
}

static void test_split_behaviors(void **state)
{
    (void)state;
    const char *t = "the-final--countdown";
    tb_pretok_t *p = s_split("-", false, TB_SPLIT_REMOVED, false);
    s_check(p, t, true, (const char *[]){"the", "final", "countdown", NULL});
    tb_pretok_destroy(&p);
    p = s_split("-", false, TB_SPLIT_ISOLATED, false);
    s_check(p, t, true, (const char *[]){"the", "-", "final", "-", "-", "countdown", NULL});
    tb_pretok_destroy(&p);
    p = s_split("-", false, TB_SPLIT_MERGED_WITH_PREVIOUS, false);
    s_check(p, t, true, (const char *[]){"the-", "final-", "-", "countdown", NULL});
    tb_pretok_destroy(&p);
    p = s_split("-", false, TB_SPLIT_MERGED_WITH_NEXT, false);
    s_check(p, t, true, (const char *[]){"the", "-final", "-", "-countdown", NULL});
    tb_pretok_destroy(&p);
    p = s_split("-", false, TB_SPLIT_CONTIGUOUS, false);
    s_check(p, t, true, (const char *[]){"the", "-", "final", "--", "countdown", NULL});
    tb_pretok_destroy(&p);
    /* invert: the regex matches the words, the text between them is the delimiter. */
    p = s_split("\\w+", true, TB_SPLIT_REMOVED, true);
    s_check(p, "a  b c", true, (const char *[]){"a", "b", "c", NULL});
    tb_pretok_destroy(&p);
    p = s_split("\\s+", true, TB_SPLIT_REMOVED, true);
    s_check(p, "a  b c", true, (const char *[]){"  ", " ", NULL});
    tb_pretok_destroy(&p);
    /* A literal pattern is not a regex. */
    p = s_split(".", false, TB_SPLIT_ISOLATED, false);
    s_check(p, "a.b", true, (const char *[]){"a", ".", "b", NULL});
    tb_pretok_destroy(&p);
    /* Empty text, no words. */
    p = s_split("-", false, TB_SPLIT_ISOLATED, false);
    s_check(p, "", true, (const char *[]){NULL});
    tb_pretok_destroy(&p);
    assert_null(p);
}

static void test_byte_level(void **state)
{
    (void)state;
    tb_pretok_t *p = NULL;
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_byte_level(p, false, true), 0);
    s_check(p, "Hello world\n", true,
            (const char *[]){"Hello", "\xc4\xa0world", "\xc4\x8a", NULL});
    s_check(p, "I'm  3.5", true,
            (const char *[]){"I", "'m", "\xc4\xa0",
                             "\xc4\xa0"
                             "3",
                             ".", "5", NULL});
    s_check(p, "caf\xc3\xa9", true, (const char *[]){"caf\xc3\x83\xc2\xa9", NULL});
    tb_pretok_destroy(&p);
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_byte_level(p, true, false), 0);
    s_check(p, "Hi there", true, (const char *[]){"\xc4\xa0Hi\xc4\xa0there", NULL});
    s_check(p, " x", true, (const char *[]){"\xc4\xa0x", NULL}); /* already starts with ' ' */
    tb_pretok_destroy(&p);
}

static void test_metaspace(void **state)
{
    (void)state;
    const char *rep = "\xe2\x96\x81";
    tb_pretok_t *p = NULL;
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_metaspace(p, rep, 3, TB_PREPEND_ALWAYS, true), 0);
    s_check(p, "Hey friend!", false,
            (const char *[]){"\xe2\x96\x81Hey",
                             "\xe2\x96\x81"
                             "friend!",
                             NULL});
    s_check(p, "a  b", true,
            (const char *[]){"\xe2\x96\x81"
                             "a",
                             "\xe2\x96\x81",
                             "\xe2\x96\x81"
                             "b",
                             NULL});
    tb_pretok_destroy(&p);
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_metaspace(p, rep, 3, TB_PREPEND_FIRST, false), 0);
    s_check(p, "Hey friend", true,
            (const char *[]){"\xe2\x96\x81Hey\xe2\x96\x81"
                             "friend",
                             NULL});
    s_check(p, "Hey friend", false,
            (const char *[]){"Hey\xe2\x96\x81"
                             "friend",
                             NULL});
    tb_pretok_destroy(&p);
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_metaspace(p, rep, 3, TB_PREPEND_NEVER, true), 0);
    s_check(p, "Hey friend", true,
            (const char *[]){"Hey",
                             "\xe2\x96\x81"
                             "friend",
                             NULL});
    tb_pretok_destroy(&p);
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_metaspace(p, "", 0, TB_PREPEND_NEVER, true), TB_EINVAL);
    tb_pretok_destroy(&p);
}

static void test_digits_punctuation_whitespace(void **state)
{
    (void)state;
    tb_pretok_t *p = NULL;
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_digits(p, true), 0);
    s_check(p, "ab123c\xd9\xa3", true,
            (const char *[]){"ab", "1", "2", "3", "c", "\xd9\xa3", NULL});
    tb_pretok_destroy(&p);
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_digits(p, false), 0);
    s_check(p, "ab123c", true, (const char *[]){"ab", "123", "c", NULL});
    tb_pretok_destroy(&p);
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_punctuation(p, TB_SPLIT_ISOLATED), 0);
    s_check(p, "Hey friend!  How?!", true,
            (const char *[]){"Hey friend", "!", "  How", "?", "!", NULL});
    tb_pretok_destroy(&p);
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_punctuation(p, TB_SPLIT_CONTIGUOUS), 0);
    s_check(p, "wait...$5", true, (const char *[]){"wait", "...$", "5", NULL});
    tb_pretok_destroy(&p);
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_whitespace(p), 0);
    s_check(p, "Hey man!! ok", true, (const char *[]){"Hey", "man", "!!", "ok", NULL});
    tb_pretok_destroy(&p);
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_whitespace_split(p), 0);
    s_check(p, " Hey\tman!\xc2\x85x", true, (const char *[]){"Hey", "man!", "x", NULL});
    tb_pretok_destroy(&p);
}

/* A sequence: each step applies to every piece of the previous one. */
static void test_sequence(void **state)
{
    (void)state;
    tb_pretok_t *p = NULL;
    char err[128];
    assert_int_equal(tb_pretok_new(&p), 0);
    assert_int_equal(tb_pretok_add_split(p, " ", 1, false, TB_SPLIT_REMOVED, false, err,
                                         sizeof(err)),
                     0);
    assert_int_equal(tb_pretok_add_digits(p, true), 0);
    assert_int_equal(tb_pretok_add_byte_level(p, false, false), 0);
    s_check(p, "a12 b", true, (const char *[]){"a", "1", "2", "b", NULL});
    tb_pretok_destroy(&p);
}

static void test_regex(void **state)
{
    (void)state;
    tb_tok_regex_t *re = NULL;
    char err[256] = "";
    assert_int_equal(tb_tok_regex_new("(unclosed", 9, false, &re, err, sizeof(err)), TB_EINVAL);
    assert_null(re);
    assert_non_null(strstr(err, "(unclosed"));
    /* \s includes U+0085 (NEXT LINE), inside and outside classes; \S excludes it. */
    const char *pat = "\\s+|[\\s]|\\S+";
    assert_int_equal(tb_tok_regex_new(pat, strlen(pat), false, &re, err, sizeof(err)), 0);
    struct tb_tok_spans sp = {0};
    const char *t = "a\xc2\x85"
                    "b";
    assert_int_equal(tb_tok_regex_find_all(re, t, strlen(t), &sp), 0);
    assert_int_equal(sp.n, 3);
    assert_int_equal(sp.a[1].start, 1);
    assert_int_equal(sp.a[1].end, 3);
    tb_tok_spans_release(&sp);
    tb_tok_regex_destroy(&re);
    /* Empty matches are skipped and do not stop the scan. */
    assert_int_equal(tb_tok_regex_new("x*", 2, false, &re, err, sizeof(err)), 0);
    assert_int_equal(tb_tok_regex_find_all(re, "axxbx", 5, &sp), 0);
    assert_int_equal(sp.n, 2);
    assert_int_equal(sp.a[0].start, 1);
    assert_int_equal(sp.a[0].end, 3);
    assert_int_equal(sp.a[1].start, 4);
    tb_tok_spans_release(&sp);
    tb_tok_regex_destroy(&re);
    /* A pattern whose backtracking outgrows the JIT stack still matches (interpreter). */
    assert_int_equal(tb_tok_regex_new("(x|xy)*$", 8, false, &re, err, sizeof(err)), 0);
    size_t big = 200000;
    char *xy = malloc(big + 1);
    assert_non_null(xy);
    for (size_t i = 0; i < big; i++) {
        xy[i] = i % 2 ? 'y' : 'x';
    }
    assert_int_equal(tb_tok_regex_find_all(re, xy, big, &sp), 0);
    assert_int_equal(sp.n, 1);
    assert_int_equal(sp.a[0].end, big);
    free(xy);
    tb_tok_spans_release(&sp);
    tb_tok_regex_destroy(&re);
    /* Unicode classes. */
    assert_int_equal(tb_tok_regex_new("\\p{L}+", 6, false, &re, err, sizeof(err)), 0);
    assert_int_equal(tb_tok_regex_find_all(re, "\xe6\x97\xa5\xe6\x9c\xac 1", 8, &sp), 0);
    assert_int_equal(sp.n, 1);
    assert_int_equal(sp.a[0].end, 6);
    tb_tok_spans_release(&sp);
    tb_tok_regex_destroy(&re);
    assert_null(re);
}

static void s_norm(const tb_tok_norm_t *n, const char *in, const char *want)
{
    struct tb_buf out;
    tb_buf_init(&out);
    assert_int_equal(tb_tok_norm_apply(n, in, strlen(in), &out), 0);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal((char *)out.data, want, out.len);
    tb_buf_free(&out);
}

static void test_normalizers(void **state)
{
    (void)state;
    tb_tok_norm_t *n = NULL;
    char err[128];
    assert_int_equal(tb_tok_norm_new(&n), 0);
    assert_true(tb_tok_norm_is_empty(n));
    s_norm(n, "as is", "as is");
    assert_int_equal(tb_tok_norm_add_prepend(n, "\xe2\x96\x81", 3), 0);
    assert_int_equal(tb_tok_norm_add_replace(n, " ", 1, false, "\xe2\x96\x81", 3, err,
                                             sizeof(err)),
                     0);
    assert_false(tb_tok_norm_is_empty(n));
    s_norm(n, "Hi you", "\xe2\x96\x81Hi\xe2\x96\x81you");
    s_norm(n, "", ""); /* Prepend leaves empty text empty */
    tb_tok_norm_destroy(&n);

    assert_int_equal(tb_tok_norm_new(&n), 0);
    assert_int_equal(tb_tok_norm_add_replace(n, " {2,}", 5, true, " ", 1, err, sizeof(err)), 0);
    s_norm(n, "a    b  c d", "a b c d");
    assert_int_equal(tb_tok_norm_add_replace(n, "(", 1, true, "", 0, err, sizeof(err)),
                     TB_EINVAL);
    tb_tok_norm_destroy(&n);

    assert_int_equal(tb_tok_norm_new(&n), 0);
    assert_int_equal(tb_tok_norm_add_unicode(n, TB_TOK_NFC), 0);
    s_norm(n, "e\xcc\x81", "\xc3\xa9");
    tb_tok_norm_destroy(&n);
    assert_int_equal(tb_tok_norm_new(&n), 0);
    assert_int_equal(tb_tok_norm_add_unicode(n, TB_TOK_NFKC), 0);
    s_norm(n, "\xef\xac\x81", "fi");
    tb_tok_norm_destroy(&n);
    assert_int_equal(tb_tok_norm_new(&n), 0);
    assert_int_equal(tb_tok_norm_add_unicode(n, TB_TOK_NFD), 0);
    assert_int_equal(tb_tok_norm_add_strip_accents(n), 0);
    s_norm(n, "caf\xc3\xa9", "cafe");
    tb_tok_norm_destroy(&n);
    assert_int_equal(tb_tok_norm_new(&n), 0);
    assert_int_equal(tb_tok_norm_add_lowercase(n), 0);
    s_norm(n,
           "\xc3\x80"
           "B \xc4\xb0",
           "\xc3\xa0"
           "b i\xcc\x87");
    tb_tok_norm_destroy(&n);
    assert_int_equal(tb_tok_norm_new(&n), 0);
    assert_int_equal(tb_tok_norm_add_strip(n, true, false), 0);
    s_norm(n, " \t x \xe3\x80\x80", "x \xe3\x80\x80");
    assert_int_equal(tb_tok_norm_add_strip(n, false, true), 0);
    s_norm(n, " \t x \xe3\x80\x80", "x");
    s_norm(n, "   ", "");
    tb_tok_norm_destroy(&n);
    assert_null(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_behaviors),
        cmocka_unit_test(test_byte_level),
        cmocka_unit_test(test_metaspace),
        cmocka_unit_test(test_digits_punctuation_whitespace),
        cmocka_unit_test(test_sequence),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_normalizers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
