// Sequence-sharded LSH and local attention (attention_seq.h). The sort, the
// packing and the round combination are host loops (LSH needs a backend
// whose buffers the host can address and that has lsh_sorted_forward: the CPU
// one today); the local halo uses only backend ops and the exchanges.
#include "attention_seq.h"

#include <math.h>
#include <string.h>

#include "util.h"

// Integers travel inside rows of reals bit for bit (the exchanges move bytes).
static void put_int(real *at, int v) { memcpy(at, &v, sizeof v); }
static int get_int(const real *at) {
    int v;
    memcpy(&v, at, sizeof v);
    return v;
}

// Where lane (b * H + h) of position i starts in a pass buffer [B, Ll, H dh].
static size_t lane_row(const SeqAttention *sa, int lane, int i) {
    return ((size_t)(lane / sa->H) * sa->Ll + i) * ((size_t)sa->H * sa->dh) + (size_t)(lane % sa->H) * sa->dh;
}

static AttnShape hash_shape(const SeqAttention *sa) {
    AttnShape s = {.batch = sa->B, .seq_len = sa->Ll, .n_heads = sa->H, .d_head = sa->dh, .chunk_len = sa->m,
                   .n_hashes = sa->R, .n_buckets = sa->nb, .bucket_factors = sa->bucket_factors, .head_offset = sa->head0};
    return s;
}

// Local kernel shapes: my rows, or [halo ; my first chunk] (2 chunks).
static AttnShape local_shape(const SeqAttention *sa, int halo) {
    AttnShape s = {.batch = sa->B, .seq_len = halo ? 2 * sa->ml : sa->Ll, .n_heads = sa->H, .d_head = sa->dh,
                   .chunk_len = sa->ml, .n_hashes = 1};
    return s;
}

int seq_sort_pieces(const Config *c, int steps) {
    const int chunks = c->n_hashes * (c->seq_len / c->sp) / c->lsh_chunk;
    if (steps >= chunks) return chunks;
    const int per = (chunks + steps - 1) / steps;  // chunks per piece
    return (chunks + per - 1) / per;
}

// The streamed sort's per-step arrays: the piece unpacked in xa (sq, sv, the
// output gradients sdo, the rounds' largest logsumexp sl (then the gradient
// of the row's), the sum of their exponentials sz, do . o sdot, spos, srun) and its outputs and gradients in xb (so, slse, dsq, dsv),
// at fixed offsets for the longest piece (strides follow the step's piece).
typedef struct {
    real *sq, *sv, *sdo, *sl, *sz, *sdot, *so, *slse, *dsq, *dsv;
    int *spos, *srun;
} StreamViews;

static size_t round_up(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

static StreamViews stream_views(const SeqAttention *sa, char *a, char *b, size_t *a_bytes, size_t *b_bytes) {
    const size_t lanes = (size_t)sa->B * sa->H, dh = (size_t)sa->dh, P = (size_t)sa->piece, m = (size_t)sa->m;
    const size_t rows = lanes * (m + P), own = lanes * P;
    StreamViews v;
    size_t oa = 0, ob = 0;
#define VIEW(field, type, at, off, count)                 \
    do {                                                   \
        v.field = at ? (type *)(at + off) : NULL;          \
        off += round_up((size_t)(count) * sizeof(type));   \
    } while (0)
    VIEW(sq, real, a, oa, rows * dh);
    VIEW(sv, real, a, oa, rows * dh);
    VIEW(sdo, real, a, oa, own * dh);
    VIEW(sl, real, a, oa, own);
    VIEW(sz, real, a, oa, own);
    VIEW(sdot, real, a, oa, own);
    VIEW(spos, int, a, oa, rows);
    VIEW(srun, int, a, oa, sa->strict ? rows : 0);
    VIEW(so, real, b, ob, own * dh);
    VIEW(slse, real, b, ob, own);
    VIEW(dsq, real, b, ob, rows * dh);
    VIEW(dsv, real, b, ob, rows * dh);
#undef VIEW
    if (!sa->strict) v.srun = NULL;
    if (a_bytes) *a_bytes = oa;
    if (b_bytes) *b_bytes = ob;
    return v;
}

size_t seq_attention_layout(SeqAttention *sa, char *base, const Config *c, const SeqSizeRules *be, int B,
                            AttnKind kind, int heads, int steps, size_t *work_out) {
    memset(sa, 0, sizeof *sa);
    sa->B = B, sa->H = heads, sa->dh = c->d_head, sa->L = c->seq_len, sa->Ll = c->seq_len / c->sp;
    const size_t lanes = (size_t)B * sa->H, dh = (size_t)sa->dh, HD = (size_t)sa->H * dh, sp = (size_t)c->sp;
    size_t off = 0, work = 0;
#define CARVE(field, type, count)                          \
    do {                                                   \
        if (base) sa->field = (type *)(base + off);        \
        off += round_up((size_t)(count) * sizeof(type));   \
    } while (0)
    if (kind == ATTN_LSH) {
        sa->R = c->n_hashes, sa->nb = c->n_buckets, sa->m = c->lsh_chunk, sa->strict = c->lsh_strict;
        sa->bucket_factors = c->bucket_factors;  // the histograms below count all nb = f1 * f2 * ... buckets
        sa->n_own = sa->R * sa->Ll;
        const size_t n = (size_t)sa->n_own, m = (size_t)sa->m, hist = lanes * sa->R * sa->nb;
        CARVE(counts, int, hist);
        CARVE(before, int, hist);
        CARVE(total, int, hist);
        CARVE(xcounts, size_t, sp);
        CARVE(rcounts, size_t, sp);
        if (steps > 0) {  // streamed (attention_seq.h)
            const int chunks = sa->n_own / sa->m, pieces = seq_sort_pieces(c, steps);
            sa->piece = (chunks + pieces - 1) / pieces * sa->m;
            sa->steps = (sa->n_own + sa->piece - 1) / sa->piece;
            const size_t T = (size_t)sa->steps;
            sa->cap = lanes * (m + (size_t)sa->piece);
            const size_t Wb = 2 * dh + 2 + (size_t)sa->strict + dh + 3;  // a backward row (the widest)
            CARVE(sidx, int, lanes * n);
            CARVE(rowitem, int, lanes * (n + MIN(n, sp * T * m)));  // each item once, plus look-back copies
            CARVE(keyoff, int, T * sp * 2 + 1);
            CARVE(sub_calls, int, T);
            CARVE(agree_mine, int, T * sp);
            CARVE(agree_before, int, T * sp);
            CARVE(agree_total, int, T * sp);
            CARVE(sub_rows, size_t, sp * sp);
            CARVE(sub_back, size_t, sp * sp);
            CARVE(slot_of, int, sa->cap);
            CARVE(pmax, real, lanes * sa->Ll);
            CARVE(psum, real, lanes * sa->Ll);
            CARVE(pdot, real, lanes * sa->Ll);
            // xa: my outgoing rows, then the piece unpacked, then the rows going
            // back; xb: the incoming rows, then the piece's outputs and
            // gradients, then the rows coming back (stream_views).
            size_t a_bytes, b_bytes;
            stream_views(sa, NULL, NULL, &a_bytes, &b_bytes);
            CARVE(xa, real, MAX(a_bytes / sizeof(real), sa->cap * Wb));
            CARVE(xb, real, MAX(b_bytes / sizeof(real), sa->cap * Wb));
        } else {  // kept
            const size_t W = 2 * dh + 2 + (size_t)sa->strict;  // a forward row: qk, v, slot, position (, run start)
            CARVE(route, int, lanes * n);
            CARVE(slot_of, int, lanes * n);
            CARVE(send_rows, size_t, sp);
            CARVE(recv_rows, size_t, sp);
            // Two blocks hold every phase (seq_lsh_forward/backward), 386 reals per
            // item at dh 64 where separate send, recv and saved buffers took 518:
            //   kept: sq, sv, so, slse, live from the unpack to the kernel's backward;
            //         before the unpack and after that backward they are dead, so the
            //         block is also the outgoing rows (forward: W wide; backward: 2 dh).
            //   xb:   the incoming rows (W), then [so rows out | their returns, which
            //         stay as each item's round output and lse until the backward],
            //         then [dso, dslse | dsq, dsv], then the returned gradients.
            const size_t kept0 = off;
            CARVE(sq, real, lanes * (m + n) * dh);
            CARVE(sv, real, lanes * (m + n) * dh);
            CARVE(so, real, lanes * n * dh);
            CARVE(slse, real, lanes * n);
            off = kept0 + MAX(off - kept0, lanes * n * W * sizeof(real));
            if (base) sa->xa = (real *)(base + kept0);
            CARVE(xb, real, MAX(lanes * n * W, lanes * n * (dh + 1) + lanes * (m + n) * 2 * dh));
            CARVE(spos, int, lanes * (m + n));
            if (sa->strict) CARVE(srun, int, lanes * (m + n));
            CARVE(halo_send, real, lanes * m * (2 * dh + 1));
            CARVE(halo_recv, real, lanes * m * (2 * dh + 1));
        }
        AttnShape hs = hash_shape(sa);
        work = MAX(work, be->attention_workspace_bytes(&hs, 1));
        if (be->lsh_sorted_workspace_bytes)  // the chunk kernels run on a piece, or on the whole slice
            work = MAX(work, be->lsh_sorted_workspace_bytes(sa->steps ? sa->piece : sa->n_own, sa->m, sa->dh));
    } else {
        sa->ml = c->local_chunk;
        const size_t rows = (size_t)B * 2 * sa->ml;
        CARVE(qe, real, rows * HD);
        CARVE(ke, real, rows * HD);
        CARVE(ve, real, rows * HD);
        CARVE(oe, real, rows * HD);
        CARVE(doe, real, rows * HD);
        CARVE(dqe, real, rows * HD);
        CARVE(dke, real, rows * HD);
        CARVE(dve, real, rows * HD);
        CARVE(lse_e, real, rows * sa->H);
        CARVE(lhalo_send, real, (size_t)B * sa->ml * 2 * HD);
        CARVE(lhalo_recv, real, (size_t)B * sa->ml * 2 * HD);
        AttnShape halo = local_shape(sa, 1), mine = local_shape(sa, 0);
        work = MAX(work, be->attention_workspace_bytes(&halo, 0));
        work = MAX(work, be->attention_workspace_bytes(&mine, 0));
    }
#undef CARVE
    if (work_out) *work_out = work;
    sa->bytes = off;
    return off;
}

size_t attn_pass_layout(AttnPass *ap, char *base, const Config *c, const SeqSizeRules *rules, int B, int l, int heads,
                        int steps, size_t *work) {
    memset(ap, 0, sizeof *ap);
    const AttnKind kind = c->layer_kind[l];
    const size_t bytes = (size_t)B * (c->seq_len / c->sp) * heads * c->d_head * sizeof(real);
    size_t off = 0;
    // The kept sort packs q and v into its rows at once: v's buffer is free
    // again and takes dv (seq_lsh_backward writes it last). The streamed
    // sort packs v again in every step of the backward.
    const int sorted = kind == ATTN_LSH && c->sp > 1 && c->sp_sequence[kind] && steps == 0;
    real **bufs[] = {&ap->q, &ap->k, &ap->v, &ap->o, &ap->dout, &ap->dk, &ap->dv};
    for (int i = 0; i < 7; i++) {
        if ((i == 1 || i == 5) && kind == ATTN_LSH) continue;  // LSH shares qk: no k
        if (i == 6 && sorted) {
            ap->dv = ap->v;
            continue;
        }
        if (base) *bufs[i] = (real *)(base + off);
        off += (bytes + 255) & ~(size_t)255;
    }
    if (work) *work = 0;
    if (c->sp > 1 && c->sp_sequence[kind])
        off += seq_attention_layout(&ap->seq, base ? base + off : NULL, c, rules, B, kind, heads, steps, work);
    return off;
}

// --- LSH ----------------------------------------------------------------------

// Global index of each of my items (lane, round, position) in the stable
// sort by (round, bucket, position), into idx [lanes, R, Ll]: the round's
// start, the items of lower buckets (all ranks), those of its bucket on lower
// ranks, then mine in position order. sa->total ends as where each (lane,
// round, bucket) run starts (the strict form's rows carry it).
static void lsh_sorted_index(SeqAttention *sa, const SeqParallel *seq, const uint16_t *buckets, int *idx) {
    const int R = sa->R, nb = sa->nb, Ll = sa->Ll, L = sa->L, lanes = sa->B * sa->H;
    const size_t hist = (size_t)lanes * R * nb;
    // Histograms of my items per (lane, round, bucket), then over the group.
    memset(sa->counts, 0, hist * sizeof(int));
    for (size_t lr = 0; lr < (size_t)lanes * R; lr++)
        for (int i = 0; i < Ll; i++) sa->counts[lr * nb + buckets[lr * Ll + i]]++;
    seq->scan_counts(seq->ctx, sa->counts, sa->before, sa->total, hist);
    for (int lane = 0; lane < lanes; lane++)
        for (int r = 0; r < R; r++) {
            size_t lr = (size_t)lane * R + r;
            int *next = sa->before + lr * nb;  // becomes the next free index per bucket
            int *tot = sa->total + lr * nb;
            for (int k = 0, acc = r * L; k < nb; k++) {
                int cnt = tot[k];
                next[k] += acc;
                tot[k] = acc;  // read no more as a count: now where bucket k's run starts (strict form)
                acc += cnt;
            }
            for (int i = 0; i < Ll; i++) idx[lr * Ll + i] = next[buckets[lr * Ll + i]]++;
        }
}

void seq_lsh_sort_exchange(SeqAttention *sa, const SeqParallel *seq, const real *qk, const real *v,
                           const uint16_t *buckets) {
    const int H = sa->H, dh = sa->dh, R = sa->R, nb = sa->nb, Ll = sa->Ll, n = sa->n_own;
    const int sp = seq->sp, p0 = seq->sp_rank * Ll, W = 2 * dh + 2 + sa->strict, lanes = sa->B * H;
    lsh_sorted_index(sa, seq, buckets, sa->route);
    memset(sa->send_rows, 0, (size_t)sp * sizeof(size_t));
    for (size_t item = 0; item < (size_t)lanes * R * Ll; item++) sa->send_rows[sa->route[item] / n]++;
    // Rows grouped by destination (the rank owning that slice of the sorted
    // order), in (lane, round, position) order within each.
    size_t at[4096];
    if (sp > 4096) FATAL("sp is at most 4096 (config)", "sp=%d", sp);
    for (int j = 0, acc = 0; j < sp; j++) at[j] = (size_t)acc, acc += (int)sa->send_rows[j];
    for (int lane = 0; lane < lanes; lane++) {
        for (int r = 0; r < R; r++)
            for (int i = 0; i < Ll; i++) {
                size_t item = ((size_t)lane * R + r) * Ll + i;
                int s = sa->route[item], owner = s / n;
                size_t row = at[owner]++;
                sa->route[item] = (int)row;
                real *dst = sa->xa + row * W;
                const size_t src = lane_row(sa, lane, i);
                memcpy(dst, qk + src, (size_t)dh * sizeof(real));
                memcpy(dst + dh, v + src, (size_t)dh * sizeof(real));
                put_int(dst + 2 * dh, lane * n + s % n);
                put_int(dst + 2 * dh + 1, p0 + i);
                if (sa->strict) put_int(dst + 2 * dh + 2, sa->total[((size_t)lane * R + r) * nb + buckets[item]]);
            }
    }
    for (int j = 0; j < sp; j++) sa->xcounts[j] = sa->send_rows[j] * W;
    seq->alltoallv(seq->ctx, sa->xa, sa->xcounts, sa->xb, sa->rcounts);
    size_t got = 0;
    for (int j = 0; j < sp; j++) {
        if (sa->rcounts[j] % W) FATAL("every rank must run the same build and config", "ragged LSH exchange");
        sa->recv_rows[j] = sa->rcounts[j] / W;
        got += sa->recv_rows[j];
    }
    if (got != (size_t)lanes * n)
        FATAL("every rank must run the same config", "LSH exchange: received %zu rows, expected %zu", got,
              (size_t)lanes * n);
    // Into sorted order: lane rows m.. hold my slice.
    const size_t rows = (size_t)sa->m + n;
    for (size_t j = 0; j < got; j++) {
        const real *src = sa->xb + j * W;
        int slot = get_int(src + 2 * dh), lane = slot / n, t = slot % n;
        size_t er = (size_t)lane * rows + sa->m + t;
        memcpy(sa->sq + er * dh, src, (size_t)dh * sizeof(real));
        memcpy(sa->sv + er * dh, src + dh, (size_t)dh * sizeof(real));
        sa->spos[er] = get_int(src + 2 * dh + 1);
        // My slice's lane row x holds sorted index sp_rank * n + x - m.
        if (sa->strict) sa->srun[er] = get_int(src + 2 * dh + 2) - (seq->sp_rank * n - sa->m);
        sa->slot_of[j] = slot;
    }
    if (sa->strict)  // the previous chunk's rows are keys only: no run start is read
        for (int lane = 0; lane < lanes; lane++)
            for (int t = 0; t < sa->m; t++) sa->srun[(size_t)lane * rows + t] = t;
}

// The chunk before my slice: the previous rank's last m rows (cyclic: rank
// 0's is the end of the whole sorted array, as in one process).
static void lsh_halo_forward(SeqAttention *sa, const SeqParallel *seq) {
    const int lanes = sa->B * sa->H, dh = sa->dh, m = sa->m, W = 2 * dh + 1;
    const size_t rows = (size_t)m + sa->n_own;
    for (int lane = 0; lane < lanes; lane++)
        for (int t = 0; t < m; t++) {
            size_t er = (size_t)lane * rows + sa->n_own + t;  // my last chunk
            real *dst = sa->halo_send + ((size_t)lane * m + t) * W;
            memcpy(dst, sa->sq + er * dh, (size_t)dh * sizeof(real));
            memcpy(dst + dh, sa->sv + er * dh, (size_t)dh * sizeof(real));
            put_int(dst + 2 * dh, sa->spos[er]);
        }
    seq->shift(seq->ctx, sa->halo_send, sa->halo_recv, (size_t)lanes * m * W, +1, 1);
    for (int lane = 0; lane < lanes; lane++)
        for (int t = 0; t < m; t++) {
            size_t er = (size_t)lane * rows + t;
            const real *src = sa->halo_recv + ((size_t)lane * m + t) * W;
            memcpy(sa->sq + er * dh, src, (size_t)dh * sizeof(real));
            memcpy(sa->sv + er * dh, src + dh, (size_t)dh * sizeof(real));
            sa->spos[er] = get_int(src + 2 * dh);
        }
}

// The reverse exchange: row j of what I received (in send) goes back, width
// reals each, to the rank it came from; the owner finds it in recv at its
// route row.
static void send_back(SeqAttention *sa, const SeqParallel *seq, const real *send, real *recv, int width) {
    for (int j = 0; j < seq->sp; j++) sa->xcounts[j] = sa->recv_rows[j] * width;
    seq->alltoallv(seq->ctx, send, sa->xcounts, recv, sa->rcounts);
}

// xb's upper part: past one (dh + 1)-wide row per item of my slice, the
// rows the forward sends back (seq_attention_layout).
static real *xb_upper(const SeqAttention *sa) {
    return sa->xb + (size_t)sa->B * sa->H * sa->n_own * ((size_t)sa->dh + 1);
}

// Where the forward leaves each of my items' round output and lse (dh + 1
// reals), from the forward to the backward: xb's upper part, at the item's
// route row (what the reverse exchange delivered).
static const real *round_row(const SeqAttention *sa, size_t item) {
    return xb_upper(sa) + (size_t)sa->route[item] * ((size_t)sa->dh + 1);
}

// Round-combination weights of one position: w[r] = softmax_r(lse_r), the
// arithmetic of attention_cpu.c's round_weights.
static void round_weights(real *w, const SeqAttention *sa, size_t lane_item0, int i) {
    const int R = sa->R, Ll = sa->Ll, dh = sa->dh;
    real mx = -INFINITY, sum = 0;
    for (int r = 0; r < R; r++) mx = MAX(mx, round_row(sa, lane_item0 + (size_t)r * Ll + i)[dh]);
    for (int r = 0; r < R; r++) sum += (w[r] = R_EXP(round_row(sa, lane_item0 + (size_t)r * Ll + i)[dh] - mx));
    for (int r = 0; r < R; r++) w[r] /= sum;
}

// --- LSH, streamed (steps > 0) -------------------------------------------------

// Items in piece t of a rank's slice: piece items, the last one what is left.
static int piece_len(const SeqAttention *sa, int t) { return MIN(sa->piece, sa->n_own - t * sa->piece); }

// Where sorted index s goes: the step and rank of its piece, its row there
// (past the m look-back rows); and, if it is one of its piece's last m, the
// step, rank and row where it is the next piece's look-back (else *lstep = -1).
static void stream_dest(const SeqAttention *sa, int sp, int s, int *step, int *rank, int *row, int *lstep,
                        int *lrank, int *lrow) {
    const int n = sa->n_own, m = sa->m, loc = s % n, t = loc / sa->piece, off = loc - t * sa->piece;
    const int len = piece_len(sa, t);
    *step = t, *rank = s / n, *row = m + off, *lstep = -1;
    if (off >= len - m) {
        *lstep = t + 1 < sa->steps ? t + 1 : 0;
        *lrank = t + 1 < sa->steps ? s / n : (s / n + 1) % sp;
        *lrow = off - (len - m);
    }
}

// This pass's routes: every item's sorted index, my rows ordered by (step,
// destination, own before look-back), and how many sub-exchanges each step
// takes (the most rows any rank sends in it, over what a rank receives).
static void stream_route(SeqAttention *sa, const SeqParallel *seq, const uint16_t *buckets) {
    const int sp = seq->sp, T = sa->steps;
    const size_t items = (size_t)sa->B * sa->H * sa->R * sa->Ll, keys = (size_t)T * sp * 2;
    lsh_sorted_index(sa, seq, buckets, sa->sidx);
    memset(sa->keyoff, 0, (keys + 1) * sizeof(int));
    int t, j, x, lt, lj = 0, lx = 0;
    for (size_t item = 0; item < items; item++) {
        stream_dest(sa, sp, sa->sidx[item], &t, &j, &x, &lt, &lj, &lx);
        sa->keyoff[((size_t)t * sp + j) * 2 + 1]++;
        if (lt >= 0) sa->keyoff[((size_t)lt * sp + lj) * 2 + 2]++;
    }
    for (size_t k = 1; k <= keys; k++) sa->keyoff[k] += sa->keyoff[k - 1];
    for (size_t item = 0; item < items; item++) {  // keyoff[k] moves on to where key k + 1 starts
        stream_dest(sa, sp, sa->sidx[item], &t, &j, &x, &lt, &lj, &lx);
        sa->rowitem[sa->keyoff[((size_t)t * sp + j) * 2]++] = (int)item * 2;
        if (lt >= 0) sa->rowitem[sa->keyoff[((size_t)lt * sp + lj) * 2 + 1]++] = (int)item * 2 + 1;
    }
    for (size_t k = keys; k > 0; k--) sa->keyoff[k] = sa->keyoff[k - 1];
    sa->keyoff[0] = 0;
    memset(sa->agree_mine, 0, (size_t)T * sp * sizeof(int));
    for (t = 0; t < T; t++)
        sa->agree_mine[(size_t)t * sp + seq->sp_rank] = sa->keyoff[(size_t)(t + 1) * sp * 2] - sa->keyoff[(size_t)t * sp * 2];
    seq->scan_counts(seq->ctx, sa->agree_mine, sa->agree_before, sa->agree_total, (size_t)T * sp);
    for (t = 0; t < T; t++) {
        size_t most = 0;
        for (j = 0; j < sp; j++) most = MAX(most, (size_t)sa->agree_total[(size_t)t * sp + j]);
        sa->sub_calls[t] = (int)MAX((size_t)1, (most + sa->cap - 1) / sa->cap);
    }
}

// Rows [w0, w1) of my rowitem: the window of sub-exchange k of step t.
static void stream_window(const SeqAttention *sa, int sp, int t, int k, size_t *w0, size_t *w1) {
    const size_t r0 = (size_t)sa->keyoff[(size_t)t * sp * 2], r1 = (size_t)sa->keyoff[(size_t)(t + 1) * sp * 2];
    *w0 = MIN(r1, r0 + (size_t)k * sa->cap);
    *w1 = MIN(r1, *w0 + sa->cap);
}

// Step t's rows to their pieces' ranks, in sub-exchanges: W reals each (qk,
// v, slot, position, run start; the backward adds do, the rounds' largest
// logsumexp and the sum of their exponentials, and do . o).
// Returns the rows received, in xb; sub_rows says from whom in which call.
static size_t stream_send(SeqAttention *sa, const SeqParallel *seq, int t, const real *qk, const real *v,
                          const real *dout) {
    const int sp = seq->sp, dh = sa->dh, R = sa->R, Ll = sa->Ll, m = sa->m;
    const int Wf = 2 * dh + 2 + sa->strict, W = dout ? Wf + dh + 3 : Wf, p0 = seq->sp_rank * Ll;
    real *xa = (real *)sa->xa, *xb = (real *)sa->xb;
    size_t got = 0;
    for (int k = 0; k < sa->sub_calls[t]; k++) {
        size_t w0, w1;
        stream_window(sa, sp, t, k, &w0, &w1);
        for (int j = 0; j < sp; j++) {
            const size_t lo = (size_t)sa->keyoff[((size_t)t * sp + j) * 2], hi = (size_t)sa->keyoff[((size_t)t * sp + j + 1) * 2];
            sa->xcounts[j] = (MIN(hi, w1) > MAX(lo, w0) ? MIN(hi, w1) - MAX(lo, w0) : 0) * W;
        }
        for (size_t r = w0; r < w1; r++) {
            const int item = sa->rowitem[r] >> 1, look = sa->rowitem[r] & 1, lane = item / (R * Ll), i = item % Ll;
            const int rr = item / Ll % R;
            int st, rank, x, lt, lrank = 0, lx = 0;
            stream_dest(sa, sp, sa->sidx[item], &st, &rank, &x, &lt, &lrank, &lx);
            if (look) x = lx;
            real *dst = xa + (r - w0) * W;
            const size_t src = lane_row(sa, lane, i);
            memcpy(dst, qk + src, (size_t)dh * sizeof(real));
            memcpy(dst + dh, v + src, (size_t)dh * sizeof(real));
            put_int(dst + 2 * dh, lane * (m + piece_len(sa, t)) + x);
            put_int(dst + 2 * dh + 1, p0 + i);
            if (sa->strict)  // where its run starts, as a global sorted index
                put_int(dst + 2 * dh + 2, sa->total[((size_t)lane * R + rr) * sa->nb + sa->bk[((size_t)lane * R + rr) * Ll + i]]);
            if (dout) {
                real *extra = dst + Wf;
                if (look) {
                    memset(extra, 0, (size_t)(dh + 3) * sizeof(real));
                } else {
                    memcpy(extra, dout + src, (size_t)dh * sizeof(real));
                    extra[dh] = sa->pmax[(size_t)lane * Ll + i];
                    extra[dh + 1] = sa->psum[(size_t)lane * Ll + i];
                    extra[dh + 2] = sa->pdot[(size_t)lane * Ll + i];
                }
            }
        }
        seq->alltoallv(seq->ctx, xa, sa->xcounts, xb + got * W, sa->rcounts);
        for (int j = 0; j < sp; j++) {
            if (sa->rcounts[j] % (size_t)W) FATAL("every rank must run the same build and config", "ragged LSH exchange");
            sa->sub_rows[(size_t)k * sp + j] = sa->rcounts[j] / W;
            got += sa->rcounts[j] / W;
        }
        if (got > sa->cap) FATAL("every rank must run the same config", "LSH step: %zu rows, at most %zu", got, sa->cap);
    }
    return got;
}

// The received rows into the piece's arrays (stream_views, strides m + len),
// in sorted order; with the backward's extras, the output gradient,
// round weights' max and sum and do . o of the piece's own rows.
static StreamViews stream_unpack(SeqAttention *sa, const SeqParallel *seq, int t, size_t got, int backward) {
    const int dh = sa->dh, m = sa->m, len = piece_len(sa, t), Wf = 2 * dh + 2 + sa->strict;
    const int W = backward ? Wf + dh + 3 : Wf, lanes = sa->B * sa->H;
    if (got != (size_t)lanes * (m + len))
        FATAL("every rank must run the same config", "LSH step %d: received %zu rows, expected %zu", t, got,
              (size_t)lanes * (m + len));
    StreamViews sv = stream_views(sa, (char *)sa->xa, (char *)sa->xb, NULL, NULL);
    // Row x of a lane holds sorted index start - m + x (start: my piece's first).
    const int start = seq->sp_rank * sa->n_own + t * sa->piece;
    for (size_t j = 0; j < got; j++) {
        const real *src = (const real *)sa->xb + j * W;
        const int slot = get_int(src + 2 * dh), lane = slot / (m + len), x = slot % (m + len);
        memcpy(sv.sq + (size_t)slot * dh, src, (size_t)dh * sizeof(real));
        memcpy(sv.sv + (size_t)slot * dh, src + dh, (size_t)dh * sizeof(real));
        sv.spos[slot] = get_int(src + 2 * dh + 1);
        if (sa->strict) sv.srun[slot] = x < m ? x : get_int(src + 2 * dh + 2) - (start - m);  // look-back: keys only
        if (backward && x >= m) {
            const size_t q = (size_t)lane * len + (size_t)(x - m);
            memcpy(sv.sdo + q * dh, src + Wf, (size_t)dh * sizeof(real));
            sv.sl[q] = src[Wf + dh];
            sv.sz[q] = src[Wf + dh + 1];
            sv.sdot[q] = src[Wf + dh + 2];
        }
        sa->slot_of[j] = slot;
    }
    return sv;
}

// Replies to the rows received in step t, in the order received (forward:
// own rows' output and logsumexp; backward: every row's qk and v gradients),
// packed in xa; then, sub-exchange by sub-exchange, back to the ranks that
// sent the rows, where they land in xb in the order of my window k: the
// forward combines them into out (online over the rounds: pmax holds the
// largest logsumexp so far, psum the sum of exp(lse - pmax)), the backward
// adds them to dqk, dv.
static void stream_reply(SeqAttention *sa, const SeqParallel *seq, int t, const StreamViews *sv, real *out, real *dv) {
    const int backward = dv != NULL, sp = seq->sp, dh = sa->dh, m = sa->m, len = piece_len(sa, t);
    const int width = backward ? 2 * dh : dh + 1, R = sa->R, Ll = sa->Ll;
    real *xa = (real *)sa->xa;
    size_t j = 0, at = 0;
    for (int k = 0; k < sa->sub_calls[t]; k++)
        for (int src = 0; src < sp; src++) {
            size_t sent = 0;
            for (size_t e = 0; e < sa->sub_rows[(size_t)k * sp + src]; e++, j++) {
                const int slot = sa->slot_of[j], x = slot % (m + len), lane = slot / (m + len);
                real *dst = xa + at * width;
                if (backward) {
                    memcpy(dst, sv->dsq + (size_t)slot * dh, (size_t)dh * sizeof(real));
                    memcpy(dst + dh, sv->dsv + (size_t)slot * dh, (size_t)dh * sizeof(real));
                } else if (x >= m) {
                    const size_t q = (size_t)lane * len + (size_t)(x - m);
                    memcpy(dst, sv->so + q * dh, (size_t)dh * sizeof(real));
                    dst[dh] = sv->slse[q];
                } else {
                    continue;  // a look-back row: keys only, no output
                }
                at++, sent++;
            }
            sa->sub_back[(size_t)k * sp + src] = sent;
        }
    const real *xb = (const real *)sa->xb;
    for (size_t k = 0, at0 = 0; k < (size_t)sa->sub_calls[t]; k++) {
        size_t rows = 0, back = 0;
        for (int d = 0; d < sp; d++) {
            sa->xcounts[d] = sa->sub_back[k * sp + d] * width;
            rows += sa->sub_back[k * sp + d];
        }
        seq->alltoallv(seq->ctx, xa + at0 * width, sa->xcounts, (real *)sa->xb, sa->rcounts);
        at0 += rows;
        for (int d = 0; d < sp; d++) back += sa->rcounts[d];
        size_t w0, w1, used = 0;
        stream_window(sa, sp, t, (int)k, &w0, &w1);
        for (size_t r = w0; r < w1; r++) {
            const int item = sa->rowitem[r] >> 1, look = sa->rowitem[r] & 1, lane = item / (R * Ll), i = item % Ll;
            if (look && !backward) continue;
            const real *row = xb + used * width;
            used++;
            const size_t p = (size_t)lane * Ll + i;
            real *o = out + lane_row(sa, lane, i);
            if (backward) {
                real *g = dv + (o - out);
                for (int d = 0; d < dh; d++) o[d] += row[d], g[d] += row[dh + d];
                continue;
            }
            // o accumulates sum_r exp(lse_r - max) o_r; psum sum_r exp(lse_r - max).
            const real lse = row[dh];
            if (lse > sa->pmax[p]) {
                const real scale = R_EXP(sa->pmax[p] - lse);  // 0 for the first round (max -inf)
                for (int d = 0; d < dh; d++) o[d] = o[d] * scale + row[d];
                sa->psum[p] = sa->psum[p] * scale + 1;
                sa->pmax[p] = lse;
            } else {
                const real e = R_EXP(lse - sa->pmax[p]);
                for (int d = 0; d < dh; d++) o[d] += e * row[d];
                sa->psum[p] += e;
            }
        }
        if (used * width != back) FATAL("every rank must run the same config", "LSH step %d: %zu reals back, expected %zu", t, back, used * width);
    }
}

static void stream_forward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *out, const real *qk,
                           const real *v, const uint16_t *buckets) {
    const int dh = sa->dh, H = sa->H, Ll = sa->Ll, lanes = sa->B * H, HD = H * dh;
    sa->bk = buckets;
    stream_route(sa, seq, buckets);
    for (size_t p = 0; p < (size_t)lanes * Ll; p++) sa->pmax[p] = -INFINITY, sa->psum[p] = 0;
    memset(out, 0, (size_t)sa->B * Ll * HD * sizeof(real));
    for (int t = 0; t < sa->steps; t++) {
        size_t got = stream_send(sa, seq, t, qk, v, NULL);
        StreamViews sv = stream_unpack(sa, seq, t, got, 0);
        be->lsh_sorted_forward(sv.so, sv.slse, sv.sq, sv.sv, sv.spos, sv.srun, lanes, piece_len(sa, t), sa->m, dh,
                               sa->work);
        stream_reply(sa, seq, t, &sv, out, NULL);
    }
    // o = the sum / its weight (the backward keeps pmax and psum: its round
    // weights exp(lse_r - pmax) / psum, as round_weights' arithmetic).
    for (int lane = 0; lane < lanes; lane++)
        for (int i = 0; i < Ll; i++) {
            const size_t p = (size_t)lane * Ll + i;
            real *o = out + lane_row(sa, lane, i);
            for (int d = 0; d < dh; d++) o[d] /= sa->psum[p];
        }
}

// Through the round combination o = sum_r w_r o_r, w_r = exp(lse_r - max) /
// sum: do_r = w_r do and dlse_r = w_r (do . o_r - do . o), computed where
// each round's row is attended, from do, max, sum and do . o sent with it.
static void stream_backward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *dqk, real *dv,
                            const real *dout, const real *out, const real *qk, const real *v) {
    const int dh = sa->dh, H = sa->H, Ll = sa->Ll, lanes = sa->B * H, HD = H * dh, m = sa->m;
    for (int lane = 0; lane < lanes; lane++)
        for (int i = 0; i < Ll; i++) {
            const size_t at = lane_row(sa, lane, i);
            real dot = 0;
            for (int d = 0; d < dh; d++) dot += dout[at + d] * out[at + d];
            sa->pdot[(size_t)lane * Ll + i] = dot;
        }
    memset(dqk, 0, (size_t)sa->B * Ll * HD * sizeof(real));  // after the last read of out (dqk may alias it)
    memset(dv, 0, (size_t)sa->B * Ll * HD * sizeof(real));
    for (int t = 0; t < sa->steps; t++) {
        const int len = piece_len(sa, t);
        size_t got = stream_send(sa, seq, t, qk, v, dout);
        StreamViews sv = stream_unpack(sa, seq, t, got, 1);
        be->lsh_sorted_forward(sv.so, sv.slse, sv.sq, sv.sv, sv.spos, sv.srun, lanes, len, m, dh, sa->work);
        for (size_t q = 0; q < (size_t)lanes * len; q++) {
            const real w = R_EXP(sv.slse[q] - sv.sl[q]) / sv.sz[q];
            real d_o = 0;
            for (int d = 0; d < dh; d++) d_o += sv.sdo[q * dh + d] * sv.so[q * dh + d];
            sv.sl[q] = w * (d_o - sv.sdot[q]);
            for (int d = 0; d < dh; d++) sv.sdo[q * dh + d] *= w;
        }
        be->lsh_sorted_backward(sv.dsq, sv.dsv, sv.sdo, sv.sl, sv.so, sv.slse, sv.sq, sv.sv, sv.spos, sv.srun, lanes,
                                len, m, dh, sa->work);
        stream_reply(sa, seq, t, &sv, dqk, dv);
    }
}

void seq_lsh_forward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *out, const real *qk,
                     const real *v, uint16_t *buckets, int hash, uint64_t seed, uint32_t step, uint32_t layer) {
    const int B = sa->B, H = sa->H, dh = sa->dh, R = sa->R, Ll = sa->Ll, lanes = B * H;
    if (hash) {
        AttnShape hs = hash_shape(sa);
        be->lsh_hash(buckets, qk, &hs, seed, step, layer, sa->work);
    }
    if (sa->steps) return stream_forward(sa, be, seq, out, qk, v, buckets);
    seq_lsh_sort_exchange(sa, seq, qk, v, buckets);
    lsh_halo_forward(sa, seq);
    be->lsh_sorted_forward(sa->so, sa->slse, sa->sq, sa->sv, sa->spos, sa->srun, lanes, sa->n_own, sa->m, dh,
                           sa->work);
    // Outputs and logsumexps back to their positions' ranks: xb = [rows out |
    // rows returned], the returned ones kept for the backward (round_row).
    const size_t got = (size_t)lanes * sa->n_own;
    for (size_t j = 0; j < got; j++) {
        int slot = sa->slot_of[j];
        real *dst = sa->xb + j * (dh + 1);
        memcpy(dst, sa->so + (size_t)slot * dh, (size_t)dh * sizeof(real));
        dst[dh] = sa->slse[slot];
    }
    send_back(sa, seq, sa->xb, xb_upper(sa), dh + 1);
    real w[64];
    for (int lane = 0; lane < lanes; lane++) {
        const size_t item0 = (size_t)lane * R * Ll;
        for (int i = 0; i < Ll; i++) {
            round_weights(w, sa, item0, i);
            real *o = out + lane_row(sa, lane, i);
            for (int d = 0; d < dh; d++) o[d] = 0;
            for (int r = 0; r < R; r++) {
                const real *orow = round_row(sa, item0 + (size_t)r * Ll + i);
                for (int d = 0; d < dh; d++) o[d] += w[r] * orow[d];
            }
        }
    }
}

void seq_lsh_backward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *dqk, real *dv,
                      const real *dout, const real *out, const real *qk, const real *v) {
    if (sa->steps) return stream_backward(sa, be, seq, dqk, dv, dout, out, qk, v);
    const int B = sa->B, H = sa->H, dh = sa->dh, R = sa->R, Ll = sa->Ll, HD = H * dh, lanes = B * H, m = sa->m;
    const int n = sa->n_own;
    const size_t rows = (size_t)m + n, got = (size_t)lanes * n;
    // Through the round combination o = sum_r w_r o_r, w = softmax(lse):
    // do_r = w_r do, dlse_r = w_r (do . (o_r - o)), to where each round's row
    // was attended (the forward's rows, in the forward's order).
    real w[64];
    for (int lane = 0; lane < lanes; lane++) {
        const size_t item0 = (size_t)lane * R * Ll;
        for (int i = 0; i < Ll; i++) {
            round_weights(w, sa, item0, i);
            const size_t at = lane_row(sa, lane, i);
            for (int r = 0; r < R; r++) {
                size_t item = item0 + (size_t)r * Ll + i;
                const real *orow = round_row(sa, item);
                real *dst = sa->xb + (size_t)sa->route[item] * (dh + 1), dot = 0;
                for (int d = 0; d < dh; d++) {
                    dst[d] = w[r] * dout[at + d];
                    dot += dout[at + d] * (orow[d] - out[at + d]);
                }
                dst[dh] = w[r] * dot;
            }
        }
    }
    // The round outputs are read: their part of xb receives the gradients.
    real *back = xb_upper(sa);
    for (int j = 0; j < seq->sp; j++) sa->xcounts[j] = sa->send_rows[j] * (dh + 1);
    seq->alltoallv(seq->ctx, sa->xb, sa->xcounts, back, sa->rcounts);
    // Sorted-side gradients: dso, dslse into xb's lower part (sent); dsq, dsv
    // after them, over what was received once it is unpacked (xb's capacity
    // covers both: seq_attention_layout).
    real *dso = sa->xb, *dslse = sa->xb + got * dh;
    for (size_t j = 0; j < got; j++) {
        int slot = sa->slot_of[j];
        const real *src = back + j * (dh + 1);
        memcpy(dso + (size_t)slot * dh, src, (size_t)dh * sizeof(real));
        dslse[slot] = src[dh];
    }
    real *dsq = back, *dsv = dsq + (size_t)lanes * rows * dh;
    be->lsh_sorted_backward(dsq, dsv, dso, dslse, sa->so, sa->slse, sa->sq, sa->sv, sa->spos, sa->srun, lanes, n, m,
                            dh, sa->work);
    // The previous chunk's gradients back to its rank, added to its last chunk.
    const int W = 2 * dh;
    for (int lane = 0; lane < lanes; lane++)
        for (int t = 0; t < m; t++) {
            size_t er = (size_t)lane * rows + t;
            real *dst = sa->halo_send + ((size_t)lane * m + t) * W;
            memcpy(dst, dsq + er * dh, (size_t)dh * sizeof(real));
            memcpy(dst + dh, dsv + er * dh, (size_t)dh * sizeof(real));
        }
    seq->shift(seq->ctx, sa->halo_send, sa->halo_recv, (size_t)lanes * m * W, -1, 1);
    for (int lane = 0; lane < lanes; lane++)
        for (int t = 0; t < m; t++) {
            size_t er = (size_t)lane * rows + n + t;
            const real *src = sa->halo_recv + ((size_t)lane * m + t) * W;
            for (int d = 0; d < dh; d++) dsq[er * dh + d] += src[d], dsv[er * dh + d] += src[dh + d];
        }
    // (dqk, dv) of every sorted row back to its position's rank, sent from
    // the block of sq..slse (read for the last time by the kernel above).
    for (size_t j = 0; j < got; j++) {
        int slot = sa->slot_of[j], lane = slot / n, t = slot % n;
        size_t er = (size_t)lane * rows + m + t;
        real *dst = sa->xa + j * W;
        memcpy(dst, dsq + er * dh, (size_t)dh * sizeof(real));
        memcpy(dst + dh, dsv + er * dh, (size_t)dh * sizeof(real));
    }
    send_back(sa, seq, sa->xa, sa->xb, W);
    memset(dqk, 0, (size_t)B * Ll * HD * sizeof(real));
    memset(dv, 0, (size_t)B * Ll * HD * sizeof(real));
    for (int lane = 0; lane < lanes; lane++) {
        for (int r = 0; r < R; r++)
            for (int i = 0; i < Ll; i++) {
                size_t item = ((size_t)lane * R + r) * Ll + i;
                const real *src = sa->xb + (size_t)sa->route[item] * W;
                real *gq = dqk + lane_row(sa, lane, i), *gv = dv + (gq - dqk);
                for (int d = 0; d < dh; d++) gq[d] += src[d], gv[d] += src[dh + d];
            }
    }
}

// --- local ----------------------------------------------------------------------

void seq_local_forward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *out, real *lse,
                       const real *q, const real *k, const real *v) {
    const int B = sa->B, Ll = sa->Ll, m = sa->ml, HD = sa->H * sa->dh;
    // My last chunk of keys and values to the next rank (not cyclic: local
    // attention looks back along the sequence only).
    for (int b = 0; b < B; b++) {
        real *hs = sa->lhalo_send + (size_t)b * m * 2 * HD;
        be->copy_2d(hs, 2 * HD, k + ((size_t)b * Ll + Ll - m) * HD, HD, m, HD);
        be->copy_2d(hs + HD, 2 * HD, v + ((size_t)b * Ll + Ll - m) * HD, HD, m, HD);
    }
    seq->shift(seq->ctx, sa->lhalo_send, sa->lhalo_recv, (size_t)B * m * 2 * HD, +1, 0);
    // My rows; my first chunk sees only itself (right on rank 0, the
    // sequence's first chunk).
    AttnShape s = local_shape(sa, 0);
    be->local_attention_forward(out, lse, q, k, v, &s, sa->work);
    if (seq->sp_rank == 0) return;
    // [halo ; my first chunk]; the halo's queries are zero and their outputs unused.
    for (int b = 0; b < B; b++) {
        size_t e0 = (size_t)b * 2 * m * HD, own = e0 + (size_t)m * HD, mine = (size_t)b * Ll * HD;
        const real *hr = sa->lhalo_recv + (size_t)b * m * 2 * HD;
        be->zero(sa->qe + e0, (size_t)m * HD * sizeof(real));
        be->copy_2d(sa->ke + e0, HD, hr, 2 * HD, m, HD);
        be->copy_2d(sa->ve + e0, HD, hr + HD, 2 * HD, m, HD);
        be->copy(sa->qe + own, q + mine, (size_t)m * HD * sizeof(real));
        be->copy(sa->ke + own, k + mine, (size_t)m * HD * sizeof(real));
        be->copy(sa->ve + own, v + mine, (size_t)m * HD * sizeof(real));
    }
    AttnShape h = local_shape(sa, 1);
    be->local_attention_forward(sa->oe, sa->lse_e, sa->qe, sa->ke, sa->ve, &h, sa->work);
    for (int b = 0; b < B; b++)
        be->copy(out + (size_t)b * Ll * HD, sa->oe + ((size_t)b * 2 + 1) * m * HD, (size_t)m * HD * sizeof(real));
}

void seq_local_backward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *dq, real *dk, real *dv,
                        real *dout, const real *out, const real *lse, const real *q, const real *k, const real *v) {
    const int B = sa->B, Ll = sa->Ll, m = sa->ml, HD = sa->H * sa->dh;
    const int halo = seq->sp_rank > 0;
    if (halo)  // my first chunk's queries: through the [halo ; first chunk] call only
        for (int b = 0; b < B; b++) {
            size_t e0 = (size_t)b * 2 * m * HD, mine = (size_t)b * Ll * HD;
            be->zero(sa->doe + e0, (size_t)m * HD * sizeof(real));
            be->copy(sa->doe + e0 + (size_t)m * HD, dout + mine, (size_t)m * HD * sizeof(real));
            be->zero(dout + mine, (size_t)m * HD * sizeof(real));
        }
    AttnShape s = local_shape(sa, 0);
    be->local_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, &s, sa->work);
    if (halo) {
        AttnShape h = local_shape(sa, 1);
        be->local_attention_backward(sa->dqe, sa->dke, sa->dve, sa->doe, sa->oe, sa->lse_e, sa->qe, sa->ke, sa->ve,
                                     &h, sa->work);
        for (int b = 0; b < B; b++) {
            size_t e0 = (size_t)b * 2 * m * HD, own = e0 + (size_t)m * HD, mine = (size_t)b * Ll * HD;
            be->copy(dq + mine, sa->dqe + own, (size_t)m * HD * sizeof(real));
            be->axpy(dk + mine, sa->dke + own, 1, (size_t)m * HD);
            be->axpy(dv + mine, sa->dve + own, 1, (size_t)m * HD);
            real *hs = sa->lhalo_send + (size_t)b * m * 2 * HD;
            be->copy_2d(hs, 2 * HD, sa->dke + e0, HD, m, HD);
            be->copy_2d(hs + HD, 2 * HD, sa->dve + e0, HD, m, HD);
        }
    }
    // The halo's key and value gradients back to the rank before.
    seq->shift(seq->ctx, sa->lhalo_send, sa->lhalo_recv, (size_t)B * m * 2 * HD, -1, 0);
    if (seq->sp_rank == seq->sp - 1) return;  // nobody after me
    for (int b = 0; b < B; b++) {
        size_t last = ((size_t)b * Ll + Ll - m) * HD;
        const real *hr = sa->lhalo_recv + (size_t)b * m * 2 * HD;
        // dk rows [Ll - m, Ll) += halo gradient (strided source: pack first).
        be->copy_2d(sa->lhalo_send + (size_t)b * m * 2 * HD, HD, hr, 2 * HD, m, HD);
        be->axpy(dk + last, sa->lhalo_send + (size_t)b * m * 2 * HD, 1, (size_t)m * HD);
        be->copy_2d(sa->lhalo_send + (size_t)b * m * 2 * HD, HD, hr + HD, 2 * HD, m, HD);
        be->axpy(dv + last, sa->lhalo_send + (size_t)b * m * 2 * HD, 1, (size_t)m * HD);
    }
}
