/*
 * tb_log.h - the process's log: levels, one line per event, text or JSON lines, to stderr or a
 * file reopened on SIGHUP.  Every line carries time, level and component name.
 *
 * The sink and level are process-wide (the only globals besides the signal flag).  All functions
 * are thread-safe; a line is written with one write(2).
 */
#ifndef TB_LOG_H
#define TB_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "tb_plugin.h"

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

typedef enum {
    TB_LOG_FORMAT_TEXT = 0,
    TB_LOG_FORMAT_JSON = 1,
} tb_log_format_t;

/* Sets the level below which lines are dropped (default TB_LOG_INFO). */
void tb_log_set_level(tb_log_level_t level);
tb_log_level_t tb_log_get_level(void);
void tb_log_set_format(tb_log_format_t format);

/* Sends lines to `path` (appending; NULL: stderr).  0, or a negative errno when the file cannot be
 * opened (the sink is then unchanged). */
int tb_log_set_file(const char *path);

/* Reopens the log file (after rotation); a no-op for stderr.  0 or a negative errno. */
int tb_log_reopen(void);

/* Parses "error", "warn", "info", "debug", "trace"; false when unknown. */
bool tb_log_level_parse(const char *s, tb_log_level_t *out);
const char *tb_log_level_name(tb_log_level_t level);

static inline bool tb_log_enabled(tb_log_level_t level)
{
    return level <= tb_log_get_level();
}

/* Writes one line from `component` ("core", "http", ...). */
void tb_log_write(tb_log_level_t level, const char *component, const char *fmt, ...)
    TB_PRINTF(3, 4);
void tb_log_vwrite(tb_log_level_t level, const char *component, const char *fmt, va_list ap);

/* Level-checked macros: arguments are not evaluated when the level is off. */
#define TB_CLOG(level, comp, ...)                                                                \
    do {                                                                                         \
        if (tb_log_enabled(level)) {                                                             \
            tb_log_write((level), (comp), __VA_ARGS__);                                          \
        }                                                                                        \
    } while (0)
#define TB_CLOG_ERROR(comp, ...) TB_CLOG(TB_LOG_ERROR, comp, __VA_ARGS__)
#define TB_CLOG_WARN(comp, ...) TB_CLOG(TB_LOG_WARN, comp, __VA_ARGS__)
#define TB_CLOG_INFO(comp, ...) TB_CLOG(TB_LOG_INFO, comp, __VA_ARGS__)
#define TB_CLOG_DEBUG(comp, ...) TB_CLOG(TB_LOG_DEBUG, comp, __VA_ARGS__)
#define TB_CLOG_TRACE(comp, ...) TB_CLOG(TB_LOG_TRACE, comp, __VA_ARGS__)

#pragma GCC visibility pop

#endif /* TB_LOG_H */
