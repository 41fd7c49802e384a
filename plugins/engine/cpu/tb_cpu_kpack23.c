/*
 * tb_cpu_kpack23.c - the Kx16 layout of Q2_K and Q3_K matrices (kinds 2 and 3,
 * tb_cpu_internal.h): the packing of a block, written from its integer form (tb_quant_unpack,
 * the reference decoder; tb_cpu_kpack walks the matrix), and the portable dot over it, the definition the AVX2 and AVX-512
 * kernels (tb_cpu_kpack23_avx2.c, tb_cpu_kpack23_avx512.c) reproduce bit for bit.
 *
 * Every output is the reference's sum (tb_quant_dot): per super-block the exact integer sums
 * isum = sum_g sc_g * sum_{i in g} code_i * a_i (Q3_K: the unsigned code minus 4, taken as
 * sum (code + 4) * a - 4 * sum a) and msum = sum_g mn_g * sum_{i in g} a_i (Q2_K), then
 * acc += d * da * isum - dmin * da * msum in f32 (Q3_K: d * da * isum), block after block.
 */
#include <string.h>

#include "tb_cpu_internal.h"
#include "tb_errors.h"
#include "tb_quant.h"

/* Writes row i's part of one record from the block's integer form `u` (NULL: a padding row,
 * all zero; the record starts zeroed, the high-bit plane is or-ed in). */
void tb_cpu_kpack23_block(uint8_t *rec, int kind, int i, const struct tb_quant_unpacked *u)
{
    const float d = u ? u->d : 0.0f, dmin = u ? u->dmin : 0.0f;
    memcpy(rec + 4 * i, &d, 4);
    if (kind == 2) {
        memcpy(rec + 64 + 4 * i, &dmin, 4);
    }
    uint8_t *sc = rec + tb_cpu_kp_sc_off(kind);
    for (int g = 0; g < 16 && u; g++) {
        sc[16 * g + i] = kind == 2 ? (uint8_t)(u->sc[g] | u->mn[g] << 4) : (uint8_t)u->sc[g];
    }
    for (int e = 0; e < TB_QK_K && u; e++) {
        const int n = e / 128, j = (e / 32) % 4, l = e % 32, p = 32 * n + l;
        const int code = kind == 3 ? u->code[e] + 4 : u->code[e]; /* 0..3 / 0..7 */
        rec[tb_cpu_kp_vec_off(kind, p / 4) + 4 * i + p % 4] |= (uint8_t)((code & 3) << (2 * j));
        if (kind == 3) {
            rec[tb_cpu_kp_hvec_off(3, l / 4) + 4 * i + l % 4] |= (uint8_t)((code >> 2)
                                                                           << (e / 32));
        }
    }
}

/* The unsigned code of element e of row i in record `rec` (Q3_K: its code + 4). */
static int s_code(const uint8_t *rec, int kind, int i, int e)
{
    const int n = e / 128, j = (e / 32) % 4, l = e % 32, p = 32 * n + l;
    int v = (rec[tb_cpu_kp_vec_off(kind, p / 4) + 4 * i + p % 4] >> (2 * j)) & 3;
    if (kind == 3) {
        v |= ((rec[tb_cpu_kp_hvec_off(3, l / 4) + 4 * i + l % 4] >> (e / 32)) & 1) << 2;
    }
    return v;
}

/* Row i's contribution of one record with the Q8_K block `y` (the reference's f32 step). */
float tb_cpu_kpack23_dot(const uint8_t *rec, int kind, int i, const struct tb_block_q8_k *y)
{
    const uint8_t *sc = rec + tb_cpu_kp_sc_off(kind);
    int32_t isum = 0, msum = 0;
    for (int g = 0; g < 16; g++) {
        int32_t s = 0;
        for (int e = 16 * g; e < 16 * (g + 1); e++) {
            s += s_code(rec, kind, i, e) * y->qs[e];
        }
        if (kind == 3) {
            isum += (int8_t)sc[16 * g + i] * (s - 4 * y->bsums[g]);
        } else {
            isum += (sc[16 * g + i] & 15) * s;
            msum += (sc[16 * g + i] >> 4) * y->bsums[g];
        }
    }
    float d, dmin = 0.0f;
    memcpy(&d, rec + 4 * i, 4);
    if (kind == 3) {
        return d * y->d * (float)isum;
    }
    memcpy(&dmin, rec + 64 + 4 * i, 4);
    return d * y->d * (float)isum - dmin * y->d * (float)msum;
}
