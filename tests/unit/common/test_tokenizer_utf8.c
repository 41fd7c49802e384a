/*
 * test_tokenizer_utf8.c - tb_tok_utf8: the byte-level alphabet, whitespace and word classes, the
 * hash; and tb_tok_ids growth.  (UTF-8 decoding and the byte buffer are the SDK's:
 * tests/unit/sdk/test_utf8.c, test_buf.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_tok_buf.h"
#include "tb_tok_utf8.h"

/* The byte-level alphabet is a bijection onto 256 printable code points. */
static void test_byte_level_alphabet(void **state)
{
    (void)state;
    assert_int_equal(tb_tok_byte_to_cp(' '), 0x120);  /* 'Ġ' */
    assert_int_equal(tb_tok_byte_to_cp('\n'), 0x10A); /* 'Ċ' */
    assert_int_equal(tb_tok_byte_to_cp('A'), 'A');
    assert_int_equal(tb_tok_byte_to_cp(0xAD), 0x143);
    assert_int_equal(tb_tok_byte_to_cp(0x7F), 0x121);
    assert_int_equal(tb_tok_byte_to_cp(0xE9), 0xE9);
    bool seen[0x200] = {false};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tb_tok_byte_to_cp((uint8_t)b);
        assert_true(cp < 0x200);
        assert_false(seen[cp]);
        seen[cp] = true;
        assert_int_equal(tb_tok_cp_to_byte(cp), b);
    }
    assert_int_equal(tb_tok_cp_to_byte(0x20), -1);
    assert_int_equal(tb_tok_cp_to_byte(0x144), -1);
    assert_int_equal(tb_tok_cp_to_byte(0x2581), -1);
}

static void test_classes_and_hash(void **state)
{
    (void)state;
    assert_true(tb_tok_is_space(' '));
    assert_true(tb_tok_is_space(0x85));
    assert_true(tb_tok_is_space(0x3000));
    assert_false(tb_tok_is_space(0x200B));
    assert_false(tb_tok_is_space('a'));
    assert_true(tb_tok_is_word_char('_'));
    assert_true(tb_tok_is_word_char(0xE9));
    assert_true(tb_tok_is_word_char(0x65E5)); /* 日 */
    assert_true(tb_tok_is_word_char(0x301));  /* combining acute */
    assert_false(tb_tok_is_word_char('-'));
    assert_false(tb_tok_is_word_char(0x1F642));
    assert_true(tb_tok_hash("abc", 3) == tb_tok_hash("abc", 3));
    assert_true(tb_tok_hash("abc", 3) != tb_tok_hash("abd", 3));
    assert_true(tb_tok_hash("abcdefghij", 10) != tb_tok_hash("abcdefghik", 10));
    assert_true(tb_tok_hash("", 0) != tb_tok_hash("a", 1));
}

static void test_ids(void **state)
{
    (void)state;
    struct tb_tok_ids v;
    tb_tok_ids_init(&v);
    for (int32_t i = 0; i < 100; i++) {
        assert_int_equal(tb_tok_ids_push(&v, i), 0);
    }
    int32_t more[3] = {7, 8, 9};
    assert_int_equal(tb_tok_ids_append(&v, more, 3), 0);
    assert_int_equal(v.len, 103);
    assert_int_equal(v.ptr[99], 99);
    assert_int_equal(v.ptr[102], 9);
    tb_tok_ids_release(&v);
    assert_null(v.ptr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_level_alphabet),
        cmocka_unit_test(test_classes_and_hash),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
