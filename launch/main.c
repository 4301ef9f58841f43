// reformer: the command-line program.
//
//   reformer train [--config FILE] [--set key=value ...] [--resume DIR]
//   reformer eval --ckpt FILE [--data PATH] [--split validation|test]
//   reformer sample --ckpt FILE --prompt TEXT --len N [--temperature T] [--top-k K] [--seed S]
//   reformer bench [--config FILE] [--set key=value ...] [--steps N] [--json]
//   reformer export-hf --ckpt FILE --out DIR / import-hf --model DIR --out FILE
//   reformer plan [--config FILE] [--set key=value ...] [--fit BYTES]
//   reformer tokenize --data PATH --vocab N --out FILE.model [--type unigram|bpe]
//   reformer help [COMMAND | config [--markdown]]; reformer COMMAND --help
//
// One file per command (train.c, bench.c, ...); cli.c parses arguments;
// help.c holds the table of commands that main dispatches through.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

// libgomp reads its wait policy before main runs. Its default spins idle
// threads for ~3 ms after each parallel region, which is fast on an idle
// machine and ruinous when ranks or jobs share cores (mpirun --oversubscribe,
// SLURM steps, CI). Unless the user chose a policy or a spin count, re-run
// with a passive policy that still spins 1,000 times (GOMP_SPINCOUNT, about
// 10 us; libgomp's own count for threads that outnumber the cores) before it
// sleeps: a step's parallel regions follow each other within microseconds, so
// the short spin catches most of them (the default run alone: about 1.2x the
// tokens/s of no spin; two runs sharing the cores: the same total,
// experiments/defaults/results.md).
// This happens before MPI_Init (train calls dist_init later): under mpirun the
// re-executed image keeps the launcher's environment and joins the job as
// any rank does (checked: ranks run as /proc/self/exe with PASSIVE set).
static void ensure_passive_openmp_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("GOMP_SPINCOUNT", "1000", 1);  // read after the policy: it sets the spin
    execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
}

int main(int argc, char **argv) {
    ensure_passive_openmp_wait(argv);
    char names[256];
    command_names(names, sizeof names);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "help")) {
        if (argc >= 3 && !strcmp(argv[2], "config")) return cmd_help_config(argc - 3, argv + 3);
        if (argc == 2) {
            print_help();
            return 0;
        }
        const int self = !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h");  // help --help
        const CommandInfo *cmd = find_command(self ? "help" : argv[2]);
        if (!cmd || argc > 3)
            usage_error("help: '%s' is not a command (usage: reformer help [COMMAND | config [--markdown]]; commands: %s)",
                        argv[argc > 3 ? 3 : 2], names);
        print_command_help(cmd);
        return 0;
    }
    const CommandInfo *cmd = find_command(argv[1]);
    if (!cmd) usage_error("unknown command '%s' (commands: %s)", argv[1], names);
    // --help anywhere (or -h first) prints the command's help instead of running it.
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || (i == 2 && !strcmp(argv[i], "-h"))) {
            print_command_help(cmd);
            return 0;
        }
    return cmd->run(argc - 2, argv + 2);
}
