// The CUDA backend's sizing rules, in plain C: how much device memory its
// alloc, attention workspaces and op scratch take for a call shape. Both the
// backend (backend_cuda.cu) and the memory planner (core/memplan.c, which
// must work on a machine without a GPU) include this header, so the planned
// CUDA figure and what the backend allocates come from the same formulas.
// The one thing only a GPU can say is the size of CUB's sort storage: the
// backend passes the queried size in, the planner an estimate.
#pragma once
#include <stddef.h>
#include <string.h>

#include "../core/backend.h"

#define CUDA_ALLOC_ALIGN 256
#define CUDA_SUMSQ_BLOCKS 256  // sum_squares: partial sums, one double per block
// LSH workspace: (b, h) pairs are processed in groups of G so that the
// scratch stays bounded (DESIGN.md: attention processed in bounded groups).
#define CUDA_LSH_GROUP_BUDGET ((size_t)512 << 20)

static inline size_t cuda_align256(size_t x) { return (x + 255) & ~(size_t)255; }

// cuBLAS's recommended workspace: 32 MiB on Hopper and later, 4 MiB before.
static inline size_t cuda_cublas_workspace_bytes(int cc_major) { return (size_t)(cc_major >= 9 ? 32 : 4) << 20; }

// matmul_bf16: the bf16 copies of A [M*K] and B [K*N].
static inline size_t cuda_matmul_bf16_bytes(size_t M, size_t N, size_t K) {
    return cuda_align256(M * K * 2) + cuda_align256(K * N * 2);
}

// Column sums (bias and LayerNorm backward) split over rows: a function of N only.
static inline int cuda_col_splits(int N, int *rows_per_split) {
    int splits = (N + 255) / 256;
    if (splits > 128) splits = 128;
    if (splits < 1) splits = 1;
    *rows_per_split = (N + splits - 1) / splits;
    return splits;
}
// Partial sums of b and g per split.
static inline size_t cuda_column_sums_bytes(size_t N, size_t C) {
    if (N == 0 || C == 0) return 0;
    int rps, splits = cuda_col_splits((int)N, &rps);
    return (size_t)2 * splits * C * sizeof(float);
}

static inline size_t cuda_sum_squares_bytes(void) { return CUDA_SUMSQ_BLOCKS * sizeof(double); }

// embedding_backward: row ids in, sorted tokens and row ids out, then CUB's
// temporary storage of sorting N (int, int) pairs.
static inline size_t cuda_embedding_backward_bytes(size_t N, size_t cub_tmp_bytes) {
    if (N == 0) return 0;
    return 3 * cuda_align256(N * sizeof(int)) + cub_tmp_bytes;
}

// Estimate of CUB DeviceRadixSort::SortPairs storage for N 4-byte keys and
// 4-byte values (its alternate key and value buffers plus histograms): only
// used where no GPU can be asked (the planner).
static inline size_t cuda_sort_pairs_estimate(size_t N) { return 2 * cuda_align256(N * 4) + ((size_t)1 << 20); }
static inline size_t cuda_token_sort_bytes_estimate(size_t N) { return N ? cuda_sort_pairs_estimate(N) : 0; }

// LSH attention: pairs per group and the workspace layout (byte offsets).
typedef struct {
    size_t G;  // (b, h) pairs per group
    size_t keys_in, keys_out, vals_in, pos, inv, sort_tmp, rn, wt, Dm, dsq, dsk, dsv, so;
    size_t bytes;
} CudaLshLayout;

static inline size_t cuda_lsh_pairs_per_group(const AttnShape *s) {
    const size_t n = attn_items(s), L = (size_t)s->seq_len, dh = (size_t)s->d_head,
                 pairs = (size_t)s->batch * s->n_heads;
    const size_t nb = s->n_buckets > 0 ? (size_t)s->n_buckets : 1;
    const size_t per_pair = 4 * (5 * n + L + n * (2 + 3 * dh));
    size_t G = pairs;
    while (G > 1 && (G * per_pair > CUDA_LSH_GROUP_BUDGET || G * n > (size_t)0x7fffffff / 2 ||
                     G * (size_t)s->n_hashes * nb > ((size_t)1 << 31) || G > 65535))
        G = (G + 1) / 2;
    return G;
}

// The layout for a group of G pairs whose sort needs sort_bytes of storage.
static inline CudaLshLayout cuda_lsh_layout(const AttnShape *s, size_t G, size_t sort_bytes) {
    CudaLshLayout w;
    memset(&w, 0, sizeof w);
    const size_t n = attn_items(s), L = (size_t)s->seq_len, dh = (size_t)s->d_head;
    size_t off = 0;
#define CUDA_CARVE(field, elem, count) (w.field = off, off += cuda_align256((size_t)(count) * (elem)))
    w.G = G;
    CUDA_CARVE(keys_in, 4, G * n);
    CUDA_CARVE(keys_out, 4, G * n);
    CUDA_CARVE(vals_in, 4, G * n);
    CUDA_CARVE(pos, 4, G * n);
    CUDA_CARVE(inv, 4, G * n);
    CUDA_CARVE(sort_tmp, 1, sort_bytes);
    CUDA_CARVE(rn, 4, G * L);
    size_t region = off;
    CUDA_CARVE(wt, 4, G * n);
    CUDA_CARVE(Dm, 4, G * n);
    CUDA_CARVE(dsq, 4, G * n * dh);
    CUDA_CARVE(dsk, 4, G * n * dh);
    CUDA_CARVE(dsv, 4, G * n * dh);
#undef CUDA_CARVE
    // Forward only: the per-round outputs [G, n*dh] over the backward buffers.
    w.so = region;
    if (G * n * dh * 4 > off - region) off = region + cuda_align256(G * n * dh * 4);
    // The hash's rotations [H, dh * R * W] (W = lsh_rotation_width) alias the whole workspace.
    const size_t W = s->n_buckets > 0 ? (size_t)lsh_rotation_width(s->n_buckets, s->bucket_factors) : 1;
    size_t rot_bytes = cuda_align256((size_t)s->n_heads * dh * s->n_hashes * W * 4);
    w.bytes = off > rot_bytes ? off : rot_bytes;
    return w;
}

// Planner's figure of the LSH workspace (sort_bytes: the CUB query, or an estimate).
static inline size_t cuda_lsh_work_bytes(const AttnShape *s, size_t sort_bytes) {
    return cuda_lsh_layout(s, cuda_lsh_pairs_per_group(s), sort_bytes).bytes;
}
static inline size_t cuda_sort_bytes_estimate(const AttnShape *s) {
    return cuda_sort_pairs_estimate(cuda_lsh_pairs_per_group(s) * attn_items(s));
}

// Local attention: D per (pair, position).
static inline size_t cuda_local_work_bytes(const AttnShape *s) {
    return cuda_align256((size_t)s->batch * s->n_heads * s->seq_len * sizeof(float));
}
