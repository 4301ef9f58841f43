// dist_nccl.h over cudart and NCCL (C; no kernels of its own).
#include "dist_nccl.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>

// Collectives are enqueued on the stream and never waited for here: the
// stream is a blocking one, so the backend's later kernels and copies (the
// legacy default stream) wait for them on the GPU. Their time, for the job's
// comm seconds, comes from a pair of events around each; a pair is read once
// the GPU has passed it (looked at, never waited for, at the next
// collective), or waited for when all TIMED pairs are in flight, or at free.
#define TIMED 64
struct DistNccl {
    int device, rank, size;
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t ev[TIMED][2];
    int oldest, in_flight;  // ring of event pairs not yet read
};

// The job to end when a call fails (set by dist_nccl_init).
static const Dist *failing_job;

static void device_fail(const char *lib, const char *what, const char *msg, const char *file, int line) {
    char text[1024];
    snprintf(text, sizeof text,
             "%s:%d: %s failed: %s: %s (hint: check that every rank has its own GPU (one rank per GPU, by local "
             "rank), the driver matches the toolkit, and NCCL_DEBUG=INFO for the network NCCL chose)",
             file, line, what, lib, msg);
    dist_abort(failing_job, text);
}

static void cuda_check_at(cudaError_t rc, const char *what, const char *file, int line) {
    if (rc != cudaSuccess) device_fail("CUDA", what, cudaGetErrorString(rc), file, line);
}
static void nccl_check_at(ncclResult_t rc, const char *what, const char *file, int line) {
    if (rc != ncclSuccess) device_fail("NCCL", what, ncclGetErrorString(rc), file, line);
}
#define cuda_check(call) cuda_check_at((call), #call, __FILE__, __LINE__)
#define nccl_check(call) nccl_check_at((call), #call, __FILE__, __LINE__)

// Add the time of the oldest pair to the comm seconds (wait: for it to end).
static int read_oldest(DistNccl *n, int wait) {
    if (!n->in_flight) return 0;
    cudaEvent_t *e = n->ev[n->oldest];
    if (wait) cuda_check(cudaEventSynchronize(e[1]));
    else {
        cudaError_t rc = cudaEventQuery(e[1]);
        if (rc == cudaErrorNotReady) return 0;
        cuda_check(rc);
    }
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, e[0], e[1]));
    dist_add_comm_seconds(1e-3 * ms);
    n->oldest = (n->oldest + 1) % TIMED;
    n->in_flight--;
    return 1;
}
// Bracket one collective: begin records the start event, end the stop event.
static int timed_begin(DistNccl *n) {
    while (read_oldest(n, 0)) {}
    if (n->in_flight == TIMED) read_oldest(n, 1);
    int i = (n->oldest + n->in_flight) % TIMED;
    cuda_check(cudaEventRecord(n->ev[i][0], n->stream));
    return i;
}
static void timed_end(DistNccl *n, int i) {
    cuda_check(cudaEventRecord(n->ev[i][1], n->stream));
    n->in_flight++;
}

void dist_nccl_wait(DistNccl *n) {
    cuda_check(cudaStreamSynchronize(n->stream));
    while (read_oldest(n, 1)) {}
}

int dist_nccl_device_count(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;  // no driver or no GPU: none
}

DistNccl *dist_nccl_init(const Dist *d, DistGroup g, char *err, size_t errlen) {
    failing_job = d;
    int devices = dist_nccl_device_count();
    if (devices == 0) {
        snprintf(err, errlen, "no GPU: CUDA sees no device on rank %d", d->rank);
        return NULL;
    }
    DistNccl *n = calloc(1, sizeof *n);
    if (!n) dist_abort(d, "dist_nccl_init: out of memory");
    n->device = d->local_rank % devices;
    n->rank = dist_group_rank(d, g);
    n->size = dist_group_size(d, g);
    cuda_check(cudaSetDevice(n->device));
    // A blocking stream: its work waits for the work issued before it on the
    // legacy default stream, where the CUDA backend runs its kernels, and the
    // backend's later work waits for it; so a collective reads the gradients
    // (or exchange buffers) the backend just wrote, with no extra host sync.
    cuda_check(cudaStreamCreateWithFlags(&n->stream, cudaStreamDefault));
    for (int i = 0; i < TIMED; i++)
        for (int j = 0; j < 2; j++) cuda_check(cudaEventCreate(&n->ev[i][j]));
    ncclUniqueId id;
    if (n->rank == 0) nccl_check(ncclGetUniqueId(&id));
    dist_bcast(d, g, &id, sizeof id, 0);
    nccl_check(ncclCommInitRank(&n->comm, n->size, id, n->rank));
    return n;
}

void dist_nccl_free(DistNccl *n) {
    if (!n) return;
    dist_nccl_wait(n);
    nccl_check(ncclCommDestroy(n->comm));
    for (int i = 0; i < TIMED; i++)
        for (int j = 0; j < 2; j++) cuda_check(cudaEventDestroy(n->ev[i][j]));
    cuda_check(cudaStreamDestroy(n->stream));
    free(n);
}

void dist_nccl_allreduce_sum(DistNccl *n, float *device_buf, size_t count) {
    int timed = timed_begin(n);
    nccl_check(ncclAllReduce(device_buf, device_buf, count, ncclFloat, ncclSum, n->comm, n->stream));
    timed_end(n, timed);
}

void dist_nccl_alltoall(DistNccl *n, const float *device_send, float *device_recv, size_t count) {
    int timed = timed_begin(n);
    nccl_check(ncclGroupStart());
    for (int j = 0; j < n->size; j++) {
        nccl_check(ncclSend(device_send + (size_t)j * count, count, ncclFloat, j, n->comm, n->stream));
        nccl_check(ncclRecv(device_recv + (size_t)j * count, count, ncclFloat, j, n->comm, n->stream));
    }
    nccl_check(ncclGroupEnd());
    timed_end(n, timed);
}

void dist_nccl_alltoallv(DistNccl *n, const float *device_send, const size_t *send_counts, float *device_recv,
                         const size_t *recv_counts) {
    int timed = timed_begin(n);
    size_t soff = 0, roff = 0;
    nccl_check(ncclGroupStart());
    for (int j = 0; j < n->size; j++) {
        if (send_counts[j]) nccl_check(ncclSend(device_send + soff, send_counts[j], ncclFloat, j, n->comm, n->stream));
        if (recv_counts[j]) nccl_check(ncclRecv(device_recv + roff, recv_counts[j], ncclFloat, j, n->comm, n->stream));
        soff += send_counts[j];
        roff += recv_counts[j];
    }
    nccl_check(ncclGroupEnd());
    timed_end(n, timed);
}

void dist_nccl_shift(DistNccl *n, const float *device_send, float *device_recv, size_t count, int dir, int cyclic) {
    int to = n->rank + dir, from = n->rank - dir;
    if (cyclic) to = (to + n->size) % n->size, from = (from + n->size) % n->size;
    int timed = timed_begin(n);
    nccl_check(ncclGroupStart());
    if (to >= 0 && to < n->size) nccl_check(ncclSend(device_send, count, ncclFloat, to, n->comm, n->stream));
    if (from >= 0 && from < n->size) nccl_check(ncclRecv(device_recv, count, ncclFloat, from, n->comm, n->stream));
    nccl_check(ncclGroupEnd());
    timed_end(n, timed);
}

void dist_nccl_bcast(DistNccl *n, float *device_buf, size_t count, int root) {
    int timed = timed_begin(n);
    nccl_check(ncclBroadcast(device_buf, device_buf, count, ncclFloat, root, n->comm, n->stream));
    timed_end(n, timed);
}

const DistNcclOps *dist_nccl_ops(void) {
    static const DistNcclOps ops = {dist_nccl_init,     dist_nccl_free,      dist_nccl_allreduce_sum, dist_nccl_bcast,
                                    dist_nccl_alltoall, dist_nccl_alltoallv, dist_nccl_shift};
    return &ops;
}

float *dist_nccl_device_alloc(DistNccl *n, size_t count) {
    (void)n;
    void *p = NULL;
    cuda_check(cudaMalloc(&p, count * sizeof(float)));
    return p;
}

void dist_nccl_device_free(DistNccl *n, float *device_buf) {
    (void)n;
    cuda_check(cudaFree(device_buf));
}

void dist_nccl_upload(DistNccl *n, float *device_dst, const float *host_src, size_t count) {
    cuda_check(cudaMemcpyAsync(device_dst, host_src, count * sizeof(float), cudaMemcpyHostToDevice, n->stream));
    cuda_check(cudaStreamSynchronize(n->stream));
}

void dist_nccl_download(DistNccl *n, float *host_dst, const float *device_src, size_t count) {
    cuda_check(cudaMemcpyAsync(host_dst, device_src, count * sizeof(float), cudaMemcpyDeviceToHost, n->stream));
    cuda_check(cudaStreamSynchronize(n->stream));
}
