// The backend interface: every op the model driver needs, as a table of
// functions over flat buffers in the backend's memory. The CPU backend
// (core/backend_cpu.c, core/attention_cpu.c) is the reference; the CUDA backend
// (cuda/) implements the same table and is tested against it op by op.
//
// Conventions: row-major; outputs first, then inputs, then sizes. Ops named
// *_backward accumulate (+=) into parameter gradients, and say so where they
// also accumulate into activation gradients.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "real.h"

// Shape of one attention layer call (all heads, all batch elements).
typedef struct {
    int batch;      // B
    int seq_len;    // L
    int n_heads;    // H
    int d_head;     // dh; q/k/v/out are [B, L, H*dh] with head h in columns h*dh..
    int chunk_len;  // m; == L means one chunk: plain full attention
    int n_hashes;   // R (LSH); 1 when chunk_len == L
    int n_buckets;  // nb per round (LSH)
    LshFactors bucket_factors;  // its factors (core/lsh_rules.h); n = 0: one factor, nb
    int head_offset;  // global index of head 0 (sequence parallel: each rank holds
                      // n_heads of the model's heads); keys the hash rotations
    int bf16;         // precision=bf16: q, k, v rounded to bf16 wherever attention
                      // reads them (hash, logits, values), fp32 accumulation.
                      // CUDA only; the CPU backend computes in fp32 and ignores it
                      // (config refuses precision=bf16 with device=cpu)
    int tf32;         // precision=tf32: attention GEMMs on TF32 tensor cores (CUDA)
    int reference;    // attn_impl=reference: the CUDA backend's fused fp32 kernels
                      // instead of its tensor-core GEMM path (the CPU ignores both)
    int strict;       // lsh_form=strict (hashed LSH only): a query's keys are the newest
                      // lsh_strict_window(chunk_len) earlier items of its own bucket
                      // (core/lsh_rules.h); CPU only (config refuses it on CUDA)
} AttnShape;

// Items hashed and sorted per (batch, head) for LSH: R * L.
static inline size_t attn_items(const AttnShape *s) { return (size_t)s->n_hashes * s->seq_len; }

// Reals the LSH forward keeps for its backward: per (b, h) the logsumexp of
// every sorted item [R*L]. The per-round outputs are combined as they are
// computed; the backward needs only dout . out per position (see
// attention_cpu.c, chunk_backward), so none is kept.
static inline size_t lsh_saved_elems(const AttnShape *s) {
    return (size_t)s->batch * s->n_heads * attn_items(s);
}
// Reals the local attention forward keeps: logsumexp per (b, h, position).
static inline size_t local_saved_elems(const AttnShape *s) {
    return (size_t)s->batch * s->n_heads * s->seq_len;
}

// The ops that use backend-internal scratch (reduction partials, sort
// buffers, bf16 operand copies), for Backend.scratch_bytes. Sizes a, b, c:
//   SCRATCH_MATMUL, SCRATCH_MATMUL_BF16: M, N, K of the call;
//   SCRATCH_COLUMN_SUMS (bias_backward, layernorm_backward): N rows, C columns;
//   SCRATCH_EMBEDDING_BACKWARD: N rows, C columns;  SCRATCH_SUM_SQUARES: n elements.
typedef enum {
    SCRATCH_MATMUL,
    SCRATCH_MATMUL_BF16,
    SCRATCH_COLUMN_SUMS,
    SCRATCH_EMBEDDING_BACKWARD,
    SCRATCH_SUM_SQUARES,
} ScratchOp;

typedef struct Backend {
    const char *name;

    // --- memory: zero-filled allocations in the backend's address space ---
    size_t alloc_align;  // alloc rounds every size up to a multiple of this (the memory plan counts so)
    void *(*alloc)(size_t bytes);
    void (*release)(void *p);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);
    void (*synchronize)(void);
    // Scratch each attention call needs (per-thread tiles, sort buffers).
    size_t (*attention_workspace_bytes)(const AttnShape *s, int lsh);
    // Internal scratch of the other ops, planned before step 1 (DESIGN.md,
    // memory contract): the driver asks scratch_bytes for every call shape
    // the step makes and reserves the largest once (model_init); every
    // reserve_scratch is paired with a release_scratch (model_free), and the
    // scratch lives while any reservation does. An op that needs more than
    // is reserved stops the program as a bug (file:line); no op allocates.
    size_t (*scratch_bytes)(ScratchOp op, size_t a, size_t b, size_t c);
    void (*reserve_scratch)(size_t bytes);
    void (*release_scratch)(void);
    // Device memory (GPU backends): bytes this backend holds (alloc and
    // internal scratch/workspaces, not yet released), the device's used
    // memory now (total - free: every process and context on it) and its
    // free memory (what a preflight may still plan for). Returns 0, or -1
    // where the backend has no device memory (CPU).
    int (*device_memory)(size_t *held_bytes, size_t *device_used_bytes, size_t *device_free_bytes);

    // --- dense ---
    // C[M,N] = beta * C + op(A) op(B);  op(A): [M,K], op(B): [K,N]
    void (*matmul)(real *C, const real *A, const real *B, int M, int N, int K, int trans_a,
                   int trans_b, real beta);
    // The same with A and B rounded to bf16 and fp32 accumulation (C stays
    // fp32: master weights and outputs). NULL where the backend has no bf16.
    void (*matmul_bf16)(real *C, const real *A, const real *B, int M, int N, int K, int trans_a,
                        int trans_b, real beta);
    // out[n, c] += bias[c]                                    out [N, C]
    void (*bias_forward)(real *out, const real *bias, int N, int C);
    // dbias[c] += sum_n dout[n, c]
    void (*bias_backward)(real *dbias, const real *dout, int N, int C);
    // y += alpha * x
    void (*axpy)(real *y, const real *x, real alpha, size_t n);
    // x *= alpha
    void (*scale)(real *x, real alpha, size_t n);
    // sum of x^2, accumulated in double
    double (*sum_squares)(const real *x, size_t n);
    // dst[r, :width] = src[r, :width] for r < rows, rows dst_stride / src_stride
    // elements apart (cudaMemcpy2D): packing for the sequence-parallel exchange.
    void (*copy_2d)(real *dst, size_t dst_stride, const real *src, size_t src_stride, size_t rows,
                    size_t width);
    // out[n, :C] = a[n, :], out[n, C:] = b[n, :]              out [N, 2C], a, b [N, C]
    void (*concat_rows)(real *out, const real *a, const real *b, int N, int C);
    // a[n, :] = in[n, :C], b[n, :] = in[n, C:]
    void (*split_rows)(real *a, real *b, const real *in, int N, int C);

    // --- embeddings ---
    // out[n, :] = table[tokens[n], :]                         table [V, C], out [N, C]
    void (*embedding_forward)(real *out, const int *tokens, const real *table, int N, int C);
    // dtable[tokens[n], :] += dout[n, :]
    void (*embedding_backward)(real *dtable, const real *dout, const int *tokens, int N, int C);
    // out[b, t, :] += concat_a tables[a][idx_a(p), :] with p = pos_offset + t,
    // t < len (this rank's positions)                         out [B, len, sum dims]
    // idx_a(p): the row-major multi-index of p in shape[0] x ... x shape[n_axes-1]
    void (*axial_forward)(real *out, real *const *tables, const int *shape, const int *dims,
                          int n_axes, int batch, int len, int pos_offset);
    // dtables[a][idx_a(p), :] += dout[b, t, slice a]
    void (*axial_backward)(real *const *dtables, const real *dout, const int *shape,
                           const int *dims, int n_axes, int batch, int len, int pos_offset);

    // --- normalisation and pointwise ---
    // out = (x - mean) * rstd * g + b per row; mean, rstd [N]  x, out [N, C]
    void (*layernorm_forward)(real *out, real *mean, real *rstd, const real *x, const real *g,
                              const real *b, int N, int C, real eps);
    // dx += ..., dg += ..., db += ...
    void (*layernorm_backward)(real *dx, real *dg, real *db, const real *dout, const real *x,
                               const real *g, const real *mean, const real *rstd, int N, int C);
    // out = act(in)
    void (*activation_forward)(real *out, const real *in, size_t n, Activation act);
    // din = dout * act'(in)  (din may alias dout)
    void (*activation_backward)(real *din, const real *dout, const real *in, size_t n,
                                Activation act);
    // Inverted dropout in place: x[i] *= keep(offset + i) / (1 - p), where
    // keep(j) = rng_uniform(seed, j, step, tag) >= p. The same call applies
    // the same mask to a gradient.
    void (*dropout)(real *x, size_t n, size_t offset, float p, uint64_t seed, uint32_t step,
                    uint32_t tag);

    // --- attention ---
    // buckets [B, H, R, L]: bucket of qk[b, i, head h] under round r's random
    // rotation, drawn from (seed, step, layer, h). qk [B, L, H*dh].
    // work: attention_workspace_bytes(s, 1) bytes of scratch.
    void (*lsh_hash)(uint16_t *buckets, const real *qk, const AttnShape *s, uint64_t seed,
                     uint32_t step, uint32_t layer, void *work);
    // Shared-QK LSH attention (REFORMER.md steps 4-10) with the given buckets.
    // out [B, L, H*dh]; saved [lsh_saved_elems] receives the per-item
    // logsumexps the backward needs (required).
    void (*lsh_attention_forward)(real *out, real *saved, const real *qk, const real *v,
                                  const uint16_t *buckets, const AttnShape *s, void *work);
    // dqk, dv [B, L, H*dh] are written (=). out and saved from the forward.
    // dqk may alias out (out is read before dqk is written), not the others.
    void (*lsh_attention_backward)(real *dqk, real *dv, const real *dout, const real *out,
                                   const real *saved, const real *qk, const real *v,
                                   const uint16_t *buckets, const AttnShape *s, void *work);
    // Local chunked attention (q, k, v projections, 1/sqrt(dh) scale, causal).
    // out [B, L, H*dh]; lse [local_saved_elems].
    void (*local_attention_forward)(real *out, real *lse, const real *q, const real *k,
                                    const real *v, const AttnShape *s, void *work);
    // dq, dk, dv written (=); dq may alias out, as for LSH.
    void (*local_attention_backward)(real *dq, real *dk, real *dv, const real *dout,
                                     const real *out, const real *lse, const real *q,
                                     const real *k, const real *v, const AttnShape *s, void *work);

    // --- loss ---
    // Softmax cross-entropy over rows of logits [N, V], in place: logits become
    // dlogits = (softmax - onehot(target)) * dscale for rows with target >= 0,
    // and 0 for ignored rows (target < 0). losses[n] = -log p[target] (0 if
    // ignored); correct[n] = 1 if argmax == target.
    void (*xent_forward_backward)(real *logits, real *losses, int *correct, const int *targets,
                                  int N, int V, real dscale);

    // --- optimiser ---
    // AdamW on one tensor (t = step, from 1): g is multiplied by grad_scale
    // (clipping) before use; decoupled weight decay wd * lr * p.
    void (*adamw)(real *p, real *m, real *v, const real *g, size_t n, float lr, float beta1,
                  float beta2, float eps, float wd, float grad_scale, int t);

    // --- additions (new entries go last, so existing initialisers stay valid) ---
    // matmul on TF32 tensor cores (precision=tf32): A and B rounded to TF32
    // (10 explicit mantissa bits) inside the matrix units, fp32 accumulation,
    // C fp32; no scratch (SCRATCH_MATMUL). NULL where the backend has none.
    void (*matmul_tf32)(real *C, const real *A, const real *B, int M, int N, int K, int trans_a,
                        int trans_b, real beta);
    // --- sequence-sharded LSH (core/attention_seq.c; NULL: not on this backend) ---
    // The chunk kernel of LSH attention on rows already in sorted order: per
    // lane (batch x head) m + n rows of sq (qk) and sv [lanes, m + n, dh] with
    // their positions spos [lanes, m + n]. Rows 0..m-1 are the chunk before
    // this rank's slice (the neighbour's last), rows m.. the n = whole chunks
    // of this rank's slice of the sorted order; each chunk attends to itself
    // and the m rows before it, shared-QK keys, self and causal masks by
    // position, as lsh_attention_forward. so [lanes, n, dh], slse [lanes, n].
    // srun [lanes, m + n] (lsh_form=strict; NULL: standard): per row, the
    // lane row where its (round, bucket) run starts (<= 0 if it started on
    // an earlier rank; >= m on the rank whose rows 0..m-1 wrap around).
    void (*lsh_sorted_forward)(real *so, real *slse, const real *sq, const real *sv, const int *spos,
                               const int *srun, int lanes, int n, int m, int dh, void *work);
    // dsq, dsv [lanes, m + n, dh] written (=), the previous chunk's rows
    // included (their gradients go back to the neighbour). dso [lanes, n, dh]
    // and dslse [lanes, n]: gradients of so and slse.
    void (*lsh_sorted_backward)(real *dsq, real *dsv, const real *dso, const real *dslse, const real *so,
                                const real *slse, const real *sq, const real *sv, const int *spos, const int *srun,
                                int lanes, int n, int m, int dh, void *work);
    // Scratch of either call for n rows per lane in chunks of m.
    size_t (*lsh_sorted_workspace_bytes)(int n, int m, int dh);
    // --- precision=bf16: one bf16 copy of the weights per step (NULL: none) ---
    // Round params [n] to bf16 into shadow (n * 2 bytes, planned: the plan's
    // params_bf16 row); until the next call, matmul_bf16 reads an operand that
    // lies inside params from shadow instead of converting it per call.
    void (*bf16_weights)(const real *params, size_t n, void *shadow);
    // --- host staging of transfers (checkpoints): page-locked memory where the
    // backend has it (CUDA: cudaMallocHost, so download/upload run at the
    // bus's speed without a bounce buffer); NULL: plain malloc/free ---
    void *(*host_alloc)(size_t bytes);  // NULL when out of memory
    void (*host_free)(void *p);
} Backend;

// The CPU reference backend.
const Backend *backend_cpu(void);
// Bytes its alloc holds now (rounded sizes, not yet released): what the memory
// plan's test compares against.
size_t backend_cpu_held_bytes(void);
