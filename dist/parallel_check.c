// Distributed training against one process, started by tests/test_dist.c:
//
//   mpirun -np N build/parallel_check SP STEPS [PATTERN] [--device-standin] [--skewed] [--buckets] [key=value ...]
//
// key=value pairs override the test model's config (both models), e.g.
// n_heads=2 sp_attention=sequence n_hashes=4. --skewed: every token is one
// repeated byte (LSH buckets as skewed as the input makes them).
//
// N ranks form a (N/SP) x SP grid: each data-parallel replica takes its own
// sequences of a global batch, each sequence-parallel rank L/SP positions of
// them. Rank 0 also trains one unsharded model on the whole batch. Every step
// compares the loss and the gradients (after dist_reduce_step), and at the
// end the parameters, through the reversible backward with dropout on.
//
// --buckets: the grid's model sums its gradients in buckets started by the
// backward as each layer finishes (dist_attach_grad_buckets, nonblocking,
// overlapping the next layer's backward), and a twin of it, the same model
// on the same ranks, with one all-reduce after the backward: their summed
// gradients must be equal bit for bit, every step, on every rank. Each
// element is the sum of the same ranks' values either way; MPI's reduction
// order for an element does not depend on the message it travels in (Open
// MPI's allreduce algorithms were seen to agree here; the test would show
// otherwise).
//
// --device-standin: the grid's model takes the route of a GPU backend (its
// backend is the CPU one under another name, so data_parallel.c treats its
// buffers as device memory) and the device collectives are a stand-in for
// NCCL that does the same over MPI and counts its calls. This tests the
// trainer's NCCL route (which buffers go through which collective, on which
// group) on machines without a GPU; NCCL itself is not exercised.
//
// Float tolerances: ranks sum in other orders than one process (gradients
// over ranks, attention inputs exchanged; sequence-sharded LSH sums a
// position's round gradients and a chunk's halo gradient in another order;
// projections run as GEMMs of other row counts), so agreement is to float
// rounding: gradients and parameters relative error < 1e-5 (measured
// 1e-7..1e-6), each tensor's gradient < 1e-4 of its own norm (small tensors
// have fewer terms to average rounding over), loss 1e-6. The sort itself is
// exact (every chunk sees the same rows as in one process).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_parallel.h"

static void config(Config *c, int batch, int sp, const char *pattern, char **overrides, int n_overrides) {
    config_defaults(c);
    const char *sets[] = {"vocab_size=16", "d_model=16", "d_ff=24", "n_heads=4", "d_head=4", "seq_len=32",
                          "lsh_chunk=8", "local_chunk=8", "n_hashes=2", "n_buckets=4", "dropout=0.1",
                          "ff_chunk=20", "loss_chunk=12", "n_layers=3", "init_std=0.3", NULL};
    char err[256];
    for (int i = 0; sets[i]; i++)
        if (config_set_pair(c, sets[i], err, sizeof err)) fprintf(stderr, "%s\n", err), exit(2);
    for (int i = 0; i < n_overrides; i++)
        if (config_set_pair(c, overrides[i], err, sizeof err)) fprintf(stderr, "%s\n", err), exit(2);
    snprintf(c->attn_layers, sizeof c->attn_layers, "%s", pattern);
    c->batch = batch;
    c->sp = sp;
    if (config_finalize(c, err, sizeof err)) fprintf(stderr, "%s\n", err), exit(2);
}

static void global_batch(int *tokens, int *targets, int B, int L, int V, int step, int skewed) {
    for (int b = 0; b < B; b++)
        for (int i = 0; i < L; i++) {
            unsigned h = (unsigned)(b * 7919 + i * 104729 + step * 1299709);
            tokens[b * L + i] = skewed ? 3 : (int)(h % (unsigned)V);
            targets[b * L + i] = (i + b) % 6 == 5 ? -1 : (int)((h / 7) % (unsigned)V);
        }
}

// The stand-in for NCCL: the DistNcclOps table over MPI host buffers.
struct DistNccl {
    const Dist *d;
    DistGroup g;
};
static long standin_allreduces, standin_bcasts, standin_alltoalls, standin_alltoallvs, standin_shifts, standin_comms;

static DistNccl *standin_init(const Dist *d, DistGroup g, char *err, size_t errlen) {
    (void)err, (void)errlen;
    DistNccl *n = calloc(1, sizeof *n);
    n->d = d, n->g = g;
    standin_comms++;
    return n;
}
static void standin_free(DistNccl *n) { free(n); }
static void standin_allreduce_sum(DistNccl *n, float *buf, size_t count) {
    standin_allreduces++;
    dist_allreduce_sum(n->d, n->g, buf, count);
}
static void standin_bcast(DistNccl *n, float *buf, size_t count, int root) {
    standin_bcasts++;
    dist_bcast(n->d, n->g, buf, count * sizeof(float), root);
}
static void standin_alltoall(DistNccl *n, const float *send, float *recv, size_t count) {
    standin_alltoalls++;
    dist_alltoall(n->d, n->g, send, recv, count);
}
static void standin_alltoallv(DistNccl *n, const float *send, const size_t *send_counts, float *recv,
                              const size_t *recv_counts) {
    standin_alltoallvs++;
    dist_alltoallv(n->d, n->g, send, send_counts, recv, recv_counts);
}
static void standin_shift(DistNccl *n, const float *send, float *recv, size_t count, int dir, int cyclic) {
    standin_shifts++;
    dist_shift(n->d, n->g, send, recv, count, dir, cyclic);
}
static const DistNcclOps standin_ops = {standin_init,     standin_free,      standin_allreduce_sum, standin_bcast,
                                        standin_alltoall, standin_alltoallv, standin_shift};

static double rel(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), s += (double)b[i] * b[i];
    return sqrt(d / (s > 0 ? s : 1));
}

int main(int argc, char **argv) {
    if (argc < 3)
        return fprintf(stderr, "usage: parallel_check SP STEPS [PATTERN] [--device-standin] [--skewed] [key=value ...]\n"), 2;
    int sp = atoi(argv[1]), steps = atoi(argv[2]), standin = 0, skewed = 0, bucketed = 0, n_overrides = 0;
    const char *pattern = "local,lsh";
    char *overrides[32];
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--device-standin")) standin = 1;
        else if (!strcmp(argv[i], "--skewed")) skewed = 1;
        else if (!strcmp(argv[i], "--buckets")) bucketed = 1;
        else if (strchr(argv[i], '=') && n_overrides < 32) overrides[n_overrides++] = argv[i];
        else if (i == 3) pattern = argv[i];
        else return fprintf(stderr, "parallel_check: unknown argument '%s'\n", argv[i]), 2;
    }
    Dist d;
    char err[256];
    if (dist_init(&d, &argc, &argv, sp, err, sizeof err)) return fprintf(stderr, "%s\n", err), 2;
    const int per_replica = 2, B = per_replica * d.dp;
    Config cfg, ref_cfg;
    config(&cfg, per_replica, sp, pattern, overrides, n_overrides);
    config(&ref_cfg, B, 1, pattern, overrides, n_overrides);
    const int L = cfg.seq_len, V = cfg.vocab_size, Ll = L / sp;
    Model m, ref;
    Backend as_device = *backend_cpu();
    as_device.name = "cpu as a device (stand-in)";
    model_init(&m, &cfg, standin ? &as_device : backend_cpu());
    if (standin) dist_open_device_collectives(&d, &standin_ops);
    dist_attach_sequence_parallel(&d, &m);
    dist_broadcast_parameters(&d, DIST_WORLD, &m);
    Model twin;  // --buckets: the same model with one all-reduce
    if (bucketed) {
        model_init(&twin, &cfg, standin ? &as_device : backend_cpu());
        dist_attach_sequence_parallel(&d, &twin);
        dist_broadcast_parameters(&d, DIST_WORLD, &twin);
        dist_attach_grad_buckets(&d, DIST_WORLD, &m);
    }
    long bucket_mismatches = 0;
    if (d.rank == 0) model_init(&ref, &ref_cfg, backend_cpu());
    int *gt = calloc((size_t)B * L, sizeof(int)), *gy = calloc((size_t)B * L, sizeof(int));
    int *lt = calloc((size_t)per_replica * Ll, sizeof(int)), *ly = calloc((size_t)per_replica * Ll, sizeof(int));
    int failures = 0;
    double worst = 0, worst_tensor = 0;
    for (int step = 1; step <= steps; step++) {
        global_batch(gt, gy, B, L, V, step, skewed);
        for (int b = 0; b < per_replica; b++) {  // my sequences, my positions
            size_t src = ((size_t)(d.dp_rank * per_replica + b)) * L + (size_t)d.sp_rank * Ll;
            memcpy(lt + (size_t)b * Ll, gt + src, (size_t)Ll * sizeof(int));
            memcpy(ly + (size_t)b * Ll, gy + src, (size_t)Ll * sizeof(int));
        }
        ModelStep st = {.step = (uint32_t)step, .train = 1, .backward = 1,
                        .batch_offset = (size_t)d.dp_rank * per_replica,
                        .loss_count = dist_count_targets(&d, DIST_WORLD, ly, (size_t)per_replica * Ll)};
        LossStats mine = model_step(&m, lt, ly, &st);
        LossStats global = dist_reduce_step(&d, DIST_WORLD, &m, mine);
        if (bucketed) {
            dist_reduce_step(&d, DIST_WORLD, &twin, model_step(&twin, lt, ly, &st));
            float differ = memcmp(m.grads, twin.grads, m.layout.n_params * sizeof(real)) != 0;
            dist_allreduce_sum(&d, DIST_WORLD, &differ, 1);
            bucket_mismatches += differ > 0;
            if (d.rank == 0)
                printf("step %2d: bucketed gradients vs one all-reduce: %s (rel diff %.1e on rank 0)\n", step,
                       differ > 0 ? "DIFFER" : "bit-identical on every rank", rel(m.grads, twin.grads, m.layout.n_params));
            model_update(&twin, step, 1e-2);
        }
        if (d.rank == 0) {
            LossStats want = model_forward_backward(&ref, gt, gy, (uint32_t)step);
            double eg = rel(m.grads, ref.grads, m.layout.n_params), el = fabs(global.loss - want.loss) / want.loss;
            double et = 0;  // worst tensor, relative to its own norm
            for (int t = 0; t < m.layout.n_tensors; t++) {
                const TensorInfo *ti = &m.layout.tensors[t];
                et = fmax(et, rel(m.grads + ti->offset, ref.grads + ti->offset, ti->size));
            }
            worst_tensor = fmax(worst_tensor, et);
            int ok = eg < 1e-5 && et < 1e-4 && el < 1e-6 && global.n_targets == want.n_targets;
            failures += !ok;
            worst = fmax(worst, eg);
            printf("step %2d: loss %.6f vs %.6f (rel %.1e), grads rel err %.1e (worst tensor %.1e): %s\n", step,
                   global.loss, want.loss, el, eg, et, ok ? "OK" : "FAIL");
            model_update(&ref, step, 1e-2);
        }
        model_update(&m, step, 1e-2);
    }
    if (d.rank == 0) {
        double ep = rel(m.params, ref.params, m.layout.n_params);
        failures += !(ep < 1e-5);
        printf("parameters after %d steps: rel err %.1e\n", steps, ep);
        if (standin) {
            // One gradient sum a step, one parameter broadcast, and per
            // attention layer and step four exchanges or more (forward,
            // recompute, backward): all-to-alls around Ulysses layers,
            // all-to-all-vs and halos around sequence-sharded ones; one
            // communicator when sp is the world.
            int seq_lsh = cfg.sp_sequence[ATTN_LSH] && config_count_lsh_layers(&cfg) > 0;
            int kept_sort = 0;  // the streamed sort fetches its look-back rows with the rest: no shifts
            for (int l = 0; l < cfg.n_layers; l++) kept_sort |= cfg.layer_kind[l] == ATTN_LSH && !m.pass_steps[l];
            int seq_any = (seq_lsh && kept_sort) ||
                          (cfg.sp_sequence[ATTN_LOCAL] && config_count_lsh_layers(&cfg) < cfg.n_layers);
            long exchanges = standin_alltoalls + standin_alltoallvs + standin_shifts;
            // --buckets: n_layers + 2 bucket sums a step, and the twin's one.
            int ok = standin_allreduces == steps * (bucketed ? cfg.n_layers + 3 : 1) && standin_bcasts == 1 + bucketed &&
                     (sp == 1 ? exchanges == 0 : exchanges >= 4L * steps * cfg.n_layers) &&
                     (sp == 1 || !seq_lsh || standin_alltoallvs > 0) && (sp == 1 || !seq_any || standin_shifts > 0) &&
                     standin_comms == (sp == 1 || sp == d.world ? 1 : 2);
            failures += !ok;
            printf("device route: %ld communicator(s), %ld all-reduces, %ld broadcasts, %ld all-to-alls, %ld "
                   "all-to-all-vs, %ld shifts: %s\n",
                   standin_comms, standin_allreduces, standin_bcasts, standin_alltoalls, standin_alltoallvs,
                   standin_shifts, ok ? "OK" : "FAIL");
        }
        int streamed = 0;
        for (int l = 0; l < cfg.n_layers; l++) streamed = m.pass_steps[l] > streamed ? m.pass_steps[l] : streamed;
        if (sp > 1 && cfg.sp_sequence[ATTN_LSH] && config_count_lsh_layers(&cfg) > 0) {
            if (streamed) printf("sort: streamed in %d steps, passes of %d heads\n", streamed, m.pass_heads[0]);
            else printf("sort: rows kept, passes of %d heads\n", m.pass_heads[0]);
        }
        printf("attention: local %s, lsh %s; worst tensor gradient rel err %.1e\n",
               sp == 1 ? "unsharded" : cfg.sp_sequence[ATTN_LOCAL] ? "sequence-sharded (halo)" : "heads (Ulysses)",
               sp == 1 ? "unsharded" : cfg.sp_sequence[ATTN_LSH] ? "sequence-sharded (sort)" : "heads (Ulysses)",
               worst_tensor);
        failures += bucket_mismatches > 0;
        if (bucketed)
            printf("gradient buckets: %ld of %d steps differ from one all-reduce: %s\n", bucket_mismatches, steps,
                   bucket_mismatches ? "FAIL" : "OK");
        printf("parallel_check dp %d x sp %d (%s): %s\n", d.dp, d.sp, pattern, failures ? "FAIL" : "OK");
        model_free(&ref);
    }
    float f = (float)failures;
    dist_allreduce_sum(&d, DIST_WORLD, &f, 1);
    model_free(&m);
    if (bucketed) model_free(&twin);
    dist_close_device_collectives(&d);
    dist_finalize(&d);
    return f > 0;
}
