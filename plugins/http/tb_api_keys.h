/*
 * tb_api_keys.h - the API keys the http frontend accepts: from the deployment (`api_keys`, which
 * may name environment variables) and from a file (`api_keys_file`, one key per line), compared
 * in constant time.  Keys are never written to a log or an error message; a file's refusal names
 * the file and the line.
 */
#ifndef TB_API_KEYS_H
#define TB_API_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "tb_plugin.h"

struct tb_api_keys {
    char **items; /* owned copies */
    size_t count; /* 0: no authentication */
};

/* Copies the keys of `list` and adds those of `file` (NULL: none): one key per line, surrounding
 * blanks dropped, empty lines and lines starting with '#' skipped.  A file that cannot be read,
 * holds no key, or has a line with a blank inside a key is refused (TB_ECONFIG, or TB_EIO /
 * TB_ENOMEM) with why in `err`.  On failure `keys` is left empty. */
int tb_api_keys_load(struct tb_api_keys *keys, const struct tb_str_list *list, const char *file,
                     char *err, size_t err_len);

/* Whether `key` (`len` bytes) is one of the keys; the time taken does not depend on where the
 * key first differs from any of them. */
bool tb_api_keys_match(const struct tb_api_keys *keys, const char *key, size_t len);

/* Frees the copies (wiping them first) and empties `keys`; accepts an empty one. */
void tb_api_keys_release(struct tb_api_keys *keys);

#endif /* TB_API_KEYS_H */
