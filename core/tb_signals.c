/* tb_signals: self-pipe signal delivery (see tb_signals.h). */
#include "tb_signals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* The write end of the pipe: the one global a handler may touch. */
static volatile sig_atomic_t s_pipe_wr = -1;

static void s_handler(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (s_pipe_wr >= 0) {
        ssize_t rc = write(s_pipe_wr, &b, 1);
        (void)rc; /* a full pipe already holds a wakeup */
    }
    errno = saved;
}

int tb_signals_install(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        return -errno;
    }
    s_pipe_wr = fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = s_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGPIPE, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        if (sigaction(sigs[i], &sa, NULL) != 0) {
            return -errno;
        }
    }
    return fds[0];
}

int tb_signals_next(int fd)
{
    unsigned char b;
    ssize_t n = read(fd, &b, 1);
    return n == 1 ? (int)b : 0;
}
