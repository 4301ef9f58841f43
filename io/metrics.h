// Training metrics: `<out_dir>/metrics.h5`, one extendible, chunked 1-D
// dataset per column (README, "Metrics"): at the root one row per training
// step, under /eval one row per evaluation; each row is flushed when
// appended, so the file can be read while training runs.
//
// The writer holds the file in HDF5's single-writer/multiple-reader (SWMR)
// mode: readers open it concurrently with h5py.File(path, "r", swmr=True) or
// H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, ...) and always see a
// consistent file, even after the writer is killed. Once training ends the
// file is closed normally and any HDF5 reader (h5dump included) opens it.
#pragma once
#include <stddef.h>

typedef struct {
    long step;
    double loss, bits_per_byte, lr, grad_norm, tokens_per_s, step_ms, peak_rss_mb, accuracy;
} MetricsRow;

// One evaluation: bits per byte over n_targets targets of a split.
typedef struct {
    long step;
    int split;          // 0 train, 1 validation, 2 test (io/dataset.h Split)
    double bits_per_byte, loss;
    long n_targets, n_windows;
    double seconds;
} EvalRow;

#define METRICS_FORMAT_VERSION 2
#define METRICS_N_COLUMNS 9
#define METRICS_N_EVAL_COLUMNS 7

// Column names in file order. Training rows: column 0 ("step") is int64, the
// others float64. Evaluation rows (/eval/<name>): step, split, n_targets and
// n_windows are int64, the others float64.
extern const char *const METRICS_COLUMNS[METRICS_N_COLUMNS];
extern const char *const METRICS_EVAL_COLUMNS[METRICS_N_EVAL_COLUMNS];

typedef struct MetricsFile MetricsFile;

// Open path for appending. resume_step 0 starts an empty file (a new file,
// built aside and renamed over any old one). resume_step > 0 keeps the
// existing file's rows (training and evaluation) with step <= resume_step
// (rows a crashed run wrote after its last checkpoint are dropped) and
// appends after them, in place: the same file, so SWMR readers holding it
// open see the new rows (after H5Drefresh); a format-1 file (no /eval)
// gains its /eval table; a file this program cannot extend in place is
// rebuilt with the kept rows; a missing file starts empty. The caller must
// be the only writer (train holds the run directory's lock). Returns NULL
// with a one-line message on failure (an unreadable file is then untouched).
MetricsFile *metrics_open(const char *path, long resume_step, char *err, size_t errlen);

// metrics_open for the run `run_id` (may be NULL): the file's root attribute
// run_id names the run its rows belong to.
MetricsFile *metrics_open_run(const char *path, long resume_step, const char *run_id, char *err, size_t errlen);

// The run_id attribute of an existing metrics file into run_id ("" when the
// file has none: older builds). Returns 0, 1 when there is no file at path,
// or -1 with a one-line message (the file cannot be read).
int metrics_read_run_id(const char *path, char *run_id, size_t cap, char *err, size_t errlen);

// Append one row and flush it to the file. Returns 0 or -1 with a message.
int metrics_append(MetricsFile *f, const MetricsRow *row, char *err, size_t errlen);

// Append one evaluation row and flush it. Returns 0 or -1 with a message.
int metrics_append_eval(MetricsFile *f, const EvalRow *row, char *err, size_t errlen);

// Training rows and evaluation rows in the file.
long metrics_rows(const MetricsFile *f);
long metrics_eval_rows(const MetricsFile *f);

// Close (leaving a file any HDF5 reader opens) and free. Returns 0 or -1.
int metrics_close(MetricsFile *f, char *err, size_t errlen);
