/* tb_log: the process-wide log sink (see tb_log.h). */
#include "tb_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "tb_buf.h"
#include "tb_utf8.h"

static _Atomic int s_level = TB_LOG_INFO;
static _Atomic int s_format = TB_LOG_FORMAT_TEXT;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static int s_fd = 2;
static char *s_path;

static const char *const s_names[] = {"error", "warn", "info", "debug", "trace"};

void tb_log_set_level(tb_log_level_t level)
{
    atomic_store(&s_level, (int)level);
}

tb_log_level_t tb_log_get_level(void)
{
    return (tb_log_level_t)atomic_load_explicit(&s_level, memory_order_relaxed);
}

void tb_log_set_format(tb_log_format_t format)
{
    atomic_store(&s_format, (int)format);
}

bool tb_log_level_parse(const char *s, tb_log_level_t *out)
{
    for (int i = 0; i <= TB_LOG_TRACE; i++) {
        if (strcasecmp(s, s_names[i]) == 0) {
            *out = (tb_log_level_t)i;
            return true;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = TB_LOG_WARN;
        return true;
    }
    return false;
}

const char *tb_log_level_name(tb_log_level_t level)
{
    return (level >= TB_LOG_ERROR && level <= TB_LOG_TRACE) ? s_names[level] : "?";
}

static int s_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

int tb_log_set_file(const char *path)
{
    int fd = 2;
    char *copy = NULL;
    if (path) {
        fd = s_open(path);
        if (fd < 0) {
            return fd;
        }
        copy = strdup(path);
        if (!copy) {
            close(fd);
            return -ENOMEM;
        }
    }
    pthread_mutex_lock(&s_lock);
    if (s_fd != 2) {
        close(s_fd);
    }
    free(s_path);
    s_fd = fd;
    s_path = copy;
    pthread_mutex_unlock(&s_lock);
    return 0;
}

int tb_log_reopen(void)
{
    int rc = 0;
    pthread_mutex_lock(&s_lock);
    if (s_path) {
        int fd = s_open(s_path);
        if (fd < 0) {
            rc = fd;
        } else {
            close(s_fd);
            s_fd = fd;
        }
    }
    pthread_mutex_unlock(&s_lock);
    return rc;
}

static void s_timestamp(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Appends s[0..len) as a JSON string, ASCII only: quotes, backslashes and control characters
 * escaped, other characters as \uXXXX (surrogate pairs past U+FFFF), an ill-formed UTF-8
 * sequence as \uFFFD, so every log line is valid JSON whatever the message holds. */
static void s_json_string(struct tb_buf *b, const char *s, size_t len)
{
    tb_buf_append(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            tb_buf_append(b, &s[i++], 1);
            continue;
        }
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (esc) {
            tb_buf_puts(b, esc);
            i++;
            continue;
        }
        uint32_t cp = c < 0x80 ? c : tb_utf8_next(s, len, &i);
        i += c < 0x80;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            tb_buf_printf(b, "\\u%04X\\u%04X", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
        } else {
            tb_buf_printf(b, "\\u%04X", cp);
        }
    }
    tb_buf_append(b, "\"", 1);
}

void tb_log_vwrite(tb_log_level_t level, const char *component, const char *fmt, va_list ap)
{
    char ts[40];
    struct tb_buf msg = {0};
    struct tb_buf line = {0};
    s_timestamp(ts, sizeof(ts));
    if (tb_buf_vprintf(&msg, fmt, ap) != 0) {
        return;
    }
    if (atomic_load(&s_format) == TB_LOG_FORMAT_JSON) {
        const char *name = component ? component : "core";
        tb_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts,
                      tb_log_level_name(level));
        s_json_string(&line, name, strlen(name));
        tb_buf_puts(&line, ",\"msg\":");
        s_json_string(&line, (const char *)msg.data, msg.len);
        tb_buf_puts(&line, "}\n");
    } else {
        char lvl[8];
        snprintf(lvl, sizeof(lvl), "%s", tb_log_level_name(level));
        for (char *p = lvl; *p; p++) {
            *p = (char)(*p - 32 * (*p >= 'a' && *p <= 'z'));
        }
        tb_buf_printf(&line, "%s %-5s %s: %s\n", ts, lvl, component ? component : "core",
                      (const char *)msg.data);
    }
    if (line.len) {
        pthread_mutex_lock(&s_lock);
        const uint8_t *p = line.data;
        size_t left = line.len;
        while (left > 0) {
            ssize_t w = write(s_fd, p, left);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                break;
            }
            p += w;
            left -= (size_t)w;
        }
        pthread_mutex_unlock(&s_lock);
    }
    tb_buf_free(&line);
    tb_buf_free(&msg);
}

void tb_log_write(tb_log_level_t level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tb_log_vwrite(level, component, fmt, ap);
    va_end(ap);
}
