/*
 * sse_baseline - the streaming benchmark's control: a trivial HTTP/1.1 server that answers every
 * request with a server-sent event stream shaped like turbine's (chunked, one
 * `data: {"choices":[{"delta":{"content":"w "}}]}` event per token, then `data: [DONE]`), its first
 * token `ttft` after the request arrived and the next ones every `itl`, on absolute deadlines like
 * the mock engine's.  bench/serving/run.py drives stream_client.py against it and against turbine
 * at the same settings: what the client, the kernel and the machine add shows here, and turbine's
 * figures minus these are the framework's share.
 *
 * One thread, one epoll loop, one timerfd armed at the earliest due event, so the server adds as
 * little as it can.  It prints "listening <port>" on stdout once bound, and runs until killed.
 *
 * Usage: sse_baseline [-p port] [-t ttft_ms] [-i itl_ms] [-n tokens]
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define REQ_MAX 65536

struct conn {
    int fd;
    bool used;
    bool streaming;
    size_t got;      /* request bytes read */
    int64_t next_ns; /* when the next event is due */
    int sent;        /* tokens sent */
    char req[REQ_MAX];
};

struct server {
    struct conn *conns; /* MAX_CONNS slots */
    int hi;             /* slots in use are below this */
    int64_t ttft_ns, itl_ns;
    int tokens;
};

static int64_t s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void s_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->used = false;
}

/* Writes all of `buf` (the socket is blocking; the payloads are small). */
static bool s_write(struct conn *c, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(c->fd, buf, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* One chunk of the chunked body holding `data`. */
static bool s_chunk(struct conn *c, const char *data)
{
    char buf[512];
    size_t len = strlen(data);
    int n = snprintf(buf, sizeof(buf), "%zx\r\n%s\r\n", len, data);
    return n > 0 && (size_t)n < sizeof(buf) && s_write(c, buf, (size_t)n);
}

/* The request is complete when its headers and Content-Length bytes of body arrived. */
static bool s_request_done(const struct conn *c)
{
    const char *end = memmem(c->req, c->got, "\r\n\r\n", 4);
    if (!end) {
        return false;
    }
    size_t head = (size_t)(end - c->req) + 4;
    size_t body = 0;
    const char *cl = memmem(c->req, head, "Content-Length:", 15);
    if (!cl) {
        cl = memmem(c->req, head, "content-length:", 15);
    }
    if (cl) {
        body = (size_t)strtoul(cl + 15, NULL, 10);
    }
    return c->got >= head + body;
}

static void s_on_readable(const struct server *sv, int ep, struct conn *c, int64_t now)
{
    ssize_t n = read(c->fd, c->req + c->got, sizeof(c->req) - c->got);
    if (n <= 0 || c->streaming) {
        if (n <= 0 || c->got + (size_t)n >= sizeof(c->req)) {
            s_close(ep, c);
        }
        return;
    }
    c->got += (size_t)n;
    if (!s_request_done(c)) {
        if (c->got == sizeof(c->req)) {
            s_close(ep, c);
        }
        return;
    }
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    if (!s_write(c, head, sizeof(head) - 1)) {
        s_close(ep, c);
        return;
    }
    c->streaming = true;
    c->sent = 0;
    c->next_ns = now + sv->ttft_ns;
}

/* Sends every event due by `now`; returns false when the stream ended. */
static bool s_emit(const struct server *sv, struct conn *c, int64_t now)
{
    while (c->next_ns <= now && c->sent < sv->tokens) {
        char ev[256];
        snprintf(ev, sizeof(ev),
                 "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                 "\"delta\":{\"content\":\"w%d \"},\"finish_reason\":null}]}\n\n",
                 c->sent);
        if (!s_chunk(c, ev)) {
            return false;
        }
        c->sent++;
        c->next_ns += sv->itl_ns;
    }
    if (c->sent < sv->tokens) {
        return true;
    }
    s_chunk(c, "data: [DONE]\n\n");
    s_write(c, "0\r\n\r\n", 5);
    return false;
}

static void s_arm(const struct server *sv, int tfd)
{
    int64_t next = INT64_MAX;
    for (int i = 0; i < sv->hi; i++) {
        const struct conn *c = &sv->conns[i];
        if (c->used && c->streaming && c->next_ns < next) {
            next = c->next_ns;
        }
    }
    struct itimerspec its = {0};
    if (next != INT64_MAX) {
        its.it_value.tv_sec = next / 1000000000;
        its.it_value.tv_nsec = next % 1000000000;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) {
            its.it_value.tv_nsec = 1;
        }
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

int main(int argc, char **argv)
{
    int port = 0;
    int opt;
    struct server sv = {.ttft_ns = 50000000, .itl_ns = 10000000, .tokens = 64};
    while ((opt = getopt(argc, argv, "p:t:i:n:")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 't':
            sv.ttft_ns = (int64_t)(atof(optarg) * 1e6);
            break;
        case 'i':
            sv.itl_ns = (int64_t)(atof(optarg) * 1e6);
            break;
        case 'n':
            sv.tokens = atoi(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: sse_baseline [-p port] [-t ttft_ms] [-i itl_ms] [-n tokens]\n");
            return 2;
        }
    }
    sv.conns = calloc(MAX_CONNS, sizeof(*sv.conns));
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (!sv.conns || lfd < 0 || ep < 0 || tfd < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1024) != 0) {
        perror("sse_baseline");
        return 1;
    }
    socklen_t sl = sizeof(sa);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("listening %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.u64 = UINT64_MAX - 1;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        int64_t now = s_now();
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag == UINT64_MAX) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                int slot = -1;
                for (int k = 0; fd >= 0 && k < MAX_CONNS && slot < 0; k++) {
                    slot = sv.conns[k].used ? -1 : k;
                }
                if (slot < 0) {
                    if (fd >= 0) {
                        close(fd);
                    }
                    continue;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                struct conn *c = &sv.conns[slot];
                c->fd = fd;
                c->used = true;
                c->streaming = false;
                c->got = 0;
                if (slot >= sv.hi) {
                    sv.hi = slot + 1;
                }
                ev.data.u64 = (uint64_t)slot;
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            } else if (tag == UINT64_MAX - 1) {
                uint64_t v;
                if (read(tfd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
                    perror("timerfd");
                }
            } else {
                s_on_readable(&sv, ep, &sv.conns[tag], now);
            }
        }
        now = s_now();
        for (int k = 0; k < sv.hi; k++) {
            struct conn *c = &sv.conns[k];
            if (c->used && c->streaming && c->next_ns <= now && !s_emit(&sv, c, now)) {
                s_close(ep, c);
            }
        }
        while (sv.hi > 0 && !sv.conns[sv.hi - 1].used) {
            sv.hi--;
        }
        s_arm(&sv, tfd);
    }
}
