/*
 * tb_cpu_avx2.c - kernels for x86-64 CPUs with AVX2, FMA and F16C (the baseline SIMD path;
 * compiled with those -m flags and called only after runtime detection).
 *
 * Same structure as tb_cpu_avx512.c with 256-bit registers and smaller tiles (16 registers).
 * Q8_0/Q4_0 use vpmaddubsw (unsigned x signed bytes -> int16 pairs) then vpmaddwd to int32:
 *  - Q8_0: |w| x (x with w's sign) keeps every pair sum below 2 * 127 * 128, so the int16 step
 *    cannot saturate;
 *  - Q4_0: nibbles (0..15) x activations, minus 8 * sum(activations) per block.
 * Quantized activations use the portable layout of tb_cpu_generic.c (q, then d, then sums).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "tb_cpu_internal.h"

#define AINLINE static inline __attribute__((always_inline))

#define TOK_BLOCK 64

/* While the first token tile of a multi-row tile runs, the next row tile is prefetched as one
 * sequential stream (see tb_cpu_avx512.c). */
AINLINE const uint8_t *s_next_tile(const struct tb_mm_args *a, int64_t r, int t0, const int R)
{
    if (R == 1 || t0 != 0 || r + 2 * R > a->rows) {
        return NULL;
    }
    return a->w + (size_t)(r + R) * a->w_row_bytes;
}

AINLINE float s_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AINLINE float s_hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AINLINE int32_t s_hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Activation quantization (portable layout, same numbers as tb_cpu_quantize_act_row)          */
/* ------------------------------------------------------------------------------------------ */

static void s_quant_act(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst)
{
    const int32_t cmul = tb_cpu_pk_cmul(wdt); /* packed weights want c = cmul * sum */
    const int64_t nb = cols / TB_CPU_QBLOCK;
    int8_t *q = (int8_t *)dst;
    float *d = (float *)(dst + cols);
    int32_t *sum = (int32_t *)(dst + cols + nb * 4);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * TB_CPU_QBLOCK;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
        }
        float amax = s_hmax(m);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i qi[4];
        __m256i s = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid));
            s = _mm256_add_epi32(s, qi[i]);
        }
        /* pack 4 x 8 int32 -> 32 int8 in order */
        __m256i p01 = _mm256_packs_epi32(qi[0], qi[1]);
        __m256i p23 = _mm256_packs_epi32(qi[2], qi[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + b * TB_CPU_QBLOCK), p);
        d[b] = tb_cpu_act_scale(amax);
        sum[b] = cmul * s_hsum_i32(s);
    }
}

static size_t s_act_row_bytes(tb_cpu_dtype_t wdt, int64_t cols)
{
    if (wdt != TB_CPU_Q8_0 && wdt != TB_CPU_Q4_0 && wdt != TB_CPU_Q4_0_PACKED &&
        wdt != TB_CPU_Q8_0_PACKED) {
        return 0;
    }
    size_t nb = (size_t)cols / TB_CPU_QBLOCK;
    return ((size_t)cols + nb * 8 + 63) / 64 * 64;
}

/* ------------------------------------------------------------------------------------------ */
/* Float-weight microkernel                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define FR 4
#define FT 2
/* The next tile goes to L2 only and the rows of this one to L1 FNEAR bytes ahead (see
 * tb_cpu_avx512.c: R long rows overflow L1). */
#define FNEAR 1024

AINLINE __m256 s_load_w(const uint8_t *p, const int dt)
{
    if (dt == TB_CPU_F32) {
        return _mm256_loadu_ps((const float *)p);
    }
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (dt == TB_CPU_F16) {
        return _mm256_cvtph_ps(h);
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AINLINE float s_load_w1(const uint8_t *p, const int dt)
{
    if (dt == TB_CPU_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    if (dt == TB_CPU_F16) {
        return _cvtsh_ss(tb_cpu_load_u16(p));
    }
    return tb_cpu_bf16_to_f32(tb_cpu_load_u16(p));
}

AINLINE void s_mk_float(const struct tb_mm_args *a, int64_t r, int t0, const int R, const int T,
                        const int dt)
{
    const int64_t n = a->cols;
    const int es = dt == TB_CPU_F32 ? 4 : 2;
    const uint8_t *w[FR];
    const float *x[FT];
    __m256 acc[FR][FT];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        w[i] = a->w + (size_t)(r + i) * a->w_row_bytes;
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            acc[i][j] = _mm256_setzero_ps();
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        x[j] = a->x + (size_t)(t0 + j) * a->ldx;
    }
    const uint8_t *pf = s_next_tile(a, r, t0, R);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 wv[FR];
        if (pf && ((k * es * R) & 63) == 0) { /* R * 8 * es bytes per step, one line at a time */
            _mm_prefetch((const char *)(pf + (size_t)k * es * R), _MM_HINT_T1);
            if (R * 8 * es > 64) {
                _mm_prefetch((const char *)(pf + (size_t)k * es * R + 64), _MM_HINT_T1);
            }
        }
        if (pf && ((k * es) & 63) == 0) { /* this tile's rows, FNEAR bytes ahead, into L1 */
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) {
                _mm_prefetch((const char *)(w[i] + k * es + FNEAR), _MM_HINT_T0);
            }
        }
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            wv[i] = s_load_w(w[i] + k * es, dt);
        }
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            __m256 xv = _mm256_loadu_ps(x[j] + k);
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) {
                acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        float b = a->bias ? a->bias[r + i] : 0.0f;
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            float s = s_hsum(acc[i][j]);
            for (int64_t kk = k; kk < n; kk++) {
                s += s_load_w1(w[i] + kk * es, dt) * x[j][kk];
            }
            a->y[(size_t)(t0 + j) * a->ldy + r + i] = s + b;
        }
    }
}

/* Batch 1: the tile kernel at FR rows x 1 token (see tb_cpu_avx512.c: each (row, token) output
 * sums in k order whatever the tile's shape, so the results are batch invariant). */
AINLINE void s_mv_float(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int dt)
{
    int64_t r = r0;
    for (; r + FR <= r1; r += FR) {
        s_mk_float(a, r, 0, FR, 1, dt);
    }
    for (; r < r1; r++) {
        s_mk_float(a, r, 0, 1, 1, dt);
    }
}

AINLINE void s_rows_float(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int dt)
{
    if (a->n_tok == 1) {
        s_mv_float(a, r0, r1, dt);
        return;
    }
    for (int tb = 0; tb < a->n_tok; tb += TOK_BLOCK) {
        int te = tb + TOK_BLOCK < a->n_tok ? tb + TOK_BLOCK : a->n_tok;
        int64_t r = r0;
        for (; r + FR <= r1; r += FR) {
            for (int t = tb; t < te; t += FT) {
                if (te - t >= 2) {
                    s_mk_float(a, r, t, FR, 2, dt);
                } else {
                    s_mk_float(a, r, t, FR, 1, dt);
                }
            }
        }
        for (; r < r1; r++) {
            for (int t = tb; t < te; t += FT) {
                if (te - t >= 2) {
                    s_mk_float(a, r, t, 1, 2, dt);
                } else {
                    s_mk_float(a, r, t, 1, 1, dt);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Quantized-weight microkernel                                                                */
/* ------------------------------------------------------------------------------------------ */

#define QR 2
#define QT 3

AINLINE void s_mk_quant(const struct tb_mm_args *a, int64_t r, int t0, const int R, const int T,
                        const int dt)
{
    const int64_t n = a->cols;
    const int64_t nb = n / TB_CPU_QBLOCK;
    const size_t bb = dt == TB_CPU_Q4_0 ? 18 : 34;
    const uint8_t *w[QR];
    const int8_t *xq[QT];
    const float *xd[QT];
    const int32_t *xs[QT];
    __m256 acc[QR][QT];
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        w[i] = a->w + (size_t)(r + i) * a->w_row_bytes;
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            acc[i][j] = _mm256_setzero_ps();
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        const uint8_t *row = a->qx + (size_t)(t0 + j) * a->qx_stride;
        xq[j] = (const int8_t *)row;
        xd[j] = (const float *)(row + n);
        xs[j] = (const int32_t *)(row + n + nb * 4);
    }
    const uint8_t *pf = s_next_tile(a, r, t0, R);
    for (int64_t b = 0; b < nb; b++) {
        __m256i wq[QR], wa[QR];
        if (pf) {
#pragma GCC unroll 4
            for (int l = 0; l < (R * (int)bb + 63) / 64; l++) {
                _mm_prefetch((const char *)(pf + (size_t)b * bb * R + 64 * l), _MM_HINT_T0);
            }
        }
        float dw[QR];
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const uint8_t *blk = w[i] + (size_t)b * bb;
            dw[i] = _cvtsh_ss(tb_cpu_load_u16(blk));
            if (dt == TB_CPU_Q4_0) {
                __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 2));
                __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(qs),
                                                    _mm_srli_epi16(qs, 4), 1);
                wq[i] = _mm256_and_si256(y, m4);
            } else {
                wq[i] = _mm256_loadu_si256((const __m256i *)(blk + 2));
                wa[i] = _mm256_sign_epi8(wq[i], wq[i]);
            }
        }
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xq[j] + b * TB_CPU_QBLOCK));
            float dx = xd[j][b];
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) {
                __m256i p;
                if (dt == TB_CPU_Q4_0) {
                    p = _mm256_madd_epi16(_mm256_maddubs_epi16(wq[i], xv), ones);
                    p = _mm256_sub_epi32(p, _mm256_set1_epi32(xs[j][b]));
                } else {
                    p = _mm256_madd_epi16(_mm256_maddubs_epi16(wa[i],
                                                               _mm256_sign_epi8(xv, wq[i])),
                                          ones);
                }
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw[i] * dx),
                                            acc[i][j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        float bias = a->bias ? a->bias[r + i] : 0.0f;
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            a->y[(size_t)(t0 + j) * a->ldy + r + i] = s_hsum(acc[i][j]) + bias;
        }
    }
}

#define QUANT_TILE_CASES(R, dt)                                                                  \
    switch (nt) {                                                                                \
    case 1:                                                                                      \
        s_mk_quant(a, r, t, R, 1, dt);                                                           \
        break;                                                                                   \
    case 2:                                                                                      \
        s_mk_quant(a, r, t, R, 2, dt);                                                           \
        break;                                                                                   \
    default:                                                                                     \
        s_mk_quant(a, r, t, R, 3, dt);                                                           \
        break;                                                                                   \
    }

/* Batch-1 row: one weight stream, the tile kernel at R = T = 1 (see s_mv_float: batch
 * invariance). */
AINLINE void s_mv_quant(const struct tb_mm_args *a, int64_t r, const int dt)
{
    s_mk_quant(a, r, 0, 1, 1, dt);
}

AINLINE void s_rows_quant(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int dt)
{
    if (a->n_tok == 1) {
        for (int64_t r = r0; r < r1; r++) {
            s_mv_quant(a, r, dt);
        }
        return;
    }
    for (int tb = 0; tb < a->n_tok; tb += TOK_BLOCK) {
        int te = tb + TOK_BLOCK < a->n_tok ? tb + TOK_BLOCK : a->n_tok;
        int64_t r = r0;
        for (; r + QR <= r1; r += QR) {
            for (int t = tb; t < te; t += QT) {
                int nt = te - t < QT ? te - t : QT;
                QUANT_TILE_CASES(QR, dt)
            }
        }
        for (; r < r1; r++) {
            for (int t = tb; t < te; t += QT) {
                int nt = te - t < QT ? te - t : QT;
                QUANT_TILE_CASES(1, dt)
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Packed Q4_0 / Q8_0 microkernel                                                              */
/* ------------------------------------------------------------------------------------------ */

#define PT 4 /* token rows per packed tile (8 weight rows: half a group) */

AINLINE __m256i s_bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Rows 16g + 8h .. + nrows x T tokens from t0; lane i is row 16g + 8h + i.
 *  - Q4_0: per block, eight vpmaddubsw (4 nibbles x 4 activations per lane, as int16 pairs of
 *    at most 2 * 15 * 127) are summed in int16 (at most 30480: exact), widened by vpmaddwd and
 *    started at c = -8 * sum(x).
 *  - Q8_0: the stored + 128 is removed (xor), and |w| x (x with w's sign) keeps every int16
 *    pair below 2 * 128 * 127; each vpmaddubsw is widened on its own (c is not used).
 * The block's sum is scaled by d_w * d_x and added to the row's float sum, block after block
 * (see tb_cpu_avx512.c: the same order for any T). */
AINLINE void s_mk_pk(const struct tb_mm_args *a, int64_t g, int h, int nrows, int t0, const int T,
                     const int q8)
{
    const int64_t n = a->cols, nb = n / TB_CPU_QBLOCK;
    const uint8_t *gw = a->w + (size_t)g * a->w_row_bytes;
    const int8_t *xq[PT];
    const float *xd[PT];
    const int32_t *xc[PT];
    __m256 acc[PT];
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        const uint8_t *row = a->qx + (size_t)(t0 + j) * a->qx_stride;
        xq[j] = (const int8_t *)row;
        xd[j] = (const float *)(row + n);
        xc[j] = (const int32_t *)(row + n + nb * 4);
        acc[j] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *v = tb_cpu_pk_values(gw, b, q8) + 32 * h;
        __m256 dw = _mm256_cvtph_ps(
            _mm_load_si128((const __m128i *)(tb_cpu_pk_scales(gw, b, q8) + 16 * h)));
        __m256i s32[PT];
        if (q8) {
#pragma GCC unroll 8
            for (int j = 0; j < T; j++) {
                s32[j] = _mm256_setzero_si256();
            }
#pragma GCC unroll 2
            for (int half = 0; half < 2; half++) {
                __m256i w[4], aw[4];
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    w[k] = _mm256_xor_si256(_mm256_load_si256(
                                                (const __m256i *)(v + 64 * (4 * half + k))),
                                            flip);
                    aw[k] = _mm256_sign_epi8(w[k], w[k]);
                }
#pragma GCC unroll 8
                for (int j = 0; j < T; j++) {
                    const int8_t *x = xq[j] + b * TB_CPU_QBLOCK + 16 * half;
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++) {
                        __m256i xs = _mm256_sign_epi8(s_bcast4(x + 4 * k), w[k]);
                        __m256i p = _mm256_maddubs_epi16(aw[k], xs);
                        s32[j] = _mm256_add_epi32(s32[j], _mm256_madd_epi16(p, ones));
                    }
                }
            }
        } else {
            __m256i lo[4], hi[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i raw = _mm256_load_si256((const __m256i *)(v + 64 * k));
                lo[k] = _mm256_and_si256(raw, m4);
                hi[k] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
#pragma GCC unroll 8
            for (int j = 0; j < T; j++) {
                const int8_t *x = xq[j] + b * TB_CPU_QBLOCK;
                __m256i p0 = _mm256_maddubs_epi16(lo[0], s_bcast4(x));
                __m256i p1 = _mm256_maddubs_epi16(hi[0], s_bcast4(x + 16));
#pragma GCC unroll 4
                for (int k = 1; k < 4; k++) {
                    p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(lo[k], s_bcast4(x + 4 * k)));
                    p1 = _mm256_add_epi16(p1,
                                          _mm256_maddubs_epi16(hi[k], s_bcast4(x + 16 + 4 * k)));
                }
                s32[j] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones),
                                          _mm256_set1_epi32(xc[j][b]));
            }
        }
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[j]),
                                     _mm256_mul_ps(dw, _mm256_set1_ps(xd[j][b])), acc[j]);
        }
    }
    const int64_t r = g * TB_CPU_PACK_ROWS + 8 * h;
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(nrows),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 bias = a->bias ? _mm256_maskload_ps(a->bias + r, m) : _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        float *y = a->y + (size_t)(t0 + j) * a->ldy + r;
        if (nrows == 8) {
            _mm256_storeu_ps(y, _mm256_add_ps(acc[j], bias));
        } else {
            _mm256_maskstore_ps(y, m, _mm256_add_ps(acc[j], bias));
        }
    }
}

AINLINE void s_rows_pk(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int q8)
{
    for (int tb = 0; tb < a->n_tok; tb += TOK_BLOCK) {
        int te = tb + TOK_BLOCK < a->n_tok ? tb + TOK_BLOCK : a->n_tok;
        for (int64_t r = r0; r < r1; r += 8) {
            int64_t g = r / TB_CPU_PACK_ROWS;
            int h = (int)(r / 8 % 2);
            int nr = r1 - r < 8 ? (int)(r1 - r) : 8;
            for (int t = tb; t < te; t += PT) {
                switch (te - t < PT ? te - t : PT) {
                case 1:
                    s_mk_pk(a, g, h, nr, t, 1, q8);
                    break;
                case 2:
                    s_mk_pk(a, g, h, nr, t, 2, q8);
                    break;
                case 3:
                    s_mk_pk(a, g, h, nr, t, 3, q8);
                    break;
                default:
                    s_mk_pk(a, g, h, nr, t, 4, q8);
                    break;
                }
            }
        }
    }
}

static void s_matmul_rows(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    if (a->dtype == TB_CPU_Q4_0_PACKED) {
        s_rows_pk(a, r0, r1, 0);
        return;
    }
    if (a->dtype == TB_CPU_Q8_0_PACKED) {
        s_rows_pk(a, r0, r1, 1);
        return;
    }
    switch (a->dtype) {
    case TB_CPU_F32:
        s_rows_float(a, r0, r1, TB_CPU_F32);
        break;
    case TB_CPU_F16:
        s_rows_float(a, r0, r1, TB_CPU_F16);
        break;
    case TB_CPU_BF16:
        s_rows_float(a, r0, r1, TB_CPU_BF16);
        break;
    case TB_CPU_Q8_0:
        s_rows_quant(a, r0, r1, TB_CPU_Q8_0);
        break;
    case TB_CPU_Q4_0:
        s_rows_quant(a, r0, r1, TB_CPU_Q4_0);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Attention helpers                                                                           */
/* ------------------------------------------------------------------------------------------ */

AINLINE __m256 s_kv_load8(const uint8_t *base, size_t i, int f16)
{
    if (f16) {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(base + 2 * i)));
    }
    return _mm256_loadu_ps((const float *)(base + 4 * i));
}

AINLINE float s_kv_load1(const uint8_t *base, size_t i, int f16)
{
    if (f16) {
        return _cvtsh_ss(tb_cpu_load_u16(base + 2 * i));
    }
    float f;
    memcpy(&f, base + 4 * i, 4);
    return f;
}

/* Scores, 8 slots per step, 4 accumulators over d. */
static inline float s_att_scores(float *s, const float *q, const uint8_t *kt, int hd, int n,
                                 int bs, int f16)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    float mx = -INFINITY;
    int j0 = 0;
    for (; j0 + 8 <= n; j0 += 8) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        int d = 0;
        for (; d + 4 <= hd; d += 4) {
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                __m256 k = s_kv_load8(kt, (size_t)(d + i) * bs + j0, f16);
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(q[d + i]), k, acc[i]);
            }
        }
        for (; d < hd; d++) {
            acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(q[d]),
                                     s_kv_load8(kt, (size_t)d * bs + j0, f16), acc[0]);
        }
        __m256 sc = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        _mm256_storeu_ps(s + j0, sc);
        vmax = _mm256_max_ps(vmax, sc);
    }
    for (; j0 < n; j0++) {
        float t = 0.0f;
        for (int d = 0; d < hd; d++) {
            t += q[d] * s_kv_load1(kt, (size_t)d * bs + j0, f16);
        }
        s[j0] = t;
        mx = t > mx ? t : mx;
    }
    float vm = s_hmax(vmax);
    return vm > mx ? vm : mx;
}

static inline void s_att_pv(float *acc, const float *p, const uint8_t *v, int hd, int n, int f16)
{
    for (int j = 0; j < n; j++) {
        __m256 pj = _mm256_set1_ps(p[j]);
        size_t row = (size_t)j * hd;
        int d = 0;
        for (; d + 8 <= hd; d += 8) {
            _mm256_storeu_ps(acc + d, _mm256_fmadd_ps(pj, s_kv_load8(v, row + d, f16),
                                                      _mm256_loadu_ps(acc + d)));
        }
        for (; d < hd; d++) {
            acc[d] += p[j] * s_kv_load1(v, row + d, f16);
        }
    }
}

static inline void s_att_scale(float *y, float a, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) {
        y[i] *= a;
    }
}

/* exp(x) for x <= 0 (clamped at -87): 2^n * p(r) as in tb_cpu_avx512.c. */
AINLINE __m256 s_exp(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
                                  23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline float s_att_exp_block(float *s, int n, float mx)
{
    __m256 vm = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = s_exp(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    float total = s_hsum(sum);
    for (; i < n; i++) {
        s[i] = expf(s[i] - mx);
        total += s[i];
    }
    return total;
}

#define ATT_SCORES s_att_scores
#define ATT_PV s_att_pv
#define ATT_SCALE s_att_scale
#define ATT_EXP_BLOCK s_att_exp_block
#define TB_ATTN_TASK s_attn_task
#include "tb_cpu_attn_impl.h"

const struct tb_cpu_isa_impl tb_cpu_impl_avx2 = {
    .isa = TB_CPU_ISA_AVX2,
    .act_row_bytes = s_act_row_bytes,
    .quant_act = s_quant_act,
    .matmul_rows = s_matmul_rows,
    .kpack_rows = tb_cpu_kpack_rows_avx2,
    .quant_act_gguf = tb_cpu_quant_act_avx2,
    .attn_task = s_attn_task,
};

/* tb_cpu_silu_exp's operations on 8 lanes (tb_cpu_silu_mul_avx512's, narrower). */
void tb_cpu_silu_mul_avx2(float *out, const float *gate, const float *up, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), magic = _mm256_set1_ps(TB_SILU_ROUND);
    for (int64_t i = 0; i < n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        __m256 x = _mm256_xor_ps(g, _mm256_set1_ps(-0.0f)); /* -g */
        x = _mm256_min_ps(_mm256_set1_ps(TB_SILU_HI),
                          _mm256_max_ps(_mm256_set1_ps(TB_SILU_LO), x));
        const __m256 nn = _mm256_sub_ps(
            _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(TB_SILU_LOG2E)), magic), magic);
        __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(nn, _mm256_set1_ps(TB_SILU_LN2_HI)));
        r = _mm256_sub_ps(r, _mm256_mul_ps(nn, _mm256_set1_ps(TB_SILU_LN2_LO)));
        __m256 p = _mm256_set1_ps(TB_SILU_P0);
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(TB_SILU_P1));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(TB_SILU_P2));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(TB_SILU_P3));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(TB_SILU_P4));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(TB_SILU_P5));
        const __m256 e = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r),
                                       one);
        const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(nn),
                                                                _mm256_set1_epi32(127)),
                                               23);
        const __m256 ex = _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
        const __m256 y = _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, ex)),
                                       _mm256_loadu_ps(up + i));
        _mm256_storeu_ps(out + i, y);
    }
}
