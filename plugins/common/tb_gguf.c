/*
 * tb_gguf.c - GGUF v2/v3 reader: validates the whole header, metadata and tensor index at open,
 * then answers lookups from small index tables that point into the mapping.
 *
 * Everything read from the file goes through one bounds-checked cursor; every count is checked
 * against the bytes left before anything is allocated for it, so a lying count cannot make us
 * allocate more than a small multiple of the file's size.
 */
#include "tb_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tb_errors.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NESTING 16

/* One metadata key/value.  Scalars: `val` points at the stored bytes.  Strings: `val` at the
 * characters, `count` is the length.  Arrays: `val` at the first element, `count` elements of
 * `elem_type`; string arrays also get `strs`, an index of every element. */
struct gguf_kv {
    struct tb_gguf_str key;
    tb_gguf_type_t type;
    tb_gguf_type_t elem_type;
    const uint8_t *val;
    uint64_t count;
    struct tb_gguf_str *strs;
};

struct tb_gguf {
    const uint8_t *base;
    size_t len;
    void *map; /* non-NULL when we mapped the file ourselves */
    size_t map_len;
    uint32_t version;
    size_t alignment;
    uint64_t data_offset;
    size_t n_kv;
    struct gguf_kv *kv;
    size_t n_tensors;
    struct tb_gguf_tensor *tensors;
    /* Open-addressing hash tables of indexes + 1 (0 = empty), sized a power of two. */
    uint32_t *kv_hash;
    size_t kv_hash_mask;
    uint32_t *t_hash;
    size_t t_hash_mask;
};

/* Bounds-checked reader over the file bytes. */
struct cursor {
    const uint8_t *p;
    size_t len;
    size_t off;
    char *err;
    size_t err_len;
};

static void s_err(struct cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_err(struct cursor *c, const char *fmt, ...)
{
    if (c->err && c->err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->err_len, fmt, ap);
        va_end(ap);
    }
}

static size_t s_left(const struct cursor *c)
{
    return c->len - c->off;
}

static int s_need(struct cursor *c, uint64_t n, const char *what)
{
    if (n > s_left(c)) {
        s_err(c, "truncated file: %s needs %llu bytes at offset %zu, %zu left", what,
              (unsigned long long)n, c->off, s_left(c));
        return TB_EMODEL;
    }
    return 0;
}

static int s_read_u32(struct cursor *c, uint32_t *out, const char *what)
{
    if (s_need(c, 4, what) < 0) {
        return TB_EMODEL;
    }
    memcpy(out, c->p + c->off, 4);
    c->off += 4;
    return 0;
}

static int s_read_u64(struct cursor *c, uint64_t *out, const char *what)
{
    if (s_need(c, 8, what) < 0) {
        return TB_EMODEL;
    }
    memcpy(out, c->p + c->off, 8);
    c->off += 8;
    return 0;
}

static int s_read_str(struct cursor *c, struct tb_gguf_str *out, const char *what)
{
    uint64_t n = 0;
    if (s_read_u64(c, &n, what) < 0) {
        return TB_EMODEL;
    }
    if (s_need(c, n, what) < 0) {
        return TB_EMODEL;
    }
    out->ptr = (const char *)(c->p + c->off);
    out->len = (size_t)n;
    c->off += (size_t)n;
    return 0;
}

/* Byte size of a fixed-size scalar type, 0 for strings, arrays and unknown types. */
static size_t s_scalar_size(uint32_t type)
{
    switch (type) {
    case TB_GGUF_UINT8:
    case TB_GGUF_INT8:
    case TB_GGUF_BOOL:
        return 1;
    case TB_GGUF_UINT16:
    case TB_GGUF_INT16:
        return 2;
    case TB_GGUF_UINT32:
    case TB_GGUF_INT32:
    case TB_GGUF_FLOAT32:
        return 4;
    case TB_GGUF_UINT64:
    case TB_GGUF_INT64:
    case TB_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

static bool s_type_known(uint32_t type)
{
    return type <= TB_GGUF_FLOAT64;
}

/* Validates the elements of an array whose type and count were just read, leaving the cursor
 * after them.  `depth` counts enclosing arrays. */
static int s_skip_array_body(struct cursor *c, uint32_t elem, uint64_t count, int depth);

static int s_skip_array(struct cursor *c, int depth)
{
    uint32_t elem = 0;
    uint64_t count = 0;
    if (depth >= GGUF_MAX_NESTING) {
        s_err(c, "arrays nested deeper than %d at offset %zu", GGUF_MAX_NESTING, c->off);
        return TB_EMODEL;
    }
    if (s_read_u32(c, &elem, "array element type") < 0 ||
        s_read_u64(c, &count, "array length") < 0) {
        return TB_EMODEL;
    }
    return s_skip_array_body(c, elem, count, depth + 1);
}

static int s_skip_array_body(struct cursor *c, uint32_t elem, uint64_t count, int depth)
{
    size_t esz = s_scalar_size(elem);
    if (!s_type_known(elem)) {
        s_err(c, "unknown array element type %u at offset %zu", elem, c->off);
        return TB_EMODEL;
    }
    if (esz > 0) {
        if (count > s_left(c) / esz) {
            s_err(c,
                  "truncated file: array of %llu elements of %zu bytes at offset %zu, "
                  "%zu bytes left",
                  (unsigned long long)count, esz, c->off, s_left(c));
            return TB_EMODEL;
        }
        if (elem == TB_GGUF_BOOL) {
            for (uint64_t i = 0; i < count; i++) {
                if (c->p[c->off + i] > 1) {
                    s_err(c, "bool array element %llu is %u, not 0 or 1", (unsigned long long)i,
                          c->p[c->off + i]);
                    return TB_EMODEL;
                }
            }
        }
        c->off += (size_t)(count * esz);
        return 0;
    }
    /* Strings take at least 8 bytes each, nested arrays 12: reject absurd counts early. */
    uint64_t min_elem = elem == TB_GGUF_STRING ? 8 : 12;
    if (count > s_left(c) / min_elem) {
        s_err(c, "truncated file: array of %llu elements at offset %zu, %zu bytes left",
              (unsigned long long)count, c->off, s_left(c));
        return TB_EMODEL;
    }
    for (uint64_t i = 0; i < count; i++) {
        if (elem == TB_GGUF_STRING) {
            struct tb_gguf_str s;
            if (s_read_str(c, &s, "array string") < 0) {
                return TB_EMODEL;
            }
        } else if (s_skip_array(c, depth) < 0) {
            return TB_EMODEL;
        }
    }
    return 0;
}

static uint64_t s_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t s_table_size(size_t n)
{
    size_t sz = 8;
    while (sz < n * 2) {
        sz <<= 1;
    }
    return sz;
}

static bool s_str_eq(struct tb_gguf_str a, const char *b, size_t blen)
{
    return a.len == blen && memcmp(a.ptr, b, blen) == 0;
}

/* Reads one key/value into *kv. */
static int s_read_kv(struct cursor *c, size_t idx, struct gguf_kv *kv)
{
    uint32_t type = 0;
    char what[64];
    snprintf(what, sizeof(what), "key %zu name", idx);
    if (s_read_str(c, &kv->key, what) < 0) {
        return TB_EMODEL;
    }
    if (s_read_u32(c, &type, "value type") < 0) {
        return TB_EMODEL;
    }
    if (!s_type_known(type)) {
        s_err(c, "key '%.*s': unknown value type %u",
              (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr, type);
        return TB_EMODEL;
    }
    kv->type = (tb_gguf_type_t)type;
    if (type == TB_GGUF_STRING) {
        struct tb_gguf_str s;
        if (s_read_str(c, &s, "string value") < 0) {
            return TB_EMODEL;
        }
        kv->val = (const uint8_t *)s.ptr;
        kv->count = s.len;
        return 0;
    }
    if (type != TB_GGUF_ARRAY) {
        size_t sz = s_scalar_size(type);
        if (s_need(c, sz, "scalar value") < 0) {
            return TB_EMODEL;
        }
        kv->val = c->p + c->off;
        if (type == TB_GGUF_BOOL && kv->val[0] > 1) {
            s_err(c, "key '%.*s': bool value is %u, not 0 or 1",
                  (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr, kv->val[0]);
            return TB_EMODEL;
        }
        c->off += sz;
        return 0;
    }
    uint32_t elem = 0;
    uint64_t count = 0;
    if (s_read_u32(c, &elem, "array element type") < 0 ||
        s_read_u64(c, &count, "array length") < 0) {
        return TB_EMODEL;
    }
    kv->elem_type = (tb_gguf_type_t)elem;
    kv->count = count;
    kv->val = c->p + c->off;
    size_t start = c->off;
    if (s_skip_array_body(c, elem, count, 1) < 0) {
        return TB_EMODEL;
    }
    if (elem == TB_GGUF_STRING && count > 0) {
        /* The body was validated: every string is in bounds, so a second pass is safe. */
        kv->strs = calloc((size_t)count, sizeof(*kv->strs));
        if (!kv->strs) {
            s_err(c, "out of memory indexing %llu strings", (unsigned long long)count);
            return TB_ENOMEM;
        }
        struct cursor sc = *c;
        sc.off = start;
        for (uint64_t i = 0; i < count; i++) {
            if (s_read_str(&sc, &kv->strs[i], "array string") < 0) {
                return TB_EINTERNAL;
            }
        }
    }
    return 0;
}

/* Block size (elements) and block byte size of a GGML tensor type; false when unknown. */
static bool s_ggml_type_size(uint32_t type, uint64_t *block, uint64_t *bytes)
{
    static const struct {
        uint16_t block;
        uint16_t bytes;
    } table[] = {
        [0] = {1, 4},      [1] = {1, 2},      [2] = {32, 18},    [3] = {32, 20},
        [6] = {32, 22},    [7] = {32, 24},    [8] = {32, 34},    [9] = {32, 40},
        [10] = {256, 84},  [11] = {256, 110}, [12] = {256, 144}, [13] = {256, 176},
        [14] = {256, 210}, [15] = {256, 292}, [16] = {256, 66},  [17] = {256, 74},
        [18] = {256, 98},  [19] = {256, 50},  [20] = {32, 18},   [21] = {256, 110},
        [22] = {256, 82},  [23] = {256, 136}, [24] = {1, 1},     [25] = {1, 2},
        [26] = {1, 4},     [27] = {1, 8},     [28] = {1, 8},     [29] = {256, 56},
        [30] = {1, 2},     [31] = {32, 18},   [32] = {32, 18},   [33] = {32, 18},
        [34] = {256, 54},  [35] = {256, 66},  [39] = {32, 17},
    };
    if (type >= sizeof(table) / sizeof(table[0]) || table[type].block == 0) {
        return false;
    }
    *block = table[type].block;
    *bytes = table[type].bytes;
    return true;
}

static int s_read_tensor(struct cursor *c, size_t idx, struct tb_gguf_tensor *t)
{
    char what[64];
    snprintf(what, sizeof(what), "tensor %zu name", idx);
    if (s_read_str(c, &t->name, what) < 0 || s_read_u32(c, &t->n_dims, "tensor dims") < 0) {
        return TB_EMODEL;
    }
    int nl = (int)(t->name.len > 200 ? 200 : t->name.len);
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
        s_err(c, "tensor '%.*s': %u dimensions (1 to %d supported)", nl, t->name.ptr, t->n_dims,
              GGUF_MAX_DIMS);
        return TB_EMODEL;
    }
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->dims[d] = 1;
    }
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (s_read_u64(c, &t->dims[d], "tensor shape") < 0) {
            return TB_EMODEL;
        }
    }
    if (s_read_u32(c, &t->ggml_type, "tensor type") < 0 ||
        s_read_u64(c, &t->offset, "tensor offset") < 0) {
        return TB_EMODEL;
    }
    uint64_t block = 0, bsize = 0;
    if (!s_ggml_type_size(t->ggml_type, &block, &bsize)) {
        s_err(c, "tensor '%.*s': unknown ggml type %u", nl, t->name.ptr, t->ggml_type);
        return TB_EMODEL;
    }
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        if (t->dims[d] > (uint64_t)INT64_MAX ||
            (t->dims[d] != 0 && nel > (uint64_t)INT64_MAX / t->dims[d])) {
            s_err(c, "tensor '%.*s': shape overflows", nl, t->name.ptr);
            return TB_EMODEL;
        }
        nel *= t->dims[d];
    }
    if (t->dims[0] % block != 0) {
        s_err(c, "tensor '%.*s': row length %llu is not a multiple of the type's block %llu", nl,
              t->name.ptr, (unsigned long long)t->dims[0], (unsigned long long)block);
        return TB_EMODEL;
    }
    uint64_t blocks = nel / block;
    if (blocks > UINT64_MAX / bsize) {
        s_err(c, "tensor '%.*s': byte size overflows", nl, t->name.ptr);
        return TB_EMODEL;
    }
    t->size = blocks * bsize;
    return 0;
}

static int s_build_indexes(struct tb_gguf *g, struct cursor *c)
{
    g->kv_hash_mask = s_table_size(g->n_kv) - 1;
    g->kv_hash = calloc(g->kv_hash_mask + 1, sizeof(uint32_t));
    g->t_hash_mask = s_table_size(g->n_tensors) - 1;
    g->t_hash = calloc(g->t_hash_mask + 1, sizeof(uint32_t));
    if (!g->kv_hash || !g->t_hash) {
        s_err(c, "out of memory indexing keys");
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < g->n_kv; i++) {
        struct tb_gguf_str k = g->kv[i].key;
        size_t h = (size_t)s_hash(k.ptr, k.len) & g->kv_hash_mask;
        while (g->kv_hash[h] != 0) {
            if (s_str_eq(g->kv[g->kv_hash[h] - 1].key, k.ptr, k.len)) {
                s_err(c, "duplicate key '%.*s'", (int)(k.len > 200 ? 200 : k.len), k.ptr);
                return TB_EMODEL;
            }
            h = (h + 1) & g->kv_hash_mask;
        }
        g->kv_hash[h] = (uint32_t)(i + 1);
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        struct tb_gguf_str k = g->tensors[i].name;
        size_t h = (size_t)s_hash(k.ptr, k.len) & g->t_hash_mask;
        while (g->t_hash[h] != 0) {
            if (s_str_eq(g->tensors[g->t_hash[h] - 1].name, k.ptr, k.len)) {
                s_err(c, "duplicate tensor '%.*s'", (int)(k.len > 200 ? 200 : k.len), k.ptr);
                return TB_EMODEL;
            }
            h = (h + 1) & g->t_hash_mask;
        }
        g->t_hash[h] = (uint32_t)(i + 1);
    }
    return 0;
}

static const struct gguf_kv *s_find(const tb_gguf_t *g, const char *key)
{
    if (!g || !key) {
        return NULL;
    }
    size_t n = strlen(key);
    size_t h = (size_t)s_hash(key, n) & g->kv_hash_mask;
    while (g->kv_hash[h] != 0) {
        const struct gguf_kv *kv = &g->kv[g->kv_hash[h] - 1];
        if (s_str_eq(kv->key, key, n)) {
            return kv;
        }
        h = (h + 1) & g->kv_hash_mask;
    }
    return NULL;
}

static void s_free(struct tb_gguf *g)
{
    if (!g) {
        return;
    }
    if (g->kv) {
        for (size_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].strs);
        }
    }
    free(g->kv);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    if (g->map) {
        munmap(g->map, g->map_len);
    }
    free(g);
}

/* Parses g->base/g->len; fills the rest of *g. */
static int s_parse(struct tb_gguf *g, char *err, size_t err_len)
{
    struct cursor c = {g->base, g->len, 0, err, err_len};
    uint32_t version = 0;
    uint64_t n_tensors = 0, n_kv = 0;
    int rc = 0;

    if (g->len < 4 || memcmp(g->base, GGUF_MAGIC, 4) != 0) {
        s_err(&c, "not a GGUF file (bad magic)");
        return TB_EMODEL;
    }
    c.off = 4;
    if (s_read_u32(&c, &version, "version") < 0) {
        return TB_EMODEL;
    }
    if (version == 0x03000000u || version == 0x02000000u) {
        s_err(&c, "big-endian GGUF files are not supported");
        return TB_EMODEL;
    }
    if (version != 2 && version != 3) {
        s_err(&c, "unsupported GGUF version %u (2 and 3 are supported)", version);
        return TB_EMODEL;
    }
    g->version = version;
    if (s_read_u64(&c, &n_tensors, "tensor count") < 0 ||
        s_read_u64(&c, &n_kv, "metadata count") < 0) {
        return TB_EMODEL;
    }
    /* A key/value takes at least 12 bytes (name length + type), a tensor info at least 32. */
    if (n_kv > s_left(&c) / 12 || n_kv >= UINT32_MAX) {
        s_err(&c, "metadata count %llu is impossible for a %zu-byte file",
              (unsigned long long)n_kv, g->len);
        return TB_EMODEL;
    }
    if (n_tensors > s_left(&c) / 32 || n_tensors >= UINT32_MAX) {
        s_err(&c, "tensor count %llu is impossible for a %zu-byte file",
              (unsigned long long)n_tensors, g->len);
        return TB_EMODEL;
    }
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof(*g->kv));
    if (!g->kv) {
        s_err(&c, "out of memory for %llu keys", (unsigned long long)n_kv);
        return TB_ENOMEM;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        rc = s_read_kv(&c, (size_t)i, &g->kv[i]);
        g->n_kv = (size_t)i + 1; /* so that s_free releases a partly built string index */
        if (rc < 0) {
            return rc;
        }
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof(*g->tensors));
    if (!g->tensors) {
        s_err(&c, "out of memory for %llu tensors", (unsigned long long)n_tensors);
        return TB_ENOMEM;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        rc = s_read_tensor(&c, (size_t)i, &g->tensors[i]);
        if (rc < 0) {
            return rc;
        }
    }
    g->n_tensors = (size_t)n_tensors;
    rc = s_build_indexes(g, &c);
    if (rc < 0) {
        return rc;
    }
    const struct gguf_kv *al = s_find(g, "general.alignment");
    if (al) {
        uint64_t a = 0;
        if (!tb_gguf_get_u64(g, "general.alignment", &a) || a == 0 || (a & (a - 1)) != 0 ||
            a > (1u << 30)) {
            s_err(&c, "general.alignment must be a power of two integer up to 2^30");
            return TB_EMODEL;
        }
        g->alignment = (size_t)a;
    }
    /* The data section starts at the next multiple of the alignment. */
    uint64_t data_off = ((uint64_t)c.off + g->alignment - 1) / g->alignment * g->alignment;
    g->data_offset = data_off;
    uint64_t data_len = data_off <= g->len ? g->len - data_off : 0;
    if (n_tensors > 0 && data_off > g->len) {
        s_err(&c, "truncated file: data section would start at %llu, file has %zu bytes",
              (unsigned long long)data_off, g->len);
        return TB_EMODEL;
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        struct tb_gguf_tensor *t = &g->tensors[i];
        int nl = (int)(t->name.len > 200 ? 200 : t->name.len);
        if (t->offset % g->alignment != 0) {
            s_err(&c, "tensor '%.*s': offset %llu is not a multiple of the alignment %zu", nl,
                  t->name.ptr, (unsigned long long)t->offset, g->alignment);
            return TB_EMODEL;
        }
        if (t->offset > data_len || t->size > data_len - t->offset) {
            s_err(&c,
                  "tensor '%.*s': data [%llu, +%llu) lies past the end of the file "
                  "(data section is %llu bytes)",
                  nl, t->name.ptr, (unsigned long long)t->offset, (unsigned long long)t->size,
                  (unsigned long long)data_len);
            return TB_EMODEL;
        }
        t->data = g->base + data_off + t->offset;
    }
    return 0;
}

int tb_gguf_open_memory(const void *data, size_t len, tb_gguf_t **out, char *err, size_t err_len)
{
    int rc = 0;
    struct tb_gguf *g = NULL;
    if (!out || (!data && len > 0)) {
        tb_err_set(err, err_len, "invalid arguments");
        return TB_EINVAL;
    }
    *out = NULL;
    g = calloc(1, sizeof(*g));
    if (!g) {
        tb_err_set(err, err_len, "out of memory");
        rc = TB_ENOMEM;
        goto fail;
    }
    g->base = data;
    g->len = len;
    rc = s_parse(g, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    *out = g;
    return 0;
fail:
    s_free(g);
    return rc;
}

int tb_gguf_open(const char *path, tb_gguf_t **out, char *err, size_t err_len)
{
    int rc = 0;
    int fd = -1;
    void *map = NULL;
    size_t len = 0;
    struct stat st;
    char msg[512] = "";

    if (!path || !out) {
        tb_err_set(err, err_len, "invalid arguments");
        return TB_EINVAL;
    }
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        tb_err_set(err, err_len, "cannot open model '%s': %s", path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        tb_err_set(err, err_len, "cannot stat model '%s': %s", path, strerror(errno));
        goto close_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = TB_EINVAL;
        tb_err_set(err, err_len, "cannot open model '%s': not a regular file", path);
        goto close_fd;
    }
    len = (size_t)st.st_size;
    if (len < 4) {
        rc = TB_EMODEL;
        tb_err_set(err, err_len, "cannot open model '%s': not a GGUF file (%zu bytes)", path,
                   len);
        goto close_fd;
    }
    map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        map = NULL;
        tb_err_set(err, err_len, "cannot map model '%s': %s", path, strerror(errno));
        goto close_fd;
    }
    rc = tb_gguf_open_memory(map, len, out, msg, sizeof(msg));
    if (rc < 0) {
        tb_err_set(err, err_len, "cannot open model '%s': %s", path, msg);
        munmap(map, len);
        goto close_fd;
    }
    (*out)->map = map;
    (*out)->map_len = len;
close_fd:
    close(fd);
done:
    return rc;
}

void tb_gguf_close(tb_gguf_t **g_p)
{
    if (!g_p || !*g_p) {
        return;
    }
    s_free(*g_p);
    *g_p = NULL;
}

uint32_t tb_gguf_version(const tb_gguf_t *g)
{
    return g ? g->version : 0;
}

size_t tb_gguf_alignment(const tb_gguf_t *g)
{
    return g ? g->alignment : 0;
}

uint64_t tb_gguf_data_offset(const tb_gguf_t *g)
{
    return g ? g->data_offset : 0;
}

bool tb_gguf_in_file_map(const tb_gguf_t *g, const void *p, size_t n)
{
    if (!g || !g->map || !p) {
        return false;
    }
    uintptr_t a = (uintptr_t)p, base = (uintptr_t)g->map;
    return a >= base && a - base <= g->map_len && n <= g->map_len - (a - base);
}

bool tb_gguf_type_block(uint32_t ggml_type, uint64_t *block_elems, uint64_t *block_bytes)
{
    uint64_t b = 0, n = 0;
    if (!s_ggml_type_size(ggml_type, &b, &n)) {
        return false;
    }
    if (block_elems) {
        *block_elems = b;
    }
    if (block_bytes) {
        *block_bytes = n;
    }
    return true;
}

size_t tb_gguf_key_count(const tb_gguf_t *g)
{
    return g ? g->n_kv : 0;
}

int64_t tb_gguf_find_key(const tb_gguf_t *g, const char *key)
{
    const struct gguf_kv *kv = s_find(g, key);
    return kv ? (int64_t)(kv - g->kv) : -1;
}

struct tb_gguf_str tb_gguf_key_name(const tb_gguf_t *g, size_t idx)
{
    struct tb_gguf_str none = {"", 0};
    if (!g || idx >= g->n_kv) {
        return none;
    }
    return g->kv[idx].key;
}

tb_gguf_type_t tb_gguf_key_type(const tb_gguf_t *g, size_t idx)
{
    if (!g || idx >= g->n_kv) {
        return (tb_gguf_type_t)-1;
    }
    return g->kv[idx].type;
}

/* Reads a stored integer of any width as a sign-tagged 64-bit value. */
static bool s_int_value(tb_gguf_type_t type, const uint8_t *p, uint64_t *u, int64_t *s, bool *neg)
{
    *neg = false;
    switch (type) {
    case TB_GGUF_UINT8:
        *u = p[0];
        break;
    case TB_GGUF_INT8: {
        int8_t v;
        memcpy(&v, p, 1);
        *s = v;
        *neg = v < 0;
        *u = (uint64_t)v;
        return true;
    }
    case TB_GGUF_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        *u = v;
        break;
    }
    case TB_GGUF_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        *s = v;
        *neg = v < 0;
        *u = (uint64_t)v;
        return true;
    }
    case TB_GGUF_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        *u = v;
        break;
    }
    case TB_GGUF_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        *s = v;
        *neg = v < 0;
        *u = (uint64_t)v;
        return true;
    }
    case TB_GGUF_UINT64:
        memcpy(u, p, 8);
        *s = *u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)*u;
        return true;
    case TB_GGUF_INT64: {
        int64_t v;
        memcpy(&v, p, 8);
        *s = v;
        *neg = v < 0;
        *u = (uint64_t)v;
        return true;
    }
    default:
        return false;
    }
    *s = (int64_t)*u;
    return true;
}

bool tb_gguf_get_u64(const tb_gguf_t *g, const char *key, uint64_t *out)
{
    const struct gguf_kv *kv = s_find(g, key);
    uint64_t u = 0;
    int64_t s = 0;
    bool neg = false;
    if (!kv || !s_int_value(kv->type, kv->val, &u, &s, &neg) || neg) {
        return false;
    }
    *out = u;
    return true;
}

bool tb_gguf_get_i64(const tb_gguf_t *g, const char *key, int64_t *out)
{
    const struct gguf_kv *kv = s_find(g, key);
    uint64_t u = 0;
    int64_t s = 0;
    bool neg = false;
    if (!kv || !s_int_value(kv->type, kv->val, &u, &s, &neg)) {
        return false;
    }
    if (kv->type == TB_GGUF_UINT64 && u > (uint64_t)INT64_MAX) {
        return false;
    }
    *out = s;
    return true;
}

bool tb_gguf_get_f64(const tb_gguf_t *g, const char *key, double *out)
{
    const struct gguf_kv *kv = s_find(g, key);
    if (!kv) {
        return false;
    }
    if (kv->type == TB_GGUF_FLOAT32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
        return true;
    }
    if (kv->type == TB_GGUF_FLOAT64) {
        memcpy(out, kv->val, 8);
        return true;
    }
    return false;
}

bool tb_gguf_get_bool(const tb_gguf_t *g, const char *key, bool *out)
{
    const struct gguf_kv *kv = s_find(g, key);
    if (!kv || kv->type != TB_GGUF_BOOL) {
        return false;
    }
    *out = kv->val[0] != 0;
    return true;
}

bool tb_gguf_get_str(const tb_gguf_t *g, const char *key, struct tb_gguf_str *out)
{
    const struct gguf_kv *kv = s_find(g, key);
    if (!kv || kv->type != TB_GGUF_STRING) {
        return false;
    }
    out->ptr = (const char *)kv->val;
    out->len = (size_t)kv->count;
    return true;
}

bool tb_gguf_get_array(const tb_gguf_t *g, const char *key, tb_gguf_type_t *elem_type,
                       uint64_t *count)
{
    const struct gguf_kv *kv = s_find(g, key);
    if (!kv || kv->type != TB_GGUF_ARRAY) {
        return false;
    }
    if (elem_type) {
        *elem_type = kv->elem_type;
    }
    if (count) {
        *count = kv->count;
    }
    return true;
}

bool tb_gguf_array_str(const tb_gguf_t *g, const char *key, uint64_t i, struct tb_gguf_str *out)
{
    const struct gguf_kv *kv = s_find(g, key);
    if (!kv || kv->type != TB_GGUF_ARRAY || kv->elem_type != TB_GGUF_STRING || i >= kv->count) {
        return false;
    }
    *out = kv->strs[i];
    return true;
}

const void *tb_gguf_array_data(const tb_gguf_t *g, const char *key)
{
    const struct gguf_kv *kv = s_find(g, key);
    if (!kv || kv->type != TB_GGUF_ARRAY || s_scalar_size(kv->elem_type) == 0) {
        return NULL;
    }
    return kv->val;
}

size_t tb_gguf_tensor_count(const tb_gguf_t *g)
{
    return g ? g->n_tensors : 0;
}

bool tb_gguf_tensor_at(const tb_gguf_t *g, size_t idx, struct tb_gguf_tensor *out)
{
    if (!g || idx >= g->n_tensors) {
        return false;
    }
    *out = g->tensors[idx];
    return true;
}

bool tb_gguf_tensor_find(const tb_gguf_t *g, const char *name, struct tb_gguf_tensor *out)
{
    if (!g || !name) {
        return false;
    }
    size_t n = strlen(name);
    size_t h = (size_t)s_hash(name, n) & g->t_hash_mask;
    while (g->t_hash[h] != 0) {
        const struct tb_gguf_tensor *t = &g->tensors[g->t_hash[h] - 1];
        if (s_str_eq(t->name, name, n)) {
            *out = *t;
            return true;
        }
        h = (h + 1) & g->t_hash_mask;
    }
    return false;
}
