/*
 * tb_tokenizer.c - the tokenizer class: the encode pipeline (added tokens, normalizer,
 * pre-tokenizer, BPE, post-processor), the decoder tables behind decode and tb_detok, and the
 * accessors.  The loaders live in tb_tokenizer_hf.c and tb_tokenizer_gguf.c.
 *
 * Encoding follows Hugging Face `tokenizers`:
 *  1. added tokens whose content is matched raw are split out of the text (leftmost-longest,
 *     honouring single_word / lstrip / rstrip);
 *  2. each remaining piece is normalized, then normalized added tokens are split out of it;
 *  3. each remaining piece is pre-tokenized into words and each word BPE-encoded;
 *  4. with add_special, the post-processor's ids are put around the result.
 */
#include "tb_tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_detok.h"
#include "tb_errors.h"
#include "tb_tok_utf8.h"
#include "tb_tokenizer_impl.h"

int tb_tokenizer_alloc(size_t n, tb_tokenizer_t **out)
{
    int rc = 0;
    struct tb_tokenizer *tok = calloc(1, sizeof(*tok));
    *out = NULL;
    if (!tok) {
        return TB_ENOMEM;
    }
    tok->bos = -1;
    tok->eos = -1;
    rc = tb_tok_vocab_new(n, &tok->vocab);
    if (rc < 0) {
        goto fail;
    }
    tok->attr = calloc(n ? n : 1, sizeof(*tok->attr));
    tok->scores = calloc(n ? n : 1, sizeof(float));
    if (!tok->attr || !tok->scores) {
        rc = TB_ENOMEM;
        goto fail;
    }
    *out = tok;
    return 0;
fail:
    tb_tokenizer_destroy(&tok);
    return rc;
}

static void s_trie_release(struct tb_tok_trie *t)
{
    free(t->nodes);
    memset(t, 0, sizeof(*t));
}

void tb_tokenizer_destroy(tb_tokenizer_t **tok_p)
{
    if (!tok_p || !*tok_p) {
        return;
    }
    struct tb_tokenizer *tok = *tok_p;
    tb_tok_vocab_destroy(&tok->vocab);
    free(tok->attr);
    free(tok->scores);
    tb_bpe_destroy(&tok->bpe);
    tb_tok_norm_destroy(&tok->norm);
    tb_pretok_destroy(&tok->pretok);
    for (size_t i = 0; i < tok->n_added; i++) {
        free(tok->added[i].content);
    }
    free(tok->added);
    s_trie_release(&tok->raw_trie);
    s_trie_release(&tok->norm_trie);
    tb_tok_ids_release(&tok->prefix);
    tb_tok_ids_release(&tok->suffix);
    tb_tok_ids_release(&tok->eos_ids);
    tb_buf_free(&tok->dec_arena);
    free(tok->dec_off);
    free(tok->dec_len);
    free(tok->dec_first_off);
    free(tok->dec_first_len);
    free(tok);
    *tok_p = NULL;
}

int tb_tokenizer_add_added(tb_tokenizer_t *tok, int32_t id, const char *content, size_t len,
                           bool special, bool lstrip, bool rstrip, bool single_word,
                           bool normalized)
{
    if (id < 0 || (size_t)id >= tb_tok_vocab_size(tok->vocab)) {
        return TB_ERANGE;
    }
    struct tb_tok_added *a = realloc(tok->added, (tok->n_added + 1) * sizeof(*a));
    if (!a) {
        return TB_ENOMEM;
    }
    tok->added = a;
    char *c = malloc(len + 1);
    if (!c) {
        return TB_ENOMEM;
    }
    memcpy(c, content, len);
    c[len] = '\0';
    struct tb_tok_added *t = &a[tok->n_added++];
    t->id = id;
    t->content = c;
    t->len = len;
    t->special = special;
    t->lstrip = lstrip;
    t->rstrip = rstrip;
    t->single_word = single_word;
    t->normalized = normalized;
    tok->attr[id] |= TB_TOK_ATTR_ADDED | (special ? TB_TOK_ATTR_SPECIAL : 0);
    return 0;
}

/* ---- trie of added tokens ---------------------------------------------------------------- */

static int32_t s_trie_node(struct tb_tok_trie *t, uint8_t byte)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct tb_tok_trie_node *nodes = realloc(t->nodes, cap * sizeof(*nodes));
        if (!nodes) {
            return -1;
        }
        t->nodes = nodes;
        t->cap = cap;
    }
    struct tb_tok_trie_node *n = &t->nodes[t->n];
    n->child = -1;
    n->sibling = -1;
    n->added = -1;
    n->byte = byte;
    return (int32_t)t->n++;
}

static int32_t s_trie_child(const struct tb_tok_trie *t, int32_t node, uint8_t byte)
{
    for (int32_t c = t->nodes[node].child; c >= 0; c = t->nodes[c].sibling) {
        if (t->nodes[c].byte == byte) {
            return c;
        }
    }
    return -1;
}

/* Inserts added token `idx`; an identical content inserted earlier keeps its place. */
static int s_trie_insert(struct tb_tok_trie *t, const char *s, size_t len, int32_t idx)
{
    if (len == 0) {
        return 0;
    }
    if (t->n == 0 && s_trie_node(t, 0) < 0) {
        return TB_ENOMEM;
    }
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = s_trie_child(t, node, b);
        if (c < 0) {
            c = s_trie_node(t, b);
            if (c < 0) {
                return TB_ENOMEM;
            }
            t->nodes[c].sibling = t->nodes[node].child;
            t->nodes[node].child = c;
        }
        node = c;
    }
    if (t->nodes[node].added < 0) {
        t->nodes[node].added = idx;
    }
    t->first[(uint8_t)s[0]] = true;
    return 0;
}

/* Longest added token starting at s[0]; returns its index or -1 and sets *mlen.  Special
 * tokens are skipped when `no_special`. */
static int32_t s_trie_longest(const tb_tokenizer_t *tok, const struct tb_tok_trie *t,
                              const char *s, size_t len, bool no_special, size_t *mlen)
{
    int32_t node = 0, best = -1;
    for (size_t i = 0; i < len; i++) {
        node = s_trie_child(t, node, (uint8_t)s[i]);
        if (node < 0) {
            break;
        }
        int32_t a = t->nodes[node].added;
        if (a >= 0 && !(no_special && tok->added[a].special)) {
            best = a;
            *mlen = i + 1;
        }
    }
    return best;
}

/* ---- decoder tables ------------------------------------------------------------------------ */

static bool s_hex(char c, unsigned *v)
{
    if (c >= '0' && c <= '9') {
        *v = (unsigned)(c - '0');
    } else if (c >= 'A' && c <= 'F') {
        *v = (unsigned)(c - 'A' + 10);
    } else if (c >= 'a' && c <= 'f') {
        *v = (unsigned)(c - 'a' + 10);
    } else {
        return false;
    }
    return true;
}

/* Runs the per-token decoder steps (those before the text is fused) over one piece. */
static int s_decode_piece(const struct tb_dec_step *steps, size_t n, const char *piece,
                          size_t len, bool first, struct tb_buf *cur, struct tb_buf *tmp)
{
    int rc = 0;
    bool raw_byte = false;
    tb_buf_clear(cur);
    rc = tb_buf_append(cur, piece, len);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct tb_dec_step *st = &steps[i];
        if (st->kind == TB_DEC_FUSE) {
            break;
        }
        if (raw_byte) {
            continue;
        }
        tb_buf_clear(tmp);
        switch (st->kind) {
        case TB_DEC_REPLACE:
            for (size_t k = 0; rc == 0 && k < cur->len;) {
                if (st->pattern_len > 0 && k + st->pattern_len <= cur->len &&
                    !memcmp((char *)cur->data + k, st->pattern, st->pattern_len)) {
                    rc = tb_buf_append(tmp, st->content, st->content_len);
                    k += st->pattern_len;
                } else {
                    rc = tb_buf_append(tmp, (char *)cur->data + k, 1);
                    k++;
                }
            }
            break;
        case TB_DEC_BYTE_FALLBACK: {
            unsigned hi, lo;
            if (cur->len == 6 && !memcmp((char *)cur->data, "<0x", 3) &&
                ((char *)cur->data)[5] == '>' && s_hex(((char *)cur->data)[3], &hi) &&
                s_hex(((char *)cur->data)[4], &lo)) {
                char b = (char)(hi * 16 + lo);
                rc = tb_buf_append(tmp, &b, 1);
                raw_byte = true;
            } else {
                rc = tb_buf_append(tmp, (char *)cur->data, cur->len);
            }
            break;
        }
        case TB_DEC_BYTE_LEVEL: {
            /* All characters in the alphabet: their bytes; otherwise the token as it is. */
            bool all = true;
            for (size_t k = 0; rc == 0 && k < cur->len;) {
                uint32_t cp = 0;
                size_t cl = 1;
                int b = -1;
                if (tb_utf8_decode(cur->data + k, cur->len - k, &cp, &cl) == TB_UTF8_OK) {
                    b = tb_tok_cp_to_byte(cp);
                }
                if (b < 0) {
                    all = false;
                    break;
                }
                char c = (char)b;
                rc = tb_buf_append(tmp, &c, 1);
                k += cl;
            }
            if (rc == 0 && !all) {
                tb_buf_clear(tmp);
                rc = tb_buf_append(tmp, (char *)cur->data, cur->len);
            }
            break;
        }
        case TB_DEC_METASPACE: {
            char rep[4];
            size_t rl = tb_utf8_encode(st->cp, rep);
            for (size_t k = 0; rc == 0 && k < cur->len;) {
                if (k + rl <= cur->len && !memcmp((char *)cur->data + k, rep, rl)) {
                    if (!(first && st->prepend)) {
                        rc = tb_buf_append(tmp, " ", 1);
                    }
                    k += rl;
                } else {
                    rc = tb_buf_append(tmp, (char *)cur->data + k, 1);
                    k++;
                }
            }
            break;
        }
        case TB_DEC_STRIP: {
            char c[4];
            size_t cl = tb_utf8_encode(st->cp, c);
            size_t a = 0, b = cur->len;
            for (size_t k = 0;
                 k < st->start && a + cl <= b && !memcmp((char *)cur->data + a, c, cl); k++) {
                a += cl;
            }
            for (size_t k = 0;
                 k < st->stop && b >= a + cl && !memcmp((char *)cur->data + b - cl, c, cl); k++) {
                b -= cl;
            }
            rc = tb_buf_append(tmp, (char *)cur->data + a, b - a);
            break;
        }
        case TB_DEC_FUSE:
            break;
        }
        struct tb_buf t = *cur;
        *cur = *tmp;
        *tmp = t;
        if (st->kind == TB_DEC_BYTE_LEVEL) {
            break; /* it fuses the tokens */
        }
    }
    return rc;
}

static int s_build_decoder(tb_tokenizer_t *tok, const struct tb_dec_step *steps, size_t n,
                           char *err, size_t err_len)
{
    int rc = 0;
    size_t nv = tb_tok_vocab_size(tok->vocab);
    struct tb_buf cur, tmp;
    tb_buf_init(&cur);
    tb_buf_init(&tmp);

    tok->dec_join = steps == NULL || n == 0;
    /* Steps after the fuse point act on the whole text: only a leading Strip is supported. */
    bool fused = false, first_variant = false;
    for (size_t i = 0; i < n; i++) {
        if (fused) {
            if (steps[i].kind == TB_DEC_STRIP && steps[i].stop == 0) {
                tok->strip_cp = steps[i].cp;
                tok->strip_n = steps[i].start;
                continue;
            }
            if (steps[i].kind == TB_DEC_FUSE) {
                continue;
            }
            tb_err_set(err, err_len,
                       "unsupported decoder: step %zu after the tokens are fused "
                       "(only a leading Strip is supported there)",
                       i);
            return TB_ENOTSUP;
        }
        if (steps[i].kind == TB_DEC_FUSE || steps[i].kind == TB_DEC_BYTE_LEVEL) {
            fused = true;
        }
        if (steps[i].kind == TB_DEC_METASPACE && steps[i].prepend) {
            first_variant = true;
        }
    }
    tok->dec_off = calloc(nv ? nv : 1, sizeof(uint32_t));
    tok->dec_len = calloc(nv ? nv : 1, sizeof(uint32_t));
    if (first_variant) {
        tok->dec_first_off = calloc(nv ? nv : 1, sizeof(uint32_t));
        tok->dec_first_len = calloc(nv ? nv : 1, sizeof(uint32_t));
    }
    if (!tok->dec_off || !tok->dec_len ||
        (first_variant && (!tok->dec_first_off || !tok->dec_first_len))) {
        rc = TB_ENOMEM;
        goto done;
    }
    for (size_t id = 0; id < nv && rc == 0; id++) {
        size_t len = 0;
        const char *piece = tb_tok_vocab_piece(tok->vocab, (int32_t)id, &len);
        if (!piece) {
            continue;
        }
        for (int variant = 0; variant < (first_variant ? 2 : 1) && rc == 0; variant++) {
            if (tok->attr[id] & TB_TOK_ATTR_EMPTY) {
                tb_buf_clear(&cur);
            } else if (tok->attr[id] & TB_TOK_ATTR_RAW) {
                tb_buf_clear(&cur);
                rc = tb_buf_append(&cur, piece, len);
            } else {
                rc = s_decode_piece(steps, n, piece, len, variant == 1, &cur, &tmp);
            }
            if (rc == 0 && (tok->dec_arena.len > UINT32_MAX - cur.len - 1)) {
                rc = TB_E2BIG;
            }
            if (rc == 0) {
                uint32_t off = (uint32_t)tok->dec_arena.len;
                rc = tb_buf_append(&tok->dec_arena, cur.data ? (char *)cur.data : "", cur.len);
                if (variant == 0) {
                    tok->dec_off[id] = off;
                    tok->dec_len[id] = (uint32_t)cur.len;
                } else {
                    tok->dec_first_off[id] = off;
                    tok->dec_first_len[id] = (uint32_t)cur.len;
                }
            }
        }
    }
    if (rc == 0 && !tok->dec_arena.data) {
        rc = tb_buf_append(&tok->dec_arena, "", 0);
    }
done:
    if (rc == TB_ENOMEM) {
        tb_err_set(err, err_len, "out of memory building the decoder tables");
    }
    tb_buf_free(&cur);
    tb_buf_free(&tmp);
    return rc;
}

const char *tb_tok_dec_bytes(const tb_tokenizer_t *tok, int32_t id, bool first, size_t *len)
{
    if (first && tok->dec_first_off) {
        *len = tok->dec_first_len[id];
        return (char *)tok->dec_arena.data + tok->dec_first_off[id];
    }
    *len = tok->dec_len[id];
    return (char *)tok->dec_arena.data + tok->dec_off[id];
}

int tb_tokenizer_finish(tb_tokenizer_t *tok, const struct tb_dec_step *steps, size_t n_steps,
                        char *err, size_t err_len)
{
    int rc = 0;
    struct tb_buf nb;
    tb_buf_init(&nb);
    for (size_t i = 0; i < tok->n_added && rc == 0; i++) {
        struct tb_tok_added *a = &tok->added[i];
        if (a->normalized && !tb_tok_norm_is_empty(tok->norm)) {
            rc = tb_tok_norm_apply(tok->norm, a->content, a->len, &nb);
            if (rc == 0) {
                char *c = realloc(a->content, nb.len + 1);
                if (!c) {
                    rc = TB_ENOMEM;
                    break;
                }
                memcpy(c, (char *)nb.data, nb.len + 1);
                a->content = c;
                a->len = nb.len;
            }
        }
        if (rc == 0) {
            rc = s_trie_insert(a->normalized ? &tok->norm_trie : &tok->raw_trie, a->content,
                               a->len, (int32_t)i);
        }
    }
    tb_buf_free(&nb);
    if (rc < 0) {
        tb_err_set(err, err_len, "cannot index the added tokens (%d)", rc);
        return rc;
    }
    rc = s_build_decoder(tok, steps, n_steps, err, err_len);
    if (rc < 0) {
        return rc;
    }
    /* EOS first, no duplicates, only ids inside the vocabulary. */
    struct tb_tok_ids uniq;
    tb_tok_ids_init(&uniq);
    if (tok->eos >= 0) {
        rc = tb_tok_ids_push(&uniq, tok->eos);
    }
    for (size_t i = 0; i < tok->eos_ids.len && rc == 0; i++) {
        int32_t id = tok->eos_ids.ptr[i];
        bool seen = id < 0 || (size_t)id >= tb_tok_vocab_size(tok->vocab);
        for (size_t k = 0; k < uniq.len && !seen; k++) {
            seen = uniq.ptr[k] == id;
        }
        if (!seen) {
            rc = tb_tok_ids_push(&uniq, id);
        }
    }
    tb_tok_ids_release(&tok->eos_ids);
    tok->eos_ids = uniq;
    tok->adds_bos = tok->bos >= 0 && tok->prefix.len > 0 && tok->prefix.ptr[0] == tok->bos;
    tok->adds_eos = tok->eos >= 0 && tok->suffix.len > 0 &&
                    tok->suffix.ptr[tok->suffix.len - 1] == tok->eos;
    return rc;
}

/* ---- encode -------------------------------------------------------------------------------- */

struct enc {
    const tb_tokenizer_t *tok;
    bool parse_special;
    struct tb_tok_ids *ids;
    struct tb_buf norm;
    struct tb_pretok_work pw;
    struct tb_bpe_work bw;
};

/* One piece of a text split by added tokens: text [a, b) or the token `id`. */
struct piece {
    size_t a, b;
    int32_t id; /* -1: text */
};

struct pieces {
    struct piece *p;
    size_t n, cap;
};

static int s_piece_push(struct pieces *ps, size_t a, size_t b, int32_t id)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        struct piece *p = realloc(ps->p, cap * sizeof(*p));
        if (!p) {
            return TB_ENOMEM;
        }
        ps->p = p;
        ps->cap = cap;
    }
    ps->p[ps->n++] = (struct piece){a, b, id};
    return 0;
}

static uint32_t s_cp_before(const char *s, size_t at)
{
    size_t k = at - 1;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80) {
        k--;
    }
    uint32_t cp = 0;
    size_t cl = 1;
    tb_utf8_decode((const uint8_t *)s + k, at - k, &cp, &cl);
    return cp;
}

static uint32_t s_cp_at(const char *s, size_t len, size_t at)
{
    uint32_t cp = 0;
    size_t cl = 1;
    tb_utf8_decode((const uint8_t *)s + at, len - at, &cp, &cl);
    return cp;
}

/* Splits s[0..len) on the added tokens of `trie`, the way the reference does. */
static int s_split_added(const struct enc *e, const struct tb_tok_trie *trie, const char *s,
                         size_t len, struct pieces *out)
{
    const tb_tokenizer_t *tok = e->tok;
    bool no_special = tok->gguf && !e->parse_special;
    size_t start_offset = 0, p = 0;
    out->n = 0;
    if (trie->n == 0) {
        return len > 0 ? s_piece_push(out, 0, len, -1) : 0;
    }
    while (p < len) {
        size_t q = p, mlen = 0;
        int32_t idx = -1;
        for (; q < len; q++) {
            if (trie->first[(uint8_t)s[q]]) {
                idx = s_trie_longest(tok, trie, s + q, len - q, no_special, &mlen);
                if (idx >= 0) {
                    break;
                }
            }
        }
        if (idx < 0) {
            break;
        }
        const struct tb_tok_added *t = &tok->added[idx];
        size_t a = q, b = q + mlen;
        p = b;
        if (t->special && !e->parse_special) {
            continue;
        }
        if (t->single_word) {
            bool start_space = a == 0 || !tb_tok_is_word_char(s_cp_before(s, a));
            bool stop_space = b == len || !tb_tok_is_word_char(s_cp_at(s, len, b));
            if (!start_space || !stop_space) {
                continue;
            }
        }
        if (t->lstrip) {
            size_t ns = a;
            while (ns > 0 && tb_tok_is_space(s_cp_before(s, ns))) {
                ns -= tb_utf8_cp_len(s_cp_before(s, ns));
            }
            a = ns > start_offset ? ns : start_offset;
        }
        if (t->rstrip) {
            while (b < len && tb_tok_is_space(s_cp_at(s, len, b))) {
                b += tb_utf8_cp_len(s_cp_at(s, len, b));
            }
        }
        if (start_offset < a && s_piece_push(out, start_offset, a, -1) < 0) {
            return TB_ENOMEM;
        }
        if (s_piece_push(out, a, b, t->id) < 0) {
            return TB_ENOMEM;
        }
        start_offset = b;
    }
    if (start_offset < len && s_piece_push(out, start_offset, len, -1) < 0) {
        return TB_ENOMEM;
    }
    return 0;
}

/* Pre-tokenizes and encodes one normalized piece of text. */
static int s_encode_words(struct enc *e, const char *s, size_t len, bool first)
{
    int rc = tb_pretok_run(e->tok->pretok, s, len, first, &e->pw);
    const struct tb_pretok_words *w = &e->pw.out;
    for (size_t i = 0; rc == 0 && i < w->spans.n; i++) {
        rc = tb_bpe_encode(e->tok->bpe, (char *)w->text.data + w->spans.a[i].start,
                           w->spans.a[i].end - w->spans.a[i].start, &e->bw, e->ids);
    }
    return rc;
}

/* Normalizes one raw piece, splits out normalized added tokens, encodes the rest. */
static int s_encode_text(struct enc *e, const char *s, size_t len, bool first)
{
    int rc = 0;
    const char *ns = s;
    size_t nlen = len;
    struct pieces ps = {0};
    if (!tb_tok_norm_is_empty(e->tok->norm)) {
        rc = tb_tok_norm_apply(e->tok->norm, s, len, &e->norm);
        if (rc < 0) {
            return rc;
        }
        ns = (char *)e->norm.data;
        nlen = e->norm.len;
    }
    rc = s_split_added(e, &e->tok->norm_trie, ns, nlen, &ps);
    for (size_t i = 0; rc == 0 && i < ps.n; i++) {
        if (ps.p[i].id >= 0) {
            rc = tb_tok_ids_push(e->ids, ps.p[i].id);
        } else {
            rc = s_encode_words(e, ns + ps.p[i].a, ps.p[i].b - ps.p[i].a,
                                first && ps.p[i].a == 0);
        }
    }
    free(ps.p);
    return rc;
}

int tb_tokenizer_encode(const tb_tokenizer_t *tok, const char *text, size_t len, bool add_special,
                        bool parse_special, int32_t **ids, size_t *n_ids)
{
    int rc = 0;
    struct tb_tok_ids out;
    struct pieces ps = {0};
    struct enc e;

    *ids = NULL;
    *n_ids = 0;
    if (len >= INT32_MAX) {
        return TB_E2BIG;
    }
    if (!text && len > 0) {
        return TB_EINVAL;
    }
    if (len > 0 && !tb_utf8_is_valid(text, len)) {
        return TB_EINVAL;
    }
    tb_tok_ids_init(&out);
    memset(&e, 0, sizeof(e));
    e.tok = tok;
    e.parse_special = parse_special;
    e.ids = &out;
    tb_buf_init(&e.norm);

    if (add_special) {
        rc = tb_tok_ids_append(&out, tok->prefix.ptr, tok->prefix.len);
    }
    if (rc == 0 && len > 0) {
        rc = s_split_added(&e, &tok->raw_trie, text, len, &ps);
    }
    /* Text after a raw added token still counts as the first piece when nothing but empty
     * text came before it (the reference tests the piece's original offset). */
    for (size_t i = 0; rc == 0 && i < ps.n; i++) {
        if (ps.p[i].id >= 0) {
            rc = tb_tok_ids_push(&out, ps.p[i].id);
        } else {
            rc = s_encode_text(&e, text + ps.p[i].a, ps.p[i].b - ps.p[i].a, ps.p[i].a == 0);
        }
    }
    if (rc == 0 && add_special) {
        rc = tb_tok_ids_append(&out, tok->suffix.ptr, tok->suffix.len);
    }
    free(ps.p);
    tb_buf_free(&e.norm);
    tb_pretok_work_release(&e.pw);
    tb_bpe_work_release(&e.bw);
    if (rc < 0) {
        tb_tok_ids_release(&out);
        return rc;
    }
    if (!out.ptr) {
        out.ptr = malloc(sizeof(int32_t));
        if (!out.ptr) {
            return TB_ENOMEM;
        }
    }
    *ids = out.ptr;
    *n_ids = out.len;
    return 0;
}

/* ---- decode and accessors ------------------------------------------------------------------ */

int tb_tokenizer_decode(const tb_tokenizer_t *tok, const int32_t *ids, size_t n_ids,
                        bool skip_special, char **text, size_t *len)
{
    int rc = 0;
    tb_detok_t *d = NULL;
    struct tb_buf out;
    const char *s = NULL;
    size_t n = 0;

    *text = NULL;
    if (len) {
        *len = 0;
    }
    tb_buf_init(&out);
    rc = tb_detok_new(tok, skip_special, &d);
    for (size_t i = 0; rc == 0 && i < n_ids; i++) {
        rc = tb_detok_push(d, ids[i], &s, &n);
        if (rc == 0) {
            rc = tb_buf_append(&out, s, n);
        }
    }
    if (rc == 0) {
        rc = tb_detok_flush(d, &s, &n);
    }
    if (rc == 0) {
        rc = tb_buf_append(&out, s, n);
    }
    tb_detok_destroy(&d);
    if (rc < 0) {
        tb_buf_free(&out);
        return rc;
    }
    *text = tb_buf_steal(&out, len);
    return *text ? 0 : TB_ENOMEM;
}

tb_tokenizer_kind_t tb_tokenizer_kind(const tb_tokenizer_t *tok)
{
    return tok->kind;
}

size_t tb_tokenizer_vocab_size(const tb_tokenizer_t *tok)
{
    return tb_tok_vocab_size(tok->vocab);
}

int32_t tb_tokenizer_bos(const tb_tokenizer_t *tok)
{
    return tok->bos;
}

int32_t tb_tokenizer_eos(const tb_tokenizer_t *tok)
{
    return tok->eos;
}

bool tb_tokenizer_adds_bos(const tb_tokenizer_t *tok)
{
    return tok->adds_bos;
}

bool tb_tokenizer_adds_eos(const tb_tokenizer_t *tok)
{
    return tok->adds_eos;
}

size_t tb_tokenizer_eos_ids(const tb_tokenizer_t *tok, const int32_t **ids)
{
    *ids = tok->eos_ids.ptr;
    return tok->eos_ids.len;
}

bool tb_tokenizer_is_eos(const tb_tokenizer_t *tok, int32_t id)
{
    for (size_t i = 0; i < tok->eos_ids.len; i++) {
        if (tok->eos_ids.ptr[i] == id) {
            return true;
        }
    }
    return false;
}

const char *tb_tokenizer_piece(const tb_tokenizer_t *tok, int32_t id, size_t *len)
{
    return tb_tok_vocab_piece(tok->vocab, id, len);
}

int32_t tb_tokenizer_find(const tb_tokenizer_t *tok, const char *s, size_t len)
{
    for (size_t i = 0; i < tok->n_added; i++) {
        size_t plen = 0;
        const char *p = tb_tok_vocab_piece(tok->vocab, tok->added[i].id, &plen);
        if (p && plen == len && !memcmp(p, s, len)) {
            return tok->added[i].id;
        }
    }
    return tb_tok_vocab_find(tok->vocab, s, len);
}

bool tb_tokenizer_is_special(const tb_tokenizer_t *tok, int32_t id)
{
    return id >= 0 && (size_t)id < tb_tok_vocab_size(tok->vocab) &&
           (tok->attr[id] & TB_TOK_ATTR_SPECIAL);
}

int tb_tokenizer_load(const char *path, tb_tokenizer_t **out, char *err, size_t err_len)
{
    size_t n = path ? strlen(path) : 0;
    if (!path || !out) {
        tb_err_set(err, err_len, "invalid arguments");
        return TB_EINVAL;
    }
    if (n >= 5 && !strcmp(path + n - 5, ".gguf")) {
        tb_gguf_t *g = NULL;
        int rc = tb_gguf_open(path, &g, err, err_len);
        if (rc < 0) {
            return rc;
        }
        rc = tb_tokenizer_load_gguf(g, out, err, err_len);
        tb_gguf_close(&g);
        return rc;
    }
    return tb_tokenizer_load_hf(path, out, err, err_len);
}
