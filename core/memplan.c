#include "memplan.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attention_seq.h"
#include "cuda_sizes.h"
#include "model.h"
#include "params.h"
#include "util.h"

// --- rules ------------------------------------------------------------------

MemRules mem_rules_backend(const Backend *be) {
    MemRules r = {.device = be->name, .align = be->alloc_align ? be->alloc_align : 1,
                  .attention_workspace_bytes = be->attention_workspace_bytes, .scratch_bytes = be->scratch_bytes,
                  .lsh_sorted_workspace_bytes = be->lsh_sorted_workspace_bytes,
                  .reserve_extra = 0, .bf16_weights = be->bf16_weights != NULL, .note = "the backend's own sizing rules"};
    return r;
}

// The backend's own rules (core/cuda_sizes.h) without a GPU: no test knobs,
// and CUB's sort storage by its rule (the backend reserves the same unless
// CUB asks for more, which test_cuda checks it never does).
static size_t cuda_attention_workspace(const AttnShape *s, int lsh) {
    return cuda_attention_workspace_bytes(s, lsh, NULL, 0);
}
static size_t cuda_scratch(ScratchOp op, size_t a, size_t b, size_t c) {
    switch (op) {
    case SCRATCH_MATMUL: return 0;  // cuBLAS's own workspace (reserve_extra)
    case SCRATCH_MATMUL_BF16: return cuda_matmul_bf16_bytes(a, b, c);
    case SCRATCH_COLUMN_SUMS: return cuda_column_sums_bytes(a, b);
    case SCRATCH_EMBEDDING_BACKWARD: return cuda_embedding_backward_bytes(a, b, cuda_sort_reserve(a, 0));
    case SCRATCH_SUM_SQUARES: return cuda_sum_squares_bytes();
    }
    return 0;
}

MemRules mem_rules_cuda(void) {
    MemRules r = {.device = "cuda", .align = CUDA_ALLOC_ALIGN, .attention_workspace_bytes = cuda_attention_workspace,
                  .scratch_bytes = cuda_scratch, .reserve_extra = cuda_cublas_workspace_bytes(9), .bf16_weights = 1,
                  .note = "computed from core/cuda_sizes.h (the CUDA backend's own rules) without a GPU: CUB sort "
                          "storage by its bound, cuBLAS workspace of Hopper (32 MiB), CUDA context not included"};
    return r;
}

// --- the table --------------------------------------------------------------

// bytes rounded up to a multiple of align (the backend's allocation unit).
static size_t round_up(size_t bytes, size_t align) { return (bytes + align - 1) / align * align; }

// Lay out n buffers one after another, each starting on an align boundary:
// their offsets in at[], the total returned.
static size_t lay_out(const size_t *sizes, int n, size_t align, size_t *at) {
    size_t total = 0;
    for (int i = 0; i < n; i++) at[i] = total, total += round_up(sizes[i], align);
    return total;
}

static void add(MemPlan *p, const MemRules *r, const char *name, size_t field, MemWhere where, int per_token,
                size_t bytes, const char *fmt, ...) {
    if (p->n >= MEM_MAX_ITEMS) FATAL("report it", "memory plan: more than %d buffers", MEM_MAX_ITEMS);
    MemItem *it = &p->item[p->n++];
    it->name = name;
    it->field = field;
    it->where = where;
    it->per_token = per_token;
    size_t a = where == MEM_HOST ? 1 : r->align;
    it->bytes = where == MEM_SCRATCH ? bytes : round_up(MAX(bytes, 1), a);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->shape, sizeof it->shape, fmt, ap);
    va_end(ap);
}
#define F(field) offsetof(Model, field)
#define R4 sizeof(real)
#define RT (sizeof(real) == 8 ? "f64" : "f32")

// 1: layer l runs with the Ulysses all-to-all; 0: unsharded or sequence-sharded.
static int ulysses_layer(const Config *c, int l) { return c->sp > 1 && !c->sp_sequence[c->layer_kind[l]]; }

// The attention call of one pass of layer l (heads: the model heads it
// covers): what the backend kernel sees on this rank (precision and the
// attention implementation pick the CUDA workspace's slices).
static AttnShape plan_pass_shape(const MemPlan *p, const Config *c, int l, int heads) {
    const int u = ulysses_layer(c, l), seq = c->sp > 1 && !u;
    AttnShape s = {.batch = p->B, .seq_len = seq ? p->L_local : p->L, .n_heads = u ? heads / c->sp : heads,
                   .d_head = c->d_head, .chunk_len = config_layer_chunk(c, l), .n_hashes = 1, .n_buckets = 0,
                   .bf16 = c->precision == PRECISION_BF16, .tf32 = c->precision == PRECISION_TF32,
                   .reference = c->attn_reference};
    if (c->layer_kind[l] == ATTN_LSH && s.chunk_len < p->L) {
        s.n_hashes = c->n_hashes;
        s.n_buckets = c->n_buckets;
        s.bucket_factors = c->bucket_factors;
        s.strict = c->lsh_strict;
    }
    return s;
}

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

// One pass of `heads` heads of layer l: its workspace bytes and its backend scratch.
static size_t plan_pass(const MemPlan *p, const Config *c, const MemRules *r, int l, int heads, int steps,
                        size_t *work) {
    AttnPass ap;
    SeqSizeRules sr = {r->attention_workspace_bytes, r->lsh_sorted_workspace_bytes};
    size_t bytes = attn_pass_layout(&ap, NULL, c, &sr, p->B, l, heads, steps, work);
    if (!(c->sp > 1 && c->sp_sequence[c->layer_kind[l]])) {
        AttnShape s = plan_pass_shape(p, c, l, heads);
        *work = r->attention_workspace_bytes(&s, c->layer_kind[l] == ATTN_LSH);
    }
    return bytes;
}

// Scratch of the three matmuls of a linear layer y[rows, out] = x[rows, in] W.
static size_t linear_scratch(const MemRules *r, const Config *c, size_t rows, size_t in, size_t out) {
    ScratchOp op = c->precision == PRECISION_BF16 ? SCRATCH_MATMUL_BF16 : SCRATCH_MATMUL;
    size_t fwd = r->scratch_bytes(op, rows, out, in), dw = r->scratch_bytes(op, in, out, rows);
    size_t dx = r->scratch_bytes(op, rows, in, out);
    return MAX(fwd, MAX(dw, dx));
}

// The largest internal scratch any op of a step asks the backend for: every
// call shape the step makes, each at its largest (full chunks: a partial last
// chunk needs no more, the sizes being monotone).
static size_t scratch_plan(const MemPlan *p, const Config *c, const MemRules *r, size_t n_params) {
    const size_t T = (size_t)p->T, d = (size_t)p->d, V = (size_t)c->vocab_size;
    const size_t rows = (size_t)p->rows, hr = (size_t)p->head_rows, dff = (size_t)c->d_ff;
    size_t need = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const size_t gw = (size_t)p->pass_heads[l] * c->d_head;
        need = MAX(need, linear_scratch(r, c, rows, d, gw));  // projections of one pass, per chunk
        need = MAX(need, linear_scratch(r, c, rows, gw, d));  // output projection of one pass
    }
    need = MAX(need, linear_scratch(r, c, rows, d, dff));  // feed-forward in
    need = MAX(need, linear_scratch(r, c, rows, dff, d));  // feed-forward out
    need = MAX(need, linear_scratch(r, c, hr, 2 * d, V));  // output layer
    // bias and LayerNorm backward
    const size_t colsum_shapes[][2] = {{rows, d}, {rows, dff}, {hr, V}, {hr, 2 * d}};
    for (size_t i = 0; i < sizeof colsum_shapes / sizeof colsum_shapes[0]; i++)
        need = MAX(need, r->scratch_bytes(SCRATCH_COLUMN_SUMS, colsum_shapes[i][0], colsum_shapes[i][1], 0));
    need = MAX(need, r->scratch_bytes(SCRATCH_EMBEDDING_BACKWARD, T, d, 0));  // [V, d] table
    need = MAX(need, r->scratch_bytes(SCRATCH_SUM_SQUARES, n_params, 0, 0));
    return need;
}

// The fewest pieces per rank (sort_steps) in which a streamed pass of `heads`
// heads of layer l plans at most `limit` bytes; 0 if even one chunk per
// piece does not.
static int fewest_pieces(const MemPlan *p, const Config *c, const MemRules *r, int l, int heads, size_t limit) {
    size_t w;
    for (int t = 1, last = 0, most = seq_sort_pieces(c, INT_MAX); t <= most; t++) {
        const int pieces = seq_sort_pieces(c, t);
        if (pieces == last) continue;  // the same pieces as t - 1
        last = pieces;
        if (plan_pass(p, c, r, l, heads, pieces, &w) <= limit) return pieces;
    }
    return 0;
}

// The sequence-sharded sort's passes (memplan.h, pass_steps): the widest
// pass of at most hg heads whose kept rows fit the budget (what a pass of hg
// heads holds at sp = 1); else the widest streamed pass that fits it in the
// fewest steps; else passes of one head streamed in the fewest steps whose
// exchange buffers hold no more than one of the pass's [T, d_head] buffers
// (a pass then holds what it holds at sp = 1 and one such buffer more).
static void sort_schedule(const MemPlan *p, const Config *c, const MemRules *r, int l, size_t budget, int kept,
                          int *heads, int *steps) {
    const int hg = p->head_group;
    size_t w;
    for (int h = hg; h >= 1; h--)
        if (hg % h == 0 && (plan_pass(p, c, r, l, h, 0, &w) <= budget || (kept && h == 1))) {
            *heads = h, *steps = 0;  // kept (sort_steps=-1: kept, in passes of one head if none fits)
            return;
        }
    for (int h = hg; h >= 1; h--)
        if (hg % h == 0 && (*steps = fewest_pieces(p, c, r, l, h, budget))) {
            *heads = h;
            return;
        }
    const size_t buf = ((size_t)p->T * c->d_head * sizeof(real) + 255) & ~(size_t)255;
    Config one = *c;  // what a pass of one head of this layer holds at sp = 1: q, v, o, do, dv
    one.sp = 1, one.seq_len = p->L_local;
    AttnPass ap;
    const size_t held = attn_pass_layout(&ap, NULL, &one, NULL, p->B, l, 1, 0, NULL);
    *heads = 1;
    *steps = fewest_pieces(p, c, r, l, 1, held + buf);
    if (!*steps) *steps = seq_sort_pieces(c, INT_MAX);  // one chunk per piece: the least it can hold
}

int mem_plan_build(MemPlan *p, const Config *c, const MemRules *r, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    // Sizes are products of ints in size_t: at most 2^28 tokens x 2^20 wide,
    // far below 2^64; only the int row counts need a check.
    if ((long long)c->batch * (c->seq_len / c->sp) > INT_MAX) {
        snprintf(err, errlen, "batch * seq_len / sp = %lld tokens per rank: more than 2^31",
                 (long long)c->batch * (c->seq_len / c->sp));
        return 0;
    }
    p->B = c->batch;
    p->L = c->seq_len;
    p->L_local = c->seq_len / c->sp;
    p->T = c->batch * p->L_local;
    p->d = c->d_model;
    p->HD = c->n_heads * c->d_head;
    p->head_group = c->attn_head_group == 0 ? c->n_heads : c->attn_head_group;
    p->n_groups = c->n_heads / p->head_group;
    p->rows = MIN(c->ff_chunk, p->T);
    p->head_rows = MIN(c->loss_chunk, p->T);
    const size_t T = (size_t)p->T, d = (size_t)p->d, V = (size_t)c->vocab_size;
    const size_t rows = (size_t)p->rows, hr = (size_t)p->head_rows;
    const size_t dff = (size_t)c->d_ff;

    ParamLayout layout;
    param_layout_build(&layout, c);
    const size_t np = layout.n_params;
    p->n_params = np;
    param_layout_free(&layout);

    add(p, r, "params", F(params), MEM_BACKEND, 0, np * R4, "[%zu] %s", np, RT);
    add(p, r, "grads", F(grads), MEM_BACKEND, 0, np * R4, "[%zu] %s", np, RT);
    add(p, r, "adam_m", F(adam_m), MEM_BACKEND, 0, np * R4, "[%zu] %s", np, RT);
    add(p, r, "adam_v", F(adam_v), MEM_BACKEND, 0, np * R4, "[%zu] %s", np, RT);
    if (c->precision == PRECISION_BF16 && r->bf16_weights)
        add(p, r, "params_bf16", F(params_bf16), MEM_BACKEND, 0, np * 2, "[%zu] bf16", np);
    const char *streams[] = {"x1", "x2", "dx1", "dx2"};
    const size_t stream_fields[] = {F(x1), F(x2), F(dx1), F(dx2)};
    for (int i = 0; i < 4; i++) add(p, r, streams[i], stream_fields[i], MEM_BACKEND, 1, T * d * R4, "[T=%zu, d=%zu] %s", T, d, RT);
    if (!c->reversible)
        add(p, r, "stored", F(stored), MEM_BACKEND, 1, (size_t)c->n_layers * 2 * T * d * R4, "[layers=%d, 2, T, d] %s",
            c->n_layers, RT);
    add(p, r, "tokens", F(tokens), MEM_BACKEND, 1, T * sizeof(int), "[T] i32");
    add(p, r, "targets", F(targets), MEM_BACKEND, 1, T * sizeof(int), "[T] i32");

    // Attention passes. What a pass of head_group heads holds at sp = 1 (the
    // widest layer kind's buffers) bounds the sequence-sharded sort's passes.
    const int hg = p->head_group;
    size_t budget = 0, work = 0, saved = 0, bucket_total = 0, slice_width = 0;
    for (int l = 0; l < c->n_layers; l++) {
        Config one = *c;  // this rank's T tokens as one process's sequence
        one.sp = 1, one.seq_len = p->L_local;
        AttnPass ap;
        budget = MAX(budget, attn_pass_layout(&ap, NULL, &one, NULL, p->B, l, hg, 0, NULL));
    }
    int n_lsh = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const int lsh = c->layer_kind[l] == ATTN_LSH, seq = c->sp > 1 && c->sp_sequence[c->layer_kind[l]];
        int heads = hg, steps = 0;
        if (ulysses_layer(c, l)) heads = hg / gcd(hg, c->sp) * c->sp;  // lcm: sp divides n_heads and hg does
        size_t w = 0, bytes = plan_pass(p, c, r, l, heads, 0, &w);
        if (seq && lsh) {
            if (c->sort_steps > 0) steps = seq_sort_pieces(c, c->sort_steps);
            else sort_schedule(p, c, r, l, budget, c->sort_steps < 0, &heads, &steps);
            bytes = plan_pass(p, c, r, l, heads, steps, &w);
        }
        p->pass_heads[l] = heads;
        p->pass_steps[l] = steps;
        p->pass_bytes = MAX(p->pass_bytes, bytes);
        work = MAX(work, w);
        AttnShape s = plan_pass_shape(p, c, l, heads);
        if (heads < c->n_heads) slice_width = MAX(slice_width, (size_t)heads * c->d_head);
        p->bucket_elems[l] = bucket_total;
        if (lsh && s.n_buckets > 0) {  // every pass's buckets: n_heads x R x T in all
            bucket_total += (size_t)c->n_heads * s.n_hashes * T;
            n_lsh++;
        }
        if (!(seq && lsh)) saved = MAX(saved, lsh ? lsh_saved_elems(&s) : local_saved_elems(&s));
    }
    if (bucket_total)
        add(p, r, "buckets", F(bucket_store), MEM_BACKEND, 1, bucket_total * sizeof(uint16_t),
            "[lsh layers=%d, H, R=%d, T] u16", n_lsh, c->n_hashes);
    // One pass's buffers, laid out per layer in one allocation: q (qk), k,
    // v, o, their gradients (dq over o), and for a sequence-sharded layer its
    // exchange buffers after them. The rows below it show the widest layout.
    // The chunk buffers of the feed-forward layer and of the loss head, laid
    // out from the start of the same allocation: no pass is in flight while
    // either runs (model.c), so the row is the largest of the three.
    const size_t ff_sizes[3] = {rows * dff * R4, rows * dff * R4, rows * dff * R4};
    const size_t head_sizes[7] = {hr * 2 * d * R4, hr * 2 * d * R4, hr * R4, hr * R4, hr * V * R4, hr * 2 * d * R4,
                                  hr * 2 * d * R4};
    const size_t ff_bytes = lay_out(ff_sizes, 3, r->align, p->ff_at);
    const size_t head_bytes = lay_out(head_sizes, 7, r->align, p->head_at);
    add(p, r, "attn_pass", F(attn_pass), MEM_BACKEND, 1, MAX(p->pass_bytes, MAX(ff_bytes, head_bytes)),
        "one attention pass (attn_pass_layout)");
    {
        int widest = 0;
        for (int l = 0; l < c->n_layers; l++) {
            size_t w, a = plan_pass(p, c, r, l, p->pass_heads[l], p->pass_steps[l], &w);
            size_t b = plan_pass(p, c, r, widest, p->pass_heads[widest], p->pass_steps[widest], &w);
            if (a > b) widest = l;
        }
        const int heads = p->pass_heads[widest], u = ulysses_layer(c, widest);
        const int seq = c->sp > 1 && !u;
        const char *gb[] = {"attn_q", "attn_k", "attn_v", "attn_o", "attn_do", "attn_dk", "attn_dv"};
        const size_t buf = ((T * heads * c->d_head * R4) + 255) & ~(size_t)255;  // as attn_pass_layout carves
        size_t w, in_bufs = 0;
        for (int i = 0; i < 7; i++) {
            if ((i == 1 || i == 5) && c->layer_kind[widest] == ATTN_LSH) continue;
            add(p, r, gb[i], MEM_NO_FIELD, MEM_PART, 1, buf, u ? "[B*L, %d heads x %d] %s (layer %d)"
                : "[T, %d heads x %d] %s (layer %d)", u ? heads / c->sp : heads, c->d_head, RT, widest);
            in_bufs += buf;
        }
        if (seq) {
            char what[40];
            if (c->layer_kind[widest] != ATTN_LSH) snprintf(what, sizeof what, "halo");
            else if (p->pass_steps[widest]) snprintf(what, sizeof what, "sort (%d steps)", p->pass_steps[widest]);
            else snprintf(what, sizeof what, "sort (kept)");
            add(p, r, "attn_exchange", MEM_NO_FIELD, MEM_PART, 1,
                plan_pass(p, c, r, widest, heads, p->pass_steps[widest], &w) - in_bufs, "%s of %d heads (attention_seq.c)",
                what, heads);
        }
    }
    add(p, r, "ff_h", MEM_NO_FIELD, MEM_PART, 0, ff_sizes[0], "[rows=%zu, d_ff=%zu] %s (in attn_pass)", rows, dff, RT);
    add(p, r, "ff_a", MEM_NO_FIELD, MEM_PART, 0, ff_sizes[1], "[rows, d_ff] %s (in attn_pass)", RT);
    add(p, r, "ff_da", MEM_NO_FIELD, MEM_PART, 0, ff_sizes[2], "[rows, d_ff] %s (in attn_pass)", RT);
    add(p, r, "head", MEM_NO_FIELD, MEM_PART, 0, head_bytes, "loss chunk of %zu rows (in attn_pass)", hr);
    if (slice_width) {
        // Columns of w_q, w_k, w_v (w_qk) for one pass, and of their gradients.
        const char *ws[] = {"w_slice0", "w_slice1", "w_slice2", "g_slice0", "g_slice1", "g_slice2"};
        const size_t ws_f[] = {F(w_slice[0]), F(w_slice[1]), F(w_slice[2]), F(g_slice[0]), F(g_slice[1]), F(g_slice[2])};
        int any_local = config_count_lsh_layers(c) < c->n_layers;
        for (int i = 0; i < 6; i++) {
            if (i % 3 == 2 && !any_local) continue;
            add(p, r, ws[i], ws_f[i], MEM_BACKEND, 0, d * slice_width * R4, "[d, %zu] %s", slice_width, RT);
        }
    }
    if (saved) add(p, r, "attn_saved", F(attn_saved), MEM_BACKEND, 1, saved * R4, "lse of one pass %s", RT);
    if (work) add(p, r, "attn_work", F(attn_work), MEM_BACKEND, 1, work, "attention workspace");

    // Token chunks: the attention projections and the feed-forward layer.
    add(p, r, "row_ln", F(row_ln), MEM_BACKEND, 0, rows * d * R4, "[rows=%zu, d] %s", rows, RT);
    add(p, r, "row_mean", F(row_mean), MEM_BACKEND, 0, rows * R4, "[rows] %s", RT);
    add(p, r, "row_rstd", F(row_rstd), MEM_BACKEND, 0, rows * R4, "[rows] %s", RT);
    add(p, r, "row_out", F(row_out), MEM_BACKEND, 0, rows * d * R4, "[rows, d] %s", RT);
    add(p, r, "row_dln", F(row_dln), MEM_BACKEND, 0, rows * d * R4, "[rows, d] %s", RT);
    add(p, r, "losses", F(losses), MEM_BACKEND, 1, T * R4, "[T] %s", RT);
    add(p, r, "correct", F(correct), MEM_BACKEND, 1, T * sizeof(int), "[T] i32");

    p->scratch = scratch_plan(p, c, r, np);
    add(p, r, "op scratch", MEM_NO_FIELD, MEM_SCRATCH, 0, p->scratch + r->reserve_extra,
        r->reserve_extra ? "reserve_scratch + cuBLAS workspace" : "reserve_scratch");
    add(p, r, "host_losses", F(host_losses), MEM_HOST, 1, T * R4, "[T] %s host", RT);
    add(p, r, "host_correct", F(host_correct), MEM_HOST, 1, T * sizeof(int), "[T] i32 host");

    size_t per_token = 0;
    for (int i = 0; i < p->n; i++) {
        if (p->item[i].where == MEM_PART) continue;
        if (p->item[i].where == MEM_HOST) p->host_bytes += p->item[i].bytes;
        else p->backend_bytes += p->item[i].bytes;
        if (p->item[i].per_token) per_token += p->item[i].bytes;
    }
    p->per_token_bytes = per_token / ((size_t)p->B * p->L);
    return 1;
}

size_t mem_plan_need(const MemPlan *p, const MemRules *rules) {
    return p->backend_bytes + (strcmp(rules->device, "cpu") == 0 ? p->host_bytes : 0);
}

size_t mem_process_need(const MemPlan *p, const MemRules *rules) {
    return mem_plan_need(p, rules) + (strcmp(rules->device, "cpu") == 0 ? MEM_PROCESS_OVERHEAD : 0);
}

void mem_plan_print(const MemPlan *p, const Config *c, const MemRules *rules, FILE *out) {
    const double MiB = 1024.0 * 1024.0;
    fprintf(out, "memory plan: device=%s precision=%s seq_len=%d batch=%d sp=%d d_model=%d n_layers=%d "
                 "attn_head_group=%d (%d pass%s per attention layer)\n",
            rules->device, c->precision == PRECISION_BF16 ? "bf16" : "fp32", c->seq_len, c->batch, c->sp, c->d_model,
            c->n_layers, p->head_group, p->n_groups, p->n_groups == 1 ? "" : "es");
    fprintf(out, "  %-14s %-40s %12s  %s\n", "buffer", "shape", "MiB", "");
    for (int i = 0; i < p->n; i++) {
        const MemItem *it = &p->item[i];
        fprintf(out, "  %-14s %-40s %12.2f  %s\n", it->name, it->shape, (double)it->bytes / MiB,
                it->where == MEM_HOST ? "host" : it->where == MEM_PART ? "(part of the row above)"
                                               : it->per_token ? "per token" : "");
    }
    fprintf(out, "  %-14s %-40s %12.2f\n", "total", rules->device[0] == 'c' && rules->device[1] == 'p' ?
                                                      "backend (host memory)" : "backend (device memory)",
            (double)p->backend_bytes / MiB);
    fprintf(out, "  %-14s %-40s %12.2f\n", "", "host staging", (double)p->host_bytes / MiB);
    fprintf(out, "  bytes per token: %zu (of B * seq_len = %zu tokens); planned need %.1f MiB\n", p->per_token_bytes,
            (size_t)p->B * p->L, (double)mem_plan_need(p, rules) / MiB);
    fprintf(out, "  sizing: %s\n", rules->note);
    for (int l = 0; l < c->n_layers; l++)
        if (c->sp > 1 && c->layer_kind[l] == ATTN_LSH && c->sp_sequence[ATTN_LSH]) {
            if (p->pass_steps[l])
                fprintf(out, "  LSH sort: passes of %d head%s, rows streamed in %d pieces per rank\n", p->pass_heads[l],
                        p->pass_heads[l] == 1 ? "" : "s", p->pass_steps[l]);
            else
                fprintf(out, "  LSH sort: passes of %d head%s, rows kept from forward to backward\n", p->pass_heads[l],
                        p->pass_heads[l] == 1 ? "" : "s");
            break;
        }
}

size_t mem_parse_size(const char *s) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || !(v > 0)) return 0;
    while (*end == ' ') end++;
    int power = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': power = 1; break;
    case 'M': power = 2; break;
    case 'G': power = 3; break;
    case 'T': power = 4; break;
    case 0: break;
    case 'B': break;
    default: return 0;
    }
    if (power) end++;
    double base = 1024.0;
    if (power && (*end == 'i' || *end == 'I')) end++;       // GiB, Gi: binary
    else if (power && (*end == 'b' || *end == 'B')) base = 1000.0;  // GB: decimal
    if (*end == 'b' || *end == 'B') end++;
    if (*end) return 0;
    double bytes = v * pow(base, power);
    if (!(bytes < 0x1p62)) return 0;
    return (size_t)bytes;
}
