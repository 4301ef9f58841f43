// A fresh temporary directory per test: the suite's .init makes it under
// $TMPDIR (else /tmp) and its .fini removes it with everything inside.
// Define TMP_DIR_NAME (e.g. "reformer-test-x") before including.
#pragma once
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

static char tmp_dir[256];

static void make_tmp_dir(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "%s/" TMP_DIR_NAME ".XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp failed");
}

static void remove_tmp_dir(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmp_dir);
}
