// Evaluation of a model on a dataset split: bits per byte over its
// non-overlapping windows (io/dataset.h), with a progress bar on a terminal.
// Used by `reformer eval` and by training's periodic evaluation, on one
// process or on a dp x sp grid.
#pragma once
#include <math.h>

#include "dataset.h"
#include "dist.h"
#include "model.h"

typedef struct {
    double loss_sum;   // nats, summed over targets
    long n_targets;
    double n_bytes;    // the bytes the targets decode to (dataset_target_units)
    double n_words;    // the whitespace-separated words that start in them
    long n_windows;
    long n_correct;    // targets predicted by argmax (the duplication task reports accuracy)
    double seconds;
} EvalTotals;

// Bits per byte: total nats over the bytes the scored tokens decode to, in
// bits. For byte data that is the mean loss / ln 2 (for images: bits per
// dim, per subpixel; dataset_bits_unit names it); with a tokenizer the
// bytes are those of the decoded text, so it compares across vocabularies.
static inline double eval_bits_per_byte(const EvalTotals *t) {
    return t->n_bytes > 0 ? t->loss_sum / t->n_bytes / 0.69314718055994530942 : 0;
}

// Perplexity per word as PG-19 reports it (Rae et al. 2019): exp(total nats
// over the number of whitespace-separated words), whatever the vocabulary.
static inline double eval_word_perplexity(const EvalTotals *t) {
    return t->n_words > 0 ? exp(t->loss_sum / t->n_words) : 0;
}

// Word perplexity is reported for PG19 data and on request (word_ppl=1).
static inline int eval_reports_words(const Dataset *ds, const Config *c) {
    return ds->kind == DATA_PG19 || c->word_ppl;
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

// The same windows scored by the decoder (core/decode.h): each window from
// an empty cache, one byte at a time, every position's next-byte loss from
// what the decoder has seen so far. Training's LSH sees later buckets (README,
// the LSH caveat), so a model's leak is the gap between the two forms; for
// local, full and lsh_form=strict attention they agree to float rounding.
// params: host [layout->n_params]. One process; windows run in parallel
// over OpenMP threads, each with its own decoder, summed in window order.
EvalTotals evaluate_split_decode(const Config *c, const ParamLayout *layout, const real *params, const Dataset *ds,
                                 Split split, long max_windows, int progress);

// The duplication task (data=dup) has no splits: it is scored on fresh
// batches, batch i drawn (sequences and hash rotations alike) at step
// DUP_EVAL_STEP + i, above every training step, so never a batch or a hash
// draw the model was trained on, and the same for every evaluation of every
// checkpoint of a run (seeded by its seed). Only the second copy is scored.
// n_seqs is rounded up to whole global batches (dp x batch sequences); the
// totals count every rank's targets (n_windows: sequences evaluated).
#define DUP_EVAL_STEP 0x80000000u
#define DUP_EVAL_SEQUENCES 256  // default: eval and the end of a training run
EvalTotals evaluate_dup(Model *m, const Dataset *ds, const Dist *d, long n_seqs);

static inline double eval_accuracy(const EvalTotals *t) {
    return t->n_targets > 0 ? (double)t->n_correct / (double)t->n_targets : 0;
}
