// Every op's backward against central finite differences, in double precision.
//
// Each check builds a scalar f = <w, op(inputs)> with fixed random weights w,
// takes the analytic gradient from the op's backward with dout = w, and
// compares it with (f(x+eps) - f(x-eps)) / 2eps. With eps = 1e-6 in double,
// truncation error is ~eps^2 * f''' ~ 1e-12 and rounding ~1e-16/eps = 1e-10,
// so a tensor-wise relative error below 1e-7 leaves a wide margin while any
// real mistake (a missing term, a wrong index) shows up as >= 1e-3.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "gradcheck.h"
#include "rng.h"

#define EPS 1e-6
#define TOL 1e-7

static const Backend *be;
static void setup(void) { be = backend_cpu(); }

// --- embedding -------------------------------------------------------------

typedef struct {
    real *out, *table, *w;
    int *tokens, N, C;
} EmbCtx;
static double emb_f(void *p) {
    EmbCtx *c = p;
    be->embedding_forward(c->out, c->tokens, c->table, c->N, c->C);
    return dot_real(c->out, c->w, (size_t)c->N * c->C);
}
Test(ops, embedding_backward, .init = setup) {
    int N = 12, C = 5, V = 7;
    int tokens[12] = {0, 3, 3, 6, 1, 0, 2, 3, 5, 5, 5, 4};  // repeats: gradients must add
    EmbCtx c = {new_vec(N * C, 0, 0), new_vec(V * C, 1, 1), new_vec(N * C, 1, 2), tokens, N, C};
    real *g = new_vec(V * C, 0, 0), *num = new_vec(V * C, 0, 0);
    be->embedding_backward(g, c.w, tokens, N, C);
    numeric_grad(num, c.table, V * C, EPS, emb_f, &c);
    cr_expect_lt(rel_err(g, num, V * C), TOL);
}

// --- axial positions -------------------------------------------------------

typedef struct {
    real *out, *tables[MAX_AXES], *w;
    int shape[MAX_AXES], dims[MAX_AXES], n_axes, batch, L, d;
} AxCtx;
static double ax_f(void *p) {
    AxCtx *c = p;
    memset(c->out, 0, (size_t)c->batch * c->L * c->d * sizeof(real));
    be->axial_forward(c->out, c->tables, c->shape, c->dims, c->n_axes, c->batch, c->L, 0);
    return dot_real(c->out, c->w, (size_t)c->batch * c->L * c->d);
}
static void axial_check(int n_axes, const int *shape, const int *dims) {
    AxCtx c = {.n_axes = n_axes, .batch = 2, .L = 1, .d = 0};
    for (int a = 0; a < n_axes; a++) {
        c.shape[a] = shape[a];
        c.dims[a] = dims[a];
        c.L *= shape[a];
        c.d += dims[a];
        c.tables[a] = new_vec((size_t)shape[a] * dims[a], 1, 10 + a);
    }
    size_t n = (size_t)c.batch * c.L * c.d;
    c.out = new_vec(n, 0, 0);
    c.w = new_vec(n, 1, 3);
    // Position p gets [E1[p / n2] ; E2[p % n2]] (row-major axes): check values.
    ax_f(&c);
    if (n_axes == 2) {
        for (int p = 0; p < c.L; p++) {
            cr_assert_eq(c.out[(size_t)p * c.d], c.tables[0][(size_t)(p / shape[1]) * dims[0]]);
            cr_assert_eq(c.out[(size_t)p * c.d + dims[0]], c.tables[1][(size_t)(p % shape[1]) * dims[1]]);
        }
    }
    real *g[MAX_AXES];
    for (int a = 0; a < n_axes; a++) g[a] = new_vec((size_t)shape[a] * dims[a], 0, 0);
    be->axial_backward(g, c.w, c.shape, c.dims, n_axes, c.batch, c.L, 0);
    for (int a = 0; a < n_axes; a++) {
        size_t na = (size_t)shape[a] * dims[a];
        real *num = new_vec(na, 0, 0);
        numeric_grad(num, c.tables[a], na, EPS, ax_f, &c);
        cr_expect_lt(rel_err(g[a], num, na), TOL, "axis %d", a);
    }
}
Test(ops, axial_two_axes, .init = setup) { axial_check(2, (int[]){4, 3}, (int[]){3, 2}); }
Test(ops, axial_three_axes, .init = setup) { axial_check(3, (int[]){2, 3, 2}, (int[]){2, 1, 3}); }

// --- layernorm ---------------------------------------------------------------

typedef struct {
    real *out, *mean, *rstd, *x, *g, *b, *w;
    int N, C;
} LnCtx;
static double ln_f(void *p) {
    LnCtx *c = p;
    be->layernorm_forward(c->out, c->mean, c->rstd, c->x, c->g, c->b, c->N, c->C, (real)1e-6);
    return dot_real(c->out, c->w, (size_t)c->N * c->C);
}
Test(ops, layernorm_backward, .init = setup) {
    int N = 6, C = 9;
    LnCtx c = {new_vec(N * C, 0, 0), new_vec(N, 0, 0), new_vec(N, 0, 0), new_vec(N * C, 2, 1), new_vec(C, 1, 2), new_vec(C, 1, 3),
               new_vec(N * C, 1, 4), N, C};
    for (int i = 0; i < N * C; i++) c.x[i] += 3;  // a non-zero mean to remove
    ln_f(&c);
    real *dx = new_vec(N * C, 0, 0), *dg = new_vec(C, 0, 0), *db = new_vec(C, 0, 0);
    be->layernorm_backward(dx, dg, db, c.w, c.x, c.g, c.mean, c.rstd, N, C);
    real *num = new_vec(N * C, 0, 0);
    numeric_grad(num, c.x, N * C, EPS, ln_f, &c);
    cr_expect_lt(rel_err(dx, num, N * C), TOL, "dx");
    numeric_grad(num, c.g, C, EPS, ln_f, &c);
    cr_expect_lt(rel_err(dg, num, C), TOL, "dg");
    numeric_grad(num, c.b, C, EPS, ln_f, &c);
    cr_expect_lt(rel_err(db, num, C), TOL, "db");
    // Accumulation contract: a second backward adds the same again.
    be->layernorm_backward(dx, dg, db, c.w, c.x, c.g, c.mean, c.rstd, N, C);
    numeric_grad(num, c.x, N * C, EPS, ln_f, &c);
    for (int i = 0; i < N * C; i++) num[i] *= 2;
    cr_expect_lt(rel_err(dx, num, N * C), TOL, "dx accumulates");
}

// --- matmul (all transpose flags) and linear -----------------------------

Test(ops, matmul_matches_naive_all_transposes, .init = setup) {
    int M = 37, N = 23, K = 41;  // odd sizes; M*N*K > 1e6/30 exercises row splitting below too
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            real *A = new_vec(M * K, 1, 1), *B = new_vec(K * N, 1, 2), *C = new_vec(M * N, 1, 3), *ref = new_vec(M * N, 0, 0);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
                    ref[i * N + j] = (real)(s + 0.5 * C[i * N + j]);
                }
            be->matmul(C, A, B, M, N, K, ta, tb, 0.5);
            cr_expect_lt(rel_err(C, ref, M * N), 1e-13, "ta=%d tb=%d", ta, tb);
        }
    // Large enough to be split over threads.
    M = 300, N = 70, K = 90;
    real *A = new_vec(M * K, 1, 5), *B = new_vec(K * N, 1, 6), *C = new_vec(M * N, 0, 0), *ref = new_vec(M * N, 0, 0);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)A[k * M + i] * B[j * K + k];
            ref[i * N + j] = (real)s;
        }
    be->matmul(C, A, B, M, N, K, 1, 1, 0);
    cr_expect_lt(rel_err(C, ref, M * N), 1e-13, "split matmul");
}

typedef struct {
    real *out, *x, *W, *bias, *w;
    int N, I, O;
} LinCtx;
static double lin_f(void *p) {
    LinCtx *c = p;
    be->matmul(c->out, c->x, c->W, c->N, c->O, c->I, 0, 0, 0);
    be->bias_forward(c->out, c->bias, c->N, c->O);
    return dot_real(c->out, c->w, (size_t)c->N * c->O);
}
Test(ops, linear_backward, .init = setup) {
    // The model's linear layer: out = x W + b, backward as model.c does it.
    int N = 7, I = 5, O = 6;
    LinCtx c = {new_vec(N * O, 0, 0), new_vec(N * I, 1, 1), new_vec(I * O, 1, 2), new_vec(O, 1, 3), new_vec(N * O, 1, 4), N, I, O};
    real *dx = new_vec(N * I, 0, 0), *dW = new_vec(I * O, 0, 0), *db = new_vec(O, 0, 0), *num = new_vec(N * I, 0, 0);
    be->matmul(dW, c.x, c.w, I, O, N, 1, 0, 1);  // dW += x^T dout
    be->matmul(dx, c.w, c.W, N, I, O, 0, 1, 0);  // dx = dout W^T
    be->bias_backward(db, c.w, N, O);
    numeric_grad(num, c.x, N * I, EPS, lin_f, &c);
    cr_expect_lt(rel_err(dx, num, N * I), TOL, "dx");
    numeric_grad(num, c.W, I * O, EPS, lin_f, &c);
    cr_expect_lt(rel_err(dW, num, I * O), TOL, "dW");
    numeric_grad(num, c.bias, O, EPS, lin_f, &c);
    cr_expect_lt(rel_err(db, num, O), TOL, "db");
}

// --- feed-forward activation -------------------------------------------------

typedef struct {
    real *out, *x, *w;
    size_t n;
    Activation act;
} ActCtx;
static double act_f(void *p) {
    ActCtx *c = p;
    be->activation_forward(c->out, c->x, c->n, c->act);
    return dot_real(c->out, c->w, c->n);
}
Test(ops, activation_backward, .init = setup) {
    size_t n = 64;
    for (int act = ACT_RELU; act <= ACT_GELU; act++) {
        ActCtx c = {new_vec(n, 0, 0), new_vec(n, 1.5, 1), new_vec(n, 1, 2), n, (Activation)act};
        // Keep ReLU inputs away from its kink, where differences are not derivatives.
        for (size_t i = 0; i < n; i++)
            if (fabs(c.x[i]) < 1e-3) c.x[i] = 0.5;
        real *g = new_vec(n, 0, 0), *num = new_vec(n, 0, 0);
        be->activation_backward(g, c.w, c.x, n, c.act);
        numeric_grad(num, c.x, n, EPS, act_f, &c);
        cr_expect_lt(rel_err(g, num, n), TOL, "act %d", act);
    }
    // Known values: gelu(1) = 0.8413447460685429 (erf form), relu(-2) = 0.
    real x[2] = {1, -2}, y[2];
    be->activation_forward(y, x, 1, ACT_GELU);
    cr_expect_float_eq(y[0], 0.8413447460685429, 1e-15);
    be->activation_forward(y + 1, x + 1, 1, ACT_RELU);
    cr_expect_eq(y[1], 0);
}

// --- cross-entropy --------------------------------------------------------

typedef struct {
    real *logits, *work, *losses;
    int *correct, *targets, N, V;
} XeCtx;
static double xe_f(void *p) {
    XeCtx *c = p;
    memcpy(c->work, c->logits, (size_t)c->N * c->V * sizeof(real));
    be->xent_forward_backward(c->work, c->losses, c->correct, c->targets, c->N, c->V, 0);
    double s = 0;
    int n = 0;
    for (int i = 0; i < c->N; i++) s += c->losses[i], n += c->targets[i] >= 0;
    return s / n;
}
Test(ops, cross_entropy_backward, .init = setup) {
    int N = 6, V = 11;
    int targets[6] = {3, -1, 0, 10, 3, -1};  // -1: ignored rows (no loss, no gradient)
    XeCtx c = {new_vec(N * V, 2, 1), new_vec(N * V, 0, 0), new_vec(N, 0, 0), calloc(N, sizeof(int)), targets, N, V};
    real *g = new_vec(N * V, 0, 0), *num = new_vec(N * V, 0, 0);
    memcpy(g, c.logits, (size_t)N * V * sizeof(real));
    be->xent_forward_backward(g, c.losses, c.correct, targets, N, V, (real)(1.0 / 4));
    numeric_grad(num, c.logits, N * V, EPS, xe_f, &c);
    cr_expect_lt(rel_err(g, num, N * V), TOL);
    for (int v = 0; v < V; v++) cr_expect_eq(g[1 * V + v], 0, "ignored row has no gradient");
    // The loss of a row is -log softmax[target], computed independently here.
    double mx = -1e300, s = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, c.logits[v]);
    for (int v = 0; v < V; v++) s += exp(c.logits[v] - mx);
    xe_f(&c);
    cr_expect_float_eq(c.losses[0], mx + log(s) - c.logits[3], 1e-12);
    cr_expect_eq(c.losses[1], 0);
}

// --- dropout and AdamW ------------------------------------------------------

Test(ops, dropout_mask_is_deterministic_and_scaled, .init = setup) {
    size_t n = 20000;
    real *a = new_vec(n, 0, 0), *b = new_vec(n, 0, 0);
    for (size_t i = 0; i < n; i++) a[i] = b[i] = 1;
    be->dropout(a, n, 0, 0.25f, 7, 3, 11);
    // Applying the mask in two pieces with offsets gives the same mask.
    be->dropout(b, n / 2, 0, 0.25f, 7, 3, 11);
    be->dropout(b + n / 2, n - n / 2, n / 2, 0.25f, 7, 3, 11);
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(a[i], b[i]);
        cr_assert(a[i] == 0 || fabs(a[i] - 1 / 0.75) < 1e-15);
        zeros += a[i] == 0;
    }
    // Binomial(20000, 0.25): std 61, so 5000 +- 400 is a > 6-sigma band.
    cr_expect(zeros > 4600 && zeros < 5400, "dropped %zu of %zu", zeros, n);
}

Test(ops, adamw_matches_formula, .init = setup) {
    real p[3] = {1, -2, 0.5}, m[3] = {0.1, 0, -0.2}, v[3] = {0.01, 0, 0.04}, g[3] = {0.5, -1, 2};
    real p0[3], m0[3], v0[3];
    memcpy(p0, p, sizeof p), memcpy(m0, m, sizeof m), memcpy(v0, v, sizeof v);
    float lr = 0.01f, b1 = 0.9f, b2 = 0.98f, eps = 1e-9f, wd = 0.1f, gs = 0.5f;
    int t = 3;
    be->adamw(p, m, v, g, 3, lr, b1, b2, eps, wd, gs, t);
    for (int i = 0; i < 3; i++) {
        double gi = g[i] * gs, mi = b1 * m0[i] + (1 - b1) * gi, vi = b2 * v0[i] + (1 - b2) * gi * gi;
        double mh = mi / (1 - pow(b1, t)), vh = vi / (1 - pow(b2, t));
        double pi = p0[i] - lr * (mh / (sqrt(vh) + eps) + wd * p0[i]);
        cr_expect_float_eq(p[i], pi, 1e-12, "p[%d]", i);
        cr_expect_float_eq(m[i], mi, 1e-12);
        cr_expect_float_eq(v[i], vi, 1e-12);
    }
}
