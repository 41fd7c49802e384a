/*
 * tb_cpu_attn_impl.h - the paged-attention task, written once and compiled once per ISA: each
 * ISA file defines the vector helpers below and TB_ATTN_TASK (the function's name), then
 * includes this file.  Not a public header.
 *
 * Helpers the includer provides (n = head_dim):
 *   float ATT_DOT_F32(const float *q, const float *k, int n);
 *   float ATT_DOT_F16(const float *q, const uint16_t *k, int n);
 *   void  ATT_AXPY_F32(float *y, float a, const float *x, int n);     y += a * x
 *   void  ATT_AXPY_F16(float *y, float a, const uint16_t *x, int n);
 *   void  ATT_SCALE(float *y, float a, int n);                         y *= a
 *   float ATT_EXP_BLOCK(float *s, int n, float m);  s[i] = exp(s[i] - m); returns the sum
 *
 * The block tables were validated by the caller (ids in range, tables long enough).
 */
#include <math.h>

static void TB_ATTN_TASK(const struct tb_attn_args *a, int tok, int kvh, float *scratch)
{
    const struct tb_cpu_kv_layout *L = a->layout;
    const struct tb_cpu_attn_seq *s = &a->seqs[tok];
    const int hd = L->head_dim;
    const int bs = L->block_size;
    const int G = a->group;
    const int f16 = L->dtype == TB_CPU_F16;
    const size_t vec_bytes = (size_t)hd * (f16 ? 2 : 4);
    int n_att = s->pos + 1 < s->ctx_len ? s->pos + 1 : s->ctx_len;
    float *acc = scratch;       /* G * hd running numerators */
    float *sc = acc + G * hd;   /* bs scores / probabilities */
    float *m = sc + bs;         /* G running maxima */
    float *l = m + G;           /* G running sums */
    const float *q0 = a->q + (size_t)tok * a->ldq + (size_t)kvh * G * hd;
    float *o0 = a->out + (size_t)tok * a->ldo + (size_t)kvh * G * hd;

    if (n_att <= 0) {
        memset(o0, 0, sizeof(float) * (size_t)G * hd);
        return;
    }
    memset(acc, 0, sizeof(float) * (size_t)G * hd);
    for (int h = 0; h < G; h++) {
        m[h] = -INFINITY;
        l[h] = 0.0f;
    }
    for (int b = 0; b * bs < n_att; b++) {
        const int nvalid = n_att - b * bs < bs ? n_att - b * bs : bs;
        const size_t blk = (size_t)s->block_table[b];
        const uint8_t *kb = a->k + blk * a->block_bytes + (size_t)kvh * a->head_bytes;
        const uint8_t *vb = a->v + blk * a->block_bytes + (size_t)kvh * a->head_bytes;
        for (int h = 0; h < G; h++) {
            const float *qh = q0 + (size_t)h * hd;
            float *acch = acc + (size_t)h * hd;
            float bmax = -INFINITY;
            for (int j = 0; j < nvalid; j++) {
                const uint8_t *kj = kb + (size_t)j * vec_bytes;
                float v = f16 ? ATT_DOT_F16(qh, (const uint16_t *)kj, hd)
                              : ATT_DOT_F32(qh, (const float *)kj, hd);
                v *= a->scale;
                sc[j] = v;
                bmax = v > bmax ? v : bmax;
            }
            float mnew = bmax > m[h] ? bmax : m[h];
            if (mnew > m[h] && l[h] > 0.0f) {
                float corr = expf(m[h] - mnew);
                l[h] *= corr;
                ATT_SCALE(acch, corr, hd);
            }
            m[h] = mnew;
            l[h] += ATT_EXP_BLOCK(sc, nvalid, mnew);
            for (int j = 0; j < nvalid; j++) {
                const uint8_t *vj = vb + (size_t)j * vec_bytes;
                if (f16) {
                    ATT_AXPY_F16(acch, sc[j], (const uint16_t *)vj, hd);
                } else {
                    ATT_AXPY_F32(acch, sc[j], (const float *)vj, hd);
                }
            }
        }
    }
    for (int h = 0; h < G; h++) {
        float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        for (int d = 0; d < hd; d++) {
            o0[(size_t)h * hd + d] = acc[(size_t)h * hd + d] * inv;
        }
    }
}
