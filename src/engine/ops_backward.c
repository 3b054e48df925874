/* Backward passes of the transformer block (see ops_backward.h for the contracts). */
#include "engine/ops_backward.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void ops_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n];
        /* d/dx_i of x_i * r * w_i:  r w_i dy_i - x_i r^3 / C * sum_j dy_j w_j x_j */
        double dot = 0.0;
        for (int i = 0; i < C; i++)
            dot += (double)dy[i] * weight[i] * x[i];
        float coef = (float)(dot * r * r * r / C);
        for (int i = 0; i < C; i++) {
            dx[i] += r * weight[i] * dy[i] - x[i] * coef;
            if (dweight)
                dweight[i] += dy[i] * x[i] * r;
        }
    }
}

void ops_matmul_forward_blas(float *out, const float *inp, const float *w, const float *bias,
                             int N, int C, int OC)
{
    if (N <= 0 || OC <= 0)
        return;
    float beta = 0.0f;
    if (bias) {
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    /* out (N,OC) = inp (N,C) . w^T (C,OC) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, beta,
                out, OC);
}

void ops_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int C, int OC)
{
    if (N <= 0)
        return;
    if (dinp) /* (N,C) += dout (N,OC) . w (OC,C) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC,
                    weight, C, 1.0f, dinp, C);
    if (dweight) /* (OC,C) += dout^T (OC,N) . inp (N,C) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C,
                    1.0f, dweight, C);
    if (dbias)
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * OC;
            for (int o = 0; o < OC; o++)
                dbias[o] += d[o];
        }
}

void ops_matmul_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int N, int C, int OC)
{
    for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * OC;
        const float *x = inp + (size_t)n * C;
        for (int o = 0; o < OC; o++) {
            const float *wrow = weight + (size_t)o * C;
            for (int c = 0; c < C; c++) {
                if (dinp)
                    dinp[(size_t)n * C + c] += d[o] * wrow[c];
                if (dweight)
                    dweight[(size_t)o * C + c] += d[o] * x[c];
            }
            if (dbias)
                dbias[o] += d[o];
        }
    }
}

void ops_rope_backward(float *dx, const int *pos, int N, int n_heads, int head_dim, float theta)
{
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < head_dim; i += 2) {
            float freq = powf(theta, -(float)i / (float)head_dim);
            float ang = (float)pos[n] * freq;
            float c = cosf(ang), s = sinf(ang);
            for (int h = 0; h < n_heads; h++) {
                float *p = dx + ((size_t)n * n_heads + h) * head_dim + i;
                /* forward: y0 = x0 c - x1 s, y1 = x0 s + x1 c; transpose of the rotation */
                float d0 = p[0], d1 = p[1];
                p[0] = d0 * c + d1 * s;
                p[1] = -d0 * s + d1 * c;
            }
        }
    }
}

void ops_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                            const float *att, const float *q, const float *k, const float *v,
                            int T, int H, int Hkv, int D)
{
    const float scale = 1.0f / sqrtf((float)D);
    const int group = H / Hkv;
    const size_t qs = (size_t)H * D, ks = (size_t)Hkv * D;
    float *dp = scratch;
    for (int h = 0; h < H; h++) {
        const int hk = h / group;
        for (int t = 0; t < T; t++) {
            const float *p = att + ((size_t)h * T + t) * T;
            const float *dy = dout + t * qs + (size_t)h * D;
            const float *qt = q + t * qs + (size_t)h * D;
            float *dqt = dq + t * qs + (size_t)h * D;
            /* dp_j = dy . v_j ; dv_j += p_j dy ; masked keys have p_j == 0 */
            double sum = 0.0;
            for (int j = 0; j <= t; j++) {
                dp[j] = 0.0f;
                if (p[j] == 0.0f)
                    continue;
                const float *vj = v + j * ks + (size_t)hk * D;
                float *dvj = dv + j * ks + (size_t)hk * D;
                float acc = 0.0f;
                for (int d = 0; d < D; d++) {
                    acc += dy[d] * vj[d];
                    dvj[d] += p[j] * dy[d];
                }
                dp[j] = acc;
                sum += (double)p[j] * acc;
            }
            /* ds_j = p_j (dp_j - sum); scores s_j = scale q_t . k_j */
            for (int j = 0; j <= t; j++) {
                if (p[j] == 0.0f)
                    continue;
                float ds = p[j] * (dp[j] - (float)sum) * scale;
                const float *kj = k + j * ks + (size_t)hk * D;
                float *dkj = dk + j * ks + (size_t)hk * D;
                for (int d = 0; d < D; d++) {
                    dqt[d] += ds * kj[d];
                    dkj[d] += ds * qt[d];
                }
            }
        }
    }
}

void ops_attention_forward_blas(float *out, float *att, const float *q, const float *k,
                                const float *v, const unsigned char *key_mask, int T, int H,
                                int Hkv, int D)
{
    const float scale = 1.0f / sqrtf((float)D);
    const int group = H / Hkv, C = H * D, Ckv = Hkv * D;
    for (int h = 0; h < H; h++) {
        const int hk = h / group;
        float *S = att + (size_t)h * T * T;
        /* S (T,T) = scale Q_h (T,D) . K_h^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, scale, q + (size_t)h * D,
                    C, k + (size_t)hk * D, Ckv, 0.0f, S, T);
        for (int t = 0; t < T; t++) {
            float *row = S + (size_t)t * T;
            float mx = -INFINITY;
            for (int j = 0; j <= t; j++)
                if ((!key_mask || key_mask[j]) && row[j] > mx)
                    mx = row[j];
            if (mx == -INFINITY) { /* nothing to attend to: a zero row, a zero output */
                memset(row, 0, (size_t)T * sizeof(float));
                continue;
            }
            float sum = 0.0f;
            for (int j = 0; j <= t; j++) {
                float p = (!key_mask || key_mask[j]) ? expf(row[j] - mx) : 0.0f;
                row[j] = p;
                sum += p;
            }
            float inv = 1.0f / sum;
            for (int j = 0; j <= t; j++)
                row[j] *= inv;
            for (int j = t + 1; j < T; j++)
                row[j] = 0.0f;
        }
        /* Y_h (T,D) = P (T,T) . V_h */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, S, T,
                    v + (size_t)hk * D, Ckv, 0.0f, out + (size_t)h * D, C);
    }
}

void ops_attention_backward_blas(float *dq, float *dk, float *dv, float *scratch,
                                 const float *dout, const float *att, const float *q,
                                 const float *k, const float *v, int T, int H, int Hkv, int D)
{
    const float scale = 1.0f / sqrtf((float)D);
    const int group = H / Hkv, C = H * D, Ckv = Hkv * D;
    float *dP = scratch;
    for (int h = 0; h < H; h++) {
        const int hk = h / group;
        const float *P = att + (size_t)h * T * T;
        const float *dY = dout + (size_t)h * D;
        /* dP (T,T) = dY_h . V_h^T ;  dV_h += P^T . dY_h */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, dY, C,
                    v + (size_t)hk * D, Ckv, 0.0f, dP, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, P, T, dY, C, 1.0f,
                    dv + (size_t)hk * D, Ckv);
        /* dS = P * (dP - rowsum(P * dP)) * scale */
        for (int t = 0; t < T; t++) {
            const float *pr = P + (size_t)t * T;
            float *dr = dP + (size_t)t * T;
            double sum = 0.0;
            for (int j = 0; j <= t; j++)
                sum += (double)pr[j] * dr[j];
            for (int j = 0; j <= t; j++)
                dr[j] = pr[j] * (dr[j] - (float)sum) * scale;
            for (int j = t + 1; j < T; j++)
                dr[j] = 0.0f;
        }
        /* dQ_h += dS . K_h ;  dK_h += dS^T . Q_h */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, dP, T,
                    k + (size_t)hk * D, Ckv, 1.0f, dq + (size_t)h * D, C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, dP, T,
                    q + (size_t)h * D, C, 1.0f, dk + (size_t)hk * D, Ckv);
    }
}

void ops_swiglu_backward(float *dg, float *du, const float *dout, const float *g,
                         const float *u, int N, int F)
{
    size_t n = (size_t)N * F;
    for (size_t i = 0; i < n; i++) {
        float z = g[i];
        float sig = 1.0f / (1.0f + expf(-z));
        float silu = z * sig;
        /* d silu / dz = sig (1 + z (1 - sig)) */
        dg[i] += dout[i] * u[i] * sig * (1.0f + z * (1.0f - sig));
        du[i] += dout[i] * silu;
    }
}

void ops_xent_rows_ref(float *logits, float *loss, const float *bias, const int *target, int R,
                       int K, float grad_scale)
{
    for (int r = 0; r < R; r++) {
        float *x = logits + (size_t)r * K;
        if (bias)
            for (int i = 0; i < K; i++)
                x[i] += bias[i];
        float mx = x[0];
        for (int i = 1; i < K; i++)
            if (x[i] > mx)
                mx = x[i];
        double sum = 0.0;
        for (int i = 0; i < K; i++) {
            x[i] = expf(x[i] - mx);
            sum += x[i];
        }
        int t = target[r];
        loss[r] = (float)(log(sum) - log(x[t] > 0.0f ? (double)x[t] : 1e-45));
        float inv = (float)(1.0 / sum) * grad_scale;
        for (int i = 0; i < K; i++)
            x[i] *= inv;
        x[t] -= grad_scale;
    }
}

/* The fast path: GCC vector extensions, 16 floats at a time, compiled twice (AVX-512 and the
 * baseline ISA) and chosen once by CPU. exp(x) for x <= 0 as 2^n * 2^f with f in [-0.5, 0.5]
 * and a degree-6 Taylor polynomial of e^(f ln 2) (relative error < 2e-7). */
typedef float v16f __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

#define XENT_ROWS_BODY                                                                           \
    const v16f lo = {0}, vmin = lo - 87.0f;                                                      \
    for (int r = 0; r < R; r++) {                                                                \
        float *x = logits + (size_t)r * K;                                                       \
        int K16 = K & ~15;                                                                       \
        if (bias)                                                                                \
            for (int i = 0; i < K; i++)                                                          \
                x[i] += bias[i];                                                                 \
        float mx = x[0];                                                                         \
        if (K16) {                                                                               \
            v16f m;                                                                              \
            memcpy(&m, x, sizeof(m));                                                            \
            for (int i = 16; i < K16; i += 16) {                                                 \
                v16f v;                                                                          \
                memcpy(&v, x + i, sizeof(v));                                                    \
                v16i gt = v > m;                                                                 \
                m = (v16f)(((v16i)v & gt) | ((v16i)m & ~gt));                                    \
            }                                                                                    \
            for (int j = 0; j < 16; j++)                                                         \
                if (m[j] > mx)                                                                   \
                    mx = m[j];                                                                   \
        }                                                                                        \
        for (int i = K16; i < K; i++)                                                            \
            if (x[i] > mx)                                                                       \
                mx = x[i];                                                                       \
        v16f acc = lo;                                                                           \
        for (int i = 0; i < K16; i += 16) {                                                      \
            v16f v;                                                                              \
            memcpy(&v, x + i, sizeof(v));                                                        \
            v = v - mx;                                                                          \
            v16i small = v < vmin;                                                               \
            v = (v16f)(((v16i)v & ~small) | ((v16i)vmin & small));                               \
            v16f t = v * 1.44269504088896341f;                                                   \
            v16i n = __builtin_convertvector(t - 0.5f, v16i); /* round(t), t <= 0 */             \
            v16f f = (t - __builtin_convertvector(n, v16f)) * 0.69314718055994531f;              \
            v16f p = 1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 +             \
                                  f * (1.0f / 120 + f * (1.0f / 720))))));                       \
            v16f e = (v16f)((v16i)p + (n << 23));                                                \
            memcpy(x + i, &e, sizeof(e));                                                        \
            acc += e;                                                                            \
        }                                                                                        \
        double sum = 0.0;                                                                        \
        for (int j = 0; j < 16; j++)                                                             \
            sum += acc[j];                                                                       \
        for (int i = K16; i < K; i++) {                                                          \
            x[i] = expf(x[i] - mx);                                                              \
            sum += x[i];                                                                         \
        }                                                                                        \
        int tg = target[r];                                                                      \
        loss[r] = (float)(log(sum) - log(x[tg] > 0.0f ? (double)x[tg] : 1e-45));                 \
        float inv = (float)(1.0 / sum) * grad_scale;                                             \
        for (int i = 0; i < K; i++)                                                              \
            x[i] *= inv;                                                                         \
        x[tg] -= grad_scale;                                                                     \
    }

__attribute__((target("avx512f"))) static void xent_rows_avx512(float *logits, float *loss,
                                                                 const float *bias,
                                                                 const int *target, int R,
                                                                 int K, float grad_scale)
{
    XENT_ROWS_BODY
}

static void xent_rows_generic(float *logits, float *loss, const float *bias, const int *target,
                              int R, int K, float grad_scale)
{
    XENT_ROWS_BODY
}

void ops_xent_rows(float *logits, float *loss, const float *bias, const int *target, int R,
                   int K, float grad_scale)
{
    static int has_avx512 = -1; /* a benign race: every thread computes the same value */
    if (has_avx512 < 0)
        has_avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0;
    if (has_avx512)
        xent_rows_avx512(logits, loss, bias, target, R, K, grad_scale);
    else
        xent_rows_generic(logits, loss, bias, target, R, K, grad_scale);
}

void ops_l2norm_forward(float *out, float *norm, const float *x, int N, int C, float eps)
{
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = out + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++)
            ss += (double)xr[c] * xr[c];
        float nrm = (float)sqrt(ss);
        float inv = 1.0f / (nrm > eps ? nrm : eps);
        for (int c = 0; c < C; c++)
            yr[c] = xr[c] * inv;
        if (norm)
            norm[n] = nrm;
    }
}

void ops_l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm,
                         int N, int C, float eps)
{
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        const float *y = out + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        if (norm[n] <= eps) { /* y = x / eps: linear */
            for (int c = 0; c < C; c++)
                dx[c] += dy[c] / eps;
            continue;
        }
        double dot = 0.0;
        for (int c = 0; c < C; c++)
            dot += (double)y[c] * dy[c];
        float inv = 1.0f / norm[n];
        /* d(x/|x|) = (dy - y (y . dy)) / |x| */
        for (int c = 0; c < C; c++)
            dx[c] += (dy[c] - y[c] * (float)dot) * inv;
    }
}
