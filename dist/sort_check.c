// The distributed LSH sort against one process's, started by
// tests/test_dist.c:
//
//   mpirun -np N build/sort_check CASES
//
// N ranks of one sequence-parallel group. For each case, every rank draws the
// same bucket vectors [B, H, R, L] (uniform, all in one bucket, two buckets
// split by position, or piled onto the last rank's positions), keeps its
// L/N positions, and runs the model's sort and move
// (seq_lsh_sort_exchange) on rows that encode (lane, position). Each rank's
// slice of the sorted order must equal, row for row, the slice of
// lsh_sort_items' stable sort by (round, bucket, position) on one process:
// positions and the rows that travelled with them, exactly (integers).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_cpu.h"
#include "attention_seq.h"
#include "data_parallel.h"
#include "rng.h"

enum { UNIFORM, ONE_BUCKET, TWO_HALVES, PILED_ON_LAST, N_KINDS };
static const char *const KIND_NAMES[] = {"uniform", "one bucket", "two halves", "piled on the last rank"};

static int bucket_of(int kind, int nb, uint64_t seed, size_t e, int i, int L, int sp) {
    int r = (int)(rng_bits64(seed, e, 0, 99) % (uint64_t)nb);
    switch (kind) {
    case ONE_BUCKET: return nb - 1;
    case TWO_HALVES: return i < L / 2 ? 1 : 0;  // later positions sort first
    case PILED_ON_LAST: return i >= L - L / sp ? 0 : r;
    default: return r;
    }
}

int main(int argc, char **argv) {
    int cases = argc > 1 ? atoi(argv[1]) : 8;
    int world = dist_env_world() > 0 ? dist_env_world() : 1;
    Dist d;
    char err[256];
    if (dist_init(&d, &argc, &argv, world, err, sizeof err)) return fprintf(stderr, "sort_check: %s\n", err), 2;
    const int sp = d.sp;
    if (sp < 2) {  // one process never takes the sequence-sharded path
        fprintf(stderr, "sort_check: start 2 or more ranks with mpirun\n");
        dist_finalize(&d);
        return 2;
    }
    SeqParallel seq;
    dist_seq_parallel_exchanges(&d, &seq, 0);
    long bad = 0, rows_checked = 0, streamed_checked = 0, split_steps = 0;
    for (int cs = 0; cs < cases; cs++) {
        const uint64_t seed = 1000 + (uint64_t)cs;
        // Shapes: B, H, R, nb, chunk, positions per rank, drawn per case.
        const int kind = cs % N_KINDS, B = 1 + cs % 2, H = 1 + (cs / 2) % 3, R = 1 << (cs % 3), dh = 2;
        const int Ll = 4 * (1 + cs % 3), L = Ll * sp, nb = 2 << (cs % 4);
        char sets[8][64];
        snprintf(sets[0], 64, "n_heads=%d", H);
        snprintf(sets[1], 64, "d_head=%d", dh);
        snprintf(sets[2], 64, "seq_len=%d", L);
        snprintf(sets[3], 64, "n_hashes=%d", R);
        snprintf(sets[4], 64, "n_buckets=%d", nb);
        snprintf(sets[5], 64, "lsh_chunk=%d", 4);
        snprintf(sets[6], 64, "attn_layers=lsh");
        snprintf(sets[7], 64, "sp_attention=sequence");
        Config c;
        config_defaults(&c);
        c.n_layers = 1, c.sp = sp, c.d_model = H * dh;
        for (int i = 0; i < 8; i++)
            if (config_set_pair(&c, sets[i], err, sizeof err)) return fprintf(stderr, "sort_check: %s\n", err), 2;
        if (config_finalize(&c, err, sizeof err)) return fprintf(stderr, "sort_check: %s\n", err), 2;
        SeqAttention sa;
        const Backend *cpu = backend_cpu();
        SeqSizeRules sr = {cpu->attention_workspace_bytes, cpu->lsh_sorted_workspace_bytes};
        char *blob = calloc(1, seq_attention_layout(&sa, NULL, &c, &sr, B, ATTN_LSH, H, 0, NULL));
        seq_attention_layout(&sa, blob, &c, &sr, B, ATTN_LSH, H, 0, NULL);
        const int lanes = B * H, HD = H * dh, n = sa.n_own, m = sa.m;
        uint16_t *global = malloc((size_t)lanes * R * L * sizeof(uint16_t));
        uint16_t *mine = malloc((size_t)lanes * R * Ll * sizeof(uint16_t));
        real *qk = malloc((size_t)B * Ll * HD * sizeof(real)), *v = malloc((size_t)B * Ll * HD * sizeof(real));
        for (size_t e = 0; e < (size_t)lanes * R * L; e++)
            global[e] = (uint16_t)bucket_of(kind, nb, seed, e, (int)(e % (size_t)L), L, sp);
        for (size_t lr = 0; lr < (size_t)lanes * R; lr++)
            memcpy(mine + lr * Ll, global + lr * L + (size_t)d.sp_rank * Ll, (size_t)Ll * sizeof(uint16_t));
        for (int b = 0; b < B; b++)
            for (int i = 0; i < Ll; i++)
                for (int h = 0; h < H; h++) {
                    real *q = qk + ((size_t)b * Ll + i) * HD + (size_t)h * dh, *vv = v + (q - qk);
                    q[0] = (real)(b * H + h), q[1] = (real)(d.sp_rank * Ll + i);
                    vv[0] = (real)(1000 * (b * H + h)), vv[1] = -(real)(d.sp_rank * Ll + i);
                }
        seq_lsh_sort_exchange(&sa, &seq, qk, v, mine);
        int *perm = malloc((size_t)R * L * sizeof(int)), *inv = malloc((size_t)R * L * sizeof(int));
        int *counts = malloc((size_t)nb * sizeof(int));
        for (int lane = 0; lane < lanes; lane++) {
            lsh_sort_items(perm, inv, counts, global + (size_t)lane * R * L, L, R, nb);
            for (int t = 0; t < n; t++) {
                int want = perm[d.sp_rank * n + t] % L;
                size_t er = (size_t)lane * (m + n) + m + t;
                const real *q = sa.sq + er * dh, *vv = sa.sv + er * dh;
                int ok = sa.spos[er] == want && q[0] == (real)lane && q[1] == (real)want &&
                         vv[0] == (real)(1000 * lane) && vv[1] == -(real)want;
                if (!ok && bad < 5)
                    fprintf(stderr, "sort_check: rank %d case %d (%s) lane %d slot %d: position %d, want %d\n",
                            d.sp_rank, cs, KIND_NAMES[kind], lane, d.sp_rank * n + t, sa.spos[er], want);
                bad += !ok;
                rows_checked++;
            }
        }
        free(perm), free(inv), free(counts), free(blob);
        // The streamed schedule against the kept one on the same rows: one
        // piece, two, and one chunk per piece (the most sub-exchanges on the
        // skewed kinds).
        {
            const size_t elems = (size_t)B * Ll * HD;
            real *in = malloc(4 * elems * sizeof(real)), *want = malloc(3 * elems * sizeof(real));
            real *got = malloc(3 * elems * sizeof(real));
            for (size_t e = 0; e < 4 * elems; e++)
                in[e] = (real)(rng_uniform(seed + 7, (uint64_t)d.sp_rank * 4 * elems + e, 0, 5) * 2 - 1);
            const real *q0 = in, *v0 = in + elems, *dout = in + 3 * elems;
            const int schedules[] = {0, 1, 2, sa.n_own / m};
            for (int k = 0; k < 4; k++) {
                SeqAttention st;
                size_t work = 0, bytes = seq_attention_layout(&st, NULL, &c, &sr, B, ATTN_LSH, H, schedules[k], &work);
                char *blob2 = calloc(1, bytes);
                void *work_buf = calloc(1, work + 64);
                seq_attention_layout(&st, blob2, &c, &sr, B, ATTN_LSH, H, schedules[k], NULL);
                st.work = work_buf;
                real *res = k ? got : want, *out = res, *dqk = res + elems, *dv = res + 2 * elems;
                real *vcopy = in + 2 * elems;  // the kept schedule may write dv over v: a copy
                memcpy(vcopy, v0, elems * sizeof(real));
                seq_lsh_forward(&st, cpu, &seq, out, q0, vcopy, mine, 0, 0, 0, 0);
                for (int t = 0; k && t < st.steps; t++)
                    if (st.sub_calls[t] > 1) {
                        split_steps++;
                        break;
                    }
                real *o_keep = malloc(elems * sizeof(real));
                memcpy(o_keep, out, elems * sizeof(real));
                seq_lsh_backward(&st, cpu, &seq, dqk, k ? dv : vcopy, dout, out, q0, vcopy);
                if (!k) memcpy(dv, vcopy, elems * sizeof(real));
                memcpy(out, o_keep, elems * sizeof(real));  // dqk overwrote nothing here (separate), keep o
                free(o_keep);
                if (k) {
                    // Per tensor (o, dqk, dv): largest difference over largest value.
                    double worst = 0;
                    for (int part = 0; part < 3; part++) {
                        double diff = 0, size = 0;
                        for (size_t e = part * elems; e < (part + 1) * elems; e++) {
                            diff = fmax(diff, fabs((double)got[e] - (double)want[e]));
                            size = fmax(size, fabs((double)want[e]));
                        }
                        worst = fmax(worst, diff / size);
                    }
                    // Float rounding (the online round combination and the
                    // order of the sums differ): 1e-5 of the tensor's largest.
                    if (!(worst < 1e-5)) {
                        if (bad < 5)
                            fprintf(stderr, "sort_check: rank %d case %d (%s) %d pieces: streamed differs from kept by %.1e\n",
                                    d.sp_rank, cs, KIND_NAMES[kind], st.steps, worst);
                        bad++;
                    }
                    streamed_checked++;
                }
                free(blob2), free(work_buf);
            }
            free(in), free(want), free(got);
        }
        free(global), free(mine), free(qk), free(v);
    }
    float totals[4] = {(float)bad, (float)rows_checked, (float)streamed_checked, (float)(split_steps > 0)};
    dist_allreduce_sum(&d, DIST_WORLD, totals, 4);
    if (d.rank == 0)
        printf("sort_check sp %d: %d cases, %.0f sorted rows and %.0f streamed schedules (%s split into "
               "sub-exchanges) checked, %.0f wrong: %s\n",
               sp, cases, totals[1], totals[2], totals[3] > 0 ? "some" : "none", totals[0], totals[0] > 0 ? "FAIL" : "OK");
    dist_finalize(&d);
    return totals[0] > 0;
}
