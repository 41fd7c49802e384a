/*
 * tb_etcd_cli - drives the etcd client class (bus/tb_etcd.h) for tests/integration/test_etcd.py.
 *
 *   tb_etcd_cli ENDPOINTS put KEY VALUE          prints "created 1"
 *   tb_etcd_cli ENDPOINTS put-absent KEY VALUE   prints "created 1" or "created 0"
 *   tb_etcd_cli ENDPOINTS del KEY
 *   tb_etcd_cli ENDPOINTS list PREFIX            prints "KEY=VALUE" per key, then "revision N"
 *   tb_etcd_cli ENDPOINTS lease TTL KEY VALUE SECONDS [revoke]
 *        grants a lease, puts KEY with it (if absent), renews it every TTL/3 for SECONDS, printing
 *        "lease ID", "created N", "renewed TTL" and, when etcd forgot the lease, "expired"; then
 *        revokes it when asked
 *   tb_etcd_cli ENDPOINTS keepalive LEASE_HEX    prints "renewed TTL" or "expired"
 *   tb_etcd_cli ENDPOINTS watch PREFIX FROM_REV COUNT
 *        prints "put KEY=VALUE REV" / "delete KEY REV" per event until COUNT events, resuming
 *        from the last revision + 1 on any endpoint when the stream breaks ("resumed REV")
 *
 * ENDPOINTS is a comma-separated list of http://HOST:PORT.  Exit status 0, or 1 with the error
 * on stderr.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tb_errors.h"
#include "tb_etcd.h"

static int s_print_kv(void *ud, const struct tb_etcd_kv *kv)
{
    (void)ud;
    printf("%s=%.*s\n", kv->key, (int)kv->value_len, (const char *)kv->value);
    return 0;
}

struct s_watch_state {
    long left;
};

static int s_print_event(void *ud, enum tb_etcd_event_type type, const struct tb_etcd_kv *kv)
{
    struct s_watch_state *w = ud;
    if (type == TB_ETCD_EVENT_PUT)
        printf("put %s=%.*s %lld\n", kv->key, (int)kv->value_len, (const char *)kv->value,
               (long long)kv->mod_revision);
    else
        printf("delete %s %lld\n", kv->key, (long long)kv->mod_revision);
    fflush(stdout);
    return --w->left <= 0 ? 1 : 0;
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int s_lease(tb_etcd_t *e, char **argv, int argc, char *err, size_t err_len)
{
    int64_t id;
    int ttl;
    int rc = tb_etcd_lease_grant(e, atoi(argv[0]), &id, &ttl, err, err_len);
    if (rc != 0)
        return rc;
    printf("lease %llx\n", (unsigned long long)id);
    int created = 0;
    rc = tb_etcd_put(e, argv[1], argv[2], strlen(argv[2]), id, 1, &created, err, err_len);
    if (rc != 0)
        return rc;
    printf("created %d\n", created);
    fflush(stdout);
    double end = s_now() + atof(argv[3]);
    while (s_now() < end) {
        usleep((useconds_t)(ttl * 1000000 / 3));
        int left;
        rc = tb_etcd_lease_keepalive(e, id, &left, err, err_len);
        if (rc == TB_ENOENT) {
            printf("expired\n");
            return 0;
        }
        if (rc != 0)
            return rc;
        printf("renewed %d\n", left);
        fflush(stdout);
    }
    if (argc > 4 && strcmp(argv[4], "revoke") == 0)
        rc = tb_etcd_lease_revoke(e, id, err, err_len);
    return rc;
}

static int s_watch(tb_etcd_t *e, char **argv, char *err, size_t err_len)
{
    struct s_watch_state w = {.left = atol(argv[2])};
    int64_t last = atoll(argv[1]) - 1;
    atomic_int stop = 0;
    for (int tries = 0; tries < 50; tries++) {
        int rc = tb_etcd_watch(e, argv[0], last + 1, s_print_event, &w, &stop, &last, err,
                               err_len);
        if (rc == 1)
            return 0; /* COUNT events seen */
        if (rc != TB_EIO)
            return rc;
        usleep(200000); /* the endpoint went away: resume after the last event seen */
        printf("resumed %lld\n", (long long)last + 1);
        fflush(stdout);
    }
    return tb_err_fail(err, err_len, TB_EIO, "watch: gave up after 50 reconnects");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tb_etcd_cli ENDPOINTS COMMAND ARGS...\n");
        return 2;
    }
    const char *eps[16];
    size_t n = 0;
    for (char *s = strtok(argv[1], ","); s && n < 16; s = strtok(NULL, ","))
        eps[n++] = s;
    struct tb_etcd_config cfg = {.endpoints = eps, .n_endpoints = n, .timeout_ms = 2000};
    char err[512] = "";
    tb_etcd_t *e = NULL;
    int rc = tb_etcd_new(&cfg, &e, err, sizeof(err));
    const char *cmd = argv[2];
    char **a = argv + 3;
    int na = argc - 3;
    int created = 0;
    if (rc != 0) {
    } else if ((!strcmp(cmd, "put") || !strcmp(cmd, "put-absent")) && na == 2) {
        rc = tb_etcd_put(e, a[0], a[1], strlen(a[1]), 0, cmd[3] == '-', &created, err,
                         sizeof(err));
        if (rc == 0)
            printf("created %d\n", created);
    } else if (!strcmp(cmd, "del") && na == 1) {
        rc = tb_etcd_delete(e, a[0], err, sizeof(err));
    } else if (!strcmp(cmd, "list") && na == 1) {
        int64_t rev = 0;
        rc = tb_etcd_list(e, a[0], s_print_kv, NULL, &rev, err, sizeof(err));
        if (rc == 0)
            printf("revision %lld\n", (long long)rev);
    } else if (!strcmp(cmd, "lease") && na >= 4) {
        rc = s_lease(e, a, na, err, sizeof(err));
    } else if (!strcmp(cmd, "keepalive") && na == 1) {
        int left = 0;
        rc = tb_etcd_lease_keepalive(e, (int64_t)strtoull(a[0], NULL, 16), &left, err,
                                     sizeof(err));
        if (rc == 0)
            printf("renewed %d\n", left);
        else if (rc == TB_ENOENT)
            printf("expired\n");
        rc = rc == TB_ENOENT ? 0 : rc;
    } else if (!strcmp(cmd, "watch") && na == 3) {
        rc = s_watch(e, a, err, sizeof(err));
    } else {
        fprintf(stderr, "tb_etcd_cli: unknown command or wrong arguments: %s\n", cmd);
        tb_etcd_destroy(&e);
        return 2;
    }
    if (rc != 0)
        fprintf(stderr, "tb_etcd_cli: %s (%s)\n", err, tb_strerror(rc));
    tb_etcd_destroy(&e);
    return rc == 0 ? 0 : 1;
}
