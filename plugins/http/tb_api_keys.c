/*
 * tb_api_keys.c - the accepted API keys: see tb_api_keys.h.
 */
#include "tb_api_keys.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"

static int s_add(struct tb_api_keys *keys, const char *key, size_t len)
{
    char **grown = realloc(keys->items, (keys->count + 1) * sizeof(*grown));
    if (!grown)
        return TB_ENOMEM;
    keys->items = grown;
    if (!(keys->items[keys->count] = strndup(key, len)))
        return TB_ENOMEM;
    keys->count++;
    return 0;
}

/* The keys of one file, appended. */
static int s_load_file(struct tb_api_keys *keys, const char *file, char *err, size_t err_len)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return tb_err_fail(err, err_len, TB_EIO, "api_keys_file '%s': %s", file, strerror(errno));
    char *line = NULL;
    size_t cap = 0, found = 0;
    int rc = 0, lineno = 0;
    ssize_t n;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char *s = line, *e = line + n;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (s == e || *s == '#')
            continue;
        for (const char *c = s; c < e; c++) {
            if (isspace((unsigned char)*c) || iscntrl((unsigned char)*c)) {
                rc = tb_err_fail(err, err_len, TB_ECONFIG,
                                 "api_keys_file '%s' line %d: a key has a blank or a control "
                                 "character inside it (one key per line)",
                                 file, lineno);
                break;
            }
        }
        if (rc == 0 && (rc = s_add(keys, s, (size_t)(e - s))) != 0)
            tb_err_set(err, err_len, "api_keys_file: out of memory");
        found++;
    }
    if (rc == 0 && ferror(f))
        rc = tb_err_fail(err, err_len, TB_EIO, "api_keys_file '%s': read error", file);
    if (rc == 0 && found == 0)
        rc = tb_err_fail(err, err_len, TB_ECONFIG,
                         "api_keys_file '%s' holds no key (one per line; '#' starts a comment)",
                         file);
    if (line) {
        memset(line, 0, cap);
        free(line);
    }
    fclose(f);
    return rc;
}

int tb_api_keys_load(struct tb_api_keys *keys, const struct tb_str_list *list, const char *file,
                     char *err, size_t err_len)
{
    keys->items = NULL;
    keys->count = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && list && i < list->count; i++) {
        rc = s_add(keys, list->items[i], strlen(list->items[i]));
        if (rc != 0)
            tb_err_set(err, err_len, "api_keys: out of memory");
    }
    if (rc == 0 && file && *file)
        rc = s_load_file(keys, file, err, err_len);
    if (rc != 0)
        tb_api_keys_release(keys);
    return rc;
}

/* Compares every byte of `a` whatever the outcome (the length of `b` may show; its bytes not). */
static bool s_equal_ct(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char diff = alen != blen;
    for (size_t i = 0; i < alen; i++) {
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (blen ? blen : 1)];
    }
    return diff == 0;
}

bool tb_api_keys_match(const struct tb_api_keys *keys, const char *key, size_t len)
{
    bool ok = false;
    for (size_t i = 0; i < keys->count; i++) {
        ok |= s_equal_ct(key, len, keys->items[i]);
    }
    return ok;
}

void tb_api_keys_release(struct tb_api_keys *keys)
{
    for (size_t i = 0; i < keys->count; i++) {
        memset(keys->items[i], 0, strlen(keys->items[i]));
        free(keys->items[i]);
    }
    free(keys->items);
    keys->items = NULL;
    keys->count = 0;
}
