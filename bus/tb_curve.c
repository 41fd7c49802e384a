/* tb_curve: CURVE keys, the allowed list and the guard thread (ZAP + handshake watch). */
#include "tb_curve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "tb_errors.h"
#include "tb_log.h"
#include "tb_metrics.h"

#define LOG_NAME "bus"
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN "turbine"
#define WATCH_EVENTS                                                                             \
    (ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |        \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_MONITOR_STOPPED)
#define PEERS_PER_WATCH 64
#define LOG_BURST 10.0

/* A server socket's handshake watch: the monitor's PAIR and the peers it accepted. */
struct watch {
    void *pair;
    char endpoint[64];
    int pending_fail; /* the last event was a failed handshake (its ZMQ value + 1), or 0 */
    struct {
        int fd;
        char addr[64];
    } peers[PEERS_PER_WATCH];
    size_t next_peer;
};

struct pending {
    char endpoint[64];
    struct pending *next;
};

struct tb_curve {
    void *zctx;
    char secret[TB_CURVE_KEY_SIZE];
    char public_key[TB_CURVE_KEY_SIZE];
    char (*allowed)[TB_CURVE_KEY_SIZE];
    uint8_t (*allowed_bin)[32];
    size_t n_allowed;
    char *allowed_file;
    tb_metric_t *m_refused;

    void *zap; /* REP at ZAP_ENDPOINT, used only by the guard once it runs */
    int wake_fd;
    pthread_t guard;
    bool guard_started;
    pthread_mutex_t lock;
    struct pending *pending; /* watches to open, guarded by lock */
    bool stopping;           /* guarded by lock */
    _Atomic unsigned watch_counter;

    /* guard thread only */
    struct watch **watches;
    size_t n_watches, cap_watches;
    double tokens;
    struct timespec last_refill;
    long long unlogged;
};

bool tb_curve_is_available(void)
{
    return zmq_has("curve") != 0;
}

bool tb_curve_applies(const char *addr)
{
    return addr && strncmp(addr, "tcp://", 6) == 0;
}

int tb_curve_keypair(char public_key[TB_CURVE_KEY_SIZE], char secret_key[TB_CURVE_KEY_SIZE])
{
    if (!tb_curve_is_available() || zmq_curve_keypair(public_key, secret_key) != 0) {
        return TB_ENOTSUP;
    }
    return 0;
}

static bool s_key_ok(const char *s, uint8_t bin[32])
{
    uint8_t scratch[32];
    return strlen(s) == TB_CURVE_KEY_LEN && zmq_z85_decode(bin ? bin : scratch, s) != NULL;
}

int tb_curve_public_of(const char *secret_key, char public_key[TB_CURVE_KEY_SIZE])
{
    if (!s_key_ok(secret_key, NULL) || zmq_curve_public(public_key, secret_key) != 0) {
        return TB_EINVAL;
    }
    return 0;
}

/* The key lines of `f`, one by one: whitespace trimmed, blank lines and '#' comments skipped.  Returns
 * the line (in `buf`) or NULL at the end; *lineno counts every line read. */
static char *s_next_key_line(FILE *f, char *buf, size_t size, int *lineno)
{
    while (fgets(buf, (int)size, f)) {
        (*lineno)++;
        char *p = buf;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        size_t n = strlen(p);
        while (n &&
               (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t')) {
            p[--n] = 0;
        }
        /* '#' is a Z85 character, but never the first of a key: the first character of each
         * group of five encodes a 32-bit value / 85^4 < 83, and '#' is the 85th */
        if (n && p[0] != '#') {
            return p;
        }
    }
    return NULL;
}

static FILE *s_open_key_file(const char *path, const char *what, bool secret, char *err,
                             size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "cannot read the %s '%s': %s", what, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "the %s '%s' is not a regular file", what, path);
        fclose(f);
        return NULL;
    }
    if (secret && (st.st_mode & 077)) {
        snprintf(err, err_len,
                 "the %s '%s' can be read by other users (mode %04o): make it private with "
                 "'chmod 600 %s'",
                 what, path, (unsigned)(st.st_mode & 07777), path);
        fclose(f);
        return NULL;
    }
    return f;
}

int tb_curve_read_key_file(const char *path, const char *what, bool secret,
                           char key[TB_CURVE_KEY_SIZE], char *err, size_t err_len)
{
    FILE *f = s_open_key_file(path, what, secret, err, err_len);
    if (!f) {
        return TB_EIO;
    }
    char line[256];
    int lineno = 0;
    int rc = TB_EINVAL;
    char *k = s_next_key_line(f, line, sizeof(line), &lineno);
    if (!k) {
        snprintf(err, err_len, "the %s '%s' holds no key (make one with 'turbine keygen')", what,
                 path);
    } else if (!s_key_ok(k, NULL)) {
        snprintf(err, err_len,
                 "the %s '%s' line %d is not a CURVE key: expected 40 Z85 characters, as "
                 "'turbine keygen' writes them",
                 what, path, lineno);
    } else {
        memcpy(key, k, TB_CURVE_KEY_SIZE);
        if (s_next_key_line(f, line, sizeof(line), &lineno)) {
            snprintf(err, err_len, "the %s '%s' holds more than one key (line %d): keep one",
                     what, path, lineno);
        } else {
            rc = 0;
        }
    }
    memset(line, 0, sizeof(line));
    if (rc != 0) {
        memset(key, 0, TB_CURVE_KEY_SIZE);
    }
    fclose(f);
    return rc;
}

int tb_curve_read_allowed(const char *path, char (**keys)[TB_CURVE_KEY_SIZE], size_t *n,
                          char *err, size_t err_len)
{
    *keys = NULL;
    *n = 0;
    FILE *f = s_open_key_file(path, "allowed keys file", false, err, err_len);
    if (!f) {
        return TB_EIO;
    }
    char line[256];
    int lineno = 0;
    int rc = 0;
    size_t cap = 0;
    for (char *k; (k = s_next_key_line(f, line, sizeof(line), &lineno));) {
        if (!s_key_ok(k, NULL)) {
            snprintf(err, err_len,
                     "the allowed keys file '%s' line %d is not a CURVE public key: expected 40 "
                     "Z85 characters (the content of a .pub file 'turbine keygen' wrote)",
                     path, lineno);
            rc = TB_EINVAL;
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char(*v)[TB_CURVE_KEY_SIZE] = realloc(*keys, cap * sizeof(*v));
            if (!v) {
                snprintf(err, err_len, "out of memory");
                rc = TB_ENOMEM;
                break;
            }
            *keys = v;
        }
        memcpy((*keys)[(*n)++], k, TB_CURVE_KEY_SIZE);
    }
    if (rc == 0 && *n == 0) {
        snprintf(err, err_len,
                 "the allowed keys file '%s' lists no key: add the public key (.pub) of every "
                 "process of the deployment, one per line",
                 path);
        rc = TB_EINVAL;
    }
    if (rc != 0) {
        free(*keys);
        *keys = NULL;
        *n = 0;
    }
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* The guard: refusals are logged at warn, a burst of LOG_BURST lines then one a second. */

static void s_refused(tb_curve_t *c, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_refused(tb_curve_t *c, const char *reason, const char *fmt, ...)
{
    tb_metric_add(c->m_refused, reason, 1);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double dt = (double)(now.tv_sec - c->last_refill.tv_sec) +
                (double)(now.tv_nsec - c->last_refill.tv_nsec) / 1e9;
    c->last_refill = now;
    c->tokens = c->tokens + dt > LOG_BURST ? LOG_BURST : c->tokens + dt;
    if (c->tokens < 1) {
        c->unlogged++;
        return;
    }
    c->tokens -= 1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->unlogged) {
        TB_CLOG_WARN(LOG_NAME, "%s (%lld more refused and not logged since the last line)", msg,
                     c->unlogged);
    } else {
        TB_CLOG_WARN(LOG_NAME, "%s", msg);
    }
    c->unlogged = 0;
}

static bool s_is_allowed_bin(const tb_curve_t *c, const uint8_t *key, size_t len)
{
    for (size_t i = 0; len == 32 && i < c->n_allowed; i++) {
        if (memcmp(c->allowed_bin[i], key, 32) == 0) {
            return true;
        }
    }
    return false;
}

/* One ZAP request (RFC 27): version, request id, domain, address, identity, mechanism, then
 * the credentials (CURVE: the client's 32-byte public key). */
static void s_zap_answer(tb_curve_t *c)
{
    zmq_msg_t parts[8];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t scratch;
        zmq_msg_t *m = n < 8 ? &parts[n] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, c->zap, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            for (int i = 0; i < (n < 8 ? n : 8); i++) {
                zmq_msg_close(&parts[i]);
            }
            return;
        }
        more = zmq_msg_more(m);
        if (m == &scratch) {
            zmq_msg_close(m);
        }
        n++;
    }
    int kept = n < 8 ? n : 8;
    char address[64] = "?";
    const char *status = "400";
    const char *text = "malformed ZAP request";
    if (n >= 7) {
        size_t al = zmq_msg_size(&parts[3]);
        snprintf(address, sizeof(address), "%.*s", (int)(al < 63 ? al : 63),
                 (const char *)zmq_msg_data(&parts[3]));
        bool curve = zmq_msg_size(&parts[5]) == 5 &&
                     memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) == 0;
        if (curve && s_is_allowed_bin(c, zmq_msg_data(&parts[6]), zmq_msg_size(&parts[6]))) {
            status = "200";
            text = "OK";
        } else if (curve && zmq_msg_size(&parts[6]) == 32) {
            char z85[TB_CURVE_KEY_SIZE];
            zmq_z85_encode(z85, zmq_msg_data(&parts[6]), 32);
            text = "key not allowed";
            s_refused(c, "key_not_allowed",
                      "refused a bus connection from %s: its CURVE public key %s is not in the "
                      "allowed keys (%s)",
                      address, z85, c->allowed_file);
        } else if (!curve) {
            /* Only a socket that is not a CURVE server (ipc) asks about another mechanism. */
            status = "200";
            text = "OK";
        }
    }
    const char *reply[6] = {"1.0", NULL, status, text, "", ""};
    size_t lens[6] = {3, 0, 3, strlen(text), 0, 0};
    for (int i = 0; i < 6; i++) {
        int flags = i < 5 ? ZMQ_SNDMORE : 0;
        int rc = i == 1 ? zmq_send(c->zap, n >= 2 ? zmq_msg_data(&parts[1]) : "",
                                   n >= 2 ? zmq_msg_size(&parts[1]) : 0, flags)
                        : zmq_send(c->zap, reply[i], lens[i], flags);
        if (rc < 0) {
            TB_CLOG_ERROR(LOG_NAME, "cannot answer the ZAP request from %s (%s): %s", address,
                          status, zmq_strerror(errno));
            break;
        }
    }
    for (int i = 0; i < kept; i++) {
        zmq_msg_close(&parts[i]);
    }
}

static void s_watch_peer_set(struct watch *w, int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    char host[INET6_ADDRSTRLEN] = "an unknown address";
    if (getpeername(fd, (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host, sizeof(host));
        } else if (sa.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host, sizeof(host));
        }
    }
    size_t i = w->next_peer++ % PEERS_PER_WATCH;
    w->peers[i].fd = fd;
    snprintf(w->peers[i].addr, sizeof(w->peers[i].addr), "%s", host);
}

static const char *s_watch_peer(struct watch *w, int fd)
{
    for (size_t i = 0; i < PEERS_PER_WATCH; i++) {
        if (w->peers[i].fd == fd && w->peers[i].addr[0]) {
            return w->peers[i].addr;
        }
    }
    return "an unknown address";
}

/* One monitor event of a watched server socket.  False when the socket was closed. */
static bool s_watch_event(tb_curve_t *c, struct watch *w)
{
    zmq_msg_t parts[2];
    int n = 0;
    bool more = true;
    while (more && n < 2) {
        zmq_msg_init(&parts[n]);
        if (zmq_msg_recv(&parts[n], w->pair, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(&parts[n]);
            break;
        }
        more = zmq_msg_more(&parts[n]);
        n++;
    }
    bool alive = true;
    if (n >= 1 && zmq_msg_size(&parts[0]) >= 6) {
        const uint8_t *d = zmq_msg_data(&parts[0]);
        uint16_t event;
        uint32_t value;
        memcpy(&event, d, 2);
        memcpy(&value, d + 2, 4);
        if (event == ZMQ_EVENT_ACCEPTED) {
            s_watch_peer_set(w, (int)value);
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                   event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            /* libzmq reports the disconnection, with the connection's fd, right after */
            w->pending_fail = event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? (int)value + 1 : 1;
        } else if (event == ZMQ_EVENT_DISCONNECTED && w->pending_fail) {
            const char *why = (uint32_t)(w->pending_fail - 1) ==
                                      ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                                  ? "it does not use CURVE (no key)"
                              : (uint32_t)(w->pending_fail - 1) ==
                                      ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC
                                  ? "it does not know this process's public key"
                                  : "the CURVE handshake did not complete (the peer left: "
                                    "it may not use CURVE, or not know this process's key)";
            char where[128] = "?";
            if (n == 2) {
                size_t l = zmq_msg_size(&parts[1]);
                snprintf(where, sizeof(where), "%.*s", (int)(l < 127 ? l : 127),
                         (const char *)zmq_msg_data(&parts[1]));
            }
            s_refused(c, "handshake", "refused a bus connection from %s to %s: %s",
                      s_watch_peer(w, (int)value), where, why);
            w->pending_fail = 0;
        } else if (event == ZMQ_EVENT_MONITOR_STOPPED) {
            alive = false;
        }
    }
    for (int i = 0; i < n; i++) {
        zmq_msg_close(&parts[i]);
    }
    return alive;
}

/* Connects the PAIRs of the watches tb_curve_server asked for. */
static void s_open_watches(tb_curve_t *c)
{
    pthread_mutex_lock(&c->lock);
    struct pending *p = c->pending;
    c->pending = NULL;
    pthread_mutex_unlock(&c->lock);
    while (p) {
        struct pending *next = p->next;
        struct watch *w = calloc(1, sizeof(*w));
        if (w && c->n_watches == c->cap_watches) {
            size_t cap = c->cap_watches ? c->cap_watches * 2 : 8;
            struct watch **v = realloc(c->watches, cap * sizeof(*v));
            if (v) {
                c->watches = v;
                c->cap_watches = cap;
            }
        }
        if (w && c->n_watches < c->cap_watches && (w->pair = zmq_socket(c->zctx, ZMQ_PAIR)) &&
            zmq_connect(w->pair, p->endpoint) == 0) {
            snprintf(w->endpoint, sizeof(w->endpoint), "%s", p->endpoint);
            int zero = 0;
            zmq_setsockopt(w->pair, ZMQ_LINGER, &zero, sizeof(zero));
            c->watches[c->n_watches++] = w;
        } else {
            TB_CLOG_ERROR(LOG_NAME, "cannot watch the CURVE handshakes of a socket: %s",
                          zmq_strerror(errno));
            if (w && w->pair) {
                zmq_close(w->pair);
            }
            free(w);
        }
        free(p);
        p = next;
    }
}

static void s_close_watch(tb_curve_t *c, size_t i)
{
    zmq_close(c->watches[i]->pair);
    free(c->watches[i]);
    c->watches[i] = c->watches[--c->n_watches];
}

static void *s_guard(void *arg)
{
    tb_curve_t *c = arg;
    zmq_pollitem_t *items = NULL;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        bool stopping = c->stopping;
        pthread_mutex_unlock(&c->lock);
        if (stopping) {
            break;
        }
        s_open_watches(c);
        zmq_pollitem_t *v = realloc(items, (c->n_watches + 2) * sizeof(*v));
        if (!v) {
            TB_CLOG_ERROR(LOG_NAME, "out of memory in the CURVE guard");
            usleep(100000);
            continue;
        }
        items = v;
        items[0] = (zmq_pollitem_t){c->zap, 0, ZMQ_POLLIN, 0};
        items[1] = (zmq_pollitem_t){NULL, c->wake_fd, ZMQ_POLLIN, 0};
        for (size_t i = 0; i < c->n_watches; i++) {
            items[i + 2] = (zmq_pollitem_t){c->watches[i]->pair, 0, ZMQ_POLLIN, 0};
        }
        size_t nw = c->n_watches;
        if (zmq_poll(items, (int)nw + 2, -1) < 0 && errno != EINTR) {
            if (errno == ETERM) {
                break; /* the context is ending */
            }
            /* never leave for good: while the ZAP socket is bound, every CURVE handshake waits
             * for this thread's answer */
            TB_CLOG_ERROR(LOG_NAME, "the CURVE guard cannot poll: %s", zmq_strerror(errno));
            usleep(100000);
            continue;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t x;
            if (read(c->wake_fd, &x, sizeof(x)) < 0 && errno != EAGAIN) {
                TB_CLOG_ERROR(LOG_NAME, "the CURVE guard cannot read its wake-up: %s",
                              strerror(errno));
            }
        }
        if (items[0].revents & ZMQ_POLLIN) {
            s_zap_answer(c);
        }
        for (size_t i = nw; i-- > 0;) {
            if ((items[i + 2].revents & ZMQ_POLLIN) && !s_watch_event(c, c->watches[i])) {
                s_close_watch(c, i);
            }
        }
    }
    free(items);
    return NULL;
}

static void s_wake(tb_curve_t *c)
{
    uint64_t one = 1;
    if (write(c->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        TB_CLOG_ERROR(LOG_NAME, "cannot wake the CURVE guard: %s", strerror(errno));
    }
}

/* ------------------------------------------------------------------------------------------- */

static int s_load_keys(tb_curve_t *c, const struct tb_curve_config *cfg, char *err,
                       size_t err_len)
{
    if (!cfg->secret_key_file || !cfg->allowed_keys_file) {
        snprintf(err, err_len, "CURVE needs a secret key file and an allowed keys file");
        return TB_EINVAL;
    }
    int rc = tb_curve_read_key_file(cfg->secret_key_file, "secret key file", true, c->secret, err,
                                    err_len);
    if (rc != 0) {
        return rc;
    }
    if (tb_curve_public_of(c->secret, c->public_key) != 0) {
        snprintf(err, err_len, "the secret key file '%s' holds no usable secret key",
                 cfg->secret_key_file);
        return TB_EINVAL;
    }
    if (cfg->public_key_file) {
        char pub[TB_CURVE_KEY_SIZE];
        rc = tb_curve_read_key_file(cfg->public_key_file, "public key file", false, pub, err,
                                    err_len);
        if (rc != 0) {
            return rc;
        }
        if (strcmp(pub, c->public_key) != 0) {
            snprintf(err, err_len,
                     "the public key file '%s' does not hold the public key of the secret key "
                     "file '%s': use the pair 'turbine keygen' wrote",
                     cfg->public_key_file, cfg->secret_key_file);
            return TB_EINVAL;
        }
    }
    rc = tb_curve_read_allowed(cfg->allowed_keys_file, &c->allowed, &c->n_allowed, err, err_len);
    if (rc != 0) {
        return rc;
    }
    c->allowed_bin = calloc(c->n_allowed, sizeof(*c->allowed_bin));
    c->allowed_file = strdup(cfg->allowed_keys_file);
    if (!c->allowed_bin || !c->allowed_file) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < c->n_allowed; i++) {
        zmq_z85_decode(c->allowed_bin[i], c->allowed[i]);
    }
    return 0;
}

int tb_curve_new(void *zctx, const struct tb_curve_config *cfg, tb_curve_t **out, char *err,
                 size_t err_len)
{
    *out = NULL;
    if (!tb_curve_is_available()) {
        snprintf(err, err_len,
                 "this libzmq was built without CURVE (zmq_has(\"curve\") is false): install a "
                 "libzmq built with libsodium, or remove bus.curve");
        return TB_ENOTSUP;
    }
    tb_curve_t *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->zctx = zctx;
    c->wake_fd = -1;
    c->tokens = LOG_BURST;
    clock_gettime(CLOCK_MONOTONIC, &c->last_refill);
    int rc = s_load_keys(c, cfg, err, err_len);
    if (rc != 0) {
        goto fail;
    }
    if (cfg->metrics) {
        c->m_refused = tb_metric_get(cfg->metrics, "turbine_bus_refused_total", TB_METRIC_COUNTER,
                                     "bus connections refused by CURVE, by why (key_not_allowed: "
                                     "a key not in the allowed list; handshake: no CURVE, or a "
                                     "wrong server key)",
                                     "reason", NULL, 0);
    }
    rc = TB_EIO;
    c->zap = zmq_socket(zctx, ZMQ_REP);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int zero = 0;
    if (!c->zap || c->wake_fd < 0 || zmq_setsockopt(c->zap, ZMQ_LINGER, &zero, sizeof(zero)) ||
        zmq_bind(c->zap, ZAP_ENDPOINT) != 0) {
        snprintf(err, err_len, "cannot start the CURVE authentication handler: %s",
                 zmq_strerror(errno));
        goto fail;
    }
    if (pthread_create(&c->guard, NULL, s_guard, c) != 0) {
        snprintf(err, err_len, "cannot start the CURVE guard thread");
        goto fail;
    }
    c->guard_started = true;
    TB_CLOG_INFO(LOG_NAME, "CURVE on the tcp bus: public key %s, %zu allowed key%s (%s)",
                 c->public_key, c->n_allowed, c->n_allowed == 1 ? "" : "s", c->allowed_file);
    *out = c;
    return 0;
fail:
    tb_curve_destroy(&c);
    return rc;
}

void tb_curve_destroy(tb_curve_t **curve_p)
{
    if (!curve_p || !*curve_p) {
        return;
    }
    tb_curve_t *c = *curve_p;
    if (c->guard_started) {
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        pthread_mutex_unlock(&c->lock);
        s_wake(c);
        pthread_join(c->guard, NULL);
    }
    while (c->n_watches) {
        s_close_watch(c, c->n_watches - 1);
    }
    free(c->watches);
    for (struct pending *p = c->pending; p;) {
        struct pending *next = p->next;
        free(p);
        p = next;
    }
    if (c->zap) {
        zmq_close(c->zap);
    }
    if (c->wake_fd >= 0) {
        close(c->wake_fd);
    }
    pthread_mutex_destroy(&c->lock);
    free(c->allowed);
    free(c->allowed_bin);
    free(c->allowed_file);
    explicit_bzero(c->secret, sizeof(c->secret));
    free(c);
    *curve_p = NULL;
}

const char *tb_curve_public_key(const tb_curve_t *c)
{
    return c->public_key;
}

bool tb_curve_is_allowed(const tb_curve_t *c, const char *key)
{
    uint8_t bin[32];
    return key && s_key_ok(key, bin) && s_is_allowed_bin(c, bin, 32);
}

int tb_curve_server(tb_curve_t *c, void *sock, char *err, size_t err_len)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->secret, TB_CURVE_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)) != 0) {
        snprintf(err, err_len, "cannot make a CURVE server socket: %s", zmq_strerror(errno));
        return TB_EIO;
    }
    struct pending *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    snprintf(p->endpoint, sizeof(p->endpoint), "inproc://tb-curve-watch-%u",
             atomic_fetch_add(&c->watch_counter, 1));
    if (zmq_socket_monitor(sock, p->endpoint, WATCH_EVENTS) != 0) {
        snprintf(err, err_len, "cannot watch a CURVE server socket: %s", zmq_strerror(errno));
        free(p);
        return TB_EIO;
    }
    pthread_mutex_lock(&c->lock);
    p->next = c->pending;
    c->pending = p;
    pthread_mutex_unlock(&c->lock);
    s_wake(c);
    return 0;
}

int tb_curve_client(const tb_curve_t *c, void *sock, const char *server_key, char *err,
                    size_t err_len)
{
    if (!server_key || !s_key_ok(server_key, NULL)) {
        snprintf(err, err_len,
                 "the peer advertises no CURVE public key (a process without bus.curve?): it "
                 "cannot be reached on a CURVE bus");
        return TB_EINVAL;
    }
    if (!tb_curve_is_allowed(c, server_key)) {
        snprintf(err, err_len,
                 "the peer's CURVE public key %s is not in the allowed keys (%s): this process "
                 "talks only to peers it allows",
                 server_key, c->allowed_file);
        return TB_EINVAL;
    }
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_key, TB_CURVE_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, c->public_key, TB_CURVE_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->secret, TB_CURVE_KEY_LEN) != 0) {
        snprintf(err, err_len, "cannot make a CURVE client socket: %s", zmq_strerror(errno));
        return TB_EIO;
    }
    return 0;
}
