// Sequence-sharded attention (DESIGN.md, Distribution; dist/README.md): each
// of sp ranks keeps its L/sp contiguous positions of every sequence through
// attention, all heads, so sp need not divide n_heads.
//
// LSH: a distributed sort. Each rank hashes its positions (same rotations as
// one process), counts its items per (lane, round, bucket), and an exclusive
// scan and a sum of those histograms over the group give every item its index
// in the global stable sort by (round, bucket, position). The sorted order of
// R*L items per lane is cut into sp equal slices of R*L/sp (whole chunks);
// one all-to-all-v moves each (qk, v, position) row to the slice's rank, so
// every rank holds the same number of rows whatever the bucket skew. The
// chunk before a slice comes from the previous rank (cyclically, as one
// process looks back across the whole sorted array), the chunk kernel runs
// (Backend.lsh_sorted_forward), and the reverse all-to-all-v returns each
// row's output and logsumexp to its position's rank, which combines the
// rounds. The backward sends the rounds' output gradients the same way and
// returns the (qk, v) gradients, the previous chunk's going back to its rank.
//
// Local: a halo. Each rank receives the last chunk of keys and values of the
// rank before it and runs the local kernel on [halo ; own] rows; the halo's
// key and value gradients go back in the backward.
//
// core/ knows no MPI: the exchanges are SeqParallel callbacks (dist/).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"

// Sequence parallelism: each of sp ranks holds L/sp contiguous tokens of
// every sequence. The launcher supplies the exchanges (dist/data_parallel.c).
typedef struct SeqParallel {
    int sp, sp_rank;
    void *ctx;
    // Ulysses (sp_attention=heads): block j (count reals) of send goes to
    // rank j of the sequence-parallel group; block i of recv comes from rank i.
    void (*alltoall)(void *ctx, const real *send, real *recv, size_t count);
    // Sequence-sharded path. All-to-all-v: send holds sp blocks back to back,
    // block j (send_counts[j] reals) for rank j; the callback exchanges the
    // counts, fills recv_counts[i] (reals from rank i) and moves the data.
    void (*alltoallv)(void *ctx, const real *send, const size_t *send_counts, real *recv, size_t *recv_counts);
    // Halo: send (count reals) to rank me + dir, recv from me - dir (dir = +1
    // or -1); not cyclic: the ends send or receive nothing.
    void (*shift)(void *ctx, const real *send, real *recv, size_t count, int dir, int cyclic);
    // Host integer histograms: before = sum over lower ranks, total = over all.
    void (*scan_counts)(void *ctx, const int *mine, int *before, int *total, size_t n);
} SeqParallel;

// Every buffer of the sequence-sharded layers, carved from one allocation
// (seq_attention_layout). Lanes are (batch, head) pairs, lane = b * H + h.
typedef struct SeqAttention {
    int B, H, dh, L, Ll;  // Ll = L / sp positions per rank
    int lsh, local;       // which kinds take this path
    // --- LSH ---
    int R, nb, m;             // rounds, buckets, chunk
    LshFactors bucket_factors;  // nb's factors (core/lsh_rules.h)
    int strict;               // lsh_form=strict: rows also carry where their (round, bucket) run starts
    int n_own;                // R * Ll sorted items per lane per rank (whole chunks)
    int *counts, *before, *total;  // [lanes, R, nb] histograms of my items; total ends as each run's start
    int *route;               // [lanes, R, Ll]: send row of each of my items
    int *slot_of;             // [lanes * n_own]: lane * n_own + slice index of each received row
    size_t *send_rows, *recv_rows, *xcounts, *rcounts;  // [sp]
    real *send, *recv;        // exchange buffers (rows of up to 2 dh + 2 reals)
    real *sq, *sv;            // [lanes, m + n_own, dh]: previous chunk, then my slice (sorted order)
    int *spos;                // [lanes, m + n_own]: their positions
    int *srun;                // strict, [lanes, m + n_own]: that start as a lane row (Backend.lsh_sorted_forward)
    real *so, *slse;          // [lanes, n_own, dh], [lanes, n_own]
    real *saved;              // [lanes, R, Ll, dh + 1]: each of my items' round output and lse
    real *halo_send, *halo_recv;  // [lanes, m, 2 dh + 1]
    // --- local ---
    int ml;                   // local chunk
    real *qe, *ke, *ve, *oe, *doe, *dqe, *dke, *dve;  // [B, ml + Ll, H dh]: halo rows, then mine
    real *lse_e;              // [B, H, ml + Ll]
    real *lhalo_send, *lhalo_recv;  // [B, ml, 2 H dh]
    void *work;               // backend scratch of every call here
    size_t bytes;             // the whole layout
} SeqAttention;

// Lay out the buffers at base for batch B of config c (c->sp > 1, some kind
// with c->sp_sequence set); base NULL only measures. Returns bytes.
// The sizing rules the layout needs (a live backend's, or the memory plan's
// rules for a backend that is not loaded: core/memplan.h).
typedef struct {
    size_t (*attention_workspace_bytes)(const AttnShape *s, int lsh);
    size_t (*lsh_sorted_workspace_bytes)(int n, int m, int dh);  // NULL: no sequence-sharded LSH
} SeqSizeRules;
size_t seq_attention_layout(SeqAttention *sa, char *base, const Config *c, const SeqSizeRules *rules, int B);

// LSH layer forward on this rank's positions: qk, v, out [B, Ll, H*dh];
// buckets [B, H, R, Ll] (hash = 1 draws them for (seed, step, layer) first,
// 0 reuses them: the reversible recompute). Keeps what the backward needs.
void seq_lsh_forward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *out, const real *qk,
                     const real *v, uint16_t *buckets, int hash, uint64_t seed, uint32_t step, uint32_t layer);
// Its backward, right after a forward of the same inputs: dqk, dv written (=).
void seq_lsh_backward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *dqk, real *dv,
                      const real *dout, const real *out);
// The sort and the move alone (tested against one process's stable sort):
// fills sq, sv, spos rows m.. of every lane with this rank's sorted slice.
void seq_lsh_sort_exchange(SeqAttention *sa, const SeqParallel *seq, const real *qk, const real *v,
                           const uint16_t *buckets);

// Local layer on this rank's positions: q, k, v, out [B, Ll, H*dh].
void seq_local_forward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *out, const real *q,
                       const real *k, const real *v);
void seq_local_backward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *dq, real *dk, real *dv,
                        const real *dout, const real *out, const real *q, const real *k, const real *v);
