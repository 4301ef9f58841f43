// Distributed training-step benchmark: the `bench` command's measurement on
// a dp x sp grid of MPI ranks, on random tokens.
//
//   mpirun -np N build/dist_bench [--sp S] [--steps K] [--warmup W] [--plan-only] [key=value ...]
//
// --plan-only: set the model up, print what model_init planned per rank
// (max over ranks) and the peak RSS so far, and take no step (seconds, at
// any length: the planned buffers are not touched).
//
// Prints one JSON line (rank 0): global tokens/s, step time, the share of the
// step spent in collectives (max over ranks), peak RSS (max over ranks), and
// the bytes one rank sends per step in the sequence-parallel exchanges
// (counted in the callbacks, dist_seq_bytes; mean over ranks, and the
// largest rank's total), by exchange, with the path each attention kind took.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "data_parallel.h"
#include "rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : -1;
}

int main(int argc, char **argv) {
    int sp = 1, steps = 2, warmup = 1, plan_only = 0;
    Config c;
    config_defaults(&c);
    char err[512];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sp") && i + 1 < argc) sp = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--plan-only")) plan_only = 1;
        else if (config_set_pair(&c, argv[i], err, sizeof err)) return fprintf(stderr, "dist_bench: %s\n", err), 2;
    }
    c.sp = sp;
    Dist d;
    if (dist_init(&d, &argc, &argv, sp, err, sizeof err) || config_finalize(&c, err, sizeof err)) {
        fprintf(stderr, "dist_bench: %s\n", err);
        return 2;
    }
    Model m;
    model_init(&m, &c, backend_cpu());
    dist_attach_sequence_parallel(&d, &m);
    dist_broadcast_parameters(&d, DIST_WORLD, &m);
    if (plan_only) {
        double planned[2] = {(double)m.bytes_planned / 1048576.0, peak_rss_mib()};
        double *all = calloc((size_t)2 * d.world, sizeof(double));
        memcpy(all + 2 * d.rank, planned, sizeof planned);
        dist_allreduce_sum_f64(&d, DIST_WORLD, all, (size_t)2 * d.world);
        double max_planned = 0, max_rss = 0;
        for (int r = 0; r < d.world; r++) {
            if (all[2 * r] > max_planned) max_planned = all[2 * r];
            if (all[2 * r + 1] > max_rss) max_rss = all[2 * r + 1];
        }
        if (d.rank == 0)
            printf("{\"world\": %d, \"dp\": %d, \"sp\": %d, \"seq_len\": %d, \"n_layers\": %d, "
                   "\"planned_mb_max_rank\": %.1f, \"rss_before_step_mb_max_rank\": %.1f}\n",
                   d.world, d.dp, d.sp, c.seq_len, c.n_layers, max_planned, max_rss);
        free(all);
        model_free(&m);
        dist_finalize(&d);
        return 0;
    }
    int *tokens = calloc((size_t)m.T, sizeof(int)), *targets = calloc((size_t)m.T, sizeof(int));
    double t0 = 0, comm0 = 0;
    DistSeqBytes bytes0 = {0};
    LossStats st = {0};
    for (int s = 1; s <= warmup + steps; s++) {
        if (s == warmup + 1)
            dist_barrier(&d, DIST_WORLD), t0 = now(), comm0 = dist_comm_seconds(), bytes0 = dist_seq_bytes();
        for (int i = 0; i < m.T; i++) {  // each rank draws its own tokens
            tokens[i] = (int)(rng_bits64(c.seed, ((uint64_t)d.rank << 32) | (uint32_t)i, (uint32_t)s, 7) % (uint64_t)c.vocab_size);
            targets[i] = (int)(rng_bits64(c.seed, ((uint64_t)d.rank << 32) | (uint32_t)i, (uint32_t)s, 8) % (uint64_t)c.vocab_size);
        }
        ModelStep step = {.step = (uint32_t)s, .train = 1, .backward = 1, .batch_offset = (size_t)d.dp_rank * c.batch,
                          .loss_count = dist_count_targets(&d, DIST_WORLD, targets, (size_t)m.T)};
        st = dist_reduce_step(&d, DIST_WORLD, &m, model_step(&m, tokens, targets, &step));
        model_update(&m, s, 1e-3);
    }
    dist_barrier(&d, DIST_WORLD);
    double dt = (now() - t0) / steps;
    float share = (float)((dist_comm_seconds() - comm0) / steps / dt), rss = (float)peak_rss_mib();
    // Max over ranks through a sum: each rank fills its own slots.
    float *all = calloc((size_t)2 * d.world, sizeof(float));
    all[2 * d.rank] = share;
    all[2 * d.rank + 1] = rss;
    dist_allreduce_sum(&d, DIST_WORLD, all, (size_t)2 * d.world);
    float max_share = 0, max_rss = 0;
    for (int r = 0; r < d.world; r++) {
        if (all[2 * r] > max_share) max_share = all[2 * r];
        if (all[2 * r + 1] > max_rss) max_rss = all[2 * r + 1];
    }
    // Bytes per step: mean over ranks by kind (double: exact), and the max total.
    DistSeqBytes b1 = dist_seq_bytes();
    double kinds[5] = {b1.ulysses - bytes0.ulysses, b1.sort - bytes0.sort, b1.halo - bytes0.halo,
                       b1.histogram - bytes0.histogram, b1.control - bytes0.control};
    double mine_total = 0;
    for (int k = 0; k < 5; k++) kinds[k] /= steps, mine_total += kinds[k];
    double *per_rank = calloc((size_t)d.world, sizeof(double));
    per_rank[d.rank] = mine_total;
    dist_allreduce_sum_f64(&d, DIST_WORLD, kinds, 5);
    dist_allreduce_sum_f64(&d, DIST_WORLD, per_rank, (size_t)d.world);
    double max_total = 0;
    for (int r = 0; r < d.world; r++) max_total = per_rank[r] > max_total ? per_rank[r] : max_total;
    free(per_rank);
    static const char *const path[2] = {"heads", "sequence"};
    if (d.rank == 0)
        printf("{\"world\": %d, \"dp\": %d, \"sp\": %d, \"seq_len\": %d, \"batch_per_replica\": %d, \"d_model\": %d, "
               "\"n_layers\": %d, \"tokens_per_step\": %ld, \"tokens_per_s\": %.1f, \"step_ms\": %.1f, "
               "\"comm_share\": %.3f, \"peak_rss_mb_max_rank\": %.1f, \"planned_mb\": %.1f, \"params\": %zu, "
               "\"loss\": %.4f, "
               "\"attn_layers\": \"%s\", \"n_heads\": %d, \"n_hashes\": %d, \"local_path\": \"%s\", "
               "\"lsh_path\": \"%s\", \"bytes_per_step_rank\": {\"ulysses\": %.0f, \"sort\": %.0f, "
               "\"halo\": %.0f, \"histogram\": %.0f, \"control\": %.0f}, \"bytes_per_step_max_rank\": %.0f}\n",
               d.world, d.dp, d.sp, c.seq_len, c.batch, c.d_model, c.n_layers, (long)c.batch * c.seq_len * d.dp,
               (double)c.batch * c.seq_len * d.dp / dt, dt * 1e3, max_share, max_rss,
               (double)m.bytes_planned / 1048576.0, m.layout.n_params, st.loss,
               c.attn_layers, c.n_heads, c.n_hashes, d.sp > 1 ? path[c.sp_sequence[ATTN_LOCAL]] : "none",
               d.sp > 1 ? path[c.sp_sequence[ATTN_LSH]] : "none", kinds[0] / d.world, kinds[1] / d.world,
               kinds[2] / d.world, kinds[3] / d.world, kinds[4] / d.world, max_total);
    free(all);
    free(tokens);
    free(targets);
    model_free(&m);
    dist_finalize(&d);
    return 0;
}
