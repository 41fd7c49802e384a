/* Unit tests for tb_quant: each block format is packed here from its logical values (codes,
 * scales, mins) following tb_dtype.h's layout text, decoded by tb_quant_dequantize and checked
 * against the formula, exactly (the scales are powers of two, so every value is exact).  The
 * bit-exact comparison with the gguf package is tests/integration/test_quant_gguf.py.  Also the
 * activation quantizers (Q8_32, Q8_K). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_quant.h"

static uint32_t s_rng = 12345;

static int s_rand(int n)
{
    s_rng = s_rng * 1103515245u + 12345u;
    return (int)((s_rng >> 8) % (uint32_t)n);
}

static void s_f16(uint8_t p[2], float v)
{
    uint16_t h = tb_f32_to_f16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

static void s_nib32(uint8_t qs[16], const int *c)
{
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((c[j] & 15) | (c[j + 16] & 15) << 4);
    }
}

/* Decodes `nb` blocks of `t` and compares with `want`. */
static void s_check(tb_dtype_t t, const void *blocks, int nb, const double *want)
{
    int n = nb * (int)tb_dtype_block_elems(t);
    float *y = malloc((size_t)n * sizeof *y);
    assert_non_null(y);
    assert_int_equal(tb_quant_dequantize(t, blocks, y, (uint64_t)n), 0);
    for (int i = 0; i < n; i++) {
        if ((double)y[i] != want[i]) {
            fail_msg("%s element %d: got %g, want %g", tb_dtype_name(t), i, (double)y[i],
                     want[i]);
        }
    }
    free(y);
}

static void test_32_element_types(void **state)
{
    (void)state;
    const float d = 0.25f, m = -1.5f;
    for (int rep = 0; rep < 20; rep++) {
        int c[32];
        double w[7][32];
        for (int i = 0; i < 32; i++) {
            c[i] = rep == 0 ? 0 : rep == 1 ? 31 : s_rand(32); /* all-min, all-max, random */
        }
        struct tb_block_q4_0 q40;
        struct tb_block_q4_1 q41;
        struct tb_block_q5_0 q50;
        struct tb_block_q5_1 q51;
        struct tb_block_iq4_nl nl;
        struct tb_block_q8_0 q80;
        s_f16(q40.d, d);
        s_f16(q41.d, d);
        s_f16(q41.m, m);
        s_f16(q50.d, d);
        s_f16(q51.d, d);
        s_f16(q51.m, m);
        s_f16(nl.d, d);
        s_f16(q80.d, -d);
        s_nib32(q40.qs, c);
        s_nib32(q41.qs, c);
        s_nib32(q50.qs, c);
        s_nib32(q51.qs, c);
        s_nib32(nl.qs, c);
        uint32_t qh = 0;
        for (int i = 0; i < 32; i++) {
            qh |= (uint32_t)(c[i] >> 4) << i;
            q80.qs[i] = (int8_t)(c[i] * 8 - 128);
            w[0][i] = (double)((c[i] & 15) - 8) * d;
            w[1][i] = (double)(c[i] & 15) * d + m;
            w[2][i] = (double)(c[i] - 16) * d;
            w[3][i] = (double)c[i] * d + m;
            w[4][i] = (double)tb_quant_iq4_values[c[i] & 15] * d;
            w[5][i] = (double)(c[i] * 8 - 128) * -d;
        }
        for (int k = 0; k < 4; k++) {
            q50.qh[k] = q51.qh[k] = (uint8_t)(qh >> (8 * k));
        }
        s_check(TB_DTYPE_Q4_0, &q40, 1, w[0]);
        s_check(TB_DTYPE_Q4_1, &q41, 1, w[1]);
        s_check(TB_DTYPE_Q5_0, &q50, 1, w[2]);
        s_check(TB_DTYPE_Q5_1, &q51, 1, w[3]);
        s_check(TB_DTYPE_IQ4_NL, &nl, 1, w[4]);
        s_check(TB_DTYPE_Q8_0, &q80, 1, w[5]);
    }
}

static int s_code(int rep, int lo, int hi)
{
    return rep == 0 ? lo : rep == 1 ? hi : lo + s_rand(hi - lo + 1);
}

static void test_q2_k_q3_k(void **state)
{
    (void)state;
    const float d = 0.5f, dmin = 0.125f;
    for (int rep = 0; rep < 20; rep++) {
        struct tb_block_q2_k b2;
        struct tb_block_q3_k b3;
        memset(&b2, 0, sizeof b2);
        memset(&b3, 0, sizeof b3);
        s_f16(b2.d, d);
        s_f16(b2.dmin, dmin);
        s_f16(b3.d, -d);
        int sc[16], mn[16], s3[16];
        for (int g = 0; g < 16; g++) {
            sc[g] = s_code(rep, 0, 15);
            mn[g] = s_code(rep, 0, 15);
            s3[g] = s_code(rep, 0, 63);
            b2.scales[g] = (uint8_t)(sc[g] | mn[g] << 4);
            b3.scales[g % 8] |= (uint8_t)((s3[g] & 15) << (g < 8 ? 0 : 4));
            b3.scales[8 + g % 4] |= (uint8_t)((s3[g] >> 4) << (2 * (g / 4)));
        }
        double w2[256], w3[256];
        for (int e = 0; e < 256; e++) {
            int n = e / 128, j = (e / 32) % 4, l = e % 32, g = e / 16;
            int c2 = s_code(rep, 0, 3), c3 = s_code(rep, -4, 3);
            b2.qs[32 * n + l] |= (uint8_t)(c2 << (2 * j));
            b3.qs[32 * n + l] |= (uint8_t)((c3 & 3) << (2 * j));
            if (c3 >= 0) {
                b3.hmask[l] |= (uint8_t)(1 << (e / 32));
            }
            w2[e] = (double)d * sc[g] * c2 - (double)dmin * mn[g];
            w3[e] = (double)-d * (s3[g] - 32) * c3;
        }
        s_check(TB_DTYPE_Q2_K, &b2, 1, w2);
        s_check(TB_DTYPE_Q3_K, &b3, 1, w3);
    }
}

/* Q4_K's and Q5_K's 12 bytes of 6-bit scales and mins. */
static void s_pack_k_scales(uint8_t out[12], const int *sc, const int *m)
{
    memset(out, 0, 12);
    for (int s = 0; s < 8; s++) {
        if (s < 4) {
            out[s] |= (uint8_t)sc[s];
            out[s + 4] |= (uint8_t)m[s];
        } else {
            out[s + 4] = (uint8_t)((sc[s] & 15) | (m[s] & 15) << 4);
            out[s - 4] |= (uint8_t)((sc[s] >> 4) << 6);
            out[s] |= (uint8_t)((m[s] >> 4) << 6);
        }
    }
}

static void test_q4_k_q5_k(void **state)
{
    (void)state;
    const float d = 0.25f, dmin = -0.5f;
    for (int rep = 0; rep < 20; rep++) {
        struct tb_block_q4_k b4;
        struct tb_block_q5_k b5;
        memset(&b4, 0, sizeof b4);
        memset(&b5, 0, sizeof b5);
        s_f16(b4.d, d);
        s_f16(b4.dmin, dmin);
        s_f16(b5.d, d);
        s_f16(b5.dmin, dmin);
        int sc[8], mn[8];
        for (int s = 0; s < 8; s++) {
            sc[s] = s_code(rep, 0, 63);
            mn[s] = s_code(rep, 0, 63);
        }
        s_pack_k_scales(b4.scales, sc, mn);
        s_pack_k_scales(b5.scales, sc, mn);
        for (int s = 0; s < 8; s++) {
            uint8_t a, b;
            tb_quant_k_scale_min(b4.scales, s, &a, &b);
            assert_int_equal(a, sc[s]);
            assert_int_equal(b, mn[s]);
        }
        double w4[256], w5[256];
        for (int e = 0; e < 256; e++) {
            int n = e / 64, k = (e / 32) % 2, l = e % 32, s = e / 32;
            int c = s_code(rep, 0, 31);
            b4.qs[32 * n + l] |= (uint8_t)((c & 15) << (4 * k));
            b5.qs[32 * n + l] |= (uint8_t)((c & 15) << (4 * k));
            b5.qh[l] |= (uint8_t)((c >> 4) << s);
            w4[e] = (double)d * sc[s] * (c & 15) - (double)dmin * mn[s];
            w5[e] = (double)d * sc[s] * c - (double)dmin * mn[s];
        }
        s_check(TB_DTYPE_Q4_K, &b4, 1, w4);
        s_check(TB_DTYPE_Q5_K, &b5, 1, w5);
    }
}

static void test_q6_k_iq4_xs(void **state)
{
    (void)state;
    const float d = 0.125f;
    for (int rep = 0; rep < 20; rep++) {
        struct tb_block_q6_k b6;
        struct tb_block_iq4_xs bx;
        memset(&b6, 0, sizeof b6);
        memset(&bx, 0, sizeof bx);
        s_f16(b6.d, d);
        s_f16(bx.d, -d);
        int ls[8];
        unsigned sh = 0;
        for (int g = 0; g < 16; g++) {
            b6.scales[g] = (int8_t)s_code(rep, -128, 127);
        }
        for (int s = 0; s < 8; s++) {
            ls[s] = s_code(rep, 0, 63);
            bx.scales_l[s / 2] |= (uint8_t)((ls[s] & 15) << (4 * (s % 2)));
            sh |= (unsigned)(ls[s] >> 4) << (2 * s);
        }
        bx.scales_h[0] = (uint8_t)sh;
        bx.scales_h[1] = (uint8_t)(sh >> 8);
        double w6[256], wx[256];
        int cx[256];
        for (int e = 0; e < 256; e++) {
            int n = e / 128, k = (e / 64) % 2, i = e % 64, j = (e / 32) % 4, l = e % 32;
            int c = s_code(rep, 0, 63);
            b6.ql[64 * n + i] |= (uint8_t)((c & 15) << (4 * k));
            b6.qh[32 * n + l] |= (uint8_t)((c >> 4) << (2 * j));
            w6[e] = (double)d * b6.scales[e / 16] * (c - 32);
            cx[e] = s_code(rep, 0, 15);
            wx[e] = (double)-d * (ls[e / 32] - 32) * tb_quant_iq4_values[cx[e]];
        }
        for (int s = 0; s < 8; s++) {
            s_nib32(bx.qs + 16 * s, cx + 32 * s);
        }
        s_check(TB_DTYPE_Q6_K, &b6, 1, w6);
        s_check(TB_DTYPE_IQ4_XS, &bx, 1, wx);
    }
}

static void test_dequantize_errors(void **state)
{
    (void)state;
    uint8_t blk[210] = {0};
    float y[256];
    assert_int_equal(tb_quant_dequantize(TB_DTYPE_Q6_K, blk, y, 255), TB_EINVAL);
    assert_int_equal(tb_quant_dequantize(TB_DTYPE_Q6_K, blk, y, 128), TB_EINVAL);
    assert_int_equal(tb_quant_dequantize(TB_DTYPE_F16, blk, y, 2), TB_EINVAL);
    assert_int_equal(tb_quant_dequantize(TB_DTYPE_COUNT, blk, y, 32), TB_EINVAL);
    assert_int_equal(tb_dtype_to_f32(TB_DTYPE_Q4_K, blk, y, 100), TB_EINVAL);
    /* a block at an odd address decodes the same (the structs need no alignment) */
    uint8_t buf[1 + 144];
    for (int i = 0; i < 145; i++) {
        buf[i] = (uint8_t)(i * 37 + 5);
    }
    buf[2] = 0x00; /* d = 2^-14 * 1.x: finite */
    buf[4] = 0x00;
    float a[256], b[256];
    uint8_t aligned[144];
    memcpy(aligned, buf + 1, 144);
    assert_int_equal(tb_dtype_to_f32(TB_DTYPE_Q4_K, buf + 1, a, 256), 0);
    assert_int_equal(tb_dtype_to_f32(TB_DTYPE_Q4_K, aligned, b, 256), 0);
    assert_memory_equal(a, b, sizeof a);
}

static void test_act_formats(void **state)
{
    (void)state;
    assert_int_equal(tb_quant_act_for(TB_DTYPE_Q4_K), TB_QUANT_ACT_Q8_K);
    assert_int_equal(tb_quant_act_for(TB_DTYPE_IQ4_XS), TB_QUANT_ACT_Q8_K);
    assert_int_equal(tb_quant_act_for(TB_DTYPE_Q5_1), TB_QUANT_ACT_Q8_32);
    assert_int_equal(tb_quant_act_for(TB_DTYPE_IQ4_NL), TB_QUANT_ACT_Q8_32);
    assert_int_equal(tb_quant_act_for(TB_DTYPE_BF16), TB_QUANT_ACT_NONE);
    assert_int_equal(tb_quant_act_block_bytes(TB_QUANT_ACT_Q8_K), 292);
    assert_int_equal(tb_quant_act_block_bytes(TB_QUANT_ACT_Q8_32), 44);
    assert_int_equal(tb_quant_act_block_elems(TB_QUANT_ACT_NONE), 0);

    enum { N = 512 };
    float x[N], back[N];
    for (int i = 0; i < N; i++) {
        x[i] = sinf((float)i * 0.37f) * (i < 256 ? 3.0f : 1e-3f);
    }
    x[300] = -0.5f; /* the largest magnitude of block 1, negative */
    static struct tb_block_q8_k qk[N / 256];
    static struct tb_block_q8_32 q32[N / 32];
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_Q8_K, x, qk, N), 0);
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_Q8_32, x, q32, N), 0);
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_Q8_K, x, qk, 100), TB_EINVAL);
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_NONE, x, qk, 256), TB_EINVAL);
    assert_true(qk[1].d == 0.5f / 127.0f);
    assert_int_equal(qk[1].qs[300 - 256], -127);
    assert_int_equal(tb_quant_act_to_f32(TB_QUANT_ACT_Q8_K, qk, back, N), 0);
    for (int i = 0; i < N; i++) {
        float d = qk[i / 256].d;
        assert_true(fabsf(back[i] - x[i]) <= d * 0.5f * 1.0001f);
    }
    for (int b = 0; b < N / 256; b++) {
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int i = 0; i < 16; i++) {
                s += qk[b].qs[16 * g + i];
            }
            assert_int_equal(qk[b].bsums[g], s);
        }
    }
    assert_int_equal(tb_quant_act_to_f32(TB_QUANT_ACT_Q8_32, q32, back, N), 0);
    int n_f16 = 0;
    for (int b = 0; b < N / 32; b++) {
        int s = 0;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) {
            amax = fmaxf(amax, fabsf(x[32 * b + i]));
        }
        /* blocks 0..7 and 9 (amax 3 or 0.5): the scale is amax / 127 rounded to f16, as
         * ggml's block_q8_0 stores it; the others (amax about 1e-3, whose scale would be a
         * subnormal f16): the f32 scale, exactly */
        float d32 = amax / 127.0f;
        int f16 = d32 >= 0x1p-14f;
        n_f16 += f16;
        assert_true(q32[b].d == (f16 ? tb_f16_to_f32(tb_f32_to_f16(d32)) : d32));
        /* quants are rounded with the f32 scale: half a step plus the f16 rounding of d */
        float bound = (f16 ? 0.5f + 127.0f / 2048.0f : 0.5f) * d32 * 1.0001f;
        for (int i = 0; i < 32; i++) {
            s += q32[b].qs[i];
            assert_true(fabsf(back[32 * b + i] - x[32 * b + i]) <= bound);
        }
        assert_int_equal(q32[b].sum, s);
    }
    assert_int_equal(n_f16, 9);
    /* zero and non-finite blocks: defined, zero scale */
    float z[256] = {0};
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_Q8_K, z, qk, 256), 0);
    assert_true(qk[0].d == 0.0f && qk[0].qs[7] == 0 && qk[0].bsums[3] == 0);
    z[5] = INFINITY;
    z[6] = NAN;
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_Q8_K, z, qk, 256), 0);
    assert_true(qk[0].d == 0.0f);
}

/* The rounding rule of ggml's activation quantizers, to the last bit: x * (127 / max|x|) rounded
 * to nearest with halves to even, and Q8_K's scale 1 / (127 / max|x|), which is not always
 * max|x| / 127 in f32 (it is not for 0.3: the two differ in the last bit). */
static void test_act_rounding(void **state)
{
    (void)state;
    static float x[256];
    static struct tb_block_q8_k qk[1];
    static struct tb_block_q8_32 q32[8];
    x[0] = 127.0f; /* id = 1: the products are the values themselves */
    x[1] = 2.5f;
    x[2] = -3.5f;
    x[3] = 0.5f;
    x[4] = 1.5f;
    x[5] = -126.5f;
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_Q8_K, x, qk, 256), 0);
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_Q8_32, x, q32, 256), 0);
    const int want[6] = {127, 2, -4, 0, 2, -126};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(qk[0].qs[i], want[i]);
        assert_int_equal(q32[0].qs[i], want[i]);
    }
    assert_true(qk[0].d == 1.0f && q32[0].d == 1.0f);

    volatile float amax = 0.3f; /* volatile: the divisions in f32 at run time */
    for (int i = 0; i < 256; i++) {
        x[i] = amax * (float)(i % 7) / 6.0f;
    }
    x[77] = -amax;
    const float d_k = 1.0f / (127.0f / amax), d_32 = amax / 127.0f;
    assert_true(d_k != d_32);
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_Q8_K, x, qk, 256), 0);
    assert_int_equal(tb_quant_act_quantize(TB_QUANT_ACT_Q8_32, x, q32, 256), 0);
    assert_true(qk[0].d == d_k);
    assert_true(q32[2].d == tb_f16_to_f32(tb_f32_to_f16(d_32)));
    assert_int_equal(qk[0].qs[77], -127);
    for (int i = 0; i < 256; i++) {
        float v = rintf(x[i] * (127.0f / amax));
        assert_int_equal(qk[0].qs[i], (int)v);
    }
    /* s, the min's factor of Q4_1 / Q5_1: the f32 d times the exact sum, rounded to f16 (ggml's
     * block_q8_1), which here is not the stored f16 d times the sum */
    bool differs = false;
    for (int b = 0; b < 8; b++) {
        float s = tb_f16_to_f32(tb_f32_to_f16(d_32 * (float)q32[b].sum));
        assert_true(q32[b].s == s);
        differs = differs || s != q32[b].d * (float)q32[b].sum;
    }
    assert_true(differs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_32_element_types),  cmocka_unit_test(test_q2_k_q3_k),
        cmocka_unit_test(test_q4_k_q5_k),         cmocka_unit_test(test_q6_k_iq4_xs),
        cmocka_unit_test(test_dequantize_errors), cmocka_unit_test(test_act_formats),
        cmocka_unit_test(test_act_rounding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
