/* Fuzz target: every bus message decoder.  The first byte picks the message type; the rest is
 * decoded.  What decodes must re-encode, and the re-encoding must decode again.
 * FUZZ_SOURCES: schemas/tb_codec.c $BUILD/obj/schemas/tb_msgs_desc.c bus/tb_arena.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tb_buf.h"
#include "tb_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    tb_msg_type_t type = (tb_msg_type_t)(1 + data[0] % (TB_MSG__COUNT - 1));
    void *msg = NULL;
    char err[256];
    if (tb_codec_decode(type, data + 1, size - 1, &msg, err, sizeof(err)) != 0) {
        return 0;
    }
    struct tb_buf b = {0};
    if (tb_codec_encode(type, msg, &b) != 0) {
        abort(); /* a decoded message must always re-encode */
    }
    void *again = NULL;
    if (tb_codec_decode(type, b.data, b.len, &again, err, sizeof(err)) != 0) {
        abort();
    }
    tb_codec_free(&again);
    tb_codec_free(&msg);
    tb_buf_free(&b);
    return 0;
}
