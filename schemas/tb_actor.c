/* tb_actor: a bus-owning plugin thread (see tb_actor.h). */
#include "tb_actor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct tb_actor {
    const struct tb_host *host;
    tb_component_t *comp;
    const struct tb_actor_ops *ops;
    void *user;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready;
    int init_rc;
    atomic_bool stop;
    tb_bus_t *bus; /* under lock: wake may come from any thread */
};

static void *s_main(void *arg)
{
    tb_actor_t *a = arg;
    const struct tb_host *h = a->host;
    tb_bus_t *bus = h->bus_new(a->comp);
    int rc = bus ? a->ops->init(a->user, bus) : TB_EIO;
    if (!bus) {
        h->set_error(a->comp, "cannot create a bus handle (see the log)");
    }
    pthread_mutex_lock(&a->lock);
    a->bus = rc == 0 ? bus : NULL;
    a->init_rc = rc;
    a->ready = true;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
    if (rc != 0) {
        h->bus_destroy(&bus);
        return NULL;
    }
    while (!atomic_load(&a->stop)) {
        int timeout = a->ops->step ? a->ops->step(a->user, bus) : -1;
        if (atomic_load(&a->stop)) {
            break;
        }
        h->bus_run(bus, timeout);
    }
    if (a->ops->fini) {
        a->ops->fini(a->user, bus);
    }
    pthread_mutex_lock(&a->lock);
    a->bus = NULL;
    pthread_mutex_unlock(&a->lock);
    h->bus_destroy(&bus);
    return NULL;
}

int tb_actor_start(tb_actor_t **out, const struct tb_host *host, tb_component_t *comp,
                   const struct tb_actor_ops *ops, void *user)
{
    *out = NULL;
    tb_actor_t *a = calloc(1, sizeof(*a));
    if (!a) {
        return TB_ENOMEM;
    }
    a->host = host;
    a->comp = comp;
    a->ops = ops;
    a->user = user;
    atomic_init(&a->stop, false);
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
    if (pthread_create(&a->thread, NULL, s_main, a) != 0) {
        host->set_error(comp, "cannot start a thread");
        pthread_mutex_destroy(&a->lock);
        pthread_cond_destroy(&a->cond);
        free(a);
        return TB_EIO;
    }
    pthread_mutex_lock(&a->lock);
    while (!a->ready) {
        pthread_cond_wait(&a->cond, &a->lock);
    }
    int rc = a->init_rc;
    pthread_mutex_unlock(&a->lock);
    if (rc != 0) {
        pthread_join(a->thread, NULL);
        pthread_mutex_destroy(&a->lock);
        pthread_cond_destroy(&a->cond);
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void tb_actor_wake(tb_actor_t *a)
{
    pthread_mutex_lock(&a->lock);
    if (a->bus) {
        a->host->bus_wakeup(a->bus);
    }
    pthread_mutex_unlock(&a->lock);
}

void tb_actor_stop(tb_actor_t **a_p)
{
    if (!a_p || !*a_p) {
        return;
    }
    tb_actor_t *a = *a_p;
    atomic_store(&a->stop, true);
    tb_actor_wake(a);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->cond);
    free(a);
    *a_p = NULL;
}
