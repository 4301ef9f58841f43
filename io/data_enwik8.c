// enwik8 (the first 10^8 bytes of an English Wikipedia dump): the raw file,
// memory-mapped, or enwik8.zip with its entry `enwik8`, inflated once into
// memory with libzip. The standard split: [0, 90M) train, [90M, 95M)
// validation, [95M, 100M) test.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "data_source.h"

static int is_zip_name(const char *path) {
    size_t n = strlen(path);
    return n >= 4 && !strcmp(path + n - 4, ".zip");
}

// "cannot <what> the entry enwik8 of <path>: <libzip's reason>".
static int zip_fail(zip_t *z, char *err, size_t errlen, const char *what, const char *path) {
    int rc = data_fail(err, errlen, "data: cannot %s the entry enwik8 of '%s': %s", what, path,
                       zip_error_strerror(zip_get_error(z)));
    zip_discard(z);
    return rc;
}

// Inflate the entry `enwik8` of the archive ds->path into ds->owned.
static int inflate_zip(Dataset *ds, const void **bytes, char *err, size_t errlen) {
    const char *path = ds->path;
    int code;
    zip_t *z = zip_open(path, ZIP_RDONLY, &code);
    if (!z) {
        zip_error_t e;
        zip_error_init_with_code(&e, code);
        int rc = data_fail(err, errlen, "data: cannot read '%s' as a zip archive: %s", path, zip_error_strerror(&e));
        zip_error_fini(&e);
        return rc;
    }
    zip_int64_t index = zip_name_locate(z, "enwik8", 0);
    if (index < 0) {
        zip_discard(z);
        return data_fail(err, errlen, "data: '%s' holds no entry named 'enwik8' (expected the enwik8.zip of the Hutter prize)",
                         path);
    }
    zip_stat_t st;
    if (zip_stat_index(z, (zip_uint64_t)index, 0, &st) != 0)
        return zip_fail(z, err, errlen, "read", path);
    if (!(st.valid & ZIP_STAT_SIZE) || st.size != ENWIK8_BYTES) {
        zip_discard(z);
        return data_fail(err, errlen, "data: the entry enwik8 of '%s' has %llu bytes, not enwik8's %u", path,
                         (unsigned long long)st.size, ENWIK8_BYTES);
    }
    char *buf = malloc(ENWIK8_BYTES);
    if (!buf) {
        zip_discard(z);
        return data_fail(err, errlen, "data: no memory to inflate '%s' (%u bytes)", path, ENWIK8_BYTES);
    }
    ds->owned = buf;
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)index, 0);
    if (!f) return zip_fail(z, err, errlen, "open", path);
    zip_uint64_t got = 0;
    while (got < ENWIK8_BYTES) {
        zip_int64_t n = zip_fread(f, buf + got, ENWIK8_BYTES - got);
        if (n <= 0) break;
        got += (zip_uint64_t)n;
    }
    // Reading to the end checks the entry's CRC; a damaged archive fails here.
    char extra;
    zip_int64_t tail = got == ENWIK8_BYTES ? zip_fread(f, &extra, 1) : -1;
    int bad = got != ENWIK8_BYTES || tail != 0;
    if (bad) {
        data_fail(err, errlen, "data: the entry enwik8 of '%s' is damaged (%llu of %u bytes read): %s", path,
                  (unsigned long long)got, ENWIK8_BYTES, zip_error_strerror(zip_file_get_error(f)));
    }
    zip_fclose(f);
    zip_discard(z);
    *bytes = buf;
    return bad ? -1 : 0;
}

int data_open_enwik8(Dataset *ds, char *err, size_t errlen) {
    if (data_require_byte_vocab(ds, err, errlen)) return -1;
    struct stat st;
    if (stat(ds->path, &st) != 0) return data_fail(err, errlen, "data: cannot open '%s': %s", ds->path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return data_refuse_special("data", ds->path, st.st_mode, err, errlen);
    const void *bytes;
    size_t n = ENWIK8_BYTES;
    if (is_zip_name(ds->path)) {
        if (inflate_zip(ds, &bytes, err, errlen)) return -1;
    } else {
        if (data_map_file(ds, "data", ds->path, &bytes, &n, err, errlen)) return -1;
        if (n != ENWIK8_BYTES)
            return data_fail(err, errlen,
                             "data_format: '%s' has %zu bytes, not enwik8's %u; use data_format=text for other files",
                             ds->path, n, ENWIK8_BYTES);
    }
    const char *b = bytes;
    data_add_doc(&ds->split[SPLIT_TRAIN], b, ENWIK8_TRAIN_END);
    data_add_doc(&ds->split[SPLIT_VALIDATION], b + ENWIK8_TRAIN_END, ENWIK8_VALIDATION_END - ENWIK8_TRAIN_END);
    data_add_doc(&ds->split[SPLIT_TEST], b + ENWIK8_VALIDATION_END, ENWIK8_BYTES - ENWIK8_VALIDATION_END);
    return 0;
}
