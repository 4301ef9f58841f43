// cuda_peak: the ceilings cuda/device_check.sh measures achieved rates
// against (METHOD.md: measure the two ceilings once, do not trust datasheets).
//
//   gemm fp32   cublasSgemm, CUBLAS_DEFAULT_MATH (no TF32): precision=fp32
//   gemm tf32   cublasGemmEx, fp32 data, CUBLAS_COMPUTE_32F_FAST_TF32: precision=tf32
//   gemm bf16   cublasGemmEx, bf16 A and B, fp32 C and accumulation: precision=bf16's matmul
//   copy        cudaMemcpy device to device, bytes read + bytes written
//
// Each GEMM is N x N x N on random data (never zeros: they run faster),
// warmed up, then timed with events one call at a time; the median is
// printed. Output: one JSON line. Usage: cuda_peak [N] (default 8192).
#include "common.cuh"
#include "rng.h"

#include <algorithm>
#include <vector>

__global__ void fill_uniform_kernel(float *x, size_t n, uint32_t tag) {
    GRID_STRIDE(i, n) x[i] = rng_uniform(1, i, 0, tag) - 0.5f;
}
__global__ void to_bf16_peak_kernel(__nv_bfloat16 *out, const float *in, size_t n) {
    GRID_STRIDE(i, n) out[i] = __float2bfloat16_rn(in[i]);
}

// Median milliseconds of `reps` calls of fn, after `warm` untimed ones.
template <typename F>
static double median_ms(F fn, int warm, int reps) {
    for (int i = 0; i < warm; i++) fn();
    cudaEvent_t a, b;
    cuda_check(cudaEventCreate(&a));
    cuda_check(cudaEventCreate(&b));
    std::vector<float> ms((size_t)reps);
    for (int i = 0; i < reps; i++) {
        cuda_check(cudaEventRecord(a));
        fn();
        cuda_check(cudaEventRecord(b));
        cuda_check(cudaEventSynchronize(b));
        cuda_check(cudaEventElapsedTime(&ms[(size_t)i], a, b));
    }
    cuda_check(cudaEventDestroy(a));
    cuda_check(cudaEventDestroy(b));
    std::sort(ms.begin(), ms.end());
    return ms[(size_t)reps / 2];
}

int main(int argc, char **argv) {
    const int N = argc > 1 ? atoi(argv[1]) : 8192;
    if (N < 256 || N > 32768) {
        fprintf(stderr, "cuda_peak: N must be in [256, 32768]\n");
        return 2;
    }
    const size_t nn = (size_t)N * N;
    float *A, *B, *C;
    __nv_bfloat16 *A16, *B16;
    cuda_check(cudaMalloc(&A, nn * sizeof(float)));
    cuda_check(cudaMalloc(&B, nn * sizeof(float)));
    cuda_check(cudaMalloc(&C, nn * sizeof(float)));
    cuda_check(cudaMalloc(&A16, nn * sizeof(__nv_bfloat16)));
    cuda_check(cudaMalloc(&B16, nn * sizeof(__nv_bfloat16)));
    fill_uniform_kernel<<<blocks_for(nn), THREADS>>>(A, nn, 1);
    launch_check();
    fill_uniform_kernel<<<blocks_for(nn), THREADS>>>(B, nn, 2);
    launch_check();
    to_bf16_peak_kernel<<<blocks_for(nn), THREADS>>>(A16, A, nn);
    launch_check();
    to_bf16_peak_kernel<<<blocks_for(nn), THREADS>>>(B16, B, nn);
    launch_check();

    cublasHandle_t h;
    cublas_check(cublasCreate(&h));
    cublas_check(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    const float one = 1.0f, zero = 0.0f;
    const double flops = 2.0 * N * (double)N * N;
    double ms32 = median_ms([&] { cublas_check(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A, N, B, N, &zero, C, N)); }, 3, 10);
    double mstf = median_ms([&] {
        cublas_check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A, CUDA_R_32F, N, B, CUDA_R_32F, N, &zero,
                                  C, CUDA_R_32F, N, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
    }, 3, 10);
    double ms16 = median_ms([&] {
        cublas_check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A16, CUDA_R_16BF, N, B16, CUDA_R_16BF, N,
                                  &zero, C, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }, 3, 20);
    // Copy: A (N*N floats) into C, counting bytes read and written.
    const double copy_bytes = 2.0 * nn * sizeof(float);
    double msc = median_ms([&] { cuda_check(cudaMemcpy(C, A, nn * sizeof(float), cudaMemcpyDeviceToDevice)); }, 3, 20);
    cuda_check(cudaDeviceSynchronize());

    cudaDeviceProp prop;
    int dev = 0;
    cuda_check(cudaGetDevice(&dev));
    cuda_check(cudaGetDeviceProperties(&prop, dev));
    printf("{\"device\": \"%s\", \"sm\": %d%d, \"n\": %d, \"fp32_tflops\": %.1f, \"tf32_tflops\": %.1f, "
           "\"bf16_tflops\": %.1f, \"copy_gbps\": %.0f}\n",
           prop.name, prop.major, prop.minor, N, flops / (ms32 * 1e9), flops / (mstf * 1e9), flops / (ms16 * 1e9),
           copy_bytes / (msc * 1e6));
    cublas_check(cublasDestroy(h));
    cuda_check(cudaFree(A));
    cuda_check(cudaFree(B));
    cuda_check(cudaFree(C));
    cuda_check(cudaFree(A16));
    cuda_check(cudaFree(B16));
    return 0;
}
