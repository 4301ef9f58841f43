// Evaluation of a model on a dataset split: bits per byte over its
// non-overlapping windows (io/dataset.h), with a progress bar on a terminal.
// Used by `reformer eval` and by training's periodic evaluation, on one
// process or on a dp x sp grid.
#pragma once
#include "dataset.h"
#include "dist.h"
#include "model.h"

typedef struct {
    double loss_sum;   // nats, summed over targets
    long n_targets;
    long n_windows;
    double seconds;
} EvalTotals;

static inline double eval_bits_per_byte(const EvalTotals *t) {
    return t->n_targets > 0 ? t->loss_sum / (double)t->n_targets / 0.69314718055994530942 : 0;
}

// Windows evaluated: all of the split when max_windows is 0 or not below its
// window count, else max_windows of them spread evenly over the split (window
// floor(i * total / max_windows) for i < max_windows): the same windows at
// every evaluation, so periodic results are comparable.
long eval_window_count(const Dataset *ds, Split split, long max_windows);

// Forward passes only: no dropout, the hash rotations of INFERENCE_HASH_STEP.
// On a grid (d non-NULL with more than one rank) the windows are dealt to the
// data-parallel replicas batch by batch, each sequence-parallel rank takes
// its slice, and the totals are summed over every rank (every rank gets
// them). progress: rank 0 draws a bar with ETA on stderr when it is a
// terminal, and prints a line every 10% when it is not.
EvalTotals evaluate_split(Model *m, const Dataset *ds, const Dist *d, Split split, long max_windows, int progress);
