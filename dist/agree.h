// That every rank of a job runs the same training: the same config and the
// same data. Ranks started with different arguments (an MPMD command line, a
// stale copy of a config file on one node, a data file that differs between
// nodes) used to hang (different `steps`: the others wait forever once rank
// 0 finishes), abort without a reformer line (different `d_model`), or train
// silently on mixed settings (different `lr`, `seed`, `batch`).
//
// Each check hashes a canonical text of "name=value" lines on every rank,
// compares it with rank 0's (one broadcast and one all-reduce when they
// agree), and when some rank differs names the first differing line of the
// lowest such rank. Every rank gets the same result and message, so the
// caller stops every rank together (rank 0 prints). One process: always 0.
#pragma once
#include <stddef.h>

#include "config.h"
#include "dataset.h"
#include "dist.h"

// The finalized config: every key as `reformer help` lists it. Returns 0,
// or -1 with e.g. "config: ranks disagree on steps: rank 1 has steps=20,
// rank 0 has steps=10 (1 of 2 ranks differ; start every rank with the same
// config)".
int dist_agree_config(const Dist *d, const Config *c, char *err, size_t errlen);

// The opened data: its format, each split's document and token counts, and
// a hash of samples of its content (the first and last bytes of up to 64
// documents per split). Returns 0, or -1 naming the first field that differs.
int dist_agree_data(const Dist *d, const Dataset *ds, char *err, size_t errlen);
