// Helpers every dataset reader uses: mapping files, collecting documents,
// cutting one token run into the three splits.
#include "data_source.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

int data_fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

// realloc that never returns NULL, for the lists built while opening.
static void *grow(void *p, long *cap, long need, size_t elem) {
    if (need <= *cap) return p;
    long n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    void *q = realloc(p, (size_t)n * elem);
    if (!q) FATAL("the dataset has too many files for memory", "out of memory growing a list to %ld entries", n);
    *cap = n;
    return q;
}

const char *data_file_kind(mode_t mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "not a regular file";
}

int data_refuse_special(const char *key, const char *path, mode_t mode, char *err, size_t errlen) {
    return data_fail(err, errlen,
                     "%s: '%s' is %s, not a regular file (data is mapped into memory: write it to a file first)", key,
                     path, data_file_kind(mode));
}

// ------------------------------------------------------------ SIGBUS guard

static __thread sigjmp_buf *guard_jump;
static __thread void *volatile guard_addr;
static struct sigaction previous_sigbus;  // e.g. Open MPI's backtrace handler

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    (void)context;
    if (guard_jump) {
        guard_addr = info->si_addr;
        sigjmp_buf *jump = guard_jump;
        guard_jump = NULL;
        siglongjmp(*jump, 1);
    }
    // Not a read of mapped data: whatever handled SIGBUS before (the default
    // action: end with SIGBUS), for this and any later one.
    sigaction(sig, &previous_sigbus, NULL);
    raise(sig);
}

static void install_sigbus_handler(void) {
    static int installed;
    if (installed) return;
    installed = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &previous_sigbus) != 0)
        FATAL(NULL, "sigaction(SIGBUS) failed: %s", strerror(errno));
}

void data_guard_begin(sigjmp_buf *jump) { guard_jump = jump; }

void data_guard_end(void) { guard_jump = NULL; }

void data_mapped_read_failed(const Dataset *ds) {
    const char *addr = guard_addr;
    for (long i = 0; i < ds->n_maps; i++) {
        const struct DataMap *m = &ds->maps[i];
        if (addr < (const char *)m->addr || addr >= (const char *)m->addr + m->len) continue;
        struct stat st;
        char now[96];
        if (stat(m->path, &st) == 0) snprintf(now, sizeof now, "%lld bytes now", (long long)st.st_size);
        else snprintf(now, sizeof now, "now %s", strerror(errno));
        fflush(stdout);
        fprintf(stderr,
                "reformer: error: data: '%s' was truncated or rewritten while training (%zu bytes when opened, %s): "
                "reading it failed (SIGBUS); restore it and --resume (to replace data, write a new file and rename "
                "it over the old one)\n",
                m->path, m->len, now);
        exit(1);
    }
    FATAL(NULL, "SIGBUS reading the data at %p, outside every mapped file of '%s'", (void *)addr, ds->path);
}

static long long stat_ns(struct timespec t) { return (long long)t.tv_sec * 1000000000LL + t.tv_nsec; }

int dataset_check_unchanged(const Dataset *ds, char *err, size_t errlen) {
    for (long i = 0; i < ds->n_maps; i++) {
        const struct DataMap *m = &ds->maps[i];
        struct stat st;
        if (stat(m->path, &st) != 0) continue;  // removed or renamed away: the mapping keeps the old file
        if ((unsigned long long)st.st_dev != m->dev || (unsigned long long)st.st_ino != m->ino) continue;
        if ((size_t)st.st_size == m->len && stat_ns(st.st_mtim) == m->mtime_ns && stat_ns(st.st_ctim) == m->ctime_ns)
            continue;
        return data_fail(err, errlen,
                         "data: '%s' was rewritten in place while training (%zu bytes when opened, %lld now; "
                         "modified since)",
                         m->path, m->len, (long long)st.st_size);
    }
    return 0;
}

int data_map_file(Dataset *ds, const char *key, const char *path, const void **data, size_t *len, char *err,
                  size_t errlen) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer forever; it changes nothing for a regular file, which is all
    // that is mapped.
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return data_fail(err, errlen, "%s: cannot open '%s': %s", key, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return data_fail(err, errlen, "%s: cannot stat '%s': %s", key, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return data_refuse_special(key, path, st.st_mode, err, errlen);
    }
    if (st.st_size == 0) {
        close(fd);
        return data_fail(err, errlen, "%s: '%s' is empty", key, path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);  // the mapping keeps the file open
    if (p == MAP_FAILED) return data_fail(err, errlen, "%s: cannot map '%s': %s", key, path, strerror(errno));
    ds->maps = grow(ds->maps, &ds->cap_maps, ds->n_maps + 1, sizeof *ds->maps);
    char *copy = strdup(path);
    if (!copy) FATAL(NULL, "out of memory");
    install_sigbus_handler();
    ds->maps[ds->n_maps++] = (struct DataMap){.addr = p, .len = (size_t)st.st_size, .path = copy,
                                              .dev = (unsigned long long)st.st_dev, .ino = (unsigned long long)st.st_ino,
                                              .mtime_ns = stat_ns(st.st_mtim), .ctime_ns = stat_ns(st.st_ctim)};
    *data = p;
    *len = (size_t)st.st_size;
    return 0;
}

void data_add_doc(DataSplit *s, const void *data, size_t len) {
    s->docs = grow(s->docs, &s->cap_docs, s->n_docs + 1, sizeof *s->docs);
    s->docs[s->n_docs++] = (DataDoc){.data = data, .len = len};
    s->n_tokens += len;
}

void data_split_ends(size_t n, const double fractions[3], size_t ends[N_SPLITS]) {
    // Round each boundary to the nearest item; a zero share gives an empty
    // split, and the test split ends exactly at n.
    size_t train_end = (size_t)llround((double)n * fractions[0]);
    size_t valid_end = (size_t)llround((double)n * (fractions[0] + fractions[1]));
    if (fractions[2] == 0 || valid_end > n) valid_end = n;
    if (train_end > valid_end) train_end = valid_end;
    ends[0] = train_end, ends[1] = valid_end, ends[2] = n;
}

void data_split_contiguous(Dataset *ds, const void *data, size_t n, const double fractions[3]) {
    size_t ends[N_SPLITS];
    data_split_ends(n, fractions, ends);  // no document for an empty split
    const char *bytes = data;
    size_t begin = 0;
    for (int s = 0; s < N_SPLITS; s++) {
        if (ends[s] > begin) data_add_doc(&ds->split[s], bytes + begin * (size_t)ds->token_bytes, ends[s] - begin);
        begin = ends[s];
    }
}

int data_require_byte_vocab(const Dataset *ds, char *err, size_t errlen) {
    if (ds->vocab_size < 256)
        return data_fail(err, errlen, "vocab_size: byte-level %s data needs vocab_size >= 256, got %d",
                         data_kind_name(ds->kind), ds->vocab_size);
    return 0;
}
