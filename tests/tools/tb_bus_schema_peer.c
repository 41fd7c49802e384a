/* tb_bus_schema_peer: says hello to a registry as a process of a given message schema would, and
 * prints the registry's answer.  The integration tests use it as a peer whose schema cannot be
 * bridged (another major, or a minor whose fingerprint is not this build's), which a real build
 * of this tree cannot present.
 *
 *   tb_bus_schema_peer tcp://HOST:PORT MAJOR MINOR FINGERPRINT_HEX
 *
 * Exit status: 0 accepted, 1 refused (the registry's message printed), 2 no answer or bad use. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <zmq.h>

#include "tb_buf.h"
#include "tb_codec.h"
#include "tb_zmq.h"

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: tb_bus_schema_peer ADDR MAJOR MINOR FINGERPRINT_HEX\n");
        return 2;
    }
    struct tb_msg_schema_version sv = {.major = strtoll(argv[2], NULL, 10),
                                       .minor = strtoll(argv[3], NULL, 10),
                                       .fingerprint = strtoull(argv[4], NULL, 16)};
    struct tb_msg_reg_request q = {.op = "hello",
                                   .seq = 1,
                                   .process_id = "schema-peer",
                                   .remote = true,
                                   .has_remote = true,
                                   .schema = &sv};
    struct tb_buf buf = {0};
    int status = 2;
    void *ctx = zmq_ctx_new();
    void *dealer = ctx ? tb_zmq_socket(ctx, ZMQ_DEALER) : NULL;
    if (!dealer || zmq_connect(dealer, argv[1]) != 0 ||
        tb_codec_encode(TB_MSG_REG_REQUEST, &q, &buf) != 0) {
        fprintf(stderr, "cannot reach %s\n", argv[1]);
        goto out;
    }
    const void *parts[1] = {buf.data};
    size_t lens[1] = {buf.len};
    zmq_pollitem_t it = {dealer, 0, ZMQ_POLLIN, 0};
    if (tb_zmq_send(dealer, 1, parts, lens, 0) != 0 || zmq_poll(&it, 1, 5000) <= 0) {
        fprintf(stderr, "no answer from %s\n", argv[1]);
        goto out;
    }
    zmq_msg_t in[TB_ZMQ_MAX_PARTS];
    int n = 0;
    void *msg = NULL;
    char err[256] = "";
    if (tb_zmq_recv(dealer, in, TB_ZMQ_MAX_PARTS, &n, 0) == 0 && n == 1 &&
        tb_codec_decode(TB_MSG_REG_REPLY, zmq_msg_data(&in[0]), zmq_msg_size(&in[0]), &msg, err,
                        sizeof(err)) == 0) {
        const struct tb_msg_reg_reply *rep = msg;
        printf("code %lld: %s\n", (long long)rep->code, rep->message ? rep->message : "");
        status = rep->code == 0 ? 0 : 1;
        tb_codec_free(&msg);
    } else {
        fprintf(stderr, "unreadable answer: %s\n", err);
    }
    if (n > 0) {
        tb_zmq_close_parts(in, n > TB_ZMQ_MAX_PARTS ? TB_ZMQ_MAX_PARTS : n);
    }
out:
    tb_buf_free(&buf);
    if (dealer) {
        int zero = 0;
        zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_close(dealer);
    }
    if (ctx) {
        zmq_ctx_term(ctx);
    }
    return status;
}
