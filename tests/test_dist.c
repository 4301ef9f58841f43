// dist/ under mpirun (DESIGN.md, Testing: Criterion forks each test, so MPI
// programs are started with mpirun and judged by exit code and output).
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MPIRUN "mpirun --allow-run-as-root --oversubscribe --bind-to none "

typedef struct {
    int rc;
    char out[16384];
    double seconds;
} Result;

static Result run(const char *cmd) {
    Result r = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    size_t n = fread(r.out, 1, sizeof r.out - 1, p);
    r.out[n] = '\0';
    int status = pclose(p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    r.seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return r;
}

static void need_mpi(void) {
    if (system("command -v mpirun >/dev/null 2>&1") != 0 || access("build/dist_selftest", X_OK) != 0)
        cr_skip_test("mpirun or build/dist_selftest missing: this build has no MPI");
}

Test(dist, grid_and_groups_2x2) {
    need_mpi();
    Result r = run(MPIRUN "-np 4 build/dist_selftest grid 2 2>&1");
    cr_assert_eq(r.rc, 0, "%s", r.out);
    cr_assert(strstr(r.out, "grid 2 x 2: OK"), "%s", r.out);
}

Test(dist, grid_4x1_and_1x4) {
    need_mpi();
    Result a = run(MPIRUN "-np 4 build/dist_selftest grid 1 2>&1");
    cr_assert(strstr(a.out, "grid 4 x 1: OK"), "%s", a.out);
    Result b = run(MPIRUN "-np 4 build/dist_selftest grid 4 2>&1");
    cr_assert(strstr(b.out, "grid 1 x 4: OK"), "%s", b.out);
}

Test(dist, sp_must_divide_world) {
    need_mpi();
    Result r = run(MPIRUN "-np 3 build/dist_selftest grid 2 2>&1");
    cr_assert_neq(r.rc, 0);
    cr_assert(strstr(r.out, "sp: 2 does not divide the number of ranks (3)"), "%s", r.out);
}

// A rank that fails ends the whole job within seconds, with its message,
// while the other ranks wait in a collective: never a hang.
Test(dist, failing_rank_ends_the_job, .timeout = 60) {
    need_mpi();
    Result r = run(MPIRUN "-np 3 build/dist_selftest abort 2>&1");
    cr_assert_neq(r.rc, 0, "the job exited 0:\n%s", r.out);
    cr_assert(strstr(r.out, "rank 1: error: dist_selftest: rank 1 gives up on purpose"), "%s", r.out);
    cr_assert(strstr(r.out, "passed the barrier") == NULL, "%s", r.out);
    cr_assert_lt(r.seconds, 20, "took %.1f s", r.seconds);
}

// The collective benchmark checks every element of every size it runs.
Test(dist, collectives_data_checked, .timeout = 120) {
    need_mpi();
    for (int np = 2; np <= 4; np += 2) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, MPIRUN "-np %d build/bench_collectives --max-bytes 1M 2>&1", np);
        Result r = run(cmd);
        cr_assert_eq(r.rc, 0, "np=%d:\n%s", np, r.out);
        cr_assert(strstr(r.out, "all data checked OK"), "np=%d:\n%s", np, r.out);
        cr_assert(strstr(r.out, "FAIL") == NULL, "np=%d:\n%s", np, r.out);
    }
    // Within the sequence-parallel groups of a 2 x 2 grid as well.
    Result r = run(MPIRUN "-np 4 build/bench_collectives --max-bytes 256K --sp 2 --group sp 2>&1");
    cr_assert_eq(r.rc, 0, "%s", r.out);
    cr_assert(strstr(r.out, "group sp of 2 ranks"), "%s", r.out);
}

// Distributed training equals one process (build/parallel_check states and
// checks the float tolerances: 1e-5 relative on gradients and parameters).
static void parallel_check(int np, int sp, int steps, const char *pattern) {
    char cmd[256], want[128];
    snprintf(cmd, sizeof cmd, MPIRUN "-np %d build/parallel_check %d %d %s 2>&1", np, sp, steps, pattern);
    Result r = run(cmd);
    cr_assert_eq(r.rc, 0, "%s:\n%s", cmd, r.out);
    snprintf(want, sizeof want, "parallel_check dp %d x sp %d (%s): OK", np / sp, sp, pattern);
    cr_assert(strstr(r.out, want), "%s:\n%s", cmd, r.out);
}

// 2 and 4 data-parallel ranks on slices of a batch: the loss, gradients and
// parameters of one process on the whole batch.
Test(dist, data_parallel_equals_one_process, .timeout = 120) {
    need_mpi();
    parallel_check(2, 1, 3, "local,lsh");
    parallel_check(4, 1, 3, "local,lsh");
}

// 2 and 4 sequence-parallel ranks, LSH and local layers, through the
// reversible backward (attention inputs exchanged in forward, recompute and
// backward).
Test(dist, sequence_parallel_equals_one_process, .timeout = 180) {
    need_mpi();
    const char *patterns[] = {"lsh", "local", "local,lsh"};
    for (int i = 0; i < 3; i++) {
        parallel_check(2, 2, 2, patterns[i]);
        parallel_check(4, 4, 2, patterns[i]);
    }
}

// A dp = 2 x sp = 2 grid trains 20 steps to the losses of one process.
Test(dist, dp2_sp2_trains_like_one_process, .timeout = 180) {
    need_mpi();
    parallel_check(4, 2, 20, "local,lsh");
}
