/*
 * test_utf8.c - the SDK's tb_utf8: strict decoding with maximal-subpart replacement units,
 * incomplete sequences, the lenient iterator, validation, encoding and lengths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_utf8.h"

static void s_expect(const char *bytes, size_t n, tb_utf8_status_t st, size_t len, uint32_t cp)
{
    uint32_t got_cp = 0;
    size_t got_len = 0;
    tb_utf8_status_t got = tb_utf8_decode((const uint8_t *)bytes, n, &got_cp, &got_len);
    assert_int_equal(got, st);
    assert_int_equal(got_len, len);
    if (st == TB_UTF8_OK) {
        assert_int_equal(got_cp, cp);
    }
}

static void test_decode_valid(void **state)
{
    (void)state;
    s_expect("A", 1, TB_UTF8_OK, 1, 'A');
    s_expect("\xc3\xa9", 2, TB_UTF8_OK, 2, 0xE9);
    s_expect("\xe2\x96\x81", 3, TB_UTF8_OK, 3, 0x2581);
    s_expect("\xf0\x9f\x99\x82", 4, TB_UTF8_OK, 4, 0x1F642);
    s_expect("\xf4\x8f\xbf\xbf", 4, TB_UTF8_OK, 4, 0x10FFFF);
    s_expect("\xed\x9f\xbf", 3, TB_UTF8_OK, 3, 0xD7FF);
}

/* The Unicode "maximal subpart" examples: each ill-formed piece is one replacement unit. */
static void test_decode_invalid(void **state)
{
    (void)state;
    s_expect("\x80", 1, TB_UTF8_INVALID, 1, 0);
    s_expect("\xc0\xaf", 2, TB_UTF8_INVALID, 1, 0); /* overlong lead */
    s_expect("\xc1\xbf", 2, TB_UTF8_INVALID, 1, 0);
    s_expect("\xe0\x80\xaf", 3, TB_UTF8_INVALID, 1, 0); /* E0 needs A0..BF */
    s_expect("\xed\xa0\x80", 3, TB_UTF8_INVALID, 1, 0); /* surrogate */
    s_expect("\xf0\x80\x80\x80", 4, TB_UTF8_INVALID, 1, 0);
    s_expect("\xf4\x90\x80\x80", 4, TB_UTF8_INVALID, 1, 0); /* beyond U+10FFFF */
    s_expect("\xf5\x80", 2, TB_UTF8_INVALID, 1, 0);
    s_expect("\xff", 1, TB_UTF8_INVALID, 1, 0);
    s_expect("\xe2\x82"
             "A",
             3, TB_UTF8_INVALID, 2, 0); /* truncated, then ASCII */
    s_expect("\xf0\x9f\x99"
             "A",
             4, TB_UTF8_INVALID, 3, 0);
    assert_false(tb_utf8_is_valid("ok\xe2\x82", 4));
    assert_false(tb_utf8_is_valid("\xed\xa0\x80", 3));
    assert_true(tb_utf8_is_valid("h\xc3\xa9llo \xf0\x9f\x99\x82", 11));
    assert_true(tb_utf8_is_valid("", 0));
}

static void test_decode_incomplete(void **state)
{
    (void)state;
    s_expect("\xe2", 1, TB_UTF8_INCOMPLETE, 1, 0);
    s_expect("\xe2\x82", 2, TB_UTF8_INCOMPLETE, 2, 0);
    s_expect("\xf0\x9f\x99", 3, TB_UTF8_INCOMPLETE, 3, 0);
    s_expect("\xc3", 1, TB_UTF8_INCOMPLETE, 1, 0);
    /* An impossible second byte is known to be invalid without waiting. */
    s_expect("\xe0\x80", 2, TB_UTF8_INVALID, 1, 0);
}

static void test_encode_and_lengths(void **state)
{
    (void)state;
    char out[4];
    assert_int_equal(tb_utf8_encode(0x7F, out), 1);
    assert_int_equal(tb_utf8_encode(0x7FF, out), 2);
    assert_int_equal(tb_utf8_encode(0x2581, out), 3);
    assert_memory_equal(out, "\xe2\x96\x81", 3);
    assert_int_equal(tb_utf8_encode(0x1F642, out), 4);
    assert_memory_equal(out, "\xf0\x9f\x99\x82", 4);
    assert_int_equal(tb_utf8_cp_len(0x10000), 4);
    assert_int_equal(tb_utf8_lead_len(0x41), 1);
    assert_int_equal(tb_utf8_lead_len(0x80), 1);
    assert_int_equal(tb_utf8_lead_len(0xC3), 2);
    assert_int_equal(tb_utf8_lead_len(0xE2), 3);
    assert_int_equal(tb_utf8_lead_len(0xF0), 4);
    assert_int_equal(tb_utf8_lead_len(0xFF), 1);
}

/* next() walks valid text character by character and turns each ill-formed subpart (or an
 * incomplete tail) into one U+FFFD, never reading past len. */
static void test_next(void **state)
{
    (void)state;
    const char *s = "a\xc3\xa9\xf0\x9f\x99\x82";
    size_t i = 0, n = strlen(s);
    assert_int_equal(tb_utf8_next(s, n, &i), 'a');
    assert_int_equal(i, 1);
    assert_int_equal(tb_utf8_next(s, n, &i), 0xE9);
    assert_int_equal(i, 3);
    assert_int_equal(tb_utf8_next(s, n, &i), 0x1F642);
    assert_int_equal(i, n);
    const char *bad = "\xe2\x28\xa1x\xf0\x9f";
    n = strlen(bad);
    i = 0;
    assert_int_equal(tb_utf8_next(bad, n, &i), 0xFFFD); /* E2 then '(' : subpart of 1 */
    assert_int_equal(i, 1);
    assert_int_equal(tb_utf8_next(bad, n, &i), '(');
    assert_int_equal(tb_utf8_next(bad, n, &i), 0xFFFD); /* lone continuation byte */
    assert_int_equal(tb_utf8_next(bad, n, &i), 'x');
    assert_int_equal(tb_utf8_next(bad, n, &i), 0xFFFD); /* incomplete tail, consumed whole */
    assert_int_equal(i, n);
}

static void test_validation(void **state)
{
    (void)state;
    assert_true(tb_utf8_is_valid("", 0));
    assert_true(tb_utf8_is_valid("h\xc3\xa9 \xe2\x96\x81", 7));
    assert_false(tb_utf8_is_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(tb_utf8_is_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(tb_utf8_is_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(tb_utf8_is_valid("ab\xe2\x96", 4));       /* cut */
    assert_int_equal(tb_utf8_valid_prefix("ab\xe2\x96", 4), 2);
    assert_int_equal(tb_utf8_valid_prefix("abc", 3), 3);
    assert_int_equal(tb_utf8_valid_prefix("\xff", 1), 0);
    char out[4];
    assert_int_equal(tb_utf8_encode(0xD800, out), 0);
    assert_int_equal(tb_utf8_encode(0x110000, out), 0);
    assert_int_equal(tb_utf8_encode(0x10FFFF, out), 4);
    assert_memory_equal(out, "\xf4\x8f\xbf\xbf", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_valid),
        cmocka_unit_test(test_decode_invalid),
        cmocka_unit_test(test_decode_incomplete),
        cmocka_unit_test(test_encode_and_lengths),
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
