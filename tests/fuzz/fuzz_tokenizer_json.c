/*
 * fuzz_tokenizer_json.c - libFuzzer target for the tokenizer.json reader: any byte string is
 * loaded as a tokenizer.json; when it loads, a few texts (and the input's own first bytes when
 * they are UTF-8) are encoded, decoded and streamed back.
 */
/* FUZZ_SOURCES: plugins/common/tb_tokenizer.c plugins/common/tb_tokenizer_hf.c plugins/common/tb_tokenizer_gguf.c plugins/common/tb_gguf.c plugins/common/tb_bpe.c plugins/common/tb_pretok.c plugins/common/tb_detok.c plugins/common/tb_tok_buf.c plugins/common/tb_tok_norm.c plugins/common/tb_tok_regex.c plugins/common/tb_tok_utf8.c plugins/common/tb_tok_vocab.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tb_detok.h"
#include "tb_tok_utf8.h"
#include "tb_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_exercise(const tb_tokenizer_t *tok, const char *text, size_t len)
{
    for (int mode = 0; mode < 2; mode++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (tb_tokenizer_encode(tok, text, len, mode == 0, mode == 0, &ids, &n) != 0) {
            continue;
        }
        char *out = NULL;
        size_t out_len = 0;
        if (tb_tokenizer_decode(tok, ids, n, mode == 1, &out, &out_len) == 0) {
            free(out);
        }
        tb_detok_t *d = NULL;
        if (tb_detok_new(tok, mode == 1, &d) == 0) {
            const char *t = NULL;
            size_t tl = 0;
            for (size_t i = 0; i < n; i++) {
                tb_detok_push(d, ids[i], &t, &tl);
            }
            tb_detok_push(d, (int32_t)n, &t, &tl);
            tb_detok_flush(d, &t, &tl);
            tb_detok_destroy(&d);
        }
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const texts[] = {
        "Hello world",
        " 12345 x\n\n  y",
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82",
        "<s><|endoftext|></s>[INST]",
        "",
    };
    tb_tokenizer_t *tok = NULL;
    char err[256];
    if (tb_tokenizer_load_hf_memory((const char *)data, size, NULL, 0, &tok, err, sizeof(err)) !=
        0) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        s_exercise(tok, texts[i], strlen(texts[i]));
    }
    size_t n = size < 256 ? size : 256;
    if (tb_utf8_is_valid((const char *)data, n)) {
        s_exercise(tok, (const char *)data, n);
    }
    tb_tokenizer_destroy(&tok);
    return 0;
}
