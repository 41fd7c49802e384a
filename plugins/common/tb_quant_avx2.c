/*
 * tb_quant_avx2.c - AVX2 dot products of every quantized type: the 32-element types with Q8_32
 * activations, the K-quants and IQ4_XS with Q8_K (built with -mavx2 -mfma -mf16c; called only
 * when the CPU has them).  Codes are unsigned bytes times
 * signed activation bytes (vpmaddubsw, no saturation possible: code <= 63 or |value| <= 128,
 * |a| <= 127), widened and scaled per group with vpmaddwd; offsets (Q3_K's 4, Q6_K's 32, the
 * mins) come from the Q8_K block sums.  The integer sums are exact, the f32 step is the reference's: bit-equal results.
 */
#include <immintrin.h>

#include "tb_quant.h"
#include "tb_quant_kernels_impl.h"

static int32_t s_hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Bit `bit` of every byte of `v`, moved to bit 4. */
static __m256i s_bit4(__m256i v, int bit)
{
    __m256i b = _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(bit)),
                                 _mm256_set1_epi8(1));
    return _mm256_slli_epi16(b, 4);
}

/* int16 lanes: the first 8 hold `a`, the last 8 hold `b` (two 16-element groups). */
static __m256i s_halves16(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

/* Bit i of `qh` as 0x10 in byte i (the fifth bit of Q5_0 / Q5_1 element i). */
static __m256i s_bits_to_bytes(uint32_t qh)
{
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* The 32 nibbles at `qs` in element order (low nibbles, then high). */
static __m256i s_nibbles(const uint8_t *qs)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* vpmaddubsw of signed values `v` (|v| <= 128) with activations `a`: |v| times a with v's sign. */
static __m256i s_signed_madd(__m256i v, __m256i a)
{
    return _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(a, v));
}

float tb_quant_q32_avx2(tb_dtype_t t, const uint8_t *w, const struct tb_block_q8_32 *a,
                        uint64_t nb)
{
    const size_t bb = tb_dtype_block_bytes(t);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)tb_quant_iq4_values));
    const int has_min = t == TB_DTYPE_Q4_1 || t == TB_DTYPE_Q5_1;
    /* the codes are stored + 8 (Q4_0) or + 16 (Q5_0) */
    const int32_t offset = t == TB_DTYPE_Q4_0 ? 8 : t == TB_DTYPE_Q5_0 ? 16 : 0;
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *blk = w + b * bb;
        const struct tb_block_q8_32 *y = a + b;
        const __m256i av = _mm256_loadu_si256((const __m256i *)y->qs);
        __m256i p;
        if (t == TB_DTYPE_Q8_0) {
            p = s_signed_madd(_mm256_loadu_si256((const __m256i *)(blk + 2)), av);
        } else if (t == TB_DTYPE_IQ4_NL) {
            p = s_signed_madd(_mm256_shuffle_epi8(table, s_nibbles(blk + 2)), av);
        } else if (t == TB_DTYPE_Q4_0 || t == TB_DTYPE_Q4_1) {
            p = _mm256_maddubs_epi16(s_nibbles(blk + (has_min ? 4 : 2)), av);
        } else { /* Q5_0, Q5_1: qh after d (and m), then the nibbles */
            const uint8_t *qh = blk + (has_min ? 4 : 2);
            uint32_t bits = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                            (uint32_t)qh[3] << 24;
            p = _mm256_maddubs_epi16(_mm256_or_si256(s_nibbles(qh + 4), s_bits_to_bytes(bits)),
                                     av);
        }
        int32_t isum = s_hsum(_mm256_madd_epi16(p, ones)) - offset * y->sum;
        acc += has_min ? tb_quant_min_block_sum(tb_quant_f16(blk), tb_quant_f16(blk + 2), y->d,
                                                isum, y->s)
                       : tb_quant_block_sum(tb_quant_f16(blk), 0.0f, y->d, isum, 0);
    }
    return acc;
}

/* Q2_K (`q3` false) and Q3_K super-blocks: unsigned codes 0..3 (Q3_K: + 4 when the high bit is
 * set, i.e. the signed code + 4, whose 4 * group sum is taken back through the block sums). */
static float s_q23_k(const uint8_t *w, const struct tb_block_q8_k *a, uint64_t nb, int q3)
{
    const __m256i m2 = _mm256_set1_epi8(3);
    const size_t bb = q3 ? sizeof(struct tb_block_q3_k) : sizeof(struct tb_block_q2_k);
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *blk = w + b * bb;
        const uint8_t *qs = q3 ? ((const struct tb_block_q3_k *)blk)->qs
                               : ((const struct tb_block_q2_k *)blk)->qs;
        const struct tb_block_q8_k *y = a + b;
        int8_t sc[16], mn[16];
        tb_quant_q23_k_scales(blk, q3, sc, mn);
        const __m256i hm = q3 ? _mm256_loadu_si256((const __m256i *)blk) : _mm256_setzero_si256();
        __m256i vacc = _mm256_setzero_si256();
        for (int n = 0; n < 2; n++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * n));
            for (int j = 0; j < 4; j++) {
                __m256i u = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j)), m2);
                if (q3) {
                    __m256i h = _mm256_srl_epi16(hm, _mm_cvtsi32_si128(4 * n + j));
                    h = _mm256_and_si256(h, _mm256_set1_epi8(1));
                    u = _mm256_or_si256(u, _mm256_slli_epi16(h, 2));
                }
                __m256i av = _mm256_loadu_si256((const __m256i *)(y->qs + 128 * n + 32 * j));
                int g = 8 * n + 2 * j;
                vacc = _mm256_add_epi32(vacc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, av),
                                                                s_halves16(sc[g], sc[g + 1])));
            }
        }
        acc += tb_quant_q23_k_block_sum(blk, q3, sc, mn, y, s_hsum(vacc));
    }
    return acc;
}

/* IQ4_XS: the table values through vpshufb; |value| times the activation with the value's sign
 * (vpsignb) keeps vpmaddubsw's unsigned operand. */
static float s_iq4_xs(const struct tb_block_iq4_xs *w, const struct tb_block_q8_k *a, uint64_t nb)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)tb_quant_iq4_values));
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const struct tb_block_iq4_xs *x = w + b;
        const struct tb_block_q8_k *y = a + b;
        __m256i vacc = _mm256_setzero_si256();
        for (int s = 0; s < TB_QK_K / 32; s++) {
            const __m128i q = _mm_loadu_si128((const __m128i *)(x->qs + 16 * s));
            const __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4),
                                                 _mm_and_si128(q, m4));
            const __m256i v = _mm256_shuffle_epi8(table, idx);
            const __m256i av = _mm256_loadu_si256((const __m256i *)(y->qs + 32 * s));
            const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v),
                                                   _mm256_sign_epi8(av, v));
            vacc = _mm256_add_epi32(vacc,
                                    _mm256_madd_epi16(p, _mm256_set1_epi16((
                                                             short)tb_quant_iq4_xs_scale(x, s))));
        }
        acc += tb_quant_block_sum(tb_quant_f16(x->d), 0.0f, y->d, s_hsum(vacc), 0);
    }
    return acc;
}

/* Q4_K (`q5` false) and Q5_K super-blocks. */
static float s_q45_k(const uint8_t *w, const struct tb_block_q8_k *a, uint64_t nb, int q5)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const size_t bb = q5 ? sizeof(struct tb_block_q5_k) : sizeof(struct tb_block_q4_k);
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *blk = w + b * bb;
        const uint8_t *scales = blk + 4;
        const uint8_t *qs = blk + (q5 ? 48 : 16);
        const struct tb_block_q8_k *y = a + b;
        const __m256i hb = q5 ? _mm256_loadu_si256((const __m256i *)(blk + 16))
                              : _mm256_setzero_si256();
        __m256i vacc = _mm256_setzero_si256();
        int32_t msum = 0;
        for (int n = 0; n < 4; n++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * n));
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (q5) {
                lo = _mm256_or_si256(lo, s_bit4(hb, 2 * n));
                hi = _mm256_or_si256(hi, s_bit4(hb, 2 * n + 1));
            }
            uint8_t sc0, m0, sc1, m1;
            tb_quant_k_scale_min(scales, 2 * n, &sc0, &m0);
            tb_quant_k_scale_min(scales, 2 * n + 1, &sc1, &m1);
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * n));
            const __m256i a1 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * n + 32));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0),
                                                 _mm256_set1_epi16(sc0));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1),
                                                 _mm256_set1_epi16(sc1));
            vacc = _mm256_add_epi32(vacc, _mm256_add_epi32(p0, p1));
            msum += m0 * (y->bsums[4 * n] + y->bsums[4 * n + 1]) +
                    m1 * (y->bsums[4 * n + 2] + y->bsums[4 * n + 3]);
        }
        acc += tb_quant_block_sum(tb_quant_f16(blk), tb_quant_f16(blk + 2), y->d, s_hsum(vacc),
                                  msum);
    }
    return acc;
}

static float s_q6_k(const struct tb_block_q6_k *w, const struct tb_block_q8_k *a, uint64_t nb)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const struct tb_block_q6_k *x = w + b;
        const struct tb_block_q8_k *y = a + b;
        __m256i vacc = _mm256_setzero_si256();
        for (int n = 0; n < 2; n++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * n));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * n + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * n));
            const __m256i low[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                                    _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                    _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
            for (int j = 0; j < 4; j++) {
                __m256i hi = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * j)), m2);
                __m256i q = _mm256_or_si256(low[j], _mm256_slli_epi16(hi, 4));
                __m256i av = _mm256_loadu_si256((const __m256i *)(y->qs + 128 * n + 32 * j));
                int g = 8 * n + 2 * j;
                vacc = _mm256_add_epi32(vacc, _mm256_madd_epi16(_mm256_maddubs_epi16(q, av),
                                                                s_halves16(x->scales[g],
                                                                           x->scales[g + 1])));
            }
        }
        const int32_t offset = tb_quant_group_dot(x->scales, y); /* codes stored + 32 */
        acc += tb_quant_block_sum(tb_quant_f16(x->d), 0.0f, y->d, s_hsum(vacc) - 32 * offset, 0);
    }
    return acc;
}

const struct tb_quant_k_ops tb_quant_k_ops_avx2 = {.q32 = tb_quant_q32_avx2,
                                                   .q23_k = s_q23_k,
                                                   .q45_k = s_q45_k,
                                                   .q6_k = s_q6_k,
                                                   .iq4_xs = s_iq4_xs};
