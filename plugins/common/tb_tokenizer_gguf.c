/*
 * tb_tokenizer_gguf.c - builds a tokenizer from GGUF metadata (tokenizer.ggml.*), following
 * llama.cpp's reading of it: "llama" vocabularies are SentencePiece BPE merged by token score,
 * "gpt2" vocabularies byte-level BPE merged by rank after the split regexes that
 * tokenizer.ggml.pre names.  Control, user-defined and unknown tokens are matched in text before
 * the model runs; control and unknown ones are the special tokens.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_gguf.h"
#include "tb_tok_utf8.h"
#include "tb_tokenizer.h"
#include "tb_tokenizer_impl.h"

/* GGUF token types. */
enum {
    GGUF_TOK_NORMAL = 1,
    GGUF_TOK_UNKNOWN = 2,
    GGUF_TOK_CONTROL = 3,
    GGUF_TOK_USER_DEFINED = 4,
    GGUF_TOK_UNUSED = 5,
    GGUF_TOK_BYTE = 6,
};

/* Split regexes (applied in order, each isolating its matches) per pre-tokenizer family. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3_HEAD                                                                           \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RE_LLAMA3_TAIL " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3 RE_LLAMA3_HEAD "\\p{N}{1,3}|" RE_LLAMA3_TAIL
#define RE_QWEN2 RE_LLAMA3_HEAD "\\p{N}|" RE_LLAMA3_TAIL
#define RE_BLOOM " ?[^(\\s|.,!?…。，、।۔،)]+"
/* DeepSeek LLM's letters (its tokenizer.json's class: the cased letters, Latin, Greek,
 * Cyrillic, Armenian, Georgian, Cherokee...; the code points as docs/models.md lists them) */
#define RE_DEEPSEEK_LLM_LETTERS                                                                        \
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶ-ͷͻ-ͽͿΆΈ-ΊΌ"                            \
    "Ύ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚ"                \
    "Ḁ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ί" \
    "ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃ-ↄ"   \
    "Ⰰ-ⱻⱾ-ⳤⳫ-ⳮⳲ-ⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-"         \
    "Ｚ"                                                                                              \
    "ａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
#define RE_DEEPSEEK_V3                                                                           \
    "[!\"#$%&'()*+,\\-./"                                                                        \
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"            \
    " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* GPT-4o's o200k split (tokenizer.json's own, PCRE2 takes its (?i:...)) */
#define RE_O200K_CONTRACTION "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
#define RE_O200K_UPPER "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]"
#define RE_O200K_LOWER "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
#define RE_O200K                                                                                 \
    "[^\\r\\n\\p{L}\\p{N}]?" RE_O200K_UPPER "*" RE_O200K_LOWER "+" RE_O200K_CONTRACTION          \
    "|[^\\r\\n\\p{L}\\p{N}]?" RE_O200K_UPPER "+" RE_O200K_LOWER "*" RE_O200K_CONTRACTION         \
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_SEED_CODER                                                                            \
    RE_LLAMA3_HEAD "\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BAILING                                                                               \
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"           \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"

struct pre_family {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    const char *regex[6];
    bool ignore_merges;
    bool add_bos;
};

static const struct pre_family s_families[] = {
    {"default",
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     false,
     false},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2",
     {RE_LLAMA3},
     true,
     true},
    {"dbrx|smaug-bpe|chatglm-bpe|glm4", {RE_LLAMA3}, false, false},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, false, false},
    {"gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v1-en|jina-v2-es|jina-v2-de|jina-v2-code|"
     "roberta-bpe|mpt|olmo|jais|a.x-4.0|mellum|exaone4|trillion|granite-docling",
     {RE_GPT2},
     false,
     false},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b",
     {"\\p{N}", RE_GPT2},
     false,
     false},
    {"qwen2|deepseek-r1-qwen|stablelm2|megrez|kormo|hunyuan|grok-2", {RE_QWEN2}, false, false},
    {"deepseek-llm",
     {"[\\r\\n]", RE_DEEPSEEK_LLM_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$",
      "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
     false,
     false},
    {"deepseek-v3|hunyuan-dense",
     {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", RE_DEEPSEEK_V3},
     false,
     false},
    {"gpt-4o|llama4|minimax-m2", {RE_O200K}, false, false},
    {"seed-coder", {RE_SEED_CODER}, false, false},
    {"bailingmoe|bailingmoe2|llada-moe", {RE_BAILING}, false, false},
    {"poro-chat|bloom|gpt3-finnish", {RE_BLOOM}, false, false},
    {"viking", {RE_BLOOM, "\\p{N}"}, false, false},
    {"deepseek-coder",
     {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"},
     false,
     false},
    {"tekken",
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
      "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     true,
     true},
    {"chameleon",
     {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
      "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2},
     false,
     true},
};

static bool s_name_in(const char *names, const char *s, size_t len)
{
    const char *p = names;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && !memcmp(p, s, len)) {
            return true;
        }
        if (!bar) {
            break;
        }
        p = bar + 1;
    }
    return false;
}

/* Reads a token id key: -1 when absent, `def` kept; TB_EMODEL when out of range. */
static int s_token_id(const tb_gguf_t *g, const char *key, size_t n, int32_t *id, char *err,
                      size_t err_len)
{
    uint64_t v = 0;
    if (tb_gguf_find_key(g, key) < 0) {
        return 0;
    }
    if (!tb_gguf_get_u64(g, key, &v)) {
        tb_err_set(err, err_len, "%s is not an unsigned integer", key);
        return TB_EMODEL;
    }
    if (v >= n) {
        /* As in llama.cpp: an out-of-range id is ignored (the default is kept). */
        return 0;
    }
    *id = (int32_t)v;
    return 0;
}

/* Texts that end generation, as llama.cpp recognises them. */
static const char *const s_eog_texts[] = {
    "<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",
    "<|endoftext|>", "<|eom_id|>", "<EOT>",
};

static int s_vocab(tb_tokenizer_t *tok, const tb_gguf_t *g, size_t n, bool spm, char *err,
                   size_t err_len)
{
    tb_gguf_type_t et;
    uint64_t cnt = 0;
    const float *scores = NULL;
    const int32_t *types = NULL;
    int rc = 0;

    if (tb_gguf_get_array(g, "tokenizer.ggml.scores", &et, &cnt)) {
        if (et != TB_GGUF_FLOAT32 || cnt != n) {
            tb_err_set(err, err_len, "tokenizer.ggml.scores: expected %zu float32 values", n);
            return TB_EMODEL;
        }
        scores = tb_gguf_array_data(g, "tokenizer.ggml.scores");
    }
    if (tb_gguf_get_array(g, "tokenizer.ggml.token_type", &et, &cnt)) {
        if (et != TB_GGUF_INT32 || cnt != n) {
            tb_err_set(err, err_len, "tokenizer.ggml.token_type: expected %zu int32 values", n);
            return TB_EMODEL;
        }
        types = tb_gguf_array_data(g, "tokenizer.ggml.token_type");
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct tb_gguf_str s;
        char empty[32];
        if (!tb_gguf_array_str(g, "tokenizer.ggml.tokens", i, &s)) {
            return TB_EINTERNAL;
        }
        if (s.len == 0) {
            /* llama.cpp names empty tokens so that they stay distinct. */
            snprintf(empty, sizeof(empty), "[EMPTY_%zu]", i);
            s.ptr = empty;
            s.len = strlen(empty);
        }
        rc = tb_tok_vocab_set(tok->vocab, (int32_t)i, s.ptr, s.len, true);
        float sc = 0.0f;
        int32_t ty = GGUF_TOK_NORMAL;
        if (scores) {
            memcpy(&sc, (const char *)scores + i * 4, 4);
        }
        if (types) {
            memcpy(&ty, (const char *)types + i * 4, 4);
        }
        tok->scores[i] = sc;
        switch (ty) {
        case GGUF_TOK_NORMAL:
            tok->attr[i] = TB_TOK_ATTR_NORMAL;
            break;
        case GGUF_TOK_UNKNOWN:
            tok->attr[i] = TB_TOK_ATTR_UNKNOWN;
            break;
        case GGUF_TOK_CONTROL:
            tok->attr[i] = TB_TOK_ATTR_CONTROL;
            break;
        case GGUF_TOK_USER_DEFINED:
            tok->attr[i] = TB_TOK_ATTR_USER;
            break;
        case GGUF_TOK_BYTE:
            tok->attr[i] = spm ? TB_TOK_ATTR_BYTE : TB_TOK_ATTR_EMPTY;
            break;
        default:
            tok->attr[i] = TB_TOK_ATTR_EMPTY;
            break;
        }
        for (size_t k = 0; k < sizeof(s_eog_texts) / sizeof(s_eog_texts[0]); k++) {
            if (s.len == strlen(s_eog_texts[k]) && !memcmp(s.ptr, s_eog_texts[k], s.len)) {
                tok->attr[i] = TB_TOK_ATTR_CONTROL;
                if (tb_tok_ids_push(&tok->eos_ids, (int32_t)i) < 0) {
                    return TB_ENOMEM;
                }
            }
        }
    }
    if (rc < 0) {
        return rc;
    }
    return tb_tok_vocab_build_index(tok->vocab);
}

/* Registers control, user-defined and unknown tokens as added tokens. */
static int s_added(tb_tokenizer_t *tok, const tb_gguf_t *g, size_t n)
{
    struct tb_gguf_str name = {"", 0};
    char lower[256];
    bool phi3 = false;
    if (tb_gguf_get_str(g, "general.name", &name)) {
        size_t k = name.len < sizeof(lower) - 1 ? name.len : sizeof(lower) - 1;
        for (size_t i = 0; i < k; i++) {
            lower[i] = (char)tolower((unsigned char)name.ptr[i]);
        }
        lower[k] = '\0';
        phi3 = strstr(lower, "phi-3") || strstr(lower, "phi3");
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t a = tok->attr[i];
        if (!(a & (TB_TOK_ATTR_CONTROL | TB_TOK_ATTR_USER | TB_TOK_ATTR_UNKNOWN))) {
            continue;
        }
        size_t len = 0;
        const char *s = tb_tok_vocab_piece(tok->vocab, (int32_t)i, &len);
        bool special = (a & (TB_TOK_ATTR_CONTROL | TB_TOK_ATTR_UNKNOWN)) != 0;
        /* Phi-3: llama.cpp strips the whitespace after its special tokens, except these. */
        bool rstrip = phi3 && !((len == 5 && !memcmp(s, "<unk>", 5)) ||
                                (len == 3 && !memcmp(s, "<s>", 3)) ||
                                (len == 13 && !memcmp(s, "<|endoftext|>", 13)));
        tok->attr[i] |= TB_TOK_ATTR_RAW;
        int rc = tb_tokenizer_add_added(tok, (int32_t)i, s, len, special, false, rstrip, false,
                                        false);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int s_merges(tb_tokenizer_t *tok, const tb_gguf_t *g, char *err, size_t err_len)
{
    tb_gguf_type_t et;
    uint64_t cnt = 0;
    struct tb_buf joined;
    int rc = 0;
    if (!tb_gguf_get_array(g, "tokenizer.ggml.merges", &et, &cnt) || et != TB_GGUF_STRING) {
        tb_err_set(err, err_len, "tokenizer.ggml.merges is missing");
        return TB_EMODEL;
    }
    if (cnt > UINT32_MAX) {
        return TB_E2BIG;
    }
    tb_buf_init(&joined);
    for (uint64_t i = 0; i < cnt && rc == 0; i++) {
        struct tb_gguf_str m;
        tb_gguf_array_str(g, "tokenizer.ggml.merges", i, &m);
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
        if (!sp) {
            continue; /* llama.cpp records such a line under an empty pair nothing can use */
        }
        size_t al = (size_t)(sp - m.ptr);
        tb_buf_clear(&joined);
        rc = tb_buf_append(&joined, m.ptr, al);
        if (rc == 0) {
            rc = tb_buf_append(&joined, sp + 1, m.len - al - 1);
        }
        if (rc < 0) {
            break;
        }
        int32_t a = tb_tok_vocab_find(tok->vocab, m.ptr, al);
        int32_t b = tb_tok_vocab_find(tok->vocab, sp + 1, m.len - al - 1);
        int32_t ab = tb_tok_vocab_find(tok->vocab, (char *)joined.data, joined.len);
        if (a >= 0 && b >= 0 && ab >= 0) {
            rc = tb_bpe_add_merge(tok->bpe, a, b, ab, (uint32_t)i);
        }
    }
    tb_buf_free(&joined);
    return rc;
}

/* What tokenizer.ggml.* describes: SPM ("llama") or byte-level BPE ("gpt2", with a known
 * pre-tokenizer family *fam), and the vocabulary size *n.  0 or a TB_E* code with a message. */
static int s_kind(const tb_gguf_t *g, bool *spm, const struct pre_family **fam, uint64_t *n,
                  char *err, size_t err_len)
{
    struct tb_gguf_str model, pre = {"", 0};
    tb_gguf_type_t et;
    if (!tb_gguf_get_str(g, "tokenizer.ggml.model", &model)) {
        tb_err_set(err, err_len, "the GGUF file has no tokenizer (tokenizer.ggml.model)");
        return TB_EMODEL;
    }
    *spm = model.len == 5 && !memcmp(model.ptr, "llama", 5);
    bool bpe = model.len == 4 && !memcmp(model.ptr, "gpt2", 4);
    if (!*spm && !bpe) {
        tb_err_set(err, err_len, "tokenizer model '%.*s' is not supported (llama and gpt2 are)",
                   (int)(model.len > 64 ? 64 : model.len), model.ptr);
        return TB_ENOTSUP;
    }
    if (!tb_gguf_get_array(g, "tokenizer.ggml.tokens", &et, n) || et != TB_GGUF_STRING ||
        *n == 0) {
        tb_err_set(err, err_len, "tokenizer.ggml.tokens is missing or empty");
        return TB_EMODEL;
    }
    if (*n >= INT32_MAX) {
        tb_err_set(err, err_len, "tokenizer.ggml.tokens has %llu entries",
                   (unsigned long long)*n);
        return TB_E2BIG;
    }
    *fam = NULL;
    if (bpe) {
        tb_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
        const char *want = pre.len ? pre.ptr : "default";
        size_t wlen = pre.len ? pre.len : strlen("default");
        for (size_t i = 0; i < sizeof(s_families) / sizeof(s_families[0]); i++) {
            if (s_name_in(s_families[i].names, want, wlen)) {
                *fam = &s_families[i];
                break;
            }
        }
        if (!*fam) {
            tb_err_set(err, err_len, "unknown pre-tokenizer '%.*s' (tokenizer.ggml.pre)",
                       (int)(wlen > 64 ? 64 : wlen), want);
            return TB_ENOTSUP;
        }
    }
    return 0;
}

/* Special ids (defaults as llama.cpp has them), the extra end-of-generation ids, and the BOS/EOS
 * the encoder adds.  *unk receives the unknown id; *add_space_prefix the SPM space prefix. */
static int s_specials(tb_tokenizer_t *tok, const tb_gguf_t *g, size_t n, bool spm,
                      const struct pre_family *fam, int32_t *unk, bool *add_space_prefix,
                      char *err, size_t err_len)
{
    *unk = spm && n > 0 ? 0 : -1;
    tok->bos = spm && n > 1 ? 1 : -1;
    tok->eos = spm && n > 2 ? 2 : -1;
    int32_t eot = -1, eom = -1;
    int rc = s_token_id(g, "tokenizer.ggml.bos_token_id", n, &tok->bos, err, err_len);
    if (rc == 0) {
        rc = s_token_id(g, "tokenizer.ggml.eos_token_id", n, &tok->eos, err, err_len);
    }
    if (rc == 0) {
        rc = s_token_id(g, "tokenizer.ggml.unknown_token_id", n, unk, err, err_len);
    }
    if (rc == 0) {
        rc = s_token_id(g, "tokenizer.ggml.eot_token_id", n, &eot, err, err_len);
    }
    if (rc == 0) {
        rc = s_token_id(g, "tokenizer.ggml.eom_token_id", n, &eom, err, err_len);
    }
    if (rc < 0) {
        return rc;
    }
    if ((eot >= 0 && tb_tok_ids_push(&tok->eos_ids, eot) < 0) ||
        (eom >= 0 && tb_tok_ids_push(&tok->eos_ids, eom) < 0)) {
        return TB_ENOMEM;
    }
    bool b = false;
    bool add_bos = spm || (fam && fam->add_bos);
    bool add_eos = false;
    *add_space_prefix = spm;
    if (tb_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) {
        add_bos = b;
    }
    if (tb_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b)) {
        add_eos = b;
    }
    if (tb_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b)) {
        *add_space_prefix = b;
    }
    if ((add_bos && tok->bos >= 0 && tb_tok_ids_push(&tok->prefix, tok->bos) < 0) ||
        (add_eos && tok->eos >= 0 && tb_tok_ids_push(&tok->suffix, tok->eos) < 0)) {
        return TB_ENOMEM;
    }
    return 0;
}

/* SPM: the U+2581 space normalizer, score-driven merges with byte fallback, and the decoder
 * steps that undo them (dec[0..4)). */
static int s_spm_pipeline(tb_tokenizer_t *tok, bool add_space_prefix, struct tb_bpe_config *cfg,
                          struct tb_dec_step *dec, size_t *n_dec, char *err, size_t err_len)
{
    int rc = 0;
    if (add_space_prefix) {
        rc = tb_tok_norm_add_prepend(tok->norm, "\xe2\x96\x81", 3);
    }
    if (rc == 0) {
        rc = tb_tok_norm_add_replace(tok->norm, " ", 1, false, "\xe2\x96\x81", 3, err, err_len);
    }
    cfg->mode = TB_BPE_SCORES;
    cfg->missing = TB_BPE_MISSING_BYTES;
    cfg->scores = tok->scores;
    dec[0].kind = TB_DEC_REPLACE;
    dec[0].pattern = "\xe2\x96\x81";
    dec[0].pattern_len = 3;
    dec[0].content = " ";
    dec[0].content_len = 1;
    dec[1].kind = TB_DEC_BYTE_FALLBACK;
    dec[2].kind = TB_DEC_FUSE;
    dec[3].kind = TB_DEC_STRIP;
    dec[3].cp = ' ';
    dec[3].start = add_space_prefix ? 1 : 0;
    *n_dec = 4;
    return rc;
}

/* Byte-level BPE: the family's split regexes, the byte-level alphabet, ranked merges (dec[0]). */
static int s_bpe_pipeline(tb_tokenizer_t *tok, const struct pre_family *fam,
                          struct tb_bpe_config *cfg, struct tb_dec_step *dec, size_t *n_dec,
                          char *err, size_t err_len)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < 6 && fam->regex[i]; i++) {
        rc = tb_pretok_add_split(tok->pretok, fam->regex[i], strlen(fam->regex[i]), true,
                                 TB_SPLIT_ISOLATED, false, err, err_len);
    }
    if (rc == 0) {
        rc = tb_pretok_add_byte_level(tok->pretok, false, false);
    }
    cfg->mode = TB_BPE_RANKS;
    cfg->missing = TB_BPE_MISSING_RAW_BYTE;
    cfg->ignore_merges = fam->ignore_merges;
    dec[0].kind = TB_DEC_BYTE_LEVEL;
    *n_dec = 1;
    return rc;
}

int tb_tokenizer_load_gguf(const tb_gguf_t *g, tb_tokenizer_t **out, char *err, size_t err_len)
{
    int rc = 0;
    tb_tokenizer_t *tok = NULL;
    uint64_t n = 0;
    const struct pre_family *fam = NULL;
    bool spm = false;

    if (err && err_len) {
        err[0] = '\0';
    }
    if (!g || !out) {
        tb_err_set(err, err_len, "invalid arguments");
        return TB_EINVAL;
    }
    *out = NULL;
    rc = s_kind(g, &spm, &fam, &n, err, err_len);
    if (rc != 0) {
        return rc;
    }
    rc = tb_tokenizer_alloc((size_t)n, &tok);
    if (rc < 0) {
        tb_err_set(err, err_len, "out of memory for %llu tokens", (unsigned long long)n);
        return rc;
    }
    tok->gguf = true;
    tok->kind = spm ? TB_TOKENIZER_SPM : TB_TOKENIZER_BYTE_LEVEL;
    rc = s_vocab(tok, g, (size_t)n, spm, err, err_len);
    if (rc == 0) {
        rc = s_added(tok, g, (size_t)n);
    }
    if (rc == 0) {
        rc = tb_tok_norm_new(&tok->norm);
    }
    if (rc == 0) {
        rc = tb_pretok_new(&tok->pretok);
    }
    int32_t unk = -1;
    bool add_space_prefix = false;
    if (rc == 0) {
        rc = s_specials(tok, g, (size_t)n, spm, fam, &unk, &add_space_prefix, err, err_len);
    }
    if (rc < 0) {
        goto fail;
    }
    struct tb_bpe_config cfg = {0};
    cfg.vocab = tok->vocab;
    cfg.unk_id = unk;
    struct tb_dec_step dec[4];
    size_t n_dec = 0;
    memset(dec, 0, sizeof(dec));
    rc = spm ? s_spm_pipeline(tok, add_space_prefix, &cfg, dec, &n_dec, err, err_len)
             : s_bpe_pipeline(tok, fam, &cfg, dec, &n_dec, err, err_len);
    if (rc == 0) {
        rc = tb_bpe_new(&cfg, &tok->bpe);
    }
    if (rc == 0 && !spm) {
        rc = s_merges(tok, g, err, err_len);
    }
    if (rc == 0) {
        rc = tb_tokenizer_finish(tok, dec, n_dec, err, err_len);
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
    tb_tokenizer_destroy(&tok);
    return rc;
}
