#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include "h5util.h"
#include "util.h"

// The seal lives in HDF5's user block: bytes HDF5 reserves at the start of
// the file and never reads, so the checkpoint stays an ordinary HDF5 file.
#define SEAL_BYTES 512
#define SEAL_MAGIC "reformer checkpoint\n"
static const unsigned char HDF5_SIGNATURE[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

// Values the model computes in. Stored on disk as float32 either way.
#define H5T_NATIVE_REAL (sizeof(real) == sizeof(float) ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE)

static const char *const MOMENT_GROUPS[3] = {"/params", "/optim/m", "/optim/v"};

void ckpt_path(char *out, size_t cap, const char *dir, long step) {
    snprintf(out, cap, "%s/ckpt_%08ld.h5", dir, step);
}

// "layers.3.attn.w_qk" under "/params" -> "/params/layers/3/attn/w_qk".
static void object_path(char *out, size_t cap, const char *group, const char *name) {
    snprintf(out, cap, "%s/%s", group, name);
    for (char *p = out + strlen(group) + 1; *p; p++)
        if (*p == '.') *p = '/';
}

// ------------------------------------------------------------------ seal

static int sys_error(char *err, size_t errlen, const char *path, const char *what) {
    snprintf(err, errlen, "%s: %s: %s", path, what, strerror(errno));
    return -1;
}

// CRC-32 of bytes [from, size) of an open file.
static int crc_from(int fd, off_t from, off_t size, unsigned long *crc) {
    static unsigned char buf[1 << 20];
    *crc = crc32(0L, Z_NULL, 0);
    for (off_t off = from; off < size;) {
        size_t want = (size_t)MIN((off_t)sizeof buf, size - off);
        ssize_t n = pread(fd, buf, want, off);
        if (n <= 0) return -1;
        *crc = crc32(*crc, buf, (uInt)n);
        off += n;
    }
    return 0;
}

static int write_seal(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDWR);
    if (fd < 0) return sys_error(err, errlen, path, "cannot open to seal");
    struct stat st;
    unsigned long crc;
    char header[SEAL_BYTES];
    memset(header, 0, sizeof header);
    int rc = -1;
    if (fstat(fd, &st) != 0) sys_error(err, errlen, path, "stat");
    else if (st.st_size < SEAL_BYTES) snprintf(err, errlen, "%s: shorter than its %d-byte header", path, SEAL_BYTES);
    else if (pread(fd, header, 8, 0) != 8) sys_error(err, errlen, path, "read back");
    else if (!memcmp(header, HDF5_SIGNATURE, 8))  // no user block: the header would overwrite HDF5's superblock
        snprintf(err, errlen, "%s: has no room for a checkpoint header (HDF5 data starts at byte 0)", path);
    else if (crc_from(fd, SEAL_BYTES, st.st_size, &crc)) sys_error(err, errlen, path, "read back");
    else {
        memset(header, 0, sizeof header);
        snprintf(header, sizeof header, SEAL_MAGIC "bytes %lld\ncrc32 %08lx\n", (long long)st.st_size, crc);
        if (pwrite(fd, header, sizeof header, 0) != (ssize_t)sizeof header) sys_error(err, errlen, path, "write header");
        else if (fsync(fd) != 0) sys_error(err, errlen, path, "fsync");
        else rc = 0;
    }
    close(fd);
    return rc;
}

int ckpt_reseal(const char *path, char *err, size_t errlen) { return write_seal(path, err, errlen); }

// Checks the seal before HDF5 sees the file, so a truncated or corrupted
// checkpoint is reported plainly and HDF5's parser only ever meets the bytes
// that were written. A file that starts with the HDF5 signature instead (one
// written by h5py, say) has no seal and is validated by HDF5 and the checks
// below alone.
static int verify_seal(H5Ctx *x) {
    int fd = open(x->path, O_RDONLY | O_NONBLOCK);  // a FIFO is refused below, never waited on
    if (fd < 0) return h5_error(x, "cannot open: %s", strerror(errno));
    struct stat st;
    unsigned char head[SEAL_BYTES + 1];
    memset(head, 0, sizeof head);
    int rc = -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        h5_error(x, "not a regular file");
        goto done;
    }
    ssize_t got = pread(fd, head, SEAL_BYTES, 0);
    if (got < 0) {
        h5_error(x, "cannot read: %s", strerror(errno));
        goto done;
    }
    if (got >= 8 && !memcmp(head, HDF5_SIGNATURE, 8)) {
        rc = 0;  // unsealed HDF5 file
        goto done;
    }
    if (got < (ssize_t)strlen(SEAL_MAGIC) || memcmp(head, SEAL_MAGIC, strlen(SEAL_MAGIC))) {
        unsigned char sig[8];
        if (pread(fd, sig, 8, SEAL_BYTES) == 8 && !memcmp(sig, HDF5_SIGNATURE, 8))
            h5_error(x, "checkpoint header is damaged (corrupted file)");
        else
            h5_error(x, "not a checkpoint: no checkpoint header and not an HDF5 file");
        goto done;
    }
    long long bytes;
    unsigned long want;
    int used = 0;
    head[SEAL_BYTES] = '\0';
    if (sscanf((char *)head + strlen(SEAL_MAGIC), "bytes %lld\ncrc32 %8lx\n%n", &bytes, &want, &used) != 2 || used == 0 ||
        bytes < SEAL_BYTES) {
        h5_error(x, "checkpoint header is damaged (corrupted file)");
        goto done;
    }
    if ((long long)st.st_size < bytes) {
        h5_error(x, "truncated: %lld of %lld bytes", (long long)st.st_size, bytes);
        goto done;
    }
    if ((long long)st.st_size > bytes) {
        h5_error(x, "%lld bytes, but its header says %lld (appended to?)", (long long)st.st_size, bytes);
        goto done;
    }
    unsigned long crc;
    if (crc_from(fd, SEAL_BYTES, st.st_size, &crc)) {
        h5_error(x, "cannot read: %s", strerror(errno));
        goto done;
    }
    if (crc != want) {
        h5_error(x, "checksum mismatch (crc32 %08lx, header says %08lx): the file is corrupted", crc, want);
        goto done;
    }
    rc = 0;
done:
    close(fd);
    return rc;
}

// ------------------------------------------------------------------ write

static int write_dataset(H5Ctx *x, hid_t file, hid_t lcpl, const char *path, int rank, const hsize_t *dims,
                         hid_t file_type, hid_t mem_type, const void *data) {
    hid_t space = h5_check(x, rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR), path), ds = -1;
    if (space >= 0) ds = h5_check(x, H5Dcreate2(file, path, file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), path);
    int rc = ds >= 0 ? (int)h5_check(x, H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), path) : -1;
    h5_close(ds);
    h5_close(space);
    return rc < 0 ? -1 : 0;
}

// Test hook: REFORMER_TEST_CKPT_STALL=<step> makes the writer of that step's
// checkpoint stop for good after /params, so a test can SIGKILL a process that
// is provably in the middle of writing.
static void maybe_stall(hid_t file, long step) {
    const char *s = getenv("REFORMER_TEST_CKPT_STALL");
    if (!s || atol(s) != step) return;
    H5Fflush(file, H5F_SCOPE_GLOBAL);
    for (;;) pause();
}

int ckpt_loss_is_sane(double loss, int vocab_size) { return isfinite(loss) && loss <= 2.0 * log((double)vocab_size); }

#define TOKENIZER_PATH "/tokenizer/spiece_model"

static int write_file(H5Ctx *x, const char *path, Model *m, const CkptState *run, real *host) {
    const long step = run->step, global_batch = run->global_batch;
    const Config *c = &m->cfg;
    const ParamLayout *p = &m->layout;
    hid_t fcpl = h5_check(x, H5Pcreate(H5P_FILE_CREATE), "file properties");
    hid_t fapl = h5_check(x, H5Pcreate(H5P_FILE_ACCESS), "file properties");
    hid_t lcpl = h5_check(x, H5Pcreate(H5P_LINK_CREATE), "link properties");
    hid_t file = -1;
    if (x->failed) goto done;
    // 1.8 file format: checksummed superblock and object headers, readable by
    // any HDF5 from 1.8 on.
    if (h5_check(x, H5Pset_userblock(fcpl, SEAL_BYTES), "user block") < 0 ||
        h5_check(x, H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18), "format version") < 0 ||
        h5_check(x, H5Pset_create_intermediate_group(lcpl, 1), "link properties") < 0)
        goto done;
    file = h5_check(x, H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl), "cannot create");
    if (file < 0) goto done;
    if (h5_write_attr_int64(x, file, "format_version", CKPT_FORMAT_VERSION) ||
        h5_write_attr_int64(x, file, "step", step))
        goto done;
    char loss[64];
    snprintf(loss, sizeof loss, "%.17g", run->loss);
    if (h5_write_attr_string(x, file, "loss", loss) || h5_write_attr_int64(x, file, "last_sane_step", run->last_sane_step) ||
        (run->run_id[0] && h5_write_attr_string(x, file, "run_id", run->run_id)))
        goto done;
    char value[1100];
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        config_get(c, CONFIG_KEYS[i], value, sizeof value);
        if (h5_write_attr_string(x, file, CONFIG_KEYS[i], value)) goto done;
    }
    real *const bufs[3] = {m->params, m->adam_m, m->adam_v};
    for (int g = 0; g < 3; g++) {
        if (g == 1) maybe_stall(file, step);
        m->be->download(host, bufs[g], p->n_params * sizeof(real));
        for (int t = 0; t < p->n_tensors; t++) {
            const TensorInfo *ti = &p->tensors[t];
            char obj[256];
            object_path(obj, sizeof obj, MOMENT_GROUPS[g], ti->name);
            hsize_t dims[2] = {(hsize_t)ti->shape[0], (hsize_t)ti->shape[1]};
            if (write_dataset(x, file, lcpl, obj, ti->ndim, dims, H5T_IEEE_F32LE, H5T_NATIVE_REAL, host + ti->offset))
                goto done;
        }
    }
    int64_t st_step = step, cursor = step, global = global_batch;
    uint64_t seed = c->seed;
    if (write_dataset(x, file, lcpl, "/state/step", 0, NULL, H5T_STD_I64LE, H5T_NATIVE_INT64, &st_step) ||
        write_dataset(x, file, lcpl, "/state/seed", 0, NULL, H5T_STD_U64LE, H5T_NATIVE_UINT64, &seed) ||
        write_dataset(x, file, lcpl, "/state/data_cursor", 0, NULL, H5T_STD_I64LE, H5T_NATIVE_INT64, &cursor) ||
        write_dataset(x, file, lcpl, "/state/global_batch", 0, NULL, H5T_STD_I64LE, H5T_NATIVE_INT64, &global))
        goto done;
    if (run->tokenizer) {
        hsize_t n = (hsize_t)run->tokenizer_len;
        if (write_dataset(x, file, lcpl, TOKENIZER_PATH, 1, &n, H5T_STD_U8LE, H5T_NATIVE_UINT8, run->tokenizer)) goto done;
    }
    h5_check(x, H5Fflush(file, H5F_SCOPE_GLOBAL), "flush");
done:
    // After a failed write (a full disk) the temporary file is worthless:
    // truncating it first gives the disk back its space, so that closing it
    // (HDF5 flushes its metadata on close) can succeed.
    if (file >= 0 && x->failed && truncate(path, 0) != 0) { /* the close below reports the state */ }
    if (file >= 0 && h5_check(x, H5Fclose(file), "close") < 0) {
        x->failed = 1;
        h5_abandon_file(file);
    }
    h5_close(lcpl);
    h5_close(fapl);
    h5_close(fcpl);
    return x->failed ? -1 : 0;
}

// "ckpt_<digits>.h5" -> step, with *tmp = 1 for a trailing ".tmp"; else -1.
static long parse_name(const char *name, int *tmp) {
    if (strncmp(name, "ckpt_", 5)) return -1;
    const char *p = name + 5;
    long step = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (step > (LONG_MAX - 9) / 10) return -1;
        step = step * 10 + (*p - '0');
    }
    if (!digits) return -1;
    if (!strcmp(p, ".h5")) *tmp = 0;
    else if (!strcmp(p, ".h5.tmp")) *tmp = 1;
    else return -1;
    return step;
}

static int cmp_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

// Delete every leftover *.tmp (one writer per directory: any other temporary
// file is a crashed writer's) and, of the checkpoints older than the one just
// written (step `written`, always kept), all but the newest keep - 1 and the
// one of step `protect` (the last sane one of a diverging run). Newer ones
// (a resume skipped them as damaged) are left for the run to overwrite.
static void prune(const char *dir, long written, long protect, int keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    char path[4200];
    for (struct dirent *e; (e = readdir(d));) {
        int tmp;
        long step = parse_name(e->d_name, &tmp);
        if (step < 0) continue;
        if (tmp) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            long *grown = realloc(steps, cap * sizeof *steps);
            if (!grown) break;
            steps = grown;
        }
        steps[n++] = step;
    }
    closedir(d);
    if (keep > 0 && n > (size_t)keep) {
        qsort(steps, n, sizeof *steps, cmp_desc);
        int kept = 1;  // the one just written
        for (size_t i = 0; i < n; i++) {
            if (steps[i] >= written || steps[i] == protect || kept++ < keep) continue;
            ckpt_path(path, sizeof path, dir, steps[i]);
            unlink(path);
        }
    }
    free(steps);
}

// A full disk is refused before HDF5 writes a byte when the file system
// cannot even hold the tensors (params and both moments, float32): a lower
// bound of the file's size, so a checkpoint that fits is never refused.
// A disk that fills during the write fails in HDF5 instead, handled alike.
static int check_space(const char *dir, const Model *m, char *err, size_t errlen) {
    if (getenv("REFORMER_TEST_CKPT_NO_SPACE_CHECK")) return 0;  // test hook: reach the write failure
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) return 0;  // the write itself will say what is wrong
    unsigned long long need = 3ull * m->layout.n_params * sizeof(float);
    unsigned long long avail = (unsigned long long)(geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail) * vfs.f_frsize;
    if (avail >= need) return 0;
    snprintf(err, errlen, "%s: no space left for the checkpoint: it needs at least %.1f MiB, %.1f MiB are free", dir,
             (double)need / (1 << 20), (double)avail / (1 << 20));
    return -1;
}

// Append what a failed save left behind to its message: nothing is lost up
// to the newest checkpoint, and how to go on.
static void explain_failed_save(const char *dir, char *err, size_t errlen) {
    char newest[2048], ignored[512];
    long newest_step;
    size_t n = strlen(err);
    if (ckpt_find_latest(dir, newest, sizeof newest, &newest_step, ignored, sizeof ignored) == 0)
        snprintf(err + n, errlen - n, "; the newest checkpoint, %s (step %ld), is intact: free space, then --resume %s",
                 newest, newest_step, dir);
    else
        snprintf(err + n, errlen - n, "; no checkpoint of this run was written yet");
}

// Host staging of the parameters and moments: the backend's page-locked
// memory where it has some (Backend.host_alloc), else malloc; zeroed on ask.
static void *staging_alloc(const Backend *be, size_t bytes, int zero) {
    void *p = be->host_alloc ? be->host_alloc(bytes) : malloc(bytes);
    if (p && zero) memset(p, 0, bytes);
    return p;
}
static void staging_free(const Backend *be, void *p) {
    if (!p) return;
    if (be->host_free) be->host_free(p);
    else free(p);
}

int ckpt_save(const char *dir, Model *m, long step, long global_batch, int keep, char *path_out, size_t path_cap,
              char *err, size_t errlen) {
    CkptState st = {.step = step, .global_batch = global_batch, .loss = NAN, .last_sane_step = step};
    return ckpt_save_run(dir, m, &st, keep, path_out, path_cap, err, errlen);
}

int ckpt_save_run(const char *dir, Model *m, const CkptState *run, int keep, char *path_out, size_t path_cap,
                  char *err, size_t errlen) {
    const long step = run->step;
    h5_init();
    char path[2048], tmp[2100];
    ckpt_path(path, sizeof path, dir, step);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (path_out) snprintf(path_out, path_cap, "%s", path);
    if (check_space(dir, m, err, errlen)) {
        explain_failed_save(dir, err, errlen);
        return -1;
    }
    H5Ctx x = {.path = tmp, .err = err, .errlen = errlen};
    real *host = staging_alloc(m->be, m->layout.n_params * sizeof(real), 0);
    if (!host) {
        snprintf(err, errlen, "%s: out of memory staging %zu parameters", tmp, m->layout.n_params);
        return -1;
    }
    int rc = write_file(&x, tmp, m, run, host);
    staging_free(m->be, host);
    if (rc == 0) rc = write_seal(tmp, err, errlen);
    if (rc == 0 && rename(tmp, path) != 0) rc = sys_error(err, errlen, path, "cannot rename the temporary file into place");
    if (rc != 0) {
        unlink(tmp);
        explain_failed_save(dir, err, errlen);
        return -1;
    }
    // The rename is durable only once the directory entry is on disk.
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || fsync(dfd) != 0) {
        sys_error(err, errlen, dir, "cannot fsync the directory");
        if (dfd >= 0) close(dfd);
        return -1;
    }
    close(dfd);
    prune(dir, step, run->last_sane_step, keep);
    return 0;
}

int ckpt_check_names(const char *dir, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) return 0;  // no directory yet: nothing in the way
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        int tmp;
        if (parse_name(e->d_name, &tmp) < 0 || tmp) continue;
        char path[2048];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) continue;
        snprintf(err, errlen, "out_dir: %s is %s, not a checkpoint, but named like one: a run would count it as "
                 "its newest checkpoint and fail to write over it; move it out of %s",
                 path, stat(path, &st) != 0 ? "a dangling link" : S_ISDIR(st.st_mode) ? "a directory" :
                 "not a regular file", dir);
        rc = -1;
    }
    closedir(d);
    return rc;
}

int ckpt_find_latest(const char *dir, char *path, size_t cap, long *step, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) return sys_error(err, errlen, dir, "cannot open the directory");
    long best = -1;
    for (struct dirent *e; (e = readdir(d));) {
        int tmp;
        long s = parse_name(e->d_name, &tmp);
        if (s > best && !tmp) best = s;
    }
    closedir(d);
    if (best < 0) {
        snprintf(err, errlen, "%s: no checkpoint (ckpt_<step>.h5) to resume from", dir);
        return -1;
    }
    ckpt_path(path, cap, dir, best);
    *step = best;
    return 0;
}

// ------------------------------------------------------------------- read

// Seal, HDF5 open, format version, config and step. On success *file is open
// (closing it closes everything opened under it: H5F_CLOSE_STRONG).
static int open_checked(H5Ctx *x, hid_t *file, Config *c, long *step) {
    *file = -1;
    if (verify_seal(x)) return -1;
    hid_t fapl = h5_check(x, H5Pcreate(H5P_FILE_ACCESS), "file properties");
    if (fapl < 0 || h5_check(x, H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "file properties") < 0) {
        h5_close(fapl);
        return -1;
    }
    *file = h5_check(x, H5Fopen(x->path, H5F_ACC_RDONLY, fapl), "not a readable HDF5 file");
    h5_close(fapl);
    if (*file < 0) return -1;
    int64_t version, st;
    if (h5_read_attr_int64(x, *file, "format_version", &version)) return -1;
    if (version != CKPT_FORMAT_VERSION)
        return h5_error(x, "format_version %lld is not supported (this build reads %d)", (long long)version,
                        CKPT_FORMAT_VERSION);
    if (h5_read_attr_int64(x, *file, "step", &st)) return -1;
    if (st < 0 || st > INT32_MAX) return h5_error(x, "attribute step is %lld, out of range", (long long)st);
    *step = (long)st;
    // Keys absent from the file keep their defaults, so checkpoints outlive
    // keys added later; the shape keys must be there, and so must seed: it
    // keys the data order, hashing and dropout of every step, so a default
    // in its place would continue another run.
    config_defaults(c);
    char value[1100], msg[1024];
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        const char *key = CONFIG_KEYS[i];
        htri_t has = h5_check(x, H5Aexists(*file, key), key);
        if (has < 0) return -1;
        if (!has && !config_key_is_shape(key) && strcmp(key, "seed")) continue;
        if (h5_read_attr_string(x, *file, key, value, sizeof value)) return -1;
        if (config_set(c, key, value, msg, sizeof msg)) return h5_error(x, "config %s", msg);
    }
    if (config_finalize(c, msg, sizeof msg)) return h5_error(x, "config %s", msg);
    return 0;
}

int ckpt_read_config(const char *path, Config *c, long *step, char *err, size_t errlen) {
    h5_init();
    H5Ctx x = {.path = path, .err = err, .errlen = errlen};
    hid_t file;
    int rc = open_checked(&x, &file, c, step);
    h5_close(file);
    return rc;
}

// A dataset opened with its type and dataspace, closed together.
typedef struct {
    hid_t ds, type, space;
} OpenDataset;

static void close_dataset(OpenDataset *o) {
    h5_close(o->space);
    h5_close(o->type);
    h5_close(o->ds);
}

// Open path; a missing one is reported as "<path> is missing". Returns 0, or
// -1 with everything closed.
static int open_dataset(H5Ctx *x, hid_t file, const char *path, OpenDataset *o) {
    *o = (OpenDataset){-1, -1, -1};
    int e = h5_path_exists(x, file, path);
    if (e <= 0) return e < 0 ? -1 : h5_error(x, "%s is missing", path);
    o->ds = h5_check(x, H5Dopen2(file, path, H5P_DEFAULT), path);
    if (o->ds < 0) return -1;
    o->type = h5_check(x, H5Dget_type(o->ds), path);
    o->space = h5_check(x, H5Dget_space(o->ds), path);
    if (o->type >= 0 && o->space >= 0) return 0;
    close_dataset(o);
    return -1;
}

// Reads dataset path, which must be floating point with exactly t's shape,
// into dst and checks every value is finite (and >= 0 when nonneg).
static int read_tensor(H5Ctx *x, hid_t file, const char *path, const TensorInfo *t, real *dst, int nonneg) {
    OpenDataset o;
    if (open_dataset(x, file, path, &o)) return -1;
    int rc = -1;
    if (H5Tget_class(o.type) != H5T_FLOAT) {
        h5_error(x, "%s is not floating point", path);
        goto done;
    }
    hsize_t dims[H5S_MAX_RANK];
    int rank = (int)h5_check(x, H5Sget_simple_extent_dims(o.space, dims, NULL), path);
    if (rank < 0) goto done;
    int same = rank == t->ndim && dims[0] == (hsize_t)t->shape[0] && (rank < 2 || dims[1] == (hsize_t)t->shape[1]);
    if (!same) {
        char got[128] = "", want[64];
        for (int i = 0; i < rank && strlen(got) < 100; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
        if (t->ndim == 2) snprintf(want, sizeof want, "%d, %d", t->shape[0], t->shape[1]);
        else snprintf(want, sizeof want, "%d", t->shape[0]);
        h5_error(x, "%s has shape [%s], expected [%s]", path, got, want);
        goto done;
    }
    if (h5_check(x, H5Dread(o.ds, H5T_NATIVE_REAL, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst), path) < 0) goto done;
    for (size_t i = 0; i < t->size; i++) {
        if (!isfinite(dst[i])) {
            h5_error(x, "%s[%zu] is %g, not a finite number", path, i, (double)dst[i]);
            goto done;
        }
        if (nonneg && dst[i] < 0) {
            h5_error(x, "%s[%zu] is %g, but second moments are never negative", path, i, (double)dst[i]);
            goto done;
        }
    }
    rc = 0;
done:
    close_dataset(&o);
    return rc;
}

// A scalar integer dataset (rank 0, or one element).
static int read_scalar(H5Ctx *x, hid_t file, const char *path, int is_unsigned, void *out) {
    OpenDataset o;
    if (open_dataset(x, file, path, &o)) return -1;
    int rc = -1;
    if (H5Tget_class(o.type) != H5T_INTEGER) h5_error(x, "%s is not an integer", path);
    else if (H5Sget_simple_extent_npoints(o.space) != 1) h5_error(x, "%s is not a single value", path);
    else if (h5_check(x, H5Dread(o.ds, is_unsigned ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64, H5S_ALL, H5S_ALL,
                                 H5P_DEFAULT, out), path) >= 0)
        rc = 0;
    close_dataset(&o);
    return rc;
}

int ckpt_read_tokenizer(const char *path, void **bytes, size_t *n, char *err, size_t errlen) {
    h5_init();
    *bytes = NULL;
    *n = 0;
    H5Ctx x = {.path = path, .err = err, .errlen = errlen};
    Config c;
    long step;
    hid_t file;
    int rc = open_checked(&x, &file, &c, &step);
    int has = rc == 0 ? h5_path_exists(&x, file, TOKENIZER_PATH) : -1;
    if (has == 1) {
        OpenDataset o;
        rc = open_dataset(&x, file, TOKENIZER_PATH, &o);
        if (rc == 0) {
            hssize_t len = H5Sget_simple_extent_npoints(o.space);
            if (H5Tget_class(o.type) != H5T_INTEGER || len <= 0)
                rc = h5_error(&x, "%s is not a non-empty byte array", TOKENIZER_PATH);
            else {
                *bytes = malloc((size_t)len);
                if (!*bytes) rc = h5_error(&x, "out of memory reading %s", TOKENIZER_PATH);
                else if (h5_check(&x, H5Dread(o.ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, *bytes),
                                  TOKENIZER_PATH) < 0) {
                    free(*bytes);
                    *bytes = NULL;
                    rc = -1;
                } else {
                    *n = (size_t)len;
                }
            }
            close_dataset(&o);
        }
    } else if (has < 0) {
        rc = -1;
    }
    h5_close(file);
    return rc;
}

// The optional root attributes loss, last_sane_step and run_id into st.
static int read_run_attrs(H5Ctx *x, hid_t file, CkptState *st) {
    char text[64];
    int64_t sane;
    htri_t has = h5_check(x, H5Aexists(file, "loss"), "loss");
    if (has < 0 || (has && h5_read_attr_string(x, file, "loss", text, sizeof text))) return -1;
    if (has) st->loss = strtod(text, NULL);
    has = h5_check(x, H5Aexists(file, "last_sane_step"), "last_sane_step");
    if (has < 0 || (has && h5_read_attr_int64(x, file, "last_sane_step", &sane))) return -1;
    if (has) {
        if (sane < 0 || sane > st->step)
            return h5_error(x, "attribute last_sane_step is %lld, not in [0, step %ld]", (long long)sane, st->step);
        st->last_sane_step = (long)sane;
    }
    has = h5_check(x, H5Aexists(file, "run_id"), "run_id");
    if (has < 0 || (has && h5_read_attr_string(x, file, "run_id", st->run_id, sizeof st->run_id))) return -1;
    return 0;
}

// Every tensor (shapes of layout p, finite, second moments >= 0) and /state
// of an open checkpoint whose config c and step were read by open_checked.
// host[g] (parameters, m, v) receive the values; a NULL host[g] reads into
// scratch (validation only). st receives the state.
static int read_checked(H5Ctx *x, hid_t file, const Config *c, long step, const ParamLayout *p, real *const host[3],
                        CkptState *st) {
    size_t largest = 1;
    for (int t = 0; t < p->n_tensors; t++) largest = MAX(largest, p->tensors[t].size);
    real *scratch = NULL;
    int rc = -1;
    for (int g = 0; g < 3; g++) {
        if (!host[g] && !scratch && !(scratch = malloc(largest * sizeof(real)))) {
            h5_error(x, "out of memory staging %zu values", largest);
            goto done;
        }
        for (int t = 0; t < p->n_tensors; t++) {
            char obj[256];
            object_path(obj, sizeof obj, MOMENT_GROUPS[g], p->tensors[t].name);
            real *dst = host[g] ? host[g] + p->tensors[t].offset : scratch;
            if (read_tensor(x, file, obj, &p->tensors[t], dst, g == 2)) goto done;
        }
    }
    int64_t s_step, cursor;
    uint64_t seed;
    if (read_scalar(x, file, "/state/step", 0, &s_step) || read_scalar(x, file, "/state/seed", 1, &seed) ||
        read_scalar(x, file, "/state/data_cursor", 0, &cursor))
        goto done;
    if (s_step != step) {
        h5_error(x, "/state/step is %lld but the step attribute is %ld", (long long)s_step, step);
        goto done;
    }
    if (seed != c->seed) {
        h5_error(x, "/state/seed is %llu but the config has seed=%llu", (unsigned long long)seed,
                 (unsigned long long)c->seed);
        goto done;
    }
    if (cursor != step) {  // batches are a function of the step in this format version
        h5_error(x, "/state/data_cursor is %lld, expected the step %ld", (long long)cursor, step);
        goto done;
    }
    // Older checkpoints were written by one process: their global batch is
    // the config's batch.
    int64_t global = c->batch;
    int has_global = h5_path_exists(x, file, "/state/global_batch");
    if (has_global < 0 || (has_global && read_scalar(x, file, "/state/global_batch", 0, &global))) goto done;
    if (global < c->batch || global % c->batch) {
        h5_error(x, "/state/global_batch is %lld, not a multiple of the config's batch=%d", (long long)global,
                 c->batch);
        goto done;
    }
    *st = (CkptState){.step = step, .seed = seed, .data_cursor = (long)cursor, .global_batch = (long)global,
                      .loss = NAN, .last_sane_step = step};
    if (read_run_attrs(x, file, st)) goto done;
    rc = 0;
done:
    free(scratch);
    return rc;
}

int ckpt_load(const char *path, Model *m, CkptState *st_out, char *err, size_t errlen) {
    h5_init();
    H5Ctx x = {.path = path, .err = err, .errlen = errlen};
    const ParamLayout *p = &m->layout;
    real *host[3] = {0};
    Config c;
    long step;
    hid_t file;
    CkptState st;
    int rc = -1;
    if (open_checked(&x, &file, &c, &step)) goto done;
    char have[1100], want[1100];
    for (int k = 0; CONFIG_SHAPE_KEYS[k]; k++) {
        config_get(&c, CONFIG_SHAPE_KEYS[k], have, sizeof have);
        config_get(&m->cfg, CONFIG_SHAPE_KEYS[k], want, sizeof want);
        if (strcmp(have, want)) {
            h5_error(&x, "config mismatch: the checkpoint has %s=%s, the model has %s=%s", CONFIG_SHAPE_KEYS[k], have,
                     CONFIG_SHAPE_KEYS[k], want);
            goto done;
        }
    }
    for (int g = 0; g < 3; g++) {
        host[g] = staging_alloc(m->be, p->n_params * sizeof(real), 1);  // zeroed: alignment gaps between tensors
        if (!host[g]) {
            h5_error(&x, "out of memory staging %zu parameters", p->n_params);
            goto done;
        }
    }
    if (read_checked(&x, file, &c, step, p, host, &st)) goto done;
    real *const dst[3] = {m->params, m->adam_m, m->adam_v};
    for (int g = 0; g < 3; g++) m->be->upload(dst[g], host[g], p->n_params * sizeof(real));
    if (st_out) *st_out = st;
    rc = 0;
done:
    h5_close(file);
    for (int g = 0; g < 3; g++) staging_free(m->be, host[g]);
    return rc;
}

int ckpt_verify(const char *path, Config *c, long *step, CkptState *st_out, char *err, size_t errlen) {
    h5_init();
    H5Ctx x = {.path = path, .err = err, .errlen = errlen};
    hid_t file;
    int rc = open_checked(&x, &file, c, step);
    if (rc == 0) {
        ParamLayout p;
        param_layout_build(&p, c);
        real *const none[3] = {NULL, NULL, NULL};
        CkptState st;
        rc = read_checked(&x, file, c, *step, &p, none, &st);
        if (rc == 0 && st_out) *st_out = st;
        param_layout_free(&p);
    }
    h5_close(file);
    return rc;
}

int ckpt_read_run_id(const char *path, char *run_id, size_t cap, char *err, size_t errlen) {
    h5_init();
    H5Ctx x = {.path = path, .err = err, .errlen = errlen};
    hid_t file;
    Config c;
    long step;
    run_id[0] = '\0';
    int rc = open_checked(&x, &file, &c, &step);
    if (rc == 0) {
        htri_t has = h5_check(&x, H5Aexists(file, "run_id"), "run_id");
        if (has < 0 || (has && h5_read_attr_string(&x, file, "run_id", run_id, cap))) rc = -1;
    }
    h5_close(file);
    return rc;
}

long *ckpt_list_steps(const char *dir, size_t *n, char *err, size_t errlen) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        sys_error(err, errlen, dir, "cannot open the directory");
        return NULL;
    }
    long *steps = NULL;
    size_t cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        int tmp;
        long s = parse_name(e->d_name, &tmp);
        if (s < 0 || tmp) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            long *grown = realloc(steps, cap * sizeof *steps);
            if (!grown) break;
            steps = grown;
        }
        steps[(*n)++] = s;
    }
    closedir(d);
    if (*n) qsort(steps, *n, sizeof *steps, cmp_desc);
    return steps ? steps : calloc(1, sizeof *steps);
}

int ckpt_find_resumable(const char *dir, char *path, size_t cap, long *step, Config *c, CkptState *st,
                        char *skipped, size_t skipped_cap, char *err, size_t errlen) {
    size_t n;
    if (skipped_cap) skipped[0] = '\0';
    long *steps = ckpt_list_steps(dir, &n, err, errlen);
    if (!steps) return -1;
    if (n == 0) {
        free(steps);
        snprintf(err, errlen, "%s: no checkpoint (ckpt_<step>.h5) to resume from", dir);
        return -1;
    }
    char why[2048], all[8192] = "";
    for (size_t i = 0; i < n; i++) {
        ckpt_path(path, cap, dir, steps[i]);
        if (ckpt_verify(path, c, step, st, why, sizeof why) == 0) {
            long named = steps[i];
            free(steps);
            if (*step == named) return 0;
            snprintf(err, errlen,
                     "%s holds step %ld, not the step %ld of its name: a checkpoint renamed into %s, not this run's; "
                     "move it out of the directory",
                     path, *step, named, dir);
            return -1;
        }
        // why begins with the path: keep it, one skipped file per line.
        size_t used = strlen(skipped);
        if (skipped_cap > used) snprintf(skipped + used, skipped_cap - used, "%s\n", why);
        used = strlen(all);
        snprintf(all + used, sizeof all - used, "%s%s", used ? "; " : "", why);
    }
    free(steps);
    snprintf(err, errlen, "%s: no valid checkpoint to resume from: %s", dir, all);
    return -1;
}
