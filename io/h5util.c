#include "h5util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Files whose close failed (a write error, typically a full disk): HDF5 keeps
// them half-closed, and its own exit handler (H5_term_library) then crashed
// closing them again (SIGSEGV, status 139, after a disk-full checkpoint).
void h5_close(hid_t id);
#define MAX_ABANDONED 16
static hid_t abandoned[MAX_ABANDONED];
static int n_abandoned;

// Instead of HDF5's exit handler: close every object still open, then every
// file except the abandoned ones (metrics.h5 on an error exit, so that it is
// left closed and plain readers open it), and leave the library itself to
// the end of the process. (An open dataset keeps its file open past
// H5Fclose, hence the objects first. Checkpoint writes leave no object open
// when they fail.)
static void close_ids(unsigned types, int skip_abandoned) {
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, types);
    if (n <= 0) return;
    hid_t *ids = calloc((size_t)n, sizeof *ids);
    if (!ids) return;
    n = H5Fget_obj_ids(H5F_OBJ_ALL, types, (size_t)n, ids);
    for (ssize_t i = 0; i < n; i++) {
        int skip = 0;
        for (int k = 0; skip_abandoned && k < n_abandoned; k++) skip |= abandoned[k] == ids[i];
        if (!skip) h5_close(ids[i]);
    }
    free(ids);
}

static void close_files_at_exit(void) {
    close_ids(H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR, 0);
    close_ids(H5F_OBJ_FILE, 1);
}

void h5_init(void) {
    static int done;
    if (done) return;
    done = 1;
    H5dont_atexit();  // before the library initialises: see close_files_at_exit
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    atexit(close_files_at_exit);
}

void h5_abandon_file(hid_t file) {
    if (file >= 0 && n_abandoned < MAX_ABANDONED) abandoned[n_abandoned++] = file;
}

// H5Ewalk2 callback: keep the innermost (most specific) description, which
// says what was wrong ("truncated file: eof = ...", "file signature not
// found"); the outer entries only repeat which API call failed.
// A failed system call reads "file write failed: time = ..., filename = ...,
// errno = 28, error message = 'No space left on device', buf = ...": keep
// what failed and the system's message.
static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data) {
    if (n != 0 || !e->desc) return 0;
    const char *msg = strstr(e->desc, "error message = '"), *colon = strchr(e->desc, ':');
    if (msg && colon && colon < msg) {
        msg += strlen("error message = '");
        const char *end = strchr(msg, '\'');
        snprintf(data, 256, "%.*s: %.*s", (int)(colon - e->desc), e->desc, (int)(end ? end - msg : 120), msg);
    } else {
        snprintf(data, 256, "%s", e->desc);
    }
    return 0;
}

static void one_line(char *s) {
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

int64_t h5_check_at(H5Ctx *x, int64_t value, const char *file, int line, const char *what) {
    if (value >= 0) return value;
    char reason[256] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, reason);
    H5Eclear2(H5E_DEFAULT);
    if (!x->failed) {
        x->failed = 1;
        snprintf(x->err, x->errlen, "%s: %s%s%s (%s:%d)", x->path, what, reason[0] ? ": " : "", reason, file, line);
        one_line(x->err);
    }
    return value;
}

int h5_error(H5Ctx *x, const char *fmt, ...) {
    if (x->failed) return -1;
    x->failed = 1;
    int n = snprintf(x->err, x->errlen, "%s: ", x->path);
    if (n < 0 || (size_t)n >= x->errlen) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    one_line(x->err);
    return -1;
}

void h5_close(hid_t id) {
    if (id < 0) return;
    H5E_BEGIN_TRY {
        switch (H5Iget_type(id)) {
        case H5I_FILE: H5Fclose(id); break;
        case H5I_GROUP: H5Gclose(id); break;
        case H5I_DATASET: H5Dclose(id); break;
        case H5I_DATASPACE: H5Sclose(id); break;
        case H5I_DATATYPE: H5Tclose(id); break;
        case H5I_ATTR: H5Aclose(id); break;
        case H5I_GENPROP_LST: H5Pclose(id); break;
        default: break;
        }
    }
    H5E_END_TRY;
}

// Fixed-length UTF-8 strings of `size` bytes, NUL-padded. Not variable-length
// ones: those live in HDF5's global heap, which carries no checksum, and a
// corrupted heap entry crashes HDF5's reader (seen when fuzzing); a fixed
// string sits inside the checksummed object header.
static hid_t string_type(H5Ctx *x, size_t size) {
    hid_t t = h5_check(x, H5Tcopy(H5T_C_S1), "string type");
    if (t < 0) return t;
    if (h5_check(x, H5Tset_size(t, size ? size : 1), "string type") < 0 ||
        h5_check(x, H5Tset_strpad(t, H5T_STR_NULLPAD), "string type") < 0 ||
        h5_check(x, H5Tset_cset(t, H5T_CSET_UTF8), "string type") < 0) {
        h5_close(t);
        return -1;
    }
    return t;
}

static int write_attr(H5Ctx *x, hid_t obj, const char *name, hid_t type, const void *value) {
    char what[160];
    snprintf(what, sizeof what, "writing attribute %s", name);
    hid_t space = h5_check(x, H5Screate(H5S_SCALAR), what), attr = -1;
    if (space >= 0) attr = h5_check(x, H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), what);
    int rc = attr >= 0 ? (int)h5_check(x, H5Awrite(attr, type, value), what) : -1;
    h5_close(attr);
    h5_close(space);
    return rc < 0 ? -1 : 0;
}

int h5_write_attr_string(H5Ctx *x, hid_t obj, const char *name, const char *value) {
    hid_t t = string_type(x, strlen(value));
    if (t < 0) return -1;
    int rc = write_attr(x, obj, name, t, value);  // "" is one NUL byte
    h5_close(t);
    return rc;
}

int h5_write_attr_int64(H5Ctx *x, hid_t obj, const char *name, int64_t value) {
    return write_attr(x, obj, name, H5T_STD_I64LE, &value);
}

// Opens attribute name of obj, which must be a scalar (or one-element) of
// class cls; reports absence or another class by name.
static hid_t open_attr(H5Ctx *x, hid_t obj, const char *name, H5T_class_t cls, const char *cls_name) {
    char what[160];
    snprintf(what, sizeof what, "attribute %s", name);
    htri_t exists = h5_check(x, H5Aexists(obj, name), what);
    if (exists < 0) return -1;
    if (!exists) return h5_error(x, "attribute %s is missing", name);
    hid_t attr = h5_check(x, H5Aopen(obj, name, H5P_DEFAULT), what);
    if (attr < 0) return -1;
    hid_t type = h5_check(x, H5Aget_type(attr), what), space = h5_check(x, H5Aget_space(attr), what);
    int ok = type >= 0 && space >= 0;
    if (ok && H5Tget_class(type) != cls) ok = h5_error(x, "attribute %s is not %s", name, cls_name) == 0;
    if (ok && H5Sget_simple_extent_npoints(space) != 1) ok = h5_error(x, "attribute %s is not a single value", name) == 0;
    h5_close(type);
    h5_close(space);
    if (!ok) {
        h5_close(attr);
        return -1;
    }
    return attr;
}

// Strings as our writer stores them (fixed-length UTF-8, NUL-padded) and as
// h5py stores them: a str is variable-length UTF-8, numpy bytes fixed-length
// ASCII. Each is read in its own character set (HDF5 converts between ASCII
// and UTF-8 in no direction) and padding. A variable-length value lives in
// HDF5's global heap, which has no checksum: our own (sealed) files never
// hold one, and a sealed file is CRC-checked before HDF5 parses it.
int h5_read_attr_string(H5Ctx *x, hid_t obj, const char *name, char *buf, size_t cap) {
    hid_t attr = open_attr(x, obj, name, H5T_STRING, "a string");
    if (attr < 0) return -1;
    char what[160];
    snprintf(what, sizeof what, "reading attribute %s", name);
    hid_t ftype = h5_check(x, H5Aget_type(attr), what), t = -1;
    int rc = -1;
    htri_t vlen = ftype >= 0 ? h5_check(x, H5Tis_variable_str(ftype), what) : -1;
    size_t size = vlen == 0 ? H5Tget_size(ftype) : 0;
    H5T_cset_t cset = ftype >= 0 ? H5Tget_cset(ftype) : H5T_CSET_ERROR;
    if (vlen < 0 || cset == H5T_CSET_ERROR) h5_check(x, -1, what);
    else if (vlen) {
        char *value = NULL;
        if ((t = h5_check(x, H5Tcopy(H5T_C_S1), what)) >= 0 && h5_check(x, H5Tset_size(t, H5T_VARIABLE), what) >= 0 &&
            h5_check(x, H5Tset_cset(t, cset), what) >= 0 && h5_check(x, H5Aread(attr, t, &value), what) >= 0) {
            if (!value) h5_error(x, "attribute %s is a null string", name);
            else if (strlen(value) >= cap) h5_error(x, "attribute %s is longer than %zu characters", name, cap - 1);
            else {
                memcpy(buf, value, strlen(value) + 1);
                rc = 0;
            }
            H5free_memory(value);
        }
    } else if (size == 0) h5_check(x, -1, what);
    else if (size >= cap) h5_error(x, "attribute %s is longer than %zu characters", name, cap - 1);
    else if ((t = h5_check(x, H5Tcopy(ftype), what)) >= 0 && h5_check(x, H5Aread(attr, t, buf), what) >= 0) {
        buf[size] = '\0';  // NUL-padded to size: a full-length value has no terminator
        if (H5Tget_strpad(ftype) == H5T_STR_SPACEPAD)  // Fortran-style padding
            for (size_t n = strlen(buf); n > 0 && buf[n - 1] == ' '; n--) buf[n - 1] = '\0';
        rc = 0;
    }
    h5_close(t);
    h5_close(ftype);
    h5_close(attr);
    return rc;
}

int h5_read_attr_int64(H5Ctx *x, hid_t obj, const char *name, int64_t *value) {
    hid_t attr = open_attr(x, obj, name, H5T_INTEGER, "an integer");
    if (attr < 0) return -1;
    char what[160];
    snprintf(what, sizeof what, "reading attribute %s", name);
    int rc = (int)h5_check(x, H5Aread(attr, H5T_NATIVE_INT64, value), what);
    h5_close(attr);
    return rc < 0 ? -1 : 0;
}

int h5_path_exists(H5Ctx *x, hid_t file, const char *path) {
    char prefix[512];
    size_t n = strlen(path);
    if (n >= sizeof prefix) return h5_error(x, "object path too long: %s", path);
    for (size_t i = 1; i <= n; i++) {
        if (i < n && path[i] != '/') continue;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        htri_t e = h5_check(x, H5Lexists(file, prefix, H5P_DEFAULT), prefix);
        if (e <= 0) return e < 0 ? -1 : 0;
    }
    return 1;
}
