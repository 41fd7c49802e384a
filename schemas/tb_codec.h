/*
 * tb_codec.h - the generic msgpack codec for every message in schemas/messages.yaml.
 *
 * The generator writes one field table per message (tb_msgs_desc.c); this codec walks the table
 * to encode a C struct as a msgpack map and to decode a map back into a struct.  Decoding never
 * trusts its input: wrong types, missing required fields, newer versions, truncated or malformed
 * msgpack and NUL bytes inside strings are refused with a message; a key the table does not know
 * is skipped (an optional field of a newer schema minor).
 *
 * Layouts: the generator also writes the tables of every older schema minor of this major
 * (tb_codec_layouts), whose structs are prefixes of today's.  The host decodes and encodes the
 * messages of a plugin built against schema 1.m with minor m's tables, so it never reads or writes
 * past the end of that plugin's structs nor strides its arrays wrongly.  A process pinned to an
 * older minor (TB_SCHEMA_MINOR in the environment, docs/bus.md) speaks exactly that minor: its
 * own messages are read and written with that minor's fields over today's structs.
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

/* The newest tables (this build's schema minor); NULL at ids no message has. */
extern const struct tb_msg_desc *const tb_msg_descs[TB_MSG__COUNT];

/* One schema minor's view of the messages: its tables and codec entry points with the signatures
 * of tb_host.msg_encode / msg_decode. */
struct tb_codec_layout {
    uint32_t minor;       /* schema TB_SCHEMA_MAJOR.minor */
    uint16_t abi_minor;   /* the plugin ABI minor that first carried it */
    uint64_t fingerprint; /* of schema major.minor (gen_msgs.py) */
    /* [TB_MSG__COUNT], NULL where the minor has none: the minor's fields over the minor's own
     * structs (prefixes of today's), for plugins built against it */
    const struct tb_msg_desc *const *descs;
    /* the minor's fields over today's structs: what tb_codec_encode / _decode use in a process
     * pinned to the minor, whose own code is compiled against today's structs */
    const struct tb_msg_desc *const *wire_descs;
    int (*encode)(tb_msg_type_t type, const void *msg, struct tb_buf *out);
    int (*decode)(tb_msg_type_t type, const void *data, size_t len, void **msg_out, char *err,
                  size_t err_len);
};

/* Index m: schema minor m, for m = 0 .. TB_SCHEMA_MINOR. */
extern const struct tb_codec_layout tb_codec_layouts[TB_SCHEMA_MINOR + 1];

/* The layout a plugin declaring ABI TB_ABI_MAJOR.abi_minor was built with: the newest schema minor
 * whose ABI minor is <= abi_minor (minor 0 for older plugins).  Never NULL. */
const struct tb_codec_layout *tb_codec_layout_for_abi(uint32_t abi_minor);

/* The schema minor this process speaks: TB_SCHEMA_MINOR, or the minor the environment variable
 * TB_SCHEMA_MINOR pins it to (read once; an invalid value is ignored here and refused by
 * tb_codec_schema_pin_check).  tb_codec_encode / tb_codec_decode use its layout. */
uint32_t tb_codec_schema_minor(void);

/* Fills `out` with the schema this process speaks (major, tb_codec_schema_minor(), fingerprint). */
void tb_codec_schema_self(struct tb_msg_schema_version *out);

/* 0 when TB_SCHEMA_MINOR is unset or names a minor of this build; else TB_EINVAL and why. */
int tb_codec_schema_pin_check(char *err, size_t err_len);

/* Whether a peer presenting schema major.minor with `fingerprint` can exchange messages with this
 * process (which speaks tb_codec_schema_minor()).  The newer side of the two judges: a peer whose
 * minor is not newer must present exactly the fingerprint this build computed for that minor (it
 * is then an ancestor: same messages, fewer optional fields); a newer peer is trusted to judge
 * and 0 is returned.  Otherwise TB_EPROTO and `err` names both schemas, both fingerprints and what
 * to upgrade. */
int tb_codec_check_peer(uint32_t major, uint32_t minor, uint64_t fingerprint, char *err,
                        size_t err_len);

/* tb_codec_check_peer on a received schema_version; NULL (a peer of schema 1.0, which predates
 * the fingerprint and sends none) is judged as schema 1.0 with this build's 1.0 fingerprint. */
int tb_codec_check_peer_schema(const struct tb_msg_schema_version *sv, char *err, size_t err_len);

/* Encode / decode with the tables `descs` (one layout's); tb_codec_encode / _decode below use the
 * process's layout. */
int tb_codec_encode_in(const struct tb_msg_desc *const *descs, tb_msg_type_t type,
                       const void *msg, struct tb_buf *out);
int tb_codec_decode_in(const struct tb_msg_desc *const *descs, tb_msg_type_t type,
                       const void *data, size_t len, void **msg_out, char *err, size_t err_len);

/* Largest message the codec decodes (bytes); larger input is refused with TB_EMSGSIZE. */
#define TB_CODEC_MAX_BYTES ((size_t)256 << 20)

/* Encodes `msg` (a struct tb_msg_<type>) as msgpack, appending to `out`.  0, TB_EINVAL (unknown
 * type or one the process's schema minor lacks, a required string missing, a NUL-free rule broken) or TB_ENOMEM. */
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
