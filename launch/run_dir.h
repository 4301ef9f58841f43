// One run per directory: `train` holds an exclusive lock on its out_dir for
// the life of the run, so a second process on the same directory is refused
// instead of mixing its checkpoints and metrics with the first one's.
//
// The lock is a POSIX record lock (fcntl F_SETLK) on `<out_dir>/train.lock`,
// a small text file naming the holder ("pid 123 host node7 since ..."). The
// kernel (or the NFS lock manager) drops the lock when its process dies,
// however it dies, so a lock left by a dead process never blocks; the file
// itself stays, naming the last holder.
#pragma once
#include <stddef.h>

#define RUN_LOCK_FILE "train.lock"

// Lock dir (which must exist) for this process until it exits. Returns 0
// (locked; or the file system has no locks, after a warning on stderr), or
// -1 with a one-line message naming the holder.
int run_dir_lock(const char *dir, char *err, size_t errlen);
// Whether another live process holds dir's lock, without taking it: -1 with
// run_dir_lock's one-line refusal, else 0. --resume asks first, so that it
// never reads checkpoints that the holder may be pruning.
int run_dir_probe(const char *dir, char *err, size_t errlen);

// Run identity: every run gets one at its start, a random 32-hex-digit id,
// stored in each of its checkpoints and in its metrics.h5 (root attribute
// run_id) and kept across resumes, so files of two runs are never mistaken
// for one.
void run_id_new(char *out, size_t cap);

// May the run `run_id` write into dir? ckpt is the checkpoint being resumed
// (NULL for a new run) and in_place says dir is the directory it came from.
//  - in place: dir's metrics.h5, when it names a run, must name this one;
//  - otherwise (a new run, or a resume writing elsewhere): dir may hold no
//    metrics.h5 and no checkpoint but this run's (same, non-empty run_id).
// Returns 0, or -1 with a one-line message naming the file and both runs.
int run_dir_check_identity(const char *dir, const char *run_id, const char *ckpt, int in_place, char *err,
                           size_t errlen);
