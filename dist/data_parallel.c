#include "data_parallel.h"

#include <string.h>

// Host buffers only for now: the CPU backend's buffers are host memory. The
// CUDA backend's gradients go through NCCL (issue 4/5), not here.
static void require_host_buffers(const Dist *d, const Model *m) {
    if (strcmp(m->be->name, "cpu") != 0)
        dist_abort(d, "data parallel over MPI needs host buffers (device=cpu); the NCCL path is not built yet");
}

LossStats dp_reduce_gradients(const Dist *d, DistGroup g, Model *m, LossStats local) {
    require_host_buffers(d, m);
    // Loss sums and counts: float sums of up to 2^24 targets are exact enough
    // for the weights; the loss itself is summed in float across ranks.
    float stats[3] = {(float)(local.loss * (double)local.n_targets), (float)(local.accuracy * (double)local.n_targets),
                      (float)local.n_targets};
    dist_allreduce_sum(d, g, stats, 3);
    double n_global = stats[2];
    float *grads = (float *)m->grads;
    size_t n = m->layout.n_params;
    float w = (float)local.n_targets;
    for (size_t i = 0; i < n; i++) grads[i] *= w;
    dist_allreduce_sum(d, g, grads, n);
    float inv = n_global > 0 ? (float)(1.0 / n_global) : 0.0f;
    for (size_t i = 0; i < n; i++) grads[i] *= inv;
    LossStats out = {.loss = n_global > 0 ? stats[0] / n_global : 0,
                     .accuracy = n_global > 0 ? stats[1] / n_global : 0,
                     .n_targets = (long)n_global};
    return out;
}

void dp_broadcast_parameters(const Dist *d, DistGroup g, Model *m) {
    require_host_buffers(d, m);
    dist_bcast(d, g, m->params, m->layout.n_params * sizeof(float), 0);
}
