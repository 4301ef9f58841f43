// The blocked algorithm of the CUDA tensor-core attention path
// (cuda/attention_gemm.cuh), run on the CPU in double precision with the same
// block geometry (core/attention_blocks.h), against the CPU reference
// attention (core/attention_cpu.c): the key windows (previous chunk, cyclic
// for LSH, none for local chunk 0), the masks and self-mask, the logsumexp
// kept per item, the backward through P, dP, dS with the round weights and
// Dm, the key gradients as own half + previous half of the windows, and the
// LSH key-normalisation backward. What only a GPU can check (the kernels,
// cuBLAS, slices) test_cuda checks there.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention_blocks.h"
#include "attention_cpu.h"
#include "backend.h"
#include "gradcheck.h"  // fill_normal, rel_err

static double *dcalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    cr_assert_not_null(p);
    return p;
}

typedef struct {
    AttnShape s;
    int lsh, n;
    const real *q, *k, *v;  // [B, L, HD] (LSH: q is qk)
    const int *pos;         // LSH: [pairs, n] position of each sorted item; NULL local
    double *rn;             // LSH: [pairs, L]
} Emu;

static size_t row_of(const Emu *e, int pair, int p) {
    const AttnShape *s = &e->s;
    return ((size_t)(pair / s->n_heads) * s->seq_len + p) * s->n_heads * s->d_head +
           (size_t)(pair % s->n_heads) * s->d_head;
}
static int pos_of(const Emu *e, int pair, int item) { return e->pos ? e->pos[(size_t)pair * e->n + item] : item; }
static double key_at(const Emu *e, int pair, int p, int d) {
    size_t r = row_of(e, pair, p) + d;
    return e->lsh ? e->q[r] * e->rn[(size_t)pair * e->s.seq_len + p] : e->k[r];
}

// Logits of block c of a pair: S [m, kw] with the roles applied (masked:
// -inf), kpos [kw].
static void block_logits(const Emu *e, const BlockGeom *g, int pair, int c, double *S, int *kpos, double scale) {
    const int dh = e->s.d_head;
    for (int u = 0; u < g->kw; u++) {
        int item = block_key_item(g, c, u);
        kpos[u] = item < 0 ? INT_MAX : pos_of(e, pair, item);
    }
    for (int i = 0; i < g->m; i++) {
        int qp = pos_of(e, pair, c * g->m + i);
        const real *qr = e->q + row_of(e, pair, qp);
        for (int u = 0; u < g->kw; u++) {
            int role = block_logit_role(e->lsh, qp, kpos[u]);
            double z = 0;
            if (role == 2)
                for (int d = 0; d < dh; d++) z += qr[d] * key_at(e, pair, kpos[u], d);
            S[(size_t)i * g->kw + u] = role == 0 ? -INFINITY : role == 1 ? (double)MASK_SELF : z * scale;
        }
    }
}

// Forward: per-item outputs O [pairs, n, dh] and lse [pairs, n].
static void emu_forward(const Emu *e, double *O, double *lse) {
    const AttnShape *s = &e->s;
    const int pairs = s->batch * s->n_heads, dh = s->d_head;
    const BlockGeom g = block_geom(e->n, s->chunk_len, e->lsh);
    const double scale = e->lsh ? 1.0 : 1.0 / sqrt((double)dh);
    double *S = dcalloc((size_t)g.m * g.kw);
    int *kpos = calloc((size_t)g.kw, sizeof(int));
    for (int pair = 0; pair < pairs; pair++)
        for (int c = 0; c < g.nc; c++) {
            block_logits(e, &g, pair, c, S, kpos, scale);
            for (int i = 0; i < g.m; i++) {
                double *z = S + (size_t)i * g.kw, mx = -INFINITY, sum = 0;
                for (int u = 0; u < g.kw; u++) mx = fmax(mx, z[u]);
                for (int u = 0; u < g.kw; u++) sum += z[u] == -INFINITY ? 0 : exp(z[u] - mx);
                const double l = mx + log(sum);
                const size_t t = (size_t)pair * e->n + c * g.m + i;
                lse[t] = l;
                for (int d = 0; d < dh; d++) O[t * dh + d] = 0;
                for (int u = 0; u < g.kw; u++) {
                    if (z[u] == -INFINITY) continue;
                    const double p = exp(z[u] - l);
                    const real *vr = e->v + row_of(e, pair, kpos[u]);
                    for (int d = 0; d < dh; d++) O[t * dh + d] += p * vr[d];
                }
            }
        }
    free(S), free(kpos);
}

// Backward from per-item dO [pairs, n, dh] and Dm [pairs, n]: item-space
// dQ, dK (own + previous halves), dV.
static void emu_backward(const Emu *e, const double *lse, const double *dO, const double *Dm, double *dQ, double *dK,
                         double *dV) {
    const AttnShape *s = &e->s;
    const int pairs = s->batch * s->n_heads, dh = s->d_head;
    const BlockGeom g = block_geom(e->n, s->chunk_len, e->lsh);
    const double scale = e->lsh ? 1.0 : 1.0 / sqrt((double)dh);
    double *S = dcalloc((size_t)g.m * g.kw), *wk = dcalloc((size_t)g.kw * dh), *wv = dcalloc((size_t)g.kw * dh);
    int *kpos = calloc((size_t)g.kw, sizeof(int));
    memset(dK, 0, (size_t)pairs * e->n * dh * sizeof(double));
    memset(dV, 0, (size_t)pairs * e->n * dh * sizeof(double));
    for (int pair = 0; pair < pairs; pair++)
        for (int c = 0; c < g.nc; c++) {
            block_logits(e, &g, pair, c, S, kpos, scale);
            memset(wk, 0, (size_t)g.kw * dh * sizeof(double));
            memset(wv, 0, (size_t)g.kw * dh * sizeof(double));
            for (int i = 0; i < g.m; i++) {
                const size_t t = (size_t)pair * e->n + c * g.m + i;
                const int qp = pos_of(e, pair, c * g.m + i);
                const real *qr = e->q + row_of(e, pair, qp);
                for (int d = 0; d < dh; d++) dQ[t * dh + d] = 0;
                for (int u = 0; u < g.kw; u++) {
                    const double z = S[(size_t)i * g.kw + u];
                    if (z == -INFINITY) continue;
                    const double p = exp(z - lse[t]);
                    const real *vr = e->v + row_of(e, pair, kpos[u]);
                    double dp = 0;
                    for (int d = 0; d < dh; d++) dp += dO[t * dh + d] * vr[d];
                    const int role = block_logit_role(e->lsh, qp, kpos[u]);
                    const double ds = role == 2 ? p * (dp - Dm[t]) : 0;
                    for (int d = 0; d < dh; d++) {
                        dQ[t * dh + d] += scale * ds * key_at(e, pair, kpos[u], d);
                        wk[(size_t)u * dh + d] += scale * ds * qr[d];
                        wv[(size_t)u * dh + d] += p * dO[t * dh + d];
                    }
                }
            }
            // The window's halves into the keys' gradients.
            for (int u = 0; u < g.kw; u++) {
                int item = block_key_item(&g, c, u);
                if (item < 0) continue;
                for (int d = 0; d < dh; d++) {
                    dK[((size_t)pair * e->n + item) * dh + d] += wk[(size_t)u * dh + d];
                    dV[((size_t)pair * e->n + item) * dh + d] += wv[(size_t)u * dh + d];
                }
            }
        }
    free(S), free(wk), free(wv), free(kpos);
}

// One shape: LSH (buckets from the CPU hash, or none with one chunk) or local.
static void check_shape(AttnShape s, int lsh) {
    const Backend *cpu = backend_cpu();
    const int B = s.batch, L = s.seq_len, H = s.n_heads, dh = s.d_head, R = s.n_hashes, pairs = B * H;
    const size_t nx = (size_t)B * L * H * dh;
    const int n = lsh ? (int)attn_items(&s) : L;
    real *q = calloc(nx, sizeof(real)), *k = calloc(nx, sizeof(real)), *v = calloc(nx, sizeof(real));
    real *dout = calloc(nx, sizeof(real)), *out = calloc(nx, sizeof(real));
    fill_normal(q, nx, 1, 11), fill_normal(k, nx, 1, 12), fill_normal(v, nx, 1, 13), fill_normal(dout, nx, 1, 14);
    void *work = calloc(cpu->attention_workspace_bytes(&s, lsh), 1);
    const size_t nsaved = lsh ? lsh_saved_elems(&s) : local_saved_elems(&s);
    real *saved = calloc(nsaved, sizeof(real));
    uint16_t *bk = NULL;
    int *pos = NULL;
    Emu e = {.s = s, .lsh = lsh, .n = n, .q = q, .k = k, .v = v};
    if (lsh) {
        if (s.n_buckets > 0) {
            bk = calloc((size_t)pairs * R * L, sizeof(uint16_t));
            cpu->lsh_hash(bk, q, &s, 7, 1, 0, work);
        }
        pos = calloc((size_t)pairs * n, sizeof(int));
        int *perm = calloc((size_t)n, sizeof(int)), *inv = calloc((size_t)n, sizeof(int));
        int *counts = calloc((size_t)(s.n_buckets > 0 ? s.n_buckets : 1), sizeof(int));
        for (int p = 0; p < pairs; p++) {
            lsh_sort_items(perm, inv, counts, bk ? bk + (size_t)p * R * L : NULL, L, R, s.n_buckets);
            for (int t = 0; t < n; t++) pos[(size_t)p * n + t] = perm[t] % L;
        }
        free(perm), free(inv), free(counts);
        e.pos = pos;
        e.rn = dcalloc((size_t)pairs * L);
        for (int p = 0; p < pairs; p++)
            for (int i = 0; i < L; i++) {
                double ss = 0;
                for (int d = 0; d < dh; d++) ss += (double)q[row_of(&e, p, i) + d] * q[row_of(&e, p, i) + d];
                e.rn[(size_t)p * L + i] = 1 / sqrt(ss + dh * KEY_NORM_EPS);
            }
        cpu->lsh_attention_forward(out, saved, q, v, bk, &s, work);
    } else {
        cpu->local_attention_forward(out, saved, q, k, v, &s, work);
    }
    double *O = dcalloc((size_t)pairs * n * dh), *lse = dcalloc((size_t)pairs * n);
    emu_forward(&e, O, lse);

    // Forward against the CPU: the saved lse of every item [pairs, n] (n = L
    // for local), and the output (LSH: the rounds combined with weights
    // softmax_r(lse), as lsh_combine_kernel does). 1e-5 norm-wise: float CPU
    // vs double here.
    real *got = calloc(nsaved > nx ? nsaved : nx, sizeof(real)), *ref = calloc(nsaved > nx ? nsaved : nx, sizeof(real));
    for (size_t t = 0; t < (size_t)pairs * n; t++) got[t] = (real)lse[t];
    cr_expect_lt(rel_err(got, saved, (size_t)pairs * n), 1e-5, "forward lse: %g", rel_err(got, saved, (size_t)pairs * n));
    double *comb = dcalloc(nx);
    for (int p = 0; p < pairs; p++)
        for (int i = 0; i < L; i++) {
            double mx = -INFINITY, sum = 0;
            for (int t = 0; t < n; t++)
                if (pos_of(&e, p, t) == i) mx = fmax(mx, lse[(size_t)p * n + t]);
            for (int t = 0; t < n; t++)
                if (pos_of(&e, p, t) == i) sum += exp(lse[(size_t)p * n + t] - mx);
            for (int t = 0; t < n; t++) {
                if (pos_of(&e, p, t) != i) continue;
                const double w = exp(lse[(size_t)p * n + t] - mx) / sum;
                for (int d = 0; d < dh; d++) comb[row_of(&e, p, i) + d] += w * O[((size_t)p * n + t) * dh + d];
            }
        }
    for (size_t j = 0; j < nx; j++) got[j] = (real)comb[j];
    cr_expect_lt(rel_err(got, out, nx), 1e-5, "forward out: %g", rel_err(got, out, nx));
    free(comb);

    // Backward: dO and Dm per item as lsh_prep_kernel / local_prep_kernel make them.
    double *dO = dcalloc((size_t)pairs * n * dh), *Dm = dcalloc((size_t)pairs * n);
    for (int p = 0; p < pairs; p++)
        for (int i = 0; i < L; i++) {
            const size_t row = row_of(&e, p, i);
            double dot = 0;
            for (int d = 0; d < dh; d++) dot += (double)dout[row + d] * out[row + d];
            // The items of position i: one per round (LSH), itself (local).
            int items[64], ni = 0;
            for (int t = 0; t < n; t++)
                if (pos_of(&e, p, t) == i) items[ni++] = t;
            cr_assert(ni >= 1 && ni <= 64);
            double mx = -INFINITY, sum = 0;
            for (int r = 0; r < ni; r++) mx = fmax(mx, lse[(size_t)p * n + items[r]]);
            for (int r = 0; r < ni; r++) sum += exp(lse[(size_t)p * n + items[r]] - mx);
            for (int r = 0; r < ni; r++) {
                const size_t t = (size_t)p * n + items[r];
                const double w = lsh ? exp(lse[t] - mx) / sum : 1;
                Dm[t] = w * dot;
                for (int d = 0; d < dh; d++) dO[t * dh + d] = w * dout[row + d];
            }
        }
    double *dQ = dcalloc((size_t)pairs * n * dh), *dK = dcalloc((size_t)pairs * n * dh), *dV = dcalloc((size_t)pairs * n * dh);
    emu_backward(&e, lse, dO, Dm, dQ, dK, dV);
    // To positions: LSH through the key normalisation, summed over rounds.
    double *gq = dcalloc(nx), *gk = dcalloc(nx), *gv = dcalloc(nx);
    for (int p = 0; p < pairs; p++)
        for (int t = 0; t < n; t++) {
            const int i = pos_of(&e, p, t);
            const size_t row = row_of(&e, p, i), at = ((size_t)p * n + t) * dh;
            double qdk = 0, r = lsh ? e.rn[(size_t)p * L + i] : 0;
            for (int d = 0; d < dh; d++) qdk += q[row + d] * dK[at + d];
            for (int d = 0; d < dh; d++) {
                double dk = lsh ? r * dK[at + d] - r * r * r * qdk * q[row + d] : dK[at + d];
                if (lsh) gq[row + d] += dQ[at + d] + dk;
                else gq[row + d] += dQ[at + d], gk[row + d] += dk;
                gv[row + d] += dV[at + d];
            }
        }
    real *cq = calloc(nx, sizeof(real)), *ck = calloc(nx, sizeof(real)), *cv = calloc(nx, sizeof(real));
    if (lsh) cpu->lsh_attention_backward(cq, cv, dout, out, saved, q, v, bk, &s, work);
    else cpu->local_attention_backward(cq, ck, cv, dout, out, saved, q, k, v, &s, work);
    real *fq = calloc(nx, sizeof(real)), *fk = calloc(nx, sizeof(real)), *fv = calloc(nx, sizeof(real));
    for (size_t j = 0; j < nx; j++) fq[j] = (real)gq[j], fk[j] = (real)gk[j], fv[j] = (real)gv[j];
    // 1e-4 norm-wise: float CPU (sums over 2m keys, R rounds) vs double here.
    cr_expect_lt(rel_err(fq, cq, nx), 1e-4, "%s dq: %g", lsh ? "lsh" : "local", rel_err(fq, cq, nx));
    if (!lsh) cr_expect_lt(rel_err(fk, ck, nx), 1e-4, "local dk: %g", rel_err(fk, ck, nx));
    cr_expect_lt(rel_err(fv, cv, nx), 1e-4, "%s dv: %g", lsh ? "lsh" : "local", rel_err(fv, cv, nx));

    free(q), free(k), free(v), free(dout), free(out), free(work), free(saved), free(bk), free(pos), free(e.rn);
    free(O), free(lse), free(got), free(ref), free(dO), free(Dm), free(dQ), free(dK), free(dV);
    free(gq), free(gk), free(gv), free(cq), free(ck), free(cv), free(fq), free(fk), free(fv);
}

static AttnShape shape(int B, int L, int H, int dh, int m, int R, int nb) {
    AttnShape s = {.batch = B, .seq_len = L, .n_heads = H, .d_head = dh, .chunk_len = m, .n_hashes = R,
                   .n_buckets = nb};
    return s;
}

Test(attention_blocks, lsh_several_chunks_cyclic) { check_shape(shape(2, 64, 2, 8, 8, 2, 8), 1); }
Test(attention_blocks, lsh_two_chunks) { check_shape(shape(1, 16, 2, 4, 8, 1, 2), 1); }
Test(attention_blocks, lsh_one_chunk_no_buckets) { check_shape(shape(1, 32, 2, 8, 32, 1, 0), 1); }
Test(attention_blocks, local_several_chunks) { check_shape(shape(2, 64, 2, 8, 8, 1, 0), 0); }
Test(attention_blocks, local_one_chunk) { check_shape(shape(1, 32, 3, 4, 32, 1, 0), 0); }
