/* tb_diag: the error list `turbine check` and `turbine serve` print before refusing a config. */
#include "tb_diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void tb_diag_init(struct tb_diag *d)
{
    memset(d, 0, sizeof(*d));
}

void tb_diag_release(struct tb_diag *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].key);
        free(d->v[i].value);
        free(d->v[i].why);
        free(d->v[i].fix);
    }
    free(d->v);
    memset(d, 0, sizeof(*d));
}

static char *s_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

void tb_diag_add(struct tb_diag *d, const char *file, int line, int column, const char *key,
                 const char *value, const char *why, const char *fix)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        struct tb_diag_entry *v = realloc(d->v, cap * sizeof(*v));
        if (!v) {
            return; /* the errors already collected still refuse the config */
        }
        d->v = v;
        d->cap = cap;
    }
    struct tb_diag_entry *e = &d->v[d->n++];
    e->file = s_dup(file ? file : "?");
    e->line = line;
    e->column = column;
    e->key = s_dup(key);
    e->value = s_dup(value);
    e->why = s_dup(why);
    e->fix = s_dup(fix);
}

void tb_diag_addf(struct tb_diag *d, const char *file, int line, int column, const char *key,
                  const char *value, const char *fix, const char *why_fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, why_fmt);
    vsnprintf(why, sizeof(why), why_fmt, ap);
    va_end(ap);
    tb_diag_add(d, file, line, column, key, value, why, fix);
}

void tb_diag_print(const struct tb_diag *d, FILE *out)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct tb_diag_entry *e = &d->v[i];
        if (e->line > 0) {
            fprintf(out, "%s:%d:%d: error: ", e->file, e->line, e->column);
        } else {
            fprintf(out, "%s: error: ", e->file);
        }
        if (e->key && *e->key) {
            fprintf(out, "%s: ", e->key);
        }
        if (e->value) {
            fprintf(out, "'%s': ", e->value);
        }
        fprintf(out, "%s\n", e->why ? e->why : "invalid");
        if (e->fix) {
            fprintf(out, "  fix: %s\n", e->fix);
        }
    }
}
