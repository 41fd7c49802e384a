/* Unit tests of tb_curve: key files (comments, no key starting with '#', CRLF, one key only, a
 * secret readable by others), allowed-keys files, the public key of a secret, the allowed set and
 * the client check; no error message ever holds a secret key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "tb_curve.h"
#include "tb_errors.h"

static char s_dir[128];

static const char *s_write(const char *name, const char *text, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", s_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

static int setup(void **state)
{
    (void)state;
    snprintf(s_dir, sizeof(s_dir), "/tmp/tb-test-curve-%d", (int)getpid());
    mkdir(s_dir, 0700);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", s_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_key_files(void **state)
{
    (void)state;
    assert_true(tb_curve_is_available());
    char pub[TB_CURVE_KEY_SIZE], sec[TB_CURVE_KEY_SIZE], got[TB_CURVE_KEY_SIZE];
    char derived[TB_CURVE_KEY_SIZE], err[512], text[256];
    assert_int_equal(tb_curve_keypair(pub, sec), 0);
    assert_int_equal(tb_curve_public_of(sec, derived), 0);
    assert_string_equal(derived, pub);
    assert_int_equal(tb_curve_public_of("not a key", derived), TB_EINVAL);

    snprintf(text, sizeof(text), "# a comment\n\n  %s  \r\n", sec);
    const char *path = s_write("a.key", text, 0600);
    assert_int_equal(tb_curve_read_key_file(path, "secret key file", true, got, err, sizeof(err)),
                     0);
    assert_string_equal(got, sec);

    /* readable by others: refused with the fix, never the key */
    chmod(path, 0644);
    assert_int_not_equal(tb_curve_read_key_file(path, "secret key file", true, got, err,
                                                sizeof(err)),
                         0);
    assert_non_null(strstr(err, "chmod 600"));
    assert_null(strstr(err, sec));
    /* a public key file may be readable */
    assert_int_equal(tb_curve_read_key_file(path, "public key file", false, got, err,
                                            sizeof(err)),
                     0);

    snprintf(text, sizeof(text), "%s\n%s\n", sec, sec);
    path = s_write("two.key", text, 0600);
    assert_int_equal(tb_curve_read_key_file(path, "secret key file", true, got, err, sizeof(err)),
                     TB_EINVAL);
    assert_non_null(strstr(err, "more than one key (line 2)"));
    assert_null(strstr(err, sec));

    snprintf(text, sizeof(text), "# x\n%.39s\n", sec); /* one character short */
    path = s_write("short.key", text, 0600);
    assert_int_equal(tb_curve_read_key_file(path, "secret key file", true, got, err, sizeof(err)),
                     TB_EINVAL);
    assert_non_null(strstr(err, "line 2 is not a CURVE key"));
    assert_null(strstr(err, text + 4));

    path = s_write("empty.key", "# nothing\n", 0600);
    assert_int_equal(tb_curve_read_key_file(path, "secret key file", true, got, err, sizeof(err)),
                     TB_EINVAL);
    assert_non_null(strstr(err, "holds no key"));
    assert_int_equal(tb_curve_read_key_file("/nonexistent/k", "secret key file", true, got, err,
                                            sizeof(err)),
                     TB_EIO);
    assert_non_null(strstr(err, "/nonexistent/k"));
}

static void test_no_key_starts_with_hash(void **state)
{
    (void)state;
    /* why '#' lines can be comments: a key's first character encodes a 32-bit value / 85^4,
     * below 83, and '#' is the last of the 85 */
    char pub[TB_CURVE_KEY_SIZE], sec[TB_CURVE_KEY_SIZE];
    uint8_t bin[32];
    memset(bin, 0xff, sizeof(bin));
    assert_non_null(zmq_z85_encode(pub, bin, sizeof(bin)));
    assert_int_not_equal(pub[0], '#');
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(tb_curve_keypair(pub, sec), 0);
        assert_int_not_equal(pub[0], '#');
        assert_int_not_equal(sec[0], '#');
    }
}

static void test_allowed_and_client(void **state)
{
    (void)state;
    char pub[3][TB_CURVE_KEY_SIZE], sec[3][TB_CURVE_KEY_SIZE], err[512], text[512];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tb_curve_keypair(pub[i], sec[i]), 0);
    }
    snprintf(text, sizeof(text), "# deployment\n%s\n\n%s\n", pub[0], pub[1]);
    const char *allowed = strdup(s_write("allowed", text, 0644));
    char(*keys)[TB_CURVE_KEY_SIZE] = NULL;
    size_t n = 0;
    assert_int_equal(tb_curve_read_allowed(allowed, &keys, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(keys[1], pub[1]);
    free(keys);
    const char *bad = s_write("bad-allowed", "# x\nnot-a-key\n", 0644);
    assert_int_equal(tb_curve_read_allowed(bad, &keys, &n, err, sizeof(err)), TB_EINVAL);
    assert_non_null(strstr(err, "line 2"));
    assert_null(keys);
    const char *none = s_write("no-allowed", "# none\n", 0644);
    assert_int_equal(tb_curve_read_allowed(none, &keys, &n, err, sizeof(err)), TB_EINVAL);
    assert_non_null(strstr(err, "lists no key"));

    snprintf(text, sizeof(text), "%s\n", sec[0]);
    const char *secret = strdup(s_write("me.key", text, 0600));
    snprintf(text, sizeof(text), "%s\n", pub[1]);
    const char *wrong_pub = strdup(s_write("other.pub", text, 0644));
    void *ctx = zmq_ctx_new();
    tb_curve_t *c = NULL;
    struct tb_curve_config cfg = {.secret_key_file = secret,
                                  .public_key_file = wrong_pub,
                                  .allowed_keys_file = allowed};
    assert_int_equal(tb_curve_new(ctx, &cfg, &c, err, sizeof(err)), TB_EINVAL);
    assert_non_null(strstr(err, "does not hold the public key"));
    assert_null(strstr(err, sec[0]));
    cfg.public_key_file = NULL;
    assert_int_equal(tb_curve_new(ctx, &cfg, &c, err, sizeof(err)), 0);
    assert_string_equal(tb_curve_public_key(c), pub[0]);
    assert_true(tb_curve_is_allowed(c, pub[1]));
    assert_false(tb_curve_is_allowed(c, pub[2]));
    assert_false(tb_curve_is_allowed(c, "short"));
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    assert_int_equal(tb_curve_client(c, sock, pub[1], err, sizeof(err)), 0);
    assert_int_equal(tb_curve_client(c, sock, pub[2], err, sizeof(err)), TB_EINVAL);
    assert_non_null(strstr(err, "not in the allowed keys"));
    assert_int_equal(tb_curve_client(c, sock, NULL, err, sizeof(err)), TB_EINVAL);
    assert_non_null(strstr(err, "advertises no CURVE public key"));
    assert_true(tb_curve_applies("tcp://1.2.3.4:5"));
    assert_false(tb_curve_applies("ipc:///tmp/x"));
    assert_false(tb_curve_applies("inproc://x"));
    zmq_close(sock);
    tb_curve_destroy(&c);
    assert_null(c);
    tb_curve_destroy(&c); /* accepts NULL */
    zmq_ctx_term(ctx);
    free((void *)allowed);
    free((void *)secret);
    free((void *)wrong_pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_no_key_starts_with_hash),
        cmocka_unit_test(test_allowed_and_client),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
