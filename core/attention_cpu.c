// CPU reference of LSH attention and local chunked attention (REFORMER.md).
//
// Both are one kernel: a sequence of n items cut into chunks of m, each chunk's
// queries attending to the keys of their own chunk and of the previous chunk.
// LSH runs it on the R*L items sorted by (round, bucket, position), with
// shared-QK keys, the self mask and a cyclic look-back; local attention runs
// it on positions in order. A chunk's logits live in one [m, 2m] tile, so
// memory is bounded by the chunk, never L x L (unless m = L: full attention).
//
// Work is split over (batch, head) pairs; each thread has its own scratch, and
// each pair writes disjoint outputs, so results do not depend on threads.
#include <cblas.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "attention_cpu.h"
#include "backend.h"
#include "rng.h"
#include "util.h"

#ifdef REFORMER_F64
#define cblas_gemm cblas_dgemm
#else
#define cblas_gemm cblas_sgemm
#endif

// Epsilon of trax/HF key normalisation x / sqrt(mean(x^2) + 1e-6) / sqrt(dh).
#define KEY_NORM_EPS 1e-6

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// --- per-thread scratch -----------------------------------------------------

typedef struct {
    int *perm, *pos, *inv, *counts;      // [n], [n], [n], [nb]
    real *sq, *sk, *sv, *so, *slse;      // [n, dh] x4, [n]
    real *dso, *dslse, *dsq, *dsk, *dsv; // [n, dh], [n], [n, dh] x3
    real *tile_p, *tile_dp;              // [m, nk]: one chunk's logits and their gradient
    int *kpos;                           // [nk]: positions of the chunk's keys
} Scratch;

static int n_chunks(const AttnShape *s) { return (int)(attn_items(s) / (size_t)s->chunk_len); }
static int n_keys(const AttnShape *s) { return n_chunks(s) > 1 ? 2 * s->chunk_len : s->chunk_len; }

// Lay out one thread's scratch at base (or only measure it when base is NULL).
static size_t scratch_carve(Scratch *sc, char *base, const AttnShape *s) {
    size_t n = attn_items(s), dh = (size_t)s->d_head, m = (size_t)s->chunk_len, nk = (size_t)n_keys(s);
    size_t off = 0;
#define CARVE(field, type, count)                                              \
    do {                                                                       \
        if (base) sc->field = (type *)(base + off);                            \
        off += (((size_t)(count) * sizeof(type)) + 63) & ~(size_t)63;          \
    } while (0)
    CARVE(perm, int, n);
    CARVE(pos, int, n);
    CARVE(inv, int, n);
    CARVE(counts, int, s->n_buckets > 0 ? s->n_buckets : 1);
    CARVE(sq, real, n * dh);
    CARVE(sk, real, n * dh);
    CARVE(sv, real, n * dh);
    CARVE(so, real, n * dh);
    CARVE(slse, real, n);
    CARVE(dso, real, n * dh);
    CARVE(dslse, real, n);
    CARVE(dsq, real, n * dh);
    CARVE(dsk, real, n * dh);
    CARVE(dsv, real, n * dh);
    CARVE(tile_p, real, m * nk);
    CARVE(tile_dp, real, m * nk);
    CARVE(kpos, int, nk);
#undef CARVE
    return off;
}

// Positions projected per hashing GEMM.
#define HASH_ROWS 256

// Per-thread scratch of the hash: rotations [dh, R, nb/2] and a block of
// projections [HASH_ROWS, R * nb/2].
static size_t hash_scratch_elems(const AttnShape *s) {
    size_t width = (size_t)s->n_hashes * (s->n_buckets / 2);
    return (size_t)s->d_head * width + (size_t)HASH_ROWS * width;
}

size_t cpu_attention_workspace_bytes(const AttnShape *s, int lsh) {
    size_t per = scratch_carve(NULL, NULL, s);
    if (lsh) per = MAX(per, hash_scratch_elems(s) * sizeof(real));
    return (size_t)max_threads() * per;
}

static Scratch thread_scratch(void *work, const AttnShape *s) {
    Scratch sc;
    size_t per = scratch_carve(NULL, NULL, s);
    scratch_carve(&sc, (char *)work + (size_t)thread_id() * per, s);
    return sc;
}

// --- the chunked kernel -----------------------------------------------------
//
// Chunk c's keys are two blocks of m items: the previous chunk (chunk 0's is
// the last chunk when cyclic; none when there is a single chunk or chunk 0
// is not cyclic) and its own. Both are contiguous rows of the (sorted) item
// arrays, so every product is a small GEMM on them directly: Z = Q K^T per
// block into the [m, nk] tile, O = P V, and in the backward the gradients of
// Q, K and V accumulate straight into their rows (beta = 1).

// C[M,N] = alpha op(A) op(B) + beta C with leading dimensions (row-major).
static void tile_gemm(real *C, int ldc, const real *A, int lda, const real *B, int ldb, int M, int N, int K,
                      int ta, int tb, real alpha, real beta) {
    cblas_gemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
               lda, B, ldb, beta, C, ldc);
}

typedef struct {
    int n_blocks;   // 1 or 2
    int start[2];   // first item of each key block; block b fills tile columns b*m ..
} ChunkKeys;

static ChunkKeys chunk_keys(Scratch *sc, const int *pos, int c, int nc, int m, int cyclic) {
    ChunkKeys k = {0, {0, 0}};
    if (nc > 1 && (cyclic || c > 0)) k.start[k.n_blocks++] = ((c + nc - 1) % nc) * m;
    k.start[k.n_blocks++] = c * m;
    for (int b = 0; b < k.n_blocks; b++)
        for (int t = 0; t < m; t++) sc->kpos[b * m + t] = pos ? pos[k.start[b] + t] : k.start[b] + t;
    return k;
}

// Z[m, nk] = scale * Q_c K^T over the key blocks.
static void chunk_logits(real *Z, const ChunkKeys *k, const real *q, const real *keys, int m, int dh, real scale) {
    int nk = k->n_blocks * m;
    for (int b = 0; b < k->n_blocks; b++)
        tile_gemm(Z + (size_t)b * m, nk, q, dh, keys + (size_t)k->start[b] * dh, dh, m, m, dh, 0, 1, scale, 0);
}

// Replace masked logits (REFORMER.md step 6); returns the row maximum.
static real mask_row(real *z, const int *kpos, int nk, int pq, int self_mask) {
    real mx = -INFINITY;
    for (int j = 0; j < nk; j++) {
        if (kpos[j] > pq) z[j] = MASK_CAUSAL;
        else if (self_mask && kpos[j] == pq) z[j] = MASK_SELF;
        if (z[j] > mx) mx = z[j];
    }
    return mx;
}

// Forward over n items: so [n, dh], slse [n]. pos == NULL means item == position.
static void chunked_forward(Scratch *sc, real *so, real *slse, const real *sq, const real *sk, const real *sv,
                            const int *pos, int n, int m, int dh, real scale, int self_mask, int cyclic) {
    int nc = n / m;
    for (int c = 0; c < nc; c++) {
        ChunkKeys k = chunk_keys(sc, pos, c, nc, m, cyclic);
        int nk = k.n_blocks * m;
        real *Z = sc->tile_p;
        chunk_logits(Z, &k, sq + (size_t)c * m * dh, sk, m, dh, scale);
        for (int i = 0; i < m; i++) {
            int qi = c * m + i, pq = pos ? pos[qi] : qi;
            real *z = Z + (size_t)i * nk;
            real mx = mask_row(z, sc->kpos, nk, pq, self_mask);
            // Causally masked keys contribute exp(-1e9 - lse) = 0 exactly (every
            // row has its own position unmasked or self-masked at -1e5), so
            // their exp is skipped: same bits, and no slow underflow path.
            real sum = 0;
            for (int j = 0; j < nk; j++)
                if (sc->kpos[j] <= pq) sum += R_EXP(z[j] - mx);
            real lse = mx + R_LOG(sum);
            for (int j = 0; j < nk; j++) z[j] = sc->kpos[j] <= pq ? R_EXP(z[j] - lse) : 0;
            slse[qi] = lse;
        }
        for (int b = 0; b < k.n_blocks; b++)
            tile_gemm(so + (size_t)c * m * dh, dh, Z + (size_t)b * m, nk, sv + (size_t)k.start[b] * dh, dh, m, dh, m,
                      0, 0, 1, b ? 1 : 0);
    }
}

// Backward: accumulates (+=) into dsq, dsk, dsv. dslse may be NULL (no
// gradient into the logsumexp).
static void chunked_backward(Scratch *sc, real *dsq, real *dsk, real *dsv, const real *dso, const real *dslse,
                             const real *sq, const real *sk, const real *sv, const real *so, const real *slse,
                             const int *pos, int n, int m, int dh, real scale, int self_mask, int cyclic) {
    int nc = n / m;
    for (int c = 0; c < nc; c++) {
        ChunkKeys k = chunk_keys(sc, pos, c, nc, m, cyclic);
        int nk = k.n_blocks * m;
        const real *q = sq + (size_t)c * m * dh, *dout = dso + (size_t)c * m * dh;
        real *P = sc->tile_p, *dZ = sc->tile_dp;
        chunk_logits(P, &k, q, sk, m, dh, scale);
        chunk_logits(dZ, &k, dout, sv, m, dh, 1);  // dP = dO V^T
        for (int i = 0; i < m; i++) {
            int qi = c * m + i, pq = pos ? pos[qi] : qi;
            real *p = P + (size_t)i * nk, *dz = dZ + (size_t)i * nk;
            const real *o = so + (size_t)qi * dh, *g = dso + (size_t)qi * dh;
            mask_row(p, sc->kpos, nk, pq, self_mask);
            real lse = slse[qi], dl = dslse ? dslse[qi] : 0, D = 0;
            for (int d = 0; d < dh; d++) D += g[d] * o[d];
            for (int j = 0; j < nk; j++) {
                int masked = sc->kpos[j] > pq || (self_mask && sc->kpos[j] == pq);
                p[j] = sc->kpos[j] <= pq ? R_EXP(p[j] - lse) : 0;  // see chunked_forward
                // A replaced (masked) logit is a constant: no gradient to q, k.
                dz[j] = masked ? 0 : p[j] * (dz[j] - D + dl);
            }
        }
        for (int b = 0; b < k.n_blocks; b++) {
            size_t kb = (size_t)k.start[b] * dh;
            const real *Pb = P + (size_t)b * m, *dZb = dZ + (size_t)b * m;
            tile_gemm(dsq + (size_t)c * m * dh, dh, dZb, nk, sk + kb, dh, m, dh, m, 0, 0, scale, 1);  // dQ += dZ K
            tile_gemm(dsk + kb, dh, dZb, nk, q, dh, m, dh, m, 1, 0, scale, 1);                      // dK += dZ^T Q
            tile_gemm(dsv + kb, dh, Pb, nk, dout, dh, m, dh, m, 1, 0, 1, 1);                        // dV += P^T dO
        }
    }
}

// --- LSH --------------------------------------------------------------------

void cpu_lsh_hash(uint16_t *buckets, const real *qk, const AttnShape *s, uint64_t seed, uint32_t step,
                  uint32_t layer, void *work) {
    const int B = s->batch, L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes;
    const int half = s->n_buckets / 2, HD = H * dh, width = R * half;
    const uint32_t tag = rng_tag(RNG_HASH, layer, 0);
    const size_t per_thread = cpu_attention_workspace_bytes(s, 1) / (size_t)max_threads();
#pragma omp parallel
    {
        // Per-thread rotations [dh, R, half] and a block of projections
        // [HASH_ROWS, R * half], in the same per-thread slots the attention uses.
        real *rot = (real *)((char *)work + (size_t)thread_id() * per_thread);
        real *proj = rot + (size_t)dh * width;
        int cur_head = -1;
#pragma omp for schedule(static) collapse(2)
        for (int h = 0; h < H; h++)
            for (int b = 0; b < B; b++) {
                if (h != cur_head) {
                    uint64_t head = (uint64_t)(s->head_offset + h);  // global head index
                    for (size_t e = 0; e < (size_t)dh * width; e++)
                        rot[e] = (real)rng_normal(seed, (head << 32) | e, step, tag);
                    cur_head = h;
                }
                for (int i0 = 0; i0 < L; i0 += HASH_ROWS) {
                    int rows = MIN(HASH_ROWS, L - i0);
                    // proj = x Rot for a block of positions: one GEMM.
                    tile_gemm(proj, width, qk + ((size_t)b * L + i0) * HD + (size_t)h * dh, HD, rot, width, rows,
                              width, dh, 0, 0, 1, 0);
                    for (int i = 0; i < rows; i++)
                        for (int r = 0; r < R; r++) {
                            const real *p = proj + (size_t)i * width + (size_t)r * half;
                            // argmax over [p ; -p], first maximum wins.
                            int best = 0;
                            real bv = p[0];
                            for (int j = 1; j < half; j++)
                                if (p[j] > bv) bv = p[j], best = j;
                            for (int j = 0; j < half; j++)
                                if (-p[j] > bv) bv = -p[j], best = half + j;
                            buckets[(((size_t)b * H + h) * R + r) * L + i0 + i] = (uint16_t)best;
                        }
                }
            }
    }
}

void lsh_sort_items(int *perm, int *inv, int *counts, const uint16_t *buckets, int L, int R, int nb) {
    for (int r = 0; r < R; r++) {
        int *pr = perm + (size_t)r * L;
        if (!buckets) {
            for (int i = 0; i < L; i++) pr[i] = r * L + i;
            continue;
        }
        const uint16_t *b = buckets + (size_t)r * L;
        memset(counts, 0, (size_t)nb * sizeof(int));
        for (int i = 0; i < L; i++) counts[b[i]]++;
        for (int k = 0, acc = 0; k < nb; k++) {
            int cnt = counts[k];
            counts[k] = acc;
            acc += cnt;
        }
        for (int i = 0; i < L; i++) pr[counts[b[i]]++] = r * L + i;
    }
    for (int t = 0; t < R * L; t++) inv[perm[t]] = t;
}

static void lsh_sort(Scratch *sc, const uint16_t *bk, int L, int R, int nb) {
    lsh_sort_items(sc->perm, sc->inv, sc->counts, bk, L, R, nb);
    for (int t = 0; t < R * L; t++) sc->pos[t] = sc->perm[t] % L;
}

// Gather one head's rows in sorted order; keys are the unit-length queries.
static void lsh_gather(Scratch *sc, const real *qk, const real *v, int b, int h, const AttnShape *s) {
    const int L = s->seq_len, dh = s->d_head, HD = s->n_heads * dh, n = (int)attn_items(s);
    for (int t = 0; t < n; t++) {
        size_t src = ((size_t)b * L + sc->pos[t]) * HD + (size_t)h * dh;
        real *q = sc->sq + (size_t)t * dh, *k = sc->sk + (size_t)t * dh;
        real ss = 0;
        for (int d = 0; d < dh; d++) {
            q[d] = qk[src + d];
            ss += q[d] * q[d];
        }
        real r = 1 / R_SQRT(ss + (real)(dh * KEY_NORM_EPS));
        for (int d = 0; d < dh; d++) k[d] = q[d] * r;
        memcpy(sc->sv + (size_t)t * dh, v + src, (size_t)dh * sizeof(real));
    }
}

// Round-combination weights of position i: w[r] = softmax_r(lse_r(i)).
static void round_weights(real *w, const real *slse, const int *inv, int i, int L, int R) {
    real mx = -INFINITY, sum = 0;
    for (int r = 0; r < R; r++) mx = MAX(mx, slse[inv[r * L + i]]);
    for (int r = 0; r < R; r++) sum += (w[r] = R_EXP(slse[inv[r * L + i]] - mx));
    for (int r = 0; r < R; r++) w[r] /= sum;
}

void cpu_lsh_attention_forward(real *out, real *saved, const real *qk, const real *v,
                               const uint16_t *buckets, const AttnShape *s, void *work) {
    const int B = s->batch, L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes;
    const int n = (int)attn_items(s), HD = H * dh;
#pragma omp parallel for schedule(dynamic) collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            Scratch sc = thread_scratch(work, s);
            const uint16_t *bk = buckets ? buckets + ((size_t)b * H + h) * R * L : NULL;
            lsh_sort(&sc, bk, L, R, s->n_buckets);
            lsh_gather(&sc, qk, v, b, h, s);
            real *so = sc.so, *slse = sc.slse;
            if (saved) {
                so = saved + ((size_t)b * H + h) * (size_t)n * (dh + 1);
                slse = so + (size_t)n * dh;
            }
            chunked_forward(&sc, so, slse, sc.sq, sc.sk, sc.sv, sc.pos, n, s->chunk_len, dh, 1, 1, 1);
            real w[64];
            for (int i = 0; i < L; i++) {
                round_weights(w, slse, sc.inv, i, L, R);
                real *o = out + ((size_t)b * L + i) * HD + (size_t)h * dh;
                for (int d = 0; d < dh; d++) o[d] = 0;
                for (int r = 0; r < R; r++) {
                    const real *orow = so + (size_t)sc.inv[r * L + i] * dh;
                    for (int d = 0; d < dh; d++) o[d] += w[r] * orow[d];
                }
            }
        }
}

void cpu_lsh_attention_backward(real *dqk, real *dv, const real *dout, const real *out, const real *saved,
                                const real *qk, const real *v, const uint16_t *buckets, const AttnShape *s,
                                void *work) {
    const int B = s->batch, L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes;
    const int n = (int)attn_items(s), HD = H * dh;
#pragma omp parallel for schedule(dynamic) collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            Scratch sc = thread_scratch(work, s);
            const uint16_t *bk = buckets ? buckets + ((size_t)b * H + h) * R * L : NULL;
            lsh_sort(&sc, bk, L, R, s->n_buckets);
            lsh_gather(&sc, qk, v, b, h, s);
            const real *so = saved + ((size_t)b * H + h) * (size_t)n * (dh + 1), *slse = so + (size_t)n * dh;
            // Through the round combination o = sum_r w_r o_r, w = softmax(lse):
            // do_r = w_r do,  dlse_r = w_r (do . (o_r - o)).
            real w[64];
            for (int i = 0; i < L; i++) {
                round_weights(w, slse, sc.inv, i, L, R);
                size_t row = ((size_t)b * L + i) * HD + (size_t)h * dh;
                for (int r = 0; r < R; r++) {
                    int t = sc.inv[r * L + i];
                    real dot = 0;
                    for (int d = 0; d < dh; d++) {
                        sc.dso[(size_t)t * dh + d] = w[r] * dout[row + d];
                        dot += dout[row + d] * (so[(size_t)t * dh + d] - out[row + d]);
                    }
                    sc.dslse[t] = w[r] * dot;
                }
            }
            memset(sc.dsq, 0, (size_t)n * dh * sizeof(real));
            memset(sc.dsk, 0, (size_t)n * dh * sizeof(real));
            memset(sc.dsv, 0, (size_t)n * dh * sizeof(real));
            chunked_backward(&sc, sc.dsq, sc.dsk, sc.dsv, sc.dso, sc.dslse, sc.sq, sc.sk, sc.sv, so, slse, sc.pos,
                             n, s->chunk_len, dh, 1, 1, 1);
            // Through the key normalisation k = q / sqrt(|q|^2 + eps'):
            // dq += r dk - r^3 (q . dk) q.
            for (int t = 0; t < n; t++) {
                real *q = sc.sq + (size_t)t * dh, *dk = sc.dsk + (size_t)t * dh, *dq = sc.dsq + (size_t)t * dh;
                real ss = 0, qdk = 0;
                for (int d = 0; d < dh; d++) ss += q[d] * q[d], qdk += q[d] * dk[d];
                real r = 1 / R_SQRT(ss + (real)(dh * KEY_NORM_EPS));
                for (int d = 0; d < dh; d++) dq[d] += r * dk[d] - r * r * r * qdk * q[d];
            }
            // Un-sort: scatter-add every round's gradient to its position.
            for (int i = 0; i < L; i++) {
                size_t row = ((size_t)b * L + i) * HD + (size_t)h * dh;
                memset(dqk + row, 0, (size_t)dh * sizeof(real));
                memset(dv + row, 0, (size_t)dh * sizeof(real));
            }
            for (int t = 0; t < n; t++) {
                size_t row = ((size_t)b * L + sc.pos[t]) * HD + (size_t)h * dh;
                for (int d = 0; d < dh; d++) {
                    dqk[row + d] += sc.dsq[(size_t)t * dh + d];
                    dv[row + d] += sc.dsv[(size_t)t * dh + d];
                }
            }
        }
}

// --- local ------------------------------------------------------------------

static void gather_head(real *dst, const real *src, int b, int h, const AttnShape *s) {
    const int L = s->seq_len, dh = s->d_head, HD = s->n_heads * dh;
    for (int i = 0; i < L; i++)
        memcpy(dst + (size_t)i * dh, src + ((size_t)b * L + i) * HD + (size_t)h * dh, (size_t)dh * sizeof(real));
}
static void scatter_head(real *dst, const real *src, int b, int h, const AttnShape *s) {
    const int L = s->seq_len, dh = s->d_head, HD = s->n_heads * dh;
    for (int i = 0; i < L; i++)
        memcpy(dst + ((size_t)b * L + i) * HD + (size_t)h * dh, src + (size_t)i * dh, (size_t)dh * sizeof(real));
}

void cpu_local_attention_forward(real *out, real *lse, const real *q, const real *k, const real *v,
                                 const AttnShape *s, void *work) {
    const int B = s->batch, L = s->seq_len, H = s->n_heads, dh = s->d_head;
    const real scale = 1 / R_SQRT((real)dh);
#pragma omp parallel for schedule(dynamic) collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            Scratch sc = thread_scratch(work, s);
            gather_head(sc.sq, q, b, h, s);
            gather_head(sc.sk, k, b, h, s);
            gather_head(sc.sv, v, b, h, s);
            chunked_forward(&sc, sc.so, lse + ((size_t)b * H + h) * L, sc.sq, sc.sk, sc.sv, NULL, L, s->chunk_len,
                            dh, scale, 0, 0);
            scatter_head(out, sc.so, b, h, s);
        }
}

void cpu_local_attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *out,
                                  const real *lse, const real *q, const real *k, const real *v,
                                  const AttnShape *s, void *work) {
    const int B = s->batch, L = s->seq_len, H = s->n_heads, dh = s->d_head;
    const real scale = 1 / R_SQRT((real)dh);
#pragma omp parallel for schedule(dynamic) collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            Scratch sc = thread_scratch(work, s);
            gather_head(sc.sq, q, b, h, s);
            gather_head(sc.sk, k, b, h, s);
            gather_head(sc.sv, v, b, h, s);
            gather_head(sc.so, out, b, h, s);
            gather_head(sc.dso, dout, b, h, s);
            size_t n = (size_t)L * dh;
            memset(sc.dsq, 0, n * sizeof(real));
            memset(sc.dsk, 0, n * sizeof(real));
            memset(sc.dsv, 0, n * sizeof(real));
            chunked_backward(&sc, sc.dsq, sc.dsk, sc.dsv, sc.dso, NULL, sc.sq, sc.sk, sc.sv, sc.so,
                             lse + ((size_t)b * H + h) * L, NULL, L, s->chunk_len, dh, scale, 0, 0);
            scatter_head(dq, sc.dsq, b, h, s);
            scatter_head(dk, sc.dsk, b, h, s);
            scatter_head(dv, sc.dsv, b, h, s);
        }
}
