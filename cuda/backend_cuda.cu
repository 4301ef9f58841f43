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
//   - embedding_backward sorts the token ids (CUB radix sort, stable), sums
//     segments of 64 sorted rows in parallel, then each run's segments in
//     order (core/embedding_segments.h);
//   - axial_backward: one block per table row sums its positions in order;
//   - attention backward runs two kernels, one owning each query's dQ and one
//     owning each key's dK/dV, and the LSH un-sort is a gather over rounds;
//   - cuBLAS gemm is deterministic on one stream (cuBLAS documentation,
//     "Results reproducibility"); TF32 only with precision=tf32 (matmul_tf32:
//     CUBLAS_COMPUTE_32F_FAST_TF32), else CUBLAS_DEFAULT_MATH.
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
//
// One op family per file (llm.c's llmc/*.cuh), all in this one translation
// unit: common.cuh (checked calls, launch helpers), memory.cuh, matmul.cuh,
// pointwise.cuh, embedding.cuh, layernorm.cuh, attention.cuh, lsh.cuh,
// loss.cuh, adamw.cuh. This file holds the scratch plan, the table and the
// device selection.

#include "common.cuh"
#include "memory.cuh"
#include "matmul.cuh"
#include "pointwise.cuh"
#include "embedding.cuh"
#include "layernorm.cuh"
#include "attention.cuh"
#include "attention_gemm.cuh"
#include "lsh.cuh"
#include "loss.cuh"
#include "adamw.cuh"
#include "backend_cuda.h"

// --- scratch plan: the rules of core/cuda_sizes.h (the planner's too) -----------------------

static size_t cu_scratch_bytes(ScratchOp op, size_t a, size_t b, size_t c) {
    size_t arr, tmp;
    switch (op) {
    case SCRATCH_MATMUL: return 0;  // cuBLAS works in its own (planned) workspace
    case SCRATCH_MATMUL_BF16: return cuda_matmul_bf16_bytes(a, b, c);
    case SCRATCH_COLUMN_SUMS: return cuda_column_sums_bytes(a, b);
    case SCRATCH_EMBEDDING_BACKWARD: return embedding_backward_bytes((int)a, (int)b, &arr, &tmp);
    case SCRATCH_SUM_SQUARES: return cuda_sum_squares_bytes();
    }
    cuda_fatal("report it", "scratch_bytes: unknown op");
    return 0;
}

// --- the table ------------------------------------------------------------------------

static Backend make_backend(void) {
    Backend b;
    memset(&b, 0, sizeof b);
    b.name = "cuda";
    b.alloc_align = CUDA_ALLOC_ALIGN;  // device_alloc's align256 (core/memplan.c rounds rows the same way)
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
    b.matmul_tf32 = cu_matmul_tf32;
    b.bf16_weights = cu_bf16_weights;
    b.host_alloc = cu_host_alloc;
    b.host_free = cu_host_free;
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

extern "C" void cuda_set_test_knobs(int max_group_pairs, int tile, int max_slice_blocks) {
    if (max_group_pairs < 0 || max_slice_blocks < 0 || !(tile == 0 || tile == 8 || tile == 16 || tile == 32))
        cuda_fatal("report it", "cuda_set_test_knobs: group pairs >= 0, tile 0, 8, 16 or 32, slice blocks >= 0");
    g_knobs.max_group_pairs = max_group_pairs;
    g_knob_tile = tile;
    g_knobs.max_slice_blocks = max_slice_blocks;
}

extern "C" int cuda_device_available(char *why, size_t n) { return cuda_select_device(0, why, n) >= 0; }
