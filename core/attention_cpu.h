// Pieces of the CPU attention exposed for tests and other backends' checks.
#pragma once
#include <stdint.h>

#include "lsh_rules.h"  // KEY_NORM_EPS, the rotations and the bucket rule

// Stable counting sort of one (batch, head)'s R*L items by (round, bucket,
// position): perm[s] = r*L + i of the s-th sorted item, inv = perm^-1.
// buckets [R, L] in [0, nb); NULL means one bucket (identity). counts [nb].
void lsh_sort_items(int *perm, int *inv, int *counts, const uint16_t *buckets, int L, int R, int nb);
