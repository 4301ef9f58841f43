// End-to-end tests of the `reformer` program (launch/main.c): it is run as a
// subprocess and its exit status, stdout, stderr and files are checked.
//
// Run from the repository root (as `make test` does); the binary is
// $REFORMER_BIN if set, else build/reformer. Every run here is a tiny model
// and takes well under a second.
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"

// A model small enough to train six steps in a fraction of a second.
#define TINY_MODEL                                                                                             \
    "--set seq_len=128 --set d_model=32 --set d_ff=64 --set n_layers=2 --set n_heads=2 --set lsh_chunk=32 " \
    "--set local_chunk=32 --set batch=2"
#define TINY_TRAIN "--set data=data/tinyshakespeare.txt --set steps=6 " TINY_MODEL

static char tmp_dir[256];

static const char *bin(void) {
    const char *b = getenv("REFORMER_BIN");
    return b && *b ? b : "build/reformer";
}

static void setup(void) {
    cr_assert(access(bin(), X_OK) == 0, "%s is not an executable (run from the repo root after `make`, or set REFORMER_BIN)",
              bin());
    snprintf(tmp_dir, sizeof tmp_dir, "%s/reformer-test-cli.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp failed");
}

static void teardown(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmp_dir);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 60);

static char *read_all(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return calloc(1, 1);
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n == 0) break;
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

typedef struct {
    int rc;     // exit status; 128 + signal if killed
    char *out;  // stdout
    char *err;  // stderr
} Run;

// Run `reformer <args>` (args is shell text: quote paths with '...').
static Run run_cli(const char *fmt, ...) {
    char args[4096], cmd[8192], out_path[512], err_path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(out_path, sizeof out_path, "%s/stdout", tmp_dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s' </dev/null", bin(), args, out_path, err_path);
    int status = system(cmd);
    cr_assert_neq(status, -1, "system() failed for: %s", cmd);
    Run r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    r.out = read_all(out_path);
    r.err = read_all(err_path);
    return r;
}

static void run_free(Run *r) {
    free(r->out);
    free(r->err);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

// The run failed with exactly one stderr line "reformer: error: ..." that
// contains every string in names (NULL-terminated).
static void assert_one_line_error(const Run *r, const char *what, const char *const *names) {
    cr_assert_neq(r->rc, 0, "%s: exit status 0, expected failure (stdout: %s)", what, r->out);
    cr_assert_lt(r->rc, 128, "%s: killed by signal %d (stderr: %s)", what, r->rc - 128, r->err);
    cr_assert_eq(count_lines(r->err), 1, "%s: stderr is not exactly one line:\n%s", what, r->err);
    cr_assert(!strncmp(r->err, "reformer: error:", 16), "%s: stderr does not start with 'reformer: error:': %s", what,
              r->err);
    for (int i = 0; names[i]; i++)
        cr_assert(strstr(r->err, names[i]) != NULL, "%s: error does not name '%s': %s", what, names[i], r->err);
}

#define ASSERT_ONE_LINE_ERROR(r, what, ...) assert_one_line_error(r, what, (const char *const[]){__VA_ARGS__, NULL})

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// ------------------------------------------------------------ bad configs

Test(cli, bad_configs_fail_with_one_line_naming_the_key) {
    static const struct {
        const char *args, *key;
    } cases[] = {
        {"--set n_buckets=7", "n_buckets"},                                   // odd bucket count
        {"--set seq_len=96 --set lsh_chunk=64 --set local_chunk=32", "lsh_chunk"},  // not a chunk multiple
        {"--set seq_len=96 --set lsh_chunk=32 --set local_chunk=64", "local_chunk"},
        {"--set axial_shape=8,8", "axial_shape"},                             // 64 != seq_len 512
        {"--set axial_dims=10,10", "axial_dims"},                             // 20 != d_model
        {"--set n_heads=3", "n_heads"},                                       // 3 does not divide 128
        {"--set d_model=0", "d_model"},
        {"--set n_layers=-1", "n_layers"},
        {"--set batch=0", "batch"},
        {"--set seq_len=0", "seq_len"},
        {"--set seq_len=-4", "seq_len"},
        {"--set d_ff=0", "d_ff"},
        {"--set no_such_key=1", "no_such_key"},                               // unknown key
        {"--set d_model=12abc", "d_model"},                                   // malformed number
        {"--set attn=foo", "attn"},
        {"--set ff_activation=tanh", "ff_activation"},
        {"--set attn_layers=lsh,foo", "attn_layers"},
        {"n_buckets=7", "n_buckets"},                                         // bare key=value form
        {"n_heads=3", "n_heads"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int cmd = 0; cmd < 2; cmd++) {
            const char *command = cmd ? "bench" : "train";
            char what[256];
            snprintf(what, sizeof what, "%s %s", command, cases[i].args);
            Run r = run_cli("%s %s --set out_dir='%s/never'", command, cases[i].args, tmp_dir);
            ASSERT_ONE_LINE_ERROR(&r, what, cases[i].key);
            cr_assert_eq(r.out[0], '\0', "%s: wrote to stdout before failing: %s", what, r.out);
            run_free(&r);
        }
        char never[512];
        snprintf(never, sizeof never, "%s/never", tmp_dir);
        cr_assert(!exists(never), "%s: out_dir was created although the config is invalid", cases[i].args);
    }
}

Test(cli, bad_value_in_config_file_names_file_line_and_key) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.ini", tmp_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("[model]\nd_model = 64\nn_buckets = 7\n", f);
    fclose(f);
    // n_buckets=7 is a valid integer; finalize rejects it (names the key).
    Run r = run_cli("train --config '%s'", path);
    ASSERT_ONE_LINE_ERROR(&r, "--config with n_buckets=7", "n_buckets");
    run_free(&r);

    f = fopen(path, "w");
    fputs("[model]\nd_model = 64\nn_heads = two\n", f);
    fclose(f);
    char where[600];
    snprintf(where, sizeof where, "%s:3", path);
    r = run_cli("train --config '%s'", path);
    ASSERT_ONE_LINE_ERROR(&r, "--config with n_heads = two", where, "n_heads");
    run_free(&r);
}

// --------------------------------------------------- command-line mistakes

Test(cli, unknown_command) {
    Run r = run_cli("frobnicate");
    ASSERT_ONE_LINE_ERROR(&r, "reformer frobnicate", "frobnicate");
    run_free(&r);
}

Test(cli, unknown_argument_and_missing_value) {
    Run r = run_cli("train --bogus");
    ASSERT_ONE_LINE_ERROR(&r, "train --bogus", "--bogus");
    run_free(&r);
    r = run_cli("train --set");
    ASSERT_ONE_LINE_ERROR(&r, "train --set", "--set");
    run_free(&r);
    r = run_cli("train --steps 3");  // a bench-only flag
    ASSERT_ONE_LINE_ERROR(&r, "train --steps 3", "--steps");
    run_free(&r);
    r = run_cli("bench --steps 0");
    ASSERT_ONE_LINE_ERROR(&r, "bench --steps 0", "--steps");
    run_free(&r);
}

Test(cli, missing_data_file) {
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such-file.txt", tmp_dir);
    Run r = run_cli("train %s --set data='%s' --set out_dir='%s/never'", TINY_TRAIN, missing, tmp_dir);
    ASSERT_ONE_LINE_ERROR(&r, "train with a missing data file", "data", missing);
    run_free(&r);
}

Test(cli, missing_config_file) {
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such.ini", tmp_dir);
    Run r = run_cli("train --config '%s'", missing);
    ASSERT_ONE_LINE_ERROR(&r, "train with a missing config file", missing);
    run_free(&r);
}

Test(cli, help_lists_every_key) {
    Run r = run_cli("help");
    cr_assert_eq(r.rc, 0, "help exited %d", r.rc);
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        char want[128];
        snprintf(want, sizeof want, "\n%s=", CONFIG_KEYS[i]);
        cr_assert(strstr(r.out, want) != NULL, "help does not list key '%s'", CONFIG_KEYS[i]);
    }
    run_free(&r);
    r = run_cli("");  // no command: usage, and a failing status
    cr_assert_neq(r.rc, 0);
    cr_assert(strstr(r.out, "usage") != NULL);
    run_free(&r);
}

// ------------------------------------------------------------------ train

// The "loss X" field of every "step i/n | loss X | ..." line, joined by
// spaces into losses; returns the number of step lines.
static int step_losses(const char *out, char *losses, size_t cap, int *with_acc) {
    int n = 0;
    losses[0] = '\0';
    if (with_acc) *with_acc = 0;
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (!strncmp(p, "step ", 5)) {
            char line[1024];
            snprintf(line, sizeof line, "%.*s", (int)len, p);
            const char *l = strstr(line, "| loss ");
            cr_assert_not_null(l, "step line without a loss field: %s", line);
            char value[64];
            cr_assert_eq(sscanf(l + 7, "%63s", value), 1, "%s", line);
            snprintf(losses + strlen(losses), cap - strlen(losses), "%s%s", n ? " " : "", value);
            if (with_acc && strstr(line, "| acc ")) (*with_acc)++;
            n++;
        }
        if (!nl) break;
        p = nl + 1;
    }
    return n;
}

// Column col (0-based) of every data row of a CSV file, joined by spaces.
static int csv_column(const char *path, int col, char *header, size_t hcap, char *values, size_t cap) {
    char *text = read_all(path);
    int rows = 0;
    values[0] = '\0';
    header[0] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!header[0]) {
            snprintf(header, hcap, "%s", line);
            continue;
        }
        char *field = line;
        for (int i = 0; i < col && field; i++) {
            field = strchr(field, ',');
            if (field) field++;
        }
        cr_assert_not_null(field, "row '%s' of %s has no column %d", line, path, col);
        size_t flen = strcspn(field, ",");
        snprintf(values + strlen(values), cap - strlen(values), "%s%.*s", rows ? " " : "", (int)flen, field);
        rows++;
    }
    free(text);
    return rows;
}

Test(cli, train_is_deterministic_and_writes_metrics) {
    char la[4096], lb[4096], lc[4096];
    Run a = run_cli("train %s --set seed=7 --set out_dir='%s/a'", TINY_TRAIN, tmp_dir);
    cr_assert_eq(a.rc, 0, "train failed (%d): %s", a.rc, a.err);
    Run b = run_cli("train %s --set seed=7 --set out_dir='%s/b'", TINY_TRAIN, tmp_dir);
    cr_assert_eq(b.rc, 0, "train failed (%d): %s", b.rc, b.err);
    Run c = run_cli("train %s --set seed=8 --set out_dir='%s/c'", TINY_TRAIN, tmp_dir);
    cr_assert_eq(c.rc, 0, "train failed (%d): %s", c.rc, c.err);

    int acc_lines = -1;
    cr_assert_eq(step_losses(a.out, la, sizeof la, &acc_lines), 6, "expected 6 step lines:\n%s", a.out);
    cr_assert_eq(acc_lines, 0, "text data should not print acc");
    cr_assert_eq(step_losses(b.out, lb, sizeof lb, NULL), 6);
    cr_assert_eq(step_losses(c.out, lc, sizeof lc, NULL), 6);
    cr_assert_str_eq(la, lb, "same seed, different losses:\n%s\n%s", la, lb);
    cr_assert_str_neq(la, lc, "seeds 7 and 8 gave the same losses: %s", la);
    cr_assert(strstr(a.out, "done: 6 steps") != NULL, "no final 'done:' line:\n%s", a.out);
    cr_assert_eq(a.err[0], '\0', "train wrote to stderr: %s", a.err);

    // metrics.csv: a header and one row per step, losses identical across the
    // two same-seed runs (to the 6 printed decimals).
    char path[512], header[512], ma[4096], mb[4096], steps[1024];
    snprintf(path, sizeof path, "%s/a/metrics.csv", tmp_dir);
    cr_assert(exists(path), "%s was not written", path);
    cr_assert_eq(csv_column(path, 0, header, sizeof header, steps, sizeof steps), 6);
    cr_assert(!strncmp(header, "step,loss", 9), "unexpected header: %s", header);
    cr_assert_str_eq(steps, "1 2 3 4 5 6");
    cr_assert_eq(csv_column(path, 1, header, sizeof header, ma, sizeof ma), 6);
    snprintf(path, sizeof path, "%s/b/metrics.csv", tmp_dir);
    cr_assert_eq(csv_column(path, 1, header, sizeof header, mb, sizeof mb), 6);
    cr_assert_str_eq(ma, mb);
    run_free(&a);
    run_free(&b);
    run_free(&c);
}

Test(cli, train_duplication_task_prints_accuracy_and_eval) {
    Run r = run_cli("train --set data=dup --set steps=6 --set seq_len=64 --set d_model=32 --set d_ff=64 "
                    "--set n_layers=2 --set n_heads=2 --set lsh_chunk=16 --set local_chunk=16 --set batch=2 "
                    "--set dup_alphabet=16 --set out_dir='%s/dup'",
                    tmp_dir);
    cr_assert_eq(r.rc, 0, "train failed (%d): %s", r.rc, r.err);
    char losses[4096];
    int acc_lines = 0;
    cr_assert_eq(step_losses(r.out, losses, sizeof losses, &acc_lines), 6, "%s", r.out);
    cr_assert_eq(acc_lines, 6, "not every step line prints acc:\n%s", r.out);
    const char *eval = strstr(r.out, "\neval:");
    cr_assert_not_null(eval, "no final 'eval:' line:\n%s", r.out);
    cr_assert(strchr(eval + 1, '\n') == NULL || strchr(eval + 1, '\n')[1] == '\0', "eval: is not the last line:\n%s",
              r.out);
    run_free(&r);
}

// ------------------------------------------------------------------ bench

Test(cli, bench_json_is_one_line_with_the_keys) {
    Run r = run_cli("bench --json --steps 1 %s", TINY_MODEL);
    cr_assert_eq(r.rc, 0, "bench failed (%d): %s", r.rc, r.err);
    cr_assert_eq(count_lines(r.out), 1, "bench --json printed more than one line:\n%s", r.out);
    size_t n = strlen(r.out);
    cr_assert(r.out[0] == '{' && n >= 3 && r.out[n - 2] == '}', "not a JSON object line: %s", r.out);
    static const char *keys[] = {"tokens_per_s", "step_ms", "peak_rss_mb", "params"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "\"%s\": ", keys[i]);
        cr_assert(strstr(r.out, want) != NULL, "bench JSON lacks %s: %s", keys[i], r.out);
    }
    cr_assert(strstr(r.out, "\"steps\": 1,") != NULL, "bench did not run 1 step: %s", r.out);
    run_free(&r);
}

// Defaults adapt the chunk lengths, so any N = A*B benches out of the box.
Test(cli, bench_any_length_with_axial_shape) {
    const char *shapes[][2] = {{"1000", "40,25"}, {"1009", "1009,1"}, {"96", "8,12"}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        Run r = run_cli("bench --json --steps 1 --warmup 0 --set d_model=16 --set n_layers=2 --set batch=1 "
                        "--set seq_len=%s --set axial_shape=%s", shapes[i][0], shapes[i][1]);
        cr_expect_eq(r.rc, 0, "seq_len=%s axial_shape=%s failed: %s", shapes[i][0], shapes[i][1], r.err);
        run_free(&r);
    }
}

// ------------------------------------------------------- --config and --set

// The value after "| d_model " in the summary line printed at start-up.
static int summary_d_model(const char *out) {
    const char *s = strstr(out, "| d_model ");
    cr_assert_not_null(s, "no summary line with d_model:\n%s", out);
    return atoi(s + 10);
}

Test(cli, config_file_and_set_override) {
    char path[512];
    snprintf(path, sizeof path, "%s/tiny.ini", tmp_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "; tiny model for tests\n"
               "[model]\n"
               "d_model = 64\nd_ff = 64\nn_layers = 2\nn_heads = 2\nlsh_chunk = 32\nlocal_chunk = 32\n"
               "[training]\n"
               "seq_len = 128\nbatch = 2\nsteps = 1\ndata = data/tinyshakespeare.txt\nout_dir = %s/ini\n",
            tmp_dir);
    fclose(f);

    Run r = run_cli("train --config '%s'", path);
    cr_assert_eq(r.rc, 0, "train --config failed (%d): %s", r.rc, r.err);
    cr_assert_eq(summary_d_model(r.out), 64, "%s", r.out);
    cr_assert(strstr(r.out, "seq_len 128") != NULL, "%s", r.out);
    cr_assert(strstr(r.out, "step 1/1") != NULL, "steps=1 from the file not applied:\n%s", r.out);
    char metrics[512];
    snprintf(metrics, sizeof metrics, "%s/ini/metrics.csv", tmp_dir);
    cr_assert(exists(metrics), "out_dir from the file not used");
    run_free(&r);

    r = run_cli("train --config '%s' --set d_model=32", path);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_eq(summary_d_model(r.out), 32, "--set did not override the file:\n%s", r.out);
    run_free(&r);

    r = run_cli("train --config '%s' d_model=48", path);  // bare key=value
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_eq(summary_d_model(r.out), 48, "bare key=value did not override the file:\n%s", r.out);
    run_free(&r);
}
