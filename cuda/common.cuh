// Shared by every op family of the CUDA backend (llm.c's cuda_common.h):
// checked CUDA/cuBLAS calls with file:line and a hint, launch helpers and warp
// reductions. Each cuda/*.cuh holds one op family; backend_cuda.cu includes
// them all into one translation unit and fills the Backend table.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend.h"
#include "cuda_sizes.h"  // the sizing rules, shared with the planner (core/memplan.c)
}

static_assert(sizeof(real) == sizeof(float), "the CUDA backend is fp32 only: build core without REFORMER_F64");

// --- checked calls ------------------------------------------------------------

static const char *cuda_hint(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation:
        return "out of GPU memory: reduce seq_len, batch or the model size";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
        return "no usable GPU: check nvidia-smi and the driver, or run with device=cpu";
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidValue:
        return "a kernel launch or call got invalid sizes: report it with the config";
    default:
        return "run under compute-sanitizer --tool memcheck to locate the fault";
    }
}

static void cuda_check_at(cudaError_t e, const char *what, const char *file, int line) {
    if (e == cudaSuccess) return;
    fflush(stdout);
    fprintf(stderr, "reformer: error: %s:%d: %s failed: %s (%s) (hint: %s)\n", file, line, what,
            cudaGetErrorString(e), cudaGetErrorName(e), cuda_hint(e));
    exit(1);
}
#define cuda_check(call) cuda_check_at((call), #call, __FILE__, __LINE__)
// After every kernel launch: launch errors (bad configuration, too much shared
// memory) surface here; faults inside kernels surface at the next sync.
#define launch_check() cuda_check_at(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

static const char *cublas_status_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "unknown cuBLAS status";
    }
}

static void cublas_check_at(cublasStatus_t s, const char *what, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    fflush(stdout);
    fprintf(stderr, "reformer: error: %s:%d: %s failed: %s (%d) (hint: %s)\n", file, line, what,
            cublas_status_name(s), (int)s,
            s == CUBLAS_STATUS_ALLOC_FAILED     ? "out of GPU memory: reduce seq_len, batch or the model size"
            : s == CUBLAS_STATUS_NOT_INITIALIZED ? "cuBLAS could not start: check the driver and nvidia-smi"
                                                 : "run under compute-sanitizer --tool memcheck to locate the fault");
    exit(1);
}
#define cublas_check(call) cublas_check_at((call), #call, __FILE__, __LINE__)

static void cuda_fatal_at(const char *file, int line, const char *hint, const char *msg) {
    fflush(stdout);
    fprintf(stderr, "reformer: error: %s:%d: %s (hint: %s)\n", file, line, msg, hint);
    exit(1);
}
#define cuda_fatal(hint, msg) cuda_fatal_at(__FILE__, __LINE__, hint, msg)

// --- launch helpers -------------------------------------------------------------

#define THREADS 256

static unsigned blocks_for(size_t n, int threads = THREADS) {
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    const size_t cap = (size_t)1 << 20;  // grid-stride loops cover the rest
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

#define GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static unsigned warp_blocks(size_t warps) { return (unsigned)((warps + THREADS / 32 - 1) / (THREADS / 32)); }
