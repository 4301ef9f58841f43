// The CUDA embedding backward's parallel plan (cuda/embedding.cuh) in plain
// C, host and device, shared with its size rule (core/cuda_sizes.h);
// tests/test_embedding_segments.c runs the whole algorithm on the CPU with
// these very functions against the CPU op.
//
// The token ids are sorted (stable: rows of one token in row order). The
// sorted positions are cut into segments of EMB_SEG; a segment's pieces are
// its maximal runs of one token. Stage 1, one block per (segment, column
// tile): a piece that is a whole run is added into its table row directly
// (only that block touches the row); a piece of a run that crosses the
// segment's start or end goes to the segment's head or tail slot. Stage 2,
// one block per (segment, column tile) that owns a crossing run (the run
// starts in it and goes on past its end): the table row, plus the owner's
// slot, plus the head slots of the following segments in order while the
// run goes on. Every sum has a fixed order that depends only on the sorted
// ids: deterministic, and a run of any length is spread over
// ceil(length / EMB_SEG) blocks, never summed by one block alone.
#pragma once
#include <stddef.h>

#ifdef __CUDACC__
#define EMB_FN __host__ __device__ static inline
#else
#define EMB_FN static inline
#endif

#define EMB_SEG 64    // sorted positions per segment
#define EMB_LANES 8   // row lanes of a piece's sum (then added in lane order)

// Whether a run of one token starts at sorted position p.
EMB_FN int emb_run_starts(const int *tok, int p) { return p == 0 || tok[p - 1] != tok[p]; }
// Whether the run at position q - 1 goes on at q.
EMB_FN int emb_run_goes_on(const int *tok, int N, int q) { return q < N && tok[q] == tok[q - 1]; }
// End of the piece that starts at p inside a segment ending at b.
EMB_FN int emb_piece_end(const int *tok, int p, int b) {
    int q = p + 1;
    while (q < b && tok[q] == tok[p]) q++;
    return q;
}
EMB_FN int emb_segments(int N) { return (N + EMB_SEG - 1) / EMB_SEG; }
EMB_FN int emb_segment_end(int N, int k) { return (k + 1) * EMB_SEG < N ? (k + 1) * EMB_SEG : N; }

// Where stage 1 puts the piece [p, q) of a segment ending at b: -1 the table row
// (a whole run), 0 the head slot (the piece at the segment's start, its run
// begun before), 1 the tail slot (a run that starts in the segment, after
// its start or at it, and goes on past its end).
EMB_FN int emb_piece_slot(const int *tok, int N, int b, int p, int q) {
    const int starts = emb_run_starts(tok, p), goes_on = q == b && emb_run_goes_on(tok, N, q);
    if (starts && !goes_on) return -1;
    return starts ? 1 : 0;
}
// Stage 2: whether segment k owns a crossing run, and where it starts.
EMB_FN int emb_owned_run(const int *tok, int N, int k, int *start) {
    const int a = k * EMB_SEG, b = emb_segment_end(N, k);
    if (!emb_run_goes_on(tok, N, b)) return 0;
    int p = b - 1;
    while (p > a && tok[p - 1] == tok[p]) p--;
    *start = p;
    return emb_run_starts(tok, p);
}

// Stage 2's walk: whether token t's run goes on past the end of segment j
// (its piece there reaches the end, and the next position holds t).
EMB_FN int emb_run_passes(const int *tok, int N, int j, int t) {
    const int b = emb_segment_end(N, j);
    return tok[b - 1] == t && emb_run_goes_on(tok, N, b);
}

// Stage 2's sum for column c of the run owned by segment k (starting at
// sorted position start): the table entry, the owner's tail slot, then the
// head slots of the segments the run passes into, in order.
EMB_FN float emb_run_sum(const int *tok, int N, int k, int start, float table_entry, const float *slots, int C, int c) {
    float acc = table_entry + slots[((size_t)k * 2 + 1) * C + c];
    for (int j = k + 1; j < emb_segments(N); j++) {
        acc += slots[(size_t)j * 2 * C + c];
        if (!emb_run_passes(tok, N, j, tok[start])) break;
    }
    return acc;
}

// The slots: [segments, 2, C] floats.
EMB_FN size_t emb_slot_floats(int N, int C) { return (size_t)emb_segments(N) * 2 * (size_t)C; }
