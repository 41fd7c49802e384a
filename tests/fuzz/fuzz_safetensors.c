/* libFuzzer target: the safetensors header parser over arbitrary bytes.  Every tensor the
 * reader accepts must lie inside the buffer; the target touches its first and last byte. */
/* FUZZ_SOURCES: plugins/common/tb_safetensors.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tb_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy so that any overread is caught by ASan */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) {
        return 0;
    }
    memcpy(copy, data, size);
    tb_safetensors_t *st = NULL;
    char err[256];
    if (tb_safetensors_open_memory(copy, size, &st, err, sizeof err) == 0) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < tb_safetensors_count(st); i++) {
            struct tb_st_tensor t;
            if (!tb_safetensors_at(st, i, &t)) {
                abort();
            }
            if (t.size > 0) {
                sink ^= ((const uint8_t *)t.data)[0];
                sink ^= ((const uint8_t *)t.data)[t.size - 1];
            }
            struct tb_st_tensor again;
            if (!tb_safetensors_find(st, t.name, &again) || again.data != t.data) {
                abort();
            }
        }
        (void)tb_safetensors_metadata(st, "format");
        (void)sink;
    }
    tb_safetensors_close(&st);
    free(copy);
    return 0;
}
