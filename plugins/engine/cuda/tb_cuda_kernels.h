/*
 * tb_cuda_kernels.h - the CUDA engine's kernels, one launch function per op (each op lives in
 * its own .cu file beside this header).  The backend (tb_cuda_backend.c) runs a forward pass
 * with these over device memory from tb_cuda_rt.h.
 *
 * Two builds of the same sources (docs/engine-cuda.md):
 *  - nvcc for sm_80 / sm_90 (+ compute_90 PTX): pointers are device pointers, launches are
 *    asynchronous on `stream` (a cudaStream_t; NULL is the default stream).
 *  - the host emulation (tb_cuda_compat.h, libtb_cuda_emu.a): pointers are host pointers,
 *    launches run to completion before returning; `stream` is ignored.  The unit tests use it.
 *
 * Errors: every function returns 0, TB_EINVAL for arguments that break the documented contract
 * (checked on the host, cheaply, before launching), TB_ENOTSUP for a shape the kernels do not
 * cover, or TB_EIO when the launch itself fails.  Nothing here allocates; buffers are borrowed
 * for the call (for the stream's work, in the GPU build).
 *
 * Batch invariance: every output of the GEMVs and of decode attention is reduced in one fixed
 * order that depends only on its own row, token and sequence, so a sequence's results are bit
 * for bit the same whatever else shares the launch.
 *
 * Thread-safety: reentrant; no global state.
 */
#ifndef TB_CUDA_KERNELS_H
#define TB_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Stored element formats; the values match tb_cpu_dtype_t and GGML's meaning of Q8_0/Q4_0. */
typedef enum {
    TB_CUDA_F32 = 0,
    TB_CUDA_F16 = 1,
    TB_CUDA_BF16 = 2,
    TB_CUDA_Q8_0 = 3,
    TB_CUDA_Q4_0 = 4,
    TB_CUDA_Q2_K = 9,
    TB_CUDA_Q3_K = 10,
    TB_CUDA_Q4_K = 11,
    TB_CUDA_Q5_K = 12,
    TB_CUDA_Q6_K = 13,
    TB_CUDA_IQ4_XS = 14,
} tb_cuda_dtype_t;

#define TB_CUDA_QBLOCK 32  /* values per Q8_0 / Q4_0 / q8_1 block */
#define TB_CUDA_KBLOCK 256 /* values per K-quant super-block */

/* Whether `dt` is one of the 256-value super-block types the kernels compute natively (the
 * K-quants Q2_K..Q6_K and IQ4_XS; "K-quant" below includes IQ4_XS). */
static inline int tb_cuda_dtype_is_k(tb_cuda_dtype_t dt)
{
    return dt >= TB_CUDA_Q2_K && dt <= TB_CUDA_IQ4_XS;
}

/* Bytes per super-block of a repacked K-quant matrix in `data` (the quants: Q2_K 64, Q3_K 96,
 * Q4_K 128, Q5_K 160, Q6_K 192, IQ4_XS 128) and in `scales` (16 for each); 0 for other types. */
static inline int tb_cuda_k_quant_bytes(tb_cuda_dtype_t dt)
{
    return dt == TB_CUDA_Q2_K     ? 64
           : dt == TB_CUDA_Q3_K   ? 96
           : dt == TB_CUDA_Q4_K   ? 128
           : dt == TB_CUDA_Q5_K   ? 160
           : dt == TB_CUDA_Q6_K   ? 192
           : dt == TB_CUDA_IQ4_XS ? 128
                                  : 0;
}

/* f16 values per super-block in `super_d`: Q2_K 2 (d, dmin), Q3_K and Q6_K 1 (d), else 0. */
static inline int tb_cuda_k_super_d(tb_cuda_dtype_t dt)
{
    return dt == TB_CUDA_Q2_K ? 2 : dt == TB_CUDA_Q3_K || dt == TB_CUDA_Q6_K ? 1 : 0;
}

/* A weight matrix in the layout the GEMV and embedding kernels read (`rows` outputs, each
 * `cols` inputs long).  F32/F16/BF16: `data` is rows x cols elements, row-major; cols must be a
 * multiple of 8 (F16/BF16) or 4 (F32) so rows stay 16-byte aligned.  Q8_0/Q4_0: the GGML
 * blocks split by tb_cuda_repack_q into `data` (Q8_0: rows x cols int8; Q4_0: rows x cols/2
 * bytes, each 16-byte group holding one block's nibbles in GGML's order: byte j = value j in
 * the low nibble, value j + 16 in the high one) and `scales` (rows x cols/32 f16 block
 * scales); cols a multiple of 32.  `data` 16-byte aligned.
 * Q2_K/Q3_K/Q4_K/Q5_K/Q6_K: GGUF super-blocks of 256 values split by tb_cuda_repack_k, per
 * super-block (rows x cols/256 of them, in order) into 16-byte-aligned parts:
 *   `data`: the quants (tb_cuda_k_quant_bytes): Q2_K its qs[64]; Q3_K hmask[32] then qs[64];
 *           Q4_K qs[128]; Q5_K qh[32] then qs[128]; Q6_K ql[128] then qh[64]; IQ4_XS qs[128];
 *           in GGUF's bit order;
 *   `scales`: a 16-byte record: Q2_K its 16 scale/min bytes; Q3_K its 12 packed scale bytes
 *           (then 4 zero bytes); Q4_K/Q5_K the block's d, dmin and 12 packed scale bytes as
 *           stored; Q6_K its 16 int8 scales; IQ4_XS its d, scales_h[2], scales_l[4] (then 8
 *           zero bytes);
 *   `super_d`: Q2_K the f16 pair {d, dmin}; Q3_K and Q6_K the f16 d; NULL for the others.
 * cols a multiple of 256; `data` and `scales` 16-byte aligned. */
struct tb_cuda_weight {
    tb_cuda_dtype_t dtype;
    int64_t rows;
    int64_t cols;
    const void *data;
    const uint16_t *scales;  /* Q8_0/Q4_0 and the K-quants, else NULL */
    const uint16_t *super_d; /* Q2_K, Q3_K, Q6_K only, else NULL */
};

/* Activations quantized for the integer GEMV ("q8_1": 32 int8 values per block with the
 * block's scale and scaled sum): qs is n_tok x cols int8 (16-byte aligned rows: cols a
 * multiple of 32), ds is n_tok x cols/32 pairs {d, d * sum(q)}. */
struct tb_cuda_q8_act {
    int8_t *qs;
    float *ds;
    int64_t cols;
    int n_tok;
};

/* Splits `rows` x `cols` GGML Q8_0 or Q4_0 blocks (`blocks`, rows contiguous, no alignment
 * needed) into the layout above: `qs` (rows x cols or rows x cols/2 bytes) and `scales`. */
int tb_cuda_repack_q(tb_cuda_dtype_t dtype, const void *blocks, int64_t rows, int64_t cols,
                     void *qs, uint16_t *scales, void *stream);

/* Splits `rows` x `cols` GGUF Q2_K..Q6_K super-blocks (no alignment needed) into the layout
 * above: `qs` (rows x cols/256 x tb_cuda_k_quant_bytes bytes), `scales` (16 bytes per
 * super-block) and, for Q2_K/Q3_K/Q6_K, `super_d` (tb_cuda_k_super_d f16 values per
 * super-block; may be NULL for the others).  The bytes are moved, not changed. */
int tb_cuda_repack_k(tb_cuda_dtype_t dtype, const void *blocks, int64_t rows, int64_t cols,
                     void *qs, void *scales, uint16_t *super_d, void *stream);

/* out[t] = row tokens[t] of `table` as floats (the embedding lookup), n_tok rows of
 * table->cols floats with stride ldo.  An id outside [0, rows) gives a row of zeros. */
int tb_cuda_embed(const struct tb_cuda_weight *table, const int32_t *tokens, int n_tok,
                  float *out, size_t ldo, void *stream);

/* RMSNorm over n_rows rows of n floats (stride n), fused with the residual add before it:
 * when `residual` is not NULL, first x += residual (written back to x); then
 * y = x / sqrt(mean(x^2) + eps) * weight (weight NULL: no scaling).  y may equal x. */
int tb_cuda_rmsnorm(float *y, float *x, const float *residual, const float *weight, int64_t n,
                    int n_rows, float eps, void *stream);

/* out[i] = a[i] + b[i] for n floats; out may equal a or b. */
int tb_cuda_add(float *out, const float *a, const float *b, int64_t n, void *stream);

/* out[i] = silu(gate[i]) * up[i] for n floats; out may equal gate or up. */
int tb_cuda_swiglu(float *out, const float *gate, const float *up, int64_t n, void *stream);

/* y[t][c] = x[t][c] as f16 or bf16 (dtype TB_CUDA_F16 / TB_CUDA_BF16; round to nearest even)
 * for n_tok rows of `cols` values (strides ldx, ldy in elements): the activations of the
 * prefill GEMMs. */
int tb_cuda_convert(const float *x, size_t ldx, int n_tok, int64_t cols, tb_cuda_dtype_t dtype,
                    void *y, size_t ldy, void *stream);

/* y[t][o] += bias[o] for n_tok rows of `rows` floats (stride ldy). */
int tb_cuda_bias_add(float *y, size_t ldy, int n_tok, int64_t rows, const float *bias,
                     void *stream);

/* Rotary embedding of q and k in one launch, in place.  q: n_tok rows of n_q_heads * head_dim
 * floats (stride ldq); k likewise with n_k_heads (k may be NULL).  Token t is at position
 * pos[t]; pair i turns by pos * inv_freq[i] (rot_dim / 2 frequencies, Llama-3 or other scaling
 * already applied: tb_model_rope_inv_freq computes them).  mode 0: NEOX pairs (i, i + rot/2);
 * 1: interleaved pairs (2i, 2i + 1).  rot_dim even, <= head_dim; the rest passes through. */
int tb_cuda_rope(float *q, size_t ldq, int n_q_heads, float *k, size_t ldk, int n_k_heads,
                 int n_tok, const int32_t *pos, int head_dim, int rot_dim, const float *inv_freq,
                 int mode, void *stream);

/* y[t][o] = sum_i x[t][i] * W[o][i] (+ bias[o]) for F32/F16/BF16 weights.  x: n_tok rows of
 * w->cols floats (stride ldx, a multiple of 4, 16-byte aligned); y: n_tok rows, stride ldy.
 * The bias is how a model's Q/K/V bias is added (fused). */
int tb_cuda_gemv(const struct tb_cuda_weight *w, const float *x, size_t ldx, int n_tok,
                 const float *bias, float *y, size_t ldy, void *stream);

/* Quantizes n_tok rows of `cols` floats (stride ldx) into `act` (act->cols == cols, act->n_tok
 * >= n_tok): per block of 32, d = max|x| / 127, q = round-to-nearest-even(x / d). */
int tb_cuda_quantize_q8_1(const float *x, size_t ldx, int n_tok, const struct tb_cuda_q8_act *act,
                          void *stream);

/* y[t][o] = sum over blocks of d_w * (d_x * dot(q_w, q_x)) for Q8_0/Q4_0 weights (Q4_0 values
 * are nibble - 8), integer dot products (dp4a), (+ bias[o]).  `act` from tb_cuda_quantize_q8_1
 * with act->cols == w->cols; n_tok <= act->n_tok. */
int tb_cuda_gemv_q(const struct tb_cuda_weight *w, const struct tb_cuda_q8_act *act, int n_tok,
                   const float *bias, float *y, size_t ldy, void *stream);

/* The same for Q2_K..Q6_K weights (gemv_k.cu), against the same q8_1 activations: per
 * 32-value sub-block (Q4_K/Q5_K) d * sc * d_x * dot(q, q_x) - dmin * m * d_x * sum(q_x); per
 * 16-value group d * sc * d_x * (dot(q, q_x) - 32 * sum(q_x)) (Q6_K), the same with 4 (Q3_K),
 * d * sc * d_x * dot(q, q_x) - dmin * m * d_x * sum(q_x) (Q2_K); per 32-value sub-block
 * d * sc * d_x * dot(table[q], q_x) (IQ4_XS).  Integer dot products (dp4a),
 * fixed-order sums.  w->cols a multiple of 256. */
int tb_cuda_gemv_k(const struct tb_cuda_weight *w, const struct tb_cuda_q8_act *act, int n_tok,
                   const float *bias, float *y, size_t ldy, void *stream);

/* One layer's paged K (and as much V) cache, f16: n_blocks blocks, each n_kv_heads tiles of
 * block_size rows of head_dim values ([block][kv_head][slot][head_dim]), so a key or value row
 * is contiguous and read with 128-bit loads.  Block ids and the slot mapping are those of the
 * engine's KV manager: token slot `pos` of a sequence is block table[pos / block_size], row
 * pos % block_size; a flat slot is block * block_size + row. */
struct tb_cuda_kv_layout {
    int block_size; /* 1..256 */
    int n_kv_heads; /* >= 1 */
    int head_dim;   /* 8, 16, 32, 64, 128 or 256 */
    int64_t n_blocks;
};

/* Writes n_tok tokens' K and V (rows of n_kv_heads * head_dim floats, strides ldk / ldv) into
 * flat slots `slots[t]`, as f16; a negative slot skips the token, one beyond the cache too. */
int tb_cuda_kv_write(const struct tb_cuda_kv_layout *layout, uint16_t *k_cache, uint16_t *v_cache,
                     int n_tok, const int32_t *slots, const float *k, size_t ldk, const float *v,
                     size_t ldv, void *stream);

/* The sequences of one attention call.  block_tables is n_seqs rows of max_blocks block ids;
 * ctx_lens[s] is how many tokens of sequence s are in the cache (its new tokens included).
 * Prefill only: q_start[s] is the first row of q / out holding s's queries and q_lens[s] how
 * many there are; they are its last q_lens[s] positions (ctx_len - q_len .. ctx_len - 1).
 * Decode: row s of q is sequence s's one query, at position ctx_len - 1.  Block ids outside
 * [0, n_blocks) are not read (their tokens are skipped): the caller validates tables. */
struct tb_cuda_attn_batch {
    int n_seqs;
    const int32_t *block_tables;
    int max_blocks;
    const int32_t *ctx_lens;
    const int32_t *q_start; /* prefill only */
    const int32_t *q_lens;  /* prefill only */
    int max_ctx;            /* >= every ctx_len (sizes the grid) */
    int max_q_len;          /* prefill only: >= every q_len */
};

/* Floats of scratch tb_cuda_attn_decode needs for this shape. */
size_t tb_cuda_attn_decode_scratch_floats(int n_seqs, int n_heads, int head_dim, int max_ctx,
                                          int split);

/* Decode attention: one query per sequence (q row s: n_heads * head_dim floats after rope,
 * stride ldq), GQA (query head h reads kv head h / (n_heads / n_kv_heads)), over the paged
 * cache.  Each sequence's context is cut into splits of `split` tokens (a multiple of 32, at
 * most 256; fixed by the caller for a whole deployment), each split's softmax partials go to
 * `scratch` and a second kernel combines them in split order.  scale 0 means
 * 1 / sqrt(head_dim).  A sequence with ctx_len 0 gets zeros. */
int tb_cuda_attn_decode(const struct tb_cuda_kv_layout *layout, const uint16_t *k_cache,
                        const uint16_t *v_cache, const struct tb_cuda_attn_batch *batch,
                        const float *q, size_t ldq, int n_heads, float scale, int split,
                        float *scratch, float *out, size_t ldo, void *stream);

/* Prefill attention: tiles of 16 queries against tiles of 32 keys read from the paged cache
 * (the chunk's own K/V written first with tb_cuda_kv_write), causal, online softmax, GQA.
 * head_dim at most 128 here.  Layout of q / out as tb_cuda_attn_decode, rows per batch. */
int tb_cuda_attn_prefill(const struct tb_cuda_kv_layout *layout, const uint16_t *k_cache,
                         const uint16_t *v_cache, const struct tb_cuda_attn_batch *batch,
                         const float *q, size_t ldq, int n_heads, float scale, float *out,
                         size_t ldo, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* TB_CUDA_KERNELS_H */
