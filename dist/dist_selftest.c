// Self-test of dist/ under mpirun, used by tests/test_dist.c:
//   dist_selftest grid SP    every rank checks its grid position and groups
//   dist_selftest abort      rank 1 aborts while the others wait in a barrier:
//                            the whole job must end at once with the message
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int sp = argc > 2 ? atoi(argv[2]) : 1;
    Dist d;
    char err[256];
    if (dist_init(&d, &argc, &argv, !strcmp(argv[1], "grid") ? sp : 1, err, sizeof err)) {
        fprintf(stderr, "dist_selftest: %s\n", err);
        return 3;
    }
    if (!strcmp(argv[1], "abort")) {
        if (d.rank == 1) dist_abort(&d, "dist_selftest: rank 1 gives up on purpose");
        dist_barrier(&d, DIST_WORLD);  // never completes: rank 1 is gone
        printf("rank %d passed the barrier: abort did not end the job\n", d.rank);
        dist_finalize(&d);
        return 0;
    }
    int bad = 0;
    bad += d.dp * d.sp != d.world;
    bad += d.rank != d.dp_rank * d.sp + d.sp_rank;
    bad += dist_group_size(&d, DIST_SP) != d.sp || dist_group_rank(&d, DIST_SP) != d.sp_rank;
    bad += dist_group_size(&d, DIST_DP) != d.dp || dist_group_rank(&d, DIST_DP) != d.dp_rank;
    bad += d.local_rank < 0 || d.local_rank >= d.local_size;
    // Sum of world ranks within my replica: sp_rank-major layout.
    float x = (float)d.rank;
    dist_allreduce_sum(&d, DIST_SP, &x, 1);
    float want = (float)(d.dp_rank * d.sp * d.sp + d.sp * (d.sp - 1) / 2);
    bad += x != want;
    // Broadcast from the replica's first rank.
    int token = d.sp_rank == 0 ? 1000 + d.dp_rank : -1;
    dist_bcast(&d, DIST_SP, &token, sizeof token, 0);
    bad += token != 1000 + d.dp_rank;
    float total = (float)bad;
    dist_allreduce_sum(&d, DIST_WORLD, &total, 1);
    if (d.rank == 0) printf("grid %d x %d: %s\n", d.dp, d.sp, total > 0 ? "FAIL" : "OK");
    dist_finalize(&d);
    return total > 0;
}
