// The LSH rules the CPU backend (core/attention_cpu.c), the decoder
// (core/decode.c) and the CUDA kernels (cuda/lsh.cuh) must apply identically,
// written once (REFORMER.md steps 3-4): which rotation element is drawn, which
// bucket a projection picks, and the key-normalisation epsilon. Header-only
// and host/device, like rng.h.
#pragma once
#include <stdint.h>

#include "real.h"
#include "rng.h"

#ifdef __CUDACC__
#define LSH_FN __host__ __device__ static inline
#else
#define LSH_FN static inline
#endif

// Epsilon of trax/HF shared-QK key normalisation: k = x / sqrt(mean(x^2) + eps)
// / sqrt(dh), computed as x / sqrt(sum(x^2) + dh * eps).
#define KEY_NORM_EPS 1e-6

// Factorised buckets (REFORMER.md, LSH step 3; transformers' list-valued
// num_buckets): nb = f1 * f2 * ... buckets per round, each factor hashed with
// its own f/2 rotation columns. Bucket ids are uint16 everywhere (the stored
// buckets, the sort keys, the decoder's cache), so the product is at most
// LSH_MAX_BUCKETS and config_finalize refuses any n_buckets above it.
#define LSH_MAX_FACTORS 4
#define LSH_MAX_BUCKETS 65536
typedef struct {
    int n;                    // factors; 0 = one factor, the count nb itself
    int f[LSH_MAX_FACTORS];   // each even and >= 2; their product is nb
} LshFactors;

// The factors of nb buckets as hashed: `given` when its product is nb, else
// the single factor nb (an AttnShape or Config that sets n_buckets alone).
LSH_FN LshFactors lsh_factors(int nb, LshFactors given) {
    long prod = given.n > 0 ? 1 : 0;
    for (int i = 0; i < given.n; i++) prod *= given.f[i];
    if (given.n > 0 && given.n <= LSH_MAX_FACTORS && prod == nb) return given;
    LshFactors one = {1, {nb, 0, 0, 0}};
    return one;
}

// Rotation columns per round: sum of f/2 over the factors (nb/2 unfactorised).
LSH_FN int lsh_rotation_width(int nb, LshFactors given) {
    LshFactors fs = lsh_factors(nb, given);
    int w = 0;
    for (int i = 0; i < fs.n; i++) w += fs.f[i] / 2;
    return w;
}

// The automatic bucket count of transformers' _set_num_buckets for a sequence
// of seq_len, LSH chunks of chunk and max_len = max_position_embeddings (this
// project passes seq_len): nb = 2^p, p = floor(log2(2 * (seq_len / chunk))),
// at least 2 (p >= 1) and at most LSH_MAX_BUCKETS (p <= 16; transformers has
// no cap), factorised as [2^(p/2), 2^(p - p/2)] when nb exceeds
// 2 * max(floor(sqrt(max_len / chunk)), chunk). Integer arithmetic throughout.
LSH_FN LshFactors lsh_auto_factors(int seq_len, int chunk, int max_len) {
    long twice_chunks = 2L * (seq_len / chunk);
    int p = 1;
    while (p < 16 && (2L << p) <= twice_chunks) p++;
    long q = max_len / chunk, root = 0;
    while ((root + 1) * (root + 1) <= q) root++;
    long limit = 2 * (root > chunk ? root : chunk);
    LshFactors fs = {1, {1 << p, 0, 0, 0}};
    if ((1L << p) > limit) fs.n = 2, fs.f[0] = 1 << (p / 2), fs.f[1] = 1 << (p - p / 2);
    return fs;
}

// Element e of global head `head`'s rotation [dh, R, W] (row-major, e =
// (d * R + r) * W + j; W = lsh_rotation_width: factor 1's f1/2 columns, then
// factor 2's, ...) for one layer and step: a pure function of these, so every
// backend, rank and the decoder draw the same rotations.
LSH_FN float lsh_rotation_element(uint64_t seed, uint64_t head, uint64_t e, uint32_t step, uint32_t layer) {
    return rng_normal(seed, (head << 32) | e, step, rng_tag(RNG_HASH, layer, 0));
}

// The bucket of one round: the argmax over the nb = 2 * half values [p ; -p]
// of the projections p[0..half), the first maximum winning. Streaming form
// (projections fed in order j = 0, 1, ...; the GPU computes them one by one):
// bucket = the first index of max(p), unless max(-p) = -min(p) is strictly
// larger, then half + the first index of min(p). NaN projections never win
// (every comparison with NaN is false), as in the array form below.
typedef struct {
    real hi, lo;  // max and min so far
    int j_hi, j_lo;  // their first indices
} LshArgmax;

LSH_FN LshArgmax lsh_argmax_start(real p0) {
    LshArgmax a;
    a.hi = a.lo = p0;
    a.j_hi = a.j_lo = 0;
    return a;
}
LSH_FN void lsh_argmax_add(LshArgmax *a, real p, int j) {
    if (p > a->hi) a->hi = p, a->j_hi = j;
    if (p < a->lo) a->lo = p, a->j_lo = j;
}
LSH_FN int lsh_argmax_bucket(const LshArgmax *a, int half) { return -a->lo > a->hi ? half + a->j_lo : a->j_hi; }

// The same over an array of half >= 1 projections.
LSH_FN int lsh_bucket_of(const real *p, int half) {
    LshArgmax a = lsh_argmax_start(p[0]);
    for (int j = 1; j < half; j++) lsh_argmax_add(&a, p[j], j);
    return lsh_argmax_bucket(&a, half);
}

// The bucket of one round from its W projections p (the rotation's column
// order): factor i's bucket b_i is lsh_bucket_of over its own f_i/2 columns,
// and the bucket is b1 + f1 * b2 + f1 * f2 * b3 + ... (transformers' order).
// Unfactorised this is lsh_bucket_of(p, nb/2).
LSH_FN int lsh_bucket_factored(const real *p, int nb, LshFactors given) {
    LshFactors fs = lsh_factors(nb, given);
    int bucket = 0, stride = 1;
    for (int i = 0; i < fs.n; i++) {
        bucket += stride * lsh_bucket_of(p, fs.f[i] / 2);
        p += fs.f[i] / 2;
        stride *= fs.f[i];
    }
    return bucket;
}

// lsh_form=strict: the keys of a query, in round r, are the newest
// lsh_strict_window(m) items of its own round-r bucket at positions <= its
// own (itself included, self-masked as in the standard form). They depend on
// earlier positions only, so decoding one token at a time computes exactly the
// training forward. In the sorted order (round, bucket, position) they are the
// contiguous items [max(segment start, s - W + 1), s] of a query at sorted
// index s: with W = m they lie in its own chunk and the previous one, the
// standard form's key blocks, so both forms share one chunk kernel and differ
// only in the mask (the standard form sees every item of both blocks at
// positions <= its own, whatever their bucket).
LSH_FN int lsh_strict_window(int chunk_len) { return chunk_len; }
