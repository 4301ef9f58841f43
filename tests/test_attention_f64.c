// LSH and local attention: gradients against finite differences, the op
// against an independent naive implementation of REFORMER.md steps 4-8,
// special cases, causality, and the sort. Double precision throughout.
#include <criterion/criterion.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attention_cpu.h"
#include "backend.h"
#include "gradcheck.h"
#include "rng.h"

#define EPS 1e-6
#define TOL 1e-7  // see test_ops_f64.c for why this margin is safe

static const Backend *be;
static void setup(void) { be = backend_cpu(); }

static AttnShape shape(int B, int L, int H, int dh, int m, int R, int nb) {
    return (AttnShape){.batch = B, .seq_len = L, .n_heads = H, .d_head = dh, .chunk_len = m, .n_hashes = R,
                       .n_buckets = nb};
}

// Buckets hashed from qk by the backend (the shape's random rotations).
static uint16_t *hash(const real *qk, const AttnShape *s, void *work) {
    uint16_t *bk = calloc((size_t)s->batch * s->n_heads * s->n_hashes * s->seq_len, sizeof(uint16_t));
    be->lsh_hash(bk, qk, s, 42, 1, 0, work);
    return bk;
}

// --- an independent, naive LSH attention (REFORMER.md steps 1, 4-8) ---------

typedef struct {
    int r, i, bucket;
} Item;
static void naive_lsh(real *out, const real *qk, const real *v, const uint16_t *bk, const AttnShape *s) {
    const int B = s->batch, L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes, m = s->chunk_len;
    const int n = R * L, nc = n / m, HD = H * dh;
    Item *items = calloc(n, sizeof(Item));
    real *o = calloc((size_t)n * dh, sizeof(real)), *lse = calloc(n, sizeof(real));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            // Sort by (round, bucket, position) with an insertion sort (stable).
            int cnt = 0;
            for (int r = 0; r < R; r++)
                for (int i = 0; i < L; i++) {
                    Item it = {r, i, bk ? bk[(((size_t)b * H + h) * R + r) * L + i] : 0};
                    int j = cnt++;
                    while (j > 0 && (items[j - 1].r > it.r || (items[j - 1].r == it.r && items[j - 1].bucket > it.bucket)))
                        items[j] = items[j - 1], j--;
                    items[j] = it;
                }
#define QK(i, d) qk[((size_t)b * L + (i)) * HD + (size_t)h * dh + (d)]
#define V(i, d) v[((size_t)b * L + (i)) * HD + (size_t)h * dh + (d)]
            for (int t = 0; t < n; t++) {
                int c = t / m, qi = items[t].i;
                double z[4096];
                int keys[4096], nk = 0;
                if (s->strict) {
                    // Strict form: the newest m items of its own (round, bucket), itself included.
                    for (int u = t; u >= 0 && u > t - m && items[u].r == items[t].r &&
                                    items[u].bucket == items[t].bucket; u--)
                        keys[nk++] = u;
                } else {
                    if (nc > 1)
                        for (int u = 0; u < m; u++) keys[nk++] = ((c + nc - 1) % nc) * m + u;
                    for (int u = 0; u < m; u++) keys[nk++] = c * m + u;
                }
                double mx = -1e300;
                for (int j = 0; j < nk; j++) {
                    int kj = items[keys[j]].i;
                    double norm = 0, dotp = 0;
                    for (int d = 0; d < dh; d++) norm += QK(kj, d) * QK(kj, d);
                    norm = sqrt(norm + dh * 1e-6);
                    for (int d = 0; d < dh; d++) dotp += QK(qi, d) * QK(kj, d) / norm;
                    z[j] = kj > qi ? -1e9 : kj == qi ? -1e5 : dotp;
                    mx = fmax(mx, z[j]);
                }
                double sum = 0;
                for (int j = 0; j < nk; j++) sum += exp(z[j] - mx);
                lse[t] = mx + log(sum);
                for (int d = 0; d < dh; d++) {
                    double acc = 0;
                    for (int j = 0; j < nk; j++) acc += exp(z[j] - lse[t]) * V(items[keys[j]].i, d);
                    o[(size_t)t * dh + d] = acc;
                }
            }
            // Combine rounds: o_i = sum_r exp(lse_r - logsumexp_r lse_r) o_r.
            for (int i = 0; i < L; i++) {
                int at[64];
                for (int t = 0; t < n; t++)
                    if (items[t].i == i) at[items[t].r] = t;
                double mx = -1e300, sum = 0;
                for (int r = 0; r < R; r++) mx = fmax(mx, lse[at[r]]);
                for (int r = 0; r < R; r++) sum += exp(lse[at[r]] - mx);
                for (int d = 0; d < dh; d++) {
                    double acc = 0;
                    for (int r = 0; r < R; r++) acc += exp(lse[at[r]] - mx) / sum * o[(size_t)at[r] * dh + d];
                    out[((size_t)b * L + i) * HD + (size_t)h * dh + d] = acc;
                }
            }
#undef QK
#undef V
        }
    free(items);
    free(o);
    free(lse);
}

static void lsh_vs_naive_shape(AttnShape s) {
    size_t n = (size_t)s.batch * s.seq_len * s.n_heads * s.d_head;
    real *qk = new_vec(n, 1, 1), *v = new_vec(n, 1, 2), *out = new_vec(n, 0, 0), *ref = new_vec(n, 0, 0);
    void *work = calloc(1, be->attention_workspace_bytes(&s, 1));
    uint16_t *bk = hash(qk, &s, work);
    be->lsh_attention_forward(out, new_vec(lsh_saved_elems(&s), 0, 0), qk, v, bk, &s, work);
    naive_lsh(ref, qk, v, bk, &s);
    // Same maths in a different order: agreement to ~1e-15 in double.
    cr_expect_lt(rel_err(out, ref, n), 1e-12, "R=%d: %g", s.n_hashes, rel_err(out, ref, n));
}
static void lsh_vs_naive(int R) { lsh_vs_naive_shape(shape(2, 32, 2, 4, 8, R, 4)); }
Test(attention, lsh_matches_naive_r1, .init = setup) { lsh_vs_naive(1); }
Test(attention, lsh_matches_naive_r2, .init = setup) { lsh_vs_naive(2); }
Test(attention, lsh_matches_naive_r4, .init = setup) { lsh_vs_naive(4); }
// 48 chunks: the CPU kernel's groups of 16 chunks, and the wrap of chunk 0
// onto the last chunk across groups.
Test(attention, lsh_matches_naive_many_groups, .init = setup) { lsh_vs_naive_shape(shape(1, 96, 2, 4, 4, 2, 8)); }

// lsh_form=strict against the naive form of its rule (the newest m items of
// a query's own bucket). Few buckets (2) so that buckets outgrow the window,
// many buckets (16 in 32 positions) so that most are shorter than a chunk.
static AttnShape strict_shape(int B, int L, int H, int dh, int m, int R, int nb) {
    AttnShape s = shape(B, L, H, dh, m, R, nb);
    s.strict = 1;
    return s;
}
Test(attention, strict_lsh_matches_naive_r1, .init = setup) { lsh_vs_naive_shape(strict_shape(2, 32, 2, 4, 8, 1, 2)); }
Test(attention, strict_lsh_matches_naive_r2, .init = setup) { lsh_vs_naive_shape(strict_shape(2, 32, 2, 4, 8, 2, 4)); }
Test(attention, strict_lsh_matches_naive_r4, .init = setup) { lsh_vs_naive_shape(strict_shape(1, 32, 2, 4, 8, 4, 16)); }
Test(attention, strict_lsh_matches_naive_many_groups, .init = setup) {
    lsh_vs_naive_shape(strict_shape(1, 96, 2, 4, 4, 2, 8));
}
// The two forms differ (the standard form also sees other buckets' items).
Test(attention, strict_lsh_differs_from_standard, .init = setup) {
    AttnShape st = shape(1, 32, 2, 4, 8, 2, 4), sc = strict_shape(1, 32, 2, 4, 8, 2, 4);
    size_t n = (size_t)st.seq_len * st.n_heads * st.d_head;
    real *qk = new_vec(n, 1, 1), *v = new_vec(n, 1, 2), *a = new_vec(n, 0, 0), *b = new_vec(n, 0, 0);
    void *work = calloc(1, be->attention_workspace_bytes(&sc, 1));
    uint16_t *bk = hash(qk, &st, work);
    be->lsh_attention_forward(a, new_vec(lsh_saved_elems(&st), 0, 0), qk, v, bk, &st, work);
    be->lsh_attention_forward(b, new_vec(lsh_saved_elems(&sc), 0, 0), qk, v, bk, &sc, work);
    cr_expect_gt(rel_err(a, b, n), 1e-2, "strict and standard forms agree: %g", rel_err(a, b, n));
}

// Local attention against a direct implementation: query i of chunk c sees
// positions j <= i of chunks c-1 and c, logits q.k / sqrt(dh).
static void local_vs_naive(AttnShape s) {
    const int L = s.seq_len, H = s.n_heads, dh = s.d_head, m = s.chunk_len, HD = H * dh;
    size_t n = (size_t)s.batch * L * HD;
    real *q = new_vec(n, 1, 1), *k = new_vec(n, 1, 2), *v = new_vec(n, 1, 3), *out = new_vec(n, 0, 0);
    real *lse = new_vec(local_saved_elems(&s), 0, 0);
    void *work = calloc(1, be->attention_workspace_bytes(&s, 0));
    be->local_attention_forward(out, lse, q, k, v, &s, work);
    double worst = 0;
    for (int b = 0; b < s.batch; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < L; i++) {
                int lo = (i / m > 0 ? i / m - 1 : 0) * m;
                double z[512], mx = -1e300, sum = 0;
                for (int j = lo; j <= i; j++) {
                    double dp = 0;
                    for (int d = 0; d < dh; d++) dp += q[((size_t)b * L + i) * HD + h * dh + d] * k[((size_t)b * L + j) * HD + h * dh + d];
                    z[j - lo] = dp / sqrt((double)dh);
                    mx = fmax(mx, z[j - lo]);
                }
                for (int j = lo; j <= i; j++) sum += exp(z[j - lo] - mx);
                for (int d = 0; d < dh; d++) {
                    double acc = 0;
                    for (int j = lo; j <= i; j++) acc += exp(z[j - lo] - mx) / sum * v[((size_t)b * L + j) * HD + h * dh + d];
                    worst = fmax(worst, fabs(acc - out[((size_t)b * L + i) * HD + h * dh + d]));
                }
            }
    cr_expect_lt(worst, 1e-13, "max abs error %g", worst);
}
Test(attention, local_matches_naive, .init = setup) { local_vs_naive(shape(2, 32, 2, 4, 8, 1, 0)); }
Test(attention, local_matches_naive_many_groups, .init = setup) { local_vs_naive(shape(1, 136, 2, 4, 4, 1, 0)); }

Test(attention, hash_uses_all_buckets_and_is_deterministic, .init = setup) {
    AttnShape s = shape(1, 256, 2, 8, 16, 2, 8);
    size_t n = (size_t)s.seq_len * s.n_heads * s.d_head;
    real *qk = new_vec(n, 1, 3);
    void *work = calloc(1, be->attention_workspace_bytes(&s, 1));
    uint16_t *a = hash(qk, &s, work), *b = hash(qk, &s, work);
    int seen[8] = {0};
    for (int i = 0; i < s.n_heads * s.n_hashes * s.seq_len; i++) {
        cr_assert_eq(a[i], b[i]);
        cr_assert_lt(a[i], 8);
        seen[a[i]]++;
    }
    for (int k = 0; k < 8; k++) cr_expect_gt(seen[k], 0, "bucket %d unused", k);
    // Scale invariance: argmax of a rotation does not change with |x|.
    for (size_t i = 0; i < n; i++) qk[i] *= 3.5;
    uint16_t *c = hash(qk, &s, work);
    cr_expect_eq(memcmp(a, c, (size_t)s.n_heads * s.n_hashes * s.seq_len * 2), 0);
}

// The hash contract other backends must reproduce: Rot[d, r, j] =
// rng_normal(seed, (h << 32) | ((d*R + r)*half + j), step, tag(HASH, layer)),
// bucket = first argmax of [x Rot_r ; -x Rot_r].
Test(attention, hash_matches_naive_rotations, .init = setup) {
    AttnShape s = shape(2, 300, 3, 8, 20, 3, 12);  // 300 rows: more than one GEMM block
    const int L = s.seq_len, H = s.n_heads, dh = s.d_head, R = s.n_hashes, half = s.n_buckets / 2;
    size_t n = (size_t)s.batch * L * H * dh;
    real *qk = new_vec(n, 1, 8);
    void *work = calloc(1, be->attention_workspace_bytes(&s, 1));
    uint16_t *bk = calloc((size_t)s.batch * H * R * L, sizeof(uint16_t));
    be->lsh_hash(bk, qk, &s, 1234, 9, 5, work);
    for (int b = 0; b < s.batch; b++)
        for (int h = 0; h < H; h++)
            for (int r = 0; r < R; r++)
                for (int i = 0; i < L; i++) {
                    double best = -1e300;
                    int arg = -1;
                    for (int sign = 1; sign >= -1; sign -= 2)
                        for (int j = 0; j < half; j++) {
                            double p = 0;
                            for (int d = 0; d < dh; d++) {
                                uint64_t e = ((uint64_t)d * R + r) * half + j;
                                p += qk[((size_t)b * L + i) * H * dh + h * dh + d] *
                                     (real)rng_normal(1234, ((uint64_t)h << 32) | e, 9, rng_tag(RNG_HASH, 5, 0));
                            }
                            if (sign * p > best) best = sign * p, arg = (sign > 0 ? 0 : half) + j;
                        }
                    cr_assert_eq(bk[(((size_t)b * H + h) * R + r) * L + i], arg, "b=%d h=%d r=%d i=%d", b, h, r, i);
                }
}

// One bucket and one chunk covering the sequence: plain full shared-QK
// attention with the self mask (REFORMER.md step 12).
Test(attention, lsh_one_bucket_one_chunk_is_full_attention, .init = setup) {
    int L = 24, dh = 6;
    AttnShape s = shape(1, L, 1, dh, L, 1, 0);
    real *qk = new_vec(L * dh, 1, 4), *v = new_vec(L * dh, 1, 5), *out = new_vec(L * dh, 0, 0);
    void *work = calloc(1, be->attention_workspace_bytes(&s, 1));
    be->lsh_attention_forward(out, new_vec(lsh_saved_elems(&s), 0, 0), qk, v, NULL, &s, work);
    for (int i = 0; i < L; i++) {
        double z[64], mx = -1e300, sum = 0;
        for (int j = 0; j <= i; j++) {
            double nk = 0, dp = 0;
            for (int d = 0; d < dh; d++) nk += qk[j * dh + d] * qk[j * dh + d];
            for (int d = 0; d < dh; d++) dp += qk[i * dh + d] * qk[j * dh + d] / sqrt(nk + dh * 1e-6);
            z[j] = j == i ? -1e5 : dp;
            mx = fmax(mx, z[j]);
        }
        for (int j = 0; j <= i; j++) sum += exp(z[j] - mx);
        for (int d = 0; d < dh; d++) {
            double acc = 0;
            for (int j = 0; j <= i; j++) acc += exp(z[j] - mx) / sum * v[j * dh + d];
            cr_assert_float_eq(out[i * dh + d], acc, 1e-13, "i=%d d=%d", i, d);
        }
    }
    // Position 0 sees only itself (self mask is finite): output = v_0.
    for (int d = 0; d < dh; d++) cr_expect_float_eq(out[d], v[d], 1e-15);
}

// --- gradients ----------------------------------------------------------------

typedef struct {
    real *out, *saved, *qk, *k, *v, *w;
    uint16_t *bk;
    AttnShape s;
    void *work;
    int lsh;
} AttCtx;
static double att_f(void *p) {
    AttCtx *c = p;
    if (c->lsh) be->lsh_attention_forward(c->out, c->saved, c->qk, c->v, c->bk, &c->s, c->work);
    else be->local_attention_forward(c->out, c->saved, c->qk, c->k, c->v, &c->s, c->work);
    return dot_real(c->out, c->w, (size_t)c->s.batch * c->s.seq_len * c->s.n_heads * c->s.d_head);
}
static void attention_gradcheck(AttnShape s, int lsh) {
    size_t n = (size_t)s.batch * s.seq_len * s.n_heads * s.d_head;
    AttCtx c = {new_vec(n, 0, 0), new_vec(lsh ? lsh_saved_elems(&s) : local_saved_elems(&s), 0, 0), new_vec(n, 1, 1),
                new_vec(n, 1, 2), new_vec(n, 1, 3), new_vec(n, 1, 4), NULL, s, NULL, lsh};
    c.work = calloc(1, be->attention_workspace_bytes(&s, lsh));
    // Buckets fixed by one hashing: gradients do not flow through hashing,
    // and the backward reuses the forward's buckets.
    if (lsh && s.n_buckets > 0) c.bk = hash(c.qk, &s, c.work);
    att_f(&c);
    real *dq = new_vec(n, 0, 0), *dk = new_vec(n, 0, 0), *dv = new_vec(n, 0, 0), *num = new_vec(n, 0, 0);
    if (lsh) be->lsh_attention_backward(dq, dv, c.w, c.out, c.saved, c.qk, c.v, c.bk, &s, c.work);
    else be->local_attention_backward(dq, dk, dv, c.w, c.out, c.saved, c.qk, c.k, c.v, &s, c.work);
    numeric_grad(num, c.qk, n, EPS, att_f, &c);
    cr_expect_lt(rel_err(dq, num, n), TOL, "d%s: %g", lsh ? "qk" : "q", rel_err(dq, num, n));
    if (!lsh) {
        numeric_grad(num, c.k, n, EPS, att_f, &c);
        cr_expect_lt(rel_err(dk, num, n), TOL, "dk: %g", rel_err(dk, num, n));
    }
    numeric_grad(num, c.v, n, EPS, att_f, &c);
    cr_expect_lt(rel_err(dv, num, n), TOL, "dv: %g", rel_err(dv, num, n));
}
Test(attention, lsh_gradient_r1, .init = setup) { attention_gradcheck(shape(2, 32, 2, 4, 8, 1, 4), 1); }
Test(attention, lsh_gradient_r2, .init = setup) { attention_gradcheck(shape(2, 32, 2, 4, 8, 2, 4), 1); }
Test(attention, lsh_gradient_r4, .init = setup) { attention_gradcheck(shape(1, 32, 2, 4, 8, 4, 8), 1); }
Test(attention, lsh_gradient_full, .init = setup) { attention_gradcheck(shape(1, 16, 2, 4, 16, 1, 0), 1); }
Test(attention, local_gradient, .init = setup) { attention_gradcheck(shape(2, 32, 2, 4, 8, 1, 0), 0); }
Test(attention, local_gradient_full, .init = setup) { attention_gradcheck(shape(1, 16, 2, 4, 16, 1, 0), 0); }
// Past one group of chunks (16): gradients across group boundaries.
Test(attention, lsh_gradient_many_groups, .init = setup) { attention_gradcheck(shape(1, 96, 2, 4, 4, 2, 8), 1); }
Test(attention, strict_lsh_gradient_r1, .init = setup) { attention_gradcheck(strict_shape(2, 32, 2, 4, 8, 1, 2), 1); }
Test(attention, strict_lsh_gradient_r2, .init = setup) { attention_gradcheck(strict_shape(2, 32, 2, 4, 8, 2, 4), 1); }
Test(attention, strict_lsh_gradient_r4, .init = setup) { attention_gradcheck(strict_shape(1, 32, 2, 4, 8, 4, 16), 1); }
Test(attention, strict_lsh_gradient_many_groups, .init = setup) {
    attention_gradcheck(strict_shape(1, 96, 2, 4, 4, 2, 8), 1);
}
Test(attention, local_gradient_many_groups, .init = setup) { attention_gradcheck(shape(1, 136, 2, 4, 4, 1, 0), 0); }

// --- causality ----------------------------------------------------------------

// Changing position j's inputs changes no output at positions < j. For LSH
// this holds for a fixed bucket assignment: the sort by bucket lets a future
// token's bucket move chunk boundaries (see tests/test_model_f64.c).
static void causality(int lsh) {
    AttnShape s = lsh ? shape(1, 64, 2, 4, 8, 2, 8) : shape(1, 64, 2, 4, 8, 1, 0);
    size_t n = (size_t)s.seq_len * s.n_heads * s.d_head, row = (size_t)s.n_heads * s.d_head;
    real *q = new_vec(n, 1, 1), *k = new_vec(n, 1, 2), *v = new_vec(n, 1, 3), *a = new_vec(n, 0, 0), *b = new_vec(n, 0, 0);
    real *lse = new_vec(local_saved_elems(&s), 0, 0);
    void *work = calloc(1, be->attention_workspace_bytes(&s, lsh));
    uint16_t *bk = lsh ? hash(q, &s, work) : NULL;
    real *saved = new_vec(lsh_saved_elems(&s), 0, 0);
    for (int j = 1; j < s.seq_len; j += 7) {
        if (lsh) be->lsh_attention_forward(a, saved, q, v, bk, &s, work);
        else be->local_attention_forward(a, lse, q, k, v, &s, work);
        real *qj = calloc(row, sizeof(real));
        memcpy(qj, q + j * row, row * sizeof(real));
        for (size_t e = 0; e < row; e++) q[j * row + e] += 0.7, k[j * row + e] -= 0.3, v[j * row + e] *= -2;
        if (lsh) be->lsh_attention_forward(b, saved, q, v, bk, &s, work);
        else be->local_attention_forward(b, lse, q, k, v, &s, work);
        cr_assert_eq(memcmp(a, b, j * row * sizeof(real)), 0, "output before %d changed", j);
        cr_assert_neq(memcmp(a + j * row, b + j * row, row * sizeof(real)), 0, "output at %d unchanged", j);
        free(qj);
    }
}
Test(attention, lsh_causal_given_buckets, .init = setup) { causality(1); }

// lsh_form=strict: causal with the buckets hashed afresh after the change
// too (a changed query moves its own bucket, never an earlier query's keys).
Test(attention, strict_lsh_causal_with_fresh_buckets, .init = setup) {
    AttnShape s = strict_shape(1, 64, 2, 4, 8, 2, 8);
    size_t n = (size_t)s.seq_len * s.n_heads * s.d_head, row = (size_t)s.n_heads * s.d_head;
    real *q = new_vec(n, 1, 1), *v = new_vec(n, 1, 3), *a = new_vec(n, 0, 0), *b = new_vec(n, 0, 0);
    real *saved = new_vec(lsh_saved_elems(&s), 0, 0);
    void *work = calloc(1, be->attention_workspace_bytes(&s, 1));
    for (int j = 1; j < s.seq_len; j += 3) {
        uint16_t *bk = hash(q, &s, work);
        be->lsh_attention_forward(a, saved, q, v, bk, &s, work);
        for (size_t e = 0; e < row; e++) q[j * row + e] = -q[j * row + e] + 0.5, v[j * row + e] *= -2;
        uint16_t *bk2 = hash(q, &s, work);
        be->lsh_attention_forward(b, saved, q, v, bk2, &s, work);
        // Equal up to the order of the sums: a query's keys may sit in other
        // tile columns once later items move it in the sorted order (1e-14
        // relative in double; a leak of one key would be ~1e-1).
        cr_assert_lt(rel_err(a, b, j * row), 1e-14, "output before %d changed: %g", j, rel_err(a, b, j * row));
        free(bk);
        free(bk2);
    }
}
Test(attention, local_causal, .init = setup) { causality(0); }

// --- sort / un-sort -------------------------------------------------------------

Test(attention, sort_is_stable_and_inverse, .init = setup) {
    int L = 200, R = 3, nb = 16;
    uint16_t *bk = calloc((size_t)R * L, sizeof(uint16_t));
    for (int i = 0; i < R * L; i++) bk[i] = (uint16_t)((i * 7919u + (unsigned)(i / L) * 13u) % nb);
    int *perm = calloc(R * L, sizeof(int)), *inv = calloc(R * L, sizeof(int)), counts[16];
    lsh_sort_items(perm, inv, counts, bk, L, R, nb);
    for (int t = 0; t < R * L; t++) {
        cr_assert_eq(perm[inv[t]], t);
        cr_assert_eq(inv[perm[t]], t);
        if (t > 0) {  // strictly increasing key (round, bucket, position)
            int a = perm[t - 1], b = perm[t];
            long ka = (long)(a / L) * nb * L + (long)bk[a] * L + a % L;
            long kb = (long)(b / L) * nb * L + (long)bk[b] * L + b % L;
            cr_assert_lt(ka, kb, "order broken at %d", t);
        }
    }
    // Gather in sorted order, then scatter back: the identity, exactly.
    real *x = new_vec((size_t)R * L, 1, 9), *sorted = new_vec((size_t)R * L, 0, 0), *back = new_vec((size_t)R * L, 0, 0);
    for (int t = 0; t < R * L; t++) sorted[t] = x[perm[t]];
    for (int t = 0; t < R * L; t++) back[perm[t]] = sorted[t];
    cr_expect_eq(memcmp(x, back, (size_t)R * L * sizeof(real)), 0);
}

// --- threads ------------------------------------------------------------------
//
// With fewer (batch, head) lanes than threads, the threads run each lane
// together, in phases of groups of chunks (core/attention_cpu.c, run_lanes).
// Every output and gradient must be the same bits for any thread count, and
// the team's gradients must still be right.

typedef struct {
    real *out, *saved, *dq, *dk, *dv;
    uint16_t *bk;
} AttRun;

// Hash, forward and backward on `threads` threads, inputs from fixed seeds.
static AttRun run_on_threads(AttnShape s, int lsh, int threads) {
    omp_set_num_threads(threads);
    size_t n = (size_t)s.batch * s.seq_len * s.n_heads * s.d_head;
    size_t ns = lsh ? lsh_saved_elems(&s) : local_saved_elems(&s);
    real *q = new_vec(n, 1, 1), *k = new_vec(n, 1, 2), *v = new_vec(n, 1, 3), *w = new_vec(n, 1, 4);
    AttRun r = {new_vec(n, 0, 0), new_vec(ns, 0, 0), new_vec(n, 0, 0), new_vec(n, 0, 0), new_vec(n, 0, 0), NULL};
    void *work = calloc(1, be->attention_workspace_bytes(&s, lsh));
    if (lsh) {
        if (s.n_buckets > 0) r.bk = hash(q, &s, work);
        be->lsh_attention_forward(r.out, r.saved, q, v, r.bk, &s, work);
        be->lsh_attention_backward(r.dq, r.dv, w, r.out, r.saved, q, v, r.bk, &s, work);
    } else {
        be->local_attention_forward(r.out, r.saved, q, k, v, &s, work);
        be->local_attention_backward(r.dq, r.dk, r.dv, w, r.out, r.saved, q, k, v, &s, work);
    }
    free(work);
    return r;
}

static void same_bits_on_any_threads(AttnShape s, int lsh) {
    size_t n = (size_t)s.batch * s.seq_len * s.n_heads * s.d_head;
    size_t ns = lsh ? lsh_saved_elems(&s) : local_saved_elems(&s);
    size_t nbk = (size_t)s.batch * s.n_heads * s.n_hashes * s.seq_len;
    AttRun one = run_on_threads(s, lsh, 1);
    for (int t = 2; t <= 5; t++) {
        AttRun many = run_on_threads(s, lsh, t);
        if (one.bk) cr_expect(memcmp(one.bk, many.bk, nbk * sizeof(uint16_t)) == 0, "%d threads: buckets", t);
        cr_expect(memcmp(one.out, many.out, n * sizeof(real)) == 0, "%d threads: out", t);
        cr_expect(memcmp(one.saved, many.saved, ns * sizeof(real)) == 0, "%d threads: lse", t);
        cr_expect(memcmp(one.dq, many.dq, n * sizeof(real)) == 0, "%d threads: dq", t);
        cr_expect(memcmp(one.dk, many.dk, n * sizeof(real)) == 0, "%d threads: dk", t);
        cr_expect(memcmp(one.dv, many.dv, n * sizeof(real)) == 0, "%d threads: dv", t);
    }
}
// One and two lanes; 40 chunks a round: three groups per round (odd, even
// and first phases all busy), rounds 2 and 3, strict and standard; local.
Test(attention, lsh_same_bits_on_any_threads, .init = setup) { same_bits_on_any_threads(shape(1, 160, 1, 4, 4, 2, 8), 1); }
Test(attention, lsh_same_bits_on_any_threads_two_lanes, .init = setup) {
    same_bits_on_any_threads(shape(1, 160, 2, 4, 4, 3, 8), 1);
}
Test(attention, strict_lsh_same_bits_on_any_threads, .init = setup) {
    same_bits_on_any_threads(strict_shape(1, 160, 1, 4, 4, 2, 8), 1);
}
Test(attention, lsh_no_buckets_same_bits_on_any_threads, .init = setup) {
    same_bits_on_any_threads(shape(1, 40, 1, 4, 8, 1, 0), 1);
}
Test(attention, local_same_bits_on_any_threads, .init = setup) { same_bits_on_any_threads(shape(1, 168, 1, 4, 4, 1, 0), 0); }

// A team of three threads on one lane: gradients against finite differences.
Test(attention, lsh_gradient_team_of_threads, .init = setup) {
    omp_set_num_threads(3);
    attention_gradcheck(shape(1, 192, 1, 4, 4, 2, 8), 1);
}
Test(attention, strict_lsh_gradient_team_of_threads, .init = setup) {
    omp_set_num_threads(3);
    attention_gradcheck(strict_shape(1, 192, 1, 4, 4, 2, 8), 1);
}
Test(attention, local_gradient_team_of_threads, .init = setup) {
    omp_set_num_threads(3);
    attention_gradcheck(shape(1, 200, 1, 4, 4, 1, 0), 0);
}
