/*
 * tb_jinja_lexer.c - tokenizer of the Jinja interpreter; see tb_jinja_lexer.h.
 *
 * The rules mirror jinja2's lexer (root text up to the next {{, {% or {#, then tag tokens until
 * the matching end while brackets are balanced) so that whitespace handling matches the
 * reference byte for byte.
 */
#include "tb_jinja_lexer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_jinja_value.h"

/* ------------------------------------------------------------------ arena */

struct tb_jarena_chunk {
    tb_jarena_chunk_t *next;
    size_t size;
    _Alignas(8) unsigned char data[];
};

void tb_jarena_init(tb_jarena_t *a, size_t limit)
{
    a->head = NULL;
    a->used = 0;
    a->total = 0;
    a->limit = limit;
}

void tb_jarena_release(tb_jarena_t *a)
{
    tb_jarena_chunk_t *c = a->head;
    while (c) {
        tb_jarena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = a->total = 0;
}

void *tb_jarena_alloc(tb_jarena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (n == 0) {
        n = 8;
    }
    if (!a->head || a->head->size - a->used < n) {
        size_t size = n > 16384 ? n : 16384;
        if (a->total + size > a->limit) {
            return NULL;
        }
        tb_jarena_chunk_t *c = malloc(sizeof(*c) + size);
        if (!c) {
            return NULL;
        }
        c->next = a->head;
        c->size = size;
        a->head = c;
        a->used = 0;
        a->total += size;
    }
    void *p = a->head->data + a->used;
    a->used += n;
    memset(p, 0, n);
    return p;
}

char *tb_jarena_strdup(tb_jarena_t *a, const char *s, size_t n)
{
    char *p = tb_jarena_alloc(a, n + 1);
    if (p) {
        if (n) {
            memcpy(p, s, n);
        }
        p[n] = '\0';
    }
    return p;
}

/* ------------------------------------------------------------------ lexer state */

typedef struct {
    tb_jarena_t *arena;
    const char *s;
    size_t len;
    size_t pos;
    uint32_t line;
    size_t line_start; /* offset of the current line's first byte */
    tb_jtok_t *toks;
    size_t n, cap;
    char *err;
    size_t err_len;
    int rc;
    char brackets[256]; /* expected closers while inside a tag */
    size_t depth;
} s_lex_t;

/* Line and line start of offset `at`, which is never before the current position: only the
 * bytes in between are scanned, so lexing stays linear even on one very long line. */
static void s_where(const s_lex_t *lx, size_t at, uint32_t *line, size_t *line_start)
{
    *line = lx->line;
    *line_start = lx->line_start;
    for (size_t i = lx->pos; i < at && i < lx->len; i++) {
        if (lx->s[i] == '\n') {
            (*line)++;
            *line_start = i + 1;
        }
    }
}

static int s_fail(s_lex_t *lx, size_t at, const char *fmt, const char *arg)
{
    if (lx->rc == 0) {
        uint32_t line;
        size_t ls;
        s_where(lx, at, &line, &ls);
        if (lx->err && lx->err_len) {
            int n = snprintf(lx->err, lx->err_len, "%u:%zu: ", line, at - ls + 1);
            if (n >= 0 && (size_t)n < lx->err_len) {
                snprintf(lx->err + n, lx->err_len - (size_t)n, fmt, arg);
            }
        }
        lx->rc = TB_EINVAL;
    }
    return lx->rc;
}

static int s_oom(s_lex_t *lx)
{
    if (lx->rc == 0) {
        if (lx->err && lx->err_len) {
            snprintf(lx->err, lx->err_len, "%u:1: out of memory (or template too large)",
                     lx->line);
        }
        lx->rc = TB_ENOMEM;
    }
    return lx->rc;
}

/* Moves pos forward to `to`, keeping line and line_start. */
static void s_advance(s_lex_t *lx, size_t to)
{
    for (size_t i = lx->pos; i < to; i++) {
        if (lx->s[i] == '\n') {
            lx->line++;
            lx->line_start = i + 1;
        }
    }
    lx->pos = to;
}

static tb_jtok_t *s_push(s_lex_t *lx, uint8_t type, size_t at)
{
    if (lx->n == lx->cap) {
        size_t ncap = lx->cap ? lx->cap * 2 : 64;
        tb_jtok_t *nt = realloc(lx->toks, ncap * sizeof(*nt));
        if (!nt) {
            s_oom(lx);
            return NULL;
        }
        lx->toks = nt;
        lx->cap = ncap;
    }
    tb_jtok_t *t = &lx->toks[lx->n++];
    memset(t, 0, sizeof(*t));
    t->type = type;
    uint32_t line;
    size_t ls;
    s_where(lx, at, &line, &ls);
    t->line = line;
    t->col = (uint32_t)(at - ls + 1);
    return t;
}

static bool s_starts(const s_lex_t *lx, size_t at, const char *lit)
{
    size_t n = strlen(lit);
    return at + n <= lx->len && memcmp(lx->s + at, lit, n) == 0;
}

/* Python's \s at byte offset `at`: returns the byte length of the whitespace char, or 0. */
static size_t s_space_at(const s_lex_t *lx, size_t at)
{
    if (at >= lx->len) {
        return 0;
    }
    size_t i = at;
    uint32_t cp = tb_utf8_next(lx->s, lx->len, &i);
    return tb_py_isspace(cp) ? i - at : 0;
}

static size_t s_skip_spaces(const s_lex_t *lx, size_t at)
{
    size_t n;
    while ((n = s_space_at(lx, at)) > 0) {
        at += n;
    }
    return at;
}

/* Emits root text [a, b) after applying the strip rules for the tag that follows it. */
static int s_emit_data(s_lex_t *lx, size_t a, size_t b, char sign, bool lstrip_ok,
                       bool line_starting)
{
    if (sign == '-') {
        /* Python's str.rstrip(): trailing Unicode whitespace */
        size_t end = b;
        while (end > a) {
            size_t k = end - 1;
            while (k > a && ((unsigned char)lx->s[k] & 0xC0) == 0x80) {
                k--;
            }
            size_t j = k;
            uint32_t cp = tb_utf8_next(lx->s, lx->len, &j);
            if (!tb_py_isspace(cp)) {
                break;
            }
            end = k;
        }
        b = end;
    } else if (sign != '+' && lstrip_ok) {
        size_t l_pos = a;
        for (size_t i = b; i > a; i--) {
            if (lx->s[i - 1] == '\n') {
                l_pos = i;
                break;
            }
        }
        if (l_pos > a || line_starting) {
            if (l_pos < b && s_skip_spaces(lx, l_pos) == b) {
                b = l_pos;
            }
        }
    }
    if (b > a) {
        tb_jtok_t *t = s_push(lx, TB_JT_DATA, a);
        if (!t) {
            return lx->rc;
        }
        t->str = lx->s + a; /* the normalised source lives in the arena */
        t->len = b - a;
    }
    return 0;
}

/* Unescapes a Python string literal body [a, b) into the arena. */
static int s_unescape(s_lex_t *lx, size_t a, size_t b, tb_jtok_t *t)
{
    char *out = tb_jarena_alloc(lx->arena, b - a + 1);
    if (!out) {
        return s_oom(lx);
    }
    size_t o = 0;
    size_t i = a;
    while (i < b) {
        char c = lx->s[i];
        if (c != '\\' || i + 1 >= b) {
            out[o++] = c;
            i++;
            continue;
        }
        char e = lx->s[i + 1];
        i += 2;
        uint32_t cp = 0;
        int hex = 0;
        switch (e) {
        case '\n':
            continue;
        case '\\':
            out[o++] = '\\';
            continue;
        case '\'':
            out[o++] = '\'';
            continue;
        case '"':
            out[o++] = '"';
            continue;
        case 'a':
            out[o++] = '\a';
            continue;
        case 'b':
            out[o++] = '\b';
            continue;
        case 'f':
            out[o++] = '\f';
            continue;
        case 'n':
            out[o++] = '\n';
            continue;
        case 'r':
            out[o++] = '\r';
            continue;
        case 't':
            out[o++] = '\t';
            continue;
        case 'v':
            out[o++] = '\v';
            continue;
        case 'x':
            hex = 2;
            break;
        case 'u':
            hex = 4;
            break;
        case 'U':
            hex = 8;
            break;
        case 'N':
            return s_fail(lx, i - 2, "%s", "\\N{...} escapes are not supported");
        default:
            if (e >= '0' && e <= '7') {
                cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < b && lx->s[i] >= '0' && lx->s[i] <= '7'; k++) {
                    cp = cp * 8 + (uint32_t)(lx->s[i++] - '0');
                }
                break;
            }
            /* unknown escapes keep the backslash, as Python does */
            out[o++] = '\\';
            i--;
            continue;
        }
        for (int k = 0; k < hex; k++) {
            char h = i < b ? lx->s[i] : '\0';
            int d = (h >= '0' && h <= '9')   ? h - '0'
                    : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                             : -1;
            if (d < 0) {
                return s_fail(lx, i, "%s", "truncated \\xXX, \\uXXXX or \\UXXXXXXXX escape");
            }
            cp = cp * 16 + (uint32_t)d;
            i++;
        }
        char enc[4];
        size_t n = tb_utf8_encode(cp, enc);
        if (n == 0) {
            return s_fail(lx, i, "%s", "escape is not a valid Unicode scalar value");
        }
        /* an escape is never shorter than its encoding, so `out` is large enough */
        memcpy(out + o, enc, n);
        o += n;
    }
    out[o] = '\0';
    t->str = out;
    t->len = o;
    return 0;
}

static bool s_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool s_is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* Digits with optional single underscores between them ((\d+_)*\d+); returns the end. */
static size_t s_digits(const s_lex_t *lx, size_t at)
{
    if (at >= lx->len || !s_is_digit(lx->s[at])) {
        return at;
    }
    size_t i = at;
    for (;;) {
        while (i < lx->len && s_is_digit(lx->s[i])) {
            i++;
        }
        if (i + 1 < lx->len && lx->s[i] == '_' && s_is_digit(lx->s[i + 1])) {
            i++;
            continue;
        }
        return i;
    }
}

static int s_number(s_lex_t *lx, size_t at, size_t *end)
{
    /* float: digits ( (.digits)? e[+-]?digits | .digits ); not right after a '.' */
    size_t d = s_digits(lx, at);
    bool after_dot = at > 0 && lx->s[at - 1] == '.';
    size_t fend = 0;
    if (!after_dot) {
        size_t i = d;
        size_t frac = i;
        if (i < lx->len && lx->s[i] == '.') {
            size_t f = s_digits(lx, i + 1);
            if (f > i + 1) {
                frac = f;
            }
        }
        size_t e = frac;
        if (e < lx->len && (lx->s[e] == 'e' || lx->s[e] == 'E')) {
            size_t k = e + 1;
            if (k < lx->len && (lx->s[k] == '+' || lx->s[k] == '-')) {
                k++;
            }
            size_t x = s_digits(lx, k);
            if (x > k) {
                fend = x;
            }
        }
        if (!fend && frac > d) {
            fend = frac;
        }
    }
    char buf[128];
    if (fend) {
        size_t o = 0;
        for (size_t i = at; i < fend && o < sizeof(buf) - 1; i++) {
            if (lx->s[i] != '_') {
                buf[o++] = lx->s[i];
            }
        }
        buf[o] = '\0';
        tb_jtok_t *t = s_push(lx, TB_JT_FLOAT, at);
        if (!t) {
            return lx->rc;
        }
        t->fval = strtod(buf, NULL);
        *end = fend;
        return 0;
    }
    /* integer: 0x / 0o / 0b prefixes, [1-9](_?\d)*, 0(_?0)* */
    int base = 10;
    size_t i = at;
    if (lx->s[at] == '0' && at + 1 < lx->len) {
        char p = lx->s[at + 1];
        base = (p == 'x' || p == 'X')   ? 16
               : (p == 'o' || p == 'O') ? 8
               : (p == 'b' || p == 'B') ? 2
                                        : 10;
        if (base != 10) {
            i = at + 2;
        }
    }
    uint64_t v = 0;
    bool overflow = false;
    size_t ndig = 0;
    for (; i < lx->len; i++) {
        char c = lx->s[i];
        int dv = (c >= '0' && c <= '9')   ? c - '0'
                 : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                 : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                          : -1;
        if (c == '_' && i + 1 < lx->len && ndig > 0) {
            continue;
        }
        if (dv < 0 || dv >= base) {
            break;
        }
        if (base == 10 && lx->s[at] == '0' && dv != 0) {
            break; /* "0(_?0)*": a leading zero takes only zeros */
        }
        if (v > (UINT64_MAX - (uint64_t)dv) / (uint64_t)base) {
            overflow = true;
        }
        v = v * (uint64_t)base + (uint64_t)dv;
        ndig++;
    }
    if (ndig == 0) {
        return s_fail(lx, at, "%s", "invalid number literal");
    }
    if (overflow || v > (uint64_t)INT64_MAX) {
        return s_fail(lx, at, "%s", "integer literal too large");
    }
    tb_jtok_t *t = s_push(lx, TB_JT_INT, at);
    if (!t) {
        return lx->rc;
    }
    t->ival = (int64_t)v;
    *end = i;
    return 0;
}

static const struct {
    const char *s;
    uint8_t op;
} s_ops[] = {
    {"//", TB_JOP_FLOORDIV}, {"**", TB_JOP_POW},      {"==", TB_JOP_EQ},    {"!=", TB_JOP_NE},
    {">=", TB_JOP_GTEQ},     {"<=", TB_JOP_LTEQ},     {"+", TB_JOP_ADD},    {"-", TB_JOP_SUB},
    {"/", TB_JOP_DIV},       {"*", TB_JOP_MUL},       {"%", TB_JOP_MOD},    {"~", TB_JOP_TILDE},
    {"[", TB_JOP_LBRACKET},  {"]", TB_JOP_RBRACKET},  {"(", TB_JOP_LPAREN}, {")", TB_JOP_RPAREN},
    {"{", TB_JOP_LBRACE},    {"}", TB_JOP_RBRACE},    {">", TB_JOP_GT},     {"<", TB_JOP_LT},
    {"=", TB_JOP_ASSIGN},    {".", TB_JOP_DOT},       {":", TB_JOP_COLON},  {"|", TB_JOP_PIPE},
    {",", TB_JOP_COMMA},     {";", TB_JOP_SEMICOLON},
};

/* Lexes the inside of a {{ }} or {% %} tag starting at pos.  `is_block` selects the end
 * marker.  On return pos is after the end marker; *line_starting tells whether the marker's
 * match ended with a newline. */
static int s_tag(s_lex_t *lx, bool is_block, bool *line_starting)
{
    lx->depth = 0;
    for (;;) {
        size_t at = lx->pos;
        if (at >= lx->len) {
            return s_fail(lx, at, "%s",
                          is_block ? "unexpected end of template, expected '%}'"
                                   : "unexpected end of template, expected '}}'");
        }
        if (lx->depth == 0) {
            size_t end = 0;
            bool nl = false;
            if (is_block) {
                if (s_starts(lx, at, "+%}")) {
                    end = at + 3;
                } else if (s_starts(lx, at, "-%}")) {
                    end = s_skip_spaces(lx, at + 3);
                } else if (s_starts(lx, at, "%}")) {
                    end = at + 2;
                    if (end < lx->len && lx->s[end] == '\n') {
                        end++; /* trim_blocks */
                    }
                }
            } else {
                if (s_starts(lx, at, "-}}")) {
                    end = s_skip_spaces(lx, at + 3);
                } else if (s_starts(lx, at, "}}")) {
                    end = at + 2;
                }
            }
            if (end) {
                nl = lx->s[end - 1] == '\n';
                if (!s_push(lx, is_block ? TB_JT_BLOCK_END : TB_JT_VAR_END, at)) {
                    return lx->rc;
                }
                s_advance(lx, end);
                *line_starting = nl;
                return 0;
            }
        }
        size_t sp = s_skip_spaces(lx, at);
        if (sp > at) {
            s_advance(lx, sp);
            continue;
        }
        char c = lx->s[at];
        size_t end = at;
        if (s_is_digit(c)) {
            if (s_number(lx, at, &end) != 0) {
                return lx->rc;
            }
        } else if (s_is_name_start(c)) {
            end = at + 1;
            while (end < lx->len && (s_is_name_start(lx->s[end]) || s_is_digit(lx->s[end]))) {
                end++;
            }
            tb_jtok_t *t = s_push(lx, TB_JT_NAME, at);
            if (!t) {
                return lx->rc;
            }
            t->str = lx->s + at;
            t->len = end - at;
        } else if (c == '\'' || c == '"') {
            end = at + 1;
            while (end < lx->len && lx->s[end] != c) {
                end += (lx->s[end] == '\\' && end + 1 < lx->len) ? 2 : 1;
            }
            if (end >= lx->len) {
                return s_fail(lx, at, "%s", "unterminated string literal");
            }
            tb_jtok_t *t = s_push(lx, TB_JT_STRING, at);
            if (!t || s_unescape(lx, at + 1, end, t) != 0) {
                return lx->rc ? lx->rc : s_oom(lx);
            }
            end++;
        } else {
            size_t k = 0;
            for (; k < sizeof(s_ops) / sizeof(s_ops[0]); k++) {
                if (s_starts(lx, at, s_ops[k].s)) {
                    break;
                }
            }
            if (k == sizeof(s_ops) / sizeof(s_ops[0])) {
                char ch[8];
                size_t j = at;
                uint32_t cp = tb_utf8_next(lx->s, lx->len, &j);
                size_t n = tb_utf8_encode(cp, ch);
                ch[n] = '\0';
                return s_fail(lx, at, "unexpected char '%s'", ch);
            }
            uint8_t op = s_ops[k].op;
            if (op == TB_JOP_LPAREN || op == TB_JOP_LBRACKET || op == TB_JOP_LBRACE) {
                if (lx->depth >= sizeof(lx->brackets)) {
                    return s_fail(lx, at, "%s", "brackets nested too deeply");
                }
                lx->brackets[lx->depth++] = op == TB_JOP_LPAREN     ? ')'
                                            : op == TB_JOP_LBRACKET ? ']'
                                                                    : '}';
            } else if (op == TB_JOP_RPAREN || op == TB_JOP_RBRACKET || op == TB_JOP_RBRACE) {
                char got[2] = {s_ops[k].s[0], '\0'};
                if (lx->depth == 0) {
                    return s_fail(lx, at, "unexpected '%s'", got);
                }
                if (lx->brackets[lx->depth - 1] != got[0]) {
                    return s_fail(lx, at, "unexpected '%s'", got);
                }
                lx->depth--;
            }
            tb_jtok_t *t = s_push(lx, TB_JT_OP, at);
            if (!t) {
                return lx->rc;
            }
            t->op = op;
            end = at + strlen(s_ops[k].s);
        }
        s_advance(lx, end);
    }
}

/* Finds the next tag start at or after `from`: returns its offset (or len) and its kind. */
static size_t s_find_tag(const s_lex_t *lx, size_t from, char *kind)
{
    for (size_t i = from; i + 1 < lx->len; i++) {
        if (lx->s[i] == '{') {
            char k = lx->s[i + 1];
            if (k == '{' || k == '%' || k == '#') {
                *kind = k;
                return i;
            }
        }
    }
    *kind = 0;
    return lx->len;
}

/* At "{%" (with optional sign) checks for "raw"; returns the offset after the tag or 0. */
static size_t s_raw_begin(const s_lex_t *lx, size_t at, const char *word)
{
    size_t i = at + 2;
    if (i < lx->len && (lx->s[i] == '-' || lx->s[i] == '+')) {
        i++;
    }
    i = s_skip_spaces(lx, i);
    size_t wl = strlen(word);
    if (!s_starts(lx, i, word)) {
        return 0;
    }
    i += wl;
    size_t j = s_skip_spaces(lx, i);
    if (s_starts(lx, j, "-%}")) {
        return s_skip_spaces(lx, j + 3);
    }
    if (s_starts(lx, j, "%}")) {
        return j + 2;
    }
    return 0;
}

/* Inside a raw block: finds "{%[-+]? endraw %}" and emits the text before it. */
static int s_raw(s_lex_t *lx, bool *line_starting)
{
    size_t from = lx->pos;
    for (size_t i = from; i + 1 < lx->len; i++) {
        if (lx->s[i] != '{' || lx->s[i + 1] != '%') {
            continue;
        }
        size_t j = i + 2;
        char sign = 0;
        if (j < lx->len && (lx->s[j] == '-' || lx->s[j] == '+')) {
            sign = lx->s[j];
            j++;
        }
        j = s_skip_spaces(lx, j);
        if (!s_starts(lx, j, "endraw")) {
            continue;
        }
        j = s_skip_spaces(lx, j + 6);
        size_t end = 0;
        if (s_starts(lx, j, "+%}")) {
            end = j + 3;
        } else if (s_starts(lx, j, "-%}")) {
            end = s_skip_spaces(lx, j + 3);
        } else if (s_starts(lx, j, "%}")) {
            end = j + 2;
            if (end < lx->len && lx->s[end] == '\n') {
                end++;
            }
        }
        if (!end) {
            continue;
        }
        if (s_emit_data(lx, from, i, sign, true, *line_starting) != 0) {
            return lx->rc;
        }
        *line_starting = lx->s[end - 1] == '\n';
        s_advance(lx, end);
        return 0;
    }
    return s_fail(lx, from, "%s", "missing end of raw directive");
}

static int s_comment(s_lex_t *lx, bool *line_starting)
{
    size_t body = lx->pos;
    for (size_t i = body; i + 1 < lx->len; i++) {
        if (lx->s[i] != '#' || lx->s[i + 1] != '}') {
            continue;
        }
        size_t end;
        if (i > body && lx->s[i - 1] == '-') {
            end = s_skip_spaces(lx, i + 2);
        } else if (i > body && lx->s[i - 1] == '+') {
            end = i + 2;
        } else {
            end = i + 2;
            if (end < lx->len && lx->s[end] == '\n') {
                end++;
            }
        }
        *line_starting = lx->s[end - 1] == '\n';
        s_advance(lx, end);
        return 0;
    }
    return s_fail(lx, body, "%s", "missing end of comment tag");
}

int tb_jinja_lex(tb_jarena_t *arena, const char *src, size_t len, tb_jtoks_t *out, char *err,
                 size_t err_len)
{
    s_lex_t lx;
    memset(&lx, 0, sizeof(lx));
    lx.arena = arena;
    lx.line = 1;
    lx.err = err;
    lx.err_len = err_len;

    /* newlines: \r\n and \r become \n; one trailing newline is dropped */
    char *norm = tb_jarena_alloc(arena, len + 1);
    if (!norm) {
        s_oom(&lx);
        return lx.rc;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') {
                i++;
            }
        } else {
            norm[n++] = src[i];
        }
    }
    if (n > 0 && norm[n - 1] == '\n') {
        n--;
    }
    norm[n] = '\0';
    lx.s = norm;
    lx.len = n;

    bool line_starting = true;
    while (lx.pos < lx.len && lx.rc == 0) {
        char kind;
        size_t at = s_find_tag(&lx, lx.pos, &kind);
        if (kind == 0) {
            if (s_emit_data(&lx, lx.pos, lx.len, 0, false, false) != 0) {
                break;
            }
            s_advance(&lx, lx.len);
            break;
        }
        char sign = 0;
        if (at + 2 < lx.len && (lx.s[at + 2] == '-' || lx.s[at + 2] == '+')) {
            sign = lx.s[at + 2];
        }
        size_t raw_end = kind == '%' ? s_raw_begin(&lx, at, "raw") : 0;
        if (s_emit_data(&lx, lx.pos, at, sign, kind != '{', line_starting) != 0) {
            break;
        }
        size_t body = at + 2 + (sign ? 1 : 0);
        if (raw_end) {
            s_advance(&lx, raw_end);
            line_starting = lx.s[raw_end - 1] == '\n';
            s_raw(&lx, &line_starting);
            continue;
        }
        if (kind == '#') {
            s_advance(&lx, body);
            s_comment(&lx, &line_starting);
            continue;
        }
        if (!s_push(&lx, kind == '{' ? TB_JT_VAR_BEGIN : TB_JT_BLOCK_BEGIN, at)) {
            break;
        }
        s_advance(&lx, body);
        s_tag(&lx, kind == '%', &line_starting);
    }
    if (lx.rc == 0 && s_push(&lx, TB_JT_EOF, lx.len)) {
        out->v = tb_jarena_alloc(arena, lx.n * sizeof(tb_jtok_t));
        if (!out->v) {
            s_oom(&lx);
        } else {
            memcpy(out->v, lx.toks, lx.n * sizeof(tb_jtok_t));
            out->n = lx.n;
            /* names live in the normalised source; make them NUL-terminated copies */
            for (size_t i = 0; i < out->n && lx.rc == 0; i++) {
                tb_jtok_t *t = &out->v[i];
                if (t->type == TB_JT_NAME) {
                    t->str = tb_jarena_strdup(arena, t->str, t->len);
                    if (!t->str) {
                        s_oom(&lx);
                    }
                }
            }
        }
    }
    free(lx.toks);
    return lx.rc;
}

void tb_jtok_describe(const tb_jtok_t *t, char *buf, size_t size)
{
    switch (t->type) {
    case TB_JT_EOF:
        snprintf(buf, size, "end of template");
        break;
    case TB_JT_DATA:
        snprintf(buf, size, "template data");
        break;
    case TB_JT_VAR_BEGIN:
        snprintf(buf, size, "'{{'");
        break;
    case TB_JT_VAR_END:
        snprintf(buf, size, "end of print statement");
        break;
    case TB_JT_BLOCK_BEGIN:
        snprintf(buf, size, "'{%%'");
        break;
    case TB_JT_BLOCK_END:
        snprintf(buf, size, "end of statement block");
        break;
    case TB_JT_NAME:
        snprintf(buf, size, "'%.40s'", t->str);
        break;
    case TB_JT_STRING:
        snprintf(buf, size, "string literal");
        break;
    case TB_JT_INT:
    case TB_JT_FLOAT:
        snprintf(buf, size, "number");
        break;
    default:
        for (size_t k = 0; k < sizeof(s_ops) / sizeof(s_ops[0]); k++) {
            if (s_ops[k].op == t->op) {
                snprintf(buf, size, "'%s'", s_ops[k].s);
                return;
            }
        }
        snprintf(buf, size, "operator");
        break;
    }
}
