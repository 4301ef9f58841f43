// Everything between processes: the MPI bootstrap, the dp x sp process grid,
// and the collectives the model needs on host buffers. A build without MPI
// gets dist_single.c: one process, the same interface.
//
// Grid: world = dp * sp ranks; rank = dp_rank * sp + sp_rank, so the sp ranks
// of one data-parallel replica are consecutive (usually on one node).
#pragma once
#include <stddef.h>

typedef enum {
    DIST_WORLD = 0,  // every rank
    DIST_DP = 1,     // ranks holding the same shard of different replicas
    DIST_SP = 2,     // the sequence-parallel ranks of one replica
    DIST_NODE = 3,   // the ranks on this node (shared memory): they share its memory
    DIST_N_GROUPS = 4,
} DistGroup;

typedef struct {
    int rank, world;             // in MPI_COMM_WORLD
    int local_rank, local_size;  // on this node (shared-memory split): picks the GPU
    int dp, sp;                  // grid shape
    int dp_rank, sp_rank;        // position in the grid
    void *comm[DIST_N_GROUPS];   // MPI communicators by DistGroup (opaque: no MPI in headers)
    int with_mpi;                // 0: one process without MPI (no-MPI build, or started alone)
    struct DistDevice *device;   // collectives on device buffers (NCCL) for a GPU backend,
                                 // opened by dist_open_device_collectives; NULL: host buffers
} Dist;

// Start (MPI_Init when built with MPI) and build the grid for sp sequence-
// parallel ranks per replica. Returns 0, or -1 with a one-line message (e.g.
// world size not divisible by sp, or not the SLURM_NTASKS ranks SLURM
// started). From here on a process that exits without dist_finalize (an
// error on one rank) takes the whole job down with it (MPI_Abort), so no
// rank is left waiting in a collective.
int dist_init(Dist *d, int *argc, char ***argv, int sp, char *err, size_t errlen);
void dist_finalize(Dist *d);

// What the launcher says before MPI is up (dist_env.c). This process's rank
// from mpirun, PMI or SLURM (OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK,
// SLURM_PROCID), or -1 when started alone: errors found before dist_init are
// printed by rank 0 only.
int dist_env_rank(void);
// The number of ranks the launcher started (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
// SLURM_STEP_NUM_TASKS: set for the ranks of a job step, not for a whole
// allocation), or -1 when none says so: early checks of what a multi-rank
// run needs (dist_init gives the true world).
int dist_env_world(void);
// When SLURM_NTASKS is set, world must equal it: SLURM started that many
// tasks, and fewer in one MPI world means they did not join one job (srun
// without --mpi=pmix makes every task a world of one). 0, or -1 with a message.
int dist_check_slurm_tasks(int world, char *err, size_t errlen);

// End every rank of the job now, with the message on stderr (MPI_Abort).
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void dist_abort(const Dist *d, const char *msg);

// The watchdog (dist_mpi.c): from now on a rank that waits more than seconds
// in a host collective finds the silent ranks (those that do not answer) and
// ends the job with one line naming them (rank, pid, host). 0 = none.
// Collective: every rank calls it with the same value. No-op on one process.
void dist_set_watchdog(Dist *d, double seconds);

// In-place sum of a host float buffer over a group.
void dist_allreduce_sum(const Dist *d, DistGroup g, float *buf, size_t count);
// The same, started now and finished by dist_wait_reductions (MPI_Iallreduce;
// at most 1024 pending): the gradient buckets of data_parallel.c. buf must
// not be touched until then. Without MPI: nothing to do.
void dist_start_allreduce_sum(const Dist *d, DistGroup g, float *buf, size_t count);
void dist_wait_reductions(const Dist *d);
// The same in double: totals that float would round (loss sums, counts).
void dist_allreduce_sum_f64(const Dist *d, DistGroup g, double *buf, size_t count);
// The largest of every rank's value (an all-reduce max of one int): flags
// every rank must act on together, such as a stop signal one rank received.
int dist_max_int(const Dist *d, DistGroup g, int value);
// All-to-all over a group of n ranks: block j (count floats) of send goes to
// rank j, block i of recv comes from rank i. send and recv hold n * count.
void dist_alltoall(const Dist *d, DistGroup g, const float *send, float *recv, size_t count);
// All-to-all-v over a group of n ranks (the sequence-sharded LSH exchange):
// send holds n blocks back to back, block j (send_counts[j] floats) for rank
// j; recv receives block i (recv_counts[i] floats) from rank i, back to back.
// recv_counts must be what the senders send (dist_alltoall_counts).
void dist_alltoallv(const Dist *d, DistGroup g, const float *send, const size_t *send_counts, float *recv,
                    const size_t *recv_counts);
// recv_counts[i] = send_counts[j == me] of rank i: the counts an
// all-to-all-v needs before its data moves (host integers, MPI).
void dist_alltoall_counts(const Dist *d, DistGroup g, const size_t *send_counts, size_t *recv_counts);
// Halo exchange along the group: send (count floats) goes to group rank
// me + dir, recv comes from me - dir (dir = +1 or -1). cyclic: the ends wrap;
// otherwise the last rank in the direction sends nothing and the first
// receives nothing (recv left as it is).
void dist_shift(const Dist *d, DistGroup g, const float *send, float *recv, size_t count, int dir, int cyclic);
// Per element, over the group: before[i] = sum of in[i] of the lower ranks
// (exclusive scan), total[i] = sum over every rank (integers: histograms).
void dist_scan_sum_int(const Dist *d, DistGroup g, const int *in, int *before, int *total, size_t count);
// Broadcast bytes from root of the group.
void dist_bcast(const Dist *d, DistGroup g, void *buf, size_t bytes, int root);
void dist_barrier(const Dist *d, DistGroup g);
// Wall seconds this process has spent inside collectives (all-reduce,
// all-to-all, broadcast, barrier) since start: the communication share.
double dist_comm_seconds(void);
// Collectives outside this file (NCCL, dist_nccl.c) add their time here.
void dist_add_comm_seconds(double seconds);

// Size and rank within a group.
int dist_group_size(const Dist *d, DistGroup g);
int dist_group_rank(const Dist *d, DistGroup g);
