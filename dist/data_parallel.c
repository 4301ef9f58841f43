#include "data_parallel.h"

#include <stdlib.h>
#include <string.h>

// NCCL communicators by DistGroup; NULL for a group not opened.
struct DistDevice {
    const DistNcclOps *ops;
    DistNccl *comm[3];
};

void dist_open_device_collectives(Dist *d, const DistNcclOps *ops) {
    struct DistDevice *dev = calloc(1, sizeof *dev);
    if (!dev) dist_abort(d, "dist_open_device_collectives: out of memory");
    dev->ops = ops;
    char err[512];
    for (DistGroup g = DIST_WORLD; g <= DIST_SP; g++) {
        if (g == DIST_DP || (g == DIST_SP && d->sp == 1)) continue;  // a step never uses them
        // dp = 1: the sp group is the world, rank for rank; one communicator
        // then serves both (NCCL's buffers are per communicator).
        if (g == DIST_SP && d->sp == d->world) {
            dev->comm[g] = dev->comm[DIST_WORLD];
            continue;
        }
        dev->comm[g] = ops->init(d, g, err, sizeof err);
        if (!dev->comm[g]) dist_abort(d, err);  // no GPU, though the launcher found one: end every rank
    }
    d->device = dev;
}

void dist_close_device_collectives(Dist *d) {
    struct DistDevice *dev = d->device;
    if (!dev) return;
    if (dev->comm[DIST_SP] != dev->comm[DIST_WORLD]) dev->ops->free(dev->comm[DIST_SP]);
    dev->ops->free(dev->comm[DIST_WORLD]);
    free(dev);
    d->device = NULL;
}

// The communicator for the model's buffers, or NULL when they are host
// memory (CPU backend: MPI). A GPU backend's buffers cannot go over MPI here.
static DistNccl *device_comm(const Dist *d, DistGroup g, const Model *m) {
    if (!strcmp(m->be->name, "cpu")) return NULL;
    if (!d->device)
        dist_abort(d, "bug: a GPU backend on several ranks needs dist_open_device_collectives before its first "
                      "collective");
    if (!d->device->comm[g]) dist_abort(d, "bug: no NCCL communicator was opened for this group");
    return d->device->comm[g];
}

long dist_count_targets(const Dist *d, DistGroup g, const int *targets, size_t n) {
    long local = 0;
    for (size_t i = 0; i < n; i++) local += targets[i] >= 0;
    float count = (float)local;  // exact below 2^24 targets per step
    dist_allreduce_sum(d, g, &count, 1);
    return (long)count;
}

LossStats dist_reduce_step(const Dist *d, DistGroup g, Model *m, LossStats local) {
    DistNccl *nccl = device_comm(d, g, m);
    if (nccl) d->device->ops->allreduce_sum(nccl, m->grads, m->layout.n_params);
    else dist_allreduce_sum(d, g, m->grads, m->layout.n_params);
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

// From the group's rank 0, in place: device buffers with ncclBroadcast (no
// host copy of the parameters needed), host buffers with MPI.
static void broadcast_buffer(const Dist *d, DistGroup g, const Model *m, float *buf) {
    DistNccl *nccl = device_comm(d, g, m);
    if (nccl) d->device->ops->bcast(nccl, buf, m->layout.n_params, 0);
    else dist_bcast(d, g, buf, m->layout.n_params * sizeof(float), 0);
}

void dist_broadcast_parameters(const Dist *d, DistGroup g, Model *m) { broadcast_buffer(d, g, m, m->params); }

void dist_broadcast_training_state(const Dist *d, DistGroup g, Model *m) {
    broadcast_buffer(d, g, m, m->params);
    broadcast_buffer(d, g, m, m->adam_m);
    broadcast_buffer(d, g, m, m->adam_v);
}

static void sp_alltoall_host(void *ctx, const float *send, float *recv, size_t count) {
    dist_alltoall((const Dist *)ctx, DIST_SP, send, recv, count);
}

// The model calls the exchange with its own buffers (xsend, xrecv): device
// memory for a GPU backend.
static void sp_alltoall_device(void *ctx, const float *send, float *recv, size_t count) {
    const Dist *d = ctx;
    d->device->ops->alltoall(d->device->comm[DIST_SP], send, recv, count);
}

void dist_attach_sequence_parallel(const Dist *d, Model *m) {
    if (m->seq.sp != d->sp) dist_abort(d, "config sp differs from the process grid's sp");
    m->seq.sp_rank = d->sp_rank;
    m->seq.ctx = (void *)d;
    // With sp = 1 the model never exchanges, and no sp communicator is open.
    m->seq.alltoall = d->sp > 1 && device_comm(d, DIST_SP, m) ? sp_alltoall_device : sp_alltoall_host;
}
