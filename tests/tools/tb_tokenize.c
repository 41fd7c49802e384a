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
 *       K, as the continuation of the text of those K.
 *   tb_tokenize MODEL --info
 *       prints the vocabulary size and special ids.
 *   --batch (with encode or decode) reads many inputs from stdin separated by NUL bytes (texts,
 *       or space-separated ids) and writes one result per input: an ids line when encoding,
 *       the text followed by a NUL byte when decoding.  A decode input "K: ids" streams the ids
 *       after the first K as a continuation (like --prefix K).
 *
 * MODEL is a folder with tokenizer.json, a tokenizer.json, or a .gguf file.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_buf.h"
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
    struct tb_buf b = {0};
    if (tb_buf_read_file(&b, stdin) != 0) {
        tb_buf_free(&b);
        return NULL;
    }
    return tb_buf_steal(&b, len);
}

/* Parses space-separated ids from s[0..len). Caller frees *ids. */
static size_t s_parse_ids(const char *s, size_t len, int32_t **ids)
{
    size_t n = 0;
    *ids = calloc(len / 2 + 2, sizeof(int32_t));
    const char *p = s, *end = s + len;
    while (*ids && p < end) {
        char *next = NULL;
        long v = strtol(p, &next, 10);
        if (next == p) {
            p++;
            continue;
        }
        (*ids)[n++] = (int32_t)v;
        p = next;
    }
    return n;
}

static int s_decode(const tb_tokenizer_t *tok, int32_t *ids, size_t n, bool skip, bool stream,
                    long prefix)
{
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
            rc = tb_detok_set_prefix(d, ids, (size_t)prefix < n ? (size_t)prefix : n);
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

struct opts {
    const char *text;
    bool pieces, add_special, parse_special, decode, skip, stream, info, batch;
    long bench, prefix;
    int first_id; /* argv index of the first id (decode) */
};

/* 0, or -1 for a usage error. */
static int s_parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.add_special = true, .parse_special = true};
    int i = 2;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc) {
            o->text = argv[++i];
        } else if (!strcmp(argv[i], "--pieces")) {
            o->pieces = true;
        } else if (!strcmp(argv[i], "--no-special")) {
            o->add_special = false;
        } else if (!strcmp(argv[i], "--no-parse-special")) {
            o->parse_special = false;
        } else if (!strcmp(argv[i], "--bench") && i + 1 < argc) {
            o->bench = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--decode")) {
            o->decode = true;
        } else if (!strcmp(argv[i], "--skip-special")) {
            o->skip = true;
        } else if (!strcmp(argv[i], "--stream")) {
            o->stream = true;
        } else if (!strcmp(argv[i], "--prefix") && i + 1 < argc) {
            o->prefix = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--info")) {
            o->info = true;
        } else if (!strcmp(argv[i], "--batch")) {
            o->batch = true;
        } else if (o->decode) {
            break; /* the ids */
        } else {
            return -1;
        }
    }
    o->first_id = i;
    return 0;
}

static void s_info(const tb_tokenizer_t *tok)
{
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
}

/* --decode --batch: NUL-separated id lists on stdin ("K: ids" continues after the first K). */
static int s_decode_batch(const tb_tokenizer_t *tok, const struct opts *o)
{
    int rc = 0;
    size_t len = 0;
    char *in = s_read_stdin(&len);
    for (size_t at = 0; in && at < len && rc == 0;) {
        char *nul = memchr(in + at, '\0', len - at);
        size_t end = nul ? (size_t)(nul - in) : len;
        int32_t *ids = NULL;
        long k = o->prefix;
        const char *colon = memchr(in + at, ':', end - at);
        if (colon) {
            k = strtol(in + at, NULL, 10);
            at = (size_t)(colon + 1 - in);
        }
        size_t n = s_parse_ids(in + at, end - at, &ids);
        rc = ids ? s_decode(tok, ids, n, o->skip, o->stream || k > 0, k) : 1;
        fputc('\0', stdout);
        free(ids);
        at = end + 1;
    }
    free(in);
    return rc;
}

/* --decode IDS... from the command line. */
static int s_decode_args(const tb_tokenizer_t *tok, const struct opts *o, int argc, char **argv)
{
    int32_t *ids = calloc((size_t)argc + 1, sizeof(int32_t));
    size_t n = 0;
    for (int i = o->first_id; ids && i < argc; i++) {
        ids[n++] = (int32_t)strtol(argv[i], NULL, 10);
    }
    int rc = ids ? s_decode(tok, ids, n, o->skip, o->stream, o->prefix) : 1;
    free(ids);
    return rc;
}

static void s_print_ids(const int32_t *ids, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        printf(k ? " %d" : "%d", ids[k]);
    }
    printf("\n");
}

/* --batch: NUL-separated texts on stdin, one ids line (or "ERROR code") each. */
static int s_encode_batch(const tb_tokenizer_t *tok, const struct opts *o)
{
    size_t len = 0;
    char *in = s_read_stdin(&len);
    for (size_t at = 0; in && at < len;) {
        char *nul = memchr(in + at, '\0', len - at);
        size_t end = nul ? (size_t)(nul - in) : len;
        int32_t *ids = NULL;
        size_t n = 0;
        int e = tb_tokenizer_encode(tok, in + at, end - at, o->add_special, o->parse_special,
                                    &ids, &n);
        if (e != 0) {
            printf("ERROR %d\n", e);
        } else {
            s_print_ids(ids, n);
        }
        free(ids);
        if (!nul) {
            break;
        }
        at = end + 1;
    }
    free(in);
    return 0;
}

/* --bench N: encodes the text N more times and prints the throughput. */
static int s_bench(const tb_tokenizer_t *tok, const struct opts *o, const char *text, size_t len,
                   size_t n)
{
    struct timespec t0, t1;
    size_t total = 0;
    int e = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < o->bench && e == 0; k++) {
        int32_t *again = NULL;
        size_t m = 0;
        e = tb_tokenizer_encode(tok, text, len, o->add_special, o->parse_special, &again, &m);
        total += m;
        free(again);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("bytes %zu tokens %zu runs %ld seconds %.4f tokens_per_s %.0f MB_per_s %.2f\n", len, n,
           o->bench, sec, (double)total / sec, (double)len * o->bench / sec / 1e6);
    return e;
}

/* Encodes --text (or all of stdin): ids, pieces, or a benchmark. */
static int s_encode_one(const tb_tokenizer_t *tok, const struct opts *o)
{
    size_t len = 0;
    char *owned = NULL;
    const char *text = o->text;
    if (text) {
        len = strlen(text);
    } else {
        owned = s_read_stdin(&len);
        text = owned;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int e = text ? tb_tokenizer_encode(tok, text, len, o->add_special, o->parse_special, &ids, &n)
                 : -12;
    if (e == 0 && o->bench > 0) {
        e = s_bench(tok, o, text, len, n);
    } else if (e == 0 && o->pieces) {
        for (size_t k = 0; k < n; k++) {
            s_print_piece(tok, ids[k]);
        }
    } else if (e == 0) {
        s_print_ids(ids, n);
    }
    int rc = 0;
    if (e != 0) {
        fprintf(stderr, "tb_tokenize: encode failed (%d)\n", e);
        rc = 1;
    }
    free(ids);
    free(owned);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (argc < 2 || s_parse_args(argc, argv, &o) != 0) {
        return s_usage();
    }
    char err[512] = "";
    tb_tokenizer_t *tok = NULL;
    if (tb_tokenizer_load(argv[1], &tok, err, sizeof(err)) != 0) {
        fprintf(stderr, "tb_tokenize: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (o.info) {
        s_info(tok);
    } else if (o.decode && o.batch) {
        rc = s_decode_batch(tok, &o);
    } else if (o.decode) {
        rc = s_decode_args(tok, &o, argc, argv);
    } else if (o.batch) {
        rc = s_encode_batch(tok, &o);
    } else {
        rc = s_encode_one(tok, &o);
    }
    tb_tokenizer_destroy(&tok);
    return rc;
}
