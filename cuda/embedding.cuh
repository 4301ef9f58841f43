// Token embeddings (forward gather, deterministic sorted backward) and axial
// position embeddings.
#pragma once

#include <cub/device/device_radix_sort.cuh>

#include "memory.cuh"


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

// The backward in two stages over segments of the sorted ids (core/
// embedding_segments.h, where the plan and its order are; tests/
// test_embedding_segments.c runs it on the CPU). Stage 1: block (segment k,
// 32 columns), 8 row lanes: each piece of the segment summed by the lanes,
// then the lanes in order; a whole run into its table row, a crossing run's
// piece into the segment's head or tail slot.
__global__ void embedding_segments_kernel(float *dtable, float *slots, const float *dout, const int *tok,
                                          const int *rows, int N, int C) {
    __shared__ float lanes[EMB_LANES][33];
    const int k = blockIdx.x, tx = threadIdx.x, ty = threadIdx.y, c = blockIdx.y * 32 + tx;
    const int a = k * EMB_SEG, b = emb_segment_end(N, k);
    for (int p = a; p < b;) {
        const int q = emb_piece_end(tok, p, b);
        float acc = 0.f;
        if (c < C)
            for (int r = p + ty; r < q; r += EMB_LANES) acc += dout[(size_t)rows[r] * C + c];
        lanes[ty][tx] = acc;
        __syncthreads();
        if (ty == 0 && c < C) {
            float t = 0.f;
            for (int l = 0; l < EMB_LANES; l++) t += lanes[l][tx];
            const int slot = emb_piece_slot(tok, N, b, p, q);
            if (slot < 0) dtable[(size_t)tok[p] * C + c] += t;
            else slots[((size_t)k * 2 + slot) * C + c] = t;
        }
        __syncthreads();
        p = q;
    }
}
// Stage 2: block (segment k, columns) where k owns a crossing run: the table
// row + k's tail slot + the following segments' head slots, in order.
__global__ void embedding_runs_kernel(float *dtable, const float *slots, const int *tok, int N, int C) {
    const int k = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    int start;
    if (c >= C || !emb_owned_run(tok, N, k, &start)) return;
    const size_t row = (size_t)tok[start] * C + c;
    dtable[row] = emb_run_sum(tok, N, k, start, dtable[row], slots, C, c);
}

// Scratch of embedding_backward (core/cuda_sizes.h): row ids in, sorted
// tokens and row ids out (arr bytes each), the segments' slots, then the
// sort's storage (tmp_bytes: the rule, or CUB's query where larger).
static size_t embedding_backward_bytes(int N, int C, size_t *arr, size_t *tmp_bytes) {
    *tmp_bytes = 0;
    *arr = cuda_embedding_array_bytes((size_t)(N > 0 ? N : 0));
    if (N <= 0) return 0;
    size_t queried = 0;
    cuda_check(cub::DeviceRadixSort::SortPairs(NULL, queried, (const int *)NULL, (int *)NULL, (const int *)NULL,
                                               (int *)NULL, N));
    *tmp_bytes = cuda_sort_reserve((size_t)N, queried);
    return cuda_embedding_backward_bytes((size_t)N, (size_t)(C > 0 ? C : 0), *tmp_bytes);
}

static void cu_embedding_backward(real *dtable, const real *dout, const int *tokens, int N, int C) {
    if (N <= 0 || C <= 0) return;
    size_t arr, tmp_bytes;
    char *base = (char *)scratch(embedding_backward_bytes(N, C, &arr, &tmp_bytes));
    int *rows_in = (int *)base, *keys_out = (int *)(base + arr), *rows_out = (int *)(base + 2 * arr);
    float *slots = (float *)(base + 3 * arr);
    char *sort_tmp = base + 3 * arr + cuda_embedding_slot_bytes((size_t)N, (size_t)C);
    iota_kernel<<<blocks_for((size_t)N), THREADS>>>(rows_in, N);
    launch_check();
    cuda_check(cub::DeviceRadixSort::SortPairs(sort_tmp, tmp_bytes, tokens, keys_out, rows_in, rows_out, N));
    const unsigned segs = (unsigned)emb_segments(N);
    embedding_segments_kernel<<<dim3(segs, (unsigned)((C + 31) / 32)), dim3(32, EMB_LANES)>>>(
        dtable, slots, dout, keys_out, rows_out, N, C);
    launch_check();
    embedding_runs_kernel<<<dim3(segs, (unsigned)((C + 127) / 128)), 128>>>(dtable, slots, keys_out, N, C);
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
