#include "run_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>

#include "checkpoint.h"
#include "metrics.h"

// The refusal naming the lock's holder (fd: the lock file, held by another).
static void in_use(int fd, const char *dir, const char *path, char *err, size_t errlen) {
    // The holder writes its line just after taking the lock: give it up to
    // 1 s before calling it unknown.
    char holder[256] = "";
    ssize_t n = 0;
    for (int tries = 0; tries < 100 && (n = pread(fd, holder, sizeof holder - 1, 0)) <= 0; tries++) usleep(10000);
    holder[n > 0 ? n : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    snprintf(err, errlen,
             "out_dir: '%s' is in use by another reformer train (%s, per %s); wait for it to end, or choose "
             "another out_dir",
             dir, holder[0] ? holder : "holder unknown", path);
}

int run_dir_probe(const char *dir, char *err, size_t errlen) {
    char path[2048];
    snprintf(path, sizeof path, "%s/" RUN_LOCK_FILE, dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;  // no lock file: no run has held the directory
    // F_GETLK asks without taking: a write lock would need O_RDWR, and
    // closing this descriptor must not drop a lock this process holds.
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int held = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK && fl.l_pid != getpid();
    if (held) in_use(fd, dir, path, err, errlen);
    close(fd);
    return held ? -1 : 0;
}

int run_dir_lock(const char *dir, char *err, size_t errlen) {
    char path[2048];
    snprintf(path, sizeof path, "%s/" RUN_LOCK_FILE, dir);
    // Never closed: closing any descriptor of the file would drop the lock.
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "out_dir: cannot create the lock file %s: %s", path, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        if (errno == EACCES || errno == EAGAIN) {
            in_use(fd, dir, path, err, errlen);
            close(fd);
            return -1;
        }
        // No locks on this file system (some NFS or Lustre mounts): say so, go on.
        fprintf(stderr, "reformer: warning: out_dir: cannot lock %s (%s): a second run on this directory would "
                        "not be refused\n", path, strerror(errno));
        close(fd);
        return 0;
    }
    char host[256] = "?", since[64] = "?", line[512];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int len = snprintf(line, sizeof line, "pid %ld on host %s since %s\n", (long)getpid(), host, since);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len)
        fprintf(stderr, "reformer: warning: cannot write %s: %s\n", path, strerror(errno));
    return 0;
}

void run_id_new(char *out, size_t cap) {
    unsigned char bytes[16];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) {
        // No kernel randomness (very old kernels): time and pid still separate runs.
        unsigned long long t = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
        for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    for (size_t i = 0; i < sizeof bytes && 2 * i + 2 < cap; i++) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

static const char *or_unnamed(const char *id) { return id[0] ? id : "unnamed (an older build)"; }

int run_dir_check_identity(const char *dir, const char *run_id, const char *ckpt, int in_place, char *err,
                           size_t errlen) {
    char path[2048], found[64], why[2048];
    snprintf(path, sizeof path, "%s/metrics.h5", dir);
    int rc = metrics_read_run_id(path, found, sizeof found, why, sizeof why);
    if (rc < 0) {
        snprintf(err, errlen, "%s (move it out of %s if it is not this run's)", why, dir);
        return -1;
    }
    if (rc == 0 && in_place && found[0] && run_id[0] && strcmp(found, run_id)) {
        snprintf(err, errlen,
                 "--resume: %s belongs to run %s, but %s to run %s: the directory mixes two runs; move the files "
                 "that are not this run's out of %s",
                 ckpt, or_unnamed(run_id), path, found, dir);
        return -1;
    }
    if (in_place && rc == 0 && found[0]) return 0;
    if (in_place) {
        // No metrics.h5 naming the run: the directory's other checkpoints
        // must be this run's.
        size_t n;
        long *steps = run_id[0] ? ckpt_list_steps(dir, &n, why, sizeof why) : NULL;
        for (size_t i = 0; steps && i < n; i++) {
            ckpt_path(path, sizeof path, dir, steps[i]);
            if (!strcmp(path, ckpt) || ckpt_read_run_id(path, found, sizeof found, why, sizeof why) != 0) continue;
            if (found[0] && strcmp(found, run_id)) {
                snprintf(err, errlen,
                         "--resume: %s belongs to run %s, but %s to run %s: the directory mixes two runs; move the "
                         "files that are not this run's out of %s",
                         ckpt, run_id, path, found, dir);
                free(steps);
                return -1;
            }
        }
        free(steps);
        return 0;
    }
    if (rc == 0 && (!found[0] || strcmp(found, run_id))) {
        snprintf(err, errlen, "out_dir: '%s' holds another run (%s belongs to run %s%s); writing into it would mix "
                 "the two: %schoose another out_dir",
                 dir, path, or_unnamed(found), ckpt ? "" : ", which wrote no checkpoint",
                 ckpt ? "" : "start that run again with --resume auto, or ");
        return -1;
    }
    long step;
    if (ckpt_find_latest(dir, path, sizeof path, &step, why, sizeof why) == 0) {
        if (ckpt_read_run_id(path, found, sizeof found, why, sizeof why) != 0) found[0] = '\0';
        if (!found[0] || strcmp(found, run_id)) {
            snprintf(err, errlen, "out_dir: '%s' holds another run (%s belongs to run %s); writing into it would "
                     "mix the two: choose another out_dir", dir, path, or_unnamed(found));
            return -1;
        }
    }
    return 0;
}
