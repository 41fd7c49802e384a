/*
 * tb_fields.h - typed config values: parsing and checking one YAML value against a
 * struct tb_config_field (tb_plugin.h) and writing it into the plugin's config struct.
 *
 * Used for plugin config blocks and for the core's own sections alike, so every key gets the
 * same checks and the same quality of error.
 */
#ifndef TB_FIELDS_H
#define TB_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "tb_arena.h"
#include "tb_diag.h"
#include "tb_plugin.h"

/* Where a value sits, for diagnostics. */
struct tb_field_ctx {
    const char *file;
    const char *key; /* full key path */
    struct tb_diag *diag;
    tb_arena_t *arena; /* owns strings written into the config */
};

/* Checks `node` (scalar, or sequence for STR_LIST) against `f` after ${VAR} expansion and, when
 * valid, stores it into `config` at f->offset.  Returns false after adding a diagnostic. */
bool tb_field_apply(const struct tb_config_field *f, yaml_document_t *doc, yaml_node_t *node,
                    void *config, const struct tb_field_ctx *ctx);

/* Stores f->default_value (when not NULL).  False with `err` when the default itself is invalid,
 * which is a bug in the plugin that declared it. */
bool tb_field_apply_default(const struct tb_config_field *f, void *config, tb_arena_t *arena,
                            char *err, size_t err_len);

/* Checks a declaration: key charset, type known, offset + size inside config_size, enum choices,
 * bounds ordered.  False with `err`. */
bool tb_field_check_decl(const struct tb_config_field *f, size_t config_size, char *err,
                         size_t err_len);

/* Served model names: non-empty, at most 128 bytes, no leading '/', no whitespace or control
 * characters, no ".." or "//".  False with why and a fix (for path-like names the fix says to put
 * the path under `model` and suggests a short name derived from it). */
bool tb_model_name_check(const char *name, char *why, size_t why_len, char *fix, size_t fix_len);

/* Expands ${VAR} and ${VAR:-default} in `in`.  On success *out is malloc'ed (caller frees).
 * False with `err` naming the unset variable or the unclosed reference. */
bool tb_expand_env(const char *in, char **out, char *err, size_t err_len);

/* "512", "64KiB", "8MiB", "2GiB", "1GB", "1.5GiB" -> bytes. */
bool tb_parse_bytes(const char *s, int64_t *out);
/* "1.5", "250ms", "2s", "1m", "1h" -> seconds. */
bool tb_parse_seconds(const char *s, double *out);

/* Name of a field type for messages and `turbine plugins` ("int", "model name", ...). */
const char *tb_field_type_name(tb_cfg_type_t t);

/* The closest of `candidates` (NULL-terminated) to `word` within a small edit distance, or NULL. */
const char *tb_closest(const char *word, const char *const *candidates);

#endif /* TB_FIELDS_H */
