// roofline: FLOPs and bytes of every op of one training step, computed
// without a GPU, for cuda/device_check.sh's achieved-rate table.
//
// A counting Backend (every op of core/backend.h, each adding its FLOPs and
// bytes, computing nothing and touching no activation) is driven through
// the real model_init, model_forward_backward and model_update, so the op
// sequence counted is exactly the one a step makes (the reversible
// recompute included) for each model of experiments/roofline/configs.txt.
//
// Counting rules (the floor of each op: METHOD.md's "two numbers"):
//   FLOPs  a multiply-add is 2; matmul 2MNK; attention counts the dense
//          work of the chunked algorithm: each query of an LSH chunk sees 2m
//          keys (its chunk and the previous one; m with one chunk), a local
//          query its previous chunk and the causal part of its own; forward
//          4 per (query, key, dh) (QK^T and PV), backward 10 (recompute QK^T,
//          dP = dO V^T, dQ = dS K, dK = dS^T Q, dV = P^T dO); pointwise ops a
//          few per element (stated at each);
//   bytes  each input read once and each output written once, fp32 (4 B)
//          storage; attention reads q, k, v (and dout, out, saved) once and
//          writes its outputs once (intermediates in on-chip memory).
// Categories match reformer bench's profiled shares: matmul, attention (hash,
// sort, chunked kernels), other (LayerNorm, embeddings, activations, loss,
// copies); optimizer (AdamW, the grad-norm) is outside bench's shares.
//
//   build/roofline [--md] CONFIGS.txt
// prints a TSV (model, category, op, calls, gflop, gbyte, intensity): one row
// per op, one row per category (op "*"), one "total" row; --md, a table.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "model.h"

typedef enum { CAT_MATMUL, CAT_ATTENTION, CAT_OTHER, CAT_OPTIMIZER, N_CATS } Category;
static const char *const CAT_NAMES[N_CATS] = {"matmul", "attention", "other", "optimizer"};

typedef struct {
    const char *op;
    Category cat;
    long calls;
    double flop, byte;
} Count;

#define MAX_OPS 64
static Count g_counts[MAX_OPS];
static int g_n_counts = 0;

static void count(const char *op, Category cat, double flop, double byte) {
    int i = 0;
    while (i < g_n_counts && strcmp(g_counts[i].op, op)) i++;
    if (i == g_n_counts) {
        if (g_n_counts == MAX_OPS) {
            fprintf(stderr, "roofline: more than %d ops\n", MAX_OPS);
            exit(1);
        }
        g_counts[g_n_counts++] = (Count){op, cat, 0, 0, 0};
    }
    g_counts[i].calls++;
    g_counts[i].flop += flop;
    g_counts[i].byte += byte;
}

#define F4 4.0  // bytes of an fp32 element

// --- memory: real (lazily mapped) host buffers that no op touches ----------------
static void *r_alloc(size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "roofline: out of (virtual) memory for %zu bytes\n", bytes);
        exit(1);
    }
    return p;
}
static void r_release(void *p) { free(p); }
static void r_upload(void *dst, const void *src, size_t bytes) { (void)dst, (void)src, (void)bytes; }
static void r_download(void *dst, const void *src, size_t bytes) {
    (void)src;
    memset(dst, 0, bytes);  // losses 0, nothing correct: the step's control flow does not depend on them
}
static void r_copy(void *dst, const void *src, size_t bytes) {
    (void)dst, (void)src;
    count("copy", CAT_OTHER, 0, 2.0 * bytes);
}
static void r_zero(void *p, size_t bytes) {
    (void)p;
    count("zero", CAT_OTHER, 0, (double)bytes);
}
static void r_synchronize(void) {}
static size_t r_attention_workspace_bytes(const AttnShape *s, int lsh) { return (void)s, (void)lsh, 256; }
static size_t r_scratch_bytes(ScratchOp op, size_t a, size_t b, size_t c) { return (void)op, (void)a, (void)b, (void)c, 0; }
static void r_reserve_scratch(size_t bytes) { (void)bytes; }
static void r_release_scratch(void) {}
static int r_device_memory(size_t *held, size_t *used, size_t *free_bytes) {
    return *held = *used = *free_bytes = 0, -1;
}
// Sequence-sharded attention (sp > 1) is not counted: the table is per replica at sp = 1.
static void r_sorted_unsupported(void) {
    fprintf(stderr, "roofline: sequence-sharded attention (sp > 1) is not counted; use sp=1\n");
    exit(2);
}
static void r_lsh_sorted_forward(real *so, real *slse, const real *sq, const real *sv, const int *spos,
                                 const int *srun, int lanes, int n, int m, int dh, void *work) {
    (void)so, (void)slse, (void)sq, (void)sv, (void)spos, (void)srun, (void)lanes, (void)n, (void)m, (void)dh;
    (void)work;
    r_sorted_unsupported();
}
static void r_lsh_sorted_backward(real *dsq, real *dsv, const real *dso, const real *dslse, const real *so,
                                  const real *slse, const real *sq, const real *sv, const int *spos, const int *srun,
                                  int lanes, int n, int m, int dh, void *work) {
    (void)dsq, (void)dsv, (void)dso, (void)dslse, (void)so, (void)slse, (void)sq, (void)sv, (void)spos, (void)srun;
    (void)lanes, (void)n, (void)m, (void)dh, (void)work;
    r_sorted_unsupported();
}
static size_t r_lsh_sorted_workspace_bytes(int n, int m, int dh) { return (void)n, (void)m, (void)dh, 0; }

// --- dense -----------------------------------------------------------------------
static void r_matmul(real *C, const real *A, const real *B, int M, int N, int K, int ta, int tb, real beta) {
    (void)C, (void)A, (void)B, (void)ta, (void)tb;
    double m = M, n = N, k = K;
    count("matmul", CAT_MATMUL, 2 * m * n * k, F4 * (m * k + k * n + m * n * (beta != 0 ? 2 : 1)));
}
static void r_bias_forward(real *out, const real *bias, int N, int C) {
    (void)out, (void)bias;
    count("bias_forward", CAT_OTHER, (double)N * C, F4 * (2.0 * N * C + C));
}
static void r_bias_backward(real *db, const real *dout, int N, int C) {
    (void)db, (void)dout;
    count("bias_backward", CAT_OTHER, (double)N * C, F4 * ((double)N * C + 2.0 * C));
}
static void r_axpy(real *y, const real *x, real alpha, size_t n) {
    (void)y, (void)x, (void)alpha;
    count("axpy", CAT_OTHER, 2.0 * n, F4 * 3.0 * n);
}
static void r_scale(real *x, real alpha, size_t n) {
    (void)x, (void)alpha;
    count("scale", CAT_OTHER, (double)n, F4 * 2.0 * n);
}
static double r_sum_squares(const real *x, size_t n) {
    (void)x;
    count("sum_squares", CAT_OPTIMIZER, 2.0 * n, F4 * n);
    return 0;
}
static void r_copy_2d(real *dst, size_t ds, const real *src, size_t ss, size_t rows, size_t width) {
    (void)dst, (void)ds, (void)src, (void)ss;
    count("copy_2d", CAT_OTHER, 0, F4 * 2.0 * rows * width);
}
static void r_concat_rows(real *out, const real *a, const real *b, int N, int C) {
    (void)out, (void)a, (void)b;
    count("concat_rows", CAT_OTHER, 0, F4 * 4.0 * N * C);
}
static void r_split_rows(real *a, real *b, const real *in, int N, int C) {
    (void)a, (void)b, (void)in;
    count("split_rows", CAT_OTHER, 0, F4 * 4.0 * N * C);
}

// --- embeddings ---------------------------------------------------------------------
static void r_embedding_forward(real *out, const int *tokens, const real *table, int N, int C) {
    (void)out, (void)tokens, (void)table;
    count("embedding_forward", CAT_OTHER, 0, F4 * (2.0 * N * C + N));
}
static void r_embedding_backward(real *dt, const real *dout, const int *tokens, int N, int C) {
    (void)dt, (void)dout, (void)tokens;
    count("embedding_backward", CAT_OTHER, (double)N * C, F4 * (3.0 * N * C + N));
}
static int axial_width(const int *dims, int n_axes) {
    int d = 0;
    for (int i = 0; i < n_axes; i++) d += dims[i];
    return d;
}
static void r_axial_forward(real *out, real *const *t, const int *shape, const int *dims, int n_axes, int batch, int len,
                            int pos_offset) {
    (void)out, (void)t, (void)shape, (void)pos_offset;
    double e = (double)batch * len * axial_width(dims, n_axes);
    count("axial_forward", CAT_OTHER, e, F4 * 2.0 * e);
}
static void r_axial_backward(real *const *dt, const real *dout, const int *shape, const int *dims, int n_axes,
                             int batch, int len, int pos_offset) {
    (void)dt, (void)dout, (void)shape, (void)pos_offset;
    double e = (double)batch * len * axial_width(dims, n_axes);
    count("axial_backward", CAT_OTHER, e, F4 * e);
}

// --- normalisation and pointwise ------------------------------------------------------
static void r_layernorm_forward(real *out, real *mean, real *rstd, const real *x, const real *g, const real *b, int N,
                                int C, real eps) {
    (void)out, (void)mean, (void)rstd, (void)x, (void)g, (void)b, (void)eps;
    // mean, variance, normalise, scale and shift: ~8 per element
    count("layernorm_forward", CAT_OTHER, 8.0 * N * C, F4 * (2.0 * N * C + 2.0 * N + 2.0 * C));
}
static void r_layernorm_backward(real *dx, real *dg, real *db, const real *dout, const real *x, const real *g,
                                 const real *mean, const real *rstd, int N, int C) {
    (void)dx, (void)dg, (void)db, (void)dout, (void)x, (void)g, (void)mean, (void)rstd;
    // dx (accumulated: read and written), two row dots, dg and db: ~14 per element
    count("layernorm_backward", CAT_OTHER, 14.0 * N * C, F4 * (4.0 * N * C + 2.0 * N + 3.0 * C));
}
static void r_activation_forward(real *out, const real *in, size_t n, Activation act) {
    (void)out, (void)in;
    count("activation_forward", CAT_OTHER, (act == ACT_GELU ? 10.0 : 1.0) * n, F4 * 2.0 * n);
}
static void r_activation_backward(real *din, const real *dout, const real *in, size_t n, Activation act) {
    (void)din, (void)dout, (void)in;
    count("activation_backward", CAT_OTHER, (act == ACT_GELU ? 16.0 : 2.0) * n, F4 * 3.0 * n);
}
static void r_dropout(real *x, size_t n, size_t offset, float p, uint64_t seed, uint32_t step, uint32_t tag) {
    (void)x, (void)offset, (void)seed, (void)step, (void)tag;
    if (p > 0) count("dropout", CAT_OTHER, (double)n, F4 * 2.0 * n);  // Philox not counted
}

// --- attention --------------------------------------------------------------------------
static double pairs_of(const AttnShape *s) { return (double)s->batch * s->n_heads; }
// (query, key) pairs an LSH layer computes per (batch, head): n = R L items in
// chunks of m; a chunk's queries see 2m keys (m with one chunk).
static double lsh_qk(const AttnShape *s) {
    double n = (double)attn_items(s), m = s->chunk_len;
    return n * (n > m ? 2 * m : m);
}
// Local: chunk 0 sees the causal part of itself, later chunks also the whole
// previous chunk.
static double local_qk(const AttnShape *s) {
    double m = s->chunk_len, nc = (double)s->seq_len / s->chunk_len;
    return nc * m * (m + 1) / 2 + (nc - 1) * m * m;
}
static void r_lsh_hash(uint16_t *bk, const real *qk, const AttnShape *s, uint64_t seed, uint32_t step, uint32_t layer,
                       void *work) {
    (void)bk, (void)qk, (void)seed, (void)step, (void)layer, (void)work;
    // The projections onto the W = lsh_rotation_width columns of every round
    // (nb/2 unfactorised, f1/2 + f2/2 + ... factorised); the argmax is not counted.
    double P = pairs_of(s), L = s->seq_len, dh = s->d_head, R = s->n_hashes;
    double W = lsh_rotation_width(s->n_buckets, s->bucket_factors);
    count("lsh_hash", CAT_ATTENTION, 2 * P * L * dh * R * W, P * (F4 * L * dh + 2.0 * R * L));
}
static void r_lsh_forward(real *out, real *saved, const real *qk, const real *v, const uint16_t *bk,
                          const AttnShape *s, void *work) {
    (void)out, (void)saved, (void)qk, (void)v, (void)bk, (void)work;
    double P = pairs_of(s), L = s->seq_len, dh = s->d_head, n = (double)attn_items(s);
    // read qk, v, buckets; write out and the saved per-round outputs + lse
    count("lsh_attention_forward", CAT_ATTENTION, 4 * P * lsh_qk(s) * dh,
          P * (F4 * (2 * L * dh + L * dh + n * (dh + 1)) + 2.0 * n));
}
static void r_lsh_backward(real *dqk, real *dv, const real *dout, const real *out, const real *saved, const real *qk,
                           const real *v, const uint16_t *bk, const AttnShape *s, void *work) {
    (void)dqk, (void)dv, (void)dout, (void)out, (void)saved, (void)qk, (void)v, (void)bk, (void)work;
    double P = pairs_of(s), L = s->seq_len, dh = s->d_head, n = (double)attn_items(s);
    // read qk, v, dout, out, saved, buckets; write dqk, dv
    count("lsh_attention_backward", CAT_ATTENTION, 10 * P * lsh_qk(s) * dh,
          P * (F4 * (4 * L * dh + n * (dh + 1) + 2 * L * dh) + 2.0 * n));
}
static void r_local_forward(real *out, real *lse, const real *q, const real *k, const real *v, const AttnShape *s,
                            void *work) {
    (void)out, (void)lse, (void)q, (void)k, (void)v, (void)work;
    double P = pairs_of(s), L = s->seq_len, dh = s->d_head;
    count("local_attention_forward", CAT_ATTENTION, 4 * P * local_qk(s) * dh, P * F4 * (4 * L * dh + L));
}
static void r_local_backward(real *dq, real *dk, real *dv, const real *dout, const real *out, const real *lse,
                             const real *q, const real *k, const real *v, const AttnShape *s, void *work) {
    (void)dq, (void)dk, (void)dv, (void)dout, (void)out, (void)lse, (void)q, (void)k, (void)v, (void)work;
    double P = pairs_of(s), L = s->seq_len, dh = s->d_head;
    count("local_attention_backward", CAT_ATTENTION, 10 * P * local_qk(s) * dh, P * F4 * (8 * L * dh + L));
}

// --- loss and optimiser ---------------------------------------------------------------------
static void r_xent(real *logits, real *losses, int *correct, const int *targets, int N, int V, real dscale) {
    (void)logits, (void)losses, (void)correct, (void)targets, (void)dscale;
    // max, exp, sum, gradient: ~5 per logit; logits read and overwritten in place
    count("xent_forward_backward", CAT_OTHER, 5.0 * N * V, F4 * (2.0 * N * V + 3.0 * N));
}
static void r_adamw(real *p, real *m, real *v, const real *g, size_t n, float lr, float b1, float b2, float eps,
                    float wd, float gs, int t) {
    (void)p, (void)m, (void)v, (void)g, (void)lr, (void)b1, (void)b2, (void)eps, (void)wd, (void)gs, (void)t;
    // ~15 per parameter (moments, bias corrections, sqrt, divide, decay); reads p m v g, writes p m v
    count("adamw", CAT_OPTIMIZER, 15.0 * n, F4 * 7.0 * n);
}

static Backend counting_backend(void) {
    Backend b;
    memset(&b, 0, sizeof b);
    b.name = "roofline";
    b.alloc_align = 1;  // (a size, not an op: nonzero so check_complete passes it)
    b.alloc = r_alloc, b.release = r_release, b.upload = r_upload, b.download = r_download;
    b.copy = r_copy, b.zero = r_zero, b.synchronize = r_synchronize;
    b.attention_workspace_bytes = r_attention_workspace_bytes, b.scratch_bytes = r_scratch_bytes;
    b.reserve_scratch = r_reserve_scratch, b.release_scratch = r_release_scratch, b.device_memory = r_device_memory;
    b.matmul = r_matmul, b.matmul_bf16 = r_matmul, b.bias_forward = r_bias_forward, b.bias_backward = r_bias_backward;
    b.axpy = r_axpy, b.scale = r_scale, b.sum_squares = r_sum_squares, b.copy_2d = r_copy_2d;
    b.concat_rows = r_concat_rows, b.split_rows = r_split_rows;
    b.embedding_forward = r_embedding_forward, b.embedding_backward = r_embedding_backward;
    b.axial_forward = r_axial_forward, b.axial_backward = r_axial_backward;
    b.layernorm_forward = r_layernorm_forward, b.layernorm_backward = r_layernorm_backward;
    b.activation_forward = r_activation_forward, b.activation_backward = r_activation_backward;
    b.dropout = r_dropout, b.lsh_hash = r_lsh_hash;
    b.lsh_attention_forward = r_lsh_forward, b.lsh_attention_backward = r_lsh_backward;
    b.local_attention_forward = r_local_forward, b.local_attention_backward = r_local_backward;
    b.xent_forward_backward = r_xent, b.adamw = r_adamw, b.matmul_tf32 = r_matmul;
    b.lsh_sorted_forward = r_lsh_sorted_forward, b.lsh_sorted_backward = r_lsh_sorted_backward;
    b.lsh_sorted_workspace_bytes = r_lsh_sorted_workspace_bytes;
    return b;
}

// Verify the table covers every op of core/backend.h: no entry left NULL.
static void check_complete(const Backend *b) {
    const void *const *slot = (const void *const *)((const char *)b + sizeof(const char *));
    size_t n = (sizeof *b - sizeof(const char *)) / sizeof(void *);
    for (size_t i = 0; i < n; i++)
        if (!slot[i]) {
            fprintf(stderr, "roofline: Backend entry %zu is not counted (core/backend.h grew: add it here)\n", i);
            exit(1);
        }
}

static void print_model(const char *name, const Config *c, long tokens, int md) {
    double cf[N_CATS] = {0}, cb[N_CATS] = {0};
    for (int i = 0; i < g_n_counts; i++) cf[g_counts[i].cat] += g_counts[i].flop, cb[g_counts[i].cat] += g_counts[i].byte;
    double tf = 0, tb = 0;
    for (int k = 0; k < N_CATS; k++) tf += cf[k], tb += cb[k];
    if (md) {
        printf("\n## %s: seq_len %d, d_model %d, d_ff %d, %d heads (d_head %d), %d layers (%s), %d hashes, "
               "lsh_chunk %d, local_chunk %d, batch %d\n\n",
               name, c->seq_len, c->d_model, c->d_ff, c->n_heads, c->d_head, c->n_layers, c->attn_layers, c->n_hashes,
               c->lsh_chunk, c->local_chunk, c->batch);
        printf("One training step (%ld tokens): forward, reversible recompute and backward, AdamW.\n\n", tokens);
        printf("| category | op | calls | GFLOP | GB | FLOP/B | share of FLOPs |\n|---|---|---|---|---|---|---|\n");
        for (int k = 0; k < N_CATS; k++) {
            for (int i = 0; i < g_n_counts; i++) {
                const Count *q = &g_counts[i];
                if (q->cat != (Category)k) continue;
                printf("| %s | %s | %ld | %.1f | %.2f | %.1f | %.1f%% |\n", CAT_NAMES[k], q->op, q->calls, q->flop / 1e9,
                       q->byte / 1e9, q->byte > 0 ? q->flop / q->byte : 0, 100 * q->flop / tf);
            }
            printf("| **%s** | | | **%.1f** | **%.2f** | %.1f | %.1f%% |\n", CAT_NAMES[k], cf[k] / 1e9, cb[k] / 1e9,
                   cb[k] > 0 ? cf[k] / cb[k] : 0, 100 * cf[k] / tf);
        }
        printf("| **total** | | | **%.1f** | **%.2f** | %.1f | 100%% |\n", tf / 1e9, tb / 1e9, tf / tb);
        return;
    }
    for (int i = 0; i < g_n_counts; i++) {
        const Count *q = &g_counts[i];
        printf("%s\t%s\t%s\t%ld\t%.3f\t%.4f\t%.2f\n", name, CAT_NAMES[q->cat], q->op, q->calls, q->flop / 1e9,
               q->byte / 1e9, q->byte > 0 ? q->flop / q->byte : 0);
    }
    for (int k = 0; k < N_CATS; k++)
        printf("%s\t%s\t*\t0\t%.3f\t%.4f\t%.2f\n", name, CAT_NAMES[k], cf[k] / 1e9, cb[k] / 1e9,
               cb[k] > 0 ? cf[k] / cb[k] : 0);
    printf("%s\ttotal\t*\t0\t%.3f\t%.4f\t%.2f\n", name, tf / 1e9, tb / 1e9, tf / tb);
}

int main(int argc, char **argv) {
    int md = argc == 3 && !strcmp(argv[1], "--md");
    if (argc != 2 && !md) {
        fprintf(stderr, "usage: roofline [--md] experiments/roofline/configs.txt\n");
        return 2;
    }
    FILE *f = fopen(argv[argc - 1], "r");
    if (!f) {
        perror(argv[argc - 1]);
        return 1;
    }
    static const Backend *be;
    static Backend table;
    table = counting_backend();
    check_complete(&table);
    be = &table;
    if (md)
        printf("# Roofline: FLOPs and bytes of one training step\n\n"
               "Computed without a GPU by `build/roofline --md experiments/roofline/configs.txt` (`make roofline`),\n"
               "which drives the real model step through a counting backend; the counting rules are in\n"
               "experiments/roofline/roofline.c. `cuda/device_check.sh` divides these FLOPs by the measured\n"
               "time of each category (reformer bench's shares) for achieved TFLOP/s and fraction of peak.\n");
    else printf("model\tcategory\top\tcalls\tgflop\tgbyte\tflop_per_byte\n");
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *name = strtok_r(line, " \t\n", &save);
        if (!name || name[0] == '#') continue;
        Config c;
        char err[256];
        config_defaults(&c);
        for (char *kv = strtok_r(NULL, " \t\n", &save); kv; kv = strtok_r(NULL, " \t\n", &save))
            if (config_set_pair(&c, kv, err, sizeof err)) {
                fprintf(stderr, "roofline: %s: %s\n", name, err);
                return 1;
            }
        if (config_finalize(&c, err, sizeof err)) {
            fprintf(stderr, "roofline: %s: %s\n", name, err);
            return 1;
        }
        Model m;
        model_init(&m, &c, be);
        int *tokens = calloc((size_t)m.T, sizeof(int)), *targets = calloc((size_t)m.T, sizeof(int));
        g_n_counts = 0;
        model_forward_backward(&m, tokens, targets, 1);
        model_update(&m, 1, c.lr);
        print_model(name, &c, (long)m.T, md);
        free(tokens), free(targets);
        model_free(&m);
    }
    fclose(f);
    return 0;
}
