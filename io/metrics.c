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
const char *const METRICS_EVAL_COLUMNS[METRICS_N_EVAL_COLUMNS] = {"step",      "split",     "bits_per_byte", "loss",
                                                                  "n_targets", "n_windows", "seconds"};

// A table: a group of equally long 1-D columns, column 0 the step. Rows move
// through the code as arrays of doubles (integer columns hold integers far
// below 2^53, so the conversion is exact).
#define MAX_COLUMNS 16
typedef struct {
    const char *group;        // "" (root) or "/eval"
    const char *const *names;
    const int *is_int;
    int n_cols;
    int optional;             // may be absent from a file being resumed (format 1)
} TableSpec;

static const int TRAIN_INT[METRICS_N_COLUMNS] = {1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int EVAL_INT[METRICS_N_EVAL_COLUMNS] = {1, 1, 0, 0, 1, 1, 0};
enum { TABLE_TRAIN, TABLE_EVAL, N_TABLES };
static const TableSpec TABLES[N_TABLES] = {
    {"", METRICS_COLUMNS, TRAIN_INT, METRICS_N_COLUMNS, 0},
    {"/eval", METRICS_EVAL_COLUMNS, EVAL_INT, METRICS_N_EVAL_COLUMNS, 1},
};

// Rows per chunk: 8 KiB per column, so an append touches one small chunk.
#define CHUNK_ROWS 1024

typedef struct {
    hid_t ds[MAX_COLUMNS];
    long rows;
} Table;

struct MetricsFile {
    char path[2048];
    hid_t file;
    Table t[N_TABLES];
};

// Rows kept from an earlier file: col[c] [rows] as doubles.
typedef struct {
    long rows;
    double *col[MAX_COLUMNS];
    double *mem;
} Kept;

static hid_t column_type(const TableSpec *s, int c, int native) {
    if (s->is_int[c]) return native ? H5T_NATIVE_INT64 : H5T_STD_I64LE;
    return native ? H5T_NATIVE_DOUBLE : H5T_IEEE_F64LE;
}

static void column_path(char *out, size_t cap, const TableSpec *s, int c) {
    snprintf(out, cap, "%s/%s", s->group, s->names[c]);
}

// Read one column (as doubles) of an open dataset: rows [0, n).
static void read_column(H5Ctx *x, hid_t ds, const char *obj, long n, double *out) {
    hsize_t start = 0, count = (hsize_t)n;
    hid_t fs = h5_check(x, H5Dget_space(ds), obj), ms = h5_check(x, H5Screate_simple(1, &count, NULL), obj);
    if (fs >= 0 && ms >= 0 && h5_check(x, H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL), obj) >= 0)
        h5_check(x, H5Dread(ds, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, out), obj);
    h5_close(ms);
    h5_close(fs);
}

// The rows with step <= through of one table of an open file.
static int read_table(H5Ctx *x, hid_t file, const TableSpec *s, long through, Kept *k) {
    memset(k, 0, sizeof *k);
    hid_t ds[MAX_COLUMNS];
    for (int c = 0; c < s->n_cols; c++) ds[c] = -1;
    char obj[64];
    column_path(obj, sizeof obj, s, 0);
    if (s->optional && h5_path_exists(x, file, obj) == 0) return 0;  // a format-1 file: no such table
    long n = -1;
    for (int c = 0; c < s->n_cols && !x->failed; c++) {
        column_path(obj, sizeof obj, s, c);
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
            else if (H5Tget_class(type) != (s->is_int[c] ? H5T_INTEGER : H5T_FLOAT))
                h5_error(x, "%s is not %s", obj, s->is_int[c] ? "an integer column" : "a floating-point column");
            // Columns grow one after another: a run killed mid-append (SIGKILL,
            // the OOM killer) leaves some a row longer. The rows all columns
            // hold are whole; a resume drops the rest with every row past its
            // checkpoint.
            else if (c == 0 || (long)dims[0] < n)
                n = (long)dims[0];
        }
        h5_close(type);
        h5_close(space);
    }
    if (!x->failed && n > 0) {
        k->mem = malloc((size_t)n * sizeof(double) * (size_t)s->n_cols);
        if (!k->mem) h5_error(x, "out of memory reading %ld rows", n);
    }
    if (!x->failed && n > 0) {
        for (int c = 0; c < s->n_cols; c++) k->col[c] = k->mem + (size_t)n * c;
        column_path(obj, sizeof obj, s, 0);
        read_column(x, ds[0], obj, n, k->col[0]);
        long keep = 0;
        for (; !x->failed && keep < n && k->col[0][keep] <= (double)through; keep++)
            // Evaluation rows may repeat a step (validation and test); training rows may not.
            if (keep > 0 && (s->optional ? k->col[0][keep] < k->col[0][keep - 1] : k->col[0][keep] <= k->col[0][keep - 1])) {
                h5_error(x, "%s/step is not increasing at row %ld", s->group, keep);
                break;
            }
        k->rows = keep;
        for (int c = 1; c < s->n_cols && !x->failed && k->rows > 0; c++) {
            column_path(obj, sizeof obj, s, c);
            read_column(x, ds[c], obj, k->rows, k->col[c]);
        }
    }
    for (int c = 0; c < s->n_cols; c++) h5_close(ds[c]);
    if (x->failed) {
        free(k->mem);
        memset(k, 0, sizeof *k);
        return -1;
    }
    return 0;
}

// Every table's kept rows of an existing file. A SWMR reader opens a file
// whose writer was killed (its superblock still says "open for writing"),
// which a plain reader refuses.
static hid_t open_existing(H5Ctx *x, const char *what);

static int read_kept(H5Ctx *x, long through, Kept *kept) {
    hid_t file = open_existing(x, "cannot open to resume");
    if (file < 0) return -1;
    for (int t = 0; t < N_TABLES && !x->failed; t++) read_table(x, file, &TABLES[t], through, &kept[t]);
    h5_close(file);
    return x->failed ? -1 : 0;
}

// Write a table's datasets into the new file, holding the kept rows.
static void create_table(H5Ctx *x, hid_t file, hid_t dcpl, const TableSpec *s, Table *t, const Kept *k) {
    hsize_t dims = (hsize_t)k->rows, maxdims = H5S_UNLIMITED;
    hid_t group = -1;
    if (s->group[0]) {
        group = h5_check(x, H5Gcreate2(file, s->group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), s->group);
        if (group < 0) return;
    }
    for (int c = 0; c < s->n_cols && !x->failed; c++) {
        char obj[64];
        column_path(obj, sizeof obj, s, c);
        hid_t space = h5_check(x, H5Screate_simple(1, &dims, &maxdims), obj);
        if (space < 0) break;
        t->ds[c] = h5_check(x, H5Dcreate2(file, obj, column_type(s, c, 0), space, H5P_DEFAULT, dcpl, H5P_DEFAULT), obj);
        if (t->ds[c] >= 0 && k->rows > 0)
            h5_check(x, H5Dwrite(t->ds[c], H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, k->col[c]), obj);
        h5_close(space);
    }
    t->rows = k->rows;
    h5_close(group);
}

// Create the file at tmp holding the kept rows, switch it to SWMR writing and
// leave it open in f. SWMR allows no new objects later, so every table is
// created now.
static int create_file(H5Ctx *x, MetricsFile *f, const char *tmp, const Kept *kept, const char *run_id) {
    hid_t fapl = h5_check(x, H5Pcreate(H5P_FILE_ACCESS), "file properties");
    hid_t dcpl = h5_check(x, H5Pcreate(H5P_DATASET_CREATE), "dataset properties");
    hsize_t chunk = CHUNK_ROWS;
    // SWMR needs the newest file format.
    if (fapl >= 0 && dcpl >= 0 &&
        h5_check(x, H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), "format version") >= 0 &&
        h5_check(x, H5Pset_chunk(dcpl, 1, &chunk), "chunking") >= 0)
        f->file = h5_check(x, H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), "cannot create");
    if (f->file >= 0 && h5_write_attr_int64(x, f->file, "format_version", METRICS_FORMAT_VERSION) == 0 &&
        h5_write_attr_string(x, f->file, "eval_split_codes", "0=train 1=validation 2=test") == 0 &&
        (!run_id || !run_id[0] || h5_write_attr_string(x, f->file, "run_id", run_id) == 0))
        for (int t = 0; t < N_TABLES && !x->failed; t++) create_table(x, f->file, dcpl, &TABLES[t], &f->t[t], &kept[t]);
    if (!x->failed) h5_check(x, H5Fstart_swmr_write(f->file), "cannot start SWMR writing");
    h5_close(dcpl);
    h5_close(fapl);
    return x->failed ? -1 : 0;
}

static void close_all(MetricsFile *f) {
    for (int t = 0; t < N_TABLES; t++)
        for (int c = 0; c < MAX_COLUMNS; c++) {
            h5_close(f->t[t].ds[c]);
            f->t[t].ds[c] = -1;
        }
    h5_close(f->file);
    f->file = -1;
}

static MetricsFile *new_file(const char *path) {
    MetricsFile *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    snprintf(f->path, sizeof f->path, "%s", path);
    f->file = -1;
    for (int t = 0; t < N_TABLES; t++)
        for (int c = 0; c < MAX_COLUMNS; c++) f->t[t].ds[c] = -1;
    return f;
}

MetricsFile *metrics_open(const char *path, long resume_step, char *err, size_t errlen) {
    return metrics_open_run(path, resume_step, NULL, err, errlen);
}

// Open an existing metrics file for reading: as a SWMR reader (a file whose
// writer was killed still says "open for writing", which a plain reader
// refuses), else plainly.
static hid_t open_existing(H5Ctx *x, const char *what) {
    hid_t file;
    H5E_BEGIN_TRY { file = H5Fopen(x->path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT); }
    H5E_END_TRY;
    if (file < 0) file = h5_check(x, H5Fopen(x->path, H5F_ACC_RDONLY, H5P_DEFAULT), what);
    return file;
}

int metrics_read_run_id(const char *path, char *run_id, size_t cap, char *err, size_t errlen) {
    h5_init();
    run_id[0] = '\0';
    struct stat st;
    if (stat(path, &st) != 0) return 1;
    H5Ctx x = {.path = path, .err = err, .errlen = errlen};
    hid_t file = open_existing(&x, "cannot open");
    if (file < 0) return -1;
    htri_t has = h5_check(&x, H5Aexists(file, "run_id"), "run_id");
    if (has > 0) h5_read_attr_string(&x, file, "run_id", run_id, cap);
    h5_close(file);
    return x.failed ? -1 : 0;
}

// Continue an existing file in place: keep its rows in kept (rows a killed
// run wrote after its checkpoint are cut off), add the tables a format-1
// file lacks, record run_id if it has none, and switch to SWMR writing. The
// run directory's lock (launch/run_dir.h) means no other writer exists, so
// the status flags a killed writer left in the superblock are cleared (as
// h5clear -s does), and HDF5's own file lock is not taken: every reader
// (SWMR or not) holds a shared one, which would refuse the resume.
static int open_in_place(H5Ctx *x, MetricsFile *f, const Kept *kept, const char *run_id) {
    hid_t fapl = h5_check(x, H5Pcreate(H5P_FILE_ACCESS), "file properties");
    hid_t dcpl = h5_check(x, H5Pcreate(H5P_DATASET_CREATE), "dataset properties");
    hsize_t chunk = CHUNK_ROWS;
    hbool_t clear_flags = 1;
    if (fapl >= 0 && dcpl >= 0 &&
        h5_check(x, H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), "format version") >= 0 &&
        h5_check(x, H5Pset(fapl, "clear_status_flags", &clear_flags), "file properties") >= 0 &&
        h5_check(x, H5Pset_file_locking(fapl, 0, 1), "file locking") >= 0 &&
        h5_check(x, H5Pset_chunk(dcpl, 1, &chunk), "chunking") >= 0)
        f->file = h5_check(x, H5Fopen(x->path, H5F_ACC_RDWR, fapl), "cannot open to resume");
    if (f->file >= 0 && run_id && run_id[0] && h5_check(x, H5Aexists(f->file, "run_id"), "run_id") == 0)
        h5_write_attr_string(x, f->file, "run_id", run_id);
    for (int t = 0; t < N_TABLES && !x->failed && f->file >= 0; t++) {
        const TableSpec *spec = &TABLES[t];
        char obj[64];
        column_path(obj, sizeof obj, spec, 0);
        if (h5_path_exists(x, f->file, obj) == 0) {  // a format-1 file: no /eval yet
            create_table(x, f->file, dcpl, spec, &f->t[t], &kept[t]);
            if (!x->failed && h5_check(x, H5Adelete(f->file, "format_version"), "format_version") >= 0 &&
                h5_write_attr_int64(x, f->file, "format_version", METRICS_FORMAT_VERSION) == 0 &&
                h5_check(x, H5Aexists(f->file, "eval_split_codes"), "eval_split_codes") == 0)
                h5_write_attr_string(x, f->file, "eval_split_codes", "0=train 1=validation 2=test");
            continue;
        }
        hsize_t rows = (hsize_t)kept[t].rows;
        for (int c = 0; c < spec->n_cols && !x->failed; c++) {
            column_path(obj, sizeof obj, spec, c);
            f->t[t].ds[c] = h5_check(x, H5Dopen2(f->file, obj, H5P_DEFAULT), obj);
            if (f->t[t].ds[c] >= 0) h5_check(x, H5Dset_extent(f->t[t].ds[c], &rows), obj);
        }
        f->t[t].rows = kept[t].rows;
    }
    if (!x->failed) h5_check(x, H5Fstart_swmr_write(f->file), "cannot start SWMR writing");
    h5_close(dcpl);
    h5_close(fapl);
    return x->failed ? -1 : 0;
}

MetricsFile *metrics_open_run(const char *path, long resume_step, const char *run_id, char *err, size_t errlen) {
    h5_init();
    MetricsFile *f = new_file(path);
    if (!f) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    Kept kept[N_TABLES] = {0};
    struct stat st;
    if (resume_step > 0 && stat(path, &st) == 0) {
        // Resume in place: the same file (inode), so SWMR readers that hold
        // it open see the resumed run's rows (a new file would leave them
        // reading the old one forever).
        H5Ctx rx = {.path = path, .err = err, .errlen = errlen};
        if (read_kept(&rx, resume_step, kept)) {
            for (int t = 0; t < N_TABLES; t++) free(kept[t].mem);
            size_t n = strlen(err);
            snprintf(err + n, errlen - n,
                     " (this file cannot be continued: rename it, e.g. to metrics.h5.old, to keep its rows, then "
                     "resume again to start a new one)");
            free(f);
            return NULL;
        }
        H5Ctx px = {.path = path, .err = err, .errlen = errlen};
        if (open_in_place(&px, f, kept, run_id) == 0) {
            for (int t = 0; t < N_TABLES; t++) free(kept[t].mem);
            return f;
        }
        // Not a file this program wrote (contiguous or fixed-size columns, an
        // older format): rebuild it with the kept rows, as a new file.
        close_all(f);
        for (int t = 0; t < N_TABLES; t++) f->t[t].rows = 0;
    }
    // Built under a temporary name and renamed into place only once in SWMR
    // mode, so a reader never finds a half-made file or one it cannot share.
    char tmp[2100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    H5Ctx x = {.path = tmp, .err = err, .errlen = errlen};
    int rc = create_file(&x, f, tmp, kept, run_id);
    for (int t = 0; t < N_TABLES; t++) free(kept[t].mem);
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

// Append one row (values by column) to a table and flush.
static int append_row(MetricsFile *f, int which, const double *values, char *err, size_t errlen) {
    const TableSpec *s = &TABLES[which];
    Table *t = &f->t[which];
    H5Ctx x = {.path = f->path, .err = err, .errlen = errlen};
    hsize_t n = (hsize_t)t->rows + 1, start = (hsize_t)t->rows, one = 1;
    for (int c = 0; c < s->n_cols; c++) {
        char obj[64];
        column_path(obj, sizeof obj, s, c);
        if (h5_check(&x, H5Dset_extent(t->ds[c], &n), obj) < 0) return -1;
        hid_t fs = h5_check(&x, H5Dget_space(t->ds[c]), obj);
        hid_t ms = h5_check(&x, H5Screate_simple(1, &one, NULL), obj);
        if (fs >= 0 && ms >= 0 && h5_check(&x, H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &one, NULL), obj) >= 0)
            h5_check(&x, H5Dwrite(t->ds[c], H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, &values[c]), obj);
        h5_close(ms);
        h5_close(fs);
        if (x.failed) return -1;
    }
    t->rows++;
    // Readers see the row once it is flushed (SWMR orders the metadata).
    return h5_check(&x, H5Fflush(f->file, H5F_SCOPE_LOCAL), "flush") < 0 ? -1 : 0;
}

int metrics_append(MetricsFile *f, const MetricsRow *r, char *err, size_t errlen) {
    const double v[METRICS_N_COLUMNS] = {(double)r->step, r->loss,         r->bits_per_byte, r->lr,      r->grad_norm,
                                         r->tokens_per_s, r->step_ms,      r->peak_rss_mb,   r->accuracy};
    return append_row(f, TABLE_TRAIN, v, err, errlen);
}

int metrics_append_eval(MetricsFile *f, const EvalRow *r, char *err, size_t errlen) {
    const double v[METRICS_N_EVAL_COLUMNS] = {(double)r->step,      (double)r->split,     r->bits_per_byte, r->loss,
                                              (double)r->n_targets, (double)r->n_windows, r->seconds};
    return append_row(f, TABLE_EVAL, v, err, errlen);
}

long metrics_rows(const MetricsFile *f) { return f->t[TABLE_TRAIN].rows; }
long metrics_eval_rows(const MetricsFile *f) { return f->t[TABLE_EVAL].rows; }

int metrics_close(MetricsFile *f, char *err, size_t errlen) {
    if (!f) return 0;
    H5Ctx x = {.path = f->path, .err = err, .errlen = errlen};
    for (int t = 0; t < N_TABLES; t++)
        for (int c = 0; c < TABLES[t].n_cols; c++) h5_check(&x, H5Dclose(f->t[t].ds[c]), TABLES[t].names[c]);
    h5_check(&x, H5Fclose(f->file), "close");
    free(f);
    return x.failed ? -1 : 0;
}
