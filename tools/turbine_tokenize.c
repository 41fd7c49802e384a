/*
 * turbine-tokenize: `turbine tokenize` and `turbine detokenize` over the tokenizer library.
 *
 * A separate executable, installed beside `turbine` (build/<mode>/bin/), so that the core links
 * no tokenizer, regex or Unicode library: the `turbine` CLI execs this tool with its own
 * arguments (core/tb_tools.c).  argv[1] is "tokenize" or "detokenize".  Exit status 0, 1 (model
 * problem) or 2 (usage).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"
#include "tb_errors.h"
#include "tb_tokenizer.h"

static const char s_usage[] =
    "usage: turbine tokenize --model PATH [--text TEXT] [--pieces] [--no-special]\n"
    "       turbine detokenize --model PATH [--keep-special] IDS...\n"
    "\n"
    "PATH is a model folder with tokenizer.json, a tokenizer.json, or a .gguf file.\n"
    "  tokenize:   encode TEXT (or all of stdin) and print the ids on one line; --pieces prints\n"
    "              one 'id<TAB>piece' line per token; --no-special adds no BOS/EOS\n"
    "  detokenize: print the text of the ids (special tokens left out unless --keep-special)\n";

/* All of `f`, NUL-terminated; malloc'd, or NULL when reading failed. */
static char *s_read_all(FILE *f, size_t *len)
{
    struct tb_buf b = {0};
    if (tb_buf_read_file(&b, f) != 0) {
        tb_buf_free(&b);
        return NULL;
    }
    return tb_buf_steal(&b, len);
}

static void s_print_piece(const tb_tokenizer_t *tok, int32_t id)
{
    size_t len = 0;
    const char *p = tb_tokenizer_piece(tok, id, &len);
    printf("%d\t", (int)id);
    for (size_t i = 0; p && i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f || c == '\\') {
            printf("\\x%02x", c);
        } else {
            putchar(c);
        }
    }
    putchar('\n');
}

static int s_tools_main(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                         {"text", required_argument, NULL, 't'},
                                         {"pieces", no_argument, NULL, 'p'},
                                         {"no-special", no_argument, NULL, 'n'},
                                         {"keep-special", no_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool detok = strcmp(argv[0], "detokenize") == 0;
    const char *model = NULL;
    const char *text = NULL;
    bool pieces = false, special = true, keep = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 't':
            text = optarg;
            break;
        case 'p':
            pieces = true;
            break;
        case 'n':
            special = false;
            break;
        case 'k':
            keep = true;
            break;
        case 'h':
            fputs(s_usage, stdout);
            return 0;
        default:
            fputs(s_usage, stderr);
            return 2;
        }
    }
    if (!model || (detok && optind >= argc) || (!detok && optind != argc)) {
        fputs(s_usage, stderr);
        return 2;
    }
    tb_tokenizer_t *tok = NULL;
    char err[512];
    if (tb_tokenizer_load(model, &tok, err, sizeof(err)) != 0) {
        fprintf(stderr, "turbine %s: cannot load a tokenizer from '%s': %s\n", argv[0], model,
                err);
        return 1;
    }
    int status = 0;
    if (detok) {
        size_t n = (size_t)(argc - optind);
        int32_t *ids = calloc(n, sizeof(*ids));
        for (size_t i = 0; ids && i < n; i++) {
            char *end;
            errno = 0;
            long v = strtol(argv[optind + (int)i], &end, 10);
            if (*end || errno || v < 0 || v > INT32_MAX) {
                fprintf(stderr, "turbine detokenize: '%s' is not a token id\n",
                        argv[optind + (int)i]);
                status = 2;
                break;
            }
            ids[i] = (int32_t)v;
        }
        char *out = NULL;
        size_t len = 0;
        if (status == 0 && ids && tb_tokenizer_decode(tok, ids, n, !keep, &out, &len) == 0) {
            fwrite(out, 1, len, stdout);
            putchar('\n');
        } else if (status == 0) {
            fprintf(stderr, "turbine detokenize: %s\n",
                    ids ? "decoding failed" : "out of memory");
            status = 1;
        }
        free(out);
        free(ids);
    } else {
        size_t len = 0;
        char *buf = text ? strdup(text) : s_read_all(stdin, &len);
        if (text && buf) {
            len = strlen(buf);
        }
        int32_t *ids = NULL;
        size_t n = 0;
        int rc = buf ? tb_tokenizer_encode(tok, buf, len, special, true, &ids, &n) : TB_ENOMEM;
        if (!buf) {
            fprintf(stderr, "turbine tokenize: %s\n",
                    text ? "out of memory" : "cannot read the text from standard input");
            status = 1;
        } else if (rc != 0) {
            fprintf(stderr, "turbine tokenize: %s\n",
                    rc == TB_EINVAL ? "the text is not valid UTF-8" : "encoding failed");
            status = 1;
        } else if (pieces) {
            for (size_t i = 0; i < n; i++) {
                s_print_piece(tok, ids[i]);
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                printf(i ? " %d" : "%d", (int)ids[i]);
            }
            putchar('\n');
        }
        free(ids);
        free(buf);
    }
    tb_tokenizer_destroy(&tok);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "tokenize") != 0 && strcmp(argv[1], "detokenize") != 0)) {
        fputs(s_usage, stderr);
        return 2;
    }
    return s_tools_main(argc - 1, argv + 1);
}
