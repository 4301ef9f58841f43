// CPU reference backend: dense, pointwise, embedding, loss and optimiser ops.
// Attention lives in attention_cpu.c. Loops that write disjoint rows run in
// parallel (OpenMP); reductions into parameter gradients run in a fixed order,
// so results are bit-identical from run to run.
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "rng.h"
#include "util.h"

// Below this many elements a loop runs on one thread: waking the team costs
// more than the work.
#define PARALLEL_MIN ((size_t)1 << 16)

#ifdef REFORMER_F64
#define cblas_gemm cblas_dgemm
#else
#define cblas_gemm cblas_sgemm
#endif

// --- memory ---------------------------------------------------------------

// Bytes held by cpu_alloc (64-byte rounded sizes), for the memory plan's test.
static size_t g_held_bytes = 0;
#define ALLOC_HEADER 64  // keeps the block 64-byte aligned and records its size

static void *cpu_alloc(size_t bytes) {
    // 64-byte aligned and zeroed. calloc maps fresh zero pages for large sizes,
    // so untouched workspace costs no resident memory.
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (!rounded) rounded = 64;
    if (posix_memalign(&p, 64, rounded + ALLOC_HEADER) != 0)
        FATAL("reduce seq_len, batch or the model size", "out of memory allocating %.1f MiB",
              (double)bytes / (1024.0 * 1024.0));
    memset(p, 0, rounded + ALLOC_HEADER);
    *(size_t *)p = rounded;
#pragma omp atomic
    g_held_bytes += rounded;
    return (char *)p + ALLOC_HEADER;
}
static void cpu_release(void *p) {
    if (!p) return;
    char *base = (char *)p - ALLOC_HEADER;
#pragma omp atomic
    g_held_bytes -= *(size_t *)base;
    free(base);
}
size_t backend_cpu_held_bytes(void) { return g_held_bytes; }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_synchronize(void) {}

// --- dense ----------------------------------------------------------------

// One thread pool for the whole backend: OpenBLAS runs single-threaded (set
// in backend_cpu()) and the rows of C are split over the OpenMP threads, each
// calling gemm on its slice. Two pools spinning against each other on the
// same cores cost more than either saves.
static void cpu_matmul(real *C, const real *A, const real *B, int M, int N, int K, int trans_a,
                       int trans_b, real beta) {
    const int min_rows = 32;
    int parts = 1;
#ifdef _OPENMP
    if ((double)M * N * K > 1e6) parts = MIN(omp_get_max_threads(), MAX(1, M / min_rows));
#endif
#pragma omp parallel for schedule(static) if (parts > 1) num_threads(parts)
    for (int part = 0; part < parts; part++) {
        int r0 = (int)((long)M * part / parts), r1 = (int)((long)M * (part + 1) / parts);
        const real *a = trans_a ? A + r0 : A + (size_t)r0 * K;
        cblas_gemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                   r1 - r0, N, K, 1.0, a, trans_a ? M : K, B, trans_b ? K : N, beta, C + (size_t)r0 * N, N);
    }
}

static void cpu_bias_forward(real *out, const real *bias, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] += bias[c];
}

static void cpu_bias_backward(real *dbias, const real *dout, int N, int C) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) dbias[c] += dout[(size_t)n * C + c];
}

static void cpu_axpy(real *y, const real *x, real alpha, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

static void cpu_scale(real *x, real alpha, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

static double cpu_sum_squares(const real *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

static void cpu_copy_2d(real *dst, size_t dst_stride, const real *src, size_t src_stride, size_t rows,
                        size_t width) {
    for (size_t r = 0; r < rows; r++) memcpy(dst + r * dst_stride, src + r * src_stride, width * sizeof(real));
}

static void cpu_concat_rows(real *out, const real *a, const real *b, int N, int C) {
    for (int n = 0; n < N; n++) {
        memcpy(out + (size_t)n * 2 * C, a + (size_t)n * C, (size_t)C * sizeof(real));
        memcpy(out + (size_t)n * 2 * C + C, b + (size_t)n * C, (size_t)C * sizeof(real));
    }
}

static void cpu_split_rows(real *a, real *b, const real *in, int N, int C) {
    for (int n = 0; n < N; n++) {
        memcpy(a + (size_t)n * C, in + (size_t)n * 2 * C, (size_t)C * sizeof(real));
        memcpy(b + (size_t)n * C, in + (size_t)n * 2 * C + C, (size_t)C * sizeof(real));
    }
}

// --- embeddings -------------------------------------------------------------

static void cpu_embedding_forward(real *out, const int *tokens, const real *table, int N, int C) {
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, table + (size_t)tokens[n] * C, (size_t)C * sizeof(real));
}

static void cpu_embedding_backward(real *dtable, const real *dout, const int *tokens, int N, int C) {
    for (int n = 0; n < N; n++) {
        real *row = dtable + (size_t)tokens[n] * C;
        const real *g = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) row[c] += g[c];
    }
}

// Row of axis a for position p (row-major multi-index).
static int axial_index(int p, const int *shape, int n_axes, int a) {
    for (int b = n_axes - 1; b > a; b--) p /= shape[b];
    return p % shape[a];
}

static void cpu_axial_forward(real *out, real *const *tables, const int *shape, const int *dims,
                              int n_axes, int batch, int len, int pos_offset) {
    int d = 0;
    for (int a = 0; a < n_axes; a++) d += dims[a];
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < len; t++) {
            real *row = out + ((size_t)b * len + t) * d;
            for (int a = 0, off = 0; a < n_axes; off += dims[a], a++) {
                const real *src = tables[a] + (size_t)axial_index(pos_offset + t, shape, n_axes, a) * dims[a];
                for (int c = 0; c < dims[a]; c++) row[off + c] += src[c];
            }
        }
}

static void cpu_axial_backward(real *const *dtables, const real *dout, const int *shape,
                               const int *dims, int n_axes, int batch, int len, int pos_offset) {
    int d = 0;
    for (int a = 0; a < n_axes; a++) d += dims[a];
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < len; t++) {
            const real *row = dout + ((size_t)b * len + t) * d;
            for (int a = 0, off = 0; a < n_axes; off += dims[a], a++) {
                real *dst = dtables[a] + (size_t)axial_index(pos_offset + t, shape, n_axes, a) * dims[a];
                for (int c = 0; c < dims[a]; c++) dst[c] += row[off + c];
            }
        }
}

// --- normalisation and pointwise --------------------------------------------

// sum_c (a[c] - ma) w[c] (b[c] - mb) over a row (w, b NULL: 1), in SUM_LANES
// running sums combined in a fixed order: the same bits on any thread and any
// vector width, and no chain of dependent adds (a row of d_model sums about
// 4x faster).
#define SUM_LANES 8
static inline real row_sum(const real *a, real ma, const real *w, const real *b, real mb, int C) {
    real acc[SUM_LANES] = {0};
    int c = 0;
    for (; c + SUM_LANES <= C; c += SUM_LANES)
        for (int k = 0; k < SUM_LANES; k++)
            acc[k] += (a[c + k] - ma) * (w ? w[c + k] : 1) * (b ? b[c + k] - mb : 1);
    for (int k = 0; c < C; c++, k++) acc[k] += (a[c] - ma) * (w ? w[c] : 1) * (b ? b[c] - mb : 1);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
#define LN_COLS 32  // columns per block of the parameter gradients

static void cpu_layernorm_forward(real *out, real *mean, real *rstd, const real *x, const real *g,
                                  const real *b, int N, int C, real eps) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const real *xr = x + (size_t)n * C;
        real m = row_sum(xr, 0, NULL, NULL, 0, C) / C;
        real v = row_sum(xr, m, NULL, xr, m, C) / C;
        real s = 1 / R_SQRT(v + eps);
        real *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = (xr[c] - m) * s * g[c] + b[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

static void cpu_layernorm_backward(real *dx, real *dg, real *db, const real *dout, const real *x,
                                   const real *g, const real *mean, const real *rstd, int N, int C) {
    // Activation gradients row-parallel; parameter gradients in row order.
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const real *xr = x + (size_t)n * C, *dr = dout + (size_t)n * C;
        real m = mean[n], s = rstd[n];
        real dmean = row_sum(dr, 0, g, NULL, 0, C) / C;
        real dnorm_norm = row_sum(dr, 0, g, xr, m, C) * s / C;
        real *dxr = dx + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            real norm = (xr[c] - m) * s;
            dxr[c] += (dr[c] * g[c] - dmean - norm * dnorm_norm) * s;
        }
    }
    // Each column's sum over rows, in row order, columns over threads.
    const int col_blocks = (C + LN_COLS - 1) / LN_COLS;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN)
    for (int cb = 0; cb < col_blocks; cb++) {
        const int c0 = cb * LN_COLS, c1 = MIN(C, c0 + LN_COLS);
        for (int n = 0; n < N; n++) {
            const real *xr = x + (size_t)n * C, *dr = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) {
                dg[c] += dr[c] * (xr[c] - mean[n]) * rstd[n];
                db[c] += dr[c];
            }
        }
    }
}

// GELU is the exact (erf) form, as Hugging Face's "gelu": x Phi(x), Phi(x) =
// (1 + erf(x / sqrt 2)) / 2, and its derivative Phi(x) + x phi(x), phi the
// normal density. R_LANES elements at a time (core/real.h), the last block
// padded with zeros.
#define GELU_INV_SQRT2 ((real)0.70710678118654752)
#define GELU_INV_SQRT_2PI ((real)0.39894228040143268)

// y = GELU(x) (grad 0) or GELU'(x) (grad 1) of k <= R_LANES elements (a
// whole vector read in place; a partial one copied, so no variable-length
// copy runs per vector).
static inline void gelu_lanes(real *y, const real *x, int k, int grad) {
    real pad[R_LANES] = {0}, t[R_LANES], e[R_LANES], g[R_LANES];
    const real *xs = x;
    if (k < R_LANES) {
        for (int l = 0; l < k; l++) pad[l] = x[l];
        xs = pad;
    }
    for (int l = 0; l < R_LANES; l++) t[l] = xs[l] * GELU_INV_SQRT2;
    r_erf_lanes(e, t);
    if (!grad) {
        for (int l = 0; l < R_LANES; l++) g[l] = (real)0.5 * xs[l] * (1 + e[l]);
    } else {
        for (int l = 0; l < R_LANES; l++) t[l] = (real)-0.5 * xs[l] * xs[l];
        r_exp_lanes(t, t);
        for (int l = 0; l < R_LANES; l++) g[l] = (real)0.5 * (1 + e[l]) + xs[l] * t[l] * GELU_INV_SQRT_2PI;
    }
    for (int l = 0; l < k; l++) y[l] = g[l];
}

// y = GELU(x) (dout NULL) or dout * GELU'(x) over n elements, R_LANES at a
// time: the one loop of both directions.
static void gelu_rows(real *y, const real *dout, const real *x, size_t n) {
    const size_t blocks = (n + R_LANES - 1) / R_LANES;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t bl = 0; bl < blocks; bl++) {
        size_t i = bl * R_LANES;
        int k = (int)MIN((size_t)R_LANES, n - i);
        real g[R_LANES];
        gelu_lanes(g, x + i, k, dout != NULL);
        for (int l = 0; l < k; l++) y[i + l] = dout ? dout[i + l] * g[l] : g[l];
    }
}

static void cpu_activation_forward(real *out, const real *in, size_t n, Activation act) {
    if (act != ACT_RELU) {
        gelu_rows(out, NULL, in, n);
        return;
    }
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = in[i] > 0 ? in[i] : 0;
}

static void cpu_activation_backward(real *din, const real *dout, const real *in, size_t n, Activation act) {
    if (act != ACT_RELU) {
        gelu_rows(din, dout, in, n);
        return;
    }
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) din[i] = in[i] > 0 ? dout[i] : 0;
}

static void cpu_dropout(real *x, size_t n, size_t offset, float p, uint64_t seed, uint32_t step, uint32_t tag) {
    if (p <= 0) return;
    real keep_scale = (real)(1.0 / (1.0 - (double)p));
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++)
        x[i] = rng_uniform(seed, offset + i, step, tag) >= p ? x[i] * keep_scale : 0;
}

// --- loss -------------------------------------------------------------------

static void cpu_xent_forward_backward(real *logits, real *losses, int *correct, const int *targets,
                                      int N, int V, real dscale) {
#pragma omp parallel for schedule(static) if ((size_t)N * V >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        real *z = logits + (size_t)n * V;
        int t = targets[n], arg = 0;
        real mx = z[0];
        for (int v = 1; v < V; v++)
            if (z[v] > mx) mx = z[v], arg = v;
        real sum = 0;
        for (int v = 0; v < V; v++) sum += R_EXP(z[v] - mx);
        real lse = mx + R_LOG(sum);
        if (t < 0) {
            losses[n] = 0;
            correct[n] = 0;
            memset(z, 0, (size_t)V * sizeof(real));
            continue;
        }
        losses[n] = lse - z[t];
        correct[n] = arg == t;
        for (int v = 0; v < V; v++) z[v] = R_EXP(z[v] - lse) * dscale;
        z[t] -= dscale;
    }
}

// --- optimiser --------------------------------------------------------------

static void cpu_adamw(real *p, real *m, real *v, const real *g, size_t n, float lr, float beta1,
                      float beta2, float eps, float wd, float grad_scale, int t) {
    real c1 = (real)(1.0 - pow(beta1, t)), c2 = (real)(1.0 - pow(beta2, t));
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        real gi = g[i] * grad_scale;
        m[i] = beta1 * m[i] + (1 - beta1) * gi;
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
        real mhat = m[i] / c1, vhat = v[i] / c2;
        p[i] -= lr * (mhat / (R_SQRT(vhat) + eps) + wd * p[i]);
    }
}

// Defined in attention_cpu.c.
size_t cpu_attention_workspace_bytes(const AttnShape *s, int lsh);
void cpu_lsh_hash(uint16_t *buckets, const real *qk, const AttnShape *s, uint64_t seed, uint32_t step, uint32_t layer,
                  void *work);
void cpu_lsh_attention_forward(real *out, real *saved, const real *qk, const real *v,
                               const uint16_t *buckets, const AttnShape *s, void *work);
void cpu_lsh_attention_backward(real *dqk, real *dv, const real *dout, const real *out, const real *saved,
                                const real *qk, const real *v, const uint16_t *buckets, const AttnShape *s,
                                void *work);
void cpu_lsh_sorted_forward(real *so, real *slse, const real *sq, const real *sv, const int *spos, const int *srun,
                            int lanes, int n, int m, int dh, void *work);
void cpu_lsh_sorted_backward(real *dsq, real *dsv, const real *dso, const real *dslse, const real *so,
                             const real *slse, const real *sq, const real *sv, const int *spos, const int *srun,
                             int lanes, int n, int m, int dh, void *work);
size_t cpu_lsh_sorted_workspace_bytes(int n, int m, int dh);
void cpu_local_attention_forward(real *out, real *lse, const real *q, const real *k, const real *v,
                                 const AttnShape *s, void *work);
void cpu_local_attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *out,
                                  const real *lse, const real *q, const real *k, const real *v,
                                  const AttnShape *s, void *work);

// The CPU ops need no internal scratch (reductions run in place, the
// embedding backward adds rows directly) and hold no device memory.
static size_t cpu_scratch_bytes(ScratchOp op, size_t a, size_t b, size_t c) {
    (void)op, (void)a, (void)b, (void)c;
    return 0;
}
static void cpu_reserve_scratch(size_t bytes) { (void)bytes; }
static void cpu_release_scratch(void) {}
static int cpu_device_memory(size_t *held_bytes, size_t *device_used_bytes, size_t *device_free_bytes) {
    *held_bytes = *device_used_bytes = *device_free_bytes = 0;
    return -1;
}

static const Backend CPU_BACKEND = {
    .name = "cpu",
    .alloc_align = 64,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .synchronize = cpu_synchronize,
    .attention_workspace_bytes = cpu_attention_workspace_bytes,
    .scratch_bytes = cpu_scratch_bytes,
    .reserve_scratch = cpu_reserve_scratch,
    .release_scratch = cpu_release_scratch,
    .device_memory = cpu_device_memory,
    .matmul = cpu_matmul,
    .matmul_bf16 = NULL,  // no bf16 on the CPU: config refuses precision=bf16 there
    .bias_forward = cpu_bias_forward,
    .bias_backward = cpu_bias_backward,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .sum_squares = cpu_sum_squares,
    .copy_2d = cpu_copy_2d,
    .concat_rows = cpu_concat_rows,
    .split_rows = cpu_split_rows,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .axial_forward = cpu_axial_forward,
    .axial_backward = cpu_axial_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .activation_forward = cpu_activation_forward,
    .activation_backward = cpu_activation_backward,
    .dropout = cpu_dropout,
    .lsh_hash = cpu_lsh_hash,
    .lsh_attention_forward = cpu_lsh_attention_forward,
    .lsh_attention_backward = cpu_lsh_attention_backward,
    .local_attention_forward = cpu_local_attention_forward,
    .local_attention_backward = cpu_local_attention_backward,
    .lsh_sorted_forward = cpu_lsh_sorted_forward,
    .lsh_sorted_backward = cpu_lsh_sorted_backward,
    .lsh_sorted_workspace_bytes = cpu_lsh_sorted_workspace_bytes,
    .xent_forward_backward = cpu_xent_forward_backward,
    .adamw = cpu_adamw,
};

const Backend *backend_cpu(void) {
    openblas_set_num_threads(1);  // see cpu_matmul
    return &CPU_BACKEND;
}
