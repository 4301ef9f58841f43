#include "model.h"

#include <math.h>
#include <string.h>

#include "rng.h"
#include "util.h"

// Dropout sites, the last field of a dropout mask's RNG tag.
enum { SITE_ATTN = 0, SITE_FFN = 1 };

static real *P(Model *m, int t) { return tensor_ptr(m->params, &m->layout, t); }
static real *G(Model *m, int t) { return tensor_ptr(m->grads, &m->layout, t); }

// How a layer's attention sees the sequence: unsharded (sp = 1), by heads
// (Ulysses) or sequence-sharded (attention_seq.c).
enum { PATH_ONE, PATH_HEADS, PATH_SEQUENCE };
static int layer_path(const Model *m, int l) {
    if (m->seq.sp == 1) return PATH_ONE;
    return m->cfg.sp_sequence[m->cfg.layer_kind[l]] ? PATH_SEQUENCE : PATH_HEADS;
}
static int pass_width(const Model *m, int l) { return m->pass_heads[l] * m->cfg.d_head; }
static int n_passes(const Model *m, int l) { return m->cfg.n_heads / m->pass_heads[l]; }

// The attention call of pass g of layer l on this rank: the pass's heads over
// the whole sequence, or (Ulysses) this rank's 1/sp of them; a sequence-sharded
// pass plans its own calls (attention_seq.c).
static AttnShape pass_shape(const Model *m, int l, int g) {
    const Config *c = &m->cfg;
    const int hp = m->pass_heads[l], path = layer_path(m, l), heads = path == PATH_HEADS ? hp / m->seq.sp : hp;
    AttnShape s = {.batch = m->B, .seq_len = path == PATH_SEQUENCE ? m->L_local : m->L, .n_heads = heads,
                   .d_head = c->d_head, .chunk_len = config_layer_chunk(c, l), .n_hashes = 1, .n_buckets = 0,
                   .head_offset = g * hp + (path == PATH_HEADS ? m->seq.sp_rank * heads : 0),
                   .bf16 = c->precision == PRECISION_BF16, .tf32 = c->precision == PRECISION_TF32,
                   .reference = c->attn_reference};
    if (c->layer_kind[l] == ATTN_LSH && s.chunk_len < m->L) {
        s.n_hashes = c->n_hashes;
        s.n_buckets = c->n_buckets;
        s.bucket_factors = c->bucket_factors;
        s.strict = c->lsh_strict;
    }
    return s;
}

// Lay out the pass workspace for layer l (attn_pass_layout): the pass
// buffers and, sequence-sharded, the exchange buffers after them.
static void use_pass(Model *m, int l) {
    AttnPass ap;
    SeqSizeRules sr = {m->be->attention_workspace_bytes, m->be->lsh_sorted_workspace_bytes};
    attn_pass_layout(&ap, m->attn_pass, &m->cfg, &sr, m->B, l, m->pass_heads[l], m->pass_steps[l], NULL);
    m->gq = ap.q, m->gk = ap.k, m->gv = ap.v, m->go = ap.o, m->gdo = ap.dout, m->gdk = ap.dk, m->gdv = ap.dv;
    m->seq_attn = ap.seq;
    m->seq_attn.work = m->attn_work;
}

// --- profiling (only when m->profile: it synchronises the backend) ----------

static double prof_start(Model *m) {
    if (!m->profile) return 0;
    m->be->synchronize();
    return now_seconds();
}
static void prof_stop(Model *m, int what, double t0) {
    if (!m->profile) return;
    m->be->synchronize();
    m->prof_seconds[what] += now_seconds() - t0;
}
#define TIMED(what, ...)                      \
    do {                                      \
        double t0_ = prof_start(m);           \
        __VA_ARGS__;                          \
        prof_stop(m, what, t0_);              \
    } while (0)

static void mm(Model *m, real *C, const real *A, const real *B, int M, int N, int K, int ta, int tb, real beta) {
    if (m->cfg.precision == PRECISION_BF16) TIMED(PROF_MATMUL, m->be->matmul_bf16(C, A, B, M, N, K, ta, tb, beta));
    else if (m->cfg.precision == PRECISION_TF32) TIMED(PROF_MATMUL, m->be->matmul_tf32(C, A, B, M, N, K, ta, tb, beta));
    else TIMED(PROF_MATMUL, m->be->matmul(C, A, B, M, N, K, ta, tb, beta));
}

// --- plan and allocation ------------------------------------------------------

// Allocate the plan's table (memplan.c): one backend allocation per row, the
// scratch row through reserve_scratch, host rows with calloc.
static void allocate_plan(Model *m) {
    const MemPlan *p = &m->plan;
    for (int i = 0; i < p->n; i++) {
        const MemItem *it = &p->item[i];
        if (it->where == MEM_PART) continue;
        if (it->where == MEM_SCRATCH) {
            m->be->reserve_scratch(p->scratch);
            continue;
        }
        void **slot = (void **)((char *)m + it->field);
        *slot = it->where == MEM_HOST ? checked_calloc(1, it->bytes) : m->be->alloc(it->bytes);
    }
}

void model_init(Model *m, const Config *c, const Backend *be) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->be = be;
    if (c->precision == PRECISION_BF16 && !be->matmul_bf16)
        FATAL("use precision=fp32 with this backend", "precision=bf16: the %s backend has no bf16", be->name);
    if (c->precision == PRECISION_TF32 && !be->matmul_tf32)
        FATAL("use precision=fp32 with this backend", "precision=tf32: the %s backend has no tf32", be->name);
    MemRules rules = mem_rules_backend(be);
    char err[256];
    if (!mem_plan_build(&m->plan, c, &rules, err, sizeof err)) FATAL("reduce batch or seq_len", "%s", err);
    const MemPlan *p = &m->plan;
    m->B = p->B;
    m->L = p->L;
    m->seq.sp = c->sp;
    m->L_local = p->L_local;
    m->T = p->T;
    m->d = p->d;
    m->HD = p->HD;
    m->head_group = p->head_group;
    m->n_groups = p->n_groups;
    memcpy(m->pass_heads, p->pass_heads, sizeof m->pass_heads);
    memcpy(m->pass_steps, p->pass_steps, sizeof m->pass_steps);
    m->rows = p->rows;
    m->head_rows = p->head_rows;
    param_layout_build(&m->layout, c);
    if (c->sp > 1 && c->sp_sequence[ATTN_LSH] && config_count_lsh_layers(c) > 0 && !be->lsh_sorted_forward)
        FATAL("use sp dividing n_heads (sp_attention=heads) or device=cpu",
              "sp=%d: sequence-sharded LSH attention is not yet on the %s backend", c->sp, be->name);
    allocate_plan(m);
    // The feed-forward's and the loss head's chunk buffers in the pass
    // workspace (memplan.h: no pass is in flight while they run).
    real **ff[3] = {&m->ff_h, &m->ff_a, &m->ff_da};
    real **head[7] = {&m->head_in, &m->head_ln, &m->head_mean, &m->head_rstd, &m->logits, &m->d_head_in, &m->d_head_ln};
    for (int i = 0; i < 3; i++) *ff[i] = (real *)((char *)m->attn_pass + p->ff_at[i]);
    for (int i = 0; i < 7; i++) *head[i] = (real *)((char *)m->attn_pass + p->head_at[i]);
    for (int l = 0; l < c->n_layers; l++)
        if (c->layer_kind[l] == ATTN_LSH && pass_shape(m, l, 0).n_buckets > 0)
            m->buckets[l] = m->bucket_store + p->bucket_elems[l];
    m->bytes_planned = p->backend_bytes;
    m->scratch_planned = p->scratch;

    // The initial parameters tensor by tensor through a buffer of the largest
    // one: a host copy of them all would add n_params floats to the peak.
    const ParamLayout *pl = &m->layout;
    size_t largest = 1;
    for (int t = 0; t < pl->n_tensors; t++) largest = MAX(largest, pl->tensors[t].size);
    real *host = checked_calloc(largest, sizeof(real));
    be->zero(m->params, pl->n_params * sizeof(real));  // and the alignment gaps between tensors
    for (int t = 0; t < pl->n_tensors; t++) {
        param_init_tensor(pl, t, host, c->seed);
        be->upload(m->params + pl->tensors[t].offset, host, pl->tensors[t].size * sizeof(real));
    }
    free(host);
}

void model_free(Model *m) {
    const MemPlan *p = &m->plan;
    for (int i = 0; i < p->n; i++) {
        const MemItem *it = &p->item[i];
        if (it->where == MEM_PART) continue;
        if (it->where == MEM_SCRATCH) {
            m->be->release_scratch();
            continue;
        }
        void **slot = (void **)((char *)m + it->field);
        if (it->where == MEM_HOST) free(*slot);
        else m->be->release(*slot);
    }
    param_layout_free(&m->layout);
    memset(m, 0, sizeof *m);
}

// --- sequence-parallel exchange ---------------------------------------------

// Ulysses, in place in a pass buffer x of width gw (the pass's heads): x
// [T, gw] (my tokens) -> x [B, L, gw / sp] (rank r's share of the heads,
// columns r*gw/sp.., every token), packed through stage [T, gw] (a pass
// buffer free at that point). One all-to-all per sequence, whose blocks
// arrive where that sequence's rows go.
static void to_heads(Model *m, real *x, real *stage, int gw) {
    const Backend *be = m->be;
    const int sp = m->seq.sp, hw = gw / sp, Ll = m->L_local;
    const size_t blk = (size_t)Ll * hw;
    for (int b = 0; b < m->B; b++)
        for (int j = 0; j < sp; j++)  // heads of rank j, my positions of sequence b
            be->copy_2d(stage + ((size_t)b * sp + j) * blk, hw, x + (size_t)b * Ll * gw + (size_t)j * hw, gw, Ll, hw);
    for (int b = 0; b < m->B; b++) m->seq.alltoall(m->seq.ctx, stage + b * sp * blk, x + b * sp * blk, blk);
}

// The inverse: x [B, L, gw / sp] -> out [T, gw] (out may be x).
static void to_tokens(Model *m, real *out, const real *x, real *stage, int gw) {
    const Backend *be = m->be;
    const int sp = m->seq.sp, hw = gw / sp, Ll = m->L_local;
    const size_t blk = (size_t)Ll * hw;
    for (int b = 0; b < m->B; b++) m->seq.alltoall(m->seq.ctx, x + b * sp * blk, stage + b * sp * blk, blk);
    for (int b = 0; b < m->B; b++)
        for (int j = 0; j < sp; j++)
            be->copy_2d(out + (size_t)b * Ll * gw + (size_t)j * hw, gw, stage + ((size_t)b * sp + j) * blk, hw, Ll,
                        hw);
}

// Dropout on local rows [r0, r0 + n) of a [*, d] buffer (x points at row r0),
// masks drawn by global position (batch_offset, sequence shard), so they do
// not depend on how the batch or the sequence is split over ranks.
static void dropout_rows(Model *m, real *x, int r0, int n, const ModelStep *st, uint32_t tag) {
    const Config *c = &m->cfg;
    const int Ll = m->L_local, d = m->d;
    for (int r = r0; r < r0 + n;) {
        int seg = MIN(r0 + n, (r / Ll + 1) * Ll) - r;  // up to the end of this sequence
        size_t global_row = (st->batch_offset + (size_t)(r / Ll)) * m->L + (size_t)m->seq.sp_rank * Ll + r % Ll;
        m->be->dropout(x + (size_t)(r - r0) * d, (size_t)seg * d, global_row * d, (float)c->dropout, c->seed,
                       st->step, tag);
        r += seg;
    }
}
static uint32_t attn_tag(int l) { return rng_tag(RNG_DROPOUT, (uint32_t)l, SITE_ATTN); }

// --- attention half ---------------------------------------------------------
//
// The attention of a layer runs in passes of pass_heads[l] heads: each pass
// projects LN1(x) onto its heads' columns chunk by chunk (LN1 recomputed per
// chunk, never stored), runs the attention of its heads on its [T, gw]
// buffers and adds its share of the output projection, dropout(o_g W_o[g
// rows]), into the residual chunk by chunk. Dropout is linear, so the passes'
// shares add up to dropout(Attn(LN1(x))) W_o exactly (up to rounding). The
// backward of a pass follows its recomputed forward at once, so one pass's
// buffers are the whole attention workspace. With sp > 1 the attention of a
// pass exchanges: Ulysses turns the pass buffers to heads and back in place;
// a sequence-sharded pass sorts or fetches a halo (attention_seq.c).

// The projections of a layer: LSH shares qk (w_qk) and has no k.
typedef struct {
    int n;
    int tensor[3];
    real *x[3], *dx[3];  // the pass buffers and their gradients (dq over o)
} Projections;

static Projections layer_projections(Model *m, int l) {
    const LayerTensors *lt = &m->layout.layers[l];
    if (m->cfg.layer_kind[l] == ATTN_LSH)
        return (Projections){2, {lt->w_qk, lt->w_v}, {m->gq, m->gv}, {m->go, m->gdv}};
    return (Projections){3, {lt->w_q, lt->w_k, lt->w_v}, {m->gq, m->gk, m->gv}, {m->go, m->gdk, m->gdv}};
}

// Columns [g*gw, (g+1)*gw) of a [d, HD] weight, contiguous [d, gw] (the
// tensor itself when there is one pass).
static const real *weight_cols(Model *m, int l, int t, int g, int slot) {
    const size_t gw = (size_t)pass_width(m, l);
    if (n_passes(m, l) == 1) return P(m, t);
    m->be->copy_2d(m->w_slice[slot], gw, P(m, t) + (size_t)g * gw, (size_t)m->HD, (size_t)m->d, gw);
    return m->w_slice[slot];
}
// The same columns of the gradient, to accumulate into; grad_cols_done puts them back.
static real *grad_cols(Model *m, int l, int t, int g, int slot) {
    const size_t gw = (size_t)pass_width(m, l);
    if (n_passes(m, l) == 1) return G(m, t);
    m->be->copy_2d(m->g_slice[slot], gw, G(m, t) + (size_t)g * gw, (size_t)m->HD, (size_t)m->d, gw);
    return m->g_slice[slot];
}
static void grad_cols_done(Model *m, int l, int t, int g, int slot) {
    const size_t gw = (size_t)pass_width(m, l);
    if (n_passes(m, l) == 1) return;
    m->be->copy_2d(G(m, t) + (size_t)g * gw, (size_t)m->HD, m->g_slice[slot], gw, (size_t)m->d, gw);
}

// Pass g's buckets: every pass holds [B, heads attended, R, rows attended],
// pass_heads x R x T ids.
static uint16_t *pass_buckets(Model *m, int l, int g, const AttnShape *s) {
    return m->buckets[l] ? m->buckets[l] + (size_t)g * m->pass_heads[l] * s->n_hashes * m->T : NULL;
}

// Where a pass's output is in token layout: go, or with Ulysses dv's buffer
// (free until the backward's kernel), so that go keeps the head layout the
// backward's kernel reads: o is not sent again.
static real *pass_out(Model *m, int l) { return layer_path(m, l) == PATH_HEADS ? m->gdv : m->go; }

// Pass g of layer l: q, k, v of its heads for every token, then attention
// into go and attn_saved, its output in token layout at pass_out. hash = 1 draws fresh buckets; 0
// reuses the cached ones.
static void attn_pass_forward(Model *m, int l, int g, const real *x, const ModelStep *st, int hash) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const LayerTensors *lt = &m->layout.layers[l];
    const int T = m->T, d = m->d, gw = pass_width(m, l), path = layer_path(m, l);
    Projections pj = layer_projections(m, l);
    const real *w[3];
    for (int i = 0; i < pj.n; i++) w[i] = weight_cols(m, l, pj.tensor[i], g, i);
    for (int r0 = 0; r0 < T; r0 += m->rows) {
        int n = MIN(m->rows, T - r0);
        be->layernorm_forward(m->row_ln, m->row_mean, m->row_rstd, x + (size_t)r0 * d, P(m, lt->ln1_g),
                              P(m, lt->ln1_b), n, d, (real)c->ln_eps);
        for (int i = 0; i < pj.n; i++) mm(m, pj.x[i] + (size_t)r0 * gw, m->row_ln, w[i], n, gw, d, 0, 0, 0);
    }
    AttnShape s = pass_shape(m, l, g);
    uint16_t *bk = pass_buckets(m, l, g, &s);
    TIMED(PROF_ATTENTION, {
        if (path == PATH_SEQUENCE) {
            m->seq_attn.head0 = g * m->pass_heads[l];
            if (c->layer_kind[l] == ATTN_LSH)
                seq_lsh_forward(&m->seq_attn, be, &m->seq, m->go, m->gq, m->gv, bk, hash, c->seed, st->step,
                                (uint32_t)l);
            else seq_local_forward(&m->seq_attn, be, &m->seq, m->go, m->attn_saved, m->gq, m->gk, m->gv);
        } else {
            if (path == PATH_HEADS)
                for (int i = 0; i < pj.n; i++) to_heads(m, pj.x[i], m->go, gw);  // o is free until the kernel
            if (c->layer_kind[l] == ATTN_LSH) {
                if (bk && hash) TIMED(PROF_HASH, be->lsh_hash(bk, m->gq, &s, c->seed, st->step, (uint32_t)l, m->attn_work));
                be->lsh_attention_forward(m->go, m->attn_saved, m->gq, m->gv, bk, &s, m->attn_work);
            } else {
                be->local_attention_forward(m->go, m->attn_saved, m->gq, m->gk, m->gv, &s, m->attn_work);
            }
            if (path == PATH_HEADS) to_tokens(m, m->gdv, m->go, m->gdo, gw);
        }
    });
}

// y += sign * dropout(o W_o[g rows]), chunk by chunk: the pass's share of
// the block output (sign -1: taken back out, reconstructing the block input).
static void attn_pass_output(Model *m, int l, int g, real *y, real sign, const ModelStep *st) {
    const int T = m->T, d = m->d, gw = pass_width(m, l);
    const real *wo = P(m, m->layout.layers[l].w_o) + (size_t)g * gw * d, *out = pass_out(m, l);
    for (int r0 = 0; r0 < T; r0 += m->rows) {
        int n = MIN(m->rows, T - r0);
        mm(m, m->row_out, out + (size_t)r0 * gw, wo, n, d, gw, 0, 0, 0);
        if (st->train) dropout_rows(m, m->row_out, r0, n, st, attn_tag(l));
        m->be->axpy(y + (size_t)r0 * d, m->row_out, sign, (size_t)n * d);
    }
}

// Backward of pass g (its forward just recomputed): y -= its share of the
// output (reversible reconstruction; y NULL: none), dx += d/dx <dy, share>,
// parameter gradients accumulate.
static void attn_pass_backward(Model *m, int l, int g, const real *x, real *dx, const real *dy, real *y,
                               const ModelStep *st) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const LayerTensors *lt = &m->layout.layers[l];
    const int T = m->T, d = m->d, gw = pass_width(m, l), path = layer_path(m, l);
    const real *wo = P(m, lt->w_o) + (size_t)g * gw * d;
    real *dwo = G(m, lt->w_o) + (size_t)g * gw * d;
    for (int r0 = 0; r0 < T; r0 += m->rows) {
        int n = MIN(m->rows, T - r0);
        const real *o = pass_out(m, l) + (size_t)r0 * gw;
        if (y) {
            mm(m, m->row_out, o, wo, n, d, gw, 0, 0, 0);
            if (st->train) dropout_rows(m, m->row_out, r0, n, st, attn_tag(l));
            be->axpy(y + (size_t)r0 * d, m->row_out, -1, (size_t)n * d);
        }
        be->copy(m->row_out, dy + (size_t)r0 * d, (size_t)n * d * sizeof(real));
        if (st->train) dropout_rows(m, m->row_out, r0, n, st, attn_tag(l));
        mm(m, dwo, o, m->row_out, gw, d, n, 1, 0, 1);                   // dW_o[g rows] += o^T d_block
        mm(m, m->gdo + (size_t)r0 * gw, m->row_out, wo, n, gw, d, 0, 1, 0);  // do = d_block W_o[g rows]^T
    }
    AttnShape s = pass_shape(m, l, g);
    const uint16_t *bk = pass_buckets(m, l, g, &s);
    Projections pj = layer_projections(m, l);
    TIMED(PROF_ATTENTION, {
        if (path == PATH_SEQUENCE) {
            if (c->layer_kind[l] == ATTN_LSH)
                seq_lsh_backward(&m->seq_attn, be, &m->seq, m->go, m->gdv, m->gdo, m->go, m->gq, m->gv);
            else
                seq_local_backward(&m->seq_attn, be, &m->seq, m->go, m->gdk, m->gdv, m->gdo, m->go, m->attn_saved,
                                   m->gq, m->gk, m->gv);
        } else {
            if (path == PATH_HEADS) to_heads(m, m->gdo, m->gdv, gw);  // o in token layout is spent
            if (c->layer_kind[l] == ATTN_LSH)
                be->lsh_attention_backward(m->go, m->gdv, m->gdo, m->go, m->attn_saved, m->gq, m->gv, bk, &s,
                                           m->attn_work);
            else
                be->local_attention_backward(m->go, m->gdk, m->gdv, m->gdo, m->go, m->attn_saved, m->gq, m->gk,
                                             m->gv, &s, m->attn_work);
            if (path == PATH_HEADS)  // q, k, v are spent: q stages
                for (int i = 0; i < pj.n; i++) to_tokens(m, pj.dx[i], pj.dx[i], m->gq, gw);
        }
    });
    // Through the projections and LN1, chunk by chunk (LN1 recomputed).
    const real *w[3];
    real *dw[3];
    for (int i = 0; i < pj.n; i++)
        w[i] = weight_cols(m, l, pj.tensor[i], g, i), dw[i] = grad_cols(m, l, pj.tensor[i], g, i);
    for (int r0 = 0; r0 < T; r0 += m->rows) {
        int n = MIN(m->rows, T - r0);
        size_t off = (size_t)r0 * d;
        be->layernorm_forward(m->row_ln, m->row_mean, m->row_rstd, x + off, P(m, lt->ln1_g), P(m, lt->ln1_b), n,
                              d, (real)c->ln_eps);
        for (int i = 0; i < pj.n; i++) {
            const real *dxi = pj.dx[i] + (size_t)r0 * gw;
            mm(m, dw[i], m->row_ln, dxi, d, gw, n, 1, 0, 1);             // dW += LN1(x)^T dq
            mm(m, m->row_dln, dxi, w[i], n, d, gw, 0, 1, i ? 1 : 0);     // d LN1(x) = sum dq W^T
        }
        be->layernorm_backward(dx + off, G(m, lt->ln1_g), G(m, lt->ln1_b), m->row_dln, x + off, P(m, lt->ln1_g),
                               m->row_mean, m->row_rstd, n, d);
    }
    for (int i = 0; i < pj.n; i++) grad_cols_done(m, l, pj.tensor[i], g, i);
}

// y1 = x1 + dropout(Attn_l(LN1(x2))): y (x1) += the block output.
static void attn_half_forward(Model *m, int l, const real *x, real *y, const ModelStep *st) {
    use_pass(m, l);
    for (int g = 0; g < n_passes(m, l); g++) {
        attn_pass_forward(m, l, g, x, st, !st->reuse_buckets);
        attn_pass_output(m, l, g, y, 1, st);
    }
}

// Backward of the attention half with the forward's buckets: y (y1 on entry)
// becomes x1 = y1 - Attn(LN1(x)) (or a copy of stored_in, reversible=0);
// dx += d/dx <dy, Attn(LN1(x))>.
static void attn_half_backward(Model *m, int l, const real *x, real *dx, const real *dy, real *y,
                               const real *stored_in, const ModelStep *st) {
    const size_t Td = (size_t)m->T * m->d;
    use_pass(m, l);
    if (stored_in) m->be->copy(y, stored_in, Td * sizeof(real));
    for (int g = 0; g < n_passes(m, l); g++) {
        attn_pass_forward(m, l, g, x, st, 0);
        attn_pass_backward(m, l, g, x, dx, dy, stored_in ? NULL : y, st);
    }
}

// --- feed-forward half ----------------------------------------------------------

// row_out = dropout(FFN_l(LN2(y))) for rows [r0, r0 + n) of y (y points at row r0).
static void ffn_chunk_forward(Model *m, int l, const real *y, int r0, int n, const ModelStep *st) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const LayerTensors *lt = &m->layout.layers[l];
    const int d = m->d, dff = c->d_ff;
    be->layernorm_forward(m->row_ln, m->row_mean, m->row_rstd, y, P(m, lt->ln2_g), P(m, lt->ln2_b), n, d,
                          (real)c->ln_eps);
    mm(m, m->ff_h, m->row_ln, P(m, lt->ff_w1), n, dff, d, 0, 0, 0);
    be->bias_forward(m->ff_h, P(m, lt->ff_b1), n, dff);
    be->activation_forward(m->ff_a, m->ff_h, (size_t)n * dff, c->ff_activation);
    mm(m, m->row_out, m->ff_a, P(m, lt->ff_w2), n, d, dff, 0, 0, 0);
    be->bias_forward(m->row_out, P(m, lt->ff_b2), n, d);
    if (st->train) dropout_rows(m, m->row_out, r0, n, st, rng_tag(RNG_DROPOUT, (uint32_t)l, SITE_FFN));
}

// Backward of ffn_chunk_forward for the same rows: dy += d/dy <dout, row_out>.
// Uses row_out as scratch.
static void ffn_chunk_backward(Model *m, int l, const real *y, real *dy, const real *dout, int r0, int n,
                               const ModelStep *st) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const LayerTensors *lt = &m->layout.layers[l];
    const int d = m->d, dff = c->d_ff;
    real *df = m->row_out;
    be->copy(df, dout, (size_t)n * d * sizeof(real));
    if (st->train) dropout_rows(m, df, r0, n, st, rng_tag(RNG_DROPOUT, (uint32_t)l, SITE_FFN));
    mm(m, G(m, lt->ff_w2), m->ff_a, df, dff, d, n, 1, 0, 1);
    be->bias_backward(G(m, lt->ff_b2), df, n, d);
    mm(m, m->ff_da, df, P(m, lt->ff_w2), n, dff, d, 0, 1, 0);
    be->activation_backward(m->ff_da, m->ff_da, m->ff_h, (size_t)n * dff, c->ff_activation);
    mm(m, G(m, lt->ff_w1), m->row_ln, m->ff_da, d, dff, n, 1, 0, 1);
    be->bias_backward(G(m, lt->ff_b1), m->ff_da, n, dff);
    mm(m, m->row_dln, m->ff_da, P(m, lt->ff_w1), n, d, dff, 0, 1, 0);
    be->layernorm_backward(dy, G(m, lt->ln2_g), G(m, lt->ln2_b), m->row_dln, y, P(m, lt->ln2_g), m->row_mean,
                           m->row_rstd, n, d);
}

// --- whole model --------------------------------------------------------------

static void embed(Model *m) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    real *tables[MAX_AXES];
    for (int a = 0; a < c->n_axes; a++) tables[a] = P(m, m->layout.axial[a]);
    be->embedding_forward(m->x1, m->tokens, P(m, m->layout.tok_emb), m->T, m->d);
    be->axial_forward(m->x1, tables, c->axial_shape, c->axial_dims, c->n_axes, m->B, m->L_local,
                      m->seq.sp_rank * m->L_local);
    be->copy(m->x2, m->x1, (size_t)m->T * m->d * sizeof(real));
}

static void embed_backward(Model *m) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    real *dtables[MAX_AXES];
    for (int a = 0; a < c->n_axes; a++) dtables[a] = G(m, m->layout.axial[a]);
    be->axpy(m->dx1, m->dx2, 1, (size_t)m->T * m->d);  // x1 = x2 = embedding
    be->embedding_backward(G(m, m->layout.tok_emb), m->dx1, m->tokens, m->T, m->d);
    be->axial_backward(dtables, m->dx1, c->axial_shape, c->axial_dims, c->n_axes, m->B, m->L_local,
                       m->seq.sp_rank * m->L_local);
}

// LayerNorm(concat(x1, x2)) -> logits -> cross-entropy, chunk by chunk. With
// backward, each chunk's gradient goes straight into dx1, dx2 and the head's
// parameter gradients, so logits never exist for the whole sequence.
static void loss_head(Model *m, int backward, long count) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const ParamLayout *p = &m->layout;
    const int d = m->d, V = c->vocab_size;
    real dscale = backward && count > 0 ? (real)(1.0 / (double)count) : 0;
    for (int r0 = 0; r0 < m->T; r0 += m->head_rows) {
        int n = MIN(m->head_rows, m->T - r0);
        size_t off = (size_t)r0 * d;
        be->concat_rows(m->head_in, m->x1 + off, m->x2 + off, n, d);
        be->layernorm_forward(m->head_ln, m->head_mean, m->head_rstd, m->head_in, P(m, p->lnf_g), P(m, p->lnf_b),
                              n, 2 * d, (real)c->ln_eps);
        mm(m, m->logits, m->head_ln, P(m, p->out_w), n, V, 2 * d, 0, 0, 0);
        be->bias_forward(m->logits, P(m, p->out_b), n, V);
        be->xent_forward_backward(m->logits, m->losses + r0, m->correct + r0, m->targets + r0, n, V, dscale);
        if (!backward) continue;
        mm(m, G(m, p->out_w), m->head_ln, m->logits, 2 * d, V, n, 1, 0, 1);
        be->bias_backward(G(m, p->out_b), m->logits, n, V);
        mm(m, m->d_head_ln, m->logits, P(m, p->out_w), n, 2 * d, V, 0, 1, 0);
        be->zero(m->d_head_in, (size_t)n * 2 * d * sizeof(real));
        be->layernorm_backward(m->d_head_in, G(m, p->lnf_g), G(m, p->lnf_b), m->d_head_ln, m->head_in,
                               P(m, p->lnf_g), m->head_mean, m->head_rstd, n, 2 * d);
        be->split_rows(m->dx1 + off, m->dx2 + off, m->d_head_in, n, d);
    }
}

// The gradients of parameters [from, to) are final (GradBuckets).
static void grads_ready(Model *m, size_t from, size_t to) {
    if (m->grad_buckets.ready && to > from) m->grad_buckets.ready(m->grad_buckets.ctx, from, to - from);
}
static size_t layer_start(const Model *m, int l) {
    const ParamLayout *p = &m->layout;
    return p->tensors[l < m->cfg.n_layers ? p->layers[l].ln1_g : p->lnf_g].offset;
}

LossStats model_step(Model *m, const int *tokens, const int *targets, const ModelStep *st) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const int T = m->T, d = m->d;
    const size_t Td = (size_t)T * d;
    if (m->seq.sp > 1 && (!m->seq.alltoall || !m->seq.alltoallv || !m->seq.shift || !m->seq.scan_counts))
        FATAL("the launcher must set Model.seq's exchanges", "sp=%d but no sequence-parallel exchange is set",
              m->seq.sp);
    double t_start = prof_start(m);
    long n_targets = 0;
    for (int i = 0; i < T; i++) n_targets += targets[i] >= 0;
    be->upload(m->tokens, tokens, (size_t)T * sizeof(int));
    be->upload(m->targets, targets, (size_t)T * sizeof(int));
    if (st->backward) be->zero(m->grads, m->layout.n_params * sizeof(real));
    // The step's bf16 weights, once (the parameters change only between steps).
    if (m->params_bf16) be->bf16_weights(m->params, m->layout.n_params, m->params_bf16);

    embed(m);
    for (int l = 0; l < c->n_layers; l++) {
        if (m->on_layer) m->on_layer(m->on_layer_ctx, l, 0);
        if (m->stored) {
            be->copy(m->stored + (size_t)l * 2 * Td, m->x1, Td * sizeof(real));
            be->copy(m->stored + (size_t)l * 2 * Td + Td, m->x2, Td * sizeof(real));
        }
        attn_half_forward(m, l, m->x2, m->x1, st);  // y1 = x1 + Attn(LN1(x2))
        for (int r0 = 0; r0 < T; r0 += m->rows) {
            int n = MIN(m->rows, T - r0);
            ffn_chunk_forward(m, l, m->x1 + (size_t)r0 * d, r0, n, st);
            be->axpy(m->x2 + (size_t)r0 * d, m->row_out, 1, (size_t)n * d);  // y2 = x2 + FFN(LN2(y1))
        }
    }
    loss_head(m, st->backward, st->loss_count > 0 ? st->loss_count : n_targets);

    if (st->backward) {
        grads_ready(m, layer_start(m, c->n_layers), m->layout.n_params);  // final LayerNorm, output layer
        for (int l = c->n_layers - 1; l >= 0; l--) {
            if (m->on_layer) m->on_layer(m->on_layer_ctx, l, 1);
            const real *in1 = m->stored ? m->stored + (size_t)l * 2 * Td : NULL, *in2 = in1 ? in1 + Td : NULL;
            // Feed-forward half: x2 = y2 - FFN(LN2(y1)); dy1 += FFN'(dy2).
            for (int r0 = 0; r0 < T; r0 += m->rows) {
                int n = MIN(m->rows, T - r0);
                size_t off = (size_t)r0 * d;
                ffn_chunk_forward(m, l, m->x1 + off, r0, n, st);
                if (in2) be->copy(m->x2 + off, in2 + off, (size_t)n * d * sizeof(real));
                else be->axpy(m->x2 + off, m->row_out, -1, (size_t)n * d);
                ffn_chunk_backward(m, l, m->x1 + off, m->dx1 + off, m->dx2 + off, r0, n, st);
            }
            // Attention half, with the forward's buckets: x1 = y1 - Attn(LN1(x2)).
            ModelStep again = *st;
            again.reuse_buckets = 1;
            attn_half_backward(m, l, m->x2, m->dx2, m->dx1, m->x1, in1, &again);
            grads_ready(m, layer_start(m, l), layer_start(m, l + 1));
        }
        embed_backward(m);
        grads_ready(m, 0, layer_start(m, 0));  // token and position embeddings
    }

    be->download(m->host_losses, m->losses, (size_t)T * sizeof(real));
    be->download(m->host_correct, m->correct, (size_t)T * sizeof(int));
    double sum = 0;
    long hits = 0;
    for (int i = 0; i < T; i++) {
        sum += m->host_losses[i];
        hits += m->host_correct[i];
    }
    prof_stop(m, PROF_TOTAL, t_start);
    LossStats out = {.loss = n_targets ? sum / (double)n_targets : 0,
                     .accuracy = n_targets ? (double)hits / (double)n_targets : 0,
                     .n_targets = n_targets};
    return out;
}

LossStats model_forward(Model *m, const int *tokens, const int *targets, uint32_t step, int train) {
    ModelStep st = {.step = step, .train = train, .reuse_buckets = m->freeze_buckets};
    return model_step(m, tokens, targets, &st);
}

LossStats model_forward_backward(Model *m, const int *tokens, const int *targets, uint32_t step) {
    ModelStep st = {.step = step, .train = 1, .backward = 1, .reuse_buckets = m->freeze_buckets};
    return model_step(m, tokens, targets, &st);
}

double model_grad_norm(Model *m) { return sqrt(m->be->sum_squares(m->grads, m->layout.n_params)); }

double model_update(Model *m, int t, double lr) {
    const Config *c = &m->cfg;
    double norm = model_grad_norm(m);
    double scale = c->clip > 0 && norm > c->clip ? c->clip / norm : 1.0;
    for (int i = 0; i < m->layout.n_tensors; i++) {
        const TensorInfo *ti = &m->layout.tensors[i];
        m->be->adamw(m->params + ti->offset, m->adam_m + ti->offset, m->adam_v + ti->offset, m->grads + ti->offset,
                     ti->size, (float)lr, (float)c->beta1, (float)c->beta2, (float)c->adam_eps,
                     ti->decay ? (float)c->weight_decay : 0.0f, (float)scale, t);
    }
    return norm;
}

void model_get_params(Model *m, real *host) {
    m->be->download(host, m->params, m->layout.n_params * sizeof(real));
}
void model_set_params(Model *m, const real *host) {
    m->be->upload(m->params, host, m->layout.n_params * sizeof(real));
}
void model_get_grads(Model *m, real *host) {
    m->be->download(host, m->grads, m->layout.n_params * sizeof(real));
}

double lr_at(const Config *c, int step) {
    if (c->warmup > 0 && step <= c->warmup) return c->lr * (double)step / (double)c->warmup;
    switch (c->schedule) {
    case SCHED_CONSTANT: return c->lr;
    case SCHED_RSQRT: return c->lr * sqrt((double)MAX(c->warmup, 1) / (double)step);
    case SCHED_COSINE:
    default: {
        double span = (double)MAX(c->steps - c->warmup, 1);
        double progress = MIN(1.0, MAX(0.0, (double)(step - c->warmup) / span));
        return c->lr_min + (c->lr - c->lr_min) * 0.5 * (1.0 + cos(M_PI * progress));
    }
    }
}
