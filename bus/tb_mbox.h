/*
 * tb_mbox.h - a bus handle's mailbox for calls between handles of one process (docs/bus.md,
 * "Calls within a process").
 *
 * A caller whose callee's endpoint lives in the same process hands it the request, and the callee
 * hands back its chunks, as messages in each other's mailbox instead of ZeroMQ messages: one
 * block per message (no frame to encode, no copies inside libzmq), one eventfd write per batch
 * (only when the mailbox goes from unsignalled to signalled), and no system call to learn that it
 * is empty.  A message's block comes from the sending handle's own pool and goes back to it when
 * the receiver is done, so a thread never frees blocks another thread allocated (glibc's arena
 * locks then stay uncontended).
 *
 * Thread-safety: push and tb_mbox_msg_free from any thread; tb_mbox_msg_new only on the owner's
 * thread (the one bus handle that created the mailbox); take on the owner's thread.
 */
#ifndef TB_MBOX_H
#define TB_MBOX_H

#include <stddef.h>
#include <stdint.h>

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

typedef struct tb_mbox tb_mbox_t;

/* One message.  The sender fills the fields after tb_mbox_msg_new; `data` holds `len` bytes of
 * payload, then (errors) the NUL-terminated `message`. */
struct tb_mbox_msg {
    struct tb_mbox_msg *next;
    tb_mbox_t *owner; /* whose pool the block returns to (a reference) */
    size_t cap;       /* bytes of data[]; 0: not from the pool */
    int kind;         /* the bus's frame kinds (tb_bus.c) */
    int code;         /* errors */
    int timeout_ms;   /* requests */
    uint64_t id;      /* the call id */
    uint64_t instance;
    tb_mbox_t *from; /* requests, cancels, pings: the caller's mailbox (a reference) or NULL */
    const char *message; /* errors: in data, after the payload; NULL otherwise */
    size_t len;
    uint8_t data[];
};

/* A new mailbox with one reference (the owner's).  NULL when out of memory or descriptors. */
tb_mbox_t *tb_mbox_new(void);

/* Takes a reference.  Any thread. */
void tb_mbox_ref(tb_mbox_t *mb);

/* Drops a reference and sets *mb_p to NULL (accepts NULL); the last one frees the mailbox, its
 * pool and whatever is still queued.  Any thread. */
void tb_mbox_unref(tb_mbox_t **mb_p);

/* The eventfd that becomes readable when messages wait (for the owner's epoll set).  Borrowed. */
int tb_mbox_fd(const tb_mbox_t *mb);

/* A message block with room for `len` payload bytes and `extra` more (an error's text), from
 * `owner`'s pool when it fits, every field zeroed but owner/cap.  Owner's thread only.  Caller
 * owns it: push it or free it.  NULL when out of memory. */
struct tb_mbox_msg *tb_mbox_msg_new(tb_mbox_t *owner, size_t len, size_t extra);

/* Releases a message: drops its `from` reference, and returns the block to its owner's pool.  Any
 * thread; accepts NULL. */
void tb_mbox_msg_free(struct tb_mbox_msg *msg);

/* Queues `msg` (takes ownership) and signals the mailbox if it was not signalled already.  0, or
 * TB_EGONE when the mailbox is closed (the message is then freed). */
int tb_mbox_push(tb_mbox_t *mb, struct tb_mbox_msg *msg);

/* Every queued message, oldest first (a list through `next`; caller frees each with
 * tb_mbox_msg_free), and clears the signal.  NULL when none.  Owner's thread. */
struct tb_mbox_msg *tb_mbox_take(tb_mbox_t *mb);

/* Refuses every later push (TB_EGONE to the pusher) and returns what is still queued, as
 * tb_mbox_take does, for the owner to answer.  Owner's thread. */
struct tb_mbox_msg *tb_mbox_close(tb_mbox_t *mb);

#pragma GCC visibility pop

#endif /* TB_MBOX_H */
