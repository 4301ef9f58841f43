// The CUDA embedding backward's plan (core/embedding_segments.h) run on the
// CPU with the same functions and in the kernels' order (cuda/embedding.cuh:
// stage 1 per segment and 8 row lanes, stage 2 per owned crossing run),
// against the CPU op's result. Token lists with runs inside one segment,
// runs that end exactly at a segment's end, runs over 3 and more segments,
// one token everywhere, N off a multiple of the segment.
//
// Tolerance, per element: a sum of n floats in any order is within
// (n - 1) u sum |x_i| of the exact sum (recursive summation, u = 2^-24); both
// this plan and the CPU's row-order sum are, so they differ by at most
// 2 (n - 1) u sum |x_i|, x_i the table entry and the run's n - 1 rows.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "embedding_segments.h"
#include "rng.h"

// The kernels' arithmetic, on the CPU: tok and rows sorted by token (stable).
static void segments_backward(float *dtable, const float *dout, const int *tok, const int *rows, int N, int C) {
    float *slots = calloc(emb_slot_floats(N, C), sizeof(float));
    for (int k = 0; k < emb_segments(N); k++) {  // stage 1
        const int a = k * EMB_SEG, b = emb_segment_end(N, k);
        for (int p = a; p < b;) {
            const int q = emb_piece_end(tok, p, b);
            const int slot = emb_piece_slot(tok, N, b, p, q);
            for (int c = 0; c < C; c++) {
                float lanes[EMB_LANES] = {0}, t = 0.f;
                for (int l = 0; l < EMB_LANES; l++)
                    for (int r = p + l; r < q; r += EMB_LANES) lanes[l] += dout[(size_t)rows[r] * C + c];
                for (int l = 0; l < EMB_LANES; l++) t += lanes[l];
                if (slot < 0) dtable[(size_t)tok[p] * C + c] += t;
                else slots[((size_t)k * 2 + slot) * C + c] = t;
            }
            p = q;
        }
    }
    for (int k = 0; k < emb_segments(N); k++) {  // stage 2
        int start;
        if (!emb_owned_run(tok, N, k, &start)) continue;
        for (int c = 0; c < C; c++) {
            const size_t row = (size_t)tok[start] * C + c;
            dtable[row] = emb_run_sum(tok, N, k, start, dtable[row], slots, C, c);
        }
    }
    free(slots);
}

static int g_tok_sorted[4096];
static int cmp_row(const void *x, const void *y) {  // by token, then row: a stable sort
    int a = *(const int *)x, b = *(const int *)y;
    return g_tok_sorted[a] != g_tok_sorted[b] ? g_tok_sorted[a] - g_tok_sorted[b] : a - b;
}

// tokens[i] for N rows, V table rows, C columns: the plan against the CPU op.
static void check_case(const char *label, const int *tokens, int N, int V, int C) {
    cr_assert_leq(N, 4096);
    float *table = malloc(sizeof(float) * V * C), *ref = malloc(sizeof(float) * V * C);
    float *dout = malloc(sizeof(float) * N * C);
    for (int i = 0; i < V * C; i++) table[i] = (float)(rng_uniform(3, (uint64_t)i, 0, 0) - 0.5);
    for (int i = 0; i < N * C; i++) dout[i] = (float)(rng_uniform(4, (uint64_t)i, 0, 0) - 0.5);
    memcpy(ref, table, sizeof(float) * V * C);
    backend_cpu()->embedding_backward(ref, dout, tokens, N, C);
    int *rows = malloc(sizeof(int) * N), *tok = malloc(sizeof(int) * N);
    memcpy(g_tok_sorted, tokens, sizeof(int) * N);
    for (int i = 0; i < N; i++) rows[i] = i;
    qsort(rows, N, sizeof(int), cmp_row);
    for (int i = 0; i < N; i++) tok[i] = tokens[rows[i]];
    float *got = malloc(sizeof(float) * V * C);
    memcpy(got, table, sizeof(float) * V * C);
    segments_backward(got, dout, tok, rows, N, C);
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++) {
            double abs_sum = fabs(table[v * C + c]);
            int n = 1;
            for (int i = 0; i < N; i++)
                if (tokens[i] == v) abs_sum += fabs(dout[i * C + c]), n++;
            double bound = 2.0 * (n - 1) * ldexp(1.0, -24) * abs_sum;
            double err = fabs((double)got[v * C + c] - (double)ref[v * C + c]);
            cr_assert_leq(err, bound, "%s: row %d column %d: %.9g vs the CPU's %.9g (bound %.3g, %d terms)", label, v, c,
                          got[v * C + c], ref[v * C + c], bound, n);
        }
    free(table), free(ref), free(dout), free(rows), free(tok), free(got);
}

Test(embedding_segments, plan_sums_every_run_as_the_cpu) {
    static int t[4096];
    const int C = 5;
    // Random tokens over a small vocabulary: runs of ~N/V rows crossing segments.
    for (int i = 0; i < 1000; i++) t[i] = (int)(rng_bits64(5, (uint64_t)i, 0, 0) % 7);
    check_case("random, V 7, N 1000", t, 1000, 7, C);
    // Many tokens: most runs inside one segment.
    for (int i = 0; i < 777; i++) t[i] = (int)(rng_bits64(6, (uint64_t)i, 0, 0) % 300);
    check_case("random, V 300, N 777", t, 777, 300, C);
    // One token everywhere: one run over 64 segments plus a partial one.
    for (int i = 0; i < 4096; i++) t[i] = 2;
    check_case("one token, N 4096", t, 4096, 3, C);
    for (int i = 0; i < 4095; i++) t[i] = 1;
    check_case("one token, N 4095", t, 4095, 3, C);
    // Runs that end exactly at segment ends (64, 128) and start at them, a
    // run of one row, a run of 3 segments starting mid-segment.
    int n = 0;
    for (int i = 0; i < 64; i++) t[n++] = 0;
    for (int i = 0; i < 64; i++) t[n++] = 1;
    t[n++] = 2;
    for (int i = 0; i < 200; i++) t[n++] = 3;
    for (int i = 0; i < 7; i++) t[n++] = 4;
    check_case("aligned runs", t, n, 5, C);
    // Interleaved rows (the sort gathers them): token = row % 3.
    for (int i = 0; i < 500; i++) t[i] = i % 3;
    check_case("interleaved", t, 500, 3, C);
    // Shorter than a segment.
    for (int i = 0; i < 10; i++) t[i] = i % 2;
    check_case("N 10", t, 10, 2, C);
}

// The plan's pieces and slots on a hand-made list: segment 0 = [0, 64) is
// token 0 x 60 then token 1 x 4 (goes on), segment 1 = [64, 128) token 1
// x 64 (goes on), segment 2 = [128, 150) token 1 x 2 then token 2 x 20.
Test(embedding_segments, slots_and_owners) {
    int tok[150];
    for (int i = 0; i < 150; i++) tok[i] = i < 60 ? 0 : i < 130 ? 1 : 2;
    cr_assert_eq(emb_segments(150), 3);
    cr_assert_eq(emb_piece_end(tok, 0, 64), 60);
    cr_assert_eq(emb_piece_slot(tok, 150, 64, 0, 60), -1, "a whole run");
    cr_assert_eq(emb_piece_slot(tok, 150, 64, 60, 64), 1, "a run that starts here and goes on: tail");
    cr_assert_eq(emb_piece_slot(tok, 150, 128, 64, 128), 0, "the middle of a run: head");
    cr_assert_eq(emb_piece_slot(tok, 150, 150, 128, 130), 0, "the end of a run: head");
    cr_assert_eq(emb_piece_slot(tok, 150, 150, 130, 150), -1);
    int start = -1;
    cr_assert(emb_owned_run(tok, 150, 0, &start) && start == 60, "segment 0 owns token 1's run");
    cr_assert(!emb_owned_run(tok, 150, 1, &start), "segment 1 is inside the run");
    cr_assert(!emb_owned_run(tok, 150, 2, &start), "nothing goes past the last segment");
    cr_assert(emb_run_passes(tok, 150, 0, 1) && emb_run_passes(tok, 150, 1, 1), "token 1 passes segments 0 and 1");
    cr_assert(!emb_run_passes(tok, 150, 2, 1) && !emb_run_passes(tok, 150, 1, 0), "and no further; token 0 not at 128");
}
