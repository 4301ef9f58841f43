// The Reformer language model driver: memory plan, forward, reversible
// backward and optimiser step, written once against the Backend table.
//
// Memory (DESIGN.md, "The memory contract"; core/memplan.h): parameters,
// gradients and two AdamW moments; the two residual streams and their
// gradients (4 x T*d, T = B*L/sp this rank's tokens); per LSH layer the
// bucket ids of the forward pass; and one layer's workspace: attention in
// passes of a few heads (q, k, v, o, their gradients at [T, pass width],
// per-item logsumexps, and with sp > 1 the pass's exchange buffers), every
// per-token op outside attention in chunks of ff_chunk rows, the loss in
// chunks of loss_chunk rows. model_init allocates exactly the MemPlan table;
// the step allocates nothing.
//
// One step for every sp: per layer and pass, project this rank's tokens onto
// the pass's heads (chunk by chunk), attend, add the pass's share of the
// output projection; the backward recomputes a pass and follows it at once.
// With sp > 1 a pass's attention also exchanges: the only difference (below).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "attention_seq.h"
#include "backend.h"
#include "config.h"
#include "memplan.h"
#include "params.h"

typedef struct {
    double loss;      // mean cross-entropy (nats) over counted targets
    double accuracy;  // fraction of counted targets predicted by argmax
    long n_targets;   // targets >= 0
} LossStats;

// Sequence parallelism (DESIGN.md, Distribution): each of sp ranks holds
// L/sp contiguous tokens of every sequence. Around a pass's attention either
// an all-to-all turns "the pass's heads, my tokens" into "my 1/sp of them, all
// tokens" and back, in place in the pass's buffers (Ulysses; sp divides
// n_heads), or the sequence stays sharded (LSH: a distributed sort; local: a
// halo; their buffers follow the pass's in the pass workspace): config
// sp_attention, attention_seq.h. core/ knows no MPI: the launcher supplies
// the exchanges (SeqParallel).

// Gradient buckets: the launcher's hook (dist/data_parallel.c), called as the
// backward finishes the gradients of a range of parameters, so their sum over
// ranks can start while the backward goes on: the head, then each layer from
// the last, then the embeddings; the ranges tile the gradient buffer, in
// this order on every rank. ready NULL: none (one sum after the backward).
typedef struct {
    void (*ready)(void *ctx, size_t offset, size_t count);
    void *ctx;
} GradBuckets;

// Time shares of a step, filled when Model.profile is set (synchronising).
// PROF_HASH: the LSH hash (not sequence-sharded), a part of PROF_ATTENTION.
enum { PROF_MATMUL, PROF_ATTENTION, PROF_TOTAL, PROF_HASH, PROF_COUNT };

typedef struct {
    Config cfg;
    const Backend *be;
    ParamLayout layout;
    MemPlan plan;        // every buffer below, its shape and size (memplan.h)
    int B, L, T, d, HD;  // L full sequence length; T = B * L / sp local tokens; HD = n_heads * d_head
    int L_local;         // L / sp: this rank's positions of each sequence
    int head_group, n_groups;       // attn_head_group (0: n_heads) and n_heads / head_group
    int pass_heads[MAX_LAYERS];     // heads one pass of layer l covers (memplan.h)
    int pass_steps[MAX_LAYERS];     // the sequence-sharded sort's schedule per layer (memplan.h)
    SeqParallel seq;     // sp = 1 unless the launcher shards the sequence
    GradBuckets grad_buckets;

    real *params, *grads, *adam_m, *adam_v;  // [n_params] each
    void *params_bf16;                        // precision=bf16: the step's bf16 copy (Backend.bf16_weights)
    real *x1, *x2, *dx1, *dx2;               // residual streams and gradients [T, d]
    real *stored;                            // reversible=0: every layer's inputs
    uint16_t *bucket_store;                  // every LSH layer's buckets
    uint16_t *buckets[MAX_LAYERS];           // LSH layers: per pass [B, heads attended, R, rows attended] in bucket_store; else NULL
    int *tokens, *targets;                   // [T]

    // One layer's workspace. The attention pass in flight: its heads, all of
    // this rank's tokens (Ulysses: 1/sp of its heads, all tokens), laid out
    // in attn_pass for the layer (attn_pass_layout; gw = pass width).
    void *attn_pass;
    real *gq, *gk, *gv, *go;                 // [T, gw] q (qk), k, v, o; go receives dq (dqk) in the backward
    real *gdo, *gdk, *gdv;                   // [T, gw]
    SeqAttention seq_attn;                   // sequence-sharded layers: the pass's exchange buffers
    real *w_slice[3], *g_slice[3];           // [d, gw]: one pass's columns of w_q/w_k/w_v and their gradients
    real *attn_saved;                        // logsumexps: LSH per item, local per position
    void *attn_work;                         // backend attention scratch
    int rows;                                // rows per token chunk (ff_chunk)
    real *row_ln, *row_mean, *row_rstd;      // [rows, d], [rows] x2: LayerNorm of a chunk (LN1 or LN2)
    real *row_out, *row_dln;                 // [rows, d]: a chunk's block output / its gradient, d(LN out)
    // The feed-forward's and the loss head's buffers below point into
    // attn_pass: no pass is in flight while either runs (memplan.h).
    real *ff_h, *ff_a, *ff_da;               // [rows, d_ff]
    int head_rows;                           // rows per loss chunk
    real *head_in, *head_ln, *head_mean, *head_rstd;  // [rows, 2d], [rows, 2d], [rows] x2
    real *logits, *d_head_in, *d_head_ln;    // [rows, V], [rows, 2d] x2
    real *losses;                            // [T]
    int *correct;                            // [T]

    // Host staging.
    real *host_losses;
    int *host_correct;

    size_t bytes_planned;       // plan.backend_bytes: everything model_init allocated in the backend
    size_t scratch_planned;     // the backend's internal scratch reserved for the step's ops
    int freeze_buckets;         // test hook: model_forward(_backward) reuses the cached bucket ids
    int profile;                // time matmul / attention shares (synchronises)
    double prof_seconds[PROF_COUNT];
    // Progress hook (the launcher's: core does no I/O), or NULL: called with
    // on_layer_ctx at the start of every layer of model_step's forward
    // (backward = 0, layers 0 .. n_layers-1) and of its backward (backward = 1,
    // layers n_layers-1 .. 0), from the host thread.
    void (*on_layer)(void *ctx, int layer, int backward);
    void *on_layer_ctx;
} Model;

// One step's arguments beyond the batch: everything that differs between
// ranks or calls (the launcher passes it; nothing is written into Model).
typedef struct {
    uint32_t step;        // keys the hash rotations and dropout masks
    int train;            // 1: dropout
    int backward;         // 1: also grads = d(loss)/d(params) (overwritten)
    int reuse_buckets;    // 1: forward reuses the cached bucket ids (no re-hashing)
    size_t batch_offset;  // global index of local sequence 0 (data-parallel ranks):
                          // dropout masks are drawn by global position
    long loss_count;      // > 0: normalise the loss by this global target count
                          // (data/sequence parallel); 0: by the local count
} ModelStep;

// Plan and allocate everything for a finalized config; initialise parameters.
void model_init(Model *m, const Config *c, const Backend *be);
void model_free(Model *m);

// One step: forward (and backward when st->backward) of tokens/targets
// (host [T]; targets < 0 are ignored).
LossStats model_step(Model *m, const int *tokens, const int *targets, const ModelStep *st);

// One process's shorthands for model_step (batch_offset 0, loss_count 0).
// Forward only; train = 1 applies dropout. tokens/targets: host [B*L];
// targets < 0 are ignored. step keys the hash rotations and dropout masks.
LossStats model_forward(Model *m, const int *tokens, const int *targets, uint32_t step, int train);

// Forward and backward: grads = d(mean loss)/d(params) (overwritten).
LossStats model_forward_backward(Model *m, const int *tokens, const int *targets, uint32_t step);

// Global L2 norm of the gradients.
double model_grad_norm(Model *m);

// Clip (config clip) and apply one AdamW step at learning rate lr; t counts
// optimiser steps from 1. Returns the gradient norm before clipping.
double model_update(Model *m, int t, double lr);

// Copy parameters between the backend and a host buffer of n_params reals.
void model_get_params(Model *m, real *host);
void model_set_params(Model *m, const real *host);
void model_get_grads(Model *m, real *host);

// Learning rate of (1-based) step: linear warmup, then the configured decay.
double lr_at(const Config *c, int step);
