// Metrics file (io/metrics.c): rows appended and readable while the writer
// holds the file, resume keeps only the rows up to the resumed step, a killed
// writer's file is recovered, appends are cheap, and h5dump reads the result.
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "h5_helpers.h"
#include "metrics.h"
#include "util.h"

static char tmp_dir[256], path[512];

static void setup(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "%s/reformer-test-metrics.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp failed");
    snprintf(path, sizeof path, "%s/metrics.h5", tmp_dir);
}

static void teardown(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmp_dir);
}

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 60);

static MetricsRow row_of(long step) {
    return (MetricsRow){.step = step, .loss = 5.0 / (double)step, .bits_per_byte = 5.0 / (double)step / 0.6931471805599453,
                        .lr = 1e-3 * (double)step, .grad_norm = 0.5, .tokens_per_s = 1000.0 + (double)step,
                        .step_ms = 7.25, .peak_rss_mb = 20.0, .accuracy = 0.01 * (double)step};
}

static MetricsFile *open_ok(long resume_step) {
    char err[2048];
    MetricsFile *f = metrics_open(path, resume_step, err, sizeof err);
    cr_assert_not_null(f, "metrics_open: %s", err);
    return f;
}

static void append_ok(MetricsFile *f, long from, long to) {
    char err[2048];
    for (long s = from; s <= to; s++) {
        MetricsRow r = row_of(s);
        cr_assert_eq(metrics_append(f, &r, err, sizeof err), 0, "%s", err);
    }
}

static void close_ok(MetricsFile *f) {
    char err[2048];
    cr_assert_eq(metrics_close(f, err, sizeof err), 0, "%s", err);
}

// The step column is exactly first..last and every other column matches.
static void expect_rows(long first, long last) {
    double v[4096];
    long n = h5_read_column(path, "step", v, 4096);
    cr_assert_eq(n, last - first + 1, "%ld rows, expected steps %ld..%ld", n, first, last);
    for (long i = 0; i < n; i++) cr_assert_eq(v[i], (double)(first + i), "row %ld has step %g", i, v[i]);
    for (int c = 1; c < METRICS_N_COLUMNS; c++) {
        cr_assert_eq(h5_read_column(path, METRICS_COLUMNS[c], v, 4096), n, "column %s", METRICS_COLUMNS[c]);
        for (long i = 0; i < n; i++) {
            MetricsRow r = row_of(first + i);
            double want = *(const double *)((const char *)&r + (size_t)c * sizeof(double));
            cr_assert_eq(v[i], want, "%s[%ld] = %g, expected %g", METRICS_COLUMNS[c], i, v[i], want);
        }
    }
}

Test(metrics, columns_are_the_documented_ones) {
    static const char *want[] = {"step", "loss", "bits_per_byte", "lr", "grad_norm", "tokens_per_s", "step_ms",
                                 "peak_rss_mb", "accuracy"};
    for (int c = 0; c < METRICS_N_COLUMNS; c++) cr_assert_str_eq(METRICS_COLUMNS[c], want[c]);
    // row_of/expect_rows read the doubles of a MetricsRow in column order.
    cr_assert_eq(offsetof(MetricsRow, loss), sizeof(double));
    cr_assert_eq(offsetof(MetricsRow, accuracy), 8 * sizeof(double));
}

Test(metrics, rows_round_trip) {
    MetricsFile *f = open_ok(0);
    append_ok(f, 1, 50);
    cr_assert_eq(metrics_rows(f), 50);
    close_ok(f);
    expect_rows(1, 50);
}

// Reader mode. The test below re-executes this binary with
// REFORMER_TEST_METRICS_READER=<rows>:<path> to get an independent reader
// process: a merely forked child would inherit the writer's HDF5 state and
// read through the writer's own open file. Exit status 0: the step column is
// exactly 1..rows.
__attribute__((constructor)) static void metrics_reader_mode(void) {
    const char *spec = getenv("REFORMER_TEST_METRICS_READER");
    if (!spec) return;
    char *colon = strchr(spec, ':');
    if (!colon) _exit(10);
    long want = atol(spec);
    double v[256];
    long n = h5_read_column(colon + 1, "step", v, 256);
    if (n != want) _exit(11);
    for (long i = 0; i < n; i++)
        if (v[i] != (double)(i + 1)) _exit(12);
    _exit(0);
}

// While the writer holds the file, another process opens it as a SWMR reader
// after every few appends and sees every row flushed so far.
Test(metrics, readable_by_another_process_while_open) {
    MetricsFile *f = open_ok(0);
    for (long s = 1; s <= 30; s++) {
        append_ok(f, s, s);
        if (s % 10) continue;
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
            char spec[600];
            snprintf(spec, sizeof spec, "%ld:%s", s, path);
            setenv("REFORMER_TEST_METRICS_READER", spec, 1);
            execl("/proc/self/exe", "test_metrics", (char *)NULL);
            _exit(20);
        }
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader after %ld rows failed (status %d)", s,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    close_ok(f);
    expect_rows(1, 30);
}

Test(metrics, resume_drops_rows_after_the_resumed_step) {
    MetricsFile *f = open_ok(0);
    append_ok(f, 1, 10);
    close_ok(f);
    f = open_ok(6);  // the checkpoint was at step 6; rows 7..10 are from the lost run
    cr_assert_eq(metrics_rows(f), 6);
    append_ok(f, 7, 12);
    close_ok(f);
    expect_rows(1, 12);
}

Test(metrics, fresh_run_replaces_an_old_file_and_missing_file_on_resume_starts_empty) {
    MetricsFile *f = open_ok(0);
    append_ok(f, 1, 5);
    close_ok(f);
    f = open_ok(0);
    cr_assert_eq(metrics_rows(f), 0);
    append_ok(f, 1, 2);
    close_ok(f);
    expect_rows(1, 2);
    unlink(path);
    f = open_ok(40);
    append_ok(f, 41, 43);
    close_ok(f);
    expect_rows(41, 43);
}

// A writer killed mid-run leaves its file marked "open for writing"; resume
// still reads it (as a SWMR reader) and rewrites it cleanly.
Test(metrics, resume_after_the_writer_was_killed) {
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        char err[2048];
        MetricsFile *f = metrics_open(path, 0, err, sizeof err);
        if (!f) _exit(1);
        for (long s = 1; s <= 8; s++) {
            MetricsRow r = row_of(s);
            if (metrics_append(f, &r, err, sizeof err)) _exit(2);
        }
        raise(SIGKILL);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status), "writer was not killed (status %d)", status);
    expect_rows(1, 8);  // readable as a SWMR reader right after the kill
    MetricsFile *f = open_ok(5);
    cr_assert_eq(metrics_rows(f), 5);
    append_ok(f, 6, 9);
    close_ok(f);
    expect_rows(1, 9);
    // Closed normally: a plain (non-SWMR) reader opens it too.
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(h >= 0, "a plain reader cannot open the closed file");
    H5Fclose(h);
}

// A writer killed between growing one column and the next leaves that
// column a row longer than the others (seen when `reformer train` is
// SIGKILLed; tests/test_runs.c). Resume keeps the rows every column holds.
Test(metrics, resume_after_a_torn_append_keeps_the_whole_rows) {
    MetricsFile *f = open_ok(0);
    append_ok(f, 1, 8);
    close_ok(f);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(h >= 0);
    hid_t ds = H5Dopen2(h, METRICS_COLUMNS[1], H5P_DEFAULT);
    hsize_t nine = 9;
    cr_assert(ds >= 0 && H5Dset_extent(ds, &nine) >= 0, "cannot grow %s", METRICS_COLUMNS[1]);
    H5Dclose(ds);
    H5Fclose(h);
    double v[16];
    cr_assert_eq(h5_read_column(path, METRICS_COLUMNS[1], v, 16), 9);
    f = open_ok(8);
    cr_assert_eq(metrics_rows(f), 8);
    append_ok(f, 9, 10);
    close_ok(f);
    expect_rows(1, 10);
}

Test(metrics, unreadable_file_on_resume_is_an_error_and_left_alone) {
    spit(path, (const unsigned char *)"garbage", 7);
    char err[2048];
    cr_assert_null(metrics_open(path, 5, err, sizeof err));
    cr_assert(strstr(err, path) && !strchr(err, '\n'), "%s", err);
    size_t len;
    unsigned char *b = slurp(path, &len);
    cr_assert(len == 7 && !memcmp(b, "garbage", 7), "the file was modified");
    free(b);
}

// An append (9 columns, then a flush) must be negligible next to a training
// step: measured ~0.1 ms on the project's machines; 5 ms is the bound.
Test(metrics, appends_are_cheap) {
    MetricsFile *f = open_ok(0);
    const long n = 2000;
    double t0 = now_seconds();
    append_ok(f, 1, n);
    double per = (now_seconds() - t0) / (double)n;
    close_ok(f);
    cr_log_info("metrics_append: %.3f ms per row (%ld rows)", per * 1e3, n);
    cr_assert_lt(per, 5e-3, "%.3f ms per append", per * 1e3);
    double v[1];
    cr_assert_eq(h5_read_column(path, "step", v, 1), n);
}

Test(metrics, h5dump_reads_the_file) {
    if (!have_h5dump()) cr_skip_test("h5dump not installed (Debian package hdf5-tools): skipped, not passed");
    MetricsFile *f = open_ok(0);
    append_ok(f, 1, 3);
    close_ok(f);
    char cmd[1200], out[600];
    snprintf(out, sizeof out, "%s/dump.txt", tmp_dir);
    snprintf(cmd, sizeof cmd, "h5dump -d /step '%s' >'%s' 2>&1", path, out);
    cr_assert_eq(system(cmd), 0, "h5dump failed on %s", path);
    size_t len;
    char *text = (char *)slurp(out, &len);
    text = realloc(text, len + 1);
    text[len] = '\0';
    cr_assert(strstr(text, "DATASET \"/step\"") && strstr(text, "(0): 1, 2, 3"), "unexpected h5dump output:\n%s", text);
    free(text);
}

// Evaluation rows live under /eval; resume keeps those up to the resumed step
// (several splits may share a step), and a format-1 file without /eval (an
// older run) resumes with its training rows and an empty /eval.
Test(metrics, eval_rows_append_and_resume) {
    char err[2048];
    MetricsFile *f = open_ok(0);
    append_ok(f, 1, 10);
    for (long s = 5; s <= 10; s += 5)
        for (int split = 1; split <= 2; split++) {
            EvalRow e = {.step = s, .split = split, .bits_per_byte = 2.5 - 0.1 * (double)s, .loss = 1.5,
                         .n_targets = 1000 + s, .n_windows = 4, .seconds = 0.25};
            cr_assert_eq(metrics_append_eval(f, &e, err, sizeof err), 0, "%s", err);
        }
    cr_assert_eq(metrics_eval_rows(f), 4);
    close_ok(f);
    double v[16];
    cr_assert_eq(h5_read_column(path, "/eval/step", v, 16), 4);
    cr_assert(v[0] == 5 && v[1] == 5 && v[2] == 10 && v[3] == 10);
    cr_assert_eq(h5_read_column(path, "/eval/split", v, 16), 4);
    cr_assert(v[0] == 1 && v[1] == 2 && v[2] == 1 && v[3] == 2);
    cr_assert_eq(h5_read_column(path, "/eval/bits_per_byte", v, 16), 4);
    cr_assert(v[0] == 2.0 && v[2] == 1.5);
    f = open_ok(7);  // resumed from step 7: the step-10 evaluations are gone
    cr_assert_eq(metrics_rows(f), 7);
    cr_assert_eq(metrics_eval_rows(f), 2);
    close_ok(f);
    cr_assert_eq(h5_read_column(path, "/eval/n_targets", v, 16), 2);
    cr_assert(v[0] == 1005 && v[1] == 1005);
    // A file with training columns only (format 1).
    unlink(path);
    hid_t h = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 3;
    for (int c = 0; c < METRICS_N_COLUMNS; c++) {
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t ds = H5Dcreate2(h, METRICS_COLUMNS[c], c == 0 ? H5T_STD_I64LE : H5T_IEEE_F64LE, sp, H5P_DEFAULT,
                              H5P_DEFAULT, H5P_DEFAULT);
        double vals[3] = {1, 2, 3};
        H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Fclose(h);
    f = open_ok(2);
    cr_assert_eq(metrics_rows(f), 2);
    cr_assert_eq(metrics_eval_rows(f), 0);
    close_ok(f);
}
