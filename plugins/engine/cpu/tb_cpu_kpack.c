/*
 * tb_cpu_kpack.c - the packed K-quant layout "Kx16" (tb_cpu_internal.h): the packing of Q4_K,
 * Q5_K, Q6_K and IQ4_XS matrices (Q2_K and Q3_K: tb_cpu_kpack23.c), written from each block's integer form (tb_quant_unpack, the
 * reference decoder), and the portable matmul over it, the definition the AVX2 and AVX-512
 * kernels (tb_cpu_kpack_avx2.c, tb_cpu_kpack_avx512.c) reproduce bit for bit.
 *
 * Every output is the reference's sum (tb_quant_dot): per super-block the exact integer sums
 * isum = sum_g sc_g * sum_{i in g} code_i * a_i and msum = sum_g mn_g * sum_{i in g} a_i, then
 * acc += d * da * isum - dmin * da * msum in f32, in this order, block after block.
 */
#include <string.h>

#include "tb_cpu_internal.h"
#include "tb_errors.h"
#include "tb_quant.h"

static tb_dtype_t s_model_type(int kind)
{
    return kind == 2   ? TB_DTYPE_Q2_K
           : kind == 3 ? TB_DTYPE_Q3_K
           : kind == 4 ? TB_DTYPE_Q4_K
           : kind == 5 ? TB_DTYPE_Q5_K
           : kind == 6 ? TB_DTYPE_Q6_K
                       : TB_DTYPE_IQ4_XS;
}

/* The code stored for value code `v` of a block of this kind: Q6_K's + 32, IQ4_XS's index in
 * the table of its values. */
static int s_stored(int kind, int v)
{
    if (kind == 6) {
        return v + 32;
    }
    if (kind == 7) {
        for (int k = 0; k < 16; k++) {
            if (tb_quant_iq4_values[k] == v) {
                return k;
            }
        }
    }
    return v;
}

size_t tb_cpu_kpack_bytes(const struct tb_cpu_weight *w)
{
    const int kind = w ? tb_cpu_kp_kind(w->dtype) : 0;
    if (kind == 0 || w->rows < 1 || w->cols < TB_QK_K || w->cols % TB_QK_K != 0) {
        return 0;
    }
    size_t groups = (size_t)((w->rows + TB_CPU_PACK_ROWS - 1) / TB_CPU_PACK_ROWS);
    return groups * tb_cpu_kp_group_bytes(kind, w->cols);
}

/* Writes row i's part of one record from the block's integer form `u` (NULL: a padding row,
 * all zero). */
static void s_pack_block(uint8_t *rec, int kind, int i, const struct tb_quant_unpacked *u)
{
    float d = u ? u->d : 0.0f, dmin = u ? u->dmin : 0.0f;
    memcpy(rec + 4 * i, &d, 4);
    if (tb_cpu_kp_has_min(kind)) {
        memcpy(rec + 64 + 4 * i, &dmin, 4);
    }
    uint8_t *sc = rec + tb_cpu_kp_sc_off(kind);
    for (int g = 0; g < (kind == 6 ? 16 : 8); g++) {
        sc[16 * g + i] = u ? (uint8_t)u->sc[g] : 0;
        if (tb_cpu_kp_has_min(kind)) {
            rec[tb_cpu_kp_mn_off(i, g)] = u ? (uint8_t)u->mn[g] : 0;
        }
    }
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            int lo = u ? s_stored(kind, u->code[64 * c + l]) : 0;
            int up = u ? s_stored(kind, u->code[64 * c + 32 + l]) : 0;
            const int p = 32 * c + l, lane = 4 * i + l % 4;
            const uint8_t v = (uint8_t)((lo & 15) | (up & 15) << 4);
            if (kind == 6) {
                rec[tb_cpu_kp6_nib_off(c, l / 4) + lane] = v;
                uint8_t *h = &rec[tb_cpu_kp6_hi_off(c >> 1, l / 4) + lane];
                *h = (uint8_t)(*h | ((lo >> 4) & 3) << (4 * (c & 1)) |
                               ((up >> 4) & 3) << (4 * (c & 1) + 2));
                continue;
            }
            rec[tb_cpu_kp_vec_off(kind, p / 4) + lane] = v;
            if (kind == 5) {
                uint8_t *h = &rec[tb_cpu_kp_hvec_off(5, l / 4) + lane];
                *h = (uint8_t)(*h | ((lo >> 4) & 1) << (2 * c) | ((up >> 4) & 1) << (2 * c + 1));
            }
        }
    }
}

int tb_cpu_kpack(const struct tb_cpu_weight *w, void *dst, size_t dst_bytes)
{
    size_t need = tb_cpu_kpack_bytes(w);
    if (need == 0 || !w->data || !dst || ((uintptr_t)dst & 63) != 0 || dst_bytes < need) {
        return TB_EINVAL;
    }
    const int kind = tb_cpu_kp_kind(w->dtype);
    const tb_dtype_t t = s_model_type(kind);
    const int64_t nb = w->cols / TB_QK_K;
    const size_t rb = tb_cpu_dtype_row_bytes(w->dtype, w->cols), bb = tb_dtype_block_bytes(t);
    const size_t rec_bytes = tb_cpu_kp_block_bytes(kind);
    const int64_t groups = (w->rows + TB_CPU_PACK_ROWS - 1) / TB_CPU_PACK_ROWS;
    memset(dst, 0, need); /* the high-bit planes are or-ed in */
    struct tb_quant_unpacked u;
    for (int64_t g = 0; g < groups; g++) {
        uint8_t *gp = (uint8_t *)dst + (size_t)g * tb_cpu_kp_group_bytes(kind, w->cols);
        for (int i = 0; i < TB_CPU_PACK_ROWS; i++) {
            int64_t r = g * TB_CPU_PACK_ROWS + i;
            const uint8_t *src = r < w->rows ? (const uint8_t *)w->data + (size_t)r * rb : NULL;
            for (int64_t b = 0; b < nb; b++) {
                if (src) {
                    int rc = tb_quant_unpack(t, src + (size_t)b * bb, &u);
                    if (rc != TB_OK) {
                        return rc; /* never pack the previous block's values in its place */
                    }
                }
                if (kind <= 3) {
                    tb_cpu_kpack23_block(gp + (size_t)b * rec_bytes, kind, i, src ? &u : NULL);
                } else {
                    s_pack_block(gp + (size_t)b * rec_bytes, kind, i, src ? &u : NULL);
                }
            }
        }
    }
    return TB_OK;
}

/* The unsigned code of element e (64c + 32h + l) of row i in record `rec` (IQ4_XS: its value
 * + 128). */
static int s_code(const uint8_t *rec, int kind, int i, int e)
{
    const int c = e / 64, h = (e / 32) % 2, l = e % 32, p = 32 * c + l, lane = 4 * i + l % 4;
    if (kind == 6) {
        const int lo = (rec[tb_cpu_kp6_nib_off(c, l / 4) + lane] >> (4 * h)) & 15;
        return lo | ((rec[tb_cpu_kp6_hi_off(c >> 1, l / 4) + lane] >> (4 * (c & 1) + 2 * h)) & 3)
                        << 4;
    }
    int v = (rec[tb_cpu_kp_vec_off(kind, p / 4) + lane] >> (4 * h)) & 15;
    if (kind == 5) {
        v |= ((rec[tb_cpu_kp_hvec_off(5, l / 4) + lane] >> (2 * c + h)) & 1) << 4;
    } else if (kind == 7) {
        v = tb_quant_iq4_values[v] + 128;
    }
    return v;
}

/* Row i's contribution of one record with the Q8_K block `y` (the reference's f32 step). */
static float s_block(const uint8_t *rec, int kind, int i, const struct tb_block_q8_k *y)
{
    const int group = kind == 6 ? 16 : 32, off = kind == 6 ? 32 : kind == 7 ? 128 : 0;
    const uint8_t *sc = rec + tb_cpu_kp_sc_off(kind);
    int32_t isum = 0, msum = 0;
    for (int g = 0; g < TB_QK_K / group; g++) {
        int32_t s = 0, as = 0;
        for (int e = g * group; e < (g + 1) * group; e++) {
            s += s_code(rec, kind, i, e) * y->qs[e];
        }
        for (int k = g * group / 16; k < (g + 1) * group / 16; k++) {
            as += y->bsums[k];
        }
        const int scale = kind >= 6 ? (int8_t)sc[16 * g + i] : sc[16 * g + i];
        isum += scale * (s - off * as);
        if (tb_cpu_kp_has_min(kind)) {
            msum += rec[tb_cpu_kp_mn_off(i, g)] * as;
        }
    }
    float d, dmin = 0.0f;
    memcpy(&d, rec + 4 * i, 4);
    if (tb_cpu_kp_has_min(kind)) {
        memcpy(&dmin, rec + 64 + 4 * i, 4);
    }
    return d * y->d * (float)isum - dmin * y->d * (float)msum;
}

void tb_cpu_kpack_rows_generic(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    const int kind = tb_cpu_kp_kind(a->dtype);
    const int64_t nb = a->cols / TB_QK_K;
    const size_t rec_bytes = tb_cpu_kp_block_bytes(kind);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *gp = a->w + (size_t)(r / TB_CPU_PACK_ROWS) * a->w_row_bytes;
        const int i = (int)(r % TB_CPU_PACK_ROWS);
        for (int tok = 0; tok < a->n_tok; tok++) {
            const struct tb_block_q8_k *x =
                (const struct tb_block_q8_k *)(a->qx + (size_t)tok * a->qx_stride);
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *rec = gp + (size_t)b * rec_bytes;
                acc += kind <= 3 ? tb_cpu_kpack23_dot(rec, kind, i, x + b)
                                 : s_block(rec, kind, i, x + b);
            }
            a->y[(size_t)tok * a->ldy + r] = acc + (a->bias ? a->bias[r] : 0.0f);
        }
    }
}
