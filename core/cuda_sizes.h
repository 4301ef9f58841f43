// The CUDA backend's sizing rules, in plain C: how much device memory its
// alloc, attention workspaces and op scratch take for a call shape, and
// where each buffer lies inside them. The one source of these sizes: the
// backend (cuda/*.cuh) carves its workspaces with these layouts and answers
// attention_workspace_bytes / scratch_bytes with these functions, and the
// memory planner (core/memplan.c: `reformer plan --set device=cuda`, --fit)
// calls the same functions on a machine without a GPU.
//
// Why in core/: the planner must work without CUDA, and core/ includes
// nothing from cuda/ (cuda/ already builds with -Icore for backend.h and
// lsh_rules.h); like core/lsh_rules.h, a rule shared by core/ and cuda/ lives
// in one plain-C header here. No CUDA type appears in it.
//
// The one thing only a GPU can say is the size of CUB's sort storage. The
// rule is cuda_sort_pairs_bytes (a bound from CUB's own allocation list, see
// there); the backend reserves max(rule, CUB's query), and test_cuda checks
// that the query never exceeds the rule, so the plan is what is allocated.
#pragma once
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "attention_blocks.h"
#include "embedding_segments.h"
#include "backend.h"

#define CUDA_ALLOC_ALIGN 256
#define CUDA_SUMSQ_BLOCKS 256  // sum_squares: partial sums, one double per block
// LSH workspace: (b, h) pairs are processed in groups of G so that the
// scratch stays bounded (DESIGN.md: attention processed in bounded groups).
#define CUDA_LSH_GROUP_BUDGET ((size_t)512 << 20)
// Tensor-core attention: scratch of one slice of chunk blocks (the GEMMs of a
// slice are one batched call each, so a large slice keeps the tensor cores busy).
#define CUDA_GM_SLICE_BUDGET ((size_t)256 << 20)
// The LSH hash on the GEMM path: one slice of positions' inputs and projections.
#define CUDA_HASH_SLICE_BUDGET ((size_t)128 << 20)

// test_cuda's knobs (cuda_set_test_knobs), which shrink groups and slices so
// that their boundaries fall inside small inputs; 0 = automatic (the planner).
typedef struct {
    int max_group_pairs;   // LSH: at most this many (b, h) pairs per group
    int max_slice_blocks;  // tensor-core attention: at most this many blocks per slice
} CudaKnobs;

static inline size_t cuda_align256(size_t x) { return (x + 255) & ~(size_t)255; }

// cuBLAS's recommended workspace: 32 MiB on Hopper and later, 4 MiB before.
static inline size_t cuda_cublas_workspace_bytes(int cc_major) { return (size_t)(cc_major >= 9 ? 32 : 4) << 20; }

// matmul_bf16: the bf16 copies of A [M*K] and B [K*N], B's after A's.
static inline size_t cuda_matmul_bf16_bytes(size_t M, size_t N, size_t K) {
    return cuda_align256(M * K * 2) + cuda_align256(K * N * 2);
}

// Column sums (bias and LayerNorm backward) split over rows: a function of N
// only (so of the shapes, never of timing: deterministic).
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

// Storage of CUB's DeviceRadixSort::SortPairs of N 4-byte keys with 4-byte
// values, bounded from CUB's allocation list (cub/device/dispatch/
// dispatch_radix_sort.cuh): the alternate keys and values (N * 4 each); the
// onesweep lookback, one row of 256 digit counters (4 bytes) per tile of at
// least 1024 items, so at most N bytes; the bins and counters, at most 4
// passes x 256 digits x 8 bytes per portion of 2^28 items; each of the 5
// pieces aligned to 256. The older (non-onesweep) path needs less (a spine
// of grid x 256 counters). 1 MiB covers the small terms with room to spare.
static inline size_t cuda_sort_pairs_bytes(size_t N) {
    return N ? 2 * cuda_align256(N * 4) + cuda_align256(N) + ((size_t)1 << 20) : 0;
}
// What the backend reserves: the rule, or CUB's query where that is larger
// (test_cuda fails then: the plan would under-count).
static inline size_t cuda_sort_reserve(size_t N, size_t queried) {
    size_t rule = cuda_sort_pairs_bytes(N);
    return queried > rule ? queried : rule;
}

// embedding_backward: row ids in, sorted tokens and row ids out (one array
// each, in this order), the segments' head and tail sums [segments, 2, C]
// (core/embedding_segments.h), then the sort's storage.
static inline size_t cuda_embedding_array_bytes(size_t N) { return cuda_align256(N * sizeof(int)); }
static inline size_t cuda_embedding_slot_bytes(size_t N, size_t C) {
    return cuda_align256(emb_slot_floats((int)N, (int)C) * sizeof(float));
}
static inline size_t cuda_embedding_backward_bytes(size_t N, size_t C, size_t sort_bytes) {
    return N ? 3 * cuda_embedding_array_bytes(N) + cuda_embedding_slot_bytes(N, C) + sort_bytes : 0;
}

// --- tensor-core attention (cuda/attention_gemm.cuh) ----------------------------

// Items per (b, h) pair and chunk: LSH sorts n_hashes * seq_len items; local
// attention's items are the positions.
static inline BlockGeom cuda_gm_geom(const AttnShape *s, int lsh) {
    return block_geom(lsh ? (int)attn_items(s) : s->seq_len, s->chunk_len > 0 ? s->chunk_len : 1, lsh);
}
// Scratch of one block (forward and backward share it), in bytes.
static inline size_t cuda_gm_block_bytes(const AttnShape *s, int lsh) {
    const BlockGeom g = cuda_gm_geom(s, lsh);
    const size_t m = (size_t)g.m, kw = (size_t)g.kw, dh = (size_t)s->d_head, t = s->bf16 ? 2 : 4;
    return t * (2 * m * dh + 2 * kw * dh)                    // Q, dO, K, V
           + (s->bf16 ? 2 * 2 * m * kw : 0)                  // P16, dS16
           + 4 * (2 * m * kw + m * dh + 2 * kw * dh + 2 * m)  // S, dP; O or dQ; dK, dV; lse, Dm
           + 4 * (m + kw);                                    // positions
}
// Blocks per slice for calls of up to `blocks` blocks; 0 when one block does
// not fit the budget (then the reference kernels run).
static inline int cuda_gm_slice_blocks(const AttnShape *s, int lsh, size_t blocks, const CudaKnobs *k) {
    const size_t per = cuda_gm_block_bytes(s, lsh);
    if (per > CUDA_GM_SLICE_BUDGET) return 0;
    size_t nb = CUDA_GM_SLICE_BUDGET / per;
    if (nb > blocks) nb = blocks;
    if (k && k->max_slice_blocks > 0 && nb > (size_t)k->max_slice_blocks) nb = (size_t)k->max_slice_blocks;
    if (nb > (size_t)INT_MAX / 2) nb = (size_t)INT_MAX / 2;
    return (int)(nb < 1 ? 1 : nb);
}
// Whether a call runs on the tensor-core path (attn_impl=fast and a block fits).
static inline int cuda_gm_enabled(const AttnShape *s, int lsh) {
    return !s->reference && cuda_gm_slice_blocks(s, lsh, 1, NULL) > 0;
}
// A slice of nb blocks: their buffers, each rounded up to 256 bytes (15 of them).
static inline size_t cuda_gm_slice_bytes(const AttnShape *s, int lsh, int nb) {
    return (size_t)nb * cuda_gm_block_bytes(s, lsh) + 16 * 256;
}
// The slice a call of `blocks` blocks uses, 0 off the tensor-core path.
static inline size_t cuda_gm_call_slice_bytes(const AttnShape *s, int lsh, size_t blocks, const CudaKnobs *k) {
    return cuda_gm_enabled(s, lsh) ? cuda_gm_slice_bytes(s, lsh, cuda_gm_slice_blocks(s, lsh, blocks, k)) : 0;
}

// Local attention's workspace: D per (pair, position), then (tensor-core
// path) one slice of every pair's chunk blocks.
static inline size_t cuda_local_d_bytes(const AttnShape *s) {
    return cuda_align256((size_t)s->batch * s->n_heads * s->seq_len * sizeof(float));
}
static inline size_t cuda_local_work_bytes(const AttnShape *s, const CudaKnobs *k) {
    const size_t blocks = (size_t)s->batch * s->n_heads * cuda_gm_geom(s, 0).nc;
    return cuda_local_d_bytes(s) + cuda_gm_call_slice_bytes(s, 0, blocks, k);
}

// --- LSH attention (cuda/lsh.cuh) ---------------------------------------------

// The hash on the GEMM path: positions per slice (every head's inputs [Ls,
// dh] and projections [Ls, R * W] (W = lsh_rotation_width) within the budget), and the slice's bytes.
static inline int cuda_hash_slice_positions(const AttnShape *s) {
    const size_t W = (size_t)s->n_hashes * lsh_rotation_width(s->n_buckets, s->bucket_factors), per_pos = (size_t)s->n_heads * (s->d_head + W) * 4;
    size_t Ls = CUDA_HASH_SLICE_BUDGET / (per_pos ? per_pos : 1);
    if (Ls > (size_t)s->seq_len) Ls = (size_t)s->seq_len;
    return (int)(Ls < 1 ? 1 : Ls);
}
// X [H, Ls, dh], then proj [H, Ls, W].
static inline size_t cuda_hash_x_bytes(const AttnShape *s, int Ls) {
    return cuda_align256((size_t)s->n_heads * Ls * s->d_head * 4);
}
static inline size_t cuda_hash_slice_bytes(const AttnShape *s, int Ls) {
    const size_t W = (size_t)s->n_hashes * lsh_rotation_width(s->n_buckets, s->bucket_factors);
    return cuda_hash_x_bytes(s, Ls) + cuda_align256((size_t)s->n_heads * Ls * W * 4);
}

// Pairs per group: the group's buffers within the budget, its item count
// within the sort's int range and its keys within 31 bits, at most 65535
// (gridDim.y).
static inline size_t cuda_lsh_pairs_per_group(const AttnShape *s, const CudaKnobs *k) {
    const size_t n = attn_items(s), L = (size_t)s->seq_len, dh = (size_t)s->d_head,
                 pairs = (size_t)s->batch * s->n_heads;
    const size_t nb = s->n_buckets > 0 ? (size_t)s->n_buckets : 1;
    const size_t per_pair = 4 * (5 * n + L + n * (2 + 3 * dh));
    size_t G = pairs;
    if (k && k->max_group_pairs > 0 && G > (size_t)k->max_group_pairs) G = (size_t)k->max_group_pairs;
    while (G > 1 && (G * per_pair > CUDA_LSH_GROUP_BUDGET || G * n > (size_t)INT_MAX / 2 ||
                     G * (size_t)s->n_hashes * nb > ((size_t)1 << 31) || G > 65535))
        G = (G + 1) / 2;
    return G;
}

// The LSH workspace of one call: byte offsets of the group buffers, the
// hash's rotations and GEMM slice (which alias the group buffers: the hash
// runs before them), and the tensor-core slice after all of it.
typedef struct {
    size_t G;           // (b, h) pairs per group
    size_t sort_bytes;  // CUB storage of a full group's sort
    size_t keys_in, keys_out, vals_in, pos, inv, sort_tmp, rn;  // [G, n] and [G, L]
    size_t wt, Dm, dsq, dsk, dsv;                               // backward
    size_t so;          // forward only: per-round outputs [G, n*dh] over the backward buffers
    size_t rot;         // hash: rotations [H, dh * R * W], W = lsh_rotation_width
    size_t hash_slice;  // hash, GEMM path: X and proj of one slice of positions
    size_t group_bytes; // all of the above
    size_t slice;       // tensor-core attention's slice of blocks
    size_t bytes;       // the whole workspace
} CudaLshLayout;

// sort_queried: CUB's answer for a full group (0 where no GPU can be asked).
static inline CudaLshLayout cuda_lsh_layout(const AttnShape *s, const CudaKnobs *k, size_t sort_queried) {
    CudaLshLayout w;
    memset(&w, 0, sizeof w);
    const size_t n = attn_items(s), L = (size_t)s->seq_len, dh = (size_t)s->d_head;
    const size_t G = cuda_lsh_pairs_per_group(s, k);
    w.G = G;
    w.sort_bytes = cuda_sort_reserve(G * n, sort_queried);
    size_t off = 0;
#define CUDA_CARVE(field, elem, count) (w.field = off, off += cuda_align256((size_t)(count) * (elem)))
    CUDA_CARVE(keys_in, 4, G * n);
    CUDA_CARVE(keys_out, 4, G * n);
    CUDA_CARVE(vals_in, 4, G * n);
    CUDA_CARVE(pos, 4, G * n);
    CUDA_CARVE(inv, 4, G * n);
    CUDA_CARVE(sort_tmp, 1, w.sort_bytes);
    CUDA_CARVE(rn, 4, G * L);
    const size_t region = off;
    CUDA_CARVE(wt, 4, G * n);
    CUDA_CARVE(Dm, 4, G * n);
    CUDA_CARVE(dsq, 4, G * n * dh);
    CUDA_CARVE(dsk, 4, G * n * dh);
    CUDA_CARVE(dsv, 4, G * n * dh);
#undef CUDA_CARVE
    w.so = region;
    if (G * n * dh * 4 > off - region) off = region + cuda_align256(G * n * dh * 4);
    w.rot = 0;
    w.hash_slice = cuda_align256((size_t)s->n_heads * dh * s->n_hashes *
                                 (s->n_buckets > 0 ? (size_t)lsh_rotation_width(s->n_buckets, s->bucket_factors) : 1) * 4);
    size_t hash_end = w.hash_slice;
    if (!s->reference && s->n_buckets > 0) hash_end += cuda_hash_slice_bytes(s, cuda_hash_slice_positions(s));
    w.group_bytes = off > hash_end ? off : hash_end;
    w.slice = cuda_align256(w.group_bytes);
    w.bytes = w.slice + cuda_gm_call_slice_bytes(s, 1, G * cuda_gm_geom(s, 1).nc, k);
    return w;
}

// attention_workspace_bytes of the backend: LSH's layout, or local's.
static inline size_t cuda_attention_workspace_bytes(const AttnShape *s, int lsh, const CudaKnobs *k,
                                                    size_t sort_queried) {
    return lsh ? cuda_lsh_layout(s, k, sort_queried).bytes : cuda_local_work_bytes(s, k);
}
