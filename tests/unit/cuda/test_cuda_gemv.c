/* Unit tests for the CUDA flavour's GEMVs (F32/F16/BF16, and Q8_0/Q4_0 against q8_1
 * activations), run through the host emulation: float64 references, the activation
 * quantizer's exact values, and batch invariance (a token's outputs are the same bits alone
 * and in any batch). */
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
#include "tb_dtype.h"
#include "tb_errors.h"

#define ROWS 37 /* not a multiple of the 4 rows a block serves */
#define NTOK 11 /* more than the 8 tokens a block serves */
#define LDY (ROWS + 3)

/* A weight in the GPU layout plus its stored values decoded in double. */
struct mat {
    struct tb_cuda_weight w;
    void *stored, *qs;
    uint16_t *scales;
    double *ref;
};

static void s_mat_make(struct mat *m, tb_cuda_dtype_t dt, int64_t cols)
{
    const size_t rb = tb_cpu_dtype_row_bytes((tb_cpu_dtype_t)dt, cols);
    float *x = s_rand_floats((size_t)cols, 1.0f);
    memset(m, 0, sizeof(*m));
    m->stored = s_alloc(rb * ROWS);
    m->ref = (double *)s_alloc(sizeof(double) * ROWS * (size_t)cols);
    assert_non_null(x);
    for (int r = 0; r < ROWS; r++) {
        for (int64_t c = 0; c < cols; c++) {
            x[c] = s_rand() * (r % 3 ? 1.0f : 0.01f); /* some rows with small scales */
        }
        uint8_t *row = (uint8_t *)m->stored + rb * (size_t)r;
        assert_int_equal(tb_cpu_quantize_row((tb_cpu_dtype_t)dt, x, row, cols), 0);
        assert_int_equal(tb_cpu_dequantize_row((tb_cpu_dtype_t)dt, row, x, cols), 0);
        for (int64_t c = 0; c < cols; c++) {
            m->ref[r * cols + c] = x[c];
        }
    }
    m->w = (struct tb_cuda_weight){dt, ROWS, cols, m->stored, NULL, NULL};
    if (dt == TB_CUDA_Q8_0 || dt == TB_CUDA_Q4_0) {
        m->qs = s_alloc(ROWS * (size_t)cols);
        m->scales = (uint16_t *)s_alloc(sizeof(uint16_t) * ROWS * (size_t)cols / 32);
        assert_int_equal(tb_cuda_repack_q(dt, m->stored, ROWS, cols, m->qs, m->scales, NULL), 0);
        m->w.data = m->qs;
        m->w.scales = m->scales;
    }
    free(x);
}

static void s_mat_free(struct mat *m)
{
    free(m->stored), free(m->qs), free(m->scales), free(m->ref);
}

/* Runs the GEMV of `dt` on n_tok rows of x (stride ldx); quantizes them first for Q8_0/Q4_0. */
static void s_gemv(const struct mat *m, const float *x, size_t ldx, int n_tok, const float *bias,
                   float *y, struct tb_cuda_q8_act *act_out)
{
    const int64_t cols = m->w.cols;
    if (m->w.dtype != TB_CUDA_Q8_0 && m->w.dtype != TB_CUDA_Q4_0) {
        assert_int_equal(tb_cuda_gemv(&m->w, x, ldx, n_tok, bias, y, LDY, NULL), 0);
        return;
    }
    struct tb_cuda_q8_act act = {(int8_t *)s_alloc((size_t)(n_tok * cols)),
                                 (float *)s_alloc(sizeof(float) * 2 *
                                                  (size_t)(n_tok * cols / 32)),
                                 cols, n_tok};
    assert_int_equal(tb_cuda_quantize_q8_1(x, ldx, n_tok, &act, NULL), 0);
    assert_int_equal(tb_cuda_gemv_q(&m->w, &act, n_tok, bias, y, LDY, NULL), 0);
    if (act_out) {
        *act_out = act;
    } else {
        free(act.qs), free(act.ds);
    }
}

static void test_gemv_float_dtypes(void **state)
{
    (void)state;
    const int64_t cols = 264; /* 33 chunks of 8: lanes wrap around once */
    const size_t ldx = cols + 4;
    float *x = s_rand_floats(NTOK * ldx, 1.0f), *bias = s_rand_floats(ROWS, 1.0f);
    float *y = (float *)s_alloc(sizeof(float) * NTOK * LDY);
    for (int dt = TB_CUDA_F32; dt <= TB_CUDA_BF16; dt++) {
        struct mat m;
        s_mat_make(&m, (tb_cuda_dtype_t)dt, cols);
        s_gemv(&m, x, ldx, NTOK, dt == TB_CUDA_F16 ? bias : NULL, y, NULL);
        for (int t = 0; t < NTOK; t++) {
            for (int r = 0; r < ROWS; r++) {
                double want = dt == TB_CUDA_F16 ? bias[r] : 0, mag = 0;
                for (int64_t c = 0; c < cols; c++) {
                    want += m.ref[r * cols + c] * x[t * ldx + c];
                    mag += fabs(m.ref[r * cols + c] * x[t * ldx + c]);
                }
                assert_true(s_close(y[t * LDY + r], want, 1e-6 + 1e-6 * mag, 0));
            }
        }
        s_mat_free(&m);
    }
    struct mat m;
    s_mat_make(&m, TB_CUDA_F16, cols);
    assert_int_equal(tb_cuda_gemv(&m.w, x + 1, ldx, 1, NULL, y, LDY, NULL),
                     TB_EINVAL); /* align */
    m.w.cols = 260;
    assert_int_equal(tb_cuda_gemv(&m.w, x, ldx, 1, NULL, y, LDY, NULL), TB_EINVAL); /* cols % 8 */
    s_mat_free(&m);
    free(x), free(bias), free(y);
}

static void test_quantize_q8_1_values(void **state)
{
    (void)state;
    const int64_t cols = 96;
    const int n_tok = 3;
    float *x = s_rand_floats(n_tok * cols, 3.0f);
    for (int i = 0; i < 32; i++) {
        x[32 + i] = 0.0f; /* an all-zero block: d = 0, q = 0 */
    }
    x[70] = 1.5f * x[71]; /* ties are possible; rounding is to nearest even either way */
    struct tb_cuda_q8_act act = {(int8_t *)s_alloc(n_tok * cols),
                                 (float *)s_alloc(sizeof(float) * 2 * n_tok * cols / 32), cols,
                                 n_tok};
    assert_int_equal(tb_cuda_quantize_q8_1(x, cols, n_tok, &act, NULL), 0);
    for (int b = 0; b < n_tok * cols / 32; b++) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) {
            amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        }
        const float d = amax / 127.0f;
        int sum = 0;
        for (int i = 0; i < 32; i++) {
            const int q = d > 0.0f ? (int)rintf(x[b * 32 + i] / d) : 0;
            assert_int_equal(act.qs[b * 32 + i], q);
            assert_true(q >= -127 && q <= 127);
            sum += q;
        }
        /* the stored scale: d rounded to f16 (a normal f16 here: amax is about 3), the
         * quants above rounded with the f32 d */
        assert_true(d == 0.0f || d >= 0x1p-14f);
        assert_true(act.ds[2 * b] == tb_f16_to_f32(tb_f32_to_f16(d)));
        assert_true(act.ds[2 * b + 1] == act.ds[2 * b] * (float)sum);
    }
    free(x), free(act.qs), free(act.ds);
}

static void test_gemv_quantized(void **state)
{
    (void)state;
    const int64_t cols = 1056; /* 33 blocks: Q4_0 lanes wrap around once, Q8_0 twice */
    const size_t ldx = cols + 8;
    float *x = s_rand_floats(NTOK * ldx, 1.0f), *bias = s_rand_floats(ROWS, 1.0f);
    float *y = (float *)s_alloc(sizeof(float) * NTOK * LDY);
    for (int dt = TB_CUDA_Q8_0; dt <= TB_CUDA_Q4_0; dt++) {
        struct mat m;
        struct tb_cuda_q8_act act;
        s_mat_make(&m, (tb_cuda_dtype_t)dt, cols);
        s_gemv(&m, x, ldx, NTOK, dt == TB_CUDA_Q4_0 ? bias : NULL, y, &act);
        for (int t = 0; t < NTOK; t++) {
            for (int r = 0; r < ROWS; r++) {
                /* (a) exact arithmetic on the quantized activations; (b) the real x, within
                 * the activation rounding (|x - d q| <= d / 2 per value) */
                double want_q = dt == TB_CUDA_Q4_0 ? bias[r] : 0, want_x = want_q, mag = 0,
                       bound = 0;
                for (int64_t c = 0; c < cols; c++) {
                    const double d = act.ds[2 * ((t * cols + c) / 32)];
                    const double w = m.ref[r * cols + c];
                    want_q += w * d * act.qs[t * cols + c];
                    want_x += w * x[t * ldx + c];
                    mag += fabs(w * d * act.qs[t * cols + c]);
                    bound += fabs(w) * d * 0.5;
                }
                assert_true(s_close(y[t * LDY + r], want_q, 1e-6 + 1e-6 * mag, 0));
                assert_true(s_close(y[t * LDY + r], want_x, 1e-5 + 1e-6 * mag + bound, 0));
            }
        }
        free(act.qs), free(act.ds);
        s_mat_free(&m);
    }
    free(x), free(bias), free(y);
}

/* Token 9 of an 11-token batch, token 0 of a 3-token batch and the token alone give the same
 * bits, for every dtype. */
static void test_gemv_batch_invariance(void **state)
{
    (void)state;
    const int64_t cols = 512;
    const size_t ldx = cols;
    float *x = s_rand_floats(NTOK * ldx, 1.0f), *bias = s_rand_floats(ROWS, 1.0f);
    float *x3 = s_rand_floats(3 * ldx, 1.0f);
    float *y = (float *)s_alloc(sizeof(float) * NTOK * LDY);
    float *y1 = (float *)s_alloc(sizeof(float) * LDY),
          *y3 = (float *)s_alloc(sizeof(float) * 3 * LDY);
    memcpy(x3, x + 9 * ldx, sizeof(float) * cols);
    for (int dt = TB_CUDA_F32; dt <= TB_CUDA_Q4_0; dt++) {
        struct mat m;
        s_mat_make(&m, (tb_cuda_dtype_t)dt, cols);
        s_gemv(&m, x, ldx, NTOK, bias, y, NULL);
        s_gemv(&m, x + 9 * ldx, ldx, 1, bias, y1, NULL);
        s_gemv(&m, x3, ldx, 3, bias, y3, NULL);
        assert_memory_equal(y + 9 * LDY, y1, sizeof(float) * ROWS);
        assert_memory_equal(y3, y1, sizeof(float) * ROWS);
        s_mat_free(&m);
    }
    free(x), free(bias), free(x3), free(y), free(y1), free(y3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemv_float_dtypes),
        cmocka_unit_test(test_quantize_q8_1_values),
        cmocka_unit_test(test_gemv_quantized),
        cmocka_unit_test(test_gemv_batch_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
