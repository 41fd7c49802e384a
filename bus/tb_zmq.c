/* tb_zmq: multipart send/receive and socket defaults shared by the bus classes. */
#include "tb_zmq.h"

#include <errno.h>
#include <stdint.h>

int tb_zmq_send(void *sock, int n, const void *const *parts, const size_t *lens, int flags)
{
    for (int i = 0; i < n; i++) {
        int f = flags | (i + 1 < n ? ZMQ_SNDMORE : 0);
        if (zmq_send(sock, parts[i], lens[i], f) < 0) {
            /* A failure on the first part sends nothing; later parts cannot fail with EAGAIN
             * because zmq queues a message's parts atomically once the first is accepted. */
            return -errno;
        }
    }
    return 0;
}

int tb_zmq_recv(void *sock, zmq_msg_t *parts, int max, int *n, int flags)
{
    int got = 0;
    *n = 0;
    for (;;) {
        zmq_msg_t scratch;
        zmq_msg_t *m = got < max ? &parts[got] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, got == 0 ? flags : 0) < 0) {
            int e = errno;
            zmq_msg_close(m);
            tb_zmq_close_parts(parts, got < max ? got : max);
            *n = 0;
            return -e;
        }
        int more = zmq_msg_more(m);
        if (m == &scratch) {
            zmq_msg_close(m);
        }
        got++;
        if (!more) {
            break;
        }
    }
    *n = got <= max ? got : max + 1;
    return 0;
}

void tb_zmq_close_parts(zmq_msg_t *parts, int n)
{
    for (int i = 0; i < n; i++) {
        zmq_msg_close(&parts[i]);
    }
}

void *tb_zmq_socket(void *ctx, int type)
{
    void *s = zmq_socket(ctx, type);
    if (!s) {
        return NULL;
    }
    int zero = 0;
    int64_t maxmsg = (int64_t)256 << 20;
    int hwm = 100000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    return s;
}
