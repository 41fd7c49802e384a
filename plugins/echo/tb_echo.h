/*
 * tb_echo.h - the echo service: answers each request by streaming its payload back in N chunks
 * (optionally spaced by a delay), then a final chunk.  It exercises the whole bus in tests.
 */
#ifndef TB_ECHO_H
#define TB_ECHO_H

#include <stdint.h>

#include "tb_plugin.h"

struct tb_echo_config {
    int64_t chunks; /* pieces each payload is cut into */
    double delay_s; /* pause before each chunk */
    const char *endpoint;
};

typedef struct tb_echo tb_echo_t;

int tb_echo_new(const struct tb_host *host, tb_component_t *comp,
                const struct tb_echo_config *cfg, tb_echo_t **out);
int tb_echo_start(tb_echo_t *e);
size_t tb_echo_in_flight(tb_echo_t *e);
void tb_echo_stop(tb_echo_t *e);
void tb_echo_destroy(tb_echo_t **e_p);

#endif /* TB_ECHO_H */
