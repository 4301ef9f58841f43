// LayerNorm forward and backward (one warp per row; gain/bias gradients
// through matmul.cuh's column sums).
#pragma once

#include "matmul.cuh"

// One warp per row.
__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *x, const float *g,
                                         const float *b, int N, int C, float eps) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + (size_t)row * C;
    float s = 0.f;
    for (int c = lane; c < C; c += 32) s += xr[c];
    const float m = warp_sum(s) / (float)C;
    float v = 0.f;
    for (int c = lane; c < C; c += 32) {
        float dx = xr[c] - m;
        v += dx * dx;
    }
    v = warp_sum(v) / (float)C;
    const float rs = 1.0f / sqrtf(v + eps);
    float *o = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32) o[c] = (xr[c] - m) * rs * g[c] + b[c];
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = rs;
    }
}
static void cu_layernorm_forward(real *out, real *mean, real *rstd, const real *x, const real *g, const real *b,
                                 int N, int C, real eps) {
    if (N <= 0 || C <= 0) return;
    const int rows_per_block = THREADS / 32;
    layernorm_forward_kernel<<<(unsigned)((N + rows_per_block - 1) / rows_per_block), THREADS>>>(out, mean, rstd, x, g,
                                                                                                b, N, C, eps);
    launch_check();
}

__global__ void layernorm_backward_dx_kernel(float *dx, const float *dout, const float *x, const float *g,
                                             const float *mean, const float *rstd, int N, int C) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + (size_t)row * C, *dr = dout + (size_t)row * C;
    const float m = mean[row], s = rstd[row];
    float dmean = 0.f, dnn = 0.f;
    for (int c = lane; c < C; c += 32) {
        float dnorm = dr[c] * g[c];
        dmean += dnorm;
        dnn += dnorm * (xr[c] - m) * s;
    }
    dmean = warp_sum(dmean) / (float)C;
    dnn = warp_sum(dnn) / (float)C;
    float *dxr = dx + (size_t)row * C;
    for (int c = lane; c < C; c += 32) {
        float norm = (xr[c] - m) * s;
        dxr[c] += (dr[c] * g[c] - dmean - norm * dnn) * s;
    }
}
static void cu_layernorm_backward(real *dx, real *dg, real *db, const real *dout, const real *x, const real *g,
                                  const real *mean, const real *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    const int rows_per_block = THREADS / 32;
    layernorm_backward_dx_kernel<<<(unsigned)((N + rows_per_block - 1) / rows_per_block), THREADS>>>(
        dx, dout, x, g, mean, rstd, N, C);
    launch_check();
    column_sums(db, dg, dout, x, mean, rstd, N, C);
}
