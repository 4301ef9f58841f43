// AdamW.
#pragma once

#include "memory.cuh"

// --- optimiser --------------------------------------------------------------------

__global__ void adamw_kernel(float *p, float *m, float *v, const float *g, size_t n, float lr, float beta1,
                             float beta2, float eps, float wd, float grad_scale, float c1, float c2) {
    GRID_STRIDE(i, n) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1 - beta1) * gi;
        float vi = beta2 * v[i] + (1 - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / c1, vhat = vi / c2;
        p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
    }
}
static void cu_adamw(real *p, real *m, real *v, const real *g, size_t n, float lr, float beta1, float beta2,
                     float eps, float wd, float grad_scale, int t) {
    if (!n) return;
    float c1 = (float)(1.0 - pow(beta1, t)), c2 = (float)(1.0 - pow(beta2, t));
    adamw_kernel<<<blocks_for(n), THREADS>>>(p, m, v, g, n, lr, beta1, beta2, eps, wd, grad_scale, c1, c2);
    launch_check();
}

