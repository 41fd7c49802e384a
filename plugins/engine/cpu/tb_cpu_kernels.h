/*
 * tb_cpu_kernels.h - the CPU engine's compute kernels: matmul over stored weight formats (F32,
 * F16, BF16, Q8_0, Q4_0), the small per-token ops (rmsnorm, rope, silu*up, add, softmax, argmax)
 * and attention over a paged KV cache.
 *
 * Model:
 *  - A tb_cpu_kernels_t is a kernel context: it borrows a tb_threadpool_t, picks an instruction
 *    set at creation (runtime dispatch: AVX-512 when the CPU has F/BW/VL/DQ/VNNI, else
 *    AVX2+FMA+F16C, else portable C) and owns scratch memory (quantized activations, attention
 *    temporaries).  One build therefore runs on any x86-64 machine.
 *  - Weights are used in their stored format: a quantized or half-precision row is decoded in
 *    registers, never expanded into a float copy of the matrix.  The layout is GGUF's / HF's: a
 *    matrix with `rows` output features, each row `cols` input features long, rows contiguous.
 *  - Activations are f32.  For Q8_0/Q4_0 weights each activation row is first quantized to 8-bit
 *    blocks of 32 (quants round x * 127 / max|x| to nearest even; the scale max|x| / 127 is
 *    rounded to f16, as llama.cpp's block_q8_0 stores it), as llama.cpp does, and the dot
 *    products run on int8 instructions (AVX512-VNNI vpdpbusd, AVX2 vpmaddubsw).  docs/kernels.md
 *    gives the accuracy this costs.  The other GGUF block types take their activations in the
 *    format they are designed for (tb_quant.h: Q8_K blocks of 256 for the K-quants and IQ4_XS,
 *    Q8_32 blocks of 32 for Q4_1, Q5_0, Q5_1, IQ4_NL), quantized once per matmul, and the dots
 *    are tb_quant_kernels.h's for the context's ISA: bit-equal to the reference tb_quant_dot
 *    on every ISA.
 *
 * Thread-safety: a context is used by one thread at a time (the thread that drives the forward
 * pass); the pool's workers run inside calls only.  The pure functions (dtype helpers, ops) are
 * reentrant.  Nothing here keeps global mutable state.
 *
 * Errors: functions that can fail return 0 or a negative TB_E* code (schemas/tb_errors.h):
 * TB_EINVAL for arguments that break the documented contract (checked cheaply, never asserted),
 * TB_ENOMEM when scratch memory cannot grow, TB_ENOTSUP for a dtype or ISA the call cannot do.
 */
#ifndef TB_CPU_KERNELS_H
#define TB_CPU_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Data types                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Stored element formats.  Block formats (Q8_0, Q4_0) hold 32 values per block:
 *  Q8_0: f16 scale d, then 32 int8 q; value = d * q.                      34 bytes per block.
 *  Q4_0: f16 scale d, then 16 bytes; byte j holds value j in its low nibble and value j + 16 in
 *        its high nibble; value = d * (nibble - 8).                       18 bytes per block.
 * These are bit-identical to GGML's block_q8_0 / block_q4_0.
 * The other GGUF block types (Q4_1 .. IQ4_XS) are the model's tb_dtype_t types of the same
 * name, laid out as plugins/common/tb_dtype.h documents (32-element blocks for Q4_1, Q5_0, Q5_1,
 * IQ4_NL; 256-element super-blocks for the K-quants and IQ4_XS).  The kernels compute them with
 * the shared integer dots of tb_quant_kernels.h; tb_cpu_quantize_row does not write them. */
typedef enum {
    TB_CPU_F32 = 0,
    TB_CPU_F16 = 1,
    TB_CPU_BF16 = 2,
    TB_CPU_Q8_0 = 3,
    TB_CPU_Q4_0 = 4,
    TB_CPU_Q4_1 = 5,
    TB_CPU_Q5_0 = 6,
    TB_CPU_Q5_1 = 7,
    TB_CPU_IQ4_NL = 8,
    TB_CPU_Q2_K = 9,
    TB_CPU_Q3_K = 10,
    TB_CPU_Q4_K = 11,
    TB_CPU_Q5_K = 12,
    TB_CPU_Q6_K = 13,
    TB_CPU_IQ4_XS = 14,
    TB_CPU_DTYPE_COUNT = 15,
} tb_cpu_dtype_t;

/* The dtypes below this one are the ones tb_cpu_quantize_row can write (F32 .. Q4_0). */
#define TB_CPU_DTYPE_WRITABLE 5

#define TB_CPU_QBLOCK 32 /* values per Q8_0 / Q4_0 block */

/* Static description of a dtype. */
struct tb_cpu_dtype_info {
    const char *name;   /* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", ... (tb_dtype_name's) */
    int block_size;     /* values per block: 1 for F32/F16/BF16, 32 or 256 for the block types */
    int block_bytes;    /* bytes per block: 4, 2, 2, 34, 18, ... */
    uint32_t ggml_type; /* GGML type id: 0, 1, 30, 8, 2, ... */
};

/* Descriptor of `dt`, or NULL when out of range.  Points to static storage. */
const struct tb_cpu_dtype_info *tb_cpu_dtype_info(tb_cpu_dtype_t dt);

/* Maps a GGML type id (as in GGUF tensor infos) to our dtype; TB_ENOTSUP for other types. */
int tb_cpu_dtype_from_ggml(uint32_t ggml_type, tb_cpu_dtype_t *out);

/* Bytes of one row of `n` values, or 0 when n is not a multiple of the block size (or dt is
 * invalid). */
size_t tb_cpu_dtype_row_bytes(tb_cpu_dtype_t dt, int64_t n);

/* Scalar conversions (IEEE binary16 with subnormals, inf and NaN; bfloat16 rounds to nearest
 * even, NaN stays NaN). */
float tb_cpu_f16_to_f32(uint16_t h);
uint16_t tb_cpu_f32_to_f16(float f);
float tb_cpu_bf16_to_f32(uint16_t h);
uint16_t tb_cpu_f32_to_bf16(float f);

/* Decodes one stored row of `n` values into `dst` (n floats): the embedding lookup (every dtype;
 * the GGUF block types through tb_quant_dequantize, bit-exact with the gguf package).  TB_EINVAL
 * when n is not a multiple of the block size.  Buffers are borrowed; no allocation. */
int tb_cpu_dequantize_row(tb_cpu_dtype_t dt, const void *src, float *dst, int64_t n);

/* Encodes `n` floats as one stored row into `dst` (tb_cpu_dtype_row_bytes(dt, n) bytes) with the
 * same rounding as GGML's reference quantizers (Q8_0: d = max|x|/127, q = roundf(x/d), halves
 * away from zero; Q4_0: d = (the value of largest magnitude)/-8, q = min(15, trunc(x/d + 8.5))),
 * so rows it writes match files GGML tools write.  F16/BF16 round to nearest even.  For tests,
 * tools and writing test models; TB_EINVAL as above, TB_ENOTSUP for the dtypes from
 * TB_CPU_DTYPE_WRITABLE on (no encoder here). */
int tb_cpu_quantize_row(tb_cpu_dtype_t dt, const float *src, void *dst, int64_t n);

/* ------------------------------------------------------------------------------------------ */
/* Context and instruction-set dispatch                                                        */
/* ------------------------------------------------------------------------------------------ */

typedef enum {
    TB_CPU_ISA_GENERIC = 0, /* portable C, any x86-64 (and any other CPU) */
    TB_CPU_ISA_AVX2 = 1,    /* AVX2 + FMA + F16C */
    TB_CPU_ISA_AVX512 = 2,  /* AVX-512 F/BW/VL/DQ + VNNI (plus the AVX2 set) */
} tb_cpu_isa_t;

typedef struct tb_cpu_kernels tb_cpu_kernels_t;

/* Best ISA this CPU (and OS) supports. */
tb_cpu_isa_t tb_cpu_isa_detect(void);

/* Name of an ISA level: "generic", "avx2", "avx512". */
const char *tb_cpu_isa_name(tb_cpu_isa_t isa);

/* Creates a kernel context over `pool` (borrowed: it must outlive the context; NULL runs
 * everything on the calling thread).  The ISA is the detected best, lowered by the environment
 * variable TB_CPU_ISA=generic|avx2|avx512 when set (a level above what the CPU has is refused
 * with TB_ENOTSUP; an unknown value with TB_EINVAL).  On success the caller owns *out; destroy
 * with tb_cpu_kernels_destroy. */
int tb_cpu_kernels_new(tb_threadpool_t *pool, tb_cpu_kernels_t **out);

/* Frees the context and its scratch; sets *self_p to NULL; accepts NULL. */
void tb_cpu_kernels_destroy(tb_cpu_kernels_t **self_p);

/* Forces an ISA level (tests use it to exercise the AVX2 and generic paths on an AVX-512
 * machine).  TB_ENOTSUP when the CPU lacks it. */
int tb_cpu_kernels_set_isa(tb_cpu_kernels_t *self, tb_cpu_isa_t isa);
tb_cpu_isa_t tb_cpu_kernels_isa(const tb_cpu_kernels_t *self);

/* The pool given at creation (borrowed), or NULL. */
tb_threadpool_t *tb_cpu_kernels_pool(const tb_cpu_kernels_t *self);

/* ------------------------------------------------------------------------------------------ */
/* Matrix multiplication                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* A weight matrix in its stored format (borrowed: typically points into a memory-mapped model
 * file).  Row r starts at data + r * tb_cpu_dtype_row_bytes(dtype, cols).  For a block dtype
 * `cols` must be a whole number of its blocks (32 or 256 values); F32/F16/BF16 take any
 * cols >= 1.  No alignment is required. */
struct tb_cpu_weight {
    tb_cpu_dtype_t dtype;
    int64_t rows; /* output features */
    int64_t cols; /* input features */
    const void *data;
    /* Optional interleaved copy of a Q4_0 or Q8_0 matrix (tb_cpu_weight_pack), or NULL.  When
     * set, every matmul with this weight reads it instead of `data` (which stays valid for row
     * lookups such as the embedding). */
    const void *packed;
};

/* The packed layouts ("Q4_0x16", "Q8_0x16"): rows in groups of 16 (the last group padded with
 * zero rows), each group stored whole, one after the other.  Inside a group the blocks go in
 * pairs: the 16 rows' f16 scales of the first block (32 bytes), those of the second (32), then
 * per block the values as 64-byte vectors V0..V3 (Q4_0) or V0..V7 (Q8_0), where bytes
 * 4i..4i+3 of Vk are bytes 4k..4k+3 of row i's block values (Q4_0: its 16 nibble bytes; Q8_0:
 * its 32 int8 values plus 128, as unsigned bytes); 576 bytes per pair for Q4_0, 1088 for Q8_0.
 * One 512-bit load thus feeds 16 rows, and an int8 dot-product instruction adds 4 values of
 * each row into that row's lane.  Values and scales are GGML's, moved (Q8_0: offset), not
 * rounded: the copy is as large as the stored matrix (plus the padding to whole 16-row groups
 * and block pairs) and results keep the stored path's accuracy. */
#define TB_CPU_PACK_ROWS 16

/* Bytes of the packed copy of `w` (64-byte multiple); 0 when its dtype has no packed form
 * (F32, F16, BF16) or the shape is invalid. */
size_t tb_cpu_weight_packed_bytes(const struct tb_cpu_weight *w);

/* Writes the packed copy of w->data into dst (tb_cpu_weight_packed_bytes(w) bytes, 64-byte
 * aligned; borrowed).  TB_EINVAL for a weight without a packed form, a NULL or misaligned dst
 * or dst_bytes too small.  Reentrant; set w->packed = dst afterwards to use it. */
int tb_cpu_weight_pack(const struct tb_cpu_weight *w, void *dst, size_t dst_bytes);

/* y[t][o] = sum_i x[t][i] * W[o][i] (+ bias[o]) for t < n_tok, o < w->rows.
 *   x:    n_tok rows of w->cols floats, row stride ldx floats (>= cols).
 *   y:    n_tok rows of w->rows floats, row stride ldy floats (>= rows); must not overlap x.
 *   bias: w->rows floats or NULL.
 * Parallel over output rows.  Each weight tile is decoded once per block of up to 64 token rows
 * and reused across them (register blocking), so n_tok > 1 costs far less than n_tok calls.
 * Batch invariant: y[t] is bitwise the same whatever n_tok, t's place among the rows and the
 * thread count (every output sums in one fixed order), which the engine relies on so that a
 * request gets the same tokens alone and in any batch.
 * Uses the context's scratch for quantized activations (every block dtype): TB_ENOMEM when it
 * cannot grow.  All buffers are borrowed for the duration of the call. */
int tb_cpu_matmul(tb_cpu_kernels_t *self, const struct tb_cpu_weight *w, const float *x,
                  size_t ldx, int n_tok, const float *bias, float *y, size_t ldy);

/* One output of tb_cpu_matmul_multi: y = x . w^T (+ bias), as in tb_cpu_matmul.  Borrowed. */
struct tb_cpu_matmul_out {
    const struct tb_cpu_weight *w;
    const float *bias; /* w->rows floats or NULL */
    float *y;          /* n_tok rows, stride ldy >= w->rows */
    size_t ldy;
};

#define TB_CPU_MATMUL_MAX_OUTS 8

/* Several matmuls of the same input in one parallel loop (Q, K and V of a layer; gate and up):
 * the activations are quantized once and one dispatch covers every output's rows.  All weights
 * must share dtype and cols (else TB_EINVAL: call tb_cpu_matmul per weight); 1 ..
 * TB_CPU_MATMUL_MAX_OUTS outputs.
 * Results are identical to separate tb_cpu_matmul calls.  Otherwise as tb_cpu_matmul. */
int tb_cpu_matmul_multi(tb_cpu_kernels_t *self, const float *x, size_t ldx, int n_tok,
                        const struct tb_cpu_matmul_out *outs, int n_outs);

/* ------------------------------------------------------------------------------------------ */
/* Element-wise and per-row ops (reentrant, single-threaded, buffers borrowed)                 */
/* ------------------------------------------------------------------------------------------ */

/* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight, for n_rows rows of n floats (stride n).
 * weight may be NULL (no scaling).  y may equal x. */
void tb_cpu_rmsnorm(float *y, const float *x, const float *weight, int64_t n, int n_rows,
                    float eps);

/* Rotary position embedding, in place.
 *   x: n_tok rows, each n_heads * head_dim floats, row stride ldx floats.
 *   pos[t]: position of token t.
 *   inv_freq: rot_dim / 2 frequencies; pair i turns by angle pos * inv_freq[i].  The caller
 *       computes them (base^(-2i/rot_dim), with Llama-3 or other rope scaling applied).
 *   rot_dim: number of leading dims of each head that rotate (even, <= head_dim); the rest
 *       pass through.
 *   NEOX ("rotate half", HF weights): pairs (i, i + rot_dim/2).
 *   INTERLEAVED (GGUF llama weights, GGML's "normal" mode): pairs (2i, 2i + 1).
 * TB_EINVAL for an odd or too large rot_dim. */
typedef enum {
    TB_CPU_ROPE_NEOX = 0,
    TB_CPU_ROPE_INTERLEAVED = 1,
} tb_cpu_rope_mode_t;

int tb_cpu_rope(float *x, size_t ldx, int n_tok, const int32_t *pos, int n_heads, int head_dim,
                int rot_dim, const float *inv_freq, tb_cpu_rope_mode_t mode);

/* Fills inv_freq[i] = base^(-2i / rot_dim) for i < rot_dim / 2 (no scaling). */
void tb_cpu_rope_freqs(float *inv_freq, int rot_dim, float base);

/* out[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up, for n values.  out may equal
 * gate or up. */
void tb_cpu_silu_mul(float *out, const float *gate, const float *up, int64_t n);

/* out[i] = a[i] + b[i]; out may equal a or b. */
void tb_cpu_add(float *out, const float *a, const float *b, int64_t n);

/* In-place softmax over n values (max-subtracted, so large logits are safe).  n >= 1. */
void tb_cpu_softmax(float *x, int64_t n);

/* Index of the largest value (the first on ties; NaN never wins unless all are NaN); -1 when
 * n < 1. */
int64_t tb_cpu_argmax(const float *x, int64_t n);

/* ------------------------------------------------------------------------------------------ */
/* Paged KV cache and attention                                                                */
/* ------------------------------------------------------------------------------------------ */

/* Geometry of one layer's K (or V) cache: n_blocks blocks of block_size tokens, in `dtype`
 * (TB_CPU_F16, the default, or TB_CPU_F32).  Each block holds n_kv_heads tiles of
 * block_size * head_dim values, one per kv head ([block][kv_head][...]).  Inside a tile, V is
 * [slot][head_dim] (one row per token) and K is transposed, [head_dim][slot]: the scores of all
 * slots of a block then come from head_dim multiply-adds of a broadcast query value with one
 * contiguous K row, with no horizontal sums, and the output accumulates whole V rows.  Write only
 * through tb_cpu_kv_write.  Block ids come from the engine's KV manager; the kernels only read
 * and write them. */
struct tb_cpu_kv_layout {
    int block_size;       /* tokens per block (16 by default), 1..256 */
    int n_kv_heads;       /* >= 1 */
    int head_dim;         /* 1..512 */
    tb_cpu_dtype_t dtype; /* TB_CPU_F16 or TB_CPU_F32 */
    int64_t n_blocks;     /* blocks in this layer's cache */
};

/* Bytes one layer's K cache (and as many its V cache) needs; 0 for an invalid layout. */
size_t tb_cpu_kv_bytes(const struct tb_cpu_kv_layout *layout);

/* Checks a layout: TB_EINVAL naming nothing (the fields are documented above). */
int tb_cpu_kv_check(const struct tb_cpu_kv_layout *layout);

/* Writes n_tok tokens' K and V into the cache: token t goes to slot slots[t] % block_size of
 * block slots[t] / block_size (slots[t] = block_id * block_size + offset, as vLLM's slot
 * mapping).  k and v: n_tok rows of n_kv_heads * head_dim floats, strides ldk / ldv floats.
 * A negative slot skips the token (padding).  TB_EINVAL for a slot beyond the cache. */
int tb_cpu_kv_write(const struct tb_cpu_kv_layout *layout, void *k_cache, void *v_cache,
                    int n_tok, const int32_t *slots, const float *k, size_t ldk, const float *v,
                    size_t ldv);

/* Copies block `src` to block `dst` in both caches (copy-on-write of a shared prefix block
 * before a sequence appends to it).  TB_EINVAL for ids outside [0, n_blocks); src == dst does
 * nothing. */
int tb_cpu_kv_copy_block(const struct tb_cpu_kv_layout *layout, void *k_cache, void *v_cache,
                         int32_t src, int32_t dst);

/* One query token's view of its sequence. */
struct tb_cpu_attn_seq {
    const int32_t *block_table; /* the sequence's block ids, in order (borrowed) */
    int n_blocks;               /* entries in block_table */
    int ctx_len;                /* tokens of the sequence present in the cache */
    int pos;    /* this query's position: it attends to [0, min(pos+1, ctx_len)) */
    int window; /* sliding window, >= 0: when > 0, only positions
                                   > pos - window (this one and window - 1 before it) */
};

/* Attention for a batch of query tokens, each with its own sequence view (several queries of
 * one sequence, as in a prefill chunk, share the block table and differ in pos).
 *   q:   n_tok rows of n_heads * head_dim floats (after rope), stride ldq floats.
 *   out: n_tok rows of n_heads * head_dim floats, stride ldo floats; must not overlap q.
 *   n_heads: a multiple of layout->n_kv_heads (GQA; query head h reads kv head
 *       h / (n_heads / n_kv_heads)).
 *   scale: the score scale; 0 means 1 / sqrt(head_dim).
 * With a sliding window, blocks wholly before it are neither read nor checked (their table
 * entries may be anything); a window covering [0, pos] gives the same bits as none.
 * Softmax is computed online per block (running max and sum), in f32.  Parallel over
 * (query token, kv head): one task serves every query head of the group, so each K/V block is
 * read once per group.  A query that attends to no token gets zeros.  TB_EINVAL when a block id
 * it reads is outside [0, n_blocks), a table is too short for the tokens it must cover or a
 * window is negative; TB_ENOMEM when
 * scratch cannot grow.  Buffers are borrowed for the call. */
int tb_cpu_attention(tb_cpu_kernels_t *self, const struct tb_cpu_kv_layout *layout,
                     const void *k_cache, const void *v_cache, int n_tok,
                     const struct tb_cpu_attn_seq *seqs, const float *q, size_t ldq, int n_heads,
                     float scale, float *out, size_t ldo);

/* The same with logit soft-capping (Gemma 2): each scaled score s becomes
 * softcap * tanh(s / softcap) before the softmax; softcap 0 is tb_cpu_attention. */
int tb_cpu_attention_capped(tb_cpu_kernels_t *self, const struct tb_cpu_kv_layout *layout,
                            const void *k_cache, const void *v_cache, int n_tok,
                            const struct tb_cpu_attn_seq *seqs, const float *q, size_t ldq,
                            int n_heads, float scale, float softcap, float *out, size_t ldo);

#ifdef __cplusplus
}
#endif

#endif /* TB_CPU_KERNELS_H */
