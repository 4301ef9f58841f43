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

int dist_env_rank(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID", NULL};
    for (int i = 0; vars[i]; i++) {
        long r = env_count(vars[i]);
        if (r >= 0) return (int)r;
    }
    return -1;
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
