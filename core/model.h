// The Reformer language model driver: memory plan, forward, reversible
// backward and optimiser step, written once against the Backend table.
//
// Memory (DESIGN.md, "The memory contract"; core/memplan.h): parameters,
// gradients and two AdamW moments; the two residual streams and their
// gradients (4 x B*L*d); per LSH layer the bucket ids of the forward pass; and
// one layer's workspace: attention in passes of attn_head_group heads over the
// whole sequence (q, k, v, o, their gradients at [T, group width], per-item
// logsumexps), every per-token op outside attention in chunks of ff_chunk
// rows, the loss in chunks of loss_chunk rows. model_init allocates exactly
// the MemPlan table; the step allocates nothing.
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
// L/sp contiguous tokens of every sequence. Around attention either an
// all-to-all turns "all heads, my tokens" into "my heads, all tokens" and
// back (Ulysses; sp divides n_heads), or the sequence stays sharded (LSH: a
// distributed sort; local: a halo): config sp_attention, attention_seq.h.
// core/ knows no MPI: the launcher supplies the exchanges (SeqParallel).

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
enum { PROF_MATMUL, PROF_ATTENTION, PROF_TOTAL, PROF_COUNT };

typedef struct {
    Config cfg;
    const Backend *be;
    ParamLayout layout;
    MemPlan plan;        // every buffer below, its shape and size (memplan.h)
    int B, L, T, d, HD;  // L full sequence length; T = B * L / sp local tokens; HD = n_heads * d_head
    int L_local;         // L / sp: this rank's positions of each sequence
    int head_group, n_groups, gw;  // heads per attention pass, passes, pass width head_group * d_head
    SeqParallel seq;     // sp = 1 unless the launcher shards the sequence
    GradBuckets grad_buckets;

    real *params, *grads, *adam_m, *adam_v;  // [n_params] each
    void *params_bf16;                        // precision=bf16: the step's bf16 copy (Backend.bf16_weights)
    real *x1, *x2, *dx1, *dx2;               // residual streams and gradients [T, d]
    real *stored;                            // reversible=0: every layer's inputs
    uint16_t *bucket_store;                  // every LSH layer's buckets
    uint16_t *buckets[MAX_LAYERS];           // LSH layers: [n_groups][B, head_group, R, L] in bucket_store; else NULL
    int *tokens, *targets;                   // [T]

    // One layer's workspace. Attention pass (sp = 1): head_group heads, all tokens.
    real *gq, *gk, *gv, *go;                 // [T, gw] q (qk), k, v, o; go receives dq (dqk) in the backward
    real *gdo, *gdk, *gdv;                   // [T, gw]
    real *w_slice[3], *g_slice[3];           // [d, gw]: one pass's columns of w_q/w_k/w_v and their gradients
    real *attn_saved;                        // logsumexps: LSH per item, local per position
    void *attn_work;                         // backend attention scratch
    int rows;                                // rows per token chunk (ff_chunk)
    real *row_ln, *row_mean, *row_rstd;      // [rows, d], [rows] x2: LayerNorm of a chunk (LN1 or LN2)
    real *row_out, *row_dln;                 // [rows, d]: a chunk's block output / its gradient, d(LN out)
    real *ff_h, *ff_a, *ff_da;               // [rows, d_ff]
    int head_rows;                           // rows per loss chunk
    real *head_in, *head_ln, *head_mean, *head_rstd;  // [rows, 2d], [rows, 2d], [rows] x2
    real *logits, *d_head_in, *d_head_ln;    // [rows, V], [rows, 2d] x2
    real *losses;                            // [T]
    int *correct;                            // [T]
    // Sequence parallel only (sp > 1): all heads of this rank's tokens [T, *],
    // head-sharded full-sequence buffers [B * L, HD / sp] and the exchange buffers.
    real *ln_out, *ln_mean, *ln_rstd;        // [T, d], [T], [T]
    real *q, *k, *v, *attn_o, *dq, *dk, *dv, *d_attn_o;  // [T, HD]
    real *attn_out, *d_block, *d_ln;         // [T, d]
    real *qh, *kh, *vh, *oh, *dqh, *dkh, *dvh, *doh, *xsend, *xrecv;
    // Layers that run sequence-sharded (c->sp_sequence): their buffers.
    SeqAttention seq_attn;
    void *seq_blob;

    // Host staging.
    real *host_losses;
    int *host_correct;

    size_t bytes_planned;       // plan.backend_bytes: everything model_init allocated in the backend
    size_t scratch_planned;     // the backend's internal scratch reserved for the step's ops
    int freeze_buckets;         // test hook: model_forward(_backward) reuses the cached bucket ids
    int profile;                // time matmul / attention shares (synchronises)
    double prof_seconds[PROF_COUNT];
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
