// The memory plan (core/memplan.h): what it predicts is what model_init
// allocates, for the CPU backend (counted by its allocator) and for the CUDA
// backend's sizing rules (counted, not run: a stand-in backend with CUDA's
// alignment and rules counts the bytes model_init asks for); and attention
// in passes of fewer heads computes the same step as one pass of all heads.
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_sizes.h"
#include "gradcheck.h"
#include "memplan.h"
#include "model.h"
#include "model_configs.h"

static Config config_of(const char *const *sets) {
    Config c;
    config_defaults(&c);
    char err[256];
    for (int i = 0; sets[i]; i++) cr_assert_eq(config_set_pair(&c, sets[i], err, sizeof err), 0, "%s: %s", sets[i], err);
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    return c;
}

// A dozen configs: attention patterns, head groups, stored activations,
// bf16 (CUDA only), sequence parallel (the exchange buffers), chunk sizes.
#define N_CONFIGS 15
static const char *const CONFIGS[N_CONFIGS][12] = {
    {"seq_len=512", NULL},
    {"seq_len=1024", "batch=2", "attn_head_group=1", NULL},
    {"seq_len=1024", "attn_head_group=2", "attn_layers=lsh", NULL},
    {"seq_len=2048", "attn_layers=local", "batch=1", NULL},
    {"seq_len=512", "reversible=0", "n_layers=3", NULL},
    {"seq_len=4096", "d_model=256", "d_ff=1024", "batch=1", "attn_head_group=2", NULL},
    {"seq_len=1000", "lsh_chunk=40", "local_chunk=50", "n_hashes=4", NULL},
    {"seq_len=512", "ff_chunk=100", "loss_chunk=77", NULL},
    {"seq_len=512", "sp=2", NULL},
    {"seq_len=256", "n_heads=8", "attn_head_group=4", "n_layers=6", NULL},
    {"seq_len=512", "attn=full", NULL},
    {"seq_len=768", "vocab_size=1000", "d_model=64", "n_heads=2", "attn_head_group=1", NULL},
    {"seq_len=1024", "lsh_form=strict", "n_hashes=4", "attn_head_group=2", NULL},  // + the strict mask's run starts
    // factorised buckets: the hash's rotation columns sum(f)/2 (automatic 16 x 16 at 8192; 64 x 128 given)
    {"seq_len=8192", "d_model=64", "n_heads=2", "attn_layers=lsh", "n_layers=1", "batch=1", NULL},
    {"seq_len=1024", "n_buckets=64,128", "n_hashes=4", "attn_head_group=2", NULL},
};

// Plan c with the CPU's rules, then model_init it: the bytes the CPU
// allocator counted (model_free must give them all back).
static size_t cpu_allocated(const Config *c, MemPlan *p, size_t *model_planned) {
    MemRules rules = mem_rules_backend(backend_cpu());
    char err[256];
    cr_assert(mem_plan_build(p, c, &rules, err, sizeof err), "%s", err);
    size_t before = backend_cpu_held_bytes();
    Model m;
    model_init(&m, c, backend_cpu());
    size_t counted = backend_cpu_held_bytes() - before;
    *model_planned = m.bytes_planned;
    model_free(&m);
    cr_assert_eq(backend_cpu_held_bytes(), before, "model_free left bytes held");
    return counted;
}

// Model init of every config on the CPU: the backend's allocator counts
// exactly the plan's backend bytes (same rows, same rounding).
Test(memplan, cpu_plan_equals_allocated_bytes) {
    for (int i = 0; i < N_CONFIGS; i++) {
        Config c = config_of(CONFIGS[i]);
        MemPlan p;
        size_t model_planned, counted = cpu_allocated(&c, &p, &model_planned);
        // The CPU reserve_scratch keeps nothing: its scratch row is 0.
        size_t planned = p.backend_bytes - p.scratch;
        cr_assert_eq(model_planned, p.backend_bytes, "config %d: model and plan differ", i);
        // Within 1% (it is exact: the plan rounds as alloc does).
        cr_assert_leq(fabs((double)counted - (double)planned), 0.01 * (double)planned,
                      "config %d: planned %zu, allocator counted %zu", i, planned, counted);
        cr_assert_eq(counted, planned, "config %d: planned %zu, allocator counted %zu", i, planned, counted);
    }
}

// A stand-in with the CUDA backend's sizing: 256-byte rounding, CUDA's
// workspace and scratch rules, and reserve_scratch holding the request plus
// cuBLAS's workspace, as cu_reserve_scratch does. Memory is the CPU's.
static size_t g_counted;
static void *counting_alloc(size_t bytes) {
    g_counted += (bytes + 255) / 256 * 256;
    return backend_cpu()->alloc(bytes);
}
static void counting_reserve(size_t bytes) { g_counted += (bytes + 255) / 256 * 256 + mem_rules_cuda().reserve_extra; }
// The bf16 weight copy (Backend.bf16_weights), counted: calls, and what it was given.
static int g_bf16_calls;
static const real *g_bf16_params;
static size_t g_bf16_n;
static void *g_bf16_shadow;
static void counting_bf16_weights(const real *params, size_t n, void *shadow) {
    g_bf16_calls++;
    g_bf16_params = params, g_bf16_n = n, g_bf16_shadow = shadow;
}

static Backend cuda_standin(void) {
    MemRules rules = mem_rules_cuda();
    Backend standin = *backend_cpu();
    standin.name = "cuda sizing stand-in";
    standin.alloc_align = rules.align;
    standin.alloc = counting_alloc;
    standin.attention_workspace_bytes = rules.attention_workspace_bytes;
    standin.lsh_sorted_workspace_bytes = rules.lsh_sorted_workspace_bytes;
    standin.scratch_bytes = rules.scratch_bytes;
    standin.reserve_scratch = counting_reserve;
    standin.matmul_bf16 = standin.matmul;  // model_init refuses bf16 without one; never called here
    standin.bf16_weights = counting_bf16_weights;
    return standin;
}

// Plan c with CUDA's rules; the bytes model_init asks the stand-in for.
static size_t cuda_asked(const Config *c, MemPlan *p) {
    MemRules rules = mem_rules_cuda();
    Backend standin = cuda_standin();
    char err[256];
    cr_assert(mem_plan_build(p, c, &rules, err, sizeof err), "%s", err);
    g_counted = 0;
    Model m;
    model_init(&m, c, &standin);  // counted, not run
    model_free(&m);
    return g_counted;
}

Test(memplan, cuda_plan_equals_what_model_init_asks_for) {
    for (int i = 0; i < N_CONFIGS; i++) {
        for (int bf16 = 0; bf16 <= 1; bf16++) {
            Config c = config_of(CONFIGS[i]);
            if (bf16) c.precision = PRECISION_BF16;
            MemPlan p;
            size_t counted = cuda_asked(&c, &p);
            cr_assert_leq(fabs((double)counted - (double)p.backend_bytes), 0.01 * (double)p.backend_bytes,
                          "config %d bf16 %d: planned %zu, counted %zu", i, bf16, p.backend_bytes, counted);
            cr_assert_eq(counted, p.backend_bytes, "config %d bf16 %d: planned %zu, counted %zu", i, bf16,
                         p.backend_bytes, counted);
        }
    }
}

// Sequence parallel, every path: sp 2, 4, 8; Ulysses (heads), the sort and
// the halo (sequence), auto; LSH, local and both; passes of all, 1 and 2
// heads (8 heads, so Ulysses runs at sp 8 too). Per rank, the CPU allocator
// counts exactly the plan's backend bytes, and a stand-in with CUDA's sizing
// is asked for exactly the plan's bytes (the sort's rows are in the pass
// workspace either way).
static Config sp_config_steps(int sp, const char *path, const char *pattern, int head_group, int sort_steps) {
    char set[6][64];
    snprintf(set[0], 64, "sp=%d", sp);
    snprintf(set[1], 64, "sp_attention=%s", path);
    snprintf(set[2], 64, "attn_layers=%s", pattern);
    snprintf(set[3], 64, "attn_head_group=%d", head_group);
    snprintf(set[4], 64, "seq_len=%d", 128 * sp);
    snprintf(set[5], 64, "sort_steps=%d", sort_steps);
    const char *sets[] = {"n_heads=8", "d_head=8", "d_model=32", "d_ff=48", "n_layers=2", "batch=2", "lsh_chunk=16",
                          "local_chunk=16", "n_hashes=2", "ff_chunk=100", set[0], set[1], set[2], set[3], set[4],
                          set[5], NULL};
    return config_of(sets);
}

static Config sp_config(int sp, const char *path, const char *pattern, int head_group) {
    return sp_config_steps(sp, path, pattern, head_group, 0);
}

Test(memplan, sequence_parallel_plan_equals_allocated_bytes_on_every_path) {
    const char *paths[] = {"heads", "sequence", "auto"}, *patterns[] = {"lsh", "local", "local,lsh"};
    const int sps[] = {2, 4, 8}, groups[] = {0, 1, 2};
    int n = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int s = 0; s < 3; s++)
                for (int g = 0; g < 3; g++) {
                    Config c = sp_config(sps[s], paths[a], patterns[b], groups[g]);
                    MemPlan p;
                    size_t model_planned, counted = cpu_allocated(&c, &p, &model_planned);
                    cr_assert_eq(counted, p.backend_bytes - p.scratch, "sp %d %s %s group %d: planned %zu, counted %zu",
                                 sps[s], paths[a], patterns[b], groups[g], p.backend_bytes - p.scratch, counted);
                    counted = cuda_asked(&c, &p);
                    cr_assert_eq(counted, p.backend_bytes, "cuda sizing, sp %d %s %s group %d: planned %zu, counted %zu",
                                 sps[s], paths[a], patterns[b], groups[g], p.backend_bytes, counted);
                    n++;
                }
    // The sort's two schedules forced: kept (-1) and streamed in 3 pieces.
    const int schedules[] = {-1, 3};
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < 3; s++)
            for (int g = 0; g < 3; g++) {
                Config c = sp_config_steps(sps[s], "sequence", "local,lsh", groups[g], schedules[k]);
                MemPlan p;
                size_t model_planned, counted = cpu_allocated(&c, &p, &model_planned);
                cr_assert_eq(counted, p.backend_bytes - p.scratch, "sp %d sort_steps %d group %d: planned %zu, counted %zu",
                             sps[s], schedules[k], groups[g], p.backend_bytes - p.scratch, counted);
                cr_assert_eq(!!p.pass_steps[1], k, "sp %d group %d: schedule %d not taken", sps[s], groups[g], schedules[k]);
                counted = cuda_asked(&c, &p);
                cr_assert_eq(counted, p.backend_bytes, "cuda sizing, sp %d sort_steps %d group %d", sps[s], schedules[k],
                             groups[g]);
                n++;
            }
    cr_assert_eq(n, 81 + 18);
}

// A rank at sp = k holds about what one process holds for the same number of
// positions: the planned bytes per position per rank (per_token_bytes x sp:
// per_token_bytes counts the whole sequence) at sp = 2, 4, 8 within 10% of
// sp = 1's, for the measured model (experiments/scaling/past_heads.md), in
// passes of all heads, of 2 and of 1, on every path: the halo, the sort
// (kept, or streamed where kept rows do not fit: memplan.c, sort_schedule),
// auto, and Ulysses where sp divides the pass's heads. (Ulysses gives each
// rank whole heads of a pass: asked for with fewer heads per pass than sp,
// a pass covers lcm(group, sp) heads and holds what a pass of that many
// holds at sp = 1; auto sorts instead: config.c, sp_attention_plan.)
Test(memplan, bytes_per_position_at_sp_k_within_10_percent_of_one_process) {
    static const struct {
        const char *pattern, *path;
        int group, max_sp;
    } rows[] = {
        {"local,lsh", "auto", 0, 8},     {"local,lsh", "sequence", 0, 8}, {"local,lsh", "heads", 0, 4},
        {"lsh", "auto", 0, 8},           {"lsh", "sequence", 0, 8},       {"lsh", "heads", 0, 4},
        {"local", "auto", 0, 8},         {"local", "sequence", 0, 8},     {"local", "heads", 0, 4},
        {"local,lsh", "auto", 2, 8},     {"local,lsh", "sequence", 2, 8}, {"local,lsh", "heads", 2, 2},
        {"lsh", "auto", 2, 8},           {"lsh", "sequence", 2, 8},       {"lsh", "heads", 2, 2},
        {"local", "auto", 2, 8},         {"local", "sequence", 2, 8},     {"local", "heads", 2, 2},
        {"local,lsh", "auto", 1, 8},     {"local,lsh", "sequence", 1, 8}, {"lsh", "auto", 1, 8},
        {"lsh", "sequence", 1, 8},       {"local", "auto", 1, 8},         {"local", "sequence", 1, 8},
    };
    // One OpenMP thread per rank, as the measurements run: the attention
    // workspace is per thread and, with Ulysses, per whole sequence (sp times
    // a rank's positions), a few hundred bytes per position per thread.
    omp_set_num_threads(1);
    MemRules rules = mem_rules_backend(backend_cpu());
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double one = 0;
        for (int sp = 1; sp <= rows[i].max_sp; sp *= 2) {
            char set[5][64];
            snprintf(set[0], 64, "sp=%d", sp);
            snprintf(set[1], 64, "sp_attention=%s", rows[i].path);
            snprintf(set[2], 64, "attn_layers=%s", rows[i].pattern);
            snprintf(set[3], 64, "attn_head_group=%d", rows[i].group);
            snprintf(set[4], 64, "seq_len=%d", 16384 * sp);
            const char *sets[] = {"d_model=256", "d_ff=1024", "n_heads=4", "d_head=64", "n_hashes=2", "lsh_chunk=64",
                                  "local_chunk=64", "batch=1", "n_layers=4", set[0], set[1], set[2], set[3], set[4],
                                  NULL};
            Config c = config_of(sets);
            MemPlan p;
            char err[256];
            cr_assert(mem_plan_build(&p, &c, &rules, err, sizeof err), "%s", err);
            double per_position = (double)p.per_token_bytes * sp;
            if (sp == 1) one = per_position;
            cr_assert_leq(per_position, 1.10 * one, "%s %s group %d sp %d: %.0f bytes per position vs %.0f at sp 1",
                          rows[i].pattern, rows[i].path, rows[i].group, sp, per_position, one);
        }
    }
}

// The CUDA workspace layouts (core/cuda_sizes.h), which the backend carves
// and the planner counts: every buffer lies inside the workspace; the
// buffers alive together do not overlap (forward: the sort's and the
// per-round outputs; backward: the sort's and the gradients); the hash's
// rotations and GEMM slice fit the group region they alias; the
// tensor-core slice lies after the group region and inside the total (the
// planner used to leave it and the hash slice out: ~256 MiB short on the
// enwik8 model). Shapes: the enwik8 and long_1m LSH and local layers, a
// small one, one chunk (no buckets), many buckets on narrow heads, bf16, the reference path, test knobs.
typedef struct {
    size_t at, bytes;
} Region;
static void assert_inside(Region r, size_t end, const char *what, const char *name) {
    cr_assert_leq(r.at + r.bytes, end, "%s: %s [%zu, +%zu) past %zu", what, name, r.at, r.bytes, end);
}
static void assert_apart(Region a, Region b, const char *what, const char *na, const char *nb) {
    cr_assert(a.at + a.bytes <= b.at || b.at + b.bytes <= a.at, "%s: %s and %s overlap", what, na, nb);
}
Test(memplan, cuda_layouts_hold_every_buffer) {
    const AttnShape shapes[] = {
        {.batch = 1, .seq_len = 65536, .n_heads = 8, .d_head = 128, .chunk_len = 64, .n_hashes = 8, .n_buckets = 2048},
        {.batch = 1, .seq_len = 1048576, .n_heads = 8, .d_head = 64, .chunk_len = 64, .n_hashes = 2, .n_buckets = 32768},
        {.batch = 2, .seq_len = 64, .n_heads = 3, .d_head = 8, .chunk_len = 8, .n_hashes = 2, .n_buckets = 8},
        {.batch = 2, .seq_len = 32, .n_heads = 2, .d_head = 16, .chunk_len = 32, .n_hashes = 1, .n_buckets = 0},
        // many buckets, a narrow head: the hash's rotations and slice outgrow the group buffers
        {.batch = 1, .seq_len = 4096, .n_heads = 8, .d_head = 8, .chunk_len = 64, .n_hashes = 8, .n_buckets = 4096},
    };
    const CudaKnobs knobs[] = {{0, 0}, {1, 3}, {4, 1}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int variant = 0; variant < 3; variant++)
            for (size_t k = 0; k < sizeof knobs / sizeof knobs[0]; k++) {
                AttnShape s = shapes[i];
                s.bf16 = variant == 1;
                s.reference = variant == 2;
                char what[96];
                snprintf(what, sizeof what, "shape %zu variant %d knobs %zu", i, variant, k);
                const CudaLshLayout l = cuda_lsh_layout(&s, &knobs[k], 0);
                const size_t G = l.G, n = attn_items(&s), L = (size_t)s.seq_len, dh = (size_t)s.d_head;
                cr_assert(G >= 1 && (knobs[k].max_group_pairs == 0 || G <= (size_t)knobs[k].max_group_pairs), "%s", what);
                cr_assert_geq(l.sort_bytes, 2 * G * n * 4, "%s: the sort's alternate keys and values", what);
                const Region sort_side[] = {{l.keys_in, G * n * 4}, {l.keys_out, G * n * 4}, {l.vals_in, G * n * 4},
                                            {l.pos, G * n * 4},     {l.inv, G * n * 4},      {l.sort_tmp, l.sort_bytes},
                                            {l.rn, G * L * 4}};
                const Region backward[] = {{l.wt, G * n * 4}, {l.Dm, G * n * 4}, {l.dsq, G * n * dh * 4},
                                           {l.dsk, G * n * dh * 4}, {l.dsv, G * n * dh * 4}};
                const Region so = {l.so, G * n * dh * 4};
                const char *sn[] = {"keys_in", "keys_out", "vals_in", "pos", "inv", "sort_tmp", "rn"};
                const char *bn[] = {"wt", "Dm", "dsq", "dsk", "dsv"};
                for (int a = 0; a < 7; a++) {
                    assert_inside(sort_side[a], l.group_bytes, what, sn[a]);
                    assert_apart(sort_side[a], so, what, sn[a], "so");
                    for (int b = a + 1; b < 7; b++) assert_apart(sort_side[a], sort_side[b], what, sn[a], sn[b]);
                    for (int b = 0; b < 5; b++) assert_apart(sort_side[a], backward[b], what, sn[a], bn[b]);
                }
                for (int a = 0; a < 5; a++) {
                    assert_inside(backward[a], l.group_bytes, what, bn[a]);
                    for (int b = a + 1; b < 5; b++) assert_apart(backward[a], backward[b], what, bn[a], bn[b]);
                }
                assert_inside(so, l.group_bytes, what, "so");
                if (s.n_buckets > 0) {
                    const size_t half = (size_t)s.n_buckets / 2;
                    const Region rot = {l.rot, (size_t)s.n_heads * dh * s.n_hashes * half * 4};
                    assert_inside(rot, l.group_bytes, what, "rot");
                    if (!s.reference) {
                        const Region hs = {l.hash_slice, cuda_hash_slice_bytes(&s, cuda_hash_slice_positions(&s))};
                        assert_apart(rot, hs, what, "rot", "hash slice");
                        assert_inside(hs, l.group_bytes, what, "hash slice");
                    }
                }
                cr_assert_geq(l.slice, l.group_bytes, "%s: the tensor-core slice overlaps the group", what);
                const size_t blocks = G * (n / (size_t)s.chunk_len);
                if (!s.reference) {
                    const int nb = cuda_gm_slice_blocks(&s, 1, blocks, &knobs[k]);
                    cr_assert(nb > 0, "%s: enwik8-sized blocks fit the slice budget", what);
                    assert_inside((Region){l.slice, cuda_gm_slice_bytes(&s, 1, nb)}, l.bytes, what, "tensor-core slice");
                } else {
                    cr_assert_eq(l.bytes, l.slice, "%s: the reference path has no slice", what);
                }
                cr_assert_eq(cuda_attention_workspace_bytes(&s, 1, &knobs[k], 0), l.bytes, "%s", what);
                // Local attention: D, then the slice.
                AttnShape ls = s;
                ls.n_hashes = 1, ls.n_buckets = 0;
                const size_t lb = cuda_local_work_bytes(&ls, &knobs[k]);
                const size_t d_bytes = (size_t)ls.batch * ls.n_heads * ls.seq_len * 4;
                const size_t local_blocks = (size_t)ls.batch * ls.n_heads * (ls.seq_len / ls.chunk_len);
                const size_t slice = s.reference ? 0 : cuda_gm_slice_bytes(&ls, 0, cuda_gm_slice_blocks(&ls, 0, local_blocks, &knobs[k]));
                assert_inside((Region){cuda_local_d_bytes(&ls), slice}, lb, what, "local slice");
                cr_assert_geq(cuda_local_d_bytes(&ls), d_bytes, "%s: local D", what);
            }
}

// precision=bf16 with a backend that keeps a bf16 copy of the weights: the
// plan has its row ([n_params] bf16), and every step (training or
// evaluation) makes the copy once, from the parameters into that row (the stand-in's
// matmul_bf16 is the fp32 one: the step runs on the CPU); fp32: neither.
Test(memplan, bf16_weights_copied_once_per_step) {
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        Config c = tiny_config("local,lsh", 2);
        if (bf16) c.precision = PRECISION_BF16;
        Backend standin = *backend_cpu();
        standin.matmul_bf16 = standin.matmul;
        standin.bf16_weights = counting_bf16_weights;
        Model m;
        model_init(&m, &c, &standin);
        int row = -1;
        for (int i = 0; i < m.plan.n; i++)
            if (!strcmp(m.plan.item[i].name, "params_bf16")) row = i;
        cr_assert_eq(row >= 0, bf16, "params_bf16 row %s", bf16 ? "missing" : "planned for fp32");
        if (bf16) cr_assert_geq(m.plan.item[row].bytes, m.layout.n_params * 2);
        cr_assert_eq(m.params_bf16 != NULL, bf16);
        int *tokens = calloc(m.T, sizeof(int)), *targets = calloc(m.T, sizeof(int));
        tiny_batch(tokens, targets, m.T, c.vocab_size, 3);
        g_bf16_calls = 0;
        for (int s = 1; s <= 2; s++) {
            model_forward_backward(&m, tokens, targets, (uint32_t)s);
            model_update(&m, s, 1e-3);
        }
        model_forward(&m, tokens, targets, 3, 0);
        cr_assert_eq(g_bf16_calls, bf16 ? 3 : 0, "bf16 copies in 2 training steps and 1 evaluation: %d", g_bf16_calls);
        if (bf16)
            cr_assert(g_bf16_params == m.params && g_bf16_n == m.layout.n_params && g_bf16_shadow == m.params_bf16,
                      "the copy is not of the parameters into the planned row");
        free(tokens), free(targets);
        model_free(&m);
    }
}

// The per-token part is linear in length: its bytes per token at 64K and 1M
// tokens of the model within 5% (planned, CPU; the fixed part,
// parameters and AdamW moments, ~53 MiB here, is not per token).
Test(memplan, bytes_per_token_flat_in_length) {
    const char *base[] = {"batch=1", "d_model=256", "d_ff=1024", "n_layers=4", "axial_dims=128,128", NULL, NULL};
    MemRules rules = mem_rules_backend(backend_cpu());
    size_t per[2];
    const char *lens[2] = {"seq_len=65536", "seq_len=1048576"};
    for (int k = 0; k < 2; k++) {
        base[5] = lens[k];
        Config c = config_of(base);
        MemPlan p;
        char err[256];
        cr_assert(mem_plan_build(&p, &c, &rules, err, sizeof err), "%s", err);
        per[k] = p.per_token_bytes;
    }
    cr_assert_lt(fabs((double)per[0] / (double)per[1] - 1), 0.05, "bytes per token %zu (64K) vs %zu (1M)", per[0],
                 per[1]);
}

// Passes of 1 head (LSH and local layers, dropout on) against one pass of
// both heads: the same loss and gradients up to float rounding (the passes
// add their shares of the output projection and of d LN1 in another order:
// ~1e-7 relative; 1e-5 leaves room).
Test(memplan, head_group_passes_match_one_pass) {
    Config a = tiny_config("local,lsh", 4), b = a;
    b.attn_head_group = 1;
    Model ma, mb;
    model_init(&ma, &a, backend_cpu());
    model_init(&mb, &b, backend_cpu());
    cr_assert_eq(ma.n_groups, 1);
    cr_assert_eq(mb.n_groups, 2);
    int *tokens = calloc(ma.T, sizeof(int)), *targets = calloc(ma.T, sizeof(int));
    tiny_batch(tokens, targets, ma.T, a.vocab_size, 5);
    LossStats la = model_forward_backward(&ma, tokens, targets, 9);
    LossStats lb = model_forward_backward(&mb, tokens, targets, 9);
    cr_assert_lt(fabs(la.loss - lb.loss), 1e-5 * fabs(la.loss), "loss %g vs %g", la.loss, lb.loss);
    double e = rel_err(ma.grads, mb.grads, ma.layout.n_params);
    cr_assert_lt(e, 1e-5, "gradients differ by %g", e);
    model_free(&ma);
    model_free(&mb);
    free(tokens);
    free(targets);
}

// Issue 21, 2.10: sizes. "nan" was read as a size (REFORMER_MEM_AVAILABLE=nan
// turned preflight off, --fit nan reported 8589934592 GiB) and "16GB" as 16
// GiB. The rule (memplan.h): K, M, G, T with or without "i" and "B" are
// powers of 1024, KB, MB, GB, TB powers of 1000; anything not a finite
// positive size below 2^62 bytes is refused (0).
Test(memplan, sizes_parse_by_one_unit_rule_and_refuse_non_numbers) {
    static const struct {
        const char *text;
        size_t bytes;
    } ok[] = {{"1048576", 1048576},     {"512B", 512},           {"800M", 800ull << 20},
              {"16G", 16ull << 30},     {"16GiB", 16ull << 30},  {"16Gi", 16ull << 30},
              {"16GB", 16000000000ull}, {"1.5T", 3ull << 39},    {"2 KB", 2000},
              {"100000T", 100000ull << 40}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_assert_eq(mem_parse_size(ok[i].text), ok[i].bytes, "%s: %zu", ok[i].text, mem_parse_size(ok[i].text));
    static const char *const bad[] = {"nan", "NaN", "inf", "-inf", "-1G", "0", "lots", "16X", "16GBB", "1e30",
                                      "5000000T", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(mem_parse_size(bad[i]), 0, "'%s' read as %zu bytes", bad[i], mem_parse_size(bad[i]));
}
