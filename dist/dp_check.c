// Data-parallel equivalence, started by tests/test_dist.c under mpirun:
// n ranks, each on its own slice of a global batch, after
// dp_reduce_gradients must hold the loss and gradients that one process
// computes on the whole batch; and after 5 AdamW steps, the same parameters.
//
// Float tolerances: the ranks sum gradients in a different order than one
// process does, so agreement is to float rounding: relative error < 1e-5 for
// gradients and parameters (measured ~1e-7), loss to 1e-6.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_parallel.h"

static void tiny(Config *c, int batch) {
    config_defaults(c);
    const char *sets[] = {"vocab_size=16", "d_model=16", "d_ff=24", "n_heads=2", "seq_len=32", "lsh_chunk=8",
                          "local_chunk=8", "n_hashes=2", "n_buckets=4", "dropout=0.1", "ff_chunk=20",
                          "loss_chunk=24", "attn_layers=local,lsh", "n_layers=2", "init_std=0.3", NULL};
    char err[256];
    for (int i = 0; sets[i]; i++)
        if (config_set_pair(c, sets[i], err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            exit(2);
        }
    c->batch = batch;
    if (config_finalize(c, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
}

// Sequence b of the global batch at a step; some targets ignored.
static void global_batch(int *tokens, int *targets, int B, int L, int V, int step) {
    for (int b = 0; b < B; b++)
        for (int i = 0; i < L; i++) {
            unsigned h = (unsigned)(b * 7919 + i * 104729 + step * 1299709);
            tokens[b * L + i] = (int)(h % (unsigned)V);
            targets[b * L + i] = (i + b) % 6 == 5 ? -1 : (int)((h / 7) % (unsigned)V);
        }
}

static double rel(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), s += (double)b[i] * b[i];
    return sqrt(d / (s > 0 ? s : 1));
}

int main(int argc, char **argv) {
    Dist d;
    char err[256];
    if (dist_init(&d, &argc, &argv, 1, err, sizeof err)) return fprintf(stderr, "%s\n", err), 2;
    const int per_rank = 2, B = per_rank * d.world;
    Config local_cfg, global_cfg;
    tiny(&local_cfg, per_rank);
    tiny(&global_cfg, B);
    const int L = local_cfg.seq_len, V = local_cfg.vocab_size;
    Model m;
    model_init(&m, &local_cfg, backend_cpu());
    m.row_offset = (size_t)d.rank * per_rank * L;
    dp_broadcast_parameters(&d, DIST_WORLD, &m);
    Model ref;
    if (d.rank == 0) model_init(&ref, &global_cfg, backend_cpu());
    int *tokens = calloc((size_t)B * L, sizeof(int)), *targets = calloc((size_t)B * L, sizeof(int));
    int failures = 0;
    for (int step = 1; step <= 5; step++) {
        global_batch(tokens, targets, B, L, V, step);
        size_t off = (size_t)d.rank * per_rank * L;
        LossStats mine = model_forward_backward(&m, tokens + off, targets + off, (uint32_t)step);
        LossStats global = dp_reduce_gradients(&d, DIST_WORLD, &m, mine);
        if (d.rank == 0) {
            LossStats want = model_forward_backward(&ref, tokens, targets, (uint32_t)step);
            double eg = rel(m.grads, ref.grads, m.layout.n_params);
            double el = fabs(global.loss - want.loss) / want.loss;
            int ok = eg < 1e-5 && el < 1e-6 && global.n_targets == want.n_targets;
            failures += !ok;
            printf("step %d: loss %.6f vs %.6f (rel %.2e), targets %ld vs %ld, grads rel err %.2e: %s\n", step,
                   global.loss, want.loss, el, global.n_targets, want.n_targets, eg, ok ? "OK" : "FAIL");
            model_update(&ref, step, 1e-2);
        }
        model_update(&m, step, 1e-2);
    }
    if (d.rank == 0) {
        double ep = rel(m.params, ref.params, m.layout.n_params);
        failures += !(ep < 1e-5);
        printf("parameters after 5 steps: rel err %.2e: %s\n", ep, ep < 1e-5 ? "OK" : "FAIL");
        printf("dp_check %d ranks: %s\n", d.world, failures ? "FAIL" : "OK");
        model_free(&ref);
    }
    float f = (float)failures;
    dist_allreduce_sum(&d, DIST_WORLD, &f, 1);
    model_free(&m);
    free(tokens);
    free(targets);
    dist_finalize(&d);
    return f > 0;
}
