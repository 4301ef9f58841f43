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
