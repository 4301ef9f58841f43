// Dense ops: matmul (cuBLAS, fp32 and bf16 operands), bias forward and the
// deterministic column sums behind bias_backward and layernorm_backward.
#pragma once

#include "memory.cuh"


// Row-major C[M,N] = beta C + op(A) op(B) is column-major C^T = op(B)^T op(A)^T:
// the row-major buffers read as column-major are the transposes, so B goes
// first, each with the op its flag says, and the leading dimensions are the
// row-major row lengths.
static void cu_matmul(real *C, const real *A, const real *B, int M, int N, int K, int trans_a, int trans_b,
                      real beta) {
    if (M <= 0 || N <= 0) return;
    const float alpha = 1.0f;
    cublas_check(cublasSgemm(cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M,
                             K, &alpha, B, trans_b ? K : N, A, trans_a ? M : K, &beta, C, N));
}

// Round to bf16 (to nearest even): the operands of matmul_bf16.
__global__ void to_bf16_kernel(__nv_bfloat16 *out, const float *in, size_t n) {
    GRID_STRIDE(i, n) out[i] = __float2bfloat16_rn(in[i]);
}
static void to_bf16(__nv_bfloat16 *out, const float *in, size_t n) {
    if (!n) return;
    to_bf16_kernel<<<blocks_for(n), THREADS>>>(out, in, n);
    launch_check();
}

// The step's bf16 copy of the weights (bf16_weights): params [n] rounded
// into the planned shadow once per step; an operand inside params is read
// from there (the same rounding, so the same product as converting it).
static void cu_bf16_weights(const real *params, size_t n, void *shadow) {
    to_bf16((__nv_bfloat16 *)shadow, params, n);
    g_w_params = params, g_w_count = n, g_w_shadow = (const __nv_bfloat16 *)shadow;
}
// The bf16 copy of x [count] in the shadow, or NULL when x is not all inside params.
static const __nv_bfloat16 *shadow_of(const float *x, size_t count) {
    if (!g_w_params || x < g_w_params || x + count > g_w_params + g_w_count) return NULL;
    return g_w_shadow + (x - g_w_params);
}

// cu_matmul with A and B rounded to bf16 into the scratch (or read from the
// step's weight copy), fp32 accumulation (CUBLAS_COMPUTE_32F) and fp32 C:
// bf16 products are exact in fp32, so the only bf16 error is the rounding of
// each operand (relative 2^-8 at most).
static void cu_matmul_bf16(real *C, const real *A, const real *B, int M, int N, int K, int trans_a, int trans_b,
                           real beta) {
    if (M <= 0 || N <= 0) return;
    const size_t na = (size_t)M * (size_t)(K > 0 ? K : 0), nb = (size_t)(K > 0 ? K : 0) * N;
    char *base = (char *)scratch(cuda_matmul_bf16_bytes((size_t)M, (size_t)N, (size_t)(K > 0 ? K : 0)));
    const __nv_bfloat16 *a16 = shadow_of(A, na), *b16 = shadow_of(B, nb);
    if (!a16) {
        to_bf16((__nv_bfloat16 *)base, A, na);
        a16 = (const __nv_bfloat16 *)base;
    }
    if (!b16) {
        __nv_bfloat16 *b = (__nv_bfloat16 *)(base + cuda_align256(na * sizeof(__nv_bfloat16)));
        to_bf16(b, B, nb);
        b16 = b;
    }
    const float alpha = 1.0f;
    cublas_check(cublasGemmEx(cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                              M, K, &alpha, b16, CUDA_R_16BF, trans_b ? K : N, a16, CUDA_R_16BF, trans_a ? M : K,
                              &beta, C, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// precision=tf32: cu_matmul on the TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32:
// fp32 data, operands rounded to TF32 in the matrix units, fp32 accumulation).
// Deterministic on one stream like every cuBLAS GEMM here; no scratch.
static void cu_matmul_tf32(real *C, const real *A, const real *B, int M, int N, int K, int trans_a, int trans_b,
                           real beta) {
    if (M <= 0 || N <= 0) return;
    const float alpha = 1.0f;
    cublas_check(cublasGemmEx(cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                              M, K, &alpha, B, CUDA_R_32F, trans_b ? K : N, A, CUDA_R_32F, trans_a ? M : K, &beta, C,
                              CUDA_R_32F, N, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
}

__global__ void bias_forward_kernel(float *out, const float *bias, size_t n, int C) {
    GRID_STRIDE(i, n) out[i] += bias[i % (size_t)C];
}
static void cu_bias_forward(real *out, const real *bias, int N, int C) {
    size_t n = (size_t)N * C;
    if (!n) return;
    bias_forward_kernel<<<blocks_for(n), THREADS>>>(out, bias, n, C);
    launch_check();
}

// Column sums over rows, deterministic two-stage: block (x, s) sums rows of
// split s for 32 columns (8 row lanes, then the lanes in order); the final
// kernel adds the splits in order. With LN, also sum dout * (x - mean) * rstd.
#define COL_LANES 8
template <bool LN>
__global__ void colsum_partial_kernel(float *part_b, float *part_g, const float *dout, const float *x,
                                      const float *mean, const float *rstd, int N, int C, int rows_per_split) {
    __shared__ float sb[COL_LANES][33], sg[COL_LANES][33];
    const int tx = threadIdx.x, ty = threadIdx.y, c = blockIdx.x * 32 + tx, split = blockIdx.y;
    const int r0 = split * rows_per_split, r1 = min(N, r0 + rows_per_split);
    float ab = 0.f, ag = 0.f;
    if (c < C)
        for (int n = r0 + ty; n < r1; n += COL_LANES) {
            float dv = dout[(size_t)n * C + c];
            ab += dv;
            if (LN) ag += dv * (x[(size_t)n * C + c] - mean[n]) * rstd[n];
        }
    sb[ty][tx] = ab;
    sg[ty][tx] = ag;
    __syncthreads();
    if (ty == 0 && c < C) {
        float tb = 0.f, tg = 0.f;
        for (int k = 0; k < COL_LANES; k++) tb += sb[k][tx], tg += sg[k][tx];
        part_b[(size_t)split * C + c] = tb;
        if (LN) part_g[(size_t)split * C + c] = tg;
    }
}

__global__ void colsum_final_kernel(float *db, float *dg, const float *part_b, const float *part_g, int splits,
                                    int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float tb = 0.f, tg = 0.f;
    for (int s = 0; s < splits; s++) {
        tb += part_b[(size_t)s * C + c];
        if (dg) tg += part_g[(size_t)s * C + c];
    }
    db[c] += tb;
    if (dg) dg[c] += tg;
}

// db[c] += sum_n dout[n, c]; with x: dg[c] += sum_n dout (x - mean) rstd.
static void column_sums(float *db, float *dg, const float *dout, const float *x, const float *mean,
                        const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    int rps, splits = cuda_col_splits(N, &rps);  // splits and scratch: core/cuda_sizes.h
    float *part = (float *)scratch(cuda_column_sums_bytes((size_t)N, (size_t)C));
    float *part_b = part, *part_g = part + (size_t)splits * C;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)splits), block(32, COL_LANES);
    if (dg) colsum_partial_kernel<true><<<grid, block>>>(part_b, part_g, dout, x, mean, rstd, N, C, rps);
    else colsum_partial_kernel<false><<<grid, block>>>(part_b, part_g, dout, x, mean, rstd, N, C, rps);
    launch_check();
    colsum_final_kernel<<<(unsigned)((C + THREADS - 1) / THREADS), THREADS>>>(db, dg, part_b, part_g, splits, C);
    launch_check();
}

static void cu_bias_backward(real *dbias, const real *dout, int N, int C) {
    column_sums(dbias, NULL, dout, NULL, NULL, NULL, N, C);
}
