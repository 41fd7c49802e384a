/* Unit tests for tb_safetensors: valid files, and many malformed ones that must be refused. */
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
#include "tb_safetensors.h"

/* Builds header-length + header + `data_len` bytes of data (byte i = i & 0xff). */
static uint8_t *s_build(const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) {
        buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    }
    memcpy(buf + 8, header, h);
    for (size_t i = 0; i < data_len; i++) {
        buf[8 + h + i] = (uint8_t)i;
    }
    return buf;
}

/* Opens header+data from memory; returns the code and copies the error. */
static int s_try(const char *header, size_t data_len, char *err, size_t err_len)
{
    size_t len;
    uint8_t *buf = s_build(header, data_len, &len);
    tb_safetensors_t *st = NULL;
    int rc = tb_safetensors_open_memory(buf, len, &st, err, err_len);
    if (rc == 0) {
        assert_non_null(st);
    } else {
        assert_null(st);
    }
    tb_safetensors_close(&st);
    free(buf);
    return rc;
}

#define GOOD                                                                                     \
    "{\"__metadata__\":{\"format\":\"pt\"},"                                                     \
    "\"b\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"                        \
    "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}"

static void test_valid_file(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = s_build(GOOD, 28, &len);
    tb_safetensors_t *st = NULL;
    char err[256] = "";
    assert_int_equal(tb_safetensors_open_memory(buf, len, &st, err, sizeof err), 0);
    assert_int_equal(tb_safetensors_count(st), 2);
    struct tb_st_tensor t;
    assert_true(tb_safetensors_at(st, 0, &t)); /* offset order */
    assert_string_equal(t.name, "a");
    assert_int_equal(t.dtype, TB_ST_F32);
    assert_int_equal(t.n_dims, 1);
    assert_int_equal(t.shape[0], 4);
    assert_int_equal(t.size, 16);
    assert_ptr_equal(t.data, buf + 8 + strlen(GOOD));
    assert_true(tb_safetensors_find(st, "b", &t));
    assert_int_equal(t.dtype, TB_ST_F16);
    assert_int_equal(t.n_dims, 2);
    assert_int_equal(t.shape[0], 2);
    assert_int_equal(t.shape[1], 3);
    assert_int_equal(t.size, 12);
    assert_int_equal(((const uint8_t *)t.data)[0], 16); /* byte 16 of the data area */
    assert_false(tb_safetensors_find(st, "c", &t));
    assert_false(tb_safetensors_at(st, 2, &t));
    assert_string_equal(tb_safetensors_metadata(st, "format"), "pt");
    assert_null(tb_safetensors_metadata(st, "nope"));
    tb_safetensors_close(&st);
    assert_null(st);
    tb_safetensors_close(&st); /* NULL is fine */
    free(buf);
}

static void test_dtype_table(void **state)
{
    (void)state;
    assert_string_equal(tb_st_dtype_name(TB_ST_BF16), "BF16");
    assert_int_equal(tb_st_dtype_size(TB_ST_BF16), 2);
    assert_int_equal(tb_st_dtype_size(TB_ST_F64), 8);
    assert_int_equal(tb_st_dtype_size(TB_ST_F8_E4M3), 1);
    assert_string_equal(tb_st_dtype_name(TB_ST_DTYPE_COUNT), "?");
    assert_int_equal(tb_st_dtype_size(TB_ST_DTYPE_COUNT), 0);
}

static void test_empty_object_and_scalar(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(s_try("{}", 0, err, sizeof err), 0);
    assert_int_equal(s_try("{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8,
                           err, sizeof err),
                     0);
    assert_int_equal(s_try("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}}",
                           0, err, sizeof err),
                     0);
}

/* Every prefix of a valid file is refused, never read past. */
static void test_truncated_everywhere(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = s_build(GOOD, 28, &len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact-size copy so ASan sees any overread */
        memcpy(copy, buf, n);
        tb_safetensors_t *st = NULL;
        char err[256] = "";
        int rc = tb_safetensors_open_memory(copy, n, &st, err, sizeof err);
        assert_int_equal(rc, TB_EMODEL);
        assert_null(st);
        assert_true(strlen(err) > 0);
        free(copy);
    }
    free(buf);
}

struct bad_case {
    const char *header;
    size_t data_len;
    const char *expect; /* substring of the message */
};

static void test_malformed_headers(void **state)
{
    (void)state;
    const struct bad_case cases[] = {
        {"[]", 0, "not an object"},
        {"3 ", 0, "header JSON"},
        {"\"x\"", 0, "header JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", 16, "header JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,20]}}", 16, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,4]}}", 16, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,16]}}", 16, "need 20"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "need 8"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         16, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
         "\"data_offsets\":[0,16]}}",
         16, "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,16]}}",
         16, "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,16]}}", 16, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16, "'shape'"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
         "unknown dtype 'Q4'"},
        {"{\"a\":{\"dtype\":7,\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "'dtype'"},
        {"{\"a\":{\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "'dtype'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}", 16, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,-16]}}", 16,
         "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":\"0-16\"}}", 16,
         "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":1}}", 16,
         "unknown field 'x'"},
        {"{\"a\":[1,2]}", 16, "not an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
         16, "duplicate"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__.k"},
        {"{\"__metadata__\":[]}", 0, "__metadata__"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
         "9 dimensions"},
        {"{}", 0, NULL}, /* sentinel: valid */
    };
    for (size_t i = 0; cases[i].expect; i++) {
        char err[256] = "";
        int rc = s_try(cases[i].header, cases[i].data_len, err, sizeof err);
        if (rc != TB_EMODEL || !strstr(err, cases[i].expect)) {
            fail_msg("case %zu: rc %d, message '%s', expected '%s'", i, rc, err, cases[i].expect);
        }
    }
}

static void test_bad_lengths(void **state)
{
    (void)state;
    char err[256];
    tb_safetensors_t *st = NULL;
    uint8_t small[8] = {200, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(tb_safetensors_open_memory(small, 8, &st, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "runs past the end"));
    uint8_t huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x40, '{', '}'};
    assert_int_equal(tb_safetensors_open_memory(huge, 16, &st, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "limit"));
    uint8_t one[9] = {1, 0, 0, 0, 0, 0, 0, 0, '{'};
    assert_int_equal(tb_safetensors_open_memory(one, 9, &st, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "too short"));
    assert_int_equal(tb_safetensors_open_memory(one, 3, &st, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "shorter than the 8-byte"));
    assert_null(st);
}

static void test_open_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/tb_st_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    size_t len;
    uint8_t *buf = s_build(GOOD, 28, &len);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
    tb_safetensors_t *st = NULL;
    char err[256];
    assert_int_equal(tb_safetensors_open(path, &st, err, sizeof err), 0);
    struct tb_st_tensor t;
    assert_true(tb_safetensors_find(st, "a", &t));
    assert_int_equal(t.offset, 8 + strlen(GOOD));
    assert_memory_equal(t.data, buf + t.offset, 16);
    tb_safetensors_close(&st);
    /* truncate the file: refused */
    assert_int_equal(truncate(path, (off_t)len - 1), 0);
    assert_int_equal(tb_safetensors_open(path, &st, err, sizeof err), TB_EMODEL);
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(tb_safetensors_open(path, &st, err, sizeof err), TB_EMODEL);
    unlink(path);
    assert_int_equal(tb_safetensors_open(path, &st, err, sizeof err), TB_ENOENT);
    assert_non_null(strstr(err, "cannot open"));
    assert_int_equal(tb_safetensors_open(dir, &st, err, sizeof err), TB_EMODEL);
    assert_null(st);
    rmdir(dir);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_empty_object_and_scalar),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_open_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
