// cuda/device_check.sh, the one prepared run on a lent GPU, on this machine
// (no GPU): it must build in a folder of its own and never in build/ (a
// build there relinked build/reformer without MPI, replacing what `make`
// built), end SKIPPED (exit 77) with every GPU part named, and leave its
// three result files; its part limits add up to its budget. A stand-in
// `make` on PATH records where and what it was asked to build (a real
// device build takes minutes; `make device-check-rehearsal` runs that).
// cuda/find_cuda_parts.sh finds cuBLAS and CUB in the toolkit, else in the
// image's wheels, else in the carried ones, on made-up trees.
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TMP_DIR_NAME "reformer-test-device-check"
#include "tmp_dir.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = '\0';
    fclose(f);
    return s;
}

static void write_script(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(path, 0755), 0);
}

static int sh(const char *cmd) {
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TestSuite(device_check, .init = make_tmp_dir, .fini = remove_tmp_dir, .timeout = 120);

Test(device_check, builds_in_its_own_folder_and_skips_without_a_gpu) {
    char root[PATH_MAX], cmd[2 * PATH_MAX], path[PATH_MAX + 64];
    cr_assert_not_null(getcwd(root, sizeof root));
    snprintf(path, sizeof path, "%s/bin", tmp_dir);
    mkdir(path, 0755);
    // The stand-in make: one line per call, "cwd|args".
    char stub[1024];
    snprintf(stub, sizeof stub, "#!/bin/sh\necho \"$PWD|$*\" >> '%s/make.log'\nexit 0\n", tmp_dir);
    snprintf(path, sizeof path, "%s/bin/make", tmp_dir);
    write_script(path, stub);
    struct stat before, after;
    int had_reformer = stat("build/reformer", &before) == 0;
    snprintf(cmd, sizeof cmd,
             "cd '%s' && PATH='%s/bin':\"$PATH\" DEVICE_BUILD='%s/device' DEVDEPS_PREFIX='%s/prefix' UNPACK_DIR='%s/wheels' BUDGET_S=60 PYTHON= "
             "cuda/device_check.sh '%s/out' >'%s/stdout' 2>&1",
             root, tmp_dir, tmp_dir, tmp_dir, tmp_dir, tmp_dir, tmp_dir);
    int rc = sh(cmd);
    snprintf(path, sizeof path, "%s/stdout", tmp_dir);
    char *out = slurp(path);
    cr_assert_eq(rc, 77, "device_check.sh without a GPU: exit %d, not 77 (SKIPPED):\n%s", rc, out);

    snprintf(path, sizeof path, "%s/make.log", tmp_dir);
    char *log = slurp(path);
    cr_assert_not_null(log, "make was never called:\n%s", out);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/device/src|", tmp_dir);
    int calls = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        const char *bar = strchr(line, '|');
        if (bar && !strcmp(bar, "|--version")) continue;  // is there a working make? (deps)
        calls++;
        cr_assert(strncmp(line, want, strlen(want)) == 0, "make ran outside the device folder: %s", line);
        cr_assert(strstr(line, "build/reformer") && strstr(line, "build/test_cuda"), "make call: %s", line);
    }
    cr_assert_geq(calls, 1);
    // The sources were copied there (the build needs them), build/ was not.
    snprintf(path, sizeof path, "%s/device/src/cuda/device_check.sh", tmp_dir);
    cr_assert_eq(access(path, R_OK), 0, "no source copy in the device folder");
    snprintf(path, sizeof path, "%s/device/src/build", tmp_dir);
    cr_assert_neq(access(path, F_OK), 0, "build/ was copied into the device folder");
    if (had_reformer) {
        cr_assert_eq(stat("build/reformer", &after), 0);
        cr_assert(before.st_ino == after.st_ino && before.st_mtime == after.st_mtime, "build/reformer was replaced");
    }

    snprintf(path, sizeof path, "%s/out/summary.txt", tmp_dir);
    char *summary = slurp(path);
    cr_assert_not_null(summary);
    cr_assert(strstr(summary, "SKIPPED: no GPU"), "%s", summary);
    static const char *gpu_parts[] = {"test_cuda", "bench_enwik8_64k_bf16_fast", "bench_long_1m_bf16_fast", "peak",
                                      "memcheck", "racecheck", "pytorch", "nccl"};
    for (size_t i = 0; i < sizeof gpu_parts / sizeof gpu_parts[0]; i++) {
        char *at = strstr(summary, gpu_parts[i]);
        cr_assert(at && strstr(at, "SKIPPED (no GPU)"), "%s not SKIPPED:\n%s", gpu_parts[i], summary);
    }
    cr_assert(strstr(summary, "machine ") && strstr(summary, "cuBLAS: "), "no machine line:\n%s", summary);
    snprintf(path, sizeof path, "%s/out/logs.tar.gz", tmp_dir);
    cr_assert_eq(access(path, R_OK), 0, "no logs.tar.gz");
    snprintf(cmd, sizeof cmd, "tar -tzf '%s/out/logs.tar.gz' | grep -q machine.log && tar -tzf '%s/out/logs.tar.gz' | grep -q build.log",
             tmp_dir, tmp_dir);
    cr_assert_eq(sh(cmd), 0, "logs.tar.gz lacks machine.log or build.log");
    free(out), free(log), free(summary);
}

// The part limits add up to the budget (`device_check.sh --limits`), and the
// budget leaves the device call (timeout_s 540, cuda/README.md) a margin.
Test(device_check, part_limits_add_up_to_the_budget) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cuda/device_check.sh --limits > '%s/limits'", tmp_dir);
    cr_assert_eq(sh(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/limits", tmp_dir);
    char *s = slurp(cmd);
    long budget = -1, sum = 0;
    int parts = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        long v;
        if (sscanf(line, "%63s %ld", name, &v) != 2) continue;
        if (!strcmp(name, "budget")) budget = v;
        else sum += v, parts++;
    }
    cr_assert_geq(parts, 12, "%s", s);
    cr_assert_gt(budget, 0);
    cr_assert_leq(sum, budget, "limits add up to %ld s, budget %ld s", sum, budget);
    cr_assert_leq(budget, 540 - 30, "budget %ld s leaves under 30 s of the 540 s call", budget);
    free(s);
}

// find_cuda_parts.sh: toolkit first, then the image's wheels (a stand-in
// python3 that names a made-up nvidia/ folder), then the carried wheels.
Test(device_check, finds_cublas_and_cub_in_toolkit_then_wheels) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; t='%s'; mkdir -p $t/tk/include/cccl/cub $t/tk/lib64 $t/empty/include $t/empty/lib64 "
             "$t/site/nvidia/cu13/include/cccl/cub $t/site/nvidia/cu13/lib $t/bin; "
             "touch $t/tk/include/cublas_v2.h $t/tk/lib64/libcublas.so $t/tk/include/cccl/cub/cub.cuh "
             "$t/site/nvidia/cu13/include/cublas_v2.h $t/site/nvidia/cu13/lib/libcublas.so.13 "
             "$t/site/nvidia/cu13/include/cccl/cub/cub.cuh; "
             "printf '#!/bin/sh\\necho %%s\\n' $t/site/nvidia > $t/bin/py; chmod +x $t/bin/py; "
             "CUDA_HOME=$t/tk PYTHON=$t/bin/py WHEELS=$t/none cuda/find_cuda_parts.sh > $t/tk.out; "
             "CUDA_HOME=$t/empty PYTHON=$t/bin/py WHEELS=$t/none cuda/find_cuda_parts.sh > $t/wheel.out; "
             "CUDA_HOME=$t/empty PYTHON= WHEELS=$t/none cuda/find_cuda_parts.sh > $t/none.out; "
             "mkdir -p $t/w/nvidia/cu13/include/cccl/cub && touch $t/w/nvidia/cu13/include/cccl/cub/cub.cuh && "
             "(cd $t/w && python3 -c 'import zipfile; z = zipfile.ZipFile(\"nvidia_cuda_cccl-1-py3-none-any.whl\", \"w\"); "
             "z.write(\"nvidia/cu13/include/cccl/cub/cub.cuh\"); z.close()') && "
             "CUDA_HOME=$t/empty PYTHON= WHEELS=$t/w UNPACK_DIR=$t/unpacked cuda/find_cuda_parts.sh > $t/carried.out",
             tmp_dir);
    cr_assert_eq(sh(cmd), 0, "the made-up trees or the script failed");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tk.out", tmp_dir);
    char *tk = slurp(path);
    cr_assert(strstr(tk, "CUBLAS_FROM=toolkit") && strstr(tk, "CUB_FROM=toolkit"), "%s", tk);
    snprintf(path, sizeof path, "%s/wheel.out", tmp_dir);
    char *wheel = slurp(path);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "CUBLAS_INC=%s/site/nvidia/cu13/include CUBLAS_LIB=%s/site/nvidia/cu13/lib CUBLAS_FROM=wheel",
             tmp_dir, tmp_dir);
    cr_assert(strstr(wheel, want), "want %s in:\n%s", want, wheel);
    snprintf(want, sizeof want, "CUB_INC=%s/site/nvidia/cu13/include/cccl CUB_FROM=wheel", tmp_dir);
    cr_assert(strstr(wheel, want), "want %s in:\n%s", want, wheel);
    snprintf(path, sizeof path, "%s/none.out", tmp_dir);
    char *none = slurp(path);
    cr_assert(strstr(none, "CUBLAS_FROM=missing") && strstr(none, "CUB_FROM=missing"), "%s", none);
    snprintf(path, sizeof path, "%s/carried.out", tmp_dir);
    char *carried = slurp(path);
    snprintf(want, sizeof want, "CUB_INC=%s/unpacked/nvidia/cu13/include/cccl CUB_FROM=carried", tmp_dir);
    cr_assert(strstr(carried, want), "want %s in:\n%s", want, carried);
    free(tk), free(wheel), free(none), free(carried);
}
