#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5util.h"

const char *const METRICS_COLUMNS[METRICS_N_COLUMNS] = {
    "step", "loss", "bits_per_byte", "lr", "grad_norm", "tokens_per_s", "step_ms", "peak_rss_mb", "accuracy"};

// Where each float64 column lives in a MetricsRow (column 0, step, is apart).
static const size_t DOUBLE_OFFSET[METRICS_N_COLUMNS] = {
    0, offsetof(MetricsRow, loss), offsetof(MetricsRow, bits_per_byte), offsetof(MetricsRow, lr),
    offsetof(MetricsRow, grad_norm), offsetof(MetricsRow, tokens_per_s), offsetof(MetricsRow, step_ms),
    offsetof(MetricsRow, peak_rss_mb), offsetof(MetricsRow, accuracy)};

// Rows per chunk: 8 KiB per column, so an append touches one small chunk.
#define CHUNK_ROWS 1024

struct MetricsFile {
    char path[2048];
    hid_t file;
    hid_t ds[METRICS_N_COLUMNS];
    long rows;
};

// Rows kept from an earlier file: column 0 as int64, the rest as double,
// each array [rows], all in one allocation.
typedef struct {
    long rows;
    int64_t *step;
    double *col[METRICS_N_COLUMNS];
    void *mem;
} Kept;

static hid_t column_type(int c, int native) {
    if (c == 0) return native ? H5T_NATIVE_INT64 : H5T_STD_I64LE;
    return native ? H5T_NATIVE_DOUBLE : H5T_IEEE_F64LE;
}

static void *column_data(Kept *k, int c) { return c == 0 ? (void *)k->step : (void *)k->col[c]; }

// Read the rows with step <= through from an existing metrics file. A SWMR
// reader opens a file whose writer was killed (its superblock still says
// "open for writing"), which a plain reader refuses.
static int read_kept(H5Ctx *x, long through, Kept *k) {
    memset(k, 0, sizeof *k);
    hid_t file;
    H5E_BEGIN_TRY { file = H5Fopen(x->path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT); }
    H5E_END_TRY;
    if (file < 0) file = h5_check(x, H5Fopen(x->path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open to resume");
    if (file < 0) return -1;
    hid_t ds[METRICS_N_COLUMNS];
    for (int c = 0; c < METRICS_N_COLUMNS; c++) ds[c] = -1;
    long n = -1;
    for (int c = 0; c < METRICS_N_COLUMNS && !x->failed; c++) {
        char obj[64];
        snprintf(obj, sizeof obj, "/%s", METRICS_COLUMNS[c]);
        int e = h5_path_exists(x, file, obj);
        if (e <= 0) {
            if (e == 0) h5_error(x, "dataset %s is missing", obj);
            break;
        }
        ds[c] = h5_check(x, H5Dopen2(file, obj, H5P_DEFAULT), obj);
        if (ds[c] < 0) break;
        hid_t space = h5_check(x, H5Dget_space(ds[c]), obj), type = h5_check(x, H5Dget_type(ds[c]), obj);
        hsize_t dims[H5S_MAX_RANK];
        int rank = space >= 0 ? (int)h5_check(x, H5Sget_simple_extent_dims(space, dims, NULL), obj) : -1;
        if (rank >= 0 && type >= 0) {
            if (rank != 1) h5_error(x, "%s is not one-dimensional", obj);
            else if (H5Tget_class(type) != (c == 0 ? H5T_INTEGER : H5T_FLOAT))
                h5_error(x, "%s is not %s", obj, c == 0 ? "an integer column" : "a floating-point column");
            else if (n >= 0 && (long)dims[0] != n)
                h5_error(x, "%s has %llu rows, /step has %ld", obj, (unsigned long long)dims[0], n);
            else if (c == 0)
                n = (long)dims[0];
        }
        h5_close(type);
        h5_close(space);
    }
    if (!x->failed && n > 0) {
        k->mem = malloc((size_t)n * sizeof(double) * METRICS_N_COLUMNS);
        if (!k->mem) h5_error(x, "out of memory reading %ld rows", n);
    }
    if (!x->failed && n > 0) {
        k->step = k->mem;
        for (int c = 1; c < METRICS_N_COLUMNS; c++) k->col[c] = (double *)k->mem + (size_t)n * c;
        if (h5_check(x, H5Dread(ds[0], H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, k->step), "/step") >= 0) {
            long keep = 0;
            for (; keep < n && k->step[keep] <= through; keep++)
                if (keep > 0 && k->step[keep] <= k->step[keep - 1]) {
                    h5_error(x, "/step is not increasing at row %ld", keep);
                    break;
                }
            k->rows = keep;
        }
        // The kept rows are the first k->rows of each column.
        hsize_t start = 0, count = (hsize_t)k->rows;
        for (int c = 1; c < METRICS_N_COLUMNS && !x->failed && k->rows > 0; c++) {
            hid_t fs = h5_check(x, H5Dget_space(ds[c]), METRICS_COLUMNS[c]);
            hid_t ms = h5_check(x, H5Screate_simple(1, &count, NULL), METRICS_COLUMNS[c]);
            if (fs >= 0 && ms >= 0 &&
                h5_check(x, H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL), METRICS_COLUMNS[c]) >= 0)
                h5_check(x, H5Dread(ds[c], H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, k->col[c]), METRICS_COLUMNS[c]);
            h5_close(ms);
            h5_close(fs);
        }
    }
    for (int c = 0; c < METRICS_N_COLUMNS; c++) h5_close(ds[c]);
    h5_close(file);
    if (x->failed) {
        free(k->mem);
        memset(k, 0, sizeof *k);
        return -1;
    }
    return 0;
}

// Create the file at tmp holding the kept rows, switch it to SWMR writing and
// leave it open in f.
static int create_file(H5Ctx *x, MetricsFile *f, const char *tmp, Kept *k) {
    hid_t fapl = h5_check(x, H5Pcreate(H5P_FILE_ACCESS), "file properties");
    hid_t dcpl = h5_check(x, H5Pcreate(H5P_DATASET_CREATE), "dataset properties");
    hsize_t chunk = CHUNK_ROWS, dims = (hsize_t)k->rows, maxdims = H5S_UNLIMITED;
    // SWMR needs the newest file format.
    if (fapl >= 0 && dcpl >= 0 &&
        h5_check(x, H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), "format version") >= 0 &&
        h5_check(x, H5Pset_chunk(dcpl, 1, &chunk), "chunking") >= 0)
        f->file = h5_check(x, H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), "cannot create");
    if (f->file >= 0 && h5_write_attr_int64(x, f->file, "format_version", METRICS_FORMAT_VERSION) == 0) {
        for (int c = 0; c < METRICS_N_COLUMNS; c++) {
            hid_t space = h5_check(x, H5Screate_simple(1, &dims, &maxdims), METRICS_COLUMNS[c]);
            if (space < 0) break;
            f->ds[c] = h5_check(x, H5Dcreate2(f->file, METRICS_COLUMNS[c], column_type(c, 0), space, H5P_DEFAULT, dcpl,
                                              H5P_DEFAULT), METRICS_COLUMNS[c]);
            if (f->ds[c] >= 0 && k->rows > 0)
                h5_check(x, H5Dwrite(f->ds[c], column_type(c, 1), H5S_ALL, H5S_ALL, H5P_DEFAULT, column_data(k, c)),
                         METRICS_COLUMNS[c]);
            h5_close(space);
            if (x->failed) break;
        }
    }
    if (!x->failed) h5_check(x, H5Fstart_swmr_write(f->file), "cannot start SWMR writing");
    h5_close(dcpl);
    h5_close(fapl);
    f->rows = k->rows;
    return x->failed ? -1 : 0;
}

static void close_all(MetricsFile *f) {
    for (int c = 0; c < METRICS_N_COLUMNS; c++) h5_close(f->ds[c]);
    h5_close(f->file);
    for (int c = 0; c < METRICS_N_COLUMNS; c++) f->ds[c] = -1;
    f->file = -1;
}

MetricsFile *metrics_open(const char *path, long resume_step, char *err, size_t errlen) {
    h5_init();
    MetricsFile *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    f->file = -1;
    for (int c = 0; c < METRICS_N_COLUMNS; c++) f->ds[c] = -1;
    Kept kept = {0};
    struct stat st;
    if (resume_step > 0 && stat(path, &st) == 0) {
        H5Ctx rx = {.path = path, .err = err, .errlen = errlen};
        if (read_kept(&rx, resume_step, &kept)) {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, " (move the file away to start a new one)");
            free(f);
            return NULL;
        }
    }
    // Built under a temporary name and renamed into place only once in SWMR
    // mode, so a reader never finds a half-made file or one it cannot share.
    char tmp[2100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    H5Ctx x = {.path = tmp, .err = err, .errlen = errlen};
    int rc = create_file(&x, f, tmp, &kept);
    free(kept.mem);
    if (rc == 0 && rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot rename into place: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        close_all(f);
        unlink(tmp);
        free(f);
        return NULL;
    }
    return f;
}

int metrics_append(MetricsFile *f, const MetricsRow *row, char *err, size_t errlen) {
    H5Ctx x = {.path = f->path, .err = err, .errlen = errlen};
    hsize_t n = (hsize_t)f->rows + 1, start = (hsize_t)f->rows, one = 1;
    for (int c = 0; c < METRICS_N_COLUMNS; c++) {
        int64_t step = row->step;
        const void *value = c == 0 ? (const void *)&step : (const void *)((const char *)row + DOUBLE_OFFSET[c]);
        if (h5_check(&x, H5Dset_extent(f->ds[c], &n), METRICS_COLUMNS[c]) < 0) return -1;
        hid_t fs = h5_check(&x, H5Dget_space(f->ds[c]), METRICS_COLUMNS[c]);
        hid_t ms = h5_check(&x, H5Screate_simple(1, &one, NULL), METRICS_COLUMNS[c]);
        if (fs >= 0 && ms >= 0 &&
            h5_check(&x, H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &one, NULL), METRICS_COLUMNS[c]) >= 0)
            h5_check(&x, H5Dwrite(f->ds[c], column_type(c, 1), ms, fs, H5P_DEFAULT, value), METRICS_COLUMNS[c]);
        h5_close(ms);
        h5_close(fs);
        if (x.failed) return -1;
    }
    f->rows++;
    // Readers see the row once it is flushed (SWMR orders the metadata).
    return h5_check(&x, H5Fflush(f->file, H5F_SCOPE_LOCAL), "flush") < 0 ? -1 : 0;
}

long metrics_rows(const MetricsFile *f) { return f->rows; }

int metrics_close(MetricsFile *f, char *err, size_t errlen) {
    if (!f) return 0;
    H5Ctx x = {.path = f->path, .err = err, .errlen = errlen};
    for (int c = 0; c < METRICS_N_COLUMNS; c++) h5_check(&x, H5Dclose(f->ds[c]), METRICS_COLUMNS[c]);
    h5_check(&x, H5Fclose(f->file), "close");
    free(f);
    return x.failed ? -1 : 0;
}
