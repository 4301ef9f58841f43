// `reformer export-hf` / `import-hf` without the Hugging Face environment
// (launch/hf.c): what the C side checks before it runs Python, so `make test`
// covers it on machines without torch. The conversions themselves are tested
// against transformers by `make test-hf` (tests/hf/test_hf.py).
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TMP_DIR_NAME "reformer-test-hf-cli"
#include "tmp_dir.h"

TestSuite(hf_cli, .init = make_tmp_dir, .fini = remove_tmp_dir, .timeout = 60);

typedef struct {
    int rc;
    char err[4096];  // stderr
    int err_lines;
} Run;

// Runs build/reformer with args (shell text), stdout discarded, without
// any Python environment (REFORMER_HF_PYTHON names a missing interpreter).
static Run run_hf(const char *args) {
    Run r = {0};
    char cmd[4096], err_path[512];
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp_dir);
    snprintf(cmd, sizeof cmd, "REFORMER_HF_PYTHON=%s/no-python build/reformer %s >/dev/null 2>'%s'", tmp_dir, args,
             err_path);
    int st = system(cmd);
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    FILE *f = fopen(err_path, "r");
    cr_assert_not_null(f);
    size_t n = fread(r.err, 1, sizeof r.err - 1, f);
    r.err[n] = '\0';
    fclose(f);
    for (char *p = r.err; *p; p++) r.err_lines += *p == '\n';
    return r;
}

static void assert_one_error(const Run *r, const char *needle) {
    cr_assert_eq(r->rc, 2, "exit %d, stderr: %s", r->rc, r->err);
    cr_assert_eq(r->err_lines, 1, "expected one line, got: %s", r->err);
    cr_assert(!strncmp(r->err, "reformer: error: ", 17), "%s", r->err);
    cr_assert(strstr(r->err, needle), "'%s' not in: %s", needle, r->err);
}

Test(hf_cli, import_without_environment_says_how_to_make_it) {
    char args[1024], out[600];
    snprintf(out, sizeof out, "%s/ckpt.h5", tmp_dir);
    snprintf(args, sizeof args, "import-hf --model '%s' --out '%s'", tmp_dir, out);
    Run r = run_hf(args);
    assert_one_error(&r, "create it with `make setup-hf`");
    cr_assert(access(out, F_OK) != 0, "%s was written", out);
}

Test(hf_cli, export_validates_the_checkpoint_before_python) {
    char args[1024];
    snprintf(args, sizeof args, "export-hf --ckpt '%s/missing.h5' --out '%s/hf'", tmp_dir, tmp_dir);
    Run r = run_hf(args);
    assert_one_error(&r, "--ckpt: ");
    cr_assert(strstr(r.err, "missing.h5"), "%s", r.err);
}

Test(hf_cli, missing_and_unknown_arguments) {
    Run r = run_hf("export-hf --ckpt x.h5");
    assert_one_error(&r, "export-hf needs --out");
    r = run_hf("import-hf --model m --out o.h5 --set lr=1");
    assert_one_error(&r, "unknown argument '--set'");
}

Test(hf_cli, import_refuses_an_existing_out) {
    char args[1024], out[600];
    snprintf(out, sizeof out, "%s/keep.h5", tmp_dir);
    FILE *f = fopen(out, "w");
    cr_assert_not_null(f);
    fputs("mine", f);
    fclose(f);
    snprintf(args, sizeof args, "import-hf --model '%s' --out '%s'", tmp_dir, out);
    Run r = run_hf(args);
    assert_one_error(&r, "already exists");
}
