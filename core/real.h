// The scalar type of the model's maths.
//
// The CPU reference is written once against `real`. The program builds it as
// float; the test suite also builds the very same source with -DREFORMER_F64 so
// that every gradient can be checked against finite differences in double
// precision (tight tolerances), and the float build against the double build.
#pragma once
#include <math.h>

#ifdef REFORMER_F64
typedef double real;
#define R_EXP exp
#define R_LOG log
#define R_SQRT sqrt
#define R_TANH tanh
#define R_FABS fabs
#define R_ERF erf
#define REAL_NAME "f64"
#else
typedef float real;
#define R_EXP expf
#define R_LOG logf
#define R_SQRT sqrtf
#define R_TANH tanhf
#define R_FABS fabsf
#define R_ERF erff
#define REAL_NAME "f32"
#endif

// erf and exp on R_LANES values at once. Float on x86-64 glibc: glibc's own
// vector maths (libmvec, linked when the Makefile finds it: REFORMER_MVEC),
// within 1 to 2 ulp of erff/expf and about 3x their speed. Elsewhere, and in
// double (the reference precision), the scalar function on each lane. A
// pointwise op sends every element through the same path (its tail padded to
// a whole vector), so its results do not depend on how it is split over
// threads. The 4-lane SSE forms even where the build targets AVX2: with
// libmvec's 8-lane AVX2 exp, the float32 gradient of the first layer of
// test-hf's enwik8-shaped model (12 reversible layers, 4 hashes) was 0.0039
// off float64 against HF's own float32 1.7e-5 (SSE forms: 6.2e-6), a cause
// not yet found; the 8-lane exp took ~3% of the default step against ~5%
// (perf profiles), a small gain.
#define R_LANES 4
#if defined(REFORMER_MVEC) && !defined(REFORMER_F64)
#include <string.h>
typedef float r_vec4 __attribute__((vector_size(16)));
r_vec4 _ZGVbN4v_erff(r_vec4);  // libmvec's names: SSE (b), 4 lanes (N4), vector argument (v)
r_vec4 _ZGVbN4v_expf(r_vec4);
static inline void r_erf_lanes(real *y, const real *x) {
    r_vec4 v;
    memcpy(&v, x, sizeof v);
    v = _ZGVbN4v_erff(v);
    memcpy(y, &v, sizeof v);
}
static inline void r_exp_lanes(real *y, const real *x) {
    r_vec4 v;
    memcpy(&v, x, sizeof v);
    v = _ZGVbN4v_expf(v);
    memcpy(y, &v, sizeof v);
}
#else
static inline void r_erf_lanes(real *y, const real *x) {
    for (int k = 0; k < R_LANES; k++) y[k] = R_ERF(x[k]);
}
static inline void r_exp_lanes(real *y, const real *x) {
    for (int k = 0; k < R_LANES; k++) y[k] = R_EXP(x[k]);
}
#endif

// Attention mask values (REFORMER.md, LSH step 6). Masked logits are *replaced*
// by these constants, as trax and Hugging Face do, so no gradient flows through
// them. exp(-1e9 - max) is exactly 0 in float and double alike.
#define MASK_CAUSAL ((real)-1e9)
#define MASK_SELF ((real)-1e5)
