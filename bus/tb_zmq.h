/*
 * tb_zmq.h - small helpers over libzmq for multipart messages and socket setup.
 */
#ifndef TB_ZMQ_H
#define TB_ZMQ_H

#include <stddef.h>
#include <zmq.h>

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

/* Most parts a bus message has (identity + header + payload, with room to spare). */
#define TB_ZMQ_MAX_PARTS 4

/* Sends `n` parts as one message.  `flags` is 0 or ZMQ_DONTWAIT.  0, or a negative errno. */
int tb_zmq_send(void *sock, int n, const void *const *parts, const size_t *lens, int flags);

/* Receives one whole message into `parts` (initialised here; the caller closes *n of them with
 * tb_zmq_close_parts).  Parts beyond `max` are read and dropped, and *n is then max+1 so the caller
 * can refuse the message.  0, or a negative errno (-EAGAIN when nothing is waiting). */
int tb_zmq_recv(void *sock, zmq_msg_t *parts, int max, int *n, int flags);
void tb_zmq_close_parts(zmq_msg_t *parts, int n);

/* A socket of `type` with linger 0 and the bus's limits (max message size, high-water marks).
 * NULL with errno set on failure. */
void *tb_zmq_socket(void *ctx, int type);

#pragma GCC visibility pop

#endif /* TB_ZMQ_H */
