/*
 * tb_tokenizer_hf.c - loads a Hugging Face tokenizer.json (BPE model) and the configs beside it
 * into a tokenizer.  Parsing uses jansson; every field is type-checked and every id range-checked
 * before use, so a malformed file is an error with a message, never a crash.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tb_errors.h"
#include "tb_tok_utf8.h"
#include "tb_tokenizer.h"
#include "tb_tokenizer_impl.h"

#define MAX_DEC_STEPS 32
#define MAX_NESTING 8

struct hf {
    tb_tokenizer_t *tok;
    char *err;
    size_t err_len;
    bool byte_level; /* a ByteLevel pre-tokenizer or decoder was seen */
    struct tb_dec_step dec[MAX_DEC_STEPS];
    size_t n_dec;
};

static bool s_str(const json_t *obj, const char *key, const char **s, size_t *len)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        return false;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return true;
}

static bool s_bool(const json_t *obj, const char *key, bool def)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static const char *s_type(const json_t *obj)
{
    const json_t *t = json_object_get(obj, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/* A single character given as a JSON string; false unless it is exactly one code point. */
static bool s_char(const json_t *obj, const char *key, uint32_t *cp)
{
    const char *s = NULL;
    size_t len = 0, cl = 0;
    if (!s_str(obj, key, &s, &len) || len == 0) {
        return false;
    }
    return tb_utf8_decode((const uint8_t *)s, len, cp, &cl) == TB_UTF8_OK && cl == len;
}

/* {"String": "..."} or {"Regex": "..."}. */
static bool s_pattern(const json_t *obj, const char **s, size_t *len, bool *regex)
{
    const json_t *p = json_object_get(obj, "pattern");
    if (s_str(p, "String", s, len)) {
        *regex = false;
        return true;
    }
    if (s_str(p, "Regex", s, len)) {
        *regex = true;
        return true;
    }
    return false;
}

static bool s_behavior(const json_t *obj, tb_split_behavior_t def, tb_split_behavior_t *out)
{
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    const json_t *v = json_object_get(obj, "behavior");
    if (!v) {
        *out = def;
        return true;
    }
    for (size_t i = 0; json_is_string(v) && i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcmp(json_string_value(v), names[i])) {
            *out = (tb_split_behavior_t)i;
            return true;
        }
    }
    return false;
}

/* Metaspace's prepend scheme, with the legacy add_prefix_space. */
static bool s_prepend_scheme(const json_t *obj, tb_prepend_scheme_t *out)
{
    const json_t *v = json_object_get(obj, "prepend_scheme");
    *out = TB_PREPEND_ALWAYS;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcmp(s, "always")) {
            *out = TB_PREPEND_ALWAYS;
        } else if (!strcmp(s, "first")) {
            *out = TB_PREPEND_FIRST;
        } else if (!strcmp(s, "never")) {
            *out = TB_PREPEND_NEVER;
        } else {
            return false;
        }
    } else if (v && !json_is_null(v)) {
        return false;
    }
    if (!s_bool(obj, "add_prefix_space", true)) {
        *out = TB_PREPEND_NEVER;
    }
    return true;
}

static int s_bad(struct hf *h, const char *what, const char *type)
{
    if (type) {
        tb_err_set(h->err, h->err_len, "unsupported %s type '%s'", what, type);
        return TB_ENOTSUP;
    }
    tb_err_set(h->err, h->err_len, "malformed %s in tokenizer.json", what);
    return TB_EMODEL;
}

/* ---- normalizer -------------------------------------------------------------------------- */

static int s_normalizer(struct hf *h, const json_t *n, int depth)
{
    tb_tok_norm_t *norm = h->tok->norm;
    const char *type = s_type(n);
    const char *s = NULL, *c = NULL;
    size_t len = 0, clen = 0;
    bool regex = false;
    if (json_is_null(n) || !n) {
        return 0;
    }
    if (!type || depth > MAX_NESTING) {
        return s_bad(h, "normalizer", NULL);
    }
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list)) {
            return s_bad(h, "normalizer", NULL);
        }
        for (size_t i = 0; i < json_array_size(list); i++) {
            int rc = s_normalizer(h, json_array_get(list, i), depth + 1);
            if (rc < 0) {
                return rc;
            }
        }
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        if (!s_str(n, "prepend", &s, &len)) {
            return s_bad(h, "normalizer", NULL);
        }
        return tb_tok_norm_add_prepend(norm, s, len);
    }
    if (!strcmp(type, "Replace")) {
        if (!s_pattern(n, &s, &len, &regex) || !s_str(n, "content", &c, &clen)) {
            return s_bad(h, "normalizer", NULL);
        }
        return tb_tok_norm_add_replace(norm, s, len, regex, c, clen, h->err, h->err_len);
    }
    if (!strcmp(type, "NFC")) {
        return tb_tok_norm_add_unicode(norm, TB_TOK_NFC);
    }
    if (!strcmp(type, "NFD")) {
        return tb_tok_norm_add_unicode(norm, TB_TOK_NFD);
    }
    if (!strcmp(type, "NFKC")) {
        return tb_tok_norm_add_unicode(norm, TB_TOK_NFKC);
    }
    if (!strcmp(type, "NFKD")) {
        return tb_tok_norm_add_unicode(norm, TB_TOK_NFKD);
    }
    if (!strcmp(type, "Lowercase")) {
        return tb_tok_norm_add_lowercase(norm);
    }
    if (!strcmp(type, "Strip")) {
        return tb_tok_norm_add_strip(norm, s_bool(n, "strip_left", true),
                                     s_bool(n, "strip_right", true));
    }
    if (!strcmp(type, "StripAccents")) {
        return tb_tok_norm_add_strip_accents(norm);
    }
    return s_bad(h, "normalizer", type);
}

/* ---- pre-tokenizer ----------------------------------------------------------------------- */

static int s_pre_tokenizer(struct hf *h, const json_t *p, int depth)
{
    tb_pretok_t *pt = h->tok->pretok;
    const char *type = s_type(p);
    const char *s = NULL;
    size_t len = 0;
    bool regex = false;
    tb_split_behavior_t beh;
    if (json_is_null(p) || !p) {
        return 0;
    }
    if (!type || depth > MAX_NESTING) {
        return s_bad(h, "pre_tokenizer", NULL);
    }
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list)) {
            return s_bad(h, "pre_tokenizer", NULL);
        }
        for (size_t i = 0; i < json_array_size(list); i++) {
            int rc = s_pre_tokenizer(h, json_array_get(list, i), depth + 1);
            if (rc < 0) {
                return rc;
            }
        }
        return 0;
    }
    if (!strcmp(type, "Split")) {
        if (!s_pattern(p, &s, &len, &regex) || !s_behavior(p, TB_SPLIT_REMOVED, &beh) ||
            !json_object_get(p, "behavior")) {
            return s_bad(h, "pre_tokenizer", NULL);
        }
        return tb_pretok_add_split(pt, s, len, regex, beh, s_bool(p, "invert", false), h->err,
                                   h->err_len);
    }
    if (!strcmp(type, "ByteLevel")) {
        h->byte_level = true;
        return tb_pretok_add_byte_level(pt, s_bool(p, "add_prefix_space", true),
                                        s_bool(p, "use_regex", true));
    }
    if (!strcmp(type, "Metaspace")) {
        tb_prepend_scheme_t scheme;
        uint32_t cp;
        char rep[4];
        if (!s_char(p, "replacement", &cp) || !s_prepend_scheme(p, &scheme)) {
            return s_bad(h, "pre_tokenizer", NULL);
        }
        size_t rl = tb_utf8_encode(cp, rep);
        return tb_pretok_add_metaspace(pt, rep, rl, scheme, s_bool(p, "split", true));
    }
    if (!strcmp(type, "Digits")) {
        return tb_pretok_add_digits(pt, s_bool(p, "individual_digits", false));
    }
    if (!strcmp(type, "Punctuation")) {
        if (!s_behavior(p, TB_SPLIT_ISOLATED, &beh)) {
            return s_bad(h, "pre_tokenizer", NULL);
        }
        return tb_pretok_add_punctuation(pt, beh);
    }
    if (!strcmp(type, "Whitespace")) {
        return tb_pretok_add_whitespace(pt);
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        return tb_pretok_add_whitespace_split(pt);
    }
    return s_bad(h, "pre_tokenizer", type);
}

/* ---- decoder ----------------------------------------------------------------------------- */

static int s_decoder(struct hf *h, const json_t *d, int depth)
{
    const char *type = s_type(d);
    if (json_is_null(d) || !d) {
        return 0;
    }
    if (!type || depth > MAX_NESTING) {
        return s_bad(h, "decoder", NULL);
    }
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(d, "decoders");
        if (!json_is_array(list)) {
            return s_bad(h, "decoder", NULL);
        }
        for (size_t i = 0; i < json_array_size(list); i++) {
            int rc = s_decoder(h, json_array_get(list, i), depth + 1);
            if (rc < 0) {
                return rc;
            }
        }
        return 0;
    }
    if (h->n_dec == MAX_DEC_STEPS) {
        tb_err_set(h->err, h->err_len, "decoder has more than %d steps", MAX_DEC_STEPS);
        return TB_ENOTSUP;
    }
    struct tb_dec_step *st = &h->dec[h->n_dec];
    memset(st, 0, sizeof(*st));
    if (!strcmp(type, "Replace")) {
        bool regex = false;
        st->kind = TB_DEC_REPLACE;
        if (!s_pattern(d, &st->pattern, &st->pattern_len, &regex) ||
            !s_str(d, "content", &st->content, &st->content_len)) {
            return s_bad(h, "decoder", NULL);
        }
        if (regex) {
            tb_err_set(h->err, h->err_len, "unsupported decoder: Replace with a regex");
            return TB_ENOTSUP;
        }
    } else if (!strcmp(type, "ByteFallback")) {
        st->kind = TB_DEC_BYTE_FALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        st->kind = TB_DEC_FUSE;
    } else if (!strcmp(type, "ByteLevel")) {
        st->kind = TB_DEC_BYTE_LEVEL;
        h->byte_level = true;
    } else if (!strcmp(type, "Strip")) {
        const json_t *a = json_object_get(d, "start"), *b = json_object_get(d, "stop");
        st->kind = TB_DEC_STRIP;
        if (!s_char(d, "content", &st->cp) || !json_is_integer(a) || !json_is_integer(b) ||
            json_integer_value(a) < 0 || json_integer_value(b) < 0 ||
            json_integer_value(a) > 1024 || json_integer_value(b) > 1024) {
            return s_bad(h, "decoder", NULL);
        }
        st->start = (size_t)json_integer_value(a);
        st->stop = (size_t)json_integer_value(b);
    } else if (!strcmp(type, "Metaspace")) {
        tb_prepend_scheme_t scheme;
        st->kind = TB_DEC_METASPACE;
        if (!s_char(d, "replacement", &st->cp) || !s_prepend_scheme(d, &scheme)) {
            return s_bad(h, "decoder", NULL);
        }
        st->prepend = scheme != TB_PREPEND_NEVER;
    } else {
        return s_bad(h, "decoder", type);
    }
    h->n_dec++;
    return 0;
}

/* ---- post-processor ---------------------------------------------------------------------- */

/* Ids of one special token of a TemplateProcessing. */
static int s_template_ids(struct hf *h, const json_t *special, const char *name,
                          struct tb_tok_ids *out)
{
    const json_t *t = json_object_get(special, name);
    const json_t *ids = json_object_get(t, "ids");
    if (!json_is_array(ids)) {
        tb_err_set(h->err, h->err_len, "post_processor: special token '%s' is not defined", name);
        return TB_EMODEL;
    }
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (size_t)json_integer_value(v) >= tb_tok_vocab_size(h->tok->vocab)) {
            tb_err_set(h->err, h->err_len, "post_processor: bad id for '%s'", name);
            return TB_EMODEL;
        }
        if (tb_tok_ids_push(out, (int32_t)json_integer_value(v)) < 0) {
            return TB_ENOMEM;
        }
    }
    return 0;
}

/* ["<s>", 1] as RobertaProcessing / BertProcessing store cls and sep. */
static int s_pair_id(struct hf *h, const json_t *p, const char *key, struct tb_tok_ids *out)
{
    const json_t *v = json_object_get(p, key);
    const json_t *id = json_array_get(v, 1);
    if (!json_is_integer(id) || json_integer_value(id) < 0 ||
        (size_t)json_integer_value(id) >= tb_tok_vocab_size(h->tok->vocab)) {
        return s_bad(h, "post_processor", NULL);
    }
    return tb_tok_ids_push(out, (int32_t)json_integer_value(id));
}

static int s_post_processor(struct hf *h, const json_t *p, int depth)
{
    const char *type = s_type(p);
    int rc = 0;
    if (json_is_null(p) || !p) {
        return 0;
    }
    if (!type || depth > MAX_NESTING) {
        return s_bad(h, "post_processor", NULL);
    }
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(p, "processors");
        if (!json_is_array(list)) {
            return s_bad(h, "post_processor", NULL);
        }
        for (size_t i = 0; i < json_array_size(list) && rc == 0; i++) {
            rc = s_post_processor(h, json_array_get(list, i), depth + 1);
        }
        return rc;
    }
    if (!strcmp(type, "ByteLevel")) {
        return 0;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        rc = s_pair_id(h, p, "cls", &h->tok->prefix);
        return rc < 0 ? rc : s_pair_id(h, p, "sep", &h->tok->suffix);
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const json_t *single = json_object_get(p, "single");
        const json_t *special = json_object_get(p, "special_tokens");
        bool seen_seq = false;
        if (!json_is_array(single)) {
            return s_bad(h, "post_processor", NULL);
        }
        for (size_t i = 0; i < json_array_size(single) && rc == 0; i++) {
            const json_t *item = json_array_get(single, i);
            const json_t *st = json_object_get(item, "SpecialToken");
            const char *name = NULL;
            size_t len = 0;
            if (json_object_get(item, "Sequence")) {
                seen_seq = true;
            } else if (s_str(st, "id", &name, &len)) {
                rc = s_template_ids(h, special, name,
                                    seen_seq ? &h->tok->suffix : &h->tok->prefix);
            } else {
                return s_bad(h, "post_processor", NULL);
            }
        }
        return rc;
    }
    return s_bad(h, "post_processor", type);
}

/* ---- model ------------------------------------------------------------------------------- */

/* An id in [0, n): an integer, or an integral real (the configs are read with big integers
 * as reals); -1 otherwise. */
static int32_t s_id(const json_t *v, size_t n)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        return i >= 0 && (size_t)i < n ? (int32_t)i : -1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= 0 && d < (double)n && d == (double)(int64_t)d) {
            return (int32_t)d;
        }
    }
    return -1;
}

/* Vocabulary size: the largest id + 1, which must be plausible for the number of entries. */
static int s_vocab_size(struct hf *h, const json_t *vocab, const json_t *added, size_t *n)
{
    const char *key;
    const json_t *v;
    json_int_t max = -1;
    size_t entries = json_object_size(vocab) + json_array_size(added);
    json_object_foreach((json_t *)vocab, key, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            tb_err_set(h->err, h->err_len, "model.vocab: '%.64s' has no valid id", key);
            return TB_EMODEL;
        }
        if (json_integer_value(v) > max) {
            max = json_integer_value(v);
        }
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *id = json_object_get(json_array_get(added, i), "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0) {
            tb_err_set(h->err, h->err_len, "added_tokens[%zu]: no valid id", i);
            return TB_EMODEL;
        }
        if (json_integer_value(id) > max) {
            max = json_integer_value(id);
        }
    }
    if (max < 0) {
        tb_err_set(h->err, h->err_len, "empty vocabulary");
        return TB_EMODEL;
    }
    if ((size_t)max >= entries * 2 + 1024 || max >= INT32_MAX) {
        tb_err_set(h->err, h->err_len,
                   "vocabulary ids reach %lld for %zu entries: ids must be dense", (long long)max,
                   entries);
        return TB_EMODEL;
    }
    *n = (size_t)max + 1;
    return 0;
}

static int s_merges(struct hf *h, const json_t *merges)
{
    tb_tokenizer_t *tok = h->tok;
    uint32_t rank = 0;
    if (!json_is_array(merges)) {
        return s_bad(h, "model.merges", NULL);
    }
    struct tb_buf joined;
    tb_buf_init(&joined);
    int rc = 0;
    for (size_t i = 0; i < json_array_size(merges) && rc == 0; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t len = json_string_length(m);
            if (len >= 8 && !memcmp(s, "#version", 8)) {
                continue;
            }
            const char *sp = memchr(s, ' ', len);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s))) {
                tb_err_set(h->err, h->err_len, "model.merges[%zu] is not 'a b'", i);
                rc = TB_EMODEL;
                break;
            }
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = len - al - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            al = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            bl = json_string_length(json_array_get(m, 1));
        } else {
            tb_err_set(h->err, h->err_len, "model.merges[%zu] is malformed", i);
            rc = TB_EMODEL;
            break;
        }
        tb_buf_clear(&joined);
        if (tb_buf_append(&joined, a, al) < 0 || tb_buf_append(&joined, b, bl) < 0) {
            rc = TB_ENOMEM;
            break;
        }
        int32_t ia = tb_tok_vocab_find(tok->vocab, a, al);
        int32_t ib = tb_tok_vocab_find(tok->vocab, b, bl);
        int32_t im = tb_tok_vocab_find(tok->vocab, (char *)joined.data, joined.len);
        if (ia < 0 || ib < 0 || im < 0) {
            tb_err_set(h->err, h->err_len,
                       "model.merges[%zu]: a token of '%.*s %.*s' is not in "
                       "the vocabulary",
                       i, (int)(al > 64 ? 64 : al), a, (int)(bl > 64 ? 64 : bl), b);
            rc = TB_EMODEL;
            break;
        }
        rc = tb_bpe_add_merge(tok->bpe, ia, ib, im, rank++);
    }
    tb_buf_free(&joined);
    return rc;
}

static int s_model(struct hf *h, const json_t *root)
{
    tb_tokenizer_t *tok = h->tok;
    const json_t *model = json_object_get(root, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *added = json_object_get(root, "added_tokens");
    const char *type = s_type(model);
    const char *key;
    size_t key_len = 0;
    const json_t *v;
    int rc = 0;

    /* Vocabulary: model entries are what the BPE model may produce.  Keys may hold NULs. */
    json_object_keylen_foreach((json_t *)vocab, key, key_len, v)
    {
        int32_t id = (int32_t)json_integer_value(v);
        rc = tb_tok_vocab_set(tok->vocab, id, key, key_len, true);
        if (rc == TB_EEXIST) {
            tb_err_set(h->err, h->err_len, "model.vocab: id %d is used twice", id);
            return TB_EMODEL;
        }
        if (rc < 0) {
            return rc;
        }
        tok->attr[id] |= TB_TOK_ATTR_NORMAL;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        const char *content = NULL;
        size_t len = 0;
        int32_t id = s_id(json_object_get(a, "id"), tb_tok_vocab_size(tok->vocab));
        if (id < 0 || !s_str(a, "content", &content, &len) || len == 0) {
            tb_err_set(h->err, h->err_len, "added_tokens[%zu] is malformed", i);
            return TB_EMODEL;
        }
        if (!tb_tok_vocab_piece(tok->vocab, id, NULL)) {
            rc = tb_tok_vocab_set(tok->vocab, id, content, len, false);
            if (rc < 0) {
                return rc;
            }
        }
        bool special = s_bool(a, "special", false);
        rc = tb_tokenizer_add_added(tok, id, content, len, special, s_bool(a, "lstrip", false),
                                    s_bool(a, "rstrip", false), s_bool(a, "single_word", false),
                                    s_bool(a, "normalized", !special));
        if (rc < 0) {
            return rc;
        }
    }
    rc = tb_tok_vocab_build_index(tok->vocab);
    if (rc < 0) {
        return rc;
    }

    const char *unk = NULL, *s = NULL;
    size_t unk_len = 0, slen = 0;
    if ((s_str(model, "continuing_subword_prefix", &s, &slen) && slen > 0) ||
        (s_str(model, "end_of_word_suffix", &s, &slen) && slen > 0)) {
        tb_err_set(h->err, h->err_len,
                   "unsupported BPE option: continuing_subword_prefix or "
                   "end_of_word_suffix");
        return TB_ENOTSUP;
    }
    struct tb_bpe_config cfg = {0};
    cfg.mode = TB_BPE_RANKS;
    cfg.missing = TB_BPE_MISSING_HF;
    cfg.vocab = tok->vocab;
    cfg.byte_fallback = s_bool(model, "byte_fallback", false);
    cfg.unk_id = s_str(model, "unk_token", &unk, &unk_len)
                     ? tb_tok_vocab_find(tok->vocab, unk, unk_len)
                     : -1;
    cfg.fuse_unk = s_bool(model, "fuse_unk", false);
    cfg.ignore_merges = s_bool(model, "ignore_merges", false);
    cfg.last_merge_wins = true;
    (void)type;
    rc = tb_bpe_new(&cfg, &tok->bpe);
    if (rc < 0) {
        return rc;
    }
    return s_merges(h, json_object_get(model, "merges"));
}

/* ---- configs ----------------------------------------------------------------------------- */

/* "bos_token": "<s>" or {"content": "<s>", ...}; -1 when absent or unknown. */
static int32_t s_config_token(const tb_tokenizer_t *tok, const json_t *cfg, const char *key)
{
    const json_t *v = json_object_get(cfg, key);
    const char *s = NULL;
    size_t len = 0;
    if (json_is_string(v)) {
        s = json_string_value(v);
        len = json_string_length(v);
    } else if (!s_str(v, "content", &s, &len)) {
        return -1;
    }
    return tb_tokenizer_find(tok, s, len);
}

/* Appends the ids of "key": a number or a list of numbers. */
static int s_config_ids(const tb_tokenizer_t *tok, const json_t *cfg, const char *key,
                        struct tb_tok_ids *out)
{
    const json_t *v = json_object_get(cfg, key);
    size_t n = tb_tok_vocab_size(tok->vocab);
    if (json_is_integer(v)) {
        int32_t id = s_id(v, n);
        return id >= 0 ? tb_tok_ids_push(out, id) : 0;
    }
    for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++) {
        int32_t id = s_id(json_array_get(v, i), n);
        if (id >= 0 && tb_tok_ids_push(out, id) < 0) {
            return TB_ENOMEM;
        }
    }
    return 0;
}

/* tokenizer_config.json's added_tokens_decoder ({"id": {"content": ..., "special": ...}}):
 * registers the added tokens that tokenizer.json lacks (as transformers does when loading);
 * entries that tokenizer.json already has are left as they are there. */
static int s_config_added(tb_tokenizer_t *tok, const json_t *tcfg)
{
    const json_t *dec = json_object_get(tcfg, "added_tokens_decoder");
    const char *key;
    const json_t *v;
    if (!json_is_object(dec)) {
        return 0;
    }
    json_object_foreach((json_t *)dec, key, v)
    {
        char *end = NULL;
        long id = strtol(key, &end, 10);
        const char *content = NULL;
        size_t len = 0;
        if (!end || *end || id < 0 || (size_t)id >= tb_tok_vocab_size(tok->vocab) ||
            !s_str(v, "content", &content, &len) || len == 0 ||
            (tok->attr[id] & TB_TOK_ATTR_ADDED)) {
            continue;
        }
        size_t plen = 0;
        const char *piece = tb_tok_vocab_piece(tok->vocab, (int32_t)id, &plen);
        if (piece && (plen != len || memcmp(piece, content, len) != 0)) {
            continue; /* the id already names another token */
        }
        if (!piece && tb_tok_vocab_set(tok->vocab, (int32_t)id, content, len, false) < 0) {
            return TB_ENOMEM;
        }
        bool special = s_bool(v, "special", false);
        int rc = tb_tokenizer_add_added(tok, (int32_t)id, content, len, special,
                                        s_bool(v, "lstrip", false), s_bool(v, "rstrip", false),
                                        s_bool(v, "single_word", false),
                                        s_bool(v, "normalized", !special));
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* Applies add_bos_token / add_eos_token: the template's BOS / EOS is added or removed. */
static int s_apply_add_flags(tb_tokenizer_t *tok, const json_t *tcfg)
{
    const json_t *ab = json_object_get(tcfg, "add_bos_token");
    const json_t *ae = json_object_get(tcfg, "add_eos_token");
    if (json_is_boolean(ab) && tok->bos >= 0) {
        bool has = tok->prefix.len > 0 && tok->prefix.ptr[0] == tok->bos;
        if (json_is_true(ab) && !has) {
            if (tb_tok_ids_push(&tok->prefix, 0) < 0) {
                return TB_ENOMEM;
            }
            memmove(tok->prefix.ptr + 1, tok->prefix.ptr, (tok->prefix.len - 1) * 4);
            tok->prefix.ptr[0] = tok->bos;
        } else if (!json_is_true(ab) && has) {
            memmove(tok->prefix.ptr, tok->prefix.ptr + 1, (tok->prefix.len - 1) * 4);
            tok->prefix.len--;
        }
    }
    if (json_is_boolean(ae) && tok->eos >= 0) {
        bool has = tok->suffix.len > 0 && tok->suffix.ptr[tok->suffix.len - 1] == tok->eos;
        if (json_is_true(ae) && !has) {
            if (tb_tok_ids_push(&tok->suffix, tok->eos) < 0) {
                return TB_ENOMEM;
            }
        } else if (!json_is_true(ae) && has) {
            tok->suffix.len--;
        }
    }
    return 0;
}

static int s_load(const json_t *root, const json_t *tcfg, const json_t *gcfg, const json_t *mcfg,
                  tb_tokenizer_t **out, char *err, size_t err_len)
{
    int rc = 0;
    struct hf h;
    size_t n = 0;
    memset(&h, 0, sizeof(h));
    h.err = err;
    h.err_len = err_len;
    *out = NULL;

    const json_t *model = json_object_get(root, "model");
    const char *type = s_type(model);
    if (!json_is_object(root) || !json_is_object(model)) {
        tb_err_set(err, err_len, "tokenizer.json has no model object");
        return TB_EMODEL;
    }
    if (type && strcmp(type, "BPE") != 0) {
        tb_err_set(err, err_len, "tokenizer model '%s' is not supported (BPE only)", type);
        return TB_ENOTSUP;
    }
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab) || (added && !json_is_array(added) && !json_is_null(added))) {
        tb_err_set(err, err_len,
                   "tokenizer.json: model.vocab must be an object and "
                   "added_tokens a list");
        return TB_EMODEL;
    }
    rc = s_vocab_size(&h, vocab, added, &n);
    if (rc < 0) {
        return rc;
    }
    rc = tb_tokenizer_alloc(n, &h.tok);
    if (rc < 0) {
        tb_err_set(err, err_len, "out of memory for %zu tokens", n);
        return rc;
    }
    rc = tb_tok_norm_new(&h.tok->norm);
    if (rc == 0) {
        rc = tb_pretok_new(&h.tok->pretok);
    }
    if (rc == 0) {
        rc = s_model(&h, root);
    }
    if (rc == 0) {
        rc = s_normalizer(&h, json_object_get(root, "normalizer"), 0);
    }
    if (rc == 0) {
        rc = s_pre_tokenizer(&h, json_object_get(root, "pre_tokenizer"), 0);
    }
    if (rc == 0) {
        rc = s_post_processor(&h, json_object_get(root, "post_processor"), 0);
    }
    if (rc == 0) {
        rc = s_decoder(&h, json_object_get(root, "decoder"), 0);
    }
    if (rc == 0) {
        rc = s_config_added(h.tok, tcfg);
    }
    if (rc < 0) {
        goto fail;
    }
    tb_tokenizer_t *tok = h.tok;
    tok->kind = h.byte_level ? TB_TOKENIZER_BYTE_LEVEL : TB_TOKENIZER_SPM;
    tok->bos = s_config_token(tok, tcfg, "bos_token");
    tok->eos = s_config_token(tok, tcfg, "eos_token");
    struct tb_tok_ids tmp;
    tb_tok_ids_init(&tmp);
    const json_t *cfgs[2] = {gcfg, mcfg};
    for (int i = 0; i < 2 && rc == 0; i++) {
        if (tok->bos < 0) {
            tmp.len = 0;
            rc = s_config_ids(tok, cfgs[i], "bos_token_id", &tmp);
            tok->bos = rc == 0 && tmp.len > 0 ? tmp.ptr[0] : -1;
        }
        if (rc == 0 && tok->eos < 0) {
            tmp.len = 0;
            rc = s_config_ids(tok, cfgs[i], "eos_token_id", &tmp);
            tok->eos = rc == 0 && tmp.len > 0 ? tmp.ptr[0] : -1;
        }
        if (rc == 0) {
            rc = s_config_ids(tok, cfgs[i], "eos_token_id", &tok->eos_ids);
        }
    }
    tb_tok_ids_release(&tmp);
    if (rc == 0) {
        rc = s_apply_add_flags(tok, tcfg);
    }
    if (rc == 0) {
        rc = tb_tokenizer_finish(tok, h.dec, h.n_dec, err, err_len);
    }
    if (rc < 0) {
        goto fail;
    }
    *out = tok;
    return 0;
fail:
    if (rc == TB_ENOMEM && err && err_len && !err[0]) {
        tb_err_set(err, err_len, "out of memory loading the tokenizer");
    }
    if (rc == TB_EINVAL || rc == TB_ERANGE || rc == TB_EEXIST) {
        rc = TB_EMODEL; /* a bad regex or id in the file */
    }
    tb_tokenizer_destroy(&h.tok);
    return rc;
}

int tb_tokenizer_load_hf_memory(const char *json, size_t len, const char *config,
                                size_t config_len, tb_tokenizer_t **out, char *err,
                                size_t err_len)
{
    json_error_t je;
    json_t *root = NULL, *tcfg = NULL;
    int rc = 0;
    if (err && err_len) {
        err[0] = '\0';
    }
    if (!out || (!json && len > 0)) {
        tb_err_set(err, err_len, "invalid arguments");
        return TB_EINVAL;
    }
    *out = NULL;
    root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
    if (!root) {
        tb_err_set(err, err_len, "tokenizer.json:%d:%d: %s", je.line, je.column, je.text);
        return TB_EMODEL;
    }
    if (config) {
        tcfg = json_loadb(config, config_len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
        if (!tcfg) {
            tb_err_set(err, err_len, "tokenizer_config.json:%d:%d: %s", je.line, je.column,
                       je.text);
            rc = TB_EMODEL;
        }
    }
    if (rc == 0) {
        rc = s_load(root, tcfg, NULL, NULL, out, err, err_len);
    }
    json_decref(root);
    json_decref(tcfg);
    return rc;
}

/* Loads an optional JSON file of the model folder: NULL without error when absent. */
static int s_optional(const char *dir, const char *name, json_t **out, char *err, size_t err_len)
{
    char path[4096];
    json_error_t je;
    *out = NULL;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
        tb_err_set(err, err_len, "path too long: '%s'", dir);
        return TB_EINVAL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        return 0;
    }
    /* Configs may hold integers beyond 64 bits (model_max_length): read numbers as reals. */
    *out = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!*out) {
        tb_err_set(err, err_len, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return TB_EMODEL;
    }
    return 0;
}

int tb_tokenizer_load_hf(const char *path, tb_tokenizer_t **out, char *err, size_t err_len)
{
    int rc = 0;
    char dir[4096], file[4096];
    struct stat st;
    json_t *root = NULL, *tcfg = NULL, *gcfg = NULL, *mcfg = NULL;
    json_error_t je;

    if (err && err_len) {
        err[0] = '\0';
    }
    if (!path || !out) {
        tb_err_set(err, err_len, "invalid arguments");
        return TB_EINVAL;
    }
    *out = NULL;
    if (stat(path, &st) != 0) {
        rc = -errno;
        tb_err_set(err, err_len, "cannot open tokenizer '%s': %s", path, strerror(errno));
        return rc;
    }
    if (S_ISDIR(st.st_mode)) {
        if ((size_t)snprintf(dir, sizeof(dir), "%s", path) >= sizeof(dir) ||
            (size_t)snprintf(file, sizeof(file), "%s/tokenizer.json", path) >= sizeof(file)) {
            tb_err_set(err, err_len, "path too long: '%s'", path);
            return TB_EINVAL;
        }
    } else {
        if ((size_t)snprintf(file, sizeof(file), "%s", path) >= sizeof(file)) {
            tb_err_set(err, err_len, "path too long: '%s'", path);
            return TB_EINVAL;
        }
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
        } else {
            snprintf(dir, sizeof(dir), ".");
        }
    }
    if (stat(file, &st) != 0) {
        rc = -errno;
        tb_err_set(err, err_len, "cannot open tokenizer '%s': %s", file, strerror(errno));
        return rc;
    }
    root = json_load_file(file, JSON_ALLOW_NUL, &je);
    if (!root) {
        tb_err_set(err, err_len, "%s:%d:%d: %s", file, je.line, je.column, je.text);
        return TB_EMODEL;
    }
    rc = s_optional(dir, "tokenizer_config.json", &tcfg, err, err_len);
    if (rc == 0) {
        rc = s_optional(dir, "generation_config.json", &gcfg, err, err_len);
    }
    if (rc == 0) {
        rc = s_optional(dir, "config.json", &mcfg, err, err_len);
    }
    if (rc == 0) {
        char msg[512] = "";
        rc = s_load(root, tcfg, gcfg, mcfg, out, msg, sizeof(msg));
        if (rc < 0) {
            tb_err_set(err, err_len, "cannot load tokenizer '%s': %s", file, msg);
        }
    }
    json_decref(root);
    json_decref(tcfg);
    json_decref(gcfg);
    json_decref(mcfg);
    return rc;
}
