// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
//
// Every random draw in the model is a pure function of (seed, counter), so the
// CPU and CUDA backends draw identical hash rotations and dropout masks, the
// reversible recompute redraws the same masks, and results do not depend on
// thread count or evaluation order. Header-only so CUDA kernels can use it.
#pragma once
#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define RNG_FN __host__ __device__ static inline
#else
#define RNG_FN static inline
#endif

// What a draw is for: the top byte of the last counter word, so streams for
// different purposes never overlap.
enum {
    RNG_INIT = 1,     // parameter initialisation
    RNG_HASH = 2,     // LSH random rotations
    RNG_DROPOUT = 3,  // dropout masks
    RNG_DATA = 4,     // training window offsets, synthetic data
    RNG_SAMPLE = 5,   // sampling
};

typedef struct {
    uint32_t v[4];
} Philox4;

RNG_FN uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

// Philox4x32 with 10 rounds: counter c (128 bits), key (64 bits).
RNG_FN Philox4 philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint64_t key) {
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    Philox4 r = {{c0, c1, c2, c3}};
    return r;
}

// Counter layout used throughout: (index lo, index hi, step, tag) where
// tag = purpose << 24 | (a & 0xffff) << 8 | (b & 0xff), e.g. a = layer, b = site.
RNG_FN uint32_t rng_tag(uint32_t purpose, uint32_t a, uint32_t b) {
    return (purpose << 24) | ((a & 0xffffu) << 8) | (b & 0xffu);
}

// Uniform in [0, 1) with 24 bits (exactly representable in float).
RNG_FN float rng_uniform(uint64_t seed, uint64_t index, uint32_t step, uint32_t tag) {
    Philox4 r = philox4x32((uint32_t)index, (uint32_t)(index >> 32), step, tag, seed);
    return (float)(r.v[0] >> 8) * (1.0f / 16777216.0f);
}

// Standard normal (Box-Muller on two 32-bit uniforms), computed in double so
// host and device agree to the last float bit after rounding.
RNG_FN float rng_normal(uint64_t seed, uint64_t index, uint32_t step, uint32_t tag) {
    Philox4 r = philox4x32((uint32_t)index, (uint32_t)(index >> 32), step, tag, seed);
    double u1 = ((double)r.v[0] + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
    double u2 = (double)r.v[1] * (1.0 / 4294967296.0);          // [0, 1)
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

// Raw 64 random bits, for integer draws (window offsets, sampling).
RNG_FN uint64_t rng_bits64(uint64_t seed, uint64_t index, uint32_t step, uint32_t tag) {
    Philox4 r = philox4x32((uint32_t)index, (uint32_t)(index >> 32), step, tag, seed);
    return ((uint64_t)r.v[1] << 32) | r.v[0];
}
