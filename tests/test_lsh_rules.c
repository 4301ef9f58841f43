// The shared LSH bucket rule (core/lsh_rules.h), used by the CPU hash, the
// decoder and the CUDA hash kernel: argmax over [p ; -p], first maximum wins.
#include <criterion/criterion.h>
#include <math.h>

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
