// Collective benchmark in the spirit of NVIDIA's nccl-tests, for the host
// (MPI) path of dist/: all-reduce (sum) and all-to-all over message sizes,
// with algorithm and bus bandwidth and checked data.
//
//   mpirun -np N build/bench_collectives [--min-bytes B] [--max-bytes B] [--group world|dp|sp] [--sp S]
//
// algbw = bytes / time. busbw normalises by the traffic a ring-optimal
// algorithm needs, so it is comparable across rank counts: all-reduce
// busbw = algbw * 2(n-1)/n, all-to-all busbw = algbw * (n-1)/n.
// Data are small integers, exact in float, so every element is checked
// exactly; any mismatch prints FAIL and the exit code is 1.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t parse_bytes(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (*end == 'K' || *end == 'k') v *= 1024;
    else if (*end == 'M' || *end == 'm') v *= 1024 * 1024;
    else if (*end == 'G' || *end == 'g') v *= 1024.0 * 1024 * 1024;
    return (size_t)v;
}

// Fills for rank r: allreduce element i is (r + 1) * (1 + i % 5), so the sum
// over n ranks is n(n+1)/2 * (1 + i % 5). All-to-all element i of the block
// for rank j is 1000 r + j + i % 7, received by j from r.
static int run_allreduce(const Dist *d, DistGroup g, size_t count, int iters, float *buf, double *seconds) {
    int n = dist_group_size(d, g), r = dist_group_rank(d, g), bad = 0;
    double t = 0;
    for (int it = -2; it < iters; it++) {  // 2 untimed warm-up rounds
        for (size_t i = 0; i < count; i++) buf[i] = (float)((r + 1) * (int)(1 + i % 5));
        dist_barrier(d, g);
        double t0 = now();
        dist_allreduce_sum(d, g, buf, count);
        if (it >= 0) t += now() - t0;
    }
    for (size_t i = 0; i < count; i++)
        bad += buf[i] != (float)(n * (n + 1) / 2 * (int)(1 + i % 5));
    *seconds = t / iters;
    return bad;
}

static int run_alltoall(const Dist *d, DistGroup g, size_t count, int iters, float *send, float *recv, double *seconds) {
    int n = dist_group_size(d, g), r = dist_group_rank(d, g), bad = 0;
    double t = 0;
    for (int j = 0; j < n; j++)
        for (size_t i = 0; i < count; i++) send[(size_t)j * count + i] = (float)(1000 * r + j + (int)(i % 7));
    for (int it = -2; it < iters; it++) {
        dist_barrier(d, g);
        double t0 = now();
        dist_alltoall(d, g, send, recv, count);
        if (it >= 0) t += now() - t0;
    }
    for (int j = 0; j < n; j++)
        for (size_t i = 0; i < count; i++) bad += recv[(size_t)j * count + i] != (float)(1000 * j + r + (int)(i % 7));
    *seconds = t / iters;
    return bad;
}

int main(int argc, char **argv) {
    size_t min_bytes = 1024, max_bytes = (size_t)64 << 20;
    int sp = 1;
    DistGroup group = DIST_WORLD;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--min-bytes") && i + 1 < argc) min_bytes = parse_bytes(argv[++i]);
        else if (!strcmp(argv[i], "--max-bytes") && i + 1 < argc) max_bytes = parse_bytes(argv[++i]);
        else if (!strcmp(argv[i], "--sp") && i + 1 < argc) sp = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--group") && i + 1 < argc) {
            const char *g = argv[++i];
            group = !strcmp(g, "dp") ? DIST_DP : !strcmp(g, "sp") ? DIST_SP : DIST_WORLD;
        } else {
            fprintf(stderr, "usage: %s [--min-bytes B] [--max-bytes B] [--sp S] [--group world|dp|sp]\n", argv[0]);
            return 2;
        }
    }
    Dist d;
    char err[256];
    if (dist_init(&d, &argc, &argv, sp, err, sizeof err)) {
        fprintf(stderr, "bench_collectives: %s\n", err);
        return 2;
    }
    int n = dist_group_size(&d, group);
    if (d.rank == 0) {
        printf("# bench_collectives: %d ranks (dp %d x sp %d), group %s of %d ranks, host buffers (MPI)\n", d.world, d.dp,
               d.sp, group == DIST_DP ? "dp" : group == DIST_SP ? "sp" : "world", n);
        printf("#%11s %12s %10s %11s %11s %11s %11s %11s %11s\n", "bytes", "floats", "", "allreduce", "algbw",
               "busbw", "alltoall", "algbw", "busbw");
        printf("#%11s %12s %10s %11s %11s %11s %11s %11s %11s\n", "", "", "check", "us", "GB/s", "GB/s", "us", "GB/s",
               "GB/s");
    }
    size_t max_count = max_bytes / sizeof(float);
    float *a = malloc(max_count * sizeof(float)), *s = malloc(max_count * sizeof(float)),
          *rv = malloc(max_count * sizeof(float));
    if (!a || !s || !rv) dist_abort(&d, "bench_collectives: out of memory");
    int failures = 0;
    for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
        size_t count = bytes / sizeof(float);
        count -= count % (size_t)n;  // all-to-all blocks divide evenly
        if (count == 0) continue;
        int iters = (int)fmax(3, fmin(50, (double)(64 << 20) / (double)bytes));
        double t_ar, t_a2a;
        int bad = run_allreduce(&d, group, count, iters, a, &t_ar);
        bad += run_alltoall(&d, group, count / (size_t)n, iters, s, rv, &t_a2a);
        // Every rank's verdict counts: sum the mismatches over the group.
        float badf = (float)bad;
        dist_allreduce_sum(&d, group, &badf, 1);
        failures += badf > 0;
        double gb = (double)count * sizeof(float) / 1e9;
        if (d.rank == 0)
            printf(" %11zu %12zu %10s %11.1f %11.3f %11.3f %11.1f %11.3f %11.3f\n", count * sizeof(float), count,
                   badf > 0 ? "FAIL" : "OK", t_ar * 1e6, gb / t_ar, gb / t_ar * 2.0 * (n - 1) / n, t_a2a * 1e6,
                   gb / t_a2a, gb / t_a2a * (double)(n - 1) / n);
    }
    if (d.rank == 0) printf("# %s\n", failures ? "FAILED: data mismatch" : "all data checked OK");
    free(a);
    free(s);
    free(rv);
    dist_finalize(&d);
    return failures ? 1 : 0;
}
