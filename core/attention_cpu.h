// Pieces of the CPU attention exposed for tests and other backends' checks.
#pragma once
#include <stdint.h>

// Epsilon of trax/HF shared-QK key normalisation: k = x / sqrt(mean(x^2) + eps)
// / sqrt(dh), computed as x / sqrt(sum(x^2) + dh * eps).
#define KEY_NORM_EPS 1e-6

// Stable counting sort of one (batch, head)'s R*L items by (round, bucket,
// position): perm[s] = r*L + i of the s-th sorted item, inv = perm^-1.
// buckets [R, L] in [0, nb); NULL means one bucket (identity). counts [nb].
void lsh_sort_items(int *perm, int *inv, int *counts, const uint16_t *buckets, int L, int R, int nb);
