/* Unit tests for the CUDA flavour's K-quant kernels (Q2_K .. Q6_K and IQ4_XS: repack_q.cu's
 * tb_cuda_repack_k, gemv_k.cu, the K-quant embedding of embed.cu), run through the host
 * emulation against float64 references built from the GGUF-exact dequantizer (tb_quant.h) and
 * the same q8_1 activations the kernel reads; edge blocks (all zero, maximal scales and
 * quants), lanes wrapping, two token blocks, and batch invariance. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the standard headers it needs */

#include "cuda/tb_cuda_kernels.h"
#include "tb_cuda_test_util.h"
#include "tb_errors.h"
#include "tb_quant.h"

#define ROWS 37   /* not a multiple of the 4 rows a block serves */
#define NTOK 11   /* more than the 8 tokens a block serves */
#define COLS 2304 /* 9 super-blocks = 36 units: lanes wrap around */
#define LDY (ROWS + 3)

static const tb_cuda_dtype_t TYPES[] = {TB_CUDA_Q4_K, TB_CUDA_Q5_K, TB_CUDA_Q6_K,
                                        TB_CUDA_Q3_K, TB_CUDA_Q2_K, TB_CUDA_IQ4_XS};

/* GGUF block layout of each type (tb_quant.h): bytes, where the quants, the scale bytes and the
 * f16 d / dmin (-1: none) are. */
struct layout {
    int bytes, q_off, q_len, rec_off, rec_len, d_off, dmin_off;
};

static struct layout s_layout(tb_cuda_dtype_t dt)
{
    switch (dt) {
    case TB_CUDA_Q2_K:
        return (struct layout){84, 16, 64, 0, 16, 80, 82};
    case TB_CUDA_Q3_K:
        return (struct layout){110, 0, 96, 96, 12, 108, -1};
    case TB_CUDA_Q4_K:
        return (struct layout){144, 16, 128, 0, 16, 0, 2};
    case TB_CUDA_Q5_K:
        return (struct layout){176, 16, 160, 0, 16, 0, 2};
    case TB_CUDA_IQ4_XS:
        return (struct layout){136, 8, 128, 0, 8, 0, -1};
    default:
        return (struct layout){210, 0, 192, 192, 16, 208, -1};
    }
}

/* A K-quant matrix: GGUF blocks, the repacked layout, the dequantized values in double and,
 * per value, |d * sc * q| + |dmin * m| (the magnitude the f32 sums see). */
struct kmat {
    struct tb_cuda_weight w;
    uint8_t *blocks, *qs, *rec;
    uint16_t *sd;
    double *ref, *mag;
};

static size_t s_block_bytes(tb_cuda_dtype_t dt)
{
    return (size_t)s_layout(dt).bytes;
}

/* Random valid blocks: random bytes with small f16 scales; block (0, 0) all zero, block (1, 1)
 * every scale, min and quant byte at its maximum. */
static void s_fill_blocks(tb_cuda_dtype_t dt, uint8_t *blocks, int64_t rows, int64_t cols)
{
    const size_t bb = s_block_bytes(dt), nsb = (size_t)cols / 256;
    const int d_off = s_layout(dt).d_off, dmin_off = s_layout(dt).dmin_off;
    for (size_t b = 0; b < (size_t)rows * nsb; b++) {
        uint8_t *p = blocks + b * bb;
        for (size_t i = 0; i < bb; i++) {
            p[i] = (uint8_t)s_randu(256);
        }
        const uint16_t d = tb_cpu_f32_to_f16((0.5f + 0.5f * (s_rand() + 1.0f)) / 256.0f);
        memcpy(p + d_off, &d, 2);
        if (dmin_off >= 0) {
            const uint16_t m = tb_cpu_f32_to_f16((0.5f + 0.5f * (s_rand() + 1.0f)) / 64.0f);
            memcpy(p + dmin_off, &m, 2);
        }
    }
    memset(blocks, 0, bb); /* row 0, super-block 0: zero scales and quants */
    uint8_t *mx = blocks + (nsb + 1) * bb;
    memset(mx, 0xff, bb);
    if (dt == TB_CUDA_Q6_K) {
        memset(mx + 192, 0x7f, 16); /* the largest int8 scale */
    }
    const uint16_t dmax = tb_cpu_f32_to_f16(1.0f / 64.0f);
    memcpy(mx + d_off, &dmax, 2);
    if (dmin_off >= 0) {
        memcpy(mx + dmin_off, &dmax, 2);
    }
}

static void s_kmat_make(struct kmat *m, tb_cuda_dtype_t dt, int64_t rows, int64_t cols)
{
    const size_t nsb = (size_t)rows * (size_t)cols / 256, n = (size_t)rows * (size_t)cols;
    memset(m, 0, sizeof(*m));
    m->blocks = (uint8_t *)s_alloc(nsb * s_block_bytes(dt));
    m->qs = (uint8_t *)s_alloc(nsb * (size_t)tb_cuda_k_quant_bytes(dt));
    m->rec = (uint8_t *)s_alloc(nsb * 16);
    m->sd = tb_cuda_k_super_d(dt) ? (uint16_t *)s_alloc(nsb * 2 * (size_t)tb_cuda_k_super_d(dt))
                                  : NULL;
    m->ref = (double *)s_alloc(n * sizeof(double));
    m->mag = (double *)s_alloc(n * sizeof(double));
    float *f = (float *)s_alloc(n * sizeof(float));
    assert_non_null(f);
    s_fill_blocks(dt, m->blocks, rows, cols);
    assert_int_equal(tb_quant_dequantize((tb_dtype_t)dt, m->blocks, f, n), 0);
    for (size_t b = 0; b < nsb; b++) {
        struct tb_quant_unpacked u;
        assert_int_equal(tb_quant_unpack((tb_dtype_t)dt, m->blocks + b * s_block_bytes(dt), &u),
                         0);
        for (int i = 0; i < 256; i++) {
            const int g = i / u.group;
            m->ref[b * 256 + (size_t)i] = f[b * 256 + (size_t)i];
            m->mag[b * 256 + (size_t)i] = fabs((double)u.d * u.sc[g] * u.code[i]) +
                                          fabs((double)u.dmin * u.mn[g]);
        }
    }
    free(f);
    assert_int_equal(tb_cuda_repack_k(dt, m->blocks, rows, cols, m->qs, m->rec, m->sd, NULL), 0);
    m->w = (struct tb_cuda_weight){dt, rows, cols, m->qs, (const uint16_t *)m->rec, m->sd};
}

static void s_kmat_free(struct kmat *m)
{
    free(m->blocks), free(m->qs), free(m->rec), free(m->sd), free(m->ref), free(m->mag);
}

static struct tb_cuda_q8_act s_act(const float *x, size_t ldx, int n_tok, int64_t cols)
{
    struct tb_cuda_q8_act act = {(int8_t *)s_alloc((size_t)(n_tok * cols)),
                                 (float *)s_alloc(sizeof(float) * 2 *
                                                  (size_t)(n_tok * cols / 32)),
                                 cols, n_tok};
    assert_int_equal(tb_cuda_quantize_q8_1(x, ldx, n_tok, &act, NULL), 0);
    return act;
}

static void test_repack_moves_bytes(void **state)
{
    (void)state;
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        const tb_cuda_dtype_t dt = TYPES[ti];
        struct kmat m;
        s_kmat_make(&m, dt, 3, 512);
        const struct layout L = s_layout(dt);
        const size_t qb = (size_t)tb_cuda_k_quant_bytes(dt), nsd = (size_t)tb_cuda_k_super_d(dt);
        const uint8_t zeros[16] = {0};
        assert_int_equal(qb, L.q_len);
        for (size_t b = 0; b < 6; b++) {
            const uint8_t *src = m.blocks + b * (size_t)L.bytes;
            assert_memory_equal(m.qs + b * qb, src + L.q_off, qb);
            assert_memory_equal(m.rec + b * 16, src + L.rec_off, (size_t)L.rec_len);
            assert_memory_equal(m.rec + b * 16 + L.rec_len, zeros, 16 - (size_t)L.rec_len);
            if (nsd) { /* d, then Q2_K's dmin right after it in the block */
                assert_memory_equal(&m.sd[b * nsd], src + L.d_off, 2 * nsd);
            }
        }
        s_kmat_free(&m);
    }
}

static void test_gemv_k_against_float64(void **state)
{
    (void)state;
    const size_t ldx = COLS + 8;
    float *x = s_rand_floats(NTOK * ldx, 1.0f), *bias = s_rand_floats(ROWS, 1.0f);
    float *y = (float *)s_alloc(sizeof(float) * NTOK * LDY);
    for (int i = 0; i < 32; i++) {
        x[3 * ldx + 64 + i] = 0.0f; /* an all-zero activation block */
    }
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        const tb_cuda_dtype_t dt = TYPES[ti];
        struct kmat m;
        s_kmat_make(&m, dt, ROWS, COLS);
        struct tb_cuda_q8_act act = s_act(x, ldx, NTOK, COLS);
        const float *b = ti == 1 ? bias : NULL;
        assert_int_equal(tb_cuda_gemv_k(&m.w, &act, NTOK, b, y, LDY, NULL), 0);
        double worst = 0;
        for (int t = 0; t < NTOK; t++) {
            for (int r = 0; r < ROWS; r++) {
                /* (a) the exact sum over the quantized activations; (b) the real x, within
                 * the activation rounding (|x - d q| <= d / 2 per value) */
                double want_q = b ? b[r] : 0, want_x = want_q, mag = 0, bound = 0;
                for (int64_t c = 0; c < COLS; c++) {
                    const double d = act.ds[2 * ((t * COLS + c) / 32)];
                    const double w = m.ref[r * COLS + c];
                    want_q += w * d * act.qs[t * COLS + c];
                    want_x += w * x[t * ldx + c];
                    mag += m.mag[r * COLS + c] * fabs(d * act.qs[t * COLS + c]);
                    bound += fabs(w) * d * 0.5;
                }
                const double got = y[t * LDY + r];
                worst = fmax(worst, fabs(got - want_q) / (mag > 0 ? mag : 1));
                assert_true(s_close(got, want_q, 1e-7 + 2e-6 * mag, 0));
                assert_true(s_close(got, want_x, 1e-6 + 2e-6 * mag + bound, 0));
            }
        }
        print_message("type %d: worst |y - float64| / magnitude %.3g\n", (int)dt, worst);
        free(act.qs), free(act.ds);
        s_kmat_free(&m);
    }
    free(x), free(bias), free(y);
}

/* Token 9 of an 11-token batch, token 0 of a 3-token batch and the token alone: the same bits. */
static void test_gemv_k_batch_invariance(void **state)
{
    (void)state;
    const int64_t cols = 512;
    float *x = s_rand_floats(NTOK * cols, 1.0f), *x3 = s_rand_floats(3 * cols, 1.0f);
    float *y = (float *)s_alloc(sizeof(float) * NTOK * LDY);
    float *y1 = (float *)s_alloc(sizeof(float) * LDY),
          *y3 = (float *)s_alloc(sizeof(float) * 3 * LDY);
    memcpy(x3, x + 9 * cols, sizeof(float) * cols);
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        struct kmat m;
        s_kmat_make(&m, TYPES[ti], ROWS, cols);
        struct tb_cuda_q8_act a = s_act(x, cols, NTOK, cols),
                              a1 = s_act(x + 9 * cols, cols, 1, cols),
                              a3 = s_act(x3, cols, 3, cols);
        assert_int_equal(tb_cuda_gemv_k(&m.w, &a, NTOK, NULL, y, LDY, NULL), 0);
        assert_int_equal(tb_cuda_gemv_k(&m.w, &a1, 1, NULL, y1, LDY, NULL), 0);
        assert_int_equal(tb_cuda_gemv_k(&m.w, &a3, 3, NULL, y3, LDY, NULL), 0);
        assert_memory_equal(y + 9 * LDY, y1, sizeof(float) * ROWS);
        assert_memory_equal(y3, y1, sizeof(float) * ROWS);
        free(a.qs), free(a.ds), free(a1.qs), free(a1.ds), free(a3.qs), free(a3.ds);
        s_kmat_free(&m);
    }
    free(x), free(x3), free(y), free(y1), free(y3);
}

/* The embedding of a K-quant table gives the GGUF dequantizer's floats bit for bit; ids out of
 * range give zeros. */
static void test_embed_k_exact(void **state)
{
    (void)state;
    const int64_t rows = 5, cols = 768;
    const int32_t tokens[] = {1, 0, 4, 7, -1, 3};
    const int n = (int)(sizeof tokens / sizeof tokens[0]);
    float *out = (float *)s_alloc(sizeof(float) * (size_t)(n * cols));
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        struct kmat m;
        s_kmat_make(&m, TYPES[ti], rows, cols);
        assert_int_equal(tb_cuda_embed(&m.w, tokens, n, out, (size_t)cols, NULL), 0);
        for (int t = 0; t < n; t++) {
            for (int64_t c = 0; c < cols; c++) {
                const float want = tokens[t] >= 0 && tokens[t] < rows
                                       ? (float)m.ref[tokens[t] * cols + c]
                                       : 0.0f;
                assert_true(out[t * cols + c] == want);
            }
        }
        s_kmat_free(&m);
    }
    free(out);
}

static void test_argument_errors(void **state)
{
    (void)state;
    struct kmat m;
    s_kmat_make(&m, TB_CUDA_Q6_K, 4, 256);
    float *x = s_rand_floats(256, 1.0f), *y = (float *)s_alloc(sizeof(float) * 8);
    struct tb_cuda_q8_act act = s_act(x, 256, 1, 256);
    assert_int_equal(tb_cuda_gemv_k(&m.w, &act, 1, NULL, y, 4, NULL), 0);
    struct tb_cuda_weight w = m.w;
    w.super_d = NULL; /* Q6_K needs its super-block scales */
    assert_int_equal(tb_cuda_gemv_k(&w, &act, 1, NULL, y, 4, NULL), TB_EINVAL);
    w = m.w;
    w.dtype = TB_CUDA_Q4_0; /* not a K-quant */
    assert_int_equal(tb_cuda_gemv_k(&w, &act, 1, NULL, y, 4, NULL), TB_EINVAL);
    assert_int_equal(tb_cuda_repack_k(TB_CUDA_Q4_K, m.blocks, 1, 288, m.qs, m.rec, NULL, NULL),
                     TB_EINVAL); /* cols % 256 */
    assert_int_equal(tb_cuda_repack_k(TB_CUDA_Q6_K, m.blocks, 1, 256, m.qs, m.rec, NULL, NULL),
                     TB_EINVAL);
    free(x), free(y), free(act.qs), free(act.ds);
    s_kmat_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repack_moves_bytes),
        cmocka_unit_test(test_gemv_k_against_float64),
        cmocka_unit_test(test_gemv_k_batch_invariance),
        cmocka_unit_test(test_embed_k_exact),
        cmocka_unit_test(test_argument_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
