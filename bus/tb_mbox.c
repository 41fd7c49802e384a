/* tb_mbox: a bus handle's mailbox for calls within the process (see tb_mbox.h). */
#include "tb_mbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tb_errors.h"

/* A pooled block: the header and this many bytes of payload and text.  The hot messages (a
 * gen_request, a unary answer) are a few hundred bytes; larger ones are malloc'd one-offs. */
#define POOL_BLOCK 1024
#define POOL_KEEP 256 /* blocks kept from one batch given back */

struct tb_mbox {
    _Atomic long refs;
    int fd;
    pthread_mutex_t lock;
    struct tb_mbox_msg *head, *tail;
    bool signalled; /* an eventfd write is pending or done since the last take */
    bool closed;
    /* the pool: blocks other threads give back (a stack, pushed by anyone, emptied by the owner
     * at once), and those the owner holds */
    _Atomic(struct tb_mbox_msg *) returned;
    struct tb_mbox_msg *spare;
};

tb_mbox_t *tb_mbox_new(void)
{
    tb_mbox_t *mb = calloc(1, sizeof(*mb));
    if (!mb) {
        return NULL;
    }
    mb->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (mb->fd < 0) {
        free(mb);
        return NULL;
    }
    pthread_mutex_init(&mb->lock, NULL);
    atomic_init(&mb->refs, 1);
    atomic_init(&mb->returned, NULL);
    return mb;
}

void tb_mbox_ref(tb_mbox_t *mb)
{
    atomic_fetch_add_explicit(&mb->refs, 1, memory_order_relaxed);
}

static void s_free_list(struct tb_mbox_msg *m)
{
    while (m) {
        struct tb_mbox_msg *next = m->next;
        free(m);
        m = next;
    }
}

static void s_free_queued(struct tb_mbox_msg *m)
{
    while (m) {
        struct tb_mbox_msg *next = m->next;
        tb_mbox_msg_free(m);
        m = next;
    }
}

void tb_mbox_unref(tb_mbox_t **mb_p)
{
    if (!mb_p || !*mb_p) {
        return;
    }
    tb_mbox_t *mb = *mb_p;
    *mb_p = NULL;
    if (atomic_fetch_sub_explicit(&mb->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    /* Queued messages hold references to their owners (perhaps this mailbox: then it was closed
     * and emptied before, or no reference could be the last). */
    s_free_queued(mb->head);
    s_free_list(atomic_load(&mb->returned));
    s_free_list(mb->spare);
    pthread_mutex_destroy(&mb->lock);
    close(mb->fd);
    free(mb);
}

int tb_mbox_fd(const tb_mbox_t *mb)
{
    return mb->fd;
}

/* The blocks given back, less those past POOL_KEEP (freed): a burst of messages in flight does
 * not stay allocated for the handle's life. */
static struct tb_mbox_msg *s_keep_spare(struct tb_mbox_msg *list)
{
    struct tb_mbox_msg *m = list;
    for (int i = 1; m && i < POOL_KEEP; i++) {
        m = m->next;
    }
    if (m) {
        s_free_list(m->next);
        m->next = NULL;
    }
    return list;
}

struct tb_mbox_msg *tb_mbox_msg_new(tb_mbox_t *owner, size_t len, size_t extra)
{
    const size_t room = POOL_BLOCK - sizeof(struct tb_mbox_msg);
    struct tb_mbox_msg *m = NULL;
    if (len <= room && extra <= room - len) {
        if (!owner->spare) {
            owner->spare = s_keep_spare(
                atomic_exchange_explicit(&owner->returned, NULL, memory_order_acquire));
        }
        m = owner->spare;
        if (m) {
            owner->spare = m->next;
        } else {
            m = malloc(POOL_BLOCK);
        }
        if (m) {
            m->cap = room;
        }
    } else if (len < SIZE_MAX / 2 && extra < SIZE_MAX / 2) {
        m = malloc(sizeof(*m) + len + extra);
        if (m) {
            m->cap = 0;
        }
    }
    if (!m) {
        return NULL;
    }
    size_t cap = m->cap;
    memset(m, 0, sizeof(*m));
    m->cap = cap;
    m->owner = owner;
    tb_mbox_ref(owner);
    return m;
}

void tb_mbox_msg_free(struct tb_mbox_msg *msg)
{
    if (!msg) {
        return;
    }
    tb_mbox_unref(&msg->from);
    tb_mbox_t *owner = msg->owner;
    if (msg->cap) {
        struct tb_mbox_msg *top = atomic_load_explicit(&owner->returned, memory_order_relaxed);
        do {
            msg->next = top;
        } while (!atomic_compare_exchange_weak_explicit(&owner->returned, &top, msg,
                                                        memory_order_release,
                                                        memory_order_relaxed));
    } else {
        free(msg);
    }
    tb_mbox_unref(&owner);
}

int tb_mbox_push(tb_mbox_t *mb, struct tb_mbox_msg *msg)
{
    msg->next = NULL;
    pthread_mutex_lock(&mb->lock);
    if (mb->closed) {
        pthread_mutex_unlock(&mb->lock);
        tb_mbox_msg_free(msg);
        return TB_EGONE;
    }
    if (mb->tail) {
        mb->tail->next = msg;
    } else {
        mb->head = msg;
    }
    mb->tail = msg;
    bool wake = !mb->signalled;
    mb->signalled = true;
    pthread_mutex_unlock(&mb->lock);
    if (wake) {
        /* the pusher holds a reference (its message's owner or its connection), so fd is open;
         * EAGAIN (a counter near its maximum) still leaves the descriptor readable */
        uint64_t one = 1;
        ssize_t w = write(mb->fd, &one, sizeof(one));
        (void)w;
    }
    return 0;
}

struct tb_mbox_msg *tb_mbox_take(tb_mbox_t *mb)
{
    uint64_t v;
    ssize_t r = read(mb->fd, &v, sizeof(v)); /* EAGAIN: nothing signalled, nothing lost */
    (void)r;
    pthread_mutex_lock(&mb->lock);
    struct tb_mbox_msg *list = mb->head;
    mb->head = mb->tail = NULL;
    mb->signalled = false;
    pthread_mutex_unlock(&mb->lock);
    return list;
}

struct tb_mbox_msg *tb_mbox_close(tb_mbox_t *mb)
{
    pthread_mutex_lock(&mb->lock);
    mb->closed = true;
    pthread_mutex_unlock(&mb->lock);
    return tb_mbox_take(mb);
}
