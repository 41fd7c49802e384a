/* tb_keygen: `turbine keygen`, a CURVE key pair in two files (see tb_keygen.h). */
#include "tb_keygen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tb_curve.h"

static const char s_usage[] =
    "usage: turbine keygen PREFIX [--force]\n"
    "\n"
    "Makes a CURVE key pair for one process of a deployment whose tcp bus is authenticated and\n"
    "encrypted (bus.curve): PREFIX.key holds the secret key (mode 600: keep it on that host\n"
    "only) and PREFIX.pub the public key, the line to add to the allowed_keys_file of every\n"
    "process.  Existing files are kept unless --force.\n";

/* Writes `text` to `path` with `mode`; a new file unless `force`.  0, or -errno. */
static int s_write(const char *path, const char *text, mode_t mode, bool force)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
    if (fd < 0) {
        return -errno;
    }
    int rc = 0;
    size_t len = strlen(text);
    /* an existing file keeps its mode on open: set it, before the secret is written */
    if (fchmod(fd, mode) != 0 || write(fd, text, len) != (ssize_t)len) {
        rc = -errno;
    }
    if (close(fd) != 0 && rc == 0) {
        rc = -errno;
    }
    return rc;
}

int tb_keygen_main(int argc, char **argv)
{
    const char *prefix = NULL;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(s_usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--force") == 0) {
            force = true;
        } else if (argv[i][0] == '-' || prefix) {
            fprintf(stderr, "turbine keygen: unexpected argument '%s'\n%s", argv[i], s_usage);
            return 2;
        } else {
            prefix = argv[i];
        }
    }
    if (!prefix || !*prefix) {
        fprintf(stderr, "turbine keygen: expected a PREFIX\n%s", s_usage);
        return 2;
    }
    char key_path[4096], pub_path[4096];
    if ((size_t)snprintf(key_path, sizeof(key_path), "%s.key", prefix) >= sizeof(key_path) ||
        (size_t)snprintf(pub_path, sizeof(pub_path), "%s.pub", prefix) >= sizeof(pub_path)) {
        fprintf(stderr, "turbine keygen: PREFIX is too long\n");
        return 2;
    }
    struct stat st;
    if (!force && (stat(key_path, &st) == 0 || stat(pub_path, &st) == 0)) {
        fprintf(stderr,
                "turbine keygen: '%s' already exists: keeping it (--force replaces the pair; "
                "every process that allows the old public key must then be given the new one)\n",
                stat(key_path, &st) == 0 ? key_path : pub_path);
        return 2;
    }
    char pub[TB_CURVE_KEY_SIZE], secret[TB_CURVE_KEY_SIZE];
    if (tb_curve_keypair(pub, secret) != 0) {
        fprintf(stderr, "turbine keygen: this libzmq was built without CURVE (zmq_has(\"curve\") "
                        "is false): install a libzmq built with libsodium\n");
        return 1;
    }
    char text[256];
    snprintf(
        text, sizeof(text),
        "# turbine CURVE secret key: keep it private to this host (bus.curve.secret_key_file)"
        "\n%s\n",
        secret);
    int rc = s_write(key_path, text, 0600, force);
    explicit_bzero(text, sizeof(text));
    explicit_bzero(secret, sizeof(secret));
    if (rc != 0) {
        fprintf(stderr, "turbine keygen: cannot write '%s': %s\n", key_path, strerror(-rc));
        return rc == -EEXIST ? 2 : 1;
    }
    snprintf(text, sizeof(text),
             "# turbine CURVE public key: add this line to the allowed_keys_file of every process"
             "\n%s\n",
             pub);
    rc = s_write(pub_path, text, 0644, force);
    if (rc != 0) {
        fprintf(stderr, "turbine keygen: cannot write '%s': %s\n", pub_path, strerror(-rc));
        unlink(key_path);
        return rc == -EEXIST ? 2 : 1;
    }
    printf("wrote %s (secret key, mode 600) and %s (public key %s)\n", key_path, pub_path, pub);
    return 0;
}
