/*
 * tb_cpu_attn_impl.h - the paged-attention task, written once and compiled once per ISA: each
 * ISA file defines the vector helpers below and TB_ATTN_TASK (the function's name), then
 * includes this file.  Not a public header.
 *
 * Cache layout (see tb_cpu_kernels.h): per (block, kv head), K is stored transposed,
 * [head_dim][block_size], so the scores of all slots of a block come from head_dim
 * multiply-adds of a broadcast query value with one contiguous row of K, no horizontal sums;
 * V is stored [block_size][head_dim], so the output accumulates whole V rows.
 *
 * Helpers the includer provides (hd = head_dim, n = valid slots, bs = block_size, f16 = cache
 * dtype is F16 else F32):
 *   float ATT_SCORES(float *s, const float *q, const uint8_t *kt, int hd, int n, int bs, int f16);
 *         s[j] = sum_d q[d] * kt[d * bs + j] for j < n; returns max_j s[j] (computed in
 *         registers: reading s back one float at a time would stall on store forwarding)
 *   void  ATT_PV(float *acc, const float *p, const uint8_t *v, int hd, int n, int f16);
 *         acc[d] += sum_j p[j] * v[j * hd + d]
 *   void  ATT_SCALE(float *y, float a, int n);                         y *= a
 *   float ATT_EXP_BLOCK(float *s, int n, float m);  s[i] = exp(s[i] - m); returns the sum
 * and optionally, for groups of 4 or more query heads per kv head, the same over all G heads
 * at once, each K and V value loaded and widened once for the group instead of once per head:
 *   void  ATT_SCORES_G(float *s, float *mx, const float *q, int G, const uint8_t *kt, int hd,
 *                      int n, int bs, int f16);   s[h * bs + j], q[h * hd + d], mx[h]
 *   void  ATT_PV_G(float *acc, const float *p, int G, const uint8_t *v, int hd, int n, int bs,
 *                  int f16);                      acc[h * hd + d] += sum_j p[h * bs + j] v[j][d]
 *
 * Sliding window (s->window > 0): the query at position pos attends to positions
 * (pos - window, pos], Mistral's rule in Hugging Face transformers.  Blocks wholly before the
 * window are skipped (not read, their table entries not checked); in the block holding the
 * window's first position the scores and PV start at that slot, by offsetting the K and V
 * pointers (the helpers take any start: K rows keep their stride bs).  Without a window, or with
 * one that covers [0, pos], the work is exactly that of full attention, bit for bit.
 *
 * The block tables were validated by the caller (ids in range, tables long enough).
 */
#include <math.h>

/* Soft-capping of n scores: s = cap * tanh(s / cap); returns the new maximum. */
static float s_attn_softcap(float *s, int n, float cap)
{
    float mx = -INFINITY;
    const float inv = 1.0f / cap;
    for (int i = 0; i < n; i++) {
        s[i] = cap * tanhf(s[i] * inv);
        mx = s[i] > mx ? s[i] : mx;
    }
    return mx;
}

static void TB_ATTN_TASK(const struct tb_attn_args *a, int tok, int kvh, float *scratch)
{
    const struct tb_cpu_kv_layout *L = a->layout;
    const struct tb_cpu_attn_seq *s = &a->seqs[tok];
    const int hd = L->head_dim;
    const int bs = L->block_size;
    const int G = a->group;
    const int f16 = L->dtype == TB_CPU_F16;
    const int n_att = s->pos + 1 < s->ctx_len ? s->pos + 1 : s->ctx_len;
    /* first position attended: pos - window + 1 with a window, else 0 */
    const int lo = s->window > 0 && s->pos - s->window + 1 > 0 ? s->pos - s->window + 1 : 0;
    const size_t es = f16 ? 2 : 4;
    float *acc = scratch;     /* G * hd running numerators */
    float *sc = acc + G * hd; /* G * bs scores / probabilities (one bs per head) */
    float *m = sc + G * bs;   /* G running maxima */
    float *l = m + G;         /* G running sums */
    float *bm = l + G;        /* G block maxima */
    float *qs = bm + G;       /* G * hd queries, pre-scaled */
    const float *q0 = a->q + (size_t)tok * a->ldq + (size_t)kvh * G * hd;
    float *o0 = a->out + (size_t)tok * a->ldo + (size_t)kvh * G * hd;

    if (n_att <= lo) {
        memset(o0, 0, sizeof(float) * (size_t)G * hd);
        return;
    }
    memset(acc, 0, sizeof(float) * (size_t)G * hd);
    for (int h = 0; h < G; h++) {
        m[h] = -INFINITY;
        l[h] = 0.0f;
    }
    for (int i = 0; i < G * hd; i++) {
        qs[i] = q0[i] * a->scale;
    }
    for (int b = lo / bs; b * bs < n_att; b++) {
        const int first = b * bs < lo ? lo - b * bs : 0; /* first slot in the window */
        const int nvalid = (n_att - b * bs < bs ? n_att - b * bs : bs) - first;
        const size_t blk = (size_t)s->block_table[b];
        const uint8_t *kb = a->k + blk * a->block_bytes + (size_t)kvh * a->head_bytes +
                            (size_t)first * es;
        const uint8_t *vb = a->v + blk * a->block_bytes + (size_t)kvh * a->head_bytes +
                            (size_t)first * (size_t)hd * es;
#ifdef ATT_SCORES_G
        const int grouped = G >= 4;
        if (grouped) {
            ATT_SCORES_G(sc, bm, qs, G, kb, hd, nvalid, bs, f16);
        }
#else
        const int grouped = 0;
#endif
        for (int h = 0; h < G; h++) {
            float *sch = grouped ? sc + (size_t)h * bs : sc;
            float *acch = acc + (size_t)h * hd;
            float bmax = grouped ? bm[h]
                                 : ATT_SCORES(sc, qs + (size_t)h * hd, kb, hd, nvalid, bs, f16);
            if (a->softcap > 0.0f) {
                bmax = s_attn_softcap(sch, nvalid, a->softcap);
            }
            float mnew = bmax > m[h] ? bmax : m[h];
            if (mnew > m[h] && l[h] > 0.0f) {
                float corr = expf(m[h] - mnew);
                l[h] *= corr;
                ATT_SCALE(acch, corr, hd);
            }
            m[h] = mnew;
            l[h] += ATT_EXP_BLOCK(sch, nvalid, mnew);
            if (!grouped) {
                ATT_PV(acch, sc, vb, hd, nvalid, f16);
            }
        }
#ifdef ATT_SCORES_G
        if (grouped) {
            ATT_PV_G(acc, sc, G, vb, hd, nvalid, bs, f16);
        }
#endif
    }
    for (int h = 0; h < G; h++) {
        float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        for (int d = 0; d < hd; d++) {
            o0[(size_t)h * hd + d] = acc[(size_t)h * hd + d] * inv;
        }
    }
}
