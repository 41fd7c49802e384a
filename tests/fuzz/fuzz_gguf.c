/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader: any byte string is opened; when it opens,
 * every accessor is exercised over every key and tensor so that ASan sees each pointer used, the
 * first rows of every tensor of a weight type tb_dtype knows are decoded by the reference
 * dequantizer (every block format, on whatever bytes the file holds), and the tokenizer is
 * loaded from the metadata (and used) when the file has one.
 */
/* FUZZ_SOURCES: plugins/common/tb_gguf.c plugins/common/tb_dtype.c plugins/common/tb_quant.c plugins/common/tb_tokenizer.c plugins/common/tb_tokenizer_hf.c plugins/common/tb_tokenizer_gguf.c plugins/common/tb_bpe.c plugins/common/tb_pretok.c plugins/common/tb_detok.c plugins/common/tb_tok_buf.c plugins/common/tb_tok_norm.c plugins/common/tb_tok_regex.c plugins/common/tb_tok_utf8.c plugins/common/tb_tok_vocab.c */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_dtype.h"
#include "tb_gguf.h"
#include "tb_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t s_sink;
static volatile float s_fsink;

/* Decodes up to 4096 elements of tensor `t` (whole rows, as an engine would read them). */
static void s_decode(const struct tb_gguf_tensor *t)
{
    tb_dtype_t dt;
    uint64_t row_bytes;
    if (!tb_dtype_from_ggml(t->ggml_type, &dt) || tb_dtype_bytes(dt, t->dims[0], &row_bytes) ||
        row_bytes == 0 || t->dims[0] > 4096) {
        return;
    }
    uint64_t rows = 4096 / t->dims[0];
    if (rows * row_bytes > t->size) {
        rows = t->size / row_bytes;
    }
    static float out[4096];
    if (rows > 0 && tb_dtype_to_f32(dt, t->data, out, rows * t->dims[0]) == 0) {
        s_fsink += out[0] + out[rows * t->dims[0] - 1];
    }
}

static void s_touch(const void *p, uint64_t n)
{
    const uint8_t *b = p;
    if (n > 0) {
        s_sink += b[0] + b[n - 1];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy: reads one byte past the input are caught. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) {
        return 0;
    }
    memcpy(copy, data, size);
    tb_gguf_t *g = NULL;
    char err[256];
    if (tb_gguf_open_memory(copy, size, &g, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < tb_gguf_key_count(g); i++) {
            struct tb_gguf_str k = tb_gguf_key_name(g, i);
            char key[256];
            size_t n = k.len < sizeof(key) - 1 ? k.len : sizeof(key) - 1;
            memcpy(key, k.ptr, n);
            key[n] = '\0';
            uint64_t u;
            int64_t s;
            double d;
            bool b;
            struct tb_gguf_str str;
            tb_gguf_type_t et;
            uint64_t count = 0;
            s_sink += tb_gguf_get_u64(g, key, &u) + tb_gguf_get_i64(g, key, &s) +
                      tb_gguf_get_f64(g, key, &d) + tb_gguf_get_bool(g, key, &b);
            if (tb_gguf_get_str(g, key, &str)) {
                s_touch(str.ptr, str.len);
            }
            if (tb_gguf_get_array(g, key, &et, &count)) {
                const void *p = tb_gguf_array_data(g, key);
                if (p && count > 0) {
                    s_touch(p, 1);
                }
                for (uint64_t j = 0; j < count && j < 64; j++) {
                    if (tb_gguf_array_str(g, key, j, &str)) {
                        s_touch(str.ptr, str.len);
                    }
                }
            }
        }
        for (size_t i = 0; i < tb_gguf_tensor_count(g); i++) {
            struct tb_gguf_tensor t;
            if (tb_gguf_tensor_at(g, i, &t)) {
                s_touch(t.data, t.size);
                s_touch(t.name.ptr, t.name.len);
                s_decode(&t);
            }
        }
        tb_tokenizer_t *tok = NULL;
        if (tb_tokenizer_load_gguf(g, &tok, err, sizeof(err)) == 0) {
            static const char text[] = "Hello <s> world 123\n\xc3\xa9\xe6\x97\xa5";
            int32_t *ids = NULL;
            size_t n = 0;
            if (tb_tokenizer_encode(tok, text, sizeof(text) - 1, true, true, &ids, &n) == 0) {
                char *out = NULL;
                size_t len = 0;
                if (tb_tokenizer_decode(tok, ids, n, false, &out, &len) == 0) {
                    s_touch(out, len);
                    free(out);
                }
                free(ids);
            }
            tb_tokenizer_destroy(&tok);
        }
        tb_gguf_close(&g);
    }
    free(copy);
    return 0;
}
