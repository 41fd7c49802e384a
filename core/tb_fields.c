/* tb_fields: typed config values (see tb_fields.h). */
#include "tb_fields.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "tb_buf.h"

const char *tb_field_type_name(tb_cfg_type_t t)
{
    switch (t) {
    case TB_CFG_BOOL:
        return "bool";
    case TB_CFG_INT:
        return "int";
    case TB_CFG_DOUBLE:
        return "number";
    case TB_CFG_STRING:
        return "string";
    case TB_CFG_ENUM:
        return "enum";
    case TB_CFG_MODEL_NAME:
        return "model name";
    case TB_CFG_PATH:
        return "path";
    case TB_CFG_BYTES:
        return "bytes";
    case TB_CFG_SECONDS:
        return "seconds";
    case TB_CFG_STR_LIST:
        return "list of strings";
    }
    return "?";
}

static size_t s_type_size(tb_cfg_type_t t)
{
    switch (t) {
    case TB_CFG_BOOL:
        return sizeof(bool);
    case TB_CFG_INT:
    case TB_CFG_BYTES:
        return sizeof(int64_t);
    case TB_CFG_DOUBLE:
    case TB_CFG_SECONDS:
        return sizeof(double);
    case TB_CFG_STRING:
    case TB_CFG_MODEL_NAME:
    case TB_CFG_PATH:
        return sizeof(const char *);
    case TB_CFG_ENUM:
        return sizeof(int);
    case TB_CFG_STR_LIST:
        return sizeof(struct tb_str_list);
    }
    return 0;
}

bool tb_field_check_decl(const struct tb_config_field *f, size_t config_size, char *err,
                         size_t err_len)
{
    if (!f->key || !*f->key) {
        snprintf(err, err_len, "a config field has no key");
        return false;
    }
    for (const char *p = f->key; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            snprintf(err, err_len, "config key '%s' is not [a-z0-9_]+", f->key);
            return false;
        }
    }
    size_t sz = s_type_size(f->type);
    if (sz == 0) {
        snprintf(err, err_len, "config key '%s' has unknown type %d", f->key, (int)f->type);
        return false;
    }
    if (f->offset > config_size || config_size - f->offset < sz) {
        snprintf(err, err_len, "config key '%s' lies outside the %zu-byte config struct", f->key,
                 config_size);
        return false;
    }
    if (f->type == TB_CFG_ENUM && (!f->choices || !f->choices[0])) {
        snprintf(err, err_len, "enum config key '%s' has no choices", f->key);
        return false;
    }
    if (f->has_bounds && f->min > f->max) {
        snprintf(err, err_len, "config key '%s' has min > max", f->key);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------- */
/* Environment expansion */

bool tb_expand_env(const char *in, char **out, char *err, size_t err_len)
{
    struct tb_buf b = {0};
    const char *p = in;
    *out = NULL;
    while (*p) {
        if (p[0] == '$' && p[1] == '$') {
            tb_buf_append(&b, "$", 1); /* $$ writes a literal $ */
            p += 2;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            tb_buf_append(&b, p, 1);
            p++;
            continue;
        }
        const char *name = p + 2;
        const char *close = strchr(name, '}');
        if (!close) {
            snprintf(err, err_len, "'${' without a closing '}'");
            tb_buf_free(&b);
            return false;
        }
        const char *def = NULL;
        size_t name_len = (size_t)(close - name);
        const char *sep = strstr(name, ":-");
        if (sep && sep < close) {
            name_len = (size_t)(sep - name);
            def = sep + 2;
        }
        bool ok_name = name_len > 0;
        for (size_t i = 0; i < name_len; i++) {
            char c = name[i];
            ok_name = ok_name && (isalnum((unsigned char)c) || c == '_');
        }
        if (!ok_name) {
            snprintf(err, err_len, "'${%.*s}' is not a valid variable reference",
                     (int)(close - name), name);
            tb_buf_free(&b);
            return false;
        }
        char vname[256];
        snprintf(vname, sizeof(vname), "%.*s", (int)name_len, name);
        const char *val = getenv(vname);
        if (val && *val) {
            tb_buf_append(&b, val, strlen(val));
        } else if (def) {
            tb_buf_append(&b, def, (size_t)(close - def));
        } else {
            snprintf(err, err_len, "environment variable '%s' is not set", vname);
            tb_buf_free(&b);
            return false;
        }
        p = close + 1;
    }
    if (!b.data) {
        *out = strdup("");
    } else {
        *out = (char *)b.data;
    }
    return *out != NULL;
}

/* ------------------------------------------------------------------------------------------- */
/* Numbers with units */

bool tb_parse_bytes(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isfinite(v)) {
        return false;
    }
    while (*end == ' ') {
        end++;
    }
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"KiB", 1024.0},
                 {"MiB", 1048576.0},
                 {"GiB", 1073741824.0},
                 {"TiB", 1099511627776.0},
                 {"KB", 1e3},
                 {"MB", 1e6},
                 {"GB", 1e9},
                 {"TB", 1e12},
                 {"K", 1024.0},
                 {"M", 1048576.0},
                 {"G", 1073741824.0}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            double b = v * units[i].mult;
            if (b > 9.0e18) {
                return false;
            }
            if (units[i].mult == 1 && v != floor(v)) {
                return false;
            }
            *out = (int64_t)b;
            return true;
        }
    }
    return false;
}

bool tb_parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v)) {
        return false;
    }
    while (*end == ' ') {
        end++;
    }
    double mult;
    if (*end == 0 || strcmp(end, "s") == 0) {
        mult = 1;
    } else if (strcmp(end, "ms") == 0) {
        mult = 1e-3;
    } else if (strcmp(end, "us") == 0) {
        mult = 1e-6;
    } else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) {
        mult = 60;
    } else if (strcmp(end, "h") == 0) {
        mult = 3600;
    } else {
        return false;
    }
    *out = v * mult;
    return true;
}

/* ------------------------------------------------------------------------------------------- */
/* Model names */

bool tb_model_name_check(const char *name, char *why, size_t why_len, char *fix, size_t fix_len)
{
    size_t len = strlen(name);
    fix[0] = 0;
    if (len == 0) {
        snprintf(why, why_len, "a served model name cannot be empty");
        snprintf(fix, fix_len, "write the public name clients send, e.g. 'llama-3-8b'");
        return false;
    }
    bool pathlike = name[0] == '/' || name[0] == '~' || strncmp(name, "./", 2) == 0 ||
                    strncmp(name, "../", 3) == 0 || strstr(name, "//") || strstr(name, "..");
    if (pathlike) {
        /* Suggest a short name from the last path component. */
        const char *base = name + len;
        while (base > name && base[-1] == '/') {
            base--;
        }
        const char *end = base;
        while (base > name && base[-1] != '/') {
            base--;
        }
        char suggestion[129];
        size_t k = 0;
        for (const char *p = base; p < end && k < sizeof(suggestion) - 1; p++) {
            char c = *p;
            if (isalnum((unsigned char)c)) {
                suggestion[k++] = (char)tolower((unsigned char)c);
            } else if ((c == '-' || c == '_' || c == '.') && k > 0 && suggestion[k - 1] != '-') {
                suggestion[k++] = '-';
            }
        }
        while (k > 0 && suggestion[k - 1] == '-') {
            k--;
        }
        suggestion[k] = 0;
        snprintf(why, why_len,
                 "looks like a filesystem path, but served_model_name is the public name clients "
                 "send in the 'model' field of their requests");
        snprintf(fix, fix_len,
                 "put the path under 'model' (model: %s) and use a short name such as '%s'", name,
                 k ? suggestion : "deepseek-r1-llama-8b");
        return false;
    }
    if (len > 128) {
        snprintf(why, why_len, "a served model name is at most 128 bytes (this one has %zu)",
                 len);
        snprintf(fix, fix_len, "use a shorter name such as 'llama-3-8b'");
        return false;
    }
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || isspace(c)) {
            snprintf(why, why_len,
                     "a served model name cannot contain whitespace or control characters");
            snprintf(fix, fix_len, "replace spaces with '-', e.g. 'my-model'");
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------------------------- */
/* Applying values */

static bool s_parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"true", "yes", "on", NULL};
    static const char *const f[] = {"false", "no", "off", NULL};
    for (int i = 0; t[i]; i++) {
        if (strcasecmp(s, t[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, f[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static void s_choices(const struct tb_config_field *f, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    for (size_t i = 0; f->choices[i] && k + 1 < len; i++) {
        k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", f->choices[i]);
    }
}

static void s_bounds_text(const struct tb_config_field *f, char *buf, size_t len)
{
    snprintf(buf, len, "%g and %g", f->min, f->max);
}

#define AT(cfg, off, type) ((type *)((uint8_t *)(cfg) + (off)))

/* Checks and stores a scalar text value.  `why`/`fix` receive the problem on failure. */
/* TB_CFG_INT and TB_CFG_BYTES: a whole number (or a size with a unit) within the bounds. */
static bool s_apply_int(const struct tb_config_field *f, const char *text, void *config,
                        char *why, size_t why_len, char *fix, size_t fix_len)
{
    int64_t v;
    char *end;
    errno = 0;
    if (f->type == TB_CFG_INT) {
        long long ll = strtoll(text, &end, 10);
        if (end == text || *end || errno) {
            snprintf(why, why_len, "expected an integer");
            snprintf(fix, fix_len, "write a whole number, e.g. %g", f->has_bounds ? f->min : 1.0);
            return false;
        }
        v = ll;
    } else if (!tb_parse_bytes(text, &v)) {
        snprintf(why, why_len, "expected a size in bytes");
        snprintf(fix, fix_len, "write e.g. 1048576, 512MiB or 4GiB");
        return false;
    }
    if (f->has_bounds && ((double)v < f->min || (double)v > f->max)) {
        char bounds[128];
        s_bounds_text(f, bounds, sizeof(bounds));
        snprintf(why, why_len, "out of range: must be between %s", bounds);
        snprintf(fix, fix_len, "use a value between %s", bounds);
        return false;
    }
    *AT(config, f->offset, int64_t) = v;
    return true;
}

/* TB_CFG_DOUBLE and TB_CFG_SECONDS: a finite number (or a duration) within the bounds. */
static bool s_apply_double(const struct tb_config_field *f, const char *text, void *config,
                           char *why, size_t why_len, char *fix, size_t fix_len)
{
    double v;
    char *end;
    errno = 0;
    if (f->type == TB_CFG_DOUBLE) {
        v = strtod(text, &end);
        if (end == text || *end || errno || !isfinite(v)) {
            snprintf(why, why_len, "expected a number");
            snprintf(fix, fix_len, "write a number such as 0.5");
            return false;
        }
    } else if (!tb_parse_seconds(text, &v)) {
        snprintf(why, why_len, "expected a duration");
        snprintf(fix, fix_len, "write seconds (1.5) or a unit: 250ms, 2s, 1m");
        return false;
    }
    if (f->has_bounds && (v < f->min || v > f->max)) {
        char bounds[128];
        s_bounds_text(f, bounds, sizeof(bounds));
        snprintf(why, why_len, "out of range: must be between %s%s", bounds,
                 f->type == TB_CFG_SECONDS ? " seconds" : "");
        snprintf(fix, fix_len, "use a value between %s", bounds);
        return false;
    }
    *AT(config, f->offset, double) = v;
    return true;
}

/* TB_CFG_ENUM: one of f->choices, stored as its index; the fix names the closest. */
static bool s_apply_enum(const struct tb_config_field *f, const char *text, void *config,
                         char *why, size_t why_len, char *fix, size_t fix_len)
{
    for (int i = 0; f->choices[i]; i++) {
        if (strcmp(text, f->choices[i]) == 0) {
            *AT(config, f->offset, int) = i;
            return true;
        }
    }
    char allowed[128];
    s_choices(f, allowed, sizeof(allowed));
    snprintf(why, why_len, "not one of the allowed values");
    const char *near = tb_closest(text, (const char *const *)f->choices);
    if (near) {
        snprintf(fix, fix_len, "did you mean '%s'? allowed: %s", near, allowed);
    } else {
        snprintf(fix, fix_len, "use one of: %s", allowed);
    }
    return false;
}

/* TB_CFG_PATH: not empty, and present when the field says it must exist. */
static bool s_check_path(const struct tb_config_field *f, const char *text, char *why,
                         size_t why_len, char *fix, size_t fix_len)
{
    struct stat st;
    if (!*text) {
        snprintf(why, why_len, "a path cannot be empty");
        snprintf(fix, fix_len, "write a file or folder path");
        return false;
    }
    if (f->must_exist && stat(text, &st) != 0) {
        snprintf(why, why_len, "cannot access it: %s", strerror(errno));
        snprintf(fix, fix_len,
                 "check the path (relative paths start from the directory "
                 "turbine runs in)");
        return false;
    }
    return true;
}

/* TB_CFG_STR_LIST from a single scalar: a one-element list. */
static bool s_apply_one_item_list(const struct tb_config_field *f, const char *text, void *config,
                                  tb_arena_t *arena, char *why, size_t why_len)
{
    const char **items = tb_arena_alloc(arena, sizeof(char *));
    char *copy = items ? tb_arena_strndup(arena, text, strlen(text)) : NULL;
    if (!copy) {
        snprintf(why, why_len, "out of memory");
        return false;
    }
    items[0] = copy;
    AT(config, f->offset, struct tb_str_list)->items = items;
    AT(config, f->offset, struct tb_str_list)->count = 1;
    return true;
}

static bool s_apply_text(const struct tb_config_field *f, const char *text, void *config,
                         tb_arena_t *arena, char *why, size_t why_len, char *fix, size_t fix_len)
{
    fix[0] = 0;
    switch (f->type) {
    case TB_CFG_BOOL: {
        bool b;
        if (!s_parse_bool(text, &b)) {
            snprintf(why, why_len, "expected a boolean");
            snprintf(fix, fix_len, "write true or false");
            return false;
        }
        *AT(config, f->offset, bool) = b;
        return true;
    }
    case TB_CFG_INT:
    case TB_CFG_BYTES:
        return s_apply_int(f, text, config, why, why_len, fix, fix_len);
    case TB_CFG_DOUBLE:
    case TB_CFG_SECONDS:
        return s_apply_double(f, text, config, why, why_len, fix, fix_len);
    case TB_CFG_ENUM:
        return s_apply_enum(f, text, config, why, why_len, fix, fix_len);
    case TB_CFG_MODEL_NAME:
        if (!tb_model_name_check(text, why, why_len, fix, fix_len)) {
            return false;
        }
        break;
    case TB_CFG_PATH:
        if (!s_check_path(f, text, why, why_len, fix, fix_len)) {
            return false;
        }
        break;
    case TB_CFG_STRING:
        break;
    case TB_CFG_STR_LIST:
        return s_apply_one_item_list(f, text, config, arena, why, why_len);
    }
    char *copy = tb_arena_strndup(arena, text, strlen(text));
    if (!copy) {
        snprintf(why, why_len, "out of memory");
        return false;
    }
    *AT(config, f->offset, const char *) = copy;
    return true;
}

bool tb_field_apply(const struct tb_config_field *f, yaml_document_t *doc, yaml_node_t *node,
                    void *config, const struct tb_field_ctx *ctx)
{
    char why[512];
    char fix[512];
    int line = (int)node->start_mark.line + 1;
    int col = (int)node->start_mark.column + 1;
    if (f->type == TB_CFG_STR_LIST && node->type == YAML_SEQUENCE_NODE) {
        size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
        const char **items = tb_arena_alloc(ctx->arena, (n + 1) * sizeof(char *));
        if (!items) {
            tb_diag_add(ctx->diag, ctx->file, line, col, ctx->key, NULL, "out of memory", NULL);
            return false;
        }
        bool ok = true;
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *it = yaml_document_get_node(doc, node->data.sequence.items.start[i]);
            if (!it || it->type != YAML_SCALAR_NODE) {
                tb_diag_addf(ctx->diag, ctx->file, it ? (int)it->start_mark.line + 1 : line,
                             it ? (int)it->start_mark.column + 1 : col, ctx->key, NULL,
                             "write each item as a plain string", "item %zu is not a string",
                             i + 1);
                ok = false;
                continue;
            }
            char err[256];
            char *exp = NULL;
            if (!tb_expand_env((const char *)it->data.scalar.value, &exp, err, sizeof(err))) {
                tb_diag_add(ctx->diag, ctx->file, (int)it->start_mark.line + 1,
                            (int)it->start_mark.column + 1, ctx->key,
                            (const char *)it->data.scalar.value, err,
                            "export the variable, or give a default: ${NAME:-value}");
                ok = false;
                continue;
            }
            items[i] = tb_arena_strndup(ctx->arena, exp, strlen(exp));
            free(exp);
        }
        if (ok) {
            AT(config, f->offset, struct tb_str_list)->items = items;
            AT(config, f->offset, struct tb_str_list)->count = n;
        }
        return ok;
    }
    if (node->type != YAML_SCALAR_NODE) {
        tb_diag_addf(ctx->diag, ctx->file, line, col, ctx->key, NULL,
                     f->type == TB_CFG_STR_LIST ? "write a list: [a, b] or one item per line"
                                                : "write a single value on the key's line",
                     "expected a %s, found a %s", tb_field_type_name(f->type),
                     node->type == YAML_MAPPING_NODE ? "mapping" : "list");
        return false;
    }
    const char *raw = (const char *)node->data.scalar.value;
    char *text = NULL;
    if (!tb_expand_env(raw, &text, why, sizeof(why))) {
        tb_diag_add(ctx->diag, ctx->file, line, col, ctx->key, raw, why,
                    "export the variable, or give a default: ${NAME:-value}");
        return false;
    }
    /* A quoted or plain empty/null scalar where a value is required. */
    bool null_plain = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                      (strcmp(raw, "") == 0 || strcmp(raw, "~") == 0 || strcmp(raw, "null") == 0);
    if (null_plain && f->type != TB_CFG_STRING) {
        tb_diag_addf(ctx->diag, ctx->file, line, col, ctx->key, raw,
                     f->default_value ? "remove the key to use the default" : "write a value",
                     "no value given (expected a %s)", tb_field_type_name(f->type));
        free(text);
        return false;
    }
    bool ok = s_apply_text(f, text, config, ctx->arena, why, sizeof(why), fix, sizeof(fix));
    if (!ok) {
        tb_diag_add(ctx->diag, ctx->file, line, col, ctx->key, text, why, fix[0] ? fix : NULL);
    }
    free(text);
    return ok;
}

bool tb_field_apply_default(const struct tb_config_field *f, void *config, tb_arena_t *arena,
                            char *err, size_t err_len)
{
    char why[512];
    char fix[512];
    if (!f->default_value) {
        return true;
    }
    if (f->type == TB_CFG_PATH && f->must_exist) {
        /* A default path need not exist unless the user relies on it: checked at use. */
        char *copy = tb_arena_strndup(arena, f->default_value, strlen(f->default_value));
        *AT(config, f->offset, const char *) = copy;
        return copy != NULL;
    }
    if (!s_apply_text(f, f->default_value, config, arena, why, sizeof(why), fix, sizeof(fix))) {
        snprintf(err, err_len, "default '%s' of key '%s' is invalid: %s", f->default_value,
                 f->key, why);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------- */

/* Edit distance with adjacent transpositions counting one ("fsat" is one step from "fast"). */
static size_t s_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) {
        return 99;
    }
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++) {
        d[i][0] = i;
    }
    for (size_t j = 0; j <= lb; j++) {
        d[0][j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) {
                best = d[i - 1][j] + 1;
            }
            if (d[i][j - 1] + 1 < best) {
                best = d[i][j - 1] + 1;
            }
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best) {
                best = d[i - 2][j - 2] + 1;
            }
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *tb_closest(const char *word, const char *const *candidates)
{
    const char *best = NULL;
    size_t best_d = 99;
    size_t wl = strlen(word);
    size_t limit = wl <= 4 ? 1 : (wl <= 8 ? 2 : 3);
    for (size_t i = 0; candidates && candidates[i]; i++) {
        size_t d = s_distance(word, candidates[i]);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best_d <= limit ? best : NULL;
}
