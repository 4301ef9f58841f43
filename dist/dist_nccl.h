// NCCL for device buffers (DESIGN.md, Distribution): one GPU per rank,
// picked by local rank; the communicator's unique id is made by the group's
// rank 0 and sent to the others over MPI (dist_bcast). Every CUDA and NCCL
// call is checked: a failure prints file:line, the library's message and a
// hint, then ends the whole job (dist_abort).
//
// Built only when the CUDA toolkit and NCCL are found (Makefile, NCCL block:
// it defines REFORMER_NCCL). The trainer's device path calls
// dist_nccl_allreduce_sum on its gradient buffer where the host path calls
// dist_allreduce_sum.
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

// In-place sum of a device float buffer over the group; returns when done
// (stream synchronised). Its time counts in dist_comm_seconds.
void dist_nccl_allreduce_sum(DistNccl *n, float *device_buf, size_t count);
// All-to-all over the group's n ranks: block j (count floats) of send goes
// to rank j, block i of recv comes from rank i (grouped send/recv).
void dist_nccl_alltoall(DistNccl *n, const float *device_send, float *device_recv, size_t count);

// Checked device memory for callers without their own CUDA code (bench).
float *dist_nccl_device_alloc(DistNccl *n, size_t count);
void dist_nccl_device_free(DistNccl *n, float *device_buf);
void dist_nccl_upload(DistNccl *n, float *device_dst, const float *host_src, size_t count);
void dist_nccl_download(DistNccl *n, float *host_dst, const float *device_src, size_t count);
