/*
 * tb_codec.h - the generic msgpack codec for every message in schemas/messages.yaml.
 *
 * The generator writes one field table per message (tb_msgs_desc.c); this codec walks the table
 * to encode a C struct as a msgpack map and to decode a map back into a struct.  Decoding never
 * trusts its input: wrong types, unknown keys, missing required fields, newer versions, truncated
 * or malformed msgpack and NUL bytes inside strings are refused with a message.
 */
#ifndef TB_CODEC_H
#define TB_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_msgs.h"
#include "tb_plugin.h"

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

typedef enum {
    TB_FT_BOOL = 1,
    TB_FT_I64,
    TB_FT_U64,
    TB_FT_F64,
    TB_FT_STR,
    TB_FT_BIN,
    TB_FT_I32_ARR,
    TB_FT_U64_ARR,
    TB_FT_F64_ARR,
    TB_FT_STR_ARR,
    TB_FT_MSG,
    TB_FT_MSG_ARR,
} tb_field_type_t;

struct tb_msg_desc;

struct tb_field_desc {
    const char *name;
    uint8_t name_len;
    tb_field_type_t type;
    bool required;
    size_t offset;     /* of the value (or pointer) */
    size_t aux_offset; /* has_ flag of optional scalars; length/count of bin and arrays; else 0 */
    const struct tb_msg_desc *sub; /* nested message type */
};

struct tb_msg_desc {
    const char *name;
    uint32_t version;
    size_t size;
    const struct tb_field_desc *fields;
    size_t n_fields;
};

extern const struct tb_msg_desc *const tb_msg_descs[TB_MSG__COUNT];

/* Largest message the codec decodes (bytes); larger input is refused with TB_EMSGSIZE. */
#define TB_CODEC_MAX_BYTES ((size_t)256 << 20)

/* Encodes `msg` (a struct tb_msg_<type>) as msgpack, appending to `out`.  0, TB_EINVAL (unknown
 * type, a required string missing, a NUL-free rule broken) or TB_ENOMEM. */
int tb_codec_encode(tb_msg_type_t type, const void *msg, struct tb_buf *out);

/* Decodes `len` bytes as a message of `type`.  On success *msg_out is one allocation the caller
 * owns (free with tb_codec_free); on failure *msg_out is NULL, the return is TB_EPROTO (bad
 * input), TB_EMSGSIZE or TB_ENOMEM, and `err` (may be NULL) says why. */
int tb_codec_decode(tb_msg_type_t type, const void *data, size_t len, void **msg_out, char *err,
                    size_t err_len);

/* Frees a decoded message; sets *msg_p to NULL; accepts NULL. */
void tb_codec_free(void **msg_p);

/* The type's name ("gen_request"), or "?" when unknown. */
const char *tb_codec_type_name(tb_msg_type_t type);

#pragma GCC visibility pop

#endif /* TB_CODEC_H */
