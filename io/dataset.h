// Training data: windows of a byte-level text file (memory-mapped), the
// paper's duplication task, or random tokens (benchmarks). A batch is a pure
// function of (seed, step), so a run is reproducible and resumable from the
// step alone.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum { DATA_TEXT = 0, DATA_DUP = 1, DATA_RANDOM = 2 } DataKind;

typedef struct {
    DataKind kind;
    char path[1024];
    const uint8_t *bytes;  // mapped file (text)
    size_t n_bytes;
    int seq_len, batch, vocab_size, dup_alphabet;
    uint64_t seed;
} Dataset;

// Open the source named by config `data` ("dup", "random", or a file path).
// Returns 0, or -1 with a one-line message in err naming the file or key.
int dataset_open(Dataset *ds, const Config *c, char *err, size_t errlen);
void dataset_close(Dataset *ds);

// Training windows: sequences [first_seq, first_seq + n_seq) of the global
// batch of `step` (data-parallel replica r passes first_seq = r * batch).
// tokens and targets are [n_seq * seq_len]; targets < 0 are not scored (the
// duplication task scores only the second copy).
void dataset_batch(const Dataset *ds, uint32_t step, size_t first_seq, int n_seq, int *tokens, int *targets);

// Duplication task layout for length L: "0 w 0 w", |w| = L/2 - 1. The scored
// targets are positions [first, last] (predicting the second copy of w).
static inline int dup_first_scored(int L) { return L / 2; }
static inline int dup_last_scored(int L) { return L - 2; }
