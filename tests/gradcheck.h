// Helpers for the numerical tests: deterministic random inputs, error
// measures and central finite differences. Built with the same `real` as the
// core it is linked against (double for *_f64 tests).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "real.h"

// x[i] ~ N(0, std^2), a pure function of (seed, i).
void fill_normal(real *x, size_t n, double std, uint64_t seed);

// A new vector of n reals: N(0, std^2) from seed, or zeros when std <= 0.
// Test programs free nothing: each Criterion test runs in its own process.
real *new_vec(size_t n, double std, uint64_t seed);

// ||a - b||_2 / max(||a||_2, ||b||_2, tiny): the tensor-wise relative error.
double rel_err(const real *a, const real *b, size_t n);
double max_abs_diff(const real *a, const real *b, size_t n);
double dot_real(const real *a, const real *b, size_t n);

// grad[i] = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) for i < n, where f
// reads x through ctx. x is restored afterwards.
typedef double (*ScalarFn)(void *ctx);
void numeric_grad(real *grad, real *x, size_t n, double eps, ScalarFn f, void *ctx);
