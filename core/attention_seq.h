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
// When those R-fold rows do not fit (passes of one or two heads), the sort
// streams instead (steps > 0): each rank's slice is cut into `steps` pieces
// of whole chunks, and step t moves, attends and returns every rank's piece t
// alone. A piece's look-back chunk travels with it from the positions' ranks
// (no halo); outputs combine online at the positions (running max and sum of
// the rounds' logsumexps); the backward sends the pieces again with the
// output gradient, that max and sum and do . o, and recomputes each piece's
// forward. So the rows in flight are 1/steps of the kept schedule's, for
// about 1.23x its bytes at d_head 64 (plus each piece's look-back rows). A step whose rows from one rank exceed what a rank
// receives (skewed buckets) is split into sub-exchanges, agreed by all ranks.
//
// Local: a halo. Each rank receives the last chunk of keys and values of the
// rank before it, runs the local kernel on its own rows and again on [halo ;
// first chunk]; the halo's key and value gradients go back in the backward.
//
// Both run per attention pass of the model (core/model.h): the buffers here
// are for one pass of H heads, in the pass workspace.
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

// One attention pass of a sequence-sharded layer: its exchange buffers,
// carved from the model's pass workspace after the pass's q, k, v, o buffers
// (seq_attention_layout), so they exist only for the pass in flight. Lanes
// are (batch, head) pairs of the pass, lane = b * H + h.
typedef struct SeqAttention {
    int B, H, dh, L, Ll;  // H heads in this pass; Ll = L / sp positions per rank
    int head0;            // global index of the pass's first head (keys the hash rotations)
    // --- LSH ---
    int R, nb, m;             // rounds, buckets, chunk
    LshFactors bucket_factors;  // nb's factors (core/lsh_rules.h)
    int strict;               // lsh_form=strict: rows also carry where their (round, bucket) run starts
    int n_own;                // R * Ll sorted items per lane per rank (whole chunks)
    int *counts, *before, *total;  // [lanes, R, nb] histograms of my items; total ends as each run's start
    int *route;               // [lanes, R, Ll]: send row of each of my items
    int *slot_of;             // [lanes * n_own]: lane * n_own + slice index of each received row
    size_t *send_rows, *recv_rows, *xcounts, *rcounts;  // [sp]
    real *sq, *sv;            // [lanes, m + n_own, dh]: previous chunk, then my slice (sorted order)
    real *so, *slse;          // [lanes, n_own, dh], [lanes, n_own]
    real *xa;                 // sq..slse's block, which holds the outgoing rows while they are dead
    real *xb;                 // incoming rows; from the forward to the backward, [sent | received]: each
                              // of my items' round output and lse (dh + 1 reals) at its route row
    int *spos;                // [lanes, m + n_own]: their positions
    int *srun;                // strict, [lanes, m + n_own]: that start as a lane row (Backend.lsh_sorted_forward)
    real *halo_send, *halo_recv;  // [lanes, m, 2 dh + 1]
    // --- LSH, streamed (steps > 0; a piece's arrays are views into xa / xb: stream_views) ---
    int steps, piece;         // pieces per rank's slice; items per piece (whole chunks; the last may be shorter)
    size_t cap;               // rows a rank receives in one step: lanes * (m + piece)
    int *sidx;                // [lanes, R, Ll]: global sorted index of each of my items
    int *rowitem;             // my rows, by (step, destination, own | look-back): item * 2 + look-back
    int *keyoff;              // [steps * sp * 2 + 1]: where each (step, destination, kind) starts in rowitem
    int *sub_calls;           // [steps]: sub-exchanges of each step, the same on every rank
    int *agree_mine, *agree_before, *agree_total;  // [steps * sp]: every rank's rows per step
    size_t *sub_rows, *sub_back;  // [sp, sp]: per (sub-exchange, source) of the step in flight, rows received; forward rows returned
    real *pmax, *psum, *pdot; // [lanes, Ll]: the rounds' largest logsumexp, sum of exp(lse - max); do . o
    const uint16_t *bk;       // the pass's buckets, from its forward to its backward (strict run starts)
    // --- local: my first chunk again, with the rank before's last chunk in front ---
    int ml;                   // local chunk
    real *qe, *ke, *ve, *oe, *doe, *dqe, *dke, *dve;  // [B, 2 ml, H dh]: halo rows, then my first chunk
    real *lse_e;              // [B, H, 2 ml]
    real *lhalo_send, *lhalo_recv;  // [B, ml, 2 H dh]
    void *work;               // backend scratch of every call here (the model's attn_work)
    size_t bytes;             // the whole layout
} SeqAttention;

// The sizing rules the layout needs (a live backend's, or the memory plan's
// rules for a backend that is not loaded: core/memplan.h).
typedef struct {
    size_t (*attention_workspace_bytes)(const AttnShape *s, int lsh);
    size_t (*lsh_sorted_workspace_bytes)(int n, int m, int dh);  // NULL: no sequence-sharded LSH
} SeqSizeRules;
// Lay out at base (NULL: only measure) the exchange buffers of one pass of
// `heads` heads of a sequence-sharded layer of kind `kind` (c->sp > 1), batch
// B. Returns their bytes; *work (if not NULL) receives the backend scratch
// the pass's calls need. sa->work and sa->head0 are the caller's to set.
// steps: the sort's schedule (LSH only): 0 keeps its rows, > 0 streams them in
// that many pieces per rank (above; memplan.c picks it).
size_t seq_attention_layout(SeqAttention *sa, char *base, const Config *c, const SeqSizeRules *rules, int B,
                            AttnKind kind, int heads, int steps, size_t *work);
// Pieces per rank's slice for `steps` requested (at most one chunk each): the
// number of steps the streamed sort then runs.
int seq_sort_pieces(const Config *c, int steps);

// The pass workspace of the model (core/model.h): one attention pass of
// `heads` heads of layer l, laid out at base (NULL: only measure): its q, k,
// v, o buffers and their gradients, [T, heads * d_head] with T = B L / sp
// (k and dk for local layers only; on the kept sort's path dv is v's buffer; with
// Ulysses the same elements hold [B * L, heads / sp * d_head]), then, for a
// sequence-sharded layer, its exchange buffers (seq_attention_layout; *work:
// their backend scratch, else 0). Returns the bytes.
typedef struct {
    real *q, *k, *v, *o, *dout, *dk, *dv;
    SeqAttention seq;
} AttnPass;
size_t attn_pass_layout(AttnPass *ap, char *base, const Config *c, const SeqSizeRules *rules, int B, int l, int heads,
                        int steps, size_t *work);

// LSH pass forward on this rank's positions: qk, v, out [B, Ll, H*dh];
// buckets [B, H, R, Ll] (hash = 1 draws them for (seed, step, layer) first,
// 0 reuses them: the reversible recompute). Keeps what the backward needs.
void seq_lsh_forward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *out, const real *qk,
                     const real *v, uint16_t *buckets, int hash, uint64_t seed, uint32_t step, uint32_t layer);
// Its backward, right after a forward of the same inputs (qk, v, buckets):
// dqk, dv written (=), after the last read of out; dqk may alias out; dv may
// alias v when the rows are kept (steps 0: only the forward packs v), not
// when they stream (every step of the backward packs v again).
void seq_lsh_backward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *dqk, real *dv,
                      const real *dout, const real *out, const real *qk, const real *v);
// The sort and the move alone (tested against one process's stable sort):
// fills sq, sv, spos rows m.. of every lane with this rank's sorted slice.
void seq_lsh_sort_exchange(SeqAttention *sa, const SeqParallel *seq, const real *qk, const real *v,
                           const uint16_t *buckets);

// Local pass on this rank's positions: q, k, v, out [B, Ll, H*dh], lse
// [B, H, Ll] (local_saved_elems). The kernel runs on my rows (my first chunk
// seeing only itself, as on rank 0), then once more on [halo ; my first
// chunk] (2 chunks), whose output replaces my first chunk's.
void seq_local_forward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *out, real *lse,
                       const real *q, const real *k, const real *v);
// Its backward, right after a forward of the same inputs: dq (may alias out),
// dk, dv written (=). dout's first chunk is zeroed (rank > 0: that chunk's
// gradients come from the [halo ; first chunk] call).
void seq_local_backward(SeqAttention *sa, const Backend *be, const SeqParallel *seq, real *dq, real *dk, real *dv,
                        real *dout, const real *out, const real *lse, const real *q, const real *k, const real *v);
