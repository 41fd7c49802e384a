/*
 * tb_cpu_ops.c - the per-token ops around the matmuls: rmsnorm, rope, silu*up, add, softmax,
 * argmax.  Portable C written so the compiler vectorizes the inner loops; next to the matmuls
 * they cost little (O(hidden) per token against O(hidden^2)).
 */
#include <math.h>

#include "tb_cpu_internal.h"
#include "tb_cpu_kernels.h"
#include "tb_errors.h"

void tb_cpu_rmsnorm(float *y, const float *x, const float *weight, int64_t n, int n_rows,
                    float eps)
{
    if (!y || !x || n < 1) {
        return;
    }
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * (size_t)n;
        float *yr = y + (size_t)r * (size_t)n;
        double ss = 0.0;
        float part[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            for (int k = 0; k < 8; k++) {
                part[k] += xr[i + k] * xr[i + k];
            }
        }
        for (int k = 0; k < 8; k++) {
            ss += part[k];
        }
        for (; i < n; i++) {
            ss += (double)xr[i] * xr[i];
        }
        float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
        if (weight) {
            for (i = 0; i < n; i++) {
                yr[i] = xr[i] * inv * weight[i];
            }
        } else {
            for (i = 0; i < n; i++) {
                yr[i] = xr[i] * inv;
            }
        }
    }
}

void tb_cpu_rope_freqs(float *inv_freq, int rot_dim, float base)
{
    for (int i = 0; i < rot_dim / 2; i++) {
        inv_freq[i] = (float)pow((double)base, -2.0 * i / (double)rot_dim);
    }
}

int tb_cpu_rope(float *x, size_t ldx, int n_tok, const int32_t *pos, int n_heads, int head_dim,
                int rot_dim, const float *inv_freq, tb_cpu_rope_mode_t mode)
{
    if (!x || !pos || !inv_freq || n_tok < 0 || n_heads < 1 || head_dim < 2 || rot_dim < 2 ||
        rot_dim % 2 != 0 || rot_dim > head_dim || rot_dim > 1024 ||
        ldx < (size_t)n_heads * (size_t)head_dim ||
        (mode != TB_CPU_ROPE_NEOX && mode != TB_CPU_ROPE_INTERLEAVED)) {
        return TB_EINVAL;
    }
    const int half = rot_dim / 2;
    float cs[512], sn[512];
    for (int t = 0; t < n_tok; t++) {
        /* angles in double: positions up to 1e6 times frequencies near 1 keep their phase */
        for (int i = 0; i < half; i++) {
            double ang = (double)pos[t] * (double)inv_freq[i];
            cs[i] = (float)cos(ang);
            sn[i] = (float)sin(ang);
        }
        float *row = x + (size_t)t * ldx;
        for (int h = 0; h < n_heads; h++) {
            float *v = row + (size_t)h * head_dim;
            if (mode == TB_CPU_ROPE_NEOX) {
                for (int i = 0; i < half; i++) {
                    float a = v[i], b = v[i + half];
                    v[i] = a * cs[i] - b * sn[i];
                    v[i + half] = a * sn[i] + b * cs[i];
                }
            } else {
                for (int i = 0; i < half; i++) {
                    float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * cs[i] - b * sn[i];
                    v[2 * i + 1] = a * sn[i] + b * cs[i];
                }
            }
        }
    }
    return TB_OK;
}

/* silu(g) * u with e^-g from tb_cpu_silu_exp: the AVX-512 kernel does the same operations in
 * the same order, 16 at a time, so the result is the same on every ISA. */
void tb_cpu_silu_mul(float *out, const float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
#if defined(__x86_64__)
    /* asked on every call (a read of libgcc's CPU table): the worker threads share no cache of it */
    if (__builtin_cpu_supports("avx512f")) {
        i = n / 16 * 16;
        tb_cpu_silu_mul_avx512(out, gate, up, i);
    } else if (__builtin_cpu_supports("avx2")) {
        i = n / 8 * 8;
        tb_cpu_silu_mul_avx2(out, gate, up, i);
    }
#endif
    for (; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + tb_cpu_silu_exp(-g)) * up[i];
    }
}

void tb_cpu_add(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = a[i] + b[i];
    }
}

void tb_cpu_softmax(float *x, int64_t n)
{
    if (!x || n < 1) {
        return;
    }
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) {
        mx = x[i] > mx ? x[i] : mx;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) {
        x[i] *= inv;
    }
}

int64_t tb_cpu_argmax(const float *x, int64_t n)
{
    if (!x || n < 1) {
        return -1;
    }
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++) {
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) {
            best = i;
        }
    }
    return best;
}
