/* Unit tests for the mixture-of-experts step (tb_cpu_moe): routing and each gating against a
 * direct double-precision computation, ties and NaN router logits, the grouping (each chosen
 * expert run once for all its tokens), the shared expert, and batch invariance (a token alone
 * takes the fused one-token path: the same bits). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the standard headers it needs */

#include "cpu/tb_cpu_moe.h"
#include "tb_errors.h"

enum { H = 40, FF = 24, SH = 16, E = 5, K = 2, T = 9 };

struct fixture {
    tb_threadpool_t *pool;
    tb_cpu_kernels_t *kern;
    struct tb_model_params p;
    float router[E * H], gate[E][FF * H], up[E][FF * H], down[E][H * FF];
    float sh_gate[SH * H], sh_up[SH * H], sh_down[H * SH], sh_inp[H];
    struct tb_cpu_weight wg[E], wu[E], wd[E];
    struct tb_cpu_moe_layer ml;
    float x[T * H];
};

static float s_val(int i)
{
    return sinf((float)i * 0.731f + 0.3f) * 0.5f;
}

static struct tb_cpu_weight s_w(const float *data, int64_t rows, int64_t cols)
{
    return (struct tb_cpu_weight){.dtype = TB_CPU_F32, .rows = rows, .cols = cols, .data = data};
}

static int s_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(tb_threadpool_new(2, &f->pool), TB_OK);
    assert_int_equal(tb_cpu_kernels_new(f->pool, &f->kern), TB_OK);
    tb_model_params_init(&f->p);
    f->p.hidden = H;
    f->p.n_experts = E;
    f->p.n_experts_used = K;
    f->p.expert_intermediate = FF;
    f->p.shared_intermediate = SH;
    int n = 0;
    for (int i = 0; i < E * H; i++) {
        f->router[i] = s_val(n++) * 3.0f;
    }
    for (int e = 0; e < E; e++) {
        for (int i = 0; i < FF * H; i++) {
            f->gate[e][i] = s_val(n++);
            f->up[e][i] = s_val(n++);
            f->down[e][i] = s_val(n++);
        }
        f->wg[e] = s_w(f->gate[e], FF, H);
        f->wu[e] = s_w(f->up[e], FF, H);
        f->wd[e] = s_w(f->down[e], H, FF);
    }
    for (int i = 0; i < SH * H; i++) {
        f->sh_gate[i] = s_val(n++);
        f->sh_up[i] = s_val(n++);
        f->sh_down[i] = s_val(n++);
    }
    for (int i = 0; i < H; i++) {
        f->sh_inp[i] = s_val(n++);
    }
    for (int i = 0; i < T * H; i++) {
        f->x[i] = s_val(n++) * 2.0f;
    }
    f->ml = (struct tb_cpu_moe_layer){.n_experts = E,
                                      .router = s_w(f->router, E, H),
                                      .gate = f->wg,
                                      .up = f->wu,
                                      .down = f->wd,
                                      .sh_gate = s_w(f->sh_gate, SH, H),
                                      .sh_up = s_w(f->sh_up, SH, H),
                                      .sh_down = s_w(f->sh_down, H, SH),
                                      .sh_gate_inp = f->sh_inp};
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    struct fixture *f = *state;
    tb_cpu_kernels_destroy(&f->kern);
    tb_threadpool_destroy(&f->pool);
    free(f);
    return 0;
}

static double s_dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
    }
    return s;
}

/* The expert FFN of row x in double. */
static void s_ffn(const float *g, const float *u, const float *d, int ff, const float *x,
                  double *out)
{
    double act[FF > SH ? FF : SH];
    for (int r = 0; r < ff; r++) {
        double gv = s_dot(g + r * H, x, H), uv = s_dot(u + r * H, x, H);
        act[r] = gv / (1.0 + exp(-gv)) * uv;
    }
    for (int c = 0; c < H; c++) {
        double s = 0.0;
        for (int r = 0; r < ff; r++) {
            s += (double)d[c * ff + r] * act[r];
        }
        out[c] = s;
    }
}

/* The reference of one token: top-k by logit, weights per gating, plus the shared expert. */
static void s_reference(const struct fixture *f, const float *x, tb_moe_gating_t gating,
                        bool shared, double *out)
{
    double r[E];
    int sel[K];
    for (int e = 0; e < E; e++) {
        r[e] = s_dot(f->router + e * H, x, H);
    }
    for (int j = 0; j < K; j++) {
        sel[j] = -1;
        for (int e = 0; e < E; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++) {
                taken = taken || sel[i] == e;
            }
            if (!taken && (sel[j] < 0 || r[e] > r[sel[j]])) {
                sel[j] = e;
            }
        }
    }
    double sum = 0.0;
    for (int e = 0; e < E; e++) {
        bool chosen = e == sel[0] || e == sel[1];
        sum += gating == TB_MOE_SOFTMAX_ALL || chosen ? exp(r[e] - r[sel[0]]) : 0.0;
    }
    memset(out, 0, H * sizeof *out);
    double y[H];
    for (int j = 0; j < K; j++) {
        int e = sel[j];
        s_ffn(f->gate[e], f->up[e], f->down[e], FF, x, y);
        double w = exp(r[e] - r[sel[0]]) / sum;
        for (int c = 0; c < H; c++) {
            out[c] += w * y[c];
        }
    }
    if (shared) {
        s_ffn(f->sh_gate, f->sh_up, f->sh_down, SH, x, y);
        double s = 1.0 / (1.0 + exp(-s_dot(f->sh_inp, x, H)));
        for (int c = 0; c < H; c++) {
            out[c] += s * y[c];
        }
    }
}

/* Each token of f->x alone (the one-token path): bitwise what it got in the batch, `k` experts. */
static void s_check_alone(struct fixture *f, tb_cpu_moe_t *m, const float *out, uint32_t k)
{
    for (int t = 0; t < T; t++) {
        float one[H];
        uint32_t experts_run, rows;
        assert_int_equal(tb_cpu_moe_ffn(m, f->kern, f->pool, &f->ml, f->x + t * H, 1, one),
                         TB_OK);
        tb_cpu_moe_last_step(m, &experts_run, &rows);
        assert_int_equal(experts_run, k);
        assert_int_equal(rows, k);
        assert_memory_equal(one, out + t * H, sizeof one);
    }
}

/* The T tokens of f->x as one batch into out (T * H); the step (the caller destroys it). */
static tb_cpu_moe_t *s_batch(struct fixture *f, tb_moe_gating_t gating, bool shared, float *out,
                             uint32_t *experts_run, uint32_t *rows)
{
    f->p.moe_gating = gating;
    f->p.shared_intermediate = shared ? SH : 0;
    f->ml.shared = shared;
    tb_cpu_moe_t *m = NULL;
    assert_int_equal(tb_cpu_moe_new(&f->p, T, &m), TB_OK);
    assert_int_equal(tb_cpu_moe_ffn(m, f->kern, f->pool, &f->ml, f->x, T, out), TB_OK);
    tb_cpu_moe_last_step(m, experts_run, rows);
    return m;
}

static void s_check(struct fixture *f, tb_moe_gating_t gating, bool shared)
{
    float out[T * H];
    uint32_t experts_run, rows;
    tb_cpu_moe_t *m = s_batch(f, gating, shared, out, &experts_run, &rows);
    assert_int_equal(rows, T * K); /* every (token, expert) pair once */
    assert_true(experts_run > 1 && experts_run <= E);
    for (int t = 0; t < T; t++) {
        double want[H];
        s_reference(f, f->x + t * H, gating, shared, want);
        for (int c = 0; c < H; c++) {
            assert_float_equal(out[t * H + c], want[c], 1e-5 + 1e-4 * fabs(want[c]));
        }
    }
    s_check_alone(f, m, out, K);
    tb_cpu_moe_destroy(&m);
    assert_null(m);
}

static void test_gatings_and_shared_expert(void **state)
{
    struct fixture *f = *state;
    s_check(f, TB_MOE_SOFTMAX_TOPK, false);
    s_check(f, TB_MOE_SOFTMAX_ALL, false);
    s_check(f, TB_MOE_SOFTMAX_TOPK, true);
}

/* A token alone with every expert chosen (k = 5 > the 4 experts one fused gate/up call takes):
 * two calls, and still bitwise what the token got in the grouped batch path. */
static void test_one_token_every_expert(void **state)
{
    struct fixture *f = *state;
    f->p.n_experts_used = E;
    float out[T * H];
    uint32_t experts_run, rows;
    tb_cpu_moe_t *m = s_batch(f, TB_MOE_SOFTMAX_TOPK, false, out, &experts_run, &rows);
    assert_int_equal(experts_run, E);
    assert_int_equal(rows, T * E);
    s_check_alone(f, m, out, E);
    tb_cpu_moe_destroy(&m);
}

/* Equal logits go to the lower expert index; a NaN logit is never chosen. */
static void test_ties_and_nan(void **state)
{
    struct fixture *f = *state;
    f->p.moe_gating = TB_MOE_SOFTMAX_TOPK;
    f->p.shared_intermediate = 0;
    f->ml.shared = false;
    float router[E * H];
    memset(router, 0, sizeof router);
    router[3 * H] = NAN; /* expert 3's logit is NaN for any x with x[0] != 0 */
    struct tb_cpu_moe_layer ml = f->ml;
    ml.router = s_w(router, E, H);
    tb_cpu_moe_t *m = NULL;
    assert_int_equal(tb_cpu_moe_new(&f->p, T, &m), TB_OK);
    float out[H];
    float x[H];
    for (int i = 0; i < H; i++) {
        x[i] = 1.0f;
    }
    assert_int_equal(tb_cpu_moe_ffn(m, f->kern, f->pool, &ml, x, 1, out), TB_OK);
    /* all finite logits are 0: experts 0 and 1, half each */
    double y0[H], y1[H];
    s_ffn(f->gate[0], f->up[0], f->down[0], FF, x, y0);
    s_ffn(f->gate[1], f->up[1], f->down[1], FF, x, y1);
    for (int c = 0; c < H; c++) {
        double want = 0.5 * y0[c] + 0.5 * y1[c];
        assert_float_equal(out[c], want, 1e-5 + 1e-4 * fabs(want));
        assert_false(isnan(out[c]));
    }
    tb_cpu_moe_destroy(&m);
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    tb_cpu_moe_t *m = NULL;
    struct tb_model_params p = f->p;
    p.n_experts_used = E + 1;
    assert_int_equal(tb_cpu_moe_new(&p, T, &m), TB_EINVAL);
    assert_null(m);
    p.n_experts_used = K;
    p.n_experts = 0;
    assert_int_equal(tb_cpu_moe_new(&p, T, &m), TB_EINVAL);
    assert_int_equal(tb_cpu_moe_new(&f->p, 2, &m), TB_OK);
    float out[3 * H];
    /* more tokens than it was sized for */
    assert_int_equal(tb_cpu_moe_ffn(m, f->kern, f->pool, &f->ml, f->x, 3, out), TB_EINVAL);
    tb_cpu_moe_destroy(&m);
    tb_cpu_moe_destroy(&m); /* NULL is fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gatings_and_shared_expert, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_one_token_every_expert, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_ties_and_nan, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
