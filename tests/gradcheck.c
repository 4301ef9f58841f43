#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>

#include "rng.h"

void fill_normal(real *x, size_t n, double std, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = (real)(std * rng_normal(seed, i, 0, 0xfeedu));
}

real *new_vec(size_t n, double std, uint64_t seed) {
    real *x = calloc(n ? n : 1, sizeof(real));
    if (!x) abort();
    if (std > 0) fill_normal(x, n, std, seed);
    return x;
}

double rel_err(const real *a, const real *b, size_t n) {
    double diff = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        diff += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    double scale = sqrt(na > nb ? na : nb);
    return sqrt(diff) / (scale > 1e-300 ? scale : 1e-300);
}

double max_abs_diff(const real *a, const real *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m) m = d;
    }
    return m;
}

double dot_real(const real *a, const real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

void numeric_grad(real *grad, real *x, size_t n, double eps, ScalarFn f, void *ctx) {
    for (size_t i = 0; i < n; i++) {
        real saved = x[i];
        x[i] = saved + (real)eps;
        double up = f(ctx);
        x[i] = saved - (real)eps;
        double down = f(ctx);
        x[i] = saved;
        grad[i] = (real)((up - down) / (2 * eps));
    }
}
