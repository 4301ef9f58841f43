#include "data_parallel.h"

#include <string.h>

// Host buffers only for now: the CPU backend's buffers are host memory. The
// CUDA backend's gradients go through NCCL (not built yet).
static void require_host_buffers(const Dist *d, const Model *m) {
    if (strcmp(m->be->name, "cpu") != 0)
        dist_abort(d, "distributed training over MPI needs host buffers (device=cpu); the NCCL path is not built yet");
}

long dist_count_targets(const Dist *d, DistGroup g, const int *targets, size_t n) {
    long local = 0;
    for (size_t i = 0; i < n; i++) local += targets[i] >= 0;
    float count = (float)local;  // exact below 2^24 targets per step
    dist_allreduce_sum(d, g, &count, 1);
    return (long)count;
}

LossStats dist_reduce_step(const Dist *d, DistGroup g, Model *m, LossStats local) {
    require_host_buffers(d, m);
    dist_allreduce_sum(d, g, (float *)m->grads, m->layout.n_params);
    return dist_combine_loss_stats(d, g, local);
}

LossStats dist_combine_loss_stats(const Dist *d, DistGroup g, LossStats local) {
    float stats[3] = {(float)(local.loss * (double)local.n_targets), (float)(local.accuracy * (double)local.n_targets),
                      (float)local.n_targets};
    dist_allreduce_sum(d, g, stats, 3);
    LossStats out = {.loss = stats[2] > 0 ? stats[0] / stats[2] : 0,
                     .accuracy = stats[2] > 0 ? stats[1] / stats[2] : 0,
                     .n_targets = (long)stats[2]};
    return out;
}

void dist_broadcast_parameters(const Dist *d, DistGroup g, Model *m) {
    require_host_buffers(d, m);
    dist_bcast(d, g, m->params, m->layout.n_params * sizeof(float), 0);
}

void dist_broadcast_training_state(const Dist *d, DistGroup g, Model *m) {
    dist_broadcast_parameters(d, g, m);
    dist_bcast(d, g, m->adam_m, m->layout.n_params * sizeof(float), 0);
    dist_bcast(d, g, m->adam_v, m->layout.n_params * sizeof(float), 0);
}

static void sp_alltoall(void *ctx, const float *send, float *recv, size_t count) {
    dist_alltoall((const Dist *)ctx, DIST_SP, send, recv, count);
}

void dist_attach_sequence_parallel(const Dist *d, Model *m) {
    if (m->seq.sp != d->sp) dist_abort(d, "config sp differs from the process grid's sp");
    m->seq.sp_rank = d->sp_rank;
    m->seq.ctx = (void *)d;
    m->seq.alltoall = sp_alltoall;
}
