/* tb_codec: table-driven msgpack encoding and decoding of the bus messages (see tb_codec.h). */
#include "tb_codec.h"

#include <inttypes.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_arena.h"
#include "tb_buf.h"

/* ------------------------------------------------------------------------------------------- */
/* Encoding */

/* msgpack's writer: called for every header and value (about 40 times for a gen_request), each
 * a few bytes, so the common case (room already there) stays inline. */
static int s_write(void *data, const char *buf, size_t len)
{
    struct tb_buf *b = data;
    if (b->cap - b->len > len) { /* room for the bytes and the NUL (cap is 0 without data) */
        memcpy(b->data + b->len, buf, len);
        b->len += len;
        b->data[b->len] = 0;
        return 0;
    }
    return tb_buf_append(b, buf, len) == 0 ? 0 : -1;
}

#define AT(base, off, type) ((type *)((const uint8_t *)(base) + (off)))

static bool s_field_present(const struct tb_field_desc *f, const void *msg)
{
    switch (f->type) {
    case TB_FT_BOOL:
    case TB_FT_I64:
    case TB_FT_U64:
    case TB_FT_F64:
        return f->required || *AT(msg, f->aux_offset, const bool);
    case TB_FT_STR:
    case TB_FT_MSG:
        return *AT(msg, f->offset, const void *const) != NULL;
    case TB_FT_BIN:
        return *AT(msg, f->offset, const void *const) != NULL;
    default:
        return *AT(msg, f->aux_offset, const size_t) > 0;
    }
}

static int s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    if (msgpack_pack_str(pk, n) != 0 || msgpack_pack_str_body(pk, s, n) != 0) {
        return TB_ENOMEM;
    }
    return 0;
}

static int s_encode(const struct tb_msg_desc *d, const void *msg, msgpack_packer *pk, int depth)
{
    if (depth > 8) {
        return TB_EINVAL;
    }
    size_t n = 1;
    for (size_t i = 0; i < d->n_fields; i++) {
        const struct tb_field_desc *f = &d->fields[i];
        if (s_field_present(f, msg)) {
            n++;
        } else if (f->required) {
            return TB_EINVAL; /* a required string or message is missing */
        }
    }
    int rc = 0;
    if (msgpack_pack_map(pk, n) != 0 || s_pack_str(pk, "v") != 0 ||
        msgpack_pack_uint32(pk, d->version) != 0) {
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < d->n_fields && rc == 0; i++) {
        const struct tb_field_desc *f = &d->fields[i];
        if (!s_field_present(f, msg)) {
            continue;
        }
        if (msgpack_pack_str(pk, f->name_len) != 0 ||
            msgpack_pack_str_body(pk, f->name, f->name_len) != 0) {
            return TB_ENOMEM;
        }
        bool counted = f->type == TB_FT_BIN || f->type == TB_FT_I32_ARR ||
                       f->type == TB_FT_U64_ARR || f->type == TB_FT_F64_ARR ||
                       f->type == TB_FT_STR_ARR || f->type == TB_FT_MSG_ARR;
        size_t count = counted ? *AT(msg, f->aux_offset, const size_t) : 0;
        switch (f->type) {
        case TB_FT_BOOL:
            rc = *AT(msg, f->offset, const bool) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
            break;
        case TB_FT_I64:
            rc = msgpack_pack_int64(pk, *AT(msg, f->offset, const int64_t));
            break;
        case TB_FT_U64:
            rc = msgpack_pack_uint64(pk, *AT(msg, f->offset, const uint64_t));
            break;
        case TB_FT_F64:
            rc = msgpack_pack_double(pk, *AT(msg, f->offset, const double));
            break;
        case TB_FT_STR:
            rc = s_pack_str(pk, *AT(msg, f->offset, const char *const));
            break;
        case TB_FT_BIN: {
            const void *p = *AT(msg, f->offset, const void *const);
            rc = msgpack_pack_bin(pk, count) || msgpack_pack_bin_body(pk, p, count);
            break;
        }
        case TB_FT_I32_ARR: {
            const int32_t *a = *AT(msg, f->offset, const int32_t *const);
            rc = msgpack_pack_array(pk, count);
            for (size_t k = 0; k < count && rc == 0; k++) {
                rc = msgpack_pack_int32(pk, a[k]);
            }
            break;
        }
        case TB_FT_U64_ARR: {
            const uint64_t *a = *AT(msg, f->offset, const uint64_t *const);
            rc = msgpack_pack_array(pk, count);
            for (size_t k = 0; k < count && rc == 0; k++) {
                rc = msgpack_pack_uint64(pk, a[k]);
            }
            break;
        }
        case TB_FT_F64_ARR: {
            const double *a = *AT(msg, f->offset, const double *const);
            rc = msgpack_pack_array(pk, count);
            for (size_t k = 0; k < count && rc == 0; k++) {
                rc = msgpack_pack_double(pk, a[k]);
            }
            break;
        }
        case TB_FT_STR_ARR: {
            const char *const *a = *AT(msg, f->offset, const char *const *const);
            rc = msgpack_pack_array(pk, count);
            for (size_t k = 0; k < count && rc == 0; k++) {
                rc = a[k] ? s_pack_str(pk, a[k]) : TB_EINVAL;
            }
            break;
        }
        case TB_FT_MSG:
            rc = s_encode(f->sub, *AT(msg, f->offset, const void *const), pk, depth + 1);
            break;
        case TB_FT_MSG_ARR: {
            const uint8_t *a = *AT(msg, f->offset, const uint8_t *const);
            rc = msgpack_pack_array(pk, count);
            for (size_t k = 0; k < count && rc == 0; k++) {
                rc = s_encode(f->sub, a + k * f->sub->size, pk, depth + 1);
            }
            break;
        }
        }
        if (rc > 0) {
            rc = TB_ENOMEM;
        }
    }
    return rc;
}

int tb_codec_encode_in(const struct tb_msg_desc *const *descs, tb_msg_type_t type,
                       const void *msg, struct tb_buf *out)
{
    if ((int)type <= 0 || type >= TB_MSG__COUNT || !descs[type] || !msg) {
        return TB_EINVAL;
    }
    size_t mark = out->len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, s_write);
    int rc = s_encode(descs[type], msg, &pk, 0);
    if (rc != 0) {
        out->len = mark; /* leave the buffer as it was */
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* Decoding */

struct dec {
    tb_arena_t *arena;
    char *err;
    size_t err_len;
};

static int s_fail(struct dec *d, const char *fmt, ...) TB_PRINTF(2, 3);

static int s_fail(struct dec *d, const char *fmt, ...)
{
    if (d->err && d->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err, d->err_len, fmt, ap);
        va_end(ap);
    }
    return TB_EPROTO;
}

static bool s_get_i64(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX) {
            return false;
        }
        *v = (int64_t)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return true;
    }
    return false;
}

static int s_str(struct dec *d, const msgpack_object *o, const char *name, const char **out)
{
    if (o->type != MSGPACK_OBJECT_STR) {
        return s_fail(d, "field '%s': expected a string", name);
    }
    if (memchr(o->via.str.ptr, 0, o->via.str.size)) {
        return s_fail(d, "field '%s': string contains a NUL byte", name);
    }
    char *s = tb_arena_strndup(d->arena, o->via.str.ptr, o->via.str.size);
    if (!s) {
        return TB_ENOMEM;
    }
    *out = s;
    return 0;
}

static int s_decode(struct dec *d, const struct tb_msg_desc *md, const msgpack_object *o,
                    void *msg, int depth);

static int s_field(struct dec *d, const struct tb_field_desc *f, const msgpack_object *v,
                   void *msg, int depth)
{
    int64_t i;
    switch (f->type) {
    case TB_FT_BOOL:
        if (v->type != MSGPACK_OBJECT_BOOLEAN) {
            return s_fail(d, "field '%s': expected a boolean", f->name);
        }
        *AT(msg, f->offset, bool) = v->via.boolean;
        break;
    case TB_FT_I64:
        if (!s_get_i64(v, &i)) {
            return s_fail(d, "field '%s': expected a signed 64-bit integer", f->name);
        }
        *AT(msg, f->offset, int64_t) = i;
        break;
    case TB_FT_U64:
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            return s_fail(d, "field '%s': expected an unsigned integer", f->name);
        }
        *AT(msg, f->offset, uint64_t) = v->via.u64;
        break;
    case TB_FT_F64:
        if (v->type == MSGPACK_OBJECT_FLOAT64 || v->type == MSGPACK_OBJECT_FLOAT32) {
            *AT(msg, f->offset, double) = v->via.f64;
        } else if (s_get_i64(v, &i)) {
            *AT(msg, f->offset, double) = (double)i;
        } else {
            return s_fail(d, "field '%s': expected a number", f->name);
        }
        break;
    case TB_FT_STR:
        return s_str(d, v, f->name, AT(msg, f->offset, const char *));
    case TB_FT_BIN: {
        if (v->type != MSGPACK_OBJECT_BIN) {
            return s_fail(d, "field '%s': expected bytes", f->name);
        }
        uint8_t *p = tb_arena_alloc(d->arena, v->via.bin.size);
        if (!p) {
            return TB_ENOMEM;
        }
        memcpy(p, v->via.bin.ptr, v->via.bin.size);
        *AT(msg, f->offset, const uint8_t *) = p;
        *AT(msg, f->aux_offset, size_t) = v->via.bin.size;
        break;
    }
    case TB_FT_I32_ARR:
    case TB_FT_U64_ARR:
    case TB_FT_F64_ARR:
    case TB_FT_STR_ARR:
    case TB_FT_MSG_ARR: {
        if (v->type != MSGPACK_OBJECT_ARRAY) {
            return s_fail(d, "field '%s': expected an array", f->name);
        }
        size_t n = v->via.array.size;
        size_t esz = f->type == TB_FT_I32_ARR   ? sizeof(int32_t)
                     : f->type == TB_FT_U64_ARR ? sizeof(uint64_t)
                     : f->type == TB_FT_F64_ARR ? sizeof(double)
                     : f->type == TB_FT_STR_ARR ? sizeof(char *)
                                                : f->sub->size;
        uint8_t *a = tb_arena_alloc(d->arena, n * esz);
        if (!a) {
            return TB_ENOMEM;
        }
        for (size_t k = 0; k < n; k++) {
            const msgpack_object *e = &v->via.array.ptr[k];
            int rc = 0;
            if (f->type == TB_FT_I32_ARR) {
                if (!s_get_i64(e, &i) || i < INT32_MIN || i > INT32_MAX) {
                    return s_fail(d, "field '%s'[%zu]: expected a 32-bit integer", f->name, k);
                }
                ((int32_t *)a)[k] = (int32_t)i;
            } else if (f->type == TB_FT_U64_ARR) {
                if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
                    return s_fail(d, "field '%s'[%zu]: expected an unsigned integer", f->name, k);
                }
                ((uint64_t *)a)[k] = e->via.u64;
            } else if (f->type == TB_FT_F64_ARR) {
                if (e->type == MSGPACK_OBJECT_FLOAT64 || e->type == MSGPACK_OBJECT_FLOAT32) {
                    ((double *)a)[k] = e->via.f64;
                } else if (s_get_i64(e, &i)) {
                    ((double *)a)[k] = (double)i;
                } else {
                    return s_fail(d, "field '%s'[%zu]: expected a number", f->name, k);
                }
            } else if (f->type == TB_FT_STR_ARR) {
                rc = s_str(d, e, f->name, &((const char **)a)[k]);
            } else {
                rc = s_decode(d, f->sub, e, a + k * esz, depth + 1);
            }
            if (rc != 0) {
                return rc;
            }
        }
        *AT(msg, f->offset, void *) = a;
        *AT(msg, f->aux_offset, size_t) = n;
        break;
    }
    case TB_FT_MSG: {
        void *sub = tb_arena_alloc(d->arena, f->sub->size);
        if (!sub) {
            return TB_ENOMEM;
        }
        int rc = s_decode(d, f->sub, v, sub, depth + 1);
        if (rc != 0) {
            return rc;
        }
        *AT(msg, f->offset, void *) = sub;
        break;
    }
    }
    if (f->aux_offset && (f->type == TB_FT_BOOL || f->type == TB_FT_I64 || f->type == TB_FT_U64 ||
                          f->type == TB_FT_F64)) {
        *AT(msg, f->aux_offset, bool) = true;
    }
    return 0;
}

static int s_decode(struct dec *d, const struct tb_msg_desc *md, const msgpack_object *o,
                    void *msg, int depth)
{
    if (depth > 8) {
        return s_fail(d, "message '%s': nested too deeply", md->name);
    }
    if (o->type != MSGPACK_OBJECT_MAP) {
        return s_fail(d, "message '%s': expected a map", md->name);
    }
    uint64_t seen = 0; /* bit per field index (messages have at most 64 fields) */
    bool have_version = false;
    for (uint32_t k = 0; k < o->via.map.size; k++) {
        const msgpack_object *key = &o->via.map.ptr[k].key;
        const msgpack_object *val = &o->via.map.ptr[k].val;
        if (key->type != MSGPACK_OBJECT_STR) {
            return s_fail(d, "message '%s': a key is not a string", md->name);
        }
        const char *kp = key->via.str.ptr;
        uint32_t kn = key->via.str.size;
        if (kn == 1 && kp[0] == 'v') {
            if (val->type != MSGPACK_OBJECT_POSITIVE_INTEGER || val->via.u64 == 0) {
                return s_fail(d, "message '%s': bad version", md->name);
            }
            if (val->via.u64 > md->version) {
                return s_fail(d,
                              "message '%s' is version %llu, newer than version %u that this "
                              "process (schema %d.%u) knows: upgrade it to a build that knows "
                              "%s version %llu",
                              md->name, (unsigned long long)val->via.u64, md->version,
                              TB_SCHEMA_MAJOR, tb_codec_schema_minor(), md->name,
                              (unsigned long long)val->via.u64);
            }
            have_version = true;
            continue;
        }
        size_t fi = md->n_fields;
        for (size_t j = 0; j < md->n_fields; j++) {
            if (md->fields[j].name_len == kn && memcmp(md->fields[j].name, kp, kn) == 0) {
                fi = j;
                break;
            }
        }
        if (fi == md->n_fields) {
            continue; /* an optional field of a newer minor: skip it (docs/bus.md) */
        }
        if (seen & ((uint64_t)1 << fi)) {
            return s_fail(d, "message '%s': field '%s' appears twice", md->name,
                          md->fields[fi].name);
        }
        seen |= (uint64_t)1 << fi;
        if (val->type == MSGPACK_OBJECT_NIL) {
            continue; /* nil means absent */
        }
        int rc = s_field(d, &md->fields[fi], val, msg, depth);
        if (rc != 0) {
            return rc;
        }
    }
    if (!have_version) {
        return s_fail(d, "message '%s': no version", md->name);
    }
    for (size_t j = 0; j < md->n_fields; j++) {
        const struct tb_field_desc *f = &md->fields[j];
        if (f->required && !(seen & ((uint64_t)1 << j))) {
            return s_fail(d, "message '%s': required field '%s' is missing", md->name, f->name);
        }
        if (f->required && (f->type == TB_FT_STR || f->type == TB_FT_MSG) &&
            *AT(msg, f->offset, void *) == NULL) {
            return s_fail(d, "message '%s': required field '%s' is nil", md->name, f->name);
        }
    }
    return 0;
}

/* msgpack-c allocates an array's or map's storage from its declared count before reading the
 * elements, so a 5-byte message can ask for gigabytes.  This walk checks, without allocating, that
 * every declared count fits in the bytes that remain (each element needs at least one byte) and
 * that the nesting stays shallow; only then is the input handed to msgpack-c. */
static bool s_counts_plausible(const uint8_t *p, size_t len)
{
    size_t pos = 0;
    uint64_t pending = 1; /* items still to read */
    while (pending > 0) {
        if (pos >= len) {
            return true; /* truncated: msgpack-c reports it */
        }
        uint8_t b = p[pos++];
        pending--;
        uint64_t n = 0;     /* payload bytes to skip */
        uint64_t items = 0; /* child items to add */
        size_t hdr = 0;     /* bytes of the big-endian length that follows */
        int kind = 0;       /* 0 payload, 1 array, 2 map */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            continue;
        } else if ((b & 0xf0) == 0x80) {
            items = 2u * (b & 0x0f);
            kind = 2;
        } else if ((b & 0xf0) == 0x90) {
            items = b & 0x0f;
            kind = 1;
        } else if ((b & 0xe0) == 0xa0) {
            n = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4:
            case 0xd9:
                hdr = 1;
                break; /* bin8, str8 */
            case 0xc5:
            case 0xda:
                hdr = 2;
                break; /* bin16, str16 */
            case 0xc6:
            case 0xdb:
                hdr = 4;
                break; /* bin32, str32 */
            case 0xc7:
                hdr = 1;
                n = 1;
                break; /* ext8 (+type) */
            case 0xc8:
                hdr = 2;
                n = 1;
                break;
            case 0xc9:
                hdr = 4;
                n = 1;
                break;
            case 0xca:
                n = 4;
                break;
            case 0xcb:
                n = 8;
                break;
            case 0xcc:
            case 0xd0:
                n = 1;
                break;
            case 0xcd:
            case 0xd1:
                n = 2;
                break;
            case 0xce:
            case 0xd2:
                n = 4;
                break;
            case 0xcf:
            case 0xd3:
                n = 8;
                break;
            case 0xd4:
                n = 2;
                break; /* fixext 1..16 (+type) */
            case 0xd5:
                n = 3;
                break;
            case 0xd6:
                n = 5;
                break;
            case 0xd7:
                n = 9;
                break;
            case 0xd8:
                n = 17;
                break;
            case 0xdc:
                hdr = 2;
                kind = 1;
                break; /* array16 */
            case 0xdd:
                hdr = 4;
                kind = 1;
                break; /* array32 */
            case 0xde:
                hdr = 2;
                kind = 2;
                break; /* map16 */
            case 0xdf:
                hdr = 4;
                kind = 2;
                break; /* map32 */
            default:
                return true; /* 0xc1: msgpack-c refuses it */
            }
        }
        if (hdr) {
            if (len - pos < hdr) {
                return true;
            }
            uint64_t v = 0;
            for (size_t k = 0; k < hdr; k++) {
                v = (v << 8) | p[pos + k];
            }
            pos += hdr;
            if (kind == 1) {
                items = v;
            } else if (kind == 2) {
                items = 2 * v;
            } else {
                n += v;
            }
        }
        if (items > len - pos || n > len - pos) {
            return false;
        }
        pos += n;
        pending += items;
        if (pending > len - pos + 1) {
            return false;
        }
    }
    return true;
}

/* Each thread decodes into one msgpack zone of its own, cleared after every message, rather than
 * a zone allocated and freed per message (msgpack_unpack_next's way): a malloc and a free of
 * MSGPACK_ZONE_CHUNK_SIZE less per message.  The zone goes with the thread (a key destructor). */
static pthread_key_t s_zone_key;
static pthread_once_t s_zone_once = PTHREAD_ONCE_INIT;
static bool s_zone_key_ok;

static void s_zone_free(void *z)
{
    msgpack_zone_free(z);
}

static void s_zone_key_init(void)
{
    s_zone_key_ok = pthread_key_create(&s_zone_key, s_zone_free) == 0;
}

/* The thread's zone (*own false) or, without one, a new zone the caller frees (*own true). */
static msgpack_zone *s_zone_get(bool *own)
{
    pthread_once(&s_zone_once, s_zone_key_init);
    msgpack_zone *z = s_zone_key_ok ? pthread_getspecific(s_zone_key) : NULL;
    *own = false;
    if (z) {
        return z;
    }
    z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    if (z && (!s_zone_key_ok || pthread_setspecific(s_zone_key, z) != 0)) {
        *own = true;
    }
    return z;
}

static void s_zone_put(msgpack_zone *z, bool own)
{
    if (own) {
        msgpack_zone_free(z);
    } else if (z) {
        msgpack_zone_clear(z);
    }
}

int tb_codec_decode_in(const struct tb_msg_desc *const *descs, tb_msg_type_t type,
                       const void *data, size_t len, void **msg_out, char *err, size_t err_len)
{
    struct dec d = {.err = err, .err_len = err_len};
    msgpack_object obj;
    msgpack_zone *zone = NULL;
    bool own_zone = false;
    int rc = 0;
    *msg_out = NULL;
    if (err && err_len) {
        err[0] = 0;
    }
    if ((int)type <= 0 || type >= TB_MSG__COUNT || !descs[type]) {
        s_fail(&d, "unknown message type %d", (int)type);
        return TB_EINVAL;
    }
    if (len > TB_CODEC_MAX_BYTES) {
        s_fail(&d, "message of %zu bytes is larger than the %zu allowed", len,
               TB_CODEC_MAX_BYTES);
        return TB_EMSGSIZE;
    }
    const struct tb_msg_desc *md = descs[type];
    zone = s_zone_get(&own_zone);
    if (!zone) {
        s_fail(&d, "out of memory for message '%s'", md->name);
        return TB_ENOMEM;
    }
    if (!s_counts_plausible(data, len)) {
        rc = s_fail(&d, "message '%s': a declared length exceeds the input", md->name);
        goto out_unpacked;
    }
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(data, len, &off, zone, &obj);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
        rc = TB_ENOMEM;
        goto out_unpacked;
    }
    if (ur == MSGPACK_UNPACK_CONTINUE) {
        rc = s_fail(&d, "message '%s': truncated msgpack", md->name);
        goto out_unpacked;
    }
    if (ur != MSGPACK_UNPACK_SUCCESS && ur != MSGPACK_UNPACK_EXTRA_BYTES) {
        rc = s_fail(&d, "message '%s': malformed msgpack", md->name);
        goto out_unpacked;
    }
    if (ur == MSGPACK_UNPACK_EXTRA_BYTES || off != len) {
        rc = s_fail(&d, "message '%s': %zu trailing bytes", md->name, len - off);
        goto out_unpacked;
    }
    d.arena = tb_arena_new(len * 2 + 256 > 4096 ? 4096 : len * 2 + 256);
    if (!d.arena) {
        rc = TB_ENOMEM;
        goto out_unpacked;
    }
    /* The arena pointer sits just before the message so tb_codec_free can find it. */
    tb_arena_t **slot = tb_arena_alloc(d.arena, 16 + md->size);
    if (!slot) {
        rc = TB_ENOMEM;
        goto out_arena;
    }
    *slot = d.arena;
    void *msg = (uint8_t *)slot + 16;
    rc = s_decode(&d, md, &obj, msg, 0);
    if (rc != 0) {
        goto out_arena;
    }
    *msg_out = msg;
    s_zone_put(zone, own_zone);
    return 0;

out_arena:
    tb_arena_destroy(&d.arena);
out_unpacked:
    s_zone_put(zone, own_zone);
    return rc;
}

int tb_codec_encode(tb_msg_type_t type, const void *msg, struct tb_buf *out)
{
    return tb_codec_encode_in(tb_codec_layouts[tb_codec_schema_minor()].wire_descs, type, msg,
                              out);
}

int tb_codec_decode(tb_msg_type_t type, const void *data, size_t len, void **msg_out, char *err,
                    size_t err_len)
{
    return tb_codec_decode_in(tb_codec_layouts[tb_codec_schema_minor()].wire_descs, type, data,
                              len, msg_out, err, err_len);
}

void tb_codec_free(void **msg_p)
{
    if (!msg_p || !*msg_p) {
        return;
    }
    tb_arena_t *arena = *(tb_arena_t **)((uint8_t *)*msg_p - 16);
    tb_arena_destroy(&arena);
    *msg_p = NULL;
}

const char *tb_codec_type_name(tb_msg_type_t type)
{
    if ((int)type <= 0 || type >= TB_MSG__COUNT || !tb_msg_descs[type]) {
        return "?";
    }
    return tb_msg_descs[type]->name;
}

/* ------------------------------------------------------------------------------------------- */
/* Schema versions */

const struct tb_codec_layout *tb_codec_layout_for_abi(uint32_t abi_minor)
{
    const struct tb_codec_layout *l = &tb_codec_layouts[0];
    for (uint32_t m = 1; m <= TB_SCHEMA_MINOR; m++) {
        if (tb_codec_layouts[m].abi_minor <= abi_minor) {
            l = &tb_codec_layouts[m];
        }
    }
    return l;
}

/* The pin is the environment's, fixed for the process's life: read once, then only read. */
static pthread_once_t s_pin_once = PTHREAD_ONCE_INIT;
static uint32_t s_pin_minor = TB_SCHEMA_MINOR;
static bool s_pin_bad;

static void s_read_pin(void)
{
    const char *v = getenv("TB_SCHEMA_MINOR");
    if (!v || !*v) {
        return;
    }
    char *end = NULL;
    unsigned long m = strtoul(v, &end, 10);
    if (*end || v[0] == '-' || m > TB_SCHEMA_MINOR) {
        s_pin_bad = true;
        return;
    }
    s_pin_minor = (uint32_t)m;
}

uint32_t tb_codec_schema_minor(void)
{
    pthread_once(&s_pin_once, s_read_pin);
    return s_pin_minor;
}

void tb_codec_schema_self(struct tb_msg_schema_version *out)
{
    uint32_t m = tb_codec_schema_minor();
    *out = (struct tb_msg_schema_version){.major = TB_SCHEMA_MAJOR,
                                          .minor = m,
                                          .fingerprint = tb_codec_layouts[m].fingerprint};
}

int tb_codec_schema_pin_check(char *err, size_t err_len)
{
    pthread_once(&s_pin_once, s_read_pin);
    if (s_pin_bad) {
        snprintf(err, err_len,
                 "TB_SCHEMA_MINOR='%s' is not a schema minor of this build (%d.0 to %d.%d)",
                 getenv("TB_SCHEMA_MINOR"), TB_SCHEMA_MAJOR, TB_SCHEMA_MAJOR, TB_SCHEMA_MINOR);
        return TB_EINVAL;
    }
    return 0;
}

int tb_codec_check_peer(uint32_t major, uint32_t minor, uint64_t fingerprint, char *err,
                        size_t err_len)
{
    uint32_t mine = tb_codec_schema_minor();
    uint64_t my_fp = tb_codec_layouts[mine].fingerprint;
    if (major != TB_SCHEMA_MAJOR) {
        snprintf(err, err_len,
                 "the peer speaks message schema %u.%u (fingerprint %016" PRIx64
                 "), this process "
                 "%d.%u (fingerprint %016" PRIx64 "): different majors cannot be bridged; "
                 "upgrade %s to a build of schema major %u",
                 major, minor, fingerprint, TB_SCHEMA_MAJOR, mine, my_fp,
                 major < TB_SCHEMA_MAJOR ? "the peer" : "this process",
                 major < TB_SCHEMA_MAJOR ? (unsigned)TB_SCHEMA_MAJOR : major);
        return TB_EPROTO;
    }
    if (minor > mine) {
        return 0; /* the newer side judges */
    }
    if (tb_codec_layouts[minor].fingerprint != fingerprint) {
        snprintf(err, err_len,
                 "the peer speaks message schema %u.%u with fingerprint %016" PRIx64 ", but "
                 "schema %d.%u of this process has fingerprint %016" PRIx64 " (it speaks %d.%u, "
                 "%016" PRIx64 "): one was built from a modified messages.yaml; run builds of "
                 "one source line on both",
                 major, minor, fingerprint, TB_SCHEMA_MAJOR, minor,
                 tb_codec_layouts[minor].fingerprint, TB_SCHEMA_MAJOR, mine, my_fp);
        return TB_EPROTO;
    }
    return 0;
}

int tb_codec_check_peer_schema(const struct tb_msg_schema_version *sv, char *err, size_t err_len)
{
    if (!sv) {
        return tb_codec_check_peer(1, 0,
                                   TB_SCHEMA_MAJOR == 1 ? tb_codec_layouts[0].fingerprint : 0,
                                   err, err_len);
    }
    return tb_codec_check_peer((uint32_t)sv->major, (uint32_t)sv->minor, sv->fingerprint, err,
                               err_len);
}
