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

// The gradient buckets of one model (one trainer holds one): where the sums
// go and how much of the buffer this step's backward has announced.
static struct {
    const Dist *d;
    DistGroup g;
    Model *m;
    size_t announced;
} buckets;

static void bucket_ready(void *ctx, size_t offset, size_t count) {
    (void)ctx;
    Model *m = buckets.m;
    DistNccl *nccl = device_comm(buckets.d, buckets.g, m);
    if (nccl) buckets.d->device->ops->allreduce_sum(nccl, m->grads + offset, count);
    else dist_start_allreduce_sum(buckets.d, buckets.g, m->grads + offset, count);
    buckets.announced += count;
}

void dist_attach_grad_buckets(const Dist *d, DistGroup g, Model *m) {
    buckets.d = d, buckets.g = g, buckets.m = m, buckets.announced = 0;
    m->grad_buckets.ready = bucket_ready;
    m->grad_buckets.ctx = NULL;
}

LossStats dist_reduce_step(const Dist *d, DistGroup g, Model *m, LossStats local) {
    DistNccl *nccl = device_comm(d, g, m);
    if (m->grad_buckets.ready == bucket_ready) {
        // The backward started every bucket's sum; wait for the host ones
        // (device ones are ordered before the backend's next work on the GPU).
        if (buckets.m != m || buckets.g != g || buckets.announced != m->layout.n_params)
            dist_abort(d, "bug: the gradient buckets did not cover the gradients once (dist_attach_grad_buckets)");
        dist_wait_reductions(d);
        buckets.announced = 0;
    } else if (nccl) d->device->ops->allreduce_sum(nccl, m->grads, m->layout.n_params);
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

// Bytes this rank sends to other ranks in the sequence-parallel exchanges
// (its own block excluded), by kind: the communication model's counts.
static DistSeqBytes seq_bytes;
DistSeqBytes dist_seq_bytes(void) { return seq_bytes; }
void dist_seq_bytes_reset(void) { memset(&seq_bytes, 0, sizeof seq_bytes); }

static void sp_alltoall_host(void *ctx, const float *send, float *recv, size_t count) {
    const Dist *d = ctx;
    seq_bytes.ulysses += (double)count * (d->sp - 1) * sizeof(float);
    dist_alltoall(d, DIST_SP, send, recv, count);
}

// The model calls the exchange with its own buffers (xsend, xrecv): device
// memory for a GPU backend.
static void sp_alltoall_device(void *ctx, const float *send, float *recv, size_t count) {
    const Dist *d = ctx;
    seq_bytes.ulysses += (double)count * (d->sp - 1) * sizeof(float);
    d->device->ops->alltoall(d->device->comm[DIST_SP], send, recv, count);
}

// All-to-all-v: the counts (host integers) over MPI, then the rows over MPI
// (host buffers) or the device collectives.
static void sp_alltoallv(void *ctx, const float *send, const size_t *send_counts, float *recv, size_t *recv_counts,
                         int device) {
    const Dist *d = ctx;
    dist_alltoall_counts(d, DIST_SP, send_counts, recv_counts);
    for (int j = 0; j < d->sp; j++)
        if (j != d->sp_rank) seq_bytes.sort += (double)send_counts[j] * sizeof(float);
    seq_bytes.control += (double)(d->sp - 1) * sizeof(size_t);
    if (device) d->device->ops->alltoallv(d->device->comm[DIST_SP], send, send_counts, recv, recv_counts);
    else dist_alltoallv(d, DIST_SP, send, send_counts, recv, recv_counts);
}
static void sp_alltoallv_host(void *ctx, const float *send, const size_t *send_counts, float *recv,
                              size_t *recv_counts) {
    sp_alltoallv(ctx, send, send_counts, recv, recv_counts, 0);
}
static void sp_alltoallv_device(void *ctx, const float *send, const size_t *send_counts, float *recv,
                                size_t *recv_counts) {
    sp_alltoallv(ctx, send, send_counts, recv, recv_counts, 1);
}

static void count_shift(const Dist *d, size_t count, int dir, int cyclic) {
    int to = d->sp_rank + dir;
    if (cyclic || (to >= 0 && to < d->sp)) seq_bytes.halo += (double)count * sizeof(float);
}
static void sp_shift_host(void *ctx, const float *send, float *recv, size_t count, int dir, int cyclic) {
    const Dist *d = ctx;
    count_shift(d, count, dir, cyclic);
    dist_shift(d, DIST_SP, send, recv, count, dir, cyclic);
}
static void sp_shift_device(void *ctx, const float *send, float *recv, size_t count, int dir, int cyclic) {
    const Dist *d = ctx;
    count_shift(d, count, dir, cyclic);
    d->device->ops->shift(d->device->comm[DIST_SP], send, recv, count, dir, cyclic);
}

// Bucket histograms are host integers (the sort runs on the host): MPI.
// Counted as a ring moves them: the scan n, the sum 2 n (sp - 1) / sp.
static void sp_scan_counts(void *ctx, const int *mine, int *before, int *total, size_t n) {
    const Dist *d = ctx;
    seq_bytes.histogram += (double)n * sizeof(int) * (1.0 + 2.0 * (d->sp - 1) / d->sp);
    dist_scan_sum_int(d, DIST_SP, mine, before, total, n);
}

void dist_seq_parallel_exchanges(const Dist *d, SeqParallel *seq, int device) {
    seq->sp = d->sp;
    seq->sp_rank = d->sp_rank;
    seq->ctx = (void *)d;
    seq->alltoall = device ? sp_alltoall_device : sp_alltoall_host;
    seq->alltoallv = device ? sp_alltoallv_device : sp_alltoallv_host;
    seq->shift = device ? sp_shift_device : sp_shift_host;
    seq->scan_counts = sp_scan_counts;
}

void dist_attach_sequence_parallel(const Dist *d, Model *m) {
    if (m->seq.sp != d->sp) dist_abort(d, "config sp differs from the process grid's sp");
    // With sp = 1 the model never exchanges, and no sp communicator is open.
    dist_seq_parallel_exchanges(d, &m->seq, d->sp > 1 && device_comm(d, DIST_SP, m));
}
