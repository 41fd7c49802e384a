/*
 * tb_etcd.h - a client of etcd v3 through its JSON gateway (HTTP + JSON, keys and values base64),
 * the building block of the etcd discovery backend.
 *
 * Debian ships no C client for etcd v3, so this speaks the gateway that every etcd v3 server
 * serves on its client port (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/grant`, `/v3/watch`, ...)
 * with libcurl; JSON through jansson and base64 through libsodium.
 *
 * A handle holds one list of endpoints (a cluster's client URLs) and talks to one of them at a
 * time: a request that cannot reach the current endpoint (connection refused, timeout, a 5xx
 * answer) is retried once on each of the others, in order, and the one that answered becomes
 * the current one.  (A put whose answer was lost may so be applied twice: harmless for a put, and
 * an `if_absent` put then reports "not created" for the key it created; compare the value.)
 * A watch's stream is never retried once it began: the caller resumes it.  A handle is used by one thread at a time; a watch blocks its caller and is
 * stopped from another thread with tb_etcd_watch_stop.
 *
 * Every function that can fail returns 0 or a negative TB_E* code and says why in `err`
 * (TB_EIO: no endpoint answered; TB_EPROTO: an answer that is not what the gateway sends;
 * TB_ENOENT: a lease etcd no longer knows).
 */
#ifndef TB_ETCD_H
#define TB_ETCD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(default)

typedef struct tb_etcd tb_etcd_t;

struct tb_etcd_config {
    const char *const *endpoints; /* "http://HOST:PORT", at least one; copied */
    size_t n_endpoints;
    int timeout_ms; /* per unary request and per connection attempt; > 0 */
};

/* One key as etcd holds it.  Borrowed: valid only during the callback that receives it. */
struct tb_etcd_kv {
    const char *key; /* NUL-terminated (keys are written by us: text) */
    const uint8_t *value;
    size_t value_len;
    int64_t mod_revision;
    int64_t lease; /* 0 when the key is not attached to a lease */
};

enum tb_etcd_event_type { TB_ETCD_EVENT_PUT, TB_ETCD_EVENT_DELETE };

/* Called per key listed; a non-zero return stops the listing and is returned by the caller. */
typedef int (*tb_etcd_kv_fn)(void *ud, const struct tb_etcd_kv *kv);
/* Called per watch event, in revision order; a non-zero return ends the watch. */
typedef int (*tb_etcd_event_fn)(void *ud, enum tb_etcd_event_type type,
                                const struct tb_etcd_kv *kv);

/* Caller owns *out (destroy with tb_etcd_destroy).  Contacts no server. */
int tb_etcd_new(const struct tb_etcd_config *cfg, tb_etcd_t **out, char *err, size_t err_len);
/* Sets *e_p to NULL; accepts NULL. */
void tb_etcd_destroy(tb_etcd_t **e_p);

/* The endpoint the last request went to (borrowed, valid until the next request). */
const char *tb_etcd_endpoint(const tb_etcd_t *e);

/* A lease of `ttl_s` seconds; *id receives its id, *granted_ttl_s what etcd granted. */
int tb_etcd_lease_grant(tb_etcd_t *e, int ttl_s, int64_t *id, int *granted_ttl_s, char *err,
                        size_t err_len);
/* Renews the lease once.  *ttl_left_s receives the TTL etcd restarted it with.  A lease etcd no
 * longer knows (it expired) is TB_ENOENT: the caller grants a new one and registers again. */
int tb_etcd_lease_keepalive(tb_etcd_t *e, int64_t id, int *ttl_left_s, char *err, size_t err_len);
/* Revokes the lease, deleting every key attached to it. */
int tb_etcd_lease_revoke(tb_etcd_t *e, int64_t id, char *err, size_t err_len);

/* Writes key = value, attached to `lease` (0: none).  With `if_absent`, only when the key does
 * not exist (a transaction comparing its create revision with 0): *created says whether it was
 * written (a key that exists is not an error).  `created` may be NULL. */
int tb_etcd_put(tb_etcd_t *e, const char *key, const void *value, size_t value_len, int64_t lease,
                int if_absent, int *created, char *err, size_t err_len);
/* Deletes one key (absent: not an error). */
int tb_etcd_delete(tb_etcd_t *e, const char *key, char *err, size_t err_len);
/* Lists every key that starts with `prefix`, in key order; *revision (may be NULL) receives the
 * store revision the listing was taken at, where a watch resumes from (revision + 1). */
int tb_etcd_list(tb_etcd_t *e, const char *prefix, tb_etcd_kv_fn fn, void *ud, int64_t *revision,
                 char *err, size_t err_len);

/* Watches every key under `prefix` from `start_revision` (0: from now), calling `fn` per event,
 * blocking until `fn` returns non-zero (returned), *stop becomes non-zero (0), or the stream
 * ends (TB_EIO, e.g. the endpoint died: resume from *last_revision + 1 on any endpoint).
 * *last_revision receives the revision of the last event delivered (unchanged when none).  When
 * etcd has compacted past `start_revision` the watch fails with TB_ERANGE: list again. */
int tb_etcd_watch(tb_etcd_t *e, const char *prefix, int64_t start_revision, tb_etcd_event_fn fn,
                  void *ud, const atomic_int *stop, int64_t *last_revision, char *err,
                  size_t err_len);

#pragma GCC visibility pop

#endif /* TB_ETCD_H */
