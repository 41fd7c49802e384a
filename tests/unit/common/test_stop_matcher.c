/* Unit tests of the stop-string matcher: matches across pieces, holding back only possible
 * prefixes, earliest match winning, UTF-8 kept whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tb_stop_matcher.h"

/* Feeds pieces; returns the released text and whether a stop matched. */
static int feed(tb_stop_matcher_t *m, const char *const *pieces, size_t n, char *out,
                size_t out_len, bool flush)
{
    size_t k = 0;
    int stopped = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && !stopped; i++) {
        const char *o;
        size_t ol;
        stopped = tb_stop_matcher_push(m, pieces[i], strlen(pieces[i]), &o, &ol);
        assert_true(stopped >= 0);
        assert_true(k + ol < out_len);
        memcpy(out + k, o, ol);
        k += ol;
        out[k] = 0;
    }
    if (flush && !stopped) {
        const char *o;
        size_t ol;
        tb_stop_matcher_flush(m, &o, &ol);
        memcpy(out + k, o, ol);
        k += ol;
        out[k] = 0;
    }
    return stopped;
}

static void test_across_pieces(void **state)
{
    (void)state;
    const char *stops[] = {"\n\nUser:"};
    tb_stop_matcher_t *m;
    assert_int_equal(tb_stop_matcher_new(stops, 1, &m), 0);
    const char *pieces[] = {"Hello", " there", "\n", "\nUs", "er", ": more"};
    char out[256];
    assert_int_equal(feed(m, pieces, 6, out, sizeof(out), true), 1);
    assert_string_equal(out, "Hello there");
    assert_int_equal(tb_stop_matcher_which(m), 0);
    /* nothing more after a stop */
    const char *o;
    size_t ol;
    assert_int_equal(tb_stop_matcher_push(m, "x", 1, &o, &ol), 1);
    assert_int_equal(ol, 0);
    tb_stop_matcher_destroy(&m);
    assert_null(m);
}

static void test_false_start_released(void **state)
{
    (void)state;
    const char *stops[] = {"END"};
    tb_stop_matcher_t *m;
    assert_int_equal(tb_stop_matcher_new(stops, 1, &m), 0);
    const char *o;
    size_t ol;
    assert_int_equal(tb_stop_matcher_push(m, "the EN", 6, &o, &ol), 0);
    assert_int_equal(ol, 4); /* "EN" held back */
    assert_int_equal(tb_stop_matcher_push(m, "D", 1, &o, &ol), 1);
    assert_int_equal(ol, 0);
    tb_stop_matcher_destroy(&m);

    assert_int_equal(tb_stop_matcher_new(stops, 1, &m), 0);
    const char *pieces[] = {"the EN", "TRY", " is open"};
    char out[256];
    assert_int_equal(feed(m, pieces, 3, out, sizeof(out), true), 0);
    assert_string_equal(out, "the ENTRY is open");
    tb_stop_matcher_destroy(&m);
}

static void test_earliest_match_wins(void **state)
{
    (void)state;
    const char *stops[] = {"world", "lo w", ""};
    tb_stop_matcher_t *m;
    assert_int_equal(tb_stop_matcher_new(stops, 3, &m), 0);
    const char *pieces[] = {"hello world"};
    char out[64];
    assert_int_equal(feed(m, pieces, 1, out, sizeof(out), true), 1);
    assert_string_equal(out, "hel");
    assert_int_equal(tb_stop_matcher_which(m), 1);
    tb_stop_matcher_destroy(&m);
}

static void test_no_stops_passes_through(void **state)
{
    (void)state;
    tb_stop_matcher_t *m;
    assert_int_equal(tb_stop_matcher_new(NULL, 0, &m), 0);
    const char *pieces[] = {"a", "b\n", "c"};
    char out[64];
    assert_int_equal(feed(m, pieces, 3, out, sizeof(out), false), 0);
    assert_string_equal(out, "ab\nc");
    tb_stop_matcher_destroy(&m);
}

static void test_utf8_kept_whole(void **state)
{
    (void)state;
    const char *stops[] = {"\xc3\xa9t\xc3\xa9"}; /* "été" */
    tb_stop_matcher_t *m;
    assert_int_equal(tb_stop_matcher_new(stops, 1, &m), 0);
    const char *o;
    size_t ol;
    assert_int_equal(tb_stop_matcher_push(m, "caf\xc3\xa9", 5, &o, &ol), 0);
    assert_int_equal(ol, 3); /* "é" held: it could start "été" */
    assert_memory_equal(o, "caf", 3);
    assert_int_equal(tb_stop_matcher_push(m, "!", 1, &o, &ol), 0);
    assert_int_equal(ol, 3);
    assert_memory_equal(o, "\xc3\xa9!", 3);
    tb_stop_matcher_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_across_pieces),
        cmocka_unit_test(test_false_start_released),
        cmocka_unit_test(test_earliest_match_wins),
        cmocka_unit_test(test_no_stops_passes_through),
        cmocka_unit_test(test_utf8_kept_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
