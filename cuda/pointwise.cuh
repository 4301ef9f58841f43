// Pointwise and copy ops: axpy, scale, sum_squares, copy_2d, concat/split
// rows, activations (ReLU, GELU) and dropout.
#pragma once

#include "memory.cuh"
#include "rng.h"


__global__ void axpy_kernel(float *y, const float *x, float alpha, size_t n) {
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
static void cu_axpy(real *y, const real *x, real alpha, size_t n) {
    if (!n) return;
    axpy_kernel<<<blocks_for(n), THREADS>>>(y, x, alpha, n);
    launch_check();
}

__global__ void scale_kernel(float *x, float alpha, size_t n) {
    GRID_STRIDE(i, n) x[i] *= alpha;
}
static void cu_scale(real *x, real alpha, size_t n) {
    if (!n) return;
    scale_kernel<<<blocks_for(n), THREADS>>>(x, alpha, n);
    launch_check();
}

// Fixed grid: per-thread double sums, a fixed tree per block, the block sums
// added on the host in block order.
__global__ void sum_squares_kernel(double *partial, const float *x, size_t n) {
    __shared__ double warps[THREADS / 32];
    double s = 0;
    GRID_STRIDE(i, n) s += (double)x[i] * (double)x[i];
    s = warp_sum_d(s);
    if ((threadIdx.x & 31) == 0) warps[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < THREADS / 32; w++) t += warps[w];
        partial[blockIdx.x] = t;
    }
}
static double cu_sum_squares(const real *x, size_t n) {
    if (!n) return 0;
    size_t nb = (n + THREADS - 1) / THREADS;
    unsigned blocks = (unsigned)(nb < CUDA_SUMSQ_BLOCKS ? nb : CUDA_SUMSQ_BLOCKS);
    double *partial = (double *)scratch(cuda_sum_squares_bytes());
    sum_squares_kernel<<<blocks, THREADS>>>(partial, x, n);
    launch_check();
    double host[CUDA_SUMSQ_BLOCKS], s = 0;
    cuda_check(cudaMemcpy(host, partial, blocks * sizeof(double), cudaMemcpyDeviceToHost));
    for (unsigned b = 0; b < blocks; b++) s += host[b];
    return s;
}

static void cu_copy_2d(real *dst, size_t dst_stride, const real *src, size_t src_stride, size_t rows,
                       size_t width) {
    if (!rows || !width) return;
    cuda_check(cudaMemcpy2D(dst, dst_stride * sizeof(real), src, src_stride * sizeof(real), width * sizeof(real), rows,
                            cudaMemcpyDeviceToDevice));
}

__global__ void concat_rows_kernel(float *out, const float *a, const float *b, size_t n, int C) {
    GRID_STRIDE(i, n) {
        size_t r = i / (size_t)(2 * C);
        int c = (int)(i % (size_t)(2 * C));
        out[i] = c < C ? a[r * C + c] : b[r * C + c - C];
    }
}
static void cu_concat_rows(real *out, const real *a, const real *b, int N, int C) {
    size_t n = (size_t)N * 2 * C;
    if (!n) return;
    concat_rows_kernel<<<blocks_for(n), THREADS>>>(out, a, b, n, C);
    launch_check();
}

__global__ void split_rows_kernel(float *a, float *b, const float *in, size_t n, int C) {
    GRID_STRIDE(i, n) {
        size_t r = i / (size_t)(2 * C);
        int c = (int)(i % (size_t)(2 * C));
        if (c < C) a[r * C + c] = in[i];
        else b[r * C + c - C] = in[i];
    }
}
static void cu_split_rows(real *a, real *b, const real *in, int N, int C) {
    size_t n = (size_t)N * 2 * C;
    if (!n) return;
    split_rows_kernel<<<blocks_for(n), THREADS>>>(a, b, in, n, C);
    launch_check();
}


__global__ void activation_forward_kernel(float *out, const float *in, size_t n, int gelu) {
    GRID_STRIDE(i, n) {
        float x = in[i];
        out[i] = gelu ? 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)) : (x > 0.f ? x : 0.f);
    }
}
static void cu_activation_forward(real *out, const real *in, size_t n, Activation act) {
    if (!n) return;
    activation_forward_kernel<<<blocks_for(n), THREADS>>>(out, in, n, act == ACT_GELU);
    launch_check();
}

__global__ void activation_backward_kernel(float *din, const float *dout, const float *in, size_t n, int gelu) {
    GRID_STRIDE(i, n) {
        float x = in[i], d;
        if (!gelu) d = x > 0.f ? 1.f : 0.f;
        else
            d = 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * expf(-0.5f * x * x) * 0.39894228040143268f;
        din[i] = dout[i] * d;
    }
}
static void cu_activation_backward(real *din, const real *dout, const real *in, size_t n, Activation act) {
    if (!n) return;
    activation_backward_kernel<<<blocks_for(n), THREADS>>>(din, dout, in, n, act == ACT_GELU);
    launch_check();
}

__global__ void dropout_kernel(float *x, size_t n, size_t offset, float p, float keep_scale, uint64_t seed,
                               uint32_t step, uint32_t tag) {
    GRID_STRIDE(i, n) x[i] = rng_uniform(seed, offset + i, step, tag) >= p ? x[i] * keep_scale : 0.f;
}
static void cu_dropout(real *x, size_t n, size_t offset, float p, uint64_t seed, uint32_t step, uint32_t tag) {
    if (p <= 0 || !n) return;
    real keep_scale = (real)(1.0 / (1.0 - (double)p));
    dropout_kernel<<<blocks_for(n), THREADS>>>(x, n, offset, p, keep_scale, seed, step, tag);
    launch_check();
}
