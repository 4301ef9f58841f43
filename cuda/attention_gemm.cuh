// Chunked attention on the tensor cores (attn_impl=fast, the default): the
// same function as attention.cuh's fused reference kernels (attn_impl=
// reference), as batched cuBLAS GEMMs over gathered chunk blocks, with the
// softmax, the masks and the logsumexp in fp32.
//
// A block is one chunk of one (batch, head) pair: its m queries and its key
// window of kw items (kw = 2m: the previous chunk, cyclic for LSH, absent
// for local chunk 0, then its own; kw = m with one chunk). Blocks are
// processed in slices of nb (bounded scratch, gm_plan):
//   forward   gather Q [nb,m,dh], K, V [nb,kw,dh] (LSH: keys normalised, in
//             sorted item order; bf16: rounded) -> S = scale Q K^T (GEMM) ->
//             masked softmax per row, lse kept -> O = P V (GEMM) -> scatter
//             O and lse to the caller's layout (LSH: saved; local: out, lse)
//   backward  gather Q, K, V, dO (LSH: w_t dout), lse, Dm -> S = scale Q K^T,
//             P = exp(S - lse) (masks) -> dP = dO V^T -> dS = P (dP - Dm)
//             (0 where masked or self-masked) -> dQ = scale dS K, dK = scale
//             dS^T Q, dV = P^T dO (GEMMs) -> dQ written to its queries; each
//             key window adds its own half, then (another launch) its
//             previous half, into the keys' gradients zeroed first, so no two
//             threads of a launch touch one element and each key's gradient
//             is 0 + a + b in either order: bit-identical from run to run
//             (two-term sums are exact to commute). LSH then applies the key
//             normalisation backward in item space and lsh.cuh un-sorts.
// Operand types: fp32 data with CUBLAS_COMPUTE_32F (precision=fp32: no TF32,
// AttnShape.tf32 = 0) or CUBLAS_COMPUTE_32F_FAST_TF32 (precision=tf32); bf16
// data with CUBLAS_COMPUTE_32F (precision=bf16: Q, K, V, P, dO and dS rounded
// to bf16 for the GEMMs). Logits, softmax, lse, Dm and every GEMM output are
// fp32; the mask constants are applied to fp32 logits only (see logit() in
// attention.cuh for why they are safe).
#pragma once

#include "attention.cuh"
#include "attention_blocks.h"  // the block geometry, shared with tests/test_attention_blocks.c

// test_cuda's knobs (cuda_set_test_knobs): at most this many blocks per
// slice (so that slice boundaries fall inside pairs) and pairs per LSH
// group; 0 = automatic. The sizes of slices and groups: core/cuda_sizes.h.
static CudaKnobs g_knobs = {0, 0};

// The geometry of one call, and where a block's rows come from.
struct Gm {
    int L, H, dh, HD;
    int n, m, nc, kw;  // items per pair, chunk, chunks per pair, key window
    int lsh, bf16, tf32;
    float scale;
    int pair0;          // global pair of lp = 0
    const int *pos;     // LSH: [g, n] position of each sorted item; NULL: local (item = position)
    const float *rn;    // LSH: [g, L] key normalisers
    const float *q, *k, *v;  // [B, L, HD] (LSH: q is qk, k unused)
};

// Item of key u of block (lp, c)'s window, or -1 (block_key_item).
__device__ __forceinline__ int gm_key_item(const Gm &g, int c, int u) {
    const BlockGeom b = {g.n, g.m, g.nc, g.kw, g.lsh};
    return block_key_item(&b, c, u);
}
__device__ __forceinline__ int gm_pos(const Gm &g, int lp, int item) {
    return g.pos ? g.pos[(size_t)lp * g.n + item] : item;
}
__device__ __forceinline__ size_t gm_row(const Gm &g, int lp, int p) {
    const int pair = g.pair0 + lp;
    return ((size_t)(pair / g.H) * g.L + p) * g.HD + (size_t)(pair % g.H) * g.dh;
}

template <typename T>
__device__ __forceinline__ T gm_cast(float x);
template <>
__device__ __forceinline__ float gm_cast<float>(float x) {
    return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 gm_cast<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// Queries (and, with dout, their output gradients) of blocks [b0, b0 + nb):
// Q [nb, m, dh], qpos [nb, m]; dO = w_t dout (LSH) or dout (local).
template <typename T>
__global__ void gm_gather_queries_kernel(T *Q, T *dO, int *qpos, Gm g, int b0, int nb, const float *dout,
                                         const float *wt) {
    GRID_STRIDE(e, (size_t)nb * g.m * g.dh) {
        const int d = (int)(e % g.dh);
        const size_t r = e / g.dh;  // query row in the slice
        const int b = b0 + (int)(r / g.m), i = (int)(r % g.m), lp = b / g.nc, c = b % g.nc;
        const int item = c * g.m + i, p = gm_pos(g, lp, item);
        const size_t src = gm_row(g, lp, p) + d;
        Q[e] = gm_cast<T>(attn_input(g.q[src], g.bf16));
        if (dO) dO[e] = gm_cast<T>(wt ? wt[(size_t)lp * g.n + item] * dout[src] : dout[src]);
        if (d == 0) qpos[r] = p;
    }
}

// Key windows of blocks [b0, b0 + nb): K, V [nb, kw, dh], kpos [nb, kw]
// (INT_MAX where there is no key: after every query, so always masked).
template <typename T>
__global__ void gm_gather_keys_kernel(T *K, T *V, int *kpos, Gm g, int b0, int nb) {
    GRID_STRIDE(e, (size_t)nb * g.kw * g.dh) {
        const int d = (int)(e % g.dh);
        const size_t r = e / g.dh;
        const int b = b0 + (int)(r / g.kw), u = (int)(r % g.kw), lp = b / g.nc, c = b % g.nc;
        const int item = gm_key_item(g, c, u);
        float kv = 0.f, vv = 0.f;
        int p = INT_MAX;
        if (item >= 0) {
            p = gm_pos(g, lp, item);
            const size_t src = gm_row(g, lp, p) + d;
            kv = g.lsh ? attn_input(g.q[src], g.bf16) * g.rn[(size_t)lp * g.L + p] : attn_input(g.k[src], g.bf16);
            vv = attn_input(g.v[src], g.bf16);
        }
        K[e] = gm_cast<T>(kv);
        V[e] = gm_cast<T>(vv);
        if (d == 0) kpos[r] = p;
    }
}

// The logit's role (block_logit_role): 0 masked, 1 self-masked (LSH), 2 plain.
__device__ __forceinline__ int gm_role(const Gm &g, int qp, int kp) { return block_logit_role(g.lsh, qp, kp); }

// Forward softmax, one warp per query row of the slice: S [nb*m, kw] fp32
// scaled logits in, probabilities out (in place; P16 the bf16 copy for the
// PV GEMM when non-NULL); lse [nb*m]. As the reference: P = exp(s - lse)
// with lse rounded to float (see attn_forward_kernel's note).
__global__ void gm_softmax_kernel(float *S, __nv_bfloat16 *P16, float *lse, const int *qpos, const int *kpos, Gm g,
                                  int nb) {
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= (size_t)nb * g.m) return;
    const int qp = qpos[row];
    const int *kp = kpos + (row / g.m) * g.kw;
    float *s = S + row * g.kw;
    float mx = -INFINITY;
    for (int u = lane; u < g.kw; u += 32) {
        const int role = gm_role(g, qp, kp[u]);
        const float z = role == 0 ? -INFINITY : role == 1 ? (float)MASK_SELF : s[u];
        s[u] = z;
        mx = fmaxf(mx, z);
    }
    mx = warp_max(mx);  // finite: every query sees itself (unmasked or self-masked)
    float sum = 0.f;
    for (int u = lane; u < g.kw; u += 32) sum += s[u] == -INFINITY ? 0.f : expf(s[u] - mx);
    const float l = mx + logf(warp_sum(sum));
    for (int u = lane; u < g.kw; u += 32) {
        const float p = s[u] == -INFINITY ? 0.f : expf(s[u] - l);
        s[u] = p;
        if (P16) P16[row * g.kw + u] = __float2bfloat16_rn(p);
    }
    if (lane == 0) lse[row] = l;
}

// Backward: from S (scaled logits) and dP = dO V^T, in place: S becomes P =
// exp(s - lse), dP becomes dS = P (dP - Dm) (0 masked and self-masked); the
// bf16 copies for the GEMMs when non-NULL. lseq, Dmq: [nb*m] of the queries.
__global__ void gm_dsoftmax_kernel(float *S, float *dP, __nv_bfloat16 *P16, __nv_bfloat16 *dS16, const float *lseq,
                                   const float *Dmq, const int *qpos, const int *kpos, Gm g, int nb) {
    GRID_STRIDE(e, (size_t)nb * g.m * g.kw) {
        const size_t row = e / g.kw;
        const int u = (int)(e % g.kw);
        const int role = gm_role(g, qpos[row], kpos[(row / g.m) * g.kw + u]);
        const float z = role == 1 ? (float)MASK_SELF : S[e];
        const float p = role == 0 ? 0.f : expf(z - lseq[row]);
        const float ds = role == 2 ? p * (dP[e] - Dmq[row]) : 0.f;
        S[e] = p;
        dP[e] = ds;
        if (P16) P16[e] = __float2bfloat16_rn(p);
        if (dS16) dS16[e] = __float2bfloat16_rn(ds);
    }
}

// lse and Dm of the slice's queries, in query-row order.
__global__ void gm_gather_query_stats_kernel(float *lseq, float *Dmq, Gm g, int b0, int nb, const float *lse_src,
                                             size_t lse_stride, size_t lse_off, const float *Dm, size_t dm_stride) {
    GRID_STRIDE(r, (size_t)nb * g.m) {
        const int b = b0 + (int)(r / g.m), i = (int)(r % g.m), lp = b / g.nc, item = (b % g.nc) * g.m + i;
        lseq[r] = lse_src[(size_t)lp * lse_stride + lse_off + item];
        Dmq[r] = Dm[(size_t)lp * dm_stride + item];
    }
}

// Forward outputs of the slice: O [nb*m, dh] and lse [nb*m] to the caller's
// layout. LSH: the group's per-round outputs (pair lp at lp*sstride: [n, dh])
// and the saved lse [pairs, n]; local: out [B, L, HD] and lse_out [pairs, L].
__global__ void gm_scatter_out_kernel(float *dst, float *lse_dst, const float *O, const float *lse, Gm g, int b0,
                                      int nb, size_t sstride) {
    GRID_STRIDE(e, (size_t)nb * g.m * g.dh) {
        const int d = (int)(e % g.dh);
        const size_t r = e / g.dh;
        const int b = b0 + (int)(r / g.m), i = (int)(r % g.m), lp = b / g.nc, item = (b % g.nc) * g.m + i;
        if (g.lsh) {
            dst[(size_t)lp * sstride + (size_t)item * g.dh + d] = O[e];
            if (d == 0) lse_dst[(size_t)(g.pair0 + lp) * g.n + item] = lse[r];
        } else {
            dst[gm_row(g, lp, item) + d] = O[e];
            if (d == 0) lse_dst[(size_t)(g.pair0 + lp) * g.L + item] = lse[r];
        }
    }
}

// Where item `item` of pair lp lives in a gradient buffer: LSH item space
// [g, n, dh]; local [B, L, HD].
__device__ __forceinline__ size_t gm_grad_at(const Gm &g, int lp, int item) {
    return g.lsh ? ((size_t)lp * g.n + item) * g.dh : gm_row(g, lp, item);
}

// dQ of the slice's queries (each written once).
__global__ void gm_scatter_dq_kernel(float *dq, const float *dQ, Gm g, int b0, int nb) {
    GRID_STRIDE(e, (size_t)nb * g.m * g.dh) {
        const int d = (int)(e % g.dh);
        const size_t r = e / g.dh;
        const int b = b0 + (int)(r / g.m), i = (int)(r % g.m), lp = b / g.nc, item = (b % g.nc) * g.m + i;
        dq[gm_grad_at(g, lp, item) + d] = dQ[e];
    }
}

// Add half of each key window's gradients into the keys' buffers: the own
// chunk's half (prev = 0) or the previous chunk's (prev = 1). Within one
// launch every target element is hit once.
__global__ void gm_add_key_half_kernel(float *dk, float *dv, const float *dK, const float *dV, Gm g, int b0, int nb,
                                       int prev) {
    GRID_STRIDE(e, (size_t)nb * g.m * g.dh) {
        const int d = (int)(e % g.dh);
        const size_t r = e / g.dh;
        const int b = b0 + (int)(r / g.m), j = (int)(r % g.m), lp = b / g.nc, c = b % g.nc;
        const int u = prev ? j : g.kw - g.m + j;  // the window row
        const int item = gm_key_item(g, c, u);
        if (item < 0) continue;
        const size_t src = ((size_t)(b - b0) * g.kw + u) * g.dh + d, at = gm_grad_at(g, lp, item) + d;
        dk[at] += dK[src];
        dv[at] += dV[src];
    }
}

// LSH: the key normalisation backward in item space, one warp per item:
// k = q r, r = 1/sqrt(|q|^2 + eps'): dq_key = r dk - r^3 (q . dk) q.
__global__ void gm_key_norm_backward_kernel(float *dsk, Gm g, int n_pairs) {
    const size_t w = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (w >= (size_t)n_pairs * g.n) return;
    const int lp = (int)(w / g.n), item = (int)(w % g.n), p = gm_pos(g, lp, item);
    const float *qr = g.q + gm_row(g, lp, p);
    const float r = g.rn[(size_t)lp * g.L + p];
    float *dk = dsk + w * g.dh;
    float qdk = 0.f;
    for (int d = lane; d < g.dh; d += 32) qdk += attn_input(qr[d], g.bf16) * dk[d];
    qdk = warp_sum(qdk);
    for (int d = lane; d < g.dh; d += 32) dk[d] = r * dk[d] - r * r * r * qdk * attn_input(qr[d], g.bf16);
}

// --- host side -------------------------------------------------------------------

static Gm gm_base(const AttnShape *s, int lsh) {
    Gm g;
    memset(&g, 0, sizeof g);
    g.L = s->seq_len;
    g.H = s->n_heads;
    g.dh = s->d_head;
    g.HD = s->n_heads * s->d_head;
    g.n = lsh ? (int)attn_items(s) : s->seq_len;
    g.m = s->chunk_len;
    if (g.m <= 0 || g.n % g.m != 0)
        cuda_fatal("seq_len * n_hashes must be a multiple of the chunk length", "attention chunk does not divide the items");
    const BlockGeom b = block_geom(g.n, g.m, lsh);
    g.nc = b.nc;
    g.kw = b.kw;
    g.lsh = lsh;
    g.bf16 = s->bf16;
    g.tf32 = s->tf32;
    g.scale = lsh ? 1.0f : 1.0f / sqrtf((float)g.dh);
    return g;
}

// Blocks per slice for calls of up to `blocks` blocks (core/cuda_sizes.h).
static int gm_slice_blocks(const AttnShape *s, int lsh, size_t blocks) {
    return cuda_gm_slice_blocks(s, lsh, blocks, &g_knobs);
}
// Whether this call runs on the tensor-core path.
static int gm_enabled(const AttnShape *s, int lsh) { return cuda_gm_enabled(s, lsh); }

// The carved scratch of one slice.
struct GmSlice {
    void *Q, *dO, *K, *V;  // T
    __nv_bfloat16 *P16, *dS16;
    float *S, *dP, *O, *dK, *dV, *lse, *Dm;  // O also holds dQ
    int *qpos, *kpos;
};

static GmSlice gm_carve(const AttnShape *s, int lsh, int nb, void *base) {
    Gm g = gm_base(s, lsh);
    const size_t m = (size_t)g.m, kw = (size_t)g.kw, dh = (size_t)g.dh, t = s->bf16 ? 2 : 4, B = (size_t)nb;
    GmSlice x;
    char *p = (char *)base;
#define GM_TAKE(ptr, bytes)          \
    do {                             \
        ptr = (decltype(ptr))p;      \
        p += cuda_align256(bytes);        \
    } while (0)
    GM_TAKE(x.Q, t * B * m * dh);
    GM_TAKE(x.dO, t * B * m * dh);
    GM_TAKE(x.K, t * B * kw * dh);
    GM_TAKE(x.V, t * B * kw * dh);
    x.P16 = x.dS16 = NULL;
    if (s->bf16) {
        GM_TAKE(x.P16, 2 * B * m * kw);
        GM_TAKE(x.dS16, 2 * B * m * kw);
    }
    GM_TAKE(x.S, 4 * B * m * kw);
    GM_TAKE(x.dP, 4 * B * m * kw);
    GM_TAKE(x.O, 4 * B * m * dh);
    GM_TAKE(x.dK, 4 * B * kw * dh);
    GM_TAKE(x.dV, 4 * B * kw * dh);
    GM_TAKE(x.lse, 4 * B * m);
    GM_TAKE(x.Dm, 4 * B * m);
    GM_TAKE(x.qpos, 4 * B * m);
    GM_TAKE(x.kpos, 4 * B * kw);
#undef GM_TAKE
    if ((size_t)(p - (char *)base) > cuda_gm_slice_bytes(s, lsh, nb)) cuda_fatal("report it", "attention slice carve overflow");
    return x;
}

// One strided batched GEMM of the slice (row-major thinking as cu_matmul:
// C[M,N] = op(A) op(B), each batch item `stride` elements further), fp32 C.
struct GmOperand {
    const void *p;
    int ld;
    long long stride;
};
static void gm_gemm(const Gm &g, int trans_a, int trans_b, int M, int N, int K, float alpha, GmOperand A,
                    GmOperand B, float *C, int ldc, long long strideC, int batch) {
    const cudaDataType_t t = g.bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = g.tf32 && !g.bf16 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float beta = 0.f;
    cublas_check(cublasGemmStridedBatchedEx(cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B.p, t, B.ld,
                                            B.stride, A.p, t, A.ld, A.stride, &beta, C, CUDA_R_32F, ldc, strideC,
                                            batch, ct, CUBLAS_GEMM_DEFAULT));
}

// S [nb, m, kw] = scale Q K^T for the slice's blocks.
static void gm_logits(const Gm &g, const GmSlice &x, int nb) {
    const long long mdh = (long long)g.m * g.dh, kdh = (long long)g.kw * g.dh, mkw = (long long)g.m * g.kw;
    gm_gemm(g, 0, 1, g.m, g.kw, g.dh, g.scale, GmOperand{x.Q, g.dh, mdh}, GmOperand{x.K, g.dh, kdh}, x.S, g.kw, mkw,
            nb);
}

template <typename T>
static void gm_gather(const Gm &g, const GmSlice &x, int b0, int nb, const float *dout, const float *wt) {
    gm_gather_queries_kernel<T><<<blocks_for((size_t)nb * g.m * g.dh), THREADS>>>(
        (T *)x.Q, dout ? (T *)x.dO : (T *)NULL, x.qpos, g, b0, nb, dout, wt);
    launch_check();
    gm_gather_keys_kernel<T><<<blocks_for((size_t)nb * g.kw * g.dh), THREADS>>>((T *)x.K, (T *)x.V, x.kpos, g, b0,
                                                                                nb);
    launch_check();
}

// Forward over blocks [0, n_blocks) of the call: outputs to dst (LSH: the
// group's per-round outputs, sstride apart; local: out) and lse to lse_dst.
static void gm_forward(const Gm &g, const AttnShape *s, void *scratch, int slice, int n_blocks, float *dst,
                       float *lse_dst, size_t sstride) {
    GmSlice x = gm_carve(s, g.lsh, slice, scratch);
    const long long mdh = (long long)g.m * g.dh, kdh = (long long)g.kw * g.dh, mkw = (long long)g.m * g.kw;
    for (int b0 = 0; b0 < n_blocks; b0 += slice) {
        const int nb = n_blocks - b0 < slice ? n_blocks - b0 : slice;
        if (g.bf16) gm_gather<__nv_bfloat16>(g, x, b0, nb, NULL, NULL);
        else gm_gather<float>(g, x, b0, nb, NULL, NULL);
        gm_logits(g, x, nb);
        gm_softmax_kernel<<<warp_blocks((size_t)nb * g.m), THREADS>>>(x.S, x.P16, x.lse, x.qpos, x.kpos, g, nb);
        launch_check();
        const void *P = g.bf16 ? (const void *)x.P16 : (const void *)x.S;
        gm_gemm(g, 0, 0, g.m, g.dh, g.kw, 1.f, GmOperand{P, g.kw, mkw}, GmOperand{x.V, g.dh, kdh}, x.O, g.dh, mdh, nb);
        gm_scatter_out_kernel<<<blocks_for((size_t)nb * g.m * g.dh), THREADS>>>(dst, lse_dst, x.O, x.lse, g, b0, nb,
                                                                               sstride);
        launch_check();
    }
}

// Backward over blocks [0, n_blocks): dq, dk, dv in gm_grad_at's layout; dk
// and dv must be zero on entry (the key halves are added). lse_src at
// lp*lse_stride + lse_off + item; Dm at lp*dm_stride + item; wt (LSH) [g, n].
static void gm_backward(const Gm &g, const AttnShape *s, void *scratch, int slice, int n_blocks, float *dq,
                        float *dk, float *dv, const float *dout, const float *wt, const float *lse_src,
                        size_t lse_stride, size_t lse_off, const float *Dm, size_t dm_stride) {
    GmSlice x = gm_carve(s, g.lsh, slice, scratch);
    const long long mdh = (long long)g.m * g.dh, kdh = (long long)g.kw * g.dh, mkw = (long long)g.m * g.kw;
    for (int b0 = 0; b0 < n_blocks; b0 += slice) {
        const int nb = n_blocks - b0 < slice ? n_blocks - b0 : slice;
        if (g.bf16) gm_gather<__nv_bfloat16>(g, x, b0, nb, dout, wt);
        else gm_gather<float>(g, x, b0, nb, dout, wt);
        gm_gather_query_stats_kernel<<<blocks_for((size_t)nb * g.m), THREADS>>>(x.lse, x.Dm, g, b0, nb, lse_src,
                                                                               lse_stride, lse_off, Dm, dm_stride);
        launch_check();
        gm_logits(g, x, nb);
        // dP = dO V^T
        gm_gemm(g, 0, 1, g.m, g.kw, g.dh, 1.f, GmOperand{x.dO, g.dh, mdh}, GmOperand{x.V, g.dh, kdh}, x.dP, g.kw, mkw,
                nb);
        gm_dsoftmax_kernel<<<blocks_for((size_t)nb * g.m * g.kw), THREADS>>>(x.S, x.dP, x.P16, x.dS16, x.lse, x.Dm,
                                                                             x.qpos, x.kpos, g, nb);
        launch_check();
        const void *P = g.bf16 ? (const void *)x.P16 : (const void *)x.S;
        const void *dS = g.bf16 ? (const void *)x.dS16 : (const void *)x.dP;
        // dQ = scale dS K  [m, dh]
        gm_gemm(g, 0, 0, g.m, g.dh, g.kw, g.scale, GmOperand{dS, g.kw, mkw}, GmOperand{x.K, g.dh, kdh}, x.O, g.dh, mdh,
                nb);
        // dK = scale dS^T Q  [kw, dh];  dV = P^T dO  [kw, dh]
        gm_gemm(g, 1, 0, g.kw, g.dh, g.m, g.scale, GmOperand{dS, g.kw, mkw}, GmOperand{x.Q, g.dh, mdh}, x.dK, g.dh,
                kdh, nb);
        gm_gemm(g, 1, 0, g.kw, g.dh, g.m, 1.f, GmOperand{P, g.kw, mkw}, GmOperand{x.dO, g.dh, mdh}, x.dV, g.dh, kdh,
                nb);
        gm_scatter_dq_kernel<<<blocks_for((size_t)nb * g.m * g.dh), THREADS>>>(dq, x.O, g, b0, nb);
        launch_check();
        gm_add_key_half_kernel<<<blocks_for((size_t)nb * g.m * g.dh), THREADS>>>(dk, dv, x.dK, x.dV, g, b0, nb, 0);
        launch_check();
        if (g.kw == 2 * g.m) {
            gm_add_key_half_kernel<<<blocks_for((size_t)nb * g.m * g.dh), THREADS>>>(dk, dv, x.dK, x.dV, g, b0, nb, 1);
            launch_check();
        }
    }
}

// --- local attention: the tensor-core path or the reference kernels ----------------

// The tensor-core path's view of a local call: all (batch, head) pairs' chunks
// as blocks, sliced; its scratch starts past the backward's D buffer (the
// layout of local_work_bytes).
struct LocalGm {
    Gm g;
    int blocks, slice;
    void *scratch;
};
static LocalGm local_gm(const AttnShape *s, const real *q, const real *k, const real *v, void *work) {
    LocalGm l;
    const size_t pairs = (size_t)s->batch * s->n_heads;
    l.g = gm_base(s, 0);
    l.g.q = q, l.g.k = k, l.g.v = v;
    const size_t blocks = pairs * l.g.nc;
    if (blocks > (size_t)INT_MAX) cuda_fatal("reduce batch or n_heads", "too many local attention blocks");
    l.blocks = (int)blocks;
    l.slice = gm_slice_blocks(s, 0, blocks);
    l.scratch = (char *)work + cuda_local_d_bytes(s);  // after D (cuda_local_work_bytes)
    return l;
}

static void cu_local_attention_forward(real *out, real *lse, const real *q, const real *k, const real *v,
                                       const AttnShape *s, void *work) {
    const int pairs = s->batch * s->n_heads;
    if (pairs <= 0 || s->seq_len <= 0) return;
    if (gm_enabled(s, 0)) {
        LocalGm l = local_gm(s, q, k, v, work);
        gm_forward(l.g, s, l.scratch, l.slice, l.blocks, out, lse, 0);
        return;
    }
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
    if (gm_enabled(s, 0)) {
        LocalGm l = local_gm(s, q, k, v, work);
        const size_t nx = (size_t)s->batch * L * l.g.HD;
        cuda_check(cudaMemsetAsync(dk, 0, nx * sizeof(float)));  // the key halves are added
        cuda_check(cudaMemsetAsync(dv, 0, nx * sizeof(float)));
        gm_backward(l.g, s, l.scratch, l.slice, l.blocks, dq, dk, dv, dout, NULL, lse, (size_t)L, 0, Dm, (size_t)L);
        return;
    }
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
