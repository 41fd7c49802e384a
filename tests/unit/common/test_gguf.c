/*
 * test_gguf.c - tb_gguf: a GGUF file built in memory is read back exactly (every metadata type,
 * nested arrays, tensors, alignment); every truncation and a catalogue of lying fields are
 * refused with a message; the shared vocabulary files open when present.
 */
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

/* A growable byte buffer with GGUF writers. */
struct buf {
    uint8_t *p;
    size_t len;
    size_t cap;
};

static void b_put(struct buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void b_u8(struct buf *b, uint8_t v)
{
    b_put(b, &v, 1);
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

static void b_pad(struct buf *b, size_t align)
{
    while (b->len % align != 0) {
        b_u8(b, 0);
    }
}

static void b_header(struct buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b_put(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}

/* The reference file: 14 keys of every type, two tensors, alignment 64. */
static struct buf s_build_full(uint32_t version)
{
    struct buf b = {0};
    b_header(&b, version, 2, 15);
    b_str(&b, "general.architecture");
    b_u32(&b, TB_GGUF_STRING);
    b_str(&b, "llama");
    b_str(&b, "k.u8");
    b_u32(&b, TB_GGUF_UINT8);
    b_u8(&b, 200);
    b_str(&b, "k.i8");
    b_u32(&b, TB_GGUF_INT8);
    b_u8(&b, (uint8_t)-5);
    b_str(&b, "k.u16");
    b_u32(&b, TB_GGUF_UINT16);
    uint16_t u16 = 60000;
    b_put(&b, &u16, 2);
    b_str(&b, "k.i16");
    b_u32(&b, TB_GGUF_INT16);
    int16_t i16 = -30000;
    b_put(&b, &i16, 2);
    b_str(&b, "k.u32");
    b_u32(&b, TB_GGUF_UINT32);
    b_u32(&b, 4000000000u);
    b_str(&b, "k.i32");
    b_u32(&b, TB_GGUF_INT32);
    b_u32(&b, (uint32_t)-7);
    b_str(&b, "k.f32");
    b_u32(&b, TB_GGUF_FLOAT32);
    float f = 0.5f;
    b_put(&b, &f, 4);
    b_str(&b, "k.bool");
    b_u32(&b, TB_GGUF_BOOL);
    b_u8(&b, 1);
    b_str(&b, "k.u64");
    b_u32(&b, TB_GGUF_UINT64);
    b_u64(&b, UINT64_MAX);
    b_str(&b, "k.i64");
    b_u32(&b, TB_GGUF_INT64);
    b_u64(&b, (uint64_t)INT64_MIN);
    b_str(&b, "k.f64");
    b_u32(&b, TB_GGUF_FLOAT64);
    double d = -2.25;
    b_put(&b, &d, 8);
    b_str(&b, "k.strs");
    b_u32(&b, TB_GGUF_ARRAY);
    b_u32(&b, TB_GGUF_STRING);
    b_u64(&b, 3);
    b_str(&b, "a");
    b_str(&b, "");
    b_str(&b, "\xe2\x96\x81hello");
    b_str(&b, "k.nested"); /* [[1, 2], [], ["x"]] */
    b_u32(&b, TB_GGUF_ARRAY);
    b_u32(&b, TB_GGUF_ARRAY);
    b_u64(&b, 3);
    b_u32(&b, TB_GGUF_INT32);
    b_u64(&b, 2);
    b_u32(&b, 1);
    b_u32(&b, 2);
    b_u32(&b, TB_GGUF_FLOAT32);
    b_u64(&b, 0);
    b_u32(&b, TB_GGUF_STRING);
    b_u64(&b, 1);
    b_str(&b, "x");
    b_str(&b, "general.alignment");
    b_u32(&b, TB_GGUF_UINT32);
    b_u32(&b, 64);
    /* tensor "a": F32 [3, 2] at 0 (24 bytes); tensor "b": Q8_0 [64] at 64 (68 bytes) */
    b_str(&b, "a");
    b_u32(&b, 2);
    b_u64(&b, 3);
    b_u64(&b, 2);
    b_u32(&b, 0);
    b_u64(&b, 0);
    b_str(&b, "b");
    b_u32(&b, 1);
    b_u64(&b, 64);
    b_u32(&b, 8);
    b_u64(&b, 64);
    b_pad(&b, 64);
    for (int i = 0; i < 6; i++) {
        float v = (float)i + 0.25f;
        b_put(&b, &v, 4);
    }
    b_pad(&b, 64);
    for (int i = 0; i < 68; i++) {
        b_u8(&b, (uint8_t)i);
    }
    return b;
}

static void test_full_roundtrip(void **state)
{
    (void)state;
    for (uint32_t version = 2; version <= 3; version++) {
        struct buf b = s_build_full(version);
        tb_gguf_t *g = NULL;
        char err[256] = "";
        assert_int_equal(tb_gguf_open_memory(b.p, b.len, &g, err, sizeof(err)), 0);
        assert_non_null(g);
        assert_int_equal(tb_gguf_version(g), version);
        assert_int_equal(tb_gguf_alignment(g), 64);
        assert_int_equal(tb_gguf_data_offset(g) % 64, 0);
        assert_int_equal(tb_gguf_key_count(g), 15);
        assert_int_equal(tb_gguf_find_key(g, "k.u8"), 1);
        assert_int_equal(tb_gguf_find_key(g, "absent"), -1);
        struct tb_gguf_str name = tb_gguf_key_name(g, 2);
        assert_int_equal(name.len, 4);
        assert_memory_equal(name.ptr, "k.i8", 4);
        assert_int_equal(tb_gguf_key_type(g, 12), TB_GGUF_ARRAY);

        uint64_t u = 0;
        int64_t i = 0;
        double dv = 0;
        bool bv = false;
        struct tb_gguf_str s;
        assert_true(tb_gguf_get_str(g, "general.architecture", &s));
        assert_int_equal(s.len, 5);
        assert_memory_equal(s.ptr, "llama", 5);
        assert_true(tb_gguf_get_u64(g, "k.u8", &u));
        assert_int_equal(u, 200);
        assert_false(tb_gguf_get_u64(g, "k.i8", &u)); /* negative */
        assert_true(tb_gguf_get_i64(g, "k.i8", &i));
        assert_int_equal(i, -5);
        assert_true(tb_gguf_get_u64(g, "k.u16", &u));
        assert_int_equal(u, 60000);
        assert_true(tb_gguf_get_i64(g, "k.i16", &i));
        assert_int_equal(i, -30000);
        assert_true(tb_gguf_get_u64(g, "k.u32", &u));
        assert_int_equal(u, 4000000000u);
        assert_true(tb_gguf_get_i64(g, "k.u32", &i));
        assert_int_equal(i, 4000000000LL);
        assert_true(tb_gguf_get_i64(g, "k.i32", &i));
        assert_int_equal(i, -7);
        assert_true(tb_gguf_get_u64(g, "k.u64", &u));
        assert_true(u == UINT64_MAX);
        assert_false(tb_gguf_get_i64(g, "k.u64", &i)); /* out of range */
        assert_true(tb_gguf_get_i64(g, "k.i64", &i));
        assert_true(i == INT64_MIN);
        assert_true(tb_gguf_get_f64(g, "k.f32", &dv));
        assert_true(dv == 0.5);
        assert_true(tb_gguf_get_f64(g, "k.f64", &dv));
        assert_true(dv == -2.25);
        assert_false(tb_gguf_get_f64(g, "k.u8", &dv));
        assert_true(tb_gguf_get_bool(g, "k.bool", &bv));
        assert_true(bv);
        assert_false(tb_gguf_get_bool(g, "k.u8", &bv));
        assert_false(tb_gguf_get_str(g, "k.u8", &s));

        tb_gguf_type_t et;
        uint64_t count = 0;
        assert_true(tb_gguf_get_array(g, "k.strs", &et, &count));
        assert_int_equal(et, TB_GGUF_STRING);
        assert_int_equal(count, 3);
        assert_true(tb_gguf_array_str(g, "k.strs", 0, &s));
        assert_int_equal(s.len, 1);
        assert_true(tb_gguf_array_str(g, "k.strs", 1, &s));
        assert_int_equal(s.len, 0);
        assert_true(tb_gguf_array_str(g, "k.strs", 2, &s));
        assert_int_equal(s.len, 8);
        assert_memory_equal(s.ptr, "\xe2\x96\x81hello", 8);
        assert_false(tb_gguf_array_str(g, "k.strs", 3, &s));
        assert_null(tb_gguf_array_data(g, "k.strs"));
        assert_true(tb_gguf_get_array(g, "k.nested", &et, &count));
        assert_int_equal(et, TB_GGUF_ARRAY);
        assert_int_equal(count, 3);
        assert_null(tb_gguf_array_data(g, "k.nested"));
        assert_false(tb_gguf_get_array(g, "k.u8", &et, &count));

        assert_int_equal(tb_gguf_tensor_count(g), 2);
        struct tb_gguf_tensor t;
        assert_true(tb_gguf_tensor_find(g, "a", &t));
        assert_int_equal(t.n_dims, 2);
        assert_int_equal(t.dims[0], 3);
        assert_int_equal(t.dims[1], 2);
        assert_int_equal(t.dims[2], 1);
        assert_int_equal(t.size, 24);
        assert_int_equal(t.ggml_type, 0);
        float v5;
        memcpy(&v5, (const uint8_t *)t.data + 20, 4);
        assert_true(v5 == 5.25f);
        assert_true(tb_gguf_tensor_find(g, "b", &t));
        assert_int_equal(t.size, 68);
        assert_int_equal(t.offset, 64);
        assert_int_equal(((const uint8_t *)t.data)[67], 67);
        assert_true((const uint8_t *)t.data + 68 == b.p + b.len);
        assert_false(tb_gguf_tensor_find(g, "c", &t));
        assert_true(tb_gguf_tensor_at(g, 1, &t));
        assert_int_equal(t.name.len, 1);
        assert_false(tb_gguf_tensor_at(g, 2, &t));
        tb_gguf_close(&g);
        assert_null(g);
        tb_gguf_close(&g); /* accepts NULL */
        free(b.p);
    }
}

/* Every strict prefix of the file is refused with a message, never read past. */
static void test_every_truncation_fails(void **state)
{
    (void)state;
    struct buf b = s_build_full(3);
    for (size_t n = 0; n < b.len; n++) {
        /* A fresh exact-size copy so that ASan catches any read past the end. */
        uint8_t *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, b.p, n);
        tb_gguf_t *g = NULL;
        char err[256] = "";
        int rc = tb_gguf_open_memory(copy, n, &g, err, sizeof(err));
        if (rc == 0) {
            fail_msg("prefix of %zu bytes of %zu was accepted", n, b.len);
        }
        assert_int_equal(rc, TB_EMODEL);
        assert_null(g);
        assert_true(strlen(err) > 0);
        free(copy);
    }
    free(b.p);
}

static int s_open_expect_fail(struct buf *b, const char *needle)
{
    tb_gguf_t *g = NULL;
    char err[256] = "";
    int rc = tb_gguf_open_memory(b->p, b->len, &g, err, sizeof(err));
    assert_null(g);
    if (needle && !strstr(err, needle)) {
        fail_msg("error '%s' does not mention '%s'", err, needle);
    }
    free(b->p);
    memset(b, 0, sizeof(*b));
    return rc;
}

static void test_header_errors(void **state)
{
    (void)state;
    struct buf b = {0};
    b_put(&b, "GGUX", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 0);
    assert_int_equal(s_open_expect_fail(&b, "magic"), TB_EMODEL);
    b_header(&b, 1, 0, 0);
    assert_int_equal(s_open_expect_fail(&b, "version 1"), TB_EMODEL);
    b_header(&b, 0x03000000u, 0, 0);
    assert_int_equal(s_open_expect_fail(&b, "big-endian"), TB_EMODEL);
    b_header(&b, 3, 0, UINT64_MAX);
    assert_int_equal(s_open_expect_fail(&b, "metadata count"), TB_EMODEL);
    b_header(&b, 3, 1ULL << 60, 0);
    assert_int_equal(s_open_expect_fail(&b, "tensor count"), TB_EMODEL);

    /* An empty file with no keys or tensors is valid. */
    b_header(&b, 3, 0, 0);
    tb_gguf_t *g = NULL;
    char err[128];
    assert_int_equal(tb_gguf_open_memory(b.p, b.len, &g, err, sizeof(err)), 0);
    assert_int_equal(tb_gguf_key_count(g), 0);
    assert_int_equal(tb_gguf_alignment(g), 32);
    tb_gguf_close(&g);
    free(b.p);
}

static void test_metadata_errors(void **state)
{
    (void)state;
    struct buf b = {0};
    /* string length past the end */
    b_header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, TB_GGUF_STRING);
    b_u64(&b, UINT64_MAX - 3);
    b_put(&b, "abc", 3);
    assert_int_equal(s_open_expect_fail(&b, "truncated"), TB_EMODEL);
    /* key name length past the end */
    b_header(&b, 3, 0, 1);
    b_u64(&b, 1ULL << 62);
    b_u32(&b, 0);
    assert_int_equal(s_open_expect_fail(&b, "truncated"), TB_EMODEL);
    /* unknown value type */
    b_header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, 13);
    b_u64(&b, 0);
    assert_int_equal(s_open_expect_fail(&b, "unknown value type 13"), TB_EMODEL);
    /* numeric array count times size overflows */
    b_header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, TB_GGUF_ARRAY);
    b_u32(&b, TB_GGUF_UINT64);
    b_u64(&b, (1ULL << 61) + 1);
    b_u64(&b, 0);
    assert_int_equal(s_open_expect_fail(&b, "truncated"), TB_EMODEL);
    /* string array with a huge count */
    b_header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, TB_GGUF_ARRAY);
    b_u32(&b, TB_GGUF_STRING);
    b_u64(&b, 1ULL << 40);
    b_u64(&b, 0);
    assert_int_equal(s_open_expect_fail(&b, "truncated"), TB_EMODEL);
    /* unknown array element type */
    b_header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, TB_GGUF_ARRAY);
    b_u32(&b, 99);
    b_u64(&b, 0);
    assert_int_equal(s_open_expect_fail(&b, "element type 99"), TB_EMODEL);
    /* bool that is neither 0 nor 1 */
    b_header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, TB_GGUF_BOOL);
    b_u8(&b, 2);
    assert_int_equal(s_open_expect_fail(&b, "bool"), TB_EMODEL);
    /* duplicate key */
    b_header(&b, 3, 0, 2);
    for (int i = 0; i < 2; i++) {
        b_str(&b, "dup");
        b_u32(&b, TB_GGUF_UINT8);
        b_u8(&b, 1);
    }
    assert_int_equal(s_open_expect_fail(&b, "duplicate key 'dup'"), TB_EMODEL);
    /* arrays nested too deep */
    b_header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, TB_GGUF_ARRAY);
    for (int i = 0; i < 40; i++) {
        b_u32(&b, TB_GGUF_ARRAY);
        b_u64(&b, 1);
    }
    b_u32(&b, TB_GGUF_UINT8);
    b_u64(&b, 0);
    assert_int_equal(s_open_expect_fail(&b, "nested"), TB_EMODEL);
    /* alignment that is not a power of two, and one of the wrong type */
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, TB_GGUF_UINT32);
    b_u32(&b, 48);
    assert_int_equal(s_open_expect_fail(&b, "alignment"), TB_EMODEL);
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, TB_GGUF_STRING);
    b_str(&b, "32");
    assert_int_equal(s_open_expect_fail(&b, "alignment"), TB_EMODEL);
}

/* Writes a header with one tensor info with the given fields and `data_bytes` of data. */
static void s_one_tensor(struct buf *b, const char *name, uint32_t n_dims, const uint64_t *dims,
                         uint32_t type, uint64_t offset, size_t data_bytes)
{
    b_header(b, 3, 1, 0);
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims && i < 8; i++) {
        b_u64(b, dims[i]);
    }
    b_u32(b, type);
    b_u64(b, offset);
    b_pad(b, 32);
    for (size_t i = 0; i < data_bytes; i++) {
        b_u8(b, 0);
    }
}

static void test_tensor_errors(void **state)
{
    (void)state;
    struct buf b = {0};
    uint64_t d4[4] = {4, 1, 1, 1};
    s_one_tensor(&b, "t", 1, d4, 0, 0, 16);
    tb_gguf_t *g = NULL;
    char err[256] = "";
    assert_int_equal(tb_gguf_open_memory(b.p, b.len, &g, err, sizeof(err)), 0);
    tb_gguf_close(&g);
    free(b.p);
    memset(&b, 0, sizeof(b));

    s_one_tensor(&b, "t", 1, d4, 0, 0, 15);
    assert_int_equal(s_open_expect_fail(&b, "past the end"), TB_EMODEL);
    s_one_tensor(&b, "t", 1, d4, 0, 32, 16);
    assert_int_equal(s_open_expect_fail(&b, "past the end"), TB_EMODEL);
    s_one_tensor(&b, "t", 1, d4, 0, UINT64_MAX - 31, 16);
    assert_int_equal(s_open_expect_fail(&b, "past the end"), TB_EMODEL);
    s_one_tensor(&b, "t", 1, d4, 0, 4, 64);
    assert_int_equal(s_open_expect_fail(&b, "not a multiple of the alignment"), TB_EMODEL);
    s_one_tensor(&b, "t", 0, d4, 0, 0, 16);
    assert_int_equal(s_open_expect_fail(&b, "dimensions"), TB_EMODEL);
    uint64_t d5[5] = {1, 1, 1, 1, 1};
    s_one_tensor(&b, "t", 5, d5, 0, 0, 16);
    assert_int_equal(s_open_expect_fail(&b, "dimensions"), TB_EMODEL);
    s_one_tensor(&b, "t", 1, d4, 4, 0, 16); /* type 4 was removed from ggml */
    assert_int_equal(s_open_expect_fail(&b, "unknown ggml type 4"), TB_EMODEL);
    uint64_t big[2] = {1ULL << 40, 1ULL << 40};
    s_one_tensor(&b, "t", 2, big, 0, 0, 16);
    assert_int_equal(s_open_expect_fail(&b, "overflows"), TB_EMODEL);
    uint64_t bigb[2] = {1ULL << 32, 1ULL << 20};
    s_one_tensor(&b, "t", 2, bigb, 0, 0, 16); /* elements fit in int64, bytes past the file */
    assert_int_equal(s_open_expect_fail(&b, "past the end"), TB_EMODEL);
    uint64_t q[1] = {33};
    s_one_tensor(&b, "t", 1, q, 8, 0, 64); /* Q8_0 rows must be multiples of 32 */
    assert_int_equal(s_open_expect_fail(&b, "block"), TB_EMODEL);

    /* duplicate tensor names */
    b_header(&b, 3, 2, 0);
    for (int i = 0; i < 2; i++) {
        b_str(&b, "same");
        b_u32(&b, 1);
        b_u64(&b, 1);
        b_u32(&b, 0);
        b_u64(&b, 0);
    }
    b_pad(&b, 32);
    b_u32(&b, 0);
    assert_int_equal(s_open_expect_fail(&b, "duplicate tensor 'same'"), TB_EMODEL);
}

static void test_type_blocks(void **state)
{
    (void)state;
    uint64_t be = 0, bb = 0;
    assert_true(tb_gguf_type_block(0, &be, &bb));
    assert_int_equal(be, 1);
    assert_int_equal(bb, 4);
    assert_true(tb_gguf_type_block(8, &be, &bb)); /* Q8_0 */
    assert_int_equal(be, 32);
    assert_int_equal(bb, 34);
    assert_true(tb_gguf_type_block(14, &be, &bb)); /* Q6_K */
    assert_int_equal(be, 256);
    assert_int_equal(bb, 210);
    assert_true(tb_gguf_type_block(30, NULL, &bb)); /* BF16 */
    assert_int_equal(bb, 2);
    assert_false(tb_gguf_type_block(4, &be, &bb));
    assert_false(tb_gguf_type_block(1000, &be, &bb));
}

static void test_open_path(void **state)
{
    (void)state;
    tb_gguf_t *g = NULL;
    char err[512] = "";
    int rc = tb_gguf_open("/nonexistent/dir/x.gguf", &g, err, sizeof(err));
    assert_int_equal(rc, TB_ENOENT);
    assert_null(g);
    assert_non_null(strstr(err, "cannot open model '/nonexistent/dir/x.gguf'"));

    char path[] = "/tmp/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    struct buf b = s_build_full(3);
    assert_int_equal(write(fd, b.p, b.len), (ssize_t)b.len);
    close(fd);
    assert_int_equal(tb_gguf_open(path, &g, err, sizeof(err)), 0);
    struct tb_gguf_tensor t;
    assert_true(tb_gguf_tensor_find(g, "b", &t));
    assert_int_equal(((const uint8_t *)t.data)[10], 10);
    tb_gguf_close(&g);

    /* the same file cut short names the path and the reason */
    assert_int_equal(truncate(path, (off_t)(b.len - 1)), 0);
    rc = tb_gguf_open(path, &g, err, sizeof(err));
    assert_int_equal(rc, TB_EMODEL);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "past the end"));
    unlink(path);
    free(b.p);
}

/* The vocabulary files of ../shared/tokenizer-vectors open and hold what their README says. */
static void test_shared_vocab_files(void **state)
{
    (void)state;
    const char *root = getenv("TB_ROOT");
    char path[1024];
    snprintf(path, sizeof(path), "%s/../shared/tokenizer-vectors/ggml-vocab-llama-spm.gguf",
             root ? root : ".");
    if (access(path, R_OK) != 0) {
        printf("# skip: %s absent\n", path);
        skip();
    }
    tb_gguf_t *g = NULL;
    char err[512] = "";
    assert_int_equal(tb_gguf_open(path, &g, err, sizeof(err)), 0);
    tb_gguf_type_t et;
    uint64_t n = 0;
    assert_true(tb_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n));
    assert_int_equal(et, TB_GGUF_STRING);
    assert_int_equal(n, 32000);
    struct tb_gguf_str s;
    assert_true(tb_gguf_array_str(g, "tokenizer.ggml.tokens", 1, &s));
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.ptr, "<s>", 3);
    assert_true(tb_gguf_get_array(g, "tokenizer.ggml.scores", &et, &n));
    assert_int_equal(et, TB_GGUF_FLOAT32);
    assert_non_null(tb_gguf_array_data(g, "tokenizer.ggml.scores"));
    uint64_t bos = 0;
    assert_true(tb_gguf_get_u64(g, "tokenizer.ggml.bos_token_id", &bos));
    assert_int_equal(bos, 1);
    assert_true(tb_gguf_get_str(g, "tokenizer.ggml.model", &s));
    assert_memory_equal(s.ptr, "llama", 5);
    assert_int_equal(tb_gguf_tensor_count(g), 0);
    tb_gguf_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_roundtrip), cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_header_errors),  cmocka_unit_test(test_metadata_errors),
        cmocka_unit_test(test_tensor_errors),  cmocka_unit_test(test_type_blocks),
        cmocka_unit_test(test_open_path),      cmocka_unit_test(test_shared_vocab_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
