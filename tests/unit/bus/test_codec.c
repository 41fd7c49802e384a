/* Unit tests of the generated schema codecs: round trips of every message shape, refusal of
 * malformed, truncated, mistyped, newer and oversized input, unknown keys skipped, the layouts of
 * older schema minors (strides, sizes), stable ids and the peer schema check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "tb_buf.h"
#include "tb_codec.h"

static void test_gen_request_round_trip(void **state)
{
    (void)state;
    struct tb_msg_chat_message msgs[2] = {{.role = "system", .content = "be brief"},
                                          {.role = "user",
                                           .content = "h\xc3\xa9llo",
                                           .name = "u"}};
    const char *stops[2] = {"\n\n", "END"};
    int32_t toks[3] = {1, -5, 2147483647};
    struct tb_msg_gen_request q = {.request_id = "chatcmpl-1", .model = "m", .mode = "chat"};
    q.messages = msgs;
    q.messages_count = 2;
    q.stop = stops;
    q.stop_count = 2;
    q.tokens = toks;
    q.tokens_count = 3;
    q.temperature = 0.7;
    q.has_temperature = true;
    q.max_tokens = 16;
    q.has_max_tokens = true;
    q.seed = -3;
    q.has_seed = true;
    q.ignore_eos = false;
    q.has_ignore_eos = true;
    struct tb_buf b = {0};
    assert_int_equal(tb_codec_encode(TB_MSG_GEN_REQUEST, &q, &b), 0);
    void *out = NULL;
    char err[256];
    assert_int_equal(tb_codec_decode(TB_MSG_GEN_REQUEST, b.data, b.len, &out, err, sizeof(err)),
                     0);
    struct tb_msg_gen_request *r = out;
    assert_string_equal(r->request_id, "chatcmpl-1");
    assert_string_equal(r->mode, "chat");
    assert_int_equal(r->messages_count, 2);
    assert_string_equal(r->messages[1].content, "h\xc3\xa9llo");
    assert_string_equal(r->messages[1].name, "u");
    assert_null(r->messages[0].name);
    assert_int_equal(r->stop_count, 2);
    assert_string_equal(r->stop[1], "END");
    assert_int_equal(r->tokens_count, 3);
    assert_int_equal(r->tokens[1], -5);
    assert_int_equal(r->tokens[2], 2147483647);
    assert_true(r->has_temperature);
    assert_true(r->temperature == 0.7);
    assert_true(r->has_seed);
    assert_int_equal(r->seed, -3);
    assert_true(r->has_ignore_eos);
    assert_false(r->ignore_eos);
    assert_false(r->has_top_p);
    assert_null(r->prompt);
    tb_codec_free(&out);
    assert_null(out);
    tb_buf_free(&b);
}

static void test_nested_and_u64(void **state)
{
    (void)state;
    struct tb_msg_top_logprob tops[2] = {{.token_id = 5, .logprob = -0.5, .text = "a"},
                                         {.token_id = 6, .logprob = -1.5}};
    struct tb_msg_token_logprob lp = {.token_id = 5,
                                      .logprob = -0.5,
                                      .top = tops,
                                      .top_count = 2};
    struct tb_msg_usage u = {.prompt_tokens = 3, .completion_tokens = 4};
    struct tb_msg_gen_chunk c = {
        .text = "x", .logprobs = &lp, .logprobs_count = 1, .finish_reason = "stop", .usage = &u};
    struct tb_buf b = {0};
    assert_int_equal(tb_codec_encode(TB_MSG_GEN_CHUNK, &c, &b), 0);
    void *out = NULL;
    assert_int_equal(tb_codec_decode(TB_MSG_GEN_CHUNK, b.data, b.len, &out, NULL, 0), 0);
    struct tb_msg_gen_chunk *r = out;
    assert_int_equal(r->logprobs_count, 1);
    assert_int_equal(r->logprobs[0].top_count, 2);
    assert_null(r->logprobs[0].top[1].text);
    assert_true(r->logprobs[0].top[1].logprob == -1.5);
    assert_int_equal(r->usage->completion_tokens, 4);
    assert_false(r->usage->has_cached_tokens);
    tb_codec_free(&out);
    tb_buf_free(&b);

    uint64_t ids[2] = {UINT64_MAX - 1, 1};
    struct tb_msg_kv_event kv = {.instance_id = UINT64_MAX,
                                 .block_size = 16,
                                 .stored = ids,
                                 .stored_count = 2};
    assert_int_equal(tb_codec_encode(TB_MSG_KV_EVENT, &kv, &b), 0);
    assert_int_equal(tb_codec_decode(TB_MSG_KV_EVENT, b.data, b.len, &out, NULL, 0), 0);
    struct tb_msg_kv_event *k = out;
    assert_true(k->instance_id == UINT64_MAX);
    assert_true(k->stored[0] == UINT64_MAX - 1);
    tb_codec_free(&out);
    tb_buf_free(&b);
}

static void test_encode_refuses_missing_required(void **state)
{
    (void)state;
    struct tb_msg_gen_request q = {.request_id = "x", .model = NULL, .mode = "chat"};
    struct tb_buf b = {0};
    assert_int_equal(tb_codec_encode(TB_MSG_GEN_REQUEST, &q, &b), TB_EINVAL);
    assert_int_equal(b.len, 0);
    assert_int_equal(tb_codec_encode((tb_msg_type_t)0, &q, &b), TB_EINVAL);
    assert_int_equal(tb_codec_encode(TB_MSG__COUNT, &q, &b), TB_EINVAL);
    tb_buf_free(&b);
}

static void test_truncated_at_every_byte(void **state)
{
    (void)state;
    struct tb_msg_usage u = {.prompt_tokens = 300, .completion_tokens = 70000};
    struct tb_msg_gen_chunk c = {.text = "hello world", .finish_reason = "length", .usage = &u};
    struct tb_buf b = {0};
    assert_int_equal(tb_codec_encode(TB_MSG_GEN_CHUNK, &c, &b), 0);
    for (size_t n = 0; n < b.len; n++) {
        /* A heap copy of exactly n bytes, so ASan catches any read past it. */
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, b.data, n);
        void *out = (void *)1;
        char err[256] = "";
        assert_int_equal(tb_codec_decode(TB_MSG_GEN_CHUNK, p, n, &out, err, sizeof(err)),
                         TB_EPROTO);
        assert_null(out);
        assert_true(strlen(err) > 0);
        free(p);
    }
    tb_buf_free(&b);
}

/* Packs a map built by the caller through msgpack-c and decodes it as `type`. */
static int decode_packed(tb_msg_type_t type, msgpack_sbuffer *sb, char *err, size_t err_len)
{
    void *out = NULL;
    int rc = tb_codec_decode(type, sb->data, sb->size, &out, err, err_len);
    tb_codec_free(&out);
    msgpack_sbuffer_destroy(sb);
    return rc;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void test_refusals(void **state)
{
    (void)state;
    char err[256];
    msgpack_sbuffer sb;
    msgpack_packer pk;

    /* not a map */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 0);
    assert_int_equal(decode_packed(TB_MSG_USAGE, &sb, err, sizeof(err)), TB_EPROTO);
    assert_non_null(strstr(err, "expected a map"));

    /* no version */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "prompt_tokens");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "completion_tokens");
    msgpack_pack_int(&pk, 1);
    assert_int_equal(decode_packed(TB_MSG_USAGE, &sb, err, sizeof(err)), TB_EPROTO);
    assert_non_null(strstr(err, "no version"));

    /* newer version */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, 99);
    pack_str(&pk, "prompt_tokens");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "completion_tokens");
    msgpack_pack_int(&pk, 1);
    assert_int_equal(decode_packed(TB_MSG_USAGE, &sb, err, sizeof(err)), TB_EPROTO);
    /* both versions named, and what to upgrade */
    assert_non_null(strstr(err, "message 'usage' is version 99, newer than version 1"));
    assert_non_null(strstr(err, "upgrade it to a build that knows usage version 99"));
}

/* An unknown key is an optional field of a newer minor: skipped, whatever its value. */
static void test_unknown_keys_skipped(void **state)
{
    (void)state;
    char err[256];
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "prompt_tokens");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "bogus");
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "deep");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "x");
    pack_str(&pk, "completion_tokens");
    msgpack_pack_int(&pk, 2);
    pack_str(&pk, "later");
    msgpack_pack_nil(&pk);
    void *um = NULL;
    assert_int_equal(tb_codec_decode(TB_MSG_USAGE, sb.data, sb.size, &um, err, sizeof(err)), 0);
    assert_int_equal(((struct tb_msg_usage *)um)->prompt_tokens, 1);
    assert_int_equal(((struct tb_msg_usage *)um)->completion_tokens, 2);
    assert_false(((struct tb_msg_usage *)um)->has_cached_tokens);
    tb_codec_free(&um);
    msgpack_sbuffer_destroy(&sb);
}

static void test_refusals_fields(void **state)
{
    (void)state;
    char err[256];
    msgpack_sbuffer sb;
    msgpack_packer pk;

    /* wrong type */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "prompt_tokens");
    pack_str(&pk, "three");
    pack_str(&pk, "completion_tokens");
    msgpack_pack_int(&pk, 1);
    assert_int_equal(decode_packed(TB_MSG_USAGE, &sb, err, sizeof(err)), TB_EPROTO);
    assert_non_null(strstr(err, "prompt_tokens"));

    /* missing required */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "prompt_tokens");
    msgpack_pack_int(&pk, 1);
    assert_int_equal(decode_packed(TB_MSG_USAGE, &sb, err, sizeof(err)), TB_EPROTO);
    assert_non_null(strstr(err, "completion_tokens"));

    /* duplicate key */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "prompt_tokens");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "prompt_tokens");
    msgpack_pack_int(&pk, 2);
    pack_str(&pk, "completion_tokens");
    msgpack_pack_int(&pk, 1);
    assert_int_equal(decode_packed(TB_MSG_USAGE, &sb, err, sizeof(err)), TB_EPROTO);
    assert_non_null(strstr(err, "twice"));

    /* NUL inside a string */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "seq");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "op");
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "a\0b", 3);
    pack_str(&pk, "process_id");
    pack_str(&pk, "p");
    assert_int_equal(decode_packed(TB_MSG_REG_REQUEST, &sb, err, sizeof(err)), TB_EPROTO);
    assert_non_null(strstr(err, "NUL"));

    /* int32 array element out of range */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "model");
    pack_str(&pk, "m");
    pack_str(&pk, "kind");
    pack_str(&pk, "tokens");
    pack_str(&pk, "tokens");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int64(&pk, (int64_t)1 << 40);
    assert_int_equal(decode_packed(TB_MSG_ROUTE_QUERY, &sb, err, sizeof(err)), TB_EPROTO);
    assert_non_null(strstr(err, "32-bit"));

    /* trailing bytes */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "v");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "prompt_tokens");
    msgpack_pack_int(&pk, 1);
    pack_str(&pk, "completion_tokens");
    msgpack_pack_int(&pk, 1);
    msgpack_pack_nil(&pk);
    assert_int_equal(decode_packed(TB_MSG_USAGE, &sb, err, sizeof(err)), TB_EPROTO);
    assert_non_null(strstr(err, "trailing"));
}

static void test_huge_declared_counts_refused_cheaply(void **state)
{
    (void)state;
    /* array32 claiming 4 billion elements, then a map32 claiming as many pairs: a few bytes of
     * input must not make the decoder allocate gigabytes. */
    const uint8_t arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    const uint8_t map[] = {0xdf, 0x0f, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01};
    const uint8_t str[] = {0xdb, 0x7f, 0xff, 0xff, 0xff, 'x'};
    void *out = NULL;
    char err[256];
    assert_int_equal(tb_codec_decode(TB_MSG_USAGE, arr, sizeof(arr), &out, err, sizeof(err)),
                     TB_EPROTO);
    assert_int_equal(tb_codec_decode(TB_MSG_USAGE, map, sizeof(map), &out, err, sizeof(err)),
                     TB_EPROTO);
    assert_int_equal(tb_codec_decode(TB_MSG_USAGE, str, sizeof(str), &out, err, sizeof(err)),
                     TB_EPROTO);
    assert_null(out);
    assert_int_equal(tb_codec_decode(TB_MSG_USAGE, NULL, 0, &out, err, sizeof(err)), TB_EPROTO);
    assert_int_equal(tb_codec_decode((tb_msg_type_t)999, arr, sizeof(arr), &out, err,
                                     sizeof(err)),
                     TB_EINVAL);
}

static void test_every_type_has_a_name_and_version(void **state)
{
    (void)state;
    for (int t = 1; t < TB_MSG__COUNT; t++) {
        if (!tb_msg_descs[t]) {
            continue; /* an id no message has (ids are explicit, and may have gaps) */
        }
        assert_true(tb_msg_descs[t]->version >= 1);
        assert_true(strlen(tb_codec_type_name((tb_msg_type_t)t)) > 0);
        assert_true(tb_msg_descs[t]->n_fields <= 64);
    }
    assert_string_equal(tb_codec_type_name((tb_msg_type_t)0), "?");
}

/* struct tb_msg_token_logprob as schema 1.0 (ABI 1.1, tests/plugins/sdk-v1/tb_msgs.h) declared it:
 * what a plugin built before `bytes` was added allocates and strides by. */
struct v10_token_logprob {
    int64_t token_id;
    double logprob;
    const char *text;
    const struct tb_msg_top_logprob *top;
    size_t top_count;
};

struct v10_gen_chunk {
    const char *text;
    const int32_t *token_ids;
    size_t token_ids_count;
    const struct v10_token_logprob *logprobs;
    size_t logprobs_count;
    const char *finish_reason;
    const struct tb_msg_usage *usage;
};

static void test_ids_are_stable(void **state)
{
    (void)state;
    /* Plugins compiled these values in: they never change (messages.yaml `id`). */
    assert_int_equal(TB_MSG_FRAME, 1);
    assert_int_equal(TB_MSG_ROUTE, 4);
    assert_int_equal(TB_MSG_GEN_REQUEST, 7);
    assert_int_equal(TB_MSG_TOKEN_LOGPROB, 9);
    assert_int_equal(TB_MSG_GEN_CHUNK, 11);
    assert_int_equal(TB_MSG_TOKENIZE_REPLY, 17);
    assert_int_equal(TB_MSG_SCHEMA_VERSION, 18);
}

static void test_old_layout_sizes_and_strides(void **state)
{
    (void)state;
    const struct tb_codec_layout *v10 = &tb_codec_layouts[0];
    assert_int_equal(v10->descs[TB_MSG_TOKEN_LOGPROB]->size, sizeof(struct v10_token_logprob));
    assert_int_equal(v10->descs[TB_MSG_GEN_CHUNK]->size, sizeof(struct v10_gen_chunk));
    assert_true(sizeof(struct tb_msg_token_logprob) > sizeof(struct v10_token_logprob));
    assert_null(v10->descs[TB_MSG_SCHEMA_VERSION]); /* added in 1.1 */
    /* a process pinned to 1.0 reads 1.0's fields into today's structs (its code uses those) */
    assert_int_equal(v10->wire_descs[TB_MSG_TOKEN_LOGPROB]->size,
                     sizeof(struct tb_msg_token_logprob));
    assert_int_equal(v10->wire_descs[TB_MSG_TOKEN_LOGPROB]->n_fields,
                     v10->descs[TB_MSG_TOKEN_LOGPROB]->n_fields);
    assert_ptr_equal(v10->wire_descs[TB_MSG_GEN_CHUNK]->fields[2].sub,
                     v10->wire_descs[TB_MSG_TOKEN_LOGPROB]);
    assert_ptr_equal(tb_codec_layouts[TB_SCHEMA_MINOR].descs, tb_msg_descs);

    /* A 1.1 chunk with bytes, read through the 1.0 layout: the key is skipped and the array has
     * the 1.0 stride. */
    struct tb_msg_token_logprob lps[3] = {
        {.token_id = 7,
         .logprob = -0.5,
         .text = "a",
         .bytes = (const uint8_t *)"a",
         .bytes_len = 1},
        {.token_id = 8,
         .logprob = -1.5,
         .text = "bc",
         .bytes = (const uint8_t *)"bc",
         .bytes_len = 2},
        {.token_id = 9, .logprob = -2.5, .text = "d"},
    };
    struct tb_msg_gen_chunk c = {.text = "abcd", .logprobs = lps, .logprobs_count = 3};
    struct tb_buf b = {0};
    assert_int_equal(tb_codec_encode(TB_MSG_GEN_CHUNK, &c, &b), 0);
    void *out = NULL;
    char err[256];
    assert_int_equal(v10->decode(TB_MSG_GEN_CHUNK, b.data, b.len, &out, err, sizeof(err)), 0);
    const struct v10_gen_chunk *old = out;
    assert_int_equal(old->logprobs_count, 3);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(old->logprobs[k].token_id, 7 + k);
        assert_true(old->logprobs[k].logprob == lps[k].logprob);
        assert_string_equal(old->logprobs[k].text, lps[k].text);
    }
    tb_codec_free(&out);
    tb_buf_free(&b);

    /* A 1.0 plugin's chunk (exactly its size, so ASan sees any read past it) encoded through the
     * 1.0 layout and read by a 1.1 peer: bytes absent, everything else intact. */
    struct v10_token_logprob *olps = malloc(2 * sizeof(*olps));
    struct v10_gen_chunk *oc = malloc(sizeof(*oc));
    assert_non_null(olps);
    assert_non_null(oc);
    olps[0] = (struct v10_token_logprob){.token_id = 5, .logprob = -0.25, .text = "x"};
    olps[1] = (struct v10_token_logprob){.token_id = 6, .logprob = -0.75, .text = "y"};
    *oc = (struct v10_gen_chunk){.text = "xy", .logprobs = olps, .logprobs_count = 2};
    assert_int_equal(v10->encode(TB_MSG_GEN_CHUNK, oc, &b), 0);
    assert_int_equal(tb_codec_decode(TB_MSG_GEN_CHUNK, b.data, b.len, &out, err, sizeof(err)), 0);
    const struct tb_msg_gen_chunk *now = out;
    assert_int_equal(now->logprobs_count, 2);
    assert_int_equal(now->logprobs[1].token_id, 6);
    assert_string_equal(now->logprobs[1].text, "y");
    assert_null(now->logprobs[1].bytes);
    assert_int_equal(now->logprobs[1].bytes_len, 0);
    tb_codec_free(&out);
    tb_buf_free(&b);
    free(olps);
    free(oc);

    /* A message the layout lacks is refused, not guessed at. */
    struct tb_msg_schema_version sv = {.major = 1};
    assert_int_equal(v10->encode(TB_MSG_SCHEMA_VERSION, &sv, &b), TB_EINVAL);
}

static void test_layout_for_abi(void **state)
{
    (void)state;
    assert_int_equal(tb_codec_layout_for_abi(0)->minor, 0);
    assert_int_equal(tb_codec_layout_for_abi(1)->minor, 0);
    assert_int_equal(tb_codec_layout_for_abi(2)->minor, 1);
    assert_int_equal(tb_codec_layout_for_abi(TB_ABI_MINOR)->minor, TB_SCHEMA_MINOR);
    assert_int_equal(tb_codec_layout_for_abi(1000)->minor, TB_SCHEMA_MINOR);
}

static void test_peer_schema_check(void **state)
{
    (void)state;
    char err[600] = "";
    unsetenv("TB_SCHEMA_MINOR");
    assert_int_equal(tb_codec_schema_minor(), TB_SCHEMA_MINOR);
    assert_int_equal(tb_codec_check_peer(TB_SCHEMA_MAJOR, TB_SCHEMA_MINOR, TB_SCHEMA_FINGERPRINT,
                                         err, sizeof(err)),
                     0);
    /* an older minor presenting the fingerprint this build knows for it: an ancestor */
    assert_int_equal(tb_codec_check_peer(TB_SCHEMA_MAJOR, 0, tb_codec_layouts[0].fingerprint, err,
                                         sizeof(err)),
                     0);
    /* no schema at all: a 1.0 peer */
    assert_int_equal(tb_codec_check_peer_schema(NULL, err, sizeof(err)), 0);
    /* a newer minor judges itself */
    assert_int_equal(tb_codec_check_peer(TB_SCHEMA_MAJOR, TB_SCHEMA_MINOR + 1, 42, err,
                                         sizeof(err)),
                     0);
    /* the same minor with another fingerprint: a modified schema */
    assert_int_equal(tb_codec_check_peer(TB_SCHEMA_MAJOR, 0, 0x1234, err, sizeof(err)),
                     TB_EPROTO);
    assert_non_null(strstr(err, "0000000000001234"));
    char mine[32];
    snprintf(mine, sizeof(mine), "%016llx", (unsigned long long)tb_codec_layouts[0].fingerprint);
    assert_non_null(strstr(err, mine));
    /* another major */
    assert_int_equal(tb_codec_check_peer(TB_SCHEMA_MAJOR + 1, 0, 7, err, sizeof(err)), TB_EPROTO);
    assert_non_null(strstr(err, "different majors"));
    assert_non_null(strstr(err, "upgrade this process"));
    char fp[32];
    snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)TB_SCHEMA_FINGERPRINT);
    assert_non_null(strstr(err, fp));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gen_request_round_trip),
        cmocka_unit_test(test_nested_and_u64),
        cmocka_unit_test(test_encode_refuses_missing_required),
        cmocka_unit_test(test_truncated_at_every_byte),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_unknown_keys_skipped),
        cmocka_unit_test(test_refusals_fields),
        cmocka_unit_test(test_huge_declared_counts_refused_cheaply),
        cmocka_unit_test(test_every_type_has_a_name_and_version),
        cmocka_unit_test(test_ids_are_stable),
        cmocka_unit_test(test_old_layout_sizes_and_strides),
        cmocka_unit_test(test_layout_for_abi),
        cmocka_unit_test(test_peer_schema_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
