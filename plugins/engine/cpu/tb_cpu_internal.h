/*
 * tb_cpu_internal.h - what the CPU kernel files share and nothing outside plugins/engine/cpu may
 * include: the per-ISA implementation table, the argument blocks of the parallel loops, and
 * small unaligned-access helpers.
 *
 * Each ISA lives in its own file compiled with its own -m flags (tb_cpu_generic.c: none,
 * tb_cpu_avx2.c: -mavx2 -mfma -mf16c, tb_cpu_avx512.c: + AVX-512 F/BW/VL/DQ/VNNI); only the table
 * of the ISA chosen at run time is ever called, so no AVX instruction runs on a CPU without it.
 */
#ifndef TB_CPU_INTERNAL_H
#define TB_CPU_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef __F16C__
#include <immintrin.h>
#endif

#include "tb_cpu_kernels.h"
#include "tb_dtype.h"
#include "tb_quant.h"
#include "tb_quant_kernels.h"

static inline uint16_t tb_cpu_load_u16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline void tb_cpu_store_u16(void *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

/* Quantizes n (multiple of 32) activations into int8 blocks: q = nearbyint(x * 127 / amax),
 * d = tb_cpu_act_scale(amax), sum = sum of q (NULL to skip).  The reference every ISA's
 * activation quantizer reproduces bit for bit. */
void tb_cpu_quantize_act_row(const float *x, int64_t n, int8_t *q, float *d, int32_t *sum);

/* The scale of a block of activations whose largest magnitude is `amax`: amax / 127 rounded to
 * f16 as tb_quant_act_scale_f16 rounds it (in the SIMD files with F16C's conversion, the same
 * IEEE round-to-nearest-even, two instructions).  The quants are computed with the f32
 * 127 / amax; only the stored scale is rounded, as llama.cpp's block_q8_0 stores it, so the same
 * file gives the same products (bench/engine/agreement.py: Q8_0 top-1 0.979 -> 0.996 against
 * llama.cpp; against a float64 reference no measurable change). */
static inline float tb_cpu_act_scale(float amax)
{
#ifdef __F16C__
    float d = amax / 127.0f;
    float h = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return tb_quant_act_scale_pick(h, d);
#else
    return tb_quant_act_scale_f16(amax / 127.0f);
#endif
}

/* The matmul dtypes of weights read through their packed copies (tb_mm_args.dtype only; never
 * a tb_cpu_weight's).  Their quantized activations use the portable layout (q, d, then c) with
 * c = -8 * sum(q) (Q4_0: folds in the nibbles' -8 offset) or -128 * sum(q) (Q8_0: folds in the
 * +128 bias of the packed values) per block: the int32 accumulator start. */
#define TB_CPU_Q4_0_PACKED ((tb_cpu_dtype_t)(TB_CPU_DTYPE_COUNT + 1))
#define TB_CPU_Q8_0_PACKED ((tb_cpu_dtype_t)(TB_CPU_DTYPE_COUNT + 2))

/* Packed layouts (tb_cpu_kernels.h), q8 = 0 for Q4_0, 1 for Q8_0: bytes of one block's values
 * for the 16 rows of a group (4 or 8 vectors of 64), of a pair of blocks (scales first), and of
 * a group; where block b's 16 f16 scales and its value vectors start. */
static inline size_t tb_cpu_pk_vbytes(int q8)
{
    return q8 ? 512 : 256;
}
static inline size_t tb_cpu_pk_pair_bytes(int q8)
{
    return 64 + 2 * tb_cpu_pk_vbytes(q8);
}
static inline size_t tb_cpu_pk_group_bytes(int q8, int64_t cols)
{
    return (size_t)((cols / TB_CPU_QBLOCK + 1) / 2) * tb_cpu_pk_pair_bytes(q8);
}
static inline const uint8_t *tb_cpu_pk_scales(const uint8_t *group, int64_t b, int q8)
{
    return group + (size_t)(b >> 1) * tb_cpu_pk_pair_bytes(q8) + (size_t)(b & 1) * 32;
}
static inline const uint8_t *tb_cpu_pk_values(const uint8_t *group, int64_t b, int q8)
{
    return group + (size_t)(b >> 1) * tb_cpu_pk_pair_bytes(q8) + 64 +
           (size_t)(b & 1) * tb_cpu_pk_vbytes(q8);
}
/* The accumulator start factor of a packed dtype's activations (see above), 1 for others. */
static inline int32_t tb_cpu_pk_cmul(tb_cpu_dtype_t wdt)
{
    return wdt == TB_CPU_Q4_0_PACKED ? -8 : wdt == TB_CPU_Q8_0_PACKED ? -128 : 1;
}

/* The packed K-quant layout "Kx16" (tb_cpu_kpack.c) of Q4_K, Q5_K, Q6_K and IQ4_XS matrices: rows in
 * groups of 16 (the last padded with zero rows), each group's super-blocks one after another as
 * 64-byte aligned records of every row's block b, lane i of each vector being row i:
 *   d[16] f32; Q4_K/Q5_K: dmin[16] f32, sc[8][16] u8, mn[2][16][4] u8 (per 32-element sub-block;
 *     the mins four sub-blocks per row, tb_cpu_kp_mn_off);
 *   Q6_K: sc[16][16] i8 (per 16 elements);
 *   nibbles: 32 vectors of 64 bytes; bytes 4i..4i+3 of vector k are bytes 4k..4k+3 of row i's
 *     128-byte nibble plane, whose byte 32c + l holds the low 4 bits of element 64c + l (low
 *     nibble) and of element 64c + 32 + l (high nibble): GGUF's Q4_K order;
 *   Q5_K: 8 vectors (vector k: bytes 4k..4k+3 of row i's 32-byte plane) whose byte l holds the
 *     fifth bit of element 64c + l in bit 2c and of 64c + 32 + l in bit 2c + 1 (GGUF's qh);
 *   Q6_K: 16 vectors of a 64-byte plane whose byte 32(c >> 1) + l holds the two high bits of
 *     element 64c + l at bit 4(c & 1) and of 64c + 32 + l at bit 4(c & 1) + 2.
 * The vectors are placed in the order the kernels read them: Q5_K's high-bit vector k right
 * after nibble vector k (tb_cpu_kp_vec_off, tb_cpu_kp_hvec_off); Q6_K's, after d and sc, per
 * chunk pair p = c >> 1 and per k, the high-bit vector 8p + k, then nibble vector k of chunk
 * 2p and of chunk 2p + 1 (tb_cpu_kp6_hi_off, tb_cpu_kp6_nib_off).  A record read front to back
 * is one stream; planes read side by side (two streams 2 KB apart) halved the batch-1 kernels'
 * memory bandwidth.
 * IQ4_XS: d[16] f32, sc[8][16] i8 (its 6-bit scales - 32), the nibble plane of its 4-bit table
 * indices (no high bits).
 * Codes are stored unsigned (Q6_K: + 32, as in the file).  Record bytes: 2432 (Q4_K, 144 * 16 =
 * 2304 stored), 2944 (Q5_K, 2816), 3392 (Q6_K, 3360), 2240 (IQ4_XS, 2176).  Values, scales and mins are the file's,
 * moved, not rounded (d and dmin widened to f32 exactly): the dots stay bit-equal to
 * tb_quant_dot. */
/* The 2-bit K-quants in the same frame (kinds 2 and 3, tb_cpu_kpack23.c): every row's block b
 * of a 16-row group in one 64-byte aligned record, lane i of each vector being row i:
 *   Q2_K: d[16] f32, dmin[16] f32, scales[16][16] u8 (the file's byte per 16 elements: scale
 *     in the low nibble, min in the high one), then the 2-bit plane;
 *   Q3_K: d[16] f32, sc[16][16] i8 (the 6-bit scales - 32), the 2-bit plane and the high-bit
 *     plane: 8 vectors of 64 bytes whose bytes 4i..4i+3 of vector k are bytes 4k..4k+3 of row
 *     i's 32-byte hmask (bit m of byte l: element 32m + l), vector k right after 2-bit vector
 *     k (tb_cpu_kp_vec_off, tb_cpu_kp_hvec_off);
 *   the 2-bit plane: 16 vectors of 64 bytes; bytes 4i..4i+3 of vector k are bytes 4k..4k+3 of
 *     row i's 64-byte qs, whose byte 32n + l holds element 128n + 32j + l at bits 2j (GGUF's
 *     order).
 * Codes are unsigned: Q3_K's signed code + 4 is its two low bits and its hmask bit (4 * bit).
 * Record bytes: 1408 (Q2_K, 84 * 16 = 1344 stored), 1856 (Q3_K, 1760). */
#define TB_CPU_KP2_BYTES 1408
#define TB_CPU_KP3_BYTES 1856
static inline int tb_cpu_kp_kind(tb_cpu_dtype_t dt)
{
    return dt == TB_CPU_Q2_K     ? 2
           : dt == TB_CPU_Q3_K   ? 3
           : dt == TB_CPU_Q4_K   ? 4
           : dt == TB_CPU_Q5_K   ? 5
           : dt == TB_CPU_Q6_K   ? 6
           : dt == TB_CPU_IQ4_XS ? 7
                                 : 0;
}
static inline bool tb_cpu_kp_has_min(int kind) /* Q4_K, Q5_K */
{
    return kind == 4 || kind == 5;
}
static inline size_t tb_cpu_kp_block_bytes(int kind)
{
    return kind == 2   ? TB_CPU_KP2_BYTES
           : kind == 3 ? TB_CPU_KP3_BYTES
           : kind == 4 ? 2432
           : kind == 5 ? 2944
           : kind == 6 ? 3392
                       : 2240;
}
/* Offsets inside a record, for every kind: the scales, the low (nibble or 2-bit) quant
 * plane, and the high-bit plane (Q3_K's hmask, Q5_K's and Q6_K's high bits). */
static inline size_t tb_cpu_kp_sc_off(int kind)
{
    return kind == 3 || kind >= 6 ? 64 : 128;
}
#define TB_CPU_KP_MN_OFF 256 /* Q4_K / Q5_K */
/* Where row i's min of sub-block s (0..7) lies: two 64-byte vectors, bytes 4i..4i+3 of vector q
 * holding sub-blocks 4q..4q+3, so one vpdpbusd multiplies four of them with four activation
 * bytes. */
static inline size_t tb_cpu_kp_mn_off(int i, int s)
{
    return TB_CPU_KP_MN_OFF + 64 * (size_t)(s / 4) + 4 * (size_t)i + (size_t)(s % 4);
}
static inline size_t tb_cpu_kp_nib_off(int kind) /* where the low plane starts (not Q6_K) */
{
    return kind == 3 ? 320 : kind == 7 ? 192 : 384;
}
/* The offset of vector v of the nibble (2-bit) plane, v = 8c + k (Q2_K / Q3_K: 8n + k), and of
 * vector k of the high-bit plane (Q3_K, Q5_K): where a plane of high bits is read beside the
 * first 8 vectors of the low plane, its vector k follows their vector k, so a record is read
 * front to back (Q6_K: tb_cpu_kp6_nib_off). */
static inline size_t tb_cpu_kp_vec_off(int kind, int v)
{
    const size_t base = tb_cpu_kp_nib_off(kind);
    if (kind != 3 && kind != 5) {
        return base + 64 * (size_t)v;
    }
    return v < 8 ? base + 128 * (size_t)v : base + 512 + 64 * (size_t)v;
}
static inline size_t tb_cpu_kp_hvec_off(int kind, int k)
{
    return tb_cpu_kp_nib_off(kind) + 128 * (size_t)k + 64;
}
/* Q6_K: the offset of nibble vector k of chunk c, and of high-bit vector 8p + k. */
static inline size_t tb_cpu_kp6_nib_off(int c, int k)
{
    return 320 + 1536 * (size_t)(c >> 1) + 192 * (size_t)k + 64 + 64 * (size_t)(c & 1);
}
static inline size_t tb_cpu_kp6_hi_off(int p, int k)
{
    return 320 + 1536 * (size_t)p + 192 * (size_t)k;
}
/* Bytes of one 16-row group of a Kx16 matrix of `cols` columns. */
static inline size_t tb_cpu_kp_group_bytes(int kind, int64_t cols)
{
    return (size_t)(cols / 256) * tb_cpu_kp_block_bytes(kind);
}
size_t tb_cpu_kpack_bytes(const struct tb_cpu_weight *w);
int tb_cpu_kpack(const struct tb_cpu_weight *w, void *dst, size_t dst_bytes);

/* One matmul, as the parallel loop sees it. */
struct tb_mm_args {
    const uint8_t *w;     /* weight rows (packed dtypes: the packed groups) */
    size_t w_row_bytes;   /* bytes per weight row (packed dtypes: per 16-row group) */
    tb_cpu_dtype_t dtype; /* the weight's, or TB_CPU_Q4_0_PACKED / TB_CPU_Q8_0_PACKED */
    int64_t rows, cols;
    const float *x; /* f32 activations (float paths) */
    size_t ldx;
    int n_tok;
    const uint8_t *qx; /* quantized activations (int8 paths), n_tok rows */
    size_t qx_stride;  /* bytes per quantized row */
    const float *bias;
    float *y;
    size_t ldy;
    const struct tb_quant_kernels *qk; /* the GGUF block dtypes' dots (tb_cpu_quant.c), or NULL */
    bool kpacked; /* w is a Kx16 copy (Q2_K..Q6_K, IQ4_XS; w_row_bytes per 16-row group) */
};

/* The Kx16 kernels' prefetch of the next 16-row group while a batch's token tiles sweep this
 * one.  With two or more tiles per group, the group's records come from memory during its first
 * tile only and from cache during the others, so memory idles most of the time and the next
 * group's first tile waits for it.  Instead, tile `ti` of the group's `ntile` asks for its
 * share of the next group's bytes, spread evenly over its `nrec` record steps, into L2
 * (`__builtin_prefetch` locality 2: prefetcht1; the L1 is smaller than a group): 1.1B Q4_K_M's
 * 16-sequence decode 1.2-1.3x faster (docs/kernels.md).  Only within [.., r1), the caller's rows: the group after them is
 * another task's, likely run by another core.  Batch 1 (one tile) fetches nothing: there the
 * hardware prefetcher already keeps the memory busy, and software prefetch measured slower. */
struct tb_cpu_pf {
    const uint8_t *p; /* the window's start, or NULL: nothing to fetch */
    size_t step;      /* bytes per record step, whole 64-byte lines */
};

static inline struct tb_cpu_pf tb_cpu_pf_tile(const struct tb_mm_args *a, int64_t g, int64_t r1,
                                              int ti, int ntile, int64_t nrec)
{
    struct tb_cpu_pf pf = {NULL, 0};
    if (ntile < 2 || nrec < 1 || (g + 1) * TB_CPU_PACK_ROWS >= r1) {
        return pf;
    }
    const size_t steps = (size_t)ntile * (size_t)nrec;
    pf.step = ((a->w_row_bytes + steps - 1) / steps + 63) & ~(size_t)63;
    const size_t off = (size_t)ti * (size_t)nrec * pf.step;
    if (off >= a->w_row_bytes) { /* a long prompt: the first tiles already fetched it all */
        return (struct tb_cpu_pf){NULL, 0};
    }
    pf.p = a->w + (size_t)(g + 1) * a->w_row_bytes + off;
    return pf;
}

/* The prefetches of record step `b` of a tile's window (always inlined: as a call, GCC finds
 * the function free of side effects and deletes the calls). */
static inline __attribute__((always_inline)) void tb_cpu_pf_rec(const uint8_t *p, size_t step,
                                                                int64_t b)
{
    if (p) {
        for (size_t o = 0; o < step; o += 64) {
            __builtin_prefetch(p + (size_t)b * step + o, 0, 2);
        }
    }
}

/* One attention call, as the parallel loop sees it. */
struct tb_attn_args {
    const struct tb_cpu_kv_layout *layout;
    const uint8_t *k, *v;
    size_t block_bytes; /* bytes per block (all kv heads) */
    size_t head_bytes;  /* bytes per (block, kv head): block_size * head_dim values */
    const struct tb_cpu_attn_seq *seqs;
    const float *q;
    size_t ldq;
    int n_heads, group;
    float scale;
    float softcap; /* 0: none; else scores become softcap * tanh(score / softcap) */
    float *out;
    size_t ldo;
    float *scratch;        /* per-thread scratch, scratch_floats each */
    size_t scratch_floats; /* >= group * head_dim + block_size */
};

struct tb_cpu_isa_impl {
    tb_cpu_isa_t isa;
    /* Bytes of one quantized activation row for an int8 matmul against `wdt` weights. */
    size_t (*act_row_bytes)(tb_cpu_dtype_t wdt, int64_t cols);
    /* Quantizes one activation row of `cols` floats for `wdt` weights into dst. */
    void (*quant_act)(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst);
    /* The same for the GGUF block dtypes (tb_cpu_dtype_gguf), bit-equal to tb_cpu_quant_act;
     * NULL: tb_cpu_quant_act itself. */
    void (*quant_act_gguf)(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst);
    /* Output rows [r0, r1) of a matmul, all n_tok tokens. */
    void (*matmul_rows)(const struct tb_mm_args *a, int64_t r0, int64_t r1);
    /* Output rows [r0, r1) (r0 a multiple of 16) of a matmul over Kx16 weights, Q8_K
     * activations (tb_cpu_quant_act), all n_tok tokens; bit-equal to tb_quant_dot. */
    void (*kpack_rows)(const struct tb_mm_args *a, int64_t r0, int64_t r1);
    /* Every query head of kv head `kvh` for query token `tok`; scratch: this thread's. */
    void (*attn_task)(const struct tb_attn_args *a, int tok, int kvh, float *scratch);
};

/* The portable quantized-activation layout (generic and AVX2): int8 q[cols], float d[cols/32],
 * int32 sum[cols/32], padded to 64 bytes. */
size_t tb_cpu_simple_act_row_bytes(tb_cpu_dtype_t wdt, int64_t cols);
void tb_cpu_simple_quant_act(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst);

/* The GGUF block dtypes (TB_CPU_Q4_1 .. TB_CPU_IQ4_XS, tb_cpu_quant.c): true, with the model
 * type in *out (may be NULL), for one of them; false for the others. */
bool tb_cpu_dtype_gguf(tb_cpu_dtype_t dt, tb_dtype_t *out);

/* Their quantized activation row: the blocks of tb_quant_act_for(type), padded to 64 bytes
 * (0 for other dtypes); the quantizer (tb_quant_act_quantize, portable C on every ISA); and
 * output rows [r0, r1) of a matmul through a->qk's dot, all n_tok tokens: every output is one
 * dot of a weight row with a token's activations, so results are batch invariant and, the
 * kernels being bit-equal to the reference, the same on every ISA. */
size_t tb_cpu_quant_act_row_bytes(tb_cpu_dtype_t wdt, int64_t cols);
void tb_cpu_quant_act(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst);

/* A Q8_K activation row is its nb blocks, then per block 16 bytes that the Kx16 kernels' min
 * term reads: the 8 sums of 32 activations t_s = bsums[2s] + bsums[2s + 1] split as
 * t_s = 128 * hi_s + lo_s, lo_s = t_s & 127 (bytes 0..7) and hi_s = t_s >> 7 (bytes 8..15, in
 * -32..31), so that sum_s mn_s * t_s is two int8 dot products (tb_cpu_kp_mn_off).  Written by
 * every Q8_K quantizer of tb_cpu_quant_act's kind. */
#define TB_CPU_Q8K_SPLIT_BYTES 16
static inline const int8_t *tb_cpu_q8k_split(const uint8_t *row, int64_t nb, int64_t b)
{
    return (const int8_t *)(row + (size_t)nb * sizeof(struct tb_block_q8_k) +
                            (size_t)b * TB_CPU_Q8K_SPLIT_BYTES);
}
static inline void tb_cpu_q8k_split_write(uint8_t *row, int64_t nb)
{
    const struct tb_block_q8_k *y = (const struct tb_block_q8_k *)row;
    for (int64_t b = 0; b < nb; b++) {
        int8_t *o = (int8_t *)(uintptr_t)tb_cpu_q8k_split(row, nb, b);
        for (int s = 0; s < 8; s++) {
            const int t = y[b].bsums[2 * s] + y[b].bsums[2 * s + 1];
            o[s] = (int8_t)(t & 127);
            o[8 + s] = (int8_t)(t >> 7); /* arithmetic: t = 128 * hi + lo exactly */
        }
    }
}
/* tb_cpu_quant_act with a vector quantizer of one Q8_K block (the ISA files' quant_act_gguf):
 * the Q8_K row's blocks by q8k_block, then their split sums; other activation types as
 * tb_cpu_quant_act. */
void tb_cpu_quant_act_with(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst,
                           void (*q8k_block)(const float *x, struct tb_block_q8_k *y));
void tb_cpu_quant_rows(const struct tb_mm_args *a, int64_t r0, int64_t r1);

void tb_cpu_kpack_rows_generic(const struct tb_mm_args *a, int64_t r0, int64_t r1);
void tb_cpu_kpack_rows_avx2(const struct tb_mm_args *a, int64_t r0, int64_t r1);
void tb_cpu_kpack_rows_avx512(const struct tb_mm_args *a, int64_t r0, int64_t r1);
/* tb_cpu_silu_exp's constants, which its AVX2 and AVX-512 forms use too (the same bits on every
 * ISA only with the same constants): the clamp, log2(e), 1.5 * 2^23 (adding and subtracting it
 * rounds to an integer), ln 2 in two parts (Cody-Waite), Cephes' polynomial for e^r. */
#define TB_SILU_LO (-87.3f)
#define TB_SILU_HI 88.3f
#define TB_SILU_LOG2E 1.44269504f
#define TB_SILU_ROUND 12582912.0f
#define TB_SILU_LN2_HI 0.693359375f
#define TB_SILU_LN2_LO (-2.12194440e-4f)
#define TB_SILU_P0 1.9875691500e-4f
#define TB_SILU_P1 1.3981999507e-3f
#define TB_SILU_P2 8.3334519073e-3f
#define TB_SILU_P3 4.1665795894e-2f
#define TB_SILU_P4 1.6666665459e-1f
#define TB_SILU_P5 5.0000001201e-1f

/* e^x in f32 for silu, about 1 ulp: x clamped to [-87.3, 88.3] (the result stays a normal
 * float), x = n ln 2 + r with n rounded to nearest by adding and subtracting 1.5 * 2^23 and ln 2
 * split in two (Cody and Waite), e^r by a degree-7 polynomial (Cephes' expf coefficients), times
 * 2^n built in the exponent bits.  Plain multiplies and adds in a fixed order (no fused
 * multiply-add), so tb_cpu_silu_mul_avx512 reproduces it bit for bit; a NaN stays a NaN. */
static inline float tb_cpu_silu_exp(float x)
{
    if (!(x == x)) {
        return x;
    }
    x = x < TB_SILU_LO ? TB_SILU_LO : x > TB_SILU_HI ? TB_SILU_HI : x;
    const float n = (x * TB_SILU_LOG2E + TB_SILU_ROUND) - TB_SILU_ROUND;
    const float r = (x - n * TB_SILU_LN2_HI) - n * TB_SILU_LN2_LO;
    float p = TB_SILU_P0;
    p = p * r + TB_SILU_P1;
    p = p * r + TB_SILU_P2;
    p = p * r + TB_SILU_P3;
    p = p * r + TB_SILU_P4;
    p = p * r + TB_SILU_P5;
    const float e = p * r * r + r + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}
/* tb_cpu_silu_mul for n a multiple of 16 (tb_cpu_avx512.c) / of 8 (tb_cpu_avx2.c). */
void tb_cpu_silu_mul_avx512(float *out, const float *gate, const float *up, int64_t n);
void tb_cpu_silu_mul_avx2(float *out, const float *gate, const float *up, int64_t n);

/* tb_cpu_quant_act with AVX-512 / AVX2 for the Q8_K activations (K-quants, IQ4_XS), bit for
 * bit. */
void tb_cpu_quant_act_avx512(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst);
void tb_cpu_quant_act_avx2(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst);
/* The same for Q2_K and Q3_K (kinds 2 and 3, tb_cpu_kpack23*.c), which the above call. */
struct tb_quant_unpacked;
struct tb_block_q8_k;
/* Writes row i's part of one zeroed record from block `u` (NULL: a padding row). */
void tb_cpu_kpack23_block(uint8_t *rec, int kind, int i, const struct tb_quant_unpacked *u);
/* Row i's contribution of one record with Q8_K block `y` (the reference's f32 step). */
float tb_cpu_kpack23_dot(const uint8_t *rec, int kind, int i, const struct tb_block_q8_k *y);
void tb_cpu_kpack23_rows_avx2(const struct tb_mm_args *a, int64_t r0, int64_t r1);
void tb_cpu_kpack23_rows_avx512(const struct tb_mm_args *a, int64_t r0, int64_t r1);

extern const struct tb_cpu_isa_impl tb_cpu_impl_generic;
extern const struct tb_cpu_isa_impl tb_cpu_impl_avx2;
extern const struct tb_cpu_isa_impl tb_cpu_impl_avx512;

#endif /* TB_CPU_INTERNAL_H */
