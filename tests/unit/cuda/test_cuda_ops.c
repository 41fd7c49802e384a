/* Unit tests for the CUDA flavour's small kernels (embedding, RMSNorm with the fused residual,
 * residual add, SwiGLU, RoPE with Llama-3 frequencies, KV write), run through the host
 * emulation of tb_cuda_compat.h, against float64 references computed here. */
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

/* A matrix quantized by the CPU's GGML-compatible quantizer, then repacked for the GPU. */
struct qmat {
    struct tb_cuda_weight w;
    void *blocks;
    double *ref; /* rows x cols: the stored values, decoded in double */
};

static void s_qmat_make(struct qmat *m, tb_cuda_dtype_t dt, int64_t rows, int64_t cols)
{
    const float *x = s_rand_floats((size_t)(rows * cols), 1.0f);
    const size_t rb = tb_cpu_dtype_row_bytes((tb_cpu_dtype_t)dt, cols);
    float *row = (float *)s_alloc((size_t)cols * sizeof(float));
    m->blocks = s_alloc(rb * (size_t)rows);
    m->ref = (double *)s_alloc(sizeof(double) * (size_t)(rows * cols));
    assert_non_null(x);
    assert_non_null(m->blocks);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *dst = (uint8_t *)m->blocks + rb * (size_t)r;
        assert_int_equal(tb_cpu_quantize_row((tb_cpu_dtype_t)dt, x + r * cols, dst, cols), 0);
        assert_int_equal(tb_cpu_dequantize_row((tb_cpu_dtype_t)dt, dst, row, cols), 0);
        for (int64_t c = 0; c < cols; c++) {
            m->ref[r * cols + c] = row[c];
        }
    }
    m->w = (struct tb_cuda_weight){dt, rows, cols, m->blocks, NULL, NULL};
    if (dt == TB_CUDA_Q8_0 || dt == TB_CUDA_Q4_0) {
        void *qs = s_alloc((size_t)(rows * cols));
        uint16_t *sc = (uint16_t *)s_alloc(sizeof(uint16_t) * (size_t)(rows * cols / 32));
        assert_int_equal(tb_cuda_repack_q(dt, m->blocks, rows, cols, qs, sc, NULL), 0);
        m->w.data = qs;
        m->w.scales = sc;
    }
    free(row);
    free((void *)x);
}

static void s_qmat_free(struct qmat *m)
{
    if (m->w.data != m->blocks) {
        free((void *)m->w.data);
        free((void *)m->w.scales);
    }
    free(m->blocks);
    free(m->ref);
}

static void test_embed_every_dtype(void **state)
{
    (void)state;
    const int64_t rows = 7, cols = 64;
    const int32_t tokens[5] = {3, 0, 6, -1, 7}; /* the last two are out of range */
    for (int dt = TB_CUDA_F32; dt <= TB_CUDA_Q4_0; dt++) {
        struct qmat m;
        s_qmat_make(&m, (tb_cuda_dtype_t)dt, rows, cols);
        float *out = (float *)s_alloc(sizeof(float) * 5 * 80);
        assert_int_equal(tb_cuda_embed(&m.w, tokens, 5, out, 80, NULL), 0);
        for (int t = 0; t < 5; t++) {
            for (int64_t c = 0; c < cols; c++) {
                double want = tokens[t] >= 0 && tokens[t] < rows ? m.ref[tokens[t] * cols + c]
                                                                 : 0;
                assert_true(s_close(out[t * 80 + c], want, 1e-6, 1e-6));
            }
        }
        free(out);
        s_qmat_free(&m);
    }
}

static void test_rmsnorm_fused_residual(void **state)
{
    (void)state;
    const int n = 200, rows = 3;
    float *x = s_rand_floats((size_t)n * rows, 2.0f), *r = s_rand_floats((size_t)n * rows, 1.0f);
    float *w = s_rand_floats((size_t)n, 1.0f), *y = (float *)s_alloc(sizeof(float) * n * rows);
    double *sum = (double *)s_alloc(sizeof(double) * n * rows);
    for (int i = 0; i < n * rows; i++) {
        sum[i] = (double)x[i] + (double)r[i];
    }
    assert_int_equal(tb_cuda_rmsnorm(y, x, r, w, n, rows, 1e-5f, NULL), 0);
    for (int t = 0; t < rows; t++) {
        double ss = 0;
        for (int i = 0; i < n; i++) {
            ss += sum[t * n + i] * sum[t * n + i];
        }
        const double inv = 1.0 / sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; i++) {
            assert_true(s_close(x[t * n + i], sum[t * n + i], 1e-6, 1e-6)); /* x += r */
            assert_true(s_close(y[t * n + i], sum[t * n + i] * inv * w[i], 1e-5, 1e-5));
        }
    }
    /* in place, no residual, no weight */
    assert_int_equal(tb_cuda_rmsnorm(x, x, NULL, NULL, n, rows, 0.0f, NULL), 0);
    for (int t = 0; t < rows; t++) {
        double ss = 0;
        for (int i = 0; i < n; i++) {
            ss += sum[t * n + i] * sum[t * n + i];
        }
        for (int i = 0; i < n; i++) {
            assert_true(s_close(x[t * n + i], sum[t * n + i] / sqrt(ss / n), 1e-5, 1e-5));
        }
    }
    assert_int_equal(tb_cuda_rmsnorm(y, x, NULL, NULL, 0, 1, 1e-5f, NULL), TB_EINVAL);
    free(x), free(r), free(w), free(y), free(sum);
}

static void test_add_and_swiglu(void **state)
{
    (void)state;
    const int n = 1000;
    float *a = s_rand_floats(n, 8.0f), *b = s_rand_floats(n, 3.0f);
    float *o = (float *)s_alloc(sizeof(float) * n);
    assert_int_equal(tb_cuda_add(o, a, b, n, NULL), 0);
    for (int i = 0; i < n; i++) {
        assert_true(s_close(o[i], (double)a[i] + b[i], 1e-6, 1e-6));
    }
    assert_int_equal(tb_cuda_swiglu(o, a, b, n, NULL), 0);
    for (int i = 0; i < n; i++) {
        const double g = a[i];
        assert_true(s_close(o[i], g / (1.0 + exp(-g)) * b[i], 1e-6, 1e-5));
    }
    assert_int_equal(tb_cuda_add(NULL, a, b, n, NULL), TB_EINVAL);
    free(a), free(b), free(o);
}

/* Llama-3.1's frequency scaling (factor 8, low 1, high 4, original context 8192), in double. */
static void s_llama3_freqs(float *inv_freq, int rot_dim, double base)
{
    const double factor = 8, lo = 1, hi = 4, orig = 8192, pi = 3.14159265358979323846;
    for (int i = 0; i < rot_dim / 2; i++) {
        const double f = pow(base, -2.0 * i / rot_dim), wavelen = 2 * pi / f;
        double g = f;
        if (wavelen > orig / lo) {
            g = f / factor;
        } else if (wavelen >= orig / hi) {
            const double smooth = (orig / wavelen - lo) / (hi - lo);
            g = (1 - smooth) * f / factor + smooth * f;
        }
        inv_freq[i] = (float)g;
    }
}

static void test_rope_llama3_long_positions(void **state)
{
    (void)state;
    enum { HD = 64, ROT = 48, NQ = 4, NK = 2, T = 4 };
    const int32_t pos[T] = {0, 17, 8191, 131000};
    float inv_freq[ROT / 2];
    s_llama3_freqs(inv_freq, ROT, 500000.0);
    for (int mode = 0; mode <= 1; mode++) {
        const size_t ldq = NQ * HD + 4, ldk = NK * HD;
        float *q = s_rand_floats(T * ldq, 1.0f), *k = s_rand_floats(T * ldk, 1.0f);
        float *q0 = (float *)s_alloc(sizeof(float) * T * ldq),
              *k0 = (float *)s_alloc(sizeof(float) * T * ldk);
        memcpy(q0, q, sizeof(float) * T * ldq);
        memcpy(k0, k, sizeof(float) * T * ldk);
        assert_int_equal(tb_cuda_rope(q, ldq, NQ, k, ldk, NK, T, pos, HD, ROT, inv_freq, mode,
                                      NULL),
                         0);
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < NQ + NK; h++) {
                const float *in = h < NQ ? q0 + t * ldq + h * HD : k0 + t * ldk + (h - NQ) * HD;
                const float *got = h < NQ ? q + t * ldq + h * HD : k + t * ldk + (h - NQ) * HD;
                for (int i = 0; i < ROT / 2; i++) {
                    const double ang = (double)pos[t] * (double)inv_freq[i];
                    const int a = mode ? 2 * i : i, b = mode ? 2 * i + 1 : i + ROT / 2;
                    const double x0 = in[a], x1 = in[b];
                    assert_true(s_close(got[a], x0 * cos(ang) - x1 * sin(ang), 4e-6, 0));
                    assert_true(s_close(got[b], x0 * sin(ang) + x1 * cos(ang), 4e-6, 0));
                }
                for (int d = ROT; d < HD; d++) {
                    assert_true(got[d] == in[d]); /* past rot_dim: untouched */
                }
            }
            /* the padding of q's rows is untouched */
            for (size_t d = NQ * HD; d < ldq; d++) {
                assert_true(q[t * ldq + d] == q0[t * ldq + d]);
            }
        }
        free(q), free(k), free(q0), free(k0);
    }
    float x[8] = {0};
    assert_int_equal(tb_cuda_rope(x, 8, 1, NULL, 0, 0, 1, pos, 8, 7, inv_freq, 0, NULL),
                     TB_EINVAL);
}

static void test_kv_write_slots(void **state)
{
    (void)state;
    const struct tb_cuda_kv_layout L = {5, 2, 16, 4};
    const size_t cache = (size_t)L.n_blocks * L.block_size * L.n_kv_heads * L.head_dim;
    uint16_t *kc = (uint16_t *)s_alloc(cache * 2), *vc = (uint16_t *)s_alloc(cache * 2);
    memset(kc, 0xff, cache * 2);
    memset(vc, 0xff, cache * 2);
    const int32_t slots[4] = {7, -1, 19, 20}; /* block 1 row 2; skipped; block 3 row 4; beyond */
    const int W = L.n_kv_heads * L.head_dim;
    float *k = s_rand_floats(4 * W, 4.0f), *v = s_rand_floats(4 * W, 4.0f);
    assert_int_equal(tb_cuda_kv_write(&L, kc, vc, 4, slots, k, W, v, W, NULL), 0);
    size_t written = 0;
    for (int t = 0; t < 4; t++) {
        if (slots[t] < 0 || slots[t] >= L.n_blocks * L.block_size) {
            continue;
        }
        const int blk = slots[t] / L.block_size, row = slots[t] % L.block_size;
        for (int h = 0; h < L.n_kv_heads; h++) {
            for (int d = 0; d < L.head_dim; d++) {
                const size_t at = ((size_t)(blk * L.n_kv_heads + h) * L.block_size + row) *
                                      L.head_dim +
                                  d;
                assert_int_equal(kc[at], tb_cpu_f32_to_f16(k[t * W + h * L.head_dim + d]));
                assert_int_equal(vc[at], tb_cpu_f32_to_f16(v[t * W + h * L.head_dim + d]));
            }
        }
        written += (size_t)W;
    }
    size_t touched = 0;
    for (size_t i = 0; i < cache; i++) {
        touched += kc[i] != 0xffff;
    }
    assert_int_equal(touched, written); /* nothing else was written */
    struct tb_cuda_kv_layout bad = L;
    bad.head_dim = 24;
    assert_int_equal(tb_cuda_kv_write(&bad, kc, vc, 4, slots, k, W, v, W, NULL), TB_ENOTSUP);
    free(kc), free(vc), free(k), free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_every_dtype),
        cmocka_unit_test(test_rmsnorm_fused_residual),
        cmocka_unit_test(test_add_and_swiglu),
        cmocka_unit_test(test_rope_llama3_long_positions),
        cmocka_unit_test(test_kv_write_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
