/*
 * tb_curve.h - ZeroMQ CURVE on the bus's tcp sockets: the process's key pair, the public keys
 * it allows, and its guard, a thread that answers ZAP (inproc://zeromq.zap.01) and watches the
 * handshakes of every CURVE server socket.
 *
 * With CURVE every tcp socket the bus binds is a CURVE server with the process's secret key, and
 * every tcp socket it connects is a CURVE client with that same key pair and the server's public
 * key.  The guard accepts a client whose public key is in the allowed list and refuses any other,
 * and logs each refusal at warn with the peer's address (ZAP: a key not allowed; the watch: a
 * peer that does not speak CURVE, or one that does not know this server's key), at most a burst
 * of 10 lines and then one a second, with the count of those not logged.  ipc:// and inproc://
 * sockets never use CURVE.  docs/bus.md "Authentication and encryption (CURVE)".
 *
 * Key files hold one Z85 key (40 characters) on a line of its own; blank lines and lines that
 * start with '#' are ignored (no key starts with '#').  No function here ever writes secret key
 * material into a message.
 *
 * Thread-safety: tb_curve_server / tb_curve_client configure a socket the caller owns; every
 * other function may be called from any thread once tb_curve_new returned.
 */
#ifndef TB_CURVE_H
#define TB_CURVE_H

#include <stdbool.h>
#include <stddef.h>

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

/* A Z85 key: 40 characters, and room for the NUL. */
#define TB_CURVE_KEY_LEN 40
#define TB_CURVE_KEY_SIZE 41

typedef struct tb_curve tb_curve_t;

struct tb_curve_config {
    const char *secret_key_file;   /* required; must not be readable by group or others */
    const char *public_key_file;   /* optional: must hold the public key of the secret */
    const char *allowed_keys_file; /* required: the public keys of the peers allowed to connect */
    void *metrics;                 /* a tb_metrics_t for turbine_bus_refused_total, or NULL */
};

/* True when this libzmq was built with CURVE (zmq_has("curve")). */
bool tb_curve_is_available(void);

/* Makes a new key pair.  0, or TB_ENOTSUP without CURVE. */
int tb_curve_keypair(char public_key[TB_CURVE_KEY_SIZE], char secret_key[TB_CURVE_KEY_SIZE]);

/* Reads the one key of a key file into `key`; `what` names it in errors ("secret key file").
 * With `secret`, refuses a file that group or others may read.  0, or a negative code with why
 * in `err` (the path, the line, never the file's content). */
int tb_curve_read_key_file(const char *path, const char *what, bool secret,
                           char key[TB_CURVE_KEY_SIZE], char *err, size_t err_len);

/* Reads an allowed-keys file: one key per line.  On success *keys (malloc'ed array, caller
 * frees) holds *n keys (at least one).  0, or a negative code with why in `err`. */
int tb_curve_read_allowed(const char *path, char (**keys)[TB_CURVE_KEY_SIZE], size_t *n,
                          char *err, size_t err_len);

/* The public key of a secret key.  0, or TB_EINVAL when `secret_key` is not a Z85 key. */
int tb_curve_public_of(const char *secret_key, char public_key[TB_CURVE_KEY_SIZE]);

/* Reads the key files and starts the guard on `zctx` (before any socket of the context binds a
 * CURVE server: libzmq accepts every client while no ZAP handler is there).  On success *out is
 * owned by the caller: destroy it with tb_curve_destroy after every other socket of the context
 * is closed.  On failure a negative code and why in `err`. */
int tb_curve_new(void *zctx, const struct tb_curve_config *cfg, tb_curve_t **out, char *err,
                 size_t err_len);

/* Stops the guard and wipes the secret key.  Sets *curve_p to NULL; accepts NULL. */
void tb_curve_destroy(tb_curve_t **curve_p);

/* This process's public key (Z85). */
const char *tb_curve_public_key(const tb_curve_t *curve);

/* True when `key` (Z85) is one of the allowed keys. */
bool tb_curve_is_allowed(const tb_curve_t *curve, const char *key);

/* Makes `sock` a CURVE server and has the guard watch its handshakes.  Call before the socket
 * binds.  0, or a negative code with why in `err`. */
int tb_curve_server(tb_curve_t *curve, void *sock, char *err, size_t err_len);

/* Makes `sock` a CURVE client of the server whose public key is `server_key` (Z85), for the
 * connections made after this call.  0, or a negative code with why in `err` (TB_EINVAL when
 * `server_key` is not one of the allowed keys: this process talks only to peers it trusts). */
int tb_curve_client(const tb_curve_t *curve, void *sock, const char *server_key, char *err,
                    size_t err_len);

/* True when `addr` is a tcp:// address (the only transport CURVE applies to). */
bool tb_curve_applies(const char *addr);

#pragma GCC visibility pop

#endif /* TB_CURVE_H */
