/*
 * tb_gguf.h - read-only access to GGUF v2/v3 files: metadata key/values and the tensor index.
 *
 * The file is memory-mapped (or a caller's buffer is borrowed); nothing is copied.  Every
 * offset, count, length and shape in the file is untrusted: a truncated or lying file makes
 * tb_gguf_open fail with TB_EMODEL-style errors and a message, never crash or read out of bounds.
 * After a successful open every accessor is safe and O(1) or O(keys).
 *
 * Thread-safety: a tb_gguf_t is immutable after open; readers may share it.
 */
#ifndef TB_GGUF_H
#define TB_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_gguf tb_gguf_t;

/* GGUF metadata value types (values as in the GGUF specification). */
typedef enum {
    TB_GGUF_UINT8 = 0,
    TB_GGUF_INT8 = 1,
    TB_GGUF_UINT16 = 2,
    TB_GGUF_INT16 = 3,
    TB_GGUF_UINT32 = 4,
    TB_GGUF_INT32 = 5,
    TB_GGUF_FLOAT32 = 6,
    TB_GGUF_BOOL = 7,
    TB_GGUF_STRING = 8,
    TB_GGUF_ARRAY = 9,
    TB_GGUF_UINT64 = 10,
    TB_GGUF_INT64 = 11,
    TB_GGUF_FLOAT64 = 12,
} tb_gguf_type_t;

/* A string inside the file: not NUL-terminated. */
struct tb_gguf_str {
    const char *ptr;
    size_t len;
};

/* One tensor of the index.  `data` points into the mapping; `size` is the byte size implied by
 * the type and shape (checked to lie inside the file). */
struct tb_gguf_tensor {
    struct tb_gguf_str name;
    uint32_t ggml_type; /* GGML type id: 0 F32, 1 F16, 2 Q4_0, 8 Q8_0, 30 BF16, ... */
    uint32_t n_dims;    /* 1..4 */
    uint64_t dims[4];   /* GGUF order: dims[0] is the fastest-varying (row length) */
    uint64_t offset;    /* relative to the data section */
    const void *data;
    uint64_t size;
};

/* Opens and validates `path` (mmap, read-only).  On success *out is owned by the caller; close
 * with tb_gguf_close.  On failure returns a negative TB_E* code and writes why into `err`. */
int tb_gguf_open(const char *path, tb_gguf_t **out, char *err, size_t err_len);

/* Same over a caller's buffer, borrowed until close (used by the fuzz target). */
int tb_gguf_open_memory(const void *data, size_t len, tb_gguf_t **out, char *err, size_t err_len);

/* Unmaps and frees; sets *g_p to NULL; accepts NULL. */
void tb_gguf_close(tb_gguf_t **g_p);

uint32_t tb_gguf_version(const tb_gguf_t *g);
size_t tb_gguf_alignment(const tb_gguf_t *g);

/* Metadata: keys are indexed 0..count-1 in file order. */
size_t tb_gguf_key_count(const tb_gguf_t *g);
/* Index of `key`, or -1 when absent. */
int64_t tb_gguf_find_key(const tb_gguf_t *g, const char *key);
struct tb_gguf_str tb_gguf_key_name(const tb_gguf_t *g, size_t idx);
tb_gguf_type_t tb_gguf_key_type(const tb_gguf_t *g, size_t idx);

/* Typed scalar getters by key name: return true and set *out when the key exists and its value
 * converts without loss (any integer type to the integer asked for when in range; F32/F64 to
 * double); false otherwise. */
bool tb_gguf_get_u64(const tb_gguf_t *g, const char *key, uint64_t *out);
bool tb_gguf_get_i64(const tb_gguf_t *g, const char *key, int64_t *out);
bool tb_gguf_get_f64(const tb_gguf_t *g, const char *key, double *out);
bool tb_gguf_get_bool(const tb_gguf_t *g, const char *key, bool *out);
bool tb_gguf_get_str(const tb_gguf_t *g, const char *key, struct tb_gguf_str *out);

/* Arrays: true when `key` holds an array; sets its element type and length. */
bool tb_gguf_get_array(const tb_gguf_t *g, const char *key, tb_gguf_type_t *elem_type,
                       uint64_t *count);
/* Element `i` of a string array (false when out of range or not a string array).  O(1): the
 * reader indexes string arrays at open. */
bool tb_gguf_array_str(const tb_gguf_t *g, const char *key, uint64_t i, struct tb_gguf_str *out);
/* Pointer to the packed elements of a numeric array (little-endian, as stored), or NULL. */
const void *tb_gguf_array_data(const tb_gguf_t *g, const char *key);

/* Tensors. */
size_t tb_gguf_tensor_count(const tb_gguf_t *g);
/* Fills *out for tensor `idx`; false when out of range. */
bool tb_gguf_tensor_at(const tb_gguf_t *g, size_t idx, struct tb_gguf_tensor *out);
/* Finds a tensor by name; false when absent. */
bool tb_gguf_tensor_find(const tb_gguf_t *g, const char *name, struct tb_gguf_tensor *out);

/* Appended after the first version of this header. */

/* File offset of the data section (the tensor offsets are relative to it). */
uint64_t tb_gguf_data_offset(const tb_gguf_t *g);

/* True when `g` was opened from a file (tb_gguf_open: a private read-only mapping of it) and
 * the `n` bytes at `p` lie inside that mapping: pages a reader may release with
 * madvise(MADV_DONTNEED), since they read back from the file. */
bool tb_gguf_in_file_map(const tb_gguf_t *g, const void *p, size_t n);

/* Block geometry of a GGML tensor type: elements per block and bytes per block (1 and 4 for
 * F32, 32 and 34 for Q8_0, 256 and 210 for Q6_K, ...).  False for a type this reader does not
 * know (tb_gguf_open refuses tensors of such types). */
bool tb_gguf_type_block(uint32_t ggml_type, uint64_t *block_elems, uint64_t *block_bytes);

#ifdef __cplusplus
}
#endif

#endif /* TB_GGUF_H */
