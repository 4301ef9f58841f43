// Chunked attention: the fused reference kernels (forward, dQ, dK/dV) shared
// by LSH and local layers, their launch helpers, and local attention.
#pragma once

#include "memory.cuh"

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
// test_cuda's knob (cuda_set_test_knobs): a forced tile size, 0 = automatic.
static int g_knob_tile = 0;

static int attn_tile_fits(int T, int dh) {
    size_t need = dkv_smem(T, dh);
    if (fwd_smem(T, dh) > need) need = fwd_smem(T, dh);
    if (dq_smem(T, dh) > need) need = dq_smem(T, dh);
    return need <= (size_t)smem_optin();
}

static int attn_tile(int dh) {
    if (g_knob_tile) {
        if (!attn_tile_fits(g_knob_tile, dh)) cuda_fatal("report it", "forced attention tile does not fit shared memory");
        return g_knob_tile;
    }
    for (int T = 32; T >= 8; T /= 2)
        if (attn_tile_fits(T, dh)) return T;
    cuda_fatal("use a smaller d_head", "d_head too large for the attention kernels' shared memory");
    return 0;
}

// Raise a kernel's dynamic shared-memory limit once to the most it has been
// launched with (cudaFuncSetAttribute is a driver call: not on every launch).
// One device per process (cuda_select_device), so one table.
template <typename K>
static void set_smem(K kernel, size_t bytes) {
    static struct {
        const void *kernel;
        size_t bytes;
    } raised[16];
    static int n_raised = 0;
    const void *key = (const void *)kernel;
    int i = 0;
    while (i < n_raised && raised[i].kernel != key) i++;
    if (i < n_raised && raised[i].bytes >= bytes) return;
    cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    if (i == n_raised) {
        if (n_raised == (int)(sizeof raised / sizeof raised[0])) return;  // full: raise on every call, still correct
        raised[n_raised++].kernel = key;
    }
    raised[i].bytes = bytes;
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
