// Graceful stop on SIGTERM (SLURM's time limit, scancel), SIGINT (Ctrl-C) and
// SIGUSR1 (SLURM's early warning, `--signal=USR1@...`): the first one only
// records that a stop was asked for; the training loop agrees on it over the
// grid once per step (dist_max_int), writes a checkpoint, closes metrics.h5
// and exits with TRAIN_EXIT_STOPPED. A second one while that happens ends the
// process at once, with the signal's default action (status 128 + signal):
// checkpoints are written under a temporary name and renamed, so the
// previous one is never damaged.
#pragma once

// The exit status of a run stopped by a signal after writing its checkpoint:
// 75 is EX_TEMPFAIL ("try again"): `--resume` continues it.
#define TRAIN_EXIT_STOPPED 75

// Install the handlers (SA_RESTART: system calls in flight continue).
void stop_signals_install(void);
// The first stop signal received (SIGTERM, SIGINT or SIGUSR1), or 0.
int stop_signal_received(void);
// "SIGTERM", "SIGINT", "SIGUSR1", or "signal N".
const char *stop_signal_name(int sig);
