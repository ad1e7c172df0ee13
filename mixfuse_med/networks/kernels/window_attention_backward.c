/*
 * Backward pass of windowed attention with a learnable additive mask, for
 * MixFuse's shape: many windows of N = w*w tokens, head dimension 2.
 *
 *   S = scale * q k^T + mask - lse      (lse: forward log-sum-exp, per row)
 *   P = exp(S),  dP = dO v^T,  dS = P * (dP - rowsum(dO * O))
 *   dv = P^T dO,  dq = scale * dS k,  dk = scale * dS^T q,  dmask = sum over windows of dS
 *
 * One window-head at a time, its N x N scores never leave registers and L1
 * cache.  A call handles heads [g0, g1); callers run disjoint head ranges on
 * several threads (ctypes releases the GIL), each owning its rows of dmask,
 * so no reduction between threads is needed.  Plain C, no PyTorch headers,
 * no OpenMP runtime: built in a second by mixfuse_med.networks.native.
 *
 * Layouts (float32, contiguous):
 *   q, k, v, dout, out, dq, dk, dv: [M][G][N][2]   lse: [M][G][N]
 *   mask, dmask: [G][N][N]
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_N 256

/* exp(x) for the softmax, branch-free (no floorf: it would not vectorise) so the compiler vectorises it.
 * Cody-Waite range reduction and a degree-6 polynomial: relative error ~2e-7. */
static inline float fast_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } bits;
    bits.i = ((int32_t)n + 127) << 23;
    return p * bits.f;
}

void window_attention_backward(
    const float *q, const float *k, const float *v, const float *dout, const float *out,
    const float *lse, const float *mask, float scale, int64_t M, int64_t G, int64_t N,
    float *dq, float *dk, float *dv, float *dmask, int64_t g0, int64_t g1) {
    if (N > MAX_N) return;
    for (int64_t g = g0; g < g1; ++g) {
        float k0[MAX_N], k1[MAX_N], v0[MAX_N], v1[MAX_N];
        float dk0[MAX_N], dk1[MAX_N], dv0[MAX_N], dv1[MAX_N];
        float *dm = dmask + g * N * N;
        memset(dm, 0, sizeof(float) * N * N);
        const float *mk = mask + g * N * N;
        for (int64_t m = 0; m < M; ++m) {
            const int64_t base = (m * G + g) * N;
            const float *qw = q + base * 2, *kw = k + base * 2, *vw = v + base * 2;
            const float *gw = dout + base * 2, *ow = out + base * 2, *lw = lse + base;
            for (int64_t j = 0; j < N; ++j) {
                k0[j] = kw[2 * j];
                k1[j] = kw[2 * j + 1];
                v0[j] = vw[2 * j];
                v1[j] = vw[2 * j + 1];
                dk0[j] = dk1[j] = dv0[j] = dv1[j] = 0.0f;
            }
            for (int64_t i = 0; i < N; ++i) {
                const float qi0 = qw[2 * i] * scale, qi1 = qw[2 * i + 1] * scale;
                const float gi0 = gw[2 * i], gi1 = gw[2 * i + 1];
                const float delta = gi0 * ow[2 * i] + gi1 * ow[2 * i + 1];
                const float li = lw[i];
                const float *mrow = mk + i * N;
                float *dmrow = dm + i * N;
                float dqi0 = 0.0f, dqi1 = 0.0f;
#pragma omp simd reduction(+ : dqi0, dqi1)
                for (int64_t j = 0; j < N; ++j) {
                    const float p = fast_exp(qi0 * k0[j] + qi1 * k1[j] + mrow[j] - li);
                    const float ds = p * (gi0 * v0[j] + gi1 * v1[j] - delta);
                    dv0[j] += p * gi0;
                    dv1[j] += p * gi1;
                    dk0[j] += ds * qi0;
                    dk1[j] += ds * qi1;
                    dqi0 += ds * k0[j];
                    dqi1 += ds * k1[j];
                    dmrow[j] += ds;
                }
                dq[base * 2 + 2 * i] = dqi0 * scale;
                dq[base * 2 + 2 * i + 1] = dqi1 * scale;
            }
            for (int64_t j = 0; j < N; ++j) {
                dk[base * 2 + 2 * j] = dk0[j];  /* q was pre-scaled */
                dk[base * 2 + 2 * j + 1] = dk1[j];
                dv[base * 2 + 2 * j] = dv0[j];
                dv[base * 2 + 2 * j + 1] = dv1[j];
            }
        }
    }
}
