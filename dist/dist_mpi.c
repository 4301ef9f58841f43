// dist.h over MPI (host buffers). Every MPI call is checked: errors return
// (MPI_ERRORS_RETURN) and are reported with file, line and MPI's message,
// then the whole job is aborted, so one failing rank never leaves others
// hanging in a collective.
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"

static void mpi_fail(int rc, const char *what, const char *file, int line) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    int rank = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "reformer: rank %d: error: %s:%d: %s failed: %s (hint: check the network/fabric and that every rank runs the same build)\n",
            rank, file, line, what, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}
#define mpi_check(call)                                                 \
    do {                                                                \
        int rc_ = (call);                                               \
        if (rc_ != MPI_SUCCESS) mpi_fail(rc_, #call, __FILE__, __LINE__); \
    } while (0)

static double comm_seconds;
double dist_comm_seconds(void) { return comm_seconds; }
void dist_add_comm_seconds(double seconds) { comm_seconds += seconds; }
#define TIMED_COMM(...)                          \
    do {                                         \
        double t0_ = MPI_Wtime();                \
        __VA_ARGS__;                             \
        comm_seconds += MPI_Wtime() - t0_;       \
    } while (0)

static MPI_Comm C(const Dist *d, DistGroup g) { return *(MPI_Comm *)d->comm[g]; }

// One collective: the blocking call without a watchdog (MPI's tuned
// algorithms, unchanged), else its nonblocking form waited on by
// wait_collective.
#define COLLECTIVE(what, blocking, nonblocking)          \
    do {                                                 \
        if (watchdog_seconds <= 0) {                     \
            mpi_check(blocking);                         \
        } else {                                         \
            MPI_Request rq;                              \
            mpi_check(nonblocking);                      \
            wait_collective(&rq, what);                  \
        }                                                \
    } while (0)

// Largest element count per MPI call (counts are int).
#define MAX_CHUNK ((size_t)1 << 30)

// ------------------------------------------------------------------ watchdog
//
// A rank that stops (SIGSTOP, a hung filesystem, a wedged driver) used to
// leave the others spinning in their next collective forever. With a
// watchdog (dist_set_watchdog, config watchdog_s) every collective is started
// nonblocking and waited on in a loop that also answers the watchdog's pings
// on a communicator of its own. A rank that has waited watchdog_s seconds
// pings every other rank and listens for a grace period: every rank that is
// itself waiting in a collective answers at once (with how many collectives
// it has entered), a stopped one cannot. The lowest rank that answered names
// the silent ranks in one line and aborts the job; the others abort after a
// longer delay should that rank be gone too. Everything stays on the
// calling thread (no MPI_THREAD_MULTIPLE). Device (NCCL) collectives are not
// covered.
enum { TAG_PING = 7101, TAG_PONG = 7102 };
typedef struct {
    int pid;
    char host[64];
} RankId;
static double watchdog_seconds;  // 0: blocking collectives, no watchdog
static MPI_Comm watch_comm = MPI_COMM_NULL;
static int watch_rank, watch_world;
static RankId *rank_ids;
static long collectives_entered;  // on this rank: the PONG payload

void dist_set_watchdog(Dist *d, double seconds) {
    if (!d->with_mpi || d->world < 2) return;
    if (seconds > 0 && watch_comm == MPI_COMM_NULL) {
        mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &watch_comm));
        mpi_check(MPI_Comm_set_errhandler(watch_comm, MPI_ERRORS_RETURN));
        watch_rank = d->rank;
        watch_world = d->world;
        rank_ids = calloc((size_t)d->world, sizeof *rank_ids);
        RankId me = {.pid = (int)getpid()};
        if (gethostname(me.host, sizeof me.host - 1) != 0) snprintf(me.host, sizeof me.host, "?");
        mpi_check(MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, rank_ids, (int)sizeof me, MPI_BYTE, watch_comm));
    }
    watchdog_seconds = watch_comm != MPI_COMM_NULL ? seconds : 0;
}

static void answer_pings(void) {
    static long pong;  // the buffer of sends never waited on
    for (;;) {
        int flag = 0;
        MPI_Status st;
        mpi_check(MPI_Iprobe(MPI_ANY_SOURCE, TAG_PING, watch_comm, &flag, &st));
        if (!flag) return;
        long ping;
        mpi_check(MPI_Recv(&ping, 1, MPI_LONG, st.MPI_SOURCE, TAG_PING, watch_comm, MPI_STATUS_IGNORE));
        pong = collectives_entered;
        MPI_Request rq;
        mpi_check(MPI_Isend(&pong, 1, MPI_LONG, st.MPI_SOURCE, TAG_PONG, watch_comm, &rq));
        mpi_check(MPI_Request_free(&rq));
    }
}

// "rank 1 (pid 42 on node7)" or "ranks 1 (...), 3 (...)" of the ranks with silent[r].
static void describe_ranks(char *buf, size_t cap, const char *silent, int n) {
    int len = snprintf(buf, cap, "rank%s", n > 1 ? "s" : "");
    for (int r = 0, k = 0; r < watch_world && len > 0 && (size_t)len < cap; r++)
        if (silent[r])
            len += snprintf(buf + len, cap - (size_t)len, "%s %d (pid %d on %s)", k++ ? "," : "", r, rank_ids[r].pid,
                            rank_ids[r].host);
}

__attribute__((noreturn)) static void watchdog_fire(const char *what, double waited) {
    char *heard = calloc((size_t)watch_world, 1);
    long *entered = calloc((size_t)watch_world, sizeof *entered);
    if (!heard || !entered) MPI_Abort(MPI_COMM_WORLD, 1);
    heard[watch_rank] = 1;
    entered[watch_rank] = collectives_entered;
    static long ping = 1;
    for (int r = 0; r < watch_world; r++) {
        if (r == watch_rank) continue;
        MPI_Request rq;
        mpi_check(MPI_Isend(&ping, 1, MPI_LONG, r, TAG_PING, watch_comm, &rq));
        mpi_check(MPI_Request_free(&rq));
    }
    const double grace = watchdog_seconds / 10 < 2 ? 2 : watchdog_seconds / 10 > 30 ? 30 : watchdog_seconds / 10;
    for (double g0 = MPI_Wtime(); MPI_Wtime() - g0 < grace;) {
        answer_pings();
        int flag = 0;
        MPI_Status st;
        mpi_check(MPI_Iprobe(MPI_ANY_SOURCE, TAG_PONG, watch_comm, &flag, &st));
        if (!flag) {
            usleep(1000);
            continue;
        }
        mpi_check(MPI_Recv(&entered[st.MPI_SOURCE], 1, MPI_LONG, st.MPI_SOURCE, TAG_PONG, watch_comm, MPI_STATUS_IGNORE));
        heard[st.MPI_SOURCE] = 1;
    }
    int reporter = 0, n_silent = 0;
    while (!heard[reporter]) reporter++;
    for (int r = 0; r < watch_world; r++) n_silent += !heard[r];
    char msg[2048], who[1024];
    if (n_silent) {
        for (int r = 0; r < watch_world; r++) heard[r] = !heard[r];
        describe_ranks(who, sizeof who, heard, n_silent);
        snprintf(msg, sizeof msg,
                 "watchdog: %s %s silent: rank %d waited %.0f s in %s for %s and got no answer in %.0f s; stopping "
                 "the job (watchdog_s=%g; a rank stopped, or hung in the file system or a driver)",
                 who, n_silent > 1 ? "are" : "is", watch_rank, waited, what, n_silent > 1 ? "them" : "it", grace,
                 watchdog_seconds);
    } else {
        int len = snprintf(msg, sizeof msg,
                           "watchdog: %s has not completed for %.0f s although every rank answers: the ranks wait in "
                           "different collectives (entered so far:",
                           what, waited);
        for (int r = 0; r < watch_world && r < 16 && len > 0 && (size_t)len < sizeof msg; r++)
            len += snprintf(msg + len, sizeof msg - (size_t)len, " rank %d %ld", r, entered[r]);
        snprintf(msg + len, sizeof msg - (size_t)len, "); stopping the job (watchdog_s=%g)", watchdog_seconds);
    }
    if (watch_rank != reporter) {
        // The reporter ends the job; end it from here if it cannot.
        for (double t0 = MPI_Wtime(); MPI_Wtime() - t0 < grace + 10;) {
            answer_pings();
            usleep(10000);
        }
    }
    fflush(stdout);
    if (watch_rank == reporter) fprintf(stderr, "reformer: error: %s\n", msg);
    else fprintf(stderr, "reformer: rank %d: error: %s\n", watch_rank, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

// Test hook: REFORMER_TEST_STOP_RANK=<r> and REFORMER_TEST_STOP_COLLECTIVE=<n>
// make rank r SIGSTOP itself on entering its n-th collective, as a rank
// whose node froze would.
static void maybe_stop_for_test(void) {
    static int rank = -2, at;
    if (rank == -2) {
        const char *r = getenv("REFORMER_TEST_STOP_RANK"), *n = getenv("REFORMER_TEST_STOP_COLLECTIVE");
        rank = r && n ? atoi(r) : -1;
        at = n ? atoi(n) : 0;
    }
    if (rank == watch_rank && collectives_entered == at) raise(SIGSTOP);
}

// Complete a nonblocking collective: with the watchdog, in a loop that
// answers pings and fires after watchdog_seconds; else a plain MPI_Wait.
static void wait_collective(MPI_Request *req, const char *what) {
    if (watchdog_seconds <= 0) {
        mpi_check(MPI_Wait(req, MPI_STATUS_IGNORE));
        return;
    }
    collectives_entered++;
    maybe_stop_for_test();
    double t0 = MPI_Wtime();
    for (unsigned spin = 1;; spin++) {
        int done = 0;
        mpi_check(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done) return;
        if (spin % 256 == 0) {
            answer_pings();
            double waited = MPI_Wtime() - t0;
            if (waited > watchdog_seconds) watchdog_fire(what, waited);
        }
    }
}

// atexit: a rank that leaves without dist_finalize (an error exit on this
// rank alone) must not leave the others waiting in a collective forever.
static void abort_job_if_exiting_early(void) {
    int initialized = 0, finalized = 0, world = 1;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized) return;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world > 1) MPI_Abort(MPI_COMM_WORLD, 1);
}

int dist_init(Dist *d, int *argc, char ***argv, int sp, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    int initialized = 0;
    MPI_Initialized(&initialized);
    // Started alone (no launcher in the environment): one process without
    // MPI, as dist_single.c. A singleton MPI_Init would start Open MPI's
    // runtime daemon, 0.35 s per run, for a world of one.
    if (!initialized && dist_env_rank() < 0) {
        d->world = d->local_size = d->dp = d->sp = 1;
        if (dist_check_slurm_tasks(1, err, errlen)) return -1;
        if (sp != 1) {
            snprintf(err, errlen, "sp: %d does not divide the number of ranks (1); start a multiple of %d ranks "
                     "(mpirun -np %d, or srun), or run in this one process with --set sp=1 (sp is not a shape key: "
                     "a checkpoint of sp=%d resumes under sp=1 and continues its run)", sp, sp, sp, sp);
            return -1;
        }
        return 0;
    }
    if (!initialized) {
        mpi_check(MPI_Init(argc, argv));
        atexit(abort_job_if_exiting_early);
    }
    mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &d->world));
    d->with_mpi = 1;
    if (dist_check_slurm_tasks(d->world, err, errlen)) return -1;
    if (sp < 1 || d->world % sp) {
        snprintf(err, errlen, "sp: %d does not divide the number of ranks (%d); start a multiple of %d ranks, or "
                 "set sp to a divisor of %d (--set sp=1 works on any number; sp is not a shape key: a checkpoint "
                 "resumes under another sp and continues its run)", sp, d->world, sp, d->world);
        return -1;
    }
    d->sp = sp;
    d->dp = d->world / sp;
    d->dp_rank = d->rank / sp;
    d->sp_rank = d->rank % sp;
    for (int g = 0; g < DIST_N_GROUPS; g++) d->comm[g] = calloc(1, sizeof(MPI_Comm));
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, (MPI_Comm *)d->comm[DIST_WORLD]));
    mpi_check(MPI_Comm_split(MPI_COMM_WORLD, d->sp_rank, d->dp_rank, (MPI_Comm *)d->comm[DIST_DP]));
    mpi_check(MPI_Comm_split(MPI_COMM_WORLD, d->dp_rank, d->sp_rank, (MPI_Comm *)d->comm[DIST_SP]));
    MPI_Comm *local = (MPI_Comm *)d->comm[DIST_NODE];
    mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, local));
    mpi_check(MPI_Comm_rank(*local, &d->local_rank));
    mpi_check(MPI_Comm_size(*local, &d->local_size));
    for (int g = 0; g < DIST_N_GROUPS; g++) mpi_check(MPI_Comm_set_errhandler(C(d, (DistGroup)g), MPI_ERRORS_RETURN));
    return 0;
}

void dist_finalize(Dist *d) {
    if (!d->with_mpi) {
        memset(d, 0, sizeof *d);
        return;
    }
    for (int g = 0; g < DIST_N_GROUPS; g++)
        if (d->comm[g]) {
            MPI_Comm_free((MPI_Comm *)d->comm[g]);
            free(d->comm[g]);
        }
    MPI_Finalize();
    memset(d, 0, sizeof *d);
}

void dist_abort(const Dist *d, const char *msg) {
    fprintf(stderr, "reformer: rank %d: error: %s\n", d ? d->rank : -1, msg);
    fflush(stderr);
    if (d && d->with_mpi) MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

// Without MPI (started alone) every group is this one process: reductions
// and broadcasts leave the data as it is, all-to-all copies.
void dist_allreduce_sum(const Dist *d, DistGroup g, float *buf, size_t count) {
    if (!d->with_mpi) return;
    for (size_t off = 0; off < count; off += MAX_CHUNK) {
        int n = (int)(count - off < MAX_CHUNK ? count - off : MAX_CHUNK);
        TIMED_COMM(COLLECTIVE("an all-reduce", MPI_Allreduce(MPI_IN_PLACE, buf + off, n, MPI_FLOAT, MPI_SUM, C(d, g)),
                              MPI_Iallreduce(MPI_IN_PLACE, buf + off, n, MPI_FLOAT, MPI_SUM, C(d, g), &rq)));
    }
}

// Pending nonblocking sums (dist_start_allreduce_sum), waited for in order.
#define MAX_PENDING 1024
static MPI_Request pending[MAX_PENDING];
static int n_pending;

void dist_start_allreduce_sum(const Dist *d, DistGroup g, float *buf, size_t count) {
    if (!d->with_mpi) return;
    for (size_t off = 0; off < count; off += MAX_CHUNK) {
        int n = (int)(count - off < MAX_CHUNK ? count - off : MAX_CHUNK);
        if (n_pending == MAX_PENDING) dist_abort(d, "bug: more than 1024 pending all-reduces (dist_wait_reductions)");
        TIMED_COMM(mpi_check(MPI_Iallreduce(MPI_IN_PLACE, buf + off, n, MPI_FLOAT, MPI_SUM, C(d, g), &pending[n_pending])));
        n_pending++;
    }
}

void dist_wait_reductions(const Dist *d) {
    (void)d;
    for (int i = 0; i < n_pending; i++) TIMED_COMM(wait_collective(&pending[i], "a gradient all-reduce"));
    n_pending = 0;
}

void dist_allreduce_sum_f64(const Dist *d, DistGroup g, double *buf, size_t count) {
    if (!d->with_mpi) return;
    for (size_t off = 0; off < count; off += MAX_CHUNK) {
        int n = (int)(count - off < MAX_CHUNK ? count - off : MAX_CHUNK);
        TIMED_COMM(COLLECTIVE("an all-reduce", MPI_Allreduce(MPI_IN_PLACE, buf + off, n, MPI_DOUBLE, MPI_SUM, C(d, g)),
                              MPI_Iallreduce(MPI_IN_PLACE, buf + off, n, MPI_DOUBLE, MPI_SUM, C(d, g), &rq)));
    }
}

int dist_max_int(const Dist *d, DistGroup g, int value) {
    if (!d->with_mpi) return value;
    TIMED_COMM(mpi_check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MAX, C(d, g))));
    return value;
}

void dist_alltoall(const Dist *d, DistGroup g, const float *send, float *recv, size_t count) {
    if (!d->with_mpi) {
        memmove(recv, send, count * sizeof(float));
        return;
    }
    if (count > (size_t)INT_MAX) dist_abort(d, "dist_alltoall: block larger than INT_MAX floats");
    TIMED_COMM(COLLECTIVE("an all-to-all", MPI_Alltoall(send, (int)count, MPI_FLOAT, recv, (int)count, MPI_FLOAT, C(d, g)),
                          MPI_Ialltoall(send, (int)count, MPI_FLOAT, recv, (int)count, MPI_FLOAT, C(d, g), &rq)));
}

// MPI counts and displacements are int: a larger exchange ends the job with
// a hint rather than wrapping around. Static, so the step allocates nothing
// (groups of up to 4096 ranks: config caps sp there).
#define MAX_GROUP 4096
static int a2av_counts[2][MAX_GROUP], a2av_displs[2][MAX_GROUP];

static void int_counts(const Dist *d, const size_t *counts, int n, int *out, int *displs) {
    size_t at = 0;
    for (int j = 0; j < n; j++) {
        if (counts[j] > (size_t)INT_MAX || at > (size_t)INT_MAX)
            dist_abort(d, "dist_alltoallv: more than INT_MAX floats in one exchange (hint: use more sp ranks or a "
                          "shorter seq_len per rank)");
        out[j] = (int)counts[j];
        displs[j] = (int)at;
        at += counts[j];
    }
}

void dist_alltoallv(const Dist *d, DistGroup g, const float *send, const size_t *send_counts, float *recv,
                    const size_t *recv_counts) {
    if (!d->with_mpi) {
        memmove(recv, send, send_counts[0] * sizeof(float));
        return;
    }
    int n = dist_group_size(d, g);
    if (n > MAX_GROUP) dist_abort(d, "dist_alltoallv: a group of more than 4096 ranks");
    int_counts(d, send_counts, n, a2av_counts[0], a2av_displs[0]);
    int_counts(d, recv_counts, n, a2av_counts[1], a2av_displs[1]);
    TIMED_COMM(mpi_check(MPI_Alltoallv(send, a2av_counts[0], a2av_displs[0], MPI_FLOAT, recv, a2av_counts[1],
                                       a2av_displs[1], MPI_FLOAT, C(d, g))));
}

void dist_alltoall_counts(const Dist *d, DistGroup g, const size_t *send_counts, size_t *recv_counts) {
    if (!d->with_mpi) {
        recv_counts[0] = send_counts[0];
        return;
    }
    unsigned long long *s = (unsigned long long *)send_counts, *r = (unsigned long long *)recv_counts;
    _Static_assert(sizeof(size_t) == sizeof(unsigned long long), "size_t is 64 bits");
    TIMED_COMM(mpi_check(MPI_Alltoall(s, 1, MPI_UNSIGNED_LONG_LONG, r, 1, MPI_UNSIGNED_LONG_LONG, C(d, g))));
}

void dist_shift(const Dist *d, DistGroup g, const float *send, float *recv, size_t count, int dir, int cyclic) {
    int n = dist_group_size(d, g), me = dist_group_rank(d, g);
    int to = me + dir, from = me - dir;
    if (cyclic) to = (to + n) % n, from = (from + n) % n;
    if (!d->with_mpi || n == 1) {
        if (cyclic) memmove(recv, send, count * sizeof(float));
        return;
    }
    if (count > (size_t)INT_MAX) dist_abort(d, "dist_shift: block larger than INT_MAX floats");
    int dst = to >= 0 && to < n ? to : MPI_PROC_NULL, src = from >= 0 && from < n ? from : MPI_PROC_NULL;
    TIMED_COMM(mpi_check(MPI_Sendrecv(send, (int)count, MPI_FLOAT, dst, 17, recv, (int)count, MPI_FLOAT, src, 17,
                                      C(d, g), MPI_STATUS_IGNORE)));
}

void dist_scan_sum_int(const Dist *d, DistGroup g, const int *in, int *before, int *total, size_t count) {
    if (!d->with_mpi) {
        memset(before, 0, count * sizeof(int));
        memcpy(total, in, count * sizeof(int));
        return;
    }
    if (count > (size_t)INT_MAX) dist_abort(d, "dist_scan_sum_int: more than INT_MAX counts");
    TIMED_COMM(mpi_check(MPI_Exscan(in, before, (int)count, MPI_INT, MPI_SUM, C(d, g))));
    // MPI_Exscan leaves rank 0's result undefined.
    if (dist_group_rank(d, g) == 0) memset(before, 0, count * sizeof(int));
    TIMED_COMM(mpi_check(MPI_Allreduce(in, total, (int)count, MPI_INT, MPI_SUM, C(d, g))));
}

void dist_bcast(const Dist *d, DistGroup g, void *buf, size_t bytes, int root) {
    if (!d->with_mpi) return;
    for (size_t off = 0; off < bytes; off += MAX_CHUNK) {
        int n = (int)(bytes - off < MAX_CHUNK ? bytes - off : MAX_CHUNK);
        TIMED_COMM(COLLECTIVE("a broadcast", MPI_Bcast((char *)buf + off, n, MPI_BYTE, root, C(d, g)),
                              MPI_Ibcast((char *)buf + off, n, MPI_BYTE, root, C(d, g), &rq)));
    }
}

void dist_barrier(const Dist *d, DistGroup g) {
    if (d->with_mpi) TIMED_COMM(COLLECTIVE("a barrier", MPI_Barrier(C(d, g)), MPI_Ibarrier(C(d, g), &rq)));
}

int dist_group_size(const Dist *d, DistGroup g) {
    if (!d->with_mpi) return 1;
    int n;
    mpi_check(MPI_Comm_size(C(d, g), &n));
    return n;
}

int dist_group_rank(const Dist *d, DistGroup g) {
    if (!d->with_mpi) return 0;
    int r;
    mpi_check(MPI_Comm_rank(C(d, g), &r));
    return r;
}
