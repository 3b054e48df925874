/* The transformer block's f32 forward operations (see engine/ops.h). Plain loops written to
 * be read: these are the training path and the oracle for the quantized inference path. */
#include "engine/ops.h"

#include <math.h>
#include <stddef.h>

void ops_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C,
                         float eps)
{
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0; /* double: C can be thousands and values large */
        for (int c = 0; c < C; c++)
            ss += (double)xr[c] * xr[c];
        float r = 1.0f / sqrtf((float)(ss / C) + eps);
        for (int c = 0; c < C; c++)
            o[c] = xr[c] * r * w[c];
        if (rstd) rstd[n] = r;
    }
}

struct matmul_job {
    float *out;
    const float *inp, *w, *bias;
    int N, C, OC;
};

/* Output columns [b, e) for every row: each weight row is read once per chunk and reused
 * across all N input rows while it is in cache. */
static void matmul_chunk(void *ctx, size_t b, size_t e, int tid)
{
    (void)tid;
    const struct matmul_job *j = ctx;
    for (size_t o = b; o < e; o++) {
        const float *wr = j->w + o * (size_t)j->C;
        for (int n = 0; n < j->N; n++) {
            const float *xr = j->inp + (size_t)n * j->C;
            float s = j->bias ? j->bias[o] : 0.0f;
            for (int c = 0; c < j->C; c++)
                s += xr[c] * wr[c];
            j->out[(size_t)n * j->OC + o] = s;
        }
    }
}

void ops_matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N,
                        int C, int OC, struct pool *pool)
{
    struct matmul_job j = {out, inp, w, bias, N, C, OC};
    if (!pool || (size_t)N * C * OC < 32768) {
        matmul_chunk(&j, 0, (size_t)OC, 0);
        return;
    }
    pool_for(pool, (size_t)OC, 0, matmul_chunk, &j);
}

void ops_rope_forward(float *x, const int *pos, int N, int n_heads, int head_dim, float theta)
{
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < head_dim; i += 2) {
            float freq = powf(theta, -(float)i / (float)head_dim);
            float a = (float)pos[n] * freq;
            float c = cosf(a), s = sinf(a);
            for (int h = 0; h < n_heads; h++) {
                float *v = x + ((size_t)n * n_heads + h) * head_dim + i;
                float v0 = v[0], v1 = v[1];
                v[0] = v0 * c - v1 * s;
                v[1] = v0 * s + v1 * c;
            }
        }
    }
}

void ops_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                           const unsigned char *key_mask, int T, int H, int Hkv, int D)
{
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    for (int h = 0; h < H; h++) {
        const int hk = h / group;
        for (int t = 0; t < T; t++) {
            const float *qr = q + ((size_t)t * H + h) * D;
            float *o = out + ((size_t)t * H + h) * D;
            /* Scores into att when given, else computed twice (no scratch without att). */
            float maxv = -INFINITY;
            for (int j = 0; j <= t; j++) {
                if (key_mask && !key_mask[j]) continue;
                const float *kr = k + ((size_t)j * Hkv + hk) * D;
                float s = 0.0f;
                for (int d = 0; d < D; d++)
                    s += qr[d] * kr[d];
                s *= scale;
                if (att) att[((size_t)h * T + t) * T + j] = s;
                if (s > maxv) maxv = s;
            }
            for (int d = 0; d < D; d++)
                o[d] = 0.0f;
            if (att)
                for (int j = 0; j < T; j++)
                    if (j > t || (key_mask && !key_mask[j])) att[((size_t)h * T + t) * T + j] = 0;
            if (maxv == -INFINITY) continue; /* nothing to attend to */
            float sum = 0.0f;
            for (int j = 0; j <= t; j++) {
                if (key_mask && !key_mask[j]) continue;
                float s;
                if (att) {
                    s = att[((size_t)h * T + t) * T + j];
                } else {
                    const float *kr = k + ((size_t)j * Hkv + hk) * D;
                    s = 0.0f;
                    for (int d = 0; d < D; d++)
                        s += qr[d] * kr[d];
                    s *= scale;
                }
                float p = expf(s - maxv);
                if (att) att[((size_t)h * T + t) * T + j] = p;
                sum += p;
                const float *vr = v + ((size_t)j * Hkv + hk) * D;
                for (int d = 0; d < D; d++)
                    o[d] += p * vr[d];
            }
            float inv = 1.0f / sum;
            for (int d = 0; d < D; d++)
                o[d] *= inv;
            if (att)
                for (int j = 0; j <= t; j++)
                    att[((size_t)h * T + t) * T + j] *= inv;
        }
    }
}

void ops_swiglu_forward(float *out, const float *g, const float *u, int N, int F)
{
    size_t n = (size_t)N * F;
    for (size_t i = 0; i < n; i++) {
        float z = g[i];
        out[i] = z / (1.0f + expf(-z)) * u[i];
    }
}

void ops_softmax(float *x, int n)
{
    if (n <= 0) return;
    float maxv = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > maxv) maxv = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - maxv);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}
