// reformer: the command-line program.
//
//   reformer train [--config FILE] [--set key=value ...] [--resume DIR]
//   reformer eval --ckpt FILE [--data PATH] [--split validation|test]
//   reformer sample --ckpt FILE --prompt TEXT --len N [--temperature T] [--top-k K] [--seed S]
//   reformer bench [--config FILE] [--set key=value ...] [--steps N] [--json]
//   reformer export-hf --ckpt FILE --out DIR / import-hf --model DIR --out FILE
//   reformer plan [--config FILE] [--set key=value ...] [--fit BYTES]
//   reformer help [config [--markdown]]
//
// One file per command (train.c, bench.c, ...); cli.c parses arguments.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

// libgomp reads its wait policy before main runs. Its default spins idle
// threads for a while after each parallel region, which is fast on an idle
// machine and ruinous when ranks or jobs share cores (mpirun --oversubscribe,
// SLURM steps, CI). Unless the user chose a policy, re-run with a passive one.
// This happens before MPI_Init (train calls dist_init later): under mpirun the
// re-executed image keeps the launcher's environment and joins the job as
// any rank does (checked: ranks run as /proc/self/exe with PASSIVE set).
static void ensure_passive_openmp_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
}

int main(int argc, char **argv) {
    ensure_passive_openmp_wait(argv);
    if (argc >= 3 && !strcmp(argv[1], "help") && !strcmp(argv[2], "config")) return cmd_help_config(argc - 3, argv + 3);
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 2, argv + 2);
    if (!strcmp(argv[1], "sample")) return cmd_sample(argc - 2, argv + 2);
    if (!strcmp(argv[1], "export-hf")) return cmd_export_hf(argc - 2, argv + 2);
    if (!strcmp(argv[1], "import-hf")) return cmd_import_hf(argc - 2, argv + 2);
    if (!strcmp(argv[1], "plan")) return cmd_plan(argc - 2, argv + 2);
    usage_error("unknown command '%s' (commands: train, eval, sample, bench, plan, export-hf, import-hf, help)", argv[1]);
}
