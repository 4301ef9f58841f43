// Device memory, counted; the internal scratch planned before step 1; the
// cuBLAS handle and its workspace; the Backend memory ops.
#pragma once

#include "common.cuh"

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
    size_t rounded = cuda_align256(bytes ? bytes : 1);
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

// cuBLAS's workspace for this GPU (cuda_cublas_workspace_bytes).
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
    g_scratch_bytes = cuda_align256(bytes);
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
// The step's bf16 weight copy (matmul.cuh, cu_bf16_weights): forgotten when
// either buffer is released, so a later allocation at the same address is
// never read through a stale copy.
static const float *g_w_params = NULL;
static size_t g_w_count = 0;
static const __nv_bfloat16 *g_w_shadow = NULL;
static void cu_release(void *p) {
    if (p && (p == (const void *)g_w_params || p == (const void *)g_w_shadow)) g_w_params = NULL, g_w_shadow = NULL, g_w_count = 0;
    device_free(p);
}
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

// Page-locked host staging (checkpoints): cudaMemcpy from and to it runs at
// the bus's speed, without the driver's bounce buffer. Not device memory:
// not counted in device_memory. NULL when the host has none to give.
static void *cu_host_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaMallocHost(&p, bytes ? bytes : 1) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}
static void cu_host_free(void *p) {
    if (p) cuda_check(cudaFreeHost(p));
}
