// HDF5 plumbing shared by checkpoints and metrics: every HDF5 call goes
// through h5_check, which turns a failure into one line naming the file being
// read or written, what was being done, HDF5's own innermost reason and the
// source line, instead of HDF5's multi-line error-stack dump.
#pragma once
#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

// The first failure of a sequence of HDF5 calls on one file.
typedef struct {
    const char *path;  // named at the start of every message
    char *err;
    size_t errlen;
    int failed;
} H5Ctx;

// Once per process before any HDF5 call (idempotent): switch off HDF5's
// automatic error-stack printing (h5_check reports instead), and replace
// HDF5's exit handler by one that closes the files still open except those
// given to h5_abandon_file.
void h5_init(void);

// A file whose H5Fclose failed (a write error): HDF5 has already torn it
// down halfway, so any further call on it crashes; it is never touched again,
// not even at exit (where HDF5's own handler crashed on it).
void h5_abandon_file(hid_t file);

// Checks the result of an HDF5 call (hid_t or herr_t: negative = failure).
// On failure, records "path: what: <HDF5's reason> (src.c:line)" unless an
// earlier failure is already recorded. Returns value unchanged.
int64_t h5_check_at(H5Ctx *x, int64_t value, const char *file, int line, const char *what);
#define h5_check(x, call, what) h5_check_at((x), (int64_t)(call), __FILE__, __LINE__, (what))

// Records a validation failure "path: <message>" (first one wins); returns -1.
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int h5_error(H5Ctx *x, const char *fmt, ...);

// Close any HDF5 identifier (file, group, dataset, space, type, attribute,
// property list) if valid. For cleanup paths: failures are ignored.
void h5_close(hid_t id);

// Attributes on obj. Strings are fixed-length UTF-8 (h5py reads them as
// bytes: .decode()); integers are 64-bit. Readers check the attribute's
// class and report a missing or mistyped attribute by name. All return 0 or -1.
int h5_write_attr_string(H5Ctx *x, hid_t obj, const char *name, const char *value);
int h5_write_attr_int64(H5Ctx *x, hid_t obj, const char *name, int64_t value);
int h5_read_attr_string(H5Ctx *x, hid_t obj, const char *name, char *buf, size_t cap);
int h5_read_attr_int64(H5Ctx *x, hid_t obj, const char *name, int64_t *value);

// 1 if every link along an absolute path like "/a/b/c" exists, else 0 (-1 on
// an HDF5 failure). H5Lexists alone fails when an intermediate group is absent.
int h5_path_exists(H5Ctx *x, hid_t file, const char *path);
