/* tb_bus_tools: `turbine routes` and `turbine call` (see tb_bus_tools.h). */
#include "tb_bus_tools.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tb_bus.h"
#include "tb_log.h"
#include "tb_node.h"

static const char s_usage[] =
    "usage: turbine routes --join ADDR [--watch SECONDS]\n"
    "       turbine call --join ADDR ENDPOINT [--data TEXT] [--timeout MS]\n"
    "\n"
    "Join the registry of a running deployment at ADDR (its registry.listen address) and\n"
    "  routes: print one line per live route (endpoint, instance, model, kind, address); with\n"
    "          --watch, keep printing '+' and '-' lines as routes come and go for SECONDS\n"
    "  call:   call ENDPOINT (namespace.component.endpoint) with TEXT as payload and print each\n"
    "          chunk as it arrives; exit 0 on a final chunk, 1 on an error chunk\n";

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_print_route(const struct tb_route *r, const char *mark)
{
    printf("%s%s instance=%016" PRIx64 " model=%s kind=%s context=%" PRId64 "%s\n", mark,
           r->endpoint, r->instance_id, *r->model ? r->model : "-", r->kind, r->context_length,
           r->local ? " local" : "");
    fflush(stdout);
}

static void s_on_route(const struct tb_route *r, bool added, void *user)
{
    (void)user;
    s_print_route(r, added ? "+ " : "- ");
}

struct call_state {
    bool done;
    int status;
};

static void s_on_chunk(tb_call_t *call, const struct tb_chunk *ch, void *user)
{
    (void)call;
    struct call_state *s = user;
    if (ch->kind == TB_CHUNK_DATA) {
        printf("data %zu: %.*s\n", ch->len, (int)ch->len, (const char *)ch->data);
    } else if (ch->kind == TB_CHUNK_FINAL) {
        printf("final %zu: %.*s\n", ch->len, (int)ch->len, (const char *)ch->data);
        s->done = true;
        s->status = 0;
    } else {
        printf("error %d: %s\n", ch->code, ch->message);
        s->done = true;
        s->status = 1;
    }
    fflush(stdout);
}

int tb_bus_tools_main(int argc, char **argv)
{
    static const struct option opts[] = {{"join", required_argument, NULL, 'j'},
                                         {"watch", required_argument, NULL, 'w'},
                                         {"data", required_argument, NULL, 'd'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *join = NULL;
    const char *data = "";
    double watch_s = 0;
    int timeout_ms = 30000;
    bool is_call = strcmp(argv[0], "call") == 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            join = optarg;
            break;
        case 'w':
            watch_s = atof(optarg);
            break;
        case 'd':
            data = optarg;
            break;
        case 't':
            timeout_ms = atoi(optarg);
            break;
        case 'h':
            fputs(s_usage, stdout);
            return 0;
        default:
            fputs(s_usage, stderr);
            return 2;
        }
    }
    if (!join || (is_call && optind != argc - 1) || (!is_call && optind != argc)) {
        fputs(s_usage, stderr);
        return 2;
    }
    tb_log_set_level(TB_LOG_WARN);
    struct tb_node_config cfg = {.join = join, .join_timeout_ms = 5000};
    tb_node_t *node = NULL;
    char err[512];
    if (tb_node_new(&cfg, &node, err, sizeof(err)) != 0) {
        fprintf(stderr, "turbine %s: %s\n", argv[0], err);
        return 1;
    }
    tb_bus_t *bus = tb_bus_new(node, "turbine", "cli");
    int status = 1;
    if (!bus) {
        fprintf(stderr, "turbine %s: cannot create a bus handle\n", argv[0]);
        goto out;
    }
    if (!is_call) {
        tb_bus_routes_watch(bus, s_on_route, NULL);
        int64_t end = s_now_ms() + (int64_t)(watch_s * 1000);
        while (s_now_ms() < end) {
            tb_bus_run(bus, 50);
        }
        status = 0;
    } else {
        struct call_state st = {0};
        tb_call_t *call;
        int rc = tb_bus_call(bus, argv[optind], 0, data, strlen(data), timeout_ms, s_on_chunk,
                             &st, &call);
        if (rc != 0) {
            fprintf(stderr, "turbine call: %s: %s\n", argv[optind],
                    rc == TB_ENOROUTE ? "no live instance serves this endpoint" : "call failed");
        } else {
            while (!st.done) {
                tb_bus_run(bus, 100);
            }
            status = st.status;
        }
    }
out:
    tb_bus_destroy(&bus);
    tb_node_destroy(&node);
    return status;
}
