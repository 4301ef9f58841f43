// Softmax cross-entropy, forward and backward in one pass.
#pragma once

#include "memory.cuh"

// --- loss -----------------------------------------------------------------------

// One block per row: argmax (first maximum), logsumexp, loss, gradient.
#define XENT_THREADS 256
__global__ void xent_kernel(float *logits, float *losses, int *correct, const int *targets, int V, float dscale) {
    __shared__ float sv[XENT_THREADS];
    __shared__ int si[XENT_THREADS];
    const int row = blockIdx.x, tid = threadIdx.x;
    float *z = logits + (size_t)row * V;
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int v = tid; v < V; v += blockDim.x)
        if (z[v] > bv || bi == INT_MAX) bv = z[v], bi = v;
    sv[tid] = bv;
    si[tid] = bi;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (tid < o) {
            float ov = sv[tid + o];
            int oi = si[tid + o];
            if (oi != INT_MAX && (si[tid] == INT_MAX || ov > sv[tid] || (ov == sv[tid] && oi < si[tid])))
                sv[tid] = ov, si[tid] = oi;
        }
        __syncthreads();
    }
    const float mx = sv[0];
    const int arg = si[0];
    __syncthreads();
    float s = 0.f;
    for (int v = tid; v < V; v += blockDim.x) s += expf(z[v] - mx);
    sv[tid] = s;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (tid < o) sv[tid] += sv[tid + o];
        __syncthreads();
    }
    const float lse = mx + logf(sv[0]);
    const int t = targets[row];
    if (t < 0) {
        for (int v = tid; v < V; v += blockDim.x) z[v] = 0.f;
        if (tid == 0) losses[row] = 0.f, correct[row] = 0;
        return;
    }
    const float zt = z[t];
    __syncthreads();  // everyone has read z[t] before it is overwritten
    if (tid == 0) losses[row] = lse - zt, correct[row] = arg == t;
    for (int v = tid; v < V; v += blockDim.x) z[v] = expf(z[v] - lse) * dscale - (v == t ? dscale : 0.f);
}
static void cu_xent_forward_backward(real *logits, real *losses, int *correct, const int *targets, int N, int V,
                                     real dscale) {
    if (N <= 0 || V <= 0) return;
    xent_kernel<<<(unsigned)N, XENT_THREADS>>>(logits, losses, correct, targets, V, dscale);
    launch_check();
}

