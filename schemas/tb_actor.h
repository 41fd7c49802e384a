/*
 * tb_actor.h - a plugin thread that owns a bus handle and runs its loop (CZMQ's zactor idea):
 * start blocks until the thread's init (adding endpoints, subscribing) succeeded or failed, so a
 * component's start reports errors synchronously; stop wakes the loop and joins the thread.
 * Part of the SDK helper library (libtb_sdk.a); needs -pthread.
 */
#ifndef TB_ACTOR_H
#define TB_ACTOR_H

#include <stdbool.h>

#include "tb_plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_actor tb_actor_t;

struct tb_actor_ops {
    /* On the actor thread, with its new bus handle.  0, or a TB_E* code after host->set_error. */
    int (*init)(void *user, tb_bus_t *bus);
    /* Optional, on the actor thread before each bus_run: does due work and returns the longest
     * bus_run may wait in ms (-1: until bus activity). */
    int (*step)(void *user, tb_bus_t *bus);
    /* Optional, on the actor thread after the loop ends, before the bus handle is destroyed. */
    void (*fini)(void *user, tb_bus_t *bus);
};

/* Starts the thread and waits for init.  On success *out is owned by the caller (stop with
 * tb_actor_stop); on failure returns init's code (or TB_ENOMEM/TB_EIO) with nothing left
 * running. `ops` and `user` are borrowed until stop. */
int tb_actor_start(tb_actor_t **out, const struct tb_host *host, tb_component_t *comp,
                   const struct tb_actor_ops *ops, void *user);

/* Ends the loop, runs fini, destroys the bus handle, joins; sets *a_p to NULL; accepts NULL. */
void tb_actor_stop(tb_actor_t **a_p);

/* Makes the loop run another step soon.  Any thread. */
void tb_actor_wake(tb_actor_t *a);

#ifdef __cplusplus
}
#endif

#endif /* TB_ACTOR_H */
