#include "run_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
            char holder[256] = "";
            ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
            holder[n > 0 ? n : 0] = '\0';
            holder[strcspn(holder, "\n")] = '\0';
            snprintf(err, errlen,
                     "out_dir: '%s' is in use by another reformer train (%s, per %s); wait for it to end, or "
                     "choose another out_dir",
                     dir, holder[0] ? holder : "holder unknown", path);
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
