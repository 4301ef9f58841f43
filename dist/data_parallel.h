// Data- and sequence-parallel training on top of dist.h and the model driver.
//
// Every rank holds the replicated parameters. A step: count the scored
// targets over all ranks (dist_count_targets) and give that count to the
// model step (ModelStep.loss_count), so each rank's backward yields its tokens' share
// of the gradient of the global mean loss; then dist_reduce_step sums the
// gradients over all ranks. The optimiser step is then identical everywhere.
//
// The model's buffers live where its backend keeps them: host memory (CPU
// backend) goes over MPI; device memory (a GPU backend) over NCCL, through
// the table of device collectives the launcher loaded (dist_nccl.h) and
// dist_open_device_collectives. Small host scalars (target counts, loss
// statistics) always go over MPI.
#pragma once
#include "dist.h"
#include "dist_nccl.h"
#include "model.h"

// NCCL communicators for the groups a training step uses (world, and sp
// when sp > 1), on the GPU the backend picked: a collective over every rank.
// Every rank must already hold a usable GPU (the launcher checked before
// dist_init); a failure here ends the job (dist_abort), never a hang.
void dist_open_device_collectives(Dist *d, const DistNcclOps *ops);
void dist_close_device_collectives(Dist *d);

// Number of targets >= 0 over every rank of group g.
long dist_count_targets(const Dist *d, DistGroup g, const int *targets, size_t n);

// Sum the gradients over group g and combine the loss statistics (each rank's
// local is a mean over its own targets).
LossStats dist_reduce_step(const Dist *d, DistGroup g, Model *m, LossStats local);
// Gradient buckets: from now on
// the model's backward starts the sum of each range of gradients over group
// g as soon as the range is final (Model.grad_buckets): host buffers with
// MPI_Iallreduce, device buffers through the device collectives (NCCL: on
// its stream, no host wait). dist_reduce_step then waits for them instead of
// summing the whole buffer. Element by element the same sums as one
// all-reduce of the buffer (tests/test_dist.c: equal bit for bit).
void dist_attach_grad_buckets(const Dist *d, DistGroup g, Model *m);
// The loss statistics alone (evaluation): means over all ranks' targets.
LossStats dist_combine_loss_stats(const Dist *d, DistGroup g, LossStats local);

// Make every rank's parameters those of rank 0 of the group (start of training).
void dist_broadcast_parameters(const Dist *d, DistGroup g, Model *m);
// Parameters and both AdamW moments (a run resumed from rank 0's checkpoint).
void dist_broadcast_training_state(const Dist *d, DistGroup g, Model *m);

// Connect the model's sequence-parallel exchanges to the grid's sp group
// (on device buffers when the device collectives are open; the sort's
// histograms and the all-to-all-v counts are host integers over MPI).
void dist_attach_sequence_parallel(const Dist *d, Model *m);
// The same exchanges for any SeqParallel (device: buffers in device memory,
// through the open device collectives).
void dist_seq_parallel_exchanges(const Dist *d, SeqParallel *seq, int device);

// Bytes this rank has sent to other ranks of its sp group since start (or
// the last reset), by exchange: Ulysses all-to-alls; the LSH sort's rows
// (all-to-all-v, both ways); halos (LSH previous chunk, local attention);
// the sort's histograms (scan + sum, counted as a ring moves them); the
// all-to-all-v counts. Counted in the callbacks, not estimated.
typedef struct {
    double ulysses, sort, halo, histogram, control;
} DistSeqBytes;
DistSeqBytes dist_seq_bytes(void);
void dist_seq_bytes_reset(void);
