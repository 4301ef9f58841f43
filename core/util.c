#include "util.h"

#include <stdarg.h>
#include <sys/resource.h>
#include <time.h>

void fatal_at(const char *file, int line, const char *hint, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "reformer: error: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (hint && hint[0]) fprintf(stderr, " (hint: %s)", hint);
    fputc('\n', stderr);
    exit(1);
}

void *checked_calloc_at(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        fatal_at(file, line, "reduce seq_len, batch or the model size",
                 "out of memory allocating %zu x %zu bytes (%.1f MiB)", count, size,
                 (double)count * (double)size / (1024.0 * 1024.0));
    return p;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
    return (double)ru.ru_maxrss / 1024.0;  // Linux reports KiB
}
