/*
 * tb_safetensors.c - validating reader for the safetensors format.  The header JSON is parsed
 * with jansson and kept alive so that names and metadata strings can be borrowed from it; the
 * data itself stays in the mapping.
 */
#include "tb_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tb_errors.h"

struct entry {
    const char *name; /* borrowed from root */
    tb_st_dtype_t dtype;
    uint32_t n_dims;
    uint64_t shape[TB_ST_MAX_DIMS];
    uint64_t begin; /* relative to the data area */
    uint64_t end;
};

struct tb_safetensors {
    const uint8_t *base; /* whole file */
    size_t len;
    bool mapped;
    uint64_t data_start; /* 8 + header length */
    json_t *root;
    struct entry *ents; /* sorted by begin */
    size_t *by_name;    /* indexes into ents, sorted by name */
    size_t n;
};

static const struct {
    const char *name;
    size_t size;
} s_dtypes[TB_ST_DTYPE_COUNT] = {
    [TB_ST_BOOL] = {"BOOL", 1},       [TB_ST_U8] = {"U8", 1},
    [TB_ST_I8] = {"I8", 1},           [TB_ST_F8_E4M3] = {"F8_E4M3", 1},
    [TB_ST_F8_E5M2] = {"F8_E5M2", 1}, [TB_ST_I16] = {"I16", 2},
    [TB_ST_U16] = {"U16", 2},         [TB_ST_F16] = {"F16", 2},
    [TB_ST_BF16] = {"BF16", 2},       [TB_ST_I32] = {"I32", 4},
    [TB_ST_U32] = {"U32", 4},         [TB_ST_F32] = {"F32", 4},
    [TB_ST_I64] = {"I64", 8},         [TB_ST_U64] = {"U64", 8},
    [TB_ST_F64] = {"F64", 8},
};

const char *tb_st_dtype_name(tb_st_dtype_t t)
{
    return ((int)t >= 0 && t < TB_ST_DTYPE_COUNT) ? s_dtypes[t].name : "?";
}

size_t tb_st_dtype_size(tb_st_dtype_t t)
{
    return ((int)t >= 0 && t < TB_ST_DTYPE_COUNT) ? s_dtypes[t].size : 0;
}

static int s_cmp_begin(const void *a, const void *b)
{
    const struct entry *x = a;
    const struct entry *y = b;
    if (x->begin != y->begin) {
        return x->begin < y->begin ? -1 : 1;
    }
    return x->end < y->end ? -1 : (x->end > y->end);
}

static int s_cmp_name(const void *a, const void *b, void *ctx)
{
    const struct entry *ents = ctx;
    return strcmp(ents[*(const size_t *)a].name, ents[*(const size_t *)b].name);
}

static int s_parse_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return -1;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Fills `e` from one header entry; `data_len` is the size of the data area. */
static int s_parse_entry(const char *name, json_t *obj, uint64_t data_len, struct entry *e,
                         char *err, size_t err_len)
{
    if (!json_is_object(obj)) {
        return tb_err_fail(err, err_len, TB_EMODEL, "tensor '%s': header entry is not an object",
                           name);
    }
    e->name = name;
    json_t *dt = json_object_get(obj, "dtype");
    if (!json_is_string(dt)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': 'dtype' missing or not a string", name);
    }
    int found = -1;
    for (int i = 0; i < TB_ST_DTYPE_COUNT; i++) {
        if (strcmp(json_string_value(dt), s_dtypes[i].name) == 0) {
            found = i;
            break;
        }
    }
    if (found < 0) {
        return tb_err_fail(err, err_len, TB_EMODEL, "tensor '%s': unknown dtype '%.32s'", name,
                           json_string_value(dt));
    }
    e->dtype = (tb_st_dtype_t)found;
    json_t *shape = json_object_get(obj, "shape");
    if (!json_is_array(shape)) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': 'shape' missing or not an array", name);
    }
    if (json_array_size(shape) > TB_ST_MAX_DIMS) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': shape has %zu dimensions (at most %d)", name,
                           json_array_size(shape), TB_ST_MAX_DIMS);
    }
    e->n_dims = (uint32_t)json_array_size(shape);
    uint64_t count = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < e->n_dims; d++) {
        if (s_parse_u64(json_array_get(shape, d), &e->shape[d]) != 0) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "tensor '%s': shape[%u] is not a non-negative integer", name, d);
        }
        if (e->shape[d] != 0 && count > UINT64_MAX / e->shape[d]) {
            overflow = true;
        }
        count *= e->shape[d];
    }
    uint64_t esize = s_dtypes[e->dtype].size;
    if (overflow || count > UINT64_MAX / esize) {
        return tb_err_fail(err, err_len, TB_EMODEL, "tensor '%s': shape too large", name);
    }
    json_t *offs = json_object_get(obj, "data_offsets");
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        s_parse_u64(json_array_get(offs, 0), &e->begin) != 0 ||
        s_parse_u64(json_array_get(offs, 1), &e->end) != 0) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "tensor '%s': 'data_offsets' must be two non-negative integers", name);
    }
    if (e->begin > e->end || e->end > data_len) {
        return tb_err_fail(
            err, err_len, TB_EMODEL,
            "tensor '%s': data_offsets [%llu, %llu] outside the data area (%llu bytes)", name,
            (unsigned long long)e->begin, (unsigned long long)e->end,
            (unsigned long long)data_len);
    }
    if (e->end - e->begin != count * esize) {
        return tb_err_fail(
            err, err_len, TB_EMODEL,
            "tensor '%s': data_offsets span %llu bytes but shape and dtype %s need %llu", name,
            (unsigned long long)(e->end - e->begin), s_dtypes[e->dtype].name,
            (unsigned long long)(count * esize));
    }
    const char *extra = NULL;
    json_t *val;
    json_object_foreach(obj, extra, val)
    {
        if (strcmp(extra, "dtype") != 0 && strcmp(extra, "shape") != 0 &&
            strcmp(extra, "data_offsets") != 0) {
            return tb_err_fail(err, err_len, TB_EMODEL, "tensor '%s': unknown field '%.64s'",
                               name, extra);
        }
    }
    return 0;
}

static int s_parse(tb_safetensors_t *st, char *err, size_t err_len)
{
    if (st->len < 8) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "file is %zu bytes, shorter than the 8-byte header length", st->len);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) {
        hlen = (hlen << 8) | st->base[i];
    }
    if (hlen > TB_ST_MAX_HEADER) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "header length %llu exceeds the %u-byte limit",
                           (unsigned long long)hlen, TB_ST_MAX_HEADER);
    }
    if (hlen > st->len - 8) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "header length %llu runs past the end of the file (%zu bytes)",
                           (unsigned long long)hlen, st->len);
    }
    if (hlen < 2) {
        return tb_err_fail(err, err_len, TB_EMODEL,
                           "header length %llu is too short for a JSON object",
                           (unsigned long long)hlen);
    }
    st->data_start = 8 + hlen;
    uint64_t data_len = st->len - st->data_start;
    json_error_t jerr;
    st->root = json_loadb((const char *)st->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES,
                          &jerr);
    if (!st->root) {
        return tb_err_fail(err, err_len, TB_EMODEL, "header JSON: %s at byte %d", jerr.text,
                           jerr.position);
    }
    if (!json_is_object(st->root)) {
        return tb_err_fail(err, err_len, TB_EMODEL, "header JSON is not an object");
    }
    json_t *meta = json_object_get(st->root, "__metadata__");
    if (meta) {
        const char *k;
        json_t *v;
        if (!json_is_object(meta)) {
            return tb_err_fail(err, err_len, TB_EMODEL, "'__metadata__' is not an object");
        }
        json_object_foreach(meta, k, v)
        {
            if (!json_is_string(v)) {
                return tb_err_fail(err, err_len, TB_EMODEL,
                                   "'__metadata__.%.64s' is not a string", k);
            }
        }
    }
    size_t n = json_object_size(st->root) - (meta ? 1 : 0);
    st->ents = calloc(n ? n : 1, sizeof *st->ents);
    st->by_name = calloc(n ? n : 1, sizeof *st->by_name);
    if (!st->ents || !st->by_name) {
        snprintf(err, err_len, "out of memory for %zu tensors", n);
        return TB_ENOMEM;
    }
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach(st->root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            continue;
        }
        int rc = s_parse_entry(key, val, data_len, &st->ents[i], err, err_len);
        if (rc != 0) {
            return rc;
        }
        i++;
    }
    st->n = n;
    qsort(st->ents, n, sizeof *st->ents, s_cmp_begin);
    for (i = 1; i < n; i++) {
        const struct entry *a = &st->ents[i - 1];
        const struct entry *b = &st->ents[i];
        if (b->begin < a->end) {
            return tb_err_fail(err, err_len, TB_EMODEL,
                               "tensors '%s' and '%s' overlap in the data area", a->name,
                               b->name);
        }
    }
    for (i = 0; i < n; i++) {
        st->by_name[i] = i;
    }
    qsort_r(st->by_name, n, sizeof *st->by_name, s_cmp_name, st->ents);
    return 0;
}

static int s_open_common(tb_safetensors_t *st, tb_safetensors_t **out, char *err, size_t err_len)
{
    int rc = s_parse(st, err, err_len);
    if (rc != 0) {
        tb_safetensors_close(&st);
        return rc;
    }
    *out = st;
    return 0;
}

int tb_safetensors_open_memory(const void *data, size_t len, tb_safetensors_t **out, char *err,
                               size_t err_len)
{
    *out = NULL;
    tb_safetensors_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, err_len, "out of memory");
        return TB_ENOMEM;
    }
    st->base = data;
    st->len = len;
    return s_open_common(st, out, err, err_len);
}

int tb_safetensors_open(const char *path, tb_safetensors_t **out, char *err, size_t err_len)
{
    *out = NULL;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, err_len, "cannot open '%s': %s", path, strerror(errno));
        goto out;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        rc = -errno;
        snprintf(err, err_len, "cannot stat '%s': %s", path, strerror(errno));
        goto close_fd;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = TB_EMODEL;
        snprintf(err, err_len, "'%s' is not a regular file", path);
        goto close_fd;
    }
    if (sb.st_size < 8) {
        rc = TB_EMODEL;
        snprintf(err, err_len, "'%s': file is %lld bytes, shorter than the 8-byte header length",
                 path, (long long)sb.st_size);
        goto close_fd;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        snprintf(err, err_len, "cannot map '%s': %s", path, strerror(errno));
        goto close_fd;
    }
    tb_safetensors_t *st = calloc(1, sizeof *st);
    if (!st) {
        munmap(map, (size_t)sb.st_size);
        rc = TB_ENOMEM;
        snprintf(err, err_len, "out of memory");
        goto close_fd;
    }
    st->base = map;
    st->len = (size_t)sb.st_size;
    st->mapped = true;
    rc = s_open_common(st, out, err, err_len);
close_fd:
    close(fd);
out:
    return rc;
}

void tb_safetensors_close(tb_safetensors_t **st_p)
{
    if (!st_p || !*st_p) {
        return;
    }
    tb_safetensors_t *st = *st_p;
    if (st->mapped) {
        munmap((void *)st->base, st->len);
    }
    json_decref(st->root);
    free(st->ents);
    free(st->by_name);
    free(st);
    *st_p = NULL;
}

size_t tb_safetensors_count(const tb_safetensors_t *st)
{
    return st->n;
}

static void s_fill(const tb_safetensors_t *st, const struct entry *e, struct tb_st_tensor *out)
{
    out->name = e->name;
    out->dtype = e->dtype;
    out->n_dims = e->n_dims;
    memset(out->shape, 0, sizeof out->shape);
    memcpy(out->shape, e->shape, e->n_dims * sizeof e->shape[0]);
    out->offset = st->data_start + e->begin;
    out->data = st->base + out->offset;
    out->size = e->end - e->begin;
}

bool tb_safetensors_at(const tb_safetensors_t *st, size_t idx, struct tb_st_tensor *out)
{
    if (idx >= st->n) {
        return false;
    }
    s_fill(st, &st->ents[idx], out);
    return true;
}

bool tb_safetensors_find(const tb_safetensors_t *st, const char *name, struct tb_st_tensor *out)
{
    size_t lo = 0;
    size_t hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct entry *e = &st->ents[st->by_name[mid]];
        int c = strcmp(name, e->name);
        if (c == 0) {
            s_fill(st, e, out);
            return true;
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return false;
}

const char *tb_safetensors_metadata(const tb_safetensors_t *st, const char *key)
{
    json_t *meta = json_object_get(st->root, "__metadata__");
    return json_string_value(json_object_get(meta, key));
}
