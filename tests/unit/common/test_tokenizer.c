/*
 * test_tokenizer.c - tb_tokenizer: a small SentencePiece-style tokenizer.json built in memory
 * (byte fallback, template BOS, special and non-special added tokens with rstrip/single_word)
 * and small GGUF vocabularies of both families: encode / decode rules, accessors, loader errors;
 * the TinyStories tokenizer and the GGUF vectors when ../shared is present.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_gguf.h"
#include "tb_tokenizer.h"

/* ---- a tokenizer.json built in memory --------------------------------------------------- */

#define META "\xe2\x96\x81" /* U+2581 */

enum {
    UNK = 0,
    BOS = 1,
    EOS = 2,
    BYTE0 = 3, /* <0x00>..<0xFF> are 3..258 */
    T_META = 259,
    T_A,
    T_B,
    T_META_A,
    T_AB,
    T_META_AB,
    T_C,
    T_H,
    T_I,
    T_HI,
    T_META_HI,
    T_USER,
    T_FOO,
    N_VOCAB
};

static char *s_spm_json(void)
{
    static const char *const words[] = {META, "a", "b", META "a", "ab",     META "ab",
                                        "c",  "H", "i", "Hi",     META "Hi"};
    size_t cap = 1 << 16, n = 0;
    char *j = malloc(cap);
    assert_non_null(j);
    n += (size_t)
        snprintf(j + n, cap - n,
                 "{\"version\":\"1.0\",\"added_tokens\":["
                 "{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false},"
                 "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
                 "{\"id\":2,\"content\":\"</s>\",\"special\":true,\"normalized\":false},"
                 "{\"id\":%d,\"content\":\"<|user|>\",\"special\":true,"
                 "\"normalized\":false,\"rstrip\":true},"
                 "{\"id\":%d,\"content\":\"foo\",\"special\":false,"
                 "\"normalized\":false,\"single_word\":true}],",
                 T_USER, T_FOO);
    n += (size_t)
        snprintf(j + n, cap - n,
                 "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
                 "{\"type\":\"Prepend\",\"prepend\":\"" META "\"},"
                 "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"" META
                 "\"}]},\"pre_tokenizer\":null,"
                 "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
                 "{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                 "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],"
                 "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],"
                 "\"tokens\":[\"<s>\"]}}},"
                 "\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
                 "{\"type\":\"Replace\",\"pattern\":{\"String\":\"" META "\"},"
                 "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
                 "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},");
    n += (size_t)snprintf(j + n, cap - n,
                          "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
                          "\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2");
    for (int b = 0; b < 256; b++) {
        n += (size_t)snprintf(j + n, cap - n, ",\"<0x%02X>\":%d", b, BYTE0 + b);
    }
    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
        n += (size_t)snprintf(j + n, cap - n, ",\"%s\":%d", words[w], T_META + (int)w);
    }
    n += (size_t)snprintf(j + n, cap - n,
                          "},\"merges\":[\"" META " a\",\"a b\",\"" META "a b\",\"H i\","
                          "[\"" META "\",\"Hi\"]]}}");
    assert_true(n < cap);
    return j;
}

static tb_tokenizer_t *s_spm(void)
{
    char *json = s_spm_json();
    const char *cfg = "{\"bos_token\":\"<s>\",\"eos_token\":{\"content\":\"</s>\"},"
                      "\"model_max_length\":1000000000000000019884624838656}";
    tb_tokenizer_t *tok = NULL;
    char err[512] = "";
    int rc = tb_tokenizer_load_hf_memory(json, strlen(json), cfg, strlen(cfg), &tok, err,
                                         sizeof(err));
    if (rc != 0) {
        fail_msg("load failed: %d %s", rc, err);
    }
    free(json);
    return tok;
}

static void s_enc(const tb_tokenizer_t *tok, const char *text, bool add, bool parse,
                  const int32_t *want, size_t n)
{
    int32_t *ids = NULL;
    size_t got = 0;
    assert_int_equal(tb_tokenizer_encode(tok, text, strlen(text), add, parse, &ids, &got), 0);
    assert_non_null(ids);
    if (got != n || (n && memcmp(ids, want, n * sizeof(int32_t)))) {
        fprintf(stderr, "'%s' ->", text);
        for (size_t i = 0; i < got; i++) {
            fprintf(stderr, " %d", ids[i]);
        }
        fprintf(stderr, "\n");
        fail_msg("unexpected ids");
    }
    free(ids);
}

static void s_dec(const tb_tokenizer_t *tok, const int32_t *ids, size_t n, bool skip,
                  const char *want)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(tb_tokenizer_decode(tok, ids, n, skip, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(len, strlen(want));
    assert_string_equal(text, want);
    free(text);
}

static void test_spm_encode(void **state)
{
    (void)state;
    tb_tokenizer_t *tok = s_spm();
    s_enc(tok, "ab", true, true, (int32_t[]){BOS, T_META_AB}, 2);
    s_enc(tok, "ab", false, true, (int32_t[]){T_META_AB}, 1);
    s_enc(tok, "Hi ab", true, true, (int32_t[]){BOS, T_META_HI, T_META_AB}, 3);
    s_enc(tok, "", true, true, (int32_t[]){BOS}, 1);
    s_enc(tok, "", false, true, NULL, 0);
    /* Byte fallback for a character the vocabulary lacks. */
    s_enc(tok, "\xc3\xa9", false, true, (int32_t[]){T_META, BYTE0 + 0xC3, BYTE0 + 0xA9}, 3);
    /* A special token splits the text; each side is normalized (prefixed) on its own, and the
     * rstrip token swallows the spaces after it. */
    s_enc(tok, "a<|user|>  b", false, true, (int32_t[]){T_META_A, T_USER, T_META, T_B}, 4);
    s_enc(tok, "<s>ab", false, true, (int32_t[]){BOS, T_META_AB}, 2);
    /* parse_special false: the text is spelled out (bytes for '<', '|', ...). */
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tb_tokenizer_encode(tok, "<|user|>", 8, false, false, &ids, &n), 0);
    assert_true(n > 5);
    for (size_t i = 0; i < n; i++) {
        assert_int_not_equal(ids[i], T_USER);
    }
    free(ids);
    /* Non-special added tokens are always matched, here only as a single word. */
    s_enc(tok, "foo", false, false, (int32_t[]){T_FOO}, 1);
    s_enc(tok, "a foo", false, true, (int32_t[]){T_META_A, T_META, T_FOO}, 3);
    assert_int_equal(tb_tokenizer_encode(tok, "foob", 4, false, true, &ids, &n), 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_not_equal(ids[i], T_FOO);
    }
    free(ids);
    /* Invalid UTF-8 is refused. */
    ids = (int32_t *)&n;
    assert_int_equal(tb_tokenizer_encode(tok, "a\xff", 2, true, true, &ids, &n), TB_EINVAL);
    assert_null(ids);
    assert_int_equal(tb_tokenizer_encode(tok, "\xe2\x82", 2, true, true, &ids, &n), TB_EINVAL);
    tb_tokenizer_destroy(&tok);
    assert_null(tok);
    tb_tokenizer_destroy(&tok);
}

static void test_spm_decode_and_accessors(void **state)
{
    (void)state;
    tb_tokenizer_t *tok = s_spm();
    s_dec(tok, (int32_t[]){BOS, T_META_AB}, 2, true, "ab");
    s_dec(tok, (int32_t[]){BOS, T_META_AB}, 2, false, "<s> ab");
    s_dec(tok, (int32_t[]){T_META_HI, T_META_AB}, 2, true, "Hi ab");
    s_dec(tok, (int32_t[]){T_META, BYTE0 + 0xC3, BYTE0 + 0xA9}, 3, true, "\xc3\xa9");
    s_dec(tok, (int32_t[]){T_A, BYTE0 + 0xC3, T_B}, 3, true,
          "a\xef\xbf\xbd"
          "b");
    s_dec(tok, (int32_t[]){T_A, -5, 99999, T_B}, 4, true, "ab"); /* unknown ids ignored */
    s_dec(tok, NULL, 0, true, "");
    s_dec(tok, (int32_t[]){T_USER, T_META_A}, 2, false, "<|user|> a");

    assert_int_equal(tb_tokenizer_kind(tok), TB_TOKENIZER_SPM);
    assert_int_equal(tb_tokenizer_vocab_size(tok), N_VOCAB);
    assert_int_equal(tb_tokenizer_bos(tok), BOS);
    assert_int_equal(tb_tokenizer_eos(tok), EOS);
    assert_true(tb_tokenizer_adds_bos(tok));
    assert_false(tb_tokenizer_adds_eos(tok));
    const int32_t *eos = NULL;
    assert_int_equal(tb_tokenizer_eos_ids(tok, &eos), 1);
    assert_int_equal(eos[0], EOS);
    assert_true(tb_tokenizer_is_eos(tok, EOS));
    assert_false(tb_tokenizer_is_eos(tok, BOS));
    size_t len = 0;
    assert_string_equal(tb_tokenizer_piece(tok, T_META_AB, &len), META "ab");
    assert_int_equal(len, 5);
    assert_string_equal(tb_tokenizer_piece(tok, BYTE0 + 10, NULL), "<0x0A>");
    assert_null(tb_tokenizer_piece(tok, N_VOCAB, &len));
    assert_int_equal(tb_tokenizer_find(tok, META "Hi", 5), T_META_HI);
    assert_int_equal(tb_tokenizer_find(tok, "<|user|>", 8), T_USER);
    assert_int_equal(tb_tokenizer_find(tok, "nope", 4), -1);
    assert_true(tb_tokenizer_is_special(tok, BOS));
    assert_true(tb_tokenizer_is_special(tok, T_USER));
    assert_false(tb_tokenizer_is_special(tok, T_FOO));
    assert_false(tb_tokenizer_is_special(tok, T_A));
    assert_false(tb_tokenizer_is_special(tok, -1));
    tb_tokenizer_destroy(&tok);
}

/* Loads a variation of the JSON and expects an error code whose message names `needle`. */
static void s_bad_json(const char *json, int want, const char *needle)
{
    tb_tokenizer_t *tok = NULL;
    char err[512] = "";
    int rc = tb_tokenizer_load_hf_memory(json, strlen(json), NULL, 0, &tok, err, sizeof(err));
    if (rc != want || !strstr(err, needle)) {
        fail_msg("json %.80s: rc %d err '%s' (wanted %d, '%s')", json, rc, err, want, needle);
    }
    assert_null(tok);
}

static void test_hf_errors(void **state)
{
    (void)state;
    s_bad_json("not json", TB_EMODEL, "tokenizer.json:1");
    s_bad_json("[]", TB_EMODEL, "no model");
    s_bad_json("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", TB_ENOTSUP, "Unigram");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"vocab\":[1],\"merges\":[]}}", TB_EMODEL,
               "model.vocab");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", TB_EMODEL, "empty");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", TB_EMODEL,
               "no valid id");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":2000000000},\"merges\":[]}}",
               TB_EMODEL, "dense");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}",
               TB_EMODEL, "used twice");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a\"]}}",
               TB_EMODEL, "merges[0]");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}", TB_EMODEL,
               "merges[0]");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[1,2]]}}", TB_EMODEL,
               "merges[0]");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", TB_EMODEL,
               "merges");
    s_bad_json("{\"added_tokens\":[{\"id\":0}],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
               "\"merges\":[]}}",
               TB_EMODEL, "added_tokens[0]");
    s_bad_json("{\"normalizer\":{\"type\":\"Precompiled\"},\"model\":{\"type\":\"BPE\","
               "\"vocab\":{\"a\":0},\"merges\":[]}}",
               TB_ENOTSUP, "Precompiled");
    s_bad_json("{\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"model\":{\"type\":\"BPE\","
               "\"vocab\":{\"a\":0},\"merges\":[]}}",
               TB_ENOTSUP, "BertPreTokenizer");
    s_bad_json("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
               "\"behavior\":\"Isolated\",\"invert\":false},\"model\":{\"type\":\"BPE\","
               "\"vocab\":{\"a\":0},\"merges\":[]}}",
               TB_EMODEL, "bad regex");
    s_bad_json("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},"
               "\"behavior\":\"Sideways\"},\"model\":{\"type\":\"BPE\","
               "\"vocab\":{\"a\":0},\"merges\":[]}}",
               TB_EMODEL, "pre_tokenizer");
    s_bad_json("{\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"type\":\"BPE\","
               "\"vocab\":{\"a\":0},\"merges\":[]}}",
               TB_ENOTSUP, "WordPiece");
    s_bad_json("{\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},"
               "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"b\"}]},"
               "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
               TB_ENOTSUP, "fused");
    s_bad_json("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
               "{\"SpecialToken\":{\"id\":\"<s>\"}}],\"special_tokens\":{}},"
               "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
               TB_EMODEL, "<s>");
    s_bad_json("{\"model\":{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\","
               "\"vocab\":{\"a\":0},\"merges\":[]}}",
               TB_ENOTSUP, "continuing_subword_prefix");
    /* Deep nesting is refused rather than recursed into. */
    char deep[2048];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"normalizer\":");
    for (int i = 0; i < 20; i++) {
        n += (size_t)snprintf(deep + n, sizeof(deep) - n,
                              "{\"type\":\"Sequence\",\"normalizers\":[");
    }
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"type\":\"NFC\"}");
    for (int i = 0; i < 20; i++) {
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "]}");
    }
    snprintf(deep + n, sizeof(deep) - n,
             ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}");
    s_bad_json(deep, TB_EMODEL, "normalizer");

    /* A minimal valid file loads: no decoder joins pieces with spaces. */
    const char *ok = "{\"model\":{\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]}}";
    tb_tokenizer_t *tok = NULL;
    char err[256];
    assert_int_equal(tb_tokenizer_load_hf_memory(ok, strlen(ok), NULL, 0, &tok, err, sizeof(err)),
                     0);
    s_enc(tok, "ab", true, true, (int32_t[]){0, 1}, 2);
    s_dec(tok, (int32_t[]){0, 1, 0}, 3, false, "a b a");
    assert_int_equal(tb_tokenizer_bos(tok), -1);
    tb_tokenizer_destroy(&tok);
    /* Files that cannot be opened. */
    assert_int_equal(tb_tokenizer_load_hf("/nonexistent/tok", &tok, err, sizeof(err)), TB_ENOENT);
    assert_non_null(strstr(err, "cannot open tokenizer '/nonexistent/tok'"));
    assert_int_equal(tb_tokenizer_load("/nonexistent/x.gguf", &tok, err, sizeof(err)), TB_ENOENT);
}

/* tokenizer_config.json: added_tokens_decoder adds what tokenizer.json lacks, add_eos_token
 * appends EOS, add_bos_token false removes the template's BOS. */
static void test_hf_config(void **state)
{
    (void)state;
    const char *json = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,"
                       "\"<s>\":2,\"</s>\":3},\"merges\":[]},"
                       "\"added_tokens\":[{\"id\":2,\"content\":\"<s>\",\"special\":true}],"
                       "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
                       "{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                       "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
                       "\"special_tokens\":{\"<s>\":{\"ids\":[2]}}}}";
    const char *cfg = "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"add_bos_token\":false,"
                      "\"add_eos_token\":true,\"added_tokens_decoder\":{"
                      "\"3\":{\"content\":\"</s>\",\"special\":true},"
                      "\"4\":{\"content\":\"<out-of-range>\",\"special\":true},"
                      "\"0\":{\"content\":\"not-a\",\"special\":true}}}";
    tb_tokenizer_t *tok = NULL;
    char err[256] = "";
    if (tb_tokenizer_load_hf_memory(json, strlen(json), cfg, strlen(cfg), &tok, err,
                                    sizeof(err)) != 0) {
        fail_msg("%s", err);
    }
    assert_int_equal(tb_tokenizer_bos(tok), 2);
    assert_int_equal(tb_tokenizer_eos(tok), 3);
    assert_false(tb_tokenizer_adds_bos(tok));
    assert_true(tb_tokenizer_adds_eos(tok));
    assert_true(tb_tokenizer_is_special(tok, 3));  /* from added_tokens_decoder */
    assert_false(tb_tokenizer_is_special(tok, 0)); /* content did not match: ignored */
    s_enc(tok, "a</s>b", true, true, (int32_t[]){0, 3, 1, 3}, 4);
    s_enc(tok, "a</s>b", false, false, (int32_t[]){0, 1}, 2); /* '<', '/', ... not in vocab */
    tb_tokenizer_destroy(&tok);
}

/* ---- GGUF vocabularies built in memory -------------------------------------------------- */

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void b_put(struct buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void b_u32(struct buf *b, uint32_t v)
{
    b_put(b, &v, 4);
}

static void b_u64(struct buf *b, uint64_t v)
{
    b_put(b, &v, 8);
}

static void b_str(struct buf *b, const char *s)
{
    b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
}

static void b_kv_str(struct buf *b, const char *k, const char *v)
{
    b_str(b, k);
    b_u32(b, TB_GGUF_STRING);
    b_str(b, v);
}

static void b_kv_u32(struct buf *b, const char *k, uint32_t v)
{
    b_str(b, k);
    b_u32(b, TB_GGUF_UINT32);
    b_u32(b, v);
}

static void b_kv_strs(struct buf *b, const char *k, const char *const *v, size_t n)
{
    b_str(b, k);
    b_u32(b, TB_GGUF_ARRAY);
    b_u32(b, TB_GGUF_STRING);
    b_u64(b, n);
    for (size_t i = 0; i < n; i++) {
        b_str(b, v[i]);
    }
}

static void b_kv_arr(struct buf *b, const char *k, uint32_t type, const void *v, size_t n)
{
    b_str(b, k);
    b_u32(b, TB_GGUF_ARRAY);
    b_u32(b, type);
    b_u64(b, n);
    b_put(b, v, n * 4);
}

static int s_load_gguf(struct buf *b, tb_tokenizer_t **tok, char *err, size_t err_len)
{
    tb_gguf_t *g = NULL;
    char gerr[256];
    if (tb_gguf_open_memory(b->p, b->len, &g, gerr, sizeof(gerr)) != 0) {
        fail_msg("gguf: %s", gerr);
    }
    int rc = tb_tokenizer_load_gguf(g, tok, err, err_len);
    tb_gguf_close(&g); /* the tokenizer keeps nothing from the file */
    free(b->p);
    memset(b, 0, sizeof(*b));
    return rc;
}

/* A "llama" vocabulary: <unk> <s> </s>, byte tokens, and scored pieces. */
static const char *const s_gspm_tokens[] = {"<unk>",  "<s>",    "</s>",    "<0x0A>",
                                            "<0xC3>", "<0xA9>", META,      "a",
                                            "b",      "ab",     META "ab", "<|end|>"};

static void s_gspm(struct buf *b, const char *model, bool with_scores)
{
    size_t n = sizeof(s_gspm_tokens) / sizeof(s_gspm_tokens[0]);
    float scores[12] = {0, 0, 0, 0, 0, 0, -1, -2, -3, -4, -5, 0};
    int32_t types[12] = {2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1};
    memset(b, 0, sizeof(*b));
    b_put(b, "GGUF", 4);
    b_u32(b, 3);
    b_u64(b, 0);
    b_u64(b, with_scores ? 5 : 4);
    b_kv_str(b, "tokenizer.ggml.model", model);
    b_kv_strs(b, "tokenizer.ggml.tokens", s_gspm_tokens, n);
    if (with_scores) {
        b_kv_arr(b, "tokenizer.ggml.scores", TB_GGUF_FLOAT32, scores, n);
    }
    b_kv_arr(b, "tokenizer.ggml.token_type", TB_GGUF_INT32, types, n);
    b_kv_u32(b, "tokenizer.ggml.eos_token_id", 2);
}

static void test_gguf_spm(void **state)
{
    (void)state;
    struct buf b;
    tb_tokenizer_t *tok = NULL;
    char err[256] = "";
    s_gspm(&b, "llama", true);
    assert_int_equal(s_load_gguf(&b, &tok, err, sizeof(err)), 0);
    assert_int_equal(tb_tokenizer_kind(tok), TB_TOKENIZER_SPM);
    assert_int_equal(tb_tokenizer_bos(tok), 1); /* default */
    assert_true(tb_tokenizer_adds_bos(tok));
    s_enc(tok, "ab", true, true, (int32_t[]){1, 10}, 2);
    s_enc(tok, "ab\n\xc3\xa9", false, true, (int32_t[]){10, 3, 4, 5}, 4);
    s_enc(tok, "x", false, true, (int32_t[]){6, 0}, 2); /* no byte token for 'x': <unk> */
    /* <|end|> is control by its text (an end-of-generation token) and so special. */
    s_enc(tok, "ab<|end|>", false, true, (int32_t[]){10, 11}, 2);
    assert_true(tb_tokenizer_is_eos(tok, 11));
    assert_true(tb_tokenizer_is_eos(tok, 2));
    s_dec(tok, (int32_t[]){1, 10, 3, 4, 5, 11}, 6, true, "ab\n\xc3\xa9");
    s_dec(tok, (int32_t[]){1, 10, 11}, 3, false, "<s> ab<|end|>");
    tb_tokenizer_destroy(&tok);

    s_gspm(&b, "bert", true);
    assert_int_equal(s_load_gguf(&b, &tok, err, sizeof(err)), TB_ENOTSUP);
    assert_non_null(strstr(err, "bert"));
    assert_null(tok);
}

static void test_gguf_bpe(void **state)
{
    (void)state;
    static const char *const toks[] = {"<|endoftext|>", "H", "i", "\xc4\xa0", "Hi",
                                       "\xc4\xa0Hi",    "1", "2", "12",       "\xc4\x8a"};
    static const char *const merges[] = {"H i", "\xc4\xa0 Hi", "1 2", "broken"};
    int32_t types[10] = {3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    struct buf b = {0};
    b_put(&b, "GGUF", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 6);
    b_kv_str(&b, "tokenizer.ggml.model", "gpt2");
    b_kv_str(&b, "tokenizer.ggml.pre", "qwen2");
    b_kv_strs(&b, "tokenizer.ggml.tokens", toks, 10);
    b_kv_arr(&b, "tokenizer.ggml.token_type", TB_GGUF_INT32, types, 10);
    b_kv_strs(&b, "tokenizer.ggml.merges", merges, 4);
    b_kv_u32(&b, "tokenizer.ggml.eos_token_id", 0);
    tb_tokenizer_t *tok = NULL;
    char err[256] = "";
    assert_int_equal(s_load_gguf(&b, &tok, err, sizeof(err)), 0);
    assert_int_equal(tb_tokenizer_kind(tok), TB_TOKENIZER_BYTE_LEVEL);
    assert_false(tb_tokenizer_adds_bos(tok));
    /* qwen2 splits digits one by one: "12" never merges. */
    s_enc(tok, "Hi Hi12\n", true, true, (int32_t[]){4, 5, 6, 7, 9}, 5);
    s_enc(tok, "Hi<|endoftext|>", false, true, (int32_t[]){4, 0}, 2);
    s_dec(tok, (int32_t[]){4, 5, 6, 7, 9, 0}, 6, true, "Hi Hi12\n");
    s_dec(tok, (int32_t[]){4, 0}, 2, false, "Hi<|endoftext|>");
    tb_tokenizer_destroy(&tok);

    /* An unknown pre-tokenizer name and missing merges are errors. */
    memset(&b, 0, sizeof(b));
    b_put(&b, "GGUF", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 3);
    b_kv_str(&b, "tokenizer.ggml.model", "gpt2");
    b_kv_str(&b, "tokenizer.ggml.pre", "martian");
    b_kv_strs(&b, "tokenizer.ggml.tokens", toks, 10);
    assert_int_equal(s_load_gguf(&b, &tok, err, sizeof(err)), TB_ENOTSUP);
    assert_non_null(strstr(err, "martian"));
    memset(&b, 0, sizeof(b));
    b_put(&b, "GGUF", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 2);
    b_kv_str(&b, "tokenizer.ggml.model", "gpt2");
    b_kv_strs(&b, "tokenizer.ggml.tokens", toks, 10);
    assert_int_equal(s_load_gguf(&b, &tok, err, sizeof(err)), TB_EMODEL);
    assert_non_null(strstr(err, "merges"));
    /* Counts that disagree with the token list. */
    memset(&b, 0, sizeof(b));
    b_put(&b, "GGUF", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 3);
    b_kv_str(&b, "tokenizer.ggml.model", "llama");
    b_kv_strs(&b, "tokenizer.ggml.tokens", toks, 10);
    b_kv_arr(&b, "tokenizer.ggml.scores", TB_GGUF_FLOAT32, types, 3);
    assert_int_equal(s_load_gguf(&b, &tok, err, sizeof(err)), TB_EMODEL);
    assert_non_null(strstr(err, "scores"));
    /* No tokenizer at all. */
    memset(&b, 0, sizeof(b));
    b_put(&b, "GGUF", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 0);
    assert_int_equal(s_load_gguf(&b, &tok, err, sizeof(err)), TB_EMODEL);
    assert_null(tok);
}

/* ---- threads ---------------------------------------------------------------------------- */

struct job {
    const tb_tokenizer_t *tok;
    int failures;
};

static void *s_worker(void *arg)
{
    struct job *j = arg;
    static const char *const texts[] = {"Hi ab", "a<|user|>  b", "\xc3\xa9 foo ab", "ab ab ab"};
    int32_t *ref[4];
    size_t ref_n[4];
    for (int t = 0; t < 4; t++) {
        if (tb_tokenizer_encode(j->tok, texts[t], strlen(texts[t]), true, true, &ref[t],
                                &ref_n[t]) != 0) {
            j->failures++;
            return NULL;
        }
    }
    for (int round = 0; round < 2000; round++) {
        int t = round % 4;
        int32_t *ids = NULL;
        size_t n = 0;
        if (tb_tokenizer_encode(j->tok, texts[t], strlen(texts[t]), true, true, &ids, &n) != 0 ||
            n != ref_n[t] || memcmp(ids, ref[t], n * sizeof(int32_t)) != 0) {
            j->failures++;
        }
        char *text = NULL;
        size_t len = 0;
        if (tb_tokenizer_decode(j->tok, ids, n, true, &text, &len) != 0) {
            j->failures++;
        }
        free(text);
        free(ids);
    }
    for (int t = 0; t < 4; t++) {
        free(ref[t]);
    }
    return NULL;
}

/* One tokenizer, several threads encoding and decoding at once, same results. */
static void test_threads(void **state)
{
    (void)state;
    tb_tokenizer_t *tok = s_spm();
    pthread_t th[4];
    struct job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].tok = tok;
        jobs[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, s_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(jobs[i].failures, 0);
    }
    tb_tokenizer_destroy(&tok);
}

/* ---- shared models ------------------------------------------------------------------------ */

static void test_tinystories(void **state)
{
    (void)state;
    const char *root = getenv("TB_ROOT");
    char path[1024];
    snprintf(path, sizeof(path), "%s/../shared/models/tinystories-656k", root ? root : ".");
    if (access(path, R_OK) != 0) {
        printf("# skip: %s absent\n", path);
        skip();
    }
    tb_tokenizer_t *tok = NULL;
    char err[512];
    if (tb_tokenizer_load(path, &tok, err, sizeof(err)) != 0) {
        fail_msg("%s", err);
    }
    /* Ids checked against Hugging Face tokenizers. */
    s_enc(tok, "Once upon a time", true, true, (int32_t[]){1, 80, 147, 201, 282, 57}, 6);
    s_dec(tok, (int32_t[]){1, 80, 147, 201, 282, 57}, 6, true, "Once upon a time");
    assert_int_equal(tb_tokenizer_vocab_size(tok), 2048);
    assert_int_equal(tb_tokenizer_eos(tok), 2);
    assert_string_equal(tb_tokenizer_piece(tok, 2, NULL), "<|end_story|>");
    tb_tokenizer_destroy(&tok);
}

static void test_gguf_vector_file(void **state)
{
    (void)state;
    const char *root = getenv("TB_ROOT");
    char path[1024];
    snprintf(path, sizeof(path), "%s/../shared/tokenizer-vectors/ggml-vocab-gpt-2.gguf",
             root ? root : ".");
    if (access(path, R_OK) != 0) {
        printf("# skip: %s absent\n", path);
        skip();
    }
    tb_tokenizer_t *tok = NULL;
    char err[512];
    if (tb_tokenizer_load(path, &tok, err, sizeof(err)) != 0) {
        fail_msg("%s", err);
    }
    /* First lines of ggml-vocab-gpt-2.gguf.out. */
    s_enc(tok, "Hello world", false, false, (int32_t[]){15496, 995}, 2);
    s_enc(tok, " Hello World!", false, false, (int32_t[]){18435, 2159, 0}, 3);
    s_enc(tok, "   ", false, false, (int32_t[]){220, 220, 220}, 3);
    tb_tokenizer_destroy(&tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_encode),       cmocka_unit_test(test_spm_decode_and_accessors),
        cmocka_unit_test(test_hf_errors),        cmocka_unit_test(test_hf_config),
        cmocka_unit_test(test_gguf_spm),         cmocka_unit_test(test_gguf_bpe),
        cmocka_unit_test(test_threads),          cmocka_unit_test(test_tinystories),
        cmocka_unit_test(test_gguf_vector_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
