// LSH attention: rotations and hashing (attn_impl=fast: batched SGEMM of the
// projections; reference: one thread per position), the bucket sort (CUB), the grouped
// workspace, the round combination and the un-sort.
#pragma once

#include <cub/device/device_radix_sort.cuh>

#include "attention_gemm.cuh"
#include "lsh_rules.h"  // the rotations, the bucket rule, KEY_NORM_EPS: shared with the CPU

// --- LSH pieces ----------------------------------------------------------------

// Rotations of every local head [H][dh * R * W], element e of head h drawn
// exactly as cpu_lsh_hash (lsh_rotation_element, core/lsh_rules.h).
__global__ void lsh_rotations_kernel(float *rot, int H, size_t per_head, int head_offset, uint64_t seed,
                                     uint32_t step, uint32_t layer) {
    GRID_STRIDE(i, (size_t)H * per_head) {
        uint64_t head = (uint64_t)(head_offset + (int)(i / per_head));
        rot[i] = lsh_rotation_element(seed, head, (uint64_t)(i % per_head), step, layer);
    }
}

// One thread per position: for each round and factor, the bucket of the
// projections p = x Rot_r on that factor's columns by the shared rule
// (lsh_argmax_*, lsh_bucket_factored's numbering, core/lsh_rules.h).
#define HASH_POS 64
__global__ void lsh_hash_kernel(uint16_t *buckets, const float *qk, const float *rot, int L, int H, int dh, int R,
                                int W, int nb, LshFactors factors, int bf16, int pair0) {
    extern __shared__ float qs[];  // [HASH_POS][dh + 1]
    const int ld = dh + 1, pair = pair0 + (int)blockIdx.y, b = pair / H, h = pair % H, i0 = blockIdx.x * HASH_POS;
    const int HD = H * dh, width = R * W;
    const LshFactors fs = lsh_factors(nb, factors);
    for (int e = threadIdx.x; e < HASH_POS * dh; e += blockDim.x) {
        int i = e / dh, d = e % dh;
        qs[i * ld + d] = i0 + i < L ? attn_input(qk[((size_t)b * L + i0 + i) * HD + (size_t)h * dh + d], bf16) : 0.f;
    }
    __syncthreads();
    const int i = threadIdx.x;
    if (i0 + i >= L) return;
    const float *x = qs + i * ld, *rt = rot + (size_t)h * dh * width;
    for (int r = 0; r < R; r++) {
        int bucket = 0, stride = 1, c0 = r * W;
        for (int k = 0; k < fs.n; c0 += fs.f[k] / 2, stride *= fs.f[k], k++) {
            const int half = fs.f[k] / 2;
            LshArgmax best = lsh_argmax_start(0.f);
            for (int j = 0; j < half; j++) {
                const float *col = rt + c0 + j;
                float p = 0.f;
                for (int d = 0; d < dh; d++) p += x[d] * col[(size_t)d * width];
                if (j == 0) best = lsh_argmax_start(p);
                else lsh_argmax_add(&best, p, j);
            }
            bucket += stride * lsh_argmax_bucket(&best, half);
        }
        buckets[((size_t)pair * R + r) * L + i0 + i] = (uint16_t)bucket;
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


// LSH workspace: (b, h) pairs are processed in groups of G so that the
// scratch stays bounded (DESIGN.md: attention processed in bounded groups);
// its layout is core/cuda_sizes.h's cuda_lsh_layout, which the planner uses.
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
    void *hash_slice;           // hash, GEMM path: one slice of positions (after rot)
    void *slice;                // tensor-core attention's slice of blocks
    size_t bytes;
} LshWork;

static int bits_for(size_t count) {  // bits to represent 0 .. count-1
    int b = 1;
    while (b < 32 && ((size_t)1 << b) < count) b++;
    return b;
}

// The hash on the fast path (attn_impl=fast): the projections of a slice of
// Ls positions of every head as one strided batched SGEMM, proj_h [Ls, R*W]
// = X_h [Ls, dh] Rot_h [dh, R*W] (W = lsh_rotation_width), then the bucket
// rule per (head, position, round), one warp per row. fp32 data and accumulation, no TF32: a bucket is an
// argmax, and TF32's rounding of the operands would move projections that
// tie to 2^-11 (the CPU comparison allows ties to float rounding only).
// The slice's positions and bytes: cuda_hash_slice_positions, cuda_hash_slice_bytes.

// X [H, Ls, dh]: positions [i0, i0 + Ls) of batch element b, as attention reads them.
__global__ void hash_gather_kernel(float *X, const float *qk, int b, int i0, int Ls, int L, int H, int dh, int bf16) {
    GRID_STRIDE(e, (size_t)H * Ls * dh) {
        const int d = (int)(e % dh), i = (int)((e / dh) % Ls), h = (int)(e / ((size_t)dh * Ls));
        X[e] = attn_input(qk[((size_t)b * L + i0 + i) * H * dh + (size_t)h * dh + d], bf16);
    }
}
// One lane's part of a factor's argmax: the largest and smallest projection
// it saw and their first indices (j = -1: none yet).
struct WarpArgmax {
    float hi, lo;
    int j_hi, j_lo;
};
// a := the better of a and b: the larger max (smaller min), the smaller index
// on a tie, so the warp finds the rule's first maximum (and first minimum).
__device__ static inline void warp_argmax_merge(WarpArgmax &a, float hi, int j_hi, float lo, int j_lo) {
    if (j_hi >= 0 && (a.j_hi < 0 || hi > a.hi || (hi == a.hi && j_hi < a.j_hi))) a.hi = hi, a.j_hi = j_hi;
    if (j_lo >= 0 && (a.j_lo < 0 || lo < a.lo || (lo == a.lo && j_lo < a.j_lo))) a.lo = lo, a.j_lo = j_lo;
}

// buckets [B, H, R, L] of the slice from proj [H, Ls, R*W]: one warp per
// (head, position, round) row. For each factor the lanes scan its f/2
// columns (coalesced), then a shuffle reduction gives lsh_bucket_of's
// answer for finite projections: the first index of the maximum of
// [p ; -p] (a NaN projection, which the streaming rule never lets win
// unless it is column 0, may pick a different bucket here).
__global__ void hash_buckets_kernel(uint16_t *buckets, const float *proj, int b, int i0, int Ls, int L, int H, int R,
                                    int W, int nb, LshFactors factors) {
    const size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (row >= (size_t)H * Ls * R) return;  // whole warps: row is the same on every lane
    const int r = (int)(row % R), i = (int)((row / R) % Ls), h = (int)(row / ((size_t)R * Ls));
    const float *p = proj + ((size_t)h * Ls + i) * R * W + (size_t)r * W;
    const LshFactors fs = lsh_factors(nb, factors);
    int bucket = 0, stride = 1;
    for (int k = 0; k < fs.n; p += fs.f[k] / 2, stride *= fs.f[k], k++) {
        const int half = fs.f[k] / 2;
        WarpArgmax a = {0.f, 0.f, -1, -1};
        for (int j = lane; j < half; j += 32) warp_argmax_merge(a, p[j], j, p[j], j);
        for (int off = 16; off > 0; off /= 2) {
            float hi = __shfl_down_sync(0xffffffffu, a.hi, off), lo = __shfl_down_sync(0xffffffffu, a.lo, off);
            int j_hi = __shfl_down_sync(0xffffffffu, a.j_hi, off), j_lo = __shfl_down_sync(0xffffffffu, a.j_lo, off);
            warp_argmax_merge(a, hi, j_hi, lo, j_lo);
        }
        bucket += stride * (-a.lo > a.hi ? half + a.j_lo : a.j_hi);  // lsh_argmax_bucket's choice (lane 0)
    }
    if (lane == 0) buckets[(((size_t)b * H + h) * R + r) * L + i0 + i] = (uint16_t)bucket;
}

static void hash_by_gemm(uint16_t *buckets, const float *qk, const float *rot, const AttnShape *s, void *slice) {
    const int L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes, nb = s->n_buckets;
    const int Wr = lsh_rotation_width(nb, s->bucket_factors), W = R * Wr;
    const int Ls = cuda_hash_slice_positions(s);
    float *X = (float *)slice, *proj = (float *)((char *)slice + cuda_hash_x_bytes(s, Ls));
    const float one = 1.f, zero = 0.f;
    for (int b = 0; b < s->batch; b++)
        for (int i0 = 0; i0 < L; i0 += Ls) {
            const int ls = L - i0 < Ls ? L - i0 : Ls;
            hash_gather_kernel<<<blocks_for((size_t)H * ls * dh), THREADS>>>(X, qk, b, i0, ls, L, H, dh, s->bf16);
            launch_check();
            cublas_check(cublasSgemmStridedBatched(cublas(), CUBLAS_OP_N, CUBLAS_OP_N, W, ls, dh, &one, rot, W,
                                                   (long long)dh * W, X, dh, (long long)ls * dh, &zero, proj, W,
                                                   (long long)ls * W, H));
            hash_buckets_kernel<<<warp_blocks((size_t)H * ls * R), THREADS>>>(buckets, proj, b, i0, ls, L, H, R, Wr,
                                                                              nb, s->bucket_factors);
            launch_check();
        }
}

// The workspace at base (NULL: sizes only), carved by cuda_lsh_layout with
// CUB's storage for a full group's sort.
static LshWork lsh_work(const AttnShape *s, void *base) {
    LshWork w;
    memset(&w, 0, sizeof w);
    const size_t n = attn_items(s), nb = s->n_buckets > 0 ? (size_t)s->n_buckets : 1;
    const size_t G = cuda_lsh_pairs_per_group(s, &g_knobs);
    if (G * n > (size_t)INT_MAX / 2 || G * (size_t)s->n_hashes * nb > ((size_t)1 << 31))
        cuda_fatal("reduce seq_len or n_hashes", "LSH attention: too many items per (batch, head) for the sort");
    w.G = (int)G;
    w.end_bit = bits_for(G * (size_t)s->n_hashes * nb);
    size_t queried = 0;
    cuda_check(cub::DeviceRadixSort::SortPairs(NULL, queried, (const uint32_t *)NULL, (uint32_t *)NULL,
                                               (const int *)NULL, (int *)NULL, (int)(G * n), 0, w.end_bit));
    const CudaLshLayout l = cuda_lsh_layout(s, &g_knobs, queried);
    if (l.G != G) cuda_fatal("report it", "LSH workspace: group size differs from its layout");
    w.sort_bytes = l.sort_bytes;
    w.bytes = l.bytes;
    char *p = (char *)base;
    if (!p) return w;
    w.keys_in = (uint32_t *)(p + l.keys_in);
    w.keys_out = (uint32_t *)(p + l.keys_out);
    w.vals_in = (int *)(p + l.vals_in);
    w.pos = (int *)(p + l.pos);
    w.inv = (int *)(p + l.inv);
    w.sort_tmp = p + l.sort_tmp;
    w.rn = (float *)(p + l.rn);
    w.so = (float *)(p + l.so);
    w.wt = (float *)(p + l.wt);
    w.Dm = (float *)(p + l.Dm);
    w.dsq = (float *)(p + l.dsq);
    w.dsk = (float *)(p + l.dsk);
    w.dsv = (float *)(p + l.dsv);
    w.rot = (float *)(p + l.rot);
    w.hash_slice = p + l.hash_slice;
    w.slice = p + l.slice;
    return w;
}

// LSH: cuda_lsh_layout with CUB's answer; local: cuda_local_work_bytes.
static size_t cu_attention_workspace_bytes(const AttnShape *s, int lsh) {
    return lsh ? lsh_work(s, NULL).bytes : cuda_local_work_bytes(s, &g_knobs);
}

static void cu_lsh_hash(uint16_t *buckets, const real *qk, const AttnShape *s, uint64_t seed, uint32_t step,
                        uint32_t layer, void *work) {
    const int B = s->batch, L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes, nb = s->n_buckets;
    if (nb <= 0 || B <= 0 || L <= 0) return;
    if (nb > LSH_MAX_BUCKETS) cuda_fatal("use at most 65536 buckets", "n_buckets does not fit uint16 bucket ids");
    const int W = lsh_rotation_width(nb, s->bucket_factors);
    LshWork w = lsh_work(s, work);
    const size_t per_head = (size_t)dh * R * W;
    lsh_rotations_kernel<<<blocks_for((size_t)H * per_head), THREADS>>>(w.rot, H, per_head, s->head_offset, seed, step,
                                                                        layer);
    launch_check();
    if (!s->reference) {
        hash_by_gemm(buckets, qk, w.rot, s, w.hash_slice);
        return;
    }
    size_t bytes = (size_t)HASH_POS * (dh + 1) * sizeof(float);
    if (bytes > (size_t)smem_optin()) cuda_fatal("use a smaller d_head", "d_head too large for the hash kernel");
    set_smem(lsh_hash_kernel, bytes);
    // gridDim.y is at most 65535: pairs in launches of that many.
    for (int p0 = 0; p0 < B * H; p0 += 65535) {
        dim3 grid((unsigned)((L + HASH_POS - 1) / HASH_POS), (unsigned)(B * H - p0 < 65535 ? B * H - p0 : 65535));
        lsh_hash_kernel<<<grid, HASH_POS, bytes>>>(buckets, qk, w.rot, L, H, dh, R, W, nb, s->bucket_factors, s->bf16,
                                                   p0);
        launch_check();
    }
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
    const int fast = gm_enabled(s, 1);
    Gm gm = gm_base(s, 1);
    gm.q = qk, gm.v = v, gm.pos = w.pos, gm.rn = w.rn;
    const int slice = fast ? gm_slice_blocks(s, 1, (size_t)w.G * gm.nc) : 0;
    for (int p0 = 0; p0 < pairs; p0 += w.G) {
        int g = pairs - p0 < w.G ? pairs - p0 : w.G;
        lsh_prepare_group(w, buckets, qk, s, p0, g);
        a.pair0 = p0;
        if (fast) {
            gm.pair0 = p0;
            gm_forward(gm, s, w.slice, slice, g * gm.nc, w.so, saved, a.sstride);
        } else {
            launch_forward<true>(a, g);
        }
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
    const int fast = gm_enabled(s, 1);
    Gm gm = gm_base(s, 1);
    gm.q = qk, gm.v = v, gm.pos = w.pos, gm.rn = w.rn;
    const int slice = fast ? gm_slice_blocks(s, 1, (size_t)w.G * gm.nc) : 0;
    for (int p0 = 0; p0 < pairs; p0 += w.G) {
        int g = pairs - p0 < w.G ? pairs - p0 : w.G;
        lsh_prepare_group(w, buckets, qk, s, p0, g);
        a.pair0 = p0;
        lsh_prep_kernel<<<warp_blocks((size_t)g * L), THREADS>>>(w.wt, w.Dm, saved, w.inv, dout, out, p0, g, L,
                                                                 s->n_heads, s->d_head, s->n_hashes);
        launch_check();
        if (fast) {
            const size_t item_grads = (size_t)g * gm.n * s->d_head * sizeof(float);
            gm.pair0 = p0;
            cuda_check(cudaMemsetAsync(w.dsk, 0, item_grads));  // the key halves are added
            cuda_check(cudaMemsetAsync(w.dsv, 0, item_grads));
            // lse of the group's pairs: saved [pairs, n] from pair p0 on.
            gm_backward(gm, s, w.slice, slice, g * gm.nc, w.dsq, w.dsk, w.dsv, dout, w.wt,
                        saved + (size_t)p0 * gm.n, (size_t)gm.n, 0, w.Dm, (size_t)gm.n);
            gm_key_norm_backward_kernel<<<warp_blocks((size_t)g * gm.n), THREADS>>>(w.dsk, gm, g);
            launch_check();
        } else {
            launch_backward<true>(a, g);
        }
        lsh_unsort_kernel<<<blocks_for((size_t)g * L * s->d_head), THREADS>>>(dqk, dv, w.dsq, w.dsk, w.dsv, w.inv, p0,
                                                                              g, L, s->n_heads, s->d_head, s->n_hashes);
        launch_check();
    }
}

