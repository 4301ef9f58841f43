// Collective benchmark in the spirit of NVIDIA's nccl-tests, for both paths
// of dist/: host buffers over MPI (default) or device buffers over NCCL
// (--nccl): all-reduce (sum) and all-to-all over message sizes, with
// algorithm and bus bandwidth and checked data.
//
//   mpirun -np N build/bench_collectives [--nccl] [--min-bytes B] [--max-bytes B] [--group world|dp|sp] [--sp S]
//
// --nccl needs one GPU per rank and a build with NCCL; without either it
// prints "skipped: ..." and exits 77 (a skip, not a pass).
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
#ifdef REFORMER_NCCL
#include "dist_nccl.h"
#endif

// Where the buffers live and which library moves them. Data are made and
// checked on the host; upload/download are outside the timed region.
typedef struct {
    const char *name;
    void *ctx;
    float *(*alloc)(void *ctx, size_t count);
    void (*release)(void *ctx, float *buf);
    void (*upload)(void *ctx, float *dst, const float *host, size_t count);
    void (*download)(void *ctx, float *host, const float *src, size_t count);
    void (*allreduce)(void *ctx, DistGroup g, float *buf, size_t count);
    void (*alltoall)(void *ctx, DistGroup g, const float *send, float *recv, size_t count);
} Path;

static float *host_alloc(void *ctx, size_t count) {
    float *p = malloc(count * sizeof(float));
    if (!p) dist_abort(ctx, "bench_collectives: out of memory");
    return p;
}
static void host_release(void *ctx, float *buf) { (void)ctx, free(buf); }
static void host_copy(void *ctx, float *dst, const float *src, size_t count) {
    (void)ctx;
    memcpy(dst, src, count * sizeof(float));
}
static void host_allreduce(void *ctx, DistGroup g, float *buf, size_t count) { dist_allreduce_sum(ctx, g, buf, count); }
static void host_alltoall(void *ctx, DistGroup g, const float *send, float *recv, size_t count) {
    dist_alltoall(ctx, g, send, recv, count);
}

static Path host_path(Dist *d) {
    return (Path){"host buffers (MPI)", d, host_alloc, host_release, host_copy, host_copy, host_allreduce,
                  host_alltoall};
}

#ifdef REFORMER_NCCL
// One communicator per benchmark run: the group is fixed by --group.
static float *dev_alloc(void *ctx, size_t count) { return dist_nccl_device_alloc(ctx, count); }
static void dev_release(void *ctx, float *buf) { dist_nccl_device_free(ctx, buf); }
static void dev_upload(void *ctx, float *dst, const float *host, size_t count) { dist_nccl_upload(ctx, dst, host, count); }
static void dev_download(void *ctx, float *host, const float *src, size_t count) {
    dist_nccl_download(ctx, host, src, count);
}
static void dev_allreduce(void *ctx, DistGroup g, float *buf, size_t count) {
    (void)g;
    dist_nccl_allreduce_sum(ctx, buf, count);
    dist_nccl_wait(ctx);  // timed per call: until it has ended
}
static void dev_alltoall(void *ctx, DistGroup g, const float *send, float *recv, size_t count) {
    (void)g;
    dist_nccl_alltoall(ctx, send, recv, count);
    dist_nccl_wait(ctx);
}
#endif

// The device path over group g, or exit 77 (every rank) when it cannot run here.
static Path device_path(Dist *d, DistGroup g) {
    char why[256];
#ifdef REFORMER_NCCL
    // Every rank must agree before any NCCL call: one rank without a GPU
    // would leave the others waiting in ncclCommInitRank.
    float missing = dist_nccl_device_count() == 0;
    dist_allreduce_sum(d, DIST_WORLD, &missing, 1);
    if (missing == 0) {
        DistNccl *n = dist_nccl_init(d, g, why, sizeof why);
        if (n)
            return (Path){"device buffers (NCCL)", n, dev_alloc, dev_release, dev_upload, dev_download,
                          dev_allreduce, dev_alltoall};
    }
    snprintf(why, sizeof why, "no GPU (%d of %d ranks see no CUDA device)", (int)missing, d->world);
#else
    (void)g;
    snprintf(why, sizeof why, "this build has no NCCL (it needs the CUDA toolkit and nccl.h + libnccl; see Makefile)");
#endif
    if (d->rank == 0) printf("bench_collectives --nccl: skipped: %s\n", why);
    dist_finalize(d);
    exit(77);
}

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
// host: staging buffer on the host; buf, send, recv: the path's buffers.
static int run_allreduce(const Dist *d, const Path *p, DistGroup g, size_t count, int iters, float *host, float *buf,
                         double *seconds) {
    int n = dist_group_size(d, g), r = dist_group_rank(d, g), bad = 0;
    double t = 0;
    for (size_t i = 0; i < count; i++) host[i] = (float)((r + 1) * (int)(1 + i % 5));
    for (int it = -2; it < iters; it++) {  // 2 untimed warm-up rounds
        p->upload(p->ctx, buf, host, count);
        dist_barrier(d, g);
        double t0 = now();
        p->allreduce(p->ctx, g, buf, count);
        if (it >= 0) t += now() - t0;
    }
    p->download(p->ctx, host, buf, count);
    for (size_t i = 0; i < count; i++)
        bad += host[i] != (float)(n * (n + 1) / 2 * (int)(1 + i % 5));
    *seconds = t / iters;
    return bad;
}

static int run_alltoall(const Dist *d, const Path *p, DistGroup g, size_t count, int iters, float *host, float *send,
                        float *recv, double *seconds) {
    int n = dist_group_size(d, g), r = dist_group_rank(d, g), bad = 0;
    double t = 0;
    for (int j = 0; j < n; j++)
        for (size_t i = 0; i < count; i++) host[(size_t)j * count + i] = (float)(1000 * r + j + (int)(i % 7));
    p->upload(p->ctx, send, host, (size_t)n * count);
    for (int it = -2; it < iters; it++) {
        dist_barrier(d, g);
        double t0 = now();
        p->alltoall(p->ctx, g, send, recv, count);
        if (it >= 0) t += now() - t0;
    }
    p->download(p->ctx, host, recv, (size_t)n * count);
    for (int j = 0; j < n; j++)
        for (size_t i = 0; i < count; i++) bad += host[(size_t)j * count + i] != (float)(1000 * j + r + (int)(i % 7));
    *seconds = t / iters;
    return bad;
}

int main(int argc, char **argv) {
    size_t min_bytes = 1024, max_bytes = (size_t)64 << 20;
    int sp = 1, nccl = 0;
    double watchdog = 0;
    DistGroup group = DIST_WORLD;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--nccl")) nccl = 1;
        else if (!strcmp(argv[i], "--min-bytes") && i + 1 < argc) min_bytes = parse_bytes(argv[++i]);
        else if (!strcmp(argv[i], "--max-bytes") && i + 1 < argc) max_bytes = parse_bytes(argv[++i]);
        else if (!strcmp(argv[i], "--sp") && i + 1 < argc) sp = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--watchdog") && i + 1 < argc) watchdog = atof(argv[++i]);
        else if (!strcmp(argv[i], "--group") && i + 1 < argc) {
            const char *g = argv[++i];
            group = !strcmp(g, "dp") ? DIST_DP : !strcmp(g, "sp") ? DIST_SP : DIST_WORLD;
        } else {
            fprintf(stderr, "usage: %s [--nccl] [--min-bytes B] [--max-bytes B] [--sp S] [--group world|dp|sp] [--watchdog S]\n",
                    argv[0]);
            return 2;
        }
    }
    Dist d;
    char err[256];
    if (dist_init(&d, &argc, &argv, sp, err, sizeof err)) {
        fprintf(stderr, "bench_collectives: %s\n", err);
        return 2;
    }
    dist_set_watchdog(&d, watchdog);  // host collectives: nonblocking and watched when > 0
    int n = dist_group_size(&d, group);
    Path path = nccl ? device_path(&d, group) : host_path(&d);
    if (d.rank == 0) {
        printf("# bench_collectives: %d ranks (dp %d x sp %d), group %s of %d ranks, %s, watchdog %g s\n", d.world, d.dp,
               d.sp, group == DIST_DP ? "dp" : group == DIST_SP ? "sp" : "world", n, path.name, watchdog);
        printf("#%11s %12s %10s %11s %11s %11s %11s %11s %11s\n", "bytes", "floats", "", "allreduce", "algbw",
               "busbw", "alltoall", "algbw", "busbw");
        printf("#%11s %12s %10s %11s %11s %11s %11s %11s %11s\n", "", "", "check", "us", "GB/s", "GB/s", "us", "GB/s",
               "GB/s");
    }
    size_t max_count = max_bytes / sizeof(float);
    float *host = host_alloc(&d, max_count), *a = path.alloc(path.ctx, max_count),
          *s = path.alloc(path.ctx, max_count), *rv = path.alloc(path.ctx, max_count);
    int failures = 0;
    for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
        size_t count = bytes / sizeof(float);
        count -= count % (size_t)n;  // all-to-all blocks divide evenly
        if (count == 0) continue;
        int iters = (int)fmax(3, fmin(50, (double)(64 << 20) / (double)bytes));
        double t_ar, t_a2a;
        int bad = run_allreduce(&d, &path, group, count, iters, host, a, &t_ar);
        bad += run_alltoall(&d, &path, group, count / (size_t)n, iters, host, s, rv, &t_a2a);
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
    path.release(path.ctx, a);
    path.release(path.ctx, s);
    path.release(path.ctx, rv);
#ifdef REFORMER_NCCL
    if (nccl) dist_nccl_free(path.ctx);
#endif
    free(host);
    dist_finalize(&d);
    return failures ? 1 : 0;
}
