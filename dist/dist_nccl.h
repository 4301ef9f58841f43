// NCCL for device buffers (DESIGN.md, Distribution): one GPU per rank,
// picked by local rank; the communicator's unique id is made by the group's
// rank 0 and sent to the others over MPI (dist_bcast). Every CUDA and NCCL
// call is checked: a failure prints file:line, the library's message and a
// hint, then ends the whole job (dist_abort).
//
// Built only when the CUDA toolkit and NCCL are found (Makefile, NCCL block:
// it defines REFORMER_NCCL): linked into bench_collectives, and alone into
// the module build/libreformer_nccl.so, which `reformer train` loads for a
// GPU backend on more than one rank (dist_nccl_ops; data_parallel.h).
#pragma once
#include <stddef.h>

#include "dist.h"

typedef struct DistNccl DistNccl;

// CUDA devices this process sees; 0 without a GPU or driver (no error).
int dist_nccl_device_count(void);

// Select GPU local_rank % devices and build group g's communicator (a
// collective over g). NULL with a one-line message when there is no GPU.
DistNccl *dist_nccl_init(const Dist *d, DistGroup g, char *err, size_t errlen);
void dist_nccl_free(DistNccl *n);

// The collectives below are enqueued on the communicator's stream and
// return without a host synchronisation: the stream is a blocking stream, so
// the CUDA backend's later work (legacy default stream) and its downloads
// wait for them on the GPU. Their GPU time counts in dist_comm_seconds once
// they have ended (CUDA events, read at a later collective or at the wait).
// dist_nccl_wait: until every collective issued has ended (for timing them).
void dist_nccl_wait(DistNccl *n);
// In-place sum of a device float buffer over the group.
void dist_nccl_allreduce_sum(DistNccl *n, float *device_buf, size_t count);
// All-to-all over the group's n ranks: block j (count floats) of send goes
// to rank j, block i of recv comes from rank i (grouped send/recv).
void dist_nccl_alltoall(DistNccl *n, const float *device_send, float *device_recv, size_t count);
// In-place broadcast of a device float buffer from the group's rank root.
void dist_nccl_bcast(DistNccl *n, float *device_buf, size_t count, int root);
// All-to-all-v (grouped send/recv): block j of send (send_counts[j] floats,
// blocks back to back) goes to rank j, block i of recv (recv_counts[i]) comes
// from rank i. Counts are host arrays, exchanged beforehand over MPI.
void dist_nccl_alltoallv(DistNccl *n, const float *device_send, const size_t *send_counts, float *device_recv,
                         const size_t *recv_counts);
// Halo exchange: send goes to rank me + dir, recv comes from me - dir
// (dist_shift's contract, cyclic or not).
void dist_nccl_shift(DistNccl *n, const float *device_send, float *device_recv, size_t count, int dir, int cyclic);

// The collectives as one table: what the module exports to the trainer,
// which finds it by name (dlsym "dist_nccl_ops") and so needs no CUDA or
// NCCL at link time. The module in turn calls dist_bcast, dist_abort,
// dist_group_rank, dist_group_size and dist_add_comm_seconds of the program
// that loads it (Makefile: build/reformer exports exactly those).
typedef struct DistNcclOps {
    DistNccl *(*init)(const Dist *d, DistGroup g, char *err, size_t errlen);
    void (*free)(DistNccl *n);
    void (*allreduce_sum)(DistNccl *n, float *device_buf, size_t count);
    void (*bcast)(DistNccl *n, float *device_buf, size_t count, int root);
    void (*alltoall)(DistNccl *n, const float *device_send, float *device_recv, size_t count);
    // Sequence-sharded attention (LSH sort exchange, local-attention halo).
    void (*alltoallv)(DistNccl *n, const float *device_send, const size_t *send_counts, float *device_recv,
                      const size_t *recv_counts);
    void (*shift)(DistNccl *n, const float *device_send, float *device_recv, size_t count, int dir, int cyclic);
} DistNcclOps;
const DistNcclOps *dist_nccl_ops(void);

// Checked device memory for callers without their own CUDA code (bench).
float *dist_nccl_device_alloc(DistNccl *n, size_t count);
void dist_nccl_device_free(DistNccl *n, float *device_buf);
void dist_nccl_upload(DistNccl *n, float *device_dst, const float *host_src, size_t count);
void dist_nccl_download(DistNccl *n, float *host_dst, const float *device_src, size_t count);
