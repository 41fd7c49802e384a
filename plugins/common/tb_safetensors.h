/*
 * tb_safetensors.h - read-only access to one .safetensors file: its tensor index and metadata.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON (an object mapping tensor
 * names to {"dtype", "shape", "data_offsets": [begin, end]} plus an optional "__metadata__"
 * object of strings), then the data area; offsets are relative to the data area.
 *
 * The file is memory-mapped read-only (or a caller's buffer is borrowed); tensor data is never
 * copied.  Everything in the file is untrusted: tb_safetensors_open checks the header length,
 * that the JSON is an object without duplicate keys, every dtype name, that shapes are
 * non-negative integers whose element count times the dtype size equals end - begin without
 * overflow, that every range lies inside the data area, and that no two ranges overlap.  A file
 * failing any check is refused with TB_EMODEL and a message naming the tensor and the field.
 *
 * Thread-safety: a tb_safetensors_t is immutable after open; readers may share it.
 */
#ifndef TB_SAFETENSORS_H
#define TB_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_safetensors tb_safetensors_t;

/* The dtypes the safetensors format defines.  The reader knows all of them (so it can check
 * sizes); which ones a model may use is decided by tb_model. */
typedef enum {
    TB_ST_BOOL,
    TB_ST_U8,
    TB_ST_I8,
    TB_ST_F8_E4M3,
    TB_ST_F8_E5M2,
    TB_ST_I16,
    TB_ST_U16,
    TB_ST_F16,
    TB_ST_BF16,
    TB_ST_I32,
    TB_ST_U32,
    TB_ST_F32,
    TB_ST_I64,
    TB_ST_U64,
    TB_ST_F64,
    TB_ST_DTYPE_COUNT
} tb_st_dtype_t;

#define TB_ST_MAX_DIMS 8              /* more dimensions than this are refused */
#define TB_ST_MAX_HEADER (100u << 20) /* header JSON larger than 100 MiB is refused */

/* One tensor of the index.  `name` is borrowed from the tb_safetensors_t; `data` points into the
 * mapping (or the caller's buffer) and may be unaligned; `size` == product(shape) * dtype size. */
struct tb_st_tensor {
    const char *name;
    tb_st_dtype_t dtype;
    uint32_t n_dims; /* 0 (a scalar) .. TB_ST_MAX_DIMS */
    uint64_t shape[TB_ST_MAX_DIMS];
    uint64_t offset; /* from the start of the file */
    const void *data;
    uint64_t size;
};

/* Opens, maps and validates `path`.  On success returns 0 and *out is owned by the caller
 * (close with tb_safetensors_close).  On failure returns TB_ENOENT/TB_EIO (cannot open or map)
 * or TB_EMODEL (malformed), writes a message into `err` and leaves *out NULL. */
int tb_safetensors_open(const char *path, tb_safetensors_t **out, char *err, size_t err_len);

/* Same over a caller's buffer, borrowed (not copied) until close. */
int tb_safetensors_open_memory(const void *data, size_t len, tb_safetensors_t **out, char *err,
                               size_t err_len);

/* Unmaps and frees; sets *st_p to NULL; accepts NULL.  Tensor pointers die with it. */
void tb_safetensors_close(tb_safetensors_t **st_p);

/* Tensors in ascending data offset order. */
size_t tb_safetensors_count(const tb_safetensors_t *st);
bool tb_safetensors_at(const tb_safetensors_t *st, size_t idx, struct tb_st_tensor *out);
/* By name; false when absent.  O(log n). */
bool tb_safetensors_find(const tb_safetensors_t *st, const char *name, struct tb_st_tensor *out);

/* A string from "__metadata__", borrowed until close; NULL when absent. */
const char *tb_safetensors_metadata(const tb_safetensors_t *st, const char *key);

/* The format's name of a dtype ("F32", "BF16"...), "?" when out of range; its byte size. */
const char *tb_st_dtype_name(tb_st_dtype_t t);
size_t tb_st_dtype_size(tb_st_dtype_t t);

#ifdef __cplusplus
}
#endif

#endif /* TB_SAFETENSORS_H */
