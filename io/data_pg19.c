// PG19 (Rae et al. 2019): a directory with train/, validation/ and test/,
// each holding one <book_id>.txt per book (metadata.csv beside them is
// allowed and not needed). Every book is one document, memory-mapped; books
// are taken in order of their id so the document order never depends on the
// file system.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_source.h"
#include "util.h"

static int all_digits(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return n > 0;
}

// Numeric ids in numeric order ("9.txt" before "10.txt"), then any other
// names in byte order after them.
static int compare_books(const void *pa, const void *pb) {
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    size_t la = strlen(a) - 4, lb = strlen(b) - 4;  // without ".txt"
    int na = all_digits(a, la), nb = all_digits(b, lb);
    if (na != nb) return na ? -1 : 1;
    if (na) {
        while (la > 1 && *a == '0') a++, la--;  // leading zeros do not make a number larger
        while (lb > 1 && *b == '0') b++, lb--;
        if (la != lb) return la < lb ? -1 : 1;
    }
    return strcmp(a, b);
}

static int is_book_name(const char *name) {
    size_t n = strlen(name);
    return n > 4 && !strcmp(name + n - 4, ".txt");
}

// Map every non-empty <book_id>.txt of dir into split s, in id order.
static int read_split(Dataset *ds, const char *dir, DataSplit *s, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d)
        return data_fail(err, errlen,
                         "data: '%s' is not a PG19 directory: cannot open %s (%s); expected train/, validation/ and "
                         "test/ of <book_id>.txt",
                         ds->path, dir, strerror(errno));
    char **names = NULL;
    long n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_book_name(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, (size_t)cap * sizeof *names);
            if (!names) FATAL(NULL, "out of memory listing %s", dir);
        }
        names[n] = strdup(e->d_name);
        if (!names[n++]) FATAL(NULL, "out of memory listing %s", dir);
    }
    closedir(d);
    if (n > 1) qsort(names, (size_t)n, sizeof *names, compare_books);
    int rc = 0;
    for (long i = 0; i < n && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) continue;  // nothing to read or predict
        const void *bytes;
        size_t len;
        rc = data_map_file(ds, "data", path, &bytes, &len, err, errlen);
        if (rc == 0) data_add_doc(s, bytes, len);
    }
    for (long i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int data_open_pg19(Dataset *ds, char *err, size_t errlen) {
    if (data_require_byte_vocab(ds, err, errlen)) return -1;
    struct stat st;
    if (stat(ds->path, &st) != 0) return data_fail(err, errlen, "data: cannot open '%s': %s", ds->path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return data_fail(err, errlen,
                         "data: '%s' is not a directory; data_format=pg19 expects one holding train/, validation/ "
                         "and test/ of <book_id>.txt",
                         ds->path);
    for (int s = 0; s < N_SPLITS; s++) {
        char dir[2048];
        snprintf(dir, sizeof dir, "%s/%s", ds->path, split_name((Split)s));
        if (read_split(ds, dir, &ds->split[s], err, errlen)) return -1;
    }
    if (ds->split[SPLIT_TRAIN].n_docs == 0)
        return data_fail(err, errlen, "data: '%s/train' holds no books (non-empty <book_id>.txt files)", ds->path);
    return 0;
}
