/* An out-of-tree Turbine plugin: serves <namespace>.<component>.hello and answers each request
 * with "hello, <payload>" in one final chunk.  Its thread comes from the SDK helper library
 * (tb_actor.h).  Build (docs/plugins.md):
 *   cc -std=c11 -shared -fPIC -fvisibility=hidden $(pkg-config --cflags turbine-plugin) \
 *      -o tb_hello.so hello.c $(pkg-config --libs turbine-plugin) -lpthread
 */
#include <stdio.h>
#include <stdlib.h>

#include "tb_actor.h"
#include "tb_plugin.h"

struct hello_config {
    const char *greeting;
};

struct hello {
    const struct tb_host *host;
    tb_component_t *comp;
    const struct hello_config *cfg;
    tb_actor_t *actor;
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

/* On the plugin's thread (an actor), with its own bus handle: start waits for this. */
static int init(void *user, tb_bus_t *bus)
{
    struct hello *h = user;
    tb_endpoint_t *ep;
    int rc = h->host->bus_endpoint_add(bus, "hello", NULL, on_request, on_cancel, h, &ep);
    if (rc != 0) {
        h->host->set_error(h->comp, "cannot serve the hello endpoint: %s", h->host->strerror(rc));
    }
    return rc;
}

static const struct tb_actor_ops ops = {.init = init};

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
    int rc = tb_actor_start(&h->actor, h->host, h->comp, &ops, h);
    if (rc == 0) {
        TB_LOG_INFO(h->host, h->comp, "saying '%s'", h->cfg->greeting);
    }
    return rc;
}

static void stop(void *state)
{
    struct hello *h = state;
    tb_actor_stop(&h->actor);
}

static void destroy(void *state)
{
    free(state);
}

static const struct tb_config_field fields[] = {
    {.key = "greeting",
     .type = TB_CFG_STRING,
     .offset = offsetof(struct hello_config, greeting),
     .default_value = "hello",
     .help = "what to say"},
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
