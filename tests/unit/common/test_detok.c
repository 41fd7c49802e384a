/*
 * test_detok.c - tb_detok: chunks are whole UTF-8 characters released at their last byte,
 * ill-formed bytes become U+FFFD (at once, or at flush when incomplete), special tokens, the
 * SentencePiece leading-space rules (start of text, continuation, prompt prefix), reuse after
 * flush, and pushes + flush == tb_tokenizer_decode on random id sequences.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_detok.h"
#include "tb_errors.h"
#include "tb_tok_utf8.h"
#include "tb_tokenizer.h"

#define META "\xe2\x96\x81"
#define FFFD "\xef\xbf\xbd"
#define EOT 256

/* Byte-level: one token per byte (id = byte value), plus a special <|eot|>. */
static tb_tokenizer_t *s_byte_level(void)
{
    size_t cap = 1 << 14, n = 0;
    char *j = malloc(cap);
    assert_non_null(j);
    n += (size_t)snprintf(j + n, cap - n,
                          "{\"added_tokens\":[{\"id\":%d,\"content\":\"<|eot|>\","
                          "\"special\":true,\"normalized\":false}],"
                          "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
                          "\"decoder\":{\"type\":\"ByteLevel\"},"
                          "\"model\":{\"type\":\"BPE\",\"merges\":[],\"vocab\":{",
                          EOT);
    for (int b = 0; b < 256; b++) {
        char u[5] = {0};
        tb_utf8_encode(tb_tok_byte_to_cp((uint8_t)b), u);
        n += (size_t)snprintf(j + n, cap - n, "%s\"%s%s\":%d", b ? "," : "",
                              (u[0] == '"' || u[0] == '\\') ? "\\" : "", u, b);
    }
    n += (size_t)snprintf(j + n, cap - n, "}}}");
    assert_true(n < cap);
    tb_tokenizer_t *tok = NULL;
    char err[256] = "";
    if (tb_tokenizer_load_hf_memory(j, n, NULL, 0, &tok, err, sizeof(err)) != 0) {
        fail_msg("%s", err);
    }
    free(j);
    return tok;
}

enum { S_BOS, S_HELLO, S_WORLD, S_E6, S_97, S_A5, S_META, S_FF, S_N };

/* SentencePiece style with Llama's decoder (Replace, ByteFallback, Fuse, Strip). */
static tb_tokenizer_t *s_spm(bool metaspace_decoder)
{
    char j[2048];
    snprintf(j, sizeof(j),
             "{\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"special\":true,"
             "\"normalized\":false}],"
             "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
             "{\"type\":\"Prepend\",\"prepend\":\"" META "\"},"
             "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"" META "\"}]},"
             "\"decoder\":%s,"
             "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"merges\":[],\"vocab\":{"
             "\"<s>\":0,\"" META "Hello\":1,\"" META "world\":2,\"<0xE6>\":3,\"<0x97>\":4,"
             "\"<0xA5>\":5,\"" META "\":6,\"<0xFF>\":7}}}",
             metaspace_decoder
                 ? "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},"
                   "{\"type\":\"Metaspace\",\"replacement\":\"" META "\","
                   "\"prepend_scheme\":\"always\",\"split\":true}]}"
                 : "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\","
                   "\"pattern\":{\"String\":\"" META "\"},\"content\":\" \"},"
                   "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
                   "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}");
    tb_tokenizer_t *tok = NULL;
    char err[256] = "";
    if (tb_tokenizer_load_hf_memory(j, strlen(j), NULL, 0, &tok, err, sizeof(err)) != 0) {
        fail_msg("%s", err);
    }
    return tok;
}

static void s_push(tb_detok_t *d, int32_t id, const char *want)
{
    const char *text = NULL;
    size_t len = 99;
    assert_int_equal(tb_detok_push(d, id, &text, &len), 0);
    assert_non_null(text);
    if (len != strlen(want) || memcmp(text, want, len)) {
        fail_msg("push %d gave '%.*s', wanted '%s'", id, (int)len, text, want);
    }
}

static void s_flush(tb_detok_t *d, const char *want)
{
    const char *text = NULL;
    size_t len = 99;
    assert_int_equal(tb_detok_flush(d, &text, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(text, want, len);
}

static void test_whole_characters(void **state)
{
    (void)state;
    tb_tokenizer_t *tok = s_byte_level();
    tb_detok_t *d = NULL;
    assert_int_equal(tb_detok_new(tok, true, &d), 0);
    /* 日 = E6 97 A5, 🙂 = F0 9F 99 82 */
    s_push(d, 0xE6, "");
    s_push(d, 0x97, "");
    s_push(d, 0xA5, "\xe6\x97\xa5");
    s_push(d, ' ', " ");
    s_push(d, 0xF0, "");
    s_push(d, 0x9F, "");
    s_push(d, 0x99, "");
    s_push(d, 0x82, "\xf0\x9f\x99\x82");
    s_push(d, 'o', "o");
    /* Ill-formed: a lone continuation byte and an invalid lead are replaced at once. */
    s_push(d, 0x80, FFFD);
    s_push(d, 0xFF, FFFD);
    /* A truncated sequence is replaced when the next byte shows it cannot continue. */
    s_push(d, 0xE6, "");
    s_push(d, 'A', FFFD "A");
    s_push(d, 0xE6, "");
    s_push(d, 0x97, "");
    s_push(d, 0xE6, FFFD); /* E6 97 then a new lead: the first two bytes are one unit */
    s_push(d, 0x97, "");
    s_flush(d, FFFD); /* incomplete at the end */
    /* Special tokens and ids outside the vocabulary. */
    s_push(d, EOT, "");
    s_push(d, 99999, "");
    s_push(d, -1, "");
    s_flush(d, "");
    tb_detok_destroy(&d);
    assert_null(d);
    tb_detok_destroy(&d);

    assert_int_equal(tb_detok_new(tok, false, &d), 0);
    s_push(d, 'a', "a");
    s_push(d, 0xE6, "");
    s_push(d, EOT, FFFD "<|eot|>");
    s_flush(d, "");
    tb_detok_destroy(&d);
    tb_tokenizer_destroy(&tok);
}

static void test_leading_space(void **state)
{
    (void)state;
    tb_tokenizer_t *tok = s_spm(false);
    tb_detok_t *d = NULL;
    assert_int_equal(tb_detok_new(tok, true, &d), 0);
    /* Start of text: the space the encoder prepended is dropped, later ones are kept. */
    s_push(d, S_HELLO, "Hello");
    s_push(d, S_WORLD, " world");
    s_flush(d, "");
    /* A skipped BOS does not count as text: the first real token still loses its space. */
    s_push(d, S_BOS, "");
    s_push(d, S_HELLO, "Hello");
    s_flush(d, "");
    /* A lone "▁" first: its space is the one dropped; the next token keeps its own. */
    s_push(d, S_META, "");
    s_push(d, S_HELLO, " Hello");
    s_flush(d, "");
    /* Byte tokens after the start. */
    s_push(d, S_E6, "");
    s_push(d, S_97, "");
    s_push(d, S_A5, "\xe6\x97\xa5");
    s_push(d, S_FF, FFFD);
    s_flush(d, "");
    /* Continuation of existing text keeps the space. */
    assert_int_equal(tb_detok_set_continuation(d), 0);
    s_push(d, S_HELLO, " Hello");
    assert_int_equal(tb_detok_set_continuation(d), TB_EINVAL);
    assert_int_equal(tb_detok_set_prefix(d, NULL, 0), TB_EINVAL);
    s_flush(d, "");
    /* A prompt prefix: text before -> keep; only a skipped BOS before -> drop. */
    int32_t prompt[2] = {S_BOS, S_HELLO};
    assert_int_equal(tb_detok_set_prefix(d, prompt, 2), 0);
    s_push(d, S_WORLD, " world");
    s_flush(d, "");
    assert_int_equal(tb_detok_set_prefix(d, prompt, 1), 0);
    s_push(d, S_WORLD, "world");
    s_flush(d, "");
    /* A prompt that ends inside a character: its bytes wait for the stream. */
    int32_t split[3] = {S_HELLO, S_E6, S_97};
    assert_int_equal(tb_detok_set_prefix(d, split, 3), 0);
    s_push(d, S_A5, "\xe6\x97\xa5");
    s_flush(d, "");
    tb_detok_destroy(&d);

    /* Without skipping, BOS is the first token and the space of "▁Hello" stays. */
    assert_int_equal(tb_detok_new(tok, false, &d), 0);
    s_push(d, S_BOS, "<s>");
    s_push(d, S_HELLO, " Hello");
    s_flush(d, "");
    tb_detok_destroy(&d);
    tb_tokenizer_destroy(&tok);

    /* The Metaspace decoder drops the replacement in the first token only. */
    tok = s_spm(true);
    assert_int_equal(tb_detok_new(tok, true, &d), 0);
    s_push(d, S_HELLO, "Hello");
    s_push(d, S_WORLD, " world");
    s_flush(d, "");
    tb_detok_destroy(&d);
    tb_tokenizer_destroy(&tok);
}

/* Pushes + flush always equal tb_tokenizer_decode, and every chunk is valid UTF-8. */
static void s_property(tb_tokenizer_t *tok, int32_t n_ids, unsigned seed)
{
    srand(seed);
    for (int round = 0; round < 300; round++) {
        int32_t ids[24];
        size_t n = (size_t)(rand() % 24);
        for (size_t i = 0; i < n; i++) {
            ids[i] = rand() % (n_ids + 2) - 1;
        }
        for (int skip = 0; skip < 2; skip++) {
            char *want = NULL;
            size_t want_len = 0;
            assert_int_equal(tb_tokenizer_decode(tok, ids, n, skip, &want, &want_len), 0);
            assert_true(tb_utf8_is_valid(want, want_len));
            tb_detok_t *d = NULL;
            assert_int_equal(tb_detok_new(tok, skip, &d), 0);
            char got[1024];
            size_t got_len = 0;
            const char *t = NULL;
            size_t len = 0;
            for (size_t i = 0; i <= n; i++) {
                if (i < n) {
                    assert_int_equal(tb_detok_push(d, ids[i], &t, &len), 0);
                } else {
                    assert_int_equal(tb_detok_flush(d, &t, &len), 0);
                }
                assert_true(tb_utf8_is_valid(t, len));
                assert_true(got_len + len < sizeof(got));
                memcpy(got + got_len, t, len);
                got_len += len;
            }
            assert_int_equal(got_len, want_len);
            assert_memory_equal(got, want, want_len);
            tb_detok_destroy(&d);
            free(want);
        }
    }
}

static void test_stream_equals_decode(void **state)
{
    (void)state;
    tb_tokenizer_t *tok = s_byte_level();
    s_property(tok, 257, 1);
    tb_tokenizer_destroy(&tok);
    tok = s_spm(false);
    s_property(tok, S_N, 2);
    tb_tokenizer_destroy(&tok);
    tok = s_spm(true);
    s_property(tok, S_N, 3);
    tb_tokenizer_destroy(&tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_characters),
        cmocka_unit_test(test_leading_space),
        cmocka_unit_test(test_stream_equals_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
