// CPU reference of LSH attention and local chunked attention (REFORMER.md).
//
// Both are one kernel: a sequence of n items cut into chunks of m, each chunk's
// queries attending to the keys of their own chunk and of the previous chunk.
// LSH runs it on the R*L items sorted by (round, bucket, position), with
// shared-QK keys, the self mask and a cyclic look-back; local attention runs
// it on positions in order. A chunk's logits live in one [m, 2m] tile, so
// memory is bounded by the chunk, never L x L (unless m = L: full attention).
//
// Work is split over (batch, head) pairs, "lanes". With at least as many
// lanes as threads, each thread runs whole lanes; with fewer (batch 1 and a
// one-head attention pass: the low-memory setting), the threads run each lane
// together, splitting its groups of chunks (run_lanes, below). Either way a
// position's sums are added in one fixed order, so results do not depend on
// the number of threads.
#include <assert.h>
#include <cblas.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "attention_cpu.h"
#include "backend.h"
#include "lsh_rules.h"
#include "rng.h"
#include "util.h"

#ifdef REFORMER_F64
#define cblas_gemm cblas_dgemm
#else
#define cblas_gemm cblas_sgemm
#endif

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// --- per-thread scratch -----------------------------------------------------
//
// Chunks are processed in groups of GROUP_CHUNKS: a group gathers the rows of
// its chunks plus the previous chunk, so a thread's scratch is bounded by the
// group (and, for LSH, the sort's index arrays), never a whole sequence of
// vectors: DESIGN.md's "chunks processed in bounded groups".
#define GROUP_CHUNKS 16

typedef struct {
    int *perm, *pos, *inv, *counts;       // LSH sort of one (b, h): [n] x3, [nb]
    int *rows, *rpos;                     // [gr]: item and position of each group row
    real *gq, *gk, *gv, *go, *gdo;        // [gr, dh]: the group's queries, keys, values, outputs
    real *gc;                             // [gr] backward: dout . out of each row's position (weighted)
    real *gdq, *gdk, *gdv;                // [gr, dh]: gradients of the group's rows
    real *tile_p, *tile_dp;               // [m, nk]: one chunk's logits and their gradient
    int *kpos, *kidx;                     // [nk]: positions and sorted indices of the chunk's keys
    unsigned char *kvis;                  // [nk]: which of them the current query sees (mask_row)
    int window;                           // lsh_form=strict: lsh_strict_window(m); 0: standard
    int *seg_lo;                          // strict, [n]: first sorted index of each item's (round, bucket)
    real *pos_acc, *pos_sum;              // [L] each: LSH forward: largest lse and weight sum of
                                          // the rounds seen; backward: pos_acc = dout . out
} Scratch;

static int n_chunks(const AttnShape *s) { return (int)(attn_items(s) / (size_t)s->chunk_len); }
static int n_keys(const AttnShape *s) { return n_chunks(s) > 1 ? 2 * s->chunk_len : s->chunk_len; }
// Rows of a group: up to GROUP_CHUNKS chunks, plus the previous one.
static size_t group_capacity(const AttnShape *s) {
    int nc = n_chunks(s);
    return (size_t)(MIN(GROUP_CHUNKS, nc) + (nc > 1)) * (size_t)s->chunk_len;
}

// Lay out one thread's scratch at base (or only measure it when base is NULL).
static size_t scratch_carve(Scratch *sc, char *base, const AttnShape *s) {
    size_t n = attn_items(s), dh = (size_t)s->d_head, m = (size_t)s->chunk_len, nk = (size_t)n_keys(s);
    size_t gr = group_capacity(s), off = 0;
#define CARVE(field, type, count)                                              \
    do {                                                                       \
        if (base) sc->field = (type *)(base + off);                            \
        off += (((size_t)(count) * sizeof(type)) + 63) & ~(size_t)63;          \
    } while (0)
    CARVE(perm, int, n);
    CARVE(pos, int, n);
    CARVE(inv, int, n);
    CARVE(counts, int, s->n_buckets > 0 ? s->n_buckets : 1);
    CARVE(rows, int, gr);
    CARVE(rpos, int, gr);
    CARVE(gq, real, gr * dh);
    CARVE(gk, real, gr * dh);
    CARVE(gv, real, gr * dh);
    CARVE(go, real, gr * dh);
    CARVE(gdo, real, gr * dh);
    CARVE(gc, real, gr);
    CARVE(gdq, real, gr * dh);
    CARVE(gdk, real, gr * dh);
    CARVE(gdv, real, gr * dh);
    CARVE(tile_p, real, m * nk);
    CARVE(tile_dp, real, m * nk);
    CARVE(kpos, int, nk);
    CARVE(kidx, int, nk);
    CARVE(kvis, unsigned char, nk);
    if (s->strict) CARVE(seg_lo, int, n);
    CARVE(pos_acc, real, s->seq_len);
    CARVE(pos_sum, real, s->seq_len);
#undef CARVE
    return off;
}

// Positions projected per hashing GEMM.
#define HASH_ROWS 256

// Per-thread scratch of the hash: rotations [dh, R, W] and a block of
// projections [HASH_ROWS, R * W], W = lsh_rotation_width (nb/2 unfactorised,
// f1/2 + f2/2 + ... factorised).
static size_t hash_scratch_elems(const AttnShape *s) {
    size_t width = (size_t)s->n_hashes * lsh_rotation_width(s->n_buckets, s->bucket_factors);
    return (size_t)s->d_head * width + (size_t)HASH_ROWS * width;
}

size_t cpu_attention_workspace_bytes(const AttnShape *s, int lsh) {
    size_t per = scratch_carve(NULL, NULL, s);
    if (lsh) per = MAX(per, hash_scratch_elems(s) * sizeof(real));
    return (size_t)max_threads() * per;
}

static Scratch scratch_at(void *work, const AttnShape *s, int slot) {
    Scratch sc = {0};
    size_t per = scratch_carve(NULL, NULL, s);
    scratch_carve(&sc, (char *)work + (size_t)slot * per, s);
    sc.window = s->strict ? lsh_strict_window(s->chunk_len) : 0;
    return sc;
}
static Scratch thread_scratch(void *work, const AttnShape *s) { return scratch_at(work, s, thread_id()); }

// --- lanes and teams --------------------------------------------------------
//
// A team is the threads that run one lane: one thread (when there are at
// least as many lanes as threads), or all of them (when there are fewer).
// A team splits a lane's groups of chunks in phases: the groups of one phase
// write disjoint positions, a barrier ends each phase, and the phases come in
// the same order for every team size, so a lane gives the same bits whether
// one thread or several run it.
typedef struct {
    int id, size;
} Team;

static void team_barrier(Team t) {
    if (t.size > 1) {
#pragma omp barrier
    }
}

// [lo, hi): the team member's share of n items, in one contiguous block.
static void team_share(Team t, int n, int *lo, int *hi) {
    *lo = (int)((long long)n * t.id / t.size);
    *hi = (int)((long long)n * (t.id + 1) / t.size);
}

// A team member's scratch: its own group buffers, and the lane's sort and
// per-position arrays, which live in the scratch of the team's first thread.
static Scratch team_scratch(void *work, const AttnShape *s, Team t) {
    Scratch sc = thread_scratch(work, s), lane = scratch_at(work, s, thread_id() - t.id);
    sc.perm = lane.perm, sc.pos = lane.pos, sc.inv = lane.inv, sc.counts = lane.counts;
    sc.seg_lo = lane.seg_lo, sc.pos_acc = lane.pos_acc, sc.pos_sum = lane.pos_sum;
    return sc;
}

typedef void (*LaneFn)(const void *args, int b, int h, Team team);

// fn on every (b, h) lane: lanes over threads, or each lane by all of them.
static void run_lanes(int B, int H, LaneFn fn, const void *args) {
    const int lanes = B * H, threads = max_threads();
    if (lanes >= threads || threads == 1) {
#pragma omp parallel for schedule(dynamic)
        for (int l = 0; l < lanes; l++) fn(args, l / H, l % H, (Team){0, 1});
        return;
    }
    for (int l = 0; l < lanes; l++) {
#pragma omp parallel
        {
#ifdef _OPENMP
            Team t = {omp_get_thread_num(), omp_get_num_threads()};
#else
            Team t = {0, 1};
#endif
            fn(args, l / H, l % H, t);
        }
    }
}

// The groups of a lane: its chunks cut into segments of per_seg chunks (LSH:
// one hash round, so that a segment holds each position once; local: the
// whole sequence), each segment into groups of GROUP_CHUNKS.
typedef struct {
    int n_seg, per_seg, groups;  // segments, chunks per segment, groups per segment
    int workers;                 // team members that take groups (1 when segments are not whole rounds)
} LanePlan;

static LanePlan lane_plan(int nc, int n_seg, int per_seg, Team t) {
    LanePlan p = {n_seg, per_seg, (per_seg + GROUP_CHUNKS - 1) / GROUP_CHUNKS, t.size};
    if (n_seg * per_seg != nc) p = (LanePlan){1, nc, (nc + GROUP_CHUNKS - 1) / GROUP_CHUNKS, 1};
    return p;
}
static int group_c0(const LanePlan *p, int seg, int j) { return seg * p->per_seg + j * GROUP_CHUNKS; }
static int group_c1(const LanePlan *p, int seg, int j) {
    return MIN(group_c0(p, seg, j) + GROUP_CHUNKS, (seg + 1) * p->per_seg);
}

// The team member's groups of a segment in one phase: every group (PHASE_ALL:
// groups that write only their own rows' positions), the odd ones, the even
// ones from 2, or group 0 alone. A backward group also adds
// into its previous chunk's positions (the previous group's last chunk, or
// for group 0 the previous segment's last chunk, whose positions may be
// anywhere in this segment), hence odd, even, then group 0.
enum { PHASE_ALL, PHASE_ODD, PHASE_EVEN, PHASE_FIRST };
static const int backward_phases[3] = {PHASE_ODD, PHASE_EVEN, PHASE_FIRST};

static int phase_first(const LanePlan *p, Team t, int phase, int *step) {
    if (t.id >= p->workers) return *step = 1, p->groups;  // none
    if (phase == PHASE_ALL) return *step = p->workers, t.id;
    if (phase == PHASE_FIRST) return *step = p->groups, t.id == 0 ? 0 : p->groups;
    *step = 2 * p->workers;
    return (phase == PHASE_ODD ? 1 : 2) + 2 * t.id;
}
#define FOR_PHASE_GROUPS(j, p, t, phase)                                                       \
    for (int j##_step, j = phase_first(p, t, phase, &j##_step); j < (p)->groups; j += j##_step)

// --- the chunked kernel -----------------------------------------------------
//
// Chunk c's keys are two blocks of m rows: the previous chunk (chunk 0's is
// the last chunk when cyclic; none when there is a single chunk or chunk 0
// is not cyclic) and its own. Both are contiguous rows of the group buffers,
// so every product is a small GEMM on them: Z = Q K^T per block into the
// [m, nk] tile, O = P V, and in the backward the gradients of Q, K and V
// accumulate straight into the group's rows (beta = 1).

// C[M,N] = alpha op(A) op(B) + beta C with leading dimensions (row-major).
static void tile_gemm(real *C, int ldc, const real *A, int lda, const real *B, int ldb, int M, int N, int K,
                      int ta, int tb, real alpha, real beta) {
    cblas_gemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
               lda, B, ldb, beta, C, ldc);
}

// A group: chunks [c0, c1) of nc, laid out from group row `base`; row 0..m-1
// hold the previous chunk when has_prev.
typedef struct {
    int c0, c1, has_prev, base, n_rows;
} Group;

static Group group_rows(Scratch *sc, const int *pos, int c0, int c1, int nc, int m, int cyclic) {
    Group g = {c0, c1, nc > 1 && (cyclic || c0 > 0), 0, 0};
    int r = 0;
    if (g.has_prev)
        for (int t = 0, prev = (c0 + nc - 1) % nc; t < m; t++) sc->rows[r++] = prev * m + t;
    g.base = r;
    for (int c = c0; c < c1; c++)
        for (int t = 0; t < m; t++) sc->rows[r++] = c * m + t;
    g.n_rows = r;
    for (int i = 0; i < r; i++) sc->rpos[i] = pos ? pos[sc->rows[i]] : sc->rows[i];
    return g;
}

// Group rows of chunk c's queries, and of its previous chunk (-1: none).
static int query_row(const Group *g, int c, int m) { return g->base + (c - g->c0) * m; }
static int prev_row(const Group *g, int c, int m) {
    if (c > g->c0) return query_row(g, c, m) - m;
    return g->has_prev ? 0 : -1;
}

// Keys of a chunk: group rows [krow, qrow + m), its previous chunk's when
// prow >= 0 (group_rows and prev_row put it just before the chunk, so the keys
// are one block: one GEMM per product) and its own. Their positions go to
// kpos and (strict form) their sorted indices to kidx; returns the key count.
static int chunk_keys(Scratch *sc, int qrow, int prow, int m, int *krow) {
    assert(prow < 0 || prow + m == qrow);
    *krow = prow >= 0 ? prow : qrow;
    int nk = qrow + m - *krow;
    for (int t = 0; t < nk; t++) sc->kpos[t] = sc->rpos[*krow + t];
    if (sc->window)  // only the strict mask reads them
        for (int t = 0; t < nk; t++) sc->kidx[t] = sc->rows[*krow + t];
    return nk;
}

// Which keys of the tile a query (group row `row`, position pq) may see.
// Standard: every key at a position <= pq. Strict (core/lsh_rules.h): the
// sorted indices [lo, s] of its own (round, bucket), s its own sorted index.
typedef struct {
    int pq, lo, s;  // lo < 0: standard
} QueryMask;

static QueryMask query_mask(const Scratch *sc, int row) {
    QueryMask q = {sc->rpos[row], -1, sc->rows[row]};
    if (sc->window) q.lo = MAX(sc->seg_lo[q.s], q.s - sc->window + 1);
    return q;
}

// Replace masked logits (REFORMER.md step 6) and mark the keys the query
// sees in sc->kvis; returns the row maximum.
static real mask_row(Scratch *sc, real *z, int nk, const QueryMask *q, int self_mask) {
    unsigned char *vis = sc->kvis;
    const int *kpos = sc->kpos, pq = q->pq;
    if (q->lo < 0)
        for (int j = 0; j < nk; j++) vis[j] = kpos[j] <= pq;
    else
        for (int j = 0; j < nk; j++) vis[j] = (sc->kidx[j] >= q->lo) & (sc->kidx[j] <= q->s);
    real mx = -INFINITY;
    // Branch-free, so that the compiler vectorises it (a max is exact in any order).
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < nk; j++) {
        real zj = vis[j] ? z[j] : MASK_CAUSAL;
        zj = vis[j] && self_mask && kpos[j] == pq ? MASK_SELF : zj;
        z[j] = zj;
        mx = zj > mx ? zj : mx;
    }
    return mx;
}

// z[j] = exp(z[j] - shift) for the visible keys, R_LANES at a time
// (core/real.h; the tail padded), and 0 for the others. Keys more than
// EXP_FLOOR below the shift (a self-masked key at -1e5) get exactly 0 too,
// weights under exp(-87) ~ 1.6e-38 that float keeps only as denormals or
// not at all: the vector exp sees only arguments >= EXP_FLOOR, where it
// takes its fast path (measured: 2.1 ns per value at -87, 20 at -87.4).
// vis[j] is cleared for those keys: it then says which keys have weight.
// A NaN stays NaN, so a diverging run still shows.
#define EXP_FLOOR ((real)-87)
static void exp_row_visible(real *z, unsigned char *vis, real shift, int nk) {
    for (int j = 0; j < nk; j++) {
        real t = z[j] - shift;
        vis[j] &= !(t < EXP_FLOOR);
        z[j] = vis[j] ? t : EXP_FLOOR;
    }
    int j = 0;
    for (; j + R_LANES <= nk; j += R_LANES) r_exp_lanes(z + j, z + j);
    if (j < nk) {
        real t[R_LANES] = {0};
        for (int l = 0; l < nk - j; l++) t[l] = z[j + l];
        r_exp_lanes(t, t);
        for (int l = 0; l < nk - j; l++) z[j + l] = t[l];
    }
    for (j = 0; j < nk; j++) z[j] = vis[j] ? z[j] : 0;
}

// One chunk's forward: its m queries at group row qrow attend to the key
// blocks; outputs to o [m, dh] and lse [m].
static void chunk_forward(Scratch *sc, real *o, real *lse, int qrow, int prow, int m, int dh, real scale,
                          int self_mask) {
    int krow, nk = chunk_keys(sc, qrow, prow, m, &krow);
    real *Z = sc->tile_p;
    tile_gemm(Z, nk, sc->gq + (size_t)qrow * dh, dh, sc->gk + (size_t)krow * dh, dh, m, nk, dh, 0, 1, scale, 0);
    for (int i = 0; i < m; i++) {
        QueryMask q = query_mask(sc, qrow + i);
        real *z = Z + (size_t)i * nk;
        real mx = mask_row(sc, z, nk, &q, self_mask);
        // p = exp(z - mx) / sum; masked keys weigh exactly 0, as exp(-1e9 - lse).
        exp_row_visible(z, sc->kvis, mx, nk);
        real sum = 0;
        for (int j = 0; j < nk; j++) sum += z[j];
        lse[i] = mx + R_LOG(sum);
        real inv_sum = 1 / sum;
        for (int j = 0; j < nk; j++) z[j] *= inv_sum;
    }
    tile_gemm(o, dh, Z, nk, sc->gv + (size_t)krow * dh, dh, m, dh, nk, 0, 0, 1, 0);
}

// One chunk's backward, accumulating (+=) into the group's gdq, gdk, gdv.
// lse: the chunk's forward logsumexps; dout [m, dh] the gradient of its
// (per-round) outputs; dot [m]: per query, dout . out with out the layer's
// output (LSH: the round-combined one) and dout its gradient, both scaled by
// the round weight. Softmax backward dZ = P (dP - D + dlse) with D = dO . o_r
// and, through the round combination, dlse = D - w_r (dout . out): the D terms
// cancel, so no per-round output is needed (the forward keeps none).
static void chunk_backward(Scratch *sc, const real *lse, const real *dout, const real *dot, int qrow, int prow, int m,
                           int dh, real scale, int self_mask) {
    int krow, nk = chunk_keys(sc, qrow, prow, m, &krow);
    const real *q = sc->gq + (size_t)qrow * dh;
    real *P = sc->tile_p, *dZ = sc->tile_dp;
    size_t kb = (size_t)krow * dh;
    tile_gemm(P, nk, q, dh, sc->gk + kb, dh, m, nk, dh, 0, 1, scale, 0);
    tile_gemm(dZ, nk, dout, dh, sc->gv + kb, dh, m, nk, dh, 0, 1, 1, 0);
    for (int i = 0; i < m; i++) {
        QueryMask q = query_mask(sc, qrow + i);
        real *p = P + (size_t)i * nk, *dz = dZ + (size_t)i * nk;
        mask_row(sc, p, nk, &q, self_mask);
        // p = exp(z - lse), see chunk_forward; kvis: the keys of nonzero weight.
        exp_row_visible(p, sc->kvis, lse[i], nk);
        for (int j = 0; j < nk; j++) {
            int masked = !sc->kvis[j] || (self_mask && sc->kpos[j] == q.pq);
            // A replaced (masked) logit is a constant: no gradient to q, k.
            dz[j] = masked ? 0 : p[j] * (dz[j] - dot[i]);
        }
    }
    tile_gemm(sc->gdq + (size_t)qrow * dh, dh, dZ, nk, sc->gk + kb, dh, m, dh, nk, 0, 0, scale, 1);  // dQ += dZ K
    tile_gemm(sc->gdk + kb, dh, dZ, nk, q, dh, nk, dh, m, 1, 0, scale, 1);                          // dK += dZ^T Q
    tile_gemm(sc->gdv + kb, dh, P, nk, dout, dh, nk, dh, m, 1, 0, 1, 1);                            // dV += P^T dO
}

// dot[i] = dout[i] . out[i] over head h's columns, positions [i0, i1) of sequence b.
static void head_dots(real *dot, const real *dout, const real *out, int b, int h, int i0, int i1,
                      const AttnShape *s) {
    const int L = s->seq_len, dh = s->d_head, HD = s->n_heads * dh;
    for (int i = i0; i < i1; i++) {
        size_t at = ((size_t)b * L + i) * HD + (size_t)h * dh;
        real acc = 0;
        for (int d = 0; d < dh; d++) acc += dout[at + d] * out[at + d];
        dot[i] = acc;
    }
}

// Gather rows of one head's [B, L, H*dh] tensor at the group rows' positions.
static void gather_rows(real *dst, const real *src, const Scratch *sc, int n_rows, int b, int h, const AttnShape *s) {
    const int L = s->seq_len, dh = s->d_head, HD = s->n_heads * dh;
    for (int r = 0; r < n_rows; r++)
        memcpy(dst + (size_t)r * dh, src + ((size_t)b * L + sc->rpos[r]) * HD + (size_t)h * dh, (size_t)dh * sizeof(real));
}

// dst[position of row r] += src[r] for one head's [B, L, H*dh] tensor.
static void scatter_add_rows(real *dst, const real *src, const Scratch *sc, int r0, int r1, int b, int h,
                             const AttnShape *s) {
    const int L = s->seq_len, dh = s->d_head, HD = s->n_heads * dh;
    for (int r = r0; r < r1; r++) {
        real *row = dst + ((size_t)b * L + sc->rpos[r]) * HD + (size_t)h * dh;
        for (int d = 0; d < dh; d++) row[d] += src[(size_t)r * dh + d];
    }
}

static void zero_head(real *x, int b, int h, int i0, int i1, const AttnShape *s) {
    const int L = s->seq_len, dh = s->d_head, HD = s->n_heads * dh;
    for (int i = i0; i < i1; i++) memset(x + ((size_t)b * L + i) * HD + (size_t)h * dh, 0, (size_t)dh * sizeof(real));
}

// The start of a lane's backward: dot[i] = dout . out per position into
// pos_acc (out is read here, before a gradient that may alias it is
// written), then the lane's n gradients zeroed; each team member its share.
static void lane_backward_start(Scratch *sc, const real *dout, const real *out, real *const *grads, int n, int b,
                                int h, Team team, const AttnShape *s) {
    int i0, i1;
    team_share(team, s->seq_len, &i0, &i1);
    head_dots(sc->pos_acc, dout, out, b, h, i0, i1, s);
    team_barrier(team);
    for (int k = 0; k < n; k++) zero_head(grads[k], b, h, i0, i1, s);
    team_barrier(team);
}

static void zero_group_grads(Scratch *sc, int n_rows, int dh) {
    memset(sc->gdq, 0, (size_t)n_rows * dh * sizeof(real));
    memset(sc->gdk, 0, (size_t)n_rows * dh * sizeof(real));
    memset(sc->gdv, 0, (size_t)n_rows * dh * sizeof(real));
}

// --- LSH --------------------------------------------------------------------

void cpu_lsh_hash(uint16_t *buckets, const real *qk, const AttnShape *s, uint64_t seed, uint32_t step,
                  uint32_t layer, void *work) {
    const int B = s->batch, L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes;
    const int nb = s->n_buckets, W = lsh_rotation_width(nb, s->bucket_factors), HD = H * dh, width = R * W;
    const LshFactors factors = s->bucket_factors;
    const size_t per_thread = cpu_attention_workspace_bytes(s, 1) / (size_t)max_threads();
    const int blocks = (L + HASH_ROWS - 1) / HASH_ROWS;
#pragma omp parallel
    {
        // Per-thread rotations [dh, R, W] and a block of projections
        // [HASH_ROWS, R * W], in the same per-thread slots the attention uses.
        real *rot = (real *)((char *)work + (size_t)thread_id() * per_thread);
        real *proj = rot + (size_t)dh * width;
        int cur_head = -1;
        // Blocks of positions of every (head, sequence), split in contiguous
        // runs (static), so a thread makes a head's rotations about once and
        // a single lane still uses every thread.
#pragma omp for schedule(static) collapse(3)
        for (int h = 0; h < H; h++)
            for (int b = 0; b < B; b++)
                for (int blk = 0; blk < blocks; blk++) {
                    if (h != cur_head) {
                        uint64_t head = (uint64_t)(s->head_offset + h);  // global head index
                        for (size_t e = 0; e < (size_t)dh * width; e++)
                            rot[e] = (real)lsh_rotation_element(seed, head, e, step, layer);
                        cur_head = h;
                    }
                    int i0 = blk * HASH_ROWS, rows = MIN(HASH_ROWS, L - i0);
                    // proj = x Rot for a block of positions: one GEMM over
                    // every round's factor columns, then each factor's argmax.
                    tile_gemm(proj, width, qk + ((size_t)b * L + i0) * HD + (size_t)h * dh, HD, rot, width, rows,
                              width, dh, 0, 0, 1, 0);
                    for (int i = 0; i < rows; i++)
                        for (int r = 0; r < R; r++) {
                            const real *p = proj + (size_t)i * width + (size_t)r * W;
                            buckets[(((size_t)b * H + h) * R + r) * L + i0 + i] =
                                (uint16_t)lsh_bucket_factored(p, nb, factors);
                        }
                }
    }
}

void lsh_sort_items(int *perm, int *inv, int *counts, const uint16_t *buckets, int L, int R, int nb) {
    for (int r = 0; r < R; r++) {
        int *pr = perm + (size_t)r * L;
        if (!buckets) {
            for (int i = 0; i < L; i++) pr[i] = r * L + i;
            continue;
        }
        const uint16_t *b = buckets + (size_t)r * L;
        memset(counts, 0, (size_t)nb * sizeof(int));
        for (int i = 0; i < L; i++) counts[b[i]]++;
        for (int k = 0, acc = 0; k < nb; k++) {
            int cnt = counts[k];
            counts[k] = acc;
            acc += cnt;
        }
        for (int i = 0; i < L; i++) pr[counts[b[i]]++] = r * L + i;
    }
    for (int t = 0; t < R * L; t++) inv[perm[t]] = t;
}

static void lsh_sort(Scratch *sc, const uint16_t *bk, int L, int R, int nb) {
    lsh_sort_items(sc->perm, sc->inv, sc->counts, bk, L, R, nb);
    for (int t = 0; t < R * L; t++) sc->pos[t] = sc->perm[t] % L;
    if (!sc->window) return;
    // Strict form: where each item's (round, bucket) run of the sorted order
    // starts (perm[t] = r * L + i, and bk is [R, L] in the same order).
    for (int t = 0; t < R * L; t++) {
        int item = sc->perm[t], prev = t ? sc->perm[t - 1] : -1;
        int same = t && item / L == prev / L && (!bk || bk[item] == bk[prev]);
        sc->seg_lo[t] = same ? sc->seg_lo[t - 1] : t;
    }
}

// Shared-QK keys of the group's rows: gk = gq / sqrt(|gq|^2 + dh * eps).
static void normalise_keys(Scratch *sc, int n_rows, int dh) {
    for (int r = 0; r < n_rows; r++) {
        const real *q = sc->gq + (size_t)r * dh;
        real *k = sc->gk + (size_t)r * dh, ss = 0;
        for (int d = 0; d < dh; d++) ss += q[d] * q[d];
        real inv_norm = 1 / R_SQRT(ss + (real)(dh * KEY_NORM_EPS));
        for (int d = 0; d < dh; d++) k[d] = q[d] * inv_norm;
    }
}

// Through the key normalisation of the group's rows (linear in dk, so partial
// sums per group are fine): dq += r dk - r^3 (q . dk) q.
static void normalise_keys_backward(Scratch *sc, int n_rows, int dh) {
    for (int row = 0; row < n_rows; row++) {
        const real *q = sc->gq + (size_t)row * dh, *dk = sc->gdk + (size_t)row * dh;
        real *dq = sc->gdq + (size_t)row * dh, ss = 0, qdk = 0;
        for (int d = 0; d < dh; d++) ss += q[d] * q[d], qdk += q[d] * dk[d];
        real r = 1 / R_SQRT(ss + (real)(dh * KEY_NORM_EPS));
        for (int d = 0; d < dh; d++) dq[d] += r * dk[d] - r * r * r * qdk * q[d];
    }
}

// The group's queries (qk), keys (unit-length qk) and values, sorted order.
static void lsh_gather(Scratch *sc, const Group *g, const real *qk, const real *v, int b, int h, const AttnShape *s) {
    const int dh = s->d_head;
    gather_rows(sc->gq, qk, sc, g->n_rows, b, h, s);
    gather_rows(sc->gv, v, sc, g->n_rows, b, h, s);
    normalise_keys(sc, g->n_rows, dh);
}

// Round-combination weights of position i: w[r] = softmax_r(lse_r(i)).
static void round_weights(real *w, const real *slse, const int *inv, int i, int L, int R) {
    real mx = -INFINITY, sum = 0;
    for (int r = 0; r < R; r++) mx = MAX(mx, slse[inv[r * L + i]]);
    for (int r = 0; r < R; r++) sum += (w[r] = R_EXP(slse[inv[r * L + i]] - mx));
    for (int r = 0; r < R; r++) w[r] /= sum;
}

typedef struct {
    real *out, *saved, *dqk, *dv;
    const real *qk, *v, *dout, *out_in;
    const uint16_t *buckets;
    const AttnShape *s;
    void *work;
} LshLane;

// The lane's sort, by the team's first thread, before anyone reads it.
static Scratch lsh_lane_sort(const LshLane *x, int b, int h, Team team) {
    const AttnShape *s = x->s;
    const int L = s->seq_len, R = s->n_hashes;
    Scratch sc = team_scratch(x->work, s, team);
    if (team.id == 0)
        lsh_sort(&sc, x->buckets ? x->buckets + ((size_t)b * s->n_heads + h) * R * L : NULL, L, R, s->n_buckets);
    team_barrier(team);
    return sc;
}

static LanePlan lsh_lane_plan(const AttnShape *s, Team team) {
    return lane_plan(n_chunks(s), s->n_hashes, s->seq_len / s->chunk_len, team);
}

static void lsh_forward_lane(const void *args, int b, int h, Team team) {
    const LshLane *x = args;
    const AttnShape *s = x->s;
    const int L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes, m = s->chunk_len;
    const int n = (int)attn_items(s), HD = H * dh, nc = n_chunks(s);
    Scratch sc = lsh_lane_sort(x, b, h, team);
    const LanePlan p = lsh_lane_plan(s, team);
    // Per-item logsumexps in sorted order, kept for the backward. The
    // per-round outputs are combined into out as each chunk is done: items
    // are sorted by round first, and a round (a segment) holds each position
    // once, so its groups write disjoint positions, and round 0 writes every
    // position before a later round meets it. out_i holds
    // sum_r exp(lse_r - M_i) o_r over the rounds seen, with M_i their largest
    // lse and S_i = sum_r exp(lse_r - M_i) (pos_acc, pos_sum); out_i /= S_i
    // at the end: the weights of the old two-pass form.
    real *slse = x->saved + ((size_t)b * H + h) * (size_t)n, *M = sc.pos_acc, *S = sc.pos_sum;
    for (int seg = 0; seg < p.n_seg; seg++) {
        FOR_PHASE_GROUPS(j, &p, team, PHASE_ALL) {
            Group g = group_rows(&sc, sc.pos, group_c0(&p, seg, j), group_c1(&p, seg, j), nc, m, 1);
            lsh_gather(&sc, &g, x->qk, x->v, b, h, s);
            for (int c = g.c0; c < g.c1; c++) {
                int qr = query_row(&g, c, m);
                chunk_forward(&sc, sc.go + (size_t)qr * dh, slse + (size_t)c * m, qr, prev_row(&g, c, m), m, dh, 1,
                              1);
                for (int row = qr; row < qr + m; row++) {
                    int i = sc.rpos[row];
                    real lse = slse[sc.rows[row]], *o = x->out + ((size_t)b * L + i) * HD + (size_t)h * dh;
                    const real *orow = sc.go + (size_t)row * dh;
                    if (sc.rows[row] < L) {  // round 0
                        memcpy(o, orow, (size_t)dh * sizeof(real));
                        M[i] = lse, S[i] = 1;
                    } else if (lse > M[i]) {
                        real keep = R_EXP(M[i] - lse);
                        for (int d = 0; d < dh; d++) o[d] = keep * o[d] + orow[d];
                        S[i] = keep * S[i] + 1, M[i] = lse;
                    } else {
                        real w = R_EXP(lse - M[i]);
                        for (int d = 0; d < dh; d++) o[d] += w * orow[d];
                        S[i] += w;
                    }
                }
            }
        }
        team_barrier(team);
    }
    if (R > 1) {
        int i0, i1;
        team_share(team, L, &i0, &i1);
        for (int i = i0; i < i1; i++) {
            real *o = x->out + ((size_t)b * L + i) * HD + (size_t)h * dh, inv_sum = 1 / S[i];
            for (int d = 0; d < dh; d++) o[d] *= inv_sum;
        }
    }
}

void cpu_lsh_attention_forward(real *out, real *saved, const real *qk, const real *v,
                               const uint16_t *buckets, const AttnShape *s, void *work) {
    LshLane x = {.out = out, .saved = saved, .qk = qk, .v = v, .buckets = buckets, .s = s, .work = work};
    run_lanes(s->batch, s->n_heads, lsh_forward_lane, &x);
}

static void lsh_backward_lane(const void *args, int b, int h, Team team) {
    const LshLane *x = args;
    const AttnShape *s = x->s;
    const int L = s->seq_len, H = s->n_heads, dh = s->d_head, R = s->n_hashes, m = s->chunk_len;
    const int n = (int)attn_items(s), HD = H * dh, nc = n_chunks(s);
    Scratch sc = lsh_lane_sort(x, b, h, team);
    const LanePlan p = lsh_lane_plan(s, team);
    const real *slse = x->saved + ((size_t)b * H + h) * (size_t)n;
    lane_backward_start(&sc, x->dout, x->out_in, (real *[]){x->dqk, x->dv}, 2, b, h, team, s);
    real w[64];
    for (int seg = 0; seg < p.n_seg; seg++)
        for (int ph = 0; ph < 3; ph++) {
            FOR_PHASE_GROUPS(j, &p, team, backward_phases[ph]) {
                Group g = group_rows(&sc, sc.pos, group_c0(&p, seg, j), group_c1(&p, seg, j), nc, m, 1);
                lsh_gather(&sc, &g, x->qk, x->v, b, h, s);
                // Through the round combination o = sum_r w_r o_r, w = softmax(lse):
                // do_r = w_r do (see chunk_backward for the lse part).
                for (int row = g.base; row < g.n_rows; row++) {
                    int t = sc.rows[row], i = sc.rpos[row], r = t / L;
                    round_weights(w, slse, sc.inv, i, L, R);
                    size_t at = ((size_t)b * L + i) * HD + (size_t)h * dh;
                    for (int d = 0; d < dh; d++) sc.gdo[(size_t)row * dh + d] = w[r] * x->dout[at + d];
                    sc.gc[row] = w[r] * sc.pos_acc[i];
                }
                zero_group_grads(&sc, g.n_rows, dh);
                for (int c = g.c0; c < g.c1; c++) {
                    int qr = query_row(&g, c, m);
                    chunk_backward(&sc, slse + (size_t)c * m, sc.gdo + (size_t)qr * dh, sc.gc + qr, qr,
                                   prev_row(&g, c, m), m, dh, 1, 1);
                }
                normalise_keys_backward(&sc, g.n_rows, dh);  // k = q / sqrt(|q|^2 + eps')
                // Un-sort: scatter-add every row's gradient to its position.
                scatter_add_rows(x->dqk, sc.gdq, &sc, 0, g.n_rows, b, h, s);
                scatter_add_rows(x->dv, sc.gdv, &sc, 0, g.n_rows, b, h, s);
            }
            team_barrier(team);
        }
}

void cpu_lsh_attention_backward(real *dqk, real *dv, const real *dout, const real *out, const real *saved,
                                const real *qk, const real *v, const uint16_t *buckets, const AttnShape *s,
                                void *work) {
    LshLane x = {.saved = (real *)saved, .dqk = dqk, .dv = dv, .qk = qk, .v = v, .dout = dout, .out_in = out,
                 .buckets = buckets, .s = s, .work = work};
    run_lanes(s->batch, s->n_heads, lsh_backward_lane, &x);
}

// --- LSH on a slice of the sorted order (sequence-sharded) --------------------
//
// The same chunk kernel on rows another step has already sorted and moved
// here (core/attention_seq.c): lane rows [m previous + n own] in sorted
// order, so a group of own chunks [c0, c1) is the contiguous lane rows
// [c0 m, (c1 + 1) m), the first m its previous chunk. Every chunk sees the
// same rows, in the same tile layout, as in cpu_lsh_attention_forward.

// The scratch layout of a lane of n + m rows in chunks of m (one chunk more
// than the slice: the previous one), so every group has room for its
// previous chunk.
static AttnShape sorted_shape(int n, int m, int dh) {
    AttnShape s = {.batch = 1, .seq_len = n + m, .n_heads = 1, .d_head = dh, .chunk_len = m, .n_hashes = 1};
    return s;
}

size_t cpu_lsh_sorted_workspace_bytes(int n, int m, int dh) {
    AttnShape s = sorted_shape(n, m, dh);
    return cpu_attention_workspace_bytes(&s, 0);
}

static Group sorted_group(Scratch *sc, const real *sq, const real *sv, const int *spos, int c0, int c1, int m,
                          int dh) {
    Group g = {c0, c1, 1, m, (c1 - c0 + 1) * m};
    size_t first = (size_t)c0 * m;
    for (int r = 0; r < g.n_rows; r++) sc->rows[r] = (int)first + r, sc->rpos[r] = spos[first + r];
    memcpy(sc->gq, sq + first * dh, (size_t)g.n_rows * dh * sizeof(real));
    memcpy(sc->gv, sv + first * dh, (size_t)g.n_rows * dh * sizeof(real));
    normalise_keys(sc, g.n_rows, dh);
    return g;
}

// lsh_form=strict on a lane: the mask reads each row's run start (srun) as
// the unsharded kernel reads seg_lo, indexed by lane row.
static void sorted_strict(Scratch *sc, const int *srun, size_t lane, size_t rows, int m) {
    if (!srun) return;
    sc->seg_lo = (int *)srun + lane * rows;
    sc->window = lsh_strict_window(m);
}

void cpu_lsh_sorted_forward(real *so, real *slse, const real *sq, const real *sv, const int *spos, const int *srun,
                            int lanes, int n, int m, int dh, void *work) {
    const AttnShape s = sorted_shape(n, m, dh);
    const int nc = n / m;
    const size_t rows = (size_t)n + m;
#pragma omp parallel for schedule(dynamic)
    for (int lane = 0; lane < lanes; lane++) {
        Scratch sc = thread_scratch(work, &s);
        sorted_strict(&sc, srun, (size_t)lane, rows, m);
        const real *q = sq + lane * rows * dh, *v = sv + lane * rows * dh;
        real *o = so + (size_t)lane * n * dh, *lse = slse + (size_t)lane * n;
        for (int c0 = 0; c0 < nc; c0 += GROUP_CHUNKS) {
            Group g = sorted_group(&sc, q, v, spos + lane * rows, c0, MIN(nc, c0 + GROUP_CHUNKS), m, dh);
            for (int c = g.c0; c < g.c1; c++)
                chunk_forward(&sc, o + (size_t)c * m * dh, lse + (size_t)c * m, query_row(&g, c, m),
                              prev_row(&g, c, m), m, dh, 1, 1);
        }
    }
}

void cpu_lsh_sorted_backward(real *dsq, real *dsv, const real *dso, const real *dslse, const real *so,
                             const real *slse, const real *sq, const real *sv, const int *spos, const int *srun,
                             int lanes, int n, int m, int dh, void *work) {
    const AttnShape s = sorted_shape(n, m, dh);
    const int nc = n / m;
    const size_t rows = (size_t)n + m;
#pragma omp parallel for schedule(dynamic)
    for (int lane = 0; lane < lanes; lane++) {
        Scratch sc = thread_scratch(work, &s);
        sorted_strict(&sc, srun, (size_t)lane, rows, m);
        const real *q = sq + lane * rows * dh, *v = sv + lane * rows * dh;
        const real *o = so + (size_t)lane * n * dh, *lse = slse + (size_t)lane * n;
        const real *dout = dso + (size_t)lane * n * dh, *dlse = dslse + (size_t)lane * n;
        real *dq = dsq + lane * rows * dh, *dv = dsv + lane * rows * dh;
        memset(dq, 0, rows * dh * sizeof(real));
        memset(dv, 0, rows * dh * sizeof(real));
        for (int c0 = 0; c0 < nc; c0 += GROUP_CHUNKS) {
            Group g = sorted_group(&sc, q, v, spos + lane * rows, c0, MIN(nc, c0 + GROUP_CHUNKS), m, dh);
            zero_group_grads(&sc, g.n_rows, dh);
            for (int c = g.c0; c < g.c1; c++) {
                // chunk_backward's per-query dot: D - dlse, D = dO . o of the
                // (per-round) output, dlse its logsumexp's gradient.
                const real *oc = o + (size_t)c * m * dh, *dc = dout + (size_t)c * m * dh, *dl = dlse + (size_t)c * m;
                for (int i = 0; i < m; i++) {
                    real D = 0;
                    for (int d = 0; d < dh; d++) D += dc[(size_t)i * dh + d] * oc[(size_t)i * dh + d];
                    sc.gc[i] = D - dl[i];
                }
                chunk_backward(&sc, lse + (size_t)c * m, dc, sc.gc, query_row(&g, c, m), prev_row(&g, c, m), m, dh, 1,
                               1);
            }
            normalise_keys_backward(&sc, g.n_rows, dh);
            size_t first = (size_t)c0 * m;
            for (size_t e = 0; e < (size_t)g.n_rows * dh; e++) {
                dq[first * dh + e] += sc.gdq[e];
                dv[first * dh + e] += sc.gdv[e];
            }
        }
    }
}

// --- local ------------------------------------------------------------------

typedef struct {
    real *out, *lse, *dq, *dk, *dv;
    const real *q, *k, *v, *dout, *out_in, *lse_in;
    const AttnShape *s;
    void *work;
} LocalLane;

// Local attention's groups: one segment, the whole sequence in order.
static LanePlan local_lane_plan(const AttnShape *s, Team team) {
    return lane_plan(n_chunks(s), 1, n_chunks(s), team);
}

static void local_gather(Scratch *sc, const Group *g, const LocalLane *x, int b, int h) {
    gather_rows(sc->gq, x->q, sc, g->n_rows, b, h, x->s);
    gather_rows(sc->gk, x->k, sc, g->n_rows, b, h, x->s);
    gather_rows(sc->gv, x->v, sc, g->n_rows, b, h, x->s);
}

static void local_forward_lane(const void *args, int b, int h, Team team) {
    const LocalLane *x = args;
    const AttnShape *s = x->s;
    const int L = s->seq_len, H = s->n_heads, dh = s->d_head, m = s->chunk_len, nc = n_chunks(s);
    const real scale = 1 / R_SQRT((real)dh);
    Scratch sc = team_scratch(x->work, s, team);
    const LanePlan p = local_lane_plan(s, team);
    real *head_lse = x->lse + ((size_t)b * H + h) * L;
    int i0, i1;
    team_share(team, L, &i0, &i1);
    zero_head(x->out, b, h, i0, i1, s);
    team_barrier(team);
    // A group writes only its own chunks' positions: all groups at once.
    FOR_PHASE_GROUPS(j, &p, team, PHASE_ALL) {
        Group g = group_rows(&sc, NULL, group_c0(&p, 0, j), group_c1(&p, 0, j), nc, m, 0);
        local_gather(&sc, &g, x, b, h);
        for (int c = g.c0; c < g.c1; c++) {
            int qr = query_row(&g, c, m);
            chunk_forward(&sc, sc.go + (size_t)qr * dh, head_lse + (size_t)c * m, qr, prev_row(&g, c, m), m, dh,
                          scale, 0);
        }
        scatter_add_rows(x->out, sc.go, &sc, g.base, g.n_rows, b, h, s);
    }
}

void cpu_local_attention_forward(real *out, real *lse, const real *q, const real *k, const real *v,
                                 const AttnShape *s, void *work) {
    LocalLane x = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .s = s, .work = work};
    run_lanes(s->batch, s->n_heads, local_forward_lane, &x);
}

static void local_backward_lane(const void *args, int b, int h, Team team) {
    const LocalLane *x = args;
    const AttnShape *s = x->s;
    const int L = s->seq_len, H = s->n_heads, dh = s->d_head, m = s->chunk_len, nc = n_chunks(s);
    const real scale = 1 / R_SQRT((real)dh);
    Scratch sc = team_scratch(x->work, s, team);
    const LanePlan p = local_lane_plan(s, team);
    const real *head_lse = x->lse_in + ((size_t)b * H + h) * L;
    lane_backward_start(&sc, x->dout, x->out_in, (real *[]){x->dq, x->dk, x->dv}, 3, b, h, team, s);
    for (int ph = 0; ph < 3; ph++) {
        FOR_PHASE_GROUPS(j, &p, team, backward_phases[ph]) {
            Group g = group_rows(&sc, NULL, group_c0(&p, 0, j), group_c1(&p, 0, j), nc, m, 0);
            local_gather(&sc, &g, x, b, h);
            gather_rows(sc.gdo, x->dout, &sc, g.n_rows, b, h, s);
            for (int row = 0; row < g.n_rows; row++) sc.gc[row] = sc.pos_acc[sc.rpos[row]];
            zero_group_grads(&sc, g.n_rows, dh);
            for (int c = g.c0; c < g.c1; c++) {
                int qr = query_row(&g, c, m);
                chunk_backward(&sc, head_lse + (size_t)c * m, sc.gdo + (size_t)qr * dh, sc.gc + qr, qr,
                               prev_row(&g, c, m), m, dh, scale, 0);
            }
            scatter_add_rows(x->dq, sc.gdq, &sc, 0, g.n_rows, b, h, s);
            scatter_add_rows(x->dk, sc.gdk, &sc, 0, g.n_rows, b, h, s);
            scatter_add_rows(x->dv, sc.gdv, &sc, 0, g.n_rows, b, h, s);
        }
        team_barrier(team);
    }
}

void cpu_local_attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *out,
                                  const real *lse, const real *q, const real *k, const real *v,
                                  const AttnShape *s, void *work) {
    LocalLane x = {.dq = dq, .dk = dk, .dv = dv, .q = q, .k = k, .v = v, .dout = dout, .out_in = out,
                   .lse_in = lse, .s = s, .work = work};
    run_lanes(s->batch, s->n_heads, local_backward_lane, &x);
}
