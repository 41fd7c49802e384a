/*
 * tb_dequant - decodes a file of quantized blocks with the reference decoder (tb_dtype_to_f32),
 * so that the Python tests can compare it with the gguf package's dequantizers.
 *
 * usage: tb_dequant TYPE IN OUT     TYPE a tb_dtype name (q4_k, iq4_xs, ...); IN raw blocks;
 *                                   OUT receives little-endian f32 values, one per element.
 * Exit 0, or 1 with a message on stderr (unknown type, IN not whole blocks, I/O errors).
 */
#include <stdio.h>
#include <stdlib.h>

#include "tb_dtype.h"

static unsigned char *s_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tb_dequant TYPE IN OUT\n");
        return 1;
    }
    tb_dtype_t t;
    if (!tb_dtype_from_name(argv[1], &t)) {
        fprintf(stderr, "tb_dequant: unknown type '%s'\n", argv[1]);
        return 1;
    }
    size_t len = 0;
    unsigned char *in = s_read(argv[2], &len);
    if (!in) {
        fprintf(stderr, "tb_dequant: cannot read '%s'\n", argv[2]);
        return 1;
    }
    size_t bb = tb_dtype_block_bytes(t), be = tb_dtype_block_elems(t);
    if (len % bb != 0) {
        fprintf(stderr, "tb_dequant: %zu bytes are not whole %s blocks of %zu\n", len, argv[1],
                bb);
        free(in);
        return 1;
    }
    size_t n = len / bb * be;
    float *out = malloc((n ? n : 1) * sizeof *out);
    int rc = 1;
    if (out && tb_dtype_to_f32(t, in, out, n) == 0) {
        FILE *f = fopen(argv[3], "wb");
        if (f && fwrite(out, sizeof *out, n, f) == n && fclose(f) == 0) {
            rc = 0;
        } else {
            fprintf(stderr, "tb_dequant: cannot write '%s'\n", argv[3]);
        }
    } else {
        fprintf(stderr, "tb_dequant: cannot decode %zu %s values\n", n, argv[1]);
    }
    free(out);
    free(in);
    return rc;
}
