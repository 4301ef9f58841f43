// The shared LSH bucket rule (core/lsh_rules.h), used by the CPU hash, the
// decoder and the CUDA hash kernel: argmax over [p ; -p], first maximum wins.
#include <criterion/criterion.h>
#include <math.h>

#include <stdlib.h>

#include "backend.h"
#include "lsh_rules.h"

// The rule as REFORMER.md states it: the first index of the maximum of the
// concatenation [p ; -p], by a plain scan of its 2 * half values.
static int bucket_by_definition(const real *p, int half) {
    int best = 0;
    real bv = p[0];
    for (int j = 1; j < 2 * half; j++) {
        real v = j < half ? p[j] : -p[j - half];
        if (v > bv) bv = v, best = j;
    }
    return best;
}

Test(lsh_rules, ties_go_to_the_first_maximum) {
    const real p1[4] = {1, 3, 3, -2};  // max 3 at j = 1 and 2; -min = 2 < 3
    cr_assert_eq(lsh_bucket_of(p1, 4), 1);
    const real p2[4] = {1, -3, 2, -3};  // -min = 3 > max 2: first index of min (1), + half
    cr_assert_eq(lsh_bucket_of(p2, 4), 4 + 1);
    const real p3[3] = {2, -2, 1};  // max(p) = max(-p) = 2: p's half comes first
    cr_assert_eq(lsh_bucket_of(p3, 3), 0);
    const real p4[1] = {-0.5};  // one projection, two buckets
    cr_assert_eq(lsh_bucket_of(p4, 1), 1);
}

Test(lsh_rules, nan_never_wins) {
    const real p[3] = {NAN, 5, -7};
    cr_assert_eq(lsh_bucket_of(p, 3), bucket_by_definition(p, 3));
    const real q[3] = {1, NAN, 0.5};
    cr_assert_eq(lsh_bucket_of(q, 3), 0);
}

// Random projections, with many ties (values on a coarse grid), against the
// definition; the streaming form the GPU uses is lsh_bucket_of itself.
Test(lsh_rules, matches_the_definition_on_random_projections) {
    real p[16];
    for (int trial = 0; trial < 20000; trial++) {
        int half = 1 + trial % 16;
        for (int j = 0; j < half; j++)
            p[j] = (real)((int)(rng_uniform(7, (uint64_t)trial * 16 + j, 0, 0) * 9.0f) - 4);
        cr_assert_eq(lsh_bucket_of(p, half), bucket_by_definition(p, half), "trial %d half %d", trial, half);
    }
}

// --- factorised buckets --------------------------------------------------------

// The factorised numbering as transformers writes it: factor k's bucket is the
// definition's argmax over its own f_k/2 columns (they follow factor k-1's),
// and bucket = b_1 + f_1 * b_2 + f_1 * f_2 * b_3 + ...
static int factored_by_definition(const real *p, int n, const int *f) {
    int bucket = 0, stride = 1, col = 0;
    for (int k = 0; k < n; k++) {
        bucket += stride * bucket_by_definition(p + col, f[k] / 2);
        col += f[k] / 2;
        stride *= f[k];
    }
    return bucket;
}

static const int FACTOR_SETS[][4] = {  // count, factors
    {1, 8}, {1, 2}, {2, 2, 4}, {2, 8, 6}, {2, 64, 128}, {3, 4, 2, 6}, {3, 2, 2, 2}, {3, 16, 4, 8},
};
#define N_FACTOR_SETS (sizeof FACTOR_SETS / sizeof FACTOR_SETS[0])

static LshFactors factors_of(const int *set, int *nb) {
    LshFactors fs = {set[0], {0}};
    *nb = 1;
    for (int k = 0; k < set[0]; k++) fs.f[k] = set[1 + k], *nb *= set[1 + k];
    return fs;
}

// The rule on projections with many ties (a coarse grid), 1 to 3 factors.
Test(lsh_rules, factored_bucket_matches_the_definition) {
    real p[128];
    for (size_t set = 0; set < N_FACTOR_SETS; set++) {
        int nb;
        LshFactors fs = factors_of(FACTOR_SETS[set], &nb);
        const int W = lsh_rotation_width(nb, fs);
        int w_expected = 0;
        for (int k = 0; k < fs.n; k++) w_expected += fs.f[k] / 2;
        cr_assert_eq(W, w_expected, "set %zu: width %d", set, W);
        for (int trial = 0; trial < 3000; trial++) {
            for (int j = 0; j < W; j++)
                p[j] = (real)((int)(rng_uniform(8, (uint64_t)trial * 128 + j, (uint32_t)set, 0) * 9.0f) - 4);
            int got = lsh_bucket_factored(p, nb, fs), want = factored_by_definition(p, fs.n, fs.f);
            cr_assert_eq(got, want, "set %zu trial %d: %d, expected %d", set, trial, got, want);
            cr_assert(got >= 0 && got < nb);
        }
    }
}

// A count alone (no factor list, or one whose product is not nb) hashes
// unfactorised: nb/2 columns, lsh_bucket_of.
Test(lsh_rules, a_count_alone_is_one_factor) {
    const LshFactors none = {0, {0}}, stale = {2, {4, 4}};
    cr_assert_eq(lsh_rotation_width(12, none), 6);
    cr_assert_eq(lsh_rotation_width(12, stale), 6);
    cr_assert_eq(lsh_rotation_width(16, stale), 4);
    const real p[6] = {0.5, -2, 1, 0.25, 1.5, -1};
    cr_assert_eq(lsh_bucket_factored(p, 12, none), lsh_bucket_of(p, 6));
}

// The CPU hash (one GEMM per head and block of rows over every round's factor
// columns) against a naive double-precision reference: the rotation drawn
// element by element (lsh_rotation_element, [dh, R, W] layout), each
// projection a plain dot product, the definition's per-factor argmax and the
// numbering above. Rounds 1, 2 and 4; 1 to 3 factors. A factor whose winning
// and runner-up values are within 1e-4 (float rounding of a 16-long dot
// product of unit normals is ~1e-6) may legitimately differ: such items are
// skipped, and must be rare.
Test(lsh_rules, cpu_hash_matches_a_naive_reference) {
    const int B = 2, L = 48, H = 2, dh = 16, HD = H * dh, rounds[] = {1, 2, 4};
    const uint64_t seed = 4242;
    const uint32_t step = 3, layer = 1;
    real *qk = malloc((size_t)B * L * HD * sizeof(real));
    for (int e = 0; e < B * L * HD; e++) qk[e] = (real)rng_normal(31, (uint64_t)e, 0, 0);
    const Backend *cpu = backend_cpu();
    for (size_t set = 0; set < N_FACTOR_SETS; set++)
        for (int ri = 0; ri < 3; ri++) {
            int nb;
            LshFactors fs = factors_of(FACTOR_SETS[set], &nb);
            const int R = rounds[ri], W = lsh_rotation_width(nb, fs);
            AttnShape s = {.batch = B, .seq_len = L, .n_heads = H, .d_head = dh, .chunk_len = 8, .n_hashes = R,
                           .n_buckets = nb, .bucket_factors = fs, .head_offset = 1};
            uint16_t *bk = calloc((size_t)B * H * R * L, sizeof(uint16_t));
            void *work = calloc(1, cpu->attention_workspace_bytes(&s, 1));
            cpu->lsh_hash(bk, qk, &s, seed, step, layer, work);
            int checked = 0, skipped = 0;
            double proj[256];
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++)
                    for (int r = 0; r < R; r++)
                        for (int i = 0; i < L; i++) {
                            const real *x = qk + ((size_t)b * L + i) * HD + (size_t)h * dh;
                            for (int j = 0; j < W; j++) {
                                proj[j] = 0;
                                for (int d = 0; d < dh; d++)
                                    proj[j] += (double)x[d] * lsh_rotation_element(seed, (uint64_t)(1 + h),
                                                                                  ((uint64_t)d * R + r) * W + j, step,
                                                                                  layer);
                            }
                            int want = 0, stride = 1, near_tie = 0;
                            for (int k = 0, col = 0; k < fs.n; col += fs.f[k] / 2, stride *= fs.f[k], k++) {
                                const int half = fs.f[k] / 2;
                                double best = -INFINITY, second = -INFINITY;
                                int arg = 0;
                                for (int j = 0; j < 2 * half; j++) {
                                    double v = j < half ? proj[col + j] : -proj[col + j - half];
                                    if (v > best) second = best, best = v, arg = j;
                                    else if (v > second) second = v;
                                }
                                near_tie |= best - second < 1e-4;
                                want += stride * arg;
                            }
                            int got = bk[(((size_t)b * H + h) * R + r) * L + i];
                            if (near_tie) {
                                skipped++;
                                continue;
                            }
                            cr_assert_eq(got, want, "set %zu R %d b %d h %d r %d i %d: bucket %d, expected %d", set, R,
                                         b, h, r, i, got, want);
                            checked++;
                        }
            cr_assert_gt(checked, 50 * skipped, "set %zu R %d: %d near ties of %d", set, R, skipped, checked);
            free(bk);
            free(work);
        }
    free(qk);
}

// --- the automatic count ---------------------------------------------------------

// transformers' ReformerAttention._set_num_buckets, transcribed into C from
// its Python (int.bit_length, int(x ** 0.5)) independently of lsh_auto_factors:
//   pow = (2 * (seq_len // chunk)).bit_length() - 1;  nb = 2 ** pow
//   limit = 2 * max(int((max_pos // chunk) ** 0.5), chunk)
//   nb > limit: [2 ** (pow // 2), 2 ** (pow - pow // 2)]
static int py_bit_length(long x) {
    int n = 0;
    for (; x; x >>= 1) n++;
    return n;
}
static LshFactors transformers_num_buckets(long seq_len, long chunk, long max_pos) {
    int pw = py_bit_length(2 * (seq_len / chunk)) - 1;
    long nb = 1L << pw;
    long root = (long)pow((double)(max_pos / chunk), 0.5);
    long limit = 2 * (root > chunk ? root : chunk);
    LshFactors fs = {1, {(int)nb}};
    if (nb > limit) fs.n = 2, fs.f[0] = 1 << (pw / 2), fs.f[1] = 1 << (pw - pw / 2);
    return fs;
}

// (seq_len, chunk, max_len): short and long sequences, chunks 4 to 256,
// max_len = seq_len (this project's choice) and the published models'
// 524,288 and 65,536; every entry with seq_len >= chunk and at most 65,536
// buckets (transformers has no cap; this project's is tested below).
static const long AUTO_TABLE[][3] = {
    {512, 64, 512},          {1024, 64, 1024},       {4096, 64, 4096},        {8192, 64, 8192},
    {16384, 64, 16384},      {65536, 64, 65536},     {262144, 64, 262144},    {1048576, 64, 1048576},
    {64, 4, 64},             {4096, 32, 4096},       {192, 64, 192},          {64, 64, 64},
    {524288, 64, 524288},    {16384, 64, 524288},    {4096, 64, 524288},      {65536, 256, 65536},
    {65536, 128, 65536},     {65536, 256, 524288},   {2048, 8, 2048},         {96, 32, 96},
    {16, 4, 16},             {1 << 20, 32, 1 << 20}, {1 << 21, 64, 1 << 21},  {300, 7, 300},
};

static int same_factors(LshFactors a, LshFactors b) {
    if (a.n != b.n) return 0;
    for (int k = 0; k < a.n; k++)
        if (a.f[k] != b.f[k]) return 0;
    return 1;
}

Test(lsh_rules, auto_buckets_follow_transformers) {
    for (size_t t = 0; t < sizeof AUTO_TABLE / sizeof AUTO_TABLE[0]; t++) {
        const long L = AUTO_TABLE[t][0], m = AUTO_TABLE[t][1], max_len = AUTO_TABLE[t][2];
        LshFactors want = transformers_num_buckets(L, m, max_len), got = lsh_auto_factors((int)L, (int)m, (int)max_len);
        cr_assert(same_factors(got, want), "seq_len %ld chunk %ld max %ld: %d factors (%d, %d), transformers %d (%d, %d)",
                  L, m, max_len, got.n, got.f[0], got.f[1], want.n, want.f[0], want.f[1]);
    }
    // Some entries factorise and some do not (the table exercises both arms).
    cr_assert_eq(lsh_auto_factors(4096, 64, 4096).n, 1);
    cr_assert_eq(lsh_auto_factors(8192, 64, 8192).n, 2);
}

// Past 65,536 buckets (bucket ids are 16-bit) the count stops at 2^16,
// factorised 256 x 256; below one chunk it is 2 (transformers: 0.5).
Test(lsh_rules, auto_buckets_cap) {
    LshFactors fs = lsh_auto_factors(1 << 24, 64, 1 << 24);
    cr_assert(fs.n == 2 && fs.f[0] == 256 && fs.f[1] == 256, "%d: %d x %d", fs.n, fs.f[0], fs.f[1]);
    fs = lsh_auto_factors(32, 64, 32);
    cr_assert(fs.n == 1 && fs.f[0] == 2);
}
