// CUDA backend: every op of the Backend table (core/backend.h) on one GPU, fp32.
//
// The CPU backend (core/backend_cpu.c, core/attention_cpu.c) is the reference;
// cuda/test_cuda.c checks this file against it op by op.
//
// Determinism (a project rule): no op accumulates floats with atomics. Every
// reduction has a fixed shape that depends only on the op's sizes, so a run
// is bit-identical to the previous one on the same GPU model and toolkit:
//   - parameter-gradient reductions over rows (bias, LayerNorm gain/bias) are
//     two-stage: fixed row splits, then the splits summed in order;
//   - embedding_backward sorts the token ids (CUB radix sort, stable) and one
//     thread block per distinct token sums its rows in token order;
//   - axial_backward: one block per table row sums its positions in order;
//   - attention backward runs two kernels, one owning each query's dQ and one
//     owning each key's dK/dV, and the LSH un-sort is a gather over rounds;
//   - cuBLAS gemm is deterministic on one stream (cuBLAS documentation,
//     "Results reproducibility"); TF32 is not enabled (CUBLAS_DEFAULT_MATH).
// The LSH hash computes its projections in a different order than the CPU's
// sgemm, so a projection that ties to ~1e-7 may pick another bucket than the
// CPU; it is still deterministic on the GPU.
//
// Memory: alloc/upload/download/... as the table says; the attention scratch
// lives in the caller's workspace (attention_workspace_bytes). The other ops
// that need scratch (bias/LayerNorm backward partial sums, sum_squares
// partials, the embedding sort, bf16 operand copies) share one internal
// buffer, planned before step 1: model_init asks scratch_bytes for every call
// shape and reserves the largest (reserve_scratch); an op asking for more is
// a bug report, never a cudaMalloc in the step. The first reservation also
// creates the cuBLAS handle with a workspace of ours, so cuBLAS allocates
// nothing in a step either. Every allocation is counted (device_memory).
//
// precision=bf16: matmul_bf16 rounds A and B to bf16 into the scratch and
// multiplies with cublasGemmEx (bf16 operands, fp32 accumulation and fp32 C,
// so master weights and outputs stay fp32); attention rounds q, k, v to bf16
// where it reads them (AttnShape.bf16) and computes everything else in fp32.

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

#include <cub/device/device_radix_sort.cuh>

#include "rng.h"
extern "C" {
#include "backend.h"
}
#include "backend_cuda.h"
#include "cuda_sizes.h"  // sizing rules shared with the memory planner

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

static size_t align256(size_t x) { return cuda_align256(x); }

// --- device memory, counted ------------------------------------------------------

// Every live allocation and its size, so that device_memory can report what
// this backend holds (cudaFree does not say how much it frees). Allocation
// happens before step 1 only, so a linear table is plenty.
typedef struct {
    void *ptr;
    size_t bytes;
} Allocation;
static Allocation *g_allocs = NULL;
static size_t g_n_allocs = 0, g_cap_allocs = 0, g_held_bytes = 0;

static void *device_alloc(size_t bytes) {
    void *p = NULL;
    size_t rounded = align256(bytes ? bytes : 1);
    cuda_check(cudaMalloc(&p, rounded));
    cuda_check(cudaMemset(p, 0, rounded));
    if (g_n_allocs == g_cap_allocs) {
        size_t cap = g_cap_allocs ? 2 * g_cap_allocs : 64;
        Allocation *grown = (Allocation *)realloc(g_allocs, cap * sizeof *grown);
        if (!grown) cuda_fatal("free host memory", "out of host memory for the allocation table");
        g_allocs = grown;
        g_cap_allocs = cap;
    }
    g_allocs[g_n_allocs++] = Allocation{p, rounded};
    g_held_bytes += rounded;
    return p;
}

static void device_free(void *p) {
    if (!p) return;
    for (size_t i = 0; i < g_n_allocs; i++)
        if (g_allocs[i].ptr == p) {
            g_held_bytes -= g_allocs[i].bytes;
            g_allocs[i] = g_allocs[--g_n_allocs];
            cuda_check(cudaFree(p));
            return;
        }
    cuda_fatal("report it: only pointers from this backend's alloc may be released", "release of an unknown pointer");
}

// --- internal scratch and the cuBLAS handle (see the header comment) -------------

static void *g_scratch = NULL;
static size_t g_scratch_bytes = 0;
static int g_scratch_users = 0;  // reserve_scratch calls not yet released
static cublasHandle_t g_cublas = NULL;
static void *g_cublas_workspace = NULL;

// cuBLAS's recommended workspace: 32 MiB on Hopper and later, 4 MiB before.
static size_t cublas_workspace_bytes(void) {
    int dev = 0, major = 0;
    cuda_check(cudaGetDevice(&dev));
    cuda_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    return cuda_cublas_workspace_bytes(major);
}

static void cu_reserve_scratch(size_t bytes) {
    if (g_scratch_users++ == 0) {
        cublas_check(cublasCreate(&g_cublas));
        // Plain fp32 (no TF32): matches the CPU to float rounding.
        cublas_check(cublasSetMathMode(g_cublas, CUBLAS_DEFAULT_MATH));
        size_t ws = cublas_workspace_bytes();
        g_cublas_workspace = device_alloc(ws);
        cublas_check(cublasSetWorkspace(g_cublas, g_cublas_workspace, ws));
    }
    if (bytes <= g_scratch_bytes) return;
    device_free(g_scratch);  // cudaFree synchronises: no kernel still uses it
    g_scratch = device_alloc(bytes);
    g_scratch_bytes = align256(bytes);
}

static void cu_release_scratch(void) {
    if (g_scratch_users <= 0) cuda_fatal("report it", "release_scratch without a reserve_scratch");
    if (--g_scratch_users > 0) return;
    device_free(g_scratch);
    g_scratch = NULL;
    g_scratch_bytes = 0;
    cublas_check(cublasDestroy(g_cublas));
    g_cublas = NULL;
    device_free(g_cublas_workspace);
    g_cublas_workspace = NULL;
}

// The reserved scratch, for an op that needs `bytes` of it.
static void *scratch_at(size_t bytes, const char *file, int line) {
    if (bytes <= g_scratch_bytes && g_scratch_users > 0) return g_scratch;
    char msg[256];
    snprintf(msg, sizeof msg, "an op needs %zu bytes of scratch but %zu are reserved%s", bytes, g_scratch_bytes,
             g_scratch_users > 0 ? "" : " (no reserve_scratch before the op)");
    cuda_fatal_at(file, line, "report it with the config: model_init's scratch plan misses this call shape", msg);
    return NULL;
}
#define scratch(bytes) scratch_at((bytes), __FILE__, __LINE__)

static cublasHandle_t cublas(void) {
    if (!g_cublas) cuda_fatal("report it: reserve_scratch (model_init) comes before any matmul", "no cuBLAS handle");
    return g_cublas;
}

static int cu_device_memory(size_t *held_bytes, size_t *device_used_bytes, size_t *device_free_bytes) {
    size_t free_bytes = 0, total_bytes = 0;
    cuda_check(cudaMemGetInfo(&free_bytes, &total_bytes));
    *held_bytes = g_held_bytes;
    *device_used_bytes = total_bytes - free_bytes;
    *device_free_bytes = free_bytes;
    return 0;
}

// --- memory ---------------------------------------------------------------------

static void *cu_alloc(size_t bytes) { return device_alloc(bytes); }
static void cu_release(void *p) { device_free(p); }
static void cu_upload(void *dst, const void *host_src, size_t bytes) {
    if (bytes) cuda_check(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice));
}
static void cu_download(void *host_dst, const void *src, size_t bytes) {
    if (bytes) cuda_check(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost));
}
static void cu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
static void cu_zero(void *p, size_t bytes) {
    if (bytes) cuda_check(cudaMemset(p, 0, bytes));
}
static void cu_synchronize(void) { cuda_check(cudaDeviceSynchronize()); }

// --- dense ----------------------------------------------------------------------

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

// Scratch of matmul_bf16: the bf16 copies of A [M*K] and B [K*N].
static size_t matmul_bf16_bytes(size_t M, size_t N, size_t K) { return cuda_matmul_bf16_bytes(M, N, K); }

// cu_matmul with A and B rounded to bf16 into the scratch, fp32 accumulation
// (CUBLAS_COMPUTE_32F) and fp32 C: bf16 products are exact in fp32, so the
// only bf16 error is the rounding of each operand (relative 2^-8 at most).
static void cu_matmul_bf16(real *C, const real *A, const real *B, int M, int N, int K, int trans_a, int trans_b,
                           real beta) {
    if (M <= 0 || N <= 0) return;
    const size_t na = (size_t)M * (size_t)(K > 0 ? K : 0), nb = (size_t)(K > 0 ? K : 0) * N;
    char *base = (char *)scratch(matmul_bf16_bytes((size_t)M, (size_t)N, (size_t)(K > 0 ? K : 0)));
    __nv_bfloat16 *a16 = (__nv_bfloat16 *)base, *b16 = (__nv_bfloat16 *)(base + align256(na * sizeof(__nv_bfloat16)));
    to_bf16(a16, A, na);
    to_bf16(b16, B, nb);
    const float alpha = 1.0f;
    cublas_check(cublasGemmEx(cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                              M, K, &alpha, b16, CUDA_R_16BF, trans_b ? K : N, a16, CUDA_R_16BF, trans_a ? M : K,
                              &beta, C, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
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

// Splits: a function of N only (so of the shapes), never of timing.
static int col_splits(int N, int *rows_per_split) { return cuda_col_splits(N, rows_per_split); }

// Scratch of column_sums: the partial sums of b and g per split.
static size_t column_sums_bytes(int N, int C) {
    return N <= 0 || C <= 0 ? 0 : cuda_column_sums_bytes((size_t)N, (size_t)C);
}

// db[c] += sum_n dout[n, c]; with x: dg[c] += sum_n dout (x - mean) rstd.
static void column_sums(float *db, float *dg, const float *dout, const float *x, const float *mean,
                        const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    int rps, splits = col_splits(N, &rps);
    float *part = (float *)scratch(column_sums_bytes(N, C));
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
#define SUMSQ_BLOCKS CUDA_SUMSQ_BLOCKS
static size_t sum_squares_bytes(void) { return cuda_sum_squares_bytes(); }
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
    unsigned blocks = (unsigned)(nb < SUMSQ_BLOCKS ? nb : SUMSQ_BLOCKS);
    double *partial = (double *)scratch(sum_squares_bytes());
    sum_squares_kernel<<<blocks, THREADS>>>(partial, x, n);
    launch_check();
    double host[SUMSQ_BLOCKS], s = 0;
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

// --- embeddings -------------------------------------------------------------------

__global__ void embedding_forward_kernel(float *out, const int *tokens, const float *table, size_t n, int C) {
    GRID_STRIDE(i, n) {
        size_t r = i / (size_t)C;
        out[i] = table[(size_t)tokens[r] * C + i % (size_t)C];
    }
}
static void cu_embedding_forward(real *out, const int *tokens, const real *table, int N, int C) {
    size_t n = (size_t)N * C;
    if (!n) return;
    embedding_forward_kernel<<<blocks_for(n), THREADS>>>(out, tokens, table, n, C);
    launch_check();
}

__global__ void iota_kernel(int *x, int n) {
    GRID_STRIDE(i, (size_t)n) x[i] = (int)i;
}

// Block s handles the run of equal tokens that starts at sorted index s (and
// exits if s starts no run): each column summed over the run's rows in
// ascending row order, starting from the table's value: the CPU's order.
__global__ void embedding_backward_kernel(float *dtable, const float *dout, const int *sorted_tokens,
                                          const int *sorted_rows, int N, int C) {
    const int s = blockIdx.x;
    const int tok = sorted_tokens[s];
    if (s > 0 && sorted_tokens[s - 1] == tok) return;
    int end = s + 1;
    while (end < N && sorted_tokens[end] == tok) end++;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = dtable[(size_t)tok * C + c];
        for (int k = s; k < end; k++) acc += dout[(size_t)sorted_rows[k] * C + c];
        dtable[(size_t)tok * C + c] = acc;
    }
}

// Scratch of embedding_backward: row ids in, sorted tokens and row ids out
// (arr bytes each), then CUB's temporary storage (tmp_bytes).
static size_t embedding_backward_bytes(int N, size_t *arr, size_t *tmp_bytes) {
    *tmp_bytes = 0;
    *arr = align256((size_t)(N > 0 ? N : 0) * sizeof(int));
    if (N <= 0) return 0;
    cuda_check(cub::DeviceRadixSort::SortPairs(NULL, *tmp_bytes, (const int *)NULL, (int *)NULL, (const int *)NULL,
                                               (int *)NULL, N));
    return cuda_embedding_backward_bytes((size_t)N, *tmp_bytes);
}

static void cu_embedding_backward(real *dtable, const real *dout, const int *tokens, int N, int C) {
    if (N <= 0 || C <= 0) return;
    size_t arr, tmp_bytes;
    char *base = (char *)scratch(embedding_backward_bytes(N, &arr, &tmp_bytes));
    int *rows_in = (int *)base, *keys_out = (int *)(base + arr), *rows_out = (int *)(base + 2 * arr);
    iota_kernel<<<blocks_for((size_t)N), THREADS>>>(rows_in, N);
    launch_check();
    cuda_check(cub::DeviceRadixSort::SortPairs(base + 3 * arr, tmp_bytes, tokens, keys_out, rows_in, rows_out, N));
    embedding_backward_kernel<<<(unsigned)N, 128>>>(dtable, dout, keys_out, rows_out, N, C);
    launch_check();
}

typedef struct {
    float *tables[MAX_AXES];
    int shape[MAX_AXES], dims[MAX_AXES], off[MAX_AXES], stride[MAX_AXES];
    int n_axes, d;
} AxialArgs;

static AxialArgs axial_args(real *const *tables, const int *shape, const int *dims, int n_axes) {
    AxialArgs a;
    memset(&a, 0, sizeof a);
    if (n_axes > MAX_AXES || n_axes < 1) cuda_fatal("check axial_shape", "axial embedding with an unsupported number of axes");
    a.n_axes = n_axes;
    for (int i = 0, off = 0; i < n_axes; off += dims[i], i++) {
        a.tables[i] = tables ? tables[i] : NULL;
        a.shape[i] = shape[i];
        a.dims[i] = dims[i];
        a.off[i] = off;
        a.d = off + dims[i];
    }
    for (int i = n_axes - 1, st = 1; i >= 0; st *= shape[i], i--) a.stride[i] = st;
    return a;
}

__global__ void axial_forward_kernel(float *out, AxialArgs a, size_t n, int len, int pos_offset) {
    GRID_STRIDE(i, n) {
        size_t row = i / (size_t)a.d;
        int c = (int)(i % (size_t)a.d);
        int p = pos_offset + (int)(row % (size_t)len);
        int ax = 0;
        while (ax + 1 < a.n_axes && c >= a.off[ax + 1]) ax++;
        int idx = (p / a.stride[ax]) % a.shape[ax];
        out[i] += a.tables[ax][(size_t)idx * a.dims[ax] + (c - a.off[ax])];
    }
}
static void cu_axial_forward(real *out, real *const *tables, const int *shape, const int *dims, int n_axes,
                             int batch, int len, int pos_offset) {
    AxialArgs a = axial_args(tables, shape, dims, n_axes);
    size_t n = (size_t)batch * len * a.d;
    if (!n) return;
    axial_forward_kernel<<<blocks_for(n), THREADS>>>(out, a, n, len, pos_offset);
    launch_check();
}

// Block k owns row k of one axis's table: each column sums dout over the
// positions p with idx(p) == k in the CPU's order (batch, then position).
// Those positions are p = q * period + k * stride + s, s < stride.
__global__ void axial_backward_kernel(float *dtable, const float *dout, int dims, int off, int d, int stride,
                                      int period, int batch, int len, int pos_offset) {
    const int k = blockIdx.x, end = pos_offset + len;
    for (int c = threadIdx.x; c < dims; c += blockDim.x) {
        float acc = dtable[(size_t)k * dims + c];
        for (int b = 0; b < batch; b++)
            for (long q0 = (long)(pos_offset / period) * period; q0 < end; q0 += period)
                for (int s = 0; s < stride; s++) {
                    long p = q0 + (long)k * stride + s;
                    if (p < pos_offset) continue;
                    if (p >= end) break;
                    acc += dout[((size_t)b * len + (size_t)(p - pos_offset)) * d + off + c];
                }
        dtable[(size_t)k * dims + c] = acc;
    }
}
static void cu_axial_backward(real *const *dtables, const real *dout, const int *shape, const int *dims,
                              int n_axes, int batch, int len, int pos_offset) {
    AxialArgs a = axial_args(dtables, shape, dims, n_axes);
    if (batch <= 0 || len <= 0) return;
    for (int ax = 0; ax < n_axes; ax++) {
        if (a.shape[ax] <= 0 || a.dims[ax] <= 0) continue;
        int threads = a.dims[ax] < 256 ? ((a.dims[ax] + 31) / 32) * 32 : 256;
        axial_backward_kernel<<<(unsigned)a.shape[ax], threads>>>(dtables[ax], dout, a.dims[ax], a.off[ax], a.d,
                                                                   a.stride[ax], a.stride[ax] * a.shape[ax], batch,
                                                                   len, pos_offset);
        launch_check();
    }
}

// --- normalisation and pointwise ----------------------------------------------------

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

// --- attention ----------------------------------------------------------------------
//
// The CPU's chunked kernel (core/attention_cpu.c) as three fused kernels over
// tiles of T items: forward (online softmax: logits of one T x T tile at a
// time in shared memory, running max / sum per query, logsumexp written for
// the round combination and the backward), dQ (one block owns a tile of
// queries and walks their keys) and dK/dV (one block owns a tile of keys and
// walks the queries that see them: its own chunk and the next one). Each
// output element is written by one block, so there are no atomics.
//
// Item t of one (batch, head) pair: LSH: the t-th item in (round, bucket,
// position) order, at position pos[t]; local: position t. Chunk c's queries
// are items [c*m, (c+1)*m); its keys are the previous chunk (LSH: cyclic;
// local: none for chunk 0; none when there is one chunk) then its own.

#define ATT_THREADS 256
#define KEY_NORM_EPS 1e-6  // as core/attention_cpu.c

struct Attn {
    int B, L, H, dh, HD;
    int n;          // items per pair: R*L (LSH) or L (local)
    int m, nc;      // chunk length, chunks per pair
    int T, ld;      // tile size, shared-memory row stride (dh + 1: no bank conflicts)
    float scale;
    int bf16;       // round q, k, v to bf16 where they are read (precision=bf16)
    int pair0;      // global index (b*H + h) of the launch's first pair (blockIdx.y = 0)
    size_t sstride; // LSH: reals per pair of the per-round outputs (workspace), n*dh
    const float *q, *k, *v;  // [B, L, HD] (LSH: q is qk and k is unused)
    const int *pos;          // LSH: [pairs of launch, n] positions of sorted items
    const float *rn;         // LSH: [pairs of launch, L] 1 / sqrt(|qk|^2 + dh*eps)
    float *o;                // forward: LSH per-round outputs of pair0 (workspace); local: out [B, L, HD]
    float *lse;              // forward: [B*H, n] per item (the saved buffer)
    const float *dout;       // backward: [B, L, HD]
    const float *slse;       // backward: lse [B*H, n] per item (the saved buffer)
    const float *wt;         // LSH backward: [pairs, n] round weight of each item
    const float *Dm;         // backward: [pairs, n] D - dlse per item (see lsh_prep_kernel)
    float *dq, *dk, *dv;     // LSH: item space [pairs, n, dh]; local: [B, L, HD]
};

// An attention input (q, k or v) as attention sees it: with precision=bf16
// rounded to bf16 (to nearest even), then used in fp32 like every logit, mask
// constant, softmax sum and output (see logit() on the masks).
__device__ __forceinline__ float attn_input(float x, int bf16) {
    return bf16 ? __bfloat162float(__float2bfloat16_rn(x)) : x;
}

__device__ __forceinline__ size_t tok_row(const Attn &a, int b, int p, int h) {
    return ((size_t)b * a.L + p) * a.HD + (size_t)h * a.dh;
}
template <bool LSH>
__device__ __forceinline__ int item_pos(const Attn &a, int lp, int t) {
    return LSH ? a.pos[(size_t)lp * a.n + t] : t;
}
template <bool LSH>
__device__ __forceinline__ float item_lse(const Attn &a, int lp, int t) {
    (void)LSH;
    return a.slse[(size_t)(a.pair0 + lp) * a.n + t];
}

// A chunk's key list: nb blocks of m items, block 0 starting at item s0 and
// block 1 (if any) at s1. Key u of the list is item key_item(k, u, m).
struct KeyBlocks {
    int nb, s0, s1;
};
__device__ __forceinline__ KeyBlocks key_blocks(int c, int nc, int m, bool cyclic) {
    KeyBlocks k;
    if (nc > 1 && (cyclic || c > 0)) k.nb = 2, k.s0 = ((c + nc - 1) % nc) * m, k.s1 = c * m;
    else k.nb = 1, k.s0 = c * m, k.s1 = 0;
    return k;
}
__device__ __forceinline__ int key_item(const KeyBlocks &k, int u, int m) { return u < m ? k.s0 + u : k.s1 + u - m; }

// Key tile [u0, u0 + nkv) of a chunk's key list: positions, keys (LSH: the
// normalised queries), values.
template <bool LSH>
__device__ void load_key_tile(const Attn &a, int lp, int b, int h, const KeyBlocks &kb, int u0, int nkv, float *Ks,
                              float *Vs, int *kpos) {
    const int T = a.T, ld = a.ld, dh = a.dh;
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        int p = INT_MAX;  // padding keys: after every query, so always masked out
        if (j < nkv) {
            int u = u0 + j;
            p = item_pos<LSH>(a, lp, key_item(kb, u, a.m));
        }
        kpos[j] = p;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < T * dh; e += blockDim.x) {
        int j = e / dh, d = e % dh;
        float kv = 0.f, vv = 0.f;
        if (j < nkv) {
            size_t r = tok_row(a, b, kpos[j], h) + d;
            kv = LSH ? attn_input(a.q[r], a.bf16) * a.rn[(size_t)lp * a.L + kpos[j]] : attn_input(a.k[r], a.bf16);
            vv = attn_input(a.v[r], a.bf16);
        }
        Ks[j * ld + d] = kv;
        Vs[j * ld + d] = vv;
    }
}

// Logit of query i and key j, or -inf where the key is causally masked
// (never counted) ; the self mask is a constant logit (REFORMER.md step 6).
// Logits are fp32 with precision=bf16 too (only q, k, v are rounded). Were
// they bf16, the mask constants would still be safe: bf16 keeps fp32's 8-bit
// exponent (range 3.4e38), so -1e9 and -1e5 stay finite (-998244352 and
// -99840), far below any real logit, and a query that sees only itself still
// gets weight exp(0) = 1; in fp16 (largest 65504) -1e5 would be -inf and
// that query's softmax 0/0 = NaN.
template <bool LSH>
__device__ __forceinline__ float logit(const Attn &a, const float *Qs, const float *Ks, int i, int j, int qp,
                                       int kp) {
    if (kp > qp) return -INFINITY;
    if (LSH && kp == qp) return (float)MASK_SELF;
    float acc = 0.f;
    const float *qr = Qs + i * a.ld, *kr = Ks + j * a.ld;
    for (int d = 0; d < a.dh; d++) acc += qr[d] * kr[d];
    return acc * a.scale;
}

static size_t fwd_smem(int T, int dh) {
    return sizeof(float) * ((size_t)4 * T * (dh + 1) + (size_t)T * (T + 1) + 3 * (size_t)T) + sizeof(int) * 2 * T;
}
static size_t dq_smem(int T, int dh) {
    return sizeof(float) * ((size_t)5 * T * (dh + 1) + (size_t)T * (T + 1) + 2 * (size_t)T) + sizeof(int) * 2 * T;
}
static size_t dkv_smem(int T, int dh) {
    return sizeof(float) * ((size_t)6 * T * (dh + 1) + (size_t)2 * T * (T + 1) + 2 * (size_t)T) +
           sizeof(int) * 2 * T;
}

template <bool LSH>
__global__ void __launch_bounds__(ATT_THREADS) attn_forward_kernel(Attn a) {
    extern __shared__ float smem[];
    const int T = a.T, ld = a.ld, dh = a.dh, S_ld = T + 1;
    float *Qs = smem, *Ks = Qs + T * ld, *Vs = Ks + T * ld, *Os = Vs + T * ld, *S = Os + T * ld;
    float *rm = S + T * S_ld, *rl = rm + T, *ra = rl + T;
    int *qpos = (int *)(ra + T), *kpos = qpos + T;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarp = blockDim.x >> 5;
    const int lp = blockIdx.y, pair = a.pair0 + lp, b = pair / a.H, h = pair % a.H;
    const int tpc = (a.m + T - 1) / T, c = blockIdx.x / tpc, qoff = (blockIdx.x % tpc) * T;
    const int q0 = c * a.m + qoff, nq = min(T, a.m - qoff);
    const KeyBlocks kb = key_blocks(c, a.nc, a.m, LSH);
    // Local attention is causal in item order: no key after the tile's last query.
    const int nk = LSH ? kb.nb * a.m : (kb.nb - 1) * a.m + qoff + nq;

    for (int i = tid; i < T; i += blockDim.x) {
        qpos[i] = i < nq ? item_pos<LSH>(a, lp, q0 + i) : -1;  // padding rows see nothing
        rm[i] = -INFINITY;
        rl[i] = 0.f;
    }
    __syncthreads();
    for (int e = tid; e < T * dh; e += blockDim.x) {
        int i = e / dh, d = e % dh;
        Qs[i * ld + d] = i < nq ? attn_input(a.q[tok_row(a, b, qpos[i], h) + d], a.bf16) : 0.f;
        Os[i * ld + d] = 0.f;
    }
    for (int u0 = 0; u0 < nk; u0 += T) {
        const int nkv = min(T, nk - u0);
        __syncthreads();
        load_key_tile<LSH>(a, lp, b, h, kb, u0, nkv, Ks, Vs, kpos);
        __syncthreads();
        for (int e = tid; e < T * T; e += blockDim.x) {
            int i = e / T, j = e % T;
            S[i * S_ld + j] = logit<LSH>(a, Qs, Ks, i, j, qpos[i], kpos[j]);
        }
        __syncthreads();
        // Online softmax, one warp per query row (T <= 32 keys per tile).
        for (int i = warp; i < T; i += nwarp) {
            float s = lane < T ? S[i * S_ld + lane] : -INFINITY;
            float mo = rm[i], mn = fmaxf(mo, warp_max(s));
            float p = s == -INFINITY ? 0.f : expf(s - mn);
            float sum = warp_sum(p);
            if (lane < T) S[i * S_ld + lane] = p;
            if (lane == 0) {
                float alpha = mo == -INFINITY ? 0.f : expf(mo - mn);
                rm[i] = mn;
                rl[i] = rl[i] * alpha + sum;
                ra[i] = alpha;
            }
        }
        __syncthreads();
        for (int e = tid; e < T * dh; e += blockDim.x) {
            int i = e / dh, d = e % dh;
            float acc = Os[i * ld + d] * ra[i];
            for (int j = 0; j < nkv; j++) acc += S[i * S_ld + j] * Vs[j * ld + d];
            Os[i * ld + d] = acc;
        }
    }
    __syncthreads();
    // Every query sees itself (unmasked or self-masked), so rl > 0. The
    // output is sum_j exp(s_j - lse) v_j with lse rounded to float, as the
    // CPU computes it (not O / l): where the max logit is the self mask
    // -1e5, float lse is ~4e-3 off and the weights do not sum to exactly 1;
    // the CPU, trax and HF all live with that, and so must this kernel to
    // match them (and the backward, which recomputes P = exp(s - lse)).
    for (int i = tid; i < nq; i += blockDim.x) {
        float lse = rm[i] + logf(rl[i]);
        ra[i] = expf(rm[i] - lse);
        rl[i] = lse;
    }
    __syncthreads();
    for (int e = tid; e < nq * dh; e += blockDim.x) {
        int i = e / dh, d = e % dh;
        float val = Os[i * ld + d] * ra[i];
        if (LSH) a.o[(size_t)lp * a.sstride + (size_t)(q0 + i) * dh + d] = val;
        else a.o[tok_row(a, b, q0 + i, h) + d] = val;
    }
    for (int i = tid; i < nq; i += blockDim.x) {
        float lse = rl[i];
        a.lse[(size_t)pair * a.n + q0 + i] = lse;
    }
}

// Query tile [q0, q0 + nq): positions, logsumexps, D terms, queries and their
// output gradients (LSH: dO of item t = w_t * dout at its position).
template <bool LSH>
__device__ void load_query_tile(const Attn &a, int lp, int b, int h, int q0, int nq, float *Qs, float *dOs,
                                float *ql, float *qD, int *qpos) {
    const int T = a.T, ld = a.ld, dh = a.dh;
    for (int i = threadIdx.x; i < T; i += blockDim.x) {
        int valid = i < nq;
        qpos[i] = valid ? item_pos<LSH>(a, lp, q0 + i) : -1;
        ql[i] = valid ? item_lse<LSH>(a, lp, q0 + i) : 0.f;
        qD[i] = valid ? a.Dm[(size_t)lp * a.n + q0 + i] : 0.f;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < T * dh; e += blockDim.x) {
        int i = e / dh, d = e % dh;
        float qv = 0.f, gv = 0.f;
        if (i < nq) {
            size_t r = tok_row(a, b, qpos[i], h) + d;
            qv = attn_input(a.q[r], a.bf16);
            gv = LSH ? a.wt[(size_t)lp * a.n + q0 + i] * a.dout[r] : a.dout[r];
        }
        Qs[i * ld + d] = qv;
        dOs[i * ld + d] = gv;
    }
}

__device__ __forceinline__ float dot_rows(const float *x, const float *y, int dh) {
    float acc = 0.f;
    for (int d = 0; d < dh; d++) acc += x[d] * y[d];
    return acc;
}

// dQ: one block per query tile. dS = P (dP - D) on unmasked logits, 0 on
// masked ones (replaced logits are constants); dQ = scale * dS K.
template <bool LSH>
__global__ void __launch_bounds__(ATT_THREADS) attn_dq_kernel(Attn a) {
    extern __shared__ float smem[];
    const int T = a.T, ld = a.ld, dh = a.dh, S_ld = T + 1;
    float *Qs = smem, *dOs = Qs + T * ld, *Ks = dOs + T * ld, *Vs = Ks + T * ld, *dQs = Vs + T * ld;
    float *dS = dQs + T * ld, *ql = dS + T * S_ld, *qD = ql + T;
    int *qpos = (int *)(qD + T), *kpos = qpos + T;
    const int tid = threadIdx.x;
    const int lp = blockIdx.y, pair = a.pair0 + lp, b = pair / a.H, h = pair % a.H;
    const int tpc = (a.m + T - 1) / T, c = blockIdx.x / tpc, qoff = (blockIdx.x % tpc) * T;
    const int q0 = c * a.m + qoff, nq = min(T, a.m - qoff);
    const KeyBlocks kb = key_blocks(c, a.nc, a.m, LSH);
    const int nk = LSH ? kb.nb * a.m : (kb.nb - 1) * a.m + qoff + nq;

    load_query_tile<LSH>(a, lp, b, h, q0, nq, Qs, dOs, ql, qD, qpos);
    for (int e = tid; e < T * dh; e += blockDim.x) dQs[(e / dh) * ld + e % dh] = 0.f;
    for (int u0 = 0; u0 < nk; u0 += T) {
        const int nkv = min(T, nk - u0);
        __syncthreads();
        load_key_tile<LSH>(a, lp, b, h, kb, u0, nkv, Ks, Vs, kpos);
        __syncthreads();
        for (int e = tid; e < T * T; e += blockDim.x) {
            int i = e / T, j = e % T, qp = qpos[i], kp = kpos[j];
            float ds = 0.f;
            if (kp < qp || (!LSH && kp == qp)) {
                float p = expf(logit<LSH>(a, Qs, Ks, i, j, qp, kp) - ql[i]);
                ds = p * (dot_rows(dOs + i * ld, Vs + j * ld, dh) - qD[i]);
            }
            dS[i * S_ld + j] = ds;
        }
        __syncthreads();
        for (int e = tid; e < T * dh; e += blockDim.x) {
            int i = e / dh, d = e % dh;
            float acc = dQs[i * ld + d];
            for (int j = 0; j < nkv; j++) acc += dS[i * S_ld + j] * Ks[j * ld + d];
            dQs[i * ld + d] = acc;
        }
    }
    __syncthreads();
    for (int e = tid; e < nq * dh; e += blockDim.x) {
        int i = e / dh, d = e % dh;
        float val = dQs[i * ld + d] * a.scale;
        if (LSH) a.dq[((size_t)lp * a.n + q0 + i) * dh + d] = val;
        else a.dq[tok_row(a, b, q0 + i, h) + d] = val;
    }
}

// The LSH end of attn_dkv_kernel, one warp per key row.
__device__ void lsh_key_epilogue(const Attn &a, int lp, int b, int h, int k0, int nkv, const int *kpos,
                                 const float *dKs, const float *dVs) {
    const int ld = a.ld, dh = a.dh, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarp = blockDim.x >> 5;
    for (int j = warp; j < nkv; j += nwarp) {
        const int p = kpos[j];
        const float *qr = a.q + tok_row(a, b, p, h);
        const float r = a.rn[(size_t)lp * a.L + p];
        float qdk = 0.f;
        for (int d = lane; d < dh; d += 32) qdk += attn_input(qr[d], a.bf16) * (dKs[j * ld + d] * a.scale);
        qdk = warp_sum(qdk);
        float *dkq = a.dk + ((size_t)lp * a.n + k0 + j) * dh, *dvo = a.dv + ((size_t)lp * a.n + k0 + j) * dh;
        for (int d = lane; d < dh; d += 32) {
            float dk = dKs[j * ld + d] * a.scale;
            dkq[d] = r * dk - r * r * r * qdk * attn_input(qr[d], a.bf16);
            dvo[d] = dVs[j * ld + d];
        }
    }
}

// dK, dV: one block per key tile of chunk c; the queries that see chunk c are
// those of chunk c and of the next chunk (cyclic for LSH). dV = P^T dO (the
// self-masked logit has a probability, so it feeds dV), dK = scale dS^T Q.
// LSH: dK then goes back through the key normalisation k = q r, r =
// 1/sqrt(|q|^2 + eps'): dq += r dk - r^3 (q . dk) q, written in item space.
template <bool LSH>
__global__ void __launch_bounds__(ATT_THREADS) attn_dkv_kernel(Attn a) {
    extern __shared__ float smem[];
    const int T = a.T, ld = a.ld, dh = a.dh, S_ld = T + 1;
    float *Ks = smem, *Vs = Ks + T * ld, *dKs = Vs + T * ld, *dVs = dKs + T * ld, *Qs = dVs + T * ld;
    float *dOs = Qs + T * ld, *P = dOs + T * ld, *dS = P + T * S_ld, *ql = dS + T * S_ld, *qD = ql + T;
    int *qpos = (int *)(qD + T), *kpos = qpos + T;
    const int tid = threadIdx.x;
    const int lp = blockIdx.y, pair = a.pair0 + lp, b = pair / a.H, h = pair % a.H;
    const int tpc = (a.m + T - 1) / T, c = blockIdx.x / tpc, koff = (blockIdx.x % tpc) * T;
    const int k0 = c * a.m + koff, nkv = min(T, a.m - koff);

    // The key tile, as a one-block key list starting at k0.
    KeyBlocks own;  // the key tile as a one-block list: key u < nkv <= m is item k0 + u
    own.nb = 1;
    own.s0 = k0;
    own.s1 = 0;
    load_key_tile<LSH>(a, lp, b, h, own, 0, nkv, Ks, Vs, kpos);
    for (int e = tid; e < T * dh; e += blockDim.x) {
        dKs[(e / dh) * ld + e % dh] = 0.f;
        dVs[(e / dh) * ld + e % dh] = 0.f;
    }
    int qchunks[2], nqc = 0;
    qchunks[nqc++] = c;
    if (a.nc > 1 && (LSH || c + 1 < a.nc)) qchunks[nqc++] = (c + 1) % a.nc;
    for (int qc = 0; qc < nqc; qc++) {
        // Local: queries of the own chunk before the key tile see none of it.
        int first = (!LSH && qc == 0) ? koff : 0;
        for (int qoff = first; qoff < a.m; qoff += T) {
            const int q0 = qchunks[qc] * a.m + qoff, nq = min(T, a.m - qoff);
            __syncthreads();
            load_query_tile<LSH>(a, lp, b, h, q0, nq, Qs, dOs, ql, qD, qpos);
            __syncthreads();
            for (int e = tid; e < T * T; e += blockDim.x) {
                int i = e / T, j = e % T, qp = qpos[i], kp = kpos[j];
                float p = 0.f, ds = 0.f;
                if (kp <= qp) {
                    p = expf(logit<LSH>(a, Qs, Ks, i, j, qp, kp) - ql[i]);
                    if (!(LSH && kp == qp)) ds = p * (dot_rows(dOs + i * ld, Vs + j * ld, dh) - qD[i]);
                }
                P[i * S_ld + j] = p;
                dS[i * S_ld + j] = ds;
            }
            __syncthreads();
            for (int e = tid; e < T * dh; e += blockDim.x) {
                int j = e / dh, d = e % dh;
                float av = dVs[j * ld + d], ak = dKs[j * ld + d];
                for (int i = 0; i < nq; i++) {
                    av += P[i * S_ld + j] * dOs[i * ld + d];
                    ak += dS[i * S_ld + j] * Qs[i * ld + d];
                }
                dVs[j * ld + d] = av;
                dKs[j * ld + d] = ak;
            }
        }
    }
    __syncthreads();
    if (!LSH) {
        for (int e = tid; e < nkv * dh; e += blockDim.x) {
            int j = e / dh, d = e % dh;
            size_t r = tok_row(a, b, k0 + j, h) + d;
            a.dk[r] = dKs[j * ld + d] * a.scale;
            a.dv[r] = dVs[j * ld + d];
        }
    } else {
        // LSH: one warp per key row for the normalisation backward.
        lsh_key_epilogue(a, lp, b, h, k0, nkv, kpos, dKs, dVs);
    }
}

// --- LSH pieces ----------------------------------------------------------------

// Rotations of every local head [H][dh * R * half], element e of head h drawn
// exactly as cpu_lsh_hash: rng_normal(seed, (global head << 32) | e, step, tag).
__global__ void lsh_rotations_kernel(float *rot, int H, size_t per_head, int head_offset, uint64_t seed,
                                     uint32_t step, uint32_t tag) {
    GRID_STRIDE(i, (size_t)H * per_head) {
        uint64_t head = (uint64_t)(head_offset + (int)(i / per_head));
        rot[i] = rng_normal(seed, (head << 32) | (uint64_t)(i % per_head), step, tag);
    }
}

// One thread per position: for each round, the argmax over [p ; -p] of the
// projections p = x Rot_r, first maximum winning: the first index of max(p)
// unless max(-p) is strictly larger (then the first index of min(p)).
#define HASH_POS 64
__global__ void lsh_hash_kernel(uint16_t *buckets, const float *qk, const float *rot, int L, int H, int dh, int R,
                                int half, int bf16) {
    extern __shared__ float qs[];  // [HASH_POS][dh + 1]
    const int ld = dh + 1, pair = blockIdx.y, b = pair / H, h = pair % H, i0 = blockIdx.x * HASH_POS;
    const int HD = H * dh, width = R * half;
    for (int e = threadIdx.x; e < HASH_POS * dh; e += blockDim.x) {
        int i = e / dh, d = e % dh;
        qs[i * ld + d] = i0 + i < L ? attn_input(qk[((size_t)b * L + i0 + i) * HD + (size_t)h * dh + d], bf16) : 0.f;
    }
    __syncthreads();
    const int i = threadIdx.x;
    if (i0 + i >= L) return;
    const float *x = qs + i * ld, *rt = rot + (size_t)h * dh * width;
    for (int r = 0; r < R; r++) {
        float mx = 0.f, mn = 0.f;
        int jmx = 0, jmn = 0;
        for (int j = 0; j < half; j++) {
            const float *col = rt + r * half + j;
            float p = 0.f;
            for (int d = 0; d < dh; d++) p += x[d] * col[(size_t)d * width];
            if (j == 0) {
                mx = mn = p;
            } else {
                if (p > mx) mx = p, jmx = j;
                if (p < mn) mn = p, jmn = j;
            }
        }
        int best = -mn > mx ? half + jmn : jmx;
        buckets[((size_t)pair * R + r) * L + i0 + i] = (uint16_t)best;
    }
}

// Sort keys of one launch's pairs: key = (pair * R + round) * nb + bucket,
// value = position, so a stable radix sort gives each (pair, round) segment in
// (bucket, position) order: lsh_sort_items' order.
__global__ void lsh_sort_keys_kernel(uint32_t *keys, int *vals, const uint16_t *buckets, int pair0, int g, int L,
                                     int R, int nb) {
    const size_t n = (size_t)R * L;
    GRID_STRIDE(e, (size_t)g * n) {
        size_t lp = e / n, rem = e % n;
        int r = (int)(rem / (size_t)L), i = (int)(rem % (size_t)L);
        keys[e] = (uint32_t)(((size_t)lp * R + r) * nb) + buckets[((size_t)pair0 + lp) * n + rem];
        vals[e] = i;
    }
}
// inv[r*L + pos] = t for every sorted item t (round r = t / L).
__global__ void lsh_inverse_kernel(int *inv, const int *pos, int g, int L, int n) {
    GRID_STRIDE(e, (size_t)g * n) {
        size_t lp = e / (size_t)n;
        int t = (int)(e % (size_t)n);
        inv[lp * n + (size_t)(t / L) * L + pos[e]] = t;
    }
}
// No buckets (one chunk): items in position order.
__global__ void lsh_identity_kernel(int *pos, int *inv, int g, int L, int n) {
    GRID_STRIDE(e, (size_t)g * n) {
        int t = (int)(e % (size_t)n);
        pos[e] = t % L;
        inv[e] = t;
    }
}

// One warp per (pair, position): rn = 1 / sqrt(|qk|^2 + dh * eps).
__global__ void lsh_key_norm_kernel(float *rn, const float *qk, int pair0, int g, int L, int H, int dh, float eps,
                                    int bf16) {
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (w >= (size_t)g * L) return;
    const int lp = (int)(w / (size_t)L), i = (int)(w % (size_t)L), pair = pair0 + lp;
    const float *x = qk + ((size_t)(pair / H) * L + i) * H * dh + (size_t)(pair % H) * dh;
    float ss = 0.f;
    for (int d = lane; d < dh; d += 32) {
        float xd = attn_input(x[d], bf16);
        ss += xd * xd;
    }
    ss = warp_sum(ss);
    if (lane == 0) rn[w] = 1.0f / sqrtf(ss + eps);
}

// Round weights of position i: w_r = softmax_r(lse of its round-r item).
__device__ __forceinline__ void round_softmax(const float *slse, const int *inv, int i, int L, int R, float *mx,
                                              float *sum) {
    float m = -INFINITY, s = 0.f;
    for (int r = 0; r < R; r++) m = fmaxf(m, slse[inv[(size_t)r * L + i]]);
    for (int r = 0; r < R; r++) s += expf(slse[inv[(size_t)r * L + i]] - m);
    *mx = m;
    *sum = s;
}

// out[b, i, h] = sum_r w_r o_r, one warp per (pair, position).
__global__ void lsh_combine_kernel(float *out, const float *so_base, const float *lse, const int *inv, int pair0, int g,
                                   int L, int H, int dh, int R, size_t sstride) {
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (w >= (size_t)g * L) return;
    const int lp = (int)(w / (size_t)L), i = (int)(w % (size_t)L), pair = pair0 + lp, n = R * L;
    const float *so = so_base + (size_t)lp * sstride, *slse = lse + (size_t)pair * n;
    const int *iv = inv + (size_t)lp * n;
    float mx, sum;
    round_softmax(slse, iv, i, L, R, &mx, &sum);
    float *o = out + ((size_t)(pair / H) * L + i) * H * dh + (size_t)(pair % H) * dh;
    for (int d = lane; d < dh; d += 32) {
        float acc = 0.f;
        for (int r = 0; r < R; r++) {
            int t = iv[(size_t)r * L + i];
            acc += (expf(slse[t] - mx) / sum) * so[(size_t)t * dh + d];
        }
        o[d] = acc;
    }
}

// Backward of the round combination, per (pair, position), one warp: item t
// of round r gets dO_t = w_r dout and dlse_t = w_r dout . (o_r - out). The
// chunk backward needs dS = P (dP - D_t + dlse_t) with D_t = dO_t . o_r, and
// D_t - dlse_t = w_r (dout . out): stored as Dm (one dot per position, and
// no cancellation between two large terms).
__global__ void lsh_prep_kernel(float *wt, float *Dm, const float *lse, const int *inv, const float *dout,
                                const float *out, int pair0, int g, int L, int H, int dh, int R) {
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (w >= (size_t)g * L) return;
    const int lp = (int)(w / (size_t)L), i = (int)(w % (size_t)L), pair = pair0 + lp, n = R * L;
    const float *slse = lse + (size_t)pair * n;
    const int *iv = inv + (size_t)lp * n;
    const size_t row = ((size_t)(pair / H) * L + i) * H * dh + (size_t)(pair % H) * dh;
    float dot = 0.f;
    for (int d = lane; d < dh; d += 32) dot += dout[row + d] * out[row + d];
    dot = warp_sum(dot);
    float mx, sum;
    round_softmax(slse, iv, i, L, R, &mx, &sum);
    for (int r = lane; r < R; r += 32) {
        int t = iv[(size_t)r * L + i];
        float wr = expf(slse[t] - mx) / sum;
        wt[(size_t)lp * n + t] = wr;
        Dm[(size_t)lp * n + t] = wr * dot;
    }
}

// Local: D = dout . out per (pair, position), one warp each.
__global__ void local_prep_kernel(float *Dm, const float *dout, const float *out, int B, int L, int H, int dh) {
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (w >= (size_t)B * H * L) return;
    const int pair = (int)(w / (size_t)L), i = (int)(w % (size_t)L);
    const size_t row = ((size_t)(pair / H) * L + i) * H * dh + (size_t)(pair % H) * dh;
    float dot = 0.f;
    for (int d = lane; d < dh; d += 32) dot += dout[row + d] * out[row + d];
    dot = warp_sum(dot);
    if (lane == 0) Dm[w] = dot;
}

// Un-sort: dqk[b, i, h] = sum over rounds of (query-role + key-role)
// gradients of position i's items, dv likewise; rounds in order (the CPU's).
__global__ void lsh_unsort_kernel(float *dqk, float *dv, const float *dsq, const float *dsk, const float *dsv,
                                  const int *inv, int pair0, int g, int L, int H, int dh, int R) {
    const int n = R * L;
    GRID_STRIDE(e, (size_t)g * L * dh) {
        const int d = (int)(e % (size_t)dh);
        const size_t w = e / (size_t)dh;
        const int lp = (int)(w / (size_t)L), i = (int)(w % (size_t)L), pair = pair0 + lp;
        float aq = 0.f, av = 0.f;
        for (int r = 0; r < R; r++) {
            size_t t = (size_t)lp * n + inv[(size_t)lp * n + (size_t)r * L + i];
            aq += dsq[t * dh + d] + dsk[t * dh + d];
            av += dsv[t * dh + d];
        }
        size_t row = ((size_t)(pair / H) * L + i) * H * dh + (size_t)(pair % H) * dh + d;
        dqk[row] = aq;
        dv[row] = av;
    }
}

// --- attention host side ------------------------------------------------------------

static int g_smem_optin = 0;

static int smem_optin(void) {
    if (!g_smem_optin) {
        int dev = 0;
        cuda_check(cudaGetDevice(&dev));
        cuda_check(cudaDeviceGetAttribute(&g_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    }
    return g_smem_optin;
}

// Largest tile (32, 16 or 8 items) whose three kernels fit in shared memory.
static int attn_tile(int dh) {
    for (int T = 32; T >= 8; T /= 2) {
        size_t need = dkv_smem(T, dh);
        if (fwd_smem(T, dh) > need) need = fwd_smem(T, dh);
        if (dq_smem(T, dh) > need) need = dq_smem(T, dh);
        if (need <= (size_t)smem_optin()) return T;
    }
    cuda_fatal("use a smaller d_head", "d_head too large for the attention kernels' shared memory");
    return 0;
}

template <typename K>
static void set_smem(K kernel, size_t bytes) {
    cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

static Attn attn_base(const AttnShape *s, int lsh) {
    Attn a;
    memset(&a, 0, sizeof a);
    a.B = s->batch;
    a.L = s->seq_len;
    a.H = s->n_heads;
    a.dh = s->d_head;
    a.HD = s->n_heads * s->d_head;
    a.n = lsh ? (int)attn_items(s) : s->seq_len;
    a.m = s->chunk_len;
    a.nc = a.n / a.m;
    a.T = attn_tile(a.dh);
    a.ld = a.dh + 1;
    a.scale = lsh ? 1.0f : 1.0f / sqrtf((float)a.dh);
    a.bf16 = s->bf16;
    a.sstride = (size_t)a.n * a.dh;
    if (a.m <= 0 || a.n % a.m != 0)
        cuda_fatal("seq_len * n_hashes must be a multiple of the chunk length", "attention chunk does not divide the items");
    return a;
}

static dim3 attn_grid(const Attn &a, int g) { return dim3((unsigned)(a.nc * ((a.m + a.T - 1) / a.T)), (unsigned)g); }

template <bool LSH>
static void launch_forward(const Attn &a, int g) {
    size_t bytes = fwd_smem(a.T, a.dh);
    set_smem(attn_forward_kernel<LSH>, bytes);
    attn_forward_kernel<LSH><<<attn_grid(a, g), ATT_THREADS, bytes>>>(a);
    launch_check();
}
template <bool LSH>
static void launch_backward(const Attn &a, int g) {
    size_t bytes = dq_smem(a.T, a.dh);
    set_smem(attn_dq_kernel<LSH>, bytes);
    attn_dq_kernel<LSH><<<attn_grid(a, g), ATT_THREADS, bytes>>>(a);
    launch_check();
    bytes = dkv_smem(a.T, a.dh);
    set_smem(attn_dkv_kernel<LSH>, bytes);
    attn_dkv_kernel<LSH><<<attn_grid(a, g), ATT_THREADS, bytes>>>(a);
    launch_check();
}

static unsigned warp_blocks(size_t warps) { return (unsigned)((warps + THREADS / 32 - 1) / (THREADS / 32)); }

// LSH workspace: (b, h) pairs in groups of G, laid out by cuda_lsh_layout.

typedef struct {
    int G;                      // pairs per group
    int end_bit;                // radix bits of the sort keys of a full group
    size_t sort_bytes;          // CUB temporary storage of a full group
    uint32_t *keys_in, *keys_out;
    int *vals_in, *pos, *inv;   // [G, n]
    void *sort_tmp;
    float *rn;                  // [G, L]
    float *so;                  // [G, n*dh] forward: per-round outputs (aliases the backward buffers)
    float *wt, *Dm;             // [G, n]
    float *dsq, *dsk, *dsv;     // [G, n, dh]
    float *rot;                 // hash only: [H, dh * R * nb/2] (aliases the rest)
    size_t bytes;
} LshWork;

static int bits_for(size_t count) {  // bits to represent 0 .. count-1
    int b = 1;
    while (b < 32 && ((size_t)1 << b) < count) b++;
    return b;
}

static LshWork lsh_work(const AttnShape *s, void *base) {
    LshWork w;
    memset(&w, 0, sizeof w);
    const size_t n = attn_items(s);
    const size_t nb = s->n_buckets > 0 ? (size_t)s->n_buckets : 1;
    size_t G = cuda_lsh_pairs_per_group(s);
    if (G * n > (size_t)INT_MAX / 2 || G * (size_t)s->n_hashes * nb > ((size_t)1 << 31))
        cuda_fatal("reduce seq_len or n_hashes", "LSH attention: too many items per (batch, head) for the sort");
    w.G = (int)G;
    w.end_bit = bits_for(G * (size_t)s->n_hashes * nb);
    cuda_check(cub::DeviceRadixSort::SortPairs(NULL, w.sort_bytes, (const uint32_t *)NULL, (uint32_t *)NULL,
                                               (const int *)NULL, (int *)NULL, (int)(G * n), 0, w.end_bit));
    CudaLshLayout lay = cuda_lsh_layout(s, G, w.sort_bytes);
    char *p = (char *)base;
#define AT(field, type) w.field = p ? (type *)(p + lay.field) : NULL
    AT(keys_in, uint32_t);
    AT(keys_out, uint32_t);
    AT(vals_in, int);
    AT(pos, int);
    AT(inv, int);
    AT(sort_tmp, char);
    AT(rn, float);
    AT(wt, float);
    AT(Dm, float);
    AT(dsq, float);
    AT(dsk, float);
    AT(dsv, float);
    AT(so, float);
#undef AT
    w.rot = (float *)p;
    w.bytes = lay.bytes;
    return w;
}

static size_t cu_attention_workspace_bytes(const AttnShape *s, int lsh) {
    if (lsh) return lsh_work(s, NULL).bytes;
    return cuda_local_work_bytes(s);  // local: D per position
}

static void cu_lsh_hash(uint16_t *buckets, const real *qk, const AttnShape *s, uint64_t seed, uint32_t step,
                        uint32_t layer, void *work) {
    const int B = s->batch, L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes, half = s->n_buckets / 2;
    if (half <= 0 || B <= 0 || L <= 0) return;
    if (s->n_buckets > 65536) cuda_fatal("use at most 65536 buckets", "n_buckets does not fit uint16 bucket ids");
    LshWork w = lsh_work(s, work);
    const size_t per_head = (size_t)dh * R * half;
    lsh_rotations_kernel<<<blocks_for((size_t)H * per_head), THREADS>>>(w.rot, H, per_head, s->head_offset, seed, step,
                                                                        rng_tag(RNG_HASH, layer, 0));
    launch_check();
    size_t bytes = (size_t)HASH_POS * (dh + 1) * sizeof(float);
    if (bytes > (size_t)smem_optin()) cuda_fatal("use a smaller d_head", "d_head too large for the hash kernel");
    set_smem(lsh_hash_kernel, bytes);
    if (B * H > 65535) cuda_fatal("reduce batch or n_heads", "more than 65535 (batch, head) pairs in one hash call");
    dim3 grid((unsigned)((L + HASH_POS - 1) / HASH_POS), (unsigned)(B * H));
    lsh_hash_kernel<<<grid, HASH_POS, bytes>>>(buckets, qk, w.rot, L, H, dh, R, half, s->bf16);
    launch_check();
}

// Sort the items of pairs [p0, p0 + g) into w.pos / w.inv and compute the key
// normalisers.
static void lsh_prepare_group(const LshWork &w, const uint16_t *buckets, const real *qk, const AttnShape *s, int p0,
                              int g) {
    const int L = s->seq_len, R = s->n_hashes, n = (int)attn_items(s);
    const size_t items = (size_t)g * n;
    if (buckets) {
        lsh_sort_keys_kernel<<<blocks_for(items), THREADS>>>(w.keys_in, w.vals_in, buckets, p0, g, L, R,
                                                             s->n_buckets);
        launch_check();
        size_t tmp = w.sort_bytes;
        cuda_check(cub::DeviceRadixSort::SortPairs(w.sort_tmp, tmp, w.keys_in, w.keys_out, w.vals_in, w.pos,
                                                   (int)items, 0, w.end_bit));
        lsh_inverse_kernel<<<blocks_for(items), THREADS>>>(w.inv, w.pos, g, L, n);
        launch_check();
    } else {
        lsh_identity_kernel<<<blocks_for(items), THREADS>>>(w.pos, w.inv, g, L, n);
        launch_check();
    }
    lsh_key_norm_kernel<<<warp_blocks((size_t)g * L), THREADS>>>(w.rn, qk, p0, g, L, s->n_heads, s->d_head,
                                                                 (float)(s->d_head * KEY_NORM_EPS), s->bf16);
    launch_check();
}

static void cu_lsh_attention_forward(real *out, real *saved, const real *qk, const real *v, const uint16_t *buckets,
                                     const AttnShape *s, void *work) {
    const int pairs = s->batch * s->n_heads, L = s->seq_len;
    if (pairs <= 0 || L <= 0) return;
    LshWork w = lsh_work(s, work);
    Attn a = attn_base(s, 1);
    a.q = qk;
    a.v = v;
    a.pos = w.pos;
    a.rn = w.rn;
    a.o = w.so;
    a.lse = saved;
    for (int p0 = 0; p0 < pairs; p0 += w.G) {
        int g = pairs - p0 < w.G ? pairs - p0 : w.G;
        lsh_prepare_group(w, buckets, qk, s, p0, g);
        a.pair0 = p0;
        launch_forward<true>(a, g);
        lsh_combine_kernel<<<warp_blocks((size_t)g * L), THREADS>>>(out, w.so, saved, w.inv, p0, g, L, s->n_heads,
                                                                    s->d_head, s->n_hashes, a.sstride);
        launch_check();
    }
}

static void cu_lsh_attention_backward(real *dqk, real *dv, const real *dout, const real *out, const real *saved,
                                      const real *qk, const real *v, const uint16_t *buckets, const AttnShape *s,
                                      void *work) {
    const int pairs = s->batch * s->n_heads, L = s->seq_len;
    if (pairs <= 0 || L <= 0) return;
    LshWork w = lsh_work(s, work);
    Attn a = attn_base(s, 1);
    a.q = qk;
    a.v = v;
    a.pos = w.pos;
    a.rn = w.rn;
    a.dout = dout;
    a.wt = w.wt;
    a.Dm = w.Dm;
    a.dq = w.dsq;
    a.dk = w.dsk;
    a.dv = w.dsv;
    a.slse = saved;
    for (int p0 = 0; p0 < pairs; p0 += w.G) {
        int g = pairs - p0 < w.G ? pairs - p0 : w.G;
        lsh_prepare_group(w, buckets, qk, s, p0, g);
        a.pair0 = p0;
        lsh_prep_kernel<<<warp_blocks((size_t)g * L), THREADS>>>(w.wt, w.Dm, saved, w.inv, dout, out, p0, g, L,
                                                                 s->n_heads, s->d_head, s->n_hashes);
        launch_check();
        launch_backward<true>(a, g);
        lsh_unsort_kernel<<<blocks_for((size_t)g * L * s->d_head), THREADS>>>(dqk, dv, w.dsq, w.dsk, w.dsv, w.inv, p0,
                                                                              g, L, s->n_heads, s->d_head, s->n_hashes);
        launch_check();
    }
}

static void cu_local_attention_forward(real *out, real *lse, const real *q, const real *k, const real *v,
                                       const AttnShape *s, void *work) {
    (void)work;
    const int pairs = s->batch * s->n_heads;
    if (pairs <= 0 || s->seq_len <= 0) return;
    Attn a = attn_base(s, 0);
    a.q = q;
    a.k = k;
    a.v = v;
    a.o = out;
    a.lse = lse;
    for (int p0 = 0; p0 < pairs; p0 += 65535) {
        a.pair0 = p0;
        launch_forward<false>(a, pairs - p0 < 65535 ? pairs - p0 : 65535);
    }
}

static void cu_local_attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *out,
                                        const real *lse, const real *q, const real *k, const real *v,
                                        const AttnShape *s, void *work) {
    const int pairs = s->batch * s->n_heads, L = s->seq_len;
    if (pairs <= 0 || L <= 0) return;
    float *Dm = (float *)work;
    local_prep_kernel<<<warp_blocks((size_t)pairs * L), THREADS>>>(Dm, dout, out, s->batch, L, s->n_heads,
                                                                   s->d_head);
    launch_check();
    Attn a = attn_base(s, 0);
    a.q = q;
    a.k = k;
    a.v = v;
    a.dout = dout;
    a.slse = lse;
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    for (int p0 = 0; p0 < pairs; p0 += 65535) {
        a.pair0 = p0;
        a.Dm = Dm + (size_t)p0 * L;
        launch_backward<false>(a, pairs - p0 < 65535 ? pairs - p0 : 65535);
    }
}

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

// --- scratch plan ------------------------------------------------------------------------

static size_t cu_scratch_bytes(ScratchOp op, size_t a, size_t b, size_t c) {
    size_t arr, tmp;
    switch (op) {
    case SCRATCH_MATMUL: return 0;  // cuBLAS works in its own (planned) workspace
    case SCRATCH_MATMUL_BF16: return matmul_bf16_bytes(a, b, c);
    case SCRATCH_COLUMN_SUMS: return column_sums_bytes((int)a, (int)b);
    case SCRATCH_EMBEDDING_BACKWARD: return embedding_backward_bytes((int)a, &arr, &tmp);
    case SCRATCH_SUM_SQUARES: return sum_squares_bytes();
    }
    cuda_fatal("report it", "scratch_bytes: unknown op");
    return 0;
}

// --- the table ------------------------------------------------------------------------

static Backend make_backend(void) {
    Backend b;
    memset(&b, 0, sizeof b);
    b.name = "cuda";
    b.alloc_align = 256;  // device_alloc's align256
    b.alloc = cu_alloc;
    b.release = cu_release;
    b.upload = cu_upload;
    b.download = cu_download;
    b.copy = cu_copy;
    b.zero = cu_zero;
    b.synchronize = cu_synchronize;
    b.attention_workspace_bytes = cu_attention_workspace_bytes;
    b.scratch_bytes = cu_scratch_bytes;
    b.reserve_scratch = cu_reserve_scratch;
    b.release_scratch = cu_release_scratch;
    b.device_memory = cu_device_memory;
    b.matmul = cu_matmul;
    b.matmul_bf16 = cu_matmul_bf16;
    b.bias_forward = cu_bias_forward;
    b.bias_backward = cu_bias_backward;
    b.axpy = cu_axpy;
    b.scale = cu_scale;
    b.sum_squares = cu_sum_squares;
    b.copy_2d = cu_copy_2d;
    b.concat_rows = cu_concat_rows;
    b.split_rows = cu_split_rows;
    b.embedding_forward = cu_embedding_forward;
    b.embedding_backward = cu_embedding_backward;
    b.axial_forward = cu_axial_forward;
    b.axial_backward = cu_axial_backward;
    b.layernorm_forward = cu_layernorm_forward;
    b.layernorm_backward = cu_layernorm_backward;
    b.activation_forward = cu_activation_forward;
    b.activation_backward = cu_activation_backward;
    b.dropout = cu_dropout;
    b.lsh_hash = cu_lsh_hash;
    b.lsh_attention_forward = cu_lsh_attention_forward;
    b.lsh_attention_backward = cu_lsh_attention_backward;
    b.local_attention_forward = cu_local_attention_forward;
    b.local_attention_backward = cu_local_attention_backward;
    b.xent_forward_backward = cu_xent_forward_backward;
    b.adamw = cu_adamw;
    return b;
}

static const Backend CUDA_BACKEND = make_backend();

extern "C" const Backend *backend_cuda(void) { return &CUDA_BACKEND; }

extern "C" int cuda_select_device(int local_rank, char *why, size_t n) {
    char dummy[8];
    if (!why || n == 0) why = dummy, n = sizeof dummy;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaSuccess && count <= 0) {
        snprintf(why, n, "cudaGetDeviceCount found no device");
        return -1;
    }
    const int dev = e == cudaSuccess ? (local_rank > 0 ? local_rank : 0) % count : 0;
    if (e == cudaSuccess) e = cudaSetDevice(dev);
    if (e == cudaSuccess) e = cudaFree(0);  // creates the context now, so a broken device fails here
    if (e != cudaSuccess) {
        snprintf(why, n, "%s", cudaGetErrorString(e));
        (void)cudaGetLastError();
        return -1;
    }
    cudaDeviceProp prop;
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
        snprintf(why, n, "device %d of %d (local rank %d): %s, sm_%d%d, %.1f GiB", dev, count, local_rank, prop.name,
                 prop.major, prop.minor, (double)total_bytes / (1024.0 * 1024.0 * 1024.0));
    else snprintf(why, n, "device %d of %d (local rank %d)", dev, count, local_rank);
    return dev;
}

extern "C" int cuda_device_available(char *why, size_t n) { return cuda_select_device(0, why, n) >= 0; }
