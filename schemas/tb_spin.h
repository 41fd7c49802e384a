/*
 * tb_spin.h - the plugin SDK's spin-then-sleep wait on an epoll set (header only).
 *
 * A thread that had work a moment ago is likely to get more within microseconds: polling the
 * set until `spin_until_ns` (CLOCK_MONOTONIC, as tb_host.now_ns) costs less than being woken
 * from sleep.  The bus handles' loops and the http plugin's loop use it; any plugin running its
 * own epoll loop may.  An idle thread (spin_until_ns in the past) sleeps at once.
 */
#ifndef TB_SPIN_H
#define TB_SPIN_H

#include <sched.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <time.h>

static inline int64_t tb_spin_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* epoll_wait(epfd, evs, max, timeout_ms), but first polling (with sched_yield between polls)
 * until spin_until_ns; the time spent polling counts against a positive timeout.  A timeout of
 * 0 never polls.  Returns what epoll_wait returns. */
static inline int tb_epoll_wait_spin(int epfd, struct epoll_event *evs, int max, int timeout_ms,
                                     int64_t spin_until_ns)
{
    if (timeout_ms != 0) {
        const int64_t start = tb_spin_now_ns();
        int64_t t = start;
        for (; t < spin_until_ns; t = tb_spin_now_ns()) {
            int n = epoll_wait(epfd, evs, max, 0);
            if (n != 0) {
                return n;
            }
            sched_yield();
        }
        if (timeout_ms > 0) {
            int64_t left = timeout_ms - (t - start) / 1000000;
            timeout_ms = left > 0 ? (int)left : 0;
        }
    }
    return epoll_wait(epfd, evs, max, timeout_ms);
}

#endif /* TB_SPIN_H */
