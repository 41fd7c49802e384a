/* An out-of-tree Turbine plugin: serves <namespace>.<component>.hello and answers each request
 * with "hello, <payload>" in one final chunk.  Build (docs/plugins.md):
 *   cc -std=c11 -shared -fPIC -fvisibility=hidden $(pkg-config --cflags turbine-plugin) \
 *      -o tb_hello.so hello.c -lpthread
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_plugin.h"

struct hello_config {
    const char *greeting;
};

struct hello {
    const struct tb_host *host;
    tb_component_t *comp;
    const struct hello_config *cfg;
    pthread_t thread;
    atomic_bool stop;
    atomic_int ready; /* 0 starting, 1 serving, -1 failed */
};

static void on_request(tb_request_t *req, const void *payload, size_t len, void *user)
{
    struct hello *h = user;
    char out[512];
    int n = snprintf(out, sizeof(out), "%s, %.*s", h->cfg->greeting, (int)len,
                     (const char *)payload);
    h->host->bus_reply(req, out, (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1, true);
}

static void on_cancel(tb_request_t *req, void *user)
{
    (void)user;
    (void)req; /* every request is answered at once: nothing to stop */
}

/* The plugin's one thread: it owns a bus handle and runs the bus loop. */
static void *run(void *arg)
{
    struct hello *h = arg;
    tb_bus_t *bus = h->host->bus_new(h->comp);
    tb_endpoint_t *ep;
    if (!bus || h->host->bus_endpoint_add(bus, "hello", NULL, on_request, on_cancel, h, &ep)) {
        h->host->bus_destroy(&bus);
        atomic_store(&h->ready, -1);
        return NULL;
    }
    atomic_store(&h->ready, 1);
    while (!atomic_load(&h->stop)) {
        h->host->bus_run(bus, 100);
    }
    h->host->bus_destroy(&bus);
    return NULL;
}

static int create(const struct tb_host *host, tb_component_t *comp, const void *config,
                  void **state)
{
    struct hello *h = calloc(1, sizeof(*h));
    if (!h) {
        host->set_error(comp, "out of memory");
        return TB_ENOMEM;
    }
    h->host = host;
    h->comp = comp;
    h->cfg = config;
    *state = h;
    return 0;
}

static int start(void *state)
{
    struct hello *h = state;
    if (pthread_create(&h->thread, NULL, run, h) != 0) {
        h->host->set_error(h->comp, "cannot start a thread");
        return TB_EIO;
    }
    while (atomic_load(&h->ready) == 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&h->ready) < 0) {
        pthread_join(h->thread, NULL);
        h->host->set_error(h->comp, "cannot serve the hello endpoint");
        return TB_EIO;
    }
    TB_LOG_INFO(h->host, h->comp, "saying '%s'", h->cfg->greeting);
    return 0;
}

static void stop(void *state)
{
    struct hello *h = state;
    atomic_store(&h->stop, true);
    pthread_join(h->thread, NULL);
}

static void destroy(void *state)
{
    free(state);
}

static const struct tb_config_field fields[] = {
    {.key = "greeting", .type = TB_CFG_STRING, .offset = offsetof(struct hello_config, greeting),
     .default_value = "hello", .help = "what to say"},
};

static const struct tb_plugin plugin = {
    .struct_size = sizeof(struct tb_plugin),
    .abi_major = TB_ABI_MAJOR,
    .abi_minor = TB_ABI_MINOR,
    .name = "hello",
    .version = "1.0.0",
    .description = "an out-of-tree example plugin",
    .config_fields = fields,
    .config_field_count = 1,
    .config_size = sizeof(struct hello_config),
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .config_field_size = sizeof(struct tb_config_field),
};

TB_EXPORT const struct tb_plugin *tb_plugin_entry(void)
{
    return &plugin;
}
