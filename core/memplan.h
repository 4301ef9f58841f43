// The memory plan of a training step: every buffer the model allocates, with
// its shape and size, computed from a config and a backend's sizing rules
// without allocating anything. model_init allocates exactly this table (one
// backend allocation per backend row, the scratch row through
// reserve_scratch), so what `reformer plan` prints is what a run allocates.
#pragma once
#include <stddef.h>
#include <stdio.h>

#include "backend.h"
#include "config.h"

#define MEM_MAX_ITEMS 96
#define MEM_NO_FIELD ((size_t)-1)

typedef enum {
    MEM_BACKEND,  // one alloc() in the backend's memory (device memory for CUDA)
    MEM_SCRATCH,  // the backend's internal scratch, one reserve_scratch()
    MEM_HOST,     // host staging (checked_calloc), not in the backend's memory
    MEM_PART,     // printed only: a part of the row above it (not allocated, not added up)
} MemWhere;

typedef struct {
    const char *name;   // the Model field, e.g. "x1"
    char shape[48];     // e.g. "[T, d] f32"
    size_t bytes;       // as allocated: rounded up to the backend's alignment
    size_t field;       // offsetof(Model, pointer), MEM_NO_FIELD for the scratch row
    MemWhere where;
    int per_token;      // 1: grows with B * seq_len (the rest is fixed by the model)
} MemItem;

// What a backend says about sizes: how alloc rounds, its attention workspace
// and op scratch rules, and what reserve_scratch holds beyond the requested
// bytes (CUDA: cuBLAS's workspace). From a live Backend (mem_rules_backend)
// or, for planning without the device, from the backend's rules alone
// (mem_rules_cuda: core/cuda_sizes.h).
typedef struct {
    const char *device;
    size_t align;
    size_t (*attention_workspace_bytes)(const AttnShape *s, int lsh);
    size_t (*scratch_bytes)(ScratchOp op, size_t a, size_t b, size_t c);
    // Sequence-sharded LSH (core/attention_seq.c); NULL where the backend has none.
    size_t (*lsh_sorted_workspace_bytes)(int n, int m, int dh);
    size_t reserve_extra;
    int bf16_weights;  // precision=bf16 keeps a bf16 copy of the parameters (Backend.bf16_weights)
    const char *note;  // how the figure was obtained, printed by `reformer plan`
} MemRules;

MemRules mem_rules_backend(const Backend *be);
MemRules mem_rules_cuda(void);  // computed: no GPU, no CUDA library needed

typedef struct {
    // Geometry the step uses (model_init copies it into Model).
    int B, L, L_local, T, d, HD;
    int head_group;   // attn_head_group (0: n_heads): heads per attention pass
    int n_groups;     // n_heads / head_group
    // Heads one pass of layer l covers (the model's heads; model.h): head_group,
    // except with Ulysses (lcm(head_group, sp): each rank attends 1/sp of
    // them) and for the sequence-sharded sort (fewer, so that its R-fold rows
    // fit in what a pass of head_group heads holds at sp = 1, or streamed:
    // pass_steps).
    int pass_heads[MAX_LAYERS];
    // The sequence-sharded sort's schedule per layer (attention_seq.h): 0
    // keeps its rows from the forward to the backward (the fewest bytes
    // exchanged); > 0 streams them in that many pieces per rank, when even a
    // pass of one head's kept rows do not fit (memplan.c, sort_schedule).
    int pass_steps[MAX_LAYERS];
    size_t pass_bytes;  // the pass workspace: the largest layer's (attn_pass_layout)
    // The feed-forward's and the loss head's chunk buffers (ff_h, ff_a,
    // ff_da; head_in, head_ln, head_mean, head_rstd, logits, d_head_in,
    // d_head_ln) lie in the pass workspace, dead while they run: their
    // offsets in attn_pass, whose row is the largest of the three uses.
    size_t ff_at[3], head_at[7];
    int rows;         // token rows per chunk of the per-token work (feed-forward, projections)
    int head_rows;    // rows per loss chunk
    size_t bucket_elems[MAX_LAYERS];  // offset of each LSH layer's buckets in the bucket store
    size_t scratch;   // reserve_scratch request
    size_t n_params;

    MemItem item[MEM_MAX_ITEMS];
    int n;
    size_t backend_bytes;  // MEM_BACKEND + MEM_SCRATCH rows, plus reserve_extra
    size_t host_bytes;     // MEM_HOST rows
    size_t per_token_bytes;  // of the per-token rows, divided by B * seq_len
} MemPlan;

// Plan a finalized config. A config too large to plan (size_t overflow) is
// reported by the return value 0 (and a message in err); else 1.
int mem_plan_build(MemPlan *p, const Config *c, const MemRules *rules, char *err, size_t errlen);

// Print the table (buffer, shape, MiB), totals and bytes per token.
void mem_plan_print(const MemPlan *p, const Config *c, const MemRules *rules, FILE *out);

// Bytes a run of this plan needs from its device: the backend's bytes, plus
// host staging when the backend's memory is host memory (device=cpu).
size_t mem_plan_need(const MemPlan *p, const MemRules *rules);

// What one process (rank) of the run needs from host memory beyond its plan:
// the program, MPI, OpenBLAS and a step's transients. Measured 28.8-29.3 MiB
// per rank at sp 1 to 8 (experiments/scaling/past_heads.md, memory_overhead
// rows), rounded up.
#define MEM_PROCESS_OVERHEAD ((size_t)30 << 20)
// mem_plan_need plus MEM_PROCESS_OVERHEAD when the plan's memory is host
// memory (device=cpu): what preflight checks and `plan --fit` fits.
size_t mem_process_need(const MemPlan *p, const MemRules *rules);

// A size: a finite positive number, then an optional unit. K, M, G, T, with
// or without "i" and "B" (16G, 16GiB), are powers of 1024; KB, MB, GB, TB are
// powers of 1000 (16GB = 16e9 bytes); none or B is bytes. Returns 0 for
// anything else (nan, inf, a negative number, an unknown unit) or a size of
// 2^62 bytes or more.
size_t mem_parse_size(const char *s);
