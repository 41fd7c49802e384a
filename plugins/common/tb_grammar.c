/*
 * tb_grammar.c - GBNF text to a compiled byte grammar (tb_grammar_impl.h): a recursive-descent
 * parser that builds rule bodies, rewrites repetitions into helper rules (re-parsing the
 * repeated atom for each copy, so copies never share a rule), turns Unicode classes into UTF-8
 * byte-sequence alternatives, then flattens the rules and computes each rule's static
 * continuation and the left-recursion check.
 */
#include "tb_grammar.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_grammar_impl.h"
#include "tb_utf8.h"

#define MAX_ELEMS (4u << 20)
#define MAX_REPEAT 100000u
#define UNBOUNDED UINT32_MAX

struct evec {
    struct tb_gelem *v;
    size_t n, cap;
};

struct prule {
    char *name;
    struct evec body;
    size_t ref_pos; /* first reference, for "undefined rule" */
    size_t def_pos; /* definition (a helper rule: its parent's) */
    bool defined;
};

struct parser {
    const char *s;
    size_t len, pos;
    struct prule *rules;
    size_t n_rules, cap_rules;
    uint8_t (*classes)[32];
    size_t n_classes, cap_classes;
    int32_t byte_class[256];
    size_t total;
    char *err;
    size_t err_len;
};

static int s_fail(struct parser *p, size_t at, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int s_fail(struct parser *p, size_t at, int rc, const char *fmt, ...)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < p->len; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (p->err_len > 0) {
        int k = snprintf(p->err, p->err_len, "%zu:%zu: ", line, col);
        if (k >= 0 && (size_t)k < p->err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + k, p->err_len - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

static int s_push(struct parser *p, struct evec *e, uint32_t type, uint32_t val)
{
    if (++p->total > MAX_ELEMS) {
        return s_fail(p, p->pos, TB_E2BIG, "grammar too large (over %u elements)", MAX_ELEMS);
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        struct tb_gelem *v = realloc(e->v, cap * sizeof(*v));
        if (!v) {
            return TB_ENOMEM;
        }
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = (struct tb_gelem){type, val};
    return 0;
}

static int s_append(struct parser *p, struct evec *to, const struct evec *from)
{
    for (size_t i = 0; i < from->n; i++) {
        int rc = s_push(p, to, from->v[i].type, from->v[i].val);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int s_new_rule(struct parser *p, const char *name, size_t n, uint32_t *id)
{
    if (p->n_rules == p->cap_rules) {
        size_t cap = p->cap_rules ? p->cap_rules * 2 : 32;
        struct prule *r = realloc(p->rules, cap * sizeof(*r));
        if (!r) {
            return TB_ENOMEM;
        }
        p->rules = r;
        p->cap_rules = cap;
    }
    struct prule *r = &p->rules[p->n_rules];
    memset(r, 0, sizeof(*r));
    r->name = strndup(name, n);
    if (!r->name) {
        return TB_ENOMEM;
    }
    *id = (uint32_t)p->n_rules++;
    return 0;
}

/* A helper rule named after the rule it serves. */
static int s_aux_rule(struct parser *p, uint32_t parent, uint32_t *id)
{
    char name[160];
    snprintf(name, sizeof(name), "%.120s-%zu", p->rules[parent].name, p->n_rules);
    int rc = s_new_rule(p, name, strlen(name), id);
    if (rc == 0) {
        p->rules[*id].defined = true;
        p->rules[*id].def_pos = p->rules[parent].def_pos;
    }
    return rc;
}

static int s_find_rule(struct parser *p, const char *name, size_t n, size_t at, uint32_t *id)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        if (strlen(p->rules[i].name) == n && memcmp(p->rules[i].name, name, n) == 0) {
            *id = (uint32_t)i;
            return 0;
        }
    }
    int rc = s_new_rule(p, name, n, id);
    if (rc == 0) {
        p->rules[*id].ref_pos = at;
    }
    return rc;
}

static int s_class(struct parser *p, const uint8_t bits[32], uint32_t *idx)
{
    if (p->n_classes == p->cap_classes) {
        size_t cap = p->cap_classes ? p->cap_classes * 2 : 64;
        uint8_t(*c)[32] = realloc(p->classes, cap * sizeof(*c));
        if (!c) {
            return TB_ENOMEM;
        }
        p->classes = c;
        p->cap_classes = cap;
    }
    memcpy(p->classes[p->n_classes], bits, 32);
    *idx = (uint32_t)p->n_classes++;
    return 0;
}

static int s_push_byte(struct parser *p, struct evec *out, uint8_t b)
{
    if (p->byte_class[b] < 0) {
        uint8_t bits[32] = {0};
        bits[b >> 3] = (uint8_t)(1u << (b & 7));
        uint32_t idx = 0;
        int rc = s_class(p, bits, &idx);
        if (rc != 0) {
            return rc;
        }
        p->byte_class[b] = (int32_t)idx;
    }
    return s_push(p, out, TB_GE_CHAR, (uint32_t)p->byte_class[b]);
}

static int s_push_range(struct parser *p, struct evec *out, uint8_t lo, uint8_t hi)
{
    if (lo == hi) {
        return s_push_byte(p, out, lo);
    }
    uint8_t bits[32] = {0};
    for (unsigned b = lo; b <= hi; b++) {
        bits[b >> 3] |= (uint8_t)(1u << (b & 7));
    }
    uint32_t idx = 0;
    int rc = s_class(p, bits, &idx);
    return rc != 0 ? rc : s_push(p, out, TB_GE_CHAR, idx);
}

static size_t s_utf8(uint32_t cp, uint8_t *o)
{
    return tb_utf8_encode(cp, (char *)o);
}

/* Appends to `alts` one alternative per run of byte ranges that spells the code points
 * [lo, hi] (lo >= 0x80): split until every byte position is a plain range. */
static int s_utf8_alts(struct parser *p, struct evec *alts, uint32_t lo, uint32_t hi)
{
    static const uint32_t lims[] = {0x7FF, 0xFFFF};
    int rc = 0;
    for (size_t i = 0; i < 2; i++) {
        if (lo <= lims[i] && hi > lims[i]) {
            rc = s_utf8_alts(p, alts, lo, lims[i]);
            return rc != 0 ? rc : s_utf8_alts(p, alts, lims[i] + 1, hi);
        }
    }
    uint8_t a[4], b[4];
    size_t n = s_utf8(lo, a);
    for (size_t i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                rc = s_utf8_alts(p, alts, lo, lo | m);
                return rc != 0 ? rc : s_utf8_alts(p, alts, (lo | m) + 1, hi);
            }
            if ((hi & m) != m) {
                rc = s_utf8_alts(p, alts, lo, (hi & ~m) - 1);
                return rc != 0 ? rc : s_utf8_alts(p, alts, hi & ~m, hi);
            }
        }
    }
    s_utf8(hi, b);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = s_push_range(p, alts, a[i], b[i]);
    }
    return rc != 0 ? rc : s_push(p, alts, TB_GE_END, 0);
}

struct range {
    uint32_t lo, hi;
};

static int s_range_cmp(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->lo < y->lo ? -1 : (x->lo > y->lo);
}

/* Code point ranges (sorted and merged in place, complemented when negated) to elements: one
 * byte class when everything is ASCII, otherwise a reference to a helper rule of alternatives. */
static int s_ranges_to_elems(struct parser *p, uint32_t rule, struct range *r, size_t n,
                             bool negated, struct evec *out)
{
    if (n > 0) {
        qsort(r, n, sizeof(*r), s_range_cmp);
    }
    struct range fin[260];
    size_t nf = 0;
    uint32_t next = 0; /* complement: first code point not yet covered */
    for (size_t i = 0; i < n; i++) {
        if (!negated) {
            if (nf > 0 && r[i].lo <= fin[nf - 1].hi + 1) {
                fin[nf - 1].hi = r[i].hi > fin[nf - 1].hi ? r[i].hi : fin[nf - 1].hi;
            } else {
                fin[nf++] = r[i];
            }
        } else {
            if (r[i].lo > next) {
                fin[nf++] = (struct range){next, r[i].lo - 1};
            }
            next = r[i].hi + 1 > next ? r[i].hi + 1 : next;
        }
    }
    if (negated && next <= 0x10FFFF) {
        fin[nf++] = (struct range){next, 0x10FFFF};
    }
    uint8_t ascii[32] = {0};
    bool any_ascii = false;
    struct evec alts = {0};
    int rc = 0;
    for (size_t i = 0; i < nf && rc == 0; i++) {
        for (uint32_t c = fin[i].lo; c <= fin[i].hi && c < 0x80; c++) {
            ascii[c >> 3] |= (uint8_t)(1u << (c & 7));
            any_ascii = true;
        }
        uint32_t lo = fin[i].lo < 0x80 ? 0x80 : fin[i].lo, hi = fin[i].hi;
        /* surrogates are not characters */
        if (lo <= hi && lo < 0xD800 && hi >= 0xD800) {
            rc = s_utf8_alts(p, &alts, lo, 0xD7FF);
            lo = 0xE000;
        } else if (lo >= 0xD800 && lo <= 0xDFFF) {
            lo = 0xE000;
        }
        if (rc == 0 && lo <= hi) {
            rc = s_utf8_alts(p, &alts, lo, hi);
        }
    }
    uint32_t idx = 0, aux = 0;
    if (rc == 0) {
        rc = s_class(p, ascii, &idx);
    }
    if (rc == 0 && alts.n == 0) {
        rc = s_push(p, out, TB_GE_CHAR, idx);
    } else if (rc == 0) {
        struct evec body = {0};
        if (any_ascii) {
            rc = s_push(p, &body, TB_GE_CHAR, idx);
            rc = rc != 0 ? rc : s_push(p, &body, TB_GE_END, 0);
        }
        rc = rc != 0 ? rc : s_append(p, &body, &alts);
        rc = rc != 0 ? rc : s_push(p, &body, TB_GE_RULE_END, 0);
        rc = rc != 0 ? rc : s_aux_rule(p, rule, &aux);
        if (rc == 0) {
            p->rules[aux].body = body;
            rc = s_push(p, out, TB_GE_REF, aux);
        } else {
            free(body.v);
        }
    }
    free(alts.v);
    return rc;
}

static void s_skip(struct parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == '#') {
            while (p->pos < p->len && p->s[p->pos] != '\n') {
                p->pos++;
            }
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->pos++;
        } else {
            break;
        }
    }
}

static bool s_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

static size_t s_name_len(const struct parser *p, size_t at)
{
    size_t n = 0;
    while (at + n < p->len && s_name_char(p->s[at + n])) {
        n++;
    }
    return n;
}

/* True when a rule definition ("name ::=") starts at p->pos. */
static bool s_at_definition(const struct parser *p)
{
    size_t n = s_name_len(p, p->pos), i = p->pos + n;
    if (n == 0) {
        return false;
    }
    while (i < p->len && (p->s[i] == ' ' || p->s[i] == '\t')) {
        i++;
    }
    return i + 3 <= p->len && memcmp(p->s + i, "::=", 3) == 0;
}

static int s_hex(struct parser *p, size_t digits, uint32_t *cp)
{
    uint32_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        char c = p->pos < p->len ? p->s[p->pos] : 0;
        if (!isxdigit((unsigned char)c)) {
            return s_fail(p, p->pos, TB_EINVAL, "expected %zu hex digits", digits);
        }
        v = v * 16 + (uint32_t)(isdigit((unsigned char)c) ? c - '0' : (tolower(c) - 'a' + 10));
        p->pos++;
    }
    *cp = v;
    return 0;
}

/* One character of a literal or class: an escape, or a UTF-8 encoded code point. */
static int s_char(struct parser *p, uint32_t *cp)
{
    size_t at = p->pos;
    unsigned char c = (unsigned char)p->s[p->pos++];
    if (c == '\\') {
        char e = p->pos < p->len ? p->s[p->pos++] : 0;
        int rc = 0;
        switch (e) {
        case 'n':
            *cp = '\n';
            break;
        case 't':
            *cp = '\t';
            break;
        case 'r':
            *cp = '\r';
            break;
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
            *cp = (uint32_t)e;
            break;
        case 'x':
            rc = s_hex(p, 2, cp);
            break;
        case 'u':
            rc = s_hex(p, 4, cp);
            break;
        case 'U':
            rc = s_hex(p, 8, cp);
            break;
        default:
            return s_fail(p, at, TB_EINVAL, "unknown escape '\\%c'", e ? e : '0');
        }
        if (rc == 0 && (*cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))) {
            return s_fail(p, at, TB_EINVAL, "escape is not a Unicode character");
        }
        return rc;
    }
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || at + n > p->len) {
        return s_fail(p, at, TB_EINVAL, "invalid UTF-8");
    }
    uint32_t v = n == 1 ? c : c & (0x7Fu >> n);
    for (size_t i = 1; i < n; i++) {
        unsigned char k = (unsigned char)p->s[p->pos++];
        if ((k & 0xC0) != 0x80) {
            return s_fail(p, at, TB_EINVAL, "invalid UTF-8");
        }
        v = (v << 6) | (k & 0x3F);
    }
    *cp = v;
    return 0;
}

static int s_literal(struct parser *p, struct evec *out)
{
    size_t at = p->pos++;
    while (p->pos < p->len && p->s[p->pos] != '"') {
        uint32_t cp = 0;
        uint8_t b[4];
        int rc = s_char(p, &cp);
        for (size_t i = 0, n = rc == 0 ? s_utf8(cp, b) : 0; i < n && rc == 0; i++) {
            rc = s_push_byte(p, out, b[i]);
        }
        if (rc != 0) {
            return rc;
        }
    }
    if (p->pos >= p->len) {
        return s_fail(p, at, TB_EINVAL, "unterminated string");
    }
    p->pos++;
    return 0;
}

static int s_class_atom(struct parser *p, uint32_t rule, struct evec *out)
{
    size_t at = p->pos++;
    bool negated = p->pos < p->len && p->s[p->pos] == '^';
    struct range r[128];
    size_t n = 0;
    p->pos += negated;
    while (p->pos < p->len && p->s[p->pos] != ']') {
        uint32_t lo = 0, hi = 0;
        int rc = s_char(p, &lo);
        hi = lo;
        if (rc == 0 && p->pos + 1 < p->len && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
            p->pos++;
            rc = s_char(p, &hi);
        }
        if (rc != 0) {
            return rc;
        }
        if (hi < lo || n == 128) {
            return s_fail(p, at, TB_EINVAL, hi < lo ? "reversed range" : "class too long");
        }
        r[n++] = (struct range){lo, hi};
    }
    if (p->pos >= p->len) {
        return s_fail(p, at, TB_EINVAL, "unterminated character class");
    }
    p->pos++;
    return s_ranges_to_elems(p, rule, r, n, negated, out);
}

static int s_alternatives(struct parser *p, uint32_t rule, bool group);

/* One atom (literal, class, '.', rule name, group) into out. */
static int s_atom(struct parser *p, uint32_t rule, struct evec *out)
{
    size_t at = p->pos;
    char c = p->s[p->pos];
    if (c == '"') {
        return s_literal(p, out);
    }
    if (c == '[') {
        return s_class_atom(p, rule, out);
    }
    if (c == '.') {
        p->pos++;
        return s_ranges_to_elems(p, rule, NULL, 0, true, out);
    }
    uint32_t id = 0;
    int rc = 0;
    if (c == '(') {
        p->pos++;
        rc = s_aux_rule(p, rule, &id);
        rc = rc != 0 ? rc : s_alternatives(p, id, true);
        if (rc == 0 && (p->pos >= p->len || p->s[p->pos] != ')')) {
            return s_fail(p, at, TB_EINVAL, "unclosed '('");
        }
        p->pos++;
        return rc != 0 ? rc : s_push(p, out, TB_GE_REF, id);
    }
    size_t n = s_name_len(p, p->pos);
    if (n == 0) {
        return s_fail(p, at, TB_EINVAL, "unexpected '%c'", c);
    }
    rc = s_find_rule(p, p->s + p->pos, n, at, &id);
    p->pos += n;
    return rc != 0 ? rc : s_push(p, out, TB_GE_REF, id);
}

/* Parses the atom at `at` again into out, as a fresh copy with its own helper rules. */
static int s_reparse(struct parser *p, size_t at, uint32_t rule, struct evec *out)
{
    size_t save = p->pos;
    p->pos = at;
    int rc = s_atom(p, rule, out);
    p->pos = save;
    return rc;
}

/* The postfix operator at p->pos ('*', '+', '?', '{m}', '{m,}', '{m,n}') as bounds; false when
 * none. */
static int s_bounds(struct parser *p, bool *has, uint32_t *min, uint32_t *max)
{
    size_t at = p->pos;
    char c = p->pos < p->len ? p->s[p->pos] : 0;
    *has = c == '*' || c == '+' || c == '?' || c == '{';
    if (!*has) {
        return 0;
    }
    p->pos++;
    *min = c == '+';
    *max = c == '?' ? 1 : UNBOUNDED;
    if (c != '{') {
        return 0;
    }
    unsigned long a = 0, b = 0;
    char *end = NULL;
    a = strtoul(p->s + p->pos, &end, 10);
    if (end == p->s + p->pos) {
        return s_fail(p, at, TB_EINVAL, "expected a repetition count");
    }
    p->pos = (size_t)(end - p->s);
    b = a;
    if (p->pos < p->len && p->s[p->pos] == ',') {
        p->pos++;
        b = strtoul(p->s + p->pos, &end, 10);
        b = end == p->s + p->pos ? UNBOUNDED : b;
        p->pos = (size_t)(end - p->s);
    }
    if (p->pos >= p->len || p->s[p->pos] != '}') {
        return s_fail(p, at, TB_EINVAL, "expected '}'");
    }
    p->pos++;
    if (a > MAX_REPEAT || (b != UNBOUNDED && (b > MAX_REPEAT || b < a))) {
        return s_fail(p, at, TB_EINVAL, "bad repetition bounds");
    }
    *min = (uint32_t)a;
    *max = (uint32_t)b;
    return 0;
}

/* A helper rule "X rest | " (rest: a rule or none), whose X is `first` when given, else a fresh
 * copy of the atom at `at`. */
static int s_opt_rule(struct parser *p, uint32_t rule, size_t at, struct evec *first, uint32_t id,
                      int64_t rest)
{
    struct evec body = {0};
    int rc = first ? s_append(p, &body, first) : s_reparse(p, at, rule, &body);
    if (rc == 0 && rest >= 0) {
        rc = s_push(p, &body, TB_GE_REF, (uint32_t)rest);
    }
    rc = rc != 0 ? rc : s_push(p, &body, TB_GE_END, 0);
    rc = rc != 0 ? rc : s_push(p, &body, TB_GE_END, 0);
    rc = rc != 0 ? rc : s_push(p, &body, TB_GE_RULE_END, 0);
    if (rc == 0) {
        p->rules[id].body = body;
    } else {
        free(body.v);
    }
    return rc;
}

/* Rewrites the atom just parsed (out->v[mark..]) repeated min..max times. */
static int s_repeat(struct parser *p, uint32_t rule, size_t at, struct evec *out, size_t mark,
                    uint32_t min, uint32_t max)
{
    struct evec first = {0};
    int rc = 0;
    if (min == 0) { /* the parsed copy moves into the optional part */
        for (size_t i = mark; i < out->n && rc == 0; i++) {
            rc = s_push(p, &first, out->v[i].type, out->v[i].val);
        }
        out->n = mark;
    }
    for (uint32_t k = 1; k < min && rc == 0; k++) {
        rc = s_reparse(p, at, rule, out);
    }
    uint32_t n_opt = max == UNBOUNDED ? 1 : max - min;
    uint32_t id = 0, prev = 0;
    for (uint32_t k = 0; k < n_opt && rc == 0; k++) {
        rc = s_aux_rule(p, rule, &id);
        if (rc == 0 && k == 0) {
            rc = s_push(p, out, TB_GE_REF, id);
        } else if (rc == 0) {
            /* the previous helper "X this |" is completed now that this one exists */
            rc = s_opt_rule(p, rule, at, min == 0 && k == 1 ? &first : NULL, prev, id);
        }
        prev = id;
    }
    if (rc == 0 && n_opt > 0) {
        bool use_first = min == 0 && n_opt == 1;
        rc = s_opt_rule(p, rule, at, use_first ? &first : NULL, id,
                        max == UNBOUNDED ? (int64_t)id : -1);
    }
    free(first.v);
    return rc;
}

/* One alternative: atoms with their postfix operators, up to '|', ')', the next definition or
 * the end. */
static int s_sequence(struct parser *p, uint32_t rule, struct evec *out)
{
    for (;;) {
        s_skip(p);
        if (p->pos >= p->len || p->s[p->pos] == '|' || p->s[p->pos] == ')' ||
            s_at_definition(p)) {
            return 0;
        }
        size_t at = p->pos, mark = out->n;
        bool has = false;
        uint32_t min = 0, max = 0;
        int rc = s_atom(p, rule, out);
        rc = rc != 0 ? rc : s_bounds(p, &has, &min, &max);
        if (rc == 0 && has) {
            rc = s_repeat(p, rule, at, out, mark, min, max);
        }
        if (rc != 0) {
            return rc;
        }
    }
}

static int s_alternatives(struct parser *p, uint32_t rule, bool group)
{
    struct evec body = {0};
    int rc = 0;
    for (;;) {
        rc = s_sequence(p, rule, &body);
        rc = rc != 0 ? rc : s_push(p, &body, TB_GE_END, 0);
        if (rc != 0 || p->pos >= p->len || p->s[p->pos] != '|') {
            break;
        }
        p->pos++;
    }
    rc = rc != 0 ? rc : s_push(p, &body, TB_GE_RULE_END, 0);
    if (rc == 0 && !group && p->pos < p->len && p->s[p->pos] == ')') {
        rc = s_fail(p, p->pos, TB_EINVAL, "unexpected ')'");
    }
    if (rc == 0) {
        p->rules[rule].body = body;
    } else {
        free(body.v);
    }
    return rc;
}

static int s_definitions(struct parser *p)
{
    for (;;) {
        s_skip(p);
        if (p->pos >= p->len) {
            return 0;
        }
        size_t at = p->pos, n = s_name_len(p, p->pos);
        if (n == 0 || !s_at_definition(p)) {
            return s_fail(p, at, TB_EINVAL, "expected a rule definition 'name ::= ...'");
        }
        uint32_t id = 0;
        int rc = s_find_rule(p, p->s + at, n, at, &id);
        if (rc != 0) {
            return rc;
        }
        if (p->rules[id].defined) {
            return s_fail(p, at, TB_EINVAL, "rule '%s' defined twice", p->rules[id].name);
        }
        p->rules[id].defined = true;
        p->rules[id].def_pos = at;
        p->pos = at + n;
        while (p->s[p->pos] != ':') {
            p->pos++;
        }
        p->pos += 3;
        rc = s_alternatives(p, id, false);
        if (rc != 0) {
            return rc;
        }
    }
}

static uint32_t s_merge(uint32_t a, uint32_t v)
{
    if (v == TB_GCONT_NONE || a == v) {
        return a;
    }
    return a == TB_GCONT_NONE ? v : TB_GCONT_MANY;
}

/* Each rule's continuation: the element after its call site when it has one, following tail
 * calls (a reference that ends an alternative continues where its own rule does). */
static void s_continuations(struct tb_grammar *g)
{
    for (size_t r = 0; r < g->n_rules; r++) {
        g->cont[r] = r == g->root ? TB_GCONT_END : TB_GCONT_NONE;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t i = 0; i < g->n_elems; i++) {
            if (g->elems[i].type != TB_GE_REF) {
                continue;
            }
            uint32_t r = g->elems[i].val, next = g->elems[i + 1].type;
            uint32_t v = (next == TB_GE_END || next == TB_GE_RULE_END) ? g->cont[g->rule_of[i]]
                                                                       : (uint32_t)i + 1;
            uint32_t m = s_merge(g->cont[r], v);
            if (m != g->cont[r]) {
                g->cont[r] = m;
                changed = true;
            }
        }
    }
}

#define MAX_CONTS 64

struct cont_lists {
    uint32_t *v; /* MAX_CONTS per rule */
    uint32_t *n;
    bool *over; /* more than MAX_CONTS */
    bool changed;
};

static void s_cont_add(struct cont_lists *l, uint32_t r, uint32_t v)
{
    if (l->over[r]) {
        return;
    }
    for (uint32_t i = 0; i < l->n[r]; i++) {
        if (l->v[(size_t)r * MAX_CONTS + i] == v) {
            return;
        }
    }
    if (l->n[r] == MAX_CONTS) {
        l->over[r] = true;
    } else {
        l->v[(size_t)r * MAX_CONTS + l->n[r]++] = v;
    }
    l->changed = true;
}

/* One pass over the call sites of rules with several continuations. */
static void s_cont_pass(const struct tb_grammar *g, struct cont_lists *l)
{
    for (size_t i = 0; i < g->n_elems; i++) {
        uint32_t r = g->elems[i].val, next = g->elems[i + 1].type;
        if (g->elems[i].type != TB_GE_REF || g->cont[r] != TB_GCONT_MANY) {
            continue;
        }
        if (next != TB_GE_END && next != TB_GE_RULE_END) {
            s_cont_add(l, r, (uint32_t)i + 1);
            continue;
        }
        uint32_t r2 = g->rule_of[i], c2 = g->cont[r2];
        if (c2 == TB_GCONT_END || (c2 != TB_GCONT_MANY && c2 != TB_GCONT_NONE)) {
            s_cont_add(l, r, c2);
        } else if (c2 == TB_GCONT_MANY && l->over[r2] && !l->over[r]) {
            l->over[r] = l->changed = true;
        } else if (c2 == TB_GCONT_MANY) {
            for (uint32_t k = 0; k < l->n[r2]; k++) {
                s_cont_add(l, r, l->v[(size_t)r2 * MAX_CONTS + k]);
            }
        }
    }
}

/* The continuations of each rule that has several (tb_grammar_impl.h). */
static int s_cont_lists(struct tb_grammar *g)
{
    struct cont_lists l = {0};
    l.v = malloc(g->n_rules * MAX_CONTS * sizeof(*l.v) + 1);
    l.n = calloc(g->n_rules + 1, sizeof(*l.n));
    l.over = calloc(g->n_rules + 1, sizeof(*l.over));
    g->conts_at = calloc(g->n_rules + 1, sizeof(*g->conts_at));
    g->conts_n = calloc(g->n_rules + 1, sizeof(*g->conts_n));
    int rc = TB_ENOMEM;
    if (!l.v || !l.n || !l.over || !g->conts_at || !g->conts_n) {
        goto done;
    }
    if (g->cont[g->root] == TB_GCONT_MANY) {
        s_cont_add(&l, g->root, TB_GCONT_END);
    }
    for (l.changed = true; l.changed;) {
        l.changed = false;
        s_cont_pass(g, &l);
    }
    size_t total = 0;
    for (size_t r = 0; r < g->n_rules; r++) {
        g->conts_at[r] = (uint32_t)total;
        g->conts_n[r] = l.over[r] ? 0 : l.n[r];
        total += g->conts_n[r];
    }
    g->conts = malloc((total + 1) * sizeof(*g->conts));
    if (!g->conts) {
        goto done;
    }
    for (size_t r = 0; r < g->n_rules; r++) {
        memcpy(g->conts + g->conts_at[r], l.v + r * MAX_CONTS, g->conts_n[r] * sizeof(uint32_t));
    }
    rc = 0;
done:
    free(l.v);
    free(l.n);
    free(l.over);
    return rc;
}

/* Left recursion: a rule that can reach itself before consuming a byte. */
static int s_left_dfs(struct parser *p, const struct tb_grammar *g, const bool *nullable,
                      uint8_t *color, uint32_t r, int depth)
{
    if (color[r] == 2) {
        return 0;
    }
    if (color[r] == 1 || depth > 10000) {
        return s_fail(p, p->rules[r].def_pos, TB_EINVAL, "rule '%s' is left-recursive",
                      g->rule_names[r]);
    }
    color[r] = 1;
    bool edge = true; /* nothing consumed yet in this alternative */
    for (uint32_t i = g->rule_start[r]; g->elems[i].type != TB_GE_RULE_END; i++) {
        struct tb_gelem e = g->elems[i];
        if (e.type == TB_GE_END) {
            edge = true;
            continue;
        }
        if (e.type == TB_GE_REF && edge) {
            int rc = s_left_dfs(p, g, nullable, color, e.val, depth + 1);
            if (rc != 0) {
                return rc;
            }
        }
        if (e.type == TB_GE_CHAR || !nullable[e.val]) {
            edge = false;
        }
    }
    color[r] = 2;
    return 0;
}

static int s_check_left_recursion(struct parser *p, const struct tb_grammar *g)
{
    bool *nullable = calloc(g->n_rules, sizeof(*nullable));
    uint8_t *color = calloc(g->n_rules, 1);
    int rc = TB_ENOMEM;
    if (!nullable || !color) {
        goto done;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t r = 0; r < g->n_rules; r++) {
            bool alt_ok = true;
            for (uint32_t i = g->rule_start[r]; !nullable[r]; i++) {
                struct tb_gelem e = g->elems[i];
                if (e.type == TB_GE_RULE_END) {
                    break;
                }
                if (e.type == TB_GE_END) {
                    nullable[r] = alt_ok;
                    changed |= alt_ok;
                    alt_ok = true;
                } else if (e.type == TB_GE_CHAR || !nullable[e.val]) {
                    alt_ok = false;
                }
            }
        }
    }
    rc = 0;
    for (uint32_t r = 0; r < g->n_rules && rc == 0; r++) {
        rc = s_left_dfs(p, g, nullable, color, r, 0);
    }
done:
    free(nullable);
    free(color);
    return rc;
}

static int s_flatten(struct parser *p, struct tb_grammar *g)
{
    size_t n = 0;
    for (size_t r = 0; r < p->n_rules; r++) {
        n += p->rules[r].body.n;
    }
    g->n_rules = p->n_rules;
    g->n_elems = n;
    g->elems = malloc((n + 1) * sizeof(*g->elems));
    g->rule_of = malloc((n + 1) * sizeof(*g->rule_of));
    g->rule_start = malloc(p->n_rules * sizeof(*g->rule_start));
    g->cont = malloc(p->n_rules * sizeof(*g->cont));
    g->rule_names = calloc(p->n_rules, sizeof(*g->rule_names));
    if (!g->elems || !g->rule_of || !g->rule_start || !g->cont || !g->rule_names) {
        return TB_ENOMEM;
    }
    size_t k = 0;
    for (size_t r = 0; r < p->n_rules; r++) {
        g->rule_start[r] = (uint32_t)k;
        memcpy(g->elems + k, p->rules[r].body.v, p->rules[r].body.n * sizeof(*g->elems));
        for (size_t i = 0; i < p->rules[r].body.n; i++) {
            g->rule_of[k + i] = (uint32_t)r;
        }
        k += p->rules[r].body.n;
        g->rule_names[r] = p->rules[r].name;
        p->rules[r].name = NULL;
    }
    g->elems[n] = (struct tb_gelem){TB_GE_RULE_END, 0};
    g->classes = p->classes;
    g->n_classes = p->n_classes;
    p->classes = NULL;
    return 0;
}

static int s_parse(struct parser *p, struct tb_grammar *g)
{
    int rc = s_definitions(p);
    for (size_t r = 0; r < p->n_rules && rc == 0; r++) {
        if (!p->rules[r].defined) {
            rc = s_fail(p, p->rules[r].ref_pos, TB_EINVAL, "undefined rule '%s'",
                        p->rules[r].name);
        }
    }
    uint32_t root = UINT32_MAX;
    for (size_t r = 0; r < p->n_rules && rc == 0; r++) {
        if (strcmp(p->rules[r].name, "root") == 0) {
            root = (uint32_t)r;
        }
    }
    if (rc == 0 && root == UINT32_MAX) {
        rc = s_fail(p, p->len, TB_EINVAL, "no rule named 'root'");
    }
    rc = rc != 0 ? rc : s_flatten(p, g);
    if (rc == 0) {
        g->root = root;
        s_continuations(g);
        rc = s_cont_lists(g);
        rc = rc != 0 ? rc : s_check_left_recursion(p, g);
    }
    return rc;
}

int tb_grammar_parse_gbnf(const char *text, size_t len, tb_grammar_t **out, char *err,
                          size_t err_len)
{
    *out = NULL;
    if (err_len > 0) {
        err[0] = 0;
    }
    struct parser p = {.s = text, .len = len, .err = err, .err_len = err_len};
    memset(p.byte_class, 0xFF, sizeof(p.byte_class));
    struct tb_grammar *g = calloc(1, sizeof(*g));
    int rc = g ? s_parse(&p, g) : TB_ENOMEM;
    for (size_t r = 0; r < p.n_rules; r++) {
        free(p.rules[r].name);
        free(p.rules[r].body.v);
    }
    free(p.rules);
    free(p.classes);
    if (rc != 0) {
        if (rc == TB_ENOMEM && err_len > 0) {
            snprintf(err, err_len, "out of memory");
        }
        tb_grammar_destroy(&g);
        return rc;
    }
    *out = g;
    return 0;
}

void tb_grammar_destroy(tb_grammar_t **g_p)
{
    if (!g_p || !*g_p) {
        return;
    }
    struct tb_grammar *g = *g_p;
    for (size_t r = 0; g->rule_names && r < g->n_rules; r++) {
        free(g->rule_names[r]);
    }
    free(g->rule_names);
    free(g->elems);
    free(g->rule_of);
    free(g->rule_start);
    free(g->cont);
    free(g->conts_at);
    free(g->conts_n);
    free(g->conts);
    free(g->classes);
    free(g);
    *g_p = NULL;
}

size_t tb_grammar_n_rules(const tb_grammar_t *g)
{
    return g->n_rules;
}

size_t tb_grammar_n_elements(const tb_grammar_t *g)
{
    return g->n_elems;
}
