// HDF5 helpers shared by the checkpoint, metrics and CLI tests: read what
// the program wrote with the plain HDF5 C API (as an outside reader would),
// and damage checkpoints on purpose.
#pragma once
#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"

// Whole file into memory (NULL if unreadable); *len gets its size.
static inline unsigned char *slurp(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    cr_assert_not_null(buf);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

static inline void spit(const char *path, const unsigned char *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

// Open an HDF5 file for reading the way a monitoring tool would: as a SWMR
// reader (works while the trainer writes, and after it was killed), else
// plainly. Returns -1 on failure, with HDF5's error printing off.
static inline hid_t h5_open_reader(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    if (f < 0) f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    return f;
}

// A 1-D dataset of an HDF5 file (metrics column) as doubles: returns the row
// count (at most cap are stored), or -1 if the file or column cannot be read.
static inline long h5_read_column(const char *path, const char *name, double *out, long cap) {
    hid_t f = h5_open_reader(path);
    if (f < 0) return -1;
    long rows = -1;
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds >= 0) {
        hid_t space = H5Dget_space(ds);
        hsize_t n = 0;
        if (H5Sget_simple_extent_ndims(space) == 1 && H5Sget_simple_extent_dims(space, &n, NULL) == 1) {
            double *all = malloc((n ? n : 1) * sizeof(double));
            if (H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, all) >= 0) {
                rows = (long)n;
                memcpy(out, all, (size_t)(rows < cap ? rows : cap) * sizeof(double));
            }
            free(all);
        }
        H5Sclose(space);
        H5Dclose(ds);
    }
    H5Fclose(f);
    return rows;
}

// Every dataset under group, visited in name order: its path then its raw
// bytes, concatenated into one buffer (*len bytes), for bit-exact comparison.
typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int datasets;
} GroupBytes;

static inline void group_bytes_add(GroupBytes *g, const void *p, size_t n) {
    if (g->len + n > g->cap) {
        g->cap = (g->len + n) * 2 + 1024;
        g->buf = realloc(g->buf, g->cap);
        cr_assert_not_null(g->buf);
    }
    memcpy(g->buf + g->len, p, n);
    g->len += n;
}

static inline herr_t group_bytes_visit(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    if (info->type != H5O_TYPE_DATASET) return 0;
    GroupBytes *g = data;
    hid_t ds = H5Dopen2(obj, name, H5P_DEFAULT), type = H5Dget_type(ds), space = H5Dget_space(ds);
    size_t n = (size_t)H5Sget_simple_extent_npoints(space) * H5Tget_size(type);
    unsigned char *raw = malloc(n ? n : 1);
    cr_assert(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0, "cannot read %s", name);
    group_bytes_add(g, name, strlen(name) + 1);
    group_bytes_add(g, raw, n);
    free(raw);
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(ds);
    g->datasets++;
    return 0;
}

static inline GroupBytes h5_group_bytes(const char *path, const char *group) {
    GroupBytes g = {0};
    hid_t f = h5_open_reader(path);
    cr_assert(f >= 0, "cannot open %s", path);
    hid_t grp = H5Gopen2(f, group, H5P_DEFAULT);
    cr_assert(grp >= 0, "%s has no group %s", path, group);
    cr_assert(H5Ovisit(grp, H5_INDEX_NAME, H5_ITER_INC, group_bytes_visit, &g) >= 0);
    H5Gclose(grp);
    H5Fclose(f);
    return g;
}

// ------------------------------------------------- damaging a checkpoint

// Open a checkpoint for editing; ckpt_edit_done closes it and reseals it, so
// the loader's own checks (not the checksum) must catch the damage.
static inline hid_t ckpt_edit_open(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0, "cannot open %s for editing", path);
    return f;
}

static inline void ckpt_edit_done(const char *path, hid_t f) {
    cr_assert(H5Fclose(f) >= 0);
    unsigned char head[8] = {0};
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp);
    size_t got = fread(head, 1, 8, fp);
    fclose(fp);
    if (got == 8 && !memcmp(head, "\x89HDF\r\n\x1a\n", 8)) return;  // unsealed: nothing to reseal
    char err[1024];
    cr_assert_eq(ckpt_reseal(path, err, sizeof err), 0, "%s", err);
}

static inline void ckpt_set_format_version(const char *path, long long v) {
    hid_t f = ckpt_edit_open(path);
    cr_assert(H5Adelete(f, "format_version") >= 0);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "format_version", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_LLONG, &v) >= 0);
    H5Aclose(a);
    H5Sclose(space);
    ckpt_edit_done(path, f);
}

static inline void ckpt_delete(const char *path, const char *obj) {
    hid_t f = ckpt_edit_open(path);
    cr_assert(H5Ldelete(f, obj, H5P_DEFAULT) >= 0, "cannot delete %s", obj);
    ckpt_edit_done(path, f);
}

// Replace dataset obj by a zero float32 dataset of shape [rows, cols]
// (cols 0: one-dimensional).
static inline void ckpt_reshape(const char *path, const char *obj, int rows, int cols) {
    hid_t f = ckpt_edit_open(path);
    cr_assert(H5Ldelete(f, obj, H5P_DEFAULT) >= 0, "cannot delete %s", obj);
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t space = H5Screate_simple(cols ? 2 : 1, dims, NULL);
    hid_t ds = H5Dcreate2(f, obj, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(ds >= 0);
    float *zeros = calloc((size_t)rows * (size_t)(cols ? cols : 1), sizeof(float));
    cr_assert(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0);
    free(zeros);
    H5Dclose(ds);
    H5Sclose(space);
    ckpt_edit_done(path, f);
}

// Set element i of float dataset obj to value.
static inline void ckpt_poke(const char *path, const char *obj, size_t i, float value) {
    hid_t f = ckpt_edit_open(path);
    hid_t ds = H5Dopen2(f, obj, H5P_DEFAULT);
    cr_assert(ds >= 0, "no dataset %s", obj);
    hid_t space = H5Dget_space(ds);
    size_t n = (size_t)H5Sget_simple_extent_npoints(space);
    cr_assert(i < n);
    float *data = malloc(n * sizeof(float));
    cr_assert(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    data[i] = value;
    cr_assert(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    free(data);
    H5Sclose(space);
    H5Dclose(ds);
    ckpt_edit_done(path, f);
}

// 1 if the h5dump program is installed.
static inline int have_h5dump(void) { return system("command -v h5dump >/dev/null 2>&1") == 0; }
