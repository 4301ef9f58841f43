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

size_t seq_attention_layout(SeqAttention *sa, char *base, const Config *c, const SeqSizeRules *be, int B,
                            AttnKind kind, int heads, size_t *work_out) {
    memset(sa, 0, sizeof *sa);
    sa->B = B, sa->H = heads, sa->dh = c->d_head, sa->L = c->seq_len, sa->Ll = c->seq_len / c->sp;
    const size_t lanes = (size_t)B * sa->H, dh = (size_t)sa->dh, HD = (size_t)sa->H * dh, sp = (size_t)c->sp;
    size_t off = 0, work = 0;
#define CARVE(field, type, count)                                     \
    do {                                                              \
        if (base) sa->field = (type *)(base + off);                   \
        off += (((size_t)(count) * sizeof(type)) + 255) & ~(size_t)255; \
    } while (0)
    if (kind == ATTN_LSH) {
        sa->R = c->n_hashes, sa->nb = c->n_buckets, sa->m = c->lsh_chunk, sa->strict = c->lsh_strict;
        sa->bucket_factors = c->bucket_factors;  // the histograms below count all nb = f1 * f2 * ... buckets
        sa->n_own = sa->R * sa->Ll;
        const size_t n = (size_t)sa->n_own, m = (size_t)sa->m, hist = lanes * sa->R * sa->nb;
        const size_t W = 2 * dh + 2 + (size_t)sa->strict;  // a forward row: qk, v, slot, position (, run start)
        CARVE(counts, int, hist);
        CARVE(before, int, hist);
        CARVE(total, int, hist);
        CARVE(route, int, lanes * n);
        CARVE(slot_of, int, lanes * n);
        CARVE(send_rows, size_t, sp);
        CARVE(recv_rows, size_t, sp);
        CARVE(xcounts, size_t, sp);
        CARVE(rcounts, size_t, sp);
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
        AttnShape hs = hash_shape(sa);
        work = MAX(work, be->attention_workspace_bytes(&hs, 1));
        if (be->lsh_sorted_workspace_bytes) work = MAX(work, be->lsh_sorted_workspace_bytes(sa->n_own, sa->m, sa->dh));
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
                        size_t *work) {
    memset(ap, 0, sizeof *ap);
    const AttnKind kind = c->layer_kind[l];
    const size_t bytes = (size_t)B * (c->seq_len / c->sp) * heads * c->d_head * sizeof(real);
    size_t off = 0;
    // The sort packs q and v into its rows at once: v's buffer is free again
    // and takes dv (seq_lsh_backward writes it last).
    const int sorted = kind == ATTN_LSH && c->sp > 1 && c->sp_sequence[kind];
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
        off += seq_attention_layout(&ap->seq, base ? base + off : NULL, c, rules, B, kind, heads, work);
    return off;
}

// --- LSH ----------------------------------------------------------------------

void seq_lsh_sort_exchange(SeqAttention *sa, const SeqParallel *seq, const real *qk, const real *v,
                           const uint16_t *buckets) {
    const int B = sa->B, H = sa->H, dh = sa->dh, R = sa->R, nb = sa->nb, Ll = sa->Ll, L = sa->L, n = sa->n_own;
    const int sp = seq->sp, p0 = seq->sp_rank * Ll, HD = H * dh, W = 2 * dh + 2 + sa->strict, lanes = B * H;
    const size_t hist = (size_t)lanes * R * nb;
    // Histograms of my items per (lane, round, bucket), then over the group.
    memset(sa->counts, 0, hist * sizeof(int));
    for (size_t lr = 0; lr < (size_t)lanes * R; lr++)
        for (int i = 0; i < Ll; i++) sa->counts[lr * nb + buckets[lr * Ll + i]]++;
    seq->scan_counts(seq->ctx, sa->counts, sa->before, sa->total, hist);
    // Global index of each item in the stable sort by (round, bucket,
    // position): the round's start, the items of lower buckets (all ranks),
    // those of its bucket on lower ranks, then mine in position order.
    memset(sa->send_rows, 0, (size_t)sp * sizeof(size_t));
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
            for (int i = 0; i < Ll; i++) {
                int s = next[buckets[lr * Ll + i]]++;
                sa->route[lr * Ll + i] = s;
                sa->send_rows[s / n]++;
            }
        }
    // Rows grouped by destination (the rank owning that slice of the sorted
    // order), in (lane, round, position) order within each.
    size_t at[4096];
    if (sp > 4096) FATAL("sp is at most 4096 (config)", "sp=%d", sp);
    for (int j = 0, acc = 0; j < sp; j++) at[j] = (size_t)acc, acc += (int)sa->send_rows[j];
    for (int lane = 0; lane < lanes; lane++) {
        const int b = lane / H, h = lane % H;
        for (int r = 0; r < R; r++)
            for (int i = 0; i < Ll; i++) {
                size_t item = ((size_t)lane * R + r) * Ll + i;
                int s = sa->route[item], owner = s / n;
                size_t row = at[owner]++;
                sa->route[item] = (int)row;
                real *dst = sa->xa + row * W;
                const size_t src = ((size_t)b * Ll + i) * HD + (size_t)h * dh;
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

void seq_lsh_forward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *out, const real *qk,
                     const real *v, uint16_t *buckets, int hash, uint64_t seed, uint32_t step, uint32_t layer) {
    const int B = sa->B, H = sa->H, dh = sa->dh, R = sa->R, Ll = sa->Ll, HD = H * dh, lanes = B * H;
    if (hash) {
        AttnShape hs = hash_shape(sa);
        be->lsh_hash(buckets, qk, &hs, seed, step, layer, sa->work);
    }
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
        const int b = lane / H, h = lane % H;
        const size_t item0 = (size_t)lane * R * Ll;
        for (int i = 0; i < Ll; i++) {
            round_weights(w, sa, item0, i);
            real *o = out + ((size_t)b * Ll + i) * HD + (size_t)h * dh;
            for (int d = 0; d < dh; d++) o[d] = 0;
            for (int r = 0; r < R; r++) {
                const real *orow = round_row(sa, item0 + (size_t)r * Ll + i);
                for (int d = 0; d < dh; d++) o[d] += w[r] * orow[d];
            }
        }
    }
}

void seq_lsh_backward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *dqk, real *dv,
                      const real *dout, const real *out) {
    const int B = sa->B, H = sa->H, dh = sa->dh, R = sa->R, Ll = sa->Ll, HD = H * dh, lanes = B * H, m = sa->m;
    const int n = sa->n_own;
    const size_t rows = (size_t)m + n, got = (size_t)lanes * n;
    // Through the round combination o = sum_r w_r o_r, w = softmax(lse):
    // do_r = w_r do, dlse_r = w_r (do . (o_r - o)), to where each round's row
    // was attended (the forward's rows, in the forward's order).
    real w[64];
    for (int lane = 0; lane < lanes; lane++) {
        const int b = lane / H, h = lane % H;
        const size_t item0 = (size_t)lane * R * Ll;
        for (int i = 0; i < Ll; i++) {
            round_weights(w, sa, item0, i);
            const size_t at = ((size_t)b * Ll + i) * HD + (size_t)h * dh;
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
        const int b = lane / H, h = lane % H;
        for (int r = 0; r < R; r++)
            for (int i = 0; i < Ll; i++) {
                size_t item = ((size_t)lane * R + r) * Ll + i;
                const real *src = sa->xb + (size_t)sa->route[item] * W;
                real *gq = dqk + ((size_t)b * Ll + i) * HD + (size_t)h * dh, *gv = dv + (gq - dqk);
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
