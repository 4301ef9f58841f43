// This rank's part of a batch: replica dp_rank's sequences [dp_rank * batch,
// (dp_rank + 1) * batch) of the global batch (whole sequences, as the data
// source gives them) and, of each, the sp_rank-th of sp contiguous slices of
// L / sp positions (what the model on this rank takes). Training draws its
// windows into it, evaluation its evaluation windows.
#pragma once
#include <stdint.h>

#include "dataset.h"
#include "dist.h"
#include "model.h"

typedef struct {
    int batch, L, L_local, sp_rank;
    int *seq_tokens, *seq_targets;  // the replica's whole sequences [batch, L]
    int *tokens, *targets;          // this rank's slices [batch, L / sp] (the above when sp = 1)
} RankBatch;

// Buffers for m's batch; d may be NULL (one process).
void rank_batch_init(RankBatch *rb, const Model *m, const Dist *d);
void rank_batch_free(RankBatch *rb);

// Copy this rank's slice of every sequence from seq_* to tokens/targets
// (nothing to do when sp = 1: they are the same buffers).
void rank_batch_slice(RankBatch *rb);

// The training windows of `step` for this rank (d may be NULL): dataset_batch, then slice.
void rank_batch_draw(RankBatch *rb, const Dataset *ds, const Dist *d, uint32_t step);
