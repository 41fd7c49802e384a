/*
 * tb_tokenize - drive the tokenizer library from the command line (tests and debugging).
 *
 *   tb_tokenize MODEL [--text T] [--pieces] [--no-special] [--no-parse-special] [--bench N]
 *       encodes T (or all of stdin) and prints the ids space-separated on one line;
 *       --pieces prints "id<TAB>piece" lines instead; --no-special adds no BOS/EOS;
 *       --no-parse-special encodes special-token text as plain text;
 *       --bench N encodes N times and prints the throughput.
 *   tb_tokenize MODEL --decode [--skip-special] [--stream] [--prefix K] IDS...
 *       prints the text of the ids (exact bytes, no newline added); --stream goes through the
 *       streaming detokenizer one id at a time; --prefix K streams only the ids after the first
 *       K as the continuation of their text.
 *   tb_tokenize MODEL --info
 *       prints the vocabulary size and special ids.
 *
 * MODEL is a folder with tokenizer.json, a tokenizer.json, or a .gguf file.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_detok.h"
#include "tb_tokenizer.h"

static int s_usage(void)
{
    fprintf(stderr, "usage: tb_tokenize MODEL [--text T] [--pieces] [--no-special] "
                    "[--no-parse-special] [--bench N]\n"
                    "       tb_tokenize MODEL --decode [--skip-special] [--stream] "
                    "[--prefix K] IDS...\n"
                    "       tb_tokenize MODEL --info\n");
    return 2;
}

static char *s_read_stdin(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) {
            break;
        }
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

static int s_decode(const tb_tokenizer_t *tok, int argc, char **argv, int i, bool skip,
                    bool stream, long prefix)
{
    size_t n = 0;
    int32_t *ids = calloc((size_t)argc + 1, sizeof(int32_t));
    if (!ids) {
        return 1;
    }
    for (; i < argc; i++) {
        ids[n++] = (int32_t)strtol(argv[i], NULL, 10);
    }
    int rc = 0;
    if (!stream && prefix == 0) {
        char *text = NULL;
        size_t len = 0;
        rc = tb_tokenizer_decode(tok, ids, n, skip, &text, &len);
        if (rc == 0) {
            fwrite(text, 1, len, stdout);
        }
        free(text);
    } else {
        tb_detok_t *d = NULL;
        const char *s = NULL;
        size_t len = 0;
        rc = tb_detok_new(tok, skip, &d);
        if (rc == 0 && prefix > 0) {
            rc = tb_detok_set_continuation(d);
        }
        for (size_t k = prefix > 0 ? (size_t)prefix : 0; rc == 0 && k < n; k++) {
            rc = tb_detok_push(d, ids[k], &s, &len);
            if (rc == 0) {
                fwrite(s, 1, len, stdout);
            }
        }
        if (rc == 0) {
            rc = tb_detok_flush(d, &s, &len);
        }
        if (rc == 0) {
            fwrite(s, 1, len, stdout);
        }
        tb_detok_destroy(&d);
    }
    free(ids);
    if (rc != 0) {
        fprintf(stderr, "tb_tokenize: decode failed (%d)\n", rc);
        return 1;
    }
    return 0;
}

static void s_print_piece(const tb_tokenizer_t *tok, int32_t id)
{
    size_t len = 0;
    const char *p = tb_tokenizer_piece(tok, id, &len);
    printf("%d\t", id);
    for (size_t i = 0; p && i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7F || c == '\\') {
            printf("\\x%02x", c);
        } else {
            putchar(c);
        }
    }
    putchar('\n');
}

int main(int argc, char **argv)
{
    const char *text = NULL;
    bool pieces = false, add_special = true, parse_special = true, decode = false;
    bool skip = false, stream = false, info = false;
    long bench = 0, prefix = 0;
    int i = 2;
    if (argc < 2) {
        return s_usage();
    }
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc) {
            text = argv[++i];
        } else if (!strcmp(argv[i], "--pieces")) {
            pieces = true;
        } else if (!strcmp(argv[i], "--no-special")) {
            add_special = false;
        } else if (!strcmp(argv[i], "--no-parse-special")) {
            parse_special = false;
        } else if (!strcmp(argv[i], "--bench") && i + 1 < argc) {
            bench = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--decode")) {
            decode = true;
        } else if (!strcmp(argv[i], "--skip-special")) {
            skip = true;
        } else if (!strcmp(argv[i], "--stream")) {
            stream = true;
        } else if (!strcmp(argv[i], "--prefix") && i + 1 < argc) {
            prefix = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--info")) {
            info = true;
        } else if (decode) {
            break; /* the ids */
        } else {
            return s_usage();
        }
    }
    char err[512] = "";
    tb_tokenizer_t *tok = NULL;
    if (tb_tokenizer_load(argv[1], &tok, err, sizeof(err)) != 0) {
        fprintf(stderr, "tb_tokenize: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (info) {
        const int32_t *eos = NULL;
        size_t n_eos = tb_tokenizer_eos_ids(tok, &eos);
        printf("kind %s\nvocab_size %zu\nbos %d\neos %d\nadds_bos %d\nadds_eos %d\neos_ids",
               tb_tokenizer_kind(tok) == TB_TOKENIZER_SPM ? "spm" : "byte_level",
               tb_tokenizer_vocab_size(tok), tb_tokenizer_bos(tok), tb_tokenizer_eos(tok),
               tb_tokenizer_adds_bos(tok), tb_tokenizer_adds_eos(tok));
        for (size_t k = 0; k < n_eos; k++) {
            printf(" %d", eos[k]);
        }
        printf("\n");
    } else if (decode) {
        rc = s_decode(tok, argc, argv, i, skip, stream, prefix);
    } else {
        size_t len = 0;
        char *owned = NULL;
        if (text) {
            len = strlen(text);
        } else {
            owned = s_read_stdin(&len);
            text = owned;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        int e = text ? tb_tokenizer_encode(tok, text, len, add_special, parse_special, &ids, &n)
                     : -12;
        if (e == 0 && bench > 0) {
            struct timespec t0, t1;
            size_t total = 0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (long k = 0; k < bench && e == 0; k++) {
                int32_t *again = NULL;
                size_t m = 0;
                e = tb_tokenizer_encode(tok, text, len, add_special, parse_special, &again, &m);
                total += m;
                free(again);
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double sec = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
            printf("bytes %zu tokens %zu runs %ld seconds %.4f tokens_per_s %.0f MB_per_s %.2f\n",
                   len, n, bench, sec, (double)total / sec, (double)len * bench / sec / 1e6);
        } else if (e == 0 && pieces) {
            for (size_t k = 0; k < n; k++) {
                s_print_piece(tok, ids[k]);
            }
        } else if (e == 0) {
            for (size_t k = 0; k < n; k++) {
                printf(k ? " %d" : "%d", ids[k]);
            }
            printf("\n");
        }
        if (e != 0) {
            fprintf(stderr, "tb_tokenize: encode failed (%d)\n", e);
            rc = 1;
        }
        free(ids);
        free(owned);
    }
    tb_tokenizer_destroy(&tok);
    return rc;
}
