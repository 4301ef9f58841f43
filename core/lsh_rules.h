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

// Element e of global head `head`'s rotation [dh, R, nb/2] (row-major, e =
// (d * R + r) * nb/2 + j) for one layer and step: a pure function of these,
// so every backend, rank and the decoder draw the same rotations.
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
