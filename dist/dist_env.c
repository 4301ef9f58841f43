// The launcher's environment, read before MPI is up (dist.h).
#include <stdio.h>
#include <stdlib.h>

#include "dist.h"

// A non-negative integer environment variable, or -1.
static long env_count(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return -1;
    char *end;
    long v = strtol(s, &end, 10);
    return *end || v < 0 ? -1 : v;
}

// The first of vars that is set to a count, or -1.
static int first_count(const char *const *vars) {
    for (int i = 0; vars[i]; i++) {
        long v = env_count(vars[i]);
        if (v >= 0 && v < 1 << 30) return (int)v;
    }
    return -1;
}

int dist_env_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID", NULL};
    return first_count(vars);
}

int dist_env_world(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", NULL};
    return first_count(vars);
}

int dist_check_slurm_tasks(int world, char *err, size_t errlen) {
    long tasks = env_count("SLURM_NTASKS");
    if (tasks < 0 || tasks == world) return 0;
    snprintf(err, errlen,
             "SLURM_NTASKS=%ld but MPI started %d rank(s) in this job: start every task with `srun --mpi=pmix` "
             "(or mpirun) so that they join one job, or unset SLURM_NTASKS outside SLURM",
             tasks, world);
    return -1;
}
